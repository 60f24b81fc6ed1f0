//! What `accessbot reconcile` asks of the lifecycle: which grants the
//! store says hold access now, which the audit log says accessbot ever
//! gave, what the targets say when read back or listed, and the one write
//! it makes, [`Workflow::revoke_leftover`]: a revoke of access that a
//! finished request left behind in the target, through the same provider,
//! person-and-target lock, overlap check and read-back as every revoke,
//! recorded as a `reconcile_revoked` audit event with its notice.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;

use super::Workflow;
use crate::grant::{Action, GrantError, Presence};
use crate::request::{AccessRequest, Status};
use crate::runbook::Runbook;
use crate::slack::text;
use crate::store::StoreError;

/// The audit log is read this many events at a time.
const AUDIT_PAGE: usize = 500;

/// The last grant accessbot made of one runbook to one person, from the
/// audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedBefore {
    pub request_id: String,
    pub runbook: String,
    pub subject: String,
}

/// What removing a left-over access did.
#[derive(Debug)]
pub enum LeftoverOutcome {
    /// Revoked, and read back gone (or the target cannot be read back).
    Removed,
    /// Another request of the person now holds the same access: left alone.
    StillCovered(String),
    /// The revoke failed, or the access is still there after it.
    Failed(String),
}

impl Workflow {
    /// The runbooks in the catalog, in order.
    pub fn runbooks(&self) -> &[Runbook] {
        &self.deps.catalog.runbooks
    }

    /// The requests that hold access, are being given it or are still
    /// being revoked (granting, active, revoking, needs attention).
    pub async fn holding_requests(&self) -> Result<Vec<AccessRequest>, StoreError> {
        let mut out = Vec::new();
        for status in [
            Status::Granting,
            Status::Active,
            Status::Revoking,
            Status::NeedsAttention,
        ] {
            out.extend(self.deps.store.requests_with_status(status).await?);
        }
        Ok(out)
    }

    /// Per runbook and person, the last request accessbot granted, read
    /// from the audit log a page at a time.
    pub async fn granted_before(&self) -> Result<Vec<GrantedBefore>, StoreError> {
        let mut last: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut after = 0;
        loop {
            let page = self.deps.store.audit_range(after, AUDIT_PAGE).await?;
            let Some(end) = page.last() else { break };
            after = end.seq;
            for e in page.iter().filter(|e| e.kind == "granted") {
                last.insert((e.runbook.clone(), e.subject.clone()), e.request_id.clone());
            }
        }
        Ok(last
            .into_iter()
            .map(|((runbook, subject), request_id)| GrantedBefore {
                request_id,
                runbook,
                subject,
            })
            .collect())
    }

    /// Reads back whether `req`'s person still has its runbook's access;
    /// `None` when the provider cannot read it back (or the runbook is gone).
    pub async fn read_back_now(&self, req: &AccessRequest) -> Option<Result<Presence, GrantError>> {
        let rb = self.deps.catalog.get(&req.runbook_id)?;
        let ctx = self
            .context(req, req.expires_at.unwrap_or_else(Utc::now))
            .await;
        self.deps.providers.verify(&rb.grant, &ctx).await
    }

    /// Everyone who holds `runbook`'s access in the target; `None` when
    /// it cannot be listed.
    pub async fn target_members(
        &self,
        runbook: &Runbook,
    ) -> Option<Result<Vec<String>, GrantError>> {
        self.deps.providers.members(&runbook.grant).await
    }

    /// How `req`'s person appears in [`Workflow::target_members`].
    pub async fn member_name(&self, req: &AccessRequest) -> Option<String> {
        let rb = self.deps.catalog.get(&req.runbook_id)?;
        let ctx = self
            .context(req, req.expires_at.unwrap_or_else(Utc::now))
            .await;
        self.deps.providers.member_name(&rb.grant, &ctx)
    }

    /// The stored request `id`.
    pub async fn request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
        self.deps.store.get(id).await
    }

    /// Revokes the access that the finished request `id` left behind in
    /// the target (see the module comment).
    #[tracing::instrument(skip(self))]
    pub async fn revoke_leftover(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<LeftoverOutcome, StoreError> {
        let Some(req) = self.deps.store.get(id).await? else {
            return Ok(LeftoverOutcome::Failed(format!(
                "request {id} is not in the store"
            )));
        };
        let _subject = self.lock_subject(&req).await?;
        if let Some(other) = self.covering_request(&req).await? {
            return Ok(LeftoverOutcome::StillCovered(other));
        }
        let Some(rb) = self.deps.catalog.get(&req.runbook_id) else {
            return Ok(LeftoverOutcome::Failed(text::runbook_gone(
                &req.runbook_id,
                Action::Revoke,
            )));
        };
        let ctx = self
            .context(&req, req.expires_at.unwrap_or_else(Utc::now))
            .await;
        if let Err(e) = self
            .deps
            .providers
            .run(&rb.grant, Action::Revoke, &ctx)
            .await
        {
            return Ok(LeftoverOutcome::Failed(e.to_string()));
        }
        let target = self.target_words(&req.runbook_id);
        match self.deps.providers.verify(&rb.grant, &ctx).await {
            Some(Ok(Presence::Present)) => {
                return Ok(LeftoverOutcome::Failed(format!(
                    "the revoke was accepted but {target} still holds the access"
                )))
            }
            Some(Err(e)) => {
                return Ok(LeftoverOutcome::Failed(format!(
                    "revoked, but reading {target} back failed: {e}"
                )))
            }
            Some(Ok(Presence::Absent)) | None => {}
        }
        let Ok(_) = self
            .change(id, |req, fx| -> Result<_, std::convert::Infallible> {
                fx.audit(
                    "reconcile_revoked",
                    req,
                    "accessbot reconcile",
                    text::reconcile_revoked(&target),
                );
                Ok(())
            })
            .await?;
        self.wake();
        Ok(LeftoverOutcome::Removed)
    }
}
