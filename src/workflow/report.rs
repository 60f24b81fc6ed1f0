//! The reads behind the report ([`crate::report`]) and the audit channel's
//! backlog: `/access report` (for runbook owners, who see their own
//! runbooks, and members of the security group `ACCESSBOT_SECURITY_GROUP`,
//! who see all), `accessbot report` (through [`gather`]), and the
//! `audit_backlog` of `/healthz`.
//!
//! A period is read a page of requests at a time
//! ([`crate::store::StoreEngine::requests_since`], in id order), each page
//! folded into the report and dropped, so memory holds the figures, not the
//! requests. The store has no index by creation time for finished requests,
//! so a page is a walk of the request table from where the last one
//! stopped: one pass over the table per report.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Workflow;
use crate::policy::Refusal;
use crate::report::{Report, ReportBuilder};
use crate::request::Status;
use crate::store::{StoreEngine, StoreError};

/// Requests read per page.
const PAGE: usize = 200;

/// The period `/access report` covers.
pub const SLASH_PERIOD: Duration = Duration::from_secs(30 * 86_400);

/// The report of the requests made since `since`, and who holds access
/// now; with `only`, just those runbooks.
pub async fn gather(
    store: &dyn StoreEngine,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    only: Option<&BTreeSet<String>>,
) -> Result<Report, StoreError> {
    let wanted = |runbook: &str| only.is_none_or(|o| o.contains(runbook));
    let mut builder = ReportBuilder::new(since, until);
    let mut after = String::new();
    loop {
        let page = store.requests_since(since, &after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for req in page.iter().filter(|r| wanted(&r.runbook_id)) {
            builder.add(req);
        }
        if page.len() < PAGE {
            break;
        }
    }
    for req in store.requests_with_status(Status::Active).await? {
        if wanted(&req.runbook_id) {
            builder.add_holder(&req);
        }
    }
    Ok(builder.finish())
}

impl Workflow {
    /// `/access report` for `user`: owners of runbooks get their runbooks,
    /// members of the security group every runbook, anyone else a refusal.
    #[tracing::instrument(skip(self))]
    pub async fn report_for(&self, user: &str) -> Result<String, Refusal> {
        let security = match self.security_membership(user).await {
            Ok(member) => member,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the security group's members");
                return Err(Refusal::Invalid(
                    "accessbot could not check the security group with Slack just now; try again in a moment".into(),
                ));
            }
        };
        let owned: BTreeSet<String> = self
            .deps
            .catalog
            .runbooks
            .iter()
            .filter(|r| r.owner == user)
            .map(|r| r.id.clone())
            .collect();
        if !security && owned.is_empty() {
            tracing::info!(%user, "refused /access report to someone who owns no runbook and is not in the security group");
            return Err(Refusal::Invalid(
                "the report is for runbook owners and members of the security group; ask one of them, or your admin to add you to the group set in ACCESSBOT_SECURITY_GROUP".into(),
            ));
        }
        let now = Utc::now();
        let since = now - chrono::Duration::from_std(SLASH_PERIOD).unwrap_or_default();
        let only = (!security).then_some(&owned);
        let report = gather(self.deps.store.as_ref(), since, now, only).await?;
        Ok(crate::slack::report::report_answer(&report))
    }

    /// Notices waiting for the audit channel, for `/healthz`.
    pub async fn audit_backlog(&self) -> Result<u64, StoreError> {
        let key = crate::audit_notice::order_key(&self.deps.audit_channel);
        self.deps.store.outbox_len_of(&key).await
    }
}
