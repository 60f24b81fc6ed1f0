//! Memory and start-up of the real binary (release build) on sled with many
//! stored requests: the bot is stopped, its data directory is filled with
//! `N` requests (one in a hundred active, the rest finished) and two audit
//! events each, then it is started again. Measured: the time until `/readyz`
//! answers 200, and the resident memory (`VmRSS`) once it has served a
//! request and an approval on top.
//!
//! `cargo bench --bench memory` prints the table (see BENCHMARKS.md). Under
//! `cargo test` it runs one small round as a smoke test.

#[path = "support/mod.rs"]
mod bench_support;

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::time::{Duration, Instant};

use accessbot::audit::NewAuditEvent;
use accessbot::request::{AccessRequest, StageState, Status};
use accessbot::store::{Effects, Store};
use chrono::Utc;
use support::*;

fn stored(g: usize) -> (AccessRequest, Effects) {
    let stages = vec![StageState {
        name: "approval".into(),
        approvers: vec![BOB.into(), CAROL.into()],
        required: 1,
    }];
    let now = Utc::now();
    let status = if g.is_multiple_of(100) {
        Status::Active
    } else {
        Status::Revoked
    };
    let req = AccessRequest {
        runbook_title: "Billing portal admin".into(),
        system: "Billing portal".into(),
        reason: format!("month-end refunds, batch {g}"),
        status,
        expires_at: Some(now + chrono::Duration::hours(2)),
        approval_deadline: now + chrono::Duration::hours(1),
        ..AccessRequest::new(
            format!("ar-mem{g:017}"),
            "billing-admin",
            &format!("U0MEM{:05}", g % 5_000),
            Duration::from_secs(3600),
            stages,
            now,
        )
    };
    let event = |kind: &str| NewAuditEvent {
        kind: kind.into(),
        request_id: req.id.clone(),
        runbook: req.runbook_id.clone(),
        actor: BOB.into(),
        subject: req.requester.clone(),
        detail: format!("{kind} for the memory benchmark"),
        ..Default::default()
    };
    let effects = Effects {
        outbox: vec![],
        audit: vec![event("requested"), event("granted")],
    };
    (req, effects)
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn round(n: usize) -> (Duration, f64) {
    let mut app = TestApp::spawn().await;
    app.terminate().await;
    {
        let store = Store::open(&app.data_dir).expect("open the stopped bot's store");
        for g in 0..n {
            let (req, effects) = stored(g);
            store.insert(&req, effects).expect("insert");
        }
        store.flush().await.expect("flush");
    }
    let started = Instant::now();
    app.start().await;
    let ready = loop {
        if app.get("/readyz").await.status() == 200 {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(120), "never ready");
        tokio::task::yield_now().await;
    };
    let id = app.request(ALICE, "billing-admin 1h memory").await;
    app.wait_dm(BOB, &[&id], Duration::from_secs(30)).await;
    app.press(BOB, "approve", &id).await;
    app.wait_for_status(ALICE, &id, "active", Duration::from_secs(30))
        .await;
    let rss = rss_mib(app.pid_of(0).expect("running"));
    (ready, rss)
}

fn main() {
    let sizes: &[usize] = if bench_support::measuring() {
        &[25_000, 100_000]
    } else {
        &[300]
    };
    let rt = bench_support::runtime();
    println!("{:>10} {:>14} {:>10}", "requests", "ready after", "RSS MiB");
    for &n in sizes {
        let (ready, rss) = rt.block_on(round(n));
        println!("{n:>10} {:>13.2}s {rss:>10.1}", ready.as_secs_f64());
    }
}
