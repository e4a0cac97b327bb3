//! The OIDC stand-ins themselves: the issuer's discovery document and JWKS over HTTPS (checked
//! with a rustls client trusting only the written CA), tokens that verify against the served
//! keys (checked independently with aws-lc-rs), the deliberately broken tokens, key rotation,
//! the "issuer down" switch, the GitHub-style CI token endpoint, and PyPA `id` accepting it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use portcullis_e2e::http;
use portcullis_e2e::oidc::{env_for_github_actions, CiTokenEndpoint, Issuer, TokenSpec};
use portcullis_e2e::process::Managed;
use serde_json::{json, Value};

/// GETs `path` from the issuer over TLS, trusting only its CA file and naming the server
/// `server_name` (SNI and certificate check). Returns the status and body.
fn https_get(issuer: &Issuer, server_name: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(issuer.ca_file()).map_err(std::io::Error::other)? {
        roots
            .add(cert.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned()).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect_timeout(&issuer.addr(), Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {server_name}:{}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        issuer.addr().port()
    )?;
    tls.flush()?;
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no response head in {} bytes", raw.len())))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    Ok((status, raw[split + 4..].to_vec()))
}

/// GETs `path` and parses the JSON body, expecting 200.
fn get_json(issuer: &Issuer, path: &str) -> Value {
    let (status, body) = https_get(issuer, "127.0.0.1", path).expect("issuer answers");
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("JSON body")
}

fn b64d(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap_or_else(|e| panic!("base64url {text:?}: {e}"))
}

/// (header, claims, signing input, signature) of a compact JWS.
fn parts(token: &str) -> (Value, Value, String, Vec<u8>) {
    let pieces: Vec<&str> = token.split('.').collect();
    assert_eq!(pieces.len(), 3, "three parts: {token}");
    let header = serde_json::from_slice(&b64d(pieces[0])).expect("header JSON");
    let claims = serde_json::from_slice(&b64d(pieces[1])).expect("claims JSON");
    (header, claims, format!("{}.{}", pieces[0], pieces[1]), b64d(pieces[2]))
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// PKCS#1 `RSAPublicKey` DER from JWK `n` and `e` (unsigned big-endian).
fn pkcs1_from_jwk(n: &[u8], e: &[u8]) -> Vec<u8> {
    let integer = |bytes: &[u8]| {
        let mut content = bytes.to_vec();
        if content[0] & 0x80 != 0 {
            content.insert(0, 0);
        }
        der_tlv(0x02, &content)
    };
    der_tlv(0x30, &[integer(n), integer(e)].concat())
}

fn jwk<'a>(jwks: &'a Value, kid: &str) -> &'a Value {
    jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} in {jwks}"))
}

fn str_field<'a>(key: &'a Value, name: &str) -> &'a str {
    key[name].as_str().unwrap_or_else(|| panic!("{name} in {key}"))
}

/// Verifies `token` with the JWK named by `kid` (RS256 or ES256, per the JWK's `kty`), using
/// aws-lc-rs and nothing from the harness.
fn verify_with(jwks: &Value, kid: &str, token: &str) -> Result<(), String> {
    use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
    let key = jwk(jwks, kid);
    let (_, _, input, signature) = parts(token);
    let result = match str_field(key, "kty") {
        "RSA" => {
            let der = pkcs1_from_jwk(&b64d(str_field(key, "n")), &b64d(str_field(key, "e")));
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der).verify(input.as_bytes(), &signature)
        }
        "EC" => {
            let mut point = vec![4u8];
            point.extend(b64d(str_field(key, "x")));
            point.extend(b64d(str_field(key, "y")));
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(input.as_bytes(), &signature)
        }
        other => return Err(format!("unexpected kty {other}")),
    };
    result.map_err(|_| format!("signature of {token} does not verify with {kid}"))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The tests sit in a module named after the suite so that `cargo nextest run -p portcullis-e2e
/// oidc_issuer` selects them (nextest filters match test names, not binary names).
mod oidc_issuer {
    use super::*;

    #[test]
    fn discovery_document_names_the_issuer_and_its_jwks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = Issuer::start(dir.path());
        assert!(issuer.url().starts_with("https://127.0.0.1:"), "{}", issuer.url());
        assert!(!issuer.url().ends_with('/'));
        assert_eq!(issuer.ca_file(), dir.path().join("oidc-ca.pem"));
        let pem = std::fs::read_to_string(issuer.ca_file()).expect("CA file");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

        let doc = get_json(&issuer, "/.well-known/openid-configuration");
        assert_eq!(doc["issuer"], issuer.url());
        assert_eq!(doc["jwks_uri"], format!("{}/jwks", issuer.url()));
        let algs = doc["id_token_signing_alg_values_supported"].as_array().expect("algs");
        assert!(
            algs.contains(&json!("RS256")) && algs.contains(&json!("ES256")),
            "{doc}"
        );
        assert_eq!(doc["response_types_supported"], json!(["id_token"]));

        // The certificate also carries the `localhost` name.
        let (status, _) = https_get(&issuer, "localhost", "/.well-known/openid-configuration").expect("via localhost");
        assert_eq!(status, 200);
        // Unknown paths are 404, and everything is counted per path (query excluded).
        let (status, _) = https_get(&issuer, "127.0.0.1", "/nope?x=1").expect("answers");
        assert_eq!(status, 404);
        assert_eq!(issuer.requests("/.well-known/openid-configuration"), 2);
        assert_eq!(issuer.requests("/nope"), 1);
        assert_eq!(issuer.requests("/jwks"), 0);
    }

    #[test]
    fn a_client_trusting_another_ca_refuses_the_issuer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = Issuer::start(&dir.path().join("one"));
        let other = Issuer::start(&dir.path().join("two"));
        assert_ne!(
            std::fs::read(issuer.ca_file()).expect("ca"),
            std::fs::read(other.ca_file()).expect("ca")
        );
        // Trust `other`'s CA while talking to `issuer`: the handshake must fail.
        std::fs::copy(other.ca_file(), issuer.ca_file()).expect("overwrite the CA file");
        let refused = https_get(&issuer, "127.0.0.1", "/jwks").expect_err("the handshake fails");
        assert!(refused.to_string().contains("invalid peer certificate"), "{refused}");
    }

    #[test]
    fn jwks_serves_both_keys_with_their_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = Issuer::start(dir.path());
        let jwks = get_json(&issuer, "/jwks");
        assert_eq!(jwks, issuer.jwks());
        assert_eq!(jwks["keys"].as_array().expect("keys").len(), 2, "{jwks}");

        let rsa = jwk(&jwks, "rsa-1");
        assert_eq!(rsa["kty"], "RSA");
        assert_eq!(rsa["alg"], "RS256");
        assert_eq!(rsa["use"], "sig");
        let n = b64d(str_field(rsa, "n"));
        assert_eq!(n.len(), 256, "2048-bit modulus without a leading zero");
        assert!(n[0] & 0x80 != 0, "a 2048-bit modulus has its top bit set");
        assert_eq!(b64d(str_field(rsa, "e")), vec![1, 0, 1]);
        for field in ["n", "e"] {
            let text = str_field(rsa, field);
            assert!(!text.contains(['=', '+', '/']), "base64url without padding: {text}");
        }

        let ec = jwk(&jwks, "ec-1");
        assert_eq!(ec["kty"], "EC");
        assert_eq!(ec["alg"], "ES256");
        assert_eq!(ec["use"], "sig");
        assert_eq!(ec["crv"], "P-256");
        assert_eq!(b64d(str_field(ec, "x")).len(), 32);
        assert_eq!(b64d(str_field(ec, "y")).len(), 32);
        assert_eq!(issuer.requests("/jwks"), 1);
    }

    #[test]
    fn rs256_and_es256_tokens_verify_against_the_served_jwks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = Issuer::start(dir.path());
        let jwks = get_json(&issuer, "/jwks");
        let claims = issuer.github_claims("pypi", "octo-org/octo-repo", "65", "release.yml");

        let rs = issuer.token(claims.clone());
        let (header, payload, _, signature) = parts(&rs);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], "rsa-1");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(payload, claims);
        assert_eq!(signature.len(), 256);
        verify_with(&jwks, "rsa-1", &rs).expect("RS256 verifies");

        let es = issuer.sign(&TokenSpec::es256(claims.clone()));
        let (header, payload, _, signature) = parts(&es);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "ec-1");
        assert_eq!(payload, claims);
        assert_eq!(signature.len(), 64, "fixed r||s form");
        verify_with(&jwks, "ec-1", &es).expect("ES256 verifies");

        // Cross-checks: the wrong key does not verify, nor does a tampered payload.
        assert!(verify_with(&jwks, "ec-1", &rs).is_err());
        assert!(verify_with(&jwks, "rsa-1", &es).is_err());
        let mut tampered = claims.clone();
        tampered["repository"] = json!("evil/repo");
        let other = issuer.token(tampered);
        let forged = format!(
            "{}.{}.{}",
            rs.split('.').next().expect("header"),
            other.split('.').nth(1).expect("payload"),
            rs.split('.').nth(2).expect("signature")
        );
        assert!(verify_with(&jwks, "rsa-1", &forged).is_err());

        // Extra header fields are added; a kid the JWKS lacks still signs with the RSA key.
        let mut spec = TokenSpec::new("RS256", Some("no-such-kid"), claims);
        spec.extra_header.insert("x5t".into(), json!("thumbprint"));
        let odd = issuer.sign(&spec);
        let (header, _, _, _) = parts(&odd);
        assert_eq!(header["kid"], "no-such-kid");
        assert_eq!(header["x5t"], "thumbprint");
        verify_with(&jwks, "rsa-1", &odd).expect("unknown kid signs with rsa-1");
    }

    #[test]
    fn broken_tokens_are_broken_in_the_intended_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = Issuer::start(dir.path());
        let claims = issuer.gitlab_claims("pypi", "my-group/my-project", ".gitlab-ci.yml");

        let none = issuer.sign(&TokenSpec::new("none", None, claims.clone()));
        assert!(none.ends_with('.'), "{none}");
        let (header, payload, _, signature) = parts(&none);
        assert_eq!(header["alg"], "none");
        assert!(header.get("kid").is_none());
        assert_eq!(payload, claims);
        assert!(signature.is_empty());

        // HS256 keyed with the PEM of the RSA public key: the PEM is the SPKI wrapping exactly the
        // served n and e, and the MAC checks out with it.
        let jwks = issuer.jwks();
        let rsa = jwk(&jwks, "rsa-1");
        let pkcs1 = pkcs1_from_jwk(&b64d(str_field(rsa, "n")), &b64d(str_field(rsa, "e")));
        let pem = issuer.signer().rsa_public_pem("rsa-1").expect("PEM of rsa-1");
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n") && pem.ends_with("-----END PUBLIC KEY-----\n"));
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(pem.lines().all(|l| l.len() <= 64));
        let spki = base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("PEM base64");
        assert!(spki.ends_with(&pkcs1), "the SPKI wraps the served key");
        let hs = issuer.sign(&TokenSpec::new("HS256", Some("rsa-1"), claims.clone()));
        let (header, _, input, signature) = parts(&hs);
        assert_eq!(header["alg"], "HS256");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, pem.as_bytes());
        aws_lc_rs::hmac::verify(&key, input.as_bytes(), &signature).expect("HMAC with the PEM as secret");
    }

    #[test]
    fn rotated_keys_appear_in_the_jwks_and_removed_ones_leave_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = Issuer::start(dir.path());
        let kid = issuer.rotate_in_key();
        assert!(kid != "rsa-1" && kid != "ec-1", "{kid}");
        let jwks = get_json(&issuer, "/jwks");
        assert_eq!(jwks["keys"].as_array().expect("keys").len(), 3, "{jwks}");
        let key = jwk(&jwks, &kid);
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["alg"], "RS256");
        assert_ne!(key["n"], jwk(&jwks, "rsa-1")["n"]);
        let token = issuer.sign(&TokenSpec::new("RS256", Some(&kid), json!({"sub": "x"})));
        verify_with(&jwks, &kid, &token).expect("signed with the new key");
        assert!(verify_with(&jwks, "rsa-1", &token).is_err());
        let second = issuer.rotate_in_key();
        assert_ne!(second, kid, "fresh kids");

        assert!(issuer.remove_key("rsa-1"));
        assert!(!issuer.remove_key("nope"));
        let jwks_after = get_json(&issuer, "/jwks");
        let kids: Vec<&str> = jwks_after["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| str_field(k, "kid"))
            .collect();
        assert_eq!(kids, vec![kid.as_str(), second.as_str(), "ec-1"]);
        // A removed key still signs (a token from a key the issuer stopped publishing).
        let stale = issuer.token(json!({"sub": "x"}));
        verify_with(&jwks, "rsa-1", &stale).expect("rsa-1 still signs");
    }

    #[test]
    fn an_unreachable_issuer_closes_connections_without_answering() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = Issuer::start(dir.path());
        get_json(&issuer, "/jwks");
        issuer.set_unreachable(true);
        for path in ["/jwks", "/.well-known/openid-configuration"] {
            let error = https_get(&issuer, "127.0.0.1", path).expect_err("no answer");
            // The handshake completed (so the request was sent and counted), then the
            // connection ended without a response.
            assert!(
                matches!(
                    error.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ),
                "{path}: {error:?}"
            );
        }
        assert_eq!(issuer.requests("/jwks"), 2, "attempts are still counted");
        issuer.set_unreachable(false);
        get_json(&issuer, "/jwks");
        assert_eq!(issuer.requests("/jwks"), 3);
    }

    #[test]
    fn dropping_the_issuer_stops_its_listener() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = Issuer::start(dir.path());
        let addr = issuer.addr();
        drop(issuer);
        assert!(
            portcullis_e2e::wait_until(Duration::from_secs(5), || TcpStream::connect_timeout(
                &addr,
                Duration::from_millis(200)
            )
            .is_err()),
            "the issuer still accepts connections after drop"
        );
    }

    #[test]
    fn ci_endpoint_issues_tokens_for_the_requested_audience() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = Issuer::start(dir.path());
        let template = issuer.github_claims("template-aud", "octo-org/octo-repo", "65", "release.yml");
        let endpoint = CiTokenEndpoint::start(&issuer, template.clone());
        let url = endpoint.request_url();
        assert!(
            url.starts_with("http://127.0.0.1:") && url.contains("/token?api-version=2.0"),
            "{url}"
        );
        let target = |aud: &str| format!("/token?api-version=2.0&audience={aud}");
        let auth = format!("bearer {}", endpoint.request_token());

        let first = http::request(
            endpoint.addr(),
            "GET",
            &target("npm%3Aregistry.npmjs.org"),
            &[("Authorization", &auth)],
            b"",
        );
        assert_eq!(first.status, 200, "{}", first.text());
        let first_token = first.json()["value"].as_str().expect("value").to_owned();
        // Scheme is case-insensitive.
        let upper = format!("Bearer {}", endpoint.request_token());
        let second = http::request(
            endpoint.addr(),
            "GET",
            &target("npm%3Aregistry.npmjs.org"),
            &[("Authorization", &upper)],
            b"",
        );
        assert_eq!(second.status, 200, "{}", second.text());
        let second_token = second.json()["value"].as_str().expect("value").to_owned();
        assert_eq!(endpoint.issued(), vec![first_token.clone(), second_token.clone()]);

        let jwks = issuer.jwks();
        let (_, a, _, _) = parts(&first_token);
        let (_, b, _, _) = parts(&second_token);
        for (token, claims) in [(&first_token, &a), (&second_token, &b)] {
            verify_with(&jwks, "rsa-1", token).expect("endpoint tokens verify");
            assert_eq!(claims["aud"], "npm:registry.npmjs.org");
            assert_eq!(claims["repository"], "octo-org/octo-repo");
            assert_eq!(claims["iss"], issuer.url());
            let iat = claims["iat"].as_u64().expect("iat");
            assert!(iat.abs_diff(now()) <= 60);
            assert!(claims["nbf"].as_u64().expect("nbf") <= iat);
            assert!(claims["exp"].as_u64().expect("exp") > now());
        }
        assert_ne!(a["jti"], b["jti"], "fresh jti each time");
        assert_ne!(a["jti"], template["jti"]);

        // Template changes show; without an audience the template's stays.
        let mut changed = template.clone();
        changed["repository"] = json!("other/repo");
        endpoint.set_claims(changed);
        let third = http::request(
            endpoint.addr(),
            "GET",
            "/token?api-version=2.0",
            &[("Authorization", &auth)],
            b"",
        );
        assert_eq!(third.status, 200);
        let (_, c, _, _) = parts(third.json()["value"].as_str().expect("value"));
        assert_eq!(c["repository"], "other/repo");
        assert_eq!(c["aud"], "template-aud");

        // No, wrong, or non-bearer request token: 403, nothing issued.
        let wrong = format!("bearer {}x", endpoint.request_token());
        let basic = format!("Basic {}", endpoint.request_token());
        for headers in [
            vec![],
            vec![("Authorization", wrong.as_str())],
            vec![("Authorization", basic.as_str())],
        ] {
            let response = http::request(endpoint.addr(), "GET", &target("x"), &headers, b"");
            assert_eq!(response.status, 403, "{headers:?}: {}", response.text());
        }
        assert_eq!(endpoint.issued().len(), 3);
        assert_eq!(http::get(endpoint.addr(), "/other").status, 404);
    }

    #[test]
    fn claims_helpers_look_like_github_and_gitlab_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = Issuer::start(dir.path());
        let gh = issuer.github_claims("pypi", "octo-org/octo-repo", "65", "release.yml");
        assert_eq!(gh["sub"], "repo:octo-org/octo-repo:ref:refs/heads/main");
        assert_eq!(gh["repository_owner"], "octo-org");
        assert_eq!(gh["repository_owner_id"], "65");
        assert_eq!(
            gh["workflow_ref"],
            "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main"
        );
        assert_eq!(gh["job_workflow_ref"], gh["workflow_ref"]);
        assert_eq!(gh["iss"], issuer.url());
        assert_eq!(gh["sha"].as_str().expect("sha").len(), 40);
        let iat = gh["iat"].as_u64().expect("iat");
        assert_eq!(gh["nbf"].as_u64(), Some(iat - 5));
        assert_eq!(gh["exp"].as_u64(), Some(iat + 300));
        for name in [
            "jti",
            "aud",
            "ref",
            "repository_id",
            "repository_visibility",
            "actor",
            "actor_id",
            "run_id",
            "run_number",
            "run_attempt",
            "runner_environment",
            "workflow",
            "head_ref",
            "base_ref",
            "event_name",
            "ref_type",
            "workflow_sha",
            "job_workflow_sha",
        ] {
            assert!(gh[name].is_string(), "{name} in {gh}");
        }
        let again = issuer.github_claims("pypi", "octo-org/octo-repo", "65", "release.yml");
        assert_ne!(gh["jti"], again["jti"]);

        let gl = issuer.gitlab_claims("pypi", "my-group/sub/my-project", "ci/release.yml");
        let host = issuer.url().trim_start_matches("https://").to_owned();
        assert_eq!(
            gl["sub"],
            "project_path:my-group/sub/my-project:ref_type:branch:ref:main"
        );
        assert_eq!(gl["namespace_path"], "my-group/sub");
        assert_eq!(gl["ref"], "main");
        assert_eq!(gl["ref_path"], "refs/heads/main");
        assert_eq!(
            gl["ci_config_ref_uri"],
            format!("{host}/my-group/sub/my-project//ci/release.yml@refs/heads/main")
        );
        assert_eq!(gl["runner_environment"], "gitlab-hosted");
        assert_eq!(gl["iss"], issuer.url());
    }

    #[test]
    fn github_actions_environment_points_at_the_endpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = Issuer::start(dir.path());
        let endpoint = CiTokenEndpoint::start(
            &issuer,
            issuer.github_claims("x", "octo-org/octo-repo", "65", "release.yml"),
        );
        let env = env_for_github_actions(&endpoint);
        let var = |name: &str| {
            env.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{name} in {env:?}"))
        };
        assert_eq!(var("GITHUB_ACTIONS"), "true");
        assert_eq!(var("ACTIONS_ID_TOKEN_REQUEST_URL"), endpoint.request_url());
        assert_eq!(var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"), endpoint.request_token());
        assert_eq!(var("GITHUB_REPOSITORY"), "octo-org/octo-repo");
        assert_eq!(var("GITHUB_REPOSITORY_OWNER"), "octo-org");
        assert_eq!(
            var("GITHUB_WORKFLOW_REF"),
            "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main"
        );
        assert_eq!(var("GITHUB_SERVER_URL"), "https://github.com");
        assert_eq!(var("GITHUB_EVENT_NAME"), "push");
        assert_eq!(var("GITHUB_REF"), "refs/heads/main");
        assert_eq!(var("GITHUB_REF_NAME"), "main");
        assert_eq!(var("RUNNER_ENVIRONMENT"), "github-hosted");
        assert!(var("GITHUB_RUN_ID").parse::<u64>().is_ok());
    }

    /// Runs `python -c <code>` with `env` added, bounded; returns its output (stdout and stderr).
    fn run_python(python: &Path, code: &str, env: &[(String, String)], log: &Path) -> (bool, String) {
        let mut command = std::process::Command::new(python);
        command.arg("-c").arg(code);
        for name in ["GITLAB_CI", "BUILDKITE", "CIRCLECI", "GOOGLE_SERVICE_ACCOUNT_NAME"] {
            command.env_remove(name);
        }
        command.envs(env.iter().map(|(n, v)| (n, v)));
        let mut child = Managed::spawn("python id", command, log);
        let status = child
            .wait_exit(Duration::from_secs(60))
            .expect("python exits within 60 s");
        (status.success(), child.log())
    }

    #[test]
    fn pypa_id_detects_the_github_credential_from_the_endpoint() {
        let tools = portcullis_e2e::tools::tools();
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = Issuer::start(&dir.path().join("issuer"));
        let endpoint = CiTokenEndpoint::start(
            &issuer,
            issuer.github_claims("placeholder", "octo-org/octo-repo", "65", "release.yml"),
        );
        let env = env_for_github_actions(&endpoint);
        let (ok, output) = run_python(
            &tools.python(),
            "import id; print(id.detect_credential(audience='testaud'))",
            &env,
            &dir.path().join("id.log"),
        );
        assert!(ok, "python failed:\n{output}");
        let issued = endpoint.issued();
        assert_eq!(issued.len(), 1, "one token request:\n{output}");
        assert!(
            output.lines().any(|line| line.trim() == issued[0]),
            "id printed the endpoint's token:\n{output}"
        );
        let (_, claims, _, _) = parts(&issued[0]);
        assert_eq!(claims["aud"], "testaud");
        verify_with(&issuer.jwks(), "rsa-1", &issued[0]).expect("the token id got verifies");

        // With the wrong request token, id reports the endpoint's refusal.
        let broken: Vec<(String, String)> = env
            .iter()
            .map(|(n, v)| match n.as_str() {
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN" => (n.clone(), "wrong".to_owned()),
                _ => (n.clone(), v.clone()),
            })
            .collect();
        let (ok, output) = run_python(
            &tools.python(),
            "import id; print(id.detect_credential(audience='testaud'))",
            &broken,
            &dir.path().join("id-wrong.log"),
        );
        assert!(!ok, "id must fail with a wrong request token:\n{output}");
        assert!(output.contains("403"), "{output}");
        assert_eq!(endpoint.issued().len(), 1);
    }
}
