//! Cancelling a pending request: its requester cancels it from the Home
//! tab or with `/access cancel <id>`; every approver's message is updated
//! to say so, the audit log records `cancelled`, and anyone else's cancel,
//! or a cancel of a request no longer pending, is refused and changes
//! nothing.

use std::time::Duration;

use serde_json::Value;

use super::home::{home_button, press_in_home, wait_home};
use crate::support::*;

const T: Duration = Duration::from_secs(10);

/// Waits until each approver's approval DM for `id` says it was cancelled
/// and has no buttons left.
async fn wait_approvers_told(app: &TestApp, id: &str) {
    for approver in [BOB, CAROL] {
        let closed = wait_until(T, || {
            app.dms(approver).into_iter().find(|m: &Value| {
                let t = m.to_string();
                t.contains(id) && t.contains("Cancelled by the requester") && !has_buttons(m)
            })
        })
        .await;
        assert!(
            closed.is_some(),
            "{approver}'s approval DM was not updated: {:#?}\nlogs:\n{}",
            app.dms(approver),
            app.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requester_cancels_with_the_command() {
    let mut app = TestApp::spawn().await;
    let id = app.request(ALICE, "billing-admin 1h refunds").await;
    for approver in [BOB, CAROL] {
        app.wait_dm(approver, &[&id, "Approve"], T).await;
    }

    // Someone else cannot cancel it.
    let refused = app.slash(MALLORY, &format!("cancel {id}")).await;
    assert!(
        refused.contains("only the requester can do that"),
        "{refused}"
    );
    assert_eq!(
        app.status_of(ALICE, &id).await.as_deref(),
        Some("pending approval")
    );

    let answer = app.slash(ALICE, &format!("cancel {id}")).await;
    assert!(answer.contains("is cancelled"), "{answer}");
    assert_eq!(app.status_of(ALICE, &id).await, None, "it is finished");
    wait_approvers_told(&app, &id).await;
    app.wait_audit(&["Request cancelled", &id], T).await;

    // A cancelled request cannot be approved, nor cancelled again.
    app.press(BOB, "approve", &id).await;
    app.wait_ephemeral(BOB, "already cancelled", T).await;
    let again = app.slash(ALICE, &format!("cancel {id}")).await;
    assert!(again.contains("already cancelled"), "{again}");
    app.wait_outbox_empty(T).await;
    assert!(app.provider_calls().is_empty(), "nothing was granted");

    let log = app.audit_log().await;
    let kinds: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| e["request_id"] == id.as_str())
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default(),
                e["actor"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert!(kinds.contains(&("cancelled", ALICE)), "{kinds:?}");
    assert!(
        kinds.contains(&("refused", MALLORY)),
        "Mallory's attempt leaves a trace: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|(k, _)| *k == "cancelled").count(),
        1,
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requester_cancels_from_the_home_tab() {
    let app = TestApp::spawn().await;
    let id = app.request(ALICE, "billing-admin 1h refunds").await;
    let home = wait_home(&app, ALICE, "the pending request", |v| v.contains(&id)).await;
    let cancel = home_button(&home, "cancel", &id).expect("a Cancel button");

    // The same button pressed by someone else is refused.
    press_in_home(&app, MALLORY, &cancel).await;
    app.wait_dm(MALLORY, &["only the requester", &id], T).await;
    assert_eq!(
        app.status_of(ALICE, &id).await.as_deref(),
        Some("pending approval")
    );

    press_in_home(&app, ALICE, &cancel).await;
    app.wait_dm(ALICE, &["is cancelled", &id], T).await;
    assert_eq!(app.status_of(ALICE, &id).await, None);
    wait_approvers_told(&app, &id).await;
    app.wait_audit(&["Request cancelled", &id], T).await;
    // Every Home that listed it follows.
    wait_home(&app, ALICE, "the request gone", |v| !v.contains(&id)).await;
    wait_home(&app, BOB, "the approval gone", |v| !v.contains(&id)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_no_longer_pending_cannot_be_cancelled() {
    let app = TestApp::spawn().await;
    let id = app.request(ALICE, "billing-admin 1h refunds").await;
    app.press(BOB, "approve", &id).await;
    app.wait_for_status(ALICE, &id, "active", T).await;
    let answer = app.slash(ALICE, &format!("cancel {id}")).await;
    assert!(
        answer.contains("already active") && answer.contains("nothing was changed"),
        "{answer}"
    );
    assert_eq!(app.status_of(ALICE, &id).await.as_deref(), Some("active"));
    let unknown = app.slash(ALICE, "cancel ar-doesnotexist").await;
    assert!(unknown.contains("was not found"), "{unknown}");
    let help = app.slash(ALICE, "cancel").await;
    assert!(help.contains("/access cancel <request-id>"), "{help}");
}
