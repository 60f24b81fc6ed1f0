//! `accessbot migrate-store`: a stopped sled install with an active grant is
//! copied into an empty PostgreSQL database through the real binary, and the
//! rows are checked in PostgreSQL itself. What it cannot copy (a directory
//! without a database, a bot still running on it, a destination that is not
//! empty or cannot be reached) is refused in one line, exit code 2, and the
//! database password is never printed.
//!
//! Then a bot started on the destination revokes the copied grant on time.

use std::process::{Command, Output};
use std::time::Duration;

use chrono::Utc;
use sqlx::{Connection, Row};

use crate::support::postgres as pg;
use crate::support::*;

const T: Duration = Duration::from_secs(15);

/// The test cluster trusts every local connection, so any password is
/// accepted; it is there to be masked.
const PASSWORD: &str = "migrate-pw-7f3c91d2";

/// `url` with [`PASSWORD`] in it.
fn with_password(url: &str) -> String {
    let with = url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{PASSWORD}@"),
        1,
    );
    assert_ne!(with, url, "unexpected test database URL {url}");
    with
}

/// What one run of the binary printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Exit code 2 and exactly one line on stderr naming `words`, with the
    /// URL masked and the password nowhere.
    fn assert_refused(&self, words: &str) {
        assert_eq!(self.code, Some(2), "{}", self.all());
        assert!(self.stderr.contains(words), "{}", self.all());
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "one line expected:\n{}",
            self.stderr
        );
        assert!(!self.all().contains(PASSWORD), "{}", self.all());
    }
}

/// `accessbot migrate-store ARGS` with only `env` set (and PATH): the
/// default log filter, as an operator runs it.
fn migrate_store(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_accessbot"))
        .arg("migrate-store")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("running the accessbot binary");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_moves_a_stopped_install_with_an_active_grant_into_postgres() {
    // The source is sled whatever engine the rest of the suite is on.
    assert_eq!(
        Engine::current(),
        Engine::Sled,
        "set ACCESSBOT_TEST_ENGINE=sled or leave it unset"
    );
    let mut app = TestApp::spawn().await;
    let active = app
        .request(ALICE, "billing-admin 20s month-end refunds")
        .await;
    app.wait_dm(BOB, &[&active], T).await;
    app.press(BOB, "approve", &active).await;
    app.wait_done(&format!("grant {active}"), T).await;
    app.wait_for_status(ALICE, &active, "active", T).await;
    let pending = app.request(DAVE, "billing-admin 30m refund queue").await;
    app.wait_for_status(DAVE, &pending, "pending approval", T)
        .await;
    let data_dir = app.data_dir.display().to_string();
    let url = with_password(&pg::database().await);

    // A bot still running on the directory holds it: nothing is copied.
    let running = migrate_store(&["--from-data-dir", &data_dir, "--to", &url], &[]);
    running.assert_refused("in use by a running accessbot; stop it first");

    let (stopped, _) = app.terminate().await;
    assert!(stopped.success(), "the bot did not stop cleanly");

    // A destination that does not answer is named by host, without the password.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{closed_port}/accessbot");
    let unreachable = migrate_store(&["--from-data-dir", &data_dir, "--to", &nowhere], &[]);
    unreachable.assert_refused(&format!(
        "cannot reach the database at postgres://postgres:***@127.0.0.1:{closed_port}/accessbot"
    ));

    // The destination from ACCESSBOT_DATABASE_URL, as the replicas will have it.
    let moved = migrate_store(
        &["--from-data-dir", &data_dir],
        &[("ACCESSBOT_DATABASE_URL", &url)],
    );
    assert_eq!(moved.code, Some(0), "{}", moved.all());
    assert!(!moved.all().contains(PASSWORD), "{}", moved.all());
    assert!(
        moved.stdout.contains("postgres://postgres:***@127.0.0.1:"),
        "{}",
        moved.stdout
    );
    assert!(
        moved
            .stdout
            .contains("copied 2 requests (2 with a deadline)"),
        "{}",
        moved.stdout
    );
    assert!(
        moved
            .stdout
            .contains("the audit chain verifies on PostgreSQL"),
        "{}",
        moved.stdout
    );

    // What PostgreSQL itself now holds.
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let rows = sqlx::query("SELECT id, status, due_at FROM requests ORDER BY created_at")
        .fetch_all(&mut db)
        .await
        .unwrap();
    let rows: Vec<(String, String, Option<chrono::DateTime<Utc>>)> = rows
        .iter()
        .map(|r| (r.get("id"), r.get("status"), r.get("due_at")))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        (active.as_str(), "active")
    );
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1.as_str()),
        (pending.as_str(), "pending")
    );
    // The active grant's next deadline (its warning, then its revoke) is
    // still ahead and within the hour it was granted for.
    let due = rows[0]
        .2
        .expect("the active grant has a deadline on PostgreSQL");
    assert!(
        due > Utc::now() && due <= Utc::now() + chrono::Duration::hours(1),
        "{due}"
    );
    assert!(rows[1].2.is_some(), "the pending request keeps its timeout");

    // The source is left as it was, so it can still be read after the move.
    let events = app.sled_audit_log();
    assert!(
        events.iter().any(|e| e["kind"] == "granted"),
        "no grant in the source's audit log: {events:?}"
    );
    let (count, max_seq): (i64, Option<i64>) =
        sqlx::query_as("SELECT count(*), max(seq) FROM audit_log")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(count as usize, events.len());
    assert_eq!(max_seq, events.last().and_then(|e| e["seq"].as_i64()));
    let head: String = sqlx::query_scalar("SELECT hash FROM audit_head")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(
        Some(head.as_str()),
        events.last().and_then(|e| e["hash"].as_str())
    );
    let _ = db.close().await;

    // A second move into the now filled database is refused, not merged.
    let again = migrate_store(&["--from-data-dir", &data_dir, "--to", &url], &[]);
    again.assert_refused("already holds accessbot data");
    assert!(
        again.stderr.contains("postgres://postgres:***@"),
        "{}",
        again.stderr
    );

    // A bot on the destination takes over: the copied grant is revoked when
    // it ends (or at once, if it ended while the bot was stopped), and the
    // copied chain goes on.
    app.set_env("ACCESSBOT_DATABASE_URL", &url);
    app.start().await;
    app.wait_audit(&["Access revoked", &active], Duration::from_secs(40))
        .await;
    let revokes = app.provider_runs("revoke", &active);
    assert_eq!(revokes.len(), 1, "one revoke of the copied grant");
    assert!(
        revokes[0].started_at >= revokes[0].expires_at - chrono::Duration::milliseconds(1000),
        "revoked before its end: {:?} < {:?}",
        revokes[0].started_at,
        revokes[0].expires_at
    );
    let _ = app.terminate().await;
    let log = verified_audit_log(&url).await;
    assert!(log.len() > events.len(), "the chain goes on after the move");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_refuses_a_directory_without_a_database_and_a_missing_destination() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().display().to_string();
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:1/accessbot");

    let no_db = migrate_store(&["--from-data-dir", &dir, "--to", &url], &[]);
    no_db.assert_refused("holds no accessbot database; check the path");
    assert!(
        std::fs::read_dir(empty.path()).unwrap().next().is_none(),
        "migrate-store created files in {dir}"
    );

    // Neither --to nor ACCESSBOT_DATABASE_URL: clap names the flag.
    let no_dest = migrate_store(&["--from-data-dir", &dir], &[]);
    assert_eq!(no_dest.code, Some(2), "{}", no_dest.all());
    assert!(no_dest.stderr.contains("--to <URL>"), "{}", no_dest.stderr);
}
