//! Retention: how long finished requests and audit events are kept.
//!
//! `ACCESSBOT_RETENTION` (e.g. `400d`; off by default) removes finished
//! requests (revoked, denied, expired, failed) that ended longer ago than
//! that from the request store. `ACCESSBOT_AUDIT_RETENTION` prunes the
//! audit log's oldest events, never silently: the pruned range is replaced
//! by a checkpoint event carrying the hash of the last pruned event
//! ([`crate::audit::AuditEvent::checkpoint`]), so `accessbot audit verify`
//! still verifies what remains and says where it starts; each prune is
//! logged. Open requests are never removed. The pass runs periodically on
//! every replica; the store's writes are safe to run on several at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::store::StoreEngine;

/// Requests removed per store call, so one pass never holds much at once.
const REQUEST_BATCH: usize = 500;
/// Audit events replaced per checkpoint write.
const AUDIT_BATCH: usize = 1000;
/// The longest retention people may write: a hundred years.
const MAX_DAYS: u64 = 36_500;

/// What is kept, and for how long.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub requests: Option<Duration>,
    pub audit: Option<Duration>,
}

/// A retention setting: `off` (or `0`) for none, a duration as
/// [`crate::duration::parse_duration`] reads it (`12h`, `30d`), or a number
/// of days or weeks past its one-year limit (`400d`, `400 days`, `60w`).
pub fn parse_retention(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("off") || t == "0" {
        return Ok(None);
    }
    if let Ok(d) = crate::duration::parse_duration(t) {
        return Ok(Some(d));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let days_per = match unit.trim().to_ascii_lowercase().as_str() {
        "d" | "day" | "days" => 1,
        "w" | "week" | "weeks" => 7,
        _ => 0,
    };
    match n.parse::<u64>() {
        Ok(n) if days_per > 0 && n > 0 && n * days_per <= MAX_DAYS => {
            Ok(Some(Duration::from_secs(n * days_per * 86_400)))
        }
        _ => Err(format!(
            "`{text}` is not a retention period; write e.g. 400d, 60w or 12h, or off"
        )),
    }
}

impl Retention {
    pub fn is_off(&self) -> bool {
        self.requests.is_none() && self.audit.is_none()
    }

    /// How often a pass runs: a quarter of the shortest period, between a
    /// second and an hour.
    pub fn interval(&self) -> Duration {
        let shortest = [self.requests, self.audit]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_secs(3600));
        (shortest / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600))
    }
}

/// Runs a retention pass every [`Retention::interval`] until `cancel`.
pub async fn run(store: Arc<dyn StoreEngine>, retention: Retention, cancel: CancellationToken) {
    if retention.is_off() {
        return;
    }
    tracing::info!(
        requests = ?retention.requests,
        audit = ?retention.audit,
        "retention is on: finished requests and audit events past their period are removed"
    );
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(retention.interval()) => {}
        }
        if let Err(e) = pass(store.as_ref(), &retention).await {
            tracing::warn!(error = %e, "retention pass failed; it runs again at the next interval");
        }
    }
}

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassOutcome {
    pub requests_removed: u64,
    /// The checkpoint's sequence number when audit events were pruned: the
    /// log now starts after it.
    pub audit_pruned_through: Option<u64>,
}

/// One retention pass: finished requests past `retention.requests`, then
/// audit events past `retention.audit`.
pub async fn pass(
    store: &dyn StoreEngine,
    retention: &Retention,
) -> Result<PassOutcome, crate::store::StoreError> {
    let mut outcome = PassOutcome::default();
    if let Some(keep) = retention.requests {
        let before = Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
        loop {
            let n = store.prune_finished(before, REQUEST_BATCH).await?;
            outcome.requests_removed += n;
            if (n as usize) < REQUEST_BATCH {
                break;
            }
        }
        if outcome.requests_removed > 0 {
            tracing::info!(
                before = %before,
                "retention removed {} finished requests that ended before the retention period (ACCESSBOT_RETENTION)",
                outcome.requests_removed
            );
        }
    }
    if let Some(keep) = retention.audit {
        let before = Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
        let why = format!(
            "ACCESSBOT_AUDIT_RETENTION={}",
            crate::duration::format_duration(keep)
        );
        while let Some(checkpoint) = store.prune_audit(before, AUDIT_BATCH, &why).await? {
            tracing::warn!(
                through = checkpoint.seq,
                before = %before,
                "audit retention pruned the oldest audit events: events up to {} are replaced by a checkpoint carrying the last one's hash; `accessbot audit verify` verifies from event {}",
                checkpoint.seq,
                checkpoint.seq + 1
            );
            outcome.audit_pruned_through = Some(checkpoint.seq);
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_periods_as_people_write_them() {
        let day = 86_400;
        for (text, want) in [
            ("400d", Some(400 * day)),
            ("400 days", Some(400 * day)),
            ("60w", Some(60 * 7 * day)),
            ("30d", Some(30 * day)),
            ("12h", Some(12 * 3600)),
            ("2s", Some(2)),
            ("off", None),
            ("0", None),
        ] {
            assert_eq!(
                parse_retention(text).unwrap(),
                want.map(Duration::from_secs),
                "{text}"
            );
        }
        for bad in ["forever", "-1d", "40000000d", "d", "12 parsecs"] {
            let err = parse_retention(bad).unwrap_err();
            assert!(err.contains("400d"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_settings_are_read_and_a_bad_one_is_named() {
        use crate::config::Config;
        use std::collections::BTreeMap;
        use std::path::Path;
        let env = |extra: &[(&str, &str)]| -> BTreeMap<String, String> {
            [
                ("SLACK_SIGNING_SECRET", "sss"),
                ("SLACK_BOT_TOKEN", "xoxb-1"),
                ("ACCESSBOT_AUDIT_CHANNEL", "C0AUDIT"),
            ]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        };
        let none = Path::new("/dev/null");
        let c = Config::load_with(Some(none), &env(&[])).unwrap();
        assert_eq!((c.retention, c.audit_retention), (None, None));
        assert!(c.metrics_token.is_none());
        let c = Config::load_with(
            Some(none),
            &env(&[
                ("ACCESSBOT_RETENTION", "400d"),
                ("ACCESSBOT_AUDIT_RETENTION", "off"),
                ("ACCESSBOT_METRICS_TOKEN", "0123456789abcdef0123456789"),
            ]),
        )
        .unwrap();
        assert_eq!(c.retention, Some(Duration::from_secs(400 * 86_400)));
        assert_eq!(c.audit_retention, None);
        assert_eq!(
            c.metrics_token.as_ref().map(|t| t.expose()),
            Some("0123456789abcdef0123456789")
        );
        let e = Config::load_with(
            Some(none),
            &env(&[
                ("ACCESSBOT_AUDIT_RETENTION", "forever"),
                ("ACCESSBOT_METRICS_TOKEN", "short-secret"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ACCESSBOT_AUDIT_RETENTION") && e.contains("400d"),
            "{e}"
        );
        assert!(
            e.contains("ACCESSBOT_METRICS_TOKEN") && e.contains("at least 24"),
            "{e}"
        );
        assert!(!e.contains("short-secret"), "{e}");
    }

    #[test]
    fn a_pass_runs_four_times_per_shortest_period_within_bounds() {
        let r = Retention {
            requests: Some(Duration::from_secs(400 * 86_400)),
            audit: Some(Duration::from_secs(40)),
        };
        assert_eq!(r.interval(), Duration::from_secs(10));
        let tiny = Retention {
            requests: Some(Duration::from_secs(2)),
            audit: None,
        };
        assert_eq!(tiny.interval(), Duration::from_secs(1));
        assert!(Retention::default().is_off());
    }
}
