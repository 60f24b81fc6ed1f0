//! The replay guard: one delivery from Slack is handled once. A repeat of a
//! delivery already answered gets the first answer and does nothing more; a
//! repeat arriving while the first is still being handled waits for that
//! answer instead of running twice.
//!
//! A delivery is identified by a [`DeliveryKey`] over what was delivered,
//! not over how it was signed, so a Slack retry (re-signed, same body) is
//! caught as well as a replay of the same signed bytes. Both the claim of a
//! delivery being handled and its answer live in the store
//! ([`StoreEngine::seen_claim`], [`StoreEngine::seen_put`]; pruned after 10
//! minutes), so with several replicas on one database two copies arriving at
//! the same moment on two replicas are handled once, and a repeat that lands
//! on another replica gets the first answer. A claim has a lease: if its
//! handler dies, a copy arriving after the lease runs out is handled.
//! Nothing here knows about HTTP, so another transport can use it too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::store::engine::{Claim, StoreEngine};
use crate::store::StoreError;

/// How long a repeat waits for the first copy's answer: less than the
/// 3 seconds Slack waits for either.
const TWIN_WAIT: Duration = Duration::from_millis(2500);

/// How often a waiting repeat looks for the first copy's answer.
const TWIN_POLL: Duration = Duration::from_millis(20);

/// How long a claim holds a delivery: far longer than handling one takes
/// (Slack gives up after 3 seconds), short enough that a copy arriving after
/// its handler died (Slack retries after about a minute) is handled.
const CLAIM_LEASE: Duration = Duration::from_secs(30);

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
    /// Another copy is being handled right now, on this replica or another;
    /// see [`ReplayGuard::answer_of_twin`].
    InFlight,
}

#[derive(Clone)]
pub struct ReplayGuard {
    store: Arc<dyn StoreEngine>,
    /// Numbers this replica's claims, so each has an owner of its own.
    claims: Arc<AtomicU64>,
}

impl ReplayGuard {
    pub fn new(store: Arc<dyn StoreEngine>) -> ReplayGuard {
        ReplayGuard {
            store,
            claims: Arc::default(),
        }
    }

    /// Looks the delivery up, and claims it when it is new (or when the
    /// claim of a copy outlived its lease).
    pub async fn check(&self, key: &DeliveryKey) -> Result<Seen, StoreError> {
        let owner = format!(
            "{}#{}",
            self.store.replica_id(),
            self.claims.fetch_add(1, Ordering::Relaxed)
        );
        match self
            .store
            .seen_claim(key.as_bytes(), Utc::now(), &owner, CLAIM_LEASE)
            .await?
        {
            Claim::Mine => Ok(Seen::New(Handling {
                store: Arc::clone(&self.store),
                key: key.clone(),
                owner,
                answered: false,
            })),
            Claim::Answered(answer) => Ok(Seen::Answered(answer)),
            Claim::InFlight => Ok(Seen::InFlight),
        }
    }

    /// The answer the copy being handled gave, once it has one; `None` if it
    /// takes longer than Slack would wait (or gives no answer worth keeping).
    pub async fn answer_of_twin(&self, key: &DeliveryKey) -> Option<Vec<u8>> {
        let until = tokio::time::Instant::now() + TWIN_WAIT;
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(TWIN_POLL).await;
            if let Ok(Some(answer)) = self.store.seen_get(key.as_bytes()).await {
                return Some(answer);
            }
        }
        None
    }
}

/// A delivery being handled; dropping it without an answer releases the
/// claim, so the next copy is handled.
pub struct Handling {
    store: Arc<dyn StoreEngine>,
    key: DeliveryKey,
    owner: String,
    answered: bool,
}

impl Handling {
    /// Records the answer for repeats, which ends the claim.
    pub async fn answered(mut self, answer: &[u8]) {
        match self
            .store
            .seen_put(self.key.as_bytes(), Utc::now(), answer)
            .await
        {
            Ok(()) => self.answered = true,
            Err(e) => {
                tracing::error!(error = %e, "could not record a delivery in the replay guard")
            }
        }
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        // Release at once where the engine can (sled), else in the background.
        let mut now = self.store.seen_release(self.key.as_bytes(), &self.owner);
        if now
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
        {
            return;
        }
        drop(now);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to release it on: the lease runs out instead.
            return;
        };
        let (store, key, owner) = (
            Arc::clone(&self.store),
            self.key.clone(),
            std::mem::take(&mut self.owner),
        );
        runtime.spawn(async move {
            if let Err(e) = store.seen_release(key.as_bytes(), &owner).await {
                tracing::warn!(error = %e, "could not release a delivery's claim; its lease runs out instead");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{DeliveryKey, Handling, ReplayGuard, Seen};
    use crate::store::{SledEngine, Store};

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
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let guard = ReplayGuard::new(Arc::new(SledEngine::new(store)));
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
