//! What the three directory providers (`okta`, `google_workspace`,
//! `entra_id`) share: one HTTP client, the mapping of a directory API's
//! answer to a [`GrantError`] that keeps the HTTP status, the API's own
//! error message (Okta's `errorSummary`, Google's and Graph's
//! `error.message`, an OAuth server's `error_description`), the step that
//! failed, the runbook and the wait the API asked for; a cache of access
//! tokens that asks for a new one shortly before the old one expires and
//! makes concurrent calls share one token request; and the `[grant]` key
//! checks they have in common (service URLs, variable names,
//! `end_sessions`).
//!
//! Secrets (API tokens, private keys, client secrets, access tokens) are read
//! from the environment on each use, kept in [`Secret`], and never put in a
//! message: errors name the variable, never its value.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{redirect, Client, RequestBuilder, Url};
use serde_json::Value;

use super::{printable, GrantContext, GrantError, ProviderError};
use crate::config::Secret;
use crate::runbook::{is_env_name, shorten, GrantTable};

/// How long one call to a directory API may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait an API's `Retry-After` is taken at its word for.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);
/// How much of an API's error message is quoted.
const MESSAGE_MAX: usize = 300;
/// A cached token is replaced this long before it expires, so a call never
/// goes out with a token about to lapse.
const REFRESH_BEFORE: Duration = Duration::from_secs(120);

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Token,
    FindUser,
    Add,
    Remove,
    Verify,
    EndSessions,
    ListMembers,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Token => "get an access token",
            Step::FindUser => "find the user",
            Step::Add => "add the user to the group",
            Step::Remove => "remove the user from the group",
            Step::Verify => "read the user's group memberships back",
            Step::EndSessions => "end the user's sessions",
            Step::ListMembers => "list the group's members",
        })
    }
}

/// Where a call happens: which service, for which runbook, at which step.
#[derive(Debug, Clone)]
pub(crate) struct At {
    /// The provider's name as runbooks write it (`okta`).
    pub provider: &'static str,
    /// The service as operators call it (`Okta`).
    pub service: &'static str,
    pub runbook: String,
    pub step: Step,
}

impl At {
    pub(crate) fn new(provider: &'static str, service: &'static str, runbook: &str) -> At {
        At {
            provider,
            service,
            runbook: runbook.to_string(),
            step: Step::FindUser,
        }
    }

    /// The same place, at `step`.
    pub(crate) fn step(&self, step: Step) -> At {
        At {
            step,
            ..self.clone()
        }
    }

    pub(crate) fn fail(&self, why: Why) -> DirectoryError {
        DirectoryError(Box::new(Failure {
            at: self.clone(),
            why,
        }))
    }
}

/// Why a directory call failed.
#[derive(Debug)]
pub(crate) enum Why {
    /// The API answered with an error.
    Status {
        status: u16,
        /// The API's own words, control characters removed, shortened.
        message: String,
        retry_after: Option<Duration>,
        retryable: bool,
        /// What the operator can do about it, when we know.
        hint: Option<String>,
    },
    /// The API could not be reached, or did not answer in time.
    Transport { detail: String, timed_out: bool },
    /// The environment variable holding the secret is not set.
    MissingSecret { var: String },
    /// The secret is there but unusable (a key file that is not JSON).
    BadSecret { var: String, problem: String },
    /// Neither Slack nor `[identities]` says who the person is in the target.
    NoIdentity { user_id: String },
    /// The directory has no account for the person.
    UnknownUser { identity: String },
    /// The API answered success with a body we cannot read.
    Unreadable { status: u16, problem: String },
}

/// A failed directory call, shown to operators as one line naming the
/// service, the runbook, the step, what the API said and the fix.
/// Boxed: it travels in every `Result` of the directory providers.
#[derive(Debug)]
pub struct DirectoryError(Box<Failure>);

#[derive(Debug)]
struct Failure {
    at: At,
    why: Why,
}

impl DirectoryError {
    /// A hint to add to an API error (`Why::Status`); other kinds keep theirs.
    pub(crate) fn with_hint(mut self, text: impl Into<String>) -> Self {
        if let Why::Status { hint, .. } = &mut self.0.why {
            *hint = Some(text.into());
        }
        self
    }

    /// Makes an API error retryable (Google's 403 `rateLimitExceeded`).
    pub(crate) fn retryable(mut self) -> Self {
        if let Why::Status { retryable, .. } = &mut self.0.why {
            *retryable = true;
        }
        self
    }
}

impl fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let At {
            service,
            runbook,
            step,
            ..
        } = &self.0.at;
        if runbook.is_empty() {
            write!(f, "{service}: could not {step}: ")?;
        } else {
            write!(f, "{service}: could not {step} (runbook `{runbook}`): ")?;
        }
        match &self.0.why {
            Why::Status {
                status,
                message,
                hint,
                ..
            } => {
                write!(f, "HTTP {status}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                if let Some(hint) = hint {
                    write!(f, "; {hint}")?;
                }
                Ok(())
            }
            Why::Transport { detail, timed_out } => {
                if *timed_out {
                    write!(f, "no answer within {}s", CALL_TIMEOUT.as_secs())
                } else {
                    write!(f, "could not reach the API: {detail}")
                }
            }
            Why::MissingSecret { var } => write!(
                f,
                "environment variable `{var}` is not set or is empty; set it where accessbot runs and restart it"
            ),
            Why::BadSecret { var, problem } => write!(
                f,
                "environment variable `{var}` {problem}"
            ),
            Why::NoIdentity { user_id } => write!(
                f,
                "accessbot does not know who {user_id} is in {service}: Slack shares no email for them and the config's [identities] has no entry; add {user_id} = \"their.login@example.com\" under [identities]"
            ),
            Why::UnknownUser { identity } => write!(
                f,
                "{service} has no user `{identity}`; create the account, or map the person to their {service} login under [identities] in the config"
            ),
            Why::Unreadable { status, problem } => {
                write!(f, "HTTP {status} with an answer accessbot cannot read: {problem}")
            }
        }
    }
}

impl std::error::Error for DirectoryError {}

impl ProviderError for DirectoryError {
    fn is_retryable(&self) -> bool {
        match &self.0.why {
            Why::Status { retryable, .. } => *retryable,
            Why::Transport { .. } => true,
            Why::Unreadable { .. } => true,
            Why::MissingSecret { .. }
            | Why::BadSecret { .. }
            | Why::NoIdentity { .. }
            | Why::UnknownUser { .. } => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match &self.0.why {
            Why::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn target_untouched(&self) -> bool {
        // Before the add or remove nothing in the directory changed.
        matches!(self.0.at.step, Step::Token | Step::FindUser)
            || matches!(
                self.0.why,
                Why::MissingSecret { .. } | Why::BadSecret { .. } | Why::NoIdentity { .. }
            )
    }
}

impl From<DirectoryError> for GrantError {
    fn from(error: DirectoryError) -> GrantError {
        GrantError::Provider {
            provider: error.0.at.provider,
            error: Box::new(error),
        }
    }
}

/// The person's identity in the target (see [`GrantContext::identity`]).
pub(crate) fn identity<'c>(at: &At, ctx: &'c GrantContext) -> Result<&'c str, DirectoryError> {
    match ctx.identity.as_deref().map(str::trim) {
        Some(identity) if !identity.is_empty() => Ok(identity),
        _ => Err(at.fail(Why::NoIdentity {
            user_id: ctx.user_id.clone(),
        })),
    }
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
    pub access_token: String,
    /// Seconds; an hour when the server does not say.
    #[serde(default = "an_hour")]
    pub expires_in: u64,
}

fn an_hour() -> u64 {
    3600
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
    pub(crate) fn into_token(self) -> (Secret, Duration) {
        (
            Secret::new(self.access_token),
            Duration::from_secs(self.expires_in),
        )
    }
}

// ---------------------------------------------------------------- runbook keys

/// Checks a service URL: `https://` (or `http://` to this machine, for a
/// local test server), a host, no query or fragment. Returns it without a
/// trailing slash.
pub(crate) fn check_service_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_end_matches('/');
    let url = Url::parse(trimmed).map_err(|_| "is not a URL".to_string())?;
    let local = matches!(
        url.host_str(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    );
    match url.scheme() {
        "https" => {}
        "http" if local => {}
        "http" => {
            return Err(
                "uses http://; credentials must travel over https:// (http is accepted only for a test server on this machine)"
                    .into(),
            )
        }
        _ => return Err("is not an https:// URL".into()),
    }
    if url.host().is_none() {
        return Err("has no host".into());
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("must not have a query, a fragment or a user name".into());
    }
    Ok(trimmed.to_string())
}

/// A required or defaulted service URL key, checked (see
/// [`check_service_url`]). `default` is `None` for required keys, which then
/// report `how` when missing.
pub(crate) fn service_url(
    t: &mut GrantTable<'_>,
    key: &str,
    default: Option<&str>,
    how: &str,
) -> Option<String> {
    let found = t.string(key);
    let url = match default {
        Some(default) => match t.optional(key, found)? {
            Some(url) => url,
            None => return Some(default.to_string()),
        },
        None => t.require(key, found, how)?,
    };
    match check_service_url(&url.value) {
        Ok(url) => Some(url),
        Err(problem) => {
            t.report(
                url.line,
                key,
                format!("`{}` {problem}; {how}", shorten(&url.value)),
            );
            None
        }
    }
}

/// A required key naming an environment variable that holds a secret.
pub(crate) fn env_key(t: &mut GrantTable<'_>, key: &str, how: &str) -> Option<String> {
    let found = t.string(key);
    let name = t.require(key, found, how)?;
    if is_env_name(&name.value) {
        return Some(name.value);
    }
    t.report(
        name.line,
        key,
        format!(
            "`{}` is not an environment variable name; write the variable's name (letters, digits, underscores), not the secret itself",
            shorten(&name.value)
        ),
    );
    None
}

/// A required key of plain text (an ID, an email), trimmed, not empty;
/// `valid` says what is wrong with a value, if anything.
pub(crate) fn text_key(
    t: &mut GrantTable<'_>,
    key: &str,
    how: &str,
    valid: impl Fn(&str) -> Result<(), String>,
) -> Option<String> {
    let found = t.string(key);
    let text = t.require(key, found, how)?;
    let value = text.value.trim();
    let problem = if value.is_empty() {
        Err("is empty".to_string())
    } else {
        valid(value)
    };
    match problem {
        Ok(()) => Some(value.to_string()),
        Err(problem) => {
            let shown = if value.is_empty() {
                String::new()
            } else {
                format!("`{}` ", shorten(value))
            };
            t.report(text.line, key, format!("{shown}{problem}; {how}"));
            None
        }
    }
}

/// The optional `end_sessions` key: `false` when absent.
pub(crate) fn end_sessions(t: &mut GrantTable<'_>) -> Option<bool> {
    let found = t.bool("end_sessions");
    t.optional("end_sessions", found)
        .map(|found| found.unwrap_or(false))
}

/// Whether `text` is a GUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
pub(crate) fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(part, len)| part.len() == len && part.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether `text` looks like an email address (something@domain.tld).
pub(crate) fn is_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !text.chars().any(|c| c.is_whitespace() || c.is_control())
                && !domain.contains('@')
        }
        None => false,
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
    fn errors_say_the_service_step_runbook_status_and_message() {
        let at = At::new("okta", "Okta", "billing-portal-admin").step(Step::Add);
        let answer = Answer {
            status: 403,
            headers: headers(&[("retry-after", "3")]),
            body: br#"{"errorCode":"E0000006","errorSummary":"You do not have permission to perform the requested action"}"#.to_vec(),
        };
        let error = answer
            .error(&at)
            .with_hint("give the token's admin the Group Admin role");
        assert_eq!(
            error.to_string(),
            "Okta: could not add the user to the group (runbook `billing-portal-admin`): HTTP 403: You do not have permission to perform the requested action [E0000006]; give the token's admin the Group Admin role"
        );
        assert!(!error.is_retryable());
        assert!(!error.target_untouched());
        let error: GrantError = error.into();
        assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
        assert!(!error.target_untouched());

        let missing = at.step(Step::Token).fail(Why::MissingSecret {
            var: "OKTA_API_TOKEN".into(),
        });
        assert!(missing.target_untouched());
        assert!(missing.to_string().contains("`OKTA_API_TOKEN` is not set"));
    }

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
    fn service_urls_must_be_https_except_to_this_machine() {
        assert_eq!(
            check_service_url("https://acme.okta.com/").as_deref(),
            Ok("https://acme.okta.com")
        );
        assert!(check_service_url("http://127.0.0.1:8080").is_ok());
        assert!(check_service_url("http://acme.okta.com")
            .unwrap_err()
            .contains("https://"));
        assert!(check_service_url("acme.okta.com").is_err());
        assert!(check_service_url("https://acme.okta.com?x=1").is_err());
        assert!(is_guid("8f3c2a10-1b2c-4d5e-9f60-718293a4b5c6"));
        assert!(!is_guid("HR System Admins"));
        assert!(is_email("payroll-exports@acme.com"));
        assert!(!is_email("payroll exports"));
        assert_eq!(segment("a+b@x.com/.."), "a%2Bb%40x.com%2F..");
    }
}
