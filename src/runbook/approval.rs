//! The `[approval]` section: who approves, in one step (`approvers` and
//! `required` directly under `[approval]`) or in `[[approval.stages]]`, how
//! long a request waits (`approval_timeout`), reminders and escalation to
//! `fallback_approvers`, and whether a requester may approve their own
//! request. Each stage is checked to be able to collect its `required`
//! approvals. Auto-approval rules have their own file, `auto_approve.rs`.

use std::collections::HashSet;
use std::time::Duration;

use super::fields::{
    optional, shorten, slack_id_hint, slack_id_kind, Checker, Located, Section, SlackIdKind,
};
use super::model::{ApprovalPolicy, ApprovalStage, Approver};
use crate::duration::format_duration;

const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The keys of `[approval]`.
pub(super) const FIELDS: &[&str] = &[
    "approvers",
    "required",
    "approval_timeout",
    "allow_self_approval",
    "remind_after",
    "escalate_after",
    "fallback_approvers",
    "auto_approve",
    "stages",
];
/// The keys of one `[[approval.stages]]` table.
pub(super) const STAGE_FIELDS: &[&str] = &["name", "approvers", "required"];

impl Checker {
    pub(super) fn approval(
        &mut self,
        s: &Section<'_>,
        owner: Option<&str>,
        request_max: Option<Duration>,
    ) -> Option<ApprovalPolicy> {
        self.unknown_fields(s, FIELDS);
        let stages = self.stages(s, owner);

        let timeout = self.duration(s, "approval_timeout");
        let allow_self_approval = self.bool(s, "allow_self_approval").unwrap_or(false);
        let remind_after = self.duration(s, "remind_after");
        let escalate_after = self.duration(s, "escalate_after");
        let fallback = self.approver_list(s, "fallback_approvers", owner);
        let auto_approve = self.auto_approve(s, request_max);

        // A broken approval_timeout is reported already; comparing against
        // the default would only add a confusing second problem.
        let timeout_value = match &timeout {
            Some(t) => Some(t.value),
            None if s.has("approval_timeout") => None,
            None => Some(DEFAULT_APPROVAL_TIMEOUT),
        };
        for (key, after, what) in [
            (
                "remind_after",
                &remind_after,
                "reminder would never be sent",
            ),
            (
                "escalate_after",
                &escalate_after,
                "escalation would never happen",
            ),
        ] {
            if let (Some(after), Some(timeout)) = (after, timeout_value) {
                if after.value >= timeout {
                    self.report(
                        after.line,
                        s.field(key),
                        format!(
                            "{key} ({}) is not shorter than approval_timeout ({}), so the {what}: the request expires first; lower {key} or raise approval_timeout",
                            format_duration(after.value),
                            format_duration(timeout)
                        ),
                    );
                }
            }
        }
        let has_fallback = fallback.as_ref().is_some_and(|f| !f.value.is_empty());
        if let Some(escalate) = &escalate_after {
            if !has_fallback && !s.has("fallback_approvers") {
                self.report(
                    escalate.line,
                    s.field("escalate_after"),
                    r#"escalate_after is set but there are no fallback_approvers to escalate to; add fallback_approvers = ["U0…"] or remove escalate_after"#,
                );
            }
        }
        if let Some(list) = &fallback {
            if list.value.is_empty() && escalate_after.is_some() {
                self.report(
                    list.line,
                    s.field("fallback_approvers"),
                    "is empty, so escalate_after has nobody to escalate to; list at least one approver or remove escalate_after",
                );
            } else if !list.value.is_empty() && escalate_after.is_none() && !s.has("escalate_after")
            {
                self.report(
                    list.line,
                    s.field("fallback_approvers"),
                    r#"fallback approvers are only asked after escalate_after; add escalate_after = "4h" or remove fallback_approvers"#,
                );
            }
        }

        Some(ApprovalPolicy {
            stages: stages?,
            approval_timeout: timeout_value?,
            allow_self_approval,
            auto_approve: auto_approve?,
            remind_after: optional(s, "remind_after", remind_after)?.map(|d| d.value),
            escalate_after: optional(s, "escalate_after", escalate_after)?.map(|d| d.value),
            fallback_approvers: match fallback {
                Some(list) => list.value,
                None if s.has("fallback_approvers") => return None,
                None => Vec::new(),
            },
        })
    }

    /// The approval stages: either `approvers`/`required` directly under
    /// `[approval]` (one stage) or `[[approval.stages]]`.
    fn stages(&mut self, s: &Section<'_>, owner: Option<&str>) -> Option<Vec<ApprovalStage>> {
        let direct = s.has("approvers") || s.has("required");
        if s.has("stages") {
            let tables = self.table_list(s, "stages", "[[approval.stages]]", "approval.stages");
            if direct {
                // Check both anyway, so their own problems show up in this run too.
                self.stage(s, owner);
                for stage in tables.iter().flatten() {
                    self.unknown_fields(stage, STAGE_FIELDS);
                    self.stage(stage, owner);
                }
                let line = self.entry(s, "stages").and_then(|(_, line)| line);
                self.report(
                    line,
                    s.field("stages"),
                    "[approval] has both approvers/required and [[approval.stages]]; use one: approvers and required directly under [approval] for a single step, or one [[approval.stages]] per step",
                );
                return None;
            }
            let tables = tables?;
            if tables.is_empty() {
                self.no_approvers(s);
                return None;
            }
            let mut stages = Vec::new();
            let mut ok = true;
            for (i, stage) in tables.iter().enumerate() {
                self.unknown_fields(stage, STAGE_FIELDS);
                let name = match self.string(stage, "name") {
                    Some(name) if name.value.trim().is_empty() => {
                        self.report(
                            name.line,
                            stage.field("name"),
                            "is empty; name the stage for approvers (e.g. \"Manager\") or remove the line",
                        );
                        None
                    }
                    Some(name) => Some(name.value),
                    None if stage.has("name") => None,
                    None => Some(format!("Stage {}", i + 1)),
                };
                match (name, self.stage(stage, owner)) {
                    (Some(name), Some((approvers, required))) => stages.push(ApprovalStage {
                        name,
                        approvers,
                        required,
                    }),
                    _ => ok = false,
                }
            }
            return ok.then_some(stages);
        }
        if !direct {
            self.no_approvers(s);
            return None;
        }
        let (approvers, required) = self.stage(s, owner)?;
        Some(vec![ApprovalStage {
            name: "Approval".into(),
            approvers,
            required,
        }])
    }

    fn no_approvers(&mut self, s: &Section<'_>) {
        self.report(
            s.line,
            s.field("approvers"),
            r#"no approvers; add approvers = ["owner"] and required = 1 under [approval], or one [[approval.stages]] per step; every runbook needs someone to review its requests, break-glass ones too (they review after the fact)"#,
        );
    }

    /// The `approvers` and `required` of one stage (or of `[approval]` itself).
    fn stage(&mut self, s: &Section<'_>, owner: Option<&str>) -> Option<(Vec<Approver>, u32)> {
        let found = self.approver_list(s, "approvers", owner);
        let approvers = self.require(
            s,
            "approvers",
            found,
            r#"add approvers = ["owner"]; approvers are Slack user IDs (U…), user group IDs (S…), "owner" or "manager""#,
        );
        if let Some(list) = &approvers {
            if list.value.is_empty() {
                self.report(
                    list.line,
                    s.field("approvers"),
                    r#"is empty, so nobody could approve; list Slack user IDs (U…), user group IDs (S…), "owner" or "manager""#,
                );
                return None;
            }
        }
        let required = match self.integer(s, "required") {
            Some(required) if required.value < 1 => {
                self.report(
                    required.line,
                    s.field("required"),
                    format!(
                        "required = {} would approve requests without anyone looking; set required = 1 or more",
                        required.value
                    ),
                );
                None
            }
            Some(required) => Some(Located {
                value: u32::try_from(required.value).unwrap_or(u32::MAX),
                line: required.line,
            }),
            None if s.has("required") => None,
            None => Some(Located {
                value: 1,
                line: s.line,
            }),
        };
        let (approvers, required) = (approvers?.value, required?);
        if let Some(people) = possible_approvers(&approvers, owner) {
            if required.value as usize > people {
                let listed = if people == 1 {
                    "only 1 approver is listed".to_string()
                } else {
                    format!("only {people} approvers are listed")
                };
                self.report(
                    required.line,
                    s.field("required"),
                    format!(
                        "required = {} but {listed}; lower required or add approvers",
                        required.value
                    ),
                );
                return None;
            }
        }
        Some((approvers, required.value))
    }

    fn approver_list(
        &mut self,
        s: &Section<'_>,
        key: &str,
        owner: Option<&str>,
    ) -> Option<Located<Vec<Approver>>> {
        let list = self.string_list(s, key)?;
        let mut approvers = Vec::new();
        let mut ok = true;
        for entry in &list.value {
            let approver = match entry.value.as_str() {
                "owner" => Approver::Owner,
                "manager" => Approver::Manager,
                other => match slack_id_kind(other) {
                    Some(SlackIdKind::User) => Approver::User(other.to_string()),
                    Some(SlackIdKind::Group) => Approver::Group(other.to_string()),
                    None => {
                        let hint = if other == "*" {
                            "; \"*\" means everyone, who cannot all approve: name people or groups"
                                .to_string()
                        } else if other.eq_ignore_ascii_case("owner")
                            || other.eq_ignore_ascii_case("manager")
                        {
                            format!("; write `{}` in lowercase", other.to_ascii_lowercase())
                        } else {
                            slack_id_hint(other)
                        };
                        self.report(
                            entry.line,
                            s.field(key),
                            format!(
                                "`{}` is not an approver; write a Slack user ID (U… or W…), a user group ID (S…), \"owner\" or \"manager\"{hint}",
                                shorten(other)
                            ),
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            let same_as_owner = |a: &Approver| match (a, owner) {
                (Approver::User(id), Some(owner)) => id == owner,
                _ => false,
            };
            if approvers.contains(&approver) {
                self.report(
                    entry.line,
                    s.field(key),
                    format!("`{}` is listed twice; remove one", entry.value),
                );
                ok = false;
            } else if (approver == Approver::Owner && approvers.iter().any(same_as_owner))
                || (same_as_owner(&approver) && approvers.contains(&Approver::Owner))
            {
                self.report(
                    entry.line,
                    s.field(key),
                    format!(
                        "`owner` and `{}` are the same person (the runbook owner); remove one",
                        owner.unwrap_or_default()
                    ),
                );
                ok = false;
            } else {
                approvers.push(approver);
            }
        }
        ok.then_some(Located {
            value: approvers,
            line: list.line,
        })
    }
}

/// How many different people could approve a stage; `None` when a group is
/// listed, since a group's size is only known when a request comes in.
/// `owner` is one person (the owner's user ID if also listed), `manager` one.
fn possible_approvers(approvers: &[Approver], owner: Option<&str>) -> Option<usize> {
    let mut people = HashSet::new();
    let mut manager = false;
    for approver in approvers {
        match approver {
            Approver::Group(_) => return None,
            Approver::User(id) => {
                people.insert(id.as_str());
            }
            Approver::Owner => {
                people.insert(owner.unwrap_or("owner"));
            }
            Approver::Manager => manager = true,
        }
    }
    Some(people.len() + usize::from(manager))
}

#[cfg(test)]
mod tests {
    use crate::runbook::fixture::{check, edit, parse, VALID};

    #[test]
    fn a_group_approver_counts_as_unbounded() {
        let text = edit(
            "approvers = [\"owner\", \"U0BOB\"]\nrequired = 1",
            "approvers = [\"S0TEAM\"]\nrequired = 5",
        );
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn reports_impossible_approvals() {
        check(
            &edit("required = 1", "required = 0"),
            "approval.required",
            "set required = 1 or more",
        );
        check(
            &edit("required = 1", "required = 3"),
            "approval.required",
            "required = 3 but only 2 approvers are listed; lower required or add approvers",
        );
        // `owner` and `manager` are one person each, whoever they are.
        check(
            &edit(
                "[\"owner\", \"U0BOB\"]\nrequired = 1",
                "[\"owner\", \"manager\"]\nrequired = 3",
            ),
            "approval.required",
            "only 2 approvers",
        );
        check(
            &edit(
                "[\"owner\", \"U0BOB\"]",
                "[\"owner\", \"U0BOB\", \"U0BOB\"]",
            ),
            "approval.approvers",
            "`U0BOB` is listed twice",
        );
        check(
            &edit("[\"owner\", \"U0BOB\"]", "[\"owner\", \"U0OWNER\"]"),
            "approval.approvers",
            "are the same person",
        );
        check(
            &edit("[\"owner\", \"U0BOB\"]", "[]"),
            "approval.approvers",
            "nobody could approve",
        );
        check(
            &edit("approvers = [\"owner\", \"U0BOB\"]\nrequired = 1\n", ""),
            "approval.approvers",
            "no approvers",
        );
        check(
            &format!("{VALID}\n[[approval.stages]]\napprovers = [\"owner\"]\n"),
            "approval.stages",
            "has both approvers/required and [[approval.stages]]",
        );
    }

    #[test]
    fn reports_bad_stages() {
        let staged = edit(
            "approvers = [\"owner\", \"U0BOB\"]\nrequired = 1\n",
            "\n[[approval.stages]]\nname = \"Manager\"\napprovers = [\"manager\"]\n\n[[approval.stages]]\napprovers = [\"owner\"]\n",
        );
        assert!(parse(&staged).is_ok(), "{staged}");
        check(
            &staged.replace("approvers = [\"owner\"]\n", "name = \"Owner\"\n"),
            "approval.stages[2].approvers",
            "missing",
        );
        check(
            &staged.replace(
                "approvers = [\"owner\"]\n",
                "approvers = [\"owner\"]\nrequired = 2\n",
            ),
            "approval.stages[2].required",
            "required = 2 but only 1 approver is listed",
        );
        check(
            &edit(
                "approvers = [\"owner\", \"U0BOB\"]\nrequired = 1\n",
                "\n[approval.stages]\napprovers = [\"owner\"]\n",
            ),
            "approval.stages",
            "must be a list of tables, not a single table; write [[approval.stages]] with double brackets",
        );
    }

    #[test]
    fn reports_reminders_and_escalations_that_cannot_happen() {
        let approval = "required = 1";
        check(
            &edit(approval, "required = 1\nescalate_after = \"4h\""),
            "approval.escalate_after",
            "no fallback_approvers",
        );
        check(
            &edit(approval, "required = 1\nfallback_approvers = [\"U0CTO\"]"),
            "approval.fallback_approvers",
            "only asked after escalate_after",
        );
        check(
            &edit(approval, "required = 1\nremind_after = \"1d\""),
            "approval.remind_after",
            "remind_after (1d) is not shorter than approval_timeout (1d)",
        );
        check(
            &edit(
                approval,
                "required = 1\napproval_timeout = \"2h\"\nescalate_after = \"3h\"\nfallback_approvers = [\"U0CTO\"]",
            ),
            "approval.escalate_after",
            "escalation would never happen",
        );
    }
}
