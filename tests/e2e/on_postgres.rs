//! The end-to-end suite on the postgres store. `on_sled.rs` and
//! `on_postgres.rs` include the same feature files; the support module
//! reads which engine to start from the test's path.

#[path = "audit_cli.rs"]
mod audit_cli;
#[path = "core.rs"]
mod core;
#[path = "faults.rs"]
mod faults;
#[path = "hardening.rs"]
mod hardening;
#[path = "limits.rs"]
mod limits;
#[path = "metrics.rs"]
mod metrics;
#[path = "operator.rs"]
mod operator;
#[path = "policies.rs"]
mod policies;
#[path = "postgres_store.rs"]
mod postgres_store;
#[path = "provisioning.rs"]
mod provisioning;
#[path = "retention.rs"]
mod retention;
#[path = "wording.rs"]
mod wording;
