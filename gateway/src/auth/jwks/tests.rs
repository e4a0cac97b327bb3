//! Tests of the key-set cache against a local HTTPS server: discovery, pinned URLs, limits,
//! refusals, the refresh policy and single flight.

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
use crate::auth::jwt::{self, Algorithm, Claims, IssuerKeys, TokenError, MAX_JWKS_BYTES};

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
            let response =
                format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
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
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
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
