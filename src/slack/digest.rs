//! The audit channel's digest messages, the one-line form of a notice they
//! list, and the audit notice's loud marker. A digest longer than Slack
//! takes in one message (50 blocks, 3,000 characters a section) is split
//! into parts, every event listed once, in order.

use serde_json::json;

use super::blocks::{escape, truncate, user_text, Msg};
use super::text;
use crate::duration::format_duration;
use crate::request::AccessRequest;

/// Characters of one event's line in a digest at most.
const LINE_MAX: usize = 600;
/// Characters of one section block (Slack allows 3,000).
const SECTION_MAX: usize = 2900;
/// Sections per message (Slack allows 50 blocks; one is the header line).
const SECTIONS_MAX: usize = 40;
/// Characters of events in one message, so a digest stays readable.
const MESSAGE_MAX: usize = 12_000;

/// The mark that makes break-glass and failure notices stand out.
pub const LOUD_MARK: &str = ":rotating_light: *ALERT*";

/// One message of a digest and how many events it lists.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestPart {
    pub msg: Msg,
    pub events: usize,
}

/// A notice as one line of a digest: the time, the event, what happened,
/// the runbook, the requester and the request ID.
pub fn notice_line(
    kind: &str,
    loud: bool,
    req: &AccessRequest,
    line: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> String {
    let mark = if loud {
        format!("{LOUD_MARK} ")
    } else {
        String::new()
    };
    truncate(
        &format!(
            "`{}` {mark}*{}*: {line} · {} · <@{}> · {} · `{}`",
            at.format("%H:%M:%S"),
            text::event_name(kind),
            user_text(&req.runbook_id, 100),
            escape(&req.requester),
            format_duration(std::time::Duration::from_secs(req.duration_secs)),
            req.id
        ),
        LINE_MAX,
    )
}

/// The digest of `lines` (in order), split into as many messages as it
/// takes; `backlog` is how many notices were waiting.
pub fn audit_digest(lines: &[String], backlog: u64) -> Vec<DigestPart> {
    // Group lines into sections, sections into messages.
    let mut messages: Vec<Vec<Vec<&str>>> = vec![vec![]];
    let mut message_chars = 0;
    for line in lines {
        let len = line.chars().count() + 1;
        let msg = messages.last_mut().expect("one message at least");
        let fits_section = msg.last().is_some_and(|s: &Vec<&str>| {
            s.iter().map(|l| l.chars().count() + 1).sum::<usize>() + len <= SECTION_MAX
        });
        let new_message =
            message_chars + len > MESSAGE_MAX || (!fits_section && msg.len() >= SECTIONS_MAX);
        if new_message && !msg.is_empty() {
            messages.push(vec![vec![line.as_str()]]);
            message_chars = len;
            continue;
        }
        message_chars += len;
        match msg.last_mut() {
            Some(section) if fits_section => section.push(line),
            _ => msg.push(vec![line.as_str()]),
        }
    }
    let parts = messages.len();
    let mut first = 1;
    messages
        .into_iter()
        .enumerate()
        .map(|(i, sections)| {
            let events: usize = sections.iter().map(Vec::len).sum();
            let head = format!(
                ":page_facing_up: *Audit digest* · events {first}–{} of {} listed in order{} · {backlog} notices were waiting, so they are combined until the backlog drains",
                first + events - 1,
                lines.len(),
                if parts > 1 { format!(" · part {} of {parts}", i + 1) } else { String::new() },
            );
            first += events;
            let mut blocks = vec![json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&head, 3000)}]})];
            blocks.extend(sections.iter().map(|s| {
                json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&s.join("\n"), 3000)}})
            }));
            DigestPart {
                msg: Msg {
                    text: truncate(&format!("Audit digest: {events} events"), 3000),
                    blocks: json!(blocks),
                },
                events,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_digest_is_split_within_slacks_limits_and_keeps_every_line_in_order() {
        let lines: Vec<String> = (0..900)
            .map(|i| format!("event {i:04} {}", "x".repeat(i % 300)))
            .collect();
        let parts = audit_digest(&lines, 900);
        assert!(parts.len() > 1);
        let mut seen = Vec::new();
        for p in &parts {
            let blocks = p.msg.blocks.as_array().unwrap();
            assert!(blocks.len() <= 50);
            let mut n = 0;
            for b in &blocks[1..] {
                let t = b["text"]["text"].as_str().unwrap();
                assert!(t.chars().count() <= 3000);
                for l in t.lines() {
                    seen.push(l.to_string());
                    n += 1;
                }
            }
            assert_eq!(n, p.events);
        }
        assert_eq!(seen, lines);
    }

    #[test]
    fn a_short_digest_is_one_message() {
        let lines = vec!["a".to_string(), "b".to_string()];
        let parts = audit_digest(&lines, 30);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].events, 2);
        assert_eq!(parts[0].msg.blocks[1]["text"]["text"], "a\nb");
    }
}
