//! Provider runs under stress (issue 9, items 2 and 3): a run ends with the
//! bot that started it and is never run twice at once, across a kill -9; a
//! revoke that no retry can fix stops, says so once, and waits for a person
//! to close the request. Each test failed on the code before its fix.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const T: Duration = Duration::from_secs(10);

/// The exit code by which a program says a retry cannot succeed
/// (runbooks/README.md, "Failures a retry cannot fix").
const WILL_NOT_SUCCEED: i32 = 78;

/// A kill -9 of the bot used to leave its provider running: the orphan
/// went on with the grant while the restarted bot ran the same grant again,
/// both for the same person and access at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_run_ends_with_the_bot_and_never_runs_twice_at_once() {
    let mut app = TestApp::spawn().await;
    app.slow_provider("grant", 30);
    let id = app.request(ALICE, "billing-admin 1h crash mid-grant").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    let first = wait_until(T, || app.provider_processes("grant", &id).first().copied())
        .await
        .expect("the grant started");
    assert!(process_alive(first.pid));
    // The script records itself before it starts its sleep: wait for both.
    let both = wait_until(T, || (group_members(first.pgid).len() >= 2).then_some(())).await;
    assert!(
        both.is_some(),
        "the script and the sleep it started run in the run's process group"
    );

    app.kill().await;
    // The program dies with the bot that started it.
    let ended = wait_until(Duration::from_secs(5), || {
        (!process_alive(first.pid)).then_some(())
    })
    .await;
    assert!(
        ended.is_some(),
        "the provider (pid {}) still runs after the bot was killed",
        first.pid
    );

    app.slow_provider("grant", 1);
    app.start().await;
    // What the program started is gone too: the restarted bot clears the
    // leftovers before it runs the grant again (at start, or on PostgreSQL
    // when it takes the dead run over); `provider_overlaps` below proves
    // the re-run never ran beside them.
    let cleared = wait_until(T, || group_members(first.pgid).is_empty().then_some(())).await;
    assert!(
        cleared.is_some(),
        "processes of the interrupted run are left in its process group {}: {:?}",
        first.pgid,
        group_members(first.pgid)
    );
    app.wait_for_status(ALICE, &id, "active", T).await;

    let runs = app.provider_runs("grant", &id);
    assert_eq!(runs.len(), 2, "the interrupted grant and its re-run");
    let ends = app.provider_ends("grant", &id);
    assert_eq!(ends.len(), 1, "exactly one grant ran to its end: {ends:?}");
    assert!(
        runs[1].started_at <= ends[0],
        "the run that ended is the re-run"
    );
    assert_eq!(
        app.provider_overlaps(),
        Vec::<String>::new(),
        "a run started while an earlier one for the same person and access still ran"
    );
    assert!(app.provider_done().contains(&format!("grant {id}")));
}

/// The clean-up revoke after a failed grant used to be retried forever,
/// with a notice each time, even when it failed in a way no retry fixes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_up_that_cannot_succeed_asks_a_person_once_and_an_owner_closes_it() {
    let mut app = TestApp::spawn().await;
    app.fail_provider("grant", 1);
    app.fail_provider_with("revoke", 1, WILL_NOT_SUCCEED);
    let id = app.request(ALICE, "billing-admin 1h refunds").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;

    app.wait_for_status(ALICE, &id, "needs attention", T).await;
    let notice = app.wait_audit(&[&id, "needs a person"], T).await;
    for part in [
        &mention(OWNER),
        &mention(ALICE),
        "simulated revoke failure",
        "Billing portal admin",
        "/access resolve",
    ] {
        assert!(notice.contains(part), "{part:?} missing from: {notice}");
    }

    // Another request goes through its whole life, long enough for the
    // timer to have retried the stuck one (retries are 1-2 s apart here).
    let later = app.request(DAVE, "billing-admin 2s afterwards").await;
    app.wait_dm(BOB, &[&later], T).await;
    app.press(BOB, "approve", &later).await;
    app.wait_done(&format!("revoke {later}"), T).await;
    app.wait_audit(&["revoked", &later], T).await;
    app.wait_outbox_empty(T).await;

    assert_eq!(
        app.provider_runs("revoke", &id).len(),
        1,
        "a revoke that cannot succeed was tried again"
    );
    let loud: Vec<String> = app
        .audit_texts()
        .into_iter()
        .filter(|t| t.contains(&id) && t.contains("needs a person"))
        .collect();
    assert_eq!(loud.len(), 1, "said once: {loud:#?}");
    assert_eq!(
        app.status_of(ALICE, &id).await.as_deref(),
        Some("needs attention")
    );
    assert_eq!(needs_attention_metric(&app).await, 1);

    // Nobody but the owner or an approver may close it.
    for user in [MALLORY, ALICE] {
        let answer = app.slash(user, &format!("resolve {id}")).await;
        assert!(
            answer.contains("only the owner") && answer.contains(&id),
            "{user}: {answer}"
        );
    }
    assert_eq!(
        app.status_of(ALICE, &id).await.as_deref(),
        Some("needs attention")
    );

    // The owner presses the notice's button once they have checked the target.
    let button = app
        .slack
        .messages_in(AUDIT)
        .into_iter()
        .find(|m| m.to_string().contains("needs a person") && m.to_string().contains(&id))
        .expect("the notice");
    assert!(
        button.to_string().contains("\"action_id\":\"resolve\""),
        "{button}"
    );
    app.press(OWNER, "resolve", &id).await;
    app.wait_ephemeral(OWNER, &id, T).await;
    app.wait_audit(&["resolved", &id, &mention(OWNER)], T).await;
    assert_eq!(app.status_of(ALICE, &id).await, None, "the request ended");
    assert_eq!(needs_attention_metric(&app).await, 0);
    let again = app.slash(BOB, &format!("resolve {id}")).await;
    assert!(again.contains("does not need a person"), "{again}");

    let log = app.audit_log().await;
    let resolved: Vec<&Value> = log
        .iter()
        .filter(|e| e["kind"] == "resolved" && e["request_id"] == id.as_str())
        .collect();
    assert_eq!(resolved.len(), 1, "{log:#?}");
    assert_eq!(resolved[0]["actor"], OWNER);
    assert_eq!(
        log.iter()
            .filter(|e| e["kind"] == "needs_attention" && e["request_id"] == id.as_str())
            .count(),
        1
    );
}

/// A revoke whose program cannot start (here: it is not there) fails the
/// same way every time: the access may still be on, so a person is asked
/// at once, and an approver closes it with `/access resolve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_program_that_cannot_start_is_not_retried_and_an_approver_closes_it() {
    let runbook = BILLING.replace(
        r#"revoke = ["./provider.sh", "revoke"]"#,
        r#"revoke = ["/nonexistent/accessbot-test/revoke.sh"]"#,
    );
    let app = TestApp::spawn_with(Setup::default().only_runbook("billing-admin", &runbook)).await;
    let id = app.request(ALICE, "billing-admin 2s quick fix").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;

    app.wait_for_status(ALICE, &id, "needs attention", T).await;
    let notice = app.wait_audit(&[&id, "needs a person"], T).await;
    assert!(notice.contains("may still"), "{notice}");
    assert!(
        notice.contains("/nonexistent/accessbot-test/revoke.sh"),
        "{notice}"
    );
    assert!(
        !app.audit_texts()
            .iter()
            .any(|t| t.contains(&id) && t.contains("retrying")),
        "{:#?}",
        app.audit_texts()
    );

    let answer = app.slash(CAROL, &format!("resolve {id}")).await;
    assert!(answer.contains(&id), "{answer}");
    app.wait_audit(&["resolved", &id, &mention(CAROL)], T).await;
    assert_eq!(app.status_of(ALICE, &id).await, None);
    app.wait_dm(ALICE, &[&id, "ended"], T).await;
}

/// A grant whose program cannot start never reached the system: there is
/// nothing to clean up, so no revoke runs and nobody is asked to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_that_never_started_needs_no_clean_up() {
    let runbook = BILLING.replace(
        r#"grant = ["./provider.sh", "grant"]"#,
        r#"grant = ["/nonexistent/accessbot-test/grant.sh"]"#,
    );
    let app = TestApp::spawn_with(Setup::default().only_runbook("billing-admin", &runbook)).await;
    let id = app.request(ALICE, "billing-admin 1h refunds").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_audit(&["failed", &id, "nothing to clean up"], T)
        .await;
    app.wait_dm(ALICE, &["could not grant", &id], T).await;
    // The audit notice is queued in the write that ended the request.
    assert_eq!(app.status_of(ALICE, &id).await, None, "the request ended");
    assert_eq!(app.provider_runs("revoke", &id).len(), 0);
    assert_eq!(needs_attention_metric(&app).await, 0);
}

fn mention(user: &str) -> String {
    format!("<@{user}>")
}

/// `accessbot_requests{status="needs attention"}` in `/metrics` (0 when absent).
async fn needs_attention_metric(app: &TestApp) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("accessbot_requests{status=\"needs attention\"} "))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}
