//! The whole verification, step by step: timestamps, transparency log entries, certificate
//! path at signing time and SCT, identity policy, then the signature and the subject.

use crate::bundle::{Bundle, SignerMaterial};
use crate::cert::{self, CertificateIdentity};
use crate::content::{self, Artifact};
use crate::error::{Result, Step, VerifyError};
use crate::keys::PublicKey;
use crate::timestamp;
use crate::tlog::{self, SignerDer};
use crate::trust_root::TrustedRoot;

/// Who must have signed.
#[derive(Debug, Clone)]
pub enum Policy {
    /// A Fulcio certificate for exactly this SAN from exactly this OIDC issuer.
    Identity {
        /// The subject alternative name (e.g. a workflow URI or an email).
        san: String,
        /// The OIDC issuer URL.
        issuer: String,
    },
    /// A Fulcio certificate valid under the trusted root, whatever its identity: the caller
    /// **must** match the returned [`SignerFacts::identity`] (OIDC issuer, SANs and Fulcio
    /// extensions) against its own policy, e.g. a trusted publisher's issuer, repository and
    /// workflow. The chain, SCT, timestamps, log entry and signature are checked as for
    /// [`Policy::Identity`].
    AnyIdentity,
    /// A managed key (DER SubjectPublicKeyInfo).
    Key {
        /// The key's DER.
        spki_der: Vec<u8>,
    },
}

/// What policy can look at once a bundle verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerFacts {
    /// Certificate identity (empty for managed keys).
    pub identity: CertificateIdentity,
    /// The earliest verified signing time (Unix seconds).
    pub verified_time: i64,
    /// Every verified time source: (source, Unix seconds).
    pub time_sources: Vec<(&'static str, i64)>,
    /// The in-toto predicate type, for DSSE bundles.
    pub predicate_type: Option<String>,
    /// The in-toto subjects (name, digests), for DSSE bundles.
    pub subjects: Vec<(String, Vec<(String, String)>)>,
}

/// Verifies `bundle` for `artifact` under `policy`, fully offline, at wall-clock time `now`.
pub fn verify(
    bundle: &Bundle,
    artifact: &Artifact,
    root: &TrustedRoot,
    policy: &Policy,
    now: i64,
) -> Result<SignerFacts> {
    // Bundles built in code rather than parsed meet the same limits.
    crate::bundle::check_limits(bundle.tlog_entries.len(), bundle.timestamps.len())?;
    // The signer's material and key.
    let (leaf, extra, key, signer_der) = match (&bundle.signer, policy) {
        (SignerMaterial::Certificate { leaf, extra }, Policy::Identity { .. } | Policy::AnyIdentity) => {
            let parsed = cert::parse(leaf)?;
            let key = cert::public_key(&parsed)?;
            (
                Some((leaf.as_slice(), parsed)),
                extra.as_slice(),
                key,
                SignerDer::Certificate(leaf),
            )
        }
        (SignerMaterial::PublicKey { .. }, Policy::Key { spki_der }) => {
            let key =
                PublicKey::from_spki_der(spki_der).map_err(|e| VerifyError::new(Step::Signature, e.to_string()))?;
            (None, &[][..], key, SignerDer::PublicKey(spki_der))
        }
        (SignerMaterial::PublicKey { .. }, Policy::Identity { .. } | Policy::AnyIdentity) => {
            return Err(VerifyError::new(
                Step::Identity,
                "the bundle is signed with a key, but a certificate identity was required",
            ))
        }
        (SignerMaterial::Certificate { .. }, Policy::Key { .. }) => {
            return Err(VerifyError::new(
                Step::Identity,
                "the bundle carries a certificate, but a managed key was required",
            ))
        }
    };
    let signature = bundle
        .signature_bytes()
        .ok_or_else(|| VerifyError::new(Step::Signature, "the bundle has no signature"))?;

    // Signed timestamps.
    let mut time_sources: Vec<(&'static str, i64)> = Vec::new();
    for token in &bundle.timestamps {
        let verified = timestamp::verify_timestamp(token, signature, root)?;
        time_sources.push(("rfc3161", verified.time));
    }

    let signed_times: Vec<i64> = time_sources.iter().map(|(_, t)| *t).collect();

    // Transparency log entries: every entry must verify, and there must be at least one.
    if bundle.tlog_entries.is_empty() {
        return Err(VerifyError::new(Step::Tlog, "the bundle has no transparency log entry"));
    }
    for entry in &bundle.tlog_entries {
        let verified = tlog::verify_entry(entry, bundle, signer_der, &artifact.sha256, root, now, &signed_times)?;
        if let Some(t) = verified.integrated_time {
            time_sources.push(("tlog", t));
        }
    }
    let times: Vec<i64> = time_sources.iter().map(|(_, t)| *t).collect();
    let verified_time = times.iter().copied().min().ok_or_else(|| {
        VerifyError::new(
            Step::Timestamp,
            "no verified time source (integrated time or signed timestamp)",
        )
    })?;

    // Certificate path at every signing time, SCT, identity.
    let identity = match (&leaf, policy) {
        (Some((leaf_der, leaf)), Policy::Identity { san, issuer }) => {
            let path = cert::verify_path(leaf_der, leaf, extra, root, &times)?;
            crate::sct::verify_embedded(leaf_der, leaf, &path.issuer, root)?;
            let identity = cert::identity(leaf)?;
            if !identity.sans.iter().any(|s| s == san) {
                return Err(VerifyError::new(
                    Step::Identity,
                    format!("the certificate's identity {:?} is not {san:?}", identity.sans),
                ));
            }
            if identity.issuer.as_deref() != Some(issuer.as_str()) {
                return Err(VerifyError::new(
                    Step::Identity,
                    format!("the certificate's OIDC issuer {:?} is not {issuer:?}", identity.issuer),
                ));
            }
            identity
        }
        (Some((leaf_der, leaf)), Policy::AnyIdentity) => {
            let path = cert::verify_path(leaf_der, leaf, extra, root, &times)?;
            crate::sct::verify_embedded(leaf_der, leaf, &path.issuer, root)?;
            cert::identity(leaf)?
        }
        _ => CertificateIdentity::default(),
    };

    // The signature over the artifact or envelope, and the statement's subject.
    let statement = content::verify_content(&bundle.content, &key, artifact)?;
    Ok(SignerFacts {
        identity,
        verified_time,
        time_sources,
        predicate_type: statement.as_ref().map(|s| s.predicate_type.clone()),
        subjects: statement.map(|s| s.subjects).unwrap_or_default(),
    })
}
