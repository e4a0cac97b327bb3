//! `GET /audit?registry=<name>&project=<name>[&limit=<n>]`: a project's audit records, newest
//! first (admin token required). `POST /testing/clock` with `{"offset_seconds": n}`: moves the
//! gateway's clock, only with `[testing] adjustable_clock` (end-to-end tests).

use http::Response;
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;

use super::AdminApp;

/// Most records one query returns.
const MAX_LIMIT: u32 = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockRequest {
    offset_seconds: i64,
}

/// The value of `key` in a query string, percent-decoded.
pub(super) fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| crate::protocol::path::percent_decode(&v.replace('+', " ")))?
    })
}

impl AdminApp {
    pub(super) async fn audit_of_project(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if let Err(refused) = self.check_admin(session) {
            return *refused;
        }
        let Some(audit) = &self.audit else {
            return Self::json(404, json!({"code": "not_found", "message": "no audit log here"}));
        };
        let query = session.req_header().uri.query().unwrap_or_default().to_owned();
        let (Some(registry), Some(project)) = (query_value(&query, "registry"), query_value(&query, "project")) else {
            return Self::json(
                400,
                json!({"code": "bad_request", "message": "give ?registry=<name>&project=<normalised name>[&limit=<n>]"}),
            );
        };
        let limit = query_value(&query, "limit")
            .and_then(|l| l.parse::<u32>().ok())
            .unwrap_or(100)
            .min(MAX_LIMIT);
        match audit.of_project(&registry, &project, limit).await {
            Ok(records) => Self::json(
                200,
                json!({"registry": registry, "project": project, "records": records}),
            ),
            Err(e) => Self::json(503, json!({"code": "state_unavailable", "message": e.to_string()})),
        }
    }

    pub(super) async fn move_clock(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if !self.adjustable_clock {
            return Self::json(
                404,
                json!({"code": "not_found", "message": "the clock is not adjustable here ([testing] adjustable_clock)"}),
            );
        }
        if session.req_header().method != http::Method::POST {
            return Self::json(405, json!({"code": "method_not_allowed", "message": "use POST"}));
        }
        let body = match Self::read_body(session, 1024).await {
            Ok(body) => body,
            Err(refused) => return *refused,
        };
        match serde_json::from_slice::<ClockRequest>(&body) {
            Ok(request) => {
                let previous = crate::clock::set_offset(request.offset_seconds);
                tracing::warn!(target: "portcullis::admin", offset_seconds = request.offset_seconds, previous, "the gateway's clock was moved (testing)");
                Self::json(
                    200,
                    json!({"offset_seconds": request.offset_seconds, "now": crate::clock::unix_now()}),
                )
            }
            Err(e) => Self::json(
                400,
                json!({"code": "bad_request", "message": format!("expected {{\"offset_seconds\": n}}: {e}")}),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::query_value;

    #[test]
    fn query_values_are_found_and_decoded() {
        let q = "registry=npm&project=%40acme%2Fwidget&limit=5";
        assert_eq!(query_value(q, "project").as_deref(), Some("@acme/widget"));
        assert_eq!(query_value(q, "limit").as_deref(), Some("5"));
        assert_eq!(query_value(q, "other"), None);
    }
}
