//! Portcullis: an upload gateway in front of a legacy package registry.
//!
//! One request flows: accept (pingora listener) → route and classify ([`protocol`]) →
//! stream, hash and hold back ([`proxy`]) → decide (`portcullis_rules`) → release or reset
//! ([`proxy::holdback`], [`proxy::upstream`]) → record ([`metrics`], decision log).
//! [`build_server`] assembles the pingora server from a validated [`config::Config`].

pub mod admin;
pub mod auth;
pub mod clock;
pub mod config;
pub mod deletion;
pub mod error;
pub mod explain;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod provenance;
pub mod proxy;
pub mod reload;
pub mod sigstore;
pub mod state;
#[cfg(test)]
mod test_fixtures;
pub mod tls;
pub mod trusted_publishing;
pub mod tuf_feed;

use std::sync::Arc;

use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::config::Config;
use crate::health::{HealthProbe, UpstreamHealth};
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::reload::{ReloadService, RulesHandle, RulesLoadError};
use crate::state::{SqliteStore, StatePurger, StateStore};
use crate::trusted_publishing::backend::ProjectProbe;
use crate::trusted_publishing::Exchanger;

/// Why the server could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The rules could not be loaded.
    #[error("loading the rules: {0}")]
    Rules(#[from] RulesLoadError),
    /// pingora refused a listener or setting.
    #[error("setting up the server: {0}")]
    Server(String),
    /// The state store could not be opened.
    #[error("opening the state store: {0}")]
    State(#[from] crate::state::StateError),
    /// Trusted publishing could not be set up (HTTP clients, keys).
    #[error("setting up trusted publishing: {0}")]
    TrustedPublishing(String),
}

/// Options for [`build_server`] that come from the command line rather than the config file.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunOptions {
    /// Take over the listeners of a running instance (pingora graceful upgrade).
    pub upgrade: bool,
}

/// The assembled server and the shared state tests and the admin listener look at.
pub struct Portcullis {
    /// The pingora server, ready for `run_forever`.
    pub server: Server,
    /// The rules in force.
    pub rules: Arc<RulesHandle>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
}

/// Builds the pingora server: the proxy on every public listener, the admin listener, the
/// rules reloader and the backend probe.
pub fn build_server(config: &Config, options: RunOptions) -> Result<Portcullis, BuildError> {
    let metrics = Arc::new(Metrics::new());
    let rules = Arc::new(RulesHandle::load(
        &config.rules,
        config.known_registries(),
        metrics.clone(),
    )?);

    // Everything that can fail or take time is done before `bootstrap`, which (on a graceful
    // upgrade) takes the listeners over from the running process. What must be awaited then
    // (opening the state store, reading the TUF cache) runs on one start-up runtime, gone
    // before pingora starts its own.
    let startup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BuildError::Server(format!("a runtime for the start: {e}")))?;
    let exchanger = Arc::new(build_exchanger(config, metrics.clone(), &startup)?);
    let (trust, trust_refresher) = build_trust(&config.provenance.trust, metrics.clone(), &startup)?;
    drop(startup);

    let mut conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.shutdown_timeout.as_secs()),
        upstream_keepalive_pool_size: config.server.backend_keepalive,
        work_stealing: config.server.work_stealing,
        ..ServerConf::default()
    };
    if let Some(p) = &config.server.pid_file {
        conf.pid_file = p.display().to_string();
    }
    if let Some(p) = &config.server.upgrade_socket {
        conf.upgrade_sock = p.display().to_string();
    }
    let opt = Opt {
        upgrade: options.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let journal = Arc::new(crate::explain::DecisionJournal::new());
    let state = exchanger.state().clone();
    let audit = Arc::new(
        crate::deletion::audit::AuditLog::new(
            state.clone(),
            config.audit.file.clone(),
            config.audit.webhook_url.clone(),
        )
        .map_err(|e| BuildError::Server(format!("opening the audit log {}: {e}", config.audit.file.display())))?,
    );
    let downloads = crate::deletion::downloads::DownloadCounter::new();
    if config.adjustable_clock {
        tracing::warn!(
            "[testing] adjustable_clock is on: the admin listener can move this gateway's clock; never in production"
        );
    }
    let feed_wake = Arc::new(tokio::sync::Notify::new());
    let feeder = crate::tuf_feed::TufFeeder::new(&config.registries, state.clone(), metrics.clone(), feed_wake.clone())
        .map_err(|e| BuildError::Server(e.to_string()))?;
    let gateway = Gateway::new(
        &config.registries,
        rules.clone(),
        metrics.clone(),
        exchanger.clone(),
        config.trusted_publishing.failed_exchange_memory,
        Arc::new(crate::provenance::ProvenanceVerifier {
            cache: crate::provenance::cache::VerificationCache::new(config.provenance.cache, metrics.clone()),
            trust: trust.clone(),
        }),
        crate::proxy::Records {
            journal: journal.clone(),
            audit: audit.clone(),
            downloads: downloads.clone(),
            admin_token: config.admin_token.clone(),
            state: state.clone(),
            feed_wake: feed_wake.clone(),
        },
    );
    let grace = crate::proxy::accept_grace::DEFAULT_ACCEPT_GRACE.min(config.server.grace_period);
    let head_clocks =
        crate::proxy::slow_clients::HeadClocks::new(config.client.header_timeout, config.client.idle_timeout);
    let gateway = gateway.with_client_limits(config.client, head_clocks.clone());
    let connection_gauges = crate::proxy::connection_limit::ConnectionGauges {
        open: metrics.client_connections.clone(),
        refused: metrics.client_connections_refused.clone(),
    };
    let mut proxy = Service::new(
        "portcullis proxy".to_owned(),
        crate::proxy::accept_grace::AcceptGrace::new(
            crate::proxy::connection_limit::ConnectionLimit::new(
                crate::proxy::slow_clients::HeadTimeout::new(
                    pingora::proxy::http_proxy(&server.configuration, gateway),
                    head_clocks,
                ),
                config.client.max_connections,
                connection_gauges,
            ),
            grace,
        ),
    );
    for listener in &config.listeners {
        let endpoint = crate::proxy::listeners::endpoint(listener)
            .map_err(|e| BuildError::Server(format!("TLS listener {}: {e}", listener.address)))?;
        proxy.add_listener(endpoint);
    }

    let health = Arc::new(UpstreamHealth::new(&config.registries));
    let mut admin = Service::new(
        "portcullis admin".to_owned(),
        AdminApp::new(metrics.clone(), rules.clone(), health.clone())
            .with_token_admin(exchanger.clone(), config.admin_token.clone())
            .with_journal(journal)
            .with_audit(audit)
            .with_adjustable_clock(config.adjustable_clock)
            .with_trust(trust.clone(), trust_refresher.as_ref().map(|s| s.task()))
            .with_tuf_feed(crate::admin::FeedAdmin {
                registries: config.registries.iter().filter(|r| r.tuf.is_some()).cloned().collect(),
                state: exchanger.state().clone(),
                wake: feed_wake.clone(),
            }),
    );
    admin.add_tcp(&config.admin_address.to_string());

    let reloader = background_service("rules reloader", ReloadService::new(rules.clone(), &config.rules));
    let probe = background_service(
        "backend probe",
        HealthProbe::new(config.registries.clone(), health, metrics.clone()),
    );

    let purger = background_service("state purger", StatePurger::new(exchanger.state().clone()));
    server.add_service(purger);
    server.add_service(background_service(
        "download counter",
        crate::deletion::downloads::DownloadFlusher::new(downloads, state),
    ));
    server.add_service(proxy);
    server.add_service(admin);
    if let Some(refresher) = trust_refresher {
        server.add_service(refresher);
    }
    server.add_service(reloader);
    server.add_service(probe);
    if let Some(feeder) = feeder {
        server.add_service(background_service("tuf feed", feeder));
    }
    Ok(Portcullis { server, rules, metrics })
}

/// The Sigstore trusted root in force and, for a TUF source, the service that keeps it
/// current; a TUF root is first taken from the cache (no network), so a restart while the
/// repository is down keeps verifying while the cached metadata is valid.
#[allow(clippy::type_complexity)]
fn build_trust(
    settings: &crate::config::TrustSettings,
    metrics: Arc<Metrics>,
    startup: &tokio::runtime::Runtime,
) -> Result<
    (
        Arc<crate::sigstore::TrustHandle>,
        Option<pingora::services::background::GenBackgroundService<crate::sigstore::TrustRefresher>>,
    ),
    BuildError,
> {
    use crate::sigstore::{TrustHandle, TrustRefresher, TrustSource};
    match settings {
        crate::config::TrustSettings::File { path, root } => Ok((
            Arc::new(TrustHandle::from_file(
                path.clone(),
                root.clone(),
                metrics,
                crate::clock::unix_now(),
            )),
            None,
        )),
        crate::config::TrustSettings::Tuf(tuf) => {
            let handle = Arc::new(TrustHandle::new(
                TrustSource::Tuf {
                    repository: tuf.repository.clone(),
                    anchor_source: tuf.anchor_source.clone(),
                    cache_dir: tuf.cache_dir.clone(),
                },
                metrics,
            ));
            let service = background_service("sigstore trust", TrustRefresher::new(handle.clone(), tuf.clone()));
            match startup.block_on(service.task().load_cache()) {
                Ok(_) => {
                    tracing::info!(cache = %tuf.cache_dir.display(), "Sigstore trusted root taken from the TUF cache")
                }
                Err(e) => tracing::info!(
                    cache = %tuf.cache_dir.display(),
                    reason = %e,
                    "no usable TUF cache; the trusted root comes from {} once reached",
                    tuf.repository
                ),
            }
            Ok((handle, Some(service)))
        }
    }
}

/// Opens the state store and builds the trusted-publishing exchanger.
fn build_exchanger(
    config: &Config,
    metrics: Arc<Metrics>,
    runtime: &tokio::runtime::Runtime,
) -> Result<Exchanger, BuildError> {
    // The store is opened (and migrated) once here, on the start-up runtime, so that a broken
    // data directory stops the start; the SQLite store's connection belongs to no runtime
    // (statements run in the caller's thread), so it keeps working from pingora's runtimes
    // after the start-up one is gone.
    let state: Arc<dyn StateStore> = match &config.state_backend {
        crate::config::validated::StateBackend::Sqlite => {
            let store = runtime.block_on(SqliteStore::open(&config.state_dir))?;
            Arc::new(store)
        }
        crate::config::validated::StateBackend::Postgres(settings) => {
            // Connected lazily: a database that is down now does not stop the start; the
            // write path refuses with `state_unavailable` until it is back, and the first
            // call after that (or the purger's housekeeping, every second) migrates it.
            // The migrations are tried now on a pool of their own, closed before the
            // start-up runtime goes (its connections belong to that runtime's reactor).
            let probe = crate::state::PostgresStore::connect_lazy(settings)?;
            match runtime.block_on(probe.ready()) {
                Ok(_) => tracing::info!("state store: PostgreSQL, migrations applied"),
                Err(e @ crate::state::StateError::Corrupt(_)) => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL state store unreachable at start; retrying in the background")
                }
            }
            runtime.block_on(probe.close());
            Arc::new(crate::state::PostgresStore::connect_lazy(settings)?)
        }
    };
    let tp = &config.trusted_publishing;
    let jwks = crate::auth::jwks::JwksCache::new(crate::auth::jwks::JwksSettings {
        timeout: tp.jwks_timeout,
        refresh_cooldown: tp.jwks_refresh_cooldown,
        max_age: tp.jwks_max_age,
        extra_roots_der: tp.extra_roots_der.clone(),
        allow_http: false,
    })
    .map_err(|e| BuildError::TrustedPublishing(e.to_string()))?;
    let tokens = config
        .upload_tokens
        .as_ref()
        .map(|t| t.keys())
        .transpose()
        .map_err(|e| BuildError::TrustedPublishing(e.to_string()))?;
    let probe = ProjectProbe::new(&config.registries, tp.jwks_timeout)
        .map_err(|e| BuildError::TrustedPublishing(e.to_string()))?;
    Ok(Exchanger::new(jwks, tokens, state, probe, metrics))
}
