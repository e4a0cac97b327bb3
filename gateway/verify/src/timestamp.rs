//! RFC 3161 signed timestamps, as the Sigstore client spec and sigstore-go check a bundle's
//! `verificationMaterial.timestampVerificationData.rfc3161Timestamps[].signedTimestamp`.
//!
//! The bytes are a DER `TimeStampResp` (what Sigstore clients store, status plus token) or a
//! bare `TimeStampToken` (CMS `ContentInfo` with `SignedData` whose content is a `TSTInfo`).
//! The token must cover the given signature bytes (message imprint), carry exactly one
//! signer whose signed attributes bind the `TSTInfo`, and be signed by a timestamp authority
//! of the trusted root: the signing certificate is that authority's leaf (or an embedded
//! certificate issued by a CA of its chain), every certificate of the path verifies under its
//! issuer and is valid at the timestamp's `genTime`, the leaf is a critical-EKU
//! `id-kp-timeStamping` certificate, and `genTime` lies inside the authority's validity window.
//!
//! The CMS structure is walked by hand rather than through `cms` types: those re-sort `SET OF`
//! on decoding, and the signature covers the signed attributes exactly as the TSA encoded them.

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage};
use x509_cert::Certificate;

use crate::cert::RawCertificate;
use crate::der_walk::{
    single, Der, Tlv, CONTEXT_0, CONTEXT_0_PRIMITIVE, CONTEXT_1, GENERALIZED_TIME, INTEGER, OCTET_STRING, OID,
    SEQUENCE, SET,
};
use crate::error::{Result, Step, VerifyError};
use crate::keys::{HashAlg, PublicKey, SignatureAlgorithm};
use crate::trust_root::{Authority, TrustedRoot};

/// A verified timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTimestamp {
    /// The token's `genTime`, in Unix seconds (fractions of a second dropped).
    pub time: i64,
    /// URI of the trusted-root timestamp authority that signed it.
    pub tsa_uri: String,
}

/// Verifies one RFC 3161 token over `signature` (the bytes the timestamp covers: the artifact
/// signature, or for DSSE the envelope signature bytes) against the trusted root's timestamp
/// authorities.
pub fn verify_timestamp(token_der: &[u8], signature: &[u8], root: &TrustedRoot) -> Result<VerifiedTimestamp> {
    let token = parse_token(unwrap_response(token_der)?)?;
    let tst = parse_tst_info(token.tst_info)?;
    if tst.imprint_alg.digest(signature) != tst.imprint {
        return Err(fail(
            "the timestamp's message imprint does not match the signature it should cover",
        ));
    }
    let attrs = check_signed_attributes(&token.signer, token.tst_info)?;
    if root.timestamp_authorities.is_empty() {
        return Err(fail("the trusted root has no timestamp authorities"));
    }
    // Embedded certificates that do not parse cannot be the signer; the trusted root decides.
    let embedded: Vec<Cert<'_>> = token.certs.iter().filter_map(|der| parse_cert(der).ok()).collect();
    let mut errors = Vec::new();
    for (index, authority) in root.timestamp_authorities.iter().enumerate() {
        match verify_with_authority(&token.signer, &tst, &attrs, &embedded, authority) {
            Ok(()) => {
                return Ok(VerifiedTimestamp {
                    time: tst.gen_time.secs,
                    tsa_uri: authority.uri.clone(),
                })
            }
            Err(Some(reason)) => errors.push(format!("timestamp authority {index} ({}): {reason}", authority.uri)),
            Err(None) => {}
        }
    }
    match errors.len() {
        0 => Err(fail(
            "the timestamp was not signed by a timestamp authority of the trusted root \
             (no trusted TSA certificate matches the token's signer)",
        )),
        _ => Err(fail(errors.join("; "))),
    }
}

/// The step every fault here is reported at.
const STEP: Step = Step::Timestamp;

fn fail(reason: impl Into<String>) -> VerifyError {
    VerifyError::new(STEP, reason)
}

// ---------------------------------------------------------------------------------------------
// Object identifiers.

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_CERTIFICATE_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const ID_KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");
const ID_CE_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const ID_CE_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const ID_CE_SUBJECT_KEY_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");

/// Reads an AlgorithmIdentifier and returns its OID element (parameters are not used).
fn algorithm<'a>(der: &mut Der<'a>, what: &'static str) -> Result<Tlv<'a>> {
    let seq = der.take(SEQUENCE)?;
    let mut inner = Der::new(seq.value, STEP, what);
    let oid = inner.take(OID)?;
    if !inner.is_empty() {
        inner.any()?;
    }
    inner.finish()?;
    Ok(oid)
}

fn hash_alg(oid: &Tlv<'_>, what: &str) -> Result<HashAlg> {
    if oid.is_oid(&ID_SHA256) {
        Ok(HashAlg::Sha256)
    } else if oid.is_oid(&ID_SHA384) {
        Ok(HashAlg::Sha384)
    } else if oid.is_oid(&ID_SHA512) {
        Ok(HashAlg::Sha512)
    } else {
        Err(fail(format!("unsupported {what} hash algorithm {}", oid.oid_name())))
    }
}

// ---------------------------------------------------------------------------------------------
// The token.

/// How the SignerInfo names its certificate.
#[derive(Debug, Clone, Copy)]
enum Sid<'a> {
    /// Raw DER issuer Name and the serial number's INTEGER content octets.
    IssuerSerial { issuer: &'a [u8], serial: &'a [u8] },
    /// Subject key identifier.
    KeyId(&'a [u8]),
}

/// The single SignerInfo.
#[derive(Debug)]
struct Signer<'a> {
    sid: Sid<'a>,
    digest_alg: Tlv<'a>,
    /// The signed attributes re-tagged as `SET OF` (what the signature covers).
    signed_attrs_der: Vec<u8>,
    /// The content of the signed attributes (the attributes themselves).
    signed_attrs: &'a [u8],
    /// The signature algorithm, or the OID of an unsupported one (refused once a trusted
    /// signer is found).
    sig_alg: std::result::Result<SignatureAlgorithm, String>,
    signature: &'a [u8],
}

/// The parts of a TimeStampToken used for verification.
#[derive(Debug)]
struct Token<'a> {
    /// The eContent octets: DER TSTInfo.
    tst_info: &'a [u8],
    /// Embedded certificates, DER.
    certs: Vec<&'a [u8]>,
    signer: Signer<'a>,
}

/// Accepts a TimeStampResp (status + token, as Sigstore bundles store it) or a bare token;
/// returns the token (ContentInfo) bytes.
fn unwrap_response(data: &[u8]) -> Result<&[u8]> {
    let top = single(data, SEQUENCE, STEP, "timestamp")?;
    let mut fields = Der::new(top.value, STEP, "timestamp response");
    let first = fields.any()?;
    match first.tag {
        // ContentInfo: contentType comes first.
        OID => Ok(top.raw),
        // TimeStampResp: PKIStatusInfo, then the token.
        SEQUENCE => {
            let mut status_info = Der::new(first.value, STEP, "timestamp response status");
            let status = status_info.take(INTEGER)?;
            // granted (0) or grantedWithMods (1)
            if status.value != [0] && status.value != [1] {
                return Err(fail(format!(
                    "the timestamp response status is not granted (status {})",
                    hex::encode(status.value)
                )));
            }
            let token = fields
                .optional(SEQUENCE)?
                .ok_or_else(|| fail("the timestamp response carries no timestamp token"))?;
            fields.finish()?;
            Ok(token.raw)
        }
        other => Err(fail(format!(
            "malformed timestamp: neither a TimeStampResp nor a TimeStampToken (tag {other:#04x})"
        ))),
    }
}

fn parse_token(data: &[u8]) -> Result<Token<'_>> {
    let content_info = single(data, SEQUENCE, STEP, "timestamp token")?;
    let mut ci = Der::new(content_info.value, STEP, "timestamp token");
    let content_type = ci.take(OID)?;
    if !content_type.is_oid(&ID_SIGNED_DATA) {
        return Err(fail(format!(
            "the timestamp token is not CMS SignedData (content type {})",
            content_type.oid_name()
        )));
    }
    let explicit = ci.take(CONTEXT_0)?;
    ci.finish()?;
    let signed_data = single(explicit.value, SEQUENCE, STEP, "SignedData")?;

    let mut sd = Der::new(signed_data.value, STEP, "SignedData");
    sd.take(INTEGER)?; // version
    sd.take(SET)?; // digestAlgorithms
    let encap = sd.take(SEQUENCE)?;
    let mut ec = Der::new(encap.value, STEP, "encapsulated content");
    let econtent_type = ec.take(OID)?;
    if !econtent_type.is_oid(&ID_CT_TST_INFO) {
        return Err(fail(format!(
            "the timestamp token does not contain a TSTInfo (eContentType {})",
            econtent_type.oid_name()
        )));
    }
    let econtent = ec
        .optional(CONTEXT_0)?
        .ok_or_else(|| fail("the timestamp token has no TSTInfo content"))?;
    ec.finish()?;
    let tst_info = single(econtent.value, OCTET_STRING, STEP, "encapsulated content")?.value;

    let mut certs = Vec::new();
    if let Some(set) = sd.optional(CONTEXT_0)? {
        let mut choices = Der::new(set.value, STEP, "embedded certificates");
        while !choices.is_empty() {
            let choice = choices.any()?;
            // Only plain X.509 certificates; attribute and other certificate formats are ignored.
            if choice.tag == SEQUENCE {
                certs.push(choice.raw);
            }
        }
    }
    sd.optional(CONTEXT_1)?; // CRLs
    let signer_infos = sd.take(SET)?;
    sd.finish()?;

    let mut infos = Der::new(signer_infos.value, STEP, "SignerInfos");
    let mut signers = Vec::new();
    while !infos.is_empty() {
        signers.push(infos.take(SEQUENCE)?);
    }
    let [info] = signers.as_slice() else {
        return Err(fail(format!(
            "the timestamp token must have exactly one signer, it has {}",
            signers.len()
        )));
    };
    Ok(Token {
        tst_info,
        certs,
        signer: parse_signer_info(info.value)?,
    })
}

fn parse_signer_info(data: &[u8]) -> Result<Signer<'_>> {
    let mut si = Der::new(data, STEP, "SignerInfo");
    si.take(INTEGER)?; // version
    let sid_tlv = si.any()?;
    let sid = match sid_tlv.tag {
        SEQUENCE => {
            let mut ias = Der::new(sid_tlv.value, STEP, "SignerInfo issuerAndSerialNumber");
            let issuer = ias.take(SEQUENCE)?.raw;
            let serial = ias.take(INTEGER)?.value;
            ias.finish()?;
            Sid::IssuerSerial { issuer, serial }
        }
        CONTEXT_0_PRIMITIVE => Sid::KeyId(sid_tlv.value),
        other => {
            return Err(fail(format!(
                "malformed SignerInfo: unknown signer identifier tag {other:#04x}"
            )))
        }
    };
    let digest_alg = algorithm(&mut si, "SignerInfo digest algorithm")?;
    let attrs = si
        .optional(CONTEXT_0)?
        .ok_or_else(|| fail("the timestamp's signer has no signed attributes"))?;
    let mut signed_attrs_der = attrs.raw.to_vec();
    if let Some(tag) = signed_attrs_der.first_mut() {
        *tag = SET;
    }
    let sig_oid = algorithm(&mut si, "SignerInfo signature algorithm")?;
    let sig_alg = ObjectIdentifier::from_bytes(sig_oid.value)
        .ok()
        .and_then(|oid| SignatureAlgorithm::from_oid(&oid))
        .ok_or_else(|| sig_oid.oid_name());
    let signature = si.take(OCTET_STRING)?.value;
    si.optional(CONTEXT_1)?; // unsigned attributes
    si.finish()?;
    Ok(Signer {
        sid,
        digest_alg,
        signed_attrs_der,
        signed_attrs: attrs.value,
        sig_alg,
        signature,
    })
}

/// `genTime`: whole seconds and whether a fraction of a second followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GenTime {
    secs: i64,
    fraction: bool,
}

impl GenTime {
    /// The smallest whole second not before the exact time (for comparisons with ends).
    fn ceil(self) -> i64 {
        self.secs.saturating_add(i64::from(self.fraction))
    }

    /// Whether the exact time lies within `[start, end]`.
    fn within(self, start: i64, end: i64) -> bool {
        start <= self.secs && self.ceil() <= end
    }
}

#[derive(Debug)]
struct TstInfo<'a> {
    imprint_alg: HashAlg,
    imprint: &'a [u8],
    gen_time: GenTime,
}

fn parse_tst_info(data: &[u8]) -> Result<TstInfo<'_>> {
    let seq = single(data, SEQUENCE, STEP, "TSTInfo")?;
    let mut tst = Der::new(seq.value, STEP, "TSTInfo");
    let version = tst.take(INTEGER)?;
    if version.value != [1] {
        return Err(fail(format!(
            "unsupported TSTInfo version {}",
            hex::encode(version.value)
        )));
    }
    tst.take(OID)?; // policy: not checked
    let imprint = tst.take(SEQUENCE)?;
    let mut mi = Der::new(imprint.value, STEP, "TSTInfo messageImprint");
    let alg = algorithm(&mut mi, "TSTInfo messageImprint algorithm")?;
    let imprint_alg = hash_alg(&alg, "message imprint")?;
    let hashed = mi.take(OCTET_STRING)?.value;
    mi.finish()?;
    tst.take(INTEGER)?; // serialNumber
    let gen_time = parse_generalized_time(tst.take(GENERALIZED_TIME)?.value)?;
    // accuracy, ordering, nonce, tsa and extensions are not needed.
    Ok(TstInfo {
        imprint_alg,
        imprint: hashed,
        gen_time,
    })
}

/// Parses `YYYYMMDDHHMMSS[.f+]Z` (RFC 3161 genTime).
fn parse_generalized_time(value: &[u8]) -> Result<GenTime> {
    let bad = || {
        fail(format!(
            "malformed TSTInfo genTime {:?}",
            String::from_utf8_lossy(value)
        ))
    };
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    let body = text.strip_suffix('Z').ok_or_else(bad)?;
    let (whole, fraction) = match body.split_once('.') {
        Some((whole, fraction)) => {
            if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            (whole, fraction.bytes().any(|b| b != b'0'))
        }
        None => (body, false),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let field = |range: std::ops::Range<usize>| -> Result<u16> {
        whole.get(range).and_then(|s| s.parse::<u16>().ok()).ok_or_else(bad)
    };
    let year = i32::from(field(0..4)?);
    let month = time::Month::try_from(u8::try_from(field(4..6)?).map_err(|_| bad())?).map_err(|_| bad())?;
    let day = u8::try_from(field(6..8)?).map_err(|_| bad())?;
    let hour = u8::try_from(field(8..10)?).map_err(|_| bad())?;
    let minute = u8::try_from(field(10..12)?).map_err(|_| bad())?;
    let second = u8::try_from(field(12..14)?).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(year, month, day).map_err(|_| bad())?;
    let clock = time::Time::from_hms(hour, minute, second).map_err(|_| bad())?;
    Ok(GenTime {
        secs: time::PrimitiveDateTime::new(date, clock).assume_utc().unix_timestamp(),
        fraction,
    })
}

/// Signed attributes needed after the signer is known.
#[derive(Debug, Default)]
struct SignedAttrs<'a> {
    /// The first ESSCertIDv2 of a signingCertificateV2 attribute: (hash, certHash).
    ess_cert_v2: Option<(HashAlg, &'a [u8])>,
}

/// Checks content-type and message-digest; returns the attributes used later.
fn check_signed_attributes<'a>(signer: &Signer<'a>, tst_info: &[u8]) -> Result<SignedAttrs<'a>> {
    let mut content_type = None;
    let mut message_digest = None;
    let mut out = SignedAttrs::default();
    let mut attrs = Der::new(signer.signed_attrs, STEP, "signed attributes");
    while !attrs.is_empty() {
        let attr = attrs.take(SEQUENCE)?;
        let mut a = Der::new(attr.value, STEP, "signed attribute");
        let kind = a.take(OID)?;
        let values_set = a.take(SET)?;
        a.finish()?;
        let mut values = Vec::new();
        let mut vs = Der::new(values_set.value, STEP, "signed attribute values");
        while !vs.is_empty() {
            values.push(vs.any()?);
        }
        let one_value = |name: &str| -> Result<Tlv<'a>> {
            match values.as_slice() {
                [value] => Ok(*value),
                _ => Err(fail(format!("the {name} signed attribute must have exactly one value"))),
            }
        };
        if kind.is_oid(&ID_CONTENT_TYPE) {
            if content_type.replace(one_value("content-type")?).is_some() {
                return Err(fail("duplicate content-type signed attribute"));
            }
        } else if kind.is_oid(&ID_MESSAGE_DIGEST) {
            if message_digest.replace(one_value("message-digest")?).is_some() {
                return Err(fail("duplicate message-digest signed attribute"));
            }
        } else if kind.is_oid(&ID_SIGNING_CERTIFICATE_V2) {
            out.ess_cert_v2 = Some(parse_signing_certificate_v2(one_value("signingCertificateV2")?)?);
        }
    }
    let content_type = content_type.ok_or_else(|| fail("the signed attributes have no content-type"))?;
    if !content_type.is_oid(&ID_CT_TST_INFO) {
        return Err(fail(format!(
            "the content-type signed attribute is {}, not id-ct-TSTInfo",
            content_type.oid_name()
        )));
    }
    let message_digest = message_digest.ok_or_else(|| fail("the signed attributes have no message-digest"))?;
    if message_digest.tag != OCTET_STRING {
        return Err(fail("malformed message-digest signed attribute"));
    }
    let digest_alg = hash_alg(&signer.digest_alg, "signer digest")?;
    if digest_alg.digest(tst_info) != message_digest.value {
        return Err(fail("the message-digest signed attribute does not match the TSTInfo"));
    }
    Ok(out)
}

/// SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF ESSCertIDv2, policies OPTIONAL };
/// ESSCertIDv2 ::= SEQUENCE { hashAlgorithm DEFAULT sha256, certHash OCTET STRING, issuerSerial OPTIONAL }.
fn parse_signing_certificate_v2<'a>(value: Tlv<'a>) -> Result<(HashAlg, &'a [u8])> {
    const WHAT: &str = "signingCertificateV2 attribute";
    if value.tag != SEQUENCE {
        return Err(fail(format!("malformed {WHAT}")));
    }
    let mut outer = Der::new(value.value, STEP, WHAT);
    let certs = outer.take(SEQUENCE)?;
    let mut ids = Der::new(certs.value, STEP, WHAT);
    let first = ids.take(SEQUENCE)?;
    let mut id = Der::new(first.value, STEP, WHAT);
    let hash = if id.peek_tag() == Some(SEQUENCE) {
        hash_alg(&algorithm(&mut id, WHAT)?, "signingCertificateV2")?
    } else {
        HashAlg::Sha256
    };
    let cert_hash = id.take(OCTET_STRING)?.value;
    Ok((hash, cert_hash))
}

// ---------------------------------------------------------------------------------------------
// Certificates.

/// A parsed certificate with the raw pieces compared byte for byte.
struct Cert<'a> {
    raw: RawCertificate<'a>,
    parsed: Certificate,
}

fn parse_cert(der: &[u8]) -> Result<Cert<'_>> {
    let raw = crate::cert::raw_parts(der, STEP)?;
    let parsed = Certificate::from_der(der).map_err(|e| fail(format!("malformed certificate: {e}")))?;
    Ok(Cert { raw, parsed })
}

impl Cert<'_> {
    fn name(&self) -> String {
        self.parsed.tbs_certificate.subject.to_string()
    }

    fn extension(&self, oid: &ObjectIdentifier) -> Option<&x509_cert::ext::Extension> {
        self.parsed
            .tbs_certificate
            .extensions
            .as_deref()
            .and_then(|exts| exts.iter().find(|e| e.extn_id == *oid))
    }

    fn subject_key_id(&self) -> Option<&[u8]> {
        let ext = self.extension(&ID_CE_SUBJECT_KEY_IDENTIFIER)?;
        single(ext.extn_value.as_bytes(), OCTET_STRING, STEP, "subject key identifier")
            .ok()
            .map(|t| t.value)
    }

    fn is_ca(&self) -> bool {
        self.extension(&ID_CE_BASIC_CONSTRAINTS)
            .and_then(|ext| BasicConstraints::from_der(ext.extn_value.as_bytes()).ok())
            .is_some_and(|bc| bc.ca)
    }

    /// The extended key usage: (critical, purposes), or `Ok(None)` when absent.
    fn eku(&self) -> Result<Option<(bool, Vec<ObjectIdentifier>)>> {
        let Some(ext) = self.extension(&ID_CE_EXT_KEY_USAGE) else {
            return Ok(None);
        };
        let eku = ExtendedKeyUsage::from_der(ext.extn_value.as_bytes()).map_err(|e| {
            fail(format!(
                "certificate {}: malformed extended key usage: {e}",
                self.name()
            ))
        })?;
        Ok(Some((ext.critical, eku.0)))
    }

    fn public_key(&self) -> Result<PublicKey> {
        let spki = self
            .parsed
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| fail(format!("certificate {}: {e}", self.name())))?;
        PublicKey::from_spki_der(&spki).map_err(|e| fail(format!("certificate {}: {e}", self.name())))
    }

    fn validity(&self) -> Result<(i64, i64)> {
        let validity = &self.parsed.tbs_certificate.validity;
        let secs = |t: x509_cert::time::Time| {
            i64::try_from(t.to_unix_duration().as_secs())
                .map_err(|_| fail(format!("certificate {}: validity out of range", self.name())))
        };
        Ok((secs(validity.not_before)?, secs(validity.not_after)?))
    }

    fn matches(&self, sid: &Sid<'_>) -> bool {
        match *sid {
            Sid::IssuerSerial { issuer, serial } => self.raw.issuer == issuer && self.raw.serial == serial,
            Sid::KeyId(id) => self.subject_key_id() == Some(id),
        }
    }

    /// Checks that `issuer` issued and signed this certificate (over its original TBS bytes).
    fn verify_issued_by(&self, issuer: &Cert<'_>) -> Result<()> {
        if self.raw.issuer != issuer.raw.subject {
            return Err(fail(format!(
                "certificate {} was not issued by {}",
                self.name(),
                issuer.name()
            )));
        }
        crate::cert::check_signature(&self.raw, &issuer.public_key()?).map_err(|why| {
            fail(format!(
                "certificate {} is not signed by {}: {why}",
                self.name(),
                issuer.name()
            ))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Trust decisions.

/// Verifies the token against one trusted-root authority. `Err(None)`: this authority did not
/// issue the token (its certificates do not match the signer); `Err(Some(reason))`: it matches
/// but a check failed.
fn verify_with_authority(
    signer: &Signer<'_>,
    tst: &TstInfo<'_>,
    attrs: &SignedAttrs<'_>,
    embedded: &[Cert<'_>],
    authority: &Authority,
) -> std::result::Result<(), Option<String>> {
    let chain = authority
        .chain
        .iter()
        .map(|der| parse_cert(der))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| Some(format!("trusted certificate chain: {}", e.reason)))?;
    let Some(leaf) = chain.first() else {
        return Err(None);
    };

    let mut paths: Vec<Vec<&Cert<'_>>> = Vec::new();
    if leaf.matches(&signer.sid) {
        paths.push(chain.iter().collect());
    }
    for cert in embedded.iter().filter(|c| c.matches(&signer.sid)) {
        if chain.iter().any(|trusted| trusted.raw.der == cert.raw.der) {
            // Byte-identical to a trusted certificate: the leaf case is handled above, and a
            // CA certificate of the chain cannot be a timestamp signer.
            continue;
        }
        // An embedded certificate must have been issued by a CA of the trusted chain.
        for (index, issuer) in chain.iter().enumerate() {
            if cert.raw.issuer == issuer.raw.subject && issuer.is_ca() {
                let mut path = vec![cert];
                path.extend(chain.iter().skip(index));
                paths.push(path);
            }
        }
    }
    if paths.is_empty() {
        return Err(None);
    }

    // Links between two certificates of the trusted chain were checked once per trusted root.
    let chain_checked = authority.verified_chain().is_ok();
    let mut last = String::new();
    for path in paths {
        match verify_path(
            signer,
            tst,
            attrs,
            &path,
            chain_checked.then_some(authority.chain.as_slice()),
        ) {
            Ok(()) => {
                if !tst
                    .gen_time
                    .within(authority.validity.start, authority.validity.end.unwrap_or(i64::MAX))
                {
                    return Err(Some(format!(
                        "the timestamp's genTime {} is outside the authority's validity window in the trusted root",
                        tst.gen_time.secs
                    )));
                }
                return Ok(());
            }
            Err(e) => last = e.reason,
        }
    }
    Err(Some(last))
}

/// Verifies the signer's signature with `path[0]` and the path up to its last certificate
/// (the trust anchor), at `genTime`.
fn verify_path(
    signer: &Signer<'_>,
    tst: &TstInfo<'_>,
    attrs: &SignedAttrs<'_>,
    path: &[&Cert<'_>],
    checked_chain: Option<&[Vec<u8>]>,
) -> Result<()> {
    let Some(leaf) = path.first() else {
        return Err(fail("empty certificate path"));
    };
    let fallback = hash_alg(&signer.digest_alg, "signer digest").ok();
    let key = leaf.public_key()?;
    match &signer.sig_alg {
        Ok(alg) => alg
            .verify(&key, fallback, &signer.signed_attrs_der, signer.signature)
            .map_err(|e| e.to_string()),
        Err(oid) => Err(format!("unsupported signature algorithm {oid}")),
    }
    .map_err(|why| {
        fail(format!(
            "the timestamp's signature does not verify with {}: {why}",
            leaf.name()
        ))
    })?;

    if let Some((hash, cert_hash)) = attrs.ess_cert_v2 {
        if hash.digest(leaf.raw.der) != cert_hash {
            return Err(fail(
                "the signingCertificateV2 attribute does not name the timestamp's signing certificate",
            ));
        }
    }

    match leaf.eku()? {
        Some((true, purposes)) if purposes.contains(&ID_KP_TIME_STAMPING) => {}
        Some((false, _)) => {
            return Err(fail(format!(
                "certificate {}: the extended key usage must be critical for a timestamping certificate",
                leaf.name()
            )))
        }
        _ => {
            return Err(fail(format!(
                "certificate {} is not a timestamping certificate (no id-kp-timeStamping extended key usage)",
                leaf.name()
            )))
        }
    }

    let last = path.len().saturating_sub(1);
    for (index, cert) in path.iter().enumerate() {
        let (not_before, not_after) = cert.validity()?;
        if !tst.gen_time.within(not_before, not_after) {
            return Err(fail(format!(
                "certificate {} is not valid at the timestamp's genTime {} (valid {not_before}..={not_after})",
                cert.name(),
                tst.gen_time.secs
            )));
        }
        if index > 0 {
            if index < last && !cert.is_ca() {
                return Err(fail(format!(
                    "certificate {} is an intermediate but not a CA",
                    cert.name()
                )));
            }
            // Issuing certificates with an EKU must allow timestamping (nested EKU rule).
            if let Some((_, purposes)) = cert.eku()? {
                if !purposes.contains(&ID_KP_TIME_STAMPING) && !purposes.contains(&ANY_EXTENDED_KEY_USAGE) {
                    return Err(fail(format!(
                        "certificate {} restricts extended key usage and does not allow timestamping",
                        cert.name()
                    )));
                }
            }
        }
        if let Some(issuer) = path.get(index + 1) {
            let already_checked = checked_chain.is_some_and(|chain| {
                chain.iter().any(|d| d.as_slice() == cert.raw.der)
                    && chain.iter().any(|d| d.as_slice() == issuer.raw.der)
            });
            if !already_checked {
                cert.verify_issued_by(issuer)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust_root::{b64, rfc3339};

    fn fixtures() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
    }

    /// A conformance case: its timestamp tokens, the bytes they cover, and its trusted root.
    struct Case {
        tokens: Vec<Vec<u8>>,
        signed: Vec<u8>,
        root: TrustedRoot,
    }

    fn case(name: &str) -> Case {
        let dir = fixtures().join("sigstore-conformance/bundle-verify").join(name);
        let bundle: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("bundle.sigstore.json")).expect("bundle")).expect("json");
        let tokens = bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
            .as_array()
            .expect("rfc3161Timestamps")
            .iter()
            .map(|t| {
                // One fixture's token was produced with `base64` and keeps its line breaks;
                // protobuf JSON decoders (Go, Python) skip them.
                let text: String = t["signedTimestamp"]
                    .as_str()
                    .expect("signedTimestamp")
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                b64(&text).expect("base64")
            })
            .collect();
        let signed = bundle["messageSignature"]["signature"]
            .as_str()
            .or_else(|| bundle["dsseEnvelope"]["signatures"][0]["sig"].as_str())
            .expect("signature");
        let root_path = dir.join("trusted_root.json");
        let root_path = if root_path.exists() {
            root_path
        } else {
            fixtures().join("trusted-roots/public-good-production.trusted_root.json")
        };
        let root = TrustedRoot::from_json(&std::fs::read(root_path).expect("root")).expect("trusted root");
        Case {
            tokens,
            signed: b64(signed).expect("base64 signature"),
            root,
        }
    }

    fn verify_case(name: &str) -> Result<VerifiedTimestamp> {
        let case = case(name);
        assert_eq!(case.tokens.len(), 1, "{name}");
        verify_timestamp(&case.tokens[0], &case.signed, &case.root)
    }

    fn expect_ok(name: &str, time: &str, uri: &str) {
        let ts = verify_case(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ts.time, rfc3339(time).expect("time"), "{name}");
        assert_eq!(ts.tsa_uri, uri, "{name}");
    }

    fn expect_err(name: &str, needle: &str) {
        let e = verify_case(name).expect_err(name);
        assert_eq!(e.step, Step::Timestamp, "{name}");
        assert!(e.reason.contains(needle), "{name}: {}", e.reason);
    }

    const STAGING_TSA: &str = "https://timestamp.sigstage.dev/api/v1/timestamp";

    #[test]
    fn timestamp_conformance_cases_that_verify() {
        expect_ok("rekor2-happy-path", "2025-06-12T12:02:20Z", STAGING_TSA);
        expect_ok(
            "rekor2-timestamp-with-embedded-cert",
            "2025-08-06T18:51:36Z",
            STAGING_TSA,
        );
        expect_ok(
            "rekor2-timestamp-without-embedded-cert",
            "2025-08-06T19:03:51Z",
            STAGING_TSA,
        );
        // The chain expired minutes after issuance; it was valid at genTime.
        expect_ok(
            "rekor2-timestamp-with-expired-cert-chain",
            "2025-08-07T15:32:26Z",
            "https://localhost:3000/api/v1/timestamp",
        );
        // genTime equals the end of the authority's validity window (closed interval).
        expect_ok(
            "trust-root-tsa-validity-end-inclusive",
            "2025-06-12T12:02:20Z",
            STAGING_TSA,
        );
        // These fail for the signing certificate's lifetime, not for the timestamp itself.
        expect_ok(
            "rekor2-timestamp-with-incorrect-time_fail",
            "2025-07-15T10:33:31Z",
            STAGING_TSA,
        );
        expect_ok(
            "intoto-tsa-timestamp-outside-cert-validity_fail",
            "2023-02-02T00:00:00Z",
            "http://localhost:8000",
        );
    }

    #[test]
    fn timestamp_conformance_cases_that_fail() {
        expect_err(
            "rekor2-timestamp-outside-trust-root-tsa-validity_fail",
            "validity window",
        );
        expect_err(
            "rekor2-timestamp-outside-tsa-cert-validity_fail",
            "not valid at the timestamp's genTime",
        );
        expect_err("rekor2-timestamp-payload-mismatch_fail", "message imprint");
        expect_err(
            "rekor2-timestamp-untrusted-tsa-with-embedded-cert_fail",
            "not signed by a timestamp authority",
        );
        expect_err(
            "rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail",
            "not signed by a timestamp authority",
        );
    }

    #[test]
    fn timestamp_from_another_tsa_is_refused_by_the_production_root() {
        let production = TrustedRoot::from_json(
            &std::fs::read(fixtures().join("trusted-roots/public-good-production.trusted_root.json")).expect("root"),
        )
        .expect("production root");
        // No embedded certificate: nothing in the production root matches the signer.
        let plain = case("rekor2-timestamp-without-embedded-cert");
        let e = verify_timestamp(&plain.tokens[0], &plain.signed, &production).expect_err("other TSA");
        assert!(e.reason.contains("not signed by a timestamp authority"), "{}", e.reason);
        // The embedded staging leaf names an issuer with the same DN as the production TSA root
        // ("O=sigstore.dev, CN=sigstore-tsa-selfsigned"), so it is tried against it and refused
        // because the production root did not sign it.
        let case = case("rekor2-happy-path");
        let e = verify_timestamp(&case.tokens[0], &case.signed, &production).expect_err("other TSA");
        assert!(e.reason.contains("is not signed by"), "{}", e.reason);
    }

    #[test]
    fn timestamp_mutations_are_refused() {
        let case = case("rekor2-happy-path");
        let token = &case.tokens[0];

        let mut signed = case.signed.clone();
        signed[10] ^= 1;
        let e = verify_timestamp(token, &signed, &case.root).expect_err("imprint");
        assert!(e.reason.contains("message imprint"), "{}", e.reason);

        // The token ends with the SignerInfo signature (no unsigned attributes): flip its last byte.
        let mut forged = token.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let e = verify_timestamp(&forged, &case.signed, &case.root).expect_err("signature");
        assert_eq!(e.step, Step::Timestamp);
        assert!(e.reason.contains("signature does not verify"), "{}", e.reason);

        // A byte inside the TSTInfo (its genTime seconds) breaks the message-digest attribute.
        let needle = b"20250612120220Z";
        let at = token.windows(needle.len()).position(|w| w == needle).expect("genTime");
        let mut moved = token.clone();
        moved[at + 13] = b'1';
        let e = verify_timestamp(&moved, &case.signed, &case.root).expect_err("digest");
        assert!(e.reason.contains("message-digest"), "{}", e.reason);

        let mut empty = case.root.clone();
        empty.timestamp_authorities.clear();
        let e = verify_timestamp(token, &case.signed, &empty).expect_err("no TSAs");
        assert!(e.reason.contains("no timestamp authorities"), "{}", e.reason);

        let mut shifted = case.root.clone();
        shifted.timestamp_authorities[0].validity.start = rfc3339("2025-06-12T12:02:21Z").expect("time");
        let e = verify_timestamp(token, &case.signed, &shifted).expect_err("before start");
        assert!(e.reason.contains("validity window"), "{}", e.reason);

        assert!(verify_timestamp(b"junk", &case.signed, &case.root).is_err());
        assert!(verify_timestamp(&token[..token.len() - 5], &case.signed, &case.root).is_err());
        let mut trailing = token.clone();
        trailing.push(0);
        assert!(verify_timestamp(&trailing, &case.signed, &case.root).is_err());
    }

    #[test]
    fn timestamp_bare_token_and_response_status() {
        let case = case("rekor2-happy-path");
        let response = &case.tokens[0];
        let bare = unwrap_response(response).expect("token");
        assert_ne!(bare.len(), response.len());
        let ts = verify_timestamp(bare, &case.signed, &case.root).expect("bare token verifies");
        assert_eq!(ts.time, rfc3339("2025-06-12T12:02:20Z").expect("time"));

        // Status "rejection" (2) in the PKIStatusInfo: SEQUENCE { SEQUENCE { INTEGER 0 } ...}.
        assert_eq!(&response[4..9], &[0x30, 0x03, 0x02, 0x01, 0x00]);
        let mut rejected = response.clone();
        rejected[8] = 2;
        let e = verify_timestamp(&rejected, &case.signed, &case.root).expect_err("rejected");
        assert!(e.reason.contains("not granted"), "{}", e.reason);
    }

    #[test]
    fn timestamp_generalized_time() {
        let t = parse_generalized_time(b"20250612120220Z").expect("time");
        assert_eq!(
            t,
            GenTime {
                secs: 1_749_729_740,
                fraction: false
            }
        );
        let t = parse_generalized_time(b"20250612120220.250Z").expect("fraction");
        assert_eq!(
            t,
            GenTime {
                secs: 1_749_729_740,
                fraction: true
            }
        );
        assert!(t.within(0, 1_749_729_741));
        assert!(!t.within(0, 1_749_729_740));
        assert!(parse_generalized_time(b"20250612120220.000Z")
            .expect("zero fraction")
            .within(0, 1_749_729_740));
        for bad in [
            &b"20250612120220"[..],
            b"2025061212022Z",
            b"20251312120220Z",
            b"20250612120220.Z",
            b"2025+612120220Z",
        ] {
            assert!(parse_generalized_time(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
