//! Several `accessbot serve` processes on one PostgreSQL database, sharing
//! one Slack, one set of runbooks and one target system (the provider
//! script's state): requests and presses spread over the replicas, and
//! every approval, grant, revoke and Slack message happens once. A replica
//! killed in the middle of a revoke loses nothing: another one finishes it
//! once its lease runs out, never beside the run it replaces.

use std::time::Duration;

use crate::support::*;

const T: Duration = Duration::from_secs(20);
const AUDIT_TOKEN: &str = "audit-export-token-replicas-0123456789";

/// Three replicas on one fresh database.
async fn three_replicas(setup: Setup) -> TestApp {
    let mut app = TestApp::spawn_with(setup.env("ACCESSBOT_AUDIT_TOKEN", AUDIT_TOKEN)).await;
    assert_eq!(app.engine, Engine::Postgres);
    app.add_replica().await;
    app.add_replica().await;
    assert_eq!(app.replica_count(), 3);
    app
}

/// `chat.postMessage` calls that went to `user`'s DM and mention `id`.
fn dms_posted(app: &TestApp, user: &str, id: &str) -> usize {
    app.slack
        .calls("chat.postMessage")
        .iter()
        .filter(|c| c.body["channel"] == format!("D{user}") && c.body.to_string().contains(id))
        .count()
}

/// The hash chain verdict of `GET /audit` on replica `n`.
async fn audit_chain(app: &TestApp, n: usize) -> String {
    let r = reqwest::Client::new()
        .get(format!("{}/audit", app.base_of(n)))
        .bearer_auth(AUDIT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-accessbot-audit-chain"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_approve_presses_across_replicas_give_one_grant() {
    let app = three_replicas(Setup::default()).await;
    let id = request_id_in(
        &app.slash_at(1, ALICE, "request billing-admin 1h month end")
            .await,
    )
    .expect("a request id");
    // The approval DMs go out once, whichever replica's outbox sends them.
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    app.wait_dm(CAROL, &[&id, "Approve"], T).await;

    let presses = (0..200).map(|i| {
        let app = &app;
        let id = id.clone();
        async move {
            let approver = if i % 2 == 0 { BOB } else { CAROL };
            app.press_at(i % 3, approver, "approve", &id).await;
        }
    });
    futures_util::future::join_all(presses).await;

    app.wait_for_status(ALICE, &id, "active", T).await;
    app.wait_outbox_empty(T).await;
    assert_eq!(
        app.provider_runs("grant", &id).len(),
        1,
        "one grant; provider calls: {:?}",
        app.provider_calls()
    );
    let log = verified_audit_log(app.database_url.as_deref().unwrap()).await;
    let approved = log
        .iter()
        .filter(|e| e["kind"] == "approved" && e["request_id"] == id.as_str())
        .count();
    assert_eq!(approved, 1, "one approval recorded: {log:#?}");
    let granted = log
        .iter()
        .filter(|e| e["kind"] == "granted" && e["request_id"] == id.as_str())
        .count();
    assert_eq!(granted, 1);
    assert_eq!(dms_posted(&app, BOB, &id), 1);
    assert_eq!(dms_posted(&app, CAROL, &id), 1);
    assert!(app.provider_overlaps().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_requests_across_replicas_each_message_grant_and_revoke_once() {
    let app = three_replicas(Setup::default()).await;
    let requesters: Vec<String> = (0..50).map(|i| format!("U0REQ{i:02}")).collect();
    for r in &requesters {
        app.slack
            .add_user(r, &format!("Requester {r}"), &format!("{r}@example.com"));
    }
    // Made on one replica each, approved on the next: a button pressed on
    // one sees the request made on another.
    let made = requesters.iter().enumerate().map(|(i, r)| {
        let app = &app;
        async move {
            let answer = app
                .slash_at(i % 3, r, "request billing-admin 3s month end")
                .await;
            request_id_in(&answer).unwrap_or_else(|| panic!("no request id in {answer}"))
        }
    });
    let ids: Vec<String> = futures_util::future::join_all(made).await;
    for id in &ids {
        app.wait_dm(BOB, &[id, "Approve"], T).await;
    }
    let approvals = ids.iter().enumerate().map(|(i, id)| {
        let app = &app;
        async move {
            app.press_at((i + 1) % 3, BOB, "approve", id).await;
        }
    });
    futures_util::future::join_all(approvals).await;

    // Every grant ends on time, on whichever replica's timer.
    for (r, id) in requesters.iter().zip(&ids) {
        let revoked = wait_until(T, || {
            app.provider_done()
                .contains(&format!("revoke {id}"))
                .then_some(())
        })
        .await;
        assert!(
            revoked.is_some(),
            "{id} was not revoked; logs:\n{}",
            app.logs()
        );
        let deadline = std::time::Instant::now() + T;
        while app.status_of(r, id).await.is_some() {
            assert!(std::time::Instant::now() < deadline, "{id} never ended");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    app.wait_outbox_empty(T).await;
    for (r, id) in requesters.iter().zip(&ids) {
        assert_eq!(app.provider_runs("grant", id).len(), 1, "grants of {id}");
        assert_eq!(app.provider_runs("revoke", id).len(), 1, "revokes of {id}");
        assert_eq!(dms_posted(&app, BOB, id), 1, "Bob's DMs about {id}");
        assert_eq!(dms_posted(&app, CAROL, id), 1, "Carol's DMs about {id}");
        assert!(dms_posted(&app, r, id) >= 1, "{r} heard about {id}");
    }
    assert!(app.provider_overlaps().is_empty());
    assert_eq!(audit_chain(&app, 2).await, "intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_revoke_loses_nothing() {
    let mut app = three_replicas(Setup::default().env("ACCESSBOT_LEASE", "3s")).await;
    // The revoke is slow from the start: a 2s grant can end before the
    // test would get to slow it down on a busy machine.
    app.slow_provider("revoke", 30);
    let id = app.request(ALICE, "billing-admin 2s month end").await;
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    app.press_at(1, BOB, "approve", &id).await;
    app.wait_for_status(ALICE, &id, "active", T).await;

    // The state "provider started": the revoke's program runs, on some
    // replica, and has recorded its call (it writes its process ID first,
    // so waiting for that alone could kill it before the call is counted).
    let run = wait_until(T, || {
        let started = app.provider_runs("revoke", &id).len() == 1;
        started
            .then(|| app.provider_processes("revoke", &id).first().copied())
            .flatten()
    })
    .await
    .unwrap_or_else(|| panic!("the revoke never started; logs:\n{}", app.logs()));
    let parent = parent_of(run.pid);
    let holder = (0..app.replica_count())
        .find(|n| app.pid_of(*n) == Some(parent))
        .unwrap_or_else(|| panic!("the revoke's program {} is no replica's child", run.pid));
    app.kill_replica(holder);
    std::fs::remove_file(app.state_dir.join("slow_revoke")).unwrap();

    // Another replica takes it over once the lease runs out, and finishes it.
    let survivor = (0..3).find(|n| *n != holder).unwrap();
    app.wait_done(&format!("revoke {id}"), T).await;
    let deadline = std::time::Instant::now() + T;
    while status_in(&app.slash_at(survivor, ALICE, "status").await, &id).is_some() {
        assert!(std::time::Instant::now() < deadline, "{id} never ended");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        app.provider_runs("revoke", &id).len(),
        2,
        "the killed run and the one that replaced it"
    );
    assert_eq!(
        app.provider_done()
            .iter()
            .filter(|l| **l == format!("revoke {id}"))
            .count(),
        1,
        "the revoke happened once"
    );
    assert!(
        app.provider_overlaps().is_empty(),
        "the new run overlapped what the killed one left: {:?}",
        app.provider_overlaps()
    );
    app.wait_audit(&["Access revoked", &id], T).await;
    assert_eq!(audit_chain(&app, survivor).await, "intact");
}

/// The parent process of `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: i32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the run still runs");
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `accessbot_replays_total` of replica `n`: deliveries it answered from
/// the replay guard instead of handling them.
async fn replays_at(app: &TestApp, n: usize) -> u64 {
    let text = reqwest::get(format!("{}/metrics", app.base_of(n)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("accessbot_replays_total ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no accessbot_replays_total in:\n{text}"))
}

/// Slack's retries of one `/access request` delivery land on the other two
/// replicas while the first copy is still being handled (its approvers'
/// user-group lookup is slow): the delivery is handled once, on one replica,
/// and every copy gets that one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_retried_on_other_replicas_while_in_flight_is_handled_once() {
    let grouped = BILLING.replace(
        "approvers = [\"U0BOB\", \"U0CAROL\"]",
        "approvers = [\"S0BILLING\"]",
    );
    assert_ne!(
        grouped, BILLING,
        "the runbook names its approvers as expected"
    );
    let app = three_replicas(Setup::default().only_runbook("billing-admin", &grouped)).await;
    app.slack.set_usergroup("S0BILLING", &[BOB, CAROL]);
    app.slack
        .set_delay("usergroups.users.list", Duration::from_millis(1000));

    let body = TestApp::slash_body(ALICE, "request billing-admin 1h month end");
    let send = |n: usize, retry: Option<u32>| {
        let (base, body) = (app.base_of(n).to_string(), body.clone());
        async move {
            let ts = chrono::Utc::now().timestamp();
            let mut r = reqwest::Client::new()
                .post(format!("{base}/slack/commands"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-slack-request-timestamp", ts.to_string())
                .header("x-slack-signature", TestApp::sign(ts, body.as_bytes()));
            if let Some(n) = retry {
                r = r
                    .header("x-slack-retry-num", n.to_string())
                    .header("x-slack-retry-reason", "http_timeout");
            }
            let r = r.body(body).send().await.expect("accessbot answers");
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let first = tokio::spawn(send(0, None));
    // The state "first copy in flight": its approvers are being looked up.
    wait_until(T, || {
        (!app.slack.calls("usergroups.users.list").is_empty()).then_some(())
    })
    .await
    .expect("the first copy looks its approvers up");
    let (second, third) = tokio::join!(send(1, Some(1)), send(2, Some(2)));
    let first = first.await.unwrap();

    let id = request_id_in(&first).unwrap_or_else(|| panic!("no request id in {first}"));
    assert_eq!(
        second, first,
        "the retry on replica 1 gets the first answer"
    );
    assert_eq!(third, first, "the retry on replica 2 gets the first answer");
    let log = verified_audit_log(app.database_url.as_deref().unwrap()).await;
    let requested: Vec<_> = log.iter().filter(|e| e["kind"] == "requested").collect();
    assert_eq!(requested.len(), 1, "one request made: {requested:#?}");
    assert_eq!(requested[0]["request_id"], id.as_str());
    assert_eq!(replays_at(&app, 0).await, 0);
    assert_eq!(
        replays_at(&app, 1).await,
        1,
        "replica 1 answered from the guard"
    );
    assert_eq!(
        replays_at(&app, 2).await,
        1,
        "replica 2 answered from the guard"
    );
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    app.wait_outbox_empty(T).await;
    assert_eq!(dms_posted(&app, BOB, &id), 1);
}

/// Three copies of one `/access request` delivery reach three replicas at
/// the same moment: exactly one handles it, and all three answers are its.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_arriving_on_three_replicas_at_once_is_handled_once() {
    let app = three_replicas(Setup::default()).await;
    let body = TestApp::slash_body(ALICE, "request billing-admin 1h month end");
    let ts = chrono::Utc::now().timestamp();
    let signature = TestApp::sign(ts, body.as_bytes());
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(3));
    let copies = (0..3).map(|n| {
        let (base, body, signature, start) = (
            app.base_of(n).to_string(),
            body.clone(),
            signature.clone(),
            start.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let request = client
                .post(format!("{base}/slack/commands"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-slack-request-timestamp", ts.to_string())
                .header("x-slack-signature", signature)
                .body(body);
            start.wait().await;
            let r = request.send().await.expect("accessbot answers");
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        })
    });
    let answers: Vec<String> = futures_util::future::join_all(copies)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let id = request_id_in(&answers[0]).unwrap_or_else(|| panic!("no request id in {answers:?}"));
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "one answer: {answers:#?}"
    );
    let log = verified_audit_log(app.database_url.as_deref().unwrap()).await;
    let requested = log.iter().filter(|e| e["kind"] == "requested").count();
    assert_eq!(requested, 1, "one request made");
    let mut replays = 0;
    for n in 0..3 {
        replays += replays_at(&app, n).await;
    }
    assert_eq!(
        replays, 2,
        "two copies answered from the guard, one handled"
    );
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    app.wait_outbox_empty(T).await;
    assert_eq!(dms_posted(&app, BOB, &id), 1);
}

/// The state gauges of `/metrics` are read from the shared store, so every
/// replica gives the same numbers, whichever replica saw the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_reports_the_same_store_gauges() {
    let app = three_replicas(Setup::default()).await;
    let pending = request_id_in(
        &app.slash_at(1, ALICE, "request billing-admin 1h month end")
            .await,
    )
    .expect("a request id");
    let active = request_id_in(
        &app.slash_at(2, DAVE, "request billing-admin 1h refunds")
            .await,
    )
    .expect("a request id");
    app.wait_dm(BOB, &[&active, "Approve"], T).await;
    app.press_at(0, BOB, "approve", &active).await;
    app.wait_for_status(DAVE, &active, "active", T).await;
    app.wait_dm(BOB, &[&pending, "Approve"], T).await;
    let http = reqwest::Client::new();
    for n in 0..3 {
        let text = http
            .get(format!("{}/metrics", app.base_of(n)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let s = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let gauge = |name: &str| {
            s.samples
                .iter()
                .find(|x| x.metric == name)
                .map(|x| match x.value {
                    prometheus_parse::Value::Gauge(v) => v,
                    ref other => panic!("{name} is not a gauge: {other:?}"),
                })
                .unwrap_or_else(|| panic!("no {name} on replica {n}:\n{text}"))
        };
        assert_eq!(gauge("accessbot_pending_requests"), 1.0, "replica {n}");
        assert_eq!(gauge("accessbot_active_grants"), 1.0, "replica {n}");
    }
}
