//! `docs/refusals.md` cannot drift from the code: its tables list exactly the codes (and
//! statuses) the refusal types can produce.

use std::collections::{BTreeSet, HashSet};

use portcullis_rules::{DeletionRefusal, ProvenanceRefusal};

use super::Refusal;
use crate::trusted_publishing::ExchangeError;

/// One refusal of every variant. The match below has no wildcard: a new variant does not
/// compile until it is listed there, and the comment there says to add a sample here.
fn samples() -> Vec<Refusal> {
    let text = String::new;
    let mut samples = vec![
        Refusal::ProjectDenied { message: text() },
        Refusal::TooLarge { message: text() },
        Refusal::MalformedUpload(text()),
        Refusal::DigestMismatch(text()),
        Refusal::AmbiguousBody(text()),
        Refusal::UnclassifiedWrite(text()),
        Refusal::BadPath(text()),
        Refusal::NoRoute,
        Refusal::UpstreamUnavailable,
        Refusal::UpstreamTimeout,
        Refusal::UpstreamFailed,
        Refusal::BadRequest(text()),
        Refusal::CredentialsMissing(text()),
        Refusal::CredentialsRefused(text()),
        Refusal::CredentialsInUrl(text()),
        Refusal::UploadTokenInvalid(text()),
        Refusal::UploadTokenRevoked(text()),
        Refusal::TokenScope(text()),
        Refusal::TrustedPublishingFailed(text()),
        Refusal::VersionDeleted(text()),
        Refusal::NameReserved(text()),
        Refusal::DeletionFactsUnavailable(text()),
        Refusal::AdminUnauthenticated,
        Refusal::OverrideReasonRequired(text()),
        Refusal::StateUnavailable,
        Refusal::Internal,
        Refusal::RequestTimeout(text()),
        Refusal::TooManyConnections,
    ];
    samples.extend(PROVENANCE.iter().map(|r| Refusal::Provenance {
        code: *r,
        message: text(),
    }));
    samples.extend(DELETION.iter().map(|r| Refusal::Deletion {
        code: r.code(),
        message: text(),
    }));
    for sample in &samples {
        // Add a sample above for every arm here.
        match sample {
            Refusal::ProjectDenied { .. }
            | Refusal::TooLarge { .. }
            | Refusal::MalformedUpload(_)
            | Refusal::DigestMismatch(_)
            | Refusal::AmbiguousBody(_)
            | Refusal::UnclassifiedWrite(_)
            | Refusal::BadPath(_)
            | Refusal::NoRoute
            | Refusal::UpstreamUnavailable
            | Refusal::UpstreamTimeout
            | Refusal::UpstreamFailed
            | Refusal::BadRequest(_)
            | Refusal::CredentialsMissing(_)
            | Refusal::CredentialsRefused(_)
            | Refusal::CredentialsInUrl(_)
            | Refusal::UploadTokenInvalid(_)
            | Refusal::UploadTokenRevoked(_)
            | Refusal::TokenScope(_)
            | Refusal::TrustedPublishingFailed(_)
            | Refusal::Provenance { .. }
            | Refusal::Deletion { .. }
            | Refusal::VersionDeleted(_)
            | Refusal::NameReserved(_)
            | Refusal::DeletionFactsUnavailable(_)
            | Refusal::AdminUnauthenticated
            | Refusal::OverrideReasonRequired(_)
            | Refusal::StateUnavailable
            | Refusal::Internal
            | Refusal::RequestTimeout(_)
            | Refusal::TooManyConnections => {}
        }
    }
    samples
}

/// Every provenance refusal (the match keeps the list whole, as above).
const PROVENANCE: [ProvenanceRefusal; 9] = [
    ProvenanceRefusal::Missing,
    ProvenanceRefusal::Invalid,
    ProvenanceRefusal::Predicate,
    ProvenanceRefusal::Signer,
    ProvenanceRefusal::Trigger,
    ProvenanceRefusal::Downgrade,
    ProvenanceRefusal::Repository,
    ProvenanceRefusal::TrustUnavailable,
    ProvenanceRefusal::TrustExpired,
];

/// Every deletion refusal.
const DELETION: [DeletionRefusal; 4] = [
    DeletionRefusal::Never,
    DeletionRefusal::YankOnly,
    DeletionRefusal::OutsideWindow,
    DeletionRefusal::UnknownFacts,
];

#[test]
fn the_nested_lists_are_whole() {
    for r in PROVENANCE {
        match r {
            ProvenanceRefusal::Missing
            | ProvenanceRefusal::Invalid
            | ProvenanceRefusal::Predicate
            | ProvenanceRefusal::Signer
            | ProvenanceRefusal::Trigger
            | ProvenanceRefusal::Downgrade
            | ProvenanceRefusal::Repository
            | ProvenanceRefusal::TrustUnavailable
            | ProvenanceRefusal::TrustExpired => {}
        }
    }
    for r in DELETION {
        match r {
            DeletionRefusal::Never
            | DeletionRefusal::YankOnly
            | DeletionRefusal::OutsideWindow
            | DeletionRefusal::UnknownFacts => {}
        }
    }
    assert_eq!(PROVENANCE.iter().collect::<HashSet<_>>().len(), PROVENANCE.len());
    assert_eq!(DELETION.iter().collect::<HashSet<_>>().len(), DELETION.len());
}

/// Every exchange error, for the mint-token table.
fn exchange_samples() -> Vec<ExchangeError> {
    let samples = vec![
        ExchangeError::NotEnabled(String::new()),
        ExchangeError::MalformedToken(String::new()),
        ExchangeError::UnknownIssuer(String::new()),
        ExchangeError::InvalidToken(crate::auth::jwt::TokenError::Segments { found: 1 }),
        ExchangeError::IssuerUnreachable(String::new()),
        ExchangeError::NoPublisher(String::new()),
        ExchangeError::Replayed,
        ExchangeError::Unavailable(String::new()),
    ];
    for sample in &samples {
        // Add a sample above for every arm here.
        match sample {
            ExchangeError::NotEnabled(_)
            | ExchangeError::MalformedToken(_)
            | ExchangeError::UnknownIssuer(_)
            | ExchangeError::InvalidToken(_)
            | ExchangeError::IssuerUnreachable(_)
            | ExchangeError::NoPublisher(_)
            | ExchangeError::Replayed
            | ExchangeError::Unavailable(_) => {}
        }
    }
    samples
}

/// The rows of the markdown table that follows `heading`: (code, status or empty).
fn table_after(doc: &str, heading: &str) -> BTreeSet<(String, String)> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/refusals.md has no {heading:?}"));
    doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((code.to_owned(), cells.get(2).copied().unwrap_or("").to_owned()))
        })
        .collect()
}

fn refusals_doc() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/refusals.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_refusals_table_lists_every_code_with_its_status() {
    let documented = table_after(&refusals_doc(), "| code | status | when |");
    let produced: BTreeSet<(String, String)> = samples()
        .iter()
        .map(|r| (r.code().to_owned(), r.status().to_string()))
        .collect();
    let missing: Vec<_> = produced.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&produced).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/refusals.md is out of date: undocumented {missing:?}, documented but never produced {stale:?}"
    );
}

#[test]
fn the_exchange_table_lists_every_warehouse_code() {
    let documented: BTreeSet<String> = table_after(&refusals_doc(), "| exchange code | when |")
        .into_iter()
        .map(|(code, _)| code)
        .collect();
    let produced: BTreeSet<String> = exchange_samples().iter().map(|e| e.pypi_code().to_owned()).collect();
    assert_eq!(documented, produced, "docs/refusals.md's exchange table is out of date");
}
