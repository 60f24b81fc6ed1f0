//! The `slack_usergroup` provider: access is membership of a Slack user
//! group (which many SSO and SaaS tools map to a role). Grant adds the
//! requester to the group, revoke removes them; both are idempotent.
//!
//! usergroups.users.update replaces the whole member list, so updates are
//! serialised here (read, change, write) to never lose a concurrent one.

use tokio::sync::Mutex;

use super::{Action, GrantContext, GrantError, GrantFuture, GrantProvider};
use crate::runbook::GrantSpec;
use crate::slack::SlackClient;

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
        let slack_err = |e: crate::slack::SlackError| GrantError::Slack {
            usergroup: group.to_string(),
            reason: e.to_string(),
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
            return Err(GrantError::Slack {
                usergroup: group.to_string(),
                reason: "removing the last member would empty the group, which Slack does not allow; keep a permanent member (e.g. the runbook owner) in it".into(),
            });
        }
        self.slack
            .usergroup_set(group, &members)
            .await
            .map_err(slack_err)
    }
}

impl GrantProvider for SlackUsergroupProvider {
    fn name(&self) -> &'static str {
        "slack_usergroup"
    }

    fn run<'a>(
        &'a self,
        spec: &'a GrantSpec,
        action: Action,
        ctx: &'a GrantContext,
    ) -> GrantFuture<'a> {
        Box::pin(async move {
            let GrantSpec::SlackUsergroup { usergroup } = spec else {
                return Err(GrantError::wrong_provider("slack_usergroup", spec));
            };
            self.change(usergroup, action, &ctx.user_id).await
        })
    }
}
