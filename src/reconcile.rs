//! `accessbot reconcile [--fix]`: the store's grants against what the
//! targets really hold. For every access the runbooks give (grouped by
//! target, so two runbooks onto one group are one access), it reads back
//! each person accessbot ever granted it to (the audit log's `granted`
//! events) and who no open request covers now: access still there is
//! *left behind*. Targets that can list their members (a Slack user group,
//! a database role) also show *members accessbot never granted*.
//!
//! `--fix` revokes what was left behind through the workflow's normal
//! revoke path (`Workflow::revoke_leftover`), with audit events; members
//! accessbot never granted are only reported, since someone else gave them
//! the access. It opens the store the way `serve` does: PostgreSQL beside
//! running replicas, or a sled data directory of a stopped bot.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use crate::app::{open_store, StartError};
use crate::config::Config;
use crate::grant::{Presence, Providers};
use crate::policy::People;
use crate::request::AccessRequest;
use crate::retry::Timing;
use crate::runbook;
use crate::slack::SlackClient;
use crate::store::{SledEngine, Store, StoreEngine};
use crate::workflow::{Deps, LeftoverOutcome, Workflow};

/// One difference between the store and a target, or a target that could
/// not be checked.
#[derive(Debug)]
pub enum Finding {
    /// `subject` still holds the access that `request_id` granted, though
    /// no open request covers it.
    LeftBehind {
        subject: String,
        request_id: String,
        /// What `--fix` did, when it ran.
        fixed: Option<LeftoverOutcome>,
    },
    /// `member` holds the access and accessbot never granted it to them.
    NeverGranted { member: String },
    /// The target could not be read.
    Unreadable { error: String },
}

/// The findings of one access (one target), under the runbooks giving it.
#[derive(Debug)]
pub struct AccessReport {
    /// The runbooks giving this access, e.g. `billing-admin`.
    pub runbooks: Vec<String>,
    /// The target key, when the provider names one.
    pub target: Option<String>,
    pub findings: Vec<Finding>,
}

/// Everything `reconcile` found.
#[derive(Debug, Default)]
pub struct Report {
    pub accesses: Vec<AccessReport>,
    /// Accesses that could be read back or listed.
    pub checked: usize,
}

impl Report {
    /// 0: everything matches (or was fixed); 1: something differs; 2:
    /// nothing differs that was seen, but some target could not be read.
    pub fn exit_code(&self) -> u8 {
        let all = || self.accesses.iter().flat_map(|a| &a.findings);
        let differs = all().any(|f| match f {
            Finding::LeftBehind { fixed, .. } => !matches!(fixed, Some(LeftoverOutcome::Removed)),
            Finding::NeverGranted { .. } => true,
            Finding::Unreadable { .. } => false,
        });
        if differs {
            1
        } else if all().any(|f| matches!(f, Finding::Unreadable { .. })) {
            2
        } else {
            0
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for access in &self.accesses {
            let label = access.runbooks.join(", ");
            let target = access
                .target
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            for finding in &access.findings {
                match finding {
                    Finding::LeftBehind {
                        subject,
                        request_id,
                        fixed,
                    } => {
                        write!(
                            f,
                            "{label}{target}: {subject} still has the access request {request_id} granted, and no open request covers it"
                        )?;
                        match fixed {
                            None => writeln!(f, "; `accessbot reconcile --fix` revokes it")?,
                            Some(LeftoverOutcome::Removed) => writeln!(f, "; fixed: revoked")?,
                            Some(LeftoverOutcome::StillCovered(other)) => writeln!(
                                f,
                                "; not revoked: request {other} now covers it"
                            )?,
                            Some(LeftoverOutcome::Failed(why)) => {
                                writeln!(f, "; NOT fixed: {why}")?
                            }
                        }
                    }
                    Finding::NeverGranted { member } => writeln!(
                        f,
                        "{label}{target}: {member} holds the access, and accessbot never granted it to them; remove them in the target if they should not have it"
                    )?,
                    Finding::Unreadable { error } => {
                        writeln!(f, "{label}{target}: could not check: {error}")?
                    }
                }
            }
        }
        let differences = self
            .accesses
            .iter()
            .flat_map(|a| &a.findings)
            .filter(|f| !matches!(f, Finding::Unreadable { .. }))
            .count();
        match differences {
            0 => write!(
                f,
                "reconcile: {} access(es) checked; the targets match the store",
                self.checked
            ),
            n => write!(
                f,
                "reconcile: {} access(es) checked; {n} difference(s) listed above",
                self.checked
            ),
        }
    }
}

/// Opens what `serve` opens (runbooks, store, Slack, providers) and
/// reconciles; `fix` revokes what was left behind.
pub async fn run(config: Config, fix: bool) -> Result<Report, StartError> {
    let catalog = runbook::load_dir(&config.runbooks).map_err(|problems| StartError::Runbooks {
        dir: config.runbooks.display().to_string(),
        first: problems.first().map(|p| p.to_string()).unwrap_or_default(),
        problems,
    })?;
    let missing: Vec<StartError> = catalog
        .not_ready(runbook::NotReady::is_set_here)
        .into_iter()
        .map(StartError::MissingEnv)
        .collect();
    if !missing.is_empty() {
        return Err(StartError::Several(missing));
    }
    // A sled directory that holds no database is refused, never read as an
    // empty store where everything would "match".
    let store: Arc<dyn StoreEngine> = match &config.database_url {
        Some(_) => open_store(&config).await?,
        None => Arc::new(SledEngine::new(Arc::new(Store::open_existing(
            &config.data_dir,
        )?))),
    };
    let slack = SlackClient::new(&config.api_url, config.bot_token.clone());
    let workflow = Arc::new(Workflow::new(Deps {
        store: Arc::clone(&store),
        catalog: Arc::new(catalog),
        slack: slack.clone(),
        people: People::new(
            slack.clone(),
            config.directory.clone(),
            config.manager_field.clone(),
        ),
        providers: Providers::with_slack(slack),
        audit_channel: config.audit_channel.clone(),
        runbook_dir: std::fs::canonicalize(&config.runbooks)
            .unwrap_or_else(|_| config.runbooks.clone()),
        timing: Timing {
            expiry_warning: config.expiry_warning,
            retry_base: config.retry_base,
            retry_max: config.retry_max,
            lease: config.lease,
        },
        identities: config.identities.clone(),
    }));
    let report = reconcile(&workflow, fix).await?;
    store.flush().await?;
    Ok(report)
}

/// The comparison itself, on a running workflow.
pub async fn reconcile(workflow: &Arc<Workflow>, fix: bool) -> Result<Report, StartError> {
    let holding = workflow.holding_requests().await?;
    let granted = workflow.granted_before().await?;
    // One access per target; a runbook whose provider names none is its own.
    let mut accesses: BTreeMap<String, (Option<String>, Vec<String>)> = BTreeMap::new();
    for rb in workflow.runbooks() {
        let target = rb.grant.target().map(str::to_string);
        let key = target
            .clone()
            .unwrap_or_else(|| format!("runbook:{}", rb.id));
        accesses
            .entry(key)
            .or_insert_with(|| (target, Vec::new()))
            .1
            .push(rb.id.clone());
    }
    let mut report = Report::default();
    for (target, runbooks) in accesses.into_values() {
        let found = check_access(workflow, &runbooks, &holding, &granted, fix).await?;
        if let Some(findings) = found {
            report.checked += 1;
            if !findings.is_empty() {
                report.accesses.push(AccessReport {
                    runbooks,
                    target,
                    findings,
                });
            }
        }
    }
    Ok(report)
}

/// The findings for one access; `None` when its target can be neither
/// read back nor listed (a program, a webhook).
async fn check_access(
    workflow: &Arc<Workflow>,
    runbooks: &[String],
    holding: &[AccessRequest],
    granted: &[crate::workflow::GrantedBefore],
    fix: bool,
) -> Result<Option<Vec<Finding>>, StartError> {
    let Some(first) = workflow.runbooks().iter().find(|r| r.id == runbooks[0]) else {
        return Ok(None);
    };
    let holders: Vec<&AccessRequest> = holding
        .iter()
        .filter(|r| runbooks.contains(&r.runbook_id))
        .collect();
    let held_by: BTreeSet<&str> = holders.iter().map(|r| r.requester.as_str()).collect();
    // The last grant to each person no open request covers now.
    let mut ended: BTreeMap<&str, AccessRequest> = BTreeMap::new();
    for g in granted.iter().filter(|g| runbooks.contains(&g.runbook)) {
        if held_by.contains(g.subject.as_str()) || ended.contains_key(g.subject.as_str()) {
            continue;
        }
        if let Some(req) = workflow.request(&g.request_id).await? {
            ended.insert(g.subject.as_str(), req);
        }
    }
    let mut findings = Vec::new();
    let mut readable = false;
    let mut unverified: Vec<&AccessRequest> = Vec::new();
    for req in ended.values() {
        match workflow.read_back_now(req).await {
            None => unverified.push(req),
            Some(Ok(presence)) => {
                readable = true;
                if presence == Presence::Present {
                    findings.push(left_behind(req));
                }
            }
            Some(Err(e)) => {
                readable = true;
                findings.push(Finding::Unreadable {
                    error: format!("reading back {}'s access: {e}", req.requester),
                });
            }
        }
    }
    if let Some(members) = workflow.target_members(first).await {
        readable = true;
        match members {
            Err(e) => findings.push(Finding::Unreadable {
                error: format!("listing the members: {e}"),
            }),
            Ok(members) => {
                let mut known = BTreeSet::new();
                for req in holders.iter().copied().chain(ended.values()) {
                    if let Some(name) = workflow.member_name(req).await {
                        known.insert(name);
                    }
                }
                for req in unverified {
                    let name = workflow.member_name(req).await;
                    if name.is_some_and(|n| members.contains(&n)) {
                        findings.push(left_behind(req));
                    }
                }
                for m in members.iter().filter(|m| !known.contains(*m)) {
                    findings.push(Finding::NeverGranted { member: m.clone() });
                }
            }
        }
    }
    if !readable {
        return Ok(None);
    }
    if fix {
        for finding in &mut findings {
            if let Finding::LeftBehind {
                request_id, fixed, ..
            } = finding
            {
                *fixed = Some(workflow.revoke_leftover(request_id).await?);
            }
        }
    }
    Ok(Some(findings))
}

fn left_behind(req: &AccessRequest) -> Finding {
    Finding::LeftBehind {
        subject: req.requester.clone(),
        request_id: req.id.clone(),
        fixed: None,
    }
}
