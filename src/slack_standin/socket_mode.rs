//! The stand-in's Socket Mode endpoint: a real WebSocket server on 127.0.0.1
//! (tokio-tungstenite) that speaks like `wss-primary.slack.com`. The fake
//! Slack's `apps.connections.open` hands out its URLs, each with a ticket
//! that opens one connection only (a used or unknown ticket is refused at
//! the handshake, as Slack does). A new connection gets `hello` at once
//! unless the test holds it back. Tests send envelopes and `disconnect`
//! messages on a connection, drop it without a close frame, or silence it
//! (it stops reading, so pings go unanswered); every text frame the bot
//! sends (its acks) is recorded with the connection it came on, as are its
//! pings and whether the bot closed the connection itself.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// The app ID Slack puts in every Socket Mode URL and hello.
pub const APP_ID: &str = "A0ACCESS";

/// Handle on a running fake; clones share the same server and state.
#[derive(Clone)]
pub struct FakeSocketMode {
    shared: Arc<Shared>,
}

struct Shared {
    addr: SocketAddr,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    tickets_issued: u64,
    tickets_used: HashSet<u64>,
    /// Connections in the order they were opened; connection `n` is `conns[n - 1]`.
    conns: Vec<Conn>,
    hold_hello: bool,
    refused_handshakes: usize,
    next_envelope: u64,
}

struct Conn {
    to_client: mpsc::UnboundedSender<Command>,
    /// Text frames the bot sent, parsed (its acks), with when each arrived.
    received: Vec<(Value, Instant)>,
    pings: usize,
    hello_sent: bool,
    /// `Some("bot")` when the bot closed it with a close frame, `Some("gone")`
    /// when it vanished, `Some("fake")` when the test dropped it.
    closed: Option<&'static str>,
}

enum Command {
    Send(Value),
    Drop,
    Silence,
}

/// One recorded frame from the bot.
#[derive(Debug, Clone)]
pub struct Received {
    pub connection: usize,
    pub frame: Value,
    /// When the fake read it off the connection.
    pub at: Instant,
}

impl FakeSocketMode {
    pub async fn start() -> FakeSocketMode {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake Socket Mode: binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake Socket Mode: address");
        let fake = FakeSocketMode {
            shared: Arc::new(Shared {
                addr,
                state: Mutex::new(State::default()),
            }),
        };
        let server = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                tokio::spawn(server.clone().serve(stream));
            }
        });
        fake
    }

    /// A fresh single-use URL, as `apps.connections.open` returns it.
    pub fn issue_url(&self) -> String {
        let mut s = self.state();
        s.tickets_issued += 1;
        format!(
            "ws://{}/link/?ticket={}&app_id={APP_ID}",
            self.shared.addr, s.tickets_issued
        )
    }

    /// Whether new connections wait for [`FakeSocketMode::send_hello`].
    pub fn hold_hello(&self, hold: bool) {
        self.state().hold_hello = hold;
    }

    /// How many connections were opened so far.
    pub fn connections(&self) -> usize {
        self.state().conns.len()
    }

    /// Handshakes refused for a used or unknown ticket.
    pub fn refused_handshakes(&self) -> usize {
        self.state().refused_handshakes
    }

    /// Waits until connection `n` (1-based) exists; panics after `timeout`.
    pub async fn wait_connection(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.connections() < n {
            assert!(
                Instant::now() < deadline,
                "no Socket Mode connection #{n} within {timeout:?} ({} opened)",
                self.connections()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last connection opened that is still open.
    pub fn live_connection(&self) -> Option<usize> {
        let s = self.state();
        (1..=s.conns.len())
            .rev()
            .find(|n| s.conns[n - 1].closed.is_none())
    }

    pub fn send_hello(&self, conn: usize) {
        self.command(conn, Command::Send(hello()));
        self.state().conns[conn - 1].hello_sent = true;
    }

    /// Sends any JSON message on connection `conn`.
    pub fn send(&self, conn: usize, message: Value) {
        self.command(conn, Command::Send(message));
    }

    /// Sends an envelope of `kind` (`slash_commands`, `interactive`,
    /// `events_api`) with a new envelope ID, which it returns.
    pub fn envelope(&self, conn: usize, kind: &str, payload: Value) -> String {
        let id = {
            let mut s = self.state();
            s.next_envelope += 1;
            format!("fake-envelope-{}-{}", s.next_envelope, std::process::id())
        };
        self.envelope_with_id(conn, &id, kind, payload, 0);
        id
    }

    /// Sends an envelope with a given ID and `retry_attempt`, e.g. to
    /// deliver one again as Slack does after a reconnect.
    pub fn envelope_with_id(
        &self,
        conn: usize,
        id: &str,
        kind: &str,
        payload: Value,
        retry_attempt: u64,
    ) {
        let mut envelope = json!({
            "envelope_id": id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
        });
        if kind == "events_api" {
            envelope["retry_attempt"] = json!(retry_attempt);
            envelope["retry_reason"] = json!(if retry_attempt > 0 { "timeout" } else { "" });
        }
        self.send(conn, envelope);
    }

    /// `{"type": "disconnect", "reason": reason}` on connection `conn`.
    pub fn disconnect(&self, conn: usize, reason: &str) {
        self.send(
            conn,
            json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-socket-mode"}}),
        );
    }

    /// Closes connection `conn`'s TCP stream without a close frame.
    pub fn drop_connection(&self, conn: usize) {
        self.command(conn, Command::Drop);
    }

    /// Stops reading connection `conn`: the bot's pings go unanswered.
    pub fn silence(&self, conn: usize) {
        self.command(conn, Command::Silence);
    }

    /// Every frame the bot sent with `"envelope_id": id`, in order.
    pub fn acks_of(&self, id: &str) -> Vec<Received> {
        let s = self.state();
        s.conns
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                c.received
                    .iter()
                    .filter(|(f, _)| f["envelope_id"] == id)
                    .map(move |(f, at)| Received {
                        connection: i + 1,
                        frame: f.clone(),
                        at: *at,
                    })
            })
            .collect()
    }

    /// Waits for the bot's ack of envelope `id`; panics after `timeout`.
    pub async fn wait_ack(&self, id: &str, timeout: Duration) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ack) = self.acks_of(id).into_iter().next() {
                return ack;
            }
            assert!(
                Instant::now() < deadline,
                "no ack of envelope {id} within {timeout:?}; received: {:?}",
                self.all_received()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn all_received(&self) -> Vec<Received> {
        let s = self.state();
        s.conns
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                c.received.iter().map(move |(f, at)| Received {
                    connection: i + 1,
                    frame: f.clone(),
                    at: *at,
                })
            })
            .collect()
    }

    /// Pings the bot sent on connection `conn`.
    pub fn pings(&self, conn: usize) -> usize {
        self.state().conns[conn - 1].pings
    }

    /// How connection `conn` ended, if it has: `bot` (a close frame from
    /// the bot), `gone` (the bot vanished) or `fake` (dropped by the test).
    pub fn closed(&self, conn: usize) -> Option<&'static str> {
        self.state().conns[conn - 1].closed
    }

    /// Waits until connection `conn` has ended; returns how.
    pub async fn wait_closed(&self, conn: usize, timeout: Duration) -> &'static str {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(how) = self.closed(conn) {
                return how;
            }
            assert!(
                Instant::now() < deadline,
                "Socket Mode connection #{conn} still open after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn command(&self, conn: usize, command: Command) {
        let s = self.state();
        let c = s
            .conns
            .get(conn - 1)
            .unwrap_or_else(|| panic!("no Socket Mode connection #{conn}"));
        let _ = c.to_client.send(command);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One connection: the handshake (the ticket must be one issued and not
    /// used), then frames both ways until it ends.
    // The refusal's type is tungstenite's; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    async fn serve(self, stream: tokio::net::TcpStream) {
        let fake = self.clone();
        let check_ticket = move |request: &Request, response: Response| {
            let ticket = request
                .uri()
                .query()
                .unwrap_or_default()
                .split('&')
                .find_map(|kv| kv.strip_prefix("ticket="))
                .and_then(|t| t.parse::<u64>().ok());
            let mut s = fake.state();
            match ticket {
                Some(t)
                    if request.uri().path() == "/link/"
                        && t <= s.tickets_issued
                        && s.tickets_used.insert(t) =>
                {
                    Ok(response)
                }
                _ => {
                    s.refused_handshakes += 1;
                    let mut refusal = ErrorResponse::new(Some("invalid or used ticket".into()));
                    *refusal.status_mut() =
                        tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
                    Err(refusal)
                }
            }
        };
        let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, check_ticket).await else {
            return;
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (index, hold) = {
            let mut s = self.state();
            s.conns.push(Conn {
                to_client: tx,
                received: vec![],
                pings: 0,
                hello_sent: false,
                closed: None,
            });
            (s.conns.len() - 1, s.hold_hello)
        };
        if !hold {
            self.state().conns[index].hello_sent = true;
            if ws
                .send(Message::Text(hello().to_string().into()))
                .await
                .is_err()
            {
                self.state().conns[index].closed = Some("gone");
                return;
            }
        }
        let how = loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::Send(v)) => {
                        if ws.send(Message::Text(v.to_string().into())).await.is_err() {
                            break "gone";
                        }
                    }
                    Some(Command::Drop) | None => break "fake",
                    Some(Command::Silence) => {
                        // Keep the TCP stream open, read nothing, answer nothing.
                        loop {
                            match rx.recv().await {
                                Some(Command::Drop) | None => break,
                                Some(_) => {}
                            }
                        }
                        break "fake";
                    }
                },
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        let v = serde_json::from_str(text.as_str())
                            .unwrap_or_else(|_| Value::String(text.to_string()));
                        self.state().conns[index].received.push((v, Instant::now()));
                    }
                    Some(Ok(Message::Ping(_))) => self.state().conns[index].pings += 1,
                    Some(Ok(Message::Close(_))) => break "bot",
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break "gone",
                },
            }
        };
        self.state().conns[index].closed = Some(how);
        // Dropping `ws` closes the TCP stream without a close frame.
    }
}

fn hello() -> Value {
    json!({
        "type": "hello",
        "num_connections": 1,
        "debug_info": {"host": "fake-socket-mode", "approximate_connection_time": 18060},
        "connection_info": {"app_id": APP_ID}
    })
}

/// A slash command as Socket Mode delivers it: the fields of the HTTP form,
/// as one JSON object.
pub fn slash_payload(user: &str, text: &str, trigger: u64) -> Value {
    json!({
        "token": "deprecated",
        "team_id": "T0FAKE",
        "team_domain": "example",
        "channel_id": "C0GENERAL",
        "channel_name": "general",
        "user_id": user,
        "user_name": "someone",
        "command": "/access",
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": "https://hooks.slack.com/commands/T0FAKE/1/x",
        "trigger_id": format!("trig.socket.{user}.{trigger}"),
    })
}
