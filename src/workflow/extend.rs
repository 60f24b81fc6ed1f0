//! Extending an active grant: the requester asks for more time, an
//! auto-approval rule grants it at once or the extension goes through the
//! request's approval stages in order, with the same required counts; an
//! approved extension moves the end (and the warning) later. The total
//! (`max_total`, else `max_duration`) holds across the person's open
//! requests for the runbook, not only this one.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::create::committed_secs;
use super::{chrono_dur, warn_time, Fx, RequestError, Workflow, EXTENSION};
use crate::policy::{self, Attempt, Refusal};
use crate::request::{AccessRequest, Approval, ExtensionRequest, StageState, Status};
use crate::slack::{blocks, text};

impl Workflow {
    /// Asks for more time on an active grant. Auto-approval rules apply;
    /// otherwise the first stage's approvers decide.
    #[tracing::instrument(skip(self))]
    pub async fn extend(
        self: &Arc<Self>,
        user: &str,
        request_id: &str,
        extra: Option<Duration>,
    ) -> Result<String, RequestError> {
        let Some(current) = self.get(request_id).await? else {
            return Err(Refusal::NotFound(request_id.to_string()).into());
        };
        let rb = self
            .deps
            .catalog
            .get(&current.runbook_id)
            .ok_or_else(|| RequestError::UnknownRunbook(current.runbook_id.clone()))?;
        if current.requester != user {
            let refusal = Refusal::NotRequester(request_id.to_string());
            self.record_refusal(
                user,
                &current,
                Attempt::Extend,
                &text::refusal_reason(&refusal),
            )
            .await;
            return Err(refusal.into());
        }
        let extra = extra.unwrap_or(rb.request.default_duration);
        let cap = rb.request.max_total.unwrap_or(rb.request.max_duration);
        // The total is checked and the extension recorded under the same
        // lock a new request of this person and runbook takes.
        let limits = self.lock_limits(user, &rb.id).await?;
        let others: Vec<AccessRequest> = self
            .open_requests_for(user, &rb.id)
            .await?
            .into_iter()
            .filter(|o| o.id != current.id)
            .collect();
        let held = Duration::from_secs(
            current.total_secs + others.iter().map(committed_secs).sum::<u64>(),
        );
        if others.is_empty() && held + extra > cap {
            return Err(Refusal::Invalid(text::extension_over_limit(
                &current.id,
                extra,
                cap,
                held,
            ))
            .into());
        }
        if held + extra > cap {
            let mut open = vec![current.id.clone()];
            open.extend(others.into_iter().map(|o| o.id));
            return Err(RequestError::OverTotal {
                runbook: rb.id.clone(),
                held,
                asked: extra,
                max: cap,
                open,
            });
        }
        let auto = self.deps.people.auto_approve_rule(rb, user, extra).await?;
        let approvers: Vec<String> = current
            .stages
            .first()
            .map(|s| s.approvers.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|a| *a != current.requester)
            .collect();
        let warning = self.deps.timing.expiry_warning;
        let (answer, _) = self
            .change(request_id, |req, fx| {
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
                        text::extended_by_rule(extra, &rule.name),
                    );
                    return Ok(text::extended_answer(extra));
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
                    text::extension_requested(user, extra),
                );
                for a in &approvers {
                    ask_extension(fx, req, a, extra);
                }
                Ok(text::extension_requested_answer(extra))
            })
            .await??;
        drop(limits);
        self.wake();
        Ok(answer)
    }

    /// An approver decides on a pending extension.
    pub async fn decide_extension(
        &self,
        user: &str,
        request_id: &str,
        approve: bool,
    ) -> Result<String, Refusal> {
        let current = self.stored(request_id).await?;
        let attempt = if approve {
            Attempt::ApproveExtension
        } else {
            Attempt::DenyExtension
        };
        let stage = current.extension.as_ref().map(|e| e.stage);
        self.check_still_approver(user, &current, stage, attempt)
            .await?;
        let warning = self.deps.timing.expiry_warning;
        let changed = self
            .change(request_id, |req, fx| -> Result<_, Refusal> {
                let (mut ext, stage) = extension_stage(req, user)?;
                let extra = Duration::from_secs(ext.duration_secs);
                if approve {
                    ext.approvals.push(Approval {
                        user: user.to_string(),
                        stage: ext.stage,
                        at: Utc::now(),
                    });
                    let have = ext
                        .approvals
                        .iter()
                        .filter(|a| a.stage == ext.stage)
                        .count() as u32;
                    if have < stage.required {
                        let remaining = stage.required - have;
                        fx.audit(
                            "extension_approval",
                            req,
                            user,
                            text::extension_approval_counted(user, extra, remaining),
                        );
                        req.extension = Some(ext);
                        return Ok(text::extension_approval_counted_answer(remaining));
                    }
                    if let Some(next) = req.stages.get(ext.stage + 1).cloned() {
                        let outcome = text::extension_stage_approved_outcome(user, &stage, &next);
                        fx.audit(
                            "extension_stage_approved",
                            req,
                            user,
                            text::extension_stage_approved(extra, &stage, user),
                        );
                        fx.close_dms(req, &stage.approvers, EXTENSION, &outcome);
                        ext.stage += 1;
                        for a in &next.approvers {
                            if *a == req.requester || ext.approvals.iter().any(|x| x.user == *a) {
                                continue;
                            }
                            if !ext.approvers.contains(a) {
                                ext.approvers.push(a.clone());
                            }
                            ask_extension(fx, req, a, extra);
                        }
                        req.extension = Some(ext);
                        return Ok(text::EXTENSION_STAGE_APPROVED_ANSWER.to_string());
                    }
                }
                req.extension = None;
                let outcome = if approve {
                    apply_extension(req, extra, warning);
                    let by: Vec<&str> = ext.approvals.iter().map(|a| a.user.as_str()).collect();
                    fx.audit("extended", req, user, text::extended(extra, &by));
                    text::extended_outcome(extra, user)
                } else {
                    fx.audit(
                        "extension_denied",
                        req,
                        user,
                        text::extension_denied(extra, user),
                    );
                    text::extension_denied_outcome(extra, user)
                };
                fx.close_dms(req, &ext.approvers, EXTENSION, &outcome);
                fx.tell_requester(req, &text::extension_decided_notice(req, &outcome));
                Ok(outcome)
            })
            .await?;
        let (answer, _) = self.refused_if(changed, user, &current, attempt).await?;
        self.wake();
        Ok(answer)
    }
}

/// The waiting extension of `req` and the stage it is in, if `user` may
/// decide it there; otherwise why not. A late click on an ended grant
/// answers with its state.
fn extension_stage(
    req: &AccessRequest,
    user: &str,
) -> Result<(ExtensionRequest, StageState), Refusal> {
    if req.status != Status::Active {
        return Err(Refusal::NotActive {
            id: req.id.clone(),
            state: policy::state_words(req),
        });
    }
    let Some(ext) = req.extension.clone() else {
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
    Ok((ext, stage))
}

/// DMs `approver` the extension request with its buttons.
fn ask_extension(fx: &mut Fx, req: &AccessRequest, approver: &str, extra: Duration) {
    fx.dm(
        req,
        approver,
        blocks::extension_request(req, extra),
        Some(EXTENSION),
    );
}

fn apply_extension(req: &mut AccessRequest, extra: Duration, warning: Duration) {
    let add = chrono_dur(extra);
    req.expires_at = req.expires_at.map(|t| t + add);
    req.duration_secs += extra.as_secs();
    req.total_secs += extra.as_secs();
    req.extensions += 1;
    // The warning is about the new end, measured on the whole grant.
    req.warn_at = req
        .expires_at
        .and_then(|end| warn_time(end, req.duration_secs, warning))
        .filter(|t| *t > Utc::now());
}
