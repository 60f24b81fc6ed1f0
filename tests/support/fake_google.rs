//! A fake Google: its OAuth token endpoint for service accounts and the
//! group-members part of the Admin SDK Directory API, answering the way
//! Google does. The token endpoint takes only
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` with a JWT
//! signed RS256 by the test service account's key, checked against the
//! public half (`google_test_key.pub.pem`: a key made with openssl for these
//! tests only, never used anywhere else), with the claims Google requires;
//! it counts token requests and keeps the last claims. The Directory API
//! insists on a token it issued (`Authorization: Bearer …`), keeps group
//! memberships, answers errors in Google's shape (`{"error": {"code",
//! "message", "errors": [{"reason"}]}}`: 409 duplicate, 404 notFound, 429
//! rateLimitExceeded with `Retry-After`, 500 backendError), and records
//! every call (see `fake_directory`). Knobs: seed users, groups and
//! members; fail the next N calls; answer the next DELETE with 204 but keep
//! the member; how long tokens live.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Value};

use super::fake_directory::{self, Call, Fault, Recorder};

/// The test service account's private key (PKCS#8 PEM). A test key: it
/// signs nothing outside these tests.
pub const TEST_PRIVATE_KEY: &str = include_str!("google_test_key.pem");
/// Its public half, which the fake token endpoint verifies JWTs with.
pub const TEST_PUBLIC_KEY: &str = include_str!("google_test_key.pub.pem");
pub const SCOPE: &str = "https://www.googleapis.com/auth/admin.directory.group.member";

/// The contents of a service-account JSON key file for `client_email`,
/// with the test key, as Google Cloud hands them out.
pub fn service_account_json(client_email: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "accessbot-test",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": TEST_PRIVATE_KEY,
        "client_email": client_email,
        "client_id": "123456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

/// Handle on a running fake Google; clones share it.
#[derive(Clone)]
pub struct FakeGoogle {
    url: String,
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    /// The service account allowed to sign in, and the admin it may act as.
    client_email: String,
    admin: String,
    recorder: Arc<Recorder>,
    state: Mutex<Directory>,
}

#[derive(Default)]
struct Directory {
    users: BTreeSet<String>,
    /// By group email: member email to role.
    groups: BTreeMap<String, BTreeMap<String, String>>,
    tokens: BTreeSet<String>,
    token_requests: usize,
    expires_in: u64,
    last_claims: Option<Value>,
    last_jwt_header: Option<Value>,
    ignore_deletes: usize,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, Directory> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn google_error(status: StatusCode, message: &str, reason: &str) -> Response {
    (
        status,
        Json(json!({
            "error": {
                "code": status.as_u16(),
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}]
            }
        })),
    )
        .into_response()
}

fn fault_answer(fault: &Fault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap();
    let mut response = match fault.status {
        429 => google_error(
            status,
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user'",
            "rateLimitExceeded",
        ),
        403 => google_error(
            status,
            "Not Authorized to access this resource/api",
            "forbidden",
        ),
        503 => google_error(
            status,
            "The service is currently unavailable.",
            "backendError",
        ),
        s if s >= 500 => google_error(status, "Backend Error", "backendError"),
        _ => google_error(status, "Invalid Input", "invalid"),
    };
    if let Some(secs) = fault.wait_secs {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}

impl FakeGoogle {
    /// A fake Google where the service account `client_email` (signing
    /// with the test key) may act as `admin`.
    pub async fn start(client_email: &str, admin: &str) -> FakeGoogle {
        let recorder = Arc::new(Recorder::default());
        // The address is known only once bound; the token URL (the JWT's
        // `aud`) is built from it below.
        let slot: Arc<Mutex<Option<Arc<Inner>>>> = Arc::new(Mutex::new(None));
        let router = Router::new()
            .route("/token", post(token))
            .route(
                "/admin/directory/v1/groups/{group}/members",
                get(list).post(insert),
            )
            .route(
                "/admin/directory/v1/groups/{group}/members/{member}",
                get(get_member).delete(remove),
            )
            .with_state(Arc::clone(&slot));
        let addr = fake_directory::serve(router, Arc::clone(&recorder), fault_answer).await;
        let url = format!("http://{addr}");
        let inner = Arc::new(Inner {
            url: url.clone(),
            client_email: client_email.to_string(),
            admin: admin.to_string(),
            recorder,
            state: Mutex::new(Directory {
                expires_in: 3599,
                ..Directory::default()
            }),
        });
        *slot.lock().unwrap() = Some(Arc::clone(&inner));
        FakeGoogle { url, inner }
    }

    /// For `directory_url`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// For `token_url`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url)
    }

    pub fn add_user(&self, email: &str) {
        self.inner.state().users.insert(email.to_lowercase());
    }

    pub fn add_group(&self, group: &str) {
        self.inner
            .state()
            .groups
            .entry(group.to_lowercase())
            .or_default();
    }

    pub fn add_member(&self, group: &str, email: &str) {
        self.inner
            .state()
            .groups
            .get_mut(&group.to_lowercase())
            .expect("add the group first")
            .insert(email.to_lowercase(), "MEMBER".into());
    }

    /// The group's members as `email` → role.
    pub fn members(&self, group: &str) -> BTreeMap<String, String> {
        self.inner
            .state()
            .groups
            .get(&group.to_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.recorder.calls()
    }

    pub fn token_requests(&self) -> usize {
        self.inner.state().token_requests
    }

    /// The claims of the last JWT the token endpoint accepted.
    pub fn last_claims(&self) -> Option<Value> {
        self.inner.state().last_claims.clone()
    }

    /// The header of the last JWT the token endpoint accepted.
    pub fn last_jwt_header(&self) -> Option<Value> {
        self.inner.state().last_jwt_header.clone()
    }

    /// How long the tokens it issues from now on live, in seconds.
    pub fn expires_in(&self, secs: u64) {
        self.inner.state().expires_in = secs;
    }

    /// The next `n` calls with `method` (empty: any) whose path contains
    /// `path_contains` answer `status` in Google's error shape.
    pub fn fail_next(&self, method: &str, path_contains: &str, n: usize, status: u16) {
        self.inner
            .recorder
            .add_fault(method, path_contains, n, status, None);
    }

    /// The next `n` matching calls answer 429 with `Retry-After: secs`.
    pub fn rate_limit_next(&self, method: &str, path_contains: &str, n: usize, secs: u64) {
        self.inner
            .recorder
            .add_fault(method, path_contains, n, 429, Some(secs));
    }

    pub fn ignore_next_delete(&self) {
        self.inner.state().ignore_deletes += 1;
    }
}

/// The router's state: the fake, set once the address is known.
type Shared = Arc<Mutex<Option<Arc<Inner>>>>;

fn inner_of(slot: &Shared) -> Arc<Inner> {
    Arc::clone(slot.lock().unwrap().as_ref().expect("started"))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(
    State(slot): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let inner = inner_of(&slot);
    let form_encoded = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_encoded {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Bad Request");
    }
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type: ",
        );
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: assertion",
        );
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY.as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[format!("{}/token", inner.url)]);
    validation.set_issuer(&[inner.client_email.as_str()]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
    validation.leeway = 0;
    let decoded = match jsonwebtoken::decode::<Value>(assertion, &key, &validation) {
        Ok(decoded) => decoded,
        Err(e) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                &format!("Invalid JWT Signature. ({e})"),
            )
        }
    };
    let claims = decoded.claims;
    let now = chrono::Utc::now().timestamp();
    let iat = claims["iat"].as_i64().unwrap_or_default();
    let exp = claims["exp"].as_i64().unwrap_or_default();
    if (iat - now).abs() > 300 || exp <= iat || exp - iat > 3600 {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    if claims["scope"].as_str() != Some(SCOPE) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
        );
    }
    if claims["sub"].as_str() != Some(inner.admin.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid email or User ID",
        );
    }
    let mut state = inner.state();
    state.token_requests += 1;
    let token = format!("ya29.fake-{}", state.token_requests);
    state.tokens.insert(token.clone());
    state.last_claims = Some(claims);
    state.last_jwt_header = serde_json::to_value(&decoded.header).ok();
    Json(json!({"access_token": token, "expires_in": state.expires_in, "token_type": "Bearer"}))
        .into_response()
}

fn unauthorized(inner: &Inner, headers: &HeaderMap) -> Option<Response> {
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    let ok = given
        .and_then(|g| g.strip_prefix("Bearer "))
        .is_some_and(|t| inner.state().tokens.contains(t));
    (!ok).then(|| {
        let mut response = google_error(
            StatusCode::UNAUTHORIZED,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            "authError",
        );
        response
            .headers_mut()
            .insert("www-authenticate", "Bearer realm=\"https://accounts.google.com/\"".parse().unwrap());
        response
    })
}

fn member_json(email: &str, role: &str) -> Value {
    json!({
        "kind": "admin#directory#member",
        "etag": "\"fake-etag\"",
        "id": format!("1{:020}", email.len()),
        "email": email,
        "role": role,
        "type": "USER",
        "status": "ACTIVE"
    })
}

fn group_not_found() -> Response {
    google_error(
        StatusCode::NOT_FOUND,
        "Resource Not Found: groupKey",
        "notFound",
    )
}

fn member_not_found() -> Response {
    google_error(
        StatusCode::NOT_FOUND,
        "Resource Not Found: memberKey",
        "notFound",
    )
}

async fn insert(
    State(slot): State<Shared>,
    headers: HeaderMap,
    Path(group): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let inner = inner_of(&slot);
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    let json_body = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let Some(body) = json_body
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten()
    else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "Invalid JSON payload received.",
            "parseError",
        );
    };
    let Some(email) = body["email"].as_str().map(str::to_lowercase) else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "Missing required field: memberKey",
            "required",
        );
    };
    let role = body["role"].as_str().unwrap_or("MEMBER").to_string();
    if !["MEMBER", "MANAGER", "OWNER"].contains(&role.as_str()) {
        return google_error(StatusCode::BAD_REQUEST, "Invalid Input: role", "invalid");
    }
    let mut state = inner.state();
    if !state.users.contains(&email) {
        return member_not_found();
    }
    let Some(members) = state.groups.get_mut(&group.to_lowercase()) else {
        return group_not_found();
    };
    if members.contains_key(&email) {
        return google_error(StatusCode::CONFLICT, "Member already exists.", "duplicate");
    }
    members.insert(email.clone(), role.clone());
    Json(member_json(&email, &role)).into_response()
}

async fn get_member(
    State(slot): State<Shared>,
    headers: HeaderMap,
    Path((group, member)): Path<(String, String)>,
) -> Response {
    let inner = inner_of(&slot);
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    let state = inner.state();
    let Some(members) = state.groups.get(&group.to_lowercase()) else {
        return group_not_found();
    };
    match members.get(&member.to_lowercase()) {
        Some(role) => Json(member_json(&member.to_lowercase(), role)).into_response(),
        None => member_not_found(),
    }
}

async fn remove(
    State(slot): State<Shared>,
    headers: HeaderMap,
    Path((group, member)): Path<(String, String)>,
) -> Response {
    let inner = inner_of(&slot);
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    let mut state = inner.state();
    let ignore = state.ignore_deletes > 0;
    let Some(members) = state.groups.get_mut(&group.to_lowercase()) else {
        return group_not_found();
    };
    if !members.contains_key(&member.to_lowercase()) {
        return member_not_found();
    }
    if ignore {
        state.ignore_deletes -= 1;
    } else {
        members.remove(&member.to_lowercase());
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn list(
    State(slot): State<Shared>,
    headers: HeaderMap,
    Path(group): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let inner = inner_of(&slot);
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    let state = inner.state();
    let Some(members) = state.groups.get(&group.to_lowercase()) else {
        return group_not_found();
    };
    let max = query
        .get("maxResults")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(200);
    let after = query.get("pageToken").cloned().unwrap_or_default();
    let rest: Vec<(&String, &String)> = members.iter().filter(|(e, _)| **e > after).collect();
    let mut page = json!({"kind": "admin#directory#members", "etag": "\"fake-etag\""});
    if !rest.is_empty() {
        page["members"] = rest
            .iter()
            .take(max)
            .map(|(email, role)| member_json(email, role))
            .collect();
    }
    if rest.len() > max {
        page["nextPageToken"] = json!(rest[max - 1].0);
    }
    Json(page).into_response()
}
