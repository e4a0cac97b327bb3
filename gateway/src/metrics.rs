//! Every metric the gateway exports, in one place. Names follow Prometheus conventions:
//! `portcullis_` prefix, `_total` for counters, `_seconds` and `_bytes` for units.
//! Label values are bounded: registry names and rule ids come from the configuration,
//! codes and kinds from fixed enums.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The gateway's metrics and the registry that exports them.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by registry, method class (`read`, `write`, `other`) and status.
    pub requests: IntCounterVec,
    /// Request body bytes received from clients, by registry and method class.
    pub request_bytes: IntCounterVec,
    /// Upload body sizes (uploads and publishes), by registry.
    pub upload_size: HistogramVec,
    /// Time from the start of the request until the backend's response header, by registry.
    pub upstream_latency: HistogramVec,
    /// Time from the start of the request until it is done, by registry and method class.
    pub request_duration: HistogramVec,
    /// Failures talking to a backend, by registry and kind.
    pub upstream_errors: IntCounterVec,
    /// Policy decisions, by registry, rule and outcome (`allow`, `refuse`).
    pub decisions: IntCounterVec,
    /// Refusals sent to clients, by registry and stable code.
    pub refusals: IntCounterVec,
    /// Rules reloads by result (`ok`, `unchanged`, `error`).
    pub reloads: IntCounterVec,
    /// When the current rules were loaded (Unix seconds).
    pub rules_loaded_at: IntGauge,
    /// The current rules revision, as a label on a gauge set to 1.
    pub rules_revision: IntGaugeVec,
    /// Uploads in flight, by registry.
    pub uploads_in_flight: IntGaugeVec,
    /// Whether each backend answered the last readiness probe (1) or not (0).
    pub upstream_up: IntGaugeVec,
    /// Build information as labels on a gauge set to 1.
    pub build_info: IntGaugeVec,
    /// Time to read and compile the rules on reload.
    pub reload_duration: Histogram,
    /// Sigstore verification cache lookups by result (`hit`, `miss`).
    pub verify_cache: IntCounterVec,
    /// Time of uncached Sigstore verifications, by outcome (`verified`, `refused`).
    pub verify_duration: HistogramVec,
    /// Trusted-publishing exchanges, by protocol (`pypi`, `npm`), issuer (rules name, or
    /// `unknown`), registry and outcome (`minted` or a refusal code).
    pub exchanges: IntCounterVec,
    /// Time of trusted-publishing exchanges, by protocol and outcome class (`minted`, `refused`).
    pub exchange_duration: HistogramVec,
    /// Writes that carried an upload token, by registry and outcome (`accepted` or a code).
    pub upload_tokens: IntCounterVec,
    /// Writes forwarded with the client's own credential (legacy mode), by registry.
    pub legacy_credentials: IntCounterVec,
    /// Provenance decisions on uploads, by registry, mode and outcome (`accepted`,
    /// `not_present`, a refusal code, `audit`, `shadow`).
    pub provenance: IntCounterVec,
    /// Deletion-rules decisions by registry, action and outcome (`allow`, `refuse`, `shadow`, `override`).
    pub deletions: IntCounterVec,
    /// OIDC key-set fetches by outcome (`ok`, `failed`, `skipped_cooldown`).
    pub jwks_fetches: IntCounterVec,
    /// Client connections the proxy serves now.
    pub client_connections: IntGauge,
    /// Client connections refused at `[client] max_connections`.
    pub client_connections_refused: IntCounter,
    /// Sigstore trusted-root refreshes by outcome (`updated`, `unchanged`, or why it failed:
    /// `unreachable`, `expired`, `rollback`, `integrity`, `signature`, `malformed`, `no_cache`,
    /// `invalid_root`).
    pub trust_refreshes: IntCounterVec,
    /// 1 while a Sigstore trusted root is loaded (it may still have expired: see
    /// `portcullis_trust_expiry_timestamp_seconds`), 0 before the first one.
    pub trust_root_loaded: IntGauge,
    /// When the TUF metadata vouching for the trusted root in force expires (Unix seconds; 0
    /// for a root read from a file, which does not expire as a whole).
    pub trust_expiry: IntGauge,
    /// When the trusted root was last refreshed successfully (Unix seconds).
    pub trust_last_success: IntGauge,
    /// The TUF role versions in force, by role.
    pub trust_tuf_version: IntGaugeVec,
    /// The trusted root in force, as labels (`source`, `revision`) on a gauge set to 1.
    pub trust_root_info: IntGaugeVec,
    /// TUF feed events settled, by registry, action (`add`, `delete`, `index`) and outcome
    /// (`done`, `retried`, `failed`).
    pub tuf_feed_events: IntCounterVec,
    /// TUF feed events queued or submitted and not yet done, by registry.
    pub tuf_feed_open: IntGaugeVec,
    /// TUF feed events set aside as failed (an operator's attention), by registry.
    pub tuf_feed_failed: IntGaugeVec,
    /// Age of the oldest open TUF feed event, by registry (0 when none): how far the signed
    /// metadata lags what the backend committed.
    pub tuf_feed_lag: IntGaugeVec,
    /// 1 on the replica that sends a registry's TUF feed, 0 on the others.
    pub tuf_feed_leader: IntGaugeVec,
    /// Calls to the RSTUF API that failed to get an answer (unreachable, 5xx), by registry.
    pub tuf_feed_unavailable: IntCounterVec,
}

/// Every `outcome` of `portcullis_trust_refreshes_total`.
pub const TRUST_REFRESH_OUTCOMES: [&str; 10] = [
    "updated",
    "unchanged",
    "unreachable",
    "no_cache",
    "expired",
    "rollback",
    "integrity",
    "signature",
    "malformed",
    "invalid_root",
];

fn single_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("valid metric definition");
    registry.register(Box::new(metric.clone())).expect("unique metric name");
    metric
}

fn single_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid metric definition");
    registry.register(Box::new(metric.clone())).expect("unique metric name");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry.register(Box::new(metric.clone())).expect("unique metric name");
    metric
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry.register(Box::new(metric.clone())).expect("unique metric name");
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let metric =
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric definition");
    registry.register(Box::new(metric.clone())).expect("unique metric name");
    metric
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

impl Metrics {
    /// Creates and registers every metric. Panics only on a programming error (duplicate names).
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let registry = Registry::new();
        let size_buckets = prometheus::exponential_buckets(1024.0, 4.0, 12).expect("valid buckets");
        let rules_loaded_at = IntGauge::new(
            "portcullis_rules_loaded_timestamp_seconds",
            "When the current rules were loaded (Unix time).",
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(rules_loaded_at.clone()))
            .expect("unique metric name");
        let reload_duration = Histogram::with_opts(
            HistogramOpts::new(
                "portcullis_rules_reload_duration_seconds",
                "Time to read and compile the rules.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(reload_duration.clone()))
            .expect("unique metric name");
        let metrics = Metrics {
            requests: counter(
                &registry,
                "portcullis_requests_total",
                "Requests answered.",
                &["registry", "method_class", "status"],
            ),
            request_bytes: counter(
                &registry,
                "portcullis_request_body_bytes_total",
                "Request body bytes received from clients.",
                &["registry", "method_class"],
            ),
            upload_size: histogram(
                &registry,
                "portcullis_upload_size_bytes",
                "Upload body sizes.",
                &["registry"],
                size_buckets,
            ),
            upstream_latency: histogram(
                &registry,
                "portcullis_upstream_latency_seconds",
                "Time from request start to the backend's response header.",
                &["registry"],
                LATENCY_BUCKETS.to_vec(),
            ),
            request_duration: histogram(
                &registry,
                "portcullis_request_duration_seconds",
                "Total request time.",
                &["registry", "method_class"],
                LATENCY_BUCKETS.to_vec(),
            ),
            upstream_errors: counter(
                &registry,
                "portcullis_upstream_errors_total",
                "Failures talking to a backend.",
                &["registry", "kind"],
            ),
            decisions: counter(
                &registry,
                "portcullis_decisions_total",
                "Policy decisions.",
                &["registry", "rule", "outcome"],
            ),
            refusals: counter(
                &registry,
                "portcullis_refusals_total",
                "Refusals sent to clients, by stable code.",
                &["registry", "code"],
            ),
            reloads: counter(
                &registry,
                "portcullis_rules_reloads_total",
                "Rules reloads by result.",
                &["result"],
            ),
            rules_loaded_at,
            rules_revision: gauge_vec(
                &registry,
                "portcullis_rules_revision_info",
                "The current rules revision.",
                &["revision"],
            ),
            uploads_in_flight: gauge_vec(
                &registry,
                "portcullis_uploads_in_flight",
                "Uploads in flight.",
                &["registry"],
            ),
            upstream_up: gauge_vec(
                &registry,
                "portcullis_upstream_up",
                "Whether the backend answered the last probe.",
                &["registry"],
            ),
            build_info: gauge_vec(&registry, "portcullis_build_info", "Build information.", &["version"]),
            reload_duration,
            verify_cache: counter(
                &registry,
                "portcullis_verify_cache_lookups_total",
                "Sigstore verification cache lookups by result.",
                &["result"],
            ),
            verify_duration: histogram(
                &registry,
                "portcullis_verify_duration_seconds",
                "Time of uncached Sigstore verifications.",
                &["outcome"],
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                ],
            ),
            exchanges: counter(
                &registry,
                "portcullis_oidc_exchanges_total",
                "Trusted-publishing token exchanges by outcome.",
                &["protocol", "issuer", "registry", "outcome"],
            ),
            exchange_duration: histogram(
                &registry,
                "portcullis_oidc_exchange_duration_seconds",
                "Time of trusted-publishing token exchanges.",
                &["protocol", "outcome"],
                LATENCY_BUCKETS.to_vec(),
            ),
            upload_tokens: counter(
                &registry,
                "portcullis_upload_token_uses_total",
                "Writes that carried a gateway upload token, by outcome.",
                &["registry", "outcome"],
            ),
            legacy_credentials: counter(
                &registry,
                "portcullis_legacy_credential_writes_total",
                "Writes forwarded with the client's own backend credential (legacy mode).",
                &["registry"],
            ),
            provenance: counter(
                &registry,
                "portcullis_provenance_decisions_total",
                "Provenance decisions on uploads.",
                &["registry", "mode", "outcome"],
            ),
            deletions: counter(
                &registry,
                "portcullis_deletion_decisions_total",
                "Deletion-rules decisions on delete, unpublish and yank requests.",
                &["registry", "action", "outcome"],
            ),
            jwks_fetches: counter(
                &registry,
                "portcullis_oidc_jwks_fetches_total",
                "OIDC key-set fetches by outcome (refreshes skipped by the cooldown included).",
                &["outcome"],
            ),
            client_connections: single_gauge(
                &registry,
                "portcullis_client_connections",
                "Client connections the proxy serves now.",
            ),
            client_connections_refused: single_counter(
                &registry,
                "portcullis_client_connections_refused_total",
                "Client connections refused at [client] max_connections.",
            ),
            trust_refreshes: counter(
                &registry,
                "portcullis_trust_refreshes_total",
                "Sigstore trusted-root refreshes by outcome (updated, unchanged, or why it failed).",
                &["outcome"],
            ),
            trust_root_loaded: single_gauge(
                &registry,
                "portcullis_trust_root_loaded",
                "1 while a Sigstore trusted root is loaded, 0 before the first one.",
            ),
            trust_expiry: single_gauge(
                &registry,
                "portcullis_trust_expiry_timestamp_seconds",
                "When the TUF metadata vouching for the trusted root in force expires (0 for a file).",
            ),
            trust_last_success: single_gauge(
                &registry,
                "portcullis_trust_last_success_timestamp_seconds",
                "When the Sigstore trusted root was last refreshed successfully.",
            ),
            trust_tuf_version: gauge_vec(
                &registry,
                "portcullis_trust_tuf_version",
                "The Sigstore TUF role versions in force.",
                &["role"],
            ),
            trust_root_info: gauge_vec(
                &registry,
                "portcullis_trust_root_info",
                "The Sigstore trusted root in force (source and revision as labels).",
                &["source", "revision"],
            ),
            tuf_feed_events: counter(
                &registry,
                "portcullis_tuf_feed_events_total",
                "TUF feed events settled, by registry, action and outcome (done, retried, failed).",
                &["registry", "action", "outcome"],
            ),
            tuf_feed_open: gauge_vec(
                &registry,
                "portcullis_tuf_feed_open_events",
                "TUF feed events queued or submitted and not yet done.",
                &["registry"],
            ),
            tuf_feed_failed: gauge_vec(
                &registry,
                "portcullis_tuf_feed_failed_events",
                "TUF feed events set aside as failed, waiting for an operator.",
                &["registry"],
            ),
            tuf_feed_lag: gauge_vec(
                &registry,
                "portcullis_tuf_feed_lag_seconds",
                "Age of the oldest open TUF feed event (0 when none).",
                &["registry"],
            ),
            tuf_feed_leader: gauge_vec(
                &registry,
                "portcullis_tuf_feed_leader",
                "1 on the replica that sends the registry's TUF feed.",
                &["registry"],
            ),
            tuf_feed_unavailable: counter(
                &registry,
                "portcullis_tuf_feed_unavailable_total",
                "Calls to the RSTUF API or reads from the backend that got no usable answer.",
                &["registry"],
            ),
            registry,
        };
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Every outcome from the start, so that rates and alerts see a series before the first.
        for outcome in TRUST_REFRESH_OUTCOMES {
            metrics.trust_refreshes.with_label_values(&[outcome]);
        }
        metrics
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        buffer
    }

    /// Records a new rules revision as current.
    pub fn set_rules_revision(&self, revision: &str, loaded_at_unix: i64) {
        self.rules_revision.reset();
        self.rules_revision.with_label_values(&[revision]).set(1);
        self.rules_loaded_at.set(loaded_at_unix);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_documented_names() {
        let m = Metrics::new();
        m.requests.with_label_values(&["pypi", "write", "200"]).inc();
        m.set_rules_revision("abc", 7);
        m.set_rules_revision("def", 8);
        let text = String::from_utf8(m.render()).expect("utf-8");
        assert!(
            text.contains("portcullis_requests_total{method_class=\"write\",registry=\"pypi\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("portcullis_rules_revision_info{revision=\"def\"} 1"));
        assert!(!text.contains("revision=\"abc\""), "old revision must be gone");
        assert!(text.contains("portcullis_build_info{version="));
    }
}
