//! The admin listener (separate port, loopback by default): `/metrics`, `/healthz`, `/readyz`
//! `/rules`, `/trust`, `/tuf`, `/decisions/<request id>`, and with an admin token configured
//! `GET /audit`, `POST /tokens/revoke`, `POST /trust/refresh` and `POST /tuf/retry`.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::config::Secret;
use crate::explain::DecisionJournal;
use crate::health::UpstreamHealth;
use crate::metrics::Metrics;
use crate::reload::RulesHandle;
use crate::trusted_publishing::Exchanger;

mod audit;
mod revoke;
mod trust;
mod tuf_feed;

/// The admin HTTP application.
pub struct AdminApp {
    metrics: Arc<Metrics>,
    rules: Arc<RulesHandle>,
    health: Arc<UpstreamHealth>,
    exchanger: Option<Arc<Exchanger>>,
    admin_token: Option<Secret>,
    journal: Option<Arc<DecisionJournal>>,
    audit: Option<Arc<crate::deletion::audit::AuditLog>>,
    adjustable_clock: bool,
    trust: Option<Arc<crate::sigstore::TrustHandle>>,
    trust_refresher: Option<Arc<crate::sigstore::TrustRefresher>>,
    tuf_feed: Option<FeedAdmin>,
}

/// What `GET /tuf` and `POST /tuf/retry` read and change.
pub struct FeedAdmin {
    /// The registries with a feed.
    pub registries: Vec<Arc<crate::config::Registry>>,
    /// The store holding the outbox.
    pub state: Arc<dyn crate::state::StateStore>,
    /// Wakes the feed.
    pub wake: Arc<tokio::sync::Notify>,
}

impl AdminApp {
    /// An admin app over the gateway's shared state.
    pub fn new(metrics: Arc<Metrics>, rules: Arc<RulesHandle>, health: Arc<UpstreamHealth>) -> Self {
        AdminApp {
            metrics,
            rules,
            health,
            exchanger: None,
            admin_token: None,
            journal: None,
            audit: None,
            adjustable_clock: false,
            trust: None,
            trust_refresher: None,
            tuf_feed: None,
        }
    }

    /// Enables `GET /tuf` and `POST /tuf/retry` when some registry has a feed.
    pub fn with_tuf_feed(mut self, feed: FeedAdmin) -> Self {
        if !feed.registries.is_empty() {
            self.tuf_feed = Some(feed);
        }
        self
    }

    /// Enables `GET /decisions/<request id>` from the proxy's decision journal.
    pub fn with_journal(mut self, journal: Arc<DecisionJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Enables `GET /audit?registry=<name>&project=<name>[&limit=<n>]`.
    pub fn with_audit(mut self, audit: Arc<crate::deletion::audit::AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Enables `POST /testing/clock` (tests only; `[testing] adjustable_clock`).
    pub fn with_adjustable_clock(mut self, on: bool) -> Self {
        self.adjustable_clock = on;
        self
    }

    /// Enables `GET /trust` and, for a TUF source, `POST /trust/refresh`.
    pub fn with_trust(
        mut self,
        trust: Arc<crate::sigstore::TrustHandle>,
        refresher: Option<Arc<crate::sigstore::TrustRefresher>>,
    ) -> Self {
        self.trust = Some(trust);
        self.trust_refresher = refresher;
        self
    }

    /// Enables `POST /tokens/revoke`, guarded by `admin_token` (off without one).
    pub fn with_token_admin(mut self, exchanger: Arc<Exchanger>, admin_token: Option<Secret>) -> Self {
        self.exchanger = Some(exchanger);
        self.admin_token = admin_token;
        self
    }

    pub(crate) fn json(status: u16, value: serde_json::Value) -> Response<Vec<u8>> {
        let body = serde_json::to_vec_pretty(&value).unwrap_or_default();
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CACHE_CONTROL, "no-store")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_default()
    }

    /// Checks `Authorization: Bearer <admin token>`; admin writes are off without a token in
    /// the configuration.
    pub(crate) fn check_admin(&self, session: &ServerSession) -> Result<(), Box<Response<Vec<u8>>>> {
        let Some(admin_token) = &self.admin_token else {
            return Err(Box::new(Self::json(
                403,
                json!({"code": "admin_writes_disabled", "message": "set admin.token_file in the configuration to enable admin writes"}),
            )));
        };
        let presented = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::trusted_publishing::wire::bearer)
            .unwrap_or_default();
        if !crate::auth::constant_time_eq(presented.as_bytes(), admin_token.expose()) {
            return Err(Box::new(Self::json(
                401,
                json!({"code": "admin_unauthenticated", "message": "send the admin token as Authorization: Bearer <token>"}),
            )));
        }
        Ok(())
    }

    /// Reads a request body of at most `max` bytes.
    pub(crate) async fn read_body(session: &mut ServerSession, max: usize) -> Result<Vec<u8>, Box<Response<Vec<u8>>>> {
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > max {
                        return Err(Box::new(Self::json(
                            413,
                            json!({"code": "body_too_large", "message": format!("the body is over {max} bytes")}),
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => {
                    return Err(Box::new(Self::json(
                        400,
                        json!({"code": "bad_request", "message": format!("reading the body: {e}")}),
                    )))
                }
            }
        }
    }

    /// Answers one admin request.
    pub fn answer(&self, method: &http::Method, path: &str) -> Response<Vec<u8>> {
        if method != http::Method::GET && method != http::Method::HEAD {
            return Self::json(
                405,
                json!({"code": "method_not_allowed", "message": "the admin API is read-only"}),
            );
        }
        match path {
            "/metrics" => {
                let body = self.metrics.render();
                Response::builder()
                    .status(200)
                    .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
                    .header(http::header::CONTENT_LENGTH, body.len())
                    .body(body)
                    .unwrap_or_default()
            }
            "/healthz" => Self::json(200, json!({"status": "ok"})),
            "/readyz" => {
                let upstreams = self.health.snapshot();
                let ready = upstreams.values().all(|up| *up);
                let revision = self.rules.current().rules.revision().to_owned();
                Self::json(
                    if ready { 200 } else { 503 },
                    json!({"ready": ready, "rules_revision": revision, "upstreams": upstreams}),
                )
            }
            "/rules" => {
                let snap = self.rules.current();
                Self::json(
                    200,
                    json!({
                        "revision": snap.rules.revision(),
                        "loaded_at": snap.loaded_at,
                        "loaded_at_unix": snap.loaded_at_unix,
                        "sources": snap.rules.sources(),
                    }),
                )
            }
            "/trust" => self.trust_view(),
            _ if path.starts_with("/decisions/") => {
                let id = &path["/decisions/".len()..];
                match self.journal.as_ref().and_then(|j| j.explain(id)) {
                    Some(explanation) => Self::json(200, explanation),
                    None => Self::json(
                        404,
                        json!({"code": "not_found", "message": format!("no decision is kept for request {:?} (recent requests only)", id.chars().take(64).collect::<String>())}),
                    ),
                }
            }
            _ => Self::json(
                404,
                json!({"code": "not_found", "message": "admin endpoints: /metrics /healthz /readyz /rules /trust /tuf /decisions/<request id> /audit?registry=&project=, POST /tokens/revoke, POST /trust/refresh, POST /tuf/retry?registry="}),
            ),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let (method, path) = (req.method.clone(), req.uri.path().to_owned());
        match path.as_str() {
            "/tokens/revoke" => return self.revoke(session).await,
            "/audit" => return self.audit_of_project(session).await,
            "/testing/clock" => return self.move_clock(session).await,
            "/trust/refresh" => return self.trust_refresh(session).await,
            "/tuf/retry" => return self.tuf_retry(session).await,
            "/tuf" if matches!(method, http::Method::GET | http::Method::HEAD) => return self.tuf_view().await,
            _ => {}
        }
        self.answer(&method, &path)
    }
}
