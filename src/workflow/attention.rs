//! Requests that need a person. When a revoke, or the clean-up after a
//! failed grant, fails in a way no retry can fix (the program cannot start,
//! it exits with the code that says so, a secret is missing), retrying
//! would only repeat the failure and its notice forever. The request becomes
//! `NeedsAttention` instead: no deadline, so the timer leaves it alone; one
//! loud notice in the audit channel, with a button; counted for `/healthz`.
//! Its runbook's owner or one of its approvers checks the target system and
//! closes it with `/access resolve <id>` or the button, which records who
//! did in the audit log.

use std::sync::Arc;

use chrono::Utc;

use super::{Fx, Workflow, EXTENSION, GRANT};
use crate::policy::{self, Refusal};
use crate::request::{AccessRequest, Status};
use crate::slack::{blocks, text};

/// Stops retrying `req`'s revoke, which failed with `error` for good, and
/// says so once, loudly, in the audit channel.
pub(super) fn needs_attention(fx: &mut Fx, req: &mut AccessRequest, owner: &str, error: &str) {
    req.status = Status::NeedsAttention;
    req.retry_at = None;
    let line = text::needs_attention(req, owner, error);
    let notice = blocks::needs_attention_notice(req, &line);
    fx.alert("needs_attention", req, "accessbot", line, notice);
}

impl Workflow {
    /// Closes a request that needs attention, once `user` (its runbook's
    /// owner, or an approver who is not its requester) has checked the
    /// target system: `/access resolve` and the notice's button.
    #[tracing::instrument(skip(self))]
    pub async fn resolve(
        self: &Arc<Self>,
        user: &str,
        request_id: &str,
    ) -> Result<String, Refusal> {
        let (_, owner) = self.with_owner(request_id).await?;
        let (answer, _) = self
            .change(request_id, |req, fx| {
                let approver = req.requester != user && req.all_approvers().any(|u| u == user);
                if !(user == owner || approver) {
                    return Err(Refusal::NotAllowedToResolve(req.id.clone()));
                }
                if req.status != Status::NeedsAttention {
                    return Err(Refusal::NothingToResolve {
                        id: req.id.clone(),
                        state: policy::state_words(req),
                    });
                }
                req.ended_at = Some(Utc::now());
                req.resolved_by = Some(user.to_string());
                let why = text::resolved_reason(user);
                req.end_reason = Some(why.clone());
                if let Some(ext) = req.extension.take() {
                    fx.close_dms(req, &ext.approvers, EXTENSION, text::EXTENSION_OUTLIVED);
                }
                if req.grant_failed {
                    req.status = Status::Failed;
                    fx.audit("resolved", req, user, text::resolved(user));
                } else {
                    req.status = Status::Revoked;
                    fx.audit("resolved", req, user, text::resolved(user));
                    let notice = text::revoked_notice(req, &why);
                    fx.update_dm(
                        req,
                        &req.requester,
                        GRANT,
                        blocks::notice(&notice, &[], &req.id),
                    );
                    fx.tell_requester(req, &notice);
                }
                Ok(text::resolved_answer(&req.id))
            })
            .await??;
        self.wake();
        Ok(answer)
    }
}
