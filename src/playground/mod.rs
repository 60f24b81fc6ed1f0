//! `accessbot playground`: the whole flow on one machine, before anyone
//! creates a Slack app. It runs the real bot ([`crate::app::serve`]: the same
//! workflow, sled store, providers and timer) against the Slack stand-in of
//! [`crate::slack_standin`], both behind one address: the stand-in's Web API
//! is served at `/api/` on the playground's own port, and `SLACK_API_URL`
//! points there. A web page on the same port shows Slack as a few made-up
//! people see it ([`cast`]); what they do there reaches the bot as the signed
//! deliveries Slack would send ([`slack_app`]). The signing secret and bot
//! token are generated for each run and never shown.
//!
//! One file per concern: [`cast`] (the people and groups), [`runbooks`]
//! (the default runbooks, embedded), [`slack_app`] (what Slack sends the
//! bot), [`page`] (the page and its JSON routes), [`render`] (Block Kit as
//! HTML), [`target`] (what the target systems hold now).

pub mod cast;
pub mod page;
pub mod render;
pub mod runbooks;
pub mod slack_app;
pub mod target;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::distributions::Alphanumeric;
use rand::Rng;
use tokio::net::TcpListener;

use crate::config::{Config, Secret};
use crate::slack_standin::FakeSlack;

/// The audit channel of the playground's workspace.
pub const AUDIT_CHANNEL: &str = "C0ACCESSAUDIT";

/// How long the bot may take to start before the playground gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What `accessbot playground` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the page and the stand-in listen (`127.0.0.1:3000` by default;
    /// port 0 picks a free one).
    pub listen: SocketAddr,
    /// Runbooks to use instead of the embedded default set.
    pub runbooks: Option<PathBuf>,
    /// Where the store and the target systems' files live; a fresh
    /// temporary directory, removed at the end, when not given.
    pub data_dir: Option<PathBuf>,
}

/// Why the playground could not start; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PlaygroundError {
    #[error("cannot listen on {addr}: {reason}; choose another address with --listen (127.0.0.1:0 picks a free port)")]
    Bind { addr: String, reason: String },
    #[error("cannot prepare the playground directory {dir}: {reason}; pass a writable one with --data-dir")]
    Dir { dir: String, reason: String },
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("the bot did not start: {0}")]
    Bot(String),
}

/// The directories one run uses.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Removed at the end when the playground made it.
    pub root: PathBuf,
    pub temporary: bool,
    pub data: PathBuf,
    /// `ACCESSBOT_STATE_DIR` of the grant programs: the target systems.
    pub state: PathBuf,
    pub runbooks: PathBuf,
}

/// Creates the directories and writes the default runbooks. Runs before the
/// async runtime starts, because it also sets `ACCESSBOT_STATE_DIR` in the
/// process environment, where the `command` provider's programs read it.
pub fn prepare(options: &Options) -> Result<Dirs, PlaygroundError> {
    let (root, temporary) = match &options.data_dir {
        Some(dir) => (dir.clone(), false),
        None => {
            let suffix: String = rand::thread_rng()
                .sample_iter(&Alphanumeric)
                .take(10)
                .map(char::from)
                .collect();
            let dir = std::env::temp_dir()
                .join(format!("accessbot-playground-{}", suffix.to_lowercase()));
            (dir, true)
        }
    };
    let dir_error = |dir: &Path, e: std::io::Error| PlaygroundError::Dir {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    };
    let data = root.join("store");
    let state = root.join("target-systems");
    for dir in [&root, &data, &state] {
        std::fs::create_dir_all(dir).map_err(|e| dir_error(dir, e))?;
    }
    let runbooks = match &options.runbooks {
        Some(dir) => dir.clone(),
        None => {
            let dir = root.join("runbooks");
            runbooks::write_default(&dir).map_err(|e| dir_error(&dir, e))?;
            dir
        }
    };
    // Single-threaded still: no runtime has started.
    std::env::set_var("ACCESSBOT_STATE_DIR", &state);
    Ok(Dirs {
        root,
        temporary,
        data,
        state,
        runbooks,
    })
}

/// Runs the playground until Ctrl-C or SIGTERM; [`clean_up`] after.
pub async fn run(options: Options, dirs: Dirs) -> Result<(), PlaygroundError> {
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| PlaygroundError::Bind {
            addr: options.listen.to_string(),
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| PlaygroundError::Bind {
        addr: options.listen.to_string(),
        reason: e.to_string(),
    })?;
    let token = Secret::new(format!("xoxb-playground-{}", random_text(32)));
    let signing_secret = Secret::new(random_text(40));
    let slack = FakeSlack::on_shared_port(token.expose(), addr);
    cast::seed(&slack);

    let bot_addr = free_loopback_port().await?;
    let config = bot_config(&dirs, addr, bot_addr, &token, &signing_secret)?;
    let app = slack_app::SlackApp::new(slack.clone(), bot_addr, signing_secret);
    let state = page::PageState {
        slack: slack.clone(),
        app: Arc::new(app),
        state_dir: dirs.state.clone(),
        modal_errors: Default::default(),
    };
    let server =
        axum::serve(listener, page::router(state)).with_graceful_shutdown(shutdown_requested());
    let server = tokio::spawn(async move { server.await });
    let mut bot = tokio::spawn(crate::app::serve(config));

    tokio::select! {
        ready = wait_until_ready(bot_addr) => ready?,
        ended = &mut bot => {
            return Err(PlaygroundError::Bot(match ended {
                Ok(Ok(())) => "it stopped at once".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            }));
        }
    }
    print_banner(addr, &dirs);
    let outcome = match bot.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(PlaygroundError::Bot(e.to_string())),
        Err(e) => Err(PlaygroundError::Bot(e.to_string())),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    outcome
}

/// Removes the directory [`prepare`] made, when it made it: a playground
/// leaves nothing behind unless given `--data-dir`.
pub fn clean_up(dirs: &Dirs) {
    if dirs.temporary {
        let _ = std::fs::remove_dir_all(&dirs.root);
    }
}

/// The configuration `serve` would read from the environment, made up for
/// this run: the stand-in as Slack, sled in the playground's directory, the
/// requester's manager in `[directory]`, short retries.
fn bot_config(
    dirs: &Dirs,
    addr: SocketAddr,
    bot_addr: SocketAddr,
    token: &Secret,
    signing_secret: &Secret,
) -> Result<Config, PlaygroundError> {
    let file = dirs.root.join("accessbot.toml");
    let directory: String = cast::MANAGERS
        .iter()
        .map(|(person, manager)| format!("{person} = \"{manager}\"\n"))
        .collect();
    std::fs::write(&file, format!("[directory]\n{directory}")).map_err(|e| {
        PlaygroundError::Dir {
            dir: file.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    let env: BTreeMap<String, String> = [
        ("SLACK_SIGNING_SECRET", signing_secret.expose().to_string()),
        ("SLACK_BOT_TOKEN", token.expose().to_string()),
        ("SLACK_API_URL", format!("http://{addr}/api")),
        ("ACCESSBOT_AUDIT_CHANNEL", AUDIT_CHANNEL.to_string()),
        ("ACCESSBOT_LISTEN", bot_addr.to_string()),
        ("ACCESSBOT_DATA_DIR", dirs.data.display().to_string()),
        ("ACCESSBOT_RUNBOOKS", dirs.runbooks.display().to_string()),
        ("ACCESSBOT_EXPIRY_WARNING", "1m".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Ok(Config::load_with(Some(&file), &env)?)
}

/// A loopback address with a free port for the bot's own HTTP server, which
/// only the playground calls. The port is free when asked and taken by
/// `serve` a moment later; should another program take it in between, the
/// bot's start fails saying the address is in use, and a second try works.
async fn free_loopback_port() -> Result<SocketAddr, PlaygroundError> {
    let probe = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| PlaygroundError::Bind {
            addr: "127.0.0.1:0".into(),
            reason: e.to_string(),
        })?;
    probe.local_addr().map_err(|e| PlaygroundError::Bind {
        addr: "127.0.0.1:0".into(),
        reason: e.to_string(),
    })
}

/// Waits for the bot's `/readyz` to say ready.
async fn wait_until_ready(bot_addr: SocketAddr) -> Result<(), PlaygroundError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| PlaygroundError::Bot(e.to_string()))?;
    let started = Instant::now();
    loop {
        let answer = client.get(format!("http://{bot_addr}/readyz")).send().await;
        if answer.is_ok_and(|a| a.status().is_success()) {
            return Ok(());
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(PlaygroundError::Bot(format!(
                "it did not answer on {bot_addr} within {}s; run with RUST_LOG=debug to see why",
                START_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn print_banner(addr: SocketAddr, dirs: &Dirs) {
    let loopback = addr.ip().is_loopback();
    println!();
    println!("accessbot playground: open http://{addr}/");
    println!();
    println!("  This is for trying accessbot, not for production. Slack is played by a");
    println!("  built-in stand-in with made-up people; anyone who can open the page can act");
    println!("  as any of them. Nothing leaves this machine.");
    if !loopback {
        println!("  WARNING: listening on {addr}, not on loopback: other machines can reach it.");
    }
    println!(
        "  Runbooks: {}   Target systems: {}",
        dirs.runbooks.display(),
        dirs.state.display()
    );
    if dirs.temporary {
        println!("  Everything is removed when you stop it (Ctrl-C).");
    }
    println!();
    println!("playground listening on http://{addr}/");
}

/// Ctrl-C or SIGTERM, the signals [`crate::app::serve`] stops on too.
async fn shutdown_requested() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn random_text(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}
