//! A bounded, expiring cache of verification outcomes, keyed by everything that decides the
//! outcome: the bundle's bytes, the artifact's digest, the trusted root's revision and the
//! policy. Concurrent identical verifications run once (moka's entry API coalesces them);
//! refusals are kept only briefly so a transient cause does not stick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;
use portcullis_verify::{Artifact, Bundle, Policy, SignerFacts, TrustedRoot, VerifyError};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;

/// What a verification is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    bundle_sha256: [u8; 32],
    artifact_sha256: [u8; 32],
    root_revision: [u8; 32],
    policy_sha256: [u8; 32],
    evidence: Evidence,
}

impl CacheKey {
    /// The key for verifying `bundle_json` over `artifact` under `root` and `policy`.
    pub fn new(bundle_json: &[u8], artifact: &Artifact, root: &TrustedRoot, policy: &Policy) -> Self {
        let policy_text = match policy {
            Policy::Identity { san, issuer } => format!("identity\0{san}\0{issuer}"),
            Policy::AnyIdentity => "any-identity".to_owned(),
            Policy::Key { spki_der } => format!("key\0{}", hex::encode(spki_der)),
        };
        CacheKey {
            bundle_sha256: Sha256::digest(bundle_json).into(),
            artifact_sha256: artifact.sha256,
            root_revision: root.revision,
            policy_sha256: Sha256::digest(policy_text.as_bytes()).into(),
            evidence: Evidence::Bundle,
        }
    }
}

/// The form of the verified evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Evidence {
    /// A Sigstore bundle.
    Bundle,
    /// A PEP 740 attestation object.
    Pep740,
}

/// A cached outcome.
pub type Outcome = Arc<Result<SignerFacts, VerifyError>>;

/// Cache limits.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Total weight (approximate bytes) kept.
    pub max_weight: u64,
    /// How long a verified outcome is kept.
    pub ttl: Duration,
    /// How long a refusal is kept.
    pub refusal_ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            max_weight: 64 << 20,
            ttl: Duration::from_secs(3600),
            refusal_ttl: Duration::from_secs(10),
        }
    }
}

struct OutcomeExpiry {
    ttl: Duration,
    refusal_ttl: Duration,
}

impl Expiry<CacheKey, Outcome> for OutcomeExpiry {
    fn expire_after_create(&self, _key: &CacheKey, value: &Outcome, _now: Instant) -> Option<Duration> {
        Some(if value.is_ok() { self.ttl } else { self.refusal_ttl })
    }
}

/// The verification cache.
pub struct VerificationCache {
    cache: Cache<CacheKey, Outcome>,
    metrics: Arc<Metrics>,
}

fn weight(outcome: &Outcome) -> u32 {
    match outcome.as_ref() {
        Ok(facts) => {
            512 + facts
                .subjects
                .iter()
                .map(|(n, d)| n.len() + d.len() * 160)
                .sum::<usize>() as u32
        }
        Err(e) => 256 + e.reason.len() as u32,
    }
}

impl VerificationCache {
    /// A cache with `settings`.
    pub fn new(settings: CacheSettings, metrics: Arc<Metrics>) -> Self {
        let cache = Cache::builder()
            .max_capacity(settings.max_weight)
            .weigher(|_k: &CacheKey, v: &Outcome| weight(v))
            .expire_after(OutcomeExpiry {
                ttl: settings.ttl,
                refusal_ttl: settings.refusal_ttl,
            })
            .build();
        VerificationCache { cache, metrics }
    }

    /// Verifies (or returns the cached outcome of verifying) `bundle_json` over `artifact`.
    /// The CPU work runs on the blocking pool.
    pub async fn verify(
        &self,
        bundle_json: Arc<[u8]>,
        artifact: Artifact,
        root: Arc<TrustedRoot>,
        policy: Policy,
        now: i64,
    ) -> Outcome {
        self.verify_as(Evidence::Bundle, bundle_json, artifact, root, policy, now)
            .await
    }

    /// Like [`Self::verify`], for one PEP 740 attestation object (JSON) as an upload carries it.
    pub async fn verify_pep740(
        &self,
        attestation_json: Arc<[u8]>,
        artifact: Artifact,
        root: Arc<TrustedRoot>,
        policy: Policy,
        now: i64,
    ) -> Outcome {
        self.verify_as(Evidence::Pep740, attestation_json, artifact, root, policy, now)
            .await
    }

    async fn verify_as(
        &self,
        evidence: Evidence,
        bundle_json: Arc<[u8]>,
        artifact: Artifact,
        root: Arc<TrustedRoot>,
        policy: Policy,
        now: i64,
    ) -> Outcome {
        let key = CacheKey {
            evidence,
            ..CacheKey::new(&bundle_json, &artifact, &root, &policy)
        };
        let metrics = self.metrics.clone();
        let entry = self
            .cache
            .entry(key)
            .or_insert_with(async move {
                let started = Instant::now();
                let result = tokio::task::spawn_blocking(move || {
                    let bundle = match evidence {
                        Evidence::Bundle => Bundle::from_json(&bundle_json)?,
                        Evidence::Pep740 => portcullis_verify::pep740::attestation_to_bundle(&bundle_json)?,
                    };
                    portcullis_verify::verify(&bundle, &artifact, &root, &policy, now)
                })
                .await
                .unwrap_or_else(|e| {
                    Err(VerifyError::new(
                        portcullis_verify::Step::Bundle,
                        format!("verification task failed: {e}"),
                    ))
                });
                let outcome = if result.is_ok() { "verified" } else { "refused" };
                metrics
                    .verify_duration
                    .with_label_values(&[outcome])
                    .observe(started.elapsed().as_secs_f64());
                Arc::new(result)
            })
            .await;
        let label = if entry.is_fresh() { "miss" } else { "hit" };
        self.metrics.verify_cache.with_label_values(&[label]).inc();
        entry.into_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_fixtures::read as fixture;

    fn inputs() -> (Arc<[u8]>, Artifact, Arc<TrustedRoot>, Policy) {
        let bundle: Arc<[u8]> =
            fixture("sigstore-conformance/bundle-verify/happy-path-v0.3/bundle.sigstore.json").into();
        let artifact = Artifact::from_bytes(fixture("sigstore-conformance/bundle-verify/a.txt"));
        let root = Arc::new(
            TrustedRoot::from_json(&fixture("trusted-roots/public-good-production.trusted_root.json")).expect("root"),
        );
        let policy = Policy::Identity {
            san: "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main".into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
        };
        (bundle, artifact, root, policy)
    }

    fn count(metrics: &Metrics, label: &str) -> u64 {
        metrics.verify_cache.with_label_values(&[label]).get()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_identical_verifications_run_once_and_then_hit() {
        let metrics = Arc::new(Metrics::new());
        let cache = Arc::new(VerificationCache::new(CacheSettings::default(), metrics.clone()));
        let (bundle, artifact, root, policy) = inputs();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, bundle, artifact, root, policy) = (
                    cache.clone(),
                    bundle.clone(),
                    artifact.clone(),
                    root.clone(),
                    policy.clone(),
                );
                tokio::spawn(async move { cache.verify(bundle, artifact, root, policy, now).await })
            })
            .collect();
        for t in tasks {
            assert!(t.await.expect("task").is_ok());
        }
        assert_eq!(count(&metrics, "miss"), 1, "verified once");
        assert_eq!(count(&metrics, "hit"), 7);
        assert_eq!(
            metrics
                .verify_duration
                .with_label_values(&["verified"])
                .get_sample_count(),
            1
        );
    }

    #[tokio::test]
    async fn the_policy_and_the_artifact_are_part_of_the_key() {
        let metrics = Arc::new(Metrics::new());
        let cache = VerificationCache::new(CacheSettings::default(), metrics.clone());
        let (bundle, artifact, root, policy) = inputs();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        assert!(cache
            .verify(bundle.clone(), artifact.clone(), root.clone(), policy, now)
            .await
            .is_ok());
        // Same bundle, another identity: not served from the cache, and refused.
        let other = Policy::Identity {
            san: "https://example.com/other".into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
        };
        let refused = cache
            .verify(bundle.clone(), artifact.clone(), root.clone(), other, now)
            .await;
        assert_eq!(
            refused.as_ref().as_ref().map_err(|e| e.step),
            Err(portcullis_verify::Step::Identity)
        );
        // Same bundle, other bytes: not served from the cache either.
        let tampered = Artifact::from_bytes(b"other bytes".to_vec());
        let (_, _, _, policy) = inputs();
        assert!(cache.verify(bundle, tampered, root, policy, now).await.is_err());
        assert_eq!(count(&metrics, "miss"), 3);
        assert_eq!(count(&metrics, "hit"), 0);
    }
}
