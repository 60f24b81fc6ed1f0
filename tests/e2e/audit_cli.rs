//! `accessbot audit verify` and `accessbot audit export`, run as the real
//! binary against a store of the test's engine (sled in a data directory,
//! or PostgreSQL picked through `ACCESSBOT_DATABASE_URL` as `serve` picks
//! it). Logs are built fast through the store API; tampering changes the
//! stored log directly, as someone with access to the database would.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use accessbot::audit::{AuditEvent, AuditFacts, NewAuditEvent};
use accessbot::store::postgres::PgEngine;
use accessbot::store::{Effects, SledEngine, Store, StoreEngine};

use crate::support::*;

const T: Duration = Duration::from_secs(20);

/// A store of the test's engine that is not running a bot.
struct LogStore {
    engine: Engine,
    dir: tempfile::TempDir,
    url: Option<String>,
}

impl LogStore {
    async fn new() -> LogStore {
        let engine = Engine::current();
        let url = match engine {
            Engine::Sled => None,
            Engine::Postgres => Some(postgres::database().await),
        };
        LogStore {
            engine,
            dir: tempfile::tempdir().unwrap(),
            url,
        }
    }

    async fn open(&self) -> Arc<dyn StoreEngine> {
        match &self.url {
            Some(url) => Arc::new(PgEngine::connect(url).await.unwrap()),
            None => Arc::new(SledEngine::new(Arc::new(
                Store::open(self.dir.path()).unwrap(),
            ))),
        }
    }

    /// Appends `n` varied events through the store API (a batch per
    /// transaction), closes the store and returns the log as stored.
    async fn fill(&self, n: usize) -> Vec<AuditEvent> {
        let store = self.open().await;
        let mut i = 0;
        while i < n {
            let batch: Vec<NewAuditEvent> = (i..n.min(i + 2000)).map(event).collect();
            i += batch.len();
            store
                .enqueue(Effects {
                    outbox: vec![],
                    audit: batch,
                })
                .await
                .unwrap();
        }
        store.flush().await.unwrap();
        let log = read_all(store.as_ref()).await;
        drop(store);
        assert_eq!(log.len(), n);
        log
    }

    /// Runs `accessbot <args>` with the environment `serve` would have: the
    /// database URL on PostgreSQL, the data directory on sled.
    fn cli(&self, args: &[&str]) -> Output {
        if self.url.is_none() {
            wait_sled_unlocked(self.dir.path());
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_accessbot"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .current_dir(self.dir.path());
        match &self.url {
            Some(url) => cmd.env("ACCESSBOT_DATABASE_URL", url),
            None => cmd.env("ACCESSBOT_DATA_DIR", self.dir.path()),
        };
        cmd.output().expect("run accessbot")
    }

    /// Changes the stored log directly.
    async fn tamper(&self, how: Tamper) {
        match (&self.url, self.engine) {
            (Some(url), _) => {
                let engine = PgEngine::connect(url).await.unwrap();
                let sql = match how {
                    Tamper::Edit(seq) => format!(
                        "UPDATE audit_log SET event = jsonb_set(event, '{{actor}}', '\"U0MALLORY\"') WHERE seq = {seq}"
                    ),
                    Tamper::Delete(seq) => format!("DELETE FROM audit_log WHERE seq = {seq}"),
                    Tamper::Swap(a, b) => format!(
                        "UPDATE audit_log x SET event = y.event FROM audit_log y \
                         WHERE (x.seq = {a} AND y.seq = {b}) OR (x.seq = {b} AND y.seq = {a})"
                    ),
                };
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(engine.pool())
                    .await
                    .unwrap();
                assert!(done.rows_affected() > 0);
            }
            (None, _) => {
                let db = open_sled_when_released(self.dir.path()).await;
                let audit = db.open_tree("audit").unwrap();
                let key = |seq: u64| seq.to_be_bytes();
                match how {
                    Tamper::Edit(seq) => {
                        let v = audit.get(key(seq)).unwrap().unwrap();
                        let mut e: AuditEvent = serde_json::from_slice(&v).unwrap();
                        e.actor = MALLORY.into();
                        audit
                            .insert(key(seq), serde_json::to_vec(&e).unwrap())
                            .unwrap();
                    }
                    Tamper::Delete(seq) => {
                        audit.remove(key(seq)).unwrap().unwrap();
                    }
                    Tamper::Swap(a, b) => {
                        let va = audit.get(key(a)).unwrap().unwrap();
                        let vb = audit.get(key(b)).unwrap().unwrap();
                        audit.insert(key(a), vb).unwrap();
                        audit.insert(key(b), va).unwrap();
                    }
                }
                db.flush().unwrap();
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Tamper {
    Edit(u64),
    Delete(u64),
    Swap(u64, u64),
}

async fn read_all(store: &dyn StoreEngine) -> Vec<AuditEvent> {
    let mut out = vec![];
    loop {
        let after = out.last().map_or(0, |e: &AuditEvent| e.seq);
        let page = store.audit_range(after, 5000).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Event `i` of a test log: every field varies, and the text has what CSV
/// must quote (commas, quotes, line breaks) and what must stay UTF-8.
fn event(i: usize) -> NewAuditEvent {
    let kinds = [
        "requested",
        "approved",
        "granted",
        "revoked",
        "denied",
        "extended",
    ];
    let people = [ALICE, BOB, CAROL, DAVE];
    let mut inputs = BTreeMap::new();
    if i.is_multiple_of(5) {
        inputs.insert("ticket".to_string(), format!("INC-{i}"));
        inputs.insert("note".to_string(), "a, \"b\"".to_string());
    }
    NewAuditEvent {
        kind: kinds[i % kinds.len()].to_string(),
        request_id: format!("ar-{:08}", i / 3),
        runbook: format!("runbook-{}", i % 7),
        actor: people[i % 4].to_string(),
        subject: people[(i + 1) % 4].to_string(),
        detail: format!("step {i}, \"quoted\" — ünïcode ✓\nsecond line"),
        facts: AuditFacts {
            approvers: (0..i % 3)
                .map(|k| people[(i + k + 2) % 4].to_string())
                .collect(),
            duration_secs: (!i.is_multiple_of(4)).then_some(60 * (i as u64 % 500 + 1)),
            reason: (!i.is_multiple_of(6)).then(|| format!("month-end, refunds #{i} ☕")),
            inputs,
        },
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn micros(e: &AuditEvent) -> String {
    e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_an_intact_log_on_either_spelling() {
    let log = LogStore::new().await;
    log.fill(50).await;
    for args in [&["audit", "verify"][..], &["audit", "--verify"][..]] {
        let out = log.cli(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("audit log intact: 50 events, hash chain verified"),
            "{}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty(), "verify prints nothing on stdout");
    }
}

/// Each kind of tampering is named at the first place the log differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_an_edited_a_deleted_and_a_swapped_event() {
    for (how, at, words) in [
        (Tamper::Edit(7), 7, "event 7 was changed"),
        (Tamper::Delete(7), 7, "event 7 is missing from its place"),
        (Tamper::Swap(7, 8), 7, "event 7 is missing from its place"),
    ] {
        let log = LogStore::new().await;
        log.fill(20).await;
        log.tamper(how).await;
        let out = log.cli(&["audit", "verify"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "audit log TAMPERED: the hash chain breaks at event {at}: "
            )),
            "{err}"
        );
        assert!(err.contains(words), "{err}");
        // Export still writes the log, and says it is broken.
        let out = log.cli(&["audit", "export", "--format", "jsonl"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(&format!("breaks at event {at}")));
    }
}

/// 100,000 events in both formats, parsed back and compared with the
/// stored log field by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_of_100000_events_round_trips_in_jsonl_and_csv() {
    const N: usize = 100_000;
    let log = LogStore::new().await;
    let stored = log.fill(N).await;

    let out = log.cli(&["audit", "export", "--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("exported {N} events")),
        "{}",
        stderr(&out)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = 0;
    for (line, e) in text.lines().zip(&stored) {
        lines += 1;
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"], e.seq);
        assert_eq!(v["time"], micros(e));
        assert_eq!(v["kind"], e.kind.as_str());
        assert_eq!(v["request"], e.request_id.as_str());
        assert_eq!(v["runbook"], e.runbook.as_str());
        assert_eq!(v["actor"], e.actor.as_str());
        assert_eq!(v["subject"], e.subject.as_str());
        assert_eq!(v["approvers"], serde_json::json!(e.facts.approvers));
        assert_eq!(v["duration_secs"], serde_json::json!(e.facts.duration_secs));
        assert_eq!(v["reason"], serde_json::json!(e.facts.reason));
        if e.facts.inputs.is_empty() {
            assert!(v.get("inputs").is_none(), "{line}");
        } else {
            assert_eq!(v["inputs"], serde_json::json!(e.facts.inputs));
        }
        assert_eq!(v["detail"], e.detail.as_str());
        assert_eq!(v["prev_hash"], e.prev_hash.as_str());
        assert_eq!(v["hash"], e.hash.as_str());
    }
    assert_eq!(lines, N);

    let out = log.cli(&["audit", "export", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    assert_eq!(
        reader.headers().unwrap(),
        vec![
            "seq",
            "time",
            "kind",
            "request",
            "runbook",
            "actor",
            "subject",
            "approvers",
            "duration_secs",
            "reason",
            "inputs",
            "detail",
            "prev_hash",
            "hash"
        ]
    );
    let mut rows = 0;
    for (row, e) in reader.records().zip(&stored) {
        let row = row.unwrap();
        rows += 1;
        assert_eq!(row.len(), 14);
        assert_eq!(&row[0], e.seq.to_string());
        assert_eq!(&row[1], micros(e));
        assert_eq!(&row[2], e.kind);
        assert_eq!(&row[3], e.request_id);
        assert_eq!(&row[4], e.runbook);
        assert_eq!(&row[5], e.actor);
        assert_eq!(&row[6], e.subject);
        assert_eq!(&row[7], e.facts.approvers.join(" "));
        assert_eq!(
            &row[8],
            e.facts
                .duration_secs
                .map(|d| d.to_string())
                .unwrap_or_default()
        );
        assert_eq!(&row[9], e.facts.reason.clone().unwrap_or_default());
        if e.facts.inputs.is_empty() {
            assert_eq!(&row[10], "");
        } else {
            let inputs: BTreeMap<String, String> = serde_json::from_str(&row[10]).unwrap();
            assert_eq!(inputs, e.facts.inputs);
        }
        assert_eq!(&row[11], e.detail);
        assert_eq!(&row[12], e.prev_hash);
        assert_eq!(&row[13], e.hash);
    }
    assert_eq!(rows, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_filters_by_time_runbook_and_user() {
    let log = LogStore::new().await;
    let stored = log.fill(300).await;
    let since = stored[100].at;
    let until = stored[250].at;
    let out = log.cli(&[
        "audit",
        "export",
        "--since",
        &since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "--until",
        &until.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "--runbook",
        "runbook-3",
        "--user",
        BOB,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got: Vec<u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let want: Vec<u64> = stored
        .iter()
        .filter(|e| e.at >= since && e.at < until && e.runbook == "runbook-3")
        .filter(|e| {
            e.actor == BOB || e.subject == BOB || e.facts.approvers.iter().any(|a| a == BOB)
        })
        .map(|e| e.seq)
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);

    // A date is a whole day: everything today is before tomorrow's date.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .to_string();
    let out = log.cli(&[
        "audit",
        "export",
        "--format",
        "csv",
        "--since",
        "2000-01-01",
        "--until",
        &tomorrow,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        csv::Reader::from_reader(out.stdout.as_slice())
            .records()
            .count(),
        300
    );

    let out = log.cli(&["audit", "export", "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("RFC 3339"), "{}", stderr(&out));
}

/// The real bot's events carry the request's facts: who approved, for how
/// long, why. The CLI finds the store as `serve` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_request_exports_with_its_approvers_duration_and_reason() {
    let mut app = TestApp::spawn().await;
    let id = app.request(ALICE, "billing-admin 2s refunds, \"Q3\"").await;
    app.wait_dm(BOB, &[&id], T).await;
    app.press(BOB, "approve", &id).await;
    app.wait_done(&format!("revoke {id}"), T).await;
    app.wait_audit(&["revoked", &id], T).await;
    let _ = app.terminate().await;
    let out = app.run_cli(&["audit", "export", "--format", "csv", "--user", ALICE]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let approved = rows
        .iter()
        .find(|r| &r[2] == "approved" && r[3] == id)
        .unwrap_or_else(|| panic!("no approved event in {rows:?}"));
    assert_eq!(&approved[4], "billing-admin");
    assert_eq!(&approved[5], BOB);
    assert_eq!(&approved[6], ALICE);
    assert_eq!(&approved[7], BOB);
    assert_eq!(&approved[8], "2");
    assert_eq!(&approved[9], "refunds, \"Q3\"");
    assert!(
        rows.iter().any(|r| &r[2] == "revoked" && r[3] == id),
        "{rows:?}"
    );
    let out = app.run_cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Opens the sled database at `dir` once the store the test just dropped
/// has let go of it (sled's background threads release the lock a moment
/// after the last handle is dropped). Without a flusher thread of its own,
/// this handle releases the lock as soon as it is dropped, before the CLI
/// opens the database.
async fn open_sled_when_released(dir: &std::path::Path) -> ::sled::Db {
    let deadline = std::time::Instant::now() + T;
    loop {
        match ::sled::Config::new().path(dir).flush_every_ms(None).open() {
            Ok(db) => return db,
            Err(::sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot open the sled database in {}: {e}", dir.display()),
        }
    }
}

/// Waits until no handle of this process holds the sled database in `dir`
/// (sled's background threads let go of its lock a moment after the last
/// handle is dropped), so the CLI started next finds it free, as it would
/// find a stopped bot's. Probes the lock sled takes (`flock` on `db`) and
/// lets go of it at once.
fn wait_sled_unlocked(dir: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let deadline = std::time::Instant::now() + T;
    let file = std::fs::File::open(dir.join("db")).expect("the sled database file");
    loop {
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sled database in {} stayed locked",
            dir.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
