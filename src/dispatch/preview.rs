//! The request modal's preview: once a runbook is chosen, the modal is
//! updated to say how long one may ask for, whether a reason is needed, who
//! approves in which stage, and whether an auto-approval rule applies.

use std::sync::Arc;

use crate::duration::format_duration_words;
use crate::runbook::Runbook;
use crate::slack::blocks;
use crate::workflow::Workflow;

/// Updates the open modal with who will approve the chosen runbook.
pub(super) fn spawn_preview(
    wf: &Arc<Workflow>,
    user: &str,
    view_id: String,
    hash: Option<String>,
    runbook: String,
) {
    let wf = Arc::clone(wf);
    let user = user.to_string();
    wf.clone().spawn_background(async move {
        let requestable = wf.requestable(&user).await;
        let Some(rb) = requestable.iter().find(|r| r.id == runbook).copied() else {
            return;
        };
        let lines = preview_lines(&wf, rb, &user).await;
        let view = blocks::request_modal(&requestable, Some(rb), &lines);
        if let Err(e) = wf.update_view(&view_id, hash.as_deref(), &view).await {
            tracing::warn!(error = %e, "could not update the request modal preview");
        }
    });
}

/// Who will be asked, in which stages, and the rules, in words.
pub async fn preview_lines(wf: &Workflow, rb: &Runbook, user: &str) -> Vec<String> {
    let mut lines = vec![format!(
        "*Duration:* default {}, at most {}. *Reason:* {}.",
        format_duration_words(rb.request.default_duration),
        format_duration_words(rb.request.max_duration),
        if rb.request.require_reason {
            "required"
        } else {
            "optional"
        }
    )];
    if rb.break_glass {
        lines.push(":rotating_light: *Break-glass:* access is granted at once; approvers and the owner review it afterwards.".into());
    }
    let outlook = wf.approval_outlook(rb, user).await;
    match outlook.stages {
        Ok(stages) => {
            for (i, s) in stages.iter().enumerate() {
                let names: Vec<String> = s.approvers.iter().map(|u| format!("<@{u}>")).collect();
                lines.push(format!(
                    "*{}* ({} of {}): {}",
                    if stages.len() > 1 {
                        format!("Stage {}: {}", i + 1, blocks::user_text(&s.name, 60))
                    } else {
                        "Approvers".into()
                    },
                    s.required,
                    s.approvers.len(),
                    names.join(", ")
                ));
            }
        }
        Err(e) => lines.push(format!(":warning: {e}")),
    }
    if let Some(rule) = outlook.auto_approve {
        lines.push(format!(
            ":zap: You are covered by auto-approval rule `{}` for up to {}.",
            blocks::user_text(&rule.name, 60),
            format_duration_words(rule.max_duration)
        ));
    }
    lines
}
