//! The audit channel that security can follow: one thread per request
//! (the first notice is the parent, later ones reply under it, across a
//! restart), loud notices broadcast to the channel, and a burst against a
//! rate-limited channel delivered in digests with every event, in order.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const T: Duration = Duration::from_secs(15);

/// The audit-channel messages that name request `id`, in the order posted.
fn notices_of(app: &TestApp, id: &str) -> Vec<Value> {
    app.slack
        .messages_in(AUDIT)
        .into_iter()
        .filter(|m| m.to_string().contains(id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_notices_are_one_thread_and_failures_are_broadcast() {
    let mut app = TestApp::spawn().await;
    let id = app
        .request(ALICE, "billing-admin 2s month-end refunds")
        .await;
    app.wait_audit(&["Access requested", &id], T).await;
    // Delivered and done (its ts stored first). The parent's ts is in the
    // store, not in this process: a restart keeps the thread.
    app.wait_outbox_empty(T).await;
    app.restart().await;
    app.fail_provider("revoke", 1);
    app.press(BOB, "approve", &id).await;
    app.wait_audit(&["Access revoked", &id], T).await;
    app.wait_outbox_empty(T).await;

    let notices = notices_of(&app, &id);
    let parent = &notices[0];
    let text = parent.to_string();
    assert!(text.contains("Access requested"), "{parent:#}");
    assert!(parent.get("thread_ts").is_none(), "{parent:#}");
    // Request ID, runbook, the requester as a mention, duration, reason.
    for part in [
        &id,
        "billing-admin",
        "<@U0ALICE>",
        "2 seconds",
        "month-end refunds",
    ] {
        assert!(text.contains(part), "{part:?} not in {parent:#}");
    }
    let ts = parent["ts"].as_str().unwrap();
    let kinds = [
        "Approved",
        "Access granted",
        "Revoke failed",
        "Access revoked",
    ];
    for kind in kinds {
        let reply = notices
            .iter()
            .find(|m| m["text"].as_str().unwrap_or_default().contains(kind))
            .unwrap_or_else(|| panic!("no {kind} notice in {notices:#?}"));
        assert_eq!(
            reply["thread_ts"], ts,
            "{kind} is not in the thread: {reply:#}"
        );
        let loud = kind == "Revoke failed";
        assert_eq!(
            reply.get("reply_broadcast") == Some(&Value::Bool(true)),
            loud,
            "{kind}: {reply:#}"
        );
        assert_eq!(
            reply["text"].as_str().unwrap().contains("ALERT"),
            loud,
            "{kind}: {reply:#}"
        );
    }
    assert_eq!(
        notices
            .iter()
            .filter(|m| m.get("thread_ts").is_none())
            .count(),
        1,
        "one parent only: {notices:#?}"
    );
    let health: Value = app.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["audit_backlog"], 0, "{health}");
}

/// Which event a line or notice is, and of which request.
fn event_of(text: &str) -> (String, String) {
    let kind = if text.contains("Access requested") {
        "requested"
    } else if text.contains("Withdrawn") {
        "withdrawn"
    } else {
        "other"
    };
    let id = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| w.starts_with("ar-") && w.len() == 23)
        .unwrap_or_default();
    (kind.to_string(), id.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_against_a_rate_limited_channel_arrives_in_digests_complete_and_in_order() {
    let mut app = TestApp::spawn_with(
        Setup::default()
            .env("ACCESSBOT_AUDIT_DIGEST_AFTER", "20")
            .env("ACCESSBOT_AUDIT_DIGEST_EVERY", "1s"),
    )
    .await;
    // Like Slack: about one message per second in the channel, 429 otherwise.
    app.slack
        .rate_limit_channel(AUDIT, Duration::from_secs(1), 1);
    // 300 events: 150 requests, each withdrawn, one after the other.
    for _ in 0..150 {
        let id = app.request(ALICE, "billing-admin 1h burst").await;
        let answer = app.slash(ALICE, &format!("revoke {id}")).await;
        assert!(answer.contains("withdrawn"), "{answer}");
    }
    app.wait_outbox_empty(Duration::from_secs(120)).await;
    let limited = app
        .slack
        .calls("chat.postMessage")
        .iter()
        .filter(|c| c.body["channel"] == AUDIT && c.answered["error"] == "ratelimited")
        .count();
    assert!(limited > 0, "the fake never rate limited the channel");

    let messages = app.slack.messages_in(AUDIT);
    let digests = messages
        .iter()
        .filter(|m| digest_lines(m).is_some())
        .count();
    assert!(
        digests > 0,
        "no digest was sent: {} messages",
        messages.len()
    );
    // Every event listed once, in the order of the audit log.
    let seen: Vec<(String, String)> = app.audit_texts().iter().map(|t| event_of(t)).collect();
    let health: Value = app.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["audit_backlog"], 0, "{health}");
    let log = app.audit_log().await;
    let expected: Vec<(String, String)> = log
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["request_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(expected.len(), 300);
    assert_eq!(seen.len(), 300, "{seen:?}");
    assert_eq!(seen, expected);
    assert!(
        messages.len() < 300,
        "{} messages for 300 events: nothing was combined",
        messages.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_stands_out_in_the_thread_and_the_channel() {
    let incident = BILLING
        .replace("id = \"billing-admin\"", "id = \"incident\"")
        .replace(
            "owner = \"U0OWNER\"",
            "owner = \"U0OWNER\"\nbreak_glass = true",
        );
    let app = TestApp::spawn_with(Setup::default().only_runbook("incident", &incident)).await;
    let id = app.request(ALICE, "incident 1h database down").await;
    app.wait_audit(&["Break-glass access taken", &id], T).await;
    app.wait_audit(&["Access granted", &id], T).await;
    app.wait_outbox_empty(T).await;
    let notices = notices_of(&app, &id);
    let parent = &notices[0];
    assert!(
        parent["text"]
            .as_str()
            .unwrap()
            .contains("Access requested"),
        "{parent:#}"
    );
    let taken = notices
        .iter()
        .find(|m| {
            m["text"]
                .as_str()
                .unwrap_or_default()
                .contains("Break-glass access taken")
        })
        .unwrap();
    assert_eq!(taken["thread_ts"], parent["ts"], "{taken:#}");
    assert_eq!(taken["reply_broadcast"], true, "{taken:#}");
    assert!(
        taken["text"]
            .as_str()
            .unwrap()
            .starts_with(":rotating_light: *ALERT*"),
        "{taken:#}"
    );
}
