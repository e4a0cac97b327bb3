//! `soak`: runs the soak driver (`portcullis_e2e::soak`) for a given time and writes
//! `soak.json` and `soak.md` into an output folder (default `bench/results`).
//!
//! ```text
//! soak [--minutes N | --seconds N] [--workers N] [--out DIR] [--work DIR] [--pause-ms N]
//! ```
//!
//! The gateway binary is `$PORTCULLIS_BIN` (scripts/soak sets the release build). Exits 1
//! when any answer was unexpected or the reconciliation is not exact.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use portcullis_e2e::soak::{run, SoakConfig};

fn main() -> ExitCode {
    let mut duration = Duration::from_secs(20 * 60);
    let mut out = portcullis_e2e::repo_root().join("bench/results");
    let mut work: Option<PathBuf> = None;
    let mut workers = None;
    let mut pause = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> String {
            args.next().unwrap_or_else(|| {
                eprintln!("{name} needs a value");
                std::process::exit(2)
            })
        };
        let number = |name: &str, text: String| -> u64 {
            text.parse().unwrap_or_else(|_| {
                eprintln!("{name}: not a number: {text}");
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            "--minutes" => duration = Duration::from_secs(60 * number("--minutes", value("--minutes"))),
            "--seconds" => duration = Duration::from_secs(number("--seconds", value("--seconds"))),
            "--workers" => workers = Some(number("--workers", value("--workers")) as usize),
            "--pause-ms" => pause = Some(Duration::from_millis(number("--pause-ms", value("--pause-ms")))),
            "--out" => out = PathBuf::from(value("--out")),
            "--work" => work = Some(PathBuf::from(value("--work"))),
            "-h" | "--help" => {
                println!("soak [--minutes N | --seconds N] [--workers N] [--pause-ms N] [--out DIR] [--work DIR]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let mut config = SoakConfig::for_duration(duration);
    config.progress = true;
    if let Some(w) = workers {
        config.workers = w.max(1);
    }
    if let Some(p) = pause {
        config.pause = p;
    }
    let temp = tempfile::tempdir().expect("tempdir");
    let work = work.unwrap_or_else(|| temp.path().to_path_buf());
    let report = run(&config, &work);
    std::fs::create_dir_all(&out).expect("output folder");
    let json = serde_json::to_string_pretty(&report.to_json()).expect("json");
    std::fs::write(out.join("soak.json"), json + "\n").expect("write soak.json");
    std::fs::write(out.join("soak.md"), report.to_markdown()).expect("write soak.md");
    eprintln!(
        "[soak] {} requests, {} unexpected, reconciliation {}; wrote {}/soak.{{json,md}}",
        report.total_requests(),
        report.total_errors(),
        if report.reconciliation.exact() {
            "exact"
        } else {
            "MISMATCH"
        },
        out.display()
    );
    if report.total_errors() == 0 && report.reconciliation.exact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
