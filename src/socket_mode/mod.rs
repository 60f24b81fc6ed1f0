//! Socket Mode: Slack reaches the bot over a WebSocket the bot opens, so no
//! public URL is needed. Started by `app::serve` when `SLACK_APP_TOKEN` is
//! set, beside (not instead of) the HTTP server, which keeps the operator
//! endpoints.
//!
//! This file owns the lifecycle: [`SocketMode::run`] keeps one connection
//! up ([`connection`]). When Slack announces a `disconnect` (`warning`,
//! `refresh_requested`), the next connection is opened and has said hello
//! before the old one is closed, so nothing arrives on a dead socket. A
//! connection that drops without notice (network error, close without
//! `disconnect`, unanswered pings) is reopened with backoff and jitter.
//! `link_disabled` stops it for good: the log and `/healthz` say so.
//! Envelopes themselves are [`envelope`]'s: the same replay guard and
//! dispatch as HTTP, acked once durable.

mod connection;
mod envelope;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::dispatch::Dispatch;
use crate::http::Metrics;
use crate::replay::ReplayGuard;
use crate::retry::{backoff, Timing};
use crate::slack::SlackClient;
use crate::workflow::Workflow;

use connection::{Connection, Ending, Link, OpenError};
use envelope::Envelopes;

/// Where Socket Mode stands, for `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketState {
    /// Opening the first connection.
    Connecting,
    /// A connection is up (Slack said hello).
    Connected,
    /// The last connection dropped or could not be opened; trying again.
    Reconnecting,
    /// Slack disabled Socket Mode for the app; no more connections.
    LinkDisabled,
}

impl SocketState {
    pub fn label(self) -> &'static str {
        match self {
            SocketState::Connecting => "connecting",
            SocketState::Connected => "connected",
            SocketState::Reconnecting => "reconnecting",
            SocketState::LinkDisabled => "link_disabled",
        }
    }
}

/// The Socket Mode state shared with `/healthz`.
#[derive(Debug)]
pub struct SocketHealth {
    state: Mutex<SocketState>,
    /// Connections opened after the first one.
    reconnects: AtomicU64,
}

impl Default for SocketHealth {
    fn default() -> Self {
        SocketHealth {
            state: Mutex::new(SocketState::Connecting),
            reconnects: AtomicU64::new(0),
        }
    }
}

impl SocketHealth {
    pub fn state(&self) -> SocketState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    fn set(&self, state: SocketState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }
}

/// The Socket Mode transport, ready to run.
pub struct SocketMode {
    link: Link,
    endings: mpsc::Receiver<(u64, Ending)>,
    timing: Timing,
    health: Arc<SocketHealth>,
}

impl SocketMode {
    /// `app_token` is the app-level token; `api_url` the Web API base
    /// (`SLACK_API_URL`) that `apps.connections.open` is called on.
    pub fn new(
        api_url: &str,
        app_token: Secret,
        workflow: Arc<Workflow>,
        replay: ReplayGuard,
        metrics: Arc<Metrics>,
        timing: Timing,
        ping_every: Duration,
    ) -> SocketMode {
        let (endings_tx, endings) = mpsc::channel(16);
        SocketMode {
            link: Link {
                app_client: SlackClient::new(api_url, app_token),
                envelopes: Arc::new(Envelopes {
                    dispatch: Dispatch::new(workflow),
                    replay,
                    metrics,
                }),
                ping_every,
                endings: endings_tx,
            },
            endings,
            timing,
            health: Arc::new(SocketHealth::default()),
        }
    }

    /// What `/healthz` reads.
    pub fn health(&self) -> Arc<SocketHealth> {
        Arc::clone(&self.health)
    }

    /// Keeps a connection up until `cancel`, or until Slack disables the link.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut next_id = 0u64;
        let mut failures = 0u32;
        let mut current: Option<Connection> = None;
        loop {
            if current.is_none() {
                next_id += 1;
                match self.open_or_wait(next_id, &mut failures, &cancel).await {
                    Some(connection) => current = Some(connection),
                    None if cancel.is_cancelled() => return,
                    None => continue,
                }
            }
            let Some(live) = current.as_ref() else {
                continue;
            };
            let (id, ending) = tokio::select! {
                _ = cancel.cancelled() => {
                    if let Some(live) = current.take() {
                        live.close_and_wait().await;
                    }
                    return;
                }
                next = self.endings.recv() => match next {
                    Some(next) => next,
                    None => return,
                },
            };
            if id != live.id {
                continue; // a connection already replaced, ending late
            }
            match ending {
                Ending::Refresh(_) => {
                    // The old connection keeps working until the new one is up.
                    loop {
                        next_id += 1;
                        if let Some(fresh) =
                            self.open_or_wait(next_id, &mut failures, &cancel).await
                        {
                            if let Some(old) = current.replace(fresh) {
                                old.close();
                            }
                            break;
                        }
                        if cancel.is_cancelled() {
                            if let Some(old) = current.take() {
                                old.close();
                            }
                            return;
                        }
                    }
                }
                Ending::LinkDisabled => {
                    self.health.set(SocketState::LinkDisabled);
                    tracing::error!(
                        "Slack disabled Socket Mode for this app (disconnect reason link_disabled); \
                         not reconnecting. Slack cannot reach the bot until Socket Mode is turned \
                         back on in the app's settings and accessbot is restarted"
                    );
                    live.close();
                    return;
                }
                Ending::Dropped(_) => {
                    current = None;
                    self.health.set(SocketState::Reconnecting);
                    failures += 1;
                    if !self.wait_backoff(failures, &cancel).await {
                        return;
                    }
                }
            }
        }
    }

    /// Opens connection `id`; on failure logs why, waits the backoff and
    /// returns `None` (also when cancelled).
    async fn open_or_wait(
        &self,
        id: u64,
        failures: &mut u32,
        cancel: &CancellationToken,
    ) -> Option<Connection> {
        let opened = tokio::select! {
            _ = cancel.cancelled() => return None,
            opened = connection::open(id, &self.link) => opened,
        };
        match opened {
            Ok(connection) => {
                if id > 1 {
                    self.health.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                self.health.set(SocketState::Connected);
                *failures = 0;
                Some(connection)
            }
            Err(e) => {
                *failures += 1;
                let fix = fix_for(&e);
                tracing::error!(error = %e, attempt = *failures, "cannot open a Socket Mode connection{fix}");
                if self.health.state() != SocketState::Connecting {
                    self.health.set(SocketState::Reconnecting);
                }
                self.wait_backoff(*failures, cancel).await;
                None
            }
        }
    }

    /// Sleeps the backoff for `failures` with jitter; false when cancelled.
    async fn wait_backoff(&self, failures: u32, cancel: &CancellationToken) -> bool {
        let wait = jittered(backoff(&self.timing, failures));
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

/// Between half and all of `wait`, so replicas dropped together do not
/// reconnect together.
fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// What an operator can do about a failed open, when it is not transient.
fn fix_for(e: &OpenError) -> &'static str {
    match e {
        OpenError::Slack(s) => match s.api_error() {
            Some("invalid_auth" | "not_authed" | "token_revoked" | "account_inactive") => {
                ": Slack refuses SLACK_APP_TOKEN; generate an app-level token with the connections:write scope (Basic Information, App-Level Tokens) and restart"
            }
            Some("not_allowed_token_type") => {
                ": SLACK_APP_TOKEN is not an app-level token; use the xapp-... token from Basic Information, App-Level Tokens"
            }
            Some("missing_scope") => {
                ": the app-level token lacks the connections:write scope; add it under Basic Information, App-Level Tokens"
            }
            _ => "; retrying",
        },
        _ => "; retrying",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_all_of_the_backoff() {
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(2));
            assert!(
                j >= Duration::from_secs(1) && j <= Duration::from_secs(2),
                "{j:?}"
            );
        }
    }

    #[test]
    fn states_have_the_labels_healthz_shows() {
        let h = SocketHealth::default();
        assert_eq!(h.state().label(), "connecting");
        h.set(SocketState::LinkDisabled);
        assert_eq!(h.state().label(), "link_disabled");
    }
}
