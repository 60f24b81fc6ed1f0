//! How late revokes run with three replicas of the release binary on one
//! PostgreSQL database: `K` people each get access for a few seconds,
//! requested and approved on different replicas, and each revoke's start
//! (as the provider script records it) is compared with the end the bot
//! gave the grant. The timer loops share due work through leases and wake
//! each other with LISTEN/NOTIFY, so whichever replica claims a revoke
//! should start it right at the deadline.
//!
//! The grant's end is the grant script's recorded start plus the duration:
//! `ACCESSBOT_EXPIRES_AT` is cut to whole seconds, and the bot fixes the end
//! when it starts the grant program, a few milliseconds before the script
//! records its own start; so the true lag is the figure shown plus that
//! spawn delay.
//!
//! `cargo bench --bench revoke_lag` prints the table (see BENCHMARKS.md).
//! Under `cargo test` it runs one small round as a smoke test.

#[path = "support/mod.rs"]
mod bench_support;

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::time::Duration;

use support::*;

/// How long each grant lasts.
const GRANTED_SECS: i64 = 4;

async fn round(people: usize) -> Vec<f64> {
    let mut app = TestApp::spawn().await;
    assert_eq!(app.engine, Engine::Postgres);
    app.add_replica().await;
    app.add_replica().await;
    let mut ids = Vec::new();
    for n in 0..people {
        let answer = app
            .slash_at(
                n % 3,
                &format!("U0LAG{n:04}"),
                &format!("request billing-admin {GRANTED_SECS}s lag"),
            )
            .await;
        ids.push(request_id_in(&answer).expect(&answer));
    }
    for (n, id) in ids.iter().enumerate() {
        app.wait_dm(BOB, &[id, "Approve"], Duration::from_secs(60))
            .await;
        app.press_at((n + 1) % 3, BOB, "approve", id).await;
    }
    let mut lags = Vec::new();
    for id in &ids {
        let revoke = wait_until(Duration::from_secs(120), || {
            app.provider_runs("revoke", id).into_iter().next()
        })
        .await
        .expect("every grant is revoked");
        let grant = app.provider_runs("grant", id).remove(0);
        let end = grant.started_at + chrono::Duration::seconds(GRANTED_SECS);
        lags.push((revoke.started_at - end).num_milliseconds() as f64 / 1000.0);
    }
    lags.sort_by(f64::total_cmp);
    lags
}

fn main() {
    // The support module starts the bot on the engine this names.
    std::env::set_var("ACCESSBOT_TEST_ENGINE", "postgres");
    let people: &[usize] = if bench_support::measuring() {
        &[30, 90]
    } else {
        &[3]
    };
    let rt = bench_support::runtime();
    println!(
        "{:>8} {:>12} {:>12} {:>12}",
        "grants", "median lag", "p95 lag", "max lag"
    );
    for &k in people {
        let lags = rt.block_on(round(k));
        let at = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
        println!(
            "{k:>8} {:>11.3}s {:>11.3}s {:>11.3}s",
            at(0.5),
            at(0.95),
            at(1.0)
        );
    }
}
