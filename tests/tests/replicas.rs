//! Two gateway replicas sharing one real PostgreSQL state store in front of one real
//! pypiserver: a version published through A is under the deletion window on B, a tombstone
//! made through B is enforced on A, download counts add up across both; and a replica started
//! while the database is down serves reads, refuses writes with `state_unavailable` and
//! recovers by itself once the database is back.

use std::path::Path;
use std::time::Duration;

use portcullis_e2e::gateway::{admin_token_config, Gateway, RegistrySpec};
use portcullis_e2e::http::{self, Form};
use portcullis_e2e::postgres::Postgres;
use portcullis_e2e::pypiserver::{self, Pypiserver};

const HOUR: i64 = 3600;

/// The `[state]` table pointing a replica at `url`, written to a secret file in `dir`.
fn postgres_state(dir: &Path, url: &str) -> String {
    std::fs::create_dir_all(dir).expect("dir");
    let dsn = dir.join("dsn");
    std::fs::write(&dsn, format!("{url}\n")).expect("dsn file");
    format!(
        "[state]\ndir = {:?}\nbackend = \"postgres\"\nurl_file = {:?}\nacquire_timeout = \"1s\"\n",
        dir.join("state").display().to_string(),
        dsn.display().to_string()
    )
}

fn replica(work: &Path, name: &str, backend: &Pypiserver, url: &str) -> Gateway {
    let dir = work.join(name);
    Gateway::builder()
        .registry(RegistrySpec::new("pypi", "pypi", backend.addr()))
        .rules("")
        .admin_config(&admin_token_config(&dir))
        .config("[testing]\nadjustable_clock = true\n")
        .config(&postgres_state(&dir, url))
        .start(&dir)
}

fn auth() -> String {
    http::basic_auth(pypiserver::USER, pypiserver::PASSWORD)
}

fn upload(gateway: &Gateway, name: &str, version: &str) -> http::Response {
    let filename = format!("{name}-{version}.tar.gz");
    let form = Form::pypi_upload(name, version, &filename, format!("sdist {version}").as_bytes());
    http::request(
        gateway.addr(),
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", &auth())],
        &form.body,
    )
}

fn remove(gateway: &Gateway, name: &str, version: &str) -> http::Response {
    let boundary = "portcullis-remove-boundary";
    let mut body = String::new();
    for (field, value) in [(":action", "remove_pkg"), ("name", name), ("version", version)] {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let auth = auth();
    http::request(
        gateway.addr(),
        "POST",
        "/",
        &[
            ("content-type", content_type.as_str()),
            ("authorization", auth.as_str()),
        ],
        body.as_bytes(),
    )
}

fn stored(backend: &Pypiserver) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(200));
    let mut files = backend.stored();
    files.sort();
    files
}

#[test]
fn replicas_share_the_window_tombstones_and_download_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    let pg = Postgres::start();
    let url = pg.create_database("replicas");
    let backend = Pypiserver::start(&work.join("pypiserver"));
    let a = replica(work, "a", &backend, &url);
    let b = replica(work, "b", &backend, &url);

    // Published through A.
    for version in ["1.0", "1.1"] {
        let r = upload(&a, "demo_pkg", version);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(stored(&backend), ["demo_pkg-1.0.tar.gz", "demo_pkg-1.1.tar.gz"]);

    // B knows when A published 1.1: 73 hours on, it is past the window there...
    b.set_clock_offset(73 * HOUR);
    let r = remove(&b, "demo_pkg", "1.1");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "deletion_unknown_facts", "{}", r.text());
    // ...and inside it now: B removes 1.0, which only A saw being published.
    b.set_clock_offset(0);
    let r = remove(&b, "demo_pkg", "1.0");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stored(&backend), ["demo_pkg-1.1.tar.gz"]);

    // The tombstone B made is enforced on A.
    let r = upload(&a, "demo_pkg", "1.0");
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["code"], "version_deleted");
    assert_eq!(stored(&backend), ["demo_pkg-1.1.tar.gz"]);

    // Downloads through both replicas add up in the shared store (each replica flushes its
    // counts every 2 s).
    for (gateway, n) in [(&a, 3), (&b, 2)] {
        for _ in 0..n {
            let r = http::get(gateway.addr(), "/packages/demo_pkg-1.1.tar.gz");
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    let sql = "SELECT COALESCE(SUM(count), 0) FROM downloads WHERE registry = 'pypi' AND project = 'demo-pkg' AND version = '1.1'";
    let mut total = String::new();
    let summed = portcullis_e2e::wait_until(Duration::from_secs(10), || {
        total = pg.query("replicas", sql);
        total == "5"
    });
    assert!(summed, "downloads in the shared store: {total}");
}

#[test]
fn a_replica_started_while_the_database_is_down_refuses_writes_then_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    let mut pg = Postgres::start();
    let url = pg.create_database("late");
    pg.stop();
    let backend = Pypiserver::start(&work.join("pypiserver"));
    let gateway = replica(work, "a", &backend, &url);

    // Reads are served; the upload, which needs the ledger, is refused and never stored.
    let r = http::get(gateway.addr(), "/simple/");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = upload(&gateway, "late_pkg", "1.0");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["code"], "state_unavailable", "{}", r.text());
    assert!(stored(&backend).is_empty());

    // The database comes back: without a restart, the next upload goes through and is in the
    // shared ledger.
    pg.resume();
    let mut last = String::new();
    let recovered = portcullis_e2e::wait_until(Duration::from_secs(20), || {
        let r = upload(&gateway, "late_pkg", "1.0");
        last = format!("{} {}", r.status, r.text());
        r.status == 200
    });
    assert!(recovered, "upload after the database came back: {last}");
    assert_eq!(stored(&backend), ["late_pkg-1.0.tar.gz"]);
    assert_eq!(
        pg.query("late", "SELECT state FROM ledger WHERE project = 'late-pkg'"),
        "committed"
    );
}
