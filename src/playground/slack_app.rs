//! What Slack sends the bot, sent by the playground instead: slash commands,
//! `block_actions` for a pressed button or a chosen option (in a message, a
//! modal or the Home tab), `view_submission` for a submitted modal, and the
//! `app_home_opened` event. Each body has the shape Slack gives it and is
//! signed with the run's signing secret exactly as Slack signs
//! ([`crate::slack::signature::sign`]); the bot checks it as it checks
//! Slack's. The element a press names is looked up in the stored message or
//! view, so the payload carries what Slack would, not what the page claims.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Secret;
use crate::slack::signature;
use crate::slack_standin::FakeSlack;

use super::cast;

const TEAM: &str = "T0FAKE";
const APP: &str = "A0ACCESSBOT";

/// The bot's answer to one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct BotAnswer {
    pub status: u16,
    /// The JSON body, `Null` when empty.
    pub body: Value,
}

/// Where a pressed element is.
#[derive(Debug, Clone, PartialEq)]
pub enum Place {
    /// A message in a channel.
    Message { channel: String, ts: String },
    /// A modal or Home tab.
    View { view_id: String },
}

/// One press or choice on the page.
#[derive(Debug, Clone, PartialEq)]
pub struct Press {
    pub user: String,
    pub place: Place,
    /// The index of the block in its message or view.
    pub block_index: usize,
    pub action_id: String,
    /// For a select: the chosen option's value.
    pub selected: Option<String>,
    /// For a view: the current input values, `{block_id: {action_id: {...}}}`.
    pub values: Value,
}

/// Why a press could not be sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PressError {
    #[error("that message or view is no longer there")]
    Gone,
    #[error("no element `{0}` in that block")]
    NoElement(String),
    #[error("the bot did not answer: {0}")]
    Unreachable(String),
}

/// The Slack app's side of the conversation with the bot.
pub struct SlackApp {
    slack: FakeSlack,
    bot: SocketAddr,
    signing_secret: Secret,
    client: reqwest::Client,
}

impl SlackApp {
    pub fn new(slack: FakeSlack, bot: SocketAddr, signing_secret: Secret) -> SlackApp {
        let client = reqwest::Client::builder()
            // Slack waits 3 seconds; the playground waits longer so that a
            // slow machine shows the bot's answer rather than a timeout.
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a reqwest client with a timeout builds");
        SlackApp {
            slack,
            bot,
            signing_secret,
            client,
        }
    }

    /// `/access {text}` typed by `user` in their DM with the bot; the answer
    /// (ephemeral text) is shown to them as Slack would.
    pub async fn command(&self, user: &str, text: &str) -> Result<BotAnswer, PressError> {
        let channel = dm_of(user);
        let trigger = self.slack.issue_trigger(user);
        let response_url = format!("{}/response_url/{user}", self.slack.url());
        let fields = [
            ("token", "playground-verification-token"),
            ("team_id", TEAM),
            ("team_domain", "playground"),
            ("channel_id", channel.as_str()),
            ("channel_name", "directmessage"),
            ("user_id", user),
            ("user_name", user_name(user)),
            ("command", "/access"),
            ("text", text),
            ("api_app_id", APP),
            ("is_enterprise_install", "false"),
            ("response_url", response_url.as_str()),
            ("trigger_id", trigger.as_str()),
        ];
        let body = serde_urlencoded::to_string(fields).expect("form fields encode");
        let answer = self.send("commands", FORM, body.into_bytes()).await?;
        if answer.body.is_object() {
            self.slack.add_ephemeral(&channel, user, &answer.body);
        }
        Ok(answer)
    }

    /// A pressed button or chosen option, as `block_actions`.
    pub async fn press(&self, press: &Press) -> Result<BotAnswer, PressError> {
        let (blocks, mut payload) = match &press.place {
            Place::Message { channel, ts } => {
                let mut message = self.slack.message(channel, ts).ok_or(PressError::Gone)?;
                message["type"] = json!("message");
                message["user"] = json!("U0ACCESSBOT");
                let blocks = message["blocks"].clone();
                let payload = json!({
                    "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": false},
                    "channel": {"id": channel, "name": "directmessage"},
                    "message": message,
                    "state": {"values": {}},
                    "response_url": format!("{}/response_url/{}", self.slack.url(), press.user),
                });
                (blocks, payload)
            }
            Place::View { view_id } => {
                let view = self.view(view_id).ok_or(PressError::Gone)?;
                let blocks = view["blocks"].clone();
                let payload = json!({
                    "container": {"type": "view", "view_id": view_id},
                    "view": view_payload(&view, &press.values),
                });
                (blocks, payload)
            }
        };
        let block = &blocks[press.block_index];
        let element = find_element(block, &press.action_id)
            .ok_or_else(|| PressError::NoElement(press.action_id.clone()))?;
        let mut action = json!({
            "type": element["type"],
            "action_id": press.action_id,
            "block_id": block_id(block, press.block_index),
            "action_ts": action_ts(),
        });
        match element["type"].as_str() {
            Some("static_select") => {
                let chosen = press.selected.as_deref().unwrap_or_default();
                let option = element["options"]
                    .as_array()
                    .and_then(|options| options.iter().find(|o| o["value"] == chosen))
                    .cloned()
                    .ok_or_else(|| PressError::NoElement(format!("option {chosen}")))?;
                action["selected_option"] = option;
                action["placeholder"] = element["placeholder"].clone();
            }
            _ => {
                action["text"] = element["text"].clone();
                action["value"] = element["value"].clone();
                if let Some(style) = element.get("style") {
                    action["style"] = style.clone();
                }
            }
        }
        payload["type"] = json!("block_actions");
        payload["user"] = user_ref(&press.user);
        payload["api_app_id"] = json!(APP);
        payload["token"] = json!("playground-verification-token");
        payload["trigger_id"] = json!(self.slack.issue_trigger(&press.user));
        payload["team"] = json!({"id": TEAM, "domain": "playground"});
        payload["enterprise"] = Value::Null;
        payload["is_enterprise_install"] = json!(false);
        payload["actions"] = json!([action]);
        self.send_payload(&payload).await
    }

    /// A submitted modal, as `view_submission`; `values` are its inputs.
    pub async fn submit(
        &self,
        user: &str,
        view_id: &str,
        values: &Value,
    ) -> Result<BotAnswer, PressError> {
        let view = self.view(view_id).ok_or(PressError::Gone)?;
        let payload = json!({
            "type": "view_submission",
            "team": {"id": TEAM, "domain": "playground"},
            "user": user_ref(user),
            "api_app_id": APP,
            "token": "playground-verification-token",
            "trigger_id": self.slack.issue_trigger(user),
            "view": view_payload(&view, values),
            "response_urls": [],
            "is_enterprise_install": false,
            "enterprise": null,
        });
        self.send_payload(&payload).await
    }

    /// `user` opened the bot's Home tab: the `app_home_opened` event.
    pub async fn home_opened(&self, user: &str) -> Result<BotAnswer, PressError> {
        let now = chrono::Utc::now();
        let mut event = json!({
            "type": "app_home_opened", "user": user, "channel": dm_of(user),
            "tab": "home", "event_ts": action_ts(),
        });
        if let Some(view) = self.slack.home_view(user) {
            event["view"] = view;
        }
        let body = json!({
            "token": "playground-verification-token",
            "team_id": TEAM,
            "api_app_id": APP,
            "event": event,
            "type": "event_callback",
            "event_id": format!("Ev{:012}", rand::random::<u32>()),
            "event_time": now.timestamp(),
            "authorizations": [{"team_id": TEAM, "user_id": "U0ACCESSBOT", "is_bot": true}],
            "is_ext_shared_channel": false,
        });
        self.send("events", "application/json", body.to_string().into_bytes())
            .await
    }

    fn view(&self, view_id: &str) -> Option<Value> {
        self.slack
            .views()
            .into_iter()
            .find(|view| view["id"] == view_id)
    }

    async fn send_payload(&self, payload: &Value) -> Result<BotAnswer, PressError> {
        let body = serde_urlencoded::to_string([("payload", payload.to_string())])
            .expect("a form with one field encodes");
        self.send("interactions", FORM, body.into_bytes()).await
    }

    /// POSTs a signed body to `/slack/{endpoint}`.
    async fn send(
        &self,
        endpoint: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<BotAnswer, PressError> {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature = signature::sign(&self.signing_secret, &timestamp, &body);
        let answer = self
            .client
            .post(format!("http://{}/slack/{endpoint}", self.bot))
            .header("content-type", content_type)
            .header("x-slack-request-timestamp", timestamp)
            .header("x-slack-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| PressError::Unreachable(e.to_string()))?;
        let status = answer.status().as_u16();
        let text = answer
            .text()
            .await
            .map_err(|e| PressError::Unreachable(e.to_string()))?;
        let body = serde_json::from_str(&text).unwrap_or(if text.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        });
        Ok(BotAnswer { status, body })
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

/// The DM channel the stand-in gives `user` with the bot.
pub fn dm_of(user: &str) -> String {
    format!("D{user}")
}

fn user_name(user: &str) -> &str {
    cast::person(user)
        .and_then(|person| person.email.split('@').next())
        .unwrap_or(user)
}

fn user_ref(user: &str) -> Value {
    json!({"id": user, "username": user_name(user), "name": user_name(user), "team_id": TEAM})
}

/// A view as Slack sends it back: the stored view with the inputs' state.
fn view_payload(view: &Value, values: &Value) -> Value {
    let mut view = view.clone();
    let values = if values.is_object() {
        values.clone()
    } else {
        json!({})
    };
    view["state"] = json!({ "values": values });
    view["team_id"] = json!(TEAM);
    view["app_id"] = json!(APP);
    view["bot_id"] = json!("B0ACCESSBOT");
    if view.get("private_metadata").is_none() {
        view["private_metadata"] = json!("");
    }
    if view.get("callback_id").is_none() {
        view["callback_id"] = json!("");
    }
    view
}

/// The block's ID; Slack gives one to every block that has none, and so does
/// the page, by position.
pub fn block_id(block: &Value, index: usize) -> String {
    block["block_id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("standin-block-{index}"))
}

/// The interactive element with `action_id` in `block`: an actions block's
/// element, a section's accessory or an input's element.
fn find_element<'a>(block: &'a Value, action_id: &str) -> Option<&'a Value> {
    let mut candidates: Vec<&Value> = block["elements"]
        .as_array()
        .map(|elements| elements.iter().collect())
        .unwrap_or_default();
    candidates.push(&block["accessory"]);
    candidates.push(&block["element"]);
    candidates
        .into_iter()
        .find(|element| element["action_id"] == action_id)
}

fn action_ts() -> String {
    let now = chrono::Utc::now();
    format!("{}.{:06}", now.timestamp(), now.timestamp_subsec_micros())
}
