//! The security group (`ACCESSBOT_SECURITY_GROUP`, a Slack user group ID):
//! the people who may see everyone's access, not only their own (the Home
//! tab's "elevated access now" and unreviewed break-glass sections, and
//! reports). Membership is asked of Slack with `usergroups.users.list`
//! through the people directory's short-lived cache (60 s), so a person
//! removed from the group stops seeing it within a minute.
//!
//! It fails closed: with no group configured, or when Slack cannot say,
//! nobody is a member.

use super::Workflow;

impl Workflow {
    /// The configured security group's ID, if any.
    pub fn security_group(&self) -> Option<&str> {
        self.deps.security_group.as_deref()
    }

    /// Whether `user` is in the security group now (within the cache's
    /// minute). `false` when no group is configured or Slack cannot list it.
    pub async fn is_in_security_group(&self, user: &str) -> bool {
        self.security_membership(user).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not list the security group; treating the person as not a member");
            false
        })
    }

    /// Whether `user` is in the security group now, or why Slack could not
    /// say: for answers that must refuse rather than guess (`/access report`).
    pub async fn security_membership(&self, user: &str) -> Result<bool, String> {
        let Some(group) = self.security_group() else {
            return Ok(false);
        };
        match self.deps.people.group_members(group).await {
            Ok(members) => Ok(members.iter().any(|m| m == user)),
            Err(e) => Err(format!("security group {group}: {e}")),
        }
    }

    /// The security group's members now (within the cache's minute); empty
    /// when no group is configured or Slack cannot list it.
    pub async fn security_group_members(&self) -> Vec<String> {
        let Some(group) = self.security_group() else {
            return vec![];
        };
        self.deps
            .people
            .group_members(group)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(group, error = %e, "could not list the security group");
                vec![]
            })
    }
}
