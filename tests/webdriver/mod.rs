//! The browser the playground's test drives: a Chromium session through
//! chromedriver with fantoccini (a W3C WebDriver client), behind the few
//! calls the test makes (navigate, find, click, type, run a script,
//! screenshot). chromedriver listens on loopback, so fantoccini talks to it
//! over plain HTTP (hyper-util's connector): no TLS stack is involved.

use fantoccini::{elements, Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Map, Value};

pub use fantoccini::error::CmdError as WebDriverError;

/// A browser session on a WebDriver server such as chromedriver.
#[derive(Clone)]
pub struct Session {
    client: Client,
}

/// An element found on the page.
pub struct Element {
    element: elements::Element,
}

impl Session {
    /// Starts a session on the WebDriver server at `driver` with these
    /// capabilities (a JSON object).
    pub async fn start(driver: &str, capabilities: Value) -> Result<Session, String> {
        let capabilities: Map<String, Value> = match capabilities {
            Value::Object(map) => map,
            other => return Err(format!("capabilities must be an object, not {other}")),
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(driver)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Session { client })
    }

    pub async fn goto(&self, url: &str) -> Result<(), WebDriverError> {
        self.client.goto(url).await
    }

    /// Runs `script` (a function body) and returns what it returns.
    pub async fn execute(&self, script: &str) -> Result<Value, WebDriverError> {
        self.client.execute(script, vec![]).await
    }

    pub async fn find(&self, css: &str) -> Result<Element, WebDriverError> {
        let element = self.client.find(Locator::Css(css)).await?;
        Ok(Element { element })
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Result<Vec<u8>, WebDriverError> {
        self.client.screenshot().await
    }

    /// Ends the session, which closes the browser.
    pub async fn close(&self) -> Result<(), WebDriverError> {
        self.client.clone().close().await
    }
}

impl Element {
    pub async fn click(&self) -> Result<(), WebDriverError> {
        self.element.click().await
    }

    pub async fn send_keys(&self, text: &str) -> Result<(), WebDriverError> {
        self.element.send_keys(text).await
    }
}
