//! Distribution file names: which project and version a wheel or sdist file name is for, and
//! the check that an upload's file is for the form's project and version.

use portcullis_rules::ProjectName;

use crate::error::Refusal;

/// The distribution file name must be for the form's project and version, as Warehouse checks
/// (pypiserver stores under the file name whatever `name` and `version` say, so a mismatch would
/// let one project's upload land as another's file): a wheel
/// `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl` or an sdist
/// `{name}-{version}.tar.gz` / `.zip`, with the name equal to the project under PEP 503
/// normalisation and the version equal under a light normalisation (case, a leading `v`,
/// trailing `.0` release components).
pub fn check_filename(filename: &str, project: &ProjectName, version: &str) -> Result<(), Refusal> {
    let (stem, wheel) = if let Some(stem) = filename.strip_suffix(".whl") {
        (stem, true)
    } else if let Some(stem) = filename
        .strip_suffix(".tar.gz")
        .or_else(|| filename.strip_suffix(".zip"))
    {
        (stem, false)
    } else {
        return Err(Refusal::MalformedUpload(format!(
            "Invalid file extension: use .tar.gz, .whl or .zip ({:?})",
            filename.chars().take(120).collect::<String>()
        )));
    };
    let Some((file_name, file_version)) = split_stem(stem, wheel) else {
        return Err(Refusal::MalformedUpload(format!(
            "{:?} is not a valid {} file name",
            filename.chars().take(120).collect::<String>(),
            if wheel { "wheel" } else { "sdist" }
        )));
    };
    if portcullis_rules::name::normalize_pypi(file_name) != project.as_str() {
        return Err(Refusal::MalformedUpload(format!(
            "the file {filename:?} is not for project {:?}: start the file name with the project name",
            project.as_str()
        )));
    }
    if normalize_version(file_version) != normalize_version(version) {
        return Err(Refusal::MalformedUpload(format!(
            "the file {filename:?} is not for version {version:?}: the version in the file name must be the form's"
        )));
    }
    Ok(())
}

/// The name and version parts of a wheel's or sdist's file stem.
fn split_stem(stem: &str, wheel: bool) -> Option<(&str, &str)> {
    let parsed = if wheel {
        let parts: Vec<&str> = stem.split('-').collect();
        match parts.as_slice() {
            [name, version, _, _, _] | [name, version, _, _, _, _] => Some((*name, *version)),
            _ => None,
        }
    } else {
        stem.rsplit_once('-')
    };
    parsed.filter(|(n, v)| !n.is_empty() && !v.is_empty())
}

/// The normalised project name and the version of a distribution file name (`.whl`,
/// `.tar.gz`, `.zip`); `None` for anything else.
pub fn split_filename(filename: &str) -> Option<(String, String)> {
    let (stem, wheel) = if let Some(stem) = filename.strip_suffix(".whl") {
        (stem, true)
    } else {
        (
            filename
                .strip_suffix(".tar.gz")
                .or_else(|| filename.strip_suffix(".zip"))?,
            false,
        )
    };
    let (name, version) = split_stem(stem, wheel)?;
    Some((portcullis_rules::name::normalize_pypi(name), version.to_owned()))
}

/// Case, a leading `v` and trailing zero release components do not make versions differ.
pub fn normalize_version(version: &str) -> String {
    let lower = version.trim().to_ascii_lowercase();
    let lower = lower.strip_prefix('v').unwrap_or(&lower);
    let release_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (release, rest) = lower.split_at(release_end);
    let mut parts: Vec<&str> = release.split('.').collect();
    while parts.len() > 1 && parts.last().is_some_and(|p| p.chars().all(|c| c == '0')) {
        parts.pop();
    }
    let release: Vec<String> = parts
        .iter()
        .map(|p| p.trim_start_matches('0'))
        .map(|p| if p.is_empty() { "0".to_owned() } else { p.to_owned() })
        .collect();
    format!("{}{rest}", release.join("."))
}

#[cfg(test)]
mod tests {
    use portcullis_rules::Protocol;

    use super::*;

    #[test]
    fn file_names_must_be_for_the_project_and_version() {
        let project = ProjectName::parse(Protocol::Pypi, "Demo.Pkg").expect("name");
        for ok in [
            "demo_pkg-1.0-py3-none-any.whl",
            "demo_pkg-1.0-1-py3-none-any.whl",
            "Demo.Pkg-1.0.tar.gz",
            "demo-pkg-1.0.zip",
            "demo_pkg-1.0.0.tar.gz",
        ] {
            assert!(check_filename(ok, &project, "1.0").is_ok(), "{ok}");
        }
        for bad in [
            "other-1.0.tar.gz",
            "demo_pkg-1.1.tar.gz",
            "demo_pkg-1.0.egg",
            "demo_pkg-1.0-py3.whl",
            "demo_pkg.tar.gz",
        ] {
            assert!(check_filename(bad, &project, "1.0").is_err(), "{bad}");
        }
        assert_eq!(normalize_version("V1.0.0rc1"), "1rc1");
        assert_eq!(normalize_version("2.10"), "2.10");
        assert_eq!(normalize_version("01.0"), "1");
    }
}
