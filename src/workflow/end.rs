//! Ending early and reviewing: `/access revoke` and the Release button end
//! an active grant (the revoke itself runs in `provision`) or cancel one
//! scheduled to start later, a requester can withdraw a pending request, and the approvers and owner of a break-glass
//! grant acknowledge or flag it after the fact.

use std::sync::Arc;

use chrono::Utc;

use super::{Workflow, REVIEW};
use crate::policy::{self, Attempt, Refusal};
use crate::request::{AccessRequest, Status};
use crate::slack::blocks::{self, Msg};
use crate::slack::text;

impl Workflow {
    /// Ends an active grant now (`/access revoke`, the Release button), or
    /// withdraws one's own pending request.
    /// `how` says which it was (`Revoke` or `Release`) for the record of a refusal.
    #[tracing::instrument(skip(self))]
    pub async fn revoke_now(
        self: &Arc<Self>,
        user: &str,
        request_id: &str,
        how: Attempt,
    ) -> Result<String, Refusal> {
        let (current, owner) = self.with_owner(request_id).await?;
        let lease = self.run_lease(Utc::now());
        let changed = self
            .change(request_id, |req, fx| {
                let is_requester = req.requester == user;
                if req.status == Status::Pending && is_requester {
                    req.status = Status::Denied;
                    req.decided_by = Some(user.to_string());
                    req.ended_at = Some(Utc::now());
                    fx.audit("withdrawn", req, user, text::withdrawn(user));
                    Self::close_approval_dms(fx, req, &text::withdrawn_outcome(user));
                    return Ok(text::WITHDRAWN_ANSWER.to_string());
                }
                if !(is_requester || user == owner || req.all_approvers().any(|u| u == user)) {
                    return Err(Refusal::NotAllowedToRevoke(req.id.clone()));
                }
                // Scheduled and not started: nothing was granted, so
                // nothing to revoke; it ends here.
                if req.status == Status::Scheduled {
                    let why = crate::slack::inputs::cancelled_before_start(user);
                    req.status = Status::Cancelled;
                    req.ended_at = Some(Utc::now());
                    req.end_reason = Some(why.clone());
                    fx.audit("cancelled", req, user, why.clone());
                    if !is_requester {
                        fx.tell_requester(req, &why);
                    }
                    return Ok(crate::slack::inputs::CANCELLED_ANSWER.to_string());
                }
                if req.status != Status::Active {
                    return Err(Refusal::NotActive {
                        id: req.id.clone(),
                        state: policy::state_words(req),
                    });
                }
                req.status = Status::Revoking;
                req.retry_at = None;
                req.run_until = Some(lease);
                let (kind, why) = if is_requester {
                    ("released", text::RELEASED.to_string())
                } else {
                    ("revoke_requested", text::revoked_early(user))
                };
                fx.audit(kind, req, user, why.clone());
                req.end_reason = Some(why);
                Ok(text::REVOKING_ANSWER.to_string())
            })
            .await?;
        let (answer, req) = self.refused_if(changed, user, &current, how).await?;
        self.wake();
        if req.status == Status::Revoking {
            self.spawn_revoke(&req.id);
        }
        Ok(answer)
    }

    /// A break-glass reviewer acknowledged or flagged the access. A flag
    /// stands until the owner clears it ([`Workflow::clear_flag`]): a later
    /// acknowledgement is recorded beside it, never over it.
    pub async fn review(&self, user: &str, id: &str, flag: bool) -> Result<String, Refusal> {
        let (current, owner) = self.with_owner(id).await?;
        if current.break_glass {
            self.check_still_approver(user, &current, None, Attempt::Review)
                .await?;
        }
        let changed = self
            .change(id, |req, fx| {
                if !req.break_glass {
                    return Err(Refusal::Invalid(format!(
                        "request {} is not a break-glass request",
                        req.id
                    )));
                }
                if user == req.requester
                    || !(user == owner || req.all_approvers().any(|u| u == user))
                {
                    return Err(Refusal::NotApprover(req.id.clone()));
                }
                let (kind, words) = match (&req.flagged_by, flag) {
                    (_, true) => {
                        req.flagged_by = Some(user.to_string());
                        ("review_flagged", text::review(user, true))
                    }
                    (Some(by), false) => (
                        "review_acknowledged",
                        text::acknowledged_flag_stands(user, by, &owner),
                    ),
                    (None, false) => ("review_acknowledged", text::review(user, false)),
                };
                if req.flagged_by.is_none() || flag {
                    req.review = Some(words.clone());
                }
                fx.audit(kind, req, user, words.clone());
                fx.update_dm(req, user, REVIEW, review_dm(req, user, &owner, &words));
                if flag && user != owner && !owner.is_empty() {
                    fx.update_dm(req, &owner, REVIEW, review_dm(req, &owner, &owner, &words));
                }
                Ok(words)
            })
            .await?;
        let (answer, _) = self
            .refused_if(changed, user, &current, Attempt::Review)
            .await?;
        self.wake();
        Ok(answer)
    }

    /// The owner cleared the flag on a break-glass access after following it up.
    pub async fn clear_flag(&self, user: &str, id: &str) -> Result<String, Refusal> {
        let (_, owner) = self.with_owner(id).await?;
        let (answer, _) = self
            .change(id, |req, fx| {
                if user != owner {
                    return Err(Refusal::Invalid(text::only_owner_clears(&owner)));
                }
                if req.flagged_by.take().is_none() {
                    return Err(Refusal::Invalid(text::NO_FLAG.to_string()));
                }
                let words = text::flag_cleared(user);
                req.review = Some(words.clone());
                fx.audit("review_flag_cleared", req, user, words.clone());
                fx.update_dm(req, user, REVIEW, review_dm(req, user, &owner, &words));
                Ok(words)
            })
            .await??;
        self.wake();
        Ok(answer)
    }

    /// A stored request and the owner of its runbook (empty if the runbook
    /// left the catalog), who may act on it beside its approvers.
    pub(super) async fn with_owner(
        &self,
        request_id: &str,
    ) -> Result<(AccessRequest, String), Refusal> {
        let current = self.stored(request_id).await?;
        let owner = self.runbook_says(&current.runbook_id, |r| r.owner.clone());
        Ok((current, owner))
    }
}

/// What `user`'s review DM shows after a press: the owner of a flagged
/// access keeps a button to clear the flag; everyone else sees the outcome.
fn review_dm(req: &AccessRequest, user: &str, owner: &str, outcome: &str) -> Msg {
    match &req.flagged_by {
        Some(by) if user == owner => {
            let flag = text::review(by, true);
            let shown = if outcome.contains(&flag) {
                outcome.to_string()
            } else {
                format!("{flag}\n{outcome}")
            };
            blocks::review_flagged(req, &shown)
        }
        _ => blocks::approval_closed(req, outcome),
    }
}
