//! The TUF feed's outbox ([`FeedStore`]) in the SQLite store.

use async_trait::async_trait;
use rusqlite::{params, TransactionBehavior};

use super::{finish_row, SqliteStore};
use crate::state::feed::{add_status_row, feed_event, select_feed};
use crate::state::{
    rows, AuditRecord, FeedEvent, FeedSettlement, FeedState, FeedStatus, FeedStore, LedgerState, StateError, Tombstone,
};

/// `ids` as the JSON array `json_each` reads.
fn id_list(doing: &str, ids: &[i64]) -> Result<String, StateError> {
    serde_json::to_string(ids).map_err(|e| StateError::Query(format!("{doing}: {e}")))
}

#[async_trait]
impl FeedStore for SqliteStore {
    async fn ledger_commit_fed(
        &self,
        id: i64,
        detail: &str,
        now: i64,
        index: bool,
        audit: Option<&AuditRecord>,
    ) -> Result<(), StateError> {
        let exists = self
            .db
            .run("committing an upload for the TUF feed", |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let Some(changed) = finish_row(&tx, (id, LedgerState::Committed, detail, now), audit)? else {
                    return Ok(false);
                };
                // A row finished before queues nothing.
                if changed {
                    tx.prepare_cached(
                        "INSERT INTO tuf_outbox (registry, action, ledger_id, project, request_id, created_at, next_attempt_at) \
                         SELECT registry, 'add', id, project, request_id, ?2, ?2 FROM ledger WHERE id = ?1",
                    )?
                    .execute(params![id, now])?;
                }
                if changed && index {
                    tx.prepare_cached(
                        "INSERT INTO tuf_outbox (registry, action, ledger_id, project, request_id, created_at, next_attempt_at) \
                         SELECT registry, 'index', NULL, project, request_id, ?2, ?2 FROM ledger WHERE id = ?1",
                    )?
                    .execute(params![id, now])?;
                }
                tx.commit()?;
                Ok(true)
            })
            .await?;
        if exists {
            Ok(())
        } else {
            Err(StateError::Query(format!(
                "committing an upload for the TUF feed: no ledger row has id {id}"
            )))
        }
    }

    async fn feed_deletions(
        &self,
        registry: &str,
        project: &str,
        request_id: &str,
        ledger_ids: &[i64],
        index: bool,
        now: i64,
    ) -> Result<u64, StateError> {
        let doing = "queueing deletions for the TUF feed";
        let ids = id_list(doing, ledger_ids)?;
        let queued = self
            .db
            .run(doing, |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut queued = tx
                    .prepare_cached(
                        "INSERT INTO tuf_outbox (registry, action, ledger_id, project, request_id, created_at, next_attempt_at) \
                         SELECT ?1, 'delete', l.id, ?2, ?3, ?4, ?4 FROM ledger l \
                         WHERE l.id IN (SELECT value FROM json_each(?5)) AND l.registry = ?1 AND l.project = ?2 \
                         AND l.state = 'committed' ORDER BY l.id \
                         ON CONFLICT (action, ledger_id) WHERE ledger_id IS NOT NULL DO NOTHING",
                    )?
                    .execute(params![registry, project, request_id, now, ids])?;
                if index {
                    queued += tx
                        .prepare_cached(
                            "INSERT INTO tuf_outbox (registry, action, ledger_id, project, request_id, created_at, next_attempt_at) \
                             SELECT ?1, 'index', NULL, ?2, ?3, ?4, ?4 WHERE NOT EXISTS \
                             (SELECT 1 FROM tuf_outbox WHERE request_id = ?3 AND registry = ?1 AND action = 'index')",
                        )?
                        .execute(params![registry, project, request_id, now])?;
                }
                tx.commit()?;
                Ok(queued)
            })
            .await?;
        Ok(queued as u64)
    }

    async fn feed_lease(&self, registry: &str, owner: &str, until: i64, now: i64) -> Result<bool, StateError> {
        let changed = self
            .db
            .run("taking the TUF feed's lease", |c| {
                c.prepare_cached(
                    "INSERT INTO tuf_feed_leases (registry, owner, until) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (registry) DO UPDATE SET owner = excluded.owner, until = excluded.until \
                     WHERE tuf_feed_leases.owner = excluded.owner OR tuf_feed_leases.until < ?4",
                )?
                .execute(params![registry, owner, until, now])
            })
            .await?;
        Ok(changed == 1)
    }

    async fn feed_open(&self, registry: &str, limit: u32) -> Result<Vec<FeedEvent>, StateError> {
        self.db
            .run("listing the TUF feed's open events", |c| {
                c.prepare_cached(select_feed!(
                    "WHERE o.registry = ?1 AND o.state IN ('queued', 'submitted') ORDER BY o.id LIMIT ?2"
                ))?
                .query_map(params![registry, limit], |row| Ok(feed_event(row)))?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
            .into_iter()
            .collect()
    }

    async fn feed_submitted(&self, ids: &[i64], task_id: &str) -> Result<(), StateError> {
        let doing = "recording a TUF feed submission";
        let ids = id_list(doing, ids)?;
        self.db
            .run(doing, |c| {
                c.prepare_cached(
                    "UPDATE tuf_outbox SET state = 'submitted', task_id = ?2 \
                     WHERE id IN (SELECT value FROM json_each(?1)) AND state IN ('queued', 'submitted')",
                )?
                .execute(params![ids, task_id])
            })
            .await?;
        Ok(())
    }

    async fn feed_settle(&self, ids: &[i64], settlement: &FeedSettlement, now: i64) -> Result<(), StateError> {
        let doing = "settling TUF feed events";
        let ids = id_list(doing, ids)?;
        self.db
            .run(doing, |c| match settlement {
                FeedSettlement::Done => c
                    .prepare_cached(
                        "UPDATE tuf_outbox SET state = 'done', finished_at = ?2, last_error = '' \
                         WHERE id IN (SELECT value FROM json_each(?1)) AND state IN ('queued', 'submitted')",
                    )?
                    .execute(params![ids, now]),
                FeedSettlement::Retry { error, at, counted } => c
                    .prepare_cached(
                        "UPDATE tuf_outbox SET state = 'queued', attempts = attempts + ?2, next_attempt_at = ?3, \
                         last_error = ?4 WHERE id IN (SELECT value FROM json_each(?1)) AND state IN ('queued', 'submitted')",
                    )?
                    .execute(params![ids, i64::from(*counted), at, error]),
                FeedSettlement::Failed { error } => c
                    .prepare_cached(
                        "UPDATE tuf_outbox SET state = 'failed', finished_at = ?2, last_error = ?3 \
                         WHERE id IN (SELECT value FROM json_each(?1)) AND state IN ('queued', 'submitted')",
                    )?
                    .execute(params![ids, now, error]),
            })
            .await?;
        Ok(())
    }

    async fn feed_requeue_failed(&self, registry: &str, now: i64) -> Result<u64, StateError> {
        let requeued = self
            .db
            .run("sending failed TUF feed events again", |c| {
                c.prepare_cached(
                    "UPDATE tuf_outbox SET state = 'queued', finished_at = NULL, attempts = 0, next_attempt_at = ?2 \
                     WHERE registry = ?1 AND state = 'failed'",
                )?
                .execute(params![registry, now])
            })
            .await?;
        Ok(requeued as u64)
    }

    async fn feed_status(&self, registry: &str) -> Result<FeedStatus, StateError> {
        let rows = self
            .db
            .run("counting the TUF feed's events", |c| {
                let mut rows = c
                    .prepare_cached(
                        "SELECT state, COUNT(*), MIN(created_at) FROM tuf_outbox \
                         WHERE registry = ?1 AND state IN ('queued', 'submitted') GROUP BY state",
                    )?
                    .query_map([registry], |row| Ok((row.get::<_, String>(0)?, row.get(1)?, row.get(2)?)))?
                    .collect::<rusqlite::Result<Vec<(String, i64, Option<i64>)>>>()?;
                rows.extend(
                    c.prepare_cached(
                        "SELECT 'failed', COUNT(*), MIN(created_at) FROM tuf_outbox WHERE registry = ?1 AND state = 'failed'",
                    )?
                    .query_map([registry], |row| Ok((row.get::<_, String>(0)?, row.get(1)?, row.get(2)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
                );
                Ok(rows)
            })
            .await?;
        let mut status = FeedStatus::default();
        for (state, n, oldest) in rows {
            add_status_row(&mut status, &state, n, oldest)?;
        }
        Ok(status)
    }

    async fn feed_events(&self, registry: &str, state: FeedState, limit: u32) -> Result<Vec<FeedEvent>, StateError> {
        self.db
            .run("listing TUF feed events", |c| {
                c.prepare_cached(select_feed!(
                    "WHERE o.registry = ?1 AND o.state = ?2 ORDER BY o.id DESC LIMIT ?3"
                ))?
                .query_map(params![registry, state.as_str(), limit], |row| Ok(feed_event(row)))?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
            .into_iter()
            .collect()
    }

    async fn feed_unqueued_tombstones(
        &self,
        registry: &str,
        since: i64,
        before: i64,
    ) -> Result<Vec<Tombstone>, StateError> {
        self.db
            .run("listing deletions the TUF feed has not queued", |c| {
                c.prepare_cached(
                    "SELECT registry, project, kind, version, filename, deleted_at, request_id, actor, reason \
                     FROM tombstones t WHERE t.registry = ?1 AND t.deleted_at >= ?2 AND t.deleted_at < ?3 \
                     AND NOT EXISTS (SELECT 1 FROM tuf_outbox o WHERE o.request_id = t.request_id) ORDER BY t.id",
                )?
                .query_map(params![registry, since, before], |row| Ok(rows::tombstone(row)))?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
            .into_iter()
            .collect()
    }
}
