//! What only the PostgreSQL store has: a database named by a URL that is a
//! secret, which may be out of reach at start.

use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_runs_on_postgres_here() {
    let app = TestApp::spawn().await;
    assert_eq!(app.engine, Engine::Postgres);
    let logged = wait_until(T, || {
        app.logs()
            .lines()
            .any(|l| l.contains("store opened") && l.contains("\"postgres\""))
            .then_some(())
    })
    .await;
    assert!(logged.is_some(), "{}", app.logs());
}

/// A database that cannot be reached stops the start with exit code 2 and
/// one line naming the host and the cause, never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_stops_the_start_naming_the_host_not_the_password() {
    const PASSWORD: &str = "hunter2-do-not-print";
    let mut app = TestApp::spawn().await;
    app.kill().await;
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    app.set_env(
        "ACCESSBOT_DATABASE_URL",
        &format!("postgres://accessbot:{PASSWORD}@127.0.0.1:{port}/accessbot"),
    );
    let (code, stderr) = app.serve_once();
    assert_eq!(code, Some(2), "{stderr}");
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("accessbot: "))
        .collect();
    assert_eq!(problems.len(), 1, "{stderr}");
    assert!(
        problems[0].contains(&format!("127.0.0.1:{port}"))
            && problems[0].contains("cannot reach the database"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}
