//! Moving an install from sled to PostgreSQL (`accessbot migrate-store`):
//! requests with their deadlines, the undelivered outbox and the audit log,
//! sequence numbers and hashes kept, then the chain verified on the
//! destination.
//!
//! The source must be stopped (sled's lock refuses a directory in use) and
//! the destination empty, so a copy is never merged into a live database.

use std::fmt;
use std::path::Path;

use super::engine::{ChainCheck, StoreEngine, AUDIT_PAGE};
use super::postgres::PgEngine;
use super::url::mask_url;
use super::{decode, Store, StoreError};
use crate::audit::AuditEvent;
use crate::outbox::OutboxItem;
use crate::request::AccessRequest;

/// Why a move stopped; nothing on the source is changed either way.
#[derive(Debug, thiserror::Error)]
pub enum MigrateStoreError {
    #[error("reading the sled install failed: {0}")]
    Source(StoreError),
    #[error("writing to PostgreSQL failed: {0}")]
    Destination(StoreError),
    #[error("the database {0} already holds accessbot data; migrate-store only copies into an empty database")]
    NotEmpty(String),
    #[error("the audit log in the sled install is broken at event {0}; run `accessbot audit --verify` on it, nothing was copied")]
    SourceChainBroken(u64),
    #[error("the audit log copied to PostgreSQL does not verify (first bad event {0}); drop the destination's tables and run migrate-store again")]
    DestinationChainBroken(u64),
    #[error("{copied} audit events were copied but the destination holds {found}")]
    CountMismatch { copied: u64, found: u64 },
}

/// What was copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationSummary {
    pub requests: u64,
    /// Requests with a deadline (pending, active, retrying): the timer's work.
    pub with_deadline: u64,
    pub outbox: u64,
    pub audit_events: u64,
    /// The chain head on the destination, verified.
    pub audit_head: String,
}

impl fmt::Display for MigrationSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "copied {} requests ({} with a deadline), {} undelivered Slack messages and {} audit events; the audit chain verifies on PostgreSQL (head {})",
            self.requests,
            self.with_deadline,
            self.outbox,
            self.audit_events,
            if self.audit_head.is_empty() { "empty" } else { &self.audit_head },
        )
    }
}

/// Copies the stopped sled install in `dir` into the empty PostgreSQL
/// database at `url` (migrations applied first) and verifies the audit chain
/// there.
pub async fn sled_to_postgres(
    dir: &Path,
    url: &str,
) -> Result<MigrationSummary, MigrateStoreError> {
    let source = Store::open_existing(dir).map_err(MigrateStoreError::Source)?;
    let mut check = ChainCheck::default();
    loop {
        let page = source
            .audit_range(check.last_seq(), AUDIT_PAGE)
            .map_err(MigrateStoreError::Source)?;
        if page.is_empty() {
            break;
        }
        for event in &page {
            check
                .push(event)
                .map_err(MigrateStoreError::SourceChainBroken)?;
        }
    }
    let dest = PgEngine::connect(url)
        .await
        .map_err(MigrateStoreError::Destination)?;
    if !dest
        .is_empty()
        .await
        .map_err(MigrateStoreError::Destination)?
    {
        return Err(MigrateStoreError::NotEmpty(mask_url(url)));
    }
    let src = |e: StoreError| MigrateStoreError::Source(e);
    let dst = |e: StoreError| MigrateStoreError::Destination(e);

    let mut summary = MigrationSummary {
        requests: 0,
        with_deadline: 0,
        outbox: 0,
        audit_events: 0,
        audit_head: String::new(),
    };
    for item in source.requests.iter() {
        let (k, v) = item.map_err(|e| src(e.into()))?;
        let req: AccessRequest = decode(&k, &v).map_err(src)?;
        dest.copy_request(&req).await.map_err(dst)?;
        summary.requests += 1;
        summary.with_deadline += u64::from(req.next_due().is_some());
    }
    for item in source.outbox.iter() {
        let (k, v) = item.map_err(|e| src(e.into()))?;
        let seq = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
        let entry: OutboxItem = decode(&k, &v).map_err(src)?;
        dest.copy_outbox(seq, &entry).await.map_err(dst)?;
        summary.outbox += 1;
    }
    dest.reset_outbox_sequence().await.map_err(dst)?;
    let mut after = 0;
    loop {
        let page: Vec<AuditEvent> = source.audit_range(after, AUDIT_PAGE).map_err(src)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        dest.copy_audit(&page).await.map_err(dst)?;
        summary.audit_events += page.len() as u64;
    }

    let engine: &dyn StoreEngine = &dest;
    match engine.verify_audit().await.map_err(dst)? {
        Ok(n) if n == summary.audit_events => {}
        Ok(found) => {
            return Err(MigrateStoreError::CountMismatch {
                copied: summary.audit_events,
                found,
            })
        }
        Err(seq) => return Err(MigrateStoreError::DestinationChainBroken(seq)),
    }
    summary.audit_head = engine.audit_head().await.map_err(dst)?.1;
    Ok(summary)
}
