//! End-to-end tests: the real `accessbot` binary, a fake Slack Web API, and
//! correctly signed requests. One binary, a module per feature.

#[path = "../support/mod.rs"]
mod support;

mod check;
mod core;
mod faults;
mod hardening;
mod limits;
mod migrate;
mod operator;
mod policies;
mod provisioning;
mod wording;
