//! Access tokens of the directory providers that sign in with OAuth
//! (`google_workspace`, `entra_id`): [`TokenCache`] keeps one token per
//! client and replaces it shortly before it expires; concurrent calls that
//! need a new one wait for a single token request. [`TokenAnswer`] is a
//! token endpoint's answer. Tokens are [`Secret`]s and never printed.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Answer, At, DirectoryError, Why};
use crate::config::Secret;

/// A cached token is replaced this long before it expires, so a call never
/// goes out with a token about to lapse.
const REFRESH_BEFORE: Duration = Duration::from_secs(120);

/// An access token and when to stop using it.
struct Token {
    value: Secret,
    use_until: Instant,
}

/// Access tokens by what they were issued for (token URL, client, subject),
/// each replaced [`REFRESH_BEFORE`] it expires. Calls that need a token at
/// once wait for one token request instead of each making their own.
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Token>>>>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCache(<redacted>)")
    }
}

impl TokenCache {
    /// The token for `key`, from the cache or from `fetch`, which returns a
    /// new token and how long it lives.
    pub(crate) async fn get<F, Fut>(&self, key: &str, fetch: F) -> Result<Secret, DirectoryError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Secret, Duration), DirectoryError>>,
    {
        let slot = Arc::clone(
            self.slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key.to_string())
                .or_default(),
        );
        let mut slot = slot.lock().await;
        if let Some(token) = slot.as_ref() {
            if Instant::now() < token.use_until {
                return Ok(token.value.clone());
            }
        }
        let (value, lives) = fetch().await?;
        // A short-lived token is used for half its life.
        let margin = REFRESH_BEFORE.min(lives / 2);
        *slot = Some(Token {
            value: value.clone(),
            use_until: Instant::now() + lives.saturating_sub(margin),
        });
        Ok(value)
    }

    /// Drops the token for `key`, after the API refused it.
    pub(crate) async fn forget(&self, key: &str) {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned();
        if let Some(slot) = slot {
            *slot.lock().await = None;
        }
    }
}

/// A token endpoint's successful answer (RFC 6749 §5.1).
#[derive(serde::Deserialize)]
pub(crate) struct TokenAnswer {
    access_token: String,
    /// Seconds; an hour when the server does not say. Some servers send
    /// it as text.
    #[serde(default = "an_hour", deserialize_with = "seconds")]
    expires_in: u64,
}

fn an_hour() -> u64 {
    3600
}

fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(u64),
        Text(String),
    }
    match Seconds::deserialize(d)? {
        Seconds::Number(n) => Ok(n),
        Seconds::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom("expires_in is not a number of seconds")),
    }
}

impl fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

impl TokenAnswer {
    /// The token and how long it lives, from a token endpoint's success.
    /// The error never quotes the answer, which holds the token.
    pub(crate) fn read(answer: &Answer, at: &At) -> Result<(Secret, Duration), DirectoryError> {
        let token: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|_| {
            at.fail(Why::Unreadable {
                status: answer.status,
                problem: "no access_token and expires_in in the token endpoint's JSON".into(),
            })
        })?;
        Ok((
            Secret::new(token.access_token),
            Duration::from_secs(token.expires_in),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_token_request_serves_concurrent_calls_until_shortly_before_expiry() {
        let cache = Arc::new(TokenCache::default());
        let fetched = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let get = |lives: u64| {
            let cache = Arc::clone(&cache);
            let fetched = Arc::clone(&fetched);
            async move {
                cache
                    .get("k", || async move {
                        let n = fetched.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok((Secret::new(format!("t{n}")), Duration::from_secs(lives)))
                    })
                    .await
                    .unwrap()
            }
        };
        let tokens = futures_util::future::join_all((0..5).map(|_| get(3600))).await;
        assert!(tokens.iter().all(|t| t.expose() == "t0"));
        assert_eq!(fetched.load(std::sync::atomic::Ordering::SeqCst), 1);
        cache.forget("k").await;
        assert_eq!(get(0).await.expose(), "t1");
        // A token with no life left is replaced on the next call.
        assert_eq!(get(3600).await.expose(), "t2");
        assert_eq!(format!("{:?}", cache), "TokenCache(<redacted>)");
    }

    #[test]
    fn a_token_answer_is_read_without_ever_quoting_it() {
        let at = At::new("entra_id", "Entra ID", "hr").step(crate::grant::directory::Step::Token);
        let answer = |body: &str| Answer {
            status: 200,
            headers: Default::default(),
            body: body.as_bytes().to_vec(),
        };
        let (token, lives) = TokenAnswer::read(
            &answer(r#"{"access_token":"tok-1","expires_in":"3599"}"#),
            &at,
        )
        .unwrap();
        assert_eq!(
            (token.expose(), lives),
            ("tok-1", Duration::from_secs(3599))
        );
        let (_, lives) = TokenAnswer::read(&answer(r#"{"access_token":"tok-2"}"#), &at).unwrap();
        assert_eq!(lives, Duration::from_secs(3600));
        let error = TokenAnswer::read(&answer(r#"{"access_token":17,"leak":"tok-3"}"#), &at)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("17") && !error.contains("tok-3"), "{error}");
    }
}
