//! Creating a request: what may be requested, the checks that need no Slack
//! (runbook, duration, reason), the ones that do (who may request, who
//! approves, auto-approval), and the one write that stores the request with
//! its first messages. A break-glass or auto-approved request is stored as
//! `Granting` and its grant spawned; any other waits for its first stage.
//!
//! One person holds at most one open (waiting, being granted or active)
//! request per runbook, so `max_duration` and `max_total` cannot be walked
//! around by asking twice: the same request sent again is answered with the
//! waiting one, any other is refused with the way to extend the one they
//! have. Break-glass alone may be taken a second time, once the requester
//! confirms it, and never past `max_total` across the open requests.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{chrono_dur, Fx, Workflow, REVIEW};
use crate::duration::{format_duration, DurationError};
use crate::policy::{Attempt, Refusal, ResolveError};
use crate::request::{clean_typed, new_request_id, AccessRequest, Status};
use crate::runbook::{check_values, InputProblem, Runbook};
use crate::schedule::{self, ScheduleError, StartAt};
use crate::slack::{blocks, inputs, text};
use crate::store::StoreError;

/// The most time a new request may spend asking Slack who is who.
const LOOKUPS_BUDGET: Duration = Duration::from_millis(2200);

/// Why a new request (or extension) was refused; each message tells the
/// requester what to change. Nothing is stored when one is returned.
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
    #[error("{}", text::still_waiting(.0))]
    StillWaiting(Box<AccessRequest>),
    #[error("{}", text::already_open(.0))]
    AlreadyOpen(Box<AccessRequest>),
    #[error("{}", text::confirm_break_glass(.open, .command))]
    ConfirmBreakGlass {
        open: Box<AccessRequest>,
        command: String,
    },
    #[error("{}", text::over_total(.runbook, *.held, *.asked, *.max, .open))]
    OverTotal {
        runbook: String,
        held: Duration,
        asked: Duration,
        max: Duration,
        open: Vec<String>,
    },
    #[error("{}", text::no_identity(.runbook, .user))]
    NoIdentity { runbook: String, user: String },
    #[error("{0}")]
    Resolve(#[from] ResolveError),
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("{}", .0.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "))]
    Inputs(Vec<InputProblem>),
    #[error("{0}")]
    Schedule(#[from] ScheduleError),
    #[error("accessbot could not save the request, so nothing was requested; try again (the operator sees the cause in the logs)")]
    Store(#[from] StoreError),
}

impl RequestError {
    /// The modal field the error belongs next to.
    pub fn field(&self) -> &'static str {
        match self {
            RequestError::Duration(_)
            | RequestError::OverMax { .. }
            | RequestError::OverTotal { .. } => blocks::modal::DURATION,
            RequestError::ReasonRequired(_)
            | RequestError::ReasonTooLong(_)
            | RequestError::ConfirmBreakGlass { .. } => blocks::modal::REASON,
            RequestError::Inputs(problems) => problems
                .first()
                .and_then(|p| p.index)
                .map_or(blocks::modal::RUNBOOK, inputs::block_id),
            RequestError::Schedule(_) => inputs::START,
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
    /// Values for the runbook's `[[inputs]]`: `(id, value)` as given.
    pub inputs: Vec<(String, String)>,
    /// When the access should start; `None` for as soon as approved.
    pub start: Option<StartAt>,
}

impl Workflow {
    /// Runbooks `user` may request, in catalog order.
    pub async fn requestable(&self, user: &str) -> Vec<&Runbook> {
        let mut out = Vec::new();
        for r in &self.deps.catalog.runbooks {
            if self.deps.people.may_request(r, user).await.unwrap_or(false) {
                out.push(r);
            }
        }
        out
    }

    /// Checks what can be checked without Slack: runbook, duration, reason.
    pub fn validate(&self, n: &NewRequest) -> Result<(&Runbook, Duration), RequestError> {
        let rb = self
            .deps
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
        let reason = clean_typed(&n.reason);
        if rb.request.require_reason && reason.is_empty() {
            return Err(RequestError::ReasonRequired(rb.id.clone()));
        }
        let len = reason.chars().count();
        if len > 1000 {
            return Err(RequestError::ReasonTooLong(len));
        }
        check_values(&rb.inputs, &n.inputs, &rb.id).map_err(RequestError::Inputs)?;
        if rb.break_glass && n.start.is_some() {
            return Err(ScheduleError::BreakGlass(rb.id.clone()).into());
        }
        Ok((rb, duration))
    }

    /// `user`'s open requests for `runbook`: waiting, being granted or
    /// active. Read from the index of a person's unfinished requests.
    pub(super) async fn open_requests_for(
        &self,
        user: &str,
        runbook: &str,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        Ok(self
            .deps
            .store
            .open_requests_of(user)
            .await?
            .into_iter()
            .filter(|r| {
                r.runbook_id == runbook
                    && matches!(
                        r.status,
                        Status::Pending | Status::Granting | Status::Scheduled | Status::Active
                    )
            })
            .collect())
    }

    /// Refuses a request for a runbook whose provider acts on the person's
    /// account in the target when accessbot cannot know that account (no
    /// `[identities]` entry, no email from Slack): it would be approved and
    /// then fail. A Slack that does not answer refuses nothing here.
    async fn check_identity(&self, rb: &Runbook, user: &str) -> Result<(), RequestError> {
        if !rb.grant.needs_identity() {
            return Ok(());
        }
        match self.deps.identities.resolve(&self.deps.slack, user).await {
            Ok(found) if found.identity.is_none() => Err(RequestError::NoIdentity {
                runbook: rb.id.clone(),
                user: user.to_string(),
            }),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(user, error = %e, "users.info failed; the identity is looked up again when the grant runs");
                Ok(())
            }
        }
    }

    /// Checks a new request against the person's open ones for the same
    /// runbook (see the module comment); returns the reason to store (the
    /// word `confirm` taken off) and the open requests a confirmed
    /// break-glass comes on top of.
    async fn check_open(
        &self,
        n: &NewRequest,
        rb: &Runbook,
        duration: Duration,
    ) -> Result<(String, Vec<AccessRequest>), RequestError> {
        let reason = clean_typed(&n.reason);
        let open = self.open_requests_for(&n.user, &rb.id).await?;
        let Some(first) = open.first() else {
            return Ok((reason, open));
        };
        if let Some(same) = open.iter().find(|o| {
            o.status == Status::Pending
                && o.duration_secs == duration.as_secs()
                && o.reason == reason
        }) {
            return Err(RequestError::StillWaiting(Box::new(same.clone())));
        }
        if !rb.break_glass {
            let why = text::already_open_reason(first);
            self.record_refusal(&n.user, first, Attempt::Request, &why)
                .await;
            return Err(RequestError::AlreadyOpen(Box::new(first.clone())));
        }
        let held = Duration::from_secs(open.iter().map(committed_secs).sum());
        let max = rb.request.max_total.unwrap_or(rb.request.max_duration);
        if held + duration > max {
            let why = text::over_total_reason(held, duration, max);
            self.record_refusal(&n.user, first, Attempt::Request, &why)
                .await;
            return Err(RequestError::OverTotal {
                runbook: rb.id.clone(),
                held,
                asked: duration,
                max,
                open: open.iter().map(|o| o.id.clone()).collect(),
            });
        }
        let Some(reason) = confirmed(&reason) else {
            return Err(RequestError::ConfirmBreakGlass {
                open: Box::new(first.clone()),
                command: text::confirm_command(&rb.id, duration, &reason),
            });
        };
        if rb.request.require_reason && reason.is_empty() {
            return Err(RequestError::ReasonRequired(rb.id.clone()));
        }
        Ok((reason, open))
    }

    /// Validates, stores and announces a new request; returns it once it is
    /// durable. Auto-approved and break-glass requests go straight to granting.
    #[tracing::instrument(skip_all, fields(user = %n.user, runbook = %n.runbook))]
    pub async fn create_request(
        self: &Arc<Self>,
        n: NewRequest,
    ) -> Result<AccessRequest, RequestError> {
        let (rb, duration) = self.validate(&n)?;
        // Answered at once when it is plain; checked again below, where no
        // other request of the same person and runbook can slip in.
        self.check_open(&n, rb, duration).await?;
        // Each Slack lookup is bounded on its own; this bounds them all, so
        // the answer still reaches Slack within its 3 seconds.
        let resolved = tokio::time::timeout(LOOKUPS_BUDGET, async {
            if !self.deps.people.may_request(rb, &n.user).await? {
                return Err(RequestError::NotAllowed {
                    id: rb.id.clone(),
                    owner: rb.owner.clone(),
                });
            }
            self.check_identity(rb, &n.user).await?;
            let stages = self.deps.people.resolve_stages(rb, &n.user).await?;
            let auto = if rb.break_glass {
                None
            } else {
                self.deps
                    .people
                    .auto_approve_rule(rb, &n.user, duration)
                    .await?
            };
            // `at 09:00` means 09:00 where the requester is.
            let zone = match n.start {
                Some(StartAt::Clock(_) | StartAt::Local(_)) => {
                    let info = self.deps.slack.user_info(&n.user).await;
                    schedule::zone(info.ok().and_then(|u| u.tz_offset))
                }
                _ => schedule::zone(None),
            };
            Ok((stages, auto, zone))
        })
        .await
        .map_err(|_| ResolveError::SlackSlow {
            what: "who may approve this request".to_string(),
        })?;
        let (stages, auto, zone) = resolved?;
        let start_at = match n.start {
            Some(start) => {
                let now = Utc::now();
                schedule::check_window(
                    schedule::resolve(start, zone, now),
                    now,
                    rb.request.max_schedule_ahead,
                    &rb.id,
                    zone,
                )?
            }
            None => None,
        };
        let values = check_values(&rb.inputs, &n.inputs, &rb.id).map_err(RequestError::Inputs)?;
        // Held until the insert has committed, on every replica alike.
        let limits = self.lock_limits(&n.user, &rb.id).await?;
        let (reason, on_top_of) = self.check_open(&n, rb, duration).await?;
        let on_top_of: Vec<String> = on_top_of.into_iter().map(|o| o.id).collect();
        let now = Utc::now();
        let policy = &rb.approval;
        let mut req = AccessRequest {
            runbook_title: rb.title.clone(),
            system: rb.system.clone(),
            description: rb.description.clone(),
            reason,
            approval_deadline: now + chrono_dur(policy.approval_timeout),
            remind_at: policy.remind_after.map(|d| now + chrono_dur(d)),
            escalate_at: policy.escalate_after.map(|d| now + chrono_dur(d)),
            break_glass: rb.break_glass,
            inputs: values,
            start_at,
            ..AccessRequest::new(new_request_id(), &rb.id, &n.user, duration, stages, now)
        };
        let mut fx = Fx::new(&self.deps.audit_channel);
        fx.audit("requested", &req, &req.requester, text::requested(&req));
        if rb.break_glass {
            req.status = Status::Granting;
            req.run_until = Some(self.run_lease(now));
            req.decided_by = Some("break-glass".into());
            fx.audit(
                "break_glass",
                &req,
                &req.requester,
                text::break_glass_taken(&req, &on_top_of),
            );
            let note = text::break_glass_again(&on_top_of);
            let mut reviewers: Vec<String> = req.all_approvers().cloned().collect();
            if !reviewers.contains(&rb.owner) {
                reviewers.push(rb.owner.clone());
            }
            for u in reviewers.iter().filter(|u| **u != req.requester) {
                fx.dm(
                    &req,
                    u,
                    blocks::break_glass_review(&req, &note),
                    Some(REVIEW),
                );
            }
        } else if let Some(rule) = auto {
            req.status = Status::Granting;
            req.run_until = Some(self.run_lease(now));
            req.auto_rule = Some(rule.name.clone());
            req.decided_by = Some(format!("rule {}", rule.name));
            fx.audit(
                "auto_approved",
                &req,
                &format!("rule:{}", rule.name),
                text::auto_approved(&rule.name, rule.max_duration),
            );
            if schedule::hold_until_start(&mut req, now) {
                let line = inputs::scheduled(&req, req.start_at.unwrap_or(now));
                fx.audit("scheduled", &req, "accessbot", line);
            }
        } else {
            Self::ask_stage(&mut fx, &req, 0, "");
        }
        fx.refresh_homes(None, &req);
        self.deps.store.insert(&req, fx.effects).await?;
        self.deps.store.flush().await?;
        crate::metrics::request_created(&req);
        drop(limits);
        self.wake();
        if req.status == Status::Granting {
            self.spawn_grant(&req.id);
        }
        Ok(req)
    }
}

/// The time a request holds or may soon hold: its whole grant with
/// approved extensions, and an extension still waiting.
pub(super) fn committed_secs(req: &AccessRequest) -> u64 {
    req.total_secs + req.extension.as_ref().map_or(0, |e| e.duration_secs)
}

/// The reason without its last word when that word is `confirm` (how a
/// second break-glass request is confirmed); `None` otherwise.
fn confirmed(reason: &str) -> Option<String> {
    let (rest, last) = reason.rsplit_once(' ').unwrap_or(("", reason));
    last.eq_ignore_ascii_case("confirm")
        .then(|| rest.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirm_is_the_last_word_of_the_reason() {
        assert_eq!(confirmed("sev1 confirm"), Some("sev1".into()));
        assert_eq!(confirmed("Confirm"), Some(String::new()));
        assert_eq!(confirmed("sev1 CONFIRM"), Some("sev1".into()));
        assert_eq!(confirmed("sev1"), None);
        assert_eq!(confirmed("confirmed sev1"), None);
        assert_eq!(confirmed("reconfirm"), None);
        assert_eq!(confirmed(""), None);
    }
}
