//! The pingora proxy: one request's path through the gateway.
//!
//! accept → route ([`Gateway::route`]) → classify ([`crate::protocol`]) → stream, hash and hold
//! back ([`Gateway::on_write_chunk`]) → decide (`portcullis_rules`) → release or reset
//! ([`holdback`], [`upstream`]) → record ([`Gateway::record`]).

pub mod accept_grace;
mod authenticate;
pub mod connection_limit;
pub mod ctx;
mod deletion;
mod exchange;
pub mod framing;
pub mod holdback;
mod integrity;
mod ledger;
pub mod listeners;
mod provenance;
mod record;
pub mod slow_clients;
pub mod upstream;
mod write_body;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use portcullis_rules::{Outcome, Protocol, WriteAction, WriteFacts};

use self::ctx::{CredentialAction, DecisionRecord, InFlight, RequestCtx, WriteState};
use self::upstream::UpstreamPeers;
use crate::config::Registry;
use crate::error::Refusal;
use crate::explain::DecisionJournal;
use crate::metrics::Metrics;
use crate::protocol::pypi::FormInspector;
use crate::protocol::{self, RequestClass};
use crate::provenance::ProvenanceVerifier;
use crate::reload::RulesHandle;
use crate::trusted_publishing::failures::FailedExchanges;
use crate::trusted_publishing::Exchanger;

/// An answer the gateway writes itself; see [`Gateway::write_answer`].
struct Answer<'a> {
    status: u16,
    reason: Option<&'a str>,
    content_type: &'a str,
    no_store: bool,
    body: Vec<u8>,
}

/// A registry with its upstream peers.
struct RouteEntry {
    registry: Arc<Registry>,
    peers: UpstreamPeers,
}

/// Where the gateway records what it decided and saw, and the admin credential it honours.
pub struct Records {
    /// Explanations of recent decisions, by request id.
    pub journal: Arc<DecisionJournal>,
    /// The audit log of upload and deletion decisions.
    pub audit: Arc<crate::deletion::audit::AuditLog>,
    /// Download counts, for the deletion rules.
    pub downloads: Arc<crate::deletion::downloads::DownloadCounter>,
    /// The admin token that lets an admin override the deletion rules (with a reason).
    pub admin_token: Option<crate::config::Secret>,
    /// The state store: ledger, tombstones, revocations, provenance history.
    pub state: Arc<dyn crate::state::StateStore>,
    /// Woken when the TUF feed's outbox has new events.
    pub feed_wake: Arc<tokio::sync::Notify>,
}

/// The gateway's proxy logic.
pub struct Gateway {
    routes: Vec<RouteEntry>,
    rules: Arc<RulesHandle>,
    metrics: Arc<Metrics>,
    exchanger: Arc<Exchanger>,
    failed_exchanges: FailedExchanges,
    provenance: Arc<ProvenanceVerifier>,
    records: Records,
    client: crate::config::validated::ClientLimits,
    head_clocks: Arc<slow_clients::HeadClocks>,
}

const VIA: &str = "1.1 portcullis";

/// How long a refused request's remaining body is read and discarded before closing.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

impl Gateway {
    /// A gateway over `registries` (most specific route first), deciding with `rules`,
    /// serving trusted-publishing exchanges with `exchanger`; failed npm exchanges are
    /// remembered for `failure_memory`.
    pub fn new(
        registries: &[Arc<Registry>],
        rules: Arc<RulesHandle>,
        metrics: Arc<Metrics>,
        exchanger: Arc<Exchanger>,
        failure_memory: std::time::Duration,
        provenance: Arc<ProvenanceVerifier>,
        records: Records,
    ) -> Self {
        let routes = registries
            .iter()
            .map(|r| RouteEntry {
                registry: r.clone(),
                peers: UpstreamPeers::new(r),
            })
            .collect();
        let client = crate::config::validated::ClientLimits::default();
        Gateway {
            routes,
            rules,
            metrics,
            exchanger,
            failed_exchanges: FailedExchanges::new(failure_memory),
            provenance,
            records,
            client,
            head_clocks: slow_clients::HeadClocks::new(client.header_timeout, client.idle_timeout),
        }
    }

    /// Applies the `[client]` time limits; `head_clocks` is shared with the
    /// [`slow_clients::HeadTimeout`] wrapping this proxy.
    pub fn with_client_limits(
        mut self,
        limits: crate::config::validated::ClientLimits,
        head_clocks: Arc<slow_clients::HeadClocks>,
    ) -> Self {
        self.client = limits;
        self.head_clocks = head_clocks;
        self
    }

    /// Checks on the head alone, before anything else (the exchange endpoints and routing
    /// included): framing another parser could read differently ([`framing::check`]), then
    /// credentials in the URL (nothing of such a request is forwarded, and the URL's secret is
    /// never logged: logs carry the path).
    fn screen_head(session: &Session) -> Result<(), Refusal> {
        if let Some(h1) = session.as_downstream().as_http1() {
            framing::check(&h1.get_headers_raw_bytes(), &session.req_header().headers)?;
        }
        match crate::auth::credentials::credentials_in_url(&session.req_header().uri) {
            Some(reason) => Err(Refusal::CredentialsInUrl(reason)),
            None => Ok(()),
        }
    }

    /// Answers `refusal` and keeps it for the request's records; the request is over (the
    /// request filter's `Ok(true)`).
    async fn refuse(&self, session: &mut Session, ctx: &mut RequestCtx, refusal: Refusal) -> Result<bool> {
        self.respond_refusal(session, ctx, &refusal).await?;
        ctx.refusal = Some(refusal);
        Ok(true)
    }

    /// The id of the client connection (as [`slow_clients::HeadTimeout`] knows it).
    fn connection_id(session: &Session) -> Option<pingora::protocols::UniqueIDType> {
        session.as_downstream().as_http1().map(|h1| h1.stream().id())
    }

    /// The state store (shared with the trusted-publishing exchange).
    fn state(&self) -> &Arc<dyn crate::state::StateStore> {
        &self.records.state
    }

    fn registry(&self, ctx: &RequestCtx) -> Option<&Arc<Registry>> {
        ctx.route.and_then(|i| self.routes.get(i)).map(|r| &r.registry)
    }

    fn registry_label<'a>(&'a self, ctx: &RequestCtx) -> &'a str {
        self.registry(ctx).map_or("none", |r| r.name.as_str())
    }

    /// Routes and classifies the request head; returns a refusal to send instead of proxying.
    fn route(&self, session: &Session, ctx: &mut RequestCtx) -> std::result::Result<(), Refusal> {
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.host())
            .map(|h| strip_port(h).to_ascii_lowercase());
        ctx.host = host.clone();
        let path = protocol::path::check(req.uri.path())?;
        let (index, rest) = self
            .routes
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.registry.route.strip(host.as_deref(), path).map(|rest| (i, rest)))
            .ok_or(Refusal::NoRoute)?;
        ctx.route = Some(index);
        let registry = &self.routes[index].registry;
        ctx.upstream_path = Some(match req.uri.query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_owned(),
        });
        ctx.class = protocol::classify(registry.protocol, registry.pypi_deletion_api, &req.method, rest)?;

        let declared_length = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = declared_length {
            self.check_size(ctx, registry, length)?;
        }

        if ctx.class.is_decided_write() {
            protocol::headers::check_identity_coding(&req.headers)?;
        }
        let rules = ctx.rules.clone().ok_or(Refusal::Internal)?;
        match &ctx.class {
            RequestClass::Write { action, project } => {
                // The project is known from the path: refuse denied projects before any byte
                // reaches the backend. The final decision still comes at the end of the body.
                let facts = WriteFacts {
                    registry: &registry.name,
                    action: *action,
                    project,
                    body_bytes: 0,
                };
                let decision = rules.rules.decide_write(&facts);
                if let Outcome::Refuse { kind, message } = &decision.outcome {
                    let refusal = Refusal::from_rules(*kind, message.clone());
                    ctx.decision = Some(DecisionRecord {
                        project: project.clone(),
                        action: *action,
                        decision,
                        body_sha256: None,
                        detail: None,
                    });
                    return Err(refusal);
                }
                let mut write = WriteState::new(None, Some(*action), Some(project.clone()));
                let npm_document_put = registry.protocol == Protocol::Npm
                    && req.method == http::Method::PUT
                    && (*action == WriteAction::Upload || rest.contains("/-rev/"));
                if npm_document_put {
                    // PUT /<pkg>: a publish or a metadata change, scanned as it streams.
                    protocol::headers::check_json_utf8(&req.headers)?;
                    write.npm = Some(crate::protocol::npm_body::PublishInspector::new(
                        project.as_str(),
                        crate::protocol::npm_body::Limits::default(),
                        registry.strip_npm_provenance,
                    ));
                }
                ctx.write = Some(Box::new(write));
            }
            RequestClass::PypiForm => {
                let form = FormInspector::start(protocol::headers::single(&req.headers, http::header::CONTENT_TYPE)?)?;
                ctx.upstream_content_type = Some(form.canonical_content_type());
                ctx.write = Some(Box::new(WriteState::new(Some(form), None, None)));
            }
            RequestClass::Read | RequestClass::Account => {}
        }
        if ctx.write.is_some() {
            ctx.in_flight = Some(InFlight::new(self.metrics.clone(), &registry.name));
        }
        Ok(())
    }

    /// Refuses bodies over the registry's hard limit, and uploads over the policy limit.
    fn check_size(&self, ctx: &RequestCtx, registry: &Registry, bytes: u64) -> std::result::Result<(), Refusal> {
        if bytes > registry.max_body_bytes {
            return Err(Refusal::TooLarge {
                message: format!(
                    "the request body is larger than this registry accepts ({} bytes at most)",
                    registry.max_body_bytes
                ),
            });
        }
        let is_upload = match &ctx.class {
            RequestClass::PypiForm => true,
            RequestClass::Write { action, .. } => *action == WriteAction::Upload,
            _ => false,
        };
        if is_upload {
            if let Some(rules) = &ctx.rules {
                if let Some(d) = rules.rules.check_upload_size(&registry.name, bytes) {
                    if let Outcome::Refuse { kind, message } = d.outcome {
                        return Err(Refusal::from_rules(kind, message));
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes an answer the gateway makes itself (refusals, exchange endpoints, stored
    /// provenance): status, optional reason phrase, content type, `Cache-Control: no-store`
    /// when asked, `X-Request-Id`, `Via`. A connection whose request body is still arriving is
    /// not kept alive. Returns whether the body was still pending.
    async fn write_answer(&self, session: &mut Session, ctx: &RequestCtx, answer: Answer<'_>) -> Result<bool> {
        let mut resp = ResponseHeader::build(answer.status, Some(6))?;
        if let Some(reason) = answer.reason {
            resp.set_reason_phrase(Some(reason))?;
        }
        resp.insert_header(http::header::CONTENT_TYPE, answer.content_type)?;
        resp.insert_header(http::header::CONTENT_LENGTH, answer.body.len().to_string())?;
        if answer.no_store {
            resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        }
        resp.insert_header("x-request-id", ctx.id.as_str())?;
        resp.insert_header(http::header::VIA, VIA)?;
        let body_pending = !session.is_body_done();
        if body_pending {
            // The client is still sending: do not keep a connection with unread body bytes.
            session.set_keepalive(None);
        }
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(Bytes::from(answer.body)), true)
            .await?;
        Ok(body_pending)
    }

    /// Writes a refusal as JSON, with the message in the reason phrase on PyPI routes.
    async fn respond_refusal(&self, session: &mut Session, ctx: &RequestCtx, refusal: &Refusal) -> Result<()> {
        let reason = self
            .registry(ctx)
            .is_some_and(|r| r.protocol == Protocol::Pypi)
            .then(|| refusal.reason_phrase());
        let answer = Answer {
            status: refusal.status(),
            reason: reason.as_deref(),
            content_type: "application/json",
            no_store: true,
            body: refusal.body(&ctx.id),
        };
        let body_pending = self.write_answer(session, ctx, answer).await?;
        if body_pending {
            // Lingering close, as nginx does: read and discard what the client is still sending
            // for a bounded time, so closing does not reset the connection before the client
            // has read the refusal. Nothing read here is forwarded.
            let _ = tokio::time::timeout(LINGER, session.drain_request_body()).await;
        }
        Ok(())
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(
        host,
        |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host },
    )
}

/// A list-valued header (`Via`, `X-Forwarded-For`) with `value` appended to what came before.
fn appended(prior: Option<&http::HeaderValue>, value: &str) -> String {
    match prior.and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {value}"),
        _ => value.to_owned(),
    }
}

/// Maps a pingora failure to what the client is told (and a metric kind), or `None` when the
/// client is gone.
fn refusal_for_error(e: &Error) -> Option<(Refusal, &'static str)> {
    use ErrorType::*;
    match (e.esource(), e.etype()) {
        (_, ConnectTimedout) => Some((Refusal::UpstreamTimeout, "connect_timeout")),
        (
            _,
            ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure | TLSHandshakeFailure | InvalidCert,
        ) => Some((Refusal::UpstreamUnavailable, "connect")),
        (ErrorSource::Upstream, ReadTimedout | WriteTimedout) => Some((Refusal::UpstreamTimeout, "timeout")),
        (ErrorSource::Upstream, _) => Some((Refusal::UpstreamFailed, "protocol")),
        (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed | ReadTimedout | WriteTimedout) => None,
        (ErrorSource::Downstream, _) => Some((Refusal::BadRequest(e.etype().as_str().to_owned()), "")),
        _ => Some((Refusal::Internal, "")),
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut RequestCtx) -> Result<()> {
        if let Some(id) = Self::connection_id(session) {
            self.head_clocks.head_received(id);
        }
        session
            .as_downstream_mut()
            .set_read_timeout(Some(self.client.read_timeout));
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.rules = Some(self.rules.current());
        if let Err(refusal) = Self::screen_head(session) {
            return self.refuse(session, ctx, refusal).await;
        }
        if let Some(endpoint) = crate::trusted_publishing::wire::Endpoint::recognise(session.req_header().uri.path()) {
            self.serve_exchange(session, ctx, endpoint).await?;
            return Ok(true);
        }
        let mut routed = match self.route(session, ctx) {
            Ok(()) => self.authenticate(session, ctx).await,
            Err(refusal) => Err(refusal),
        };
        if routed.is_ok() {
            routed = self.admin_override(session, ctx);
        }
        if routed.is_ok() && session.req_header().method == http::Method::DELETE {
            // A DELETE has no body to hold back: the backend acts on the head, so it is decided
            // here, before anything is forwarded.
            if let (Some(registry), RequestClass::Write { project, action }) =
                (self.registry(ctx).cloned(), ctx.class.clone())
            {
                routed = match self.check_token_scope(ctx, &registry, action, &project) {
                    Ok(()) if registry.protocol == Protocol::Npm => {
                        self.decide_npm_delete(session, ctx, &registry, &project).await
                    }
                    // A PyPI DELETE is classified as a write only on a devpi registry.
                    Ok(()) => self.decide_devpi_delete(session, ctx, &registry).await,
                    Err(r) => Err(r),
                };
            }
        }
        if routed.is_ok() && ctx.class == RequestClass::Read {
            if let Some(registry) = self.registry(ctx).filter(|r| r.protocol == Protocol::Npm).cloned() {
                let path = ctx.upstream_path.clone().unwrap_or_default();
                let path = path.split('?').next().unwrap_or_default();
                if let Some((package, version)) = integrity::npm_attestations_path(path) {
                    if let Err(refusal) = self
                        .serve_npm_attestations(session, ctx, &registry, &package, &version)
                        .await
                    {
                        return self.refuse(session, ctx, refusal).await;
                    }
                    return Ok(true);
                }
            }
            if let Some(registry) = self.registry(ctx).filter(|r| r.protocol == Protocol::Pypi).cloned() {
                let path = ctx.upstream_path.clone().unwrap_or_default();
                let path = path.split('?').next().unwrap_or_default();
                if let Some((project, version, filename)) = integrity::integrity_path(path) {
                    if let Err(refusal) = self
                        .serve_integrity(session, ctx, &registry, project, version, filename)
                        .await
                    {
                        return self.refuse(session, ctx, refusal).await;
                    }
                    return Ok(true);
                }
            }
        }
        match routed {
            Ok(()) => Ok(false),
            Err(refusal) => self.refuse(session, ctx, refusal).await,
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .and_then(|i| self.routes.get(i))
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "request without a route"))?;
        Ok(route.peers.peer(ctx.write.is_some()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(path) = &ctx.upstream_path {
            let uri = path
                .parse::<http::Uri>()
                .map_err(|e| Error::because(ErrorType::InternalError, "rewriting the upstream path", e))?;
            upstream_request.set_uri(uri);
        }
        for name in protocol::headers::underscored(&upstream_request.headers) {
            tracing::debug!(request_id = %ctx.id, header = %name, "dropped a header name with '_'");
            upstream_request.remove_header(&name);
        }
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string());
        if let Some(ip) = client_ip {
            let forwarded_for = appended(upstream_request.headers.get("x-forwarded-for"), &ip);
            upstream_request.insert_header("x-forwarded-for", forwarded_for)?;
        }
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        upstream_request.insert_header("x-forwarded-proto", if tls { "https" } else { "http" })?;
        match &ctx.host {
            Some(host) => upstream_request.insert_header("x-forwarded-host", host.as_str())?,
            None => {
                upstream_request.remove_header("x-forwarded-host");
            }
        }
        let via = appended(upstream_request.headers.get(http::header::VIA), VIA);
        upstream_request.insert_header(http::header::VIA, via)?;
        upstream_request.insert_header("x-request-id", ctx.id.as_str())?;
        if let Some(content_type) = &ctx.upstream_content_type {
            upstream_request.insert_header(http::header::CONTENT_TYPE, content_type.as_str())?;
        }
        // The admin override is the gateway's business: the backend never sees its token.
        upstream_request.remove_header(deletion::ADMIN_TOKEN_HEADER);
        upstream_request.remove_header(deletion::OVERRIDE_REASON_HEADER);
        if ctx.write.as_ref().is_some_and(|w| w.npm.is_some())
            && self.registry(ctx).is_some_and(|r| r.strip_npm_provenance)
        {
            // The forwarded publish may be shorter than the client's: send it chunked.
            upstream_request.remove_header(&http::header::CONTENT_LENGTH);
            upstream_request.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        match ctx.credential {
            CredentialAction::Keep => {}
            CredentialAction::Remove => {
                upstream_request.remove_header(&http::header::AUTHORIZATION);
            }
            CredentialAction::SwapForBackend => {
                upstream_request.remove_header(&http::header::AUTHORIZATION);
                if let Some(credential) = self.registry(ctx).and_then(|r| r.backend_credential.as_ref()) {
                    let mut value = http::HeaderValue::from_str(&credential.header_value())
                        .map_err(|e| Error::because(ErrorType::InternalError, "backend credential header", e))?;
                    value.set_sensitive(true);
                    upstream_request.insert_header(http::header::AUTHORIZATION, value)?;
                }
            }
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        match self
            .stream_chunk(session, ctx, body.take().unwrap_or_default(), end_of_stream)
            .await
        {
            Ok(forward) => {
                // Never `None` mid-stream: that would end the upstream body early. At the end,
                // nothing left to send is `None`, not an empty chunk: pingora would try to
                // write the empty chunk to an upstream body already complete (every GET) and
                // log a warning for it.
                *body = (!(forward.is_empty() && end_of_stream)).then_some(forward);
                Ok(())
            }
            Err(refusal) => {
                let status = refusal.status();
                ctx.refusal = Some(refusal);
                Error::e_explain(ErrorType::HTTPStatus(status), "refused by the gateway")
            }
        }
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if !(100..200).contains(&upstream_response.status.as_u16()) {
            self.ledger_backend_answered(session, upstream_response.status.as_u16(), ctx)
                .await;
            self.deletions_answered(upstream_response.status.as_u16(), ctx).await;
        }
        if ctx.upstream_header_at.is_none() {
            let now = Instant::now();
            ctx.upstream_header_at = Some(now);
            self.metrics
                .upstream_latency
                .with_label_values(&[self.registry_label(ctx)])
                .observe(now.duration_since(ctx.started).as_secs_f64());
        }
        let via = appended(upstream_response.headers.get(http::header::VIA), VIA);
        upstream_response.insert_header(http::header::VIA, via)?;
        upstream_response.insert_header("x-request-id", ctx.id.as_str())?;
        Ok(())
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer: {peer}"));
        if ctx.write.is_some()
            || !session.req_header().method.is_idempotent()
            || session.as_ref().retry_buffer_truncated()
        {
            // A write is never replayed: its body went through hashing, parsing and the decision
            // once, and a second pass would be decided on different facts.
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let refusal = match ctx.refusal.clone() {
            Some(r) => Some(r),
            None => refusal_for_error(e).map(|(refusal, kind)| {
                if !kind.is_empty() {
                    self.metrics
                        .upstream_errors
                        .with_label_values(&[self.registry_label(ctx), kind])
                        .inc();
                }
                refusal
            }),
        };
        let Some(refusal) = refusal else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        let code = refusal.status();
        if session.response_written().is_none() {
            if let Err(write_error) = self.respond_refusal(session, ctx, &refusal).await {
                tracing::debug!(request_id = %ctx.id, error = %write_error, "could not send the refusal");
            }
        }
        ctx.refusal = Some(refusal);
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _error: &Error) -> bool {
        // Refusals are decisions, logged once as such by `record`; not proxy errors.
        ctx.refusal.as_ref().is_some_and(|r| {
            !matches!(
                r,
                Refusal::UpstreamUnavailable | Refusal::UpstreamTimeout | Refusal::UpstreamFailed | Refusal::Internal
            )
        })
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(id) = Self::connection_id(session) {
            self.head_clocks.request_done(id);
        }
        let summary = record::RequestSummary::new(self, session, ctx);
        self.record(session, e, ctx, &summary);
        // Only writes are audited: a read makes no audit record, so it builds none.
        let audit_base = Self::may_audit(ctx).then(|| summary.audit_base(ctx));
        self.count_download(session, ctx);
        self.ledger_finish(session, e, ctx).await;
        self.deletions_finished(ctx).await;
        // The upload is over for the client: the gauge drops before the bookkeeping below.
        ctx.in_flight = None;
        if let Some(base) = audit_base {
            self.audit(session, ctx, base).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.org:8080"), "example.org");
        assert_eq!(strip_port("example.org"), "example.org");
        assert_eq!(strip_port("[::1]:8080"), "::1");
    }
}
