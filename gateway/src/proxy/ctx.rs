//! Per-request state carried through pingora's phases.

use std::sync::Arc;
use std::time::Instant;

use portcullis_rules::{Decision, ProjectName, WriteAction};
use sha2::{Digest, Sha256};

use super::holdback::HoldBack;
use crate::auth::upload_token::UploadToken;
use crate::error::Refusal;
use crate::metrics::Metrics;
use crate::protocol::pypi::FormInspector;
use crate::protocol::RequestClass;
use crate::reload::RulesSnapshot;

/// Everything the gateway knows about one request.
pub struct RequestCtx {
    /// Request id, sent upstream and to the client as `X-Request-Id`.
    pub id: String,
    /// When the request started.
    pub started: Instant,
    /// Index of the matched registry in the gateway's route table.
    pub route: Option<usize>,
    /// Path and query to send upstream.
    pub upstream_path: Option<String>,
    /// The `Content-Type` sent upstream instead of the client's (a PyPI form's, in the one
    /// spelling the gateway read it with).
    pub upstream_content_type: Option<String>,
    /// What the request is.
    pub class: RequestClass,
    /// The rules snapshot the request is decided under (taken once, at the start).
    pub rules: Option<Arc<RulesSnapshot>>,
    /// Body state of a decided write (boxed: about 2 KiB that reads and idle kept-alive
    /// connections would otherwise carry inside pingora's per-connection future).
    pub write: Option<Box<WriteState>>,
    /// The refusal to send, when the gateway refuses.
    pub refusal: Option<Refusal>,
    /// The decision made on a write.
    pub decision: Option<DecisionRecord>,
    /// Body bytes received from the client.
    pub body_bytes: u64,
    /// When the backend's response header arrived.
    pub upstream_header_at: Option<Instant>,
    /// Original `Host` (without port) for routing and `X-Forwarded-Host`.
    pub host: Option<String>,
    /// Keeps the in-flight gauge raised while a write runs.
    pub in_flight: Option<InFlight>,
    /// How the request was authenticated.
    pub auth: Auth,
    /// What happens to the client's `Authorization` header on the way upstream.
    pub credential: CredentialAction,
    /// The trusted publisher recorded for an exchange served by the gateway.
    pub publisher: Option<String>,
    /// The ledger row of an upload released to the backend.
    pub ledger: LedgerRow,
    /// What the provenance check did, step by step, for the explanation.
    pub provenance_steps: Vec<String>,
    /// A delete-like request's changes, each decided, and how far they got.
    pub deletions: Option<Deletions>,
    /// An admin override's reason, once the admin token in the request verified.
    pub admin_override: Option<String>,
    /// What an upload targets (`name@version file`), once the body told.
    pub upload_target: Option<String>,
}

/// How a request was authenticated.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// Not looked at (reads), or no credential.
    #[default]
    None,
    /// A verified gateway upload token.
    UploadToken(Box<UploadToken>),
    /// The client's own backend credential, passed in legacy mode.
    Legacy,
}

/// Who a request came from, as logs, the ledger and the audit log name it; never a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential<'a> {
    /// `"upload_token"`, `"legacy"` or `"none"`.
    pub kind: &'static str,
    /// The upload token's id.
    pub token_id: Option<&'a str>,
    /// The trusted publisher whose token scope covers the project.
    pub publisher: Option<&'a str>,
}

/// What happens to the client's `Authorization` header upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CredentialAction {
    /// Forward it unchanged.
    #[default]
    Keep,
    /// Replace it with the backend's own credential (or drop it when there is none).
    SwapForBackend,
    /// Drop it (an upload token that is not valid here must never reach a backend).
    Remove,
}

impl RequestCtx {
    /// A fresh context.
    pub fn new() -> Self {
        RequestCtx {
            id: uuid::Uuid::new_v4().simple().to_string(),
            started: Instant::now(),
            route: None,
            upstream_path: None,
            upstream_content_type: None,
            class: RequestClass::Read,
            rules: None,
            write: None,
            refusal: None,
            decision: None,
            body_bytes: 0,
            upstream_header_at: None,
            host: None,
            in_flight: None,
            auth: Auth::None,
            credential: CredentialAction::Keep,
            publisher: None,
            ledger: LedgerRow::default(),
            provenance_steps: Vec::new(),
            deletions: None,
            admin_override: None,
            upload_target: None,
        }
    }
}

/// The ledger row of an upload: written before the upload's last bytes are released,
/// finished once the backend answers (or the request ends without an answer).
#[derive(Debug, Clone, Copy, Default)]
pub struct LedgerRow {
    /// The row's id, once written.
    pub id: Option<i64>,
    /// Whether the row was finished (committed or failed).
    pub finished: bool,
}

impl LedgerRow {
    /// The row to finish now, marking it finished: `None` when there is none or it already was.
    pub fn take_unfinished(&mut self) -> Option<i64> {
        let id = self.id.filter(|_| !self.finished)?;
        self.finished = true;
        Some(id)
    }
}

/// The changes a delete-like request asks for (a removal, an unpublish, a yank), each decided.
#[derive(Debug)]
pub struct Deletions {
    /// The project they change.
    pub project: ProjectName,
    /// One record per change.
    pub records: Vec<crate::deletion::DeletionRecord>,
    /// Whether their tombstones were written (before the deletion was released).
    pub tombstones_written: bool,
    /// Whether the backend's answer (or the request's end) was handled.
    pub answered: bool,
}

impl Deletions {
    /// Decided changes to `project`, not yet released.
    pub fn new(project: ProjectName, records: Vec<crate::deletion::DeletionRecord>) -> Self {
        Deletions {
            project,
            records,
            tombstones_written: false,
            answered: false,
        }
    }
}

impl RequestCtx {
    /// Adds `more` to the decision's detail (what the provenance check found).
    pub fn add_decision_detail(&mut self, more: &str) {
        if let Some(decision) = self.decision.as_mut() {
            decision.detail = Some(match decision.detail.take() {
                Some(detail) => format!("{detail} {more}"),
                None => more.to_owned(),
            });
        }
    }

    /// How the request authenticated, for a write to `project` on `registry`.
    pub fn credential(&self, registry: &str, project: &str) -> Credential<'_> {
        match &self.auth {
            Auth::UploadToken(t) => Credential {
                kind: "upload_token",
                token_id: Some(t.id.as_str()),
                publisher: t.scope_for_project(registry, project).map(|s| s.publisher.as_str()),
            },
            Auth::Legacy => Credential {
                kind: "legacy",
                token_id: None,
                publisher: None,
            },
            Auth::None => Credential {
                kind: "none",
                token_id: None,
                publisher: None,
            },
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}

/// Streaming state of a write body: hashes, the held-back tail and the form parser.
pub struct WriteState {
    /// The held-back tail.
    pub holdback: HoldBack,
    /// SHA-256 of the whole body, as forwarded (logged as `body_sha256`), for writes that no
    /// protocol parser reads. PyPI forms and npm publishes are not hashed whole: the digests
    /// that decisions use and logs show are the uploaded file's, computed by the parser, and a
    /// second pass over every byte would double the gateway's hashing cost.
    pub sha256: Option<Sha256>,
    /// The PyPI form parser, for PyPI posts.
    pub form: Option<FormInspector>,
    /// The npm publish document scanner, for npm publishes.
    pub npm: Option<crate::protocol::npm_body::PublishInspector>,
    /// What the write does, once known.
    pub action: Option<WriteAction>,
    /// The project, once known.
    pub project: Option<ProjectName>,
}

impl WriteState {
    /// State for a write.
    pub fn new(form: Option<FormInspector>, action: Option<WriteAction>, project: Option<ProjectName>) -> Self {
        WriteState {
            holdback: HoldBack::default(),
            sha256: Some(Sha256::new()),
            form,
            npm: None,
            action,
            project,
        }
    }

    /// Whether a protocol parser reads this body (then it is not hashed whole).
    pub fn parsed(&self) -> bool {
        self.form.is_some() || self.npm.is_some()
    }

    /// Hashes a chunk, unless a protocol parser reads the body.
    pub fn hash(&mut self, chunk: &[u8]) {
        if self.parsed() {
            self.sha256 = None;
        } else if let Some(sha256) = self.sha256.as_mut() {
            sha256.update(chunk);
        }
    }

    /// The whole body's hex SHA-256 when it was hashed whole (see [`WriteState::sha256`]).
    pub fn body_sha256(&mut self) -> Option<String> {
        self.sha256.take().map(|sha256| hex::encode(sha256.finalize()))
    }
}

/// What was decided about a write, for logs and metrics.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    /// The project.
    pub project: ProjectName,
    /// The kind of write.
    pub action: WriteAction,
    /// The decision.
    pub decision: Decision,
    /// Hex SHA-256 of the body, when the whole body was seen and no protocol parser read it
    /// (the parsed writes' file digests are in `detail`).
    pub body_sha256: Option<String>,
    /// Version and filename (PyPI uploads).
    pub detail: Option<String>,
}

/// Raises the in-flight uploads gauge for its lifetime.
pub struct InFlight {
    metrics: Arc<Metrics>,
    registry: String,
}

impl InFlight {
    /// Raises the gauge for `registry`.
    pub fn new(metrics: Arc<Metrics>, registry: &str) -> Self {
        metrics.uploads_in_flight.with_label_values(&[registry]).inc();
        InFlight {
            metrics,
            registry: registry.to_owned(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics
            .uploads_in_flight
            .with_label_values(&[&self.registry])
            .dec();
    }
}
