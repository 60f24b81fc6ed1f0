//! The validated runbook model. Every value here has passed the loader's
//! checks: durations are positive, `default_duration <= max_duration`, every
//! stage can in principle collect its `required` approvals, ids are unique.
//! How access is granted is a [`GrantSpec`], whose contents belong to the
//! provider that checked them (see `src/grant/`).

use std::path::PathBuf;
use std::time::Duration;

pub use crate::grant::GrantSpec;

/// One requestable kind of access, loaded from `runbooks/<file>.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Runbook {
    /// Unique id: lowercase letters, digits and dashes.
    pub id: String,
    pub title: String,
    pub description: String,
    /// The system the access is for ("Billing portal"), shown to approvers.
    pub system: String,
    /// Slack user ID of the resource owner; approver kind `owner` resolves to it.
    pub owner: String,
    /// Shown to the requester once access is granted.
    pub instructions: String,
    /// Grants at once for incidents; approvers review after the fact.
    pub break_glass: bool,
    /// Whether the requester gets the two feedback questions when a grant
    /// ends (`feedback = false` turns them off; on by default).
    pub feedback: bool,
    pub request: RequestPolicy,
    pub approval: ApprovalPolicy,
    /// How access is granted and revoked: the provider and its settings.
    pub grant: GrantSpec,
    /// The details every request must (or may) give, from `[[inputs]]`.
    pub inputs: Vec<super::InputDef>,
    /// The file this runbook came from, for error messages.
    pub source: PathBuf,
}

/// Who may request and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestPolicy {
    /// Empty never happens after validation; `[Anyone]` for `"*"`.
    pub allowed: Vec<Principal>,
    pub default_duration: Duration,
    pub max_duration: Duration,
    /// Upper bound on the whole grant including extensions; `None` means
    /// extensions stay within `max_duration`.
    pub max_total: Option<Duration>,
    pub require_reason: bool,
    /// How far ahead a start may be scheduled (`max_schedule_ahead`, 7 days
    /// unless the runbook says).
    pub max_schedule_ahead: Duration,
}

/// A person or group named in `request.allowed` or `auto_approve`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// `"*"`: everyone in the workspace.
    Anyone,
    /// A Slack user ID (`U...` or `W...`).
    User(String),
    /// A Slack user group ID (`S...`), resolved with usergroups.users.list.
    Group(String),
}

/// Who approves, in which stages, and what happens when nobody answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalPolicy {
    /// Run in order; a request is approved when every stage has its
    /// `required` approvals. A single `[approval]` table is one stage.
    pub stages: Vec<ApprovalStage>,
    /// Pending requests expire after this.
    pub approval_timeout: Duration,
    pub allow_self_approval: bool,
    /// Rules that approve with no human step.
    pub auto_approve: Vec<AutoApproveRule>,
    /// Approvers of the current stage get a reminder after this.
    pub remind_after: Option<Duration>,
    /// After this, `fallback_approvers` join the current stage.
    pub escalate_after: Option<Duration>,
    pub fallback_approvers: Vec<Approver>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalStage {
    /// Shown to people ("Manager", "System owner"); defaults to "Stage N".
    pub name: String,
    pub approvers: Vec<Approver>,
    pub required: u32,
}

/// One entry of an approvers list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Approver {
    User(String),
    Group(String),
    /// The runbook's `owner`.
    Owner,
    /// The requester's manager, from the config's directory or a Slack profile field.
    Manager,
}

/// Approve without a human when the requester matches and the duration is short enough.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoApproveRule {
    /// Named in the audit log ("auto-approved by rule `on-call`"); defaults to "auto_approve" or "auto_approve[N]".
    pub name: String,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    /// Only requests (or extensions) up to this long are auto-approved.
    pub max_duration: Duration,
}

impl Runbook {
    /// Every approver named anywhere in the runbook, stages first, for
    /// previews and authorisation checks.
    pub fn all_approvers(&self) -> impl Iterator<Item = &Approver> {
        self.approval
            .stages
            .iter()
            .flat_map(|s| s.approvers.iter())
            .chain(self.approval.fallback_approvers.iter())
    }
}
