//! The signing certificate: its path to a trusted Fulcio CA at signing time, its usage, its
//! signatures checked over the bytes as encoded, and (in [`fulcio`]) the identity facts Fulcio
//! put in it.

mod fulcio;

pub use fulcio::{identity, CertificateIdentity, GithubWorkflowExtensions};

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage};
use x509_cert::Certificate;

use crate::der_walk::{single, Der, Tlv, BIT_STRING, CONTEXT_0, CONTEXT_3, INTEGER, OID, SEQUENCE};
use crate::error::{Result, Step, VerifyError};
use crate::keys::{PublicKey, SignatureAlgorithm};
use crate::trust_root::{Authority, TrustedRoot};

const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
/// The embedded SCT list extension (RFC 6962).
pub const SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");

fn err(reason: impl Into<String>) -> VerifyError {
    VerifyError::new(Step::CertificateChain, reason)
}

/// Parses a DER certificate.
pub fn parse(der: &[u8]) -> Result<Certificate> {
    Certificate::from_der(der).map_err(|e| err(format!("malformed certificate: {e}")))
}

/// The certificate's public key.
pub fn public_key(cert: &Certificate) -> Result<PublicKey> {
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| err(format!("certificate key: {e}")))?;
    PublicKey::from_spki_der(&spki).map_err(|e| err(e.to_string()))
}

/// DER of the certificate's SubjectPublicKeyInfo.
pub fn spki_der(cert: &Certificate) -> Result<Vec<u8>> {
    cert.tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| err(format!("certificate key: {e}")))
}

/// Validity window in Unix seconds (both ends inclusive).
pub fn validity(cert: &Certificate) -> (i64, i64) {
    let v = &cert.tbs_certificate.validity;
    (
        v.not_before.to_unix_duration().as_secs() as i64,
        v.not_after.to_unix_duration().as_secs() as i64,
    )
}

/// The parts of a DER certificate that signatures and identifiers cover, sliced from the
/// bytes as encoded (never re-encoded: see [`crate::der_walk`]).
#[derive(Debug, Clone, Copy)]
pub struct RawCertificate<'a> {
    /// The whole certificate.
    pub der: &'a [u8],
    /// The whole `TBSCertificate` element: what the issuer signed.
    pub tbs: &'a [u8],
    /// The `TBSCertificate` content before its extensions (`[3]`).
    pub tbs_head: &'a [u8],
    /// The `[3]` extensions element, if any.
    pub extensions: Option<&'a [u8]>,
    /// The serial number's INTEGER content octets.
    pub serial: &'a [u8],
    /// The issuer `Name` element.
    pub issuer: &'a [u8],
    /// The subject `Name` element.
    pub subject: &'a [u8],
    /// The signature algorithm OID's content octets.
    pub signature_oid: &'a [u8],
    /// The signature (the BIT STRING's bytes).
    pub signature: &'a [u8],
}

/// Slices `der` into its [`RawCertificate`] parts; faults are refusals at `step`. The
/// signature algorithm inside the TBS must be the outer one (RFC 5280 §4.1.1.2).
pub fn raw_parts(der: &[u8], step: Step) -> Result<RawCertificate<'_>> {
    const WHAT: &str = "certificate";
    let malformed = |why: &str| VerifyError::new(step, format!("malformed {WHAT}: {why}"));
    let outer = single(der, SEQUENCE, step, WHAT)?;
    let mut c = Der::new(outer.value, step, WHAT);
    let tbs = c.take(SEQUENCE)?;
    let outer_alg = c.take(SEQUENCE)?;
    let bits = c.take(BIT_STRING)?;
    c.finish()?;
    let signature = match bits.value.split_first() {
        Some((0, bytes)) => bytes,
        _ => return Err(malformed("the signature is not a whole number of bytes")),
    };
    let signature_oid = Der::new(outer_alg.value, step, WHAT).take(OID)?.value;

    let mut t = Der::new(tbs.value, step, WHAT);
    t.optional(CONTEXT_0)?; // version
    let serial = t.take(INTEGER)?.value;
    let inner_alg = t.take(SEQUENCE)?;
    let issuer = t.take(SEQUENCE)?.raw;
    t.take(SEQUENCE)?; // validity
    let subject = t.take(SEQUENCE)?.raw;
    t.take(SEQUENCE)?; // subjectPublicKeyInfo
    t.optional(0x81)?; // issuerUniqueID
    t.optional(0x82)?; // subjectUniqueID
    let head_len = tbs.value.len() - t.remaining();
    let extensions: Option<Tlv<'_>> = t.optional(CONTEXT_3)?;
    t.finish()?;
    if inner_alg.raw != outer_alg.raw {
        return Err(malformed(
            "the signature algorithm inside the signed part differs from the outer one",
        ));
    }
    Ok(RawCertificate {
        der,
        tbs: tbs.raw,
        tbs_head: tbs.value.get(..head_len).unwrap_or_default(),
        extensions: extensions.map(|e| e.raw),
        serial,
        issuer,
        subject,
        signature_oid,
        signature,
    })
}

/// Checks the certificate's signature by `key` over its original TBS bytes; `Err` says why.
pub fn check_signature(raw: &RawCertificate<'_>, key: &PublicKey) -> std::result::Result<(), String> {
    let oid =
        ObjectIdentifier::from_bytes(raw.signature_oid).map_err(|_| "malformed signature algorithm".to_owned())?;
    match SignatureAlgorithm::from_oid(&oid) {
        Some(SignatureAlgorithm::Ecdsa(None)) | None => {
            Err(format!("unsupported certificate signature algorithm {oid}"))
        }
        Some(alg) => alg.verify(key, None, raw.tbs, raw.signature).map_err(|e| e.to_string()),
    }
}

/// Verifies that the certificate `cert_der` was signed by `issuer`'s key, over its original
/// TBS bytes (names must chain too).
pub fn verify_issued_by(cert_der: &[u8], issuer: &Certificate) -> Result<()> {
    let cert = parse(cert_der)?;
    if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return Err(err("issuer name does not match"));
    }
    let raw = raw_parts(cert_der, Step::CertificateChain)?;
    check_signature(&raw, &public_key(issuer)?).map_err(|e| err(format!("certificate signature: {e}")))
}

fn is_self_signed(der: &[u8]) -> bool {
    parse(der).is_ok_and(|cert| {
        cert.tbs_certificate.issuer == cert.tbs_certificate.subject && verify_issued_by(der, &cert).is_ok()
    })
}

/// The result of a verified certificate path.
pub struct VerifiedPath {
    /// The certificate that issued the leaf.
    pub issuer: Certificate,
}

/// Verifies the leaf's path to a Fulcio CA of the trusted root, with every certificate and
/// the CA's trusted-root window valid at every one of `times`. Certificates a bundle carries
/// besides the leaf (older bundles' `x509CertificateChain`) are never trusted: each must be a
/// certificate of the issuing authority's chain in the trusted root, or the bundle is refused
/// (a bundle bringing its own root or intermediate proves nothing).
pub fn verify_path(
    leaf_der: &[u8],
    leaf: &Certificate,
    extra: &[Vec<u8>],
    root: &TrustedRoot,
    times: &[i64],
) -> Result<VerifiedPath> {
    check_leaf(leaf, times)?;
    let mut last = err("no certificate authority in the trusted root issued this certificate");
    for authority in &root.certificate_authorities {
        if let Some(stranger) = extra.iter().find(|der| !authority.chain.contains(der)) {
            let self_signed = is_self_signed(stranger);
            last = err(if self_signed {
                "the bundle's certificate chain contains a root certificate that is not in the trusted root"
            } else {
                "the bundle's certificate chain contains a certificate that is not in the trusted root"
            });
            continue;
        }
        match path_through(leaf_der, authority, times) {
            Ok(path) => return Ok(path),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn path_through(leaf_der: &[u8], authority: &Authority, times: &[i64]) -> Result<VerifiedPath> {
    let chain = authority.verified_chain().map_err(err)?;
    let issuer = chain.first().ok_or_else(|| err("empty CA chain"))?;
    verify_issued_by(leaf_der, issuer)?;
    for t in times {
        if !authority.validity.contains(*t) {
            return Err(err(format!(
                "signing time {t} is outside the CA's validity in the trusted root"
            )));
        }
    }
    for cert in chain {
        let (from, until) = validity(cert);
        if times.iter().any(|t| *t < from || *t > until) {
            return Err(err("a CA certificate is not valid at signing time"));
        }
    }
    Ok(VerifiedPath { issuer: issuer.clone() })
}

fn extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<&[u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes())
}

fn check_leaf(leaf: &Certificate, times: &[i64]) -> Result<()> {
    let (from, until) = validity(leaf);
    for t in times {
        if *t < from || *t > until {
            return Err(err(format!(
                "the signing certificate is not valid at signing time {t} (valid {from}..{until})"
            )));
        }
    }
    let usage = extension(leaf, KEY_USAGE)
        .ok_or_else(|| err("the signing certificate has no key usage"))
        .and_then(|v| KeyUsage::from_der(v).map_err(|e| err(format!("key usage: {e}"))))?;
    if !usage.digital_signature() {
        return Err(err("the signing certificate is not for digital signatures"));
    }
    let eku = extension(leaf, EXT_KEY_USAGE)
        .ok_or_else(|| err("the signing certificate has no extended key usage"))
        .and_then(|v| ExtendedKeyUsage::from_der(v).map_err(|e| err(format!("extended key usage: {e}"))))?;
    if !eku.0.contains(&CODE_SIGNING) {
        return Err(err("the signing certificate is not a code-signing certificate"));
    }
    Ok(())
}

/// PEM encoding of a DER certificate (as Rekor v1 bodies carry it).
pub fn to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests;
