//! Hardening found by a hostile trial and a newcomer's first hour (issue 9):
//! each test here failed on the code before its fix.

use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(10);

/// Durations as people type them are understood; a number meant as a
/// duration that is not one is refused, never replaced by the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_as_people_type_them() {
    let app = TestApp::spawn().await;
    for (typed, shown) in [
        ("45 minutes", "45 minutes"),
        ("0.5h", "30 minutes"),
        ("40m30s", "40 minutes 30 seconds"),
        ("1 hour", "1 hour"),
        ("half an hour", "30 minutes"),
    ] {
        let answer = app
            .slash(ALICE, &format!("request billing-admin {typed} month end"))
            .await;
        let id = request_id_in(&answer).expect(&answer);
        let dm = app.wait_dm(BOB, &[&id], T).await.to_string();
        assert!(dm.contains(shown), "{typed}: {dm}");
        assert!(dm.contains("month end"), "{typed}: {dm}");
        // One open request per person and runbook: withdraw it before the next.
        let withdrawn = app.slash(ALICE, &format!("revoke {id}")).await;
        assert!(withdrawn.contains("withdrawn"), "{withdrawn}");
    }
    let refused = app
        .slash(ALICE, "request billing-admin 2 weeks month end")
        .await;
    assert!(request_id_in(&refused).is_none(), "{refused}");
    assert!(
        refused.contains("90 minutes") && refused.contains("half an hour"),
        "{refused}"
    );
}

/// A reason typed in the form with line breaks, markup, a code fence, a
/// right-to-left override and a NUL byte reads as one quoted paragraph in
/// the approver's DM and the audit channel, and the NUL never reaches the
/// stored request (it used to make the grant's environment unusable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_text_cannot_fake_structure() {
    let app = TestApp::spawn().await;
    let hostile = "refunds\n\n*APPROVED by CFO*\n```ok```\u{202E}lla \u{0}~x~";
    let answer = app
        .submit_modal(ALICE, "billing-admin", "30m", hostile)
        .await;
    assert!(answer.is_null(), "the form was refused: {answer}");
    let dm = app.wait_dm(BOB, &["Approve", "refunds"], T).await;
    let dm_text = dm.to_string();
    let shown = "refunds ∗APPROVED by CFO∗ ˋˋˋokˋˋˋlla ∼x∼";
    assert!(dm_text.contains(shown), "{dm_text}");
    for forged in [
        "*APPROVED",
        "\\n*APPROVED",
        "```",
        "\\u202e",
        "\u{202E}",
        "~x~",
    ] {
        assert!(!dm_text.contains(forged), "{forged:?} in {dm_text}");
    }
    let notice = app.wait_audit(&["Access requested", "refunds"], T).await;
    assert!(notice.contains(shown), "{notice}");
    assert!(
        !notice.contains('\n') || !notice.contains("\n*APPROVED"),
        "{notice}"
    );
    let mut app = app;
    let log = app.audit_log().await;
    let requested = log.iter().find(|e| e["kind"] == "requested").unwrap();
    let detail = requested.to_string();
    assert!(
        !detail.contains("\\u0000") && !detail.contains("\\n"),
        "{detail}"
    );
}
