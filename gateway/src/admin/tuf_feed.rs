//! `GET /tuf`: each fed registry's TUF feed at a glance (open and failed events, lag, the
//! newest failures). `POST /tuf/retry?registry=<name>` (admin token): send the registry's
//! failed events again.

use http::Response;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

use super::audit::query_value;
use super::AdminApp;
use crate::clock::unix_now;
use crate::state::{FeedEvent, FeedState};

/// How many failed events `GET /tuf` lists per registry.
const FAILURES_SHOWN: u32 = 20;

fn event_view(event: &FeedEvent) -> Value {
    json!({
        "id": event.id,
        "action": event.action.as_str(),
        "project": event.project,
        "file": event.file.as_ref().map(|f| f.filename.clone()),
        "request_id": event.request_id,
        "queued_at": crate::clock::rfc3339(event.created_at),
        "attempts": event.attempts,
        "error": event.last_error,
    })
}

impl AdminApp {
    /// `GET /tuf`.
    pub(super) async fn tuf_view(&self) -> Response<Vec<u8>> {
        let Some(feed) = &self.tuf_feed else {
            return Self::json(
                404,
                json!({"code": "not_found", "message": "no registry has [registry.tuf]"}),
            );
        };
        let now = unix_now();
        let mut registries = Vec::new();
        for registry in &feed.registries {
            let name = registry.name.as_str();
            let (status, failed) = match (
                feed.state.feed_status(name).await,
                feed.state.feed_events(name, FeedState::Failed, FAILURES_SHOWN).await,
            ) {
                (Ok(s), Ok(f)) => (s, f),
                (Err(e), _) | (_, Err(e)) => {
                    return Self::json(503, json!({"code": "state_unavailable", "message": e.to_string()}))
                }
            };
            let api = registry.tuf.as_ref().map(|t| t.api.clone());
            registries.push(json!({
                "registry": name,
                "api": api,
                "queued": status.queued,
                "submitted": status.submitted,
                "failed": status.failed,
                "lag_seconds": status.oldest_open_at.map_or(0, |at| (now - at).max(0)),
                "leader_here": self.metrics.tuf_feed_leader.with_label_values(&[name]).get() == 1,
                "failures": failed.iter().map(event_view).collect::<Vec<_>>(),
            }));
        }
        Self::json(200, json!({ "registries": registries }))
    }

    /// `POST /tuf/retry?registry=<name>`.
    pub(super) async fn tuf_retry(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().method != http::Method::POST {
            return Self::json(405, json!({"code": "method_not_allowed", "message": "use POST"}));
        }
        if let Err(refused) = self.check_admin(session) {
            return *refused;
        }
        let Some(feed) = &self.tuf_feed else {
            return Self::json(
                404,
                json!({"code": "not_found", "message": "no registry has [registry.tuf]"}),
            );
        };
        let query = session.req_header().uri.query().unwrap_or_default().to_owned();
        let Some(name) = query_value(&query, "registry").filter(|n| feed.registries.iter().any(|r| r.name == *n))
        else {
            return Self::json(
                400,
                json!({"code": "bad_request", "message": "give ?registry=<name> of a registry with [registry.tuf]"}),
            );
        };
        match feed.state.feed_requeue_failed(&name, unix_now()).await {
            Ok(requeued) => {
                tracing::info!(target: "portcullis::tuf", registry = %name, requeued, "failed TUF feed events sent again on the admin listener");
                feed.wake.notify_one();
                Self::json(200, json!({"registry": name, "requeued": requeued}))
            }
            Err(e) => Self::json(503, json!({"code": "state_unavailable", "message": e.to_string()})),
        }
    }
}
