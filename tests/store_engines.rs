//! The storage interface, tested on both engines with the same test
//! functions: sled (in a temporary directory) and PostgreSQL (a real server
//! started by `support/postgres.rs`; a machine without PostgreSQL fails).
//!
//! `both_engines!` turns each `async fn name(kind: Kind)` below into
//! `sled::name` and `postgres::name`. A "handle" is what one replica has: on
//! sled another `SledEngine` over the same open database (sled is one
//! process), on PostgreSQL another `PgEngine` with pools of its own.

#[path = "support/postgres.rs"]
mod pg;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use accessbot::audit::NewAuditEvent;
use accessbot::outbox::{OutboxItem, SlackOp};
use accessbot::request::{AccessRequest, StageState, Status};
use accessbot::store::engine::{Claim, StoreEngine};
use accessbot::store::postgres::{PgEngine, PgOptions};
use accessbot::store::{Effects, SledEngine, Store, StoreError};
use chrono::{DateTime, TimeZone, Utc};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sled,
    Postgres,
}

/// One database, and a way to open more handles on it.
struct Fixture {
    kind: Kind,
    _dir: Option<tempfile::TempDir>,
    store: Option<Arc<Store>>,
    url: Option<String>,
}

impl Fixture {
    async fn new(kind: Kind) -> Fixture {
        match kind {
            Kind::Sled => {
                let dir = tempfile::tempdir().unwrap();
                let store = Arc::new(Store::open(dir.path()).unwrap());
                Fixture {
                    kind,
                    _dir: Some(dir),
                    store: Some(store),
                    url: None,
                }
            }
            Kind::Postgres => Fixture {
                kind,
                _dir: None,
                store: None,
                url: Some(pg::database().await),
            },
        }
    }

    /// A new replica's handle on the database.
    async fn handle(&self) -> Arc<dyn StoreEngine> {
        match self.kind {
            Kind::Sled => Arc::new(SledEngine::new(self.store.clone().unwrap())),
            Kind::Postgres => {
                let options = PgOptions {
                    max_connections: 8,
                    lock_connections: 4,
                    ..PgOptions::default()
                };
                Arc::new(
                    PgEngine::connect_with(self.url.as_deref().unwrap(), options)
                        .await
                        .unwrap(),
                )
            }
        }
    }
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn request(id: &str, requester: &str, runbook: &str, status: Status) -> AccessRequest {
    let stages = vec![StageState {
        name: "approval".into(),
        approvers: vec!["U0BOB".into()],
        required: 1,
    }];
    AccessRequest {
        runbook_title: "Billing admin".into(),
        system: "billing".into(),
        reason: "month-end".into(),
        status,
        approval_deadline: at(600),
        total_secs: 0,
        ..AccessRequest::new(
            id.into(),
            runbook,
            requester,
            std::time::Duration::from_secs(3600),
            stages,
            at(0),
        )
    }
}

fn event(kind: &str, request_id: &str) -> NewAuditEvent {
    NewAuditEvent {
        kind: kind.into(),
        request_id: request_id.into(),
        runbook: "billing-admin".into(),
        actor: "U0BOB".into(),
        subject: "U0ALICE".into(),
        detail: String::new(),
        ..Default::default()
    }
}

fn post(order_key: &str, text: &str) -> OutboxItem {
    OutboxItem::new(
        order_key,
        SlackOp::Post {
            channel: "C0AUDIT".into(),
            text: text.into(),
            blocks: serde_json::Value::Null,
        },
    )
}

fn effects(outbox: Vec<OutboxItem>, audit: Vec<NewAuditEvent>) -> Effects {
    Effects { outbox, audit }
}

async fn audit_count(e: &dyn StoreEngine) -> u64 {
    e.verify_audit()
        .await
        .unwrap()
        .expect("the audit chain verifies")
}

macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Sled).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Postgres).await
                }
            )*
        }
    };
}

both_engines!(
    a_change_its_deadline_outbox_and_audit_commit_together,
    due_work_is_leased_to_one_claimer_until_the_lease_runs_out,
    concurrent_updates_of_one_request_are_serialised,
    the_audit_chain_stays_one_order_under_concurrent_appends,
    the_outbox_goes_out_in_order_per_request,
    the_replay_guard_remembers_and_forgets,
    concurrent_claims_of_one_delivery_give_one_claimer,
    a_claim_whose_lease_ran_out_is_taken_over,
    an_answered_or_released_claim,
    one_provider_run_at_a_time_per_person_and_runbook,
    a_new_deadline_wakes_other_handles,
    status_and_covering_queries_follow_the_status,
    audit_retention_prunes_in_batches_to_one_checkpoint,
    retention_removes_finished_requests_and_keeps_open_ones,
    the_outbox_backlog_is_counted_by_destination,
);

async fn a_change_its_deadline_outbox_and_audit_commit_together(kind: Kind) {
    let fx = Fixture::new(kind).await;
    let e = fx.handle().await;
    let req = request("ar-1", "U0ALICE", "billing-admin", Status::Pending);
    e.insert(
        &req,
        effects(
            vec![post("ar-1", "requested")],
            vec![event("requested", "ar-1")],
        ),
    )
    .await
    .unwrap();
    assert_eq!(e.get("ar-1").await.unwrap().as_ref(), Some(&req));
    assert_eq!(e.outbox_len().await.unwrap(), 1);
    assert_eq!(audit_count(&*e).await, 1);
    assert_eq!(e.next_deadline().await.unwrap(), Some(at(600)));

    // Inserting the same id again is refused and writes nothing.
    let again = e.insert(
        &req,
        effects(vec![post("ar-1", "x")], vec![event("x", "ar-1")]),
    );
    assert!(matches!(again.await, Err(StoreError::Exists(_))));
    assert_eq!(e.outbox_len().await.unwrap(), 1);
    assert_eq!(audit_count(&*e).await, 1);

    // A change that refuses writes nothing, not even its effects.
    let refused = e
        .update("ar-1", |r| {
            r.status = Status::Denied;
            Err::<((), Effects), _>("no")
        })
        .await
        .unwrap();
    assert_eq!(refused.unwrap_err(), "no");
    assert_eq!(
        e.get("ar-1").await.unwrap().unwrap().status,
        Status::Pending
    );

    // A change commits the request, its new deadline and its effects.
    let (value, new) = e
        .update("ar-1", |r| {
            r.status = Status::Active;
            r.expires_at = Some(at(3600));
            Ok::<_, ()>((
                7,
                effects(
                    vec![post("ar-1", "granted"), post("ar-1", "dm")],
                    vec![event("approved", "ar-1"), event("granted", "ar-1")],
                ),
            ))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value, 7);
    assert_eq!(new.status, Status::Active);
    assert_eq!(e.get("ar-1").await.unwrap().unwrap(), new);
    assert_eq!(e.next_deadline().await.unwrap(), Some(at(3600)));
    assert_eq!(e.outbox_len().await.unwrap(), 3);
    assert_eq!(audit_count(&*e).await, 3);
    let events = e.audit_range(0, 10).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["requested", "approved", "granted"]);
    assert_eq!(e.audit_head().await.unwrap(), (3, events[2].hash.clone()));
    // Paged reads continue where the last page ended.
    assert_eq!(e.audit_range(1, 1).await.unwrap()[0].kind, "approved");

    // A finished request has no deadline.
    e.update("ar-1", |r| {
        r.status = Status::Revoked;
        Ok::<_, ()>(((), Effects::default()))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(e.next_deadline().await.unwrap(), None);

    let missing = e
        .update("ar-nope", |_| Ok::<_, ()>(((), Effects::default())))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));
}

async fn due_work_is_leased_to_one_claimer_until_the_lease_runs_out(kind: Kind) {
    let fx = Fixture::new(kind).await;
    let a = fx.handle().await;
    let b = fx.handle().await;
    assert_ne!(a.replica_id(), b.replica_id());
    for i in 0..20 {
        let mut req = request(&format!("ar-{i:02}"), "U0ALICE", "rb", Status::Pending);
        req.approval_deadline = at(i);
        a.insert(&req, Effects::default()).await.unwrap();
    }
    // A request not yet due is not claimed.
    let mut later = request("ar-later", "U0ALICE", "rb", Status::Pending);
    later.approval_deadline = at(10_000);
    a.insert(&later, Effects::default()).await.unwrap();

    let now = at(100);
    let lease = Duration::from_secs(60);
    let (x, y) = tokio::join!(a.claim_due(now, 8, lease), b.claim_due(now, 8, lease));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.len() + y.len(), 16);
    let xs: HashSet<_> = x.iter().map(|d| d.id.clone()).collect();
    let ys: HashSet<_> = y.iter().map(|d| d.id.clone()).collect();
    assert!(xs.is_disjoint(&ys), "{xs:?} and {ys:?} overlap");
    // Each claim is in time order.
    for claim in [&x, &y] {
        assert!(claim.windows(2).all(|w| w[0].due_at <= w[1].due_at));
    }
    let rest = a.claim_due(now, 100, lease).await.unwrap();
    assert_eq!(rest.len(), 4);
    assert!(b.claim_due(now, 100, lease).await.unwrap().is_empty());
    // Everything due is leased: the next moment worth waking is the first
    // lease's end (or the request not yet due, whichever is first).
    assert_eq!(a.next_deadline().await.unwrap(), Some(at(160)));

    // An update releases the lease: the request is claimable again at once.
    let first = x[0].id.clone();
    a.update(&first, |_| Ok::<_, ()>(((), Effects::default())))
        .await
        .unwrap()
        .unwrap();
    let again = b.claim_due(now, 100, lease).await.unwrap();
    assert_eq!(again.iter().map(|d| &d.id).collect::<Vec<_>>(), [&first]);

    // A lease that runs out (its holder died) is claimable by another:
    // every request due, the one re-claimed above included.
    let after = at(100 + 61);
    let reclaimed = b.claim_due(after, 100, lease).await.unwrap();
    assert_eq!(reclaimed.len(), 20, "{reclaimed:?}");
    assert!(!reclaimed.iter().any(|d| d.id == "ar-later"));
}

async fn concurrent_updates_of_one_request_are_serialised(kind: Kind) {
    let fx = Fixture::new(kind).await;
    let handles = [fx.handle().await, fx.handle().await, fx.handle().await];
    handles[0]
        .insert(
            &request("ar-x", "U0ALICE", "rb", Status::Pending),
            Effects::default(),
        )
        .await
        .unwrap();
    // 200 Approve presses spread over three replicas: exactly one approves.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let e = handles[i % handles.len()].clone();
        tasks.push(tokio::spawn(async move {
            e.update("ar-x", move |r| {
                r.attempts += 1;
                if r.status != Status::Pending {
                    return Err("already decided");
                }
                r.status = Status::Granting;
                r.decided_by = Some(format!("U{i}"));
                Ok((
                    (),
                    effects(
                        vec![post("ar-x", "approved")],
                        vec![event("approved", "ar-x")],
                    ),
                ))
            })
            .await
            .unwrap()
        }));
    }
    let mut approved = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            approved += 1;
        }
    }
    assert_eq!(approved, 1);
    let e = &handles[1];
    let req = e.get("ar-x").await.unwrap().unwrap();
    assert_eq!(req.status, Status::Granting);
    assert_eq!(e.outbox_len().await.unwrap(), 1);
    assert_eq!(audit_count(&**e).await, 1);

    // No update is lost: 200 increments from three replicas give 200.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let e = handles[i % handles.len()].clone();
        tasks.push(tokio::spawn(async move {
            e.update("ar-x", |r| {
                r.total_secs += 1;
                Ok::<_, ()>(((), Effects::default()))
            })
            .await
            .unwrap()
            .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(e.get("ar-x").await.unwrap().unwrap().total_secs, 200);
}

async fn the_audit_chain_stays_one_order_under_concurrent_appends(kind: Kind) {
    let fx = Fixture::new(kind).await;
    let a = fx.handle().await;
    let b = fx.handle().await;
    for id in ["ar-a", "ar-b"] {
        a.insert(
            &request(id, "U0ALICE", "rb", Status::Pending),
            Effects::default(),
        )
        .await
        .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..100 {
        let e = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                // Effects without a state change.
                0 => e
                    .enqueue(effects(
                        vec![],
                        vec![event("refused", "ar-a"), event("x", "ar-a")],
                    ))
                    .await
                    .unwrap(),
                // Effects with a change of either request.
                _ => {
                    let id = if i % 3 == 1 { "ar-a" } else { "ar-b" };
                    e.update(id, |_| {
                        Ok::<_, ()>(((), effects(vec![], vec![event("noted", id)])))
                    })
                    .await
                    .unwrap()
                    .unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let expected = (0..100)
        .map(|i| if i % 3 == 0 { 2 } else { 1 })
        .sum::<u64>();
    assert_eq!(audit_count(&*a).await, expected);
    assert_eq!(audit_count(&*b).await, expected);
    let (seq, hash) = b.audit_head().await.unwrap();
    assert_eq!(seq, expected);
    let last = a.audit_range(expected - 1, 10).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].hash, hash);
}

async fn the_outbox_goes_out_in_order_per_request(kind: Kind) {
    let fx = Fixture::new(kind).await;
    let a = fx.handle().await;
    let b = fx.handle().await;
    a.enqueue(effects(
        vec![post("ar-a", "a1"), post("ar-a", "a2"), post("ar-b", "b1")],
        vec![],
    ))
    .await
    .unwrap();
    let now = Utc::now();
    let lease = Duration::from_secs(60);
    let texts = |entries: &[accessbot::store::OutboxEntry]| -> Vec<String> {
        entries
            .iter()
            .map(|e| match &e.item.op {
                SlackOp::Post { text, .. } => text.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    };
    // Only the head of each request's queue goes; a2 waits for a1.
    let first = a.outbox_claim(now, 10, lease).await.unwrap();
    assert_eq!(texts(&first), ["a1", "b1"]);
    // Leased entries are not handed to another replica, nor is a2.
    assert!(b.outbox_claim(now, 10, lease).await.unwrap().is_empty());
    a.outbox_done(first[0].seq).await.unwrap();
    let next = b.outbox_claim(now, 10, lease).await.unwrap();
    assert_eq!(texts(&next), ["a2"]);
    // A failed delivery waits for its not_before, then goes again.
    let mut failed = first[1].item.clone();
    failed.attempts = 1;
    failed.not_before = Some(now + chrono::Duration::seconds(30));
    a.outbox_retry(first[1].seq, &failed).await.unwrap();
    assert!(a.outbox_claim(now, 10, lease).await.unwrap().is_empty());
    let retried = a
        .outbox_claim(now + chrono::Duration::seconds(31), 10, lease)
        .await
        .unwrap();
    assert_eq!(texts(&retried), ["b1"]);
    assert_eq!(retried[0].item.attempts, 1);
    // A lease that runs out makes the entry claimable again.
    let expired = a
        .outbox_claim(now + chrono::Duration::seconds(61), 10, lease)
        .await
        .unwrap();
    assert_eq!(texts(&expired), ["a2"]);
    assert_eq!(a.outbox_len().await.unwrap(), 2);
}

async fn the_replay_guard_remembers_and_forgets(kind: Kind) {
    let fx = Fixture::new(kind).await;
    let a = fx.handle().await;
    let b = fx.handle().await;
    assert_eq!(a.seen_get(b"sig-1").await.unwrap(), None);
    a.seen_put(b"sig-1", at(0), b"{\"text\":\"ok\"}")
        .await
        .unwrap();
    a.seen_put(b"sig-2", at(100), b"").await.unwrap();
    // Another replica sees it.
    assert_eq!(
        b.seen_get(b"sig-1").await.unwrap().as_deref(),
        Some(&b"{\"text\":\"ok\"}"[..])
    );
    assert_eq!(
        b.seen_get(b"sig-2").await.unwrap().as_deref(),
        Some(&b""[..])
    );
    assert_eq!(b.seen_prune(at(50)).await.unwrap(), 1);
    assert_eq!(a.seen_get(b"sig-1").await.unwrap(), None);
    assert!(a.seen_get(b"sig-2").await.unwrap().is_some());
}

/// Three handles (replicas) claim one delivery key 20 times each at once:
/// exactly one claim is the caller's, every other sees it in flight.
async fn concurrent_claims_of_one_delivery_give_one_claimer(kind: Kind) {
    let fx = Fixture::new(kind).await;
    let handles = [fx.handle().await, fx.handle().await, fx.handle().await];
    let lease = Duration::from_secs(30);
    let start = Arc::new(tokio::sync::Barrier::new(60));
    let claims: Vec<_> = (0..60)
        .map(|i| {
            let h = Arc::clone(&handles[i % 3]);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                h.seen_claim(b"delivery:1", at(0), &format!("claimer-{i}"), lease)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut mine = 0;
    for c in claims {
        match c.await.unwrap() {
            Claim::Mine => mine += 1,
            Claim::InFlight => {}
            other => panic!("nothing was answered yet: {other:?}"),
        }
    }
    assert_eq!(mine, 1);
    // Not answered: a look-up finds no answer yet.
    assert_eq!(handles[1].seen_get(b"delivery:1").await.unwrap(), None);
}

async fn a_claim_whose_lease_ran_out_is_taken_over(kind: Kind) {
    let fx = Fixture::new(kind).await;
    let a = fx.handle().await;
    let b = fx.handle().await;
    let lease = Duration::from_secs(30);
    assert_eq!(
        a.seen_claim(b"delivery:2", at(0), "a", lease)
            .await
            .unwrap(),
        Claim::Mine
    );
    // Within the lease it stays a's.
    assert_eq!(
        b.seen_claim(b"delivery:2", at(29), "b", lease)
            .await
            .unwrap(),
        Claim::InFlight
    );
    // a died: after the lease, b takes it over, once.
    assert_eq!(
        b.seen_claim(b"delivery:2", at(31), "b", lease)
            .await
            .unwrap(),
        Claim::Mine
    );
    assert_eq!(
        a.seen_claim(b"delivery:2", at(32), "c", lease)
            .await
            .unwrap(),
        Claim::InFlight
    );
    // a's late release does not free b's claim.
    a.seen_release(b"delivery:2", "a").await.unwrap();
    assert_eq!(
        a.seen_claim(b"delivery:2", at(33), "c", lease)
            .await
            .unwrap(),
        Claim::InFlight
    );
}

async fn an_answered_or_released_claim(kind: Kind) {
    let fx = Fixture::new(kind).await;
    let a = fx.handle().await;
    let b = fx.handle().await;
    let lease = Duration::from_secs(30);
    assert_eq!(
        a.seen_claim(b"delivery:3", at(0), "a", lease)
            .await
            .unwrap(),
        Claim::Mine
    );
    a.seen_put(b"delivery:3", at(1), b"{\"text\":\"first\"}")
        .await
        .unwrap();
    // Answered: every later claim, on any handle and after any lease, gets the answer.
    for (h, t) in [(&a, 2), (&b, 3), (&b, 100)] {
        assert_eq!(
            h.seen_claim(b"delivery:3", at(t), "x", lease)
                .await
                .unwrap(),
            Claim::Answered(b"{\"text\":\"first\"}".to_vec())
        );
    }
    assert_eq!(
        b.seen_get(b"delivery:3").await.unwrap().as_deref(),
        Some(&b"{\"text\":\"first\"}"[..])
    );
    // A claim given up without an answer lets the next copy be handled;
    // a release by another owner does nothing.
    assert_eq!(
        a.seen_claim(b"delivery:4", at(0), "a", lease)
            .await
            .unwrap(),
        Claim::Mine
    );
    b.seen_release(b"delivery:4", "someone else").await.unwrap();
    assert_eq!(
        b.seen_claim(b"delivery:4", at(1), "b", lease)
            .await
            .unwrap(),
        Claim::InFlight
    );
    a.seen_release(b"delivery:4", "a").await.unwrap();
    assert_eq!(
        b.seen_claim(b"delivery:4", at(2), "b", lease)
            .await
            .unwrap(),
        Claim::Mine
    );
    // An answer is pruned like any other, and the key is new again.
    assert!(b.seen_prune(at(50)).await.unwrap() >= 1);
    assert_eq!(
        a.seen_claim(b"delivery:3", at(60), "a", lease)
            .await
            .unwrap(),
        Claim::Mine
    );
}

async fn one_provider_run_at_a_time_per_person_and_runbook(kind: Kind) {
    let fx = Fixture::new(kind).await;
    let a = fx.handle().await;
    let b = fx.handle().await;
    let held = a
        .lock_provider_run("U0ALICE", "billing-admin")
        .await
        .unwrap();
    let waiting = tokio::time::timeout(
        Duration::from_millis(300),
        b.lock_provider_run("U0ALICE", "billing-admin"),
    )
    .await;
    assert!(waiting.is_err(), "a second holder got the lock");
    // Another person or runbook is not held up.
    let _other = tokio::time::timeout(
        Duration::from_secs(5),
        b.lock_provider_run("U0ALICE", "other-runbook"),
    )
    .await
    .expect("another runbook's lock is free")
    .unwrap();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.lock_provider_run("U0ALICE", "billing-admin").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished());
    drop(held);
    let got = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the lock is released when its guard is dropped")
        .unwrap()
        .unwrap();
    drop(got);
    // And it can be taken again afterwards.
    tokio::time::timeout(
        Duration::from_secs(5),
        a.lock_provider_run("U0ALICE", "billing-admin"),
    )
    .await
    .expect("free again")
    .unwrap();
}

async fn a_new_deadline_wakes_other_handles(kind: Kind) {
    let fx = Fixture::new(kind).await;
    let a = fx.handle().await;
    let b = fx.handle().await;
    let wake = a.deadline_changed();
    // Use up any wake-up left from before.
    let _ = tokio::time::timeout(Duration::from_millis(200), wake.notified()).await;
    let notified = wake.notified();
    b.insert(
        &request("ar-1", "U0ALICE", "rb", Status::Pending),
        Effects::default(),
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), notified)
        .await
        .expect("a deadline set through another handle wakes this one");
}

async fn status_and_covering_queries_follow_the_status(kind: Kind) {
    let fx = Fixture::new(kind).await;
    let e = fx.handle().await;
    let mut ids = Vec::new();
    for (i, (who, runbook, status)) in [
        ("U0ALICE", "billing-admin", Status::Pending),
        ("U0ALICE", "billing-admin", Status::Active),
        ("U0ALICE", "billing-admin", Status::Revoked),
        ("U0ALICE", "db-read", Status::Granting),
        ("U0BOB", "billing-admin", Status::Active),
    ]
    .into_iter()
    .enumerate()
    {
        let mut req = request(&format!("ar-{i}"), who, runbook, status);
        req.created_at = at(i as i64);
        e.insert(&req, Effects::default()).await.unwrap();
        ids.push(req.id);
    }
    let ids_of = |v: Vec<AccessRequest>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids_of(e.open_requests_of("U0ALICE").await.unwrap()),
        ["ar-0", "ar-1", "ar-3"]
    );
    assert_eq!(
        ids_of(
            e.active_grants_covering("U0ALICE", "billing-admin")
                .await
                .unwrap()
        ),
        ["ar-1"]
    );
    // The indexes follow every change of status.
    e.update("ar-0", |r| {
        r.status = Status::Granting;
        Ok::<_, ()>(((), Effects::default()))
    })
    .await
    .unwrap()
    .unwrap();
    e.update("ar-1", |r| {
        r.status = Status::Revoked;
        Ok::<_, ()>(((), Effects::default()))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        ids_of(
            e.active_grants_covering("U0ALICE", "billing-admin")
                .await
                .unwrap()
        ),
        ["ar-0"]
    );
    assert_eq!(
        ids_of(e.open_requests_of("U0ALICE").await.unwrap()),
        ["ar-0", "ar-3"]
    );
    assert!(e.open_requests_of("U0NOBODY").await.unwrap().is_empty());
    // Recovery's question: every request in an unfinished status.
    assert_eq!(
        ids_of(e.requests_with_status(Status::Granting).await.unwrap()),
        ["ar-0", "ar-3"]
    );
    assert_eq!(
        ids_of(e.requests_with_status(Status::Active).await.unwrap()),
        ["ar-4"]
    );
    assert!(e
        .requests_with_status(Status::Pending)
        .await
        .unwrap()
        .is_empty());
    // A finished status is refused: its answer grows with every request.
    assert!(e.requests_with_status(Status::Revoked).await.is_err());
}

// ---- PostgreSQL only ----

async fn pg_handle(url: &str) -> Arc<PgEngine> {
    Arc::new(PgEngine::connect(url).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_provider_lock_is_released_when_its_connection_dies() {
    let url = pg::database().await;
    let a = pg_handle(&url).await;
    let b = pg_handle(&url).await;
    let held = a
        .lock_provider_run("U0ALICE", "billing-admin")
        .await
        .unwrap();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.lock_provider_run("U0ALICE", "billing-admin").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished());
    // The holder's session dies (as when its process is killed): the server
    // drops its advisory locks and the waiter gets the lock.
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l \
         WHERE l.locktype = 'advisory' AND l.granted \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(b.pool())
    .await
    .unwrap();
    assert_eq!(killed, 1);
    let _got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the lock is released when the holder's connection dies")
        .unwrap()
        .unwrap();
    // Dropping the dead holder's guard afterwards is harmless.
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_is_one_line_naming_the_host_without_the_password() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://accessbot:hunter2secret@127.0.0.1:{port}/accessbot");
    let options = PgOptions {
        acquire_timeout: Duration::from_secs(3),
        ..PgOptions::default()
    };
    let err = match PgEngine::connect_with(&url, options).await {
        Ok(_) => panic!("connected to a closed port"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("hunter2secret"), "{text}");
    assert!(text.contains("accessbot:***@"), "{text}");
    // The cause is the real one, not a pool's "timed out".
    assert!(text.contains("refused"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schema_newer_than_the_binary_is_refused() {
    let url = pg::database().await;
    let e = pg_handle(&url).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', true, '\\x00', 0)",
    )
    .execute(e.pool())
    .await
    .unwrap();
    let err = match PgEngine::connect(&url).await {
        Ok(_) => panic!("a newer schema was accepted"),
        Err(e) => e,
    };
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 99990101000000,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("newer than this accessbot"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_starting_together_migrate_once() {
    let url = pg::database().await;
    let starts = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { PgEngine::connect(&url).await.map(|_| ()) })
    });
    for s in starts {
        s.await.unwrap().unwrap();
    }
    let e = pg_handle(&url).await;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(e.pool())
        .await
        .unwrap();
    assert_eq!(
        applied as usize,
        accessbot::store::postgres::MIGRATOR.iter().count()
    );
}

/// With 10,000 requests stored (1,000 people), a person's status and the
/// covering check read only that person's rows, through the indexes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_status_and_covering_queries_do_not_scan() {
    let url = pg::database().await;
    let e = pg_handle(&url).await;
    let template = serde_json::to_value(request("x", "x", "x", Status::Revoked)).unwrap();
    // 10,000 finished requests in one statement (the bot's inserts would
    // take longer and test nothing more here).
    sqlx::query(
        "INSERT INTO requests (id, requester, runbook_id, status, created_at, body) \
         SELECT 'ar-bulk-' || g, 'U' || (g % 1000), 'billing-admin', 'revoked', now(), \
                jsonb_set(jsonb_set($1, '{id}', to_jsonb('ar-bulk-' || g)), \
                          '{requester}', to_jsonb('U' || (g % 1000))) \
         FROM generate_series(1, 10000) g",
    )
    .bind(&template)
    .execute(e.pool())
    .await
    .unwrap();
    for (id, status) in [("ar-p", Status::Pending), ("ar-a", Status::Active)] {
        e.insert(
            &request(id, "U7", "billing-admin", status),
            Effects::default(),
        )
        .await
        .unwrap();
    }
    sqlx::query("ANALYZE requests")
        .execute(e.pool())
        .await
        .unwrap();

    let open = e.open_requests_of("U7").await.unwrap();
    assert_eq!(open.len(), 2);
    let covering = e
        .active_grants_covering("U7", "billing-admin")
        .await
        .unwrap();
    assert_eq!(covering.len(), 1);

    use accessbot::store::postgres::queries;
    for (sql, args, answer) in [
        (queries::OPEN_OF, vec!["U7"], 2),
        (queries::COVERING, vec!["U7", "billing-admin"], 1),
        (queries::WITH_STATUS, vec!["pending"], 1),
    ] {
        let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}");
        let mut q = sqlx::query_scalar::<_, serde_json::Value>(sqlx::AssertSqlSafe(explain));
        for a in args {
            q = q.bind(a);
        }
        let plan = q.fetch_one(e.pool()).await.unwrap();
        let mut nodes = Vec::new();
        collect_nodes(&plan[0]["Plan"], &mut nodes);
        let types: Vec<&str> = nodes
            .iter()
            .filter_map(|n| n["Node Type"].as_str())
            .collect();
        assert!(!types.contains(&"Seq Scan"), "{sql}: {plan}");
        assert!(types.iter().any(|t| t.contains("Index")), "{sql}: {plan}");
        // Rows read by the scans: the answer, plus whatever a filter threw
        // away; never the table.
        let read: f64 = nodes
            .iter()
            .filter(|n| n["Node Type"].as_str().is_some_and(|t| t.contains("Scan")))
            .map(|n| {
                n["Actual Rows"].as_f64().unwrap_or(0.0)
                    + n["Rows Removed by Filter"].as_f64().unwrap_or(0.0)
                    + n["Rows Removed by Index Recheck"].as_f64().unwrap_or(0.0)
            })
            .sum();
        assert!(
            read <= (answer + 2) as f64,
            "{sql} read {read} rows: {plan}"
        );
    }
}

fn collect_nodes<'a>(plan: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    out.push(plan);
    if let Some(children) = plan["Plans"].as_array() {
        for c in children {
            collect_nodes(c, out);
        }
    }
}

// ---- sled only ----

/// The sled counterpart: with 10,000 requests stored, the queries visit
/// exactly the index entries of their answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_status_and_covering_queries_do_not_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    for g in 0..10_000 {
        let who = format!("U{}", g % 1000);
        let status = if g % 1000 == 7 && g < 3000 {
            [Status::Pending, Status::Active, Status::Revoked][g / 1000]
        } else {
            Status::Revoked
        };
        store
            .insert(
                &request(&format!("ar-{g}"), &who, "billing-admin", status),
                Effects::default(),
            )
            .unwrap();
    }
    let e = SledEngine::new(store);
    let before = e.index_reads();
    assert_eq!(e.open_requests_of("U7").await.unwrap().len(), 2);
    assert_eq!(e.index_reads() - before, 2);
    let before = e.index_reads();
    assert_eq!(
        e.active_grants_covering("U7", "billing-admin")
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(e.index_reads() - before, 1);
    let before = e.index_reads();
    assert_eq!(
        e.requests_with_status(Status::Pending).await.unwrap().len(),
        1
    );
    assert_eq!(e.index_reads() - before, 1);
}

/// A database written before the indexes existed gets them built at its
/// first start, once.
#[tokio::test]
async fn sled_indexes_are_built_for_an_older_database() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = ::sled::open(dir.path()).unwrap();
        let requests = db.open_tree("requests").unwrap();
        let req = request("ar-old", "U0ALICE", "billing-admin", Status::Active);
        requests
            .insert("ar-old", serde_json::to_vec(&req).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let e = SledEngine::new(Arc::new(Store::open(dir.path()).unwrap()));
    let covering = e
        .active_grants_covering("U0ALICE", "billing-admin")
        .await
        .unwrap();
    assert_eq!(covering.len(), 1);
}

// ---- moving an install ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_copies_sled_into_postgres_and_verifies_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (sled_head, expected) = {
        let store = Store::open(dir.path()).unwrap();
        let mut active = request("ar-active", "U0ALICE", "billing-admin", Status::Active);
        active.expires_at = Some(at(3600));
        store
            .insert(
                &active,
                effects(
                    vec![post("ar-active", "granted")],
                    vec![event("granted", "ar-active")],
                ),
            )
            .unwrap();
        store
            .insert(
                &request("ar-pending", "U0BOB", "db-read", Status::Pending),
                effects(
                    vec![post("ar-pending", "dm")],
                    vec![event("requested", "ar-pending")],
                ),
            )
            .unwrap();
        store
            .insert(
                &request("ar-done", "U0BOB", "db-read", Status::Revoked),
                effects(vec![], vec![event("revoked", "ar-done")]),
            )
            .unwrap();
        for i in 0..1200 {
            store
                .enqueue(effects(vec![], vec![event(&format!("e{i}"), "ar-done")]))
                .unwrap();
        }
        let engine = SledEngine::new(Arc::new(store));
        let head = engine.audit_head().await.unwrap();
        let expected = [
            engine.get("ar-active").await.unwrap().unwrap(),
            engine.get("ar-pending").await.unwrap().unwrap(),
        ];
        engine.store().flush().await.unwrap();
        (head, expected)
    };
    let url = pg::database().await;
    let summary = accessbot::store::migrate::sled_to_postgres(dir.path(), &url)
        .await
        .unwrap();
    assert_eq!(summary.requests, 3);
    assert_eq!(summary.with_deadline, 2);
    assert_eq!(summary.outbox, 2);
    assert_eq!(summary.audit_events, 1203);
    assert_eq!(summary.audit_head, sled_head.1);
    assert!(summary.to_string().contains("verifies"), "{summary}");

    let pg = pg_handle(&url).await;
    assert_eq!(pg.audit_head().await.unwrap(), sled_head);
    for req in &expected {
        assert_eq!(pg.get(&req.id).await.unwrap().as_ref(), Some(req));
    }
    // The active grant's revoke is due on PostgreSQL when it was due on sled.
    let pg_dyn: &dyn StoreEngine = &*pg;
    assert_eq!(pg_dyn.next_deadline().await.unwrap(), Some(at(600)));
    let due = pg_dyn
        .claim_due(at(3600), 10, Duration::from_secs(60))
        .await
        .unwrap();
    let due: HashSet<_> = due.into_iter().map(|d| d.id).collect();
    assert_eq!(
        due,
        HashSet::from(["ar-active".to_string(), "ar-pending".to_string()])
    );
    // New events chain on after the copied ones; new outbox entries come after.
    pg_dyn
        .enqueue(effects(
            vec![post("ar-new", "x")],
            vec![event("after", "ar-active")],
        ))
        .await
        .unwrap();
    assert_eq!(pg_dyn.verify_audit().await.unwrap(), Ok(1204));
    let claimed = pg_dyn
        .outbox_claim(Utc::now(), 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(claimed.windows(2).all(|w| w[0].seq < w[1].seq));

    // A second copy into the now non-empty database is refused.
    let again = accessbot::store::migrate::sled_to_postgres(dir.path(), &url).await;
    assert!(
        matches!(
            again,
            Err(accessbot::store::migrate::MigrateStoreError::NotEmpty(_))
        ),
        "{again:?}"
    );
}

// ---- retention (issue 13) ----

async fn audit_retention_prunes_in_batches_to_one_checkpoint(kind: Kind) {
    let fx = Fixture::new(kind).await;
    let e = fx.handle().await;
    let batch: Vec<NewAuditEvent> = (0..25)
        .map(|i| event("granted", &format!("ar-{i}")))
        .collect();
    e.enqueue(effects(vec![], batch)).await.unwrap();
    let original = e.audit_range(0, 100).await.unwrap();
    let cutoff = Utc::now() + chrono::Duration::seconds(5);
    let why = "test retention";
    for through in [10, 20, 25] {
        let cp = e
            .prune_audit(cutoff, 10, why)
            .await
            .unwrap()
            .expect("a prune");
        assert_eq!(cp.seq, through);
        assert_eq!(cp.hash, original[through as usize - 1].hash);
        let log = e.audit_range(0, 100).await.unwrap();
        assert_eq!(log[0], cp, "the checkpoint is the first event");
        assert_eq!(log.len(), 25 - through as usize + 1);
        assert_eq!(e.verify_audit().await.unwrap(), Ok(log.len() as u64));
    }
    assert_eq!(e.prune_audit(cutoff, 10, why).await.unwrap(), None);
    // New events chain on from the checkpoint.
    e.enqueue(effects(vec![], vec![event("requested", "ar-new")]))
        .await
        .unwrap();
    assert_eq!(e.verify_audit().await.unwrap(), Ok(2));
    // Nothing is old enough: nothing changes.
    let before = e.audit_range(0, 100).await.unwrap();
    assert_eq!(
        e.prune_audit(Utc::now() - chrono::Duration::hours(1), 10, why)
            .await
            .unwrap(),
        None
    );
    assert_eq!(e.audit_range(0, 100).await.unwrap(), before);
}

async fn retention_removes_finished_requests_and_keeps_open_ones(kind: Kind) {
    let fx = Fixture::new(kind).await;
    let e = fx.handle().await;
    let now = Utc::now();
    let mut old_revoked = request(
        "ar-old-revoked",
        "U0ALICE",
        "billing-admin",
        Status::Revoked,
    );
    old_revoked.ended_at = Some(at(100));
    let old_denied = request("ar-old-denied", "U0BOB", "billing-admin", Status::Denied);
    let old_pending = request(
        "ar-old-pending",
        "U0CAROL",
        "billing-admin",
        Status::Pending,
    );
    let mut old_active = request("ar-old-active", "U0DAVE", "billing-admin", Status::Active);
    old_active.expires_at = Some(now + chrono::Duration::hours(1));
    let mut recent = request("ar-recent", "U0ALICE", "db-read", Status::Revoked);
    recent.ended_at = Some(now);
    for r in [
        &old_revoked,
        &old_denied,
        &old_pending,
        &old_active,
        &recent,
    ] {
        e.insert(r, Effects::default()).await.unwrap();
    }
    let cutoff = now - chrono::Duration::hours(1);
    assert_eq!(e.prune_finished(cutoff, 100).await.unwrap(), 2);
    assert_eq!(e.get("ar-old-revoked").await.unwrap(), None);
    assert_eq!(e.get("ar-old-denied").await.unwrap(), None);
    assert!(e.get("ar-old-pending").await.unwrap().is_some());
    assert!(e.get("ar-old-active").await.unwrap().is_some());
    assert!(e.get("ar-recent").await.unwrap().is_some());
    assert_eq!(e.prune_finished(cutoff, 100).await.unwrap(), 0);
    // The open ones are still found by their indexes.
    assert_eq!(
        e.requests_with_status(Status::Pending).await.unwrap().len(),
        1
    );
    assert_eq!(e.open_requests_of("U0DAVE").await.unwrap().len(), 1);
}

async fn the_outbox_backlog_is_counted_by_destination(kind: Kind) {
    use accessbot::outbox::SlackOp;
    let fx = Fixture::new(kind).await;
    let e = fx.handle().await;
    let post = |channel: &str| {
        OutboxItem::new(
            "ar-1",
            SlackOp::Post {
                channel: channel.into(),
                text: "t".into(),
                blocks: serde_json::json!([]),
            },
        )
    };
    let dm = OutboxItem::new(
        "ar-2",
        SlackOp::Dm {
            user: "U0ALICE".into(),
            text: "t".into(),
            blocks: serde_json::json!([]),
            purpose: None,
        },
    );
    e.enqueue(effects(
        vec![post("C0AUDIT"), post("C0AUDIT"), post("C0OTHER"), dm],
        vec![],
    ))
    .await
    .unwrap();
    assert_eq!(
        e.outbox_backlog().await.unwrap(),
        vec![
            ("C0AUDIT".to_string(), 2),
            ("C0OTHER".to_string(), 1),
            ("direct_messages".to_string(), 1)
        ]
    );
}
