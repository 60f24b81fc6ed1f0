//! The grant providers against the real things they drive: `command` runs
//! actual shell scripts in a temporary runbook directory and the tests read
//! what the scripts saw, and `webhook` posts to a small axum server on
//! 127.0.0.1 that records every request and checks nothing itself, so each
//! test asserts method, path, headers, body and signature the way a receiver
//! would. Set `TEST_LOG=1` to see the providers' logs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

use accessbot::grant::{
    sign_webhook, Action, CommandProvider, CommandSpec, ExitReason, GrantContext, GrantError,
    GrantProvider, GrantSpec, Providers, SlackUsergroupSpec, WebhookProvider, WebhookSpec,
};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::RwLock;

const BOT_TOKEN: &str = "xoxb-bot-token-that-must-not-leak";
const PASSED_VAR: &str = "ACCESSBOT_TEST_PASSED_THROUGH";
const PASSED_VALUE: &str = "passed-through-value";
const WEBHOOK_SECRET_VAR: &str = "ACCESSBOT_TEST_WEBHOOK_SECRET";
const WEBHOOK_SECRET: &str = "whsec-test-0123456789";
const EMPTY_SECRET_VAR: &str = "ACCESSBOT_TEST_EMPTY_SECRET";
const UNSET_SECRET_VAR: &str = "ACCESSBOT_TEST_SECRET_NOBODY_SET";

/// The environment is process-wide and tests run on parallel threads, so
/// every variable is set once, before any test starts a process or a request.
fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("SLACK_BOT_TOKEN", BOT_TOKEN);
        std::env::set_var(PASSED_VAR, PASSED_VALUE);
        std::env::set_var(WEBHOOK_SECRET_VAR, WEBHOOK_SECRET);
        std::env::set_var(EMPTY_SECRET_VAR, "");
        // A runbook listing this must not override the value accessbot sets.
        std::env::set_var("ACCESSBOT_ACTION", "hijacked");
        std::env::remove_var(UNSET_SECRET_VAR);
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt().with_test_writer().init();
        }
    });
}

fn expires_at() -> DateTime<Utc> {
    // The milliseconds must not reach scripts or receivers.
    Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap() + chrono::Duration::milliseconds(678)
}
const EXPIRES_AT_TEXT: &str = "2030-01-02T03:04:05Z";

fn context(runbook_dir: &Path) -> GrantContext {
    GrantContext {
        request_id: "req-0042".to_string(),
        runbook_id: "billing-admin".to_string(),
        user_id: "U012ABCDEF".to_string(),
        user_email: Some("ada@example.com".to_string()),
        identity: Some("ada@example.com".to_string()),
        expires_at: expires_at(),
        reason: "INC-7: refunds stuck — \"urgent\"\nsecond line".to_string(),
        runbook_dir: runbook_dir.to_path_buf(),
        inputs: vec![],
    }
}

// ---------------------------------------------------------------- command

fn command_spec(grant: &[&str], revoke: &[&str], timeout: Duration, env: &[&str]) -> GrantSpec {
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    GrantSpec::new(
        "command",
        CommandSpec {
            grant: strings(grant),
            revoke: strings(revoke),
            timeout,
            env: strings(env),
        },
    )
}

/// Writing an executable while another thread forks can leave the child
/// holding the file open for writing, and exec then fails with "text file
/// busy". Scripts are written under the write lock and programs run under the
/// read lock, so that never happens between these tests.
static SPAWNING: RwLock<()> = RwLock::const_new(());

async fn write_script(dir: &Path, relative: &str, body: &str) -> PathBuf {
    let _exclusive = SPAWNING.write().await;
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn run_command(
    spec: &GrantSpec,
    action: Action,
    ctx: &GrantContext,
) -> Result<(), GrantError> {
    let _shared = SPAWNING.read().await;
    CommandProvider::new().run(spec, action, ctx).await
}

/// Reads a file written by `env -0`.
fn read_env_dump(path: &Path) -> BTreeMap<String, String> {
    let bytes = std::fs::read(path).unwrap();
    String::from_utf8(bytes)
        .unwrap()
        .split('\0')
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (name, value) = entry.split_once('=').unwrap();
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// `path` written relative to the current directory, however deep that is.
fn relative_to_cwd(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let mut relative: PathBuf = cwd.components().skip(1).map(|_| "..").collect();
    relative.push(path.strip_prefix("/").unwrap());
    relative
}

#[tokio::test]
async fn command_sees_exactly_the_documented_environment() {
    init();
    let dir = tempfile::tempdir().unwrap();
    write_script(dir.path(), "scripts/grant.sh", "env -0 > env.out").await;
    let spec = command_spec(
        &["./scripts/grant.sh", "--ignored-arg"],
        &["./scripts/grant.sh"],
        Duration::from_secs(10),
        &[
            PASSED_VAR,
            "ACCESSBOT_TEST_LISTED_BUT_UNSET",
            "ACCESSBOT_ACTION",
        ],
    );

    run_command(&spec, Action::Grant, &context(dir.path()))
        .await
        .unwrap();

    let env = read_env_dump(&dir.path().join("env.out"));
    let expect = |name: &str, value: &str| {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}")
    };
    expect("ACCESSBOT_ACTION", "grant");
    expect("ACCESSBOT_REQUEST_ID", "req-0042");
    expect("ACCESSBOT_RUNBOOK", "billing-admin");
    expect("ACCESSBOT_USER_ID", "U012ABCDEF");
    expect("ACCESSBOT_USER_EMAIL", "ada@example.com");
    expect("ACCESSBOT_EXPIRES_AT", EXPIRES_AT_TEXT);
    expect(
        "ACCESSBOT_REASON",
        "INC-7: refunds stuck — \"urgent\"\nsecond line",
    );
    expect("LANG", "C.UTF-8");
    expect("PATH", &std::env::var("PATH").unwrap());
    if let Ok(home) = std::env::var("HOME") {
        expect("HOME", &home);
    }
    expect(PASSED_VAR, PASSED_VALUE);
    assert!(!env.contains_key("ACCESSBOT_TEST_LISTED_BUT_UNSET"));

    // Nothing else of the test process leaks through; the shell may add its own.
    let documented = [
        "ACCESSBOT_ACTION",
        "ACCESSBOT_REQUEST_ID",
        "ACCESSBOT_RUNBOOK",
        "ACCESSBOT_USER_ID",
        "ACCESSBOT_USER_EMAIL",
        "ACCESSBOT_EXPIRES_AT",
        "ACCESSBOT_REASON",
        "LANG",
        "PATH",
        "HOME",
        PASSED_VAR,
    ];
    let added_by_shell = ["PWD", "OLDPWD", "SHLVL", "_"];
    for name in env.keys() {
        assert!(
            documented.contains(&name.as_str()) || added_by_shell.contains(&name.as_str()),
            "unexpected variable {name} reached the script"
        );
    }
    assert!(!env
        .values()
        .any(|value| value.contains(BOT_TOKEN) || value.contains(WEBHOOK_SECRET)));
}

#[tokio::test]
async fn command_does_not_see_the_bots_slack_token() {
    init();
    assert_eq!(std::env::var("SLACK_BOT_TOKEN").unwrap(), BOT_TOKEN);
    let dir = tempfile::tempdir().unwrap();
    write_script(
        dir.path(),
        "grant.sh",
        r#"printf '%s' "${SLACK_BOT_TOKEN-unset}" > token.out"#,
    )
    .await;
    let spec = command_spec(
        &["./grant.sh"],
        &["./grant.sh"],
        Duration::from_secs(10),
        &[],
    );

    run_command(&spec, Action::Grant, &context(dir.path()))
        .await
        .unwrap();

    assert_eq!(
        std::fs::read_to_string(dir.path().join("token.out")).unwrap(),
        "unset"
    );
}

#[tokio::test]
async fn revoke_resolves_paths_against_a_relative_runbook_dir() {
    init();
    let dir = tempfile::tempdir().unwrap();
    write_script(dir.path(), "scripts/grant.sh", "exit 9").await;
    write_script(
        dir.path(),
        "scripts/revoke.sh",
        r#"printf '%s|%s|%s' "$ACCESSBOT_ACTION" "$ACCESSBOT_USER_EMAIL" "$(pwd -P)" > revoke.out"#,
    )
    .await;
    // No `./`: anything with a slash is relative to the runbook directory.
    let spec = command_spec(
        &["scripts/grant.sh"],
        &["scripts/revoke.sh"],
        Duration::from_secs(10),
        &[],
    );
    let mut ctx = context(&relative_to_cwd(dir.path()));
    ctx.user_email = None;

    let _shared = SPAWNING.read().await;
    Providers::with_builtin()
        .run(&spec, Action::Revoke, &ctx)
        .await
        .unwrap();

    let written = std::fs::read_to_string(dir.path().join("revoke.out")).unwrap();
    let physical_dir = dir.path().canonicalize().unwrap();
    assert_eq!(written, format!("revoke||{}", physical_dir.display()));
}

#[tokio::test]
async fn bare_program_names_are_found_in_path() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let spec = command_spec(
        &["sh", "-c", "echo \"$0 $1\" > bare.out", "sh", "works"],
        &["true"],
        Duration::from_secs(10),
        &[],
    );

    run_command(&spec, Action::Grant, &context(dir.path()))
        .await
        .unwrap();

    assert_eq!(
        std::fs::read_to_string(dir.path().join("bare.out")).unwrap(),
        "sh works\n"
    );
}

#[tokio::test]
async fn nonzero_exit_reports_code_and_cleaned_stderr_tail() {
    init();
    let dir = tempfile::tempdir().unwrap();
    // 2000 bytes of noise, then an escape sequence and the line that matters.
    write_script(
        dir.path(),
        "grant.sh",
        "i=0; while [ $i -lt 40 ]; do printf '%049d\\n' $i >&2; i=$((i+1)); done\n\
         printf 'ERROR: \\033[31mrole billing-admin does not exist\\033[0m\\r\\n' >&2\n\
         echo 'stdout is not part of the error'\n\
         exit 3",
    )
    .await;
    let spec = command_spec(
        &["./grant.sh"],
        &["./grant.sh"],
        Duration::from_secs(10),
        &[],
    );

    let error = run_command(&spec, Action::Grant, &context(dir.path()))
        .await
        .unwrap_err();

    let message = error.to_string();
    let GrantError::Failed {
        program,
        exit,
        stderr_tail,
    } = error
    else {
        panic!("expected Failed, got {message}");
    };
    assert_eq!(program, "./grant.sh");
    assert_eq!(exit, ExitReason::Code(3));
    assert!(
        stderr_tail.ends_with("ERROR: [31mrole billing-admin does not exist[0m"),
        "{stderr_tail:?}"
    );
    assert!(stderr_tail.len() <= 500, "{} bytes", stderr_tail.len());
    assert!(
        stderr_tail.chars().all(|c| c == '\n' || !c.is_control()),
        "{stderr_tail:?}"
    );
    assert!(
        !stderr_tail.contains("0000000000000000000000000000000000000000000000000"),
        "tail only"
    );
    assert!(
        message.contains("`./grant.sh` exited with code 3"),
        "{message}"
    );
    assert!(
        message.contains("role billing-admin does not exist"),
        "{message}"
    );
    assert!(!message.contains("stdout"), "{message}");
}

#[tokio::test]
async fn a_program_that_cannot_start_says_why() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let not_executable = write_script(dir.path(), "scripts/plain.sh", "exit 0").await;
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();

    for (program, expected_kind) in [
        ("./scripts/missing.sh", std::io::ErrorKind::NotFound),
        ("./scripts/plain.sh", std::io::ErrorKind::PermissionDenied),
    ] {
        let spec = command_spec(&[program], &[program], Duration::from_secs(10), &[]);
        let error = run_command(&spec, Action::Grant, &context(dir.path()))
            .await
            .unwrap_err();
        let message = error.to_string();
        let GrantError::Spawn {
            program: path,
            source,
            ..
        } = error
        else {
            panic!("expected Spawn for {program}, got {message}");
        };
        assert_eq!(path, dir.path().join(program.trim_start_matches("./")));
        assert_eq!(source.kind(), expected_kind, "{program}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("is it executable?"), "{message}");
        assert!(
            message.contains("relative paths resolve against the runbook directory"),
            "{message}"
        );
    }
}

/// Gone, or a zombie nobody reaps: PID 1 in some containers never reaps orphans.
fn process_gone(pid: i32) -> bool {
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

async fn wait_until_gone(pid: i32) -> bool {
    for _ in 0..40 {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn timeout_kills_the_program_and_everything_it_started() {
    init();
    let dir = tempfile::tempdir().unwrap();
    write_script(
        dir.path(),
        "grant.sh",
        "echo $$ > script.pid\nsleep 30 &\necho $! > sleep.pid\nwait",
    )
    .await;
    let spec = command_spec(
        &["./grant.sh"],
        &["./grant.sh"],
        Duration::from_secs(1),
        &[],
    );

    let started = Instant::now();
    let error = run_command(&spec, Action::Grant, &context(dir.path()))
        .await
        .unwrap_err();
    let took = started.elapsed();

    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(
        matches!(error, GrantError::TimedOut { after, .. } if after == Duration::from_secs(1)),
        "{error}"
    );
    assert_eq!(error.to_string(), "`./grant.sh` (grant) timed out after 1s");
    let script = read_pid(&dir.path().join("script.pid"));
    let sleeper = read_pid(&dir.path().join("sleep.pid"));
    assert!(
        wait_until_gone(script).await,
        "the script {script} is still running"
    );
    assert!(
        wait_until_gone(sleeper).await,
        "the sleep {sleeper} it started is still running"
    );
}

#[tokio::test]
async fn a_background_process_holding_the_output_does_not_hang_success() {
    init();
    let dir = tempfile::tempdir().unwrap();
    write_script(
        dir.path(),
        "grant.sh",
        "sleep 30 &\necho $! > sleep.pid\nexit 0",
    )
    .await;
    let spec = command_spec(
        &["./grant.sh"],
        &["./grant.sh"],
        Duration::from_secs(20),
        &[],
    );

    let started = Instant::now();
    let result = run_command(&spec, Action::Grant, &context(dir.path())).await;
    let took = started.elapsed();

    let sleeper = read_pid(&dir.path().join("sleep.pid"));
    // SAFETY: the pid is the test's own grandchild, read back just now.
    unsafe { libc::kill(sleeper, libc::SIGKILL) };
    result.unwrap();
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

// ---------------------------------------------------------------- webhook

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A webhook receiver on 127.0.0.1 that records everything and answers by path:
/// `/hooks/ok` 200, `/hooks/fail` 500, `/hooks/slow` after 5 s, `/hooks/moved` 302,
/// `/hooks/busy` 429 with `Retry-After: 7`, `/hooks/down` 503 with a
/// `Retry-After` date two minutes ahead, `/hooks/refused` 403.
struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&received));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, received }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn receive(State(received): State<Arc<Mutex<Vec<Received>>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path = parts.uri.path().to_string();
    received
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Received {
            method: parts.method.to_string(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map(ToString::to_string)
                .unwrap_or_default(),
            headers: parts.headers,
            body,
        });
    match path.as_str() {
        "/hooks/ok" => (StatusCode::OK, "{\"ok\":true}").into_response(),
        "/hooks/fail" => {
            let body = format!("database is down\x1b[31m\r\n{}", "x".repeat(1000));
            (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
        }
        "/hooks/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK.into_response()
        }
        "/hooks/moved" => (StatusCode::FOUND, [("location", "/hooks/ok")]).into_response(),
        "/hooks/busy" => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")]).into_response(),
        "/hooks/down" => {
            let at = (Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
            (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", at)]).into_response()
        }
        "/hooks/refused" => (StatusCode::FORBIDDEN, "no such role").into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn webhook_spec(url: String, secret_env: &str, timeout: Duration) -> GrantSpec {
    GrantSpec::new(
        "webhook",
        WebhookSpec {
            url,
            secret_env: secret_env.to_string(),
            timeout,
        },
    )
}

fn header<'a>(request: &'a Received, name: &str) -> &'a str {
    request
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// Verifies the signature the way a receiver would, without `sign_webhook`.
fn assert_signed(request: &Received) {
    let ts = header(request, "x-accessbot-timestamp");
    let signature = header(request, "x-accessbot-signature");
    let expected = hex::decode(signature.strip_prefix("v1=").expect("v1= prefix")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("v1:{ts}:").as_bytes());
    mac.update(&request.body);
    mac.verify_slice(&expected).expect("signature verifies");
    assert_eq!(signature, signature.to_lowercase());
    let age = Utc::now().timestamp() - ts.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "timestamp {ts} is {age}s old");
}

#[tokio::test]
async fn webhook_posts_signed_json() {
    init();
    let receiver = Receiver::start().await;
    let spec = webhook_spec(
        receiver.url("/hooks/ok?tenant=acme"),
        WEBHOOK_SECRET_VAR,
        Duration::from_secs(10),
    );
    let provider = WebhookProvider::new();
    let mut ctx = context(Path::new("/nonexistent"));

    provider.run(&spec, Action::Grant, &ctx).await.unwrap();
    ctx.user_email = None;
    provider.run(&spec, Action::Revoke, &ctx).await.unwrap();

    let received = receiver.received();
    assert_eq!(received.len(), 2);
    for (request, action, email) in [
        (&received[0], "grant", json!("ada@example.com")),
        (&received[1], "revoke", Value::Null),
    ] {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path_and_query, "/hooks/ok?tenant=acme");
        assert_eq!(header(request, "content-type"), "application/json");
        assert_eq!(
            header(request, "user-agent"),
            concat!("accessbot/", env!("CARGO_PKG_VERSION"))
        );
        assert_signed(request);
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!({
                "action": action,
                "request_id": "req-0042",
                "runbook": "billing-admin",
                "user": {"id": "U012ABCDEF", "email": email},
                "expires_at": EXPIRES_AT_TEXT,
                "reason": "INC-7: refunds stuck — \"urgent\"\nsecond line",
                "inputs": {},
            })
        );
    }
}

#[tokio::test]
async fn webhook_body_carries_the_runbook_inputs() {
    init();
    let receiver = Receiver::start().await;
    let spec = webhook_spec(
        receiver.url("/hooks/ok"),
        WEBHOOK_SECRET_VAR,
        Duration::from_secs(10),
    );
    let mut ctx = context(Path::new("/nonexistent"));
    ctx.inputs = vec![
        ("ticket".to_string(), "CS-1234".to_string()),
        ("customer".to_string(), "ACME \"42\"".to_string()),
    ];
    WebhookProvider::new()
        .run(&spec, Action::Grant, &ctx)
        .await
        .unwrap();
    let received = receiver.received();
    assert_signed(&received[0]);
    let body: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(
        body["inputs"],
        json!({"ticket": "CS-1234", "customer": "ACME \"42\""})
    );
}

#[tokio::test]
async fn webhook_error_status_is_reported_with_the_start_of_the_body() {
    init();
    let receiver = Receiver::start().await;
    let spec = webhook_spec(
        receiver.url("/hooks/fail?token=path-secret"),
        WEBHOOK_SECRET_VAR,
        Duration::from_secs(10),
    );

    let error = WebhookProvider::new()
        .run(&spec, Action::Grant, &context(Path::new("/")))
        .await
        .unwrap_err();

    let message = error.to_string();
    let GrantError::WebhookStatus {
        origin,
        status,
        body,
        retry_after,
    } = error
    else {
        panic!("expected WebhookStatus, got {message}");
    };
    assert_eq!(status, 500);
    assert_eq!(retry_after, None, "the receiver sent no Retry-After");
    assert_eq!(origin, format!("http://{}", receiver.addr));
    // The escape character goes; the printable rest of the sequence stays.
    assert!(body.starts_with("database is down[31m\nxxx"), "{body:?}");
    assert!(body.len() <= 300, "{} bytes", body.len());
    assert!(message.contains("500"), "{message}");
    assert!(message.contains(&origin), "{message}");
    assert!(
        !message.contains("path-secret") && !message.contains("/hooks"),
        "{message}"
    );
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn webhook_refusals_say_whether_and_when_to_retry() {
    init();
    let receiver = Receiver::start().await;
    let refusal = |path: &str| {
        let spec = webhook_spec(
            receiver.url(path),
            WEBHOOK_SECRET_VAR,
            Duration::from_secs(10),
        );
        async move {
            WebhookProvider::new()
                .run(&spec, Action::Revoke, &context(Path::new("/")))
                .await
                .unwrap_err()
        }
    };

    let busy = refusal("/hooks/busy").await;
    assert!(
        matches!(busy, GrantError::WebhookStatus { status: 429, .. }),
        "{busy}"
    );
    assert!(busy.is_retryable());
    assert_eq!(busy.retry_after(), Some(Duration::from_secs(7)));

    let down = refusal("/hooks/down").await;
    assert!(
        matches!(down, GrantError::WebhookStatus { status: 503, .. }),
        "{down}"
    );
    assert!(down.is_retryable());
    let wait = down.retry_after().expect("the date is read");
    assert!(
        (Duration::from_secs(100)..=Duration::from_secs(120)).contains(&wait),
        "{wait:?}"
    );

    let failed = refusal("/hooks/fail").await;
    assert!(failed.is_retryable());
    assert_eq!(failed.retry_after(), None);

    let refused = refusal("/hooks/refused").await;
    assert!(
        matches!(refused, GrantError::WebhookStatus { status: 403, .. }),
        "{refused}"
    );
    assert!(!refused.is_retryable());
    assert_eq!(refused.retry_after(), None);
    assert_eq!(receiver.received().len(), 4);
}

#[tokio::test]
async fn webhook_does_not_follow_redirects() {
    init();
    let receiver = Receiver::start().await;
    let spec = webhook_spec(
        receiver.url("/hooks/moved"),
        WEBHOOK_SECRET_VAR,
        Duration::from_secs(10),
    );

    let error = WebhookProvider::new()
        .run(&spec, Action::Grant, &context(Path::new("/")))
        .await
        .unwrap_err();

    assert!(
        matches!(error, GrantError::WebhookStatus { status: 302, .. }),
        "{error}"
    );
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path_and_query, "/hooks/moved");
}

#[tokio::test]
async fn webhook_without_its_secret_sends_nothing() {
    init();
    let receiver = Receiver::start().await;

    for var in [UNSET_SECRET_VAR, EMPTY_SECRET_VAR] {
        let spec = webhook_spec(receiver.url("/hooks/ok"), var, Duration::from_secs(10));
        let error = WebhookProvider::new()
            .run(&spec, Action::Grant, &context(Path::new("/")))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, GrantError::MissingSecret { var: named } if named == var),
            "{error}"
        );
        assert!(error.to_string().contains(&format!("`{var}`")), "{error}");
    }
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn webhook_times_out() {
    init();
    let receiver = Receiver::start().await;
    let spec = webhook_spec(
        receiver.url("/hooks/slow"),
        WEBHOOK_SECRET_VAR,
        Duration::from_secs(1),
    );

    let started = Instant::now();
    let error = WebhookProvider::new()
        .run(&spec, Action::Grant, &context(Path::new("/")))
        .await
        .unwrap_err();
    let took = started.elapsed();

    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(
        matches!(error, GrantError::TimedOut { after, .. } if after == Duration::from_secs(1)),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        format!("webhook http://{} timed out after 1s", receiver.addr)
    );
}

#[tokio::test]
async fn webhook_transport_errors_hide_the_url_path() {
    init();
    // Bind and drop, so nothing listens on the port.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let spec = webhook_spec(
        format!("http://{addr}/hooks/path-secret"),
        WEBHOOK_SECRET_VAR,
        Duration::from_secs(5),
    );

    let error = WebhookProvider::new()
        .run(&spec, Action::Grant, &context(Path::new("/")))
        .await
        .unwrap_err();

    let mut chain = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        chain.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    assert!(
        matches!(error, GrantError::WebhookTransport { .. }),
        "{chain}"
    );
    assert!(chain.contains(&format!("http://{addr}")), "{chain}");
    assert!(!chain.contains("path-secret"), "{chain}");
    assert!(!format!("{error:?}").contains("path-secret"), "{error:?}");
}

#[test]
fn sign_webhook_matches_an_independent_hmac() {
    let body = br#"{"action":"grant","request_id":"r-1"}"#;
    // Computed with `openssl dgst -sha256 -hmac whsec-test-0123456789`.
    assert_eq!(
        sign_webhook(WEBHOOK_SECRET.as_bytes(), 1_700_000_000, body),
        "v1=39c50959fdbf4520f5e1b878d244b93b2b729fa8ef12705782fc4a1ffe8334ed"
    );

    let mut mac = Hmac::<Sha256>::new_from_slice(b"another key").unwrap();
    mac.update(b"v1:-5:");
    mac.update(b"");
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(sign_webhook(b"another key", -5, b""), expected);
}

// ---------------------------------------------------------------- registry

#[tokio::test]
async fn providers_dispatch_by_name() {
    init();
    let builtin = Providers::with_builtin();
    assert_eq!(
        builtin.names().collect::<Vec<_>>(),
        [
            "command",
            "entra_id",
            "google_workspace",
            "okta",
            "postgres",
            "webhook"
        ]
    );
    assert_eq!(builtin.get("command").unwrap().name(), "command");
    assert!(builtin.get("slack_usergroup").is_none());
    let ctx = context(Path::new("/"));

    let usergroup = GrantSpec::new(
        "slack_usergroup",
        SlackUsergroupSpec {
            usergroup: "S0123".to_string(),
        },
    );
    let error = builtin
        .run(&usergroup, Action::Grant, &ctx)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, GrantError::Unsupported { provider } if provider == "slack_usergroup"),
        "{error}"
    );

    let command = command_spec(&["true"], &["true"], Duration::from_secs(5), &[]);
    let error = Providers::new()
        .run(&command, Action::Grant, &ctx)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, GrantError::Unsupported { provider } if provider == "command"),
        "{error}"
    );

    // A provider handed another provider's spec refuses instead of guessing.
    let error = CommandProvider::new()
        .run(&usergroup, Action::Grant, &ctx)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            GrantError::Misconfigured {
                provider: "command",
                ..
            }
        ),
        "{error}"
    );
}
