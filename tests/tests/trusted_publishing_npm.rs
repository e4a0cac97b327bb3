//! Trusted publishing with the real npm CLI (11) in a simulated GitHub Actions environment and
//! a simulated GitLab CI one: npm performs its own OIDC exchange against the gateway and
//! publishes to a real Verdaccio, which only ever sees its own credential. A failing exchange
//! makes the publish fail with the exchange's reason in what npm prints.
//!
//! What npm 11.19.1 does (`lib/utils/oidc.js`): only when `ci-info` detects GitHub Actions
//! (`GITHUB_ACTIONS`), GitLab (`GITLAB_CI`) or CircleCI, it takes the ID token from
//! `NPM_ID_TOKEN` — the variable a GitLab job's `id_tokens:` declares, whose `aud` the job
//! chooses (`npm:<registry host>`, as npm documents) — or, in GitHub Actions only and when that
//! variable is unset, asks `ACTIONS_ID_TOKEN_REQUEST_URL` for one with audience
//! `npm:<registry host>`. It POSTs it as a bearer token to
//! `/-/npm/v1/oidc/token/exchange/package/<escaped name>` and publishes with the token in the
//! answer. Any failure is swallowed (logged at verbose level only) and npm goes on with the
//! credential it already has; with none, it stops with `ENEEDAUTH` before publishing. It turns
//! provenance on by itself for a public GitHub repository, or a public GitLab project when
//! `SIGSTORE_ID_TOKEN` is set; these tests set `provenance=false` (Sigstore is not reachable).

use std::path::{Path, PathBuf};
use std::process::Output;

use portcullis_e2e::gateway::{trusted_publishing_config, Gateway, RegistrySpec};
use portcullis_e2e::npm::write_package;
use portcullis_e2e::oidc::{env_for_github_actions, env_for_gitlab_ci, CiTokenEndpoint, Issuer};
use portcullis_e2e::verdaccio::Verdaccio;
use serde_json::json;

struct Setup {
    _dir: tempfile::TempDir,
    work: PathBuf,
    _issuer: Issuer,
    endpoint: CiTokenEndpoint,
    gitlab: Issuer,
    backend: Verdaccio,
    gateway: Gateway,
    npmrc: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let issuer = Issuer::start(&work.join("issuer"));
    // The npm CLI asks for the audience npm:<registry host>; the template's aud is replaced.
    let mut claims = issuer.github_claims("npm:127.0.0.1", "acme/widgets", "1234", "release.yml");
    // A private repository: npm does not try to add Sigstore provenance (no network here).
    claims["repository_visibility"] = json!("private");
    let endpoint = CiTokenEndpoint::start(&issuer, claims);
    // A self-managed GitLab as a second issuer; the gateway trusts both issuers' CAs.
    let gitlab = Issuer::start(&work.join("gitlab"));
    let cas = work.join("issuer-cas.pem");
    let both: String = [&issuer, &gitlab]
        .iter()
        .map(|i| std::fs::read_to_string(i.ca_file()).expect("issuer CA"))
        .collect();
    std::fs::write(&cas, both).expect("issuer CAs");
    let backend = Verdaccio::start(&work.join("verdaccio"));
    let gw_dir = work.join("gateway");
    std::fs::create_dir_all(&gw_dir).expect("gateway dir");
    // The backend's own credential: a Verdaccio token asked of Verdaccio directly.
    let token_file = gw_dir.join("backend-token");
    std::fs::write(&token_file, backend.token(backend.addr())).expect("token file");
    let rules = format!(
        r#"
[issuers.gha]
url = "{url}"
kind = "github"

[registries.npm]
audience = "npm:127.0.0.1"

[[registries.npm.publishers]]
id = "widgets-npm"
issuer = "gha"
projects = ["tp-demo", "@acme/tp-scoped"]
repository = "acme/widgets"
repository_owner_id = "1234"
workflow = "release.yml"
pending = true

[issuers.gitlab]
url = "{gitlab}"
kind = "gitlab"

[[registries.npm.publishers]]
id = "widgets-gitlab"
issuer = "gitlab"
projects = ["tp-gitlab", "tp-gitlab-next"]
project_path = "acme/widgets"
ci_config_path = ".gitlab-ci.yml"
pending = true
"#,
        url = issuer.url(),
        gitlab = gitlab.url(),
    );
    let gateway = Gateway::builder()
        .registry(RegistrySpec {
            extra: format!(
                "client_credentials = \"refuse\"\nbackend_credentials = {{ kind = \"bearer\", token_file = {:?} }}\n",
                token_file.display().to_string()
            ),
            ..RegistrySpec::new("npm", "npm", backend.addr())
        })
        .rules(&rules)
        .config(&trusted_publishing_config(&gw_dir.join("keys"), &cas))
        .start(&gw_dir);
    // No credential at all in the npm configuration: the exchange is the only way in.
    let npmrc = work.join("npmrc");
    std::fs::write(&npmrc, format!("registry={}/\n", gateway.url())).expect("npmrc");
    Setup {
        _dir: dir,
        work,
        _issuer: issuer,
        endpoint,
        gitlab,
        backend,
        gateway,
        npmrc,
    }
}

/// `npm publish` in `cwd` as a GitHub Actions job would run it.
fn npm_publish_in_ci(s: &Setup, cwd: &Path) -> Output {
    portcullis_e2e::npm::npm(&s.work, &s.npmrc, cwd)
        .args(["publish", "--access", "public"])
        .envs(env_for_github_actions(&s.endpoint))
        .env("npm_config_provenance", "false")
        .output()
        .expect("run npm")
}

/// The variables by which the npm CLI's `ci-info` would detect a CI vendor other than GitLab
/// (GitHub Actions, CircleCI), and GitHub's token request endpoint: removed from a GitLab job's
/// environment in case the tests themselves run in one of those.
const OTHER_CI_VARS: [&str; 4] = [
    "GITHUB_ACTIONS",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "CIRCLECI",
];

/// `npm publish` in `cwd` as a GitLab CI job whose `id_tokens:` gave it `id_token` (minted
/// from `claims`) in `NPM_ID_TOKEN` would run it, at npm's verbose log level (where npm logs
/// why an exchange failed).
fn npm_publish_in_gitlab_ci(s: &Setup, cwd: &Path, id_token: &str, claims: &serde_json::Value) -> Output {
    let mut command = portcullis_e2e::npm::npm(&s.work, &s.npmrc, cwd);
    for name in OTHER_CI_VARS {
        command.env_remove(name);
    }
    command
        .args(["publish", "--access", "public", "--loglevel", "verbose"])
        .envs(env_for_gitlab_ci(id_token, claims))
        .env("npm_config_provenance", "false")
        .output()
        .expect("run npm")
}

fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn npm_cli_exchanges_its_oidc_token_and_publishes_to_verdaccio() {
    let s = setup();
    for name in ["tp-demo", "@acme/tp-scoped"] {
        let out = npm_publish_in_ci(&s, &write_package(&s.work, name, "1.0.0"));
        assert!(out.status.success(), "npm publish {name}:\n{}", printed(&out));
    }
    let stored = s.backend.stored();
    assert!(stored.iter().any(|f| f.ends_with("tp-demo-1.0.0.tgz")), "{stored:?}");
    assert!(stored.iter().any(|f| f.ends_with("tp-scoped-1.0.0.tgz")), "{stored:?}");
    assert_eq!(s.endpoint.issued().len(), 2, "npm fetched one ID token per publish");
    let decisions = s.gateway.decisions(2);
    for d in &decisions {
        assert_eq!(d["credential"], "upload_token", "{d}");
        assert_eq!(d["publisher"], "widgets-npm", "{d}");
        assert_eq!(d["outcome"], "allow", "{d}");
    }
    assert!(
        s.gateway.metric(
            "portcullis_oidc_exchanges_total{issuer=\"gha\",outcome=\"minted\",protocol=\"npm\",registry=\"npm\"}"
        ) >= 2.0
    );
    // Verdaccio refuses publishes without its own credential, so the publishes landing show
    // the gateway swapped the upload token for the backend's token.
    let anonymous = portcullis_e2e::http::request(
        s.backend.addr(),
        "PUT",
        "/tp-anonymous",
        &[("content-type", "application/json")],
        br#"{"name":"tp-anonymous","versions":{}}"#,
    );
    assert!(matches!(anonymous.status, 401 | 403), "{}", anonymous.text());
}

#[test]
fn a_failed_exchange_explains_the_refused_publish() {
    let s = setup();
    // actions/setup-node writes an .npmrc with a placeholder token (NODE_AUTH_TOKEN defaults to
    // XXXXX-XXXXX-XXXXX-XXXXX); npm falls back to it when the exchange fails.
    portcullis_e2e::npm::write_npmrc(&s.npmrc, &s.gateway, "XXXXX-XXXXX-XXXXX-XXXXX");
    let out = npm_publish_in_ci(&s, &write_package(&s.work, "tp-unlisted", "1.0.0"));
    let text = printed(&out);
    assert!(!out.status.success(), "{text}");
    // npm swallows the exchange error and publishes without a token; the gateway refuses that
    // publish with the exchange's reason, which npm prints at its default log level.
    assert!(
        text.contains("trusted publishing exchange for tp-unlisted failed"),
        "{text}"
    );
    assert!(text.contains("does not list package"), "{text}");
    assert!(text.contains("E401"), "{text}");
    assert!(
        !s.backend.stored().iter().any(|f| f.contains("tp-unlisted")),
        "{:?}",
        s.backend.stored()
    );
}

#[test]
fn npm_cli_exchanges_its_gitlab_ci_token_and_publishes_to_verdaccio() {
    let s = setup();
    // The audience a GitLab job declares for npm: `npm:<registry host>`.
    let audience = "npm:127.0.0.1";
    let claims = s.gitlab.gitlab_claims(audience, "acme/widgets", ".gitlab-ci.yml");
    let id_token = s.gitlab.token(claims.clone());
    let dir = write_package(&s.work, "tp-gitlab", "1.0.0");
    let expected = std::fs::read(portcullis_e2e::npm::pack(&s.work, &s.npmrc, &dir)).expect("packed tarball");
    let out = npm_publish_in_gitlab_ci(&s, &dir, &id_token, &claims);
    let text = printed(&out);
    assert!(out.status.success(), "npm publish under GitLab CI:\n{text}");
    assert!(text.contains("Successfully retrieved and set token"), "{text}");
    let packument = s.backend.assert_stored("tp-gitlab", "1.0.0", &expected);
    assert_eq!(packument["dist-tags"]["latest"], "1.0.0", "{}", packument["dist-tags"]);

    let decision = &s.gateway.decisions(1)[0];
    assert_eq!(decision["project"], "tp-gitlab", "{decision}");
    assert_eq!(decision["credential"], "upload_token", "{decision}");
    assert_eq!(decision["publisher"], "widgets-gitlab", "{decision}");
    assert_eq!(decision["outcome"], "allow", "{decision}");
    assert_eq!(
        s.gateway.metric(
            "portcullis_oidc_exchanges_total{issuer=\"gitlab\",outcome=\"minted\",protocol=\"npm\",registry=\"npm\"}"
        ),
        1.0
    );
    // The backend never saw the CI token: Verdaccio accepted the publish as its own user,
    // which neither the ID token nor the gateway's upload token is (Verdaccio writes its
    // request log lines a little after answering).
    let mut verdaccio_log = String::new();
    let as_npmuser = portcullis_e2e::wait_until(std::time::Duration::from_secs(5), || {
        verdaccio_log = s.backend.log();
        verdaccio_log
            .lines()
            .any(|l| l.contains("user: npmuser") && l.contains("'PUT /tp-gitlab'"))
    });
    assert!(
        as_npmuser,
        "Verdaccio did not take the publish as its own user:\n{verdaccio_log}"
    );
    assert!(!verdaccio_log.contains(&id_token), "the ID token reached Verdaccio");

    // The same job publishing again: the ID token is used up (its jti was exchanged).
    let next = write_package(&s.work, "tp-gitlab-next", "1.0.0");
    let replayed = npm_publish_in_gitlab_ci(&s, &next, &id_token, &claims);
    let text = printed(&replayed);
    assert!(!replayed.status.success(), "{text}");
    assert!(text.contains("Failed token exchange request"), "{text}");
    assert_eq!(
        s.gateway.metric(
            "portcullis_oidc_exchanges_total{issuer=\"gitlab\",outcome=\"jti_replayed\",protocol=\"npm\",registry=\"npm\"}"
        ),
        1.0
    );
    assert!(
        s.backend.packument("tp-gitlab-next").is_none(),
        "{:?}",
        s.backend.stored()
    );
}

#[test]
fn a_gitlab_ci_token_for_another_project_or_pipeline_file_is_refused() {
    let s = setup();
    let dir = write_package(&s.work, "tp-gitlab", "1.0.0");
    let audience = "npm:127.0.0.1";
    // Another project, then the publisher's project with another top-level CI file.
    let cases = [
        ("acme/other", ".gitlab-ci.yml", "the project is not acme/widgets"),
        (
            "acme/widgets",
            "ci/release.yml",
            "the CI configuration is not .gitlab-ci.yml of acme/widgets",
        ),
    ];
    for (round, (project_path, ci_config_path, reason)) in cases.into_iter().enumerate() {
        let claims = s.gitlab.gitlab_claims(audience, project_path, ci_config_path);
        let out = npm_publish_in_gitlab_ci(&s, &dir, &s.gitlab.token(claims.clone()), &claims);
        let text = printed(&out);
        assert!(!out.status.success(), "{project_path} {ci_config_path}:\n{text}");
        // npm logs the exchange's refusal (verbose) and, with no credential left, stops
        // before sending the publish.
        assert!(text.contains("Failed token exchange request"), "{text}");
        assert!(
            text.contains(reason),
            "npm did not print the gateway's reason {reason:?}:\n{text}"
        );
        assert!(text.contains("ENEEDAUTH"), "{text}");
        assert_eq!(
            s.gateway.metric(
                "portcullis_oidc_exchanges_total{issuer=\"gitlab\",outcome=\"no_publisher\",protocol=\"npm\",registry=\"npm\"}"
            ),
            (round + 1) as f64
        );
    }
    assert!(s.backend.packument("tp-gitlab").is_none(), "{:?}", s.backend.stored());
    assert!(
        !s.backend.stored().iter().any(|f| f.contains("tp-gitlab")),
        "{:?}",
        s.backend.stored()
    );
}
