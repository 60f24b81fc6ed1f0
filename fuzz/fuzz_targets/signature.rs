//! The Slack signature check: arbitrary headers, bodies and clocks give an
//! answer, never a panic; a request is accepted only with the exact
//! signature; and what `sign` makes, `verify_at` accepts, for that body only.

#![no_main]

use accessbot::config::Secret;
use accessbot::slack::signature::{sign, verify_at, SignatureError, MAX_SKEW_SECS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    |input: (String, Option<String>, Option<String>, &[u8], i64, i16)| {
        let (secret, timestamp, signature, body, now, skew) = input;
        let secret = Secret::new(secret);

        // Arbitrary headers: refused for the first thing wrong, or accepted only
        // with exactly the signature of this secret, timestamp and body.
        match verify_at(
            &secret,
            timestamp.as_deref(),
            signature.as_deref(),
            body,
            now,
        ) {
            Ok(()) => {
                let ts = timestamp.as_deref().unwrap().trim();
                let expected = sign(&secret, ts, body);
                assert_eq!(signature.unwrap().to_ascii_lowercase(), expected);
                let ts: i64 = ts.parse().unwrap();
                assert!((i128::from(now) - i128::from(ts)).abs() <= i128::from(MAX_SKEW_SECS));
            }
            Err(err) => {
                let message = err.to_string();
                assert!(!message.is_empty());
                // Refusals carry no secret material: never the expected signature.
                if let Some(ts) = &timestamp {
                    let expected = sign(&secret, ts.trim(), body);
                    assert!(!message.contains(&expected[3..]), "{message}");
                }
                match (&timestamp, &signature) {
                    (None, _) => assert_eq!(err, SignatureError::MissingTimestamp),
                    (_, None) => assert_eq!(err, SignatureError::MissingSignature),
                    _ => assert!(!matches!(
                        err,
                        SignatureError::MissingTimestamp | SignatureError::MissingSignature
                    )),
                }
            }
        }

        // What sign makes verifies within the window and fails outside it.
        let ts = now.clamp(0, 1 << 40);
        let ts_text = ts.to_string();
        let good = sign(&secret, &ts_text, body);
        let skew = i64::from(skew);
        let got = verify_at(&secret, Some(&ts_text), Some(&good), body, ts + skew);
        if skew.abs() <= MAX_SKEW_SECS {
            assert_eq!(got, Ok(()));
        } else {
            assert_eq!(got, Err(SignatureError::Stale(skew)));
        }

        // Any other body is refused.
        if let Some((first, rest)) = body.split_first() {
            let mut changed = vec![first.wrapping_add(1)];
            changed.extend_from_slice(rest);
            assert_eq!(
                verify_at(&secret, Some(&ts_text), Some(&good), &changed, ts),
                Err(SignatureError::Mismatch)
            );
            assert_eq!(
                verify_at(&secret, Some(&ts_text), Some(&good), rest, ts),
                Err(SignatureError::Mismatch)
            );
        }
    }
);
