//! Slack's side of the bot: request signatures, incoming payloads, the Web
//! API client and the Block Kit views. Nothing outside this module builds
//! Slack JSON or speaks Slack's HTTP.

pub mod blocks;
pub mod client;
pub mod payload;
pub mod signature;

pub use client::{SlackClient, SlackError, UserInfo};
