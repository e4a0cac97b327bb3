//! The document checks and the facts: names, versions, attachments, integrity, deprecations.

use super::*;

#[test]
fn real_provenance_publishes_give_the_same_facts_at_every_chunk_size() {
    for (case, name, version, sha512_hex) in CASES {
        let (artifact, bundle) = fixture(case);
        let body = publish(name, version, &artifact, Some(&bundle));
        let whole = facts(name, &body);
        assert_eq!(whole.name, *name);
        assert_eq!(whole.kind, PublishKind::Publish);
        assert_eq!(whole.versions, vec![version.to_string()]);
        assert_eq!(whole.dist_tags, vec![("latest".to_owned(), version.to_string())]);
        assert_eq!(
            whole.repository_url.as_deref(),
            Some("git+https://github.com/acme/demo.git")
        );
        assert!(whole.deprecated.is_empty());
        assert!(!whole.provenance_stripped);
        assert_eq!(whole.provenance.as_deref(), Some(bundle.as_slice()), "{case}");
        let tarball = whole.tarball.as_ref().expect("tarball facts");
        assert_eq!(hex::encode(tarball.sha512), *sha512_hex, "{case}");
        assert_eq!(tarball.sha1, <[u8; 20]>::from(Sha1::digest(&artifact)));
        assert_eq!(tarball.bytes, artifact.len() as u64);
        assert_eq!(tarball.declared_length, Some(artifact.len() as u64));
        assert_eq!(tarball.attachment, format!("{name}-{version}.tgz"));
        assert_eq!(tarball.version, *version);
        for &chunk in SIZES.iter().chain([body.len()].iter()) {
            let (forwarded, facts) = inspect(name, &body, chunk).expect("accepted");
            assert_eq!(facts, whole, "{case}, chunks of {chunk}");
            assert!(forwarded == body, "{case}, chunks of {chunk}: the body was changed");
        }
    }
}

#[test]
fn attachments_may_come_before_versions() {
    let tarball = tarball();
    let (artifact, bundle) = fixture("slsa-v1-playwright-cli-0.1.1");
    for (name, tarball, bundle) in [
        ("demo", tarball.as_slice(), None),
        ("@playwright/cli", artifact.as_slice(), Some(bundle.as_slice())),
    ] {
        let mut attachments = vec![tgz_member(name, "0.1.1", tarball)];
        attachments.extend(bundle.map(|b| sigstore_member(name, "0.1.1", b)));
        let before = document(name, "0.1.1", manifest(name, "0.1.1", tarball), &attachments, true);
        let after = document(name, "0.1.1", manifest(name, "0.1.1", tarball), &attachments, false);
        let expected = facts(name, &after);
        for &chunk in SIZES {
            assert_eq!(inspect(name, &before, chunk).expect("accepted").1, expected);
        }
    }
}

#[test]
fn scoped_names_keep_their_scope_in_the_attachment_name() {
    let tarball = tarball();
    let body = publish("@acme/widget", "2.0.0-beta.1", &tarball, None);
    let facts = facts("@acme/widget", &body);
    assert_eq!(
        facts.tarball.expect("tarball").attachment,
        "@acme/widget-2.0.0-beta.1.tgz"
    );
    let unscoped = replace(
        &body,
        "\"@acme/widget-2.0.0-beta.1.tgz\"",
        "\"widget-2.0.0-beta.1.tgz\"",
    );
    assert!(matches!(
        refused("@acme/widget", &unscoped),
        PublishError::AttachmentName { expected, .. } if expected == "@acme/widget-2.0.0-beta.1.tgz"
    ));
}

#[test]
fn integrity_must_carry_the_tarballs_sha512() {
    let tarball = tarball();
    let body = publish("demo", "1.0.0", &tarball, None);
    let good = sri(&tarball);
    let other = sri(b"other bytes");
    assert!(matches!(
        refused("demo", &replace(&body, &good, &other)),
        PublishError::IntegrityMismatch { .. }
    ));
    // Several hashes: other algorithms are ignored, every sha512 must match.
    let with_sha1 = format!("sha1-{} {good}", STANDARD.encode(Sha1::digest(b"whatever")));
    assert!(inspect("demo", &replace(&body, &good, &with_sha1), 64).is_ok());
    let with_options = format!("{good}?foo");
    assert!(inspect("demo", &replace(&body, &good, &with_options), 64).is_ok());
    let decoy = format!("{good} {other}");
    assert!(matches!(
        refused("demo", &replace(&body, &good, &decoy)),
        PublishError::IntegrityMismatch { .. }
    ));
    let only_sha1 = format!("sha1-{}", STANDARD.encode(Sha1::digest(&tarball)));
    assert!(matches!(
        refused("demo", &replace(&body, &good, &only_sha1)),
        PublishError::IntegrityMissing { .. }
    ));
    let no_integrity = replace(&body, &format!("\"integrity\":\"{good}\","), "");
    assert!(matches!(
        refused("demo", &no_integrity),
        PublishError::IntegrityMissing { .. }
    ));
}

#[test]
fn shasum_must_match_when_sent() {
    let tarball = tarball();
    let body = publish("demo", "1.0.0", &tarball, None);
    let good = shasum(&tarball);
    let bad = hex::encode(Sha1::digest(b"other"));
    let error = refused("demo", &replace(&body, &good, &bad));
    assert!(matches!(error, PublishError::ShasumMismatch { ref actual, .. } if *actual == good));
    assert!(error.to_string().contains(&good));
    assert!(inspect("demo", &replace(&body, &good, &good.to_uppercase()), 64).is_ok());
    let without = replace(&body, &format!("\"shasum\":\"{good}\","), "");
    assert!(inspect("demo", &without, 64).is_ok());
}

#[test]
fn attachment_names_must_be_the_package_and_version() {
    let tarball = tarball();
    let body = publish("demo", "1.0.0", &tarball, None);
    let other_package = replace(&body, "\"demo-1.0.0.tgz\"", "\"other-1.0.0.tgz\"");
    assert!(matches!(
        refused("demo", &other_package),
        PublishError::AttachmentName { ref expected, .. } if expected == "demo-1.0.0.tgz"
    ));
    let other_version = replace(&body, "\"demo-1.0.0.tgz\"", "\"demo-9.9.9.tgz\"");
    assert!(matches!(
        refused("demo", &other_version),
        PublishError::AttachmentName { .. }
    ));
    let not_tgz = replace(&body, "\"demo-1.0.0.tgz\"", "\"demo-1.0.0.tar\"");
    assert!(matches!(
        refused("demo", &not_tgz),
        PublishError::UnexpectedAttachment { ref name } if name == "demo-1.0.0.tar"
    ));
    let (_, bundle) = fixture("slsa-v1-sigstore-2.3.1");
    let with_bundle = publish("demo", "1.0.0", &tarball, Some(&bundle));
    let wrong_bundle = replace(&with_bundle, "\"demo-1.0.0.sigstore\"", "\"demo-1.0.1.sigstore\"");
    assert!(matches!(
        refused("demo", &wrong_bundle),
        PublishError::AttachmentName { .. }
    ));
    let huge = format!("\"{}.tgz\"", "x".repeat(2000));
    assert!(matches!(
        refused("demo", &replace(&body, "\"demo-1.0.0.tgz\"", &huge)),
        PublishError::UnexpectedAttachment { .. }
    ));
}

#[test]
fn one_tarball_one_version_and_data_are_required() {
    let tarball = tarball();
    let attachments = [
        tgz_member("demo", "1.0.0", &tarball),
        tgz_member("demo", "1.0.1", &tarball),
    ];
    let two = document(
        "demo",
        "1.0.0",
        manifest("demo", "1.0.0", &tarball),
        &attachments,
        false,
    );
    assert_eq!(refused("demo", &two), PublishError::MultipleTarballs);

    let (_, bundle) = fixture("slsa-v1-sigstore-2.3.1");
    let only_bundle = document(
        "demo",
        "1.0.0",
        manifest("demo", "1.0.0", &tarball),
        &[sigstore_member("demo", "1.0.0", &bundle)],
        false,
    );
    assert!(matches!(
        refused("demo", &only_bundle),
        PublishError::ProvenanceWithoutTarball { .. }
    ));
    let two_bundles = document(
        "demo",
        "1.0.0",
        manifest("demo", "1.0.0", &tarball),
        &[
            tgz_member("demo", "1.0.0", &tarball),
            sigstore_member("demo", "1.0.0", &bundle),
            sigstore_member("demo", "1.0.1", &bundle),
        ],
        false,
    );
    assert_eq!(refused("demo", &two_bundles), PublishError::MultipleProvenance);

    let body = publish("demo", "1.0.0", &tarball, None);
    let two_versions = replace(
        &body,
        "\"versions\":{",
        &format!("\"versions\":{{\"0.9.0\":{},", manifest("demo", "0.9.0", &tarball)),
    );
    assert_eq!(refused("demo", &two_versions), PublishError::VersionCount { found: 2 });
    let no_data = replace(&body, &format!("\"data\":{},", js(&STANDARD.encode(&tarball))), "");
    assert!(matches!(
        refused("demo", &no_data),
        PublishError::AttachmentDataMissing { .. }
    ));
    let wrong_version_field = replace(&body, "\"version\":\"1.0.0\"", "\"version\":\"1.0.1\"");
    assert!(matches!(
        refused("demo", &wrong_version_field),
        PublishError::VersionField { field: "version", .. }
    ));
}

#[test]
fn the_name_must_be_the_package_of_the_path() {
    let tarball = tarball();
    let body = publish("demo", "1.0.0", &tarball, None);
    // npm sends "_id" first: it is the first to disagree with the path.
    assert!(matches!(
        refused("other", &body),
        PublishError::IdMismatch { ref found, ref expected } if found == "demo" && expected == "other"
    ));
    let no_id = replace(&body, "\"_id\":\"demo\",", "");
    assert!(matches!(
        refused("other", &no_id),
        PublishError::NameMismatch { ref found, ref expected } if found == "demo" && expected == "other"
    ));
    let id = replace(&body, "\"_id\":\"demo\"", "\"_id\":\"other\"");
    assert!(matches!(refused("demo", &id), PublishError::IdMismatch { .. }));
    let no_name = replace(&body, "\"name\":\"demo\",\"description\"", "\"description\"");
    assert!(matches!(refused("demo", &no_name), PublishError::NameMissing { .. }));
    let number = replace(&body, "\"name\":\"demo\",\"description\"", "\"name\":1,\"description\"");
    assert!(matches!(
        refused("demo", &number),
        PublishError::WrongType { ref path, expected: "a string" } if path == "name"
    ));
    // The manifest's name must be the package too.
    let manifest_name = replace(
        &body,
        "{\"name\":\"demo\",\"version\"",
        "{\"name\":\"evil\",\"version\"",
    );
    assert!(matches!(
        refused("demo", &manifest_name),
        PublishError::VersionField { field: "name", .. }
    ));
}

fn packument(deprecations: &[(&str, &str)], attachments: Option<&str>) -> Vec<u8> {
    let version = |v: &str| {
        let mut members = vec![
            ("name", js("demo")),
            ("version", js(v)),
            (
                "dist",
                obj(&[("shasum", js(&"0".repeat(40))), ("tarball", js("http://r/demo.tgz"))]),
            ),
        ];
        if let Some((_, message)) = deprecations.iter().find(|(d, _)| *d == v) {
            members.push(("deprecated", js(message)));
        }
        obj(&members)
    };
    let mut members = vec![
        ("_id", js("demo")),
        ("_rev", js("3-0123456789abcdef")),
        ("name", js("demo")),
        ("dist-tags", obj(&[("latest", js("1.1.0")), ("next", js("2.0.0-rc.1"))])),
        (
            "versions",
            obj(&[
                ("1.0.0", version("1.0.0")),
                ("1.1.0", version("1.1.0")),
                ("2.0.0-rc.1", version("2.0.0-rc.1")),
            ]),
        ),
        ("time", obj(&[("created", js("2024-01-01T00:00:00.000Z"))])),
        (
            "maintainers",
            "[{\"name\":\"alice\",\"email\":\"a@example.com\"}]".to_owned(),
        ),
        ("readme", js("# demo\n\nA package.")),
        ("users", "{}".to_owned()),
    ];
    if let Some(attachments) = attachments {
        members.push(("_attachments", attachments.to_owned()));
    }
    obj(&members).into_bytes()
}

#[test]
fn the_dependencies_of_a_single_version_are_kept_and_odd_shapes_ignored() {
    let body = br#"{"_id":"demo","name":"demo","versions":{"1.0.0":{"name":"demo","version":"1.0.0","dependencies":{"left-pad":"^1.0.0","@acme/widget":"2.x"}}}}"#;
    let found = facts("demo", body);
    assert_eq!(
        found.dependencies,
        vec!["left-pad".to_owned(), "@acme/widget".to_owned()]
    );
    for odd in [
        r#""dependencies":[]"#,
        r#""dependencies":"left-pad""#,
        r#""dependencies":null"#,
    ] {
        let body = format!(
            r#"{{"_id":"demo","name":"demo","versions":{{"1.0.0":{{"name":"demo","version":"1.0.0",{odd}}}}}}}"#
        );
        assert!(facts("demo", body.as_bytes()).dependencies.is_empty(), "{odd}");
    }
}

#[test]
fn deprecate_is_a_metadata_only_put() {
    let body = packument(&[("1.0.0", "use 1.1.0 or later"), ("2.0.0-rc.1", "")], None);
    let expected = PublishFacts {
        name: "demo".into(),
        versions: vec!["1.0.0".into(), "1.1.0".into(), "2.0.0-rc.1".into()],
        dist_tags: vec![("latest".into(), "1.1.0".into()), ("next".into(), "2.0.0-rc.1".into())],
        kind: PublishKind::MetadataOnly,
        tarball: None,
        provenance: None,
        provenance_stripped: false,
        repository_url: None,
        deprecated: vec![
            ("1.0.0".into(), "use 1.1.0 or later".into()),
            ("2.0.0-rc.1".into(), String::new()),
        ],
        dependencies: vec![],
    };
    for &chunk in SIZES {
        assert_eq!(inspect("demo", &body, chunk).expect("accepted").1, expected);
    }
    let empty_attachments = packument(&[("1.0.0", "use 1.1.0 or later"), ("2.0.0-rc.1", "")], Some("{}"));
    assert_eq!(facts("demo", &empty_attachments), expected);
    let not_a_string = replace(&body, "\"deprecated\":\"use 1.1.0 or later\"", "\"deprecated\":true");
    assert!(matches!(
        refused("demo", &not_a_string),
        PublishError::WrongType { ref path, .. } if path == "versions[\"1.0.0\"].deprecated"
    ));
    assert!(matches!(refused("other", &body), PublishError::IdMismatch { .. }));
}
