//! The report's figures on a known, scripted week of requests, exactly.

use chrono::TimeZone;

use super::*;
use crate::feedback::Feedback;
use crate::request::Approval;

/// 2025-03-03 is a Monday.
fn at(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, day, h, m, 0).unwrap()
}

fn req(id: &str, runbook: &str, user: &str, created: DateTime<Utc>) -> AccessRequest {
    AccessRequest {
        runbook_title: format!("{runbook} title"),
        ..AccessRequest::new(
            id.into(),
            runbook,
            user,
            Duration::from_secs(3600),
            vec![],
            created,
        )
    }
}

/// Approved by a person at `approved`, granted then, for `total` seconds;
/// revoked at `ended` when given.
fn granted(
    mut r: AccessRequest,
    approved: DateTime<Utc>,
    total: u64,
    ended: Option<DateTime<Utc>>,
) -> AccessRequest {
    r.approvals.push(Approval {
        user: "U0BOSS".into(),
        stage: 0,
        at: approved,
    });
    r.granted_at = Some(approved);
    r.total_secs = total;
    r.expires_at = Some(approved + chrono::Duration::seconds(total as i64));
    match ended {
        Some(end) => {
            r.status = Status::Revoked;
            r.ended_at = Some(end);
        }
        None => r.status = Status::Active,
    }
    r
}

fn answered(mut r: AccessRequest, time: TimeAnswer, done: Option<bool>) -> AccessRequest {
    r.feedback = Some(Feedback {
        time: Some(time),
        task_done: done,
        at: r.ended_at,
    });
    r
}

fn scripted() -> Vec<AccessRequest> {
    use TimeAnswer::*;
    let b = "billing-admin";
    let mut r3 = granted(
        req("r3", b, "U1", at(5, 9, 0)),
        at(5, 9, 5),
        7200,
        Some(at(5, 11, 5)),
    );
    r3.extensions = 1;
    let mut r4 = req("r4", b, "U2", at(5, 10, 0));
    r4.status = Status::Denied;
    r4.decided_by = Some("U0BOSS".into());
    r4.ended_at = Some(at(5, 10, 30));
    let mut r5 = req("r5", b, "U2", at(6, 10, 0));
    r5.status = Status::Denied;
    r5.decided_by = Some("U2".into());
    r5.ended_at = Some(at(6, 10, 1));
    let mut r6 = req("r6", b, "U3", at(6, 11, 0));
    r6.status = Status::Expired;
    let mut r7 = granted(req("r7", b, "U3", at(7, 11, 0)), at(7, 11, 0), 3600, None);
    r7.approvals.clear();
    r7.auto_rule = Some("on-call".into());
    let mut r12 = granted(
        req("r12", "prod-db", "U5", at(7, 12, 0)),
        at(7, 12, 0),
        1800,
        None,
    );
    r12.approvals.clear();
    r12.break_glass = true;
    vec![
        // Before the period, and after it: not counted.
        answered(
            granted(
                req("r0", b, "U1", at(2, 9, 0)),
                at(2, 9, 1),
                3600,
                Some(at(2, 9, 2)),
            ),
            TooShort,
            None,
        ),
        req("r11", "prod-db", "U5", at(8, 9, 0)),
        answered(
            granted(
                req("r1", b, "U1", at(3, 9, 0)),
                at(3, 9, 10),
                3600,
                Some(at(3, 10, 10)),
            ),
            TooLong,
            Some(true),
        ),
        answered(
            granted(
                req("r2", b, "U1", at(4, 9, 0)),
                at(4, 9, 20),
                3600,
                Some(at(4, 9, 40)),
            ),
            TooLong,
            Some(true),
        ),
        answered(r3, Right, Some(true)),
        r4,
        r5,
        r6,
        r7,
        answered(
            granted(
                req("r8", b, "U1", at(6, 9, 0)),
                at(6, 9, 1),
                3600,
                Some(at(6, 9, 31)),
            ),
            TooLong,
            Some(false),
        ),
        answered(
            granted(
                req("r9", b, "U4", at(7, 8, 0)),
                at(7, 8, 2),
                3600,
                Some(at(7, 8, 32)),
            ),
            TooLong,
            None,
        ),
        answered(
            granted(
                req("r10", b, "U4", at(7, 9, 0)),
                at(7, 9, 3),
                3600,
                Some(at(7, 9, 23)),
            ),
            TooLong,
            None,
        ),
        r12,
    ]
}

fn report() -> Report {
    let mut b = ReportBuilder::new(at(3, 0, 0), at(7, 18, 0));
    for r in scripted() {
        b.add(&r);
        b.add_holder(&r);
    }
    b.finish()
}

#[test]
fn per_runbook_figures_are_exact() {
    let rep = report();
    assert_eq!(rep.working_days, 5);
    let names: Vec<&str> = rep.runbooks.iter().map(|r| r.runbook.as_str()).collect();
    assert_eq!(names, ["billing-admin", "prod-db"]);
    let b = &rep.runbooks[0];
    assert_eq!(
        (b.requests, b.approved, b.denied, b.withdrawn, b.expired),
        (10, 6, 1, 1, 1)
    );
    assert_eq!(
        (b.auto_approved, b.break_glass, b.pending, b.failed),
        (1, 0, 0, 0)
    );
    // Decisions by people: 600, 1200, 300, 60, 120, 180 and the denial's 1800.
    assert_eq!(b.median_decision_secs, Some(300));
    assert_eq!(b.p90_decision_secs, Some(1800));
    // Granted: six 1h grants and one of 2h (r3, extended); used: r1 1h,
    // r2 20m (released early), r3 2h, r8 30m, r9 30m, r10 20m.
    assert_eq!(b.median_granted_secs, Some(3600));
    assert_eq!(b.median_used_secs, Some(1800));
    assert_eq!(b.extensions, 1);
    assert_eq!(
        b.top_requesters,
        [("U1", 4), ("U2", 2), ("U3", 2)]
            .map(|(user, requests)| Requester {
                user: user.into(),
                requests
            })
            .to_vec()
    );
    let pg = &rep.runbooks[1];
    assert_eq!((pg.requests, pg.break_glass, pg.approved), (1, 1, 0));
    assert_eq!(pg.median_decision_secs, None);
}

#[test]
fn feedback_sits_next_to_use_and_suggests_a_default() {
    let rep = report();
    let f = &rep.runbooks[0].feedback;
    assert_eq!((f.time_too_short, f.time_right, f.time_too_long), (0, 1, 5));
    assert_eq!((f.task_done, f.task_not_done), (3, 1));
    assert_eq!(
        f.suggestion,
        Some(Suggestion {
            // 30m used, plus a quarter, rounded up to 5 minutes.
            default_duration_secs: 2400,
            default_duration: "40m".into(),
            reason: "5 of 6 said too long; median use 30m of 1h".into(),
        })
    );
    assert_eq!(rep.runbooks[1].feedback.suggestion, None);
}

#[test]
fn no_suggestion_below_five_answers_or_without_a_majority() {
    let four = FeedbackSummary {
        time_too_long: 4,
        ..Default::default()
    };
    assert_eq!(suggest(&four, Some(600), Some(3600)), None);
    let split = FeedbackSummary {
        time_too_long: 3,
        time_right: 3,
        ..Default::default()
    };
    assert_eq!(suggest(&split, Some(600), Some(3600)), None);
    let short = FeedbackSummary {
        time_too_short: 7,
        time_right: 2,
        ..Default::default()
    };
    let s = suggest(&short, Some(3500), Some(3600)).unwrap();
    assert_eq!(s.default_duration, "1h30m");
    assert_eq!(s.reason, "7 of 9 said too short; median use 58m20s of 1h");
}

#[test]
fn holders_and_standing_access_hints() {
    let rep = report();
    let holders: Vec<(&str, &str, DateTime<Utc>)> = rep
        .holders
        .iter()
        .map(|h| (h.user.as_str(), h.request_id.as_str(), h.since))
        .collect();
    assert_eq!(
        holders,
        [("U3", "r7", at(7, 11, 0)), ("U5", "r12", at(7, 12, 0))]
    );
    assert_eq!(rep.standing_access.len(), 1, "{:?}", rep.standing_access);
    let hint = &rep.standing_access[0];
    assert_eq!(
        (hint.user.as_str(), hint.days, hint.working_days),
        ("U1", 4, 5)
    );
    assert!(
        hint.suggestion.contains("review their role"),
        "{}",
        hint.suggestion
    );
}

#[test]
fn medians_and_percentiles_follow_their_definitions() {
    assert_eq!(median(&mut []), None);
    assert_eq!(median(&mut [5]), Some(5));
    assert_eq!(median(&mut [4, 1, 3, 2]), Some(2));
    assert_eq!(p90(&mut (1..=10).collect::<Vec<_>>()), Some(9));
    assert_eq!(p90(&mut (1..=11).collect::<Vec<_>>()), Some(10));
    assert_eq!(p90(&mut [7]), Some(7));
}

#[test]
fn the_text_and_json_forms_carry_the_figures() {
    let rep = report();
    let text = rep.to_text();
    assert!(text.contains("requests 10: approved 6, denied 1"), "{text}");
    assert!(
        text.contains(
            "suggestion: default_duration = \"40m\" (5 of 6 said too long; median use 30m of 1h)"
        ),
        "{text}"
    );
    assert!(
        text.contains("U3 holds billing-admin since 2025-03-07 11:00 UTC (r7)"),
        "{text}"
    );
    let json = serde_json::to_value(&rep).unwrap();
    assert_eq!(json["runbooks"][0]["median_used_secs"], 1800);
    assert_eq!(json["standing_access"][0]["user"], "U1");
}
