//! Peak RSS of the gateway while it streams large bodies, to show memory does not grow with
//! body size: one 1 GiB upload, 32 concurrent 100 MiB uploads, one 1 GiB download, each on a
//! fresh gateway (so VmHWM is that scenario's peak) in front of a discarding backend.
//!
//! Run with `bench/memory.sh` (release build). Writes `bench/results/memory.json`.

use std::time::Instant;

use portcullis_e2e::gateway::{Gateway, RegistrySpec};
use portcullis_e2e::http;
use portcullis_e2e::sink::{Ending, Sink};

const MIB: u64 = 1 << 20;

struct Row {
    scenario: String,
    body_mib: u64,
    seconds: f64,
    baseline_kib: u64,
    peak_kib: u64,
}

fn gateway(sink: &Sink, dir: &std::path::Path, protocol: &str) -> Gateway {
    let mut registry = RegistrySpec::new(protocol, protocol, sink.addr());
    registry.extra = "max_body_bytes = \"8 GiB\"".into();
    registry.upstream_extra = "read_timeout = \"600s\"\nwrite_timeout = \"600s\"".into();
    Gateway::builder()
        .registry(registry)
        .rules(&format!("[registries.{protocol}]\nmax_upload_bytes = \"8 GiB\"\n"))
        .start(dir)
}

fn measure(name: &str, body_mib: u64, run: impl FnOnce(&Gateway)) -> Row {
    measure_on("pypi", name, body_mib, run)
}

fn measure_on(protocol: &str, name: &str, body_mib: u64, run: impl FnOnce(&Gateway)) -> Row {
    let sink = Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gw = gateway(&sink, dir.path(), protocol);
    let baseline_kib = gw.process().rss_kib().unwrap_or(0);
    let started = Instant::now();
    run(&gw);
    let seconds = started.elapsed().as_secs_f64();
    let peak_kib = gw.process().peak_rss_kib().unwrap_or(0);
    let incomplete = sink
        .seen()
        .iter()
        .filter(|s| s.method != "GET" && s.ending != Ending::Complete)
        .count();
    assert_eq!(incomplete, 0, "{name}: an upload did not arrive whole");
    Row {
        scenario: name.to_owned(),
        body_mib,
        seconds,
        baseline_kib,
        peak_kib,
    }
}

fn main() {
    let rows = vec![
        measure("one 1 GiB upload", 1024, |gw| {
            let (r, _) = http::stream_pypi_upload(gw.addr(), "one-gib", 1024 * MIB);
            assert_eq!(r.status, 200, "{}", r.text());
        }),
        measure("32 concurrent 100 MiB uploads", 3200, |gw| {
            let addr = gw.addr();
            let threads: Vec<_> = (0..32)
                .map(|i| {
                    std::thread::spawn(move || {
                        http::stream_pypi_upload(addr, &format!("concurrent{i}"), 100 * MIB)
                            .0
                            .status
                    })
                })
                .collect();
            for t in threads {
                assert_eq!(t.join().expect("upload thread"), 200);
            }
        }),
        measure_on("npm", "one 200 MiB npm publish (base64 tarball in JSON)", 267, |gw| {
            let body = http::npm_publish_doc("big-npm", 200 * MIB as usize);
            let r = http::request(
                gw.addr(),
                "PUT",
                "/big-npm",
                &[("content-type", "application/json")],
                &body,
            );
            assert_eq!(r.status, 200, "{}", r.text());
        }),
        measure("one 1 GiB download", 1024, |gw| {
            let (status, bytes) = http::stream_download(gw.addr(), &format!("/blob/{}", 1024 * MIB));
            assert_eq!((status, bytes), (200, 1024 * MIB));
        }),
    ];

    println!("| scenario | body MiB | seconds | RSS before (MiB) | peak RSS (MiB) |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            r.scenario,
            r.body_mib,
            r.seconds,
            r.baseline_kib as f64 / 1024.0,
            r.peak_kib as f64 / 1024.0
        );
    }
    let json: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({"scenario": r.scenario, "body_mib": r.body_mib, "seconds": r.seconds,
                               "rss_before_kib": r.baseline_kib, "peak_rss_kib": r.peak_kib})
        })
        .collect();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/memory.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json).unwrap_or_default()).expect("write results");
    println!("\nwritten to {}", out.display());
}
