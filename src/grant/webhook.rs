//! The `webhook` provider: POSTs a signed JSON description of the grant or
//! revoke to the runbook's URL and treats any 2xx answer as success. It owns
//! its `[grant]` keys (`url`, `secret_env`, `timeout`) and their checks, the
//! `Retry-After` a refusing receiver sends, and the wire format receivers
//! implement: the body, the `X-Accessbot-Timestamp`
//! and `X-Accessbot-Signature` headers, and [`sign_webhook`], the one
//! implementation of the signature that the tests and the docs use too.
//!
//! The signature is `v1=` followed by the lowercase hex HMAC-SHA256, keyed
//! with the bytes of the secret, of `v1:<timestamp>:<body>`. The secret is read
//! from the environment variable the runbook names on every call, so it can be
//! rotated without a restart, and it never appears in errors or logs. Neither
//! does the URL's path or query, which often carry a token: messages name only
//! the origin (`https://grants.example.com`).

use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{redirect, Client, Response, Url};
use serde::Serialize;
use sha2::Sha256;

use super::{
    printable, Action, GrantContext, GrantError, GrantFuture, Provider, Services, DEFAULT_TIMEOUT,
};
use crate::runbook::{is_env_name, shorten, GrantTable};

/// How much of an error response's body is quoted in the error.
const BODY_IN_ERROR: usize = 300;
/// The longest `Retry-After` a receiver is taken at its word for.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// A `webhook` runbook's `[grant]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSpec {
    /// An http or https URL; its path and query may hold a token.
    pub url: String,
    /// The environment variable holding the HMAC key.
    pub secret_env: String,
    pub timeout: Duration,
}

impl Provider for WebhookProvider {
    const NAME: &'static str = "webhook";
    const KEYS: &'static [&'static str] = &["url", "secret_env", "timeout"];
    type Spec = WebhookSpec;

    fn parse(t: &mut GrantTable<'_>) -> Option<WebhookSpec> {
        let found = t.string("url");
        let url = t.require(
            "url",
            found,
            r#"add url = "https://…", the address accessbot POSTs grants and revokes to"#,
        );
        let url = url.and_then(|url| {
            if parse_url(url.value.trim()).is_ok() {
                return Some(url.value.trim().to_string());
            }
            t.report(
                url.line,
                "url",
                format!(
                    "`{}` is not an http or https URL; write the full address, e.g. https://automation.example.com/accessbot",
                    shorten(&url.value)
                ),
            );
            None
        });
        let found = t.string("secret_env");
        let secret_env = t.require(
            "secret_env",
            found,
            r#"add secret_env = "MY_WEBHOOK_SECRET", the name of the environment variable holding the signing secret"#,
        );
        let secret_env = secret_env.and_then(|name| {
            if is_env_name(&name.value) {
                return Some(name.value);
            }
            t.report(
                name.line,
                "secret_env",
                format!(
                    "`{}` is not an environment variable name; write the variable's name (letters, digits, underscores), not the secret itself",
                    shorten(&name.value)
                ),
            );
            None
        });
        let timeout = t.duration_or("timeout", DEFAULT_TIMEOUT);
        Some(WebhookSpec {
            url: url?,
            secret_env: secret_env?,
            timeout: timeout?,
        })
    }

    fn env_needed(spec: &WebhookSpec) -> Vec<String> {
        vec![spec.secret_env.clone()]
    }

    fn start(_services: &Services) -> Option<Self> {
        Some(Self::new())
    }

    fn apply<'a>(
        &'a self,
        spec: &'a WebhookSpec,
        action: Action,
        ctx: &'a GrantContext,
    ) -> GrantFuture<'a> {
        Box::pin(self.send(spec, action, ctx))
    }
}

/// Sends grants and revokes to the URL of a [`WebhookSpec`].
#[derive(Debug, Clone)]
pub struct WebhookProvider {
    /// Shared by every call so connections are reused.
    client: Client,
}

impl WebhookProvider {
    /// # Panics
    /// When the TLS backend cannot be initialised, like `reqwest::Client::new`.
    pub fn new() -> Self {
        let client = Client::builder()
            // A redirect would resend the signed body somewhere the runbook
            // does not name; a receiver that moved must be updated instead.
            .redirect(redirect::Policy::none())
            .user_agent(concat!("accessbot/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client for webhooks could not be built (TLS backend failed to initialise)");
        Self { client }
    }
}

impl Default for WebhookProvider {
    fn default() -> Self {
        Self::new()
    }
}

/// The JSON body receivers get.
#[derive(Serialize)]
struct Payload<'a> {
    action: Action,
    request_id: &'a str,
    runbook: &'a str,
    user: PayloadUser<'a>,
    expires_at: String,
    reason: &'a str,
    /// The runbook's inputs as given, `{"ticket": "CS-1234"}`; `{}` when none.
    inputs: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct PayloadUser<'a> {
    id: &'a str,
    /// `null` when Slack did not share the address.
    email: Option<&'a str>,
}

/// The `X-Accessbot-Signature` value for a body sent at `ts` (unix seconds):
/// `v1=` and the lowercase hex HMAC-SHA256 of `v1:<ts>:<body>` keyed with `secret`.
pub fn sign_webhook(secret: &[u8], ts: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(format!("v1:{ts}:").as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl WebhookProvider {
    #[tracing::instrument(
        skip_all,
        fields(provider = "webhook", request_id = %ctx.request_id, runbook = %ctx.runbook_id, %action)
    )]
    async fn send(
        &self,
        spec: &WebhookSpec,
        action: Action,
        ctx: &GrantContext,
    ) -> Result<(), GrantError> {
        let WebhookSpec {
            url,
            secret_env,
            timeout,
        } = spec;
        let url = parse_url(url)?;
        let origin = url.origin().ascii_serialization();
        let secret = read_secret(secret_env)?;

        let payload = Payload {
            action,
            request_id: &ctx.request_id,
            runbook: &ctx.runbook_id,
            user: PayloadUser {
                id: &ctx.user_id,
                email: ctx.user_email.as_deref(),
            },
            expires_at: ctx.expires_at_rfc3339(),
            reason: &ctx.reason,
            inputs: ctx
                .inputs
                .iter()
                .map(|(id, value)| (id.clone(), serde_json::Value::from(value.as_str())))
                .collect(),
        };
        let body = serde_json::to_vec(&payload).expect("a payload of strings always serialises");
        let ts = Utc::now().timestamp();
        let signature = sign_webhook(&secret, ts, &body);
        drop(secret);

        let started = Instant::now();
        let sent = self
            .client
            .post(url)
            .timeout(*timeout)
            .header(CONTENT_TYPE, "application/json")
            .header("X-Accessbot-Timestamp", ts.to_string())
            .header("X-Accessbot-Signature", signature)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                let error = transport_error(error, &origin, *timeout);
                tracing::warn!(%origin, request_id = %ctx.request_id, duration_ms = elapsed_ms(started), error = %error, "webhook failed");
                return Err(error);
            }
        };

        let status = response.status();
        if status.is_success() {
            tracing::info!(%origin, request_id = %ctx.request_id, status = status.as_u16(), duration_ms = elapsed_ms(started), "webhook succeeded");
            return Ok(());
        }
        let retry_after = retry_after(&response, Utc::now());
        let body = body_head(response, BODY_IN_ERROR).await;
        let error = GrantError::WebhookStatus {
            origin: origin.clone(),
            status: status.as_u16(),
            body: printable(&body),
            retry_after,
        };
        tracing::warn!(%origin, request_id = %ctx.request_id, duration_ms = elapsed_ms(started), error = %error, "webhook refused");
        Err(error)
    }
}

/// The URL is not echoed back: its path or query may be the secret part.
fn parse_url(url: &str) -> Result<Url, GrantError> {
    let misconfigured = |problem: &str| GrantError::Misconfigured {
        provider: WebhookProvider::NAME,
        problem: problem.to_string(),
    };
    let url = Url::parse(url).map_err(|_| misconfigured("`url` is not a valid URL"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(misconfigured(
            "`url` must be an http:// or https:// URL with a host",
        ));
    }
    Ok(url)
}

/// How long a refusing receiver asked us to wait: its `Retry-After`, in
/// seconds or as an HTTP date, at most [`RETRY_AFTER_MAX`]. A date in the
/// past means no wait; an answer that is neither form is ignored.
fn retry_after(response: &Response, now: DateTime<Utc>) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&Utc) - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(RETRY_AFTER_MAX))
}

/// The secret's bytes, read now so a rotated value is used at once.
fn read_secret(var: &str) -> Result<Vec<u8>, GrantError> {
    match std::env::var_os(var) {
        Some(value) if !value.is_empty() => Ok(value.into_vec()),
        _ => Err(GrantError::MissingSecret {
            var: var.to_string(),
        }),
    }
}

fn transport_error(error: reqwest::Error, origin: &str, timeout: Duration) -> GrantError {
    if error.is_timeout() {
        GrantError::TimedOut {
            what: format!("webhook {origin}"),
            after: timeout,
        }
    } else {
        GrantError::WebhookTransport {
            origin: origin.to_string(),
            source: error.without_url(),
        }
    }
}

/// Up to `max` bytes from the start of the body, cut on a character
/// boundary; a body that fails halfway is quoted as far as it arrived.
async fn body_head(mut response: Response, max: usize) -> Vec<u8> {
    let mut head = Vec::new();
    while head.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    if head.len() > max {
        let mut end = max;
        while end > max.saturating_sub(3) && (head[end] & 0b1100_0000) == 0b1000_0000 {
            end -= 1;
        }
        head.truncate(end);
    }
    head
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use crate::runbook::fixture::{check, VALID};

    #[test]
    fn reports_bad_webhook_keys() {
        let webhook = |body: &str| {
            let grant_start = VALID.find("[grant]").unwrap();
            format!(
                "{}[grant]\nprovider = \"webhook\"\n{body}\n",
                &VALID[..grant_start]
            )
        };
        check(
            &webhook("url = \"https://x.example.com\""),
            "grant.secret_env",
            "missing",
        );
        check(&webhook("secret_env = \"S\""), "grant.url", "missing");
        check(
            &webhook("url = \"ftp://x.example.com\"\nsecret_env = \"S\""),
            "grant.url",
            "is not an http or https URL",
        );
        check(
            &webhook("url = \"https://x.example.com\"\nsecret_env = \"hunter2 !\""),
            "grant.secret_env",
            "not the secret itself",
        );
    }
}
