//! The stand-in behind another server's port, for the playground: the same
//! state and the same answers as on the stand-in's own listener, reached
//! through [`FakeSlack::answer_http`] from the playground's `/api/{method}`
//! route. Also what only a person looking at Slack needs: trigger IDs tied to
//! the person who typed the command, the ephemeral messages each person sees,
//! the modal open for each person, and the workspace's people and groups.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use super::wire::{error_page, Incoming};
use super::{FakeSlack, Reply, Shared, State};

/// The answer to one Web API request, for the server that carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: &'static str,
    /// `Retry-After` in seconds, on a 429.
    pub retry_after: Option<u64>,
    /// `None`: the stand-in was told to drop the connection; the carrier
    /// cannot, so it answers 502 with no body.
    pub body: Option<String>,
}

/// One Web API request as another server received it.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub http_method: String,
    /// The whole path, `/api/{method}`.
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// A workspace member, as the playground lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: String,
    pub real_name: String,
    pub email: String,
}

impl FakeSlack {
    /// A stand-in without a listener of its own, answering requests that
    /// arrive on `addr` (another server's) through [`FakeSlack::answer_http`];
    /// `token` is the only valid bot token.
    pub fn on_shared_port(token: &str, addr: SocketAddr) -> FakeSlack {
        FakeSlack {
            shared: Arc::new(Shared {
                addr,
                started: Instant::now(),
                state: Mutex::new(State {
                    token: token.to_string(),
                    ..State::default()
                }),
            }),
        }
    }

    /// Records, answers and applies one request, exactly as the stand-in's
    /// own listener does, and waits out any configured delay.
    pub async fn answer_http(&self, request: HttpRequest) -> HttpAnswer {
        let incoming = Incoming {
            http_method: request.http_method,
            path: request.path,
            query: request.query,
            authorization: request.authorization,
            content_type: request.content_type,
            body: request.body,
            keep_alive: true,
        };
        let (reply, delay) = self.receive(&incoming);
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        match reply {
            Reply::Slack {
                status,
                body,
                retry_after,
            } => HttpAnswer {
                status,
                content_type: "application/json; charset=utf-8",
                retry_after,
                body: Some(body.to_string()),
            },
            Reply::Page { status } => HttpAnswer {
                status,
                content_type: "text/html; charset=utf-8",
                retry_after: None,
                body: Some(error_page(status)),
            },
            Reply::Drop => HttpAnswer {
                status: 502,
                content_type: "text/plain; charset=utf-8",
                retry_after: None,
                body: None,
            },
        }
    }

    /// A fresh trigger ID for something `user` did; a modal opened with it
    /// is `user`'s ([`FakeSlack::open_modal`]).
    pub fn issue_trigger(&self, user: &str) -> String {
        let mut state = self.state();
        let n = state.trigger_users.len() + 1;
        let trigger = format!("{n}.{}.standin{:08x}", user, rand::random::<u32>());
        state
            .trigger_users
            .insert(trigger.clone(), user.to_string());
        trigger
    }

    /// Adds an ephemeral message for `user` in `channel`, as Slack shows the
    /// answer to a slash command (`{"text", "blocks"}`).
    pub fn add_ephemeral(&self, channel: &str, user: &str, answer: &Value) {
        let mut state = self.state();
        let ts = state.next_ts();
        let blocks = answer.get("blocks").cloned().unwrap_or_else(|| json!([]));
        state.ephemerals.push(json!({
            "channel": channel, "user": user, "ts": ts,
            "text": answer["text"].as_str().unwrap_or_default(), "blocks": blocks,
        }));
        state.local_changes += 1;
    }

    /// The ephemeral messages `user` saw, oldest first, each `{channel, user, ts, text, blocks}`.
    pub fn ephemerals_for(&self, user: &str) -> Vec<Value> {
        self.state()
            .ephemerals
            .iter()
            .filter(|message| message["user"] == user)
            .cloned()
            .collect()
    }

    /// The modal open for `user` (the last one opened with a trigger of theirs), with its `id` and `hash`.
    pub fn open_modal(&self, user: &str) -> Option<Value> {
        let state = self.state();
        state
            .views
            .iter()
            .rev()
            .find(|stored| state.modal_of.get(&stored.id).map(String::as_str) == Some(user))
            .map(|stored| stored.view.clone())
    }

    /// Closes a modal: the person pressed Cancel, or the bot's answer to the
    /// submission closed it.
    pub fn close_modal(&self, view_id: &str) {
        let mut state = self.state();
        state.modal_of.remove(view_id);
        state.local_changes += 1;
    }

    /// Everyone [`FakeSlack::add_user`] made exist, by ID.
    pub fn members(&self) -> Vec<Member> {
        self.state()
            .users
            .iter()
            .map(|(id, user)| Member {
                id: id.clone(),
                real_name: user.real_name.clone(),
                email: user.email.clone(),
            })
            .collect()
    }

    /// Every user group with its current members, by ID.
    pub fn usergroups(&self) -> Vec<(String, Vec<String>)> {
        self.state()
            .usergroups
            .iter()
            .map(|(id, users)| (id.clone(), users.clone()))
            .collect()
    }

    /// A number that grows with every change a person could see: each call
    /// received and each change made outside one.
    pub fn generation(&self) -> u64 {
        let state = self.state();
        state.calls.len() as u64 + state.local_changes
    }
}
