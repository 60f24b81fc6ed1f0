//! Prometheus metrics (`GET /metrics`), with the prometheus-client crate.
//!
//! Two kinds of values:
//! - **Events this process saw** (counters and histograms) live in one
//!   process-wide [`Metrics`] ([`metrics()`]), so any module records with
//!   one call and no plumbing: requests by runbook and outcome, time to
//!   decision, revoke lag, the ack latency of Slack deliveries (any
//!   transport calls [`observe_ack`]), Slack API errors, provider errors.
//!   With several replicas each counts its own; Prometheus sums them.
//! - **State** (active grants, pending requests, the outbox backlog per
//!   destination, failing revokes) is read from the store at scrape time
//!   ([`Scrape`]), so every replica reports the same, right numbers.
//!
//! Adding a metric: a field in [`Metrics`], one `registry.register(…)`
//! line in [`Metrics::new`], and a call where the thing happens. A state
//! gauge instead: one more [`Scrape::gauge`] in the `/metrics` handler.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::Utc;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::request::{AccessRequest, Status};

/// Labels as (name, value) pairs, in a fixed order.
type Labels<const N: usize> = [(&'static str, String); N];
type HistogramFamily<const N: usize> = Family<Labels<N>, Histogram, fn() -> Histogram>;

/// The content type of the answer (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every counter and histogram of this process.
pub struct Metrics {
    /// `accessbot_request_outcomes_total{runbook, outcome}`: requests made
    /// (`requested`) and what became of them (`approved`, `auto_approved`,
    /// `break_glass`, `denied`, `expired`, `granted`, `revoked`, `failed`,
    /// `needs_attention`, `withdrawn`).
    pub request_outcomes: Family<Labels<2>, Counter>,
    /// `accessbot_time_to_decision_seconds{runbook}`: request to approval or denial.
    pub time_to_decision: HistogramFamily<1>,
    /// `accessbot_revoke_lag_seconds`: the revoke recorded minus the expiry.
    pub revoke_lag: Histogram,
    /// `accessbot_ack_seconds{transport, kind}`: a Slack delivery received to answered.
    pub ack_latency: HistogramFamily<2>,
    /// `accessbot_slack_api_errors_total{method, error}`.
    pub slack_api_errors: Family<Labels<2>, Counter>,
    /// `accessbot_provider_errors_total{provider, action}`.
    pub provider_errors: Family<Labels<2>, Counter>,
    registry: Registry,
}

fn decision_buckets() -> Histogram {
    // 1 s to about 18 hours.
    Histogram::new(exponential_buckets(1.0, 4.0, 9))
}

fn ack_buckets() -> Histogram {
    // 5 ms to about 10 s; Slack gives up after 3 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            request_outcomes: Family::default(),
            time_to_decision: Family::new_with_constructor(decision_buckets),
            // 100 ms to about 7 minutes.
            revoke_lag: Histogram::new(exponential_buckets(0.1, 2.0, 13)),
            ack_latency: Family::new_with_constructor(ack_buckets),
            slack_api_errors: Family::default(),
            provider_errors: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut m.registry;
        r.register(
            "accessbot_request_outcomes",
            "Requests made and what became of them, by runbook and outcome",
            m.request_outcomes.clone(),
        );
        r.register(
            "accessbot_time_to_decision_seconds",
            "Time from a request to its approval or denial",
            m.time_to_decision.clone(),
        );
        r.register(
            "accessbot_revoke_lag_seconds",
            "Time from a grant's expiry to its recorded revoke",
            m.revoke_lag.clone(),
        );
        r.register(
            "accessbot_ack_seconds",
            "Time from receiving a Slack delivery to answering it, by transport and kind",
            m.ack_latency.clone(),
        );
        r.register(
            "accessbot_slack_api_errors",
            "Slack Web API calls that failed, by method and error",
            m.slack_api_errors.clone(),
        );
        r.register(
            "accessbot_provider_errors",
            "Grant provider runs that failed, by provider and action",
            m.provider_errors.clone(),
        );
        m
    }
}

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// A Slack delivery was answered `elapsed` after it arrived. `transport`
/// is `http` or `socket_mode`; `kind` is `commands`, `interactions` or `events`.
pub fn observe_ack(transport: &str, kind: &str, elapsed: Duration) {
    metrics()
        .ack_latency
        .get_or_create(&[
            ("transport", transport.to_string()),
            ("kind", kind.to_string()),
        ])
        .observe(elapsed.as_secs_f64());
}

/// A Slack Web API call failed: `error` is Slack's code (`not_in_channel`),
/// `ratelimited`, `http_<status>` or `unreachable`.
pub fn slack_api_error(method: &str, error: &str) {
    metrics()
        .slack_api_errors
        .get_or_create(&[("method", method.to_string()), ("error", error.to_string())])
        .inc();
}

/// A grant provider's `action` (`grant`, `revoke`) failed.
pub fn provider_error(provider: &str, action: &str) {
    metrics()
        .provider_errors
        .get_or_create(&[
            ("provider", provider.to_string()),
            ("action", action.to_string()),
        ])
        .inc();
}

/// One request reached `outcome` (see [`Metrics::request_outcomes`]).
pub fn request_outcome(runbook: &str, outcome: &str) {
    metrics()
        .request_outcomes
        .get_or_create(&[
            ("runbook", runbook.to_string()),
            ("outcome", outcome.to_string()),
        ])
        .inc();
}

/// A new request was stored: counts it, and how it was let through when
/// it needed no approver.
pub fn request_created(req: &AccessRequest) {
    request_outcome(&req.runbook_id, "requested");
    if req.break_glass {
        request_outcome(&req.runbook_id, "break_glass");
    } else if req.auto_rule.is_some() {
        request_outcome(&req.runbook_id, "auto_approved");
    }
}

/// A stored request moved from `before` to `req.status`: counts the
/// outcome, and observes the time to decision and the revoke lag.
pub fn request_moved(before: Status, req: &AccessRequest) {
    if before == req.status {
        return;
    }
    let now = Utc::now();
    // A requester who withdraws a pending request ends it as denied by
    // themselves: that is no one's decision.
    let withdrawn =
        req.status == Status::Denied && req.decided_by.as_deref() == Some(&req.requester);
    let outcome = match req.status {
        Status::Granting if before == Status::Pending => "approved",
        Status::Denied if withdrawn => "withdrawn",
        Status::Denied => "denied",
        Status::Expired => "expired",
        Status::Active => "granted",
        Status::Revoked => "revoked",
        Status::Failed => "failed",
        Status::NeedsAttention => "needs_attention",
        _ => return,
    };
    request_outcome(&req.runbook_id, outcome);
    if before == Status::Pending
        && !withdrawn
        && matches!(req.status, Status::Granting | Status::Denied)
    {
        let waited = (now - req.created_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics()
            .time_to_decision
            .get_or_create(&[("runbook", req.runbook_id.clone())])
            .observe(waited);
    }
    if req.status == Status::Revoked {
        // Only a revoke on time has a lag: one that ends access early
        // (released, revoked by an approver) comes before the expiry.
        if let Some(expires) = req.expires_at {
            let on_time = req.ended_at.is_none_or(|e| e >= expires);
            if on_time && now >= expires {
                let lag = (now - expires).num_milliseconds() as f64 / 1000.0;
                metrics().revoke_lag.observe(lag);
            }
        }
    }
}

/// The values read at scrape time: the existing counters kept elsewhere
/// (ingress, outbox) and the state gauges read from the store.
#[derive(Default)]
pub struct Scrape {
    registry: Registry,
}

impl Scrape {
    /// A counter kept elsewhere, as its current total. `name` without `_total`.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        self.registry.register(name, help, c);
    }

    /// A gauge with no labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        let g = Gauge::<i64>::default();
        g.set(value as i64);
        self.registry.register(name, help, g);
    }

    /// A gauge with one label, one sample per `(label value, value)`.
    pub fn gauge_by(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        values: impl IntoIterator<Item = (String, u64)>,
    ) {
        let family = Family::<Labels<1>, Gauge>::default();
        for (key, v) in values {
            family.get_or_create(&[(label, key)]).set(v as i64);
        }
        self.registry.register(name, help, family);
    }

    /// The `/metrics` answer: this process's metrics, then these values.
    pub fn render(self) -> String {
        let mut out = String::new();
        encode_registry(&mut out, &metrics().registry).expect("writing to a String");
        encode_registry(&mut out, &self.registry).expect("writing to a String");
        encode_eof(&mut out).expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_renders_counters_gauges_and_labels_in_text_format() {
        let mut s = Scrape::default();
        s.counter("accessbot_test_things", "Things.", 3);
        s.gauge("accessbot_test_level", "Level.", 7);
        s.gauge_by(
            "accessbot_test_backlog",
            "Backlog.",
            "channel",
            [("C1".to_string(), 2)],
        );
        provider_error("command", "revoke");
        let text = s.render();
        assert!(text.contains("\naccessbot_test_things_total 3\n"), "{text}");
        assert!(text.contains("\naccessbot_test_level 7\n"), "{text}");
        assert!(
            text.contains("accessbot_test_backlog{channel=\"C1\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "accessbot_provider_errors_total{provider=\"command\",action=\"revoke\"}"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
