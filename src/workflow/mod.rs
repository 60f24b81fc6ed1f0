//! The request lifecycle: create, approve, deny, grant, revoke, expire,
//! remind, escalate, extend, release.
//!
//! Every change goes through [`Store::update`] so the new state, the
//! deadline it implies, the Slack messages it causes and its audit events
//! are one durable write; provider runs happen after that write (the
//! `Granting` and `Revoking` states are the recorded intents), so a crash at
//! any point is completed by [`Workflow::recover`] on the next start.

pub mod query;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::audit::NewAuditEvent;
use crate::crashpoint;
use crate::duration::{format_duration, DurationError};
use crate::grant::{Action, GrantContext, Providers};
use crate::outbox::{OutboxItem, SlackOp};
use crate::policy::{self, ApprovalOutcome, People, Refusal, ResolveError};
use crate::request::{new_request_id, AccessRequest, Approval, ExtensionRequest, Status};
use crate::retry::{backoff, Timing};
use crate::runbook::{Catalog, Runbook};
use crate::slack::blocks::{self, Msg};
use crate::slack::SlackClient;
use crate::store::{Effects, Store, StoreError};

/// Why a new request (or extension) was refused; each message tells the
/// requester what to change. Nothing is stored when one is returned.
/// The most time a new request may spend asking Slack who is who.
const LOOKUPS_BUDGET: Duration = Duration::from_millis(2200);

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("there is no runbook `{0}`; `/access list` shows what you can request")]
    UnknownRunbook(String),
    #[error("you are not allowed to request `{id}`; ask its owner <@{owner}> if you need it")]
    NotAllowed { id: String, owner: String },
    #[error("duration: {0}")]
    Duration(#[from] DurationError),
    #[error("{asked} is longer than the maximum of {max} for `{id}`; ask for {max} or less")]
    OverMax {
        id: String,
        asked: String,
        max: String,
    },
    #[error("`{0}` needs a reason: say why you need the access, e.g. `/access request {0} 1h month-end refunds`")]
    ReasonRequired(String),
    #[error("the reason is too long ({0} characters); keep it under 1000")]
    ReasonTooLong(usize),
    #[error("{0}")]
    Resolve(#[from] ResolveError),
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("accessbot could not save the request, so nothing was requested; try again (the operator sees the cause in the logs)")]
    Store(#[from] StoreError),
}

impl RequestError {
    /// The modal field the error belongs next to.
    pub fn field(&self) -> &'static str {
        match self {
            RequestError::Duration(_) | RequestError::OverMax { .. } => blocks::modal::DURATION,
            RequestError::ReasonRequired(_) | RequestError::ReasonTooLong(_) => {
                blocks::modal::REASON
            }
            _ => blocks::modal::RUNBOOK,
        }
    }
}

/// What somebody asked for, before validation.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub user: String,
    pub runbook: String,
    pub duration: Option<Duration>,
    pub reason: String,
}

/// The lifecycle engine; one per process, shared by the HTTP handlers and
/// the timer loop.
pub struct Workflow {
    pub store: Arc<Store>,
    pub catalog: Arc<Catalog>,
    pub slack: SlackClient,
    pub people: People,
    pub providers: Providers,
    pub audit_channel: String,
    pub runbook_dir: PathBuf,
    pub timing: Timing,
    /// Wakes the outbox worker when messages are queued.
    pub outbox_wake: Arc<Notify>,
    /// Wakes the timer loop when a deadline may have moved earlier.
    pub timer_wake: Arc<Notify>,
    /// Background work, awaited on shutdown.
    pub tasks: TaskTracker,
    /// Requests whose grant or revoke is running in this process.
    running: Mutex<HashSet<String>>,
    /// One provider run at a time per person and runbook, so a revoke and an
    /// overlapping request's grant for the same access never interleave.
    subjects: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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
        let notice = blocks::audit_notice(kind, req, &line);
        self.effects.audit.push(NewAuditEvent {
            kind: kind.to_string(),
            request_id: req.id.clone(),
            runbook: req.runbook_id.clone(),
            actor: actor.to_string(),
            subject: req.requester.clone(),
            detail: line,
        });
        self.push(
            req,
            SlackOp::Post {
                channel: self.audit_channel.to_string(),
                text: notice.text,
                blocks: notice.blocks,
            },
        );
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

    fn push(&mut self, req: &AccessRequest, op: SlackOp) {
        self.effects.outbox.push(OutboxItem::new(&req.id, op));
    }

    fn done<T>(self, value: T) -> Result<(T, Effects), Refusal> {
        Ok((value, self.effects))
    }
}

const APPROVAL: &str = "approval";
const GRANT: &str = "grant";
const REVIEW: &str = "review";

fn who(user: &str) -> String {
    format!("<@{user}>")
}

fn dur(secs: u64) -> String {
    format_duration(Duration::from_secs(secs))
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Workflow {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        catalog: Arc<Catalog>,
        slack: SlackClient,
        people: People,
        providers: Providers,
        audit_channel: String,
        runbook_dir: PathBuf,
        timing: Timing,
    ) -> Workflow {
        Workflow {
            store,
            catalog,
            slack,
            people,
            providers,
            audit_channel,
            runbook_dir,
            timing,
            outbox_wake: Arc::new(Notify::new()),
            timer_wake: Arc::new(Notify::new()),
            tasks: TaskTracker::new(),
            running: Mutex::new(HashSet::new()),
            subjects: Mutex::new(HashMap::new()),
        }
    }

    /// Runbooks `user` may request, in catalog order.
    pub async fn requestable(&self, user: &str) -> Vec<&Runbook> {
        let mut out = Vec::new();
        for r in &self.catalog.runbooks {
            if self.people.may_request(r, user).await.unwrap_or(false) {
                out.push(r);
            }
        }
        out
    }

    /// Checks what can be checked without Slack: runbook, duration, reason.
    pub fn validate(&self, n: &NewRequest) -> Result<(&Runbook, Duration), RequestError> {
        let rb = self
            .catalog
            .get(&n.runbook)
            .ok_or_else(|| RequestError::UnknownRunbook(blocks::user_text(&n.runbook, 64)))?;
        let duration = n.duration.unwrap_or(rb.request.default_duration);
        if duration > rb.request.max_duration {
            return Err(RequestError::OverMax {
                id: rb.id.clone(),
                asked: format_duration(duration),
                max: format_duration(rb.request.max_duration),
            });
        }
        let reason = n.reason.trim();
        if rb.request.require_reason && reason.is_empty() {
            return Err(RequestError::ReasonRequired(rb.id.clone()));
        }
        let len = reason.chars().count();
        if len > 1000 {
            return Err(RequestError::ReasonTooLong(len));
        }
        Ok((rb, duration))
    }

    /// Validates, stores and announces a new request; returns it once it is
    /// durable. Auto-approved and break-glass requests go straight to granting.
    #[tracing::instrument(skip_all, fields(user = %n.user, runbook = %n.runbook))]
    pub async fn create_request(
        self: &Arc<Self>,
        n: NewRequest,
    ) -> Result<AccessRequest, RequestError> {
        let (rb, duration) = self.validate(&n)?;
        // Each Slack lookup is bounded on its own; this bounds them all, so
        // the answer still reaches Slack within its 3 seconds.
        let resolved = tokio::time::timeout(LOOKUPS_BUDGET, async {
            if !self.people.may_request(rb, &n.user).await? {
                return Err(RequestError::NotAllowed {
                    id: rb.id.clone(),
                    owner: rb.owner.clone(),
                });
            }
            let stages = self.people.resolve_stages(rb, &n.user).await?;
            let auto = if rb.break_glass {
                None
            } else {
                self.people.auto_approve_rule(rb, &n.user, duration).await?
            };
            Ok((stages, auto))
        })
        .await
        .map_err(|_| ResolveError::SlackSlow {
            what: "who may approve this request".to_string(),
        })?;
        let (stages, auto) = resolved?;
        let now = Utc::now();
        let policy = &rb.approval;
        let mut req = AccessRequest {
            id: new_request_id(),
            runbook_id: rb.id.clone(),
            runbook_title: rb.title.clone(),
            system: rb.system.clone(),
            requester: n.user.clone(),
            duration_secs: duration.as_secs(),
            reason: n.reason.trim().to_string(),
            created_at: now,
            status: Status::Pending,
            stages,
            current_stage: 0,
            approvals: vec![],
            decided_by: None,
            approval_deadline: now + chrono_dur(policy.approval_timeout),
            remind_at: policy.remind_after.map(|d| now + chrono_dur(d)),
            escalate_at: policy.escalate_after.map(|d| now + chrono_dur(d)),
            granted_at: None,
            expires_at: None,
            warn_at: None,
            retry_at: None,
            attempts: 0,
            ended_at: None,
            end_reason: None,
            messages: vec![],
            break_glass: rb.break_glass,
            review: None,
            extension: None,
            total_secs: duration.as_secs(),
            grant_failed: false,
            auto_rule: None,
        };
        let mut fx = Fx::new(&self.audit_channel);
        let reason = if req.reason.is_empty() {
            String::new()
        } else {
            format!(": “{}”", blocks::user_text(&req.reason, 500))
        };
        fx.audit(
            "requested",
            &req,
            &req.requester,
            format!(
                "{} requested {} for {}{reason}",
                who(&req.requester),
                blocks::user_text(&req.runbook_title, 200),
                dur(req.duration_secs)
            ),
        );
        if rb.break_glass {
            req.status = Status::Granting;
            req.decided_by = Some("break-glass".into());
            fx.audit(
                "break_glass",
                &req,
                &req.requester,
                format!(
                    "<!here> BREAK-GLASS: {} took {} at once; approvers are asked to review it",
                    who(&req.requester),
                    blocks::user_text(&req.runbook_title, 200)
                ),
            );
            let mut reviewers: Vec<String> = req.all_approvers().cloned().collect();
            if !reviewers.contains(&rb.owner) {
                reviewers.push(rb.owner.clone());
            }
            for u in reviewers.iter().filter(|u| **u != req.requester) {
                fx.dm(&req, u, blocks::break_glass_review(&req), Some(REVIEW));
            }
        } else if let Some(rule) = auto {
            req.status = Status::Granting;
            req.auto_rule = Some(rule.name.clone());
            req.decided_by = Some(format!("rule {}", rule.name));
            fx.audit(
                "auto_approved",
                &req,
                &format!("rule:{}", rule.name),
                format!(
                    "auto-approved by rule `{}` (up to {})",
                    blocks::user_text(&rule.name, 100),
                    format_duration(rule.max_duration)
                ),
            );
        } else {
            self.ask_stage(&mut fx, &req, 0, "");
        }
        self.store.insert(&req, fx.effects)?;
        self.store.flush().await?;
        self.wake();
        if req.status == Status::Granting {
            self.spawn_grant(&req.id);
        }
        Ok(req)
    }

    /// DMs the approvers of `stage` with Approve / Deny.
    fn ask_stage(&self, fx: &mut Fx, req: &AccessRequest, stage: usize, note: &str) {
        let s = &req.stages[stage];
        let mut line = if req.stages.len() > 1 {
            format!(
                "Stage {} of {} ({}): {} approval(s) needed.",
                stage + 1,
                req.stages.len(),
                blocks::user_text(&s.name, 100),
                s.required
            )
        } else if s.required > 1 {
            format!("{} approvals needed.", s.required)
        } else {
            String::new()
        };
        if !note.is_empty() {
            line = format!("{note} {line}");
        }
        for u in &s.approvers {
            if req.has_approved(u) {
                continue;
            }
            fx.dm(
                req,
                u,
                blocks::approval_request(req, line.trim()),
                Some(APPROVAL),
            );
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
        for u in Self::asked_approvers(req) {
            fx.update_dm(req, &u, APPROVAL, blocks::approval_closed(req, outcome));
        }
    }

    /// An approver pressed Approve or Deny (or typed it). Checked against
    /// the stored request; returns the words to show the presser.
    #[tracing::instrument(skip(self))]
    pub async fn decide(
        self: &Arc<Self>,
        user: &str,
        request_id: &str,
        approve: bool,
    ) -> Result<String, Refusal> {
        let Some(current) = self.get(request_id)? else {
            return Err(Refusal::NotFound(request_id.to_string()));
        };
        let allow_self = self
            .catalog
            .get(&current.runbook_id)
            .map(|r| r.approval.allow_self_approval)
            .unwrap_or(false);
        let now = Utc::now();
        let audit_channel = self.audit_channel.clone();
        let result = self.store.update(request_id, |req| {
            let mut fx = Fx::new(&audit_channel);
            if !approve {
                policy::apply_denial(req, user)?;
                req.ended_at = Some(now);
                let outcome = format!(":no_entry: Denied by {}", who(user));
                fx.audit("denied", req, user, format!("denied by {}", who(user)));
                Self::close_approval_dms(&mut fx, req, &outcome);
                fx.dm(
                    req,
                    &req.requester,
                    blocks::notice(
                        &format!(
                            ":no_entry: Your request `{}` for *{}* was denied by {}.",
                            req.id,
                            blocks::user_text(&req.runbook_title, 200),
                            who(user)
                        ),
                        &[],
                        &req.id,
                    ),
                    None,
                );
                return fx.done("Denied. The requester has been told.".to_string());
            }
            let outcome = policy::apply_approval(req, user, allow_self, now)?;
            match outcome {
                ApprovalOutcome::Counted { remaining } => {
                    fx.audit(
                        "approved",
                        req,
                        user,
                        format!("approved by {}; {remaining} more needed", who(user)),
                    );
                    fx.update_dm(
                        req,
                        user,
                        APPROVAL,
                        blocks::approval_closed(
                            req,
                            &format!(":ballot_box_with_check: You approved. Waiting for {remaining} more approval(s)."),
                        ),
                    );
                    fx.done(format!("Approved; {remaining} more approval(s) needed."))
                }
                ApprovalOutcome::StageComplete { next_stage } => {
                    let done_stage = &req.stages[next_stage - 1];
                    let outcome = format!(
                        ":ballot_box_with_check: Stage “{}” approved by {}; now with “{}”.",
                        blocks::user_text(&done_stage.name, 100),
                        who(user),
                        blocks::user_text(&req.stages[next_stage].name, 100)
                    );
                    fx.audit(
                        "stage_approved",
                        req,
                        user,
                        format!(
                            "stage “{}” approved by {}",
                            blocks::user_text(&done_stage.name, 100),
                            who(user)
                        ),
                    );
                    for u in done_stage.approvers.clone() {
                        fx.update_dm(req, &u, APPROVAL, blocks::approval_closed(req, &outcome));
                    }
                    // The new stage's approvers get their own time before a
                    // reminder and before escalation.
                    if let Some(rb) = self.catalog.get(&req.runbook_id) {
                        let now = Utc::now();
                        req.remind_at = rb.approval.remind_after.map(|d| now + chrono_dur(d));
                        req.escalate_at = rb.approval.escalate_after.map(|d| now + chrono_dur(d));
                    }
                    let note = format!("{} approved the previous stage.", who(user));
                    self.ask_stage(&mut fx, req, next_stage, &note);
                    fx.done("Approved; the request moves to the next stage.".to_string())
                }
                ApprovalOutcome::Approved => {
                    let by: Vec<String> = req.approvals.iter().map(|a| who(&a.user)).collect();
                    let outcome = format!(":white_check_mark: Approved by {}", by.join(", "));
                    fx.audit("approved", req, user, format!("approved by {}", by.join(", ")));
                    Self::close_approval_dms(&mut fx, req, &outcome);
                    fx.dm(
                        req,
                        &req.requester,
                        blocks::notice(
                            &format!(
                                ":ballot_box_with_check: Your request `{}` for *{}* was approved by {}. Granting access now…",
                                req.id,
                                blocks::user_text(&req.runbook_title, 200),
                                by.join(", ")
                            ),
                            &[],
                            &req.id,
                        ),
                        None,
                    );
                    fx.done("Approved. Access is being granted.".to_string())
                }
            }
        })?;
        let (answer, req) = result?;
        self.store.flush().await?;
        crashpoint::hit("after_approve");
        self.wake();
        if req.status == Status::Granting {
            self.spawn_grant(&req.id);
        }
        Ok(answer)
    }

    fn get(&self, id: &str) -> Result<Option<AccessRequest>, Refusal> {
        Ok(self.store.get(id)?)
    }

    /// Claims the right to run a provider for `id` in this process.
    fn claim(&self, id: &str) -> bool {
        self.running
            .lock()
            .expect("running lock")
            .insert(id.to_string())
    }

    fn unclaim(&self, id: &str) {
        self.running.lock().expect("running lock").remove(id);
    }

    pub fn spawn_grant(self: &Arc<Self>, id: &str) {
        let this = Arc::clone(self);
        let id = id.to_string();
        self.tasks.spawn(async move {
            if !this.claim(&id) {
                return;
            }
            let cleanup = match this.run_grant(&id).await {
                Ok(cleanup) => cleanup,
                Err(e) => {
                    tracing::error!(request_id = %id, error = %e, "grant bookkeeping failed; trying again later");
                    this.unclaim(&id);
                    this.again_later(id, Self::spawn_grant);
                    return;
                }
            };
            this.unclaim(&id);
            if cleanup {
                // Undo whatever part of the grant happened before it failed.
                this.spawn_revoke(&id);
            }
        });
    }

    pub fn spawn_revoke(self: &Arc<Self>, id: &str) {
        let this = Arc::clone(self);
        let id = id.to_string();
        self.tasks.spawn(async move {
            if this.claim(&id) {
                let result = this.run_revoke(&id).await;
                this.unclaim(&id);
                if let Err(e) = result {
                    tracing::error!(request_id = %id, error = %e, "revoke bookkeeping failed; trying again later");
                    this.again_later(id, Self::spawn_revoke);
                }
            }
        });
    }

    /// When the store failed while recording a grant or revoke, the intent
    /// is still in sled (a restart would resume it); this resumes it in the
    /// running process too, after the longest retry interval. The wait is
    /// not tracked, so it never holds up shutdown.
    fn again_later(self: &Arc<Self>, id: String, spawn: fn(&Arc<Self>, &str)) {
        let this = Arc::clone(self);
        let wait = self.timing.retry_max;
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            spawn(&this, &id);
        });
    }

    /// Holds the provider lock of `req`'s person and runbook.
    async fn lock_subject(&self, req: &AccessRequest) -> tokio::sync::OwnedMutexGuard<()> {
        let key = format!("{}\u{0}{}", req.requester, req.runbook_id);
        let lock = {
            let mut subjects = self.subjects.lock().expect("subjects lock");
            subjects.retain(|_, l| Arc::strong_count(l) > 1);
            Arc::clone(subjects.entry(key).or_default())
        };
        lock.lock_owned().await
    }

    /// Another request of the same person for the same runbook that holds,
    /// or is being given, the same access: revoking `req` in the target
    /// system would take that access away too.
    fn covering_request(&self, req: &AccessRequest) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .all_requests()?
            .into_iter()
            .find(|o| {
                o.id != req.id
                    && o.requester == req.requester
                    && o.runbook_id == req.runbook_id
                    && matches!(o.status, Status::Granting | Status::Active)
            })
            .map(|o| o.id))
    }

    async fn context(&self, req: &AccessRequest, expires_at: DateTime<Utc>) -> GrantContext {
        let email = match self.slack.user_info(&req.requester).await {
            Ok(u) => u.email,
            Err(e) => {
                tracing::warn!(request_id = %req.id, error = %e, "users.info failed; running the provider without an email");
                None
            }
        };
        GrantContext {
            request_id: req.id.clone(),
            runbook_id: req.runbook_id.clone(),
            user_id: req.requester.clone(),
            user_email: email,
            expires_at,
            reason: req.reason.clone(),
            runbook_dir: self.runbook_dir.clone(),
        }
    }

    /// Runs the grant of a `Granting` request and records the outcome. A
    /// failed grant becomes a clean-up revoke, so nothing stays half-granted.
    #[tracing::instrument(skip(self))]
    /// Returns whether a clean-up revoke must follow.
    async fn run_grant(self: &Arc<Self>, id: &str) -> Result<bool, StoreError> {
        let Some(req) = self.store.get(id)? else {
            return Ok(false);
        };
        if req.status != Status::Granting {
            return Ok(false);
        }
        let _subject = self.lock_subject(&req).await;
        let started = Utc::now();
        let expires_at = started + chrono::Duration::seconds(req.duration_secs as i64);
        crashpoint::hit("before_grant");
        let result = match self.catalog.get(&req.runbook_id) {
            Some(rb) => {
                let ctx = self.context(&req, expires_at).await;
                let r = self
                    .providers
                    .run(&rb.grant, Action::Grant, &ctx)
                    .await
                    .map_err(|e| e.to_string());
                crashpoint::hit("after_grant");
                r
            }
            None => Err(format!(
                "runbook `{}` is no longer in the catalog",
                req.runbook_id
            )),
        };
        let instructions = self
            .catalog
            .get(&req.runbook_id)
            .map(|r| r.instructions.clone())
            .unwrap_or_default();
        let warning = self.timing.expiry_warning;
        let audit_channel = self.audit_channel.clone();
        let ok = result.is_ok();
        let (_, req) = self
            .store
            .update(id, |req| {
                let mut fx = Fx::new(&audit_channel);
                if req.status != Status::Granting {
                    return fx.done(());
                }
                match &result {
                    Ok(()) => {
                        let now = Utc::now();
                        req.status = Status::Active;
                        req.granted_at = Some(now);
                        req.expires_at = Some(expires_at);
                        req.warn_at = warn_time(expires_at, req.duration_secs, warning);
                        fx.audit(
                            "granted",
                            req,
                            "accessbot",
                            format!(
                                "granted to {} until {}",
                                who(&req.requester),
                                expires_at.format("%Y-%m-%d %H:%M:%S UTC")
                            ),
                        );
                        fx.dm(req, &req.requester, blocks::granted(req, &instructions), Some(GRANT));
                    }
                    Err(e) => {
                        req.status = Status::Revoking;
                        req.grant_failed = true;
                        req.end_reason = Some(format!("grant failed: {e}"));
                        req.retry_at = None;
                        fx.audit("failed", req, "accessbot", format!("grant failed: {}", blocks::user_text(e, 600)));
                        fx.dm(
                            req,
                            &req.requester,
                            blocks::notice(
                                &format!(
                                    ":x: accessbot could not grant *{}* (request `{}`): the system refused. Nothing has been granted. The audit channel has the details; try again later or ask <#{}> for help.",
                                    blocks::user_text(&req.runbook_title, 200),
                                    req.id,
                                    audit_channel
                                ),
                                &[],
                                &req.id,
                            ),
                            None,
                        );
                    }
                }
                fx.done(())
            })?
            .unwrap_or_else(|never: Refusal| panic!("grant update cannot refuse: {never}"));
        self.store.flush().await?;
        self.wake();
        Ok(!ok && req.status == Status::Revoking)
    }

    /// Runs the revoke of a `Revoking` request; on failure schedules a retry
    /// with backoff and says so in the audit channel, every time.
    #[tracing::instrument(skip(self))]
    async fn run_revoke(self: &Arc<Self>, id: &str) -> Result<(), StoreError> {
        let Some(req) = self.store.get(id)? else {
            return Ok(());
        };
        if req.status != Status::Revoking {
            return Ok(());
        }
        let _subject = self.lock_subject(&req).await;
        let expires_at = req.expires_at.unwrap_or_else(Utc::now);
        crashpoint::hit("before_revoke");
        let covered_by = self.covering_request(&req)?;
        let result = match self.catalog.get(&req.runbook_id) {
            Some(_) if covered_by.is_some() => {
                tracing::info!(request_id = %req.id, other = ?covered_by, "not revoking in the target system: another request holds the same access");
                Ok(())
            }
            Some(rb) => {
                let ctx = self.context(&req, expires_at).await;
                let r = self
                    .providers
                    .run(&rb.grant, Action::Revoke, &ctx)
                    .await
                    .map_err(|e| e.to_string());
                crashpoint::hit("after_revoke");
                r
            }
            None => Err(format!(
                "runbook `{}` is no longer in the catalog; restore its file so the access can be revoked",
                req.runbook_id
            )),
        };
        let timing = self.timing.clone();
        let audit_channel = self.audit_channel.clone();
        self.store
            .update(id, |req| {
                let mut fx = Fx::new(&audit_channel);
                if req.status != Status::Revoking {
                    return fx.done(());
                }
                let now = Utc::now();
                match &result {
                    Ok(()) => {
                        req.ended_at = Some(now);
                        req.retry_at = None;
                        let mut why = req.end_reason.clone().unwrap_or_else(|| "revoked".into());
                        if let Some(other) = &covered_by {
                            why =
                                format!("{why}; the access itself continues under request {other}");
                        }
                        if let Some(ext) = req.extension.take() {
                            let outcome =
                                ":hourglass: The access ended before the extension was decided.";
                            for a in &ext.approvers {
                                fx.update_dm(
                                    req,
                                    a,
                                    "extension",
                                    blocks::approval_closed(req, outcome),
                                );
                            }
                        }
                        if req.grant_failed {
                            req.status = Status::Failed;
                            fx.audit(
                                "revoked",
                                req,
                                "accessbot",
                                "clean-up after the failed grant done; nothing is granted".into(),
                            );
                        } else {
                            req.status = Status::Revoked;
                            fx.audit(
                                "revoked",
                                req,
                                "accessbot",
                                format!("access of {} revoked ({why})", who(&req.requester)),
                            );
                            let text = format!(
                                ":lock: Your access to *{}* (request `{}`) has ended ({why}).",
                                blocks::user_text(&req.runbook_title, 200),
                                req.id
                            );
                            fx.update_dm(
                                req,
                                &req.requester,
                                GRANT,
                                blocks::notice(&text, &[], &req.id),
                            );
                            fx.dm(
                                req,
                                &req.requester,
                                blocks::notice(&text, &[], &req.id),
                                None,
                            );
                        }
                    }
                    Err(e) => {
                        req.attempts += 1;
                        let wait = backoff(&timing, req.attempts);
                        req.retry_at = Some(now + chrono_dur(wait));
                        fx.audit(
                            "revoke_failed",
                            req,
                            "accessbot",
                            format!(
                                "revoke attempt {} failed: {}; retrying in {}",
                                req.attempts,
                                blocks::user_text(e, 600),
                                format_duration(wait)
                            ),
                        );
                    }
                }
                fx.done(())
            })?
            .unwrap_or_else(|never: Refusal| panic!("revoke update cannot refuse: {never}"));
        self.store.flush().await?;
        self.wake();
        Ok(())
    }

    /// Ends an active grant now (`/access revoke`, the Release button), or
    /// withdraws one's own pending request.
    #[tracing::instrument(skip(self))]
    pub async fn revoke_now(
        self: &Arc<Self>,
        user: &str,
        request_id: &str,
    ) -> Result<String, Refusal> {
        let Some(current) = self.get(request_id)? else {
            return Err(Refusal::NotFound(request_id.to_string()));
        };
        let owner = self
            .catalog
            .get(&current.runbook_id)
            .map(|r| r.owner.clone())
            .unwrap_or_default();
        let audit_channel = self.audit_channel.clone();
        let (answer, req) = self.store.update(request_id, |req| {
            let mut fx = Fx::new(&audit_channel);
            let is_requester = req.requester == user;
            if req.status == Status::Pending && is_requester {
                req.status = Status::Denied;
                req.decided_by = Some(user.to_string());
                req.ended_at = Some(Utc::now());
                fx.audit(
                    "withdrawn",
                    req,
                    user,
                    format!("withdrawn by {}", who(user)),
                );
                Self::close_approval_dms(
                    &mut fx,
                    req,
                    &format!(":leftwards_arrow_with_hook: Withdrawn by {}", who(user)),
                );
                return fx.done("Your request is withdrawn.".to_string());
            }
            if !(is_requester || user == owner || req.all_approvers().any(|u| u == user)) {
                return Err(Refusal::NotAllowedToRevoke(req.id.clone()));
            }
            if req.status != Status::Active {
                return Err(Refusal::NotActive {
                    id: req.id.clone(),
                    state: policy::state_words(req),
                });
            }
            req.status = Status::Revoking;
            req.retry_at = None;
            let why = if is_requester {
                "released early by the requester".to_string()
            } else {
                format!("revoked early by {}", who(user))
            };
            fx.audit(
                if is_requester {
                    "released"
                } else {
                    "revoke_requested"
                },
                req,
                user,
                why.clone(),
            );
            req.end_reason = Some(why);
            fx.done("Revoking now; you will get a message when it is done.".to_string())
        })??;
        self.store.flush().await?;
        self.wake();
        if req.status == Status::Revoking {
            self.spawn_revoke(&req.id);
        }
        Ok(answer)
    }

    /// Asks for more time on an active grant. Auto-approval rules apply;
    /// otherwise the first stage's approvers decide.
    #[tracing::instrument(skip(self))]
    pub async fn extend(
        self: &Arc<Self>,
        user: &str,
        request_id: &str,
        extra: Option<Duration>,
    ) -> Result<String, RequestError> {
        let Some(current) = self.get(request_id)? else {
            return Err(Refusal::NotFound(request_id.to_string()).into());
        };
        let rb = self
            .catalog
            .get(&current.runbook_id)
            .ok_or_else(|| RequestError::UnknownRunbook(current.runbook_id.clone()))?;
        if current.requester != user {
            return Err(Refusal::NotRequester(request_id.to_string()).into());
        }
        let extra = extra.unwrap_or(rb.request.default_duration);
        let cap = rb.request.max_total.unwrap_or(rb.request.max_duration);
        let total = Duration::from_secs(current.total_secs) + extra;
        if total > cap {
            return Err(RequestError::OverMax {
                id: rb.id.clone(),
                asked: format!("{} in total", format_duration(total)),
                max: format_duration(cap),
            });
        }
        let auto = self.people.auto_approve_rule(rb, user, extra).await?;
        let approvers: Vec<String> = current
            .stages
            .first()
            .map(|s| s.approvers.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|a| *a != current.requester)
            .collect();
        let audit_channel = self.audit_channel.clone();
        let warning = self.timing.expiry_warning;
        let (answer, _) = self.store.update(request_id, |req| {
            let mut fx = Fx::new(&audit_channel);
            if req.status != Status::Active {
                return Err(Refusal::NotActive {
                    id: req.id.clone(),
                    state: policy::state_words(req),
                });
            }
            if req.extension.is_some() {
                return Err(Refusal::Invalid(format!(
                    "an extension of request {} is already waiting for approval",
                    req.id
                )));
            }
            if let Some(rule) = auto {
                apply_extension(req, extra, warning);
                fx.audit(
                    "extended",
                    req,
                    &format!("rule:{}", rule.name),
                    format!(
                        "extended by {} (auto-approved by rule `{}`)",
                        format_duration(extra),
                        rule.name
                    ),
                );
                return fx.done(format!("Extended by {}.", format_duration(extra)));
            }
            req.extension = Some(ExtensionRequest {
                duration_secs: extra.as_secs(),
                asked_at: Utc::now(),
                approvers: approvers.clone(),
                stage: 0,
                approvals: vec![],
            });
            fx.audit(
                "extension_requested",
                req,
                user,
                format!("{} asks for {} more", who(user), format_duration(extra)),
            );
            for a in &approvers {
                fx.dm(
                    req,
                    a,
                    blocks::extension_request(req, extra),
                    Some("extension"),
                );
            }
            fx.done(format!(
                "Asked the approvers for {} more; you will get a message with their answer.",
                format_duration(extra)
            ))
        })??;
        self.store.flush().await?;
        self.wake();
        Ok(answer)
    }

    /// An approver decides on a pending extension.
    pub async fn decide_extension(
        self: &Arc<Self>,
        user: &str,
        request_id: &str,
        approve: bool,
    ) -> Result<String, Refusal> {
        let audit_channel = self.audit_channel.clone();
        let warning = self.timing.expiry_warning;
        let (answer, _) = self.store.update(request_id, |req| {
            let mut fx = Fx::new(&audit_channel);
            // A late click on an ended grant answers with its state.
            if req.status != Status::Active {
                return Err(Refusal::NotActive {
                    id: req.id.clone(),
                    state: policy::state_words(req),
                });
            }
            let Some(mut ext) = req.extension.clone() else {
                return Err(Refusal::Invalid(format!(
                    "request {} has no extension waiting; nothing was changed",
                    req.id
                )));
            };
            if user == req.requester {
                return Err(Refusal::SelfApproval);
            }
            if ext.approvals.iter().any(|a| a.user == user) {
                return Err(Refusal::AlreadyApproved(req.id.clone()));
            }
            let Some(stage) = req.stages.get(ext.stage).cloned() else {
                return Err(Refusal::Invalid(format!(
                    "the extension of request {} has no approval stage left; ask for it again",
                    req.id
                )));
            };
            if !stage.approvers.iter().any(|a| a == user) {
                return Err(if req.all_approvers().any(|a| a == user) {
                    Refusal::NotCurrentStage(req.id.clone())
                } else {
                    Refusal::NotApprover(req.id.clone())
                });
            }
            let extra = Duration::from_secs(ext.duration_secs);
            if approve {
                ext.approvals.push(Approval {
                    user: user.to_string(),
                    stage: ext.stage,
                    at: Utc::now(),
                });
                let have = ext.approvals.iter().filter(|a| a.stage == ext.stage).count() as u32;
                if have < stage.required {
                    fx.audit(
                        "extension_approval",
                        req,
                        user,
                        format!(
                            "{} approved the extension of {}; {} more needed",
                            who(user),
                            format_duration(extra),
                            stage.required - have
                        ),
                    );
                    req.extension = Some(ext);
                    return fx.done(format!(
                        "Approval counted; {} more needed for the extension.",
                        stage.required - have
                    ));
                }
                if let Some(next) = req.stages.get(ext.stage + 1).cloned() {
                    let outcome = format!(
                        ":ballot_box_with_check: Extension approved by {} for stage “{}”; now with “{}”.",
                        who(user),
                        blocks::user_text(&stage.name, 100),
                        blocks::user_text(&next.name, 100)
                    );
                    fx.audit(
                        "extension_stage_approved",
                        req,
                        user,
                        format!(
                            "extension of {}: stage “{}” approved by {}",
                            format_duration(extra),
                            blocks::user_text(&stage.name, 100),
                            who(user)
                        ),
                    );
                    for a in &stage.approvers {
                        fx.update_dm(req, a, "extension", blocks::approval_closed(req, &outcome));
                    }
                    ext.stage += 1;
                    for a in &next.approvers {
                        if *a == req.requester || ext.approvals.iter().any(|x| x.user == *a) {
                            continue;
                        }
                        if !ext.approvers.contains(a) {
                            ext.approvers.push(a.clone());
                        }
                        fx.dm(req, a, blocks::extension_request(req, extra), Some("extension"));
                    }
                    req.extension = Some(ext);
                    return fx.done("Approved; the extension moves to the next stage.".to_string());
                }
            }
            req.extension = None;
            let outcome = if approve {
                apply_extension(req, extra, warning);
                fx.audit(
                    "extended",
                    req,
                    user,
                    format!(
                        "extended by {} (approved by {})",
                        format_duration(extra),
                        ext.approvals.iter().map(|a| who(&a.user)).collect::<Vec<_>>().join(", ")
                    ),
                );
                format!(
                    ":white_check_mark: Extension of {} approved by {}",
                    format_duration(extra),
                    who(user)
                )
            } else {
                fx.audit(
                    "extension_denied",
                    req,
                    user,
                    format!(
                        "extension of {} refused by {}",
                        format_duration(extra),
                        who(user)
                    ),
                );
                format!(
                    ":no_entry: Extension of {} refused by {}",
                    format_duration(extra),
                    who(user)
                )
            };
            for a in &ext.approvers {
                fx.update_dm(req, a, "extension", blocks::approval_closed(req, &outcome));
            }
            fx.dm(
                req,
                &req.requester,
                blocks::notice(&format!("{outcome} (request `{}`).", req.id), &[], &req.id),
                None,
            );
            fx.done(outcome.clone())
        })??;
        self.store.flush().await?;
        self.wake();
        Ok(answer)
    }

    /// A break-glass reviewer acknowledged or flagged the access.
    pub async fn review(
        self: &Arc<Self>,
        user: &str,
        request_id: &str,
        flag: bool,
    ) -> Result<String, Refusal> {
        let Some(current) = self.get(request_id)? else {
            return Err(Refusal::NotFound(request_id.to_string()));
        };
        let owner = self
            .catalog
            .get(&current.runbook_id)
            .map(|r| r.owner.clone())
            .unwrap_or_default();
        let audit_channel = self.audit_channel.clone();
        let (answer, _) = self.store.update(request_id, |req| {
            let mut fx = Fx::new(&audit_channel);
            if !req.break_glass {
                return Err(Refusal::Invalid(format!(
                    "request {} is not a break-glass request",
                    req.id
                )));
            }
            if user == req.requester || !(user == owner || req.all_approvers().any(|u| u == user)) {
                return Err(Refusal::NotApprover(req.id.clone()));
            }
            let (kind, words) = if flag {
                (
                    "review_flagged",
                    format!(
                        ":triangular_flag_on_post: Flagged for follow-up by {}",
                        who(user)
                    ),
                )
            } else {
                (
                    "review_acknowledged",
                    format!(":white_check_mark: Acknowledged by {}", who(user)),
                )
            };
            req.review = Some(words.clone());
            fx.audit(kind, req, user, words.clone());
            fx.update_dm(req, user, REVIEW, blocks::approval_closed(req, &words));
            fx.done(words)
        })??;
        self.store.flush().await?;
        self.wake();
        Ok(answer)
    }

    /// The timer loop found `id` due: expire, remind, escalate, warn, revoke
    /// on expiry, or retry a revoke.
    #[tracing::instrument(skip(self))]
    pub async fn on_due(self: &Arc<Self>, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let audit_channel = self.audit_channel.clone();
        let fallback = match self.store.get(id)? {
            Some(r) if r.status == Status::Pending && r.escalate_at.is_some_and(|t| t <= now) => {
                match self.catalog.get(&r.runbook_id) {
                    Some(rb) => self
                        .people
                        .expand(rb, &rb.approval.fallback_approvers, &r.requester)
                        .await
                        .unwrap_or_default(),
                    None => vec![],
                }
            }
            Some(_) => vec![],
            None => return Ok(()),
        };
        let (revoke, _) = self
            .store
            .update(id, |req| {
                let mut fx = Fx::new(&audit_channel);
                match req.status {
                    Status::Pending if req.approval_deadline <= now => {
                        req.status = Status::Expired;
                        req.ended_at = Some(now);
                        fx.audit("expired", req, "accessbot", "no decision before the approval timeout".into());
                        Self::close_approval_dms(&mut fx, req, ":hourglass: Expired: nobody decided in time.");
                        fx.dm(
                            req,
                            &req.requester,
                            blocks::notice(
                                &format!(
                                    ":hourglass: Your request `{}` for *{}* expired: nobody decided in time. You can ask again with `/access`.",
                                    req.id,
                                    blocks::user_text(&req.runbook_title, 200)
                                ),
                                &[],
                                &req.id,
                            ),
                            None,
                        );
                    }
                    Status::Pending => {
                        if req.remind_at.is_some_and(|t| t <= now) {
                            req.remind_at = None;
                            let stage = req.current_stage;
                            fx.audit("reminded", req, "accessbot", "approvers reminded".into());
                            self.ask_stage(&mut fx, req, stage, ":bell: Reminder: this request is still waiting for you.");
                        }
                        if req.escalate_at.is_some_and(|t| t <= now) {
                            req.escalate_at = None;
                            let stage = req.current_stage;
                            let added: Vec<String> = fallback
                                .iter()
                                .filter(|u| **u != req.requester && !req.stages[stage].approvers.contains(u))
                                .cloned()
                                .collect();
                            req.stages[stage].approvers.extend(added.iter().cloned());
                            fx.audit(
                                "escalated",
                                req,
                                "accessbot",
                                format!(
                                    "no decision in time; fallback approvers added: {}",
                                    added.iter().map(|u| who(u)).collect::<Vec<_>>().join(", ")
                                ),
                            );
                            for u in &added {
                                fx.dm(
                                    req,
                                    u,
                                    blocks::approval_request(
                                        req,
                                        ":arrow_up: Escalated to you: the designated approvers did not answer in time.",
                                    ),
                                    Some(APPROVAL),
                                );
                            }
                        }
                    }
                    Status::Active if req.expires_at.is_some_and(|t| t <= now) => {
                        req.status = Status::Revoking;
                        req.retry_at = None;
                        req.end_reason = Some("expired".into());
                        return fx.done(true);
                    }
                    Status::Active if req.warn_at.is_some_and(|t| t <= now) => {
                        req.warn_at = None;
                        fx.dm(req, &req.requester, blocks::expiry_warning(req), Some("warning"));
                    }
                    Status::Revoking if req.retry_at.is_some_and(|t| t <= now) => {
                        req.retry_at = None;
                        return fx.done(true);
                    }
                    _ => {}
                }
                fx.done(false)
            })?
            .unwrap_or_else(|never: Refusal| panic!("timer update cannot refuse: {never}"));
        self.store.flush().await?;
        if revoke {
            crashpoint::hit("after_expire");
        }
        self.wake_outbox();
        if revoke {
            self.spawn_revoke(id);
        }
        Ok(())
    }

    /// Completes what a crash interrupted: grants and revokes that were
    /// recorded as intents but whose outcome was not.
    pub fn recover(self: &Arc<Self>) -> Result<usize, StoreError> {
        let mut n = 0;
        for req in self.store.all_requests()? {
            match req.status {
                Status::Granting => {
                    tracing::info!(request_id = %req.id, "resuming an interrupted grant");
                    self.spawn_grant(&req.id);
                    n += 1;
                }
                Status::Revoking if req.retry_at.is_none() => {
                    tracing::info!(request_id = %req.id, "resuming an interrupted revoke");
                    self.spawn_revoke(&req.id);
                    n += 1;
                }
                _ => {}
            }
        }
        Ok(n)
    }

    pub fn wake(&self) {
        self.wake_outbox();
        self.timer_wake.notify_one();
    }

    fn wake_outbox(&self) {
        self.outbox_wake.notify_one();
    }
}

fn apply_extension(req: &mut AccessRequest, extra: Duration, warning: Duration) {
    let add = chrono_dur(extra);
    req.expires_at = req.expires_at.map(|t| t + add);
    req.duration_secs += extra.as_secs();
    req.total_secs += extra.as_secs();
    // The warning is about the new end, measured on the whole grant.
    req.warn_at = req
        .expires_at
        .and_then(|end| warn_time(end, req.duration_secs, warning))
        .filter(|t| *t > Utc::now());
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
