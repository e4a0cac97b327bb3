//! The configuration file as written (TOML). These types only deserialize, with
//! `deny_unknown_fields` everywhere; [`super::validated`] turns them into what the gateway uses.

use std::path::PathBuf;

use portcullis_rules::schema::ByteSize;
use portcullis_rules::Protocol;
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Process-wide settings.
    #[serde(default)]
    pub server: RawServer,
    /// Public listeners (at least one).
    #[serde(default, rename = "listener")]
    pub listeners: Vec<RawListener>,
    /// The admin listener.
    #[serde(default)]
    pub admin: RawAdmin,
    /// Where the rules (policy) live.
    pub rules: RawRulesConfig,
    /// Log output.
    #[serde(default)]
    pub logging: RawLogging,
    /// The registries behind the gateway (at least one).
    #[serde(default, rename = "registry")]
    pub registries: Vec<RawRegistry>,
}

/// Process-wide settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Worker threads for the proxy; defaults to the number of CPUs.
    pub threads: Option<usize>,
    /// How long in-flight requests may take to finish after `SIGTERM` (e.g. `"30s"`).
    pub grace_period: Option<String>,
    /// Hard limit for the whole shutdown after the grace period.
    pub shutdown_timeout: Option<String>,
    /// PID file, used by pingora's graceful upgrade.
    pub pid_file: Option<PathBuf>,
    /// Unix socket through which a new process takes over the listeners on graceful upgrade.
    pub upgrade_socket: Option<PathBuf>,
}

/// One public listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// `IP:port` to bind.
    pub address: String,
    /// TLS (rustls) for this listener; plain HTTP when absent.
    pub tls: Option<RawListenerTls>,
}

/// TLS settings of a listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The admin listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `IP:port`; defaults to `127.0.0.1:9090`.
    pub address: Option<String>,
}

/// Where the rules live and how they are reloaded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRulesConfig {
    /// Rules files, compiled together.
    pub files: Vec<PathBuf>,
    /// Reload when a file changes (default true); `SIGHUP` always reloads.
    pub watch: Option<bool>,
    /// Quiet time after a change before reloading (default `"250ms"`).
    pub debounce: Option<String>,
}

/// Log output settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    /// `human` (default) or `json`.
    pub format: Option<LogFormat>,
    /// A `tracing` filter such as `info` or `portcullis=debug,info`.
    pub level: Option<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// One registry behind the gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    /// Unique name, used by the rules, metrics and logs.
    pub name: String,
    /// The protocol the registry speaks.
    pub protocol: Protocol,
    /// Match requests whose `Host` is this name (any host when absent).
    pub host: Option<String>,
    /// Match requests under this path prefix (default `/`); the prefix is stripped upstream.
    pub path_prefix: Option<String>,
    /// Hard limit on any request body (default `"1 GiB"`).
    pub max_body_bytes: Option<ByteSize>,
    /// Where the backend is.
    pub upstream: RawUpstream,
}

/// The backend of a registry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// `host:port` of the backend.
    pub address: String,
    /// Connect with TLS (default false).
    pub tls: Option<bool>,
    /// SNI and certificate name for TLS; defaults to the host part of `address`.
    pub sni: Option<String>,
    /// PEM file with the CA certificates that sign the backend's certificate.
    pub ca_file: Option<PathBuf>,
    /// TCP connect timeout (default `"5s"`).
    pub connect_timeout: Option<String>,
    /// Longest wait for a read from the backend (default `"60s"`).
    pub read_timeout: Option<String>,
    /// Longest wait for a write to the backend (default `"60s"`).
    pub write_timeout: Option<String>,
    /// How long an idle pooled connection is kept (default `"60s"`).
    pub idle_timeout: Option<String>,
    /// How often the readiness probe connects to the backend (default `"5s"`).
    pub health_check_interval: Option<String>,
}
