//! The scripts shipped in `runbooks/scripts/`, run the way accessbot runs
//! them: the real runbook file is loaded, and its grant and revoke go through
//! the `command` provider to `rest-role.sh`, which calls a small HTTP server
//! on 127.0.0.1 standing in for the CRM's role API. Needs `curl`, which
//! `.ci/run` installs when it is missing.

use std::path::Path;
use std::sync::{Arc, Mutex, Once};

use accessbot::grant::{Action, GrantContext, Providers};
use accessbot::runbook::load_file;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Router;
use chrono::Utc;

const TOKEN: &str = "crm-service-token-must-not-leak-7f3a";

/// What the fake CRM saw, and the status it answers with.
#[derive(Default)]
struct Crm {
    seen: Mutex<Vec<(String, String, String, String)>>,
    answer: Mutex<u16>,
}

async fn crm(State(crm): State<Arc<Crm>>, req: Request) -> StatusCode {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    crm.seen.lock().unwrap().push((
        req.method().to_string(),
        req.uri().path().to_string(),
        header("authorization"),
        header("x-request-id"),
    ));
    StatusCode::from_u16(*crm.answer.lock().unwrap()).unwrap()
}

async fn start_crm() -> Arc<Crm> {
    let state = Arc::new(Crm::default());
    *state.answer.lock().unwrap() = 200;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(crm).with_state(Arc::clone(&state));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("CRM_API_URL", format!("http://{addr}/"));
        std::env::set_var("CRM_API_TOKEN", TOKEN);
    });
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_role_grants_and_revokes_through_the_shipped_crm_runbook() {
    let crm = start_crm().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let runbook = load_file(&dir.join("crm-support.toml")).expect("the shipped runbook loads");
    let ctx = GrantContext {
        request_id: "ar-abc123".to_string(),
        runbook_id: runbook.id.clone(),
        user_id: "U0ALICE".to_string(),
        user_email: Some("alice@example.com".to_string()),
        identity: Some("alice@example.com".to_string()),
        expires_at: Utc::now(),
        reason: "ticket 42".to_string(),
        runbook_dir: dir.clone(),
        inputs: vec![],
    };
    let providers = Providers::with_builtin();
    let run = |action| providers.run(&runbook.grant, action, &ctx);

    run(Action::Grant).await.expect("grant succeeds on 200");
    run(Action::Revoke).await.expect("revoke succeeds on 200");
    let seen = crm.seen.lock().unwrap().clone();
    let path = "/v1/users/alice@example.com/roles/support-records";
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(
        seen,
        vec![
            (
                "PUT".into(),
                path.into(),
                bearer.clone(),
                "ar-abc123".into()
            ),
            ("DELETE".into(), path.into(), bearer, "ar-abc123".into()),
        ]
    );

    // Revoking what is already gone is done; granting to an unknown user is not.
    *crm.answer.lock().unwrap() = 404;
    run(Action::Revoke)
        .await
        .expect("a 404 on revoke counts as done");
    let unknown = run(Action::Grant).await.unwrap_err().to_string();
    assert!(
        unknown.contains("the CRM does not know alice@example.com"),
        "{unknown}"
    );

    // A refused token names the variable to fix, never its value.
    *crm.answer.lock().unwrap() = 403;
    let refused = run(Action::Grant).await.unwrap_err().to_string();
    assert!(refused.contains("check CRM_API_TOKEN"), "{refused}");
    assert!(!refused.contains(TOKEN), "{refused}");

    // Exit code 78 says a retry cannot help (an unknown user, a refused
    // token); a server error is worth another try.
    assert!(!run(Action::Grant).await.unwrap_err().is_retryable());
    *crm.answer.lock().unwrap() = 404;
    assert!(!run(Action::Grant).await.unwrap_err().is_retryable());
    *crm.answer.lock().unwrap() = 503;
    let busy = run(Action::Revoke).await.unwrap_err();
    assert!(busy.is_retryable(), "{busy}");
}

// ---------------------------------------------------------------------------
// billing.sh: the demo script the README starts with, and the model that
// customers copy. It must never leave its lock behind, whatever kills it.
// ---------------------------------------------------------------------------

mod billing {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};

    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/scripts/billing.sh")
    }

    /// `billing.sh <action>` for `user`, state in `dir`, in its own process
    /// group (as accessbot runs it), with `path_front` first on PATH.
    fn billing(dir: &Path, action: &str, user: &str, path_front: Option<&Path>) -> Command {
        let mut cmd = Command::new(script());
        let path = match path_front {
            Some(front) => format!("{}:/usr/local/bin:/usr/bin:/bin", front.display()),
            None => "/usr/local/bin:/usr/bin:/bin".to_string(),
        };
        cmd.arg(action)
            .env_clear()
            .env("PATH", path)
            .env("ACCESSBOT_STATE_DIR", dir)
            .env("ACCESSBOT_USER_ID", user)
            .env("ACCESSBOT_REASON", "month end\nfake line\u{7}")
            .process_group(0);
        cmd
    }

    fn admins(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("billing-admins.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn run_ok(mut cmd: Command) {
        let out = cmd.output().expect("billing.sh runs");
        assert!(
            out.status.success(),
            "billing.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A `grep` that first says it is running (a file in `dir`), then hangs:
    /// it stops billing.sh inside its critical section, holding the lock.
    fn hanging_grep(dir: &Path) -> PathBuf {
        let bin = dir.join("shim");
        std::fs::create_dir_all(&bin).unwrap();
        let grep = bin.join("grep");
        std::fs::write(
            &grep,
            format!(
                "#!/bin/sh\ntouch {}\nexec sleep 600\n",
                dir.join("inside").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&grep, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        bin
    }

    /// Starts billing.sh with the hanging grep and waits until it is inside
    /// its critical section (the state we need, not a moment in time).
    fn stuck_inside(dir: &Path, action: &str) -> Child {
        let shim = hanging_grep(dir);
        let child = billing(dir, action, "U0STUCK", Some(&shim))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let inside = dir.join("inside");
        while !inside.exists() {
            std::thread::yield_now();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child
    }

    fn signal_group(child: &Child, sig: i32) {
        // SAFETY: kill(2) on the child's own process group.
        unsafe { libc::kill(-(child.id() as i32), sig) };
    }

    #[test]
    fn a_closed_stdout_neither_fails_the_grant_nor_leaves_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        // `billing.sh grant | true`: the reader is gone before the script writes.
        let mut child = billing(dir.path(), "grant", "U0TEST", None)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            status.success(),
            "grant with closed stdout: {status:?} {stderr}"
        );
        assert_eq!(admins(dir.path()), ["U0TEST"]);
        // The next run is not blocked by anything left behind.
        run_ok(billing(dir.path(), "revoke", "U0TEST", None));
        assert!(admins(dir.path()).is_empty());
        let log = std::fs::read_to_string(dir.path().join("billing-access.log")).unwrap();
        assert_eq!(
            log.lines().count(),
            2,
            "one line per run, reason on one line:\n{log}"
        );
        assert!(log.contains("reason=\"month end fake line \""), "{log}");
    }

    #[test]
    fn a_run_killed_inside_its_critical_section_does_not_block_the_next() {
        let dir = tempfile::tempdir().unwrap();
        run_ok(billing(dir.path(), "grant", "U0ALICE", None));
        let mut stuck = stuck_inside(dir.path(), "grant");
        signal_group(&stuck, libc::SIGKILL);
        stuck.wait().unwrap();
        // With a lock that outlived its holder this failed after 10 s.
        run_ok(billing(dir.path(), "revoke", "U0ALICE", None));
        assert!(admins(dir.path()).is_empty());
    }

    #[test]
    fn sigterm_mid_revoke_leaves_the_list_whole_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        run_ok(billing(dir.path(), "grant", "U0ALICE", None));
        run_ok(billing(dir.path(), "grant", "U0STUCK", None));
        let mut stuck = stuck_inside(dir.path(), "revoke");
        signal_group(&stuck, libc::SIGTERM);
        let status = stuck.wait().unwrap();
        assert!(
            !status.success(),
            "a terminated revoke must not report success"
        );
        assert_eq!(admins(dir.path()), ["U0ALICE", "U0STUCK"]);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("billing-admins.txt.") && n != "billing-admins.txt.lock")
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        run_ok(billing(dir.path(), "revoke", "U0STUCK", None));
        assert_eq!(admins(dir.path()), ["U0ALICE"]);
    }

    #[test]
    fn concurrent_grants_and_revokes_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let users: Vec<String> = (0..24).map(|i| format!("U0USER{i}")).collect();
        let spawn_all = |action: &str| -> Vec<Child> {
            users
                .iter()
                .map(|u| {
                    billing(dir.path(), action, u, None)
                        .stdout(Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect()
        };
        for mut c in spawn_all("grant") {
            assert!(c.wait().unwrap().success());
        }
        let mut granted = admins(dir.path());
        granted.sort();
        let mut expected = users.clone();
        expected.sort();
        assert_eq!(granted, expected);
        for mut c in spawn_all("revoke") {
            assert!(c.wait().unwrap().success());
        }
        assert!(admins(dir.path()).is_empty());
    }
}
