//! Trusted publishing with the real npm CLI (11) in a simulated GitHub Actions environment: npm
//! performs its own OIDC exchange against the gateway and publishes to a real Verdaccio, which
//! only ever sees its own credential. A failing exchange makes the publish fail with the
//! exchange's reason in what npm prints at its default log level.

use std::path::{Path, PathBuf};
use std::process::Output;

use portcullis_e2e::gateway::{trusted_publishing_config, Gateway, RegistrySpec};
use portcullis_e2e::oidc::{env_for_github_actions, CiTokenEndpoint, Issuer};
use portcullis_e2e::verdaccio::Verdaccio;
use serde_json::json;

struct Setup {
    _dir: tempfile::TempDir,
    work: PathBuf,
    _issuer: Issuer,
    endpoint: CiTokenEndpoint,
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
"#,
        url = issuer.url()
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
        .config(&trusted_publishing_config(&gw_dir.join("keys"), issuer.ca_file()))
        .start(&gw_dir);
    // No credential at all in the npm configuration: the exchange is the only way in.
    let npmrc = work.join("npmrc");
    std::fs::write(&npmrc, format!("registry={}/\n", gateway.url())).expect("npmrc");
    Setup {
        _dir: dir,
        work,
        _issuer: issuer,
        endpoint,
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

fn package(s: &Setup, name: &str, version: &str) -> PathBuf {
    let dir = s.work.join(format!("src-{}", name.replace('/', "_")));
    std::fs::create_dir_all(&dir).expect("package dir");
    std::fs::write(
        dir.join("package.json"),
        json!({"name": name, "version": version, "main": "index.js", "license": "MIT"}).to_string(),
    )
    .expect("package.json");
    std::fs::write(dir.join("index.js"), format!("module.exports = {name:?};\n")).expect("index.js");
    dir
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
        let out = npm_publish_in_ci(&s, &package(&s, name, "1.0.0"));
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
    let out = npm_publish_in_ci(&s, &package(&s, "tp-unlisted", "1.0.0"));
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
