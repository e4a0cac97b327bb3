//! Explain: what was decided about a recent request, and why — the rules revision and rule,
//! the facts used (registry, project, action, size, digest, credential, publisher), the
//! provenance verification steps and the outcome — looked up by request id on the admin
//! listener (`GET /decisions/<request id>`).
//!
//! The journal is in memory, bounded and expiring (the durable record of uploads is the
//! ledger in the state store); every write and every refusal is journaled. It is bounded by
//! bytes, not by entries: each explanation is kept as compact JSON text and weighs its length
//! (a `serde_json::Value` tree costs about eight times its text in memory, so the former bound
//! of 50 000 entries held about 285 MiB once full — past the Kubernetes base's 256 MiB limit;
//! found by the soak run, docs/hardening/soak.md).

use std::time::Duration;

use moka::sync::Cache;
use serde::Serialize;
use serde_json::Value;

/// Most bytes of explanation text (request ids included) kept; about 20 000 typical
/// explanations of 700–900 bytes.
const CAPACITY_BYTES: u64 = 16 << 20;
/// How long an explanation is kept.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// Recent decisions by request id.
pub struct DecisionJournal {
    cache: Cache<String, String>,
}

impl DecisionJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::with_capacity_bytes(CAPACITY_BYTES)
    }

    /// An empty journal keeping at most about `bytes` of explanation text.
    fn with_capacity_bytes(bytes: u64) -> Self {
        DecisionJournal {
            cache: Cache::builder()
                .max_capacity(bytes)
                .weigher(|id: &String, text: &String| u32::try_from(id.len() + text.len()).unwrap_or(u32::MAX))
                // Least recently used out first: the newest explanations are the ones asked for.
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .time_to_live(TTL)
                .build(),
        }
    }

    /// Records the explanation of request `id` (anything that serialises to a JSON object).
    pub fn record(&self, id: &str, explanation: &impl Serialize) {
        let Ok(mut text) = serde_json::to_string(explanation) else {
            tracing::warn!(request_id = id, "an explanation could not be serialised; not journaled");
            return;
        };
        // The weigher counts the length: keep no spare capacity beyond it.
        text.shrink_to_fit();
        self.cache.insert(id.to_owned(), text);
    }

    /// The explanation of request `id`, if it is still kept.
    pub fn explain(&self, id: &str) -> Option<Value> {
        self.cache.get(id).and_then(|text| serde_json::from_str(&text).ok())
    }
}

impl Default for DecisionJournal {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations_are_found_by_request_id() {
        let journal = DecisionJournal::new();
        journal.record("abc", &serde_json::json!({"outcome": "refuse"}));
        assert_eq!(
            journal.explain("abc").map(|v| v["outcome"].clone()),
            Some("refuse".into())
        );
        assert!(journal.explain("other").is_none());
    }

    #[test]
    fn the_journal_is_bounded_by_bytes_and_keeps_the_newest() {
        let journal = DecisionJournal::with_capacity_bytes(64 * 1024);
        let padding = "x".repeat(900);
        for i in 0..1000 {
            journal.record(&format!("req-{i}"), &serde_json::json!({"n": i, "detail": padding}));
        }
        journal.cache.run_pending_tasks();
        // 1 000 explanations of about 930 bytes are ~930 KB: only what fits in 64 KiB is kept.
        assert!(
            journal.cache.weighted_size() <= 64 * 1024,
            "{} bytes kept",
            journal.cache.weighted_size()
        );
        assert!(
            journal.cache.entry_count() <= 70,
            "{} kept",
            journal.cache.entry_count()
        );
        assert_eq!(
            journal.explain("req-999").map(|v| v["n"].clone()),
            Some(999.into()),
            "the newest is kept, whole"
        );
    }
}
