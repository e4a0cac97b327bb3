//! Tests of OIDC ID token verification: every check of [`verify`] and [`peek`], each refusal, and
//! JWKS parsing.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use serde_json::json;

use super::jwk::strip_leading_zeros;
use super::*;

const NOW: i64 = 1_750_000_000;
const ISS: &str = "https://token.actions.githubusercontent.com";
const AUD: &str = "pypi";

static RSA: LazyLock<RsaKeyPair> =
    LazyLock::new(|| RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"));
static P256: LazyLock<EcdsaKeyPair> =
    LazyLock::new(|| EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation"));
static P384: LazyLock<EcdsaKeyPair> =
    LazyLock::new(|| EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING).expect("P-384 key generation"));
static ED25519: LazyLock<Ed25519KeyPair> =
    LazyLock::new(|| Ed25519KeyPair::generate().expect("Ed25519 key generation"));

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One DER TLV with the given tag: (contents, rest).
fn der_tlv(input: &[u8], tag: u8) -> (&[u8], &[u8]) {
    assert_eq!(input[0], tag, "DER tag");
    let (len, start) = match input[1] {
        short if short < 0x80 => (usize::from(short), 2),
        0x81 => (usize::from(input[2]), 3),
        0x82 => ((usize::from(input[2]) << 8) | usize::from(input[3]), 4),
        other => panic!("unexpected DER length octet {other:#x}"),
    };
    (&input[start..start + len], &input[start + len..])
}

/// `n` and `e` of the test RSA key, from its PKCS#1 `RSAPublicKey` DER.
fn rsa_components() -> (Vec<u8>, Vec<u8>) {
    let (sequence, _) = der_tlv(RSA.public_key().as_ref(), 0x30);
    let (n, rest) = der_tlv(sequence, 0x02);
    let (e, _) = der_tlv(rest, 0x02);
    (strip_leading_zeros(n.to_vec()), strip_leading_zeros(e.to_vec()))
}

fn rsa_jwk(kid: &str) -> Value {
    let (n, e) = rsa_components();
    json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64(&n), "e": b64(&e)})
}

fn ec_jwk(kid: &str, crv: &str, key: &EcdsaKeyPair) -> Value {
    let point = key.public_key().as_ref();
    let half = (point.len() - 1) / 2;
    json!({"kty": "EC", "kid": kid, "crv": crv, "x": b64(&point[1..=half]), "y": b64(&point[1 + half..])})
}

fn jwks_value() -> Value {
    let mut pinned = rsa_jwk("rsa-pinned-rs384");
    pinned["alg"] = json!("RS384");
    let mut enc = rsa_jwk("rsa-enc");
    enc["use"] = json!("enc");
    json!({"keys": [
        rsa_jwk("rsa-1"),
        pinned,
        enc,
        ec_jwk("ec-256", "P-256", &P256),
        ec_jwk("ec-384", "P-384", &P384),
        {"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": b64(ED25519.public_key().as_ref())},
        {"kty": "AKP", "kid": "future-1", "alg": "ML-DSA-44", "pub": "AAAA"},
    ]})
}

fn jwks() -> JwkSet {
    JwkSet::from_json(jwks_value().to_string().as_bytes()).expect("test JWKS parses")
}

fn issuer_with(algorithms: &[Algorithm]) -> IssuerKeys {
    IssuerKeys {
        issuer: ISS.to_owned(),
        audience: AUD.to_owned(),
        algorithms: algorithms.to_vec(),
        jwks: Arc::new(jwks()),
        require_jti: true,
    }
}

fn issuer() -> IssuerKeys {
    issuer_with(&[
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::EdDsa,
    ])
}

fn claims() -> Value {
    json!({
        "iss": ISS,
        "aud": AUD,
        "sub": "repo:octo-org/octo-repo:environment:prod",
        "jti": "6f6a4f0e-0a3c-4d8b-9e57-3d5b1f0e2a11",
        "iat": NOW,
        "nbf": NOW - 600,
        "exp": NOW + 300,
        "repository": "octo-org/octo-repo",
    })
}

/// Signs `header.payload` with the test key matching the header `alg` (HS256 uses the RSA
/// public key DER as the HMAC secret, `none` signs nothing).
fn sign_input(alg: &str, input: &str) -> Vec<u8> {
    let rng = SystemRandom::new();
    let rsa = |encoding: &'static dyn sig::RsaEncoding| {
        let mut out = vec![0; RSA.public_modulus_len()];
        RSA.sign(encoding, &rng, input.as_bytes(), &mut out)
            .expect("RSA signing");
        out
    };
    match alg {
        "RS256" => rsa(&sig::RSA_PKCS1_SHA256),
        "RS384" => rsa(&sig::RSA_PKCS1_SHA384),
        "ES256" => P256
            .sign(&rng, input.as_bytes())
            .expect("P-256 signing")
            .as_ref()
            .to_vec(),
        "ES384" => P384
            .sign(&rng, input.as_bytes())
            .expect("P-384 signing")
            .as_ref()
            .to_vec(),
        "EdDSA" => ED25519.sign(input.as_bytes()).as_ref().to_vec(),
        "HS256" => {
            let secret = hmac::Key::new(hmac::HMAC_SHA256, RSA.public_key().as_ref());
            hmac::sign(&secret, input.as_bytes()).as_ref().to_vec()
        }
        _ => Vec::new(),
    }
}

fn token_with(header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let alg = header["alg"].as_str().unwrap_or("none");
    format!("{input}.{}", b64(&sign_input(alg, &input)))
}

fn token(alg: &str, kid: &str, claims: &Value) -> String {
    token_with(&json!({"typ": "JWT", "alg": alg, "kid": kid}), claims)
}

fn refused(token: &str) -> TokenError {
    verify(token, &issuer(), NOW).expect_err("the token must be refused")
}

fn with(claim: &str, value: Value) -> Value {
    let mut c = claims();
    c[claim] = value;
    c
}

fn without(claim: &str) -> Value {
    let mut c = claims();
    c.as_object_mut().expect("object").remove(claim);
    c
}

#[test]
fn valid_rs256_token_passes_with_typed_claims() {
    let verified = verify(&token("RS256", "rsa-1", &claims()), &issuer(), NOW).expect("valid RS256");
    assert_eq!(verified.iss, ISS);
    assert_eq!(verified.aud, AUD);
    assert_eq!(verified.exp, NOW + 300);
    assert_eq!(verified.iat, NOW);
    assert_eq!(verified.nbf, Some(NOW - 600));
    assert_eq!(verified.jti, "6f6a4f0e-0a3c-4d8b-9e57-3d5b1f0e2a11");
    assert_eq!(
        verified.sub.as_deref(),
        Some("repo:octo-org/octo-repo:environment:prod")
    );
    assert_eq!(verified.get_str("repository"), Some("octo-org/octo-repo"));
    assert_eq!(verified.get("iat"), Some(&json!(NOW)));
}

#[test]
fn valid_es256_es384_and_eddsa_tokens_pass() {
    for (alg, kid) in [("ES256", "ec-256"), ("ES384", "ec-384"), ("EdDSA", "ed-1")] {
        let verified = verify(&token(alg, kid, &claims()), &issuer(), NOW);
        assert!(verified.is_ok(), "{alg}: {verified:?}");
    }
}

#[test]
fn nbf_and_sub_are_optional() {
    let mut c = without("nbf");
    c.as_object_mut().expect("object").remove("sub");
    let verified = verify(&token("ES256", "ec-256", &c), &issuer(), NOW).expect("no nbf, no sub");
    assert_eq!((verified.nbf, verified.sub), (None, None));
}

#[test]
fn alg_none_is_forbidden_in_any_case_and_with_any_signature() {
    for alg in ["none", "None", "NONE"] {
        let unsigned = token(alg, "rsa-1", &claims());
        assert!(unsigned.ends_with('.'), "unsigned token has an empty signature");
        assert_eq!(
            refused(&unsigned),
            TokenError::ForbiddenAlgorithm { alg: alg.to_owned() }
        );
    }
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "none", "kid": "rsa-1"}).to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let with_rsa_signature = format!("{input}.{}", b64(&sign_input("RS256", &input)));
    assert_eq!(refused(&with_rsa_signature).code(), "alg_forbidden");
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let confused = token("HS256", "rsa-1", &claims());
    assert_eq!(
        refused(&confused),
        TokenError::ForbiddenAlgorithm {
            alg: "HS256".to_owned()
        }
    );
    for alg in ["HS384", "HS512", "hs256"] {
        assert_eq!(
            refused(&token(alg, "rsa-1", &claims())).code(),
            "alg_forbidden",
            "{alg}"
        );
    }
}

#[test]
fn algorithm_names_parse_exactly_and_hmac_cannot_be_listed() {
    assert_eq!("RS256".parse::<Algorithm>(), Ok(Algorithm::Rs256));
    assert_eq!("EdDSA".parse::<Algorithm>(), Ok(Algorithm::EdDsa));
    assert_eq!("HS256".parse::<Algorithm>().map_err(|e| e.code()), Err("alg_forbidden"));
    assert_eq!("none".parse::<Algorithm>().map_err(|e| e.code()), Err("alg_forbidden"));
    assert_eq!(
        "rs256".parse::<Algorithm>().map_err(|e| e.code()),
        Err("alg_unsupported")
    );
    assert_eq!(
        "PS256".parse::<Algorithm>().map_err(|e| e.code()),
        Err("alg_unsupported")
    );
    for alg in [Algorithm::Rs384, Algorithm::Rs512, Algorithm::Es256, Algorithm::Es384] {
        assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
    }
}

#[test]
fn unsupported_and_unlisted_algorithms_are_refused() {
    assert_eq!(
        refused(&token("PS256", "rsa-1", &claims())),
        TokenError::UnsupportedAlgorithm {
            alg: "PS256".to_owned()
        }
    );
    let rs256_only = issuer_with(&[Algorithm::Rs256]);
    assert_eq!(
        verify(&token("ES256", "ec-256", &claims()), &rs256_only, NOW),
        Err(TokenError::AlgorithmNotAllowed { alg: Algorithm::Es256 })
    );
    let missing_alg = token_with(&json!({"kid": "rsa-1"}), &claims());
    assert_eq!(refused(&missing_alg).code(), "header_invalid");
    let numeric_alg = token_with(&json!({"alg": 256, "kid": "rsa-1"}), &claims());
    assert_eq!(refused(&numeric_alg).code(), "header_invalid");
}

#[test]
fn a_key_never_verifies_an_algorithm_of_another_type() {
    // ES256 header naming an RSA key (signed with the EC key, so only the key check can stop it).
    let confused = token("ES256", "rsa-1", &claims());
    assert!(matches!(
        refused(&confused),
        TokenError::KeyMismatch { ref kid, alg: Algorithm::Es256, .. } if kid == "rsa-1"
    ));
    assert_eq!(refused(&token("RS256", "ec-256", &claims())).code(), "key_mismatch");
    assert_eq!(refused(&token("ES384", "ec-256", &claims())).code(), "key_mismatch");
    assert_eq!(refused(&token("ES256", "ed-1", &claims())).code(), "key_mismatch");
    assert_eq!(refused(&token("EdDSA", "ec-256", &claims())).code(), "key_mismatch");
}

#[test]
fn key_alg_use_and_unknown_types_restrict_the_key() {
    // The same RSA key published with "alg": "RS384" refuses an RS256 token but takes RS384.
    assert_eq!(
        refused(&token("RS256", "rsa-pinned-rs384", &claims())).code(),
        "key_mismatch"
    );
    assert!(verify(&token("RS384", "rsa-pinned-rs384", &claims()), &issuer(), NOW).is_ok());
    // "use": "enc" and an unknown key type are known kids that verify nothing.
    assert_eq!(refused(&token("RS256", "rsa-enc", &claims())).code(), "key_mismatch");
    assert_eq!(refused(&token("RS256", "future-1", &claims())).code(), "key_mismatch");
    let set = jwks();
    assert!(set.get("rsa-1").is_some_and(Jwk::is_usable));
    assert!(set.get("future-1").is_some_and(|k| !k.is_usable()));
    assert_eq!(set.len(), 7);
}

#[test]
fn kid_must_be_present_and_known() {
    assert_eq!(
        refused(&token("RS256", "rotated-away", &claims())),
        TokenError::UnknownKid {
            kid: "rotated-away".to_owned()
        }
    );
    let no_kid = token_with(&json!({"alg": "RS256"}), &claims());
    assert_eq!(refused(&no_kid), TokenError::MissingKid);
    assert_eq!(refused(&token("RS256", "", &claims())), TokenError::MissingKid);
}

#[test]
fn crit_header_is_refused() {
    let t = token_with(
        &json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1}),
        &claims(),
    );
    assert_eq!(refused(&t).code(), "header_invalid");
}

#[test]
fn audience_must_be_the_single_configured_string() {
    assert_eq!(
        refused(&token("RS256", "rsa-1", &with("aud", json!("testpypi")))),
        TokenError::AudienceMismatch {
            found: "testpypi".to_owned(),
            expected: AUD.to_owned()
        }
    );
    for list in [json!([AUD, "other"]), json!([AUD])] {
        let t = token("RS256", "rsa-1", &with("aud", list));
        assert_eq!(refused(&t), TokenError::AudienceNotSingle);
    }
    assert_eq!(
        refused(&token("RS256", "rsa-1", &with("aud", json!(7)))).code(),
        "claim_invalid"
    );
}

#[test]
fn issuer_must_match_exactly() {
    for wrong in [
        "https://gitlab.com",
        "https://token.actions.githubusercontent.com/",
        "HTTPS://token.actions.githubusercontent.com",
    ] {
        let t = token("RS256", "rsa-1", &with("iss", json!(wrong)));
        assert!(matches!(refused(&t), TokenError::IssuerMismatch { ref found, .. } if found == wrong));
    }
}

#[test]
fn required_claims_must_be_present() {
    for claim in ["iss", "aud", "exp", "iat", "jti"] {
        let t = token("RS256", "rsa-1", &without(claim));
        assert_eq!(refused(&t), TokenError::MissingClaim { claim }, "{claim}");
    }
}

#[test]
fn issuers_without_jti_get_a_replay_id_from_the_signature() {
    let lenient = IssuerKeys {
        require_jti: false,
        ..issuer()
    };
    let t = token("RS256", "rsa-1", &without("jti"));
    let first = verify(&t, &lenient, NOW).expect("verifies without jti");
    let again = verify(&t, &lenient, NOW).expect("verifies again");
    assert!(first.jti.starts_with("sig-sha256:"), "{}", first.jti);
    assert_eq!(first.jti, again.jti, "the same token has the same replay id");
    let mut other_claims = without("jti");
    other_claims["sub"] = json!("someone-else");
    let other = verify(&token("RS256", "rsa-1", &other_claims), &lenient, NOW).expect("verifies");
    assert_ne!(first.jti, other.jti, "another token has another replay id");
    // A jti that is present is still checked and used as is.
    assert_eq!(
        verify(&token("RS256", "rsa-1", &with("jti", json!(""))), &lenient, NOW)
            .map(|c| c.jti)
            .ok(),
        None
    );
    assert_eq!(refused(&t), TokenError::MissingClaim { claim: "jti" });
}

#[test]
fn claims_must_have_the_right_types() {
    for (claim, value) in [
        ("exp", json!((NOW + 300).to_string())),
        ("exp", json!(1.75e9)),
        ("iat", json!(NOW as f64 + 0.5)),
        ("nbf", json!(null)),
        ("jti", json!(12345)),
        ("jti", json!("")),
        ("iss", json!([ISS])),
        ("sub", json!(["repo:x"])),
    ] {
        let t = token("RS256", "rsa-1", &with(claim, value.clone()));
        assert!(
            matches!(refused(&t), TokenError::InvalidClaim { claim: c, .. } if c == claim),
            "{claim} = {value}"
        );
    }
}

#[test]
fn exp_has_exactly_thirty_seconds_of_leeway() {
    let at = |exp: i64| {
        let mut c = with("exp", json!(exp));
        c["iat"] = json!(exp - 300);
        c["nbf"] = json!(exp - 300);
        verify(&token("RS256", "rsa-1", &c), &issuer(), NOW)
    };
    assert!(at(NOW - 30).is_ok());
    assert_eq!(
        at(NOW - 31).map(|_| ()),
        Err(TokenError::Expired {
            exp: NOW - 31,
            now: NOW
        })
    );
}

#[test]
fn nbf_has_exactly_thirty_seconds_of_leeway() {
    let at = |nbf: i64| verify(&token("RS256", "rsa-1", &with("nbf", json!(nbf))), &issuer(), NOW);
    assert!(at(NOW + 30).is_ok());
    assert_eq!(
        at(NOW + 31).map(|_| ()),
        Err(TokenError::NotYetValid {
            nbf: NOW + 31,
            now: NOW
        })
    );
}

#[test]
fn iat_has_exactly_thirty_seconds_of_leeway() {
    let at = |iat: i64| verify(&token("RS256", "rsa-1", &with("iat", json!(iat))), &issuer(), NOW);
    assert!(at(NOW + 30).is_ok());
    assert_eq!(
        at(NOW + 31).map(|_| ()),
        Err(TokenError::IssuedInFuture {
            iat: NOW + 31,
            now: NOW
        })
    );
}

#[test]
fn exp_before_iat_is_refused() {
    let mut c = with("exp", json!(NOW + 10));
    c["iat"] = json!(NOW + 11);
    assert_eq!(
        refused(&token("RS256", "rsa-1", &c)),
        TokenError::ExpiresBeforeIssued {
            exp: NOW + 10,
            iat: NOW + 11
        }
    );
}

#[test]
fn extreme_times_do_not_overflow() {
    let mut c = with("exp", json!(i64::MAX));
    c["iat"] = json!(i64::MIN);
    c["nbf"] = json!(i64::MIN);
    assert!(verify(&token("RS256", "rsa-1", &c), &issuer(), NOW).is_ok());
    assert_eq!(
        refused(&token("RS256", "rsa-1", &with("exp", json!(u64::MAX)))).code(),
        "claim_invalid"
    );
}

#[test]
fn tampered_tokens_are_refused() {
    let good = token("RS256", "rsa-1", &claims());
    let segments: Vec<&str> = good.split('.').collect();
    let other_payload = b64(with("repository", json!("evil/repo")).to_string().as_bytes());
    let tampered = format!("{}.{}.{}", segments[0], other_payload, segments[2]);
    assert_eq!(refused(&tampered), TokenError::BadSignature);

    let mut signature = URL_SAFE_NO_PAD.decode(segments[2]).expect("signature");
    signature[10] ^= 1;
    let flipped = format!("{}.{}.{}", segments[0], segments[1], b64(&signature));
    assert_eq!(refused(&flipped), TokenError::BadSignature);

    let stripped = format!("{}.{}.", segments[0], segments[1]);
    assert_eq!(refused(&stripped), TokenError::BadSignature);

    // Signed by another P-256 key under the published kid.
    let impostor = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256");
    let good_ec = token("ES256", "ec-256", &claims());
    let (input, _) = good_ec.rsplit_once('.').expect("three segments");
    let forged = impostor.sign(&SystemRandom::new(), input.as_bytes()).expect("signing");
    assert_eq!(
        refused(&format!("{input}.{}", b64(forged.as_ref()))),
        TokenError::BadSignature
    );
}

#[test]
fn oversized_tokens_are_refused_before_parsing() {
    let padded = with("padding", json!("x".repeat(MAX_TOKEN_BYTES)));
    let big = token("RS256", "rsa-1", &padded);
    let expected = TokenError::TooLarge {
        len: big.len(),
        max: MAX_TOKEN_BYTES,
    };
    assert_eq!(refused(&big), expected);
    assert_eq!(peek(&big), Err(expected));
    let garbage = "!".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(refused(&garbage).code(), "token_too_large");
    // Just under the limit is parsed (and here verifies).
    let fits = token(
        "ES256",
        "ec-256",
        &with("padding", json!("x".repeat(MAX_TOKEN_BYTES / 2))),
    );
    assert!(fits.len() <= MAX_TOKEN_BYTES);
    assert!(verify(&fits, &issuer(), NOW).is_ok());
}

#[test]
fn malformed_segments_and_base64_are_refused() {
    let good = token("RS256", "rsa-1", &claims());
    let segments: Vec<&str> = good.split('.').collect();
    for (bad, found) in [
        (segments[..2].join("."), 2),
        (format!("{good}.x"), 4),
        (format!("{good}.x.y"), 5),
        (String::new(), 1),
    ] {
        assert_eq!(refused(&bad), TokenError::Segments { found });
    }
    let padded_header = format!("{}=.{}.{}", segments[0], segments[1], segments[2]);
    assert_eq!(refused(&padded_header), TokenError::Base64 { part: Part::Header });
    let standard_alphabet = format!("{}+/.{}.{}", segments[0], segments[1], segments[2]);
    assert_eq!(refused(&standard_alphabet), TokenError::Base64 { part: Part::Header });
    let bad_signature = format!("{}.{}.{}!", segments[0], segments[1], segments[2]);
    assert_eq!(refused(&bad_signature), TokenError::Base64 { part: Part::Signature });
    // A payload that is not base64 fails the signature first: it is only decoded once verified.
    let bad_payload = format!("{}.{}*.{}", segments[0], segments[1], segments[2]);
    assert_eq!(refused(&bad_payload), TokenError::BadSignature);
    assert_eq!(peek(&bad_payload), Err(TokenError::Base64 { part: Part::Payload }));
}

#[test]
fn json_must_be_one_object_without_duplicate_members() {
    let header = b64(json!({"alg": "RS256", "kid": "rsa-1"}).to_string().as_bytes());
    let sign = |payload: &str| {
        let input = format!("{header}.{}", b64(payload.as_bytes()));
        format!("{input}.{}", b64(&sign_input("RS256", &input)))
    };
    let duplicate = format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","jti":"j","iat":{NOW},"exp":{},"iss":"https://evil.example"}}"#,
        NOW + 60
    );
    assert!(matches!(
        refused(&sign(&duplicate)),
        TokenError::Json { part: Part::Payload, ref reason } if reason.contains("duplicate member")
    ));
    for not_object in ["[1,2]", "\"text\"", "{} {}", "{"] {
        assert!(matches!(
            refused(&sign(not_object)),
            TokenError::Json {
                part: Part::Payload,
                ..
            }
        ));
    }
    let dup_header = format!(
        "{}.{}.AAAA",
        b64(br#"{"alg":"RS256","kid":"rsa-1","alg":"none"}"#),
        b64(claims().to_string().as_bytes())
    );
    assert!(matches!(
        refused(&dup_header),
        TokenError::Json { part: Part::Header, .. }
    ));
}

#[test]
fn peek_reads_the_unverified_issuer_kid_and_alg() {
    let good = token("ES256", "ec-256", &claims());
    let (input, _) = good.rsplit_once('.').expect("three segments");
    let unsigned = format!("{input}.");
    assert_eq!(
        peek(&unsigned),
        Ok(Unverified {
            iss: ISS.to_owned(),
            kid: Some("ec-256".to_owned()),
            alg: Some("ES256".to_owned()),
        })
    );
    let bare = token_with(&json!({}), &claims());
    assert_eq!(peek(&bare).map(|u| (u.kid, u.alg)), Ok((None, None)));
    assert_eq!(
        peek(&token("RS256", "rsa-1", &without("iss"))),
        Err(TokenError::MissingClaim { claim: "iss" })
    );
}

fn jwks_error(document: &Value) -> JwksError {
    JwkSet::from_json(document.to_string().as_bytes()).expect_err("the key set must be refused")
}

#[test]
fn jwks_with_duplicate_or_missing_kid_is_refused() {
    let duplicate = json!({"keys": [rsa_jwk("k"), ec_jwk("k", "P-256", &P256)]});
    assert_eq!(jwks_error(&duplicate), JwksError::DuplicateKid { kid: "k".to_owned() });
    let mut no_kid = ec_jwk("x", "P-256", &P256);
    no_kid.as_object_mut().expect("object").remove("kid");
    assert_eq!(
        jwks_error(&json!({"keys": [rsa_jwk("a"), no_kid]})),
        JwksError::MissingKid { index: 1 }
    );
    assert_eq!(
        jwks_error(&json!({"keys": [ec_jwk("", "P-256", &P256)]})),
        JwksError::MissingKid { index: 0 }
    );
    assert_eq!(
        jwks_error(&json!({"keys": [{"kty": "RSA", "kid": 7}]})).code(),
        "jwk_invalid"
    );
}

#[test]
fn jwks_size_count_and_shape_are_bounded() {
    assert_eq!(jwks_error(&json!({"keys": []})), JwksError::Empty);
    assert_eq!(jwks_error(&json!({"nokeys": []})).code(), "jwks_json");
    assert_eq!(jwks_error(&json!([rsa_jwk("a")])).code(), "jwks_json");
    let many: Vec<Value> = (0..=MAX_JWKS_KEYS)
        .map(|i| ec_jwk(&format!("k{i}"), "P-256", &P256))
        .collect();
    assert_eq!(
        jwks_error(&json!({ "keys": many })),
        JwksError::TooManyKeys {
            count: MAX_JWKS_KEYS + 1,
            max: MAX_JWKS_KEYS
        }
    );
    let huge = json!({"keys": [rsa_jwk("a")], "padding": "x".repeat(MAX_JWKS_BYTES)});
    assert_eq!(jwks_error(&huge).code(), "jwks_too_large");
    let exactly_max: Vec<Value> = (0..MAX_JWKS_KEYS)
        .map(|i| ec_jwk(&format!("k{i}"), "P-256", &P256))
        .collect();
    let set = JwkSet::from_json(json!({ "keys": exactly_max }).to_string().as_bytes()).expect("100 keys");
    assert_eq!(set.len(), MAX_JWKS_KEYS);
    assert!(set.kids().any(|kid| kid == "k99"));
}

#[test]
fn jwks_refuses_symmetric_private_weak_and_malformed_keys() {
    let mut private = rsa_jwk("p");
    private["d"] = json!("AAAA");
    let mut weak = rsa_jwk("w");
    weak["n"] = json!(b64(&[0xc5; 128]));
    let mut even_exponent = rsa_jwk("e");
    even_exponent["e"] = json!(b64(&[1, 0, 0]));
    let mut off_curve = ec_jwk("c", "P-256", &P256);
    off_curve["y"] = json!(b64(&[1; 32]));
    let mut short = ec_jwk("s", "P-256", &P256);
    short["x"] = json!(b64(&[1; 31]));
    let mut padded = ec_jwk("b", "P-256", &P256);
    padded["x"] = json!(format!("{}=", padded["x"].as_str().expect("x")));
    for key in [
        json!({"kty": "oct", "kid": "s", "k": "c2VjcmV0"}),
        private,
        weak,
        even_exponent,
        off_curve,
        short,
        padded,
        json!({"kty": "OKP", "kid": "o", "crv": "Ed25519", "x": b64(&[1; 31])}),
        json!({"kty": "RSA", "kid": "r", "e": "AQAB"}),
    ] {
        let err = jwks_error(&json!({ "keys": [key.clone()] }));
        assert!(matches!(err, JwksError::InvalidKey { index: 0, .. }), "{key}: {err:?}");
    }
}

#[test]
fn rsa_modulus_with_leading_zero_octet_is_accepted() {
    let (n, _) = rsa_components();
    let mut key = rsa_jwk("z");
    key["n"] = json!(b64(&[&[0u8][..], n.as_slice()].concat()));
    let set = JwkSet::from_json(json!({ "keys": [key] }).to_string().as_bytes()).expect("leading zero");
    let issuer = IssuerKeys {
        jwks: Arc::new(set),
        require_jti: true,
        ..issuer()
    };
    assert!(verify(&token("RS256", "z", &claims()), &issuer, NOW).is_ok());
}

#[test]
fn error_codes_are_distinct() {
    let token_errors = [
        TokenError::TooLarge { len: 0, max: 0 },
        TokenError::Segments { found: 0 },
        TokenError::Base64 { part: Part::Header },
        TokenError::Json {
            part: Part::Header,
            reason: String::new(),
        },
        TokenError::InvalidHeader { reason: String::new() },
        TokenError::ForbiddenAlgorithm { alg: String::new() },
        TokenError::UnsupportedAlgorithm { alg: String::new() },
        TokenError::AlgorithmNotAllowed { alg: Algorithm::Rs256 },
        TokenError::MissingKid,
        TokenError::UnknownKid { kid: String::new() },
        TokenError::KeyMismatch {
            kid: String::new(),
            alg: Algorithm::Rs256,
            reason: String::new(),
        },
        TokenError::BadSignature,
        TokenError::MissingClaim { claim: "" },
        TokenError::InvalidClaim {
            claim: "",
            expected: "",
        },
        TokenError::IssuerMismatch {
            found: String::new(),
            expected: String::new(),
        },
        TokenError::AudienceNotSingle,
        TokenError::AudienceMismatch {
            found: String::new(),
            expected: String::new(),
        },
        TokenError::Expired { exp: 0, now: 0 },
        TokenError::NotYetValid { nbf: 0, now: 0 },
        TokenError::IssuedInFuture { iat: 0, now: 0 },
        TokenError::ExpiresBeforeIssued { exp: 0, iat: 0 },
    ];
    let jwks_errors = [
        JwksError::TooLarge { len: 0, max: 0 },
        JwksError::Json { reason: String::new() },
        JwksError::Empty,
        JwksError::TooManyKeys { count: 0, max: 0 },
        JwksError::MissingKid { index: 0 },
        JwksError::DuplicateKid { kid: String::new() },
        JwksError::InvalidKey {
            index: 0,
            reason: String::new(),
        },
    ];
    let codes: BTreeSet<&str> = token_errors
        .iter()
        .map(TokenError::code)
        .chain(jwks_errors.iter().map(JwksError::code))
        .collect();
    assert_eq!(codes.len(), token_errors.len() + jwks_errors.len());
    assert!(token_errors.iter().all(|e| !e.to_string().is_empty()));
}

#[test]
fn echoed_token_strings_are_shortened() {
    let long_kid = "k".repeat(1000);
    match refused(&token("RS256", &long_kid, &claims())) {
        TokenError::UnknownKid { kid } => assert_eq!(kid.chars().count(), MAX_ECHO_CHARS + 1),
        other => panic!("expected an unknown kid, got {other:?}"),
    }
}
