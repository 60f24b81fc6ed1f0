//! Why a grant or revoke failed: [`GrantError`], typed all the way up to
//! the workflow so it can tell a failure worth retrying (a timeout, a 503, a
//! rate limit, with how long the target asked to wait) from one that needs a
//! person (a program that cannot start, a missing secret, a refused request).
//! Messages name the program, URL origin or variable involved and never a
//! secret.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::GrantSpec;
use crate::duration::format_duration;
use crate::slack::SlackError;

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
        /// What the receiver's `Retry-After` header asked for, if it sent one.
        retry_after: Option<Duration>,
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

    #[error("Slack user group {usergroup}: {source}")]
    Slack {
        usergroup: String,
        #[source]
        source: SlackError,
    },

    #[error("Slack user group {usergroup}: removing the last member would empty the group, which Slack does not allow; keep a permanent member (e.g. the runbook owner) in it")]
    LastMember { usergroup: String },

    /// A failure of a provider whose errors have no variant above: it keeps
    /// them in its own file, as a type implementing [`ProviderError`].
    #[error("{error}")]
    Provider {
        provider: &'static str,
        /// Shown as the message. Not a `#[source]`: thiserror cannot take a
        /// boxed trait object of ours as one.
        error: Box<dyn ProviderError>,
    },

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
    /// cannot start, a missing secret, a refused request (4xx) or a group
    /// Slack will not empty fails the same way every time: it needs a
    /// person, not a retry.
    pub fn is_retryable(&self) -> bool {
        match self {
            GrantError::TimedOut { .. }
            | GrantError::Failed { .. }
            | GrantError::WebhookTransport { .. } => true,
            GrantError::WebhookStatus { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            GrantError::Slack { source, .. } => source.is_retryable(),
            GrantError::Provider { error, .. } => error.is_retryable(),
            GrantError::Spawn { .. }
            | GrantError::MissingSecret { .. }
            | GrantError::LastMember { .. }
            | GrantError::Unsupported { .. }
            | GrantError::Misconfigured { .. } => false,
        }
    }

    /// How long the target asked us to wait before the next try, if it said
    /// (a webhook's or Slack's `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GrantError::WebhookStatus { retry_after, .. } => *retry_after,
            GrantError::Slack { source, .. } => source.retry_after(),
            GrantError::Provider { error, .. } => error.retry_after(),
            _ => None,
        }
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

/// A provider's own error type, for [`GrantError::Provider`]. Its message
/// is shown to operators as it is, so it must name what failed and never a
/// secret.
pub trait ProviderError: std::error::Error + Send + Sync + 'static {
    /// Whether trying the same run again later can succeed.
    fn is_retryable(&self) -> bool;

    /// How long the target asked to wait before the next try, if it said.
    fn retry_after(&self) -> Option<Duration> {
        None
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a provider's own error looks like, e.g. an API that said 429.
    #[derive(Debug, thiserror::Error)]
    #[error("the ticket API answered 429")]
    struct Throttled;

    impl ProviderError for Throttled {
        fn is_retryable(&self) -> bool {
            true
        }

        fn retry_after(&self) -> Option<Duration> {
            Some(Duration::from_secs(12))
        }
    }

    #[test]
    fn a_providers_own_error_says_whether_and_when_to_retry() {
        let error = GrantError::Provider {
            provider: "ticket",
            error: Box::new(Throttled),
        };
        assert!(error.is_retryable());
        assert_eq!(error.retry_after(), Some(Duration::from_secs(12)));
        assert_eq!(error.to_string(), "the ticket API answered 429");
    }

    #[test]
    fn slack_errors_keep_what_slack_said_about_retrying() {
        let slack = |source: SlackError| GrantError::Slack {
            usergroup: "S0ADMINS".into(),
            source,
        };
        let limited = slack(SlackError::RateLimited {
            method: "usergroups.users.update".into(),
            retry_after: Duration::from_secs(30),
        });
        assert!(limited.is_retryable());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(30)));

        let refused = slack(SlackError::Api {
            method: "usergroups.users.update".into(),
            error: "missing_scope".into(),
        });
        assert!(!refused.is_retryable());
        assert_eq!(refused.retry_after(), None);
        assert_eq!(
            refused.to_string(),
            "Slack user group S0ADMINS: Slack usergroups.users.update answered error `missing_scope`"
        );

        let last = GrantError::LastMember {
            usergroup: "S0ADMINS".into(),
        };
        assert!(!last.is_retryable());
        assert_eq!(
            last.to_string(),
            "Slack user group S0ADMINS: removing the last member would empty the group, which Slack does not allow; keep a permanent member (e.g. the runbook owner) in it"
        );
    }
}
