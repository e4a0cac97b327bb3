//! Trusted publishing: a CI job's OIDC ID token exchanged for a short-lived gateway upload
//! token scoped to the projects its trusted publishers may upload to.
//!
//! The order of the checks follows Warehouse (`warehouse/oidc/views.py`):
//!
//! 1. read the token's *unverified* `iss`, only to choose the issuer the rules trust
//!    (unknown issuer → refused; issuer switched off → refused);
//! 2. fetch the issuer's keys ([`crate::auth::jwks`], cached, refreshed on an unknown `kid` at a
//!    bounded rate) and verify the token strictly ([`crate::auth::jwt`]: signature, algorithm
//!    allow-list, exact single `aud`, `exp`/`nbf`/`iat` with 30 s leeway, required claims);
//! 3. match the claims against the trusted publishers of the registries served on this host
//!    (most specific first); a publisher that is not *pending* only covers projects that
//!    already exist on the backend;
//! 4. claim the token's `jti` in the state store, kept until `exp` + 35 s (a replay is refused);
//! 5. mint the upload token ([`crate::auth::upload_token`]).
//!
//! The wire formats of the PyPI and npm endpoints live in [`wire`].

pub mod backend;
pub mod failures;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use portcullis_rules::publishers::{Claims as ClaimSource, Issuer, IssuerKind};
use portcullis_rules::{CompiledRules, ProjectName};

use self::backend::ProjectProbe;
use crate::auth::jwks::JwksCache;
use crate::auth::jwt::{self, IssuerKeys, TokenError};
use crate::auth::upload_token::{Grant, MintedToken, Scope, UploadTokenKeys};
use crate::config::Registry;
use crate::metrics::Metrics;
use crate::state::StateStore;

/// Seconds a used `jti` is remembered beyond the token's `exp` (leeway plus margin, as
/// Warehouse keeps it: `exp + 30 + 5`).
const JTI_MARGIN_SECS: i64 = jwt::LEEWAY_SECS + 5;

/// Why an exchange was refused. Each maps to one of Warehouse's error codes for the PyPI
/// endpoint and to an HTTP status for the npm endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// Trusted publishing is off here (no upload-token keys, no publishers) or for this issuer.
    #[error("{0}")]
    NotEnabled(String),
    /// The request or the token cannot be read at all.
    #[error("{0}")]
    MalformedToken(String),
    /// The token's issuer is not one the rules trust.
    #[error("unknown trusted publishing issuer {0:?}")]
    UnknownIssuer(String),
    /// The token does not verify.
    #[error("malformed or invalid token: {0}")]
    InvalidToken(TokenError),
    /// The issuer's keys could not be fetched and none are cached.
    #[error("the issuer's signing keys could not be fetched ({0}); try again later")]
    IssuerUnreachable(String),
    /// No trusted publisher matches the token's claims.
    #[error("valid token, but no corresponding publisher ({0})")]
    NoPublisher(String),
    /// The token's `jti` was used before.
    #[error("invalid token: already used")]
    Replayed,
    /// The state store or the backend could not answer.
    #[error("{0}")]
    Unavailable(String),
}

impl ExchangeError {
    /// Warehouse's error code for the PyPI endpoint.
    pub fn pypi_code(&self) -> &'static str {
        match self {
            ExchangeError::NotEnabled(_) => "not-enabled",
            ExchangeError::MalformedToken(_) | ExchangeError::UnknownIssuer(_) => "invalid-payload",
            ExchangeError::InvalidToken(_) => "invalid-token",
            ExchangeError::IssuerUnreachable(_) => "issuer-unreachable",
            ExchangeError::NoPublisher(_) => "invalid-publisher",
            ExchangeError::Replayed => "invalid-reuse-token",
            ExchangeError::Unavailable(_) => "server-unavailable",
        }
    }

    /// A bounded label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            ExchangeError::NotEnabled(_) => "not_enabled",
            ExchangeError::MalformedToken(_) => "malformed_token",
            ExchangeError::UnknownIssuer(_) => "unknown_issuer",
            ExchangeError::InvalidToken(e) => e.code(),
            ExchangeError::IssuerUnreachable(_) => "issuer_unreachable",
            ExchangeError::NoPublisher(_) => "no_publisher",
            ExchangeError::Replayed => "jti_replayed",
            ExchangeError::Unavailable(_) => "unavailable",
        }
    }

    /// The HTTP status the npm endpoint answers with.
    pub fn npm_status(&self) -> u16 {
        match self {
            ExchangeError::NotEnabled(_) => 403,
            ExchangeError::MalformedToken(_) => 400,
            ExchangeError::UnknownIssuer(_) | ExchangeError::InvalidToken(_) | ExchangeError::Replayed => 401,
            ExchangeError::NoPublisher(_) => 403,
            ExchangeError::IssuerUnreachable(_) | ExchangeError::Unavailable(_) => 503,
        }
    }
}

/// One exchange to perform.
pub struct ExchangeRequest<'a> {
    /// The CI provider's ID token.
    pub token: &'a str,
    /// The rules in force.
    pub rules: &'a CompiledRules,
    /// The registries served on the request's host with the endpoint's protocol.
    pub registries: &'a [Arc<Registry>],
    /// For npm: the package the token is asked for.
    pub package: Option<&'a ProjectName>,
    /// Current time, Unix seconds.
    pub now: i64,
}

/// A successful exchange.
#[derive(Debug)]
pub struct Exchanged {
    /// The upload token.
    pub minted: MintedToken,
    /// The issuer's name in the rules.
    pub issuer: String,
    /// What the token may do.
    pub scopes: Vec<Scope>,
    /// Identifying claims for the log (`sub`, `repository`, `workflow_ref`…).
    pub claims: BTreeMap<&'static str, String>,
}

/// Performs exchanges; shared by every request.
pub struct Exchanger {
    jwks: JwksCache,
    jwks_exported: std::sync::Mutex<crate::auth::jwks::JwksStats>,
    tokens: Option<UploadTokenKeys>,
    state: Arc<dyn StateStore>,
    probe: ProjectProbe,
    metrics: Arc<Metrics>,
}

/// The verified claims as the rules read them.
struct ClaimView<'a>(&'a jwt::Claims);

impl ClaimSource for ClaimView<'_> {
    fn string(&self, name: &str) -> Option<&str> {
        self.0.get_str(name)
    }

    fn boolean(&self, name: &str) -> Option<bool> {
        self.0.get(name).and_then(serde_json::Value::as_bool)
    }
}

/// Claims worth logging with every exchange, when present.
const LOGGED_CLAIMS: &[&str] = &[
    "sub",
    "repository",
    "repository_owner_id",
    "workflow_ref",
    "job_workflow_ref",
    "ref",
    "environment",
    "event_name",
    "runner_environment",
    "project_path",
    "ci_config_ref_uri",
    "email",
];

impl Exchanger {
    /// An exchanger; without upload-token keys every exchange is refused as not enabled.
    pub fn new(
        jwks: JwksCache,
        tokens: Option<UploadTokenKeys>,
        state: Arc<dyn StateStore>,
        probe: ProjectProbe,
        metrics: Arc<Metrics>,
    ) -> Self {
        Exchanger {
            jwks,
            jwks_exported: std::sync::Mutex::new(Default::default()),
            tokens,
            state,
            probe,
            metrics,
        }
    }

    /// The upload-token keys, when configured.
    pub fn token_keys(&self) -> Option<&UploadTokenKeys> {
        self.tokens.as_ref()
    }

    /// The state store.
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// The backend clients (project existence, npm documents).
    pub fn probe(&self) -> &ProjectProbe {
        &self.probe
    }

    /// Performs one exchange and records its metrics; `protocol` labels them.
    pub async fn exchange(&self, protocol: &str, request: ExchangeRequest<'_>) -> Result<Exchanged, ExchangeError> {
        let started = Instant::now();
        let mut issuer_label = "unknown".to_owned();
        let result = self.exchange_inner(&request, &mut issuer_label).await;
        let registry_label = match &result {
            Ok(done) => done.scopes.first().map_or("none", |s| s.registry.as_str()),
            Err(_) => request.registries.first().map_or("none", |r| r.name.as_str()),
        };
        let outcome = match &result {
            Ok(_) => "minted",
            Err(e) => e.label(),
        };
        self.metrics
            .exchanges
            .with_label_values(&[protocol, &issuer_label, registry_label, outcome])
            .inc();
        self.metrics
            .exchange_duration
            .with_label_values(&[protocol, if result.is_ok() { "minted" } else { "refused" }])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn exchange_inner(
        &self,
        request: &ExchangeRequest<'_>,
        issuer_label: &mut String,
    ) -> Result<Exchanged, ExchangeError> {
        let keys = self.tokens.as_ref().ok_or_else(|| {
            ExchangeError::NotEnabled("trusted publishing functionality not enabled (no upload-token keys)".into())
        })?;
        let rules = request.rules;
        if !request.registries.iter().any(|r| rules.has_publishers(&r.name)) {
            return Err(ExchangeError::NotEnabled(
                "trusted publishing functionality not enabled (no trusted publishers here)".into(),
            ));
        }

        // 1. The unverified issuer, only to choose the keys.
        let unverified =
            jwt::peek(request.token).map_err(|e| ExchangeError::MalformedToken(format!("malformed JWT: {e}")))?;
        let issuer = rules
            .issuer_by_url(&unverified.iss)
            .ok_or_else(|| ExchangeError::UnknownIssuer(unverified.iss.chars().take(128).collect()))?;
        issuer_label.clone_from(&issuer.name);
        if !issuer.enabled {
            return Err(ExchangeError::NotEnabled(format!(
                "{} trusted publishing functionality not enabled",
                issuer.name
            )));
        }

        // 2. Keys and strict verification, against each audience this host expects from the issuer.
        let audiences = expected_audiences(rules, request.registries, issuer);
        if audiences.is_empty() {
            return Err(ExchangeError::NoPublisher(format!(
                "no publisher here trusts issuer {:?}",
                issuer.name
            )));
        }
        let kid = unverified.kid.clone().unwrap_or_default();
        let fetched = self.jwks.key_set(&issuer.url, issuer.jwks_url.as_deref(), &kid).await;
        self.export_jwks_stats();
        let jwks = fetched.map_err(|e| ExchangeError::IssuerUnreachable(e.code().to_owned()))?;
        let algorithms = issuer
            .algorithms
            .iter()
            .filter_map(|a| a.parse::<jwt::Algorithm>().ok())
            .collect::<Vec<_>>();
        let mut verified = None;
        let mut last_error = None;
        for audience in &audiences {
            let keys = IssuerKeys {
                issuer: issuer.url.clone(),
                audience: audience.clone(),
                algorithms: algorithms.clone(),
                jwks: jwks.clone(),
                // GitHub and GitLab tokens always carry a jti. Others may not (Google ID tokens
                // have none; Warehouse checks none for Google either): their replay id is then
                // derived from the signature, so a replay is still refused.
                require_jti: matches!(issuer.kind, IssuerKind::Github | IssuerKind::Gitlab),
            };
            match jwt::verify(request.token, &keys, request.now) {
                Ok(claims) => {
                    verified = Some(claims);
                    break;
                }
                Err(e @ TokenError::AudienceMismatch { .. }) => last_error = Some(e),
                Err(e) => return Err(ExchangeError::InvalidToken(e)),
            }
        }
        let claims = match (verified, last_error) {
            (Some(c), _) => c,
            (None, Some(e)) => return Err(ExchangeError::InvalidToken(e)),
            (None, None) => return Err(ExchangeError::Unavailable("no audience to verify against".into())),
        };

        // 3. Publishers, per registry whose audience the token carries.
        let view = ClaimView(&claims);
        let mut scopes = Vec::new();
        let mut reasons = Vec::new();
        for registry in request.registries {
            if rules.audience(&registry.name, issuer) != Some(claims.aud.as_str()) {
                continue;
            }
            let matched = match rules.match_publishers(&registry.name, issuer, &view) {
                Ok(m) => m,
                Err(mismatches) => {
                    reasons.extend(mismatches.into_iter().map(|m| format!("{}: {}", m.publisher, m.reason)));
                    continue;
                }
            };
            // Each project goes to the most specific publisher that covers it.
            let mut assigned: Vec<(usize, ProjectName)> = Vec::new();
            for (index, publisher) in matched.iter().enumerate() {
                for project in &publisher.projects {
                    if request.package.is_some_and(|p| p != project) {
                        continue;
                    }
                    if !assigned.iter().any(|(_, p)| p == project) {
                        assigned.push((index, project.clone()));
                    }
                }
            }
            if assigned.is_empty() {
                if let Some(package) = request.package {
                    let ids: Vec<&str> = matched.iter().map(|p| p.id.as_str()).collect();
                    reasons.push(format!(
                        "publisher {} matches, but does not list package {:?}",
                        ids.join(", "),
                        package.as_str()
                    ));
                }
                continue;
            }
            for (index, publisher) in matched.iter().enumerate() {
                let mut projects = Vec::new();
                let mut create = Vec::new();
                for (_, project) in assigned.iter().filter(|(i, _)| *i == index) {
                    if publisher.pending {
                        projects.push(project.as_str().to_owned());
                        create.push(project.as_str().to_owned());
                        continue;
                    }
                    match self.probe.exists(registry, project).await {
                        Ok(true) => projects.push(project.as_str().to_owned()),
                        Ok(false) => reasons.push(format!(
                            "{}: project {:?} does not exist yet, and only a pending publisher may create it",
                            publisher.id.as_str(),
                            project.as_str()
                        )),
                        Err(e) => return Err(ExchangeError::Unavailable(e.to_string())),
                    }
                }
                if !projects.is_empty() {
                    scopes.push(Scope {
                        registry: registry.name.clone(),
                        publisher: publisher.id.as_str().to_owned(),
                        projects,
                        create,
                    });
                }
            }
        }
        if scopes.is_empty() {
            if reasons.is_empty() {
                reasons.push(format!("no publisher here trusts issuer {:?}", issuer.name));
            }
            reasons.truncate(8);
            return Err(ExchangeError::NoPublisher(reasons.join("; ")));
        }

        // 4. Replay: the jti is claimed only once a publisher matched, as Warehouse does.
        let first_use = self
            .state
            .claim_jti(&issuer.url, &claims.jti, claims.exp.saturating_add(JTI_MARGIN_SECS))
            .await
            .map_err(|e| ExchangeError::Unavailable(format!("the gateway's state store is unavailable: {e}")))?;
        if !first_use {
            return Err(ExchangeError::Replayed);
        }

        // 5. Mint.
        let grant = Grant {
            issuer: issuer.url.clone(),
            subject: claims.sub.clone().unwrap_or_default(),
            scopes: scopes.clone(),
        };
        let minted = keys
            .mint(&grant, request.now)
            .map_err(|e| ExchangeError::Unavailable(format!("minting the upload token failed: {e}")))?;
        let logged = LOGGED_CLAIMS
            .iter()
            .filter_map(|name| claims.get_str(name).map(|v| (*name, v.chars().take(200).collect())))
            .collect();
        Ok(Exchanged {
            minted,
            issuer: issuer.name.clone(),
            scopes,
            claims: logged,
        })
    }
}

impl Exchanger {
    /// Adds what the key-set cache counted since the last call to the metrics.
    fn export_jwks_stats(&self) {
        let now = self.jwks.stats();
        let mut last = self
            .jwks_exported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let counter = |outcome: &str, new: u64, old: u64| {
            if new > old {
                self.metrics
                    .jwks_fetches
                    .with_label_values(&[outcome])
                    .inc_by(new - old);
            }
        };
        counter("ok", now.fetch_successes, last.fetch_successes);
        counter("failed", now.fetch_failures, last.fetch_failures);
        counter("skipped_cooldown", now.refreshes_skipped, last.refreshes_skipped);
        *last = now;
    }
}

/// The distinct audiences a token from `issuer` may carry on this host, in registry order.
fn expected_audiences(rules: &CompiledRules, registries: &[Arc<Registry>], issuer: &Issuer) -> Vec<String> {
    let mut audiences: Vec<String> = Vec::new();
    for registry in registries {
        if !rules.has_publishers(&registry.name) {
            continue;
        }
        if let Some(aud) = rules.audience(&registry.name, issuer) {
            if !audiences.iter().any(|a| a == aud) {
                audiences.push(aud.to_owned());
            }
        }
    }
    audiences
}
