//! The `/slack/interactions` parser: the fuzz input is the `payload` JSON
//! (wrapped in a form the way Slack sends it) or, when it starts with a
//! 0 byte, the raw form body. Any input gives an interaction or a clear
//! error, and the outcome depends on `type` the way the parser promises.

#![no_main]

use accessbot::slack::payload::{parse_interaction, Interaction, PayloadError};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Some((0, raw)) = data.split_first() {
        if let Err(err) = parse_interaction(raw) {
            assert!(!err.to_string().is_empty());
        }
        return;
    }
    let payload = String::from_utf8_lossy(data);
    let body = serde_urlencoded::to_string([("payload", payload.as_ref())]).unwrap();
    let got = parse_interaction(body.as_bytes());
    let Ok(json) = serde_json::from_str::<Value>(&payload) else {
        assert!(matches!(got, Err(PayloadError::Json(_))), "{got:?}");
        return;
    };
    match json.get("type").and_then(Value::as_str) {
        None => assert!(matches!(got, Err(PayloadError::Json(_))), "{got:?}"),
        Some(kind @ ("block_actions" | "view_submission")) => match got {
            Ok(Interaction::BlockActions(a)) => {
                assert_eq!(kind, "block_actions");
                // What the handlers read next.
                let _ = a.channel_id();
                for action in &a.actions {
                    assert!(action.action_id.len() <= payload.len());
                }
                if let Some(view) = &a.view {
                    read_all(&view.state);
                }
            }
            Ok(Interaction::ViewSubmission(v)) => {
                assert_eq!(kind, "view_submission");
                read_all(&v.view.state);
            }
            Ok(Interaction::Other(k)) => panic!("{kind} parsed as other {k}"),
            Err(PayloadError::Json(m)) => assert!(m.starts_with(kind), "{m}"),
            Err(other) => panic!("{other:?}"),
        },
        Some(kind) => assert_eq!(got, Ok(Interaction::Other(kind.to_string()))),
    }
});

fn read_all(state: &accessbot::slack::payload::ViewState) {
    for (block, actions) in &state.values {
        for action in actions.keys() {
            let _ = state.value(block, action);
        }
    }
}
