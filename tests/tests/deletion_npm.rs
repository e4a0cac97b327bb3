//! Deletion rules on npm, through the gateway in front of a real Verdaccio with the real npm
//! CLI: unpublish inside the window, refused after it (a dependent, 300 downloads counted by
//! the gateway), deprecate, tombstones against re-publish and name takeover, the admin
//! override, unclassifiable deletes, shadow mode. The gateway's clock is moved forward through
//! its test-only admin endpoint instead of sleeping.

use std::path::{Path, PathBuf};

use portcullis_e2e::gateway::{admin_token_config, Gateway, RegistrySpec, ADMIN_TOKEN};
use portcullis_e2e::http;
use portcullis_e2e::verdaccio::Verdaccio;
use serde_json::{json, Value};

const HOUR: i64 = 3600;

struct Setup {
    _dir: tempfile::TempDir,
    work: PathBuf,
    backend: Verdaccio,
    gateway: Gateway,
    npmrc: PathBuf,
    token: String,
}

fn setup(rules: &str) -> Setup {
    setup_with(rules, "")
}

fn setup_with(rules: &str, config: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let backend = Verdaccio::start(&work.join("verdaccio"));
    let gateway = Gateway::builder()
        .registry(RegistrySpec::new("npm", "npm", backend.addr()))
        .rules(rules)
        .admin_config(&admin_token_config(&work.join("gateway")))
        .config(&format!("[testing]\nadjustable_clock = true\n{config}"))
        .start(&work.join("gateway"));
    let token = backend.token(backend.addr());
    let npmrc = work.join("npmrc");
    portcullis_e2e::npm::write_npmrc(&npmrc, &gateway, &token);
    Setup {
        _dir: dir,
        work,
        backend,
        gateway,
        npmrc,
        token,
    }
}

impl Setup {
    fn package(&self, name: &str, version: &str, dependencies: Value) -> PathBuf {
        let dir = self.work.join(format!("src-{}-{version}", name.replace('/', "-")));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("package.json"),
            json!({"name": name, "version": version, "main": "index.js", "license": "MIT", "dependencies": dependencies})
                .to_string(),
        )
        .expect("package.json");
        std::fs::write(dir.join("index.js"), format!("module.exports = {version:?};\n")).expect("index.js");
        dir
    }

    fn npm(&self, cwd: &Path, args: &[&str]) -> (bool, String) {
        let out = portcullis_e2e::npm::npm(&self.work, &self.npmrc, cwd)
            .args(args)
            .output()
            .expect("npm");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn publish(&self, name: &str, version: &str, dependencies: Value) -> (bool, String) {
        let dir = self.package(name, version, dependencies);
        self.npm(&dir, &["publish"])
    }

    fn stored(&self, name: &str, version: &str) -> bool {
        let unscoped = name.rsplit('/').next().unwrap_or(name);
        self.backend
            .storage
            .join(name)
            .join(format!("{unscoped}-{version}.tgz"))
            .exists()
    }

    /// The versions Verdaccio has for `name` (read directly, not through the gateway).
    fn versions(&self, name: &str) -> Vec<String> {
        let r = http::get(self.backend.addr(), &format!("/{name}"));
        if r.status != 200 {
            return Vec::new();
        }
        r.json()["versions"]
            .as_object()
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn revision(&self, name: &str) -> String {
        http::get(self.backend.addr(), &format!("/{name}?write=true")).json()["_rev"]
            .as_str()
            .unwrap_or("0-0")
            .to_owned()
    }

    fn request(&self, method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> http::Response {
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("authorization", auth.as_str()), ("content-type", "application/json")];
        headers.extend_from_slice(extra);
        http::request(self.gateway.addr(), method, path, &headers, body)
    }
}

fn assert_published(s: &Setup, name: &str, version: &str) {
    let (ok, out) = s.publish(name, version, json!({}));
    assert!(ok, "publish {name}@{version}: {out}");
}

#[test]
fn unpublish_follows_the_window_dependents_and_downloads_and_leaves_tombstones() {
    // Verdaccio keeps no maintainers list, so the number of owners is unknown; the default
    // (refuse on unknown facts) would refuse every unpublish after the window.
    let s = setup("[registries.npm.deletion]\nunknown_facts = \"ignore\"\n");
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        assert_published(&s, "base", v);
    }
    let (ok, out) = s.publish("app", "1.0.0", json!({"base": "^1.0.0"}));
    assert!(ok, "{out}");
    for v in ["1.0.0", "1.1.0"] {
        assert_published(&s, "solo", v);
    }

    // Inside the 72 hours: self-service unpublish passes and the version is gone.
    let (ok, out) = s.npm(&s.work, &["unpublish", "base@1.0.0"]);
    assert!(ok, "unpublish inside the window: {out}");
    assert!(!s.versions("base").contains(&"1.0.0".to_owned()));
    assert!(
        !s.stored("base", "1.0.0"),
        "the tarball is gone from Verdaccio's storage"
    );

    // Deprecate is a yank: it passes.
    let (ok, out) = s.npm(&s.work, &["deprecate", "base@1.1.0", "use 1.2.0"]);
    assert!(ok, "deprecate: {out}");

    // 73 hours later.
    s.gateway.set_clock_offset(73 * HOUR);

    // base has a dependent (app, published through the gateway): refused, still there.
    let (ok, out) = s.npm(&s.work, &["unpublish", "base@1.2.0"]);
    assert!(!ok, "unpublish after the window with a dependent passed: {out}");
    assert!(out.contains("1 dependent"), "{out}");
    assert!(out.contains("npm deprecate"), "the refusal points to deprecate: {out}");
    assert!(s.versions("base").contains(&"1.2.0".to_owned()));
    assert!(s.stored("base", "1.2.0"));

    // 300 downloads of solo@1.0.0 through the gateway: refused; solo@1.1.0, never
    // downloaded, passes.
    for _ in 0..300 {
        let r = http::get(s.gateway.addr(), "/solo/-/solo-1.0.0.tgz");
        assert_eq!(r.status, 200);
    }
    let (ok, out) = s.npm(&s.work, &["unpublish", "solo@1.0.0"]);
    assert!(!ok, "unpublish with 300 downloads passed: {out}");
    assert!(out.contains("300 downloads"), "{out}");
    assert!(s.stored("solo", "1.0.0"));
    let (ok, out) = s.npm(&s.work, &["unpublish", "solo@1.1.0"]);
    assert!(ok, "unpublish after the window, no downloads, no dependents: {out}");
    assert!(!s.stored("solo", "1.1.0"));

    // Deleted versions are never published again.
    let dir = s.package("base", "1.0.0", json!({}));
    let (ok, out) = s.npm(&dir, &["publish", "--tag", "old"]);
    assert!(!ok, "re-publish of a deleted version passed: {out}");
    assert!(out.contains("can never be uploaded again"), "{out}");
    assert!(!s.stored("base", "1.0.0"));

    // A whole package unpublished (inside its own window) keeps its name reserved.
    assert_published(&s, "gone", "1.0.0");
    let (ok, out) = s.npm(&s.work, &["unpublish", "gone", "--force"]);
    assert!(ok, "unpublish of a whole young package: {out}");
    assert!(s.versions("gone").is_empty());
    let (ok, out) = s.publish("gone", "2.0.0", json!({}));
    assert!(!ok, "takeover of a deleted name passed: {out}");
    assert!(out.contains("name is reserved"), "{out}");
    assert!(!s.stored("gone", "2.0.0"));

    // The audit log has every decision, with rule and facts.
    let audit = s.gateway.audit("npm", "base", 8);
    let actions: Vec<(String, String, String)> = audit
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap_or_default().to_owned(),
                r["target"].as_str().unwrap_or_default().to_owned(),
                r["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("delete_version", "base@1.0.0", "allow"),
        ("delete_file", "base-1.0.0.tgz", "allow"),
        ("yank", "base@1.1.0", "allow"),
        ("delete_version", "base@1.2.0", "refuse"),
        ("upload", "base@1.0.0 base-1.0.0.tgz", "refuse"),
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, t, o)| a == expected.0 && t.starts_with(expected.1) && o == expected.2),
            "{expected:?} not in {actions:?}"
        );
    }
    let refused = audit
        .iter()
        .find(|r| r["action"] == "delete_version" && r["outcome"] == "refuse")
        .expect("refusal record");
    assert_eq!(refused["code"], "deletion_refused");
    assert_eq!(refused["actor"], "legacy-credential");
    assert!(refused["rules_revision"].as_str().is_some_and(|r| r.len() == 16));
    // The JSON-lines file holds the same records.
    let lines = std::fs::read_to_string(s.work.join("gateway/data/audit.jsonl")).expect("audit file");
    assert!(lines.lines().count() >= audit.len());
    eprintln!("audit log of one scenario (newest first):");
    for record in &audit {
        eprintln!("{record}");
    }
}

#[test]
fn admin_override_needs_a_reason_and_is_audited() {
    let hook = portcullis_e2e::sink::Sink::start();
    let s = setup_with(
        "[registries.npm.deletion]\nmode = \"yank_only\"\n",
        &format!("[audit]\nwebhook_url = \"http://{}/hook\"\n", hook.addr()),
    );
    assert_published(&s, "locked", "1.0.0");
    let path = format!("/locked/-rev/{}", s.revision("locked"));

    let refused = s.request("DELETE", &path, &[], b"");
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.json()["code"], "deletion_yank_only");

    let wrong = s.request("DELETE", &path, &[("x-portcullis-admin-token", "guess")], b"");
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    assert_eq!(wrong.json()["code"], "admin_unauthenticated");

    let no_reason = s.request("DELETE", &path, &[("x-portcullis-admin-token", ADMIN_TOKEN)], b"");
    assert_eq!(no_reason.status, 400, "{}", no_reason.text());
    assert_eq!(no_reason.json()["code"], "override_reason_required");
    assert_eq!(s.versions("locked"), vec!["1.0.0".to_owned()], "still there");

    let reason = "legal takedown, ticket LEGAL-42";
    let done = s.request(
        "DELETE",
        &path,
        &[
            ("x-portcullis-admin-token", ADMIN_TOKEN),
            ("x-portcullis-override-reason", reason),
        ],
        b"",
    );
    assert!(matches!(done.status, 200 | 201), "{}", done.text());
    assert!(s.versions("locked").is_empty(), "deleted by the override");
    // The backend never saw the admin token.
    assert!(!s.backend.log().contains(ADMIN_TOKEN));

    let audit = s.gateway.audit("npm", "locked", 5);
    // The refused attempts are on record too.
    for code in ["admin_unauthenticated", "override_reason_required"] {
        assert!(
            audit
                .iter()
                .any(|r| r["action"] == "delete_request" && r["code"] == code),
            "{code} not audited: {audit:?}"
        );
    }
    let overridden = audit
        .iter()
        .find(|r| r["outcome"] == "override")
        .unwrap_or_else(|| panic!("no override record in {audit:?}"));
    assert_eq!(overridden["action"], "delete_project");
    assert_eq!(overridden["reason"], reason);
    assert_eq!(overridden["code"], "deletion_yank_only", "what the policy alone said");
    assert!(overridden["actor"].as_str().unwrap_or_default().starts_with("admin"));
    assert!(audit
        .iter()
        .any(|r| r["outcome"] == "refuse" && r["code"] == "deletion_yank_only"));
    // Each deletion decision (the refusal and the override) was posted to the webhook.
    assert!(portcullis_e2e::wait_until(std::time::Duration::from_secs(5), || hook
        .seen_at("/hook")
        .len()
        >= 2));
    let posted = hook.seen_at("/hook");
    assert!(posted
        .iter()
        .all(|p| p.method == "POST" && p.header("content-type") == Some("application/json") && p.body_bytes > 0));
}

#[test]
fn unclassifiable_deletes_are_refused_and_reach_nothing() {
    let s = setup("");
    assert_published(&s, "keep", "1.0.0");
    let rev = s.revision("keep");
    // A DELETE of a file that is no tarball of the package.
    let r = s.request("DELETE", &format!("/keep/-/other-1.0.0.tgz/-rev/{rev}"), &[], b"");
    assert_eq!(r.json()["code"], "unclassified_write", "{}", r.text());
    // A DELETE of the package without a revision (not what npm sends).
    let r = s.request("DELETE", "/keep", &[], b"");
    assert_eq!(r.json()["code"], "unclassified_write", "{}", r.text());
    // A metadata PUT that adds a version without a tarball.
    let mut document = http::get(s.backend.addr(), "/keep?write=true").json();
    document["versions"]["9.9.9"] = document["versions"]["1.0.0"].clone();
    document["versions"]["9.9.9"]["version"] = json!("9.9.9");
    let r = s.request(
        "PUT",
        &format!("/keep/-rev/{rev}"),
        &[],
        document.to_string().as_bytes(),
    );
    assert_eq!(r.json()["code"], "unclassified_write", "{}", r.text());
    assert_eq!(s.versions("keep"), vec!["1.0.0".to_owned()]);
    assert!(s.stored("keep", "1.0.0"));
}

#[test]
fn shadow_mode_lets_a_delete_through_and_records_the_refusal() {
    let s = setup("[registries.npm.deletion]\nmode = \"never\"\nshadow = true\n");
    for v in ["1.0.0", "1.1.0"] {
        assert_published(&s, "shadowed", v);
    }
    let (ok, out) = s.npm(&s.work, &["unpublish", "shadowed@1.0.0"]);
    assert!(ok, "shadow mode refused: {out}");
    assert!(!s.versions("shadowed").contains(&"1.0.0".to_owned()));
    let audit = s.gateway.audit("npm", "shadowed", 4);
    let shadowed = audit
        .iter()
        .find(|r| r["action"] == "delete_version")
        .unwrap_or_else(|| panic!("{audit:?}"));
    assert_eq!(shadowed["outcome"], "shadow");
    assert_eq!(shadowed["code"], "deletion_never");
    // The decision explains itself by request id.
    let id = shadowed["request_id"].as_str().unwrap_or_default();
    let explained = http::get(s.gateway.admin(), &format!("/decisions/{id}")).json();
    assert_eq!(explained["deletions"][0]["outcome"], "shadow", "{explained}");
    assert_eq!(explained["deletions"][0]["mode"], "never", "{explained}");
    assert_eq!(
        explained["deletions"][0]["refusal"]["code"], "deletion_never",
        "{explained}"
    );
    assert!(s
        .gateway
        .log()
        .contains("the deletion rules would have refused this request (shadow mode)"));
}
