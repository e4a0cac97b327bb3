//! Uncached verification time per bundle kind, and cached lookups, in-process (release build),
//! with the Sigstore project's `sigstore-verify` on the same bundles beside it. Reports wall and
//! CPU microseconds per verification (bundle parse included). Run: `bench/verify.sh`.

use std::sync::Arc;
use std::time::Instant;

use portcullis::metrics::Metrics;
use portcullis::provenance::cache::{CacheSettings, VerificationCache};
use portcullis_verify::{verify, Artifact, Bundle, Policy, TrustedRoot};

const IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Process CPU time (user + system) in microseconds.
fn cpu_micros() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    ticks * 1_000_000 / 100
}

/// Wall and CPU microseconds per `sigstore-verify` verification of `bundle` (parse included),
/// the trusted root parsed once as for Portcullis.
fn sigstore_verify_cost(root: &[u8], bundle: &[u8], artifact: &[u8], iterations: u32) -> (f64, f64) {
    use sigstore_verify::trust_root::TrustedRoot;
    use sigstore_verify::types::Bundle;
    use sigstore_verify::{verify, VerificationPolicy};
    let root = TrustedRoot::from_json(std::str::from_utf8(root).expect("utf-8")).expect("root");
    let text = std::str::from_utf8(bundle).expect("utf-8");
    let policy = VerificationPolicy::new(IDENTITY, "https://token.actions.githubusercontent.com");
    verify(artifact, &Bundle::from_json(text).expect("bundle"), &policy, &root).expect("sigstore-verify verifies");
    let (cpu0, wall0) = (cpu_micros(), Instant::now());
    for _ in 0..iterations {
        let bundle = Bundle::from_json(text).expect("bundle");
        verify(artifact, &bundle, &policy, &root).expect("verifies");
    }
    (
        wall0.elapsed().as_secs_f64() * 1e6 / f64::from(iterations),
        (cpu_micros() - cpu0) as f64 / f64::from(iterations),
    )
}

fn main() {
    let iterations = 2000u32;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let cases = [
        ("hashedrekord, bundle v0.3, Rekor v1", "happy-path-v0.3"),
        ("DSSE in-toto, bundle v0.3, Rekor v1", "happy-path-intoto-in-dsse-v3"),
        ("hashedrekord, Rekor v2 + RFC 3161", "rekor2-happy-path"),
    ];
    println!("| bundle kind | verifier | µs per verify (wall) | µs per verify (CPU) |");
    println!("|---|---|---:|---:|");
    let suite = fixtures().join("sigstore-conformance/bundle-verify");
    let artifact = Artifact::from_bytes(read(&suite.join("a.txt")));
    let policy = Policy::Identity {
        san: IDENTITY.into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
    };
    let mut cached_inputs = None;
    for (name, case) in cases {
        let dir = suite.join(case);
        let root_path = if dir.join("trusted_root.json").exists() {
            dir.join("trusted_root.json")
        } else {
            fixtures().join("trusted-roots/public-good-production.trusted_root.json")
        };
        let root = TrustedRoot::from_json(&read(&root_path)).expect("root");
        let json = read(&dir.join("bundle.sigstore.json"));
        verify(
            &Bundle::from_json(&json).expect("bundle"),
            &artifact,
            &root,
            &policy,
            now,
        )
        .expect("verifies");
        let (cpu0, wall0) = (cpu_micros(), Instant::now());
        for _ in 0..iterations {
            let bundle = Bundle::from_json(&json).expect("bundle");
            verify(&bundle, &artifact, &root, &policy, now).expect("verifies");
        }
        let wall = wall0.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
        let cpu = (cpu_micros() - cpu0) as f64 / f64::from(iterations);
        println!("| {name} | Portcullis | {wall:.0} | {cpu:.0} |");
        let (wall, cpu) = sigstore_verify_cost(&read(&root_path), &json, &read(&suite.join("a.txt")), iterations);
        println!("| {name} | sigstore-verify 0.15.1 | {wall:.0} | {cpu:.0} |");
        if cached_inputs.is_none() {
            cached_inputs = Some((json, root));
        }
    }
    let (json, root) = cached_inputs.expect("inputs");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cache = VerificationCache::new(CacheSettings::default(), Arc::new(Metrics::new()));
    let (json, root): (Arc<[u8]>, Arc<TrustedRoot>) = (json.into(), Arc::new(root));
    runtime.block_on(async {
        let lookups = 100_000u32;
        cache
            .verify(json.clone(), artifact.clone(), root.clone(), policy.clone(), now)
            .await;
        let wall0 = Instant::now();
        for _ in 0..lookups {
            let outcome = cache
                .verify(json.clone(), artifact.clone(), root.clone(), policy.clone(), now)
                .await;
            assert!(outcome.is_ok());
        }
        let wall = wall0.elapsed().as_secs_f64() * 1e6 / f64::from(lookups);
        println!(
            "| cached lookup (key = SHA-256 of bundle + artifact digest + root + policy) | Portcullis | {wall:.1} | |"
        );
    });
}
