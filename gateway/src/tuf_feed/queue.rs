//! Queueing on the write path: what the proxy calls when the backend has committed an upload
//! or performed a deletion, so that the outbox row is written with the change it reports.

use portcullis_rules::Protocol;

use crate::config::Registry;
use crate::protocol::same_version;
use crate::state::{AuditRecord, LedgerRecord, LedgerState, StateError, StateStore, TombstoneKind};

/// Finishes ledger row `id` as committed, appending `audit` with it; for a fed registry the
/// file (and its project's index page, when pages are signed) is queued in the same
/// transaction.
pub async fn commit(
    state: &dyn StateStore,
    registry: &Registry,
    id: i64,
    detail: &str,
    now: i64,
    audit: Option<&AuditRecord>,
) -> Result<(), StateError> {
    match &registry.tuf {
        Some(feed) => {
            state
                .ledger_commit_fed(id, detail, now, feed.index_path.is_some(), audit)
                .await
        }
        None => state.ledger_finish(id, true, detail, now, audit).await,
    }
}

/// For a fed registry, queues the removal of the committed files of `project` that `kinds`
/// (a deletion's tombstones) cover, and of its index page; returns how many events were
/// queued (0 for a registry without a feed).
pub async fn deletions(
    state: &dyn StateStore,
    registry: &Registry,
    project: &str,
    request_id: &str,
    kinds: &[TombstoneKind],
    now: i64,
) -> Result<u64, StateError> {
    let Some(feed) = &registry.tuf else { return Ok(0) };
    let entries = state.ledger_entries(&registry.name, project).await?;
    let ids = deleted_files(registry.protocol, &entries, kinds);
    state
        .feed_deletions(
            &registry.name,
            project,
            request_id,
            &ids,
            feed.index_path.is_some(),
            now,
        )
        .await
}

/// The ledger ids of the committed files among `entries` that `kinds` cover.
pub fn deleted_files(protocol: Protocol, entries: &[LedgerRecord], kinds: &[TombstoneKind]) -> Vec<i64> {
    entries
        .iter()
        .filter(|r| r.state == LedgerState::Committed)
        .filter(|r| {
            kinds.iter().any(|kind| match kind {
                TombstoneKind::Project => true,
                TombstoneKind::Version(v) => same_version(protocol, v, &r.entry.version),
                TombstoneKind::File { filename, .. } => *filename == r.entry.filename,
            })
        })
        .map(|r| r.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::contract::upload;

    fn committed(id: i64, version: &str, filename: &str, state: LedgerState) -> LedgerRecord {
        let mut entry = upload(filename, 100);
        entry.version = version.into();
        LedgerRecord {
            id,
            entry,
            state,
            finished_at: Some(101),
            detail: String::new(),
        }
    }

    #[test]
    fn a_deletion_covers_the_committed_files_its_tombstones_name() {
        let entries = [
            committed(1, "1.0", "demo-1.0.tar.gz", LedgerState::Committed),
            committed(2, "1.0.0", "demo-1.0.0-py3-none-any.whl", LedgerState::Committed),
            committed(3, "1.0", "demo-1.0-py2-none-any.whl", LedgerState::Failed),
            committed(4, "2.0", "demo-2.0.tar.gz", LedgerState::Committed),
        ];
        let version = [TombstoneKind::Version("1.0".into())];
        assert_eq!(deleted_files(Protocol::Pypi, &entries, &version), [1, 2]);
        assert_eq!(deleted_files(Protocol::Npm, &entries, &version), [1]);
        let file = [TombstoneKind::File {
            version: "2.0".into(),
            filename: "demo-2.0.tar.gz".into(),
        }];
        assert_eq!(deleted_files(Protocol::Pypi, &entries, &file), [4]);
        assert_eq!(
            deleted_files(Protocol::Pypi, &entries, &[TombstoneKind::Project]),
            [1, 2, 4]
        );
        assert!(deleted_files(Protocol::Pypi, &entries, &[]).is_empty());
    }
}
