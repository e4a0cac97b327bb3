//! Trusted publishing on the PyPI endpoints, with a local OIDC issuer standing in for GitHub
//! Actions: the gh-action-pypi-publish flow with PyPA's `id` and twine over HTTPS in front of a
//! real pypiserver, and every refusal the issue lists, each proven not to reach the backend.

use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_e2e::gateway::{admin_token_config, trusted_publishing_config, Gateway, RegistrySpec, ADMIN_TOKEN};
use portcullis_e2e::http::{self, Form};
use portcullis_e2e::oidc::{env_for_github_actions, CiTokenEndpoint, Issuer, TokenSpec};
use portcullis_e2e::pki::test_pki;
use portcullis_e2e::pypiserver::{self, Pypiserver};
use portcullis_e2e::repo_root;
use portcullis_e2e::sink::{Ending, Sink};
use portcullis_e2e::tools::{make_dists, tools};
use serde_json::{json, Value};

const AUDIENCE: &str = "portcullis-test";
const REPO: &str = "acme/widgets";
const OWNER_ID: &str = "1234";

fn rules(issuer: &Issuer) -> String {
    format!(
        r#"
[issuers.gha]
url = "{url}"
kind = "github"
algorithms = ["RS256", "ES256"]

[registries.pypi]
audience = "{AUDIENCE}"

[[registries.pypi.publishers]]
id = "widgets-release"
issuer = "gha"
projects = ["demo-pkg", "other-pkg"]
repository = "{REPO}"
repository_owner_id = "{OWNER_ID}"
workflow = "release.yml"
pending = true

[[registries.pypi.publishers]]
id = "widgets-prod"
issuer = "gha"
projects = ["prod-pkg"]
repository = "{REPO}"
repository_owner_id = "{OWNER_ID}"
workflow = "release.yml"
environment = "pypi"
pending = true

[[registries.pypi.publishers]]
id = "existing-only"
issuer = "gha"
projects = ["absent-project"]
repository = "acme/existing"
repository_owner_id = "{OWNER_ID}"
workflow = "release.yml"
"#,
        url = issuer.url()
    )
}

/// Gateway config: trusted-publishing CA, upload-token key, backend credential (pypiserver's own
/// user) and client credentials refused.
fn gateway_config(dir: &Path, issuer: &Issuer) -> String {
    std::fs::create_dir_all(dir).expect("dir");
    let password = dir.join("backend-password");
    std::fs::write(&password, format!("{}\n", pypiserver::PASSWORD)).expect("password");
    format!(
        "{}jwks_refresh_cooldown = \"1s\"\n",
        trusted_publishing_config(&dir.join("keys"), issuer.ca_file())
    )
}

fn registry_extra(dir: &Path) -> String {
    format!(
        "client_credentials = \"refuse\"\nbackend_credentials = {{ kind = \"basic\", username = \"{}\", password_file = {:?} }}\n",
        pypiserver::USER,
        dir.join("backend-password").display().to_string()
    )
}

fn github_claims(issuer: &Issuer) -> Value {
    issuer.github_claims(AUDIENCE, REPO, OWNER_ID, "release.yml")
}

fn mint(gateway: &Gateway, token: &str) -> http::Response {
    http::mint_pypi_token(gateway.addr(), token)
}

fn error_code(response: &http::Response) -> String {
    response.warehouse_code()
}

fn upload(gateway: &Gateway, token: &str, name: &str, filename: &str) -> http::Response {
    let form = Form::pypi_upload(name, "1.0", filename, b"wheel bytes");
    let auth = http::basic_auth("__token__", token);
    http::request(
        gateway.addr(),
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", &auth)],
        &form.body,
    )
}

/// A GitHub Actions–like job (the local issuer behind a CI token endpoint) and an HTTPS gateway
/// in front of a real pypiserver, uploads under `/legacy/` and the exchange endpoints at the
/// host root, where the PyPA clients look for them.
struct ActionsSetup {
    _dir: tempfile::TempDir,
    work: PathBuf,
    endpoint: CiTokenEndpoint,
    backend: Pypiserver,
    pki: portcullis_e2e::pki::TestPki,
    gateway: Gateway,
    repository_url: String,
    _issuer: Issuer,
}

fn actions_setup() -> ActionsSetup {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let issuer = Issuer::start(&work.join("issuer"));
    let endpoint = CiTokenEndpoint::start(&issuer, github_claims(&issuer));
    let backend = Pypiserver::start(&work.join("pypiserver"));
    let pki = test_pki(&work.join("pki"), "gateway", &["127.0.0.1", "localhost"]);
    let gw_dir = work.join("gateway");
    let gateway = Gateway::builder()
        .registry(RegistrySpec {
            extra: format!("path_prefix = \"/legacy\"\n{}", registry_extra(&gw_dir)),
            ..RegistrySpec::new("pypi", "pypi", backend.addr())
        })
        .rules(&rules(&issuer))
        .config(&gateway_config(&gw_dir, &issuer))
        .tls(&pki.cert, &pki.key)
        .start(&gw_dir);
    let repository_url = format!("https://127.0.0.1:{}/legacy/", gateway.addr().port());
    ActionsSetup {
        _dir: dir,
        work,
        endpoint,
        backend,
        pki,
        gateway,
        repository_url,
        _issuer: issuer,
    }
}

/// The audience claimed by the ID token the CI endpoint issued (the one it issued).
fn issued_audience(endpoint: &CiTokenEndpoint) -> Value {
    use base64::Engine as _;
    let issued = endpoint.issued();
    assert_eq!(issued.len(), 1, "one ID token fetched from the CI endpoint");
    let payload = issued[0].split('.').nth(1).expect("payload").to_owned();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64"),
    )
    .expect("claims");
    claims["aud"].clone()
}

#[test]
fn gh_action_flow_with_id_and_twine_over_https_lands_in_pypiserver() {
    let ActionsSetup {
        work,
        endpoint,
        backend,
        pki,
        gateway,
        repository_url,
        ..
    } = &actions_setup();

    // The action's exchange: audience, id (GitHub Actions environment), mint.
    let exchange = Command::new(tools().python())
        .arg(repo_root().join("tests/tools/pypi_oidc_exchange.py"))
        .arg(repository_url)
        .envs(env_for_github_actions(endpoint))
        .env("REQUESTS_CA_BUNDLE", &pki.ca)
        .output()
        .expect("run the exchange");
    let stderr = String::from_utf8_lossy(&exchange.stderr);
    assert!(exchange.status.success(), "exchange failed: {stderr}");
    let token = String::from_utf8_lossy(&exchange.stdout).trim().to_owned();
    assert!(token.starts_with("pcul_k1."), "{token}");
    assert_eq!(
        issued_audience(endpoint),
        AUDIENCE,
        "id fetched one ID token, for the audience the gateway announced"
    );

    // twine uploads with the minted token, as the action does (`__token__`).
    let (wheel, sdist) = make_dists(&work.join("dist"), "demo-pkg", "1.0", None);
    let out = Command::new(tools().twine())
        .args([
            "upload",
            "--disable-progress-bar",
            "--non-interactive",
            "--repository-url",
        ])
        .arg(repository_url)
        .args(["-u", "__token__", "-p"])
        .arg(&token)
        .arg(&wheel)
        .arg(&sdist)
        .env("REQUESTS_CA_BUNDLE", &pki.ca)
        .env("NO_COLOR", "1")
        .output()
        .expect("run twine");
    assert!(
        out.status.success(),
        "twine failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    backend.assert_holds_exactly(&[&wheel, &sdist]);
    // pypiserver only accepts its own htpasswd user for uploads, so the upload landing proves
    // the swap; the decision log names the publisher and the token.
    let decisions = gateway.decisions(2);
    for d in &decisions {
        assert_eq!(d["credential"], "upload_token", "{d}");
        assert_eq!(d["publisher"], "widgets-release", "{d}");
        assert_eq!(d["outcome"], "allow", "{d}");
    }
    assert!(
        gateway.metric(
            "portcullis_oidc_exchanges_total{issuer=\"gha\",outcome=\"minted\",protocol=\"pypi\",registry=\"pypi\"}"
        ) >= 1.0
    );

    // A client credential other than an upload token is refused here (refuse mode), with the
    // reason in what twine prints.
    let (wheel2, _) = make_dists(&work.join("dist2"), "demo-pkg", "1.1", None);
    let out = Command::new(tools().twine())
        .args([
            "upload",
            "--disable-progress-bar",
            "--non-interactive",
            "--repository-url",
        ])
        .arg(repository_url)
        .args(["-u", pypiserver::USER, "-p", pypiserver::PASSWORD])
        .arg(&wheel2)
        .env("REQUESTS_CA_BUNDLE", &pki.ca)
        .env("NO_COLOR", "1")
        .output()
        .expect("run twine");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(
        printed.contains("accepts writes only with an upload token"),
        "{printed}"
    );
    assert_eq!(backend.stored().len(), 2, "the refused upload is not stored");
}

struct SinkSetup {
    _dir: tempfile::TempDir,
    issuer: Issuer,
    sink: Sink,
    gateway: Gateway,
    work: PathBuf,
}

fn over_sink() -> SinkSetup {
    over_sink_with("refuse")
}

fn over_sink_with(client_credentials: &str) -> SinkSetup {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let issuer = Issuer::start(&work.join("issuer"));
    let sink = Sink::start();
    let gw_dir = work.join("gateway");
    let gateway = Gateway::builder()
        .registry(RegistrySpec {
            extra: registry_extra(&gw_dir).replace("\"refuse\"", &format!("{client_credentials:?}")),
            ..RegistrySpec::new("pypi", "pypi", sink.addr())
        })
        .rules(&rules(&issuer))
        .config(&gateway_config(&gw_dir, &issuer))
        .admin_config(&admin_token_config(&gw_dir))
        .start(&gw_dir);
    SinkSetup {
        _dir: dir,
        issuer,
        sink,
        gateway,
        work,
    }
}

#[test]
fn uv_publish_finds_the_audience_mints_and_uploads_with_no_other_setup() {
    let s = actions_setup();
    let (wheel, sdist) = make_dists(&s.work.join("dist"), "demo-pkg", "1.0", None);
    // uv's own trusted publishing: in a GitHub Actions environment it asks the index for the
    // audience at /_/oidc/audience, fetches an ID token from the job's token endpoint, mints
    // at /_/oidc/mint-token and uploads with the minted token, writing its own multipart form.
    let out = Command::new(tools().uv())
        .args(["publish", "--trusted-publishing", "always", "--publish-url"])
        .arg(&s.repository_url)
        .arg(&wheel)
        .arg(&sdist)
        .envs(env_for_github_actions(&s.endpoint))
        .env("SSL_CERT_FILE", &s.pki.ca)
        .env("UV_CACHE_DIR", s.work.join("uv-cache"))
        .env("NO_COLOR", "1")
        .env("UV_NO_PROGRESS", "1")
        .output()
        .expect("run uv publish");
    assert!(
        out.status.success(),
        "uv publish failed:\n{}\n{}\n--- gateway ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.gateway.log()
    );
    assert_eq!(
        issued_audience(&s.endpoint),
        AUDIENCE,
        "uv asked for the announced audience"
    );
    s.backend.assert_holds_exactly(&[&wheel, &sdist]);
    let decisions = s.gateway.decisions(2);
    assert_eq!(decisions.len(), 2);
    for d in &decisions {
        assert_eq!(d["credential"], "upload_token", "{d}");
        assert_eq!(d["publisher"], "widgets-release", "{d}");
        assert_eq!(d["outcome"], "allow", "{d}");
    }
}

#[test]
fn every_listed_refusal_is_refused_and_reaches_no_backend() {
    let s = over_sink();
    let issuer = &s.issuer;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = github_claims(issuer);
        edit(&mut claims);
        claims
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong repository",
            issuer.token(with(&|c| {
                c["repository"] = json!("acme/other");
                c["workflow_ref"] = json!("acme/other/.github/workflows/release.yml@refs/heads/main");
                c["job_workflow_ref"] = json!("acme/other/.github/workflows/release.yml@refs/heads/main");
            })),
            "invalid-publisher",
        ),
        (
            "wrong owner id with the right name",
            issuer.token(with(&|c| c["repository_owner_id"] = json!("999999"))),
            "invalid-publisher",
        ),
        (
            "wrong workflow",
            issuer.token(with(&|c| {
                c["workflow_ref"] = json!("acme/widgets/.github/workflows/ci.yml@refs/heads/main");
                c["job_workflow_ref"] = json!("acme/widgets/.github/workflows/ci.yml@refs/heads/main");
            })),
            "invalid-publisher",
        ),
        (
            "pull_request_target",
            issuer.token(with(&|c| c["event_name"] = json!("pull_request_target"))),
            "invalid-publisher",
        ),
        (
            "expired",
            issuer.token(with(&|c| {
                c["iat"] = json!(now - 900);
                c["nbf"] = json!(now - 900);
                c["exp"] = json!(now - 600);
            })),
            "invalid-token",
        ),
        (
            "nbf in the future",
            issuer.token(with(&|c| {
                c["nbf"] = json!(now + 300);
                c["exp"] = json!(now + 900);
            })),
            "invalid-token",
        ),
        (
            "wrong aud",
            issuer.token(with(&|c| c["aud"] = json!("pypi"))),
            "invalid-token",
        ),
        (
            "aud list containing ours",
            issuer.token(with(&|c| c["aud"] = json!([AUDIENCE, "other"]))),
            "invalid-token",
        ),
        (
            "unknown iss",
            issuer.token(with(&|c| c["iss"] = json!("https://token.example.invalid"))),
            "invalid-payload",
        ),
        (
            "alg none",
            issuer.sign(&TokenSpec::new("none", Some("rsa-1"), github_claims(issuer))),
            "invalid-token",
        ),
        (
            "HS256 signed with the RSA public key",
            issuer.sign(&TokenSpec::new("HS256", Some("rsa-1"), github_claims(issuer))),
            "invalid-token",
        ),
        (
            "unknown kid",
            issuer.sign(&TokenSpec::new("RS256", Some("no-such-key"), github_claims(issuer))),
            "invalid-token",
        ),
        (
            "token too large",
            issuer.token(with(&|c| c["padding"] = json!("x".repeat(20_000)))),
            "invalid-payload",
        ),
        ("not a JWT", "not.a.jwt".to_owned(), "invalid-payload"),
    ];
    for (what, token, code) in &cases {
        let response = mint(&s.gateway, token);
        assert_eq!(response.status, 422, "{what}: {}", response.text());
        assert_eq!(&error_code(&response), code, "{what}: {}", response.text());
        assert_eq!(response.json()["message"], "Token request failed", "{what}");
    }

    // Environment: the env-specific publisher only matches its environment.
    let env_claims = |env: &str| {
        let mut c = github_claims(issuer);
        c["environment"] = json!(env);
        c
    };
    let ok = mint(&s.gateway, &issuer.token(env_claims("pypi")));
    assert_eq!(ok.status, 200, "{}", ok.text());
    let wrong_env = mint(&s.gateway, &issuer.token(env_claims("staging")));
    assert_eq!(wrong_env.status, 200, "the env-less publisher still matches");
    let (_, ok_token, prod_token) = (0, ok.json()["token"].clone(), wrong_env.json()["token"].clone());
    // ...but only the env-specific one covers prod-pkg.
    let prod = upload(
        &s.gateway,
        ok_token.as_str().expect("token"),
        "prod-pkg",
        "prod_pkg-1.0-py3-none-any.whl",
    );
    assert_eq!(prod.status, 200, "{}", prod.text());
    let staging = upload(
        &s.gateway,
        prod_token.as_str().expect("token"),
        "prod-pkg",
        "prod_pkg-1.0-py3-none-any.whl",
    );
    assert_eq!(staging.status, 403, "{}", staging.text());
    assert_eq!(staging.json()["code"], "token_scope");

    // A replayed jti.
    let token = issuer.token(github_claims(issuer));
    let first = mint(&s.gateway, &token);
    assert_eq!(first.status, 200, "{}", first.text());
    let replay = mint(&s.gateway, &token);
    assert_eq!(replay.status, 422);
    assert_eq!(error_code(&replay), "invalid-reuse-token");

    // ES256 tokens verify too.
    let es = mint(&s.gateway, &issuer.sign(&TokenSpec::es256(github_claims(issuer))));
    assert_eq!(es.status, 200, "{}", es.text());

    // Non-pending publisher, project absent on the backend: refused with the reason.
    let mut existing = github_claims(issuer);
    existing["repository"] = json!("acme/existing");
    existing["workflow_ref"] = json!("acme/existing/.github/workflows/release.yml@refs/heads/main");
    existing["job_workflow_ref"] = json!("acme/existing/.github/workflows/release.yml@refs/heads/main");
    let absent = mint(&s.gateway, &issuer.token(existing));
    assert_eq!(absent.status, 422);
    assert_eq!(error_code(&absent), "invalid-publisher");
    assert!(
        absent.text().contains("only a pending publisher may create it"),
        "{}",
        absent.text()
    );

    // Exchanges never reach the backend (only the existence probe of the non-pending publisher's
    // project does); of the uploads, only the accepted one completed. The refused one was cut
    // off with a reset before its last byte (hold-back), so the backend never committed it.
    let complete = |sink: &Sink| {
        sink.seen()
            .into_iter()
            .filter(|r| r.method == "POST" && r.ending == Ending::Complete)
            .count()
    };
    assert_eq!(
        complete(&s.sink),
        1,
        "only the accepted prod-pkg upload: {:?}",
        s.sink.seen()
    );
    assert!(s
        .sink
        .seen()
        .iter()
        .all(|r| r.method == "POST" || r.path == "/simple/absent-project/"));

    // Upload-token refusals: project A's token on project B, revoked, expired, tampered.
    let minted = mint(&s.gateway, &issuer.token(github_claims(issuer)));
    let token = minted.json()["token"].as_str().expect("token").to_owned();
    let wrong_project = upload(&s.gateway, &token, "unrelated", "unrelated-1.0-py3-none-any.whl");
    assert_eq!(wrong_project.status, 403, "{}", wrong_project.text());
    assert_eq!(wrong_project.json()["code"], "token_scope");
    assert!(
        wrong_project.reason.contains("not valid for project"),
        "{}",
        wrong_project.reason
    );

    let accepted = upload(&s.gateway, &token, "demo-pkg", "demo_pkg-1.0-py3-none-any.whl");
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    let seen = s.sink.seen_at("/");
    let last = seen.last().expect("the accepted upload reached the backend");
    assert_eq!(
        last.header("authorization"),
        Some(http::basic_auth(pypiserver::USER, pypiserver::PASSWORD).as_str()),
        "the backend sees its own credential, never the upload token"
    );
    let uploads_before = complete(&s.sink);

    let revoke = http::request(
        s.gateway.admin(),
        "POST",
        "/tokens/revoke",
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        &serde_json::to_vec(&json!({"token": token, "reason": "leaked in a log"})).expect("json"),
    );
    assert_eq!(revoke.status, 200, "{}", revoke.text());
    let revoked = upload(&s.gateway, &token, "demo-pkg", "demo_pkg-1.0.1-py3-none-any.whl");
    assert_eq!(revoked.status, 401, "{}", revoked.text());
    assert_eq!(revoked.json()["code"], "upload_token_revoked");
    let unauthorised_revoke = http::request(
        s.gateway.admin(),
        "POST",
        "/tokens/revoke",
        &[("authorization", "Bearer wrong")],
        br#"{"token_id": "x", "reason": "r"}"#,
    );
    assert_eq!(unauthorised_revoke.status, 401);

    let expired = portcullis_e2e::upload_token::forge(
        &s.work.join("gateway/keys/k1.pem"),
        "k1",
        now - 3600,
        now - 60,
        "pypi",
        &["demo-pkg"],
    );
    let expired = upload(&s.gateway, &expired, "demo-pkg", "demo_pkg-1.0.2-py3-none-any.whl");
    assert_eq!(expired.status, 401, "{}", expired.text());
    assert_eq!(expired.json()["code"], "upload_token_invalid");
    assert!(expired.text().contains("expired"), "{}", expired.text());

    let still_valid = portcullis_e2e::upload_token::forge(
        &s.work.join("gateway/keys/k1.pem"),
        "k1",
        now - 10,
        now + 600,
        "pypi",
        &["demo-pkg"],
    );
    let tampered = portcullis_e2e::upload_token::tamper_project(&still_valid, "other-project");
    let tampered = upload(
        &s.gateway,
        &tampered,
        "other-project",
        "other_project-1.0-py3-none-any.whl",
    );
    assert_eq!(tampered.status, 401, "{}", tampered.text());
    assert_eq!(tampered.json()["code"], "upload_token_invalid");

    let uploads_after = complete(&s.sink);
    assert_eq!(uploads_before, uploads_after, "no refused upload reached the backend");
    for request in s.sink.seen() {
        let auth = request.header("authorization").unwrap_or_default();
        assert!(
            !auth.contains("pcul_"),
            "an upload token reached the backend: {request:?}"
        );
    }
}

#[test]
fn issuer_key_rotation_outage_kill_switch_and_audience_endpoint() {
    let s = over_sink();
    // Keys: the first exchange fetches them; a token with a new kid makes the gateway refresh
    // once; while the issuer is down the last good keys keep working.
    let first = mint(&s.gateway, &s.issuer.token(github_claims(&s.issuer)));
    assert_eq!(first.status, 200, "{}", first.text());
    let fetched = s.issuer.requests("/jwks");
    let rotated = s.issuer.rotate_in_key();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // past the 1 s refresh cooldown
    let with_new_key = mint(
        &s.gateway,
        &s.issuer
            .sign(&TokenSpec::new("RS256", Some(&rotated), github_claims(&s.issuer))),
    );
    assert_eq!(with_new_key.status, 200, "{}", with_new_key.text());
    assert_eq!(s.issuer.requests("/jwks"), fetched + 1, "one refresh for the new kid");
    assert_eq!(
        s.gateway.metric("portcullis_oidc_jwks_fetches_total{outcome=\"ok\"}"),
        2.0
    );
    s.issuer.set_unreachable(true);
    let during_outage = mint(&s.gateway, &s.issuer.token(github_claims(&s.issuer)));
    assert_eq!(
        during_outage.status,
        200,
        "cached keys serve during an outage: {}",
        during_outage.text()
    );
    let unknown_during_outage = mint(
        &s.gateway,
        &s.issuer.sign(&TokenSpec::new(
            "RS256",
            Some("never-published"),
            github_claims(&s.issuer),
        )),
    );
    assert_eq!(unknown_during_outage.status, 422);
    assert_eq!(error_code(&unknown_during_outage), "invalid-token");
    s.issuer.set_unreachable(false);

    let audience = http::get(s.gateway.addr(), "/_/oidc/audience");
    assert_eq!(audience.status, 200);
    assert_eq!(audience.json()["audience"], AUDIENCE);
    let wrong_method = http::request(s.gateway.addr(), "GET", "/_/oidc/mint-token", &[], b"");
    assert_eq!(wrong_method.status, 405);
    let garbage = http::request(
        s.gateway.addr(),
        "POST",
        "/_/oidc/github/mint-token",
        &[("content-type", "application/json")],
        b"{\"jwt\": 1}",
    );
    assert_eq!(garbage.status, 422);
    assert_eq!(error_code(&garbage), "invalid-payload");

    // Switch the issuer off: exchanges are refused at once, without a restart.
    let before = s.gateway.revision();
    s.gateway.write_rules(&rules(&s.issuer).replace(
        "algorithms = [\"RS256\", \"ES256\"]",
        "algorithms = [\"RS256\", \"ES256\"]\nenabled = false",
    ));
    assert!(portcullis_e2e::wait_until(std::time::Duration::from_secs(10), || s
        .gateway
        .revision()
        != before));
    let off = mint(&s.gateway, &s.issuer.token(github_claims(&s.issuer)));
    assert_eq!(off.status, 422);
    assert_eq!(error_code(&off), "not-enabled");
}

#[test]
fn gitlab_google_and_buildkite_tokens_are_exchanged_by_their_own_publishers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    let github = Issuer::start(&work.join("github"));
    let gitlab = Issuer::start(&work.join("gitlab"));
    let google = Issuer::start(&work.join("google"));
    let buildkite = Issuer::start(&work.join("buildkite"));
    // One CA file trusted for every issuer's discovery.
    let cas = work.join("issuer-cas.pem");
    let all: String = [&github, &gitlab, &google, &buildkite]
        .iter()
        .map(|i| std::fs::read_to_string(i.ca_file()).expect("ca"))
        .collect();
    std::fs::write(&cas, all).expect("cas");
    let sink = Sink::start();
    let gw_dir = work.join("gateway");
    let rules = format!(
        r#"{base}
[issuers.gitlab-internal]
url = "{gitlab}"
kind = "gitlab"
algorithms = ["ES256"]

[issuers.google]
url = "{google}"
kind = "google"

[issuers.buildkite]
url = "{buildkite}"
kind = "buildkite"
algorithms = ["RS256"]

[[registries.pypi.publishers]]
id = "gitlab-tools"
issuer = "gitlab-internal"
projects = ["gl-tools"]
project_path = "platform/tools"
ci_config_path = ".gitlab-ci.yml"
pending = true

[[registries.pypi.publishers]]
id = "gcp-builder"
issuer = "google"
projects = ["gcp-pkg"]
email = "builder@acme.iam.gserviceaccount.com"
pending = true

[[registries.pypi.publishers]]
id = "bk-release"
issuer = "buildkite"
projects = ["bk-pkg"]
claims = {{ organization_slug = "acme", pipeline_slug = "release" }}
pending = true
"#,
        base = rules(&github),
        gitlab = gitlab.url(),
        google = google.url(),
        buildkite = buildkite.url(),
    );
    let gateway = Gateway::builder()
        .registry(RegistrySpec {
            extra: registry_extra(&gw_dir),
            ..RegistrySpec::new("pypi", "pypi", sink.addr())
        })
        .rules(&rules)
        .config(&gateway_config(&gw_dir, &github).replace(
            &format!("{:?}", github.ca_file().display().to_string()),
            &format!("{:?}", cas.display().to_string()),
        ))
        .start(&gw_dir);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;

    // GitLab (self-managed, ES256 only).
    let claims = gitlab.gitlab_claims(AUDIENCE, "platform/tools", ".gitlab-ci.yml");
    let minted = mint(&gateway, &gitlab.sign(&TokenSpec::es256(claims.clone())));
    assert_eq!(minted.status, 200, "{}", minted.text());
    let token = minted.json()["token"].as_str().expect("token").to_owned();
    let ok = upload(&gateway, &token, "gl-tools", "gl_tools-1.0-py3-none-any.whl");
    assert_eq!(ok.status, 200, "{}", ok.text());
    let not_ours = upload(&gateway, &token, "demo-pkg", "demo_pkg-1.0-py3-none-any.whl");
    assert_eq!(
        not_ours.status, 403,
        "a GitLab publisher's token does not cover GitHub's projects"
    );
    let mut fresh = claims;
    fresh["jti"] = json!("another-jti");
    let rs = mint(&gateway, &gitlab.sign(&TokenSpec::rs256(fresh.clone())));
    assert_eq!(rs.status, 422, "RS256 is not on this issuer's allow-list");
    assert_eq!(error_code(&rs), "invalid-token");
    fresh["jti"] = json!("third-jti");
    fresh["project_path"] = json!("platform/other");
    let other = mint(&gateway, &gitlab.sign(&TokenSpec::es256(fresh)));
    assert_eq!(other.status, 422);
    assert_eq!(error_code(&other), "invalid-publisher");
    // Key confusion across issuers: GitHub's issuer signs a token claiming GitLab's iss.
    let mut confused = github_claims(&github);
    confused["iss"] = json!(gitlab.url());
    let confused = mint(&gateway, &github.sign(&TokenSpec::es256(confused)));
    assert_eq!(confused.status, 422);
    assert_eq!(error_code(&confused), "invalid-token");

    // Google: no jti in its ID tokens; a replay is still refused.
    let google_claims = |email: &str, verified: bool| {
        json!({
            "iss": google.url(), "aud": AUDIENCE, "iat": now, "exp": now + 300,
            "sub": "112233445566778899", "azp": "112233445566778899",
            "email": email, "email_verified": verified,
        })
    };
    let token = google.token(google_claims("builder@acme.iam.gserviceaccount.com", true));
    let minted = mint(&gateway, &token);
    assert_eq!(minted.status, 200, "{}", minted.text());
    let replay = mint(&gateway, &token);
    assert_eq!(error_code(&replay), "invalid-reuse-token");
    let unverified = mint(
        &gateway,
        &google.token(google_claims("builder@acme.iam.gserviceaccount.com", false)),
    );
    assert_eq!(error_code(&unverified), "invalid-publisher");
    let stranger = mint(
        &gateway,
        &google.token(google_claims("intruder@evil.iam.gserviceaccount.com", true)),
    );
    assert_eq!(error_code(&stranger), "invalid-publisher");

    // Buildkite: exact claims.
    let bk = |pipeline: &str| {
        json!({
            "iss": buildkite.url(), "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 300,
            "jti": uuid_like(pipeline), "sub": format!("organization:acme:pipeline:{pipeline}"),
            "organization_slug": "acme", "pipeline_slug": pipeline,
        })
    };
    let minted = mint(&gateway, &buildkite.token(bk("release")));
    assert_eq!(minted.status, 200, "{}", minted.text());
    let token = minted.json()["token"].as_str().expect("token").to_owned();
    assert_eq!(
        upload(&gateway, &token, "bk-pkg", "bk_pkg-1.0-py3-none-any.whl").status,
        200
    );
    let nightly = mint(&gateway, &buildkite.token(bk("nightly")));
    assert_eq!(error_code(&nightly), "invalid-publisher");
}

fn uuid_like(seed: &str) -> String {
    format!("{}-{}", seed, std::process::id())
}

#[test]
fn legacy_mode_reads_and_missing_credentials() {
    // Refuse mode: a write without any credential is refused before the backend sees it.
    let strict = over_sink();
    let form = Form::pypi_upload("demo-pkg", "1.0", "demo_pkg-1.0-py3-none-any.whl", b"x");
    let anonymous = http::request(
        strict.gateway.addr(),
        "POST",
        "/",
        &[("content-type", &form.content_type())],
        &form.body,
    );
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    assert_eq!(anonymous.json()["code"], "credentials_missing");
    assert!(strict.sink.seen().is_empty(), "{:?}", strict.sink.seen());

    // Pass (legacy) mode: the client's own backend credential goes through unchanged, counted.
    let legacy = over_sink_with("pass");
    let own = http::basic_auth(pypiserver::USER, pypiserver::PASSWORD);
    let passed = http::request(
        legacy.gateway.addr(),
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", &own)],
        &form.body,
    );
    assert_eq!(passed.status, 200, "{}", passed.text());
    assert_eq!(legacy.sink.seen_at("/")[0].header("authorization"), Some(own.as_str()));
    assert_eq!(
        legacy
            .gateway
            .metric_reaching("portcullis_legacy_credential_writes_total{registry=\"pypi\"}", 1.0),
        1.0
    );
    assert_eq!(legacy.gateway.decisions(1)[0]["credential"], "legacy");

    // Reads: a valid upload token is swapped for the backend's credential, anything else that
    // looks like an upload token is removed; other credentials pass.
    let minted = mint(&legacy.gateway, &legacy.issuer.token(github_claims(&legacy.issuer)));
    let token = minted.json()["token"].as_str().expect("token").to_owned();
    let read = |auth: &str| {
        http::request(
            legacy.gateway.addr(),
            "GET",
            "/simple/demo-pkg/",
            &[("authorization", auth)],
            b"",
        )
    };
    assert_eq!(read(&http::basic_auth("__token__", &token)).status, 200);
    assert_eq!(read(&http::basic_auth("__token__", "pcul_k1.forged.sig")).status, 200);
    assert_eq!(read("Bearer some-backend-token").status, 200);
    let seen: Vec<Option<String>> = legacy
        .sink
        .seen_at("/simple/demo-pkg/")
        .iter()
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(
        seen,
        vec![Some(own.clone()), None, Some("Bearer some-backend-token".to_owned())],
        "swapped, removed, passed"
    );
}
