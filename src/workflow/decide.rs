//! Deciding a request: an approver's Approve or Deny, checked against the
//! request as stored (`policy::apply_approval`, `policy::apply_denial`). An
//! approval is counted, completes a stage (the next stage's approvers are
//! asked), or completes the last one: the request becomes `Granting` and
//! its grant is spawned once that is durable. An approver from a user
//! group is checked against the group as it is at the press.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{chrono_dur, Fx, Workflow, APPROVAL};
use crate::crashpoint;
use crate::policy::{self, ApprovalOutcome, Attempt, Refusal};
use crate::request::{AccessRequest, Status};
use crate::schedule;
use crate::slack::{blocks, inputs, text};

impl Workflow {
    /// An approver pressed Approve or Deny (or typed it). Checked against
    /// the stored request; returns the words to show the presser.
    #[tracing::instrument(skip(self))]
    pub async fn decide(
        self: &Arc<Self>,
        user: &str,
        request_id: &str,
        approve: bool,
    ) -> Result<String, Refusal> {
        let current = self.stored(request_id).await?;
        let allow_self = self.runbook_says(&current.runbook_id, |r| r.approval.allow_self_approval);
        let attempt = if approve {
            Attempt::Approve
        } else {
            Attempt::Deny
        };
        if current.status == Status::Pending {
            self.check_still_approver(user, &current, Some(current.current_stage), attempt)
                .await?;
        }
        let now = Utc::now();
        let changed = self
            .change(request_id, |req, fx| -> Result<_, Refusal> {
                // The stage checked above is the one decided; if another
                // approval moved it on meanwhile, this press came too late.
                if req.current_stage != current.current_stage && req.status == Status::Pending {
                    return Err(Refusal::Invalid(text::stage_moved_on(&req.id)));
                }
                let answer = if approve {
                    self.approve(fx, req, user, allow_self, now)?
                } else {
                    Self::deny(fx, req, user, now)?
                };
                Ok(answer)
            })
            .await?;
        let (answer, req) = self.refused_if(changed, user, &current, attempt).await?;
        crashpoint::hit("after_approve");
        self.wake();
        if req.status == Status::Granting {
            self.spawn_grant(&req.id);
        }
        Ok(answer)
    }

    fn deny(
        fx: &mut Fx,
        req: &mut AccessRequest,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<String, Refusal> {
        policy::apply_denial(req, user)?;
        req.ended_at = Some(now);
        fx.audit("denied", req, user, text::denied(user));
        Self::close_approval_dms(fx, req, &text::denied_outcome(user));
        fx.tell_requester(req, &text::denied_notice(req, user));
        Ok(text::DENIED_ANSWER.to_string())
    }

    fn approve(
        &self,
        fx: &mut Fx,
        req: &mut AccessRequest,
        user: &str,
        allow_self: bool,
        now: DateTime<Utc>,
    ) -> Result<String, Refusal> {
        Ok(match policy::apply_approval(req, user, allow_self, now)? {
            ApprovalOutcome::Counted { remaining } => {
                fx.audit(
                    "approved",
                    req,
                    user,
                    text::approval_counted(user, remaining),
                );
                fx.update_dm(
                    req,
                    user,
                    APPROVAL,
                    blocks::approval_closed(req, &text::approval_counted_outcome(remaining)),
                );
                text::approval_counted_answer(remaining)
            }
            ApprovalOutcome::StageComplete { next_stage } => {
                let done_stage = req.stages[next_stage - 1].clone();
                let outcome =
                    text::stage_approved_outcome(&done_stage, user, &req.stages[next_stage]);
                fx.audit(
                    "stage_approved",
                    req,
                    user,
                    text::stage_approved(&done_stage, user),
                );
                fx.close_dms(req, &done_stage.approvers, APPROVAL, &outcome);
                // The new stage's approvers get their own time before a
                // reminder and before escalation.
                if let Some(rb) = self.deps.catalog.get(&req.runbook_id) {
                    let now = Utc::now();
                    req.remind_at = rb.approval.remind_after.map(|d| now + chrono_dur(d));
                    req.escalate_at = rb.approval.escalate_after.map(|d| now + chrono_dur(d));
                }
                Self::ask_stage(fx, req, next_stage, &text::previous_stage_approved(user));
                text::STAGE_APPROVED_ANSWER.to_string()
            }
            ApprovalOutcome::Approved => {
                req.run_until = Some(self.run_lease(now));
                // Approved ahead of its start: the timer grants it then.
                let held = schedule::hold_until_start(req, now);
                let by: Vec<&str> = req.approvals.iter().map(|a| a.user.as_str()).collect();
                fx.audit("approved", req, user, text::approved(&by));
                Self::close_approval_dms(fx, req, &text::approved_outcome(&by));
                if held {
                    let start = req.start_at.unwrap_or(now);
                    fx.audit("scheduled", req, "accessbot", inputs::scheduled(req, start));
                    fx.tell_requester(req, &inputs::scheduled_notice(req));
                    return Ok(format!("Approved.{}", inputs::start_note(req)));
                }
                fx.tell_requester(req, &text::approved_notice(req, &by));
                text::APPROVED_ANSWER.to_string()
            }
        })
    }
}
