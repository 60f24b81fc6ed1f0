//! The sentences the request lifecycle says, in Slack's mrkdwn: the lines of
//! audit events (and their notices in the audit channel), the texts of the
//! DMs it sends, the outcome an approval DM is closed with, and the answer
//! the person who acted sees. They live here, beside [`super::blocks`] which
//! wraps them in Block Kit, so the workflow holds no Slack markup and the
//! wording can be read (and changed) in one place. Every function takes typed
//! values and escapes the user-written text it shows.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::blocks::{quoted, user_text};
use crate::duration::{format_duration, format_duration_words};
use crate::grant::Action;
use crate::policy::{Attempt, Refusal};
use crate::request::{AccessRequest, StageState};

mod extending;
pub use extending::*;

/// A mention of a Slack user.
pub fn mention(user: &str) -> String {
    format!("<@{user}>")
}

/// Mentions of several users, comma-separated.
pub fn mentions<'a>(users: impl IntoIterator<Item = &'a str>) -> String {
    users
        .into_iter()
        .map(mention)
        .collect::<Vec<_>>()
        .join(", ")
}

fn title(req: &AccessRequest) -> String {
    user_text(&req.runbook_title, 200)
}

fn stage_name(stage: &StageState) -> String {
    user_text(&stage.name, 100)
}

// ---- creating a request ----

/// Audit line of a new request.
pub fn requested(req: &AccessRequest) -> String {
    let reason = if req.reason.is_empty() {
        String::new()
    } else {
        format!(": “{}”", quoted(&req.reason, 500))
    };
    format!(
        "{} requested {} for {}{reason}{}",
        mention(&req.requester),
        title(req),
        format_duration_words(Duration::from_secs(req.duration_secs)),
        super::inputs::audit_details(req)
    )
}

/// Audit line of a break-glass request, which alerts the audit channel;
/// `on_top_of` names the same person's break-glass requests still open.
pub fn break_glass_taken(req: &AccessRequest, on_top_of: &[String]) -> String {
    format!(
        "<!here> BREAK-GLASS: {} took {} at once{}; approvers are asked to review it",
        mention(&req.requester),
        title(req),
        break_glass_again(on_top_of)
    )
}

/// The words a break-glass review adds when the requester confirmed a
/// second one while the first was open; empty otherwise.
pub fn break_glass_again(on_top_of: &[String]) -> String {
    if on_top_of.is_empty() {
        return String::new();
    }
    let ids: Vec<String> = on_top_of.iter().map(|id| format!("`{id}`")).collect();
    format!(
        ", confirmed as a second grant on top of {} (still open)",
        ids.join(", ")
    )
}

// ---- limits across a person's requests ----

/// The waiting request a resent command finds, instead of a second one.
pub fn still_waiting(req: &AccessRequest) -> String {
    format!(
        ":hourglass_flowing_sand: You already asked for this: request `{}` for *{}* ({}) is still waiting for approval from {}. Nothing new was requested; you will get a message when it is decided.",
        req.id,
        title(req),
        format_duration(Duration::from_secs(req.duration_secs)),
        mentions(req.current_approvers().iter().map(String::as_str))
    )
}

/// Why a second request for the same runbook is refused, and what to do instead.
pub fn already_open(req: &AccessRequest) -> String {
    let id = &req.id;
    match req.status {
        crate::request::Status::Pending => format!(
            "you already have request `{id}` for *{}* waiting for approval, and one request at a time is allowed. Once it is granted, ask for more time with `/access extend {id} <duration>`; or withdraw it with `/access revoke {id}` and ask again",
            title(req)
        ),
        _ => format!(
            "you already have request `{id}` for *{}* ({}), and one request at a time is allowed; for more time, use `/access extend {id} <duration>`",
            title(req),
            req.status.label()
        ),
    }
}

/// Why a second request is refused, for the audit log.
pub fn already_open_reason(req: &AccessRequest) -> String {
    format!(
        "already has request `{}` for it ({})",
        req.id,
        req.status.label()
    )
}

/// A second break-glass request while one is open: the requester confirms
/// by sending `command` (the same request with `confirm` at the end).
pub fn confirm_break_glass(open: &AccessRequest, command: &str) -> String {
    format!(
        ":rotating_light: You already have break-glass access to *{}* (request `{}`, {}). Nothing new was granted. If you really need a second grant on top of it, send the request again with the word `confirm` at the end of the reason: `{command}`. Every approver is told. For more time on the one you have, use `/access extend {} <duration>`.",
        title(open),
        open.id,
        open.status.label(),
        open.id
    )
}

/// The command that confirms a second break-glass request.
pub fn confirm_command(runbook: &str, duration: Duration, reason: &str) -> String {
    format!(
        "/access request {runbook} {} {} confirm",
        format_duration(duration),
        user_text(reason, 500)
    )
    .replace("  ", " ")
}

/// Why more time than a runbook's total allows across the person's open
/// requests is refused, and how much is still possible.
pub fn over_total(
    runbook: &str,
    held: Duration,
    asked: Duration,
    max: Duration,
    open: &[String],
) -> String {
    let ids: Vec<String> = open.iter().map(|id| format!("`{id}`")).collect();
    let left = max.saturating_sub(held);
    let can = if left.is_zero() {
        "nothing more can be asked for until one of them ends".to_string()
    } else {
        format!("you can ask for at most {} more", format_duration(left))
    };
    format!(
        "`{runbook}` allows at most {} in all at a time, and you already have {} of it ({} {}); {} more would make {}: {can}",
        format_duration(max),
        format_duration(held),
        if ids.len() == 1 { "request" } else { "requests" },
        ids.join(", "),
        format_duration(asked),
        format_duration(held + asked)
    )
}

/// Why a request past a runbook's total is refused, for the audit log.
pub fn over_total_reason(held: Duration, asked: Duration, max: Duration) -> String {
    format!(
        "{} more on top of {} held would pass the total of {}",
        format_duration(asked),
        format_duration(held),
        format_duration(max)
    )
}

// ---- refused attempts ----

fn attempt_words(attempt: Attempt) -> &'static str {
    match attempt {
        Attempt::Approve => "approve it",
        Attempt::Deny => "deny it",
        Attempt::ApproveExtension => "approve its extension",
        Attempt::DenyExtension => "deny its extension",
        Attempt::Revoke => "revoke it",
        Attempt::Release => "release it",
        Attempt::Extend => "extend it",
        Attempt::Review => "review it",
        Attempt::Request => "request the same access again",
        Attempt::Cancel => "cancel it",
        Attempt::Feedback => "answer the feedback questions about it",
    }
}

/// Why an attempt was refused, in the third person, for the audit log.
pub fn refusal_reason(refusal: &Refusal) -> String {
    match refusal {
        Refusal::SelfApproval => "it is their own request".into(),
        Refusal::NotApprover(_) => "not an approver of this request".into(),
        Refusal::NotCurrentStage(_) => "not an approver of the current stage".into(),
        Refusal::NoLongerApprover(_) => "no longer in the user group that approves it".into(),
        Refusal::NotAllowedToRevoke(_) => "not the requester, an approver or the owner".into(),
        Refusal::NotRequester(_) => "not the requester".into(),
        other => other.to_string(),
    }
}

/// Audit line of a refused attempt.
pub fn refused(user: &str, attempt: Attempt, why: &str) -> String {
    format!(
        "{} tried to {} and was refused: {why}",
        mention(user),
        attempt_words(attempt)
    )
}

/// The audit channel's notice when one person is refused again and again.
pub fn refused_repeatedly(user: &str, count: usize, within: Duration, latest: &str) -> String {
    format!(
        "{} has been refused {count} times in {}. Latest: {latest}",
        mention(user),
        format_duration(within)
    )
}

/// Audit line of a request an auto-approval rule approved.
pub fn auto_approved(rule: &str, max: Duration) -> String {
    format!(
        "auto-approved by rule `{}` (up to {})",
        user_text(rule, 100),
        format_duration_words(max)
    )
}

/// The context line on an approval DM: which stage, how many approvals,
/// after an optional `note` (a reminder, who approved the stage before).
pub fn stage_note(req: &AccessRequest, stage: usize, note: &str) -> String {
    let s = &req.stages[stage];
    let line = if req.stages.len() > 1 {
        format!(
            "Stage {} of {} ({}): {} approval(s) needed.",
            stage + 1,
            req.stages.len(),
            stage_name(s),
            s.required
        )
    } else if s.required > 1 {
        format!("{} approvals needed.", s.required)
    } else {
        String::new()
    };
    if note.is_empty() {
        line
    } else {
        format!("{note} {line}").trim().to_string()
    }
}

// ---- deciding ----

/// Audit line of a denial.
pub fn denied(user: &str) -> String {
    format!("denied by {}", mention(user))
}

/// How approval DMs close on a denial.
pub fn denied_outcome(user: &str) -> String {
    format!(":no_entry: Denied by {}", mention(user))
}

/// The requester's DM on a denial.
pub fn denied_notice(req: &AccessRequest, user: &str) -> String {
    format!(
        ":no_entry: Your request for *{}* was denied by {}.",
        title(req),
        mention(user)
    )
}

pub const DENIED_ANSWER: &str = "Denied. The requester has been told.";

/// Audit line of an approval the stage still needs more after.
pub fn approval_counted(user: &str, remaining: u32) -> String {
    format!("approved by {}; {remaining} more needed", mention(user))
}

/// How the approver's own DM closes when more approvals are needed.
pub fn approval_counted_outcome(remaining: u32) -> String {
    format!(":ballot_box_with_check: You approved. Waiting for {remaining} more approval(s).")
}

pub fn approval_counted_answer(remaining: u32) -> String {
    format!("Approved; {remaining} more approval(s) needed.")
}

/// How a completed stage's DMs close.
pub fn stage_approved_outcome(done: &StageState, user: &str, next: &StageState) -> String {
    format!(
        ":ballot_box_with_check: Stage “{}” approved by {}; now with “{}”.",
        stage_name(done),
        mention(user),
        stage_name(next)
    )
}

/// Audit line of a completed stage.
pub fn stage_approved(done: &StageState, user: &str) -> String {
    format!("stage “{}” approved by {}", stage_name(done), mention(user))
}

/// The note on the next stage's approval DMs.
pub fn previous_stage_approved(user: &str) -> String {
    format!("{} approved the previous stage.", mention(user))
}

/// A press that raced another approval which moved the request on.
pub fn stage_moved_on(id: &str) -> String {
    format!("request {id} moved on to its next stage while you pressed; nothing was counted, press again if you approve it there")
}

pub const STAGE_APPROVED_ANSWER: &str = "Approved; the request moves to the next stage.";

/// Audit line of the approval that completes the last stage.
pub fn approved(by: &[&str]) -> String {
    format!("approved by {}", mentions(by.iter().copied()))
}

/// How approval DMs close once the request is approved.
pub fn approved_outcome(by: &[&str]) -> String {
    format!(
        ":white_check_mark: Approved by {}",
        mentions(by.iter().copied())
    )
}

/// The requester's DM once the request is approved.
pub fn approved_notice(req: &AccessRequest, by: &[&str]) -> String {
    format!(
        ":ballot_box_with_check: Your request for *{}* was approved by {}. Granting access now…",
        title(req),
        mentions(by.iter().copied())
    )
}

pub const APPROVED_ANSWER: &str = "Approved. Access is being granted.";

// ---- granting and revoking ----

/// Audit line of a grant.
pub fn granted(req: &AccessRequest, expires_at: DateTime<Utc>) -> String {
    format!(
        "granted to {} until {}",
        mention(&req.requester),
        expires_at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// Why a request whose grant failed ended, as stored on the request.
pub fn grant_failed_reason(error: &str) -> String {
    format!("grant failed: {error}")
}

/// Audit line of a failed grant.
pub fn grant_failed(error: &str) -> String {
    format!("grant failed: {}", user_text(error, 600))
}

/// The requester's DM when the grant failed.
pub fn grant_failed_notice(req: &AccessRequest, audit_channel: &str) -> String {
    format!(
        ":x: accessbot could not grant *{}*: the system refused. Nothing has been granted. The audit channel has the details; try again later or ask <#{}> for help.",
        title(req),
        audit_channel
    )
}

/// Why a grant or revoke could not run: its runbook is gone from the catalog.
pub fn runbook_gone(runbook_id: &str, action: Action) -> String {
    match action {
        Action::Grant => format!("runbook `{runbook_id}` is no longer in the catalog"),
        Action::Revoke => format!(
            "runbook `{runbook_id}` is no longer in the catalog; restore its file so the access can be revoked"
        ),
    }
}

/// Why access ended when nobody said otherwise.
pub const ENDED: &str = "revoked";

/// Why access ended when its time was up.
pub const TIME_UP: &str = "expired";

/// Why a revoke ended, when another request keeps the access going.
pub fn access_continues(why: &str, other: &str) -> String {
    format!("{why}; the access itself continues under request {other}")
}

/// How a waiting extension's DMs close when the access ends first.
pub const EXTENSION_OUTLIVED: &str =
    ":hourglass: The access ended before the extension was decided.";

/// Audit line of a revoke whose target was read back and no longer holds
/// the access.
pub fn revoke_verified(target: &str) -> String {
    format!("read back {target}: the access is gone")
}

/// Audit line of a revoke that the target accepted but did not carry out:
/// read back, the access is still there.
pub fn revoke_unverified(attempt: u32, target: &str, wait: Duration) -> String {
    format!(
        "attempt {attempt}: the revoke was accepted but {target} still holds the access when read back; revoking again in {}",
        format_duration_words(wait)
    )
}

/// Audit line of access `accessbot reconcile --fix` removed: the request
/// had ended but the target still held the access.
pub fn reconcile_revoked(target: &str) -> String {
    format!("the request had ended but {target} still held the access; `accessbot reconcile --fix` removed it")
}

/// Refusal of a request for a runbook whose provider needs the person's
/// identity in the target, when neither the config nor Slack gives one.
pub fn no_identity(runbook: &str, user: &str) -> String {
    format!(
        "Ask an accessbot admin to add `{user} = \"you@company.com\"` under [identities] in accessbot's config: `{runbook}` needs your login in another system, and Slack does not share your email with accessbot (the app's scope `users:read.email`). Then ask again."
    )
}

/// Audit line of the clean-up revoke after a failed grant.
pub const CLEANED_UP: &str = "clean-up after the failed grant done; nothing is granted";

/// Audit line of a revoke.
pub fn revoked(req: &AccessRequest, why: &str) -> String {
    format!("access of {} revoked ({why})", mention(&req.requester))
}

/// The requester's one DM when access ended.
pub fn revoked_notice(req: &AccessRequest, why: &str) -> String {
    format!(":lock: Your access to *{}* has ended ({why}).", title(req))
}

/// Audit line of a failed revoke.
pub fn revoke_failed(attempt: u32, error: &str, wait: Duration) -> String {
    format!(
        "attempt {attempt} failed: {}; trying again in {}",
        user_text(error, 600),
        format_duration_words(wait)
    )
}

// ---- ending early and reviews ----

/// Audit line of a pending request its requester withdrew.
pub fn withdrawn(user: &str) -> String {
    format!("withdrawn by {}", mention(user))
}

/// How approval DMs close on a withdrawal.
pub fn withdrawn_outcome(user: &str) -> String {
    format!(":leftwards_arrow_with_hook: Withdrawn by {}", mention(user))
}

pub const WITHDRAWN_ANSWER: &str = "Your request is withdrawn.";

/// Why access ended when its requester released it.
pub const RELEASED: &str = "released early by the requester";

/// Why access ended when someone else revoked it.
pub fn revoked_early(user: &str) -> String {
    format!("revoked early by {}", mention(user))
}

pub const REVOKING_ANSWER: &str = "Revoking now; you will get a message when it is done.";

/// What a break-glass reviewer's press records.
pub fn review(user: &str, flagged: bool) -> String {
    if flagged {
        format!(
            ":triangular_flag_on_post: Flagged for follow-up by {}",
            mention(user)
        )
    } else {
        format!(":white_check_mark: Acknowledged by {}", mention(user))
    }
}

/// What an acknowledgement records while a flag stands: the flag is not
/// lifted by someone else's acknowledgement, only by the owner.
pub fn acknowledged_flag_stands(user: &str, flagged_by: &str, owner: &str) -> String {
    format!(
        ":white_check_mark: Acknowledged by {}; the flag raised by {} stands until the owner {} clears it",
        mention(user),
        mention(flagged_by),
        mention(owner)
    )
}

/// What the owner's clearing of a flag records.
pub fn flag_cleared(user: &str) -> String {
    format!(
        ":ballot_box_with_check: Flag cleared by {} after follow-up",
        mention(user)
    )
}

/// Why someone other than the owner cannot clear a flag.
pub fn only_owner_clears(owner: &str) -> String {
    format!(
        "only the owner {} can clear a flag; ask them once it is followed up",
        mention(owner)
    )
}

/// Why there is no flag to clear.
pub const NO_FLAG: &str = "this access is not flagged; there is nothing to clear";

// ---- the timer ----

/// Audit line of a request nobody decided in time.
pub const EXPIRED: &str = "no decision before the approval timeout";

/// How approval DMs close when nobody decided in time.
pub const EXPIRED_OUTCOME: &str = ":hourglass: Expired: nobody decided in time.";

/// The requester's DM when nobody decided in time.
pub fn expired_notice(req: &AccessRequest) -> String {
    format!(
        ":hourglass: Your request for *{}* expired: nobody decided in time. You can ask again with `/access`.",
        title(req)
    )
}

/// Audit line of a reminder.
pub const REMINDED: &str = "approvers reminded";

/// The note on a reminder's approval DMs.
pub const REMINDER_NOTE: &str = ":bell: Reminder: this request is still waiting for you.";

/// Audit line of an escalation.
pub fn escalated(added: &[String]) -> String {
    format!(
        "no decision in time; fallback approvers added: {}",
        mentions(added.iter().map(String::as_str))
    )
}

/// The note on an escalation's approval DMs.
pub const ESCALATED_NOTE: &str =
    ":arrow_up: Escalated to you: the designated approvers did not answer in time.";

// ---- needing a person ----

/// Audit line of a failed grant whose program never started or whose
/// request never left: nothing of it happened, so nothing is cleaned up.
pub fn grant_failed_untouched(error: &str) -> String {
    format!(
        "grant failed before anything reached the system, so there is nothing to clean up: {}",
        user_text(error, 600)
    )
}

/// Audit line (and the audit channel's loud notice) when a revoke, or the
/// clean-up after a failed grant, failed in a way no retry can fix.
/// `owner` is the runbook's owner, empty when the runbook is gone; then the
/// request's approvers are asked.
pub fn needs_attention(req: &AccessRequest, owner: &str, error: &str) -> String {
    let who = if owner.is_empty() {
        mentions(req.all_approvers().map(String::as_str))
    } else {
        mention(owner)
    };
    let (what, todo) = if req.grant_failed {
        (
            "the clean-up after the failed grant",
            "check what part of the grant happened and undo it",
        )
    } else {
        (
            "the revoke",
            "the access may still be on: take it away by hand",
        )
    };
    format!(
        "<!here> request `{}` needs a person: {what} of {} for {} cannot run, and trying again will not help: {}. {who}: in {}, {todo}; then close the request with `/access resolve {}` or the button below.",
        req.id,
        title(req),
        mention(&req.requester),
        user_text(error, 600),
        user_text(&req.system, 200),
        req.id
    )
}

/// The label of the audit notice's button that closes the request.
pub const RESOLVE_BUTTON: &str = "Checked: close it";

/// Audit line of a request someone closed after it needed attention.
pub fn resolved(user: &str) -> String {
    format!(
        "resolved by {}, who checked the system; the request is closed",
        mention(user)
    )
}

/// Why the access ended, when it was closed by hand.
pub fn resolved_reason(user: &str) -> String {
    format!(
        "closed by {} after the automatic revoke could not run",
        mention(user)
    )
}

/// What the person who closed it reads.
pub fn resolved_answer(id: &str) -> String {
    format!("Request `{id}` is closed; the audit log records that you checked the system.")
}

// ---- slash commands ----

/// The answer to a slash command other than `/access` sent to this app.
pub fn other_command(command: &str) -> String {
    format!(
        ":no_entry_sign: This app only handles `/access`; `{}` was not run and nothing was saved. Type `/access help` to see what it can do.",
        quoted(command, 32)
    )
}

// ---- the audit channel ----

/// An audit event's kind as people read it in the audit channel
/// (`revoke_failed` is "Revoke failed — will retry"). A kind without its
/// own words reads as its name with spaces.
pub fn event_name(kind: &str) -> String {
    let words = match kind {
        "requested" => "Access requested",
        "break_glass" => "Break-glass access taken",
        "auto_approved" => "Approved automatically",
        "approved" => "Approved",
        "stage_approved" => "Stage approved",
        "denied" => "Denied",
        "withdrawn" => "Withdrawn",
        "cancelled" => "Request cancelled",
        "granted" => "Access granted",
        "failed" | "grant_failed" => "Grant failed",
        "revoked" => "Access revoked",
        "released" => "Released early",
        "revoke_requested" => "Ended early",
        "revoke_failed" => "Revoke failed — will retry",
        "revoke_verified" => "Revoke verified",
        "revoke_unverified" => "Access still present after revoke — will retry",
        "reconcile_revoked" => "Left-over access removed (reconcile)",
        "expired" => "Request expired",
        "reminded" => "Approvers reminded",
        "escalated" => "Escalated",
        "review_acknowledged" => "Break-glass review: acknowledged",
        "review_flagged" => "Break-glass review: flagged",
        "review_flag_cleared" => "Break-glass review: flag cleared",
        "extension_requested" => "Extension requested",
        "extension_approval" => "Extension approval counted",
        "extension_stage_approved" => "Extension stage approved",
        "extended" => "Access extended",
        "extension_denied" => "Extension refused",
        "scheduled" => "Scheduled",
        other => {
            let spaced = other.replace('_', " ");
            let mut chars = spaced.chars();
            return match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            };
        }
    };
    words.to_string()
}

/// The context line that carries a request's ID, which people need for
/// `/access status`, `/access extend` and `/access revoke`.
pub fn request_ref(req: &AccessRequest) -> String {
    format!("Request ID `{}`", req.id)
}

// ---- cancelling a pending request ----

/// The audit line of a request its requester cancelled.
pub fn cancelled(user: &str) -> String {
    format!("cancelled by the requester {}", mention(user))
}

/// What each approver's message says once the request is cancelled.
pub fn cancelled_outcome(user: &str) -> String {
    format!(
        ":heavy_multiplication_x: Cancelled by the requester {}; nothing to decide.",
        mention(user)
    )
}

/// The requester's answer to a cancel that went through.
pub fn cancelled_answer(req: &AccessRequest) -> String {
    format!(
        ":heavy_multiplication_x: Your request for *{}* is cancelled; its approvers have been told. Request ID `{}`",
        user_text(&req.runbook_title, 200),
        req.id
    )
}
