//! Retention through the real bot: `ACCESSBOT_RETENTION` removes finished
//! requests past the period and keeps open ones; `ACCESSBOT_AUDIT_RETENTION`
//! replaces the oldest audit events by a checkpoint, after which `audit
//! verify` passes and says where the log starts.

use std::time::Duration;

use accessbot::request::Status;
use accessbot::store::postgres::PgEngine;
use accessbot::store::{SledEngine, Store, StoreEngine};

use crate::support::*;

const T: Duration = Duration::from_secs(30);

/// The bot's store, opened after the bot stopped.
async fn open_store(app: &TestApp) -> std::sync::Arc<dyn StoreEngine> {
    match &app.database_url {
        Some(url) => std::sync::Arc::new(PgEngine::connect(url).await.unwrap()),
        None => std::sync::Arc::new(SledEngine::new(std::sync::Arc::new(
            Store::open_existing(&app.data_dir).unwrap(),
        ))),
    }
}

const AUDIT_TOKEN: &str = "audit-export-token-retention-0123456789";

/// The running bot's audit log, from `GET /audit`; its chain must verify.
async fn live_log(app: &TestApp) -> Vec<serde_json::Value> {
    let r = reqwest::Client::new()
        .get(format!("{}/audit", app.base))
        .bearer_auth(AUDIT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-accessbot-audit-chain"], "intact");
    let text = r.text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits for the bot to log `line` (what it says when a retention pass has
/// done its work: the removal is committed before the line is written).
async fn wait_log(app: &TestApp, line: &str) {
    wait_until(T, || app.logs().contains(line).then_some(()))
        .await
        .unwrap_or_else(|| panic!("the bot never logged {line:?}; logs:\n{}", app.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_finished_requests_and_keeps_open_ones() {
    let mut app = TestApp::spawn_with(Setup::default().env("ACCESSBOT_RETENTION", "3s")).await;
    // Finished: granted for 2s, then revoked.
    let done = app.request(ALICE, "billing-admin 2s month end").await;
    app.wait_dm(BOB, &[&done], T).await;
    app.press(BOB, "approve", &done).await;
    // Finished at once: denied.
    let denied = app.request(DAVE, "billing-admin 1h no").await;
    app.wait_dm(BOB, &[&denied], T).await;
    app.press(BOB, "deny", &denied).await;
    // Open, and older than the retention period by the time it runs.
    let open = app.request(MALLORY, "billing-admin 1h waiting").await;
    app.wait_done(&format!("revoke {done}"), T).await;
    // Both finished requests are removed (in one pass or two).
    wait_until(T, || {
        let removed: u64 = app
            .logs()
            .lines()
            .filter_map(|l| {
                l.split("retention removed ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        (removed >= 2).then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "both finished requests were not removed; logs:\n{}",
            app.logs()
        )
    });
    let _ = app.terminate().await;

    let store = open_store(&app).await;
    assert_eq!(
        store.get(&done).await.unwrap(),
        None,
        "revoked request kept"
    );
    assert_eq!(
        store.get(&denied).await.unwrap(),
        None,
        "denied request kept"
    );
    let kept = store
        .get(&open)
        .await
        .unwrap()
        .expect("the open request was removed");
    assert_eq!(kept.status, Status::Pending);
    // The audit log is untouched by request retention.
    drop(store);
    let out = app.run_cli(&["audit", "verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("pruned"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_retention_leaves_a_checkpoint_that_verify_starts_from() {
    let mut app = TestApp::spawn_with(
        Setup::default()
            .env("ACCESSBOT_AUDIT_RETENTION", "2s")
            .env("ACCESSBOT_AUDIT_TOKEN", AUDIT_TOKEN),
    )
    .await;
    let first = app.request(ALICE, "billing-admin 1h month end").await;
    app.wait_dm(BOB, &[&first], T).await;
    app.press(BOB, "deny", &first).await;
    wait_log(&app, "audit retention pruned the oldest audit events").await;
    // Wait until every event of the first request is behind the checkpoint,
    // as the running bot's own export shows.
    let deadline = std::time::Instant::now() + T;
    loop {
        let log = live_log(&app).await;
        let starts_with_checkpoint = log.first().is_some_and(|e| e["kind"] == "audit_checkpoint");
        if starts_with_checkpoint && log.iter().all(|e| e["request_id"] != first.as_str()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first request's events were not pruned: {log:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Events after the prune chain on from the checkpoint.
    let later = app.request(DAVE, "billing-admin 1h later").await;
    app.wait_audit(&[&later], T).await;
    let _ = app.terminate().await;

    let store = open_store(&app).await;
    let log = store.audit_range(0, 1000).await.unwrap();
    let checkpoint = &log[0];
    assert_eq!(checkpoint.kind, "audit_checkpoint", "{log:#?}");
    assert!(
        checkpoint.seq >= 2,
        "the requested and denied events were pruned: {log:#?}"
    );
    assert!(
        checkpoint.detail.contains("ACCESSBOT_AUDIT_RETENTION"),
        "{}",
        checkpoint.detail
    );
    assert!(log.iter().all(|e| e.request_id != first), "{log:#?}");
    // Later events (unless they were old enough to be pruned too) link to it.
    if let Some(next) = log.get(1) {
        assert_eq!(next.prev_hash, checkpoint.hash, "{log:#?}");
    }
    drop(store);

    let out = app.run_cli(&["audit", "verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("audit log intact"), "{err}");
    assert!(
        err.contains(&format!(
            "the log starts at event {} (events 1 to {} were pruned",
            checkpoint.seq + 1,
            checkpoint.seq
        )),
        "{err}"
    );
}
