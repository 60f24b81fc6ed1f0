//! `approval.auto_approve`: rules that approve a request with no person, for
//! the users or groups they name and requests up to their `max_duration`
//! (never longer than `request.max_duration`). Written as one inline table or
//! as `[[approval.auto_approve]]` tables; each rule gets a name for the audit
//! log, given or `auto_approve[N]`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::fields::{
    optional, shorten, slack_id_hint, slack_id_kind, Checker, Section, SlackIdKind,
};
use super::model::AutoApproveRule;
use crate::duration::format_duration;

/// The keys of one auto-approve rule.
pub(super) const FIELDS: &[&str] = &["name", "users", "groups", "max_duration"];

impl Checker {
    pub(super) fn auto_approve(
        &mut self,
        s: &Section<'_>,
        request_max: Option<Duration>,
    ) -> Option<Vec<AutoApproveRule>> {
        let Some((item, line)) = self.entry(s, "auto_approve") else {
            return Some(Vec::new());
        };
        let rules: Vec<(Section<'_>, String)> = match item.as_table_like() {
            Some(table) => vec![(
                Section {
                    path: s.field("auto_approve"),
                    heading: "[approval.auto_approve]".into(),
                    table,
                    line,
                },
                "auto_approve".to_string(),
            )],
            None => self
                .table_list(
                    s,
                    "auto_approve",
                    "[[approval.auto_approve]]",
                    "approval.auto_approve",
                )?
                .into_iter()
                .enumerate()
                .map(|(i, rule)| (rule, format!("auto_approve[{}]", i + 1)))
                .collect(),
        };
        let mut out = Vec::new();
        let mut names: BTreeMap<String, Option<usize>> = BTreeMap::new();
        let mut ok = true;
        for (rule, default_name) in &rules {
            let name = self.string(rule, "name");
            if let Some(name) = &name {
                if let Some(first) = names.get(&name.value) {
                    let at = first.map(|l| format!(" on line {l}")).unwrap_or_default();
                    self.report(
                        name.line,
                        rule.field("name"),
                        format!(
                            "another auto-approve rule{at} is already named `{}`; give each rule its own name",
                            shorten(&name.value)
                        ),
                    );
                    ok = false;
                } else if name.value.starts_with("auto_approve[") {
                    self.report(
                        name.line,
                        rule.field("name"),
                        format!(
                            "`{}` looks like the name accessbot gives a rule without one (auto_approve[N]), so the audit log could not tell the two apart; pick another name",
                            shorten(&name.value)
                        ),
                    );
                    ok = false;
                } else {
                    names.insert(name.value.clone(), name.line);
                }
            }
            match self.auto_approve_rule(rule, request_max) {
                Some(mut parsed) => {
                    parsed.name = match name {
                        Some(name) => name.value,
                        None if rule.has("name") => {
                            ok = false;
                            continue;
                        }
                        None => default_name.clone(),
                    };
                    out.push(parsed);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// One auto-approve rule, with an empty name the caller fills in.
    fn auto_approve_rule(
        &mut self,
        s: &Section<'_>,
        request_max: Option<Duration>,
    ) -> Option<AutoApproveRule> {
        self.unknown_fields(s, FIELDS);
        let users = self.id_list(s, "users", SlackIdKind::User);
        let groups = self.id_list(s, "groups", SlackIdKind::Group);
        let found = self.duration(s, "max_duration");
        let max_duration = self.require(
            s,
            "max_duration",
            found,
            r#"add max_duration = "30m": only requests up to that long are approved automatically"#,
        );
        // A list that is present but broken is reported already.
        let names_none = |list: &Option<Vec<String>>, key: &str| match list {
            Some(list) => list.is_empty(),
            None => !s.has(key),
        };
        if names_none(&users, "users") && names_none(&groups, "groups") {
            self.report(
                s.line,
                s.path.clone(),
                r#"this auto-approve rule names nobody; add users = ["U0…"] or groups = ["S0…"] (whose requests are approved automatically)"#,
            );
            return None;
        }
        if let (Some(max), Some(request_max)) = (&max_duration, request_max) {
            if max.value > request_max {
                self.report(
                    max.line,
                    s.field("max_duration"),
                    format!(
                        "auto-approve max_duration ({}) is longer than request.max_duration ({}); lower it to at most {}",
                        format_duration(max.value),
                        format_duration(request_max),
                        format_duration(request_max)
                    ),
                );
                return None;
            }
        }
        Some(AutoApproveRule {
            name: String::new(),
            users: optional(s, "users", users)?.unwrap_or_default(),
            groups: optional(s, "groups", groups)?.unwrap_or_default(),
            max_duration: max_duration?.value,
        })
    }

    /// A list of Slack IDs that must all be users or all be groups.
    fn id_list(&mut self, s: &Section<'_>, key: &str, kind: SlackIdKind) -> Option<Vec<String>> {
        let list = self.string_list(s, key)?;
        let mut ids = Vec::new();
        let mut ok = true;
        for entry in list.value {
            let message = match (slack_id_kind(&entry.value), kind) {
                (Some(found), wanted) if found == wanted => {
                    if !ids.contains(&entry.value) {
                        ids.push(entry.value);
                    }
                    continue;
                }
                (Some(SlackIdKind::Group), _) => {
                    format!("`{}` is a user group ID; put it in groups", entry.value)
                }
                (Some(SlackIdKind::User), _) => {
                    format!("`{}` is a user ID; put it in users", entry.value)
                }
                (None, SlackIdKind::User) => format!(
                    "`{}` is not a Slack user ID; write member IDs (U… or W…){}",
                    shorten(&entry.value),
                    slack_id_hint(&entry.value)
                ),
                (None, SlackIdKind::Group) => format!(
                    "`{}` is not a Slack user group ID; write group IDs (S…){}",
                    shorten(&entry.value),
                    slack_id_hint(&entry.value)
                ),
            };
            self.report(entry.line, s.field(key), message);
            ok = false;
        }
        ok.then_some(ids)
    }
}

#[cfg(test)]
mod tests {
    use crate::runbook::fixture::{check, edit, VALID};

    #[test]
    fn reports_bad_auto_approve_rules() {
        let rule = |body: &str| {
            edit(
                "required = 1",
                &format!("required = 1\nauto_approve = {{ {body} }}"),
            )
        };
        check(
            &rule("users = [\"U0ONCALL\"], max_duration = \"8h\""),
            "approval.auto_approve.max_duration",
            "longer than request.max_duration (4h)",
        );
        check(
            &rule("max_duration = \"1h\""),
            "approval.auto_approve",
            "names nobody",
        );
        check(
            &rule("users = [], groups = [], max_duration = \"1h\""),
            "approval.auto_approve",
            "names nobody",
        );
        check(
            &rule("users = [\"U0ONCALL\"]"),
            "approval.auto_approve.max_duration",
            "missing",
        );
        check(
            &rule("users = [\"S0ONCALL\"], max_duration = \"1h\""),
            "approval.auto_approve.users",
            "is a user group ID; put it in groups",
        );
        check(
            &rule("groups = [\"U0ONCALL\"], max_duration = \"1h\""),
            "approval.auto_approve.groups",
            "is a user ID; put it in users",
        );
        let twice = format!(
            "{VALID}\n[[approval.auto_approve]]\nname = \"x\"\nusers = [\"U0A\"]\nmax_duration = \"1h\"\n\n[[approval.auto_approve]]\nname = \"x\"\nusers = [\"U0B\"]\nmax_duration = \"1h\"\n"
        );
        check(&twice, "approval.auto_approve[2].name", "already named `x`");
    }
}
