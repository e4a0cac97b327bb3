//! A local OIDC issuer standing in for a CI provider (GitHub Actions, GitLab CI, ...), and a
//! stand-in for GitHub's ID-token request endpoint (what `ACTIONS_ID_TOKEN_REQUEST_URL` points
//! at).
//!
//! [`Issuer`] serves the discovery document and the JWKS over HTTPS (rustls; its test CA is
//! written to `dir/oidc-ca.pem` so the gateway can be told to trust it). It holds an RSA 2048
//! key (`rsa-1`, RS256) and an EC P-256 key (`ec-1`, ES256) made with aws-lc-rs, and signs
//! whatever token a test asks for, broken ones included: `alg: none`, HS256 keyed with the RSA
//! public key's PEM (the RS/HS confusion attack), kids that are not in the JWKS.
//! [`CiTokenEndpoint`] hands out tokens the way GitHub's runner service does, so real clients
//! (the npm CLI, PyPA `id`) obtain them when run with [`env_for_github_actions`];
//! [`env_for_gitlab_ci`] is GitLab's equivalent, where the job gets its token in a variable.
//!
//! Both servers listen on 127.0.0.1 with an ephemeral port, answer one request per connection
//! (`Connection: close`), bound every read and write, and stop accepting when dropped.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaEncoding, RsaKeyPair};
use base64::Engine;
use serde_json::{json, Map, Value};

/// How long a connection may stay silent before its thread gives up.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head either server reads.
const MAX_HEAD: usize = 64 * 1024;
/// Lifetime of the tokens made by the claims helpers and the CI endpoint, in seconds.
const TOKEN_LIFETIME: u64 = 300;

/// What to sign: the header's `alg` and `kid`, the claims, and extra header fields.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// The header's `alg`. `RS256`/`RS384`/`RS512`/`PS256`/`PS384`/`PS512` sign with an RSA
    /// key, `ES256` with the EC key, `HS256`/`HS384`/`HS512` with HMAC keyed by the RSA key's
    /// public PEM (the RS/HS confusion attack), `none` leaves the signature empty. Any other
    /// value is written to the header as is and signed RS256, so only the header is wrong.
    pub alg: String,
    /// The header's `kid` (absent when `None`). It picks the signing key of the algorithm's
    /// type; a kid the issuer does not have (or one of the other type) signs with the first
    /// key of that type still in the JWKS (`rsa-1` / `ec-1` unless removed).
    pub kid: Option<String>,
    /// The payload.
    pub claims: Value,
    /// Header fields added after `alg`, `typ` and `kid` (and replacing them when named alike).
    pub extra_header: Map<String, Value>,
}

impl TokenSpec {
    /// RS256 with the issuer's first RSA key (`rsa-1`).
    pub fn rs256(claims: Value) -> TokenSpec {
        TokenSpec::new("RS256", Some("rsa-1"), claims)
    }

    /// ES256 with the issuer's EC P-256 key (`ec-1`).
    pub fn es256(claims: Value) -> TokenSpec {
        TokenSpec::new("ES256", Some("ec-1"), claims)
    }

    /// Any `alg` and `kid`, no extra header fields.
    pub fn new(alg: &str, kid: Option<&str>, claims: Value) -> TokenSpec {
        TokenSpec {
            alg: alg.to_owned(),
            kid: kid.map(str::to_owned),
            claims,
            extra_header: Map::new(),
        }
    }
}

/// One RSA signing key and its public parts.
struct RsaKey {
    kid: String,
    pair: RsaKeyPair,
    /// Modulus, big-endian without leading zeros.
    n: Vec<u8>,
    /// Public exponent, big-endian without leading zeros.
    e: Vec<u8>,
    /// The SubjectPublicKeyInfo as PEM (`-----BEGIN PUBLIC KEY-----`).
    spki_pem: String,
    /// Served in the JWKS.
    published: bool,
}

impl RsaKey {
    fn generate(kid: &str) -> RsaKey {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("generate an RSA 2048 key");
        let (n, e) = rsa_components(pair.public_key().as_ref()).expect("PKCS#1 RSAPublicKey DER");
        let spki = pair.public_key().as_der().expect("RSA public key as SPKI DER");
        RsaKey {
            kid: kid.to_owned(),
            n,
            e,
            spki_pem: pem("PUBLIC KEY", spki.as_ref()),
            pair,
            published: true,
        }
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "kid": self.kid,
            "alg": "RS256",
            "use": "sig",
            "n": b64url(&self.n),
            "e": b64url(&self.e),
        })
    }

    fn sign(&self, encoding: &'static dyn RsaEncoding, input: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(encoding, &aws_lc_rs::rand::SystemRandom::new(), input, &mut out)
            .expect("RSA signature");
        out
    }
}

/// One EC P-256 signing key and its public point.
struct EcKey {
    kid: String,
    pair: EcdsaKeyPair,
    x: Vec<u8>,
    y: Vec<u8>,
    published: bool,
}

impl EcKey {
    fn generate(kid: &str) -> EcKey {
        let pair =
            EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("generate an EC P-256 key");
        let point = pair.public_key().as_ref();
        assert!(point.len() == 65 && point[0] == 4, "uncompressed P-256 point expected");
        let (x, y) = (point[1..33].to_vec(), point[33..65].to_vec());
        EcKey {
            kid: kid.to_owned(),
            pair,
            x,
            y,
            published: true,
        }
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "EC",
            "kid": self.kid,
            "alg": "ES256",
            "use": "sig",
            "crv": "P-256",
            "x": b64url(&self.x),
            "y": b64url(&self.y),
        })
    }
}

struct Keys {
    rsa: Vec<RsaKey>,
    ec: Vec<EcKey>,
    /// Keys made so far (for fresh kids).
    made: usize,
}

impl Keys {
    /// The RSA key named `kid`, else the first published one, else the first one.
    fn rsa(&self, kid: Option<&str>) -> &RsaKey {
        self.rsa
            .iter()
            .find(|k| Some(k.kid.as_str()) == kid)
            .or_else(|| self.rsa.iter().find(|k| k.published))
            .unwrap_or(&self.rsa[0])
    }

    /// The EC key named `kid`, else the first published one, else the first one.
    fn ec(&self, kid: Option<&str>) -> &EcKey {
        self.ec
            .iter()
            .find(|k| Some(k.kid.as_str()) == kid)
            .or_else(|| self.ec.iter().find(|k| k.published))
            .unwrap_or(&self.ec[0])
    }
}

/// The issuer's signing keys, shared (cheap to clone) between the [`Issuer`] and the
/// [`CiTokenEndpoint`]s that hand out its tokens.
#[derive(Clone)]
pub struct Signer {
    keys: Arc<Mutex<Keys>>,
}

impl Signer {
    /// Generates `rsa-1` (RSA 2048) and `ec-1` (EC P-256).
    pub fn generate() -> Signer {
        Signer {
            keys: Arc::new(Mutex::new(Keys {
                rsa: vec![RsaKey::generate("rsa-1")],
                ec: vec![EcKey::generate("ec-1")],
                made: 2,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Signs `spec` into a compact JWS (`header.payload.signature`, base64url without padding).
    pub fn sign(&self, spec: &TokenSpec) -> String {
        let mut header = Map::new();
        header.insert("alg".into(), Value::String(spec.alg.clone()));
        header.insert("typ".into(), Value::String("JWT".into()));
        if let Some(kid) = &spec.kid {
            header.insert("kid".into(), Value::String(kid.clone()));
        }
        for (name, value) in &spec.extra_header {
            header.insert(name.clone(), value.clone());
        }
        let input = format!(
            "{}.{}",
            b64url(&serde_json::to_vec(&Value::Object(header)).expect("header JSON")),
            b64url(&serde_json::to_vec(&spec.claims).expect("claims JSON"))
        );
        let kid = spec.kid.as_deref();
        let keys = self.lock();
        let hmac = |alg: aws_lc_rs::hmac::Algorithm| {
            let key = aws_lc_rs::hmac::Key::new(alg, keys.rsa(kid).spki_pem.as_bytes());
            aws_lc_rs::hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
        };
        let signature = match spec.alg.as_str() {
            "none" => Vec::new(),
            "HS256" => hmac(aws_lc_rs::hmac::HMAC_SHA256),
            "HS384" => hmac(aws_lc_rs::hmac::HMAC_SHA384),
            "HS512" => hmac(aws_lc_rs::hmac::HMAC_SHA512),
            "ES256" => keys
                .ec(kid)
                .pair
                .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
                .expect("ECDSA signature")
                .as_ref()
                .to_vec(),
            "RS384" => keys.rsa(kid).sign(&signature::RSA_PKCS1_SHA384, input.as_bytes()),
            "RS512" => keys.rsa(kid).sign(&signature::RSA_PKCS1_SHA512, input.as_bytes()),
            "PS256" => keys.rsa(kid).sign(&signature::RSA_PSS_SHA256, input.as_bytes()),
            "PS384" => keys.rsa(kid).sign(&signature::RSA_PSS_SHA384, input.as_bytes()),
            "PS512" => keys.rsa(kid).sign(&signature::RSA_PSS_SHA512, input.as_bytes()),
            _ => keys.rsa(kid).sign(&signature::RSA_PKCS1_SHA256, input.as_bytes()),
        };
        format!("{input}.{}", b64url(&signature))
    }

    /// The JWKS document (`{"keys": [...]}`) with every published key, RSA keys first.
    pub fn jwks(&self) -> Value {
        let keys = self.lock();
        let mut out: Vec<Value> = keys.rsa.iter().filter(|k| k.published).map(RsaKey::jwk).collect();
        out.extend(keys.ec.iter().filter(|k| k.published).map(EcKey::jwk));
        json!({ "keys": out })
    }

    /// Adds a new RSA 2048 key (RS256) with a fresh kid (`rsa-<n>`), published at once; returns
    /// its kid.
    pub fn rotate_in_key(&self) -> String {
        let made = self.lock().made;
        // Generate outside the lock: signing goes on meanwhile.
        let mut kid = format!("rsa-{made}");
        let mut key = RsaKey::generate(&kid);
        let mut keys = self.lock();
        keys.made += 1;
        if keys.rsa.iter().any(|k| k.kid == kid) || keys.ec.iter().any(|k| k.kid == kid) {
            // Another rotation ran concurrently and took that name.
            kid = format!("rsa-{}-{}", keys.made, uuid::Uuid::new_v4().simple());
            key.kid = kid.clone();
        }
        keys.rsa.push(key);
        kid
    }

    /// Removes the key named `kid` from the JWKS (it can still sign, so tests can present tokens
    /// made with a key the issuer no longer publishes). False when there is no such key.
    pub fn remove_key(&self, kid: &str) -> bool {
        let mut keys = self.lock();
        let mut found = false;
        for key in keys.rsa.iter_mut().filter(|k| k.kid == kid) {
            key.published = false;
            found = true;
        }
        for key in keys.ec.iter_mut().filter(|k| k.kid == kid) {
            key.published = false;
            found = true;
        }
        found
    }

    /// Every kid the signer holds, published or not, in creation order (RSA keys first).
    pub fn kids(&self) -> Vec<String> {
        let keys = self.lock();
        keys.rsa
            .iter()
            .map(|k| k.kid.clone())
            .chain(keys.ec.iter().map(|k| k.kid.clone()))
            .collect()
    }

    /// The PEM (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo, 64-column lines, final
    /// newline) of the RSA key `kid`: the HMAC secret of HS256/HS384/HS512 tokens.
    pub fn rsa_public_pem(&self, kid: &str) -> Option<String> {
        let keys = self.lock();
        keys.rsa.iter().find(|k| k.kid == kid).map(|k| k.spki_pem.clone())
    }
}

/// An answer the issuer sends for one path instead of its own (a crafted discovery document or
/// key set, a redirect, an oversized body), for tests of what the gateway does with it.
#[derive(Debug, Clone)]
pub struct Canned {
    /// The status code.
    pub status: u16,
    /// Extra response headers (e.g. `Location`).
    pub headers: Vec<(String, String)>,
    /// The body, sent as is.
    pub body: Vec<u8>,
    /// Send `Content-Length`; when false the body is delimited by closing the connection.
    pub content_length: bool,
}

impl Canned {
    /// 200 with this JSON document.
    pub fn json(document: &Value) -> Canned {
        Canned::bytes(serde_json::to_vec(document).expect("JSON"), true)
    }

    /// 200 with these bytes, with or without `Content-Length`.
    pub fn bytes(body: Vec<u8>, content_length: bool) -> Canned {
        Canned {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
            content_length,
        }
    }

    /// A redirect (`status` 301/302/307/308) to `location`.
    pub fn redirect(status: u16, location: &str) -> Canned {
        Canned {
            status,
            headers: vec![("Location".into(), location.to_owned())],
            body: Vec::new(),
            content_length: true,
        }
    }
}

/// The issuer server's shared state.
struct IssuerState {
    url: String,
    signer: Signer,
    unreachable: AtomicBool,
    stalled: AtomicBool,
    requests: Mutex<HashMap<String, usize>>,
    canned: Mutex<HashMap<String, Canned>>,
}

impl IssuerState {
    fn answer(&self, request: &Request) -> (u16, Value) {
        if request.method != "GET" {
            return (405, json!({ "error": "method not allowed" }));
        }
        match request.path() {
            "/.well-known/openid-configuration" => (200, self.discovery()),
            "/jwks" => (200, self.signer.jwks()),
            _ => (404, json!({ "error": "not found" })),
        }
    }

    fn discovery(&self) -> Value {
        json!({
            "issuer": self.url,
            "jwks_uri": format!("{}/jwks", self.url),
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": [
                "sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "sha", "repository",
                "repository_id", "repository_owner", "repository_owner_id", "workflow_ref",
                "job_workflow_ref", "runner_environment", "project_path", "ci_config_ref_uri"
            ],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "scopes_supported": ["openid"],
        })
    }
}

/// A local OIDC issuer over HTTPS: discovery at `/.well-known/openid-configuration`, keys at
/// `/jwks`, and a token signer. Stops accepting connections when dropped.
pub struct Issuer {
    url: String,
    addr: SocketAddr,
    ca_file: PathBuf,
    state: Arc<IssuerState>,
    _server: Server,
}

impl Issuer {
    /// Generates the keys, a test CA and a server certificate for `127.0.0.1` and `localhost`,
    /// writes the CA to `dir/oidc-ca.pem` (creating `dir`), and starts serving.
    pub fn start(dir: &Path) -> Issuer {
        std::fs::create_dir_all(dir).expect("create the issuer's folder");
        let (ca_pem, tls) = issuer_tls();
        let ca_file = dir.join("oidc-ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("write oidc-ca.pem");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the issuer");
        let addr = listener.local_addr().expect("issuer address");
        let url = format!("https://{addr}");
        let state = Arc::new(IssuerState {
            url: url.clone(),
            signer: Signer::generate(),
            unreachable: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            requests: Mutex::new(HashMap::new()),
            canned: Mutex::new(HashMap::new()),
        });
        let served = state.clone();
        let server = Server::start(listener, move |stream| serve_issuer(stream, &tls, &served));
        Issuer {
            url,
            addr,
            ca_file,
            state,
            _server: server,
        }
    }

    /// `https://127.0.0.1:<port>` (no trailing slash): the `iss` of its tokens.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The test CA (PEM) that signed the server certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A handle on the signing keys (shared: rotations show through every clone).
    pub fn signer(&self) -> Signer {
        self.state.signer.clone()
    }

    /// Adds a new RS256 key with a fresh kid to the JWKS and returns the kid.
    pub fn rotate_in_key(&self) -> String {
        self.state.signer.rotate_in_key()
    }

    /// Removes a key from the JWKS (it still signs); false when there is no such kid.
    pub fn remove_key(&self, kid: &str) -> bool {
        self.state.signer.remove_key(kid)
    }

    /// The JWKS document as currently served.
    pub fn jwks(&self) -> Value {
        self.state.signer.jwks()
    }

    /// When true, the server completes the TLS handshake, reads and counts the request, then
    /// closes the connection without answering (the issuer is down for its clients).
    pub fn set_unreachable(&self, unreachable: bool) {
        self.state.unreachable.store(unreachable, Ordering::SeqCst);
    }

    /// Answers requests for `path` (without query) with `canned` instead of the issuer's own
    /// document, until [`Issuer::clear_canned`].
    pub fn serve_canned(&self, path: &str, canned: Canned) {
        let mut map = self.state.canned.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(path.to_owned(), canned);
    }

    /// Serves the issuer's own answer for `path` again.
    pub fn clear_canned(&self, path: &str) {
        let mut map = self.state.canned.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(path);
    }

    /// When true, the server completes the TLS handshake, reads and counts the request, then
    /// holds the connection without answering for as long as it stays stalled (at most 10 s),
    /// and answers normally afterwards (a slow issuer).
    pub fn set_stalled(&self, stalled: bool) {
        self.state.stalled.store(stalled, Ordering::SeqCst);
    }

    /// How many requests arrived for `path` (the request target without its query), answered
    /// or not.
    pub fn requests(&self, path: &str) -> usize {
        let requests = self.state.requests.lock().unwrap_or_else(|p| p.into_inner());
        requests.get(path).copied().unwrap_or(0)
    }

    /// Signs a token (see [`TokenSpec`]).
    pub fn sign(&self, spec: &TokenSpec) -> String {
        self.state.signer.sign(spec)
    }

    /// An RS256 token (`rsa-1`) with these claims.
    pub fn token(&self, claims: Value) -> String {
        self.sign(&TokenSpec::rs256(claims))
    }

    /// A GitHub Actions ID-token claim set for a push to `main` of `repository` (`owner/name`)
    /// running `.github/workflows/<workflow_file>`, issued now by this issuer for `aud`, valid
    /// for 5 minutes. IDs are strings, as GitHub sends them.
    pub fn github_claims(&self, aud: &str, repository: &str, owner_id: &str, workflow_file: &str) -> Value {
        let now = now();
        let owner = repository.split('/').next().unwrap_or(repository);
        let sha = fake_sha(&format!("{repository} commit"));
        let workflow_ref = format!("{repository}/.github/workflows/{workflow_file}@refs/heads/main");
        let workflow = workflow_file.rsplit_once('.').map_or(workflow_file, |(stem, _)| stem);
        json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "sub": format!("repo:{repository}:ref:refs/heads/main"),
            "aud": aud,
            "ref": "refs/heads/main",
            "sha": sha,
            "repository": repository,
            "repository_owner": owner,
            "repository_owner_id": owner_id,
            "repository_id": fake_id(&format!("{repository} repository"), 9),
            "repository_visibility": "public",
            "actor": owner,
            "actor_id": owner_id,
            "run_id": fake_id(&format!("{repository} run"), 10),
            "run_number": "1",
            "run_attempt": "1",
            "runner_environment": "github-hosted",
            "workflow": workflow,
            "head_ref": "",
            "base_ref": "",
            "event_name": "push",
            "ref_protected": "false",
            "ref_type": "branch",
            "workflow_ref": workflow_ref,
            "workflow_sha": sha,
            "job_workflow_ref": workflow_ref,
            "job_workflow_sha": sha,
            "iss": self.url,
            "iat": now,
            "nbf": now.saturating_sub(5),
            "exp": now + TOKEN_LIFETIME,
        })
    }

    /// A GitLab CI ID-token claim set for a pipeline on branch `main` of `project_path`
    /// (`group/.../project`) with its CI configuration at `ci_config_path`, issued now by this
    /// issuer for `aud`, valid for 5 minutes.
    pub fn gitlab_claims(&self, aud: &str, project_path: &str, ci_config_path: &str) -> Value {
        let now = now();
        let namespace = project_path.rsplit_once('/').map_or("", |(ns, _)| ns);
        let host = self.url.split_once("://").map_or(self.url.as_str(), |(_, rest)| rest);
        let sha = fake_sha(&format!("{project_path} commit"));
        json!({
            "namespace_id": fake_id(&format!("{namespace} namespace"), 6),
            "namespace_path": namespace,
            "project_id": fake_id(&format!("{project_path} project"), 8),
            "project_path": project_path,
            "user_id": "1",
            "user_login": "ci-user",
            "user_access_level": "maintainer",
            "pipeline_id": fake_id(&format!("{project_path} pipeline"), 10),
            "pipeline_source": "push",
            "job_id": fake_id(&format!("{project_path} job"), 10),
            "ref": "main",
            "ref_type": "branch",
            "ref_path": "refs/heads/main",
            "ref_protected": "true",
            "runner_id": 1,
            "runner_environment": "gitlab-hosted",
            "sha": sha,
            "project_visibility": "public",
            "ci_config_ref_uri": format!("{host}/{project_path}//{ci_config_path}@refs/heads/main"),
            "ci_config_sha": sha,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iss": self.url,
            "iat": now,
            "nbf": now.saturating_sub(5),
            "exp": now + TOKEN_LIFETIME,
            "sub": format!("project_path:{project_path}:ref_type:branch:ref:main"),
            "aud": aud,
        })
    }
}

/// Answers one connection to the issuer.
fn serve_issuer(stream: TcpStream, tls: &Arc<rustls::ServerConfig>, state: &IssuerState) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(conn) = rustls::ServerConnection::new(tls.clone()) else {
        return;
    };
    let mut tls_stream = rustls::StreamOwned::new(conn, stream);
    let Some(request) = read_request(&mut tls_stream) else {
        return;
    };
    {
        let mut requests = state.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests.entry(request.path().to_owned()).or_insert(0) += 1;
    }
    if state.unreachable.load(Ordering::SeqCst) {
        let _ = tls_stream.sock.shutdown(Shutdown::Both);
        return;
    }
    let stalled_until = std::time::Instant::now() + IO_TIMEOUT;
    while state.stalled.load(Ordering::SeqCst) && std::time::Instant::now() < stalled_until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let canned = {
        let map = state.canned.lock().unwrap_or_else(|p| p.into_inner());
        map.get(request.path()).cloned()
    };
    let written = match canned {
        Some(canned) => write_canned(&mut tls_stream, &canned),
        None => {
            let (status, body) = state.answer(&request);
            write_response(&mut tls_stream, status, &body)
        }
    };
    if written.is_err() {
        return;
    }
    tls_stream.conn.send_close_notify();
    if tls_stream.flush().is_err() {
        return;
    }
    linger_close(&mut tls_stream.sock);
}

/// The test CA's PEM and a server configuration with a certificate it signed for `127.0.0.1`
/// and `localhost`.
fn issuer_tls() -> (String, Arc<rustls::ServerConfig>) {
    let certs = crate::pki::test_certs("Portcullis OIDC issuer", &["127.0.0.1", "localhost"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![certs.cert_der.clone().into(), certs.ca_der.clone().into()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(certs.key_der.clone()).into(),
        )
        .expect("OIDC server certificate and key");
    (certs.ca_pem, Arc::new(config))
}

/// The CI token endpoint's shared state.
struct EndpointState {
    signer: Signer,
    request_token: String,
    claims: Mutex<Value>,
    issued: Mutex<Vec<String>>,
}

impl EndpointState {
    fn answer(&self, request: &Request) -> (u16, Value) {
        if request.method != "GET" {
            return (405, json!({ "message": "method not allowed" }));
        }
        if request.path() != "/token" {
            return (404, json!({ "message": "not found" }));
        }
        let authorized = request
            .header("authorization")
            .and_then(|value| value.trim().split_once(' '))
            .is_some_and(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && token.trim() == self.request_token);
        if !authorized {
            return (403, json!({ "message": "Forbidden: missing or wrong request token" }));
        }
        let audience = request.query_param("audience");
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Value::Object(map) = &mut claims {
            if let Some(aud) = audience {
                map.insert("aud".into(), Value::String(aud));
            }
            let now = now();
            map.insert("jti".into(), Value::String(uuid::Uuid::new_v4().to_string()));
            map.insert("iat".into(), json!(now));
            map.insert("nbf".into(), json!(now.saturating_sub(5)));
            map.insert("exp".into(), json!(now + TOKEN_LIFETIME));
        }
        let token = self.signer.sign(&TokenSpec::rs256(claims));
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(token.clone());
        (200, json!({ "count": 1, "value": token }))
    }
}

/// A stand-in for GitHub's ID-token request endpoint, over plain HTTP on loopback:
/// `GET /token?...&audience=<aud>` with `Authorization: bearer <request token>` answers
/// `{"value": <jwt>}`, the JWT being the template claims with the requested `aud` and a fresh
/// `jti`, `iat`, `nbf` and `exp`, signed RS256 by the issuer's `rsa-1`. A missing or wrong
/// request token gets 403. Stops accepting connections when dropped.
pub struct CiTokenEndpoint {
    addr: SocketAddr,
    request_token: String,
    state: Arc<EndpointState>,
    _server: Server,
}

impl CiTokenEndpoint {
    /// Starts an endpoint issuing `claims` (e.g. [`Issuer::github_claims`]) signed by `issuer`.
    pub fn start(issuer: &Issuer, claims: Value) -> CiTokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the CI token endpoint");
        let addr = listener.local_addr().expect("CI token endpoint address");
        let request_token = format!("ghs_{}", uuid::Uuid::new_v4().simple());
        let state = Arc::new(EndpointState {
            signer: issuer.signer(),
            request_token: request_token.clone(),
            claims: Mutex::new(claims),
            issued: Mutex::new(Vec::new()),
        });
        let served = state.clone();
        let server = Server::start(listener, move |stream| serve_endpoint(stream, &served));
        CiTokenEndpoint {
            addr,
            request_token,
            state,
            _server: server,
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `ACTIONS_ID_TOKEN_REQUEST_URL` value: `http://127.0.0.1:<port>/token?api-version=2.0`
    /// (with a query, as GitHub's has, so clients must merge `audience` into it).
    pub fn request_url(&self) -> String {
        format!("http://{}/token?api-version=2.0", self.addr)
    }

    /// The `ACTIONS_ID_TOKEN_REQUEST_TOKEN` value.
    pub fn request_token(&self) -> &str {
        &self.request_token
    }

    /// Replaces the claims template.
    pub fn set_claims(&self, claims: Value) {
        *self.state.claims.lock().unwrap_or_else(|p| p.into_inner()) = claims;
    }

    /// The current claims template.
    pub fn claims(&self) -> Value {
        self.state.claims.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every token handed out so far, oldest first.
    pub fn issued(&self) -> Vec<String> {
        self.state.issued.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Answers one connection to the CI token endpoint.
fn serve_endpoint(mut stream: TcpStream, state: &EndpointState) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    let (status, body) = state.answer(&request);
    if write_response(&mut stream, status, &body).is_ok() {
        linger_close(&mut stream);
    }
}

/// The environment of a GitHub Actions job whose ID tokens come from `endpoint`:
/// `GITHUB_ACTIONS`, `ACTIONS_ID_TOKEN_REQUEST_URL` and `_TOKEN`, and the usual `GITHUB_*` and
/// `RUNNER_*` variables, taken from the endpoint's claims template where it has them
/// (repository, workflow_ref, sha, ref, run ids, actor...). For running the npm CLI and PyPA
/// `id` as if in GitHub Actions.
pub fn env_for_github_actions(endpoint: &CiTokenEndpoint) -> Vec<(String, String)> {
    let claims = endpoint.claims();
    let claim = |name: &str, default: &str| -> String {
        match claims.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => default.to_owned(),
        }
    };
    let repository = claim("repository", "octo-org/octo-repo");
    let owner = claim("repository_owner", repository.split('/').next().unwrap_or("octo-org"));
    let git_ref = claim("ref", "refs/heads/main");
    let ref_name = git_ref
        .strip_prefix("refs/heads/")
        .or_else(|| git_ref.strip_prefix("refs/tags/"))
        .unwrap_or(&git_ref)
        .to_owned();
    let sha = claim("sha", &fake_sha(&format!("{repository} commit")));
    let vars = [
        ("CI", "true".to_owned()),
        ("GITHUB_ACTIONS", "true".to_owned()),
        ("ACTIONS_ID_TOKEN_REQUEST_URL", endpoint.request_url()),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", endpoint.request_token().to_owned()),
        ("GITHUB_SERVER_URL", "https://github.com".to_owned()),
        ("GITHUB_API_URL", "https://api.github.com".to_owned()),
        ("GITHUB_GRAPHQL_URL", "https://api.github.com/graphql".to_owned()),
        ("GITHUB_REPOSITORY", repository.clone()),
        ("GITHUB_REPOSITORY_OWNER", owner.clone()),
        ("GITHUB_REPOSITORY_ID", claim("repository_id", "100000001")),
        ("GITHUB_REPOSITORY_OWNER_ID", claim("repository_owner_id", "1000001")),
        ("GITHUB_WORKFLOW", claim("workflow", "release")),
        (
            "GITHUB_WORKFLOW_REF",
            claim(
                "workflow_ref",
                &format!("{repository}/.github/workflows/release.yml@{git_ref}"),
            ),
        ),
        ("GITHUB_WORKFLOW_SHA", claim("workflow_sha", &sha)),
        ("GITHUB_SHA", sha.clone()),
        ("GITHUB_REF", git_ref.clone()),
        ("GITHUB_REF_NAME", ref_name),
        ("GITHUB_REF_TYPE", claim("ref_type", "branch")),
        ("GITHUB_REF_PROTECTED", claim("ref_protected", "false")),
        ("GITHUB_HEAD_REF", claim("head_ref", "")),
        ("GITHUB_BASE_REF", claim("base_ref", "")),
        ("GITHUB_EVENT_NAME", claim("event_name", "push")),
        ("GITHUB_RUN_ID", claim("run_id", "1000000001")),
        ("GITHUB_RUN_NUMBER", claim("run_number", "1")),
        ("GITHUB_RUN_ATTEMPT", claim("run_attempt", "1")),
        ("GITHUB_ACTOR", claim("actor", &owner)),
        ("GITHUB_ACTOR_ID", claim("actor_id", "1000001")),
        ("GITHUB_TRIGGERING_ACTOR", claim("actor", &owner)),
        ("GITHUB_JOB", "publish".to_owned()),
        ("RUNNER_ENVIRONMENT", claim("runner_environment", "github-hosted")),
        ("RUNNER_OS", "Linux".to_owned()),
        ("RUNNER_ARCH", "X64".to_owned()),
        ("RUNNER_NAME", "GitHub Actions 1".to_owned()),
    ];
    vars.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

/// The environment of a GitLab CI job that declared an `NPM_ID_TOKEN` ID token (`id_tokens:` in
/// `.gitlab-ci.yml`): GitLab hands the job the token itself in that variable, there is no
/// request endpoint. `GITLAB_CI` and `CI` (what the npm CLI's `ci-info` detects GitLab by), the
/// token, and the usual `CI_*` variables taken from `claims` (those of
/// [`Issuer::gitlab_claims`]: project path, CI configuration, sha, ref, pipeline and job ids).
/// For running the npm CLI as if in GitLab CI.
pub fn env_for_gitlab_ci(id_token: &str, claims: &Value) -> Vec<(String, String)> {
    let claim = |name: &str, default: &str| -> String {
        match claims.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => default.to_owned(),
        }
    };
    let project_path = claim("project_path", "group/project");
    // `host/group/project//path/to/.gitlab-ci.yml@refs/heads/main`
    let config_uri = claim("ci_config_ref_uri", "");
    let server_host = config_uri
        .split('/')
        .next()
        .filter(|h| !h.is_empty())
        .unwrap_or("gitlab.com")
        .to_owned();
    let config_path = config_uri
        .split_once("//")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .map_or(".gitlab-ci.yml".to_owned(), |(path, _)| path.to_owned());
    let server_url = format!("https://{server_host}");
    let project_url = format!("{server_url}/{project_path}");
    let job_id = claim("job_id", "1000000001");
    let git_ref = claim("ref", "main");
    let vars = [
        ("CI", "true".to_owned()),
        ("GITLAB_CI", "true".to_owned()),
        ("NPM_ID_TOKEN", id_token.to_owned()),
        ("CI_SERVER_URL", server_url.clone()),
        ("CI_SERVER_HOST", server_host),
        ("CI_PROJECT_PATH", project_path.clone()),
        ("CI_PROJECT_NAMESPACE", claim("namespace_path", "group")),
        ("CI_PROJECT_ID", claim("project_id", "10000001")),
        ("CI_PROJECT_URL", project_url.clone()),
        ("CI_PROJECT_VISIBILITY", claim("project_visibility", "private")),
        ("CI_CONFIG_PATH", config_path),
        (
            "CI_COMMIT_SHA",
            claim("sha", &fake_sha(&format!("{project_path} commit"))),
        ),
        ("CI_COMMIT_REF_NAME", git_ref.clone()),
        ("CI_COMMIT_BRANCH", git_ref),
        ("CI_COMMIT_REF_PROTECTED", claim("ref_protected", "true")),
        ("CI_PIPELINE_ID", claim("pipeline_id", "1000000001")),
        ("CI_PIPELINE_SOURCE", claim("pipeline_source", "push")),
        ("CI_JOB_ID", job_id.clone()),
        ("CI_JOB_URL", format!("{project_url}/-/jobs/{job_id}")),
        ("CI_JOB_NAME", "publish".to_owned()),
        ("CI_RUNNER_ID", claim("runner_id", "1")),
        ("GITLAB_USER_LOGIN", claim("user_login", "ci-user")),
        ("GITLAB_USER_ID", claim("user_id", "1")),
    ];
    vars.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

/// Accepts connections on a thread, one more thread per connection; stops accepting on drop.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(listener: TcpListener, handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Server {
        let addr = listener.local_addr().expect("listener address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let handle = Arc::new(handle);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                match stream {
                    Ok(stream) => {
                        let handle = handle.clone();
                        std::thread::spawn(move || handle(stream));
                    }
                    // E.g. out of file descriptors: do not spin.
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Server { addr, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag and ends (dropping the listener).
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A request head.
struct Request {
    method: String,
    target: String,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
}

impl Request {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The last value of a query parameter, percent-decoded (`+` is a space).
    fn query_param(&self, name: &str) -> Option<String> {
        let (_, query) = self.target.split_once('?')?;
        query
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .filter(|(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value))
            .next_back()
    }
}

/// Reads a request head (up to `MAX_HEAD` bytes); any body is ignored.
fn read_request(stream: &mut impl Read) -> Option<Request> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return None;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers = lines
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Some(Request {
        method,
        target,
        headers,
    })
}

/// Writes a JSON response with `Connection: close`.
fn write_response(stream: &mut impl Write, status: u16, body: &Value) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let body = serde_json::to_vec(body).map_err(std::io::Error::other)?;
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()
}

/// Writes a canned response with `Connection: close`.
fn write_canned(stream: &mut impl Write, canned: &Canned) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} Canned\r\nCache-Control: no-store\r\nConnection: close\r\n",
        canned.status
    );
    for (name, value) in &canned.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if canned.content_length {
        head.push_str(&format!("Content-Length: {}\r\n", canned.body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    for chunk in canned.body.chunks(16 * 1024) {
        stream.write_all(chunk)?;
    }
    stream.flush()
}

/// Half-closes after the answer and drains what the client still sends (bounded), so closing
/// never resets the connection under an answer the client has not read yet.
fn linger_close(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    for _ in 0..64 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Decodes `%XX` escapes and `+` (a space); malformed escapes stay as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (byte, None) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Base64url without padding (JOSE).
fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// PEM with 64-column lines and a final newline.
fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// One DER element with tag `tag` at the start of `input`: (contents, rest).
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, byte| (acc << 8) | usize::from(*byte));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (&rest[..len], &rest[len..]))
}

/// Modulus and exponent (big-endian, no leading zeros) of a PKCS#1 `RSAPublicKey`
/// (`SEQUENCE { INTEGER n, INTEGER e }`).
fn rsa_components(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (sequence, _) = der_element(der, 0x30)?;
    let (n, rest) = der_element(sequence, 0x02)?;
    let (e, _) = der_element(rest, 0x02)?;
    let unsigned = |int: &[u8]| -> Vec<u8> {
        let start = int.iter().position(|b| *b != 0).unwrap_or(int.len().saturating_sub(1));
        int[start..].to_vec()
    };
    Some((unsigned(n), unsigned(e)))
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A stable 40-hex "commit" derived from `seed`.
fn fake_sha(seed: &str) -> String {
    crate::sha256_hex(seed.as_bytes())[..40].to_owned()
}

/// A stable decimal id of `digits` digits (no leading zero) derived from `seed`.
fn fake_id(seed: &str, digits: u32) -> String {
    let hash = crate::sha256_hex(seed.as_bytes());
    let value = u64::from_str_radix(&hash[..15], 16).unwrap_or(0);
    let low = 10u64.pow(digits.saturating_sub(1));
    (low + value % (low * 9)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_escapes_plus_and_malformed_input() {
        assert_eq!(percent_decode("npm%3Aregistry.npmjs.org"), "npm:registry.npmjs.org");
        assert_eq!(percent_decode("a+b%20c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn der_reader_takes_rsa_components_apart() {
        // SEQUENCE { INTEGER 0x00c1 (leading zero for the sign), INTEGER 65537 }
        let der = [0x30, 0x09, 0x02, 0x02, 0x00, 0xc1, 0x02, 0x03, 0x01, 0x00, 0x01];
        assert_eq!(rsa_components(&der), Some((vec![0xc1], vec![1, 0, 1])));
        assert_eq!(rsa_components(&der[..5]), None);
    }

    #[test]
    fn fake_ids_have_the_asked_digits() {
        for digits in [6, 9, 10] {
            let id = fake_id("seed", digits);
            assert_eq!(id.len(), digits as usize, "{id}");
        }
    }
}
