//! The feedback DM sent when a grant ends: two one-click questions, "Was
//! the time right?" and "Did the access let you do the task?". After a
//! click the same message shows the answers given (a chosen button is
//! marked) and keeps its buttons, so a second click changes the answer.

use serde_json::{json, Value};

use super::blocks::{truncate, user_text, Msg};
use crate::duration::format_duration_words;
use crate::feedback::{Answer, Feedback, TimeAnswer};
use crate::request::AccessRequest;

pub const TIME_QUESTION: &str = "Was the time right?";
pub const TASK_QUESTION: &str = "Did the access let you do the task?";

fn label(a: Answer) -> &'static str {
    match a {
        Answer::Time(TimeAnswer::TooShort) => "Too short",
        Answer::Time(TimeAnswer::Right) => "Right",
        Answer::Time(TimeAnswer::TooLong) => "Too long",
        Answer::Task(true) => "Yes",
        Answer::Task(false) => "No",
    }
}

fn chosen(f: Option<&Feedback>, a: Answer) -> bool {
    match (f, a) {
        (Some(f), Answer::Time(t)) => f.time == Some(t),
        (Some(f), Answer::Task(d)) => f.task_done == Some(d),
        (None, _) => false,
    }
}

fn buttons(req: &AccessRequest, f: Option<&Feedback>, block: &str, answers: &[Answer]) -> Value {
    let elements: Vec<Value> = answers
        .iter()
        .map(|a| {
            let mut b = json!({
                "type": "button",
                "text": {"type": "plain_text", "text": label(*a), "emoji": true},
                "action_id": a.action_id(),
                "value": req.id,
            });
            if chosen(f, *a) {
                b["style"] = json!("primary");
            }
            b
        })
        .collect();
    json!({"type": "actions", "block_id": truncate(&format!("{block}:{}", req.id), 255), "elements": elements})
}

/// The questions about `req`'s grant, showing the answers `given` so far.
pub fn feedback_request(req: &AccessRequest, given: Option<&Feedback>) -> Msg {
    let granted = format_duration_words(std::time::Duration::from_secs(req.total_secs));
    let intro = format!(
        ":speech_balloon: Two quick questions about your access to *{}* (granted for {granted}) help its owner tune how it is given:",
        user_text(&req.runbook_title, 200)
    );
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&intro, 3000)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{TIME_QUESTION}*")}}),
        buttons(
            req,
            given,
            "feedback_time",
            &[
                Answer::Time(TimeAnswer::TooShort),
                Answer::Time(TimeAnswer::Right),
                Answer::Time(TimeAnswer::TooLong),
            ],
        ),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{TASK_QUESTION}*")}}),
        buttons(
            req,
            given,
            "feedback_task",
            &[Answer::Task(true), Answer::Task(false)],
        ),
    ];
    if let Some(f) = given {
        let mut said = Vec::new();
        if let Some(t) = f.time {
            said.push(format!("time {}", t.words()));
        }
        if let Some(d) = f.task_done {
            said.push(if d { "task done" } else { "task not done" }.to_string());
        }
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("Thanks, recorded: {}. Press another button to change an answer.", said.join(", "))}]}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": super::text::request_ref(req)}]}));
    Msg {
        text: truncate(&format!("{intro} {TIME_QUESTION} {TASK_QUESTION}"), 3000),
        blocks: json!(blocks),
    }
}

/// What the person who clicked reads.
pub fn answer_recorded(answer: Answer) -> String {
    format!(
        ":white_check_mark: Thanks: recorded that {}. You can change it with the other button.",
        answer.words().replace("them", "you")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chosen_answers_are_marked_and_every_button_stays() {
        let req = AccessRequest::new(
            "ar-x".into(),
            "rb",
            "U1",
            std::time::Duration::from_secs(3600),
            vec![],
            chrono::Utc::now(),
        );
        let fresh = feedback_request(&req, None);
        let f = Feedback {
            time: Some(TimeAnswer::TooLong),
            task_done: Some(false),
            at: None,
        };
        let answered = feedback_request(&req, Some(&f));
        for msg in [&fresh, &answered] {
            let ids: Vec<&str> = msg
                .blocks
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"] == "actions")
                .flat_map(|b| {
                    b["elements"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["action_id"].as_str().unwrap())
                })
                .collect();
            assert_eq!(ids.len(), 5);
        }
        let styled: Vec<&str> = answered
            .blocks
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().unwrap().iter())
            .filter(|e| e["style"] == "primary")
            .map(|e| e["action_id"].as_str().unwrap())
            .collect();
        assert_eq!(styled, ["feedback_time_too_long", "feedback_task_no"]);
    }
}
