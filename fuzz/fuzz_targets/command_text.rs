//! The `/access` text parser: any text gives a command or a short, one-line
//! error; separators (whitespace and control characters) mean one space; and
//! a parsed request says the same when written back out.

#![no_main]

use accessbot::command::{parse, Command, CommandError, MAX_TEXT};
use accessbot::duration::format_duration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let chars = text.chars().count();
    let got = parse(text);
    if chars > MAX_TEXT {
        assert_eq!(got, Err(CommandError::TooLong(chars)));
        return;
    }
    let normalized = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(parse(&normalized), got, "{normalized:?}");
    match got {
        Err(err) => {
            let message = err.to_string();
            assert!(!message.trim().is_empty());
            assert!(message.chars().count() <= 300, "{message}");
            assert!(!message.chars().any(char::is_control), "{message:?}");
        }
        Ok(Command::Request {
            runbook,
            duration,
            reason,
        }) => {
            assert!(!runbook.is_empty());
            // Written back out the way a person would, it parses the same
            // (when the duration is one part: `1h 30m` is not one word).
            let written = match duration {
                None => Some(String::new()),
                Some(d) => Some(format_duration(d)).filter(|t| !t.contains(' ')),
            };
            if let Some(written) = written {
                let again = ["request", &runbook, &written, &reason]
                    .into_iter()
                    .filter(|w| !w.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                // Lower-casing can lengthen text (`İ` is two chars lower-cased).
                if again.chars().count() <= MAX_TEXT {
                    assert_eq!(
                        parse(&again),
                        Ok(Command::Request {
                            runbook: runbook.clone(),
                            duration,
                            reason: reason.clone(),
                        }),
                        "{again:?}"
                    );
                }
            }
        }
        Ok(Command::Revoke { request_id } | Command::Extend { request_id, .. }) => {
            assert!(!request_id.is_empty());
        }
        Ok(_) => {}
    }
});
