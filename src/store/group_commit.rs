//! Group commit: many tasks that each need "everything I wrote is on disk"
//! share one flush instead of queueing one flush each.
//!
//! A caller takes a ticket after its writes. If no flush is running it
//! becomes the leader and flushes everything written up to the newest ticket;
//! otherwise it waits for the running flush and, if that flush started before
//! its ticket, for the next one, which some waiter leads. A flush that fails
//! completes nobody: the leader returns the error and the others try again.
//! BENCHMARKS.md has the numbers that justify it.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Default)]
struct State {
    /// The newest ticket handed out.
    issued: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// A leader is flushing right now.
    flushing: bool,
}

/// Coalesces concurrent flushes; see the module documentation.
#[derive(Default)]
pub struct GroupCommit {
    state: Mutex<State>,
    done: Notify,
}

impl GroupCommit {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns once everything the caller wrote before calling is durable,
    /// running `flush` itself only when no running flush already covers it.
    pub async fn flush<F, Fut, E>(&self, flush: F) -> Result<(), E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let ticket = {
            let mut st = self.lock();
            st.issued += 1;
            st.issued
        };
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            // Registered before the state is read, so a flush that ends in
            // between still wakes this task.
            notified.as_mut().enable();
            let lead_up_to = {
                let mut st = self.lock();
                if st.durable >= ticket {
                    return Ok(());
                }
                if st.flushing {
                    None
                } else {
                    st.flushing = true;
                    Some(st.issued)
                }
            };
            let Some(up_to) = lead_up_to else {
                notified.await;
                continue;
            };
            let result = flush().await;
            {
                let mut st = self.lock();
                st.flushing = false;
                if result.is_ok() {
                    st.durable = st.durable.max(up_to);
                }
            }
            self.done.notify_waiters();
            return result;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Flushes take 20 ms; 50 concurrent callers must all return, and far
    /// fewer than 50 flushes must run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_share_flushes() {
        let gc = Arc::new(GroupCommit::new());
        let flushes = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let gc = Arc::clone(&gc);
            let flushes = Arc::clone(&flushes);
            tasks.push(tokio::spawn(async move {
                gc.flush(|| async {
                    flushes.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<(), ()>(())
                })
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!((1..=10).contains(&n), "{n} flushes for 50 callers");
    }

    /// A caller that arrives while a flush is running is not covered by it:
    /// it must wait for a flush that started after its ticket.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_late_caller_waits_for_a_flush_that_covers_it() {
        let gc = Arc::new(GroupCommit::new());
        let started = Arc::new(AtomicU64::new(0));
        let first = {
            let gc = Arc::clone(&gc);
            let started = Arc::clone(&started);
            tokio::spawn(async move {
                gc.flush(|| async {
                    started.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<(), ()>(())
                })
                .await
            })
        };
        while started.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        gc.flush(|| async {
            started.fetch_add(1, Ordering::SeqCst);
            Ok::<(), ()>(())
        })
        .await
        .unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "the late caller returned without its own flush"
        );
    }

    /// A failed flush makes nobody durable; the next caller flushes again.
    #[tokio::test]
    async fn a_failed_flush_is_not_counted() {
        let gc = GroupCommit::new();
        assert_eq!(
            gc.flush(|| async { Err::<(), &str>("disk full") }).await,
            Err("disk full")
        );
        let ran = AtomicU64::new(0);
        gc.flush(|| async {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<(), &str>(())
        })
        .await
        .unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
