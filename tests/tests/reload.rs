//! Hot reload: rules swap atomically under traffic without failing a request, a request is
//! decided under the revision it started with, and a bad file keeps the last good rules.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_e2e::gateway::npm_over_sink;
use portcullis_e2e::http;
use portcullis_e2e::wait_until;

fn rules(variant: u32) -> String {
    format!(
        "# variant {variant}\n[registries.npm]\nmax_upload_bytes = \"{} MiB\"\n[[registries.npm.projects]]\nid = \"deny-x\"\nnames = [\"x-*\"]\naction = \"deny\"\n",
        10 + variant
    )
}

#[test]
fn reloads_under_traffic_fail_no_request() {
    let (_sink, _dir, gateway) = npm_over_sink(&rules(0));
    let addr = gateway.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    i += 1;
                    let r = if i.is_multiple_of(2) {
                        http::get(addr, "/some-pkg")
                    } else {
                        http::request(
                            addr,
                            "PUT",
                            &format!("/pkg-{w}-{i}"),
                            &[("Content-Type", "application/json")],
                            &http::npm_publish_doc(&format!("pkg-{w}-{i}"), 10),
                        )
                    };
                    if r.status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed: {} {}", r.status, r.text());
                    }
                }
            })
        })
        .collect();

    let reloads = 20u32;
    let mut revisions = std::collections::BTreeSet::new();
    for n in 1..=reloads {
        gateway.write_rules(&rules(n % 2));
        if n.is_multiple_of(4) {
            gateway.signal_hup();
        }
        std::thread::sleep(Duration::from_millis(200));
        revisions.insert(gateway.revision());
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "{ok} requests succeeded, {failed} failed during {reloads} rules rewrites; revisions seen: {revisions:?}"
    );
    assert_eq!(failed, 0);
    assert!(ok > 100, "too little traffic to mean anything: {ok}");
    assert_eq!(
        revisions.len(),
        2,
        "both rule variants must have been in force: {revisions:?}"
    );
    assert!(
        gateway.metric("portcullis_rules_reloads_total{result=\"ok\"}") >= 10.0,
        "{}",
        gateway.metrics()
    );
    // Every decision line names the revision it was decided under, and both appear.
    let logged: std::collections::BTreeSet<String> = gateway
        .decisions(ok as usize / 2)
        .iter()
        .filter_map(|e| e["rules_revision"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(logged, revisions, "decision lines carry the revisions in force");
}

#[test]
fn a_request_is_decided_under_the_revision_it_started_with() {
    let (_sink, _dir, gateway) = npm_over_sink("[registries.npm]\n");
    let before = gateway.revision();
    let addr = gateway.addr();
    let body = http::npm_publish_doc("late-pkg", 190_000);
    let mut stream = http::connect(addr);
    write!(
        stream,
        "PUT /late-pkg HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("head");
    stream.write_all(&body[..1024]).expect("first bytes");
    // While the upload is in flight, rules that deny it come into force.
    gateway.write_rules("[registries.npm]\ndefault = \"deny\"\n");
    assert!(wait_until(Duration::from_secs(5), || gateway.revision() != before));
    stream.write_all(&body[1024..]).expect("rest");
    let r = http::read_response(&mut stream).expect("response");
    assert_eq!(
        r.status,
        200,
        "an upload started under the old rules must finish under them: {}",
        r.text()
    );
    // A new request sees the new rules.
    let r = http::request(addr, "PUT", "/late-pkg", &[], &http::npm_publish_doc("late-pkg", 10));
    assert_eq!(r.status, 403);
    // The two decision lines are written as each request ends, in either order.
    let decisions = gateway.decisions(2);
    assert_eq!(decisions.len(), 2);
    let allowed = decisions
        .iter()
        .find(|d| d["outcome"] == "allow")
        .expect("the late upload's decision");
    let refused = decisions
        .iter()
        .find(|d| d["outcome"] == "refuse")
        .expect("the new request's decision");
    assert_eq!(allowed["rules_revision"], before.as_str());
    assert_ne!(refused["rules_revision"], before.as_str());
}

#[test]
fn a_bad_rules_file_keeps_the_last_good_rules() {
    let (_sink, _dir, gateway) = npm_over_sink("[registries.npm]\ndefault = \"deny\"\n");
    let good = gateway.revision();
    gateway.write_rules("[registries.npm]\ndefault = \"deny\"\nsurprise = true\n");
    assert!(wait_until(Duration::from_secs(5), || gateway
        .metric("portcullis_rules_reloads_total{result=\"error\"}")
        >= 1.0));
    assert_eq!(gateway.revision(), good);
    assert_eq!(
        http::request(
            gateway.addr(),
            "PUT",
            "/anything",
            &[],
            &http::npm_publish_doc("anything", 10)
        )
        .status,
        403,
        "last good rules still apply"
    );
    let errors: Vec<_> = gateway
        .log_events()
        .into_iter()
        .filter(|e| e["level"] == "ERROR" && e["message"].as_str().is_some_and(|m| m.contains("rules reload failed")))
        .collect();
    assert!(
        errors.iter().any(|e| e["error"]
            .as_str()
            .is_some_and(|m| m.contains("rules.toml") && m.contains("unknown field"))),
        "the log says which file and why: {errors:?}"
    );
}
