//! The signing certificate: its path to a trusted Fulcio CA at signing time, its usage, and
//! (in [`fulcio`]) the identity facts Fulcio put in it. Certificates are read, their
//! signatures checked over the bytes as encoded, and paths walked by the layer shared with the
//! timestamp authority's path ([`crate::x509`]); what is Fulcio's own here is the leaf's
//! usage (digital signature, code signing), the refusal of certificates a bundle brings, the
//! authorities' windows, and the wording of refusals.

mod fulcio;

pub use fulcio::{identity, CertificateIdentity, GithubWorkflowExtensions};

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use x509_cert::ext::pkix::KeyUsage;
use x509_cert::Certificate;

pub use crate::x509::{check_signature, raw_parts, RawCertificate};

use crate::error::{Result, Step, VerifyError};
use crate::keys::PublicKey;
use crate::trust_root::{Authority, TrustedRoot};
use crate::x509::{self, CertView, Instant, LinkFault, PathFault};

const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
/// The embedded SCT list extension (RFC 6962).
pub const SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");

fn err(reason: impl Into<String>) -> VerifyError {
    VerifyError::new(Step::CertificateChain, reason)
}

/// Parses a DER certificate.
pub fn parse(der: &[u8]) -> Result<Certificate> {
    x509::parse(der, Step::CertificateChain)
}

/// The certificate's public key.
pub fn public_key(cert: &Certificate) -> Result<PublicKey> {
    x509::public_key(cert).map_err(err)
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
    x509::validity(cert)
}

/// The refusal for a certificate of the signing certificate's path not issued by the next.
fn link_error(fault: LinkFault) -> VerifyError {
    match fault {
        LinkFault::Name => err("issuer name does not match"),
        LinkFault::IssuerKey(why) => err(why),
        LinkFault::Signature(why) => err(format!("certificate signature: {why}")),
    }
}

/// Verifies that the certificate `cert_der` was signed by `issuer`'s key, over its original
/// TBS bytes (names must chain too): [`x509::issued_by`].
pub fn verify_issued_by(cert_der: &[u8], issuer: &Certificate) -> Result<()> {
    let cert = parse(cert_der)?;
    let raw = raw_parts(cert_der, Step::CertificateChain)?;
    x509::issued_by(&raw, &cert, issuer).map_err(link_error)
}

fn is_self_signed(der: &[u8]) -> bool {
    parse(der).is_ok_and(|cert| x509::names_chain(&cert, &cert) && verify_issued_by(der, &cert).is_ok())
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
        match path_through(leaf_der, leaf, authority, times) {
            Ok(path) => return Ok(path),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The leaf, then the authority's chain, through [`x509::check_path`] (the chain's own links
/// were verified once per trusted root); then the authority's window in the trusted root.
fn path_through(leaf_der: &[u8], leaf: &Certificate, authority: &Authority, times: &[i64]) -> Result<VerifiedPath> {
    let chain = authority.verified_chain().map_err(err)?;
    let issuer = chain.first().ok_or_else(|| err("empty CA chain"))?;
    let leaf = CertView::with_parsed(leaf_der, leaf, Step::CertificateChain)?;
    let cas = authority
        .chain
        .iter()
        .zip(chain)
        .map(|(der, parsed)| CertView::with_parsed(der, parsed, Step::CertificateChain))
        .collect::<Result<Vec<_>>>()?;
    let path: Vec<&CertView<'_>> = std::iter::once(&leaf).chain(&cas).collect();
    let at: Vec<Instant> = times.iter().map(|t| Instant::whole(*t)).collect();
    x509::check_path(&path, &at, None, Some(&authority.chain)).map_err(|fault| match fault {
        PathFault::NotValid {
            index: 0,
            at,
            not_before,
            not_after,
        } => err(format!(
            "the signing certificate is not valid at signing time {} (valid {not_before}..{not_after})",
            at.secs
        )),
        PathFault::NotValid { .. } => err("a CA certificate is not valid at signing time"),
        PathFault::NotCa(index) => err(format!(
            "certificate {} is an intermediate but not a CA",
            path.get(index).map(|c| c.name()).unwrap_or_default()
        )),
        PathFault::Link(_, fault) => link_error(fault),
        PathFault::Empty | PathFault::MalformedEku(..) | PathFault::EkuForbids(_) => {
            err("the CA chain does not allow code signing")
        }
    })?;
    for t in times {
        if !authority.validity.contains(*t) {
            return Err(err(format!(
                "signing time {t} is outside the CA's validity in the trusted root"
            )));
        }
    }
    Ok(VerifiedPath { issuer: issuer.clone() })
}

/// The DER value of the extension `oid`, if present.
fn extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<&[u8]> {
    x509::extension(cert, &oid).map(|e| e.extn_value.as_bytes())
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
    let (_, purposes) = x509::extended_key_usage(leaf)
        .map_err(|e| err(format!("extended key usage: {e}")))?
        .ok_or_else(|| err("the signing certificate has no extended key usage"))?;
    if !purposes.contains(&CODE_SIGNING) {
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
