//! Runbooks: the catalog of what can be requested, by whom, who approves,
//! for how long and how access is granted.
//!
//! `model` holds the validated types the rest of the bot works with.
//! `catalog` reads a directory of TOML files and reports every problem with
//! file, line and field; `fields` is the position-aware toolkit the checks
//! are written with; `top_level`, `request`, `approval`, `auto_approve`,
//! `inputs` and `grant` each check one part of a runbook, and `grant` hands the `[grant]`
//! table to the provider it names (`crate::grant::Registry`). Nothing else
//! parses runbooks.

mod approval;
mod auto_approve;
mod catalog;
mod fields;
#[cfg(test)]
pub(crate) mod fixture;
mod grant;
mod inputs;
mod model;
mod request;
mod top_level;

pub use catalog::{
    load_dir, load_file, parse_runbook, parse_runbook_with, Catalog, NotReady, Problem,
};
pub(crate) use fields::{
    is_env_name, shorten, shorten_path, slack_id_hint, slack_id_kind, SlackIdKind,
};
pub use fields::{GrantTable, Located};
pub use inputs::{
    check_values, InputDef, InputKind, InputProblem, Pattern, MAX_INPUTS, MAX_VALUE_CHARS,
};
pub use model::*;
