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
        expires_at: Utc::now(),
        reason: "ticket 42".to_string(),
        runbook_dir: dir.clone(),
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
}
