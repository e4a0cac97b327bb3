//! The npm half: a CI job publishes the real `sigstore@2.3.1` tarball with its real provenance
//! through an upload token it exchanged for its ID token; the npm CLI's own trusted publishing
//! in a GitHub Actions–like job; and unpublish inside and after the 72-hour window.

use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_e2e::npm_provenance::{self, REPOSITORY};
use portcullis_e2e::oidc::{env_for_github_actions, CiTokenEndpoint};
use portcullis_e2e::{http, sha256_hex};
use serde_json::json;

use crate::decided::{self, Decided};
use crate::report::{clip, Report, Row};
use crate::stack::{widgets_workflow, Stack, NPM_AUDIENCE};

/// Runs the npm steps.
pub fn run(stack: &Stack, report: &mut Report) {
    provenance(stack, report);
    let ci = Ci::start(stack);
    trusted_publishing(stack, &ci, report);
    deletion(stack, &ci, report);
}

fn provenance(stack: &Stack, report: &mut Report) {
    let signer = &stack.npm_signer;
    report.step("npm: sigstore@2.3.1 with its real provenance, published with an exchanged token");
    report.line(format!(
        "The CI job ({} {}) exchanges its ID token at /-/npm/v1/oidc/token/exchange/package/sigstore, \
         then sends what `npm publish --provenance` sends (the CLI cannot sign offline).",
        signer.repository, signer.workflow
    ));
    let claims = stack.ci_claims(NPM_AUDIENCE, signer);
    let id_token = stack.issuer.token(claims);
    let exchanged = http::request(
        stack.gateway.addr(),
        "POST",
        "/-/npm/v1/oidc/token/exchange/package/sigstore",
        &[("authorization", &format!("Bearer {id_token}"))],
        b"",
    );
    let token = exchanged.json()["token"].as_str().unwrap_or_default().to_owned();
    report.expect(
        exchanged.status == 201 && !token.is_empty(),
        format!("exchange: {}", exchanged.text()),
    );
    let (tarball, bundle) = npm_provenance::genuine();
    let body = npm_provenance::publish_body("sigstore", "2.3.1", &tarball, REPOSITORY, Some(&bundle));
    let minted = decided::last_exchange(stack);
    let before = decided::mark(stack);
    let published = http::request(
        stack.gateway.addr(),
        "PUT",
        "/sigstore",
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {token}")),
        ],
        &body,
    );
    report.expect(
        matches!(published.status, 200 | 201),
        format!("publish: {}", published.text()),
    );
    let tarball_path = stack.verdaccio.storage.join("sigstore/sigstore-2.3.1.tgz");
    let same = std::fs::read(&tarball_path).map(|b| sha256_hex(&b)).ok() == Some(sha256_hex(&tarball));
    report.expect(same, "Verdaccio holds the tarball byte for byte");
    report.line(format!(
        "exchange -> {}; PUT /sigstore -> {}; Verdaccio holds sigstore-2.3.1.tgz byte for byte",
        exchanged.status, published.status
    ));
    let served = http::get(stack.gateway.addr(), "/-/npm/v1/attestations/sigstore@2.3.1");
    let predicate = served.json()["attestations"][0]["predicateType"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    report.expect(
        served.status == 200 && served.text().contains(bundle.trim()),
        "the attestations endpoint serves the bundle as published",
    );
    report.line(format!(
        "GET /-/npm/v1/attestations/sigstore@2.3.1 -> {} ({predicate}); Verdaccio would refuse the bundle, so the gateway keeps it",
        served.status
    ));
    report.row(Row {
        registry: "npm",
        tried: "exchange a CI job's OIDC token".into(),
        client: "HTTP",
        decision: format!(
            "{} {}",
            if token.is_empty() { "refused" } else { "minted" },
            exchanged.status
        ),
        why: minted,
        stored: "-".into(),
    });
    let decision = decided::since(stack, before, "sigstore");
    report.row(row(
        "sigstore@2.3.1 + real SLSA provenance",
        "publish body",
        decision.as_ref(),
        stored(stack, "sigstore"),
    ));
}

/// A GitHub Actions–like job of the demo's own packages, and a maintainer with Verdaccio's token.
struct Ci {
    endpoint: CiTokenEndpoint,
    ci_npmrc: PathBuf,
    maintainer_npmrc: PathBuf,
}

impl Ci {
    fn start(stack: &Stack) -> Ci {
        let workflow = widgets_workflow();
        let mut claims = stack.ci_claims(NPM_AUDIENCE, &workflow);
        // A private repository: the npm CLI adds no Sigstore provenance (it would go online).
        claims["repository_visibility"] = json!("private");
        let endpoint = CiTokenEndpoint::start(&stack.issuer, claims);
        let ci_npmrc = stack.work.join("ci.npmrc");
        std::fs::write(&ci_npmrc, format!("registry={}/\n", stack.gateway.url())).expect("npmrc");
        let maintainer_npmrc = stack.work.join("maintainer.npmrc");
        portcullis_e2e::npm::write_npmrc(
            &maintainer_npmrc,
            &stack.gateway,
            &stack.verdaccio.token(stack.verdaccio.addr()),
        );
        Ci {
            endpoint,
            ci_npmrc,
            maintainer_npmrc,
        }
    }

    /// `npm publish` of `name@version` as the CI job (no credential: the OIDC exchange).
    fn publish(&self, stack: &Stack, name: &str, version: &str, dependencies: serde_json::Value) -> (bool, String) {
        let dir = package(&stack.work, name, version, dependencies);
        let out = npm(stack, &self.ci_npmrc, &dir)
            // `--tag latest` would be refused by npm itself for a version below the latest.
            .args(["publish", "--access", "public", "--tag", "demo"])
            .envs(env_for_github_actions(&self.endpoint))
            .env("npm_config_provenance", "false")
            .output()
            .expect("run npm");
        printed(out)
    }

    /// `npm unpublish <spec>` as the maintainer, with Verdaccio's own token.
    fn unpublish(&self, stack: &Stack, spec: &str) -> (bool, String) {
        printed(
            npm(stack, &self.maintainer_npmrc, &stack.work)
                .args(["unpublish", spec])
                .output()
                .expect("run npm"),
        )
    }
}

fn trusted_publishing(stack: &Stack, ci: &Ci, report: &mut Report) {
    report.step("npm CLI trusted publishing: `npm publish` in a GitHub Actions–like job, no token configured");
    let before = decided::mark(stack);
    for (name, version, dependencies) in [
        ("demo-widget", "1.0.0", json!({})),
        ("demo-widget", "1.1.0", json!({})),
        ("demo-widget", "1.2.0", json!({})),
        ("demo-app", "1.0.0", json!({"demo-widget": "^1.1.0"})),
    ] {
        let (ok, out) = ci.publish(stack, name, version, dependencies);
        report.expect(ok, format!("npm publish {name}@{version}: {out}"));
        report.line(format!(
            "npm publish {name}@{version}: {}",
            if ok { "published" } else { "failed" }
        ));
    }
    report.line("npm exchanged the job's ID token itself; Verdaccio only ever saw the gateway's own token.");
    let decision = decided::since(stack, before, "demo-app");
    report.row(row(
        "npm publish from CI (OIDC), 4 versions",
        "npm CLI",
        decision.as_ref(),
        format!("{}; {}", stored(stack, "demo-widget"), stored(stack, "demo-app")),
    ));
}

fn deletion(stack: &Stack, ci: &Ci, report: &mut Report) {
    report.step("npm unpublish inside the 72-hour window, then a re-publish of the deleted version");
    let (ok, out) = ci.unpublish(stack, "demo-widget@1.0.0");
    report.expect(ok, format!("unpublish inside the window: {out}"));
    let gone = !stack
        .verdaccio
        .storage
        .join("demo-widget/demo-widget-1.0.0.tgz")
        .exists();
    report.expect(gone, "Verdaccio still holds demo-widget 1.0.0");
    report.line(format!(
        "npm unpublish demo-widget@1.0.0: {} (tombstone written)",
        if ok && gone {
            "allowed, gone from Verdaccio"
        } else {
            "failed"
        }
    ));
    report.row(deletion_row(
        stack,
        "unpublish demo-widget@1.0.0 after minutes",
        "demo-widget@1.0.0",
    ));
    let before = decided::mark(stack);
    let (ok, out) = ci.publish(stack, "demo-widget", "1.0.0", json!({}));
    let decision = decided::since(stack, before, "demo-widget");
    let why = npm_error(&out);
    report.expect(
        !ok && why.contains("409"),
        format!("re-publish of a deleted version: {out}"),
    );
    report.line(format!("npm publish demo-widget@1.0.0 again: {}", clip(&why, 330)));
    report.expect(
        decision.as_ref().is_some_and(|d| d.code == "version_deleted"),
        "the gateway logged a version_deleted refusal",
    );
    report.row(row(
        "re-publish the deleted demo-widget@1.0.0",
        "npm CLI",
        decision.as_ref(),
        stored(stack, "demo-widget"),
    ));

    report.step("npm unpublish after the window, of a version another package depends on");
    report.line("(the demo moves the gateway's clock 73 hours ahead through its test-only admin endpoint)");
    stack.gateway.set_clock_offset(73 * 3600);
    let (ok, out) = ci.unpublish(stack, "demo-widget@1.1.0");
    let why = npm_error(&out);
    let kept = stack
        .verdaccio
        .storage
        .join("demo-widget/demo-widget-1.1.0.tgz")
        .exists();
    report.expect(
        !ok && kept,
        format!("unpublish after the window with a dependent: {out}"),
    );
    report.expect(
        why.contains("dependent"),
        format!("the refusal names the dependent: {out}"),
    );
    report.line(format!("npm unpublish demo-widget@1.1.0: {}", clip(&why, 330)));
    report.row(deletion_row(
        stack,
        "unpublish demo-widget@1.1.0 after 73h",
        "demo-widget@1.1.0",
    ));
}

/// A publish row of the summary table, from the gateway's decision.
fn row(tried: &str, client: &'static str, decided: Option<&Decided>, stored: String) -> Row {
    Row {
        registry: "npm",
        tried: tried.into(),
        client,
        decision: decided.map_or("no decision logged".into(), Decided::verdict),
        why: decided.map_or(String::new(), Decided::why),
        stored,
    }
}

/// An unpublish row, from the deletion rules' audit record of `delete_version` of `target`.
fn deletion_row(stack: &Stack, tried: &str, target: &str) -> Row {
    let (name, _) = target.split_once('@').unwrap_or((target, ""));
    let mut row = row(
        tried,
        "npm CLI",
        decided::deletion(stack, "npm", name, "delete_version", target).as_ref(),
        stored(stack, name),
    );
    row.decision = row.decision.replace("no decision logged", "no audit record");
    row
}

/// The versions of `name` whose tarballs Verdaccio holds, e.g. `demo-widget 1.1.0, 1.2.0`.
fn stored(stack: &Stack, name: &str) -> String {
    let prefix = format!("{name}-");
    let versions: Vec<String> = portcullis_e2e::list_files(&stack.verdaccio.storage.join(name))
        .into_iter()
        .filter_map(|f| f.strip_prefix(&prefix)?.strip_suffix(".tgz").map(str::to_owned))
        .collect();
    if versions.is_empty() {
        "nothing".into()
    } else {
        format!("{name} {}", versions.join(", "))
    }
}

/// A package folder for `name@version` with `dependencies`.
fn package(work: &Path, name: &str, version: &str, dependencies: serde_json::Value) -> PathBuf {
    let dir = work.join(format!("src-{name}-{version}"));
    std::fs::create_dir_all(&dir).expect("package folder");
    let manifest =
        json!({"name": name, "version": version, "main": "index.js", "license": "MIT", "dependencies": dependencies});
    std::fs::write(dir.join("package.json"), manifest.to_string()).expect("package.json");
    std::fs::write(dir.join("index.js"), format!("module.exports = {version:?};\n")).expect("index.js");
    dir
}

fn npm(stack: &Stack, npmrc: &Path, cwd: &Path) -> Command {
    portcullis_e2e::npm::npm(&stack.work, npmrc, cwd)
}

fn printed(out: std::process::Output) -> (bool, String) {
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The gateway's message as npm shows it: the text after the URL on npm's first
/// `npm error <status> <reason> - <METHOD> <url> - <message>` line, else its first error line.
fn npm_error(out: &str) -> String {
    let errors: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("npm error ")).collect();
    errors
        .iter()
        .find_map(|l| {
            let status = l.get(..3).filter(|s| s.chars().all(|c| c.is_ascii_digit()))?;
            let (_, after_method) = l.split_once(" - ")?;
            let (_, message) = after_method.split_once(" - ")?;
            Some(format!("{status} {message}"))
        })
        .or_else(|| errors.first().map(|l| (*l).to_owned()))
        .unwrap_or_else(|| out.trim().to_owned())
}
