//! Tests of upload tokens: minting, verification and every refusal, and key loading.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair as _};
use serde_json::{json, Value};

use super::keys::pem_encode;
use super::*;

const NOW: i64 = 1_750_000_000;
const ISS: &str = "https://token.actions.githubusercontent.com";
const LIFETIME: Duration = Duration::from_secs(15 * 60);

/// (private PEM, public PEM) pairs.
static KEY_A: LazyLock<(String, String)> = LazyLock::new(|| generate_key_pem().expect("key generation"));
static KEY_B: LazyLock<(String, String)> = LazyLock::new(|| generate_key_pem().expect("key generation"));

fn private(id: &str, key: &(String, String)) -> KeyMaterial {
    KeyMaterial::private(id, key.0.as_bytes())
}

fn public(id: &str, key: &(String, String)) -> KeyMaterial {
    KeyMaterial::public(id, key.1.as_bytes())
}

fn keys() -> UploadTokenKeys {
    UploadTokenKeys::new(vec![private("k1", &KEY_A)], "k1", LIFETIME).expect("keys")
}

fn key_error(keys: Vec<KeyMaterial>, signing: &str) -> KeyError {
    UploadTokenKeys::new(keys, signing, LIFETIME).expect_err("the keys must be refused")
}

fn scope(registry: &str, projects: &[&str], create: &[&str]) -> Scope {
    Scope {
        registry: registry.to_owned(),
        publisher: format!("{registry}-publisher"),
        projects: projects.iter().map(|p| (*p).to_owned()).collect(),
        create: create.iter().map(|p| (*p).to_owned()).collect(),
    }
}

#[test]
fn a_registry_may_have_one_scope_per_publisher_and_each_project_once() {
    let keys = keys();
    let mut second = scope("pypi", &["b"], &["c"]);
    second.publisher = "other-publisher".into();
    let two = Grant {
        scopes: vec![scope("pypi", &["a"], &[]), second.clone()],
        ..grant()
    };
    let minted = keys.mint(&two, NOW).expect("mint");
    let token = keys.verify(&minted.token, NOW).expect("verify");
    assert_eq!(
        token.scope_for_project("pypi", "b").map(|s| s.publisher.as_str()),
        Some("other-publisher")
    );
    assert_eq!(
        token.scope_for_project("pypi", "a").map(|s| s.publisher.as_str()),
        Some("pypi-publisher")
    );
    assert!(token.allows("pypi", "c") && token.may_create("pypi", "c") && !token.may_create("pypi", "b"));
    second.projects = vec!["a".into()];
    let overlapping = Grant {
        scopes: vec![scope("pypi", &["a"], &[]), second],
        ..grant()
    };
    let err = keys.mint(&overlapping, NOW).expect_err("a project in two scopes");
    assert!(err.to_string().contains("more than one scope"), "{err}");
}

fn grant() -> Grant {
    Grant {
        issuer: ISS.to_owned(),
        subject: "repo:octo-org/octo-repo:ref:refs/heads/main".to_owned(),
        scopes: vec![
            scope("pypi", &["sampleproject", "sampleproject-extras"], &[]),
            scope("npm", &["@octo/lib"], &["@octo/new-lib"]),
        ],
    }
}

fn mint(keys: &UploadTokenKeys) -> String {
    keys.mint(&grant(), NOW).expect("minting").token
}

fn refused(keys: &UploadTokenKeys, token: &str) -> UploadTokenError {
    keys.verify(token, NOW).expect_err("the token must be refused")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// (key id, payload, signature) of a token.
fn segments(token: &str) -> (String, String, String) {
    let body = token.strip_prefix(PREFIX).expect("prefix");
    let parts: Vec<&str> = body.split('.').collect();
    assert_eq!(parts.len(), 3, "three segments");
    (parts[0].to_owned(), parts[1].to_owned(), parts[2].to_owned())
}

/// A payload as the gateway would mint it, as JSON to modify.
fn payload() -> Value {
    json!({
        "v": 1,
        "jti": "0123456789abcdef0123456789abcdef",
        "iat": NOW,
        "exp": NOW + 900,
        "iss": ISS,
        "sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
        "scopes": [{"registry": "pypi", "publisher": "p1", "projects": ["sampleproject"], "create": []}],
    })
}

/// Signs raw payload bytes with the keys' real signing key, as a properly signed token.
fn sign_raw(keys: &UploadTokenKeys, payload: &[u8]) -> String {
    let input = format!("{PREFIX}{}.{}", keys.signing_key_id, b64(payload));
    let signature = keys.signing_key.sign(input.as_bytes());
    format!("{input}.{}", b64(signature.as_ref()))
}

fn signed(keys: &UploadTokenKeys, payload: &Value) -> String {
    sign_raw(keys, payload.to_string().as_bytes())
}

/// A payload written by hand (to hold what `json!` cannot, such as duplicate members), with
/// `scope_extra` appended inside its scope and `extra` at its top level.
fn handwritten(scope_extra: &str, extra: &str) -> String {
    let scope = format!(r#"{{"registry":"pypi","publisher":"p","projects":["a"],"create":[]{scope_extra}}}"#);
    let exp = NOW + 60;
    let head = format!(r#""v":1,"jti":"0123456789abcdef0123456789abcdef","iat":{NOW},"exp":{exp}"#);
    format!(r#"{{{head},"iss":"{ISS}","sub":"","scopes":[{scope}]{extra}}}"#)
}

fn with(member: &str, value: Value) -> Value {
    let mut p = payload();
    p[member] = value;
    p
}

#[test]
fn mint_then_verify_round_trips() {
    let keys = keys();
    let minted = keys.mint(&grant(), NOW).expect("minting");
    assert!(minted.token.starts_with("pcul_k1."));
    assert!(looks_like_upload_token(&minted.token));
    assert!(minted.token.len() <= MAX_TOKEN_BYTES);
    assert_eq!(minted.expires_at, NOW + 900);
    assert_eq!(minted.id.len(), 32);
    assert!(minted
        .id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));

    let verified = keys.verify(&minted.token, NOW).expect("verification");
    assert_eq!(
        verified,
        UploadToken {
            id: minted.id.clone(),
            key_id: "k1".to_owned(),
            issued_at: NOW,
            expires_at: NOW + 900,
            issuer: ISS.to_owned(),
            subject: grant().subject,
            scopes: grant().scopes,
        }
    );
    // The payload is exactly the documented JSON.
    let (_, payload, _) = segments(&minted.token);
    let json: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json");
    let members: BTreeSet<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(
        members,
        BTreeSet::from(["v", "jti", "iat", "exp", "iss", "sub", "scopes"])
    );
    assert_eq!(json["v"], json!(1));
    assert_eq!(json["jti"], json!(minted.id));
    assert_eq!(
        json["scopes"][1],
        json!({
            "registry": "npm",
            "publisher": "npm-publisher",
            "projects": ["@octo/lib"],
            "create": ["@octo/new-lib"],
        })
    );
}

#[test]
fn every_token_has_its_own_id_and_an_empty_subject_is_kept() {
    let keys = keys();
    let first = keys.mint(&grant(), NOW).expect("minting");
    let second = keys.mint(&grant(), NOW).expect("minting");
    assert_ne!(first.id, second.id);
    assert_ne!(first.token, second.token);
    let anonymous = Grant {
        subject: String::new(),
        ..grant()
    };
    let verified = keys
        .verify(&keys.mint(&anonymous, NOW).expect("minting").token, NOW)
        .expect("verification");
    assert_eq!(verified.subject, "");
}

#[test]
fn tampered_payload_is_refused_by_the_signature() {
    let keys = keys();
    let token = mint(&keys);
    let (kid, payload, signature) = segments(&token);
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("utf-8");
    let edited = text.replace("\"sampleproject\"", "\"otherproject\"");
    assert_ne!(edited, text);
    let tampered = format!("{PREFIX}{kid}.{}.{signature}", b64(edited.as_bytes()));
    assert_eq!(refused(&keys, &tampered), UploadTokenError::BadSignature);
    // Changing the key id, or the prefix's case, also breaks the signature or the prefix.
    let renamed =
        UploadTokenKeys::new(vec![private("k1", &KEY_A), public("k2", &KEY_A)], "k1", LIFETIME).expect("keys");
    let relabelled = token.replacen("pcul_k1.", "pcul_k2.", 1);
    assert_eq!(refused(&renamed, &relabelled), UploadTokenError::BadSignature);
    assert_eq!(
        refused(&keys, &token.replacen("pcul_", "PCUL_", 1)),
        UploadTokenError::WrongPrefix
    );
}

#[test]
fn payload_and_signature_of_two_tokens_do_not_mix() {
    let keys = keys();
    let narrow = Grant {
        scopes: vec![scope("pypi", &["harmless"], &[])],
        ..grant()
    };
    let (kid, narrow_payload, narrow_signature) = segments(&keys.mint(&narrow, NOW).expect("minting").token);
    let (_, wide_payload, wide_signature) = segments(&mint(&keys));
    for swapped in [
        format!("{PREFIX}{kid}.{wide_payload}.{narrow_signature}"),
        format!("{PREFIX}{kid}.{narrow_payload}.{wide_signature}"),
    ] {
        assert_eq!(refused(&keys, &swapped), UploadTokenError::BadSignature);
    }
}

#[test]
fn a_signature_by_another_key_under_the_same_id_is_refused() {
    let keys = keys();
    let impostor = UploadTokenKeys::new(vec![private("k1", &KEY_B)], "k1", LIFETIME).expect("keys");
    let forged = mint(&impostor);
    assert!(impostor.verify(&forged, NOW).is_ok());
    assert_eq!(refused(&keys, &forged), UploadTokenError::BadSignature);
}

#[test]
fn damaged_signatures_are_refused() {
    let keys = keys();
    let token = mint(&keys);
    let (kid, payload, signature) = segments(&token);
    let mut bytes = URL_SAFE_NO_PAD.decode(&signature).expect("base64");
    assert_eq!(bytes.len(), 64);
    bytes[5] ^= 1;
    for bad in [
        b64(&bytes),
        b64(&bytes[..63]),
        b64(&[bytes.as_slice(), &[0]].concat()),
        String::new(),
    ] {
        let damaged = format!("{PREFIX}{kid}.{payload}.{bad}");
        assert_eq!(refused(&keys, &damaged), UploadTokenError::BadSignature);
    }
}

#[test]
fn non_canonical_base64_is_refused() {
    let keys = keys();
    let (kid, payload, signature) = segments(&mint(&keys));
    // The last character of an 86-character encoding of 64 bytes carries 2 data bits and 4
    // spare bits; setting a spare bit keeps the bytes but must not be accepted.
    let last = signature.as_bytes()[signature.len() - 1];
    let index = URL_ALPHABET.iter().position(|c| *c == last).expect("alphabet");
    assert!(index.is_multiple_of(16), "spare bits of a canonical encoding are zero");
    let respelled = format!(
        "{}{}",
        &signature[..signature.len() - 1],
        char::from(URL_ALPHABET[index + 1])
    );
    assert_eq!(
        refused(&keys, &format!("{PREFIX}{kid}.{payload}.{respelled}")),
        UploadTokenError::Base64 { part: Part::Signature }
    );
    for bad in [
        format!("{PREFIX}{kid}.{payload}=.{signature}"),
        format!("{PREFIX}{kid}.{payload}.{signature}=="),
        format!("{PREFIX}{kid}.{payload}+/.{signature}"),
        format!("{PREFIX}{kid}.{payload}.{signature}!"),
        format!("{PREFIX}{kid}.{payload}*.{signature}"),
    ] {
        assert_eq!(refused(&keys, &bad).code(), "base64", "{bad}");
    }
    assert_eq!(
        refused(&keys, &format!("{PREFIX}{kid}.{payload}!.{signature}")),
        UploadTokenError::Base64 { part: Part::Payload }
    );
}

const URL_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#[test]
fn unknown_and_malformed_key_ids_are_refused() {
    let keys = keys();
    let (_, payload, signature) = segments(&mint(&keys));
    assert_eq!(
        refused(&keys, &format!("{PREFIX}k9.{payload}.{signature}")),
        UploadTokenError::UnknownKey {
            key_id: "k9".to_owned()
        }
    );
    for bad in ["", "k 1", "k/1", "ké", &"k".repeat(33)] {
        assert_eq!(
            refused(&keys, &format!("{PREFIX}{bad}.{payload}.{signature}")).code(),
            "key_id_malformed",
            "{bad:?}"
        );
    }
    let long = "x".repeat(1000);
    match refused(&keys, &format!("{PREFIX}{long}.{payload}.{signature}")) {
        UploadTokenError::MalformedKeyId { key_id } => assert_eq!(key_id.chars().count(), MAX_ECHO_CHARS + 1),
        other => panic!("expected a malformed key id, got {other:?}"),
    }
    // The longest valid id is accepted as syntax (and then unknown).
    let longest = "K".repeat(MAX_KEY_ID_LEN);
    assert_eq!(
        refused(&keys, &format!("{PREFIX}{longest}.{payload}.{signature}")).code(),
        "unknown_key"
    );
}

#[test]
fn rotation_keeps_old_tokens_valid_while_the_old_key_is_listed() {
    let old = keys();
    let old_token = mint(&old);

    // The new key signs; the old one is still listed, by its public key only.
    let rotated =
        UploadTokenKeys::new(vec![public("k1", &KEY_A), private("k2", &KEY_B)], "k2", LIFETIME).expect("keys");
    assert_eq!(rotated.signing_key_id(), "k2");
    assert_eq!(rotated.key_ids().collect::<Vec<_>>(), ["k1", "k2"]);
    assert_eq!(rotated.verify(&old_token, NOW).expect("old token").key_id, "k1");
    let new_token = mint(&rotated);
    assert!(new_token.starts_with("pcul_k2."));
    assert_eq!(rotated.verify(&new_token, NOW).expect("new token").key_id, "k2");
    // The old configuration does not know the new key.
    assert_eq!(refused(&old, &new_token).code(), "unknown_key");

    // Once the old key is removed its tokens are refused.
    let retired = UploadTokenKeys::new(vec![private("k2", &KEY_B)], "k2", LIFETIME).expect("keys");
    assert_eq!(
        refused(&retired, &old_token),
        UploadTokenError::UnknownKey {
            key_id: "k1".to_owned()
        }
    );
    assert!(retired.verify(&new_token, NOW).is_ok());

    // A key listed with its private key but not signing also only verifies.
    let both_private =
        UploadTokenKeys::new(vec![private("k1", &KEY_A), private("k2", &KEY_B)], "k2", LIFETIME).expect("keys");
    assert!(both_private.verify(&old_token, NOW).is_ok());
    assert!(mint(&both_private).starts_with("pcul_k2."));
}

#[test]
fn tokens_expire_at_exactly_exp() {
    let keys = keys();
    let minted = keys.mint(&grant(), NOW).expect("minting");
    assert!(keys.verify(&minted.token, minted.expires_at - 1).is_ok());
    assert_eq!(
        keys.verify(&minted.token, minted.expires_at),
        Err(UploadTokenError::Expired {
            exp: minted.expires_at,
            now: minted.expires_at
        })
    );
    assert_eq!(
        keys.verify(&minted.token, i64::MAX).map_err(|e| e.code()),
        Err("expired")
    );
}

#[test]
fn tokens_from_the_future_have_sixty_seconds_of_skew() {
    let keys = keys();
    let ahead = |secs: i64| keys.mint(&grant(), NOW + secs).expect("minting").token;
    assert!(keys.verify(&ahead(ISSUED_AT_SKEW_SECS), NOW).is_ok());
    assert_eq!(
        keys.verify(&ahead(ISSUED_AT_SKEW_SECS + 1), NOW),
        Err(UploadTokenError::NotYetValid {
            iat: NOW + 61,
            now: NOW
        })
    );
}

#[test]
fn inconsistent_times_are_refused() {
    let keys = keys();
    let times = |iat: i64, exp: i64| {
        let mut p = with("iat", json!(iat));
        p["exp"] = json!(exp);
        keys.verify(&signed(&keys, &p), NOW)
    };
    assert_eq!(
        times(NOW, NOW),
        Err(UploadTokenError::InvalidLifetime { iat: NOW, exp: NOW })
    );
    assert_eq!(times(NOW, NOW - 1).map_err(|e| e.code()), Err("invalid_lifetime"));
    assert_eq!(
        times(NOW - 10, NOW + MAX_LIFETIME_SECS).map_err(|e| e.code()),
        Err("invalid_lifetime")
    );
    assert!(times(NOW - 10, NOW - 10 + MAX_LIFETIME_SECS).is_ok());
    assert_eq!(times(i64::MIN, i64::MAX).map_err(|e| e.code()), Err("invalid_lifetime"));
    for (member, value) in [
        ("iat", json!(1.75e9)),
        ("exp", json!((NOW + 60).to_string())),
        ("exp", json!(u64::MAX)),
        ("iat", json!(null)),
    ] {
        assert_eq!(
            refused(&keys, &signed(&keys, &with(member, value.clone()))).code(),
            "malformed",
            "{member} = {value}"
        );
    }
}

#[test]
fn the_prefix_is_required() {
    let keys = keys();
    let token = mint(&keys);
    for bad in [
        token.strip_prefix(PREFIX).expect("prefix").to_owned(),
        format!("pypi-{}", token.strip_prefix(PREFIX).expect("prefix")),
        format!(" {token}"),
        "pcul".to_owned(),
        String::new(),
    ] {
        assert_eq!(refused(&keys, &bad), UploadTokenError::WrongPrefix);
        assert!(!looks_like_upload_token(&bad));
    }
    assert!(looks_like_upload_token("pcul_"));
    assert!(!looks_like_upload_token("Pcul_k1.x.y"));
}

#[test]
fn exactly_three_segments_are_required() {
    let keys = keys();
    let token = mint(&keys);
    let (kid, payload, signature) = segments(&token);
    for (bad, found) in [
        (format!("{PREFIX}{kid}.{payload}"), 2),
        (format!("{PREFIX}{kid}.{payload}{signature}"), 2),
        (format!("{token}.x"), 4),
        (format!("{PREFIX}{kid}.{payload}.{signature}."), 4),
        (format!("{PREFIX}{kid}..{payload}.{signature}"), 4),
        (PREFIX.to_owned(), 1),
        (format!("{PREFIX}{kid}"), 1),
    ] {
        assert_eq!(refused(&keys, &bad), UploadTokenError::Segments { found }, "{bad}");
    }
}

#[test]
fn oversized_tokens_are_refused_before_anything_else() {
    let keys = keys();
    let token = mint(&keys);
    let padded = format!("{token}{}", "A".repeat(MAX_TOKEN_BYTES));
    assert_eq!(
        refused(&keys, &padded),
        UploadTokenError::TooLarge {
            len: padded.len(),
            max: MAX_TOKEN_BYTES
        }
    );
    assert_eq!(refused(&keys, &"!".repeat(MAX_TOKEN_BYTES + 1)).code(), "too_large");
    // A properly signed token of exactly the limit is parsed.
    let mut p = payload();
    let base = signed(&keys, &p).len();
    // Each 3 bytes of JSON take 4 characters of base64; fill up to the limit exactly.
    let filler = (MAX_TOKEN_BYTES - base) / 4 * 3;
    p["scopes"][0]["projects"] = json!(["sampleproject", "x".repeat(filler - 3)]);
    let near = signed(&keys, &p);
    assert!(
        near.len() <= MAX_TOKEN_BYTES && near.len() > MAX_TOKEN_BYTES - 8,
        "{}",
        near.len()
    );
    assert!(keys.verify(&near, NOW).is_ok());
}

#[test]
fn minting_refuses_grants_too_large_for_a_token() {
    let keys = keys();
    let projects: Vec<String> = (0..200).map(|i| format!("project-with-a-long-name-{i}")).collect();
    let huge = Grant {
        scopes: vec![Scope {
            projects,
            ..scope("pypi", &[], &[])
        }],
        ..grant()
    };
    let err = keys.mint(&huge, NOW).expect_err("too large");
    assert_eq!(err.code(), "invalid_grant");
    assert!(err.to_string().contains("4096-byte limit"), "{err}");
}

#[test]
fn duplicate_json_members_are_refused_even_when_signed() {
    let keys = keys();
    // Correctly signed with the real key: only the duplicate check can refuse these.
    let top = handwritten("", r#","iss":"https://evil.example""#);
    let nested = handwritten(r#","projects":["everything"]"#, "");
    for payload in [top, nested] {
        let err = refused(&keys, &sign_raw(&keys, payload.as_bytes()));
        assert!(
            matches!(err, UploadTokenError::Malformed { ref reason } if reason.contains("duplicate member")),
            "{err:?}"
        );
    }
    // The same payload without the duplicate verifies: the signature was fine.
    let single = handwritten("", "");
    assert!(keys.verify(&sign_raw(&keys, single.as_bytes()), NOW).is_ok());
}

#[test]
fn unknown_and_missing_payload_members_are_refused() {
    let keys = keys();
    assert!(keys.verify(&signed(&keys, &payload()), NOW).is_ok());
    let mut unknown_scope_member = payload();
    unknown_scope_member["scopes"][0]["admin"] = json!(true);
    for bad in [with("admin", json!(true)), unknown_scope_member] {
        let err = refused(&keys, &signed(&keys, &bad));
        assert!(
            matches!(err, UploadTokenError::Malformed { ref reason } if reason.contains("unknown field")),
            "{err:?}"
        );
    }
    for member in ["jti", "iat", "exp", "iss", "sub", "scopes"] {
        let mut p = payload();
        p.as_object_mut().expect("object").remove(member);
        assert_eq!(refused(&keys, &signed(&keys, &p)).code(), "malformed", "{member}");
    }
    let mut no_create = payload();
    no_create["scopes"][0].as_object_mut().expect("object").remove("create");
    assert_eq!(refused(&keys, &signed(&keys, &no_create)).code(), "malformed");
}

#[test]
fn only_version_one_is_accepted() {
    let keys = keys();
    assert_eq!(
        refused(&keys, &signed(&keys, &with("v", json!(2)))),
        UploadTokenError::UnsupportedVersion { version: 2 }
    );
    assert_eq!(
        refused(&keys, &signed(&keys, &with("v", json!(0)))),
        UploadTokenError::UnsupportedVersion { version: 0 }
    );
    // A future version with members this one does not know is still reported as a version.
    let mut v2 = with("v", json!(2));
    v2["audience"] = json!("somewhere");
    assert_eq!(refused(&keys, &signed(&keys, &v2)).code(), "unsupported_version");
    let mut no_version = payload();
    no_version.as_object_mut().expect("object").remove("v");
    for bad in [
        no_version,
        with("v", json!("1")),
        with("v", json!(1.0)),
        with("v", json!(-1)),
    ] {
        assert_eq!(refused(&keys, &signed(&keys, &bad)).code(), "malformed", "{bad}");
    }
}

#[test]
fn payloads_that_are_not_one_object_are_refused() {
    let keys = keys();
    let as_array = json!([1, "0123456789abcdef0123456789abcdef", NOW, NOW + 60, ISS, "", []]);
    for bad in [
        as_array.to_string(),
        "\"text\"".to_owned(),
        "{}".to_owned(),
        format!("{} {{}}", payload()),
        "{".to_owned(),
        String::new(),
    ] {
        assert_eq!(
            refused(&keys, &sign_raw(&keys, bad.as_bytes())).code(),
            "malformed",
            "{bad}"
        );
    }
}

#[test]
fn jti_and_iss_must_be_well_formed() {
    let keys = keys();
    for jti in [
        "",
        "0123456789ABCDEF0123456789ABCDEF",
        "01234567-89ab-cdef-0123-456789abcdef",
        "0123456789abcdef0123456789abcde",
        "0123456789abcdef0123456789abcdeg",
    ] {
        assert_eq!(
            refused(&keys, &signed(&keys, &with("jti", json!(jti)))).code(),
            "malformed",
            "{jti}"
        );
    }
    assert_eq!(
        refused(&keys, &signed(&keys, &with("iss", json!("")))).code(),
        "malformed"
    );
}

#[test]
fn signed_payloads_must_have_valid_scopes() {
    let keys = keys();
    let pypi = json!({"registry": "pypi", "publisher": "p", "projects": ["a"], "create": []});
    for scopes in [
        json!([]),
        json!([pypi.clone(), pypi.clone()]),
        json!([{"registry": "", "publisher": "p", "projects": ["a"], "create": []}]),
        json!([{"registry": "pypi", "publisher": "", "projects": ["a"], "create": []}]),
        json!([{"registry": "pypi", "publisher": "p", "projects": [], "create": []}]),
        json!([{"registry": "pypi", "publisher": "p", "projects": [""], "create": []}]),
    ] {
        let err = refused(&keys, &signed(&keys, &with("scopes", scopes.clone())));
        assert_eq!(err.code(), "invalid_scopes", "{scopes}");
    }
    // A pending-publisher scope may name its project only in "create".
    let pending = json!([{"registry": "pypi", "publisher": "p", "projects": [], "create": ["new"]}]);
    let token = keys
        .verify(&signed(&keys, &with("scopes", pending)), NOW)
        .expect("pending scope");
    assert!(token.may_create("pypi", "new"));
}

#[test]
fn minting_refuses_invalid_grants() {
    let keys = keys();
    let with_scopes = |scopes: Vec<Scope>| Grant { scopes, ..grant() };
    let mut no_publisher = scope("pypi", &["a"], &[]);
    no_publisher.publisher.clear();
    for (bad, fragment) in [
        (with_scopes(vec![]), "no scopes"),
        (with_scopes(vec![scope("pypi", &[], &[])]), "names no project"),
        (with_scopes(vec![scope("pypi", &["a", ""], &[])]), "empty project name"),
        (with_scopes(vec![scope("pypi", &["a"], &[""])]), "empty project name"),
        (with_scopes(vec![scope("", &["a"], &[])]), "empty registry"),
        (with_scopes(vec![no_publisher]), "empty publisher"),
        (
            with_scopes(vec![scope("pypi", &["a"], &[]), scope("pypi", &["b"], &[])]),
            "more than one scope for publisher",
        ),
        (
            Grant {
                issuer: String::new(),
                ..grant()
            },
            "issuer is empty",
        ),
    ] {
        let err = keys.mint(&bad, NOW).expect_err("refused");
        assert_eq!(err.code(), "invalid_grant");
        assert!(err.to_string().contains(fragment), "{err}");
    }
    assert_eq!(
        keys.mint(&grant(), i64::MAX).map_err(|e| e.code()),
        Err("invalid_grant")
    );
}

#[test]
fn allows_and_may_create_follow_the_scopes() {
    let keys = keys();
    let token = keys.verify(&mint(&keys), NOW).expect("verification");
    assert_eq!(
        token.scope_for("npm").map(|s| s.publisher.as_str()),
        Some("npm-publisher")
    );
    assert_eq!(token.scope_for("cargo"), None);
    // Existing projects: upload, not create.
    assert!(token.allows("pypi", "sampleproject"));
    assert!(token.allows("pypi", "sampleproject-extras"));
    assert!(!token.may_create("pypi", "sampleproject"));
    // Projects to create: both.
    assert!(token.allows("npm", "@octo/new-lib"));
    assert!(token.may_create("npm", "@octo/new-lib"));
    assert!(token.allows("npm", "@octo/lib"));
    assert!(!token.may_create("npm", "@octo/lib"));
    // Never across registries, never by prefix or case, never unlisted.
    assert!(!token.allows("npm", "sampleproject"));
    assert!(!token.allows("pypi", "@octo/lib"));
    assert!(!token.may_create("pypi", "@octo/new-lib"));
    assert!(!token.allows("pypi", "SampleProject"));
    assert!(!token.allows("pypi", "sample"));
    assert!(!token.allows("pypi", ""));
    assert!(!token.allows("cargo", "sampleproject"));
    assert!(!token.may_create("cargo", "sampleproject"));
}

#[test]
fn the_signing_key_needs_its_private_key() {
    assert_eq!(
        key_error(vec![public("k1", &KEY_A)], "k1"),
        KeyError::SigningKeyNotPrivate { id: "k1".to_owned() }
    );
    assert_eq!(
        key_error(vec![private("k1", &KEY_A)], "k2"),
        KeyError::UnknownSigningKey { id: "k2".to_owned() }
    );
    assert_eq!(key_error(vec![], "k1").code(), "signing_key_unknown");
}

#[test]
fn key_ids_must_be_valid_and_unique() {
    assert_eq!(
        key_error(vec![private("k1", &KEY_A), public("k1", &KEY_B)], "k1"),
        KeyError::DuplicateId { id: "k1".to_owned() }
    );
    for bad in ["", "k.1", "k 1", "clé", &"k".repeat(33)] {
        assert_eq!(
            key_error(vec![private(bad, &KEY_A)], bad).code(),
            "key_id_invalid",
            "{bad:?}"
        );
    }
    let longest = "a-Z_0".repeat(6) + "xy";
    assert_eq!(longest.len(), MAX_KEY_ID_LEN);
    let keys = UploadTokenKeys::new(vec![private(&longest, &KEY_A)], &longest, LIFETIME).expect("keys");
    assert!(keys.verify(&mint(&keys), NOW).is_ok());
}

#[test]
fn each_key_has_exactly_one_kind_of_material() {
    let none = KeyMaterial {
        id: "k1".to_owned(),
        ..KeyMaterial::default()
    };
    assert_eq!(
        key_error(vec![none], "k1"),
        KeyError::NoMaterial { id: "k1".to_owned() }
    );
    let both = KeyMaterial {
        public_spki_pem: Some(KEY_A.1.as_bytes().to_vec()),
        ..private("k1", &KEY_A)
    };
    assert_eq!(
        key_error(vec![both], "k1"),
        KeyError::BothMaterials { id: "k1".to_owned() }
    );
}

#[test]
fn lifetime_is_whole_seconds_from_one_minute_to_a_day() {
    for ok in [MIN_LIFETIME, MAX_LIFETIME, Duration::from_secs(3600)] {
        let keys = UploadTokenKeys::new(vec![private("k1", &KEY_A)], "k1", ok).expect("lifetime");
        assert_eq!(keys.lifetime(), ok);
        let minted = keys.mint(&grant(), NOW).expect("minting");
        assert_eq!(minted.expires_at, NOW + i64::try_from(ok.as_secs()).expect("small"));
        assert!(keys.verify(&minted.token, NOW).is_ok());
    }
    for bad in [
        Duration::ZERO,
        Duration::from_secs(59),
        MAX_LIFETIME + Duration::from_secs(1),
        Duration::from_millis(90_500),
    ] {
        assert_eq!(
            UploadTokenKeys::new(vec![private("k1", &KEY_A)], "k1", bad).map(|_| ()),
            Err(KeyError::Lifetime { lifetime: bad })
        );
    }
}

#[test]
fn keys_of_other_types_are_refused_with_a_clear_message() {
    let ec = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256");
    let ec_private = pem_encode("PRIVATE KEY", ec.to_pkcs8v1().expect("PKCS#8").as_ref());
    let ec_public = pem_encode("PUBLIC KEY", ec.public_key().as_der().expect("SPKI").as_ref());
    let err = key_error(vec![KeyMaterial::private("k1", ec_private)], "k1");
    assert_eq!(
        err,
        KeyError::WrongKeyType {
            id: "k1".to_owned(),
            part: KeyPart::Private,
            found: "an EC key"
        }
    );
    assert!(err.to_string().contains("not an Ed25519 key"), "{err}");
    assert_eq!(
        key_error(vec![private("k1", &KEY_A), KeyMaterial::public("k0", ec_public)], "k1"),
        KeyError::WrongKeyType {
            id: "k0".to_owned(),
            part: KeyPart::Public,
            found: "an EC key"
        }
    );
    // Labels of other key formats are recognised without decoding them.
    for (label, found) in [
        ("RSA PRIVATE KEY", "an RSA key (PKCS#1)"),
        ("EC PRIVATE KEY", "an EC key (SEC1)"),
    ] {
        let pem = pem_encode(label, b"not really a key");
        assert_eq!(
            key_error(vec![KeyMaterial::private("k1", pem)], "k1"),
            KeyError::WrongKeyType {
                id: "k1".to_owned(),
                part: KeyPart::Private,
                found
            }
        );
    }
    // An RSA SubjectPublicKeyInfo (the OID is enough to name it).
    let rsa_spki: &[u8] = &[
        0x30, 0x12, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00, 0x03,
        0x01, 0x00,
    ];
    let err = key_error(
        vec![
            private("k1", &KEY_A),
            KeyMaterial::public("k0", pem_encode("PUBLIC KEY", rsa_spki)),
        ],
        "k1",
    );
    assert!(
        matches!(
            err,
            KeyError::WrongKeyType {
                found: "an RSA key",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn malformed_key_files_are_refused() {
    let cases: Vec<(KeyMaterial, &str)> = vec![
        // The public key in the private key's place, and the reverse.
        (KeyMaterial::private("k1", KEY_A.1.as_bytes()), "key_pem_invalid"),
        (KeyMaterial::public("k0", KEY_A.0.as_bytes()), "key_pem_invalid"),
        (KeyMaterial::private("k1", "not a PEM file"), "key_pem_invalid"),
        (KeyMaterial::private("k1", ""), "key_pem_invalid"),
        (
            KeyMaterial::private("k1", format!("{}{}", KEY_A.0, KEY_B.0)),
            "key_pem_invalid",
        ),
        (
            KeyMaterial::private("k1", KEY_A.0.replace("-----END PRIVATE KEY-----\n", "")),
            "key_pem_invalid",
        ),
        (
            KeyMaterial::private("k1", KEY_A.0.replacen("MC", "M!", 1)),
            "key_pem_invalid",
        ),
        (
            KeyMaterial::private("k1", pem_encode("CERTIFICATE", b"x")),
            "key_pem_invalid",
        ),
        (
            KeyMaterial::private("k1", pem_encode("OPENSSH PRIVATE KEY", b"x")),
            "key_pem_invalid",
        ),
        (
            KeyMaterial::private("k1", pem_encode("PRIVATE KEY", b"\x30\x00")),
            "key_invalid",
        ),
        (
            KeyMaterial::public("k0", pem_encode("PUBLIC KEY", b"\x04\x01")),
            "key_invalid",
        ),
    ];
    for (material, code) in cases {
        let keys = if material.id == "k0" {
            vec![private("k1", &KEY_A), material.clone()]
        } else {
            vec![material.clone()]
        };
        let err = key_error(keys, "k1");
        assert_eq!(err.code(), code, "{material:?}: {err}");
        // Messages never quote the key file.
        assert!(!err.to_string().contains(&KEY_A.0[28..60]), "{err}");
    }
    // A truncated Ed25519 private key and a public key with a byte too many.
    let der = |pem: &str| {
        rustls_pki_types::pem::from_buf(&mut pem.as_bytes())
            .expect("pem")
            .expect("section")
            .1
    };
    let private_der = der(&KEY_A.0);
    let short = pem_encode("PRIVATE KEY", &private_der[..private_der.len() - 1]);
    assert_eq!(
        key_error(vec![KeyMaterial::private("k1", short)], "k1").code(),
        "key_invalid"
    );
    let mut public_der = der(&KEY_A.1);
    public_der.push(0);
    let long = pem_encode("PUBLIC KEY", &public_der);
    assert_eq!(
        key_error(vec![private("k1", &KEY_A), KeyMaterial::public("k0", long)], "k1").code(),
        "key_invalid"
    );
}

#[test]
fn generated_keys_load_back_and_interoperate() {
    let (private_pem, public_pem) = generate_key_pem().expect("generation");
    for (pem, label) in [(&private_pem, "PRIVATE KEY"), (&public_pem, "PUBLIC KEY")] {
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(
            lines.first().copied(),
            Some(format!("-----BEGIN {label}-----").as_str())
        );
        assert_eq!(lines.last().copied(), Some(format!("-----END {label}-----").as_str()));
        assert!(lines.iter().all(|line| line.len() <= 64), "{pem}");
        assert!(pem.ends_with('\n'));
    }
    // Sizes of the RFC 8410 encodings: PKCS#8 v1 (as openssl writes) and SPKI.
    assert_eq!(private_pem.lines().count(), 3);
    assert!(private_pem.contains("\nMC4CAQAwBQYDK2VwBCIEI"), "{private_pem}");
    assert!(public_pem.contains("\nMCowBQYDK2VwAyEA"), "{public_pem}");

    let signer = UploadTokenKeys::new(
        vec![KeyMaterial::private("gen", private_pem.as_bytes())],
        "gen",
        LIFETIME,
    )
    .expect("private key loads");
    let token = signer.mint(&grant(), NOW).expect("minting");
    // A gateway holding only the public key verifies it (CRLF line endings too).
    let verifier = UploadTokenKeys::new(
        vec![
            KeyMaterial::public("gen", public_pem.replace('\n', "\r\n")),
            private("k1", &KEY_A),
        ],
        "k1",
        LIFETIME,
    )
    .expect("public key loads");
    assert_eq!(verifier.verify(&token.token, NOW).expect("verification").id, token.id);
    // PKCS#8 v2 (with the public key) loads too.
    let v2 = signer.signing_key.to_pkcs8().expect("PKCS#8 v2");
    let v2_keys = UploadTokenKeys::new(
        vec![KeyMaterial::private("gen", pem_encode("PRIVATE KEY", v2.as_ref()))],
        "gen",
        LIFETIME,
    )
    .expect("v2 loads");
    assert!(v2_keys.verify(&token.token, NOW).is_ok());
}

#[test]
fn debug_output_holds_no_key_material_or_token() {
    let keys = UploadTokenKeys::new(vec![private("k1", &KEY_A), public("k2", &KEY_B)], "k1", LIFETIME).expect("keys");
    let debug = format!("{keys:?}");
    assert!(debug.contains("k1") && debug.contains("k2"), "{debug}");
    let public_hex = hex::encode(keys.signing_key.public_key().as_ref());
    for pem in [&KEY_A.0, &KEY_A.1, &KEY_B.1] {
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!debug.contains(&line[..16]), "{debug}");
        }
    }
    assert!(!debug.contains(&public_hex[..16]), "{debug}");

    let material = format!("{:?}", private("k1", &KEY_A));
    assert!(
        material.contains("<redacted>") && !material.contains("BEGIN"),
        "{material}"
    );
    let minted = keys.mint(&grant(), NOW).expect("minting");
    let minted_debug = format!("{minted:?}");
    assert!(minted_debug.contains(&minted.id), "{minted_debug}");
    assert!(!minted_debug.contains(PREFIX), "{minted_debug}");
    let verified = format!("{:?}", keys.verify(&minted.token, NOW).expect("verification"));
    let (_, _, signature) = segments(&minted.token);
    assert!(!verified.contains(&signature[..16]));
}

#[test]
fn error_codes_are_distinct_and_messages_bounded() {
    let token_errors = [
        UploadTokenError::TooLarge { len: 0, max: 0 },
        UploadTokenError::WrongPrefix,
        UploadTokenError::Segments { found: 0 },
        UploadTokenError::MalformedKeyId { key_id: String::new() },
        UploadTokenError::UnknownKey { key_id: String::new() },
        UploadTokenError::Base64 { part: Part::Payload },
        UploadTokenError::BadSignature,
        UploadTokenError::Malformed { reason: String::new() },
        UploadTokenError::UnsupportedVersion { version: 0 },
        UploadTokenError::InvalidLifetime { iat: 0, exp: 0 },
        UploadTokenError::Expired { exp: 0, now: 0 },
        UploadTokenError::NotYetValid { iat: 0, now: 0 },
        UploadTokenError::InvalidScopes { reason: String::new() },
        UploadTokenError::InvalidGrant { reason: String::new() },
        UploadTokenError::Signing,
    ];
    let key_errors = [
        KeyError::InvalidId { id: String::new() },
        KeyError::DuplicateId { id: String::new() },
        KeyError::NoMaterial { id: String::new() },
        KeyError::BothMaterials { id: String::new() },
        KeyError::Pem {
            id: String::new(),
            part: KeyPart::Private,
            reason: String::new(),
        },
        KeyError::WrongKeyType {
            id: String::new(),
            part: KeyPart::Private,
            found: "",
        },
        KeyError::InvalidKey {
            id: String::new(),
            part: KeyPart::Public,
            format: "",
        },
        KeyError::UnknownSigningKey { id: String::new() },
        KeyError::SigningKeyNotPrivate { id: String::new() },
        KeyError::Lifetime {
            lifetime: Duration::ZERO,
        },
        KeyError::Generation,
    ];
    let codes: BTreeSet<&str> = token_errors
        .iter()
        .map(UploadTokenError::code)
        .chain(key_errors.iter().map(KeyError::code))
        .collect();
    assert_eq!(codes.len(), token_errors.len() + key_errors.len());
    assert!(codes.iter().all(|c| c
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')));
    assert!(token_errors.iter().all(|e| !e.to_string().is_empty()));
    assert!(key_errors.iter().all(|e| !e.to_string().is_empty()));

    // Attacker-supplied member names are shortened too.
    let keys = keys();
    let long = "m".repeat(500);
    let payload = format!(r#"{{"{long}":1,"{long}":2}}"#);
    let err = refused(&keys, &sign_raw(&keys, payload.as_bytes()));
    assert!(err.to_string().chars().count() < 400, "{err}");
    assert!(!err.to_string().contains(&"m".repeat(MAX_ECHO_CHARS + 1)), "{err}");
}
