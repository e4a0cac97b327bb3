//! Transparency log entries: Rekor v1 (signed entry timestamp, inclusion proof, checkpoint)
//! and Rekor v2 (checkpoint with cosignatures, inclusion proof), and entry bodies.

pub mod checkpoint;
pub mod merkle;

use serde_json::Value;

use crate::bundle::{Bundle, Content, TlogEntry};
use crate::error::{Result, Step, VerifyError};
use crate::keys::pem_decode;
use crate::trust_root::{b64, TrustedRoot};

/// Whether the entry is from a Rekor v2 log: `hashedrekord` or `dsse` 0.0.2 (Rekor v1 logs
/// `intoto` 0.0.2 too, and `hashedrekord` and `dsse` 0.0.1).
fn is_rekor_v2(entry: &TlogEntry) -> bool {
    entry.version == "0.0.2" && matches!(entry.kind.as_str(), "hashedrekord" | "dsse")
}

fn err(reason: impl Into<String>) -> VerifyError {
    VerifyError::new(Step::Tlog, reason)
}

/// What the signer is, as log entry bodies name it: a certificate or a public key (DER).
#[derive(Debug, Clone, Copy)]
pub enum SignerDer<'a> {
    /// The leaf certificate.
    Certificate(&'a [u8]),
    /// A SubjectPublicKeyInfo.
    PublicKey(&'a [u8]),
}

impl SignerDer<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            SignerDer::Certificate(d) | SignerDer::PublicKey(d) => d,
        }
    }
}

/// The outcome of one verified entry.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedEntry {
    /// The integrated time, when the log vouched for it with a signed entry timestamp.
    pub integrated_time: Option<i64>,
}

/// Verifies one entry: log known and valid (at the integrated time, or at every one of
/// `signed_times` for entries without one), signed entry timestamp, inclusion proof and
/// checkpoint, and the body against the bundle's content and signer.
pub fn verify_entry(
    entry: &TlogEntry,
    bundle: &Bundle,
    signer: SignerDer<'_>,
    artifact_sha256: &[u8; 32],
    root: &TrustedRoot,
    now: i64,
    signed_times: &[i64],
) -> Result<VerifiedEntry> {
    let log = root
        .tlog(&entry.log_id)
        .ok_or_else(|| err("the entry is from a log that is not in the trusted root"))?;
    let body: Value = serde_json::from_slice(&entry.canonicalized_body).map_err(|e| err(format!("entry body: {e}")))?;
    if body["kind"].as_str() != Some(entry.kind.as_str()) || body["apiVersion"].as_str() != Some(entry.version.as_str())
    {
        return Err(err(
            "the entry body's kind or version differs from the bundle's kindVersion",
        ));
    }
    let mut integrated_time = None;
    match &entry.signed_entry_timestamp {
        Some(set) => {
            verify_set(entry, set, log)?;
            if entry.integrated_time > now + 60 {
                return Err(err("the integrated time is in the future"));
            }
            if !log.validity.contains(entry.integrated_time) {
                return Err(err("the integrated time is outside the log key's validity"));
            }
            integrated_time = Some(entry.integrated_time);
        }
        None if entry.inclusion_proof.is_none() => {
            return Err(err(
                "the entry has neither a signed entry timestamp nor an inclusion proof",
            ));
        }
        None => {
            // No integrated time (Rekor v2): the log key must be valid at the signed times.
            if signed_times.iter().any(|t| !log.validity.contains(*t)) {
                return Err(err("a signed timestamp is outside the log key's validity"));
            }
        }
    }
    if let Some(proof) = &entry.inclusion_proof {
        verify_proof(entry, proof, log)?;
        // A Rekor v2 log is one tree: the entry's index is its proof's (Rekor v1 entries carry
        // the global index, which the signed entry timestamp covers, and a shard-local one in
        // the proof). Two indexes for one entry is two readings: refused.
        if is_rekor_v2(entry) && entry.log_index != proof.log_index {
            return Err(VerifyError::new(
                Step::InclusionProof,
                format!(
                    "the entry's logIndex {} differs from its inclusion proof's {} (a Rekor v2 entry has one index)",
                    entry.log_index, proof.log_index
                ),
            ));
        }
    }
    verify_body(entry, &body, bundle, signer, artifact_sha256)?;
    Ok(VerifiedEntry { integrated_time })
}

fn verify_set(entry: &TlogEntry, set: &[u8], log: &crate::trust_root::LogKey) -> Result<()> {
    use base64::Engine;
    // Canonical JSON (sorted keys, no spaces) of the entry as Rekor signed it.
    let payload = format!(
        "{{\"body\":\"{}\",\"integratedTime\":{},\"logID\":\"{}\",\"logIndex\":{}}}",
        base64::engine::general_purpose::STANDARD.encode(&entry.canonicalized_body),
        entry.integrated_time,
        hex::encode(&entry.log_id),
        entry.log_index
    );
    log.key
        .verify(log.hash, payload.as_bytes(), set)
        .map_err(|e| err(format!("signed entry timestamp: {e}")))
}

fn verify_proof(
    entry: &TlogEntry,
    proof: &crate::bundle::InclusionProof,
    log: &crate::trust_root::LogKey,
) -> Result<()> {
    let perr = |r: String| VerifyError::new(Step::InclusionProof, r);
    let root_hash: [u8; 32] = proof
        .root_hash
        .as_slice()
        .try_into()
        .map_err(|_| perr("root hash is not 32 bytes".into()))?;
    let hashes = proof
        .hashes
        .iter()
        .map(|h| <[u8; 32]>::try_from(h.as_slice()).map_err(|_| perr("a proof hash is not 32 bytes".into())))
        .collect::<Result<Vec<_>>>()?;
    let leaf = merkle::leaf_hash(&entry.canonicalized_body);
    merkle::verify_inclusion(&leaf, proof.log_index, proof.tree_size, &hashes, &root_hash)?;
    let note = proof
        .checkpoint
        .as_deref()
        .ok_or_else(|| perr("the inclusion proof has no checkpoint".into()))?;
    checkpoint::verify_checkpoint(note, log)?.check_proof(proof.tree_size, &root_hash)
}

fn pem_der(b64_pem: &str) -> Option<Vec<u8>> {
    let pem = String::from_utf8(b64(b64_pem).ok()?).ok()?;
    pem_decode(&pem).map(|(_, der)| der)
}

fn same_signer(named: Option<Vec<u8>>, signer: SignerDer<'_>) -> Result<()> {
    match named {
        Some(der) if der == signer.bytes() => Ok(()),
        _ => Err(err("the entry names a different certificate or key than the bundle")),
    }
}

/// The logged signatures must be exactly the envelope's, in order, each by the bundle's signer.
fn same_signatures(
    logged: &Value,
    envelope: &[Vec<u8>],
    signature_matches: impl Fn(&Value, &[u8]) -> bool,
    signer_of: impl Fn(&Value) -> Option<Vec<u8>>,
    signer: SignerDer<'_>,
) -> Result<()> {
    let logged = logged.as_array().ok_or_else(|| err("the entry has no signatures"))?;
    if logged.len() != envelope.len() {
        return Err(err("the entry and the envelope have different signatures"));
    }
    for (entry, sig) in logged.iter().zip(envelope) {
        if !signature_matches(entry, sig) {
            return Err(err("the entry holds a different DSSE signature"));
        }
        same_signer(signer_of(entry), signer)?;
    }
    Ok(())
}

fn verifier_der(v: &Value) -> Option<Vec<u8>> {
    v["x509Certificate"]["rawBytes"]
        .as_str()
        .or_else(|| v["publicKey"]["rawBytes"].as_str())
        .and_then(|s| b64(s).ok())
}

fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

fn verify_body(
    entry: &TlogEntry,
    body: &Value,
    bundle: &Bundle,
    signer: SignerDer<'_>,
    artifact_sha256: &[u8; 32],
) -> Result<()> {
    let spec = &body["spec"];
    match (entry.kind.as_str(), entry.version.as_str(), &bundle.content) {
        ("hashedrekord", "0.0.1", Content::MessageSignature { signature, .. }) => {
            let hash = &spec["data"]["hash"];
            if hash["algorithm"].as_str() != Some("sha256")
                || hash["value"].as_str().and_then(|v| hex::decode(v).ok()).as_deref()
                    != Some(artifact_sha256.as_slice())
            {
                return Err(err("the entry is for a different artifact digest"));
            }
            if spec["signature"]["content"].as_str().and_then(|s| b64(s).ok()).as_ref() != Some(signature) {
                return Err(err("the entry holds a different signature"));
            }
            same_signer(
                spec["signature"]["publicKey"]["content"].as_str().and_then(pem_der),
                signer,
            )
        }
        ("hashedrekord", "0.0.2", Content::MessageSignature { signature, .. }) => {
            let v2 = &spec["hashedRekordV002"];
            if v2["data"]["algorithm"].as_str() != Some("SHA2_256")
                || v2["data"]["digest"].as_str().and_then(|d| b64(d).ok()).as_deref()
                    != Some(artifact_sha256.as_slice())
            {
                return Err(err("the entry is for a different artifact digest"));
            }
            if v2["signature"]["content"].as_str().and_then(|s| b64(s).ok()).as_ref() != Some(signature) {
                return Err(err("the entry holds a different signature"));
            }
            same_signer(verifier_der(&v2["signature"]["verifier"]), signer)
        }
        ("hashedrekord", "0.0.2", Content::Dsse(envelope)) => {
            // Rekor v2 logs a DSSE envelope as a hashedrekord over PAE(payloadType, payload).
            let v2 = &spec["hashedRekordV002"];
            let pae = crate::content::pae(&envelope.payload_type, &envelope.payload);
            if v2["data"]["algorithm"].as_str() != Some("SHA2_256")
                || v2["data"]["digest"].as_str().and_then(|d| b64(d).ok()) != Some(sha256(&pae))
            {
                return Err(err("the entry is for a different DSSE envelope"));
            }
            let [signature] = envelope.signatures.as_slice() else {
                return Err(err("a hashedrekord entry covers exactly one DSSE signature"));
            };
            if v2["signature"]["content"].as_str().and_then(|s| b64(s).ok()).as_ref() != Some(signature) {
                return Err(err("the entry holds a different signature"));
            }
            same_signer(verifier_der(&v2["signature"]["verifier"]), signer)
        }
        ("dsse", "0.0.1", Content::Dsse(envelope)) => {
            let hash = &spec["payloadHash"];
            if hash["algorithm"].as_str() != Some("sha256")
                || hash["value"].as_str().and_then(|v| hex::decode(v).ok()) != Some(sha256(&envelope.payload))
            {
                return Err(err("the entry is for a different DSSE payload"));
            }
            same_signatures(
                &spec["signatures"],
                &envelope.signatures,
                |logged, sig| logged["signature"].as_str().and_then(|s| b64(s).ok()).as_deref() == Some(sig),
                |logged| logged["verifier"].as_str().and_then(pem_der),
                signer,
            )
        }
        ("dsse", "0.0.2", Content::Dsse(envelope)) => {
            let v2 = &spec["dsseV002"];
            if v2["payloadHash"]["algorithm"].as_str() != Some("SHA2_256")
                || v2["payloadHash"]["digest"].as_str().and_then(|d| b64(d).ok()) != Some(sha256(&envelope.payload))
            {
                return Err(err("the entry is for a different DSSE payload"));
            }
            same_signatures(
                &v2["signatures"],
                &envelope.signatures,
                |logged, sig| logged["content"].as_str().and_then(|s| b64(s).ok()).as_deref() == Some(sig),
                |logged| verifier_der(&logged["verifier"]),
                signer,
            )
        }
        ("intoto", "0.0.2", Content::Dsse(envelope)) => {
            let content = &spec["content"];
            let hash = &content["payloadHash"];
            if hash["algorithm"].as_str() != Some("sha256")
                || hash["value"].as_str().and_then(|v| hex::decode(v).ok()) != Some(sha256(&envelope.payload))
            {
                return Err(err("the entry is for a different in-toto payload"));
            }
            let logged_env = &content["envelope"];
            if logged_env["payloadType"].as_str() != Some(envelope.payload_type.as_str()) {
                return Err(err("the entry has a different payload type"));
            }
            // intoto 0.0.2 stores signatures base64-encoded twice.
            same_signatures(
                &logged_env["signatures"],
                &envelope.signatures,
                |logged, sig| {
                    let once = logged["sig"].as_str().and_then(|s| b64(s).ok());
                    let twice = once
                        .as_ref()
                        .and_then(|o| std::str::from_utf8(o).ok())
                        .and_then(|s| b64(s).ok());
                    once.as_deref() == Some(sig) || twice.as_deref() == Some(sig)
                },
                |logged| logged["publicKey"].as_str().and_then(pem_der),
                signer,
            )
        }
        (kind, version, _) => Err(err(format!(
            "unsupported entry {kind} {version} for this bundle's content"
        ))),
    }
}
