//! The tamper-evident audit log's format: every event carries the SHA-256
//! of the event before it, so editing, inserting or deleting any event
//! breaks the chain from that point on. The store appends events inside the
//! same transaction as the state change they record; `accessbot audit`
//! exports and verifies them.

use std::collections::BTreeMap;

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
    /// What the request was when the event was recorded (approvers so far,
    /// duration, reason, inputs). Events written before these were kept
    /// have none; the hash covers them only when there are some, so older
    /// events verify as they always did.
    #[serde(default, skip_serializing_if = "AuditFacts::is_empty")]
    pub facts: AuditFacts,
}

/// The request's facts an auditor asks for, copied into each event so the
/// log answers without the request store (which retention empties).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFacts {
    /// Who had approved the request when the event was recorded, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// The duration asked for, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
    /// The reason the requester gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Values the runbook asked the requester for, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
}

impl AuditFacts {
    pub fn is_empty(&self) -> bool {
        self.approvers.is_empty()
            && self.duration_secs.is_none()
            && self.reason.is_none()
            && self.inputs.is_empty()
    }
}

/// The kind of the event that stands for the pruned start of the log
/// (`ACCESSBOT_AUDIT_RETENTION`): it carries, as its `hash`, the hash of the
/// last pruned event, so the events after it still verify.
pub const CHECKPOINT: &str = "audit_checkpoint";

impl AuditEvent {
    /// Whether this event stands for a pruned range (see [`CHECKPOINT`]).
    pub fn is_checkpoint(&self) -> bool {
        self.kind == CHECKPOINT
    }

    /// The checkpoint that replaces every event up to and including `last`
    /// (its `seq` and `hash` are `last`'s; `prev_hash` is the hash of the
    /// event before `last`), written at `now`.
    pub fn checkpoint(last: &AuditEvent, now: DateTime<Utc>, why: &str) -> AuditEvent {
        AuditEvent {
            seq: last.seq,
            at: now,
            kind: CHECKPOINT.to_string(),
            request_id: String::new(),
            runbook: String::new(),
            actor: "accessbot".to_string(),
            subject: String::new(),
            detail: format!(
                "events 1 to {} were pruned ({why}); the last of them was recorded at {} and its hash is kept here",
                last.seq,
                last.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            prev_hash: last.prev_hash.clone(),
            hash: last.hash.clone(),
            facts: AuditFacts::default(),
        }
    }
}

/// An audit event before the store gives it its place in the chain.
#[derive(Debug, Clone, Default)]
pub struct NewAuditEvent {
    pub kind: String,
    pub request_id: String,
    pub runbook: String,
    pub actor: String,
    pub subject: String,
    pub detail: String,
    pub facts: AuditFacts,
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
            facts: self.facts.clone(),
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
    if !e.facts.is_empty() {
        // Field order is fixed and inputs are sorted, so the JSON is canonical.
        let facts = serde_json::to_string(&e.facts).expect("facts encode");
        for part in ["facts", facts.as_str()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
    }
    hex::encode(h.finalize())
}

/// Why the chain breaks at an event, in words: changed, removed or reordered.
/// `expected_seq` and `prev` are what the chain so far calls for.
pub fn explain_break(expected_seq: u64, prev: &str, e: &AuditEvent) -> String {
    if e.is_checkpoint() {
        format!(
            "a checkpoint for events up to {} stands after event {}: a checkpoint is only valid as the first event. \
             If audit retention pruned the log while it was being read, run the command again; \
             otherwise events {expected_seq} to {} were replaced",
            e.seq,
            expected_seq.saturating_sub(1),
            e.seq
        )
    } else if e.seq > expected_seq {
        format!(
            "event {expected_seq} is missing from its place (removed, or moved later): event {} comes where it belongs",
            e.seq
        )
    } else if e.seq < expected_seq {
        format!(
            "event {} comes after event {} (reordered or duplicated)",
            e.seq,
            expected_seq - 1
        )
    } else if audit_hash(e) != e.hash {
        format!(
            "event {} was changed: its content no longer matches its hash",
            e.seq
        )
    } else if e.prev_hash != prev {
        format!(
            "event {} does not follow the event before it: an event before it was changed, removed or reordered, or this one was moved",
            e.seq
        )
    } else {
        format!("event {} is not a valid link of the chain", e.seq)
    }
}

/// `Ok(count)` when every event links to the one before; `Err(seq)` of the
/// first that does not. A log whose start was pruned begins with a
/// checkpoint, which the chain continues from.
pub fn verify_chain(events: &[AuditEvent]) -> Result<u64, u64> {
    let mut prev = String::new();
    let mut next = 1;
    for (i, e) in events.iter().enumerate() {
        if i == 0 && e.is_checkpoint() {
            next = e.seq + 1;
            prev = e.hash.clone();
            continue;
        }
        if e.seq != next || e.prev_hash != prev || audit_hash(e) != e.hash {
            return Err(e.seq);
        }
        next += 1;
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
                    facts: AuditFacts::default(),
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

    #[test]
    fn facts_are_covered_by_the_hash_only_when_present() {
        let mut e = chain(1).remove(0);
        let plain = audit_hash(&e);
        e.facts.reason = Some("refunds".into());
        let with_facts = audit_hash(&e);
        assert_ne!(plain, with_facts);
        e.facts.reason = Some("other".into());
        assert_ne!(audit_hash(&e), with_facts);
    }

    #[test]
    fn a_pruned_log_starting_with_a_checkpoint_verifies() {
        let all = chain(6);
        let mut pruned = vec![AuditEvent::checkpoint(&all[2], Utc::now(), "test")];
        pruned.extend_from_slice(&all[3..]);
        assert_eq!(verify_chain(&pruned), Ok(4));
        // A checkpoint anywhere but first is a break.
        let mut late = all.clone();
        late[4] = AuditEvent::checkpoint(&all[4], Utc::now(), "test");
        assert_eq!(verify_chain(&late), Err(5));
        let why = explain_break(5, &all[3].hash, &late[4]);
        assert!(why.contains("only valid as the first event"), "{why}");
    }
}
