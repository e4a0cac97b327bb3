//! This crate's verifier against the Sigstore project's (`sigstore-verify`) on mutated real
//! bundles: the input picks a bundle that verifies (conformance happy paths, the real PEP 740
//! and npm provenance) and up to 8 mutations (a place in its JSON and where in a string), and
//! both verifiers decide. Any disagreement fails unless it is one of the kinds
//! docs/provenance.md explains (`oracle::EXPLAINED`: this crate refuses a bundle whose fields
//! disagree, `sigstore-verify` reads one of them) — in particular this crate must never accept
//! what `sigstore-verify` refuses. The mutation and comparison code is the differential
//! test's (`gateway/verify/tests/oracle/mod.rs`), one copy.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::debug;

#[path = "../../gateway/verify/tests/oracle/mod.rs"]
mod oracle;

static CASES: LazyLock<Vec<(oracle::Case, serde_json::Value)>> = LazyLock::new(|| {
    let mut cases = oracle::conformance();
    cases.extend(oracle::provenance());
    cases
        .into_iter()
        .filter(|c| c.must_verify)
        .filter_map(|c| Some((c.clone(), serde_json::from_slice(&c.bundle).ok()?)))
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, picks)) = data.split_first() else {
        return;
    };
    let (case, original) = &CASES[usize::from(selector) % CASES.len()];
    let places = oracle::places(original);
    let mut bundle = original.clone();
    let mut applied = Vec::new();
    for pick in picks.chunks_exact(3).take(8) {
        let (path, leaf) = &places[usize::from(u16::from_le_bytes([pick[0], pick[1]])) % places.len()];
        if let Some(what) = oracle::apply(&mut bundle, path, leaf, usize::from(pick[2])) {
            applied.push(format!("{}{path} {what}", case.name));
        }
    }
    if applied.is_empty() || bundle == *original {
        return;
    }
    let mutated = oracle::mutated(case, applied.join(" + "), &bundle);
    let (ours, theirs) = (oracle::ours(&mutated), oracle::theirs(&mutated));
    if debug() {
        eprintln!("{}: ours {ours:?}, sigstore-verify {theirs:?}", mutated.name);
    }
    if ours.is_ok() == theirs.is_ok() {
        return;
    }
    let explained = applied
        .iter()
        .any(|name| oracle::explained(name, &ours, &theirs).is_some());
    assert!(
        explained,
        "unexplained disagreement on {}: ours {ours:?}, sigstore-verify {theirs:?}",
        mutated.name
    );
});
