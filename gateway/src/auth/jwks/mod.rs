//! Fetching and caching OIDC issuers' signing keys (JWKS) for trusted publishing: the I/O half
//! of token verification, next to the pure [`jwt`](super::jwt) module.
//!
//! # Fetching
//!
//! An issuer's key set is found by OIDC discovery: `GET {issuer}/.well-known/openid-configuration`,
//! whose `issuer` member must equal the issuer URL exactly (OIDC Discovery 1.0 §4.3) and whose
//! `jwks_uri` must be present, then `GET {jwks_uri}`, parsed with [`JwkSet::from_json`]. An issuer
//! may instead have a pinned JWKS URL, which skips discovery. Every URL must be `https://` (plain
//! `http://` only when [`JwksSettings::allow_http`] is set, for tests); redirects are never
//! followed; each request has a timeout; bodies are read chunk by chunk and abandoned as soon as
//! they pass their limit ([`MAX_JWKS_BYTES`] for a key set, [`MAX_DISCOVERY_BYTES`] for a
//! discovery document), whatever `Content-Length` says. The client trusts the system roots plus
//! the extra CA certificates of [`JwksSettings::extra_roots_der`] (private issuers such as GitHub
//! Enterprise Server). TLS is rustls on aws-lc-rs.
//!
//! # Refresh policy
//!
//! Like Warehouse (PyPI), a key set is refreshed when a token names a `kid` the cached set does
//! not have, at a bounded rate; in addition a set older than [`JwksSettings::max_age`] is
//! refreshed on its next use, so removed (revoked) keys do not stay trusted forever:
//!
//! - a cached set that has the `kid` and is younger than `max_age` is returned without I/O;
//! - otherwise the set is refreshed, at most once per [`JwksSettings::refresh_cooldown`] per
//!   issuer, counted from the last attempt whether it succeeded or not; within the cooldown the
//!   cached set is returned as it is (the caller's [`jwt::verify`](super::jwt::verify) then reports
//!   [`TokenError::UnknownKid`](super::jwt::TokenError::UnknownKid)), or the last error when
//!   there is no set;
//! - concurrent callers for one issuer share one refresh (single flight): the first one fetches,
//!   the others wait for it and use its result;
//! - a failed refresh (network, status, size, discovery or parse error, or an empty key set)
//!   never replaces the last good set: that set is returned, and only an issuer that never had
//!   one gets the error.
//!
//! The cache is keyed by issuer URL and never evicts by itself: its size is bounded because it is
//! only ever asked about issuers the rules trust (the caller maps a token's unverified `iss` to a
//! configured issuer first, and never passes an unknown one). [`JwksCache::forget`] drops an
//! issuer removed from the rules.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT};
use reqwest::{redirect, Certificate, Client, StatusCode, Url};
use serde::Deserialize;
use tokio::time::Instant;

use super::jwt::{JwkSet, JwksError, MAX_JWKS_BYTES};

/// Largest OIDC discovery document accepted, in bytes.
pub const MAX_DISCOVERY_BYTES: usize = 64 * 1024;
/// Longest foreign string (from a response, or a URL) copied into an error message.
const MAX_ECHO_CHARS: usize = 128;
/// The discovery path appended to an issuer URL.
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// How key sets are fetched and how long they are trusted.
#[derive(Clone)]
pub struct JwksSettings {
    /// Timeout of one HTTP request, from connecting to the end of the body.
    pub timeout: Duration,
    /// Smallest interval between two fetch attempts for one issuer.
    pub refresh_cooldown: Duration,
    /// Age after which a cached set is refreshed on its next use even when it has the `kid`.
    pub max_age: Duration,
    /// Extra trusted CA certificates (DER), on top of the system roots.
    pub extra_roots_der: Vec<Vec<u8>>,
    /// Accept `http://` issuer and JWKS URLs. For tests only: never set it in production.
    pub allow_http: bool,
}

impl Default for JwksSettings {
    /// 5 s timeout, 60 s refresh cooldown, 1 h maximum age, system roots only, https only.
    fn default() -> Self {
        JwksSettings {
            timeout: Duration::from_secs(5),
            refresh_cooldown: Duration::from_secs(60),
            max_age: Duration::from_secs(3600),
            extra_roots_der: Vec::new(),
            allow_http: false,
        }
    }
}

impl fmt::Debug for JwksSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksSettings")
            .field("timeout", &self.timeout)
            .field("refresh_cooldown", &self.refresh_cooldown)
            .field("max_age", &self.max_age)
            .field("extra_roots", &self.extra_roots_der.len())
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// Why a key set could not be fetched. Foreign strings (URLs, a discovery document's `issuer`,
/// parser complaints) are shortened to 128 characters; response bodies are never quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksFetchError {
    /// The HTTP client cannot be built (an invalid extra root certificate, no usable roots).
    #[error("the key-set HTTP client cannot be set up: {reason}")]
    Client {
        /// What went wrong.
        reason: String,
    },
    /// An issuer or JWKS URL is not an absolute URL usable as such.
    #[error("{url:?} is not a usable issuer or key-set URL: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A URL is not `https://` (and `http://` is not allowed).
    #[error("refusing to fetch {url:?}: only https:// URLs are allowed")]
    InsecureUrl {
        /// The URL.
        url: String,
    },
    /// The request did not complete within the timeout.
    #[error("the request to {url} timed out")]
    Timeout {
        /// The requested URL.
        url: String,
    },
    /// The request failed: DNS, connection, TLS or protocol error.
    #[error("the request to {url} failed: {reason}")]
    Transport {
        /// The requested URL.
        url: String,
        /// The client's complaint.
        reason: String,
    },
    /// The server answered with a status other than 200 (redirects included: they are never
    /// followed).
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The requested URL.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The body is over its limit.
    #[error("the response from {url} is over the {max}-byte limit")]
    TooLarge {
        /// The requested URL.
        url: String,
        /// The limit.
        max: usize,
    },
    /// The discovery document is not a JSON object with string `issuer` and `jwks_uri`.
    #[error("the discovery document at {url} is not valid: {reason}")]
    InvalidDiscovery {
        /// The discovery URL.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The discovery document's `issuer` is not exactly the issuer URL.
    #[error("the discovery document names issuer {}, not {expected:?}", show_found(.found.as_deref()))]
    IssuerMismatch {
        /// The configured issuer URL.
        expected: String,
        /// The document's `issuer`, when present.
        found: Option<String>,
    },
    /// The discovery document has no `jwks_uri`.
    #[error("the discovery document at {url} has no \"jwks_uri\"")]
    MissingJwksUri {
        /// The discovery URL.
        url: String,
    },
    /// The key set was refused by [`JwkSet::from_json`].
    #[error("the key set at {url} is not acceptable: {}", shorten(&.error.to_string()))]
    Parse {
        /// The JWKS URL.
        url: String,
        /// The parser's error.
        error: JwksError,
    },
    /// The key set has no keys (never cached).
    #[error("the key set at {url} has no keys")]
    EmptySet {
        /// The JWKS URL.
        url: String,
    },
}

impl JwksFetchError {
    /// A short, stable code for logs and metric labels (one of a fixed set).
    pub fn code(&self) -> &'static str {
        match self {
            JwksFetchError::Client { .. } => "client_setup",
            JwksFetchError::InvalidUrl { .. } => "invalid_url",
            JwksFetchError::InsecureUrl { .. } => "insecure_url",
            JwksFetchError::Timeout { .. } => "timeout",
            JwksFetchError::Transport { .. } => "transport",
            JwksFetchError::Status { .. } => "http_status",
            JwksFetchError::TooLarge { .. } => "too_large",
            JwksFetchError::InvalidDiscovery { .. } => "discovery_invalid",
            JwksFetchError::IssuerMismatch { .. } => "discovery_issuer_mismatch",
            JwksFetchError::MissingJwksUri { .. } => "discovery_no_jwks_uri",
            JwksFetchError::Parse { .. } => "jwks_invalid",
            JwksFetchError::EmptySet { .. } => "jwks_empty",
        }
    }
}

fn show_found(found: Option<&str>) -> String {
    found.map_or_else(|| "none".to_owned(), |f| format!("{f:?}"))
}

/// A foreign string, shortened for an error message.
fn shorten(text: &str) -> String {
    super::shorten(text, MAX_ECHO_CHARS)
}

/// Counters for metrics, since the cache was created. The caller exports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JwksStats {
    /// Fetches that produced a usable key set.
    pub fetch_successes: u64,
    /// Fetches that failed (the last good set, if any, was kept).
    pub fetch_failures: u64,
    /// Refreshes that were needed (unknown `kid` or set too old) but skipped by the cooldown.
    pub refreshes_skipped: u64,
    /// Issuers currently in the cache (with a key set or a failed attempt).
    pub issuers: usize,
}

/// A key set and when it was fetched.
struct Cached {
    set: Arc<JwkSet>,
    fetched_at: Instant,
}

/// What is known about one issuer.
#[derive(Default)]
struct State {
    /// The last good key set.
    cached: Option<Cached>,
    /// When the last fetch started.
    last_attempt: Option<Instant>,
    /// Why the last fetch failed, when it did (cleared by a success).
    last_error: Option<JwksFetchError>,
}

impl State {
    /// The cached set, when it has `kid` and is younger than `max_age`.
    fn usable(&self, kid: &str, now: Instant, max_age: Duration) -> Option<Arc<JwkSet>> {
        self.cached
            .as_ref()
            .filter(|c| now.saturating_duration_since(c.fetched_at) < max_age && c.set.get(kid).is_some())
            .map(|c| Arc::clone(&c.set))
    }
}

/// One issuer's entry: its state, and the lock that makes its refreshes single-flight.
#[derive(Default)]
struct Entry {
    state: Mutex<State>,
    refresh: tokio::sync::Mutex<()>,
}

impl Entry {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The OIDC discovery members this module reads (a duplicated one is an error).
#[derive(Deserialize)]
struct Discovery {
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

/// Issuers' key sets, fetched on demand and cached by issuer URL; see the module documentation
/// for the refresh policy. Share one per process (it is `Send + Sync`; wrap it in an `Arc`).
pub struct JwksCache {
    client: Client,
    timeout: Duration,
    refresh_cooldown: Duration,
    max_age: Duration,
    allow_http: bool,
    issuers: Mutex<HashMap<String, Arc<Entry>>>,
    fetch_successes: AtomicU64,
    fetch_failures: AtomicU64,
    refreshes_skipped: AtomicU64,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("timeout", &self.timeout)
            .field("refresh_cooldown", &self.refresh_cooldown)
            .field("max_age", &self.max_age)
            .field("allow_http", &self.allow_http)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// Builds the cache and its HTTP client: system roots plus `settings.extra_roots_der`, no
    /// redirects, `settings.timeout` per request, https only unless `settings.allow_http`.
    pub fn new(settings: JwksSettings) -> Result<Self, JwksFetchError> {
        let mut roots = Vec::with_capacity(settings.extra_roots_der.len());
        for (index, der) in settings.extra_roots_der.iter().enumerate() {
            let cert = Certificate::from_der(der).map_err(|e| JwksFetchError::Client {
                reason: format!("extra root certificate #{index}: {}", error_chain(&e)),
            })?;
            roots.push(cert);
        }
        let client = Client::builder()
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .redirect(redirect::Policy::none())
            .referer(false)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .https_only(!settings.allow_http)
            .tls_certs_merge(roots)
            .build()
            .map_err(|e| JwksFetchError::Client {
                reason: error_chain(&e),
            })?;
        Ok(JwksCache {
            client,
            timeout: settings.timeout,
            refresh_cooldown: settings.refresh_cooldown,
            max_age: settings.max_age,
            allow_http: settings.allow_http,
            issuers: Mutex::new(HashMap::new()),
            fetch_successes: AtomicU64::new(0),
            fetch_failures: AtomicU64::new(0),
            refreshes_skipped: AtomicU64::new(0),
        })
    }

    /// The key set to verify a token of `issuer_url` whose header names `kid`: the cached set
    /// when it has `kid` and is fresh, else a refreshed one (by discovery, or from
    /// `pinned_jwks_url`), at most once per cooldown per issuer. A failed refresh returns the
    /// last good set; `Err` only when the issuer has none. The returned set may still lack `kid`:
    /// [`verify`](super::jwt::verify) then reports an unknown key.
    ///
    /// Only call it for issuers the rules trust: the cache keeps an entry per issuer URL.
    pub async fn key_set(
        &self,
        issuer_url: &str,
        pinned_jwks_url: Option<&str>,
        kid: &str,
    ) -> Result<Arc<JwkSet>, JwksFetchError> {
        let entry = self.entry(issuer_url);
        if let Some(set) = entry.state().usable(kid, Instant::now(), self.max_age) {
            return Ok(set);
        }

        let _single_flight = entry.refresh.lock().await;
        let started = Instant::now();
        {
            let mut state = entry.state();
            // Another caller may have refreshed while this one waited.
            if let Some(set) = state.usable(kid, started, self.max_age) {
                return Ok(set);
            }
            let cooling_down = state
                .last_attempt
                .is_some_and(|at| started.saturating_duration_since(at) < self.refresh_cooldown);
            if cooling_down {
                let answer = match (&state.cached, &state.last_error) {
                    (Some(cached), _) => Some(Ok(Arc::clone(&cached.set))),
                    (None, Some(error)) => Some(Err(error.clone())),
                    (None, None) => None,
                };
                if let Some(answer) = answer {
                    self.refreshes_skipped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(issuer = issuer_url, kid, "key set refresh skipped: cooldown");
                    return answer;
                }
            }
            state.last_attempt = Some(started);
        }

        let result = self.fetch(issuer_url, pinned_jwks_url).await;
        let mut state = entry.state();
        match result {
            Ok(set) => {
                self.fetch_successes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    issuer = issuer_url,
                    keys = set.len(),
                    has_kid = set.get(kid).is_some(),
                    "fetched the issuer's key set"
                );
                let set = Arc::new(set);
                state.cached = Some(Cached {
                    set: Arc::clone(&set),
                    fetched_at: Instant::now(),
                });
                state.last_error = None;
                Ok(set)
            }
            Err(error) => {
                self.fetch_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    issuer = issuer_url,
                    code = error.code(),
                    error = %error,
                    kept_last_good = state.cached.is_some(),
                    "fetching the issuer's key set failed"
                );
                state.last_error = Some(error.clone());
                match &state.cached {
                    Some(cached) => Ok(Arc::clone(&cached.set)),
                    None => Err(error),
                }
            }
        }
    }

    /// Drops everything cached for `issuer_url` (for an issuer removed from the rules). A
    /// refresh in flight for it completes but is not kept.
    pub fn forget(&self, issuer_url: &str) {
        lock(&self.issuers).remove(issuer_url);
    }

    /// The counters since the cache was created, for metrics.
    pub fn stats(&self) -> JwksStats {
        JwksStats {
            fetch_successes: self.fetch_successes.load(Ordering::Relaxed),
            fetch_failures: self.fetch_failures.load(Ordering::Relaxed),
            refreshes_skipped: self.refreshes_skipped.load(Ordering::Relaxed),
            issuers: lock(&self.issuers).len(),
        }
    }

    fn entry(&self, issuer_url: &str) -> Arc<Entry> {
        let mut issuers = lock(&self.issuers);
        if let Some(entry) = issuers.get(issuer_url) {
            return Arc::clone(entry);
        }
        let entry = Arc::new(Entry::default());
        issuers.insert(issuer_url.to_owned(), Arc::clone(&entry));
        entry
    }

    /// One fetch: discovery (unless pinned), then the key set.
    async fn fetch(&self, issuer_url: &str, pinned_jwks_url: Option<&str>) -> Result<JwkSet, JwksFetchError> {
        let jwks_url = match pinned_jwks_url {
            Some(url) => self.checked_url(url)?,
            None => self.discover(issuer_url).await?,
        };
        let body = self.get_limited(&jwks_url, MAX_JWKS_BYTES).await?;
        match JwkSet::from_json(&body) {
            Ok(set) if set.is_empty() => Err(JwksFetchError::EmptySet {
                url: shorten(jwks_url.as_str()),
            }),
            Ok(set) => Ok(set),
            Err(JwksError::Empty) => Err(JwksFetchError::EmptySet {
                url: shorten(jwks_url.as_str()),
            }),
            Err(JwksError::TooLarge { max, .. }) => Err(JwksFetchError::TooLarge {
                url: shorten(jwks_url.as_str()),
                max,
            }),
            Err(error) => Err(JwksFetchError::Parse {
                url: shorten(jwks_url.as_str()),
                error,
            }),
        }
    }

    /// OIDC discovery: the issuer's `jwks_uri`, after checking the document names the issuer.
    async fn discover(&self, issuer_url: &str) -> Result<Url, JwksFetchError> {
        let issuer = self.checked_url(issuer_url)?;
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(JwksFetchError::InvalidUrl {
                url: shorten(issuer_url),
                reason: "an issuer URL has no query or fragment",
            });
        }
        let discovery_url = self.checked_url(&format!("{}{DISCOVERY_PATH}", issuer_url.trim_end_matches('/')))?;
        let body = self.get_limited(&discovery_url, MAX_DISCOVERY_BYTES).await?;
        let invalid = |reason: String| JwksFetchError::InvalidDiscovery {
            url: shorten(discovery_url.as_str()),
            reason: shorten(&reason),
        };
        // serde would also read a struct from a JSON array: only an object is a discovery document.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(invalid("not a JSON object".to_owned()));
        }
        let document: Discovery = serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
        if document.issuer.as_deref() != Some(issuer_url) {
            return Err(JwksFetchError::IssuerMismatch {
                expected: shorten(issuer_url),
                found: document.issuer.as_deref().map(shorten),
            });
        }
        match document.jwks_uri.as_deref() {
            Some(jwks_uri) if !jwks_uri.is_empty() => self.checked_url(jwks_uri),
            _ => Err(JwksFetchError::MissingJwksUri {
                url: shorten(discovery_url.as_str()),
            }),
        }
    }

    /// Parses `text` as an absolute URL with a host, over https (or http when allowed).
    fn checked_url(&self, text: &str) -> Result<Url, JwksFetchError> {
        let url = Url::parse(text).map_err(|_| JwksFetchError::InvalidUrl {
            url: shorten(text),
            reason: "not an absolute URL",
        })?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(JwksFetchError::InsecureUrl { url: shorten(text) }),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(JwksFetchError::InvalidUrl {
                url: shorten(text),
                reason: "the URL has no host",
            });
        }
        Ok(url)
    }

    /// `GET url`, requiring 200 and reading at most `limit` bytes of body: the body is read
    /// chunk by chunk and the response dropped as soon as it passes the limit.
    async fn get_limited(&self, url: &Url, limit: usize) -> Result<Vec<u8>, JwksFetchError> {
        let shown = || shorten(url.as_str());
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                JwksFetchError::Timeout { url: shown() }
            } else {
                JwksFetchError::Transport {
                    url: shown(),
                    reason: error_chain(&e.without_url()),
                }
            }
        };
        let mut response = self
            .client
            .get(url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport)?;
        if response.status() != StatusCode::OK {
            return Err(JwksFetchError::Status {
                url: shown(),
                status: response.status().as_u16(),
            });
        }
        let too_large = || JwksFetchError::TooLarge {
            url: shown(),
            max: limit,
        };
        // A declared length over the limit is refused at once; a smaller one is not trusted.
        if response.content_length().is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if chunk.len() > limit.saturating_sub(body.len()) {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// An error and its sources, `: `-separated, shortened.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    match text.char_indices().nth(4 * MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;
    use std::time::{SystemTime, UNIX_EPOCH};

    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use serde_json::{json, Value};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::auth::jwt::{self, Algorithm, Claims, IssuerKeys, TokenError};

    const AUD: &str = "pypi";
    const DISCOVERY: &str = "/.well-known/openid-configuration";
    const JWKS: &str = "/jwks";

    /// What the test server answers on a path.
    #[derive(Clone)]
    enum Reply {
        /// A status and a body, with `Content-Length`.
        Body(u16, String),
        /// `302 Found` to this location.
        Redirect(String),
        /// `200 OK`, this many bytes, chunked (no `Content-Length`).
        Chunked(usize),
    }

    #[derive(Default)]
    struct ServerState {
        routes: Mutex<HashMap<String, Reply>>,
        hits: Mutex<HashMap<String, usize>>,
        connections: AtomicUsize,
        /// Responses written to the end.
        completed: AtomicUsize,
        /// Pause between reading a request and answering it.
        delay: Mutex<Duration>,
    }

    /// A tiny HTTP/1.1 server on 127.0.0.1 (plain or TLS): one request per connection, answers
    /// from a table, counts connections and requests per path.
    struct Server {
        addr: SocketAddr,
        scheme: &'static str,
        state: Arc<ServerState>,
        task: JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Server {
        async fn start() -> Server {
            Server::start_with(None).await
        }

        async fn start_with(tls: Option<TlsAcceptor>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("local address");
            let state = Arc::new(ServerState::default());
            let scheme = if tls.is_some() { "https" } else { "http" };
            let task = tokio::spawn({
                let state = Arc::clone(&state);
                async move {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        state.connections.fetch_add(1, Ordering::SeqCst);
                        let state = Arc::clone(&state);
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            match tls {
                                Some(acceptor) => {
                                    if let Ok(stream) = acceptor.accept(stream).await {
                                        serve(stream, &state).await;
                                    }
                                }
                                None => serve(stream, &state).await,
                            }
                        });
                    }
                }
            });
            Server {
                addr,
                scheme,
                state,
                task,
            }
        }

        /// The base URL, which is also the issuer URL in these tests.
        fn url(&self) -> String {
            format!("{}://{}", self.scheme, self.addr)
        }

        fn set(&self, path: &str, reply: Reply) {
            lock(&self.state.routes).insert(path.to_owned(), reply);
        }

        fn set_json(&self, path: &str, body: &Value) {
            self.set(path, Reply::Body(200, body.to_string()));
        }

        /// Serves a discovery document for this server as issuer, pointing at `jwks_uri`.
        fn discovery(&self, jwks_uri: &str) {
            self.set_json(DISCOVERY, &json!({"issuer": self.url(), "jwks_uri": jwks_uri}));
        }

        /// Serves discovery and a key set with `keys` on this server.
        fn issuer(&self, keys: &[(&str, &EcdsaKeyPair)]) {
            self.discovery(&format!("{}{JWKS}", self.url()));
            self.set_json(JWKS, &jwks(keys));
        }

        fn set_delay(&self, delay: Duration) {
            *lock(&self.state.delay) = delay;
        }

        fn hits(&self, path: &str) -> usize {
            lock(&self.state.hits).get(path).copied().unwrap_or(0)
        }

        fn connections(&self) -> usize {
            self.state.connections.load(Ordering::SeqCst)
        }
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, state: &ServerState) {
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
            if request.len() > 16 * 1024 {
                return;
            }
        }
        let head = String::from_utf8_lossy(&request);
        let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
        *lock(&state.hits).entry(path.clone()).or_default() += 1;
        let delay = *lock(&state.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let reply = lock(&state.routes)
            .get(&path)
            .cloned()
            .unwrap_or_else(|| Reply::Body(404, "{}".to_owned()));
        let written = match reply {
            Reply::Body(status, body) => {
                let response = format!(
                    "HTTP/1.1 {status} Test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await.is_ok()
            }
            Reply::Redirect(location) => {
                let response = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(response.as_bytes()).await.is_ok()
            }
            Reply::Chunked(total) => write_chunked(&mut stream, total).await.is_ok(),
        };
        if written {
            let _ = stream.flush().await;
            state.completed.fetch_add(1, Ordering::SeqCst);
        }
        let _ = stream.shutdown().await;
    }

    async fn write_chunked<S: AsyncWrite + Unpin>(stream: &mut S, total: usize) -> std::io::Result<()> {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        stream.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 16 * 1024];
        let mut sent = 0;
        while sent < total {
            let len = chunk.len().min(total - sent);
            stream.write_all(format!("{len:x}\r\n").as_bytes()).await?;
            stream.write_all(&chunk[..len]).await?;
            stream.write_all(b"\r\n").await?;
            sent += len;
        }
        stream.write_all(b"0\r\n\r\n").await
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn p256() -> EcdsaKeyPair {
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation")
    }

    /// The public JWK of a P-256 key: the uncompressed point 0x04 || x || y, split.
    fn jwk(kid: &str, key: &EcdsaKeyPair) -> Value {
        let point = key.public_key().as_ref();
        assert_eq!((point.len(), point[0]), (65, 0x04), "uncompressed P-256 point");
        json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..]),
        })
    }

    fn jwks(keys: &[(&str, &EcdsaKeyPair)]) -> Value {
        json!({ "keys": keys.iter().map(|(kid, key)| jwk(kid, key)).collect::<Vec<_>>() })
    }

    fn now() -> i64 {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
        i64::try_from(secs).expect("seconds fit")
    }

    /// An ES256 token from `iss`, signed by `key` under `kid`.
    fn es256_token(iss: &str, kid: &str, key: &EcdsaKeyPair) -> String {
        let header = json!({"typ": "JWT", "alg": "ES256", "kid": kid});
        let now = now();
        let claims = json!({"iss": iss, "aud": AUD, "jti": format!("jti-{kid}"), "iat": now, "exp": now + 300});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = key.sign(&SystemRandom::new(), input.as_bytes()).expect("ES256 signing");
        format!("{input}.{}", b64(signature.as_ref()))
    }

    fn settings() -> JwksSettings {
        JwksSettings {
            timeout: Duration::from_secs(5),
            refresh_cooldown: COOLDOWN,
            max_age: MAX_AGE,
            extra_roots_der: Vec::new(),
            allow_http: true,
        }
    }

    fn new_cache() -> JwksCache {
        JwksCache::new(settings()).expect("cache")
    }

    impl JwksCache {
        /// Moves an issuer's last attempt and fetch time `by` into the past (instead of waiting).
        fn rewind(&self, issuer_url: &str, by: Duration) {
            let entry = self.entry(issuer_url);
            let mut state = entry.state();
            let back = |t: Instant| t.checked_sub(by).expect("the monotonic clock is old enough");
            state.last_attempt = state.last_attempt.map(back);
            if let Some(cached) = &mut state.cached {
                cached.fetched_at = back(cached.fetched_at);
            }
        }
    }

    // Kept short: `rewind` subtracts them from the monotonic clock, which starts at boot.
    const COOLDOWN: Duration = Duration::from_secs(20);
    const MAX_AGE: Duration = Duration::from_secs(40);
    /// Past the cooldown, not the maximum age.
    const PAST_COOLDOWN: Duration = Duration::from_secs(21);
    /// Past both the cooldown and the maximum age.
    const LONG_AGO: Duration = Duration::from_secs(41);

    fn kids(set: &JwkSet) -> Vec<&str> {
        set.kids().collect()
    }

    #[tokio::test]
    async fn discovery_then_key_set_fetch() {
        let server = Server::start().await;
        let (k1, k2) = (p256(), p256());
        server.issuer(&[("k1", &k1), ("k2", &k2)]);
        let cache = new_cache();
        let set = cache.key_set(&server.url(), None, "k1").await.expect("key set");
        assert_eq!(kids(&set), ["k1", "k2"]);
        assert!(set.get("k2").is_some_and(jwt::Jwk::is_usable));
        assert_eq!((server.hits(DISCOVERY), server.hits(JWKS)), (1, 1));
        assert_eq!(
            cache.stats(),
            JwksStats {
                fetch_successes: 1,
                fetch_failures: 0,
                refreshes_skipped: 0,
                issuers: 1
            }
        );
    }

    #[tokio::test]
    async fn a_cached_set_with_the_kid_makes_no_request() {
        let server = Server::start().await;
        let k1 = p256();
        server.issuer(&[("k1", &k1)]);
        let cache = new_cache();
        let first = cache.key_set(&server.url(), None, "k1").await.expect("first");
        for _ in 0..5 {
            let again = cache.key_set(&server.url(), None, "k1").await.expect("cached");
            assert!(Arc::ptr_eq(&first, &again), "the cached set is shared, not re-fetched");
        }
        assert_eq!(
            (server.hits(DISCOVERY), server.hits(JWKS), server.connections()),
            (1, 1, 2)
        );
        assert_eq!(cache.stats().fetch_successes, 1);
    }

    #[tokio::test]
    async fn an_unknown_kid_refreshes_once_and_finds_the_rotated_key() {
        let server = Server::start().await;
        let (old, new) = (p256(), p256());
        server.issuer(&[("old", &old)]);
        let cache = new_cache();
        cache.key_set(&server.url(), None, "old").await.expect("first");
        cache.rewind(&server.url(), PAST_COOLDOWN);
        server.issuer(&[("new", &new)]);
        let set = cache.key_set(&server.url(), None, "new").await.expect("rotated");
        assert_eq!(kids(&set), ["new"]);
        assert_eq!((server.hits(DISCOVERY), server.hits(JWKS)), (2, 2));
        // The new set is now the cached one: no more requests for "new".
        cache.key_set(&server.url(), None, "new").await.expect("cached");
        assert_eq!(server.hits(JWKS), 2);
        assert_eq!(cache.stats().fetch_successes, 2);
    }

    #[tokio::test]
    async fn a_second_unknown_kid_within_the_cooldown_makes_no_request() {
        let server = Server::start().await;
        let (k1, k2) = (p256(), p256());
        server.issuer(&[("k1", &k1)]);
        let cache = new_cache();
        cache.key_set(&server.url(), None, "k1").await.expect("first");
        cache.rewind(&server.url(), PAST_COOLDOWN);
        server.issuer(&[("k1", &k1), ("k2", &k2)]);
        let set = cache.key_set(&server.url(), None, "k2").await.expect("refresh");
        assert_eq!(kids(&set), ["k1", "k2"]);
        assert_eq!(server.hits(JWKS), 2);
        // Two more unknown kids right after: no request, the cached set is returned as it is.
        for kid in ["k3", "k4"] {
            let set = cache.key_set(&server.url(), None, kid).await.expect("cached set");
            assert_eq!(kids(&set), ["k1", "k2"]);
        }
        assert_eq!((server.hits(DISCOVERY), server.hits(JWKS)), (2, 2));
        assert_eq!(cache.stats().refreshes_skipped, 2);
        // Once the cooldown is over, the next unknown kid refreshes again.
        cache.rewind(&server.url(), PAST_COOLDOWN);
        cache.key_set(&server.url(), None, "k3").await.expect("refresh");
        assert_eq!(server.hits(JWKS), 3);
    }

    #[tokio::test]
    async fn max_age_refreshes_a_set_that_has_the_kid() {
        let server = Server::start().await;
        let k1 = p256();
        server.issuer(&[("k1", &k1)]);
        let cache = new_cache();
        cache.key_set(&server.url(), None, "k1").await.expect("first");
        cache.rewind(&server.url(), LONG_AGO);
        cache.key_set(&server.url(), None, "k1").await.expect("refreshed");
        assert_eq!(server.hits(JWKS), 2);
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_last_good_set() {
        let server = Server::start().await;
        let k1 = p256();
        server.issuer(&[("k1", &k1)]);
        let issuer = server.url();
        let cache = new_cache();
        let good = cache.key_set(&issuer, None, "k1").await.expect("first");

        // 500 on the key set.
        server.set(JWKS, Reply::Body(500, "{\"error\": \"oops\"}".to_owned()));
        cache.rewind(&issuer, LONG_AGO);
        let kept = cache.key_set(&issuer, None, "k2").await.expect("last good set");
        assert!(Arc::ptr_eq(&good, &kept));
        assert_eq!(server.hits(JWKS), 2);
        // The stale set still has k1: a too-old set whose refresh fails is still used.
        cache.rewind(&issuer, LONG_AGO);
        assert!(cache
            .key_set(&issuer, None, "k1")
            .await
            .is_ok_and(|s| Arc::ptr_eq(&good, &s)));

        // The issuer goes away entirely.
        drop(server);
        tokio::task::yield_now().await;
        cache.rewind(&issuer, LONG_AGO);
        let kept = cache.key_set(&issuer, None, "k2").await.expect("last good set");
        assert!(Arc::ptr_eq(&good, &kept));
        assert_eq!(cache.stats().fetch_failures, 3);

        // Without a good set, the error comes back, and again (without I/O) within the cooldown.
        let fresh = JwksCache::new(settings()).expect("cache");
        let error = fresh.key_set(&issuer, None, "k1").await.expect_err("unreachable");
        assert_eq!(error.code(), "transport", "{error}");
        let again = fresh.key_set(&issuer, None, "k1").await.expect_err("cooldown");
        assert_eq!(again, error);
        assert_eq!((fresh.stats().fetch_failures, fresh.stats().refreshes_skipped), (1, 1));
    }

    #[tokio::test]
    async fn http_errors_are_reported_when_there_is_no_set() {
        let server = Server::start().await;
        server.discovery(&format!("{}{JWKS}", server.url()));
        server.set(JWKS, Reply::Body(503, "x".repeat(10_000)));
        let error = new_cache().key_set(&server.url(), None, "k1").await.expect_err("503");
        assert!(matches!(error, JwksFetchError::Status { status: 503, .. }), "{error}");
        assert_eq!(error.code(), "http_status");
        assert!(!error.to_string().contains("xxx"), "the body is not quoted: {error}");
        let missing = new_cache()
            .key_set(&format!("{}/nowhere", server.url()), None, "k1")
            .await;
        assert!(matches!(missing, Err(JwksFetchError::Status { status: 404, .. })));
    }

    #[tokio::test]
    async fn a_discovery_issuer_mismatch_is_refused() {
        let server = Server::start().await;
        let k1 = p256();
        server.issuer(&[("k1", &k1)]);
        let jwks_uri = format!("{}{JWKS}", server.url());
        for wrong in [
            json!({"issuer": "https://evil.example", "jwks_uri": jwks_uri}),
            json!({"issuer": format!("{}/", server.url()), "jwks_uri": jwks_uri}),
            json!({"issuer": server.url().to_uppercase(), "jwks_uri": jwks_uri}),
            json!({"jwks_uri": jwks_uri}),
        ] {
            server.set_json(DISCOVERY, &wrong);
            let error = new_cache()
                .key_set(&server.url(), None, "k1")
                .await
                .expect_err("mismatch");
            assert!(
                matches!(error, JwksFetchError::IssuerMismatch { .. }),
                "{wrong}: {error}"
            );
            assert_eq!(error.code(), "discovery_issuer_mismatch");
        }
        server.set_json(DISCOVERY, &json!({"issuer": server.url()}));
        let error = new_cache()
            .key_set(&server.url(), None, "k1")
            .await
            .expect_err("no jwks_uri");
        assert_eq!(error.code(), "discovery_no_jwks_uri");
        for invalid in ["[1]", "not json", "{\"issuer\": 7}"] {
            server.set(DISCOVERY, Reply::Body(200, invalid.to_owned()));
            let error = new_cache()
                .key_set(&server.url(), None, "k1")
                .await
                .expect_err("invalid");
            assert_eq!(error.code(), "discovery_invalid", "{invalid}: {error}");
        }
        assert_eq!(
            server.hits(JWKS),
            0,
            "the key set is never fetched after a bad discovery"
        );
    }

    /// A test CA (DER) and a TLS acceptor with a certificate for 127.0.0.1 signed by it.
    fn test_tls() -> (Vec<u8>, TlsAcceptor) {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "jwks test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("server params")
            .signed_by(&key, &issuer)
            .expect("server certificate");
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
        (ca.der().to_vec(), TlsAcceptor::from(Arc::new(config)))
    }

    #[tokio::test]
    async fn https_with_an_extra_root_and_http_refused_without_allow_http() {
        let (ca_der, acceptor) = test_tls();
        let tls = Server::start_with(Some(acceptor)).await;
        let plain = Server::start().await;
        let k1 = p256();
        tls.issuer(&[("k1", &k1)]);
        plain.issuer(&[("k1", &k1)]);
        let strict = |extra_roots_der: Vec<Vec<u8>>| {
            JwksCache::new(JwksSettings {
                extra_roots_der,
                allow_http: false,
                ..settings()
            })
            .expect("cache")
        };

        // Over https, trusted through the extra root: works.
        let cache = strict(vec![ca_der.clone()]);
        let set = cache.key_set(&tls.url(), None, "k1").await.expect("https key set");
        assert_eq!(kids(&set), ["k1"]);
        // Without the extra root, the test CA is not trusted.
        let error = strict(Vec::new())
            .key_set(&tls.url(), None, "k1")
            .await
            .expect_err("untrusted");
        assert_eq!(error.code(), "transport", "{error}");

        // An http jwks_uri in an https discovery document: refused, never connected to.
        tls.discovery(&format!("{}{JWKS}", plain.url()));
        let error = strict(vec![ca_der.clone()])
            .key_set(&tls.url(), None, "k1")
            .await
            .expect_err("http jwks_uri");
        assert!(matches!(error, JwksFetchError::InsecureUrl { .. }), "{error}");
        assert_eq!(error.code(), "insecure_url");
        // Nor an http issuer or pinned URL.
        let error = cache.key_set(&plain.url(), None, "k1").await.expect_err("http issuer");
        assert_eq!(error.code(), "insecure_url");
        let pinned = format!("{}{JWKS}", plain.url());
        let error = strict(vec![ca_der])
            .key_set(&tls.url(), Some(&pinned), "k1")
            .await
            .expect_err("http pin");
        assert_eq!(error.code(), "insecure_url");
        assert_eq!(plain.connections(), 0, "the client never connects over http");
    }

    #[tokio::test]
    async fn an_oversized_key_set_is_refused_without_reading_it_all() {
        let server = Server::start().await;
        server.discovery(&format!("{}{JWKS}", server.url()));
        // Chunked, no Content-Length, far more than the limit (and than socket buffers).
        server.set(JWKS, Reply::Chunked(64 * 1024 * 1024));
        let error = new_cache()
            .key_set(&server.url(), None, "k1")
            .await
            .expect_err("too large");
        assert_eq!(
            error,
            JwksFetchError::TooLarge {
                url: format!("{}{JWKS}", server.url()),
                max: MAX_JWKS_BYTES
            }
        );
        // Just over the limit is refused too; a declared Content-Length over it at once.
        server.set(JWKS, Reply::Chunked(MAX_JWKS_BYTES + 1));
        let error = new_cache()
            .key_set(&server.url(), None, "k1")
            .await
            .expect_err("too large");
        assert_eq!(error.code(), "too_large");
        server.set(JWKS, Reply::Body(200, " ".repeat(MAX_JWKS_BYTES + 1)));
        let error = new_cache()
            .key_set(&server.url(), None, "k1")
            .await
            .expect_err("too large");
        assert_eq!(error.code(), "too_large");
        // The discovery document has its own, smaller limit.
        server.set(DISCOVERY, Reply::Chunked(MAX_DISCOVERY_BYTES + 1));
        let error = new_cache()
            .key_set(&server.url(), None, "k1")
            .await
            .expect_err("too large");
        assert!(matches!(
            error,
            JwksFetchError::TooLarge {
                max: MAX_DISCOVERY_BYTES,
                ..
            }
        ));
        // The 64 MiB body was never sent to the end: the client hung up.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(server.state.completed.load(Ordering::SeqCst) < server.hits(JWKS) + server.hits(DISCOVERY));
    }

    #[tokio::test]
    async fn an_empty_or_invalid_set_is_never_cached() {
        let server = Server::start().await;
        let k1 = p256();
        server.discovery(&format!("{}{JWKS}", server.url()));
        server.set_json(JWKS, &json!({"keys": []}));
        let cache = new_cache();
        let error = cache.key_set(&server.url(), None, "k1").await.expect_err("empty");
        assert_eq!(error.code(), "jwks_empty");

        server.issuer(&[("k1", &k1)]);
        cache.rewind(&server.url(), LONG_AGO);
        let good = cache.key_set(&server.url(), None, "k1").await.expect("good");

        // An empty or malformed set later does not replace the good one.
        for (bad, code) in [
            (json!({"keys": []}), "jwks_empty"),
            (
                json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}),
                "jwks_invalid",
            ),
            (json!({"keys": "x".repeat(1000)}), "jwks_invalid"),
        ] {
            server.set_json(JWKS, &bad);
            cache.rewind(&server.url(), LONG_AGO);
            let kept = cache.key_set(&server.url(), None, "k2").await.expect("kept");
            assert!(Arc::ptr_eq(&good, &kept));
            let error = new_cache()
                .key_set(&server.url(), None, "k2")
                .await
                .expect_err("refused");
            assert_eq!(error.code(), code, "{error}");
            assert!(error.to_string().chars().count() < 300, "{error}");
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let server = Server::start().await;
        let k1 = p256();
        server.issuer(&[("k1", &k1)]);
        server.set_delay(Duration::from_millis(200));
        let cache = Arc::new(new_cache());
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let cache = Arc::clone(&cache);
                let issuer = server.url();
                tokio::spawn(async move { cache.key_set(&issuer, None, "k1").await })
            })
            .collect();
        for task in tasks {
            let set = task.await.expect("task").expect("key set");
            assert_eq!(kids(&set), ["k1"]);
        }
        assert_eq!((server.hits(DISCOVERY), server.hits(JWKS)), (1, 1));

        // Twenty callers with an unknown kid past the cooldown: one refresh between them.
        cache.rewind(&server.url(), PAST_COOLDOWN);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let cache = Arc::clone(&cache);
                let issuer = server.url();
                tokio::spawn(async move { cache.key_set(&issuer, None, "k9").await })
            })
            .collect();
        for task in tasks {
            assert!(task.await.expect("task").is_ok());
        }
        assert_eq!((server.hits(DISCOVERY), server.hits(JWKS)), (2, 2));
        assert_eq!(cache.stats().fetch_successes, 2);
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let server = Server::start().await;
        let k1 = p256();
        server.issuer(&[("k1", &k1)]);
        server.set(DISCOVERY, Reply::Redirect(format!("{}/elsewhere", server.url())));
        server.set_json(
            "/elsewhere",
            &json!({"issuer": server.url(), "jwks_uri": format!("{}{JWKS}", server.url())}),
        );
        let error = new_cache()
            .key_set(&server.url(), None, "k1")
            .await
            .expect_err("redirect");
        assert!(matches!(error, JwksFetchError::Status { status: 302, .. }), "{error}");
        server.issuer(&[("k1", &k1)]);
        server.set(JWKS, Reply::Redirect(format!("{}/elsewhere", server.url())));
        let error = new_cache()
            .key_set(&server.url(), None, "k1")
            .await
            .expect_err("redirect");
        assert!(matches!(error, JwksFetchError::Status { status: 302, .. }), "{error}");
        assert_eq!(server.hits("/elsewhere"), 0);
    }

    #[tokio::test]
    async fn a_pinned_jwks_url_skips_discovery() {
        let server = Server::start().await;
        let k1 = p256();
        server.set_json("/pinned", &jwks(&[("k1", &k1)]));
        let cache = new_cache();
        let pinned = format!("{}/pinned", server.url());
        let set = cache.key_set(&server.url(), Some(&pinned), "k1").await.expect("pinned");
        assert_eq!(kids(&set), ["k1"]);
        assert_eq!((server.hits(DISCOVERY), server.hits("/pinned")), (0, 1));
    }

    #[tokio::test]
    async fn a_slow_issuer_times_out() {
        let server = Server::start().await;
        let k1 = p256();
        server.issuer(&[("k1", &k1)]);
        server.set_delay(Duration::from_secs(10));
        let cache = JwksCache::new(JwksSettings {
            timeout: Duration::from_millis(300),
            ..settings()
        })
        .expect("cache");
        let started = std::time::Instant::now();
        let error = cache.key_set(&server.url(), None, "k1").await.expect_err("timeout");
        assert_eq!(error.code(), "timeout", "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn forget_drops_the_issuer() {
        let server = Server::start().await;
        let k1 = p256();
        server.issuer(&[("k1", &k1)]);
        let cache = new_cache();
        cache.key_set(&server.url(), None, "k1").await.expect("first");
        assert_eq!(cache.stats().issuers, 1);
        cache.forget(&server.url());
        assert_eq!(cache.stats().issuers, 0);
        cache.key_set(&server.url(), None, "k1").await.expect("fetched again");
        assert_eq!(server.hits(JWKS), 2);
    }

    #[tokio::test]
    async fn cache_and_verify_end_to_end() {
        let server = Server::start().await;
        let (k1, k2) = (p256(), p256());
        server.issuer(&[("k1", &k1)]);
        let cache = new_cache();
        let claims = verify_with(&cache, &es256_token(&server.url(), "k1", &k1))
            .await
            .expect("valid token");
        assert_eq!((claims.iss.as_str(), claims.aud.as_str()), (server.url().as_str(), AUD));

        // The issuer rotates to k2; within the cooldown the new kid is unknown…
        server.issuer(&[("k2", &k2)]);
        let rotated = es256_token(&server.url(), "k2", &k2);
        assert!(matches!(
            verify_with(&cache, &rotated).await,
            Err(TokenError::UnknownKid { .. })
        ));
        // …and after it, one refresh finds it.
        cache.rewind(&server.url(), PAST_COOLDOWN);
        assert!(verify_with(&cache, &rotated).await.is_ok());
        // A token signed by another key under a published kid does not verify.
        let forged = es256_token(&server.url(), "k2", &k1);
        assert_eq!(
            verify_with(&cache, &forged).await.map(|_| ()),
            Err(TokenError::BadSignature)
        );
        assert_eq!(server.hits(JWKS), 2);
    }

    /// What the gateway does with a token: peek at `iss` and `kid`, get the key set, verify.
    async fn verify_with(cache: &JwksCache, token: &str) -> Result<Claims, TokenError> {
        let unverified = jwt::peek(token)?;
        let kid = unverified.kid.unwrap_or_default();
        let jwks = cache.key_set(&unverified.iss, None, &kid).await.expect("key set");
        let issuer = IssuerKeys {
            issuer: unverified.iss,
            audience: AUD.to_owned(),
            algorithms: vec![Algorithm::Es256],
            jwks,
            require_jti: true,
        };
        jwt::verify(token, &issuer, now())
    }

    #[test]
    fn the_key_set_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let cache = JwksCache::new(JwksSettings::default()).expect("cache");
        let future = cache.key_set("https://issuer.example", None, "kid");
        assert_send(&future);
        assert_send(&cache);
    }

    #[test]
    fn error_codes_are_distinct_and_messages_bounded() {
        let long = "u".repeat(1000);
        let errors = [
            JwksFetchError::Client { reason: String::new() },
            JwksFetchError::InvalidUrl {
                url: String::new(),
                reason: "",
            },
            JwksFetchError::InsecureUrl { url: String::new() },
            JwksFetchError::Timeout { url: String::new() },
            JwksFetchError::Transport {
                url: String::new(),
                reason: String::new(),
            },
            JwksFetchError::Status {
                url: String::new(),
                status: 500,
            },
            JwksFetchError::TooLarge {
                url: String::new(),
                max: 0,
            },
            JwksFetchError::InvalidDiscovery {
                url: String::new(),
                reason: String::new(),
            },
            JwksFetchError::IssuerMismatch {
                expected: String::new(),
                found: None,
            },
            JwksFetchError::MissingJwksUri { url: String::new() },
            JwksFetchError::Parse {
                url: String::new(),
                error: JwksError::Json { reason: long.clone() },
            },
            JwksFetchError::EmptySet { url: String::new() },
        ];
        let codes: BTreeSet<&str> = errors.iter().map(JwksFetchError::code).collect();
        assert_eq!(codes.len(), errors.len());
        assert!(codes
            .iter()
            .all(|c| c.len() <= 32 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        let parse = errors[10].to_string();
        assert!(parse.len() < 300 && parse.contains("uuu"), "{parse}");
        assert_eq!(shorten(&long).chars().count(), MAX_ECHO_CHARS + 1);
    }

    #[test]
    fn invalid_extra_roots_fail_construction() {
        let error = JwksCache::new(JwksSettings {
            extra_roots_der: vec![b"not a certificate".to_vec()],
            ..JwksSettings::default()
        })
        .expect_err("invalid root");
        assert_eq!(error.code(), "client_setup");
        assert!(JwksCache::new(JwksSettings::default()).is_ok());
    }
}
