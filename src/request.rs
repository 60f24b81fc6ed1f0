//! The domain of an access request: its status, approval stages, approvals,
//! extension and the messages posted about it. These are plain serde types
//! (the store keeps them as JSON, so an operator can read a dump); every field
//! that later versions add must have a `#[serde(default)]`. Nothing here knows
//! how or where requests are stored.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Where a request is in its life. Terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for approvals (stage `current_stage`).
    Pending,
    /// Approved; the grant is recorded as an intent and runs (again after a crash).
    Granting,
    /// Approved, waiting for its scheduled start (`start_at`), when the
    /// timer makes it `Granting`.
    Scheduled,
    /// Granted until `expires_at`.
    Active,
    /// The revoke is recorded as an intent and runs until it succeeds, or
    /// fails in a way no retry can fix.
    Revoking,
    /// The revoke (or the clean-up after a failed grant) failed in a way no
    /// retry can fix: nothing runs any more, and the audit channel was told
    /// once. An owner or approver checks the target system and closes it
    /// with `/access resolve`; it then ends as `Revoked` (or `Failed`).
    NeedsAttention,
    Revoked,
    Denied,
    /// Nobody decided before `approval_deadline`.
    Expired,
    /// The grant failed; nothing stays granted.
    Failed,
    /// Its requester cancelled it while it waited for approval.
    Cancelled,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Revoked | Status::Denied | Status::Expired | Status::Failed | Status::Cancelled
        )
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Pending => "pending approval",
            Status::Granting => "being granted",
            Status::Scheduled => "scheduled",
            Status::Active => "active",
            Status::Revoking => "being revoked",
            Status::NeedsAttention => "needs attention",
            Status::Revoked => "revoked",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// One approval stage with its approvers resolved to user IDs when the
/// request was made, so later changes to groups cannot widen who may approve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageState {
    pub name: String,
    pub approvers: Vec<String>,
    pub required: u32,
}

/// One approval given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub user: String,
    pub stage: usize,
    pub at: DateTime<Utc>,
}

/// A Slack message we posted and may need to update later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRef {
    /// The user the DM went to.
    pub user: String,
    /// What the message is for, e.g. "approval", "grant", "review".
    pub purpose: String,
    pub channel: String,
    pub ts: String,
}

/// An extension asked for while the grant is active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtensionRequest {
    pub duration_secs: u64,
    pub asked_at: DateTime<Utc>,
    /// Everyone asked so far, across stages (their DMs are closed at the end).
    pub approvers: Vec<String>,
    /// The approval stage the extension is in; it goes through the
    /// request's stages in order, with the same `required` counts.
    #[serde(default)]
    pub stage: usize,
    #[serde(default)]
    pub approvals: Vec<Approval>,
}

/// A value the requester gave for one of the runbook's `[[inputs]]`,
/// checked against its definition; the label is copied so messages still
/// read right if the runbook changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputValue {
    pub id: String,
    pub label: String,
    pub value: String,
    /// The input's type (`text`, `number`, `select`, `user`, `date`), so a
    /// person is shown as a mention.
    #[serde(default)]
    pub kind: String,
}

/// A request for access and everything that happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessRequest {
    pub id: String,
    pub runbook_id: String,
    /// Copied from the runbook so messages still read right if the runbook changes.
    pub runbook_title: String,
    pub system: String,
    /// What the access allows, in the runbook's words, for approvers who
    /// do not know the system; copied like the title.
    #[serde(default)]
    pub description: String,
    pub requester: String,
    pub duration_secs: u64,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub status: Status,
    pub stages: Vec<StageState>,
    pub current_stage: usize,
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// Who denied, revoked early, or which rule auto-approved.
    #[serde(default)]
    pub decided_by: Option<String>,
    pub approval_deadline: DateTime<Utc>,
    #[serde(default)]
    pub remind_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub escalate_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub granted_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub warn_at: Option<DateTime<Utc>>,
    /// When the next grant or revoke attempt is due (Granting, Revoking).
    #[serde(default)]
    pub retry_at: Option<DateTime<Utc>>,
    /// The lease of the grant or revoke run recorded as an intent (Granting,
    /// Revoking): set when the request enters that status, cleared by the
    /// write that records the outcome. If it passes first, the replica that
    /// owned the run is presumed dead and the timer of any replica runs it.
    #[serde(default)]
    pub run_until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended, in words: "expired", "revoked early by <@U1>", the grant error.
    #[serde(default)]
    pub end_reason: Option<String>,
    #[serde(default)]
    pub messages: Vec<MessageRef>,
    #[serde(default)]
    pub break_glass: bool,
    /// For break-glass: set once an approver acknowledged or flagged it.
    #[serde(default)]
    pub review: Option<String>,
    /// For break-glass: who flagged it for follow-up. A flag stands until
    /// the runbook's owner clears it; acknowledgements do not lift it.
    #[serde(default)]
    pub flagged_by: Option<String>,
    #[serde(default)]
    pub extension: Option<ExtensionRequest>,
    /// Total granted time including approved extensions.
    #[serde(default)]
    pub total_secs: u64,
    /// The grant failed and the revoke now running only cleans up; the
    /// request ends as Failed, not Revoked.
    #[serde(default)]
    pub grant_failed: bool,
    /// The auto-approval rule that approved it, if one did.
    #[serde(default)]
    pub auto_rule: Option<String>,
    /// Who closed it after it needed attention, having checked the target.
    #[serde(default)]
    pub resolved_by: Option<String>,
    /// The runbook's `[[inputs]]` as the requester filled them in, in the
    /// runbook's order.
    #[serde(default)]
    pub inputs: Vec<InputValue>,
    /// When the access is to start, if the requester scheduled it; it then
    /// ends at this plus its duration.
    #[serde(default)]
    pub start_at: Option<DateTime<Utc>>,
    /// How many extensions were granted (the report counts them).
    #[serde(default)]
    pub extensions: u32,
    /// The requester's answers to the questions asked when the grant ended.
    #[serde(default)]
    pub feedback: Option<crate::feedback::Feedback>,
}

impl AccessRequest {
    /// A new `Pending` request of `requester` for runbook `runbook_id`,
    /// made at `now`, in the first of `stages`. The rest starts empty: no
    /// reason, no approvals, nothing granted or scheduled, the runbook id as
    /// its title, and an approval deadline of `now`; the caller sets from
    /// the runbook what its policy gives (struct update syntax reads well).
    pub fn new(
        id: String,
        runbook_id: &str,
        requester: &str,
        duration: Duration,
        stages: Vec<StageState>,
        now: DateTime<Utc>,
    ) -> AccessRequest {
        AccessRequest {
            id,
            runbook_id: runbook_id.to_string(),
            runbook_title: runbook_id.to_string(),
            system: String::new(),
            description: String::new(),
            requester: requester.to_string(),
            duration_secs: duration.as_secs(),
            reason: String::new(),
            created_at: now,
            status: Status::Pending,
            stages,
            current_stage: 0,
            approvals: vec![],
            decided_by: None,
            approval_deadline: now,
            remind_at: None,
            escalate_at: None,
            granted_at: None,
            expires_at: None,
            warn_at: None,
            retry_at: None,
            run_until: None,
            attempts: 0,
            ended_at: None,
            end_reason: None,
            messages: vec![],
            break_glass: false,
            review: None,
            flagged_by: None,
            extension: None,
            total_secs: duration.as_secs(),
            grant_failed: false,
            auto_rule: None,
            resolved_by: None,
            inputs: vec![],
            start_at: None,
            extensions: 0,
            feedback: None,
        }
    }

    /// The next moment the timer loop must look at this request, if any.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        let candidates: &[Option<DateTime<Utc>>] = match self.status {
            Status::Pending => &[
                Some(self.approval_deadline),
                self.remind_at,
                self.escalate_at,
            ],
            Status::Active => &[self.expires_at, self.warn_at],
            Status::Granting | Status::Revoking => &[self.retry_at, self.run_until],
            Status::Scheduled => &[self.start_at],
            _ => &[],
        };
        candidates.iter().flatten().min().copied()
    }

    /// Everyone who may approve at the current stage.
    pub fn current_approvers(&self) -> &[String] {
        self.stages
            .get(self.current_stage)
            .map(|s| s.approvers.as_slice())
            .unwrap_or(&[])
    }

    /// Everyone designated to approve in any stage.
    pub fn all_approvers(&self) -> impl Iterator<Item = &String> {
        let mut seen = std::collections::BTreeSet::new();
        self.stages
            .iter()
            .flat_map(|s| s.approvers.iter())
            .filter(move |u| seen.insert(u.as_str()))
    }

    pub fn has_approved(&self, user: &str) -> bool {
        self.approvals.iter().any(|a| a.user == user)
    }

    pub fn approvals_in_stage(&self, stage: usize) -> u32 {
        self.approvals.iter().filter(|a| a.stage == stage).count() as u32
    }

    pub fn message_for(&self, user: &str, purpose: &str) -> Option<&MessageRef> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.user == user && m.purpose == purpose)
    }
}

/// Text a person typed (a reason), cleaned the same way whichever way it
/// came in (slash command, form, another transport): control characters,
/// line breaks included, become spaces; invisible formatting characters
/// (bidirectional overrides, zero-width spaces) are dropped; runs of spaces
/// become one. So no NUL byte or escape sequence reaches a provider's
/// environment, a log line or the audit log.
pub fn clean_typed(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_invisible_format(c) {
            continue;
        }
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    out
}

/// Characters that change how text around them is shown without being
/// visible themselves: bidirectional embeddings, overrides and isolates,
/// direction marks, zero-width spaces and joiners, the BOM.
pub fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A request ID: `ar-` and 20 base32 characters (100 random bits), so IDs
/// cannot be guessed from one another.
pub fn new_request_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    let id: String = (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..32)] as char)
        .collect();
    format!("ar-{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_text_is_cleaned_at_the_edge() {
        assert_eq!(clean_typed("  a\u{0}b\n\n c\u{202E}d\t "), "a b cd");
        assert_eq!(clean_typed("\u{7}"), "");
    }

    #[test]
    fn a_request_that_needs_attention_waits_for_a_person_not_the_timer() {
        let now = Utc::now();
        let mut req = AccessRequest::new(
            "ar-x".into(),
            "billing-admin",
            "U0ALICE",
            Duration::from_secs(60),
            vec![],
            now,
        );
        req.status = Status::NeedsAttention;
        req.retry_at = Some(now);
        assert_eq!(req.next_due(), None);
        assert!(!req.status.is_terminal());
        let stored = serde_json::to_string(&req).unwrap();
        assert!(stored.contains(r#""status":"needs_attention""#), "{stored}");
        assert_eq!(serde_json::from_str::<AccessRequest>(&stored).unwrap(), req);
        // Records stored before the field existed still read.
        let mut old: serde_json::Value = serde_json::from_str(&stored).unwrap();
        old.as_object_mut().unwrap().remove("resolved_by");
        let read: AccessRequest = serde_json::from_value(old).unwrap();
        assert_eq!(read.resolved_by, None);
    }

    #[test]
    fn request_ids_are_long_random_and_distinct() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 23);
        assert!(a.starts_with("ar-"));
    }
}
