//! Scheduled start: `at <time>` in the text form and the modal's date-time
//! picker. Approval happens first; the request waits as `scheduled`, the
//! timer grants it at its start (durably: across a restart), and it ends its
//! duration after the start. Starts in the past or beyond the runbook's
//! `max_schedule_ahead` are refused with nothing stored.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde_json::{json, Value};

use crate::support::*;

const T: Duration = Duration::from_secs(15);

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The start an approver's DM shows (the first date after `*Starts*`).
fn start_shown(dm: &Value) -> Option<DateTime<Utc>> {
    slack_date_in(dm.to_string().split("*Starts*").nth(1)?)
}

/// The instant the first `<!date^UNIX^…>` in `text` names.
fn slack_date_in(text: &str) -> Option<DateTime<Utc>> {
    let rest = text.split("<!date^").nth(1)?;
    let secs: i64 = rest.split('^').next()?.parse().ok()?;
    DateTime::from_timestamp(secs, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_start_survives_a_restart_and_is_granted_on_time() {
    let mut app = TestApp::spawn().await;
    // Far enough ahead for the approval and a restart on a busy machine.
    let start = (Utc::now() + chrono::Duration::seconds(20))
        .with_nanosecond(0)
        .unwrap();
    let answer = app
        .slash(
            ALICE,
            &format!("request billing-admin 3s at {} month-end close", iso(start)),
        )
        .await;
    let id = request_id_in(&answer).unwrap_or_else(|| panic!("{answer}"));
    assert!(answer.contains("scheduled to start"), "{answer}");
    assert_eq!(slack_date_in(&answer), Some(start), "{answer}");

    let status = app.slash(ALICE, "status").await;
    assert_eq!(status_in(&status, &id).as_deref(), Some("pending approval"));
    assert_eq!(
        slack_date_in(status.split("(starts").nth(1).unwrap_or("")),
        Some(start),
        "{status}"
    );
    // The approver sees when it would start.
    let dm = app.wait_dm(BOB, &[&id, "Approve", "*Starts*"], T).await;
    assert_eq!(start_shown(&dm), Some(start), "{dm}");
    app.press(BOB, "approve", &id).await;
    app.wait_for_status(ALICE, &id, "scheduled", T).await;
    let status = app.slash(ALICE, "status").await;
    assert!(status.contains("(starts <!date^"), "{status}");
    app.wait_audit(&["scheduled to start", &id], T).await;
    assert!(
        app.provider_runs("grant", &id).is_empty(),
        "granted before its start"
    );

    app.restart().await;
    assert!(
        Utc::now() < start,
        "the restart took until the start; the test cannot show the grant survived it"
    );

    app.wait_for_status(ALICE, &id, "active", Duration::from_secs(40))
        .await;
    let run = &app.provider_runs("grant", &id)[0];
    let late = run.started_at - start;
    assert!(
        late >= chrono::Duration::zero() && late <= chrono::Duration::seconds(1),
        "granted at {}, start was {start}",
        run.started_at
    );
    // It ends its duration after the start, not after the grant ran.
    assert_eq!(run.expires_at, start + chrono::Duration::seconds(3));
    app.wait_done(&format!("revoke {id}"), T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_time_is_the_next_one_in_the_requesters_time_zone() {
    let app = TestApp::spawn().await;
    // Alice is in India (UTC+05:30): `at HH:MM` is that time there.
    app.slack.set_user_tz(ALICE, "Asia/Kolkata", 19800);
    let offset = chrono::FixedOffset::east_opt(19800).unwrap();
    let local = (Utc::now() + chrono::Duration::minutes(3)).with_timezone(&offset);
    let hhmm = local.format("%H:%M").to_string();
    let expected = local
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap()
        .with_timezone(&Utc);
    let answer = app
        .slash(ALICE, &format!("request billing-admin 1h at {hhmm} close"))
        .await;
    assert!(request_id_in(&answer).is_some(), "{answer}");
    assert_eq!(slack_date_in(&answer), Some(expected), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_in_the_past_or_too_far_ahead_are_refused() {
    let near = r#"
[request]
allowed = ["*"]
default_duration = "1h"
max_duration = "4h"
max_schedule_ahead = "1h"
"#;
    let soon = BILLING
        .replace("id = \"billing-admin\"", "id = \"soon\"")
        .replace(
            "[request]\nallowed = [\"*\"]\ndefault_duration = \"3s\"\nmax_duration = \"1h\"\n",
            near.trim_start(),
        );
    assert!(soon.contains("max_schedule_ahead"), "{soon}");
    let app = TestApp::spawn_with(Setup::default().with_runbook("soon", &soon)).await;
    let past = iso(Utc::now() - chrono::Duration::hours(2));
    let week_on = iso(Utc::now() + chrono::Duration::days(8));
    let later = iso(Utc::now() + chrono::Duration::hours(2));
    let cases = [
        (
            format!("request billing-admin 1h at {past} close"),
            "has already passed; choose a time in the future",
        ),
        (
            format!("request billing-admin 1h at {week_on} close"),
            "`billing-admin` can be scheduled at most 7 days ahead",
        ),
        (
            format!("request soon 1h at {later} close"),
            "`soon` can be scheduled at most 1 hour ahead",
        ),
        (
            "request billing-admin 1h at 9:99 close".to_string(),
            "`at 9:99` is not a time accessbot reads",
        ),
    ];
    for (text, expected) in &cases {
        let answer = app.slash(ALICE, text).await;
        assert!(answer.contains(expected), "{text}: {answer}");
        assert!(request_id_in(&answer).is_none(), "{text}: {answer}");
    }
    assert!(app
        .slash(ALICE, "status")
        .await
        .contains("no pending requests"));

    // The modal's picker: the error is shown next to it.
    let submission = |at: i64| -> Value {
        json!({
            "type": "view_submission",
            "user": {"id": ALICE, "username": "x", "team_id": "T0FAKE"},
            "team": {"id": "T0FAKE"},
            "api_app_id": "A0ACCESS",
            "view": {
                "id": "V0MODAL", "callback_id": "access_request", "private_metadata": "", "hash": "h1",
                "state": {"values": {
                    "runbook": {"runbook_select": {"type": "static_select", "selected_option": {"value": "billing-admin"}}},
                    "duration": {"duration_input": {"type": "plain_text_input", "value": "1h"}},
                    "reason": {"reason_input": {"type": "plain_text_input", "value": "close"}},
                    "start": {"start_picker": {"type": "datetimepicker", "selected_date_time": at}}
                }}
            }
        })
    };
    let answer: Value = app
        .interact(&submission(
            (Utc::now() - chrono::Duration::hours(1)).timestamp(),
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["response_action"], "errors", "{answer}");
    assert!(
        answer["errors"]["start"]
            .as_str()
            .unwrap_or_default()
            .contains("has already passed"),
        "{answer}"
    );
    assert!(app
        .slash(ALICE, "status")
        .await
        .contains("no pending requests"));
    // A start ahead in the picker is taken.
    let start = (Utc::now() + chrono::Duration::hours(3))
        .with_nanosecond(0)
        .unwrap();
    let r = app.interact(&submission(start.timestamp())).await;
    assert_eq!(r.text().await.unwrap(), "");
    let dm = app.wait_dm(BOB, &["Approve", "*Starts*"], T).await;
    assert_eq!(start_shown(&dm), Some(start), "{dm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_request_can_be_cancelled_before_its_start() {
    let app = TestApp::spawn().await;
    let start = Utc::now() + chrono::Duration::hours(1);
    let id = app
        .request(ALICE, &format!("billing-admin 1h at {} close", iso(start)))
        .await;
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_for_status(ALICE, &id, "scheduled", T).await;
    let answer = app.slash(ALICE, &format!("revoke {id}")).await;
    assert!(answer.contains("Cancelled"), "{answer}");
    assert_eq!(app.status_of(ALICE, &id).await, None);
    app.wait_audit(&["cancelled before its start by <@U0ALICE>", &id], T)
        .await;
    assert!(
        app.provider_calls().is_empty(),
        "{:?}",
        app.provider_calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_approved_request_waits_for_its_start_too() {
    let auto = BILLING.replace(
        "approval_timeout = \"1h\"\n",
        "approval_timeout = \"1h\"\n[[approval.auto_approve]]\nname = \"on-call\"\nusers = [\"U0DAVE\"]\nmax_duration = \"30m\"\n",
    );
    assert!(auto.contains("on-call"), "{auto}");
    let app = TestApp::spawn_with(Setup::default().only_runbook("billing-admin", &auto)).await;
    let start = (Utc::now() + chrono::Duration::seconds(10))
        .with_nanosecond(0)
        .unwrap();
    let answer = app
        .slash(
            DAVE,
            &format!("request billing-admin 2s at {} pager duty", iso(start)),
        )
        .await;
    let id = request_id_in(&answer).unwrap_or_else(|| panic!("{answer}"));
    assert!(
        answer.contains("approved automatically and is scheduled"),
        "{answer}"
    );
    assert_eq!(app.status_of(DAVE, &id).await.as_deref(), Some("scheduled"));
    app.wait_for_status(DAVE, &id, "active", Duration::from_secs(30))
        .await;
    let run = &app.provider_runs("grant", &id)[0];
    assert!(
        run.started_at >= start && run.started_at - start <= chrono::Duration::seconds(1),
        "granted at {}, start was {start}",
        run.started_at
    );
    assert_eq!(run.expires_at, start + chrono::Duration::seconds(2));
}
