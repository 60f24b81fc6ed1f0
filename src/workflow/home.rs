//! The App Home tab's side of the workflow: what a person's Home shows
//! (read from the store's indexes and the catalog when it is published,
//! never from a cache), who must see theirs refreshed after a change, and
//! the Request button's modal.
//!
//! Refreshing is durable and works across replicas: every change that
//! concerns a person (their request created, approved, denied, granted,
//! extended, ended or cancelled; an approval now waiting for them or no
//! longer waiting) queues a [`SlackOp::RefreshHome`] for them in the same
//! write as the change ([`Fx::refresh_homes`]). The outbox renders the Home
//! when it delivers that entry, shortly after, with the state as it is
//! then; entries queued before a render started are covered by it, so a
//! burst of changes publishes once.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use super::{Fx, Workflow};
use crate::outbox::{HomeSource, OutboxItem, SlackOp};
use crate::request::{AccessRequest, Status};
use crate::runbook::Runbook;
use crate::slack::home::{self, HomeData, SecurityData};
use crate::slack::SlackError;
use crate::store::StoreError;

/// How long a refresh waits before it is rendered, so the changes of one
/// moment (an approval, then the grant) are shown by one publish.
const HOME_DEBOUNCE: Duration = Duration::from_millis(300);

/// The order key of a person's Home refreshes: one at a time, in order.
fn home_key(user: &str) -> String {
    format!("home:{user}")
}

/// Who must approve `req` now and has not: their Home lists it.
fn waiting_for(req: &AccessRequest) -> Vec<&String> {
    if req.status != Status::Pending {
        return vec![];
    }
    req.current_approvers()
        .iter()
        .filter(|u| !req.has_approved(u))
        .collect()
}

/// What a Home tab shows of a request; a change to anything else (a
/// reminder time, a remembered message) refreshes no one.
fn shown(req: &AccessRequest) -> impl PartialEq + '_ {
    (
        req.status,
        req.current_stage,
        req.approvals.len(),
        req.expires_at,
        req.extension.is_some(),
        &req.review,
        req.total_secs,
    )
}

/// The order key of the security group's Home refreshes.
const SECURITY_KEY: &str = "home:security-group";

/// What the security group's section shows of a request: whether it is
/// elevated access now, and whether it is a break-glass grant waiting for
/// review.
fn security_shown(req: &AccessRequest) -> (bool, bool) {
    (
        req.status == Status::Active,
        req.break_glass && req.review.is_none() && !req.status.is_terminal(),
    )
}

impl Fx<'_> {
    /// Queues a Home refresh for everyone `after` concerns, when what the
    /// Home shows of it changed since `before` (`None`: it is new): its
    /// requester, and every approver it waited for or waits for now.
    pub(super) fn refresh_homes(&mut self, before: Option<&AccessRequest>, after: &AccessRequest) {
        if before.is_some_and(|b| shown(b) == shown(after)) {
            return;
        }
        let mut users: Vec<&String> = vec![&after.requester];
        for u in before
            .map(waiting_for)
            .unwrap_or_default()
            .into_iter()
            .chain(waiting_for(after))
        {
            if !users.contains(&u) {
                users.push(u);
            }
        }
        let now = Utc::now();
        let not_before = now + chrono::Duration::from_std(HOME_DEBOUNCE).unwrap_or_default();
        if before.map_or((false, false), security_shown) != security_shown(after) {
            let mut item = OutboxItem::new(
                SECURITY_KEY,
                SlackOp::RefreshSecurityHomes { queued_at: now },
            );
            item.not_before = Some(not_before);
            self.effects.outbox.push(item);
        }
        for user in users {
            let mut item = OutboxItem::new(
                home_key(user),
                SlackOp::RefreshHome {
                    user: user.clone(),
                    queued_at: now,
                },
            );
            item.not_before = Some(not_before);
            self.effects.outbox.push(item);
        }
    }
}

impl Workflow {
    /// Queues `user`'s Home tab to be published now (they opened it).
    pub async fn queue_home_refresh(&self, user: &str) -> Result<(), StoreError> {
        self.queue_slack(
            &home_key(user),
            SlackOp::RefreshHome {
                user: user.to_string(),
                queued_at: Utc::now(),
            },
        )
        .await
    }

    /// Pending requests `user` may approve now (an approver of the current
    /// stage who has not approved yet), oldest first, from the index of
    /// requests by status.
    pub async fn approvals_waiting_for(
        &self,
        user: &str,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        Ok(self
            .deps
            .store
            .requests_with_status(Status::Pending)
            .await?
            .into_iter()
            .filter(|r| waiting_for(r).iter().any(|u| *u == user))
            .collect())
    }

    /// `user`'s Home tab as it is now. A part that cannot be read is shown
    /// empty rather than failing the whole tab (the log says why).
    pub async fn home_view(&self, user: &str) -> Value {
        let mine = self.open_requests_of(user).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "Home tab: could not read the person's requests");
            vec![]
        });
        let to_approve = self.approvals_waiting_for(user).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "Home tab: could not read the approvals waiting");
            vec![]
        });
        let catalog = self.requestable(user).await;
        let security = if self.is_in_security_group(user).await {
            Some(self.security_overview().await)
        } else {
            None
        };
        let extend_by = |runbook: &str| self.extend_step(runbook);
        home::view(&HomeData {
            now: Utc::now(),
            mine: &mine,
            to_approve: &to_approve,
            catalog: &catalog,
            extend_by: &extend_by,
            security: security
                .as_ref()
                .map(|(elevated, unreviewed)| SecurityData {
                    elevated,
                    unreviewed,
                }),
        })
    }

    /// Everyone's active grants, and the break-glass grants among the
    /// unfinished requests that nobody has reviewed yet.
    async fn security_overview(&self) -> (Vec<AccessRequest>, Vec<AccessRequest>) {
        let mut elevated = Vec::new();
        let mut unreviewed = Vec::new();
        for status in [
            Status::Granting,
            Status::Active,
            Status::Revoking,
            Status::NeedsAttention,
        ] {
            match self.deps.store.requests_with_status(status).await {
                Ok(found) => {
                    for r in found {
                        if r.break_glass && r.review.is_none() {
                            unreviewed.push(r.clone());
                        }
                        if r.status == Status::Active {
                            elevated.push(r);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "Home tab: could not read the requests by status")
                }
            }
        }
        (elevated, unreviewed)
    }

    /// The runbook `runbook_id` if `user` may request it.
    pub async fn requestable_runbook(&self, user: &str, runbook_id: &str) -> Option<&Runbook> {
        let rb = self.deps.catalog.get(runbook_id)?;
        self.deps
            .people
            .may_request(rb, user)
            .await
            .unwrap_or(false)
            .then_some(rb)
    }

    /// Opens the request modal with `selected` chosen (the Home tab's
    /// Request button), listing what `user` may request; returns the
    /// opened view's ID and hash, for the preview to update it.
    pub async fn open_request_modal(
        &self,
        user: &str,
        trigger_id: &str,
        selected: &Runbook,
    ) -> Result<(String, Option<String>), SlackError> {
        let runbooks = self.requestable(user).await;
        let view = crate::slack::blocks::request_modal(&runbooks, Some(selected), &[]);
        let opened = self.deps.slack.views_open(trigger_id, &view).await?;
        let id = opened["view"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let hash = opened["view"]["hash"].as_str().map(str::to_string);
        Ok((id, hash))
    }
}

impl HomeSource for Workflow {
    fn home_view<'a>(
        &'a self,
        user: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Value> + Send + 'a>> {
        Box::pin(Workflow::home_view(self, user))
    }

    fn security_members(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send + '_>> {
        Box::pin(self.security_group_members())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Approval, StageState};

    fn pending() -> AccessRequest {
        AccessRequest::new(
            "ar-1".into(),
            "billing-admin",
            "U0ALICE",
            Duration::from_secs(60),
            vec![
                StageState {
                    name: "leads".into(),
                    approvers: vec!["U0BOB".into(), "U0CAROL".into()],
                    required: 1,
                },
                StageState {
                    name: "security".into(),
                    approvers: vec!["U0DAVE".into()],
                    required: 1,
                },
            ],
            Utc::now(),
        )
    }

    /// The people whose Home a change from `before` to `after` refreshes.
    fn refreshed(before: Option<&AccessRequest>, after: &AccessRequest) -> Vec<String> {
        let mut fx = Fx::new("C0AUDIT");
        fx.refresh_homes(before, after);
        fx.effects
            .outbox
            .iter()
            .filter(|item| !matches!(item.op, SlackOp::RefreshSecurityHomes { .. }))
            .map(|item| match &item.op {
                SlackOp::RefreshHome { user, .. } => {
                    assert_eq!(item.order_key, format!("home:{user}"));
                    assert!(item.not_before.is_some(), "debounced");
                    user.clone()
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_change_refreshes_the_homes_it_concerns() {
        let new = pending();
        assert_eq!(
            refreshed(None, &new),
            ["U0ALICE", "U0BOB", "U0CAROL"],
            "the requester and the approvers it now waits for"
        );
        // Nothing the Home shows changed: nobody.
        let mut reminded = new.clone();
        reminded.remind_at = Some(Utc::now());
        assert!(refreshed(Some(&new), &reminded).is_empty());
        // The first stage is approved: its approvers no longer wait, the
        // next stage's approver now does.
        let mut next = new.clone();
        next.approvals.push(Approval {
            user: "U0BOB".into(),
            stage: 0,
            at: Utc::now(),
        });
        next.current_stage = 1;
        assert_eq!(
            refreshed(Some(&new), &next),
            ["U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"]
        );
        // Granted: the requester, and the approver who was waited for.
        let mut granting = next.clone();
        granting.status = Status::Granting;
        assert_eq!(refreshed(Some(&next), &granting), ["U0ALICE", "U0DAVE"]);
        let mut active = granting.clone();
        active.status = Status::Active;
        active.expires_at = Some(Utc::now());
        assert_eq!(refreshed(Some(&granting), &active), ["U0ALICE"]);
    }

    fn security_refreshes(before: Option<&AccessRequest>, after: &AccessRequest) -> usize {
        let mut fx = Fx::new("C0AUDIT");
        fx.refresh_homes(before, after);
        fx.effects
            .outbox
            .iter()
            .filter(|item| matches!(item.op, SlackOp::RefreshSecurityHomes { .. }))
            .count()
    }

    #[test]
    fn elevated_access_starting_or_ending_refreshes_the_security_group() {
        let new = pending();
        assert_eq!(security_refreshes(None, &new), 0, "nothing elevated yet");
        let mut active = new.clone();
        active.status = Status::Active;
        assert_eq!(security_refreshes(Some(&new), &active), 1);
        let mut extended = active.clone();
        extended.total_secs += 60;
        assert_eq!(security_refreshes(Some(&active), &extended), 0);
        let mut ended = active.clone();
        ended.status = Status::Revoked;
        assert_eq!(security_refreshes(Some(&active), &ended), 1);
        let mut glass = new.clone();
        glass.break_glass = true;
        glass.status = Status::Granting;
        assert_eq!(
            security_refreshes(None, &glass),
            1,
            "unreviewed break-glass"
        );
        let mut reviewed = glass.clone();
        reviewed.review = Some("acknowledged".into());
        assert_eq!(security_refreshes(Some(&glass), &reviewed), 1);
    }
}
