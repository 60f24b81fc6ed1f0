//! The directory providers through the real binary: a runbook whose
//! `[grant]` points `okta`, `google_workspace` or `entra_id` at a fake of
//! that service (`support/fake_okta.rs`, `fake_google.rs`, `fake_entra.rs`),
//! a request approved in Slack, and the fake directory's group holding the
//! requester while access lasts and not after; two runbooks onto one group
//! overlap; a removal the directory ignored is caught by reading it back;
//! `accessbot reconcile` reads a group back. The requester's identity is
//! their Slack email (alice@example.com in the fake Slack).

use std::time::Duration;

use crate::support::fake_entra::FakeEntra;
use crate::support::fake_google::{self, FakeGoogle};
use crate::support::fake_okta::FakeOkta;
use crate::support::*;

const T: Duration = Duration::from_secs(15);
const ALICE_EMAIL: &str = "alice@example.com";

/// A runbook granting through `grant` (the `[grant]` table's lines).
fn directory_runbook(id: &str, title: &str, grant: &str) -> String {
    format!(
        r#"
id = "{id}"
title = "{title}"
description = "Membership of a directory group"
system = "{title}"
owner = "U0OWNER"
instructions = "Sign in again to pick up the new group."

[request]
allowed = ["*"]
default_duration = "1h"
max_duration = "1h"
require_reason = true

[approval]
approvers = ["U0BOB", "U0CAROL"]
required = 1
approval_timeout = "1h"

[grant]
{grant}
"#
    )
}

/// Requests `runbook` as Alice for `duration` and has Bob approve it.
async fn approved(app: &TestApp, runbook: &str, duration: &str) -> String {
    let id = app
        .request(ALICE, &format!("{runbook} {duration} month-end close"))
        .await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_adds_the_requester_to_the_group_and_removes_them_and_their_sessions() {
    const TOKEN: &str = "00e2e-okta-token-never-logged";
    const GROUP: &str = "00g1billingportal01";
    let okta = FakeOkta::start(TOKEN).await;
    okta.add_user(ALICE_EMAIL);
    okta.add_group(GROUP);
    let grant = format!(
        "provider = \"okta\"\norg_url = \"{}\"\ntoken_env = \"OKTA_API_TOKEN\"\ngroup_id = \"{GROUP}\"\nend_sessions = true",
        okta.url()
    );
    let app = TestApp::spawn_with(
        Setup::default()
            .only_runbook(
                "billing-portal-admin",
                &directory_runbook("billing-portal-admin", "Billing portal admin", &grant),
            )
            .env("OKTA_API_TOKEN", TOKEN),
    )
    .await;

    let id = approved(&app, "billing-portal-admin", "1h").await;
    app.wait_for_status(ALICE, &id, "active", T).await;
    assert_eq!(okta.members(GROUP), [ALICE_EMAIL]);

    let answer = app.slash(ALICE, &format!("revoke {id}")).await;
    assert!(answer.contains("Revoking now"), "{answer}");
    app.wait_audit(&["Access revoked", &id], T).await;
    assert_eq!(okta.members(GROUP), Vec::<String>::new());
    assert_eq!(okta.sessions_ended(), [ALICE_EMAIL]);
    for call in okta.calls() {
        assert_eq!(
            call.authorization.as_deref(),
            Some(format!("SSWS {TOKEN}").as_str()),
            "{}",
            call.line()
        );
    }
    assert!(!app.logs().contains(TOKEN), "the API token reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_workspace_reports_googles_refusal_then_grants_and_revokes_on_one_token() {
    const SERVICE_ACCOUNT: &str = "accessbot@acme-accessbot.iam.gserviceaccount.com";
    const ADMIN: &str = "accessbot-admin@acme.com";
    const GROUP: &str = "payroll-exports@acme.com";
    let google = FakeGoogle::start(SERVICE_ACCOUNT, ADMIN).await;
    google.add_user(ALICE_EMAIL);
    google.add_group(GROUP);
    let grant = format!(
        "provider = \"google_workspace\"\ngroup = \"{GROUP}\"\ncredentials_env = \"GOOGLE_WORKSPACE_CREDENTIALS\"\nadmin_subject = \"{ADMIN}\"\ntoken_url = \"{}\"\ndirectory_url = \"{}\"",
        google.token_url(),
        google.url()
    );
    let app = TestApp::spawn_with(
        Setup::default()
            .only_runbook(
                "payroll-exports",
                &directory_runbook("payroll-exports", "Payroll exports", &grant),
            )
            .env(
                "GOOGLE_WORKSPACE_CREDENTIALS",
                &fake_google::service_account_json(SERVICE_ACCOUNT),
            ),
    )
    .await;

    // Google refuses the first add: the audit channel hears Google's words.
    google.fail_next("POST", "/members", 1, 403);
    let refused = approved(&app, "payroll-exports", "1h").await;
    app.wait_audit(
        &[
            "Grant failed",
            &refused,
            "HTTP 403: Not Authorized to access this resource/api",
        ],
        T,
    )
    .await;
    app.wait_audit(&["Access revoked", &refused], T).await;
    assert!(google.members(GROUP).is_empty());

    let id = approved(&app, "payroll-exports", "1h").await;
    app.wait_for_status(ALICE, &id, "active", T).await;
    assert_eq!(
        google.members(GROUP).get(ALICE_EMAIL).map(String::as_str),
        Some("MEMBER")
    );
    let claims = google.last_claims().expect("a signed JWT was accepted");
    assert_eq!(claims["iss"], SERVICE_ACCOUNT);
    assert_eq!(claims["sub"], ADMIN);

    app.slash(ALICE, &format!("revoke {id}")).await;
    app.wait_audit(&["Access revoked", &id], T).await;
    assert!(google.members(GROUP).is_empty());
    // Two grants and two revokes, one token.
    assert_eq!(google.token_requests(), 1);
    assert!(
        !app.logs().contains("BEGIN PRIVATE KEY") && !app.logs().contains("ya29."),
        "a secret reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_id_revokes_on_time_waiting_as_long_as_graphs_retry_after_says() {
    const TENANT: &str = "8f3c2a10-1b2c-4d5e-9f60-718293a4b5c6";
    const CLIENT: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
    const SECRET: &str = "e2e~entra~secret~never~logged";
    const GROUP: &str = "5d2e6f70-8192-4a3b-bc4d-5e6f708192a3";
    let entra = FakeEntra::start(TENANT, CLIENT, SECRET).await;
    entra.add_user(ALICE_EMAIL);
    entra.add_group(GROUP);
    let grant = format!(
        "provider = \"entra_id\"\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT}\"\nclient_secret_env = \"ENTRA_CLIENT_SECRET\"\ngroup_id = \"{GROUP}\"\nlogin_url = \"{url}\"\ngraph_url = \"{url}\"\nend_sessions = true",
        url = entra.url()
    );
    let app = TestApp::spawn_with(
        Setup::default()
            .only_runbook(
                "hr-system-admin",
                &directory_runbook("hr-system-admin", "HR system admin", &grant),
            )
            .env("ENTRA_CLIENT_SECRET", SECRET),
    )
    .await;

    // Longer than the bot's own backoff here (at most 2s), so a retry
    // this late is the Retry-After honoured.
    const ASKED: u64 = 4;
    entra.rate_limit_next("DELETE", "/members/", 1, ASKED);
    let id = approved(&app, "hr-system-admin", "2s").await;
    app.wait_audit(
        &[
            "Revoke failed — will retry",
            &id,
            "HTTP 429: Too many requests.",
        ],
        T,
    )
    .await;
    app.wait_audit(&["Access revoked", &id, "expired"], T).await;
    assert_eq!(entra.members(GROUP), Vec::<String>::new());
    assert_eq!(entra.sessions_revoked(), [ALICE_EMAIL]);

    let removes: Vec<_> = entra
        .calls()
        .into_iter()
        .filter(|c| c.method == "DELETE")
        .collect();
    assert_eq!(
        removes.iter().map(|c| c.status).collect::<Vec<_>>(),
        [429, 204]
    );
    let waited = removes[1].at - removes[0].at;
    assert!(
        waited >= Duration::from_secs(ASKED),
        "retried after {waited:?}, before the {ASKED}s Graph asked for"
    );
    assert_eq!(entra.token_requests(), 1);
    assert!(
        !app.logs().contains(SECRET),
        "the client secret reached the log"
    );
}

/// An `okta` runbook `id` onto [`OVERLAP_GROUP`] in `okta`.
fn okta_runbook(okta: &FakeOkta, id: &str) -> String {
    directory_runbook(
        id,
        "Billing portal admin",
        &format!(
            "provider = \"okta\"\norg_url = \"{}\"\ntoken_env = \"OKTA_API_TOKEN\"\ngroup_id = \"{OVERLAP_GROUP}\"",
            okta.url()
        ),
    )
}

const OVERLAP_GROUP: &str = "00g1billingportal02";

/// Two runbooks onto one Okta group count as one access: the first to end
/// leaves the person in the group; the last one out removes them, and a
/// removal Okta answered but did not carry out (the fake ignores one
/// DELETE) is caught by reading the group back and done again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_okta_runbooks_onto_one_group_overlap_and_an_ignored_removal_is_caught() {
    const TOKEN: &str = "00e2e-okta-overlap-token";
    let okta = FakeOkta::start(TOKEN).await;
    okta.add_user(ALICE_EMAIL);
    okta.add_group(OVERLAP_GROUP);
    let app = TestApp::spawn_with(
        Setup::default()
            .only_runbook("portal-admin", &okta_runbook(&okta, "portal-admin"))
            .with_runbook("portal-oncall", &okta_runbook(&okta, "portal-oncall"))
            .env("OKTA_API_TOKEN", TOKEN),
    )
    .await;
    let first = approved(&app, "portal-admin", "1h").await;
    app.wait_for_status(ALICE, &first, "active", T).await;
    let second = approved(&app, "portal-oncall", "1h").await;
    app.wait_for_status(ALICE, &second, "active", T).await;
    assert_eq!(okta.members(OVERLAP_GROUP), [ALICE_EMAIL]);

    app.slash(ALICE, &format!("revoke {first}")).await;
    let line = app
        .wait_audit(&["access of <@U0ALICE> revoked", &first], T)
        .await;
    assert!(
        line.contains(&format!("continues under request {second}")),
        "{line}"
    );
    assert_eq!(okta.members(OVERLAP_GROUP), [ALICE_EMAIL]);
    assert!(
        !okta.calls().iter().any(|c| c.method == "DELETE"),
        "the first grant to end removed access the other still covers"
    );

    okta.ignore_next_delete();
    app.slash(ALICE, &format!("revoke {second}")).await;
    app.wait_audit(&["still holds the access", &second], T)
        .await;
    app.wait_audit(
        &[
            "access of <@U0ALICE> revoked",
            &format!("Request ID `{second}`"),
        ],
        T,
    )
    .await;
    assert_eq!(okta.members(OVERLAP_GROUP), Vec::<String>::new());
    let deletes = okta
        .calls()
        .iter()
        .filter(|c| c.method == "DELETE" && c.path.starts_with("/api/v1/groups/"))
        .count();
    assert_eq!(deletes, 2, "the ignored removal and the one that took");
}

/// `accessbot reconcile` reads a Google group back: a membership put back
/// by hand after the request ended is found and `--fix` removes it; a
/// member accessbot never granted is reported and left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_finds_a_google_membership_left_behind_and_fix_removes_it() {
    const SERVICE_ACCOUNT: &str = "accessbot@acme-accessbot.iam.gserviceaccount.com";
    const ADMIN: &str = "accessbot-admin@acme.com";
    const GROUP: &str = "payroll-exports@acme.com";
    let google = FakeGoogle::start(SERVICE_ACCOUNT, ADMIN).await;
    google.add_user(ALICE_EMAIL);
    google.add_user("mallory@example.com");
    google.add_group(GROUP);
    let grant = format!(
        "provider = \"google_workspace\"\ngroup = \"{GROUP}\"\ncredentials_env = \"GOOGLE_WORKSPACE_CREDENTIALS\"\nadmin_subject = \"{ADMIN}\"\ntoken_url = \"{}\"\ndirectory_url = \"{}\"",
        google.token_url(),
        google.url()
    );
    let mut app = TestApp::spawn_with(
        Setup::default()
            .only_runbook(
                "payroll-exports",
                &directory_runbook("payroll-exports", "Payroll exports", &grant),
            )
            .env(
                "GOOGLE_WORKSPACE_CREDENTIALS",
                &fake_google::service_account_json(SERVICE_ACCOUNT),
            ),
    )
    .await;
    let id = approved(&app, "payroll-exports", "1h").await;
    app.wait_for_status(ALICE, &id, "active", T).await;
    app.slash(ALICE, &format!("revoke {id}")).await;
    app.wait_audit(&["access of <@U0ALICE> revoked", &id], T)
        .await;
    assert!(google.members(GROUP).is_empty());
    // Someone puts Alice back by hand.
    google.add_member(GROUP, ALICE_EMAIL);
    app.terminate().await;

    let found = app.run_cli(&["reconcile"]);
    let out = text(&found);
    assert_eq!(found.status.code(), Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("payroll-exports") && l.contains(ALICE) && l.contains(&id)),
        "{out}"
    );
    assert!(!out.contains("never granted"), "{out}");

    let fixed = app.run_cli(&["reconcile", "--fix"]);
    let out = text(&fixed);
    assert_eq!(fixed.status.code(), Some(0), "{out}");
    assert!(google.members(GROUP).is_empty());

    google.add_member(GROUP, "mallory@example.com");
    let stranger = app.run_cli(&["reconcile", "--fix"]);
    let out = text(&stranger);
    assert_eq!(stranger.status.code(), Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("mallory@example.com") && l.contains("never granted")),
        "{out}"
    );
    assert!(google.members(GROUP).contains_key("mallory@example.com"));
}

/// What a command printed, stdout and stderr together.
fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
