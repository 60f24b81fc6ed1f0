//! The `postgres` provider against a real PostgreSQL server (the throwaway
//! cluster `support/postgres.rs` starts; a machine without PostgreSQL fails
//! these tests, it never skips them). The bot connects as a login with
//! CREATEROLE, ADMIN OPTION on the roles it grants and `pg_signal_backend`,
//! as runbooks/README.md tells operators to set it up; what a grant did is
//! checked by connecting as the person's login.

#[path = "support/postgres.rs"]
mod pg;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use accessbot::grant::{
    Action, GrantContext, GrantSpec, LoginFrom, PostgresSpec, Presence, Providers,
};
use sqlx::{Connection, Executor, PgConnection, Row};
use tokio::sync::OnceCell;

/// The variable every test's runbook names; set once, before any provider runs.
const URL_ENV: &str = "ACCESSBOT_TEST_FINANCE_DB_URL";
/// The bot's password: trust authentication ignores it, and no message may show it.
const PASSWORD: &str = "s3cret-bot-password";
const BOT: &str = "p11_accessbot";

static DATABASE: OnceCell<Db> = OnceCell::const_new();
static NEXT: AtomicU32 = AtomicU32::new(1);

struct Db {
    /// The database as the superuser sees it.
    admin_url: String,
    name: String,
}

/// One database for the file, the bot's login, and `URL_ENV` pointing at it.
async fn db() -> &'static Db {
    DATABASE
        .get_or_init(|| async {
            let admin_url = pg::database().await;
            let name = admin_url.rsplit('/').next().unwrap().to_string();
            let mut admin = PgConnection::connect(&admin_url).await.unwrap();
            let bot = format!("{BOT}_{}", std::process::id());
            for sql in [
                format!("CREATE ROLE {bot} LOGIN CREATEROLE"),
                format!("GRANT pg_signal_backend TO {bot}"),
            ] {
                admin.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
            }
            let url = format!(
                "postgres://{bot}:{PASSWORD}@127.0.0.1:{}/{name}",
                pg::cluster().port()
            );
            std::env::set_var(URL_ENV, &url);
            Db { admin_url, name }
        })
        .await
}

impl Db {
    async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.admin_url).await.unwrap()
    }

    /// A connection as `login` (trust authentication: no password).
    async fn as_login(&self, login: &str) -> PgConnection {
        let options = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(pg::cluster().port())
            .username(login)
            .database(&self.name);
        PgConnection::connect_with(&options)
            .await
            .unwrap_or_else(|e| panic!("connecting as {login:?}: {e}"))
    }

    /// Every role and every membership in the cluster whose names hold
    /// `tag` (other tests change other roles meanwhile), as text.
    async fn roles_and_members(&self, tag: &str) -> (Vec<String>, Vec<String>) {
        let mut admin = self.admin().await;
        let roles = sqlx::query("SELECT rolname::text FROM pg_roles ORDER BY 1")
            .fetch_all(&mut admin)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .filter(|r: &String| r.contains(tag))
            .collect();
        let members = sqlx::query(
            "SELECT r.rolname::text || ' > ' || u.rolname::text FROM pg_auth_members m \
             JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member ORDER BY 1",
        )
        .fetch_all(&mut admin)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .filter(|r: &String| r.contains(tag))
        .collect();
        (roles, members)
    }
}

/// `name` made unique in the cluster (roles are cluster-wide).
fn unique(name: &str) -> String {
    format!(
        "{name}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates the role the runbook grants (with a table it may read), gives
/// the bot ADMIN OPTION on it, and creates the person's login.
async fn setup(db: &Db, role: &str, login: &str) {
    let mut admin = db.admin().await;
    let bot = format!("{BOT}_{}", std::process::id());
    let table = quoted(&format!("{role}_ledger"));
    for sql in [
        format!("CREATE ROLE {} NOLOGIN", quoted(role)),
        format!("GRANT {} TO {bot} WITH ADMIN OPTION", quoted(role)),
        format!("CREATE ROLE {} LOGIN", quoted(login)),
        format!("CREATE TABLE {table} (amount int)"),
        format!("INSERT INTO {table} VALUES (42)"),
        format!("GRANT SELECT ON {table} TO {}", quoted(role)),
    ] {
        admin
            .execute(sqlx::AssertSqlSafe(sql.clone()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

fn spec(role: &str, login: LoginFrom, end_sessions: bool) -> GrantSpec {
    GrantSpec::new(
        "postgres",
        PostgresSpec {
            url_env: URL_ENV.into(),
            role: role.into(),
            login,
            end_sessions,
        },
    )
}

fn ctx(identity: &str) -> GrantContext {
    GrantContext {
        request_id: "ar-pg-1".into(),
        runbook_id: "finance-reporting".into(),
        user_id: "U0ALICE".into(),
        user_email: Some(identity.into()),
        identity: Some(identity.into()),
        expires_at: chrono::Utc::now(),
        reason: "month-end close".into(),
        runbook_dir: "/".into(),
    }
}

/// What the login sees when it reads the role's table: the amount, or
/// PostgreSQL's refusal.
async fn read_as(db: &Db, login: &str, role: &str) -> Result<i32, String> {
    let mut conn = db.as_login(login).await;
    let table = quoted(&format!("{role}_ledger"));
    sqlx::query_scalar::<_, i32>(sqlx::AssertSqlSafe(format!("SELECT amount FROM {table}")))
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())
}

async fn holds(db: &Db, login: &str, role: &str) -> bool {
    let mut conn = db.as_login(login).await;
    sqlx::query_scalar("SELECT pg_has_role(current_user, $1, 'MEMBER')")
        .bind(role)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn grant_gives_the_login_the_role_and_revoke_takes_it_away_both_idempotent() {
    let db = db().await;
    let role = unique("finance_read");
    let login = unique("alice");
    setup(db, &role, &login).await;
    let providers = Providers::with_builtin();
    let spec = spec(&role, LoginFrom::EmailLocal, false);
    // email_local: the part before @, lower-cased.
    let ctx = ctx(&format!("{}@Acme.com", login.to_uppercase()));

    assert!(read_as(db, &login, &role).await.is_err());
    assert_eq!(
        providers.verify(&spec, &ctx).await.unwrap().unwrap(),
        Presence::Absent
    );
    providers.run(&spec, Action::Grant, &ctx).await.unwrap();
    assert!(
        holds(db, &login, &role).await,
        "a query as the login shows the role"
    );
    assert_eq!(read_as(db, &login, &role).await, Ok(42));
    assert_eq!(
        providers.verify(&spec, &ctx).await.unwrap().unwrap(),
        Presence::Present
    );
    assert_eq!(
        providers.members(&spec).await.unwrap().unwrap(),
        vec![login.clone()],
        "the bot's own ADMIN OPTION membership is not listed"
    );
    assert_eq!(providers.member_name(&spec, &ctx), Some(login.clone()));
    // Granting what is held succeeds and changes nothing.
    providers.run(&spec, Action::Grant, &ctx).await.unwrap();

    providers.run(&spec, Action::Revoke, &ctx).await.unwrap();
    assert!(!holds(db, &login, &role).await);
    let refused = read_as(db, &login, &role).await.unwrap_err();
    assert!(refused.contains("permission denied"), "{refused}");
    assert_eq!(
        providers.verify(&spec, &ctx).await.unwrap().unwrap(),
        Presence::Absent
    );
    assert!(providers.members(&spec).await.unwrap().unwrap().is_empty());
    // Revoking what is gone succeeds.
    providers.run(&spec, Action::Revoke, &ctx).await.unwrap();
}

#[tokio::test]
async fn end_sessions_ends_the_logins_open_session_on_revoke() {
    let db = db().await;
    let role = unique("finance_read");
    let login = unique("carol");
    setup(db, &role, &login).await;
    let providers = Providers::with_builtin();
    let ctx = ctx(&format!("{login}@acme.com"));
    providers
        .run(
            &spec(&role, LoginFrom::EmailLocal, true),
            Action::Grant,
            &ctx,
        )
        .await
        .unwrap();
    let mut open = db.as_login(&login).await;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut open)
        .await
        .unwrap();
    assert_eq!(one, 1);
    // A session of someone else stays open.
    let bystander = unique("dave");
    setup(db, &unique("other_role"), &bystander).await;
    let mut other = db.as_login(&bystander).await;

    providers
        .run(
            &spec(&role, LoginFrom::EmailLocal, true),
            Action::Revoke,
            &ctx,
        )
        .await
        .unwrap();
    // pg_terminate_backend signals the backend; it ends as soon as it sees it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut ended = false;
    while !ended && std::time::Instant::now() < deadline {
        ended = sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&mut open)
            .await
            .is_err();
        if !ended {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        ended,
        "the login's open session still answers after the revoke"
    );
    let still: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(still, 1, "another login's session was ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_role_and_email_change_nothing_but_the_intended_grant() {
    let db = db().await;
    let tag = unique("t");
    let role = format!("fin\"; DROP TABLE victims; --{tag}");
    let login = format!("bob'); DROP ROLE postgres; --\"x{tag}");
    setup(db, &role, &login).await;
    let mut admin = db.admin().await;
    admin
        .execute("CREATE TABLE IF NOT EXISTS victims (id int)")
        .await
        .unwrap();
    let before = db.roles_and_members(&tag).await;
    assert_eq!(before.0.len(), 2, "{before:?}");
    let providers = Providers::with_builtin();
    // `mapped`: the [identities] entry is the login as it is.
    let ghost = ctx(&format!("eve\"; GRANT pg_read_all_data TO public; --{tag}"));
    let ctx = ctx(&login);
    let spec = spec(&role, LoginFrom::Mapped, false);

    providers.run(&spec, Action::Grant, &ctx).await.unwrap();
    let after = db.roles_and_members(&tag).await;
    assert_eq!(before.0, after.0, "roles were created or dropped");
    let added: Vec<&String> = after.1.iter().filter(|m| !before.1.contains(m)).collect();
    let removed: Vec<&String> = before.1.iter().filter(|m| !after.1.contains(m)).collect();
    assert_eq!(added, vec![&format!("{role} > {login}")]);
    assert!(removed.is_empty(), "{removed:?}");
    let victims: i64 = sqlx::query_scalar("SELECT count(*) FROM victims")
        .fetch_one(&mut admin)
        .await
        .expect("the table is still there");
    assert_eq!(victims, 0);
    assert!(holds(db, &login, &role).await);

    // A hostile login that does not exist: refused, nothing changes.
    let err = providers
        .run(&spec, Action::Grant, &ghost)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("there is no login"), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(db.roles_and_members(&tag).await, after);
    let public_members: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
         WHERE r.rolname IN ('postgres', 'pg_read_all_data')",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(public_members, 0, "a hostile name granted a built-in role");
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'")
            .fetch_one(&mut admin)
            .await
            .expect("the postgres role is still there");
    assert!(superuser);

    providers.run(&spec, Action::Revoke, &ctx).await.unwrap();
    assert_eq!(db.roles_and_members(&tag).await, before);
}

#[tokio::test]
async fn errors_name_the_step_and_postgresqls_message_never_the_password() {
    let db = db().await;
    let login = unique("frank");
    let role = unique("finance_read");
    setup(db, &role, &login).await;
    let providers = Providers::with_builtin();
    let ctx = ctx(&format!("{login}@acme.com"));

    // A role that does not exist: PostgreSQL's own words, the step, no password.
    let missing = spec(&unique("no_such_role"), LoginFrom::EmailLocal, false);
    let err = providers
        .run(&missing, Action::Grant, &ctx)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("grant: "), "{text}");
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains("SQLSTATE 42704"), "{text}");
    assert!(text.contains(URL_ENV), "{text}");
    assert!(text.contains(":***@"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!err.is_retryable(), "{text}");

    // No identity at all: refused before any statement, naming the fix.
    let mut nobody = ctx.clone();
    nobody.identity = None;
    nobody.user_email = None;
    let err = providers
        .run(
            &spec(&role, LoginFrom::EmailLocal, false),
            Action::Grant,
            &nobody,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("[identities]"), "{err}");
}
