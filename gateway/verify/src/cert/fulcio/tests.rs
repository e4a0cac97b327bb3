//! Reading Fulcio identities: the real certificates of the fixtures, and built ones for the
//! deprecated GitHub Workflow extensions.

use super::*;
use crate::cert::parse;
use crate::testing::FulcioCert;

const GH: &str = "https://token.actions.githubusercontent.com";
const SAN: &str = "https://github.com/sigstore/sigstore-js/.github/workflows/publish.yml@refs/tags/v1.0.0";

fn fixture_leaf(case: &str) -> Certificate {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(case)
        .join("bundle.sigstore.json");
    let bundle = crate::Bundle::from_json(&std::fs::read(path).expect("bundle")).expect("bundle parses");
    match bundle.signer {
        crate::bundle::SignerMaterial::Certificate { leaf, .. } => parse(&leaf).expect("leaf"),
        crate::bundle::SignerMaterial::PublicKey { .. } => panic!("{case} is signed with a key"),
    }
}

/// A certificate as Fulcio issued them for GitHub before 2023: deprecated extensions only.
fn legacy() -> FulcioCert {
    FulcioCert::new()
        .uri(SAN)
        .ext(1, GH)
        .ext(2, "release")
        .ext(3, "06528997c3c8ab9f864fad9a3658446aca7fd86d")
        .ext(4, "publish")
        .ext(5, "sigstore/sigstore-js")
        .ext(6, "refs/tags/v1.0.0")
}

#[test]
fn the_early_2023_npm_certificate_is_read_from_its_deprecated_extensions() {
    let id = identity(&fixture_leaf("npm-provenance/slsa-v0.2-sigstore-1.0.0")).expect("identity");
    assert!(id.predates_ci_extensions);
    assert_eq!(id.sans, vec![SAN.to_owned()]);
    assert_eq!(id.issuer.as_deref(), Some(GH));
    assert_eq!(id.build_trigger.as_deref(), Some("release"));
    assert_eq!(
        id.source_repository_uri.as_deref(),
        Some("https://github.com/sigstore/sigstore-js")
    );
    assert_eq!(
        id.source_repository_digest.as_deref(),
        Some("06528997c3c8ab9f864fad9a3658446aca7fd86d")
    );
    assert_eq!(id.source_repository_ref.as_deref(), Some("refs/tags/v1.0.0"));
    assert_eq!(id.build_signer_uri.as_deref(), Some(SAN));
    assert_eq!(id.github_workflow.name.as_deref(), Some("publish"));
    // Not in such a certificate, and not made up.
    assert_eq!(id.build_config_uri, None);
    assert_eq!(id.source_repository_owner_identifier, None);
    assert_eq!(id.runner_environment, None);
}

#[test]
fn a_current_certificate_keeps_its_own_extensions() {
    let id = identity(&fixture_leaf("pep740/github-publish-pypi-attestations-0.0.19")).expect("identity");
    assert!(!id.predates_ci_extensions);
    assert_eq!(
        id.source_repository_uri.as_deref(),
        Some("https://github.com/trailofbits/pypi-attestations")
    );
    assert_eq!(id.source_repository_owner_identifier.as_deref(), Some("2314423"));
    assert!(id.build_config_uri.is_some());
}

#[test]
fn deprecated_extensions_fill_only_absent_fields() {
    let id = legacy().identity().expect("identity");
    assert!(id.predates_ci_extensions);
    assert_eq!(
        id.source_repository_uri.as_deref(),
        Some("https://github.com/sigstore/sigstore-js")
    );
    assert_eq!(id.build_signer_uri.as_deref(), Some(SAN));

    // Both generations, agreeing (as Fulcio writes them since 2023): the current ones count.
    let both = legacy()
        .ext(8, GH)
        .ext(9, SAN)
        .ext(12, "https://github.com/sigstore/sigstore-js")
        .ext(13, "06528997c3c8ab9f864fad9a3658446aca7fd86d")
        .ext(14, "refs/tags/v1.0.0")
        .ext(20, "release")
        .ext(11, "github-hosted")
        .identity()
        .expect("identity");
    assert!(!both.predates_ci_extensions);
    assert_eq!(both.runner_environment.as_deref(), Some("github-hosted"));
    assert_eq!(both.build_trigger.as_deref(), Some("release"));

    // A GitHub Enterprise Server SAN gives the repository its server.
    let ghes = FulcioCert::new()
        .uri("https://ghe.example.com/platform/lib/.github/workflows/publish.yml@refs/heads/main")
        .ext(1, "https://ghe.example.com/_services/token")
        .ext(5, "platform/lib")
        .identity()
        .expect("identity");
    assert_eq!(
        ghes.source_repository_uri.as_deref(),
        Some("https://ghe.example.com/platform/lib")
    );
}

#[test]
fn deprecated_extensions_that_contradict_current_ones_are_refused() {
    let cases = [
        (legacy().ext(20, "push"), "build trigger (.20 and .2) disagree"),
        (
            legacy().ext(12, "https://github.com/someone/fork"),
            "source repository (.12) \"https://github.com/someone/fork\" and its deprecated GitHub workflow repository (.5) \"sigstore/sigstore-js\" disagree",
        ),
        (
            legacy().ext(12, "https://github.com/evil/sigstore/sigstore-js"),
            "disagree",
        ),
        (legacy().ext(13, "0000"), "source repository digest (.13 and .3) disagree"),
        (legacy().ext(14, "refs/heads/main"), "source repository ref (.14 and .6) disagree"),
        (legacy().ext(8, "https://gitlab.com"), "two different OIDC issuers"),
    ];
    for (cert, needle) in cases {
        let e = cert.identity().expect_err(needle);
        assert_eq!(e.step, Step::Identity, "{needle}");
        assert!(e.reason.contains(needle), "{needle}: {}", e.reason);
    }
    // The repository compares without regard to case, as GitHub names do.
    assert!(legacy()
        .ext(12, "https://github.com/Sigstore/Sigstore-JS")
        .identity()
        .is_ok());
}

#[test]
fn a_deprecated_extension_that_is_not_text_is_refused() {
    let der = FulcioCert::new()
        .uri(SAN)
        .ext(5, "sigstore/sigstore-js")
        .der()
        .expect("der");
    // Replace the first byte of the repository extension's value (after the SAN) with an invalid UTF-8 byte.
    let at = der
        .windows(b"sigstore/sigstore-js".len())
        .rposition(|w| w == b"sigstore/sigstore-js")
        .expect("value");
    let mut broken = der.clone();
    broken[at] = 0xff;
    // The signature no longer matters: identity() reads, it does not verify.
    let e = identity(&parse(&broken).expect("parses")).expect_err("not UTF-8");
    assert_eq!(e.reason, "Fulcio extension 1.3.6.1.4.1.57264.1.5 is not UTF-8 text");
}
