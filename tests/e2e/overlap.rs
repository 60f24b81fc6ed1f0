//! Grants counted by the access they give, not by runbook (issue 11): two
//! runbooks onto one Slack user group overlap, so the first to end leaves
//! the person in the group and the last one out removes them; and two
//! grants onto one group at the same moment both end up members (the
//! provider serialises its read-modify-write of the member list per group).

use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(15);
pub const GROUP: &str = "S0BILLADMS";

/// A runbook `id` whose access is membership of [`GROUP`], approved by Bob
/// or Carol, 1h by default.
pub fn group_runbook(id: &str) -> String {
    let grant_at = BILLING.find("[grant]").unwrap();
    format!(
        "{}[grant]\nprovider = \"slack_usergroup\"\nusergroup = \"{GROUP}\"\n",
        BILLING[..grant_at]
            .replace("id = \"billing-admin\"", &format!("id = \"{id}\""))
            .replace("default_duration = \"3s\"", "default_duration = \"1h\"")
    )
}

/// Requests `runbook` for `user`, has Bob approve it, waits until active.
pub async fn granted(app: &TestApp, user: &str, runbook: &str) -> String {
    let id = app
        .request(user, &format!("{runbook} 1h month-end close"))
        .await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_for_status(user, &id, "active", T).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runbooks_onto_one_group_the_last_one_out_revokes() {
    let app = TestApp::spawn_with(
        Setup::default()
            .only_runbook("billing-group", &group_runbook("billing-group"))
            .with_runbook("billing-group-2", &group_runbook("billing-group-2")),
    )
    .await;
    app.slack.set_usergroup(GROUP, &[OWNER]);
    let first = granted(&app, ALICE, "billing-group").await;
    let second = granted(&app, ALICE, "billing-group-2").await;
    assert_eq!(app.slack.usergroup_members(GROUP), [OWNER, ALICE]);

    app.slash(ALICE, &format!("revoke {first}")).await;
    let line = app
        .wait_audit(&["access of <@U0ALICE> revoked", &first], T)
        .await;
    assert!(
        line.contains(&format!("continues under request {second}")),
        "{line}"
    );
    assert_eq!(
        app.slack.usergroup_members(GROUP),
        [OWNER, ALICE],
        "the first grant to end took away access the other still covers"
    );

    app.slash(ALICE, &format!("revoke {second}")).await;
    let last = app
        .wait_audit(
            &[
                "access of <@U0ALICE> revoked",
                &format!("Request ID `{second}`"),
            ],
            T,
        )
        .await;
    assert!(!last.contains("continues"), "{last}");
    assert_eq!(app.slack.usergroup_members(GROUP), [OWNER]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_grants_onto_one_group_at_once_both_end_up_members() {
    let app = TestApp::spawn_with(
        Setup::default().only_runbook("billing-group", &group_runbook("billing-group")),
    )
    .await;
    app.slack.set_usergroup(GROUP, &[OWNER]);
    let alice = app.request(ALICE, "billing-group 1h month-end close").await;
    let dave = app.request(DAVE, "billing-group 1h month-end close").await;
    app.wait_dm(BOB, &[&alice], T).await;
    app.wait_dm(BOB, &[&dave], T).await;
    // Each read of the member list answers late, so the two grants'
    // read-modify-write cycles overlap unless the provider serialises them.
    app.slack
        .set_delay("usergroups.users.list", Duration::from_millis(400));
    tokio::join!(
        app.press(BOB, "approve", &alice),
        app.press(BOB, "approve", &dave)
    );
    app.wait_for_status(ALICE, &alice, "active", T).await;
    app.wait_for_status(DAVE, &dave, "active", T).await;
    let mut members = app.slack.usergroup_members(GROUP);
    members.sort();
    assert_eq!(members, [ALICE, DAVE, OWNER]);
}
