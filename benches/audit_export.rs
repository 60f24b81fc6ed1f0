//! Peak memory of `accessbot audit export` (and `audit verify`) as the audit
//! log grows: a sled data directory is filled with `N` audit events through
//! the store API, then the real binary exports it as CSV and as JSON lines
//! to /dev/null under `/usr/bin/time -v`, which reports the process's peak
//! resident set size. Constant memory means the figure stays flat as `N`
//! grows.
//!
//! `cargo bench --bench audit_export` prints the table (see BENCHMARKS.md).
//! Under `cargo test` it runs one small round as a smoke test.

#[path = "support/mod.rs"]
mod bench_support;

#[path = "../tests/support/postgres.rs"]
mod pg;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Instant;

use accessbot::audit::{AuditFacts, NewAuditEvent};
use accessbot::store::postgres::PgEngine;
use accessbot::store::{Effects, Store, StoreEngine};

/// Where the log is: a sled data directory, or a PostgreSQL database.
enum Log {
    Sled(tempfile::TempDir),
    Postgres(String),
}

fn event(i: usize) -> NewAuditEvent {
    let mut inputs = BTreeMap::new();
    if i.is_multiple_of(5) {
        inputs.insert("ticket".to_string(), format!("INC-{i}"));
    }
    NewAuditEvent {
        kind: ["requested", "approved", "granted", "revoked"][i % 4].to_string(),
        request_id: format!("ar-{:020}", i / 4),
        runbook: format!("runbook-{}", i % 11),
        actor: format!("U0PERSON{:04}", i % 997),
        subject: format!("U0PERSON{:04}", (i + 1) % 997),
        detail: format!(
            "Access step {i} for <@U0PERSON{:04}>, \"month-end\" refunds",
            i % 997
        ),
        facts: AuditFacts {
            approvers: vec![format!("U0APPROVER{}", i % 7)],
            duration_secs: Some(3600),
            reason: Some(format!("month-end refunds, batch {i}")),
            inputs,
        },
    }
}

/// A log of `n` audit events on sled, or on PostgreSQL.
fn fill(n: usize, postgres: bool) -> Log {
    let rt = bench_support::runtime();
    rt.block_on(async {
        let (log, store): (Log, Box<dyn StoreEngine>) = if postgres {
            let url = pg::database().await;
            let engine = PgEngine::connect(&url).await.expect("connect");
            (Log::Postgres(url), Box::new(engine))
        } else {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Store::open(dir.path()).expect("store");
            let engine = accessbot::store::SledEngine::new(std::sync::Arc::new(store));
            (Log::Sled(dir), Box::new(engine))
        };
        let mut i = 0;
        while i < n {
            let batch: Vec<NewAuditEvent> = (i..n.min(i + 5000)).map(event).collect();
            i += batch.len();
            store
                .enqueue(Effects {
                    outbox: vec![],
                    audit: batch,
                })
                .await
                .expect("append");
        }
        store.flush().await.expect("flush");
        log
    })
}

/// Runs `accessbot <args>` under `/usr/bin/time -v`, its output discarded;
/// returns the peak RSS in MiB and the wall time in seconds.
fn peak(log: &Log, args: &[&str]) -> (f64, f64) {
    let started = Instant::now();
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v")
        .arg(env!("CARGO_BIN_EXE_accessbot"))
        .args(args)
        .env_clear()
        .env("RUST_LOG", "warn");
    match log {
        Log::Sled(dir) => cmd.arg("--data-dir").arg(dir.path()),
        Log::Postgres(url) => cmd.env("ACCESSBOT_DATABASE_URL", url),
    };
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("/usr/bin/time (GNU time) runs");
    let secs = started.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {err}");
    let kb: f64 = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in: {err}"));
    (kb / 1024.0, secs)
}

fn main() {
    let sizes: &[usize] = if bench_support::measuring() {
        &[10_000, 100_000, 400_000]
    } else {
        &[2_000]
    };
    println!(
        "{:>9} {:>9} {:>9} {:>8} {:>10} {:>8} {:>11}",
        "engine", "events", "csv MiB", "csv s", "jsonl MiB", "jsonl s", "verify MiB"
    );
    for postgres in [false, true] {
        for &n in sizes {
            let log = fill(n, postgres);
            let (csv_mib, csv_s) = peak(&log, &["audit", "export", "--format", "csv"]);
            let (json_mib, json_s) = peak(&log, &["audit", "export", "--format", "jsonl"]);
            let (verify_mib, _) = peak(&log, &["audit", "verify"]);
            println!(
                "{:>9} {n:>9} {csv_mib:>9.1} {csv_s:>8.2} {json_mib:>10.1} {json_s:>8.2} {verify_mib:>11.1}",
                if postgres { "postgres" } else { "sled" }
            );
        }
    }
}
