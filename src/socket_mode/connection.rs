//! One Socket Mode WebSocket connection: asked for with
//! `apps.connections.open`, up once Slack's `hello` arrives, then read until
//! it ends. Each envelope is handled in a task of its own (so a slow one
//! does not hold back the rest) and its ack goes back on this connection.
//! The connection pings Slack and counts as dropped when nothing answers
//! within one more ping interval. How it ended ([`Ending`]) goes to the
//! supervisor in `mod.rs`, which decides what comes next; a connection only
//! closes itself when told to ([`Connection::close`]), and then first waits
//! for the acks of the envelopes it is still handling.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::envelope::{parse_frame, Envelopes, Frame};
use crate::slack::{SlackClient, SlackError};

/// How long a connection waits for Slack's `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a closing connection waits for the acks of envelopes still
/// being handled: Slack stops waiting for them after 3 seconds anyway.
const ACK_GRACE: Duration = Duration::from_secs(3);

/// How a connection ended, or announced that it will end.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ending {
    /// `disconnect` with reason `warning` or `refresh_requested` (or one
    /// not known yet): the connection still works; open the next one.
    Refresh(String),
    /// `disconnect` with reason `link_disabled`: Socket Mode was turned off
    /// for the app.
    LinkDisabled,
    /// The connection is gone without notice.
    Dropped(String),
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(super) enum OpenError {
    #[error("{0}")]
    Slack(#[from] SlackError),
    #[error("the WebSocket connection failed: {0}")]
    Connect(String),
    #[error("Slack sent no hello within {} s", HELLO_TIMEOUT.as_secs())]
    NoHello,
}

/// A live connection, as the supervisor holds it.
pub(super) struct Connection {
    pub id: u64,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Stops reading, waits for the acks still being made, then sends a
    /// close frame. Returns at once; the closing happens in the background.
    pub(super) fn close(&self) {
        self.stop.cancel();
    }

    /// [`Connection::close`], and waits until it is closed (at shutdown,
    /// so envelopes being handled get their acks first).
    pub(super) async fn close_and_wait(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// What a connection needs to run.
pub(super) struct Link {
    /// The Web API client with the app-level token.
    pub app_client: SlackClient,
    pub envelopes: Arc<Envelopes>,
    pub ping_every: Duration,
    pub endings: mpsc::Sender<(u64, Ending)>,
}

/// Opens connection `id` and returns once Slack said hello.
pub(super) async fn open(id: u64, link: &Link) -> Result<Connection, OpenError> {
    let url = link.app_client.connections_open().await?;
    // The URL holds a single-use ticket: only its host is logged.
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', '?']).next())
        .unwrap_or("?")
        .to_string();
    let (socket, _) = tokio::time::timeout(HELLO_TIMEOUT, tokio_tungstenite::connect_async(&url))
        .await
        .map_err(|_| OpenError::Connect(format!("{host} did not answer")))?
        .map_err(|e| OpenError::Connect(format!("{host}: {e}")))?;
    let stop = CancellationToken::new();
    let (hello_tx, hello_rx) = oneshot::channel();
    let task = tokio::spawn(run(
        id,
        socket,
        Arc::clone(&link.envelopes),
        link.ping_every,
        link.endings.clone(),
        stop.clone(),
        hello_tx,
    ));
    match tokio::time::timeout(HELLO_TIMEOUT, hello_rx).await {
        Ok(Ok(())) => {
            tracing::info!(connection = id, %host, "Socket Mode connection is up");
            Ok(Connection { id, stop, task })
        }
        Ok(Err(_)) => Err(OpenError::Connect(format!(
            "{host} closed the connection before hello"
        ))),
        Err(_) => {
            stop.cancel();
            Err(OpenError::NoHello)
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads connection `id` until it ends or is told to stop.
async fn run(
    id: u64,
    socket: Socket,
    envelopes: Arc<Envelopes>,
    ping_every: Duration,
    endings: mpsc::Sender<(u64, Ending)>,
    stop: CancellationToken,
    hello: oneshot::Sender<()>,
) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut outgoing) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let handlers = TaskTracker::new();
    let mut hello = Some(hello);
    // Only the first ending counts: Slack closing a connection after its
    // `disconnect` notice is the end it announced, not a drop.
    let mut announced = false;
    let report = |ending: Ending, announced: &mut bool| {
        if !*announced {
            *announced = true;
            // The supervisor may be gone at shutdown; nothing to tell then.
            let _ = endings.try_send((id, ending));
        }
    };
    let mut pings = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    // On a busy machine a late tick must not be followed by an immediate
    // one, which would find the ping just sent unanswered.
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    let dropped = loop {
        tokio::select! {
            _ = stop.cancelled() => break None,
            _ = pings.tick() => {
                if let Some(sent) = ping_sent {
                    if last_heard < sent {
                        break Some(format!("no answer to a ping within {} s", ping_every.as_secs_f64()));
                    }
                }
                ping_sent = Some(Instant::now());
                if out.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break Some("the connection cannot be written to".into());
                }
            }
            message = stream.next() => {
                last_heard = Instant::now();
                let text = match message {
                    None => break Some("closed without a disconnect message".into()),
                    Some(Err(e)) => break Some(e.to_string()),
                    Some(Ok(Message::Close(_))) => break Some("closed by Slack without a disconnect message".into()),
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                };
                match parse_frame(text.as_str()) {
                    Ok(Frame::Hello) => {
                        if let Some(hello) = hello.take() {
                            let _ = hello.send(());
                        }
                    }
                    Ok(Frame::Envelope(envelope)) => {
                        let (envelopes, out) = (Arc::clone(&envelopes), out.clone());
                        handlers.spawn(async move {
                            if let Some(ack) = envelopes.handle(&envelope).await {
                                if out.send(Message::Text(ack.to_string().into())).await.is_err() {
                                    tracing::warn!(envelope_id = %envelope.id, "the connection closed before the ack; Slack delivers the envelope again and gets the same answer");
                                }
                            }
                        });
                    }
                    Ok(Frame::Disconnect { reason }) if reason == "link_disabled" => {
                        report(Ending::LinkDisabled, &mut announced);
                    }
                    Ok(Frame::Disconnect { reason }) => {
                        tracing::info!(connection = id, %reason, "Slack will close this Socket Mode connection; opening the next one first");
                        report(Ending::Refresh(reason), &mut announced);
                    }
                    Ok(Frame::Other(kind)) => tracing::debug!(%kind, "Socket Mode message ignored"),
                    Err(e) => tracing::warn!(connection = id, error = %e, "unreadable Socket Mode message ignored"),
                }
            }
        }
    };
    match dropped {
        Some(why) if announced => {
            tracing::info!(connection = id, reason = %why, "Socket Mode connection closed after Slack's disconnect notice");
            handlers.close();
            drop(out);
            writer.abort();
        }
        Some(why) => {
            tracing::warn!(connection = id, reason = %why, "Socket Mode connection dropped");
            report(Ending::Dropped(why), &mut announced);
            // Handlers still finish (their work is durable); their acks
            // are lost, and Slack delivers those envelopes again.
            handlers.close();
            drop(out);
            writer.abort();
        }
        None => {
            handlers.close();
            if tokio::time::timeout(ACK_GRACE, handlers.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    connection = id,
                    "closing a Socket Mode connection with envelopes still being handled"
                );
            }
            let _ = out.send(Message::Close(None)).await;
            drop(out);
            let _ = tokio::time::timeout(ACK_GRACE, writer).await;
            tracing::info!(connection = id, "Socket Mode connection closed");
        }
    }
}
