//! The tamper-evident audit log's format: every event carries the SHA-256
//! of the event before it, so editing, inserting or deleting any event
//! breaks the chain from that point on. The store appends events inside the
//! same transaction as the state change they record; `accessbot audit`
//! exports and verifies them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One line of the audit log. `hash` chains it to the line before, so any
/// edit or deletion shows when the chain is verified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// requested, approved, denied, granted, revoked, failed, expired, ...
    pub kind: String,
    pub request_id: String,
    pub runbook: String,
    /// Who acted: a user ID, "accessbot", or an auto-approval rule.
    pub actor: String,
    /// Whose access it is.
    pub subject: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// An audit event before the store gives it its place in the chain.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub kind: String,
    pub request_id: String,
    pub runbook: String,
    pub actor: String,
    pub subject: String,
    pub detail: String,
}

impl NewAuditEvent {
    /// The event as the log keeps it: number `seq`, now, chained to the
    /// event before it by `prev_hash`. The one place both store engines
    /// turn a new event into a link of the chain.
    pub fn chain(&self, seq: u64, prev_hash: &str) -> AuditEvent {
        let mut event = AuditEvent {
            seq,
            at: Utc::now(),
            kind: self.kind.clone(),
            request_id: self.request_id.clone(),
            runbook: self.runbook.clone(),
            actor: self.actor.clone(),
            subject: self.subject.clone(),
            detail: self.detail.clone(),
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        event.hash = audit_hash(&event);
        event
    }
}

/// SHA-256 over the previous hash and the event's fields, in a fixed order.
pub fn audit_hash(e: &AuditEvent) -> String {
    let mut h = Sha256::new();
    for part in [
        e.prev_hash.as_str(),
        &e.seq.to_string(),
        &e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        &e.kind,
        &e.request_id,
        &e.runbook,
        &e.actor,
        &e.subject,
        &e.detail,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// `Ok(count)` when every event links to the one before; `Err(seq)` of the first that does not.
pub fn verify_chain(events: &[AuditEvent]) -> Result<u64, u64> {
    let mut prev = String::new();
    for (i, e) in events.iter().enumerate() {
        if e.seq != i as u64 + 1 || e.prev_hash != prev || audit_hash(e) != e.hash {
            return Err(e.seq);
        }
        prev = e.hash.clone();
    }
    Ok(events.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn chain(n: u64) -> Vec<AuditEvent> {
        let mut prev = String::new();
        (1..=n)
            .map(|seq| {
                let mut e = AuditEvent {
                    seq,
                    at: Utc::now(),
                    kind: "granted".into(),
                    request_id: format!("ar-{seq}"),
                    runbook: "rb".into(),
                    actor: "U1".into(),
                    subject: "U2".into(),
                    detail: "d".into(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = audit_hash(&e);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)), Ok(5));
    }

    #[test]
    fn edits_deletions_and_reorders_are_detected() {
        let mut edited = chain(5);
        edited[2].actor = "U9".into();
        assert_eq!(verify_chain(&edited), Err(3));
        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify_chain(&deleted), Err(3));
        let mut swapped = chain(5);
        swapped.swap(3, 4);
        assert_eq!(verify_chain(&swapped), Err(5));
    }
}
