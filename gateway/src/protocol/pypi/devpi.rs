//! devpi-server's deletion API, for PyPI registries whose backend is devpi
//! (`deletion_api = "devpi"` on the registry).
//!
//! devpi removes a release with `DELETE /<user>/<index>/<project>/<version>` (what `devpi
//! remove` sends) and a whole project with `DELETE /<user>/<index>/<project>`. It routes on the
//! %-decoded path, strips one trailing `/` from each matched segment, and normalises the project
//! segment by replacing every run of characters other than ASCII letters and digits with `-`:
//! `demo%21pkg`, `demo%20pkg` and `Demo_Pkg` are all `demo-pkg` to it. So the gateway reads the
//! path the same way and decides on the name devpi will act on: the project segment must be a
//! PEP 508 name (on which devpi's normalisation and PEP 503's agree), the version a plain
//! version; anything else is refused, never guessed. Every other `DELETE` (an index, a user, a
//! file under `+f/`) is refused as a write the gateway does not know.

use portcullis_rules::{ProjectName, Protocol};
use serde::Deserialize;

use crate::error::Refusal;
use crate::protocol::path::percent_decode;

/// Longest version segment accepted, in bytes.
const MAX_VERSION_BYTES: usize = 128;

/// Which deletion requests a PyPI registry's backend serves, besides the uploads every PyPI
/// backend takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionApi {
    /// pypiserver's `POST :action=remove_pkg` form (the default); every HTTP `DELETE`, `PUT`
    /// and `PATCH` is refused.
    #[default]
    RemovePkg,
    /// devpi-server's `DELETE /<user>/<index>/<project>[/<version>]` as well, decided by the
    /// same deletion rules.
    Devpi,
}

/// A devpi deletion as devpi-server reads its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevpiDelete {
    /// The index, `/<user>/<index>` (plain segments, as sent).
    pub index: String,
    /// The project devpi acts on, normalised.
    pub project: ProjectName,
    /// The version removed; `None` when the whole project is.
    pub version: Option<String>,
}

fn unknown(path: &str) -> Refusal {
    Refusal::UnclassifiedWrite(format!(
        "DELETE {} is not a deletion this gateway knows for devpi: only /<user>/<index>/<project> \
         and /<user>/<index>/<project>/<version> are decided",
        path.chars().take(120).collect::<String>()
    ))
}

/// Reads a devpi `DELETE` path (below the registry's prefix, without the query) into the index,
/// project and version devpi-server will act on, or refuses it: a path of another shape (an
/// index, a user, devpi's `+` endpoints) with `unclassified_write`, a project segment that is
/// not a PEP 508 name or a version with characters no version has with `bad_path`.
pub fn delete_target(path: &str) -> Result<DevpiDelete, Refusal> {
    let rest = path.strip_prefix('/').ok_or_else(|| unknown(path))?;
    // devpi strips one trailing '/' from the last segment it matches.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    let (user, index, project, version) = match segments.as_slice() {
        [user, index, project] => (*user, *index, *project, None),
        [user, index, project, version] => (*user, *index, *project, Some(*version)),
        _ => return Err(unknown(path)),
    };
    for segment in [user, index] {
        let plain = !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !plain {
            return Err(unknown(path));
        }
    }
    let decoded = percent_decode(project).ok_or_else(|| Refusal::BadPath("malformed %-escape in path".into()))?;
    if decoded.starts_with('+') {
        // devpi's own endpoints (`+f`, `+e`, `+simple`, `+api`), never a project.
        return Err(unknown(path));
    }
    let project = ProjectName::parse(Protocol::Pypi, &decoded).map_err(|e| {
        Refusal::BadPath(format!(
            "the project segment must be a project name: devpi reads any other character as '-', \
             so it would act on another name than the one sent ({e})"
        ))
    })?;
    let version = match version {
        None => None,
        Some(raw) => Some(version_segment(raw)?),
    };
    Ok(DevpiDelete {
        index: format!("/{user}/{index}"),
        project,
        version,
    })
}

/// A version segment, decoded: a letter or digit first, then letters, digits and `.+!_-`.
fn version_segment(raw: &str) -> Result<String, Refusal> {
    let bad = || {
        Refusal::BadPath(
            "the version segment must be a version: a letter or digit, then letters, digits and '.+!_-'".into(),
        )
    };
    let version = percent_decode(raw).ok_or_else(bad)?;
    let ok = version.len() <= MAX_VERSION_BYTES
        && version.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'!' | b'_' | b'-'));
    if ok {
        Ok(version)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
#[path = "devpi_tests.rs"]
mod tests;
