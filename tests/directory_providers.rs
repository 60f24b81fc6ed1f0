//! The directory providers (`okta`, `google_workspace`, `entra_id`) against
//! fake servers that answer like the real APIs and keep group memberships
//! (`support/fake_okta.rs`, `fake_google.rs`, `fake_entra.rs`). Each runbook
//! is parsed through the registry, as the bot does, and run through
//! [`Providers`]; the tests assert what the fake directory now holds and the
//! exact requests it received. Set `TEST_LOG=1` to see the providers' logs.

#[path = "support/fake_directory.rs"]
mod fake_directory;
#[path = "support/fake_entra.rs"]
mod fake_entra;
#[path = "support/fake_google.rs"]
mod fake_google;
#[path = "support/fake_okta.rs"]
mod fake_okta;

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use accessbot::grant::{Action, GrantContext, GrantError, GrantSpec, Presence, Providers};
use accessbot::runbook::parse_runbook;
use fake_entra::FakeEntra;
use fake_google::FakeGoogle;
use fake_okta::FakeOkta;
use serde_json::{json, Value};

const OKTA_TOKEN: &str = "00Okta-api-token-that-must-not-leak";
const OKTA_TOKEN_VAR: &str = "ACCESSBOT_TEST_OKTA_TOKEN";
const WRONG_OKTA_TOKEN_VAR: &str = "ACCESSBOT_TEST_WRONG_OKTA_TOKEN";
const UNSET_VAR: &str = "ACCESSBOT_TEST_DIRECTORY_NOBODY_SET";
const GOOGLE_CREDENTIALS_VAR: &str = "ACCESSBOT_TEST_GOOGLE_CREDENTIALS";
const BROKEN_CREDENTIALS_VAR: &str = "ACCESSBOT_TEST_BROKEN_GOOGLE_CREDENTIALS";
const SERVICE_ACCOUNT: &str = "accessbot@acme-accessbot.iam.gserviceaccount.com";
const GOOGLE_ADMIN: &str = "accessbot-admin@acme.com";
const ENTRA_SECRET: &str = "entra~client~secret~that~must~not~leak";
const ENTRA_SECRET_VAR: &str = "ACCESSBOT_TEST_ENTRA_SECRET";
const WRONG_ENTRA_SECRET_VAR: &str = "ACCESSBOT_TEST_WRONG_ENTRA_SECRET";
const TENANT: &str = "8f3c2a10-1b2c-4d5e-9f60-718293a4b5c6";
const CLIENT_ID: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";

const OKTA_GROUP: &str = "00g1billingadmins01";
const GOOGLE_GROUP: &str = "payroll-exports@acme.com";
const ENTRA_GROUP: &str = "5d2e6f70-8192-4a3b-bc4d-5e6f708192a3";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

/// The environment is process-wide and tests run on parallel threads, so
/// every variable is set once, before any test runs a provider.
fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var(OKTA_TOKEN_VAR, OKTA_TOKEN);
        std::env::set_var(WRONG_OKTA_TOKEN_VAR, "00wrong-token");
        std::env::remove_var(UNSET_VAR);
        std::env::set_var(
            GOOGLE_CREDENTIALS_VAR,
            fake_google::service_account_json(SERVICE_ACCOUNT),
        );
        std::env::set_var(
            BROKEN_CREDENTIALS_VAR,
            r#"{"client_email": "x@y.iam.gserviceaccount.com", "private_key": 42, "secret": "s3cr3t-in-broken-json"}"#,
        );
        std::env::set_var(ENTRA_SECRET_VAR, ENTRA_SECRET);
        std::env::set_var(WRONG_ENTRA_SECRET_VAR, "not-the-secret");
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt().with_test_writer().init();
        }
    });
}

/// A runbook with this `[grant]` table, parsed through the registry.
fn spec(grant: &str) -> GrantSpec {
    let text = format!(
        r#"
id = "directory-test"
title = "Directory test"
description = "A group in a directory"
system = "Directory"
owner = "U0OWNER"
instructions = "Sign in to the app; access ends by itself."

[request]
allowed = ["*"]
default_duration = "1h"
max_duration = "2h"

[approval]
approvers = ["U0BOB"]
required = 1

[grant]
{grant}
"#
    );
    match parse_runbook(&text, Path::new("directory-test.toml")) {
        Ok(runbook) => runbook.grant,
        Err(problems) => panic!("{problems:?}"),
    }
}

fn context(identity: Option<&str>) -> GrantContext {
    GrantContext {
        request_id: "ar-directory-0001".into(),
        runbook_id: "billing-portal-admin".into(),
        user_id: "U0ALICE".into(),
        user_email: identity.map(str::to_string),
        identity: identity.map(str::to_string),
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
        reason: "month-end refunds".into(),
        runbook_dir: ".".into(),
        inputs: Vec::new(),
    }
}

async fn run(spec: &GrantSpec, action: Action, ctx: &GrantContext) -> Result<(), GrantError> {
    Providers::with_builtin().run(spec, action, ctx).await
}

/// Runs on one `Providers`, so the token cache is shared, as in the bot.
struct Bot {
    providers: Providers,
}

impl Bot {
    fn new() -> Bot {
        init();
        Bot {
            providers: Providers::with_builtin(),
        }
    }

    async fn run(
        &self,
        spec: &GrantSpec,
        action: Action,
        identity: &str,
    ) -> Result<(), GrantError> {
        self.providers
            .run(spec, action, &context(Some(identity)))
            .await
    }

    async fn verify(&self, spec: &GrantSpec, identity: &str) -> Presence {
        self.providers
            .verify(spec, &context(Some(identity)))
            .await
            .expect("directory providers can read back")
            .unwrap_or_else(|e| panic!("verify failed: {e}"))
    }

    async fn members(&self, spec: &GrantSpec) -> Vec<String> {
        let mut members = self
            .providers
            .members(spec)
            .await
            .expect("directory providers can list")
            .unwrap_or_else(|e| panic!("members failed: {e}"));
        members.sort();
        members
    }
}

/// No secret in the error's message or its Debug form.
fn assert_no_secret(error: &GrantError) {
    let shown = format!("{error} {error:?}");
    for secret in [
        OKTA_TOKEN,
        ENTRA_SECRET,
        "BEGIN PRIVATE KEY",
        "s3cr3t-in-broken-json",
        "ya29.",
        "eyJ0eXAi",
    ] {
        assert!(!shown.contains(secret), "{secret:?} shown in: {shown}");
    }
}

// ------------------------------------------------------------------- okta

fn okta_spec(okta: &FakeOkta, token_var: &str, end_sessions: bool) -> GrantSpec {
    spec(&format!(
        "provider = \"okta\"\norg_url = \"{}\"\ntoken_env = \"{token_var}\"\ngroup_id = \"{OKTA_GROUP}\"\nend_sessions = {end_sessions}",
        okta.url()
    ))
}

async fn okta_with_alice() -> (FakeOkta, String) {
    let okta = FakeOkta::start(OKTA_TOKEN).await;
    let alice = okta.add_user(ALICE);
    okta.add_user(BOB);
    okta.add_group(OKTA_GROUP);
    okta.add_group("00gsomeothergroup01");
    okta.add_member("00gsomeothergroup01", ALICE);
    (okta, alice)
}

#[tokio::test]
async fn okta_grants_verifies_and_revokes_with_the_exact_calls_and_repeats_safely() {
    let bot = Bot::new();
    let (okta, alice) = okta_with_alice().await;
    let spec = okta_spec(&okta, OKTA_TOKEN_VAR, true);

    assert_eq!(bot.verify(&spec, ALICE).await, Presence::Absent);
    bot.run(&spec, Action::Grant, ALICE).await.unwrap();
    assert_eq!(okta.members(OKTA_GROUP), [ALICE]);
    assert_eq!(bot.verify(&spec, ALICE).await, Presence::Present);
    // Granting again (a retry after a crash) succeeds and changes nothing.
    bot.run(&spec, Action::Grant, ALICE).await.unwrap();
    assert_eq!(okta.members(OKTA_GROUP), [ALICE]);

    let calls = okta.calls();
    let lines: Vec<String> = calls.iter().map(|c| c.line()).collect();
    let find = "GET /api/v1/users/alice%40example.com".to_string();
    let add = format!("PUT /api/v1/groups/{OKTA_GROUP}/users/{alice}");
    assert!(lines.contains(&find), "{lines:?}");
    assert!(lines.contains(&add), "{lines:?}");
    assert!(
        lines.contains(&format!("GET /api/v1/users/{alice}/groups")),
        "{lines:?}"
    );
    for call in &calls {
        assert_eq!(
            call.authorization.as_deref(),
            Some(format!("SSWS {OKTA_TOKEN}").as_str()),
            "{}",
            call.line()
        );
        assert_eq!(
            call.status / 100,
            2,
            "{} answered {}",
            call.line(),
            call.status
        );
    }

    bot.run(&spec, Action::Revoke, ALICE).await.unwrap();
    assert_eq!(okta.members(OKTA_GROUP), Vec::<String>::new());
    assert_eq!(
        okta.members("00gsomeothergroup01"),
        [ALICE],
        "other groups are left alone"
    );
    assert_eq!(bot.verify(&spec, ALICE).await, Presence::Absent);
    assert_eq!(okta.sessions_ended(), [ALICE]);
    let lines: Vec<String> = okta.calls().iter().map(|c| c.line()).collect();
    assert!(lines.contains(&format!("DELETE /api/v1/groups/{OKTA_GROUP}/users/{alice}")));
    let ended = okta
        .calls()
        .into_iter()
        .find(|c| c.line() == format!("DELETE /api/v1/users/{alice}/sessions"))
        .expect("sessions ended");
    assert_eq!(ended.query, "oauthTokens=true");
    // Revoking again succeeds; so does revoking someone Okta does not know.
    bot.run(&spec, Action::Revoke, ALICE).await.unwrap();
    bot.run(&spec, Action::Revoke, "nobody@example.com")
        .await
        .unwrap();
    assert_eq!(
        bot.verify(&spec, "nobody@example.com").await,
        Presence::Absent
    );
}

#[tokio::test]
async fn okta_lists_every_page_of_the_groups_members() {
    let bot = Bot::new();
    let (okta, _) = okta_with_alice().await;
    for n in 0..5 {
        let login = format!("user{n}@example.com");
        okta.add_user(&login);
        okta.add_member(OKTA_GROUP, &login);
    }
    okta.add_member(OKTA_GROUP, ALICE);
    okta.page_size(2);
    let spec = okta_spec(&okta, OKTA_TOKEN_VAR, false);
    let mut expected = okta.members(OKTA_GROUP);
    expected.sort();
    assert_eq!(expected.len(), 6);
    assert_eq!(bot.members(&spec).await, expected);
    let pages = okta
        .calls()
        .iter()
        .filter(|c| c.path == format!("/api/v1/groups/{OKTA_GROUP}/users"))
        .count();
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn okta_errors_name_the_step_the_runbook_and_what_okta_said() {
    init();
    let (okta, _) = okta_with_alice().await;
    let spec = okta_spec(&okta, OKTA_TOKEN_VAR, false);

    // A user Okta does not know cannot be granted; nothing was touched.
    let error = run(&spec, Action::Grant, &context(Some("nobody@example.com")))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Okta: could not find the user (runbook `billing-portal-admin`): Okta has no user `nobody@example.com`; create the account, or map the person to their Okta login under [identities] in the config"
    );
    assert!(!error.is_retryable());
    assert!(error.target_untouched());

    okta.fail_next("PUT", "", 1, 403);
    let error = run(&spec, Action::Grant, &context(Some(ALICE)))
        .await
        .unwrap_err();
    let text = error.to_string();
    for part in [
        "Okta: could not add the user to the group (runbook `billing-portal-admin`)",
        "HTTP 403: You do not have permission to perform the requested action [E0000006]",
        "Group Membership Admin",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    assert!(!error.is_retryable());
    assert!(!error.target_untouched());

    okta.fail_next("DELETE", "/groups/", 1, 500);
    let error = run(&spec, Action::Revoke, &context(Some(ALICE)))
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(
        error
            .to_string()
            .contains("HTTP 500: Internal Server Error [E0000009]"),
        "{error}"
    );

    // Okta's 429 says when the limit resets; that is the wait asked for.
    okta.rate_limit_next("GET", "/users/", 1, 7);
    let error = run(&spec, Action::Revoke, &context(Some(ALICE)))
        .await
        .unwrap_err();
    assert!(error.is_retryable());
    let wait = error.retry_after().expect("the reset time is a wait");
    assert!(
        (Duration::from_secs(6)..=Duration::from_secs(8)).contains(&wait),
        "{wait:?}"
    );
    assert!(
        error.to_string().contains("API call exceeded rate limit"),
        "{error}"
    );

    // A refused token: the variable is named, the token never shown.
    let wrong = okta_spec(&okta, WRONG_OKTA_TOKEN_VAR, false);
    let error = run(&wrong, Action::Grant, &context(Some(ALICE)))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("HTTP 401: Invalid token provided [E0000011]"),
        "{text}"
    );
    assert!(text.contains(WRONG_OKTA_TOKEN_VAR), "{text}");
    assert!(!text.contains("00wrong-token"), "{text}");
    assert_no_secret(&error);

    let unset = okta_spec(&okta, UNSET_VAR, false);
    let error = run(&unset, Action::Grant, &context(Some(ALICE)))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("`{UNSET_VAR}` is not set")),
        "{error}"
    );
    assert!(error.target_untouched());

    let error = run(&spec, Action::Grant, &context(None)).await.unwrap_err();
    assert!(error.to_string().contains("[identities]"), "{error}");
    assert!(error.target_untouched());
    assert_eq!(okta.members(OKTA_GROUP), Vec::<String>::new());
}

// ---------------------------------------------------------- google_workspace

fn google_spec(google: &FakeGoogle, credentials_var: &str) -> GrantSpec {
    google_spec_as(google, credentials_var, GOOGLE_ADMIN)
}

fn google_spec_as(google: &FakeGoogle, credentials_var: &str, admin: &str) -> GrantSpec {
    spec(&format!(
        "provider = \"google_workspace\"\ngroup = \"{GOOGLE_GROUP}\"\ncredentials_env = \"{credentials_var}\"\nadmin_subject = \"{admin}\"\ntoken_url = \"{}\"\ndirectory_url = \"{}\"",
        google.token_url(),
        google.url()
    ))
}

async fn google_with_alice() -> FakeGoogle {
    let google = FakeGoogle::start(SERVICE_ACCOUNT, GOOGLE_ADMIN).await;
    google.add_user(ALICE);
    google.add_user(BOB);
    google.add_group(GOOGLE_GROUP);
    google.add_group("other@acme.com");
    google
}

#[tokio::test]
async fn google_grants_verifies_and_revokes_with_one_token_and_repeats_safely() {
    let bot = Bot::new();
    let google = google_with_alice().await;
    google.add_member(GOOGLE_GROUP, BOB);
    let spec = google_spec(&google, GOOGLE_CREDENTIALS_VAR);

    assert_eq!(bot.verify(&spec, ALICE).await, Presence::Absent);
    bot.run(&spec, Action::Grant, ALICE).await.unwrap();
    assert_eq!(
        google.members(GOOGLE_GROUP).get(ALICE).map(String::as_str),
        Some("MEMBER")
    );
    assert_eq!(bot.verify(&spec, ALICE).await, Presence::Present);
    // Already a member: Google's 409 duplicate is success.
    bot.run(&spec, Action::Grant, ALICE).await.unwrap();
    assert_eq!(bot.members(&spec).await, [ALICE, BOB]);

    let members = "/admin/directory/v1/groups/payroll-exports%40acme.com/members";
    let insert = google
        .calls()
        .into_iter()
        .find(|c| c.line() == format!("POST {members}"))
        .expect("a member insert");
    assert_eq!(insert.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&insert.body).unwrap(),
        json!({"email": ALICE, "role": "MEMBER"})
    );
    assert_eq!(insert.authorization.as_deref(), Some("Bearer ya29.fake-1"));
    let statuses: Vec<u16> = google
        .calls()
        .iter()
        .filter(|c| c.line() == format!("POST {members}"))
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [200, 409]);

    bot.run(&spec, Action::Revoke, ALICE).await.unwrap();
    assert!(!google.members(GOOGLE_GROUP).contains_key(ALICE));
    assert!(google.members(GOOGLE_GROUP).contains_key(BOB));
    assert_eq!(bot.verify(&spec, ALICE).await, Presence::Absent);
    // Not a member any more: Google's 404 is success.
    bot.run(&spec, Action::Revoke, ALICE).await.unwrap();
    let delete = format!("DELETE {members}/alice%40example.com");
    let statuses: Vec<u16> = google
        .calls()
        .iter()
        .filter(|c| c.line() == delete)
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [204, 404]);

    // Every call on one token.
    assert_eq!(google.token_requests(), 1);
}

#[tokio::test]
async fn google_signs_the_jwt_with_the_claims_google_requires() {
    let bot = Bot::new();
    let google = google_with_alice().await;
    let spec = google_spec(&google, GOOGLE_CREDENTIALS_VAR);
    let before = chrono::Utc::now().timestamp();
    bot.run(&spec, Action::Grant, ALICE).await.unwrap();
    let after = chrono::Utc::now().timestamp();

    // The fake accepted it, so the signature checked out against the
    // public half of the test key; here are the claims it saw.
    let claims = google.last_claims().expect("a JWT was exchanged");
    assert_eq!(claims["iss"], SERVICE_ACCOUNT);
    assert_eq!(claims["sub"], GOOGLE_ADMIN);
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/admin.directory.group.member"
    );
    assert_eq!(claims["aud"], google.token_url());
    let iat = claims["iat"].as_i64().unwrap();
    assert!((before..=after).contains(&iat), "iat {iat}");
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 3600);
    let header = google.last_jwt_header().unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], "0123456789abcdef0123456789abcdef01234567");

    let token = google
        .calls()
        .into_iter()
        .find(|c| c.path == "/token")
        .unwrap();
    assert_eq!(
        token.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert!(
        token.body.starts_with(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=ey"
        ),
        "{}",
        token.body
    );
}

#[tokio::test]
async fn google_asks_for_a_new_token_shortly_before_the_old_one_expires() {
    let bot = Bot::new();
    let google = google_with_alice().await;
    let spec = google_spec(&google, GOOGLE_CREDENTIALS_VAR);
    // Tokens that expire at once are never reused.
    google.expires_in(0);
    bot.run(&spec, Action::Grant, ALICE).await.unwrap();
    bot.verify(&spec, ALICE).await;
    assert_eq!(google.token_requests(), 2);
    // Calls at once share one token request.
    google.expires_in(3599);
    let checks = (0..6).map(|_| bot.verify(&spec, ALICE));
    let found = futures_util::future::join_all(checks).await;
    assert!(found.iter().all(|p| *p == Presence::Present));
    assert_eq!(google.token_requests(), 3);
}

#[tokio::test]
async fn google_errors_keep_googles_message_and_its_retry_after() {
    init();
    let google = google_with_alice().await;
    let spec = google_spec(&google, GOOGLE_CREDENTIALS_VAR);

    google.rate_limit_next("POST", "/members", 1, 7);
    let error = run(&spec, Action::Grant, &context(Some(ALICE)))
        .await
        .unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    let text = error.to_string();
    assert!(
        text.starts_with("Google Workspace: could not add the user to the group (runbook `billing-portal-admin`): HTTP 429: Quota exceeded"),
        "{text}"
    );

    google.fail_next("DELETE", "/members/", 1, 403);
    let error = run(&spec, Action::Revoke, &context(Some(ALICE)))
        .await
        .unwrap_err();
    assert!(!error.is_retryable());
    let text = error.to_string();
    assert!(
        text.contains("HTTP 403: Not Authorized to access this resource/api"),
        "{text}"
    );
    assert!(text.contains(GOOGLE_ADMIN), "{text}");

    google.fail_next("GET", "/members/", 1, 503);
    let error = Providers::with_builtin()
        .verify(&spec, &context(Some(ALICE)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(error.is_retryable());
    assert!(
        error
            .to_string()
            .contains("read the user's group memberships back"),
        "{error}"
    );

    // A user Google does not know.
    let error = run(&spec, Action::Grant, &context(Some("nobody@example.com")))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("HTTP 404: Resource Not Found: memberKey"),
        "{error}"
    );
    assert!(!error.is_retryable());

    // An admin_subject the service account may not act as: Google's words,
    // at the token step, with what to check.
    let wrong_admin = google_spec_as(&google, GOOGLE_CREDENTIALS_VAR, "someone@acme.com");
    let error = run(&wrong_admin, Action::Grant, &context(Some(ALICE)))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("could not get an access token"), "{text}");
    assert!(
        text.contains("HTTP 400: Invalid email or User ID [invalid_grant]"),
        "{text}"
    );
    assert!(text.contains("Domain-wide delegation"), "{text}");
    assert!(error.target_untouched());
    assert_no_secret(&error);

    let broken = google_spec(&google, BROKEN_CREDENTIALS_VAR);
    let error = run(&broken, Action::Grant, &context(Some(ALICE)))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains(BROKEN_CREDENTIALS_VAR),
        "{error}"
    );
    assert!(
        error.to_string().contains("service account's JSON key"),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert_no_secret(&error);
    assert!(google.members(GOOGLE_GROUP).is_empty());
}

// ---------------------------------------------------------------- entra_id

fn entra_spec(entra: &FakeEntra, secret_var: &str, end_sessions: bool) -> GrantSpec {
    spec(&format!(
        "provider = \"entra_id\"\ntenant_id = \"{TENANT}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_env = \"{secret_var}\"\ngroup_id = \"{ENTRA_GROUP}\"\nlogin_url = \"{url}\"\ngraph_url = \"{url}\"\nend_sessions = {end_sessions}",
        url = entra.url()
    ))
}

async fn entra_with_alice() -> (FakeEntra, String) {
    let entra = FakeEntra::start(TENANT, CLIENT_ID, ENTRA_SECRET).await;
    let alice = entra.add_user(ALICE);
    entra.add_user(BOB);
    entra.add_group(ENTRA_GROUP);
    entra.add_group("99999999-8192-4a3b-bc4d-5e6f708192a3");
    (entra, alice)
}

#[tokio::test]
async fn entra_id_grants_verifies_and_revokes_with_one_token_and_repeats_safely() {
    let bot = Bot::new();
    let (entra, alice) = entra_with_alice().await;
    entra.add_member(ENTRA_GROUP, BOB);
    let spec = entra_spec(&entra, ENTRA_SECRET_VAR, true);

    assert_eq!(bot.verify(&spec, ALICE).await, Presence::Absent);
    bot.run(&spec, Action::Grant, ALICE).await.unwrap();
    assert_eq!(entra.members(ENTRA_GROUP), [ALICE, BOB]);
    assert_eq!(bot.verify(&spec, ALICE).await, Presence::Present);
    // Graph's 400 "already exist" is success.
    bot.run(&spec, Action::Grant, ALICE).await.unwrap();
    assert_eq!(bot.members(&spec).await, [ALICE, BOB]);

    let add = format!("POST /v1.0/groups/{ENTRA_GROUP}/members/$ref");
    let adds: Vec<_> = entra
        .calls()
        .into_iter()
        .filter(|c| c.line() == add)
        .collect();
    assert_eq!(
        adds.iter().map(|c| c.status).collect::<Vec<_>>(),
        [204, 400]
    );
    assert_eq!(adds[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&adds[0].body).unwrap(),
        json!({"@odata.id": format!("{}/v1.0/directoryObjects/{alice}", entra.url())})
    );
    assert!(entra
        .calls()
        .iter()
        .any(|c| c.line() == "GET /v1.0/users/alice%40example.com"));
    let token = entra
        .calls()
        .into_iter()
        .find(|c| c.path.ends_with("/oauth2/v2.0/token"))
        .unwrap();
    assert_eq!(token.path, format!("/{TENANT}/oauth2/v2.0/token"));
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&token.body).unwrap();
    assert_eq!(
        form,
        [
            ("client_id".to_string(), CLIENT_ID.to_string()),
            ("client_secret".to_string(), ENTRA_SECRET.to_string()),
            (
                "scope".to_string(),
                "https://graph.microsoft.com/.default".to_string()
            ),
            ("grant_type".to_string(), "client_credentials".to_string()),
        ]
    );

    bot.run(&spec, Action::Revoke, ALICE).await.unwrap();
    assert_eq!(entra.members(ENTRA_GROUP), [BOB]);
    assert_eq!(bot.verify(&spec, ALICE).await, Presence::Absent);
    assert_eq!(entra.sessions_revoked(), [ALICE]);
    // Graph's 404 on removing a non-member is success.
    bot.run(&spec, Action::Revoke, ALICE).await.unwrap();
    let remove = format!("DELETE /v1.0/groups/{ENTRA_GROUP}/members/{alice}/$ref");
    let statuses: Vec<u16> = entra
        .calls()
        .iter()
        .filter(|c| c.line() == remove)
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [204, 404]);
    for call in entra
        .calls()
        .iter()
        .filter(|c| c.path.starts_with("/v1.0/"))
    {
        assert_eq!(
            call.authorization.as_deref(),
            Some("Bearer eyJ0eXAiOiJKV1QifQ.fake-1.sig"),
            "{}",
            call.line()
        );
    }
    assert_eq!(entra.token_requests(), 1);
}

/// Graph refuses a cached token (revoked, or expired early): the provider
/// asks for a new one and makes the call again, once.
#[tokio::test]
async fn entra_id_replaces_a_refused_token_and_calls_again() {
    let bot = Bot::new();
    let (entra, _alice) = entra_with_alice().await;
    let spec = entra_spec(&entra, ENTRA_SECRET_VAR, false);
    bot.run(&spec, Action::Grant, ALICE).await.unwrap();
    assert_eq!(entra.token_requests(), 1);

    entra.fail_next("GET", "/v1.0/users/", 1, 401);
    assert_eq!(bot.verify(&spec, ALICE).await, Presence::Present);
    assert_eq!(entra.token_requests(), 2, "a new token after the 401");
    let lookups: Vec<(u16, Option<String>)> = entra
        .calls()
        .into_iter()
        .filter(|c| c.line() == "GET /v1.0/users/alice%40example.com")
        .map(|c| (c.status, c.authorization))
        .collect();
    assert_eq!(
        lookups[lookups.len() - 2..],
        [
            (
                401,
                Some("Bearer eyJ0eXAiOiJKV1QifQ.fake-1.sig".to_string())
            ),
            (
                200,
                Some("Bearer eyJ0eXAiOiJKV1QifQ.fake-2.sig".to_string())
            ),
        ]
    );

    // Refused twice in a row: reported, not retried for ever.
    entra.fail_next("GET", "/v1.0/users/", 2, 401);
    let error = bot.run(&spec, Action::Revoke, ALICE).await.unwrap_err();
    assert!(error.to_string().contains("401"), "{error}");
    assert_eq!(entra.token_requests(), 3, "one new token, not a loop");
    assert_eq!(entra.members(ENTRA_GROUP), [ALICE]);
}

#[tokio::test]
async fn entra_id_errors_keep_graphs_message_and_its_retry_after() {
    init();
    let (entra, _) = entra_with_alice().await;
    let spec = entra_spec(&entra, ENTRA_SECRET_VAR, false);

    entra.rate_limit_next("DELETE", "/members/", 1, 9);
    let error = run(&spec, Action::Revoke, &context(Some(ALICE)))
        .await
        .unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(9)));
    assert!(
        error.to_string().contains(
            "Entra ID: could not remove the user from the group (runbook `billing-portal-admin`): HTTP 429: Too many requests."
        ),
        "{error}"
    );

    entra.fail_next("POST", "/members/$ref", 1, 403);
    let error = run(&spec, Action::Grant, &context(Some(ALICE)))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("HTTP 403: Insufficient privileges to complete the operation. [Authorization_RequestDenied]"),
        "{text}"
    );
    assert!(text.contains("GroupMember.ReadWrite.All"), "{text}");
    assert!(!error.is_retryable());

    entra.fail_next("GET", "/memberOf", 1, 500);
    let error = Providers::with_builtin()
        .verify(&spec, &context(Some(ALICE)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(error.is_retryable());

    let error = run(&spec, Action::Grant, &context(Some("nobody@example.com")))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("Entra ID has no user `nobody@example.com`"),
        "{error}"
    );
    assert!(error.target_untouched());

    let wrong = entra_spec(&entra, WRONG_ENTRA_SECRET_VAR, false);
    let error = run(&wrong, Action::Grant, &context(Some(ALICE)))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("could not get an access token"), "{text}");
    assert!(
        text.contains("HTTP 401: AADSTS7000215: Invalid client secret provided."),
        "{text}"
    );
    assert!(!text.contains("Trace ID"), "one line: {text}");
    assert!(text.contains(WRONG_ENTRA_SECRET_VAR), "{text}");
    assert!(!text.contains("not-the-secret"), "{text}");
    assert!(error.target_untouched());
    assert_no_secret(&error);
    assert_eq!(entra.members(ENTRA_GROUP), Vec::<String>::new());
}

#[tokio::test]
async fn a_revoke_the_directory_ignores_is_seen_by_verify() {
    let bot = Bot::new();
    let (okta, _) = okta_with_alice().await;
    let okta_spec = okta_spec(&okta, OKTA_TOKEN_VAR, false);
    let google = google_with_alice().await;
    let google_spec = google_spec(&google, GOOGLE_CREDENTIALS_VAR);
    let (entra, _) = entra_with_alice().await;
    let entra_spec = entra_spec(&entra, ENTRA_SECRET_VAR, false);
    okta.ignore_next_delete();
    google.ignore_next_delete();
    entra.ignore_next_delete();
    for spec in [&okta_spec, &google_spec, &entra_spec] {
        bot.run(spec, Action::Grant, ALICE).await.unwrap();
        bot.run(spec, Action::Revoke, ALICE).await.unwrap();
        assert_eq!(
            bot.verify(spec, ALICE).await,
            Presence::Present,
            "{}: the member stayed",
            spec.provider_name()
        );
        bot.run(spec, Action::Revoke, ALICE).await.unwrap();
        assert_eq!(bot.verify(spec, ALICE).await, Presence::Absent);
    }
}
