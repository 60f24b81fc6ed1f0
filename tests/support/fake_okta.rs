//! A fake Okta org: the part of Okta's Management API the `okta` provider
//! uses, answering the way Okta does. It keeps users and group memberships,
//! insists on `Authorization: SSWS <token>`, answers errors in Okta's shape
//! (`errorCode`, `errorSummary`, …: E0000007 not found, E0000011 invalid
//! token, E0000047 rate limit with `X-Rate-Limit-*` headers, E0000009
//! server error), pages group members with a `Link: <…>; rel="next"` header,
//! and records every call (see `fake_directory`). Knobs: seed users, groups
//! and members; fail the next N calls; answer the next DELETE of a
//! membership with 204 but keep the member (a revoke that "succeeds"
//! without taking); see whose sessions were ended.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::fake_directory::{self, Call, Fault, Recorder};

/// Handle on a running fake Okta; clones share it.
#[derive(Clone)]
pub struct FakeOkta {
    url: String,
    inner: Arc<Inner>,
}

struct Inner {
    token: String,
    recorder: Arc<Recorder>,
    state: Mutex<Directory>,
}

#[derive(Default)]
struct Directory {
    /// By user ID: the login.
    users: BTreeMap<String, String>,
    /// By group ID: the member user IDs.
    groups: BTreeMap<String, BTreeSet<String>>,
    ignore_deletes: usize,
    /// Logins whose sessions were ended, in order.
    sessions_ended: Vec<String>,
    /// Members per page when listing a group's users (Okta's `limit`).
    page_size: Option<usize>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, Directory> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn okta_error(status: StatusCode, code: &str, summary: &str) -> Response {
    (
        status,
        Json(json!({
            "errorCode": code,
            "errorSummary": summary,
            "errorLink": code,
            "errorId": "oaeFakeErrorId",
            "errorCauses": []
        })),
    )
        .into_response()
}

fn not_found(what: &str, kind: &str) -> Response {
    okta_error(
        StatusCode::NOT_FOUND,
        "E0000007",
        &format!("Not found: Resource not found: {what} ({kind})"),
    )
}

/// A fault as Okta says it: rate limits carry `X-Rate-Limit-*`, not
/// `Retry-After`.
fn fault_answer(fault: &Fault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap();
    match fault.status {
        429 => {
            let reset = chrono::Utc::now().timestamp() + fault.wait_secs.unwrap_or(1) as i64;
            let mut response = okta_error(
                status,
                "E0000047",
                "API call exceeded rate limit due to too many requests.",
            );
            let headers = response.headers_mut();
            headers.insert("x-rate-limit-limit", "600".parse().unwrap());
            headers.insert("x-rate-limit-remaining", "0".parse().unwrap());
            headers.insert("x-rate-limit-reset", reset.to_string().parse().unwrap());
            response
        }
        403 => okta_error(
            status,
            "E0000006",
            "You do not have permission to perform the requested action",
        ),
        s if s >= 500 => okta_error(status, "E0000009", "Internal Server Error"),
        _ => okta_error(status, "E0000001", "Api validation failed"),
    }
}

impl FakeOkta {
    /// A fake org accepting the API token `token`.
    pub async fn start(token: &str) -> FakeOkta {
        let inner = Arc::new(Inner {
            token: token.to_string(),
            recorder: Arc::new(Recorder::default()),
            state: Mutex::new(Directory::default()),
        });
        let router = Router::new()
            .route("/api/v1/users/{user}", get(get_user))
            .route("/api/v1/users/{user}/groups", get(user_groups))
            .route("/api/v1/users/{user}/sessions", delete(end_sessions))
            .route("/api/v1/groups/{group}/users", get(group_users))
            .route(
                "/api/v1/groups/{group}/users/{user}",
                put(add_member).delete(remove_member),
            )
            .with_state(Arc::clone(&inner));
        let addr = fake_directory::serve(router, Arc::clone(&inner.recorder), fault_answer).await;
        FakeOkta {
            url: format!("http://{addr}"),
            inner,
        }
    }

    /// The org URL, for a runbook's `org_url`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Adds a user with `login`; returns their ID (`00u…`).
    pub fn add_user(&self, login: &str) -> String {
        let mut state = self.inner.state();
        let id = format!("00u{:017}", state.users.len() + 1);
        state.users.insert(id.clone(), login.to_string());
        id
    }

    pub fn add_group(&self, group_id: &str) {
        self.inner
            .state()
            .groups
            .entry(group_id.to_string())
            .or_default();
    }

    /// Puts the user with `login` in the group (both must exist).
    pub fn add_member(&self, group_id: &str, login: &str) {
        let mut state = self.inner.state();
        let id = state
            .users
            .iter()
            .find(|(_, l)| l.as_str() == login)
            .map(|(id, _)| id.clone())
            .expect("add the user first");
        state
            .groups
            .get_mut(group_id)
            .expect("add the group first")
            .insert(id);
    }

    /// The logins of the group's members, sorted.
    pub fn members(&self, group_id: &str) -> Vec<String> {
        let state = self.inner.state();
        let mut logins: Vec<String> = state
            .groups
            .get(group_id)
            .into_iter()
            .flatten()
            .filter_map(|id| state.users.get(id).cloned())
            .collect();
        logins.sort();
        logins
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.recorder.calls()
    }

    /// The next `n` calls with `method` (empty: any) whose path contains
    /// `path_contains` answer `status` in Okta's error shape.
    pub fn fail_next(&self, method: &str, path_contains: &str, n: usize, status: u16) {
        self.inner
            .recorder
            .add_fault(method, path_contains, n, status, None);
    }

    /// The next `n` matching calls answer 429 with `X-Rate-Limit-Reset`
    /// `secs` seconds ahead, as Okta does.
    pub fn rate_limit_next(&self, method: &str, path_contains: &str, n: usize, secs: u64) {
        self.inner
            .recorder
            .add_fault(method, path_contains, n, 429, Some(secs));
    }

    /// The next DELETE of a membership answers 204 and changes nothing.
    pub fn ignore_next_delete(&self) {
        self.inner.state().ignore_deletes += 1;
    }

    /// Logins whose sessions were ended, in order.
    pub fn sessions_ended(&self) -> Vec<String> {
        self.inner.state().sessions_ended.clone()
    }

    /// Lists a group's users `n` per page.
    pub fn page_size(&self, n: usize) {
        self.inner.state().page_size = Some(n);
    }
}

/// Okta's answer to a missing or wrong token, if it is either.
fn unauthorized(inner: &Inner, headers: &HeaderMap) -> Option<Response> {
    let expected = format!("SSWS {}", inner.token);
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    (given != Some(expected.as_str())).then(|| {
        okta_error(
            StatusCode::UNAUTHORIZED,
            "E0000011",
            "Invalid token provided",
        )
    })
}

fn user_json(id: &str, login: &str) -> Value {
    json!({
        "id": id,
        "status": "ACTIVE",
        "created": "2024-01-02T03:04:05.000Z",
        "profile": {"login": login, "email": login, "firstName": "Test", "lastName": "User"},
        "_links": {}
    })
}

/// A user by ID or login (Okta accepts either; logins are case-insensitive).
fn find_user(state: &Directory, key: &str) -> Option<(String, String)> {
    state
        .users
        .iter()
        .find(|(id, login)| *id == key || login.eq_ignore_ascii_case(key))
        .map(|(id, login)| (id.clone(), login.clone()))
}

async fn get_user(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    match find_user(&inner.state(), &user) {
        Some((id, login)) => Json(user_json(&id, &login)).into_response(),
        None => not_found(&user, "User"),
    }
}

async fn user_groups(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    let state = inner.state();
    let Some((id, _)) = find_user(&state, &user) else {
        return not_found(&user, "User");
    };
    let groups: Vec<Value> = state
        .groups
        .iter()
        .filter(|(_, members)| members.contains(&id))
        .map(|(gid, _)| json!({"id": gid, "type": "OKTA_GROUP", "profile": {"name": gid, "description": null}}))
        .collect();
    Json(groups).into_response()
}

async fn group_users(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(group): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    let state = inner.state();
    let Some(members) = state.groups.get(&group) else {
        return not_found(&group, "UserGroup");
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(1000)
        .min(state.page_size.unwrap_or(usize::MAX));
    let after = query.get("after").cloned().unwrap_or_default();
    let rest: Vec<&String> = members.iter().filter(|id| **id > after).collect();
    let page: Vec<Value> = rest
        .iter()
        .take(limit)
        .map(|id| user_json(id, &state.users[*id]))
        .collect();
    let mut response = Json(page).into_response();
    if rest.len() > limit {
        let last = rest[limit - 1];
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let link = format!(
            "<http://{host}/api/v1/groups/{group}/users?after={last}&limit={limit}>; rel=\"next\""
        );
        response.headers_mut().insert("link", link.parse().unwrap());
    }
    response
}

async fn add_member(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path((group, user)): Path<(String, String)>,
) -> Response {
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    let mut state = inner.state();
    if !state.users.contains_key(&user) {
        return not_found(&user, "User");
    }
    match state.groups.get_mut(&group) {
        // Okta answers 204 whether or not they were a member.
        Some(members) => {
            members.insert(user);
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(&group, "UserGroup"),
    }
}

async fn remove_member(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path((group, user)): Path<(String, String)>,
) -> Response {
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    let mut state = inner.state();
    if !state.users.contains_key(&user) {
        return not_found(&user, "User");
    }
    if !state.groups.contains_key(&group) {
        return not_found(&group, "UserGroup");
    }
    if state.ignore_deletes > 0 {
        state.ignore_deletes -= 1;
        return StatusCode::NO_CONTENT.into_response();
    }
    state.groups.get_mut(&group).unwrap().remove(&user);
    StatusCode::NO_CONTENT.into_response()
}

async fn end_sessions(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    if let Some(refused) = unauthorized(&inner, &headers) {
        return refused;
    }
    let mut state = inner.state();
    match state.users.get(&user).cloned() {
        Some(login) => {
            state.sessions_ended.push(login);
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(&user, "User"),
    }
}
