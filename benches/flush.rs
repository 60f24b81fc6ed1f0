//! Durability throughput: how many acknowledged writes per second the store
//! sustains when every acknowledgement waits for its data to be on disk,
//! with one flush per write versus group commit (`accessbot::store::GroupCommit`).
//!
//! `cargo bench --bench flush` prints a table (see BENCHMARKS.md).
//! Under `cargo test` it runs one short round of each mode as a smoke test,
//! so the benchmark cannot rot.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use accessbot::store::GroupCommit;

/// About the size of one stored request plus its outbox message and audit event.
const RECORD: usize = 3 * 1024;

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Every writer runs its own flush.
    FlushEach,
    /// Writers share flushes through `GroupCommit`.
    Group,
}

/// Runs `writers` tasks that each write a record and wait for durability,
/// `per_writer` times; returns acknowledged writes per second.
async fn run(mode: Mode, writers: usize, per_writer: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::Config::new()
        .path(dir.path())
        .open()
        .expect("sled open");
    let gc = Arc::new(GroupCommit::new());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let db = db.clone();
        let gc = Arc::clone(&gc);
        tasks.push(tokio::spawn(async move {
            let value = vec![b'x'; RECORD];
            for i in 0..per_writer {
                db.insert(format!("w{w}-{i}"), value.as_slice())
                    .expect("insert");
                match mode {
                    Mode::FlushEach => flush(&db).await,
                    Mode::Group => gc
                        .flush(|| async {
                            flush(&db).await;
                            Ok::<(), ()>(())
                        })
                        .await
                        .expect("flush"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let elapsed = started.elapsed();
    assert_eq!(
        db.len(),
        writers * per_writer,
        "every acknowledged write is stored"
    );
    (writers * per_writer) as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

/// sled's blocking flush on the blocking pool, as `Store::flush` does it
/// (concurrent `flush_async` deadlocks in sled 0.34, spacejam/sled#1308).
async fn flush(db: &sled::Db) {
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.flush())
        .await
        .expect("flush task")
        .expect("flush");
}

fn main() {
    let bench = support::measuring();
    let rt = support::runtime();
    let (levels, budget): (&[usize], Duration) = if bench {
        (&[1, 8, 32, 128], Duration::from_secs(3))
    } else {
        (&[8], Duration::from_millis(200))
    };
    println!(
        "{:>8} {:>16} {:>16} {:>8}",
        "writers", "flush-each/s", "group/s", "ratio"
    );
    for &writers in levels {
        // Size each round so it takes roughly `budget` in the slower mode.
        let per_writer = {
            let probe = rt.block_on(run(Mode::FlushEach, writers, 5));
            ((probe * budget.as_secs_f64()) as usize / writers).clamp(5, 5_000)
        };
        let each = rt.block_on(run(Mode::FlushEach, writers, per_writer));
        let group = rt.block_on(run(Mode::Group, writers, per_writer));
        println!(
            "{writers:>8} {each:>16.0} {group:>16.0} {:>7.1}x",
            group / each
        );
    }
}
