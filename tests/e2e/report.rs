//! The report: `/access report` for runbook owners and members of the
//! security group (`ACCESSBOT_SECURITY_GROUP`) and a refusal for anyone
//! else; `accessbot report` reading the store the bot used.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const T: Duration = Duration::from_secs(15);
const SECURITY: &str = "S0SECURITY";

/// Alice holds billing-admin (approved by Bob); Carol's request was denied.
async fn scripted() -> (TestApp, String, String) {
    let app = TestApp::spawn_with(Setup::default().env("ACCESSBOT_SECURITY_GROUP", SECURITY)).await;
    app.slack.set_usergroup(SECURITY, &[DAVE]);
    let held = app.request(ALICE, "billing-admin 1h refunds").await;
    app.wait_dm(BOB, &[&held, "Approve"], T).await;
    app.press(BOB, "approve", &held).await;
    app.wait_for_status(ALICE, &held, "active", T).await;
    let denied = app.request(CAROL, "billing-admin 1h curious").await;
    app.wait_dm(BOB, &[&denied, "Approve"], T).await;
    app.press(BOB, "deny", &denied).await;
    app.wait_dm(CAROL, &["denied"], T).await;
    (app, held, denied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slash_report_answers_owners_and_the_security_group_only() {
    let (app, _, _) = scripted().await;
    for reader in [OWNER, DAVE] {
        let report = app.slash(reader, "report").await;
        assert!(report.contains("*Access report*"), "{reader}: {report}");
        assert!(
            report.contains("`billing-admin`: 2 requests · 1 approved · 1 denied · 0 expired"),
            "{reader}: {report}"
        );
        assert!(
            report.contains("top: <@U0ALICE> (1), <@U0CAROL> (1)"),
            "{report}"
        );
        assert!(
            report.contains("<@U0ALICE> `billing-admin` since"),
            "{report}"
        );
    }
    for outsider in [MALLORY, BOB] {
        let refused = app.slash(outsider, "report").await;
        assert!(
            refused.contains("the report is for runbook owners and members of the security group"),
            "{outsider}: {refused}"
        );
        assert!(!refused.contains("billing-admin"), "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_command_reads_the_store_as_json_and_text() {
    let (mut app, held, _) = scripted().await;
    let _ = app.terminate().await;
    let out = app.run_cli(&["report", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let billing = &report["runbooks"][0];
    assert_eq!(billing["runbook"], "billing-admin");
    assert_eq!(billing["requests"], 2);
    assert_eq!(billing["approved"], 1);
    assert_eq!(billing["denied"], 1);
    assert_eq!(billing["median_granted_secs"], 3600);
    assert!(billing["median_decision_secs"].is_u64(), "{billing:#}");
    assert_eq!(report["holders"][0]["user"], ALICE);
    assert_eq!(report["holders"][0]["request_id"], held.as_str());

    let text = app.run_cli(&["report"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("billing-admin (Billing portal admin)"),
        "{text}"
    );
    assert!(text.contains("requests 2: approved 1, denied 1"), "{text}");

    let later = app.run_cli(&["report", "--since", "2999-01-01", "--format", "json"]);
    let later: Value = serde_json::from_slice(&later.stdout).unwrap();
    assert_eq!(later["runbooks"], Value::Array(vec![]));

    let bad = app.run_cli(&["report", "--since", "last tuesday"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("RFC 3339") && err.contains("last tuesday"),
        "{err}"
    );
}
