//! SHA-256 over an upload's bytes, as the gateway hashes them (64 KiB slices, one running
//! hash): `sha2` (the gateway's; SHA-NI when the CPU has it, picked at run time) beside
//! aws-lc-rs's, which the gateway already links for signatures. Which is faster here decides
//! which one hashes uploads (issue 18: "measure the fastest SHA-256 you have and use it").
//! `cargo bench -p portcullis-bench --bench sha256`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sha2::Digest as _;

const SLICE: usize = 64 * 1024;

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn sha256(c: &mut Criterion) {
    for (name, len) in [("29 KiB", 29 * 1024), ("1 MiB", 1 << 20)] {
        let bytes = body(len);
        let mut group = c.benchmark_group(format!("sha256 {name}"));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function("sha2", |b| {
            b.iter(|| {
                let mut hash = sha2::Sha256::new();
                for slice in bytes.chunks(SLICE) {
                    hash.update(slice);
                }
                hash.finalize()
            })
        });
        group.bench_function("aws-lc-rs", |b| {
            b.iter(|| {
                let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
                for slice in bytes.chunks(SLICE) {
                    hash.update(slice);
                }
                hash.finish()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, sha256);
criterion_main!(benches);
