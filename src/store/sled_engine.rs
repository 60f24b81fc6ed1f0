//! [`StoreEngine`] on the embedded sled database: the default engine, one
//! process, nothing else to install.
//!
//! It is a thin async face over [`Store`]: the same trees, the same
//! transaction for a change and its effects. What it adds are the queries
//! answered from the secondary indexes `Store` keeps in the same transaction
//! as the request (`open_by_requester`, `holding`), in-process leases for due
//! work and the outbox (sled is single-process, so a lease need not outlive
//! it), and an in-process provider-run lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::engine::{
    Change, Claim, DueWork, OutboxEntry, ProviderRunGuard, StoreEngine, StoreFuture,
};
use super::{decode, holding_prefix, ms_to_time, requester_prefix, Effects, Store, StoreError};
use crate::audit::AuditEvent;
use crate::outbox::OutboxItem;
use crate::request::{AccessRequest, Status};

/// The sled engine: a shared [`Store`] and this handle's lease owner name.
#[derive(Clone)]
pub struct SledEngine {
    store: Arc<Store>,
    replica: String,
    /// Index entries read by the indexed queries; tests use it to show that
    /// a query reads its answer, not the table.
    index_reads: Arc<AtomicU64>,
}

impl SledEngine {
    pub fn new(store: Arc<Store>) -> SledEngine {
        SledEngine {
            store,
            replica: super::engine::new_replica_id(),
            index_reads: Arc::default(),
        }
    }

    /// The store behind the engine, for code still on the synchronous API.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Index entries read so far by `open_requests_of` and
    /// `active_grants_covering`.
    pub fn index_reads(&self) -> u64 {
        self.index_reads.load(Ordering::Relaxed)
    }

    /// The requests an index names under `prefix`; the id is each key's
    /// tail after the prefix and `skip` more bytes.
    fn by_index(
        &self,
        tree: &sled::Tree,
        prefix: &[u8],
        skip: usize,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        let mut out = Vec::new();
        for item in tree.scan_prefix(prefix) {
            let (k, _) = item?;
            self.index_reads.fetch_add(1, Ordering::Relaxed);
            let id = String::from_utf8_lossy(k.get(prefix.len() + skip..).unwrap_or_default());
            if let Some(req) = self.store.get(&id)? {
                out.push(req);
            }
        }
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }
}

/// Wraps a synchronous result as an engine future.
fn ready<'a, T: Send + 'a>(r: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(r))
}

fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

impl Store {
    /// Runs `change` under the request's write lock and commits its result.
    pub(crate) fn update_boxed(
        &self,
        id: &str,
        change: Change<'_>,
    ) -> Result<Option<AccessRequest>, StoreError> {
        let _guard = self.write_lock(id);
        let Some(old) = self.get(id)? else {
            return Err(StoreError::NotFound(id.to_string()));
        };
        let mut req = old.clone();
        match change(&mut req) {
            Some(effects) => {
                self.commit(&req, Some(&old), &effects)?;
                Ok(Some(req))
            }
            None => Ok(None),
        }
    }

    /// Claims due work: walks the `due` tree from the earliest deadline and
    /// skips requests with a live lease (few: only work in flight).
    pub(crate) fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
        until: DateTime<Utc>,
    ) -> Result<Vec<DueWork>, StoreError> {
        let end = (now.timestamp_millis().max(0) as u64 + 1).to_be_bytes();
        let mut leases = self.due_leases.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for item in self.due.range(..end.as_slice()) {
            if out.len() >= limit {
                break;
            }
            let (k, _) = item?;
            let id = String::from_utf8_lossy(&k[8..]).into_owned();
            if leases.get(&id).is_some_and(|(_, t)| *t > now) {
                continue;
            }
            leases.insert(id.clone(), (owner.to_string(), until));
            out.push(DueWork {
                id,
                due_at: ms_to_time(&k),
            });
        }
        Ok(out)
    }

    /// The first unleased deadline, or the first lease to run out.
    pub(crate) fn next_claimable(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let leases = self.due_leases.lock().unwrap_or_else(|p| p.into_inner());
        let first_lease_end = leases.values().map(|(_, t)| *t).min();
        let mut first_free = None;
        for item in self.due.iter() {
            let (k, _) = item?;
            let id = String::from_utf8_lossy(&k[8..]);
            if !leases.contains_key(id.as_ref()) {
                first_free = Some(ms_to_time(&k));
                break;
            }
        }
        Ok([first_free, first_lease_end].into_iter().flatten().min())
    }

    /// The oldest ready entry of each order key, leased to `owner`.
    pub(crate) fn outbox_claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
        until: DateTime<Utc>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut leases = self.outbox_leases.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen_keys = std::collections::HashSet::new();
        let mut out = Vec::new();
        for item in self.outbox.iter() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let seq = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
            let item: OutboxItem = decode(&k, &v)?;
            // Only the head of each order key may go; later ones wait for it.
            if !seen_keys.insert(item.order_key.clone()) {
                continue;
            }
            if leases.get(&seq).is_some_and(|(_, t)| *t > now)
                || item.not_before.is_some_and(|t| t > now)
            {
                continue;
            }
            leases.insert(seq, (owner.to_string(), until));
            out.push(OutboxEntry { seq, item });
        }
        Ok(out)
    }

    /// Entries of `order_key` after `after_seq`, in order, at most `limit`.
    /// The outbox tree is keyed by seq only, so this walks it; the outbox is
    /// the queue of what is not yet delivered, small when Slack is up.
    pub(crate) fn outbox_of(
        &self,
        order_key: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .outbox
            .range(after_seq.saturating_add(1).to_be_bytes()..)
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let item: OutboxItem = decode(&k, &v)?;
            if item.order_key == order_key {
                let seq = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
                out.push(OutboxEntry { seq, item });
            }
        }
        Ok(out)
    }

    /// Requests made at or after `since` with ids after `after_id`: a walk
    /// of the requests tree in id order, one page at a time.
    pub(crate) fn requests_since(
        &self,
        since: DateTime<Utc>,
        after_id: &str,
        limit: usize,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        let mut out = Vec::new();
        let start = std::ops::Bound::Excluded(after_id.as_bytes().to_vec());
        for item in self
            .requests
            .range::<Vec<u8>, _>((start, std::ops::Bound::Unbounded))
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let req: AccessRequest = decode(&k, &v)?;
            if req.created_at >= since {
                out.push(req);
            }
        }
        Ok(out)
    }

    pub(crate) fn outbox_release(&self, seq: u64) {
        self.outbox_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&seq);
    }

    /// Events with `seq > after`, at most `limit`.
    pub(crate) fn audit_range(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let start = (after.saturating_add(1)).to_be_bytes();
        let mut out = Vec::new();
        for item in self.audit.range(start.as_slice()..).take(limit) {
            let (k, v) = item?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    pub(crate) fn audit_head(&self) -> Result<(u64, String), StoreError> {
        match self.meta.get(super::AUDIT_HEAD)? {
            Some(v) => decode(super::AUDIT_HEAD, &v),
            None => Ok((0, String::new())),
        }
    }

    pub(crate) fn provider_lock(
        &self,
        requester: &str,
        runbook: &str,
    ) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .provider_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Forget locks nobody holds or waits for, so the map stays small.
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks
            .entry((requester.to_string(), runbook.to_string()))
            .or_default()
            .clone()
    }
}

impl StoreEngine for SledEngine {
    fn engine_name(&self) -> &'static str {
        "sled"
    }

    fn shared_by_replicas(&self) -> bool {
        // sled's database is locked to one process.
        false
    }

    fn replica_id(&self) -> &str {
        &self.replica
    }

    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<AccessRequest>> {
        ready(self.store.get(id))
    }

    fn open_requests_of<'a>(&'a self, requester: &'a str) -> StoreFuture<'a, Vec<AccessRequest>> {
        // Keys: requester \0, the creation time (8 bytes), the id.
        ready(self.by_index(
            &self.store.open_by_requester,
            &requester_prefix(requester),
            8,
        ))
    }

    fn active_grants_covering<'a>(
        &'a self,
        requester: &'a str,
        runbook: &'a str,
    ) -> StoreFuture<'a, Vec<AccessRequest>> {
        ready(self.by_index(&self.store.holding, &holding_prefix(requester, runbook), 0))
    }

    fn requests_with_status(&self, status: Status) -> StoreFuture<'_, Vec<AccessRequest>> {
        if status.is_terminal() {
            return ready(Err(super::engine::finished_status(status)));
        }
        // Keys: status \0, the creation time (8 bytes), the id.
        let prefix = requester_prefix(super::status_name(status));
        ready(self.by_index(&self.store.open_by_status, &prefix, 8))
    }

    fn insert<'a>(&'a self, req: &'a AccessRequest, effects: Effects) -> StoreFuture<'a, ()> {
        ready(self.store.insert(req, effects))
    }

    fn update_with<'a>(
        &'a self,
        id: &'a str,
        change: Change<'a>,
    ) -> StoreFuture<'a, Option<AccessRequest>> {
        ready(self.store.update_boxed(id, change))
    }

    fn enqueue(&self, effects: Effects) -> StoreFuture<'_, ()> {
        ready(self.store.enqueue(effects))
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.store.flush())
    }

    fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> StoreFuture<'_, Vec<DueWork>> {
        ready(
            self.store
                .claim_due(&self.replica, now, limit, lease_end(now, lease)),
        )
    }

    fn next_deadline(&self) -> StoreFuture<'_, Option<DateTime<Utc>>> {
        ready(self.store.next_claimable())
    }

    fn deadline_changed(&self) -> Arc<Notify> {
        self.store.deadline_changed.clone()
    }

    fn outbox_claim(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> StoreFuture<'_, Vec<OutboxEntry>> {
        ready(
            self.store
                .outbox_claim(&self.replica, now, limit, lease_end(now, lease)),
        )
    }

    fn outbox_done(&self, seq: u64) -> StoreFuture<'_, ()> {
        let r = self.store.outbox_remove(seq);
        self.store.outbox_release(seq);
        ready(r)
    }

    fn outbox_retry<'a>(&'a self, seq: u64, item: &'a OutboxItem) -> StoreFuture<'a, ()> {
        let r = self.store.outbox_put(seq, item);
        self.store.outbox_release(seq);
        ready(r)
    }

    fn outbox_len(&self) -> StoreFuture<'_, u64> {
        ready(Ok(self.store.outbox_len() as u64))
    }

    fn outbox_len_of<'a>(&'a self, order_key: &'a str) -> StoreFuture<'a, u64> {
        ready(
            self.store
                .outbox_of(order_key, 0, usize::MAX)
                .map(|v| v.len() as u64),
        )
    }

    fn outbox_following<'a>(
        &'a self,
        order_key: &'a str,
        after_seq: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<OutboxEntry>> {
        ready(self.store.outbox_of(order_key, after_seq, limit))
    }

    fn requests_since<'a>(
        &'a self,
        since: DateTime<Utc>,
        after_id: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<AccessRequest>> {
        ready(self.store.requests_since(since, after_id, limit))
    }

    fn audit_range(&self, after: u64, limit: usize) -> StoreFuture<'_, Vec<AuditEvent>> {
        ready(self.store.audit_range(after, limit))
    }

    fn audit_head(&self) -> StoreFuture<'_, (u64, String)> {
        ready(self.store.audit_head())
    }

    fn seen_get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Vec<u8>>> {
        ready(self.store.seen_before(key))
    }

    fn seen_put<'a>(
        &'a self,
        key: &'a [u8],
        now: DateTime<Utc>,
        answer: &'a [u8],
    ) -> StoreFuture<'a, ()> {
        ready(self.store.remember_seen(key, now, answer))
    }

    fn seen_claim<'a>(
        &'a self,
        key: &'a [u8],
        now: DateTime<Utc>,
        owner: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, Claim> {
        ready(
            self.store
                .claim_seen(key, now, owner, lease_end(now, lease)),
        )
    }

    fn seen_release<'a>(&'a self, key: &'a [u8], owner: &'a str) -> StoreFuture<'a, ()> {
        // Done now, not when polled: a claim dropped without a runtime to
        // poll the future is still released.
        self.store.release_seen(key, owner);
        ready(Ok(()))
    }

    fn seen_prune(&self, before: DateTime<Utc>) -> StoreFuture<'_, u64> {
        ready(self.store.prune_seen(before).map(|n| n as u64))
    }

    fn lock_provider_run<'a>(
        &'a self,
        requester: &'a str,
        runbook: &'a str,
    ) -> StoreFuture<'a, ProviderRunGuard> {
        let lock = self.store.provider_lock(requester, runbook);
        Box::pin(async move { Ok(ProviderRunGuard::new(lock.lock_owned().await)) })
    }

    fn prune_finished(&self, before: DateTime<Utc>, limit: usize) -> StoreFuture<'_, u64> {
        ready(self.store.prune_finished(before, limit))
    }

    fn prune_audit<'a>(
        &'a self,
        before: DateTime<Utc>,
        limit: usize,
        why: &'a str,
    ) -> StoreFuture<'a, Option<AuditEvent>> {
        ready(self.store.prune_audit(before, limit, why))
    }

    fn outbox_backlog(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        ready(self.store.outbox_backlog())
    }
}
