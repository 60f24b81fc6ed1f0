//! Where access is needed: the figures of `accessbot report` and
//! `/access report`, computed from stored requests (and the feedback kept on
//! them). Pure: a [`ReportBuilder`] takes requests one at a time, so a
//! caller can stream a period's requests through it page by page without
//! holding them all, and [`ReportBuilder::finish`] gives the [`Report`].
//! Reading the store is `workflow/report.rs`'s; Slack wording is in `slack/`.
//!
//! Definitions, so the figures can be checked by hand:
//! - A request counts in the period when it was made in `[since, now]`.
//! - Outcomes: `break_glass` and `auto_approved` are taken apart first;
//!   `approved` is a request people approved (it reached a grant);
//!   `denied` excludes the requester withdrawing their own request
//!   (`withdrawn`); `expired` is nobody deciding in time; `pending` waits.
//! - Time to decision is for decisions people made (approved or denied):
//!   from the request to the last approval, or to the denial.
//! - Granted duration is the whole grant with extensions; used duration is
//!   from the grant's start (its end minus the whole grant) to its revoke
//!   (releasing early counts as used less).
//! - Median is the lower median; p90 is the nearest rank (the smallest value
//!   with at least 90% of the values at or below it).
//! - A standing-access hint names a person who requested the same runbook
//!   on more than half the working days (Monday to Friday) of the period,
//!   and on at least [`STANDING_MIN_DAYS`] of them.
//! - A suggested `default_duration` needs at least [`SUGGEST_MIN_ANSWERS`]
//!   answers to "Was the time right?" of which more than half agree (too
//!   long, or too short), and at least one finished grant to measure use.
//!   Too long: the median use plus a quarter, rounded up to 5 minutes; too
//!   short: the median grant and a half, rounded up to 5 minutes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use serde::Serialize;

use crate::duration::format_duration;
use crate::feedback::TimeAnswer;
use crate::request::{AccessRequest, Status};

/// Answers to "Was the time right?" a suggestion needs.
pub const SUGGEST_MIN_ANSWERS: u32 = 5;
/// Distinct working days a standing-access hint needs at the least.
pub const STANDING_MIN_DAYS: usize = 3;
/// Top requesters listed per runbook.
const TOP_REQUESTERS: usize = 3;

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub working_days: usize,
    pub runbooks: Vec<RunbookReport>,
    /// Who holds access right now, longest-held first.
    pub holders: Vec<Holder>,
    pub standing_access: Vec<StandingHint>,
}

/// The figures of one runbook.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunbookReport {
    pub runbook: String,
    pub title: String,
    pub requests: u32,
    pub approved: u32,
    pub denied: u32,
    pub withdrawn: u32,
    pub expired: u32,
    pub auto_approved: u32,
    pub break_glass: u32,
    pub pending: u32,
    /// Grants that failed (counted in their outcome above too).
    pub failed: u32,
    pub median_decision_secs: Option<u64>,
    pub p90_decision_secs: Option<u64>,
    pub median_granted_secs: Option<u64>,
    pub median_used_secs: Option<u64>,
    pub extensions: u32,
    pub top_requesters: Vec<Requester>,
    pub feedback: FeedbackSummary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requester {
    pub user: String,
    pub requests: u32,
}

/// The answers about one runbook's grants, next to their actual use.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeedbackSummary {
    pub time_too_short: u32,
    pub time_right: u32,
    pub time_too_long: u32,
    pub task_done: u32,
    pub task_not_done: u32,
    pub suggestion: Option<Suggestion>,
}

impl FeedbackSummary {
    pub fn time_answers(&self) -> u32 {
        self.time_too_short + self.time_right + self.time_too_long
    }
}

/// A suggested `default_duration`, with the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    pub default_duration_secs: u64,
    /// `default_duration` as a runbook writes it, e.g. `45m`.
    pub default_duration: String,
    /// "7 of 9 said too long; median use 35m of 2h".
    pub reason: String,
}

/// Someone who holds access now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub user: String,
    pub runbook: String,
    pub request_id: String,
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

/// A person who keeps asking for the same access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StandingHint {
    pub user: String,
    pub runbook: String,
    pub days: usize,
    pub working_days: usize,
    /// "requested on 4 of 5 working days; review their role: they may need this access permanently"
    pub suggestion: String,
}

#[derive(Debug, Default)]
struct Acc {
    report: RunbookReport,
    decision: Vec<u64>,
    granted: Vec<u64>,
    used: Vec<u64>,
    requesters: BTreeMap<String, u32>,
}

/// Takes requests one at a time; see the module documentation.
#[derive(Debug)]
pub struct ReportBuilder {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    runbooks: BTreeMap<String, Acc>,
    holders: Vec<Holder>,
    days: BTreeMap<(String, String), BTreeSet<NaiveDate>>,
}

impl ReportBuilder {
    pub fn new(since: DateTime<Utc>, until: DateTime<Utc>) -> ReportBuilder {
        ReportBuilder {
            since,
            until,
            runbooks: BTreeMap::new(),
            holders: Vec::new(),
            days: BTreeMap::new(),
        }
    }

    /// Counts `req` if it was made in the period (others are ignored).
    pub fn add(&mut self, req: &AccessRequest) {
        if req.created_at < self.since || req.created_at > self.until {
            return;
        }
        let acc = self.runbooks.entry(req.runbook_id.clone()).or_default();
        let r = &mut acc.report;
        r.runbook = req.runbook_id.clone();
        r.title = req.runbook_title.clone();
        r.requests += 1;
        *acc.requesters.entry(req.requester.clone()).or_default() += 1;
        let reached_grant = matches!(
            req.status,
            Status::Granting
                | Status::Active
                | Status::Revoking
                | Status::NeedsAttention
                | Status::Revoked
                | Status::Failed
        );
        if req.break_glass {
            r.break_glass += 1;
        } else if req.auto_rule.is_some() {
            r.auto_approved += 1;
        } else {
            match req.status {
                Status::Pending => r.pending += 1,
                Status::Expired => r.expired += 1,
                Status::Denied if req.decided_by.as_deref() == Some(req.requester.as_str()) => {
                    r.withdrawn += 1
                }
                Status::Denied => {
                    r.denied += 1;
                    if let Some(end) = req.ended_at {
                        acc.decision.push(secs_between(req.created_at, end));
                    }
                }
                _ if reached_grant => {
                    r.approved += 1;
                    if let Some(last) = req.approvals.iter().map(|a| a.at).max() {
                        acc.decision.push(secs_between(req.created_at, last));
                    }
                }
                _ => {}
            }
        }
        if req.status == Status::Failed || req.grant_failed {
            r.failed += 1;
        }
        r.extensions += req.extensions;
        if let Some(granted_at) = req.granted_at.filter(|_| !req.grant_failed) {
            acc.granted.push(req.total_secs);
            if req.status == Status::Revoked {
                // The grant's clock started when the provider was started
                // (its end minus the whole grant), a moment before the
                // grant was recorded.
                let start = req
                    .expires_at
                    .map(|end| end - chrono::Duration::seconds(req.total_secs as i64))
                    .map_or(granted_at, |start| start.min(granted_at));
                if let Some(end) = req.ended_at {
                    acc.used.push(secs_between(start, end));
                }
            }
        }
        if let Some(f) = &req.feedback {
            let fb = &mut r.feedback;
            match f.time {
                Some(TimeAnswer::TooShort) => fb.time_too_short += 1,
                Some(TimeAnswer::Right) => fb.time_right += 1,
                Some(TimeAnswer::TooLong) => fb.time_too_long += 1,
                None => {}
            }
            match f.task_done {
                Some(true) => fb.task_done += 1,
                Some(false) => fb.task_not_done += 1,
                None => {}
            }
        }
        let day = req.created_at.date_naive();
        if is_working_day(day) {
            self.days
                .entry((req.requester.clone(), req.runbook_id.clone()))
                .or_default()
                .insert(day);
        }
    }

    /// Lists `req` among those holding access now if it is active.
    pub fn add_holder(&mut self, req: &AccessRequest) {
        if req.status != Status::Active {
            return;
        }
        self.holders.push(Holder {
            user: req.requester.clone(),
            runbook: req.runbook_id.clone(),
            request_id: req.id.clone(),
            since: req.granted_at.unwrap_or(req.created_at),
            until: req.expires_at,
        });
    }

    pub fn finish(self) -> Report {
        let working_days = working_days(self.since.date_naive(), self.until.date_naive());
        let runbooks = self
            .runbooks
            .into_values()
            .map(|mut acc| {
                let r = &mut acc.report;
                r.median_decision_secs = median(&mut acc.decision);
                r.p90_decision_secs = p90(&mut acc.decision);
                r.median_granted_secs = median(&mut acc.granted);
                r.median_used_secs = median(&mut acc.used);
                let mut top: Vec<Requester> = acc
                    .requesters
                    .into_iter()
                    .map(|(user, requests)| Requester { user, requests })
                    .collect();
                top.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.user.cmp(&b.user)));
                top.truncate(TOP_REQUESTERS);
                r.top_requesters = top;
                r.feedback.suggestion =
                    suggest(&r.feedback, r.median_used_secs, r.median_granted_secs);
                acc.report
            })
            .collect();
        let mut holders = self.holders;
        holders.sort_by(|a, b| a.since.cmp(&b.since).then(a.user.cmp(&b.user)));
        let standing_access = self
            .days
            .into_iter()
            .filter(|(_, days)| days.len() >= STANDING_MIN_DAYS && days.len() * 2 > working_days)
            .map(|((user, runbook), days)| StandingHint {
                suggestion: format!(
                    "requested `{runbook}` on {} of {working_days} working days; review their role: they may need this access permanently",
                    days.len()
                ),
                user,
                runbook,
                days: days.len(),
                working_days,
            })
            .collect();
        Report {
            since: self.since,
            until: self.until,
            working_days,
            runbooks,
            holders,
            standing_access,
        }
    }
}

fn secs_between(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    (to - from).num_seconds().max(0) as u64
}

fn is_working_day(day: NaiveDate) -> bool {
    !matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
}

/// Monday-to-Friday days from `from` to `to`, both included.
fn working_days(from: NaiveDate, to: NaiveDate) -> usize {
    from.iter_days()
        .take_while(|d| *d <= to)
        .filter(|d| is_working_day(*d))
        .count()
}

/// The lower median.
fn median(values: &mut [u64]) -> Option<u64> {
    values.sort_unstable();
    values.get(values.len().checked_sub(1)? / 2).copied()
}

/// The nearest-rank 90th percentile.
fn p90(values: &mut [u64]) -> Option<u64> {
    values.sort_unstable();
    let rank = (values.len() * 9).div_ceil(10);
    values.get(rank.checked_sub(1)?).copied()
}

fn round_up_5m(secs: u64) -> u64 {
    secs.div_ceil(300).max(1) * 300
}

fn suggest(fb: &FeedbackSummary, used: Option<u64>, granted: Option<u64>) -> Option<Suggestion> {
    let n = fb.time_answers();
    if n < SUGGEST_MIN_ANSWERS {
        return None;
    }
    let (used, granted) = (used?, granted?);
    let (k, words, secs) = if fb.time_too_long * 2 > n {
        (fb.time_too_long, "too long", round_up_5m(used + used / 4))
    } else if fb.time_too_short * 2 > n {
        (
            fb.time_too_short,
            "too short",
            round_up_5m(granted + granted / 2),
        )
    } else {
        return None;
    };
    let fmt = |s: u64| format_duration(Duration::from_secs(s)).replace(' ', "");
    Some(Suggestion {
        default_duration_secs: secs,
        default_duration: fmt(secs),
        reason: format!(
            "{k} of {n} said {words}; median use {} of {}",
            fmt(used),
            fmt(granted)
        ),
    })
}

fn opt_secs(s: Option<u64>) -> String {
    s.map_or_else(|| "-".into(), |s| format_duration(Duration::from_secs(s)))
}

impl Report {
    /// The report as plain text, for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "accessbot report from {} to {} ({} working days)\n",
            self.since.format("%Y-%m-%d %H:%M UTC"),
            self.until.format("%Y-%m-%d %H:%M UTC"),
            self.working_days
        );
        if self.runbooks.is_empty() {
            out += "\nNo requests in this period.\n";
        }
        for r in &self.runbooks {
            out += &format!("\n{} ({})\n", r.runbook, r.title);
            out += &format!(
                "  requests {}: approved {}, denied {}, withdrawn {}, expired {}, auto-approved {}, break-glass {}, pending {}, failed {}\n",
                r.requests, r.approved, r.denied, r.withdrawn, r.expired, r.auto_approved, r.break_glass, r.pending, r.failed
            );
            out += &format!(
                "  time to decision: median {}, p90 {}\n",
                opt_secs(r.median_decision_secs),
                opt_secs(r.p90_decision_secs)
            );
            out += &format!(
                "  duration: median granted {}, median used {}; extensions {}\n",
                opt_secs(r.median_granted_secs),
                opt_secs(r.median_used_secs),
                r.extensions
            );
            let top: Vec<String> = r
                .top_requesters
                .iter()
                .map(|t| format!("{} ({})", t.user, t.requests))
                .collect();
            out += &format!("  top requesters: {}\n", top.join(", "));
            let f = &r.feedback;
            out += &format!(
                "  feedback: time too short {}, right {}, too long {}; task done {}, not done {}\n",
                f.time_too_short, f.time_right, f.time_too_long, f.task_done, f.task_not_done
            );
            if let Some(s) = &f.suggestion {
                out += &format!(
                    "  suggestion: default_duration = \"{}\" ({})\n",
                    s.default_duration, s.reason
                );
            }
        }
        out += "\nHolding access now:\n";
        if self.holders.is_empty() {
            out += "  nobody\n";
        }
        for h in &self.holders {
            out += &format!(
                "  {} holds {} since {} ({})\n",
                h.user,
                h.runbook,
                h.since.format("%Y-%m-%d %H:%M UTC"),
                h.request_id
            );
        }
        if !self.standing_access.is_empty() {
            out += "\nStanding-access hints:\n";
            for s in &self.standing_access {
                out += &format!("  {} {}\n", s.user, s.suggestion);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
