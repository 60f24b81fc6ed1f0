//! End-to-end throughput of the real binary (release build): how many
//! `/access request` commands and Approve clicks per second it acknowledges,
//! each one durable in sled before the answer, with Slack faked locally.
//!
//! `cargo bench --bench throughput` prints a table (see BENCHMARKS.md).
//! Under `cargo test` it runs one small round as a smoke test.

#[path = "support/mod.rs"]
mod bench_support;

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

/// Fires `total` calls of `call` with at most `concurrency` in flight;
/// returns calls per second.
async fn drive<F, Fut>(concurrency: usize, total: usize, call: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let call = Arc::clone(&call);
        let next = Arc::clone(&next);
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n >= total {
                    break;
                }
                call(n).await;
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn round(concurrency: usize, total: usize) -> (f64, f64) {
    let app = Arc::new(TestApp::spawn().await);
    let ids = Arc::new(std::sync::Mutex::new(vec![String::new(); total]));
    let requests = {
        let (app, ids) = (Arc::clone(&app), Arc::clone(&ids));
        drive(concurrency, total, move |n| {
            let (app, ids) = (Arc::clone(&app), Arc::clone(&ids));
            async move {
                // One person per request: a person has one open request
                // per runbook at a time.
                let id = app
                    .request(
                        &format!("U0BENCH{n:05}"),
                        &format!("billing-admin 1h bench {n}"),
                    )
                    .await;
                ids.lock().unwrap()[n] = id;
            }
        })
        .await
    };
    let approvals = {
        let (app, ids) = (Arc::clone(&app), Arc::clone(&ids));
        drive(concurrency, total, move |n| {
            let (app, ids) = (Arc::clone(&app), Arc::clone(&ids));
            async move {
                let id = ids.lock().unwrap()[n].clone();
                app.press(BOB, "approve", &id).await;
            }
        })
        .await
    };
    let distinct: std::collections::HashSet<String> = ids.lock().unwrap().iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        total,
        "every request call created its own request"
    );
    // Every acknowledged approval was acted on.
    let last = ids.lock().unwrap()[total - 1].clone();
    app.wait_done(&format!("grant {last}"), Duration::from_secs(60))
        .await;
    (requests, approvals)
}

fn main() {
    let bench = bench_support::measuring();
    let rt = bench_support::runtime();
    let levels: &[(usize, usize)] = if bench {
        &[(1, 300), (8, 1000), (32, 1000)]
    } else {
        &[(4, 20)]
    };
    println!(
        "{:>12} {:>8} {:>14} {:>14}",
        "concurrency", "calls", "requests/s", "approvals/s"
    );
    for &(concurrency, total) in levels {
        let (requests, approvals) = rt.block_on(round(concurrency, total));
        println!("{concurrency:>12} {total:>8} {requests:>14.0} {approvals:>14.0}");
    }
}
