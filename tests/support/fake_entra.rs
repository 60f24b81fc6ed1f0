//! A fake Microsoft Entra ID: the v2.0 token endpoint (client credentials
//! only) and the part of Microsoft Graph the `entra_id` provider uses,
//! answering the way they do. The token endpoint checks the tenant, client
//! ID, client secret, scope and grant type and answers AADSTS errors in
//! OAuth's shape; it counts token requests. Graph insists on a token it
//! issued, keeps users and group memberships, takes member references as
//! `{"@odata.id": "<graph>/v1.0/directoryObjects/<id>"}`, answers errors in
//! Graph's shape (`{"error": {"code", "message", "innerError"}}`: 400
//! Request_BadRequest "already exist", 404 Request_ResourceNotFound, 429
//! TooManyRequests with `Retry-After`, 500), and records every call (see
//! `fake_directory`). Knobs: seed users, groups and members; fail the next
//! N calls; answer the next DELETE with 204 but keep the member; see whose
//! sign-in sessions were revoked.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Value};

use super::fake_directory::{self, Call, Fault, Recorder};

pub const SCOPE: &str = "https://graph.microsoft.com/.default";

/// Handle on a running fake Entra ID; clones share it.
#[derive(Clone)]
pub struct FakeEntra {
    url: String,
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    tenant_id: String,
    client_id: String,
    client_secret: String,
    recorder: Arc<Recorder>,
    state: Mutex<Directory>,
}

#[derive(Default)]
struct Directory {
    /// By object ID: the user principal name (also their mail).
    users: BTreeMap<String, String>,
    /// By group object ID: member object IDs.
    groups: BTreeMap<String, BTreeSet<String>>,
    tokens: BTreeSet<String>,
    token_requests: usize,
    ignore_deletes: usize,
    sessions_revoked: Vec<String>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, Directory> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": "2025-01-01T00:00:00",
                    "request-id": "00000000-0000-0000-0000-000000000001",
                    "client-request-id": "00000000-0000-0000-0000-000000000002"
                }
            }
        })),
    )
        .into_response()
}

fn fault_answer(fault: &Fault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap();
    let mut response = match fault.status {
        429 => graph_error(
            status,
            "TooManyRequests",
            "Too many requests. Please retry after the interval in the Retry-After header.",
        ),
        403 => graph_error(
            status,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ),
        503 => graph_error(status, "ServiceUnavailable", "Service is unavailable."),
        s if s >= 500 => graph_error(
            status,
            "InternalServerError",
            "An internal server error occurred.",
        ),
        _ => graph_error(status, "Request_BadRequest", "Invalid request."),
    };
    if let Some(secs) = fault.wait_secs {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}

/// The router's state: the fake, set once the address is known.
type Shared = Arc<Mutex<Option<Arc<Inner>>>>;

fn inner_of(slot: &Shared) -> Arc<Inner> {
    Arc::clone(slot.lock().unwrap().as_ref().expect("started"))
}

impl FakeEntra {
    /// A fake tenant `tenant_id` where the app `client_id` signs in with
    /// `client_secret`.
    pub async fn start(tenant_id: &str, client_id: &str, client_secret: &str) -> FakeEntra {
        let recorder = Arc::new(Recorder::default());
        let slot: Shared = Arc::new(Mutex::new(None));
        let router = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/v1.0/users/{user}", get(get_user))
            .route("/v1.0/users/{user}/memberOf", get(member_of))
            .route(
                "/v1.0/users/{user}/revokeSignInSessions",
                post(revoke_sessions),
            )
            .route("/v1.0/groups/{group}/members", get(list_members))
            .route("/v1.0/groups/{group}/members/$ref", post(add_member))
            .route(
                "/v1.0/groups/{group}/members/{user}/$ref",
                delete(remove_member),
            )
            .with_state(Arc::clone(&slot));
        let addr = fake_directory::serve(router, Arc::clone(&recorder), fault_answer).await;
        let url = format!("http://{addr}");
        let inner = Arc::new(Inner {
            url: url.clone(),
            tenant_id: tenant_id.to_string(),
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            recorder,
            state: Mutex::new(Directory::default()),
        });
        *slot.lock().unwrap() = Some(Arc::clone(&inner));
        FakeEntra { url, inner }
    }

    /// For both `login_url` and `graph_url`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Adds a user whose UPN and mail are `email`; returns their object ID.
    pub fn add_user(&self, email: &str) -> String {
        let mut state = self.inner.state();
        let id = format!("11111111-2222-4333-8444-{:012}", state.users.len() + 1);
        state.users.insert(id.clone(), email.to_string());
        id
    }

    pub fn add_group(&self, group_id: &str) {
        self.inner
            .state()
            .groups
            .entry(group_id.to_string())
            .or_default();
    }

    pub fn add_member(&self, group_id: &str, email: &str) {
        let mut state = self.inner.state();
        let id = find_user(&state, email).expect("add the user first").0;
        state
            .groups
            .get_mut(group_id)
            .expect("add the group first")
            .insert(id);
    }

    /// The emails of the group's members, sorted.
    pub fn members(&self, group_id: &str) -> Vec<String> {
        let state = self.inner.state();
        let mut emails: Vec<String> = state
            .groups
            .get(group_id)
            .into_iter()
            .flatten()
            .filter_map(|id| state.users.get(id).cloned())
            .collect();
        emails.sort();
        emails
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.recorder.calls()
    }

    pub fn token_requests(&self) -> usize {
        self.inner.state().token_requests
    }

    /// The next `n` calls with `method` (empty: any) whose path contains
    /// `path_contains` answer `status` in Graph's error shape.
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

    /// Emails whose sign-in sessions were revoked, in order.
    pub fn sessions_revoked(&self) -> Vec<String> {
        self.inner.state().sessions_revoked.clone()
    }
}

fn find_user(state: &Directory, key: &str) -> Option<(String, String)> {
    state
        .users
        .iter()
        .find(|(id, upn)| id.eq_ignore_ascii_case(key) || upn.eq_ignore_ascii_case(key))
        .map(|(id, upn)| (id.clone(), upn.clone()))
}

fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    (
        status,
        Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: 00000000-0000-0000-0000-000000000003\r\nCorrelation ID: 00000000-0000-0000-0000-000000000004\r\nTimestamp: 2025-01-01 00:00:00Z"),
            "error_codes": [code],
            "timestamp": "2025-01-01 00:00:00Z",
            "trace_id": "00000000-0000-0000-0000-000000000003",
            "correlation_id": "00000000-0000-0000-0000-000000000004"
        })),
    )
        .into_response()
}

async fn token(
    State(slot): State<Shared>,
    Path(tenant): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let inner = inner_of(&slot);
    if tenant != inner.tenant_id {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if form.get("client_id") != Some(&inner.client_id) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            "Application was not found in the directory.",
        );
    }
    if form.get("client_secret") != Some(&inner.client_secret) {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        );
    }
    if form.get("scope").map(String::as_str) != Some(SCOPE) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid.",
        );
    }
    let mut state = inner.state();
    state.token_requests += 1;
    let token = format!("eyJ0eXAiOiJKV1QifQ.fake-{}.sig", state.token_requests);
    state.tokens.insert(token.clone());
    Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token})).into_response()
}

fn unauthorized(inner: &Inner, headers: &HeaderMap) -> Option<Response> {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|g| g.strip_prefix("Bearer "))
        .is_some_and(|t| inner.state().tokens.contains(t));
    (!ok).then(|| {
        graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
        )
    })
}

fn not_found(what: &str) -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!("Resource '{what}' does not exist or one of its queried reference-property objects are not present."),
    )
}

fn user_json(id: &str, upn: &str) -> Value {
    json!({"id": id, "userPrincipalName": upn, "mail": upn, "displayName": upn})
}

async fn get_user(
    State(slot): State<Shared>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    let inner = inner_of(&slot);
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    let found = find_user(&inner.state(), &user);
    match found {
        Some((id, upn)) => Json(user_json(&id, &upn)).into_response(),
        None => not_found(&user),
    }
}

async fn member_of(
    State(slot): State<Shared>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    let inner = inner_of(&slot);
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    let state = inner.state();
    let Some((id, _)) = find_user(&state, &user) else {
        return not_found(&user);
    };
    let value: Vec<Value> = state
        .groups
        .iter()
        .filter(|(_, members)| members.contains(&id))
        .map(|(gid, _)| json!({"@odata.type": "#microsoft.graph.group", "id": gid}))
        .collect();
    Json(json!({
        "@odata.context": format!("{}/v1.0/$metadata#directoryObjects(id)", inner.url),
        "value": value
    }))
    .into_response()
}

async fn list_members(
    State(slot): State<Shared>,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> Response {
    let inner = inner_of(&slot);
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    let state = inner.state();
    let Some(members) = state.groups.get(&group) else {
        return not_found(&group);
    };
    let value: Vec<Value> = members
        .iter()
        .map(|id| {
            let mut user = user_json(id, &state.users[id]);
            user["@odata.type"] = json!("#microsoft.graph.user");
            user
        })
        .collect();
    Json(json!({
        "@odata.context": format!("{}/v1.0/$metadata#directoryObjects", inner.url),
        "value": value
    }))
    .into_response()
}

async fn add_member(
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
    let body: Option<Value> = json_body
        .then(|| serde_json::from_slice(&body).ok())
        .flatten();
    let prefix = format!("{}/v1.0/directoryObjects/", inner.url);
    let Some(user) = body
        .as_ref()
        .and_then(|b| b["@odata.id"].as_str())
        .and_then(|r| r.strip_prefix(&prefix))
        .map(str::to_string)
    else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "Invalid object identifier '' .",
        );
    };
    let mut state = inner.state();
    if !state.users.contains_key(&user) {
        return not_found(&user);
    }
    let Some(members) = state.groups.get_mut(&group) else {
        return not_found(&group);
    };
    if !members.insert(user) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "One or more added object references already exist for the following modified properties: 'members'.",
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn remove_member(
    State(slot): State<Shared>,
    headers: HeaderMap,
    Path((group, user)): Path<(String, String)>,
) -> Response {
    let inner = inner_of(&slot);
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    let mut state = inner.state();
    let ignore = state.ignore_deletes > 0;
    let Some(members) = state.groups.get_mut(&group) else {
        return not_found(&group);
    };
    if !members.contains(&user) {
        return not_found(&user);
    }
    if ignore {
        state.ignore_deletes -= 1;
    } else {
        members.remove(&user);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn revoke_sessions(
    State(slot): State<Shared>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    let inner = inner_of(&slot);
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    let mut state = inner.state();
    let Some((_, upn)) = find_user(&state, &user) else {
        return not_found(&user);
    };
    state.sessions_revoked.push(upn);
    Json(json!({
        "@odata.context": format!("{}/v1.0/$metadata#Edm.Boolean", inner.url),
        "value": true
    }))
    .into_response()
}
