//! The App Home tab: a person's access at a glance, built from a
//! [`HomeData`] the workflow gathers. Sections, in order: their active
//! grants with time left and Release now / Extend; their pending requests
//! with Cancel; the approvals waiting for them with Approve / Deny; the
//! runbooks they may request, each with Request (which opens the request
//! modal preset to it); and, for members of the security group, who holds
//! access now and the break-glass grants not yet reviewed.
//!
//! Block Kit allows 100 blocks in a Home tab: each section shows at most a
//! fixed number of entries ([`MAX_GRANTS`], …) and summarises the rest with
//! a count and where to see them, so the view stays within the limit
//! however much a person has (at most [`MAX_BLOCKS`] by construction).
//! Every `action_id` is unique in the view: a button's is its action and
//! the request (or runbook) it acts on, `approve:ar-…`; dispatch reads the
//! part before the colon ([`base_action`]) and hands the press to the same
//! handler, with the same checks, as the button in a DM.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::blocks::{action, quoted, truncate, user_text};
use super::text::mention;
use crate::duration::format_duration_words;
use crate::request::{AccessRequest, Status};
use crate::runbook::Runbook;

/// Action IDs only the Home tab has.
pub mod home_action {
    /// Cancel one's own pending request.
    pub const CANCEL: &str = "cancel";
    /// Open the request modal preset to a runbook (the value is its ID).
    pub const REQUEST: &str = "home_request";
}

/// Most active grants shown with their buttons (two blocks each).
pub const MAX_GRANTS: usize = 8;
/// Most pending requests shown with Cancel (one block each).
pub const MAX_PENDING: usize = 8;
/// Most approvals shown with Approve / Deny (two blocks each).
pub const MAX_APPROVALS: usize = 10;
/// Most runbooks shown with Request (one block each).
pub const MAX_CATALOG: usize = 15;
/// Most entries listed in each security section (one block holds them).
pub const MAX_SECURITY_LINES: usize = 20;
/// Slack's limit on blocks in a Home tab.
pub const MAX_BLOCKS: usize = 100;

/// Everything the Home tab shows, read by the workflow for one person.
pub struct HomeData<'a> {
    pub now: DateTime<Utc>,
    /// The person's unfinished requests, oldest first.
    pub mine: &'a [AccessRequest],
    /// Requests waiting for this person's approval, oldest first.
    pub to_approve: &'a [AccessRequest],
    /// The runbooks the person may request.
    pub catalog: &'a [&'a Runbook],
    /// How much one press of Extend adds to a grant of a runbook.
    pub extend_by: &'a dyn Fn(&str) -> Duration,
    /// Only for members of the security group.
    pub security: Option<SecurityData<'a>>,
}

/// What members of the security group see beside their own access.
pub struct SecurityData<'a> {
    /// Everyone's active grants.
    pub elevated: &'a [AccessRequest],
    /// Break-glass grants nobody has reviewed yet.
    pub unreviewed: &'a [AccessRequest],
}

/// The action a button's `action_id` stands for: the part before the
/// first colon (`approve:ar-1` is `approve`), or all of it.
pub fn base_action(action_id: &str) -> &str {
    action_id.split(':').next().unwrap_or(action_id)
}

/// The Home tab for `data` (a `views.publish` view of type `home`).
pub fn view(data: &HomeData) -> Value {
    let mut blocks = vec![
        header("accessbot"),
        section(
            "home_intro",
            "Your access at a glance. Type `/access` anywhere to ask for temporary access; approvers get a message, and access ends on its own when the time is up.",
        ),
    ];
    grants_section(&mut blocks, data);
    pending_section(&mut blocks, data);
    approvals_section(&mut blocks, data);
    catalog_section(&mut blocks, data);
    if let Some(security) = &data.security {
        security_section(&mut blocks, security);
    }
    // Cannot happen with the caps above; kept so no change to them can
    // make Slack refuse the whole tab.
    blocks.truncate(MAX_BLOCKS);
    json!({"type": "home", "blocks": blocks})
}

fn grants_section(blocks: &mut Vec<Value>, data: &HomeData) {
    blocks.push(divider());
    blocks.push(header("Your access"));
    let active: Vec<&AccessRequest> = data
        .mine
        .iter()
        .filter(|r| r.status == Status::Active)
        .collect();
    let other: Vec<String> = data
        .mine
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                Status::Granting | Status::Revoking | Status::NeedsAttention
            )
        })
        .map(|r| {
            format!(
                "• `{}` {}: *{}* ({})",
                r.id,
                r.status.label(),
                user_text(&r.runbook_title, 80),
                user_text(&r.system, 60),
            )
        })
        .collect();
    if active.is_empty() && other.is_empty() {
        blocks.push(context("You hold no access right now."));
        return;
    }
    for r in active.iter().take(MAX_GRANTS) {
        let left = r
            .expires_at
            .map(|t| {
                let secs = (t - data.now).num_seconds().max(0) as u64;
                format!(
                    "ends {} ({} left)",
                    when(t),
                    format_duration_words(Duration::from_secs(secs))
                )
            })
            .unwrap_or_default();
        let text = format!(
            ":white_check_mark: *{}* ({}): {left}\nRequest ID `{}`",
            user_text(&r.runbook_title, 200),
            user_text(&r.system, 200),
            r.id
        );
        blocks.push(section(&format!("home_grant:{}", r.id), &text));
        let step = (data.extend_by)(&r.runbook_id);
        let extend = if step.is_zero() {
            "Extend".to_string()
        } else {
            format!("Extend by {}", format_duration_words(step))
        };
        blocks.push(actions(
            &format!("home_grant_actions:{}", r.id),
            vec![
                button(&extend, action::EXTEND, &r.id, None),
                button("Release now", action::RELEASE, &r.id, Some("danger")),
            ],
        ));
    }
    if active.len() > MAX_GRANTS {
        blocks.push(context(&format!(
            "…and {} more active grants. `/access status` lists them all.",
            active.len() - MAX_GRANTS
        )));
    }
    if !other.is_empty() {
        blocks.push(section("home_grant_other", &lines(&other, "requests")));
    }
}

fn pending_section(blocks: &mut Vec<Value>, data: &HomeData) {
    let pending: Vec<&AccessRequest> = data
        .mine
        .iter()
        .filter(|r| r.status == Status::Pending)
        .collect();
    blocks.push(divider());
    blocks.push(header("Your pending requests"));
    if pending.is_empty() {
        blocks.push(context("Nothing of yours is waiting for approval."));
        return;
    }
    for r in pending.iter().take(MAX_PENDING) {
        let waiting: Vec<String> = r
            .current_approvers()
            .iter()
            .filter(|u| !r.has_approved(u))
            .map(|u| mention(u))
            .collect();
        let text = format!(
            ":inbox_tray: *{}* ({}) for {}: waiting for {}; expires {} if undecided.\nRequest ID `{}`",
            user_text(&r.runbook_title, 200),
            user_text(&r.system, 200),
            duration_of(r),
            truncate(&waiting.join(", "), 1000),
            when(r.approval_deadline),
            r.id
        );
        let mut s = section(&format!("home_pending:{}", r.id), &text);
        s["accessory"] = button("Cancel", home_action::CANCEL, &r.id, Some("danger"));
        blocks.push(s);
    }
    if pending.len() > MAX_PENDING {
        blocks.push(context(&format!(
            "…and {} more pending requests. `/access status` lists them all; `/access cancel <request-id>` cancels one.",
            pending.len() - MAX_PENDING
        )));
    }
}

fn approvals_section(blocks: &mut Vec<Value>, data: &HomeData) {
    if data.to_approve.is_empty() {
        return;
    }
    blocks.push(divider());
    blocks.push(header("Waiting for your approval"));
    for r in data.to_approve.iter().take(MAX_APPROVALS) {
        let reason = if r.reason.is_empty() {
            "_no reason given_".to_string()
        } else {
            format!(">{}", quoted(&r.reason, 1000))
        };
        let text = format!(
            "{} asks for *{}* ({}) for {}; answer by {}.\n{reason}\nRequest ID `{}`",
            mention(&r.requester),
            user_text(&r.runbook_title, 200),
            user_text(&r.system, 200),
            duration_of(r),
            when(r.approval_deadline),
            r.id
        );
        blocks.push(section(&format!("home_approval:{}", r.id), &text));
        blocks.push(actions(
            &format!("home_approval_actions:{}", r.id),
            vec![
                button("Approve", action::APPROVE, &r.id, Some("primary")),
                button("Deny", action::DENY, &r.id, Some("danger")),
            ],
        ));
    }
    if data.to_approve.len() > MAX_APPROVALS {
        blocks.push(context(&format!(
            "…and {} more requests wait for your approval. `/access status` lists them all, and each has its own message from accessbot with Approve and Deny.",
            data.to_approve.len() - MAX_APPROVALS
        )));
    }
}

fn catalog_section(blocks: &mut Vec<Value>, data: &HomeData) {
    blocks.push(divider());
    blocks.push(header("What you can request"));
    if data.catalog.is_empty() {
        blocks.push(context(
            "There is nothing you can request yet. Ask your admin to add a runbook that lists you (or one of your groups) in `request.allowed`.",
        ));
        return;
    }
    for r in data.catalog.iter().take(MAX_CATALOG) {
        let text = format!(
            "*{}* ({})\n{} Default {}, up to {}.",
            user_text(&r.title, 200),
            user_text(&r.system, 200),
            user_text(&r.description, 1000),
            format_duration_words(r.request.default_duration),
            format_duration_words(r.request.max_duration),
        );
        let mut s = section(&format!("home_catalog:{}", r.id), &text);
        s["accessory"] = button("Request", home_action::REQUEST, &r.id, Some("primary"));
        blocks.push(s);
    }
    if data.catalog.len() > MAX_CATALOG {
        blocks.push(context(&format!(
            "…and {} more. `/access list` shows everything you can request.",
            data.catalog.len() - MAX_CATALOG
        )));
    }
}

fn security_section(blocks: &mut Vec<Value>, s: &SecurityData) {
    blocks.push(divider());
    blocks.push(header("Security overview"));
    let elevated: Vec<String> = s
        .elevated
        .iter()
        .map(|r| {
            format!(
                "• {} *{}* ({}){}, until {} `{}`",
                mention(&r.requester),
                user_text(&r.runbook_title, 80),
                user_text(&r.system, 60),
                if r.break_glass {
                    " :rotating_light:"
                } else {
                    ""
                },
                r.expires_at.map(when).unwrap_or_default(),
                r.id
            )
        })
        .collect();
    let text = if elevated.is_empty() {
        "*Elevated access now:* nobody.".to_string()
    } else {
        format!(
            "*Elevated access now ({}):*\n{}",
            elevated.len(),
            lines(&elevated, "grants")
        )
    };
    blocks.push(section("home_security_elevated", &text));
    let unreviewed: Vec<String> = s
        .unreviewed
        .iter()
        .map(|r| {
            format!(
                "• {} *{}* ({}) for {}, {} `{}`",
                mention(&r.requester),
                user_text(&r.runbook_title, 80),
                user_text(&r.system, 60),
                duration_of(r),
                r.status.label(),
                r.id
            )
        })
        .collect();
    let text = if unreviewed.is_empty() {
        "*Break-glass not yet reviewed:* none.".to_string()
    } else {
        format!(
            "*Break-glass not yet reviewed ({}):*\n{}",
            unreviewed.len(),
            lines(&unreviewed, "break-glass grants")
        )
    };
    blocks.push(section("home_security_unreviewed", &text));
    blocks.push(context(
        "You see this because you are in the security group. Reviews are done by each runbook's approvers and owner, from their message.",
    ));
}

/// At most [`MAX_SECURITY_LINES`] lines, within a section's 3,000
/// characters, and a count of the rest.
fn lines(all: &[String], what: &str) -> String {
    let mut out = String::new();
    let mut shown = 0;
    for l in all.iter().take(MAX_SECURITY_LINES) {
        let l = truncate(l, 400);
        // Room is kept for the last line that counts the rest.
        if out.chars().count() + l.chars().count() + 1 > 2800 {
            break;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&l);
        shown += 1;
    }
    if shown < all.len() {
        out.push_str(&format!(
            "\n…and {} more {what}. `/access status` shows your own; the audit log has everyone's.",
            all.len() - shown
        ));
    }
    out
}

/// The answer to the Home tab's Request button for a runbook the person
/// may not request (or that is gone).
pub fn not_requestable(runbook: &str) -> String {
    format!(
        ":no_entry_sign: You cannot request `{}` (it is not in the runbooks you may request); `/access list` shows those you can.",
        quoted(runbook, 64)
    )
}

/// One line of `/access status` about a request waiting for the reader's
/// approval; Approve and Deny are on its message and in the Home tab.
pub fn waiting_line(req: &AccessRequest) -> String {
    format!(
        "• `{}` {} asks for *{}* for {}",
        req.id,
        mention(&req.requester),
        user_text(&req.runbook_title, 80),
        format_duration_words(Duration::from_secs(req.duration_secs))
    )
}

fn duration_of(r: &AccessRequest) -> String {
    format_duration_words(Duration::from_secs(r.duration_secs))
}

fn when(at: DateTime<Utc>) -> String {
    // Slack renders this in each reader's own time zone.
    format!(
        "<!date^{}^{{date_short_pretty}} at {{time}}|{}>",
        at.timestamp(),
        at.format("%Y-%m-%d %H:%M UTC")
    )
}

fn header(text: &str) -> Value {
    json!({"type": "header", "text": {"type": "plain_text", "text": truncate(text, 150), "emoji": true}})
}

fn divider() -> Value {
    json!({"type": "divider"})
}

fn section(block_id: &str, text: &str) -> Value {
    json!({"type": "section", "block_id": truncate(block_id, 255),
           "text": {"type": "mrkdwn", "text": truncate(text, 3000)}})
}

fn context(text: &str) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, 3000)}]})
}

fn actions(block_id: &str, elements: Vec<Value>) -> Value {
    json!({"type": "actions", "block_id": truncate(block_id, 255), "elements": elements})
}

/// A button whose `action_id` is `<action>:<value>`, unique in the view.
fn button(text: &str, action_id: &str, value: &str, style: Option<&str>) -> Value {
    let mut b = json!({
        "type": "button",
        "text": {"type": "plain_text", "text": truncate(text, 75), "emoji": true},
        "action_id": truncate(&format!("{action_id}:{value}"), 255),
        "value": truncate(value, 2000),
    });
    if let Some(s) = style {
        b["style"] = json!(s);
    }
    b
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::request::{StageState, Status};

    fn request(i: usize, requester: &str, status: Status) -> AccessRequest {
        let now = Utc::now();
        let mut r = AccessRequest {
            runbook_title: format!("Runbook {i} <!channel> {}", "t".repeat(300)),
            system: "S".repeat(300),
            reason: "why ".repeat(400),
            status,
            expires_at: Some(now + chrono::Duration::hours(2)),
            ..AccessRequest::new(
                format!("ar-{i:020}"),
                &format!("runbook-{i}"),
                requester,
                Duration::from_secs(3600),
                vec![StageState {
                    name: "first".into(),
                    approvers: vec!["U0BOB".into(), "U0CAROL".into()],
                    required: 1,
                }],
                now,
            )
        };
        r.break_glass = i.is_multiple_of(3);
        r
    }

    fn runbook(i: usize) -> Runbook {
        let text = crate::runbook::fixture::VALID
            .replacen("billing-admin", &format!("runbook-{i}"), 1)
            .replacen(
                "Billing portal admin",
                &format!("Runbook {i} {}", "x".repeat(60)),
                1,
            )
            .replacen("Refunds and plan changes", &"d".repeat(2000), 1);
        crate::runbook::fixture::parse(&text).expect("valid runbook")
    }

    /// Every Block Kit limit the Home tab must keep, as Slack checks them.
    fn check_limits(view: &Value) {
        assert_eq!(view["type"], "home");
        let blocks = view["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS, "{} blocks", blocks.len());
        let mut block_ids = HashSet::new();
        let mut action_ids = HashSet::new();
        for b in blocks {
            if let Some(id) = b["block_id"].as_str() {
                assert!(id.chars().count() <= 255, "{id}");
                assert!(block_ids.insert(id.to_string()), "block_id {id} twice");
            }
            match b["type"].as_str().unwrap() {
                "section" => {
                    let t = b["text"]["text"].as_str().unwrap();
                    assert!(t.chars().count() <= 3000, "section of {}", t.len());
                }
                "header" => {
                    assert!(b["text"]["text"].as_str().unwrap().chars().count() <= 150)
                }
                "context" => {
                    for e in b["elements"].as_array().unwrap() {
                        assert!(e["text"].as_str().unwrap().chars().count() <= 3000);
                    }
                }
                "actions" => assert!(b["elements"].as_array().unwrap().len() <= 25),
                "divider" => {}
                other => panic!("unexpected block {other}"),
            }
            let in_actions = b["type"] == "actions";
            let buttons: Vec<&Value> = b["elements"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|_| in_actions)
                .chain(b.get("accessory"))
                .collect();
            for btn in buttons {
                assert_eq!(btn["type"], "button");
                assert!(btn["text"]["text"].as_str().unwrap().chars().count() <= 75);
                assert!(btn["value"].as_str().unwrap().chars().count() <= 2000);
                let id = btn["action_id"].as_str().unwrap();
                assert!(id.chars().count() <= 255);
                assert!(action_ids.insert(id.to_string()), "action_id {id} twice");
            }
        }
    }

    fn texts(view: &Value) -> String {
        view.to_string()
    }

    fn count_actions(view: &Value, action: &str) -> usize {
        let v = texts(view);
        v.matches(&format!("\"action_id\":\"{action}:")).count()
    }

    #[test]
    fn an_empty_home_says_so_and_keeps_the_limits() {
        let extend = |_: &str| Duration::from_secs(3600);
        let view = view(&HomeData {
            now: Utc::now(),
            mine: &[],
            to_approve: &[],
            catalog: &[],
            extend_by: &extend,
            security: None,
        });
        check_limits(&view);
        let t = texts(&view);
        assert!(t.contains("You hold no access right now."), "{t}");
        assert!(t.contains("Nothing of yours is waiting"), "{t}");
        assert!(t.contains("nothing you can request yet"), "{t}");
        assert!(!t.contains("Waiting for your approval"), "{t}");
        assert!(!t.contains("Security overview"), "{t}");
    }

    #[test]
    fn thirty_grants_and_forty_approvals_fit_with_the_rest_counted() {
        let mut mine: Vec<AccessRequest> = (0..30)
            .map(|i| request(i, "U0ALICE", Status::Active))
            .collect();
        mine.extend((30..42).map(|i| request(i, "U0ALICE", Status::Pending)));
        mine.push(request(42, "U0ALICE", Status::Revoking));
        let to_approve: Vec<AccessRequest> = (100..140)
            .map(|i| request(i, "U0DAVE", Status::Pending))
            .collect();
        let runbooks: Vec<Runbook> = (0..20).map(runbook).collect();
        let catalog: Vec<&Runbook> = runbooks.iter().collect();
        let elevated: Vec<AccessRequest> = (200..260)
            .map(|i| request(i, "U0EVE", Status::Active))
            .collect();
        let unreviewed: Vec<AccessRequest> =
            elevated.iter().filter(|r| r.break_glass).cloned().collect();
        let extend = |_: &str| Duration::from_secs(1800);
        let view = view(&HomeData {
            now: Utc::now(),
            mine: &mine,
            to_approve: &to_approve,
            catalog: &catalog,
            extend_by: &extend,
            security: Some(SecurityData {
                elevated: &elevated,
                unreviewed: &unreviewed,
            }),
        });
        check_limits(&view);
        let t = texts(&view);
        assert_eq!(count_actions(&view, action::RELEASE), MAX_GRANTS);
        assert_eq!(count_actions(&view, action::EXTEND), MAX_GRANTS);
        assert_eq!(count_actions(&view, home_action::CANCEL), MAX_PENDING);
        assert_eq!(count_actions(&view, action::APPROVE), MAX_APPROVALS);
        assert_eq!(count_actions(&view, action::DENY), MAX_APPROVALS);
        assert_eq!(count_actions(&view, home_action::REQUEST), MAX_CATALOG);
        assert!(t.contains("and 22 more active grants"), "{t}");
        assert!(t.contains("and 4 more pending requests"), "{t}");
        assert!(
            t.contains("and 30 more requests wait for your approval"),
            "{t}"
        );
        assert!(t.contains("and 5 more. `/access list`"), "{t}");
        assert!(t.contains("/access status"), "{t}");
        assert!(t.contains("Extend by 30 minutes"), "{t}");
        assert!(t.contains("being revoked"), "{t}");
        assert!(t.contains("Elevated access now (60)"), "{t}");
        assert!(t.contains("Break-glass not yet reviewed (20)"), "{t}");
        assert!(t.contains("more grants"), "{t}");
        // Mentions in runbook titles are escaped, never live.
        assert!(!t.contains("<!channel>"), "{t}");
    }

    #[test]
    fn a_button_names_its_action_before_the_colon() {
        assert_eq!(base_action("approve:ar-1"), "approve");
        assert_eq!(base_action("approve"), "approve");
        assert_eq!(base_action("home_request:billing-admin"), "home_request");
    }
}
