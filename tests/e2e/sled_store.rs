//! What only the sled store has: a data directory on this machine, locked
//! by the process that uses it, and `accessbot audit --data-dir` reading it.
//! (These tests moved here unchanged from `faults.rs` and `hardening.rs`
//! when the suite began to run on both engines; `postgres_store.rs` holds
//! what only PostgreSQL has.)

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_runs_on_sled_here() {
    let app = TestApp::spawn().await;
    assert_eq!(app.engine, Engine::Sled);
    let logged = wait_until(T, || {
        app.logs()
            .lines()
            .any(|l| l.contains("store opened") && l.contains("\"sled\""))
            .then_some(())
    })
    .await;
    assert!(logged.is_some(), "{}", app.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_locked_and_a_corrupt_one_is_left_alone() {
    let mut app = TestApp::spawn().await;
    let (code, stderr) = app.serve_once();
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("in use by another accessbot process"),
        "{stderr}"
    );
    app.terminate().await;

    // Corrupt every file of the database; the start refuses and changes nothing.
    let mut files = BTreeMap::new();
    for entry in walk(&app.data_dir) {
        std::fs::write(&entry, b"\x00garbage\xff not a sled file").unwrap();
        files.insert(entry.clone(), std::fs::read(&entry).unwrap());
    }
    assert!(!files.is_empty());
    let (code, stderr) = app.serve_once();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot be read") && stderr.contains("left as they are"),
        "{stderr}"
    );
    for (path, bytes) in files {
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{} was modified",
            path.display()
        );
    }
}

/// `accessbot audit --verify` on a mistyped directory used to create an
/// empty database there and report "intact: 0 events".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_refuses_a_directory_that_holds_no_database() {
    let mut app = TestApp::spawn().await;
    let answer = app.slash(ALICE, "request billing-admin 1h month end").await;
    request_id_in(&answer).expect(&answer);
    app.wait_audit(&["Access requested"], T).await;
    let log = app.audit_log().await; // stops the bot
    assert!(!log.is_empty());

    let typo = app.data_dir.join("dtaa");
    let out = app.run_cli(&[
        "audit",
        "--verify",
        "--data-dir",
        &typo.display().to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("holds no accessbot database"), "{stderr}");
    assert!(stderr.contains(&typo.display().to_string()), "{stderr}");
    assert!(!typo.exists(), "the mistyped directory was created");

    // The real directory still verifies.
    let out = app.run_cli(&[
        "audit",
        "--verify",
        "--data-dir",
        &app.data_dir.display().to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("intact: {} events", log.len())),
        "{stderr}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
