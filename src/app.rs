//! Start-up, running and shutdown of `accessbot serve`.
//!
//! Start-up refuses to run on anything it cannot trust (missing settings,
//! an invalid runbook, a bot token Slack refuses, an audit channel that is
//! missing or lacks the bot, a locked or unreadable database), one clear
//! line per problem, all at once. A Slack that does not answer at all does
//! not stop the start (see [`crate::preflight`]).
//! The store is PostgreSQL when `database_url` is set (any number of
//! replicas share it), else sled in `data_dir` with a bounded cache
//! ([`open_store`]); nothing after that knows which.
//! Running means three loops beside the HTTP server: the outbox, the timer
//! and the replay-guard pruner. Shutdown (SIGTERM or Ctrl-C) stops accepting
//! requests, lets in-flight handlers and provider runs finish, flushes the
//! store and returns, well within 10 seconds.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::grant::Providers;
use crate::http::{self, AppState, Metrics};
use crate::outbox::Outbox;
use crate::policy::People;
use crate::preflight::{self, SetupHealth, SetupProblem, SetupState, SlackCheck};
use crate::retry::Timing;
use crate::runbook::{self, Problem};
use crate::slack::SlackClient;
use crate::socket_mode::SocketMode;
use crate::store::postgres::PgEngine;
use crate::store::url::mask_url;
use crate::store::{SledEngine, SledOptions, Store, StoreEngine, StoreError};
use crate::workflow::{Deps, Workflow};

/// How long shutdown waits for in-flight work before giving up on it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Why `serve` could not start. Each is one line an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("runbooks are invalid ({} problem(s)); run `accessbot check --runbooks {dir}` for the list. First: {first}", problems.len())]
    Runbooks {
        dir: String,
        first: String,
        problems: Vec<Problem>,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {reason}; set ACCESSBOT_LISTEN to a free address")]
    Bind { addr: String, reason: String },
    #[error("{0}")]
    Slack(#[from] SetupProblem),
    /// A runbook's provider needs an environment variable (a secret,
    /// usually) that is not set: its grants would be approved and then fail.
    #[error("{0}")]
    MissingEnv(runbook::NotReady),
    /// More than one thing is wrong: all are listed, one per line, so a
    /// newcomer fixes them in one go.
    #[error("{} problems stop the start:{}", .0.len(), list(.0))]
    Several(Vec<StartError>),
}

fn list(problems: &[StartError]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

impl StartError {
    /// One problem as itself, several as [`StartError::Several`].
    fn all(mut problems: Vec<StartError>) -> StartError {
        if problems.len() == 1 {
            problems.remove(0)
        } else {
            StartError::Several(problems)
        }
    }
}

/// Runs the bot until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let timing = Timing {
        expiry_warning: config.expiry_warning,
        retry_base: config.retry_base,
        retry_max: config.retry_max,
        lease: config.lease,
    };
    let slack = SlackClient::new(&config.api_url, config.bot_token.clone());
    // Every problem a newcomer can fix is found before any is reported.
    let catalog = runbook::load_dir(&config.runbooks);
    let check = preflight::check_at_start(&slack, &config.audit_channel, &timing).await;
    let slack_problems: Vec<StartError> = match &check {
        SlackCheck::Passed => vec![],
        SlackCheck::Problems(found) => found.iter().cloned().map(StartError::Slack).collect(),
        SlackCheck::Unreachable(why) => {
            tracing::error!(
                reason = %why,
                attempts = preflight::START_ATTEMPTS,
                "Slack cannot be reached, so the bot token and the audit channel are not checked. \
                 Starting anyway so that access still ends on time; messages wait in the outbox. \
                 /healthz says `degraded` until Slack answers the check"
            );
            vec![]
        }
    };
    let catalog = match catalog {
        Ok(catalog) => {
            let mut all: Vec<StartError> = catalog
                .not_ready(runbook::NotReady::is_set_here)
                .into_iter()
                .map(StartError::MissingEnv)
                .collect();
            all.extend(slack_problems);
            if !all.is_empty() {
                return Err(StartError::all(all));
            }
            catalog
        }
        Err(problems) => {
            let mut all = vec![StartError::Runbooks {
                dir: config.runbooks.display().to_string(),
                first: problems.first().map(|p| p.to_string()).unwrap_or_default(),
                problems,
            }];
            all.extend(slack_problems);
            return Err(StartError::all(all));
        }
    };
    tracing::info!(count = catalog.runbooks.len(), dir = %config.runbooks.display(), "runbooks loaded");
    let setup = Arc::new(SetupHealth::new(&check));
    let store = open_store(&config).await?;
    let people = People::new(
        slack.clone(),
        config.directory.clone(),
        config.manager_field.clone(),
    );
    let providers = Providers::with_slack(slack.clone());
    let runbook_dir =
        std::fs::canonicalize(&config.runbooks).unwrap_or_else(|_| config.runbooks.clone());
    let workflow = Arc::new(Workflow::new(Deps {
        store: Arc::clone(&store),
        catalog: Arc::new(catalog),
        slack: slack.clone(),
        people,
        providers,
        audit_channel: config.audit_channel.clone(),
        runbook_dir,
        timing: timing.clone(),
        identities: config.identities.clone(),
        security_group: config.security_group.clone(),
    }));

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| StartError::Bind {
            addr: config.listen.to_string(),
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| StartError::Bind {
        addr: config.listen.to_string(),
        reason: e.to_string(),
    })?;

    let cancel = CancellationToken::new();
    let loops = tokio_util::task::TaskTracker::new();
    if setup.state() != SetupState::Passed {
        loops.spawn(preflight::recheck_until_verified(
            slack.clone(),
            config.audit_channel.clone(),
            timing.clone(),
            Arc::clone(&setup),
            cancel.clone(),
        ));
    }
    let outbox = Outbox::new(
        Arc::clone(&store),
        slack,
        timing.clone(),
        workflow.outbox_wake(),
    )
    .with_home(Arc::clone(&workflow) as Arc<dyn crate::outbox::HomeSource>)
    .with_digests(crate::audit_notice::DigestPolicy {
        after: config.audit_digest_after,
        every: config.audit_digest_every,
        ..Default::default()
    });
    let delivery = Arc::clone(&outbox.health);
    loops.spawn(outbox.run(cancel.clone()));
    loops.spawn(crate::expiry::run(Arc::clone(&workflow), cancel.clone()));
    loops.spawn(prune_replay_guard(Arc::clone(&workflow), cancel.clone()));
    loops.spawn(crate::retention::run(
        Arc::clone(&store),
        crate::retention::Retention {
            requests: config.retention,
            audit: config.audit_retention,
        },
        cancel.clone(),
    ));
    let resumed = workflow.recover().await?;
    if resumed > 0 {
        tracing::info!(
            resumed,
            "resumed grants and revokes interrupted by the last stop"
        );
    }

    let metrics = Arc::new(Metrics::default());
    let replay = crate::replay::ReplayGuard::new(Arc::clone(&store));
    // Socket Mode stops taking envelopes when the HTTP server stops taking
    // requests, before in-flight work is waited for.
    let transports = CancellationToken::new();
    let socket_mode = config.slack_app_token.clone().map(|app_token| {
        let socket = SocketMode::new(
            &config.api_url,
            app_token,
            Arc::clone(&workflow),
            replay.clone(),
            Arc::clone(&metrics),
            timing.clone(),
            config.socket_ping,
        );
        let health = socket.health();
        loops.spawn(socket.run(transports.clone()));
        tracing::info!(
            "Socket Mode is on: Slack is reached over a WebSocket, no public URL needed"
        );
        health
    });
    if config.signing_secret.is_none() {
        tracing::info!(
            "no SLACK_SIGNING_SECRET: the /slack/* HTTP routes are off (Socket Mode only)"
        );
    }
    let state = AppState {
        workflow: Arc::clone(&workflow),
        replay,
        signing_secret: config.signing_secret.clone(),
        audit_token: config.audit_token.clone(),
        delivery,
        setup,
        metrics,
        socket_mode,
        metrics_token: config.metrics_token.clone(),
    };
    tracing::info!("accessbot listening on {addr}");
    let server =
        axum::serve(listener, http::router(state)).with_graceful_shutdown(shutdown_signal());
    if let Err(e) = server.await {
        tracing::error!(error = %e, "HTTP server stopped with an error");
    }
    transports.cancel();

    tracing::info!("shutting down: finishing in-flight work");
    if !workflow.shutdown_tasks(SHUTDOWN_GRACE).await {
        tracing::warn!(
            "in-flight grants or revokes did not finish in time; they resume at the next start"
        );
    }
    // Give the outbox a last chance to send what the finished work queued.
    workflow.wake();
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel.cancel();
    loops.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), loops.wait()).await;
    store.flush().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Opens the store the configuration names: PostgreSQL when
/// `database_url` is set (an unreachable database is one line naming the
/// host and the cause, never the password), else sled in `data_dir` with
/// the configured cache.
pub(crate) async fn open_store(config: &Config) -> Result<Arc<dyn StoreEngine>, StoreError> {
    match &config.database_url {
        Some(url) => {
            let engine = PgEngine::connect(url.expose()).await?;
            tracing::info!(engine = "postgres", database = %mask_url(url.expose()), replica = %engine.replica_id(), "store opened");
            Ok(Arc::new(engine))
        }
        None => {
            let options = SledOptions {
                cache_capacity: config.sled_cache,
            };
            let store = Store::open_with(&config.data_dir, &options)?;
            tracing::info!(engine = "sled", dir = %config.data_dir.display(), cache_bytes = config.sled_cache, "store opened");
            Ok(Arc::new(SledEngine::new(Arc::new(store))))
        }
    }
}

/// Replay-guard entries only matter while Slack would still accept the
/// signature (5 minutes); keep them 10 minutes, then forget them.
async fn prune_replay_guard(workflow: Arc<Workflow>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        let cutoff = chrono::Utc::now() - chrono::Duration::minutes(10);
        if let Err(e) = workflow.forget_deliveries(cutoff).await {
            tracing::warn!(error = %e, "could not prune the replay guard");
        }
    }
}
