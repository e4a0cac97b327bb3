//! Portcullis: an upload gateway in front of a legacy package registry.
//!
//! One request flows: accept (pingora listener) → route and classify ([`protocol`]) →
//! stream, hash and hold back ([`proxy`]) → decide (`portcullis_rules`) → release or reset
//! ([`proxy::holdback`], [`proxy::upstream`]) → record ([`metrics`], decision log).
//! [`build_server`] assembles the pingora server from a validated [`config::Config`].

pub mod admin;
pub mod auth;
pub mod config;
pub mod error;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod provenance;
pub mod proxy;
pub mod reload;
pub mod state;
pub mod tls;

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

/// Why the server could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The rules could not be loaded.
    #[error("loading the rules: {0}")]
    Rules(#[from] RulesLoadError),
    /// pingora refused a listener or setting.
    #[error("setting up the server: {0}")]
    Server(String),
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

    let mut conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.shutdown_timeout.as_secs()),
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

    let gateway = Gateway::new(&config.registries, rules.clone(), metrics.clone());
    let mut proxy = pingora::proxy::http_proxy_service_with_name(&server.configuration, gateway, "portcullis proxy");
    for listener in &config.listeners {
        let address = listener.address.to_string();
        match &listener.tls {
            None => proxy.add_tcp(&address),
            Some(tls) => proxy
                .add_tls(
                    &address,
                    &tls.certificate.display().to_string(),
                    &tls.key.display().to_string(),
                )
                .map_err(|e| BuildError::Server(format!("TLS listener {address}: {e}")))?,
        }
    }

    let health = Arc::new(UpstreamHealth::new(&config.registries));
    let mut admin = Service::new(
        "portcullis admin".to_owned(),
        AdminApp::new(metrics.clone(), rules.clone(), health.clone()),
    );
    admin.add_tcp(&config.admin_address.to_string());

    let reloader = background_service("rules reloader", ReloadService::new(rules.clone(), &config.rules));
    let probe = background_service(
        "backend probe",
        HealthProbe::new(config.registries.clone(), health, metrics.clone()),
    );

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(reloader);
    server.add_service(probe);
    Ok(Portcullis { server, rules, metrics })
}
