//! The Slack stand-in: a Slack Web API that the end-to-end tests and the
//! playground share. It owns a small real HTTP/1.1 server on 127.0.0.1 that
//! answers `POST /api/{method}` the way Slack does (HTTP 200 with
//! `{"ok": true, ...}` or `{"ok": false, "error"}`, 429 with `Retry-After`),
//! keeps the workspace state those answers need (users, user groups, channel
//! messages, views), checks Block Kit limits like Slack ([`limits`]), and
//! records every call it receives. Tests inject faults (errors, rate limits,
//! HTTP errors, dropped connections, delays, a full outage) to drive the bot's
//! retry paths. The server speaks HTTP by hand on a raw `TcpListener`
//! ([`wire`]) rather than through axum so that it can close a connection
//! without answering, which is what a dropped request looks like to a client.
//! The playground serves the same state and answers from its own port instead
//! ([`shared_port`]).
//!
//! Each call is recorded, answered and applied to the fake's state in one step
//! when the request arrives; a configured delay only holds back the bytes on
//! the wire. So a test that sees a call in `calls()` also sees its effect in
//! `messages_in()`, and a client that times out during a delay has still
//! changed Slack, as it would in production.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod limits;
mod methods;
mod shared_port;
mod socket_mode;
mod wire;

pub use socket_mode::{slash_payload, FakeSocketMode, Received};

pub use shared_port::{HttpAnswer, HttpRequest, Member};

use limits::{message_content, view_arg};
use wire::{error_page, http_bytes, parse_body, parse_request, Incoming, FORM_ONLY};

/// One request the fake received, whatever it was answered.
#[derive(Clone, Debug)]
pub struct Call {
    /// The Web API method, e.g. `chat.postMessage`; the whole path for requests outside `/api/`.
    pub method: String,
    /// The JSON body, a form body as an object of strings, or the raw text when it could not be parsed.
    pub body: Value,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub at: Instant,
    /// The body we answered: Slack JSON, an HTTP error page as a string, or `Null` when the connection was dropped.
    pub answered: Value,
}

/// Handle on a running fake; clones share the same server and state.
#[derive(Clone)]
pub struct FakeSlack {
    shared: Arc<Shared>,
}

struct Shared {
    addr: SocketAddr,
    started: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    token: String,
    calls: Vec<Call>,
    /// Pending faults in registration order; each is consumed by the next matching calls.
    faults: Vec<Fault>,
    delays: HashMap<String, Duration>,
    down: bool,
    users: BTreeMap<String, User>,
    profile_fields: HashMap<String, BTreeMap<String, String>>,
    usergroups: BTreeMap<String, Vec<String>>,
    missing_channels: HashSet<String>,
    not_in_channels: HashSet<String>,
    /// Channel ID to messages in the order they were posted, each `{ts, text, blocks[, thread_ts]}`.
    messages: HashMap<String, Vec<Value>>,
    used_triggers: HashSet<String>,
    views: Vec<StoredView>,
    last_ts: u64,
    last_view: u64,
    /// The app-level token `apps.connections.open` accepts, and the Socket
    /// Mode endpoint whose URLs it hands out.
    socket_mode: Option<(String, socket_mode::FakeSocketMode)>,
    /// Channels that take at most one `chat.postMessage` per interval, like
    /// Slack's about one message per second per channel: channel ->
    /// (interval, Retry-After seconds, when the last post was accepted).
    channel_limits: HashMap<String, (Duration, u64, Option<Instant>)>,
    /// Ephemeral messages, each `{channel, user, ts, text, blocks}`: Slack
    /// keeps none, but the playground shows them to the person they are for.
    ephemerals: Vec<Value>,
    /// Who each trigger ID was issued to (the playground issues them), so a
    /// modal opened with it is shown to that person.
    trigger_users: HashMap<String, String>,
    /// Open modals: view ID to the person it was opened for.
    modal_of: HashMap<String, String>,
    /// Changes made outside a Web API call (an ephemeral answer, a closed modal).
    local_changes: u64,
}

struct User {
    real_name: String,
    email: String,
    /// `tz` and `tz_offset` (seconds east of UTC), as `users.info` gives them.
    tz: (String, i64),
}

struct StoredView {
    id: String,
    hash: String,
    /// The user whose Home tab this is, for views published with `views.publish`.
    home_of: Option<String>,
    view: Value,
}

struct Fault {
    method: String,
    remaining: usize,
    kind: FaultKind,
}

#[derive(Clone)]
enum FaultKind {
    Error(String),
    RateLimit(u64),
    Http(u16),
    Drop,
    /// Answers `ok` and changes nothing.
    Ignore,
}

/// What goes back on the wire for one request.
enum Reply {
    Slack {
        status: u16,
        body: Value,
        retry_after: Option<u64>,
    },
    Page {
        status: u16,
    },
    Drop,
}

/// A handler's answer: `Ok` gets `"ok": true` added, `Err` is a complete failure body.
type Answer = Result<Value, Value>;

const BOT_USER: &str = "U0ACCESSBOT";
const TEAM: &str = "T0FAKE";

impl FakeSlack {
    /// Binds 127.0.0.1 on a free port and serves on the current tokio runtime; `token` is the only valid bot token.
    pub async fn start(token: &str) -> FakeSlack {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake Slack: binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake Slack: local address");
        let fake = FakeSlack {
            shared: Arc::new(Shared {
                addr,
                started: Instant::now(),
                state: Mutex::new(State {
                    token: token.to_string(),
                    ..State::default()
                }),
            }),
        };
        let server = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                tokio::spawn(server.clone().serve_connection(stream));
            }
        });
        fake
    }

    /// Turns on `apps.connections.open`: callers bearing `app_token` get a
    /// fresh URL of `endpoint`.
    pub fn enable_socket_mode(&self, app_token: &str, endpoint: socket_mode::FakeSocketMode) {
        self.state().socket_mode = Some((app_token.to_string(), endpoint));
    }

    /// The base for `SLACK_API_URL`; methods live at `{url}/{method}`.
    pub fn url(&self) -> String {
        format!("http://{}/api", self.shared.addr)
    }

    /// Every call to `method`, answered successfully or not, in the order received.
    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.state()
            .calls
            .iter()
            .filter(|call| call.method == method)
            .cloned()
            .collect()
    }

    pub fn all_calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Waits for a call to `method` matching `pred`; panics with the recorded calls after `timeout`.
    pub async fn wait_for(
        &self,
        method: &str,
        timeout: Duration,
        pred: impl Fn(&Call) -> bool,
    ) -> Call {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(call) = self.calls(method).into_iter().find(|call| pred(call)) {
                return call;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}",
                    self.dump(method, &format!("no matching call within {timeout:?}"))
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until at least `n` calls to `method` were received and returns all of them.
    pub async fn wait_for_count(&self, method: &str, n: usize, timeout: Duration) -> Vec<Call> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls(method);
            if calls.len() >= n {
                return calls;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}",
                    self.dump(
                        method,
                        &format!("expected {n} calls within {timeout:?}, got {}", calls.len())
                    )
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Makes a user exist: `users.info`, `users.profile.get` and `conversations.open` know only these.
    pub fn add_user(&self, id: &str, real_name: &str, email: &str) {
        self.state().users.insert(
            id.to_string(),
            User {
                real_name: real_name.to_string(),
                email: email.to_string(),
                tz: ("Europe/London".to_string(), 0),
            },
        );
    }

    /// Sets a user's time zone: `users.info` answers `tz` (an IANA name),
    /// `tz_label` and `tz_offset` (seconds east of UTC), like Slack.
    pub fn set_user_tz(&self, id: &str, tz: &str, offset_secs: i64) {
        if let Some(user) = self.state().users.get_mut(id) {
            user.tz = (tz.to_string(), offset_secs);
        }
    }

    /// Sets a custom profile field, returned by `users.profile.get` as `fields[field_id] = {value, alt}`.
    pub fn set_profile_field(&self, user: &str, field_id: &str, value: &str) {
        self.state()
            .profile_fields
            .entry(user.to_string())
            .or_default()
            .insert(field_id.to_string(), value.to_string());
    }

    pub fn set_usergroup(&self, id: &str, users: &[&str]) {
        let users = users.iter().map(|user| user.to_string()).collect();
        self.state().usergroups.insert(id.to_string(), users);
    }

    /// Current members, including changes made through `usergroups.users.update`.
    pub fn usergroup_members(&self, id: &str) -> Vec<String> {
        self.state().usergroups.get(id).cloned().unwrap_or_default()
    }

    /// Posting to this channel, or `conversations.info` on it, answers `channel_not_found`.
    pub fn set_channel_missing(&self, id: &str) {
        self.state().missing_channels.insert(id.to_string());
    }

    /// The bot was never invited here: posting answers `not_in_channel`, and
    /// `conversations.info` says `is_member: false` (or `channel_not_found`
    /// for a private `G…` channel, which the bot cannot see).
    pub fn set_not_in_channel(&self, id: &str) {
        self.state().not_in_channels.insert(id.to_string());
    }

    /// Undoes [`FakeSlack::set_not_in_channel`]: someone typed `/invite @accessbot` there.
    pub fn invite_bot(&self, id: &str) {
        self.state().not_in_channels.remove(id);
    }

    /// The next `n` calls to `method` ("*" for any) answer 200 `{"ok": false, "error": error}`.
    pub fn fail_next(&self, method: &str, n: usize, error: &str) {
        self.add_fault(method, n, FaultKind::Error(error.to_string()));
    }

    /// The next `n` calls to `method` ("*" for any) answer 429 with `Retry-After: retry_after_secs`.
    pub fn rate_limit_next(&self, method: &str, n: usize, retry_after_secs: u64) {
        self.add_fault(method, n, FaultKind::RateLimit(retry_after_secs));
    }

    /// The next `n` calls to `method` ("*" for any) answer HTTP `status` with an HTML page, as a load balancer would.
    pub fn http_error_next(&self, method: &str, n: usize, status: u16) {
        self.add_fault(method, n, FaultKind::Http(status));
    }

    /// The next `n` calls to `method` ("*" for any) are read, then the connection is closed without an answer.
    pub fn drop_next(&self, method: &str, n: usize) {
        self.add_fault(method, n, FaultKind::Drop);
    }

    /// The next `n` calls to `method` answer `{"ok": true}` and change
    /// nothing: a write the API accepted but did not carry out.
    pub fn ignore_next(&self, method: &str, n: usize) {
        self.add_fault(method, n, FaultKind::Ignore);
    }

    /// From now on `chat.postMessage` to `channel` is accepted at most once
    /// per `every`; a post sooner than that answers 429 with `Retry-After:
    /// retry_after_secs` and is not stored, like Slack's per-channel limit.
    pub fn rate_limit_channel(&self, channel: &str, every: Duration, retry_after_secs: u64) {
        self.state()
            .channel_limits
            .insert(channel.to_string(), (every, retry_after_secs, None));
    }

    /// Every call to `method` ("*" for all; a method's own delay wins) waits this long before its answer is sent.
    pub fn set_delay(&self, method: &str, delay: Duration) {
        self.state().delays.insert(method.to_string(), delay);
    }

    /// While down, every request is recorded and its connection closed without an answer.
    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    /// Current messages in `channel` (after updates), each `{ts, text, blocks}` plus `thread_ts` for replies.
    pub fn messages_in(&self, channel: &str) -> Vec<Value> {
        self.state()
            .messages
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    pub fn message(&self, channel: &str, ts: &str) -> Option<Value> {
        self.messages_in(channel)
            .into_iter()
            .find(|message| message["ts"] == ts)
    }

    /// Current views, modals and Home tabs, in the order they were first opened, each with its `id` and `hash`.
    pub fn views(&self) -> Vec<Value> {
        self.state()
            .views
            .iter()
            .map(|stored| stored.view.clone())
            .collect()
    }

    /// The Home tab last published for `user`.
    pub fn home_view(&self, user: &str) -> Option<Value> {
        self.state()
            .views
            .iter()
            .find(|stored| stored.home_of.as_deref() == Some(user))
            .map(|stored| stored.view.clone())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the calls from the next assertion.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn add_fault(&self, method: &str, n: usize, kind: FaultKind) {
        if n > 0 {
            self.state().faults.push(Fault {
                method: method.to_string(),
                remaining: n,
                kind,
            });
        }
    }

    fn dump(&self, method: &str, problem: &str) -> String {
        let state = self.state();
        let mut out = format!("fake Slack: {method}: {problem}\n");
        let mine: Vec<&Call> = state.calls.iter().filter(|c| c.method == method).collect();
        out += &format!("{} recorded {method} call(s):\n", mine.len());
        for (i, call) in mine.iter().enumerate() {
            out += &format!(
                "  #{i} at +{:.3}s\n    body:     {}\n    answered: {}\n",
                call.at.duration_since(self.shared.started).as_secs_f64(),
                call.body,
                call.answered
            );
        }
        let mut others: BTreeMap<&str, usize> = BTreeMap::new();
        for call in state.calls.iter().filter(|c| c.method != method) {
            *others.entry(call.method.as_str()).or_default() += 1;
        }
        out += &format!("other calls: {others:?}\n");
        out
    }

    async fn serve_connection(self, mut stream: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let request = loop {
                match parse_request(&buf) {
                    Ok(Some((request, used))) => {
                        buf.drain(..used);
                        break request;
                    }
                    Ok(None) => {}
                    Err(problem) => {
                        let page = format!("bad request: {problem}");
                        let bytes = http_bytes(400, "text/plain", &page, None, false);
                        let _ = stream.write_all(&bytes).await;
                        return;
                    }
                }
                let mut chunk = [0u8; 16 * 1024];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let keep_alive = request.keep_alive;
            let (reply, delay) = self.receive(&request);
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let bytes = match reply {
                Reply::Drop => return,
                Reply::Slack {
                    status,
                    body,
                    retry_after,
                } => http_bytes(
                    status,
                    "application/json; charset=utf-8",
                    &body.to_string(),
                    retry_after,
                    keep_alive,
                ),
                Reply::Page { status } => http_bytes(
                    status,
                    "text/html; charset=utf-8",
                    &error_page(status),
                    None,
                    keep_alive,
                ),
            };
            if stream.write_all(&bytes).await.is_err() || !keep_alive {
                return;
            }
        }
    }

    /// Records the call and settles its answer and effects under one lock.
    fn receive(&self, request: &Incoming) -> (Reply, Option<Duration>) {
        let method = match request.path.strip_prefix("/api/") {
            Some(method) if !method.is_empty() && !method.contains('/') => method.to_string(),
            _ => request.path.clone(),
        };
        let (body, body_error) = parse_body(request.content_type.as_deref(), &request.body);
        let mut state = self.state();
        state.calls.push(Call {
            method: method.clone(),
            body: body.clone(),
            authorization: request.authorization.clone(),
            content_type: request.content_type.clone(),
            at: Instant::now(),
            answered: Value::Null,
        });
        let (reply, delay) = if state.down {
            (Reply::Drop, None)
        } else {
            let delay = state
                .delays
                .get(&method)
                .or_else(|| state.delays.get("*"))
                .copied();
            let reply = match state.take_fault(&method) {
                Some(FaultKind::Error(error)) => slack_reply(fail(&error)),
                Some(FaultKind::RateLimit(secs)) => Reply::Slack {
                    status: 429,
                    body: fail("ratelimited"),
                    retry_after: Some(secs),
                },
                Some(FaultKind::Http(status)) => Reply::Page { status },
                Some(FaultKind::Drop) => Reply::Drop,
                Some(FaultKind::Ignore) => slack_reply(json!({"ok": true})),
                None => match state.channel_limited(&method, &body) {
                    Some(secs) => Reply::Slack {
                        status: 429,
                        body: fail("ratelimited"),
                        retry_after: Some(secs),
                    },
                    None => state.answer(&method, request, body, body_error),
                },
            };
            (reply, delay)
        };
        let answered = match &reply {
            Reply::Slack { body, .. } => body.clone(),
            Reply::Page { status } => Value::String(error_page(*status)),
            Reply::Drop => Value::Null,
        };
        if let Some(call) = state.calls.last_mut() {
            call.answered = answered;
        }
        (reply, delay)
    }
}

/// The name the fake gives a channel: its ID without the kind letter, in
/// lower case (`C0AUDIT` is `#0audit`).
pub fn channel_name(id: &str) -> String {
    id.get(1..).unwrap_or_default().to_lowercase()
}

fn fail(error: &str) -> Value {
    json!({"ok": false, "error": error})
}

fn fail_with(error: &str, messages: Vec<String>) -> Value {
    json!({"ok": false, "error": error, "response_metadata": {"messages": messages}})
}

fn invalid_arguments(messages: Vec<String>) -> Value {
    fail_with("invalid_arguments", messages)
}

fn slack_reply(body: Value) -> Reply {
    Reply::Slack {
        status: 200,
        body,
        retry_after: None,
    }
}

/// A non-empty string argument.
fn str_arg<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
}

/// A structured argument, which form bodies (and some JSON clients) send as a JSON string.
fn json_arg(body: &Value, key: &str) -> Result<Option<Value>, String> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| format!("[ERROR] {key} is not valid JSON: {e}")),
        Some(value) => Ok(Some(value.clone())),
    }
}

/// IDs given as a comma-separated string or as an array of strings.
fn id_list(body: &Value, key: &str) -> Vec<String> {
    let ids: Vec<String> = match body.get(key) {
        Some(Value::String(text)) => text.split(',').map(str::to_string).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    ids.into_iter()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
        .collect()
}
