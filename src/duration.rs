//! Durations as people write them: `90s`, `15m`, `4h`, `2d`, and also
//! `90 minutes`, `2 hours`, `1.5h`, `1h30m`, `1 hour and 30 minutes`,
//! `half an hour`, `an hour`.
//!
//! One parser and one formatter, so the runbook loader, the command parser
//! and the modal all accept and print exactly the same forms. A text that is
//! not a duration is refused with the accepted forms; it is never replaced
//! by a default.

use std::time::Duration;

/// The forms the error messages show.
const FORMS: &str = "write it like 30m, 90 minutes, 2h, 1.5h, 1h30m or half an hour (units: seconds, minutes, hours, days)";

/// Why a duration string was refused; the message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration; {FORMS}")]
    Empty,
    #[error("`{0}` is not a duration; {FORMS}")]
    Malformed(String),
    #[error("`{0}` is zero; a duration must be at least 1s")]
    Zero(String),
    #[error("`{0}` is too long; the longest accepted duration is 365d")]
    TooLong(String),
}

/// The longest duration anything in accessbot accepts (a year).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// One piece of a duration text: a number (`1.5`) or a word (`hours`, `half`).
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Word(String),
}

/// Seconds per unit, for every spelling of a unit accepted.
fn unit_secs(word: &str) -> Option<f64> {
    Some(match word {
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86_400.0,
        _ => return None,
    })
}

/// Splits `1h30m`, `1.5 hours`, `half an hour` into numbers and words.
/// `None` for anything else (signs, non-ASCII digits, punctuation).
fn tokens(text: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == ',' {
            // Only as in `1 hour, 30 minutes`: right after a unit, with
            // more to come.
            let after_unit = i > 0 && chars[i - 1].is_ascii_alphabetic();
            if !after_unit || chars[i + 1..].iter().all(|c| c.is_whitespace()) {
                return None;
            }
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let n: String = chars[start..i].iter().collect();
            // Twelve digits is already far past a year in seconds; longer
            // numbers are not durations anyone meant.
            if n.len() > 12 || n.matches('.').count() > 1 {
                return None;
            }
            out.push(Token::Number(n.parse().ok()?));
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
            let w: String = chars[start..i].iter().collect();
            out.push(Token::Word(w.to_ascii_lowercase()));
        } else {
            return None;
        }
    }
    Some(out)
}

/// Seconds in the token list, or `None` when it is not a duration.
fn seconds(tokens: &[Token]) -> Option<f64> {
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => Some(w.as_str()),
        _ => None,
    };
    let mut total = 0.0;
    let mut i = 0;
    let mut parts = 0;
    while i < tokens.len() {
        if parts > 0 && word(i) == Some("and") {
            // `1 hour and 30 minutes`, `an hour and a half`
            if word(i + 1) == Some("a") && word(i + 2) == Some("half") {
                total += last_unit(tokens, i)? / 2.0;
                i += 3;
                continue;
            }
            i += 1;
        }
        let (amount, unit_at) = match (tokens.get(i)?, word(i + 1)) {
            (Token::Number(n), _) => (*n, i + 1),
            (Token::Word(w), Some("an" | "a")) if w == "half" => (0.5, i + 2),
            (Token::Word(w), _) if w == "a" || w == "an" => (1.0, i + 1),
            _ => return None,
        };
        total += amount * unit_secs(word(unit_at)?)?;
        i = unit_at + 1;
        parts += 1;
    }
    (parts > 0).then_some(total)
}

/// The unit of the part just before token `end`, for `… and a half`.
fn last_unit(tokens: &[Token], end: usize) -> Option<f64> {
    match tokens.get(end.checked_sub(1)?)? {
        Token::Word(w) => unit_secs(w),
        Token::Number(_) => None,
    }
}

/// Parses a duration as people write it (see the module docs). The result
/// is rounded to whole seconds and lies between 1s and [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    let secs = tokens(t)
        .and_then(|tokens| seconds(&tokens))
        .ok_or_else(|| DurationError::Malformed(shorten(t)))?;
    if !secs.is_finite() || secs > MAX_DURATION.as_secs() as f64 {
        return Err(DurationError::TooLong(shorten(t)));
    }
    let secs = secs.round() as u64;
    if secs == 0 {
        return Err(DurationError::Zero(shorten(t)));
    }
    Ok(Duration::from_secs(secs))
}

/// Whether a text was meant as a duration rather than as words of a reason:
/// it starts with a digit, or with `half`. Such a text that does not parse is
/// an error to show, not the start of a reason.
pub fn looks_like_duration(word: &str) -> bool {
    let w = word.trim_start();
    w.starts_with(|c: char| c.is_ascii_digit())
        || (w.starts_with('.') && w[1..].starts_with(|c: char| c.is_ascii_digit()))
        || w.eq_ignore_ascii_case("half")
}

/// Formats a duration the way people read it: `1h 30m`, `45s`, `2d`.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{}", secs / size, unit));
            secs %= size;
        }
    }
    parts.join(" ")
}

/// Formats a duration in words for people outside engineering:
/// `2 minutes`, `1 hour 30 minutes`, `1 day`.
pub fn format_duration_words(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0 seconds".to_string();
    }
    let mut parts = Vec::new();
    for (unit, size) in [
        ("day", 86_400),
        ("hour", 3600),
        ("minute", 60),
        ("second", 1),
    ] {
        if secs >= size {
            let n = secs / size;
            parts.push(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
            secs %= size;
        }
    }
    parts.join(" ")
}

/// Keeps hostile input out of error messages at a readable length.
fn shorten(t: &str) -> String {
    let clean: String = t.chars().filter(|c| !c.is_control()).take(20).collect();
    if t.chars().count() > 20 {
        format!("{clean}…")
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<u64, ()>) {
        let got = parse_duration(input).map(|d| d.as_secs()).map_err(|_| ());
        assert_eq!(got, expected, "parse_duration({input:?})");
    }

    #[test]
    fn parses_each_unit_and_refuses_the_rest() {
        check("90s", Ok(90));
        check("15m", Ok(900));
        check("4h", Ok(14_400));
        check("2d", Ok(172_800));
        check(" 1H ", Ok(3600));
        check("", Err(()));
        check("h", Err(()));
        check("0m", Err(()));
        check("-1h", Err(()));
        check("1w", Err(()));
        check("366d", Err(()));
        check("99999999999999999999d", Err(()));
        check("1é", Err(()));
        check("٣h", Err(()));
        check("１h", Err(()));
        check("1..5h", Err(()));
        check("90", Err(()));
        check("hours", Err(()));
        check("0.1s", Err(()));
        check("soon", Err(()));
        check("1h and", Err(()));
        check("1s ,", Err(()));
        check("1s,", Err(()));
        check("1s ,a h", Err(()));
    }

    #[test]
    fn parses_durations_as_people_type_them() {
        check("90 minutes", Ok(5400));
        check("2 hours", Ok(7200));
        check("1 hour", Ok(3600));
        check("1.5h", Ok(5400));
        check(".5h", Ok(1800));
        check("1h30m", Ok(5400));
        check("1h 30m", Ok(5400));
        check("1 h", Ok(3600));
        check("1 hour and 30 minutes", Ok(5400));
        check("1 hour, 30 minutes", Ok(5400));
        check("half an hour", Ok(1800));
        check("Half a day", Ok(43_200));
        check("an hour", Ok(3600));
        check("a day", Ok(86_400));
        check("an hour and a half", Ok(5400));
        check("45 secs", Ok(45));
        check("2 hrs", Ok(7200));
        check("3 days", Ok(259_200));
        check("1.5 minutes", Ok(90));
    }

    #[test]
    fn refusals_name_the_accepted_forms() {
        let e = parse_duration("soonish").unwrap_err().to_string();
        assert!(
            e.contains("90 minutes") && e.contains("1h30m") && e.contains("half an hour"),
            "{e}"
        );
    }

    #[test]
    fn words_say_units_in_full() {
        assert_eq!(format_duration_words(Duration::from_secs(120)), "2 minutes");
        assert_eq!(
            format_duration_words(Duration::from_secs(5400)),
            "1 hour 30 minutes"
        );
        assert_eq!(
            format_duration_words(Duration::from_secs(86_401)),
            "1 day 1 second"
        );
    }

    #[test]
    fn formats_compound_durations() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(172_800)), "2d");
    }
}
