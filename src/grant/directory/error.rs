//! Why a directory call failed, as one line an operator can act on:
//! [`DirectoryError`] names the service, the runbook, the step ([`Step`],
//! at [`At`]) and the cause ([`Why`]): the HTTP status and the API's own
//! message with a hint, a transport failure, a missing or unusable secret,
//! a person with no identity or no account. It implements
//! [`ProviderError`], so the workflow knows whether a retry can help, how
//! long the API asked to wait, and whether the directory was touched.

use std::fmt;
use std::time::Duration;

use super::CALL_TIMEOUT;
use crate::grant::{GrantError, ProviderError};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::directory::Answer;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn errors_say_the_service_step_runbook_status_and_message() {
        let at = At::new("okta", "Okta", "billing-portal-admin").step(Step::Add);
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("3"));
        let answer = Answer {
            status: 403,
            headers,
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
}
