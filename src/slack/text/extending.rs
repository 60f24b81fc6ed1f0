//! The words of extending access: asking for more time, its approvals,
//! and the answers and notices when it is granted or refused. Part of
//! [`super`], which re-exports them, so callers say `text::extended(…)`.

use std::time::Duration;

use super::*;

/// Audit line of an extension an auto-approval rule approved.
pub fn extended_by_rule(extra: Duration, rule: &str) -> String {
    format!(
        "extended by {} (auto-approved by rule `{}`)",
        format_duration_words(extra),
        rule
    )
}

pub fn extended_answer(extra: Duration) -> String {
    format!("Extended by {}.", format_duration_words(extra))
}

/// Audit line of an extension asked for.
pub fn extension_requested(user: &str, extra: Duration) -> String {
    format!(
        "{} asks for {} more",
        mention(user),
        format_duration_words(extra)
    )
}

pub fn extension_requested_answer(extra: Duration) -> String {
    format!(
        "Asked the approvers for {} more; you will get a message with their answer.",
        format_duration_words(extra)
    )
}

/// Audit line of an extension approval the stage still needs more after.
pub fn extension_approval_counted(user: &str, extra: Duration, remaining: u32) -> String {
    format!(
        "{} approved the extension of {}; {} more needed",
        mention(user),
        format_duration_words(extra),
        remaining
    )
}

pub fn extension_approval_counted_answer(remaining: u32) -> String {
    format!("Approval counted; {remaining} more needed for the extension.")
}

/// How a completed extension stage's DMs close.
pub fn extension_stage_approved_outcome(
    user: &str,
    done: &StageState,
    next: &StageState,
) -> String {
    format!(
        ":ballot_box_with_check: Extension approved by {} for stage “{}”; now with “{}”.",
        mention(user),
        stage_name(done),
        stage_name(next)
    )
}

/// Audit line of a completed extension stage.
pub fn extension_stage_approved(extra: Duration, done: &StageState, user: &str) -> String {
    format!(
        "extension of {}: stage “{}” approved by {}",
        format_duration_words(extra),
        stage_name(done),
        mention(user)
    )
}

pub const EXTENSION_STAGE_APPROVED_ANSWER: &str =
    "Approved; the extension moves to the next stage.";

/// Audit line of an approved extension.
pub fn extended(extra: Duration, by: &[&str]) -> String {
    format!(
        "extended by {} (approved by {})",
        format_duration_words(extra),
        mentions(by.iter().copied())
    )
}

/// How extension DMs close once it is approved (also the requester's DM and the answer).
pub fn extended_outcome(extra: Duration, user: &str) -> String {
    format!(
        ":white_check_mark: Extension of {} approved by {}",
        format_duration_words(extra),
        mention(user)
    )
}

/// Audit line of a refused extension.
pub fn extension_denied(extra: Duration, user: &str) -> String {
    format!(
        "extension of {} refused by {}",
        format_duration_words(extra),
        mention(user)
    )
}

/// How extension DMs close once it is refused (also the requester's DM and the answer).
pub fn extension_denied_outcome(extra: Duration, user: &str) -> String {
    format!(
        ":no_entry: Extension of {} refused by {}",
        format_duration_words(extra),
        mention(user)
    )
}

/// Why an extension was refused for going past the limit, and how much is
/// still possible (with the command that asks for it).
pub fn extension_over_limit(id: &str, asked: Duration, cap: Duration, used: Duration) -> String {
    let left = cap.saturating_sub(used);
    if left.is_zero() {
        return format!(
            "this access has already had its limit of {} in total, so it cannot be extended; ask for it again with `/access` when it ends",
            format_duration_words(cap)
        );
    }
    format!(
        "{} more would go past the limit of {} in total for this access (it has had {}). You can still extend by up to {}: `/access extend {id} {}`",
        format_duration_words(asked),
        format_duration_words(cap),
        format_duration_words(used),
        format_duration_words(left),
        format_duration(left).replace(' ', "")
    )
}

/// The requester's DM with an extension's outcome.
pub fn extension_decided_notice(req: &AccessRequest, outcome: &str) -> String {
    format!("{outcome}, for *{}*.", title(req))
}
