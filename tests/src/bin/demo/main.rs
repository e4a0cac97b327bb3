//! `demo`: Portcullis's main job in a few screens. One gateway in front of a real pypiserver
//! and a real Verdaccio; real clients (twine, the npm CLI); the real PEP 740 attestation and
//! npm provenance of `tests/fixtures`, verified offline; trusted publishing with a local OIDC
//! issuer standing in for GitHub Actions; npm's deletion policy. Ends with a summary table and
//! exits non-zero if anything did not go as the demo says it does.
//!
//! ```text
//! demo [--keep]      (scripts/demo builds and runs it; --keep leaves the work folder)
//! ```

mod decided;
mod npm;
mod pypi;
mod report;
mod stack;

use std::process::ExitCode;

use portcullis_e2e::http;

use crate::report::{clip, Report};
use crate::stack::Stack;

fn main() -> ExitCode {
    let keep = std::env::args().skip(1).any(|a| a == "--keep");
    let dir = tempfile::Builder::new()
        .prefix("portcullis-demo-")
        .tempdir()
        .expect("work folder");
    let mut report = Report::new();
    println!("Starting pypiserver, Verdaccio, a local OIDC issuer and the gateway…");
    let stack = Stack::start(dir.path());
    println!(
        "Gateway {} (PyPI under /pypi/ -> pypiserver {}, npm -> Verdaccio {}), admin http://{}",
        stack.gateway.url(),
        stack.pypiserver.addr(),
        stack.verdaccio.addr(),
        stack.gateway.admin()
    );
    println!("Rules: {}", stack.gateway.rules_path().display());

    let refused = pypi::run(&stack, &mut report);
    npm::run(&stack, &mut report);
    where_to_look(&stack, &mut report, refused.as_deref());
    let ok = report.finish();
    if keep {
        let kept = dir.keep();
        println!("Work folder kept: {} (the services are stopped)", kept.display());
    }
    drop(stack);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Metrics, the decision log and `explain`, as an operator would look at them.
fn where_to_look(stack: &Stack, report: &mut Report, refused: Option<&str>) {
    let admin = stack.gateway.admin();
    report.step(&format!("Where to look next: http://{admin}/metrics"));
    let metrics = stack.gateway.metrics();
    for prefix in [
        "portcullis_decisions_total",
        "portcullis_provenance_decisions_total",
        "portcullis_trusted_publishing_exchanges_total",
        "portcullis_deletion_decisions_total",
    ] {
        for line in metrics.lines().filter(|l| l.starts_with(prefix)).take(4) {
            report.line(line);
        }
    }
    let decisions = stack.gateway.decisions(1);
    report.line(format!(
        "decision log: {} lines, one JSON object per request, in {}",
        decisions.len(),
        stack.gateway.dir.join("portcullis.log").display()
    ));
    match refused {
        Some(id) => {
            let explained = http::get(admin, &format!("/decisions/{id}"));
            report.expect(explained.status == 200, format!("explain {id}: {}", explained.text()));
            let why = explained.json();
            report.line(format!("GET http://{admin}/decisions/{id}   (explain, by request id):"));
            report.line(format!(
                "  the tampered upload: {} {} by {} of publisher {}, rules revision {}",
                why["outcome"].as_str().unwrap_or("?"),
                why["refusal"]["code"].as_str().unwrap_or("?"),
                why["facts"]["credential"].as_str().unwrap_or("?"),
                why["facts"]["publisher"].as_str().unwrap_or("?"),
                why["rules"]["revision"].as_str().unwrap_or("?"),
            ));
            let steps: Vec<&str> = why["provenance_steps"]
                .as_array()
                .map(|s| s.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            for step in steps {
                report.line(format!("  - {}", clip(step, 240)));
            }
        }
        None => report.expect(false, "no request id for the refused upload"),
    }
}
