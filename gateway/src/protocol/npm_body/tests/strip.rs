//! Provenance stripping: the forwarded JSON stays valid wherever the member is.

use serde_json::Value;

use super::*;

/// Forwards `body` with provenance stripped and checks the result is the same document
/// without the `.sigstore` member, at every chunk size.
fn assert_strips(body: &[u8], package: &str, key: &str, bundle: &[u8], foreign: bool) {
    let mut expected: Value = serde_json::from_slice(body).expect("test body is JSON");
    let removed = expected
        .get_mut("_attachments")
        .and_then(Value::as_object_mut)
        .and_then(|a| a.remove(key));
    assert!(removed.is_some(), "{key} is in the test body");
    for &chunk in SIZES.iter().chain([body.len()].iter()) {
        let mut inspector = PublishInspector::new(package, Limits::default(), true);
        if foreign {
            inspector = inspector.allowing_foreign_attachments();
        }
        let (forwarded, facts) = run(inspector, body, chunk).expect("accepted");
        let parsed: Value = serde_json::from_slice(&forwarded).unwrap_or_else(|e| {
            panic!(
                "chunks of {chunk}: forwarded bytes are not JSON ({e}): {}",
                String::from_utf8_lossy(&forwarded[..forwarded.len().min(400)])
            )
        });
        assert_eq!(parsed, expected, "chunks of {chunk}");
        assert!(facts.provenance_stripped);
        assert_eq!(facts.provenance.as_deref(), Some(bundle));
        assert_eq!(facts.kind, PublishKind::Publish);
    }
}

#[test]
fn stripping_provenance_keeps_the_json_valid_wherever_the_member_is() {
    let (artifact, bundle) = fixture("slsa-v1-sigstore-2.3.1");
    let (name, version) = ("sigstore", "2.3.1");
    let tgz = tgz_member(name, version, &artifact);
    let sig = sigstore_member(name, version, &bundle);
    let foreign = ("README.txt".to_owned(), obj(&[("data", js("hello"))]));
    let key = format!("{name}-{version}.sigstore");
    let build = |attachments: &[(String, String)]| {
        document(name, version, manifest(name, version, &artifact), attachments, false)
    };
    // Last (as npm sends it), first, alone (no tarball after it), middle.
    assert_strips(&build(&[tgz.clone(), sig.clone()]), name, &key, &bundle, false);
    assert_strips(&build(&[sig.clone(), tgz.clone()]), name, &key, &bundle, false);
    assert_strips(
        &build(&[tgz.clone(), sig.clone(), foreign.clone()]),
        name,
        &key,
        &bundle,
        true,
    );
    assert_strips(
        &build(&[sig.clone(), foreign.clone(), tgz.clone()]),
        name,
        &key,
        &bundle,
        true,
    );
    // Pretty-printed (whitespace everywhere; serde_json sorts keys: .sigstore first).
    let pretty: Value = serde_json::from_slice(&build(&[tgz.clone(), sig.clone()])).expect("JSON");
    let pretty = serde_json::to_vec_pretty(&pretty).expect("JSON");
    assert_strips(&pretty, name, &key, &bundle, false);
    // Scoped: the key is held while its escapes are decoded.
    let (artifact, bundle) = fixture("slsa-v1-playwright-cli-0.1.1");
    let scoped = document(
        "@playwright/cli",
        "0.1.1",
        manifest("@playwright/cli", "0.1.1", &artifact),
        &[
            sigstore_member("@playwright/cli", "0.1.1", &bundle),
            tgz_member("@playwright/cli", "0.1.1", &artifact),
        ],
        false,
    );
    let scoped = replace(
        &scoped,
        "\"@playwright/cli-0.1.1.sigstore\"",
        "\"\\u0040playwright\\/cli-0.1.1.sigstore\"",
    );
    assert_strips(
        &scoped,
        "@playwright/cli",
        "@playwright/cli-0.1.1.sigstore",
        &bundle,
        false,
    );
}

#[test]
fn stripping_without_provenance_forwards_the_body_unchanged() {
    let tarball = tarball();
    let body = publish("demo", "1.0.0", &tarball, None);
    for &chunk in SIZES {
        let (forwarded, facts) =
            run(PublishInspector::new("demo", Limits::default(), true), &body, chunk).expect("accepted");
        assert!(forwarded == body, "chunks of {chunk}");
        assert!(!facts.provenance_stripped);
        assert_eq!(facts.provenance, None);
    }
}
