//! Gateway upload tokens made by the test itself with the gateway's real key, for cases the
//! exchange never produces (an expired token) and for tampering with a valid one.

use std::path::Path;

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::json;

/// Signs a token with the PKCS#8 PEM key at `key_file` (as `portcullis keygen` writes it),
/// valid from `iat` to `exp`, for `projects` of `registry`.
pub fn forge(key_file: &Path, kid: &str, iat: i64, exp: i64, registry: &str, projects: &[&str]) -> String {
    let pem = std::fs::read_to_string(key_file).expect("read the key");
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(der).expect("PEM base64");
    let key = Ed25519KeyPair::from_pkcs8(&der)
        .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der))
        .expect("an Ed25519 key");
    let payload = json!({
        "v": 1,
        "jti": uuid::Uuid::new_v4().simple().to_string(),
        "iat": iat,
        "exp": exp,
        "iss": "https://issuer.test",
        "sub": "",
        "scopes": [{"registry": registry, "publisher": "forged", "projects": projects, "create": []}],
    });
    let input = format!(
        "pcul_{kid}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).expect("json"))
    );
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// The same token with its first scope's projects replaced by `project`, signature unchanged.
pub fn tamper_project(token: &str, project: &str) -> String {
    let mut parts = token.splitn(3, '.');
    let (head, payload, signature) = (
        parts.next().expect("head"),
        parts.next().expect("payload"),
        parts.next().expect("signature"),
    );
    let mut value: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json");
    value["scopes"][0]["projects"] = json!([project]);
    format!(
        "{head}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&value).expect("json"))
    )
}
