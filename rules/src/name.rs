//! Registry protocols and their project-name rules (validation and normalisation).

use std::fmt;

use serde::Deserialize;

/// The wire protocol a registry speaks; it decides how requests are read and names normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The PyPI legacy upload API and the simple index (pypiserver, Warehouse, devpi, ...).
    Pypi,
    /// The npm registry API (Verdaccio, npmjs, ...).
    Npm,
}

impl Protocol {
    /// The protocol's name as written in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Pypi => "pypi",
            Protocol::Npm => "npm",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a valid project name for a protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the project name is empty")]
    Empty,
    /// The name is longer than the protocol allows.
    #[error("the project name is longer than {max} characters")]
    TooLong {
        /// The protocol's limit.
        max: usize,
    },
    /// The name contains a character or shape the protocol forbids.
    #[error("the project name {name:?} is not valid for {protocol}: {why}")]
    Invalid {
        /// The rejected name (truncated to 80 characters).
        name: String,
        /// The protocol whose rules were applied.
        protocol: Protocol,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// A validated project name in its protocol's normal form: PEP 503 for PyPI
/// (lower case, runs of `-`, `_`, `.` folded to `-`), the name as published for npm.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectName(String);

impl ProjectName {
    /// Validates `raw` under `protocol`'s naming rules and returns its normal form.
    pub fn parse(protocol: Protocol, raw: &str) -> Result<Self, NameError> {
        match protocol {
            Protocol::Pypi => parse_pypi(raw),
            Protocol::Npm => parse_npm(raw),
        }
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid(raw: &str, protocol: Protocol, why: &'static str) -> NameError {
    NameError::Invalid {
        name: raw.chars().take(80).collect(),
        protocol,
        why,
    }
}

/// PEP 503 normalisation of a PEP 508 name.
pub fn normalize_pypi(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_separator_run = false;
    for c in raw.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separator_run {
                out.push('-');
            }
            in_separator_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_separator_run = false;
        }
    }
    out
}

fn parse_pypi(raw: &str) -> Result<ProjectName, NameError> {
    const MAX: usize = 200;
    if raw.is_empty() {
        return Err(NameError::Empty);
    }
    if raw.len() > MAX {
        return Err(NameError::TooLong { max: MAX });
    }
    let bytes = raw.as_bytes();
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(invalid(
            raw,
            Protocol::Pypi,
            "only ASCII letters, digits, '-', '_' and '.' are allowed",
        ));
    }
    let first_last_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !first_last_ok(bytes.first()) || !first_last_ok(bytes.last()) {
        return Err(invalid(
            raw,
            Protocol::Pypi,
            "it must start and end with a letter or digit",
        ));
    }
    Ok(ProjectName(normalize_pypi(raw)))
}

fn npm_part_ok(part: &str) -> bool {
    !part.is_empty()
        && !part.starts_with('.')
        && !part.starts_with('_')
        && part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

fn parse_npm(raw: &str) -> Result<ProjectName, NameError> {
    const MAX: usize = 214;
    if raw.is_empty() {
        return Err(NameError::Empty);
    }
    if raw.len() > MAX {
        return Err(NameError::TooLong { max: MAX });
    }
    let ok = match raw.strip_prefix('@') {
        Some(scoped) => match scoped.split_once('/') {
            Some((scope, name)) => npm_part_ok(scope) && npm_part_ok(name),
            None => false,
        },
        None => npm_part_ok(raw),
    };
    if !ok || matches!(raw, "node_modules" | "favicon.ico") {
        return Err(invalid(
            raw,
            Protocol::Npm,
            "use lower-case letters, digits, '-', '.', '_' or '~', optionally as @scope/name, not starting with '.' or '_'",
        ));
    }
    Ok(ProjectName(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pypi_names_normalise_per_pep_503() {
        let n = ProjectName::parse(Protocol::Pypi, "Foo.Bar__baz-Qux").expect("valid");
        assert_eq!(n.as_str(), "foo-bar-baz-qux");
    }

    #[test]
    fn pypi_rejects_bad_shapes() {
        for bad in ["", "-foo", "foo-", "foo bar", "foo/bar", "../etc", "föö"] {
            assert!(ProjectName::parse(Protocol::Pypi, bad).is_err(), "{bad:?} accepted");
        }
        let long = "a".repeat(201);
        assert_eq!(
            ProjectName::parse(Protocol::Pypi, &long),
            Err(NameError::TooLong { max: 200 })
        );
    }

    #[test]
    fn npm_names_keep_their_form_and_scopes() {
        let n = ProjectName::parse(Protocol::Npm, "@acme/left-pad").expect("valid");
        assert_eq!(n.as_str(), "@acme/left-pad");
        for bad in [
            "Upper",
            "@scope",
            "@/x",
            ".hidden",
            "_under",
            "a/b",
            "@a/b/c",
            "node_modules",
            "x y",
        ] {
            assert!(ProjectName::parse(Protocol::Npm, bad).is_err(), "{bad:?} accepted");
        }
    }
}
