//! What the three directory providers (`okta`, `google_workspace`,
//! `entra_id`) share: one HTTP client, the mapping of a directory API's
//! answer to a [`GrantError`](crate::grant::GrantError) that keeps the HTTP status, the API's own
//! error message (Okta's `errorSummary`, Google's and Graph's
//! `error.message`, an OAuth server's `error_description`), the step that
//! failed, the runbook and the wait the API asked for; a cache of access
//! tokens that asks for a new one shortly before the old one expires and
//! makes concurrent calls share one token request; and the `[grant]` key
//! checks they have in common (service URLs, variable names,
//! `end_sessions`).
//!
//! Here: the client ([`Http`]), answers ([`Answer`]: the API's message, the
//! wait it asked for) and reading the identity and secrets; `error.rs` holds
//! [`DirectoryError`], `token.rs` the token cache, `keys.rs` the key checks.
//!
//! Secrets (API tokens, private keys, client secrets, access tokens) are read
//! from the environment on each use, kept in [`Secret`], and never put in a
//! message: errors name the variable, never its value.

mod error;
mod keys;
mod token;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{redirect, Client, RequestBuilder};
use serde_json::Value;

use super::{printable, GrantContext};
use crate::config::Secret;

pub use error::DirectoryError;
pub(crate) use error::{At, Step, Why};
pub(crate) use keys::{
    end_sessions, env_key, is_email, is_guid, service_url, service_url_with, text_key,
};
pub(crate) use token::{TokenAnswer, TokenCache};

/// How long one call to a directory API may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait an API's `Retry-After` is taken at its word for.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);
/// How much of an API's error message is quoted.
const MESSAGE_MAX: usize = 300;

/// Characters escaped in one path segment: everything but unreserved ones,
/// so an `@`, `/`, `?` or `#` in an email or ID stays inside its segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` as one URL path segment.
pub(crate) fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// Which part of a grant, revoke or read failed; said in every error.
/// The person's identity in the target (see [`GrantContext::identity`]).
pub(crate) fn identity<'c>(at: &At, ctx: &'c GrantContext) -> Result<&'c str, DirectoryError> {
    match ctx.identity.as_deref().map(str::trim) {
        Some(identity) if !identity.is_empty() => Ok(identity),
        _ => Err(at.fail(Why::NoIdentity {
            user_id: ctx.user_id.clone(),
        })),
    }
}

/// How a person appears in a directory group's member list as
/// [`Provider::members`](crate::grant::Provider::members) gives it: their
/// identity, lower-cased, since directories compare logins and emails
/// without case.
pub(crate) fn member_name(ctx: &GrantContext) -> Option<String> {
    ctx.identity
        .as_deref()
        .map(|identity| identity.trim().to_lowercase())
        .filter(|name| !name.is_empty())
}

/// The value of the environment variable `var`, read now so a rotated
/// secret is used at once.
pub(crate) fn read_secret(at: &At, var: &str) -> Result<Secret, DirectoryError> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Ok(Secret::new(value.trim())),
        Ok(_) | Err(std::env::VarError::NotPresent) => Err(at.fail(Why::MissingSecret {
            var: var.to_string(),
        })),
        Err(std::env::VarError::NotUnicode(_)) => Err(at.fail(Why::BadSecret {
            var: var.to_string(),
            problem: "is not valid UTF-8".into(),
        })),
    }
}

/// One answer of a directory API, read whole.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`Null` when it is not).
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as `T`, or an error saying what could not be read.
    pub(crate) fn parse<T: serde::de::DeserializeOwned>(
        &self,
        at: &At,
    ) -> Result<T, DirectoryError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            at.fail(Why::Unreadable {
                status: self.status,
                problem: e.to_string(),
            })
        })
    }

    /// The API's own words about what went wrong, whichever of the shapes
    /// the three services use it came in.
    pub(crate) fn api_message(&self) -> String {
        let json = self.json();
        let text = api_message(&json).unwrap_or_else(|| printable(&self.body));
        let mut text: String = text.lines().next().unwrap_or_default().trim().to_string();
        if text.len() > MESSAGE_MAX {
            let mut end = MESSAGE_MAX;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        text
    }

    /// This error answer as a [`DirectoryError`] at `at`: retryable when the
    /// status is 408, 429 or 5xx, with the wait the API asked for.
    pub(crate) fn error(&self, at: &At) -> DirectoryError {
        let status = self.status;
        at.fail(Why::Status {
            status,
            message: self.api_message(),
            retry_after: asked_wait(&self.headers, status, Utc::now()),
            retryable: status == 408 || status == 429 || status >= 500,
            hint: None,
        })
    }
}

/// The message in a directory API's error body: Okta's `errorSummary`
/// (with its code and causes), Google's and Graph's `error.message`, an
/// OAuth token endpoint's `error_description` or bare `error`.
fn api_message(body: &Value) -> Option<String> {
    if let Some(summary) = body.get("errorSummary").and_then(Value::as_str) {
        let mut text = summary.to_string();
        let causes: Vec<&str> = body
            .get("errorCauses")
            .and_then(Value::as_array)
            .map(|causes| {
                causes
                    .iter()
                    .filter_map(|c| c.get("errorSummary").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        if !causes.is_empty() {
            text.push_str(&format!(" ({})", causes.join("; ")));
        }
        if let Some(code) = body.get("errorCode").and_then(Value::as_str) {
            text.push_str(&format!(" [{code}]"));
        }
        return Some(text);
    }
    match body.get("error") {
        Some(Value::Object(error)) => {
            let message = error.get("message").and_then(Value::as_str)?;
            Some(match error.get("code").and_then(Value::as_str) {
                Some(code) => format!("{message} [{code}]"),
                None => message.to_string(),
            })
        }
        Some(Value::String(code)) => Some(
            match body.get("error_description").and_then(Value::as_str) {
                Some(description) => format!("{description} [{code}]"),
                None => code.clone(),
            },
        ),
        _ => None,
    }
}

/// How long the API asked us to wait: `Retry-After` (seconds or an HTTP
/// date), or on a 429 Okta's `X-Rate-Limit-Reset` (when the limit resets,
/// in Unix seconds, read against the answer's `Date`), at most
/// [`RETRY_AFTER_MAX`].
pub(crate) fn asked_wait(headers: &HeaderMap, status: u16, now: DateTime<Utc>) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let until = |at: DateTime<Utc>, now: DateTime<Utc>| (at - now).to_std().unwrap_or_default();
    let wait = if let Some(value) = header(RETRY_AFTER.as_str()) {
        match value.parse::<u64>() {
            Ok(seconds) => Duration::from_secs(seconds),
            Err(_) => until(
                DateTime::parse_from_rfc2822(value)
                    .ok()?
                    .with_timezone(&Utc),
                now,
            ),
        }
    } else if status == 429 {
        let reset = header("x-rate-limit-reset")?.parse::<i64>().ok()?;
        let server_now = header("date")
            .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
            .map_or(now, |d| d.with_timezone(&Utc));
        until(DateTime::from_timestamp(reset, 0)?, server_now)
    } else {
        return None;
    };
    Some(wait.min(RETRY_AFTER_MAX))
}

/// The HTTP client the directory providers share.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: Client,
}

impl Http {
    /// # Panics
    /// When the TLS backend cannot be initialised, like `reqwest::Client::new`.
    pub(crate) fn new() -> Http {
        let client = Client::builder()
            // A redirect would carry the credentials somewhere the runbook
            // does not name.
            .redirect(redirect::Policy::none())
            .timeout(CALL_TIMEOUT)
            .user_agent(concat!("accessbot/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client for directory providers could not be built (TLS backend failed to initialise)");
        Http { client }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Sends `request` and reads the whole answer. A transport failure is a
    /// retryable [`DirectoryError`] that names no URL (paths hold emails).
    pub(crate) async fn send(
        &self,
        at: &At,
        request: RequestBuilder,
    ) -> Result<Answer, DirectoryError> {
        let started = Instant::now();
        let sent = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>(Answer {
                status,
                headers,
                body,
            })
        }
        .await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match sent {
            Ok(answer) => {
                tracing::debug!(provider = at.provider, runbook = %at.runbook, step = %at.step, status = answer.status, elapsed_ms, "directory call");
                Ok(answer)
            }
            Err(error) => {
                let error = error.without_url();
                let mut detail = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    detail.push_str(": ");
                    detail.push_str(&cause.to_string());
                    source = cause.source();
                }
                tracing::warn!(provider = at.provider, runbook = %at.runbook, step = %at.step, elapsed_ms, error = %detail, "directory call failed");
                Err(at.fail(Why::Transport {
                    timed_out: error.is_timeout(),
                    detail,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_wait_an_api_asks_for_is_read_from_retry_after_or_oktas_reset() {
        let now = DateTime::parse_from_rfc2822("Tue, 01 Jul 2025 10:00:00 GMT")
            .unwrap()
            .with_timezone(&Utc);
        let check = |pairs: &[(&'static str, &str)], status, expected: Option<u64>| {
            assert_eq!(
                asked_wait(&headers(pairs), status, now),
                expected.map(Duration::from_secs),
                "{pairs:?}"
            );
        };
        check(&[("retry-after", "7")], 429, Some(7));
        check(
            &[("retry-after", "Tue, 01 Jul 2025 10:00:30 GMT")],
            503,
            Some(30),
        );
        check(
            &[("retry-after", "Tue, 01 Jul 2025 09:00:00 GMT")],
            503,
            Some(0),
        );
        check(&[("retry-after", "99999")], 429, Some(3600));
        check(&[("retry-after", "soon")], 429, None);
        // Okta: the reset time against the server's own clock.
        let reset = (now + chrono::Duration::seconds(12))
            .timestamp()
            .to_string();
        check(
            &[
                ("x-rate-limit-reset", &reset),
                ("date", "Tue, 01 Jul 2025 10:00:02 GMT"),
            ],
            429,
            Some(10),
        );
        check(&[("x-rate-limit-reset", &reset)], 429, Some(12));
        check(&[("x-rate-limit-reset", &reset)], 200, None);
        check(&[], 429, None);
    }

    #[test]
    fn the_apis_own_message_is_kept_whatever_its_shape() {
        let answer = |body: &str| Answer {
            status: 400,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        };
        for (body, expected) in [
            (
                r#"{"errorCode":"E0000007","errorSummary":"Not found: Resource not found: x (User)","errorCauses":[]}"#,
                "Not found: Resource not found: x (User) [E0000007]",
            ),
            (
                r#"{"errorCode":"E0000001","errorSummary":"Api validation failed: login","errorCauses":[{"errorSummary":"login: invalid"}]}"#,
                "Api validation failed: login (login: invalid) [E0000001]",
            ),
            (
                r#"{"error":{"code":409,"message":"Member already exists.","errors":[]}}"#,
                "Member already exists.",
            ),
            (
                r#"{"error":{"code":"Request_BadRequest","message":"One or more added object references already exist"}}"#,
                "One or more added object references already exist [Request_BadRequest]",
            ),
            (
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1"}"#,
                "AADSTS7000215: Invalid client secret provided.",
            ),
            (r#"{"error":"invalid_grant"}"#, "invalid_grant"),
            (
                "<html>Bad \u{1b}[31mGateway</html>",
                "<html>Bad [31mGateway</html>",
            ),
        ] {
            assert_eq!(answer(body).api_message(), expected, "{body}");
        }
    }

    #[test]
    fn one_path_segment_stays_one() {
        assert_eq!(segment("a+b@x.com/.."), "a%2Bb%40x.com%2F..");
    }
}
