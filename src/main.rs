//! The `accessbot` binary: parses the command line, sets up logging, and
//! runs `serve`, `check`, `audit`, `migrate-store`, `reconcile`, `report` or
//! `playground`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use accessbot::config::{Config, Secret, StoreLocation};
use accessbot::runbook;
use accessbot::store::migrate::{sled_to_postgres, MigrateStoreError};
use accessbot::store::url::{mask_url, scrub_password};
use accessbot::store::StoreError;

#[derive(Parser)]
#[command(
    name = "accessbot",
    version,
    about = "Just-in-time access through Slack"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the bot.
    Serve {
        /// Config file (default: ./accessbot.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate every runbook; exits non-zero naming each problem.
    Check {
        #[arg(long, env = "ACCESSBOT_RUNBOOKS", default_value = "./runbooks")]
        runbooks: PathBuf,
    },
    /// Verify the audit log's hash chain (`audit verify`) or export it
    /// (`audit export --format jsonl|csv`), on either store engine; on sled,
    /// run it while the bot is stopped, or on a copy of the data directory.
    Audit(accessbot::audit_cli::AuditArgs),
    /// Where access is needed: per runbook requests, outcomes, decision
    /// times, durations, feedback and suggestions; who holds access now;
    /// standing-access hints. Reads the store `serve` would use (PostgreSQL
    /// when ACCESSBOT_DATABASE_URL is set, else the sled data directory,
    /// which must not be in use by a running bot).
    Report {
        /// Requests made since this time: RFC 3339 (`2025-03-01T00:00:00Z`)
        /// or a date (`2025-03-01`, midnight UTC). Default: 30 days ago.
        #[arg(long, value_name = "T")]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
        #[arg(long, env = "ACCESSBOT_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        #[arg(
            long,
            value_name = "URL",
            env = "ACCESSBOT_DATABASE_URL",
            hide_env_values = true
        )]
        database_url: Option<String>,
    },
    /// Copy a stopped sled install (requests, deadlines, undelivered Slack
    /// messages, audit log) into an empty PostgreSQL database, then verify
    /// the audit chain there.
    MigrateStore {
        /// The data directory of the stopped bot (its ACCESSBOT_DATA_DIR).
        #[arg(long, value_name = "DIR")]
        from_data_dir: PathBuf,
        /// The destination, `postgres://user:password@host:5432/db`.
        // `hide_env_values`: `--help` would otherwise print the password.
        #[arg(
            long,
            value_name = "URL",
            env = "ACCESSBOT_DATABASE_URL",
            hide_env_values = true
        )]
        to: String,
    },
    /// Compare the store's grants with what the targets hold: access left
    /// behind after a request ended, members accessbot never granted.
    /// Exits 0 when everything matches, 1 when something differs.
    Reconcile {
        /// Config file (default: ./accessbot.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Revoke the access left behind, through the normal revoke path.
        #[arg(long)]
        fix: bool,
    },
    /// Try accessbot in a browser: the real bot against a built-in Slack
    /// stand-in with made-up people. Not for production.
    Playground {
        /// Where the page listens; port 0 picks a free one.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: std::net::SocketAddr,
        /// Runbooks to use instead of the playground's own.
        #[arg(long, value_name = "DIR")]
        runbooks: Option<PathBuf>,
        /// Keep the store and the target systems here instead of a
        /// temporary directory removed at the end.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sled=warn,hyper=warn,sqlx=warn".into()),
        )
        .init();
    match cli.command {
        Cmd::Serve { config } => serve(config),
        Cmd::Check { runbooks } => check(&runbooks),
        Cmd::Audit(args) => accessbot::audit_cli::run(args),
        Cmd::MigrateStore { from_data_dir, to } => migrate_store(&from_data_dir, &to),
        Cmd::Reconcile { config, fix } => reconcile(config, fix),
        Cmd::Report {
            since,
            format,
            data_dir,
            database_url,
        } => report(since.as_deref(), format, &data_dir, database_url.as_deref()),
        Cmd::Playground {
            listen,
            runbooks,
            data_dir,
        } => playground(accessbot::playground::Options {
            listen,
            runbooks,
            data_dir,
        }),
    }
}

fn playground(options: accessbot::playground::Options) -> ExitCode {
    // Before the runtime: it sets the grant programs' environment.
    let dirs = match accessbot::playground::prepare(&options) {
        Ok(dirs) => dirs,
        Err(e) => {
            eprintln!("accessbot: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let outcome = runtime.block_on(accessbot::playground::run(options, dirs.clone()));
    accessbot::playground::clean_up(&dirs);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("accessbot: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(config: Option<PathBuf>) -> ExitCode {
    let config = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(accessbot::app::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("accessbot: {e}");
            ExitCode::from(2)
        }
    }
}

fn reconcile(config: Option<PathBuf>, fix: bool) -> ExitCode {
    let config = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(accessbot::reconcile::run(config, fix)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("accessbot: {e}");
            ExitCode::from(2)
        }
    }
}

fn check(dir: &std::path::Path) -> ExitCode {
    match runbook::load_dir(dir) {
        Ok(catalog) => {
            // Warnings only: the runbooks are valid, this host is not ready
            // to grant some of them, and check may run elsewhere (CI).
            let not_ready = catalog.not_ready(runbook::NotReady::is_set_here);
            for w in &not_ready {
                eprintln!("warning: {w}");
            }
            println!(
                "{} runbooks OK in {}{}",
                catalog.runbooks.len(),
                dir.display(),
                match not_ready.len() {
                    0 => String::new(),
                    n => format!("; {n} cannot grant yet on this host (warnings above)"),
                }
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!(
                "{} problem(s) found; fix them and run `accessbot check --runbooks {}` again",
                problems.len(),
                dir.display()
            );
            ExitCode::from(1)
        }
    }
}

fn migrate_store(dir: &std::path::Path, url: &str) -> ExitCode {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(sled_to_postgres(dir, url)) {
        Ok(summary) => {
            println!("moved {} to {}: {summary}", dir.display(), mask_url(url));
            println!(
                "next: start accessbot with ACCESSBOT_DATABASE_URL set to this database; \
                 keep {} as a backup and do not start a bot on it again",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("accessbot: {}", one_line(&migrate_error_text(&e), url));
            ExitCode::from(2)
        }
    }
}

/// The error as an operator acts on it. A directory in use gets its own
/// words: the store's advice (another data directory) is for `serve`.
fn migrate_error_text(e: &MigrateStoreError) -> String {
    match e {
        MigrateStoreError::Source(StoreError::Locked(dir)) => format!(
            "the data directory {} is in use by a running accessbot; stop it first \
             (migrate-store copies a stopped install), then run migrate-store again",
            dir.display()
        ),
        other => other.to_string(),
    }
}

/// One line, without the database password even where a driver quoted the URL.
fn one_line(text: &str, url: &str) -> String {
    scrub_password(text, url)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `accessbot report`: reads the period a page at a time and prints the
/// report on stdout; errors in one line on stderr, exit code 2.
fn report(
    since: Option<&str>,
    format: ReportFormat,
    dir: &std::path::Path,
    url: Option<&str>,
) -> ExitCode {
    let now = chrono::Utc::now();
    let since = match since.map(accessbot::audit_cli::parse_since) {
        None => now - chrono::Duration::days(30),
        Some(Ok(t)) => t,
        Some(Err(why)) => {
            eprintln!("accessbot: --since {why}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let location = match url {
            Some(url) => StoreLocation::Postgres(Secret::new(url)),
            None => StoreLocation::Sled(dir.to_path_buf()),
        };
        let store = accessbot::store::open_for_reading(&location).await?;
        accessbot::workflow::report::gather(store.as_ref(), since, now, None).await
    });
    match result {
        Ok(report) => {
            match format {
                ReportFormat::Text => print!("{}", report.to_text()),
                ReportFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("a report encodes")
                ),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let text = e.to_string();
            eprintln!("accessbot: {}", one_line(&text, url.unwrap_or("")));
            ExitCode::from(2)
        }
    }
}

/// The async runtime the subcommands run on, or the exit code after saying
/// why it could not start.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("accessbot: cannot start the async runtime: {e}");
        ExitCode::from(2)
    })
}

/// The settings from `path` (or `./accessbot.toml`) and the environment, or
/// the exit code after printing every problem.
fn load_config(path: Option<PathBuf>) -> Result<Config, ExitCode> {
    Config::load(path.as_deref()).map_err(|e| {
        eprintln!("accessbot: {e}");
        ExitCode::from(2)
    })
}
