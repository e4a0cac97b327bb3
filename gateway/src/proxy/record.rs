//! Record: what a finished request leaves behind besides the ledger and the audit log — the
//! decision journal's explanation (`GET /decisions/<id>`), the metrics, and the decision or
//! access log line. All three read one [`RequestSummary`], worked out once.

use pingora::proxy::Session;
use pingora::Error;
use portcullis_rules::WriteAction;
use serde::Serialize;

use super::ctx::{Credential, Deletions, RequestCtx};
use super::Gateway;
use crate::clock::unix_now;
use crate::protocol::RequestClass;
use crate::state::AuditRecord;

/// A request's explanation as the journal keeps it (`GET /decisions/<id>`), serialised straight
/// from the request's state (no intermediate JSON tree).
#[derive(Serialize)]
struct Explanation<'a> {
    request_id: &'a str,
    registry: &'a str,
    method: &'a str,
    path: &'a str,
    status: u16,
    outcome: &'a str,
    refusal: Option<Refused<'a>>,
    rules: Option<Rules<'a>>,
    decision: Option<Decided<'a>>,
    facts: Facts<'a>,
    provenance_steps: &'a [String],
    ledger_id: Option<i64>,
    deletions: Option<Vec<Deleted<'a>>>,
    admin_override: Option<&'a str>,
}

/// A refusal's stable code and message.
#[derive(Serialize)]
struct Refused<'a> {
    code: &'a str,
    message: String,
}

/// The rules snapshot a request was decided under.
#[derive(Serialize)]
struct Rules<'a> {
    revision: &'a str,
    loaded_at: &'a str,
}

/// The decision on a write.
#[derive(Serialize)]
struct Decided<'a> {
    rule: &'a str,
    action: &'a str,
    project: &'a str,
    detail: Option<&'a str>,
    body_sha256: Option<&'a str>,
}

/// The facts a decision used.
#[derive(Serialize)]
struct Facts<'a> {
    body_bytes: u64,
    credential: &'a str,
    token_id: &'a str,
    publisher: Option<&'a str>,
}

/// One decided change of a delete-like request.
#[derive(Serialize)]
struct Deleted<'a> {
    action: &'a str,
    target: String,
    outcome: &'a str,
    rule: &'a str,
    mode: &'a str,
    facts: &'a [String],
    refusal: Option<Refused<'a>>,
}

/// What every record of a finished request says the same way: the journal, the metrics, the
/// log line and (through [`RequestSummary::audit_base`]) the audit records.
pub(super) struct RequestSummary<'a> {
    registry: &'a str,
    /// The status the client was sent (0 when none was).
    status: u16,
    /// `"allow"` unless the gateway refused the request or its rules refused the write.
    outcome: &'static str,
    credential: Credential<'a>,
    /// The refusal's stable code, or empty.
    code: &'static str,
    rules_revision: &'a str,
    rules_loaded_at: &'a str,
    duration_ms: f64,
}

impl<'a> RequestSummary<'a> {
    /// The summary of the request `ctx` as it finishes.
    pub(super) fn new(gateway: &'a Gateway, session: &Session, ctx: &'a RequestCtx) -> Self {
        let registry = gateway.registry_label(ctx);
        let project = ctx.decision.as_ref().map(|d| d.project.as_str()).unwrap_or_default();
        let allowed = ctx.refusal.is_none() && ctx.decision.as_ref().is_none_or(|d| d.decision.is_allowed());
        RequestSummary {
            registry,
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            outcome: if allowed { "allow" } else { "refuse" },
            credential: ctx.credential(registry, project),
            code: ctx.refusal.as_ref().map_or("", |r| r.code()),
            rules_revision: ctx.rules.as_ref().map_or("", |r| r.rules.revision()),
            rules_loaded_at: ctx.rules.as_ref().map_or("", |r| r.loaded_at.as_str()),
            duration_ms: ctx.started.elapsed().as_secs_f64() * 1000.0,
        }
    }
}

impl RequestSummary<'_> {
    /// What every audit record of the request shares (the record's own fields are filled in
    /// by the caller; `line` is written when it is appended), with the status sent.
    pub(super) fn audit_base(&self, ctx: &RequestCtx) -> (AuditRecord, u16) {
        let record = AuditRecord {
            at: unix_now(),
            request_id: ctx.id.clone(),
            registry: self.registry.to_owned(),
            outcome: self.outcome.to_owned(),
            code: self.code.to_owned(),
            rules_revision: self.rules_revision.to_owned(),
            ..AuditRecord::default()
        };
        (record, self.status)
    }
}

impl Gateway {
    /// Records a finished request: its explanation, metrics and log line.
    pub(super) fn record(
        &self,
        session: &Session,
        error: Option<&Error>,
        ctx: &RequestCtx,
        summary: &RequestSummary<'_>,
    ) {
        self.journal(session, ctx, summary);
        self.count(ctx, summary);
        self.log(session, error, ctx, summary);
    }

    /// Journals the explanation of a write or a refusal.
    fn journal(&self, session: &Session, ctx: &RequestCtx, summary: &RequestSummary<'_>) {
        if ctx.decision.is_none() && ctx.refusal.is_none() && ctx.deletions.is_none() {
            return;
        }
        let req = session.req_header();
        let credential = &summary.credential;
        let explanation = Explanation {
            request_id: &ctx.id,
            registry: summary.registry,
            method: req.method.as_str(),
            path: req.uri.path(),
            status: summary.status,
            outcome: summary.outcome,
            refusal: ctx.refusal.as_ref().map(|r| Refused {
                code: r.code(),
                message: r.to_string(),
            }),
            rules: ctx.rules.as_ref().map(|_| Rules {
                revision: summary.rules_revision,
                loaded_at: summary.rules_loaded_at,
            }),
            decision: ctx.decision.as_ref().map(|d| Decided {
                rule: d.decision.rule.as_str(),
                action: d.action.as_str(),
                project: d.project.as_str(),
                detail: d.detail.as_deref(),
                body_sha256: d.body_sha256.as_deref(),
            }),
            facts: Facts {
                body_bytes: ctx.body_bytes,
                credential: credential.kind,
                token_id: credential.token_id.unwrap_or_default(),
                publisher: credential.publisher,
            },
            provenance_steps: &ctx.provenance_steps,
            ledger_id: ctx.ledger.id,
            deletions: ctx.deletions.as_ref().map(|Deletions { project, records, .. }| {
                records
                    .iter()
                    .map(|r| Deleted {
                        action: r.action.as_str(),
                        target: r.target(project),
                        outcome: r.outcome(),
                        rule: r.decision.rule.as_str(),
                        mode: r.decision.mode.as_str(),
                        facts: &r.decision.facts_used,
                        refusal: r.decision.refusal().map(|(code, message)| Refused {
                            code: code.code(),
                            message: message.to_owned(),
                        }),
                    })
                    .collect()
            }),
            admin_override: ctx.admin_override.as_deref(),
        };
        self.records.journal.record(&ctx.id, &explanation);
    }

    /// Counts the request in the metrics.
    fn count(&self, ctx: &RequestCtx, summary: &RequestSummary<'_>) {
        let registry = summary.registry;
        let class = ctx.class.method_class();
        let m = &self.metrics;
        let status = summary.status.to_string();
        m.requests.with_label_values(&[registry, class, &status]).inc();
        m.request_bytes
            .with_label_values(&[registry, class])
            .inc_by(ctx.body_bytes);
        m.request_duration
            .with_label_values(&[registry, class])
            .observe(summary.duration_ms / 1000.0);
        if let Some(refusal) = &ctx.refusal {
            m.refusals.with_label_values(&[registry, refusal.code()]).inc();
        }
        if let Some(d) = &ctx.decision {
            m.decisions
                .with_label_values(&[registry, d.decision.rule.as_str(), summary.outcome])
                .inc();
            if summary.outcome == "allow" && d.action == WriteAction::Upload {
                m.upload_size
                    .with_label_values(&[registry])
                    .observe(ctx.body_bytes as f64);
            }
        }
    }

    /// Writes the decision log line of a write, or the access line of another request (at
    /// info for refusals, errors and non-reads; at debug for plain reads).
    fn log(&self, session: &Session, error: Option<&Error>, ctx: &RequestCtx, summary: &RequestSummary<'_>) {
        let req = session.req_header();
        let RequestSummary {
            registry,
            status,
            outcome,
            code,
            rules_revision,
            rules_loaded_at,
            duration_ms,
            ..
        } = *summary;
        if let Some(d) = &ctx.decision {
            let credential = &summary.credential;
            tracing::info!(
                target: "portcullis::decision",
                request_id = %ctx.id,
                registry,
                credential = credential.kind,
                token_id = credential.token_id.unwrap_or_default(),
                publisher = credential.publisher.unwrap_or_default(),
                project = d.project.as_str(),
                action = d.action.as_str(),
                outcome,
                rule = d.decision.rule.as_str(),
                rules_revision,
                rules_loaded_at,
                code,
                status,
                body_bytes = ctx.body_bytes,
                body_sha256 = d.body_sha256.as_deref().unwrap_or(""),
                detail = d.detail.as_deref().unwrap_or(""),
                duration_ms,
                "decision"
            );
        } else if ctx.class != RequestClass::Read || ctx.refusal.is_some() || error.is_some() {
            tracing::info!(
                target: "portcullis::access",
                request_id = %ctx.id,
                registry,
                method = %req.method,
                path = req.uri.path(),
                class = ctx.class.method_class(),
                status,
                code,
                error = error.map(|e| e.to_string()).unwrap_or_default(),
                rules_revision,
                body_bytes = ctx.body_bytes,
                duration_ms,
                "request"
            );
        } else {
            tracing::debug!(
                target: "portcullis::access",
                request_id = %ctx.id,
                registry,
                method = %req.method,
                path = req.uri.path(),
                status,
                duration_ms,
                "request"
            );
        }
    }

    /// Counts a successful file download (for the deletion rules' download threshold).
    pub(super) fn count_download(&self, session: &Session, ctx: &RequestCtx) {
        let req = session.req_header();
        let ok = session.response_written().is_some_and(|r| r.status.as_u16() == 200);
        if !ok || req.method != http::Method::GET || ctx.class != RequestClass::Read {
            return;
        }
        let (Some(registry), Some(path)) = (self.registry(ctx), ctx.upstream_path.as_deref()) else {
            return;
        };
        if let Some((project, version)) = crate::deletion::downloads::downloaded(registry.protocol, path) {
            self.records
                .downloads
                .record(&registry.name, &project, &version, crate::clock::unix_now());
        }
    }
}
