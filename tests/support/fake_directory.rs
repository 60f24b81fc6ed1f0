//! What the three fake directory APIs (`fake_okta`, `fake_google`,
//! `fake_entra`) share: an axum server on 127.0.0.1:0 whose every request is
//! recorded (method, raw path, query, `Authorization`, `Content-Type`, body,
//! and the status it got), and injected faults (the next N matching
//! requests answer an error status, or 429 with the service's own way of
//! saying how long to wait) that take effect before the fake's handlers run.
//! Each fake formats its faults in its service's error shape.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;

/// One request a fake received.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// As sent, percent-encoding and all: `/api/v1/users/alice%40example.com`.
    pub path: String,
    /// The query string, without `?`; empty when there was none.
    pub query: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
    /// The status the fake answered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

impl Call {
    /// `METHOD path`, e.g. `PUT /api/v1/groups/00g1/users/00u1`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// An error the next matching requests get instead of an answer.
#[derive(Clone, Debug)]
pub struct Fault {
    /// The HTTP method to match; empty matches any.
    pub method: String,
    /// A part of the path to match; empty matches any.
    pub path_contains: String,
    pub remaining: usize,
    pub status: u16,
    /// For a 429 (or 503): how many seconds to ask the client to wait.
    pub wait_secs: Option<u64>,
}

/// How a fake turns a fault into its service's error answer.
pub type FaultAnswer = fn(&Fault) -> Response;

#[derive(Default)]
pub struct Recorder {
    calls: Mutex<Vec<Call>>,
    faults: Mutex<Vec<Fault>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recorder {
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    pub fn add_fault(
        &self,
        method: &str,
        path_contains: &str,
        n: usize,
        status: u16,
        wait_secs: Option<u64>,
    ) {
        lock(&self.faults).push(Fault {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            remaining: n,
            status,
            wait_secs,
        });
    }

    /// The first fault matching the request, consumed once.
    fn take_fault(&self, method: &str, path: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let index = faults.iter().position(|f| {
            f.remaining > 0
                && (f.method.is_empty() || f.method.eq_ignore_ascii_case(method))
                && path.contains(&f.path_contains)
        })?;
        faults[index].remaining -= 1;
        let fault = faults[index].clone();
        if faults[index].remaining == 0 {
            faults.remove(index);
        }
        Some(fault)
    }
}

/// Serves `router` on 127.0.0.1:0, recording every request into `recorder`
/// and answering injected faults with `fault_answer`.
pub async fn serve(
    router: Router,
    recorder: Arc<Recorder>,
    fault_answer: FaultAnswer,
) -> SocketAddr {
    let layer_recorder = Arc::clone(&recorder);
    let app = router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let recorder = Arc::clone(&layer_recorder);
        async move { record(recorder, fault_answer, request, next).await }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

async fn record(
    recorder: Arc<Recorder>,
    fault_answer: FaultAnswer,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut call = Call {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: String::from_utf8_lossy(&bytes).to_string(),
        status: 0,
        at: Instant::now(),
    };
    let response = match recorder.take_fault(&call.method, &call.path) {
        Some(fault) => fault_answer(&fault),
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };
    call.status = response.status().as_u16();
    lock(&recorder.calls).push(call);
    response
}
