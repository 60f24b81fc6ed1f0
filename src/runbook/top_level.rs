//! The top level of a runbook: `id`, `title`, `description`, `system`,
//! `owner`, `instructions`, `break_glass` and `feedback`, and the walk over the whole
//! file that checks them and hands each `[section]` to its own file
//! (`request.rs`, `approval.rs`, `grant.rs`), then puts the runbook
//! together when nothing was wrong.

use super::fields::{
    shorten, slack_id_hint, slack_id_kind, Checker, Located, Section, SlackIdKind,
};
use super::grant::one_of;
use super::model::Runbook;

/// The keys allowed above the first `[section]` line.
pub(super) const FIELDS: &[&str] = &[
    "id",
    "title",
    "description",
    "system",
    "owner",
    "instructions",
    "break_glass",
    "feedback",
    "request",
    "approval",
    "grant",
    "inputs",
];
/// Slack cuts option texts in menus at 75 characters.
const TITLE_MAX_CHARS: usize = 75;
const ID_MAX_CHARS: usize = 64;

impl Checker {
    pub(super) fn runbook(
        &mut self,
        root: &Section<'_>,
    ) -> (Option<Located<String>>, Option<Runbook>) {
        self.unknown_fields(root, FIELDS);
        let id = self.id(root);
        let title = self.title(root);
        let description = self.text_field(
            root,
            "description",
            r#""Refunds and plan changes in the billing portal""#,
            "one sentence on what this access allows",
        );
        let system = self.text_field(
            root,
            "system",
            r#""Billing portal""#,
            "the name of the system, shown to approvers",
        );
        let owner = self.owner(root);
        let instructions = self.text_field(
            root,
            "instructions",
            r#""Sign in at https://billing.example.com; access ends by itself.""#,
            "what the requester should do once access is granted",
        );
        let break_glass = self.bool(root, "break_glass").unwrap_or(false);
        // Whether the requester is asked two questions when a grant ends.
        let feedback = self.bool(root, "feedback").unwrap_or(true);

        let owner_id = owner.as_ref().map(|o| o.value.as_str());
        let (request, request_max) = match self.section(
            root,
            "request",
            "request",
            "[request]",
            "allowed, default_duration and max_duration",
        ) {
            Some(s) => self.request(&s, break_glass),
            None => (None, None),
        };
        let approval = self
            .section(
                root,
                "approval",
                "approval",
                "[approval]",
                "approvers and required; every runbook needs someone to review its requests",
            )
            .and_then(|s| self.approval(&s, owner_id, request_max));
        let needs = format!(
            "a provider ({}) and its fields",
            one_of(self.providers.names())
        );
        let grant = self
            .section(root, "grant", "grant", "[grant]", &needs)
            .and_then(|s| self.grant(&s));
        let inputs = self.inputs(root);

        let runbook = (|| {
            Some(Runbook {
                id: id.clone()?.value,
                title: title?.value,
                description: description?.value,
                system: system?.value,
                owner: owner?.value,
                instructions: instructions?.value,
                break_glass,
                feedback,
                request: request?,
                approval: approval?,
                grant: grant?,
                inputs: inputs?,
                source: self.file.clone(),
            })
        })();
        (id, runbook)
    }

    fn id(&mut self, root: &Section<'_>) -> Option<Located<String>> {
        let found = self.string(root, "id");
        let id = self.require(
            root,
            "id",
            found,
            r#"add id = "billing-admin", a short unique name of lowercase letters, digits and dashes"#,
        )?;
        let valid = id.value.len() <= ID_MAX_CHARS
            && id.value.starts_with(|c: char| c.is_ascii_lowercase())
            && id
                .value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            return Some(id);
        }
        let mut message = format!(
            "`{}` is not a valid id; use only lowercase letters, digits and dashes, start with a letter, at most {ID_MAX_CHARS} characters",
            shorten(&id.value)
        );
        let fixed = slug(&id.value);
        if !fixed.is_empty() && fixed != id.value {
            message.push_str(&format!(", e.g. id = \"{fixed}\""));
        }
        self.report(id.line, "id", message);
        None
    }

    fn title(&mut self, root: &Section<'_>) -> Option<Located<String>> {
        let title = self.text_field(
            root,
            "title",
            r#""Billing portal admin""#,
            "the short name people pick from a list",
        )?;
        let chars = title.value.chars().count();
        if chars > TITLE_MAX_CHARS {
            self.report(
                title.line,
                "title",
                format!(
                    "is {chars} characters long; Slack shows at most {TITLE_MAX_CHARS} in a menu, so shorten it and put the details in description"
                ),
            );
            return None;
        }
        Some(title)
    }

    fn owner(&mut self, root: &Section<'_>) -> Option<Located<String>> {
        let found = self.string(root, "owner");
        let owner = self.require(
            root,
            "owner",
            found,
            r#"add owner = "U0123ABCD", the Slack user ID of the person responsible for this system"#,
        )?;
        match slack_id_kind(&owner.value) {
            Some(SlackIdKind::User) => Some(owner),
            Some(SlackIdKind::Group) => {
                self.report(
                    owner.line,
                    "owner",
                    format!(
                        "`{}` is a user group; the owner must be one person's Slack user ID (U… or W…)",
                        owner.value
                    ),
                );
                None
            }
            None => {
                let hint = slack_id_hint(&owner.value);
                self.report(
                    owner.line,
                    "owner",
                    format!(
                        "`{}` is not a Slack user ID; write the owner's member ID (U… or W…){hint}",
                        shorten(&owner.value)
                    ),
                );
                None
            }
        }
    }
}

/// A suggested id from an invalid one: "Billing Admin" → "billing-admin".
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    let out = out.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-');
    out.chars()
        .take(ID_MAX_CHARS)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::grant::{CommandSpec, GrantSpec, WebhookSpec};
    use crate::runbook::fixture::{check, edit, listed, parse, VALID};
    use crate::runbook::model::*;

    #[test]
    fn the_valid_example_is_valid() {
        if let Err(problems) = parse(VALID) {
            panic!("{}", listed(&problems));
        }
    }

    #[test]
    fn a_full_runbook_maps_into_the_model() {
        let text = r#"id = "billing-admin"
title = "Billing portal admin"
description = "Refunds and plan changes"
system = "Billing portal"
owner = "U0OWNER"
instructions = "Sign in at https://billing.example.com."
break_glass = false

[request]
allowed = ["U0ALICE", "S0FINANCE", "W0BOB", "U0ALICE"]
default_duration = "1h"
max_duration = "4h"
max_total = "8h"
require_reason = false

[approval]
approvers = ["U0BOB", "S0FINLEADS", "owner", "manager"]
required = 2
approval_timeout = "12h"
allow_self_approval = true
remind_after = "1h"
escalate_after = "4h"
fallback_approvers = ["U0CTO"]
auto_approve = { users = ["U0ONCALL"], groups = ["S0ONCALL"], max_duration = "30m" }

[grant]
provider = "command"
grant = ["./scripts/billing.sh", "grant"]
revoke = ["./scripts/billing.sh", "revoke"]
timeout = "45s"
env = ["BILLING_API_TOKEN"]
"#;
        let runbook = parse(text).unwrap_or_else(|p| panic!("{}", listed(&p)));
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let expected = Runbook {
            id: "billing-admin".into(),
            title: "Billing portal admin".into(),
            description: "Refunds and plan changes".into(),
            system: "Billing portal".into(),
            owner: "U0OWNER".into(),
            instructions: "Sign in at https://billing.example.com.".into(),
            break_glass: false,
            feedback: true,
            request: RequestPolicy {
                allowed: vec![
                    Principal::User("U0ALICE".into()),
                    Principal::Group("S0FINANCE".into()),
                    Principal::User("W0BOB".into()),
                ],
                default_duration: hours(1),
                max_duration: hours(4),
                max_total: Some(hours(8)),
                require_reason: false,
                max_schedule_ahead: crate::schedule::DEFAULT_MAX_AHEAD,
            },
            approval: ApprovalPolicy {
                stages: vec![ApprovalStage {
                    name: "Approval".into(),
                    approvers: vec![
                        Approver::User("U0BOB".into()),
                        Approver::Group("S0FINLEADS".into()),
                        Approver::Owner,
                        Approver::Manager,
                    ],
                    required: 2,
                }],
                approval_timeout: hours(12),
                allow_self_approval: true,
                auto_approve: vec![AutoApproveRule {
                    name: "auto_approve".into(),
                    users: vec!["U0ONCALL".into()],
                    groups: vec!["S0ONCALL".into()],
                    max_duration: Duration::from_secs(30 * 60),
                }],
                remind_after: Some(hours(1)),
                escalate_after: Some(hours(4)),
                fallback_approvers: vec![Approver::User("U0CTO".into())],
            },
            grant: GrantSpec::new(
                "command",
                CommandSpec {
                    grant: vec!["./scripts/billing.sh".into(), "grant".into()],
                    revoke: vec!["./scripts/billing.sh".into(), "revoke".into()],
                    timeout: Duration::from_secs(45),
                    env: vec!["BILLING_API_TOKEN".into()],
                },
            ),
            inputs: vec![],
            source: PathBuf::from("t.toml"),
        };
        assert_eq!(runbook, expected);
    }

    #[test]
    fn stages_rule_lists_and_defaults_map_into_the_model() {
        let text = r#"id = "idp-admin"
title = "IdP admin"
description = "Admin role"
system = "SSO"
owner = "U0OWNER"
instructions = "Sign in."
break_glass = true

[request]
allowed = ["*", "U0ALICE"]
default_duration = "1h"
max_duration = "2h"

[approval]

[[approval.stages]]
approvers = ["manager"]

[[approval.stages]]
name = "Security"
approvers = ["S0SECURITY", "owner"]
required = 2

[[approval.auto_approve]]
users = ["U0ALICE"]
max_duration = "1h"

[[approval.auto_approve]]
name = "on-call"
groups = ["S0ONCALL"]
max_duration = "30m"

[grant]
provider = "webhook"
url = "https://idp.example.com/hook"
secret_env = "IDP_SECRET"
"#;
        let runbook = parse(text).unwrap_or_else(|p| panic!("{}", listed(&p)));
        assert!(runbook.break_glass);
        assert_eq!(runbook.request.allowed, vec![Principal::Anyone]);
        assert!(
            runbook.request.require_reason,
            "require_reason defaults to true"
        );
        assert_eq!(runbook.request.max_total, None);
        let approval = &runbook.approval;
        assert_eq!(
            approval.stages,
            vec![
                ApprovalStage {
                    name: "Stage 1".into(),
                    approvers: vec![Approver::Manager],
                    required: 1,
                },
                ApprovalStage {
                    name: "Security".into(),
                    approvers: vec![Approver::Group("S0SECURITY".into()), Approver::Owner],
                    required: 2,
                },
            ]
        );
        assert_eq!(approval.approval_timeout, Duration::from_secs(24 * 3600));
        assert!(!approval.allow_self_approval);
        assert_eq!(
            (approval.remind_after, approval.escalate_after),
            (None, None)
        );
        let names: Vec<&str> = approval
            .auto_approve
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["auto_approve[1]", "on-call"]);
        assert_eq!(
            runbook.grant,
            GrantSpec::new(
                "webhook",
                WebhookSpec {
                    url: "https://idp.example.com/hook".into(),
                    secret_env: "IDP_SECRET".into(),
                    timeout: Duration::from_secs(30),
                }
            )
        );
    }

    #[test]
    fn reports_missing_fields_and_sections() {
        check(
            &edit("owner = \"U0OWNER\"\n", ""),
            "owner",
            "missing; add owner = ",
        );
        check(
            &edit("title = \"Billing portal admin\"\n", ""),
            "title",
            "missing",
        );
        check(
            &edit(
                "instructions = \"Sign in at https://billing.example.com.\"\n",
                "",
            ),
            "instructions",
            "missing",
        );
        check(
            &edit("default_duration = \"1h\"\n", ""),
            "request.default_duration",
            "missing",
        );
        check(
            &edit("allowed = [\"*\"]\n", ""),
            "request.allowed",
            "missing",
        );
        check(
            &edit("revoke = [\"./scripts/billing.sh\", \"revoke\"]\n", ""),
            "grant.revoke",
            "missing",
        );
        check(
            &edit("provider = \"command\"\n", ""),
            "grant.provider",
            "missing",
        );
        let no_grant = VALID[..VALID.find("[grant]").unwrap()].to_string();
        check(&no_grant, "grant", "missing [grant] section");
        check(
            &edit("system = \"Billing portal\"", "system = \"  \""),
            "system",
            "is empty",
        );
        check(
            &edit("allowed = [\"*\"]", "allowed = []"),
            "request.allowed",
            "nobody could request",
        );
    }

    #[test]
    fn feedback_is_on_by_default_and_can_be_turned_off() {
        assert!(parse(VALID).unwrap().feedback);
        let off = edit(
            "owner = \"U0OWNER\"\n",
            "owner = \"U0OWNER\"\nfeedback = false\n",
        );
        assert!(
            !parse(&off)
                .unwrap_or_else(|p| panic!("{}", listed(&p)))
                .feedback
        );
        check(
            &edit(
                "owner = \"U0OWNER\"\n",
                "owner = \"U0OWNER\"\nfeedback = \"no\"\n",
            ),
            "feedback",
            "true or false",
        );
    }

    #[test]
    fn reports_bad_ids() {
        check(
            &edit("\"billing-admin\"", "\"Billing_Admin\""),
            "id",
            "e.g. id = \"billing-admin\"",
        );
        check(
            &edit("\"billing-admin\"", "\"1-billing\""),
            "id",
            "start with a letter",
        );
        check(
            &edit("\"billing-admin\"", &format!("\"{}\"", "a".repeat(65))),
            "id",
            "at most 64",
        );
        check(
            &edit(
                "\"Billing portal admin\"",
                &format!("\"{}\"", "x".repeat(76)),
            ),
            "title",
            "is 76 characters long",
        );
    }
}
