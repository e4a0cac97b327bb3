//! The TUF feed's outbox ([`FeedStore`]) in the PostgreSQL store. The statements are
//! `sqlite/feed.rs`'s, in PostgreSQL's dialect; replicas share the outbox and the lease.

use async_trait::async_trait;

use super::{finish_row, in_context, PostgresStore};
use crate::state::feed::{add_status_row, feed_event, select_feed};
use crate::state::{
    rows, AuditRecord, FeedEvent, FeedSettlement, FeedState, FeedStatus, FeedStore, LedgerState, StateError, Tombstone,
};

#[async_trait]
impl FeedStore for PostgresStore {
    async fn ledger_commit_fed(
        &self,
        id: i64,
        detail: &str,
        now: i64,
        index: bool,
        audit: Option<&AuditRecord>,
    ) -> Result<(), StateError> {
        let doing = "committing an upload for the TUF feed";
        let mut tx = self.ready().await?.begin().await.map_err(|e| in_context(doing, e))?;
        let changed = finish_row(&mut tx, (id, LedgerState::Committed, detail, now), audit, doing).await?;
        // A row finished before queues nothing.
        for (action, wanted) in [("add", changed), ("index", changed && index)] {
            if !wanted {
                continue;
            }
            sqlx::query(
                "INSERT INTO tuf_outbox (registry, action, ledger_id, project, request_id, created_at, next_attempt_at) \
                 SELECT registry, $2, CASE WHEN $2 = 'add' THEN id END, project, request_id, $3, $3 FROM ledger WHERE id = $1",
            )
            .bind(id)
            .bind(action)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| in_context(doing, e))?;
        }
        tx.commit().await.map_err(|e| in_context(doing, e))
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
        let mut tx = self.ready().await?.begin().await.map_err(|e| in_context(doing, e))?;
        let mut queued = sqlx::query(
            "INSERT INTO tuf_outbox (registry, action, ledger_id, project, request_id, created_at, next_attempt_at) \
             SELECT $1, 'delete', l.id, $2, $3, $4, $4 FROM ledger l \
             WHERE l.id = ANY($5) AND l.registry = $1 AND l.project = $2 AND l.state = 'committed' ORDER BY l.id \
             ON CONFLICT (action, ledger_id) WHERE ledger_id IS NOT NULL DO NOTHING",
        )
        .bind(registry)
        .bind(project)
        .bind(request_id)
        .bind(now)
        .bind(ledger_ids)
        .execute(&mut *tx)
        .await
        .map_err(|e| in_context(doing, e))?
        .rows_affected();
        if index {
            queued += sqlx::query(
                "INSERT INTO tuf_outbox (registry, action, ledger_id, project, request_id, created_at, next_attempt_at) \
                 SELECT $1, 'index', NULL, $2, $3, $4, $4 WHERE NOT EXISTS \
                 (SELECT 1 FROM tuf_outbox WHERE request_id = $3 AND registry = $1 AND action = 'index')",
            )
            .bind(registry)
            .bind(project)
            .bind(request_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| in_context(doing, e))?
            .rows_affected();
        }
        tx.commit().await.map_err(|e| in_context(doing, e))?;
        Ok(queued)
    }

    async fn feed_lease(&self, registry: &str, owner: &str, until: i64, now: i64) -> Result<bool, StateError> {
        let changed = sqlx::query(
            "INSERT INTO tuf_feed_leases (registry, owner, until) VALUES ($1, $2, $3) \
             ON CONFLICT (registry) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until \
             WHERE tuf_feed_leases.owner = EXCLUDED.owner OR tuf_feed_leases.until < $4",
        )
        .bind(registry)
        .bind(owner)
        .bind(until)
        .bind(now)
        .execute(self.ready().await?)
        .await
        .map_err(|e| in_context("taking the TUF feed's lease", e))?
        .rows_affected();
        Ok(changed == 1)
    }

    async fn feed_open(&self, registry: &str, limit: u32) -> Result<Vec<FeedEvent>, StateError> {
        let rows = sqlx::query(select_feed!(
            "WHERE o.registry = $1 AND o.state IN ('queued', 'submitted') ORDER BY o.id LIMIT $2"
        ))
        .bind(registry)
        .bind(i64::from(limit))
        .fetch_all(self.ready().await?)
        .await
        .map_err(|e| in_context("listing the TUF feed's open events", e))?;
        rows.iter().map(feed_event).collect()
    }

    async fn feed_submitted(&self, ids: &[i64], task_id: &str) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE tuf_outbox SET state = 'submitted', task_id = $2 \
             WHERE id = ANY($1) AND state IN ('queued', 'submitted')",
        )
        .bind(ids)
        .bind(task_id)
        .execute(self.ready().await?)
        .await
        .map_err(|e| in_context("recording a TUF feed submission", e))?;
        Ok(())
    }

    async fn feed_settle(&self, ids: &[i64], settlement: &FeedSettlement, now: i64) -> Result<(), StateError> {
        let query = match settlement {
            FeedSettlement::Done => sqlx::query(
                "UPDATE tuf_outbox SET state = 'done', finished_at = $2, last_error = '' \
                 WHERE id = ANY($1) AND state IN ('queued', 'submitted')",
            )
            .bind(ids)
            .bind(now),
            FeedSettlement::Retry { error, at, counted } => sqlx::query(
                "UPDATE tuf_outbox SET state = 'queued', attempts = attempts + $2, next_attempt_at = $3, last_error = $4 \
                 WHERE id = ANY($1) AND state IN ('queued', 'submitted')",
            )
            .bind(ids)
            .bind(i64::from(*counted))
            .bind(*at)
            .bind(error.as_str()),
            FeedSettlement::Failed { error } => sqlx::query(
                "UPDATE tuf_outbox SET state = 'failed', finished_at = $2, last_error = $3 \
                 WHERE id = ANY($1) AND state IN ('queued', 'submitted')",
            )
            .bind(ids)
            .bind(now)
            .bind(error.as_str()),
        };
        query
            .execute(self.ready().await?)
            .await
            .map_err(|e| in_context("settling TUF feed events", e))?;
        Ok(())
    }

    async fn feed_requeue_failed(&self, registry: &str, now: i64) -> Result<u64, StateError> {
        Ok(sqlx::query(
            "UPDATE tuf_outbox SET state = 'queued', finished_at = NULL, attempts = 0, next_attempt_at = $2 \
             WHERE registry = $1 AND state = 'failed'",
        )
        .bind(registry)
        .bind(now)
        .execute(self.ready().await?)
        .await
        .map_err(|e| in_context("sending failed TUF feed events again", e))?
        .rows_affected())
    }

    async fn feed_status(&self, registry: &str) -> Result<FeedStatus, StateError> {
        let rows = sqlx::query_as::<_, (String, i64, Option<i64>)>(
            "SELECT state, COUNT(*), MIN(created_at) FROM tuf_outbox \
             WHERE registry = $1 AND state IN ('queued', 'submitted') GROUP BY state \
             UNION ALL SELECT 'failed', COUNT(*), MIN(created_at) FROM tuf_outbox WHERE registry = $1 AND state = 'failed'",
        )
        .bind(registry)
        .fetch_all(self.ready().await?)
        .await
        .map_err(|e| in_context("counting the TUF feed's events", e))?;
        let mut status = FeedStatus::default();
        for (state, n, oldest) in rows {
            add_status_row(&mut status, &state, n, oldest)?;
        }
        Ok(status)
    }

    async fn feed_events(&self, registry: &str, state: FeedState, limit: u32) -> Result<Vec<FeedEvent>, StateError> {
        let rows = sqlx::query(select_feed!(
            "WHERE o.registry = $1 AND o.state = $2 ORDER BY o.id DESC LIMIT $3"
        ))
        .bind(registry)
        .bind(state.as_str())
        .bind(i64::from(limit))
        .fetch_all(self.ready().await?)
        .await
        .map_err(|e| in_context("listing TUF feed events", e))?;
        rows.iter().map(feed_event).collect()
    }

    async fn feed_unqueued_tombstones(
        &self,
        registry: &str,
        since: i64,
        before: i64,
    ) -> Result<Vec<Tombstone>, StateError> {
        let rows = sqlx::query(
            "SELECT registry, project, kind, version, filename, deleted_at, request_id, actor, reason \
             FROM tombstones t WHERE t.registry = $1 AND t.deleted_at >= $2 AND t.deleted_at < $3 \
             AND NOT EXISTS (SELECT 1 FROM tuf_outbox o WHERE o.request_id = t.request_id) ORDER BY t.id",
        )
        .bind(registry)
        .bind(since)
        .bind(before)
        .fetch_all(self.ready().await?)
        .await
        .map_err(|e| in_context("listing deletions the TUF feed has not queued", e))?;
        rows.iter().map(rows::tombstone).collect()
    }
}
