//! The runbook the loader's tests start from, and `check`, the one
//! assertion they share: a runbook is refused with a problem on a field whose
//! message says something. Tests of each section and of each provider's
//! `[grant]` keys edit one line of [`VALID`] and `check` the answer.

use std::path::Path;

use super::{parse_runbook, Problem, Runbook};

/// A small valid runbook the problem cases edit one line of.
pub(crate) const VALID: &str = r#"id = "billing-admin"
title = "Billing portal admin"
description = "Refunds and plan changes"
system = "Billing portal"
owner = "U0OWNER"
instructions = "Sign in at https://billing.example.com."

[request]
allowed = ["*"]
default_duration = "1h"
max_duration = "4h"

[approval]
approvers = ["owner", "U0BOB"]
required = 1

[grant]
provider = "command"
grant = ["./scripts/billing.sh", "grant"]
revoke = ["./scripts/billing.sh", "revoke"]
"#;

pub(crate) fn parse(text: &str) -> Result<Runbook, Vec<Problem>> {
    parse_runbook(text, Path::new("t.toml"))
}

/// `VALID` with the first `from` replaced by `to`.
pub(crate) fn edit(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "VALID has no {from:?}");
    VALID.replacen(from, to, 1)
}

pub(crate) fn listed(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  {p}\n")).collect()
}

/// Asserts `input` is refused with a problem on exactly `field` whose
/// message contains `message`.
pub(crate) fn check(input: &str, field: &str, message: &str) {
    let problems = match parse(input) {
        Ok(_) => {
            panic!("expected a problem on {field}, but the runbook was accepted:\n{input}")
        }
        Err(problems) => problems,
    };
    assert!(
        problems
            .iter()
            .any(|p| p.field == field && p.message.contains(message)),
        "expected a problem on {field} containing {message:?}; got:\n{}",
        listed(&problems)
    );
}

/// Asserts the first problem is on `line` and `field` and its message
/// contains `message`.
pub(crate) fn assert_first(problems: &[Problem], line: usize, field: &str, message: &str) {
    assert_eq!(
        (problems[0].line, problems[0].field.as_str()),
        (Some(line), field),
        "{}",
        listed(problems)
    );
    assert!(problems[0].message.contains(message), "{}", problems[0]);
}
