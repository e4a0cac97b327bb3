//! The one X.509 layer under both certificate paths this crate checks: the Fulcio signing
//! certificate's (leaf → intermediate → root, [`crate::cert`]) and the RFC 3161 timestamp
//! authority's ([`crate::timestamp`]). Both use, and only use:
//!
//! - [`raw_parts`]: what signatures and identifiers cover, sliced from the certificate as
//!   encoded with the crate's one DER walker ([`crate::der_walk`]), never re-encoded;
//! - [`signature_algorithm`]: the one map from a signature `AlgorithmIdentifier` to a
//!   verification algorithm (over the OID table [`SignatureAlgorithm::from_oid`]);
//! - [`issued_by`]: the one check that a certificate was issued by another (names chain, the
//!   issuer's key verifies the signature over the TBS bytes as encoded);
//! - [`check_path`]: the one walk of a path to a trust anchor (every certificate valid at every
//!   given instant, intermediates are CAs, issuers' extended key usage allows the leaf's
//!   purpose where the caller asks, every link issued-by unless already checked).
//!
//! What stays with each caller is its own policy: which certificates form a path (the Fulcio
//! authority's chain; the TSA's chain or an embedded certificate issued by one of its CAs),
//! what the leaf must be for (code signing; critical time stamping) and the wording of refusals.
//!
//! # Signature algorithms, and RSA
//!
//! Sigstore's public-good Fulcio and timestamp authority sign with ECDSA P-256/P-384 (managed
//! keys may be Ed25519). sigstore-go accepts whatever key the timestamp authority's
//! certificate holds, and private deployments run RSA CAs and TSAs, so RSA is **accepted, and
//! accepted alike on both paths**: PKCS#1 v1.5 with SHA-256, SHA-384 or SHA-512
//! (`sha*WithRSAEncryption`), with keys of at least 2048 bits ([`PublicKey::from_spki_der`]);
//! RSA-PSS is refused on both paths. A bare key-type OID (`id-ecPublicKey`, `rsaEncryption`)
//! says "the hash is given elsewhere": CMS `SignerInfo`s give it (their `digestAlgorithm`,
//! RFC 5652 §5.3, RFC 3370 §3.2) and a certificate does not, so such an OID is accepted with
//! that digest where one is given and refused where none is — for ECDSA and RSA alike. The
//! answer depends on the algorithm and the digest given, never on which path asks.
//!
//! # Names
//!
//! A certificate's issuer chains to an issuer's subject when the two names are equal as
//! parsed (so attributes of one RDN in another order still chain); byte-equal names always
//! are. The signature, which is what matters, is always checked over the bytes as encoded.

use std::borrow::Cow;

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage};
use x509_cert::ext::Extension;
use x509_cert::Certificate;

use crate::der_walk::{single, Der, Tlv, BIT_STRING, CONTEXT_0, CONTEXT_3, INTEGER, OCTET_STRING, OID, SEQUENCE};
use crate::error::{Result, Step, VerifyError};
use crate::keys::{HashAlg, PublicKey, SignatureAlgorithm};

const ID_CE_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const ID_CE_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const ID_CE_SUBJECT_KEY_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

// ---------------------------------------------------------------------------------------------
// The certificate as encoded and as parsed.

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

/// Parses a DER certificate; a fault is a refusal at `step`.
pub(crate) fn parse(der: &[u8], step: Step) -> Result<Certificate> {
    Certificate::from_der(der).map_err(|e| VerifyError::new(step, format!("malformed certificate: {e}")))
}

/// A certificate both as encoded (what signatures cover) and as parsed (what is read).
#[derive(Debug, Clone)]
pub(crate) struct CertView<'a> {
    /// The parts as encoded.
    pub(crate) raw: RawCertificate<'a>,
    /// The parsed certificate (borrowed where the caller already holds it).
    pub(crate) parsed: Cow<'a, Certificate>,
}

impl<'a> CertView<'a> {
    /// Slices and parses `der`; faults are refusals at `step`.
    pub(crate) fn new(der: &'a [u8], step: Step) -> Result<Self> {
        Ok(CertView {
            raw: raw_parts(der, step)?,
            parsed: Cow::Owned(parse(der, step)?),
        })
    }

    /// Slices `der`, whose parsed form the caller already holds.
    pub(crate) fn with_parsed(der: &'a [u8], parsed: &'a Certificate, step: Step) -> Result<Self> {
        Ok(CertView {
            raw: raw_parts(der, step)?,
            parsed: Cow::Borrowed(parsed),
        })
    }

    /// The subject, for messages.
    pub(crate) fn name(&self) -> String {
        self.parsed.tbs_certificate.subject.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// What a certificate says.

/// The extension `oid` of `cert`, if present.
pub(crate) fn extension<'c>(cert: &'c Certificate, oid: &ObjectIdentifier) -> Option<&'c Extension> {
    cert.tbs_certificate
        .extensions
        .as_deref()
        .and_then(|exts| exts.iter().find(|e| e.extn_id == *oid))
}

/// The certificate's public key; `Err` says why it is not usable.
pub(crate) fn public_key(cert: &Certificate) -> std::result::Result<PublicKey, String> {
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("certificate key: {e}"))?;
    PublicKey::from_spki_der(&spki).map_err(|e| e.to_string())
}

/// Validity window in Unix seconds (both ends inclusive). X.509 times end in the year 9999,
/// well inside `i64`.
pub(crate) fn validity(cert: &Certificate) -> (i64, i64) {
    let v = &cert.tbs_certificate.validity;
    let secs = |t: x509_cert::time::Time| i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
    (secs(v.not_before), secs(v.not_after))
}

/// Whether basic constraints mark the certificate as a CA.
pub(crate) fn is_ca(cert: &Certificate) -> bool {
    extension(cert, &ID_CE_BASIC_CONSTRAINTS)
        .and_then(|ext| BasicConstraints::from_der(ext.extn_value.as_bytes()).ok())
        .is_some_and(|bc| bc.ca)
}

/// The extended key usage: `(critical, purposes)`, `Ok(None)` when absent, `Err` (the
/// decoder's message) when malformed.
pub(crate) fn extended_key_usage(
    cert: &Certificate,
) -> std::result::Result<Option<(bool, Vec<ObjectIdentifier>)>, String> {
    let Some(ext) = extension(cert, &ID_CE_EXT_KEY_USAGE) else {
        return Ok(None);
    };
    let eku = ExtendedKeyUsage::from_der(ext.extn_value.as_bytes()).map_err(|e| e.to_string())?;
    Ok(Some((ext.critical, eku.0)))
}

/// The subject key identifier, if present and well formed.
pub(crate) fn subject_key_id(cert: &Certificate) -> Option<&[u8]> {
    let ext = extension(cert, &ID_CE_SUBJECT_KEY_IDENTIFIER)?;
    single(
        ext.extn_value.as_bytes(),
        OCTET_STRING,
        Step::CertificateChain,
        "subject key identifier",
    )
    .ok()
    .map(|t| t.value)
}

// ---------------------------------------------------------------------------------------------
// Signatures.

/// The one signature-algorithm map (see the module documentation): the algorithm `oid` names,
/// with `digest` the hash given beside it (a CMS signer's `digestAlgorithm`; `None` for a
/// certificate). A bare key-type OID takes `digest`, and is refused without one.
pub(crate) fn signature_algorithm(oid: &ObjectIdentifier, digest: Option<HashAlg>) -> Option<SignatureAlgorithm> {
    if *oid == ID_EC_PUBLIC_KEY {
        return digest.map(|hash| SignatureAlgorithm::Ecdsa(Some(hash)));
    }
    if *oid == RSA_ENCRYPTION {
        return digest.map(SignatureAlgorithm::Rsa);
    }
    match SignatureAlgorithm::from_oid(oid)? {
        SignatureAlgorithm::Ecdsa(None) => None,
        alg => Some(alg),
    }
}

/// Checks the certificate's signature by `key` over its original TBS bytes; `Err` says why.
pub fn check_signature(raw: &RawCertificate<'_>, key: &PublicKey) -> std::result::Result<(), String> {
    let oid =
        ObjectIdentifier::from_bytes(raw.signature_oid).map_err(|_| "malformed signature algorithm".to_owned())?;
    let alg =
        signature_algorithm(&oid, None).ok_or_else(|| format!("unsupported certificate signature algorithm {oid}"))?;
    alg.verify(key, None, raw.tbs, raw.signature).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Issued-by and paths.

/// Why a certificate was not issued by another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkFault {
    /// The certificate's issuer is not the other's subject.
    Name,
    /// The issuer's key is not usable (why).
    IssuerKey(String),
    /// The signature does not verify under the issuer's key (why).
    Signature(String),
}

/// Whether `cert`'s issuer name is `issuer`'s subject (as parsed; see the module
/// documentation).
pub(crate) fn names_chain(cert: &Certificate, issuer: &Certificate) -> bool {
    cert.tbs_certificate.issuer == issuer.tbs_certificate.subject
}

/// The one issued-by check: `cert` names `issuer` as its issuer and `issuer`'s key verifies
/// its signature over the TBS bytes as encoded. Validity and CA status are [`check_path`]'s.
pub(crate) fn issued_by(
    cert: &RawCertificate<'_>,
    cert_parsed: &Certificate,
    issuer: &Certificate,
) -> std::result::Result<(), LinkFault> {
    if !names_chain(cert_parsed, issuer) {
        return Err(LinkFault::Name);
    }
    let key = public_key(issuer).map_err(LinkFault::IssuerKey)?;
    check_signature(cert, &key).map_err(LinkFault::Signature)
}

/// An instant: whole Unix seconds, and whether a fraction of a second follows (RFC 3161
/// `genTime` may carry one; signing times do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Instant {
    /// Whole seconds.
    pub(crate) secs: i64,
    /// Whether a non-zero fraction of a second follows.
    pub(crate) fraction: bool,
}

impl Instant {
    /// A whole second.
    pub(crate) fn whole(secs: i64) -> Self {
        Instant { secs, fraction: false }
    }

    /// The smallest whole second not before the exact time (for comparisons with ends).
    fn ceil(self) -> i64 {
        self.secs.saturating_add(i64::from(self.fraction))
    }

    /// Whether the exact time lies within `[start, end]`.
    pub(crate) fn within(self, start: i64, end: i64) -> bool {
        start <= self.secs && self.ceil() <= end
    }
}

/// Why a path did not verify; `index` is the certificate's place in the path (0: the leaf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathFault {
    /// The path is empty.
    Empty,
    /// The certificate is not valid at `at` (its window is `not_before..=not_after`).
    NotValid {
        /// Its place in the path.
        index: usize,
        /// The instant it is not valid at.
        at: Instant,
        /// Its first valid second.
        not_before: i64,
        /// Its last valid second.
        not_after: i64,
    },
    /// An intermediate is not a CA.
    NotCa(usize),
    /// An issuing certificate's extended key usage is malformed (the decoder's message).
    MalformedEku(usize, String),
    /// An issuing certificate restricts extended key usage and leaves out the leaf's purpose.
    EkuForbids(usize),
    /// The certificate was not issued by the next one.
    Link(usize, LinkFault),
}

/// Walks `path` (leaf first, trust anchor last): every certificate valid at every one of
/// `at`; every certificate between leaf and anchor a CA; where `purpose` is given, every
/// issuing certificate with an extended key usage allowing it (or any purpose); every
/// certificate issued by the next, except links between consecutive certificates of
/// `checked`, a chain whose links were verified before.
pub(crate) fn check_path(
    path: &[&CertView<'_>],
    at: &[Instant],
    purpose: Option<&ObjectIdentifier>,
    checked: Option<&[Vec<u8>]>,
) -> std::result::Result<(), PathFault> {
    if path.is_empty() {
        return Err(PathFault::Empty);
    }
    let last = path.len() - 1;
    for (index, cert) in path.iter().enumerate() {
        let (not_before, not_after) = validity(&cert.parsed);
        if let Some(&t) = at.iter().find(|t| !t.within(not_before, not_after)) {
            return Err(PathFault::NotValid {
                index,
                at: t,
                not_before,
                not_after,
            });
        }
        if index > 0 {
            if index < last && !is_ca(&cert.parsed) {
                return Err(PathFault::NotCa(index));
            }
            if let Some(purpose) = purpose {
                match extended_key_usage(&cert.parsed) {
                    Err(why) => return Err(PathFault::MalformedEku(index, why)),
                    Ok(Some((_, purposes)))
                        if !purposes.contains(purpose) && !purposes.contains(&ANY_EXTENDED_KEY_USAGE) =>
                    {
                        return Err(PathFault::EkuForbids(index))
                    }
                    Ok(_) => {}
                }
            }
        }
        if let Some(issuer) = path.get(index + 1) {
            let already_checked = checked.is_some_and(|chain| {
                chain
                    .windows(2)
                    .any(|pair| pair[0].as_slice() == cert.raw.der && pair[1].as_slice() == issuer.raw.der)
            });
            if !already_checked {
                issued_by(&cert.raw, &cert.parsed, &issuer.parsed).map_err(|fault| PathFault::Link(index, fault))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
