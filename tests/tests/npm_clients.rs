//! The npm-side clients publishers use besides the npm CLI (which `npm_verdaccio.rs` covers,
//! with pnpm), unmodified, each publishing a real package through the real gateway to a real
//! Verdaccio: what Verdaccio stored is what the client packed, byte for byte (the tarball file,
//! and the packument's `dist.integrity` and `dist.shasum`), under the version and dist-tag the
//! client asked for; a name the rules deny is refused with the gateway's reason in what the
//! client prints, and nothing is stored.
//!
//! Hermetic: every request goes to loopback. Each client gets a `HOME` and a cache inside the
//! test's temporary folder.
//!
//! What each client sends (read in their sources under the tools' `node_modules`), all accepted
//! unchanged by the gateway's one-reading checks (UTF-8 JSON, no duplicate keys, names, version
//! and attachment consistent with the path):
//!
//! - **yarn 1.22.22** (`yarn publish`, `lib/cli.js`: `publish`): packs the folder itself
//!   (`yarn pack`'s code: a tar whose entries keep the files' mtimes, so two packs of unchanged
//!   files are identical), then `PUT /<name>` with `Content-Length` and the body
//!   `{"_id","name","description"?,"dist-tags":{<tag>:<v>},"versions":{<v>:manifest},"readme",
//!   "_attachments"}`: `access` only when given (`--access` or `publishConfig.access`, else
//!   `undefined`, which `JSON.stringify` drops), `readme` always (`""` without a README), the
//!   attachment last; the manifest is yarn's normalised one with `_`-keys removed, then `_id`,
//!   `dist.shasum`, `dist.integrity` and `dist.tarball` added. Its `Accept` is
//!   `application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*`. An error
//!   answer's JSON `error` string becomes the message it prints (`Couldn't publish package:
//!   "<error>"`). Without `--new-version`, `--non-interactive` publishes the version in
//!   `package.json` as it is (no bump, no git tag).
//! - **yarn 4.18.1** (berry, `yarn npm publish`, plugin-npm-cli): refuses to run without an
//!   install state (`restoreInstallState`: "This package doesn't seem to be present in your
//!   lockfile"), so the test runs `yarn install` first — with no dependencies it resolves
//!   only the workspace and touches no network. It packs the workspace (fixed mtimes: `yarn
//!   pack` gives the same bytes) and sends `{"_id","_attachments","name","access",
//!   "dist-tags","versions","readme"}` through `got`: the attachment first, `access` always
//!   (`publishConfig.access`, `npmPublishAccess`, else `restricted` for scoped names and
//!   `public` for others), `readme` the README.md or a generated `# <name>\n`, `gitHead` in
//!   the version when in a git checkout, `Content-Length` framing. Its errors print the
//!   answer's JSON `error` and the status with its reason phrase. Network is off in
//!   `.yarnrc.yml` except for 127.0.0.1 (`enableNetwork: false` with a `networkSettings`
//!   exception), so a request anywhere else would fail the test, not leave the machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use portcullis_e2e::npm::{write_package, GatedVerdaccio};
use portcullis_e2e::tools::tools;

const RULES: &str = r#"
[registries.npm]
max_upload_bytes = "5 MiB"
[[registries.npm.projects]]
id = "no-secrets"
names = ["secret-*"]
action = "deny"
message = "this name is reserved for the private registry"
"#;

/// The reason the gateway gives for a denied `name`, as the clients print it.
fn denial(name: &str) -> String {
    format!("writes to project '{name}' are not allowed here: this name is reserved for the private registry")
}

fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(command: &mut Command, what: &str) -> Output {
    command.output().unwrap_or_else(|e| panic!("run {what}: {e}"))
}

/// A yarn 1 command in `cwd` with a `HOME` of its own under the test's folder, holding the
/// `.npmrc` (registry and token for the gateway, the way a publisher's `~/.npmrc` does) and a
/// `.yarnrc` (registry, no self-update check, and an unreachable `https-proxy` so a stray
/// https request could not leave the machine), and a cache folder there too.
fn yarn1(s: &GatedVerdaccio, cwd: &Path) -> Command {
    let home = s.work.join("yarn1-home");
    if !home.exists() {
        std::fs::create_dir_all(&home).expect("yarn 1 home");
        portcullis_e2e::npm::write_npmrc(&home.join(".npmrc"), &s.gateway, &s.token);
        std::fs::write(
            home.join(".yarnrc"),
            format!(
                "registry \"{}/\"\ndisable-self-update-check true\nhttps-proxy \"http://127.0.0.1:9\"\n",
                s.gateway.url()
            ),
        )
        .expect(".yarnrc");
    }
    let mut command = Command::new(tools().yarn1());
    command
        .current_dir(cwd)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("YARN_CACHE_FOLDER", s.work.join("yarn1-cache"))
        .env("NO_COLOR", "1");
    command
}

/// Writes the package folder's `.yarnrc.yml` for yarn berry: the gateway as registry with the
/// token, plain HTTP allowed to it, no telemetry, a project-local cache under the test's
/// folder, no network except to 127.0.0.1, and installs allowed to write the lockfile even
/// when `CI` is set (berry then defaults to immutable installs).
fn write_yarnrc_yml(s: &GatedVerdaccio, dir: &Path) {
    let yml = format!(
        "npmRegistryServer: \"{url}\"\n\
         npmAuthToken: \"{token}\"\n\
         unsafeHttpWhitelist:\n  - \"127.0.0.1\"\n\
         enableTelemetry: false\n\
         enableGlobalCache: false\n\
         cacheFolder: \"{cache}\"\n\
         enableImmutableInstalls: false\n\
         enableHardenedMode: false\n\
         enableNetwork: false\n\
         networkSettings:\n  \"127.0.0.1\":\n    enableNetwork: true\n",
        url = s.gateway.url(),
        token = s.token,
        cache = s.work.join("berry-cache").display(),
    );
    std::fs::write(dir.join(".yarnrc.yml"), yml).expect(".yarnrc.yml");
}

/// `node <yarn berry> <args>` in `cwd`, with a `HOME` of its own under the test's folder.
fn berry(s: &GatedVerdaccio, cwd: &Path) -> Command {
    let home = s.work.join("berry-home");
    std::fs::create_dir_all(&home).expect("berry home");
    let mut command = Command::new("node");
    command
        .arg(tools().yarn_berry_js())
        .current_dir(cwd)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("YARN_ENABLE_COLORS", "0")
        .env("YARN_ENABLE_PROGRESS_BARS", "0")
        .env("NO_COLOR", "1");
    command
}

/// A package for yarn berry: the package files, its `.yarnrc.yml`, and `yarn install` (which
/// `yarn npm publish` needs; offline here, as there is nothing to fetch).
fn berry_package(s: &GatedVerdaccio, name: &str, version: &str) -> PathBuf {
    let dir = write_package(&s.work, name, version);
    write_yarnrc_yml(s, &dir);
    let out = run(berry(s, &dir).arg("install"), "yarn install");
    assert!(out.status.success(), "yarn install:\n{}", printed(&out));
    dir
}

/// What a client packed, from its own pack command writing to `<work>/packed/<file>`.
fn packed(s: &GatedVerdaccio, command: &mut Command, flag: &str, file: &str) -> Vec<u8> {
    let destination = s.work.join("packed");
    std::fs::create_dir_all(&destination).expect("packed dir");
    let path = destination.join(file);
    let out = run(command.arg("pack").arg(flag).arg(&path), "pack");
    assert!(out.status.success(), "pack:\n{}", printed(&out));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The decisions logged for `project`.
fn decisions_for(s: &GatedVerdaccio, project: &str, at_least: usize) -> Vec<serde_json::Value> {
    let mut mine = Vec::new();
    portcullis_e2e::wait_until(std::time::Duration::from_secs(5), || {
        mine = s
            .gateway
            .decisions(0)
            .into_iter()
            .filter(|d| d["project"] == project)
            .collect();
        mine.len() >= at_least
    });
    mine
}

/// Publishes `name` at `1.0.0` (default tag) then `1.1.0-beta.1` with `--tag beta` through
/// `publish` and checks what Verdaccio stored against what `pack` made of the same folder.
fn publishes_two_versions_byte_for_byte(
    s: &GatedVerdaccio,
    name: &str,
    prepare: impl Fn(&str) -> PathBuf,
    pack: impl Fn(&Path, &str) -> Vec<u8>,
    publish: impl Fn(&Path, Option<&str>) -> Output,
) {
    for (version, tag) in [("1.0.0", None), ("1.1.0-beta.1", Some("beta"))] {
        let dir = prepare(version);
        let expected = pack(&dir, &format!("{name}-{version}.tgz"));
        let out = publish(&dir, tag);
        assert!(
            out.status.success(),
            "publishing {name}@{version}:\n{}\n{}",
            printed(&out),
            s.gateway.log()
        );
        s.backend.assert_stored(name, version, &expected);
    }
    let packument = s.backend.packument(name).expect("packument");
    assert_eq!(
        packument["dist-tags"],
        serde_json::json!({"latest": "1.0.0", "beta": "1.1.0-beta.1"}),
        "{packument}"
    );
    let mut versions: Vec<&String> = packument["versions"].as_object().expect("versions").keys().collect();
    versions.sort();
    assert_eq!(versions, ["1.0.0", "1.1.0-beta.1"]);
    let decisions = decisions_for(s, name, 2);
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    assert!(decisions.iter().all(|d| d["outcome"] == "allow"), "{decisions:?}");
}

#[test]
fn yarn1_publish_lands_byte_for_byte() {
    let s = GatedVerdaccio::start(RULES);
    let name = "demo-yarn1-pkg";
    publishes_two_versions_byte_for_byte(
        &s,
        name,
        |version| write_package(&s.work, name, version),
        |dir, file| packed(&s, &mut yarn1(&s, dir), "--filename", file),
        |dir, tag| {
            let mut command = yarn1(&s, dir);
            command.args(["publish", "--non-interactive", "--no-progress"]);
            if let Some(tag) = tag {
                command.args(["--tag", tag]);
            }
            run(&mut command, "yarn publish")
        },
    );
}

#[test]
fn yarn_berry_npm_publish_lands_byte_for_byte() {
    let s = GatedVerdaccio::start(RULES);
    let name = "demo-berry-pkg";
    publishes_two_versions_byte_for_byte(
        &s,
        name,
        |version| berry_package(&s, name, version),
        |dir, file| packed(&s, &mut berry(&s, dir), "--out", file),
        |dir, tag| {
            let mut command = berry(&s, dir);
            command.args(["npm", "publish"]);
            if let Some(tag) = tag {
                command.args(["--tag", tag]);
            }
            run(&mut command, "yarn npm publish")
        },
    );
}

#[test]
fn denied_names_are_refused_with_the_reason_yarn_prints() {
    let s = GatedVerdaccio::start(RULES);

    let name = "secret-yarn1";
    let dir = write_package(&s.work, name, "1.0.0");
    let out = run(
        yarn1(&s, &dir).args(["publish", "--non-interactive", "--no-progress"]),
        "yarn publish",
    );
    let text = printed(&out);
    assert!(!out.status.success(), "{name} published:\n{text}");
    assert!(text.contains("Couldn't publish package"), "{text}");
    assert!(text.contains(&denial(name)), "yarn 1 did not print the reason:\n{text}");

    let name = "secret-berry";
    let dir = berry_package(&s, name, "1.0.0");
    let out = run(berry(&s, &dir).args(["npm", "publish"]), "yarn npm publish");
    let text = printed(&out);
    assert!(!out.status.success(), "{name} published:\n{text}");
    assert!(
        text.contains(&denial(name)),
        "yarn berry did not print the reason:\n{text}"
    );
    assert!(text.contains("403"), "{text}");

    for name in ["secret-yarn1", "secret-berry"] {
        assert!(s.backend.packument(name).is_none(), "{name} reached Verdaccio");
        let decisions = decisions_for(&s, name, 1);
        assert_eq!(decisions.len(), 1, "{decisions:?}");
        assert_eq!(decisions[0]["outcome"], "refuse", "{decisions:?}");
    }
    let stored = s.backend.stored();
    assert!(
        !stored.iter().any(|p| p.contains("secret")),
        "refused packages reached storage: {stored:?}"
    );
}
