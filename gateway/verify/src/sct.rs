//! Embedded signed certificate timestamps (RFC 6962 §3.2) in the Fulcio leaf, verified
//! against a CT log key of the trusted root valid at the SCT's time.

use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use crate::cert::SCT_LIST;
use crate::error::{Result, Step, VerifyError};
use crate::trust_root::TrustedRoot;

fn err(reason: impl Into<String>) -> VerifyError {
    VerifyError::new(Step::Sct, reason)
}

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

/// Verifies that at least one embedded SCT is signed by a trusted CT log; returns its time.
pub fn verify_embedded(leaf: &Certificate, issuer: &Certificate, root: &TrustedRoot) -> Result<i64> {
    let extensions = leaf
        .tbs_certificate
        .extensions
        .as_ref()
        .ok_or_else(|| err("the certificate has no SCT"))?;
    let ext = extensions
        .iter()
        .find(|e| e.extn_id == SCT_LIST)
        .ok_or_else(|| err("the certificate has no SCT"))?;
    let list =
        der::asn1::OctetString::from_der(ext.extn_value.as_bytes()).map_err(|e| err(format!("SCT list: {e}")))?;
    // The precertificate TBS: the leaf's TBS without the SCT list extension.
    let mut tbs = leaf.tbs_certificate.clone();
    tbs.extensions = Some(extensions.iter().filter(|e| e.extn_id != SCT_LIST).cloned().collect());
    let tbs_der = tbs.to_der().map_err(|e| err(format!("re-encoding: {e}")))?;
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
