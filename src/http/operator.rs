//! The operator endpoints: `GET /healthz` (liveness, and counts of what is
//! failing: revokes, grants, Slack deliveries, the Slack setup),
//! `GET /readyz` (readiness, for a load balancer), `GET /metrics` (Prometheus text, see
//! [`crate::metrics`]; optionally behind `ACCESSBOT_METRICS_TOKEN`) and `GET /audit`
//! (the audit log as JSON lines, behind its own token). They read; nothing
//! here changes a request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::reject;
use crate::config::Secret;
use crate::outbox::DeliveryHealth;
use crate::preflight::{SetupHealth, SetupState};
use crate::request::Status;
use crate::workflow::Workflow;

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

/// What the operator endpoints read.
#[derive(Clone)]
pub(super) struct Operator {
    pub workflow: Arc<Workflow>,
    /// Guards `GET /audit`; `None` turns the export off.
    pub audit_token: Option<Secret>,
    pub delivery: Arc<DeliveryHealth>,
    pub setup: Arc<SetupHealth>,
    pub metrics: Arc<Metrics>,
    /// Socket Mode's state, when it is on.
    pub socket_mode: Option<Arc<crate::socket_mode::SocketHealth>>,
    /// Guards `GET /metrics`; open without one.
    pub metrics_token: Option<Secret>,
}

pub(super) fn router(state: Operator) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/audit", get(audit_export))
        .with_state(state)
}

/// `GET /audit[?since=SEQ]`: the audit log as JSON lines, for auditors and
/// SIEMs, while the bot runs. Needs `Authorization: Bearer <ACCESSBOT_AUDIT_TOKEN>`.
/// The whole hash chain is verified on every export; the verdict is in the
/// `X-Accessbot-Audit-Chain` header (`intact` or `broken-at=<seq>`).
async fn audit_export(
    State(s): State<Operator>,
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
        .get(header::AUTHORIZATION)
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
    // The chain is verified a page at a time first (its verdict goes in a
    // header, before the body); then the body streams the log a page at a
    // time. Memory stays constant however long the log is.
    let chain = match s.workflow.verify_audit().await {
        Ok(Ok(_)) => "intact".to_string(),
        Ok(Err(seq)) => {
            tracing::error!(seq, "audit log hash chain is broken");
            format!("broken-at={seq}")
        }
        Err(e) => {
            tracing::error!(error = %e, "audit export could not read the log");
            return reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable; retry",
            );
        }
    };
    let workflow = Arc::clone(&s.workflow);
    let pages = futures_util::stream::unfold(Some(q.since.unwrap_or(0)), move |after| {
        let workflow = Arc::clone(&workflow);
        async move {
            let after = after?;
            match workflow.audit_page(after, AUDIT_PAGE).await {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let last = page.last().map_or(after, |e| e.seq);
                    let mut chunk = String::new();
                    for e in &page {
                        chunk.push_str(&serde_json::to_string(e).unwrap_or_default());
                        chunk.push('\n');
                    }
                    Some((Ok::<_, std::io::Error>(chunk), Some(last)))
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit export stopped: the log could not be read");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (
                header::HeaderName::from_static("x-accessbot-audit-chain"),
                chain,
            ),
        ],
        Body::from_stream(pages),
    )
        .into_response()
}

/// Events per page of the export.
const AUDIT_PAGE: usize = 500;

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

/// `GET /healthz`: a liveness check that also says whether accessbot is
/// doing its job. Always HTTP 200 while the process serves (restarting the
/// bot fixes none of what `degraded` reports, and would cut off running
/// grants and revokes); `status` is `degraded` while any revoke or grant is
/// failing, Slack refused a delivery that has not succeeded since, or the
/// Slack setup check has not passed. Unauthenticated, so counts only: no
/// people, channels or request text. Which ones is in the log and, for
/// grants and revokes, in the audit log (`GET /audit`).
async fn healthz(State(s): State<Operator>) -> Response {
    let provisioning = s.workflow.provisioning_health().await;
    let storage_ok = provisioning.is_some();
    let provisioning = provisioning.unwrap_or_default();
    let deliveries_failing = s.delivery.failing();
    let setup = s.setup.state();
    let setup_problems = match setup {
        SetupState::Failed(n) => n,
        _ => 0,
    };
    let healthy = storage_ok
        && provisioning.revokes_failing == 0
        && provisioning.grants_failing == 0
        && provisioning.needs_attention == 0
        && deliveries_failing == 0
        && setup == SetupState::Passed
        && s.socket_mode
            .as_ref()
            .is_none_or(|h| h.state() == crate::socket_mode::SocketState::Connected);
    let mut body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "revokes_failing": provisioning.revokes_failing,
        "grants_failing": provisioning.grants_failing,
        "needs_attention": provisioning.needs_attention,
        "slack_deliveries_failing": deliveries_failing,
        "slack_errors": s.delivery.failing_by_error(),
        "slack_setup": setup.label(),
        "slack_setup_problems": setup_problems,
        "storage": if storage_ok { "ok" } else { "unreadable" },
        "outbox_pending": s.workflow.outbox_len().await,
        "audit_backlog": s.workflow.audit_backlog().await.ok(),
    });
    // `socket_mode`: `connecting`, `connected`, `reconnecting` or
    // `link_disabled` (Slack turned it off; restart after turning it on).
    if let Some(h) = &s.socket_mode {
        body["socket_mode"] = json!(h.state().label());
        body["socket_mode_reconnects"] = json!(h.reconnects());
    }
    Json(body).into_response()
}

/// How long `/readyz` waits for the store before calling it not ready: well
/// under a load balancer's probe timeout.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /readyz`: whether this replica should be sent traffic. 200
/// `{"status":"ready"}` when the store answers a read; 503 with a reason
/// when it does not (a database that is down or unreachable), so a load
/// balancer sends Slack to another replica meanwhile. The runbooks need no
/// check here: nothing listens until they are loaded and valid.
/// Unlike `/healthz`, the HTTP code is the answer.
async fn readyz(State(s): State<Operator>) -> Response {
    let probe = match tokio::time::timeout(READY_TIMEOUT, s.workflow.store_ready()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(detail)) => Err(NotReady {
            reason: "store unreachable",
            detail,
        }),
        Err(_) => Err(NotReady {
            reason: "store not answering",
            detail: format!("no answer within {} s", READY_TIMEOUT.as_secs()),
        }),
    };
    readiness(probe)
}

/// Why `/readyz` says no: `reason` is shown to anyone who asks, `detail`
/// (which may name the database host) only goes to the log.
#[derive(Debug)]
struct NotReady {
    reason: &'static str,
    detail: String,
}

fn readiness(probe: Result<(), NotReady>) -> Response {
    match probe {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(NotReady { reason, detail }) => {
            tracing::warn!(reason, detail = %detail, "not ready: /readyz answers 503");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not_ready", "reason": reason})),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text ([`crate::metrics`]). With
/// `ACCESSBOT_METRICS_TOKEN` set it needs `Authorization: Bearer <token>`
/// (compared in constant time) and answers 401 without it; without the
/// setting it is open, for a proxy that keeps it inside. State gauges are
/// read from the store now, so every replica reports the same numbers.
async fn metrics(State(s): State<Operator>, headers: HeaderMap) -> Response {
    if let Some(token) = &s.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !same_secret(given, token.expose()) {
            tracing::warn!("refused a /metrics scrape without the right token");
            return reject(
                StatusCode::UNAUTHORIZED,
                "send Authorization: Bearer <ACCESSBOT_METRICS_TOKEN>",
            );
        }
    }
    let counts = s.workflow.request_counts().await;
    let (d, m) = (&s.delivery, &s.metrics);
    let mut scrape = crate::metrics::Scrape::default();
    for (name, help, value) in [
        (
            "accessbot_commands",
            "Slash commands received.",
            &m.commands,
        ),
        (
            "accessbot_interactions",
            "Interactivity payloads received.",
            &m.interactions,
        ),
        (
            "accessbot_events",
            "Events API deliveries received.",
            &m.events,
        ),
        (
            "accessbot_rejected_signatures",
            "Requests refused for a bad or stale signature.",
            &m.rejected_signatures,
        ),
        (
            "accessbot_replays",
            "Repeated deliveries answered from the replay guard.",
            &m.replays,
        ),
        (
            "accessbot_bad_payloads",
            "Malformed payloads refused.",
            &m.bad_payloads,
        ),
        (
            "accessbot_slack_delivered",
            "Slack messages delivered from the outbox.",
            &d.delivered,
        ),
        (
            "accessbot_slack_retries",
            "Slack deliveries retried.",
            &d.retried,
        ),
    ] {
        scrape.counter(name, help, value.load(Ordering::Relaxed));
    }
    scrape.counter(
        "accessbot_refused",
        "Attempts refused: presses, revokes and extensions by people who may not, requests past the limits.",
        s.workflow.refused_total(),
    );
    scrape.gauge(
        "accessbot_outbox_pending",
        "Slack messages waiting for delivery.",
        s.workflow.outbox_len().await,
    );
    scrape.gauge_by(
        "accessbot_outbox_backlog",
        "Slack messages waiting for delivery, by destination (a channel ID, direct_messages or app_home).",
        "channel",
        s.workflow.outbox_backlog().await,
    );
    let provisioning = s.workflow.provisioning_health().await.unwrap_or_default();
    for (name, help, v) in [
        (
            "accessbot_revokes_failing",
            "Requests whose revoke failed and is being retried.",
            provisioning.revokes_failing,
        ),
        (
            "accessbot_grants_failing",
            "Runbooks whose last grant failed.",
            provisioning.grants_failing,
        ),
        (
            "accessbot_slack_deliveries_failing",
            "Slack calls refused for good and not accepted since, by method and target.",
            d.failing(),
        ),
    ] {
        scrape.gauge(name, help, v as u64);
    }
    let count = |label: &str| counts.get(label).copied().unwrap_or(0);
    scrape.gauge(
        "accessbot_active_grants",
        "Requests whose access is granted now.",
        count(Status::Active.label()),
    );
    scrape.gauge(
        "accessbot_pending_requests",
        "Requests waiting for approval.",
        count(Status::Pending.label()),
    );
    scrape.gauge_by(
        "accessbot_requests",
        "Unfinished requests by status (finished ones are in the audit log).",
        "status",
        counts.into_iter().map(|(k, v)| (k.to_string(), v)),
    );
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        scrape.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(r: Response) -> (StatusCode, serde_json::Value) {
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn readyz_is_503_with_a_reason_and_no_detail_when_the_store_fails() {
        let detail = "cannot reach the database at postgres://accessbot:***@db.internal:5432/accessbot: connection refused";
        let (status, body) = body_of(readiness(Err(NotReady {
            reason: "store unreachable",
            detail: detail.into(),
        })))
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            json!({"status": "not_ready", "reason": "store unreachable"})
        );
        assert!(!body.to_string().contains("db.internal"), "{body}");
    }

    #[tokio::test]
    async fn readyz_is_200_on_a_store_that_answers() {
        let dir = tempfile::tempdir().unwrap();
        let state = Operator {
            workflow: Workflow::for_tests(dir.path()),
            audit_token: None,
            delivery: Default::default(),
            setup: Arc::new(SetupHealth::new(&crate::preflight::SlackCheck::Passed)),
            metrics: Default::default(),
            socket_mode: None,
            metrics_token: None,
        };
        let (status, body) = body_of(readyz(State(state)).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"status": "ready"}));
    }
}
