//! The signing certificate: its path to a trusted Fulcio CA at signing time, its usage, and
//! the identity facts Fulcio put in it.

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::Certificate;

use crate::error::{Result, Step, VerifyError};
use crate::keys::{HashAlg, PublicKey};
use crate::trust_root::{Authority, TrustedRoot};

const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
/// The embedded SCT list extension (RFC 6962).
pub const SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");
const FULCIO: &str = "1.3.6.1.4.1.57264.1";

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

/// Verifies that `cert` was signed by `issuer`'s key (names must chain too).
pub fn verify_issued_by(cert: &Certificate, issuer: &Certificate) -> Result<()> {
    if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return Err(err("issuer name does not match"));
    }
    let key = public_key(issuer)?;
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(|e| err(format!("re-encoding: {e}")))?;
    let signature = cert
        .signature
        .as_bytes()
        .ok_or_else(|| err("malformed certificate signature"))?;
    let oid = cert.signature_algorithm.oid;
    let hash = if oid == ECDSA_SHA256 || oid == RSA_SHA256 {
        HashAlg::Sha256
    } else if oid == ECDSA_SHA384 || oid == RSA_SHA384 {
        HashAlg::Sha384
    } else if oid == ECDSA_SHA512 || oid == RSA_SHA512 || oid == ED25519 {
        // Ed25519 ignores the hash; SHA-512 is what it uses internally.
        HashAlg::Sha512
    } else {
        return Err(err(format!("unsupported certificate signature algorithm {oid}")));
    };
    key.verify(hash, &tbs, signature)
        .map_err(|e| err(format!("certificate signature: {e}")))
}

fn is_self_signed(cert: &Certificate) -> bool {
    cert.tbs_certificate.issuer == cert.tbs_certificate.subject && verify_issued_by(cert, cert).is_ok()
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
pub fn verify_path(leaf: &Certificate, extra: &[Vec<u8>], root: &TrustedRoot, times: &[i64]) -> Result<VerifiedPath> {
    check_leaf(leaf, times)?;
    let mut last = err("no certificate authority in the trusted root issued this certificate");
    for authority in &root.certificate_authorities {
        if let Some(stranger) = extra.iter().find(|der| !authority.chain.contains(der)) {
            let self_signed = parse(stranger).is_ok_and(|c| is_self_signed(&c));
            last = err(if self_signed {
                "the bundle's certificate chain contains a root certificate that is not in the trusted root"
            } else {
                "the bundle's certificate chain contains a certificate that is not in the trusted root"
            });
            continue;
        }
        match path_through(leaf, authority, times) {
            Ok(path) => return Ok(path),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn path_through(leaf: &Certificate, authority: &Authority, times: &[i64]) -> Result<VerifiedPath> {
    let chain = authority.verified_chain().map_err(err)?;
    let issuer = chain.first().ok_or_else(|| err("empty CA chain"))?;
    verify_issued_by(leaf, issuer)?;
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

/// Identity facts from a Fulcio certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CertificateIdentity {
    /// Subject alternative names (URIs, emails, other names), in order.
    pub sans: Vec<String>,
    /// The OIDC issuer (extension .8, or the deprecated .1).
    pub issuer: Option<String>,
    /// Build Signer URI (.9).
    pub build_signer_uri: Option<String>,
    /// Build Signer Digest (.10).
    pub build_signer_digest: Option<String>,
    /// Runner Environment (.11).
    pub runner_environment: Option<String>,
    /// Source Repository URI (.12).
    pub source_repository_uri: Option<String>,
    /// Source Repository Digest (.13).
    pub source_repository_digest: Option<String>,
    /// Source Repository Ref (.14).
    pub source_repository_ref: Option<String>,
    /// Source Repository Identifier (.15).
    pub source_repository_identifier: Option<String>,
    /// Source Repository Owner URI (.16).
    pub source_repository_owner_uri: Option<String>,
    /// Source Repository Owner Identifier (.17).
    pub source_repository_owner_identifier: Option<String>,
    /// Build Config URI (.18).
    pub build_config_uri: Option<String>,
    /// Build Config Digest (.19).
    pub build_config_digest: Option<String>,
    /// Build Trigger (.20).
    pub build_trigger: Option<String>,
    /// Run Invocation URI (.21).
    pub run_invocation_uri: Option<String>,
    /// Source Repository Visibility At Signing (.22).
    pub source_repository_visibility: Option<String>,
}

/// Reads the SANs and Fulcio extensions of a certificate.
pub fn identity(cert: &Certificate) -> Result<CertificateIdentity> {
    let mut id = CertificateIdentity::default();
    if let Some(value) = extension(cert, SUBJECT_ALT_NAME) {
        let san = SubjectAltName::from_der(value).map_err(|e| err(format!("subject alternative name: {e}")))?;
        for name in san.0 {
            match name {
                GeneralName::UniformResourceIdentifier(uri) => id.sans.push(uri.to_string()),
                GeneralName::Rfc822Name(email) => id.sans.push(email.to_string()),
                GeneralName::OtherName(other) => {
                    if let Ok(text) = other.value.decode_as::<der::asn1::Utf8StringRef<'_>>() {
                        id.sans.push(text.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let Some(extensions) = cert.tbs_certificate.extensions.as_ref() else {
        return Ok(id);
    };
    let mut legacy_issuer = None;
    for ext in extensions {
        let oid = ext.extn_id.to_string();
        let Some(arc) = oid.strip_prefix(FULCIO).and_then(|rest| rest.strip_prefix('.')) else {
            continue;
        };
        let raw = ext.extn_value.as_bytes();
        // Arcs 1 to 7 are the deprecated extensions with raw string values; from 8 on the
        // value is a DER UTF8String.
        let Ok(number) = arc.parse::<u32>() else {
            continue;
        };
        if number < 8 {
            if number == 1 {
                legacy_issuer = Some(String::from_utf8_lossy(raw).into_owned());
            }
            continue;
        }
        let value = der::asn1::Utf8StringRef::from_der(raw)
            .map(|s| s.to_string())
            .map_err(|e| err(format!("Fulcio extension {oid}: {e}")))?;
        let slot = match arc {
            "8" => &mut id.issuer,
            "9" => &mut id.build_signer_uri,
            "10" => &mut id.build_signer_digest,
            "11" => &mut id.runner_environment,
            "12" => &mut id.source_repository_uri,
            "13" => &mut id.source_repository_digest,
            "14" => &mut id.source_repository_ref,
            "15" => &mut id.source_repository_identifier,
            "16" => &mut id.source_repository_owner_uri,
            "17" => &mut id.source_repository_owner_identifier,
            "18" => &mut id.build_config_uri,
            "19" => &mut id.build_config_digest,
            "20" => &mut id.build_trigger,
            "21" => &mut id.run_invocation_uri,
            "22" => &mut id.source_repository_visibility,
            _ => continue,
        };
        *slot = Some(value);
    }
    match (&id.issuer, legacy_issuer) {
        (None, legacy) => id.issuer = legacy,
        (Some(v2), Some(v1)) if *v2 != v1 => {
            return Err(VerifyError::new(
                Step::Identity,
                format!("the certificate names two different OIDC issuers ({v1:?} and {v2:?})"),
            ))
        }
        _ => {}
    }
    Ok(id)
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
