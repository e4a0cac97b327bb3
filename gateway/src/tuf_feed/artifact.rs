//! What the feed submits for an event, read back from the backend: a committed file's length
//! and hashes (checked against what the ledger recorded at upload), or a project's index
//! page as the backend serves it now.

use std::collections::BTreeMap;

use blake2::Blake2b;
use portcullis_rules::Protocol;
use serde_json::json;
use sha2::{Digest, Sha256, Sha512};

use super::rstuf::{Artifact, ArtifactInfo};
use crate::config::Registry;
use crate::state::{FeedEvent, FeedFile};
use crate::trusted_publishing::backend::{ProbeError, ProjectProbe};

type Blake2b256 = Blake2b<blake2::digest::consts::U32>;

/// What the backend serves at an event's path.
#[derive(Debug, Clone, PartialEq)]
pub enum Served {
    /// The artifact to submit.
    Artifact(Artifact),
    /// Nothing (404 or 410).
    Missing,
    /// Bytes other than those uploaded: never submitted.
    Differs(String),
}

/// The TUF hash names of a protocol's files: what its clients check (PyPI: sha256 and
/// blake2b-256, as PEP 458; npm: sha512, the `dist.integrity` algorithm, and sha256).
fn hash_names(protocol: Protocol) -> &'static [&'static str] {
    match protocol {
        Protocol::Pypi => &["blake2b-256", "sha256"],
        Protocol::Npm => &["sha256", "sha512"],
    }
}

/// Length and digests of a body, hashed as it streams.
struct Hashes {
    length: u64,
    sha256: Sha256,
    blake2b: Option<Blake2b256>,
    sha512: Option<Sha512>,
}

impl Hashes {
    fn new(protocol: Protocol) -> Hashes {
        Hashes {
            length: 0,
            sha256: Sha256::new(),
            blake2b: hash_names(protocol).contains(&"blake2b-256").then(Blake2b256::new),
            sha512: hash_names(protocol).contains(&"sha512").then(Sha512::new),
        }
    }

    fn update(&mut self, chunk: &[u8]) {
        self.length += chunk.len() as u64;
        self.sha256.update(chunk);
        if let Some(b) = &mut self.blake2b {
            b.update(chunk);
        }
        if let Some(s) = &mut self.sha512 {
            s.update(chunk);
        }
    }

    fn finish(self) -> (u64, BTreeMap<&'static str, String>) {
        let mut hashes = BTreeMap::new();
        hashes.insert("sha256", hex::encode(self.sha256.finalize()));
        if let Some(b) = self.blake2b {
            hashes.insert("blake2b-256", hex::encode(b.finalize()));
        }
        if let Some(s) = self.sha512 {
            hashes.insert("sha512", hex::encode(s.finalize()));
        }
        (self.length, hashes)
    }
}

/// `GET /<path>` from the backend, hashed as it streams; `None` for 404 and 410. Bodies
/// longer than `limit` are an error.
async fn read_hashed(
    probe: &ProjectProbe,
    registry: &Registry,
    path: &str,
    accept: Option<&str>,
    limit: u64,
) -> Result<Option<(u64, BTreeMap<&'static str, String>)>, ProbeError> {
    let mut response = probe.fetch(registry, path, accept).await?;
    match response.status().as_u16() {
        200 => {}
        404 | 410 => return Ok(None),
        other => return Err(ProbeError::new(format!("the backend answered {other} for {path}"))),
    }
    let mut hashes = Hashes::new(registry.protocol);
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ProbeError::new(format!("reading {path}: {}", crate::error::chain(&e.without_url()))))?
    {
        hashes.update(&chunk);
        if hashes.length > limit {
            return Err(ProbeError::new(format!("{path} is longer than {limit} bytes")));
        }
    }
    Ok(Some(hashes.finish()))
}

/// The committed file of an add event, as the backend serves it at `target` (its target path,
/// also its path on the backend), checked against the ledger's length and SHA-256.
pub async fn file(
    probe: &ProjectProbe,
    registry: &Registry,
    project: &str,
    file: &FeedFile,
    target: &str,
) -> Result<Served, ProbeError> {
    let Some((length, hashes)) =
        read_hashed(probe, registry, &format!("/{target}"), None, registry.max_body_bytes).await?
    else {
        return Ok(Served::Missing);
    };
    let sha256 = hashes.get("sha256").map_or("", String::as_str);
    if length != file.size || !sha256.eq_ignore_ascii_case(&file.sha256) {
        return Ok(Served::Differs(format!(
            "the backend serves {length} bytes with SHA-256 {sha256} at /{target}, but {} bytes with SHA-256 {} were uploaded (ledger row {})",
            file.size, file.sha256, file.ledger_id
        )));
    }
    Ok(Served::Artifact(Artifact {
        path: target.to_owned(),
        info: ArtifactInfo {
            length,
            hashes,
            custom: Some(json!({
                "registry": registry.name,
                "project": project,
                "version": file.version,
                "filename": file.filename,
                "publisher": file.publisher,
                "provenance": file.provenance_kind,
                "signer": file.signer,
                "request_id": file.upload_request_id,
                "ledger_id": file.ledger_id,
            })),
        },
    }))
}

/// A PyPI project's index page as the backend serves it now (`GET /simple/<project>/`, HTML),
/// under the target path `target`.
pub async fn index_page(
    probe: &ProjectProbe,
    registry: &Registry,
    event: &FeedEvent,
    target: &str,
) -> Result<Served, ProbeError> {
    let path = format!("/simple/{}/", event.project);
    let limit = crate::trusted_publishing::backend::MAX_DOCUMENT_BYTES as u64;
    let Some((length, hashes)) = read_hashed(probe, registry, &path, Some("text/html"), limit).await? else {
        return Ok(Served::Missing);
    };
    Ok(Served::Artifact(Artifact {
        path: target.to_owned(),
        info: ArtifactInfo {
            length,
            hashes,
            custom: Some(json!({
                "registry": event.registry,
                "project": event.project,
                "index": true,
                "request_id": event.request_id,
            })),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_hashed_with_each_protocols_algorithms() {
        let mut pypi = Hashes::new(Protocol::Pypi);
        pypi.update(b"hello ");
        pypi.update(b"world");
        let (length, hashes) = pypi.finish();
        assert_eq!(length, 11);
        assert_eq!(
            hashes.get("sha256").map(String::as_str),
            Some("b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9")
        );
        assert_eq!(
            hashes.get("blake2b-256").map(String::as_str),
            Some("256c83b297114d201b30179f3f0ef0cace9783622da5974326b436178aeef610")
        );
        assert!(!hashes.contains_key("sha512"));
        let mut npm = Hashes::new(Protocol::Npm);
        npm.update(b"hello world");
        let (_, hashes) = npm.finish();
        assert_eq!(hashes.keys().copied().collect::<Vec<_>>(), ["sha256", "sha512"]);
        assert!(hashes["sha512"].starts_with("309ecc489c12d6eb4cc40f50c902f2b4"));
    }
}
