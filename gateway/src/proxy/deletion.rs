//! Decide: delete-like requests against the deletion rules, and uploads against the
//! tombstones deletions leave.
//!
//! - npm `DELETE` (`/<pkg>/-rev/<rev>`, `/<pkg>/-/<file>.tgz/-rev/<rev>`) carries no body, so
//!   the backend acts on the head: it is decided in the request filter, before anything is
//!   forwarded ([`Gateway::decide_npm_delete`]).
//! - devpi's `DELETE /<user>/<index>/<project>[/<version>]` (PyPI registries with
//!   `deletion_api = "devpi"`) likewise, from the head ([`Gateway::decide_devpi_delete`]).
//! - npm metadata `PUT`s and PyPI `remove_pkg` forms are decided at the end of the body, while
//!   the last bytes are held back ([`Gateway::decide_npm_metadata`],
//!   [`Gateway::decide_pypi_removal`]).
//! - A deletion the rules let through leaves its tombstones before it is released to the
//!   backend, and is refused (fail closed, `state_unavailable`) when they cannot be written: a
//!   deletion the gateway cannot remember would let the version be uploaded again. When the
//!   backend answers with anything but 2xx, the deletion did not happen and the tombstones are
//!   removed ([`Gateway::deletions_answered`]); uploads check them
//!   ([`Gateway::check_tombstones`]).

use pingora::proxy::Session;
use portcullis_rules::deletion::{name_still_reserved, DeleteAction, DeletionDecision, DeletionFacts, DeletionOutcome};
use portcullis_rules::{ProjectName, Protocol};

use super::ctx::{Deletions, RequestCtx};
use super::Gateway;
use crate::auth::constant_time_eq;
use crate::clock::unix_now;
use crate::config::Registry;
use crate::deletion::audit::AuditEntry;
use crate::deletion::npm::{tarball_version, CurrentDocument};
use crate::deletion::{DeletionRecord, FactSource, Gathered};
use crate::error::Refusal;
use crate::protocol::npm::split_package;
use crate::protocol::npm_body::{PublishFacts, PublishKind};
use crate::protocol::same_version;
use crate::state::{AuditRecord, Tombstone, TombstoneKind};

/// The request header carrying the admin token of an override.
pub const ADMIN_TOKEN_HEADER: &str = "x-portcullis-admin-token";
/// The request header carrying an override's mandatory reason.
pub const OVERRIDE_REASON_HEADER: &str = "x-portcullis-override-reason";
/// The rule reported for uploads refused by a tombstone.
const TOMBSTONE_RULE: &str = "builtin.tombstones";
/// Longest override reason accepted, in bytes.
const MAX_REASON_BYTES: usize = 1_000;

/// One change asked for, before its decision.
struct Asked {
    action: DeleteAction,
    version: Option<String>,
    filename: Option<String>,
    is_last_version: Option<bool>,
    versions: Vec<String>,
}

impl Gateway {
    /// Reads an admin override from the request headers: none, a verified reason, or a
    /// refusal (wrong token, missing or unusable reason).
    pub(super) fn admin_override(&self, session: &Session, ctx: &mut RequestCtx) -> Result<(), Refusal> {
        let headers = &session.req_header().headers;
        let Some(presented) = headers.get(ADMIN_TOKEN_HEADER) else {
            return Ok(());
        };
        let Some(expected) = &self.records.admin_token else {
            return Err(Refusal::AdminUnauthenticated);
        };
        if !constant_time_eq(presented.as_bytes(), expected.expose())
            || headers.get_all(ADMIN_TOKEN_HEADER).iter().count() != 1
        {
            return Err(Refusal::AdminUnauthenticated);
        }
        let reason = headers
            .get(OVERRIDE_REASON_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or_default();
        if reason.is_empty() {
            return Err(Refusal::OverrideReasonRequired(format!(
                "an admin override needs a reason: send it in the {OVERRIDE_REASON_HEADER} header"
            )));
        }
        if reason.len() > MAX_REASON_BYTES {
            return Err(Refusal::OverrideReasonRequired(format!(
                "the override reason is longer than {MAX_REASON_BYTES} bytes"
            )));
        }
        ctx.admin_override = Some(reason.to_owned());
        Ok(())
    }

    /// npm `DELETE`s: the whole package (`/<pkg>/-rev/<rev>`) or one tarball
    /// (`/<pkg>/-/<file>/-rev/<rev>`), decided from the head before anything is forwarded.
    pub(super) async fn decide_npm_delete(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        registry: &Registry,
        project: &ProjectName,
    ) -> Result<(), Refusal> {
        let path = ctx.upstream_path.clone().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default();
        let (_, rest) = split_package(path).ok_or(Refusal::Internal)?;
        let document = self.npm_document(session, registry, project).await?;
        let asked = if rest.starts_with("-rev/") {
            Asked {
                action: DeleteAction::DeleteProject,
                version: None,
                filename: None,
                is_last_version: None,
                versions: document.versions.iter().map(|(v, _)| v.clone()).collect(),
            }
        } else {
            let file = rest
                .strip_prefix("-/")
                .and_then(|r| r.split("/-rev/").next())
                .ok_or_else(|| Refusal::UnclassifiedWrite(format!("DELETE {path} is not an npm unpublish")))?;
            let file = crate::protocol::path::percent_decode(file).ok_or(Refusal::Internal)?;
            let version = tarball_version(project.as_str(), &file).ok_or_else(|| {
                Refusal::UnclassifiedWrite(format!(
                    "DELETE of {file:?}: not a tarball of {}; the gateway refuses what it cannot classify",
                    project.as_str()
                ))
            })?;
            if !document.has(&version) && self.tombstoned(ctx, registry, project, &version).await? {
                // The tarball of a version whose unpublish was decided (and recorded) already:
                // `npm unpublish` removes the version first, then its file.
                let record = DeletionRecord {
                    action: DeleteAction::DeleteFile,
                    version: Some(version),
                    filename: Some(file),
                    decision: DeletionDecision::cleanup(),
                    versions: Vec::new(),
                };
                ctx.deletions = Some(Deletions::new(project.clone(), vec![record]));
                return Ok(());
            }
            let last = document.versions.len() == 1 && document.has(&version);
            Asked {
                action: DeleteAction::DeleteFile,
                version: Some(version),
                filename: Some(file),
                is_last_version: Some(last),
                versions: Vec::new(),
            }
        };
        self.decide_asked(ctx, registry, project, Some(&document), vec![asked])
            .await
    }

    /// npm metadata `PUT`s (`/<pkg>` or `/<pkg>/-rev/<rev>` without a tarball): unpublish of
    /// versions, deprecate and undeprecate, read against the backend's document.
    pub(super) async fn decide_npm_metadata(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        registry: &Registry,
        project: &ProjectName,
        facts: &PublishFacts,
    ) -> Result<(), Refusal> {
        if facts.kind != PublishKind::MetadataOnly {
            return Err(Refusal::UnclassifiedWrite(
                "a publish (a document with a tarball) must be a PUT of the package itself, not of a revision".into(),
            ));
        }
        let document = self.npm_document(session, registry, project).await?;
        let changes = document.changes(&facts.versions, &facts.deprecated);
        if !changes.added.is_empty() {
            return Err(Refusal::UnclassifiedWrite(format!(
                "this metadata change adds version(s) {} without a tarball; publish them instead",
                changes.added.join(", ")
            )));
        }
        let removes_all = !changes.removed.is_empty() && changes.removed.len() == document.versions.len();
        let mut asked: Vec<Asked> = changes
            .removed
            .iter()
            .map(|v| Asked {
                action: DeleteAction::DeleteVersion,
                version: Some(v.clone()),
                filename: None,
                is_last_version: Some(removes_all),
                versions: Vec::new(),
            })
            .collect();
        for (versions, action) in [
            (&changes.deprecated, DeleteAction::Yank),
            (&changes.undeprecated, DeleteAction::Unyank),
        ] {
            asked.extend(versions.iter().map(|v| Asked {
                action,
                version: Some(v.clone()),
                filename: None,
                is_last_version: None,
                versions: Vec::new(),
            }));
        }
        if asked.is_empty() {
            return Ok(());
        }
        self.decide_asked(ctx, registry, project, Some(&document), asked).await
    }

    /// PyPI `:action=remove_pkg` (pypiserver): removal of a release. Whether it is the
    /// project's last release comes from the backend's simple index.
    pub(super) async fn decide_pypi_removal(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        registry: &Registry,
        project: &ProjectName,
        version: &str,
    ) -> Result<(), Refusal> {
        let authorization = session.req_header().headers.get(http::header::AUTHORIZATION);
        let versions = self
            .exchanger
            .probe()
            .pypi_versions(registry, project, authorization)
            .await
            .map_err(|e| {
                Refusal::DeletionFactsUnavailable(format!(
                    "the project's releases could not be read from the backend, so the removal cannot be decided: {e}"
                ))
            })?
            .unwrap_or_default();
        let asked = pypi_release_removal(&versions, version.to_owned());
        self.decide_asked(ctx, registry, project, None, vec![asked]).await
    }

    /// devpi `DELETE /<user>/<index>/<project>[/<version>]`: removal of a release or of the
    /// whole project from one index, read as devpi reads the path
    /// ([`crate::protocol::pypi::devpi::delete_target`]). What the index holds (whether the
    /// release is the project's last, which versions a project deletion removes) comes from
    /// devpi's own view of the project on that index.
    pub(super) async fn decide_devpi_delete(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        registry: &Registry,
    ) -> Result<(), Refusal> {
        let path = ctx.upstream_path.clone().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default();
        let target = crate::protocol::pypi::devpi::delete_target(path)?;
        let authorization = session.req_header().headers.get(http::header::AUTHORIZATION);
        let versions = self
            .exchanger
            .probe()
            .devpi_versions(registry, &target.index, &target.project, authorization)
            .await
            .map_err(|e| {
                Refusal::DeletionFactsUnavailable(format!(
                    "the project's releases could not be read from the backend, so the deletion cannot be decided: {e}"
                ))
            })?
            .unwrap_or_default();
        let asked = match target.version {
            Some(version) => pypi_release_removal(&versions, version),
            None => Asked {
                action: DeleteAction::DeleteProject,
                version: None,
                filename: None,
                is_last_version: None,
                versions,
            },
        };
        self.decide_asked(ctx, registry, &target.project, None, vec![asked])
            .await
    }

    /// Gathers the facts of each change, asks the rules, keeps the records for the tombstones
    /// and the audit log, and refuses with the first refusal.
    async fn decide_asked(
        &self,
        ctx: &mut RequestCtx,
        registry: &Registry,
        project: &ProjectName,
        document: Option<&CurrentDocument>,
        asked: Vec<Asked>,
    ) -> Result<(), Refusal> {
        let rules = ctx.rules.clone().ok_or(Refusal::Internal)?;
        let unavailable = |e: crate::state::StateError| {
            tracing::warn!(request_id = %ctx.id, error = %e, "the state store could not give the deletion facts");
            Refusal::StateUnavailable
        };
        let source = if asked.iter().any(|a| a.action.is_deletion()) {
            let store = self.state().as_ref();
            let opened = FactSource::open(store, &self.records.downloads, document, &registry.name, project).await;
            Some(opened.map_err(unavailable)?)
        } else {
            None
        };
        let mut records = Vec::with_capacity(asked.len());
        let mut refusal = None;
        for asked in asked {
            let gathered = match (&source, asked.action.is_deletion()) {
                (Some(source), true) => source
                    .gather(asked.version.as_deref(), asked.is_last_version)
                    .await
                    .map_err(unavailable)?,
                _ => Gathered::default(),
            };
            let decision = rules.rules.decide_deletion(&DeletionFacts {
                registry: &registry.name,
                project,
                action: asked.action,
                version: asked.version.as_deref(),
                age_seconds: gathered.age_seconds,
                weekly_downloads: gathered.weekly_downloads,
                dependents: gathered.dependents,
                owners: gathered.owners,
                is_last_version: gathered.is_last_version,
                admin_override: ctx.admin_override.as_deref(),
            });
            if let (None, DeletionOutcome::Refused { code, message }) = (&refusal, &decision.outcome) {
                refusal = Some(Refusal::Deletion {
                    code: code.code(),
                    message: message.clone(),
                });
            }
            if let DeletionOutcome::Shadowed { would_refuse } = &decision.outcome {
                tracing::warn!(
                    target: "portcullis::deletion",
                    request_id = %ctx.id,
                    project = project.as_str(),
                    action = asked.action.as_str(),
                    would_refuse = %format!("{}: {}", would_refuse.0.code(), would_refuse.1),
                    "the deletion rules would have refused this request (shadow mode)"
                );
            }
            records.push(DeletionRecord {
                action: asked.action,
                version: asked.version,
                filename: asked.filename,
                decision,
                versions: asked.versions,
            });
        }
        ctx.deletions = Some(Deletions::new(project.clone(), records));
        match refusal {
            Some(r) => Err(r),
            None => self.write_tombstones(ctx).await,
        }
    }

    /// The tombstones the request's deletions leave once they happen.
    fn deletion_tombstones(&self, ctx: &RequestCtx) -> Vec<Tombstone> {
        let Some(Deletions { project, records, .. }) = &ctx.deletions else {
            return Vec::new();
        };
        let registry = self.registry_label(ctx).to_owned();
        let now = unix_now();
        let actor = actor(ctx, &registry, project.as_str());
        let reason = ctx.admin_override.clone().unwrap_or_default();
        let mut tombstones = Vec::new();
        for record in records
            .iter()
            .filter(|r| r.action.is_deletion() && r.decision.lets_through())
        {
            let mut kinds = Vec::new();
            match (record.action, &record.version, &record.filename) {
                (DeleteAction::DeleteProject, _, _) => {
                    kinds.push(TombstoneKind::Project);
                    kinds.extend(record.versions.iter().cloned().map(TombstoneKind::Version));
                }
                (DeleteAction::DeleteFile, Some(version), Some(filename)) => kinds.push(TombstoneKind::File {
                    version: version.clone(),
                    filename: filename.clone(),
                }),
                (_, Some(version), _) => kinds.push(TombstoneKind::Version(version.clone())),
                _ => {}
            }
            if record.decision.reserve_name.is_some() && record.action != DeleteAction::DeleteProject {
                kinds.push(TombstoneKind::Project);
            }
            tombstones.extend(kinds.into_iter().map(|kind| Tombstone {
                registry: registry.clone(),
                project: project.as_str().to_owned(),
                kind,
                deleted_at: now,
                request_id: ctx.id.clone(),
                actor: actor.clone(),
                reason: reason.clone(),
            }));
        }
        tombstones
    }

    /// Writes the tombstones of the deletions about to be released; refuses (fail closed) when
    /// the store cannot record them, removing any it did write.
    async fn write_tombstones(&self, ctx: &mut RequestCtx) -> Result<(), Refusal> {
        let tombstones = self.deletion_tombstones(ctx);
        if tombstones.is_empty() {
            return Ok(());
        }
        let Some(deletions) = ctx.deletions.as_mut() else {
            return Ok(());
        };
        deletions.tombstones_written = true;
        for tombstone in &tombstones {
            if let Err(e) = self.state().add_tombstone(tombstone).await {
                tracing::warn!(request_id = %ctx.id, error = %e, "the deletion's tombstones could not be written; refused");
                self.remove_written_tombstones(ctx, "its tombstones could not all be written")
                    .await;
                return Err(Refusal::StateUnavailable);
            }
        }
        Ok(())
    }

    /// The backend's npm document of `project`; a package the backend does not have is
    /// empty (nothing to delete, so every deletion reads as of an unknown version).
    async fn npm_document(
        &self,
        session: &Session,
        registry: &Registry,
        project: &ProjectName,
    ) -> Result<CurrentDocument, Refusal> {
        let authorization = session.req_header().headers.get(http::header::AUTHORIZATION);
        match self
            .exchanger
            .probe()
            .npm_document(registry, project, authorization)
            .await
        {
            Ok(Some(document)) => Ok(CurrentDocument::from_json(&document)),
            Ok(None) => Ok(CurrentDocument::default()),
            Err(e) => Err(Refusal::DeletionFactsUnavailable(format!(
                "the package document could not be read from the backend, so the request cannot be decided: {e}"
            ))),
        }
    }

    /// A project's tombstones; the request is refused (fail closed) when the store cannot say.
    async fn tombstones(
        &self,
        ctx: &RequestCtx,
        registry: &Registry,
        project: &ProjectName,
    ) -> Result<Vec<Tombstone>, Refusal> {
        self.state()
            .tombstones(&registry.name, project.as_str())
            .await
            .map_err(|e| {
                tracing::warn!(request_id = %ctx.id, error = %e, "the tombstones could not be read; refused");
                Refusal::StateUnavailable
            })
    }

    /// Whether a deletion of `version` was recorded.
    async fn tombstoned(
        &self,
        ctx: &RequestCtx,
        registry: &Registry,
        project: &ProjectName,
        version: &str,
    ) -> Result<bool, Refusal> {
        Ok(self
            .tombstones(ctx, registry, project)
            .await?
            .iter()
            .any(|t| matches!(&t.kind, TombstoneKind::Version(v) if same_version(registry.protocol, v, version))))
    }

    /// Uploads: a deleted version (or file) is never uploaded again, and a deleted project's
    /// name stays reserved for as long as the rules say.
    pub(super) async fn check_tombstones(
        &self,
        ctx: &RequestCtx,
        registry: &Registry,
        project: &ProjectName,
        version: &str,
        filename: &str,
    ) -> Result<(), Refusal> {
        let tombstones = self.tombstones(ctx, registry, project).await?;
        let rules = ctx.rules.clone().ok_or(Refusal::Internal)?;
        let now = unix_now();
        for tombstone in &tombstones {
            match &tombstone.kind {
                TombstoneKind::Version(v) if same_version(registry.protocol, v, version) => {
                    return Err(Refusal::VersionDeleted(format!(
                        "{}@{version} was deleted on {}; a deleted version can never be uploaded again: publish a new version",
                        project.as_str(),
                        crate::clock::rfc3339(tombstone.deleted_at)
                    )));
                }
                TombstoneKind::File { filename: f, .. } if f == filename => {
                    return Err(Refusal::VersionDeleted(format!(
                        "the file {filename} was deleted on {}; a deleted file name can never be used again: publish a new version",
                        crate::clock::rfc3339(tombstone.deleted_at)
                    )));
                }
                TombstoneKind::Project => {
                    let reservation = rules.rules.name_reservation(&registry.name, project);
                    if name_still_reserved(reservation, tombstone.deleted_at, now) {
                        return Err(Refusal::NameReserved(format!(
                            "the project {} was deleted on {} and its name is reserved, so it cannot be taken over; ask an administrator",
                            project.as_str(),
                            crate::clock::rfc3339(tombstone.deleted_at)
                        )));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The backend answered a delete-like request: anything but 2xx means the deletions did not
    /// happen, and the tombstones written before they were released are removed.
    pub(super) async fn deletions_answered(&self, status: u16, ctx: &mut RequestCtx) {
        let Some(deletions) = ctx.deletions.as_mut().filter(|d| !d.answered) else {
            return;
        };
        deletions.answered = true;
        if (200..300).contains(&status) {
            self.feed_deletions(ctx).await;
            return;
        }
        if !deletions.tombstones_written {
            return;
        }
        self.remove_written_tombstones(ctx, &format!("the backend answered {status}"))
            .await;
    }

    /// At the end of a delete-like request the backend never answered: when the gateway
    /// refused it (after its tombstones were written, for another reason or change), the
    /// deletion was never released and its tombstones are removed; when the backend broke off
    /// or timed out, whether it deleted is unknown and they are kept (fail closed).
    pub(super) async fn deletions_finished(&self, ctx: &mut RequestCtx) {
        let Some(deletions) = ctx.deletions.as_mut().filter(|d| !d.answered && d.tombstones_written) else {
            return;
        };
        deletions.answered = true;
        let released = match &ctx.refusal {
            None => true,
            Some(r) => matches!(r, Refusal::UpstreamTimeout | Refusal::UpstreamFailed),
        };
        if released {
            tracing::warn!(request_id = %ctx.id, "no backend answer to a deletion; its tombstones are kept");
            self.feed_deletions(ctx).await;
            return;
        }
        self.remove_written_tombstones(ctx, "the gateway refused it").await;
    }

    /// Queues the files a performed deletion removed for the TUF feed (a registry without a
    /// feed queues nothing). A failure is logged: reconciliation queues them later from the
    /// tombstones.
    async fn feed_deletions(&self, ctx: &RequestCtx) {
        let Some(registry) = self.registry(ctx).filter(|r| r.tuf.is_some()) else {
            return;
        };
        let Some(project) = ctx.deletions.as_ref().map(|d| d.project.as_str().to_owned()) else {
            return;
        };
        let kinds: Vec<TombstoneKind> = self.deletion_tombstones(ctx).into_iter().map(|t| t.kind).collect();
        if kinds.is_empty() {
            return;
        }
        match crate::tuf_feed::queue::deletions(self.state().as_ref(), registry, &project, &ctx.id, &kinds, unix_now())
            .await
        {
            Ok(_) => self.records.feed_wake.notify_one(),
            Err(e) => {
                tracing::warn!(request_id = %ctx.id, error = %e, "a deletion could not be queued for the TUF feed; reconciliation will")
            }
        }
    }

    /// Removes the tombstones this request wrote, for a deletion that did not happen (`why`).
    async fn remove_written_tombstones(&self, ctx: &mut RequestCtx, why: &str) {
        match self.state().remove_tombstones(&ctx.id).await {
            Ok(_) => {
                if let Some(deletions) = ctx.deletions.as_mut() {
                    deletions.tombstones_written = false;
                }
            }
            Err(e) => tracing::error!(
                request_id = %ctx.id,
                why,
                error = %e,
                "a deletion that did not happen keeps tombstones that could not be removed"
            ),
        }
    }

    /// Whether [`Gateway::audit`] may write a record for the request: it has deletion-class
    /// changes, a write decision, or a refused decided write (what `audit` looks at first).
    pub(super) fn may_audit(ctx: &RequestCtx) -> bool {
        ctx.deletions.is_some() || ctx.decision.is_some() || (ctx.refusal.is_some() && ctx.class.is_decided_write())
    }

    /// Appends the request's decisions to the audit log: one record per deletion-class change,
    /// or one for an upload.
    pub(super) async fn audit(&self, session: &Session, ctx: &RequestCtx, (base, status): (AuditRecord, u16)) {
        let registry = base.registry.clone();
        if let Some(Deletions { project, records, .. }) = &ctx.deletions {
            let actor = actor(ctx, &registry, project.as_str());
            for record in records {
                self.metrics
                    .deletions
                    .with_label_values(&[&registry, record.action.as_str(), record.outcome()])
                    .inc();
                let (code, message) = record
                    .decision
                    .refusal()
                    .map_or((String::new(), String::new()), |(c, m)| {
                        (c.code().to_owned(), m.to_owned())
                    });
                let outcome = if record.decision.lets_through() && ctx.refusal.is_some() {
                    // Allowed by the rules, refused for another change of the same request.
                    "refuse"
                } else {
                    record.outcome()
                };
                let entry = AuditEntry {
                    record: AuditRecord {
                        project: project.as_str().to_owned(),
                        actor: actor.clone(),
                        action: record.action.as_str().to_owned(),
                        target: record.target(project),
                        outcome: outcome.to_owned(),
                        rule: record.decision.rule.as_str().to_owned(),
                        code,
                        reason: ctx.admin_override.clone().unwrap_or(message),
                        ..base.clone()
                    },
                    facts: record.decision.facts_used.clone(),
                    status,
                };
                self.records.audit.append(&entry).await;
            }
            return;
        }
        if ctx.decision.is_none() {
            // A delete-like request refused before its changes were decided (a wrong admin
            // token, an override without a reason, an unclassifiable delete, a token scope):
            // recorded too, with what the request was.
            if let (Some(refusal), true) = (&ctx.refusal, ctx.class.is_decided_write()) {
                let req = session.req_header();
                let delete_like = req.method == http::Method::DELETE
                    || ctx.admin_override.is_some()
                    || req.headers.contains_key(ADMIN_TOKEN_HEADER)
                    || matches!(refusal, Refusal::UnclassifiedWrite(_));
                if delete_like {
                    let entry = AuditEntry {
                        record: AuditRecord {
                            project: match &ctx.class {
                                crate::protocol::RequestClass::Write { project, .. } => project.as_str().to_owned(),
                                _ => String::new(),
                            },
                            actor: credential_actor(ctx, &registry, ""),
                            action: "delete_request".to_owned(),
                            target: format!("{} {}", req.method, crate::auth::shorten(req.uri.path(), 200)),
                            outcome: "refuse".to_owned(),
                            reason: refusal.to_string(),
                            ..base
                        },
                        facts: Vec::new(),
                        status,
                    };
                    self.records.audit.append(&entry).await;
                }
            }
            return;
        }
        if ctx.ledger.id.is_some() {
            // Appended with the ledger row's finish (`ledger.rs`), in its transaction.
            return;
        }
        if let Some(entry) = Self::upload_audit(ctx, base, status) {
            self.records.audit.append(&entry).await;
        }
    }

    /// The audit record of an upload decided by the rules (`None` for any other request), from
    /// what every record of the request shares (`base`) and the status the client got.
    pub(super) fn upload_audit(ctx: &RequestCtx, base: AuditRecord, status: u16) -> Option<AuditEntry> {
        let decision = ctx
            .decision
            .as_ref()
            .filter(|d| d.action == portcullis_rules::WriteAction::Upload)?;
        let project = decision.project.as_str();
        Some(AuditEntry {
            record: AuditRecord {
                project: project.to_owned(),
                actor: actor(ctx, &base.registry, project),
                action: "upload".to_owned(),
                target: ctx.upload_target.clone().unwrap_or_else(|| project.to_owned()),
                rule: match &ctx.refusal {
                    Some(Refusal::VersionDeleted(_) | Refusal::NameReserved(_)) => TOMBSTONE_RULE.to_owned(),
                    _ => decision.decision.rule.as_str().to_owned(),
                },
                reason: ctx.refusal.as_ref().map_or(String::new(), ToString::to_string),
                ..base
            },
            facts: ctx.provenance_steps.clone(),
            status,
        })
    }
}

/// Who asked, for tombstones and the audit log: the trusted publisher or upload token id, or
/// the kind of credential; never a secret.
fn actor(ctx: &RequestCtx, registry: &str, project: &str) -> String {
    let who = credential_actor(ctx, registry, project);
    if ctx.admin_override.is_some() {
        format!("admin ({who})")
    } else {
        who
    }
}

/// The removal of release `version` of a PyPI project whose releases on the backend are
/// `versions` (pypiserver's `remove_pkg`, devpi's `DELETE`): the project's last release when
/// every release listed is that version.
fn pypi_release_removal(versions: &[String], version: String) -> Asked {
    let is_last_version = !versions.is_empty() && versions.iter().all(|v| same_version(Protocol::Pypi, v, &version));
    Asked {
        action: DeleteAction::DeleteVersion,
        version: Some(version),
        filename: None,
        is_last_version: Some(is_last_version),
        versions: Vec::new(),
    }
}

/// The credential a request came with: trusted publisher and token id, token id, or the kind.
fn credential_actor(ctx: &RequestCtx, registry: &str, project: &str) -> String {
    let credential = ctx.credential(registry, project);
    match (credential.token_id, credential.publisher) {
        (Some(token), Some(publisher)) => format!("publisher:{publisher} token:{token}"),
        (Some(token), None) => format!("token:{token}"),
        (None, _) if credential.kind == "legacy" => "legacy-credential".to_owned(),
        (None, _) => "anonymous".to_owned(),
    }
}
