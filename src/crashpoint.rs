//! Named points where a test can make the process die as if killed with
//! SIGKILL, to prove that every state survives a crash there.
//!
//! Set `ACCESSBOT_CRASH_AT=<point>` (e.g. `after_grant`); when the process
//! reaches that point it aborts at once, without flushing or cleaning up.
//! Unset, a crash point costs one cached comparison.

use std::sync::OnceLock;

/// The crash points, in the order a request meets them.
pub const POINTS: &[&str] = &[
    "after_approve",
    "before_grant",
    "after_grant",
    "after_expire",
    "before_revoke",
    "after_revoke",
];

fn target() -> Option<&'static str> {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    TARGET
        .get_or_init(|| std::env::var("ACCESSBOT_CRASH_AT").ok())
        .as_deref()
}

pub fn hit(point: &str) {
    debug_assert!(POINTS.contains(&point), "unknown crash point {point}");
    if target() == Some(point) {
        eprintln!(
            "accessbot: crash point {point} reached; aborting as asked by ACCESSBOT_CRASH_AT"
        );
        std::process::abort();
    }
}
