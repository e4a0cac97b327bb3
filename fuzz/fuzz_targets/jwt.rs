//! OIDC ID tokens and upload tokens: `auth::jwt::peek` / `auth::jwt::verify` against a fixed
//! Ed25519 test key served as a JWKS (no network), `auth::jwt::JwkSet::from_json` on fuzzed
//! key sets, and `auth::upload_token::UploadTokenKeys::verify`.
//!
//! Raw fuzzed tokens almost never carry a valid signature, so two modes sign what the fuzzer
//! wrote with the test key: the claim and scope checks behind the signature are fuzzed too.
//!
//! Input: a mode byte, then
//! - 0: a token (text) for `peek`, `jwt::verify` and the upload-token verifier;
//! - 1: `header JSON \0 payload JSON`, signed as a JWS with the test key, for `jwt::verify`;
//! - 2: an upload-token payload JSON, signed with the test key, for the upload-token verifier;
//! - 3: a JWKS document; when it parses, a valid token is verified against it.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use portcullis::auth::jwt::{self, Algorithm, IssuerKeys, JwkSet};
use portcullis::auth::upload_token::{KeyMaterial, UploadTokenKeys, PREFIX};
use portcullis_fuzz::control;

/// The instant every token is checked at (2026-11-26); the seeds' tokens are valid then.
const NOW: i64 = 1_795_651_200;
/// The test issuer and audience (the seeds use them).
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "portcullis";
/// The key id of the test key, in the JWKS and for upload tokens.
const KID: &str = "fuzz";
/// The test key's seed. A fixed, public test key: it signs nothing outside these targets.
const SEED: [u8; 32] = *b"portcullis-fuzz-test-key-seed-32";

struct Setup {
    pair: Ed25519KeyPair,
    issuer: IssuerKeys,
    issuer_no_jti: IssuerKeys,
    upload: UploadTokenKeys,
    /// A valid ID token signed with the test key.
    valid_token: String,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sign_jws(pair: &Ed25519KeyPair, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = pair.sign(input.as_bytes());
    format!("{input}.{}", b64(signature.as_ref()))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        STANDARD.encode(der)
    )
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let pair = Ed25519KeyPair::from_seed_unchecked(&SEED).expect("test key");
    let jwks = serde_json::json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "kid": KID, "use": "sig", "alg": "EdDSA",
        "x": b64(pair.public_key().as_ref()),
    }]});
    let jwks = Arc::new(JwkSet::from_json(&serde_json::to_vec(&jwks).expect("jwks")).expect("test JWKS"));
    let issuer = IssuerKeys {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        algorithms: vec![Algorithm::EdDsa, Algorithm::Es256, Algorithm::Rs256],
        jwks,
        require_jti: true,
    };
    let issuer_no_jti = IssuerKeys {
        require_jti: false,
        ..issuer.clone()
    };
    let pkcs8 = pair.to_pkcs8v1().expect("pkcs8");
    let upload = UploadTokenKeys::new(
        vec![KeyMaterial::private(KID, pem("PRIVATE KEY", pkcs8.as_ref()))],
        KID,
        Duration::from_secs(900),
    )
    .expect("upload token keys");
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "repo:acme/widget:ref:refs/heads/main",
        "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 300, "jti": "fuzz-jti",
    });
    let valid_token = sign_jws(
        &pair,
        br#"{"alg":"EdDSA","kid":"fuzz","typ":"JWT"}"#,
        &serde_json::to_vec(&claims).expect("claims"),
    );
    Setup {
        pair,
        issuer,
        issuer_no_jti,
        upload,
        valid_token,
    }
});

fuzz_target!(|data: &[u8]| {
    let setup = &*SETUP;
    let ([mode], rest) = control::<1>(data);
    match mode % 4 {
        0 => {
            let token = String::from_utf8_lossy(rest);
            let _ = jwt::peek(&token);
            let _ = jwt::verify(&token, &setup.issuer, NOW);
            let _ = setup.upload.verify(&token, NOW);
        }
        1 => {
            let (header, payload) = match rest.iter().position(|b| *b == 0) {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (&br#"{"alg":"EdDSA","kid":"fuzz"}"#[..], rest),
            };
            let token = sign_jws(&setup.pair, header, payload);
            let issuer = if mode & 4 != 0 {
                &setup.issuer_no_jti
            } else {
                &setup.issuer
            };
            if let Ok(claims) = jwt::verify(&token, issuer, NOW) {
                assert_eq!(claims.iss, ISSUER);
                assert_eq!(claims.aud, AUDIENCE);
                assert!(!claims.jti.is_empty());
                assert!(claims.exp + jwt::LEEWAY_SECS > NOW, "an expired token verified");
            }
        }
        2 => {
            let input = format!("{PREFIX}{KID}.{}", b64(rest));
            let signature = setup.pair.sign(input.as_bytes());
            let token = format!("{input}.{}", b64(signature.as_ref()));
            if let Ok(grant) = setup.upload.verify(&token, NOW) {
                assert!(grant.expires_at > NOW, "an expired upload token verified");
            }
        }
        _ => {
            if let Ok(jwks) = JwkSet::from_json(rest) {
                assert!(jwks.len() <= jwt::MAX_JWKS_KEYS);
                let issuer = IssuerKeys {
                    jwks: Arc::new(jwks),
                    ..setup.issuer.clone()
                };
                let _ = jwt::verify(&setup.valid_token, &issuer, NOW);
            }
        }
    }
});
