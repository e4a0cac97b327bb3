//! `POST /tokens/revoke`: revokes an upload token before it expires.
//!
//! Body: `{"token": "pcul_…", "reason": "…"}` (the token itself, whose signature is checked and
//! whose expiry bounds the revocation), or `{"token_id": "…", "reason": "…"}` (the id from the
//! exchange log line; revoked for the longest token lifetime). Needs
//! `Authorization: Bearer <admin token>`; without an admin token in the config the endpoint is
//! off. Every revocation is logged with its reason.

use http::Response;
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::json;

use super::AdminApp;
use crate::auth::upload_token::MAX_LIFETIME;

/// Largest request body accepted.
const MAX_BODY: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    token: Option<String>,
    token_id: Option<String>,
    reason: String,
}

impl AdminApp {
    pub(super) async fn revoke(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().method != http::Method::POST {
            return Self::json(405, json!({"code": "method_not_allowed", "message": "use POST"}));
        }
        let Some(exchanger) = &self.exchanger else {
            return Self::json(
                403,
                json!({"code": "admin_writes_disabled", "message": "set admin.token_file in the configuration to enable admin writes"}),
            );
        };
        if let Err(refused) = self.check_admin(session) {
            return *refused;
        }
        let body = match Self::read_body(session, MAX_BODY).await {
            Ok(body) => body,
            Err(refused) => return *refused,
        };
        let request: RevokeRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return Self::json(
                    400,
                    json!({"code": "bad_request", "message": format!("expected {{\"token\" or \"token_id\", \"reason\"}}: {e}")}),
                )
            }
        };
        if request.reason.trim().is_empty() {
            return Self::json(
                400,
                json!({"code": "reason_required", "message": "give a reason for the revocation"}),
            );
        }
        let now = crate::clock::unix_now();
        let (token_id, until) = match (&request.token, &request.token_id) {
            (Some(token), None) => {
                let Some(keys) = exchanger.token_keys() else {
                    return Self::json(
                        409,
                        json!({"code": "no_token_keys", "message": "no upload-token keys are configured"}),
                    );
                };
                match keys.verify(token, now) {
                    Ok(t) => (t.id, t.expires_at),
                    Err(e) => {
                        return Self::json(
                            400,
                            json!({"code": "token_invalid", "message": format!("the token does not verify, so it cannot be used anyway: {e}")}),
                        )
                    }
                }
            }
            (None, Some(id)) if !id.is_empty() && id.len() <= 64 => {
                let lifetime = i64::try_from(MAX_LIFETIME.as_secs()).unwrap_or(i64::MAX);
                (id.clone(), now.saturating_add(lifetime))
            }
            _ => {
                return Self::json(
                    400,
                    json!({"code": "bad_request", "message": "give exactly one of \"token\" or \"token_id\" (at most 64 characters)"}),
                )
            }
        };
        let reason: String = request.reason.chars().take(500).collect();
        match exchanger.state().revoke_token(&token_id, until, &reason).await {
            Ok(()) => {
                tracing::info!(target: "portcullis::admin", action = "revoke_token", token_id = token_id.as_str(), until, reason = reason.as_str(), "upload token revoked");
                Self::json(200, json!({"revoked": token_id, "until": until}))
            }
            Err(e) => Self::json(503, json!({"code": "state_unavailable", "message": e.to_string()})),
        }
    }
}
