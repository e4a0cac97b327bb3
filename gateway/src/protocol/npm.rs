//! The npm registry protocol: which requests write to which package.
//!
//! Publish and deprecate are `PUT /<pkg>`; unpublish is `PUT /<pkg>/-rev/<rev>` followed by
//! `DELETE /<pkg>/-/<tarball>/-rev/<rev>` or `DELETE /<pkg>/-rev/<rev>`; dist-tags live under
//! `/-/package/<pkg>/dist-tags/<tag>`. Scoped names arrive as `@scope%2fname` or `@scope/name`.

use http::Method;
use portcullis_rules::{ProjectName, Protocol, WriteAction};

use super::path::percent_decode;
use super::RequestClass;
use crate::error::Refusal;

/// Splits `/<pkg>[/rest]` into the decoded package name and the rest (without leading slash).
pub fn split_package(path: &str) -> Option<(String, &str)> {
    let trimmed = path.strip_prefix('/')?;
    let (name_part, rest) = if trimmed.starts_with('@') || trimmed.starts_with("%40") {
        // A scoped name is either one segment with %2f or two segments.
        let (first, after) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        let decoded_first = percent_decode(first)?;
        if decoded_first.contains('/') {
            (decoded_first, after)
        } else {
            let (second, rest) = after.split_once('/').unwrap_or((after, ""));
            (format!("{decoded_first}/{}", percent_decode(second)?), rest)
        }
    } else {
        let (first, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        (percent_decode(first)?, rest)
    };
    if name_part.is_empty() {
        return None;
    }
    Some((name_part, rest))
}

fn project(name: &str) -> Result<ProjectName, Refusal> {
    ProjectName::parse(Protocol::Npm, name).map_err(|e| Refusal::BadPath(e.to_string()))
}

fn unclassified(method: &Method, path: &str) -> Refusal {
    Refusal::UnclassifiedWrite(format!(
        "{method} {} is not a write this gateway knows for npm registries",
        path.chars().take(120).collect::<String>()
    ))
}

/// Classifies an npm request.
pub fn classify(method: &Method, path: &str) -> Result<RequestClass, Refusal> {
    let is_write = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if let Some(special) = path.strip_prefix("/-/") {
        if let Some(rest) = special.strip_prefix("package/") {
            // /-/package/<pkg>/dist-tags[/<tag>], /-/package/<pkg>/collaborators, ...
            let (name, _) = split_package(&format!("/{rest}")).ok_or_else(|| unclassified(method, path))?;
            return Ok(if is_write {
                RequestClass::Write {
                    action: WriteAction::Change,
                    project: project(&name)?,
                }
            } else {
                RequestClass::Read
            });
        }
        return Ok(if is_write {
            RequestClass::Account
        } else {
            RequestClass::Read
        });
    }
    if !is_write {
        return Ok(RequestClass::Read);
    }
    let (name, rest) = split_package(path).ok_or_else(|| unclassified(method, path))?;
    let action = match (method.as_str(), rest) {
        ("PUT", "") => WriteAction::Upload,
        ("PUT", r) if r.starts_with("-rev/") => WriteAction::Change,
        ("DELETE", r) if r.starts_with("-rev/") || (r.starts_with("-/") && r.contains("/-rev/")) => WriteAction::Change,
        _ => return Err(unclassified(method, path)),
    };
    Ok(RequestClass::Write {
        action,
        project: project(&name)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(method: Method, path: &str) -> (WriteAction, String) {
        match classify(&method, path).expect("classified") {
            RequestClass::Write { action, project } => (action, project.as_str().to_owned()),
            other => panic!("{path}: expected a write, got {other:?}"),
        }
    }

    #[test]
    fn publishes_and_unpublishes_are_writes_on_the_package() {
        assert_eq!(
            write(Method::PUT, "/left-pad"),
            (WriteAction::Upload, "left-pad".into())
        );
        assert_eq!(
            write(Method::PUT, "/@acme%2fwidget"),
            (WriteAction::Upload, "@acme/widget".into())
        );
        assert_eq!(
            write(Method::PUT, "/@acme/widget"),
            (WriteAction::Upload, "@acme/widget".into())
        );
        assert_eq!(
            write(Method::PUT, "/left-pad/-rev/3-abc"),
            (WriteAction::Change, "left-pad".into())
        );
        assert_eq!(
            write(Method::DELETE, "/left-pad/-/left-pad-1.0.0.tgz/-rev/4-def"),
            (WriteAction::Change, "left-pad".into())
        );
        assert_eq!(
            write(Method::DELETE, "/@acme%2fwidget/-rev/1-x"),
            (WriteAction::Change, "@acme/widget".into())
        );
        assert_eq!(
            write(Method::PUT, "/-/package/@acme%2fwidget/dist-tags/beta"),
            (WriteAction::Change, "@acme/widget".into())
        );
    }

    #[test]
    fn reads_and_account_calls_pass() {
        assert_eq!(classify(&Method::GET, "/left-pad"), Ok(RequestClass::Read));
        assert_eq!(
            classify(&Method::GET, "/left-pad/-/left-pad-1.0.0.tgz"),
            Ok(RequestClass::Read)
        );
        assert_eq!(
            classify(&Method::PUT, "/-/user/org.couchdb.user:alice"),
            Ok(RequestClass::Account)
        );
        assert_eq!(
            classify(&Method::POST, "/-/npm/v1/security/advisories/bulk"),
            Ok(RequestClass::Account)
        );
    }

    #[test]
    fn unknown_write_shapes_and_bad_names_are_refused() {
        for (method, path) in [
            (Method::POST, "/left-pad"),
            (Method::PATCH, "/left-pad"),
            (Method::DELETE, "/left-pad"),
            (Method::PUT, "/left-pad/whatever"),
            (Method::PUT, "/Left-Pad"),
            (Method::PUT, "/%40acme%2f"),
        ] {
            assert!(classify(&method, path).is_err(), "{method} {path} accepted");
        }
    }
}
