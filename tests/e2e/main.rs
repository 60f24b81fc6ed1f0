//! End-to-end tests: the real `accessbot` binary, a fake Slack Web API, and
//! correctly signed requests. One binary, a module per feature.
//!
//! Every feature module that starts the bot runs twice, on each store: `on_sled` and
//! `on_postgres` include the same files, and `support` starts the bot on the
//! engine of the module a test is in (`support::Engine::current`).
//! `replicas` runs several bots on one PostgreSQL database.

#[path = "../support/mod.rs"]
mod support;

mod check;
mod migrate;
// Including the same feature files twice is the point: once per engine.
#[allow(clippy::duplicate_mod)]
mod on_postgres;
#[allow(clippy::duplicate_mod)]
mod on_sled;
mod replicas;
