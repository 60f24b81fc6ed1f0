//! Who a Slack user is in the systems accessbot grants access to. The
//! config file's `[identities]` table (`U0ALICE = "alice@acme.com"`) wins;
//! otherwise it is the email Slack shares (`users.info`, which needs the
//! `users:read.email` scope). Providers that act on a directory account
//! (`GrantSpec::needs_identity`) cannot run for a person who has neither,
//! so such a request is refused when it is made, naming the fix.

use std::collections::BTreeMap;

use crate::slack::{SlackClient, SlackError};

/// The `[identities]` table: Slack user ID to identity in the targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identities {
    by_user: BTreeMap<String, String>,
}

/// What is known about one person's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Their email in the Slack profile, when Slack shares it.
    pub email: Option<String>,
    /// The `[identities]` entry when there is one, else `email`.
    pub identity: Option<String>,
}

impl Identities {
    pub fn new(by_user: BTreeMap<String, String>) -> Self {
        Identities { by_user }
    }

    /// The configured identity of `user`, if the table has one.
    pub fn mapped(&self, user: &str) -> Option<&str> {
        self.by_user.get(user).map(String::as_str)
    }

    /// Every configured entry, for `accessbot reconcile`.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_user.iter().map(|(u, i)| (u.as_str(), i.as_str()))
    }

    /// Looks `user` up: the table first, then Slack's profile email. A
    /// Slack error is returned as is; the caller decides whether it can
    /// go on without the email.
    pub async fn resolve(&self, slack: &SlackClient, user: &str) -> Result<Identity, SlackError> {
        let email = match slack.user_info(user).await {
            Ok(info) => info.email,
            Err(e) if self.mapped(user).is_none() => return Err(e),
            Err(e) => {
                tracing::warn!(user, error = %e, "users.info failed; using the [identities] entry");
                None
            }
        };
        Ok(Identity {
            identity: self.mapped(user).map(str::to_string).or(email.clone()),
            email,
        })
    }

    /// Problems with the table as written: keys must be Slack user IDs and
    /// values not empty. One line each, naming the entry and the fix.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (user, identity) in &self.by_user {
            if !looks_like_user(user) {
                out.push(format!(
                    "[identities]: `{user}` is not a Slack user ID; write the member ID (U… or W…, from the person's profile, ⋮ → Copy member ID)"
                ));
            }
            if identity.trim().is_empty() || identity.chars().any(char::is_control) {
                out.push(format!(
                    "[identities]: the entry for {user} is empty or holds control characters; write the person's login in the target, e.g. {user} = \"alice@acme.com\""
                ));
            }
        }
        out
    }
}

fn looks_like_user(id: &str) -> bool {
    id.len() >= 3
        && (id.starts_with('U') || id.starts_with('W'))
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_checked_entry_by_entry() {
        let ids = Identities::new(BTreeMap::from([
            ("U0ALICE".to_string(), "alice@acme.com".to_string()),
            ("alice".to_string(), "alice@acme.com".to_string()),
            ("U0BOB".to_string(), " ".to_string()),
        ]));
        assert_eq!(ids.mapped("U0ALICE"), Some("alice@acme.com"));
        assert_eq!(ids.mapped("U0CAROL"), None);
        let problems = ids.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`alice` is not a Slack user ID")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("the entry for U0BOB is empty")),
            "{problems:?}"
        );
    }
}
