//! The JSON scanner: duplicate keys, Unicode, malformed JSON, nesting and size limits.

use super::*;

#[test]
fn duplicate_keys_are_refused_anywhere() {
    let tarball = tarball();
    let body = publish("demo", "1.0.0", &tarball, None);
    let top = replace(&body, "\"access\":null", "\"access\":null,\"name\":\"demo\"");
    assert!(matches!(
        refused("demo", &top),
        PublishError::DuplicateKey { ref key, ref path } if key == "name" && path == "the document"
    ));
    let versions = replace(
        &body,
        "\"versions\":{",
        &format!("\"versions\":{{\"1.0.0\":{},", manifest("demo", "1.0.0", b"evil")),
    );
    assert!(matches!(
        refused("demo", &versions),
        PublishError::DuplicateKey { ref key, ref path } if key == "1.0.0" && path == "versions"
    ));
    let (key, member) = tgz_member("demo", "1.0.0", b"evil");
    let attachments = replace(
        &body,
        "\"_attachments\":{",
        &format!("\"_attachments\":{{{}:{member},", js(&key)),
    );
    assert!(matches!(
        refused("demo", &attachments),
        PublishError::DuplicateKey { ref key, ref path } if key == "demo-1.0.0.tgz" && path == "_attachments"
    ));
    let deep = replace(
        &body,
        "\"main\":\"index.js\"",
        "\"main\":\"index.js\",\"main\":\"evil.js\"",
    );
    assert!(matches!(
        refused("demo", &deep),
        PublishError::DuplicateKey { ref path, .. } if path == "versions[\"1.0.0\"]"
    ));
    // Keys are compared after unescaping, as JSON.parse does.
    let escaped = replace(&body, "\"access\":null", "\"access\":null,\"n\\u0061me\":\"demo\"");
    assert!(matches!(refused("demo", &escaped), PublishError::DuplicateKey { .. }));
    let in_array = replace(&body, "\"access\":null", "\"access\":null,\"x\":[{\"a\":1,\"a\":2}]");
    assert!(matches!(
        refused("demo", &in_array),
        PublishError::DuplicateKey { ref path, .. } if path == "x[0]"
    ));
    // The same key in sibling objects is fine.
    let siblings = replace(&body, "\"access\":null", "\"access\":null,\"x\":[{\"a\":1},{\"a\":2}]");
    assert!(inspect("demo", &siblings, 3).is_ok());
}

#[test]
fn unicode_escapes_and_raw_utf8_are_decoded() {
    let tarball = tarball();
    let body = publish("demo", "1.0.0", &tarball, None);
    // Raw UTF-8 and escapes (including a surrogate pair) in strings the gateway skips.
    let body = replace(
        &body,
        "\"description\":\"a demo package\"",
        "\"description\":\"caf\\u00e9 \\ud83d\\ude00 caf\u{e9} \u{1F600} \\\"quoted\\\" \\\\ \\/ \\b\\f\\n\\r\\t\"",
    );
    // An escaped key still names the field.
    let escaped_key = replace(
        &body,
        "\"name\":\"demo\",\"description\"",
        "\"n\\u0061me\":\"d\\u0065mo\",\"description\"",
    );
    for &chunk in SIZES {
        assert_eq!(inspect("demo", &escaped_key, chunk).expect("accepted").1.name, "demo");
    }
    // The provenance string is unescaped exactly.
    let bundle_text = "{\"k\":\"caf\u{e9} \u{1F600} \\\" / \n\u{0}\"}";
    let encoded = "\"{\\\"k\\\":\\\"caf\\u00e9 \\uD83D\\uDE00 \\\\\\\" \\/ \\n\\u0000\\\"}\"";
    let with_bundle = document(
        "demo",
        "1.0.0",
        manifest("demo", "1.0.0", &tarball),
        &[
            tgz_member("demo", "1.0.0", &tarball),
            ("demo-1.0.0.sigstore".into(), format!("{{\"data\":{encoded}}}")),
        ],
        false,
    );
    for &chunk in SIZES {
        let facts = inspect("demo", &with_bundle, chunk).expect("accepted").1;
        assert_eq!(
            facts.provenance.as_deref(),
            Some(bundle_text.as_bytes()),
            "chunks of {chunk}"
        );
    }
    for bad in ["\\ud800", "\\udc00", "\\ud800\\u0041", "\\ud800x", "\\ud83d\\ud83d"] {
        let text = replace(&body, "\"access\":null", &format!("\"access\":\"{bad}\""));
        assert!(
            matches!(refused("demo", &text), PublishError::InvalidUnicode { .. }),
            "{bad}"
        );
    }
    let text = std::str::from_utf8(&body).expect("UTF-8");
    for bad in [
        &b"\xff"[..],
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xe9t\xe9",
        b"\xf4\x90\x80\x80",
    ] {
        let (head, tail) = text.split_once("a demo package").expect("description");
        let mut raw = head.as_bytes().to_vec();
        raw.extend_from_slice(bad);
        raw.extend_from_slice(tail.as_bytes());
        assert!(
            matches!(refused("demo", &raw), PublishError::InvalidUnicode { .. }),
            "{bad:?}"
        );
    }
}

#[test]
fn malformed_json_is_refused() {
    let body = String::from_utf8(publish("demo", "1.0.0", &tarball(), None)).expect("UTF-8");
    type Expect = fn(&PublishError) -> bool;
    let cases: Vec<(String, Expect)> = vec![
        (format!("{body} x"), |e| matches!(e, PublishError::Syntax { .. })),
        (format!("{body}{{}}"), |e| matches!(e, PublishError::Syntax { .. })),
        (body[..body.len() - 1].to_owned(), |e| *e == PublishError::Truncated),
        (body.replacen(",\"_attachments\"", "\"_attachments\"", 1), |e| {
            matches!(e, PublishError::Syntax { .. })
        }),
        ("{\"name\":\"demo\",}".into(), |e| {
            matches!(e, PublishError::Syntax { .. })
        }),
        ("{\"name\" \"demo\"}".into(), |e| {
            matches!(e, PublishError::Syntax { .. })
        }),
        ("{\"name\":\"demo\",\"a\":01}".into(), |e| {
            matches!(e, PublishError::Syntax { .. })
        }),
        ("{\"name\":\"demo\",\"a\":-}".into(), |e| {
            matches!(e, PublishError::Syntax { .. })
        }),
        ("{\"name\":\"demo\",\"a\":1.}".into(), |e| {
            matches!(e, PublishError::Syntax { .. })
        }),
        ("{\"name\":\"demo\",\"a\":tru}".into(), |e| {
            matches!(e, PublishError::Syntax { .. })
        }),
        ("{\"name\":\"demo\",\"a\":[1,]}".into(), |e| {
            matches!(e, PublishError::Syntax { .. })
        }),
        ("{\"name\":\"demo\",\"a\":[1}".into(), |e| {
            matches!(e, PublishError::Syntax { .. })
        }),
        ("{\"name\":\"demo\",\"a\":\"\u{1}\"}".into(), |e| {
            matches!(e, PublishError::Syntax { .. })
        }),
        ("{\"name\":\"demo\",\"a\":\"\\q\"}".into(), |e| {
            matches!(e, PublishError::Syntax { .. })
        }),
        ("{\"name\":\"demo\",\"a\":\"\\u12g4\"}".into(), |e| {
            matches!(e, PublishError::Syntax { .. })
        }),
        ("{'name':'demo'}".into(), |e| matches!(e, PublishError::Syntax { .. })),
        ("[]".into(), |e| *e == PublishError::NotAnObject),
        ("\"demo\"".into(), |e| *e == PublishError::NotAnObject),
        ("\u{feff}{}".into(), |e| *e == PublishError::NotAnObject),
        ("".into(), |e| *e == PublishError::Empty),
        ("  \n".into(), |e| *e == PublishError::Empty),
        ("{\"name\":\"demo\"".into(), |e| *e == PublishError::Truncated),
    ];
    for (text, expected) in cases {
        let error = refused("demo", text.as_bytes());
        assert!(expected(&error), "{:.60}: {error:?}", text);
    }
    // Exact offsets for a publisher to find the fault.
    assert_eq!(
        refused("demo", b"{\"name\":\"demo\",}"),
        PublishError::Syntax {
            offset: 15,
            reason: "expected a quoted key"
        }
    );
    // Numbers, literals and nesting the checks ignore are fine.
    let fine = b"{\"name\":\"demo\",\"a\":[0,-1.5e+3,2E-2,true,false,null,{},[],\"\"],\"b\":{\"c\":[[1]]}}";
    assert_eq!(facts("demo", fine).kind, PublishKind::MetadataOnly);
}

#[test]
fn nesting_depth_is_limited() {
    let nested = |levels: usize| {
        format!(
            "{{\"name\":\"demo\",\"x\":{}0{}}}",
            "[".repeat(levels),
            "]".repeat(levels)
        )
        .into_bytes()
    };
    // The document is depth 1: 63 arrays inside make 64.
    assert!(inspect("demo", &nested(63), 1).is_ok());
    assert!(matches!(
        refused("demo", &nested(64)),
        PublishError::TooDeep { limit: 64, ref path } if path.starts_with("x[0]")
    ));
    assert!(matches!(
        refused("demo", &nested(100_000)),
        PublishError::TooDeep { .. }
    ));
}

#[test]
fn keys_strings_and_provenance_are_limited() {
    let keys = |n: usize| {
        let members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
        format!("{{\"name\":\"demo\",\"x\":{{{}}}}}", members.join(",")).into_bytes()
    };
    assert!(inspect("demo", &keys(10_000), 4096).is_ok());
    assert!(matches!(
        refused("demo", &keys(10_001)),
        PublishError::TooManyKeys { limit: 10_000, ref path } if path == "x"
    ));

    let tarball: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let body = publish("demo", "1.0.0", &tarball, None);
    let limits = Limits {
        max_string_bytes: 2048,
        ..Limits::default()
    };
    // The tarball data (13 KiB of base64) is not a string under the limit.
    assert!(run(PublishInspector::new("demo", limits, false), &body, 100).is_ok());
    let readme = replace(
        &body,
        "\"access\":null",
        &format!("\"access\":null,\"readme\":{}", js(&"é".repeat(1025))),
    );
    assert!(matches!(
        run(PublishInspector::new("demo", limits, false), &readme, 100),
        Err(PublishError::StringTooLong { limit: 2048, ref path }) if path == "readme"
    ));
    let long_key = replace(
        &body,
        "\"access\":null",
        &format!("\"access\":null,{}:1", js(&"k".repeat(3000))),
    );
    assert!(matches!(
        run(PublishInspector::new("demo", limits, false), &long_key, 100),
        Err(PublishError::StringTooLong { .. })
    ));

    let (artifact, bundle) = fixture("slsa-v1-sigstore-2.3.1");
    let body = publish("sigstore", "2.3.1", &artifact, Some(&bundle));
    let limits = Limits {
        max_provenance_bytes: 4096,
        ..Limits::default()
    };
    assert_eq!(
        run(PublishInspector::new("sigstore", limits, false), &body, 100).expect_err("accepted"),
        PublishError::ProvenanceTooLarge { limit: 4096 }
    );
    let limits = Limits {
        max_metadata_bytes: 100,
        ..Limits::default()
    };
    assert_eq!(
        run(PublishInspector::new("sigstore", limits, false), &body, 100).expect_err("accepted"),
        PublishError::MetadataTooLarge { limit: 100 }
    );
}

#[test]
fn a_failed_inspector_keeps_failing() {
    let mut inspector = PublishInspector::new("demo", Limits::default(), false);
    let error = inspector.feed(b"[").expect_err("not an object");
    assert_eq!(error, PublishError::NotAnObject);
    assert_eq!(inspector.feed(b"{}").expect_err("still failed"), error);
    assert_eq!(inspector.finish().expect_err("still failed"), error);
}
