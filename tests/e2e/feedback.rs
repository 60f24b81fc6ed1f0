//! Feedback that tunes runbooks: when a grant ends (expiry or release) the
//! requester gets two one-click questions; answers are stored, audited,
//! changeable by a second click, refused to anyone else, shown in the
//! report with a suggested `default_duration` once five answers agree; a
//! runbook with `feedback = false` asks nothing.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const T: Duration = Duration::from_secs(15);
const QUESTION: &str = "Was the time right?";

/// A runbook that five people get at once by an auto-approval rule, for 2s.
const QUICK: &str = r#"
id = "quick-fix"
title = "Quick fix"
description = "Restart a stuck job"
system = "Jobs"
owner = "U0OWNER"
instructions = "Restart it."

[request]
allowed = ["*"]
default_duration = "2s"
max_duration = "1h"
require_reason = false

[approval]
approvers = ["U0BOB"]
required = 1
[[approval.auto_approve]]
name = "team"
users = ["U0ALICE", "U0CAROL", "U0DAVE", "U0MALLORY", "U0OWNER"]
max_duration = "1m"

[grant]
provider = "command"
grant = ["./provider.sh", "grant"]
revoke = ["./provider.sh", "revoke"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_after_expiry_are_stored_audited_changeable_and_reported() {
    let mut app = TestApp::spawn().await;
    let id = app.request(ALICE, "billing-admin 2s refunds").await;
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_audit(&["Access revoked", &id], T).await;
    let dm = app.wait_dm(ALICE, &[QUESTION, &id], T).await;
    for action in [
        "feedback_time_too_short",
        "feedback_time_right",
        "feedback_time_too_long",
        "feedback_task_yes",
        "feedback_task_no",
    ] {
        assert!(dm.to_string().contains(action), "{action} missing: {dm:#}");
    }

    app.press(ALICE, "feedback_time_too_long", &id).await;
    app.wait_ephemeral(ALICE, "the time was too long", T).await;
    // A second click on the same question changes the answer.
    app.press(ALICE, "feedback_time_right", &id).await;
    app.wait_ephemeral(ALICE, "the time was right", T).await;
    app.press(ALICE, "feedback_task_yes", &id).await;
    app.wait_ephemeral(ALICE, "the access let you do the task", T)
        .await;
    // Nobody else answers for the requester.
    app.press(MALLORY, "feedback_task_no", &id).await;
    app.wait_ephemeral(MALLORY, "only the requester", T).await;
    app.wait_dm(ALICE, &["Thanks, recorded: time right, task done"], T)
        .await;

    let report = app.slash(OWNER, "report").await;
    assert!(
        report.contains(
            "feedback: time too short 0 · right 1 · too long 0; task done 1 · not done 0"
        ),
        "{report}"
    );

    let log = app.audit_log().await;
    let answers: Vec<&Value> = log.iter().filter(|e| e["kind"] == "feedback").collect();
    assert_eq!(answers.len(), 3, "{answers:#?}");
    assert!(answers
        .iter()
        .all(|e| e["actor"] == ALICE && e["request_id"] == id.as_str()));
    assert_eq!(
        answers[1]["detail"],
        "feedback: the time was right (changed from: the time was too long)"
    );
    assert!(log
        .iter()
        .any(|e| e["kind"] == "refused" && e["actor"] == MALLORY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_asks_and_feedback_false_asks_nothing() {
    let quiet = BILLING
        .replace("id = \"billing-admin\"", "id = \"quiet\"")
        .replace(
            "owner = \"U0OWNER\"",
            "owner = \"U0OWNER\"\nfeedback = false",
        );
    let app = TestApp::spawn_with(Setup::default().with_runbook("quiet", &quiet)).await;

    let released = app.request(ALICE, "billing-admin 1h refunds").await;
    app.wait_dm(BOB, &[&released, "Approve"], T).await;
    app.press(BOB, "approve", &released).await;
    app.wait_for_status(ALICE, &released, "active", T).await;
    app.press(ALICE, "release", &released).await;
    app.wait_dm(ALICE, &[QUESTION, &released], T).await;

    let quiet_id = app.request(ALICE, "quiet 2s refunds").await;
    app.wait_dm(BOB, &[&quiet_id, "Approve"], T).await;
    app.press(BOB, "approve", &quiet_id).await;
    app.wait_audit(&["Access revoked", &quiet_id], T).await;
    app.wait_dm(ALICE, &["has ended", &quiet_id], T).await;
    app.wait_outbox_empty(T).await;
    let asked: Vec<Value> = app
        .dms(ALICE)
        .into_iter()
        .filter(|m| m.to_string().contains(QUESTION) && m.to_string().contains(&quiet_id))
        .collect();
    assert!(asked.is_empty(), "feedback = false, yet: {asked:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_answers_that_agree_suggest_a_default_duration() {
    let mut app = TestApp::spawn_with(Setup::default().only_runbook("quick-fix", QUICK)).await;
    let people = [ALICE, CAROL, DAVE, MALLORY, OWNER];
    let mut ids = Vec::new();
    for person in people {
        let answer = app.slash(person, "request quick-fix").await;
        ids.push(request_id_in(&answer).unwrap_or_else(|| panic!("{answer}")));
    }
    for (person, id) in people.iter().zip(&ids) {
        app.wait_dm(person, &[QUESTION, id], T).await;
        app.press(person, "feedback_time_too_long", id).await;
        app.wait_ephemeral(person, "the time was too long", T).await;
    }
    let _ = app.terminate().await;
    let out = app.run_cli(&["report", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let quick = &report["runbooks"][0];
    assert_eq!(quick["runbook"], "quick-fix");
    assert_eq!(quick["auto_approved"], 5);
    assert_eq!(quick["feedback"]["time_too_long"], 5);
    assert_eq!(quick["median_granted_secs"], 2);
    let used = quick["median_used_secs"].as_u64().expect("use measured");
    assert!((2..60).contains(&used), "{quick:#}");
    let suggestion = &quick["feedback"]["suggestion"];
    // Median use plus a quarter, rounded up to 5 minutes.
    assert_eq!(suggestion["default_duration"], "5m", "{quick:#}");
    assert_eq!(
        suggestion["reason"],
        format!("5 of 5 said too long; median use {used}s of 2s"),
        "{quick:#}"
    );
}
