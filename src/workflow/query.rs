//! The narrow questions and small chores the transports and operator
//! endpoints bring to the workflow, so that none of them reaches into the
//! store, the Slack client, the people resolver or the task tracker: the
//! replay guard's remembered answers, a person's open requests, the audit
//! log for export, the outbox length, queueing a reply, and the modal's Web
//! API calls in the background.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use super::Workflow;
use crate::audit::AuditEvent;
use crate::outbox::{OutboxItem, SlackOp};
use crate::policy::ResolveError;
use crate::request::{AccessRequest, StageState};
use crate::runbook::{AutoApproveRule, Runbook};
use crate::slack::SlackError;
use crate::store::{Effects, StoreError};

impl Workflow {
    /// The answer remembered for a delivery `key`, if it was seen before.
    pub fn delivery_answer(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.seen_before(key)
    }

    /// Remembers that the delivery `key` was answered with `answer`; the
    /// timestamp lets the pruner forget it later. Not flushed: it records no
    /// request state.
    pub fn remember_delivery(&self, key: &[u8], answer: &[u8]) -> Result<(), StoreError> {
        self.store.remember_seen(key, Utc::now(), answer)
    }

    /// `user`'s requests that are not finished yet, in store order.
    // Reads every request, as `/access status` always has; an index by
    // requester replaces this scan later.
    pub fn open_requests_of(&self, user: &str) -> Result<Vec<AccessRequest>, StoreError> {
        Ok(self
            .store
            .all_requests()?
            .into_iter()
            .filter(|r| r.requester == user && !r.status.is_terminal())
            .collect())
    }

    /// How many requests there are in each status, by status label; empty
    /// when the store cannot be read.
    pub fn request_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for r in self.store.all_requests().unwrap_or_default() {
            *counts.entry(r.status.label()).or_default() += 1;
        }
        counts
    }

    /// The whole audit log, in order, for export.
    pub fn audit_events(&self) -> Result<Vec<AuditEvent>, StoreError> {
        self.store.audit_events()
    }

    /// Slack messages waiting for delivery.
    pub fn outbox_len(&self) -> usize {
        self.store.outbox_len()
    }

    /// Queues one Slack operation that records no request state (a reply to
    /// a press, a Home tab), then wakes the outbox.
    pub fn queue_slack(&self, order_key: &str, op: SlackOp) -> Result<(), StoreError> {
        let effects = Effects {
            outbox: vec![OutboxItem::new(order_key, op)],
            audit: vec![],
        };
        self.store.enqueue(effects)?;
        self.wake();
        Ok(())
    }

    /// Runs `work` in the background, tracked so shutdown waits for it.
    pub fn spawn_background(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(work);
    }

    /// Opens a modal with `views.open`.
    pub async fn open_view(&self, trigger_id: &str, view: &Value) -> Result<(), SlackError> {
        self.slack.views_open(trigger_id, view).await.map(|_| ())
    }

    /// Replaces an open modal with `views.update`.
    pub async fn update_view(
        &self,
        view_id: &str,
        hash: Option<&str>,
        view: &Value,
    ) -> Result<(), SlackError> {
        self.slack
            .views_update(view_id, hash, view)
            .await
            .map(|_| ())
    }

    /// Who would approve `user`'s request for `runbook`, stage by stage.
    pub async fn resolve_stages(
        &self,
        runbook: &Runbook,
        user: &str,
    ) -> Result<Vec<StageState>, ResolveError> {
        self.people.resolve_stages(runbook, user).await
    }

    /// The auto-approval rule that would cover `user` asking for `duration`.
    pub async fn auto_approve_rule<'r>(
        &self,
        runbook: &'r Runbook,
        user: &str,
        duration: Duration,
    ) -> Result<Option<&'r AutoApproveRule>, ResolveError> {
        self.people.auto_approve_rule(runbook, user, duration).await
    }
}
