//! The timer's side of the lifecycle: what happens when a request's
//! deadline comes (`on_due`). A pending request expires, or its approvers
//! are reminded, or fallback approvers are added; an active grant is warned
//! about its end and revoked when it ends; a failed revoke is tried again.

use std::convert::Infallible;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Fx, Workflow, APPROVAL, WARNING};
use crate::crashpoint;
use crate::request::{AccessRequest, Status};
use crate::slack::{blocks, text};
use crate::store::StoreError;

impl Workflow {
    /// The timer loop found `id` due: expire, remind, escalate, warn, revoke
    /// on expiry, or retry a revoke.
    #[tracing::instrument(skip(self))]
    pub async fn on_due(self: &Arc<Self>, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(current) = self.deps.store.get(id)? else {
            return Ok(());
        };
        let fallback = match self.deps.catalog.get(&current.runbook_id) {
            Some(rb)
                if current.status == Status::Pending
                    && current.escalate_at.is_some_and(|t| t <= now) =>
            {
                self.deps
                    .people
                    .expand(rb, &rb.approval.fallback_approvers, &current.requester)
                    .await
                    .unwrap_or_default()
            }
            _ => vec![],
        };
        let extend_by = self.extend_step(&current.runbook_id);
        let Ok((revoke, _)) = self
            .change(id, |req, fx| -> Result<_, Infallible> {
                let revoke = match req.status {
                    Status::Pending if req.approval_deadline <= now => {
                        expire(fx, req, now);
                        false
                    }
                    Status::Pending => {
                        if req.remind_at.is_some_and(|t| t <= now) {
                            req.remind_at = None;
                            fx.audit("reminded", req, "accessbot", text::REMINDED.into());
                            Self::ask_stage(fx, req, req.current_stage, text::REMINDER_NOTE);
                        }
                        if req.escalate_at.is_some_and(|t| t <= now) {
                            req.escalate_at = None;
                            escalate(fx, req, &fallback);
                        }
                        false
                    }
                    Status::Active if req.expires_at.is_some_and(|t| t <= now) => {
                        req.status = Status::Revoking;
                        req.retry_at = None;
                        req.end_reason = Some(text::TIME_UP.into());
                        true
                    }
                    Status::Active if req.warn_at.is_some_and(|t| t <= now) => {
                        req.warn_at = None;
                        fx.dm(
                            req,
                            &req.requester,
                            blocks::expiry_warning(req, extend_by),
                            Some(WARNING),
                        );
                        false
                    }
                    Status::Revoking if req.retry_at.is_some_and(|t| t <= now) => {
                        req.retry_at = None;
                        true
                    }
                    _ => false,
                };
                Ok(revoke)
            })
            .await?;
        if revoke {
            crashpoint::hit("after_expire");
        }
        self.wake_outbox();
        if revoke {
            self.spawn_revoke(id);
        }
        Ok(())
    }
}

/// Nobody decided before the approval deadline.
fn expire(fx: &mut Fx, req: &mut AccessRequest, now: DateTime<Utc>) {
    req.status = Status::Expired;
    req.ended_at = Some(now);
    fx.audit("expired", req, "accessbot", text::EXPIRED.into());
    Workflow::close_approval_dms(fx, req, text::EXPIRED_OUTCOME);
    fx.tell_requester(req, &text::expired_notice(req));
}

/// Adds the `fallback` approvers not already in the current stage to it,
/// and asks them.
fn escalate(fx: &mut Fx, req: &mut AccessRequest, fallback: &[String]) {
    let stage = req.current_stage;
    let added: Vec<String> = fallback
        .iter()
        .filter(|u| **u != req.requester && !req.stages[stage].approvers.contains(u))
        .cloned()
        .collect();
    req.stages[stage].approvers.extend(added.iter().cloned());
    fx.audit("escalated", req, "accessbot", text::escalated(&added));
    for u in &added {
        fx.dm(
            req,
            u,
            blocks::approval_request(req, text::ESCALATED_NOTE),
            Some(APPROVAL),
        );
    }
}
