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

/// The exit code by which a program says that trying again will not help
/// (78, `EX_CONFIG` in sysexits.h: something is missing or misconfigured).
/// accessbot then stops retrying and asks a person; runbooks/README.md
/// documents it for script authors.
pub const EXIT_WILL_NOT_SUCCEED: i32 = 78;

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
            ExitReason::Code(EXIT_WILL_NOT_SUCCEED) => write!(
                f,
                "exited with code {EXIT_WILL_NOT_SUCCEED} (it will not succeed if tried again)"
            ),
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

    #[error("Slack user group {usergroup}: <@{user}> is the last member, and Slack cannot empty a group, so the access cannot be taken away by removing them; add a permanent member (e.g. the runbook owner) to the group, then resolve this request")]
    LastMember { usergroup: String, user: String },

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
    /// cannot start (not there, not executable, a NUL byte in an argument
    /// or its environment), a program that exits with
    /// [`EXIT_WILL_NOT_SUCCEED`], a missing secret, a refused request (4xx)
    /// or a group Slack will not empty fails the same way every time: it
    /// needs a person, not a retry. A start that failed for want of
    /// resources (processes, memory, file descriptors) is retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            GrantError::TimedOut { .. } | GrantError::WebhookTransport { .. } => true,
            GrantError::Failed { exit, .. } => *exit != ExitReason::Code(EXIT_WILL_NOT_SUCCEED),
            GrantError::Spawn { source, .. } => start_may_succeed_later(source),
            GrantError::WebhookStatus { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            GrantError::Slack { source, .. } => source.is_retryable(),
            GrantError::Provider { error, .. } => error.is_retryable(),
            GrantError::MissingSecret { .. }
            | GrantError::LastMember { .. }
            | GrantError::Unsupported { .. }
            | GrantError::Misconfigured { .. } => false,
        }
    }

    /// Whether the run failed before anything reached the target system:
    /// the program did not start, the webhook's secret was missing, the
    /// provider could not run the spec. A grant that failed so needs no
    /// clean-up revoke: nothing of it happened.
    pub fn target_untouched(&self) -> bool {
        if let GrantError::Provider { error, .. } = self {
            return error.target_untouched();
        }
        matches!(
            self,
            GrantError::Spawn { .. }
                | GrantError::MissingSecret { .. }
                | GrantError::Unsupported { .. }
                | GrantError::Misconfigured { .. }
        )
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

    /// Whether it failed before anything reached the target system (a
    /// missing secret, a refused token, an unknown user), so a failed grant
    /// needs no clean-up revoke. `false` by default.
    fn target_untouched(&self) -> bool {
        false
    }
}

/// Whether a program that could not be started may start on a later try:
/// only when the system lacked resources for a moment (too many processes,
/// memory, open files) or the file was being written. A missing program,
/// a missing permission or a NUL byte fails the same way every time.
fn start_may_succeed_later(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(
            libc::EAGAIN | libc::ENOMEM | libc::EMFILE | libc::ENFILE | libc::ETXTBSY | libc::EINTR
        )
    )
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
    fn programs_that_cannot_start_or_say_so_are_not_retried() {
        let spawn = |source: std::io::Error| GrantError::Spawn {
            program: "/srv/runbooks/revoke.sh".into(),
            runbook_dir: "/srv/runbooks".into(),
            source,
        };
        let os = std::io::Error::from_raw_os_error;
        for (error, retryable) in [
            (spawn(os(libc::ENOENT)), false),
            (spawn(os(libc::EACCES)), false),
            (spawn(os(libc::ENOEXEC)), false),
            // What std says for a NUL byte in an argument or the environment.
            (
                spawn(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "nul byte found in provided data",
                )),
                false,
            ),
            (spawn(os(libc::EAGAIN)), true),
            (spawn(os(libc::EMFILE)), true),
            (spawn(os(libc::ETXTBSY)), true),
        ] {
            assert_eq!(error.is_retryable(), retryable, "{error}");
            assert!(error.target_untouched(), "{error}");
        }
        let failed = |code| GrantError::Failed {
            program: "./revoke.sh".into(),
            exit: ExitReason::Code(code),
            stderr_tail: "BILLING_TOKEN is not set".into(),
        };
        assert!(failed(1).is_retryable());
        assert!(!failed(1).target_untouched());
        let for_good = failed(EXIT_WILL_NOT_SUCCEED);
        assert!(!for_good.is_retryable());
        assert!(!for_good.target_untouched());
        assert_eq!(
            for_good.to_string(),
            "`./revoke.sh` exited with code 78 (it will not succeed if tried again); stderr ends with: BILLING_TOKEN is not set"
        );
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
            user: "U0ALICE".into(),
        };
        assert!(!last.is_retryable());
        assert_eq!(
            last.to_string(),
            "Slack user group S0ADMINS: <@U0ALICE> is the last member, and Slack cannot empty a group, so the access cannot be taken away by removing them; add a permanent member (e.g. the runbook owner) to the group, then resolve this request"
        );
    }
}
