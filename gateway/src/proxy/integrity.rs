//! Serves what the legacy backend cannot: the provenance accepted with each file, in the shape
//! of PyPI's Integrity API (`GET /integrity/<project>/<version>/<filename>/provenance`,
//! `application/vnd.pypi.integrity.v1+json`), from the gateway's ledger.

use pingora::proxy::Session;
use portcullis_rules::{ProjectName, Protocol};
use serde_json::{json, Value};

use super::ctx::RequestCtx;
use super::{Answer, Gateway};
use crate::config::Registry;
use crate::error::Refusal;

/// The Integrity API's media type.
pub const INTEGRITY_MEDIA_TYPE: &str = "application/vnd.pypi.integrity.v1+json";

/// `(project, version, filename)` of an Integrity API path (after the registry prefix).
pub fn integrity_path(path: &str) -> Option<(&str, &str, &str)> {
    let rest = path.strip_prefix("/integrity/")?.strip_suffix("/provenance")?;
    let mut parts = rest.split('/');
    let (project, version, filename) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || project.is_empty() || version.is_empty() || filename.is_empty() {
        return None;
    }
    Some((project, version, filename))
}

/// `(package, version)` of an npm attestations path (`/-/npm/v1/attestations/<name>@<version>`,
/// scoped names as `@scope%2fname` or `@scope/name`).
pub fn npm_attestations_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/-/npm/v1/attestations/")?;
    let decoded = crate::protocol::path::percent_decode(rest)?;
    let (name, version) = decoded.rsplit_once('@')?;
    if name.is_empty() || version.is_empty() || version.contains('/') {
        return None;
    }
    Some((name.to_owned(), version.to_owned()))
}

/// `head` + `stored` + `tail`: a stored JSON document embedded verbatim in an answer.
fn splice(head: &str, stored: &[u8], tail: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(head.len() + stored.len() + tail.len());
    body.extend_from_slice(head.as_bytes());
    body.extend_from_slice(stored);
    body.extend_from_slice(tail.as_bytes());
    body
}

/// The predicate type of a DSSE bundle's statement, when it has one.
fn bundle_predicate_type(bundle: &Value) -> Option<String> {
    use base64::Engine as _;
    let payload = bundle["dsseEnvelope"]["payload"].as_str()?;
    let statement = base64::engine::general_purpose::STANDARD.decode(payload).ok()?;
    let statement: Value = serde_json::from_slice(&statement).ok()?;
    statement["predicateType"].as_str().map(str::to_owned)
}

/// The publisher object of a provenance document, from what the signer's certificate said.
fn publisher_object(signer_issuer_kind: &str, source_repository: Option<&str>, signer: Option<&str>) -> Value {
    let repository = source_repository.and_then(|uri| {
        uri.split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(_, path)| path.to_owned())
    });
    let workflow = signer.and_then(|san| {
        san.split_once("/.github/workflows/")
            .map(|(_, file)| file.split('@').next().unwrap_or(file).to_owned())
    });
    json!({
        "kind": signer_issuer_kind,
        "repository": repository,
        "workflow": workflow,
        "environment": null,
    })
}

/// The provider name PyPI uses for a signer, guessed from its identity.
fn kind_of(signer: Option<&str>, source_repository: Option<&str>) -> &'static str {
    let text = source_repository.or(signer).unwrap_or("");
    if text.starts_with("https://github.com/") {
        "GitHub"
    } else if text.contains("gitlab") {
        "GitLab"
    } else if text.ends_with(".gserviceaccount.com") {
        "Google"
    } else {
        "Other"
    }
}

impl Gateway {
    /// Answers npm's attestations endpoint from the ledger: the provenance bundle accepted with
    /// the version's tarball.
    pub(super) async fn serve_npm_attestations(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        registry: &Registry,
        package: &str,
        version: &str,
    ) -> Result<(), Refusal> {
        let project = ProjectName::parse(Protocol::Npm, package).map_err(|e| Refusal::BadPath(e.to_string()))?;
        let tarball = format!("{}-{version}.tgz", project.as_str());
        let stored = self
            .state()
            .provenance_of(&registry.name, project.as_str(), version, &tarball)
            .await
            .map_err(|_| Refusal::StateUnavailable)?;
        let (status, body) = match stored {
            Some(p) if p.kind == "npm-sigstore" => {
                let bundle: Value = serde_json::from_slice(&p.provenance).unwrap_or(Value::Null);
                let predicate = serde_json::to_string(&bundle_predicate_type(&bundle)).unwrap_or_default();
                // The bundle goes out byte for byte as it was published.
                let body = splice(
                    &format!("{{\"attestations\":[{{\"predicateType\":{predicate},\"bundle\":"),
                    &p.provenance,
                    "}]}",
                );
                (200, body)
            }
            _ => (
                404,
                serde_json::to_vec(&json!({"error": format!("no attestations for {package}@{version}")}))
                    .unwrap_or_default(),
            ),
        };
        self.write_json(session, ctx, status, "application/json", body).await
    }

    /// Writes a small JSON answer served by the gateway itself.
    async fn write_json(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        status: u16,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), Refusal> {
        let answer = Answer {
            status,
            reason: None,
            content_type,
            no_store: false,
            body,
        };
        self.write_answer(session, ctx, answer)
            .await
            .map(|_| ())
            .map_err(|_| Refusal::Internal)
    }

    /// Answers an Integrity API request from the ledger.
    pub(super) async fn serve_integrity(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        registry: &Registry,
        project: &str,
        version: &str,
        filename: &str,
    ) -> Result<(), Refusal> {
        let project = ProjectName::parse(Protocol::Pypi, project).map_err(|e| Refusal::BadPath(e.to_string()))?;
        let stored = self
            .state()
            .provenance_of(&registry.name, project.as_str(), version, filename)
            .await
            .map_err(|_| Refusal::StateUnavailable)?;
        let (status, body) = match stored {
            Some(p) if p.kind == "pep740" => {
                let kind = kind_of(p.signer.as_deref(), p.source_repository.as_deref());
                let publisher = publisher_object(kind, p.source_repository.as_deref(), p.signer.as_deref());
                // The attestations go out byte for byte as they were uploaded (a JSON list the
                // gateway verified), spliced into the document rather than re-serialised.
                let body = splice(
                    &format!("{{\"version\":1,\"attestation_bundles\":[{{\"publisher\":{publisher},\"attestations\":"),
                    &p.provenance,
                    "}]}",
                );
                (200, body)
            }
            _ => (
                404,
                serde_json::to_vec(&json!({"message": format!("No provenance available for {filename}")}))
                    .unwrap_or_default(),
            ),
        };
        let content_type = if status == 200 {
            INTEGRITY_MEDIA_TYPE
        } else {
            "application/json"
        };
        self.write_json(session, ctx, status, content_type, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_paths_are_parsed_strictly() {
        assert_eq!(
            integrity_path("/integrity/demo/1.0/demo-1.0.tar.gz/provenance"),
            Some(("demo", "1.0", "demo-1.0.tar.gz"))
        );
        assert_eq!(integrity_path("/integrity/demo/1.0/provenance"), None);
        assert_eq!(integrity_path("/integrity/demo/1.0/a/b/provenance"), None);
        assert_eq!(integrity_path("/simple/demo/"), None);
    }

    #[test]
    fn npm_attestation_paths_take_scoped_names() {
        assert_eq!(
            npm_attestations_path("/-/npm/v1/attestations/sigstore@2.3.1"),
            Some(("sigstore".into(), "2.3.1".into()))
        );
        assert_eq!(
            npm_attestations_path("/-/npm/v1/attestations/@acme%2fwidget@1.0.0"),
            Some(("@acme/widget".into(), "1.0.0".into()))
        );
        assert_eq!(npm_attestations_path("/-/npm/v1/attestations/nope"), None);
    }

    #[test]
    fn publisher_objects_name_repository_and_workflow() {
        let p = publisher_object(
            "GitHub",
            Some("https://github.com/trailofbits/pypi-attestations"),
            Some("https://github.com/trailofbits/pypi-attestations/.github/workflows/release.yml@refs/tags/v0.0.19"),
        );
        assert_eq!(p["repository"], "trailofbits/pypi-attestations");
        assert_eq!(p["workflow"], "release.yml");
        assert_eq!(
            kind_of(None, Some("https://github.com/trailofbits/pypi-attestations")),
            "GitHub"
        );
    }
}
