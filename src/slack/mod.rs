//! Slack's side of the bot: request signatures, incoming payloads, the Web
//! API client, the Block Kit views and the lifecycle's wording (`text`).
//! Nothing outside this module builds Slack JSON or speaks Slack's HTTP.

pub mod blocks;
pub mod client;
pub mod digest;
pub mod feedback;
pub mod home;
pub mod inputs;
pub mod payload;
pub mod report;
pub mod signature;
pub mod text;

pub use client::{SlackClient, SlackError, UserInfo};
