//! Block Kit: every message, modal and Home tab the bot shows, built in one
//! place so the limits in SLACK.md (text lengths, block counts) are enforced
//! once. User-supplied text is escaped so a reason cannot mention `@channel`
//! or forge a link.

use serde_json::{json, Value};

use super::text::{self, mention};
use crate::duration::{format_duration, format_duration_words};
use crate::request::{AccessRequest, Status};
use crate::runbook::Runbook;

/// Action IDs of our buttons and menus.
pub mod action {
    pub const APPROVE: &str = "approve";
    pub const DENY: &str = "deny";
    pub const EXTEND: &str = "extend";
    pub const RELEASE: &str = "release";
    pub const EXTENSION_APPROVE: &str = "extension_approve";
    pub const EXTENSION_DENY: &str = "extension_deny";
    pub const REVIEW_ACK: &str = "review_ack";
    pub const REVIEW_FLAG: &str = "review_flag";
    pub const RESOLVE: &str = "resolve";
    pub const REVIEW_CLEAR: &str = "review_clear";
    pub const RUNBOOK_SELECT: &str = "runbook_select";
    pub const DURATION_INPUT: &str = "duration_input";
    pub const REASON_INPUT: &str = "reason_input";
}

/// Block IDs and callback ID of the request modal.
pub mod modal {
    pub const CALLBACK_ID: &str = "access_request";
    pub const RUNBOOK: &str = "runbook";
    pub const DURATION: &str = "duration";
    pub const REASON: &str = "reason";
    pub const PREVIEW: &str = "preview";
}

/// A message: the notification text and its blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub text: String,
    pub blocks: Value,
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Cuts `text` to at most `max` characters, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// User text made safe for mrkdwn, control characters removed, at most `max` chars.
pub fn user_text(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    truncate(&escape(&clean), max)
}

/// Text a person typed (a reason, an input), shown as one quoted paragraph
/// that cannot fake structure: line breaks and other control characters
/// become spaces, bidirectional overrides and zero-width characters are
/// dropped (no U+202E reversing "approved"), and mrkdwn markup characters
/// are replaced by look-alikes that Slack does not format (no `*bold*`,
/// no code fences, no strike-through). Mentions stay escaped.
pub fn quoted(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = match c {
            '*' => '∗',
            '_' => 'ˍ',
            '~' => '∼',
            '`' => 'ˋ',
            c if crate::request::is_invisible_format(c) => continue,
            c if c.is_control() || c.is_whitespace() => ' ',
            c => c,
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    truncate(&escape(out.trim_end()), max)
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, 3000)}})
}

fn context(text: &str) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, 3000)}]})
}

fn header(text: &str) -> Value {
    json!({"type": "header", "text": {"type": "plain_text", "text": truncate(text, 150), "emoji": true}})
}

fn button(text: &str, action_id: &str, value: &str, style: Option<&str>) -> Value {
    let mut b = json!({
        "type": "button",
        "text": {"type": "plain_text", "text": truncate(text, 75), "emoji": true},
        "action_id": action_id,
        "value": truncate(value, 2000),
    });
    if let Some(s) = style {
        b["style"] = json!(s);
    }
    b
}

fn actions(block_id: &str, elements: Vec<Value>) -> Value {
    json!({"type": "actions", "block_id": truncate(block_id, 255), "elements": elements})
}

/// A primary "yes" and a dangerous "no" button acting on the request, as
/// `(label, action_id)` pairs, in a block named `<kind>:<request id>`.
fn yes_no(req: &AccessRequest, kind: &str, yes: (&str, &str), no: (&str, &str)) -> Value {
    actions(
        &format!("{kind}:{}", req.id),
        vec![
            button(yes.0, yes.1, &req.id, Some("primary")),
            button(no.0, no.1, &req.id, Some("danger")),
        ],
    )
}

fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    // Slack renders this in each reader's own time zone.
    format!(
        "<!date^{}^{{date_short_pretty}} at {{time}}|{}>",
        at.timestamp(),
        at.format("%Y-%m-%d %H:%M UTC")
    )
}

fn duration_of(req: &AccessRequest) -> String {
    format_duration_words(std::time::Duration::from_secs(req.duration_secs))
}

/// The context line with the request's ID, kept out of the main text.
fn request_ref(req: &AccessRequest) -> Value {
    context(&text::request_ref(req))
}

/// What the access allows, in the runbook's words, when it has any.
fn allows(req: &AccessRequest) -> String {
    if req.description.trim().is_empty() {
        String::new()
    } else {
        format!("\n*What it allows:* {}", user_text(&req.description, 1000))
    }
}

/// The facts every message about a request shows.
fn request_fields(req: &AccessRequest) -> Value {
    let reason = if req.reason.is_empty() {
        "_none given_".to_string()
    } else {
        format!(">{}", quoted(&req.reason, 1900))
    };
    json!({"type": "section", "fields": [
        {"type": "mrkdwn", "text": format!("*Requester*\n{}", mention(&req.requester))},
        {"type": "mrkdwn", "text": format!("*Access*\n{}", user_text(&req.runbook_title, 200))},
        {"type": "mrkdwn", "text": format!("*System*\n{}", user_text(&req.system, 200))},
        {"type": "mrkdwn", "text": format!("*Duration*\n{}", duration_of(req))},
        {"type": "mrkdwn", "text": format!("*Reason*\n{reason}")},
    ]})
}

/// The DM an approver gets, with Approve / Deny.
pub fn approval_request(req: &AccessRequest, note: &str) -> Msg {
    let text = format!(
        "{} asks for {} ({}) for {}",
        mention(&req.requester),
        user_text(&req.runbook_title, 200),
        user_text(&req.system, 200),
        duration_of(req)
    );
    let summary = format!(
        "{} asks for *{}* ({}) for *{}*.{}\nThis request waits for an answer until {}; after that it expires.",
        mention(&req.requester),
        user_text(&req.runbook_title, 200),
        user_text(&req.system, 200),
        duration_of(req),
        allows(req),
        time(req.approval_deadline)
    );
    let mut blocks = vec![
        header("Access request"),
        section(&summary),
        request_fields(req),
    ];
    blocks.extend(super::inputs::details_block(req));
    if !note.is_empty() {
        blocks.push(context(note));
    }
    blocks.push(request_ref(req));
    blocks.push(yes_no(
        req,
        "decide",
        ("Approve", action::APPROVE),
        ("Deny", action::DENY),
    ));
    Msg {
        text: truncate(&text, 3000),
        blocks: json!(blocks),
    }
}

/// The approver DM once the request is decided: the outcome, no buttons.
pub fn approval_closed(req: &AccessRequest, outcome: &str) -> Msg {
    Msg {
        text: truncate(
            &format!(
                "{}: {} for {}",
                outcome,
                user_text(&req.runbook_title, 200),
                mention(&req.requester)
            ),
            3000,
        ),
        blocks: json!([
            header("Access request"),
            request_fields(req),
            section(outcome),
            request_ref(req),
        ]),
    }
}

/// A plain notice, optionally with buttons acting on the request.
pub fn notice(text: &str, buttons: &[(&str, &str)], request_id: &str) -> Msg {
    let mut blocks = vec![section(text)];
    if !buttons.is_empty() {
        blocks.push(actions(
            &format!("grant:{request_id}"),
            buttons
                .iter()
                .map(|(label, id)| button(label, id, request_id, None))
                .collect(),
        ));
    }
    Msg {
        text: truncate(text, 3000),
        blocks: json!(blocks),
    }
}

/// A notice about a request: the words, the request's ID in a context line,
/// and optionally buttons acting on it.
pub fn request_notice(req: &AccessRequest, text: &str, buttons: &[(&str, &str)]) -> Msg {
    let mut msg = notice(text, buttons, &req.id);
    if let Some(blocks) = msg.blocks.as_array_mut() {
        blocks.insert(1, request_ref(req));
    }
    msg
}

/// The label of the Extend button: by how much one press extends.
fn extend_label(extend_by: std::time::Duration) -> String {
    if extend_by.is_zero() {
        "Extend".to_string()
    } else {
        format!("Extend by {}", format_duration_words(extend_by))
    }
}

/// The DM approvers get when the requester asks for more time.
pub fn extension_request(req: &AccessRequest, extra: std::time::Duration) -> Msg {
    let text = format!(
        "{} asks to extend {} ({}) by {}",
        mention(&req.requester),
        user_text(&req.runbook_title, 200),
        user_text(&req.system, 200),
        format_duration_words(extra)
    );
    Msg {
        text: truncate(&text, 3000),
        blocks: json!([
            header("Extension request"),
            section(&format!("{text}.{}", allows(req))),
            request_fields(req),
            request_ref(req),
            yes_no(
                req,
                "extend",
                ("Approve extension", action::EXTENSION_APPROVE),
                ("Deny extension", action::EXTENSION_DENY),
            ),
        ]),
    }
}

/// The requester's DM when access is granted: instructions, expiry, Extend
/// (by `extend_by`, what one press adds) / Release.
pub fn granted(req: &AccessRequest, instructions: &str, extend_by: std::time::Duration) -> Msg {
    let until = req.expires_at.map(time).unwrap_or_default();
    let text = format!(
        ":white_check_mark: Your access to *{}* ({}) is granted until {until}.\n{}",
        user_text(&req.runbook_title, 200),
        user_text(&req.system, 200),
        user_text(instructions, 2000),
    );
    request_notice(
        req,
        &text,
        &[
            (&extend_label(extend_by), action::EXTEND),
            ("Release now", action::RELEASE),
        ],
    )
}

/// The requester's warning shortly before the grant ends.
pub fn expiry_warning(req: &AccessRequest, extend_by: std::time::Duration) -> Msg {
    let until = req.expires_at.map(time).unwrap_or_default();
    request_notice(
        req,
        &format!(
            ":hourglass: Your access to *{}* ends at {until}. Extend it if you still need it, or release it now if you are done.",
            user_text(&req.runbook_title, 200)
        ),
        &[
            (&extend_label(extend_by), action::EXTEND),
            ("Release now", action::RELEASE),
        ],
    )
}

/// The after-the-fact review a break-glass grant asks of its approvers;
/// `note` says when it came on top of another (see `text::break_glass_again`).
pub fn break_glass_review(req: &AccessRequest, note: &str) -> Msg {
    let text = format!(
        ":rotating_light: *Break-glass access* was granted at once to {} for {} ({}) for {}{note}. Please review it.",
        mention(&req.requester),
        user_text(&req.runbook_title, 200),
        user_text(&req.system, 200),
        duration_of(req)
    );
    Msg {
        text: truncate(&text, 3000),
        blocks: json!([
            section(&format!("{text}{}", allows(req))),
            request_fields(req),
            request_ref(req),
            yes_no(
                req,
                "review",
                ("Acknowledge", action::REVIEW_ACK),
                ("Flag for follow-up", action::REVIEW_FLAG),
            ),
        ]),
    }
}

/// The owner's review DM while the access is flagged: the flag, and the
/// button that clears it once it is followed up.
pub fn review_flagged(req: &AccessRequest, outcome: &str) -> Msg {
    Msg {
        text: truncate(outcome, 3000),
        blocks: json!([
            header("Break-glass review"),
            request_fields(req),
            section(outcome),
            request_ref(req),
            actions(
                &format!("review:{}", req.id),
                vec![button("Clear flag", action::REVIEW_CLEAR, &req.id, None)],
            ),
        ]),
    }
}

/// The grant DM once the access has ended: what was granted, without the
/// buttons (the one message saying it ended comes after it).
pub fn granted_closed(req: &AccessRequest) -> Msg {
    let until = req.expires_at.map(time).unwrap_or_default();
    request_notice(
        req,
        &format!(
            ":white_check_mark: Your access to *{}* ({}) was granted until {until}.",
            user_text(&req.runbook_title, 200),
            user_text(&req.system, 200),
        ),
        &[],
    )
}

/// The expiry warning once the access has ended: the warning, without the buttons.
pub fn expiry_warning_closed(req: &AccessRequest) -> Msg {
    request_notice(
        req,
        &format!(
            ":hourglass: Your access to *{}* was due to end soon.",
            user_text(&req.runbook_title, 200)
        ),
        &[],
    )
}

/// The notice posted to the audit channel for one event.
pub fn audit_notice(kind: &str, req: &AccessRequest, line: &str) -> Msg {
    let icon = match kind {
        "requested" => ":inbox_tray:",
        "approved" | "auto_approved" | "stage_approved" => ":ballot_box_with_check:",
        "granted" | "extended" => ":white_check_mark:",
        "denied" => ":no_entry:",
        "revoked" | "released" => ":lock:",
        "expired" => ":hourglass:",
        "break_glass" | "review_flagged" => ":rotating_light:",
        "failed" | "revoke_failed" | "grant_failed" => ":x:",
        "refused" => ":warning:",
        "resolved" => ":white_check_mark:",
        "review_flag_cleared" => ":ballot_box_with_check:",
        _ => ":memo:",
    };
    let mark = if crate::audit_notice::is_loud(kind) {
        format!("{} ", super::digest::LOUD_MARK)
    } else {
        String::new()
    };
    let text = format!("{mark}{icon} *{}*: {line}", text::event_name(kind));
    let reason = if req.reason.trim().is_empty() {
        String::new()
    } else {
        format!(" · reason: {}", quoted(&req.reason, 300))
    };
    Msg {
        text: truncate(&text, 3000),
        blocks: json!([
            section(&text),
            context(&format!(
                "{} (`{}`) · {} · requester {} · {}{reason} · {}",
                user_text(&req.runbook_title, 200),
                user_text(&req.runbook_id, 100),
                user_text(&req.system, 200),
                mention(&req.requester),
                duration_of(req),
                text::request_ref(req)
            )),
        ]),
    }
}

/// The audit channel's loud notice that a request needs a person, with a
/// button that closes it (for its owner and approvers, checked on press).
pub fn needs_attention_notice(req: &AccessRequest, line: &str) -> Msg {
    let text = format!(":rotating_light: *needs attention* {line}");
    Msg {
        text: truncate(&text, 3000),
        blocks: json!([
            section(&text),
            context(&format!(
                "{} · {} · requester {} · request `{}`",
                user_text(&req.runbook_title, 200),
                user_text(&req.system, 200),
                mention(&req.requester),
                req.id
            )),
            actions(
                &format!("resolve:{}", req.id),
                vec![button(
                    super::text::RESOLVE_BUTTON,
                    action::RESOLVE,
                    &req.id,
                    Some("danger")
                )],
            ),
        ]),
    }
}

/// The answer to a slash command: ephemeral text.
pub fn ephemeral(text: &str) -> Value {
    json!({"response_type": "ephemeral", "text": truncate(text, 3000)})
}

/// `{"response_action": "errors", ...}` for a modal submission.
pub fn view_errors(errors: &[(&str, String)]) -> Value {
    let map: serde_json::Map<String, Value> = errors
        .iter()
        .map(|(block, msg)| (block.to_string(), json!(truncate(msg, 150))))
        .collect();
    json!({"response_action": "errors", "errors": map})
}

/// The answer to the Events API's `url_verification`: its challenge, echoed.
pub fn challenge_answer(challenge: &str) -> Value {
    json!({ "challenge": challenge })
}

/// The `/access` modal: pick a runbook, a duration and a reason. With a
/// runbook selected, `preview` lines say who will approve, in which stages.
pub fn request_modal(
    runbooks: &[&Runbook],
    selected: Option<&Runbook>,
    preview: &[String],
) -> Value {
    let options: Vec<Value> = runbooks
        .iter()
        .take(100)
        .map(|r| {
            json!({
                "text": {"type": "plain_text", "text": truncate(&r.title, 75)},
                "description": {"type": "plain_text", "text": truncate(&r.system, 75)},
                "value": truncate(&r.id, 150),
            })
        })
        .collect();
    let mut select = json!({
        "type": "static_select",
        "action_id": action::RUNBOOK_SELECT,
        "placeholder": {"type": "plain_text", "text": "Choose what you need"},
        "options": options,
    });
    let mut duration = json!({
        "type": "plain_text_input",
        "action_id": action::DURATION_INPUT,
        "placeholder": {"type": "plain_text", "text": "e.g. 30m, 2h, 1d"},
    });
    let mut reason_optional = false;
    if let Some(r) = selected {
        if let Some(opt) = select["options"]
            .as_array()
            .and_then(|o| o.iter().find(|o| o["value"] == r.id.as_str()))
            .cloned()
        {
            select["initial_option"] = opt;
        }
        duration["initial_value"] =
            json!(format_duration(r.request.default_duration).replace(' ', ""));
        reason_optional = !r.request.require_reason;
    }
    let mut blocks = vec![
        json!({"type": "input", "block_id": modal::RUNBOOK, "dispatch_action": true,
               "label": {"type": "plain_text", "text": "What do you need access to?"}, "element": select}),
    ];
    if let Some(r) = selected {
        let mut text = format!(
            "*{}* ({})\n{}",
            user_text(&r.title, 200),
            user_text(&r.system, 200),
            user_text(&r.description, 1000)
        );
        for line in preview {
            text.push('\n');
            text.push_str(line);
        }
        blocks.push(json!({"type": "section", "block_id": modal::PREVIEW,
            "text": {"type": "mrkdwn", "text": truncate(&text, 3000)}}));
        blocks.extend(super::inputs::modal_blocks(r));
    }
    blocks.push(json!({"type": "input", "block_id": modal::DURATION,
        "label": {"type": "plain_text", "text": "For how long?"},
        "hint": {"type": "plain_text", "text": "As you would say it: 30m, 90 minutes, 2h, 1h30m, half an hour, 1d."},
        "element": duration}));
    blocks.push(json!({"type": "input", "block_id": modal::REASON, "optional": reason_optional,
        "label": {"type": "plain_text", "text": "Why do you need it?"},
        "element": {"type": "plain_text_input", "action_id": action::REASON_INPUT, "multiline": true, "max_length": 1000}}));
    json!({
        "type": "modal",
        "callback_id": modal::CALLBACK_ID,
        "title": {"type": "plain_text", "text": "Request access"},
        "submit": {"type": "plain_text", "text": "Request"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    })
}

/// One line about a request, for `/access status` and the Home tab.
pub fn status_line(req: &AccessRequest) -> String {
    let when = match req.status {
        Status::Active => req
            .expires_at
            .map(|t| format!(" until {}", time(t)))
            .unwrap_or_default(),
        Status::Pending => format!(
            " (expires {} if undecided){}",
            time(req.approval_deadline),
            super::inputs::status_when(req)
        ),
        Status::Scheduled => super::inputs::status_when(req),
        Status::NeedsAttention => {
            " (the automatic revoke cannot run; its owner has been asked to check)".to_string()
        }
        _ => String::new(),
    };
    format!(
        "`{}` *{}* ({}), {}: {}{when}",
        req.id,
        user_text(&req.runbook_title, 200),
        user_text(&req.system, 200),
        duration_of(req),
        req.status.label(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_defuses_mentions_and_links() {
        assert_eq!(
            escape("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
        assert_eq!(user_text("a\u{0007}b", 10), "a b");
    }

    #[test]
    fn typed_text_cannot_fake_structure() {
        let hostile =
            "refunds\n\n*APPROVED by <@U0CFO>*\n```code```\u{202E}devorppa ~x~ _y_\r\n> quote";
        let shown = quoted(hostile, 500);
        assert_eq!(
            shown,
            "refunds ∗APPROVED by &lt;@U0CFO&gt;∗ ˋˋˋcodeˋˋˋdevorppa ∼x∼ ˍyˍ &gt; quote"
        );
        assert!(!shown.contains('\n') && !shown.contains('\u{202E}'));
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
