//! Record: every accepted upload goes into the ledger (state store) before its last bytes are
//! released to the backend, and is marked committed when the backend answers 2xx, failed
//! otherwise — so a crash between the two leaves a pending row that explains itself.

use pingora::proxy::Session;
use pingora::Error;

use super::ctx::RequestCtx;
use super::provenance::ProvenanceRecord;
use super::record::RequestSummary;
use super::Gateway;
use crate::clock::unix_now;
use crate::config::Registry;
use crate::deletion::audit::AuditLog;
use crate::error::Refusal;
use crate::protocol::pypi::UploadFacts;
use crate::state::LedgerEntry;

impl Gateway {
    /// Writes the pending ledger row of an accepted upload; refuses (fail closed) when the
    /// state store cannot record it.
    pub(super) async fn ledger_begin(
        &self,
        ctx: &RequestCtx,
        registry: &Registry,
        upload: &UploadFacts,
        provenance: ProvenanceRecord,
    ) -> Result<i64, Refusal> {
        let dependencies = upload.requires_dist.clone();
        let entry = LedgerEntry {
            registry: registry.name.clone(),
            project: upload.project.as_str().to_owned(),
            version: upload.version.clone(),
            filename: upload.filename.clone(),
            sha256: hex::encode(upload.content_sha256),
            size: upload.content_bytes,
            credential: String::new(),
            publisher: None,
            signer: provenance.signer,
            source_repository: provenance.source_repository,
            provenance_kind: provenance.attestations.as_ref().map(|_| "pep740".to_owned()),
            provenance: provenance.attestations,
            request_id: ctx.id.clone(),
            created_at: unix_now(),
        };
        self.ledger_insert(ctx, entry, upload.project.as_str(), &dependencies)
            .await
    }

    /// Fills in who uploaded and writes the pending row with the upload's dependencies; fails
    /// closed.
    async fn ledger_insert(
        &self,
        ctx: &RequestCtx,
        mut entry: LedgerEntry,
        project: &str,
        dependencies: &[String],
    ) -> Result<i64, Refusal> {
        let credential = ctx.credential(&entry.registry, project);
        entry.credential = credential.kind.to_owned();
        entry.publisher = credential.publisher.map(str::to_owned);
        let state = self.state();
        let refused = |e: crate::state::StateError| {
            tracing::warn!(request_id = %ctx.id, error = %e, "the ledger could not record an upload; refused");
            Refusal::StateUnavailable
        };
        let id = state.ledger_begin(&entry).await.map_err(refused)?;
        if !dependencies.is_empty() {
            state.record_dependencies(id, dependencies).await.map_err(refused)?;
        }
        Ok(id)
    }

    /// Writes the pending ledger row of an accepted npm publish.
    pub(super) async fn ledger_begin_npm(
        &self,
        ctx: &RequestCtx,
        registry: &Registry,
        project: &portcullis_rules::ProjectName,
        tarball: &crate::protocol::npm_body::TarballFacts,
        provenance: ProvenanceRecord,
        dependencies: &[String],
    ) -> Result<i64, Refusal> {
        let entry = LedgerEntry {
            registry: registry.name.clone(),
            project: project.as_str().to_owned(),
            version: tarball.version.clone(),
            filename: tarball.attachment.clone(),
            sha256: hex::encode(tarball.sha256),
            size: tarball.bytes,
            credential: String::new(),
            publisher: None,
            signer: provenance.signer,
            source_repository: provenance.source_repository,
            provenance_kind: provenance.attestations.as_ref().map(|_| "npm-sigstore".to_owned()),
            provenance: provenance.attestations,
            request_id: ctx.id.clone(),
            created_at: unix_now(),
        };
        self.ledger_insert(ctx, entry, project.as_str(), dependencies).await
    }

    /// Marks the request's ledger row committed (the backend answered 2xx) or failed.
    /// Called when the backend's answer arrives, before the client sees it: a 2xx means the
    /// backend committed the upload, so the row is marked committed now and the client's next
    /// request already sees it (no downgrade, source pinning).
    pub(super) async fn ledger_backend_answered(&self, session: &Session, status: u16, ctx: &mut RequestCtx) {
        let Some(id) = ctx.ledger.take_unfinished() else {
            return;
        };
        let committed = (200..300).contains(&status);
        self.ledger_write(
            session,
            ctx,
            id,
            committed,
            format!("backend answered {status}"),
            status,
        )
        .await;
    }

    /// At the end of the request: a row still pending (the backend never answered) is failed.
    pub(super) async fn ledger_finish(&self, session: &Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        let Some(id) = ctx.ledger.take_unfinished() else {
            return;
        };
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let detail = match error {
            Some(e) => format!("no backend answer (status {status}): {e}"),
            None => format!("no backend answer (status {status})"),
        };
        self.ledger_write(session, ctx, id, false, detail, status).await;
    }

    /// Finishes ledger row `id` as committed or failed and, in the same transaction, appends
    /// the upload's audit record, with `status` as the status the client gets; then writes the
    /// record's line to the audit file.
    async fn ledger_write(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        id: i64,
        committed: bool,
        detail: String,
        status: u16,
    ) {
        let now = unix_now();
        let (base, _) = RequestSummary::new(self, session, ctx).audit_base(ctx);
        let audit = Self::upload_audit(ctx, base, status);
        let record = audit.as_ref().map(AuditLog::stored);
        let written = match self.registry(ctx) {
            Some(registry) if committed => {
                let written =
                    crate::tuf_feed::queue::commit(self.state().as_ref(), registry, id, &detail, now, record.as_ref())
                        .await;
                if written.is_ok() && registry.tuf.is_some() {
                    self.records.feed_wake.notify_one();
                }
                written
            }
            _ => {
                self.state()
                    .ledger_finish(id, committed, &detail, now, record.as_ref())
                    .await
            }
        };
        if let Err(e) = written {
            tracing::error!(request_id = %ctx.id, ledger_id = id, error = %e, "the ledger row could not be finished (it stays pending), nor the upload's audit record stored");
        }
        if let (Some(entry), Some(record)) = (audit, record) {
            self.records.audit.publish(&entry, record.line);
        }
    }
}
