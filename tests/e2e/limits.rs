//! Limits that could be walked around, and refusals that left no trace
//! (issue 9, items 4 to 7): one open request per person and runbook,
//! break-glass chained only on confirmation and never past `max_total`, a
//! resent command answered with the request it already made, approver
//! groups checked again at the press, and every refused attempt audited,
//! logged and counted. Each test here failed on the code before its fix.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const T: Duration = Duration::from_secs(10);

/// Like `runbooks/incident-break-glass.toml`: at most 2h at a time, 4h in all.
const INCIDENT: &str = r#"
id = "incident"
title = "Production break-glass"
description = "Emergency admin access to production"
system = "Production"
owner = "U0OWNER"
instructions = "Post what you do in the incident channel."
break_glass = true

[request]
allowed = ["*"]
default_duration = "1h"
max_duration = "2h"
max_total = "4h"
require_reason = true

[approval]
approvers = ["U0BOB", "U0CAROL"]
required = 1
approval_timeout = "1d"

[grant]
provider = "command"
grant = ["./provider.sh", "grant"]
revoke = ["./provider.sh", "revoke"]
timeout = "5s"
"#;

/// Every request ID in `text`, in order.
fn ids_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(id) = request_id_in(rest) {
        let at = rest.find(&id).unwrap() + id.len();
        if !out.contains(&id) {
            out.push(id);
        }
        rest = &rest[at..];
    }
    out
}

fn grants(app: &TestApp) -> Vec<String> {
    app.provider_calls()
        .into_iter()
        .filter(|l| l.starts_with("grant "))
        .collect()
}

/// The trial's reproduction: two `request incident 2h sev1` a few seconds
/// apart gave two grants of 2h each. Now the second asks for confirmation
/// and grants nothing; confirmed, it is granted and every reviewer is told
/// it comes on top of the first; past `max_total` (2h + 2h of 4h) a third is
/// refused even confirmed, and so is an extension of the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_break_glass_needs_confirming_and_stops_at_max_total() {
    let app = TestApp::spawn_with(Setup::default().with_runbook("incident", INCIDENT)).await;
    let answer = app.slash(ALICE, "request incident 2h sev1").await;
    assert!(answer.contains("Break-glass"), "{answer}");
    let first = request_id_in(&answer).unwrap();
    app.wait_done(&format!("grant {first}"), T).await;

    let again = app.slash(ALICE, "request incident 2h sev1").await;
    assert_eq!(ids_in(&again), vec![first.clone()], "{again}");
    assert!(
        again.contains("request incident 2h sev1 confirm"),
        "{again}"
    );
    let status = app.slash(ALICE, "status").await;
    assert_eq!(ids_in(&status), vec![first.clone()], "{status}");

    let confirmed = app.slash(ALICE, "request incident 2h sev1 confirm").await;
    assert!(confirmed.contains("Break-glass"), "{confirmed}");
    let second = request_id_in(&confirmed).unwrap();
    assert_ne!(second, first);
    app.wait_done(&format!("grant {second}"), T).await;
    for reviewer in [BOB, CAROL, OWNER] {
        app.wait_dm(reviewer, &[&second, &first, "Acknowledge"], T)
            .await;
    }
    app.wait_audit(&["Break-glass access taken", &second, &first], T)
        .await;

    let third = app
        .slash(ALICE, "request incident 30m sev1 still going confirm")
        .await;
    assert!(third.contains("4h"), "{third}");
    assert!(
        ids_in(&third)
            .iter()
            .all(|id| *id == first || *id == second),
        "{third}"
    );
    let extend = app.slash(ALICE, &format!("extend {first} 30m")).await;
    assert!(extend.contains("4h"), "{extend}");
    assert!(
        !extend.contains("Extended") && !extend.contains("Asked"),
        "{extend}"
    );
    assert_eq!(grants(&app).len(), 2, "{:?}", grants(&app));
    let status = app.slash(ALICE, "status").await;
    assert_eq!(ids_in(&status).len(), 2, "{status}");
}

/// While a request is waiting or active, another one for the same runbook
/// by the same person is refused with the way to get more time on the one
/// they have, and the refusal is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_request_while_one_is_open_points_to_extend() {
    let app = TestApp::spawn().await;
    let id = app.request(ALICE, "billing-admin 30m month end").await;
    let waiting = app
        .slash(ALICE, "request billing-admin 1h other work")
        .await;
    assert_eq!(ids_in(&waiting), vec![id.clone()], "{waiting}");
    assert!(
        waiting.contains(&format!("/access extend {id}")),
        "{waiting}"
    );

    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
    app.wait_for_status(ALICE, &id, "active", T).await;
    let active = app.slash(ALICE, "request billing-admin 45m more").await;
    assert_eq!(ids_in(&active), vec![id.clone()], "{active}");
    assert!(
        active.contains(&format!("/access extend {id} <duration>")),
        "{active}"
    );
    // Someone else still asks as before.
    let dave = app.request(DAVE, "billing-admin 30m support").await;
    assert_ne!(dave, id);

    assert_eq!(grants(&app).len(), 1, "{:?}", grants(&app));
    let mut app = app;
    let log = app.audit_log().await;
    let requested = log.iter().filter(|e| e["kind"] == "requested").count();
    assert_eq!(requested, 2, "{log:#?}");
    let refused: Vec<&Value> = log.iter().filter(|e| e["kind"] == "refused").collect();
    assert_eq!(refused.len(), 2, "{log:#?}");
    for e in refused {
        assert_eq!(e["actor"], ALICE, "{e}");
        assert_eq!(e["request_id"], id.as_str(), "{e}");
    }
}

/// The same command sent again (a person pressing Enter twice, not a Slack
/// retry) while the first request waits answers with that request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_command_sent_again_answers_with_the_waiting_request() {
    let app = TestApp::spawn().await;
    let id = app.request(ALICE, "billing-admin 30m month end").await;
    let again = app
        .slash(ALICE, "request billing-admin 30m month end")
        .await;
    assert_eq!(ids_in(&again), vec![id.clone()], "{again}");
    assert!(again.contains("still waiting"), "{again}");
    // The same through the form.
    let form = app
        .submit_modal(ALICE, "billing-admin", "30m", "month end")
        .await;
    let shown = form["errors"]["runbook"].as_str().unwrap_or_default();
    assert!(
        shown.contains(&id) && shown.contains("still waiting"),
        "{form}"
    );
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    let status = app.slash(ALICE, "status").await;
    assert_eq!(ids_in(&status), vec![id.clone()], "{status}");
    let mut app = app;
    let log = app.audit_log().await;
    let requested = log.iter().filter(|e| e["kind"] == "requested").count();
    assert_eq!(requested, 1, "{log:#?}");
    assert!(log.iter().all(|e| e["kind"] != "refused"), "{log:#?}");
}

/// Approvers from a user group are checked again when they press: someone
/// removed from the group since the request was made can neither approve
/// nor deny, is told why, and the attempt is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_removed_from_the_group_can_no_longer_decide() {
    let by_group = BILLING.replace(
        "approvers = [\"U0BOB\", \"U0CAROL\"]",
        "approvers = [\"S0FINLEADS\"]",
    );
    assert_ne!(by_group, BILLING);
    let app = TestApp::spawn_with(Setup::default().only_runbook("billing-admin", &by_group)).await;
    app.slack.set_usergroup("S0FINLEADS", &[BOB, CAROL]);
    let id = app.request(ALICE, "billing-admin 30m month end").await;
    app.wait_dm(BOB, &[&id, "Approve"], T).await;

    app.slack.set_usergroup("S0FINLEADS", &[CAROL]);
    app.press(BOB, "approve", &id).await;
    let told = app.wait_ephemeral(BOB, "no longer", T).await;
    assert!(told.contains(&id), "{told}");
    app.press(BOB, "deny", &id).await;
    wait_until(T, || (app.ephemerals(BOB).len() >= 2).then_some(())).await;
    assert!(
        app.ephemerals(BOB).iter().all(|t| t.contains("no longer")),
        "{:?}",
        app.ephemerals(BOB)
    );
    assert!(app.provider_calls().is_empty(), "Bob's press counted");

    app.press(CAROL, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
    let mut app = app;
    let log = app.audit_log().await;
    let refused: Vec<&Value> = log.iter().filter(|e| e["kind"] == "refused").collect();
    assert_eq!(refused.len(), 2, "{log:#?}");
    for e in &refused {
        assert_eq!(e["actor"], BOB, "{e}");
        assert_eq!(e["request_id"], id.as_str(), "{e}");
        assert!(e["detail"].as_str().unwrap().contains("group"), "{e}");
    }
    assert!(
        !log.iter()
            .any(|e| e["kind"] == "approved" && e["actor"] == BOB),
        "{log:#?}"
    );
}

/// A non-approver's press, a self-approval, and someone else's revoke,
/// extend and release are each audited (kind `refused`, who, which
/// request, why), logged and counted in `/metrics`; the audit channel hears
/// of it once, when the same person is refused a third time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_attempts_are_audited_counted_and_a_burst_is_flagged_once() {
    let app = TestApp::spawn().await;
    let id = app.request(ALICE, "billing-admin 1h month end").await;
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    app.press(MALLORY, "approve", &id).await;
    app.wait_ephemeral(MALLORY, "not an approver", T).await;
    app.press(ALICE, "approve", &id).await;
    app.wait_ephemeral(ALICE, "your own request", T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
    app.wait_for_status(ALICE, &id, "active", T).await;

    let revoke = app.slash(MALLORY, &format!("revoke {id}")).await;
    assert!(revoke.contains("only the requester"), "{revoke}");
    let extend = app.slash(MALLORY, &format!("extend {id} 10m")).await;
    assert!(extend.contains("only the requester"), "{extend}");
    app.press(MALLORY, "release", &id).await;
    app.wait_ephemeral(MALLORY, "only the requester, an approver", T)
        .await;

    let deadline = Instant::now() + T;
    loop {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        if metrics.contains("\naccessbot_refused_total 5\n") {
            break;
        }
        assert!(Instant::now() < deadline, "refusals not counted: {metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let notice = app
        .wait_audit(&["refused", "<@U0MALLORY>", "3 times"], T)
        .await;
    assert!(notice.contains(&id), "{notice}");
    let about_refusals: Vec<String> = app
        .audit_texts()
        .into_iter()
        .filter(|t| t.contains("refused"))
        .collect();
    assert_eq!(about_refusals.len(), 1, "{about_refusals:#?}");
    assert!(app.logs().contains("refused"), "nothing logged");

    let mut app = app;
    let log = app.audit_log().await;
    let refused: Vec<&Value> = log.iter().filter(|e| e["kind"] == "refused").collect();
    assert_eq!(refused.len(), 5, "{log:#?}");
    assert!(refused.iter().all(|e| e["request_id"] == id.as_str()));
    let by = |who: &str| refused.iter().filter(|e| e["actor"] == who).count();
    assert_eq!((by(MALLORY), by(ALICE)), (4, 1), "{refused:#?}");
    for (what, why) in [
        ("approve", "not an approver"),
        ("approve", "own request"),
        ("revoke", "not the requester"),
        ("extend", "not the requester"),
        ("release", "not the requester"),
    ] {
        assert!(
            refused.iter().any(|e| {
                let d = e["detail"].as_str().unwrap();
                d.contains(what) && d.contains(why)
            }),
            "no refused {what} ({why}) in {refused:#?}"
        );
    }
}
