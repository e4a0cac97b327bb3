//! What the upload path costs: PyPI uploads of 1 MiB and 50 MiB wheels and of a real sdist with
//! its real PEP 740 attestation, sent directly to a discarding backend, through a pass-through
//! gateway (no rules), and through a full-policy gateway (project rules, provenance rules,
//! Sigstore verification cached and uncached, ledger), all in the same run and interleaved.
//! Reports p50/p99 latency per upload and the gateway's CPU time per upload (from
//! `/proc/<pid>/stat`), as medians over rounds.
//!
//! Run with `bench/upload-cost.sh`. Writes `bench/results/upload-cost.json`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portcullis_bench::{cpu_seconds, percentile_ms};
use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::http::{self, Form};
use portcullis_e2e::sink::Sink;
use serde_json::json;

const MIB: usize = 1 << 20;
const SDIST: &str = "pypi_attestations-0.0.19.tar.gz";

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn gateway(sink: &Sink, dir: &std::path::Path, policy: bool, cache: bool) -> Gateway {
    let mut registry = RegistrySpec::new("pypi", "pypi", sink.addr());
    registry.extra = "max_body_bytes = \"200 MiB\"".into();
    let mut builder = Gateway::builder().registry(registry);
    if policy {
        let root = fixtures().join("trusted-roots/public-good-production.trusted_root.json");
        builder = builder.rules(&portcullis_bench::targets::POLICY_RULES).config(&format!(
            "[provenance]\ntrusted_root = {:?}\n{}",
            root.display().to_string(),
            if cache { "" } else { "cache_size = 0\n" }
        ));
    }
    builder.start(dir)
}

struct Case {
    name: &'static str,
    form: Form,
}

/// One upload; its latency, or the answer when it was not a 200.
fn send(addr: SocketAddr, form: &Form) -> Result<Duration, String> {
    let started = Instant::now();
    let r = http::request(addr, "POST", "/", &[("content-type", &form.content_type())], &form.body);
    if r.status != 200 {
        return Err(format!("{} {}", r.status, r.text()));
    }
    Ok(started.elapsed())
}

fn main() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut passthrough = gateway(&sink, &dir.path().join("passthrough"), false, true);
    let mut cached = gateway(&sink, &dir.path().join("cached"), true, true);
    let mut uncached = gateway(&sink, &dir.path().join("uncached"), true, false);

    let case_dir = fixtures().join("pep740/github-publish-pypi-attestations-0.0.19");
    let sdist = std::fs::read(case_dir.join("artifact")).expect("sdist");
    let attestation =
        std::fs::read_to_string(case_dir.join(format!("{SDIST}.publish.attestation"))).expect("attestation");
    let wheel = |mib: usize| -> Vec<u8> { (0..mib * MIB).map(|i| (i % 251) as u8).collect() };
    let cases = [
        Case {
            name: "wheel 1 MiB",
            form: Form::pypi_upload("bench-pkg", "1.0", "bench_pkg-1.0-py3-none-any.whl", &wheel(1)),
        },
        Case {
            name: "wheel 50 MiB",
            form: Form::pypi_upload("bench-pkg", "1.0", "bench_pkg-1.0-py3-none-any.whl", &wheel(50)),
        },
        Case {
            name: "sdist 29 KiB + PEP 740 attestation",
            form: Form::pypi_upload_with(
                "pypi-attestations",
                "0.0.19",
                SDIST,
                &sdist,
                &[("attestations", &format!("[{attestation}]"))],
            ),
        },
    ];
    let rounds = 5;
    let mut rows = Vec::new();
    for case in &cases {
        let per_round = if case.form.body.len() > 10 * MIB { 4 } else { 40 };
        let mut samples: Vec<(&str, Vec<Duration>, Vec<f64>)> = vec![
            ("direct", Vec::new(), Vec::new()),
            ("gateway pass-through", Vec::new(), Vec::new()),
            ("gateway full policy, verification cached", Vec::new(), Vec::new()),
            ("gateway full policy, verification uncached", Vec::new(), Vec::new()),
        ];
        for _ in 0..rounds {
            // Interleaved: every target once per round, so noise hits all of them alike.
            for (index, target) in samples.iter_mut().enumerate() {
                let (addr, pid) = match index {
                    0 => (sink.addr(), None),
                    1 => (passthrough.addr(), Some(passthrough.process().pid())),
                    2 => (cached.addr(), Some(cached.process().pid())),
                    _ => (uncached.addr(), Some(uncached.process().pid())),
                };
                let cpu_before = pid.map(cpu_seconds);
                for _ in 0..per_round {
                    match send(addr, &case.form) {
                        Ok(took) => target.1.push(took),
                        Err(answer) => {
                            let log = match index {
                                1 => passthrough.log(),
                                2 => cached.log(),
                                3 => uncached.log(),
                                _ => String::new(),
                            };
                            panic!("{} via {}: {answer}\n--- gateway log ---\n{log}", case.name, target.0);
                        }
                    }
                }
                if let (Some(pid), Some(before)) = (pid, cpu_before) {
                    target.2.push((cpu_seconds(pid) - before) * 1e6 / per_round as f64);
                }
            }
        }
        for (target, mut latencies, mut cpu) in samples {
            latencies.sort();
            cpu.sort_by(f64::total_cmp);
            let cpu_median = cpu.get(cpu.len() / 2).copied();
            let row = json!({
                "case": case.name,
                "target": target,
                "uploads": latencies.len(),
                "p50_ms": percentile_ms(&latencies, 0.5),
                "p99_ms": percentile_ms(&latencies, 0.99),
                "gateway_cpu_us_per_upload": cpu_median,
            });
            println!("{row}");
            rows.push(row);
        }
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/upload-cost.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&json!({"rows": rows})).expect("json"),
    )
    .expect("write");
    println!("| case | target | p50 ms | p99 ms | gateway CPU µs/upload |");
    println!("|---|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.2} | {:.2} | {} |",
            r["case"].as_str().unwrap_or_default(),
            r["target"].as_str().unwrap_or_default(),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["gateway_cpu_us_per_upload"]
                .as_f64()
                .map_or("–".to_owned(), |c| format!("{c:.0}"))
        );
    }
}
