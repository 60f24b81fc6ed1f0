//! Creating a request: what may be requested, the checks that need no Slack
//! (runbook, duration, reason), the ones that do (who may request, who
//! approves, auto-approval), and the one write that stores the request with
//! its first messages. A break-glass or auto-approved request is stored as
//! `Granting` and its grant spawned; any other waits for its first stage.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{chrono_dur, Fx, Workflow, REVIEW};
use crate::duration::{format_duration, DurationError};
use crate::policy::{Refusal, ResolveError};
use crate::request::{clean_typed, new_request_id, AccessRequest, Status};
use crate::runbook::Runbook;
use crate::slack::{blocks, text};
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

impl Workflow {
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
        let reason = clean_typed(&n.reason);
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
            runbook_title: rb.title.clone(),
            system: rb.system.clone(),
            description: rb.description.clone(),
            reason: clean_typed(&n.reason),
            approval_deadline: now + chrono_dur(policy.approval_timeout),
            remind_at: policy.remind_after.map(|d| now + chrono_dur(d)),
            escalate_at: policy.escalate_after.map(|d| now + chrono_dur(d)),
            break_glass: rb.break_glass,
            ..AccessRequest::new(new_request_id(), &rb.id, &n.user, duration, stages, now)
        };
        let mut fx = Fx::new(&self.audit_channel);
        fx.audit("requested", &req, &req.requester, text::requested(&req));
        if rb.break_glass {
            req.status = Status::Granting;
            req.decided_by = Some("break-glass".into());
            fx.audit(
                "break_glass",
                &req,
                &req.requester,
                text::break_glass_taken(&req),
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
                text::auto_approved(&rule.name, rule.max_duration),
            );
        } else {
            Self::ask_stage(&mut fx, &req, 0, "");
        }
        self.store.insert(&req, fx.effects)?;
        self.store.flush().await?;
        self.wake();
        if req.status == Status::Granting {
            self.spawn_grant(&req.id);
        }
        Ok(req)
    }
}
