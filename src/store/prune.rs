//! Retention on sled: removing finished requests that ended long ago, and
//! replacing the oldest audit events by a checkpoint
//! ([`crate::audit::CHECKPOINT`]). Also the outbox backlog by destination,
//! for `/metrics`. The policy (how old is too old, how often) is
//! [`crate::retention`]'s; this file only does the writes.
//!
//! sled keeps no index of finished requests by end time, so
//! [`Store::prune_finished`] walks the `requests` tree a key at a time
//! (constant memory); it runs in the background, once per retention pass.

use chrono::{DateTime, Utc};

use super::{decode, encode, tx_error, Store, StoreError};
use crate::audit::AuditEvent;
use crate::outbox::OutboxItem;
use crate::request::AccessRequest;

/// When a finished request counts as ended: its end, or its creation for a
/// request that never recorded one.
pub(crate) fn ended_at(req: &AccessRequest) -> DateTime<Utc> {
    req.ended_at.unwrap_or(req.created_at)
}

/// Which events a prune replaces: everything from the start of the log up
/// to the last event recorded before `before` (at most `limit` events that
/// are not a checkpoint). `None` when no event is old enough.
pub(crate) fn prunable<'e>(
    events: impl IntoIterator<Item = &'e AuditEvent>,
    before: DateTime<Utc>,
    limit: usize,
) -> Option<(Vec<u64>, AuditEvent)> {
    let mut seqs = vec![];
    let mut last: Option<&AuditEvent> = None;
    let mut real = 0;
    for e in events {
        // A checkpoint is written when the prune runs, so its time says
        // nothing about the events it stands for: it is always replaced.
        if e.is_checkpoint() && seqs.is_empty() {
            seqs.push(e.seq);
            continue;
        }
        if e.at >= before || real == limit {
            break;
        }
        seqs.push(e.seq);
        last = Some(e);
        real += 1;
    }
    last.map(|l| (seqs, l.clone()))
}

impl Store {
    /// Removes up to `limit` finished requests that ended before `before`;
    /// returns how many. Each is removed under its write lock, and only if
    /// it is still finished.
    pub fn prune_finished(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let mut removed = 0;
        for item in self.requests.iter() {
            if removed as usize >= limit {
                break;
            }
            let (k, v) = item?;
            let req: AccessRequest = decode(&k, &v)?;
            if !req.status.is_terminal() || ended_at(&req) >= before {
                continue;
            }
            let _guard = self.write_lock(&req.id);
            let Some(now) = self.get(&req.id)? else {
                continue;
            };
            if !now.status.is_terminal() {
                continue;
            }
            self.requests.remove(req.id.as_bytes())?;
            // A finished request has no deadline; remove one left by an
            // older version all the same, so the timer never finds a ghost.
            if let Some(due) = self.due_index.remove(req.id.as_bytes())? {
                self.due.remove(due)?;
            }
            removed += 1;
        }
        Ok(removed)
    }

    /// Replaces the oldest audit events recorded before `before` (at most
    /// `limit` per call) by one checkpoint, in one transaction; returns the
    /// checkpoint, or `None` when nothing is old enough.
    pub fn prune_audit(
        &self,
        before: DateTime<Utc>,
        limit: usize,
        why: &str,
    ) -> Result<Option<AuditEvent>, StoreError> {
        let mut head = vec![];
        for item in self.audit.iter().take(limit + 1) {
            let (k, v) = item?;
            head.push(decode::<AuditEvent>(&k, &v)?);
        }
        let Some((seqs, last)) = prunable(&head, before, limit) else {
            return Ok(None);
        };
        let checkpoint = AuditEvent::checkpoint(&last, Utc::now(), why);
        let value = encode(&checkpoint)?;
        self.audit
            .transaction(|audit| {
                for seq in &seqs {
                    audit.remove(&seq.to_be_bytes())?;
                }
                audit.insert(&checkpoint.seq.to_be_bytes(), value.as_slice())?;
                Ok::<(), sled::transaction::ConflictableTransactionError<StoreError>>(())
            })
            .map_err(tx_error)?;
        Ok(Some(checkpoint))
    }

    /// Outbox entries waiting, by destination ([`crate::outbox::SlackOp::destination`]).
    pub fn outbox_backlog(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut by = std::collections::BTreeMap::<String, u64>::new();
        for item in self.outbox.iter() {
            let (k, v) = item?;
            let item: OutboxItem = decode(&k, &v)?;
            *by.entry(item.op.destination()).or_default() += 1;
        }
        Ok(by.into_iter().collect())
    }
}
