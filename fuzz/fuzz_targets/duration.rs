//! The duration parser and formatter: any text gives a duration between 1s
//! and 365d or a short error; what the formatter prints parses back to the
//! same duration (whole when it is one part, part by part otherwise).

#![no_main]

use std::time::Duration;

use accessbot::duration::{format_duration, parse_duration, MAX_DURATION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, u64)| {
    let (text, secs) = input;
    match parse_duration(text) {
        Ok(d) => {
            assert!(
                d >= Duration::from_secs(1) && d <= MAX_DURATION,
                "{text:?}: {d:?}"
            );
            assert_eq!(d.subsec_nanos(), 0);
            round_trip(d);
        }
        Err(err) => {
            let message = err.to_string();
            assert!(!message.is_empty());
            assert!(message.chars().count() <= 160, "{message}");
            assert!(!message.chars().any(char::is_control), "{message:?}");
        }
    }
    round_trip(Duration::from_secs(1 + secs % MAX_DURATION.as_secs()));
});

fn round_trip(d: Duration) {
    let text = format_duration(d);
    let mut sum = Duration::ZERO;
    for part in text.split(' ') {
        sum += parse_duration(part).unwrap_or_else(|e| panic!("{text}: {part}: {e}"));
    }
    assert_eq!(sum, d, "{text}");
    if !text.contains(' ') {
        assert_eq!(parse_duration(&text), Ok(d));
    }
}
