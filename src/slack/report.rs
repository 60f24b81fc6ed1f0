//! `/access report` in Slack: the report of [`crate::report`] as mrkdwn,
//! people as mentions, short enough for one ephemeral answer (the full
//! report is `accessbot report`).

use std::time::Duration;

use super::blocks::{escape, user_text};
use crate::duration::format_duration;
use crate::report::Report;

fn secs(s: Option<u64>) -> String {
    s.map_or_else(|| "–".into(), |s| format_duration(Duration::from_secs(s)))
}

/// The report for Slack.
pub fn report_answer(report: &Report) -> String {
    let mut out = format!(
        "*Access report* since {} ({} working days)\n",
        report.since.format("%Y-%m-%d"),
        report.working_days
    );
    if report.runbooks.is_empty() {
        out += "No requests in this period.\n";
    }
    for r in &report.runbooks {
        let top: Vec<String> = r
            .top_requesters
            .iter()
            .map(|t| format!("<@{}> ({})", escape(&t.user), t.requests))
            .collect();
        out += &format!(
            "\n*{}* `{}`: {} requests · {} approved · {} denied · {} expired · {} auto-approved · {} break-glass\n\
             decision median {} (p90 {}) · granted median {} · used median {} · {} extensions · top: {}\n",
            user_text(&r.title, 100),
            r.runbook,
            r.requests,
            r.approved,
            r.denied,
            r.expired,
            r.auto_approved,
            r.break_glass,
            secs(r.median_decision_secs),
            secs(r.p90_decision_secs),
            secs(r.median_granted_secs),
            secs(r.median_used_secs),
            r.extensions,
            top.join(", ")
        );
        let f = &r.feedback;
        if f.time_answers() + f.task_done + f.task_not_done > 0 {
            out += &format!(
                "feedback: time too short {} · right {} · too long {}; task done {} · not done {}\n",
                f.time_too_short, f.time_right, f.time_too_long, f.task_done, f.task_not_done
            );
        }
        if let Some(s) = &f.suggestion {
            out += &format!(
                ":bulb: suggested `default_duration = \"{}\"`: {}\n",
                s.default_duration, s.reason
            );
        }
    }
    out += "\n*Holding access now:* ";
    if report.holders.is_empty() {
        out += "nobody\n";
    } else {
        let held: Vec<String> = report
            .holders
            .iter()
            .map(|h| {
                format!(
                    "<@{}> `{}` since <!date^{}^{{date_short_pretty}} {{time}}|{}>",
                    escape(&h.user),
                    h.runbook,
                    h.since.timestamp(),
                    h.since.format("%Y-%m-%d %H:%M UTC")
                )
            })
            .collect();
        out += &format!("{}\n", held.join(", "));
    }
    for s in &report.standing_access {
        out += &format!(":repeat: <@{}> {}\n", escape(&s.user), s.suggestion);
    }
    fit(out)
}

/// An ephemeral answer holds 3,000 characters: a longer report is cut at
/// a line and says where the rest is.
fn fit(out: String) -> String {
    const ROOM: usize = 2_850;
    if out.chars().count() <= 3_000 {
        return out;
    }
    let mut kept = String::new();
    for line in out.lines() {
        if kept.chars().count() + line.chars().count() + 1 > ROOM {
            break;
        }
        kept += line;
        kept.push('\n');
    }
    kept + "… cut short here: `accessbot report` prints the whole report."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_report_is_cut_at_a_line_and_says_where_the_rest_is() {
        let long: String = (0..200)
            .map(|i| format!("line {i} of the report\n"))
            .collect();
        let cut = fit(long);
        assert!(cut.chars().count() <= 3_000);
        assert!(cut.ends_with("`accessbot report` prints the whole report."));
        assert!(cut.contains("line 0 of the report\nline 1 "));
        assert_eq!(fit("short\n".into()), "short\n");
    }
}
