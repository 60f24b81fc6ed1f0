//! The HTTP surface: the three endpoints Slack calls, plus `/healthz` and
//! `/metrics`.
//!
//! Every `/slack/*` request goes through [`signed`]: body size capped, the
//! signature checked on the raw bytes before anything is parsed, and the
//! same signed request delivered twice answered from the replay guard
//! without doing anything again. Handlers then do their durable work, answer
//! within Slack's 3 seconds, and leave Web API calls to the outbox or to
//! spawned tasks.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};

use crate::command::{self, Command, HELP};
use crate::config::Secret;
use crate::duration::{format_duration, parse_duration};
use crate::outbox::DeliveryHealth;
use crate::outbox::{OutboxItem, SlackOp};
use crate::policy::Refusal;
use crate::request::Status;
use crate::runbook::Runbook;
use crate::slack::blocks::{self, action, modal};
use crate::slack::payload::{
    self, BlockActions, CommandBody, EventBody, Interaction, SlashCommand, ViewSubmission,
};
use crate::slack::signature;
use crate::store::Effects;
use crate::workflow::{NewRequest, RequestError, Workflow};

/// Largest body accepted on any endpoint.
pub const MAX_BODY: usize = 64 * 1024;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub commands: AtomicU64,
    pub interactions: AtomicU64,
    pub events: AtomicU64,
    pub rejected_signatures: AtomicU64,
    pub replays: AtomicU64,
    pub bad_payloads: AtomicU64,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub workflow: Arc<Workflow>,
    pub signing_secret: Secret,
    /// Guards `GET /audit`; `None` turns the export off.
    pub audit_token: Option<Secret>,
    pub delivery: Arc<DeliveryHealth>,
    pub metrics: Arc<Metrics>,
    /// Deliveries being handled right now, by replay key, so the same signed
    /// request arriving twice at once runs once (see [`InFlight`]).
    pub in_flight: Arc<Mutex<HashSet<String>>>,
}

/// Marks a delivery as being handled until dropped.
struct InFlight {
    set: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl InFlight {
    /// `None` when the same delivery is already being handled.
    fn claim(set: &Arc<Mutex<HashSet<String>>>, key: &str) -> Option<InFlight> {
        let mut guard = set.lock().unwrap_or_else(|p| p.into_inner());
        guard.insert(key.to_string()).then(|| InFlight {
            set: Arc::clone(set),
            key: key.to_string(),
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
        .route("/slack/events", post(events))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/audit", get(audit_export))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Which endpoint a signed body came in on.
#[derive(Clone, Copy)]
enum Endpoint {
    Commands,
    Interactions,
    Events,
}

/// A refusal before any handler runs.
fn reject(status: StatusCode, text: &str) -> Response {
    (status, text.to_string()).into_response()
}

/// Verifies, de-duplicates and dispatches one request from Slack.
async fn signed(state: AppState, endpoint: Endpoint, headers: HeaderMap, body: Bytes) -> Response {
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let sig = header_str("x-slack-signature");
    if let Err(e) = signature::verify_at(
        &state.signing_secret,
        header_str("x-slack-request-timestamp"),
        sig,
        &body,
        Utc::now().timestamp(),
    ) {
        state
            .metrics
            .rejected_signatures
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(reason = %e, "refused a request without a valid Slack signature");
        return reject(StatusCode::UNAUTHORIZED, "invalid or stale Slack signature");
    }
    let content_type = header_str("content-type").unwrap_or_default();
    let wants = match endpoint {
        Endpoint::Events => "application/json",
        _ => "application/x-www-form-urlencoded",
    };
    if !content_type.starts_with(wants) {
        state.metrics.bad_payloads.fetch_add(1, Ordering::Relaxed);
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("expected Content-Type {wants}"),
        );
    }
    // The same signed bytes twice (a replay, or a resend) get the first answer
    // and do nothing more. The signature covers timestamp and body, so it
    // identifies the delivery.
    let replay_key = format!("sig:{}", sig.unwrap_or_default());
    match state.workflow.store.seen_before(replay_key.as_bytes()) {
        Ok(Some(answer)) => {
            state.metrics.replays.fetch_add(1, Ordering::Relaxed);
            tracing::info!("answered a repeated delivery from the replay guard");
            return cached_answer(answer);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "replay guard unavailable");
            return reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable; retry",
            );
        }
    }
    let Some(_handling) = InFlight::claim(&state.in_flight, &replay_key) else {
        // The same bytes are being handled right now: wait for that answer.
        state.metrics.replays.fetch_add(1, Ordering::Relaxed);
        return answer_of_twin(&state, &replay_key).await;
    };
    let answer: Answer = match endpoint {
        Endpoint::Commands => {
            state.metrics.commands.fetch_add(1, Ordering::Relaxed);
            match payload::parse_command(&body) {
                Ok(CommandBody::SslCheck) => Answer::Empty,
                Ok(CommandBody::Command(cmd)) => handle_command(&state, cmd).await,
                Err(e) => bad_payload(&state, e),
            }
        }
        Endpoint::Interactions => {
            state.metrics.interactions.fetch_add(1, Ordering::Relaxed);
            match payload::parse_interaction(&body) {
                Ok(Interaction::BlockActions(a)) => handle_actions(&state, a).await,
                Ok(Interaction::ViewSubmission(v)) => handle_submission(&state, v).await,
                Ok(Interaction::Other(kind)) => {
                    tracing::debug!(%kind, "interaction acknowledged without action");
                    Answer::Empty
                }
                Err(e) => bad_payload(&state, e),
            }
        }
        Endpoint::Events => {
            state.metrics.events.fetch_add(1, Ordering::Relaxed);
            match payload::parse_event(&body) {
                Ok(e) => handle_event(&state, e, header_str("x-slack-retry-num").is_some()),
                Err(e) => bad_payload(&state, e),
            }
        }
    };
    let (status, stored) = answer.encode();
    if status == StatusCode::OK {
        if let Err(e) =
            state
                .workflow
                .store
                .remember_seen(replay_key.as_bytes(), Utc::now(), &stored)
        {
            tracing::error!(error = %e, "could not record a delivery in the replay guard");
        }
    }
    answer.into_response()
}

/// The answer the first of two identical concurrent deliveries gave, once
/// it has one; an empty 200 if it takes longer than Slack would wait.
async fn answer_of_twin(state: &AppState, key: &str) -> Response {
    let until = tokio::time::Instant::now() + std::time::Duration::from_millis(2500);
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if let Ok(Some(answer)) = state.workflow.store.seen_before(key.as_bytes()) {
            return cached_answer(answer);
        }
    }
    StatusCode::OK.into_response()
}

/// What a handler answers Slack.
enum Answer {
    Empty,
    Json(Value),
    /// Empty 200 that also tells Slack not to retry.
    NoRetry,
    Bad(String),
}

impl Answer {
    fn encode(&self) -> (StatusCode, Vec<u8>) {
        match self {
            Answer::Empty | Answer::NoRetry => (StatusCode::OK, Vec::new()),
            Answer::Json(v) => (StatusCode::OK, v.to_string().into_bytes()),
            Answer::Bad(_) => (StatusCode::BAD_REQUEST, Vec::new()),
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Empty => StatusCode::OK.into_response(),
            Answer::Json(v) => Json(v).into_response(),
            Answer::NoRetry => {
                let mut r = StatusCode::OK.into_response();
                r.headers_mut()
                    .insert("x-slack-no-retry", HeaderValue::from_static("1"));
                r
            }
            Answer::Bad(text) => (StatusCode::BAD_REQUEST, text).into_response(),
        }
    }
}

fn cached_answer(bytes: Vec<u8>) -> Response {
    if bytes.is_empty() {
        return StatusCode::OK.into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

fn bad_payload(state: &AppState, e: payload::PayloadError) -> Answer {
    state.metrics.bad_payloads.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(error = %e, "refused a malformed payload");
    Answer::Bad(format!("malformed request: {e}"))
}

async fn commands(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    signed(s, Endpoint::Commands, headers, body).await
}

async fn interactions(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    signed(s, Endpoint::Interactions, headers, body).await
}

async fn events(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    signed(s, Endpoint::Events, headers, body).await
}

fn say(text: impl AsRef<str>) -> Answer {
    Answer::Json(blocks::ephemeral(text.as_ref()))
}

#[tracing::instrument(skip_all, fields(user = %cmd.user_id))]
async fn handle_command(state: &AppState, cmd: SlashCommand) -> Answer {
    let wf = &state.workflow;
    let user = cmd.user_id.as_str();
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
            let slack = wf.slack.clone();
            let trigger = cmd.trigger_id.clone();
            wf.tasks.spawn(async move {
                if let Err(e) = slack.views_open(&trigger, &view).await {
                    tracing::warn!(error = %e, "could not open the request modal");
                }
            });
            Answer::Empty
        }
        Command::List => {
            let runbooks = wf.requestable(user).await;
            if runbooks.is_empty() {
                return say("There is nothing you can request yet.");
            }
            let lines: Vec<String> = runbooks
                .iter()
                .map(|r| {
                    format!(
                        "• `{}` *{}* ({}): {}. Default {}, up to {}{}",
                        r.id,
                        blocks::user_text(&r.title, 100),
                        blocks::user_text(&r.system, 100),
                        blocks::user_text(&r.description, 300),
                        format_duration(r.request.default_duration),
                        format_duration(r.request.max_duration),
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
            let mine = match wf.store.all_requests() {
                Ok(all) => all
                    .into_iter()
                    .filter(|r| r.requester == user && !r.status.is_terminal())
                    .collect::<Vec<_>>(),
                Err(e) => {
                    tracing::error!(error = %e, "could not list requests");
                    return say(
                        "accessbot could not read its records just now; try again in a moment.",
                    );
                }
            };
            if mine.is_empty() {
                return say("You have no pending requests and no active access.");
            }
            let lines: Vec<String> = mine.iter().map(blocks::status_line).collect();
            say(format!("*Your requests:*\n{}", lines.join("\n")))
        }
        Command::Request {
            runbook,
            duration,
            reason,
        } => {
            let n = NewRequest {
                user: user.to_string(),
                runbook,
                duration,
                reason,
            };
            match wf.create_request(n).await {
                Ok(req) => say(created_text(&req)),
                Err(e) => say(request_error_text(&e)),
            }
        }
        Command::Revoke { request_id } => say(refusal_or(wf.revoke_now(user, &request_id).await)),
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
    if let RequestError::Store(inner) = e {
        tracing::error!(error = %inner, "could not store a request");
    }
    format!(":no_entry_sign: {e}")
}

fn created_text(req: &crate::request::AccessRequest) -> String {
    match req.status {
        Status::Granting if req.break_glass => format!(
            ":rotating_light: Break-glass request `{}` for *{}*: access is being granted now. Approvers and the owner have been told and will review it.",
            req.id, blocks::user_text(&req.runbook_title, 200)
        ),
        Status::Granting => format!(
            ":white_check_mark: Request `{}` for *{}* ({}) was approved automatically; access is being granted now.",
            req.id,
            blocks::user_text(&req.runbook_title, 200),
            format_duration(std::time::Duration::from_secs(req.duration_secs))
        ),
        _ => {
            let who: Vec<String> = req.current_approvers().iter().map(|u| format!("<@{u}>")).collect();
            format!(
                ":inbox_tray: Request `{}` for *{}* ({}) is waiting for approval from {}. You will get a message when it is decided.",
                req.id,
                blocks::user_text(&req.runbook_title, 200),
                format_duration(std::time::Duration::from_secs(req.duration_secs)),
                who.join(", ")
            )
        }
    }
}

/// Tells one person something privately: ephemeral where they pressed, or a DM.
fn tell(state: &AppState, order_key: &str, channel: Option<String>, user: &str, text: String) {
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
    let effects = Effects {
        outbox: vec![OutboxItem::new(order_key, op)],
        audit: vec![],
    };
    match state.workflow.store.enqueue(effects) {
        Ok(()) => state.workflow.wake(),
        Err(e) => tracing::error!(error = %e, "could not queue a reply"),
    }
}

#[tracing::instrument(skip_all, fields(user = %a.user.id))]
async fn handle_actions(state: &AppState, a: BlockActions) -> Answer {
    let wf = &state.workflow;
    let user = a.user.id.as_str();
    let Some(act) = a.actions.first() else {
        return Answer::Empty;
    };
    if act.action_id == action::RUNBOOK_SELECT {
        if let (Some(view), Some(sel)) = (&a.view, &act.selected_option) {
            spawn_preview(
                state,
                user,
                view.id.clone(),
                view.hash.clone(),
                sel.value.clone(),
            );
        }
        return Answer::Empty;
    }
    let request_id = act.value.clone().unwrap_or_default();
    let result: Result<String, String> = match act.action_id.as_str() {
        action::APPROVE | action::DENY => wf
            .decide(user, &request_id, act.action_id == action::APPROVE)
            .await
            .map_err(|e| e.to_string()),
        action::EXTENSION_APPROVE | action::EXTENSION_DENY => wf
            .decide_extension(
                user,
                &request_id,
                act.action_id == action::EXTENSION_APPROVE,
            )
            .await
            .map_err(|e| e.to_string()),
        action::RELEASE => wf
            .revoke_now(user, &request_id)
            .await
            .map_err(|e| e.to_string()),
        action::EXTEND => wf
            .extend(user, &request_id, None)
            .await
            .map_err(|e| e.to_string()),
        action::REVIEW_ACK | action::REVIEW_FLAG => wf
            .review(user, &request_id, act.action_id == action::REVIEW_FLAG)
            .await
            .map_err(|e| e.to_string()),
        other => {
            tracing::warn!(action_id = %blocks::truncate(other, 64), "unknown action ignored");
            return Answer::Empty;
        }
    };
    let text = match result {
        Ok(t) => t,
        Err(e) => format!(":no_entry_sign: {e}"),
    };
    let order_key = if request_id.is_empty() {
        "replies"
    } else {
        &request_id
    };
    tell(state, order_key, a.channel_id(), user, text);
    Answer::Empty
}

/// Updates the open modal with who will approve the chosen runbook.
fn spawn_preview(
    state: &AppState,
    user: &str,
    view_id: String,
    hash: Option<String>,
    runbook: String,
) {
    let wf = Arc::clone(&state.workflow);
    let user = user.to_string();
    wf.clone().tasks.spawn(async move {
        let requestable = wf.requestable(&user).await;
        let Some(rb) = requestable.iter().find(|r| r.id == runbook).copied() else {
            return;
        };
        let lines = preview_lines(&wf, rb, &user).await;
        let view = blocks::request_modal(&requestable, Some(rb), &lines);
        if let Err(e) = wf
            .slack
            .views_update(&view_id, hash.as_deref(), &view)
            .await
        {
            tracing::warn!(error = %e, "could not update the request modal preview");
        }
    });
}

/// Who will be asked, in which stages, and the rules, in words.
pub async fn preview_lines(wf: &Workflow, rb: &Runbook, user: &str) -> Vec<String> {
    let mut lines = vec![format!(
        "*Duration:* default {}, at most {}. *Reason:* {}.",
        format_duration(rb.request.default_duration),
        format_duration(rb.request.max_duration),
        if rb.request.require_reason {
            "required"
        } else {
            "optional"
        }
    )];
    if rb.break_glass {
        lines.push(":rotating_light: *Break-glass:* access is granted at once; approvers and the owner review it afterwards.".into());
    }
    match wf.people.resolve_stages(rb, user).await {
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
    if let Ok(Some(rule)) = wf
        .people
        .auto_approve_rule(rb, user, rb.request.default_duration)
        .await
    {
        lines.push(format!(
            ":zap: You are covered by auto-approval rule `{}` for up to {}.",
            blocks::user_text(&rule.name, 60),
            format_duration(rule.max_duration)
        ));
    }
    lines
}

#[tracing::instrument(skip_all, fields(user = %v.user.id))]
async fn handle_submission(state: &AppState, v: ViewSubmission) -> Answer {
    if v.view.callback_id != modal::CALLBACK_ID {
        return Answer::Empty;
    }
    let wf = &state.workflow;
    let values = &v.view.state;
    let runbook = values
        .value(modal::RUNBOOK, action::RUNBOOK_SELECT)
        .unwrap_or_default();
    let duration_text = values
        .value(modal::DURATION, action::DURATION_INPUT)
        .unwrap_or_default();
    let reason = values
        .value(modal::REASON, action::REASON_INPUT)
        .unwrap_or_default();
    if runbook.is_empty() {
        return Answer::Json(blocks::view_errors(&[(
            modal::RUNBOOK,
            "Choose what you need access to.".into(),
        )]));
    }
    let duration = if duration_text.trim().is_empty() {
        None
    } else {
        match parse_duration(&duration_text) {
            Ok(d) => Some(d),
            Err(e) => {
                return Answer::Json(blocks::view_errors(&[(modal::DURATION, e.to_string())]))
            }
        }
    };
    let n = NewRequest {
        user: v.user.id.clone(),
        runbook,
        duration,
        reason,
    };
    match wf.create_request(n).await {
        Ok(req) => {
            tell(state, &req.id, None, &v.user.id, created_text(&req));
            Answer::Empty
        }
        Err(e) => Answer::Json(blocks::view_errors(&[(e.field(), e.to_string())])),
    }
}

fn handle_event(state: &AppState, e: EventBody, is_retry: bool) -> Answer {
    match e {
        EventBody::UrlVerification { challenge } => Answer::Json(json!({ "challenge": challenge })),
        EventBody::Callback { event_id, event } => {
            let key = format!("event:{event_id}");
            match state.workflow.store.seen_before(key.as_bytes()) {
                Ok(Some(_)) => return Answer::NoRetry,
                Ok(None) => {}
                Err(_) => return Answer::Empty,
            }
            let _ = state
                .workflow
                .store
                .remember_seen(key.as_bytes(), Utc::now(), b"");
            if event["type"] == "app_home_opened"
                && event["tab"].as_str().unwrap_or("home") == "home"
            {
                if let Some(user) = event["user"].as_str() {
                    publish_home(state, user);
                }
            }
            if is_retry {
                Answer::NoRetry
            } else {
                Answer::Empty
            }
        }
        EventBody::Other(_) => Answer::Empty,
    }
}

fn publish_home(state: &AppState, user: &str) {
    let lines: Vec<String> = state
        .workflow
        .store
        .all_requests()
        .unwrap_or_default()
        .iter()
        .filter(|r| r.requester == user && !r.status.is_terminal())
        .map(blocks::status_line)
        .collect();
    let effects = Effects {
        outbox: vec![OutboxItem::new(
            format!("home:{user}"),
            SlackOp::PublishHome {
                user: user.to_string(),
                view: blocks::home_view(&lines),
            },
        )],
        audit: vec![],
    };
    if state.workflow.store.enqueue(effects).is_ok() {
        state.workflow.wake();
    }
}

/// `GET /audit[?since=SEQ]`: the audit log as JSON lines, for auditors and
/// SIEMs, while the bot runs. Needs `Authorization: Bearer <ACCESSBOT_AUDIT_TOKEN>`.
/// The whole hash chain is verified on every export; the verdict is in the
/// `X-Accessbot-Audit-Chain` header (`intact` or `broken-at=<seq>`).
async fn audit_export(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    let Some(token) = &s.audit_token else {
        return reject(
            StatusCode::NOT_FOUND,
            "the audit export is off; set ACCESSBOT_AUDIT_TOKEN to turn it on",
        );
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !same_secret(given, token.expose()) {
        tracing::warn!("refused an audit export without the right token");
        return reject(
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer <ACCESSBOT_AUDIT_TOKEN>",
        );
    }
    let events = match s.workflow.store.audit_events() {
        Ok(events) => events,
        Err(e) => {
            tracing::error!(error = %e, "audit export could not read the log");
            return reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable; retry",
            );
        }
    };
    let chain = match crate::audit::verify_chain(&events) {
        Ok(_) => "intact".to_string(),
        Err(seq) => {
            tracing::error!(seq, "audit log hash chain is broken");
            format!("broken-at={seq}")
        }
    };
    let mut body = String::new();
    for e in events
        .iter()
        .filter(|e| q.since.is_none_or(|since| e.seq > since))
    {
        body.push_str(&serde_json::to_string(e).unwrap_or_default());
        body.push('\n');
    }
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/x-ndjson".to_string(),
            ),
            (
                axum::http::HeaderName::from_static("x-accessbot-audit-chain"),
                chain,
            ),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
struct AuditQuery {
    since: Option<u64>,
}

/// Compares two secrets in time that depends on neither: both are hashed
/// first, so lengths and contents leak nothing.
fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn healthz(State(s): State<AppState>) -> Response {
    let errors = s
        .delivery
        .permanent_errors
        .lock()
        .expect("health lock")
        .clone();
    let status = if errors.is_empty() { "ok" } else { "degraded" };
    Json(json!({
        "status": status,
        "outbox_pending": s.workflow.store.outbox_len(),
        "slack_errors": errors,
    }))
    .into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    let m = &s.metrics;
    let counts = s
        .workflow
        .store
        .all_requests()
        .unwrap_or_default()
        .into_iter()
        .fold(
            std::collections::BTreeMap::<&'static str, u64>::new(),
            |mut acc, r| {
                *acc.entry(r.status.label()).or_default() += 1;
                acc
            },
        );
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
        ));
    };
    counter(
        "accessbot_commands_total",
        "Slash commands received.",
        m.commands.load(Ordering::Relaxed),
    );
    counter(
        "accessbot_interactions_total",
        "Interactivity payloads received.",
        m.interactions.load(Ordering::Relaxed),
    );
    counter(
        "accessbot_events_total",
        "Events API deliveries received.",
        m.events.load(Ordering::Relaxed),
    );
    counter(
        "accessbot_rejected_signatures_total",
        "Requests refused for a bad or stale signature.",
        m.rejected_signatures.load(Ordering::Relaxed),
    );
    counter(
        "accessbot_replays_total",
        "Repeated deliveries answered from the replay guard.",
        m.replays.load(Ordering::Relaxed),
    );
    counter(
        "accessbot_bad_payloads_total",
        "Malformed payloads refused.",
        m.bad_payloads.load(Ordering::Relaxed),
    );
    counter(
        "accessbot_slack_delivered_total",
        "Slack messages delivered from the outbox.",
        s.delivery.delivered.load(Ordering::Relaxed),
    );
    counter(
        "accessbot_slack_retries_total",
        "Slack deliveries retried.",
        s.delivery.retried.load(Ordering::Relaxed),
    );
    out.push_str("# HELP accessbot_outbox_pending Slack messages waiting for delivery.\n# TYPE accessbot_outbox_pending gauge\n");
    out.push_str(&format!(
        "accessbot_outbox_pending {}\n",
        s.workflow.store.outbox_len()
    ));
    out.push_str(
        "# HELP accessbot_requests Requests by status.\n# TYPE accessbot_requests gauge\n",
    );
    for (status, n) in counts {
        out.push_str(&format!("accessbot_requests{{status=\"{status}\"}} {n}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
