//! The App Home tab: published when a person opens it and again whenever
//! something that concerns them changes (through the outbox); its buttons
//! act with the same checks as the DM buttons; Request opens the modal
//! preset to the runbook; the security group's section is shown to its
//! members only. The Block Kit limits for a person with 30 grants and 40
//! approvals are checked beside the builder (`src/slack/home.rs`); here the
//! fake Slack checks every published view against the same limits.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const T: Duration = Duration::from_secs(10);

/// A runbook only Bob may request, to show the catalog is per person.
const BOB_ONLY: &str = r#"
id = "bob-tools"
title = "Bob's tools"
description = "Only for Bob"
system = "Tools"
owner = "U0OWNER"
instructions = "Open the tools page."

[request]
allowed = ["U0BOB"]
default_duration = "1h"
max_duration = "2h"

[approval]
approvers = ["U0CAROL"]
required = 1

[grant]
provider = "command"
grant = ["./provider.sh", "grant"]
revoke = ["./provider.sh", "revoke"]
timeout = "5s"
"#;

/// A fresh suffix for event and trigger IDs.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `user` opens the Home tab (Slack's `app_home_opened` event).
pub(super) async fn open_home(app: &TestApp, user: &str) {
    let event = json!({
        "type": "event_callback",
        "event_id": format!("Ev{}", unique()),
        "event_time": chrono::Utc::now().timestamp(),
        "event": {"type": "app_home_opened", "user": user, "tab": "home", "channel": format!("D{user}")},
    })
    .to_string();
    let r = app
        .post_signed("/slack/events", "application/json", &event, 0)
        .await;
    assert_eq!(r.status(), 200);
}

/// Waits until the Home tab last published for `user` satisfies `pred`.
pub(super) async fn wait_home(
    app: &TestApp,
    user: &str,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> Value {
    wait_until(T, || {
        app.slack.home_view(user).filter(|v| pred(&v.to_string()))
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{user}'s Home tab never showed {what}; last published: {:#}\nlogs:\n{}",
            app.slack.home_view(user).unwrap_or_default(),
            app.logs()
        )
    })
}

/// The button in `view` whose action_id starts with `<action>:` and whose
/// value is `value`.
pub(super) fn home_button(view: &Value, action: &str, value: &str) -> Option<Value> {
    let blocks = view["blocks"].as_array()?;
    blocks
        .iter()
        .flat_map(|b| {
            let elements = b["elements"].as_array().cloned().unwrap_or_default();
            elements.into_iter().chain(b.get("accessory").cloned())
        })
        .find(|e| {
            e["type"] == "button"
                && e["value"] == value
                && e["action_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(&format!("{action}:")))
        })
}

/// Presses `button` (from a Home view) as `user`, as Slack sends a press
/// in the Home tab: the container is the view, there is no channel.
pub(super) async fn press_in_home(app: &TestApp, user: &str, button: &Value) -> String {
    let trigger = format!("trig.{}", unique());
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": "x", "team_id": "T0FAKE"},
        "api_app_id": "A0ACCESS",
        "team": {"id": "T0FAKE", "domain": "example"},
        "container": {"type": "view", "view_id": "V0HOME"},
        "trigger_id": trigger,
        "view": {"id": "V0HOME", "type": "home", "hash": "h0"},
        "actions": [{
            "action_id": button["action_id"], "block_id": "b", "type": "button",
            "value": button["value"], "action_ts": format!("{}.1", chrono::Utc::now().timestamp())
        }]
    });
    let r = app.interact(&payload).await;
    assert_eq!(r.status(), 200);
    trigger
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_is_published_on_open_and_follows_the_request_through_its_life() {
    let app = TestApp::spawn_with(Setup::default().with_runbook("bob-tools", BOB_ONLY)).await;
    open_home(&app, ALICE).await;
    let empty = wait_home(&app, ALICE, "the empty Home", |v| {
        v.contains("You hold no access right now")
    })
    .await;
    let t = empty.to_string();
    assert!(t.contains("Billing portal admin"), "{t}");
    assert!(!t.contains("Bob's tools"), "Alice may not request it: {t}");
    assert!(home_button(&empty, "home_request", "billing-admin").is_some());
    assert!(!t.contains("Security overview"), "{t}");

    // A new request shows in the requester's Home with Cancel, and in each
    // approver's with Approve / Deny, without either opening it again.
    let id = app
        .request(ALICE, "billing-admin 1h month-end refunds")
        .await;
    let alice = wait_home(&app, ALICE, "the pending request", |v| v.contains(&id)).await;
    assert!(home_button(&alice, "cancel", &id).is_some(), "{alice:#}");
    for approver in [BOB, CAROL] {
        let home = wait_home(&app, approver, "the approval waiting", |v| v.contains(&id)).await;
        assert!(home_button(&home, "approve", &id).is_some(), "{home:#}");
        assert!(home_button(&home, "deny", &id).is_some(), "{home:#}");
        assert!(home.to_string().contains("month-end refunds"));
    }

    // Bob approves from his Home tab: the grant runs, and every Home follows.
    let approve = home_button(&app.slack.home_view(BOB).unwrap(), "approve", &id).unwrap();
    press_in_home(&app, BOB, &approve).await;
    app.wait_done(&format!("grant {id}"), T).await;
    app.wait_for_status(ALICE, &id, "active", T).await;
    let granted = wait_home(&app, ALICE, "the active grant", |v| {
        v.contains("Release now") && v.contains(&id)
    })
    .await;
    assert!(home_button(&granted, "release", &id).is_some());
    assert!(home_button(&granted, "extend", &id).is_some());
    assert!(granted.to_string().contains("left)"), "{granted:#}");
    assert!(home_button(&granted, "cancel", &id).is_none());
    for approver in [BOB, CAROL] {
        wait_home(&app, approver, "the approval gone", |v| !v.contains(&id)).await;
    }
    app.wait_audit(&["Approved", &id], T).await;

    // Release now from the Home tab ends it, and the Home says so.
    let release = home_button(&granted, "release", &id).unwrap();
    press_in_home(&app, ALICE, &release).await;
    app.wait_done(&format!("revoke {id}"), T).await;
    wait_home(&app, ALICE, "no access any more", |v| {
        v.contains("You hold no access right now") && !v.contains(&id)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_from_home_is_refused_to_a_non_approver() {
    let app = TestApp::spawn().await;
    let id = app.request(ALICE, "billing-admin 1h refunds").await;
    let bob_home = wait_home(&app, BOB, "the approval", |v| v.contains(&id)).await;
    let approve = home_button(&bob_home, "approve", &id).unwrap();
    // Mallory presses the same button (as a forged press would): refused.
    press_in_home(&app, MALLORY, &approve).await;
    app.wait_dm(MALLORY, &["not an approver", &id], T).await;
    assert_eq!(
        app.status_of(ALICE, &id).await.as_deref(),
        Some("pending approval")
    );
    // Mallory's own Home never offered it.
    open_home(&app, MALLORY).await;
    let home = wait_home(&app, MALLORY, "her Home", |v| v.contains("accessbot")).await;
    assert!(home_button(&home, "approve", &id).is_none(), "{home:#}");
    // The real approver still can.
    press_in_home(&app, BOB, &approve).await;
    app.wait_done(&format!("grant {id}"), T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_opens_the_modal_preset_to_the_runbook() {
    let app = TestApp::spawn_with(Setup::default().with_runbook("bob-tools", BOB_ONLY)).await;
    open_home(&app, ALICE).await;
    let home = wait_home(&app, ALICE, "the catalog", |v| {
        v.contains("Billing portal admin")
    })
    .await;
    let request = home_button(&home, "home_request", "billing-admin").unwrap();
    let trigger = press_in_home(&app, ALICE, &request).await;
    let opened = app
        .slack
        .wait_for("views.open", T, |c| {
            c.body["trigger_id"] == trigger.as_str()
        })
        .await;
    let view: Value = match &opened.body["view"] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        v => v.clone(),
    };
    assert_eq!(view["callback_id"], "access_request");
    let runbook_block = &view["blocks"][0];
    assert_eq!(
        runbook_block["element"]["initial_option"]["value"], "billing-admin",
        "{view:#}"
    );
    // The preview of who approves follows in the same modal.
    let updated = app
        .slack
        .wait_for("views.update", T, |c| {
            c.body.to_string().contains("Approvers")
        })
        .await;
    assert!(
        updated.body.to_string().contains("U0BOB"),
        "{:#}",
        updated.body
    );

    // A runbook the person may not request opens nothing and says why.
    let forged = json!({"action_id": "home_request:bob-tools", "value": "bob-tools"});
    let trigger = press_in_home(&app, ALICE, &forged).await;
    app.wait_dm(ALICE, &["You cannot request", "bob-tools"], T)
        .await;
    app.wait_outbox_empty(T).await;
    assert!(app
        .slack
        .calls("views.open")
        .iter()
        .all(|c| c.body["trigger_id"] != trigger.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_security_section_is_shown_to_members_only() {
    let incident = BILLING
        .replace("id = \"billing-admin\"", "id = \"incident\"")
        .replace("Billing portal admin", "Production break-glass")
        .replace("owner = ", "break_glass = true\nowner = ");
    let app = TestApp::spawn_with(
        Setup::default()
            .with_runbook("incident", &incident)
            .env("ACCESSBOT_SECURITY_GROUP", "S0SECURITY"),
    )
    .await;
    app.slack.set_usergroup("S0SECURITY", &[DAVE]);
    open_home(&app, DAVE).await;
    wait_home(&app, DAVE, "an empty overview", |v| {
        v.contains("Security overview") && v.contains("Elevated access now:* nobody")
    })
    .await;
    let normal = app.request(ALICE, "billing-admin 1h refunds").await;
    app.press(BOB, "approve", &normal).await;
    app.wait_for_status(ALICE, &normal, "active", T).await;
    let glass = app.request(CAROL, "incident 1h sev1 outage").await;
    app.wait_for_status(CAROL, &glass, "active", T).await;

    // Dave's Home follows without him opening it again.
    let dave = wait_home(&app, DAVE, "the security overview", |v| {
        v.contains("Security overview") && v.contains(&normal) && v.contains(&glass)
    })
    .await;
    let t = dave.to_string();
    assert!(t.contains("Elevated access now (2)"), "{t}");
    assert!(t.contains("Break-glass not yet reviewed (1)"), "{t}");
    assert!(t.contains("<@U0ALICE>") && t.contains("<@U0CAROL>"), "{t}");

    // Alice is not a member: her Home shows her own access only.
    open_home(&app, ALICE).await;
    let alice = wait_home(&app, ALICE, "her grant", |v| v.contains(&normal)).await;
    let t = alice.to_string();
    assert!(!t.contains("Security overview"), "{t}");
    assert!(!t.contains(&glass), "{t}");

    // Once reviewed, the break-glass grant leaves the list.
    app.press(BOB, "review_ack", &glass).await;
    app.wait_audit(&["acknowledged", &glass], T).await;
    wait_home(&app, DAVE, "no unreviewed break-glass", |v| {
        v.contains("Break-glass not yet reviewed:* none")
    })
    .await;
}

/// Changes that come together publish the Home once: every refresh queued
/// before a render started is covered by it. Slack is down while Alice
/// makes two requests and cancels one, so all three refreshes wait; once
/// Slack is back, one publish shows the state after all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_changes_publishes_the_home_once() {
    let reports = BILLING
        .replace("id = \"billing-admin\"", "id = \"billing-reports\"")
        .replace("Billing portal admin", "Billing reports");
    let app = TestApp::spawn_with(Setup::default().with_runbook("billing-reports", &reports)).await;
    open_home(&app, ALICE).await;
    wait_home(&app, ALICE, "the first Home", |v| {
        v.contains("Billing reports")
    })
    .await;
    app.wait_outbox_empty(T).await;
    let published = || {
        app.slack
            .calls("views.publish")
            .iter()
            .filter(|c| c.body["user_id"] == ALICE && c.answered["ok"] == true)
            .count()
    };
    assert_eq!(published(), 1);

    app.slack.set_down(true);
    let first = app.request(ALICE, "billing-admin 1h one").await;
    let second = app.request(ALICE, "billing-reports 1h two").await;
    let cancelled = app.slash(ALICE, &format!("cancel {first}")).await;
    assert!(cancelled.contains("is cancelled"), "{cancelled}");
    app.slack.set_down(false);

    wait_home(&app, ALICE, "the state after the burst", |v| {
        v.contains(&second) && !v.contains(&first)
    })
    .await;
    app.wait_outbox_empty(T).await;
    assert_eq!(published(), 2, "one publish for the three changes");
}
