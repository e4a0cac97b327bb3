//! Criterion benchmarks of Sigstore verification: uncached per bundle kind, and the cache.
//! Run: `cargo bench -p portcullis-bench --bench verify`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
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

struct Case {
    bundle_json: Vec<u8>,
    root: TrustedRoot,
}

fn case(name: &str) -> Case {
    let dir = fixtures().join("sigstore-conformance/bundle-verify").join(name);
    let root_path = if dir.join("trusted_root.json").exists() {
        dir.join("trusted_root.json")
    } else {
        fixtures().join("trusted-roots/public-good-production.trusted_root.json")
    };
    Case {
        bundle_json: read(&dir.join("bundle.sigstore.json")),
        root: TrustedRoot::from_json(&read(&root_path)).expect("root"),
    }
}

fn benches(c: &mut Criterion) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let artifact = Artifact::from_bytes(read(&fixtures().join("sigstore-conformance/bundle-verify/a.txt")));
    let policy = Policy::Identity {
        san: IDENTITY.into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
    };
    let mut group = c.benchmark_group("verify (uncached)");
    for (label, name) in [
        ("hashedrekord v1", "happy-path-v0.3"),
        ("dsse v0.3", "happy-path-intoto-in-dsse-v3"),
        ("rekor v2 + tsa", "rekor2-happy-path"),
    ] {
        let case = case(name);
        group.bench_function(label, |b| {
            b.iter(|| {
                let bundle = Bundle::from_json(&case.bundle_json).expect("bundle");
                verify(&bundle, &artifact, &case.root, &policy, now).expect("verifies")
            })
        });
    }
    group.finish();

    let case = case("happy-path-v0.3");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cache = VerificationCache::new(CacheSettings::default(), Arc::new(Metrics::new()));
    let json: Arc<[u8]> = case.bundle_json.clone().into();
    let root = Arc::new(case.root);
    runtime.block_on(cache.verify(json.clone(), artifact.clone(), root.clone(), policy.clone(), now));
    c.bench_function("verify (cached lookup)", |b| {
        b.iter(|| runtime.block_on(cache.verify(json.clone(), artifact.clone(), root.clone(), policy.clone(), now)))
    });
}

criterion_group!(verification, benches);
criterion_main!(verification);
