//! The `/slack/events` parser: any body gives an event or a clear error, and
//! for valid JSON the outcome is exactly what `type`, `challenge` and
//! `event_id` say.

#![no_main]

use accessbot::slack::payload::{parse_event, EventBody, PayloadError};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let got = parse_event(body);
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        assert!(matches!(got, Err(PayloadError::Json(_))), "{got:?}");
        return;
    };
    match json.get("type").and_then(Value::as_str).unwrap_or_default() {
        "url_verification" => match json["challenge"].as_str() {
            Some(c) => assert_eq!(
                got,
                Ok(EventBody::UrlVerification {
                    challenge: c.to_string()
                })
            ),
            None => assert!(matches!(got, Err(PayloadError::Json(_)))),
        },
        "event_callback" => match json["event_id"].as_str() {
            Some(id) => assert_eq!(
                got,
                Ok(EventBody::Callback {
                    event_id: id.to_string(),
                    event: json["event"].clone(),
                })
            ),
            None => assert!(matches!(got, Err(PayloadError::Json(_)))),
        },
        other => assert_eq!(got, Ok(EventBody::Other(other.to_string()))),
    }
});
