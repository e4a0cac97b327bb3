//! Reconciliation: the gaps a crash leaves between the backend and the outbox, closed from
//! the ledger and the tombstones by the replica that holds the feed's lease.
//!
//! - An upload still pending long after it began (the gateway died between the backend's
//!   answer and the ledger's update) is settled by asking the backend: when it serves exactly
//!   the uploaded bytes at the file's path the row is committed and queued; when it serves
//!   nothing the row is failed; anything else leaves it pending for an operator.
//! - A deletion whose tombstones stand but which queued nothing (the gateway died after the
//!   backend's answer) is queued.

use std::collections::BTreeMap;

use super::artifact::{self, Served};
use super::{batch, queue, Fed, TufFeeder};
use crate::state::{FeedFile, LedgerRecord, TombstoneKind};

/// How far back deletions are looked for: longer than any outage an operator lets pass
/// without noticing the feed's lag alert.
const DELETION_WINDOW_SECONDS: i64 = 7 * 24 * 3600;

pub(super) async fn run(feeder: &TufFeeder, fed: &Fed, now: i64) {
    let Some(feed) = &fed.registry.tuf else { return };
    let name = fed.registry.name.as_str();
    let before = now - i64::try_from(feed.reconcile_after.as_secs()).unwrap_or(i64::MAX);
    match feeder.state.stale_pending(before).await {
        Ok(rows) => {
            for row in rows.iter().filter(|r| r.entry.registry == name) {
                settle_pending(feeder, fed, row, now).await;
            }
        }
        Err(e) => tracing::warn!(registry = name, error = %e, "TUF feed: stale uploads could not be listed"),
    }
    let tombstones = match feeder
        .state
        .feed_unqueued_tombstones(name, before - DELETION_WINDOW_SECONDS, before)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(registry = name, error = %e, "TUF feed: deletions could not be listed");
            return;
        }
    };
    let mut by_request: BTreeMap<(String, String), Vec<TombstoneKind>> = BTreeMap::new();
    for t in tombstones {
        by_request.entry((t.project, t.request_id)).or_default().push(t.kind);
    }
    for ((project, request_id), kinds) in by_request {
        match queue::deletions(feeder.state.as_ref(), &fed.registry, &project, &request_id, &kinds, now).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                registry = name,
                request_id,
                events = n,
                "TUF feed: queued a deletion a crash had left out"
            ),
            Err(e) => {
                tracing::warn!(registry = name, request_id, error = %e, "TUF feed: a deletion could not be queued")
            }
        }
    }
}

async fn settle_pending(feeder: &TufFeeder, fed: &Fed, row: &LedgerRecord, now: i64) {
    let Some(feed) = &fed.registry.tuf else { return };
    let entry = &row.entry;
    let target = batch::file_target(
        feed,
        fed.registry.protocol,
        &entry.project,
        &entry.version,
        &entry.filename,
    );
    let file = FeedFile {
        ledger_id: row.id,
        version: entry.version.clone(),
        filename: entry.filename.clone(),
        sha256: entry.sha256.clone(),
        size: entry.size,
        publisher: entry.publisher.clone(),
        signer: entry.signer.clone(),
        provenance_kind: entry.provenance_kind.clone(),
        upload_request_id: entry.request_id.clone(),
    };
    let name = fed.registry.name.as_str();
    let settled = match artifact::file(&feeder.probe, &fed.registry, &entry.project, &file, &target).await {
        Ok(Served::Artifact(_)) => queue::commit(
            feeder.state.as_ref(),
            &fed.registry,
            row.id,
            "reconciled: the backend serves the uploaded file",
            now,
            None,
        )
        .await
        .map(|()| "committed"),
        Ok(Served::Missing) => feeder
            .state
            .ledger_finish(
                row.id,
                false,
                "reconciled: the backend does not serve the file",
                now,
                None,
            )
            .await
            .map(|()| "failed"),
        Ok(Served::Differs(why)) => {
            tracing::error!(
                registry = name,
                ledger_id = row.id,
                why,
                "TUF feed: a pending upload's file differs on the backend; left pending"
            );
            return;
        }
        Err(e) => {
            tracing::warn!(registry = name, ledger_id = row.id, error = %e, "TUF feed: a pending upload could not be checked");
            return;
        }
    };
    match settled {
        Ok(outcome) => {
            tracing::warn!(registry = name, ledger_id = row.id, request_id = %entry.request_id, outcome, "TUF feed: reconciled an upload left pending")
        }
        Err(e) => {
            tracing::warn!(registry = name, ledger_id = row.id, error = %e, "TUF feed: a pending upload could not be settled")
        }
    }
}
