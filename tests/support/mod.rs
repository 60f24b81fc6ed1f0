//! What every end-to-end test shares: [`TestApp::spawn`] starts the real
//! `accessbot` binary on a free port with a fresh store, its own runbooks
//! and a [`FakeSlack`], and returns a handle that sends correctly signed
//! Slack requests, kills and restarts the process, starts more replicas on
//! the same database, and reads what the bot did (Slack calls, provider
//! runs, logs). Logs print only with `TEST_LOG`.
//!
//! The store is the one the running test asks for ([`Engine::current`]):
//! the e2e binary runs every test module twice, under `on_sled::` and
//! `on_postgres::`, and a PostgreSQL test gets a fresh database of its own on
//! the throwaway server of [`postgres`].

#![allow(dead_code)]

pub mod fake_directory;
pub mod fake_entra;
pub mod fake_google;
pub mod fake_okta;
pub use accessbot::slack_standin as fake_socket_mode;
pub use accessbot::slack_standin as fake_slack;
pub mod postgres;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

#[allow(unused_imports)]
pub use accessbot::slack_standin::FakeSocketMode;
#[allow(unused_imports)]
pub use fake_slack::{Call, FakeSlack};

pub const SECRET: &str = "test-signing-secret-8f742231b10e";
pub const TOKEN: &str = "xoxb-test-token-1234567890-abcdef";
/// The app-level token for Socket Mode ([`Setup::socket_mode`]).
pub const APP_TOKEN: &str = "xapp-1-A0ACCESS-test-app-token-0987654321";
pub const AUDIT: &str = "C0AUDIT";
pub const ALICE: &str = "U0ALICE";
pub const BOB: &str = "U0BOB";
pub const CAROL: &str = "U0CAROL";
pub const OWNER: &str = "U0OWNER";
pub const MALLORY: &str = "U0MALLORY";
pub const DAVE: &str = "U0DAVE";

/// A runbook file for [`Setup`]: `body` (a whole runbook in TOML, e.g.
/// [`BILLING`]) stored as `<id>.toml` in the bot's runbook directory.
pub fn runbook(id: &str, body: &str) -> (String, String) {
    (format!("{id}.toml"), body.to_string())
}

/// The default runbook: `billing-admin`, approvers Bob and Carol, one
/// approval, a 3s default and 1h maximum, granted by `provider.sh`.
pub const BILLING: &str = r#"
id = "billing-admin"
title = "Billing portal admin"
description = "Refunds and plan changes"
system = "Billing portal"
owner = "U0OWNER"
instructions = "Sign in at https://billing.example.com; access ends automatically."

[request]
allowed = ["*"]
default_duration = "3s"
max_duration = "1h"
require_reason = true

[approval]
approvers = ["U0BOB", "U0CAROL"]
required = 1
approval_timeout = "1h"

[grant]
provider = "command"
grant = ["./provider.sh", "grant"]
revoke = ["./provider.sh", "revoke"]
timeout = "5s"
"#;

/// Everything a test can vary before the bot starts.
pub struct Setup {
    pub runbooks: Vec<(String, String)>,
    pub env: Vec<(String, String)>,
    pub config_toml: Option<String>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            runbooks: vec![runbook("billing-admin", BILLING)],
            env: vec![],
            config_toml: None,
        }
    }
}

impl Setup {
    pub fn with_runbook(mut self, id: &str, toml: &str) -> Self {
        self.runbooks.push(runbook(id, toml));
        self
    }
    pub fn only_runbook(mut self, id: &str, toml: &str) -> Self {
        self.runbooks = vec![runbook(id, toml)];
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
    pub fn config(mut self, toml: &str) -> Self {
        self.config_toml = Some(toml.to_string());
        self
    }
    /// Socket Mode on (`SLACK_APP_TOKEN`), beside HTTP: the signing secret
    /// stays set, so the HTTP helpers (`slash`, `wait_for_status`) still work.
    pub fn socket_mode(self) -> Self {
        self.env("SLACK_APP_TOKEN", APP_TOKEN)
    }
    /// Socket Mode only: no signing secret, so the `/slack/*` routes are off.
    pub fn socket_mode_only(self) -> Self {
        self.socket_mode().env("SLACK_SIGNING_SECRET", "")
    }
}

/// The store a test's bot runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sled,
    Postgres,
}

impl Engine {
    /// The engine the running test asks for, by where it is: a test under
    /// `on_postgres::` or `replicas::` runs on PostgreSQL, one under
    /// `on_sled::` on sled (libtest names each test's thread after its path);
    /// elsewhere `ACCESSBOT_TEST_ENGINE` (`postgres` or `sled`) decides, and
    /// sled is the default.
    pub fn current() -> Engine {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or_default();
        if name.starts_with("on_postgres::") || name.starts_with("replicas::") {
            return Engine::Postgres;
        }
        if name.starts_with("on_sled::") {
            return Engine::Sled;
        }
        match std::env::var("ACCESSBOT_TEST_ENGINE").as_deref() {
            Ok("postgres") => Engine::Postgres,
            Ok("sled") | Ok("") | Err(_) => Engine::Sled,
            Ok(other) => panic!("ACCESSBOT_TEST_ENGINE={other}: use postgres or sled"),
        }
    }
}

/// A replica started beside the first process ([`TestApp::add_replica`]).
struct Replica {
    child: Option<Child>,
    base: String,
}

pub struct TestApp {
    pub slack: FakeSlack,
    /// The Socket Mode endpoint the fake Slack hands out (used when the bot
    /// runs with [`Setup::socket_mode`]).
    pub socket: FakeSocketMode,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The store the bot runs on.
    pub engine: Engine,
    /// The PostgreSQL database (on [`Engine::Postgres`]); no password.
    pub database_url: Option<String>,
    /// Replicas 1.. (replica 0 is the process `base` points at).
    replicas: Vec<Replica>,
    pub root: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub runbook_dir: PathBuf,
    pub state_dir: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    pub logs: Arc<Mutex<String>>,
    http: reqwest::Client,
}

/// The provider script every test runbook uses: records each run in
/// `state/calls` (with the time it started, so tests can check when the bot
/// ran it rather than when they noticed), its process and process group in
/// `state/pids`, and its end in `state/ended`; fails while `state/fail_<action>`
/// holds a positive count (with the exit code in `state/fail_code_<action>`,
/// 1 without it), sleeps while `state/slow_<action>` exists. Each run holds a
/// lock per person and runbook (`flock` on a file descriptor, which the
/// processes it starts inherit, so the lock lasts until the last of them
/// ends); a run that finds it held records itself in `state/overlaps`.
fn provider_script(state: &Path) -> String {
    let s = state.display();
    format!(
        r#"#!/bin/sh
S="{s}"
echo "$1 $ACCESSBOT_REQUEST_ID $$ $(cut -d' ' -f5 /proc/$$/stat)" >> "$S/pids"
echo "$1 $ACCESSBOT_REQUEST_ID $ACCESSBOT_USER_ID $ACCESSBOT_USER_EMAIL $ACCESSBOT_EXPIRES_AT $(date +%s.%N)" >> "$S/calls"
exec 9>>"$S/subject_${{ACCESSBOT_USER_ID}}_${{ACCESSBOT_RUNBOOK}}"
flock -n 9 || echo "$1 $ACCESSBOT_REQUEST_ID $(date +%s.%N)" >> "$S/overlaps"
if [ -f "$S/slow_$1" ]; then sleep "$(cat "$S/slow_$1")"; fi
if [ -f "$S/fail_$1" ]; then
  n=$(cat "$S/fail_$1")
  if [ "$n" -gt 0 ]; then
    echo $((n-1)) > "$S/fail_$1"
    echo "simulated $1 failure" >&2
    code=1
    if [ -f "$S/fail_code_$1" ]; then code=$(cat "$S/fail_code_$1"); fi
    exit "$code"
  fi
fi
echo "$1 $ACCESSBOT_REQUEST_ID" >> "$S/done"
echo "$1 $ACCESSBOT_REQUEST_ID $(date +%s.%N)" >> "$S/ended"
exit 0
"#
    )
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Setup::default()).await
    }

    pub async fn spawn_with(setup: Setup) -> TestApp {
        let slack = FakeSlack::start(TOKEN).await;
        let socket = FakeSocketMode::start().await;
        slack.enable_socket_mode(APP_TOKEN, socket.clone());
        for (id, name) in [
            (ALICE, "Alice Finance"),
            (BOB, "Bob Lead"),
            (CAROL, "Carol Lead"),
            (OWNER, "Olga Owner"),
            (MALLORY, "Mallory"),
            (DAVE, "Dave Support"),
        ] {
            let email = format!(
                "{}@example.com",
                name.split(' ').next().unwrap().to_lowercase()
            );
            slack.add_user(id, name, &email);
        }
        let root = tempfile::tempdir().expect("temp dir");
        let data_dir = root.path().join("data");
        let runbook_dir = root.path().join("runbooks");
        let state_dir = root.path().join("state");
        std::fs::create_dir_all(&runbook_dir).unwrap();
        std::fs::create_dir_all(&state_dir).unwrap();
        for (name, body) in &setup.runbooks {
            std::fs::write(runbook_dir.join(name), body).unwrap();
        }
        let script = runbook_dir.join("provider.sh");
        std::fs::write(&script, provider_script(&state_dir)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut env: Vec<(String, String)> = vec![
            ("SLACK_SIGNING_SECRET".into(), SECRET.into()),
            ("SLACK_BOT_TOKEN".into(), TOKEN.into()),
            ("SLACK_API_URL".into(), slack.url()),
            ("ACCESSBOT_AUDIT_CHANNEL".into(), AUDIT.into()),
            ("ACCESSBOT_LISTEN".into(), "127.0.0.1:0".into()),
            ("ACCESSBOT_DATA_DIR".into(), data_dir.display().to_string()),
            (
                "ACCESSBOT_RUNBOOKS".into(),
                runbook_dir.display().to_string(),
            ),
            ("ACCESSBOT_RETRY_BASE".into(), "1s".into()),
            ("ACCESSBOT_RETRY_MAX".into(), "2s".into()),
        ];
        let engine = Engine::current();
        let database_url = match engine {
            Engine::Sled => None,
            Engine::Postgres => Some(postgres::database().await),
        };
        if let Some(url) = &database_url {
            env.push(("ACCESSBOT_DATABASE_URL".into(), url.clone()));
        }
        if let Some(cfg) = &setup.config_toml {
            std::fs::write(root.path().join("accessbot.toml"), cfg).unwrap();
        }
        for (k, v) in setup.env {
            env.retain(|(ek, _)| *ek != k);
            env.push((k, v));
        }
        let mut app = TestApp {
            slack,
            socket,
            base: String::new(),
            engine,
            database_url,
            replicas: vec![],
            root,
            data_dir,
            runbook_dir,
            state_dir,
            env,
            child: None,
            logs: Arc::new(Mutex::new(String::new())),
            http: reqwest::Client::new(),
        };
        app.start().await;
        app
    }

    /// The command line `serve` runs with (the config file, when the test wrote one).
    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_accessbot"));
        cmd.arg("serve");
        let cfg = self.root.path().join("accessbot.toml");
        if cfg.exists() {
            cmd.arg("--config").arg(cfg);
        }
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts the binary and waits until it listens.
    pub async fn start(&mut self) {
        let (child, base) = self.start_process("").await;
        self.child = Some(child);
        self.base = base;
    }

    /// Starts one `serve` process (its log lines prefixed with `prefix`)
    /// and waits until it listens; returns it and its base URL.
    async fn start_process(&self, prefix: &str) -> (Child, String) {
        let mut child = self.command().spawn().expect("start accessbot");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::clone(&self.logs);
        let show = std::env::var("TEST_LOG").is_ok();
        let prefix = prefix.to_string();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if show {
                    eprintln!("[accessbot{prefix}] {line}");
                }
                if let Some(addr) = line.split("accessbot listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
                let mut l = logs.lock().unwrap();
                l.push_str(&prefix);
                l.push_str(&line);
                l.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(addr) = rx.try_recv() {
                return (child, format!("http://{addr}"));
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "accessbot exited with {status} before listening; logs:\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "accessbot did not start; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts another replica on the same database, Slack, runbooks and
    /// provider state; returns its index (the first process is 0). Its log
    /// lines are prefixed `[rN] `.
    pub async fn add_replica(&mut self) -> usize {
        assert_eq!(
            self.engine,
            Engine::Postgres,
            "replicas share a PostgreSQL database; sled is one process"
        );
        let n = self.replicas.len() + 1;
        let (child, base) = self.start_process(&format!("[r{n}] ")).await;
        self.replicas.push(Replica {
            child: Some(child),
            base,
        });
        n
    }

    /// How many replicas there are, the first process included.
    pub fn replica_count(&self) -> usize {
        self.replicas.len() + 1
    }

    /// The base URL of replica `n`.
    pub fn base_of(&self, n: usize) -> &str {
        if n == 0 {
            &self.base
        } else {
            &self.replicas[n - 1].base
        }
    }

    /// The process id of replica `n`, while it runs.
    pub fn pid_of(&self, n: usize) -> Option<u32> {
        if n == 0 {
            self.child.as_ref().map(Child::id)
        } else {
            self.replicas[n - 1].child.as_ref().map(Child::id)
        }
    }

    /// SIGKILL of replica `n`: no cleanup.
    pub fn kill_replica(&mut self, n: usize) {
        let child = if n == 0 {
            self.child.take()
        } else {
            self.replicas[n - 1].child.take()
        };
        if let Some(mut c) = child {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn set_env(&mut self, k: &str, v: &str) {
        self.remove_env(k);
        self.env.push((k.to_string(), v.to_string()));
    }

    pub fn remove_env(&mut self, k: &str) {
        self.env.retain(|(ek, _)| ek != k);
    }

    /// Waits for the process to exit on its own (e.g. at a crash point).
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "accessbot did not exit; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `serve` expecting it to refuse to start; returns (exit code, stderr).
    pub fn serve_once(&self) -> (Option<i32>, String) {
        let mut cmd = self.command();
        cmd.stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start accessbot");
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("accessbot started although it should have refused to");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// SIGKILL: no cleanup, no flush.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then the exit status and how long it took.
    pub async fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut c = self.child.take().expect("running");
        let started = Instant::now();
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(30) {
                c.kill().unwrap();
                panic!("accessbot ignored SIGTERM for 30s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn restart(&mut self) {
        self.kill().await;
        self.start().await;
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Runs the binary with other arguments in the same environment, to completion.
    pub fn run_cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_accessbot"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(self.root.path());
        cmd.output().expect("run accessbot")
    }

    // ---- signed requests ----

    pub fn sign(ts: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("v0:{ts}:").as_bytes());
        mac.update(body);
        format!("v0={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// POSTs `body` signed as Slack would, `age` seconds ago.
    pub async fn post_signed(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
        age: i64,
    ) -> reqwest::Response {
        self.try_post_signed(path, content_type, body, age)
            .await
            .expect("accessbot answers")
    }

    /// Like [`TestApp::post_signed`], for when the bot may die before it answers.
    pub async fn try_post_signed(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
        age: i64,
    ) -> reqwest::Result<reqwest::Response> {
        self.post_signed_to(&self.base, path, content_type, body, age)
            .await
    }

    /// POSTs `body` signed as Slack would to the process at `base`.
    pub async fn post_signed_to(
        &self,
        base: &str,
        path: &str,
        content_type: &str,
        body: &str,
        age: i64,
    ) -> reqwest::Result<reqwest::Response> {
        let ts = chrono::Utc::now().timestamp() - age;
        self.http
            .post(format!("{base}{path}"))
            .header("content-type", content_type)
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", Self::sign(ts, body.as_bytes()))
            .body(body.to_string())
            .send()
            .await
    }

    pub fn slash_body(user: &str, text: &str) -> String {
        serde_urlencoded::to_string([
            ("token", "deprecated"),
            ("team_id", "T0FAKE"),
            ("team_domain", "example"),
            ("channel_id", "C0GENERAL"),
            ("channel_name", "general"),
            ("user_id", user),
            ("user_name", "someone"),
            ("command", "/access"),
            ("text", text),
            ("api_app_id", "A0ACCESS"),
            (
                "response_url",
                "https://hooks.slack.com/commands/T0FAKE/1/x",
            ),
            ("trigger_id", &format!("trig.{}.{}", user, rand_suffix())),
        ])
        .unwrap()
    }

    /// `/access <text>` as `user`; returns the ephemeral text (or "" for an empty answer).
    pub async fn slash(&self, user: &str, text: &str) -> String {
        self.slash_at(0, user, text).await
    }

    /// `/access <text>` as `user`, sent to replica `n`.
    pub async fn slash_at(&self, n: usize, user: &str, text: &str) -> String {
        let r = self
            .post_signed_to(
                self.base_of(n),
                "/slack/commands",
                "application/x-www-form-urlencoded",
                &Self::slash_body(user, text),
                0,
            )
            .await
            .expect("accessbot answers");
        assert_eq!(r.status(), 200, "slash command answered {}", r.status());
        let body = r.text().await.unwrap();
        if body.is_empty() {
            return body;
        }
        let v: Value = serde_json::from_str(&body).expect("JSON answer");
        v["text"].as_str().unwrap_or_default().to_string()
    }

    pub fn interaction_body(payload: &Value) -> String {
        serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
    }

    pub async fn interact(&self, payload: &Value) -> reqwest::Response {
        self.post_signed(
            "/slack/interactions",
            "application/x-www-form-urlencoded",
            &Self::interaction_body(payload),
            0,
        )
        .await
    }

    /// Presses a button (`approve`, `deny`, ...) with `value` as `user`, in their DM.
    pub async fn press(&self, user: &str, action_id: &str, value: &str) -> reqwest::Response {
        let payload = block_action(user, action_id, value);
        let r = self.interact(&payload).await;
        assert_eq!(r.status(), 200);
        r
    }

    /// [`TestApp::press`] on replica `n`.
    pub async fn press_at(
        &self,
        n: usize,
        user: &str,
        action_id: &str,
        value: &str,
    ) -> reqwest::Response {
        let payload = block_action(user, action_id, value);
        let r = self
            .post_signed_to(
                self.base_of(n),
                "/slack/interactions",
                "application/x-www-form-urlencoded",
                &Self::interaction_body(&payload),
                0,
            )
            .await
            .expect("accessbot answers");
        assert_eq!(r.status(), 200);
        r
    }

    /// Submits the request modal.
    pub async fn submit_modal(
        &self,
        user: &str,
        runbook: &str,
        duration: &str,
        reason: &str,
    ) -> Value {
        let payload = json!({
            "type": "view_submission",
            "user": {"id": user, "username": "x", "team_id": "T0FAKE"},
            "team": {"id": "T0FAKE"},
            "api_app_id": "A0ACCESS",
            "view": {
                "id": "V0MODAL", "callback_id": "access_request", "private_metadata": "", "hash": "h1",
                "state": {"values": {
                    "runbook": {"runbook_select": {"type": "static_select", "selected_option": {"value": runbook}}},
                    "duration": {"duration_input": {"type": "plain_text_input", "value": duration}},
                    "reason": {"reason_input": {"type": "plain_text_input", "value": reason}}
                }}
            }
        });
        let r = self.interact(&payload).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    /// `/access request ...` that must succeed; returns the request ID.
    pub async fn request(&self, user: &str, text: &str) -> String {
        let answer = self.slash(user, &format!("request {text}")).await;
        request_id_in(&answer).unwrap_or_else(|| panic!("no request id in answer: {answer}"))
    }

    // ---- what happened ----

    /// Lines the provider script wrote when it started:
    /// "grant <id> <user> <email> <expires> <started>".
    pub fn provider_calls(&self) -> Vec<String> {
        read_lines(&self.state_dir.join("calls"))
    }

    /// The provider runs of `action` (grant|revoke) for request `id`, in the
    /// order they started.
    pub fn provider_runs(&self, action: &str, id: &str) -> Vec<ProviderRun> {
        self.provider_calls()
            .iter()
            .map(|line| ProviderRun::parse(line))
            .filter(|run| run.action == action && run.request_id == id)
            .collect()
    }

    /// Successful provider runs: "grant <id>" / "revoke <id>".
    pub fn provider_done(&self) -> Vec<String> {
        read_lines(&self.state_dir.join("done"))
    }

    /// Makes the next `n` runs of `action` (grant|revoke) fail.
    pub fn fail_provider(&self, action: &str, n: u32) {
        std::fs::write(self.state_dir.join(format!("fail_{action}")), n.to_string()).unwrap();
    }

    /// Makes the next `n` runs of `action` fail with exit code `code`.
    pub fn fail_provider_with(&self, action: &str, n: u32, code: i32) {
        std::fs::write(
            self.state_dir.join(format!("fail_code_{action}")),
            code.to_string(),
        )
        .unwrap();
        self.fail_provider(action, n);
    }

    /// The processes of the runs of `action` for request `id`, in the order
    /// they started: the script's own process and its process group.
    pub fn provider_processes(&self, action: &str, id: &str) -> Vec<ProviderProcess> {
        read_lines(&self.state_dir.join("pids"))
            .iter()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                (f.len() == 4 && f[0] == action && f[1] == id).then(|| ProviderProcess {
                    pid: f[2].parse().expect("pid"),
                    pgid: f[3].parse().expect("process group"),
                })
            })
            .collect()
    }

    /// When the runs of `action` for request `id` that got to the end ended.
    pub fn provider_ends(&self, action: &str, id: &str) -> Vec<chrono::DateTime<chrono::Utc>> {
        read_lines(&self.state_dir.join("ended"))
            .iter()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                (f.len() == 3 && f[0] == action && f[1] == id).then(|| seconds_to_time(f[2]))
            })
            .collect()
    }

    /// Runs that started while another run for the same person and runbook
    /// (or something it started) was still going: "<action> <id> <time>".
    pub fn provider_overlaps(&self) -> Vec<String> {
        read_lines(&self.state_dir.join("overlaps"))
    }

    pub fn slow_provider(&self, action: &str, secs: u32) {
        std::fs::write(
            self.state_dir.join(format!("slow_{action}")),
            secs.to_string(),
        )
        .unwrap();
    }

    /// Messages currently in `user`'s DM with the bot.
    pub fn dms(&self, user: &str) -> Vec<Value> {
        self.slack.messages_in(&format!("D{user}"))
    }

    /// Each audit-channel message as people read it: its text, then its
    /// context lines (where the request ID is), one per line. A digest
    /// (notices combined while the channel's backlog is large) counts as
    /// one entry per notice it lists.
    pub fn audit_texts(&self) -> Vec<String> {
        self.slack
            .messages_in(AUDIT)
            .iter()
            .flat_map(|m| {
                if let Some(lines) = digest_lines(m) {
                    return lines;
                }
                let mut shown = m["text"].as_str().unwrap_or_default().to_string();
                for block in m["blocks"].as_array().into_iter().flatten() {
                    if block["type"] == "context" {
                        for e in block["elements"].as_array().into_iter().flatten() {
                            shown.push('\n');
                            shown.push_str(e["text"].as_str().unwrap_or_default());
                        }
                    }
                }
                vec![shown]
            })
            .collect()
    }

    /// Waits for an audit-channel message containing all of `parts`.
    pub async fn wait_audit(&self, parts: &[&str], timeout: Duration) -> String {
        let found = wait_until(timeout, || {
            self.audit_texts()
                .into_iter()
                .find(|t| parts.iter().all(|p| t.contains(p)))
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "no audit message with {parts:?}; audit channel:\n{:#?}\nlogs:\n{}",
                self.audit_texts(),
                self.logs()
            )
        })
    }

    /// Waits for a DM to `user` whose text contains all of `parts`.
    pub async fn wait_dm(&self, user: &str, parts: &[&str], timeout: Duration) -> Value {
        let found = wait_until(timeout, || {
            self.dms(user).into_iter().find(|m| {
                let t = m.to_string();
                parts.iter().all(|p| t.contains(p))
            })
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "no DM to {user} with {parts:?}; DMs:\n{:#?}\nlogs:\n{}",
                self.dms(user),
                self.logs()
            )
        })
    }

    /// Waits until the provider script recorded `line` as done. That is the
    /// target system's side: the bot records the outcome a moment later, so
    /// a test that goes on to act on the request (extend, release, revoke,
    /// restart) waits for that with [`TestApp::wait_for_status`].
    pub async fn wait_done(&self, line: &str, timeout: Duration) {
        let ok = wait_until(timeout, || {
            self.provider_done()
                .contains(&line.to_string())
                .then_some(())
        })
        .await;
        assert!(
            ok.is_some(),
            "provider never did `{line}`; done: {:?}; calls: {:?}\nlogs:\n{}",
            self.provider_done(),
            self.provider_calls(),
            self.logs()
        );
    }

    /// Ephemeral texts sent to `user`.
    pub fn ephemerals(&self, user: &str) -> Vec<String> {
        self.slack
            .calls("chat.postEphemeral")
            .iter()
            .filter(|c| c.body["user"] == user)
            .map(|c| c.body["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub async fn wait_ephemeral(&self, user: &str, part: &str, timeout: Duration) -> String {
        wait_until(timeout, || {
            self.ephemerals(user).into_iter().find(|t| t.contains(part))
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "no ephemeral to {user} containing {part:?}; got {:?}",
                self.ephemerals(user)
            )
        })
    }

    /// Where request `id` stands in `/access status` as `requester`: "pending
    /// approval", "being granted", "active", "being revoked" or "needs
    /// attention"; `None` when the reply does not list it (it has ended, or
    /// does not exist).
    pub async fn status_of(&self, requester: &str, id: &str) -> Option<String> {
        let reply = self.slash(requester, "status").await;
        status_in(&reply, id)
    }

    /// Waits until `/access status` as `requester` says request `id` is
    /// `state` (see [`TestApp::status_of`]). This is the bot's own record, not
    /// a side effect that usually comes with it: the provider finishing, a
    /// Slack message or a log line can all be seen before the state is.
    pub async fn wait_for_status(&self, requester: &str, id: &str, state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.status_of(requester, id).await;
            if seen.as_deref() == Some(state) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "request {id} is not {state:?} after {timeout:?}: last seen {seen:?}; \
                 provider runs: {:?}\nlogs:\n{}",
                self.provider_calls(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The value of a counter or gauge without labels in `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self.get("/metrics").await.text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }

    /// Slack messages the bot has queued but not yet sent, from `/healthz`.
    pub async fn outbox_pending(&self) -> u64 {
        let health: Value = self
            .get("/healthz")
            .await
            .json()
            .await
            .expect("/healthz JSON");
        health["outbox_pending"]
            .as_u64()
            .unwrap_or_else(|| panic!("/healthz has no outbox_pending: {health}"))
    }

    /// Waits until the bot has no Slack message left to send (`/healthz`
    /// says `outbox_pending: 0`): everything queued so far has reached the
    /// fake Slack or was given up as undeliverable. Use it before asserting
    /// that a message was *not* sent or counting messages, once the state
    /// that queues them has been reached.
    pub async fn wait_outbox_empty(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let pending = self.outbox_pending().await;
            if pending == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{pending} Slack message(s) still queued after {timeout:?}; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap()
    }

    /// Stops the bot and returns the audit log as exported by `accessbot
    /// audit` (sled), or as the store holds it after its hash chain was
    /// verified (PostgreSQL).
    pub async fn audit_log(&mut self) -> Vec<Value> {
        let _ = self.terminate().await;
        if let Some(url) = &self.database_url {
            return verified_audit_log(url).await;
        }
        self.sled_audit_log()
    }

    /// The sled data directory's audit log as `accessbot audit` exports it;
    /// the bot must be stopped (or the directory left by a move).
    pub fn sled_audit_log(&self) -> Vec<Value> {
        let out = self.run_cli(&["audit", "--data-dir", &self.data_dir.display().to_string()]);
        assert!(
            out.status.success(),
            "audit export failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let replicas = self.replicas.iter_mut().filter_map(|r| r.child.take());
        for mut c in self.child.take().into_iter().chain(replicas) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The audit log of the PostgreSQL database at `url`, read a page at a time
/// through the engine the bot uses, after checking that its hash chain holds.
pub async fn verified_audit_log(url: &str) -> Vec<Value> {
    use accessbot::store::StoreEngine;
    let engine = accessbot::store::postgres::PgEngine::connect(url)
        .await
        .unwrap_or_else(|e| panic!("reading the audit log: {e}"));
    let store: &dyn StoreEngine = &engine;
    let verdict = store.verify_audit().await.expect("reading the audit log");
    assert!(
        verdict.is_ok(),
        "the audit hash chain breaks at event {verdict:?}"
    );
    let mut out = vec![];
    let mut after = 0;
    loop {
        let page = store.audit_range(after, 500).await.expect("audit page");
        let Some(last) = page.last() else {
            return out;
        };
        after = last.seq;
        out.extend(page.iter().map(|e| serde_json::to_value(e).unwrap()));
    }
}

/// A block_actions payload as Slack sends it for a button in a DM.
pub fn block_action(user: &str, action_id: &str, value: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": "x", "team_id": "T0FAKE"},
        "api_app_id": "A0ACCESS",
        "team": {"id": "T0FAKE", "domain": "example"},
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": format!("D{user}"), "is_ephemeral": false},
        "trigger_id": format!("trig.{}", rand_suffix()),
        "channel": {"id": format!("D{user}"), "name": "directmessage"},
        "response_url": "https://hooks.slack.com/actions/T0FAKE/1/x",
        "actions": [{"action_id": action_id, "block_id": "b", "type": "button", "value": value, "action_ts": format!("{}.1", chrono::Utc::now().timestamp())}]
    })
}

/// The notices an audit digest message lists, one line each, in order;
/// `None` for any other message.
pub fn digest_lines(m: &Value) -> Option<Vec<String>> {
    if !m["text"].as_str()?.starts_with("Audit digest") {
        return None;
    }
    let sections = m["blocks"]
        .as_array()?
        .iter()
        .filter(|b| b["type"] == "section");
    Some(
        sections
            .flat_map(|b| b["text"]["text"].as_str().unwrap_or_default().lines())
            .map(str::to_string)
            .collect(),
    )
}

/// One run of the provider script, as it recorded it when it started.
#[derive(Debug, Clone)]
pub struct ProviderRun {
    pub action: String,
    pub request_id: String,
    /// `ACCESSBOT_EXPIRES_AT`: when the bot says the access ends.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// When the bot started the script.
    pub started_at: chrono::DateTime<chrono::Utc>,
}

impl ProviderRun {
    fn parse(line: &str) -> ProviderRun {
        // Split on single spaces: an unknown email leaves an empty field.
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 6, "unexpected provider line {line:?}");
        let started: f64 = f[5]
            .parse()
            .unwrap_or_else(|_| panic!("no start time in provider line {line:?}"));
        ProviderRun {
            action: f[0].to_string(),
            request_id: f[1].to_string(),
            expires_at: chrono::DateTime::parse_from_rfc3339(f[4])
                .unwrap_or_else(|e| panic!("bad expiry in provider line {line:?}: {e}"))
                .with_timezone(&chrono::Utc),
            started_at: chrono::DateTime::from_timestamp_millis((started * 1000.0) as i64)
                .expect("start time in range"),
        }
    }
}

/// A provider run's process, as the script recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderProcess {
    pub pid: i32,
    pub pgid: i32,
}

/// Whether process `pid` still runs: it exists and is not a zombie waiting
/// to be reaped (a zombie runs nothing).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat_field(&stat, 3).as_deref(), Some("Z" | "X") | None),
        Err(_) => false,
    }
}

/// The processes of process group `pgid` that still run.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat_field(&stat, 5).and_then(|g| g.parse().ok()) == Some(pgid)
                    && !matches!(stat_field(&stat, 3).as_deref(), Some("Z" | "X"))
            })
        })
        .collect()
}

/// Field `n` (1-based, as in proc(5)) of a `/proc/<pid>/stat` line; the
/// command name in field 2 may hold spaces, so fields after it are counted
/// from its closing parenthesis.
fn stat_field(stat: &str, n: usize) -> Option<String> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace()
        .nth(n.checked_sub(3)?)
        .map(str::to_string)
}

fn seconds_to_time(s: &str) -> chrono::DateTime<chrono::Utc> {
    let secs: f64 = s
        .parse()
        .unwrap_or_else(|_| panic!("not a time in seconds: {s:?}"));
    chrono::DateTime::from_timestamp_millis((secs * 1000.0) as i64).expect("time in range")
}

/// The state a `/access status` reply gives request `id`, if it lists it.
/// Each line reads "`id` *title* (system), duration: state[ until …| (expires …)]".
pub fn status_in(reply: &str, id: &str) -> Option<String> {
    const STATES: [&str; 6] = [
        "pending approval",
        "being granted",
        "scheduled",
        "active",
        "being revoked",
        "needs attention",
    ];
    let line = reply.lines().find(|l| l.starts_with(&format!("`{id}`")))?;
    let found = STATES
        .iter()
        .find(|state| {
            line.match_indices(&format!(": {state}")).any(|(at, m)| {
                let rest = &line[at + m.len()..];
                rest.is_empty() || rest.starts_with(' ')
            })
        })
        .unwrap_or_else(|| panic!("request {id} listed in an unknown state: {line}"));
    Some(found.to_string())
}

/// The first `ar-...` request ID in `text`.
pub fn request_id_in(text: &str) -> Option<String> {
    let start = text.find("ar-")?;
    let id: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (id.len() > 5).then_some(id)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) + std::process::id() as u64 * 1_000_000
}

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Polls `f` every 25 ms until it returns `Some` or `timeout` passes.
pub async fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// True when a message still has buttons.
pub fn has_buttons(msg: &Value) -> bool {
    msg["blocks"]
        .as_array()
        .map(|b| b.iter().any(|b| b["type"] == "actions"))
        .unwrap_or(false)
}
