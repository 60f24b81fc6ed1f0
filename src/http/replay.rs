//! The replay guard: one delivery from Slack is handled once. A repeat of a
//! delivery already answered gets the first answer and does nothing more; a
//! repeat arriving while the first is still being handled waits for that
//! answer instead of running twice.
//!
//! A delivery is identified by a [`DeliveryKey`] over what was delivered,
//! not over how it was signed, so a Slack retry (re-signed, same body) is
//! caught as well as a replay of the same signed bytes. Answers are kept as
//! bytes in the store (pruned after 10 minutes), so with several replicas on
//! one database a repeat that lands on another replica still gets the first
//! answer. Twins in flight at the same moment are caught within one
//! replica; across replicas, the workflow's own checks (a request is decided
//! once, the same request sent again gets the waiting one) keep the effect
//! single. Nothing here knows about HTTP, so another transport can use it too.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::store::StoreError;
use crate::workflow::Workflow;

/// How long a repeat waits for the first copy's answer: less than the
/// 3 seconds Slack waits for either.
const TWIN_WAIT: Duration = Duration::from_millis(2500);

/// What identifies one delivery: SHA-256 over the kind of delivery
/// (`commands`, `interactions`, `events`) and its raw bytes. Slack puts a
/// fresh `trigger_id` (commands, interactions) or `event_id` (events) in
/// every delivery, so two different deliveries never share a key, while a
/// retry or a replay of the same one does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryKey(String);

impl DeliveryKey {
    pub fn new(kind: &str, body: &[u8]) -> DeliveryKey {
        let mut hash = Sha256::new();
        hash.update(kind.as_bytes());
        hash.update([0]);
        hash.update(body);
        DeliveryKey(format!("delivery:{}", hex::encode(hash.finalize())))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// What the guard knows of a delivery.
pub enum Seen {
    /// First sight: handle it, then record the answer with [`Handling::answered`].
    New(Handling),
    /// Answered before; these are the bytes of that answer.
    Answered(Vec<u8>),
    /// Another copy is being handled right now; see [`ReplayGuard::answer_of_twin`].
    InFlight,
}

#[derive(Clone)]
pub struct ReplayGuard {
    workflow: Arc<Workflow>,
    /// Deliveries being handled right now, so the same one arriving twice
    /// at once runs once.
    in_flight: Arc<Mutex<HashSet<DeliveryKey>>>,
}

impl ReplayGuard {
    pub fn new(workflow: Arc<Workflow>) -> ReplayGuard {
        ReplayGuard {
            workflow,
            in_flight: Arc::default(),
        }
    }

    /// Looks the delivery up, and claims it when it is new.
    pub async fn check(&self, key: &DeliveryKey) -> Result<Seen, StoreError> {
        if let Some(answer) = self.workflow.delivery_answer(key.as_bytes()).await? {
            return Ok(Seen::Answered(answer));
        }
        let claimed = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone());
        if !claimed {
            return Ok(Seen::InFlight);
        }
        let handling = Handling {
            guard: self.clone(),
            key: key.clone(),
        };
        // A copy may have been answered between the look-up and the claim.
        if let Some(answer) = self.workflow.delivery_answer(key.as_bytes()).await? {
            return Ok(Seen::Answered(answer));
        }
        Ok(Seen::New(handling))
    }

    /// The answer the copy being handled gave, once it has one; `None` if it
    /// takes longer than Slack would wait (or gives no answer worth keeping).
    pub async fn answer_of_twin(&self, key: &DeliveryKey) -> Option<Vec<u8>> {
        let until = tokio::time::Instant::now() + TWIN_WAIT;
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Ok(Some(answer)) = self.workflow.delivery_answer(key.as_bytes()).await {
                return Some(answer);
            }
        }
        None
    }
}

/// A delivery being handled; dropping it releases the claim, with or
/// without an answer recorded.
pub struct Handling {
    guard: ReplayGuard,
    key: DeliveryKey,
}

impl Handling {
    /// Records the answer for repeats, then releases the claim.
    pub async fn answered(self, answer: &[u8]) {
        if let Err(e) = self
            .guard
            .workflow
            .remember_delivery(self.key.as_bytes(), answer)
            .await
        {
            tracing::error!(error = %e, "could not record a delivery in the replay guard");
        }
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.guard
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::{DeliveryKey, Handling, ReplayGuard, Seen};
    use crate::workflow::Workflow;

    #[test]
    fn the_key_depends_on_kind_and_body_only() {
        let a = DeliveryKey::new("commands", b"text=status&trigger_id=1");
        assert_eq!(a, DeliveryKey::new("commands", b"text=status&trigger_id=1"));
        assert_ne!(a, DeliveryKey::new("commands", b"text=status&trigger_id=2"));
        assert_ne!(a, DeliveryKey::new("events", b"text=status&trigger_id=1"));
        // The separator keeps kind and body apart.
        assert_ne!(DeliveryKey::new("ab", b"c"), DeliveryKey::new("a", b"bc"));
    }

    /// A guard over a fresh store, and the claim of a first delivery.
    async fn first_delivery(
        body: &[u8],
    ) -> (tempfile::TempDir, ReplayGuard, DeliveryKey, Handling) {
        let dir = tempfile::tempdir().unwrap();
        let guard = ReplayGuard::new(Workflow::for_tests(dir.path()));
        let key = DeliveryKey::new("commands", body);
        match guard.check(&key).await {
            Ok(Seen::New(handling)) => (dir, guard, key, handling),
            _ => panic!("a first delivery is new"),
        }
    }

    #[tokio::test]
    async fn a_repeat_gets_the_first_answer() {
        let (_dir, guard, key, handling) = first_delivery(b"one").await;
        handling.answered(b"{\"text\":\"first\"}").await;
        match guard.check(&key).await {
            Ok(Seen::Answered(answer)) => assert_eq!(answer, b"{\"text\":\"first\"}"),
            _ => panic!("a repeat is answered from the guard"),
        }
    }

    #[tokio::test]
    async fn a_delivery_given_up_without_an_answer_can_come_again() {
        let (_dir, guard, key, handling) = first_delivery(b"bad").await;
        drop(handling);
        assert!(matches!(guard.check(&key).await, Ok(Seen::New(_))));
    }

    #[tokio::test]
    async fn a_twin_in_flight_waits_for_the_first_answer() {
        let (_dir, guard, key, handling) = first_delivery(b"twice").await;
        assert!(matches!(guard.check(&key).await, Ok(Seen::InFlight)));
        let twin = {
            let (guard, key) = (guard.clone(), key.clone());
            tokio::spawn(async move { guard.answer_of_twin(&key).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        handling.answered(b"answer").await;
        assert_eq!(twin.await.unwrap().as_deref(), Some(&b"answer"[..]));
    }
}
