//! Validated configuration: what the gateway runs on. Every value here has been checked, every
//! default applied and every path made absolute, so the hot path never second-guesses it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis_rules::schema::ByteSize;
use portcullis_rules::{KnownRegistry, Protocol};

use super::raw::{self, ClientCredentials, LogFormat};
use super::{ConfigError, Secret};

mod trust;
mod tuf_feed;
pub use trust::TrustSettings;
pub use tuf_feed::TufFeed;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Process-wide settings.
    pub server: Server,
    /// Public listeners.
    pub listeners: Vec<Listener>,
    /// The admin listener's address.
    pub admin_address: SocketAddr,
    /// Rules files and reload settings.
    pub rules: RulesSettings,
    /// Log settings.
    pub logging: Logging,
    /// Registries, most specific route first.
    pub registries: Vec<Arc<Registry>>,
    /// Data directory of the state store (the SQLite file, the default audit file).
    pub state_dir: PathBuf,
    /// Which state store backend holds the shared state.
    pub state_backend: StateBackend,
    /// Trusted publishing settings.
    pub trusted_publishing: TrustedPublishing,
    /// Upload-token keys; trusted publishing exchanges are off without them.
    pub upload_tokens: Option<UploadTokens>,
    /// Bearer token for the admin write endpoints; they are off without it.
    pub admin_token: Option<Secret>,
    /// Provenance verification settings.
    pub provenance: ProvenanceSettings,
    /// The audit log.
    pub audit: AuditSettings,
    /// Whether the admin listener may move the clock (tests only).
    pub adjustable_clock: bool,
    /// Time limits on slow clients.
    pub client: ClientLimits,
}

/// Time limits on slow clients (`[client]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Longest time for a request head to arrive from the accept.
    pub header_timeout: Duration,
    /// Longest idle time of a kept-alive connection: its next head must be whole within it of
    /// the end of the previous request.
    pub idle_timeout: Duration,
    /// Most client connections served at once.
    pub max_connections: usize,
    /// Longest wait for one read of a request body.
    pub read_timeout: Duration,
    /// Least average body rate in bytes per second once a body has taken longer than
    /// `header_timeout`; 0 turns the check off.
    pub min_body_rate: u64,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_connections: 4096,
            read_timeout: Duration::from_secs(60),
            min_body_rate: 1024,
        }
    }
}

/// Which state store the gateway uses.
#[derive(Debug, Clone)]
pub enum StateBackend {
    /// The embedded SQLite file in the state directory (one replica).
    Sqlite,
    /// A PostgreSQL database shared by every replica.
    Postgres(crate::state::PostgresSettings),
}

/// Where audit records go besides the state store.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The JSON-lines file.
    pub file: PathBuf,
    /// Deletion records are posted here, when set (an absolute `http` or `https` URL).
    pub webhook_url: Option<String>,
}

/// Provenance verification settings.
#[derive(Debug, Clone)]
pub struct ProvenanceSettings {
    /// Where the Sigstore trusted root comes from.
    pub trust: TrustSettings,
    /// Verification cache limits.
    pub cache: crate::provenance::cache::CacheSettings,
}

impl Config {
    /// The registries as the rules compiler knows them.
    pub fn known_registries(&self) -> Vec<KnownRegistry> {
        self.registries
            .iter()
            .map(|r| KnownRegistry {
                name: r.name.clone(),
                protocol: r.protocol,
            })
            .collect()
    }
}

/// Trusted publishing settings (the policy itself is in the rules).
#[derive(Debug, Clone)]
pub struct TrustedPublishing {
    /// Extra CA certificates (DER) trusted for discovery and JWKS.
    pub extra_roots_der: Vec<Vec<u8>>,
    /// Timeout of one discovery or JWKS request.
    pub jwks_timeout: Duration,
    /// Least time between two refreshes of one issuer's keys.
    pub jwks_refresh_cooldown: Duration,
    /// Keys older than this are refreshed before use.
    pub jwks_max_age: Duration,
    /// How long a failed npm exchange is remembered.
    pub failed_exchange_memory: Duration,
}

/// Upload-token key material, read and checked at validation.
#[derive(Debug, Clone)]
pub struct UploadTokens {
    /// Id of the signing key.
    pub signing_key: String,
    /// Token lifetime.
    pub lifetime: Duration,
    /// Every key: id, PKCS#8 private PEM and/or public PEM.
    pub keys: Vec<TokenKey>,
}

impl UploadTokens {
    /// The signing and verification keys.
    pub fn keys(&self) -> Result<crate::auth::upload_token::UploadTokenKeys, crate::auth::upload_token::KeyError> {
        use crate::auth::upload_token::{KeyMaterial, UploadTokenKeys};
        let material = self
            .keys
            .iter()
            .map(|k| KeyMaterial {
                id: k.id.clone(),
                private_pkcs8_pem: k.private_pem.as_ref().map(|s| s.expose().to_vec()),
                public_spki_pem: k.public_pem.clone(),
            })
            .collect();
        UploadTokenKeys::new(material, &self.signing_key, self.lifetime)
    }
}

/// One upload-token key as read from its files.
#[derive(Debug, Clone)]
pub struct TokenKey {
    /// Key id.
    pub id: String,
    /// PEM PKCS#8 private key.
    pub private_pem: Option<Secret>,
    /// PEM public key.
    pub public_pem: Option<Vec<u8>>,
}

/// The backend's own credential, sent instead of the client's on authorised writes.
#[derive(Debug, Clone)]
pub enum BackendCredential {
    /// HTTP basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// Bearer token.
    Bearer {
        /// The token.
        token: Secret,
    },
}

impl BackendCredential {
    /// The `Authorization` header value. Never log it.
    pub fn header_value(&self) -> String {
        use base64::Engine as _;
        match self {
            BackendCredential::Basic { username, password } => {
                let mut raw = Vec::with_capacity(username.len() + 1 + password.expose().len());
                raw.extend_from_slice(username.as_bytes());
                raw.push(b':');
                raw.extend_from_slice(password.expose());
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
            }
            BackendCredential::Bearer { token } => {
                format!("Bearer {}", String::from_utf8_lossy(token.expose()))
            }
        }
    }
}

/// Process-wide settings.
///
/// Without work stealing each proxy thread runs its own tokio runtime (pingora's no-steal
/// runtime): a connection stays on the thread that accepted it, and the thread serves its ready
/// connections first come, first served. With it, one runtime's threads share the work, but its
/// per-thread queue holds 256 tasks and the overflow waits behind newer wake-ups, so with
/// thousands of busy connections some requests wait many times the median (bench/README.md,
/// issue 19: p99 at 1 024 clients 4.7x nginx's with stealing, 2.3–3.4x without).
#[derive(Debug, Clone)]
pub struct Server {
    /// Proxy worker threads.
    pub threads: usize,
    /// Grace period for in-flight requests on shutdown.
    pub grace_period: Duration,
    /// Hard shutdown limit after the grace period.
    pub shutdown_timeout: Duration,
    /// PID file for graceful upgrade.
    pub pid_file: Option<PathBuf>,
    /// Socket for listener hand-over on graceful upgrade.
    pub upgrade_socket: Option<PathBuf>,
    /// Idle backend connections kept for reuse (pingora's upstream keep-alive pool).
    pub backend_keepalive: usize,
    /// Whether proxy threads steal ready connections from each other (see [`Server`]'s doc).
    pub work_stealing: bool,
}

/// A public listener.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Bound address.
    pub address: SocketAddr,
    /// TLS material, when the listener speaks HTTPS.
    pub tls: Option<ListenerTls>,
}

/// Certificate and key files for a TLS listener (checked readable at validation).
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Rules files and reload behaviour.
#[derive(Debug, Clone)]
pub struct RulesSettings {
    /// Absolute paths of the rules files.
    pub files: Vec<PathBuf>,
    /// Whether file changes trigger a reload.
    pub watch: bool,
    /// Quiet time before a reload after a change.
    pub debounce: Duration,
}

/// Log settings.
#[derive(Debug, Clone)]
pub struct Logging {
    /// Line format.
    pub format: LogFormat,
    /// `tracing` filter directive.
    pub level: String,
}

/// How requests are matched to a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Lower-case host name to match, without port; any host when `None`.
    pub host: Option<String>,
    /// Path prefix without a trailing slash; empty for the root.
    pub prefix: String,
}

impl Route {
    /// If `host` and `path` fall under this route, the path to send upstream.
    pub fn strip<'p>(&self, host: Option<&str>, path: &'p str) -> Option<&'p str> {
        if let Some(expected) = &self.host {
            if !host.is_some_and(|h| h.eq_ignore_ascii_case(expected)) {
                return None;
            }
        }
        if self.prefix.is_empty() {
            return Some(path);
        }
        let rest = path.strip_prefix(self.prefix.as_str())?;
        if rest.is_empty() {
            Some("/")
        } else if rest.starts_with('/') {
            Some(rest)
        } else {
            None
        }
    }

    /// Ordering key: more specific routes (with a host, longer prefixes) are tried first.
    fn specificity(&self) -> (bool, usize) {
        (self.host.is_some(), self.prefix.len())
    }
}

/// A registry behind the gateway.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Unique name.
    pub name: String,
    /// Protocol it speaks.
    pub protocol: Protocol,
    /// How requests reach it.
    pub route: Route,
    /// Hard limit on request bodies.
    pub max_body_bytes: u64,
    /// Its backend.
    pub upstream: Upstream,
    /// The backend's own credential, for authorised writes.
    pub backend_credential: Option<BackendCredential>,
    /// What happens to writes with a client credential that is not an upload token.
    pub client_credentials: ClientCredentials,
    /// npm: strip the provenance attachment from forwarded publishes.
    pub strip_npm_provenance: bool,
    /// PyPI: the deletion requests the backend serves (devpi's `DELETE`s only when `Devpi`).
    pub pypi_deletion_api: crate::protocol::pypi::DeletionApi,
    /// Where committed uploads and deletions are fed for TUF metadata, if anywhere.
    pub tuf: Option<TufFeed>,
}

/// A registry's backend.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port` as configured (for logs).
    pub display: String,
    /// Resolved address.
    pub address: SocketAddr,
    /// TLS settings, when the backend speaks HTTPS.
    pub tls: Option<UpstreamTls>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Read timeout.
    pub read_timeout: Duration,
    /// Write timeout.
    pub write_timeout: Duration,
    /// Idle pooled connection lifetime.
    pub idle_timeout: Duration,
    /// Readiness probe interval.
    pub health_check_interval: Duration,
}

/// TLS towards a backend.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// SNI and expected certificate name.
    pub sni: String,
    /// DER certificates of the CAs to trust instead of the system roots.
    pub ca_certificates: Option<Arc<Vec<Vec<u8>>>>,
}

const DEFAULT_ADMIN: &str = "127.0.0.1:9090";
const DEFAULT_MAX_BODY: u64 = 1 << 30;
/// Idle backend connections kept by default: as many as a burst of concurrent requests the
/// size of nginx's usual `keepalive 1024` would leave, so such a burst does not reconnect
/// (an idle backend connection has no buffers in pingora, about 1 KiB with its socket).
const DEFAULT_BACKEND_KEEPALIVE: usize = 1024;
const MAX_BACKEND_KEEPALIVE: usize = 65_536;

struct Ctx<'a> {
    file: &'a Path,
    base: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn duration(&self, field: &str, value: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(text) => portcullis_rules::duration::parse(text).map_err(|reason| self.err(field, reason)),
        }
    }

    fn readable(&self, field: &str, path: &Path) -> Result<PathBuf, ConfigError> {
        let path = self.path(path);
        std::fs::metadata(&path).map_err(|e| self.err(field, format!("cannot read {}: {e}", path.display())))?;
        Ok(path)
    }
}

fn socket_addr(ctx: &Ctx<'_>, field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| ctx.err(field, format!("{text:?} is not an IP:port address")))
}

/// Validates a raw configuration read from `file`.
pub fn validate(file: &Path, raw: raw::RawConfig) -> Result<Config, ConfigError> {
    let base = file.parent().unwrap_or(Path::new("."));
    let ctx = Ctx { file, base };

    let threads = raw
        .server
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 || threads > 1024 {
        return Err(ctx.err("server.threads", "must be between 1 and 1024"));
    }
    let backend_keepalive = raw.server.backend_keepalive.unwrap_or(DEFAULT_BACKEND_KEEPALIVE);
    if backend_keepalive == 0 || backend_keepalive > MAX_BACKEND_KEEPALIVE {
        return Err(ctx.err(
            "server.backend_keepalive",
            format!("must be between 1 and {MAX_BACKEND_KEEPALIVE}"),
        ));
    }
    let server = Server {
        threads,
        grace_period: ctx.duration(
            "server.grace_period",
            raw.server.grace_period.as_deref(),
            Duration::from_secs(30),
        )?,
        shutdown_timeout: ctx.duration(
            "server.shutdown_timeout",
            raw.server.shutdown_timeout.as_deref(),
            Duration::from_secs(10),
        )?,
        pid_file: raw.server.pid_file.as_deref().map(|p| ctx.path(p)),
        upgrade_socket: raw.server.upgrade_socket.as_deref().map(|p| ctx.path(p)),
        backend_keepalive,
        work_stealing: raw.server.work_stealing.unwrap_or(false),
    };

    if raw.listeners.is_empty() {
        return Err(ctx.err("listener", "at least one [[listener]] is required"));
    }
    let mut listeners = Vec::with_capacity(raw.listeners.len());
    for (i, l) in raw.listeners.iter().enumerate() {
        let field = format!("listener[{i}]");
        let address = socket_addr(&ctx, &format!("{field}.address"), &l.address)?;
        if listeners.iter().any(|o: &Listener| o.address == address) {
            return Err(ctx.err(format!("{field}.address"), "another listener uses this address"));
        }
        let tls = match &l.tls {
            None => None,
            Some(t) => Some(ListenerTls {
                certificate: ctx.readable(&format!("{field}.tls.certificate"), &t.certificate)?,
                key: ctx.readable(&format!("{field}.tls.key"), &t.key)?,
            }),
        };
        listeners.push(Listener { address, tls });
    }

    let admin_address = socket_addr(
        &ctx,
        "admin.address",
        raw.admin.address.as_deref().unwrap_or(DEFAULT_ADMIN),
    )?;
    let admin_token = match &raw.admin.token_file {
        None => None,
        Some(p) => {
            let path = ctx.readable("admin.token_file", p)?;
            let token = Secret::read(&path, true).map_err(|e| ctx.err("admin.token_file", e.to_string()))?;
            if token.expose().len() < 16 || token.expose_str().is_none_or(|t| t.contains(char::is_whitespace)) {
                return Err(ctx.err(
                    "admin.token_file",
                    "the admin token must be at least 16 characters without spaces",
                ));
            }
            Some(token)
        }
    };
    if listeners.iter().any(|l| l.address == admin_address) {
        return Err(ctx.err(
            "admin.address",
            "the admin listener must not share a public listener's address",
        ));
    }

    if raw.rules.files.is_empty() {
        return Err(ctx.err("rules.files", "at least one rules file is required"));
    }
    let rules = RulesSettings {
        files: raw.rules.files.iter().map(|p| ctx.path(p)).collect(),
        watch: raw.rules.watch.unwrap_or(true),
        debounce: ctx.duration(
            "rules.debounce",
            raw.rules.debounce.as_deref(),
            Duration::from_millis(250),
        )?,
    };

    let logging = Logging {
        format: raw.logging.format.unwrap_or(LogFormat::Human),
        level: raw.logging.level.unwrap_or_else(|| "info".to_owned()),
    };

    if raw.registries.is_empty() {
        return Err(ctx.err("registry", "at least one [[registry]] is required"));
    }
    let mut registries: Vec<Arc<Registry>> = Vec::with_capacity(raw.registries.len());
    for (i, r) in raw.registries.into_iter().enumerate() {
        let registry = validate_registry(&ctx, &format!("registry[{i}]"), r)?;
        if registries.iter().any(|o| o.name == registry.name) {
            return Err(ctx.err(
                format!("registry[{i}].name"),
                format!("duplicate registry name {:?}", registry.name),
            ));
        }
        if let Some(o) = registries.iter().find(|o| o.route == registry.route) {
            return Err(ctx.err(
                format!("registry[{i}]"),
                format!("same host and path prefix as registry {:?}", o.name),
            ));
        }
        registries.push(Arc::new(registry));
    }
    // Most specific first, so routing can take the first match.
    registries.sort_by_key(|r| std::cmp::Reverse(r.route.specificity()));

    let state_dir = ctx.path(raw.state.dir.as_deref().unwrap_or(Path::new("data")));
    let state_backend = validate_state_backend(&ctx, &raw.state)?;
    let trusted_publishing = validate_trusted_publishing(&ctx, &raw.trusted_publishing)?;
    let upload_tokens = raw
        .upload_tokens
        .as_ref()
        .map(|t| validate_upload_tokens(&ctx, t))
        .transpose()?;

    let provenance = validate_provenance(&ctx, &raw.provenance, raw.sigstore.as_ref(), &state_dir)?;
    let audit = AuditSettings {
        file: raw
            .audit
            .file
            .as_deref()
            .map_or_else(|| state_dir.join("audit.jsonl"), |p| ctx.path(p)),
        webhook_url: match &raw.audit.webhook_url {
            None => None,
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => Some(url.clone()),
            Some(_) => return Err(ctx.err("audit.webhook_url", "must be an http:// or https:// URL")),
        },
    };

    Ok(Config {
        path: file.to_path_buf(),
        server,
        listeners,
        admin_address,
        rules,
        logging,
        registries,
        state_dir,
        state_backend,
        trusted_publishing,
        upload_tokens,
        admin_token,
        provenance,
        audit,
        adjustable_clock: raw.testing.adjustable_clock,
        client: validate_client(&ctx, &raw.client)?,
    })
}

fn validate_client(ctx: &Ctx<'_>, raw: &raw::RawClient) -> Result<ClientLimits, ConfigError> {
    let defaults = ClientLimits::default();
    let limits = ClientLimits {
        header_timeout: ctx.duration(
            "client.header_timeout",
            raw.header_timeout.as_deref(),
            defaults.header_timeout,
        )?,
        idle_timeout: ctx.duration(
            "client.idle_timeout",
            raw.idle_timeout.as_deref(),
            defaults.idle_timeout,
        )?,
        max_connections: raw.max_connections.unwrap_or(defaults.max_connections),
        read_timeout: ctx.duration(
            "client.read_timeout",
            raw.read_timeout.as_deref(),
            defaults.read_timeout,
        )?,
        min_body_rate: raw.min_body_rate.map_or(defaults.min_body_rate, |ByteSize(b)| b),
    };
    for (field, value) in [
        ("client.header_timeout", limits.header_timeout),
        ("client.idle_timeout", limits.idle_timeout),
        ("client.read_timeout", limits.read_timeout),
    ] {
        if value.is_zero() {
            return Err(ctx.err(field, "must be greater than zero"));
        }
    }
    if limits.max_connections == 0 {
        return Err(ctx.err("client.max_connections", "must be at least 1"));
    }
    Ok(limits)
}

const DEFAULT_PG_POOL: u32 = 8;
const MAX_PG_POOL: u32 = 256;
const DEFAULT_PG_ACQUIRE: Duration = Duration::from_secs(2);
const DEFAULT_PG_STATEMENT: Duration = Duration::from_secs(5);

fn validate_state_backend(ctx: &Ctx<'_>, raw: &raw::RawState) -> Result<StateBackend, ConfigError> {
    match raw.backend.as_deref().unwrap_or("sqlite") {
        "sqlite" => {
            let postgres_only = [
                ("state.url_file", raw.url_file.is_some()),
                ("state.url_env", raw.url_env.is_some()),
                ("state.pool_size", raw.pool_size.is_some()),
                ("state.acquire_timeout", raw.acquire_timeout.is_some()),
                ("state.statement_timeout", raw.statement_timeout.is_some()),
            ];
            match postgres_only.iter().find(|(_, set)| *set) {
                Some((field, _)) => Err(ctx.err(*field, "only allowed with state.backend = \"postgres\"")),
                None => Ok(StateBackend::Sqlite),
            }
        }
        "postgres" => {
            let url = match (&raw.url_file, &raw.url_env) {
                (Some(path), None) => {
                    let path = ctx.readable("state.url_file", path)?;
                    let secret = Secret::read(&path, true).map_err(|e| ctx.err("state.url_file", e.to_string()))?;
                    secret
                        .expose_str()
                        .map(|s| s.trim().to_owned())
                        .ok_or_else(|| ctx.err("state.url_file", "the connection string is not UTF-8"))?
                }
                (None, Some(var)) => std::env::var(var)
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| ctx.err("state.url_env", format!("environment variable {var} is not set")))?,
                (Some(_), Some(_)) => {
                    return Err(ctx.err("state.url_env", "set state.url_file or state.url_env, not both"))
                }
                (None, None) => {
                    return Err(ctx.err(
                        "state.url_file",
                        "backend \"postgres\" needs the connection string: set state.url_file or state.url_env",
                    ))
                }
            };
            let field = if raw.url_file.is_some() {
                "state.url_file"
            } else {
                "state.url_env"
            };
            if url.is_empty() {
                return Err(ctx.err(field, "the connection string is empty"));
            }
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                // The value itself is never repeated: it holds a password.
                return Err(ctx.err(
                    field,
                    "the connection string must start with postgres:// or postgresql://",
                ));
            }
            let pool_size = raw.pool_size.unwrap_or(DEFAULT_PG_POOL);
            if pool_size == 0 || pool_size > MAX_PG_POOL {
                return Err(ctx.err("state.pool_size", format!("must be between 1 and {MAX_PG_POOL}")));
            }
            let acquire_timeout = ctx.duration(
                "state.acquire_timeout",
                raw.acquire_timeout.as_deref(),
                DEFAULT_PG_ACQUIRE,
            )?;
            let statement_timeout = ctx.duration(
                "state.statement_timeout",
                raw.statement_timeout.as_deref(),
                DEFAULT_PG_STATEMENT,
            )?;
            for (name, value) in [
                ("state.acquire_timeout", acquire_timeout),
                ("state.statement_timeout", statement_timeout),
            ] {
                if value.is_zero() {
                    return Err(ctx.err(name, "must be longer than zero"));
                }
            }
            let settings = crate::state::PostgresSettings {
                url,
                pool_size,
                acquire_timeout,
                statement_timeout,
            };
            crate::state::PostgresStore::connect_lazy(&settings).map_err(|e| ctx.err(field, e.to_string()))?;
            Ok(StateBackend::Postgres(settings))
        }
        other => Err(ctx.err(
            "state.backend",
            format!("unknown backend {other:?}: \"sqlite\" or \"postgres\""),
        )),
    }
}

fn validate_provenance(
    ctx: &Ctx<'_>,
    raw: &raw::RawProvenance,
    sigstore: Option<&raw::RawSigstore>,
    state_dir: &Path,
) -> Result<ProvenanceSettings, ConfigError> {
    let trust = trust::validate(ctx, raw, sigstore, state_dir)?;
    let defaults = crate::provenance::cache::CacheSettings::default();
    let cache = crate::provenance::cache::CacheSettings {
        max_weight: raw.cache_size.map_or(defaults.max_weight, |ByteSize(b)| b),
        ttl: ctx.duration("provenance.cache_ttl", raw.cache_ttl.as_deref(), defaults.ttl)?,
        refusal_ttl: defaults.refusal_ttl,
    };
    Ok(ProvenanceSettings { trust, cache })
}

fn validate_trusted_publishing(
    ctx: &Ctx<'_>,
    raw: &raw::RawTrustedPublishing,
) -> Result<TrustedPublishing, ConfigError> {
    let extra_roots_der = match &raw.ca_file {
        None => Vec::new(),
        Some(p) => {
            let path = ctx.readable("trusted_publishing.ca_file", p)?;
            crate::tls::read_pem_certificates(&path)
                .map_err(|e| ctx.err("trusted_publishing.ca_file", e.to_string()))?
        }
    };
    let bounded = |field: &str, value: Option<&str>, default: Duration, max: Duration| {
        let d = ctx.duration(&format!("trusted_publishing.{field}"), value, default)?;
        if d > max {
            return Err(ctx.err(
                format!("trusted_publishing.{field}"),
                format!("must be at most {}s", max.as_secs()),
            ));
        }
        Ok(d)
    };
    let jwks_timeout = bounded(
        "jwks_timeout",
        raw.jwks_timeout.as_deref(),
        Duration::from_secs(5),
        Duration::from_secs(60),
    )?;
    if jwks_timeout.is_zero() {
        return Err(ctx.err("trusted_publishing.jwks_timeout", "must be greater than zero"));
    }
    Ok(TrustedPublishing {
        extra_roots_der,
        jwks_timeout,
        jwks_refresh_cooldown: bounded(
            "jwks_refresh_cooldown",
            raw.jwks_refresh_cooldown.as_deref(),
            Duration::from_secs(60),
            Duration::from_secs(3600),
        )?,
        jwks_max_age: bounded(
            "jwks_max_age",
            raw.jwks_max_age.as_deref(),
            Duration::from_secs(3600),
            Duration::from_secs(7 * 24 * 3600),
        )?,
        failed_exchange_memory: bounded(
            "failed_exchange_memory",
            raw.failed_exchange_memory.as_deref(),
            Duration::from_secs(600),
            Duration::from_secs(24 * 3600),
        )?,
    })
}

fn validate_upload_tokens(ctx: &Ctx<'_>, raw: &raw::RawUploadTokens) -> Result<UploadTokens, ConfigError> {
    let lifetime = ctx.duration(
        "upload_tokens.lifetime",
        raw.lifetime.as_deref(),
        Duration::from_secs(15 * 60),
    )?;
    let mut keys = Vec::with_capacity(raw.keys.len());
    for (i, k) in raw.keys.iter().enumerate() {
        let field = format!("upload_tokens.keys[{i}]");
        let private_pem = match &k.private_key_file {
            None => None,
            Some(p) => {
                let path = ctx.readable(&format!("{field}.private_key_file"), p)?;
                Some(
                    Secret::read(&path, false)
                        .map_err(|e| ctx.err(format!("{field}.private_key_file"), e.to_string()))?,
                )
            }
        };
        let public_pem = match &k.public_key_file {
            None => None,
            Some(p) => {
                let path = ctx.readable(&format!("{field}.public_key_file"), p)?;
                Some(std::fs::read(&path).map_err(|e| ctx.err(format!("{field}.public_key_file"), e.to_string()))?)
            }
        };
        if private_pem.is_none() && public_pem.is_none() {
            return Err(ctx.err(field, "give private_key_file or public_key_file"));
        }
        keys.push(TokenKey {
            id: k.id.clone(),
            private_pem,
            public_pem,
        });
    }
    let tokens = UploadTokens {
        signing_key: raw.signing_key.clone(),
        lifetime,
        keys,
    };
    // Build the key set once now so a bad key fails validation, not the first exchange.
    tokens.keys().map_err(|e| ctx.err("upload_tokens", e.to_string()))?;
    Ok(tokens)
}

fn validate_registry(ctx: &Ctx<'_>, field: &str, raw: raw::RawRegistry) -> Result<Registry, ConfigError> {
    let name_ok = !raw.name.is_empty()
        && raw.name.len() <= 64
        && raw
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'));
    if !name_ok {
        return Err(ctx.err(
            format!("{field}.name"),
            "must be 1 to 64 characters of a-z, 0-9, '-' or '_'",
        ));
    }
    let host = match raw.host {
        None => None,
        Some(h) => {
            let h = h.to_ascii_lowercase();
            if h.is_empty() || h.contains(['/', ':', ' ']) {
                return Err(ctx.err(format!("{field}.host"), "must be a bare host name without port or path"));
            }
            Some(h)
        }
    };
    let prefix = raw.path_prefix.unwrap_or_else(|| "/".to_owned());
    if !prefix.starts_with('/')
        || prefix.contains("//")
        || prefix.split('/').any(|s| s == "." || s == "..")
        || prefix.contains(['?', '#', '%', ' '])
    {
        return Err(ctx.err(
            format!("{field}.path_prefix"),
            "must be an absolute path such as \"/pypi\" without '.', '..', '%', '?' or '#'",
        ));
    }
    let prefix = prefix.trim_end_matches('/').to_owned();
    let max_body_bytes = raw.max_body_bytes.map_or(DEFAULT_MAX_BODY, |ByteSize(b)| b);
    if max_body_bytes == 0 {
        return Err(ctx.err(format!("{field}.max_body_bytes"), "must be greater than zero"));
    }
    let upstream = validate_upstream(ctx, &format!("{field}.upstream"), raw.upstream)?;
    let backend_credential = match raw.backend_credentials {
        None => None,
        Some(raw::RawBackendCredentials::Basic {
            username,
            password_file,
        }) => {
            if username.is_empty() || username.contains(':') {
                return Err(ctx.err(
                    format!("{field}.backend_credentials.username"),
                    "must be non-empty without ':'",
                ));
            }
            let path = ctx.readable(&format!("{field}.backend_credentials.password_file"), &password_file)?;
            let password = Secret::read(&path, true)
                .map_err(|e| ctx.err(format!("{field}.backend_credentials.password_file"), e.to_string()))?;
            Some(BackendCredential::Basic { username, password })
        }
        Some(raw::RawBackendCredentials::Bearer { token_file }) => {
            let path = ctx.readable(&format!("{field}.backend_credentials.token_file"), &token_file)?;
            let token = Secret::read(&path, true)
                .map_err(|e| ctx.err(format!("{field}.backend_credentials.token_file"), e.to_string()))?;
            let printable = token.expose().iter().all(|b| b.is_ascii_graphic());
            if token.expose().is_empty() || !printable {
                return Err(ctx.err(
                    format!("{field}.backend_credentials.token_file"),
                    "the token must be printable ASCII without spaces",
                ));
            }
            Some(BackendCredential::Bearer { token })
        }
    };
    let client_credentials = match (raw.client_credentials, &backend_credential) {
        (Some(mode), _) => mode,
        (None, Some(_)) => ClientCredentials::Refuse,
        (None, None) => ClientCredentials::Pass,
    };
    if client_credentials == ClientCredentials::Refuse && backend_credential.is_none() {
        return Err(ctx.err(
            format!("{field}.client_credentials"),
            "\"refuse\" needs backend_credentials: the gateway must have a credential to send instead",
        ));
    }
    if raw.strip_npm_provenance.is_some() && raw.protocol != Protocol::Npm {
        return Err(ctx.err(
            format!("{field}.strip_npm_provenance"),
            "applies to npm registries only",
        ));
    }
    if raw.deletion_api.is_some() && raw.protocol != Protocol::Pypi {
        return Err(ctx.err(format!("{field}.deletion_api"), "applies to PyPI registries only"));
    }
    let tuf = match raw.tuf {
        None => None,
        Some(feed) => Some(tuf_feed::validate(ctx, &format!("{field}.tuf"), raw.protocol, feed)?),
    };
    Ok(Registry {
        name: raw.name,
        protocol: raw.protocol,
        route: Route { host, prefix },
        max_body_bytes,
        upstream,
        backend_credential,
        client_credentials,
        strip_npm_provenance: raw.strip_npm_provenance.unwrap_or(false),
        pypi_deletion_api: raw.deletion_api.unwrap_or_default(),
        tuf,
    })
}

fn validate_upstream(ctx: &Ctx<'_>, field: &str, raw: raw::RawUpstream) -> Result<Upstream, ConfigError> {
    let address = raw
        .address
        .to_socket_addrs()
        .map_err(|e| {
            ctx.err(
                format!("{field}.address"),
                format!("{:?} does not resolve: {e}", raw.address),
            )
        })?
        .next()
        .ok_or_else(|| {
            ctx.err(
                format!("{field}.address"),
                format!("{:?} resolves to nothing", raw.address),
            )
        })?;
    let host_part = raw
        .address
        .rsplit_once(':')
        .map_or(raw.address.as_str(), |(h, _)| h)
        .trim_matches(['[', ']'])
        .to_owned();
    let tls = if raw.tls.unwrap_or(false) {
        let ca_certificates = match &raw.ca_file {
            None => None,
            Some(p) => {
                let path = ctx.readable(&format!("{field}.ca_file"), p)?;
                let certs = crate::tls::read_pem_certificates(&path)
                    .map_err(|e| ctx.err(format!("{field}.ca_file"), e.to_string()))?;
                Some(Arc::new(certs))
            }
        };
        Some(UpstreamTls {
            sni: raw.sni.unwrap_or(host_part),
            ca_certificates,
        })
    } else {
        if raw.sni.is_some() || raw.ca_file.is_some() {
            return Err(ctx.err(field, "sni and ca_file need tls = true"));
        }
        None
    };
    Ok(Upstream {
        display: raw.address.clone(),
        address,
        tls,
        connect_timeout: ctx.duration(
            &format!("{field}.connect_timeout"),
            raw.connect_timeout.as_deref(),
            Duration::from_secs(5),
        )?,
        read_timeout: ctx.duration(
            &format!("{field}.read_timeout"),
            raw.read_timeout.as_deref(),
            Duration::from_secs(60),
        )?,
        write_timeout: ctx.duration(
            &format!("{field}.write_timeout"),
            raw.write_timeout.as_deref(),
            Duration::from_secs(60),
        )?,
        idle_timeout: ctx.duration(
            &format!("{field}.idle_timeout"),
            raw.idle_timeout.as_deref(),
            Duration::from_secs(60),
        )?,
        health_check_interval: ctx.duration(
            &format!("{field}.health_check_interval"),
            raw.health_check_interval.as_deref(),
            Duration::from_secs(5),
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_strip_prefixes_on_segment_boundaries() {
        let r = Route {
            host: None,
            prefix: "/pypi".into(),
        };
        assert_eq!(r.strip(None, "/pypi/simple/"), Some("/simple/"));
        assert_eq!(r.strip(None, "/pypi"), Some("/"));
        assert_eq!(r.strip(None, "/pypix/simple"), None);
        let root = Route {
            host: Some("npm.example".into()),
            prefix: String::new(),
        };
        assert_eq!(root.strip(Some("NPM.example"), "/left-pad"), Some("/left-pad"));
        assert_eq!(root.strip(Some("other"), "/left-pad"), None);
        assert_eq!(root.strip(None, "/left-pad"), None);
    }
}
