//! The [`StoreEngine`] interface on PostgreSQL: each query of the interface
//! as SQL over the schema in `migrations/`, and the advisory lock that keeps
//! one provider run at a time per person and runbook across replicas. The
//! engine itself (connecting, migrating, listening for deadlines, the
//! helpers that write a change) is in the parent module.

use super::*;

/// The advisory-lock key of a (person, runbook): the first 8 bytes of a
/// SHA-256, the same in every process and version.
fn provider_lock_key(requester: &str, runbook: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(b"accessbot provider run\0");
    h.update(requester.as_bytes());
    h.update([0]);
    h.update(runbook.as_bytes());
    let d = h.finalize();
    i64::from_be_bytes(d[..8].try_into().expect("a SHA-256 has 32 bytes"))
}

/// A held (or being acquired) advisory lock on its own connection.
struct AdvisoryLock {
    conn: Option<PoolConnection<Postgres>>,
    key: i64,
    held: bool,
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let runtime = tokio::runtime::Handle::try_current();
        match (self.held, runtime) {
            (true, Ok(rt)) => {
                let key = self.key;
                rt.spawn(async move {
                    let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
                        .bind(key)
                        .fetch_one(&mut *conn)
                        .await;
                    if !matches!(unlocked, Ok(true)) {
                        // Closing the session releases every lock it holds.
                        conn.close_on_drop();
                    }
                });
            }
            // Dropped while waiting (the lock may still be granted to this
            // session later) or outside a runtime: close the session, which
            // releases whatever it holds or will hold.
            _ => conn.close_on_drop(),
        }
    }
}

impl StoreEngine for PgEngine {
    fn engine_name(&self) -> &'static str {
        "postgres"
    }

    fn shared_by_replicas(&self) -> bool {
        true
    }

    fn replica_id(&self) -> &str {
        &self.replica
    }

    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<AccessRequest>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT body FROM requests WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            Ok(requests_from(row.into_iter().collect())?.pop())
        })
    }

    fn open_requests_of<'a>(&'a self, requester: &'a str) -> StoreFuture<'a, Vec<AccessRequest>> {
        Box::pin(async move {
            let rows = sqlx::query(queries::OPEN_OF)
                .bind(requester)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            requests_from(rows)
        })
    }

    fn active_grants_covering<'a>(
        &'a self,
        requester: &'a str,
        runbook: &'a str,
    ) -> StoreFuture<'a, Vec<AccessRequest>> {
        Box::pin(async move {
            let rows = sqlx::query(queries::COVERING)
                .bind(requester)
                .bind(runbook)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            requests_from(rows)
        })
    }

    fn requests_with_status(&self, status: Status) -> StoreFuture<'_, Vec<AccessRequest>> {
        Box::pin(async move {
            if status.is_terminal() {
                return Err(crate::store::engine::finished_status(status));
            }
            let rows = sqlx::query(queries::WITH_STATUS)
                .bind(status_text(status))
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            requests_from(rows)
        })
    }

    fn insert<'a>(&'a self, req: &'a AccessRequest, effects: Effects) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(db)?;
            insert_request(&mut tx, req).await?;
            write_effects(&mut tx, &effects).await?;
            if req.next_due().is_some() {
                notify_deadline(&mut tx).await?;
            }
            tx.commit().await.map_err(db)
        })
    }

    fn update_with<'a>(
        &'a self,
        id: &'a str,
        change: Change<'a>,
    ) -> StoreFuture<'a, Option<AccessRequest>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let row = sqlx::query("SELECT body FROM requests WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            let Some(old) = requests_from(row.into_iter().collect())?.pop() else {
                return Err(StoreError::NotFound(id.to_string()));
            };
            let mut req = old.clone();
            let Some(effects) = change(&mut req) else {
                tx.rollback().await.map_err(db)?;
                return Ok(None);
            };
            let due = req.next_due();
            sqlx::query(
                "UPDATE requests SET requester = $2, runbook_id = $3, status = $4, body = $5, \
                 due_at = $6, lease_owner = NULL, lease_until = NULL WHERE id = $1",
            )
            .bind(id)
            .bind(&req.requester)
            .bind(&req.runbook_id)
            .bind(status_text(req.status))
            .bind(Json(&req))
            .bind(due)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            write_effects(&mut tx, &effects).await?;
            if due.is_some() && due != old.next_due() {
                notify_deadline(&mut tx).await?;
            }
            tx.commit().await.map_err(db)?;
            Ok(Some(req))
        })
    }

    fn enqueue(&self, effects: Effects) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(db)?;
            write_effects(&mut tx, &effects).await?;
            tx.commit().await.map_err(db)
        })
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> StoreFuture<'_, Vec<DueWork>> {
        Box::pin(async move {
            let rows = self
                .claim_rows(
                    "WITH picked AS ( \
                   SELECT id FROM requests \
                   WHERE due_at IS NOT NULL AND due_at <= $1 \
                     AND (lease_until IS NULL OR lease_until <= $1) \
                   ORDER BY due_at, id LIMIT $2 \
                   FOR UPDATE SKIP LOCKED) \
                 UPDATE requests r SET lease_owner = $3, lease_until = $4 \
                 FROM picked WHERE r.id = picked.id \
                 RETURNING r.id, r.due_at",
                    now,
                    limit,
                    lease,
                )
                .await?;
            let mut out = rows
                .into_iter()
                .map(|r| {
                    Ok(DueWork {
                        id: r.try_get("id").map_err(db)?,
                        due_at: r.try_get("due_at").map_err(db)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            out.sort_by(|a, b| (a.due_at, &a.id).cmp(&(b.due_at, &b.id)));
            Ok(out)
        })
    }

    fn next_deadline(&self) -> StoreFuture<'_, Option<DateTime<Utc>>> {
        Box::pin(async move {
            sqlx::query_scalar(
                "SELECT LEAST( \
                   (SELECT min(due_at) FROM requests \
                     WHERE due_at IS NOT NULL AND lease_until IS NULL), \
                   (SELECT min(lease_until) FROM requests WHERE lease_until IS NOT NULL))",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(db)
        })
    }

    fn deadline_changed(&self) -> Arc<Notify> {
        self.deadline_changed.clone()
    }

    fn outbox_claim(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> StoreFuture<'_, Vec<OutboxEntry>> {
        Box::pin(async move {
            let rows = self
                .claim_rows(
                    "WITH picked AS ( \
                   SELECT o.seq FROM outbox o \
                   WHERE (o.not_before IS NULL OR o.not_before <= $1) \
                     AND (o.lease_until IS NULL OR o.lease_until <= $1) \
                     AND NOT EXISTS (SELECT 1 FROM outbox p \
                                     WHERE p.order_key = o.order_key AND p.seq < o.seq) \
                   ORDER BY o.seq LIMIT $2 \
                   FOR UPDATE OF o SKIP LOCKED) \
                 UPDATE outbox o SET lease_owner = $3, lease_until = $4 \
                 FROM picked WHERE o.seq = picked.seq \
                 RETURNING o.seq, o.item",
                    now,
                    limit,
                    lease,
                )
                .await?;
            let mut out = rows
                .into_iter()
                .map(|r| {
                    Ok(OutboxEntry {
                        seq: r.try_get::<i64, _>("seq").map_err(db)? as u64,
                        item: r.try_get::<Json<OutboxItem>, _>("item").map_err(db)?.0,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            out.sort_by_key(|e| e.seq);
            Ok(out)
        })
    }

    fn outbox_done(&self, seq: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query("DELETE FROM outbox WHERE seq = $1")
                .bind(seq as i64)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn outbox_retry<'a>(&'a self, seq: u64, item: &'a OutboxItem) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE outbox SET item = $2, not_before = $3, lease_owner = NULL, \
                 lease_until = NULL WHERE seq = $1",
            )
            .bind(seq as i64)
            .bind(Json(item))
            .bind(item.not_before)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn outbox_len(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            Ok(n as u64)
        })
    }

    fn outbox_len_of<'a>(&'a self, order_key: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE order_key = $1")
                .bind(order_key)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            Ok(n as u64)
        })
    }

    fn outbox_following<'a>(
        &'a self,
        order_key: &'a str,
        after_seq: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<OutboxEntry>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT seq, item FROM outbox WHERE order_key = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
            )
            .bind(order_key)
            .bind(after_seq as i64)
            .bind(limit.min(i64::MAX as usize) as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            rows.into_iter()
                .map(|r| {
                    Ok(OutboxEntry {
                        seq: r.try_get::<i64, _>("seq").map_err(db)? as u64,
                        item: r.try_get::<Json<OutboxItem>, _>("item").map_err(db)?.0,
                    })
                })
                .collect()
        })
    }

    fn requests_since<'a>(
        &'a self,
        since: DateTime<Utc>,
        after_id: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<AccessRequest>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT body FROM requests WHERE created_at >= $1 AND id > $2 \
                 ORDER BY id LIMIT $3",
            )
            .bind(since)
            .bind(after_id)
            .bind(limit.min(i64::MAX as usize) as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            requests_from(rows)
        })
    }

    fn audit_range(&self, after: u64, limit: usize) -> StoreFuture<'_, Vec<AuditEvent>> {
        Box::pin(async move {
            let rows =
                sqlx::query("SELECT event FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind(after as i64)
                    .bind(limit as i64)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
            rows.into_iter()
                .map(|r| {
                    r.try_get::<Json<AuditEvent>, _>("event")
                        .map(|j| j.0)
                        .map_err(db)
                })
                .collect()
        })
    }

    fn audit_head(&self) -> StoreFuture<'_, (u64, String)> {
        Box::pin(async move {
            let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE only_row")
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            Ok((
                row.try_get::<i64, _>("seq").map_err(db)? as u64,
                row.try_get("hash").map_err(db)?,
            ))
        })
    }

    fn seen_get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            sqlx::query_scalar("SELECT answer FROM seen WHERE key = $1 AND answer IS NOT NULL")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)
        })
    }

    fn seen_put<'a>(
        &'a self,
        key: &'a [u8],
        now: DateTime<Utc>,
        answer: &'a [u8],
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO seen (key, seen_at, answer) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET seen_at = EXCLUDED.seen_at, answer = EXCLUDED.answer, \
                 claimed_by = NULL, claimed_until = NULL",
            )
            .bind(key)
            .bind(now)
            .bind(answer)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn seen_claim<'a>(
        &'a self,
        key: &'a [u8],
        now: DateTime<Utc>,
        owner: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, Claim> {
        Box::pin(async move {
            let until = lease_end(now, lease);
            // A row released between two statements below sends the loop
            // round again; three rounds end with "in flight" rather than spin.
            for _ in 0..3 {
                // A new key: the row is created already claimed. Of
                // concurrent inserts the primary key lets exactly one in.
                let inserted: Option<Vec<u8>> = sqlx::query_scalar(
                    "INSERT INTO seen (key, seen_at, answer, claimed_by, claimed_until) \
                     VALUES ($1, $2, NULL, $3, $4) ON CONFLICT (key) DO NOTHING RETURNING key",
                )
                .bind(key)
                .bind(now)
                .bind(owner)
                .bind(until)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
                if inserted.is_some() {
                    return Ok(Claim::Mine);
                }
                // A claim whose lease ran out (its claimer died): take it
                // over. The row lock of the UPDATE lets one taker in.
                let taken: Option<Vec<u8>> = sqlx::query_scalar(
                    "UPDATE seen SET claimed_by = $3, claimed_until = $4, seen_at = $2 \
                     WHERE key = $1 AND answer IS NULL AND claimed_until < $2 RETURNING key",
                )
                .bind(key)
                .bind(now)
                .bind(owner)
                .bind(until)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
                if taken.is_some() {
                    return Ok(Claim::Mine);
                }
                let row: Option<Option<Vec<u8>>> =
                    sqlx::query_scalar("SELECT answer FROM seen WHERE key = $1")
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?;
                match row {
                    Some(Some(answer)) => return Ok(Claim::Answered(answer)),
                    Some(None) => return Ok(Claim::InFlight),
                    None => continue,
                }
            }
            Ok(Claim::InFlight)
        })
    }

    fn seen_release<'a>(&'a self, key: &'a [u8], owner: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query("DELETE FROM seen WHERE key = $1 AND answer IS NULL AND claimed_by = $2")
                .bind(key)
                .bind(owner)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn seen_prune(&self, before: DateTime<Utc>) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM seen WHERE seen_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            Ok(done.rows_affected())
        })
    }

    fn lock_provider_run<'a>(
        &'a self,
        requester: &'a str,
        runbook: &'a str,
    ) -> StoreFuture<'a, ProviderRunGuard> {
        Box::pin(async move {
            let conn = self.lock_pool.acquire().await.map_err(db)?;
            let mut lock = AdvisoryLock {
                conn: Some(conn),
                key: provider_lock_key(requester, runbook),
                held: false,
            };
            let conn = lock.conn.as_mut().expect("just set");
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(lock.key)
                .execute(&mut **conn)
                .await
                .map_err(db)?;
            lock.held = true;
            Ok(ProviderRunGuard::new(lock))
        })
    }

    fn prune_finished(&self, before: DateTime<Utc>, limit: usize) -> StoreFuture<'_, u64> {
        Box::pin(self.prune_finished_rows(before, limit))
    }

    fn prune_audit<'a>(
        &'a self,
        before: DateTime<Utc>,
        limit: usize,
        why: &'a str,
    ) -> StoreFuture<'a, Option<AuditEvent>> {
        Box::pin(self.prune_audit_rows(before, limit, why))
    }

    fn outbox_backlog(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        Box::pin(self.outbox_backlog_rows())
    }
}

impl PgEngine {
    /// Runs a claiming statement (`$1` now, `$2` the most rows, `$3` this
    /// replica, `$4` the lease's end): the rows it picked, now leased to us.
    async fn claim_rows(
        &self,
        sql: &'static str,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
        sqlx::query(sql)
            .bind(now)
            .bind(limit as i64)
            .bind(&self.replica)
            .bind(lease_end(now, lease))
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_lock_keys_are_stable_and_distinct() {
        assert_eq!(provider_lock_key("U1", "rb"), provider_lock_key("U1", "rb"));
        assert_ne!(
            provider_lock_key("U1", "rb"),
            provider_lock_key("U1", "rb2")
        );
        // The separator keeps ("U1", "2rb") apart from ("U12", "rb").
        assert_ne!(
            provider_lock_key("U1", "2rb"),
            provider_lock_key("U12", "rb")
        );
    }

    #[test]
    fn statuses_are_stored_as_their_serde_names() {
        assert_eq!(status_text(Status::Pending), "pending");
        assert_eq!(status_text(Status::Revoking), "revoking");
    }
}
