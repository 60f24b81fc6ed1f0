//! Who a person is in the target (issue 11), end to end with the
//! `postgres` provider on the real test PostgreSQL server: the config's
//! `[identities]` entry wins over the Slack email and becomes the login
//! that gets the role (checked by connecting as that login); a person with
//! neither an email nor an entry is refused when they ask, by command and
//! by modal, with the fix, and nothing is stored.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

use crate::support::*;

const T: Duration = Duration::from_secs(15);
pub const URL_ENV: &str = "ACCESSBOT_E2E_FINANCE_DB_URL";
const NO_EMAIL: &str = "U0NOMAIL";

static NEXT: AtomicU32 = AtomicU32::new(1);

/// A role and a login of this test's own (roles are cluster-wide), made on
/// a fresh database of the test server; returns (url, role, login).
pub async fn finance_database() -> (String, String, String) {
    let url = postgres::database().await;
    let n = format!(
        "{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let engine = match Engine::current() {
        Engine::Sled => "s",
        Engine::Postgres => "p",
    };
    let role = format!("finance_read_{engine}{n}");
    let login = format!("alice.mapped.{engine}{n}");
    let mut admin = PgConnection::connect(&url).await.unwrap();
    for sql in [
        format!("CREATE ROLE \"{role}\" NOLOGIN"),
        format!("CREATE ROLE \"{login}\" LOGIN"),
    ] {
        admin.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
    }
    (url, role, login)
}

pub fn finance_runbook(role: &str) -> String {
    let grant_at = BILLING.find("[grant]").unwrap();
    format!(
        "{}[grant]\nprovider = \"postgres\"\nurl_env = \"{URL_ENV}\"\nrole = \"{role}\"\nlogin = \"mapped\"\n",
        BILLING[..grant_at]
            .replace("id = \"billing-admin\"", "id = \"finance-reporting\"")
            .replace("default_duration = \"3s\"", "default_duration = \"1h\"")
    )
}

pub async fn login_holds(url: &str, login: &str, role: &str) -> bool {
    let mut options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    options = options.username(login);
    let mut conn = PgConnection::connect_with(&options).await.unwrap();
    sqlx::query_scalar("SELECT pg_has_role(current_user, $1, 'MEMBER')")
        .bind(role)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mapped_identity_is_the_login_that_gets_the_role() {
    let (url, role, login) = finance_database().await;
    let mut app = TestApp::spawn_with(
        Setup::default()
            .only_runbook("finance-reporting", &finance_runbook(&role))
            .env(URL_ENV, &url)
            .config(&format!("[identities]\nU0ALICE = \"{login}\"\n")),
    )
    .await;
    let id = app
        .request(ALICE, "finance-reporting 1h month-end close")
        .await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_for_status(ALICE, &id, "active", T).await;
    assert!(login_holds(&url, &login, &role).await);

    app.slash(ALICE, &format!("revoke {id}")).await;
    app.wait_audit(&["access of <@U0ALICE> revoked", &id], T)
        .await;
    assert!(!login_holds(&url, &login, &role).await);
    let log = app.audit_log().await;
    let verified = log
        .iter()
        .find(|e| e["kind"] == "revoke_verified" && e["request_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no revoke_verified event: {log:#?}"));
    assert!(
        verified["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("postgres:{URL_ENV}/{role}")),
        "{verified}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_without_email_or_mapping_is_refused_when_asking() {
    let (url, role, _) = finance_database().await;
    let app = TestApp::spawn_with(
        Setup::default()
            .only_runbook("finance-reporting", &finance_runbook(&role))
            .env(URL_ENV, &url),
    )
    .await;
    app.slack.add_user(NO_EMAIL, "Nora No-Email", "");

    let answer = app
        .slash(NO_EMAIL, "request finance-reporting 1h month-end close")
        .await;
    assert!(request_id_in(&answer).is_none(), "{answer}");
    assert!(answer.contains("[identities]"), "{answer}");
    assert!(answer.contains("U0NOMAIL = "), "{answer}");
    assert!(answer.contains("users:read.email"), "{answer}");

    let modal = app
        .submit_modal(NO_EMAIL, "finance-reporting", "1h", "month-end close")
        .await;
    assert_eq!(modal["response_action"], "errors", "{modal}");
    let shown = modal["errors"].to_string();
    assert!(shown.contains("[identities]"), "{shown}");

    let status = app.slash(NO_EMAIL, "status").await;
    assert!(request_id_in(&status).is_none(), "{status}");
    assert!(app.dms(BOB).is_empty(), "{:#?}", app.dms(BOB));
}
