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
    /// Where durable state (replay records, revocations) lives.
    #[serde(default)]
    pub state: RawState,
    /// Trusted publishing: how OIDC issuers' keys are fetched, and failure memory.
    #[serde(default)]
    pub trusted_publishing: RawTrustedPublishing,
    /// Keys and lifetime of the upload tokens the gateway mints.
    pub upload_tokens: Option<RawUploadTokens>,
    /// Provenance verification: the Sigstore trusted root and the verification cache.
    #[serde(default)]
    pub provenance: RawProvenance,
    /// Where the Sigstore trusted root comes from (default: Sigstore's public-good TUF
    /// repository, kept current).
    pub sigstore: Option<RawSigstore>,
    /// The audit log of upload and deletion decisions.
    #[serde(default)]
    pub audit: RawAudit,
    /// Settings for end-to-end tests only; never set them in production.
    #[serde(default)]
    pub testing: RawTesting,
    /// Time limits on slow clients.
    #[serde(default)]
    pub client: RawClient,
}

/// Limits on clients: a request head must arrive in time, a body must keep coming (slowloris),
/// an idle kept-alive connection is closed, and the number of connections is bounded.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    /// Longest time for a whole request head to arrive from the connection's accept (default
    /// `"30s"`).
    pub header_timeout: Option<String>,
    /// Longest time a kept-alive connection may stay idle: the next request head must be whole
    /// within it of the end of the previous request (default `"30s"`).
    pub idle_timeout: Option<String>,
    /// Most client connections served at once; past it a new connection gets
    /// `503 too_many_connections` and is closed (default 4096).
    pub max_connections: Option<usize>,
    /// Longest wait for one read of a request body (default `"60s"`).
    pub read_timeout: Option<String>,
    /// Least average body rate, per second, enforced once a body has taken longer than
    /// `header_timeout` (default `"1 KiB"`; `"0"` turns it off).
    pub min_body_rate: Option<ByteSize>,
}

/// The audit log: every decision on an upload or a delete-like request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// JSON-lines file the records are appended to (default `audit.jsonl` in the state
    /// directory); they also go to the state store.
    pub file: Option<PathBuf>,
    /// URL that receives a `POST` of each deletion's record (JSON), best effort.
    pub webhook_url: Option<String>,
}

/// Test-only settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTesting {
    /// Let the admin listener move the gateway's clock (`POST /testing/clock`).
    #[serde(default)]
    pub adjustable_clock: bool,
}

/// Where the Sigstore trusted root comes from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigstore {
    /// `"tuf"` (default: kept current from a TUF repository) or `"file"` (air-gapped sites).
    pub trust: Option<String>,
    /// TUF: `"production"` (default) or `"staging"`, the public-good instance whose
    /// repository and initial root (shipped in the binary) are used.
    pub instance: Option<String>,
    /// TUF: the repository's base URL, for a mirror or another repository (default: the
    /// instance's).
    pub repository: Option<String>,
    /// TUF: the initial `root.json` to trust (default: the instance's, shipped in the binary).
    pub root: Option<PathBuf>,
    /// TUF: where verified metadata is cached between runs (default
    /// `<state dir>/sigstore-tuf/<repository host>`).
    pub cache_dir: Option<PathBuf>,
    /// TUF: how often the repository is asked for new metadata (default `"1h"`).
    pub refresh_interval: Option<String>,
    /// TUF: bound on each request to the repository (default `"30s"`).
    pub timeout: Option<String>,
    /// TUF: extra CA certificates (PEM) trusted for an `https` mirror.
    pub ca_file: Option<PathBuf>,
    /// file: the Sigstore `trusted_root.json`.
    pub trusted_root: Option<PathBuf>,
}

/// Provenance verification settings (the policy itself is in the rules).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvenance {
    /// The Sigstore trusted root (JSON), read from a file: the older spelling of
    /// `[sigstore] trust = "file"`, `trusted_root = ...` (not allowed together with `[sigstore]`).
    pub trusted_root: Option<PathBuf>,
    /// How long a verified outcome is cached (default `"1h"`).
    pub cache_ttl: Option<String>,
    /// Approximate memory for cached outcomes (default `"64 MiB"`).
    pub cache_size: Option<ByteSize>,
}

/// The state store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// Data directory of the embedded SQLite store (default `data` beside the config file);
    /// the default audit file lives there with either backend.
    pub dir: Option<PathBuf>,
    /// `"sqlite"` (default: one file in `dir`, one replica) or `"postgres"` (shared by replicas).
    pub backend: Option<String>,
    /// PostgreSQL: file holding the connection string (`postgres://user:password@host/db`).
    pub url_file: Option<PathBuf>,
    /// PostgreSQL: environment variable holding the connection string (instead of `url_file`).
    pub url_env: Option<String>,
    /// PostgreSQL: most connections per replica (default 8).
    pub pool_size: Option<u32>,
    /// PostgreSQL: how long a call waits for a connection before failing (default `"2s"`).
    pub acquire_timeout: Option<String>,
    /// PostgreSQL: server-side limit on one statement (default `"5s"`).
    pub statement_timeout: Option<String>,
}

/// Trusted publishing settings that are not policy (policy lives in the rules).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrustedPublishing {
    /// PEM file of extra CA certificates trusted for issuers' discovery and JWKS (private
    /// issuers such as GitHub Enterprise Server); the system roots are always trusted.
    pub ca_file: Option<PathBuf>,
    /// Timeout of one discovery or JWKS request (default `"5s"`).
    pub jwks_timeout: Option<String>,
    /// Least time between two refreshes of one issuer's keys (default `"60s"`).
    pub jwks_refresh_cooldown: Option<String>,
    /// Keys older than this are refreshed before use (default `"1h"`).
    pub jwks_max_age: Option<String>,
    /// How long a failed npm exchange is remembered to explain the publish that follows
    /// (default `"10m"`).
    pub failed_exchange_memory: Option<String>,
}

/// The upload-token keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUploadTokens {
    /// Id of the key that signs new tokens (it needs a private key).
    pub signing_key: String,
    /// Lifetime of a minted token (default `"15m"`).
    pub lifetime: Option<String>,
    /// Every key that verifies tokens; keep retired keys here (public part is enough) until
    /// the tokens they signed have expired.
    pub keys: Vec<RawTokenKey>,
}

/// One upload-token key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenKey {
    /// Key id, carried in every token it signs.
    pub id: String,
    /// PEM PKCS#8 Ed25519 private key (`portcullis keygen` writes one).
    pub private_key_file: Option<PathBuf>,
    /// PEM Ed25519 public key, for a key that only verifies.
    pub public_key_file: Option<PathBuf>,
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
    /// Idle backend connections kept open for reuse, for all registries together.
    pub backend_keepalive: Option<usize>,
    /// Let an idle proxy thread take ready connections from a busy one (tokio's work-stealing
    /// scheduler); off by default, when each thread serves its own connections in turn.
    pub work_stealing: Option<bool>,
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
    /// File holding the bearer token that admin write endpoints (token revocation) require;
    /// without it those endpoints are off.
    pub token_file: Option<PathBuf>,
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
    /// The backend's own credential, sent in place of the client's on authorised writes.
    pub backend_credentials: Option<RawBackendCredentials>,
    /// What happens to writes that carry a client credential other than a gateway upload
    /// token: `refuse` (default when backend credentials are set) or `pass` (legacy mode:
    /// forwarded unchanged, logged and counted; the default without backend credentials).
    pub client_credentials: Option<ClientCredentials>,
    /// npm: remove the `.sigstore` provenance attachment from publishes before they reach the
    /// backend (the gateway keeps and serves it), for backends that refuse it (Verdaccio 6).
    pub strip_npm_provenance: Option<bool>,
    /// PyPI: the deletion requests the backend serves, decided by the deletion rules:
    /// `"remove_pkg"` (default: pypiserver's `POST :action=remove_pkg` form; every HTTP
    /// `DELETE` is refused) or `"devpi"` (devpi-server's `DELETE /<user>/<index>/<project>` and
    /// `DELETE /<user>/<index>/<project>/<version>` as well).
    pub deletion_api: Option<crate::protocol::pypi::DeletionApi>,
    /// Feed what the backend commits to a Repository Service for TUF (`[registry.tuf]`).
    pub tuf: Option<RawTufFeed>,
}

/// `[registry.tuf]`: every upload the backend commits and every deletion it performs is
/// submitted to an RSTUF API, which signs TUF metadata for it (PEP 458).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTufFeed {
    /// The RSTUF API's base URL (`http://rstuf.internal:80`), without `/api/v1`.
    pub api: String,
    /// The target path of a file, as clients fetch it relative to the registry's root:
    /// `{filename}`, `{project}` and `{version}` are filled in (default `packages/{filename}` for
    /// PyPI, `{project}/-/{filename}` for npm).
    pub target_path: Option<String>,
    /// PyPI: the target path of a project's simple index page, signed after every change
    /// (default `simple/{project}/index.html`, PEP 458's name); `""` signs no pages.
    pub index_path: Option<String>,
    /// A header sent with every API request, for the reverse proxy in front of RSTUF.
    pub header: Option<String>,
    /// File holding that header's value (trailing newline ignored); secret.
    pub header_value_file: Option<PathBuf>,
    /// PEM file with the CA certificates that sign the API's certificate (https only).
    pub ca_file: Option<PathBuf>,
    /// PEM file with a client certificate chain and its private key, for mTLS (https only).
    pub client_identity: Option<PathBuf>,
    /// Most artifacts in one RSTUF task (default 64).
    pub batch: Option<usize>,
    /// Longest wait for one API call (default `"30s"`).
    pub timeout: Option<String>,
    /// How often a submitted task is polled (default `"1s"`).
    pub poll_interval: Option<String>,
    /// How many times RSTUF may report an event failed before it is set aside as failed
    /// (default 5); an unreachable API is retried without limit.
    pub max_attempts: Option<u32>,
    /// How old an upload still pending in the ledger must be before the feed asks the backend
    /// whether it committed it (default `"10m"`; longer than any upload takes).
    pub reconcile_after: Option<String>,
}

/// The backend's credential.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum RawBackendCredentials {
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// File holding the password (trailing newline ignored).
        password_file: PathBuf,
    },
    /// A bearer token.
    Bearer {
        /// File holding the token (trailing newline ignored).
        token_file: PathBuf,
    },
}

/// Policy for client credentials that are not gateway upload tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCredentials {
    /// Forward them unchanged (legacy mode), logged and counted.
    Pass,
    /// Refuse the write.
    Refuse,
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
