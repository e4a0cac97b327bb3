//! Attacks on the gateway's tokens and credentials, end to end: the real `portcullis` binary,
//! local OIDC issuers over TLS (some serving crafted discovery documents and key sets) and the
//! recording backend. Each case asserts what the client gets (status and code), that no upload
//! token was minted and nothing reached the backend, and what the exchange / decision log says.
//! What the other suites already cover (trusted_publishing_pypi.rs, the unit tests in
//! gateway/src/auth) is listed in docs/hardening/tokens.md and not repeated here.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use portcullis_e2e::gateway::{admin_token_config, trusted_publishing_config, Gateway, RegistrySpec};
use portcullis_e2e::http::{self, Form};
use portcullis_e2e::oidc::{Canned, Issuer, TokenSpec};
use portcullis_e2e::sink::{Ending, Sink};
use serde_json::{json, Value};

const AUDIENCE: &str = "portcullis-test";
const REPO: &str = "acme/widgets";
const OWNER_ID: &str = "1234";
const BACKEND_USER: &str = "backend-user";

/// Unix seconds by the system clock.
fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// One gateway over a recording backend, trusting `issuers` (named after their folder).
struct Setup {
    _dir: tempfile::TempDir,
    work: PathBuf,
    sink: Sink,
    gateway: Gateway,
    /// The backend password the gateway swaps in for upload tokens (unique per setup).
    secret: String,
}

/// Options for [`start`].
#[derive(Default)]
struct Options {
    /// Extra registries (besides `pypi` at `/`), as (name, path prefix, upstream).
    registries: Vec<(String, String, std::net::SocketAddr)>,
    /// `[testing] adjustable_clock` and the admin token.
    clock: bool,
    /// Do not wait for `/readyz` (a registry whose backend is down).
    no_ready: bool,
    /// Trusted publishers only on `pypi`, none on the extra registries.
    publishers_only_on_pypi: bool,
}

/// The rules: each issuer (`name`, issuer) is a GitHub-kind issuer with a pending publisher of
/// `REPO` for `demo-pkg` on every registry.
fn rules_for(issuers: &[(&str, &Issuer)], registries: &[&str]) -> String {
    let mut text = String::new();
    for (name, issuer) in issuers {
        text.push_str(&format!(
            "[issuers.{name}]\nurl = \"{}\"\nkind = \"github\"\nalgorithms = [\"RS256\", \"ES256\"]\n\n",
            issuer.url()
        ));
    }
    for registry in registries {
        text.push_str(&format!("[registries.{registry}]\naudience = \"{AUDIENCE}\"\n\n"));
        for (name, _) in issuers {
            text.push_str(&format!(
                "[[registries.{registry}.publishers]]\nid = \"{registry}-{name}\"\nissuer = \"{name}\"\nprojects = [\"demo-pkg\"]\n\
                 repository = \"{REPO}\"\nrepository_owner_id = \"{OWNER_ID}\"\nworkflow = \"release.yml\"\npending = true\n\n"
            ));
        }
    }
    text
}

fn start(issuers: &[(&str, &Issuer)], options: Options) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let sink = Sink::start();
    let gw_dir = work.join("gateway");
    std::fs::create_dir_all(&gw_dir).expect("gateway dir");
    let secret = format!("backend-secret-{}", uuid::Uuid::new_v4().simple());
    let password_file = gw_dir.join("backend-password");
    std::fs::write(&password_file, format!("{secret}\n")).expect("password file");
    // One CA file for every issuer (each has its own test CA).
    let cas = work.join("issuer-cas.pem");
    let all: String = issuers
        .iter()
        .map(|(_, i)| std::fs::read_to_string(i.ca_file()).expect("issuer CA"))
        .collect();
    std::fs::write(&cas, all).expect("CA file");
    let registry_extra = format!(
        "client_credentials = \"refuse\"\nbackend_credentials = {{ kind = \"basic\", username = \"{BACKEND_USER}\", password_file = {:?} }}\n",
        password_file.display().to_string()
    );
    let mut builder = Gateway::builder().registry(RegistrySpec {
        extra: registry_extra.clone(),
        ..RegistrySpec::new("pypi", "pypi", sink.addr())
    });
    let mut names = vec!["pypi"];
    for (name, prefix, upstream) in &options.registries {
        builder = builder.registry(RegistrySpec {
            extra: format!("path_prefix = \"{prefix}\"\n{registry_extra}"),
            ..RegistrySpec::new(name, "pypi", *upstream)
        });
        names.push(name);
    }
    let mut config = format!(
        "{}jwks_refresh_cooldown = \"1s\"\n",
        trusted_publishing_config(&gw_dir.join("keys"), &cas),
    );
    if options.clock {
        config.push_str("[testing]\nadjustable_clock = true\n");
        builder = builder.admin_config(&admin_token_config(&gw_dir));
    }
    if options.no_ready {
        builder = builder.without_waiting_for_ready();
    }
    let gateway = builder
        .rules(&rules_for(
            issuers,
            if options.publishers_only_on_pypi {
                &names[..1]
            } else {
                &names
            },
        ))
        .config(&config)
        .start(&gw_dir);
    Setup {
        _dir: dir,
        work,
        sink,
        gateway,
        secret,
    }
}

/// GitHub Actions claims from `issuer` for the configured publisher, with a fresh `jti`.
fn claims(issuer: &Issuer) -> Value {
    issuer.github_claims(AUDIENCE, REPO, OWNER_ID, "release.yml")
}

fn mint(gateway: &Gateway, token: &str) -> http::Response {
    http::mint_pypi_token(gateway.addr(), token)
}

/// The Warehouse-style error code of a refused mint.
fn mint_code(response: &http::Response) -> String {
    response.warehouse_code()
}

fn mint_description(response: &http::Response) -> String {
    response.json()["errors"][0]["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The minted upload token of a successful mint.
fn minted(response: &http::Response) -> String {
    assert_eq!(response.status, 200, "mint: {}", response.text());
    let token = response.json()["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("pcul_k1."), "{token}");
    token
}

/// The `code` the exchange log line of this response's request carries (`minted` when it
/// minted), waiting a little for the line.
fn exchange_logged(gateway: &Gateway, response: &http::Response) -> String {
    let id = response.header("x-request-id").expect("x-request-id").to_owned();
    let mut found = String::new();
    portcullis_e2e::wait_until(Duration::from_secs(5), || {
        found = gateway
            .log_events()
            .into_iter()
            .find(|e| e["message"] == "trusted publishing exchange" && e["request_id"] == id.as_str())
            .map(|e| {
                if e["outcome"] == "minted" {
                    "minted".to_owned()
                } else {
                    e["code"].as_str().unwrap_or("?").to_owned()
                }
            })
            .unwrap_or_default();
        !found.is_empty()
    });
    found
}

/// Asserts a mint was refused with status 422, this Warehouse code and this log code.
fn assert_refused(gateway: &Gateway, what: &str, response: &http::Response, code: &str, logged: &str) {
    assert_eq!(response.status, 422, "{what}: {}", response.text());
    assert_eq!(mint_code(response), code, "{what}: {}", response.text());
    assert!(response.json().get("token").is_none(), "{what}: a token was minted");
    assert_eq!(
        exchange_logged(gateway, response),
        logged,
        "{what}: {}",
        response.text()
    );
}

/// How many exchanges minted a token, per the metrics.
fn minted_count(gateway: &Gateway, issuer: &str) -> f64 {
    gateway.metric(&format!(
        "portcullis_oidc_exchanges_total{{issuer=\"{issuer}\",outcome=\"minted\",protocol=\"pypi\",registry=\"pypi\"}}"
    ))
}

fn upload_with(
    gateway: &Gateway,
    path: &str,
    authorization: Option<&str>,
    name: &str,
    filename: &str,
) -> http::Response {
    let form = Form::pypi_upload(name, "1.0", filename, b"wheel bytes");
    let content_type = form.content_type();
    let mut headers = vec![("content-type", content_type.as_str())];
    if let Some(auth) = authorization {
        headers.push(("authorization", auth));
    }
    http::request(gateway.addr(), "POST", path, &headers, &form.body)
}

fn upload(gateway: &Gateway, token: &str, name: &str) -> http::Response {
    let filename = format!("{}-1.0-py3-none-any.whl", name.replace('-', "_"));
    upload_with(
        gateway,
        "/",
        Some(&http::basic_auth("__token__", token)),
        name,
        &filename,
    )
}

/// Uploads (POSTs) the backend saw in full.
fn uploads_seen(sink: &Sink) -> usize {
    sink.seen()
        .iter()
        .filter(|r| r.method == "POST" && r.ending == Ending::Complete)
        .count()
}

/// Tries `attempt` (given the system second it starts in) until it starts and ends within one
/// second, so claims made relative to "now" meet the gateway's clock exactly; at most 6 tries.
fn within_one_second(mut attempt: impl FnMut(i64) -> http::Response) -> http::Response {
    for _ in 0..6 {
        let before = now();
        let response = attempt(before);
        if now() == before {
            return response;
        }
    }
    panic!("could not fit a request within one clock second in 6 attempts");
}

fn b64json(bytes: &[u8]) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(bytes).expect("base64url")).expect("JSON")
}

#[test]
fn key_confusion_across_two_issuers_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Issuer::start(&dir.path().join("a"));
    let b = Issuer::start(&dir.path().join("b"));
    let s = start(&[("a", &a), ("b", &b)], Options::default());
    // A key only A publishes.
    let a_only = a.rotate_in_key();
    let with_iss = |issuer: &Issuer| {
        let mut c = claims(issuer);
        c["iss"] = json!(issuer.url());
        c
    };
    let run = |phase: &str| {
        let cases: Vec<(String, String, &str)> = vec![
            (
                "A's RSA key, iss = B".into(),
                a.sign(&TokenSpec::rs256(with_iss(&b))),
                "signature_invalid",
            ),
            (
                "B's RSA key, iss = A".into(),
                b.sign(&TokenSpec::rs256(with_iss(&a))),
                "signature_invalid",
            ),
            (
                "A's EC key, iss = B".into(),
                a.sign(&TokenSpec::es256(with_iss(&b))),
                "signature_invalid",
            ),
            (
                "iss = B with a kid only A's key set has".into(),
                a.sign(&TokenSpec::new("RS256", Some(&a_only), with_iss(&b))),
                "kid_unknown",
            ),
        ];
        for (what, token, logged) in &cases {
            let a_fetches = a.requests("/jwks");
            let response = mint(&s.gateway, token);
            assert_refused(
                &s.gateway,
                &format!("{phase}: {what}"),
                &response,
                "invalid-token",
                logged,
            );
            if what.contains("iss = B") {
                assert_eq!(
                    a.requests("/jwks"),
                    a_fetches,
                    "{phase}: {what}: a token naming B never makes the gateway read A's keys"
                );
            }
        }
    };
    // Nothing cached yet: each issuer's keys are fetched for the first time by a forged token.
    run("fresh");
    // Each issuer's own tokens work (both key sets now cached, A's with the rotated key).
    let from_a = mint(&s.gateway, &a.sign(&TokenSpec::new("RS256", Some(&a_only), claims(&a))));
    minted(&from_a);
    minted(&mint(&s.gateway, &b.token(claims(&b))));
    // The same forgeries against cached key sets.
    std::thread::sleep(Duration::from_millis(1100)); // past the refresh cooldown
    run("cached");
    assert!(
        b.requests("/jwks") <= 3,
        "unknown kids refresh B's keys at a bounded rate: {}",
        b.requests("/jwks")
    );
    assert_eq!(minted_count(&s.gateway, "a"), 1.0);
    assert_eq!(minted_count(&s.gateway, "b"), 1.0);
    assert!(s.sink.seen().is_empty(), "{:?}", s.sink.seen());
}

#[test]
fn hostile_key_sets_are_refused_whole_and_other_issuers_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let make = |name: &str| Issuer::start(&dir.path().join(name));
    let (good, dup_first, dup_second, huge, huge_stream, many, nested) = (
        make("good"),
        make("dup1"),
        make("dup2"),
        make("huge"),
        make("huge-stream"),
        make("many"),
        make("nested"),
    );
    let foreign = good.jwks()["keys"][0].clone(); // kid "rsa-1", another key
    assert_eq!(foreign["kid"], "rsa-1");
    // Duplicate kid: the signer's key and a foreign one under the same kid, in both orders.
    for (issuer, signer_first) in [(&dup_first, true), (&dup_second, false)] {
        let own = issuer.jwks()["keys"].as_array().expect("keys").clone();
        let mut keys = Vec::new();
        if signer_first {
            keys.extend(own.iter().cloned());
            keys.push(foreign.clone());
        } else {
            keys.push(foreign.clone());
            keys.extend(own.iter().cloned());
        }
        issuer.serve_canned("/jwks", Canned::json(&json!({ "keys": keys })));
    }
    // Thousands of keys, megabytes: with Content-Length, and without (read until close).
    let jwk = huge.jwks()["keys"][0].clone();
    let thousands: Vec<Value> = (0..6000)
        .map(|i| {
            let mut k = jwk.clone();
            k["kid"] = json!(format!("k{i}"));
            k
        })
        .chain(std::iter::once(jwk.clone()))
        .collect();
    let body = serde_json::to_vec(&json!({ "keys": thousands })).expect("json");
    assert!(body.len() > 2_000_000, "{}", body.len());
    huge.serve_canned("/jwks", Canned::bytes(body.clone(), true));
    // 64 MiB without Content-Length: the genuine keys first, then padding. A gateway that
    // buffered it would show in its memory.
    let mut streamed = serde_json::to_vec(&json!({ "keys": huge_stream.jwks()["keys"] })).expect("json");
    streamed.pop(); // the closing brace
    streamed.extend_from_slice(b",\"padding\":\"");
    streamed.resize(streamed.len() + (64 << 20), b'x');
    streamed.extend_from_slice(b"\"}");
    huge_stream.serve_canned("/jwks", Canned::bytes(streamed, false));
    // 101 keys: small enough in bytes, over the key count.
    let mut hundred: Vec<Value> = many.jwks()["keys"].as_array().expect("keys").clone();
    let many_jwk = hundred[0].clone();
    for i in 0..100 {
        let mut k = many_jwk.clone();
        k["kid"] = json!(format!("extra-{i}"));
        hundred.push(k);
    }
    many.serve_canned("/jwks", Canned::json(&json!({ "keys": hundred })));
    // Deeply nested JSON (under the byte limit).
    let depth = 50_000;
    let mut deep = b"{\"keys\":".to_vec();
    deep.extend(std::iter::repeat_n(b'[', depth));
    deep.extend(std::iter::repeat_n(b']', depth));
    deep.push(b'}');
    nested.serve_canned("/jwks", Canned::bytes(deep, true));

    let issuers = [
        ("good", &good),
        ("dup1", &dup_first),
        ("dup2", &dup_second),
        ("huge", &huge),
        ("hugestream", &huge_stream),
        ("many", &many),
        ("nested", &nested),
    ];
    let mut s = start(&issuers, Options::default());
    // Warm up (the key-set HTTP client, TLS, the exchange path) before measuring memory.
    minted(&mint(&s.gateway, &good.token(claims(&good))));
    let peak_before = s.gateway.process().peak_rss_kib().expect("VmHWM");

    let cases: [(&str, &Issuer, &str, &str); 6] = [
        (
            "duplicate kid, signer's key first",
            &dup_first,
            "jwks_invalid",
            "more than one key with id",
        ),
        (
            "duplicate kid, foreign key first",
            &dup_second,
            "jwks_invalid",
            "more than one key with id",
        ),
        (
            "6000 keys, 2+ MB, Content-Length",
            &huge,
            "too_large",
            "over the 262144-byte limit",
        ),
        (
            "64 MiB, read until close",
            &huge_stream,
            "too_large",
            "over the 262144-byte limit",
        ),
        ("102 keys", &many, "jwks_invalid", "keys, over the limit of 100"),
        ("nesting 50000 deep", &nested, "jwks_invalid", "recursion limit"),
    ];
    for (what, issuer, fetch_code, logged_reason) in cases {
        let started = Instant::now();
        let response = mint(&s.gateway, &issuer.token(claims(issuer)));
        let took = started.elapsed();
        assert_refused(&s.gateway, what, &response, "issuer-unreachable", "issuer_unreachable");
        assert!(
            mint_description(&response).contains(fetch_code),
            "{what}: {}",
            response.text()
        );
        assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
        let log = s.gateway.log();
        assert!(
            log.lines()
                .any(|l| l.contains("fetching the issuer's key set failed") && l.contains(logged_reason)),
            "{what}: no key-set failure naming {logged_reason:?} in the log:\n{log}"
        );
        // Other issuers keep working meanwhile.
        minted(&mint(&s.gateway, &good.token(claims(&good))));
    }
    // Each hostile issuer was fetched once per exchange at most (no retry storm), none was
    // cached, and the gateway's memory did not grow by the size of what was refused.
    for (name, issuer) in &issuers[1..] {
        assert_eq!(issuer.requests("/jwks"), 1, "{name}");
    }
    let peak_after = s.gateway.process().peak_rss_kib().expect("VmHWM");
    let rss_after = s.gateway.process().rss_kib().expect("VmRSS");
    eprintln!(
        "gateway peak RSS: {peak_before} KiB before, {peak_after} KiB after the hostile key sets (current {rss_after} KiB)"
    );
    assert!(
        peak_after < peak_before + 40 * 1024,
        "peak RSS grew from {peak_before} KiB to {peak_after} KiB refusing the hostile key sets"
    );
    assert_eq!(
        s.gateway
            .metric("portcullis_oidc_jwks_fetches_total{outcome=\"failed\"}"),
        6.0
    );
    for (name, _) in &issuers[1..] {
        assert_eq!(minted_count(&s.gateway, name), 0.0, "{name}");
    }
    assert!(s.sink.seen().is_empty(), "{:?}", s.sink.seen());
}

#[test]
fn discovery_documents_pointing_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let make = |name: &str| Issuer::start(&dir.path().join(name));
    let decoy = make("decoy");
    let (elsewhere, mirrored, renamed, slashed, plain, redirect_discovery, redirect_jwks) = (
        make("elsewhere"),
        make("mirrored"),
        make("renamed"),
        make("slashed"),
        make("plain"),
        make("redirect-discovery"),
        make("redirect-jwks"),
    );
    let http_target = Sink::start();
    let discovery = |iss: &str, jwks_uri: &str| {
        Canned::json(&json!({
            "issuer": iss,
            "jwks_uri": jwks_uri,
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }))
    };
    const DISCOVERY: &str = "/.well-known/openid-configuration";
    // jwks_uri on another host and port, serving other keys under the same kids.
    decoy.serve_canned("/elsewhere-jwks", Canned::json(&decoy.jwks()));
    elsewhere.serve_canned(
        DISCOVERY,
        discovery(&elsewhere.url(), &format!("{}/elsewhere-jwks", decoy.url())),
    );
    // jwks_uri on another host serving the issuer's own keys (as Google's does).
    decoy.serve_canned("/mirror-jwks", Canned::json(&mirrored.jwks()));
    mirrored.serve_canned(
        DISCOVERY,
        discovery(&mirrored.url(), &format!("{}/mirror-jwks", decoy.url())),
    );
    // An `issuer` that is not the configured one (another issuer; a trailing slash).
    renamed.serve_canned(DISCOVERY, discovery(&decoy.url(), &format!("{}/jwks", renamed.url())));
    slashed.serve_canned(
        DISCOVERY,
        discovery(&format!("{}/", slashed.url()), &format!("{}/jwks", slashed.url())),
    );
    // Plain-HTTP jwks_uri.
    plain.serve_canned(
        DISCOVERY,
        discovery(&plain.url(), &format!("http://{}/jwks", http_target.addr())),
    );
    // Redirects: the discovery document, then the key set.
    redirect_discovery.serve_canned(
        DISCOVERY,
        Canned::redirect(302, &format!("{}/redirected-discovery", decoy.url())),
    );
    decoy.serve_canned(
        "/redirected-discovery",
        discovery(&redirect_discovery.url(), &format!("{}/jwks", redirect_discovery.url())),
    );
    redirect_jwks.serve_canned(
        "/jwks",
        Canned::redirect(301, &format!("{}/redirected-jwks", decoy.url())),
    );
    decoy.serve_canned("/redirected-jwks", Canned::json(&redirect_jwks.jwks()));

    let issuers = [
        ("decoy", &decoy),
        ("elsewhere", &elsewhere),
        ("mirrored", &mirrored),
        ("renamed", &renamed),
        ("slashed", &slashed),
        ("plain", &plain),
        ("redirectdiscovery", &redirect_discovery),
        ("redirectjwks", &redirect_jwks),
    ];
    let s = start(&issuers, Options::default());

    let refused: [(&str, &Issuer, &str, &str, &str); 6] = [
        (
            "jwks_uri elsewhere, other keys",
            &elsewhere,
            "invalid-token",
            "signature_invalid",
            "",
        ),
        (
            "discovery names another issuer",
            &renamed,
            "issuer-unreachable",
            "issuer_unreachable",
            "discovery_issuer_mismatch",
        ),
        (
            "discovery issuer with a trailing slash",
            &slashed,
            "issuer-unreachable",
            "issuer_unreachable",
            "discovery_issuer_mismatch",
        ),
        (
            "http:// jwks_uri",
            &plain,
            "issuer-unreachable",
            "issuer_unreachable",
            "insecure_url",
        ),
        (
            "discovery redirects",
            &redirect_discovery,
            "issuer-unreachable",
            "issuer_unreachable",
            "http_status",
        ),
        (
            "key set redirects",
            &redirect_jwks,
            "issuer-unreachable",
            "issuer_unreachable",
            "http_status",
        ),
    ];
    for (what, issuer, code, logged, fetch_code) in refused {
        let response = mint(&s.gateway, &issuer.token(claims(issuer)));
        assert_refused(&s.gateway, what, &response, code, logged);
        assert!(
            mint_description(&response).contains(fetch_code),
            "{what}: {}",
            response.text()
        );
    }
    assert_eq!(
        decoy.requests("/elsewhere-jwks"),
        1,
        "the jwks_uri elsewhere was fetched once"
    );
    assert_eq!(
        decoy.requests("/redirected-discovery"),
        0,
        "redirects are never followed"
    );
    assert_eq!(decoy.requests("/redirected-jwks"), 0, "redirects are never followed");
    assert_eq!(
        renamed.requests("/jwks"),
        0,
        "a mismatching discovery stops before the keys"
    );
    assert!(http_target.seen().is_empty(), "nothing is fetched over plain HTTP");
    // By design (OIDC Discovery allows it; Google's keys live on another host): a jwks_uri on
    // another host that the issuer's own discovery document, fetched over verified TLS, names.
    let accepted = mint(&s.gateway, &mirrored.token(claims(&mirrored)));
    minted(&accepted);
    assert_eq!(exchange_logged(&s.gateway, &accepted), "minted");
    assert_eq!(decoy.requests("/mirror-jwks"), 1);
    for (name, _) in &issuers {
        let expected = if *name == "mirrored" { 1.0 } else { 0.0 };
        assert_eq!(minted_count(&s.gateway, name), expected, "{name}");
    }
    assert!(s.sink.seen().is_empty(), "{:?}", s.sink.seen());
}

#[test]
fn clock_skew_at_the_leeway_edges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::start(&dir.path().join("issuer"));
    let s = start(
        &[("gha", &issuer)],
        Options {
            clock: true,
            ..Options::default()
        },
    );
    // (what, edit of the claims given now, accepted?, the log code when refused)
    type Edit = fn(&mut Value, i64);
    let cases: Vec<(&str, Edit, Option<&str>)> = vec![
        ("exp 29 s ago", |c, n| set_times(c, n - 89, None, n - 29), None),
        (
            "exp exactly 30 s ago (at the leeway)",
            |c, n| set_times(c, n - 90, None, n - 30),
            None,
        ),
        (
            "exp 31 s ago",
            |c, n| set_times(c, n - 91, None, n - 31),
            Some("token_expired"),
        ),
        ("nbf in 29 s", |c, n| set_times(c, n, Some(n + 29), n + 300), None),
        (
            "nbf in exactly 30 s",
            |c, n| set_times(c, n, Some(n + 30), n + 300),
            None,
        ),
        (
            "nbf in 31 s",
            |c, n| set_times(c, n, Some(n + 31), n + 300),
            Some("token_not_yet_valid"),
        ),
        ("iat in 29 s", |c, n| set_times(c, n + 29, None, n + 300), None),
        ("iat in exactly 30 s", |c, n| set_times(c, n + 30, None, n + 300), None),
        (
            "iat in 31 s",
            |c, n| set_times(c, n + 31, None, n + 300),
            Some("iat_in_future"),
        ),
    ];
    let mut minted_anywhere = 0;
    for (what, edit, refused) in &cases {
        let response = within_one_second(|n| {
            let mut c = claims(&issuer);
            edit(&mut c, n);
            let response = mint(&s.gateway, &issuer.token(c));
            // An attempt that straddled a second may have minted too; it is retried.
            minted_anywhere += usize::from(response.status == 200);
            response
        });
        match refused {
            None => {
                minted(&response);
            }
            Some(logged) => assert_refused(&s.gateway, what, &response, "invalid-token", logged),
        }
    }
    let accepted = cases.iter().filter(|c| c.2.is_none()).count();
    assert!(minted_anywhere >= accepted);
    assert_eq!(minted_count(&s.gateway, "gha"), minted_anywhere as f64);

    // The gateway decides by its own clock, not the token's: an hour ahead, a fresh token has
    // expired; an hour behind, it was issued in the future.
    s.gateway.set_clock_offset(3600);
    let ahead = mint(&s.gateway, &issuer.token(claims(&issuer)));
    assert_refused(
        &s.gateway,
        "clock an hour ahead",
        &ahead,
        "invalid-token",
        "token_expired",
    );
    s.gateway.set_clock_offset(-3600);
    let behind = mint(&s.gateway, &issuer.token(claims(&issuer)));
    // (Its nbf, five seconds before iat, is checked first.)
    assert_refused(
        &s.gateway,
        "clock an hour behind",
        &behind,
        "invalid-token",
        "token_not_yet_valid",
    );
    s.gateway.set_clock_offset(0);

    // Upload tokens: no leeway at exp (valid until exp - 1), 60 s of skew at iat.
    let token = minted(&mint(&s.gateway, &issuer.token(claims(&issuer))));
    let payload = b64json(token.split('.').nth(1).expect("payload").as_bytes());
    let (iat, exp) = (
        payload["iat"].as_i64().expect("iat"),
        payload["exp"].as_i64().expect("exp"),
    );
    let uploads = [
        ("one second before exp", exp - 1, 200, ""),
        ("at exp", exp, 401, "expired"),
        ("60 s before iat", iat - 60, 200, ""),
        ("61 s before iat", iat - 61, 401, "in the future"),
    ];
    for (what, at, status, hint) in &uploads {
        let response = within_one_second(|n| {
            s.gateway.set_clock_offset(at - n);
            upload(&s.gateway, &token, "demo-pkg")
        });
        assert_eq!(response.status, *status, "{what}: {}", response.text());
        if *status == 401 {
            assert_eq!(response.json()["code"], "upload_token_invalid", "{what}");
            assert!(response.text().contains(hint), "{what}: {}", response.text());
        }
    }
    s.gateway.set_clock_offset(0);
    assert!(uploads_seen(&s.sink) >= 2, "the accepted uploads reached the backend");
    assert_eq!(
        uploads_seen(&s.sink),
        s.sink.seen().iter().filter(|r| r.method == "POST").count(),
        "no refused upload reached the backend"
    );
}

/// Sets `iat`, `nbf` (removed when `None`) and `exp`.
fn set_times(claims: &mut Value, iat: i64, nbf: Option<i64>, exp: i64) {
    claims["iat"] = json!(iat);
    claims["exp"] = json!(exp);
    match nbf {
        Some(nbf) => claims["nbf"] = json!(nbf),
        None => {
            claims.as_object_mut().expect("object").remove("nbf");
        }
    }
}

/// `token` with its payload replaced by `edit` of the decoded payload, signature kept.
fn edit_payload(token: &str, edit: impl Fn(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload = b64json(parts[1].as_bytes());
    edit(&mut payload);
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).expect("json")),
        parts[2]
    )
}

#[test]
fn tampered_and_misused_upload_tokens_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::start(&dir.path().join("issuer"));
    let sink2 = Sink::start();
    // Registry `pypi2` at /two has no trusted publishers: a token from `gha` has no scope there.
    let s = start(
        &[("gha", &issuer)],
        Options {
            registries: vec![("pypi2".into(), "/two".into(), sink2.addr())],
            publishers_only_on_pypi: true,
            ..Options::default()
        },
    );
    let token = minted(&mint(&s.gateway, &issuer.token(claims(&issuer))));
    let second = minted(&mint(&s.gateway, &issuer.token(claims(&issuer))));
    let parts: Vec<&str> = token.split('.').collect();
    let now = now();
    // A key of the same kind under the same id, and under another id.
    let wrong_key_dir = s.work.join("wrong-key");
    portcullis_e2e::gateway::upload_token_config(&wrong_key_dir);
    let payload = b64json(parts[1].as_bytes());
    let projects: Vec<&str> = payload["scopes"][0]["projects"]
        .as_array()
        .expect("projects")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let exp = payload["exp"].as_i64().expect("exp");
    let wrong_key = wrong_key_dir.join("k1.pem");
    let resigned_k1 = portcullis_e2e::upload_token::forge(&wrong_key, "k1", now - 5, exp, "pypi", &projects);
    let resigned_k2 = portcullis_e2e::upload_token::forge(&wrong_key, "k2", now - 5, exp, "pypi", &projects);
    // Same signature bytes, non-canonical base64url (the unused low bits of the last character).
    let signature = parts[2];
    let last = signature.chars().last().expect("signature");
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.find(last).expect("base64url");
    let tweaked = alphabet.as_bytes()[index ^ 1] as char;
    let noncanonical = format!(
        "{}.{}.{}{}",
        parts[0],
        parts[1],
        &signature[..signature.len() - 1],
        tweaked
    );
    let second_parts: Vec<&str> = second.split('.').collect();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "project changed (other-pkg), signature kept",
            edit_payload(&token, |p| p["scopes"][0]["projects"] = json!(["other-pkg"])),
            "signature",
        ),
        (
            "project added, signature kept",
            edit_payload(&token, |p| {
                p["scopes"][0]["projects"] = json!(["demo-pkg", "other-pkg"])
            }),
            "signature",
        ),
        (
            "registry changed, signature kept",
            edit_payload(&token, |p| p["scopes"][0]["registry"] = json!("pypi2")),
            "signature",
        ),
        (
            "expiry extended by a day, signature kept",
            edit_payload(&token, |p| p["exp"] = json!(exp + 86_400)),
            "signature",
        ),
        (
            "one payload character changed",
            {
                let mut payload = parts[1].to_owned().into_bytes();
                let i = payload.len() / 2;
                payload[i] = if payload[i] == b'A' { b'B' } else { b'A' };
                format!(
                    "{}.{}.{}",
                    parts[0],
                    String::from_utf8(payload).expect("ascii"),
                    parts[2]
                )
            },
            "",
        ),
        ("re-signed with another key under id k1", resigned_k1, "signature"),
        ("re-signed with another key under id k2", resigned_k2, "k2"),
        (
            "signature swapped from another token",
            format!("{}.{}.{}", parts[0], parts[1], second_parts[2]),
            "signature",
        ),
        (
            "payload swapped into another token",
            format!("{}.{}.{}", second_parts[0], parts[1], second_parts[2]),
            "signature",
        ),
        (
            "signature truncated by one character",
            token[..token.len() - 1].to_owned(),
            "",
        ),
        (
            "signature truncated to half",
            format!("{}.{}.{}", parts[0], parts[1], &signature[..signature.len() / 2]),
            "",
        ),
        ("signature removed", format!("{}.{}.", parts[0], parts[1]), ""),
        ("signature segment missing", format!("{}.{}", parts[0], parts[1]), ""),
        ("token cut in the payload", token[..parts[0].len() + 20].to_owned(), ""),
        ("non-canonical base64url signature", noncanonical, ""),
        ("padded base64 signature", format!("{token}=="), ""),
        ("extra segment", format!("{token}.AAAA"), ""),
        (
            "key id with a path",
            format!("pcul_../k1.{}.{}", parts[1], parts[2]),
            "",
        ),
        ("over 4 KiB", format!("{token}{}", "A".repeat(5000)), ""),
    ];
    for (what, forged, hint) in &cases {
        let response = upload(&s.gateway, forged, "demo-pkg");
        assert_eq!(response.status, 401, "{what}: {}", response.text());
        assert_eq!(
            response.json()["code"],
            "upload_token_invalid",
            "{what}: {}",
            response.text()
        );
        assert!(response.text().contains(hint), "{what}: {}", response.text());
    }
    // Every client form of the same forged token is recognised and refused alike.
    let forged = &cases[0].1;
    for auth in [
        format!("Bearer {forged}"),
        format!("token {forged}"),
        http::basic_auth("anyone", forged),
    ] {
        let response = upload_with(
            &s.gateway,
            "/",
            Some(&auth),
            "demo-pkg",
            "demo_pkg-1.0-py3-none-any.whl",
        );
        assert_eq!(response.status, 401, "{auth}: {}", response.text());
        assert_eq!(response.json()["code"], "upload_token_invalid");
    }
    // A prefix in another case is not an upload token: refused as a foreign credential.
    let upper = token.replacen("pcul_", "PCUL_", 1);
    let response = upload(&s.gateway, &upper, "demo-pkg");
    assert_eq!(response.status, 401, "{}", response.text());
    assert_eq!(response.json()["code"], "credentials_refused");
    // Valid tokens outside their scope: another project, another registry.
    let response = upload(&s.gateway, &token, "other-pkg");
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(response.json()["code"], "token_scope");
    let response = upload_with(
        &s.gateway,
        "/two/",
        Some(&http::basic_auth("__token__", &token)),
        "demo-pkg",
        "demo_pkg-1.0-py3-none-any.whl",
    );
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(response.json()["code"], "token_scope");
    assert!(response.text().contains("not for registry"), "{}", response.text());

    // Nothing reached either backend; the refusals are counted and logged.
    assert_eq!(uploads_seen(&s.sink), 0, "{:?}", s.sink.seen());
    assert!(sink2.seen().is_empty(), "{:?}", sink2.seen());
    let invalid = s.gateway.metric_reaching(
        "portcullis_upload_token_uses_total{outcome=\"upload_token_invalid\",registry=\"pypi\"}",
        (cases.len() + 3) as f64,
    );
    assert_eq!(invalid, (cases.len() + 3) as f64);
    let logged = s
        .gateway
        .log_events()
        .into_iter()
        .filter(|e| e["code"] == "upload_token_invalid")
        .count();
    assert_eq!(logged, cases.len() + 3, "one log line per refused upload");
    // The genuine token still works afterwards.
    let response = upload(&s.gateway, &token, "demo-pkg");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(uploads_seen(&s.sink), 1);
}

#[test]
fn credentials_in_the_url_are_refused_and_never_forwarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::start(&dir.path().join("issuer"));
    let s = start(&[("gha", &issuer)], Options::default());
    let jwt = issuer.token(claims(&issuer));
    let token = minted(&mint(&s.gateway, &issuer.token(claims(&issuer))));
    let auth = http::basic_auth("__token__", &token);
    let form = Form::pypi_upload("demo-pkg", "1.0", "demo_pkg-1.0-py3-none-any.whl", b"wheel");
    let content_type = form.content_type();
    let url_secret = format!("url-secret-{}", uuid::Uuid::new_v4().simple());
    let host = s.gateway.addr();
    let cases: Vec<(&str, &str, String, bool)> = vec![
        (
            "upload token in ?token=, no header",
            "POST",
            format!("/?token={token}"),
            false,
        ),
        (
            "upload token in ?token=, with header",
            "POST",
            format!("/?token={token}"),
            true,
        ),
        (
            "password in ?password=",
            "POST",
            format!("/?password={url_secret}"),
            true,
        ),
        (
            "upload token as an unnamed query value",
            "POST",
            format!("/?x=1&{token}"),
            true,
        ),
        (
            "api key on a read",
            "GET",
            format!("/simple/demo-pkg/?api_key={url_secret}"),
            false,
        ),
        (
            "access_token on a read, upper case",
            "GET",
            format!("/simple/demo-pkg/?ACCESS_TOKEN={url_secret}"),
            false,
        ),
        (
            "percent-encoded name",
            "GET",
            format!("/simple/demo-pkg/?pass%77ord={url_secret}"),
            false,
        ),
        (
            "OIDC token in the exchange URL",
            "POST",
            format!("/_/oidc/mint-token?token={jwt}"),
            false,
        ),
    ];
    for (what, method, target, with_header) in &cases {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if *with_header {
            headers.push(("authorization", &auth));
        }
        let body: &[u8] = if *method == "POST" && !target.contains("/_/oidc/") {
            headers.push(("content-type", &content_type));
            &form.body
        } else if target.contains("/_/oidc/") {
            headers.push(("content-type", "application/json"));
            b"{}"
        } else {
            b""
        };
        let response = http::request(s.gateway.addr(), method, target, &headers, body);
        assert_eq!(response.status, 400, "{what}: {}", response.text());
        let json: Value = serde_json::from_slice(&response.body).unwrap_or_default();
        assert_eq!(
            json["code"],
            "credentials_in_url",
            "{what}: {:?} {}",
            response.headers,
            response.text()
        );
        let text = format!("{}{:?}{}", response.reason, response.headers, response.text());
        assert!(
            !text.contains(&url_secret) && !text.contains(&token),
            "{what}: echoed: {text}"
        );
    }
    // Userinfo never gets as far as the gateway: pingora's request parser refuses it (in the
    // absolute-form target or in Host) with a bare 400 before any handler runs.
    // (what, request target, Host header)
    let userinfo: [(&str, String, String); 3] = [
        (
            "userinfo in absolute-form",
            format!("http://__token__:{url_secret}@{host}/"),
            host.to_string(),
        ),
        (
            "userinfo in absolute-form, read",
            format!("http://{BACKEND_USER}:{url_secret}@{host}/simple/demo-pkg/"),
            host.to_string(),
        ),
        (
            "userinfo in Host",
            "/simple/demo-pkg/".to_owned(),
            format!("u:{url_secret}@{host}"),
        ),
    ];
    for (what, target, host_header) in &userinfo {
        let mut stream = http::connect(s.gateway.addr());
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: {host_header}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        );
        use std::io::Write as _;
        stream.write_all(head.as_bytes()).expect("write");
        let response = http::read_response(&mut stream).expect("response");
        assert_eq!(response.status, 400, "{what}: {}", response.text());
        assert!(response.body.is_empty(), "{what}: {}", response.text());
    }
    // Ordinary queries still pass, unchanged.
    let plain = http::request(
        s.gateway.addr(),
        "GET",
        "/simple/demo-pkg/?format=json&tokenized=1",
        &[],
        b"",
    );
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(s.sink.seen_at("/simple/demo-pkg/?format=json&tokenized=1").len(), 1);
    // Nothing of the refused requests reached the backend or the log.
    let seen = s.sink.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let log = s.gateway.log();
    assert!(!log.contains(&url_secret), "a URL secret is in the log");
    assert!(!log.contains(&token), "the upload token is in the log");
    assert!(!log.contains(&jwt), "the OIDC token is in the log");
    let refused = s.gateway.metric_reaching(
        "portcullis_refusals_total{code=\"credentials_in_url\",registry=\"none\"}",
        cases.len() as f64,
    );
    assert_eq!(refused, cases.len() as f64);
    // The exchange never ran for the JWT in the URL: it can still be exchanged once.
    minted(&mint(&s.gateway, &jwt));
}

#[test]
fn the_backend_credential_and_tokens_never_leak() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::start(&dir.path().join("issuer"));
    // A backend that is down: a port nobody listens on.
    let down: std::net::SocketAddr = format!("127.0.0.1:{}", portcullis_e2e::free_port())
        .parse()
        .expect("addr");
    let s = start(
        &[("gha", &issuer)],
        Options {
            registries: vec![("pypidown".into(), "/down".into(), down)],
            no_ready: true,
            ..Options::default()
        },
    );
    assert!(
        portcullis_e2e::wait_until(Duration::from_secs(10), || {
            http::get(s.gateway.addr(), "/simple/demo-pkg/").status == 200
        }),
        "the live registry answers"
    );
    let mut responses: Vec<(String, http::Response)> = Vec::new();
    let mut keep = |what: &str, response: http::Response| {
        responses.push((what.to_owned(), response));
    };
    // Exchanges: accepted and refused.
    let jwt = issuer.token(claims(&issuer));
    let exchanged = mint(&s.gateway, &jwt);
    let token = minted(&exchanged);
    let replay = mint(&s.gateway, &jwt);
    assert_eq!(mint_code(&replay), "invalid-reuse-token");
    keep("replayed exchange", replay);
    let bad_sig_jwt = {
        let other = issuer.token(claims(&issuer));
        let p: Vec<&str> = other.split('.').collect();
        format!("{}.{}.{}", p[0], p[1], jwt.split('.').nth(2).expect("sig"))
    };
    let refused_exchange = mint(&s.gateway, &bad_sig_jwt);
    assert_eq!(mint_code(&refused_exchange), "invalid-token");
    keep("refused exchange", refused_exchange);
    // Uploads: accepted, refused four ways, backend down.
    let accepted = upload(&s.gateway, &token, "demo-pkg");
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    keep("accepted upload", accepted);
    let scope = upload(&s.gateway, &token, "other-pkg");
    assert_eq!(scope.json()["code"], "token_scope");
    keep("token_scope", scope);
    let wrong_password = upload_with(
        &s.gateway,
        "/",
        Some(&http::basic_auth(BACKEND_USER, "not-the-password")),
        "demo-pkg",
        "demo_pkg-1.0-py3-none-any.whl",
    );
    assert_eq!(wrong_password.json()["code"], "credentials_refused");
    keep("credentials_refused", wrong_password);
    let anonymous = upload_with(&s.gateway, "/", None, "demo-pkg", "demo_pkg-1.0-py3-none-any.whl");
    assert_eq!(anonymous.json()["code"], "credentials_missing");
    keep("credentials_missing", anonymous);
    let tampered = upload(&s.gateway, &edit_payload(&token, |p| p["exp"] = json!(0)), "demo-pkg");
    assert_eq!(tampered.json()["code"], "upload_token_invalid");
    keep("upload_token_invalid", tampered);
    let down_upload = upload_with(
        &s.gateway,
        "/down/",
        Some(&http::basic_auth("__token__", &token)),
        "demo-pkg",
        "demo_pkg-1.0-py3-none-any.whl",
    );
    assert_eq!(down_upload.status, 502, "{}", down_upload.text());
    assert_eq!(down_upload.json()["code"], "upstream_unavailable");
    keep("backend down", down_upload);
    // Reads with the token: swapped for the backend credential upstream, never shown back.
    let read = http::request(
        s.gateway.addr(),
        "GET",
        "/simple/demo-pkg/",
        &[("authorization", &http::basic_auth("__token__", &token))],
        b"",
    );
    assert_eq!(read.status, 200);
    keep("read with the token", read);
    let down_read = http::request(
        s.gateway.addr(),
        "GET",
        "/down/simple/demo-pkg/",
        &[("authorization", &http::basic_auth("__token__", &token))],
        b"",
    );
    assert_eq!(down_read.status, 502, "{}", down_read.text());
    keep("read, backend down", down_read);

    // The backend got its credential (so the secret really was in play)...
    let backend_auth = http::basic_auth(BACKEND_USER, &s.secret);
    let swapped = s
        .sink
        .seen()
        .iter()
        .filter(|r| r.header("authorization") == Some(backend_auth.as_str()))
        .filter(|r| {
            (r.method == "POST" && r.path == "/" && r.ending == Ending::Complete) || r.path == "/simple/demo-pkg/"
        })
        .count();
    assert_eq!(
        swapped, 2,
        "the accepted upload and the read carried the backend credential"
    );
    // The token_scope refusal is decided once the form names the project: its body was held
    // back and its upstream connection closed, so the backend never got a complete upload.
    let incomplete = s
        .sink
        .seen()
        .iter()
        .filter(|r| r.method == "POST" && r.ending != Ending::Complete)
        .count();
    assert_eq!(incomplete, 1, "{:?}", s.sink.seen());

    // ...and it appears nowhere else.
    let pair = format!("{BACKEND_USER}:{}", s.secret);
    let mut secret_forms = vec![s.secret.clone(), backend_auth.clone()];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        secret_forms.push(engine.encode(&pair));
        secret_forms.push(engine.encode(&s.secret));
    }
    // Base64 of the pair at the three alignments, without the edge characters that depend on
    // the neighbours (a secret embedded in a longer base64 string).
    for shift in 0..3 {
        let shifted = format!("{}{pair}", "x".repeat(shift));
        let encoded = STANDARD.encode(&shifted);
        let core = &encoded[(shift * 4).div_ceil(3) + 1..encoded.len().saturating_sub(4)];
        secret_forms.push(core.to_owned());
    }
    let jwt_signature = jwt.split('.').nth(2).expect("sig").to_owned();
    let token_signature = token.split('.').nth(2).expect("sig").to_owned();
    let check = |place: &str, text: &str| {
        for form in &secret_forms {
            assert!(
                !text.contains(form.as_str()),
                "{place} contains the backend secret (as {form:?})"
            );
        }
        assert!(
            !text.contains(&jwt_signature),
            "{place} contains the OIDC token's signature"
        );
        assert!(
            !text.contains(&token_signature),
            "{place} contains the upload token's signature"
        );
    };
    for (what, response) in &responses {
        let headers: String = response.headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
        check(&format!("the response to {what} (status line)"), &response.reason);
        check(&format!("the response headers of {what}"), &headers);
        check(&format!("the response body of {what}"), &response.text());
    }
    let exchanged_headers: String = exchanged.headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
    check("the exchange's response headers", &exchanged_headers);
    // The exchange's body carries the upload token (that is its job), nothing else.
    assert!(!exchanged.text().contains(&s.secret));
    assert!(!exchanged.text().contains(&jwt_signature));
    check("/metrics", &s.gateway.metrics());
    // The decision journal of every request, and the log file.
    for (what, response) in &responses {
        if let Some(id) = response.header("x-request-id") {
            let journal = http::request(s.gateway.admin(), "GET", &format!("/decisions/{id}"), &[], b"");
            check(&format!("the decision journal of {what}"), &journal.text());
        }
    }
    // Wait for the last request's log line, then read the whole log.
    s.gateway.decisions(1);
    let log = s.gateway.log();
    assert!(log.lines().count() > 10, "the log has the requests: {log}");
    check("the gateway log", &log);
    assert!(!log.contains(&jwt), "the OIDC token is in the log");
    assert!(!log.contains(&token), "the upload token is in the log");
    // check-config prints the configuration without the secret.
    let (_, stdout, stderr) = portcullis_e2e::gateway::check_config(&s.work.join("gateway/portcullis.toml"));
    check("check-config output", &format!("{stdout}{stderr}"));
}

#[test]
fn algorithm_and_structure_confusion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::start(&dir.path().join("issuer"));
    // The attacker's server: its CA is trusted too, so only policy stops a fetch from it.
    let evil = Issuer::start(&dir.path().join("evil"));
    let s = start(&[("gha", &issuer), ("zzevil", &evil)], Options::default());
    // Warm the key set so every case below meets cached keys.
    minted(&mint(&s.gateway, &issuer.token(claims(&issuer))));
    let evil_jwk = evil.jwks()["keys"][0].clone();
    let header = |extra: Value| {
        let mut spec = TokenSpec::rs256(claims(&issuer));
        if let Value::Object(map) = extra {
            spec.extra_header = map;
        }
        spec
    };
    let evil_signed = |kid: &str, extra: Value| {
        let mut spec = TokenSpec::new("RS256", Some(kid), claims(&issuer));
        if let Value::Object(map) = extra {
            spec.extra_header = map;
        }
        evil.sign(&spec)
    };
    let genuine = issuer.token(claims(&issuer));
    let g: Vec<String> = genuine.split('.').map(str::to_owned).collect();
    let jwe_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"rsa-1"}"#);
    let nested = {
        let inner = issuer.token(claims(&issuer));
        let mut spec = TokenSpec::rs256(json!(inner));
        spec.extra_header.insert("cty".into(), json!("JWT"));
        issuer.sign(&spec)
    };
    let raw_payload = {
        // RFC 7797 unencoded payload, signed over the raw bytes.
        let c = serde_json::to_string(&claims(&issuer)).expect("json");
        let spec_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"rsa-1","b64":false,"crit":["b64"]}"#);
        format!("{spec_header}.{c}.{}", g[2])
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "RS256 naming the EC key's kid",
            issuer.sign(&TokenSpec::new("RS256", Some("ec-1"), claims(&issuer))),
            "invalid-token",
            "key_mismatch",
        ),
        (
            "ES256 naming the RSA key's kid",
            issuer.sign(&TokenSpec::new("ES256", Some("rsa-1"), claims(&issuer))),
            "invalid-token",
            "key_mismatch",
        ),
        (
            "HS256 naming the EC key's kid",
            issuer.sign(&TokenSpec::new("HS256", Some("ec-1"), claims(&issuer))),
            "invalid-token",
            "alg_forbidden",
        ),
        (
            "alg NoNe",
            issuer.sign(&TokenSpec::new("NoNe", Some("rsa-1"), claims(&issuer))),
            "invalid-token",
            "alg_forbidden",
        ),
        (
            "alg rs256 (lower case)",
            issuer.sign(&TokenSpec::new("rs256", Some("rsa-1"), claims(&issuer))),
            "invalid-token",
            "alg_unsupported",
        ),
        (
            "alg PS256",
            issuer.sign(&TokenSpec::new("PS256", Some("rsa-1"), claims(&issuer))),
            "invalid-token",
            "alg_unsupported",
        ),
        (
            "alg RS384, not on the issuer's list",
            issuer.sign(&TokenSpec::new("RS384", Some("rsa-1"), claims(&issuer))),
            "invalid-token",
            "alg_not_allowed",
        ),
        (
            "no kid",
            issuer.sign(&TokenSpec::new("RS256", None, claims(&issuer))),
            "invalid-token",
            "kid_missing",
        ),
        (
            "alg as a number",
            issuer.sign(&header(json!({"alg": 256}))),
            "invalid-payload",
            "malformed_token",
        ),
        (
            "jku to the attacker's keys, attacker's kid",
            evil_signed("evil-kid", json!({"jku": format!("{}/jwks", evil.url())})),
            "invalid-token",
            "kid_unknown",
        ),
        (
            "jku to the attacker's keys, genuine kid",
            evil_signed("rsa-1", json!({"jku": format!("{}/jwks", evil.url())})),
            "invalid-token",
            "signature_invalid",
        ),
        (
            "x5u to the attacker",
            evil_signed("rsa-1", json!({"x5u": format!("{}/cert.pem", evil.url())})),
            "invalid-token",
            "signature_invalid",
        ),
        (
            "embedded jwk of the attacker",
            evil_signed("rsa-1", json!({"jwk": evil_jwk})),
            "invalid-token",
            "signature_invalid",
        ),
        (
            "embedded x5c",
            evil_signed("rsa-1", json!({"x5c": [STANDARD.encode(b"not a certificate")]})),
            "invalid-token",
            "signature_invalid",
        ),
        (
            "crit [\"exp\"], genuinely signed",
            issuer.sign(&header(json!({"crit": ["exp"]}))),
            "invalid-token",
            "header_invalid",
        ),
        (
            "b64 false with crit, genuinely signed",
            issuer.sign(&header(json!({"b64": false, "crit": ["b64"]}))),
            "invalid-token",
            "header_invalid",
        ),
        (
            "b64 false, unencoded payload",
            raw_payload,
            "invalid-payload",
            "malformed_token",
        ),
        (
            "nested JWT (cty JWT, payload a token)",
            nested,
            "invalid-payload",
            "malformed_token",
        ),
        (
            "JWE, five segments",
            format!(
                "{jwe_header}.{}.{}.{}.{}",
                "A".repeat(342),
                "B".repeat(16),
                g[1],
                "C".repeat(22)
            ),
            "invalid-payload",
            "malformed_token",
        ),
        (
            "trailing dot",
            format!("{genuine}."),
            "invalid-payload",
            "malformed_token",
        ),
        (
            "leading dot",
            format!(".{genuine}"),
            "invalid-payload",
            "malformed_token",
        ),
        (
            "two dots between header and payload",
            format!("{}..{}.{}", g[0], g[1], g[2]),
            "invalid-payload",
            "malformed_token",
        ),
        (
            "'+' and '/' in the signature",
            format!("{}.{}.{}", g[0], g[1], g[2].replace('-', "+").replace('_', "/") + "+/"),
            "invalid-token",
            "token_base64",
        ),
        (
            "padding on the payload",
            format!("{}.{}==.{}", g[0], g[1], g[2]),
            "invalid-payload",
            "malformed_token",
        ),
        (
            "space inside the signature",
            format!("{}.{}.{} {}", g[0], g[1], &g[2][..10], &g[2][10..]),
            "invalid-token",
            "token_base64",
        ),
        (
            "NUL inside",
            format!("{}.{}\u{0}.{}", g[0], g[1], g[2]),
            "invalid-payload",
            "malformed_token",
        ),
        (
            "kid of 10 000 characters",
            issuer.sign(&TokenSpec::new("RS256", Some(&"k".repeat(10_000)), claims(&issuer))),
            "invalid-token",
            "kid_unknown",
        ),
        (
            "kid with a path",
            issuer.sign(&TokenSpec::new("RS256", Some("../../jwks?x=1"), claims(&issuer))),
            "invalid-token",
            "kid_unknown",
        ),
        (
            "16 KiB + 1 token",
            format!("{genuine}{}", "A".repeat(16 * 1024 + 1 - genuine.len())),
            "invalid-payload",
            "malformed_token",
        ),
        (
            "the signature of another genuine token",
            format!(
                "{}.{}.{}",
                g[0],
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&issuer)).expect("json")),
                g[2]
            ),
            "invalid-token",
            "signature_invalid",
        ),
    ];
    let cases_started = Instant::now();
    for (what, token, code, logged) in &cases {
        let response = mint(&s.gateway, token);
        assert_refused(&s.gateway, what, &response, code, logged);
    }
    // A request body far over the exchange's limit is refused without reading it all: the
    // client gets 422 (or a reset once it keeps sending), and the gateway stays up.
    let started = Instant::now();
    let mut stream = http::connect(s.gateway.addr());
    let head = format!(
        "POST /_/oidc/mint-token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{\"token\":\"",
        8 << 20
    );
    use std::io::Write as _;
    stream.write_all(head.as_bytes()).expect("head");
    let _ = stream.write_all("A".repeat(128 * 1024).as_bytes()); // the gateway may stop reading early
    if let Ok(response) = http::read_response(&mut stream) {
        assert_eq!(response.status, 422, "{}", response.text());
        assert_eq!(mint_code(&response), "invalid-payload");
    }
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // The attacker's server was never asked for anything, and nothing was minted.
    for path in ["/jwks", "/cert.pem", "/.well-known/openid-configuration"] {
        assert_eq!(evil.requests(path), 0, "{path}");
    }
    assert_eq!(minted_count(&s.gateway, "gha"), 1.0);
    let allowed = 2 + cases_started.elapsed().as_secs() as usize;
    assert!(
        issuer.requests("/jwks") <= allowed,
        "unknown kids refresh the key set once per cooldown at most: {} fetches in {:?}",
        issuer.requests("/jwks"),
        cases_started.elapsed()
    );
    for path in ["/../../jwks", "/jwks?x=1"] {
        assert_eq!(issuer.requests(path), 0, "the kid never becomes a URL: {path}");
    }
    // The genuine token still works.
    minted(&mint(&s.gateway, &genuine));
    // Header members that are not understood and not `crit` are ignored (RFC 7515 §4.1): a
    // token the issuer itself signed with a `jku`/`x5u`/`jwk` pointing at the attacker, or with
    // `b64: false` outside `crit`, verifies against the issuer's published keys as signed (the
    // signature covers the encoded payload) and the attacker's server is still never contacted.
    for (what, extra) in [
        (
            "jku, x5u and jwk of the attacker",
            json!({"jku": format!("{}/jwks", evil.url()), "x5u": format!("{}/cert.pem", evil.url()), "jwk": evil_jwk}),
        ),
        ("b64 false outside crit", json!({"b64": false})),
    ] {
        let response = mint(&s.gateway, &issuer.sign(&header(extra)));
        minted(&response);
        assert_eq!(exchange_logged(&s.gateway, &response), "minted", "{what}");
    }
    for path in ["/jwks", "/cert.pem", "/.well-known/openid-configuration"] {
        assert_eq!(evil.requests(path), 0, "{path}");
    }
    assert_eq!(minted_count(&s.gateway, "gha"), 4.0);
    assert!(s.sink.seen().is_empty(), "{:?}", s.sink.seen());
}

#[test]
fn replays_and_missing_jti() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::start(&dir.path().join("issuer"));
    let second = Issuer::start(&dir.path().join("second"));
    let s = start(&[("gha", &issuer), ("second", &second)], Options::default());
    let without = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims(&issuer);
        edit(&mut c);
        issuer.token(c)
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "no jti",
            without(&|c| {
                c.as_object_mut().expect("object").remove("jti");
            }),
            "claim_missing",
        ),
        ("empty jti", without(&|c| c["jti"] = json!("")), "claim_invalid"),
        ("numeric jti", without(&|c| c["jti"] = json!(42)), "claim_invalid"),
        ("null jti", without(&|c| c["jti"] = Value::Null), "claim_invalid"),
    ];
    for (what, token, logged) in &cases {
        let response = mint(&s.gateway, token);
        assert_refused(&s.gateway, what, &response, "invalid-token", logged);
    }
    // The same token sent eight times at once: exactly one upload token.
    let token = issuer.token(claims(&issuer));
    let answers: Vec<http::Response> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| mint(&s.gateway, &token))).collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let ok = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 1, "{:?}", answers.iter().map(|r| r.text()).collect::<Vec<_>>());
    for r in answers.iter().filter(|r| r.status != 200) {
        assert_refused(
            &s.gateway,
            "concurrent replay",
            r,
            "invalid-reuse-token",
            "jti_replayed",
        );
    }
    // Another token (other times, so another signature) reusing a spent jti.
    let mut reused = claims(&issuer);
    reused["jti"] = json!(serde_json::from_slice::<Value>(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).expect("payload"))
            .expect("b64")
    )
    .expect("json")["jti"]
        .clone());
    reused["iat"] = json!(now() - 1);
    let response = mint(&s.gateway, &issuer.token(reused.clone()));
    assert_refused(
        &s.gateway,
        "new token, spent jti",
        &response,
        "invalid-reuse-token",
        "jti_replayed",
    );
    // Replay ids are per issuer: another issuer may use the same jti string.
    let mut elsewhere = claims(&second);
    elsewhere["jti"] = reused["jti"].clone();
    minted(&mint(&s.gateway, &second.token(elsewhere)));
    assert_eq!(minted_count(&s.gateway, "gha"), 1.0);
    assert_eq!(minted_count(&s.gateway, "second"), 1.0);
    assert!(s.sink.seen().is_empty(), "{:?}", s.sink.seen());
}
