//! Every Sigstore conformance `bundle-verify` case, and the real PEP 740 and npm provenance
//! cases, through `portcullis verify-bundle` exactly as the conformance suite drives a client.

use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_e2e::fixtures;
use portcullis_e2e::gateway::binary;

struct Outcome {
    case: String,
    expected_ok: bool,
    ok: bool,
    output: String,
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn run_case(dir: &Path, suite_root: &Path) -> Outcome {
    let case = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cmd = Command::new(binary());
    cmd.arg("verify-bundle")
        .arg("--bundle")
        .arg(dir.join("bundle.sigstore.json"));
    if dir.join("key.pub").exists() {
        cmd.arg("--key").arg(dir.join("key.pub"));
    } else {
        let identity = read_trimmed(&dir.join("identity")).unwrap_or_else(|| {
            "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main".to_owned()
        });
        let issuer = read_trimmed(&dir.join("issuer"))
            .unwrap_or_else(|| "https://token.actions.githubusercontent.com".to_owned());
        cmd.arg("--certificate-identity")
            .arg(identity)
            .arg("--certificate-oidc-issuer")
            .arg(issuer);
    }
    let root: PathBuf = if dir.join("trusted_root.json").exists() {
        dir.join("trusted_root.json")
    } else {
        fixtures().join("trusted-roots/public-good-production.trusted_root.json")
    };
    cmd.arg("--trusted-root").arg(root);
    let artifact = [dir.join("artifact"), suite_root.join("a.txt")]
        .into_iter()
        .find(|p| p.exists());
    if let Some(artifact) = artifact {
        cmd.arg(artifact);
    }
    let out = cmd.output().expect("run verify-bundle");
    Outcome {
        expected_ok: !case.ends_with("_fail"),
        ok: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        case,
    }
}

fn run_suite(root: &Path) -> Vec<Outcome> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("bundle.sigstore.json").exists())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| run_case(d, root)).collect()
}

fn report(name: &str, outcomes: &[Outcome]) -> usize {
    let right = outcomes.iter().filter(|o| o.ok == o.expected_ok).count();
    eprintln!("{name}: {right}/{} decided right", outcomes.len());
    for o in outcomes {
        let mark = if o.ok == o.expected_ok { "ok  " } else { "WRONG" };
        eprintln!(
            "  {mark} {} (expected {}): {}",
            o.case,
            if o.expected_ok { "pass" } else { "fail" },
            o.output
        );
    }
    right
}

#[test]
fn sigstore_conformance_bundle_verify_cases() {
    let outcomes = run_suite(&fixtures().join("sigstore-conformance/bundle-verify"));
    assert_eq!(outcomes.len(), 70, "the suite has 70 cases");
    let right = report("sigstore-conformance", &outcomes);
    assert_eq!(right, outcomes.len(), "every conformance case must be decided right");
}

#[test]
fn real_pep740_attestations() {
    let outcomes = run_suite(&fixtures().join("pep740"));
    assert_eq!(outcomes.len(), 5);
    let right = report("pep740", &outcomes);
    assert_eq!(right, outcomes.len(), "every PEP 740 case must be decided right");
}

#[test]
fn real_npm_provenance() {
    let outcomes = run_suite(&fixtures().join("npm-provenance"));
    assert_eq!(outcomes.len(), 4);
    let right = report("npm-provenance", &outcomes);
    assert_eq!(right, outcomes.len(), "every npm provenance case must be decided right");
}
