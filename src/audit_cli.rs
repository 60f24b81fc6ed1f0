//! `accessbot audit`: verifying and exporting the audit log from the
//! command line, on either store engine (PostgreSQL when
//! `ACCESSBOT_DATABASE_URL` or the config's `database_url` is set, exactly
//! as `serve` picks it, else sled in the data directory; `--data-dir`
//! names a sled directory outright). sled can be open in one process only,
//! so on sled run it while the bot is stopped or on a copy.
//!
//! - `audit verify` (or `audit --verify`) walks the hash chain and names the
//!   first event that was changed, removed or reordered; exit 0 only when
//!   the chain is intact, 1 when it is not, 2 when the log cannot be read.
//! - `audit export --format jsonl|csv [--since T] [--until T] [--runbook ID]
//!   [--user ID]` streams the events to stdout, a page at a time (constant
//!   memory whatever the log's size), in the stable schema of
//!   [`ExportedEvent`], verifying the chain as it goes.
//! - `audit` alone prints every event as stored (JSON lines), then verifies:
//!   the form of earlier versions.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::audit::AuditEvent;
use crate::config::StoreLocation;
use crate::store::engine::{ChainCheck, AUDIT_PAGE};
use crate::store::url::scrub_password;
use crate::store::{StoreEngine, StoreError};

/// `accessbot audit …`
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: Option<AuditAction>,
    /// A sled data directory to read (the bot must be stopped). Without it,
    /// the store is the one `serve` would open: PostgreSQL when
    /// ACCESSBOT_DATABASE_URL (or the config's database_url) is set, else
    /// ACCESSBOT_DATA_DIR (default ./data).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file (default: ./accessbot.toml when present); only its store
    /// settings are read.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only verify the chain (the same as `audit verify`).
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Verify the hash chain; names the first event changed, removed or
    /// reordered. Exit 0 only when intact.
    Verify,
    /// Stream events to stdout as JSON lines or CSV.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
    /// Only events at or after T (RFC 3339, e.g. 2025-01-31T09:00:00Z, or a date, 2025-01-31).
    #[arg(long, value_name = "T", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Only events before T (RFC 3339; a date includes that whole day).
    #[arg(long, value_name = "T", value_parser = parse_until)]
    pub until: Option<DateTime<Utc>>,
    /// Only events of this runbook.
    #[arg(long, value_name = "ID")]
    pub runbook: Option<String>,
    /// Only events where this Slack user ID acted, was the subject, or approved.
    #[arg(long, value_name = "ID")]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

/// One exported event: the documented, stable schema of `audit export`
/// (README.md, "Audit export"). New fields may be added at the end; none is
/// renamed or removed. CSV has the same columns in this order, with
/// `approvers` joined by spaces and `inputs` as a JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedEvent {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When it was recorded, RFC 3339 in UTC with microseconds.
    pub time: String,
    pub kind: String,
    /// The request ID (`ar-…`); empty for a checkpoint.
    pub request: String,
    pub runbook: String,
    /// Who acted: a Slack user ID, `accessbot`, or `rule:<name>`.
    pub actor: String,
    /// Whose access it is.
    pub subject: String,
    /// Who had approved when the event was recorded.
    pub approvers: Vec<String>,
    /// The duration asked for, in seconds.
    pub duration_secs: Option<u64>,
    pub reason: Option<String>,
    /// Values the runbook asked for; only where present.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub inputs: std::collections::BTreeMap<String, String>,
    /// The event in words, as the audit channel read it.
    pub detail: String,
    /// The hash of the event before it.
    pub prev_hash: String,
    /// This event's hash (SHA-256 over `prev_hash` and its fields).
    pub hash: String,
}

/// The CSV header, in column order.
pub const CSV_COLUMNS: [&str; 14] = [
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
    "hash",
];

impl ExportedEvent {
    pub fn from_event(e: &AuditEvent) -> ExportedEvent {
        ExportedEvent {
            seq: e.seq,
            time: e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            kind: e.kind.clone(),
            request: e.request_id.clone(),
            runbook: e.runbook.clone(),
            actor: e.actor.clone(),
            subject: e.subject.clone(),
            approvers: e.facts.approvers.clone(),
            duration_secs: e.facts.duration_secs,
            reason: e.facts.reason.clone(),
            inputs: e.facts.inputs.clone(),
            detail: e.detail.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }

    /// The CSV row, in [`CSV_COLUMNS`] order.
    pub fn csv_row(&self) -> [String; 14] {
        [
            self.seq.to_string(),
            self.time.clone(),
            self.kind.clone(),
            self.request.clone(),
            self.runbook.clone(),
            self.actor.clone(),
            self.subject.clone(),
            self.approvers.join(" "),
            self.duration_secs
                .map(|d| d.to_string())
                .unwrap_or_default(),
            self.reason.clone().unwrap_or_default(),
            if self.inputs.is_empty() {
                String::new()
            } else {
                serde_json::to_string(&self.inputs).expect("inputs encode")
            },
            self.detail.clone(),
            self.prev_hash.clone(),
            self.hash.clone(),
        ]
    }
}

fn parse_time(text: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        Ok(d) => {
            let d = if end_of_day {
                d.succ_opt().unwrap_or(d)
            } else {
                d
            };
            Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        }
        Err(_) => Err(format!(
            "`{text}` is not a time; write RFC 3339 (2025-01-31T09:00:00Z) or a date (2025-01-31)"
        )),
    }
}

/// `--since T`: an RFC 3339 time, or a date (its midnight, UTC).
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    parse_time(text, false)
}

fn parse_until(text: &str) -> Result<DateTime<Utc>, String> {
    parse_time(text, true)
}

impl ExportArgs {
    fn wants(&self, e: &AuditEvent) -> bool {
        self.since.is_none_or(|t| e.at >= t)
            && self.until.is_none_or(|t| e.at < t)
            && self.runbook.as_ref().is_none_or(|r| &e.runbook == r)
            && self
                .user
                .as_ref()
                .is_none_or(|u| &e.actor == u || &e.subject == u || e.facts.approvers.contains(u))
    }
}

/// What the command does, once the arguments are read.
enum Job<'a> {
    /// Every event as stored, then the verdict (the original form).
    Dump,
    Verify,
    Export(&'a ExportArgs),
}

/// Runs `accessbot audit …` to its exit code.
pub fn run(args: AuditArgs) -> ExitCode {
    let job = match (&args.action, args.verify) {
        (Some(AuditAction::Export(e)), false) => Job::Export(e),
        (Some(AuditAction::Export(_)), true) => {
            eprintln!("accessbot: `audit export` exports and verifies; drop --verify, or run `audit verify`");
            return ExitCode::from(2);
        }
        (Some(AuditAction::Verify), _) | (None, true) => Job::Verify,
        (None, false) => Job::Dump,
    };
    let location = match &args.data_dir {
        Some(dir) => StoreLocation::Sled(dir.clone()),
        None => match StoreLocation::load(args.config.as_deref()) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("accessbot: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("accessbot: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        let store = match crate::store::open_for_reading(&location).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accessbot: {}", safe_text(&e.to_string(), &location));
                return ExitCode::from(2);
            }
        };
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
        let result = walk(store.as_ref(), &job, &mut out).await;
        let flushed = out.flush();
        match (result, flushed) {
            (Ok(verdict), Ok(())) => verdict.report(),
            (Err(WalkError::Store(e)), _) => {
                eprintln!(
                    "accessbot: reading the audit log failed: {}",
                    safe_text(&e.to_string(), &location)
                );
                ExitCode::from(2)
            }
            (Err(WalkError::Output(e)), _) | (Ok(_), Err(e)) => {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    eprintln!("accessbot: writing the export failed: {e}");
                }
                ExitCode::from(2)
            }
        }
    })
}

/// The error text without a database password, on one line.
fn safe_text(text: &str, location: &StoreLocation) -> String {
    let text = match location {
        StoreLocation::Postgres(url) => scrub_password(text, url.expose()),
        StoreLocation::Sled(_) => text.to_string(),
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

enum WalkError {
    Store(StoreError),
    Output(std::io::Error),
}

/// What the walk found about the chain.
pub struct Verdict {
    check: ChainCheck,
    /// The first event that breaks the chain, and why.
    broken: Option<(u64, String)>,
    exported: u64,
    exporting: bool,
}

impl Verdict {
    fn report(&self) -> ExitCode {
        if self.exporting {
            eprintln!("exported {} events", self.exported);
        }
        match &self.broken {
            None => {
                let start = match self.check.checkpoint() {
                    Some(cp) => format!(
                        "; the log starts at event {} (events 1 to {} were pruned by audit retention; checkpoint written {})",
                        cp.seq + 1,
                        cp.seq,
                        cp.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    None => String::new(),
                };
                eprintln!(
                    "audit log intact: {} events, hash chain verified{start}",
                    self.check.count()
                );
                ExitCode::SUCCESS
            }
            Some((seq, why)) => {
                eprintln!(
                    "audit log TAMPERED: the hash chain breaks at event {seq}: {why}. \
                     Events before it verify; compare this event with the copy in the audit channel"
                );
                ExitCode::from(1)
            }
        }
    }
}

/// Reads the whole log a page at a time, verifying it and writing what the
/// job asks for. Memory stays constant: one page at a time.
async fn walk(
    store: &dyn StoreEngine,
    job: &Job<'_>,
    out: &mut impl Write,
) -> Result<Verdict, WalkError> {
    let mut verdict = Verdict {
        check: ChainCheck::default(),
        broken: None,
        exported: 0,
        exporting: matches!(job, Job::Export(_)),
    };
    let as_csv = matches!(job, Job::Export(a) if a.format == Format::Csv);
    if as_csv {
        let mut w = csv::Writer::from_writer(vec![]);
        w.write_record(CSV_COLUMNS).map_err(csv_error)?;
        write_csv(w, out)?;
    }
    let mut after = 0;
    loop {
        let page = store
            .audit_range(after, AUDIT_PAGE)
            .await
            .map_err(WalkError::Store)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        // A page's CSV goes to stdout when the page is done, so the buffer
        // stays one page big.
        let mut csv = as_csv.then(|| csv::Writer::from_writer(Vec::with_capacity(64 * 1024)));
        for e in &page {
            if verdict.broken.is_none() && verdict.check.push(e).is_err() {
                // The first place where the log differs from an intact
                // chain: the event there was changed, or the one that
                // belongs there was removed or moved.
                let at = verdict.check.last_seq() + 1;
                verdict.broken = Some((at, verdict.check.explain(e)));
                if matches!(job, Job::Verify) {
                    return Ok(verdict);
                }
            }
            match job {
                Job::Verify => {}
                Job::Dump => {
                    serde_json::to_writer(&mut *out, e).map_err(json_error)?;
                    out.write_all(b"\n").map_err(WalkError::Output)?;
                }
                Job::Export(args) => {
                    if !args.wants(e) {
                        continue;
                    }
                    let row = ExportedEvent::from_event(e);
                    match &mut csv {
                        Some(w) => w.write_record(row.csv_row()).map_err(csv_error)?,
                        None => {
                            serde_json::to_writer(&mut *out, &row).map_err(json_error)?;
                            out.write_all(b"\n").map_err(WalkError::Output)?;
                        }
                    }
                    verdict.exported += 1;
                }
            }
        }
        if let Some(w) = csv {
            write_csv(w, out)?;
        }
    }
    Ok(verdict)
}

fn write_csv(w: csv::Writer<Vec<u8>>, out: &mut impl Write) -> Result<(), WalkError> {
    let bytes = w
        .into_inner()
        .map_err(|e| WalkError::Output(std::io::Error::other(e.to_string())))?;
    out.write_all(&bytes).map_err(WalkError::Output)
}

fn csv_error(e: csv::Error) -> WalkError {
    WalkError::Output(std::io::Error::other(e.to_string()))
}

fn json_error(e: serde_json::Error) -> WalkError {
    WalkError::Output(std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_dates_and_a_date_until_includes_its_day() {
        assert_eq!(
            parse_since("2025-01-31T09:30:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2025-01-31T08:30:00+00:00"
        );
        assert_eq!(
            parse_since("2025-01-31").unwrap().to_rfc3339(),
            "2025-01-31T00:00:00+00:00"
        );
        assert_eq!(
            parse_until("2025-01-31").unwrap().to_rfc3339(),
            "2025-02-01T00:00:00+00:00"
        );
        let err = parse_since("last tuesday").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn a_csv_row_has_every_column_in_order() {
        let mut e = crate::audit::NewAuditEvent {
            kind: "approved".into(),
            request_id: "ar-1".into(),
            runbook: "rb".into(),
            actor: "U1".into(),
            subject: "U2".into(),
            detail: "approved, \"quoted\"\nsecond line".into(),
            ..Default::default()
        };
        e.facts.approvers = vec!["U1".into(), "U3".into()];
        e.facts.duration_secs = Some(7200);
        e.facts.inputs.insert("ticket".into(), "INC-1".into());
        let row = ExportedEvent::from_event(&e.chain(1, "")).csv_row();
        assert_eq!(row.len(), CSV_COLUMNS.len());
        assert_eq!(row[7], "U1 U3");
        assert_eq!(row[8], "7200");
        assert_eq!(row[9], "");
        assert_eq!(row[10], r#"{"ticket":"INC-1"}"#);
    }
}
