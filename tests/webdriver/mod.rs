//! The few W3C WebDriver commands the playground's browser test needs
//! (session, navigate, find, click, type, run a script, screenshot), over
//! the crate's own reqwest. Not fantoccini: its Rustls connector panics in
//! this build, because the dependency tree enables both of Rustls's crypto
//! providers (aws-lc-rs through fantoccini's hyper-rustls, ring through
//! reqwest and sqlx) and fantoccini does not choose one; choosing needs the
//! `rustls` crate as a dependency of our own, which this round adds none of.

use std::time::Duration;

use serde_json::{json, Value};

/// The W3C key under which an element reference travels.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session on a WebDriver server such as chromedriver.
#[derive(Clone)]
pub struct Session {
    http: reqwest::Client,
    base: String,
}

/// An element found on the page.
pub struct Element {
    session: Session,
    id: String,
}

/// What WebDriver answered instead of success.
#[derive(Debug)]
pub struct WebDriverError {
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

impl Session {
    /// Starts a session on the WebDriver server at `driver` with these capabilities.
    pub async fn start(driver: &str, capabilities: Value) -> Result<Session, WebDriverError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a reqwest client builds");
        let answer = call(
            &http,
            reqwest::Method::POST,
            &format!("{driver}/session"),
            Some(json!({"capabilities": {"alwaysMatch": capabilities}})),
        )
        .await?;
        let id = answer["sessionId"].as_str().ok_or_else(|| WebDriverError {
            error: "no session".into(),
            message: answer.to_string(),
        })?;
        Ok(Session {
            http,
            base: format!("{driver}/session/{id}"),
        })
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, WebDriverError> {
        call(
            &self.http,
            reqwest::Method::POST,
            &format!("{}{path}", self.base),
            Some(body),
        )
        .await
    }

    pub async fn goto(&self, url: &str) -> Result<(), WebDriverError> {
        self.post("/url", json!({ "url": url })).await.map(|_| ())
    }

    /// Runs `script` (a function body) and returns what it returns.
    pub async fn execute(&self, script: &str) -> Result<Value, WebDriverError> {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    pub async fn find(&self, css: &str) -> Result<Element, WebDriverError> {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await?;
        let id = found[ELEMENT].as_str().ok_or_else(|| WebDriverError {
            error: "no element reference".into(),
            message: found.to_string(),
        })?;
        Ok(Element {
            session: self.clone(),
            id: id.to_string(),
        })
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Result<Vec<u8>, WebDriverError> {
        let answer = call(
            &self.http,
            reqwest::Method::GET,
            &format!("{}/screenshot", self.base),
            None,
        )
        .await?;
        let text = answer.as_str().unwrap_or_default();
        base64_decode(text).ok_or_else(|| WebDriverError {
            error: "bad screenshot".into(),
            message: "not base64".into(),
        })
    }

    /// Ends the session, which closes the browser.
    pub async fn close(&self) -> Result<(), WebDriverError> {
        call(&self.http, reqwest::Method::DELETE, &self.base, None)
            .await
            .map(|_| ())
    }
}

impl Element {
    pub async fn click(&self) -> Result<(), WebDriverError> {
        self.session
            .post(&format!("/element/{}/click", self.id), json!({}))
            .await
            .map(|_| ())
    }

    pub async fn send_keys(&self, text: &str) -> Result<(), WebDriverError> {
        self.session
            .post(
                &format!("/element/{}/value", self.id),
                json!({ "text": text }),
            )
            .await
            .map(|_| ())
    }
}

/// One command; its `value`, or the error WebDriver named.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, WebDriverError> {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.map_err(|e| WebDriverError {
        error: "unreachable".into(),
        message: e.to_string(),
    })?;
    let ok = answer.status().is_success();
    let body: Value = answer.json().await.map_err(|e| WebDriverError {
        error: "not JSON".into(),
        message: e.to_string(),
    })?;
    let value = body["value"].clone();
    if ok {
        Ok(value)
    } else {
        Err(WebDriverError {
            error: value["error"].as_str().unwrap_or("error").to_string(),
            message: value["message"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// Standard base64, as WebDriver sends screenshots.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= sextet(*c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    Some(out)
}

#[test]
fn base64_decodes_what_it_should() {
    assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
    assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
    assert!(base64_decode("a$==").is_none());
}
