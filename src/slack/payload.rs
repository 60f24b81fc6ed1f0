//! The shapes Slack sends us: slash commands (form fields), interactivity
//! payloads (`payload=` JSON) and Events API envelopes. Only the fields the
//! bot uses are read; anything else is ignored, and a wrong shape is a
//! [`PayloadError`] that names what is missing, never a panic.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("form body is not valid: {0}")]
    Form(String),
    #[error("`payload` field is missing")]
    MissingPayload,
    #[error("payload JSON is not valid: {0}")]
    Json(String),
}

/// A slash command invocation.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SlashCommand {
    pub user_id: String,
    pub command: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub trigger_id: String,
    #[serde(default)]
    pub channel_id: String,
    #[serde(default)]
    pub team_id: String,
}

/// What arrived on `/slack/commands`.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandBody {
    /// Slack checking our certificate (`ssl_check=1`): answer 200.
    SslCheck,
    Command(SlashCommand),
}

pub fn parse_command(body: &[u8]) -> Result<CommandBody, PayloadError> {
    let fields: BTreeMap<String, String> =
        serde_urlencoded::from_bytes(body).map_err(|e| PayloadError::Form(e.to_string()))?;
    command_from_fields(fields)
}

/// A slash command as Socket Mode delivers it: the form's fields as one
/// JSON object, read exactly as [`parse_command`] reads the form.
pub fn command_from_json(payload: &Value) -> Result<CommandBody, PayloadError> {
    let object = payload
        .as_object()
        .ok_or_else(|| PayloadError::Json("a slash command payload must be an object".into()))?;
    let fields = object
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    command_from_fields(fields)
}

fn command_from_fields(fields: BTreeMap<String, String>) -> Result<CommandBody, PayloadError> {
    if fields.get("ssl_check").map(String::as_str) == Some("1") {
        return Ok(CommandBody::SslCheck);
    }
    let get = |k: &str| fields.get(k).cloned();
    let user_id = get("user_id").ok_or_else(|| PayloadError::Form("user_id is missing".into()))?;
    let command = get("command").ok_or_else(|| PayloadError::Form("command is missing".into()))?;
    Ok(CommandBody::Command(SlashCommand {
        user_id,
        command,
        text: get("text").unwrap_or_default(),
        trigger_id: get("trigger_id").unwrap_or_default(),
        channel_id: get("channel_id").unwrap_or_default(),
        team_id: get("team_id").unwrap_or_default(),
    }))
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct UserRef {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ChannelRef {
    pub id: String,
}

/// One pressed button or changed menu.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BlockAction {
    pub action_id: String,
    #[serde(default)]
    pub block_id: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub selected_option: Option<SelectedOption>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SelectedOption {
    pub value: String,
}

/// A modal as Slack sends it back.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct ViewPayload {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub callback_id: String,
    #[serde(default)]
    pub private_metadata: String,
    #[serde(default)]
    pub state: ViewState,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct ViewState {
    #[serde(default)]
    pub values: BTreeMap<String, BTreeMap<String, Value>>,
}

impl ViewState {
    /// The typed value of input `block_id`/`action_id`: a text value or a selected option.
    pub fn value(&self, block_id: &str, action_id: &str) -> Option<String> {
        let v = self.values.get(block_id)?.get(action_id)?;
        v.get("value")
            .and_then(Value::as_str)
            .or_else(|| v["selected_option"]["value"].as_str())
            .map(str::to_string)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BlockActions {
    pub user: UserRef,
    #[serde(default)]
    pub trigger_id: Option<String>,
    #[serde(default)]
    pub channel: Option<ChannelRef>,
    #[serde(default)]
    pub container: Option<Value>,
    #[serde(default)]
    pub actions: Vec<BlockAction>,
    #[serde(default)]
    pub view: Option<ViewPayload>,
}

impl BlockActions {
    /// The channel the pressed message is in, from `channel` or `container`.
    pub fn channel_id(&self) -> Option<String> {
        self.channel.as_ref().map(|c| c.id.clone()).or_else(|| {
            self.container
                .as_ref()
                .and_then(|c| c["channel_id"].as_str())
                .map(str::to_string)
        })
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ViewSubmission {
    pub user: UserRef,
    pub view: ViewPayload,
}

/// What arrived on `/slack/interactions`.
#[derive(Debug, Clone, PartialEq)]
pub enum Interaction {
    BlockActions(BlockActions),
    ViewSubmission(ViewSubmission),
    /// view_closed, shortcuts and anything newer: acknowledged, not acted on.
    Other(String),
}

pub fn parse_interaction(body: &[u8]) -> Result<Interaction, PayloadError> {
    let fields: BTreeMap<String, String> =
        serde_urlencoded::from_bytes(body).map_err(|e| PayloadError::Form(e.to_string()))?;
    let payload = fields.get("payload").ok_or(PayloadError::MissingPayload)?;
    let v: Value = serde_json::from_str(payload).map_err(|e| PayloadError::Json(e.to_string()))?;
    interaction_from_json(v)
}

/// An interactivity payload as Socket Mode delivers it: the JSON that HTTP
/// sends in the `payload` form field, read exactly as [`parse_interaction`]
/// reads it.
pub fn interaction_from_json(v: Value) -> Result<Interaction, PayloadError> {
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| PayloadError::Json("`type` is missing".into()))?
        .to_string();
    let shape = |e: serde_json::Error| PayloadError::Json(format!("{kind}: {e}"));
    Ok(match kind.as_str() {
        "block_actions" => Interaction::BlockActions(serde_json::from_value(v).map_err(shape)?),
        "view_submission" => Interaction::ViewSubmission(serde_json::from_value(v).map_err(shape)?),
        _ => Interaction::Other(kind),
    })
}

/// What arrived on `/slack/events`.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    UrlVerification { challenge: String },
    Callback { event_id: String, event: Value },
    Other(String),
}

pub fn parse_event(body: &[u8]) -> Result<EventBody, PayloadError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    Ok(match kind {
        "url_verification" => EventBody::UrlVerification {
            challenge: v["challenge"]
                .as_str()
                .ok_or_else(|| PayloadError::Json("`challenge` is missing".into()))?
                .to_string(),
        },
        "event_callback" => EventBody::Callback {
            event_id: v["event_id"]
                .as_str()
                .ok_or_else(|| PayloadError::Json("`event_id` is missing".into()))?
                .to_string(),
            event: v["event"].clone(),
        },
        other => EventBody::Other(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_command_fixture() {
        let body = b"token=x&team_id=T1&channel_id=C1&user_id=U2CERLKJA&user_name=rr&command=%2Faccess&text=request+billing-admin+2h+month+end&response_url=https%3A%2F%2Fhooks.slack.com%2Fx&trigger_id=398.47.803a";
        let CommandBody::Command(c) = parse_command(body).unwrap() else {
            panic!()
        };
        assert_eq!(c.user_id, "U2CERLKJA");
        assert_eq!(c.command, "/access");
        assert_eq!(c.text, "request billing-admin 2h month end");
        assert_eq!(c.trigger_id, "398.47.803a");
        assert_eq!(
            parse_command(b"ssl_check=1&token=x").unwrap(),
            CommandBody::SslCheck
        );
        assert!(parse_command(b"command=%2Faccess").is_err());
        assert!(parse_command(b"%%%").is_err() || parse_command(b"%%%").is_ok());
    }

    #[test]
    fn interaction_fixtures() {
        let p = serde_json::json!({
            "type": "block_actions", "user": {"id": "U1", "username": "a", "team_id": "T1"},
            "container": {"type": "message", "message_ts": "1.2", "channel_id": "D1", "is_ephemeral": false},
            "trigger_id": "1.2.3", "actions": [{"action_id": "approve", "block_id": "b", "type": "button", "value": "AR-1", "action_ts": "1.3"}]
        });
        let body = serde_urlencoded::to_string([("payload", p.to_string())]).unwrap();
        let Interaction::BlockActions(a) = parse_interaction(body.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(a.user.id, "U1");
        assert_eq!(a.channel_id().as_deref(), Some("D1"));
        assert_eq!(a.actions[0].value.as_deref(), Some("AR-1"));

        let wrong =
            serde_urlencoded::to_string([("payload", r#"{"type":"block_actions","user":"U1"}"#)])
                .unwrap();
        assert!(matches!(
            parse_interaction(wrong.as_bytes()),
            Err(PayloadError::Json(_))
        ));
        assert_eq!(parse_interaction(b"x=1"), Err(PayloadError::MissingPayload));
        let other =
            serde_urlencoded::to_string([("payload", r#"{"type":"view_closed"}"#)]).unwrap();
        assert_eq!(
            parse_interaction(other.as_bytes()).unwrap(),
            Interaction::Other("view_closed".into())
        );
    }

    #[test]
    fn view_state_values() {
        let s: ViewState = serde_json::from_value(serde_json::json!({"values": {
            "runbook": {"runbook_select": {"type": "static_select", "selected_option": {"value": "billing-admin"}}},
            "reason": {"reason_input": {"type": "plain_text_input", "value": "month end"}}
        }})).unwrap();
        assert_eq!(
            s.value("runbook", "runbook_select").as_deref(),
            Some("billing-admin")
        );
        assert_eq!(
            s.value("reason", "reason_input").as_deref(),
            Some("month end")
        );
        assert_eq!(s.value("duration", "duration_input"), None);
    }

    #[test]
    fn events() {
        assert_eq!(
            parse_event(br#"{"token":"t","challenge":"abc","type":"url_verification"}"#).unwrap(),
            EventBody::UrlVerification {
                challenge: "abc".into()
            }
        );
        assert!(parse_event(b"not json").is_err());
    }
}
