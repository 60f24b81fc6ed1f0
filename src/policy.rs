//! Who may request a runbook, who approves it in which stage, and when a
//! request is decided.
//!
//! [`People`] turns the runbook's principals into Slack user IDs (user
//! groups through usergroups.users.list, managers through the config's
//! directory or a Slack profile field). The approval rules themselves
//! ([`apply_approval`], [`auto_approve_rule`]) are pure functions over the
//! stored request, so an approval is always checked against what was stored,
//! never against what a button says.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::request::{AccessRequest, Approval, StageState, Status};
use crate::runbook::{Approver, AutoApproveRule, Principal, Runbook};
use crate::slack::{SlackClient, SlackError};

/// How long a user group's member list is reused before asking Slack again.
const GROUP_CACHE_TTL: Duration = Duration::from_secs(60);

/// Lookups happen while Slack waits for our answer (3 seconds), so each
/// one gets at most this long.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(1500);

/// Why people could not be resolved; the message is for the requester.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error("your manager is not known to accessbot, and this runbook needs your manager's approval; ask an admin to add you to the directory")]
    ManagerUnknown,
    #[error("this request can never be approved: stage “{stage}” needs {required} approval(s) but its approvers are {who}; ask the runbook owner to fix the approvers")]
    Unapprovable {
        stage: String,
        required: u32,
        who: String,
    },
    #[error("Slack could not tell who is in user group {group} ({source}); try again in a minute")]
    Group { group: String, source: SlackError },
    #[error("Slack could not look up your manager ({0}); try again in a minute")]
    Profile(SlackError),
    #[error("Slack did not answer in time while looking up {what}; nothing was requested, try again in a minute")]
    SlackSlow { what: String },
}

/// Resolves groups and managers to user IDs.
pub struct People {
    slack: SlackClient,
    directory: BTreeMap<String, String>,
    manager_field: Option<String>,
    groups: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

impl People {
    pub fn new(
        slack: SlackClient,
        directory: BTreeMap<String, String>,
        manager_field: Option<String>,
    ) -> People {
        People {
            slack,
            directory,
            manager_field,
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Members of a user group, from a short-lived cache.
    pub async fn group_members(&self, group: &str) -> Result<Vec<String>, ResolveError> {
        self.members(group, true).await
    }

    /// Members of a user group as Slack lists them now, for a decision that
    /// must not rest on an old list (an approver's press): the cache is
    /// refreshed, never used, and a failed lookup is an error.
    pub async fn group_members_now(&self, group: &str) -> Result<Vec<String>, ResolveError> {
        self.members(group, false).await
    }

    async fn members(&self, group: &str, cached: bool) -> Result<Vec<String>, ResolveError> {
        if let Some((at, members)) = self.groups.lock().expect("cache lock").get(group) {
            if cached && at.elapsed() < GROUP_CACHE_TTL {
                return Ok(members.clone());
            }
        }
        let fetched =
            tokio::time::timeout(LOOKUP_TIMEOUT, self.slack.usergroup_members(group)).await;
        let members = match fetched {
            Ok(Ok(members)) => members,
            failed => {
                // A member list a little out of date beats refusing everyone
                // while Slack has a bad minute; not so for a press.
                let stale = self.groups.lock().expect("cache lock").get(group).cloned();
                if let Some((_, stale)) = stale.filter(|_| cached) {
                    tracing::warn!(
                        group,
                        "Slack did not list the user group; using the last known members"
                    );
                    return Ok(stale.clone());
                }
                return Err(match failed {
                    Ok(Err(source)) => ResolveError::Group {
                        group: group.to_string(),
                        source,
                    },
                    _ => ResolveError::SlackSlow {
                        what: format!("the members of user group {group}"),
                    },
                });
            }
        };
        self.groups
            .lock()
            .expect("cache lock")
            .insert(group.to_string(), (Instant::now(), members.clone()));
        Ok(members)
    }

    /// The requester's manager: the config's directory first, then the profile field.
    pub async fn manager_of(&self, user: &str) -> Result<Option<String>, ResolveError> {
        if let Some(m) = self.directory.get(user) {
            return Ok(Some(m.clone()));
        }
        match &self.manager_field {
            Some(field) => {
                tokio::time::timeout(LOOKUP_TIMEOUT, self.slack.profile_field(user, field))
                    .await
                    .map_err(|_| ResolveError::SlackSlow {
                        what: "your manager".to_string(),
                    })?
                    .map(|v| {
                        v.map(|s| s.trim_start_matches("<@").trim_end_matches('>').to_string())
                    })
                    .map_err(ResolveError::Profile)
            }
            None => Ok(None),
        }
    }

    /// Whether `user` may request `runbook`.
    pub async fn may_request(&self, runbook: &Runbook, user: &str) -> Result<bool, ResolveError> {
        for p in &runbook.request.allowed {
            match p {
                Principal::Anyone => return Ok(true),
                Principal::User(u) if u == user => return Ok(true),
                Principal::Group(g) if self.group_members(g).await?.iter().any(|m| m == user) => {
                    return Ok(true)
                }
                _ => {}
            }
        }
        Ok(false)
    }

    /// Expands approver entries to distinct user IDs, in order.
    pub async fn expand(
        &self,
        runbook: &Runbook,
        approvers: &[Approver],
        requester: &str,
    ) -> Result<Vec<String>, ResolveError> {
        let mut out: Vec<String> = Vec::new();
        for a in approvers {
            let users = match a {
                Approver::User(u) => vec![u.clone()],
                Approver::Group(g) => self.group_members(g).await?,
                Approver::Owner => vec![runbook.owner.clone()],
                Approver::Manager => vec![self
                    .manager_of(requester)
                    .await?
                    .ok_or(ResolveError::ManagerUnknown)?],
            };
            for u in users {
                if !out.contains(&u) {
                    out.push(u);
                }
            }
        }
        Ok(out)
    }

    /// Every stage with its approvers resolved; the requester is left out
    /// unless the runbook allows self-approval. Refuses a request no stage
    /// could ever complete.
    pub async fn resolve_stages(
        &self,
        runbook: &Runbook,
        requester: &str,
    ) -> Result<Vec<StageState>, ResolveError> {
        let mut stages = Vec::new();
        for stage in &runbook.approval.stages {
            let mut approvers = self.expand(runbook, &stage.approvers, requester).await?;
            if !runbook.approval.allow_self_approval {
                approvers.retain(|u| u != requester);
            }
            if (approvers.len() as u32) < stage.required {
                let who = if approvers.is_empty() {
                    "nobody but you".to_string()
                } else {
                    approvers
                        .iter()
                        .map(|u| format!("<@{u}>"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(ResolveError::Unapprovable {
                    stage: stage.name.clone(),
                    required: stage.required,
                    who,
                });
            }
            stages.push(StageState {
                name: stage.name.clone(),
                approvers,
                required: stage.required,
            });
        }
        Ok(stages)
    }

    /// Whether `user` is still among the approvers `runbook` names for
    /// `stage` (for any stage when `None`) or its fallback approvers, with
    /// user groups asked of Slack now: someone removed from an approver
    /// group since the request was made approves no longer.
    pub async fn still_approves(
        &self,
        runbook: &Runbook,
        stage: Option<usize>,
        user: &str,
        requester: &str,
    ) -> Result<bool, ResolveError> {
        let named: Vec<&Approver> = match stage.and_then(|i| runbook.approval.stages.get(i)) {
            Some(s) => s
                .approvers
                .iter()
                .chain(runbook.approval.fallback_approvers.iter())
                .collect(),
            None => runbook.all_approvers().collect(),
        };
        // People named directly need no lookup; groups and the manager do.
        for a in &named {
            match a {
                Approver::User(u) if u == user => return Ok(true),
                Approver::Owner if runbook.owner == user => return Ok(true),
                _ => {}
            }
        }
        for a in &named {
            if let Approver::Group(g) = a {
                if self.group_members_now(g).await?.iter().any(|m| m == user) {
                    return Ok(true);
                }
            }
        }
        if named.iter().any(|a| **a == Approver::Manager) {
            return Ok(self.manager_of(requester).await?.as_deref() == Some(user));
        }
        Ok(false)
    }

    /// The first auto-approval rule that covers this requester and duration.
    pub async fn auto_approve_rule<'r>(
        &self,
        runbook: &'r Runbook,
        user: &str,
        duration: Duration,
    ) -> Result<Option<&'r AutoApproveRule>, ResolveError> {
        for rule in &runbook.approval.auto_approve {
            if duration > rule.max_duration {
                continue;
            }
            if rule.users.iter().any(|u| u == user) {
                return Ok(Some(rule));
            }
            for g in &rule.groups {
                if self.group_members(g).await?.iter().any(|m| m == user) {
                    return Ok(Some(rule));
                }
            }
        }
        Ok(None)
    }
}

/// Why a button press or command on a request was refused. Each message is
/// shown to the person who tried, and nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("you cannot approve your own request")]
    SelfApproval,
    #[error("you are not an approver of request {0}")]
    NotApprover(String),
    #[error("you are not an approver of the current stage of request {0}")]
    NotCurrentStage(String),
    #[error("you already approved request {0}; each person approves once")]
    AlreadyApproved(String),
    #[error("request {id} is already {state}; nothing was changed")]
    NotPending { id: String, state: String },
    /// The ID as given (a button's value, typed text): shown escaped and short.
    #[error("request {} was not found; check the ID in `/access status`", crate::slack::blocks::quoted(.0, 40))]
    NotFound(String),
    #[error("only the requester, an approver or the owner can end request {0}")]
    NotAllowedToRevoke(String),
    #[error("only the requester can do that for request {0}")]
    NotRequester(String),
    #[error("you are no longer an approver of request {0}: you have left the user group that approves it since it was made, so nothing was counted; ask the runbook owner if that is wrong")]
    NoLongerApprover(String),
    #[error("request {id} is {state}, not active")]
    NotActive { id: String, state: String },
    #[error("only the owner of the runbook or an approver of request {0} can resolve it, once they have checked the system")]
    NotAllowedToResolve(String),
    #[error("request {id} does not need a person (it is {state}); nothing was changed")]
    NothingToResolve { id: String, state: String },
    #[error("{0}")]
    Invalid(String),
    #[error("accessbot could not save that, so nothing changed; try again in a moment")]
    Storage(String),
}

impl Refusal {
    /// Whether the refusal says someone tried what they may not do (an
    /// audit event), rather than that they came late or mistyped an ID.
    pub fn is_unauthorised(&self) -> bool {
        matches!(
            self,
            Refusal::SelfApproval
                | Refusal::NotApprover(_)
                | Refusal::NotCurrentStage(_)
                | Refusal::NoLongerApprover(_)
                | Refusal::NotAllowedToRevoke(_)
                | Refusal::NotRequester(_)
        )
    }
}

/// What someone tried on a request, for the record of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Approve,
    Deny,
    ApproveExtension,
    DenyExtension,
    /// `/access revoke`.
    Revoke,
    /// The Release button.
    Release,
    Extend,
    Review,
    /// A new request while this one is open.
    Request,
    /// `/access cancel`, the Home tab's Cancel button.
    Cancel,
    /// A feedback button on someone else's grant.
    Feedback,
}

impl From<crate::store::StoreError> for Refusal {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store error while handling an action");
        Refusal::Storage(e.to_string())
    }
}

/// What one approval did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// Counted; the stage needs `remaining` more.
    Counted { remaining: u32 },
    /// The stage is complete and the next one starts.
    StageComplete { next_stage: usize },
    /// Every stage is complete: grant.
    Approved,
}

/// Applies `user`'s approval to the stored request, or refuses it.
pub fn apply_approval(
    req: &mut AccessRequest,
    user: &str,
    allow_self_approval: bool,
    now: DateTime<Utc>,
) -> Result<ApprovalOutcome, Refusal> {
    check_pending(req)?;
    if user == req.requester && !allow_self_approval {
        return Err(Refusal::SelfApproval);
    }
    if req.has_approved(user) {
        return Err(Refusal::AlreadyApproved(req.id.clone()));
    }
    if !req.current_approvers().iter().any(|u| u == user) {
        return Err(if req.all_approvers().any(|u| u == user) {
            Refusal::NotCurrentStage(req.id.clone())
        } else {
            Refusal::NotApprover(req.id.clone())
        });
    }
    let stage = req.current_stage;
    req.approvals.push(Approval {
        user: user.to_string(),
        stage,
        at: now,
    });
    let required = req.stages[stage].required;
    let have = req.approvals_in_stage(stage);
    if have < required {
        return Ok(ApprovalOutcome::Counted {
            remaining: required - have,
        });
    }
    // A later stage cannot count anyone who approved already
    // (`has_approved` above); if nobody else is left there, the approval
    // timeout or escalation ends the wait.
    let next = stage + 1;
    if next >= req.stages.len() {
        req.current_stage = req.stages.len().saturating_sub(1);
        req.status = Status::Granting;
        Ok(ApprovalOutcome::Approved)
    } else {
        req.current_stage = next;
        Ok(ApprovalOutcome::StageComplete { next_stage: next })
    }
}

/// Applies a deny by `user`: any designated approver of the current stage may deny.
pub fn apply_denial(req: &mut AccessRequest, user: &str) -> Result<(), Refusal> {
    check_pending(req)?;
    if user == req.requester {
        // Withdrawing one's own request is allowed and reads as a denial by the requester.
        req.status = Status::Denied;
        req.decided_by = Some(user.to_string());
        return Ok(());
    }
    if !req.current_approvers().iter().any(|u| u == user) {
        return Err(if req.all_approvers().any(|u| u == user) {
            Refusal::NotCurrentStage(req.id.clone())
        } else {
            Refusal::NotApprover(req.id.clone())
        });
    }
    req.status = Status::Denied;
    req.decided_by = Some(user.to_string());
    Ok(())
}

fn check_pending(req: &AccessRequest) -> Result<(), Refusal> {
    if req.status != Status::Pending {
        return Err(Refusal::NotPending {
            id: req.id.clone(),
            state: state_words(req),
        });
    }
    Ok(())
}

/// The current state in words, naming who decided when known.
pub fn state_words(req: &AccessRequest) -> String {
    match (&req.status, &req.decided_by) {
        (Status::Denied, Some(by)) => format!("denied by <@{by}>"),
        (Status::Active | Status::Granting, _) if !req.approvals.is_empty() => format!(
            "{} (approved by {})",
            req.status.label(),
            req.approvals
                .iter()
                .map(|a| format!("<@{}>", a.user))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (s, _) => s.label().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn request(stages: Vec<(&[&str], u32)>) -> AccessRequest {
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let stages = stages
            .into_iter()
            .enumerate()
            .map(|(i, (a, r))| StageState {
                name: format!("Stage {}", i + 1),
                approvers: a.iter().map(|s| s.to_string()).collect(),
                required: r,
            })
            .collect();
        AccessRequest {
            runbook_title: "RB".into(),
            system: "Sys".into(),
            reason: "r".into(),
            ..AccessRequest::new(
                "AR-1".into(),
                "rb",
                "UREQ",
                Duration::from_secs(3600),
                stages,
                now,
            )
        }
    }

    #[test]
    fn two_stages_in_order_and_once_per_person() {
        let now = Utc::now();
        let mut r = request(vec![(&["UMGR", "UOWN"], 1), (&["UOWN"], 1)]);
        assert_eq!(
            apply_approval(&mut r, "UOWN2", false, now),
            Err(Refusal::NotApprover("AR-1".into()))
        );
        assert_eq!(
            apply_approval(&mut r, "UMGR", false, now),
            Ok(ApprovalOutcome::StageComplete { next_stage: 1 })
        );
        assert_eq!(
            apply_approval(&mut r, "UMGR", false, now),
            Err(Refusal::AlreadyApproved("AR-1".into()))
        );
        assert_eq!(
            apply_approval(&mut r, "UOWN", false, now),
            Ok(ApprovalOutcome::Approved)
        );
        assert_eq!(r.status, Status::Granting);
        assert!(matches!(
            apply_approval(&mut r, "UOWN", false, now),
            Err(Refusal::NotPending { .. })
        ));
    }

    #[test]
    fn a_person_cannot_count_in_two_stages() {
        let now = Utc::now();
        let mut r = request(vec![(&["UA", "UB"], 1), (&["UA", "UB"], 1)]);
        apply_approval(&mut r, "UA", false, now).unwrap();
        assert_eq!(
            apply_approval(&mut r, "UA", false, now),
            Err(Refusal::AlreadyApproved("AR-1".into()))
        );
        assert_eq!(
            apply_approval(&mut r, "UB", false, now),
            Ok(ApprovalOutcome::Approved)
        );
    }

    #[test]
    fn self_approval_and_required_counts() {
        let now = Utc::now();
        let mut r = request(vec![(&["UREQ", "UA", "UB"], 2)]);
        assert_eq!(
            apply_approval(&mut r, "UREQ", false, now),
            Err(Refusal::SelfApproval)
        );
        assert_eq!(
            apply_approval(&mut r, "UA", false, now),
            Ok(ApprovalOutcome::Counted { remaining: 1 })
        );
        assert_eq!(
            apply_approval(&mut r, "UB", false, now),
            Ok(ApprovalOutcome::Approved)
        );
    }

    #[test]
    fn denial_needs_a_current_approver() {
        let mut r = request(vec![(&["UA"], 1), (&["UB"], 1)]);
        assert_eq!(
            apply_denial(&mut r, "UB"),
            Err(Refusal::NotCurrentStage("AR-1".into()))
        );
        assert_eq!(
            apply_denial(&mut r, "UX"),
            Err(Refusal::NotApprover("AR-1".into()))
        );
        assert_eq!(apply_denial(&mut r, "UA"), Ok(()));
        assert_eq!(r.status, Status::Denied);
    }
}
