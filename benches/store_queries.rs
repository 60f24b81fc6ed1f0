//! The cost of the queries a revoke and `/access status` make, as the number
//! of stored requests grows: `active_grants_covering` and `open_requests_of`
//! through the engines' indexes, beside the full scan (`Store::all_requests`
//! and a filter) that the workflow does today. Indexed queries should stay
//! flat from 1,000 to 100,000 requests; the scan grows with them.
//!
//! `cargo bench --bench store_queries` prints the table for sled and
//! PostgreSQL (a throwaway cluster, as in the tests). Under `cargo test` it
//! runs one small round as a smoke test, so the benchmark cannot rot.

#[path = "support/mod.rs"]
mod support;

#[path = "../tests/support/postgres.rs"]
mod pg;

use std::sync::Arc;
use std::time::{Duration, Instant};

use accessbot::request::{AccessRequest, StageState, Status};
use accessbot::store::engine::StoreEngine;
use accessbot::store::postgres::PgEngine;
use accessbot::store::{Effects, SledEngine, Store};
use chrono::Utc;

/// People the requests are spread over; each has requests/PEOPLE of them.
const PEOPLE: usize = 1000;

fn request(g: usize) -> AccessRequest {
    let who = format!("U{}", g % PEOPLE);
    // One person in a hundred holds an active grant, one has a pending request.
    let status = match g % (PEOPLE * 100) {
        x if x < PEOPLE / 100 => Status::Active,
        x if x < PEOPLE / 50 => Status::Pending,
        _ => Status::Revoked,
    };
    let stages = vec![StageState {
        name: "approval".into(),
        approvers: vec!["U0BOB".into(), "U0CAROL".into()],
        required: 1,
    }];
    let now = Utc::now();
    AccessRequest {
        runbook_title: "Billing admin".into(),
        system: "billing".into(),
        reason: "month-end refunds".into(),
        status,
        approval_deadline: now + chrono::Duration::hours(1),
        expires_at: Some(now + chrono::Duration::hours(2)),
        total_secs: 3600,
        ..AccessRequest::new(
            format!("ar-{g:08}"),
            "billing-admin",
            &who,
            Duration::from_secs(3600),
            stages,
            now,
        )
    }
}

/// Average time of one status query plus one covering query.
async fn indexed(e: &dyn StoreEngine, rounds: usize) -> Duration {
    let started = Instant::now();
    for i in 0..rounds {
        let who = format!("U{}", (i * 37) % PEOPLE);
        e.open_requests_of(&who).await.expect("status");
        e.active_grants_covering(&who, "billing-admin")
            .await
            .expect("covering");
    }
    started.elapsed() / rounds as u32
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn sled_round(n: usize, rounds: usize) -> (Duration, Duration, f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(dir.path()).expect("open"));
    for g in 0..n {
        store
            .insert(&request(g), Effects::default())
            .expect("insert");
    }
    // Measure the steady state, not sled writing the bulk load out in the
    // background.
    store.flush().await.expect("flush");
    let engine = SledEngine::new(store.clone());
    indexed(&engine, rounds / 10).await;
    let idx = indexed(&engine, rounds).await;
    let scan_rounds = rounds.min(20);
    let started = Instant::now();
    for i in 0..scan_rounds {
        let who = format!("U{}", (i * 37) % PEOPLE);
        let all = store.all_requests().expect("scan");
        let _ = all.iter().filter(|r| r.requester == who).count();
    }
    let scan = started.elapsed() / scan_rounds as u32;
    (idx, scan, rss_mib())
}

async fn pg_round(n: usize, rounds: usize) -> Duration {
    let url = pg::database().await;
    let engine = PgEngine::connect(&url).await.expect("connect");
    let template = serde_json::to_value(request(PEOPLE * 100 - 1)).expect("json");
    // Bulk load: finished requests in one statement, then the open ones
    // through the engine.
    sqlx::query(
        "INSERT INTO requests (id, requester, runbook_id, status, created_at, body) \
         SELECT 'ar-bulk-' || g, 'U' || (g % 1000), 'billing-admin', 'revoked', now(), \
                jsonb_set(jsonb_set($1, '{id}', to_jsonb('ar-bulk-' || g)), \
                          '{requester}', to_jsonb('U' || (g % 1000))) \
         FROM generate_series(1, $2) g",
    )
    .bind(&template)
    .bind(n as i64)
    .execute(engine.pool())
    .await
    .expect("bulk insert");
    for g in 0..PEOPLE / 50 {
        engine
            .insert(&request(g), Effects::default())
            .await
            .expect("insert");
    }
    sqlx::query("ANALYZE requests")
        .execute(engine.pool())
        .await
        .expect("analyze");
    indexed(&engine, rounds).await
}

fn main() {
    let bench = support::measuring();
    let rt = support::runtime();
    let (sizes, rounds): (&[usize], usize) = if bench {
        (&[1_000, 10_000, 100_000], 2_000)
    } else {
        (&[1_000], 50)
    };
    println!(
        "{:>9} {:>16} {:>16} {:>12} {:>16}",
        "requests", "sled indexed", "sled scan", "sled RSS", "postgres indexed"
    );
    for &n in sizes {
        let (idx, scan, rss) = rt.block_on(sled_round(n, rounds));
        let pg = rt.block_on(pg_round(n, rounds));
        println!(
            "{n:>9} {:>13.1} µs {:>13.1} µs {rss:>8.0} MiB {:>13.1} µs",
            idx.as_secs_f64() * 1e6,
            scan.as_secs_f64() * 1e6,
            pg.as_secs_f64() * 1e6,
        );
    }
}
