//! Publishes through the gateway to a real Verdaccio with the real npm CLI: accepted
//! publishes land byte for byte and install back; refused ones leave nothing in storage and
//! npm shows the gateway's reason.

use std::path::Path;
use std::process::Output;

use portcullis_e2e::npm::{pack, write_package, GatedVerdaccio};
use portcullis_e2e::{http, sha256_hex};

const RULES: &str = r#"
[registries.npm]
max_upload_bytes = "5 MiB"
[[registries.npm.projects]]
id = "no-secrets"
names = ["secret-*", "@internal/*"]
action = "deny"
message = "this name is reserved for the private registry"
"#;

fn npm(s: &GatedVerdaccio, cwd: &Path, args: &[&str]) -> Output {
    s.npm(cwd).args(args).output().expect("run npm")
}

#[test]
fn npm_publish_lands_byte_for_byte_and_installs_back() {
    let s = GatedVerdaccio::start(RULES);
    let dir = write_package(&s.work, "demo-npm-pkg", "1.0.0");
    let tarball = pack(&s.work, &s.npmrc, &dir);
    let out = npm(&s, &dir, &["publish", tarball.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "npm publish failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.gateway.log()
    );
    let stored = s.backend.storage.join("demo-npm-pkg/demo-npm-pkg-1.0.0.tgz");
    let stored_bytes =
        std::fs::read(&stored).unwrap_or_else(|e| panic!("{}: {e}; stored {:?}", stored.display(), s.backend.stored()));
    assert_eq!(
        sha256_hex(&stored_bytes),
        sha256_hex(&std::fs::read(&tarball).expect("tarball"))
    );

    // Install it back through the gateway into a fresh project.
    let consumer = s.work.join("consumer");
    std::fs::create_dir_all(&consumer).expect("consumer");
    std::fs::write(
        consumer.join("package.json"),
        r#"{"name":"consumer","version":"1.0.0","private":true}"#,
    )
    .expect("pkg");
    let out = npm(&s, &consumer, &["install", "demo-npm-pkg@1.0.0"]);
    assert!(
        out.status.success(),
        "npm install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = std::fs::read_to_string(consumer.join("node_modules/demo-npm-pkg/index.js")).expect("installed");
    assert!(installed.contains("demo-npm-pkg"));

    let events = s.gateway.log_events();
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "decision" && e["project"] == "demo-npm-pkg" && e["outcome"] == "allow"),
        "no allow decision logged: {}",
        s.gateway.log()
    );
}

#[test]
fn pnpm_publish_lands_byte_for_byte() {
    let s = GatedVerdaccio::start(RULES);
    let dir = write_package(&s.work, "demo-pnpm-pkg", "1.0.0");
    let tarball = pack(&s.work, &s.npmrc, &dir);
    // pnpm writes its own publish document (through libnpmpublish) from the same npmrc.
    let out = std::process::Command::new(portcullis_e2e::tools::tools().pnpm())
        .current_dir(&dir)
        .arg("publish")
        .arg(&tarball)
        .args(["--no-git-checks", "--access", "public"])
        .env("npm_config_userconfig", &s.npmrc)
        .env("npm_config_cache", s.work.join("pnpm-cache"))
        .env("npm_config_update_notifier", "false")
        .env("NO_COLOR", "1")
        .output()
        .expect("run pnpm");
    assert!(
        out.status.success(),
        "pnpm publish failed: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.gateway.log()
    );
    let stored = s.backend.storage.join("demo-pnpm-pkg/demo-pnpm-pkg-1.0.0.tgz");
    let stored_bytes =
        std::fs::read(&stored).unwrap_or_else(|e| panic!("{}: {e}; stored {:?}", stored.display(), s.backend.stored()));
    assert_eq!(
        sha256_hex(&stored_bytes),
        sha256_hex(&std::fs::read(&tarball).expect("tarball"))
    );
    let decision = &s.gateway.decisions(1)[0];
    assert_eq!(decision["project"], "demo-pnpm-pkg", "{decision}");
    assert_eq!(decision["outcome"], "allow", "{decision}");
}

#[test]
fn denied_names_are_refused_with_the_reason_npm_prints() {
    let s = GatedVerdaccio::start(RULES);
    for name in ["secret-sauce", "@internal/tool"] {
        let dir = write_package(&s.work, name, "1.0.0");
        let out = npm(&s, &dir, &["publish", "--access", "public"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} published: {stderr}");
        assert!(stderr.contains("E403"), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "writes to project '{name}' are not allowed here: this name is reserved for the private registry"
            )),
            "npm did not print the reason: {stderr}"
        );
    }
    let stored = s.backend.stored();
    assert!(
        !stored.iter().any(|p| p.contains("secret") || p.contains("internal")),
        "refused packages reached storage: {stored:?}"
    );
}

#[test]
fn oversized_publish_is_refused_before_the_backend_stores_it() {
    let s = GatedVerdaccio::start(RULES);
    // A raw publish body over the 5 MiB policy limit, as npm would send it.
    let tarball_b64 = "A".repeat(6 << 20);
    let body = serde_json::json!({
        "_id": "huge-pkg", "name": "huge-pkg",
        "dist-tags": {"latest": "1.0.0"},
        "versions": {"1.0.0": {"name": "huge-pkg", "version": "1.0.0", "dist": {"tarball": "x"}}},
        "_attachments": {"huge-pkg-1.0.0.tgz": {"content_type": "application/octet-stream", "data": tarball_b64, "length": 4718592}}
    })
    .to_string();
    let token = s.backend.token(s.backend.addr());
    let r = http::request(
        s.gateway.addr(),
        "PUT",
        "/huge-pkg",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {token}")),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["code"], "upload_too_large");
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("bytes at most")));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !s.backend.stored().iter().any(|p| p.contains("huge-pkg")),
        "{:?}",
        s.backend.stored()
    );
}
