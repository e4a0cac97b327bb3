//! The streaming npm publish scanner (`protocol::npm_body::PublishInspector`): the document is
//! fed whole, then cut into chunks chosen by the input. Checked on every input:
//! - both runs reach the same outcome (same facts, or a refusal with the same code) and forward
//!   the same bytes;
//! - without provenance stripping the forwarded bytes are the input, unchanged;
//! - with stripping, when the input is JSON (serde_json) and accepted, the forwarded bytes are
//!   JSON too and equal the input without its `.sigstore` attachment.
//!
//! Input: a flags byte (bit 0: strip provenance; bit 1: the package is `@scope/pkg` rather than
//! `pkg`; bit 2: tiny limits, to reach every limit), 2 seed bytes for the chunking, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::protocol::npm_body::{Limits, PublishError, PublishFacts, PublishInspector};
use portcullis_fuzz::{chunks, control, debug};
use serde_json::Value;

const TINY: Limits = Limits {
    max_string_bytes: 64,
    max_provenance_bytes: 256,
    max_depth: 6,
    max_object_keys: 12,
    max_metadata_bytes: 512,
};

/// Feeds `pieces` in order and finishes; returns the forwarded bytes with the outcome.
fn run(package: &str, limits: Limits, strip: bool, pieces: &[&[u8]]) -> (Vec<u8>, Result<PublishFacts, PublishError>) {
    let mut inspector = PublishInspector::new(package, limits, strip);
    let mut forwarded = Vec::new();
    for piece in pieces {
        match inspector.feed(piece) {
            Ok(bytes) => forwarded.extend_from_slice(&bytes),
            Err(e) => return (forwarded, Err(e)),
        }
    }
    match inspector.finish() {
        Ok((tail, facts)) => {
            forwarded.extend_from_slice(&tail);
            (forwarded, Ok(facts))
        }
        Err(e) => (forwarded, Err(e)),
    }
}

fuzz_target!(|data: &[u8]| {
    let ([flags, s0, s1], body) = control::<3>(data);
    let strip = flags & 1 != 0;
    let package = if flags & 2 != 0 { "@scope/pkg" } else { "pkg" };
    let limits = if flags & 4 != 0 { TINY } else { Limits::default() };

    let (whole_out, whole) = run(package, limits, strip, &[body]);
    if debug() {
        eprintln!("{package}: {whole:?}");
    }
    let (cut_out, cut) = run(
        package,
        limits,
        strip,
        &chunks(body, u32::from_le_bytes([s0, s1, 0, 0])),
    );
    match (&whole, &cut) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "the chunking changed the facts");
            assert_eq!(whole_out, cut_out, "the chunking changed the forwarded bytes");
        }
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "the chunking changed the refusal: {a} / {b}"),
        _ => panic!("the chunking changed the outcome: whole {whole:?}, chunked {cut:?}"),
    }
    if !strip {
        // Up to a refusal the bytes stream through unchanged.
        assert!(body.starts_with(&whole_out), "bytes were changed without stripping");
        if whole.is_ok() {
            assert_eq!(whole_out, body, "an accepted document was not forwarded whole");
        }
        return;
    }
    let Ok(facts) = &whole else { return };
    let Ok(mut expected) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let forwarded: Value = serde_json::from_slice(&whole_out).unwrap_or_else(|e| {
        panic!(
            "stripping made an accepted JSON document invalid ({e}): {:?}",
            String::from_utf8_lossy(&whole_out)
        )
    });
    if facts.provenance_stripped {
        if let Some(Value::Object(attachments)) = expected.get_mut("_attachments") {
            attachments.retain(|name, _| !name.ends_with(".sigstore"));
        }
    }
    assert_eq!(
        forwarded, expected,
        "stripping changed more than the .sigstore attachment"
    );
});
