//! The shared layer gives both certificate paths (Fulcio's in `cert.rs`, the timestamp
//! authority's in `timestamp.rs`) one answer for one algorithm: RSA included.

use super::*;
use crate::trust_root::{Authority, TrustedRoot, Validity};

const ID_KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// A new 2048-bit RSA key that signs with PKCS#1 v1.5 and SHA-256.
fn rsa_key() -> rcgen::KeyPair {
    use aws_lc_rs::encoding::AsDer;
    use base64::Engine;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
    let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der<'static> = key.as_der().expect("PKCS#8");
    let body = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).expect("rcgen RSA key")
}

/// An RSA CA, and a P-256 leaf it signed (sha256WithRSAEncryption) for code signing and time
/// stamping: (CA DER, leaf DER).
fn rsa_ca_and_leaf() -> (Vec<u8>, Vec<u8>) {
    let key = rsa_key();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Portcullis test RSA CA");
    let ca = params.self_signed(&key).expect("CA").der().to_vec();
    let issuer = rcgen::Issuer::new(params, key);

    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    leaf.distinguished_name.push(rcgen::DnType::CommonName, "leaf");
    leaf.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::CodeSigning,
        rcgen::ExtendedKeyUsagePurpose::TimeStamping,
    ];
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = leaf.signed_by(&leaf_key, &issuer).expect("leaf").der().to_vec();
    (ca, leaf)
}

/// `der` with every sha256WithRSAEncryption OID turned into the bare `rsaEncryption`.
fn with_bare_rsa_encryption(der: &[u8]) -> Vec<u8> {
    let sha256_with_rsa = SHA256_WITH_RSA.as_bytes();
    let mut out = der.to_vec();
    let mut replaced = 0;
    let mut at = 0;
    while let Some(found) = out[at..]
        .windows(sha256_with_rsa.len())
        .position(|w| w == sha256_with_rsa)
    {
        let end = at + found + sha256_with_rsa.len();
        out[end - 1] = 0x01;
        replaced += 1;
        at = end;
    }
    assert_eq!(replaced, 2, "inner and outer signature algorithm");
    out
}

/// What the Fulcio path (`cert.rs`, also the trusted root's chains) says of `leaf` under `ca`.
fn fulcio_link(leaf: &[u8], ca: &Certificate) -> std::result::Result<(), String> {
    crate::cert::verify_issued_by(leaf, ca).map_err(|e| e.reason)
}

/// What the timestamp path (`timestamp.rs`: the TSA's path at genTime, timestamping purpose)
/// says of `leaf` under `ca`.
fn timestamp_link(leaf: &[u8], ca: &[u8], now: i64) -> std::result::Result<(), PathFault> {
    let leaf = CertView::new(leaf, Step::Timestamp).expect("leaf");
    let ca = CertView::new(ca, Step::Timestamp).expect("CA");
    check_path(&[&leaf, &ca], &[Instant::whole(now)], Some(&ID_KP_TIME_STAMPING), None)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[test]
fn an_rsa_signed_certificate_is_treated_alike_by_both_paths() {
    let (ca_der, leaf_der) = rsa_ca_and_leaf();
    let ca = parse(&ca_der, Step::CertificateChain).expect("CA");
    assert!(matches!(public_key(&ca), Ok(PublicKey::Rsa(_))));
    let raw = raw_parts(&leaf_der, Step::CertificateChain).expect("raw");
    assert_eq!(raw.signature_oid, SHA256_WITH_RSA.as_bytes());

    // sha256WithRSAEncryption: accepted by both.
    assert_eq!(fulcio_link(&leaf_der, &ca), Ok(()));
    assert_eq!(timestamp_link(&leaf_der, &ca_der, now()), Ok(()));

    // The whole Fulcio path (leaf usage, link, CA validity, trusted-root window) too.
    let leaf = parse(&leaf_der, Step::CertificateChain).expect("leaf");
    let root = TrustedRoot {
        tlogs: Vec::new(),
        ctlogs: Vec::new(),
        certificate_authorities: vec![Authority {
            uri: "https://rsa-ca.test".into(),
            chain: vec![ca_der.clone()],
            validity: Validity { start: 0, end: None },
            checked_chain: std::sync::OnceLock::new(),
        }],
        timestamp_authorities: Vec::new(),
        revision: [0; 32],
        skipped: Vec::new(),
    };
    crate::cert::verify_path(&leaf_der, &leaf, &[], &root, &[now()]).expect("RSA-issued Fulcio path");

    // Bare rsaEncryption (no hash): refused by both, for the same reason.
    let bare = with_bare_rsa_encryption(&leaf_der);
    let why = "unsupported certificate signature algorithm 1.2.840.113549.1.1.1";
    assert_eq!(fulcio_link(&bare, &ca), Err(format!("certificate signature: {why}")));
    assert_eq!(
        timestamp_link(&bare, &ca_der, now()),
        Err(PathFault::Link(0, LinkFault::Signature(why.into())))
    );

    // Another RSA key: refused by both.
    let (other_ca_der, _) = rsa_ca_and_leaf();
    let other = parse(&other_ca_der, Step::CertificateChain).expect("other CA");
    assert_eq!(
        fulcio_link(&leaf_der, &other),
        Err("certificate signature: signature does not verify".into())
    );
    assert_eq!(
        timestamp_link(&leaf_der, &other_ca_der, now()),
        Err(PathFault::Link(
            0,
            LinkFault::Signature("signature does not verify".into())
        ))
    );
}

#[test]
fn the_algorithm_map_depends_on_the_digest_given_never_on_the_caller() {
    for oid in [SHA256_WITH_RSA, SHA384_WITH_RSA, ECDSA_SHA256] {
        let certificate = signature_algorithm(&oid, None);
        assert!(certificate.is_some(), "{oid}");
        // A CMS signer's digest does not change what a complete OID says.
        for digest in [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512] {
            assert_eq!(signature_algorithm(&oid, Some(digest)), certificate, "{oid}");
        }
    }
    assert_eq!(
        signature_algorithm(&SHA384_WITH_RSA, None),
        Some(SignatureAlgorithm::Rsa(HashAlg::Sha384))
    );
    // Bare key-type OIDs take the digest given, for ECDSA and RSA alike, and need one.
    assert_eq!(
        signature_algorithm(&RSA_ENCRYPTION, Some(HashAlg::Sha256)),
        Some(SignatureAlgorithm::Rsa(HashAlg::Sha256))
    );
    assert_eq!(
        signature_algorithm(&ID_EC_PUBLIC_KEY, Some(HashAlg::Sha256)),
        Some(SignatureAlgorithm::Ecdsa(Some(HashAlg::Sha256)))
    );
    assert_eq!(signature_algorithm(&RSA_ENCRYPTION, None), None);
    assert_eq!(signature_algorithm(&ID_EC_PUBLIC_KEY, None), None);
    // RSA-PSS is refused everywhere.
    assert_eq!(signature_algorithm(&RSASSA_PSS, None), None);
    assert_eq!(signature_algorithm(&RSASSA_PSS, Some(HashAlg::Sha256)), None);
}

#[test]
fn paths_check_validity_ca_status_and_links_between_consecutive_checked_certificates() {
    let (ca_der, leaf_der) = rsa_ca_and_leaf();
    let (other_ca_der, _) = rsa_ca_and_leaf();
    let leaf = CertView::new(&leaf_der, Step::Timestamp).expect("leaf");
    let ca = CertView::new(&ca_der, Step::Timestamp).expect("CA");
    let other = CertView::new(&other_ca_der, Step::Timestamp).expect("other CA");
    let (not_before, _) = validity(&leaf.parsed);
    assert!(matches!(
        check_path(&[&leaf, &ca], &[Instant::whole(not_before - 1)], None, None),
        Err(PathFault::NotValid { index: 0, .. })
    ));
    // A fraction of a second after the last valid second is outside the window.
    assert!(Instant::whole(10).within(0, 10));
    assert!(!Instant {
        secs: 10,
        fraction: true
    }
    .within(0, 10));
    // The leaf is no CA, so it cannot stand between a leaf and an anchor (the link into it is
    // taken as checked here, to reach that test).
    let leaf_twice = vec![leaf_der.clone(), leaf_der.clone()];
    assert_eq!(
        check_path(&[&leaf, &leaf, &ca], &[], None, Some(&leaf_twice)),
        Err(PathFault::NotCa(1))
    );
    // A link is skipped only between consecutive certificates of a checked chain.
    let checked = vec![leaf_der.clone(), other_ca_der.clone()];
    assert_eq!(check_path(&[&leaf, &other], &[], None, Some(&checked)), Ok(()));
    let not_consecutive = vec![leaf_der.clone(), ca_der.clone(), other_ca_der.clone()];
    assert_eq!(
        check_path(&[&leaf, &other], &[], None, Some(&not_consecutive)),
        Err(PathFault::Link(
            0,
            LinkFault::Signature("signature does not verify".into())
        ))
    );
}
