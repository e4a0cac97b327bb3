//! The Repository Service for TUF API, as the feed uses it: add artifacts, delete artifacts,
//! read a task's state. RSTUF has no authentication of its own; the configured header and
//! client certificate are for the reverse proxy that guards it.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::config::TufFeed;

/// One artifact to add: its target path and target info.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Artifact {
    /// The target path.
    pub path: String,
    /// Length, hashes and custom facts.
    pub info: ArtifactInfo,
}

/// A target's info, as TUF targets metadata holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArtifactInfo {
    /// Length in bytes.
    pub length: u64,
    /// Hex digests by TUF hash name (`sha256`, `blake2b-256`, `sha512`).
    pub hashes: std::collections::BTreeMap<&'static str, String>,
    /// Facts kept with the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
}

/// Where an RSTUF task stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Still queued or running (also what Celery answers for a task it does not know).
    Running(String),
    /// Finished and did what was asked.
    Succeeded,
    /// Finished without doing it: RSTUF's reason.
    Failed(String),
}

/// Why a call to the API failed.
#[derive(Debug, thiserror::Error)]
pub enum RstufError {
    /// Not reachable, timed out, or answered 5xx: try again later.
    #[error("the RSTUF API is unavailable: {0}")]
    Unavailable(String),
    /// Answered in a way that will not change by retrying the same request (4xx, not JSON).
    #[error("the RSTUF API refused the request: {0}")]
    Refused(String),
}

/// A client of one RSTUF API.
#[derive(Clone)]
pub struct RstufClient {
    http: reqwest::Client,
    api: String,
}

impl RstufClient {
    /// A client for `feed`'s API, with its TLS settings and header.
    pub fn new(feed: &TufFeed) -> Result<RstufClient, RstufError> {
        let mut headers = http::HeaderMap::new();
        if let Some((name, value)) = &feed.header {
            let mut value = http::HeaderValue::from_bytes(value.expose())
                .map_err(|e| RstufError::Refused(format!("the configured header value: {e}")))?;
            value.set_sensitive(true);
            headers.insert(name.clone(), value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(feed.timeout)
            .connect_timeout(feed.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .no_proxy();
        if let Some(cas) = &feed.ca_certificates {
            for der in cas {
                let cert = reqwest::Certificate::from_der(der).map_err(|e| RstufError::Refused(e.to_string()))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(identity) = &feed.client_identity {
            let identity = reqwest::Identity::from_pem(identity.expose())
                .map_err(|e| RstufError::Refused(format!("the client identity: {e}")))?;
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(|e| RstufError::Refused(e.to_string()))?;
        Ok(RstufClient {
            http,
            api: feed.api.clone(),
        })
    }

    /// Asks RSTUF to add `artifacts` and publish; the task id.
    pub async fn add(&self, artifacts: &[Artifact]) -> Result<String, RstufError> {
        let body = serde_json::json!({ "artifacts": artifacts, "publish_artifacts": true });
        self.submit("/api/v1/artifacts/", &body).await
    }

    /// Asks RSTUF to remove the targets `paths` and publish; the task id.
    pub async fn delete(&self, paths: &[String]) -> Result<String, RstufError> {
        let body = serde_json::json!({ "artifacts": paths, "publish_artifacts": true });
        self.submit("/api/v1/artifacts/delete", &body).await
    }

    async fn submit(&self, path: &str, body: &Value) -> Result<String, RstufError> {
        let answer = self
            .call(self.http.post(format!("{}{path}", self.api)).json(body))
            .await?;
        answer
            .pointer("/data/task_id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| RstufError::Refused(format!("no task id in the answer to {path}: {answer}")))
    }

    /// Where task `task_id` stands.
    pub async fn task(&self, task_id: &str) -> Result<TaskOutcome, RstufError> {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/task/", self.api), [("task_id", task_id)])
            .map_err(|e| RstufError::Refused(format!("task id {task_id:?}: {e}")))?;
        let answer = self.call(self.http.get(url)).await?;
        Ok(task_outcome(&answer))
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Value, RstufError> {
        let response = request
            .send()
            .await
            .map_err(|e| RstufError::Unavailable(crate::error::chain(&e.without_url())))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| RstufError::Unavailable(crate::error::chain(&e.without_url())))?;
        let text = || String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            return Err(RstufError::Unavailable(format!("answered {status}: {}", text())));
        }
        if !status.is_success() {
            return Err(RstufError::Refused(format!("answered {status}: {}", text())));
        }
        serde_json::from_slice(&body)
            .map_err(|e| RstufError::Refused(format!("answered {status} without JSON ({e}): {}", text())))
    }
}

/// Reads a `GET /api/v1/task/` answer: RSTUF reports a task that ran but did nothing as
/// `ERRORED` (older APIs as `SUCCESS` with `result.status: false`), so both are failures.
pub fn task_outcome(answer: &Value) -> TaskOutcome {
    let data = answer.get("data").unwrap_or(&Value::Null);
    let state = data.get("state").and_then(Value::as_str).unwrap_or("PENDING");
    let result = data.get("result").unwrap_or(&Value::Null);
    let reason = || {
        ["error", "message", "details"]
            .iter()
            .find_map(|k| result.get(*k).filter(|v| !v.is_null()))
            .map_or_else(
                || result.to_string(),
                |v| v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            )
    };
    match state {
        "SUCCESS" if result.get("status").and_then(Value::as_bool) == Some(true) => TaskOutcome::Succeeded,
        "SUCCESS" | "ERRORED" | "FAILURE" | "REVOKED" | "REJECTED" | "IGNORED" => {
            TaskOutcome::Failed(format!("RSTUF task {state}: {}", reason()))
        }
        other => TaskOutcome::Running(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn task_answers_read_as_rstuf_reports_them() {
        let done = json!({"data": {"state": "SUCCESS", "result": {"status": true, "message": "Artifact(s) Added"}}});
        assert_eq!(task_outcome(&done), TaskOutcome::Succeeded);
        let did_nothing = json!({"data": {"state": "SUCCESS", "result": {"status": false, "error": "no bootstrap"}}});
        assert_eq!(
            task_outcome(&did_nothing),
            TaskOutcome::Failed("RSTUF task SUCCESS: no bootstrap".into())
        );
        let errored = json!({"data": {"state": "ERRORED", "result": {"status": false, "error": "bad path"}}});
        assert!(matches!(task_outcome(&errored), TaskOutcome::Failed(m) if m.contains("bad path")));
        let failure = json!({"data": {"state": "FAILURE", "result": {"message": "ConnectionError"}}});
        assert!(matches!(task_outcome(&failure), TaskOutcome::Failed(m) if m.contains("ConnectionError")));
        for state in ["PENDING", "RECEIVED", "STARTED", "RUNNING", "PRE_RUN", "RETRY"] {
            let running = json!({"data": {"state": state, "result": null}});
            assert_eq!(task_outcome(&running), TaskOutcome::Running(state.into()));
        }
        assert_eq!(task_outcome(&json!({})), TaskOutcome::Running("PENDING".into()));
    }

    #[test]
    fn artifacts_serialise_as_the_api_takes_them() {
        let artifact = Artifact {
            path: "packages/demo-1.0.tar.gz".into(),
            info: ArtifactInfo {
                length: 25,
                hashes: [("sha256", "ab".into()), ("blake2b-256", "cd".into())]
                    .into_iter()
                    .collect(),
                custom: None,
            },
        };
        assert_eq!(
            serde_json::to_value(&artifact).expect("json"),
            json!({"path": "packages/demo-1.0.tar.gz", "info": {"length": 25, "hashes": {"blake2b-256": "cd", "sha256": "ab"}}})
        );
    }
}
