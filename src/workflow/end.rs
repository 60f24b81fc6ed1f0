//! Ending early and reviewing: `/access revoke` and the Release button end
//! an active grant (the revoke itself runs in `provision`), a requester can
//! withdraw a pending request, and the approvers and owner of a break-glass
//! grant acknowledge or flag it after the fact.

use std::sync::Arc;

use chrono::Utc;

use super::{Workflow, REVIEW};
use crate::policy::{self, Attempt, Refusal};
use crate::request::{AccessRequest, Status};
use crate::slack::{blocks, text};

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
        let (current, owner) = self.with_owner(request_id)?;
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
                if req.status != Status::Active {
                    return Err(Refusal::NotActive {
                        id: req.id.clone(),
                        state: policy::state_words(req),
                    });
                }
                req.status = Status::Revoking;
                req.retry_at = None;
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

    /// A break-glass reviewer acknowledged or flagged the access.
    pub async fn review(&self, user: &str, id: &str, flag: bool) -> Result<String, Refusal> {
        let (current, owner) = self.with_owner(id)?;
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
                let kind = if flag {
                    "review_flagged"
                } else {
                    "review_acknowledged"
                };
                let words = text::review(user, flag);
                req.review = Some(words.clone());
                fx.audit(kind, req, user, words.clone());
                fx.update_dm(req, user, REVIEW, blocks::approval_closed(req, &words));
                Ok(words)
            })
            .await?;
        let (answer, _) = self
            .refused_if(changed, user, &current, Attempt::Review)
            .await?;
        self.wake();
        Ok(answer)
    }

    /// A stored request and the owner of its runbook (empty if the runbook
    /// left the catalog), who may act on it beside its approvers.
    pub(super) fn with_owner(&self, request_id: &str) -> Result<(AccessRequest, String), Refusal> {
        let Some(current) = self.get(request_id)? else {
            return Err(Refusal::NotFound(request_id.to_string()));
        };
        let owner = self
            .deps
            .catalog
            .get(&current.runbook_id)
            .map(|r| r.owner.clone())
            .unwrap_or_default();
        Ok((current, owner))
    }
}
