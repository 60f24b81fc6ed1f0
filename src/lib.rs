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
//! - [`schedule`]: scheduled starts: `at 09:00` in the requester's time zone, the allowed
//!   window, and the `Scheduled` wait before the grant.
//! - [`store`]: persistence only, behind one interface with two engines (sled embedded,
//!   PostgreSQL shared by replicas): requests, deadlines, outbox, audit log, replay guard.
//! - [`slack`]: Slack's side: signature check, incoming payloads, Web API client, wording, Block Kit.
//! - [`grant`]: grant providers (`command`, `webhook`, `slack_usergroup`, `postgres`) behind one trait.
//! - [`workflow`]: the request lifecycle: create, approve, deny, grant, revoke, expire.
//! - [`outbox`]: queued Slack operations, delivered in order, retried until Slack takes them.
//! - [`expiry`]: the timer loop that revokes grants and expires requests on time.
//! - [`audit`]: the tamper-evident audit log: its events, hash chain and verification.
//! - [`audit_notice`]: the audit channel: notices threaded per request, loud ones broadcast,
//!   a backlog sent as digests.
//! - [`audit_cli`]: `accessbot audit verify|export` on either store engine.
//! - [`metrics`]: Prometheus counters and histograms, and the `/metrics` text.
//! - [`retention`]: removing finished requests and pruning the audit log to a checkpoint.
//! - [`dispatch`]: Slack commands, interactions and events turned into workflow calls and a
//!   typed reply, apart from any transport.
//! - [`replay`]: the replay guard: one Slack delivery handled once, across transports and replicas.
//! - [`http`]: HTTP ingress (signature, replay guard, replies as responses) and the operator
//!   endpoints `/healthz`, `/metrics`, `/audit`.
//! - [`identity`]: who a Slack user is in the grant targets (`[identities]`, else their email).
//! - [`reconcile`]: `accessbot reconcile`: the store's grants against what the targets hold.
//! - [`socket_mode`]: the Socket Mode transport (Slack over a WebSocket the bot opens, no
//!   public URL): connection lifecycle, envelopes through the same dispatch, acks.
//! - [`feedback`]: the requester's answers on a grant that ended (was the time right, did it work).
//! - [`report`]: where access is needed: per-runbook figures, who holds access, standing-access
//!   hints and duration suggestions, computed from requests (pure).
//! - [`app`]: wires it all together, runs it, and shuts it down cleanly.
//! - [`slack_standin`]: a Slack Web API stand-in (users, groups, channels, DMs, views) that
//!   records every call; the end-to-end tests' fake Slack and the playground's Slack.
//! - [`playground`]: `accessbot playground`: the real bot against the stand-in, with a web
//!   page that plays Slack for a few made-up people.

pub mod app;
pub mod audit;
pub mod audit_cli;
pub mod audit_notice;
pub mod command;
pub mod config;
pub mod crashpoint;
pub mod dispatch;
pub mod duration;
pub mod expiry;
pub mod feedback;
pub mod grant;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod outbox;
pub mod playground;
pub mod policy;
pub mod preflight;
pub mod reconcile;
pub mod replay;
pub mod report;
pub mod request;
pub mod retention;
pub mod retry;
pub mod runbook;
pub mod schedule;
pub mod slack;
pub mod slack_standin;
pub mod socket_mode;
pub mod store;
pub mod workflow;
