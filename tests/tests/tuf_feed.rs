//! The TUF feed end to end, against the real Repository Service for TUF (API, Celery workers,
//! Redis, PostgreSQL) and python-tuf's ngclient: what the backend commits through the gateway
//! becomes signed target metadata a TUF client verifies downloads against, through the gateway;
//! what the gateway refuses never appears; what is deleted stops being a target; a file altered
//! in the backend's storage after the commit is refused by the client.

use std::time::Duration;

use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::http;
use portcullis_e2e::pypiserver::{self, twine_upload, Pypiserver};
use portcullis_e2e::rstuf::Rstuf;
use portcullis_e2e::tools::make_dists;
use portcullis_e2e::verdaccio::Verdaccio;
use portcullis_e2e::{sha256_hex, wait_until, PYPI_UPLOAD_RULES};
use serde_json::Value;

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
    pypiserver::upload_sdist(gateway.addr(), name, version)
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
        .rules(PYPI_UPLOAD_RULES)
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
    let removed = pypiserver::remove_version(gateway.addr(), "demo_pkg", "1.0");
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

/// Runs SQL on a stopped gateway's SQLite state store (what a crash leaves behind is staged
/// there); returns the rows as JSON arrays.
fn sqlite(gateway_dir: &std::path::Path, sql: &str) -> Vec<Value> {
    let script = "import json, sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nrows = c.execute(sys.argv[2]).fetchall()\nc.commit()\nprint(json.dumps(rows))";
    let out = std::process::Command::new(portcullis_e2e::tools::tools().python())
        .args(["-c", script])
        .arg(gateway_dir.join("data/portcullis.sqlite3"))
        .arg(sql)
        .output()
        .expect("python sqlite3");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("rows")
}

#[test]
fn the_feed_outlasts_rstuf_outages_and_a_sigkilled_gateway_and_feeds_each_commit_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let backend = Pypiserver::start(&work.join("pypiserver"));
    let mut rstuf = Rstuf::start(&work.join("rstuf"));
    let mut spec = RegistrySpec::new("pypi", "pypi", backend.addr());
    spec.extra = feed_config(&rstuf);
    let start = |spec: &RegistrySpec| {
        Gateway::builder()
            .registry(spec.clone())
            .rules(PYPI_UPLOAD_RULES)
            .start(&work.join("gateway"))
    };
    let mut gateway = start(&spec);

    // RSTUF down: uploads go on, the feed waits and says so.
    rstuf.stop_api();
    for v in ["1.0", "1.1", "1.2"] {
        assert_eq!(
            upload(&gateway, "demo_pkg", v).status,
            200,
            "an outage never blocks uploads"
        );
    }
    assert!(wait_until(Duration::from_secs(30), || gateway
        .metric("portcullis_tuf_feed_unavailable_total{registry=\"pypi\"}")
        >= 1.0));
    let waiting = feed_status(&gateway, "pypi");
    assert!(waiting["queued"].as_u64() >= Some(3), "{waiting}");
    assert!(wait_until(Duration::from_secs(10), || feed_status(&gateway, "pypi")
        ["lag_seconds"]
        .as_u64()
        >= Some(2)));
    rstuf.start_api();
    wait_fed(&gateway, &rstuf, "pypi");

    // SIGKILL while a task is in flight: the restarted gateway finishes the job.
    for v in ["2.0", "2.1", "2.2"] {
        assert_eq!(upload(&gateway, "demo_pkg", v).status, 200);
    }
    assert!(
        wait_until(Duration::from_secs(30), || feed_status(&gateway, "pypi")["submitted"]
            .as_u64()
            > Some(0)),
        "a task in flight"
    );
    gateway.process().kill();

    // The crash window between the backend's commit and the ledger's: two uploads the backend
    // took while RSTUF was down, staged back to pending with nothing queued; one of them the
    // backend then lost.
    rstuf.stop_api();
    gateway = start(&spec);
    for v in ["3.0", "3.1"] {
        assert_eq!(upload(&gateway, "demo_pkg", v).status, 200);
    }
    gateway.process().kill();
    let gateway_dir = work.join("gateway");
    for v in ["3.0", "3.1"] {
        let file = format!("demo_pkg-{v}.tar.gz");
        let rows = sqlite(
            &gateway_dir,
            &format!("SELECT id, request_id FROM ledger WHERE filename = '{file}'"),
        );
        let (id, request) = (&rows[0][0], rows[0][1].as_str().expect("request id"));
        sqlite(
            &gateway_dir,
            &format!("DELETE FROM tuf_outbox WHERE request_id = '{request}'"),
        );
        sqlite(
            &gateway_dir,
            &format!("UPDATE ledger SET state = 'pending', finished_at = NULL, detail = '' WHERE id = {id}"),
        );
    }
    std::fs::remove_file(backend.packages.join("demo_pkg-3.1.tar.gz")).expect("the backend loses 3.1");
    rstuf.start_api();
    gateway = start(&spec);
    wait_until(Duration::from_secs(30), || {
        sqlite(&gateway_dir, "SELECT COUNT(*) FROM ledger WHERE state = 'pending'")[0][0] == 0
    });
    wait_fed(&gateway, &rstuf, "pypi");

    let details = sqlite(
        &gateway_dir,
        "SELECT filename, state, detail FROM ledger WHERE version IN ('3.0', '3.1') ORDER BY filename",
    );
    assert_eq!(details[0][1], "committed", "{details:?}");
    assert_eq!(details[0][2], "reconciled: the backend serves the uploaded file");
    assert_eq!(details[1][1], "failed", "{details:?}");
    assert_eq!(details[1][2], "reconciled: the backend does not serve the file");

    // Every committed file is a target, exactly as uploaded; the lost one is not.
    let targets = rstuf.targets();
    for v in ["1.0", "1.1", "1.2", "2.0", "2.1", "2.2", "3.0"] {
        let target = format!("packages/demo_pkg-{v}.tar.gz");
        let info = targets
            .get(&target)
            .unwrap_or_else(|| panic!("{target} missing: {:?}", targets.keys()));
        assert_eq!(
            info["hashes"]["sha256"],
            sha256_hex(format!("sdist {v}").as_bytes()),
            "{target}"
        );
    }
    assert!(!targets.contains_key("packages/demo_pkg-3.1.tar.gz"));
    // One add event per committed file, each done, however many times a task was resent.
    let adds = sqlite(
        &gateway_dir,
        "SELECT ledger_id, COUNT(*), MIN(state), MAX(state) FROM tuf_outbox WHERE action = 'add' GROUP BY ledger_id",
    );
    assert_eq!(adds.len(), 7, "{adds:?}");
    for add in &adds {
        assert_eq!(
            (&add[1], &add[2], &add[3]),
            (&Value::from(1), &Value::from("done"), &Value::from("done")),
            "{adds:?}"
        );
    }
    let verdicts = rstuf.verify(
        &format!("{}/", gateway.url()),
        &["packages/demo_pkg-2.2.tar.gz", "packages/demo_pkg-3.0.tar.gz"],
    );
    for verdict in verdicts.as_object().expect("verdicts").values() {
        assert_eq!(verdict["verified"], true, "{verdicts}");
    }
}

/// `npm` with the test's npmrc, in `cwd`; panics with its output when it fails.
fn npm_ok(work: &std::path::Path, npmrc: &std::path::Path, cwd: &std::path::Path, args: &[&str]) -> String {
    let out = portcullis_e2e::npm::npm(work, npmrc, cwd)
        .args(args)
        .output()
        .expect("run npm");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "npm {args:?}: {text}");
    text
}

#[test]
fn npm_tarballs_published_through_verdaccio_become_targets_a_real_tuf_client_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let backend = Verdaccio::start(&work.join("verdaccio"));
    let rstuf = Rstuf::start(&work.join("rstuf"));
    let mut spec = RegistrySpec::new("npm", "npm", backend.addr());
    spec.extra = feed_config(&rstuf);
    let gateway = Gateway::builder().registry(spec).rules("").start(&work.join("gateway"));
    let npmrc = work.join("npmrc");
    portcullis_e2e::npm::write_npmrc(&npmrc, &gateway, &backend.token(gateway.addr()));

    let mut tarballs = Vec::new();
    for name in ["feed-demo", "@acme/feed-scoped"] {
        let src = work.join(format!("src-{}", name.replace('/', "_")));
        std::fs::create_dir_all(&src).expect("src");
        std::fs::write(
            src.join("package.json"),
            serde_json::json!({"name": name, "version": "1.0.0", "main": "index.js", "license": "MIT"}).to_string(),
        )
        .expect("package.json");
        std::fs::write(src.join("index.js"), format!("module.exports = {name:?};\n")).expect("index.js");
        let packed: Value =
            serde_json::from_str(&npm_ok(&work, &npmrc, &src, &["pack", "--json", "--silent"])).expect("pack json");
        let tarball = src.join(packed[0]["filename"].as_str().expect("filename"));
        npm_ok(
            &work,
            &npmrc,
            &src,
            &["publish", "--access", "public", tarball.to_str().expect("path")],
        );
        tarballs.push(std::fs::read(&tarball).expect("tarball"));
    }
    wait_fed(&gateway, &rstuf, "npm");

    let plain = "feed-demo/-/feed-demo-1.0.0.tgz";
    let scoped = "@acme/feed-scoped/-/feed-scoped-1.0.0.tgz";
    let targets = rstuf.targets();
    let mut paths: Vec<&str> = targets.keys().map(String::as_str).collect();
    paths.sort();
    assert_eq!(paths, [scoped, plain], "the tarballs, and no package documents");
    for (target, bytes) in [(plain, &tarballs[0]), (scoped, &tarballs[1])] {
        let info = &targets[target];
        assert_eq!(info["length"], bytes.len());
        assert_eq!(info["hashes"]["sha256"], sha256_hex(bytes));
        assert_eq!(info["hashes"]["sha512"].as_str().map(str::len), Some(128));
        assert_eq!(info["custom"]["registry"], "npm");
    }
    let base = format!("{}/", gateway.url());
    let verdicts = rstuf.verify(&base, &[plain, scoped]);
    for target in [plain, scoped] {
        assert_eq!(verdicts[target]["verified"], true, "{verdicts}");
    }

    // An unpublish the rules let through (inside the window): the tarball stops being a target.
    npm_ok(&work, &npmrc, &work, &["unpublish", "feed-demo@1.0.0", "--force"]);
    wait_fed(&gateway, &rstuf, "npm");
    let targets = rstuf.targets();
    assert!(!targets.contains_key(plain), "{:?}", targets.keys());
    assert!(targets.contains_key(scoped));
    let verdicts = rstuf.verify(&base, &[plain, scoped]);
    assert_eq!(verdicts[plain]["found"], false, "{verdicts}");
    assert_eq!(verdicts[scoped]["verified"], true, "{verdicts}");
}

#[test]
fn the_rstuf_api_is_reached_with_the_configured_header_for_the_proxy_in_front_of_it() {
    // RSTUF has no authentication: it sits behind a reverse proxy that checks a header. A
    // recording server stands in for that proxy, to see what the gateway sends it.
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let backend = Pypiserver::start(&work.join("pypiserver"));
    let proxy = portcullis_e2e::sink::Sink::start();
    std::fs::create_dir_all(work.join("gateway")).expect("dir");
    std::fs::write(work.join("gateway/rstuf-key"), "Bearer rstuf-proxy-secret\n").expect("key");
    let mut spec = RegistrySpec::new("pypi", "pypi", backend.addr());
    spec.extra = format!(
        "[registry.tuf]\napi = \"http://{}\"\nheader = \"Authorization\"\nheader_value_file = \"rstuf-key\"\n",
        proxy.addr()
    );
    let gateway = Gateway::builder().registry(spec).rules("").start(&work.join("gateway"));
    assert_eq!(upload(&gateway, "demo_pkg", "1.0").status, 200);
    assert!(
        wait_until(Duration::from_secs(30), || !proxy
            .seen_at("/api/v1/artifacts/")
            .is_empty()),
        "the feed reached the API: {:?}",
        proxy.seen().iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    let submission = &proxy.seen_at("/api/v1/artifacts/")[0];
    assert_eq!(submission.method, "POST");
    assert_eq!(submission.header("authorization"), Some("Bearer rstuf-proxy-secret"));
    assert_eq!(submission.header("content-type"), Some("application/json"));
    assert!(submission.body_bytes > 100, "a JSON body with the artifacts");
    // The recording server's answer is no RSTUF answer: the feed counts it as refused and
    // keeps the events, never marking them done.
    let status = feed_status(&gateway, "pypi");
    assert_eq!(
        status["queued"].as_u64().unwrap_or(0) + status["failed"].as_u64().unwrap_or(0),
        2,
        "{status}"
    );
    assert_eq!(
        gateway.metric("portcullis_tuf_feed_events_total{action=\"add\",outcome=\"done\",registry=\"pypi\"}"),
        0.0
    );
    // The secret never reaches the log.
    assert!(!gateway.log().contains("rstuf-proxy-secret"));
}

#[test]
fn replicas_on_one_postgresql_send_each_event_once_and_a_survivor_takes_the_feed_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().to_path_buf();
    let backend = Pypiserver::start(&work.join("pypiserver"));
    let rstuf = Rstuf::start(&work.join("rstuf"));
    let pg = portcullis_e2e::postgres::Postgres::start();
    let url = pg.create_database("portcullis");
    let replica = |name: &str| {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("dsn"), format!("{url}\n")).expect("dsn");
        let mut spec = RegistrySpec::new("pypi", "pypi", backend.addr());
        spec.extra = feed_config(&rstuf);
        Gateway::builder()
            .registry(spec)
            .rules(PYPI_UPLOAD_RULES)
            .config(&format!(
                "[state]\nbackend = \"postgres\"\nurl_file = {:?}\n",
                dir.join("dsn").display().to_string()
            ))
            .start(&dir)
    };
    let mut replicas = [replica("a"), replica("b")];
    let leaders = |replicas: &[Gateway]| -> Vec<usize> {
        (0..replicas.len())
            .filter(|&i| replicas[i].metric("portcullis_tuf_feed_leader{registry=\"pypi\"}") == 1.0)
            .collect()
    };
    assert!(wait_until(Duration::from_secs(10), || leaders(&replicas).len() == 1));
    for (i, v) in ["1.0", "1.1", "1.2", "1.3"].into_iter().enumerate() {
        assert_eq!(upload(&replicas[i % 2], "demo_pkg", v).status, 200);
    }
    wait_fed(&replicas[0], &rstuf, "pypi");
    assert_eq!(leaders(&replicas).len(), 1, "one sender at a time");

    // The sender dies; uploads go on through the survivor, which takes the feed over once the
    // lease runs out.
    let leader = leaders(&replicas)[0];
    let survivor = 1 - leader;
    replicas[leader].process().kill();
    for v in ["2.0", "2.1"] {
        assert_eq!(upload(&replicas[survivor], "demo_pkg", v).status, 200);
    }
    assert!(
        wait_until(Duration::from_secs(60), || replicas[survivor]
            .metric("portcullis_tuf_feed_leader{registry=\"pypi\"}")
            == 1.0),
        "the survivor takes the lease over"
    );
    wait_fed(&replicas[survivor], &rstuf, "pypi");
    let targets = rstuf.targets();
    for v in ["1.0", "1.1", "1.2", "1.3", "2.0", "2.1"] {
        assert!(
            targets.contains_key(&format!("packages/demo_pkg-{v}.tar.gz")),
            "{v}: {:?}",
            targets.keys()
        );
    }
    let adds = pg.query(
        "portcullis",
        "SELECT COUNT(*) || ' ' || COUNT(DISTINCT ledger_id) || ' ' || MIN(state) || ' ' || MAX(state) FROM tuf_outbox WHERE action = 'add'",
    );
    assert_eq!(adds, "6 6 done done", "one add event per committed file, each done");
}
