//! Sigstore bundles (protobuf-specs `Bundle` in JSON), media types v0.1 to v0.3 in both
//! spellings. Parsing is strict about what verification needs and fails closed on unknown
//! versions, missing parts and oversized input.

use serde::Deserialize;

use crate::error::{Result, Step, VerifyError};
use crate::trust_root::b64;

/// Largest bundle accepted, in bytes.
pub const MAX_BUNDLE_BYTES: usize = 4 << 20;

/// Most transparency log entries a bundle may carry (sigstore-go's limit).
pub const MAX_TLOG_ENTRIES: usize = 32;

/// Most RFC 3161 timestamps a bundle may carry (sigstore-go's limit).
pub const MAX_TIMESTAMPS: usize = 32;

/// Refuses more than [`MAX_TLOG_ENTRIES`] log entries or [`MAX_TIMESTAMPS`] timestamps, each of
/// which costs a signature check or more, with a stable message.
pub fn check_limits(tlog_entries: usize, timestamps: usize) -> Result<()> {
    if tlog_entries > MAX_TLOG_ENTRIES {
        return Err(err(format!(
            "too many transparency log entries: {tlog_entries} > {MAX_TLOG_ENTRIES}"
        )));
    }
    if timestamps > MAX_TIMESTAMPS {
        return Err(err(format!(
            "too many signed timestamps: {timestamps} > {MAX_TIMESTAMPS}"
        )));
    }
    Ok(())
}

/// A bundle format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BundleVersion {
    /// `application/vnd.dev.sigstore.bundle+json;version=0.1`: inclusion proof optional.
    V0_1,
    /// `…;version=0.2`: inclusion proof required.
    V0_2,
    /// `…;version=0.3` or `application/vnd.dev.sigstore.bundle.v0.3+json`: single certificate.
    V0_3,
}

impl BundleVersion {
    /// Recognises a bundle media type.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            "application/vnd.dev.sigstore.bundle+json;version=0.1" => Some(BundleVersion::V0_1),
            "application/vnd.dev.sigstore.bundle+json;version=0.2" => Some(BundleVersion::V0_2),
            "application/vnd.dev.sigstore.bundle+json;version=0.3"
            | "application/vnd.dev.sigstore.bundle.v0.3+json" => Some(BundleVersion::V0_3),
            _ => None,
        }
    }
}

/// How the signer is identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerMaterial {
    /// A Fulcio leaf certificate (DER), plus any further certificates the bundle carried.
    Certificate {
        /// The leaf.
        leaf: Vec<u8>,
        /// Further certificates from an `x509CertificateChain` (only checked, never trusted).
        extra: Vec<Vec<u8>>,
    },
    /// A managed public key, named by its hint.
    PublicKey {
        /// The key hint, if any.
        hint: Option<String>,
    },
}

/// A transparency log entry as carried in the bundle.
#[derive(Debug, Clone)]
pub struct TlogEntry {
    /// Log index.
    pub log_index: u64,
    /// Log id.
    pub log_id: Vec<u8>,
    /// Entry kind (`hashedrekord`, `dsse`, `intoto`).
    pub kind: String,
    /// Entry version (`0.0.1`, `0.0.2`).
    pub version: String,
    /// Integrated time (0 for Rekor v2).
    pub integrated_time: i64,
    /// Signed entry timestamp, if present.
    pub signed_entry_timestamp: Option<Vec<u8>>,
    /// Inclusion proof, if present.
    pub inclusion_proof: Option<InclusionProof>,
    /// The canonicalized entry body.
    pub canonicalized_body: Vec<u8>,
}

/// An inclusion proof with its checkpoint.
#[derive(Debug, Clone)]
pub struct InclusionProof {
    /// Index of the entry.
    pub log_index: u64,
    /// Root hash.
    pub root_hash: Vec<u8>,
    /// Tree size.
    pub tree_size: u64,
    /// Audit path.
    pub hashes: Vec<Vec<u8>>,
    /// Signed checkpoint note (required at verification; parsed leniently so the proof itself
    /// is checked first and the refusal names the first real fault).
    pub checkpoint: Option<String>,
}

/// What was signed.
#[derive(Debug, Clone)]
pub enum Content {
    /// A signature over the artifact itself.
    MessageSignature {
        /// The digest the bundle claims for the artifact, if any: (algorithm, bytes).
        digest: Option<(String, Vec<u8>)>,
        /// The signature.
        signature: Vec<u8>,
    },
    /// A DSSE envelope.
    Dsse(DsseEnvelope),
}

/// A DSSE envelope.
#[derive(Debug, Clone)]
pub struct DsseEnvelope {
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Payload type.
    pub payload_type: String,
    /// Signatures (bytes).
    pub signatures: Vec<Vec<u8>>,
}

/// A parsed bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Format version.
    pub version: BundleVersion,
    /// Certificate or key.
    pub signer: SignerMaterial,
    /// Transparency log entries.
    pub tlog_entries: Vec<TlogEntry>,
    /// RFC 3161 timestamp tokens (DER).
    pub timestamps: Vec<Vec<u8>>,
    /// What was signed.
    pub content: Content,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBundle {
    media_type: String,
    verification_material: RawMaterial,
    message_signature: Option<RawMessageSignature>,
    dsse_envelope: Option<RawEnvelope>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMaterial {
    certificate: Option<RawBytes>,
    x509_certificate_chain: Option<RawChain>,
    public_key: Option<RawKeyId>,
    #[serde(default)]
    tlog_entries: Vec<RawEntry>,
    timestamp_verification_data: Option<RawTimestamps>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: Option<String>,
}

#[derive(Deserialize)]
struct RawChain {
    #[serde(default)]
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
struct RawKeyId {
    hint: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    log_index: Option<serde_json::Value>,
    log_id: Option<RawLogId>,
    kind_version: Option<RawKindVersion>,
    integrated_time: Option<serde_json::Value>,
    inclusion_promise: Option<RawPromise>,
    inclusion_proof: Option<RawProof>,
    canonicalized_body: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogId {
    key_id: String,
}

#[derive(Deserialize)]
struct RawKindVersion {
    kind: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPromise {
    signed_entry_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProof {
    log_index: Option<serde_json::Value>,
    root_hash: Option<String>,
    tree_size: Option<serde_json::Value>,
    #[serde(default)]
    hashes: Vec<String>,
    checkpoint: Option<RawCheckpoint>,
}

#[derive(Deserialize)]
struct RawCheckpoint {
    envelope: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTimestamps {
    #[serde(default)]
    rfc3161_timestamps: Vec<RawSignedTimestamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSignedTimestamp {
    signed_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMessageSignature {
    message_digest: Option<RawDigest>,
    signature: String,
}

#[derive(Deserialize)]
struct RawDigest {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<RawEnvelopeSignature>,
}

#[derive(Deserialize)]
struct RawEnvelopeSignature {
    sig: String,
}

fn err(reason: impl Into<String>) -> VerifyError {
    VerifyError::new(Step::Bundle, reason)
}

fn bytes(text: &str, what: &str) -> Result<Vec<u8>> {
    b64(text).map_err(|e| err(format!("{what} is not base64: {e}")))
}

/// Protobuf JSON maps int64 to strings; accept both forms, refuse negatives.
fn uint(value: Option<&serde_json::Value>, what: &str) -> Result<u64> {
    let value = value.ok_or_else(|| err(format!("{what} is missing")))?;
    let parsed = match value {
        serde_json::Value::String(s) => s.parse::<i64>().ok(),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    };
    match parsed {
        Some(n) if n >= 0 => Ok(n as u64),
        Some(_) => Err(err(format!("{what} is negative"))),
        None => Err(err(format!("{what} is not an integer"))),
    }
}

impl Bundle {
    /// Parses a bundle from its JSON.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        if json.len() > MAX_BUNDLE_BYTES {
            return Err(err(format!("the bundle is larger than {MAX_BUNDLE_BYTES} bytes")));
        }
        let raw: RawBundle = serde_json::from_slice(json).map_err(|e| err(format!("not a bundle: {e}")))?;
        let version = BundleVersion::from_media_type(&raw.media_type)
            .ok_or_else(|| err(format!("unsupported bundle media type {:?}", raw.media_type)))?;
        let material = raw.verification_material;

        let signer = match (
            &material.certificate,
            &material.x509_certificate_chain,
            &material.public_key,
        ) {
            (Some(cert), None, None) => {
                let leaf = cert
                    .raw_bytes
                    .as_deref()
                    .ok_or_else(|| err("the certificate is empty"))?;
                SignerMaterial::Certificate {
                    leaf: bytes(leaf, "the certificate")?,
                    extra: Vec::new(),
                }
            }
            (None, Some(chain), None) => {
                if version == BundleVersion::V0_3 {
                    return Err(err("v0.3 bundles carry a single certificate, not a chain"));
                }
                let mut certs = chain
                    .certificates
                    .iter()
                    .map(|c| {
                        c.raw_bytes
                            .as_deref()
                            .ok_or_else(|| err("empty certificate in the chain"))
                            .and_then(|b| bytes(b, "a chain certificate"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                if certs.is_empty() {
                    return Err(err("the certificate chain is empty"));
                }
                let leaf = certs.remove(0);
                SignerMaterial::Certificate { leaf, extra: certs }
            }
            (None, None, Some(key)) => SignerMaterial::PublicKey { hint: key.hint.clone() },
            (None, None, None) => return Err(err("the bundle has no certificate or public key")),
            _ => return Err(err("the bundle has more than one kind of verification material")),
        };

        check_limits(
            material.tlog_entries.len(),
            material
                .timestamp_verification_data
                .as_ref()
                .map_or(0, |t| t.rfc3161_timestamps.len()),
        )?;
        let tlog_entries = material
            .tlog_entries
            .iter()
            .enumerate()
            .map(|(i, e)| parse_entry(e, version, i))
            .collect::<Result<Vec<_>>>()?;
        let timestamps = match &material.timestamp_verification_data {
            Some(t) => t
                .rfc3161_timestamps
                .iter()
                .map(|t| bytes(&t.signed_timestamp, "an RFC 3161 timestamp"))
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };

        let content = match (raw.message_signature, raw.dsse_envelope) {
            (Some(m), None) => Content::MessageSignature {
                digest: match m.message_digest {
                    Some(d) => Some((d.algorithm, bytes(&d.digest, "the message digest")?)),
                    None => None,
                },
                signature: bytes(&m.signature, "the message signature")?,
            },
            (None, Some(e)) => Content::Dsse(DsseEnvelope {
                payload: bytes(&e.payload, "the DSSE payload")?,
                payload_type: e.payload_type,
                signatures: e
                    .signatures
                    .iter()
                    .map(|s| bytes(&s.sig, "a DSSE signature"))
                    .collect::<Result<_>>()?,
            }),
            (None, None) => return Err(err("the bundle has neither a message signature nor a DSSE envelope")),
            (Some(_), Some(_)) => return Err(err("the bundle has both a message signature and a DSSE envelope")),
        };
        if let Content::MessageSignature { signature, .. } = &content {
            if signature.is_empty() {
                return Err(err("the message signature is empty"));
            }
        }
        Ok(Bundle {
            version,
            signer,
            tlog_entries,
            timestamps,
            content,
        })
    }

    /// The signature bytes that timestamps and log entries cover.
    pub fn signature_bytes(&self) -> Option<&[u8]> {
        match &self.content {
            Content::MessageSignature { signature, .. } => Some(signature),
            Content::Dsse(e) => e.signatures.first().map(Vec::as_slice),
        }
    }
}

fn parse_entry(raw: &RawEntry, version: BundleVersion, i: usize) -> Result<TlogEntry> {
    let what = |f: &str| format!("tlogEntries[{i}].{f}");
    let kind_version = raw
        .kind_version
        .as_ref()
        .ok_or_else(|| err(format!("{} is missing", what("kindVersion"))))?;
    let log_id = raw
        .log_id
        .as_ref()
        .ok_or_else(|| err(format!("{} is missing", what("logId"))))?;
    let body = raw
        .canonicalized_body
        .as_deref()
        .ok_or_else(|| err(format!("{} is missing", what("canonicalizedBody"))))?;
    let inclusion_proof = match &raw.inclusion_proof {
        None => None,
        Some(p) => Some(InclusionProof {
            log_index: uint(p.log_index.as_ref(), &what("inclusionProof.logIndex"))?,
            root_hash: bytes(p.root_hash.as_deref().unwrap_or(""), &what("inclusionProof.rootHash"))?,
            tree_size: uint(p.tree_size.as_ref(), &what("inclusionProof.treeSize"))?,
            hashes: p
                .hashes
                .iter()
                .map(|h| bytes(h, &what("inclusionProof.hashes")))
                .collect::<Result<_>>()?,
            checkpoint: p.checkpoint.as_ref().map(|c| c.envelope.clone()),
        }),
    };
    if version >= BundleVersion::V0_2 && inclusion_proof.is_none() {
        return Err(err(format!(
            "{} is required from bundle v0.2 on",
            what("inclusionProof")
        )));
    }
    let integrated_time = match &raw.integrated_time {
        None => 0,
        Some(v) => uint(Some(v), &what("integratedTime"))? as i64,
    };
    Ok(TlogEntry {
        log_index: uint(raw.log_index.as_ref(), &what("logIndex"))?,
        log_id: bytes(&log_id.key_id, &what("logId.keyId"))?,
        kind: kind_version.kind.clone(),
        version: kind_version.version.clone(),
        integrated_time,
        signed_entry_timestamp: match &raw.inclusion_promise {
            Some(p) => Some(bytes(&p.signed_entry_timestamp, &what("inclusionPromise"))?),
            None => None,
        },
        inclusion_proof,
        canonicalized_body: bytes(body, &what("canonicalizedBody"))?,
    })
}
