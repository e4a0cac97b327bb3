//! Every real case through this crate's verifier and the Sigstore project's (`sigstore-verify`
//! 0.15), side by side: the table in docs/provenance.md ("Measured against sigstore-verify")
//! comes from this test's output (`cargo test -p portcullis-verify --test sigstore_verify --
//! --nocapture`).

mod oracle;

use oracle::Case;

/// A case's name, whether it must verify, and the two verdicts (this crate's, sigstore-verify's).
type Verdicts = (String, bool, Result<(), String>, Result<(), String>);

fn verdicts(cases: &[Case]) -> Vec<Verdicts> {
    cases
        .iter()
        .map(|c| (c.name.clone(), c.must_verify, oracle::ours(c), oracle::theirs(c)))
        .collect()
}

#[test]
fn both_verifiers_on_every_real_case() {
    let mut cases = oracle::conformance();
    cases.extend(oracle::provenance());
    let results = verdicts(&cases);
    let (mut ours_right, mut theirs_right) = (0, 0);
    for (name, must, ours, theirs) in &results {
        ours_right += usize::from(ours.is_ok() == *must);
        theirs_right += usize::from(theirs.is_ok() == *must);
        if theirs.is_ok() != *must || ours.is_ok() != *must {
            println!(
                "| {name} | {} | ours: {} | sigstore-verify: {} |",
                if *must { "verify" } else { "refuse" },
                ours.as_ref().err().map_or("verified", String::as_str),
                theirs.as_ref().err().map_or("verified", String::as_str),
            );
        }
    }
    println!(
        "{} cases: ours right on {ours_right}, sigstore-verify right on {theirs_right}",
        results.len()
    );
    assert_eq!(ours_right, results.len(), "this crate decides every real case right");
    assert_eq!(
        theirs_right,
        results.len(),
        "sigstore-verify decided every real case right when this test was written; a change is worth a look"
    );
}

/// Every single-point mutation of every real bundle that verifies, through both verifiers: a
/// disagreement fails the test unless it is one of the kinds `oracle::EXPLAINED` names (where
/// this crate refuses a bundle whose fields disagree and `sigstore-verify` reads one of them).
#[test]
fn both_verifiers_on_every_single_point_mutation() {
    let mut cases = oracle::conformance();
    cases.extend(oracle::provenance());
    let mut total = 0;
    let mut disagreements = Vec::new();
    let mut unexplained = Vec::new();
    let (mut ours_accepted, mut theirs_accepted) = (0usize, 0usize);
    for case in cases.iter().filter(|c| c.must_verify) {
        for (name, mutated) in oracle::mutations(case) {
            total += 1;
            let (ours, theirs) = (oracle::ours(&mutated), oracle::theirs(&mutated));
            ours_accepted += usize::from(ours.is_ok());
            theirs_accepted += usize::from(theirs.is_ok());
            if ours.is_ok() != theirs.is_ok() {
                let why = oracle::explained(&name, &ours, &theirs);
                let line = format!(
                    "| {name} | ours: {} | sigstore-verify: {} | {} |",
                    ours.err().unwrap_or_else(|| "verified".into()),
                    theirs.err().unwrap_or_else(|| "verified".into()),
                    why.unwrap_or("UNEXPLAINED")
                );
                if why.is_none() {
                    unexplained.push(line.clone());
                }
                disagreements.push(line);
            }
        }
    }
    for line in &disagreements {
        println!("{line}");
    }
    println!(
        "{total} mutations: ours accepted {}, sigstore-verify accepted {}, {} disagreements",
        ours_accepted,
        theirs_accepted,
        disagreements.len()
    );
    assert!(total > 1000, "{total}");
    assert!(
        unexplained.is_empty(),
        "disagreements not explained in docs/provenance.md (oracle::EXPLAINED):\n{}",
        unexplained.join("\n")
    );
}
