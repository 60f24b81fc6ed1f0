//! Events API callbacks. Each event is handled once by its `event_id`
//! (Slack retries a delivery it thinks was lost, re-signed); the only event
//! the bot acts on is `app_home_opened`, which republishes the person's
//! Home tab through the outbox.

use super::Reply;
use crate::slack::payload::EventBody;
use crate::workflow::Workflow;

pub(super) async fn handle_event(wf: &Workflow, e: EventBody, is_retry: bool) -> Reply {
    match e {
        EventBody::UrlVerification { challenge } => Reply::Challenge(challenge),
        EventBody::Callback { event_id, event } => {
            let key = format!("event:{event_id}");
            match wf.delivery_answer(key.as_bytes()).await {
                Ok(Some(_)) => return Reply::AckNoRetry,
                Ok(None) => {}
                Err(_) => return Reply::Ack,
            }
            let _ = wf.remember_delivery(key.as_bytes(), b"").await;
            if event["type"] == "app_home_opened"
                && event["tab"].as_str().unwrap_or("home") == "home"
            {
                if let Some(user) = event["user"].as_str() {
                    super::home::publish_home(wf, user).await;
                }
            }
            if is_retry {
                Reply::AckNoRetry
            } else {
                Reply::Ack
            }
        }
        EventBody::Other(_) => Reply::Ack,
    }
}
