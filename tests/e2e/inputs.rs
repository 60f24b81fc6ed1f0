//! Runbook inputs (`[[inputs]]`): asked for in the modal under the runbook
//! choice and as `key=value` words in the text form, refused with the
//! problem next to the field or in the reply, stored with the request,
//! shown to approvers and in the audit channel, recorded in the audit log,
//! and handed to the provider (`ACCESSBOT_INPUT_<ID>`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const T: Duration = Duration::from_secs(15);

/// `crm-support` with a required ticket (pattern `CS-<digits>`), an
/// optional customer ID and a kind of case to choose. Its grant writes the
/// `ACCESSBOT_INPUT_*` variables it got to `state/inputs_env`, then runs
/// the usual provider script.
const CRM: &str = r#"
id = "crm-support"
title = "CRM customer records"
description = "Customer records for a support case"
system = "CRM"
owner = "U0OWNER"
instructions = "Open https://crm.example.com."

[request]
allowed = ["*"]
default_duration = "1h"
max_duration = "4h"
require_reason = true

[approval]
approvers = ["U0BOB"]
required = 1
approval_timeout = "1h"

[grant]
provider = "command"
grant = ["/bin/sh", "-c", "env | grep '^ACCESSBOT_INPUT_' | sort > ../state/inputs_env; exec ./provider.sh grant"]
revoke = ["./provider.sh", "revoke"]
timeout = "5s"

[[inputs]]
id = "ticket"
label = "Ticket number"
type = "text"
required = true
pattern = 'CS-[0-9]+'
help = "The support case, e.g. CS-1234"

[[inputs]]
id = "customer"
label = "Customer ID"
type = "text"

[[inputs]]
id = "kind"
label = "Kind of case"
type = "select"
options = ["refund", "dispute"]
"#;

async fn crm_app() -> TestApp {
    TestApp::spawn_with(Setup::default().only_runbook("crm-support", CRM)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_form_inputs_reach_the_approver_the_audit_log_and_the_provider() {
    let mut app = crm_app().await;
    let id = app
        .request(
            ALICE,
            "crm-support 1h ticket=CS-1234 customer=ACME-42 kind=Dispute refund dispute",
        )
        .await;

    // The approver sees each detail with its label.
    let dm = app.wait_dm(BOB, &[&id, "Approve"], T).await;
    let shown = dm.to_string();
    for part in [
        "*Ticket number*\\nCS-1234",
        "*Customer ID*\\nACME-42",
        "*Kind of case*\\ndispute",
        "refund dispute",
    ] {
        assert!(shown.contains(part), "approver DM lacks {part}: {shown}");
    }
    // So does the audit channel.
    app.wait_audit(
        &[
            "requested",
            "Ticket number: CS-1234",
            "Customer ID: ACME-42",
        ],
        T,
    )
    .await;

    app.press(BOB, "approve", &id).await;
    app.wait_for_status(ALICE, &id, "active", T).await;
    let env = std::fs::read_to_string(app.state_dir.join("inputs_env")).unwrap();
    assert_eq!(
        env.lines().collect::<Vec<_>>(),
        [
            "ACCESSBOT_INPUT_CUSTOMER=ACME-42",
            "ACCESSBOT_INPUT_KIND=dispute",
            "ACCESSBOT_INPUT_TICKET=CS-1234",
        ]
    );

    // The audit log keeps them with the request.
    let log = app.audit_log().await;
    let requested = log
        .iter()
        .find(|e| e["kind"] == "requested" && e["request_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no requested event: {log:#?}"));
    let detail = requested["detail"].as_str().unwrap();
    assert!(
        detail.contains("[Ticket number: CS-1234; Customer ID: ACME-42; Kind of case: dispute]"),
        "{detail}"
    );
    // And as facts of their own, which `accessbot audit export` puts in
    // their column (every later event of the request carries them too).
    assert_eq!(
        requested["facts"]["inputs"],
        serde_json::json!({"customer": "ACME-42", "kind": "dispute", "ticket": "CS-1234"}),
        "{requested:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_in_the_text_form_are_refused_and_nothing_is_stored() {
    let app = crm_app().await;
    let cases = [
        (
            "request crm-support 1h customer=ACME-42 refund",
            "Ticket number is required (The support case, e.g. CS-1234); in the text form write `ticket=…` after the duration",
        ),
        (
            "request crm-support 1h ticket=1234 refund",
            "`1234` is not a valid Ticket number (The support case, e.g. CS-1234); it must match `CS-[0-9]+`",
        ),
        (
            "request crm-support 1h ticket=CS-1 kind=chargeback refund",
            "`chargeback` is not one of the choices for Kind of case: refund, dispute",
        ),
        (
            "request crm-support 1h ticket=CS-1 colour=red refund",
            "`crm-support` has no detail `colour`; it asks for `ticket`, `customer`, `kind`",
        ),
    ];
    for (text, expected) in cases {
        let answer = app.slash(ALICE, text).await;
        assert!(answer.contains(expected), "{text}: {answer}");
        assert!(request_id_in(&answer).is_none(), "{text}: {answer}");
    }
    let status = app.slash(ALICE, "status").await;
    assert!(status.contains("no pending requests"), "{status}");
    assert!(app.dms(BOB).is_empty(), "{:#?}", app.dms(BOB));
}

/// A submitted request modal with the given input fields (`block`,
/// `action`, element state).
fn modal_submission(user: &str, runbook: &str, fields: &[(&str, &str, Value)]) -> Value {
    let mut values = json!({
        "runbook": {"runbook_select": {"type": "static_select", "selected_option": {"value": runbook}}},
        "duration": {"duration_input": {"type": "plain_text_input", "value": "1h"}},
        "reason": {"reason_input": {"type": "plain_text_input", "value": "refund dispute"}}
    });
    for (block, action, state) in fields {
        values[*block] = json!({ *action: state });
    }
    json!({
        "type": "view_submission",
        "user": {"id": user, "username": "x", "team_id": "T0FAKE"},
        "team": {"id": "T0FAKE"},
        "api_app_id": "A0ACCESS",
        "view": {
            "id": "V0MODAL", "callback_id": "access_request", "private_metadata": "", "hash": "h1",
            "state": {"values": values}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_modal_shows_the_chosen_runbooks_inputs_and_puts_errors_next_to_them() {
    let app = crm_app().await;
    // Choosing the runbook updates the modal with its fields under the choice.
    app.slash(ALICE, "").await;
    let opened = app.slack.wait_for("views.open", T, |_| true).await;
    let view_id = opened.answered["view"]["id"].as_str().unwrap().to_string();
    assert!(
        !opened.body["view"].to_string().contains("input_ticket"),
        "no runbook chosen yet, so no inputs: {}",
        opened.body["view"]
    );
    let select = json!({
        "type": "block_actions",
        "user": {"id": ALICE},
        "container": {"type": "view", "view_id": view_id},
        "view": {"id": view_id, "hash": opened.answered["view"]["hash"], "callback_id": "access_request", "state": {"values": {}}},
        "actions": [{"action_id": "runbook_select", "block_id": "runbook", "type": "static_select", "selected_option": {"value": "crm-support"}}]
    });
    assert_eq!(app.interact(&select).await.status(), 200);
    let update = app
        .slack
        .wait_for("views.update", T, |c| {
            c.body["view"].to_string().contains("input_ticket")
        })
        .await;
    let blocks = update.body["view"]["blocks"].as_array().unwrap().clone();
    let ids: Vec<&str> = blocks
        .iter()
        .map(|b| b["block_id"].as_str().unwrap_or(""))
        .collect();
    let at = |id: &str| {
        ids.iter()
            .position(|b| *b == id)
            .unwrap_or_else(|| panic!("no {id} in {ids:?}"))
    };
    assert!(at("runbook") < at("input_0") && at("input_0") < at("input_1"));
    assert!(at("input_2") < at("duration"), "{ids:?}");
    let ticket = &blocks[at("input_0")];
    assert_eq!(ticket["label"]["text"], "Ticket number");
    assert_eq!(ticket["optional"], false);
    assert_eq!(ticket["hint"]["text"], "The support case, e.g. CS-1234");
    assert_eq!(ticket["element"]["type"], "plain_text_input");
    assert_eq!(blocks[at("input_1")]["optional"], true);
    let kind = &blocks[at("input_2")]["element"];
    assert_eq!(kind["type"], "static_select");
    assert_eq!(kind["options"][1]["value"], "dispute");
    assert_eq!(blocks[at("start")]["element"]["type"], "datetimepicker");

    // A wrong ticket and an unknown choice: each error next to its field,
    // and the modal stays open.
    let bad = modal_submission(
        ALICE,
        "crm-support",
        &[
            (
                "input_0",
                "input_ticket",
                json!({"type": "plain_text_input", "value": "1234"}),
            ),
            (
                "input_1",
                "input_customer",
                json!({"type": "plain_text_input", "value": null}),
            ),
        ],
    );
    let answer: Value = app.interact(&bad).await.json().await.unwrap();
    assert_eq!(answer["response_action"], "errors", "{answer}");
    assert!(
        answer["errors"]["input_0"]
            .as_str()
            .unwrap()
            .contains("it must match `CS-[0-9]+`"),
        "{answer}"
    );
    let empty = modal_submission(ALICE, "crm-support", &[]);
    let answer: Value = app.interact(&empty).await.json().await.unwrap();
    assert!(
        answer["errors"]["runbook"]
            .as_str()
            .unwrap_or_default()
            .contains("Ticket number is required"),
        "a field the modal did not show is reported on the runbook menu: {answer}"
    );
    assert!(app
        .slash(ALICE, "status")
        .await
        .contains("no pending requests"));

    // Filled in right, it is stored with the request and shown to the approver.
    let good = modal_submission(
        ALICE,
        "crm-support",
        &[
            (
                "input_0",
                "input_ticket",
                json!({"type": "plain_text_input", "value": "CS-77"}),
            ),
            (
                "input_2",
                "input_kind",
                json!({"type": "static_select", "selected_option": {"value": "refund"}}),
            ),
        ],
    );
    let r = app.interact(&good).await;
    assert_eq!(
        r.text().await.unwrap(),
        "",
        "a stored request closes the modal"
    );
    let dm = app.wait_dm(BOB, &["Approve", "CS-77"], T).await;
    assert!(dm.to_string().contains("*Kind of case*\\nrefund"), "{dm}");
}

/// `accessbot check` refuses broken `[[inputs]]` with file, line, field and
/// the fix, every problem at once.
#[test]
fn check_reports_broken_input_definitions_with_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let broken = CRM.to_string()
        + r#"
[[inputs]]
id = "Case No"
label = "Case"
type = "text"

[[inputs]]
id = "amount"
label = "Amount"
type = "money"

[[inputs]]
id = "case"
label = "Case"
type = "text"
pattern = "CS-[0-9"

[[inputs]]
id = "customer"
label = "Again"
type = "text"

[[inputs]]
id = "region"
label = "Region"
type = "select"
"#;
    std::fs::write(dir.path().join("crm-support.toml"), &broken).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_accessbot"))
        .args(["check", "--runbooks"])
        .arg(dir.path())
        .env_remove("ACCESSBOT_RUNBOOKS")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "accepted:\n{shown}");
    // The first (or, for the broken select, the last) line that reads `text`.
    let line_of = |text: &str| broken.lines().position(|l| l == text).unwrap() + 1;
    let last_line_of = |text: &str| {
        broken
            .lines()
            .enumerate()
            .filter(|(_, l)| *l == text)
            .last()
            .unwrap()
            .0
            + 1
    };
    let file = dir.path().join("crm-support.toml").display().to_string();
    let expected = [
        format!(
            "{file}:{}: inputs[4].id: `Case No` is not a valid input id; use lowercase letters, digits and underscores, starting with a letter, at most 40 characters, e.g. id = \"case_no\"",
            line_of("id = \"Case No\"")
        ),
        format!(
            "{file}:{}: inputs[5].type: unknown type `money`; use one of text, number, select, user, date",
            line_of("type = \"money\"")
        ),
        format!(
            "{file}:{}: inputs[6].pattern: `CS-[0-9` is not a valid regular expression",
            line_of("pattern = \"CS-[0-9\"")
        ),
        format!(
            "{file}:{}: inputs[7].id: another input on line {} already has id `customer`; give each input its own id",
            line_of("label = \"Again\"") - 1,
            line_of("id = \"customer\"")
        ),
        format!(
            "{file}:{}: inputs[8].options: a select needs its choices; add options = [\"first\", \"second\"]",
            last_line_of("type = \"select\"")
        ),
    ];
    for e in &expected {
        assert!(shown.contains(e.as_str()), "missing:\n{e}\nin:\n{shown}");
    }
}
