//! Process lifecycle: TLS on both sides (rustls), backend timeouts, graceful stop with uploads
//! in flight, and pingora's graceful upgrade under traffic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_e2e::gateway::{npm_over_sink, Gateway, RegistrySpec};
use portcullis_e2e::http;
use portcullis_e2e::sink::{Ending, Sink};
use portcullis_e2e::wait_until;

/// A test CA and a server certificate for `localhost` signed by it, as PEM files in `dir`.
fn test_pki(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let pki = portcullis_e2e::pki::test_pki(dir, name, &["localhost"]);
    (pki.ca, pki.cert, pki.key)
}

#[test]
fn tls_listener_and_tls_upstream_with_sni_and_private_ca() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_pki(dir.path(), "inner");
    let (other_ca, _, _) = test_pki(dir.path(), "other");
    // Inner gateway: HTTPS listener in front of the sink.
    let inner = Gateway::builder()
        .registry(RegistrySpec::new("npm", "npm", sink.addr()))
        .rules("")
        .tls(&cert, &key)
        .start(&dir.path().join("inner"));
    // Outer gateway: plain listener, HTTPS upstream (the inner gateway) trusted through the test CA.
    let mut upstream = RegistrySpec::new("npm", "npm", inner.addr());
    upstream.upstream_extra = format!(
        "tls = true\nsni = \"localhost\"\nca_file = {:?}\n",
        ca.display().to_string()
    );
    let outer = Gateway::builder()
        .registry(upstream)
        .rules("")
        .start(&dir.path().join("outer"));

    let body = http::npm_publish_doc("tls-pkg", 200_000);
    let r = http::request(
        outer.addr(),
        "PUT",
        "/tls-pkg",
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = sink.seen_at("/tls-pkg");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].ending, Ending::Complete);
    assert_eq!(seen[0].body_bytes, body.len() as u64);
    assert_eq!(
        seen[0].header("x-forwarded-proto"),
        Some("https"),
        "the inner gateway was reached over TLS"
    );
    assert_eq!(seen[0].header("via"), Some("1.1 portcullis, 1.1 portcullis"));

    // The same upstream with a CA that did not sign its certificate: refused as unavailable.
    let mut untrusted = RegistrySpec::new("npm", "npm", inner.addr());
    untrusted.upstream_extra = format!(
        "tls = true\nsni = \"localhost\"\nca_file = {:?}\n",
        other_ca.display().to_string()
    );
    let wrong = Gateway::builder()
        .registry(untrusted)
        .rules("")
        .start(&dir.path().join("wrong"));
    let r = http::get(wrong.addr(), "/tls-pkg");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["code"], "upstream_unavailable");
    assert_eq!(
        sink.seen_at("/tls-pkg").len(),
        1,
        "nothing passed the untrusted connection"
    );
}

#[test]
fn a_backend_slower_than_the_read_timeout_gets_a_json_504() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut registry = RegistrySpec::new("npm", "npm", sink.addr());
    registry.upstream_extra = "read_timeout = \"500ms\"\n".into();
    let gateway = Gateway::builder().registry(registry).rules("").start(dir.path());
    let started = Instant::now();
    let r = http::get(gateway.addr(), "/slow/3000");
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["code"], "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the timeout did not apply"
    );
    assert!(
        gateway.metric_reaching(
            "portcullis_upstream_errors_total{kind=\"timeout\",registry=\"npm\"}",
            1.0
        ) >= 1.0
    );
    assert_eq!(http::get(gateway.addr(), "/slow/10").status, 200);
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish() {
    let (sink, _dir, mut gateway) = npm_over_sink("");
    let addr = gateway.addr();
    let body = http::npm_publish_doc("draining", 380_000);
    let mut stream = http::connect(addr);
    write!(
        stream,
        "PUT /draining HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("head");
    stream.write_all(&body[..4096]).expect("first bytes");
    std::thread::sleep(Duration::from_millis(200));
    gateway.process().signal("TERM");
    std::thread::sleep(Duration::from_millis(500));
    stream.write_all(&body[4096..]).expect("the rest, after SIGTERM");
    let r = http::read_response(&mut stream).expect("response");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        sink.seen_at("/draining").first().map(|s| (s.ending, s.body_bytes)),
        Some((Ending::Complete, body.len() as u64))
    );
    let status = gateway.process().wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some(),
        "the gateway did not exit after SIGTERM and the grace period"
    );
}

#[test]
fn graceful_upgrade_hands_over_the_listeners_without_failing_a_request() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut old = Gateway::builder()
        .registry(RegistrySpec::new("npm", "npm", sink.addr()))
        .rules("")
        .start(dir.path());
    let addr = old.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match std::panic::catch_unwind(|| {
                        http::request(addr, "PUT", "/upgrading", &[], &http::npm_publish_doc("upgrading", 10)).status
                    }) {
                        Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut new = old.spawn_upgrade();
    std::thread::sleep(Duration::from_millis(1000));
    old.process().signal("QUIT");
    assert!(
        old.process().wait_exit(Duration::from_secs(20)).is_some(),
        "the old process did not exit"
    );
    let served_before = ok.load(Ordering::Relaxed);
    // The new process serves on the same addresses.
    assert!(wait_until(Duration::from_secs(5), || ok.load(Ordering::Relaxed)
        > served_before + 50));
    assert_eq!(
        http::get(old.admin(), "/healthz").status,
        200,
        "admin listener handed over too"
    );
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("graceful upgrade: {ok} requests served, {failed} failed");
    assert!(new.try_exit().is_none(), "the new process is running: {}", new.log());
    assert_eq!(failed, 0);
}
