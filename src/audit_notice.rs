//! The audit channel as security follows it: every notice of a request is
//! threaded under the request's first notice, loud ones (break-glass,
//! failures) are also shown in the channel, and a backlog is sent as
//! digests instead of one message per event.
//!
//! Notices wait in the outbox under one order key per channel
//! ([`order_key`]), so they go out in the order they happened, one at a
//! time, whichever request they are about. The first notice of a request
//! is posted as a message of its own; its `ts` is recorded on the request
//! (a [`MessageRef`] with purpose [`AUDIT_THREAD`], in the store, before
//! the entry is marked done), and every later notice of the request is a
//! reply under it (`thread_ts`). Because the next notice is claimed only
//! once the one before is done, a reply never goes out before its parent's
//! `ts` is stored, on any replica and across restarts.
//!
//! Slack posts about one message per second per channel. When more than
//! [`DigestPolicy::after`] notices wait for the channel, the head of the
//! queue and everything queued behind it (up to [`DigestPolicy::max_events`])
//! are posted as one digest, split into several messages when it is longer
//! than Slack allows, at most once per [`DigestPolicy::every`], until the
//! backlog is back under the threshold. Every event is listed, in order;
//! entries are removed only once the message listing them was accepted.
//! Digest messages are not threaded: a request whose first notice went out
//! in a digest gets its thread from its next notice sent on its own.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::outbox::{OutboxItem, SlackOp};
use crate::request::MessageRef;
use crate::slack::{digest, SlackClient, SlackError};
use crate::store::{Effects, OutboxEntry, StoreEngine, StoreError};

/// `MessageRef::purpose` of a request's first notice in the audit channel.
pub const AUDIT_THREAD: &str = "audit_thread";

/// The outbox order key of the notices of `channel`.
pub fn order_key(channel: &str) -> String {
    format!("audit:{channel}")
}

/// Event kinds whose notices must stand out: marked, and also shown in the
/// channel when they are replies (`reply_broadcast`).
pub fn is_loud(kind: &str) -> bool {
    matches!(
        kind,
        "break_glass"
            | "failed"
            | "grant_failed"
            | "revoke_failed"
            | "needs_attention"
            | "review_flagged"
    )
}

/// When the audit channel's notices are combined into digests.
#[derive(Debug, Clone)]
pub struct DigestPolicy {
    /// Digests start when more notices than this wait for the channel
    /// (`ACCESSBOT_AUDIT_DIGEST_AFTER`).
    pub after: u64,
    /// At most one digest per channel this often (`ACCESSBOT_AUDIT_DIGEST_EVERY`).
    pub every: Duration,
    /// Events listed in one digest at most (it may be split into several messages).
    pub max_events: usize,
}

impl Default for DigestPolicy {
    fn default() -> Self {
        DigestPolicy {
            after: 20,
            every: Duration::from_secs(10),
            max_events: 500,
        }
    }
}

/// What [`Digester::try_digest`] did with the head of a channel's queue.
pub(crate) enum DigestOutcome {
    /// The backlog is small: deliver the head on its own.
    NotNeeded,
    /// A digest went out less than `every` ago: the head waits this long.
    Wait(Duration),
    /// The head and `others` more entries were listed in digest messages
    /// Slack accepted; the others are already removed, the head is the
    /// caller's to mark done. `later` is the error that stopped a split
    /// digest after its first message, if one did.
    Sent {
        others: usize,
        later: Option<SlackError>,
    },
    /// The first digest message failed: nothing was removed.
    Failed(SlackError),
}

/// Per-process digest state: when each channel may get its next digest.
#[derive(Debug, Default)]
pub(crate) struct Digester {
    pub policy: DigestPolicy,
    next: HashMap<String, Instant>,
}

impl Digester {
    pub fn new(policy: DigestPolicy) -> Digester {
        Digester {
            policy,
            next: HashMap::new(),
        }
    }

    /// Sends `head` (a claimed audit notice) and what waits behind it as a
    /// digest when the channel's backlog calls for one.
    pub async fn try_digest(
        &mut self,
        store: &dyn StoreEngine,
        slack: &SlackClient,
        head: &OutboxEntry,
        channel: &str,
    ) -> Result<DigestOutcome, StoreError> {
        let key = &head.item.order_key;
        // Whether more than `after` wait, read no further than that.
        let after = usize::try_from(self.policy.after).unwrap_or(usize::MAX);
        let behind = store.outbox_following(key, head.seq, after).await?;
        if behind.len() < after {
            return Ok(DigestOutcome::NotNeeded);
        }
        if let Some(at) = self.next.get(key) {
            let left = at.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                return Ok(DigestOutcome::Wait(left));
            }
        }
        let rest = store
            .outbox_following(key, head.seq, self.policy.max_events.saturating_sub(1))
            .await?;
        let backlog = store.outbox_len_of(key).await?;
        let lines: Vec<String> = std::iter::once(&head.item)
            .chain(rest.iter().map(|e| &e.item))
            .map(line_of)
            .collect();
        let parts = digest::audit_digest(&lines, backlog);
        self.next
            .insert(key.clone(), Instant::now() + self.policy.every);
        // Post every part first, then remove what was listed, the last
        // entry first: the head stays claimed until the end, so no replica
        // sends any of these entries on its own meanwhile.
        let mut listed = 0;
        let mut later = None;
        for (i, part) in parts.iter().enumerate() {
            match slack
                .post_message(channel, &part.msg.text, &part.msg.blocks)
                .await
            {
                Ok(_) => listed += part.events,
                Err(e) if i == 0 => return Ok(DigestOutcome::Failed(e)),
                Err(e) => {
                    later = Some(e);
                    break;
                }
            }
        }
        let others = listed.saturating_sub(1).min(rest.len());
        for entry in rest[..others].iter().rev() {
            store.outbox_done(entry.seq).await?;
        }
        tracing::info!(
            events = listed,
            backlog,
            messages = parts.len(),
            "audit channel backlog sent as a digest"
        );
        Ok(DigestOutcome::Sent { others, later })
    }
}

/// The one line that stands for an outbox entry in a digest.
fn line_of(item: &OutboxItem) -> String {
    match &item.op {
        SlackOp::AuditNotice { line, text, .. } if line.is_empty() => text.clone(),
        SlackOp::AuditNotice { line, .. } => line.clone(),
        SlackOp::Post { text, .. } => text.clone(),
        other => format!("({})", other.method()),
    }
}

/// Posts one notice: a reply in its request's thread when the request has
/// one, else as the parent, whose `ts` is then stored on the request.
pub(crate) async fn deliver(
    store: &dyn StoreEngine,
    slack: &SlackClient,
    notice: &SlackOp,
) -> Result<(), SlackError> {
    let SlackOp::AuditNotice {
        channel,
        request_id,
        text,
        blocks,
        loud,
        ..
    } = notice
    else {
        return Ok(());
    };
    let stored = store.get(request_id).await.map_err(|e| unreadable(&e))?;
    let parent = stored
        .as_ref()
        .and_then(|req| req.message_for(channel, AUDIT_THREAD).map(|m| m.ts.clone()));
    if let Some(ts) = parent {
        slack
            .post_threaded(channel, text, blocks, Some(&ts), *loud)
            .await?;
        return Ok(());
    }
    let (posted_in, ts) = slack
        .post_threaded(channel, text, blocks, None, false)
        .await?;
    if stored.is_none() {
        // A notice about no stored request (a refusal of a mistyped ID).
        return Ok(());
    }
    let parent = MessageRef {
        user: channel.clone(),
        purpose: AUDIT_THREAD.to_string(),
        channel: if posted_in.is_empty() {
            channel.clone()
        } else {
            posted_in
        },
        ts,
    };
    let recorded = store
        .update(request_id, move |req| {
            req.messages.push(parent);
            Ok::<_, std::convert::Infallible>(((), Effects::default()))
        })
        .await;
    // Durable before the entry is marked done: after a crash, the notice
    // is at worst posted again as a reply, never as a second parent.
    let recorded = match recorded {
        Ok(_) => store.flush().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match recorded {
        Ok(()) | Err(StoreError::NotFound(_)) => {}
        // The notice is out; its replies will start a thread of their own.
        Err(e) => {
            tracing::error!(error = %e, %request_id, "could not record an audit thread; later notices of this request start a new one")
        }
    }
    Ok(())
}

/// A store that cannot be read is worth a retry, like a Slack outage.
fn unreadable(e: &StoreError) -> SlackError {
    SlackError::Transport {
        method: "chat.postMessage".into(),
        reason: format!("the request's audit thread could not be read from the store: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loud_kinds_are_break_glass_and_failures() {
        for kind in ["break_glass", "revoke_failed", "needs_attention", "failed"] {
            assert!(is_loud(kind), "{kind}");
        }
        for kind in ["requested", "approved", "granted", "revoked", "feedback"] {
            assert!(!is_loud(kind), "{kind}");
        }
        assert_eq!(order_key("C0AUDIT"), "audit:C0AUDIT");
    }
}
