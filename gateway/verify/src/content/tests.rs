//! Signatures over content, subjects, and the message digest algorithm.

use super::*;

#[test]
fn pae_matches_the_dsse_spec_example() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
}

#[test]
fn subjects_match_by_sha256_or_sha512() {
    let artifact = Artifact::from_bytes(b"abc".to_vec());
    let make = |alg: &str, value: String| Statement {
        predicate_type: "p".into(),
        subjects: vec![("x".into(), vec![(alg.into(), value)])],
        predicate: Value::Null,
    };
    assert!(check_subject(&make("sha256", hex::encode(artifact.sha256)), &artifact).is_ok());
    assert!(check_subject(&make("sha512", hex::encode(Sha512::digest(b"abc"))), &artifact).is_ok());
    assert!(check_subject(&make("sha256", hex::encode(Sha256::digest(b"abd"))), &artifact).is_err());
    let digest_only = Artifact::from_sha256(artifact.sha256);
    assert!(check_subject(&make("sha512", hex::encode(Sha512::digest(b"abc"))), &digest_only).is_err());
}

/// A P-384 key generated for the test.
fn p384_key() -> p384::ecdsa::SigningKey {
    let mut scalar = [0u8; 48];
    aws_lc_rs::rand::fill(&mut scalar).expect("randomness");
    p384::ecdsa::SigningKey::from_slice(&scalar).expect("a random scalar is a valid key")
}

fn p384_public(key: &p384::ecdsa::SigningKey) -> PublicKey {
    use crate::der_walk::{encode, BIT_STRING, OID, SEQUENCE};
    // SubjectPublicKeyInfo { id-ecPublicKey, secp384r1 }, uncompressed point.
    let mut algorithm = encode(OID, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]);
    algorithm.extend_from_slice(&encode(OID, &[0x2b, 0x81, 0x04, 0x00, 0x22]));
    let mut bits = vec![0];
    bits.extend_from_slice(key.verifying_key().to_encoded_point(false).as_bytes());
    let mut spki = encode(SEQUENCE, &algorithm);
    spki.extend_from_slice(&encode(BIT_STRING, &bits));
    PublicKey::from_spki_der(&encode(SEQUENCE, &spki)).expect("P-384 key")
}

/// An ECDSA signature (DER) by `key` over `prehash`.
fn sign_prehash(key: &p384::ecdsa::SigningKey, prehash: &[u8]) -> Vec<u8> {
    use p384::ecdsa::signature::hazmat::PrehashSigner;
    let signature: p384::ecdsa::Signature = key.sign_prehash(prehash).expect("signs");
    signature.to_der().as_bytes().to_vec()
}

fn message(algorithm: &str, digest: &[u8], signature: Vec<u8>) -> Content {
    Content::MessageSignature {
        digest: Some((algorithm.to_owned(), digest.to_vec())),
        signature,
    }
}

const ARTIFACT: &[u8] = b"sigstore-python 2023: P-384 key, SHA2_256 message digest";

#[test]
fn a_p384_key_over_a_sha256_digest_verifies_with_sha256() {
    let key = p384_key();
    let public = p384_public(&key);
    assert_eq!(public.default_hash(), HashAlg::Sha384);
    let sha256 = Sha256::digest(ARTIFACT);
    let content = message("SHA2_256", &sha256, sign_prehash(&key, &sha256));
    let bytes = Artifact::from_bytes(ARTIFACT.to_vec());
    assert_eq!(verify_content(&content, &public, &bytes), Ok(None));
    // Known only by its SHA-256 (the PyPI upload path), the signature is checked on the digest.
    let digest_only = Artifact::from_sha256(bytes.sha256);
    assert_eq!(verify_content(&content, &public, &digest_only), Ok(None));
    // Another artifact is refused, by its digest first.
    let other = Artifact::from_bytes(b"another artifact".to_vec());
    let e = verify_content(&content, &public, &other).expect_err("other artifact");
    assert_eq!(e.step, Step::Signature);
    assert_eq!(e.reason, "the bundle's message digest is not the artifact's SHA-256");
}

#[test]
fn a_p384_key_over_a_sha384_digest_verifies_with_sha384() {
    let key = p384_key();
    let public = p384_public(&key);
    let sha384 = sha2::Sha384::digest(ARTIFACT);
    let content = message("SHA2_384", &sha384, sign_prehash(&key, &sha384));
    assert_eq!(
        verify_content(&content, &public, &Artifact::from_bytes(ARTIFACT.to_vec())),
        Ok(None)
    );
    // The SHA-384 of an artifact known by digests only cannot be computed.
    let digests = Artifact::from_digests(Sha256::digest(ARTIFACT).into(), Sha512::digest(ARTIFACT).into());
    let e = verify_content(&content, &public, &digests).expect_err("no bytes");
    assert!(e.reason.contains("its bytes are needed"), "{}", e.reason);
}

#[test]
fn the_named_digest_algorithm_decides_the_signature_hash() {
    let key = p384_key();
    let public = p384_public(&key);
    let artifact = Artifact::from_bytes(ARTIFACT.to_vec());
    let sha256 = Sha256::digest(ARTIFACT);
    let sha384 = sha2::Sha384::digest(ARTIFACT);
    // Signed over SHA-256 but the bundle names SHA2_384 (with the right SHA-384): refused by
    // the signature check, which uses SHA-384.
    let content = message("SHA2_384", &sha384, sign_prehash(&key, &sha256));
    let e = verify_content(&content, &public, &artifact).expect_err("wrong hash");
    assert_eq!(e.reason, "artifact signature: signature does not verify");
    // Signed over SHA-384 but the bundle names SHA2_256: refused likewise.
    let content = message("SHA2_256", &sha256, sign_prehash(&key, &sha384));
    let e = verify_content(&content, &public, &artifact).expect_err("wrong hash");
    assert_eq!(e.reason, "artifact signature: signature does not verify");
}

#[test]
fn a_digest_that_does_not_fit_its_algorithm_or_an_unknown_algorithm_is_refused() {
    let key = p384_key();
    let public = p384_public(&key);
    let artifact = Artifact::from_bytes(ARTIFACT.to_vec());
    let sha256 = Sha256::digest(ARTIFACT);
    let signature = sign_prehash(&key, &sha256);
    // The artifact's SHA-256 labelled SHA2_512.
    let e = verify_content(&message("SHA2_512", &sha256, signature.clone()), &public, &artifact)
        .expect_err("mislabelled digest");
    assert_eq!(e.step, Step::Signature);
    assert_eq!(e.reason, "the bundle's message digest is not the artifact's SHA-512");
    for unknown in ["SHA3_256", "HASH_ALGORITHM_UNSPECIFIED", "sha256", ""] {
        let e = verify_content(&message(unknown, &sha256, signature.clone()), &public, &artifact)
            .expect_err("unknown algorithm");
        assert_eq!(e.step, Step::Signature);
        assert!(
            e.reason.starts_with("unsupported message digest algorithm"),
            "{unknown}: {}",
            e.reason
        );
    }
}
