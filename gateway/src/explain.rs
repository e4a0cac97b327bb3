//! Explain: what was decided about a recent request, and why — the rules revision and rule,
//! the facts used (registry, project, action, size, digest, credential, publisher), the
//! provenance verification steps and the outcome — looked up by request id on the admin
//! listener (`GET /decisions/<request id>`).
//!
//! The journal is in memory, bounded and expiring (the durable record of uploads is the
//! ledger in the state store); every write and every refusal is journaled.

use std::time::Duration;

use moka::sync::Cache;
use serde_json::Value;

/// Most explanations kept.
const CAPACITY: u64 = 50_000;
/// How long an explanation is kept.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// Recent decisions by request id.
pub struct DecisionJournal {
    cache: Cache<String, Value>,
}

impl DecisionJournal {
    /// An empty journal.
    pub fn new() -> Self {
        DecisionJournal {
            cache: Cache::builder().max_capacity(CAPACITY).time_to_live(TTL).build(),
        }
    }

    /// Records the explanation of request `id`.
    pub fn record(&self, id: &str, explanation: Value) {
        self.cache.insert(id.to_owned(), explanation);
    }

    /// The explanation of request `id`, if it is still kept.
    pub fn explain(&self, id: &str) -> Option<Value> {
        self.cache.get(id)
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
        journal.record("abc", serde_json::json!({"outcome": "refuse"}));
        assert_eq!(
            journal.explain("abc").map(|v| v["outcome"].clone()),
            Some("refuse".into())
        );
        assert!(journal.explain("other").is_none());
    }
}
