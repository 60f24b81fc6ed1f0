//! The trace a refused attempt leaves: a non-approver's press, a
//! self-approval, someone else's revoke, release or extend, a press by
//! someone no longer in the approver group, a second request past the
//! limits. Each becomes an audit event of kind `refused` (who, which
//! request, what they tried, why), a log line and a count in `/metrics`.
//! The audit channel hears of it only when one person is refused again and
//! again: at the third refusal within ten minutes, once for that burst.
//!
//! The refused change itself wrote nothing (its `Store::update` closure
//! returned the refusal), so the record is its own small write, flushed
//! before the person is answered.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Fx, Workflow};
use crate::policy::{Attempt, Refusal};
use crate::request::AccessRequest;
use crate::slack::text;

/// How many refusals of one person make a burst worth a notice…
const BURST_SIZE: usize = 3;
/// …within this long; and at most one notice per person this often.
const BURST_WINDOW: Duration = Duration::from_secs(600);

/// Refusals counted since the start, and each person's recent ones.
#[derive(Default)]
pub(super) struct Refusals {
    total: AtomicU64,
    recent: Mutex<HashMap<String, Burst>>,
}

#[derive(Default)]
struct Burst {
    at: VecDeque<Instant>,
    /// When the channel was last told about this person.
    noticed: Option<Instant>,
}

impl Refusals {
    /// Counts a refusal of `user` at `now`; true when it completes a burst
    /// the audit channel has not been told about yet.
    fn count(&self, user: &str, now: Instant) -> bool {
        self.total.fetch_add(1, Ordering::Relaxed);
        let within = |t: &Instant| now.saturating_duration_since(*t) < BURST_WINDOW;
        let mut recent = self.recent.lock().expect("refusals lock");
        recent.retain(|_, b| b.at.back().is_some_and(within));
        let burst = recent.entry(user.to_string()).or_default();
        burst.at.retain(within);
        burst.at.push_back(now);
        if burst.at.len() < BURST_SIZE || burst.noticed.as_ref().is_some_and(within) {
            return false;
        }
        burst.noticed = Some(now);
        true
    }

    fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

impl Workflow {
    /// Leaves the trace of `user` refused `attempt` on `req` because `why`
    /// (see the module comment). A store failure is logged, never passed
    /// on: the person is told of the refusal either way.
    pub(super) async fn record_refusal(
        &self,
        user: &str,
        req: &AccessRequest,
        attempt: Attempt,
        why: &str,
    ) {
        tracing::warn!(
            kind = "refused",
            actor = user,
            request_id = %req.id,
            runbook = %req.runbook_id,
            ?attempt,
            why,
            "refused"
        );
        let line = text::refused(user, attempt, why);
        let mut fx = Fx::new(&self.deps.audit_channel);
        if self.refusals.count(user, Instant::now()) {
            fx.notice(
                "refused",
                req,
                &text::refused_repeatedly(user, BURST_SIZE, BURST_WINDOW, &line),
            );
        }
        fx.record("refused", req, user, line);
        let stored = match self.deps.store.enqueue(fx.effects).await {
            Ok(()) => self.deps.store.flush().await,
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => self.wake_outbox(),
            Err(e) => {
                tracing::error!(request_id = %req.id, error = %e, "could not record a refusal")
            }
        }
    }

    /// Passes `result` on, leaving the trace of its refusal when it says
    /// `user` tried what they may not do.
    pub(super) async fn refused_if<T>(
        &self,
        result: Result<T, Refusal>,
        user: &str,
        req: &AccessRequest,
        attempt: Attempt,
    ) -> Result<T, Refusal> {
        if let Err(refusal) = &result {
            if refusal.is_unauthorised() {
                let why = text::refusal_reason(refusal);
                self.record_refusal(user, req, attempt, &why).await;
            }
        }
        result
    }

    /// Checks again, with Slack's member lists as they are now, that `user`
    /// still approves `req` where the stored request says they do (in
    /// `stage`, or anywhere when `None`): approvers were resolved when the
    /// request was made, and someone since removed from an approver group
    /// must not decide it. Anyone the stored request does not name is left
    /// to the stored checks.
    pub(super) async fn check_still_approver(
        &self,
        user: &str,
        req: &AccessRequest,
        stage: Option<usize>,
        attempt: Attempt,
    ) -> Result<(), Refusal> {
        let named = match stage {
            Some(i) => req
                .stages
                .get(i)
                .is_some_and(|s| s.approvers.iter().any(|u| u == user)),
            None => req.all_approvers().any(|u| u == user),
        };
        if user == req.requester || !named {
            return Ok(());
        }
        // A runbook gone from the catalog leaves the stored approvers as they are.
        let Some(rb) = self.deps.catalog.get(&req.runbook_id) else {
            return Ok(());
        };
        if stage.is_none() && rb.owner == user {
            return Ok(());
        }
        match self
            .deps
            .people
            .still_approves(rb, stage, user, &req.requester)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                let refusal = Refusal::NoLongerApprover(req.id.clone());
                self.refused_if(Err(refusal), user, req, attempt).await
            }
            Err(e) => Err(Refusal::Invalid(e.to_string())),
        }
    }

    /// Refused attempts since the start, for `/metrics`.
    pub fn refused_total(&self) -> u64 {
        self.refusals.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_third_refusal_within_the_window_is_noticed_once_per_burst() {
        let r = Refusals::default();
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert!(!r.count("U1", at(0)));
        assert!(!r.count("U2", at(1)), "others count apart");
        assert!(!r.count("U1", at(2)));
        assert!(r.count("U1", at(3)), "the third is noticed");
        assert!(!r.count("U1", at(4)), "once per burst");
        assert!(!r.count("U1", at(300)));
        // Ten minutes after the notice, a burst still going is noticed again.
        assert!(r.count("U1", at(603)));
        // Refusals spread out never make a burst.
        for i in 0..5 {
            assert!(!r.count("U3", at(700 + i * 601)));
        }
        assert_eq!(r.total(), 12);
    }
}
