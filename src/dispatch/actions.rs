//! Button presses and menu choices: approve, deny, extend, release,
//! review, resolve, and the modal's runbook menu. A press is answered with
//! an empty acknowledgement; what the presser should read is queued as an
//! ephemeral message where they pressed (or a DM), in order with the
//! request's other messages.

use std::sync::Arc;

use super::preview::spawn_preview;
use super::{tell, Reply};
use crate::policy::Attempt;
use crate::slack::blocks::{self, action};
use crate::slack::payload::BlockActions;
use crate::workflow::Workflow;

#[tracing::instrument(skip_all, fields(user = %a.user.id))]
pub(super) async fn handle_actions(wf: &Arc<Workflow>, a: BlockActions) -> Reply {
    let user = a.user.id.as_str();
    let Some(act) = a.actions.first() else {
        return Reply::Ack;
    };
    if act.action_id == action::RUNBOOK_SELECT {
        if let (Some(view), Some(sel)) = (&a.view, &act.selected_option) {
            spawn_preview(
                wf,
                user,
                view.id.clone(),
                view.hash.clone(),
                sel.value.clone(),
            );
        }
        return Reply::Ack;
    }
    let request_id = act.value.clone().unwrap_or_default();
    let result: Result<String, String> = match act.action_id.as_str() {
        action::APPROVE | action::DENY => wf
            .decide(user, &request_id, act.action_id == action::APPROVE)
            .await
            .map_err(|e| e.to_string()),
        action::EXTENSION_APPROVE | action::EXTENSION_DENY => wf
            .decide_extension(
                user,
                &request_id,
                act.action_id == action::EXTENSION_APPROVE,
            )
            .await
            .map_err(|e| e.to_string()),
        action::RELEASE => wf
            .revoke_now(user, &request_id, Attempt::Release)
            .await
            .map_err(|e| e.to_string()),
        action::EXTEND => wf
            .extend(user, &request_id, None)
            .await
            .map_err(|e| e.to_string()),
        action::RESOLVE => wf
            .resolve(user, &request_id)
            .await
            .map_err(|e| e.to_string()),
        action::REVIEW_ACK | action::REVIEW_FLAG => wf
            .review(user, &request_id, act.action_id == action::REVIEW_FLAG)
            .await
            .map_err(|e| e.to_string()),
        action::REVIEW_CLEAR => wf
            .clear_flag(user, &request_id)
            .await
            .map_err(|e| e.to_string()),
        other if crate::feedback::Answer::from_action_id(other).is_some() => {
            let answer = crate::feedback::Answer::from_action_id(other).expect("checked above");
            wf.answer_feedback(user, &request_id, answer)
                .await
                .map_err(|e| e.to_string())
        }
        other => {
            tracing::warn!(action_id = %blocks::truncate(other, 64), "unknown action ignored");
            return Reply::Ack;
        }
    };
    let text = match result {
        Ok(t) => t,
        Err(e) => format!(":no_entry_sign: {e}"),
    };
    let order_key = if request_id.is_empty() {
        "replies"
    } else {
        &request_id
    };
    tell(wf, order_key, a.channel_id(), user, text).await;
    Reply::Ack
}
