//! The Sigstore trusted root (`trusted_root.json`, protobuf-specs `TrustedRoot` in JSON):
//! Fulcio CAs, Rekor and CT log keys, timestamp authorities, each with a validity window.
//! Parsed once into keys and DER certificates; the raw JSON's SHA-256 is its revision.

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Result, Step, VerifyError};
use crate::keys::{HashAlg, PublicKey};

/// A validity window in Unix seconds; `end` is inclusive and open when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First second of validity.
    pub start: i64,
    /// Last second of validity, if bounded.
    pub end: Option<i64>,
}

impl Validity {
    /// Whether `t` (Unix seconds) falls inside the window (both ends inclusive).
    pub fn contains(&self, t: i64) -> bool {
        t >= self.start && self.end.is_none_or(|end| t <= end)
    }
}

/// A transparency log (Rekor) or CT log key.
#[derive(Debug, Clone)]
pub struct LogKey {
    /// The log's base URL.
    pub base_url: String,
    /// The log id (SHA-256 of the DER public key for Rekor v1 and CT logs).
    pub log_id: Vec<u8>,
    /// The key.
    pub key: PublicKey,
    /// The DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// The hash its signatures use.
    pub hash: HashAlg,
    /// When the key may be used.
    pub validity: Validity,
}

/// A certificate authority (Fulcio) or timestamp authority.
#[derive(Debug, Clone)]
pub struct Authority {
    /// Its URI.
    pub uri: String,
    /// DER certificates, issuing certificate first, root last (as the trusted root lists them).
    pub chain: Vec<Vec<u8>>,
    /// When it may be used.
    pub validity: Validity,
    /// The chain parsed, with each certificate's signature by the next (and the root's own)
    /// checked once, on first use: these signatures do not change from bundle to bundle.
    pub(crate) checked_chain: std::sync::OnceLock<std::result::Result<Vec<x509_cert::Certificate>, String>>,
}

impl Authority {
    /// The parsed chain, its internal signatures verified (computed once).
    pub fn verified_chain(&self) -> std::result::Result<&[x509_cert::Certificate], String> {
        self.checked_chain
            .get_or_init(|| {
                let certs = self
                    .chain
                    .iter()
                    .map(|der| crate::cert::parse(der).map_err(|e| e.reason))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                for (i, (cert, der)) in certs.iter().zip(&self.chain).enumerate() {
                    let parent = certs.get(i + 1).unwrap_or(cert);
                    crate::cert::verify_issued_by(der, parent).map_err(|e| format!("{}: {}", self.uri, e.reason))?;
                }
                Ok(certs)
            })
            .as_ref()
            .map(Vec::as_slice)
            .map_err(Clone::clone)
    }
}

/// A parsed trusted root.
#[derive(Debug, Clone)]
pub struct TrustedRoot {
    /// Rekor logs.
    pub tlogs: Vec<LogKey>,
    /// Certificate transparency logs.
    pub ctlogs: Vec<LogKey>,
    /// Fulcio certificate authorities.
    pub certificate_authorities: Vec<Authority>,
    /// RFC 3161 timestamp authorities.
    pub timestamp_authorities: Vec<Authority>,
    /// SHA-256 of the JSON it was parsed from: part of every cache key.
    pub revision: [u8; 32],
    /// Log keys left out because their type is not supported (e.g. PKCS#1 RSA), with why.
    pub skipped: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRoot {
    media_type: Option<String>,
    #[serde(default)]
    tlogs: Vec<RawLog>,
    #[serde(default)]
    ctlogs: Vec<RawLog>,
    #[serde(default)]
    certificate_authorities: Vec<RawAuthority>,
    #[serde(default)]
    timestamp_authorities: Vec<RawAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLog {
    base_url: Option<String>,
    hash_algorithm: Option<String>,
    public_key: RawPublicKey,
    log_id: RawLogId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPublicKey {
    raw_bytes: Option<String>,
    key_details: Option<String>,
    valid_for: Option<RawValidity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogId {
    key_id: String,
}

#[derive(Deserialize)]
struct RawValidity {
    start: Option<String>,
    end: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAuthority {
    uri: Option<String>,
    cert_chain: RawCertChain,
    valid_for: Option<RawValidity>,
}

#[derive(Deserialize)]
struct RawCertChain {
    certificates: Vec<RawCert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCert {
    raw_bytes: String,
}

/// Decodes standard base64 (the protobuf JSON mapping of `bytes`), accepting URL-safe too
/// and ignoring line breaks (some tools wrap base64 at 76 characters).
pub fn b64(text: &str) -> std::result::Result<Vec<u8>, base64::DecodeError> {
    let compact: std::borrow::Cow<'_, str> = if text.bytes().any(|b| b.is_ascii_whitespace()) {
        text.chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect::<String>()
            .into()
    } else {
        text.into()
    };
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(compact.as_bytes()))
}

/// Parses an RFC 3339 timestamp into Unix seconds.
pub fn rfc3339(text: &str) -> std::result::Result<i64, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))
}

fn err(reason: impl Into<String>) -> VerifyError {
    VerifyError::new(Step::TrustedRoot, reason)
}

fn validity(raw: Option<&RawValidity>, what: &str) -> Result<Validity> {
    let raw = raw.ok_or_else(|| err(format!("{what} has no validity window")))?;
    let start = raw
        .start
        .as_deref()
        .ok_or_else(|| err(format!("{what} has no validity start")))
        .and_then(|s| rfc3339(s).map_err(err))?;
    let end = raw.end.as_deref().map(rfc3339).transpose().map_err(err)?;
    Ok(Validity { start, end })
}

fn log(raw: RawLog, what: &str) -> Result<LogKey> {
    let spki_der = raw
        .public_key
        .raw_bytes
        .as_deref()
        .ok_or_else(|| err(format!("{what} has no public key")))
        .and_then(|b| b64(b).map_err(|e| err(format!("{what} key: {e}"))))?;
    let key = PublicKey::from_spki_der(&spki_der).map_err(|e| err(format!("{what}: {e}")))?;
    let hash = match raw.public_key.key_details.as_deref() {
        Some(d) if d.contains("SHA_384") => HashAlg::Sha384,
        Some(d) if d.contains("SHA_512") => HashAlg::Sha512,
        _ => key.default_hash(),
    };
    let _ = raw.hash_algorithm;
    Ok(LogKey {
        base_url: raw.base_url.unwrap_or_default(),
        log_id: b64(&raw.log_id.key_id).map_err(|e| err(format!("{what} log id: {e}")))?,
        key,
        spki_der,
        hash,
        validity: validity(raw.public_key.valid_for.as_ref(), what)?,
    })
}

fn authority(raw: RawAuthority, what: &str) -> Result<Authority> {
    let chain = raw
        .cert_chain
        .certificates
        .iter()
        .map(|c| b64(&c.raw_bytes).map_err(|e| err(format!("{what} certificate: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    if chain.is_empty() {
        return Err(err(format!("{what} has an empty certificate chain")));
    }
    Ok(Authority {
        checked_chain: std::sync::OnceLock::new(),
        uri: raw.uri.unwrap_or_default(),
        chain,
        validity: validity(raw.valid_for.as_ref(), what)?,
    })
}

impl TrustedRoot {
    /// Parses a trusted root from its JSON.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        let raw: RawRoot = serde_json::from_slice(json).map_err(|e| err(format!("not a trusted root: {e}")))?;
        if let Some(media_type) = &raw.media_type {
            if !media_type.starts_with("application/vnd.dev.sigstore.trustedroot") {
                return Err(err(format!("unexpected media type {media_type}")));
            }
        }
        let mut skipped = Vec::new();
        let mut logs = |raws: Vec<RawLog>, kind: &str| -> Result<Vec<LogKey>> {
            let mut out = Vec::new();
            for (i, raw) in raws.into_iter().enumerate() {
                let what = format!("{kind}[{i}]");
                let supported = raw
                    .public_key
                    .key_details
                    .as_deref()
                    .is_none_or(|d| !d.starts_with("PKCS1_"));
                if supported {
                    out.push(log(raw, &what)?);
                } else {
                    skipped.push(format!("{what}: unsupported key type {:?}", raw.public_key.key_details));
                }
            }
            Ok(out)
        };
        let tlogs = logs(raw.tlogs, "tlogs")?;
        let ctlogs = logs(raw.ctlogs, "ctlogs")?;
        let certificate_authorities = raw
            .certificate_authorities
            .into_iter()
            .enumerate()
            .map(|(i, a)| authority(a, &format!("certificateAuthorities[{i}]")))
            .collect::<Result<_>>()?;
        let timestamp_authorities = raw
            .timestamp_authorities
            .into_iter()
            .enumerate()
            .map(|(i, a)| authority(a, &format!("timestampAuthorities[{i}]")))
            .collect::<Result<_>>()?;
        Ok(TrustedRoot {
            tlogs,
            ctlogs,
            certificate_authorities,
            timestamp_authorities,
            revision: Sha256::digest(json).into(),
            skipped,
        })
    }

    /// The Rekor log with this log id.
    pub fn tlog(&self, log_id: &[u8]) -> Option<&LogKey> {
        self.tlogs.iter().find(|l| l.log_id == log_id)
    }

    /// The CT log with this log id.
    pub fn ctlog(&self, log_id: &[u8]) -> Option<&LogKey> {
        self.ctlogs.iter().find(|l| l.log_id == log_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/trusted-roots")
            .join(name);
        std::fs::read(path).expect("fixture")
    }

    #[test]
    fn parses_the_public_good_roots() {
        let root = TrustedRoot::from_json(&fixture("public-good-production.trusted_root.json")).expect("production");
        assert_eq!(root.tlogs.len(), 2);
        assert_eq!(root.ctlogs.len(), 2);
        assert_eq!(root.certificate_authorities.len(), 2);
        assert_eq!(root.timestamp_authorities.len(), 1);
        let rekor = &root.tlogs[0];
        assert_eq!(rekor.validity.end, None);
        assert!(matches!(rekor.key, PublicKey::P256(_)));
        // Rekor v1 log ids are the SHA-256 of the DER public key.
        assert_eq!(rekor.log_id, Sha256::digest(&rekor.spki_der).to_vec());
        assert!(root.ctlogs[0]
            .validity
            .contains(root.ctlogs[0].validity.end.expect("bounded")));
        let staging = TrustedRoot::from_json(&fixture("public-good-staging.trusted_root.json")).expect("staging");
        assert_eq!(staging.skipped.len(), 1, "{:?}", staging.skipped);
    }

    #[test]
    fn a_log_without_validity_start_is_refused() {
        let json = String::from_utf8(fixture("public-good-production.trusted_root.json")).expect("utf-8");
        let broken = json.replacen("\"start\": \"2021-01-12T11:53:27Z\"", "\"x\": 1", 1);
        assert_ne!(broken, json);
        let e = TrustedRoot::from_json(broken.as_bytes()).expect_err("must fail");
        assert_eq!(e.step, Step::TrustedRoot);
    }
}
