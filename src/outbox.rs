//! Delivers queued Slack operations: in queue order per request, retried
//! with backoff on 5xx, 429 (honouring Retry-After) and timeouts, across
//! restarts because the queue lives in the store. Errors that cannot succeed
//! on a retry (`channel_not_found`, `not_in_channel`, `invalid_auth`) are
//! logged loudly, counted on `/healthz` until the same call to the same
//! place succeeds, and dropped from the queue.
//!
//! Entries are claimed (`outbox_claim`: the oldest entry of each order key,
//! leased to this replica) and each ends as done (`outbox_done`) or as a
//! retry (`outbox_retry`), so with several replicas on one database every
//! message is sent by one of them, once, and a request's messages still go
//! out in order. A replica that dies holding a claim loses it when the lease
//! runs out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use chrono::DateTime;
use serde::{Deserialize, Serialize};

use crate::request::MessageRef;
use crate::retry::{backoff, Timing};
use crate::slack::{SlackClient, SlackError};
use crate::store::{OutboxEntry, StoreEngine};

/// A Slack Web API operation waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SlackOp {
    /// chat.postMessage to a channel.
    Post {
        channel: String,
        text: String,
        blocks: serde_json::Value,
    },
    /// conversations.open + chat.postMessage; with `purpose`, the message is
    /// remembered on the request so it can be updated later.
    Dm {
        user: String,
        text: String,
        blocks: serde_json::Value,
        #[serde(default)]
        purpose: Option<String>,
    },
    /// chat.update of the DM remembered for (`user`, `purpose`).
    UpdateDm {
        user: String,
        purpose: String,
        text: String,
        blocks: serde_json::Value,
    },
    /// chat.postEphemeral.
    Ephemeral {
        channel: String,
        user: String,
        text: String,
    },
    /// views.publish of a user's App Home.
    PublishHome {
        user: String,
        view: serde_json::Value,
    },
    /// chat.postMessage of a notice to the audit channel: the request's
    /// first notice is the parent, later ones reply in its thread (see
    /// [`crate::audit_notice`]).
    AuditNotice {
        channel: String,
        request_id: String,
        text: String,
        blocks: serde_json::Value,
        /// The notice in one line, for a digest.
        #[serde(default)]
        line: String,
        /// Break-glass and failures: a reply is also shown in the channel.
        #[serde(default)]
        loud: bool,
    },
    /// views.publish of a user's App Home as it is when delivered, built
    /// then by the [`HomeSource`]. Queued, in the same write, by every
    /// change that concerns the person; one render covers every refresh
    /// queued before it started (`queued_at`), so a burst publishes once.
    RefreshHome {
        user: String,
        queued_at: DateTime<Utc>,
    },
    /// [`SlackOp::RefreshHome`] for every member of the security group
    /// (who is in it is asked when it is delivered): someone's elevated
    /// access began or ended, or a break-glass grant was reviewed.
    RefreshSecurityHomes { queued_at: DateTime<Utc> },
}

/// Builds a person's Home tab from the current state, for
/// [`SlackOp::RefreshHome`] (the workflow, which can read the store and ask
/// Slack who may request what).
pub trait HomeSource: Send + Sync {
    fn home_view<'a>(
        &'a self,
        user: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = serde_json::Value> + Send + 'a>>;

    /// The members of the security group now; empty when there is none.
    fn security_members(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send + '_>>;
}

impl SlackOp {
    /// The Web API method that delivers it (the first, for two-step ops).
    pub fn method(&self) -> &'static str {
        match self {
            SlackOp::Post { .. } => "chat.postMessage",
            SlackOp::Dm { .. } => "conversations.open",
            SlackOp::UpdateDm { .. } => "chat.update",
            SlackOp::Ephemeral { .. } => "chat.postEphemeral",
            SlackOp::PublishHome { .. }
            | SlackOp::RefreshHome { .. }
            | SlackOp::RefreshSecurityHomes { .. } => "views.publish",
            SlackOp::AuditNotice { .. } => "chat.postMessage",
        }
    }

    /// Where it waits to go, for the backlog in `/metrics`: the channel ID
    /// of a post or ephemeral message, `direct_messages` for DMs and their
    /// updates, `app_home` for Home tabs (never a person). The PostgreSQL
    /// engine computes the same in SQL (`store/postgres/prune.rs`).
    pub fn destination(&self) -> String {
        match self {
            SlackOp::Post { channel, .. }
            | SlackOp::Ephemeral { channel, .. }
            | SlackOp::AuditNotice { channel, .. } => channel.clone(),
            SlackOp::Dm { .. } | SlackOp::UpdateDm { .. } => "direct_messages".to_string(),
            SlackOp::PublishHome { .. }
            | SlackOp::RefreshHome { .. }
            | SlackOp::RefreshSecurityHomes { .. } => "app_home".to_string(),
        }
    }

    /// Where it goes: "channel C…" or "user U…".
    fn target(&self) -> String {
        match self {
            SlackOp::Post { channel, .. }
            | SlackOp::Ephemeral { channel, .. }
            | SlackOp::AuditNotice { channel, .. } => format!("channel {channel}"),
            SlackOp::Dm { user, .. }
            | SlackOp::UpdateDm { user, .. }
            | SlackOp::PublishHome { user, .. }
            | SlackOp::RefreshHome { user, .. } => format!("user {user}"),
            SlackOp::RefreshSecurityHomes { .. } => "the security group".to_string(),
        }
    }
}

/// The key a delivery's health is kept under: the same call to the same place.
fn health_key(op: &SlackOp) -> String {
    format!("{} {}", op.method(), op.target())
}

/// An outbox entry: the op, the request it belongs to (delivery is in order
/// per request), and its retry state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Request ID, or another key that orders related messages.
    pub order_key: String,
    pub op: SlackOp,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub not_before: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_error: Option<String>,
}

impl OutboxItem {
    pub fn new(order_key: impl Into<String>, op: SlackOp) -> Self {
        OutboxItem {
            order_key: order_key.into(),
            op,
            attempts: 0,
            not_before: None,
            last_error: None,
        }
    }
}

/// How many queued entries one pass looks at.
const BATCH: usize = 256;

/// How long a permanent delivery failure counts against `/healthz` when
/// nothing is sent to the same place again.
const PERMANENT_ERROR_TTL: Duration = Duration::from_secs(3600);

/// What `/healthz` reports about Slack delivery.
#[derive(Debug, Default)]
pub struct DeliveryHealth {
    /// Deliveries Slack refused for good, by method and target
    /// ("chat.postMessage channel C0AUDIT"), with when it last happened. An
    /// entry goes when the same method to the same target next succeeds, or
    /// after [`PERMANENT_ERROR_TTL`]. The keys name people and channels, so
    /// only their number leaves the process (details are in the log).
    /// The value is when it last happened and Slack's error code
    /// (`invalid_auth`, `not_in_channel`): a fixed vocabulary that names no
    /// one, so `/healthz` can say what to fix.
    permanent_errors: Mutex<HashMap<String, (Instant, String)>>,
    pub delivered: std::sync::atomic::AtomicU64,
    pub retried: std::sync::atomic::AtomicU64,
}

impl DeliveryHealth {
    fn record_permanent(&self, key: String, error: &SlackError) {
        let code = error.api_error().unwrap_or("http_error").to_string();
        let mut errors = self.permanent_errors.lock().expect("health lock");
        errors.insert(key, (Instant::now(), code));
    }

    fn record_success(&self, key: &str) {
        let mut errors = self.permanent_errors.lock().expect("health lock");
        if errors.remove(key).is_some() {
            tracing::info!(
                "Slack accepted a delivery it had refused before; that error is cleared"
            );
        }
    }

    /// How many method-and-target pairs Slack refused recently and has not
    /// accepted since.
    pub fn failing(&self) -> usize {
        self.failing_at(Instant::now())
    }

    fn failing_at(&self, now: Instant) -> usize {
        self.by_error_at(now).values().sum()
    }

    /// The same, counted by Slack's error code.
    pub fn failing_by_error(&self) -> std::collections::BTreeMap<String, usize> {
        self.by_error_at(Instant::now())
    }

    fn by_error_at(&self, now: Instant) -> std::collections::BTreeMap<String, usize> {
        let mut errors = self.permanent_errors.lock().expect("health lock");
        errors.retain(|_, (at, _)| now.saturating_duration_since(*at) < PERMANENT_ERROR_TTL);
        let mut counts = std::collections::BTreeMap::new();
        for (_, code) in errors.values() {
            *counts.entry(code.clone()).or_default() += 1;
        }
        counts
    }
}

/// The delivery loop.
pub struct Outbox {
    store: Arc<dyn StoreEngine>,
    slack: SlackClient,
    timing: Timing,
    wake: Arc<Notify>,
    pub health: Arc<DeliveryHealth>,
    /// A method Slack rate limited, and when it may be called again.
    paused: HashMap<&'static str, Instant>,
    /// DM channels already opened, per user.
    dm_channels: HashMap<String, String>,
    /// Builds Home tabs for `RefreshHome`; without one they are dropped.
    home: Option<Arc<dyn HomeSource>>,
    /// When this replica last started rendering each person's Home tab
    /// that Slack then accepted: a refresh queued before that is already
    /// shown. (Replicas' clocks are assumed in step, as leases assume.)
    home_rendered: HashMap<String, DateTime<Utc>>,
    /// When the audit channel's backlog is sent as digests.
    digests: crate::audit_notice::Digester,
}

enum Delivery {
    Done,
    Retry(SlackError),
    Permanent(SlackError),
}

impl Outbox {
    pub fn new(
        store: Arc<dyn StoreEngine>,
        slack: SlackClient,
        timing: Timing,
        wake: Arc<Notify>,
    ) -> Outbox {
        Outbox {
            store,
            slack,
            timing,
            wake,
            health: Arc::new(DeliveryHealth::default()),
            paused: HashMap::new(),
            dm_channels: HashMap::new(),
            home: None,
            home_rendered: HashMap::new(),
            digests: crate::audit_notice::Digester::default(),
        }
    }

    /// Lets the loop render Home tabs for [`SlackOp::RefreshHome`].
    pub fn with_home(mut self, home: Arc<dyn HomeSource>) -> Outbox {
        self.home = Some(home);
        self
    }

    /// Sends the audit channel's backlog as digests by `policy`.
    pub fn with_digests(mut self, policy: crate::audit_notice::DigestPolicy) -> Outbox {
        self.digests = crate::audit_notice::Digester::new(policy);
        self
    }

    /// Runs until `cancel`, then returns (undelivered entries stay queued
    /// for the next start).
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let sleep_for = match self.pass().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "outbox pass failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep_for) => {}
            }
        }
    }

    /// Delivers what can be delivered now; returns how long to sleep.
    /// Claims what is ready (the oldest entry of each order key, leased
    /// to this replica) and delivers it; every claimed entry ends as done
    /// or as a retry, which releases it. Returns how long to sleep.
    async fn pass(&mut self) -> Result<Duration, crate::store::StoreError> {
        let mut idle = Duration::from_secs(30);
        loop {
            let now = Utc::now();
            let batch = self
                .store
                .outbox_claim(now, BATCH, self.timing.lease)
                .await?;
            if batch.is_empty() {
                break;
            }
            for OutboxEntry { seq, mut item } in batch {
                if let Some(until) = self.paused.get(item.op.method()) {
                    let left = until.saturating_duration_since(Instant::now());
                    if !left.is_zero() {
                        // Slack asked this method to wait: the entry goes
                        // back, not tried, and its key waits with it.
                        item.not_before =
                            Some(Utc::now() + chrono::Duration::from_std(left).unwrap_or_default());
                        self.store.outbox_retry(seq, &item).await?;
                        idle = idle.min(left);
                        continue;
                    }
                }
                let delivery = match self.digest(seq, &item).await? {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(wait)) => {
                        // A digest went out a moment ago: the channel's
                        // queue waits for the next one.
                        item.not_before =
                            Some(Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default());
                        self.store.outbox_retry(seq, &item).await?;
                        idle = idle.min(wait);
                        continue;
                    }
                    None => self.deliver(&item).await,
                };
                match delivery {
                    Delivery::Done => {
                        self.store.outbox_done(seq).await?;
                        self.health.record_success(&health_key(&item.op));
                        self.health
                            .delivered
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Delivery::Retry(e) => {
                        item.attempts += 1;
                        let wait = e
                            .retry_after()
                            .unwrap_or_else(|| backoff(&self.timing, item.attempts));
                        if let Some(ra) = e.retry_after() {
                            let method = item.op.method();
                            self.paused.insert(method, Instant::now() + ra);
                        }
                        tracing::warn!(error = %e, attempts = item.attempts, retry_in = ?wait, order_key = %item.order_key, "Slack delivery failed; will retry");
                        item.not_before =
                            Some(Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default());
                        item.last_error = Some(e.to_string());
                        self.store.outbox_retry(seq, &item).await?;
                        self.health
                            .retried
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        idle = idle.min(wait);
                    }
                    Delivery::Permanent(e) => {
                        let target = item.op.target();
                        tracing::error!(error = %e, %target, order_key = %item.order_key, "Slack refused a message and a retry cannot help; it is dropped. Fix the app's setup (is the bot invited to the channel? is the token valid?)");
                        self.health.record_permanent(health_key(&item.op), &e);
                        self.store.outbox_done(seq).await?;
                    }
                }
            }
        }
        // What is left waits for a retry time, or is another replica's, or
        // was queued by another replica without waking this one: look again
        // within a second.
        if self.store.outbox_len().await? > 0 && idle > Duration::from_secs(1) {
            idle = Duration::from_secs(1);
        }
        Ok(idle)
    }

    /// For an audit notice while its channel's backlog is large, sends it
    /// and what waits behind it as a digest: `Some(Ok(how the head
    /// went))`, or `Some(Err(wait))` until the next digest is due; `None`
    /// to deliver the entry on its own.
    async fn digest(
        &mut self,
        seq: u64,
        item: &OutboxItem,
    ) -> Result<Option<Result<Delivery, Duration>>, crate::store::StoreError> {
        use crate::audit_notice::DigestOutcome;
        let SlackOp::AuditNotice { channel, .. } = &item.op else {
            return Ok(None);
        };
        let head = OutboxEntry {
            seq,
            item: item.clone(),
        };
        let outcome = self
            .digests
            .try_digest(self.store.as_ref(), &self.slack, &head, channel)
            .await?;
        Ok(match outcome {
            DigestOutcome::NotNeeded => None,
            DigestOutcome::Wait(wait) => Some(Err(wait)),
            DigestOutcome::Sent { others, later } => {
                self.health
                    .delivered
                    .fetch_add(others as u64, std::sync::atomic::Ordering::Relaxed);
                if let Some(e) = later {
                    tracing::warn!(error = %e, "a digest was cut short; the rest of the backlog waits");
                    if let Some(ra) = e.retry_after() {
                        self.paused.insert(item.op.method(), Instant::now() + ra);
                    }
                }
                Some(Ok(Delivery::Done))
            }
            DigestOutcome::Failed(e) if e.is_retryable() => Some(Ok(Delivery::Retry(e))),
            DigestOutcome::Failed(e) => Some(Ok(Delivery::Permanent(e))),
        })
    }

    #[tracing::instrument(skip_all, fields(request_id = %item.order_key, method = item.op.method()))]
    async fn deliver(&mut self, item: &OutboxItem) -> Delivery {
        let result = match &item.op {
            SlackOp::Post {
                channel,
                text,
                blocks,
            } => self
                .slack
                .post_message(channel, text, blocks)
                .await
                .map(|_| ()),
            SlackOp::Dm {
                user,
                text,
                blocks,
                purpose,
            } => {
                self.dm(&item.order_key, user, text, blocks, purpose.as_deref())
                    .await
            }
            SlackOp::UpdateDm {
                user,
                purpose,
                text,
                blocks,
            } => match self.store.get(&item.order_key).await {
                Ok(Some(req)) => match req.message_for(user, purpose) {
                    Some(m) => {
                        self.slack
                            .update_message(&m.channel, &m.ts, text, blocks)
                            .await
                    }
                    // The DM never went out (e.g. Slack refused it): nothing to update.
                    None => Ok(()),
                },
                _ => Ok(()),
            },
            SlackOp::Ephemeral {
                channel,
                user,
                text,
            } => self.slack.post_ephemeral(channel, user, text).await,
            SlackOp::PublishHome { user, view } => self.slack.views_publish(user, view).await,
            SlackOp::RefreshHome { user, queued_at } => self.refresh_home(user, *queued_at).await,
            SlackOp::RefreshSecurityHomes { queued_at } => {
                self.refresh_security_homes(*queued_at).await
            }
            notice @ SlackOp::AuditNotice { .. } => {
                crate::audit_notice::deliver(self.store.as_ref(), &self.slack, notice).await
            }
        };
        match result {
            Ok(()) => Delivery::Done,
            Err(e) if e.is_retryable() => Delivery::Retry(e),
            // An edited message that no longer exists is not worth a retry, nor an alarm.
            Err(e) if e.api_error() == Some("message_not_found") => Delivery::Done,
            Err(e) => Delivery::Permanent(e),
        }
    }

    /// Publishes `user`'s Home tab as it is now, unless a render that
    /// started after `queued_at` was already published.
    async fn refresh_home(
        &mut self,
        user: &str,
        queued_at: DateTime<Utc>,
    ) -> Result<(), SlackError> {
        if self
            .home_rendered
            .get(user)
            .is_some_and(|rendered| *rendered > queued_at)
        {
            return Ok(());
        }
        let Some(home) = self.home.clone() else {
            return Ok(());
        };
        let started = Utc::now();
        let view = home.home_view(user).await;
        self.slack.views_publish(user, &view).await?;
        self.home_rendered.insert(user.to_string(), started);
        Ok(())
    }

    /// Refreshes the Home of each member of the security group; a member
    /// already refreshed since `queued_at` is skipped, so a retry after one
    /// failed goes on where it stopped.
    async fn refresh_security_homes(&mut self, queued_at: DateTime<Utc>) -> Result<(), SlackError> {
        let Some(home) = self.home.clone() else {
            return Ok(());
        };
        for member in home.security_members().await {
            self.refresh_home(&member, queued_at).await?;
        }
        Ok(())
    }

    async fn dm(
        &mut self,
        request_id: &str,
        user: &str,
        text: &str,
        blocks: &serde_json::Value,
        purpose: Option<&str>,
    ) -> Result<(), SlackError> {
        let channel = match self.dm_channels.get(user) {
            Some(c) => c.clone(),
            None => {
                let c = self.slack.open_dm(user).await?;
                self.dm_channels.insert(user.to_string(), c.clone());
                c
            }
        };
        let (channel, ts) = self.slack.post_message(&channel, text, blocks).await?;
        if let Some(purpose) = purpose {
            let msg = MessageRef {
                user: user.to_string(),
                purpose: purpose.to_string(),
                channel,
                ts,
            };
            let remembered = self
                .store
                .update(request_id, move |req| {
                    req.messages.push(msg);
                    Ok::<_, std::convert::Infallible>(((), crate::store::Effects::default()))
                })
                .await;
            match remembered {
                Ok(_) | Err(crate::store::StoreError::NotFound(_)) => {}
                Err(e) => {
                    tracing::error!(error = %e, "could not remember a posted DM; its buttons will not be updated")
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(channel: &str) -> SlackOp {
        SlackOp::Post {
            channel: channel.into(),
            text: "t".into(),
            blocks: serde_json::json!([]),
        }
    }

    fn refused(code: &str) -> SlackError {
        SlackError::Api {
            method: "chat.postMessage".into(),
            error: code.into(),
        }
    }

    #[test]
    fn a_refused_delivery_counts_until_the_same_call_succeeds() {
        let h = DeliveryHealth::default();
        h.record_permanent(health_key(&post("C1")), &refused("not_in_channel"));
        h.record_permanent(health_key(&post("C1")), &refused("not_in_channel"));
        h.record_permanent(health_key(&post("C2")), &refused("channel_not_found"));
        assert_eq!(h.failing(), 2);
        // Another call, or the same call elsewhere, clears nothing.
        h.record_success(&health_key(&SlackOp::Ephemeral {
            channel: "C1".into(),
            user: "U1".into(),
            text: "t".into(),
        }));
        h.record_success(&health_key(&post("C3")));
        assert_eq!(h.failing(), 2);
        assert_eq!(
            h.failing_by_error().into_iter().collect::<Vec<_>>(),
            [
                ("channel_not_found".to_string(), 1),
                ("not_in_channel".to_string(), 1)
            ]
        );
        h.record_success(&health_key(&post("C1")));
        assert_eq!(h.failing(), 1);
    }

    #[test]
    fn a_refused_delivery_is_forgotten_after_a_while() {
        let h = DeliveryHealth::default();
        h.record_permanent(health_key(&post("C1")), &refused("not_in_channel"));
        assert_eq!(h.failing(), 1);
        let later = Instant::now() + PERMANENT_ERROR_TTL + Duration::from_secs(1);
        assert_eq!(h.failing_at(later), 0);
    }
}
