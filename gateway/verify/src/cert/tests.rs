//! Certificate signatures are checked over the TBS bytes as encoded, never a re-encoding.

use der::Encode;

use super::*;
use crate::der_walk::{encode, single, Der, BIT_STRING, OID, SEQUENCE, SET};
use crate::testing::{FulcioCert, TestCa};

const SAN: &str = "https://github.com/acme/widget/.github/workflows/release.yml@refs/tags/v1";

/// `AttributeTypeAndValue` with a UTF8String value.
fn attribute(oid_last: u8, value: &str) -> Vec<u8> {
    let mut content = encode(OID, &[0x55, 0x04, oid_last]);
    content.extend_from_slice(&encode(0x0c, value.as_bytes()));
    encode(SEQUENCE, &content)
}

/// A `Name` with one multi-valued RDN whose attributes are NOT in DER order (SET OF sorts
/// by encoding, so the shorter O=acme comes first): CN=widget before O=acme. Typed decoders
/// sort `SET OF` while decoding, so re-encoding the parsed name gives other bytes.
fn unsorted_name() -> Vec<u8> {
    let mut set = attribute(0x03, "widget");
    set.extend_from_slice(&attribute(0x0a, "acme"));
    encode(SEQUENCE, &encode(SET, &set))
}

/// A certificate of `tbs` (DER of a TBSCertificate) with `signature` and the signature
/// algorithm of `template`.
fn assemble(template: &[u8], tbs: &[u8], signature: &[u8]) -> Vec<u8> {
    let outer = single(template, SEQUENCE, Step::CertificateChain, "t").expect("certificate");
    let mut fields = Der::new(outer.value, Step::CertificateChain, "t");
    fields.take(SEQUENCE).expect("tbs");
    let algorithm = fields.take(SEQUENCE).expect("algorithm").raw;
    let mut bits = vec![0];
    bits.extend_from_slice(signature);
    let mut content = tbs.to_vec();
    content.extend_from_slice(algorithm);
    content.extend_from_slice(&encode(BIT_STRING, &bits));
    encode(SEQUENCE, &content)
}

/// The template's TBS with its subject replaced by `name`.
fn tbs_with_subject(template: &[u8], name: &[u8]) -> Vec<u8> {
    let raw = raw_parts(template, Step::CertificateChain).expect("template");
    let tbs = single(raw.tbs, SEQUENCE, Step::CertificateChain, "t").expect("tbs");
    let mut fields = Der::new(tbs.value, Step::CertificateChain, "t");
    let mut content = Vec::new();
    for index in 0.. {
        if fields.is_empty() {
            break;
        }
        let field = fields.any().expect("field");
        // version, serialNumber, signature, issuer, validity, subject, ...
        content.extend_from_slice(if index == 5 { name } else { field.raw });
    }
    encode(SEQUENCE, &content)
}

fn ca() -> (TestCa, Certificate) {
    let ca = TestCa::new("Portcullis test Fulcio").expect("CA");
    let parsed = parse(&ca.der).expect("CA parses");
    (ca, parsed)
}

#[test]
fn a_certificate_issued_by_the_ca_verifies() {
    let (ca, ca_cert) = ca();
    let leaf = FulcioCert::new().uri(SAN).issued_by(&ca).expect("leaf");
    verify_issued_by(&leaf, &ca_cert).expect("issued by the CA");
    let other = ca_cert_of("another CA");
    let e = verify_issued_by(&leaf, &other).expect_err("another CA");
    assert_eq!(e.step, Step::CertificateChain);
}

fn ca_cert_of(name: &str) -> Certificate {
    parse(&TestCa::new(name).expect("CA").der).expect("CA parses")
}

#[test]
fn a_non_canonical_tbs_is_verified_over_its_original_bytes() {
    let (ca, ca_cert) = ca();
    let template = FulcioCert::new().uri(SAN).issued_by(&ca).expect("leaf");
    let tbs = tbs_with_subject(&template, &unsorted_name());
    let cert = assemble(&template, &tbs, &ca.sign(&tbs).expect("signs"));

    // The parser accepts it and re-encodes it differently: a check over the re-encoding
    // (what this verifier did before) would refuse a certificate the CA did sign.
    let parsed = parse(&cert).expect("parses");
    let reencoded = parsed.tbs_certificate.to_der().expect("re-encodes");
    assert_ne!(reencoded, tbs, "the parser sorts the RDN");
    assert_eq!(raw_parts(&cert, Step::CertificateChain).expect("raw").tbs, &tbs[..]);

    verify_issued_by(&cert, &ca_cert).expect("verified over the bytes the CA signed");
}

#[test]
fn a_signature_over_the_re_encoding_of_other_bytes_is_refused() {
    let (ca, ca_cert) = ca();
    let template = FulcioCert::new().uri(SAN).issued_by(&ca).expect("leaf");
    let tbs = tbs_with_subject(&template, &unsorted_name());
    // The CA signed the canonical form; the certificate carries other (unsorted) bytes that
    // parse to the same structure.
    let unsigned = assemble(&template, &tbs, &[0x30, 0x00]);
    let canonical = parse(&unsigned)
        .expect("parses")
        .tbs_certificate
        .to_der()
        .expect("re-encodes");
    let signature = ca.sign(&canonical).expect("signs");
    let forged = assemble(&template, &tbs, &signature);
    // A check over the re-encoding would pass...
    let key = public_key(&ca_cert).expect("CA key");
    key.verify(crate::keys::HashAlg::Sha256, &canonical, &signature)
        .expect("the signature is good over the canonical bytes");
    // ...but these are not the bytes that were signed.
    let e = verify_issued_by(&forged, &ca_cert).expect_err("not signed as encoded");
    assert_eq!(e.step, Step::CertificateChain);
    assert_eq!(e.reason, "certificate signature: signature does not verify");
}

#[test]
fn inner_and_outer_signature_algorithms_must_agree() {
    let (ca, ca_cert) = ca();
    let leaf = FulcioCert::new().uri(SAN).issued_by(&ca).expect("leaf");
    // ecdsa-with-SHA256 (…04 03 02) → ecdsa-with-SHA384 (…04 03 03) in the outer algorithm only:
    // it follows the TBS, so it is the last occurrence of the OID.
    let oid = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    let at = leaf
        .windows(oid.len())
        .rposition(|w| w == oid)
        .expect("outer algorithm");
    let mut changed = leaf.clone();
    changed[at + oid.len() - 1] = 0x03;
    let e = verify_issued_by(&changed, &ca_cert).expect_err("algorithms differ");
    assert_eq!(
        e.reason,
        "malformed certificate: the signature algorithm inside the signed part differs from the outer one"
    );
}

#[test]
fn raw_parts_slice_every_real_certificate_like_the_parser() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let root = crate::TrustedRoot::from_json(
        &std::fs::read(fixtures.join("trusted-roots/public-good-production.trusted_root.json")).expect("root"),
    )
    .expect("root parses");
    let mut checked = 0;
    for authority in root.certificate_authorities.iter().chain(&root.timestamp_authorities) {
        for der in &authority.chain {
            let raw = raw_parts(der, Step::CertificateChain).expect("raw parts");
            let parsed = parse(der).expect("parses");
            assert_eq!(raw.tbs, parsed.tbs_certificate.to_der().expect("DER").as_slice());
            assert_eq!(
                raw.subject,
                parsed.tbs_certificate.subject.to_der().expect("DER").as_slice()
            );
            assert_eq!(
                raw.issuer,
                parsed.tbs_certificate.issuer.to_der().expect("DER").as_slice()
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked}");
}
