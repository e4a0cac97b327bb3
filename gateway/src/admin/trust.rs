//! `GET /trust`: the Sigstore trusted root in force (source, TUF role versions and expiries,
//! the logs, CAs and TSAs with their validity, the last refresh and why provenance cannot be
//! verified now, if it cannot). `POST /trust/refresh` (admin token): refresh from the TUF
//! repository now and answer with the outcome and the same view.

use http::Response;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use super::AdminApp;
use crate::clock::unix_now;
use crate::sigstore::refresh::Refreshed;

impl AdminApp {
    /// `GET /trust`.
    pub(super) fn trust_view(&self) -> Response<Vec<u8>> {
        match &self.trust {
            Some(trust) => Self::json(200, trust.describe(unix_now())),
            None => Self::json(
                404,
                json!({"code": "not_found", "message": "this gateway verifies no provenance"}),
            ),
        }
    }

    /// `POST /trust/refresh`.
    pub(super) async fn trust_refresh(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if session.req_header().method != http::Method::POST {
            return Self::json(405, json!({"code": "method_not_allowed", "message": "use POST"}));
        }
        if let Err(refused) = self.check_admin(session) {
            return *refused;
        }
        let (Some(trust), Some(refresher)) = (&self.trust, &self.trust_refresher) else {
            return Self::json(
                409,
                json!({"code": "trust_not_refreshable", "message": "the trusted root comes from a file ([sigstore] trust = \"file\"); restart to read it again"}),
            );
        };
        let outcome = refresher.refresh_now().await;
        tracing::info!(
            target: "portcullis::trust",
            outcome = ?outcome,
            "Sigstore trusted root refresh requested on the admin listener"
        );
        let (status, refreshed) = match outcome {
            Ok(Refreshed::Updated) => (200, json!({"outcome": "updated"})),
            Ok(Refreshed::Unchanged) => (200, json!({"outcome": "unchanged"})),
            Err(e) => (
                502,
                json!({"outcome": "failed", "code": "trust_refresh_failed", "kind": e.kind.as_str(), "message": e.message}),
            ),
        };
        Self::json(
            status,
            json!({"refresh": refreshed, "trust": trust.describe(unix_now())}),
        )
    }
}
