//! Scheduled start: when a request asks to begin later. It owns the start
//! time as people write it (`at 09:00`, `at 2026-03-02T09:00`, the modal's
//! date-time picker), turning it into an instant in the requester's time
//! zone, and the window a start must fall in (not past, not beyond the
//! runbook's `max_schedule_ahead`). A request approved before its start
//! waits as `Scheduled` ([`hold_until_start`]); its next deadline is the
//! start, so the timer grants it on time even after a restart.

use std::time::Duration;

use chrono::{DateTime, Days, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

use crate::duration::format_duration_words;
use crate::request::{AccessRequest, Status};

/// How far ahead a start may be when the runbook does not say.
pub const DEFAULT_MAX_AHEAD: Duration = Duration::from_secs(7 * 24 * 3600);

/// A start before now by less than this is taken as "now": the time it
/// took to type and send the command.
const GRACE: Duration = Duration::from_secs(60);

/// A start time as it was given, before it is placed in a time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// `HH:MM`: the next such time in the requester's time zone.
    Clock(NaiveTime),
    /// A date and time without an offset, in the requester's time zone.
    Local(NaiveDateTime),
    /// An instant: ISO 8601 with an offset or `Z`, or the date-time picker.
    Exact(DateTime<Utc>),
}

/// Why a start time was refused; each says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("`at {0}` is not a time accessbot reads; write `at 09:00` (the next 09:00 in your time zone) or an ISO 8601 date and time such as `at 2026-03-02T09:00`")]
    Unreadable(String),
    #[error("the start time {0} has already passed; choose a time in the future, or leave it out to start as soon as it is approved")]
    InThePast(String),
    #[error("the start time {start} is more than {max} away; `{runbook}` can be scheduled at most {max} ahead, so choose an earlier start")]
    TooFar {
        start: String,
        max: String,
        runbook: String,
    },
    #[error("`{0}` is break-glass access, which starts at once; leave out the start time")]
    BreakGlass(String),
}

/// Reads the word(s) after `at`: `09:00`, `9:30`, `2026-03-02T09:00`,
/// `2026-03-02T09:00:00+01:00`, `2026-03-02T08:00Z`, or `2026-03-02 09:00`
/// (two words). Returns the start and how many words it took.
pub fn parse_start(words: &[&str]) -> Result<(StartAt, usize), ScheduleError> {
    let first = words.first().copied().unwrap_or_default();
    if let Some(second) = words.get(1) {
        if NaiveDate::parse_from_str(first, "%Y-%m-%d").is_ok() {
            if let Ok(start) = parse_one(&format!("{first}T{second}")) {
                return Ok((start, 2));
            }
        }
    }
    parse_one(first)
        .map(|s| (s, 1))
        .map_err(|_| ScheduleError::Unreadable(shorten(first)))
}

fn parse_one(word: &str) -> Result<StartAt, ()> {
    for format in ["%H:%M", "%H:%M:%S"] {
        if let Ok(t) = NaiveTime::parse_from_str(word, format) {
            return Ok(StartAt::Clock(t));
        }
    }
    let upper = word.to_ascii_uppercase();
    if let Ok(t) = DateTime::parse_from_rfc3339(&upper) {
        return Ok(StartAt::Exact(t.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M%:z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(t) = DateTime::parse_from_str(&upper, format) {
            return Ok(StartAt::Exact(t.with_timezone(&Utc)));
        }
    }
    if let Some(naive) = upper.strip_suffix('Z') {
        if let Some(t) = naive_date_time(naive) {
            return Ok(StartAt::Exact(t.and_utc()));
        }
    }
    naive_date_time(&upper).map(StartAt::Local).ok_or(())
}

fn naive_date_time(text: &str) -> Option<NaiveDateTime> {
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
}

/// Whether a word reads as the start of a time, so `at <word>` is a start
/// (refused if it does not parse) and not the first words of a reason.
pub fn looks_like_time(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_digit()) && word.chars().any(|c| matches!(c, ':' | '-'))
}

/// Where the requester is, as Slack's `users.info` says (`tz_offset`, in
/// seconds east of UTC); UTC when Slack did not say.
pub fn zone(tz_offset_secs: Option<i32>) -> FixedOffset {
    tz_offset_secs
        .and_then(FixedOffset::east_opt)
        .unwrap_or(FixedOffset::east_opt(0).expect("UTC"))
}

/// The instant `start` means for someone in `zone`, at `now`. `HH:MM`
/// is the next such time: later today, or tomorrow once it has passed.
pub fn resolve(start: StartAt, zone: FixedOffset, now: DateTime<Utc>) -> DateTime<Utc> {
    match start {
        StartAt::Exact(t) => t,
        StartAt::Local(naive) => local(zone, naive),
        StartAt::Clock(time) => {
            let today = now.with_timezone(&zone).date_naive();
            let at = local(zone, today.and_time(time));
            if at + chrono::Duration::from_std(GRACE).expect("grace") > now {
                at
            } else {
                local(
                    zone,
                    today
                        .checked_add_days(Days::new(1))
                        .unwrap_or(today)
                        .and_time(time),
                )
            }
        }
    }
}

fn local(zone: FixedOffset, naive: NaiveDateTime) -> DateTime<Utc> {
    zone.from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| naive.and_utc())
}

/// Checks `start` against now and the runbook's limit. A start within a
/// minute before now is taken as now (`None`: no scheduled start).
pub fn check_window(
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    max_ahead: Duration,
    runbook: &str,
    zone: FixedOffset,
) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    let shown = || {
        start
            .with_timezone(&zone)
            .format("%Y-%m-%d %H:%M (UTC%:z)")
            .to_string()
    };
    if start <= now {
        if now - start <= chrono::Duration::from_std(GRACE).expect("grace") {
            return Ok(None);
        }
        return Err(ScheduleError::InThePast(shown()));
    }
    if start - now > chrono::Duration::from_std(max_ahead).unwrap_or(chrono::Duration::MAX) {
        return Err(ScheduleError::TooFar {
            start: shown(),
            max: format_duration_words(max_ahead),
            runbook: runbook.to_string(),
        });
    }
    Ok(Some(start))
}

/// Called when the last approval makes `req` `Granting`: if its start is
/// still ahead it waits as `Scheduled` (no run yet, so no run lease), and
/// the timer grants it at the start. A start that passed while it waited
/// for approval becomes now, so the access still lasts its whole duration.
/// Returns whether it now waits.
pub fn hold_until_start(req: &mut AccessRequest, now: DateTime<Utc>) -> bool {
    let Some(start) = req.start_at else {
        return false;
    };
    if req.status != Status::Granting {
        return false;
    }
    if start <= now {
        req.start_at = Some(now);
        return false;
    }
    req.status = Status::Scheduled;
    req.run_until = None;
    true
}

/// When the access of a grant starting at `started` ends: at its start plus
/// its duration, so a grant run a little late does not run long.
pub fn grant_ends(req: &AccessRequest, started: DateTime<Utc>) -> DateTime<Utc> {
    let from = req.start_at.map_or(started, |s| s.min(started));
    from + chrono::Duration::seconds(req.duration_secs as i64)
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn start_times_as_people_write_them() {
        let t = |h, m| StartAt::Clock(NaiveTime::from_hms_opt(h, m, 0).unwrap());
        assert_eq!(parse_start(&["09:00"]), Ok((t(9, 0), 1)));
        assert_eq!(parse_start(&["9:30", "x"]), Ok((t(9, 30), 1)));
        assert_eq!(
            parse_start(&["2026-03-02T09:00Z"]),
            Ok((StartAt::Exact(at("2026-03-02T09:00:00Z")), 1))
        );
        assert_eq!(
            parse_start(&["2026-03-02T09:00:00+01:00"]),
            Ok((StartAt::Exact(at("2026-03-02T08:00:00Z")), 1))
        );
        assert_eq!(
            parse_start(&["2026-03-02t09:00+0100"]),
            Ok((StartAt::Exact(at("2026-03-02T08:00:00Z")), 1))
        );
        let local = NaiveDate::from_ymd_opt(2026, 3, 2)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap();
        assert_eq!(
            parse_start(&["2026-03-02T09:00"]),
            Ok((StartAt::Local(local), 1))
        );
        assert_eq!(
            parse_start(&["2026-03-02", "09:00", "why"]),
            Ok((StartAt::Local(local), 2))
        );
        assert!(parse_start(&["25:00"]).is_err());
        assert!(parse_start(&["9am"]).is_err());
        assert!(parse_start(&["2026-02-30T09:00"]).is_err());
        assert!(parse_start(&[]).is_err());
    }

    #[test]
    fn a_clock_time_is_the_next_one_in_the_requesters_zone() {
        let nine = StartAt::Clock(NaiveTime::from_hms_opt(9, 0, 0).unwrap());
        let paris = zone(Some(3600));
        // 07:00 in Paris: today's 09:00 Paris, 08:00 UTC.
        let now = at("2026-03-02T06:00:00Z");
        assert_eq!(resolve(nine, paris, now), at("2026-03-02T08:00:00Z"));
        // 10:00 in Paris: tomorrow's.
        let now = at("2026-03-02T09:00:00Z");
        assert_eq!(resolve(nine, paris, now), at("2026-03-03T08:00:00Z"));
        // Late evening UTC is already tomorrow in Tokyo.
        let tokyo = zone(Some(9 * 3600));
        let now = at("2026-03-02T22:00:00Z");
        assert_eq!(resolve(nine, tokyo, now), at("2026-03-03T00:00:00Z"));
        // No zone from Slack: UTC.
        assert_eq!(resolve(nine, zone(None), now), at("2026-03-03T09:00:00Z"));
    }

    #[test]
    fn the_window_refuses_the_past_and_the_far_future() {
        let now = at("2026-03-02T06:00:00Z");
        let week = DEFAULT_MAX_AHEAD;
        let utc = zone(None);
        assert_eq!(
            check_window(at("2026-03-02T07:00:00Z"), now, week, "x", utc),
            Ok(Some(at("2026-03-02T07:00:00Z")))
        );
        assert_eq!(
            check_window(at("2026-03-02T05:59:30Z"), now, week, "x", utc),
            Ok(None)
        );
        let past = check_window(at("2026-03-01T06:00:00Z"), now, week, "x", utc);
        assert!(
            matches!(&past, Err(ScheduleError::InThePast(s)) if s == "2026-03-01 06:00 (UTC+00:00)"),
            "{past:?}"
        );
        let far = check_window(at("2026-03-09T06:00:01Z"), now, week, "billing", utc);
        assert!(
            far.as_ref()
                .unwrap_err()
                .to_string()
                .contains("at most 7 days ahead"),
            "{far:?}"
        );
        assert!(check_window(at("2026-03-09T06:00:00Z"), now, week, "x", utc).is_ok());
    }

    #[test]
    fn an_approved_request_waits_for_its_start_and_ends_a_duration_after_it() {
        let now = at("2026-03-02T06:00:00Z");
        let mut req = AccessRequest::new(
            "ar-x".into(),
            "billing-admin",
            "U0ALICE",
            Duration::from_secs(3600),
            vec![],
            now,
        );
        req.status = Status::Granting;
        req.run_until = Some(now);
        assert!(!hold_until_start(&mut req, now), "no start: grant now");
        req.start_at = Some(at("2026-03-02T09:00:00Z"));
        assert!(hold_until_start(&mut req, now));
        assert_eq!(req.status, Status::Scheduled);
        assert_eq!(req.run_until, None);
        assert_eq!(req.next_due(), Some(at("2026-03-02T09:00:00Z")));
        // Granted a little late: it still ends an hour after the start.
        assert_eq!(
            grant_ends(&req, at("2026-03-02T09:00:02Z")),
            at("2026-03-02T10:00:00Z")
        );
        // Approved after its start: it starts now and lasts its hour.
        let later = at("2026-03-02T09:30:00Z");
        req.status = Status::Granting;
        assert!(!hold_until_start(&mut req, later));
        assert_eq!(req.start_at, Some(later));
        assert_eq!(grant_ends(&req, later), at("2026-03-02T10:30:00Z"));
    }
}
