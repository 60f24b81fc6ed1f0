//! The text after `/access`, parsed into a [`Command`]. Pure and total: any
//! input, however odd, gives a command or a [`CommandError`] that says how to
//! write it right.

use crate::duration::{looks_like_duration, parse_duration, DurationError};
use crate::schedule::{self, ScheduleError, StartAt};
use std::time::Duration;

/// The longest command text we read; Slack itself caps it near 4,000.
pub const MAX_TEXT: usize = 4000;

/// The one slash command this app answers (`manifest/manifest.yml`).
pub const SLASH_COMMAND: &str = "/access";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/access` alone: open the request modal.
    Modal,
    Help,
    List,
    Status,
    Request {
        runbook: String,
        duration: Option<Duration>,
        reason: String,
        /// `key=value` words right after the duration, for the runbook's
        /// `[[inputs]]`, as written (checked against the runbook later).
        inputs: Vec<(String, String)>,
        /// `at <time>`: when the access should start.
        start: Option<StartAt>,
    },
    Revoke {
        request_id: String,
    },
    Extend {
        request_id: String,
        duration: Duration,
    },
    /// Close a request that needs a person, once the system was checked.
    Resolve {
        request_id: String,
    },
    /// Cancel one's own request while it waits for approval.
    Cancel {
        request_id: String,
    },
    /// Where access is needed: the report, for runbook owners and the
    /// security group.
    Report,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error(
        "unknown subcommand `{0}`. Try `/access help`, or just `/access` to open the request form."
    )]
    Unknown(String),
    #[error("which runbook? Write `/access request <runbook-id> [duration] [reason]`; `/access list` shows the ids.")]
    MissingRunbook,
    #[error(
        "which request? Write `/access {0} <request-id>`; `/access status` shows your request ids."
    )]
    MissingRequestId(&'static str),
    #[error("how much longer? Write `/access extend <request-id> <duration>`, e.g. `/access extend ar-1234 1h`.")]
    MissingDuration,
    #[error("{0}")]
    Duration(#[from] DurationError),
    #[error("{0}")]
    Start(#[from] ScheduleError),
    #[error("the command is too long ({0} characters); keep it under 4000 characters by shortening the reason")]
    TooLong(usize),
}

/// Usage, shown by `/access help` and after a mistake.
pub const HELP: &str = "*accessbot*: temporary access, approved in Slack.\n\
• `/access`: open the request form (easiest)\n\
• `/access list`: what you can request\n\
• `/access request <runbook-id> [duration] [key=value …] [at <time>] [reason]`: e.g. `/access request billing-admin 2h month-end refunds`, `/access request crm-support 1h ticket=CS-1234 at 09:00 refund dispute`\n\
• `/access status`: your pending requests and active access\n\
• `/access extend <request-id> <duration>`: ask for more time\n\
• `/access revoke <request-id>`: end access now\n\
• `/access cancel <request-id>`: cancel your request while it waits for approval\n\
• `/access resolve <request-id>`: close a request that needs a person, once you have checked the system (its owner and approvers)\n\
• `/access report`: where access is needed over the last 30 days (runbook owners and the security group)\n\
Durations as you would say them: `30m`, `90 minutes`, `2h`, `1h30m`, `half an hour`, `1d`.";

pub fn parse(text: &str) -> Result<Command, CommandError> {
    let chars = text.chars().count();
    if chars > MAX_TEXT {
        return Err(CommandError::TooLong(chars));
    }
    // Slack may send non-breaking spaces and other odd whitespace; treat any
    // whitespace or control character as a separator.
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_control() || c.is_whitespace() {
                ' '
            } else {
                c
            }
        })
        .collect();
    let mut words = cleaned.split(' ').filter(|w| !w.is_empty());
    let Some(sub) = words.next() else {
        return Ok(Command::Modal);
    };
    match sub.to_lowercase().as_str() {
        "help" | "-h" | "--help" | "?" => Ok(Command::Help),
        "list" | "ls" => Ok(Command::List),
        "status" => Ok(Command::Status),
        "report" => Ok(Command::Report),
        "request" | "req" => {
            let runbook = words
                .next()
                .ok_or(CommandError::MissingRunbook)?
                .to_lowercase();
            let rest: Vec<&str> = words.collect();
            // The duration is optional: the longest run of first words that
            // reads as one (`2h`, `90 minutes`, `1 hour and 30 minutes`) is
            // the duration; a first word meant as one that does not parse
            // is refused; anything else starts the reason.
            let (duration, reason_words) = match leading_duration(&rest) {
                Some((d, used)) => (Some(d), &rest[used..]),
                None if rest.first().is_some_and(|w| looks_like_duration(w)) => {
                    return Err(parse_duration(rest[0]).unwrap_err().into())
                }
                None => (None, &rest[..]),
            };
            let (inputs, start, reason_words) = leading_details(reason_words)?;
            Ok(Command::Request {
                runbook,
                duration,
                reason: reason_words.join(" "),
                inputs,
                start,
            })
        }
        "revoke" | "release" | "end" => Ok(Command::Revoke {
            request_id: words
                .next()
                .ok_or(CommandError::MissingRequestId("revoke"))?
                .to_lowercase(),
        }),
        "cancel" => Ok(Command::Cancel {
            request_id: words
                .next()
                .ok_or(CommandError::MissingRequestId("cancel"))?
                .to_lowercase(),
        }),
        "resolve" => Ok(Command::Resolve {
            request_id: words
                .next()
                .ok_or(CommandError::MissingRequestId("resolve"))?
                .to_lowercase(),
        }),
        "extend" => {
            let request_id = words
                .next()
                .ok_or(CommandError::MissingRequestId("extend"))?
                .to_lowercase();
            let rest: Vec<&str> = words.collect();
            if rest.is_empty() {
                return Err(CommandError::MissingDuration);
            }
            let duration = parse_duration(&rest.join(" "))?;
            Ok(Command::Extend {
                request_id,
                duration,
            })
        }
        other => Err(CommandError::Unknown(
            other.chars().take(30).collect::<String>(),
        )),
    }
}

/// The longest run of first words (at most six) that is a duration, and
/// how many words it took.
fn leading_duration(words: &[&str]) -> Option<(Duration, usize)> {
    (1..=words.len().min(6))
        .rev()
        .find_map(|n| parse_duration(&words[..n].join(" ")).ok().map(|d| (d, n)))
}

/// The details that may follow the duration, in any order: `key=value`
/// words (a key is lowercase letters, digits and underscores) and
/// `at <time>`. `at` followed by something that is not a time starts the
/// reason; one that looks like a time but is not one is refused.
type Details<'w> = (Vec<(String, String)>, Option<StartAt>, &'w [&'w str]);

fn leading_details<'w>(mut words: &'w [&'w str]) -> Result<Details<'w>, CommandError> {
    let mut inputs = Vec::new();
    let mut start = None;
    loop {
        match words {
            [at, next, ..]
                if start.is_none()
                    && at.eq_ignore_ascii_case("at")
                    && schedule::looks_like_time(next) =>
            {
                let (s, used) = schedule::parse_start(&words[1..])?;
                start = Some(s);
                words = &words[1 + used..];
            }
            [word, ..] => match input_word(word) {
                Some(pair) => {
                    inputs.push(pair);
                    words = &words[1..];
                }
                None => break,
            },
            [] => break,
        }
    }
    Ok((inputs, start, words))
}

/// `key=value` with a key that could be an input id.
fn input_word(word: &str) -> Option<(String, String)> {
    let (key, value) = word.split_once('=')?;
    let key = key.to_lowercase();
    let valid = key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    valid.then(|| (key, value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<Command, ()>) {
        assert_eq!(parse(input).map_err(|_| ()), expected, "parse({input:?})");
    }

    #[test]
    fn table() {
        check("", Ok(Command::Modal));
        check("   ", Ok(Command::Modal));
        check("help", Ok(Command::Help));
        check("LIST", Ok(Command::List));
        check("status", Ok(Command::Status));
        check("report", Ok(Command::Report));
        check("REPORT now", Ok(Command::Report));
        check(
            "request billing-admin 2h month end refunds",
            Ok(Command::Request {
                runbook: "billing-admin".into(),
                duration: Some(Duration::from_secs(7200)),
                reason: "month end refunds".into(),
                inputs: vec![],
                start: None,
            }),
        );
        check(
            "request Billing-Admin fix\u{00a0}refund",
            Ok(Command::Request {
                runbook: "billing-admin".into(),
                duration: None,
                reason: "fix refund".into(),
                inputs: vec![],
                start: None,
            }),
        );
        check("request", Err(()));
        check("request x 0h why", Err(()));
        check("request x 10w why", Err(()));
        check(
            "revoke AR-12",
            Ok(Command::Revoke {
                request_id: "ar-12".into(),
            }),
        );
        check("revoke", Err(()));
        check(
            "resolve AR-12",
            Ok(Command::Resolve {
                request_id: "ar-12".into(),
            }),
        );
        check("resolve", Err(()));
        check(
            "cancel AR-12",
            Ok(Command::Cancel {
                request_id: "ar-12".into(),
            }),
        );
        check("cancel", Err(()));
        check(
            "extend ar-1 30m",
            Ok(Command::Extend {
                request_id: "ar-1".into(),
                duration: Duration::from_secs(1800),
            }),
        );
        check("extend ar-1", Err(()));
        check("extend ar-1 soon", Err(()));
        check(
            "extend ar-1 half an hour",
            Ok(Command::Extend {
                request_id: "ar-1".into(),
                duration: Duration::from_secs(1800),
            }),
        );
        check(
            "request billing-admin 90 minutes month end",
            Ok(Command::Request {
                runbook: "billing-admin".into(),
                duration: Some(Duration::from_secs(5400)),
                reason: "month end".into(),
                inputs: vec![],
                start: None,
            }),
        );
        check(
            "request billing-admin 1 hour and 30 minutes for refunds",
            Ok(Command::Request {
                runbook: "billing-admin".into(),
                duration: Some(Duration::from_secs(5400)),
                reason: "for refunds".into(),
                inputs: vec![],
                start: None,
            }),
        );
        check(
            "request billing-admin an hour a quick fix",
            Ok(Command::Request {
                runbook: "billing-admin".into(),
                duration: Some(Duration::from_secs(3600)),
                reason: "a quick fix".into(),
                inputs: vec![],
                start: None,
            }),
        );
        check(
            "request billing-admin a quick fix",
            Ok(Command::Request {
                runbook: "billing-admin".into(),
                duration: None,
                reason: "a quick fix".into(),
                inputs: vec![],
                start: None,
            }),
        );
        // A number meant as a duration is never silently replaced by the default.
        check("request billing-admin 90 mins-ish refunds", Err(()));
        check("request billing-admin 2 weeks refunds", Err(()));
        check("frobnicate", Err(()));
        let nine = StartAt::Clock(chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap());
        check(
            "request crm-support 1h ticket=CS-1234 Customer=ACME-42 refund dispute",
            Ok(Command::Request {
                runbook: "crm-support".into(),
                duration: Some(Duration::from_secs(3600)),
                reason: "refund dispute".into(),
                inputs: vec![
                    ("ticket".into(), "CS-1234".into()),
                    ("customer".into(), "ACME-42".into()),
                ],
                start: None,
            }),
        );
        check(
            "request billing-admin 2h at 09:00 month-end close",
            Ok(Command::Request {
                runbook: "billing-admin".into(),
                duration: Some(Duration::from_secs(7200)),
                reason: "month-end close".into(),
                inputs: vec![],
                start: Some(nine),
            }),
        );
        check(
            "request crm-support ticket=CS-1 at 09:00 case=x=y at noon",
            Ok(Command::Request {
                runbook: "crm-support".into(),
                duration: None,
                reason: "at noon".into(),
                inputs: vec![
                    ("ticket".into(), "CS-1".into()),
                    ("case".into(), "x=y".into()),
                ],
                start: Some(nine),
            }),
        );
        // `at` that reads as a time but is not one is refused, not taken as a reason.
        check("request billing-admin 2h at 25:00 close", Err(()));
        // A reason word with `=` after other words stays in the reason.
        check(
            "request billing-admin 2h fix a=b",
            Ok(Command::Request {
                runbook: "billing-admin".into(),
                duration: Some(Duration::from_secs(7200)),
                reason: "fix a=b".into(),
                inputs: vec![],
                start: None,
            }),
        );
        check(&"x".repeat(10_000), Err(()));
        check(
            "request x 1h \u{0000}\u{202e}",
            Ok(Command::Request {
                runbook: "x".into(),
                duration: Some(Duration::from_secs(3600)),
                reason: "\u{202e}".into(),
                inputs: vec![],
                start: None,
            }),
        );
    }
}
