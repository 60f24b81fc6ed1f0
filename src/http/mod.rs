//! HTTP ingress: the three endpoints Slack calls, plus the operator
//! endpoints of [`operator`].
//!
//! Every `/slack/*` request goes through [`signed`]: body size capped, the
//! signature checked on the raw bytes before anything is parsed, the content
//! type checked, and a delivery seen before answered from the [`crate::replay`]
//! guard without doing anything again. The parsed payload then goes to
//! [`Dispatch`], and the [`Reply`] it gives is turned into the HTTP answer
//! here: only this module knows about headers and status codes.

mod operator;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::Utc;

use crate::config::Secret;
use crate::dispatch::{Dispatch, Reply};
use crate::outbox::DeliveryHealth;
use crate::preflight::SetupHealth;
use crate::slack::payload::{self, CommandBody};
use crate::slack::signature;
use crate::workflow::Workflow;

use crate::replay::{DeliveryKey, ReplayGuard, Seen};
pub use operator::Metrics;

/// Largest body accepted on any endpoint.
pub const MAX_BODY: usize = 64 * 1024;

/// What the HTTP server is built from.
#[derive(Clone)]
pub struct AppState {
    pub workflow: Arc<Workflow>,
    /// Answers each Slack delivery once, across replicas.
    pub replay: ReplayGuard,
    /// `None` (Socket Mode only): the `/slack/*` routes are off and answer 404.
    pub signing_secret: Option<Secret>,
    /// Guards `GET /audit`; `None` turns the export off.
    pub audit_token: Option<Secret>,
    pub delivery: Arc<DeliveryHealth>,
    /// The Slack setup check's latest outcome.
    pub setup: Arc<SetupHealth>,
    pub metrics: Arc<Metrics>,
    /// Socket Mode's state, when it is on.
    pub socket_mode: Option<Arc<crate::socket_mode::SocketHealth>>,
    /// Guards `GET /metrics`; open without one.
    pub metrics_token: Option<Secret>,
}

/// What the `/slack/*` handlers share.
#[derive(Clone)]
struct Ingress {
    dispatch: Dispatch,
    signing_secret: Secret,
    replay: ReplayGuard,
    metrics: Arc<Metrics>,
}

pub fn router(state: AppState) -> Router {
    let ingress = state.signing_secret.map(|signing_secret| Ingress {
        dispatch: Dispatch::new(Arc::clone(&state.workflow)),
        signing_secret,
        replay: state.replay,
        metrics: Arc::clone(&state.metrics),
    });
    let operator = operator::Operator {
        workflow: state.workflow,
        audit_token: state.audit_token,
        delivery: state.delivery,
        setup: state.setup,
        metrics: state.metrics,
        socket_mode: state.socket_mode,
        metrics_token: state.metrics_token,
    };
    // Without a signing secret no request can be shown to come from Slack,
    // so the Slack routes do not exist (404); Socket Mode carries Slack then.
    let slack = match ingress {
        Some(ingress) => Router::new()
            .route("/slack/commands", post(commands))
            .route("/slack/interactions", post(interactions))
            .route("/slack/events", post(events))
            .with_state(ingress),
        None => Router::new(),
    };
    slack
        .merge(operator::router(operator))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// Which endpoint a signed body came in on.
#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Commands,
    Interactions,
    Events,
}

impl Endpoint {
    /// The kind of delivery, as the replay guard names it.
    fn kind(self) -> &'static str {
        match self {
            Endpoint::Commands => "commands",
            Endpoint::Interactions => "interactions",
            Endpoint::Events => "events",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Endpoint::Events => "application/json",
            _ => "application/x-www-form-urlencoded",
        }
    }
}

/// A refusal before any handler runs.
fn reject(status: StatusCode, text: &str) -> Response {
    (status, text.to_string()).into_response()
}

/// Verifies, de-duplicates and dispatches one request from Slack.
async fn signed(s: Ingress, endpoint: Endpoint, headers: HeaderMap, body: Bytes) -> Response {
    let received = std::time::Instant::now();
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = signature::verify_at(
        &s.signing_secret,
        header_str("x-slack-request-timestamp"),
        header_str("x-slack-signature"),
        &body,
        Utc::now().timestamp(),
    ) {
        s.metrics
            .rejected_signatures
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(reason = %e, "refused a request without a valid Slack signature");
        return reject(StatusCode::UNAUTHORIZED, "invalid or stale Slack signature");
    }
    let wants = endpoint.content_type();
    if !header_str("content-type")
        .unwrap_or_default()
        .starts_with(wants)
    {
        s.metrics.bad_payloads.fetch_add(1, Ordering::Relaxed);
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("expected Content-Type {wants}"),
        );
    }
    let is_retry = header_str("x-slack-retry-num").is_some();
    // A delivery seen before (a replay, or Slack's retry of an event) gets
    // the first answer and does nothing more; a retried event is also told
    // not to come again, as the event's own handling would tell it.
    let repeat = |answer: Vec<u8>| {
        let r = answer_with(answer);
        if endpoint == Endpoint::Events && is_retry {
            no_retry(r)
        } else {
            r
        }
    };
    let key = DeliveryKey::new(endpoint.kind(), &body);
    let handling = match s.replay.check(&key).await {
        Ok(Seen::New(handling)) => handling,
        Ok(Seen::Answered(answer)) => {
            s.metrics.replays.fetch_add(1, Ordering::Relaxed);
            tracing::info!("answered a repeated delivery from the replay guard");
            return repeat(answer);
        }
        Ok(Seen::InFlight) => {
            // The same delivery is being handled right now: wait for that answer.
            s.metrics.replays.fetch_add(1, Ordering::Relaxed);
            return match s.replay.answer_of_twin(&key).await {
                Some(answer) => repeat(answer),
                None => StatusCode::OK.into_response(),
            };
        }
        Err(e) => {
            tracing::error!(error = %e, "replay guard unavailable");
            return reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable; retry",
            );
        }
    };
    let reply = match parse_and_dispatch(&s, endpoint, &body, is_retry).await {
        Ok(reply) => reply,
        Err(e) => return bad_payload(&s, e),
    };
    let answer = reply
        .payload()
        .map(|v| v.to_string().into_bytes())
        .unwrap_or_default();
    handling.answered(&answer).await;
    crate::metrics::observe_ack("http", endpoint.kind(), received.elapsed());
    let response = answer_with(answer);
    if reply == Reply::AckNoRetry {
        no_retry(response)
    } else {
        response
    }
}

/// Parses a verified body as its endpoint expects and hands it to dispatch.
async fn parse_and_dispatch(
    s: &Ingress,
    endpoint: Endpoint,
    body: &[u8],
    is_retry: bool,
) -> Result<Reply, payload::PayloadError> {
    Ok(match endpoint {
        Endpoint::Commands => {
            s.metrics.commands.fetch_add(1, Ordering::Relaxed);
            match payload::parse_command(body)? {
                CommandBody::SslCheck => Reply::Ack,
                CommandBody::Command(cmd) => s.dispatch.handle_command(cmd).await,
            }
        }
        Endpoint::Interactions => {
            s.metrics.interactions.fetch_add(1, Ordering::Relaxed);
            let interaction = payload::parse_interaction(body)?;
            s.dispatch.handle_interaction(interaction).await
        }
        Endpoint::Events => {
            s.metrics.events.fetch_add(1, Ordering::Relaxed);
            s.dispatch
                .handle_event(payload::parse_event(body)?, is_retry)
                .await
        }
    })
}

/// A 200 carrying `answer`: empty, or Slack JSON.
fn answer_with(answer: Vec<u8>) -> Response {
    if answer.is_empty() {
        return StatusCode::OK.into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        answer,
    )
        .into_response()
}

/// Tells Slack not to deliver this again.
fn no_retry(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("x-slack-no-retry", HeaderValue::from_static("1"));
    response
}

/// A payload that could not be parsed: 400, not remembered, so nothing is
/// answered from the replay guard for it.
fn bad_payload(s: &Ingress, e: payload::PayloadError) -> Response {
    s.metrics.bad_payloads.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(error = %e, "refused a malformed payload");
    reject(StatusCode::BAD_REQUEST, &format!("malformed request: {e}"))
}

async fn commands(State(s): State<Ingress>, headers: HeaderMap, body: Bytes) -> Response {
    signed(s, Endpoint::Commands, headers, body).await
}

async fn interactions(State(s): State<Ingress>, headers: HeaderMap, body: Bytes) -> Response {
    signed(s, Endpoint::Interactions, headers, body).await
}

async fn events(State(s): State<Ingress>, headers: HeaderMap, body: Bytes) -> Response {
    signed(s, Endpoint::Events, headers, body).await
}
