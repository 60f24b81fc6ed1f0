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
use crate::audit::AuditEvent;
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
         AND status IN ('pending', 'granting', 'scheduled', 'active', 'revoking', 'needs_attention') ORDER BY created_at";
    /// Grants of one access to one person (`requests_holding`).
    pub const COVERING: &str = "SELECT body FROM requests WHERE requester = $1 \
         AND runbook_id = $2 AND status IN ('granting', 'active') ORDER BY created_at";
    /// Unfinished requests in one status (`requests_open_by_status`).
    pub const WITH_STATUS: &str = "SELECT body FROM requests WHERE status = $1 \
         AND status IN ('pending', 'granting', 'scheduled', 'active', 'revoking', 'needs_attention') ORDER BY created_at";
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
        let event = e.chain(seq, &prev);
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

mod prune;
mod store_engine;
