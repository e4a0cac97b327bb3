//! The identity facts Fulcio puts in a signing certificate: subject alternative names and the
//! `1.3.6.1.4.1.57264.1.*` extensions (Fulcio's `docs/oid-info.md`).

use der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

use super::{err, extension};
use crate::error::{Result, Step, VerifyError};

const SUBJECT_ALT_NAME: const_oid::ObjectIdentifier = const_oid::ObjectIdentifier::new_unwrap("2.5.29.17");
const FULCIO: &str = "1.3.6.1.4.1.57264.1";

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
