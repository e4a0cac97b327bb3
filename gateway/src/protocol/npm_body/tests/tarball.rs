//! The tarball: canonical base64, its length, and hashing 64 MiB in bounded memory.

use super::*;

#[test]
fn tarball_data_must_be_canonical_base64() {
    let tarball = tarball();
    let body = publish("demo", "1.0.0", &tarball, None);
    let data = STANDARD.encode(&tarball);
    for bad in [
        format!("!{}", &data[1..]),
        data[..data.len() - 1].to_owned(),
        format!("{data}AAAA"),
        data.replace('+', "-").replace('/', "_"),
        format!("{} {}", &data[..8], &data[8..]),
    ] {
        let error = refused("demo", &replace(&body, &data, &bad));
        assert!(matches!(error, PublishError::BadBase64 { .. }), "{bad:.20}: {error:?}");
    }
    // Non-canonical trailing bits ("AB==" decodes to the same byte as "AA==").
    let small = publish("demo", "1.0.0", &[0], None);
    assert!(matches!(
        refused("demo", &replace(&small, "\"AA==\"", "\"AB==\"")),
        PublishError::BadBase64 { .. }
    ));
    // JSON escapes in the data are decoded first, as the backend's JSON parser does.
    assert!(data.contains('/'), "the test tarball's base64 has a '/'");
    let escaped = replace(&body, &data, &data.replace('/', "\\/").replacen('A', "\\u0041", 1));
    assert_eq!(facts("demo", &escaped), facts("demo", &body));
}

#[test]
fn length_must_be_the_decoded_size() {
    let tarball = tarball();
    let body = publish("demo", "1.0.0", &tarball, None);
    assert_eq!(
        refused("demo", &replace(&body, "\"length\":1000", "\"length\":1001")),
        PublishError::LengthMismatch {
            declared: 1001,
            actual: 1000
        }
    );
    for bad in ["1000.0", "-1000", "1e3", "123456789012345678901234"] {
        assert!(matches!(
            refused("demo", &replace(&body, "\"length\":1000", &format!("\"length\":{bad}"))),
            PublishError::BadLength { .. }
        ));
    }
    assert!(matches!(
        refused("demo", &replace(&body, "\"length\":1000", "\"length\":\"1000\"")),
        PublishError::WrongType { .. }
    ));
    let without = replace(&body, ",\"length\":1000", "");
    assert_eq!(facts("demo", &without).tarball.expect("tarball").declared_length, None);
}

/// Deterministic pseudo-random bytes (xorshift64*).
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

#[test]
fn a_64_mib_tarball_streams_in_bounded_memory() {
    const SIZE: usize = 64 << 20;
    const RAW_BLOCK: usize = 48 * 1024;
    const CHUNK: usize = 64 * 1024;
    // First pass: the digests npm would put in the manifest.
    let (mut sha512, mut sha1) = (Sha512::new(), Sha1::new());
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let mut block = vec![0u8; RAW_BLOCK];
    let mut left = SIZE;
    while left > 0 {
        let n = left.min(RAW_BLOCK);
        noise.fill(&mut block[..n]);
        sha512.update(&block[..n]);
        sha1.update(&block[..n]);
        left -= n;
    }
    let sha512: [u8; 64] = sha512.finalize().into();
    let sha1: [u8; 20] = sha1.finalize().into();
    let (_, bundle) = fixture("slsa-v1-sigstore-2.3.1");
    let manifest = obj(&[
        ("name", js("big")),
        ("version", js("1.0.0")),
        (
            "dist",
            obj(&[
                ("integrity", js(&format!("sha512-{}", STANDARD.encode(sha512)))),
                ("shasum", js(&hex::encode(sha1))),
            ]),
        ),
    ]);
    let prefix = format!(
        "{{\"_id\":\"big\",\"name\":\"big\",\"dist-tags\":{{\"latest\":\"1.0.0\"}},\"versions\":{{\"1.0.0\":{manifest}}},\"access\":null,\"_attachments\":{{\"big-1.0.0.tgz\":{{\"content_type\":\"application/octet-stream\",\"data\":\""
    );
    let (sig_key, sig_value) = sigstore_member("big", "1.0.0", &bundle);
    let removed = format!(",{}:{sig_value}", js(&sig_key));
    let suffix = format!("\",\"length\":{SIZE}}}{removed}}}}}");

    // Second pass: stream the body in 64 KiB chunks (not aligned on base64 groups).
    let mut inspector = PublishInspector::new("big", Limits::default(), true);
    let mut pending: Vec<u8> = Vec::with_capacity(2 * CHUNK);
    let (mut body_len, mut forwarded_len, mut max_buffered) = (0usize, 0usize, 0usize);
    let mut forward = |pending: &mut Vec<u8>, all: bool, inspector: &mut PublishInspector| {
        while pending.len() >= CHUNK || (all && !pending.is_empty()) {
            let n = pending.len().min(CHUNK);
            let out = inspector.feed(&pending[..n]).expect("accepted");
            pending.drain(..n);
            body_len += n;
            forwarded_len += out.len();
            max_buffered = max_buffered.max(inspector.buffered_bytes());
        }
    };
    pending.extend_from_slice(prefix.as_bytes());
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let mut left = SIZE;
    while left > 0 {
        let n = left.min(RAW_BLOCK);
        noise.fill(&mut block[..n]);
        pending.extend_from_slice(STANDARD.encode(&block[..n]).as_bytes());
        forward(&mut pending, false, &mut inspector);
        left -= n;
    }
    pending.extend_from_slice(suffix.as_bytes());
    forward(&mut pending, true, &mut inspector);
    assert!(max_buffered < 64 * 1024, "the inspector held {max_buffered} bytes");
    let (tail, facts) = inspector.finish().expect("accepted");
    assert!(tail.is_empty());
    assert_eq!(forwarded_len, body_len - removed.len());
    let tarball = facts.tarball.expect("tarball facts");
    assert_eq!(tarball.bytes, SIZE as u64);
    assert_eq!(tarball.sha512, sha512);
    assert_eq!(tarball.sha1, sha1);
    assert_eq!(facts.provenance.as_deref(), Some(bundle.as_slice()));
    assert!(facts.provenance_stripped);
}
