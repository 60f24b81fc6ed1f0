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

/// The shipped `billing.sh`, run by the real bot: when the bot is killed
/// while the script is inside its critical section, nothing is left holding
/// the lock (the run dies with the bot, and the kernel drops a `flock` with
/// its holder), so after the restart the grant completes and the revoke
/// takes the access away on time. With the old lock directory the grant
/// then failed with "locked for 10s" and the person stayed a billing admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_billing_script_survives_a_bot_killed_mid_grant() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/scripts/billing.sh");
    let state = tempfile::tempdir().unwrap();
    // A `grep` that says it is running, then hangs: it holds billing.sh
    // inside its critical section until the bot is killed.
    let shim = state.path().join("shim");
    std::fs::create_dir(&shim).unwrap();
    let inside = state.path().join("inside");
    std::fs::write(
        shim.join("grep"),
        format!("#!/bin/sh\ntouch {}\nexec sleep 600\n", inside.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        shim.join("grep"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let runbook = BILLING
        .replace(
            "\"./provider.sh\"",
            &format!("{:?}", script.display().to_string()),
        )
        .replace(
            "timeout = \"5s\"",
            "timeout = \"30s\"\nenv = [\"ACCESSBOT_STATE_DIR\"]",
        );
    assert!(runbook.contains("billing.sh"), "{runbook}");
    let path = std::env::var("PATH").unwrap_or_default();
    let state_dir = state.path().display().to_string();
    let mut app = TestApp::spawn_with(
        Setup::default()
            .only_runbook("billing-admin", &runbook)
            .env("ACCESSBOT_STATE_DIR", &state_dir)
            .env("PATH", &format!("{}:{path}", shim.display())),
    )
    .await;
    let id = app.request(ALICE, "billing-admin 4s month end").await;
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    app.press(BOB, "approve", &id).await;
    let held = wait_until(T, || inside.exists().then_some(())).await;
    assert!(
        held.is_some(),
        "billing.sh never reached its critical section"
    );
    app.kill().await;

    app.set_env("PATH", &path);
    app.start().await;
    app.wait_audit(&["Access granted", &id], Duration::from_secs(30))
        .await;
    app.wait_audit(&["Access revoked", &id], Duration::from_secs(30))
        .await;
    let admins = std::fs::read_to_string(state.path().join("billing-admins.txt")).unwrap();
    assert!(!admins.contains(ALICE), "still a billing admin: {admins:?}");
    let log = std::fs::read_to_string(state.path().join("billing-access.log")).unwrap();
    let actions: Vec<&str> = log.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    assert_eq!(actions, ["grant", "revoke"], "{log}");
}
