//! The `/slack/commands` form parser: any body gives a slash command, the
//! SSL check, or a form error; a parsed command re-encodes to the same
//! fields; and its text goes through the command parser without a panic.

#![no_main]

use accessbot::command;
use accessbot::slack::payload::{parse_command, CommandBody, PayloadError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match parse_command(body) {
        Ok(CommandBody::SslCheck) => {}
        Ok(CommandBody::Command(c)) => {
            let fields = [
                ("user_id", &c.user_id),
                ("command", &c.command),
                ("text", &c.text),
                ("trigger_id", &c.trigger_id),
                ("channel_id", &c.channel_id),
                ("team_id", &c.team_id),
            ];
            let again = serde_urlencoded::to_string(fields).unwrap();
            assert_eq!(
                parse_command(again.as_bytes()),
                Ok(CommandBody::Command(c.clone()))
            );
            // What the HTTP handler does next.
            match command::parse(&c.text) {
                Ok(_) => {}
                Err(err) => assert!(!err.to_string().is_empty()),
            }
        }
        Err(err @ PayloadError::Form(_)) => assert!(!err.to_string().is_empty()),
        Err(other) => panic!("a form body gave {other:?}"),
    }
});
