//! The requester's feedback on a grant that ended: two one-click questions
//! ("Was the time right?" and "Did the access let you do the task?") and
//! the answers, kept on the request they are about. Plain serde types, like
//! [`crate::request`]; the buttons are built in `slack/`, the answers are
//! recorded by `workflow/feedback.rs` and read by [`crate::report`].
//!
//! A second click on the same question replaces the first answer (a person
//! who pressed the wrong button can correct it); every click is audited.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// "Was the time right?"
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeAnswer {
    TooShort,
    Right,
    TooLong,
}

impl TimeAnswer {
    pub fn words(self) -> &'static str {
        match self {
            TimeAnswer::TooShort => "too short",
            TimeAnswer::Right => "right",
            TimeAnswer::TooLong => "too long",
        }
    }
}

/// One click: an answer to one of the two questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Time(TimeAnswer),
    /// "Did the access let you do the task?"
    Task(bool),
}

impl Answer {
    /// The button's action ID for this answer (`feedback_time_too_long`, …).
    pub fn action_id(self) -> &'static str {
        match self {
            Answer::Time(TimeAnswer::TooShort) => "feedback_time_too_short",
            Answer::Time(TimeAnswer::Right) => "feedback_time_right",
            Answer::Time(TimeAnswer::TooLong) => "feedback_time_too_long",
            Answer::Task(true) => "feedback_task_yes",
            Answer::Task(false) => "feedback_task_no",
        }
    }

    /// The answer a button's action ID stands for; `None` for any other action.
    pub fn from_action_id(id: &str) -> Option<Answer> {
        ALL.iter().copied().find(|a| a.action_id() == id)
    }

    /// The answer in words, for the audit log and the requester.
    pub fn words(self) -> String {
        match self {
            Answer::Time(t) => format!("the time was {}", t.words()),
            Answer::Task(true) => "the access let them do the task".into(),
            Answer::Task(false) => "the access did not let them do the task".into(),
        }
    }
}

/// Every answer, in the order the buttons show them.
pub const ALL: [Answer; 5] = [
    Answer::Time(TimeAnswer::TooShort),
    Answer::Time(TimeAnswer::Right),
    Answer::Time(TimeAnswer::TooLong),
    Answer::Task(true),
    Answer::Task(false),
];

/// The answers given so far about one grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    #[serde(default)]
    pub time: Option<TimeAnswer>,
    #[serde(default)]
    pub task_done: Option<bool>,
    /// When the last answer was given.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

impl Feedback {
    /// Records `answer` at `now`, replacing an earlier answer to the same
    /// question. Returns whether it changed anything.
    pub fn apply(&mut self, answer: Answer, now: DateTime<Utc>) -> bool {
        let changed = match answer {
            Answer::Time(t) => self.time.replace(t) != Some(t),
            Answer::Task(done) => self.task_done.replace(done) != Some(done),
        };
        self.at = Some(now);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_ids_round_trip_and_nothing_else_is_an_answer() {
        for a in ALL {
            assert_eq!(Answer::from_action_id(a.action_id()), Some(a));
        }
        assert_eq!(Answer::from_action_id("approve"), None);
        assert_eq!(Answer::from_action_id(""), None);
    }

    #[test]
    fn a_second_click_replaces_the_first_answer_to_that_question_only() {
        let now = Utc::now();
        let mut f = Feedback::default();
        assert!(f.apply(Answer::Time(TimeAnswer::TooLong), now));
        assert!(f.apply(Answer::Task(true), now));
        assert!(!f.apply(Answer::Task(true), now));
        assert!(f.apply(Answer::Time(TimeAnswer::Right), now));
        assert_eq!(f.time, Some(TimeAnswer::Right));
        assert_eq!(f.task_done, Some(true));
        let stored = serde_json::to_string(&f).unwrap();
        assert!(stored.contains(r#""time":"right""#), "{stored}");
    }
}
