//! Every message, modal and Home tab that [`crate::slack::blocks`] builds
//! renders with the playground's renderer without an "unsupported block"
//! placeholder, and every block, element and text type named anywhere in
//! `src/slack/blocks.rs` is one the renderer knows, so a builder added later
//! with a new type fails here until the page can show it.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use regex::Regex;
use serde_json::{json, Value};

use super::*;
use crate::request::{AccessRequest, Approval, StageState, Status};
use crate::runbook::fixture;
use crate::slack::blocks::{self, Msg};

fn no_names(_: &str) -> Option<String> {
    None
}

fn request(status: Status) -> AccessRequest {
    let now = Utc::now();
    let mut req = AccessRequest::new(
        "ar-test".into(),
        "billing-admin",
        "U0FIONA",
        Duration::from_secs(3600),
        vec![
            StageState {
                name: "Your manager".into(),
                approvers: vec!["U0MARCUS".into()],
                required: 1,
            },
            StageState {
                name: "Security review".into(),
                approvers: vec!["S0SECURITY".into(), "U0SAM".into()],
                required: 1,
            },
        ],
        now,
    );
    req.runbook_title = "Billing portal admin".into();
    req.system = "Billing portal".into();
    req.description = "Refunds & <credits>".into();
    req.reason = "month end *now*\n> quoted".into();
    req.status = status;
    if status != Status::Pending {
        req.approvals = vec![Approval {
            user: "U0MARCUS".into(),
            stage: 0,
            at: now,
        }];
        req.granted_at = Some(now);
        req.expires_at = Some(now + chrono::Duration::hours(1));
    }
    req
}

/// Every message builder, for a request in each status it is sent in.
fn all_messages() -> Vec<(String, Msg)> {
    let hour = Duration::from_secs(3600);
    let mut all = Vec::new();
    for status in [
        Status::Pending,
        Status::Active,
        Status::Revoked,
        Status::NeedsAttention,
    ] {
        let req = request(status);
        let mut add = |name: &str, msg: Msg| all.push((format!("{name} ({status:?})"), msg));
        add("approval_request", blocks::approval_request(&req, "note"));
        add("approval_closed", blocks::approval_closed(&req, "Approved"));
        add(
            "notice",
            blocks::notice("text", &[("Resolve", "resolve")], &req.id),
        );
        add(
            "request_notice",
            blocks::request_notice(&req, "text", &[("Resolve", "resolve")]),
        );
        add("extension_request", blocks::extension_request(&req, hour));
        add("granted", blocks::granted(&req, "Sign in.", hour));
        add("expiry_warning", blocks::expiry_warning(&req, hour));
        add(
            "break_glass_review",
            blocks::break_glass_review(&req, "note"),
        );
        add("review_flagged", blocks::review_flagged(&req, "flagged"));
        add("granted_closed", blocks::granted_closed(&req));
        add("expiry_warning_closed", blocks::expiry_warning_closed(&req));
        for kind in [
            "requested",
            "approved",
            "granted",
            "revoked",
            "revoke_failed",
        ] {
            add(
                &format!("audit_notice {kind}"),
                blocks::audit_notice(kind, &req, "line"),
            );
        }
        add(
            "needs_attention_notice",
            blocks::needs_attention_notice(&req, "line"),
        );
        add(
            "feedback_request",
            crate::slack::feedback::feedback_request(&req, None),
        );
        let mut detailed = req.clone();
        detailed.inputs = vec![crate::request::InputValue {
            id: "ticket".into(),
            label: "Ticket number".into(),
            value: "CS-1234".into(),
            kind: "text".into(),
        }];
        detailed.start_at = Some(Utc::now() + chrono::Duration::hours(2));
        add(
            "approval_request (inputs, start)",
            blocks::approval_request(&detailed, "note"),
        );
    }
    let lines: Vec<String> = (0..3).map(|i| format!("line {i}")).collect();
    for (i, part) in crate::slack::digest::audit_digest(&lines, 30)
        .into_iter()
        .enumerate()
    {
        all.push((format!("audit_digest part {i}"), part.msg));
    }
    all
}

/// Every view builder: the modal with and without a runbook chosen, and the Home tab.
fn all_views() -> Vec<(String, Value)> {
    let runbook = fixture::parse(fixture::VALID).expect("the fixture runbook is valid");
    let with_inputs = runbook_with_inputs();
    vec![
        (
            "request_modal (none chosen)".into(),
            blocks::request_modal(&[&runbook], None, &[]),
        ),
        (
            "request_modal (chosen)".into(),
            blocks::request_modal(&[&runbook], Some(&runbook), &["Approver: <@U0BOB>".into()]),
        ),
        (
            "request_modal (with inputs and a start)".into(),
            blocks::request_modal(&[&with_inputs], Some(&with_inputs), &[]),
        ),
        ("home (empty)".into(), home_view(&[], &[], &[], false)),
        ("home (everything)".into(), {
            let mine = [request(Status::Active), request(Status::Pending)];
            let waiting = [request(Status::Pending)];
            home_view(&mine, &waiting, &[&runbook, &with_inputs], true)
        }),
    ]
}

/// A runbook that asks for every kind of input.
fn runbook_with_inputs() -> crate::runbook::Runbook {
    let text = format!(
        "{}\n{}",
        fixture::VALID,
        r#"
[[inputs]]
id = "ticket"
label = "Ticket number"
type = "text"
required = true
pattern = 'CS-[0-9]+'
help = "the support case"

[[inputs]]
id = "kind"
label = "Kind of case"
type = "select"
options = ["refund", "dispute"]

[[inputs]]
id = "amount"
label = "Amount"
type = "number"

[[inputs]]
id = "buddy"
label = "Second pair of eyes"
type = "user"

[[inputs]]
id = "until"
label = "Case due"
type = "date"
"#
    );
    fixture::parse(&text).unwrap_or_else(|p| panic!("{p:?}"))
}

/// The Home tab as `slack::home` builds it.
fn home_view(
    mine: &[AccessRequest],
    to_approve: &[AccessRequest],
    catalog: &[&crate::runbook::Runbook],
    security: bool,
) -> Value {
    let extend_by = |_: &str| Duration::from_secs(1800);
    let elevated = [request(Status::Active)];
    crate::slack::home::view(&crate::slack::home::HomeData {
        now: Utc::now(),
        mine,
        to_approve,
        catalog,
        extend_by: &extend_by,
        security: security.then_some(crate::slack::home::SecurityData {
            elevated: &elevated,
            unreviewed: &elevated,
        }),
    })
}

/// Renders and checks one list of blocks: no placeholder, and one rendered
/// block per block sent.
fn check_blocks(name: &str, list: &Value) {
    let html = blocks(list, &no_names);
    assert!(
        !html.contains(UNSUPPORTED),
        "{name} renders an unsupported block:\n{html}"
    );
    let sent = list.as_array().map(Vec::len).unwrap_or_default();
    assert!(sent > 0, "{name} has no blocks");
    assert_eq!(
        html.matches(r#"<div class="block block-"#).count(),
        sent,
        "{name}: every block is rendered:\n{html}"
    );
}

#[test]
fn every_message_and_view_accessbot_builds_renders_without_placeholders() {
    let messages = all_messages();
    assert!(messages.len() > 40);
    for (name, msg) in &messages {
        check_blocks(name, &msg.blocks);
        assert!(!msg.text.is_empty(), "{name} has no notification text");
    }
    for (name, view) in all_views() {
        check_blocks(&name, &view["blocks"]);
    }
    check_blocks(
        "ephemeral as shown",
        &json!([{"type": "section", "text": {"type": "mrkdwn", "text": blocks::ephemeral("hi")["text"]}}]),
    );
}

#[test]
fn the_renderer_knows_every_type_the_builders_name() {
    let source = [
        include_str!("../../slack/blocks.rs"),
        include_str!("../../slack/inputs.rs"),
        include_str!("../../slack/home.rs"),
        include_str!("../../slack/feedback.rs"),
        include_str!("../../slack/digest.rs"),
        include_str!("../../audit_notice.rs"),
    ]
    .concat();
    let source = source.as_str();
    let pattern = Regex::new(r#""type":\s*"([a-z_]+)""#).unwrap();
    let types: BTreeSet<&str> = pattern
        .captures_iter(source)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    assert!(types.contains("section") && types.contains("button"));
    for kind in types {
        let as_text = matches!(kind, "mrkdwn" | "plain_text");
        let as_view = matches!(kind, "modal" | "home");
        // A block of this type, with the one field an input block cannot lack.
        let as_block = !blocks(
            &json!([{"type": kind, "element": {"type": "plain_text_input", "action_id": "a"}}]),
            &no_names,
        )
        .contains(UNSUPPORTED);
        let as_element = !blocks(
            &json!([{"type": "actions", "elements": [{"type": kind, "action_id": "a"}]}]),
            &no_names,
        )
        .contains(UNSUPPORTED);
        let as_input = !blocks(
            &json!([{"type": "input", "label": {"type": "plain_text", "text": "x"},
                     "element": {"type": kind, "action_id": "a"}}]),
            &no_names,
        )
        .contains(UNSUPPORTED);
        assert!(
            as_text || as_view || as_block || as_element || as_input,
            "src/slack/ sends `{kind}`, which the playground renders as unsupported"
        );
    }
}

#[test]
fn unknown_blocks_and_elements_show_a_placeholder() {
    let html = blocks(&json!([{"type": "rich_text"}]), &no_names);
    assert!(html.contains(UNSUPPORTED) && html.contains("rich_text"));
    let html = blocks(
        &json!([{"type": "actions", "elements": [{"type": "datepicker", "action_id": "d"}]}]),
        &no_names,
    );
    assert!(html.contains(UNSUPPORTED) && html.contains("datepicker"));
}

#[test]
fn mrkdwn_is_rendered_and_escaped() {
    let names = |id: &str| (id == "U0FIONA").then(|| "Fiona Reyes".to_string());
    let html = mrkdwn(
        "*bold* _it_ ~gone~ `code` <@U0FIONA> <@U0NOBODY> <https://x.example/a?b=1&amp;c|the <b>link</b>>\n>quoted &lt;script&gt;\n<!date^1700000000^{date}|2023-11-14>",
        &names,
    );
    assert!(html.contains("<b>bold</b>"), "{html}");
    assert!(html.contains("<i>it</i>"), "{html}");
    assert!(html.contains("<s>gone</s>"), "{html}");
    assert!(html.contains("<code>code</code>"), "{html}");
    assert!(
        html.contains(r#"<span class="mention">@Fiona Reyes</span>"#),
        "{html}"
    );
    assert!(html.contains("@U0NOBODY"), "{html}");
    assert!(
        html.contains(r#"href="https://x.example/a?b=1&amp;c""#),
        "{html}"
    );
    assert!(
        html.contains("<blockquote>quoted &lt;script&gt;</blockquote>"),
        "{html}"
    );
    assert!(html.contains("2023-11-14"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    // Typed text the bot neutralised stays text.
    let typed = mrkdwn("&gt; not a quote &amp; *x", &no_names);
    assert_eq!(typed, "&gt; not a quote &amp; *x");
}

#[test]
fn buttons_keep_their_styles_and_selects_their_choice() {
    let req = request(Status::Pending);
    let html = blocks(&blocks::approval_request(&req, "").blocks, &no_names);
    assert!(
        html.contains(r#"class="btn primary" data-action-id="approve""#),
        "{html}"
    );
    assert!(
        html.contains(r#"class="btn danger" data-action-id="deny""#),
        "{html}"
    );
    let runbook = fixture::parse(fixture::VALID).unwrap();
    let modal = blocks::request_modal(&[&runbook], Some(&runbook), &[]);
    let html = blocks(&modal["blocks"], &no_names);
    assert!(
        html.contains(r#"<option value="billing-admin" selected>"#),
        "{html}"
    );
    assert!(html.contains("data-dispatch"), "{html}");
    assert!(html.contains("<textarea"), "{html}");
}
