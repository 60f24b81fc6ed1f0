//! Approval policies: stages, groups, managers, auto-approval, break-glass,
//! reminders and escalation, extensions, release, expiry warnings, the modal
//! preview.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const T: Duration = Duration::from_secs(10);

fn rb(id: &str, approval: &str, extra_top: &str, request: &str) -> String {
    format!(
        r#"
id = "{id}"
title = "Payroll view"
description = "Read payroll"
system = "Payroll"
owner = "U0OWNER"
instructions = "Open payroll."
{extra_top}
[request]
allowed = ["*"]
default_duration = "1h"
max_duration = "2h"
require_reason = false
{request}
[approval]
{approval}
[grant]
provider = "command"
grant = ["./provider.sh", "grant"]
revoke = ["./provider.sh", "revoke"]
"#
    )
}

/// Two approval stages of one approval each, as `[[approval.stages]]` TOML;
/// each stage is its name and its approvers as a TOML list.
fn two_stages(first: (&str, &str), second: (&str, &str)) -> String {
    [first, second]
        .iter()
        .map(|(name, approvers)| {
            format!(
                "[[approval.stages]]\nname = \"{name}\"\napprovers = {approvers}\nrequired = 1\n"
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_then_owner_in_two_stages() {
    let stages = two_stages(
        ("Manager", r#"["manager"]"#),
        ("System owner", r#"["owner"]"#),
    );
    let app = TestApp::spawn_with(
        Setup::default()
            .only_runbook(
                "payroll",
                &rb("payroll", "", "", "").replace("[approval]\n", &stages),
            )
            .config("[directory]\nU0ALICE = \"U0BOB\"\n"),
    )
    .await;
    let id = app.request(ALICE, "payroll").await;
    app.wait_dm(BOB, &[&id, "Stage 1 of 2", "Manager"], T).await;
    // Everything the request queued has been sent: the owner was not asked.
    app.wait_outbox_empty(T).await;
    assert!(
        app.dms(OWNER).is_empty(),
        "owner asked before the manager approved"
    );
    app.press(BOB, "approve", &id).await;
    app.wait_dm(OWNER, &[&id, "Stage 2 of 2", "System owner"], T)
        .await;
    app.wait_audit(&["Stage approved", &id, "Manager"], T).await;
    app.wait_for_status(ALICE, &id, "pending approval", T).await;
    assert!(app.provider_calls().is_empty());
    app.press(OWNER, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;

    // A requester without a known manager is refused with a reason.
    let refused = app.slash(DAVE, "request payroll").await;
    assert!(refused.contains("manager is not known"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_from_a_slack_profile_field() {
    let stages = "approvers = [\"manager\"]\nrequired = 1\n";
    let app = TestApp::spawn_with(
        Setup::default()
            .only_runbook("payroll", &rb("payroll", stages, "", ""))
            .env("ACCESSBOT_MANAGER_FIELD", "Xf0MANAGER"),
    )
    .await;
    app.slack.set_profile_field(DAVE, "Xf0MANAGER", "U0CAROL");
    let id = app.request(DAVE, "payroll").await;
    app.wait_dm(CAROL, &[&id, "Approve"], T).await;
    assert!(!app.slack.calls("users.profile.get").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_approvers_are_resolved_with_usergroups_users_list() {
    let app = TestApp::spawn_with(Setup::default().only_runbook(
        "payroll",
        &rb(
            "payroll",
            "approvers = [\"S0FINLEADS\"]\nrequired = 1\n",
            "",
            "",
        ),
    ))
    .await;
    app.slack.set_usergroup("S0FINLEADS", &[CAROL, DAVE]);
    let id = app.request(ALICE, "payroll").await;
    app.wait_dm(CAROL, &[&id, "Approve"], T).await;
    app.wait_dm(DAVE, &[&id, "Approve"], T).await;
    assert!(app
        .slack
        .calls("usergroups.users.list")
        .iter()
        .any(|c| c.body["usergroup"] == "S0FINLEADS"));
    // Membership was stored with the request: someone added later cannot approve it.
    app.slack
        .set_usergroup("S0FINLEADS", &[CAROL, DAVE, MALLORY]);
    app.press(MALLORY, "approve", &id).await;
    app.wait_ephemeral(MALLORY, "not an approver", T).await;
    app.press(DAVE, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_cannot_approve_in_two_stages() {
    let stages = two_stages(
        ("Leads", r#"["U0BOB", "U0CAROL"]"#),
        ("Owner", r#"["U0BOB", "owner"]"#),
    );
    let app = TestApp::spawn_with(Setup::default().only_runbook(
        "payroll",
        &rb("payroll", "", "", "").replace("[approval]\n", &stages),
    ))
    .await;
    let id = app.request(ALICE, "payroll").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_dm(OWNER, &[&id, "Stage 2 of 2"], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_ephemeral(BOB, "already approved", T).await;
    // Counted twice, Bob would have moved the request on to being granted.
    app.wait_for_status(ALICE, &id, "pending approval", T).await;
    assert!(app.provider_calls().is_empty(), "Bob counted twice");
    app.press(OWNER, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_approval_grants_without_a_human_and_names_the_rule() {
    let approval = "approvers = [\"U0BOB\"]\nrequired = 1\n[[approval.auto_approve]]\nname = \"on-call\"\nusers = [\"U0DAVE\"]\nmax_duration = \"30m\"\n";
    let app = TestApp::spawn_with(
        Setup::default().only_runbook("payroll", &rb("payroll", approval, "", "")),
    )
    .await;
    let answer = app.slash(DAVE, "request payroll 20m incident").await;
    assert!(answer.contains("approved automatically"), "{answer}");
    let id = request_id_in(&answer).unwrap();
    app.wait_done(&format!("grant {id}"), T).await;
    app.wait_audit(&["Approved automatically", &id, "on-call"], T)
        .await;
    app.wait_outbox_empty(T).await;
    assert!(
        app.dms(BOB).iter().all(|m| !m.to_string().contains(&id)),
        "Bob was asked"
    );
    // Over the rule's limit, or someone else: a human decides. (Dave ends
    // the first: one open request per person and runbook.)
    app.wait_for_status(DAVE, &id, "active", T).await;
    app.slash(DAVE, &format!("revoke {id}")).await;
    app.wait_audit(&["*Access revoked*", &id], T).await;
    let long = app.request(DAVE, "payroll 1h incident").await;
    app.wait_dm(BOB, &[&long, "Approve"], T).await;
    let other = app.request(ALICE, "payroll 10m x").await;
    app.wait_dm(BOB, &[&other, "Approve"], T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_grants_at_once_and_asks_for_review() {
    let app = TestApp::spawn_with(
        Setup::default().only_runbook(
            "incident",
            &rb(
                "incident",
                "approvers = [\"U0BOB\", \"U0CAROL\"]\nrequired = 1\n",
                "break_glass = true",
                "",
            )
            .replace("max_duration = \"2h\"", "max_duration = \"1h\""),
        ),
    )
    .await;
    let answer = app.slash(ALICE, "request incident 30m prod down").await;
    assert!(answer.contains("Break-glass"), "{answer}");
    let id = request_id_in(&answer).unwrap();
    app.wait_done(&format!("grant {id}"), T).await;
    app.wait_audit(&["Break-glass access taken", &id, "BREAK-GLASS"], T)
        .await;
    for reviewer in [BOB, CAROL, OWNER] {
        app.wait_dm(reviewer, &[&id, "Acknowledge", "Flag"], T)
            .await;
    }
    app.press(BOB, "review_ack", &id).await;
    app.wait_audit(&["Break-glass review: acknowledged", &id, "<@U0BOB>"], T)
        .await;
    app.press(OWNER, "review_flag", &id).await;
    app.wait_audit(&["Break-glass review: flagged", &id, "<@U0OWNER>"], T)
        .await;
    app.press(MALLORY, "review_ack", &id).await;
    app.wait_ephemeral(MALLORY, "not an approver", T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminder_then_escalation_to_fallback_approvers() {
    let approval = "approvers = [\"U0BOB\"]\nrequired = 1\napproval_timeout = \"1h\"\nremind_after = \"1s\"\nescalate_after = \"2s\"\nfallback_approvers = [\"U0CAROL\"]\n";
    let app = TestApp::spawn_with(
        Setup::default().only_runbook("payroll", &rb("payroll", approval, "", "")),
    )
    .await;
    let id = app.request(ALICE, "payroll").await;
    app.wait_dm(BOB, &[&id, "Reminder"], T).await;
    app.wait_dm(CAROL, &[&id, "Escalated", "Approve"], T).await;
    app.wait_audit(&["Escalated", &id, "<@U0CAROL>"], T).await;
    app.press(CAROL, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecided_requests_expire_and_approver_messages_say_so() {
    let approval = "approvers = [\"U0BOB\"]\nrequired = 1\napproval_timeout = \"2s\"\n";
    let app = TestApp::spawn_with(
        Setup::default().only_runbook("payroll", &rb("payroll", approval, "", "")),
    )
    .await;
    let id = app.request(ALICE, "payroll").await;
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    app.wait_audit(&["Request expired", &id], T).await;
    let m = wait_until(T, || {
        app.dms(BOB)
            .into_iter()
            .find(|m| m.to_string().contains("Expired") && !has_buttons(m))
    })
    .await;
    assert!(m.is_some(), "{:#?}", app.dms(BOB));
    app.wait_dm(ALICE, &["expired", &id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_ephemeral(BOB, "already expired", T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_approved_and_refused() {
    let app = TestApp::spawn_with(Setup::default().only_runbook(
        "payroll",
        &rb(
            "payroll",
            "approvers = [\"U0BOB\", \"U0CAROL\"]\nrequired = 1\n",
            "",
            "max_total = \"3h\"",
        ),
    ))
    .await;
    let id = app.request(ALICE, "payroll 1h").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
    app.wait_for_status(ALICE, &id, "active", T).await;

    // Over max_total: refused at once.
    let too_long = app.slash(ALICE, &format!("extend {id} 3h")).await;
    assert!(too_long.contains("limit of 3 hours in total"), "{too_long}");
    // Only the requester may ask.
    let not_yours = app.slash(MALLORY, &format!("extend {id} 1h")).await;
    assert!(not_yours.contains("only the requester"), "{not_yours}");

    let asked = app.slash(ALICE, &format!("extend {id} 1h")).await;
    assert!(asked.contains("Asked the approvers"), "{asked}");
    app.wait_dm(BOB, &[&id, "Extension request", "extension_approve"], T)
        .await;
    app.press(BOB, "extension_approve", &id).await;
    app.wait_audit(&["Access extended", &id, "approved by <@U0BOB>"], T)
        .await;
    app.wait_dm(ALICE, &["Extension of 1 hour approved"], T)
        .await;
    let status = app.slash(ALICE, "status").await;
    assert!(status.contains("2 hours"), "{status}");

    // A second extension, refused by Carol.
    app.slash(ALICE, &format!("extend {id} 30m")).await;
    app.wait_dm(CAROL, &[&id, "Extension request", "30 minutes"], T)
        .await;
    app.press(CAROL, "extension_deny", &id).await;
    app.wait_dm(ALICE, &["Extension of 30 minutes refused"], T)
        .await;
    app.wait_audit(&["Extension refused", &id], T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_now_button_and_expiry_warning() {
    let app = TestApp::spawn_with(
        Setup::default()
            .only_runbook(
                "payroll",
                &rb("payroll", "approvers = [\"U0BOB\"]\nrequired = 1\n", "", ""),
            )
            .env("ACCESSBOT_EXPIRY_WARNING", "2s"),
    )
    .await;
    // A 5s grant is warned a fifth of its length (1s) before it ends.
    let id = app.request(ALICE, "payroll 5s").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    let granted = app
        .wait_dm(ALICE, &["is granted", "Release now", "Extend"], T)
        .await;
    assert!(granted.to_string().contains("\"action_id\":\"release\""));
    app.wait_dm(ALICE, &["ends at", "Extend", "Release now"], T)
        .await;
    app.wait_done(&format!("revoke {id}"), T).await;

    let id2 = app.request(ALICE, "payroll 1h").await;
    app.wait_dm(BOB, &[&id2], T).await;
    app.press(BOB, "approve", &id2).await;
    app.wait_done(&format!("grant {id2}"), T).await;
    app.wait_for_status(ALICE, &id2, "active", T).await;
    app.press(ALICE, "release", &id2).await;
    app.wait_done(&format!("revoke {id2}"), T).await;
    app.wait_audit(&["Released early", &id2], T).await;
    // The grant DM loses its buttons once access ended.
    let closed = wait_until(T, || {
        app.dms(ALICE).into_iter().find(|m| {
            m.to_string().contains(&id2) && m.to_string().contains("has ended") && !has_buttons(m)
        })
    })
    .await;
    assert!(closed.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choosing_a_runbook_in_the_modal_previews_its_approvers() {
    let stages = two_stages(("Leads", r#"["S0FINLEADS"]"#), ("Owner", r#"["owner"]"#));
    let lonely = rb(
        "lonely",
        "approvers = [\"U0ALICE\"]\nrequired = 1\n",
        "",
        "",
    );
    let app = TestApp::spawn_with(
        Setup::default()
            .only_runbook(
                "payroll",
                &rb("payroll", "", "", "").replace("[approval]\n", &stages),
            )
            .with_runbook("lonely", &lonely),
    )
    .await;
    app.slack.set_usergroup("S0FINLEADS", &[CAROL, DAVE]);
    app.slash(ALICE, "").await;
    let opened = app.slack.wait_for("views.open", T, |_| true).await;
    let view_id = opened.answered["view"]["id"].as_str().unwrap().to_string();
    let select = |runbook: &str| {
        json!({
            "type": "block_actions",
            "user": {"id": ALICE},
            "container": {"type": "view", "view_id": view_id},
            "view": {"id": view_id, "hash": opened.answered["view"]["hash"], "callback_id": "access_request", "state": {"values": {}}},
            "actions": [{"action_id": "runbook_select", "block_id": "runbook", "type": "static_select", "selected_option": {"value": runbook}}]
        })
    };
    assert_eq!(app.interact(&select("payroll")).await.status(), 200);
    let update = app
        .slack
        .wait_for("views.update", T, |c| {
            c.body["view"].to_string().contains("Stage 2")
        })
        .await;
    let preview = update.body["view"].to_string();
    for part in [
        "Stage 1: Leads",
        "<@U0CAROL>",
        "<@U0DAVE>",
        "Stage 2: Owner",
        "<@U0OWNER>",
        "default 1 hour",
        "at most 2 hours",
        "optional",
    ] {
        assert!(preview.contains(part), "preview lacks {part}: {preview}");
    }
    // A runbook only the requester could approve says so before submit.
    let hash = app.slack.views().last().unwrap()["hash"].clone();
    let mut p = select("lonely");
    p["view"]["hash"] = hash;
    app.interact(&p).await;
    let update = app
        .slack
        .wait_for("views.update", T, |c| {
            c.body["view"].to_string().contains("never be approved")
        })
        .await;
    assert!(update.body["view"].to_string().contains("nobody but you"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extended_grant_is_warned_before_its_new_end() {
    let approval = "approvers = [\"U0BOB\"]\nrequired = 1\n[[approval.auto_approve]]\nname = \"on-call\"\nusers = [\"U0DAVE\"]\nmax_duration = \"30m\"\n";
    let app = TestApp::spawn_with(
        Setup::default()
            .only_runbook("payroll", &rb("payroll", approval, "", ""))
            .env("ACCESSBOT_EXPIRY_WARNING", "2s"),
    )
    .await;
    let answer = app.slash(DAVE, "request payroll 10s incident").await;
    let id = request_id_in(&answer).unwrap();
    app.wait_done(&format!("grant {id}"), T).await;
    app.wait_for_status(DAVE, &id, "active", T).await;
    let extended = app.slash(DAVE, &format!("extend {id} 5s")).await;
    assert!(extended.contains("Extended by 5 seconds"), "{extended}");
    // The warning comes 2s before the new end (13s after the grant), not never.
    app.wait_dm(
        DAVE,
        &["ends at", "Extend", "Release now"],
        Duration::from_secs(20),
    )
    .await;
    // Count once no more warning can come: the access has ended and every
    // message about it was sent. Posts are recorded in the order they came.
    app.wait_audit(&["Access revoked", &id], T).await;
    app.wait_outbox_empty(T).await;
    let posts: Vec<String> = app
        .slack
        .calls("chat.postMessage")
        .iter()
        .filter(|c| c.body["channel"] == format!("D{DAVE}"))
        .map(|c| c.body.to_string())
        .collect();
    let warnings: Vec<usize> = (0..posts.len())
        .filter(|&i| posts[i].contains("ends at"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning, for the new end: {posts:#?}"
    );
    let ended = posts
        .iter()
        .position(|m| m.contains("has ended"))
        .unwrap_or_else(|| panic!("no end notice: {posts:#?}"));
    assert!(
        warnings[0] < ended,
        "the warning came after the end: {posts:#?}"
    );
}

/// Every stage gets its own reminder and escalation: a second stage whose
/// approver is away is not left waiting because the first stage used up
/// the timers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stage_is_reminded_and_escalated_on_its_own_clock() {
    let stages = format!(
        "remind_after = \"1s\"\nescalate_after = \"2s\"\napproval_timeout = \"1h\"\nfallback_approvers = [\"U0CAROL\", \"U0DAVE\"]\n{}",
        two_stages(("Lead", r#"["U0BOB"]"#), ("Owner", r#"["owner"]"#))
    );
    let app = TestApp::spawn_with(
        Setup::default().only_runbook("payroll", &rb("payroll", &stages, "", "")),
    )
    .await;
    let id = app.request(ALICE, "payroll").await;
    // Stage 1 nobody answers: reminder, then the fallback approvers.
    app.wait_dm(BOB, &[&id, "Reminder"], T).await;
    app.wait_dm(CAROL, &[&id, "Escalated", "Approve"], T).await;
    app.press(CAROL, "approve", &id).await;
    app.wait_audit(&["Stage approved", &id], T).await;
    // Stage 2 gets its own reminder and escalation.
    app.wait_dm(OWNER, &[&id, "Reminder"], T).await;
    let escalations = || {
        app.audit_texts()
            .iter()
            .filter(|t| t.contains("*Escalated*") && t.contains(&id))
            .count()
    };
    wait_until(T, || (escalations() == 2).then_some(()))
        .await
        .expect("stage 2 escalated");
    app.press(DAVE, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
}

/// An extension goes through the same stages as the request: the lead's
/// approval alone does not extend a grant the owner must also approve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_goes_through_every_stage_again() {
    let stages = two_stages(("Lead", r#"["U0BOB"]"#), ("Owner", r#"["owner"]"#));
    let app = TestApp::spawn_with(Setup::default().only_runbook(
        "payroll",
        &rb("payroll", "", "", "max_total = \"3h\"").replace("[approval]\n", &stages),
    ))
    .await;
    let id = app.request(ALICE, "payroll 1h").await;
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_dm(OWNER, &[&id, "Approve"], T).await;
    app.press(OWNER, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
    app.wait_for_status(ALICE, &id, "active", T).await;

    let asked = app.slash(ALICE, &format!("extend {id} 1h")).await;
    assert!(asked.contains("Asked the approvers"), "{asked}");
    app.wait_dm(BOB, &[&id, "Extension request"], T).await;
    // The owner may not jump the queue.
    app.press(OWNER, "extension_approve", &id).await;
    app.wait_ephemeral(OWNER, "not an approver of the current stage", T)
        .await;
    app.press(BOB, "extension_approve", &id).await;
    app.wait_audit(&["Extension stage approved", &id], T).await;
    let status = app.slash(ALICE, "status").await;
    assert!(
        !status.contains("2 hours"),
        "extended after one stage: {status}"
    );
    app.wait_dm(OWNER, &[&id, "Extension request"], T).await;
    // Bob approved once; he cannot approve the owner's stage too.
    app.press(BOB, "extension_approve", &id).await;
    app.wait_ephemeral(BOB, "already approved", T).await;
    app.press(OWNER, "extension_approve", &id).await;
    app.wait_audit(&["Access extended", &id, "<@U0BOB>, <@U0OWNER>"], T)
        .await;
    app.wait_dm(ALICE, &["Extension of 1 hour approved"], T)
        .await;
}

/// Access that ends while an extension is waiting closes the extension:
/// the approvers' messages say so and a late click changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_still_waiting_when_access_ends_is_closed() {
    let app = TestApp::spawn_with(Setup::default().only_runbook(
        "payroll",
        &rb(
            "payroll",
            "approvers = [\"U0BOB\"]\nrequired = 1\n",
            "",
            "max_total = \"3h\"",
        ),
    ))
    .await;
    let id = app.request(ALICE, "payroll 1h").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_done(&format!("grant {id}"), T).await;
    app.wait_for_status(ALICE, &id, "active", T).await;
    let asked = app.slash(ALICE, &format!("extend {id} 1h")).await;
    assert!(asked.contains("Asked the approvers"), "{asked}");
    app.wait_dm(BOB, &[&id, "Extension request"], T).await;
    app.press(ALICE, "release", &id).await;
    app.wait_done(&format!("revoke {id}"), T).await;
    let closed = wait_until(T, || {
        app.dms(BOB).into_iter().find(|m| {
            m.to_string()
                .contains("ended before the extension was decided")
                && !has_buttons(m)
        })
    })
    .await;
    assert!(closed.is_some(), "{:#?}", app.dms(BOB));
    app.press(BOB, "extension_approve", &id).await;
    app.wait_ephemeral(BOB, "not active", T).await;
    app.wait_outbox_empty(T).await;
    let log = app.audit_texts();
    assert!(
        !log.iter()
            .any(|t| t.contains("*Access extended*") || t.contains("*Extension refused*")),
        "{log:?}"
    );
}
