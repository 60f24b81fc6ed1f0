//! What an operator sees: `/healthz` reports `degraded` while grants,
//! revokes, Slack deliveries or the Slack setup are failing, in counts that
//! name no one, and clears once the same call succeeds; `serve` checks the
//! bot token and the audit channel at start and reports every problem at
//! once with what to do, but starts through a Slack outage.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const T: Duration = Duration::from_secs(15);

async fn health(app: &TestApp) -> Value {
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200, "/healthz is a liveness check");
    r.json().await.unwrap()
}

/// Waits until `/healthz` satisfies `ok`, returning it; panics with the last
/// answer and the logs after `timeout`.
async fn wait_health(app: &TestApp, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let h = health(app).await;
        if ok(&h) {
            return h;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/healthz never got there; last: {h}\nlogs:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Nothing on the unauthenticated `/healthz` names a person, a channel, a
/// request or what someone typed.
fn assert_names_no_one(h: &Value, also: &[&str]) {
    let text = h.to_string();
    for private in [ALICE, BOB, CAROL, OWNER, AUDIT, "DU0"].iter().chain(also) {
        assert!(!text.contains(private), "/healthz shows {private}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_degraded_while_a_revoke_fails_and_clears_when_it_succeeds() {
    let app = TestApp::spawn().await;
    assert_eq!(health(&app).await["status"], "ok");
    app.fail_provider("revoke", 2);
    let id = app
        .request(ALICE, "billing-admin 2s quarterly refunds")
        .await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    let failing = wait_health(&app, T, |h| h["revokes_failing"] == 1).await;
    assert_eq!(failing["status"], "degraded", "{failing}");
    assert_names_no_one(&failing, &[&id, "quarterly refunds", "billing-admin"]);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("\naccessbot_revokes_failing 1\n"),
        "{metrics}"
    );
    // The details are in the audit channel and the authenticated log.
    app.wait_audit(&["revoke", &id], T).await;
    app.wait_done(&format!("revoke {id}"), T).await;
    let cleared = wait_health(&app, T, |h| h["status"] == "ok").await;
    assert_eq!(cleared["revokes_failing"], 0, "{cleared}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_counts_a_failed_grant_until_a_grant_through_the_runbook_works() {
    let app = TestApp::spawn().await;
    app.fail_provider("grant", 1);
    let first = app.request(ALICE, "billing-admin 1h first try").await;
    app.wait_dm(BOB, &[&first], T).await;
    app.press(BOB, "approve", &first).await;
    app.wait_done(&format!("revoke {first}"), T).await; // the clean-up
    let failing = wait_health(&app, T, |h| h["grants_failing"] == 1).await;
    assert_eq!(failing["status"], "degraded", "{failing}");
    assert_names_no_one(&failing, &[&first, "first try", "billing-admin"]);

    let second = app.request(DAVE, "billing-admin 1h second try").await;
    app.wait_dm(BOB, &[&second], T).await;
    app.press(BOB, "approve", &second).await;
    app.wait_done(&format!("grant {second}"), T).await;
    let cleared = wait_health(&app, T, |h| h["status"] == "ok").await;
    assert_eq!(cleared["grants_failing"], 0, "{cleared}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_counts_refused_deliveries_without_naming_them_and_clears_on_success() {
    let app = TestApp::spawn().await;
    // Someone removed the bot from the audit channel after the start.
    app.slack.set_not_in_channel(AUDIT);
    let id = app.request(ALICE, "billing-admin 1h x").await;
    app.wait_dm(BOB, &[&id], T).await;
    let failing = wait_health(&app, T, |h| h["slack_deliveries_failing"] == 1).await;
    assert_eq!(failing["status"], "degraded", "{failing}");
    assert_names_no_one(&failing, &[&id]);
    assert!(
        app.logs().contains("not_in_channel") && app.logs().contains(AUDIT),
        "the details belong in the log"
    );

    // Invited again: the next notice to the channel goes through and clears it.
    app.slack.invite_bot(AUDIT);
    let other = app.request(DAVE, "billing-admin 1h y").await;
    app.wait_audit(&[&other], T).await;
    let cleared = wait_health(&app, T, |h| h["status"] == "ok").await;
    assert_eq!(cleared["slack_deliveries_failing"], 0, "{cleared}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bot_token_stops_the_start_saying_what_to_do() {
    const WRONG: &str = "xoxb-wrong-token-0000-do-not-print";
    let mut app = TestApp::spawn().await;
    app.kill().await;
    app.set_env("SLACK_BOT_TOKEN", WRONG);
    let (code, stderr) = app.serve_once();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("SLACK_BOT_TOKEN")
            && stderr.contains("invalid_auth")
            && stderr.contains("copy the Bot User OAuth Token"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(WRONG) && !stderr.contains(TOKEN),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    app.set_env("SLACK_BOT_TOKEN", TOKEN);
    for error in ["token_revoked", "account_inactive"] {
        app.slack.fail_next("auth.test", 1, error);
        let (code, stderr) = app.serve_once();
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains(error) && stderr.contains("reinstall the app"),
            "{stderr}"
        );
        assert!(!stderr.contains(TOKEN), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_start_problem_is_reported_at_once_one_line_each() {
    let mut app = TestApp::spawn().await;
    app.kill().await;
    // Two mistakes at once: the bot was never invited, and a runbook is broken.
    app.slack.set_not_in_channel(AUDIT);
    std::fs::write(app.runbook_dir.join("broken.toml"), "id = \"Broken!\"\n").unwrap();
    let (code, stderr) = app.serve_once();
    assert_eq!(code, Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.trim().lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "a header and one line per problem:\n{stderr}"
    );
    assert!(lines[0].contains("2 problems"), "{stderr}");
    assert!(lines.iter().any(|l| l.contains("broken.toml")), "{stderr}");
    assert!(
        lines.iter().any(|l| l.contains(AUDIT)
            && l.contains("invite the bot with /invite @accessbot in #0audit")),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "{stderr}");
    std::fs::remove_file(app.runbook_dir.join("broken.toml")).unwrap();

    // A channel Slack does not know, and a private one the bot cannot see.
    for (channel, missing) in [("C0NOWHERE", true), ("G0SECRET", false)] {
        if missing {
            app.slack.set_channel_missing(channel);
        } else {
            app.slack.set_not_in_channel(channel);
        }
        app.set_env("ACCESSBOT_AUDIT_CHANNEL", channel);
        let (code, stderr) = app.serve_once();
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains(channel)
                && stderr.contains("channel_not_found")
                && stderr.contains("/invite @accessbot"),
            "{stderr}"
        );
    }

    // Invited, and with the channel back, it starts.
    app.slack.invite_bot(AUDIT);
    app.set_env("ACCESSBOT_AUDIT_CHANNEL", AUDIT);
    app.start().await;
    assert_eq!(health(&app).await["slack_setup"], "passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_slack_does_not_stop_the_start_and_clears_when_it_answers() {
    let mut app = TestApp::spawn().await;
    app.kill().await;
    app.slack.set_down(true);
    app.start().await;
    assert!(
        app.logs().contains("Slack cannot be reached"),
        "the start should say so loudly:\n{}",
        app.logs()
    );
    let h = health(&app).await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["slack_setup"], "unreachable", "{h}");
    app.slack.set_down(false);
    let cleared = wait_health(&app, T, |h| h["status"] == "ok").await;
    assert_eq!(cleared["slack_setup"], "passed", "{cleared}");
    assert!(app.slack.calls("conversations.info").len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_ready_on_a_bot_whose_store_answers() {
    let app = TestApp::spawn().await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ready"}));
    // Still ready while it works: a request stored and waiting.
    let id = app.request(ALICE, "billing-admin 1h month-end").await;
    app.wait_dm(BOB, &[&id], T).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
}
