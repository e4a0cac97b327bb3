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
//! they pass their limit ([`MAX_JWKS_BYTES`](super::jwt::MAX_JWKS_BYTES) for a key set,
//! [`MAX_DISCOVERY_BYTES`] for a discovery document), whatever `Content-Length` says. The client
//! trusts the system roots plus the extra CA certificates of [`JwksSettings::extra_roots_der`]
//! (private issuers such as GitHub Enterprise Server). TLS is rustls on aws-lc-rs.
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
//!
//! The HTTP side (discovery, URL checks, bounded reads of the responses) is in `fetch.rs`; this
//! module has the settings, the errors and the cache with its refresh policy.

mod fetch;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reqwest::{redirect, Certificate, Client};
use tokio::time::Instant;

use super::jwt::{JwkSet, JwksError};
use fetch::error_chain;

/// Largest OIDC discovery document accepted, in bytes.
pub const MAX_DISCOVERY_BYTES: usize = 64 * 1024;
/// Longest foreign string (from a response, or a URL) copied into an error message.
const MAX_ECHO_CHARS: usize = 128;

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
}
