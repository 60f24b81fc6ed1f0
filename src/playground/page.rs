//! The playground's HTTP routes, all on one port: the page and its two
//! assets (no build step, nothing from elsewhere), the Slack stand-in's Web
//! API at `/api/{method}` (where the bot's `SLACK_API_URL` points), and the
//! page's own JSON routes under `/play/`: the people, Slack as one person
//! sees it now (rendered to HTML by [`super::render`], polled by the page,
//! answered 204 when nothing changed), and what that person does (a
//! command, a press, a submitted or cancelled modal, opening the Home tab),
//! passed to [`SlackApp`].

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::cast;
use super::render::{self, escape};
use super::slack_app::{dm_of, BotAnswer, Place, Press, PressError, SlackApp};
use super::target;
use super::AUDIT_CHANNEL;
use crate::slack_standin::{FakeSlack, HttpRequest};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// What the routes share.
#[derive(Clone)]
pub struct PageState {
    pub slack: FakeSlack,
    pub app: Arc<SlackApp>,
    /// The grant programs' `ACCESSBOT_STATE_DIR`.
    pub state_dir: PathBuf,
    /// The errors the bot answered a modal's submission with, by view ID.
    pub modal_errors: Arc<Mutex<HashMap<String, Value>>>,
}

pub fn router(state: PageState) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/app.js",
            get(|| async { page(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { page(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/api/{*method}", any(web_api))
        .route("/play/people", get(people))
        .route("/play/view", get(view))
        .route("/play/command", post(command))
        .route("/play/action", post(action))
        .route("/play/submit", post(submit))
        .route("/play/cancel", post(cancel))
        .route("/play/home", post(home))
        .with_state(state)
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The stand-in's Web API, for the bot.
async fn web_api(
    State(s): State<PageState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let answer = s
        .slack
        .answer_http(HttpRequest {
            http_method: method.as_str().to_string(),
            path: uri.path().to_string(),
            query: uri.query().unwrap_or_default().to_string(),
            authorization: header_text(header::AUTHORIZATION),
            content_type: header_text(header::CONTENT_TYPE),
            body: body.to_vec(),
        })
        .await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, answer.content_type)],
        answer.body.unwrap_or_default(),
    )
        .into_response();
    if let Some(secs) = answer.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, secs.into());
    }
    response
}

async fn people() -> Json<Value> {
    let people: Vec<Value> = cast::PEOPLE
        .iter()
        .map(|p| json!({"id": p.id, "name": p.name, "email": p.email, "role": p.role}))
        .collect();
    Json(json!({"people": people, "audit_channel": AUDIT_CHANNEL}))
}

#[derive(Deserialize)]
struct ViewQuery {
    #[serde(rename = "as")]
    user: String,
    #[serde(default)]
    seen: String,
}

/// Slack as `as` sees it now, or 204 when that is what the page shows (`seen`).
async fn view(State(s): State<PageState>, Query(q): Query<ViewQuery>) -> Response {
    if cast::person(&q.user).is_none() {
        return (StatusCode::BAD_REQUEST, "unknown person").into_response();
    }
    let mut shown = json!({
        "dm": dm_html(&s, &q.user),
        "audit": channel_html(&s, AUDIT_CHANNEL),
        "home": home_html(&s, &q.user),
        "modal": modal_html(&s, &q.user),
        "target": target_html(&s),
    });
    let mut hasher = DefaultHasher::new();
    shown.to_string().hash(&mut hasher);
    let version = format!("{:016x}", hasher.finish());
    if version == q.seen {
        return StatusCode::NO_CONTENT.into_response();
    }
    shown["version"] = json!(version);
    Json(shown).into_response()
}

/// Names for mentions: people by name, groups by handle.
fn names(id: &str) -> Option<String> {
    if let Some(person) = cast::person(id) {
        return Some(person.name.to_string());
    }
    cast::GROUPS
        .iter()
        .find(|(group, _, _)| *group == id)
        .map(|(_, handle, _)| handle.to_string())
}

/// One message: its blocks, or its text when it has none.
fn message_html(message: &Value, channel: Option<&str>, ephemeral: bool) -> String {
    let body = match message["blocks"].as_array() {
        Some(blocks) if !blocks.is_empty() => render::blocks(&message["blocks"], &names),
        _ => render::mrkdwn(message["text"].as_str().unwrap_or_default(), &names),
    };
    let place = match channel {
        Some(channel) => format!(
            r#" data-channel="{}" data-ts="{}""#,
            escape(channel),
            escape(message["ts"].as_str().unwrap_or_default())
        ),
        None => String::new(),
    };
    let note = if ephemeral {
        r#"<span class="ephemeral-note">Only visible to you</span>"#
    } else {
        ""
    };
    let class = if ephemeral {
        "message ephemeral"
    } else if message.get("thread_ts").is_some() {
        "message reply"
    } else {
        "message"
    };
    format!(
        r#"<div class="{class}"{place}><div class="meta"><b>accessbot</b> <span class="app">APP</span> {note}</div>{body}</div>"#
    )
}

/// The person's DM with the bot, with the ephemeral answers they saw.
fn dm_html(s: &PageState, user: &str) -> String {
    let channel = dm_of(user);
    let mut items: Vec<(String, String)> = s
        .slack
        .messages_in(&channel)
        .iter()
        .map(|m| {
            let ts = m["ts"].as_str().unwrap_or_default().to_string();
            (ts, message_html(m, Some(&channel), false))
        })
        .collect();
    items.extend(s.slack.ephemerals_for(user).iter().map(|m| {
        let ts = m["ts"].as_str().unwrap_or_default().to_string();
        (ts, message_html(m, None, true))
    }));
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if items.is_empty() {
        return r#"<p class="empty">No messages yet. Type <code>/access</code> below.</p>"#
            .to_string();
    }
    items.into_iter().map(|(_, html)| html).collect()
}

fn channel_html(s: &PageState, channel: &str) -> String {
    let messages = s.slack.messages_in(channel);
    if messages.is_empty() {
        return r#"<p class="empty">Nothing yet: every step of every request is posted here.</p>"#
            .to_string();
    }
    messages
        .iter()
        .map(|m| message_html(m, Some(channel), false))
        .collect()
}

fn home_html(s: &PageState, user: &str) -> String {
    match s.slack.home_view(user) {
        Some(view) => format!(
            r#"<div class="view home-view" data-view-id="{}">{}</div>"#,
            escape(view["id"].as_str().unwrap_or_default()),
            render::blocks(&view["blocks"], &names)
        ),
        None => r#"<p class="empty">The bot has not published this person's Home tab yet.</p>"#
            .to_string(),
    }
}

fn modal_html(s: &PageState, user: &str) -> String {
    let Some(view) = s.slack.open_modal(user) else {
        return String::new();
    };
    let id = view["id"].as_str().unwrap_or_default();
    let errors: String = s
        .modal_errors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(id)
        .and_then(Value::as_object)
        .map(|errors| {
            errors
                .iter()
                .map(|(block, message)| {
                    format!(
                        r#"<div class="modal-error" data-block-id="{}">{}</div>"#,
                        escape(block),
                        escape(message.as_str().unwrap_or_default())
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let button = |key: &str, fallback: &str| {
        view[key]["text"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| fallback.to_string())
    };
    let submit = match view.get("submit") {
        Some(_) => format!(
            r#"<button type="button" class="btn primary" id="modal-submit">{}</button>"#,
            escape(&button("submit", "Submit"))
        ),
        None => String::new(),
    };
    format!(
        r#"<div class="modal-backdrop"><div class="modal view" data-view-id="{}"><div class="modal-title">{}</div>{errors}<div class="modal-body">{}</div><div class="modal-buttons"><button type="button" class="btn" id="modal-cancel">{}</button>{submit}</div></div></div>"#,
        escape(id),
        escape(&button("title", "")),
        render::blocks(&view["blocks"], &names),
        escape(&button("close", "Cancel")),
    )
}

fn target_html(s: &PageState) -> String {
    let holdings = target::holdings(&s.state_dir);
    if holdings.is_empty() {
        return r#"<p class="empty">Nothing granted yet.</p>"#.to_string();
    }
    holdings
        .iter()
        .map(|h| {
            let holders = if h.holders.is_empty() {
                r#"<li class="nobody">nobody</li>"#.to_string()
            } else {
                h.holders
                    .iter()
                    .map(|id| {
                        let name = names(id).unwrap_or_default();
                        format!(
                            r#"<li data-user="{}">{} <code>{}</code></li>"#,
                            escape(id),
                            escape(&name),
                            escape(id)
                        )
                    })
                    .collect()
            };
            format!(
                r#"<div class="holding" data-system="{}"><b>{}</b><ul>{holders}</ul></div>"#,
                escape(&h.name),
                escape(&h.name)
            )
        })
        .collect()
}

#[derive(Deserialize)]
struct CommandForm {
    #[serde(rename = "as")]
    user: String,
    text: String,
}

/// What the message box sends: `/access …`.
async fn command(State(s): State<PageState>, Json(form): Json<CommandForm>) -> Response {
    if cast::person(&form.user).is_none() {
        return refused("pick who you are first");
    }
    let typed = form.text.trim();
    let Some(rest) = typed.strip_prefix("/access") else {
        return refused("only the /access command exists here: type /access, /access help or /access request billing-admin 2h month end");
    };
    if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
        return refused("only the /access command exists here");
    }
    outcome(s.app.command(&form.user, rest.trim()).await)
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(rename = "as")]
    user: String,
    channel: Option<String>,
    ts: Option<String>,
    view_id: Option<String>,
    block_index: usize,
    action_id: String,
    selected: Option<String>,
    #[serde(default)]
    values: Value,
}

async fn action(State(s): State<PageState>, Json(form): Json<ActionForm>) -> Response {
    if cast::person(&form.user).is_none() {
        return refused("pick who you are first");
    }
    let place = match (form.channel, form.ts, form.view_id) {
        (Some(channel), Some(ts), _) => Place::Message { channel, ts },
        (_, _, Some(view_id)) => Place::View { view_id },
        _ => return refused("a press names a message (channel, ts) or a view"),
    };
    let press = Press {
        user: form.user,
        place,
        block_index: form.block_index,
        action_id: form.action_id,
        selected: form.selected,
        values: form.values,
    };
    outcome(s.app.press(&press).await)
}

#[derive(Deserialize)]
struct SubmitForm {
    #[serde(rename = "as")]
    user: String,
    view_id: String,
    #[serde(default)]
    values: Value,
}

/// A submitted modal: closed unless the bot answers with errors, which the
/// modal then shows.
async fn submit(State(s): State<PageState>, Json(form): Json<SubmitForm>) -> Response {
    if cast::person(&form.user).is_none() {
        return refused("pick who you are first");
    }
    let answer = s.app.submit(&form.user, &form.view_id, &form.values).await;
    if let Ok(BotAnswer { status: 200, body }) = &answer {
        let mut errors = s
            .modal_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if body["response_action"] == "errors" {
            errors.insert(form.view_id.clone(), body["errors"].clone());
        } else {
            errors.remove(&form.view_id);
            drop(errors);
            s.slack.close_modal(&form.view_id);
        }
    }
    outcome(answer)
}

#[derive(Deserialize)]
struct CancelForm {
    view_id: String,
}

async fn cancel(State(s): State<PageState>, Json(form): Json<CancelForm>) -> Response {
    s.slack.close_modal(&form.view_id);
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize)]
struct HomeForm {
    #[serde(rename = "as")]
    user: String,
}

async fn home(State(s): State<PageState>, Json(form): Json<HomeForm>) -> Response {
    if cast::person(&form.user).is_none() {
        return refused("pick who you are first");
    }
    outcome(s.app.home_opened(&form.user).await)
}

fn refused(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"ok": false, "error": why})),
    )
        .into_response()
}

/// The bot's answer as the page sees it: its status and body, or why it
/// could not be reached.
fn outcome(answer: Result<BotAnswer, PressError>) -> Response {
    match answer {
        Ok(answer) => {
            Json(json!({"ok": answer.status == 200, "status": answer.status, "body": answer.body}))
                .into_response()
        }
        Err(e) => {
            // The page named something that is not there; or the bot is down.
            let status = match e {
                PressError::Unreachable(_) => StatusCode::BAD_GATEWAY,
                PressError::Gone | PressError::NoElement(_) => StatusCode::BAD_REQUEST,
            };
            (status, Json(json!({"ok": false, "error": e.to_string()}))).into_response()
        }
    }
}
