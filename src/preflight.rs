//! The start-up check of the Slack side: is the bot token accepted
//! (`auth.test`), does the audit channel exist, and is the bot in it
//! (`conversations.info`)? A newcomer's most common mistakes show up here,
//! each as one line that says what to do, before anything else happens.
//!
//! A Slack that cannot be reached is not a setup mistake: `serve` starts
//! anyway (revokes must run on time through an outage, and the outbox keeps
//! what Slack misses), says so loudly, reports `degraded` on `/healthz`, and
//! [`recheck_until_verified`] asks again until Slack answers.

use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::retry::{backoff, Timing};
use crate::slack::{SlackClient, SlackError};

/// How many times the start-up check tries a Slack that does not answer.
pub const START_ATTEMPTS: u32 = 3;

/// The longest one try of the check may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// One thing in the Slack setup that stops accessbot from working, with
/// what to do about it. Never holds the token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SetupProblem {
    #[error("Slack refused SLACK_BOT_TOKEN (`{error}`): copy the Bot User OAuth Token (xoxb-...) again from your Slack app's OAuth & Permissions page")]
    TokenRefused { error: String },
    #[error("Slack refused SLACK_BOT_TOKEN (`{error}`): the app was uninstalled or its token revoked; reinstall the app (Install App) and copy the new Bot User OAuth Token (xoxb-...)")]
    TokenRevoked { error: String },
    #[error("ACCESSBOT_AUDIT_CHANNEL {channel}: Slack knows no channel with this ID that the bot can see (`channel_not_found`); copy the ID from the channel's details (C... or G...), and for a private channel first invite the bot with /invite @{bot} in it")]
    ChannelNotFound { channel: String, bot: String },
    #[error("ACCESSBOT_AUDIT_CHANNEL {channel}: the bot is not in #{name}; invite the bot with /invite @{bot} in #{name}")]
    NotInChannel {
        channel: String,
        name: String,
        bot: String,
    },
    #[error("ACCESSBOT_AUDIT_CHANNEL {channel}: #{name} is archived; unarchive it or choose another channel")]
    ChannelArchived { channel: String, name: String },
    #[error("the Slack app lacks a scope {method} needs (`missing_scope`): add {scopes} under OAuth & Permissions (manifest/manifest.yml lists every scope) and reinstall the app")]
    MissingScope {
        method: &'static str,
        scopes: &'static str,
    },
    #[error("Slack {method} answered HTTP {status}; check SLACK_API_URL (normally https://slack.com/api)")]
    WrongApiUrl { method: &'static str, status: u16 },
    #[error("Slack {method} answered `{error}`; check the app's setup against README.md (\"Set up the Slack app from the manifest\")")]
    Other { method: &'static str, error: String },
}

/// What the check found.
#[derive(Debug, Clone, PartialEq)]
pub enum SlackCheck {
    Passed,
    /// Slack answered, and these must be fixed.
    Problems(Vec<SetupProblem>),
    /// Slack did not answer (network, 5xx, rate limit): nothing is known.
    Unreachable(String),
}

/// Asks Slack once about the token and `audit_channel`.
pub async fn check_slack(slack: &SlackClient, audit_channel: &str) -> SlackCheck {
    let bot = match slack.auth_test().await {
        Ok(me) if me.name.is_empty() => "accessbot".to_string(),
        Ok(me) => me.name,
        Err(e) => return unanswered(&e).unwrap_or_else(|| token_problem(e)),
    };
    let problem = match slack.channel_info(audit_channel).await {
        Ok(info) => {
            let name = if info.name.is_empty() {
                audit_channel.to_string()
            } else {
                info.name
            };
            if info.is_archived {
                Some(SetupProblem::ChannelArchived {
                    channel: audit_channel.to_string(),
                    name,
                })
            } else if !info.is_member {
                Some(SetupProblem::NotInChannel {
                    channel: audit_channel.to_string(),
                    name,
                    bot,
                })
            } else {
                None
            }
        }
        Err(e) => {
            if let Some(unreachable) = unanswered(&e) {
                return unreachable;
            }
            Some(match e.api_error().unwrap_or_default() {
                "channel_not_found" => SetupProblem::ChannelNotFound {
                    channel: audit_channel.to_string(),
                    bot,
                },
                "missing_scope" => SetupProblem::MissingScope {
                    method: "conversations.info",
                    scopes: "channels:read and groups:read",
                },
                _ => token_problem_or_other("conversations.info", e),
            })
        }
    };
    match problem {
        None => SlackCheck::Passed,
        Some(p) => SlackCheck::Problems(vec![p]),
    }
}

/// [`check_slack`], tried up to [`START_ATTEMPTS`] times while Slack does
/// not answer, waiting `timing`'s backoff in between.
pub async fn check_at_start(
    slack: &SlackClient,
    audit_channel: &str,
    timing: &Timing,
) -> SlackCheck {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, check_slack(slack, audit_channel))
            .await
            .unwrap_or_else(|_| {
                SlackCheck::Unreachable(format!("no answer within {ATTEMPT_TIMEOUT:?}"))
            });
        if !matches!(outcome, SlackCheck::Unreachable(_)) || attempt >= START_ATTEMPTS {
            return outcome;
        }
        tokio::time::sleep(backoff(timing, attempt)).await;
    }
}

/// `None` when Slack answered; the unreachable outcome when it did not.
fn unanswered(e: &SlackError) -> Option<SlackCheck> {
    e.is_retryable()
        .then(|| SlackCheck::Unreachable(e.to_string()))
}

fn token_problem(e: SlackError) -> SlackCheck {
    SlackCheck::Problems(vec![token_problem_or_other("auth.test", e)])
}

fn token_problem_or_other(method: &'static str, e: SlackError) -> SetupProblem {
    let error = e.api_error().unwrap_or("unknown_error").to_string();
    match error.as_str() {
        "invalid_auth" | "not_authed" | "not_allowed_token_type" => {
            SetupProblem::TokenRefused { error }
        }
        "account_inactive" | "token_revoked" | "token_expired" => {
            SetupProblem::TokenRevoked { error }
        }
        _ => match e {
            SlackError::Http { status, .. } => SetupProblem::WrongApiUrl { method, status },
            _ => SetupProblem::Other { method, error },
        },
    }
}

/// The check's latest outcome, for `/healthz`.
#[derive(Debug)]
pub struct SetupHealth {
    state: Mutex<SetupState>,
}

/// What `/healthz` says about the Slack setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupState {
    /// Slack accepted the token and the bot is in the audit channel.
    Passed,
    /// Slack has not answered the check yet.
    Unreachable,
    /// Slack answered after the start, and this many things must be fixed.
    Failed(usize),
}

impl SetupState {
    pub fn label(self) -> &'static str {
        match self {
            SetupState::Passed => "passed",
            SetupState::Unreachable => "unreachable",
            SetupState::Failed(_) => "failed",
        }
    }
}

impl SetupHealth {
    pub fn new(check: &SlackCheck) -> SetupHealth {
        let health = SetupHealth {
            state: Mutex::new(SetupState::Passed),
        };
        health.record(check);
        health
    }

    pub fn record(&self, check: &SlackCheck) {
        *self.state.lock().expect("setup health lock") = match check {
            SlackCheck::Passed => SetupState::Passed,
            SlackCheck::Unreachable(_) => SetupState::Unreachable,
            SlackCheck::Problems(p) => SetupState::Failed(p.len()),
        };
    }

    pub fn state(&self) -> SetupState {
        *self.state.lock().expect("setup health lock")
    }
}

/// Runs the check again, with backoff, until it passes or `cancel`; each
/// outcome replaces the last in `health`, and problems found after the start
/// are logged as errors, one line each, with what to do.
pub async fn recheck_until_verified(
    slack: SlackClient,
    audit_channel: String,
    timing: Timing,
    health: std::sync::Arc<SetupHealth>,
    cancel: CancellationToken,
) {
    let mut attempt = 0;
    while health.state() != SetupState::Passed {
        attempt += 1;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff(&timing, attempt)) => {}
        }
        let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, check_slack(&slack, &audit_channel))
            .await
            .unwrap_or_else(|_| {
                SlackCheck::Unreachable(format!("no answer within {ATTEMPT_TIMEOUT:?}"))
            });
        match &outcome {
            SlackCheck::Passed => {
                tracing::info!("Slack answered: the bot token and the audit channel are fine")
            }
            SlackCheck::Unreachable(why) => {
                tracing::warn!(reason = %why, attempt, "Slack still cannot be reached to check the setup")
            }
            SlackCheck::Problems(problems) => {
                for p in problems {
                    tracing::error!("Slack setup: {p}");
                }
            }
        }
        health.record(&outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(error: &str) -> SlackError {
        SlackError::Api {
            method: "auth.test".into(),
            error: error.into(),
        }
    }

    #[test]
    fn each_token_error_says_what_to_do() {
        for (error, part) in [
            ("invalid_auth", "copy the Bot User OAuth Token"),
            ("not_authed", "copy the Bot User OAuth Token"),
            ("account_inactive", "reinstall the app"),
            ("token_revoked", "reinstall the app"),
        ] {
            let line = token_problem_or_other("auth.test", api(error)).to_string();
            assert!(line.contains(part) && line.contains(error), "{line}");
            assert!(line.contains("SLACK_BOT_TOKEN"), "{line}");
        }
        let other = token_problem_or_other("auth.test", api("team_not_found")).to_string();
        assert!(other.contains("team_not_found"), "{other}");
    }

    #[test]
    fn an_unreachable_slack_is_not_a_setup_problem() {
        for e in [
            SlackError::Transport {
                method: "auth.test".into(),
                reason: "connection refused".into(),
            },
            SlackError::Http {
                method: "auth.test".into(),
                status: 503,
            },
            api("internal_error"),
        ] {
            assert!(matches!(unanswered(&e), Some(SlackCheck::Unreachable(_))));
        }
        assert_eq!(unanswered(&api("invalid_auth")), None);
    }

    #[test]
    fn health_follows_the_latest_outcome() {
        let h = SetupHealth::new(&SlackCheck::Unreachable("down".into()));
        assert_eq!(h.state().label(), "unreachable");
        h.record(&SlackCheck::Problems(vec![SetupProblem::ChannelArchived {
            channel: "C1".into(),
            name: "audit".into(),
        }]));
        assert_eq!(h.state(), SetupState::Failed(1));
        h.record(&SlackCheck::Passed);
        assert_eq!(h.state().label(), "passed");
    }
}
