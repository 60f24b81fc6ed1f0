//! The `slack_usergroup` provider: access is membership of a Slack user
//! group (which many SSO and SaaS tools map to a role). Grant adds the
//! requester to the group, revoke removes them; both are idempotent. It owns
//! its one `[grant]` key, `usergroup`, and runs only where accessbot has a
//! Slack client (`Services::slack`).
//!
//! usergroups.users.update replaces the whole member list, so updates of
//! one group are serialised here (a lock per group: read, change, read
//! again right before writing, write) to never lose a concurrent one. The
//! target can be read back (`verify`, `members`: usergroups.users.list),
//! and two runbooks onto one group overlap (`target`). Slack cannot empty
//! a group, so removing its last member is refused with words that say so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};

use tokio::sync::Mutex;

use super::{
    Action, GrantContext, GrantError, GrantFuture, MembersFuture, Presence, Provider, Services,
    VerifyFuture,
};
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

    fn target(spec: &SlackUsergroupSpec) -> Option<String> {
        Some(format!("slack_usergroup:{}", spec.usergroup))
    }

    fn verify<'a>(
        &'a self,
        spec: &'a SlackUsergroupSpec,
        ctx: &'a GrantContext,
    ) -> Option<VerifyFuture<'a>> {
        Some(Box::pin(async move {
            let members = self.list(&spec.usergroup).await?;
            Ok(if members.contains(&ctx.user_id) {
                Presence::Present
            } else {
                Presence::Absent
            })
        }))
    }

    fn member_name(_spec: &SlackUsergroupSpec, ctx: &GrantContext) -> Option<String> {
        Some(ctx.user_id.clone())
    }

    fn members<'a>(&'a self, spec: &'a SlackUsergroupSpec) -> Option<MembersFuture<'a>> {
        Some(Box::pin(self.list(&spec.usergroup)))
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

/// How many times a change reads the member list again when it changed
/// between the read and the write.
const REREADS: u32 = 3;

pub struct SlackUsergroupProvider {
    slack: SlackClient,
    /// One membership change at a time per group: changes of different
    /// groups do not wait for each other.
    locks: SyncMutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl SlackUsergroupProvider {
    pub fn new(slack: SlackClient) -> Self {
        SlackUsergroupProvider {
            slack,
            locks: SyncMutex::new(HashMap::new()),
        }
    }

    /// The lock of `group`, made on first use.
    fn lock_of(&self, group: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(locks.entry(group.to_string()).or_default())
    }

    async fn list(&self, group: &str) -> Result<Vec<String>, GrantError> {
        self.slack
            .usergroup_members(group)
            .await
            .map_err(|source| GrantError::Slack {
                usergroup: group.to_string(),
                source,
            })
    }

    async fn change(&self, group: &str, action: Action, user: &str) -> Result<(), GrantError> {
        let lock = self.lock_of(group);
        let _one_at_a_time = lock.lock().await;
        let mut read = self.list(group).await?;
        let mut rereads = 0;
        let members = loop {
            let Some(members) = changed(&read, action, user, group)? else {
                return Ok(());
            };
            // Read again right before writing: a change made meanwhile
            // elsewhere (another replica, a person in Slack) is kept. A list
            // that keeps changing is written after a few rounds anyway.
            let again = self.list(group).await?;
            rereads += 1;
            if again == read || rereads >= REREADS {
                match changed(&again, action, user, group)? {
                    Some(latest) if again != read => break latest,
                    Some(_) => break members,
                    None => return Ok(()),
                }
            }
            read = again;
        };
        self.slack
            .usergroup_set(group, &members)
            .await
            .map_err(|source| GrantError::Slack {
                usergroup: group.to_string(),
                source,
            })
    }
}

/// The member list after `action` on `user`, or `None` when there is
/// nothing to do (already a member, already gone).
fn changed(
    members: &[String],
    action: Action,
    user: &str,
    group: &str,
) -> Result<Option<Vec<String>>, GrantError> {
    let present = members.iter().any(|m| m == user);
    let mut members = members.to_vec();
    match action {
        Action::Grant if present => return Ok(None),
        Action::Grant => members.push(user.to_string()),
        Action::Revoke if !present => return Ok(None),
        Action::Revoke => members.retain(|m| m != user),
    }
    if members.is_empty() {
        return Err(GrantError::LastMember {
            usergroup: group.to_string(),
            user: user.to_string(),
        });
    }
    Ok(Some(members))
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
    fn a_change_keeps_the_others_and_refuses_to_empty_the_group() {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let g = "S0G";
        assert_eq!(
            changed(&list(&["U1"]), Action::Grant, "U2", g).unwrap(),
            Some(list(&["U1", "U2"]))
        );
        assert_eq!(
            changed(&list(&["U1", "U2"]), Action::Grant, "U2", g).unwrap(),
            None
        );
        assert_eq!(
            changed(&list(&["U1", "U2"]), Action::Revoke, "U2", g).unwrap(),
            Some(list(&["U1"]))
        );
        assert_eq!(
            changed(&list(&["U1"]), Action::Revoke, "U2", g).unwrap(),
            None
        );
        let last = changed(&list(&["U2"]), Action::Revoke, "U2", g).unwrap_err();
        assert!(
            last.to_string().contains("<@U2> is the last member"),
            "{last}"
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
