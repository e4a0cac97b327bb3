//! The streaming PyPI upload-form reader (`protocol::pypi::FormInspector`, on the strict
//! multipart reader): the body is fed whole, then again cut into chunks chosen by the
//! input's first two bytes. Both runs must reach the same outcome (same facts, or a refusal
//! with the same code): the gateway must not decide differently depending on how TCP split
//! the body.
//!
//! Input: 2 seed bytes for the chunking, then the body, with boundary [`BOUNDARY`].
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use portcullis::error::Refusal;
use portcullis::protocol::pypi::{FormAction, FormInspector};
use portcullis_fuzz::{chunks, control, debug};

/// The boundary of every fuzzed form (the seeds use it).
const BOUNDARY: &str = "PortcullisFuzzBoundary";

static CONTENT_TYPE: LazyLock<String> = LazyLock::new(|| format!("multipart/form-data; boundary={BOUNDARY}"));

/// Feeds `pieces` in order and finishes, stopping at the first refusal as the proxy does.
fn run(pieces: &[&[u8]]) -> Result<FormAction, Refusal> {
    let mut form = FormInspector::start(Some(&CONTENT_TYPE))?;
    for piece in pieces {
        form.feed(piece)?;
    }
    form.finish()
}

fuzz_target!(|data: &[u8]| {
    let (seed, body) = control::<2>(data);
    let whole = run(&[body]);
    let cut = run(&chunks(body, u32::from(u16::from_le_bytes(seed))));
    if debug() {
        eprintln!("{whole:?}");
    }
    match (&whole, &cut) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the chunking changed the facts"),
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "the chunking changed the refusal: {a} / {b}"),
        _ => panic!("the chunking changed the outcome: whole {whole:?}, chunked {cut:?}"),
    }
});
