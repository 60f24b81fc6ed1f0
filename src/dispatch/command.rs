//! `/access …`: the text after the command, parsed by [`command::parse`],
//! answered with words for the person who typed it. Creating, revoking and
//! extending go through the workflow; listing and status only read.

use std::sync::Arc;

use super::{created_text, Reply};
use crate::command::{self, Command, HELP, SLASH_COMMAND};
use crate::duration::format_duration_words;
use crate::policy::{Attempt, Refusal};
use crate::slack::payload::SlashCommand;
use crate::slack::{blocks, home, text};
use crate::workflow::{NewRequest, RequestError, Workflow};

fn say(text: impl AsRef<str>) -> Reply {
    Reply::Ephemeral(text.as_ref().to_string())
}

#[tracing::instrument(skip_all, fields(user = %cmd.user_id))]
pub(super) async fn handle_command(wf: &Arc<Workflow>, cmd: SlashCommand) -> Reply {
    let user = cmd.user_id.as_str();
    if cmd.command != SLASH_COMMAND {
        // Another command pointed at this app's URL: its text is not ours
        // to read, so nothing is parsed, stored or asked.
        tracing::warn!(command = %blocks::truncate(&cmd.command, 40), "refused a slash command other than /access");
        return say(text::other_command(&cmd.command));
    }
    let parsed = match command::parse(&cmd.text) {
        Ok(c) => c,
        Err(e) => return say(format!("{e}\n\n{HELP}")),
    };
    match parsed {
        Command::Help => say(HELP),
        Command::Modal => {
            let runbooks = wf.requestable(user).await;
            if runbooks.is_empty() {
                return say("There is nothing you can request yet. Ask your admin to add a runbook that lists you (or one of your groups) in `request.allowed`.");
            }
            if cmd.trigger_id.is_empty() {
                return say(HELP);
            }
            // trigger_id expires after 3 s: open the modal now, in the background.
            let view = blocks::request_modal(&runbooks, None, &[]);
            let wf = Arc::clone(wf);
            let trigger = cmd.trigger_id;
            wf.clone().spawn_background(async move {
                if let Err(e) = wf.open_view(&trigger, &view).await {
                    tracing::warn!(error = %e, "could not open the request modal");
                }
            });
            Reply::Ack
        }
        Command::List => {
            let runbooks = wf.requestable(user).await;
            if runbooks.is_empty() {
                return say("There is nothing you can request yet.");
            }
            let lines: Vec<String> = runbooks
                .iter()
                .map(|r| {
                    // A description that ends a sentence gets no second full stop.
                    let description = blocks::user_text(&r.description, 300);
                    let stop = if description.ends_with(['.', '!', '?', '…']) {
                        ""
                    } else {
                        "."
                    };
                    format!(
                        "• `{}` *{}* ({}): {description}{stop} Default {}, up to {}{}",
                        r.id,
                        blocks::user_text(&r.title, 100),
                        blocks::user_text(&r.system, 100),
                        format_duration_words(r.request.default_duration),
                        format_duration_words(r.request.max_duration),
                        if r.request.require_reason {
                            "; reason required"
                        } else {
                            ""
                        }
                    )
                })
                .collect();
            say(format!("*What you can request:*\n{}\n\nAsk with `/access` or `/access request <id> [duration] [reason]`.", lines.join("\n")))
        }
        Command::Status => {
            let mine = match wf.open_requests_of(user).await {
                Ok(mine) => mine,
                Err(e) => {
                    tracing::error!(error = %e, "could not list requests");
                    return say(
                        "accessbot could not read its records just now; try again in a moment.",
                    );
                }
            };
            let to_approve = wf.approvals_waiting_for(user).await.unwrap_or_default();
            if mine.is_empty() && to_approve.is_empty() {
                return say("You have no pending requests and no active access.");
            }
            let mut answer = String::new();
            if !mine.is_empty() {
                let lines: Vec<String> = mine.iter().map(blocks::status_line).collect();
                answer = format!("*Your requests:*\n{}", lines.join("\n"));
            }
            if !to_approve.is_empty() {
                let lines: Vec<String> = to_approve.iter().map(home::waiting_line).collect();
                if !answer.is_empty() {
                    answer.push_str("\n\n");
                }
                answer.push_str(&format!(
                    "*Waiting for your approval:*\n{}",
                    lines.join("\n")
                ));
            }
            say(answer)
        }
        Command::Request {
            runbook,
            duration,
            reason,
            inputs,
            start,
        } => {
            let n = NewRequest {
                user: user.to_string(),
                runbook,
                duration,
                reason,
                inputs,
                start,
            };
            match wf.create_request(n).await {
                Ok(req) => say(created_text(&req)),
                Err(e) => say(request_error_text(&e)),
            }
        }
        Command::Revoke { request_id } => say(refusal_or(
            wf.revoke_now(user, &request_id, Attempt::Revoke).await,
        )),
        Command::Resolve { request_id } => say(refusal_or(wf.resolve(user, &request_id).await)),
        Command::Cancel { request_id } => say(refusal_or(wf.cancel(user, &request_id).await)),
        Command::Report => say(refusal_or(wf.report_for(user).await)),
        Command::Extend {
            request_id,
            duration,
        } => match wf.extend(user, &request_id, Some(duration)).await {
            Ok(t) => say(t),
            Err(e) => say(request_error_text(&e)),
        },
    }
}

fn refusal_or(r: Result<String, Refusal>) -> String {
    match r {
        Ok(t) => t,
        Err(e) => format!(":no_entry_sign: {e}"),
    }
}

fn request_error_text(e: &RequestError) -> String {
    match e {
        RequestError::Store(inner) => {
            tracing::error!(error = %inner, "could not store a request");
        }
        // Not refusals: the words carry their own mark.
        RequestError::StillWaiting(_) | RequestError::ConfirmBreakGlass { .. } => {
            return e.to_string()
        }
        _ => {}
    }
    format!(":no_entry_sign: {e}")
}
