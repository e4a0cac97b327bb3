//! Embedded signed certificate timestamps (RFC 6962 §3.2) in the Fulcio leaf, verified
//! against a CT log key of the trusted root valid at the SCT's time.
//!
//! The precertificate is spliced from the leaf's bytes with the crate's DER walker
//! ([`crate::der_walk`]). The SCT list itself is not DER but TLS presentation language
//! (RFC 6962 §3.3: length-prefixed vectors), read by the small `Reader` below: `x509-cert`
//! decodes SCTs only behind its `sct` feature (the `tls_codec` crate), which this crate does
//! not enable for five fields.

use der::Decode;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use crate::cert::{RawCertificate, SCT_LIST};
use crate::der_walk::{encode, single, Der, CONTEXT_3, OID, SEQUENCE};
use crate::error::{Result, Step, VerifyError};
use crate::trust_root::TrustedRoot;

fn err(reason: impl Into<String>) -> VerifyError {
    VerifyError::new(Step::Sct, reason)
}

/// Reads TLS-encoded (RFC 8446 §3) integers and length-prefixed vectors.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(err("truncated SCT list"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn uint(&mut self, n: usize) -> Result<u64> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }
    fn vec(&mut self, len_bytes: usize) -> Result<&'a [u8]> {
        let len = self.uint(len_bytes)? as usize;
        self.take(len)
    }
}

struct Sct<'a> {
    log_id: &'a [u8],
    timestamp_ms: u64,
    extensions: &'a [u8],
    signature: &'a [u8],
}

fn parse_list(list: &[u8]) -> Result<Vec<Sct<'_>>> {
    let mut outer = Reader(list);
    let mut body = Reader(outer.vec(2)?);
    let mut scts = Vec::new();
    while !body.0.is_empty() {
        let mut sct = Reader(body.vec(2)?);
        if sct.uint(1)? != 0 {
            return Err(err("unsupported SCT version"));
        }
        let log_id = sct.take(32)?;
        let timestamp_ms = sct.uint(8)?;
        let extensions = sct.vec(2)?;
        let _hash = sct.uint(1)?;
        let _sig_alg = sct.uint(1)?;
        let signature = sct.vec(2)?;
        scts.push(Sct {
            log_id,
            timestamp_ms,
            extensions,
            signature,
        });
    }
    Ok(scts)
}

/// The precertificate's TBS (RFC 6962 §3.2): the leaf's TBS without the SCT list extension,
/// built from the leaf's original bytes: only the lengths of the elements that contained the
/// extension are written anew.
fn precert_tbs(raw: &RawCertificate<'_>) -> Result<Vec<u8>> {
    let extensions = raw.extensions.ok_or_else(|| err("the certificate has no SCT"))?;
    let explicit = single(extensions, CONTEXT_3, Step::Sct, "certificate extensions")?;
    let list = single(explicit.value, SEQUENCE, Step::Sct, "certificate extensions")?;
    let mut walker = Der::new(list.value, Step::Sct, "certificate extensions");
    let mut kept = Vec::with_capacity(list.value.len());
    let mut removed = 0;
    while !walker.is_empty() {
        let extension = walker.take(SEQUENCE)?;
        let oid = Der::new(extension.value, Step::Sct, "certificate extension").take(OID)?;
        if oid.is_oid(&SCT_LIST) {
            removed += 1;
        } else {
            kept.extend_from_slice(extension.raw);
        }
    }
    if removed != 1 {
        return Err(err(format!(
            "the certificate has {removed} SCT list extensions, not one"
        )));
    }
    let mut content = raw.tbs_head.to_vec();
    if !kept.is_empty() {
        content.extend_from_slice(&encode(CONTEXT_3, &encode(SEQUENCE, &kept)));
    }
    Ok(encode(SEQUENCE, &content))
}

/// Verifies that at least one embedded SCT of `leaf` (parsed from `leaf_der`) is signed by a
/// trusted CT log; returns its time.
pub fn verify_embedded(leaf_der: &[u8], leaf: &Certificate, issuer: &Certificate, root: &TrustedRoot) -> Result<i64> {
    let ext = leaf
        .tbs_certificate
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.iter().find(|e| e.extn_id == SCT_LIST))
        .ok_or_else(|| err("the certificate has no SCT"))?;
    let list =
        der::asn1::OctetString::from_der(ext.extn_value.as_bytes()).map_err(|e| err(format!("SCT list: {e}")))?;
    let raw = crate::cert::raw_parts(leaf_der, Step::Sct)?;
    let tbs_der = precert_tbs(&raw)?;
    let issuer_key_hash: [u8; 32] = Sha256::digest(crate::cert::spki_der(issuer).map_err(|e| err(e.reason))?).into();
    let mut last = err("no SCT from a trusted CT log");
    for sct in parse_list(list.as_bytes())? {
        let Some(log) = root.ctlog(sct.log_id) else {
            last = err("SCT from a CT log that is not in the trusted root");
            continue;
        };
        let time = (sct.timestamp_ms / 1000) as i64;
        if !log.validity.contains(time) {
            last = err("SCT from a CT log key outside its validity window");
            continue;
        }
        let mut signed = Vec::with_capacity(tbs_der.len() + 64);
        signed.push(0); // version v1
        signed.push(0); // certificate_timestamp
        signed.extend_from_slice(&sct.timestamp_ms.to_be_bytes());
        signed.extend_from_slice(&1u16.to_be_bytes()); // precert_entry
        signed.extend_from_slice(&issuer_key_hash);
        let len = tbs_der.len() as u32;
        signed.extend_from_slice(&len.to_be_bytes()[1..]);
        signed.extend_from_slice(&tbs_der);
        signed.extend_from_slice(&(sct.extensions.len() as u16).to_be_bytes());
        signed.extend_from_slice(sct.extensions);
        match log.key.verify(log.hash, &signed, sct.signature) {
            Ok(()) => return Ok(time),
            Err(e) => last = err(format!("SCT signature: {e}")),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use der::Encode;

    use super::*;

    /// The precertificate TBS spliced from the original bytes equals the leaf's TBS re-encoded
    /// without the SCT extension, for the real (canonically encoded) leaves of the fixtures.
    #[test]
    fn the_precertificate_is_the_tbs_without_the_sct_list() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        for case in [
            "sigstore-conformance/bundle-verify/happy-path-v0.3",
            "pep740/gitlab-publish-gitlab-oidc-project-0.0.3",
            "npm-provenance/slsa-v0.2-sigstore-1.0.0",
        ] {
            let json = std::fs::read(fixtures.join(case).join("bundle.sigstore.json")).expect("bundle");
            let crate::bundle::SignerMaterial::Certificate { leaf, .. } =
                crate::Bundle::from_json(&json).expect("bundle").signer
            else {
                panic!("{case}: no certificate");
            };
            let raw = crate::cert::raw_parts(&leaf, Step::Sct).expect("raw parts");
            let spliced = precert_tbs(&raw).expect("precertificate");
            let mut tbs = crate::cert::parse(&leaf).expect("leaf").tbs_certificate;
            tbs.extensions = tbs
                .extensions
                .map(|all| all.into_iter().filter(|e| e.extn_id != SCT_LIST).collect());
            assert_eq!(spliced, tbs.to_der().expect("DER"), "{case}");
            assert!(spliced.len() < raw.tbs.len(), "{case}");
        }
    }
}
