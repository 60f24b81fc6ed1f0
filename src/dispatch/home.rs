//! The Home tab's deliveries: `app_home_opened` queues the person's Home
//! to be published, and its buttons are pressed here. A Home button's
//! `action_id` names its request (`approve:ar-…`, so every one in the view
//! is unique); it is read as its action, so Approve, Deny, Extend and
//! Release go to the same handlers, with the same checks, as the buttons
//! in a DM. Only Cancel and Request are the Home tab's own.

use std::sync::Arc;

use super::preview::spawn_preview;
use super::{tell, Reply};
use crate::slack::home::{self, base_action, home_action};
use crate::slack::payload::BlockActions;
use crate::workflow::Workflow;

/// Queues `user`'s Home tab to be published (they opened it). Not queued
/// means not shown now; their next visit tries again.
pub(super) async fn publish_home(wf: &Workflow, user: &str) {
    if let Err(e) = wf.queue_home_refresh(user).await {
        tracing::error!(error = %e, "could not queue the Home tab");
    }
}

/// Reads every pressed `action_id` as its action, and handles the Home
/// tab's own buttons; `None` leaves the press to the shared handlers.
pub(super) async fn handle_home_action(wf: &Arc<Workflow>, a: &mut BlockActions) -> Option<Reply> {
    for act in &mut a.actions {
        act.action_id = base_action(&act.action_id).to_string();
    }
    let act = a.actions.first()?;
    let user = a.user.id.as_str();
    let value = act.value.clone().unwrap_or_default();
    match act.action_id.as_str() {
        home_action::CANCEL => {
            let answer = match wf.cancel(user, &value).await {
                Ok(t) => t,
                Err(e) => format!(":no_entry_sign: {e}"),
            };
            tell(wf, &value, a.channel_id(), user, answer).await;
            Some(Reply::Ack)
        }
        home_action::REQUEST => {
            open_preset_modal(wf, user, a.trigger_id.clone().unwrap_or_default(), value);
            Some(Reply::Ack)
        }
        _ => None,
    }
}

/// Opens the request modal preset to `runbook`, then fills in who will
/// approve it. The trigger expires 3 s after the press, so the modal opens
/// first and the preview (which may ask Slack) follows.
fn open_preset_modal(wf: &Arc<Workflow>, user: &str, trigger: String, runbook: String) {
    let this = Arc::clone(wf);
    let user = user.to_string();
    wf.spawn_background(async move {
        let Some(rb) = this.requestable_runbook(&user, &runbook).await else {
            tell(
                &this,
                "replies",
                None,
                &user,
                home::not_requestable(&runbook),
            )
            .await;
            return;
        };
        match this.open_request_modal(&user, &trigger, rb).await {
            Ok((view_id, hash)) => spawn_preview(&this, &user, view_id, hash, rb.id.clone()),
            Err(e) => {
                tracing::warn!(error = %e, "could not open the request modal from the Home tab")
            }
        }
    });
}
