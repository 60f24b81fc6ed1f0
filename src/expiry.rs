//! The timer loop: sleeps until the earliest deadline in the store (or
//! until told a new one exists), then hands every due request to
//! [`Workflow::on_due`]: revoke on expiry, retry failed revokes, expire
//! undecided requests, remind, escalate, warn. Deadlines live in sled, so a
//! restart picks up exactly where the last process stopped, and anything
//! that fell due while it was down is handled at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::workflow::Workflow;

/// Longest sleep without looking at the store, in case a wake-up was missed.
const MAX_SLEEP: Duration = Duration::from_secs(30);

pub async fn run(workflow: Arc<Workflow>, cancel: CancellationToken) {
    let wake = workflow.timer_wake();
    loop {
        let now = Utc::now();
        match workflow.due_now(now) {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = workflow.on_due(&id, now).await {
                        tracing::error!(request_id = %id, error = %e, "timer could not handle a due request");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "timer could not read deadlines"),
        }
        let sleep_for = match workflow.next_deadline() {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP),
            Ok(None) => MAX_SLEEP,
            Err(_) => Duration::from_secs(1),
        };
        // A deadline still in the past after a pass means a request could not
        // move on (e.g. its store write failed): do not spin on it.
        let sleep_for = sleep_for.max(Duration::from_millis(20));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep_for) => {}
        }
    }
}
