//! Runbooks: the catalog of what can be requested, by whom, who approves,
//! for how long and how access is granted.
//!
//! `model` holds the validated types the rest of the bot works with; `load`
//! reads a directory of TOML files, reports every problem with file, line and
//! field, and turns the raw files into the model. Nothing else parses runbooks.

mod load;
mod model;

pub use load::{load_dir, load_file, parse_runbook, Catalog, Problem};
pub use model::*;
