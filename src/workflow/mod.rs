//! The request lifecycle: create, approve, deny, grant, revoke, expire,
//! remind, escalate, extend, release, review.
//!
//! Every change goes through the store's `update` so the new state, the
//! deadline it implies, the Slack messages it causes and its audit events
//! are one durable write; provider runs happen after that write (the
//! `Granting` and `Revoking` states are the recorded intents), so a crash at
//! any point is completed by [`Workflow::recover`] on the next start, or,
//! when several replicas share one database, by another replica once the
//! run's lease (`run_until`) has run out.
//!
//! The workflow holds the store as `Arc<dyn StoreEngine>` and does not know
//! which engine answers: sled in one process or PostgreSQL shared by
//! replicas. Nothing here decides "once" with an in-process lock alone: a
//! change is the store's transaction, and provider runs and new requests are
//! serialised per person and runbook by the store's `lock_provider_run`
//! (an advisory lock on PostgreSQL).
//!
//! This file holds the [`Workflow`] itself, the [`Fx`] collector of a
//! change's effects, and the steps the parts of the lifecycle share: asking
//! a stage's approvers, closing approval DMs, claiming and spawning provider
//! runs, and waking the loops. Each part has its own file: `create`,
//! `decide`, `provision` (grant and revoke runs, recovery), `extend`, `end`
//! (ending early, break-glass reviews), `due` (the timer's deadlines),
//! `attention` (a revoke no retry can fix, and closing it by hand) and
//! `refused` (the trace refused attempts leave), `cancel` (a requester
//! cancels a pending request), `home` (what a Home tab shows, and whose
//! Home a change refreshes) and `security_group` (who sees everyone's access).
//! The words people read come from [`crate::slack::text`].

mod attention;
mod cancel;
mod create;
mod decide;
mod due;
mod end;
mod extend;
mod feedback;
mod leftovers;
mod provision;
mod refused;

pub mod home;
pub mod query;
pub mod report;
pub mod security_group;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::audit::NewAuditEvent;
use crate::grant::Providers;
use crate::outbox::{OutboxItem, SlackOp};
use crate::policy::{People, Refusal};
use crate::request::AccessRequest;
use crate::retry::Timing;
use crate::runbook::{Catalog, Runbook};
use crate::slack::blocks::{self, Msg};
use crate::slack::{text, SlackClient};
use crate::store::{Effects, ProviderRunGuard, StoreEngine, StoreError};

pub use create::{NewRequest, RequestError};
pub use leftovers::{GrantedBefore, LeftoverOutcome};

// What a remembered DM is for (`MessageRef::purpose`), so a later change
// can update the right one.
const APPROVAL: &str = "approval";
const GRANT: &str = "grant";
const REVIEW: &str = "review";
const EXTENSION: &str = "extension";
const WARNING: &str = "warning";
const FEEDBACK: &str = "feedback";

/// What the lifecycle works with, built by `app` at start: the store,
/// the runbooks, Slack, the people directory, the grant providers and the
/// settings the lifecycle needs.
pub struct Deps {
    /// The storage engine (sled or PostgreSQL); the workflow asks it
    /// questions and never learns which one it is.
    pub store: Arc<dyn StoreEngine>,
    pub catalog: Arc<Catalog>,
    pub slack: SlackClient,
    pub people: People,
    pub providers: Providers,
    pub audit_channel: String,
    /// Where relative program paths of `command` runbooks resolve.
    pub runbook_dir: PathBuf,
    pub timing: Timing,
    /// The config's `[identities]`: who a person is in the grant targets.
    pub identities: crate::identity::Identities,
    /// The Slack user group whose members see everyone's elevated access in
    /// the Home tab and may read `/access report` for every runbook
    /// (`ACCESSBOT_SECURITY_GROUP`); see `security_group.rs`.
    pub security_group: Option<String>,
}

/// The lifecycle engine; one per process, shared by the HTTP handlers and
/// the timer loop.
pub struct Workflow {
    deps: Deps,
    /// Wakes the outbox worker when messages are queued.
    outbox_wake: Arc<Notify>,
    /// Wakes the timer loop when a deadline may have moved earlier.
    timer_wake: Arc<Notify>,
    /// Background work, awaited on shutdown.
    tasks: TaskTracker,
    /// Runbooks whose last grant in this process failed; one goes when a
    /// grant through it succeeds. For `/healthz`.
    failing_grants: Mutex<HashSet<String>>,
    /// Refusals counted for `/metrics` and the audit channel's burst notice.
    refusals: refused::Refusals,
}

/// Collects the effects of one state change.
struct Fx<'a> {
    effects: Effects,
    audit_channel: &'a str,
}

impl<'a> Fx<'a> {
    fn new(audit_channel: &'a str) -> Self {
        Fx {
            effects: Effects::default(),
            audit_channel,
        }
    }

    /// An audit event, and its notice in the audit channel.
    fn audit(&mut self, kind: &str, req: &AccessRequest, actor: &str, line: String) {
        self.notice(kind, req, &line);
        self.record(kind, req, actor, line);
    }

    /// An audit event only, with no notice in the channel.
    fn record(&mut self, kind: &str, req: &AccessRequest, actor: &str, line: String) {
        self.effects.audit.push(NewAuditEvent {
            kind: kind.to_string(),
            request_id: req.id.clone(),
            runbook: req.runbook_id.clone(),
            actor: actor.to_string(),
            subject: req.requester.clone(),
            detail: line,
            facts: crate::audit::AuditFacts {
                approvers: req.approvals.iter().map(|a| a.user.clone()).collect(),
                duration_secs: Some(req.duration_secs),
                reason: Some(req.reason.clone()).filter(|r| !r.is_empty()),
                inputs: req
                    .inputs
                    .iter()
                    .map(|i| (i.id.clone(), i.value.clone()))
                    .collect(),
            },
        });
    }

    /// An audit event whose notice in the audit channel is `notice`, a
    /// message of its own (an alert with a button) instead of the usual line.
    fn alert(&mut self, kind: &str, req: &AccessRequest, actor: &str, line: String, notice: Msg) {
        self.post_notice(kind, req, &line, notice);
        self.record(kind, req, actor, line);
    }

    /// A notice in the audit channel.
    fn notice(&mut self, kind: &str, req: &AccessRequest, line: &str) {
        let notice = blocks::audit_notice(kind, req, line);
        self.post_notice(kind, req, line, notice);
    }

    /// Queues a notice for the audit channel, in the channel's own order
    /// (threaded under the request's first notice: see `audit_notice`).
    fn post_notice(&mut self, kind: &str, req: &AccessRequest, line: &str, notice: Msg) {
        let loud = crate::audit_notice::is_loud(kind);
        self.effects.outbox.push(OutboxItem::new(
            crate::audit_notice::order_key(self.audit_channel),
            SlackOp::AuditNotice {
                channel: self.audit_channel.to_string(),
                request_id: req.id.clone(),
                text: notice.text,
                blocks: notice.blocks,
                line: crate::slack::digest::notice_line(kind, loud, req, line, Utc::now()),
                loud,
            },
        ));
    }

    fn dm(&mut self, req: &AccessRequest, user: &str, msg: Msg, purpose: Option<&str>) {
        self.push(
            req,
            SlackOp::Dm {
                user: user.to_string(),
                text: msg.text,
                blocks: msg.blocks,
                purpose: purpose.map(str::to_string),
            },
        );
    }

    /// A plain DM to the requester, not remembered for a later update.
    fn tell_requester(&mut self, req: &AccessRequest, text: &str) {
        self.dm(
            req,
            &req.requester,
            blocks::request_notice(req, text, &[]),
            None,
        );
    }

    fn update_dm(&mut self, req: &AccessRequest, user: &str, purpose: &str, msg: Msg) {
        self.push(
            req,
            SlackOp::UpdateDm {
                user: user.to_string(),
                purpose: purpose.to_string(),
                text: msg.text,
                blocks: msg.blocks,
            },
        );
    }

    /// Replaces the `purpose` DMs of `users` with the outcome, no buttons.
    fn close_dms<'u>(
        &mut self,
        req: &AccessRequest,
        users: impl IntoIterator<Item = &'u String>,
        purpose: &str,
        outcome: &str,
    ) {
        for u in users {
            self.update_dm(req, u, purpose, blocks::approval_closed(req, outcome));
        }
    }

    fn push(&mut self, req: &AccessRequest, op: SlackOp) {
        self.effects.outbox.push(OutboxItem::new(&req.id, op));
    }
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// When to warn the requester that a grant ends: `warning` before the end,
/// or a fifth of the grant when that is shorter; never for grants so short
/// the warning would come less than a second before the end.
fn warn_time(
    expires_at: DateTime<Utc>,
    duration_secs: u64,
    warning: Duration,
) -> Option<DateTime<Utc>> {
    let lead = warning.min(Duration::from_secs(duration_secs / 5));
    (lead >= Duration::from_secs(1)).then(|| expires_at - chrono_dur(lead))
}

impl Workflow {
    pub fn new(deps: Deps) -> Workflow {
        Workflow {
            deps,
            outbox_wake: Arc::new(Notify::new()),
            timer_wake: Arc::new(Notify::new()),
            tasks: TaskTracker::new(),
            refusals: refused::Refusals::default(),
            failing_grants: Mutex::new(HashSet::new()),
        }
    }

    /// Claims up to `limit` requests whose deadline is at or before `now`
    /// for this replica, for the lease: no other replica gets them until
    /// [`Workflow::on_due`] has written each (which releases it) or the
    /// lease runs out (this replica died).
    pub async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let claimed = self
            .deps
            .store
            .claim_due(now, limit, self.deps.timing.lease)
            .await?;
        Ok(claimed.into_iter().map(|w| w.id).collect())
    }

    /// The earliest moment due work may become claimable: the first
    /// deadline, or the first lease to run out, on any replica.
    pub async fn next_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.deps.store.next_deadline().await
    }

    /// Woken when any replica sets a deadline (LISTEN/NOTIFY on PostgreSQL).
    pub fn deadline_changed(&self) -> Arc<Notify> {
        self.deps.store.deadline_changed()
    }

    /// Notified when a deadline may have moved earlier; the timer loop waits on it.
    pub fn timer_wake(&self) -> Arc<Notify> {
        Arc::clone(&self.timer_wake)
    }

    /// Notified when messages are queued; the outbox loop waits on it.
    pub fn outbox_wake(&self) -> Arc<Notify> {
        Arc::clone(&self.outbox_wake)
    }

    /// Stops taking new background work and waits for what runs (grants,
    /// revokes) to finish, at most `grace`; `false` if some did not.
    pub async fn shutdown_tasks(&self, grace: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }

    /// Tells the outbox and the timer loop that something changed.
    pub fn wake(&self) {
        self.wake_outbox();
        self.timer_wake.notify_one();
    }

    fn wake_outbox(&self) {
        self.outbox_wake.notify_one();
    }

    /// Lets `change` decide the new state of request `id` and collect its
    /// effects, commits both in one write and flushes it. Waking the loops
    /// is left to the caller. When `change` refuses, nothing is written; a
    /// change that cannot refuse says so with `Infallible`, and its caller
    /// matches `let Ok(..)`.
    async fn change<T: Send, E: Send>(
        &self,
        id: &str,
        change: impl FnOnce(&mut AccessRequest, &mut Fx) -> Result<T, E> + Send,
    ) -> Result<Result<(T, AccessRequest), E>, StoreError> {
        let audit_channel = self.deps.audit_channel.as_str();
        let mut before = None;
        let was = &mut before;
        let result = self
            .deps
            .store
            .update(id, move |req| {
                *was = Some(req.status);
                let mut fx = Fx::new(audit_channel);
                let before = req.clone();
                let value = change(req, &mut fx)?;
                fx.refresh_homes(Some(&before), req);
                Ok((value, fx.effects))
            })
            .await?;
        if let Ok((_, req)) = &result {
            self.deps.store.flush().await?;
            if let Some(before) = before {
                crate::metrics::request_moved(before, req);
            }
        }
        Ok(result)
    }

    async fn get(&self, id: &str) -> Result<Option<AccessRequest>, Refusal> {
        Ok(self.deps.store.get(id).await?)
    }

    /// The stored request `id`, or the refusal that says there is none.
    async fn stored(&self, id: &str) -> Result<AccessRequest, Refusal> {
        self.get(id)
            .await?
            .ok_or_else(|| Refusal::NotFound(id.to_string()))
    }

    /// What `runbook_id`'s runbook says, read by `what`; the default when
    /// the runbook has left the catalog.
    fn runbook_says<T: Default>(&self, runbook_id: &str, what: impl FnOnce(&Runbook) -> T) -> T {
        self.deps
            .catalog
            .get(runbook_id)
            .map(what)
            .unwrap_or_default()
    }

    /// Holds the lock that keeps one provider run at a time for `req`'s
    /// person and runbook, across every replica; for the person and the
    /// target when the runbook's grant names one (`GrantSpec::target`), so
    /// runs of two runbooks onto one access take turns too.
    async fn lock_subject(&self, req: &AccessRequest) -> Result<ProviderRunGuard, StoreError> {
        let target = self
            .deps
            .catalog
            .get(&req.runbook_id)
            .and_then(|r| r.grant.target().map(|t| format!("\u{0}target\u{0}{t}")));
        self.deps
            .store
            .lock_provider_run(&req.requester, target.as_deref().unwrap_or(&req.runbook_id))
            .await
    }

    /// Holds the lock under which a new request (or an extension) of
    /// `person` for `runbook` is checked against their open ones, across
    /// every replica. Its key is apart from the provider-run lock's, so a
    /// request being made never waits for a grant or revoke.
    async fn lock_limits(
        &self,
        person: &str,
        runbook: &str,
    ) -> Result<ProviderRunGuard, StoreError> {
        self.deps
            .store
            .lock_provider_run(person, &format!("\u{0}limits\u{0}{runbook}"))
            .await
    }

    /// When a provider run that starts now must have ended: past it, another
    /// replica takes the run over (this one is presumed dead).
    fn run_lease(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono_dur(self.deps.timing.lease)
    }

    /// How much one press of the Extend button adds to a grant of
    /// `runbook_id`: its default duration (zero if it left the catalog).
    fn extend_step(&self, runbook_id: &str) -> Duration {
        self.runbook_says(runbook_id, |r| r.request.default_duration)
    }

    /// DMs the approvers of `stage` with Approve / Deny.
    fn ask_stage(fx: &mut Fx, req: &AccessRequest, stage: usize, note: &str) {
        let line = text::stage_note(req, stage, note);
        for u in &req.stages[stage].approvers {
            if req.has_approved(u) {
                continue;
            }
            fx.dm(req, u, blocks::approval_request(req, &line), Some(APPROVAL));
        }
    }

    /// Everyone who has been sent an approval DM for this request.
    fn asked_approvers(req: &AccessRequest) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in req.stages.iter().take(req.current_stage + 1) {
            for u in &s.approvers {
                if !out.contains(u) {
                    out.push(u.clone());
                }
            }
        }
        out
    }

    /// Replaces every approval DM of the request with the outcome.
    fn close_approval_dms(fx: &mut Fx, req: &AccessRequest, outcome: &str) {
        fx.close_dms(req, &Self::asked_approvers(req), APPROVAL, outcome);
    }

    /// Runs the grant of `id` in a tracked task. Two runs of one request
    /// never overlap: each holds the person-and-runbook lock and re-reads the
    /// request under it (`run_grant`), so the later one finds it done.
    fn spawn_grant(self: &Arc<Self>, id: &str) {
        let this = Arc::clone(self);
        let id = id.to_string();
        self.tasks.spawn(async move {
            let cleanup = match this.run_grant(&id).await {
                Ok(cleanup) => cleanup,
                Err(e) => {
                    tracing::error!(request_id = %id, error = %e, "grant bookkeeping failed; trying again later");
                    this.again_later(id, Self::spawn_grant);
                    return;
                }
            };
            if cleanup {
                // Undo whatever part of the grant happened before it failed.
                this.spawn_revoke(&id);
            }
        });
    }

    /// Runs the revoke of `id` in a tracked task (see [`Workflow::spawn_grant`]).
    fn spawn_revoke(self: &Arc<Self>, id: &str) {
        let this = Arc::clone(self);
        let id = id.to_string();
        self.tasks.spawn(async move {
            if let Err(e) = this.run_revoke(&id).await {
                tracing::error!(request_id = %id, error = %e, "revoke bookkeeping failed; trying again later");
                this.again_later(id, Self::spawn_revoke);
            }
        });
    }

    /// When the store failed while recording a grant or revoke, the intent
    /// is still in the store (a restart, or another replica once the run's
    /// lease runs out, would resume it); this resumes it in the
    /// running process too, after the longest retry interval. The wait is
    /// not tracked, so it never holds up shutdown.
    fn again_later(self: &Arc<Self>, id: String, spawn: fn(&Arc<Self>, &str)) {
        let this = Arc::clone(self);
        let wait = self.deps.timing.retry_max;
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            spawn(&this, &id);
        });
    }
}
