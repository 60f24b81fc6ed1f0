//! The timer loop: claims the due work in the store (deadlines that have
//! come, on any replica's requests), hands each request to
//! [`Workflow::on_due`] (revoke on expiry, retry failed revokes, take over a
//! provider run whose replica died, expire undecided requests, remind,
//! escalate, warn), then sleeps until the next deadline, until this process
//! or another replica sets a new one, or until shutdown.
//!
//! Work is claimed with a lease (`claim_due`): while the lease runs no other
//! replica gets the same request, and `on_due` ends every claim with an
//! update, which releases it. A replica that dies holding a claim loses it
//! when the lease runs out, and another one's timer takes the request.
//! Deadlines are in the store, so anything that fell due while every bot was
//! down is handled on the first pass.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::workflow::Workflow;

/// Longest sleep without looking at the store, in case a wake-up was missed.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Due requests claimed per pass; more are claimed at once by the next pass.
const CLAIM_BATCH: usize = 64;

pub async fn run(workflow: Arc<Workflow>, cancel: CancellationToken) {
    let wake = workflow.timer_wake();
    let elsewhere = workflow.deadline_changed();
    loop {
        let now = Utc::now();
        let mut full_batch = false;
        match workflow.claim_due(now, CLAIM_BATCH).await {
            Ok(ids) => {
                full_batch = ids.len() == CLAIM_BATCH;
                for id in ids {
                    if let Err(e) = workflow.on_due(&id, now).await {
                        tracing::error!(request_id = %id, error = %e, "timer could not handle a due request; another pass takes it when its lease runs out");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "timer could not claim due work"),
        }
        if full_batch {
            continue;
        }
        let sleep_for = match workflow.next_deadline().await {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP),
            Ok(None) => MAX_SLEEP,
            Err(_) => Duration::from_secs(1),
        };
        // A deadline still in the past after a pass means a request could not
        // move on (its store write failed, or another replica holds it): do
        // not spin on it.
        let sleep_for = sleep_for.max(Duration::from_millis(20));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
            _ = elsewhere.notified() => {}
            _ = tokio::time::sleep(sleep_for) => {}
        }
    }
}
