//! [`StoreEngine`] on PostgreSQL, shared by any number of replicas.
//!
//! Every decision that must happen once is made by the database, never by a
//! lock in one process:
//! - `update` reads the request with `SELECT … FOR UPDATE`, so concurrent
//!   changes of one request, on any replica, run one after the other; other
//!   requests are not held up.
//! - Audit events are appended under a row lock on the chain head
//!   (`audit_head`), taken after the request's row lock, inside the same
//!   transaction: the chain has one order across replicas.
//! - Due work and outbox entries are claimed with `FOR UPDATE SKIP LOCKED`
//!   and a lease (`lease_owner`, `lease_until`); a replica that dies loses its
//!   claims when the lease runs out, and an update of a request releases it.
//! - A transaction that sets a deadline sends `NOTIFY accessbot_deadline`
//!   (delivered on commit); every engine listens with a `PgListener` task that
//!   wakes [`StoreEngine::deadline_changed`].
//! - The provider-run lock is a session-level `pg_advisory_lock` on a
//!   connection from a pool of its own, so waiting for it never starves the
//!   main pool, and the server releases it if the holder's connection dies.
//!
//! Queries are checked at run time (`sqlx::query`), so building needs no
//! database. The schema lives in `migrations/`, embedded with
//! `sqlx::migrate!` and applied at connect under sqlx's advisory lock.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::Notify;

use super::engine::{
    Change, Claim, DueWork, OutboxEntry, ProviderRunGuard, StoreEngine, StoreFuture,
};
use super::url::{mask_url, scrub_password};
use super::{Effects, StoreError};
use crate::audit::{audit_hash, AuditEvent};
use crate::outbox::OutboxItem;
use crate::request::{AccessRequest, Status};

/// The schema, embedded from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The channel a transaction that sets a deadline notifies.
pub const DEADLINE_CHANNEL: &str = "accessbot_deadline";

/// The indexed reads, public so the tests can `EXPLAIN` exactly these.
/// Each repeats its partial index's `WHERE` so the planner can use it.
pub mod queries {
    /// A person's unfinished requests (`requests_open_by_requester`).
    pub const OPEN_OF: &str = "SELECT body FROM requests WHERE requester = $1 \
         AND status IN ('pending', 'granting', 'active', 'revoking', 'needs_attention') ORDER BY created_at";
    /// Grants of one access to one person (`requests_holding`).
    pub const COVERING: &str = "SELECT body FROM requests WHERE requester = $1 \
         AND runbook_id = $2 AND status IN ('granting', 'active') ORDER BY created_at";
    /// Unfinished requests in one status (`requests_open_by_status`).
    pub const WITH_STATUS: &str = "SELECT body FROM requests WHERE status = $1 \
         AND status IN ('pending', 'granting', 'active', 'revoking', 'needs_attention') ORDER BY created_at";
}

/// Pool sizes and time limits.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections for queries and transactions.
    pub max_connections: u32,
    /// Connections that hold provider-run locks (one per run in progress).
    pub lock_connections: u32,
    /// How long a query waits for a free connection, and how long the first
    /// connection may take.
    pub acquire_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 10,
            lock_connections: 16,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// The PostgreSQL engine. Cheap to share behind an `Arc`; the listener task
/// stops when the engine is dropped.
pub struct PgEngine {
    pool: PgPool,
    lock_pool: PgPool,
    replica: String,
    deadline_changed: Arc<Notify>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PgEngine {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PgEngine {
    /// Connects with the default options; see [`PgEngine::connect_with`].
    pub async fn connect(url: &str) -> Result<PgEngine, StoreError> {
        PgEngine::connect_with(url, PgOptions::default()).await
    }

    /// Connects, refuses a schema newer than this binary, applies the
    /// migrations and starts listening for deadlines. An unreachable database
    /// is [`StoreError::Unreachable`], whose message names the host and the
    /// cause and never the password.
    #[tracing::instrument(skip_all, fields(database = %mask_url(url)))]
    pub async fn connect_with(url: &str, options: PgOptions) -> Result<PgEngine, StoreError> {
        let unreachable = |e: &dyn std::fmt::Display| StoreError::Unreachable {
            target: mask_url(url),
            cause: scrub_password(&e.to_string(), url),
        };
        let connect = PgConnectOptions::from_str(url).map_err(|e| unreachable(&e))?;
        // One plain connection first: a pool only reports that it timed out,
        // this says why (refused, unknown host, password rejected, …).
        match tokio::time::timeout(
            options.acquire_timeout,
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&connect),
        )
        .await
        {
            Err(_) => {
                return Err(unreachable(&format!(
                    "no answer within {} s",
                    options.acquire_timeout.as_secs_f32()
                )))
            }
            Ok(Err(e)) => return Err(unreachable(&e)),
            Ok(Ok(conn)) => {
                let _ = sqlx::Connection::close(conn).await;
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(|e| unreachable(&e))?;
        migrate(&pool).await?;
        let lock_pool = PgPoolOptions::new()
            .max_connections(options.lock_connections)
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.clone());
        let deadline_changed = Arc::new(Notify::new());
        // The listener keeps its connection; a pool of one of its own keeps
        // it from taking a slot of the main pool, and reconnects it.
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.clone());
        let mut listener = PgListener::connect_with(&listen_pool)
            .await
            .map_err(|e| unreachable(&e))?;
        listener
            .listen(DEADLINE_CHANNEL)
            .await
            .map_err(|e| unreachable(&e))?;
        let listener = tokio::spawn(listen_for_deadlines(listener, deadline_changed.clone()));
        let engine = PgEngine {
            pool,
            lock_pool,
            replica: super::engine::new_replica_id(),
            deadline_changed,
            listener,
        };
        engine.release_leases_of_dead_local_replicas().await?;
        Ok(engine)
    }

    /// Releases the leases held by replicas that ran on this host and whose
    /// process is gone: a bot restarted after a crash takes its work back at
    /// once instead of after the lease. A lease of another host, or of a
    /// process that still runs, is left to run out.
    async fn release_leases_of_dead_local_replicas(&self) -> Result<(), StoreError> {
        let owners: Vec<String> = sqlx::query_scalar(
            "SELECT lease_owner FROM requests WHERE lease_until IS NOT NULL AND lease_owner IS NOT NULL \
             UNION SELECT lease_owner FROM outbox WHERE lease_owner IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let host = super::engine::replica_host();
        let dead: Vec<String> = owners
            .into_iter()
            .filter(|owner| {
                let mut parts = owner.rsplitn(3, ':');
                let (_tag, pid, owner_host) = (parts.next(), parts.next(), parts.next());
                owner_host == Some(host.as_str())
                    && pid
                        .and_then(|p| p.parse::<u32>().ok())
                        .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
            })
            .collect();
        if dead.is_empty() {
            return Ok(());
        }
        for table in ["requests", "outbox"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ANY($1)"
            )))
            .bind(&dead)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        }
        tracing::info!(replicas = ?dead, "released the leases of replicas of this host that are gone");
        self.deadline_changed.notify_one();
        Ok(())
    }

    /// The main pool, for tests and tools that need plain SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Inserts a request and its deadline exactly as given (no effects):
    /// used by `migrate-store`, which copies the outbox and audit log as they are.
    pub(crate) async fn copy_request(&self, req: &AccessRequest) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        insert_request(&mut tx, req).await?;
        tx.commit().await.map_err(db)
    }

    pub(crate) async fn copy_outbox(&self, seq: u64, item: &OutboxItem) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO outbox (seq, order_key, item, not_before) VALUES ($1, $2, $3, $4)",
        )
        .bind(seq as i64)
        .bind(&item.order_key)
        .bind(Json(item))
        .bind(item.not_before)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Moves the outbox sequence past the copied entries.
    pub(crate) async fn reset_outbox_sequence(&self) -> Result<(), StoreError> {
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('outbox', 'seq'), \
             GREATEST((SELECT max(seq) FROM outbox), 1))",
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Appends already-chained events (seq and hash kept) and moves the head.
    pub(crate) async fn copy_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let mut tx = self.pool.begin().await.map_err(db)?;
        for e in events {
            sqlx::query("INSERT INTO audit_log (seq, hash, event) VALUES ($1, $2, $3)")
                .bind(e.seq as i64)
                .bind(&e.hash)
                .bind(Json(e))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2")
            .bind(last.seq as i64)
            .bind(&last.hash)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// Whether the destination of a copy is empty.
    pub(crate) async fn is_empty(&self) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM requests LIMIT 1) r) \
             + (SELECT count(*) FROM (SELECT 1 FROM audit_log LIMIT 1) a) \
             + (SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT 1) o)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(n == 0)
    }
}

/// Applies the embedded migrations; a database that has a migration this
/// binary does not know was written by a newer accessbot and is refused.
async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let has_table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(db)?;
    if has_table {
        let found: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
            .fetch_one(pool)
            .await
            .map_err(db)?;
        if let Some(found) = found.filter(|v| *v > known) {
            return Err(StoreError::SchemaTooNew { found, known });
        }
    }
    MIGRATOR.run(pool).await.map_err(|e| match e {
        MigrateError::VersionMissing(found) => StoreError::SchemaTooNew { found, known },
        other => StoreError::Db(format!("applying the database schema failed: {other}")),
    })
}

/// Wakes `notify` on every deadline notification. After a lost connection
/// (`PgListener` reconnects by itself) it wakes once more, since a
/// notification may have been missed meanwhile.
async fn listen_for_deadlines(mut listener: PgListener, notify: Arc<Notify>) {
    loop {
        match listener.recv().await {
            Ok(_) => notify.notify_one(),
            Err(e) => {
                tracing::warn!(error = %e, "lost the deadline notification channel; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
                notify.notify_one();
            }
        }
    }
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

fn status_text(s: Status) -> &'static str {
    super::status_name(s)
}

fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

async fn insert_request(
    tx: &mut Transaction<'_, Postgres>,
    req: &AccessRequest,
) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO requests (id, requester, runbook_id, status, created_at, body, due_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&req.id)
    .bind(&req.requester)
    .bind(&req.runbook_id)
    .bind(status_text(req.status))
    .bind(req.created_at)
    .bind(Json(req))
    .bind(req.next_due())
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::Exists(req.id.clone()));
    }
    Ok(())
}

/// Queues the outbox items and appends the audit events, chained under the
/// head row's lock, in the caller's transaction.
async fn write_effects(
    tx: &mut Transaction<'_, Postgres>,
    effects: &Effects,
) -> Result<(), StoreError> {
    for item in &effects.outbox {
        sqlx::query("INSERT INTO outbox (order_key, item, not_before) VALUES ($1, $2, $3)")
            .bind(&item.order_key)
            .bind(Json(item))
            .bind(item.not_before)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    if effects.audit.is_empty() {
        return Ok(());
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE only_row FOR UPDATE")
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
    let mut seq = head.try_get::<i64, _>("seq").map_err(db)? as u64;
    let mut prev: String = head.try_get("hash").map_err(db)?;
    for e in &effects.audit {
        seq += 1;
        let mut event = AuditEvent {
            seq,
            at: Utc::now(),
            kind: e.kind.clone(),
            request_id: e.request_id.clone(),
            runbook: e.runbook.clone(),
            actor: e.actor.clone(),
            subject: e.subject.clone(),
            detail: e.detail.clone(),
            prev_hash: prev.clone(),
            hash: String::new(),
        };
        event.hash = audit_hash(&event);
        prev = event.hash.clone();
        sqlx::query("INSERT INTO audit_log (seq, hash, event) VALUES ($1, $2, $3)")
            .bind(seq as i64)
            .bind(&event.hash)
            .bind(Json(&event))
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE only_row")
        .bind(seq as i64)
        .bind(&prev)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

async fn notify_deadline(tx: &mut Transaction<'_, Postgres>) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(DEADLINE_CHANNEL)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

fn requests_from(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<AccessRequest>, StoreError> {
    rows.into_iter()
        .map(|r| {
            r.try_get::<Json<AccessRequest>, _>("body")
                .map(|j| j.0)
                .map_err(db)
        })
        .collect()
}

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
                return Err(super::engine::finished_status(status));
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
            let rows = sqlx::query(
                "WITH picked AS ( \
                   SELECT id FROM requests \
                   WHERE due_at IS NOT NULL AND due_at <= $1 \
                     AND (lease_until IS NULL OR lease_until <= $1) \
                   ORDER BY due_at, id LIMIT $2 \
                   FOR UPDATE SKIP LOCKED) \
                 UPDATE requests r SET lease_owner = $3, lease_until = $4 \
                 FROM picked WHERE r.id = picked.id \
                 RETURNING r.id, r.due_at",
            )
            .bind(now)
            .bind(limit as i64)
            .bind(&self.replica)
            .bind(lease_end(now, lease))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
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
            let rows = sqlx::query(
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
            )
            .bind(now)
            .bind(limit as i64)
            .bind(&self.replica)
            .bind(lease_end(now, lease))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
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
