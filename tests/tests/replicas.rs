//! Two gateway replicas sharing one real PostgreSQL state store in front of one real
//! backend: an OIDC token (`jti`) exchanged on A is a replay on B, a version published through A is under the deletion window on B, a tombstone
//! made through B is enforced on A, download counts add up across both, a replica killed
//! mid-upload leaves nothing in the backend and the retry through the other succeeds; and a replica started
//! while the database is down serves reads, refuses writes with `state_unavailable` and
//! recovers by itself once the database is back.

use std::path::Path;
use std::time::Duration;

use portcullis_e2e::gateway::{admin_token_config, trusted_publishing_config, Gateway, RegistrySpec};
use portcullis_e2e::http::{self, Form};
use portcullis_e2e::oidc::Issuer;
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
    pypiserver::upload_sdist(gateway.addr(), name, version)
}

fn remove(gateway: &Gateway, name: &str, version: &str) -> http::Response {
    pypiserver::remove_version(gateway.addr(), name, version)
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

    // Control: a version that reached the backend without a gateway has no publish time in
    // the shared ledger, and B refuses to remove it for that reason.
    let filename = "demo_pkg-0.9.tar.gz";
    let form = Form::pypi_upload("demo_pkg", "0.9", filename, b"sdist 0.9");
    let direct = http::request(
        backend.addr(),
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", &auth())],
        &form.body,
    );
    assert_eq!(direct.status, 200, "{}", direct.text());
    let r = remove(&b, "demo_pkg", "0.9");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "deletion_unknown_facts", "{}", r.text());
    assert_eq!(stored(&backend), ["demo_pkg-0.9.tar.gz", "demo_pkg-1.1.tar.gz"]);

    // The tombstone B made is enforced on A.
    let r = upload(&a, "demo_pkg", "1.0");
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["code"], "version_deleted");
    assert_eq!(stored(&backend), ["demo_pkg-0.9.tar.gz", "demo_pkg-1.1.tar.gz"]);

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

const AUDIENCE: &str = "portcullis-test";

fn exchange_rules(issuer: &Issuer) -> String {
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
projects = ["demo-pkg"]
repository = "acme/widgets"
repository_owner_id = "1234"
workflow = "release.yml"
pending = true
"#,
        url = issuer.url()
    )
}

fn mint(gateway: &Gateway, token: &str) -> http::Response {
    http::mint_pypi_token(gateway.addr(), token)
}

#[test]
fn an_oidc_token_exchanged_on_one_replica_is_a_replay_on_the_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    let pg = Postgres::start();
    let url = pg.create_database("jti");
    let issuer = Issuer::start(&work.join("issuer"));
    let backend = Pypiserver::start(&work.join("pypiserver"));
    let start = |name: &str| {
        let gw_dir = work.join(name);
        Gateway::builder()
            .registry(RegistrySpec::new("pypi", "pypi", backend.addr()))
            .rules(&exchange_rules(&issuer))
            .config(&trusted_publishing_config(&gw_dir.join("keys"), issuer.ca_file()))
            .config(&postgres_state(&gw_dir, &url))
            .start(&gw_dir)
    };
    let (a, b) = (start("a"), start("b"));
    let claims = || issuer.github_claims(AUDIENCE, "acme/widgets", "1234", "release.yml");

    let token = issuer.token(claims());
    let first = mint(&a, &token);
    assert_eq!(first.status, 200, "{}", first.text());
    let replay = mint(&b, &token);
    assert_eq!(replay.status, 422, "{}", replay.text());
    assert_eq!(
        replay.json()["errors"][0]["code"],
        "invalid-reuse-token",
        "{}",
        replay.text()
    );
    // B exchanges tokens it has not seen: the refusal was the shared record, not B.
    let fresh = mint(&b, &issuer.token(claims()));
    assert_eq!(fresh.status, 200, "{}", fresh.text());
    assert_eq!(pg.query("jti", "SELECT COUNT(*) FROM jti_claims"), "2");
}

#[test]
fn a_replica_killed_mid_upload_leaves_nothing_and_the_retry_through_the_other_succeeds() {
    use std::io::Write;

    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    let pg = Postgres::start();
    let url = pg.create_database("kill");
    let backend = Pypiserver::start(&work.join("pypiserver"));
    let mut a = replica(work, "a", &backend, &url);
    let b = replica(work, "b", &backend, &url);

    let content: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let form = Form::pypi_upload("big_pkg", "1.0", "big_pkg-1.0.tar.gz", &content);
    let head = http::upload_head(
        a.addr(),
        "POST",
        "/",
        &[
            ("content-type", form.content_type()),
            ("content-length", form.body.len().to_string()),
            ("authorization", auth()),
        ],
    );
    // Half the body through A, forwarded to the backend as it streams; then A dies.
    let mut stream = http::connect(a.addr());
    stream.write_all(head.as_bytes()).expect("head");
    stream
        .write_all(&form.body[..form.body.len() / 2])
        .expect("half the body");
    stream.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(500));
    a.process().signal("KILL");
    assert!(
        a.process().wait_exit(Duration::from_secs(5)).is_some(),
        "replica A is gone"
    );
    drop(stream);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        stored(&backend).is_empty(),
        "nothing partial in the backend: {:?}",
        stored(&backend)
    );

    // The client retries through B: accepted, stored whole, committed in the shared ledger.
    let r = http::request(
        b.addr(),
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", &auth())],
        &form.body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stored(&backend), ["big_pkg-1.0.tar.gz"]);
    let r = http::get(b.addr(), "/packages/big_pkg-1.0.tar.gz");
    assert_eq!(r.status, 200);
    assert!(
        r.body == content,
        "the stored file is the whole upload ({} bytes)",
        r.body.len()
    );
    assert_eq!(
        pg.query(
            "kill",
            "SELECT COUNT(*) FROM ledger WHERE project = 'big-pkg' AND state = 'committed'"
        ),
        "1"
    );
}
