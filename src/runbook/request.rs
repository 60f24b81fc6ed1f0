//! The `[request]` section: who may ask (`allowed`) and for how long
//! (`default_duration`, `max_duration`, `max_total`), whether a reason is
//! required, and the short limit break-glass access must keep.

use std::time::Duration;

use super::fields::{
    optional, shorten, slack_id_hint, slack_id_kind, Checker, Section, SlackIdKind,
};
use super::model::{Principal, RequestPolicy};
use crate::duration::format_duration;

/// Break-glass access skips approval, so it must end soon.
pub(super) const BREAK_GLASS_MAX_DURATION: Duration = Duration::from_secs(4 * 3600);

/// The keys of `[request]`.
pub(super) const FIELDS: &[&str] = &[
    "allowed",
    "default_duration",
    "max_duration",
    "max_total",
    "require_reason",
    "max_schedule_ahead",
];

impl Checker {
    /// The policy, and its `max_duration` on its own so the auto-approve
    /// rules can be checked against it even when another request field is
    /// broken.
    pub(super) fn request(
        &mut self,
        s: &Section<'_>,
        break_glass: bool,
    ) -> (Option<RequestPolicy>, Option<Duration>) {
        self.unknown_fields(s, FIELDS);
        let allowed = self.allowed(s);
        let found = self.duration(s, "default_duration");
        let default_duration = self.require(
            s,
            "default_duration",
            found,
            r#"add default_duration = "1h", the length offered when the requester does not choose"#,
        );
        let found = self.duration(s, "max_duration");
        let max_duration = self.require(
            s,
            "max_duration",
            found,
            r#"add max_duration = "4h", the longest access anyone may ask for"#,
        );
        let max_total = self.duration(s, "max_total");
        let require_reason = self.bool(s, "require_reason").unwrap_or(true);
        let max_schedule_ahead = self.duration(s, "max_schedule_ahead");

        if let (Some(default), Some(max)) = (&default_duration, &max_duration) {
            if default.value > max.value {
                self.report(
                    default.line,
                    s.field("default_duration"),
                    format!(
                        "default_duration ({}) is longer than max_duration ({}); lower default_duration or raise max_duration",
                        format_duration(default.value),
                        format_duration(max.value)
                    ),
                );
            }
        }
        if let (Some(total), Some(max)) = (&max_total, &max_duration) {
            if total.value < max.value {
                self.report(
                    total.line,
                    s.field("max_total"),
                    format!(
                        "max_total ({}) is shorter than max_duration ({}); max_total counts the first grant plus all extensions, so raise it to at least max_duration or remove it",
                        format_duration(total.value),
                        format_duration(max.value)
                    ),
                );
            }
        }
        if let Some(max) = &max_duration {
            if break_glass && max.value > BREAK_GLASS_MAX_DURATION {
                self.report(
                    max.line,
                    s.field("max_duration"),
                    format!(
                        "break-glass access must be short: max_duration is {}, the limit is {}; lower max_duration",
                        format_duration(max.value),
                        format_duration(BREAK_GLASS_MAX_DURATION)
                    ),
                );
            }
        }
        let max = max_duration.as_ref().map(|m| m.value);
        let policy = (|| {
            Some(RequestPolicy {
                allowed: allowed?,
                default_duration: default_duration?.value,
                max_duration: max_duration?.value,
                max_total: optional(s, "max_total", max_total)?.map(|t| t.value),
                require_reason,
                max_schedule_ahead: optional(s, "max_schedule_ahead", max_schedule_ahead)?
                    .map_or(crate::schedule::DEFAULT_MAX_AHEAD, |m| m.value),
            })
        })();
        (policy, max)
    }

    fn allowed(&mut self, s: &Section<'_>) -> Option<Vec<Principal>> {
        let found = self.string_list(s, "allowed");
        let list = self.require(
            s,
            "allowed",
            found,
            r#"add allowed = ["*"] to let everyone request, or list Slack user IDs (U…) and user group IDs (S…)"#,
        )?;
        if list.value.is_empty() {
            self.report(
                list.line,
                s.field("allowed"),
                r#"is empty, so nobody could request this; write ["*"] for everyone, or list Slack user IDs (U…) and user group IDs (S…)"#,
            );
            return None;
        }
        let mut allowed = Vec::new();
        let mut ok = true;
        for entry in &list.value {
            let principal = if entry.value == "*" {
                Principal::Anyone
            } else {
                match slack_id_kind(&entry.value) {
                    Some(SlackIdKind::User) => Principal::User(entry.value.clone()),
                    Some(SlackIdKind::Group) => Principal::Group(entry.value.clone()),
                    None => {
                        let hint = slack_id_hint(&entry.value);
                        self.report(
                            entry.line,
                            s.field("allowed"),
                            format!(
                                "`{}` is not a Slack ID; write a user ID (U… or W…), a user group ID (S…) or \"*\" for everyone{hint}",
                                shorten(&entry.value)
                            ),
                        );
                        ok = false;
                        continue;
                    }
                }
            };
            if !allowed.contains(&principal) {
                allowed.push(principal);
            }
        }
        if !ok {
            return None;
        }
        if allowed.contains(&Principal::Anyone) {
            allowed = vec![Principal::Anyone];
        }
        Some(allowed)
    }
}

#[cfg(test)]
mod tests {
    use crate::runbook::fixture::{check, edit};

    #[test]
    fn reports_bad_durations() {
        check(
            &edit("\"4h\"", "\"1.5.5h\""),
            "request.max_duration",
            "`1.5.5h` is not a duration; write it like 30m, 90 minutes",
        );
        check(
            &edit("required = 1", "required = 1\napproval_timeout = \"0m\""),
            "approval.approval_timeout",
            "is zero",
        );
        check(
            &edit("default_duration = \"1h\"", "default_duration = \"8h\""),
            "request.default_duration",
            "default_duration (8h) is longer than max_duration (4h)",
        );
        check(
            &edit(
                "max_duration = \"4h\"",
                "max_duration = \"4h\"\nmax_total = \"2h\"",
            ),
            "request.max_total",
            "max_total (2h) is shorter than max_duration (4h)",
        );
        check(
            &edit(
                "owner = \"U0OWNER\"",
                "owner = \"U0OWNER\"\nbreak_glass = true",
            )
            .replace("max_duration = \"4h\"", "max_duration = \"8h\""),
            "request.max_duration",
            "break-glass access must be short: max_duration is 8h, the limit is 4h",
        );
    }
}
