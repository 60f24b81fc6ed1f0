//! Property tests for everything that reads input from outside: the Slack
//! signature check, the slash-command form, interactivity and Events API
//! payloads, the `/access` command text, durations and runbook files.
//!
//! Each property either says "any input gives an answer, never a panic" (and
//! that the answer is readable), or states what the answer must be for a
//! family of generated inputs. The cargo-fuzz targets in `fuzz/` check the
//! same invariants with coverage guidance on nightly; these run on stable in
//! CI. Case counts are modest so the file runs in seconds; set
//! `PROPTEST_CASES=20000` to search harder.
//!
//! Failures are not persisted to a regressions file: when a property fails,
//! add the shrunk input proptest prints as an example test at the bottom.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use accessbot::command::{self, Command, CommandError, MAX_TEXT};
use accessbot::config::Secret;
use accessbot::duration::{format_duration, parse_duration, DurationError, MAX_DURATION};
use accessbot::grant::{CommandSpec, SlackUsergroupSpec, WebhookSpec};
use accessbot::runbook::{load_dir, parse_runbook, Approver, Principal, Problem, Runbook};
use accessbot::slack::payload::{
    parse_command, parse_event, parse_interaction, CommandBody, EventBody, Interaction,
    PayloadError,
};
use accessbot::slack::signature::{sign, verify_at, SignatureError, MAX_SKEW_SECS};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Shared strategies
// ---------------------------------------------------------------------------

/// `cases` cases, or `PROPTEST_CASES` when set; no regressions file.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Characters people and attackers actually send: separators Slack may use,
/// control characters, bidi overrides, combining marks, emoji, and any char.
fn odd_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        3 => prop::char::range('a', 'z'),
        1 => prop::char::range('0', '9'),
        2 => select(vec![
            ' ', '\t', '\n', '\r', '\0', '\u{1b}', '\u{7f}', '\u{85}', '\u{a0}', '\u{2003}',
            '\u{3000}', '\u{2028}', '\u{200b}', '\u{200d}', '\u{202e}', '\u{feff}', '\u{301}',
            'é', 'ß', 'İ', 'K', 'ǅ', '🦀', '👩', '\u{10ffff}', '%', '&', '=', '+', '"', '\\',
            '`', '*', '<', '>', '[', ']', '{', '}', '#', '\'',
        ]),
    ]
}

fn odd_text(max_chars: usize) -> impl Strategy<Value = String> {
    vec(odd_char(), 0..=max_chars).prop_map(|cs| cs.into_iter().collect())
}

/// Text with no whitespace or control characters: one word of a command.
fn word(max_chars: usize) -> impl Strategy<Value = String> {
    vec(word_char(), 1..=max_chars).prop_map(|cs| cs.into_iter().collect())
}

/// An odd character that is not a separator (mapped rather than filtered,
/// so large case counts do not run out of rejects).
fn word_char() -> impl Strategy<Value = char> {
    odd_char().prop_map(|c| {
        if c.is_whitespace() || c.is_control() {
            'w'
        } else {
            c
        }
    })
}

/// What `/access` treats as a word separator: whitespace and control characters.
fn separator() -> impl Strategy<Value = String> {
    vec(
        select(vec![
            ' ', ' ', ' ', '\t', '\n', '\r', '\0', '\u{1b}', '\u{a0}', '\u{2003}', '\u{3000}',
            '\u{85}', '\u{2028}',
        ]),
        1..3,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

/// Randomly upper-cases ASCII letters.
fn mixed_case(text: &'static str) -> impl Strategy<Value = String> {
    vec(any::<bool>(), text.len()).prop_map(move |upper| {
        text.chars()
            .zip(upper)
            .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

const UNITS: [(char, u64); 4] = [('s', 1), ('m', 60), ('h', 3600), ('d', 86_400)];

/// A duration as people write it (`90s`, `4H`, `007m`) and its value; always valid.
fn valid_duration() -> impl Strategy<Value = (String, Duration)> {
    (select(UNITS.to_vec()), any::<bool>(), 0usize..3).prop_flat_map(
        |((unit, size), upper, zeros)| {
            (1..=MAX_DURATION.as_secs() / size).prop_map(move |n| {
                let unit = if upper {
                    unit.to_ascii_uppercase()
                } else {
                    unit
                };
                let text = format!("{}{n}{unit}", "0".repeat(zeros));
                (text, Duration::from_secs(n * size))
            })
        },
    )
}

/// A small valid duration, for runbook fields compared with one another.
fn short_duration() -> impl Strategy<Value = (String, Duration)> {
    (1u64..=48, select(vec![('m', 60u64), ('h', 3600)]))
        .prop_map(|(n, (u, size))| (format!("{n}{u}"), Duration::from_secs(n * size)))
}

fn display_is_clear(message: &str, max_chars: usize) -> Result<(), TestCaseError> {
    prop_assert!(!message.trim().is_empty(), "empty error message");
    prop_assert!(
        message.chars().count() <= max_chars,
        "error message of {} chars: {message:?}",
        message.chars().count()
    );
    prop_assert!(
        !message.chars().any(char::is_control),
        "control character in error message {message:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Slack signatures
// ---------------------------------------------------------------------------

fn secret() -> impl Strategy<Value = Secret> {
    prop_oneof!["[a-f0-9]{32}", odd_text(64),].prop_map(Secret::new)
}

/// A Unix time and a `now` within the accepted window of it.
fn fresh_time() -> impl Strategy<Value = (i64, i64)> {
    (0i64..4_000_000_000, -MAX_SKEW_SECS..=MAX_SKEW_SECS).prop_map(|(ts, skew)| (ts, ts + skew))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Some header value that might arrive as X-Slack-Signature.
fn signature_header() -> impl Strategy<Value = String> {
    prop_oneof![
        odd_text(80),
        "v0=[0-9a-fA-F]{0,70}",
        "v[0-9]=[0-9a-f]{64}",
        "[0-9a-f]{64}",
    ]
}

/// Some header value that might arrive as X-Slack-Request-Timestamp.
fn timestamp_header() -> impl Strategy<Value = String> {
    prop_oneof![
        odd_text(24),
        any::<i64>().prop_map(|t| t.to_string()),
        "[ \t]{0,2}[+-]?[0-9]{1,25}[ \t\n]{0,2}",
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn signed_requests_verify_within_the_window(
        secret in secret(),
        (ts, now) in fresh_time(),
        body in vec(any::<u8>(), 0..2048),
        pad in "[ \t]{0,2}",
    ) {
        let timestamp = ts.to_string();
        let signature = sign(&secret, &timestamp, &body);
        prop_assert_eq!(
            verify_at(&secret, Some(&timestamp), Some(&signature), &body, now),
            Ok(())
        );
        // Header values may carry surrounding whitespace; the signed value is the trimmed one.
        let padded = format!("{pad}{timestamp}{pad}");
        prop_assert_eq!(
            verify_at(&secret, Some(&padded), Some(&signature), &body, now),
            Ok(())
        );
    }

    #[test]
    fn any_changed_body_byte_is_refused(
        secret in secret(),
        (ts, now) in fresh_time(),
        body in vec(any::<u8>(), 1..1024),
        at in any::<Index>(),
        flip in 1u8..=255,
    ) {
        let timestamp = ts.to_string();
        let signature = sign(&secret, &timestamp, &body);
        let mut changed = body.clone();
        changed[at.index(body.len())] ^= flip;
        prop_assert_eq!(
            verify_at(&secret, Some(&timestamp), Some(&signature), &changed, now),
            Err(SignatureError::Mismatch)
        );
        let mut longer = body.clone();
        longer.push(flip);
        prop_assert_eq!(
            verify_at(&secret, Some(&timestamp), Some(&signature), &longer, now),
            Err(SignatureError::Mismatch)
        );
        prop_assert_eq!(
            verify_at(&secret, Some(&timestamp), Some(&signature), &body[..body.len() - 1], now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn another_timestamp_in_the_window_is_refused(
        secret in secret(),
        (ts, now) in fresh_time(),
        other_skew in -MAX_SKEW_SECS..=MAX_SKEW_SECS,
        body in vec(any::<u8>(), 0..256),
    ) {
        let other = now + other_skew;
        prop_assume!(other != ts);
        let signature = sign(&secret, &ts.to_string(), &body);
        prop_assert_eq!(
            verify_at(&secret, Some(&other.to_string()), Some(&signature), &body, now),
            Err(SignatureError::Mismatch)
        );
        // The same time written differently is a different signed string.
        prop_assert_eq!(
            verify_at(&secret, Some(&format!("0{ts}")), Some(&signature), &body, now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_mutated_signature_is_refused(
        secret in secret(),
        (ts, now) in fresh_time(),
        body in vec(any::<u8>(), 0..256),
        at in any::<Index>(),
        nibble in 1u8..16,
        cut in 1usize..64,
    ) {
        let timestamp = ts.to_string();
        let good = sign(&secret, &timestamp, &body);
        let verify = |sig: &str| verify_at(&secret, Some(&timestamp), Some(sig), &body, now);

        // One hex digit changed to a different value.
        let mut bytes = good.clone().into_bytes();
        let i = 3 + at.index(bytes.len() - 3);
        let old = HEX.iter().position(|&h| h == bytes[i]).unwrap() as u8;
        bytes[i] = HEX[usize::from((old + nibble) % 16)];
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(verify(&changed), Err(SignatureError::Mismatch));

        // Truncated, extended, unprefixed, other version, and the other secret's.
        prop_assert_eq!(verify(&good[..good.len() - cut]), Err(SignatureError::Mismatch));
        prop_assert_eq!(verify(&format!("{good}00")), Err(SignatureError::Mismatch));
        prop_assert_eq!(verify(&good[3..]), Err(SignatureError::Mismatch));
        prop_assert_eq!(verify(&good.replacen("v0=", "v1=", 1)), Err(SignatureError::Mismatch));
        let other = Secret::new(format!("{}x", secret.expose()));
        prop_assert_eq!(
            verify_at(&other, Some(&timestamp), Some(&good), &body, now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn timestamps_outside_the_window_are_stale(
        secret in secret(),
        ts in any::<i64>(),
        now in any::<i64>(),
        body in vec(any::<u8>(), 0..64),
    ) {
        let timestamp = ts.to_string();
        let signature = sign(&secret, &timestamp, &body);
        let got = verify_at(&secret, Some(&timestamp), Some(&signature), &body, now);
        let skew = i128::from(now) - i128::from(ts);
        if skew.abs() > i128::from(MAX_SKEW_SECS) {
            let clamped = skew.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
            prop_assert_eq!(got, Err(SignatureError::Stale(clamped)));
        } else {
            prop_assert_eq!(got, Ok(()));
        }
    }

    #[test]
    fn stale_just_past_the_window(
        secret in secret(),
        ts in 0i64..4_000_000_000,
        past in 1i64..100_000,
        later in any::<bool>(),
    ) {
        let timestamp = ts.to_string();
        let signature = sign(&secret, &timestamp, b"x");
        let skew = if later { MAX_SKEW_SECS + past } else { -(MAX_SKEW_SECS + past) };
        prop_assert_eq!(
            verify_at(&secret, Some(&timestamp), Some(&signature), b"x", ts + skew),
            Err(SignatureError::Stale(skew))
        );
    }

    /// Arbitrary headers never panic, are refused for the first thing wrong
    /// with them, and no refusal shows the secret or the expected signature.
    #[test]
    fn arbitrary_headers_get_a_refusal_that_leaks_nothing(
        secret in "[A-Za-z0-9]{16,40}".prop_map(Secret::new),
        timestamp in proptest::option::weighted(0.9, timestamp_header()),
        signature in proptest::option::weighted(0.9, signature_header()),
        body in vec(any::<u8>(), 0..512),
        now in prop_oneof![any::<i64>(), 0i64..4_000_000_000],
    ) {
        let got = verify_at(&secret, timestamp.as_deref(), signature.as_deref(), &body, now);
        let parsed = timestamp.as_deref().map(|t| t.trim().parse::<i64>());
        let expected_kind = match (&timestamp, &signature, &parsed) {
            (None, _, _) => Some(SignatureError::MissingTimestamp),
            (_, None, _) => Some(SignatureError::MissingSignature),
            (_, _, Some(Err(_))) => Some(SignatureError::BadTimestamp),
            _ => None,
        };
        if let Some(kind) = expected_kind {
            prop_assert_eq!(got.clone(), Err(kind));
        }
        if let Err(err) = &got {
            let message = err.to_string();
            display_is_clear(&message, 200)?;
            prop_assert!(!message.contains(secret.expose()));
            if let Some(ts) = &timestamp {
                let expected = sign(&secret, ts.trim(), &body);
                prop_assert!(!message.contains(&expected[3..]));
            }
        } else {
            // Accepted only with the exact signature (hex is case-insensitive).
            let ts = timestamp.unwrap();
            let sig = signature.unwrap();
            prop_assert_eq!(sig.to_ascii_lowercase(), sign(&secret, ts.trim(), &body));
        }
    }
}

// ---------------------------------------------------------------------------
// Slack payloads: slash-command forms, interactivity, events
// ---------------------------------------------------------------------------

/// Form encoding as Slack (and `serde_urlencoded`) write it, or with every
/// byte percent-encoded; both must decode the same.
fn form_encode(fields: &[(String, String)], every_byte: bool) -> String {
    if !every_byte {
        return serde_urlencoded::to_string(fields).unwrap();
    }
    let enc = |s: &str| -> String { s.bytes().map(|b| format!("%{b:02X}")).collect() };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[derive(Debug, Clone)]
struct SlashForm {
    user_id: String,
    command: String,
    text: Option<String>,
    trigger_id: Option<String>,
    channel_id: Option<String>,
    team_id: Option<String>,
    extra: Vec<(String, String)>,
}

fn slash_form() -> impl Strategy<Value = SlashForm> {
    let opt = |n| proptest::option::of(odd_text(n));
    (
        prop_oneof!["U[A-Z0-9]{8,10}", odd_text(20)],
        prop_oneof![Just("/access".to_string()), odd_text(12)],
        opt(300),
        prop_oneof![
            "[0-9]{6,12}\\.[0-9]{6,12}\\.[0-9a-f]{32}".prop_map(Some),
            opt(40)
        ],
        opt(12),
        opt(12),
        vec(
            (
                select(vec![
                    "token",
                    "user_name",
                    "response_url",
                    "api_app_id",
                    "team_domain",
                ]),
                odd_text(40),
            ),
            0..4,
        ),
    )
        .prop_map(
            |(user_id, command, text, trigger_id, channel_id, team_id, extra)| SlashForm {
                user_id,
                command,
                text,
                trigger_id,
                channel_id,
                team_id,
                extra: extra
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<std::collections::BTreeMap<_, _>>()
                    .into_iter()
                    .collect(),
            },
        )
}

fn form_fields(f: &SlashForm) -> Vec<(String, String)> {
    let mut fields = vec![
        ("user_id".to_string(), f.user_id.clone()),
        ("command".to_string(), f.command.clone()),
    ];
    for (key, value) in [
        ("text", &f.text),
        ("trigger_id", &f.trigger_id),
        ("channel_id", &f.channel_id),
        ("team_id", &f.team_id),
    ] {
        if let Some(value) = value {
            fields.push((key.to_string(), value.clone()));
        }
    }
    fields.extend(f.extra.iter().cloned());
    fields
}

/// Keys the bot reads somewhere in Slack's JSON, so generated JSON hits them.
fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec![
            "type", "user", "id", "actions", "action_id", "block_id", "value", "view",
            "state", "values", "channel", "container", "channel_id", "trigger_id",
            "selected_option", "callback_id", "private_metadata", "hash", "challenge",
            "event_id", "event", "token", "team",
        ])
        .prop_map(str::to_string),
        1 => odd_text(8),
    ]
}

fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        select(vec![
            "block_actions",
            "view_submission",
            "view_closed",
            "shortcut",
            "url_verification",
            "event_callback",
            "app_rate_limited",
            "approve",
            "deny",
            "U0123",
            "",
        ])
        .prop_map(|s| Value::String(s.into())),
        odd_text(24).prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(json_key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A JSON object with a known or odd `type` and fields of any shape.
fn typed_payload() -> impl Strategy<Value = Value> {
    (
        proptest::option::weighted(
            0.9,
            prop_oneof![
                3 => select(vec![
                    "block_actions", "view_submission", "view_closed",
                    "url_verification", "event_callback",
                ])
                .prop_map(|s| json!(s)),
                1 => json_value(),
            ],
        ),
        btree_map(json_key(), json_value(), 0..8),
    )
        .prop_map(|(kind, fields)| {
            let mut object: serde_json::Map<String, Value> = fields.into_iter().collect();
            match kind {
                Some(kind) => object.insert("type".into(), kind),
                None => object.remove("type"),
            };
            Value::Object(object)
        })
}

/// `user.id`, or `user[0]`: serde reads a struct from a JSON array too.
fn user_id_of(payload: &Value) -> Option<&str> {
    payload["user"]["id"]
        .as_str()
        .or_else(|| payload["user"][0].as_str())
}

fn payload_error_is_clear(err: &PayloadError) -> Result<(), TestCaseError> {
    // Messages quote serde's errors, which may quote input; keep them bounded
    // is the http layer's job, but they must say something.
    prop_assert!(!err.to_string().trim().is_empty());
    Ok(())
}

/// Bodies as they arrive: arbitrary bytes, form-ish text, JSON-ish text.
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..512),
        odd_text(300).prop_map(String::into_bytes),
        "([a-z_%0-9+]{0,12}=?[a-zA-Z0-9%+&={}\\[\\]\":,]{0,30}&?){0,8}"
            .prop_map(String::into_bytes),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn payload_parsers_answer_any_bytes(body in body_bytes()) {
        for result in [
            parse_command(&body).map(|_| ()),
            parse_interaction(&body).map(|_| ()),
            parse_event(&body).map(|_| ()),
        ] {
            if let Err(err) = result {
                payload_error_is_clear(&err)?;
            }
        }
    }

    #[test]
    fn slash_command_fields_round_trip(form in slash_form(), every_byte in any::<bool>()) {
        let body = form_encode(&form_fields(&form), every_byte);
        let got = parse_command(body.as_bytes());
        let CommandBody::Command(c) = got.map_err(|e| TestCaseError::fail(e.to_string()))? else {
            return Err(TestCaseError::fail("ssl check without ssl_check"));
        };
        prop_assert_eq!(c.user_id, form.user_id);
        prop_assert_eq!(c.command, form.command);
        prop_assert_eq!(c.text, form.text.unwrap_or_default());
        prop_assert_eq!(c.trigger_id, form.trigger_id.unwrap_or_default());
        prop_assert_eq!(c.channel_id, form.channel_id.unwrap_or_default());
        prop_assert_eq!(c.team_id, form.team_id.unwrap_or_default());
    }

    #[test]
    fn slash_command_without_user_or_command_is_refused(
        form in slash_form(),
        drop_user in any::<bool>(),
        ssl_check in proptest::option::of(prop_oneof![Just("1".to_string()), odd_text(3)]),
    ) {
        let missing = if drop_user { "user_id" } else { "command" };
        let mut fields: Vec<_> = form_fields(&form)
            .into_iter()
            .filter(|(k, _)| k != missing)
            .collect();
        if let Some(value) = &ssl_check {
            fields.push(("ssl_check".into(), value.clone()));
        }
        let got = parse_command(form_encode(&fields, false).as_bytes());
        if ssl_check.as_deref() == Some("1") {
            prop_assert_eq!(got, Ok(CommandBody::SslCheck));
        } else {
            match got {
                Err(PayloadError::Form(why)) => prop_assert!(why.contains(missing), "{why}"),
                other => prop_assert!(false, "expected a form error, got {other:?}"),
            }
        }
    }

    /// A JSON body on the form endpoints (wrong content type) is refused.
    #[test]
    fn json_bodies_on_form_endpoints_are_refused(
        value in btree_map("[a-z_]{1,10}", "[A-Za-z0-9 .]{0,10}", 0..6)
    ) {
        let body = serde_json::to_vec(&value).unwrap();
        prop_assert!(matches!(parse_command(&body), Err(PayloadError::Form(_))));
        prop_assert_eq!(parse_interaction(&body), Err(PayloadError::MissingPayload));
    }

    /// A form body on the events endpoint (wrong content type) is refused.
    #[test]
    fn form_bodies_on_the_events_endpoint_are_refused(form in slash_form()) {
        let body = form_encode(&form_fields(&form), false);
        prop_assert!(matches!(parse_event(body.as_bytes()), Err(PayloadError::Json(_))));
    }

    /// Any `payload=` JSON, of any shape, gets an interaction or a clear error
    /// that depends only on `type` where the bot does not read further.
    #[test]
    fn interaction_payloads_of_any_shape(payload in typed_payload(), raw in any::<bool>()) {
        let text = payload.to_string();
        let body = form_encode(&[("payload".into(), text)], raw);
        let got = parse_interaction(body.as_bytes());
        match payload.get("type").and_then(Value::as_str) {
            None => prop_assert!(matches!(got, Err(PayloadError::Json(ref m)) if m.contains("type"))),
            Some(kind @ ("block_actions" | "view_submission")) => match &got {
                Ok(Interaction::BlockActions(a)) => {
                    prop_assert_eq!(kind, "block_actions");
                    prop_assert_eq!(Some(a.user.id.as_str()), user_id_of(&payload));
                    // Reading what the handlers read never panics either.
                    let _ = a.channel_id();
                    if let Some(view) = &a.view {
                        let _ = view.state.value("runbook", "runbook_select");
                    }
                }
                Ok(Interaction::ViewSubmission(v)) => {
                    prop_assert_eq!(kind, "view_submission");
                    prop_assert_eq!(Some(v.user.id.as_str()), user_id_of(&payload));
                    let _ = v.view.state.value("reason", "reason_input");
                }
                Ok(Interaction::Other(k)) => prop_assert!(false, "{kind} parsed as other {k}"),
                Err(err) => {
                    prop_assert!(matches!(err, PayloadError::Json(m) if m.starts_with(kind)), "{err}");
                }
            },
            Some(kind) => prop_assert_eq!(got, Ok(Interaction::Other(kind.to_string()))),
        }
    }

    /// Block actions as Slack sends them, with any action id (known or not)
    /// and any value, come through unchanged.
    #[test]
    fn block_actions_round_trip(
        user in "[UW][A-Z0-9]{8}",
        actions in vec((odd_text(30), proptest::option::of(odd_text(60)), proptest::option::of(odd_text(20))), 0..4),
        channel in proptest::option::of("[CDG][A-Z0-9]{8}"),
        in_container in any::<bool>(),
        trigger in proptest::option::of("[0-9.a-f]{10,40}"),
    ) {
        let mut payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": "someone", "team_id": "T1"},
            "api_app_id": "A1",
            "actions": actions.iter().map(|(id, value, block)| json!({
                "action_id": id, "block_id": block, "value": value,
                "type": "button", "action_ts": "1.2",
            })).collect::<Vec<_>>(),
        });
        if let Some(t) = &trigger {
            payload["trigger_id"] = json!(t);
        }
        if let Some(c) = &channel {
            if in_container {
                payload["container"] = json!({"type": "message", "channel_id": c, "message_ts": "1.1"});
            } else {
                payload["channel"] = json!({"id": c, "name": "x"});
            }
        }
        let body = form_encode(&[("payload".into(), payload.to_string())], false);
        let Interaction::BlockActions(got) = parse_interaction(body.as_bytes())
            .map_err(|e| TestCaseError::fail(e.to_string()))?
        else {
            return Err(TestCaseError::fail("not block actions"));
        };
        prop_assert_eq!(&got.user.id, &user);
        prop_assert_eq!(&got.trigger_id, &trigger);
        prop_assert_eq!(got.channel_id(), channel);
        prop_assert_eq!(got.actions.len(), actions.len());
        for (a, (id, value, block)) in got.actions.iter().zip(&actions) {
            prop_assert_eq!(&a.action_id, id);
            prop_assert_eq!(&a.value, value);
            prop_assert_eq!(&a.block_id, block);
        }
    }

    #[test]
    fn view_submission_values_round_trip(
        user in "[UW][A-Z0-9]{8}",
        inputs in btree_map(("[a-z_]{1,12}", "[a-z_]{1,12}"), (odd_text(80), any::<bool>()), 0..5),
        metadata in odd_text(60),
    ) {
        let mut values = serde_json::Map::new();
        for ((block, action), (value, is_select)) in &inputs {
            let input = if *is_select {
                json!({"type": "static_select", "selected_option": {"value": value, "text": {"type": "plain_text", "text": "x"}}})
            } else {
                json!({"type": "plain_text_input", "value": value})
            };
            values
                .entry(block.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .unwrap()
                .insert(action.clone(), input);
        }
        let payload = json!({
            "type": "view_submission",
            "user": {"id": user},
            "view": {"id": "V1", "callback_id": "request", "private_metadata": metadata,
                     "hash": "1.a", "state": {"values": values}},
        });
        let body = form_encode(&[("payload".into(), payload.to_string())], false);
        let Interaction::ViewSubmission(got) = parse_interaction(body.as_bytes())
            .map_err(|e| TestCaseError::fail(e.to_string()))?
        else {
            return Err(TestCaseError::fail("not a view submission"));
        };
        prop_assert_eq!(got.user.id, user);
        prop_assert_eq!(&got.view.private_metadata, &metadata);
        for ((block, action), (value, _)) in &inputs {
            let read = got.view.state.value(block, action);
            prop_assert_eq!(read.as_ref(), Some(value));
        }
        prop_assert_eq!(got.view.state.value("no such block", "x"), None);
    }

    /// Any JSON on the events endpoint is an event or names what is missing.
    #[test]
    fn events_of_any_shape(payload in prop_oneof![typed_payload(), json_value()]) {
        let got = parse_event(payload.to_string().as_bytes());
        let kind = payload.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "url_verification" => match payload["challenge"].as_str() {
                Some(c) => prop_assert_eq!(got, Ok(EventBody::UrlVerification { challenge: c.into() })),
                None => prop_assert!(matches!(got, Err(PayloadError::Json(m)) if m.contains("challenge"))),
            },
            "event_callback" => match payload["event_id"].as_str() {
                Some(id) => prop_assert_eq!(got, Ok(EventBody::Callback {
                    event_id: id.into(),
                    event: payload["event"].clone(),
                })),
                None => prop_assert!(matches!(got, Err(PayloadError::Json(m)) if m.contains("event_id"))),
            },
            other => prop_assert_eq!(got, Ok(EventBody::Other(other.to_string()))),
        }
    }
}

#[test]
fn deeply_nested_and_oversized_payloads_are_answered() {
    for depth in [200, 100_000] {
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(parse_event(deep.as_bytes()).is_err());
        let body = form_encode(&[("payload".into(), deep.clone())], false);
        assert!(parse_interaction(body.as_bytes()).is_err());
        let object = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert!(parse_event(object.as_bytes()).is_err());
    }
    // 4 MiB of text in a slash command: no size limit here (the HTTP layer
    // has one), but no trouble either.
    let text = "é".repeat(2 << 20);
    let form = [
        ("user_id".to_string(), "U1".to_string()),
        ("command".to_string(), "/access".to_string()),
        ("text".to_string(), text.clone()),
    ];
    let body = form_encode(&form, false);
    let Ok(CommandBody::Command(c)) = parse_command(body.as_bytes()) else {
        panic!("big form refused")
    };
    assert_eq!(c.text, text);
    assert!(matches!(
        command::parse(&c.text),
        Err(CommandError::TooLong(n)) if n == 2 << 20
    ));
    // Broken escapes and a lone `=` are not errors in form encoding.
    assert!(parse_command(b"%%%&=&==&user_id=%FF&command=%").is_ok());
}

// ---------------------------------------------------------------------------
// `/access` command text
// ---------------------------------------------------------------------------

/// Command-ish text: real subcommands, durations and odd words between odd separators.
fn command_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        2 => select(vec![
            "request", "req", "REQUEST", "revoke", "release", "end", "extend", "help", "?",
            "-h", "list", "ls", "status", "billing-admin", "ar-1234", "0h", "10w", "99999d",
            "366d", "1.5h", "-1h", "1é", "٣h", "１h",
        ])
        .prop_map(str::to_string),
        2 => valid_duration().prop_map(|(t, _)| t),
        1 => "[0-9]{1,25}[a-zA-Z]?",
        3 => word(12),
    ];
    (
        proptest::option::of(separator()),
        vec((token, separator()), 0..12),
        odd_text(20),
    )
        .prop_map(|(lead, tokens, tail)| {
            let mut text = lead.unwrap_or_default();
            for (token, sep) in tokens {
                text.push_str(&token);
                text.push_str(&sep);
            }
            text.push_str(&tail);
            text
        })
}

/// Collapses every run of whitespace and control characters to one space.
fn normalize(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A reason word that can never start a duration: not a digit or `.` first,
/// and not `a`, `an` or `half` (as in `an hour`, `half an hour`).
fn reason_word() -> impl Strategy<Value = String> {
    (word_char(), proptest::option::of(word(10))).prop_map(|(first, rest)| {
        let first = if first.is_ascii_digit() || first == '.' {
            'r'
        } else {
            first
        };
        // A first reason word with `=` would be a runbook input (`key=value`).
        let w = format!("{first}{}", rest.unwrap_or_default()).replace('=', "-");
        if matches!(w.to_ascii_lowercase().as_str(), "a" | "an" | "half") {
            format!("{w}x")
        } else {
            w
        }
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_command_text_gets_a_command_or_a_clear_error(
        text in prop_oneof![
            4 => command_text(),
            2 => odd_text(200),
            1 => odd_text(10_000),
            1 => (command_text(), 3_990usize..4_010).prop_map(|(t, n)| {
                let pad = n.saturating_sub(t.chars().count());
                format!("{t}{}", "x".repeat(pad))
            }),
        ]
    ) {
        let chars = text.chars().count();
        match command::parse(&text) {
            Err(CommandError::TooLong(n)) => {
                prop_assert_eq!(n, chars);
                prop_assert!(chars > MAX_TEXT);
            }
            _ if chars > MAX_TEXT => prop_assert!(false, "{chars} chars accepted"),
            Err(err) => display_is_clear(&err.to_string(), 300)?,
            Ok(Command::Request { runbook, reason, .. }) => {
                prop_assert!(!runbook.is_empty());
                prop_assert!(!runbook.contains(char::is_whitespace));
                prop_assert!(!reason.contains(|c: char| c.is_control()));
                prop_assert_eq!(reason.trim(), reason.as_str());
            }
            Ok(Command::Revoke { request_id } | Command::Extend { request_id, .. }) => {
                prop_assert!(!request_id.is_empty());
                prop_assert_eq!(request_id.to_lowercase(), request_id.clone());
            }
            Ok(_) => {}
        }
    }

    /// Separators are separators: any run of whitespace and control
    /// characters means the same as one space.
    #[test]
    fn separators_do_not_change_the_meaning(text in command_text()) {
        prop_assume!(text.chars().count() <= MAX_TEXT);
        prop_assert_eq!(command::parse(&text), command::parse(&normalize(&text)));
    }

    #[test]
    fn requests_parse_to_their_fields(
        keyword in prop_oneof![mixed_case("request"), mixed_case("req")],
        runbook in word(30),
        duration in proptest::option::of(valid_duration()),
        reason in vec(reason_word(), 0..8),
        seps in vec(separator(), 12),
        lead in proptest::option::of(separator()),
    ) {
        let mut text = lead.unwrap_or_default();
        let mut words = vec![keyword, runbook.clone()];
        if let Some((d, _)) = &duration {
            words.push(d.clone());
        }
        words.extend(reason.iter().cloned());
        for (word, sep) in words.iter().zip(seps.iter().cycle()) {
            text.push_str(word);
            text.push_str(sep);
        }
        prop_assert_eq!(
            command::parse(&text),
            Ok(Command::Request {
                runbook: runbook.to_lowercase(),
                duration: duration.map(|(_, d)| d),
                reason: reason.join(" "),
                inputs: vec![],
                start: None,
            })
        );
    }

    /// Words that continue a duration (`1h 30m`) belong to it; the reason
    /// starts at the first word that does not, and a later duration-looking
    /// word is part of the reason.
    #[test]
    fn the_duration_is_the_longest_run_of_first_words_that_reads_as_one(
        (first, d1) in valid_duration(),
        (second, d2) in valid_duration(),
    ) {
        prop_assume!(d1 + d2 <= MAX_DURATION);
        prop_assert_eq!(
            command::parse(&format!("request x {first} {second} because {second} 0h")),
            Ok(Command::Request {
                runbook: "x".into(),
                duration: Some(d1 + d2),
                reason: format!("because {second} 0h"),
                inputs: vec![],
                start: None,
            })
        );
        prop_assert_eq!(
            command::parse(&format!("request x {first} because {second}")),
            Ok(Command::Request {
                runbook: "x".into(),
                duration: Some(d1),
                reason: format!("because {second}"),
                inputs: vec![],
                start: None,
            })
        );
    }

    /// A first word that looks like a duration but is not one is an error,
    /// not the start of the reason.
    #[test]
    fn bad_durations_in_requests_are_refused(
        n in "[0-9]{1,20}",
        unit in prop::char::range('a', 'z'),
    ) {
        let word = format!("{n}{unit}");
        let text = format!("request billing-admin {word} because");
        match parse_duration(&word) {
            Ok(d) => prop_assert_eq!(
                command::parse(&text),
                Ok(Command::Request {
                    runbook: "billing-admin".into(),
                    duration: Some(d),
                    reason: "because".into(),
                    inputs: vec![],
                    start: None,
                })
            ),
            Err(e) => prop_assert_eq!(command::parse(&text), Err(CommandError::Duration(e))),
        }
    }

    #[test]
    fn revoke_and_extend_parse_to_their_fields(
        keyword in prop_oneof![
            mixed_case("revoke"), mixed_case("release"), mixed_case("end")
        ],
        id in word(20),
        (dur_text, dur) in valid_duration(),
        bad in "[a-z]{1,6}",
    ) {
        prop_assert_eq!(
            command::parse(&format!("{keyword} {id}")),
            Ok(Command::Revoke { request_id: id.to_lowercase() })
        );
        prop_assert_eq!(
            command::parse(&format!("extend\t{id}\u{a0}{dur_text}")),
            Ok(Command::Extend { request_id: id.to_lowercase(), duration: dur })
        );
        let refused = command::parse(&format!("extend {id} {bad}"));
        prop_assert!(matches!(refused, Err(CommandError::Duration(_))), "{:?}", refused);
        prop_assert_eq!(
            command::parse(&format!("extend {id}")),
            Err(CommandError::MissingDuration)
        );
        prop_assert_eq!(
            command::parse(&format!("{keyword}  ")),
            Err(CommandError::MissingRequestId("revoke"))
        );
    }

    #[test]
    fn unknown_subcommands_are_named_back_shortened(sub in word(60)) {
        let lower = sub.to_lowercase();
        prop_assume!(!matches!(
            lower.as_str(),
            "help" | "-h" | "--help" | "?" | "list" | "ls" | "status" | "request" | "req"
                | "revoke" | "release" | "end" | "extend"
        ));
        prop_assert_eq!(
            command::parse(&sub),
            Err(CommandError::Unknown(lower.chars().take(30).collect()))
        );
    }
}

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn written_durations_parse_to_their_value((text, d) in valid_duration(), pad in "[ \t\n]{0,2}") {
        prop_assert_eq!(parse_duration(&text), Ok(d));
        prop_assert_eq!(parse_duration(&format!("{pad}{text}{pad}")), Ok(d));
    }

    /// What the formatter prints parses back: whole, when it is one part
    /// (`4h`), and part by part otherwise (`1h 30m` is 1h plus 30m).
    #[test]
    fn formatted_durations_parse_back(secs in prop_oneof![
        1u64..=MAX_DURATION.as_secs(),
        (1u64..=365, select(vec![1u64, 60, 3600, 86_400]))
            .prop_map(|(n, u)| (n * u).min(MAX_DURATION.as_secs())),
    ]) {
        let d = Duration::from_secs(secs);
        let text = format_duration(d);
        let parts: Vec<&str> = text.split(' ').collect();
        let mut sum = Duration::ZERO;
        for part in &parts {
            sum += parse_duration(part).map_err(|e| TestCaseError::fail(format!("{part}: {e}")))?;
        }
        prop_assert_eq!(sum, d, "{}", text);
        prop_assert_eq!(parse_duration(&text), Ok(d));
        // Units from largest to smallest, each at most once, each below the next unit up.
        let units: String = parts.iter().map(|p| p.chars().last().unwrap()).collect();
        prop_assert!(is_subsequence(&units, "dhms"), "{}", text);
    }

    #[test]
    fn any_text_gets_a_duration_or_a_clear_error(text in prop_oneof![
        odd_text(40),
        "[ ]?[+-]?[0-9]{0,30}[smhdwSMHDW ]?[a-z]?",
        odd_text(10_000),
    ]) {
        match parse_duration(&text) {
            Ok(d) => {
                prop_assert!(d >= Duration::from_secs(1) && d <= MAX_DURATION);
                prop_assert_eq!(d.subsec_nanos(), 0);
            }
            Err(err) => display_is_clear(&err.to_string(), 160)?,
        }
    }

    /// Numbers too big for any unit, or for u64, are "too long" or malformed, never a panic.
    #[test]
    fn huge_numbers_are_refused(n in "[1-9][0-9]{3,40}", unit in select(vec!['s', 'm', 'h', 'd'])) {
        let text = format!("{n}{unit}");
        let size = UNITS.iter().find(|(u, _)| *u == unit).unwrap().1;
        let secs = n.parse::<u128>().ok().and_then(|v| v.checked_mul(u128::from(size)));
        match parse_duration(&text) {
            Ok(d) => prop_assert_eq!(Some(u128::from(d.as_secs())), secs),
            Err(DurationError::TooLong(_)) => {
                prop_assert!(n.len() <= 12);
                prop_assert!(secs.unwrap() > u128::from(MAX_DURATION.as_secs()));
            }
            Err(DurationError::Malformed(_)) => prop_assert!(n.len() > 12),
            Err(other) => prop_assert!(false, "{text}: {other:?}"),
        }
    }
}

fn is_subsequence(needle: &str, hay: &str) -> bool {
    let mut hay = hay.chars();
    needle.chars().all(|c| hay.any(|h| h == c))
}

#[test]
fn duration_edges() {
    assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
    assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
    assert!(matches!(
        parse_duration("8761h"),
        Err(DurationError::TooLong(_))
    ));
    assert!(matches!(
        parse_duration("99999999999999999999d"),
        Err(DurationError::Malformed(_))
    ));
    assert!(matches!(
        parse_duration("999999999999d"),
        Err(DurationError::TooLong(_))
    ));
    assert!(matches!(parse_duration("0s"), Err(DurationError::Zero(_))));
    assert!(matches!(
        parse_duration("000000000000s"),
        Err(DurationError::Zero(_))
    ));
    assert_eq!(format_duration(Duration::ZERO), "0s");
    assert_eq!(format_duration(MAX_DURATION), "365d");
}

// ---------------------------------------------------------------------------
// Runbooks
// ---------------------------------------------------------------------------

const BILLING: &str = include_str!("../runbooks/billing-admin.toml");
const SHIPPED: [&str; 8] = [
    include_str!("../runbooks/analytics-marketing.toml"),
    BILLING,
    include_str!("../runbooks/compliance-audit.toml"),
    include_str!("../runbooks/crm-support.toml"),
    include_str!("../runbooks/hr-onboarding.toml"),
    include_str!("../runbooks/idp-admin.toml"),
    include_str!("../runbooks/incident-break-glass.toml"),
    include_str!("../runbooks/payroll-view.toml"),
];

fn problems_are_clear(text: &str, file: &Path, problems: &[Problem]) -> Result<(), TestCaseError> {
    prop_assert!(!problems.is_empty(), "refused without a problem");
    let lines = text.split('\n').count();
    for p in problems {
        prop_assert!(!p.message.trim().is_empty(), "empty message: {p:?}");
        prop_assert_eq!(&p.file, file);
        if let Some(line) = p.line {
            prop_assert!((1..=lines).contains(&line), "line {line} of {lines}: {p}");
        }
        let shown = p.to_string();
        prop_assert!(shown.starts_with(&file.display().to_string()));
    }
    messages_are_one_short_line(problems)?;
    let order: Vec<usize> = problems.iter().map(|p| p.line.unwrap_or(0)).collect();
    prop_assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "not in line order: {order:?}"
    );
    Ok(())
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Values are quoted shortened and cleaned, so any message is one readable
/// line, however long or odd the file's values are.
fn messages_are_one_short_line(problems: &[Problem]) -> Result<(), TestCaseError> {
    for p in problems {
        prop_assert!(
            !p.message.chars().any(char::is_control),
            "control character: {p:?}"
        );
        let chars = p.message.chars().count();
        prop_assert!(chars <= 600, "{chars} chars: {p:.300}");
    }
    Ok(())
}

fn is_user_id(id: &str) -> bool {
    (id.starts_with('U') || id.starts_with('W'))
        && (3..=21).contains(&id.len())
        && id[1..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn is_group_id(id: &str) -> bool {
    id.starts_with('S')
        && (3..=21).contains(&id.len())
        && id[1..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn in_range(d: Duration) -> bool {
    d >= Duration::from_secs(1) && d <= MAX_DURATION
}

/// What `src/runbook/model.rs` promises of every loaded runbook.
fn runbook_is_valid(r: &Runbook) -> Result<(), TestCaseError> {
    prop_assert!(r.id.len() <= 64 && r.id.starts_with(|c: char| c.is_ascii_lowercase()));
    prop_assert!(r
        .id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    prop_assert!(!r.title.trim().is_empty() && r.title.chars().count() <= 75);
    for text in [&r.title, &r.description, &r.system, &r.instructions] {
        prop_assert!(!text.trim().is_empty());
        prop_assert_eq!(text.trim(), text.as_str());
    }
    prop_assert!(is_user_id(&r.owner), "owner {}", r.owner);

    let q = &r.request;
    prop_assert!(!q.allowed.is_empty());
    prop_assert!(q.allowed == [Principal::Anyone] || !q.allowed.contains(&Principal::Anyone));
    for p in &q.allowed {
        match p {
            Principal::Anyone => {}
            Principal::User(id) => prop_assert!(is_user_id(id), "{id}"),
            Principal::Group(id) => prop_assert!(is_group_id(id), "{id}"),
        }
    }
    prop_assert!(in_range(q.default_duration) && in_range(q.max_duration));
    prop_assert!(q.default_duration <= q.max_duration);
    if let Some(total) = q.max_total {
        prop_assert!(in_range(total) && total >= q.max_duration);
    }
    if r.break_glass {
        prop_assert!(q.max_duration <= Duration::from_secs(4 * 3600));
    }

    let a = &r.approval;
    prop_assert!(!a.stages.is_empty());
    for stage in &a.stages {
        prop_assert!(!stage.name.trim().is_empty());
        prop_assert!(!stage.approvers.is_empty());
        prop_assert!(stage.required >= 1);
        let has_group = stage
            .approvers
            .iter()
            .any(|a| matches!(a, Approver::Group(_)));
        if !has_group {
            let mut people = BTreeSet::new();
            for approver in &stage.approvers {
                people.insert(match approver {
                    Approver::User(id) => id.as_str(),
                    Approver::Owner => r.owner.as_str(),
                    Approver::Manager => "\u{0}manager",
                    Approver::Group(_) => unreachable!(),
                });
            }
            prop_assert!(
                stage.required as usize <= people.len(),
                "stage {} needs {} of {:?}",
                stage.name,
                stage.required,
                stage.approvers
            );
        }
        let unique: BTreeSet<String> = stage.approvers.iter().map(|a| format!("{a:?}")).collect();
        prop_assert_eq!(unique.len(), stage.approvers.len(), "duplicate approver");
    }
    for approver in r.all_approvers() {
        match approver {
            Approver::User(id) => prop_assert!(is_user_id(id), "{id}"),
            Approver::Group(id) => prop_assert!(is_group_id(id), "{id}"),
            Approver::Owner | Approver::Manager => {}
        }
    }
    prop_assert!(in_range(a.approval_timeout));
    if let Some(remind) = a.remind_after {
        prop_assert!(in_range(remind) && remind < a.approval_timeout);
    }
    if let Some(escalate) = a.escalate_after {
        prop_assert!(in_range(escalate) && escalate < a.approval_timeout);
    }
    prop_assert_eq!(a.escalate_after.is_some(), !a.fallback_approvers.is_empty());
    let mut names = BTreeSet::new();
    for rule in &a.auto_approve {
        prop_assert!(
            names.insert(rule.name.clone()),
            "rule name {} twice",
            rule.name
        );
        prop_assert!(!rule.users.is_empty() || !rule.groups.is_empty());
        prop_assert!(rule.users.iter().all(|u| is_user_id(u)));
        prop_assert!(rule.groups.iter().all(|g| is_group_id(g)));
        prop_assert!(in_range(rule.max_duration) && rule.max_duration <= q.max_duration);
    }

    let spec = &r.grant;
    if let Some(CommandSpec {
        grant,
        revoke,
        timeout,
        env,
    }) = spec.get()
    {
        for argv in [grant, revoke] {
            prop_assert!(argv.first().is_some_and(|p| !p.trim().is_empty()));
        }
        prop_assert!(in_range(*timeout));
        for name in env {
            prop_assert!(name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'));
            prop_assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        }
    } else if let Some(WebhookSpec {
        url,
        secret_env,
        timeout,
    }) = spec.get()
    {
        // The URL parser drops tabs and newlines, as reqwest will at run time.
        let plain: String = url
            .chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
            .collect::<String>()
            .to_ascii_lowercase();
        prop_assert!(
            plain.starts_with("http://") || plain.starts_with("https://"),
            "{url}"
        );
        prop_assert!(!secret_env.is_empty());
        prop_assert!(in_range(*timeout));
    } else if let Some(SlackUsergroupSpec { usergroup }) = spec.get() {
        prop_assert!(is_group_id(usergroup));
    } else {
        prop_assert!(false, "a grant spec of no built-in provider: {spec:?}");
    }
    Ok(())
}

fn check_runbook_text(text: &str) -> Result<(), TestCaseError> {
    let file = Path::new("runbooks/fuzzed.toml");
    match parse_runbook(text, file) {
        Ok(r) => {
            prop_assert_eq!(r.source.as_path(), file);
            runbook_is_valid(&r)
        }
        Err(problems) => problems_are_clear(text, file, &problems),
    }
}

/// Values that runbook fields might hold, right or wrong.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "\"1h\"", "\"0s\"", "\"366d\"", "\"4 hours\"", "\"9h\"", "\"1d\"", "\"30s\"", "\"5m\"",
            "\"\"", "\" \"", "0", "1", "2", "3", "-1", "99999999999", "1.5", "true", "false",
            "1979-05-27", "[]", "[\"*\"]", "[\"owner\"]", "[\"manager\"]", "[\"owner\", \"owner\"]",
            "[\"owner\", \"U0BILLOWNER\"]", "[\"U0A\", \"S0B\"]", "[\"S0FIN\"]", "[\"u0lower\"]",
            "[\"@bob\", \"bob@example.com\"]", "[1, 2]", "[\"*\", \"U0A\"]",
            "[\"./scripts/billing.sh\"]", "[\"\"]", "[\"/bin/true\", \"x\"]",
            "{ users = [\"U0ONCALL\"], max_duration = \"1h\" }",
            "{ groups = [\"S0ONCALL\"], max_duration = \"9h\" }",
            "{ name = \"x\", users = [] }",
            "[{ users = [\"U0A\"], max_duration = \"1h\" }, { name = \"b\", groups = [\"S0B\"], max_duration = \"2h\" }]",
            "[{ approvers = [\"owner\"] }, { name = \"\", approvers = [\"manager\"], required = 2 }]",
            "\"command\"", "\"webhook\"", "\"slack_usergroup\"", "\"comand\"",
            "\"https://automation.example.com/x\"", "\"ftp://x\"", "\"https://\"",
            "\"U0CFO\"", "\"S0GROUP\"", "\"W0ABC\"", "\"BILLING-ADMIN\"", "\"Billing Admin\"",
            "\"a\"", "\"ACCESSBOT_SECRET\"", "\"not a name!\"", "\"\"\"\nmulti\nline\"\"\"",
            "'''literal'''", "{}", "[[1], [\"a\"]]",
        ])
        .prop_map(str::to_string),
        valid_duration().prop_map(|(t, _)| format!("{t:?}")),
        odd_text(30).prop_map(|t| format!("{t:?}")),
        odd_text(12),
    ]
}

fn toml_key() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "id",
            "title",
            "description",
            "system",
            "owner",
            "instructions",
            "break_glass",
            "request",
            "approval",
            "grant",
            "allowed",
            "default_duration",
            "max_duration",
            "max_total",
            "require_reason",
            "approvers",
            "required",
            "approval_timeout",
            "allow_self_approval",
            "remind_after",
            "escalate_after",
            "fallback_approvers",
            "auto_approve",
            "stages",
            "name",
            "users",
            "groups",
            "provider",
            "revoke",
            "timeout",
            "env",
            "url",
            "secret_env",
            "usergroup",
            "aprovers",
            "max_duraton",
            "reqired",
            "approval.required",
            "request.max_duration",
            "\"quoted key\"",
            "x",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,12}",
    ]
}

/// A whole line: a `key = value`, a section header, or noise.
fn toml_line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (toml_key(), toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        2 => select(vec![
            "[request]", "[approval]", "[grant]", "[[approval.stages]]",
            "[[approval.auto_approve]]", "[approval.auto_approve]", "[approval.stages]",
            "[request.extra]", "[[grant]]", "[[request]]", "[approval.stages.x]", "",
            "# comment", "break_glass = true", "required = 0", "escalate_after = \"1h\"",
        ])
        .prop_map(str::to_string),
        1 => odd_text(40),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(Index),
    DuplicateLine(Index, Index),
    SwapLines(Index, Index),
    ReplaceLine(Index, String),
    InsertLine(Index, String),
    ReplaceValue(Index, String),
    InsertText(Index, String),
    DeleteRange(Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => any::<Index>().prop_map(Mutation::DeleteLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::DuplicateLine(a, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        2 => (any::<Index>(), toml_line()).prop_map(|(i, l)| Mutation::ReplaceLine(i, l)),
        2 => (any::<Index>(), toml_line()).prop_map(|(i, l)| Mutation::InsertLine(i, l)),
        4 => (any::<Index>(), toml_value()).prop_map(|(i, v)| Mutation::ReplaceValue(i, v)),
        1 => (any::<Index>(), odd_text(8)).prop_map(|(i, t)| Mutation::InsertText(i, t)),
        1 => (any::<Index>(), 1usize..40).prop_map(|(i, n)| Mutation::DeleteRange(i, n)),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let n = lines.len();
    match m {
        Mutation::DeleteLine(i) => {
            lines.remove(i.index(n));
        }
        Mutation::DuplicateLine(from, to) => {
            let line = lines[from.index(n)].clone();
            lines.insert(to.index(n + 1), line);
        }
        Mutation::SwapLines(a, b) => lines.swap(a.index(n), b.index(n)),
        Mutation::ReplaceLine(i, line) => lines[i.index(n)] = line.clone(),
        Mutation::InsertLine(i, line) => lines.insert(i.index(n + 1), line.clone()),
        Mutation::ReplaceValue(i, value) => {
            let assignments: Vec<usize> = (0..n).filter(|&j| lines[j].contains(" = ")).collect();
            if let Some(&j) = assignments.get(i.index(assignments.len().max(1))) {
                let key = lines[j].split(" = ").next().unwrap().to_string();
                lines[j] = format!("{key} = {value}");
            }
        }
        Mutation::InsertText(i, inserted) => {
            let at = char_boundary(text, i);
            return format!("{}{inserted}{}", &text[..at], &text[at..]);
        }
        Mutation::DeleteRange(i, len) => {
            let at = char_boundary(text, i);
            let end = (at + len..=text.len())
                .find(|&b| text.is_char_boundary(b))
                .unwrap_or(text.len());
            return format!("{}{}", &text[..at], &text[end..]);
        }
    }
    lines.join("\n")
}

/// A char boundary of `text` (its end included), picked by `i`.
fn char_boundary(text: &str, i: &Index) -> usize {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(b, _)| b)
        .chain([text.len()])
        .collect();
    bounds[i.index(bounds.len())]
}

fn mutated_runbook() -> impl Strategy<Value = String> {
    (select(SHIPPED.to_vec()), vec(mutation(), 1..6)).prop_map(|(text, mutations)| {
        mutations
            .iter()
            .fold(text.to_string(), |text, m| apply(&text, m))
    })
}

/// The 1-based line of the first line starting with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines().position(|l| l.starts_with(prefix)).unwrap() + 1
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_text_gets_a_runbook_or_clear_problems(text in prop_oneof![
        odd_text(400),
        vec(toml_line(), 0..30).prop_map(|lines| lines.join("\n")),
        vec(any::<u8>(), 0..400).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        check_runbook_text(&text)?;
    }

    #[test]
    fn mutated_runbooks_get_a_valid_runbook_or_clear_problems(text in mutated_runbook()) {
        check_runbook_text(&text)?;
    }

    /// Every shipped runbook, its lines in any order of sections, with CRLF
    /// line ends, or with a BOM: same runbook or clear problems.
    #[test]
    fn shipped_runbooks_survive_line_end_changes(text in select(SHIPPED.to_vec()), crlf in any::<bool>(), bom in any::<bool>()) {
        let mut changed = if crlf { text.replace('\n', "\r\n") } else { text.to_string() };
        if bom {
            changed.insert(0, '\u{feff}');
        }
        let file = Path::new("x.toml");
        let original = parse_runbook(text, file).map_err(|p| TestCaseError::fail(format!("{p:?}")))?;
        match parse_runbook(&changed, file) {
            Ok(r) => prop_assert_eq!(r, original),
            Err(problems) => problems_are_clear(&changed, file, &problems)?,
        }
    }

    /// The duration checks of billing-admin, exactly: it loads iff the
    /// durations are consistent, and otherwise each broken rule is reported
    /// once, on its own line and field.
    #[test]
    fn runbook_duration_rules_are_exact(
        (default_text, default) in short_duration(),
        (max_text, max) in short_duration(),
        (total_text, total) in short_duration(),
        (timeout_text, timeout) in short_duration(),
        (remind_text, remind) in short_duration(),
        (escalate_text, escalate) in short_duration(),
    ) {
        let text = BILLING
            .replace("default_duration = \"1h\"", &format!("default_duration = \"{default_text}\""))
            .replace("max_duration = \"4h\"", &format!("max_duration = \"{max_text}\""))
            .replace("max_total = \"8h\"", &format!("max_total = \"{total_text}\""))
            .replace("approval_timeout = \"8h\"", &format!("approval_timeout = \"{timeout_text}\""))
            .replace("remind_after = \"1h\"", &format!("remind_after = \"{remind_text}\""))
            .replace("escalate_after = \"4h\"", &format!("escalate_after = \"{escalate_text}\""));
        let mut expected = Vec::new();
        for (broken, key, path) in [
            (default > max, "default_duration", "request.default_duration"),
            (total < max, "max_total", "request.max_total"),
            (remind >= timeout, "remind_after", "approval.remind_after"),
            (escalate >= timeout, "escalate_after", "approval.escalate_after"),
        ] {
            if broken {
                expected.push((Some(line_of(&text, key)), path.to_string()));
            }
        }
        let file = Path::new("billing-admin.toml");
        match parse_runbook(&text, file) {
            Ok(r) => {
                prop_assert!(expected.is_empty(), "loaded despite {expected:?}");
                prop_assert_eq!(r.request.default_duration, default);
                prop_assert_eq!(r.request.max_duration, max);
                prop_assert_eq!(r.request.max_total, Some(total));
                prop_assert_eq!(r.approval.approval_timeout, timeout);
                prop_assert_eq!(r.approval.remind_after, Some(remind));
                prop_assert_eq!(r.approval.escalate_after, Some(escalate));
                runbook_is_valid(&r)?;
            }
            Err(problems) => {
                problems_are_clear(&text, file, &problems)?;
                let found: Vec<(Option<usize>, String)> =
                    problems.iter().map(|p| (p.line, p.field.clone())).collect();
                prop_assert_eq!(found, expected);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn problem_messages_are_one_short_line(text in prop_oneof![
        mutated_runbook(),
        (odd_text(60), 0usize..3).prop_map(|(value, at)| {
            let value = toml_string(&value);
            match at {
                0 => BILLING.replace(
                    "allowed = [\"S0FINANCE\", \"S0SUPLEADS\"]",
                    &format!("allowed = {value}"),
                ),
                1 => BILLING.replace("\n[grant]", &format!(
                    "\n[[approval.auto_approve]]\nname = {value}\nusers = [\"U0A\"]\nmax_duration = \"1h\"\n\
                     \n[[approval.auto_approve]]\nname = {value}\nusers = [\"U0B\"]\nmax_duration = \"1h\"\n\n[grant]"
                )),
                _ => BILLING.replace("owner = \"U0BILLOWNER\"", &format!("owner = {value}")),
            }
        }),
    ]) {
        if let Err(problems) = parse_runbook(&text, Path::new("t.toml")) {
            messages_are_one_short_line(&problems)?;
        }
    }
}

proptest! {
    // Each case writes files to a temporary directory.
    #![proptest_config(config(48))]

    #[test]
    fn load_dir_answers_any_directory(
        files in vec(
            prop_oneof![
                3 => mutated_runbook().prop_map(String::into_bytes),
                1 => select(SHIPPED.to_vec()).prop_map(|t| t.as_bytes().to_vec()),
                1 => vec(any::<u8>(), 0..200),
            ],
            0..5,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        for (i, bytes) in files.iter().enumerate() {
            std::fs::write(dir.path().join(format!("r{i}.toml")), bytes).unwrap();
        }
        match load_dir(dir.path()) {
            Ok(catalog) => {
                prop_assert!(!files.is_empty());
                let ids: Vec<&str> = catalog.runbooks.iter().map(|r| r.id.as_str()).collect();
                let mut sorted = ids.clone();
                sorted.sort_unstable();
                sorted.dedup();
                prop_assert_eq!(&ids, &sorted, "ids not sorted and unique");
                prop_assert_eq!(ids.len(), files.len());
                for r in &catalog.runbooks {
                    runbook_is_valid(r)?;
                }
            }
            Err(problems) => {
                prop_assert!(!problems.is_empty());
                messages_are_one_short_line(&problems)?;
                for p in &problems {
                    prop_assert!(!p.message.trim().is_empty());
                    prop_assert!(p.file.starts_with(dir.path()), "{}", p.file.display());
                    if let (Some(line), Ok(text)) = (p.line, std::fs::read_to_string(&p.file)) {
                        prop_assert!((1..=text.split('\n').count()).contains(&line), "{p}");
                    }
                }
            }
        }
    }
}

/// Rule names go to the audit log ("auto-approved by rule `x`"), so the
/// loader refuses two rules of one name; a written name must not collide
/// with the name it gives an unnamed rule either.
#[test]
fn auto_approve_rule_names_are_unique_even_when_defaulted() {
    let rules = "\n[[approval.auto_approve]]\nname = \"auto_approve[2]\"\nusers = [\"U0ONCALL\"]\nmax_duration = \"1h\"\n\n[[approval.auto_approve]]\ngroups = [\"S0ONCALL\"]\nmax_duration = \"1h\"\n";
    let text = BILLING.replace("\n[grant]", &format!("{rules}\n[grant]"));
    match parse_runbook(&text, Path::new("t.toml")) {
        Ok(r) => {
            let names: Vec<&str> = r
                .approval
                .auto_approve
                .iter()
                .map(|a| a.name.as_str())
                .collect();
            assert_ne!(
                names[0], names[1],
                "two auto-approve rules named alike: {names:?}"
            );
        }
        Err(problems) => assert!(
            problems
                .iter()
                .any(|p| p.field.starts_with("approval.auto_approve")),
            "{problems:?}"
        ),
    }
}

/// The program checks of `load_dir` quote the program path; like every other
/// problem message, that one must stay one short line.
#[test]
fn program_path_problems_are_one_short_line() {
    for program in ["./a\\tb", "./a\\nb", &format!("./{}", "x".repeat(10_000))] {
        let dir = tempfile::tempdir().unwrap();
        let text = BILLING.replace("./scripts/billing.sh", program);
        std::fs::write(dir.path().join("r.toml"), text).unwrap();
        let problems = load_dir(dir.path()).unwrap_err();
        for p in &problems {
            assert!(!p.message.chars().any(char::is_control), "{p:?}");
            let chars = p.message.chars().count();
            assert!(chars <= 600, "{chars} chars: {p:.300}");
        }
    }
}
