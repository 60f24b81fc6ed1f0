//! What runbook inputs and scheduled starts look like in Slack: the modal
//! fields for a runbook's `[[inputs]]` and its start-time picker, reading
//! them back from a submitted modal, and the lines that show the given
//! details and the start to approvers, in the audit channel and to the
//! requester. Values are what a person typed, so they are escaped here
//! like every other user text.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::blocks::{truncate, user_text};
use super::payload::ViewState;
use super::text::mention;
use crate::request::{AccessRequest, InputValue};
use crate::runbook::{InputDef, InputKind, Runbook, MAX_INPUTS};

/// The block of the start-time picker, and its element.
pub const START: &str = "start";
pub const START_PICKER: &str = "start_picker";

/// Block IDs of the input fields, by their place in the runbook's list.
/// Fixed names, so an error can point at a field; the element's action ID
/// is the input's own id, so Slack never carries a value from one
/// runbook's field into another's.
const BLOCK_IDS: [&str; MAX_INPUTS] = [
    "input_0", "input_1", "input_2", "input_3", "input_4", "input_5", "input_6", "input_7",
    "input_8", "input_9",
];

/// The block of the input at `index` in the runbook's list.
pub fn block_id(index: usize) -> &'static str {
    BLOCK_IDS.get(index).copied().unwrap_or(BLOCK_IDS[0])
}

fn action_id(def: &InputDef) -> String {
    format!("input_{}", def.id)
}

/// The modal fields of `rb`'s inputs, then its start-time picker
/// (break-glass access starts at once, so it has none).
pub fn modal_blocks(rb: &Runbook) -> Vec<Value> {
    let mut blocks: Vec<Value> = rb
        .inputs
        .iter()
        .take(MAX_INPUTS)
        .enumerate()
        .map(|(i, def)| {
            let mut block = json!({
                "type": "input",
                "block_id": block_id(i),
                "optional": !def.required,
                "label": {"type": "plain_text", "text": truncate(&def.label, 2000)},
                "element": element(def),
            });
            if let Some(help) = &def.help {
                block["hint"] = json!({"type": "plain_text", "text": truncate(help, 2000)});
            }
            block
        })
        .collect();
    if !rb.break_glass {
        blocks.push(json!({
            "type": "input",
            "block_id": START,
            "optional": true,
            "label": {"type": "plain_text", "text": "Start later? (optional)"},
            "hint": {"type": "plain_text", "text": truncate(&format!(
                "Leave empty to start as soon as it is approved. Shown in your time zone; at most {} ahead.",
                crate::duration::format_duration_words(rb.request.max_schedule_ahead)
            ), 2000)},
            "element": {"type": "datetimepicker", "action_id": START_PICKER},
        }));
    }
    blocks
}

fn element(def: &InputDef) -> Value {
    let action_id = action_id(def);
    match &def.kind {
        InputKind::Text => json!({"type": "plain_text_input", "action_id": action_id,
            "max_length": crate::runbook::MAX_VALUE_CHARS}),
        InputKind::Number => json!({"type": "number_input", "action_id": action_id,
            "is_decimal_allowed": true}),
        InputKind::Select(options) => json!({"type": "static_select", "action_id": action_id,
            "placeholder": {"type": "plain_text", "text": "Choose"},
            "options": options.iter().take(100).map(|o| json!({
                "text": {"type": "plain_text", "text": truncate(o, 75)},
                "value": truncate(o, 150),
            })).collect::<Vec<_>>()}),
        InputKind::User => json!({"type": "users_select", "action_id": action_id}),
        InputKind::Date => json!({"type": "datepicker", "action_id": action_id}),
    }
}

/// The values of `rb`'s inputs in a submitted modal, as `(id, value)`;
/// fields left empty are left out. Whether each was in the view at all is
/// [`has_field`]'s question.
pub fn read_modal(state: &ViewState, rb: &Runbook) -> Vec<(String, String)> {
    rb.inputs
        .iter()
        .enumerate()
        .filter_map(|(i, def)| {
            let v = state.values.get(block_id(i))?.get(&action_id(def))?;
            let value = v["value"]
                .as_str()
                .or_else(|| v["selected_option"]["value"].as_str())
                .or_else(|| v["selected_user"].as_str())
                .or_else(|| v["selected_date"].as_str())?;
            Some((def.id.clone(), value.to_string()))
        })
        .collect()
}

/// Whether the submitted modal showed the field of input `index` (it did
/// not when the runbook was chosen and submitted before the modal showed
/// its fields).
pub fn has_field(state: &ViewState, index: usize) -> bool {
    state.values.contains_key(block_id(index))
}

/// The start time picked in a submitted modal, if any.
pub fn read_start(state: &ViewState) -> Option<DateTime<Utc>> {
    let v = state.values.get(START)?.get(START_PICKER)?;
    let secs = v["selected_date_time"].as_i64()?;
    DateTime::from_timestamp(secs, 0)
}

/// One value as people read it: a person as a mention, the rest escaped.
fn shown(v: &InputValue) -> String {
    if v.kind == "user" {
        mention(&v.value)
    } else {
        user_text(&v.value, 200)
    }
}

/// The start as Slack shows it, in each reader's own time zone.
pub fn slack_time(at: DateTime<Utc>) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} at {{time}}|{}>",
        at.timestamp(),
        at.format("%Y-%m-%d %H:%M UTC")
    )
}

/// `*Label*\nvalue` fields for the approver's DM: the inputs, then the start.
pub fn detail_fields(req: &AccessRequest) -> Vec<String> {
    let mut fields: Vec<String> = req
        .inputs
        .iter()
        .map(|v| format!("*{}*\n{}", user_text(&v.label, 100), shown(v)))
        .collect();
    if let Some(start) = req.start_at {
        fields.push(format!("*Starts*\n{}", slack_time(start)));
    }
    fields
}

/// The DM block with the request's details; `None` when it has none.
pub fn details_block(req: &AccessRequest) -> Option<Value> {
    let fields = detail_fields(req);
    if fields.is_empty() {
        return None;
    }
    Some(
        json!({"type": "section", "fields": fields.iter().take(10).map(|f| json!({
        "type": "mrkdwn", "text": truncate(f, 2000)
    })).collect::<Vec<_>>()}),
    )
}

/// What the audit line of a new request adds: its details and its start,
/// in plain words (the audit log keeps it as written).
pub fn audit_details(req: &AccessRequest) -> String {
    let mut out = String::new();
    if !req.inputs.is_empty() {
        let given: Vec<String> = req
            .inputs
            .iter()
            .map(|v| format!("{}: {}", user_text(&v.label, 100), shown(v)))
            .collect();
        out.push_str(&format!(" [{}]", given.join("; ")));
    }
    if let Some(start) = req.start_at {
        out.push_str(&format!(", starting {}", plain_time(start)));
    }
    out
}

fn plain_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A sentence on when a request with a start starts, for the requester's
/// answers; empty without one.
pub fn start_note(req: &AccessRequest) -> String {
    match req.start_at {
        Some(start) => format!(" It is scheduled to start {}.", slack_time(start)),
        None => String::new(),
    }
}

/// The requester's answer when their request was approved at once (by a
/// rule) to start later.
pub fn scheduled_created(req: &AccessRequest) -> String {
    format!(
        ":calendar: Your request for *{}* was approved automatically and is scheduled: access starts {} and ends {}.\nRequest ID `{}`",
        user_text(&req.runbook_title, 200),
        req.start_at.map(slack_time).unwrap_or_default(),
        req.start_at
            .map(|s| slack_time(s + chrono::Duration::seconds(req.duration_secs as i64)))
            .unwrap_or_default(),
        req.id
    )
}

/// The audit line when an approved request is held for its start.
pub fn scheduled(req: &AccessRequest, start: DateTime<Utc>) -> String {
    let end = start + chrono::Duration::seconds(req.duration_secs as i64);
    format!(
        "approved; scheduled to start {} and end {}",
        plain_time(start),
        plain_time(end)
    )
}

/// The requester's DM when the last approval came and the start is ahead.
pub fn scheduled_notice(req: &AccessRequest) -> String {
    format!(
        ":calendar: Your request for *{}* is approved. Access starts {} (you will get a message then) and ends {} after that.",
        user_text(&req.runbook_title, 200),
        req.start_at.map(slack_time).unwrap_or_default(),
        crate::duration::format_duration_words(std::time::Duration::from_secs(req.duration_secs))
    )
}

/// `/access status`'s words about a scheduled request.
pub fn status_when(req: &AccessRequest) -> String {
    req.start_at
        .map(|s| format!(" (starts {})", slack_time(s)))
        .unwrap_or_default()
}

/// The audit line when a scheduled request is cancelled before its start.
pub fn cancelled_before_start(user: &str) -> String {
    format!("cancelled before its start by {}", mention(user))
}

pub const CANCELLED_ANSWER: &str =
    "Cancelled. The access was scheduled and had not started, so nothing was granted.";

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn details_are_escaped_and_people_are_mentions() {
        let mut req = AccessRequest::new(
            "ar-x".into(),
            "crm-support",
            "U0ALICE",
            Duration::from_secs(3600),
            vec![],
            Utc::now(),
        );
        req.inputs = vec![
            InputValue {
                id: "ticket".into(),
                label: "Ticket".into(),
                value: "<!channel> CS-1".into(),
                kind: "text".into(),
            },
            InputValue {
                id: "buddy".into(),
                label: "Buddy".into(),
                value: "U0BOB".into(),
                kind: "user".into(),
            },
        ];
        let fields = detail_fields(&req);
        assert_eq!(fields[0], "*Ticket*\n&lt;!channel&gt; CS-1");
        assert_eq!(fields[1], "*Buddy*\n<@U0BOB>");
        assert!(audit_details(&req).contains("[Ticket: &lt;!channel&gt; CS-1; Buddy: <@U0BOB>]"));
        assert!(details_block(&req).is_some());
        req.inputs.clear();
        assert!(details_block(&req).is_none());
    }

    #[test]
    fn every_kind_of_field_is_built_and_read_back() {
        let text = format!(
            "{}{}",
            crate::runbook::fixture::VALID,
            r#"
[[inputs]]
id = "ticket"
label = "Ticket"
type = "text"
required = true
[[inputs]]
id = "amount"
label = "Amount"
type = "number"
[[inputs]]
id = "kind"
label = "Kind"
type = "select"
options = ["refund", "dispute"]
[[inputs]]
id = "buddy"
label = "Buddy"
type = "user"
[[inputs]]
id = "due"
label = "Due"
type = "date"
"#
        );
        let rb = crate::runbook::fixture::parse(&text).unwrap();
        let blocks = modal_blocks(&rb);
        let kinds: Vec<&str> = blocks
            .iter()
            .map(|b| b["element"]["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "plain_text_input",
                "number_input",
                "static_select",
                "users_select",
                "datepicker",
                "datetimepicker"
            ]
        );
        let ids: Vec<&str> = blocks
            .iter()
            .map(|b| b["block_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["input_0", "input_1", "input_2", "input_3", "input_4", START]
        );
        assert_eq!(blocks[0]["optional"], false);
        assert_eq!(blocks[1]["optional"], true);

        let state: ViewState = serde_json::from_value(json!({"values": {
            "input_0": {"input_ticket": {"type": "plain_text_input", "value": "CS-1"}},
            "input_1": {"input_amount": {"type": "number_input", "value": "2.5"}},
            "input_2": {"input_kind": {"type": "static_select", "selected_option": {"value": "refund"}}},
            "input_3": {"input_buddy": {"type": "users_select", "selected_user": "U0BOB"}},
            "input_4": {"input_due": {"type": "datepicker", "selected_date": null}},
            "start": {"start_picker": {"type": "datetimepicker", "selected_date_time": 1767258000}}
        }}))
        .unwrap();
        assert_eq!(
            read_modal(&state, &rb),
            [
                ("ticket".to_string(), "CS-1".to_string()),
                ("amount".into(), "2.5".into()),
                ("kind".into(), "refund".into()),
                ("buddy".into(), "U0BOB".into()),
            ]
        );
        assert!(has_field(&state, 4) && !has_field(&state, 5));
        assert_eq!(read_start(&state), DateTime::from_timestamp(1767258000, 0));
        assert_eq!(read_start(&ViewState::default()), None);
    }
}
