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
            if let Some((algorithm, claimed)) = digest {
                if algorithm == "SHA2_256" && claimed.as_slice() != artifact.sha256 {
                    return Err(sig_err("the bundle's message digest is not the artifact's SHA-256"));
                }
            }
            let hash = key.default_hash();
            let result = match (&artifact.bytes, hash, key) {
                (Some(bytes), _, _) => key.verify(hash, bytes, signature),
                (None, HashAlg::Sha256, _) => key.verify_prehash(&artifact.sha256, signature),
                (None, _, _) => {
                    return Err(sig_err(
                        "this key signs with a digest other than SHA-256: the artifact's bytes are needed",
                    ))
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
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn subjects_match_by_sha256_or_sha512() {
        let artifact = Artifact::from_bytes(b"abc".to_vec());
        let make = |alg: &str, value: String| Statement {
            predicate_type: "p".into(),
            subjects: vec![("x".into(), vec![(alg.into(), value)])],
            predicate: Value::Null,
        };
        assert!(check_subject(&make("sha256", hex::encode(artifact.sha256)), &artifact).is_ok());
        assert!(check_subject(&make("sha512", hex::encode(Sha512::digest(b"abc"))), &artifact).is_ok());
        assert!(check_subject(&make("sha256", hex::encode(Sha256::digest(b"abd"))), &artifact).is_err());
        let digest_only = Artifact::from_sha256(artifact.sha256);
        assert!(check_subject(&make("sha512", hex::encode(Sha512::digest(b"abc"))), &digest_only).is_err());
    }
}
