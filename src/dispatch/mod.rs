//! Slack dispatch, apart from any transport. A transport (HTTP, or Socket
//! Mode) verifies and parses what Slack sent into the types of
//! [`crate::slack::payload`] and hands them to [`Dispatch`], which does the
//! work through the [`Workflow`] and returns a [`Reply`]. Dispatch knows
//! nothing of headers, status codes, signatures or envelopes; the transport
//! turns the reply into its own wire format.
//!
//! One file per kind of delivery: [`command`] (`/access`), [`actions`]
//! (button presses and menu choices), [`submission`] (the request modal),
//! [`events`] (Events API callbacks), and [`preview`] (the modal's
//! who-will-approve lines).

mod actions;
mod command;
mod events;
mod preview;
mod submission;

use std::sync::Arc;

use serde_json::Value;

use crate::duration::format_duration_words;
use crate::outbox::SlackOp;
use crate::request::{AccessRequest, Status};
use crate::slack::blocks;
use crate::slack::payload::{BlockActions, EventBody, Interaction, SlashCommand, ViewSubmission};
use crate::workflow::Workflow;

pub use preview::preview_lines;

/// What dispatch answers one delivery with, before any transport encodes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Acknowledged, nothing to show.
    Ack,
    /// Acknowledged, and Slack should not deliver the same thing again.
    AckNoRetry,
    /// A message only the sender sees.
    Ephemeral(String),
    /// Errors to show next to the modal's fields (block ID, message); the
    /// modal stays open.
    ViewErrors(Vec<(&'static str, String)>),
    /// The Events API's `url_verification` challenge, to echo.
    Challenge(String),
}

impl Reply {
    /// The Slack JSON this reply carries, if any: the body of an HTTP
    /// answer, or the payload of a Socket Mode acknowledgement.
    pub fn payload(&self) -> Option<Value> {
        match self {
            Reply::Ack | Reply::AckNoRetry => None,
            Reply::Ephemeral(text) => Some(blocks::ephemeral(text)),
            Reply::ViewErrors(errors) => Some(blocks::view_errors(errors)),
            Reply::Challenge(challenge) => Some(blocks::challenge_answer(challenge)),
        }
    }
}

/// The one entry point every transport calls. It holds the workflow only:
/// no secrets, nothing of any transport.
#[derive(Clone)]
pub struct Dispatch {
    workflow: Arc<Workflow>,
}

impl Dispatch {
    pub fn new(workflow: Arc<Workflow>) -> Dispatch {
        Dispatch { workflow }
    }

    /// `/access …`.
    pub async fn handle_command(&self, cmd: SlashCommand) -> Reply {
        command::handle_command(&self.workflow, cmd).await
    }

    /// Any interactivity payload.
    pub async fn handle_interaction(&self, interaction: Interaction) -> Reply {
        match interaction {
            Interaction::BlockActions(a) => self.handle_actions(a).await,
            Interaction::ViewSubmission(v) => self.handle_submission(v).await,
            Interaction::Other(kind) => {
                tracing::debug!(%kind, "interaction acknowledged without action");
                Reply::Ack
            }
        }
    }

    /// A button press or a menu choice.
    pub async fn handle_actions(&self, actions: BlockActions) -> Reply {
        actions::handle_actions(&self.workflow, actions).await
    }

    /// The request modal, submitted.
    pub async fn handle_submission(&self, submission: ViewSubmission) -> Reply {
        submission::handle_submission(&self.workflow, submission).await
    }

    /// An Events API body; `is_retry` when Slack says this is a retry.
    pub async fn handle_event(&self, event: EventBody, is_retry: bool) -> Reply {
        events::handle_event(&self.workflow, event, is_retry).await
    }
}

/// What the requester is told once a new request is stored.
fn created_text(req: &AccessRequest) -> String {
    match req.status {
        Status::Granting if req.break_glass => format!(
            ":rotating_light: Break-glass request for *{}*: access is being granted now. Approvers and the owner have been told and will review it.\nRequest ID `{}`",
            blocks::user_text(&req.runbook_title, 200), req.id
        ),
        Status::Granting => format!(
            ":white_check_mark: Your request for *{}* ({}) was approved automatically; access is being granted now.\nRequest ID `{}`",
            blocks::user_text(&req.runbook_title, 200),
            format_duration_words(std::time::Duration::from_secs(req.duration_secs)),
            req.id
        ),
        _ => {
            let who: Vec<String> = req.current_approvers().iter().map(|u| format!("<@{u}>")).collect();
            format!(
                ":inbox_tray: Your request for *{}* ({}) is waiting for approval from {}. You will get a message when it is decided.\nRequest ID `{}`",
                blocks::user_text(&req.runbook_title, 200),
                format_duration_words(std::time::Duration::from_secs(req.duration_secs)),
                who.join(", "),
                req.id
            )
        }
    }
}

/// Tells one person something privately: ephemeral where they pressed, or a DM.
async fn tell(wf: &Workflow, order_key: &str, channel: Option<String>, user: &str, text: String) {
    let op = match channel {
        Some(channel) => SlackOp::Ephemeral {
            channel,
            user: user.to_string(),
            text,
        },
        None => {
            let msg = blocks::notice(&text, &[], order_key);
            SlackOp::Dm {
                user: user.to_string(),
                text: msg.text,
                blocks: msg.blocks,
                purpose: None,
            }
        }
    };
    if let Err(e) = wf.queue_slack(order_key, op).await {
        tracing::error!(error = %e, "could not queue a reply");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Dispatch, Reply};
    use crate::command::HELP;
    use crate::slack::payload::{self, EventBody, SlashCommand};
    use crate::workflow::Workflow;

    fn dispatch() -> (tempfile::TempDir, Dispatch) {
        let dir = tempfile::tempdir().unwrap();
        let dispatch = Dispatch::new(Workflow::for_tests(dir.path()));
        (dir, dispatch)
    }

    fn slash(text: &str) -> SlashCommand {
        SlashCommand {
            user_id: "U0ALICE".into(),
            command: "/access".into(),
            text: text.into(),
            trigger_id: String::new(),
            channel_id: "C0GENERAL".into(),
            team_id: "T0FAKE".into(),
        }
    }

    fn check(reply: Reply, expected: Option<serde_json::Value>) {
        assert_eq!(reply.payload(), expected, "{reply:?}");
    }

    #[tokio::test]
    async fn commands_answer_with_words_for_the_sender() {
        let (_dir, d) = dispatch();
        assert_eq!(
            d.handle_command(slash("help")).await,
            Reply::Ephemeral(HELP.into())
        );
        assert_eq!(
            d.handle_command(slash("list")).await,
            Reply::Ephemeral("There is nothing you can request yet.".into())
        );
        assert_eq!(
            d.handle_command(slash("status")).await,
            Reply::Ephemeral("You have no pending requests and no active access.".into())
        );
    }

    #[tokio::test]
    async fn a_submission_without_a_runbook_is_shown_next_to_the_field() {
        let (_dir, d) = dispatch();
        let body = payload::parse_interaction(
            serde_urlencoded::to_string([(
                "payload",
                json!({
                    "type": "view_submission",
                    "user": {"id": "U0ALICE"},
                    "view": {"id": "V1", "callback_id": "access_request", "state": {"values": {}}}
                })
                .to_string(),
            )])
            .unwrap()
            .as_bytes(),
        )
        .unwrap();
        check(
            d.handle_interaction(body).await,
            Some(
                json!({"response_action": "errors", "errors": {"runbook": "Choose what you need access to."}}),
            ),
        );
    }

    #[tokio::test]
    async fn events_are_handled_once_by_event_id() {
        let (_dir, d) = dispatch();
        let verification = EventBody::UrlVerification {
            challenge: "c-1".into(),
        };
        check(
            d.handle_event(verification, false).await,
            Some(json!({"challenge": "c-1"})),
        );
        let home = || EventBody::Callback {
            event_id: "Ev1".into(),
            event: json!({"type": "app_home_opened", "user": "U0ALICE", "tab": "home"}),
        };
        assert_eq!(d.handle_event(home(), false).await, Reply::Ack);
        assert_eq!(d.workflow.outbox_len().await, 1, "the Home tab is queued");
        assert_eq!(d.handle_event(home(), true).await, Reply::AckNoRetry);
        assert_eq!(d.workflow.outbox_len().await, 1, "a repeat queues nothing");
        check(Reply::AckNoRetry, None);
    }
}
