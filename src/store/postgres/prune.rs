//! Retention on PostgreSQL: removing finished requests that ended long ago
//! (from the partial index `requests_finished`, migration
//! `20250101000013_retention.sql`), replacing the oldest audit events by a
//! checkpoint under the chain head's lock, so two replicas pruning at once
//! take turns; and the outbox backlog by destination, for `/metrics`.
//! The policy is [`crate::retention`]'s; this file only does the writes.

use super::*;
use crate::store::prune::prunable;

/// Finished requests that ended before `$1`, oldest first, at most `$2`.
/// `created_at < $1` lets the planner use `requests_finished` (a request
/// ends after it is created); the end time itself is in the body.
pub const FINISHED_BEFORE: &str = "SELECT id FROM requests \
     WHERE status IN ('revoked', 'denied', 'expired', 'failed', 'cancelled') AND created_at < $1 \
     AND COALESCE((body->>'ended_at')::timestamptz, created_at) < $1 \
     ORDER BY created_at LIMIT $2";

/// The outbox by destination, as [`crate::outbox::SlackOp::destination`] names it.
const BACKLOG: &str = "SELECT CASE item->'op'->>'op' \
         WHEN 'post' THEN item->'op'->>'channel' \
         WHEN 'ephemeral' THEN item->'op'->>'channel' \
         WHEN 'audit_notice' THEN item->'op'->>'channel' \
         WHEN 'publish_home' THEN 'app_home' \
         WHEN 'refresh_home' THEN 'app_home' \
         WHEN 'refresh_security_homes' THEN 'app_home' \
         ELSE 'direct_messages' END AS destination, count(*) AS n \
     FROM outbox GROUP BY 1 ORDER BY 1";

impl PgEngine {
    /// Removes up to `limit` finished requests that ended before `before`.
    /// A request is deleted only while it is still finished; replicas
    /// pruning at once delete each row once.
    pub(crate) async fn prune_finished_rows(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(FINISHED_BEFORE)
            .bind(before)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "DELETE FROM requests WHERE id = ANY($1) \
             AND status IN ('revoked', 'denied', 'expired', 'failed', 'cancelled')",
        )
        .bind(&ids)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    /// Replaces the oldest audit events recorded before `before` (at most
    /// `limit`) by one checkpoint, in one transaction holding the chain
    /// head's lock.
    pub(crate) async fn prune_audit_rows(
        &self,
        before: DateTime<Utc>,
        limit: usize,
        why: &str,
    ) -> Result<Option<AuditEvent>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("SELECT seq FROM audit_head WHERE only_row FOR UPDATE")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let rows = sqlx::query("SELECT event FROM audit_log ORDER BY seq LIMIT $1")
            .bind(limit as i64 + 1)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let mut head = Vec::with_capacity(rows.len());
        for row in rows {
            let Json(e): Json<AuditEvent> = row.try_get("event").map_err(db)?;
            head.push(e);
        }
        let Some((_, last)) = prunable(&head, before, limit) else {
            return Ok(None);
        };
        let checkpoint = AuditEvent::checkpoint(&last, Utc::now(), why);
        sqlx::query("DELETE FROM audit_log WHERE seq < $1")
            .bind(checkpoint.seq as i64)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("UPDATE audit_log SET hash = $2, event = $3 WHERE seq = $1")
            .bind(checkpoint.seq as i64)
            .bind(&checkpoint.hash)
            .bind(Json(&checkpoint))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some(checkpoint))
    }

    /// Outbox entries waiting, by destination.
    pub(crate) async fn outbox_backlog_rows(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(BACKLOG)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|r| {
                let dest: Option<String> = r.try_get("destination").map_err(db)?;
                let n: i64 = r.try_get("n").map_err(db)?;
                Ok((dest.unwrap_or_default(), n as u64))
            })
            .collect()
    }
}
