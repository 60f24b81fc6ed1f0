//! Human durations as runbooks and `/access` write them: `90s`, `15m`, `4h`, `2d`.
//!
//! One parser and one formatter, so the runbook loader, the command parser
//! and the modal all accept and print exactly the same forms.

use std::time::Duration;

/// Why a duration string was refused; the message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration; write a number and a unit, e.g. 30m, 4h or 1d")]
    Empty,
    #[error("`{0}` is not a duration; write a number and a unit s, m, h or d, e.g. 30m, 4h or 1d")]
    Malformed(String),
    #[error("`{0}` is zero; a duration must be at least 1s")]
    Zero(String),
    #[error("`{0}` is too long; the longest accepted duration is 365d")]
    TooLong(String),
}

/// The longest duration anything in accessbot accepts (a year).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `Ns`, `Nm`, `Nh` or `Nd` (N a positive whole number, no spaces).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed(shorten(t));
    let unit = t.chars().last().ok_or_else(malformed)?;
    let digits = &t[..t.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let n: u64 = digits.parse().map_err(|_| malformed())?;
    let per_unit = match unit.to_ascii_lowercase() {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(malformed()),
    };
    if n == 0 {
        return Err(DurationError::Zero(t.to_string()));
    }
    let secs = n
        .checked_mul(per_unit)
        .ok_or_else(|| DurationError::TooLong(shorten(t)))?;
    let d = Duration::from_secs(secs);
    if d > MAX_DURATION {
        return Err(DurationError::TooLong(shorten(t)));
    }
    Ok(d)
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
        check("1.5h", Err(()));
        check("-1h", Err(()));
        check("1w", Err(()));
        check("1 h", Err(()));
        check("366d", Err(()));
        check("99999999999999999999d", Err(()));
        check("1é", Err(()));
    }

    #[test]
    fn formats_compound_durations() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(172_800)), "2d");
    }
}
