//! The Sigstore trusted root kept current over TUF: the gateway (its `sigstore-tuf` client)
//! against a real TUF repository made by python-tuf (`tests/tools/tuf_repo.py`) on loopback,
//! laid out as Sigstore's, with real PEP 740 attestations uploaded through the gateway to a real
//! pypiserver. What each test asserts is in its name and comments; the list is in
//! docs/provenance.md ("The trusted root over TUF").

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_e2e::gateway::{admin_token_config, Gateway, RegistrySpec, ADMIN_TOKEN};
use portcullis_e2e::http::{self, Form};
use portcullis_e2e::pep740::{self, genuine, SDIST};
use portcullis_e2e::pypiserver::{self, Pypiserver};
use portcullis_e2e::sink::Sink;
use portcullis_e2e::tuf::TufRepo;
use portcullis_e2e::{fixtures, wait_until};
use serde_json::Value;

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn production() -> Vec<u8> {
    read(&fixtures().join("trusted-roots/public-good-production.trusted_root.json"))
}

/// The production trusted root without its transparency logs: no Rekor entry verifies.
fn production_without_logs() -> Vec<u8> {
    let mut root: Value = serde_json::from_slice(&production()).expect("json");
    root["tlogs"] = Value::Array(Vec::new());
    serde_json::to_vec_pretty(&root).expect("json")
}

/// A gateway whose trusted root comes over TUF from `repo` (anchor: its root v1), caching in
/// `cache`, with the admin token and the adjustable clock.
fn gateway(repo_url: &str, anchor: &[u8], cache: &Path, upstream: std::net::SocketAddr, dir: &Path) -> Gateway {
    std::fs::create_dir_all(dir).expect("dir");
    let anchor_file = dir.join("anchor.root.json");
    std::fs::write(&anchor_file, anchor).expect("anchor");
    Gateway::builder()
        .registry(RegistrySpec::new("pypi", "pypi", upstream))
        .rules(&pep740::rules("optional"))
        .admin_config(&admin_token_config(dir))
        .config(&format!(
            "[sigstore]\nrepository = {repo_url:?}\nroot = {:?}\ncache_dir = {:?}\ntimeout = \"3s\"\n[testing]\nadjustable_clock = true\n",
            anchor_file.display().to_string(),
            cache.display().to_string()
        ))
        .start(&dir.join("gateway"))
}

fn trust(gateway: &Gateway) -> Value {
    let response = http::get(gateway.admin(), "/trust");
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

/// Waits (bounded) until the gateway verifies with a root from the repository.
fn wait_verifying(gateway: &Gateway) -> Value {
    let mut last = Value::Null;
    let verifying = wait_until(Duration::from_secs(15), || {
        last = trust(gateway);
        last["verifies"] == true
    });
    assert!(verifying, "never verified: {last:#}\n{}", gateway.log());
    last
}

/// `POST /trust/refresh`: (status, body).
fn refresh(gateway: &Gateway) -> (u16, Value) {
    let response = http::request(
        gateway.admin(),
        "POST",
        "/trust/refresh",
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        b"",
    );
    (response.status, response.json())
}

fn upload(
    gateway: &Gateway,
    name: &str,
    version: &str,
    file: &str,
    content: &[u8],
    attestations: Option<&str>,
) -> http::Response {
    pep740::upload(gateway.addr(), name, version, file, content, attestations)
}

fn upload_genuine(gateway: &Gateway) -> http::Response {
    let (sdist, attestation) = genuine();
    upload(
        gateway,
        "pypi-attestations",
        "0.0.19",
        SDIST,
        &sdist,
        Some(&format!("[{attestation}]")),
    )
}

fn code(response: &http::Response) -> String {
    response.json()["code"].as_str().unwrap_or_default().to_owned()
}

fn revision(view: &Value) -> String {
    view["in_force"]["revision"].as_str().unwrap_or_default().to_owned()
}

struct Work {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn work() -> Work {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    Work { _dir: dir, path }
}

/// First fetch; root rotation with a key change; a new target that adds the transparency log
/// a bundle needs, after which it verifies without a restart; then a rollback, an expired
/// timestamp and a target whose hash does not match, each refused with the last good root
/// kept in force; finally the clock past the last good metadata's expiry: provenance is
/// refused with `provenance_trust_expired` while uploads without it still pass.
#[test]
fn tuf_keeps_the_trusted_root_current_and_refuses_what_the_spec_refuses() {
    let w = work();
    let repo = TufRepo::start(&production_without_logs(), &w.path.join("repo"));
    let backend = Pypiserver::start(&w.path.join("pypiserver"));
    let cache = w.path.join("tuf-cache");
    let gw = gateway(&repo.url(), &repo.root(1), &cache, backend.addr(), &w.path);

    // First fetch: root v1, every role verified, the root has no transparency log.
    let view = wait_verifying(&gw);
    assert_eq!(view["source"]["kind"], "tuf", "{view:#}");
    assert_eq!(view["in_force"]["arrival"], "network", "{view:#}");
    assert_eq!(view["in_force"]["tuf"]["root"]["version"], 1, "{view:#}");
    assert_eq!(view["in_force"]["tuf"]["timestamp"]["version"], 1, "{view:#}");
    assert_eq!(
        view["in_force"]["transparency_logs"],
        Value::Array(Vec::new()),
        "{view:#}"
    );
    assert!(cache.join("timestamp.json").is_file(), "verified metadata is cached");
    let without_logs = revision(&view);

    // A bundle whose log the root lacks does not verify, and nothing is stored.
    let refused = upload_genuine(&gw);
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(code(&refused), "provenance_invalid", "{}", refused.text());
    assert!(backend.stored().is_empty());

    // Root rotation across versions with a key change (root and timestamp keys replaced).
    repo.rotate_root();
    let (status, body) = refresh(&gw);
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(
        body["refresh"]["outcome"], "unchanged",
        "the trusted root itself did not change: {body:#}"
    );
    assert_eq!(body["trust"]["in_force"]["tuf"]["root"]["version"], 2, "{body:#}");

    // A new trusted_root.json that adds the logs: the same bundle verifies, no restart.
    repo.publish(&production());
    let (status, body) = refresh(&gw);
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["refresh"]["outcome"], "updated", "{body:#}");
    let full = revision(&body["trust"]);
    assert_ne!(full, without_logs);
    assert!(
        body["trust"]["in_force"]["transparency_logs"]
            .as_array()
            .is_some_and(|logs| logs.iter().any(|l| l["base_url"] == "https://rekor.sigstore.dev")),
        "{body:#}"
    );
    let accepted = upload_genuine(&gw);
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    assert_eq!(backend.stored(), vec![SDIST.to_owned()]);

    // Rollback: two fresh timestamps are adopted, then the older one is served again.
    let older = repo.timestamp(7 * 86_400)["timestamp"].as_u64().expect("version");
    assert_eq!(refresh(&gw).0, 200);
    let newer = repo.timestamp(7 * 86_400)["timestamp"].as_u64().expect("version");
    let (status, body) = refresh(&gw);
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(
        body["trust"]["in_force"]["tuf"]["timestamp"]["version"], newer,
        "{body:#}"
    );
    repo.serve_timestamp(older);
    let (status, body) = refresh(&gw);
    assert_eq!(status, 502, "{body:#}");
    assert_eq!(body["refresh"]["kind"], "rollback", "{body:#}");
    assert_eq!(body["trust"]["verifies"], true, "the last good root stays: {body:#}");
    assert_eq!(
        body["trust"]["in_force"]["tuf"]["timestamp"]["version"], newer,
        "{body:#}"
    );
    assert_eq!(revision(&body["trust"]), full);

    // An expired timestamp is refused; the last good (unexpired) one stays in force.
    repo.timestamp(-3600);
    let (status, body) = refresh(&gw);
    assert_eq!(status, 502, "{body:#}");
    assert_eq!(body["refresh"]["kind"], "expired", "{body:#}");
    assert_eq!(body["trust"]["verifies"], true, "{body:#}");

    // A target whose bytes do not match the hash the targets role pinned is refused.
    repo.publish(&read(
        &fixtures().join("trusted-roots/public-good-staging.trusted_root.json"),
    ));
    repo.corrupt_target();
    let (status, body) = refresh(&gw);
    assert_eq!(status, 502, "{body:#}");
    assert_eq!(body["refresh"]["kind"], "integrity", "{body:#}");
    assert_eq!(revision(&body["trust"]), full, "the corrupted target was not adopted");

    let metrics = gw.metrics();
    for outcome in ["rollback", "expired", "integrity", "updated"] {
        assert!(
            metrics.contains(&format!("portcullis_trust_refreshes_total{{outcome=\"{outcome}\"}}")),
            "{outcome}: {metrics}"
        );
    }
    assert!(gw.metric("portcullis_trust_tuf_version{role=\"root\"}") >= 2.0);

    // Past the last good metadata's expiry, provenance is refused as expired (503), never
    // accepted; an upload without provenance still passes.
    gw.set_clock_offset(8 * 86_400);
    let view = trust(&gw);
    assert_eq!(view["verifies"], false, "{view:#}");
    assert_eq!(view["unavailable"]["code"], "provenance_trust_expired", "{view:#}");
    let (sdist, attestation) = genuine();
    let expired = upload(
        &gw,
        "pypi-attestations",
        "0.0.20",
        "pypi_attestations-0.0.20.tar.gz",
        &sdist,
        Some(&format!("[{attestation}]")),
    );
    assert_eq!(expired.status, 503, "{}", expired.text());
    assert_eq!(code(&expired), "provenance_trust_expired", "{}", expired.text());
    let plain = upload(
        &gw,
        "plain-project",
        "1.0",
        "plain_project-1.0.tar.gz",
        b"plain bytes",
        None,
    );
    assert_eq!(plain.status, 200, "{}", plain.text());
    let mut stored = backend.stored();
    stored.sort();
    assert_eq!(stored, vec!["plain_project-1.0.tar.gz".to_owned(), SDIST.to_owned()]);
}

/// Signature thresholds and mix-and-match, from the library: a timestamp role raised to two
/// keys with threshold two (root v2, signed by the old root key) and a timestamp signed by one
/// of them is refused; signed by both it is adopted; a snapshot served under a newer version's
/// name than its own is refused. The last good root stays in force throughout.
#[test]
fn signature_thresholds_and_mix_and_match_are_enforced() {
    let w = work();
    let repo = TufRepo::start(&production(), &w.path.join("repo"));
    let sink = Sink::start();
    let gw = gateway(&repo.url(), &repo.root(1), &w.path.join("cache"), sink.addr(), &w.path);
    let revision_before = revision(&wait_verifying(&gw));

    repo.timestamp_threshold(2, 1);
    let (status, body) = refresh(&gw);
    assert_eq!(status, 502, "{body:#}");
    assert_eq!(body["refresh"]["kind"], "signature", "{body:#}");
    assert!(
        body["refresh"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("threshold"),
        "{body:#}"
    );
    assert_eq!(body["trust"]["verifies"], true, "{body:#}");

    repo.timestamp_threshold(2, 2);
    let (status, body) = refresh(&gw);
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["trust"]["in_force"]["tuf"]["root"]["version"], 2, "{body:#}");

    let older = repo.state()["snapshot"].as_u64().expect("snapshot version");
    repo.mix_snapshot(older);
    let (status, body) = refresh(&gw);
    assert_eq!(status, 502, "{body:#}");
    let message = body["refresh"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("snapshot") && message.contains("version"), "{body:#}");
    assert_eq!(revision(&body["trust"]), revision_before, "{body:#}");
    assert_eq!(body["trust"]["verifies"], true, "{body:#}");
}

/// Repository down at start-up with a valid cache: the cached root is used (no network).
/// Repository down with no cache: the gateway says why it cannot verify provenance, refuses
/// provenance with `provenance_trust_unavailable` (503), and everything else keeps working;
/// once the repository is back an admin refresh puts a root in force.
#[test]
fn a_valid_cache_serves_while_the_repository_is_down_and_no_cache_refuses_provenance_clearly() {
    let w = work();
    let repo = TufRepo::start(&production(), &w.path.join("repo"));
    let anchor = repo.root(1);
    let cache = w.path.join("tuf-cache");
    let backend = Pypiserver::start(&w.path.join("pypiserver"));
    {
        let first = gateway(&repo.url(), &anchor, &cache, backend.addr(), &w.path.join("first"));
        wait_verifying(&first);
    }
    repo.down(true);
    repo.requests();

    let cached = gateway(&repo.url(), &anchor, &cache, backend.addr(), &w.path.join("cached"));
    let view = trust(&cached);
    assert_eq!(view["verifies"], true, "verifies from the cache at once: {view:#}");
    assert_eq!(view["in_force"]["arrival"], "cache", "{view:#}");
    let accepted = upload_genuine(&cached);
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    assert_eq!(backend.stored(), vec![SDIST.to_owned()]);
    drop(cached);

    let backend2 = Pypiserver::start(&w.path.join("pypiserver2"));
    let empty = w.path.join("empty-cache");
    let uncached = gateway(&repo.url(), &anchor, &empty, backend2.addr(), &w.path.join("uncached"));
    let mut view = Value::Null;
    assert!(wait_until(Duration::from_secs(10), || {
        view = trust(&uncached);
        view["refresh"]["last_failure"]["kind"] == "unreachable"
    }));
    assert_eq!(view["verifies"], false, "{view:#}");
    assert_eq!(view["unavailable"]["code"], "provenance_trust_unavailable", "{view:#}");
    let message = view["unavailable"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("503"),
        "the reason names the repository's answer: {message}"
    );
    let refused = upload_genuine(&uncached);
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(code(&refused), "provenance_trust_unavailable", "{}", refused.text());
    assert!(backend2.stored().is_empty());
    let plain = upload(
        &uncached,
        "plain-project",
        "1.0",
        "plain_project-1.0.tar.gz",
        b"plain",
        None,
    );
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(http::get(uncached.addr(), "/simple/").status, 200);
    assert!(uncached.metric("portcullis_trust_root_loaded") == 0.0);

    repo.down(false);
    let (status, body) = refresh(&uncached);
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["refresh"]["outcome"], "updated", "{body:#}");
    let accepted = upload_genuine(&uncached);
    assert_eq!(accepted.status, 200, "{}", accepted.text());
}

/// Uploads with provenance keep verifying while the trusted root is swapped under them: a
/// client thread uploads the genuine attestation in a loop while the repository publishes a
/// different (equally valid) trusted root and the gateway adopts it, 20 times; no upload fails.
#[test]
fn uploads_with_provenance_keep_verifying_while_the_root_is_swapped() {
    let w = work();
    let repo = TufRepo::start(&production(), &w.path.join("repo"));
    let sink = Sink::start();
    let gw = gateway(&repo.url(), &repo.root(1), &w.path.join("cache"), sink.addr(), &w.path);
    wait_verifying(&gw);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = gw.addr();
    let uploader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (sdist, attestation) = genuine();
            let field = format!("[{attestation}]");
            let form = Form::pypi_upload_with(
                "pypi-attestations",
                "0.0.19",
                SDIST,
                &sdist,
                &[("attestations", field.as_str())],
            );
            let auth = http::basic_auth(pypiserver::USER, pypiserver::PASSWORD);
            let (mut ok, mut failed) = (0u32, Vec::new());
            for _ in 0..2_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let response = http::request(
                    addr,
                    "POST",
                    "/",
                    &[("content-type", &form.content_type()), ("authorization", &auth)],
                    &form.body,
                );
                if response.status == 200 {
                    ok += 1;
                } else {
                    failed.push(format!("{} {}", response.status, response.text()));
                }
            }
            (ok, failed)
        })
    };
    let mut revisions = std::collections::BTreeSet::new();
    for swap in 0..20 {
        // The same keys, different bytes (trailing whitespace): a new revision each time, so
        // each swap also empties the verification cache's hits for the old root.
        let mut root = production();
        root.extend(std::iter::repeat_n(b' ', swap + 1));
        repo.publish(&root);
        let (status, body) = refresh(&gw);
        assert_eq!(status, 200, "{body:#}");
        assert_eq!(body["refresh"]["outcome"], "updated", "{body:#}");
        revisions.insert(revision(&body["trust"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = uploader.join().expect("uploader");
    assert_eq!(revisions.len(), 20, "every swap put a new root in force");
    assert!(ok >= 20, "uploads ran across the swaps: {ok}");
    eprintln!("{ok} uploads with provenance across 20 root swaps, none failed");
    assert!(
        failed.is_empty(),
        "{} of {} uploads failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(3)]
    );
}
