//! The `slack_usergroup` provider: access is membership of a Slack user
//! group (which many SSO and SaaS tools map to a role). Grant adds the
//! requester to the group, revoke removes them; both are idempotent. It owns
//! its one `[grant]` key, `usergroup`, and runs only where accessbot has a
//! Slack client (`Services::slack`).
//!
//! usergroups.users.update replaces the whole member list, so updates are
//! serialised here (read, change, write) to never lose a concurrent one.

use tokio::sync::Mutex;

use super::{Action, GrantContext, GrantError, GrantFuture, Provider, Services};
use crate::runbook::{shorten, slack_id_hint, slack_id_kind, GrantTable, SlackIdKind};
use crate::slack::SlackClient;

/// A `slack_usergroup` runbook's `[grant]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackUsergroupSpec {
    /// The ID (`S…`) of the group whose members have the access.
    pub usergroup: String,
}

impl Provider for SlackUsergroupProvider {
    const NAME: &'static str = "slack_usergroup";
    const KEYS: &'static [&'static str] = &["usergroup"];
    type Spec = SlackUsergroupSpec;

    fn parse(t: &mut GrantTable<'_>) -> Option<SlackUsergroupSpec> {
        let found = t.string("usergroup");
        let group = t.require(
            "usergroup",
            found,
            r#"add usergroup = "S0123ABCD", the ID of the Slack user group that carries the access"#,
        )?;
        if slack_id_kind(&group.value) != Some(SlackIdKind::Group) {
            let hint = match slack_id_kind(&group.value) {
                Some(SlackIdKind::User) => "; this one is a user ID".to_string(),
                _ => slack_id_hint(&group.value),
            };
            t.report(
                group.line,
                "usergroup",
                format!(
                    "`{}` is not a Slack user group ID; write the group's ID (S…){hint}",
                    shorten(&group.value)
                ),
            );
            return None;
        }
        Some(SlackUsergroupSpec {
            usergroup: group.value,
        })
    }

    fn start(services: &Services) -> Option<Self> {
        services.slack.clone().map(Self::new)
    }

    fn apply<'a>(
        &'a self,
        spec: &'a SlackUsergroupSpec,
        action: Action,
        ctx: &'a GrantContext,
    ) -> GrantFuture<'a> {
        Box::pin(self.change(&spec.usergroup, action, &ctx.user_id))
    }
}

pub struct SlackUsergroupProvider {
    slack: SlackClient,
    /// One membership change at a time.
    lock: Mutex<()>,
}

impl SlackUsergroupProvider {
    pub fn new(slack: SlackClient) -> Self {
        SlackUsergroupProvider {
            slack,
            lock: Mutex::new(()),
        }
    }

    async fn change(&self, group: &str, action: Action, user: &str) -> Result<(), GrantError> {
        let _one_at_a_time = self.lock.lock().await;
        let slack_err = |source: crate::slack::SlackError| GrantError::Slack {
            usergroup: group.to_string(),
            source,
        };
        let mut members = self
            .slack
            .usergroup_members(group)
            .await
            .map_err(slack_err)?;
        let present = members.iter().any(|m| m == user);
        match action {
            Action::Grant if present => return Ok(()),
            Action::Grant => members.push(user.to_string()),
            Action::Revoke if !present => return Ok(()),
            Action::Revoke => members.retain(|m| m != user),
        }
        if members.is_empty() {
            return Err(GrantError::LastMember {
                usergroup: group.to_string(),
            });
        }
        self.slack
            .usergroup_set(group, &members)
            .await
            .map_err(slack_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::GrantSpec;
    use crate::runbook::fixture::{check, edit, listed, parse, VALID};

    #[test]
    fn slack_usergroup_maps_into_the_model() {
        let text = edit(
            r#"provider = "command"
grant = ["./scripts/billing.sh", "grant"]
revoke = ["./scripts/billing.sh", "revoke"]"#,
            r#"provider = "slack_usergroup"
usergroup = "S0BILLINGADM""#,
        );
        let runbook = parse(&text).unwrap_or_else(|p| panic!("{}", listed(&p)));
        assert_eq!(
            runbook.grant,
            GrantSpec::new(
                "slack_usergroup",
                SlackUsergroupSpec {
                    usergroup: "S0BILLINGADM".into()
                }
            )
        );
    }

    #[test]
    fn reports_bad_usergroups() {
        let usergroup = |body: &str| {
            let grant_start = VALID.find("[grant]").unwrap();
            format!(
                "{}[grant]\nprovider = \"slack_usergroup\"\n{body}\n",
                &VALID[..grant_start]
            )
        };
        check(&usergroup(""), "grant.usergroup", "missing");
        check(
            &usergroup("usergroup = \"U0BOB\""),
            "grant.usergroup",
            "this one is a user ID",
        );
    }
}
