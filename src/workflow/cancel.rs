//! Cancelling a request: its requester changes their mind before anyone
//! decided, or before a scheduled start (the Home tab's Cancel button,
//! `/access cancel <id>`). Checked on the request as stored, inside the
//! store's `update`: only the requester, and only while it is `Pending` or
//! `Scheduled` (approved, nothing granted yet). The request ends as
//! `Cancelled`, every approver's Approve/Deny message is replaced by the
//! outcome, and a `cancelled` audit event records it. Anyone else's cancel
//! is refused, changes nothing and leaves the trace of a refused attempt.

use std::sync::Arc;

use chrono::Utc;

use super::Workflow;
use crate::policy::{self, Attempt, Refusal};
use crate::request::Status;
use crate::slack::text;

impl Workflow {
    /// `user` cancels their pending request `request_id`; returns the words
    /// to show them, or why nothing changed.
    #[tracing::instrument(skip(self))]
    pub async fn cancel(self: &Arc<Self>, user: &str, request_id: &str) -> Result<String, Refusal> {
        let current = self.stored(request_id).await?;
        let now = Utc::now();
        let changed = self
            .change(request_id, |req, fx| {
                if req.requester != user {
                    return Err(Refusal::NotRequester(req.id.clone()));
                }
                if !matches!(req.status, Status::Pending | Status::Scheduled) {
                    return Err(Refusal::NotPending {
                        id: req.id.clone(),
                        state: policy::state_words(req),
                    });
                }
                req.status = Status::Cancelled;
                req.decided_by = Some(user.to_string());
                req.ended_at = Some(now);
                req.end_reason = Some(text::cancelled(user));
                fx.audit("cancelled", req, user, text::cancelled(user));
                Self::close_approval_dms(fx, req, &text::cancelled_outcome(user));
                Ok(text::cancelled_answer(req))
            })
            .await?;
        let (answer, _) = self
            .refused_if(changed, user, &current, Attempt::Cancel)
            .await?;
        self.wake();
        Ok(answer)
    }
}
