//! Everything durable, in one sled database: access requests, their
//! deadlines, the Slack outbox, the audit log and the replay guard.
//!
//! Nothing outside this module touches sled. A state change, the deadline it
//! implies, the Slack messages it causes and its audit events are written in
//! one transaction, so a crash can never keep one without the others; callers
//! then [`Store::flush`] before they tell anyone it happened.
//!
//! Layout: `Store` (this file) is the sled database with today's synchronous
//! API; `engine.rs` is the async [`StoreEngine`] interface the workflow moves
//! to; `sled_engine.rs` implements it on `Store`, `postgres.rs` on a
//! PostgreSQL pool (migrations in the crate's `migrations/`); `migrate.rs`
//! copies a sled install into PostgreSQL; `url.rs` masks database URLs.

pub mod engine;
mod group_commit;
pub mod migrate;
pub mod postgres;
mod prune;
mod reader;
pub mod sled_engine;
pub mod url;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, TimeZone, Utc};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::audit::{verify_chain, AuditEvent, NewAuditEvent};
use crate::outbox::OutboxItem;
use crate::request::{AccessRequest, MessageRef, Status};
pub use engine::{ChainCheck, DueWork, OutboxEntry, ProviderRunGuard, StoreEngine, StoreFuture};
pub use group_commit::GroupCommit;
pub use reader::open_for_reading;
pub use sled_engine::SledEngine;

/// Why the store failed; `Locked` and `Corrupt` stop the start with a clear message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the data directory {0} is in use by another accessbot process; stop it first or set ACCESSBOT_DATA_DIR to another directory")]
    Locked(PathBuf),
    #[error("the database in {dir} cannot be read ({detail}); the files were left as they are: restore a backup or move the directory away to start empty")]
    Corrupt { dir: PathBuf, detail: String },
    #[error("{0} holds no accessbot database; check the path (the bot's data directory is ACCESSBOT_DATA_DIR, `./data` by default)")]
    NoDatabase(PathBuf),
    #[error("database error: {0}")]
    Db(String),
    #[error("stored record {key} cannot be decoded: {reason}")]
    Codec { key: String, reason: String },
    #[error("request {0} not found")]
    NotFound(String),
    #[error("request {0} already exists")]
    Exists(String),
    /// The database cannot be reached; the message names the host, never the password.
    #[error("cannot reach the database at {target}: {cause}")]
    Unreachable { target: String, cause: String },
    #[error("the database schema is at version {found}, newer than this accessbot knows ({known}); run the newer accessbot, or restore a backup taken before the upgrade")]
    SchemaTooNew { found: i64, known: i64 },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

/// What a state change causes besides the new record.
#[derive(Debug, Default)]
pub struct Effects {
    pub outbox: Vec<OutboxItem>,
    /// Audit events without seq/hash; the store numbers and chains them.
    pub audit: Vec<NewAuditEvent>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.outbox.is_empty() && self.audit.is_empty()
    }
}

/// How the sled database is opened.
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// sled's page cache in bytes (`sled::Config::cache_capacity`); sled's
    /// own default of 1 GiB is far more than the bot needs.
    pub cache_capacity: u64,
}

/// 64 MiB.
pub const DEFAULT_CACHE_CAPACITY: u64 = 64 * 1024 * 1024;

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }
}

/// One (person, runbook)'s provider-run lock on sled.
type ProviderLock = std::sync::Arc<tokio::sync::Mutex<()>>;

/// Stripes of the per-request write lock: two writes of one request are
/// serialised, writes of different requests mostly are not.
const WRITE_STRIPES: usize = 64;

/// Who holds the claim on a delivery in the replay guard, and until when.
type SeenClaim = (String, DateTime<Utc>);

/// The sled database and its trees.
pub struct Store {
    db: sled::Db,
    requests: sled::Tree,
    /// (due ms, request id) -> (); the timer loop's queue.
    due: sled::Tree,
    /// request id -> due key, so a request has at most one entry in `due`.
    due_index: sled::Tree,
    outbox: sled::Tree,
    audit: sled::Tree,
    meta: sled::Tree,
    /// Replay guard: signature or event id -> (first seen ms, cached answer).
    seen: sled::Tree,
    /// Index: requester \0 created ms \0 id -> (), for requests not yet
    /// finished (a person's status and Home tab).
    open_by_requester: sled::Tree,
    /// Index: requester \0 runbook \0 id -> (), for requests granting or
    /// active (the revoke's "covering" check).
    holding: sled::Tree,
    /// Index: status \0 created ms \0 id -> (), for requests not yet
    /// finished (recovery of interrupted grants and revokes, gauges).
    open_by_status: sled::Tree,
    /// Serialise read-modify-write of one request (stripe by id hash) so two
    /// approvals at the same instant are applied one after the other. The
    /// sled transaction itself keeps the audit chain and outbox consistent.
    write_locks: Vec<Mutex<()>>,
    /// Concurrent [`Store::flush`] calls share one disk flush.
    commit: GroupCommit,
    /// In-process leases (sled is single-process): request id -> (owner, until).
    due_leases: Mutex<HashMap<String, (String, DateTime<Utc>)>>,
    /// Replay-guard claims of deliveries being handled: key -> (owner, until).
    seen_claims: Mutex<HashMap<Vec<u8>, SeenClaim>>,
    /// Outbox seq -> (owner, until).
    outbox_leases: Mutex<HashMap<u64, (String, DateTime<Utc>)>>,
    /// Woken when a commit sets a deadline.
    deadline_changed: std::sync::Arc<tokio::sync::Notify>,
    /// (requester, runbook) -> the provider-run lock.
    provider_locks: Mutex<HashMap<(String, String), ProviderLock>>,
}

const AUDIT_HEAD: &[u8] = b"audit_head";
/// Set once the secondary indexes are complete (built at the first start of
/// a database written before they existed).
const INDEXES_BUILT: &[u8] = b"indexes_v1";

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

impl Store {
    /// Opens (or creates) the database in `dir` with the default options.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, &SledOptions::default())
    }

    /// Opens (or creates) the database in `dir`.
    ///
    /// Start-up does not read every request: it decodes the first and last
    /// stored request and the audit head, so a damaged database is still
    /// refused at start in the common cases, in constant time.
    pub fn open_with(dir: &Path, options: &SledOptions) -> Result<Store, StoreError> {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(StoreError::Db(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            )));
        }
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_capacity)
            .open()
            .map_err(|e| classify_open_error(dir, e))?;
        let open = |name: &str| db.open_tree(name).map_err(|e| classify_open_error(dir, e));
        let store = Store {
            requests: open("requests")?,
            due: open("due")?,
            due_index: open("due_index")?,
            outbox: open("outbox")?,
            audit: open("audit")?,
            meta: open("meta")?,
            seen: open("seen")?,
            open_by_requester: open("open_by_requester")?,
            holding: open("holding")?,
            open_by_status: open("open_by_status")?,
            db,
            write_locks: (0..WRITE_STRIPES).map(|_| Mutex::new(())).collect(),
            commit: GroupCommit::new(),
            due_leases: Mutex::new(HashMap::new()),
            seen_claims: Mutex::new(HashMap::new()),
            outbox_leases: Mutex::new(HashMap::new()),
            deadline_changed: Default::default(),
            provider_locks: Mutex::new(HashMap::new()),
        };
        let corrupt = |e: StoreError| StoreError::Corrupt {
            dir: dir.to_path_buf(),
            detail: e.to_string(),
        };
        let ends = [store.requests.first(), store.requests.last()];
        for end in ends {
            if let Some((k, v)) = end.map_err(|e| classify_open_error(dir, e))? {
                decode::<AccessRequest>(&k, &v).map_err(corrupt)?;
            }
        }
        if let Some(v) = store
            .meta
            .get(AUDIT_HEAD)
            .map_err(|e| classify_open_error(dir, e))?
        {
            decode::<(u64, String)>(AUDIT_HEAD, &v).map_err(corrupt)?;
        }
        if store
            .meta
            .get(INDEXES_BUILT)
            .map_err(|e| classify_open_error(dir, e))?
            .is_none()
        {
            store.build_indexes().map_err(corrupt)?;
        }
        Ok(store)
    }

    /// Fills the secondary indexes from the requests: once, for a database
    /// written before they existed (a new one has no requests yet).
    fn build_indexes(&self) -> Result<(), StoreError> {
        for item in self.requests.iter() {
            let (k, v) = item?;
            let req: AccessRequest = decode(&k, &v)?;
            if let Some(key) = open_key(&req) {
                self.open_by_requester.insert(key, &[])?;
            }
            if let Some(key) = holding_key(&req) {
                self.holding.insert(key, &[])?;
            }
            if let Some(key) = status_key(&req) {
                self.open_by_status.insert(key, &[])?;
            }
        }
        self.meta.insert(INDEXES_BUILT, &[1])?;
        Ok(())
    }

    fn write_lock(&self, id: &str) -> std::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        self.write_locks[(h.finish() as usize) % WRITE_STRIPES]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Opens an existing database for reading it (`accessbot audit`): a
    /// directory that holds none is refused instead of being created empty,
    /// so a mistyped path cannot report an "intact" log of 0 events.
    pub fn open_existing(dir: &Path) -> Result<Store, StoreError> {
        Store::open_existing_with(dir, &SledOptions::default())
    }

    /// [`Store::open_existing`] with `options` (a reader that walks the
    /// log once needs only a small cache).
    pub fn open_existing_with(dir: &Path, options: &SledOptions) -> Result<Store, StoreError> {
        if !dir.join("conf").is_file() || !dir.join("db").is_file() {
            return Err(StoreError::NoDatabase(dir.to_path_buf()));
        }
        Store::open_with(dir, options)
    }

    /// Makes every write so far durable. Concurrent callers share one disk
    /// flush (group commit, see [`GroupCommit`]).
    ///
    /// The flush is sled's blocking `flush` on the blocking pool, never
    /// `flush_async`: concurrent `flush_async` calls deadlock in sled 0.34
    /// (spacejam/sled#1308, reproduced by `benches/flush.rs` in release mode).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.commit
            .flush(|| async {
                let db = self.db.clone();
                match tokio::task::spawn_blocking(move || db.flush()).await {
                    Ok(result) => result.map(|_| ()).map_err(StoreError::from),
                    Err(e) => Err(StoreError::Db(format!("the flush task failed: {e}"))),
                }
            })
            .await
    }

    pub fn get(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
        match self.requests.get(id.as_bytes())? {
            Some(v) => Ok(Some(decode(id.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    /// Every request, oldest first by creation.
    pub fn all_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        let mut out = Vec::new();
        for item in self.requests.iter() {
            let (k, v) = item?;
            out.push(decode::<AccessRequest>(&k, &v)?);
        }
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }

    /// Stores a new request with its effects.
    pub fn insert(&self, req: &AccessRequest, effects: Effects) -> Result<(), StoreError> {
        let _guard = self.write_lock(&req.id);
        if self.requests.contains_key(req.id.as_bytes())? {
            return Err(StoreError::Exists(req.id.clone()));
        }
        self.commit(req, None, &effects)
    }

    /// Reads the request, lets `change` modify a copy and decide the effects,
    /// and commits both at once. When `change` returns `Err`, nothing is written.
    pub fn update<T, E>(
        &self,
        id: &str,
        change: impl FnOnce(&mut AccessRequest) -> Result<(T, Effects), E>,
    ) -> Result<Result<(T, AccessRequest), E>, StoreError> {
        let _guard = self.write_lock(id);
        let Some(old) = self.get(id)? else {
            return Err(StoreError::NotFound(id.to_string()));
        };
        let mut req = old.clone();
        match change(&mut req) {
            Ok((value, effects)) => {
                self.commit(&req, Some(&old), &effects)?;
                Ok(Ok((value, req)))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// Queues effects that belong to no state change (e.g. a refusal).
    pub fn enqueue(&self, effects: Effects) -> Result<(), StoreError> {
        (&self.outbox, &self.audit, &self.meta)
            .transaction(|(outbox, audit, meta)| {
                write_effects(outbox, audit, meta, &effects)?;
                Ok(())
            })
            .map_err(tx_error)
    }

    /// Writes `req` (replacing `old`, which the caller read under the
    /// request's write lock), its deadline, its index entries and the
    /// effects in one transaction, and releases any lease on its due work.
    fn commit(
        &self,
        req: &AccessRequest,
        old: Option<&AccessRequest>,
        effects: &Effects,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_vec(req).map_err(|e| StoreError::Codec {
            key: req.id.clone(),
            reason: e.to_string(),
        })?;
        let due_key = req.next_due().map(|at| due_key(at, &req.id));
        let old_open = old.and_then(open_key);
        let old_holding = old.and_then(holding_key);
        let new_open = open_key(req);
        let new_holding = holding_key(req);
        let old_status = old.and_then(status_key);
        let new_status = status_key(req);
        (
            &self.requests,
            &self.due,
            &self.due_index,
            &self.outbox,
            &self.audit,
            &self.meta,
            &self.open_by_requester,
            &self.holding,
            &self.open_by_status,
        )
            .transaction(
                |(requests, due, due_index, outbox, audit, meta, open, holding, by_status)| {
                    requests.insert(req.id.as_bytes(), value.as_slice())?;
                    swap_index_key(open, &old_open, &new_open)?;
                    swap_index_key(holding, &old_holding, &new_holding)?;
                    swap_index_key(by_status, &old_status, &new_status)?;
                    if let Some(old) = due_index.get(req.id.as_bytes())? {
                        due.remove(old)?;
                    }
                    match &due_key {
                        Some(k) => {
                            due.insert(k.as_slice(), &[])?;
                            due_index.insert(req.id.as_bytes(), k.as_slice())?;
                        }
                        None => {
                            due_index.remove(req.id.as_bytes())?;
                        }
                    }
                    write_effects(outbox, audit, meta, effects)?;
                    Ok(())
                },
            )
            .map_err(tx_error)?;
        self.due_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&req.id);
        if due_key.is_some() {
            self.deadline_changed.notify_one();
        }
        Ok(())
    }

    /// IDs of requests whose next deadline is at or before `now`.
    pub fn due_at(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        let end = (now.timestamp_millis().max(0) as u64 + 1).to_be_bytes();
        let mut ids = Vec::new();
        for item in self.due.range(..end.as_slice()) {
            let (k, _) = item?;
            ids.push(String::from_utf8_lossy(&k[8..]).into_owned());
        }
        Ok(ids)
    }

    /// The earliest deadline of any request.
    pub fn next_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.due.first()?.map(|(k, _)| ms_to_time(&k)))
    }

    // ---- outbox ----

    /// The oldest `limit` outbox entries, in the order they were queued.
    pub fn outbox_batch(&self, limit: usize) -> Result<Vec<(u64, OutboxItem)>, StoreError> {
        let mut out = Vec::new();
        for item in self.outbox.iter().take(limit) {
            let (k, v) = item?;
            let seq = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
            out.push((seq, decode(&k, &v)?));
        }
        Ok(out)
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    pub fn outbox_remove(&self, seq: u64) -> Result<(), StoreError> {
        self.outbox.remove(seq.to_be_bytes())?;
        Ok(())
    }

    pub fn outbox_put(&self, seq: u64, item: &OutboxItem) -> Result<(), StoreError> {
        self.outbox
            .insert(seq.to_be_bytes(), encode(item)?)
            .map(|_| ())
            .map_err(Into::into)
    }

    /// Remembers a delivered DM on its request so it can be updated later.
    pub fn remember_message(&self, request_id: &str, msg: MessageRef) -> Result<(), StoreError> {
        if self.get(request_id)?.is_none() {
            return Ok(());
        }
        self.update(request_id, |req| {
            req.messages.push(msg);
            Ok::<_, std::convert::Infallible>(((), Effects::default()))
        })?
        .map(|_| ())
        .map_err(|never| match never {})
    }

    // ---- audit ----

    /// The whole audit log, in order.
    pub fn audit_events(&self) -> Result<Vec<AuditEvent>, StoreError> {
        let mut out = Vec::new();
        for item in self.audit.iter() {
            let (k, v) = item?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Checks the hash chain; returns the number of events, or the first
    /// sequence number where the chain breaks.
    pub fn verify_audit(&self) -> Result<Result<u64, u64>, StoreError> {
        let events = self.audit_events()?;
        Ok(verify_chain(&events))
    }

    // ---- replay guard ----

    /// Records `key` as seen at `now`; returns the answer stored the first
    /// time if it was seen before.
    pub fn seen_before(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .seen
            .get(key)?
            .map(|v| v.get(8..).unwrap_or_default().to_vec()))
    }

    pub fn remember_seen(
        &self,
        key: &[u8],
        now: DateTime<Utc>,
        answer: &[u8],
    ) -> Result<(), StoreError> {
        let mut v = (now.timestamp_millis() as u64).to_be_bytes().to_vec();
        v.extend_from_slice(answer);
        self.seen.insert(key, v)?;
        // Answer first, claim second: a claim made in between sees the answer.
        self.seen_claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        Ok(())
    }

    /// Claims `key` for `owner` until `until` unless it was answered or is
    /// claimed by another whose claim lasts past `now`. Claims are kept in
    /// memory: sled is one process, and a claim dies with it.
    pub fn claim_seen(
        &self,
        key: &[u8],
        now: DateTime<Utc>,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<engine::Claim, StoreError> {
        let mut claims = self.seen_claims.lock().unwrap_or_else(|p| p.into_inner());
        // Read under the claims lock: `remember_seen` writes the answer
        // before it drops the claim, so one of the two is always seen.
        if let Some(answer) = self.seen_before(key)? {
            return Ok(engine::Claim::Answered(answer));
        }
        match claims.get(key) {
            Some((_, held_until)) if *held_until > now => Ok(engine::Claim::InFlight),
            _ => {
                claims.insert(key.to_vec(), (owner.to_string(), until));
                Ok(engine::Claim::Mine)
            }
        }
    }

    /// Drops `owner`'s claim of `key`, if it still holds it.
    pub fn release_seen(&self, key: &[u8], owner: &str) {
        let mut claims = self.seen_claims.lock().unwrap_or_else(|p| p.into_inner());
        if claims.get(key).is_some_and(|(o, _)| o == owner) {
            claims.remove(key);
        }
    }

    /// Forgets replay-guard entries older than `before`.
    pub fn prune_seen(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let cutoff = before.timestamp_millis().max(0) as u64;
        let mut removed = 0;
        for item in self.seen.iter() {
            let (k, v) = item?;
            let at = v
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if at < cutoff {
                self.seen.remove(k)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn write_effects(
    outbox: &TransactionalTree,
    audit: &TransactionalTree,
    meta: &TransactionalTree,
    effects: &Effects,
) -> TxResult<()> {
    for item in &effects.outbox {
        let seq = outbox.generate_id()?;
        let v = encode(item).map_err(ConflictableTransactionError::Abort)?;
        outbox.insert(&seq.to_be_bytes(), v)?;
    }
    if effects.audit.is_empty() {
        return Ok(());
    }
    let (mut seq, mut prev) = match meta.get(AUDIT_HEAD)? {
        Some(v) => serde_json::from_slice::<(u64, String)>(&v).map_err(|e| {
            ConflictableTransactionError::Abort(StoreError::Codec {
                key: "audit_head".into(),
                reason: e.to_string(),
            })
        })?,
        None => (0, String::new()),
    };
    for e in &effects.audit {
        seq += 1;
        let event = e.chain(seq, &prev);
        prev = event.hash.clone();
        let v = encode(&event).map_err(ConflictableTransactionError::Abort)?;
        audit.insert(&seq.to_be_bytes(), v)?;
    }
    let head = serde_json::to_vec(&(seq, prev)).expect("a tuple always encodes");
    meta.insert(AUDIT_HEAD, head)?;
    Ok(())
}

/// Moves a request's entry in an index from `old` to `new` (either may be none).
fn swap_index_key(
    index: &TransactionalTree,
    old: &Option<Vec<u8>>,
    new: &Option<Vec<u8>>,
) -> TxResult<()> {
    if old == new {
        return Ok(());
    }
    if let Some(k) = old {
        index.remove(k.as_slice())?;
    }
    if let Some(k) = new {
        index.insert(k.as_slice(), &[])?;
    }
    Ok(())
}

/// The `open_by_requester` key of a request that is not finished.
fn open_key(req: &AccessRequest) -> Option<Vec<u8>> {
    if req.status.is_terminal() {
        return None;
    }
    let mut k = requester_prefix(&req.requester);
    k.extend_from_slice(&(req.created_at.timestamp_millis().max(0) as u64).to_be_bytes());
    k.extend_from_slice(req.id.as_bytes());
    Some(k)
}

/// The `open_by_status` key of a request that is not finished.
fn status_key(req: &AccessRequest) -> Option<Vec<u8>> {
    if req.status.is_terminal() {
        return None;
    }
    let mut k = requester_prefix(status_name(req.status));
    k.extend_from_slice(&(req.created_at.timestamp_millis().max(0) as u64).to_be_bytes());
    k.extend_from_slice(req.id.as_bytes());
    Some(k)
}

/// A status's stored name (as serde writes it, and as PostgreSQL's `status`
/// column holds it).
pub(crate) fn status_name(s: Status) -> &'static str {
    match s {
        Status::Pending => "pending",
        Status::Granting => "granting",
        Status::Scheduled => "scheduled",
        Status::Active => "active",
        Status::Revoking => "revoking",
        Status::NeedsAttention => "needs_attention",
        Status::Revoked => "revoked",
        Status::Denied => "denied",
        Status::Expired => "expired",
        Status::Failed => "failed",
        Status::Cancelled => "cancelled",
    }
}

/// The `holding` key of a request that gives (or is giving) its access.
fn holding_key(req: &AccessRequest) -> Option<Vec<u8>> {
    if !matches!(req.status, Status::Granting | Status::Active) {
        return None;
    }
    let mut k = holding_prefix(&req.requester, &req.runbook_id);
    k.extend_from_slice(req.id.as_bytes());
    Some(k)
}

fn requester_prefix(requester: &str) -> Vec<u8> {
    let mut k = requester.as_bytes().to_vec();
    k.push(0);
    k
}

fn holding_prefix(requester: &str, runbook: &str) -> Vec<u8> {
    let mut k = requester_prefix(requester);
    k.extend_from_slice(runbook.as_bytes());
    k.push(0);
    k
}

fn due_key(at: DateTime<Utc>, id: &str) -> Vec<u8> {
    let mut k = (at.timestamp_millis().max(0) as u64).to_be_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

fn ms_to_time(k: &[u8]) -> DateTime<Utc> {
    let ms = u64::from_be_bytes(k[..8].try_into().unwrap_or([0; 8]));
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .unwrap_or_default()
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Codec {
        key: "<new>".into(),
        reason: e.to_string(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Codec {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

fn classify_open_error(dir: &Path, e: sled::Error) -> StoreError {
    let text = e.to_string();
    match e {
        sled::Error::Io(ref io)
            if io.kind() == std::io::ErrorKind::WouldBlock || text.contains("lock") =>
        {
            StoreError::Locked(dir.to_path_buf())
        }
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => StoreError::Corrupt {
            dir: dir.to_path_buf(),
            detail: text,
        },
        sled::Error::Io(_) => StoreError::Corrupt {
            dir: dir.to_path_buf(),
            detail: text,
        },
        _ => StoreError::Db(text),
    }
}
