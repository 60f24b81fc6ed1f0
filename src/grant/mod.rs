//! Grant providers: the one trait every way of granting and revoking access
//! implements, the context a provider is given, the errors it can report, and
//! the registry that picks a provider by the name a runbook's `[grant]` table
//! uses. `command` runs a program and `webhook` POSTs signed JSON; each lives
//! in its own file. The workflow only ever talks to [`Providers`], so adding a
//! provider (like `slack_usergroup`, which needs the Slack client) is one
//! `register` call and touches nothing here.

mod command;
mod slack_usergroup;
mod webhook;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::duration::format_duration;
use crate::runbook::GrantSpec;

pub use command::CommandProvider;
pub use slack_usergroup::SlackUsergroupProvider;
pub use webhook::{sign_webhook, WebhookProvider};

/// Whether a provider is asked to give access or take it away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Grant,
    Revoke,
}

impl Action {
    /// The lowercase name scripts and webhooks see: `grant` or `revoke`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Grant => "grant",
            Action::Revoke => "revoke",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a provider may need to know about the request it acts on.
#[derive(Debug, Clone)]
pub struct GrantContext {
    pub request_id: String,
    pub runbook_id: String,
    /// Slack user ID of the person who gets (or loses) access.
    pub user_id: String,
    /// From the Slack profile; `None` when Slack did not share it.
    pub user_email: Option<String>,
    /// When the grant ends; on revoke, when it was due to end.
    pub expires_at: DateTime<Utc>,
    pub reason: String,
    /// The directory holding the runbook file; relative command paths
    /// resolve against it and commands run in it.
    pub runbook_dir: PathBuf,
}

impl GrantContext {
    /// `expires_at` as scripts and webhooks see it: RFC 3339, whole seconds, `Z`.
    pub fn expires_at_rfc3339(&self) -> String {
        self.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

/// How a program ended when it did not exit with 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    Code(i32),
    Signal(i32),
    /// Neither a code nor a signal was reported (should not happen on Unix).
    Unknown,
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Code(code) => write!(f, "exited with code {code}"),
            ExitReason::Signal(signal) => write!(f, "was killed by signal {signal}"),
            ExitReason::Unknown => f.write_str("exited with an unknown status"),
        }
    }
}

/// Why a grant or revoke failed. Messages are meant for the people who fix
/// the runbook: they name the program, URL origin or variable involved, and
/// never contain a secret (webhook URLs are shown without path or query,
/// because those often carry tokens).
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("{what} timed out after {}", format_duration(*.after))]
    TimedOut { what: String, after: Duration },

    #[error("`{program}` {exit}{}", stderr_suffix(.stderr_tail))]
    Failed {
        program: String,
        exit: ExitReason,
        /// The last ~500 bytes of stderr, control characters removed.
        stderr_tail: String,
    },

    #[error(
        "could not start `{}`: {source}; is it executable? relative paths resolve against the runbook directory {}",
        .program.display(),
        .runbook_dir.display()
    )]
    Spawn {
        program: PathBuf,
        runbook_dir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("webhook {origin} answered {status}{}", body_suffix(.body))]
    WebhookStatus {
        /// Scheme, host and port of the URL; the path may hold a token.
        origin: String,
        status: u16,
        /// The first 300 bytes of the response body, control characters removed.
        body: String,
    },

    #[error("could not reach webhook {origin}: {source}")]
    WebhookTransport {
        origin: String,
        /// Built with `without_url()`, so it cannot leak the path or query.
        #[source]
        source: reqwest::Error,
    },

    #[error("environment variable `{var}` holds the webhook secret but is not set or is empty; set it where accessbot runs")]
    MissingSecret { var: String },

    #[error("Slack user group {usergroup}: {reason}")]
    Slack { usergroup: String, reason: String },

    #[error("grant provider `{provider}` is not available in this accessbot")]
    Unsupported { provider: String },

    #[error("grant provider `{provider}` cannot run this grant: {problem}")]
    Misconfigured {
        provider: &'static str,
        problem: String,
    },
}

impl GrantError {
    /// Whether trying the same run again later can succeed. A program that
    /// cannot start, a missing secret or a refused request (4xx) fails the
    /// same way every time: it needs a person, not a retry.
    pub fn is_retryable(&self) -> bool {
        match self {
            GrantError::TimedOut { .. }
            | GrantError::Failed { .. }
            | GrantError::WebhookTransport { .. }
            | GrantError::Slack { .. } => true,
            GrantError::WebhookStatus { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            GrantError::Spawn { .. }
            | GrantError::MissingSecret { .. }
            | GrantError::Unsupported { .. }
            | GrantError::Misconfigured { .. } => false,
        }
    }

    /// How long the target asked us to wait before the next try, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// The spec handed to `provider` is for another provider.
    pub(crate) fn wrong_provider(provider: &'static str, spec: &GrantSpec) -> GrantError {
        GrantError::Misconfigured {
            provider,
            problem: format!(
                "the runbook's grant uses provider `{}`",
                spec.provider_name()
            ),
        }
    }
}

fn stderr_suffix(tail: &str) -> String {
    if tail.is_empty() {
        "; stderr was empty".to_string()
    } else {
        format!("; stderr ends with: {tail}")
    }
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// Turns raw program or server output into text that is safe to put in a
/// log line or a Slack message: invalid UTF-8 replaced, control characters
/// (terminal escapes, carriage returns) removed, newlines kept, ends trimmed.
pub(crate) fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect::<String>()
        .trim()
        .to_string()
}

/// The future every provider returns: boxed so the trait stays object safe.
pub type GrantFuture<'a> = Pin<Box<dyn Future<Output = Result<(), GrantError>> + Send + 'a>>;

/// One way of granting and revoking access, named like the runbook's
/// `grant.provider` value.
pub trait GrantProvider: Send + Sync {
    /// The name runbooks use, equal to [`GrantSpec::provider_name`].
    fn name(&self) -> &'static str;

    /// Grants or revokes; `Ok` only when the target system confirmed it.
    fn run<'a>(
        &'a self,
        spec: &'a GrantSpec,
        action: Action,
        ctx: &'a GrantContext,
    ) -> GrantFuture<'a>;
}

/// The providers this accessbot can use, by name.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<&'static str, Arc<dyn GrantProvider>>,
}

impl Providers {
    /// No providers at all; every `run` fails with [`GrantError::Unsupported`].
    pub fn new() -> Self {
        Self::default()
    }

    /// `command` and `webhook`, the providers that need nothing but the runbook.
    pub fn with_builtin() -> Self {
        let mut providers = Self::new();
        providers.register(Arc::new(CommandProvider::new()));
        providers.register(Arc::new(WebhookProvider::new()));
        providers
    }

    /// Adds a provider under its `name()`, replacing one of the same name.
    pub fn register(&mut self, provider: Arc<dyn GrantProvider>) {
        self.by_name.insert(provider.name(), provider);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn GrantProvider>> {
        self.by_name.get(name).cloned()
    }

    /// Registered names in order, for startup checks against the runbooks.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }

    /// Runs `action` with the provider the spec names.
    pub async fn run(
        &self,
        spec: &GrantSpec,
        action: Action,
        ctx: &GrantContext,
    ) -> Result<(), GrantError> {
        let provider =
            self.by_name
                .get(spec.provider_name())
                .ok_or_else(|| GrantError::Unsupported {
                    provider: spec.provider_name().to_string(),
                })?;
        provider.run(spec, action, ctx).await
    }
}

impl fmt::Debug for Providers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}
