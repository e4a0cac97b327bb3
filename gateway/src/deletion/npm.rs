//! What an npm write does to a package, read against the document the backend holds.
//!
//! `npm unpublish <pkg>@<v>` PUTs the whole document back without that version
//! (`PUT /<pkg>/-rev/<rev>`) and then deletes the tarball; `npm deprecate` PUTs it back with
//! `deprecated` set (an empty message lifts it); `npm unpublish <pkg> --force` deletes the
//! whole package (`DELETE /<pkg>/-rev/<rev>`). The backend applies whatever document it gets,
//! so a metadata PUT is classified by comparing its versions and deprecations with the
//! backend's current document.

use serde_json::Value;

use crate::clock::unix_now;

/// What a metadata PUT changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataChanges {
    /// Versions the backend has and the document leaves out: unpublished.
    pub removed: Vec<String>,
    /// Versions in the document the backend does not have (a metadata PUT cannot add them).
    pub added: Vec<String>,
    /// Versions newly deprecated (or with a new message).
    pub deprecated: Vec<String>,
    /// Versions whose deprecation is lifted.
    pub undeprecated: Vec<String>,
}

/// The backend's current document of a package, as far as deletion decisions need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentDocument {
    /// `(version, deprecation message)` for every version, in document order.
    pub versions: Vec<(String, Option<String>)>,
    /// `(version, publish time in Unix seconds)` from the `time` map.
    pub published: Vec<(String, i64)>,
    /// The `time.created` entry.
    pub created: Option<i64>,
    /// How many maintainers the document lists, when it lists them.
    pub maintainers: Option<u64>,
}

impl CurrentDocument {
    /// Reads the parts of a document that matter; unknown shapes read as absent.
    pub fn from_json(document: &Value) -> Self {
        let versions = document
            .get("versions")
            .and_then(Value::as_object)
            .map(|versions| {
                versions
                    .iter()
                    .map(|(v, manifest)| {
                        let deprecated = manifest
                            .get("deprecated")
                            .and_then(Value::as_str)
                            .filter(|m| !m.is_empty())
                            .map(str::to_owned);
                        (v.clone(), deprecated)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let time = document.get("time").and_then(Value::as_object);
        let published = time
            .map(|time| {
                time.iter()
                    .filter(|(k, _)| k.as_str() != "created" && k.as_str() != "modified")
                    .filter_map(|(k, v)| Some((k.clone(), parse_rfc3339(v.as_str()?)?)))
                    .collect()
            })
            .unwrap_or_default();
        let created = time
            .and_then(|t| t.get("created"))
            .and_then(Value::as_str)
            .and_then(parse_rfc3339);
        // npmjs lists maintainers at the top; Verdaccio only in each version's manifest, so the
        // latest version's list stands in for it there.
        let latest = document
            .get("dist-tags")
            .and_then(|t| t.get("latest"))
            .and_then(Value::as_str)
            .and_then(|v| document.get("versions")?.get(v));
        let maintainers = document
            .get("maintainers")
            .or_else(|| latest.and_then(|m| m.get("maintainers")))
            .and_then(Value::as_array)
            .map(|m| m.len() as u64);
        CurrentDocument {
            versions,
            published,
            created,
            maintainers,
        }
    }

    /// Whether the document has `version`.
    pub fn has(&self, version: &str) -> bool {
        self.versions.iter().any(|(v, _)| v == version)
    }

    /// The publish time of `version` from the `time` map.
    pub fn published_at(&self, version: &str) -> Option<i64> {
        self.published.iter().find(|(v, _)| v == version).map(|(_, t)| *t)
    }

    /// The earliest publish time the document knows.
    pub fn earliest(&self) -> Option<i64> {
        self.published.iter().map(|(_, t)| *t).chain(self.created).min()
    }

    /// What a metadata PUT with these `versions` and `deprecations` changes.
    pub fn changes(&self, versions: &[String], deprecations: &[(String, String)]) -> MetadataChanges {
        let removed = self
            .versions
            .iter()
            .filter(|(v, _)| !versions.contains(v))
            .map(|(v, _)| v.clone())
            .collect();
        let added = versions.iter().filter(|v| !self.has(v)).cloned().collect();
        let mut deprecated = Vec::new();
        let mut undeprecated = Vec::new();
        for (version, current) in &self.versions {
            if !versions.contains(version) {
                continue;
            }
            let proposed = deprecations
                .iter()
                .find(|(v, _)| v == version)
                .map(|(_, m)| m.as_str())
                .filter(|m| !m.is_empty());
            match (current.as_deref(), proposed) {
                (None, Some(_)) => deprecated.push(version.clone()),
                (Some(old), Some(new)) if old != new => deprecated.push(version.clone()),
                (Some(_), None) => undeprecated.push(version.clone()),
                _ => {}
            }
        }
        MetadataChanges {
            removed,
            added,
            deprecated,
            undeprecated,
        }
    }
}

/// The version a tarball file name (`<unscoped name>-<version>.tgz`) of `package` is for.
pub fn tarball_version(package: &str, file: &str) -> Option<String> {
    let unscoped = package.rsplit('/').next()?;
    let version = file.strip_prefix(unscoped)?.strip_prefix('-')?.strip_suffix(".tgz")?;
    (!version.is_empty() && !version.contains('/')).then(|| version.to_owned())
}

/// Unix seconds of an RFC 3339 time (`2024-05-01T12:00:00.000Z`).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(parsed.unix_timestamp())
}

/// Seconds since `at`, never negative.
pub fn age(at: i64) -> u64 {
    u64::try_from(unix_now().saturating_sub(at)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document() -> CurrentDocument {
        CurrentDocument::from_json(&json!({
            "name": "demo",
            "versions": {
                "1.0.0": {"deprecated": "old"},
                "1.1.0": {},
                "2.0.0": {"deprecated": ""},
            },
            "time": {
                "created": "2024-01-01T00:00:00.000Z",
                "modified": "2024-03-01T00:00:00.000Z",
                "1.0.0": "2024-01-01T00:00:00.000Z",
                "1.1.0": "2024-02-01T00:00:00.000Z",
                "2.0.0": "not a time",
            },
            "maintainers": [{"name": "a"}, {"name": "b"}],
        }))
    }

    #[test]
    fn the_document_yields_versions_times_and_maintainers() {
        let d = document();
        assert_eq!(
            d.versions,
            vec![
                ("1.0.0".to_owned(), Some("old".to_owned())),
                ("1.1.0".to_owned(), None),
                ("2.0.0".to_owned(), None)
            ]
        );
        assert_eq!(d.published_at("1.1.0"), Some(1_706_745_600));
        assert_eq!(d.published_at("2.0.0"), None);
        assert_eq!(d.earliest(), Some(1_704_067_200));
        assert_eq!(d.maintainers, Some(2));
        assert_eq!(CurrentDocument::from_json(&json!({})).maintainers, None);
        // Verdaccio: in the latest version's manifest only.
        let verdaccio = json!({
            "dist-tags": {"latest": "1.1.0"},
            "versions": {"1.0.0": {"maintainers": [{"name": "a"}, {"name": "b"}]}, "1.1.0": {"maintainers": [{"name": "a"}]}},
        });
        assert_eq!(CurrentDocument::from_json(&verdaccio).maintainers, Some(1));
    }

    #[test]
    fn metadata_puts_are_read_as_unpublish_deprecate_and_undeprecate() {
        let d = document();
        let versions: Vec<String> = vec!["1.0.0".into(), "2.0.0".into(), "3.0.0".into()];
        let changes = d.changes(
            &versions,
            &[("1.0.0".into(), String::new()), ("2.0.0".into(), "use 3".into())],
        );
        assert_eq!(changes.removed, vec!["1.1.0".to_owned()]);
        assert_eq!(changes.added, vec!["3.0.0".to_owned()]);
        assert_eq!(changes.deprecated, vec!["2.0.0".to_owned()]);
        assert_eq!(changes.undeprecated, vec!["1.0.0".to_owned()]);
        // The same document back changes nothing.
        let same: Vec<String> = vec!["1.0.0".into(), "1.1.0".into(), "2.0.0".into()];
        assert_eq!(
            d.changes(&same, &[("1.0.0".into(), "old".into())]),
            MetadataChanges::default()
        );
        // A new message is a new deprecation.
        assert_eq!(
            d.changes(&same, &[("1.0.0".into(), "older".into())]).deprecated,
            vec!["1.0.0".to_owned()]
        );
    }

    #[test]
    fn tarball_names_give_their_version() {
        assert_eq!(tarball_version("demo", "demo-1.0.0.tgz"), Some("1.0.0".into()));
        assert_eq!(
            tarball_version("@acme/demo", "demo-1.0.0-rc.1.tgz"),
            Some("1.0.0-rc.1".into())
        );
        assert_eq!(tarball_version("demo", "other-1.0.0.tgz"), None);
        assert_eq!(tarball_version("demo", "demo-.tgz"), None);
    }
}
