//! Feedback on a grant that ended: the requester's DM with the two
//! questions, queued in the same write that records the end (expiry or
//! release) unless the runbook says `feedback = false`, and the answers,
//! stored on the request and audited (`feedback` events). A second click
//! replaces the answer to that question, and is audited too.

use std::sync::Arc;

use chrono::Utc;

use super::{Fx, Workflow, FEEDBACK};
use crate::feedback::{Answer, Feedback};
use crate::policy::{Attempt, Refusal};
use crate::request::{AccessRequest, Status};
use crate::slack::{feedback as words, text};

impl Workflow {
    /// Whether the requester of a grant of `runbook_id` is asked for feedback.
    pub(super) fn feedback_on(&self, runbook_id: &str) -> bool {
        self.runbook_says(runbook_id, |r| r.feedback)
    }

    /// Queues the feedback DM when `req`'s grant ended by expiry or by its
    /// requester releasing it, and the runbook asks (`enabled`).
    pub(super) fn ask_feedback(fx: &mut Fx, req: &AccessRequest, enabled: bool) {
        let ended_so = matches!(
            req.end_reason.as_deref(),
            Some(text::TIME_UP) | Some(text::RELEASED)
        );
        if !enabled || !ended_so || req.grant_failed || req.status != Status::Revoked {
            return;
        }
        fx.dm(
            req,
            &req.requester,
            words::feedback_request(req, None),
            Some(FEEDBACK),
        );
    }

    /// `user` pressed a feedback button on request `id`.
    #[tracing::instrument(skip(self))]
    pub async fn answer_feedback(
        self: &Arc<Self>,
        user: &str,
        id: &str,
        answer: Answer,
    ) -> Result<String, Refusal> {
        let current = self.stored(id).await?;
        let changed = self
            .change(id, |req, fx| {
                if req.requester != user {
                    return Err(Refusal::NotRequester(req.id.clone()));
                }
                if req.status != Status::Revoked || req.granted_at.is_none() {
                    return Err(Refusal::Invalid(format!(
                        "request {} has no ended grant to give feedback on",
                        req.id
                    )));
                }
                let mut feedback = req.feedback.clone().unwrap_or_default();
                let was = feedback.clone();
                feedback.apply(answer, Utc::now());
                let line = feedback_line(&was, answer);
                req.feedback = Some(feedback.clone());
                fx.record("feedback", req, user, line);
                fx.update_dm(
                    req,
                    user,
                    FEEDBACK,
                    words::feedback_request(req, Some(&feedback)),
                );
                Ok(words::answer_recorded(answer))
            })
            .await?;
        let (answer, _) = self
            .refused_if(changed, user, &current, Attempt::Feedback)
            .await?;
        self.wake();
        Ok(answer)
    }
}

/// The audit line of one click: the answer, and the one it replaced.
fn feedback_line(was: &Feedback, answer: Answer) -> String {
    let before = match answer {
        Answer::Time(_) => was.time.map(|t| format!("the time was {}", t.words())),
        Answer::Task(_) => was.task_done.map(|d| {
            if d {
                "the access let them do the task"
            } else {
                "the access did not let them do the task"
            }
            .to_string()
        }),
    };
    match before {
        Some(b) => format!("feedback: {} (changed from: {b})", answer.words()),
        None => format!("feedback: {}", answer.words()),
    }
}
