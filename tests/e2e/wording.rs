//! Words for the people who use accessbot (finance, HR, support,
//! marketing): what a message says, how it says it, and what it keeps out of
//! the way. Also the small refusals that must read right: another slash
//! command, an unknown request ID, a break-glass flag that stands, and the
//! runbooks whose secrets are not set, which stop `serve`.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const T: Duration = Duration::from_secs(10);

/// What a message shows in its main body: the notification text, headers,
/// sections and fields. Context lines and buttons are not part of it.
fn main_text(m: &Value) -> String {
    let mut out = m["text"].as_str().unwrap_or_default().to_string();
    for b in m["blocks"].as_array().into_iter().flatten() {
        if b["type"] == "section" || b["type"] == "header" {
            out.push('\n');
            out.push_str(b["text"]["text"].as_str().unwrap_or_default());
            for f in b["fields"].as_array().into_iter().flatten() {
                out.push('\n');
                out.push_str(f["text"].as_str().unwrap_or_default());
            }
        }
    }
    out
}

/// The context lines of a message.
fn context_text(m: &Value) -> String {
    m["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "context")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .map(|e| e["text"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The labels of a message's buttons.
fn button_labels(m: &Value) -> Vec<String> {
    m["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .map(|e| e["text"]["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The approver's DM says what the access allows, for how long in words,
/// and until when the request waits (Slack's date formatting, so each
/// reader sees their own time zone); the request ID is only in a context
/// line, and "runbook" is not a word approvers have to learn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approver_dm_says_what_is_allowed_for_how_long_and_until_when() {
    let app = TestApp::spawn().await;
    let asked_at = chrono::Utc::now().timestamp();
    let id = app
        .request(ALICE, "billing-admin 2m month-end refunds")
        .await;
    let dm = app.wait_dm(BOB, &[&id, "Approve", "Deny"], T).await;
    let main = main_text(&dm);
    assert!(main.contains("Refunds and plan changes"), "{main}");
    assert!(main.contains("2 minutes"), "{main}");
    assert!(!main.contains("2m"), "{main}");
    let (_, after) = main
        .split_once("waits for an answer until <!date^")
        .unwrap_or_else(|| panic!("no approval deadline in {main}"));
    let deadline: i64 = after
        .split('^')
        .next()
        .and_then(|ts| ts.parse().ok())
        .unwrap_or_else(|| panic!("no timestamp in {after}"));
    // The runbook's approval_timeout is 1h.
    assert!(
        (deadline - (asked_at + 3600)).abs() < 60,
        "deadline {deadline} is not an hour after {asked_at}"
    );
    assert!(
        !main.contains("ar-"),
        "the raw ID is in the main text: {main}"
    );
    assert!(!main.to_lowercase().contains("runbook"), "{main}");
    assert!(context_text(&dm).contains(&id), "{dm:#}");
}

/// The grant DM's Extend button says by how much it extends; when access
/// ends, exactly one message says so (the grant DM is not rewritten into a
/// second copy of it) and no earlier DM keeps its buttons. The requester's
/// DMs keep the request ID out of their main text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_says_by_how_much_and_the_end_is_one_message() {
    let app = TestApp::spawn().await;
    let id = app
        .request(ALICE, "billing-admin 2s month-end refunds")
        .await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    let granted = app.wait_dm(ALICE, &["is granted", "Release now"], T).await;
    assert!(
        button_labels(&granted).contains(&"Extend by 3 seconds".to_string()),
        "{:?}",
        button_labels(&granted)
    );
    app.wait_done(&format!("revoke {id}"), T).await;
    app.wait_audit(&["Access revoked", &id], T).await;
    app.wait_outbox_empty(T).await;
    let dms = app.dms(ALICE);
    let ended: Vec<&Value> = dms
        .iter()
        .filter(|m| main_text(m).contains("has ended"))
        .collect();
    assert_eq!(ended.len(), 1, "one message says access ended: {dms:#?}");
    assert!(context_text(ended[0]).contains(&id), "{:#}", ended[0]);
    assert!(
        dms.iter().all(|m| !has_buttons(m)),
        "an ended access keeps buttons: {dms:#?}"
    );
    for m in &dms {
        assert!(!main_text(m).contains("ar-"), "raw ID in {m:#}");
    }
}

/// The audit channel names events in words ("Access revoked", "Revoke
/// failed — will retry"), not by their stored kind, and gives durations in
/// words; the request ID stays, in the context line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_channel_reads_as_words() {
    let app = TestApp::spawn().await;
    let id = app
        .request(ALICE, "billing-admin 2s month-end refunds")
        .await;
    app.wait_dm(BOB, &[&id], T).await;
    app.fail_provider("revoke", 1);
    app.press(BOB, "approve", &id).await;
    let failed = app
        .wait_audit(&["Revoke failed — will retry", &id, "attempt 1"], T)
        .await;
    assert!(failed.contains("trying again in 1 second"), "{failed}");
    app.wait_audit(&["Access revoked", &id], T).await;
    app.wait_outbox_empty(T).await;
    let posts = app.slack.messages_in(AUDIT);
    let requested = posts
        .iter()
        .find(|m| main_text(m).contains("Access requested"))
        .unwrap_or_else(|| panic!("{posts:#?}"));
    assert!(main_text(requested).contains("2 seconds"), "{requested:#}");
    for m in &posts {
        let main = main_text(m);
        for raw in ["revoke_failed", "*requested*", "*granted*", "2s", "ar-"] {
            assert!(!main.contains(raw), "{raw:?} in the audit channel: {main}");
        }
        assert!(context_text(m).contains(&id), "{m:#}");
    }
}

/// An extension past the limit says how much is still possible, and how
/// to ask for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_past_the_limit_says_how_much_is_left() {
    let app = TestApp::spawn().await;
    let id = app
        .request(ALICE, "billing-admin 50m month-end refunds")
        .await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_for_status(ALICE, &id, "active", T).await;
    let refused = app.slash(ALICE, &format!("extend {id} 30m")).await;
    assert!(refused.contains("limit of 1 hour in total"), "{refused}");
    assert!(
        refused.contains("You can still extend by up to 10 minutes"),
        "{refused}"
    );
    assert!(
        refused.contains(&format!("`/access extend {id} 10m`")),
        "{refused}"
    );
    let extended = app.slash(ALICE, &format!("extend {id} 10m")).await;
    assert!(!extended.contains(":no_entry_sign:"), "{extended}");
}

/// `/access list` ends a description that has its own full stop without a
/// second one, and says durations in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_has_no_doubled_full_stop() {
    let app = TestApp::spawn_with(Setup::default().only_runbook(
        "billing-admin",
        &BILLING.replace(
            "\"Refunds and plan changes\"",
            "\"Refunds and plan changes.\"",
        ),
    ))
    .await;
    let list = app.slash(ALICE, "list").await;
    assert!(
        list.contains("Refunds and plan changes. Default 3 seconds, up to 1 hour"),
        "{list}"
    );
    assert!(!list.contains(".."), "{list}");
}

/// A break-glass flag stands: a later Acknowledge is recorded beside it,
/// not over it, and only the owner clears it, with the button on their DM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_stands_until_the_owner_clears_it() {
    let incident = BILLING
        .replace(
            "id = \"billing-admin\"",
            "id = \"incident\"\nbreak_glass = true",
        )
        .replace("default_duration = \"3s\"", "default_duration = \"30m\"");
    let app = TestApp::spawn_with(Setup::default().only_runbook("incident", &incident)).await;
    let answer = app.slash(ALICE, "request incident 30m prod down").await;
    let id = request_id_in(&answer).unwrap();
    app.wait_done(&format!("grant {id}"), T).await;
    for reviewer in [BOB, CAROL, OWNER] {
        app.wait_dm(reviewer, &[&id, "Acknowledge", "Flag"], T)
            .await;
    }
    app.press(BOB, "review_flag", &id).await;
    app.wait_audit(&["flagged", &id, "<@U0BOB>"], T).await;
    app.press(CAROL, "review_ack", &id).await;
    let ack = app
        .wait_audit(&["acknowledged", &id, "<@U0CAROL>"], T)
        .await;
    assert!(
        ack.contains("stands until the owner <@U0OWNER> clears it"),
        "{ack}"
    );
    app.wait_ephemeral(CAROL, "stands", T).await;
    // The owner's DM shows the flag, with the button that clears it.
    let owner_dm = app
        .wait_dm(
            OWNER,
            &["Flagged for follow-up by <@U0BOB>", "review_clear"],
            T,
        )
        .await;
    assert!(
        !main_text(&owner_dm).contains("Acknowledged by"),
        "{owner_dm:#}"
    );
    app.press(BOB, "review_clear", &id).await;
    app.wait_ephemeral(BOB, "only the owner", T).await;
    app.press(OWNER, "review_clear", &id).await;
    app.wait_audit(&["flag cleared", &id, "<@U0OWNER>"], T)
        .await;
    app.wait_dm(OWNER, &["Flag cleared by <@U0OWNER>"], T).await;
    app.wait_outbox_empty(T).await;
    let owner_review = app
        .dms(OWNER)
        .into_iter()
        .find(|m| m.to_string().contains("Flag cleared"))
        .unwrap();
    assert!(!has_buttons(&owner_review), "{owner_review:#}");
}

/// Another slash command pointed at this app is refused in words, and
/// nothing is requested, stored or announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_slash_command_is_refused_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let body = TestApp::slash_body(ALICE, "request billing-admin 1h month-end refunds")
        .replace("command=%2Faccess", "command=%2Fdeploy");
    assert!(body.contains("command=%2Fdeploy"), "{body}");
    let r = app
        .post_signed(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            &body,
            0,
        )
        .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["response_type"], "ephemeral", "{answer}");
    let text = answer["text"].as_str().unwrap_or_default();
    assert!(text.contains("only handles `/access`"), "{text}");
    assert!(text.contains("`/deploy`"), "{text}");
    assert!(request_id_in(text).is_none(), "{text}");
    let status = app.slash(ALICE, "status").await;
    assert!(status.contains("no pending requests"), "{status}");
    app.wait_outbox_empty(T).await;
    assert!(app.audit_texts().is_empty(), "{:#?}", app.audit_texts());
    assert!(app.dms(BOB).is_empty(), "{:#?}", app.dms(BOB));
}

/// A press whose value names no request is refused with the value shown
/// escaped (no live mention, no formatting) and cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_found_refusal_escapes_and_shortens_the_value() {
    let app = TestApp::spawn().await;
    let forged = format!("<!channel> *urgent* {}", "x".repeat(500));
    app.press(MALLORY, "approve", &forged).await;
    let refusal = app.wait_ephemeral(MALLORY, "was not found", T).await;
    assert!(!refusal.contains("<!channel>"), "{refusal}");
    assert!(refusal.contains("&lt;!channel&gt;"), "{refusal}");
    assert!(!refusal.contains("*urgent*"), "{refusal}");
    assert!(refusal.chars().count() < 200, "{refusal}");
}

/// `serve` refuses to start with a runbook whose provider needs a variable
/// that is not set (its grants would be approved, then fail), in one line
/// naming the runbook and the variable, never a value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_runbooks_whose_secrets_are_not_set() {
    let needs = BILLING.replace(
        "timeout = \"5s\"",
        "timeout = \"5s\"\nenv = [\"ACCESSBOT_TEST_NEVER_SET\", \"ACCESSBOT_TEST_SET_HERE\"]",
    );
    let mut app = TestApp::spawn().await;
    app.kill().await;
    std::fs::write(
        app.runbook_dir.join("hr-tool.toml"),
        needs.replace("id = \"billing-admin\"", "id = \"hr-tool\""),
    )
    .unwrap();
    app.set_env("ACCESSBOT_TEST_SET_HERE", "value-that-must-not-be-printed");
    let (code, stderr) = app.serve_once();
    assert_eq!(code, Some(2), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("ACCESSBOT_TEST_NEVER_SET"))
        .unwrap_or_else(|| panic!("no line names the variable:\n{stderr}"));
    assert!(line.contains("hr-tool"), "{line}");
    assert!(!line.contains("ACCESSBOT_TEST_SET_HERE"), "{line}");
    assert!(
        !stderr.contains("value-that-must-not-be-printed"),
        "{stderr}"
    );
    assert!(!stderr.contains("`billing-admin`"), "{stderr}");
}
