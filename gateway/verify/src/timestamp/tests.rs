//! RFC 3161 timestamps of the Sigstore conformance fixtures, and mutations of them.

use super::*;
use crate::trust_root::{b64, rfc3339};

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A conformance case: its timestamp tokens, the bytes they cover, and its trusted root.
struct Case {
    tokens: Vec<Vec<u8>>,
    signed: Vec<u8>,
    root: TrustedRoot,
}

fn case(name: &str) -> Case {
    let dir = fixtures().join("sigstore-conformance/bundle-verify").join(name);
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("bundle.sigstore.json")).expect("bundle")).expect("json");
    let tokens = bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
        .as_array()
        .expect("rfc3161Timestamps")
        .iter()
        .map(|t| {
            // One fixture's token was produced with `base64` and keeps its line breaks;
            // protobuf JSON decoders (Go, Python) skip them.
            let text: String = t["signedTimestamp"]
                .as_str()
                .expect("signedTimestamp")
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            b64(&text).expect("base64")
        })
        .collect();
    let signed = bundle["messageSignature"]["signature"]
        .as_str()
        .or_else(|| bundle["dsseEnvelope"]["signatures"][0]["sig"].as_str())
        .expect("signature");
    let root_path = dir.join("trusted_root.json");
    let root_path = if root_path.exists() {
        root_path
    } else {
        fixtures().join("trusted-roots/public-good-production.trusted_root.json")
    };
    let root = TrustedRoot::from_json(&std::fs::read(root_path).expect("root")).expect("trusted root");
    Case {
        tokens,
        signed: b64(signed).expect("base64 signature"),
        root,
    }
}

fn verify_case(name: &str) -> Result<VerifiedTimestamp> {
    let case = case(name);
    assert_eq!(case.tokens.len(), 1, "{name}");
    verify_timestamp(&case.tokens[0], &case.signed, &case.root)
}

fn expect_ok(name: &str, time: &str, uri: &str) {
    let ts = verify_case(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(ts.time, rfc3339(time).expect("time"), "{name}");
    assert_eq!(ts.tsa_uri, uri, "{name}");
}

fn expect_err(name: &str, needle: &str) {
    let e = verify_case(name).expect_err(name);
    assert_eq!(e.step, Step::Timestamp, "{name}");
    assert!(e.reason.contains(needle), "{name}: {}", e.reason);
}

const STAGING_TSA: &str = "https://timestamp.sigstage.dev/api/v1/timestamp";

#[test]
fn timestamp_conformance_cases_that_verify() {
    expect_ok("rekor2-happy-path", "2025-06-12T12:02:20Z", STAGING_TSA);
    expect_ok(
        "rekor2-timestamp-with-embedded-cert",
        "2025-08-06T18:51:36Z",
        STAGING_TSA,
    );
    expect_ok(
        "rekor2-timestamp-without-embedded-cert",
        "2025-08-06T19:03:51Z",
        STAGING_TSA,
    );
    // The chain expired minutes after issuance; it was valid at genTime.
    expect_ok(
        "rekor2-timestamp-with-expired-cert-chain",
        "2025-08-07T15:32:26Z",
        "https://localhost:3000/api/v1/timestamp",
    );
    // genTime equals the end of the authority's validity window (closed interval).
    expect_ok(
        "trust-root-tsa-validity-end-inclusive",
        "2025-06-12T12:02:20Z",
        STAGING_TSA,
    );
    // These fail for the signing certificate's lifetime, not for the timestamp itself.
    expect_ok(
        "rekor2-timestamp-with-incorrect-time_fail",
        "2025-07-15T10:33:31Z",
        STAGING_TSA,
    );
    expect_ok(
        "intoto-tsa-timestamp-outside-cert-validity_fail",
        "2023-02-02T00:00:00Z",
        "http://localhost:8000",
    );
}

#[test]
fn timestamp_conformance_cases_that_fail() {
    expect_err(
        "rekor2-timestamp-outside-trust-root-tsa-validity_fail",
        "validity window",
    );
    expect_err(
        "rekor2-timestamp-outside-tsa-cert-validity_fail",
        "not valid at the timestamp's genTime",
    );
    expect_err("rekor2-timestamp-payload-mismatch_fail", "message imprint");
    expect_err(
        "rekor2-timestamp-untrusted-tsa-with-embedded-cert_fail",
        "not signed by a timestamp authority",
    );
    expect_err(
        "rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail",
        "not signed by a timestamp authority",
    );
}

#[test]
fn timestamp_from_another_tsa_is_refused_by_the_production_root() {
    let production = TrustedRoot::from_json(
        &std::fs::read(fixtures().join("trusted-roots/public-good-production.trusted_root.json")).expect("root"),
    )
    .expect("production root");
    // No embedded certificate: nothing in the production root matches the signer.
    let plain = case("rekor2-timestamp-without-embedded-cert");
    let e = verify_timestamp(&plain.tokens[0], &plain.signed, &production).expect_err("other TSA");
    assert!(e.reason.contains("not signed by a timestamp authority"), "{}", e.reason);
    // The embedded staging leaf names an issuer with the same DN as the production TSA root
    // ("O=sigstore.dev, CN=sigstore-tsa-selfsigned"), so it is tried against it and refused
    // because the production root did not sign it.
    let case = case("rekor2-happy-path");
    let e = verify_timestamp(&case.tokens[0], &case.signed, &production).expect_err("other TSA");
    assert!(e.reason.contains("is not signed by"), "{}", e.reason);
}

#[test]
fn timestamp_mutations_are_refused() {
    let case = case("rekor2-happy-path");
    let token = &case.tokens[0];

    let mut signed = case.signed.clone();
    signed[10] ^= 1;
    let e = verify_timestamp(token, &signed, &case.root).expect_err("imprint");
    assert!(e.reason.contains("message imprint"), "{}", e.reason);

    // The token ends with the SignerInfo signature (no unsigned attributes): flip its last byte.
    let mut forged = token.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let e = verify_timestamp(&forged, &case.signed, &case.root).expect_err("signature");
    assert_eq!(e.step, Step::Timestamp);
    assert!(e.reason.contains("signature does not verify"), "{}", e.reason);

    // A byte inside the TSTInfo (its genTime seconds) breaks the message-digest attribute.
    let needle = b"20250612120220Z";
    let at = token.windows(needle.len()).position(|w| w == needle).expect("genTime");
    let mut moved = token.clone();
    moved[at + 13] = b'1';
    let e = verify_timestamp(&moved, &case.signed, &case.root).expect_err("digest");
    assert!(e.reason.contains("message-digest"), "{}", e.reason);

    let mut empty = case.root.clone();
    empty.timestamp_authorities.clear();
    let e = verify_timestamp(token, &case.signed, &empty).expect_err("no TSAs");
    assert!(e.reason.contains("no timestamp authorities"), "{}", e.reason);

    let mut shifted = case.root.clone();
    shifted.timestamp_authorities[0].validity.start = rfc3339("2025-06-12T12:02:21Z").expect("time");
    let e = verify_timestamp(token, &case.signed, &shifted).expect_err("before start");
    assert!(e.reason.contains("validity window"), "{}", e.reason);

    assert!(verify_timestamp(b"junk", &case.signed, &case.root).is_err());
    assert!(verify_timestamp(&token[..token.len() - 5], &case.signed, &case.root).is_err());
    let mut trailing = token.clone();
    trailing.push(0);
    assert!(verify_timestamp(&trailing, &case.signed, &case.root).is_err());
}

#[test]
fn unsigned_parts_of_the_token_are_read_strictly() {
    let case = case("rekor2-happy-path");
    let token = &case.tokens[0];
    assert!(verify_timestamp(token, &case.signed, &case.root).is_ok());
    // SignedData: version 3, then the digestAlgorithms SET.
    let at = token
        .windows(4)
        .position(|w| w == [0x02, 0x01, 0x03, 0x31])
        .expect("SignedData version");
    let mut versioned = token.clone();
    versioned[at + 2] = 0x13;
    let e = verify_timestamp(&versioned, &case.signed, &case.root).expect_err("version");
    assert!(e.reason.contains("SignedData version is 13, not 3"), "{}", e.reason);
    // SignerInfo: version 1 with an issuer and serial number (the last such pattern).
    let at = token
        .windows(4)
        .rposition(|w| w == [0x02, 0x01, 0x01, 0x30])
        .expect("SignerInfo version");
    let mut versioned = token.clone();
    versioned[at + 2] = 0x03;
    let e = verify_timestamp(&versioned, &case.signed, &case.root).expect_err("version");
    assert!(e.reason.contains("SignerInfo version 03 does not fit"), "{}", e.reason);
}

#[test]
fn timestamp_bare_token_and_response_status() {
    let case = case("rekor2-happy-path");
    let response = &case.tokens[0];
    let bare = unwrap_response(response).expect("token");
    assert_ne!(bare.len(), response.len());
    let ts = verify_timestamp(bare, &case.signed, &case.root).expect("bare token verifies");
    assert_eq!(ts.time, rfc3339("2025-06-12T12:02:20Z").expect("time"));

    // Status "rejection" (2) in the PKIStatusInfo: SEQUENCE { SEQUENCE { INTEGER 0 } ...}.
    assert_eq!(&response[4..9], &[0x30, 0x03, 0x02, 0x01, 0x00]);
    let mut rejected = response.clone();
    rejected[8] = 2;
    let e = verify_timestamp(&rejected, &case.signed, &case.root).expect_err("rejected");
    assert!(e.reason.contains("not granted"), "{}", e.reason);
}

#[test]
fn timestamp_generalized_time() {
    let t = parse_generalized_time(b"20250612120220Z").expect("time");
    assert_eq!(
        t,
        Instant {
            secs: 1_749_729_740,
            fraction: false
        }
    );
    let t = parse_generalized_time(b"20250612120220.250Z").expect("fraction");
    assert_eq!(
        t,
        Instant {
            secs: 1_749_729_740,
            fraction: true
        }
    );
    assert!(t.within(0, 1_749_729_741));
    assert!(!t.within(0, 1_749_729_740));
    assert!(parse_generalized_time(b"20250612120220.000Z")
        .expect("zero fraction")
        .within(0, 1_749_729_740));
    for bad in [
        &b"20250612120220"[..],
        b"2025061212022Z",
        b"20251312120220Z",
        b"20250612120220.Z",
        b"2025+612120220Z",
    ] {
        assert!(parse_generalized_time(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}
