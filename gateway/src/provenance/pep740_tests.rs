//! The attestations field read as Warehouse reads it, on a real PEP 740 attestation.

use std::sync::Arc;

use portcullis_verify::TrustedRoot;
use sha2::Digest as _;

use super::{check, Checked};
use crate::metrics::Metrics;
use crate::provenance::cache::{CacheSettings, VerificationCache};
use crate::test_fixtures::read as fixture;

const DIR: &str = "pep740/github-publish-pypi-attestations-0.0.19";
const FILE: &str = "pypi_attestations-0.0.19.tar.gz";

struct Upload {
    cache: VerificationCache,
    root: Arc<TrustedRoot>,
    sha256: [u8; 32],
    attestation: String,
    /// When the certificate was valid.
    now: i64,
}

fn upload() -> Upload {
    let root =
        TrustedRoot::from_json(&fixture("trusted-roots/public-good-production.trusted_root.json")).expect("root");
    let attestation =
        String::from_utf8(fixture(&format!("{DIR}/{FILE}.publish.attestation"))).expect("UTF-8 attestation");
    Upload {
        cache: VerificationCache::new(CacheSettings::default(), Arc::new(Metrics::new())),
        root: Arc::new(root),
        sha256: sha2::Sha256::digest(fixture(&format!("{DIR}/artifact"))).into(),
        attestation,
        now: 1_736_000_000,
    }
}

impl Upload {
    async fn check(&self, field: &str) -> Checked {
        check(&self.cache, &self.root, field.as_bytes(), FILE, self.sha256, self.now).await
    }
}

fn invalid(checked: Checked) -> String {
    match checked {
        Checked::Invalid(reason) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_real_attestation_verifies_as_sent() {
    let u = upload();
    let Checked::Verified(facts) = u.check(&format!("[{}]", u.attestation)).await else {
        panic!("the real attestation must verify");
    };
    assert_eq!(facts.len(), 1);
    assert_eq!(facts[0].predicate_type, "https://docs.pypi.org/attestations/publish/v1");
    // The same attestation with white space around it (another client's serialiser) is the
    // same attestation.
    assert!(matches!(
        u.check(&format!(" [ \n{} ] ", u.attestation)).await,
        Checked::Verified(_)
    ));
}

#[tokio::test]
async fn a_field_that_is_not_a_list_of_attestations_is_refused_with_warehouses_words() {
    let u = upload();
    assert!(invalid(u.check(&u.attestation).await).contains("the field must be a JSON list"));
    assert!(invalid(u.check("[{").await).starts_with("Malformed attestations: "));
    assert!(invalid(u.check("[]").await).contains("empty attestation set"));
    let three = format!("[{0},{0},{0}]", u.attestation);
    assert!(invalid(u.check(&three).await).contains("a maximum of 2"));
    let two = format!("[{0},{0}]", u.attestation);
    assert!(invalid(u.check(&two).await).contains("same predicate type"));
}

#[tokio::test]
async fn an_attestation_with_a_repeated_member_is_refused_not_read_one_way() {
    // A second "envelope" member after the genuine one: a last-wins reader and a first-wins
    // reader would see different attestations, so the gateway accepts neither.
    let u = upload();
    let body = u.attestation.trim_end().strip_suffix('}').expect("an object");
    let repeated = format!(r#"[{body},"envelope":{{"statement":"e30=","signature":"AA=="}}}}]"#);
    assert!(
        invalid(u.check(&repeated).await).contains("duplicate field"),
        "refused as repeated"
    );
    let first = format!(
        r#"[{{"envelope":{{"statement":"e30=","signature":"AA=="}}, {}]"#,
        &u.attestation.trim()[1..]
    );
    assert!(
        invalid(u.check(&first).await).contains("duplicate field"),
        "refused as repeated"
    );
}
