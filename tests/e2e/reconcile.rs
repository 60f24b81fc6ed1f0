//! `accessbot reconcile [--fix]` (issue 11) on the store the bot used: a
//! Slack user group membership left behind after the request ended (put
//! back by hand) is found and `--fix` removes it through the revoke path,
//! with an audit event; someone accessbot never granted is reported; exit
//! codes say whether everything matches.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use super::overlap::{granted, group_runbook, GROUP};
use crate::support::*;

const T: Duration = Duration::from_secs(15);

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The audit log of the stopped bot's store.
async fn stored_audit_log(app: &TestApp) -> Vec<Value> {
    match &app.database_url {
        Some(url) => verified_audit_log(url).await,
        None => app.sled_audit_log(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_finds_a_membership_left_behind_and_fix_removes_it() {
    let mut app = TestApp::spawn_with(
        Setup::default().only_runbook("billing-group", &group_runbook("billing-group")),
    )
    .await;
    app.slack.set_usergroup(GROUP, &[DAVE]);
    // Dave holds the access through accessbot now; Alice held it and gave it back.
    let dave = granted(&app, DAVE, "billing-group").await;
    let alice = granted(&app, ALICE, "billing-group").await;
    app.slash(ALICE, &format!("revoke {alice}")).await;
    app.wait_audit(&["access of <@U0ALICE> revoked", &alice], T)
        .await;
    assert_eq!(app.slack.usergroup_members(GROUP), [DAVE]);
    // Someone puts Alice back by hand in Slack.
    app.slack.set_usergroup(GROUP, &[DAVE, ALICE]);
    // sled is one process's: reconcile runs on the stopped bot's store.
    app.terminate().await;

    let found = app.run_cli(&["reconcile"]);
    let out = text(&found);
    assert_eq!(found.status.code(), Some(1), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains(ALICE))
        .unwrap_or_else(|| panic!("Alice's access is not reported:\n{out}"));
    assert!(line.starts_with("billing-group"), "{line}");
    assert!(line.contains(&alice), "{line}");
    assert!(line.contains("--fix"), "{line}");
    assert!(!out.contains(DAVE), "Dave's access is covered:\n{out}");
    assert_eq!(
        app.slack.usergroup_members(GROUP),
        [DAVE, ALICE],
        "reconcile without --fix changed the group"
    );

    let fixed = app.run_cli(&["reconcile", "--fix"]);
    let out = text(&fixed);
    assert_eq!(fixed.status.code(), Some(0), "{out}");
    assert!(out.contains("fixed: revoked"), "{out}");
    assert_eq!(app.slack.usergroup_members(GROUP), [DAVE]);

    let again = app.run_cli(&["reconcile"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));

    // A member nobody asked accessbot for is reported, not removed.
    app.slack.set_usergroup(GROUP, &[DAVE, MALLORY]);
    let stranger = app.run_cli(&["reconcile", "--fix"]);
    let out = text(&stranger);
    assert_eq!(stranger.status.code(), Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(MALLORY) && l.contains("never granted")),
        "{out}"
    );
    assert_eq!(app.slack.usergroup_members(GROUP), [DAVE, MALLORY]);

    let log = stored_audit_log(&app).await;
    let fixes: Vec<&Value> = log
        .iter()
        .filter(|e| e["kind"] == "reconcile_revoked")
        .collect();
    assert_eq!(fixes.len(), 1, "{fixes:#?}");
    assert_eq!(fixes[0]["request_id"], alice.as_str());
    assert_eq!(fixes[0]["subject"], ALICE);
    assert!(log
        .iter()
        .all(|e| e["request_id"] != dave.as_str() || e["kind"] != "reconcile_revoked"));
}

/// The same on a PostgreSQL role: a role granted again by hand after the
/// revoke is found by reading `pg_auth_members` back, and `--fix` revokes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_finds_a_database_role_left_behind_and_fix_revokes_it() {
    use super::identity::{finance_database, finance_runbook, login_holds, URL_ENV};
    use sqlx::{Connection, Executor};

    let (url, role, login) = finance_database().await;
    let mut app = TestApp::spawn_with(
        Setup::default()
            .only_runbook("finance-reporting", &finance_runbook(&role))
            .env(URL_ENV, &url)
            .config(&format!("[identities]\nU0ALICE = \"{login}\"\n")),
    )
    .await;
    let id = granted(&app, ALICE, "finance-reporting").await;
    app.slash(ALICE, &format!("revoke {id}")).await;
    app.wait_audit(&["access of <@U0ALICE> revoked", &id], T)
        .await;
    assert!(!login_holds(&url, &login, &role).await);
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "GRANT \"{role}\" TO \"{login}\""
        )))
        .await
        .unwrap();
    app.terminate().await;

    let found = app.run_cli(&["reconcile"]);
    let out = text(&found);
    assert_eq!(found.status.code(), Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("finance-reporting") && l.contains(ALICE) && l.contains(&id)),
        "{out}"
    );
    assert!(!out.contains(&url), "the database URL was printed:\n{out}");

    let fixed = app.run_cli(&["reconcile", "--fix"]);
    let out = text(&fixed);
    assert_eq!(fixed.status.code(), Some(0), "{out}");
    assert!(!login_holds(&url, &login, &role).await);
    let log = stored_audit_log(&app).await;
    assert!(
        log.iter()
            .any(|e| e["kind"] == "reconcile_revoked" && e["request_id"] == id.as_str()),
        "{log:#?}"
    );
}

/// A data directory that holds no database is refused (exit 2), never read
/// as an empty store in which everything would match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_refuses_a_directory_without_a_database() {
    let mut app = TestApp::spawn_with(
        Setup::default().only_runbook("billing-group", &group_runbook("billing-group")),
    )
    .await;
    app.terminate().await;
    let missing = app.root.path().join("no-such-data");
    app.remove_env("ACCESSBOT_DATABASE_URL");
    app.set_env("ACCESSBOT_DATA_DIR", &missing.display().to_string());
    let out = app.run_cli(&["reconcile"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no-such-data"), "{}", text(&out));
    assert!(!missing.exists(), "reconcile created a database");
}
