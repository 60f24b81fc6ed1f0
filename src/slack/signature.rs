//! Slack request signing: HMAC-SHA256 of `v0:{timestamp}:{raw body}` with
//! the app's signing secret, compared in constant time, with a 5-minute
//! window in both directions (as python-slack-sdk does).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// Largest accepted clock difference between Slack and us, in seconds.
pub const MAX_SKEW_SECS: i64 = 300;

/// Why a request was refused. None of these carries the secret or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Slack-Request-Timestamp header")]
    MissingTimestamp,
    #[error("missing X-Slack-Signature header")]
    MissingSignature,
    #[error("X-Slack-Request-Timestamp is not a Unix time")]
    BadTimestamp,
    #[error("request timestamp is {0}s away from now (more than 5 minutes)")]
    Stale(i64),
    #[error("signature does not match")]
    Mismatch,
}

/// Verifies a request as of `now` (Unix seconds); the clock is a parameter so tests can move it.
pub fn verify_at(
    secret: &Secret,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?;
    let signature = signature.ok_or(SignatureError::MissingSignature)?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let skew = now.saturating_sub(ts);
    if skew.saturating_abs() > MAX_SKEW_SECS {
        return Err(SignatureError::Stale(skew));
    }
    let given = signature
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Mismatch)?;
    mac(secret, timestamp.trim(), body)
        .verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)
}

/// The `X-Slack-Signature` value Slack would send; used by tests and tools.
pub fn sign(secret: &Secret, timestamp: &str, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

fn mac(secret: &Secret, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn check(
        ts: Option<&str>,
        sig: Option<&str>,
        body: &str,
        now: i64,
    ) -> Result<(), SignatureError> {
        verify_at(&Secret::new(SECRET), ts, sig, body.as_bytes(), now)
    }

    #[test]
    fn slack_documentation_vector() {
        assert_eq!(sign(&Secret::new(SECRET), TS, BODY.as_bytes()), SIG);
        assert_eq!(check(Some(TS), Some(SIG), BODY, 1531420618), Ok(()));
    }

    #[test]
    fn refusals() {
        let now = 1531420618;
        assert_eq!(
            check(None, Some(SIG), BODY, now),
            Err(SignatureError::MissingTimestamp)
        );
        assert_eq!(
            check(Some(TS), None, BODY, now),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            check(Some("abc"), Some(SIG), BODY, now),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            check(Some(TS), Some(SIG), BODY, now + 301),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            check(Some(TS), Some(SIG), BODY, now - 301),
            Err(SignatureError::Stale(-301))
        );
        assert_eq!(
            check(Some(TS), Some(SIG), "x", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(Some(TS), Some("v0=zz"), BODY, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(Some(TS), Some(&SIG.replace("v0", "v1")), BODY, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(check(Some(TS), Some(SIG), BODY, now + 300), Ok(()));
    }
}
