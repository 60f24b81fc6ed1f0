//! Provisioning: the grant and revoke runs of `Granting` and `Revoking`
//! requests, each recorded by a second write after the provider answered,
//! and [`Workflow::recover`], which resumes the runs a crash interrupted.
//! Runs for one person and runbook are serialised across replicas
//! (`lock_subject`, the store's `lock_provider_run`), and each run re-reads
//! its request under that lock, so a run that another replica (or an
//! earlier task here) already finished is not repeated. A revoke is not run
//! in the target system while another request of the same person still
//! holds that access (`covering_request`): requests count by the access
//! their runbook gives in the target (`GrantSpec::target`), so of two
//! runbooks onto one group the last grant to end revokes. After a revoke
//! the target is read back where the provider can (`Provider::verify`):
//! access still there is retried with backoff and reported to the audit
//! channel until it is gone; gone is recorded as `revoke_verified`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::attention::needs_attention;
use super::{chrono_dur, warn_time, Workflow, EXTENSION, GRANT, WARNING};
use crate::crashpoint;
use crate::grant::{Action, GrantContext, GrantError, Presence};
use crate::request::{AccessRequest, Status};
use crate::retry::backoff;
use crate::slack::{blocks, text};
use crate::store::StoreError;

/// How long start-up waits for a killed leftover run to be gone.
const LEFTOVER_WAIT: Duration = Duration::from_secs(5);

/// Why a provider run did not confirm the access was given or taken away.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Provider(#[from] GrantError),
    #[error("{}", text::runbook_gone(.runbook_id, *.action))]
    RunbookGone { runbook_id: String, action: Action },
}

impl RunError {
    /// Whether trying again later can succeed. A runbook gone from the
    /// catalog comes back when its file is restored and the bot restarted.
    fn is_retryable(&self) -> bool {
        match self {
            RunError::Provider(e) => e.is_retryable(),
            RunError::RunbookGone { .. } => true,
        }
    }

    /// Whether the run failed before anything reached the target system.
    fn target_untouched(&self) -> bool {
        match self {
            RunError::Provider(e) => e.target_untouched(),
            RunError::RunbookGone { .. } => true,
        }
    }

    /// How long the target asked us to wait before the next try, if it said.
    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            RunError::Provider(e) => e.retry_after(),
            RunError::RunbookGone { .. } => None,
        }
    }
}

impl Workflow {
    /// Completes what a crash interrupted: grants and revokes that were
    /// recorded as intents but whose outcome was not (revokes with a retry
    /// scheduled are the timer's). Reads only the requests in those two
    /// statuses.
    ///
    /// What a dead bot's runs left running is killed first, and waited
    /// for: a resumed run must not run beside the one it replaces. A run of
    /// a live replica on this host is left alone (its program still runs),
    /// and its request is not run twice: the resumed run waits for the
    /// person-and-runbook lock and then finds it done.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, StoreError> {
        let now = Utc::now();
        let mut interrupted = self
            .deps
            .store
            .requests_with_status(Status::Granting)
            .await?;
        interrupted.extend(
            self.deps
                .store
                .requests_with_status(Status::Revoking)
                .await?
                .into_iter()
                .filter(|r| r.retry_at.is_none_or(|t| t <= now)),
        );
        let ids: HashSet<&str> = interrupted.iter().map(|r| r.id.as_str()).collect();
        // On a store other replicas share, a run on this host may be theirs.
        let shared = self.deps.store.shared_by_replicas();
        let leftovers = self
            .deps
            .providers
            .stop_leftover_runs(&ids, LEFTOVER_WAIT, shared);
        if !leftovers.groups.is_empty() {
            tracing::warn!(process_groups = ?leftovers.groups, "killed provider runs the last bot left running");
        }
        if !leftovers.surviving.is_empty() {
            tracing::error!(pids = ?leftovers.surviving, "provider processes of the last bot survive SIGKILL (stuck in the kernel); they die when they leave it");
        }
        for req in &interrupted {
            if req.status == Status::Granting {
                tracing::info!(request_id = %req.id, "resuming an interrupted grant");
                self.spawn_grant(&req.id);
            } else {
                tracing::info!(request_id = %req.id, "resuming an interrupted revoke");
                self.spawn_revoke(&req.id);
            }
        }
        Ok(interrupted.len())
    }

    /// Kills, on this host, what a dead replica's run for `id` left running
    /// (its program died with it; what that started did not), and waits for
    /// it to be gone. A live replica's run is spared.
    pub(super) async fn stop_leftovers_of(&self, id: &str) {
        let providers = self.deps.providers.clone();
        let id = id.to_string();
        let stopped = tokio::task::spawn_blocking(move || {
            providers.stop_leftover_runs(&HashSet::from([id.as_str()]), LEFTOVER_WAIT, true)
        })
        .await;
        if let Ok(leftovers) = stopped {
            if !leftovers.groups.is_empty() {
                tracing::warn!(process_groups = ?leftovers.groups, "killed what a dead replica's provider run left running");
            }
        }
    }

    /// Another request of the same person that holds, or is being given,
    /// the same access: one of the same runbook, or of any runbook whose
    /// grant gives the same target (`GrantSpec::target`). Revoking `req` in
    /// the target system would take that access away too. Read from the
    /// index of holding grants, one probe per such runbook, never the whole
    /// table.
    pub(crate) async fn covering_request(
        &self,
        req: &AccessRequest,
    ) -> Result<Option<String>, StoreError> {
        for runbook in self.same_access_runbooks(&req.runbook_id) {
            let other = self
                .deps
                .store
                .active_grants_covering(&req.requester, &runbook)
                .await?
                .into_iter()
                .find(|o| o.id != req.id);
            if let Some(other) = other {
                return Ok(Some(other.id));
            }
        }
        Ok(None)
    }

    /// The runbooks whose grants give the same access as `runbook_id`'s:
    /// every runbook with the same target, or `runbook_id` alone when its
    /// provider names no target (or it left the catalog).
    fn same_access_runbooks(&self, runbook_id: &str) -> Vec<String> {
        let target = self
            .deps
            .catalog
            .get(runbook_id)
            .and_then(|r| r.grant.target());
        match target {
            None => vec![runbook_id.to_string()],
            Some(target) => self
                .deps
                .catalog
                .runbooks
                .iter()
                .filter(|r| r.grant.target() == Some(target))
                .map(|r| r.id.clone())
                .collect(),
        }
    }

    /// Reads the target back after a revoke `ctx` describes; `None` when
    /// the runbook's provider cannot.
    async fn read_back(
        &self,
        req: &AccessRequest,
        ctx: &GrantContext,
    ) -> Option<Result<Presence, GrantError>> {
        let rb = self.deps.catalog.get(&req.runbook_id)?;
        let found = self.deps.providers.verify(&rb.grant, ctx).await;
        match &found {
            Some(Ok(presence)) => {
                tracing::info!(request_id = %req.id, ?presence, "read the target back after the revoke")
            }
            Some(Err(e)) => {
                tracing::warn!(request_id = %req.id, error = %e, "could not read the target back after the revoke")
            }
            None => {}
        }
        found
    }

    /// Words for the access a runbook gives, for audit lines: its target
    /// key, or the runbook.
    pub(super) fn target_words(&self, runbook_id: &str) -> String {
        self.deps
            .catalog
            .get(runbook_id)
            .and_then(|r| r.grant.target().map(|t| format!("`{t}`")))
            .unwrap_or_else(|| format!("the target of `{runbook_id}`"))
    }

    pub(super) async fn context(
        &self,
        req: &AccessRequest,
        expires_at: DateTime<Utc>,
    ) -> GrantContext {
        let found = match self
            .deps
            .identities
            .resolve(&self.deps.slack, &req.requester)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(request_id = %req.id, error = %e, "users.info failed; running the provider without an email");
                crate::identity::Identity::default()
            }
        };
        GrantContext {
            request_id: req.id.clone(),
            runbook_id: req.runbook_id.clone(),
            user_id: req.requester.clone(),
            identity: found.identity,
            user_email: found.email,
            expires_at,
            reason: req.reason.clone(),
            runbook_dir: self.deps.runbook_dir.clone(),
            inputs: req
                .inputs
                .iter()
                .map(|v| (v.id.clone(), v.value.clone()))
                .collect(),
        }
    }

    /// Runs `action` for `req` with its runbook's provider. When
    /// `covered_by` names another request that keeps the same access, the
    /// provider is not called and the run counts as done. Returns the
    /// context the provider ran with, `None` when it was not called.
    async fn run_provider(
        &self,
        req: &AccessRequest,
        action: Action,
        expires_at: DateTime<Utc>,
        covered_by: Option<&str>,
    ) -> Result<Option<GrantContext>, RunError> {
        let Some(rb) = self.deps.catalog.get(&req.runbook_id) else {
            return Err(RunError::RunbookGone {
                runbook_id: req.runbook_id.clone(),
                action,
            });
        };
        if let Some(other) = covered_by {
            tracing::info!(request_id = %req.id, other, "not revoking in the target system: another request holds the same access");
            return Ok(None);
        }
        let ctx = self.context(req, expires_at).await;
        // After the Slack lookups, just before the provider: "before the
        // provider ran" (the approval that started it is already stored).
        crashpoint::hit(match action {
            Action::Grant => "before_grant",
            Action::Revoke => "before_revoke",
        });
        let result = self.deps.providers.run(&rb.grant, action, &ctx).await;
        crashpoint::hit(match action {
            Action::Grant => "after_grant",
            Action::Revoke => "after_revoke",
        });
        if let Err(e) = &result {
            tracing::warn!(request_id = %req.id, error = %e, retryable = e.is_retryable(), "the {action} failed");
            crate::metrics::provider_error(rb.grant.provider_name(), &action.to_string());
        }
        result?;
        Ok(Some(ctx))
    }

    /// Runs the grant of a `Granting` request and records the outcome. A
    /// failed grant becomes a clean-up revoke, so nothing stays half-granted.
    /// Returns whether a clean-up revoke must follow.
    #[tracing::instrument(skip(self))]
    pub(super) async fn run_grant(self: &Arc<Self>, id: &str) -> Result<bool, StoreError> {
        let Some(req) = self.deps.store.get(id).await? else {
            return Ok(false);
        };
        if req.status != Status::Granting {
            return Ok(false);
        }
        let _subject = self.lock_subject(&req).await?;
        // Under the lock: a run that held it before us may have finished it.
        let Some(req) = self.deps.store.get(id).await? else {
            return Ok(false);
        };
        if req.status != Status::Granting {
            return Ok(false);
        }
        let started = Utc::now();
        // A scheduled grant ends its duration after its start.
        let expires_at = crate::schedule::grant_ends(&req, started);
        let result = self
            .run_provider(&req, Action::Grant, expires_at, None)
            .await
            .map(|_| ());
        let instructions = self.runbook_says(&req.runbook_id, |r| r.instructions.clone());
        let extend_by = self.extend_step(&req.runbook_id);
        let warning = self.deps.timing.expiry_warning;
        let cleanup_lease = self.run_lease(Utc::now());
        let ok = result.is_ok();
        self.note_grant_outcome(&req.runbook_id, ok);
        let Ok((_, req)) = self
            .change(id, |req, fx| -> Result<_, Infallible> {
                if req.status != Status::Granting {
                    return Ok(());
                }
                req.run_until = None;
                match &result {
                    Ok(()) => {
                        req.status = Status::Active;
                        req.granted_at = Some(Utc::now());
                        req.expires_at = Some(expires_at);
                        req.warn_at = warn_time(expires_at, req.duration_secs, warning);
                        fx.audit("granted", req, "accessbot", text::granted(req, expires_at));
                        fx.dm(
                            req,
                            &req.requester,
                            blocks::granted(req, &instructions, extend_by),
                            Some(GRANT),
                        );
                    }
                    Err(e) => {
                        let untouched = e.target_untouched();
                        let e = e.to_string();
                        req.grant_failed = true;
                        req.end_reason = Some(text::grant_failed_reason(&e));
                        req.retry_at = None;
                        if untouched {
                            // Nothing reached the system: no clean-up to run.
                            req.status = Status::Failed;
                            req.ended_at = Some(Utc::now());
                            fx.audit("failed", req, "accessbot", text::grant_failed_untouched(&e));
                        } else {
                            req.status = Status::Revoking;
                            req.run_until = Some(cleanup_lease);
                            fx.audit("failed", req, "accessbot", text::grant_failed(&e));
                        }
                        fx.tell_requester(
                            req,
                            &text::grant_failed_notice(req, &self.deps.audit_channel),
                        );
                    }
                }
                Ok(())
            })
            .await?;
        self.wake();
        Ok(!ok && req.status == Status::Revoking)
    }

    /// Remembers for `/healthz` whether the last grant through `runbook` worked.
    fn note_grant_outcome(&self, runbook: &str, ok: bool) {
        let mut failing = self.failing_grants.lock().expect("failing grants lock");
        if ok {
            failing.remove(runbook);
        } else {
            failing.insert(runbook.to_string());
        }
    }

    /// Runs the revoke of a `Revoking` request; on a failure a retry can
    /// fix, schedules a retry with backoff (or the `Retry-After` the target
    /// asked for, if longer) and says so in the audit channel, every time;
    /// on one it cannot, stops and asks a person once (`NeedsAttention`).
    #[tracing::instrument(skip(self))]
    pub(super) async fn run_revoke(self: &Arc<Self>, id: &str) -> Result<(), StoreError> {
        let Some(req) = self.deps.store.get(id).await? else {
            return Ok(());
        };
        if req.status != Status::Revoking {
            return Ok(());
        }
        let _subject = self.lock_subject(&req).await?;
        // Under the lock: a run that held it before us may have finished it,
        // or failed and scheduled a retry, which is the timer's to start.
        let Some(req) = self.deps.store.get(id).await? else {
            return Ok(());
        };
        if req.status != Status::Revoking || req.retry_at.is_some_and(|t| t > Utc::now()) {
            return Ok(());
        }
        let expires_at = req.expires_at.unwrap_or_else(Utc::now);
        let covered_by = self.covering_request(&req).await?;
        let ran = self
            .run_provider(&req, Action::Revoke, expires_at, covered_by.as_deref())
            .await;
        // A revoke the target accepted is read back where it can be.
        let (result, presence) = match ran {
            Ok(Some(ctx)) => match self.read_back(&req, &ctx).await {
                None => (Ok(()), None),
                Some(Ok(presence)) => (Ok(()), Some(presence)),
                Some(Err(e)) => (Err(RunError::Provider(e)), None),
            },
            Ok(None) => (Ok(()), None),
            Err(e) => (Err(e), None),
        };
        let target = self.target_words(&req.runbook_id);
        let timing = self.deps.timing.clone();
        let owner = self.runbook_says(&req.runbook_id, |r| r.owner.clone());
        let feedback_on = self.feedback_on(&req.runbook_id);
        let Ok(_) = self
            .change(id, |req, fx| -> Result<_, Infallible> {
                if req.status != Status::Revoking {
                    return Ok(());
                }
                let now = Utc::now();
                req.run_until = None;
                match &result {
                    Ok(()) if presence == Some(Presence::Present) => {
                        // Accepted, yet still there: revoke again, and say
                        // so in the audit channel every time until it is gone.
                        req.attempts += 1;
                        let wait = backoff(&timing, req.attempts);
                        req.retry_at = Some(now + chrono_dur(wait));
                        fx.audit(
                            "revoke_unverified",
                            req,
                            "accessbot",
                            text::revoke_unverified(req.attempts, &target, wait),
                        );
                    }
                    Ok(()) => {
                        if presence == Some(Presence::Absent) {
                            fx.record(
                                "revoke_verified",
                                req,
                                "accessbot",
                                text::revoke_verified(&target),
                            );
                        }
                        req.ended_at = Some(now);
                        req.retry_at = None;
                        let mut why = req.end_reason.clone().unwrap_or_else(|| text::ENDED.into());
                        if let Some(other) = &covered_by {
                            why = text::access_continues(&why, other);
                        }
                        if let Some(ext) = req.extension.take() {
                            fx.close_dms(req, &ext.approvers, EXTENSION, text::EXTENSION_OUTLIVED);
                        }
                        if req.grant_failed {
                            req.status = Status::Failed;
                            fx.audit("revoked", req, "accessbot", text::CLEANED_UP.into());
                        } else {
                            req.status = Status::Revoked;
                            fx.audit("revoked", req, "accessbot", text::revoked(req, &why));
                            // One message says it ended; the earlier ones
                            // only lose their Extend and Release buttons.
                            let requester = &req.requester;
                            fx.update_dm(req, requester, GRANT, blocks::granted_closed(req));
                            fx.update_dm(
                                req,
                                requester,
                                WARNING,
                                blocks::expiry_warning_closed(req),
                            );
                            fx.tell_requester(req, &text::revoked_notice(req, &why));
                            Self::ask_feedback(fx, req, feedback_on);
                        }
                    }
                    Err(e) if !e.is_retryable() => {
                        req.attempts += 1;
                        needs_attention(fx, req, &owner, &e.to_string());
                    }
                    Err(e) => {
                        req.attempts += 1;
                        let backoff = backoff(&timing, req.attempts);
                        let wait = e.retry_after().map_or(backoff, |asked| asked.max(backoff));
                        req.retry_at = Some(now + chrono_dur(wait));
                        fx.audit(
                            "revoke_failed",
                            req,
                            "accessbot",
                            text::revoke_failed(req.attempts, &e.to_string(), wait),
                        );
                    }
                }
                Ok(())
            })
            .await?;
        self.wake();
        Ok(())
    }
}
