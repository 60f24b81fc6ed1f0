//! The end-to-end suite on the sled store. `on_sled.rs` and
//! `on_postgres.rs` include the same feature files; the support module
//! reads which engine to start from the test's path.

#[path = "audit_channel.rs"]
mod audit_channel;
#[path = "audit_cli.rs"]
mod audit_cli;
#[path = "cancel.rs"]
mod cancel;
#[path = "core.rs"]
mod core;
#[path = "directory.rs"]
mod directory;
#[path = "faults.rs"]
mod faults;
#[path = "feedback.rs"]
mod feedback;
#[path = "hardening.rs"]
mod hardening;
#[path = "home.rs"]
mod home;
#[path = "identity.rs"]
mod identity;
#[path = "inputs.rs"]
mod inputs;
#[path = "limits.rs"]
mod limits;
#[path = "metrics.rs"]
mod metrics;
#[path = "operator.rs"]
mod operator;
#[path = "overlap.rs"]
mod overlap;
#[path = "policies.rs"]
mod policies;
#[path = "provisioning.rs"]
mod provisioning;
#[path = "reconcile.rs"]
mod reconcile;
#[path = "report.rs"]
mod report;
#[path = "retention.rs"]
mod retention;
#[path = "scheduled.rs"]
mod scheduled;
#[path = "sled_store.rs"]
mod sled_store;
#[path = "socket_mode.rs"]
mod socket_mode;
#[path = "verify.rs"]
mod verify;
#[path = "wording.rs"]
mod wording;
