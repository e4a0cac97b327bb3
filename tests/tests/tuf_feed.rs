//! The TUF feed end to end, against the real Repository Service for TUF (API, Celery workers,
//! Redis, PostgreSQL) and python-tuf's ngclient: what the backend commits through the gateway
//! becomes signed target metadata a TUF client verifies downloads against, through the gateway;
//! what the gateway refuses never appears; what is deleted stops being a target; a file altered
//! in the backend's storage after the commit is refused by the client.

use std::time::Duration;

use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::http::{self, Form};
use portcullis_e2e::pypiserver::{self, twine_upload, Pypiserver};
use portcullis_e2e::rstuf::Rstuf;
use portcullis_e2e::tools::make_dists;
use portcullis_e2e::{sha256_hex, wait_until};
use serde_json::Value;

const RULES: &str = r#"
[[registries.pypi.projects]]
id = "no-internal"
names = ["internal-*"]
action = "deny"
message = "internal packages go to the private index"
"#;

/// The `[registry.tuf]` lines for `rstuf`.
fn feed_config(rstuf: &Rstuf) -> String {
    format!(
        "[registry.tuf]\napi = \"{}\"\npoll_interval = \"100ms\"\nreconcile_after = \"5s\"\n",
        rstuf.api_url()
    )
}

/// `GET /tuf` on the admin listener, for `registry`.
fn feed_status(gateway: &Gateway, registry: &str) -> Value {
    let answer = http::get(gateway.admin(), "/tuf");
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["registries"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["registry"] == registry).cloned())
        .unwrap_or_else(|| panic!("no feed for {registry}: {}", answer.text()))
}

/// Waits (bounded) until `registry`'s feed has nothing open; panics with the logs otherwise.
fn wait_fed(gateway: &Gateway, rstuf: &Rstuf, registry: &str) -> Value {
    let mut last = Value::Null;
    let idle = wait_until(Duration::from_secs(120), || {
        last = feed_status(gateway, registry);
        last["queued"] == 0 && last["submitted"] == 0
    });
    assert!(
        idle,
        "the feed did not drain: {last}\n--- gateway ---\n{}\n--- rstuf ---\n{}",
        gateway.log(),
        rstuf.logs()
    );
    last
}

fn upload(gateway: &Gateway, name: &str, version: &str) -> http::Response {
    let filename = format!("{name}-{version}.tar.gz");
    let form = Form::pypi_upload(name, version, &filename, format!("sdist {version}").as_bytes());
    let auth = http::basic_auth(pypiserver::USER, pypiserver::PASSWORD);
    http::request(
        gateway.addr(),
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", &auth)],
        &form.body,
    )
}

#[test]
fn pypi_commits_and_deletions_become_signed_targets_a_real_tuf_client_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let backend = Pypiserver::start(&work.join("pypiserver"));
    let rstuf = Rstuf::start(&work.join("rstuf"));
    let mut spec = RegistrySpec::new("pypi", "pypi", backend.addr());
    spec.extra = feed_config(&rstuf);
    let gateway = Gateway::builder()
        .registry(spec)
        .rules(RULES)
        .start(&work.join("gateway"));

    let (wheel, sdist) = make_dists(&work.join("dist"), "demo-pkg", "1.0", None);
    let out = twine_upload(&format!("{}/", gateway.url()), &[&wheel, &sdist]);
    assert!(out.status.success(), "twine: {}", String::from_utf8_lossy(&out.stdout));
    let refused = upload(&gateway, "internal-secret", "1.0");
    assert_eq!(refused.status, 403, "{}", refused.text());
    let status = wait_fed(&gateway, &rstuf, "pypi");
    assert_eq!(status["failed"], 0, "{status}");

    let name = |p: &std::path::Path| p.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
    let (wheel_name, sdist_name) = (name(&wheel), name(&sdist));
    let wheel_target = format!("packages/{wheel_name}");
    let sdist_target = format!("packages/{sdist_name}");
    let index_target = "simple/demo-pkg/index.html";
    let targets = rstuf.targets();
    let mut paths: Vec<&String> = targets.keys().collect();
    paths.sort();
    assert_eq!(
        paths,
        [&wheel_target, &sdist_target, &index_target.to_owned()],
        "only what the backend committed"
    );
    for (target, local) in [(&wheel_target, &wheel), (&sdist_target, &sdist)] {
        let bytes = std::fs::read(local).expect("dist");
        let info = &targets[target.as_str()];
        assert_eq!(info["length"], bytes.len(), "{target}");
        assert_eq!(info["hashes"]["sha256"], sha256_hex(&bytes), "{target}");
        assert_eq!(
            info["hashes"]["blake2b-256"].as_str().map(str::len),
            Some(64),
            "{target}"
        );
        assert_eq!(info["custom"]["registry"], "pypi");
        assert_eq!(info["custom"]["project"], "demo-pkg");
        assert_eq!(info["custom"]["version"], "1.0");
        assert!(
            info["custom"]["request_id"].as_str().is_some_and(|id| id.len() == 32),
            "{info}"
        );
    }
    // The index page target is the page as the gateway serves it now.
    let page = http::get(gateway.addr(), "/simple/demo-pkg/");
    assert_eq!(page.status, 200);
    assert_eq!(targets[index_target]["hashes"]["sha256"], sha256_hex(&page.body));

    // python-tuf's ngclient refreshes the signed metadata and downloads both files through the
    // gateway, checking length and hashes.
    let base = format!("{}/", gateway.url());
    let verdicts = rstuf.verify(
        &base,
        &[&wheel_target, &sdist_target, "packages/internal_secret-1.0.tar.gz"],
    );
    for target in [&wheel_target, &sdist_target] {
        assert_eq!(verdicts[target.as_str()]["verified"], true, "{verdicts}");
    }
    assert_eq!(
        verdicts["packages/internal_secret-1.0.tar.gz"]["found"], false,
        "{verdicts}"
    );

    // A file changed in the backend's storage after the commit: the client refuses it.
    std::fs::write(backend.packages.join(&wheel_name), b"not the wheel that was uploaded").expect("tamper");
    let verdicts = rstuf.verify(&base, &[&wheel_target, &sdist_target]);
    assert_eq!(verdicts[wheel_target.as_str()]["found"], true, "{verdicts}");
    assert_eq!(verdicts[wheel_target.as_str()]["verified"], false, "{verdicts}");
    assert_eq!(verdicts[sdist_target.as_str()]["verified"], true, "{verdicts}");

    // A deletion the rules let through: both files stop being targets.
    let form = Form::pypi_remove("demo_pkg", "1.0");
    let auth = http::basic_auth(pypiserver::USER, pypiserver::PASSWORD);
    let removed = http::request(
        gateway.addr(),
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", &auth)],
        &form.body,
    );
    assert_eq!(removed.status, 200, "{}", removed.text());
    wait_fed(&gateway, &rstuf, "pypi");
    let targets = rstuf.targets();
    assert!(
        !targets.contains_key(&wheel_target) && !targets.contains_key(&sdist_target),
        "deleted files are no longer targets: {:?}",
        targets.keys().collect::<Vec<_>>()
    );
    let page = http::get(gateway.addr(), "/simple/demo-pkg/");
    match page.status {
        200 => assert_eq!(targets[index_target]["hashes"]["sha256"], sha256_hex(&page.body)),
        _ => assert!(
            !targets.contains_key(index_target),
            "a page the backend no longer serves is no target"
        ),
    }
    let verdicts = rstuf.verify(&base, &[&sdist_target]);
    assert_eq!(verdicts[sdist_target.as_str()]["found"], false, "{verdicts}");

    let done = gateway.metric("portcullis_tuf_feed_events_total{action=\"add\",outcome=\"done\",registry=\"pypi\"}");
    assert_eq!(done, 2.0);
    let deleted =
        gateway.metric("portcullis_tuf_feed_events_total{action=\"delete\",outcome=\"done\",registry=\"pypi\"}");
    assert_eq!(deleted, 2.0);
    assert_eq!(gateway.metric("portcullis_tuf_feed_leader{registry=\"pypi\"}"), 1.0);
}
