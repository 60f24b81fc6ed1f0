//! `accessbot check`: the shipped runbooks pass, and each kind of mistake in
//! a runbook is reported with its file, line and field, and a non-zero exit.
//!
//! The broken runbooks live in `tests/fixtures/runbooks/<kind>/`, one
//! directory per kind of mistake, each a copy of the same small runbook with
//! one thing wrong.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What `accessbot check --runbooks <dir>` did.
struct CheckRun {
    success: bool,
    /// stdout and stderr together: where each line goes is main.rs's business.
    output: String,
}

fn run_check(dir: &Path) -> CheckRun {
    let out = Command::new(env!("CARGO_BIN_EXE_accessbot"))
        .arg("check")
        .arg("--runbooks")
        .arg(dir)
        .env_remove("ACCESSBOT_RUNBOOKS")
        .env("RUST_LOG", "error")
        .output()
        .expect("running the accessbot binary");
    CheckRun {
        success: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn fixture(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/runbooks")
        .join(kind)
}

/// Asserts that checking fixture `kind` fails and reports `file` at `line`
/// (when the problem has one) on `field`, with `words` in the message.
fn assert_reports(kind: &str, file: &str, line: Option<usize>, field: &str, words: &str) {
    let run = run_check(&fixture(kind));
    assert!(
        !run.success,
        "`accessbot check` accepted the {kind} fixture:\n{}",
        run.output
    );
    let mut expected = file.to_string();
    if let Some(line) = line {
        expected.push_str(&format!(":{line}"));
    }
    if !field.is_empty() {
        expected.push_str(&format!(": {field}"));
    }
    expected.push_str(": ");
    let reported = run
        .output
        .lines()
        .any(|l| l.contains(&expected) && l.contains(words));
    assert!(
        reported,
        "expected a line with {expected:?} and {words:?} for the {kind} fixture; got:\n{}",
        run.output
    );
}

#[test]
fn the_shipped_runbooks_pass() {
    let run = run_check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks"));
    assert!(run.success, "runbooks/ has problems:\n{}", run.output);
    assert!(run.output.contains("12 runbooks OK"), "{}", run.output);
}

#[test]
fn a_missing_directory_says_how_to_point_at_one() {
    let dir = fixture("does-not-exist");
    let run = run_check(&dir);
    assert!(!run.success, "{}", run.output);
    assert!(
        run.output.contains(&dir.display().to_string())
            && run.output.contains("set ACCESSBOT_RUNBOOKS or --runbooks"),
        "{}",
        run.output
    );
}

#[test]
fn an_empty_directory_is_refused() {
    let run = run_check(&fixture("empty"));
    assert!(!run.success, "{}", run.output);
    assert!(
        run.output.contains("no runbooks found in"),
        "{}",
        run.output
    );
}

#[test]
fn reports_a_toml_syntax_error() {
    assert_reports("syntax", "demo.toml", Some(4), "", "not valid TOML");
}

#[test]
fn reports_an_unknown_field() {
    assert_reports(
        "unknown-field",
        "demo.toml",
        Some(5),
        "colour",
        "unknown field",
    );
}

#[test]
fn reports_a_wrong_type() {
    assert_reports(
        "wrong-type",
        "demo.toml",
        Some(15),
        "approval.required",
        "must be a whole number",
    );
}

#[test]
fn reports_a_missing_provider_field() {
    assert_reports(
        "missing-field",
        "demo.toml",
        Some(17),
        "grant.usergroup",
        "missing",
    );
}

#[test]
fn reports_a_missing_owner() {
    assert_reports("missing-owner", "demo.toml", None, "owner", "missing");
}

#[test]
fn reports_a_bad_id() {
    assert_reports(
        "bad-id",
        "demo.toml",
        Some(1),
        "id",
        "e.g. id = \"demo-access\"",
    );
}

#[test]
fn reports_a_bad_slack_id() {
    assert_reports(
        "bad-slack-id",
        "demo.toml",
        Some(5),
        "owner",
        "is not a Slack user ID",
    );
}

#[test]
fn reports_a_bad_duration() {
    assert_reports(
        "bad-duration",
        "demo.toml",
        Some(11),
        "request.max_duration",
        "is not a duration",
    );
}

#[test]
fn reports_a_default_duration_over_the_max() {
    assert_reports(
        "default-over-max",
        "demo.toml",
        Some(10),
        "request.default_duration",
        "longer than max_duration",
    );
}

#[test]
fn reports_a_max_total_under_the_max() {
    assert_reports(
        "max-total-under-max",
        "demo.toml",
        Some(12),
        "request.max_total",
        "shorter than max_duration",
    );
}

#[test]
fn reports_required_zero() {
    assert_reports(
        "required-zero",
        "demo.toml",
        Some(15),
        "approval.required",
        "required = 1 or more",
    );
}

#[test]
fn reports_more_required_approvals_than_approvers() {
    assert_reports(
        "required-too-many",
        "demo.toml",
        Some(15),
        "approval.required",
        "required = 3 but only 2 approvers are listed",
    );
}

#[test]
fn reports_a_duplicate_approver() {
    assert_reports(
        "duplicate-approver",
        "demo.toml",
        Some(14),
        "approval.approvers",
        "listed twice",
    );
}

#[test]
fn reports_approvers_and_stages_together() {
    assert_reports(
        "approvers-and-stages",
        "demo.toml",
        Some(17),
        "approval.stages",
        "use one",
    );
}

#[test]
fn reports_a_runbook_without_approvers() {
    assert_reports(
        "no-approvers",
        "demo.toml",
        Some(13),
        "approval.approvers",
        "no approvers",
    );
}

#[test]
fn reports_escalation_without_fallback_approvers() {
    assert_reports(
        "escalate-without-fallback",
        "demo.toml",
        Some(16),
        "approval.escalate_after",
        "no fallback_approvers",
    );
}

#[test]
fn reports_a_reminder_after_the_approval_timeout() {
    assert_reports(
        "remind-after-timeout",
        "demo.toml",
        Some(16),
        "approval.remind_after",
        "would never be sent",
    );
}

#[test]
fn reports_a_zero_approval_timeout() {
    assert_reports(
        "approval-timeout-zero",
        "demo.toml",
        Some(16),
        "approval.approval_timeout",
        "is zero",
    );
}

#[test]
fn reports_long_break_glass_access() {
    assert_reports(
        "break-glass-too-long",
        "demo.toml",
        Some(12),
        "request.max_duration",
        "break-glass access must be short: max_duration is 8h, the limit is 4h",
    );
}

#[test]
fn reports_auto_approval_longer_than_requests() {
    assert_reports(
        "auto-approve-too-long",
        "demo.toml",
        Some(16),
        "approval.auto_approve.max_duration",
        "longer than request.max_duration",
    );
}

#[test]
fn reports_an_auto_approve_rule_naming_nobody() {
    assert_reports(
        "auto-approve-nobody",
        "demo.toml",
        Some(16),
        "approval.auto_approve",
        "names nobody",
    );
}

#[test]
fn reports_an_unknown_provider() {
    assert_reports(
        "unknown-provider",
        "demo.toml",
        Some(18),
        "grant.provider",
        "use one of command, webhook, slack_usergroup",
    );
}

#[test]
fn reports_a_directory_providers_keys_on_their_lines() {
    assert_reports(
        "directory-keys",
        "demo.toml",
        Some(19),
        "grant.org_url",
        "is the Admin Console's address",
    );
    assert_reports(
        "directory-keys",
        "demo.toml",
        Some(21),
        "grant.group_id",
        "is not an Okta group ID",
    );
}

#[test]
fn reports_a_missing_grant_program() {
    assert_reports(
        "missing-program",
        "demo.toml",
        Some(19),
        "grant.grant",
        "does not exist",
    );
}

#[test]
fn reports_a_duplicate_id_naming_both_files() {
    assert_reports(
        "duplicate-id",
        "second.toml",
        Some(1),
        "id",
        "is already used by",
    );
    let run = run_check(&fixture("duplicate-id"));
    assert!(run.output.contains("first.toml:1"), "{}", run.output);
}

/// A valid runbook whose provider needs environment variables that are not
/// set still passes (exit 0), with a warning naming the file, each missing
/// variable and what to do; a variable that is set is not named.
#[test]
fn unset_provider_variables_are_warned_about_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(fixture("missing-program").join("demo.toml")).unwrap();
    let grant_at = base.find("[grant]").expect("fixture has a [grant] table");
    let head = &base[..grant_at];
    std::fs::write(
        dir.path().join("hr.toml"),
        format!(
            "{}[grant]\nprovider = \"command\"\ngrant = [\"/bin/true\"]\nrevoke = [\"/bin/true\"]\nenv = [\"ACCESSBOT_TEST_SET_TOKEN\", \"ACCESSBOT_TEST_UNSET_TOKEN\"]\n",
            head.replace("id = \"demo\"", "id = \"hr-tool\"")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("idp.toml"),
        format!(
            "{}[grant]\nprovider = \"webhook\"\nurl = \"https://grants.example.com/hook\"\nsecret_env = \"ACCESSBOT_TEST_UNSET_SECRET\"\n",
            head.replace("id = \"demo\"", "id = \"idp\"")
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_accessbot"))
        .arg("check")
        .arg("--runbooks")
        .arg(dir.path())
        .env_remove("ACCESSBOT_RUNBOOKS")
        .env_remove("ACCESSBOT_TEST_UNSET_TOKEN")
        .env_remove("ACCESSBOT_TEST_UNSET_SECRET")
        .env("ACCESSBOT_TEST_SET_TOKEN", "present")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "a warning must not fail check:\n{output}"
    );
    assert!(output.contains("2 runbooks OK"), "{output}");
    let line = |file: &str, var: &str| {
        output
            .lines()
            .find(|l| l.contains("warning") && l.contains(file) && l.contains(var))
            .unwrap_or_else(|| panic!("no warning naming {file} and {var}:\n{output}"))
            .to_string()
    };
    let hr = line("hr.toml", "ACCESSBOT_TEST_UNSET_TOKEN");
    assert!(
        hr.contains("cannot grant yet") && hr.contains("set it where accessbot runs"),
        "{hr}"
    );
    assert!(
        !hr.contains("ACCESSBOT_TEST_SET_TOKEN"),
        "a set variable was named: {hr}"
    );
    let idp = line("idp.toml", "ACCESSBOT_TEST_UNSET_SECRET");
    assert!(idp.contains("webhook"), "{idp}");
}
