//! Trusted-publishing exchange throughput and latency: `POST /_/oidc/mint-token` with a fresh,
//! valid RS256 GitHub-style ID token per request (each `jti` used once), against a release-built
//! gateway with a local HTTPS issuer (keys fetched once, then cached) and the SQLite state store.
//! One connection per exchange, as the PyPA clients make it. Reports exchanges per second,
//! p50/p99 latency and the gateway's CPU time per exchange (from `/proc/<pid>/stat`).
//!
//! Run with `bench/exchange.sh`. Writes `bench/results/exchange.json`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use portcullis_bench::{cpu_seconds, percentile_ms};
use portcullis_e2e::gateway::{trusted_publishing_config, Gateway, RegistrySpec};
use portcullis_e2e::http;
use portcullis_e2e::oidc::Issuer;
use portcullis_e2e::sink::Sink;
use serde_json::json;

const AUDIENCE: &str = "portcullis-bench";

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::start(&dir.path().join("issuer"));
    let sink = Sink::start();
    let gw_dir = dir.path().join("gateway");
    let rules = format!(
        "[issuers.gha]\nurl = \"{}\"\nkind = \"github\"\n[registries.pypi]\naudience = \"{AUDIENCE}\"\n\
         [[registries.pypi.publishers]]\nid = \"bench\"\nissuer = \"gha\"\nprojects = [\"bench-pkg\"]\n\
         repository = \"acme/bench\"\nrepository_owner_id = \"1\"\nworkflow = \"release.yml\"\npending = true\n",
        issuer.url()
    );
    let mut gateway = Gateway::builder()
        .registry(RegistrySpec::new("pypi", "pypi", sink.addr()))
        .rules(&rules)
        .config(&trusted_publishing_config(&gw_dir.join("keys"), issuer.ca_file()))
        .start(&gw_dir);
    let addr = gateway.addr();
    let pid = gateway.process().pid();

    let mint = |token: &str| {
        let body = serde_json::to_vec(&json!({ "token": token })).expect("json");
        http::request(
            addr,
            "POST",
            "/_/oidc/mint-token",
            &[("content-type", "application/json")],
            &body,
        )
    };
    let fresh = || issuer.token(issuer.github_claims(AUDIENCE, "acme/bench", "1", "release.yml"));
    // Warm up: the first exchange fetches the issuer's keys.
    for _ in 0..20 {
        let r = mint(&fresh());
        assert_eq!(r.status, 200, "{}", r.text());
    }

    let mut rows = Vec::new();
    for (concurrency, count) in [(1usize, 1000usize), (4, 4000), (16, 8000)] {
        let tokens: Arc<Vec<String>> = Arc::new((0..count).map(|_| fresh()).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(count)));
        let failures = Arc::new(AtomicUsize::new(0));
        let cpu_before = cpu_seconds(pid);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..concurrency {
                let (tokens, next, latencies, failures) =
                    (tokens.clone(), next.clone(), latencies.clone(), failures.clone());
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(token) = tokens.get(i) else { break };
                    let body = serde_json::to_vec(&json!({ "token": token })).expect("json");
                    let t = Instant::now();
                    let r = http::request(
                        addr,
                        "POST",
                        "/_/oidc/mint-token",
                        &[("content-type", "application/json")],
                        &body,
                    );
                    let elapsed = t.elapsed();
                    if r.status != 200 {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies.lock().expect("lock").push(elapsed);
                });
            }
        });
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid) - cpu_before;
        let mut sorted = latencies.lock().expect("lock").clone();
        sorted.sort();
        let row = json!({
            "concurrency": concurrency,
            "exchanges": count,
            "failed": failures.load(Ordering::Relaxed),
            "per_second": count as f64 / wall,
            "p50_ms": percentile_ms(&sorted, 0.50),
            "p99_ms": percentile_ms(&sorted, 0.99),
            "max_ms": percentile_ms(&sorted, 1.0),
            "gateway_cpu_us_per_exchange": cpu * 1e6 / count as f64,
        });
        println!("{row}");
        rows.push(row);
    }
    let jwks_fetches = issuer.requests("/jwks");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/exchange.json");
    let result = json!({
        "machine_cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "jwks_fetches": jwks_fetches,
        "rows": rows,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&result).expect("json")).expect("write results");
    println!("| concurrency | exchanges | failed | exchanges/s | p50 ms | p99 ms | gateway CPU µs/exchange |");
    println!("|---|---|---|---|---|---|---|");
    for r in result["rows"].as_array().expect("rows") {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.0} |",
            r["concurrency"],
            r["exchanges"],
            r["failed"],
            r["per_second"].as_f64().unwrap_or(0.0),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["gateway_cpu_us_per_exchange"].as_f64().unwrap_or(0.0)
        );
    }
    println!("JWKS fetched {jwks_fetches} time(s) for all exchanges");
    let _ = mint;
}
