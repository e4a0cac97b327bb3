//! Backend readiness: a background probe that opens a TCP connection to every backend at its
//! configured interval. `/readyz` is ready once the rules are loaded and every backend answered.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::Registry;
use crate::metrics::Metrics;

/// The last probe result of each backend.
pub struct UpstreamHealth {
    up: BTreeMap<String, AtomicBool>,
}

impl UpstreamHealth {
    /// All backends start as not (yet) ready.
    pub fn new(registries: &[Arc<Registry>]) -> Self {
        UpstreamHealth {
            up: registries
                .iter()
                .map(|r| (r.name.clone(), AtomicBool::new(false)))
                .collect(),
        }
    }

    /// Each registry's readiness.
    pub fn snapshot(&self) -> BTreeMap<String, bool> {
        self.up
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
            .collect()
    }

    /// Whether every backend answered its last probe.
    pub fn all_up(&self) -> bool {
        self.up.values().all(|v| v.load(Ordering::Relaxed))
    }

    fn set(&self, registry: &str, up: bool) {
        if let Some(flag) = self.up.get(registry) {
            flag.store(up, Ordering::Relaxed);
        }
    }
}

/// Background service probing the backends.
pub struct HealthProbe {
    registries: Vec<Arc<Registry>>,
    health: Arc<UpstreamHealth>,
    metrics: Arc<Metrics>,
}

impl HealthProbe {
    /// A probe over `registries` that writes into `health`.
    pub fn new(registries: Vec<Arc<Registry>>, health: Arc<UpstreamHealth>, metrics: Arc<Metrics>) -> Self {
        HealthProbe {
            registries,
            health,
            metrics,
        }
    }

    async fn probe(&self, registry: &Registry) {
        let upstream = &registry.upstream;
        let up = matches!(
            tokio::time::timeout(
                upstream.connect_timeout,
                tokio::net::TcpStream::connect(upstream.address)
            )
            .await,
            Ok(Ok(_))
        );
        let was_up = self.health.snapshot().get(&registry.name).copied().unwrap_or(false);
        if was_up != up {
            if up {
                tracing::info!(registry = %registry.name, upstream = %upstream.display, "backend reachable");
            } else {
                tracing::warn!(registry = %registry.name, upstream = %upstream.display, "backend unreachable");
            }
        }
        self.health.set(&registry.name, up);
        self.metrics
            .upstream_up
            .with_label_values(&[&registry.name])
            .set(i64::from(up));
    }
}

#[async_trait]
impl BackgroundService for HealthProbe {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let interval = self
            .registries
            .iter()
            .map(|r| r.upstream.health_check_interval)
            .min()
            .unwrap_or(Duration::from_secs(5));
        // Probe quickly until every backend answered once, then at the configured interval.
        let mut delay = Duration::from_millis(100);
        loop {
            for registry in &self.registries {
                self.probe(registry).await;
            }
            if self.health.all_up() {
                delay = interval;
            } else {
                delay = (delay * 2).min(interval);
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}
