//! accessbot: just-in-time access through Slack.
//!
//! # Layout
//! - [`config`]: settings from `accessbot.toml` and the environment; secrets as [`config::Secret`].
//! - [`crashpoint`]: named points where tests make the process die, to prove recovery.
//! - [`duration`]: the one parser and formatter for durations (`30m`, `90 minutes`, `1h30m`).
//! - [`runbook`]: the runbook files: format, loading, validation (`accessbot check`).
//! - [`command`]: the text after `/access`, parsed.
//! - [`preflight`]: the start-up check of the Slack setup (token, audit channel) and its
//!   health.
//! - [`policy`]: who may request, who approves in which stage, when a request is decided.
//! - [`request`]: the domain of an access request: status, stages, approvals, extension.
//! - [`retry`]: backoff and the lifecycle's timing tunables.
//! - [`store`]: persistence only, behind one interface with two engines (sled embedded,
//!   PostgreSQL shared by replicas): requests, deadlines, outbox, audit log, replay guard.
//! - [`slack`]: Slack's side: signature check, incoming payloads, Web API client, wording, Block Kit.
//! - [`grant`]: grant providers (`command`, `webhook`, `slack_usergroup`) behind one trait.
//! - [`workflow`]: the request lifecycle: create, approve, deny, grant, revoke, expire.
//! - [`outbox`]: queued Slack operations, delivered in order, retried until Slack takes them.
//! - [`expiry`]: the timer loop that revokes grants and expires requests on time.
//! - [`audit`]: the tamper-evident audit log: its events, hash chain and verification.
//! - [`dispatch`]: Slack commands, interactions and events turned into workflow calls and a
//!   typed reply, apart from any transport.
//! - [`replay`]: the replay guard: one Slack delivery handled once, across transports and replicas.
//! - [`http`]: HTTP ingress (signature, replay guard, replies as responses) and the operator
//!   endpoints `/healthz`, `/metrics`, `/audit`.
//! - [`app`]: wires it all together, runs it, and shuts it down cleanly.
//! - [`slack_standin`]: a Slack Web API stand-in (users, groups, channels, DMs, views) that
//!   records every call; the end-to-end tests' fake Slack and the playground's Slack.
//! - [`playground`]: `accessbot playground`: the real bot against the stand-in, with a web
//!   page that plays Slack for a few made-up people.

pub mod app;
pub mod audit;
pub mod command;
pub mod config;
pub mod crashpoint;
pub mod dispatch;
pub mod duration;
pub mod expiry;
pub mod grant;
pub mod http;
pub mod outbox;
pub mod playground;
pub mod policy;
pub mod preflight;
pub mod replay;
pub mod request;
pub mod retry;
pub mod runbook;
pub mod slack;
pub mod slack_standin;
pub mod store;
pub mod workflow;
