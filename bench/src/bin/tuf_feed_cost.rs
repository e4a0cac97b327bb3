//! What the TUF feed costs: small PyPI uploads through two gateways in front of two real
//! pypiservers, one without a feed and one feeding a real Repository Service for TUF
//! (`portcullis_e2e::rstuf`), interleaved in rounds. Reports per gateway the upload latency,
//! the gateway process's CPU per upload including the feed's background work (read back,
//! hash, submit, poll; measured after the feed has drained), and for the fed one how long the
//! round took to become signed metadata after its last upload.
//!
//! The feed runs with its defaults (batch 64, poll every second). The gateway without a feed is
//! measured over a window as long as the fed one's drain, so both include the same idle
//! background work and the difference is the feed's.
//!
//! Run with `bench/tuf-feed-cost.sh`. Writes `bench/results/tuf-feed-cost.json`.

use std::time::{Duration, Instant};

use portcullis_bench::{cpu_seconds, percentile_ms};
use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::http::{self, Form};
use portcullis_e2e::pypiserver::{self, Pypiserver};
use portcullis_e2e::rstuf::Rstuf;
use serde_json::json;

const ROUNDS: usize = 4;
const PER_ROUND: usize = 50;
const SIZE: usize = 29 * 1024;

fn upload(gateway: &Gateway, version: &str) -> Duration {
    let filename = format!("bench_pkg-{version}.tar.gz");
    let content: Vec<u8> = (0..SIZE)
        .map(|i| (i * 7 + version.len()) as u8)
        .chain(version.bytes())
        .collect();
    let form = Form::pypi_upload("bench_pkg", version, &filename, &content);
    let auth = http::basic_auth(pypiserver::USER, pypiserver::PASSWORD);
    let started = Instant::now();
    let r = http::request(
        gateway.addr(),
        "POST",
        "/",
        &[("content-type", &form.content_type()), ("authorization", &auth)],
        &form.body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    started.elapsed()
}

/// Waits until RSTUF has published `targets` targets; how long that took. It reads the published
/// metadata, not the gateway's admin listener, so the waiting costs the gateway nothing.
fn drain(rstuf: &Rstuf, targets: usize, gateway: &Gateway) -> Duration {
    let started = Instant::now();
    let mut published = false;
    while started.elapsed() < Duration::from_secs(600) {
        if rstuf.targets().len() >= targets {
            published = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(published, "the feed did not drain:\n{}", gateway.log());
    started.elapsed()
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path();
    let plain_backend = Pypiserver::start(&work.join("pypiserver-plain"));
    let fed_backend = Pypiserver::start(&work.join("pypiserver-fed"));
    let rstuf = Rstuf::start(&work.join("rstuf"));
    let plain = Gateway::builder()
        .registry(RegistrySpec::new("pypi", "pypi", plain_backend.addr()))
        .start(&work.join("plain"));
    let mut spec = RegistrySpec::new("pypi", "pypi", fed_backend.addr());
    spec.extra = format!("[registry.tuf]\napi = \"{}\"\n", rstuf.api_url());
    let mut fed = Gateway::builder().registry(spec).start(&work.join("fed"));
    let mut plain = plain;

    let mut latencies: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut cpu: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut drains = Vec::new();
    for round in 0..ROUNDS {
        for (index, gateway) in [&mut plain, &mut fed].into_iter().enumerate() {
            let pid = gateway.process().pid();
            let before = cpu_seconds(pid);
            for i in 0..PER_ROUND {
                latencies[index].push(upload(gateway, &format!("{round}.{i}")));
            }
            if index == 1 {
                // Every upload so far, and the project's index page.
                drains.push(drain(&rstuf, (round + 1) * PER_ROUND + 1, gateway));
            } else {
                // The same settling time, so both measure the same background work window.
                std::thread::sleep(drains.last().copied().unwrap_or(Duration::from_secs(3)));
            }
            cpu[index].push((cpu_seconds(pid) - before) * 1e6 / PER_ROUND as f64);
        }
    }
    let targets = rstuf.targets();
    assert_eq!(
        targets.len(),
        ROUNDS * PER_ROUND + 1,
        "every upload and the index page are signed"
    );

    let mut rows = Vec::new();
    for (index, name) in ["gateway, no feed", "gateway feeding RSTUF"].into_iter().enumerate() {
        latencies[index].sort();
        cpu[index].sort_by(f64::total_cmp);
        let row = json!({
            "target": name,
            "uploads": latencies[index].len(),
            "p50_ms": percentile_ms(&latencies[index], 0.5),
            "p99_ms": percentile_ms(&latencies[index], 0.99),
            "gateway_cpu_us_per_upload": cpu[index][cpu[index].len() / 2],
        });
        println!("{row}");
        rows.push(row);
    }
    drains.sort();
    let drain_row = json!({
        "uploads_per_round": PER_ROUND,
        "signed_after_last_upload_s": drains.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
    });
    println!("{drain_row}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/tuf-feed-cost.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&json!({"rows": rows, "drain": drain_row, "upload_bytes": SIZE})).expect("json"),
    )
    .expect("write");
    println!("| target | uploads | p50 ms | p99 ms | gateway CPU µs/upload (feed included) |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.0} |",
            r["target"].as_str().unwrap_or_default(),
            r["uploads"],
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["gateway_cpu_us_per_upload"].as_f64().unwrap_or(0.0),
        );
    }
    println!(
        "signed metadata {:.1} s after the last of {PER_ROUND} uploads (median of {ROUNDS} rounds)",
        drains[drains.len() / 2].as_secs_f64()
    );
}
