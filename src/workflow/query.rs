//! The narrow questions and small chores the transports and operator
//! endpoints bring to the workflow, so that none of them reaches into the
//! store, the Slack client, the people resolver or the task tracker: the
//! replay guard's remembered answers, a person's open requests, the audit
//! log for export, the outbox length, queueing a reply, what a request would
//! meet (for the modal preview), and the modal's Web
//! API calls in the background.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Workflow;
use crate::audit::AuditEvent;
use crate::outbox::{OutboxItem, SlackOp};
use crate::policy::ResolveError;
use crate::request::{AccessRequest, StageState, Status};
use crate::runbook::{AutoApproveRule, Runbook};
use crate::slack::SlackError;
use crate::store::{Effects, StoreError};

/// The statuses of requests not finished yet, each answered from an index.
const UNFINISHED: [Status; 6] = [
    Status::Pending,
    Status::Granting,
    Status::Scheduled,
    Status::Active,
    Status::Revoking,
    Status::NeedsAttention,
];

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
    /// The answer remembered for a delivery `key`, if it was seen before
    /// (on any replica: the replay guard is in the store).
    pub async fn delivery_answer(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.deps.store.seen_get(key).await
    }

    /// Remembers that the delivery `key` was answered with `answer`; the
    /// timestamp lets the pruner forget it later. Not flushed: it records no
    /// request state.
    pub async fn remember_delivery(&self, key: &[u8], answer: &[u8]) -> Result<(), StoreError> {
        self.deps.store.seen_put(key, Utc::now(), answer).await
    }

    /// Forgets replay-guard entries older than `before`; returns how many.
    pub async fn forget_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.deps.store.seen_prune(before).await
    }

    /// `user`'s requests that are not finished yet, oldest first, from the
    /// index of a person's open requests.
    pub fn runbook(&self, id: &str) -> Option<&Runbook> {
        self.deps.catalog.get(id)
    }

    pub async fn open_requests_of(&self, user: &str) -> Result<Vec<AccessRequest>, StoreError> {
        self.deps.store.open_requests_of(user).await
    }

    /// How many requests there are in each unfinished status, by status
    /// label, each read from the index by status; empty when the store
    /// cannot be read. Finished requests are not counted: their number
    /// grows with every request ever made, and no index keeps it.
    pub async fn request_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for status in UNFINISHED {
            if let Ok(found) = self.deps.store.requests_with_status(status).await {
                counts.insert(status.label(), found.len() as u64);
            }
        }
        counts
    }

    /// Failing grants and revokes, and requests that need a person. `None`
    /// when the store cannot be read. Reads only the requests being revoked
    /// and those that need attention.
    pub async fn provisioning_health(&self) -> Option<ProvisioningHealth> {
        let revoking = self
            .deps
            .store
            .requests_with_status(Status::Revoking)
            .await
            .ok()?;
        let revokes_failing = revoking.iter().filter(|r| r.attempts > 0).count();
        let grants_failing = self
            .failing_grants
            .lock()
            .expect("failing grants lock")
            .len();
        let needs_attention = self
            .deps
            .store
            .requests_with_status(Status::NeedsAttention)
            .await
            .ok()?
            .len();
        Some(ProvisioningHealth {
            revokes_failing,
            grants_failing,
            needs_attention,
        })
    }

    /// Whether the store answers a read, for `/readyz`; `Err` says why not
    /// (for the log: it may name the database host). The audit head is one
    /// key on sled and one row on PostgreSQL.
    pub async fn store_ready(&self) -> Result<(), String> {
        self.deps
            .store
            .audit_head()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The audit log from `seq > after`, at most `limit` events: the export
    /// pages through it so its memory stays constant.
    pub async fn audit_page(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.deps.store.audit_range(after, limit).await
    }

    /// Checks the whole audit chain a page at a time: `Ok(count)` or
    /// `Err(seq)` of the first event that breaks it.
    pub async fn verify_audit(&self) -> Result<Result<u64, u64>, StoreError> {
        self.deps.store.verify_audit().await
    }

    /// Slack messages waiting for delivery by destination (a channel ID,
    /// `direct_messages`, `app_home`); empty when the store cannot be read.
    pub async fn outbox_backlog(&self) -> Vec<(String, u64)> {
        self.deps.store.outbox_backlog().await.unwrap_or_default()
    }

    /// Slack messages waiting for delivery; 0 when the store cannot be read.
    pub async fn outbox_len(&self) -> u64 {
        self.deps.store.outbox_len().await.unwrap_or(0)
    }

    /// Queues one Slack operation that records no request state (a reply to
    /// a press, a Home tab), then wakes the outbox.
    pub async fn queue_slack(&self, order_key: &str, op: SlackOp) -> Result<(), StoreError> {
        let effects = Effects {
            outbox: vec![OutboxItem::new(order_key, op)],
            audit: vec![],
        };
        self.deps.store.enqueue(effects).await?;
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
        let store: Arc<dyn crate::store::StoreEngine> = Arc::new(crate::store::SledEngine::new(
            Arc::new(crate::store::Store::open(dir).expect("test store")),
        ));
        let slack = crate::slack::SlackClient::new(
            "http://127.0.0.1:9",
            crate::config::Secret::new("xoxb-test"),
        );
        let people = crate::policy::People::new(slack.clone(), Default::default(), None);
        let timing = crate::retry::Timing {
            expiry_warning: Duration::from_secs(60),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            lease: Duration::from_secs(60),
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
            identities: Default::default(),
            security_group: None,
        }))
    }
}
