//! Tests of the PyPI form reader: facts, digests and the field rules.

use sha2::{Digest as _, Sha256};

use super::*;
use crate::protocol::multipart::test_form::canonical_form;

const BOUNDARY: &str = "xYzZY0123";

type Parts<'a> = Vec<(&'a str, Option<&'a str>, &'a [u8])>;

fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    canonical_form(BOUNDARY, parts)
}

fn inspect(body: &[u8], chunk: usize) -> Result<FormAction, Refusal> {
    let mut inspector = FormInspector::start(Some(&format!("multipart/form-data; boundary={BOUNDARY}")))?;
    for piece in body.chunks(chunk) {
        inspector.feed(piece)?;
    }
    inspector.finish()
}

fn base<'a>() -> Parts<'a> {
    vec![
        (":action", None, b"file_upload"),
        ("name", None, b"Demo_Pkg"),
        ("version", None, b"1.0"),
    ]
}

fn upload_form(extra: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut parts = base();
    parts.push(("content", Some("demo_pkg-1.0.tar.gz"), b"file bytes"));
    parts.extend_from_slice(extra);
    form(&parts)
}

/// A form with `before` fields, then the file, then `after` fields.
fn ordered_form(before: &[(&str, Option<&str>, &[u8])], after: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut parts = base();
    parts.extend_from_slice(before);
    parts.push(("content", Some("demo_pkg-1.0.tar.gz"), b"file bytes"));
    parts.extend_from_slice(after);
    form(&parts)
}

fn code(result: &Result<FormAction, Refusal>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

#[test]
fn upload_facts_are_read_across_any_chunking() {
    let body = upload_form(&[("requires_dist", None, b"requests[socks] (>=2.0)")]);
    for chunk in [1, 7, 64, body.len()] {
        match inspect(&body, chunk) {
            Ok(FormAction::FileUpload(u)) => {
                assert_eq!(u.project.as_str(), "demo-pkg");
                assert_eq!(u.filename, "demo_pkg-1.0.tar.gz");
                assert_eq!(u.content_bytes, 10);
                assert_eq!(u.content_sha256, <[u8; 32]>::from(Sha256::digest(b"file bytes")));
                assert_eq!(u.requires_dist, ["requests"]);
            }
            other => panic!("chunk {chunk}: {other:?}"),
        }
    }
}

#[test]
fn every_split_point_of_a_form_reads_the_same() {
    // File bytes full of near-boundaries: CR LF, dashes, the boundary's first characters.
    let mut content = Vec::new();
    for i in 0..300usize {
        match i % 6 {
            0 => content.extend_from_slice(b"\r\n--"),
            1 => content.extend_from_slice(b"\r\n-"),
            2 => content.extend_from_slice(format!("\r\n--{}", &BOUNDARY[..i % BOUNDARY.len()]).as_bytes()),
            3 => content.extend_from_slice(b"\r"),
            4 => content.extend_from_slice(b"\n--\r\n"),
            _ => content.extend_from_slice(&[0, 255, 45, 13]),
        }
    }
    let mut parts = base();
    parts.push(("content", Some("demo_pkg-1.0.tar.gz"), &content));
    let body = form(&parts);
    let expected = <[u8; 32]>::from(Sha256::digest(&content));
    for split in 1..body.len() {
        let mut inspector =
            FormInspector::start(Some(&format!("multipart/form-data; boundary={BOUNDARY}"))).expect("start");
        for piece in [&body[..split], &body[split..]] {
            inspector.feed(piece).expect("feed");
        }
        match inspector.finish() {
            Ok(FormAction::FileUpload(u)) => assert_eq!(u.content_sha256, expected, "split {split}"),
            other => panic!("split at {split} of {}: {other:?}", body.len()),
        }
    }
}

/// The real sdist and attestation of the fixtures, cut at pseudo-random places: the same facts
/// every time.
#[test]
fn a_real_form_reads_whole_however_it_is_cut() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/pep740/github-publish-pypi-attestations-0.0.19");
    let sdist = std::fs::read(dir.join("artifact")).expect("sdist");
    let attestation = std::fs::read(dir.join("pypi_attestations-0.0.19.tar.gz.publish.attestation")).expect("a");
    let att = [b"[".as_slice(), &attestation, b"]"].concat();
    let body = form(&[
        (":action", None, b"file_upload"),
        ("name", None, b"pypi-attestations"),
        ("version", None, b"0.0.19"),
        ("attestations", None, &att),
        ("content", Some("pypi_attestations-0.0.19.tar.gz"), &sdist),
    ]);
    let whole = inspect(&body, body.len()).expect("whole");
    let mut seed: u64 = 0x1234_5678;
    for round in 0..2_000usize {
        let mut cuts = vec![0, body.len()];
        for _ in 0..(2 + round % 7) {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            cuts.push((seed >> 33) as usize % body.len());
        }
        cuts.sort();
        let mut inspector =
            FormInspector::start(Some(&format!("multipart/form-data; boundary={BOUNDARY}"))).expect("start");
        for w in cuts.windows(2) {
            inspector.feed(&body[w[0]..w[1]]).expect("feed");
        }
        assert_eq!(inspector.finish().as_ref(), Ok(&whole), "round {round}");
    }
}

#[test]
fn every_claimed_digest_is_checked_in_any_order() {
    use blake2::Digest as _;
    let sha256 = hex::encode(Sha256::digest(b"file bytes"));
    let blake2 = hex::encode(blake2::Blake2b::<blake2::digest::consts::U32>::digest(b"file bytes"));
    let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(b"file bytes"));
    let (wrong, wrong_md5) = ("f".repeat(64), "f".repeat(32));
    let cases = [
        (&sha256, &md5, &blake2, "ok"),
        (&wrong, &md5, &blake2, "digest_mismatch"),
        (&sha256, &wrong_md5, &blake2, "digest_mismatch"),
        (&sha256, &md5, &wrong, "digest_mismatch"),
        (&wrong_md5, &md5, &blake2, "malformed_upload"),
        (&sha256, &md5, &"zz".to_owned(), "malformed_upload"),
    ];
    for (sha, md, b2, expected) in cases {
        let digests: Parts = vec![
            ("md5_digest", None, md.as_bytes()),
            ("sha256_digest", None, sha.as_bytes()),
            ("blake2_256_digest", None, b2.as_bytes()),
        ];
        let before = inspect(&ordered_form(&digests, &[]), 5);
        assert_eq!(code(&before), expected, "digests before the file: {digests:?}");
        let after = inspect(&ordered_form(&[], &digests), 5);
        assert_eq!(code(&after), expected, "digests after the file: {digests:?}");
    }
    // Upper-case hex is the same digest.
    let upper = sha256.to_ascii_uppercase();
    assert_eq!(
        code(&inspect(
            &ordered_form(&[("sha256_digest", None, upper.as_bytes())], &[]),
            9
        )),
        "ok"
    );
}

#[test]
fn a_digest_claimed_after_the_file_that_was_not_computed_is_refused() {
    let sha256 = hex::encode(Sha256::digest(b"file bytes"));
    let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(b"file bytes"));
    // SHA-256 before the file: MD5 is not computed, so a later MD5 claim cannot be checked.
    let body = ordered_form(
        &[("sha256_digest", None, sha256.as_bytes())],
        &[("md5_digest", None, md5.as_bytes())],
    );
    let result = inspect(&body, 64);
    assert!(
        matches!(&result, Err(Refusal::MalformedUpload(m)) if m.contains("before the content part")),
        "{result:?}"
    );
}

#[test]
fn only_claimed_digests_are_computed_when_claims_come_first() {
    let claimed = |fields: &[(&str, &str)]| {
        let mut c = ClaimedDigests::default();
        for (f, v) in fields {
            c.claim(f, v).expect("claim");
        }
        FileHasher::for_claims(&c).finish()
    };
    let sha256 = hex::encode(Sha256::digest(b""));
    let only_sha = claimed(&[("sha256_digest", &sha256)]);
    assert!(only_sha.md5.is_none() && only_sha.blake2_256.is_none());
    let none = claimed(&[]);
    assert!(
        none.md5.is_some() && none.blake2_256.is_some(),
        "speculative when nothing was claimed yet"
    );
}

#[test]
fn repeated_single_fields_are_refused() {
    let (hex32, hex64) = ("0".repeat(32), "0".repeat(64));
    for field in SINGLE_FIELDS {
        // Well-formed values, so that only the repetition is wrong.
        let value: &[u8] = match *field {
            "md5_digest" => hex32.as_bytes(),
            "sha256_digest" | "blake2_256_digest" => hex64.as_bytes(),
            _ => b"x",
        };
        let filename = matches!(*field, "content" | "gpg_signature").then_some("demo_pkg-1.0.tar.gz");
        let body = upload_form(&[(field, filename, value), (field, filename, value)]);
        let result = inspect(&body, 16);
        assert!(
            matches!(&result, Err(Refusal::AmbiguousBody(m)) if m.contains("more than once")),
            "{field}: {result:?}"
        );
    }
    // Multi-valued fields may repeat.
    assert_eq!(
        code(&inspect(
            &upload_form(&[("classifiers", None, b"a"), ("classifiers", None, b"b")]),
            16
        )),
        "ok"
    );
}

#[test]
fn names_differing_only_by_case_are_refused() {
    for (name, filename) in [
        ("Content", Some("demo_pkg-1.0.tar.gz")),
        ("NAME", None),
        (":Action", None),
        ("Sha256_Digest", None),
    ] {
        let result = inspect(&upload_form(&[(name, filename, b"x")]), 16);
        assert!(
            matches!(&result, Err(Refusal::AmbiguousBody(m)) if m.contains("only by case")),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn files_only_where_the_api_has_files() {
    let result = inspect(&upload_form(&[("version_extra", Some("x.txt"), b"x")]), 16);
    assert!(
        matches!(&result, Err(Refusal::AmbiguousBody(m)) if m.contains("as a file")),
        "{result:?}"
    );
    let mut parts = base();
    parts.push(("content", None, b"not a file"));
    assert_eq!(code(&inspect(&form(&parts), 16)), "malformed_upload");
}

#[test]
fn a_signature_file_must_be_for_the_distribution() {
    let ok = upload_form(&[("gpg_signature", Some("demo_pkg-1.0.tar.gz.asc"), b"sig")]);
    assert_eq!(code(&inspect(&ok, 16)), "ok");
    let other = upload_form(&[("gpg_signature", Some("other-1.0.tar.gz.asc"), b"sig")]);
    assert_eq!(code(&inspect(&other, 16)), "malformed_upload");
}

#[test]
fn spaces_around_the_project_or_version_are_refused() {
    let body = form(&[
        (":action", None, b"file_upload"),
        ("name", None, b" demo-pkg"),
        ("version", None, b"1.0"),
        ("content", Some("demo_pkg-1.0.tar.gz"), b"x"),
    ]);
    assert_eq!(code(&inspect(&body, 16)), "ambiguous_body");
}

#[test]
fn missing_parts_and_unknown_actions_are_refused() {
    let no_content = form(&[
        (":action", None, b"file_upload"),
        ("name", None, b"a"),
        ("version", None, b"1"),
    ]);
    assert_eq!(code(&inspect(&no_content, 8)), "malformed_upload");
    let submit = form(&[
        (":action", None, b"submit"),
        ("name", None, b"a"),
        ("version", None, b"1"),
    ]);
    assert_eq!(code(&inspect(&submit, 8)), "unclassified_write");
    let remove = form(&[
        (":action", None, b"remove_pkg"),
        ("name", None, b"A.b"),
        ("version", None, b"1"),
    ]);
    assert!(matches!(inspect(&remove, 8), Ok(FormAction::RemovePackage { project, .. }) if project.as_str() == "a-b"));
    assert_eq!(code(&inspect(b"garbage without boundaries", 4)), "ambiguous_body");
}

#[test]
fn only_multipart_posts_start_an_inspector() {
    assert!(matches!(
        FormInspector::start(Some("application/json")),
        Err(Refusal::UnclassifiedWrite(_))
    ));
    assert!(matches!(FormInspector::start(None), Err(Refusal::UnclassifiedWrite(_))));
    assert!(matches!(
        FormInspector::start(Some("multipart/form-data; boundary=a; boundary=b")),
        Err(Refusal::AmbiguousBody(_))
    ));
    let inspector = FormInspector::start(Some("Multipart/Form-Data; BOUNDARY=\"abc\"")).expect("start");
    assert_eq!(inspector.canonical_content_type(), "multipart/form-data; boundary=abc");
}

#[test]
fn text_fields_must_be_utf8_however_they_are_cut() {
    let text = "Zo\u{eb} \u{1F980} caf\u{e9}".as_bytes();
    let ok = upload_form(&[("description", None, text)]);
    for chunk in 1..8 {
        assert_eq!(code(&inspect(&ok, chunk)), "ok", "chunk {chunk}");
    }
    for bad in [&b"caf\xe9"[..], b"\xf0\x9f\xa6", b"\xc0\xaf", b"\xed\xa0\x80"] {
        // A field the gateway skips, one it reads as text, and the raw attestations (found by
        // the differential test's fuzz corpus: readers decode that field as UTF-8 text too).
        for field in ["description", "requires_dist", "attestations"] {
            let body = upload_form(&[(field, None, bad)]);
            for chunk in [1, 3, 64] {
                let result = inspect(&body, chunk);
                assert_eq!(code(&result), "ambiguous_body", "{field} {bad:?} in chunks of {chunk}");
            }
        }
    }
}

#[test]
fn a_character_cut_between_slices_is_refused_at_the_first_byte_that_cannot_continue_it() {
    let mut text = Utf8Stream::default();
    assert!(text.push(b"ok \xe4"));
    assert!(
        !text.push(b"P"),
        "a lead byte followed by ASCII is no character, whatever comes later"
    );
    let mut text = Utf8Stream::default();
    assert!(text.push(b"\xf0\x9f"));
    assert!(text.push(b"\xa6"));
    assert!(!text.is_complete());
    assert!(text.push(b"\x80 done"));
    assert!(text.is_complete());
    let mut text = Utf8Stream::default();
    assert!(text.push(b"\xed"));
    assert!(!text.push(b"\xa0"), "a surrogate is refused at its second byte");
}
