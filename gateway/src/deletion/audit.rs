//! The audit log: every decision on an upload or a delete-like request, appended to the state
//! store (queryable by project on the admin listener) and, as one JSON line, to a file; deletion
//! records are also posted to an optional webhook.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::state::{AuditRecord, StateStore};

/// How long a webhook delivery may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// One decision to record; see [`AuditLog::append`]. The record's `line` is filled in when
/// it is appended.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    /// What the state store keeps of it.
    pub record: AuditRecord,
    /// The facts the decision used, as short lines.
    pub facts: Vec<String>,
    /// The status the client got.
    pub status: u16,
}

impl AuditEntry {
    /// The record as one JSON line (no trailing newline).
    pub fn line(&self) -> String {
        let r = &self.record;
        json!({
            "time": crate::clock::rfc3339(r.at),
            "at": r.at,
            "request_id": r.request_id,
            "registry": r.registry,
            "project": r.project,
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "outcome": r.outcome,
            "rule": r.rule,
            "rules_revision": r.rules_revision,
            "code": r.code,
            "reason": r.reason,
            "facts": self.facts,
            "status": self.status,
        })
        .to_string()
    }

    fn is_deletion(&self) -> bool {
        self.record.action.starts_with("delete_")
    }
}

/// Where audit records go.
pub struct AuditLog {
    store: Arc<dyn StateStore>,
    file: Mutex<std::fs::File>,
    path: PathBuf,
    webhook: Option<(reqwest::Client, String)>,
}

impl AuditLog {
    /// An audit log into `store` and the JSON-lines file at `path` (created, appended to);
    /// deletion records also go to `webhook_url` when set.
    pub fn new(store: Arc<dyn StateStore>, path: PathBuf, webhook_url: Option<String>) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let webhook = match webhook_url {
            None => None,
            Some(url) => {
                let client = reqwest::Client::builder()
                    .timeout(WEBHOOK_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(std::io::Error::other)?;
                Some((client, url))
            }
        };
        Ok(AuditLog {
            store,
            file: Mutex::new(file),
            path,
            webhook,
        })
    }

    /// Appends a record: state store, file, and for deletions the webhook (in the background).
    /// Failures are logged, never passed on: the decision has been made and answered by now.
    pub async fn append(&self, entry: &AuditEntry) {
        let record = AuditLog::stored(entry);
        if let Err(e) = self.store.append_audit(&record).await {
            tracing::error!(request_id = %record.request_id, error = %e, "the audit record could not be stored");
        }
        self.publish(entry, record.line);
    }

    /// The record as the state store keeps it, with its JSON line: what a caller that appends
    /// it in a transaction of its own (an upload's, with its ledger row's finish) stores.
    pub fn stored(entry: &AuditEntry) -> AuditRecord {
        AuditRecord {
            line: entry.line(),
            ..entry.record.clone()
        }
    }

    /// The rest of [`AuditLog::append`] once the record is stored (by `append` or by the
    /// caller): its `line` into the file, and for deletions to the webhook (in the background).
    pub fn publish(&self, entry: &AuditEntry, line: String) {
        let written = match self.file.lock() {
            // One write per record: with O_APPEND, lines of concurrent writers (the old and the
            // new process of a graceful upgrade) never interleave.
            Ok(mut file) => file.write_all(format!("{line}\n").as_bytes()),
            Err(_) => Ok(()),
        };
        if let Err(e) = written {
            tracing::error!(file = %self.path.display(), error = %e, "the audit record could not be written to the file");
        }
        if let (true, Some((client, url))) = (entry.is_deletion(), &self.webhook) {
            let request = client
                .post(url.as_str())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(line);
            let request_id = entry.record.request_id.clone();
            tokio::spawn(async move {
                match request.send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => tracing::warn!(
                        request_id,
                        status = r.status().as_u16(),
                        "the audit webhook refused a record"
                    ),
                    Err(e) => {
                        tracing::warn!(request_id, error = %e.without_url(), "the audit webhook could not be reached")
                    }
                }
            });
        }
    }

    /// The newest `limit` records of a project, newest first, as their JSON lines.
    pub async fn of_project(
        &self,
        registry: &str,
        project: &str,
        limit: u32,
    ) -> Result<Vec<serde_json::Value>, crate::state::StateError> {
        let records = self.store.audit_of_project(registry, project, limit).await?;
        Ok(records
            .into_iter()
            .map(|r| serde_json::from_str(&r.line).unwrap_or(serde_json::Value::String(r.line)))
            .collect())
    }
}
