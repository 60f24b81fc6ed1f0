//! Nothing lost, nobody let in: crashes at every step, Slack failing in
//! every way, duplicate and concurrent clicks, hostile input, shutdown,
//! secrets, and the data directory's protection.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

const T: Duration = Duration::from_secs(10);
const FORM: &str = "application/x-www-form-urlencoded";

/// Kills the process at each crash point of a grant's life and checks that
/// after a restart the access was granted and then revoked, exactly as if
/// nothing had happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_point_still_ends_granted_then_revoked() {
    // Every crash point the binary has, so a new one is tested here too.
    for &point in accessbot::crashpoint::POINTS {
        let mut app = TestApp::spawn_with(Setup::default().env("ACCESSBOT_CRASH_AT", point)).await;
        let id = app.request(ALICE, "billing-admin 2s crash test").await;
        app.wait_dm(BOB, &[&id], T).await;
        // At `after_approve` the bot dies before it answers the click. At
        // the later points the approval is already durable and the grant
        // runs in the background, racing the answer: whether the click was
        // answered there is not what this test is about (the approval's
        // outcome below is).
        let click = TestApp::interaction_body(&block_action(BOB, "approve", &id));
        let answered = app
            .try_post_signed("/slack/interactions", FORM, &click, 0)
            .await
            .is_ok();
        if point == "after_approve" {
            assert!(
                !answered,
                "{point}: the click was answered before the crash"
            );
        }
        let status = app.wait_exit(T).await;
        assert!(!status.success(), "{point}: expected an abort");
        app.remove_env("ACCESSBOT_CRASH_AT");
        app.start().await;
        app.wait_done(&format!("revoke {id}"), Duration::from_secs(15))
            .await;
        app.wait_audit(&["Access revoked", &id], T).await;
        let grants = app
            .provider_done()
            .iter()
            .filter(|l| **l == format!("grant {id}"))
            .count();
        // A grant whose outcome was not recorded runs again (providers are idempotent).
        let expected = if point == "after_grant" { 2 } else { 1 };
        assert_eq!(grants, expected, "{point}: {:?}", app.provider_done());
        let log = app.audit_log().await;
        assert!(log.iter().any(|e| e["kind"] == "granted"), "{point}");
        assert!(log.iter().any(|e| e["kind"] == "revoked"), "{point}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_down_then_back_delivers_every_notice_in_order() {
    let app = TestApp::spawn().await;
    app.slack.set_down(true);
    let id = app.request(ALICE, "billing-admin 2s outage").await;
    // Back up only once the bot has failed to deliver and queued a retry.
    let deadline = Instant::now() + T;
    while app.metric("accessbot_slack_retries_total").await == 0 {
        assert!(
            Instant::now() < deadline,
            "no delivery tried while Slack was down"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    app.slack.set_down(false);
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
    // Slack fails again while the grant expires.
    app.slack.http_error_next("*", 3, 503);
    app.wait_done(&format!("revoke {id}"), T).await;
    app.wait_audit(&["Access revoked", &id], Duration::from_secs(15))
        .await;
    let order: Vec<String> = app
        .audit_texts()
        .into_iter()
        .filter(|t| t.contains(&id))
        .map(|t| t.split('*').nth(1).unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        order,
        vec![
            "Access requested",
            "Approved",
            "Access granted",
            "Access revoked"
        ],
        "{order:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_honoured_with_retry_after() {
    let app = TestApp::spawn().await;
    app.slack.rate_limit_next("chat.postMessage", 1, 2);
    let started = Instant::now();
    let id = app.request(ALICE, "billing-admin 1h x").await;
    app.wait_audit(&["Access requested", &id], T).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "retried before Retry-After"
    );
    let posts = app.slack.calls("chat.postMessage");
    let limited = posts
        .iter()
        .filter(|c| c.answered["error"] == "ratelimited")
        .count();
    assert_eq!(limited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_notices_survive_a_kill_while_slack_is_down() {
    let mut app = TestApp::spawn().await;
    app.slack.set_down(true);
    let id = app.request(ALICE, "billing-admin 1h x").await;
    app.kill().await;
    app.slack.set_down(false);
    app.start().await;
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    app.wait_dm(CAROL, &[&id, "Approve"], T).await;
    app.wait_audit(&["Access requested", &id], T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_that_cannot_succeed_are_reported_not_retried_forever() {
    let app = TestApp::spawn().await;
    app.slack.set_channel_missing(AUDIT);
    let id = app.request(ALICE, "billing-admin 1h x").await;
    app.wait_dm(BOB, &[&id], T).await;
    let health = wait_until(T, || {
        let h = app
            .slack
            .calls("chat.postMessage")
            .iter()
            .any(|c| c.body["channel"] == AUDIT);
        h.then_some(())
    })
    .await;
    assert!(health.is_some());
    // Retried, the post would stay queued; given up, it leaves the queue.
    app.wait_outbox_empty(T).await;
    let to_audit = app
        .slack
        .calls("chat.postMessage")
        .iter()
        .filter(|c| c.body["channel"] == AUDIT)
        .count();
    assert_eq!(to_audit, 1, "a channel_not_found post was retried");
    let h: Value = app.get("/healthz").await.json().await.unwrap();
    assert_eq!(h["status"], "degraded");
    // A count on the unauthenticated /healthz; which channel and why is in the log.
    assert_eq!(h["slack_deliveries_failing"], 1, "{h}");
    assert!(!h.to_string().contains(AUDIT), "{h}");
    assert!(app.logs().contains("channel_not_found") && app.logs().contains(AUDIT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_or_resent_request_does_nothing_more() {
    let app = TestApp::spawn().await;
    let body = TestApp::slash_body(ALICE, "request billing-admin 1h replay");
    let ts = chrono::Utc::now().timestamp();
    let sig = TestApp::sign(ts, body.as_bytes());
    let send = || {
        reqwest::Client::new()
            .post(format!("{}/slack/commands", app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig.clone())
            .header("x-slack-retry-num", "1")
            .body(body.clone())
            .send()
    };
    let first = send().await.unwrap().text().await.unwrap();
    let second = send().await.unwrap().text().await.unwrap();
    assert_eq!(first, second);
    let id = request_id_in(&first).unwrap();
    app.wait_dm(BOB, &[&id], T).await;
    // Requests are stored before they are answered: both answers are in.
    let status = app.slash(ALICE, "status").await;
    assert_eq!(status.matches("ar-").count(), 1, "{status}");

    // The same button press delivered twice, and a double click, grant once.
    let payload = TestApp::interaction_body(&block_action(BOB, "approve", &id));
    let ts = chrono::Utc::now().timestamp();
    let sig = TestApp::sign(ts, payload.as_bytes());
    for _ in 0..2 {
        let r = reqwest::Client::new()
            .post(format!("{}/slack/interactions", app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig.clone())
            .body(payload.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    app.press(BOB, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
    // Once active, no approval can start another grant; count what was sent.
    app.wait_for_status(ALICE, &id, "active", T).await;
    app.wait_outbox_empty(T).await;
    assert_eq!(
        app.provider_calls()
            .iter()
            .filter(|l| l.starts_with("grant"))
            .count(),
        1
    );
    let approvals = app
        .audit_texts()
        .iter()
        .filter(|t| t.contains("*Approved*") && t.contains(&id))
        .count();
    assert_eq!(approvals, 1);
}

/// Identical signed deliveries arriving at the same instant (a replay racing
/// the original) create one request, and every copy gets the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_delivery_five_times_at_once_runs_once() {
    let app = TestApp::spawn().await;
    let body = TestApp::slash_body(ALICE, "request billing-admin 1h racing replay");
    let ts = chrono::Utc::now().timestamp();
    let sig = TestApp::sign(ts, body.as_bytes());
    let mut copies = Vec::new();
    for _ in 0..5 {
        let (url, body, sig) = (
            format!("{}/slack/commands", app.base),
            body.clone(),
            sig.clone(),
        );
        copies.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", FORM)
                .header("x-slack-request-timestamp", ts.to_string())
                .header("x-slack-signature", sig)
                .body(body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }));
    }
    let mut answers = Vec::new();
    for c in copies {
        answers.push(c.await.unwrap());
    }
    let id = request_id_in(&answers[0]).expect("the first answer names the request");
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    app.wait_dm(BOB, &[&id], T).await;
    app.wait_outbox_empty(T).await;
    let requested = app
        .audit_texts()
        .iter()
        .filter(|t| t.contains("*Access requested*"))
        .count();
    assert_eq!(requested, 1, "{:?}", app.audit_texts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_approvals_grant_each_request_exactly_once() {
    let two_of_four = BILLING
        .replace(
            "approvers = [\"U0BOB\", \"U0CAROL\"]",
            "approvers = [\"U0BOB\", \"U0CAROL\", \"U0DAVE\", \"U0OWNER\"]",
        )
        .replace("required = 1", "required = 2");
    let app =
        TestApp::spawn_with(Setup::default().only_runbook("billing-admin", &two_of_four)).await;
    // Ten requesters: one person has one open request per runbook.
    let mut ids = Vec::new();
    for i in 0..10 {
        let requester = format!("U0REQ{i}");
        app.slack.add_user(
            &requester,
            &format!("Requester {i}"),
            &format!("req{i}@example.com"),
        );
        ids.push(
            app.request(&requester, &format!("billing-admin 1h batch {i}"))
                .await,
        );
    }
    let approvers = [BOB, CAROL, DAVE, OWNER];
    let mut tasks = Vec::new();
    for n in 0..200 {
        let id = ids[n % ids.len()].clone();
        let who = approvers[(n / ids.len()) % approvers.len()];
        let body = TestApp::interaction_body(&block_action(who, "approve", &id));
        let base = app.base.clone();
        tasks.push(tokio::spawn(async move {
            let ts = chrono::Utc::now().timestamp();
            reqwest::Client::new()
                .post(format!("{base}/slack/interactions"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-slack-request-timestamp", ts.to_string())
                .header("x-slack-signature", TestApp::sign(ts, body.as_bytes()))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    for id in &ids {
        app.wait_done(&format!("grant {id}"), T).await;
    }
    // Stopped, the bot has finished every grant it started.
    let mut app = app;
    let log = app.audit_log().await;
    let mut grants: BTreeMap<String, usize> = BTreeMap::new();
    for l in app
        .provider_calls()
        .iter()
        .filter(|l| l.starts_with("grant"))
    {
        *grants
            .entry(l.split(' ').nth(1).unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(grants.len(), 10);
    assert!(grants.values().all(|n| *n == 1), "{grants:?}");
    for id in &ids {
        let approvals: Vec<&Value> = log
            .iter()
            .filter(|e| e["request_id"] == id.as_str() && e["kind"] == "approved")
            .collect();
        assert_eq!(approvals.len(), 2, "{id}: {approvals:?}");
        assert_ne!(approvals[0]["actor"], approvals[1]["actor"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_a_clear_answer_and_never_a_crash() {
    let app = TestApp::spawn().await;
    let form = "application/x-www-form-urlencoded";
    let cases: Vec<(&str, &str, String, u16)> = vec![
        ("/slack/commands", form, "%%%&&&===".into(), 400),
        ("/slack/commands", form, "text=hi".into(), 400),
        ("/slack/interactions", form, "nopayload=1".into(), 400),
        (
            "/slack/interactions",
            form,
            "payload=%7Bnot+json".into(),
            400,
        ),
        (
            "/slack/interactions",
            form,
            TestApp::interaction_body(
                &json!({"type": "block_actions", "user": "U1", "actions": "x"}),
            ),
            400,
        ),
        (
            "/slack/interactions",
            form,
            TestApp::interaction_body(&block_action(BOB, "launch_missiles", "ar-x")),
            200,
        ),
        (
            "/slack/interactions",
            form,
            TestApp::interaction_body(&json!({"type": "view_closed", "user": {"id": BOB}})),
            200,
        ),
        ("/slack/events", "application/json", "[1,2,3]".into(), 200),
        ("/slack/events", "application/json", "{".into(), 400),
        ("/slack/commands", "application/json", "{}".into(), 415),
        (
            "/slack/commands",
            form,
            "x=".to_string() + &"a".repeat(70 * 1024),
            413,
        ),
    ];
    for (path, ct, body, expected) in cases {
        let r = app.post_signed(path, ct, &body, 0).await;
        assert_eq!(
            r.status().as_u16(),
            expected,
            "{path} {}",
            &body[..body.len().min(80)]
        );
    }
    for text in [
        "x".repeat(10_000),
        "request billing-admin 1h ".to_string() + &"é∂\u{202e}\u{0000}\u{0007}".repeat(300),
        "request \u{1F600}\u{1F600} 1h".into(),
        "request billing-admin 1h <!channel> <https://evil|click>".into(),
        "extend ar-nope 1h".into(),
        "revoke ../../etc/passwd".into(),
    ] {
        let answer = app.slash(ALICE, &text).await;
        assert!(
            !answer.is_empty(),
            "no answer for {}",
            &text[..text.len().min(40)]
        );
    }
    // The mention-laden reason reached approvers escaped, not as a live
    // @channel. (Dave: Alice has a request open from the loop above.)
    let id = app
        .request(DAVE, "billing-admin 1h <!channel> <https://evil|click>")
        .await;
    let dm = app.wait_dm(BOB, &[&id], T).await;
    assert!(!dm.to_string().contains("<!channel>") && dm.to_string().contains("&lt;!channel&gt;"));
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_and_exits_zero() {
    let mut app = TestApp::spawn().await;
    app.slow_provider("grant", 2);
    let id = app.request(ALICE, "billing-admin 1h x").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    wait_until(T, || {
        app.provider_calls()
            .iter()
            .any(|l| l.starts_with("grant"))
            .then_some(())
    })
    .await
    .unwrap();
    let (status, took) = app.terminate().await;
    assert_eq!(status.code(), Some(0), "logs:\n{}", app.logs());
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        app.provider_done().contains(&format!("grant {id}")),
        "in-flight grant was cut off"
    );
    std::fs::remove_file(app.state_dir.join("slow_grant")).unwrap();
    app.start().await;
    let status = app.slash(ALICE, "status").await;
    assert!(
        status.contains(&id) && status.contains("active"),
        "{status}"
    );
    assert_eq!(
        app.provider_calls()
            .iter()
            .filter(|l| l.starts_with("grant"))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_health_or_metrics() {
    const AUDIT_TOKEN: &str = "audit-export-token-0123456789abcdef";
    let mut app = TestApp::spawn_with(
        Setup::default()
            .env("RUST_LOG", "debug")
            .env("ACCESSBOT_AUDIT_TOKEN", AUDIT_TOKEN),
    )
    .await;
    let id = app.request(ALICE, "billing-admin 1s x").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_done(&format!("revoke {id}"), T).await;
    // The failures go to the new request's messages, not the old one's.
    app.wait_audit(&["Access revoked", &id], T).await;
    app.wait_outbox_empty(T).await;
    app.slack.fail_next("*", 3, "invalid_auth");
    app.slash(ALICE, "request billing-admin 1h x").await;
    // Refused for good, the messages leave the queue and health names why.
    app.wait_outbox_empty(T).await;
    let health = app.get("/healthz").await.text().await.unwrap();
    assert!(health.contains("invalid_auth"), "{health}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("accessbot_commands_total"));
    // Logged before it was recorded; the log pipe may still be carrying it.
    let logged = wait_until(T, || app.logs().contains("invalid_auth").then_some(())).await;
    assert!(logged.is_some(), "the auth failure should be logged");
    let logs = app.logs();
    for secret in [SECRET, TOKEN, AUDIT_TOKEN] {
        for (name, text) in [("logs", &logs), ("healthz", &health), ("metrics", &metrics)] {
            assert!(!text.contains(secret), "{name} contains a secret");
        }
    }
    // Missing settings are named; secrets given are never echoed.
    app.kill().await;
    app.remove_env("SLACK_SIGNING_SECRET");
    let (code, stderr) = app.serve_once();
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("SLACK_SIGNING_SECRET") && !stderr.contains(TOKEN),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_runbook_stops_the_start_with_exit_code_2() {
    let app = TestApp::spawn().await;
    std::fs::write(app.runbook_dir.join("broken.toml"), "id = \"Broken!\"\n").unwrap();
    let mut other = app;
    other.kill().await;
    let (code, stderr) = other.serve_once();
    assert_eq!(code, Some(2));
    assert!(stderr.contains("broken.toml"), "{stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one clear line expected: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_home_and_duplicate_events() {
    let app = TestApp::spawn().await;
    let id = app.request(ALICE, "billing-admin 1h x").await;
    let event = json!({"type": "event_callback", "event_id": "Ev1", "event_time": 1, "event": {"type": "app_home_opened", "user": ALICE, "tab": "home"}}).to_string();
    for age in [0, 1] {
        // Slack's retry is re-signed, so it passes the signature replay guard; event_id catches it.
        let r = app
            .post_signed("/slack/events", "application/json", &event, age)
            .await;
        assert_eq!(r.status(), 200);
    }
    let publish = app.slack.wait_for("views.publish", T, |_| true).await;
    assert!(publish.body["view"].to_string().contains(&id));
    // Both deliveries were answered, so whatever they queued has now been sent.
    app.wait_outbox_empty(T).await;
    assert_eq!(app.slack.calls("views.publish").len(), 1);
}

/// Slack is slow while a request needs a user group's members: the person
/// still gets an answer within Slack's 3 seconds, saying what happened, and
/// nothing is stored; once Slack answers again the same command works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_slack_lookup_still_answers_in_time_and_stores_nothing() {
    let by_group = BILLING.replace(
        "approvers = [\"U0BOB\", \"U0CAROL\"]",
        "approvers = [\"S0FINLEADS\"]",
    );
    assert_ne!(by_group, BILLING);
    let app = TestApp::spawn_with(Setup::default().only_runbook("billing-admin", &by_group)).await;
    app.slack.set_usergroup("S0FINLEADS", &[BOB, CAROL]);
    app.slack
        .set_delay("usergroups.users.list", Duration::from_secs(5));
    let started = Instant::now();
    let answer = app.slash(ALICE, "request billing-admin 1h slow").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(answer.contains("did not answer in time"), "{answer}");
    assert!(request_id_in(&answer).is_none(), "{answer}");
    let status = app.slash(ALICE, "status").await;
    assert!(!status.contains("ar-"), "{status}");

    app.slack.set_delay("usergroups.users.list", Duration::ZERO);
    let id = app.request(ALICE, "billing-admin 1h fast again").await;
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
}

/// Several lookups that are each just fast enough add up: the request as a
/// whole still answers within Slack's 3 seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_slowish_lookups_together_still_answer_in_time() {
    let three_groups = BILLING.replace(
        "approvers = [\"U0BOB\", \"U0CAROL\"]",
        "approvers = [\"S0ONE\", \"S0TWO\", \"S0THREE\"]",
    );
    assert_ne!(three_groups, BILLING);
    let app =
        TestApp::spawn_with(Setup::default().only_runbook("billing-admin", &three_groups)).await;
    for g in ["S0ONE", "S0TWO", "S0THREE"] {
        app.slack.set_usergroup(g, &[BOB]);
    }
    app.slack
        .set_delay("usergroups.users.list", Duration::from_millis(1200));
    let started = Instant::now();
    let answer = app.slash(ALICE, "request billing-admin 1h slowish").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(answer.contains("did not answer in time"), "{answer}");
    let status = app.slash(ALICE, "status").await;
    assert!(!status.contains("ar-"), "{status}");
}
