//! The storage interface the bot asks its questions through, whichever
//! engine answers them: sled in one process ([`super::sled_engine`]) or
//! PostgreSQL shared by any number of replicas ([`super::postgres`]).
//!
//! Every method is a query the workflow needs, answered from an index: its
//! cost grows with the size of its answer and the log of the data, never with
//! the number of requests ever made.
//!
//! The trait is object-safe (`Arc<dyn StoreEngine>`): methods return boxed
//! futures instead of being `async fn`, because the engine is chosen at start
//! from the configuration and the workflow must not be generic over it. The
//! one generic operation, [`update`](StoreEngine::update), is an inherent
//! method on `dyn StoreEngine` that wraps the object-safe
//! [`update_with`](StoreEngine::update_with).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::{Effects, StoreError};
use crate::audit::{audit_hash, AuditEvent};
use crate::outbox::OutboxItem;
use crate::request::{AccessRequest, Status};

/// What every engine method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The object-safe form of a change: it edits the request in place and
/// returns the effects to commit with it, or `None` to write nothing.
pub type Change<'a> = Box<dyn FnOnce(&mut AccessRequest) -> Option<Effects> + Send + 'a>;

/// A request whose deadline has come, claimed by this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueWork {
    pub id: String,
    pub due_at: DateTime<Utc>,
}

/// An outbox entry claimed for delivery: `seq` orders entries and names the
/// entry for [`StoreEngine::outbox_done`] and [`StoreEngine::outbox_retry`].
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub seq: u64,
    pub item: OutboxItem,
}

/// What [`StoreEngine::seen_claim`] found for a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds the delivery now: handle it, then record the answer
    /// with [`StoreEngine::seen_put`] (or give it up with
    /// [`StoreEngine::seen_release`]).
    Mine,
    /// Answered before; these are the bytes of that answer.
    Answered(Vec<u8>),
    /// Another claimer (on this replica or another) is handling it and its
    /// lease has not run out.
    InFlight,
}

/// The per-(person, runbook) provider-run lock, held until dropped.
///
/// On PostgreSQL it is a session-level advisory lock on a connection of its
/// own, so it is released when the holder drops it or when its process or
/// connection dies; on sled an in-process lock.
pub struct ProviderRunGuard {
    _held: Box<dyn Send>,
}

impl ProviderRunGuard {
    pub(crate) fn new(held: impl Send + 'static) -> Self {
        ProviderRunGuard {
            _held: Box::new(held),
        }
    }
}

impl std::fmt::Debug for ProviderRunGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProviderRunGuard")
    }
}

/// The storage interface. See the module documentation.
pub trait StoreEngine: Send + Sync {
    /// "sled" or "postgres", for logs and `/readyz`.
    fn engine_name(&self) -> &'static str;

    /// Whether other processes (replicas) may work on this store at the same
    /// time: then a provider run found on this host may be one of theirs.
    fn shared_by_replicas(&self) -> bool;

    /// This replica's name in leases.
    fn replica_id(&self) -> &str;

    // ---- requests ----

    /// One request by id.
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<AccessRequest>>;

    /// A person's requests that are not finished (pending, granting, active,
    /// revoking), oldest first: `/access status` and the Home tab.
    fn open_requests_of<'a>(&'a self, requester: &'a str) -> StoreFuture<'a, Vec<AccessRequest>>;

    /// Requests that give `requester` the access of `runbook` now or are about
    /// to (granting, active), oldest first: a revoke of one of them asks
    /// whether another still covers the person.
    fn active_grants_covering<'a>(
        &'a self,
        requester: &'a str,
        runbook: &'a str,
    ) -> StoreFuture<'a, Vec<AccessRequest>>;

    /// Every request in `status`, oldest first, for a status of an
    /// unfinished request (pending, granting, active, revoking): recovery of
    /// interrupted grants and revokes, gauges. A finished status is refused
    /// (that answer grows with every request ever made).
    fn requests_with_status(&self, status: Status) -> StoreFuture<'_, Vec<AccessRequest>>;

    /// Stores a new request with its deadline and effects, in one
    /// transaction. A request with the same id is an error.
    fn insert<'a>(&'a self, req: &'a AccessRequest, effects: Effects) -> StoreFuture<'a, ()>;

    /// Runs `change` on the request as stored and commits the new request,
    /// its next deadline and the effects in one transaction; releases any
    /// lease on the request's due work. Concurrent updates of one request are
    /// serialised (each closure sees the previous one's result). Returns the
    /// new request, or `None` when `change` declined.
    fn update_with<'a>(
        &'a self,
        id: &'a str,
        change: Change<'a>,
    ) -> StoreFuture<'a, Option<AccessRequest>>;

    /// Queues effects that belong to no state change.
    fn enqueue(&self, effects: Effects) -> StoreFuture<'_, ()>;

    /// Makes committed writes durable (sled's group commit; a no-op on
    /// PostgreSQL, where a commit is durable).
    fn flush(&self) -> StoreFuture<'_, ()>;

    // ---- due work ----

    /// Up to `limit` requests whose deadline is at or before `now` and that
    /// nobody holds a live lease on, earliest first, leased to this replica
    /// for `lease`. Two replicas never get the same request while the lease
    /// runs; an update of the request releases it.
    fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> StoreFuture<'_, Vec<DueWork>>;

    /// The earliest moment due work may become claimable: the first
    /// deadline, or the first lease to run out.
    fn next_deadline(&self) -> StoreFuture<'_, Option<DateTime<Utc>>>;

    /// Woken (`notify_one`) when any replica sets a deadline, so a timer loop
    /// can `select!` on it beside its sleep.
    fn deadline_changed(&self) -> Arc<Notify>;

    // ---- outbox ----

    /// Up to `limit` outbox entries ready now, at most one per order key (the
    /// oldest one, so a request's messages go out in order), leased to this
    /// replica for `lease`.
    fn outbox_claim(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> StoreFuture<'_, Vec<OutboxEntry>>;

    /// Removes a delivered (or dropped) entry.
    fn outbox_done(&self, seq: u64) -> StoreFuture<'_, ()>;

    /// Stores a failed entry again (attempts, `not_before`) and releases it.
    fn outbox_retry<'a>(&'a self, seq: u64, item: &'a OutboxItem) -> StoreFuture<'a, ()>;

    /// Entries not yet delivered.
    fn outbox_len(&self) -> StoreFuture<'_, u64>;

    /// Entries of one order key not yet delivered: the audit channel's
    /// backlog (`/healthz`, and when to send digests).
    fn outbox_len_of<'a>(&'a self, order_key: &'a str) -> StoreFuture<'a, u64>;

    /// Up to `limit` entries of `order_key` after `after_seq`, in order,
    /// without claiming them: the entries a digest combines with the head
    /// it holds (while the head is claimed, no replica claims the others).
    fn outbox_following<'a>(
        &'a self,
        order_key: &'a str,
        after_seq: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<OutboxEntry>>;

    // ---- report ----

    /// Up to `limit` requests made at or after `since` whose id sorts after
    /// `after_id`, in id order: the report reads a period a page at a time.
    fn requests_since<'a>(
        &'a self,
        since: DateTime<Utc>,
        after_id: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<AccessRequest>>;

    // ---- audit ----

    /// Events with `seq > after`, in order, at most `limit`: page through the
    /// log with constant memory.
    fn audit_range(&self, after: u64, limit: usize) -> StoreFuture<'_, Vec<AuditEvent>>;

    /// The last event's sequence number and hash (0 and "" for an empty log).
    fn audit_head(&self) -> StoreFuture<'_, (u64, String)>;

    // ---- replay guard ----

    /// The answer stored the first time `key` was seen, if it was.
    fn seen_get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Records `key` as seen at `now` with its answer, ending any claim of it.
    fn seen_put<'a>(
        &'a self,
        key: &'a [u8],
        now: DateTime<Utc>,
        answer: &'a [u8],
    ) -> StoreFuture<'a, ()>;

    /// Claims `key` for `owner` until `now + lease`, atomically across every
    /// handle on the database: of any number of concurrent claims of a new
    /// key exactly one is [`Claim::Mine`]. A key answered by `seen_put` is
    /// [`Claim::Answered`]; a key claimed by someone else is
    /// [`Claim::InFlight`] until that claim's lease runs out (its claimer
    /// died), when the next claim takes it over.
    fn seen_claim<'a>(
        &'a self,
        key: &'a [u8],
        now: DateTime<Utc>,
        owner: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, Claim>;

    /// Gives up `owner`'s claim of `key` without an answer, so the next copy
    /// of the delivery is handled. Does nothing if `key` was answered or is
    /// claimed by someone else. An engine may do the work when called (sled
    /// does), before the future is polled.
    fn seen_release<'a>(&'a self, key: &'a [u8], owner: &'a str) -> StoreFuture<'a, ()>;

    /// Forgets entries seen before `before`; returns how many.
    fn seen_prune(&self, before: DateTime<Utc>) -> StoreFuture<'_, u64>;

    // ---- provider runs ----

    /// Waits for, then holds, the lock that keeps one provider run at a time
    /// for one person and runbook, across every replica.
    fn lock_provider_run<'a>(
        &'a self,
        requester: &'a str,
        runbook: &'a str,
    ) -> StoreFuture<'a, ProviderRunGuard>;

    // ---- retention and gauges ----

    /// Removes up to `limit` finished requests (revoked, denied, expired,
    /// failed) that ended before `before`; returns how many. Safe to run on
    /// every replica at once.
    fn prune_finished(&self, before: DateTime<Utc>, limit: usize) -> StoreFuture<'_, u64>;

    /// Replaces the oldest audit events recorded before `before`, at most
    /// `limit` of them, by one checkpoint event carrying the hash of the last
    /// one removed, so what remains still verifies
    /// ([`crate::audit::AuditEvent::checkpoint`]; `why` says by which
    /// setting). Returns the checkpoint, or `None` when nothing is that old.
    fn prune_audit<'a>(
        &'a self,
        before: DateTime<Utc>,
        limit: usize,
        why: &'a str,
    ) -> StoreFuture<'a, Option<AuditEvent>>;

    /// Outbox entries waiting, by destination
    /// ([`crate::outbox::SlackOp::destination`]), for `/metrics`.
    fn outbox_backlog(&self) -> StoreFuture<'_, Vec<(String, u64)>>;
}

impl<'e> dyn StoreEngine + 'e {
    /// [`StoreEngine::update_with`] with today's `Store::update` signature:
    /// `change` returns a value and the effects, or an error that writes
    /// nothing and is handed back.
    pub async fn update<T, E>(
        &self,
        id: &str,
        change: impl FnOnce(&mut AccessRequest) -> Result<(T, Effects), E> + Send,
    ) -> Result<Result<(T, AccessRequest), E>, StoreError>
    where
        T: Send,
        E: Send,
    {
        let mut outcome: Option<Result<T, E>> = None;
        let slot = &mut outcome;
        let new = self
            .update_with(
                id,
                Box::new(move |req| match change(req) {
                    Ok((value, effects)) => {
                        *slot = Some(Ok(value));
                        Some(effects)
                    }
                    Err(e) => {
                        *slot = Some(Err(e));
                        None
                    }
                }),
            )
            .await?;
        match (outcome, new) {
            (Some(Ok(value)), Some(req)) => Ok(Ok((value, req))),
            (Some(Err(e)), _) => Ok(Err(e)),
            _ => Err(StoreError::Db(format!(
                "the update of request {id} ended without an outcome"
            ))),
        }
    }

    /// Checks the whole audit chain, a page at a time (constant memory).
    /// `Ok(count)` or `Err(seq)` of the first event that breaks it.
    pub async fn verify_audit(&self) -> Result<Result<u64, u64>, StoreError> {
        let mut check = ChainCheck::default();
        loop {
            let page = self.audit_range(check.last_seq(), AUDIT_PAGE).await?;
            if page.is_empty() {
                return Ok(Ok(check.count()));
            }
            for event in &page {
                if let Err(seq) = check.push(event) {
                    return Ok(Err(seq));
                }
            }
        }
    }
}

/// The refusal of [`StoreEngine::requests_with_status`] for a finished status.
pub(crate) fn finished_status(status: Status) -> StoreError {
    StoreError::Db(format!(
        "requests are listed by status only while unfinished; {status:?} is a finished status"
    ))
}

/// Events per page when the log is read in full.
pub const AUDIT_PAGE: usize = 500;

/// The audit chain checked one event at a time, as [`crate::audit::verify_chain`]
/// checks a slice, so a log of any length is verified in constant memory.
/// A log whose start was pruned begins with a checkpoint
/// ([`crate::audit::CHECKPOINT`]), which the chain continues from.
#[derive(Debug, Default)]
pub struct ChainCheck {
    seq: u64,
    prev: String,
    count: u64,
    checkpoint: Option<AuditEvent>,
}

impl ChainCheck {
    /// Takes the next event; `Err(seq)` when it does not follow the last one.
    pub fn push(&mut self, e: &AuditEvent) -> Result<(), u64> {
        if self.count == 0 && e.is_checkpoint() {
            self.seq = e.seq;
            self.prev = e.hash.clone();
            self.count = 1;
            self.checkpoint = Some(e.clone());
            return Ok(());
        }
        if e.seq != self.seq + 1 || e.prev_hash != self.prev || audit_hash(e) != e.hash {
            return Err(e.seq);
        }
        self.seq = e.seq;
        self.prev = e.hash.clone();
        self.count += 1;
        Ok(())
    }

    /// Why `e`, refused by [`ChainCheck::push`], breaks the chain, in words.
    pub fn explain(&self, e: &AuditEvent) -> String {
        crate::audit::explain_break(self.seq + 1, &self.prev, e)
    }

    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// Events checked so far (a leading checkpoint counts as one).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The checkpoint the log starts with, when its start was pruned.
    pub fn checkpoint(&self) -> Option<&AuditEvent> {
        self.checkpoint.as_ref()
    }
}

/// A replica's name in leases: host, process id and a random part, so two
/// processes never share one.
pub fn new_replica_id() -> String {
    use rand::Rng;
    let tag: u32 = rand::rngs::OsRng.gen();
    format!("{}:{}:{tag:08x}", replica_host(), std::process::id())
}

/// The host part of a replica's name: `HOSTNAME`, else the kernel's.
pub(crate) fn replica_host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "host".into())
        .replace(':', "_")
}
