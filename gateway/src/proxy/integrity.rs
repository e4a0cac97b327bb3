//! Serves what the legacy backend cannot: the provenance accepted with each file, in the shape
//! of PyPI's Integrity API (`GET /integrity/<project>/<version>/<filename>/provenance`,
//! `application/vnd.pypi.integrity.v1+json`), from the gateway's ledger.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use portcullis_rules::{ProjectName, Protocol};
use serde_json::{json, Value};

use super::ctx::RequestCtx;
use super::{Gateway, VIA};
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
            .exchanger
            .state()
            .provenance_of(&registry.name, project.as_str(), version, filename)
            .await
            .map_err(|_| Refusal::StateUnavailable)?;
        let (status, body) = match stored {
            Some(p) if p.kind == "pep740" => {
                let attestations: Value = serde_json::from_slice(&p.provenance).unwrap_or(Value::Null);
                let kind = kind_of(p.signer.as_deref(), p.source_repository.as_deref());
                let document = json!({
                    "version": 1,
                    "attestation_bundles": [{
                        "publisher": publisher_object(kind, p.source_repository.as_deref(), p.signer.as_deref()),
                        "attestations": attestations,
                    }],
                });
                (200, serde_json::to_vec(&document).unwrap_or_default())
            }
            _ => (
                404,
                serde_json::to_vec(&json!({"message": format!("No provenance available for {filename}")}))
                    .unwrap_or_default(),
            ),
        };
        let write = async {
            let mut resp = ResponseHeader::build(status, Some(5))?;
            resp.insert_header(
                http::header::CONTENT_TYPE,
                if status == 200 {
                    INTEGRITY_MEDIA_TYPE
                } else {
                    "application/json"
                },
            )?;
            resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
            resp.insert_header("x-request-id", ctx.id.as_str())?;
            resp.insert_header(http::header::VIA, VIA)?;
            session.write_response_header(Box::new(resp), false).await?;
            session.write_response_body(Some(Bytes::from(body)), true).await
        };
        write.await.map_err(|_: Box<pingora::Error>| Refusal::Internal)
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
