//! How long to wait before trying again: the lifecycle's tunables
//! ([`Timing`]) and the exponential [`backoff`] that failed grants, revokes
//! and Slack deliveries share.

use std::time::Duration;

/// Tunables of the lifecycle.
#[derive(Debug, Clone)]
pub struct Timing {
    pub expiry_warning: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How long a replica holds claimed due work or a provider run before
    /// another replica may take it over (it is presumed dead by then).
    pub lease: Duration,
}

/// Retry interval after `attempts` failures: base, 2×base, 4×base … up to max.
pub fn backoff(t: &Timing, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
    t.retry_base.saturating_mul(factor).min(t.retry_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let t = Timing {
            expiry_warning: Duration::from_secs(600),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            lease: Duration::from_secs(60),
        };
        let got: Vec<u64> = (1..=6).map(|a| backoff(&t, a).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(&t, 1000).as_secs(), 10);
    }
}
