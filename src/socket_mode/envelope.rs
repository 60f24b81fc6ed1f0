//! One Socket Mode message in, one acknowledgement out. A text frame is a
//! [`Frame`]: `hello`, `disconnect`, or an envelope (`slash_commands`,
//! `interactive`, `events_api`) that [`Envelopes::handle`] runs through the
//! same replay guard and the same [`Dispatch`] functions as HTTP ingress,
//! then answers with `{"envelope_id": …, "payload": …}`. The ack is built
//! only after dispatch returns, that is after the request is durable, as the
//! HTTP answer is. Nothing here knows about sockets or reconnects.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::dispatch::{Dispatch, Reply};
use crate::http::Metrics;
use crate::replay::{DeliveryKey, ReplayGuard, Seen};
use crate::slack::payload::{self, CommandBody, PayloadError};

/// A text frame from Slack, parsed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Frame {
    /// The connection is ready to receive envelopes.
    Hello,
    /// Slack is about to close (`warning`, `refresh_requested`) or has
    /// disabled Socket Mode for the app (`link_disabled`).
    Disconnect {
        reason: String,
    },
    Envelope(Envelope),
    /// A message type this bot does not know; logged and ignored.
    Other(String),
}

/// An envelope Slack wants acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Envelope {
    pub id: String,
    /// `slash_commands`, `interactive` or `events_api`.
    pub kind: String,
    pub payload: Value,
    /// Whether Slack reads a `payload` in the ack (slash commands and
    /// modal submissions; not events).
    pub accepts_response_payload: bool,
    /// More than 0 when Slack delivers an event again.
    pub retry_attempt: u64,
}

/// Reads one text frame. An unreadable frame is an error naming why.
pub(super) fn parse_frame(text: &str) -> Result<Frame, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let kind = v["type"].as_str().unwrap_or_default();
    Ok(match kind {
        "hello" => Frame::Hello,
        "disconnect" => Frame::Disconnect {
            reason: v["reason"].as_str().unwrap_or("unknown").to_string(),
        },
        "slash_commands" | "interactive" | "events_api" => {
            let id = v["envelope_id"]
                .as_str()
                .filter(|id| !id.is_empty())
                .ok_or_else(|| format!("a `{kind}` envelope without `envelope_id`"))?;
            Frame::Envelope(Envelope {
                id: id.to_string(),
                kind: kind.to_string(),
                payload: v["payload"].clone(),
                accepts_response_payload: v["accepts_response_payload"]
                    .as_bool()
                    .unwrap_or(kind != "events_api"),
                retry_attempt: v["retry_attempt"].as_u64().unwrap_or(0),
            })
        }
        other => Frame::Other(other.to_string()),
    })
}

/// The acknowledgement of `envelope`: its ID, and the answer as `payload`
/// where Slack takes one.
pub(super) fn ack(envelope: &Envelope, answer: Option<Value>) -> Value {
    let mut ack = json!({ "envelope_id": envelope.id });
    if let Some(answer) = answer.filter(|_| envelope.accepts_response_payload) {
        ack["payload"] = answer;
    }
    ack
}

/// What every connection's envelopes are handled with.
pub(super) struct Envelopes {
    pub dispatch: Dispatch,
    pub replay: ReplayGuard,
    pub metrics: Arc<Metrics>,
}

impl Envelopes {
    /// Handles one envelope and returns its ack; `None` when the store
    /// cannot say whether it was handled before: it is then not
    /// acknowledged, so Slack delivers it again.
    #[tracing::instrument(skip_all, fields(envelope_id = %envelope.id, kind = %envelope.kind))]
    pub(super) async fn handle(&self, envelope: &Envelope) -> Option<Value> {
        let key = replay_key(envelope);
        let handling = match self.replay.check(&key).await {
            Ok(Seen::New(handling)) => handling,
            Ok(Seen::Answered(answer)) => {
                self.metrics.replays.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    retry_attempt = envelope.retry_attempt,
                    "acknowledged a redelivered envelope from the replay guard"
                );
                return Some(ack(envelope, stored(&answer)));
            }
            Ok(Seen::InFlight) => {
                self.metrics.replays.fetch_add(1, Ordering::Relaxed);
                let answer = self.replay.answer_of_twin(&key).await;
                return Some(ack(envelope, answer.as_deref().and_then(stored)));
            }
            Err(e) => {
                tracing::error!(error = %e, "replay guard unavailable; the envelope is not acknowledged, so Slack delivers it again");
                return None;
            }
        };
        let reply = match self.dispatch(envelope).await {
            Ok(reply) => reply,
            Err(e) => {
                // Acknowledged (Slack would only send the same bytes again)
                // but not remembered, and nothing was done.
                self.metrics.bad_payloads.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "refused a malformed Socket Mode envelope");
                return Some(ack(envelope, None));
            }
        };
        let answer = reply.payload();
        let bytes = answer
            .as_ref()
            .map(|v| v.to_string().into_bytes())
            .unwrap_or_default();
        handling.answered(&bytes).await;
        Some(ack(envelope, answer))
    }

    /// Parses the payload as its envelope type says and hands it to dispatch.
    async fn dispatch(&self, envelope: &Envelope) -> Result<Reply, PayloadError> {
        let m = &self.metrics;
        Ok(match envelope.kind.as_str() {
            "slash_commands" => {
                m.commands.fetch_add(1, Ordering::Relaxed);
                match payload::command_from_json(&envelope.payload)? {
                    CommandBody::SslCheck => Reply::Ack,
                    CommandBody::Command(cmd) => self.dispatch.handle_command(cmd).await,
                }
            }
            "interactive" => {
                m.interactions.fetch_add(1, Ordering::Relaxed);
                let interaction = payload::interaction_from_json(envelope.payload.clone())?;
                self.dispatch.handle_interaction(interaction).await
            }
            "events_api" => {
                m.events.fetch_add(1, Ordering::Relaxed);
                let body = serde_json::to_vec(&envelope.payload)
                    .map_err(|e| PayloadError::Json(e.to_string()))?;
                let event = payload::parse_event(&body)?;
                self.dispatch
                    .handle_event(event, envelope.retry_attempt > 0)
                    .await
            }
            other => {
                tracing::debug!(kind = other, "envelope acknowledged without action");
                Reply::Ack
            }
        })
    }
}

/// What makes a delivery the same one: the envelope ID (Slack redelivers
/// an unacknowledged envelope with it after a reconnect), and for an event
/// its `event_id`, which a retry (`retry_attempt` > 0, in a new envelope)
/// keeps.
fn replay_key(envelope: &Envelope) -> DeliveryKey {
    match envelope.payload["event_id"].as_str() {
        Some(event_id) if envelope.kind == "events_api" => {
            DeliveryKey::new("socket_mode_event", event_id.as_bytes())
        }
        _ => DeliveryKey::new("socket_mode", envelope.id.as_bytes()),
    }
}

/// A stored answer as an ack payload: nothing for an empty answer.
fn stored(answer: &[u8]) -> Option<Value> {
    if answer.is_empty() {
        return None;
    }
    serde_json::from_slice(answer).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn frames_read_as_slack_sends_them() {
        assert_eq!(
            parse_frame(
                r#"{"type":"hello","num_connections":1,"connection_info":{"app_id":"A0"}}"#
            ),
            Ok(Frame::Hello)
        );
        assert_eq!(
            parse_frame(
                r#"{"type":"disconnect","reason":"refresh_requested","debug_info":{"host":"h"}}"#
            ),
            Ok(Frame::Disconnect {
                reason: "refresh_requested".into()
            })
        );
        let envelope = json!({
            "envelope_id": "e-1", "type": "slash_commands", "accepts_response_payload": true,
            "payload": {"command": "/access", "text": "help", "user_id": "U0A"}
        });
        match parse_frame(&envelope.to_string()) {
            Ok(Frame::Envelope(e)) => {
                assert_eq!(e.id, "e-1");
                assert!(e.accepts_response_payload);
                assert_eq!(e.retry_attempt, 0);
            }
            other => panic!("{other:?}"),
        }
        let event = json!({
            "envelope_id": "e-2", "type": "events_api", "retry_attempt": 2, "retry_reason": "timeout",
            "payload": {"type": "event_callback", "event_id": "Ev1", "event": {}}
        });
        match parse_frame(&event.to_string()) {
            Ok(Frame::Envelope(e)) => {
                assert!(!e.accepts_response_payload);
                assert_eq!(e.retry_attempt, 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_frame(r#"{"type":"interactive","payload":{}}"#).is_err());
        assert!(parse_frame("not json").is_err());
        assert_eq!(
            parse_frame(r#"{"type":"something_new"}"#),
            Ok(Frame::Other("something_new".into()))
        );
    }

    /// Socket Mode's JSON payloads read as the same typed values as the
    /// HTTP bodies that carry the same fields, so dispatch sees no difference.
    #[test]
    fn payloads_read_as_their_http_twins() {
        let fields = [
            ("team_id", "T0FAKE"),
            ("channel_id", "C0GENERAL"),
            ("user_id", "U0ALICE"),
            ("command", "/access"),
            ("text", "request billing-admin 1h refunds"),
            ("trigger_id", "1.2.3"),
        ];
        let form = serde_urlencoded::to_string(fields).unwrap();
        let object: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .chain([("is_enterprise_install".to_string(), json!(false))])
            .collect();
        assert_eq!(
            payload::command_from_json(&Value::Object(object)),
            payload::parse_command(form.as_bytes())
        );
        assert!(payload::command_from_json(&json!({"text": "help"})).is_err());
        assert!(payload::command_from_json(&json!("help")).is_err());

        let press = json!({
            "type": "block_actions",
            "user": {"id": "U0BOB", "username": "bob", "team_id": "T0FAKE"},
            "container": {"type": "message", "message_ts": "1.1", "channel_id": "D0BOB"},
            "channel": {"id": "D0BOB"},
            "actions": [{"action_id": "approve", "block_id": "b", "type": "button", "value": "ar-1", "action_ts": "1.2"}]
        });
        let form = serde_urlencoded::to_string([("payload", press.to_string())]).unwrap();
        assert_eq!(
            payload::interaction_from_json(press),
            payload::parse_interaction(form.as_bytes())
        );
        assert!(payload::interaction_from_json(json!({"user": {}})).is_err());
    }

    proptest::proptest! {
        /// Whatever arrives on the socket, reading it gives a frame or an
        /// error, never a panic; and an envelope's ack names its ID.
        #[test]
        fn any_frame_reads_without_panicking(
            kind in "(hello|disconnect|slash_commands|interactive|events_api|[a-z_]{0,12})",
            id in "[ -~]{0,40}",
            text in "[ -~]{0,40}",
            retry in proptest::option::of(0u64..5),
        ) {
            let mut frame = json!({"type": kind, "envelope_id": id, "reason": text,
                                   "payload": {"text": text, "type": text}});
            if let Some(retry) = retry {
                frame["retry_attempt"] = json!(retry);
            }
            if let Ok(Frame::Envelope(e)) = parse_frame(&frame.to_string()) {
                proptest::prop_assert_eq!(&ack(&e, None)["envelope_id"], &json!(id));
            }
            let _ = parse_frame(&text);
        }
    }

    #[test]
    fn the_ack_carries_a_payload_only_where_slack_takes_one() {
        let mut e = Envelope {
            id: "e-1".into(),
            kind: "slash_commands".into(),
            payload: json!({}),
            accepts_response_payload: true,
            retry_attempt: 0,
        };
        let answer = json!({"response_type": "ephemeral", "text": "hi"});
        assert_eq!(
            ack(&e, Some(answer.clone())),
            json!({"envelope_id": "e-1", "payload": answer})
        );
        assert_eq!(ack(&e, None), json!({"envelope_id": "e-1"}));
        e.accepts_response_payload = false;
        assert_eq!(ack(&e, Some(answer)), json!({"envelope_id": "e-1"}));
    }

    #[test]
    fn an_event_is_one_delivery_by_event_id_and_the_rest_by_envelope_id() {
        let event = |envelope: &str| Envelope {
            id: envelope.into(),
            kind: "events_api".into(),
            payload: json!({"type": "event_callback", "event_id": "Ev1"}),
            accepts_response_payload: false,
            retry_attempt: 0,
        };
        assert_eq!(replay_key(&event("e-1")), replay_key(&event("e-2")));
        let command = |envelope: &str| Envelope {
            kind: "slash_commands".into(),
            payload: json!({"text": "status"}),
            ..event(envelope)
        };
        assert_eq!(replay_key(&command("e-1")), replay_key(&command("e-1")));
        assert_ne!(replay_key(&command("e-1")), replay_key(&command("e-2")));
    }
}
