//! PEP 740 attestation objects (what an upload's `attestations` field carries and PyPI's
//! integrity API serves) mapped onto the same verification path as Sigstore bundles:
//! `{"version": 1, "verification_material": {"certificate", "transparency_entries",
//! "timestamps"?}, "envelope": {"statement", "signature"}}` becomes a v0.3 bundle with a DSSE
//! envelope of in-toto payload type.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::bundle::Bundle;
use crate::content::IN_TOTO;
use crate::error::{Result, Step, VerifyError};

/// Largest attestation object accepted, in bytes.
pub const MAX_ATTESTATION_BYTES: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttestation {
    version: u32,
    verification_material: RawMaterial,
    envelope: RawEnvelope,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaterial {
    certificate: String,
    transparency_entries: Vec<Value>,
    #[serde(default)]
    timestamps: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    statement: String,
    signature: String,
}

fn err(reason: impl Into<String>) -> VerifyError {
    VerifyError::new(Step::Bundle, reason)
}

/// Converts one PEP 740 attestation object (JSON) into a bundle.
pub fn attestation_to_bundle(json: &[u8]) -> Result<Bundle> {
    if json.len() > MAX_ATTESTATION_BYTES {
        return Err(err(format!(
            "the attestation is larger than {MAX_ATTESTATION_BYTES} bytes"
        )));
    }
    let raw: RawAttestation =
        serde_json::from_slice(json).map_err(|e| err(format!("not a PEP 740 attestation: {e}")))?;
    if raw.version != 1 {
        return Err(err(format!("unsupported attestation version {}", raw.version)));
    }
    if raw.verification_material.transparency_entries.is_empty() {
        return Err(err("the attestation has no transparency log entry"));
    }
    let mut material = json!({
        "certificate": {"rawBytes": raw.verification_material.certificate},
        "tlogEntries": raw.verification_material.transparency_entries,
    });
    if !raw.verification_material.timestamps.is_empty() {
        let tokens: Vec<Value> = raw
            .verification_material
            .timestamps
            .iter()
            .map(|t| json!({"signedTimestamp": t}))
            .collect();
        material["timestampVerificationData"] = json!({"rfc3161Timestamps": tokens});
    }
    let bundle = json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": raw.envelope.statement,
            "payloadType": IN_TOTO,
            "signatures": [{"sig": raw.envelope.signature}],
        },
    });
    let encoded = serde_json::to_vec(&bundle).map_err(|e| err(e.to_string()))?;
    Bundle::from_json(&encoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{verify, Artifact, Policy, TrustedRoot};

    fn fixtures() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
    }

    fn read(path: &std::path::Path) -> Vec<u8> {
        std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn every_real_attestation_verifies_through_the_conversion() {
        let root = TrustedRoot::from_json(&read(
            &fixtures().join("trusted-roots/public-good-production.trusted_root.json"),
        ))
        .expect("root");
        let now = 2_000_000_000;
        let mut checked = 0;
        for entry in std::fs::read_dir(fixtures().join("pep740")).expect("pep740") {
            let dir = entry.expect("entry").path();
            if !dir.join("bundle.sigstore.json").exists() {
                continue;
            }
            let attestation = std::fs::read_dir(&dir)
                .expect("case")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.to_string_lossy().contains(".attestation"))
                .expect("attestation file");
            let san = String::from_utf8(read(&dir.join("identity")))
                .expect("utf-8")
                .trim()
                .to_owned();
            let issuer = String::from_utf8(read(&dir.join("issuer")))
                .expect("utf-8")
                .trim()
                .to_owned();
            let bundle = attestation_to_bundle(&read(&attestation)).expect("converts");
            let facts = verify(
                &bundle,
                &Artifact::from_bytes(read(&dir.join("artifact"))),
                &root,
                &Policy::Identity { san, issuer },
                now,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            assert!(facts.predicate_type.is_some());
            // The subject names the distribution file, as PEP 740 requires.
            let file_name = attestation
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            assert!(
                facts
                    .subjects
                    .iter()
                    .any(|(name, _)| file_name.starts_with(name.as_str())),
                "{file_name}: {:?}",
                facts.subjects
            );
            checked += 1;
        }
        assert_eq!(checked, 5);
    }

    #[test]
    fn malformed_attestations_are_refused() {
        assert!(attestation_to_bundle(b"{}").is_err());
        assert!(attestation_to_bundle(br#"{"version":2,"verification_material":{"certificate":"","transparency_entries":[{}]},"envelope":{"statement":"","signature":""}}"#).is_err());
        assert!(attestation_to_bundle(br#"{"version":1,"verification_material":{"certificate":"","transparency_entries":[]},"envelope":{"statement":"","signature":""}}"#).is_err());
        let huge = vec![b' '; MAX_ATTESTATION_BYTES + 1];
        assert!(attestation_to_bundle(&huge).is_err());
    }
}
