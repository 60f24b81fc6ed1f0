//! The core loop: request, approver DM, approve or deny, grant, timed
//! revoke, audit channel; and the refusals around it.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const T: Duration = Duration::from_secs(10);

fn text_of(m: &Value) -> String {
    m.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_grants_then_revokes_on_time() {
    let app = TestApp::spawn().await;
    let answer = app
        .slash(ALICE, "request billing-admin 3s month-end refunds")
        .await;
    let id = request_id_in(&answer).expect(&answer);
    assert!(answer.contains("waiting for approval"), "{answer}");

    // Both approvers get a DM with Approve / Deny, naming who, what, how long, why.
    for approver in [BOB, CAROL] {
        let dm = app.wait_dm(approver, &[&id, "Approve", "Deny"], T).await;
        let t = text_of(&dm);
        assert!(
            t.contains("<@U0ALICE>")
                && t.contains("Billing portal")
                && t.contains("3 seconds")
                && t.contains("month-end refunds"),
            "{t}"
        );
        assert!(has_buttons(&dm));
    }
    assert!(app.slack.calls("conversations.open").len() >= 2);

    app.press(BOB, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
    let call = app
        .provider_calls()
        .into_iter()
        .find(|l| l.starts_with("grant"))
        .unwrap();
    assert!(
        call.contains("U0ALICE") && call.contains("alice@example.com"),
        "{call}"
    );

    // The requester learns it is granted, with the instructions; approver DMs lose their buttons.
    app.wait_dm(ALICE, &["granted", "billing.example.com"], T)
        .await;
    for approver in [BOB, CAROL] {
        let closed = wait_until(T, || {
            app.dms(approver)
                .into_iter()
                .find(|m| text_of(m).contains("Approved by <@U0BOB>") && !has_buttons(m))
        })
        .await;
        assert!(
            closed.is_some(),
            "approver DM of {approver} not updated: {:#?}",
            app.dms(approver)
        );
    }

    // Revoked within a second of expiry (3s after the grant), not before:
    // timed from when the bot ran the grant, not from when the test saw it.
    app.wait_done(&format!("revoke {id}"), T).await;
    let granted_at = app.provider_runs("grant", &id)[0].started_at;
    let revoked_at = app.provider_runs("revoke", &id)[0].started_at;
    let took = (revoked_at - granted_at).to_std().unwrap_or_default();
    assert!(
        took >= Duration::from_millis(1500),
        "revoked too early: {took:?}"
    );
    app.wait_dm(ALICE, &["has ended", "expired"], T).await;

    for kind in [
        "Access requested",
        "Approved",
        "Access granted",
        "Access revoked",
    ] {
        app.wait_audit(&[kind, &id], T).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_ends_the_request_and_nothing_is_granted() {
    let mut app = TestApp::spawn().await;
    let id = app.request(ALICE, "billing-admin 1h need it").await;
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    app.press(CAROL, "deny", &id).await;
    app.wait_dm(ALICE, &["denied", "<@U0CAROL>"], T).await;
    app.wait_audit(&["Denied", &id], T).await;
    // Bob's message shows the outcome and has no buttons; a late approval is refused.
    let bob = wait_until(T, || {
        app.dms(BOB)
            .into_iter()
            .find(|m| text_of(m).contains("Denied by") && !has_buttons(m))
    })
    .await;
    assert!(bob.is_some(), "{:#?}", app.dms(BOB));
    app.press(BOB, "approve", &id).await;
    app.wait_ephemeral(BOB, "already denied", T).await;
    // Stopped, the bot has finished everything it started.
    let log = app.audit_log().await;
    assert!(
        app.provider_calls().is_empty(),
        "{:?}",
        app.provider_calls()
    );
    assert!(log
        .iter()
        .any(|e| e["kind"] == "denied" && e["actor"] == CAROL));
    assert!(!log.iter().any(|e| e["kind"] == "granted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_approver_press_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = app.request(ALICE, "billing-admin 1h need it").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(MALLORY, "approve", &id).await;
    app.wait_ephemeral(MALLORY, "not an approver", T).await;
    app.press(MALLORY, "deny", &id).await;
    // The deny is refused too: a second answer, and everything queued is sent.
    wait_until(T, || {
        (app.ephemerals(MALLORY)
            .iter()
            .filter(|t| t.contains("not an approver"))
            .count()
            == 2)
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("deny not refused: {:?}", app.ephemerals(MALLORY)));
    app.wait_outbox_empty(T).await;
    assert!(app.provider_calls().is_empty());
    assert!(!app
        .audit_texts()
        .iter()
        .any(|t| t.contains("approved") || t.contains("denied")));
    // Still pending: a real approver can approve it.
    let status = app.slash(ALICE, "status").await;
    assert!(
        status.contains(&id) && status.contains("pending"),
        "{status}"
    );
    app.press(BOB, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
}

const SELF_APPROVER: &str = r#"
id = "crm"
title = "CRM records"
description = "Customer records"
system = "CRM"
owner = "U0OWNER"
instructions = "Open the CRM."
[request]
allowed = ["*"]
default_duration = "1h"
max_duration = "2h"
require_reason = false
[approval]
approvers = ["U0ALICE", "U0BOB"]
required = 1
[grant]
provider = "command"
grant = ["./provider.sh", "grant"]
revoke = ["./provider.sh", "revoke"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_approval_is_refused() {
    let app = TestApp::spawn_with(Setup::default().with_runbook("crm", SELF_APPROVER)).await;
    let id = app.request(ALICE, "crm").await;
    // Alice is listed as an approver but is the requester: she is not asked...
    app.wait_dm(BOB, &[&id], T).await;
    app.wait_outbox_empty(T).await;
    assert!(!app
        .dms(ALICE)
        .iter()
        .any(|m| text_of(m).contains("Approve")));
    // ...and pressing anyway (a forged payload) is refused.
    app.press(ALICE, "approve", &id).await;
    app.wait_ephemeral(ALICE, "cannot approve your own request", T)
        .await;
    app.wait_for_status(ALICE, &id, "pending approval", T).await;
    assert!(app.provider_calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_stale_timestamps_get_401_and_store_nothing() {
    let app = TestApp::spawn().await;
    // The start-up check of the token and the audit channel, and nothing else.
    let at_start = app.slack.all_calls().len();
    assert_eq!(at_start, 2, "{:?}", app.slack.all_calls());
    let body = TestApp::slash_body(ALICE, "request billing-admin 1h reason");
    // Wrong signature.
    let ts = chrono::Utc::now().timestamp();
    let r = reqwest::Client::new()
        .post(format!("{}/slack/commands", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", TestApp::sign(ts, b"other body"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Missing headers.
    let r = reqwest::Client::new()
        .post(format!("{}/slack/commands", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Correctly signed, but six minutes old (and six minutes ahead).
    assert_eq!(
        app.post_signed(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            &body,
            360
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        app.post_signed(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            &body,
            -360
        )
        .await
        .status(),
        401
    );
    // The same on the interactivity endpoint.
    let payload = TestApp::interaction_body(&block_action(BOB, "approve", "ar-x"));
    assert_eq!(
        app.post_signed(
            "/slack/interactions",
            "application/x-www-form-urlencoded",
            &payload,
            360
        )
        .await
        .status(),
        401
    );

    assert_eq!(
        app.slash(ALICE, "status").await,
        "You have no pending requests and no active access."
    );
    app.wait_outbox_empty(T).await;
    assert!(
        app.slack.all_calls().len() == at_start,
        "a refused request reached Slack: {:?}",
        &app.slack.all_calls()[at_start..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_duration_is_refused_with_the_fix() {
    let app = TestApp::spawn().await;
    let answer = app.slash(ALICE, "request billing-admin 2h month end").await;
    assert!(
        answer.contains("longer than the maximum of 1h") && answer.contains("ask for 1h or less"),
        "{answer}"
    );
    assert!(request_id_in(&answer).is_none());
    let missing_reason = app.slash(ALICE, "request billing-admin 30m").await;
    assert!(
        missing_reason.contains("needs a reason"),
        "{missing_reason}"
    );
    let unknown = app.slash(ALICE, "request payroll 1h x").await;
    assert!(unknown.contains("no runbook `payroll`"), "{unknown}");
    assert_eq!(
        app.slash(ALICE, "status").await,
        "You have no pending requests and no active access."
    );
    app.wait_outbox_empty(T).await;
    assert!(app.slack.calls("chat.postMessage").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_while_granted_revokes_what_expired_during_the_downtime() {
    let mut app = TestApp::spawn().await;
    // A grant with a long expiry must keep its timer across the restart.
    let long = app.request(DAVE, "billing-admin 1h support ticket").await;
    app.wait_dm(BOB, &[&long], T).await;
    // The short grant is made while the long one waits, so that the kill
    // comes soon after it is active and well before its 2s are up.
    let id = app.request(ALICE, "billing-admin 2s quarter close").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_for_status(ALICE, &id, "active", T).await;
    // Approving is answered only once stored, which also makes the short
    // grant's state durable before the kill.
    app.press(CAROL, "approve", &long).await;
    app.wait_for_status(DAVE, &long, "active", T).await;

    app.kill().await; // kill -9
    assert!(
        !app.provider_done().contains(&format!("revoke {id}")),
        "revoked before the kill: the scenario needs it still active"
    );
    // Down until the short grant's end has passed (the script sees it in
    // whole seconds, cut down: the end is within the second after).
    let ends = app.provider_runs("grant", &id)[0].expires_at + chrono::Duration::seconds(1);
    wait_until(T, || (chrono::Utc::now() > ends).then_some(()))
        .await
        .expect("the short grant's end passed");
    app.start().await;
    app.wait_done(&format!("revoke {id}"), Duration::from_secs(3))
        .await;
    app.wait_audit(&["Access revoked", &id], T).await;
    // Still active; had the kill come before its grant reached the disk,
    // the bot grants it again first, as after any crash.
    app.wait_for_status(DAVE, &long, "active", T).await;
    assert!(!app.provider_done().contains(&format!("revoke {long}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_grant_marks_the_request_failed_and_tells_everyone() {
    let mut app = TestApp::spawn().await;
    app.fail_provider("grant", 1);
    let id = app.request(ALICE, "billing-admin 1h refunds").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_dm(ALICE, &["could not grant", &id], T).await;
    app.wait_audit(&["Grant failed", &id, "simulated grant failure"], T)
        .await;
    // The clean-up revoke runs so nothing stays half-granted, and the bot
    // records the request as failed (with its audit event, in one commit).
    app.wait_done(&format!("revoke {id}"), T).await;
    app.wait_audit(
        &["Access revoked", &id, "clean-up after the failed grant"],
        T,
    )
    .await;
    assert!(!app.provider_done().contains(&format!("grant {id}")));
    assert!(!app
        .dms(ALICE)
        .iter()
        .any(|m| text_of(m).contains("is granted")));
    let status = app.slash(ALICE, "status").await;
    assert!(!status.contains(&id), "{status}");
    let log = app.audit_log().await;
    assert!(log
        .iter()
        .any(|e| e["kind"] == "failed" && e["request_id"] == id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_revoke_is_retried_and_reported_until_it_succeeds() {
    let app = TestApp::spawn().await;
    app.fail_provider("revoke", 2);
    let id = app.request(ALICE, "billing-admin 1s refunds").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
    app.wait_audit(&["Revoke failed — will retry", &id, "attempt 1"], T)
        .await;
    app.wait_audit(&["Revoke failed — will retry", &id, "attempt 2"], T)
        .await;
    app.wait_done(&format!("revoke {id}"), T).await;
    app.wait_audit(&["Access revoked", &id, "expired"], T).await;
    let revokes = app
        .provider_calls()
        .iter()
        .filter(|l| l.starts_with("revoke"))
        .count();
    assert_eq!(revokes, 3, "{:?}", app.provider_calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_modal_opens_and_its_submission_creates_a_request() {
    let app = TestApp::spawn().await;
    assert_eq!(app.slash(ALICE, "").await, "");
    let open = app.slack.wait_for("views.open", T, |_| true).await;
    let view = &open.body["view"];
    assert_eq!(view["callback_id"], "access_request");
    assert!(view.to_string().contains("billing-admin"));

    // Invalid input is shown next to the field, and nothing is stored.
    let errors = app
        .submit_modal(ALICE, "billing-admin", "5h", "refunds")
        .await;
    assert_eq!(errors["response_action"], "errors");
    assert!(
        errors["errors"]["duration"]
            .as_str()
            .unwrap()
            .contains("maximum"),
        "{errors}"
    );
    let errors = app
        .submit_modal(ALICE, "billing-admin", "soon", "refunds")
        .await;
    assert!(errors["errors"]["duration"].is_string(), "{errors}");
    let errors = app.submit_modal(ALICE, "billing-admin", "1h", "").await;
    assert!(errors["errors"]["reason"].is_string(), "{errors}");

    let ok = app
        .submit_modal(ALICE, "billing-admin", "45m", "month end")
        .await;
    assert_eq!(ok, Value::Null);
    let confirmation = app.wait_dm(ALICE, &["waiting for approval"], T).await;
    let id = request_id_in(&text_of(&confirmation)).unwrap();
    app.wait_dm(BOB, &[&id, "45 minutes", "month end"], T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_list_status_and_url_verification() {
    let app = TestApp::spawn().await;
    assert!(app.slash(ALICE, "help").await.contains("/access request"));
    let list = app.slash(ALICE, "list").await;
    assert!(
        list.contains("billing-admin")
            && list.contains("Billing portal")
            && list.contains("Default 3 seconds")
            && list.contains("up to 1 hour"),
        "{list}"
    );
    let odd = app.slash(ALICE, "frobnicate").await;
    assert!(odd.contains("unknown subcommand"), "{odd}");
    let r = app
        .post_signed(
            "/slack/events",
            "application/json",
            r#"{"token":"x","challenge":"c-123","type":"url_verification"}"#,
            0,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("c-123"));
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_revoke_by_an_approver() {
    let app = TestApp::spawn().await;
    let id = app.request(ALICE, "billing-admin 1h refunds").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
    app.wait_for_status(ALICE, &id, "active", T).await;
    let refused = app.slash(MALLORY, &format!("revoke {id}")).await;
    assert!(
        refused.contains("only the requester, an approver or the owner"),
        "{refused}"
    );
    let ok = app.slash(CAROL, &format!("revoke {id}")).await;
    assert!(ok.contains("Revoking"), "{ok}");
    app.wait_done(&format!("revoke {id}"), T).await;
    app.wait_dm(ALICE, &["has ended", "revoked early by <@U0CAROL>"], T)
        .await;
}

/// Two overlapping grants of the same access to the same person: the first
/// one ending must not take away the access the second still grants, and
/// the second one ending revokes it for real. Only break-glass can overlap
/// (a second one is confirmed; any other second request is refused while
/// the first is open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_grant_keeps_the_access_when_the_first_ends() {
    let break_glass = BILLING
        .replace("owner = ", "break_glass = true\nowner = ")
        .replace(
            "require_reason = true",
            "require_reason = true\nmax_total = \"2h\"",
        );
    assert_ne!(break_glass, BILLING);
    let app =
        TestApp::spawn_with(Setup::default().only_runbook("billing-admin", &break_glass)).await;
    let short = app.request(ALICE, "billing-admin 5s first").await;
    app.wait_done(&format!("grant {short}"), T).await;
    let long = app.request(ALICE, "billing-admin 1h second confirm").await;
    assert_ne!(long, short);
    app.wait_done(&format!("grant {long}"), T).await;
    app.wait_for_status(ALICE, &long, "active", T).await;

    app.wait_audit(&["Access revoked", &short, "continues under request"], T)
        .await;
    assert!(
        !app.provider_done().contains(&format!("revoke {short}")),
        "the first grant's end revoked access the second still grants: {:?}",
        app.provider_done()
    );
    let answer = app.slash(ALICE, &format!("revoke {long}")).await;
    assert!(!answer.is_empty());
    app.wait_done(&format!("revoke {long}"), T).await;
    app.wait_audit(&["Access revoked", &long], T).await;
}

/// Auditors export the audit log from the running bot with a token: JSON
/// lines, the chain verdict in a header, `since` for incremental pulls; no
/// token, a wrong one, or the export turned off, and they get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_exports_while_running_with_a_token() {
    const AUDIT_TOKEN: &str = "audit-export-token-0123456789abcdef";
    let app = TestApp::spawn_with(Setup::default().env("ACCESSBOT_AUDIT_TOKEN", AUDIT_TOKEN)).await;
    let id = app.request(ALICE, "billing-admin 1h export").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "deny", &id).await;
    app.wait_audit(&["Denied", &id], T).await;

    let export = |auth: Option<&str>, query: &str| {
        let mut r = reqwest::Client::new().get(format!("{}/audit{query}", app.base));
        if let Some(a) = auth {
            r = r.header("authorization", a.to_string());
        }
        r.send()
    };
    for auth in [None, Some("Bearer wrong-token"), Some(AUDIT_TOKEN)] {
        let r = export(auth, "").await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(!r.text().await.unwrap().contains(&id));
    }
    let r = export(Some(&format!("Bearer {AUDIT_TOKEN}")), "")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-accessbot-audit-chain"], "intact");
    let events: Vec<Value> = r
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e["request_id"] == id.as_str())
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["requested", "denied"]);
    let first = events[0]["seq"].as_u64().unwrap();
    let later = export(
        Some(&format!("Bearer {AUDIT_TOKEN}")),
        &format!("?since={first}"),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert_eq!(later.lines().count(), events.len() - 1);

    let off = TestApp::spawn().await;
    let r = off.get("/audit").await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("ACCESSBOT_AUDIT_TOKEN"));
}
