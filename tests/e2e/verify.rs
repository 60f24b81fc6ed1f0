//! Verified revoke (issue 11): after a revoke the target is read back. A
//! revoke Slack accepted but did not carry out (the fake ignores one
//! `usergroups.users.update`) is caught, reported to the audit channel as
//! still present, retried with backoff until the person is gone, and then
//! recorded as verified, across a restart; the last member of a group is
//! named, not removed.

use std::time::Duration;

use serde_json::Value;

use super::overlap::{granted, group_runbook, GROUP};
use crate::support::*;

const T: Duration = Duration::from_secs(15);

fn kinds_of(log: &[Value], id: &str) -> Vec<String> {
    log.iter()
        .filter(|e| e["request_id"] == id)
        .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_that_left_the_member_in_place_is_caught_retried_and_reported() {
    let mut app = TestApp::spawn_with(
        Setup::default().only_runbook("billing-group", &group_runbook("billing-group")),
    )
    .await;
    app.slack.set_usergroup(GROUP, &[OWNER]);
    let id = granted(&app, ALICE, "billing-group").await;
    assert_eq!(app.slack.usergroup_members(GROUP), [OWNER, ALICE]);

    app.slack.ignore_next("usergroups.users.update", 1);
    app.slash(ALICE, &format!("revoke {id}")).await;
    let still = app.wait_audit(&["still holds the access", &id], T).await;
    assert!(still.contains("revoking again"), "{still}");
    // The retry is stored: a bot killed now carries on after its restart.
    app.restart().await;
    app.wait_audit(&["access of <@U0ALICE> revoked", &id], T)
        .await;
    assert_eq!(app.slack.usergroup_members(GROUP), [OWNER]);

    let log = app.audit_log().await;
    let kinds = kinds_of(&log, &id);
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("no {k} event: {kinds:?}"))
    };
    assert!(at("revoke_unverified") < at("revoke_verified"), "{kinds:?}");
    assert!(at("revoke_verified") < at("revoked"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| *k == "revoke_verified").count(),
        1,
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_member_of_a_group_is_named_and_left_for_a_person() {
    let app = TestApp::spawn_with(
        Setup::default().only_runbook("billing-group", &group_runbook("billing-group")),
    )
    .await;
    app.slack.set_usergroup(GROUP, &[OWNER]);
    let id = granted(&app, ALICE, "billing-group").await;
    // Someone took the permanent member out meanwhile.
    app.slack.set_usergroup(GROUP, &[ALICE]);
    app.slash(ALICE, &format!("revoke {id}")).await;
    app.wait_for_status(ALICE, &id, "needs attention", T).await;
    let notice = app.wait_audit(&[&id, "is the last member"], T).await;
    assert!(notice.contains("<@U0ALICE>"), "{notice}");
    assert!(notice.contains("Slack cannot empty a group"), "{notice}");
    assert_eq!(app.slack.usergroup_members(GROUP), [ALICE]);
}
