//! The narrow questions and small chores the transports and operator
//! endpoints bring to the workflow, so that none of them reaches into the
//! store, the Slack client, the people resolver or the task tracker: the
//! replay guard's remembered answers, a person's open requests, the audit
//! log for export, the outbox length, queueing a reply, what a request would
//! meet (for the modal preview), and the modal's Web
//! API calls in the background.

use std::collections::BTreeMap;
use std::future::Future;

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

/// What a request for a runbook would meet, before it is made.
pub struct ApprovalOutlook<'r> {
    /// The stages with their approvers, or why no stage could complete.
    pub stages: Result<Vec<StageState>, ResolveError>,
    /// The auto-approval rule that applies; `None` also when Slack could
    /// not say.
    pub auto_approve: Option<&'r AutoApproveRule>,
}

/// Grants and revokes that are not working, as counts for `/healthz`
/// (which people and runbooks is in the audit log and the log).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProvisioningHealth {
    /// Requests whose revoke failed and is being retried; each goes when its
    /// revoke succeeds.
    pub revokes_failing: usize,
    /// Runbooks whose last grant in this process failed; each goes when a
    /// grant through it succeeds.
    pub grants_failing: usize,
    /// Requests whose revoke failed in a way no retry can fix
    /// (`NeedsAttention`), until an owner resolves them.
    pub needs_attention: usize,
}

impl Workflow {
    /// The answer remembered for a delivery `key`, if it was seen before.
    pub fn delivery_answer(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.deps.store.seen_before(key)
    }

    /// Remembers that the delivery `key` was answered with `answer`; the
    /// timestamp lets the pruner forget it later. Not flushed: it records no
    /// request state.
    pub fn remember_delivery(&self, key: &[u8], answer: &[u8]) -> Result<(), StoreError> {
        self.deps.store.remember_seen(key, Utc::now(), answer)
    }

    /// `user`'s requests that are not finished yet, in store order.
    // Reads every request, as `/access status` always has; an index by
    // requester replaces this scan later.
    pub fn open_requests_of(&self, user: &str) -> Result<Vec<AccessRequest>, StoreError> {
        Ok(self
            .deps
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
        for r in self.deps.store.all_requests().unwrap_or_default() {
            *counts.entry(r.status.label()).or_default() += 1;
        }
        counts
    }

    /// Failing grants and revokes, and requests that need a person. `None` when the store cannot be read.
    // Reads every request, as `request_counts` does; an index of retrying
    // revokes replaces this scan later.
    pub fn provisioning_health(&self) -> Option<ProvisioningHealth> {
        let requests = self.deps.store.all_requests().ok()?;
        let revokes_failing = requests
            .iter()
            .filter(|r| r.status == crate::request::Status::Revoking && r.attempts > 0)
            .count();
        let grants_failing = self
            .failing_grants
            .lock()
            .expect("failing grants lock")
            .len();
        let needs_attention = requests
            .iter()
            .filter(|r| r.status == crate::request::Status::NeedsAttention)
            .count();
        Some(ProvisioningHealth {
            revokes_failing,
            grants_failing,
            needs_attention,
        })
    }

    /// Whether the store answers a read, for `/readyz`; `Err` says why not
    /// (for the log: it may name the database host).
    // The audit head is one key on sled and one row on PostgreSQL; on the
    // engine this becomes `self.deps.store.audit_head().await`.
    pub async fn store_ready(&self) -> Result<(), String> {
        self.deps
            .store
            .audit_head()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The whole audit log, in order, for export.
    pub fn audit_events(&self) -> Result<Vec<AuditEvent>, StoreError> {
        self.deps.store.audit_events()
    }

    /// Slack messages waiting for delivery.
    pub fn outbox_len(&self) -> usize {
        self.deps.store.outbox_len()
    }

    /// Queues one Slack operation that records no request state (a reply to
    /// a press, a Home tab), then wakes the outbox.
    pub fn queue_slack(&self, order_key: &str, op: SlackOp) -> Result<(), StoreError> {
        let effects = Effects {
            outbox: vec![OutboxItem::new(order_key, op)],
            audit: vec![],
        };
        self.deps.store.enqueue(effects)?;
        self.wake();
        Ok(())
    }

    /// Runs `work` in the background, tracked so shutdown waits for it.
    pub fn spawn_background(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(work);
    }

    /// Opens a modal with `views.open`.
    pub async fn open_view(&self, trigger_id: &str, view: &Value) -> Result<(), SlackError> {
        self.deps
            .slack
            .views_open(trigger_id, view)
            .await
            .map(|_| ())
    }

    /// Replaces an open modal with `views.update`.
    pub async fn update_view(
        &self,
        view_id: &str,
        hash: Option<&str>,
        view: &Value,
    ) -> Result<(), SlackError> {
        self.deps
            .slack
            .views_update(view_id, hash, view)
            .await
            .map(|_| ())
    }

    /// Who would approve `user`'s request for `runbook`, stage by stage,
    /// and the auto-approval rule that would cover its default duration.
    /// Asks Slack (user groups, profile fields) as a real request would.
    pub async fn approval_outlook<'r>(
        &self,
        runbook: &'r Runbook,
        user: &str,
    ) -> ApprovalOutlook<'r> {
        let stages = self.deps.people.resolve_stages(runbook, user).await;
        let auto_approve = self
            .deps
            .people
            .auto_approve_rule(runbook, user, runbook.request.default_duration)
            .await
            .ok()
            .flatten();
        ApprovalOutlook {
            stages,
            auto_approve,
        }
    }
}

#[cfg(test)]
impl Workflow {
    /// A workflow over a fresh store in `dir`, with no runbooks and a Slack
    /// that is never reached, for unit tests of the modules that ask it.
    pub(crate) fn for_tests(dir: &std::path::Path) -> std::sync::Arc<Workflow> {
        use std::sync::Arc;
        use std::time::Duration;
        let store = Arc::new(crate::store::Store::open(dir).expect("test store"));
        let slack = crate::slack::SlackClient::new(
            "http://127.0.0.1:9",
            crate::config::Secret::new("xoxb-test"),
        );
        let people = crate::policy::People::new(slack.clone(), Default::default(), None);
        let timing = crate::retry::Timing {
            expiry_warning: Duration::from_secs(60),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
        };
        Arc::new(Workflow::new(super::Deps {
            store,
            catalog: Arc::new(crate::runbook::Catalog { runbooks: vec![] }),
            slack,
            people,
            providers: crate::grant::Providers::with_builtin(),
            audit_channel: "C0AUDIT".into(),
            runbook_dir: dir.to_path_buf(),
            timing,
        }))
    }
}
