//! What was signed: the artifact (message signature) or a DSSE envelope carrying an in-toto
//! statement whose subject must be the artifact.

use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use crate::bundle::{Content, DsseEnvelope};
use crate::error::{Result, Step, VerifyError};
use crate::keys::{HashAlg, PublicKey};

/// The payload type of in-toto statements in DSSE envelopes.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// The artifact a bundle is checked against: its bytes, or only its SHA-256.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// SHA-256 of the artifact.
    pub sha256: [u8; 32],
    /// SHA-512 of the artifact, when its bytes were given.
    pub sha512: Option<[u8; 64]>,
    /// The bytes, when given (needed for signatures that do not use SHA-256).
    pub bytes: Option<Vec<u8>>,
}

impl Artifact {
    /// An artifact given by its bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Artifact {
            sha256: Sha256::digest(&bytes).into(),
            sha512: Some(Sha512::digest(&bytes).into()),
            bytes: Some(bytes),
        }
    }

    /// An artifact known only by its SHA-256.
    pub fn from_sha256(sha256: [u8; 32]) -> Self {
        Artifact {
            sha256,
            sha512: None,
            bytes: None,
        }
    }

    /// An artifact known by its SHA-256 and SHA-512 (e.g. hashed while streaming).
    pub fn from_digests(sha256: [u8; 32], sha512: [u8; 64]) -> Self {
        Artifact {
            sha256,
            sha512: Some(sha512),
            bytes: None,
        }
    }
}

/// The in-toto statement facts policy may look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// `predicateType`.
    pub predicate_type: String,
    /// Subject names and their digests (algorithm, lower-case hex).
    pub subjects: Vec<(String, Vec<(String, String)>)>,
    /// The predicate JSON.
    pub predicate: Value,
}

fn sig_err(reason: impl Into<String>) -> VerifyError {
    VerifyError::new(Step::Signature, reason)
}

/// DSSE pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Verifies the signature of the bundle's content with `key`, and for DSSE the statement's
/// subject against the artifact. Returns the statement for DSSE bundles.
pub fn verify_content(content: &Content, key: &PublicKey, artifact: &Artifact) -> Result<Option<Statement>> {
    match content {
        Content::MessageSignature { digest, signature } => {
            let hash = match digest {
                Some((algorithm, claimed)) => checked_message_digest(algorithm, claimed, artifact)?,
                None => key.default_hash(),
            };
            let result = match (&artifact.bytes, key) {
                (Some(bytes), _) => key.verify(hash, bytes, signature),
                (None, PublicKey::Ed25519(_)) => {
                    return Err(sig_err(
                        "an Ed25519 message signature can only be checked against the artifact's bytes",
                    ))
                }
                (None, _) => {
                    let known = artifact_digest(artifact, hash).ok_or_else(|| {
                        sig_err(format!(
                            "the signature is over the artifact's {}, which is not known here: the artifact's bytes are needed",
                            hash_name(hash)
                        ))
                    })?;
                    key.verify_prehash(&known, signature)
                }
            };
            result.map_err(|e| sig_err(format!("artifact signature: {e}")))?;
            Ok(None)
        }
        Content::Dsse(envelope) => {
            verify_envelope(envelope, key)?;
            let statement = statement(&envelope.payload)?;
            check_subject(&statement, artifact)?;
            Ok(Some(statement))
        }
    }
}

/// The hash a message signature was made with: the one its `messageDigest` names, as
/// sigstore-js uses it (so a P-384 key over a `SHA2_256` digest, as sigstore-python signed in
/// 2023, is checked with SHA-256, as sigstore-python and sigstore-js check it). The digest must
/// be the artifact's under that algorithm; an unknown algorithm is refused.
fn checked_message_digest(algorithm: &str, claimed: &[u8], artifact: &Artifact) -> Result<HashAlg> {
    let hash = match algorithm {
        "SHA2_256" => HashAlg::Sha256,
        "SHA2_384" => HashAlg::Sha384,
        "SHA2_512" => HashAlg::Sha512,
        other => {
            return Err(sig_err(format!(
                "unsupported message digest algorithm {:?} (SHA2_256, SHA2_384 or SHA2_512)",
                other.chars().take(40).collect::<String>()
            )))
        }
    };
    let actual = artifact_digest(artifact, hash).ok_or_else(|| {
        sig_err(format!(
            "the bundle's message digest is a {}, which is not known for this artifact: its bytes are needed",
            hash_name(hash)
        ))
    })?;
    if claimed != actual.as_slice() {
        return Err(sig_err(format!(
            "the bundle's message digest is not the artifact's {}",
            hash_name(hash)
        )));
    }
    Ok(hash)
}

/// The artifact's digest under `hash`, when its bytes or that digest are known.
fn artifact_digest(artifact: &Artifact, hash: HashAlg) -> Option<Vec<u8>> {
    match (hash, &artifact.bytes) {
        (HashAlg::Sha256, _) => Some(artifact.sha256.to_vec()),
        (HashAlg::Sha512, _) if artifact.sha512.is_some() => artifact.sha512.map(|d| d.to_vec()),
        (_, Some(bytes)) => Some(hash.digest(bytes)),
        (_, None) => None,
    }
}

fn hash_name(hash: HashAlg) -> &'static str {
    match hash {
        HashAlg::Sha256 => "SHA-256",
        HashAlg::Sha384 => "SHA-384",
        HashAlg::Sha512 => "SHA-512",
    }
}

fn verify_envelope(envelope: &DsseEnvelope, key: &PublicKey) -> Result<()> {
    if envelope.payload_type != IN_TOTO {
        return Err(sig_err(format!(
            "unsupported DSSE payload type {:?}",
            envelope.payload_type
        )));
    }
    let [signature] = envelope.signatures.as_slice() else {
        return Err(sig_err(format!(
            "the envelope must carry exactly one signature, not {}",
            envelope.signatures.len()
        )));
    };
    key.verify(
        key.default_hash(),
        &pae(&envelope.payload_type, &envelope.payload),
        signature,
    )
    .map_err(|e| sig_err(format!("DSSE signature: {e}")))
}

fn subject_err(reason: impl Into<String>) -> VerifyError {
    VerifyError::new(Step::Subject, reason)
}

/// Parses an in-toto statement (v0.1 or v1).
pub fn statement(payload: &[u8]) -> Result<Statement> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| subject_err(format!("the payload is not JSON: {e}")))?;
    match v["_type"].as_str() {
        Some("https://in-toto.io/Statement/v1") | Some("https://in-toto.io/Statement/v0.1") => {}
        other => return Err(subject_err(format!("not an in-toto statement (_type {other:?})"))),
    }
    let predicate_type = v["predicateType"]
        .as_str()
        .ok_or_else(|| subject_err("the statement has no predicateType"))?;
    let subjects = v["subject"]
        .as_array()
        .ok_or_else(|| subject_err("the statement has no subject"))?
        .iter()
        .map(|s| {
            let name = s["name"].as_str().unwrap_or_default().to_owned();
            let digests = s["digest"]
                .as_object()
                .map(|d| {
                    d.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_ascii_lowercase())))
                        .collect()
                })
                .unwrap_or_default();
            (name, digests)
        })
        .collect();
    Ok(Statement {
        predicate_type: predicate_type.to_owned(),
        subjects,
        predicate: v["predicate"].clone(),
    })
}

/// Whether some subject's digest equals the artifact's (SHA-256, or SHA-512 when known).
pub fn check_subject(statement: &Statement, artifact: &Artifact) -> Result<()> {
    let sha256 = hex::encode(artifact.sha256);
    let sha512 = artifact.sha512.map(hex::encode);
    let matches = statement.subjects.iter().any(|(_, digests)| {
        digests.iter().any(|(alg, value)| match alg.as_str() {
            "sha256" => *value == sha256,
            "sha512" => sha512.as_deref() == Some(value.as_str()),
            _ => false,
        })
    });
    if matches {
        Ok(())
    } else {
        Err(subject_err("no subject of the statement has the artifact's digest"))
    }
}

#[cfg(test)]
mod tests;
