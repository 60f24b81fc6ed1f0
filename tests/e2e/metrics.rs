//! `GET /metrics` read the way Prometheus reads it (a text-format parser)
//! after a scripted flow: request outcomes by runbook, the histograms of
//! time to decision, revoke lag and ack latency, Slack API and provider
//! errors, and the gauges read from the store; and the optional token.

use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};

use crate::support::*;

const T: Duration = Duration::from_secs(20);
const METRICS_TOKEN: &str = "metrics-token-3f9a1c77e2b04d58a6";

async fn scrape(app: &TestApp) -> Scrape {
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text")
}

/// The value of the sample `metric` with exactly these labels, if any.
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| {
            x.metric == metric
                && x.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v))
        })
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric} is not a single value: {other:?}"),
        })
}

/// The buckets of histogram `metric` with these labels: (upper bound, count).
fn buckets(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match &x.value {
            Value::Histogram(b) => b.iter().map(|c| (c.less_than, c.count)).collect(),
            other => panic!("{metric} is not a histogram: {other:?}"),
        })
        .unwrap_or_default()
}

/// Waits until the scrape satisfies `ok`; panics with the last one after `timeout`.
async fn wait_metrics(app: &TestApp, timeout: Duration, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + timeout;
    loop {
        let s = scrape(app).await;
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics never got there; last:\n{:#?}\nlogs:\n{}",
            s.samples,
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn outcome(s: &Scrape, outcome: &str) -> f64 {
    value(
        s,
        "accessbot_request_outcomes_total",
        &[("runbook", "billing-admin"), ("outcome", outcome)],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_scripted_flow_of_requests_decisions_and_failures() {
    let app = TestApp::spawn().await;
    // The first audit notice is rate limited once: a Slack API error.
    app.slack.rate_limit_next("chat.postMessage", 1, 1);

    // Approved, granted, revoked on time.
    let a = app.request(ALICE, "billing-admin 2s month end").await;
    app.wait_dm(BOB, &[&a], T).await;
    app.press(BOB, "approve", &a).await;
    // Its grant has run before the next one is made to fail.
    app.wait_done(&format!("grant {a}"), T).await;
    // Denied.
    let b = app.request(DAVE, "billing-admin 1h wrong runbook").await;
    app.wait_dm(BOB, &[&b], T).await;
    app.press(BOB, "deny", &b).await;
    // Approved, but the grant fails: a provider error, then clean-up.
    app.fail_provider("grant", 1);
    let c = app.request(MALLORY, "billing-admin 1h try it").await;
    app.wait_dm(BOB, &[&c], T).await;
    app.press(BOB, "approve", &c).await;
    // Still waiting.
    let d = app.request(OWNER, "billing-admin 1h later").await;
    app.wait_dm(BOB, &[&d], T).await;

    // Withdrawn by its requester: no one's decision.
    let w = app.request(CAROL, "billing-admin 1h never mind").await;
    app.wait_dm(BOB, &[&w], T).await;
    app.slash(CAROL, &format!("revoke {w}")).await;

    let s = wait_metrics(&app, T, |s| {
        outcome(s, "revoked") == 1.0
            && outcome(s, "failed") == 1.0
            && outcome(s, "withdrawn") == 1.0
    })
    .await;
    assert_eq!(outcome(&s, "requested"), 5.0);
    assert_eq!(outcome(&s, "approved"), 2.0);
    assert_eq!(outcome(&s, "denied"), 1.0);
    assert_eq!(outcome(&s, "granted"), 1.0);
    assert_eq!(outcome(&s, "expired"), 0.0);

    let rb = [("runbook", "billing-admin")];
    assert_eq!(
        value(&s, "accessbot_time_to_decision_seconds_count", &rb),
        Some(3.0),
        "two approvals and a denial"
    );
    let decided = buckets(&s, "accessbot_time_to_decision_seconds", &rb);
    assert_eq!(decided.last().map(|b| b.1), Some(3.0), "{decided:?}");
    assert!(decided.iter().any(|b| b.0.is_infinite()), "{decided:?}");

    assert_eq!(
        value(&s, "accessbot_revoke_lag_seconds_count", &[]),
        Some(1.0)
    );
    let lag = value(&s, "accessbot_revoke_lag_seconds_sum", &[]).unwrap();
    assert!((0.0..30.0).contains(&lag), "revoke lag {lag}");

    let commands = [("transport", "http"), ("kind", "commands")];
    let interactions = [("transport", "http"), ("kind", "interactions")];
    assert!(value(&s, "accessbot_ack_seconds_count", &commands).unwrap() >= 6.0);
    assert!(value(&s, "accessbot_ack_seconds_count", &interactions).unwrap() >= 3.0);
    assert!(!buckets(&s, "accessbot_ack_seconds", &commands).is_empty());

    assert_eq!(
        value(
            &s,
            "accessbot_provider_errors_total",
            &[("provider", "command"), ("action", "grant")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "accessbot_slack_api_errors_total",
            &[("method", "chat.postMessage"), ("error", "ratelimited")]
        ),
        Some(1.0)
    );

    // Gauges from the store.
    assert_eq!(value(&s, "accessbot_pending_requests", &[]), Some(1.0));
    assert_eq!(value(&s, "accessbot_active_grants", &[]), Some(0.0));
    assert_eq!(
        value(&s, "accessbot_requests", &[("status", "pending approval")]),
        Some(1.0)
    );
    // The counters that were there before keep their names.
    assert!(value(&s, "accessbot_commands_total", &[]).unwrap() >= 4.0);
    assert!(value(&s, "accessbot_interactions_total", &[]).unwrap() >= 3.0);

    // The backlog per channel: slow Slack down, and a new request's
    // messages wait, by destination.
    app.wait_outbox_empty(T).await;
    app.slack
        .set_delay("chat.postMessage", Duration::from_secs(3));
    app.request(DAVE, "billing-admin 1h second try").await;
    let s = wait_metrics(&app, T, |s| {
        value(s, "accessbot_outbox_backlog", &[("channel", AUDIT)]).unwrap_or(0.0) >= 1.0
    })
    .await;
    assert!(value(&s, "accessbot_outbox_pending", &[]).unwrap() >= 1.0);
    assert_eq!(value(&s, "accessbot_pending_requests", &[]), Some(2.0));
    app.slack.set_delay("chat.postMessage", Duration::ZERO);
    app.wait_outbox_empty(T).await;
    let s = scrape(&app).await;
    assert_eq!(
        value(&s, "accessbot_outbox_backlog", &[("channel", AUDIT)]),
        None,
        "an empty outbox has no backlog"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_is_required_when_set() {
    let app =
        TestApp::spawn_with(Setup::default().env("ACCESSBOT_METRICS_TOKEN", METRICS_TOKEN)).await;
    let url = format!("{}/metrics", app.base);
    let http = reqwest::Client::new();
    let without = http.get(&url).send().await.unwrap();
    assert_eq!(without.status(), 401);
    let wrong = http
        .get(&url)
        .bearer_auth("metrics-token-3f9a1c77e2b04d58a7")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body = wrong.text().await.unwrap();
    assert!(body.contains("ACCESSBOT_METRICS_TOKEN"), "{body}");
    assert!(!body.contains(METRICS_TOKEN));
    let right = http
        .get(&url)
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    let text = right.text().await.unwrap();
    let s = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert_eq!(value(&s, "accessbot_pending_requests", &[]), Some(0.0));
    assert!(!app.logs().contains(METRICS_TOKEN), "the token is a secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stay_open_without_a_token() {
    let app = TestApp::spawn().await;
    let s = scrape(&app).await;
    assert_eq!(value(&s, "accessbot_active_grants", &[]), Some(0.0));
    assert_eq!(value(&s, "accessbot_outbox_pending", &[]), Some(0.0));
}
