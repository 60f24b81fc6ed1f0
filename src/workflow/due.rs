//! The timer's side of the lifecycle: what happens when a request's
//! deadline comes (`on_due`). A pending request expires, or its approvers
//! are reminded, or fallback approvers are added; an active grant is warned
//! about its end and revoked when it ends; a failed revoke is tried again;
//! a request approved to start later is granted at its start.

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
        let Some(current) = self.deps.store.get(id).await? else {
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
        let lease = self.run_lease(now);
        let Ok((run, req)) = self
            .change(id, |req, fx| -> Result<_, Infallible> {
                let run = match req.status {
                    Status::Pending if req.approval_deadline <= now => {
                        expire(fx, req, now);
                        Run::No
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
                        Run::No
                    }
                    Status::Active if req.expires_at.is_some_and(|t| t <= now) => {
                        req.status = Status::Revoking;
                        req.retry_at = None;
                        req.run_until = Some(lease);
                        req.end_reason = Some(text::TIME_UP.into());
                        Run::Now
                    }
                    Status::Active if req.warn_at.is_some_and(|t| t <= now) => {
                        req.warn_at = None;
                        fx.dm(
                            req,
                            &req.requester,
                            blocks::expiry_warning(req, extend_by),
                            Some(WARNING),
                        );
                        Run::No
                    }
                    // Its scheduled start has come: granted like an approval.
                    Status::Scheduled if req.start_at.is_some_and(|t| t <= now) => {
                        req.status = Status::Granting;
                        req.run_until = Some(lease);
                        Run::Now
                    }
                    Status::Revoking if req.retry_at.is_some_and(|t| t <= now) => {
                        req.retry_at = None;
                        req.run_until = Some(lease);
                        Run::Now
                    }
                    // The replica that owned this run did not record its
                    // outcome within the lease: presumed dead, so it is run
                    // here. (If it still runs, this run waits for its lock
                    // and then finds the request done.)
                    Status::Granting | Status::Revoking
                        if req.run_until.is_some_and(|t| t <= now) =>
                    {
                        tracing::warn!(request_id = %req.id, status = ?req.status, "a provider run's lease ran out; running it here");
                        req.run_until = Some(lease);
                        Run::TakeOver
                    }
                    _ => Run::No,
                };
                Ok(run)
            })
            .await?;
        if run == Run::Now && req.status == Status::Revoking {
            crashpoint::hit("after_expire");
        }
        self.wake_outbox();
        if run == Run::TakeOver {
            // The dead replica's program died with it; what it started may
            // still run on this host, and must be gone before the run here.
            self.stop_leftovers_of(id).await;
        }
        if run != Run::No {
            match req.status {
                Status::Granting => self.spawn_grant(id),
                _ => self.spawn_revoke(id),
            }
        }
        Ok(())
    }
}

/// What a deadline asks of the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    No,
    /// A revoke is due (expiry, or a retry).
    Now,
    /// A run recorded as an intent outlived its lease: another replica
    /// owned it and is presumed dead.
    TakeOver,
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
