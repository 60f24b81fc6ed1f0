//! Socket Mode: the real binary connects to the fake Socket Mode endpoint
//! that the fake Slack's `apps.connections.open` hands out, and Slack's
//! deliveries arrive as envelopes: hello, acks with the answer, a press
//! that grants, refreshes and drops, redeliveries, `link_disabled`, and the
//! same request / approve / revoke flow over HTTP and over Socket Mode.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_socket_mode::slash_payload;
use crate::support::*;

const T: Duration = Duration::from_secs(10);

/// `/healthz` as JSON.
async fn health(app: &TestApp) -> Value {
    app.get("/healthz")
        .await
        .json()
        .await
        .expect("/healthz JSON")
}

/// Waits until `/healthz` says Socket Mode is `state`.
async fn wait_socket_state(app: &TestApp, state: &str) -> Value {
    let deadline = std::time::Instant::now() + T;
    loop {
        let h = health(app).await;
        if h["socket_mode"] == state {
            return h;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Socket Mode is not {state:?} after {T:?}: {h}\nlogs:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The connection the bot is on, once it is up.
async fn connected(app: &TestApp) -> usize {
    wait_socket_state(app, "connected").await;
    app.socket.live_connection().expect("an open connection")
}

/// Sends `/access <text>` as `user` on connection `conn`; returns the ack.
async fn slash_on(app: &TestApp, conn: usize, user: &str, text: &str) -> Value {
    let id = app.socket.envelope(
        conn,
        "slash_commands",
        slash_payload(user, text, next_trigger()),
    );
    let ack = app.socket.wait_ack(&id, T).await;
    assert_eq!(ack.connection, conn, "acked on the connection it came on");
    ack.frame
}

/// The text of an ack's ephemeral answer.
fn answer_text(ack: &Value) -> String {
    ack["payload"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn next_trigger() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Waits until `/access status`, asked over Socket Mode, shows request
/// `id` as `state` (`None`: not listed, i.e. ended).
async fn wait_status_over_socket(app: &TestApp, user: &str, id: &str, state: Option<&str>) {
    let deadline = std::time::Instant::now() + T;
    loop {
        let conn = connected(app).await;
        let reply = answer_text(&slash_on(app, conn, user, "status").await);
        let seen = status_in(&reply, id);
        if seen.as_deref() == state {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "request {id} is {seen:?}, not {state:?}\nlogs:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_is_awaited_before_the_connection_counts_as_up() {
    let mut app = TestApp::spawn().await;
    assert!(
        health(&app).await.get("socket_mode").is_none(),
        "without SLACK_APP_TOKEN Socket Mode is off"
    );
    assert_eq!(app.socket.connections(), 0);

    app.socket.hold_hello(true);
    app.set_env("SLACK_APP_TOKEN", APP_TOKEN);
    app.restart().await;
    app.socket.wait_connection(1, T).await;
    let h = health(&app).await;
    assert_eq!(h["socket_mode"], "connecting", "{h}");
    assert_eq!(h["status"], "degraded", "{h}");

    // The URL was asked for with the app-level token, never the bot token.
    let opens = app.slack.calls("apps.connections.open");
    assert_eq!(opens.len(), 1);
    assert_eq!(
        opens[0].authorization.as_deref(),
        Some(format!("Bearer {APP_TOKEN}").as_str())
    );

    app.socket.send_hello(1);
    let h = wait_socket_state(&app, "connected").await;
    assert_eq!(h["socket_mode_reconnects"], 0, "{h}");
    assert!(
        !app.logs().contains(APP_TOKEN) && !app.logs().contains("ticket="),
        "the app token and the connection ticket stay out of the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_are_acknowledged_with_the_answer_and_http_slack_routes_are_off() {
    let app = TestApp::spawn_with(Setup::default().socket_mode_only()).await;
    let conn = connected(&app).await;

    let help = slash_on(&app, conn, ALICE, "help").await;
    assert_eq!(help["payload"]["response_type"], "ephemeral", "{help}");
    assert!(
        answer_text(&help).contains("/access revoke <request-id>"),
        "{help}"
    );

    let ack = slash_on(
        &app,
        conn,
        ALICE,
        "request billing-admin 3s month-end refunds",
    )
    .await;
    let answer = answer_text(&ack);
    let id = request_id_in(&answer).expect(&answer);
    assert!(answer.contains("waiting for approval"), "{answer}");
    // Acknowledged after the request was stored: the approvers hear of it.
    app.wait_dm(BOB, &[&id, "Approve"], T).await;

    // A modal submitted without a runbook: the error goes next to the field.
    let submission = app.socket.envelope(
        conn,
        "interactive",
        json!({
            "type": "view_submission",
            "user": {"id": ALICE, "username": "x", "team_id": "T0FAKE"},
            "team": {"id": "T0FAKE"},
            "api_app_id": "A0ACCESS",
            "view": {"id": "V0MODAL", "callback_id": "access_request", "private_metadata": "", "hash": "h1",
                     "state": {"values": {}}}
        }),
    );
    let ack = app.socket.wait_ack(&submission, T).await.frame;
    assert_eq!(
        ack,
        json!({"envelope_id": submission, "payload": {"response_action": "errors",
               "errors": {"runbook": "Choose what you need access to."}}})
    );

    // A malformed envelope is acknowledged, counted, and changes nothing.
    let bad = app.socket.envelope(
        conn,
        "slash_commands",
        json!({"text": "request billing-admin"}),
    );
    assert_eq!(
        app.socket.wait_ack(&bad, T).await.frame,
        json!({"envelope_id": bad})
    );
    assert_eq!(app.metric("accessbot_bad_payloads_total").await, 1);

    // No signing secret: Slack's HTTP routes do not exist; operators' do.
    let signed = app
        .post_signed(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            &TestApp::slash_body(ALICE, "help"),
            0,
        )
        .await;
    assert_eq!(signed.status(), 404);
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    assert!(app.metric("accessbot_commands_total").await >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approve_press_envelope_leads_to_a_grant() {
    let app = TestApp::spawn_with(Setup::default().socket_mode_only()).await;
    let conn = connected(&app).await;
    let answer =
        answer_text(&slash_on(&app, conn, ALICE, "request billing-admin 30s refunds").await);
    let id = request_id_in(&answer).expect(&answer);
    app.wait_dm(BOB, &[&id, "Approve"], T).await;

    let press = app
        .socket
        .envelope(conn, "interactive", block_action(BOB, "approve", &id));
    let ack = app.socket.wait_ack(&press, T).await.frame;
    assert_eq!(ack["envelope_id"], press.as_str());
    app.wait_done(&format!("grant {id}"), T).await;
    wait_status_over_socket(&app, ALICE, &id, Some("active")).await;
    app.wait_dm(ALICE, &["granted", "billing.example.com"], T)
        .await;
    app.wait_audit(&["Approved", &id], T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_requested_opens_the_next_connection_before_closing_the_old() {
    let app = TestApp::spawn_with(Setup::default().socket_mode_only()).await;
    let first = connected(&app).await;

    app.socket.hold_hello(true);
    app.socket.disconnect(first, "refresh_requested");
    app.socket.wait_connection(first + 1, T).await;
    let second = first + 1;
    // No hello on the new one yet: the old one still carries envelopes.
    let still = answer_text(&slash_on(&app, first, ALICE, "help").await);
    assert!(still.contains("/access"), "{still}");
    assert_eq!(
        app.socket.closed(first),
        None,
        "the old connection stays open until the new one is up"
    );

    app.socket.send_hello(second);
    assert_eq!(
        app.socket.wait_closed(first, T).await,
        "bot",
        "the bot closes the old connection itself"
    );
    let h = wait_socket_state(&app, "connected").await;
    assert_eq!(h["socket_mode_reconnects"], 1, "{h}");

    let answer =
        answer_text(&slash_on(&app, second, ALICE, "request billing-admin 3s refunds").await);
    let id = request_id_in(&answer).expect(&answer);
    app.wait_dm(BOB, &[&id, "Approve"], T).await;

    // `warning` is handled the same way.
    app.socket.hold_hello(false);
    app.socket.disconnect(second, "warning");
    assert_eq!(app.socket.wait_closed(second, T).await, "bot");
    let third = connected(&app).await;
    assert_eq!(third, second + 1);
    assert!(answer_text(&slash_on(&app, third, ALICE, "help").await).contains("/access"));
    assert_eq!(
        app.socket.refused_handshakes(),
        0,
        "every connection used a fresh ticket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_without_notice_is_reopened() {
    let app = TestApp::spawn_with(Setup::default().socket_mode_only()).await;
    let first = connected(&app).await;
    app.socket.drop_connection(first);
    app.socket.wait_connection(first + 1, T).await;
    let second = connected(&app).await;
    assert_eq!(second, first + 1);
    assert!(answer_text(&slash_on(&app, second, ALICE, "help").await).contains("/access"));
    assert_eq!(app.slack.calls("apps.connections.open").len(), 2);
    assert!(app.logs().contains("Socket Mode connection dropped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_stops_answering_pings_is_reopened() {
    let app = TestApp::spawn_with(
        Setup::default()
            .socket_mode_only()
            .env("ACCESSBOT_SOCKET_PING", "1s"),
    )
    .await;
    let first = connected(&app).await;
    // Answered pings keep the connection: it outlives several of them.
    wait_until(T, || (app.socket.pings(first) >= 3).then_some(()))
        .await
        .expect("the bot pings its connection every second");
    assert_eq!(
        app.socket.closed(first),
        None,
        "an answered ping keeps it up"
    );
    assert_eq!(app.socket.connections(), 1);
    app.socket.silence(first);
    app.socket.wait_connection(first + 1, T).await;
    let second = connected(&app).await;
    assert!(answer_text(&slash_on(&app, second, ALICE, "help").await).contains("/access"));
    assert!(
        app.logs().contains("no answer to a ping"),
        "the log says why the connection was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_envelope_is_handled_once() {
    let app = TestApp::spawn_with(Setup::default().socket_mode_only()).await;
    let first = connected(&app).await;
    let payload = slash_payload(ALICE, "request billing-admin 3s refunds", 4242);
    let envelope = app
        .socket
        .envelope(first, "slash_commands", payload.clone());
    let original = app.socket.wait_ack(&envelope, T).await.frame;
    assert!(
        request_id_in(&answer_text(&original)).is_some(),
        "{original}"
    );

    // Slack delivers it again on the next connection (its ack was lost).
    app.socket.drop_connection(first);
    let second = {
        app.socket.wait_connection(first + 1, T).await;
        connected(&app).await
    };
    app.socket
        .envelope_with_id(second, &envelope, "slash_commands", payload, 0);
    let acks = wait_until(T, || {
        let acks = app.socket.acks_of(&envelope);
        (acks.len() == 2).then_some(acks)
    })
    .await
    .expect("the redelivery is acknowledged");
    assert_eq!(acks[1].connection, second);
    assert_eq!(
        acks[1].frame, original,
        "the same answer, not a second request"
    );
    app.wait_outbox_empty(T).await;
    let asks: Vec<Value> = app
        .dms(BOB)
        .into_iter()
        .filter(|m| m.to_string().contains("Approve"))
        .collect();
    assert_eq!(asks.len(), 1, "Bob is asked once: {asks:#?}");
    assert!(app.metric("accessbot_replays_total").await >= 1);

    // An event retried in a new envelope (`retry_attempt`) is handled once.
    let event = json!({
        "type": "event_callback", "team_id": "T0FAKE", "api_app_id": "A0ACCESS",
        "event_id": "Ev0SOCKET1", "event_time": 1_700_000_000,
        "event": {"type": "app_home_opened", "user": ALICE, "channel": "DU0ALICE", "tab": "home"}
    });
    let e1 = app.socket.envelope(second, "events_api", event.clone());
    assert_eq!(
        app.socket.wait_ack(&e1, T).await.frame,
        json!({"envelope_id": e1})
    );
    app.socket
        .envelope_with_id(second, "fake-envelope-retry", "events_api", event, 1);
    app.socket.wait_ack("fake-envelope-retry", T).await;
    app.wait_outbox_empty(T).await;
    assert_eq!(
        app.slack
            .calls("views.publish")
            .iter()
            .filter(|c| c.body["user_id"] == ALICE)
            .count(),
        1,
        "the Home tab is published once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_disabled_stops_reconnecting_and_healthz_says_so() {
    let app = TestApp::spawn_with(Setup::default().socket_mode_only()).await;
    let first = connected(&app).await;
    app.socket.disconnect(first, "link_disabled");
    let h = wait_socket_state(&app, "link_disabled").await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(app.socket.wait_closed(first, T).await, "bot");
    assert!(app.logs().contains("link_disabled"), "the log says so");
    // A negative can only be observed for a while: longer than the longest
    // backoff (ACCESSBOT_RETRY_MAX is 2s in tests).
    let reconnected = wait_until(Duration::from_secs(5), || {
        (app.socket.connections() > first || app.slack.calls("apps.connections.open").len() > 1)
            .then_some(())
    })
    .await;
    assert!(reconnected.is_none(), "no reconnect after link_disabled");
    assert_eq!(health(&app).await["socket_mode"], "link_disabled");
}

/// How a flow's Slack deliveries reach the bot.
#[derive(Clone, Copy, Debug)]
enum Via {
    Http,
    SocketMode,
}

/// `/access <text>`: the answer's text.
async fn slash_via(app: &TestApp, via: Via, user: &str, text: &str) -> String {
    match via {
        Via::Http => app.slash(user, text).await,
        Via::SocketMode => {
            let conn = connected(app).await;
            answer_text(&slash_on(app, conn, user, text).await)
        }
    }
}

/// A button press: the answer's body ("" for none).
async fn press_via(app: &TestApp, via: Via, user: &str, action: &str, value: &str) -> String {
    match via {
        Via::Http => app.press(user, action, value).await.text().await.unwrap(),
        Via::SocketMode => {
            let conn = connected(app).await;
            let id = app
                .socket
                .envelope(conn, "interactive", block_action(user, action, value));
            let ack = app.socket.wait_ack(&id, T).await.frame;
            ack.get("payload").map(Value::to_string).unwrap_or_default()
        }
    }
}

/// Waits until `/access status` (over `via`) shows `id` as `state`.
async fn wait_status_via(app: &TestApp, via: Via, id: &str, state: Option<&str>) {
    let deadline = std::time::Instant::now() + T;
    loop {
        let seen = status_in(&slash_via(app, via, ALICE, "status").await, id);
        if seen.as_deref() == state {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{via:?}: request {id} is {seen:?}, not {state:?}\nlogs:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Request, approve, revoke over `via`; returns what people saw, with the
/// request ID and numbers (times, durations left) made neutral.
async fn request_approve_revoke(via: Via) -> Vec<String> {
    let setup = match via {
        Via::Http => Setup::default(),
        Via::SocketMode => Setup::default().socket_mode_only(),
    };
    let app = TestApp::spawn_with(setup).await;
    let mut seen = vec![];
    let answer = slash_via(
        &app,
        via,
        ALICE,
        "request billing-admin 10m quarter-end refunds",
    )
    .await;
    let id = request_id_in(&answer).expect(&answer);
    assert!(answer.contains("waiting for approval"), "{via:?}: {answer}");
    seen.push(answer);
    app.wait_dm(BOB, &[&id, "Approve"], T).await;

    seen.push(press_via(&app, via, BOB, "approve", &id).await);
    app.wait_done(&format!("grant {id}"), T).await;
    wait_status_via(&app, via, &id, Some("active")).await;

    seen.push(slash_via(&app, via, ALICE, &format!("revoke {id}")).await);
    app.wait_done(&format!("revoke {id}"), T).await;
    wait_status_via(&app, via, &id, None).await;
    app.wait_outbox_empty(T).await;

    assert_eq!(app.provider_runs("grant", &id).len(), 1, "{via:?}");
    assert_eq!(app.provider_runs("revoke", &id).len(), 1, "{via:?}");
    for user in [ALICE, BOB, CAROL] {
        for m in app.dms(user) {
            seen.push(format!(
                "DM {user}: {}",
                m["text"].as_str().unwrap_or_default()
            ));
        }
    }
    seen.extend(app.audit_texts().into_iter().map(|t| format!("audit: {t}")));
    seen.iter().map(|s| neutral(s, &id)).collect()
}

/// `text` with the request ID as `<id>` and every digit as `#`.
fn neutral(text: &str, id: &str) -> String {
    text.replace(id, "<id>")
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_flow_over_http_and_socket_mode_is_seen_identically() {
    let over_http = request_approve_revoke(Via::Http).await;
    let over_socket = request_approve_revoke(Via::SocketMode).await;
    assert!(
        over_http
            .iter()
            .any(|s| s.starts_with("audit: ") && s.contains("<id>")),
        "{over_http:#?}"
    );
    assert_eq!(over_http, over_socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_app_token_nor_signing_secret_stops_the_start_naming_both() {
    let mut app = TestApp::spawn().await;
    app.kill().await;
    app.set_env("SLACK_SIGNING_SECRET", "");
    let (code, stderr) = app.serve_once();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("SLACK_APP_TOKEN or SLACK_SIGNING_SECRET")
            && stderr.contains("connections:write")
            && stderr.contains("Signing Secret"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    // A bot token given as the app token is named, never printed.
    app.set_env("SLACK_APP_TOKEN", TOKEN);
    let (code, stderr) = app.serve_once();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("SLACK_APP_TOKEN") && stderr.contains("xapp-"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_app_token_is_logged_with_the_fix_and_retried() {
    const WRONG: &str = "xapp-1-A0ACCESS-wrong-token-do-not-print";
    let app = TestApp::spawn_with(
        Setup::default()
            .socket_mode_only()
            .env("SLACK_APP_TOKEN", WRONG),
    )
    .await;
    app.slack
        .wait_for_count("apps.connections.open", 2, T)
        .await;
    let calls = app.slack.calls("apps.connections.open");
    assert_eq!(calls[0].answered["error"], "invalid_auth");
    assert!(
        app.logs().contains("Slack refuses SLACK_APP_TOKEN"),
        "{}",
        app.logs()
    );
    let h = health(&app).await;
    assert_eq!(h["socket_mode"], "connecting", "{h}");
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(app.socket.connections(), 0);
    assert!(
        !app.logs().contains(WRONG),
        "the token stays out of the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_the_connection_and_stops_cleanly() {
    let mut app = TestApp::spawn_with(Setup::default().socket_mode_only()).await;
    let conn = connected(&app).await;
    let (status, _) = app.terminate().await;
    assert!(status.success(), "{status}\nlogs:\n{}", app.logs());
    assert_eq!(app.socket.wait_closed(conn, T).await, "bot");
}

/// The Socket Mode manifest is the HTTP one without request URLs and with
/// `socket_mode_enabled: true`: the same command, scopes and events.
#[test]
fn the_socket_mode_manifest_is_the_same_app_without_request_urls() {
    let root = env!("CARGO_MANIFEST_DIR");
    let read = |name: &str| {
        std::fs::read_to_string(format!("{root}/manifest/{name}"))
            .unwrap_or_else(|e| panic!("manifest/{name}: {e}"))
    };
    let (http, socket) = (read("manifest.yml"), read("manifest-socket-mode.yml"));
    let content = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .filter(|l| {
                let key = l.trim_start();
                !(key.starts_with("url:")
                    || key.starts_with("request_url:")
                    || key.starts_with("socket_mode_enabled:"))
            })
            .map(str::to_string)
            .collect()
    };
    assert_eq!(content(&http), content(&socket));
    assert!(socket.contains("socket_mode_enabled: true"));
    assert!(http.contains("socket_mode_enabled: false"));
    assert!(
        !socket
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.contains("url:")),
        "no request URLs in Socket Mode"
    );
    assert!(
        socket.contains("connections:write"),
        "the app-level token's scope is named"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_request_survives_a_crash_right_after_the_ack() {
    let mut app = TestApp::spawn_with(Setup::default().socket_mode_only()).await;
    let conn = connected(&app).await;
    let answer =
        answer_text(&slash_on(&app, conn, ALICE, "request billing-admin 3s refunds").await);
    let id = request_id_in(&answer).expect(&answer);
    app.kill().await;
    app.start().await;
    wait_status_over_socket(&app, ALICE, &id, Some("pending approval")).await;
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
}
