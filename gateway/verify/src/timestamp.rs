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
//! Certificates, the signature-algorithm map, the issued-by check and the path walk are the
//! shared layer's ([`crate::x509`]), the same as for the Fulcio signing certificate; what is
//! the timestamp's own here is which certificates form a path and what the leaf must be.
//!
//! The CMS structure is walked by hand with the crate's one DER walker ([`crate::der_walk`])
//! rather than through `cms` types: those re-sort `SET OF` on decoding, and the signature
//! covers the signed attributes exactly as the TSA encoded them. `genTime` is read by hand
//! too: `der`'s `GeneralizedTime` refuses the fractions of a second RFC 3161 allows.

use const_oid::ObjectIdentifier;

use crate::der_walk::{
    single, Der, Tlv, CONTEXT_0, CONTEXT_0_PRIMITIVE, CONTEXT_1, GENERALIZED_TIME, INTEGER, OCTET_STRING, OID,
    SEQUENCE, SET,
};
use crate::error::{Result, Step, VerifyError};
use crate::keys::{HashAlg, SignatureAlgorithm};
use crate::trust_root::{Authority, TrustedRoot};
use crate::x509::{self, CertView, Instant, LinkFault, PathFault};

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
    let embedded: Vec<CertView<'_>> = token
        .certs
        .iter()
        .filter_map(|der| CertView::new(der, STEP).ok())
        .collect();
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

/// Reads an AlgorithmIdentifier and returns its OID element (parameters are not used).
fn algorithm<'a>(der: &mut Der<'a>, what: &'static str) -> Result<Tlv<'a>> {
    let seq = der.take(SEQUENCE)?;
    let mut inner = Der::new(seq.value, STEP, what);
    let oid = inner.take(OID)?;
    if ObjectIdentifier::from_bytes(oid.value).is_err() {
        return Err(fail(format!("{what}: the algorithm identifier is not a valid OID")));
    }
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
    /// The signature algorithm ([`x509::signature_algorithm`], with the signer's digest), or the
    /// OID of an unsupported one (refused once a trusted signer is found).
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
    // The envelope around the signed attributes is not signed: it is read strictly, so that a
    // token has one reading (RFC 5652: version 3 for a TSTInfo, whose type is not id-data).
    let version = sd.take(INTEGER)?;
    if version.value != [3] {
        return Err(fail(format!(
            "the timestamp token's SignedData version is {}, not 3",
            hex::encode(version.value)
        )));
    }
    let digest_algorithms = sd.take(SET)?;
    let mut algorithms = Der::new(digest_algorithms.value, STEP, "SignedData digestAlgorithms");
    while !algorithms.is_empty() {
        algorithm(&mut algorithms, "SignedData digest algorithm")?;
    }
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
            // Only plain X.509 certificates, each well-formed DER: the set is not signed, so
            // anything else (other certificate formats, a certificate that does not decode) is
            // refused rather than skipped, and a token is read one way.
            if choice.tag != SEQUENCE {
                return Err(fail(format!(
                    "the timestamp token embeds a certificate format other than X.509 (tag {:#04x})",
                    choice.tag
                )));
            }
            if let Err(e) = <x509_cert::Certificate as der::Decode>::from_der(choice.raw) {
                return Err(fail(format!(
                    "the timestamp token's embedded certificate {} is not well-formed DER: {e}",
                    certs.len()
                )));
            }
            certs.push(choice.raw);
        }
    }
    if sd.optional(CONTEXT_1)?.is_some() {
        // Revocation data is not used (the trusted root's validity windows decide), and an
        // unsigned field this crate does not read is not accepted either.
        return Err(fail(
            "the timestamp token carries revocation lists, which are not supported",
        ));
    }
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
    // 1 with an issuer and serial number, 3 with a subject key identifier (RFC 5652 5.3).
    let version = si.take(INTEGER)?;
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
    let expected_version: &[u8] = match sid {
        Sid::IssuerSerial { .. } => &[1],
        Sid::KeyId(_) => &[3],
    };
    if version.value != expected_version {
        return Err(fail(format!(
            "the timestamp's SignerInfo version {} does not fit its signer identifier",
            hex::encode(version.value)
        )));
    }
    let digest_alg = algorithm(&mut si, "SignerInfo digest algorithm")?;
    let attrs = si
        .optional(CONTEXT_0)?
        .ok_or_else(|| fail("the timestamp's signer has no signed attributes"))?;
    let mut signed_attrs_der = attrs.raw.to_vec();
    if let Some(tag) = signed_attrs_der.first_mut() {
        *tag = SET;
    }
    let sig_oid = algorithm(&mut si, "SignerInfo signature algorithm")?;
    let digest = hash_alg(&digest_alg, "signer digest").ok();
    let sig_alg = ObjectIdentifier::from_bytes(sig_oid.value)
        .ok()
        .and_then(|oid| x509::signature_algorithm(&oid, digest))
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

#[derive(Debug)]
struct TstInfo<'a> {
    imprint_alg: HashAlg,
    imprint: &'a [u8],
    gen_time: Instant,
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
fn parse_generalized_time(value: &[u8]) -> Result<Instant> {
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
    Ok(Instant {
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
// Certificates (read through the shared layer, [`crate::x509`]).

/// Whether `cert` is the certificate the SignerInfo names.
fn matches(cert: &CertView<'_>, sid: &Sid<'_>) -> bool {
    match *sid {
        Sid::IssuerSerial { issuer, serial } => cert.raw.issuer == issuer && cert.raw.serial == serial,
        Sid::KeyId(id) => x509::subject_key_id(&cert.parsed) == Some(id),
    }
}

/// The refusal for `cert` not issued by `issuer`.
fn link_error(cert: &CertView<'_>, issuer: &CertView<'_>, fault: LinkFault) -> VerifyError {
    fail(match fault {
        LinkFault::Name => format!("certificate {} was not issued by {}", cert.name(), issuer.name()),
        LinkFault::IssuerKey(why) => format!("certificate {}: {why}", issuer.name()),
        LinkFault::Signature(why) => format!("certificate {} is not signed by {}: {why}", cert.name(), issuer.name()),
    })
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
    embedded: &[CertView<'_>],
    authority: &Authority,
) -> std::result::Result<(), Option<String>> {
    let chain = authority
        .chain
        .iter()
        .map(|der| CertView::new(der, STEP))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| Some(format!("trusted certificate chain: {}", e.reason)))?;
    let Some(leaf) = chain.first() else {
        return Err(None);
    };

    let mut paths: Vec<Vec<&CertView<'_>>> = Vec::new();
    if matches(leaf, &signer.sid) {
        paths.push(chain.iter().collect());
    }
    for cert in embedded.iter().filter(|c| matches(c, &signer.sid)) {
        if chain.iter().any(|trusted| trusted.raw.der == cert.raw.der) {
            // Byte-identical to a trusted certificate: the leaf case is handled above, and a
            // CA certificate of the chain cannot be a timestamp signer.
            continue;
        }
        // An embedded certificate must have been issued by a CA of the trusted chain.
        for (index, issuer) in chain.iter().enumerate() {
            if x509::names_chain(&cert.parsed, &issuer.parsed) && x509::is_ca(&issuer.parsed) {
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
    path: &[&CertView<'_>],
    checked_chain: Option<&[Vec<u8>]>,
) -> Result<()> {
    let Some(leaf) = path.first() else {
        return Err(fail("empty certificate path"));
    };
    let key = x509::public_key(&leaf.parsed).map_err(|why| fail(format!("certificate {}: {why}", leaf.name())))?;
    match &signer.sig_alg {
        Ok(alg) => alg
            .verify(&key, None, &signer.signed_attrs_der, signer.signature)
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

    let eku = x509::extended_key_usage(&leaf.parsed).map_err(|e| {
        fail(format!(
            "certificate {}: malformed extended key usage: {e}",
            leaf.name()
        ))
    })?;
    match eku {
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

    let name = |index: usize| path.get(index).map(|c| c.name()).unwrap_or_default();
    x509::check_path(path, &[tst.gen_time], Some(&ID_KP_TIME_STAMPING), checked_chain).map_err(|fault| match fault {
        PathFault::Empty => fail("empty certificate path"),
        PathFault::NotValid {
            index,
            at,
            not_before,
            not_after,
        } => fail(format!(
            "certificate {} is not valid at the timestamp's genTime {} (valid {not_before}..={not_after})",
            name(index),
            at.secs
        )),
        PathFault::NotCa(index) => fail(format!("certificate {} is an intermediate but not a CA", name(index))),
        PathFault::MalformedEku(index, e) => fail(format!(
            "certificate {}: malformed extended key usage: {e}",
            name(index)
        )),
        PathFault::EkuForbids(index) => fail(format!(
            "certificate {} restricts extended key usage and does not allow timestamping",
            name(index)
        )),
        PathFault::Link(index, fault) => match (path.get(index), path.get(index + 1)) {
            (Some(cert), Some(issuer)) => link_error(cert, issuer, fault),
            _ => fail("empty certificate path"),
        },
    })
}

#[cfg(test)]
mod tests;
