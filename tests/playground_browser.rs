//! `accessbot playground` driven as a person would, in a real headless
//! Chromium through WebDriver (chromedriver, from Debian's `chromium` and
//! `chromium-driver` packages; `.ci/run` installs them; the client is
//! `webdriver/`). It starts the real
//! binary on a free port, requests billing-admin as the finance requester,
//! approves as the finance lead, sees the grant in the requester's DM and in
//! the target system's list, asks for payroll access through the `/access`
//! modal, waits on the page for the timed revoke, and reads the audit
//! channel and the Home tab. A screenshot of each step goes to
//! `target/playground-screenshots/`. At every step no block renders as
//! unsupported, and at the end every resource the page loaded came from the
//! playground's own address.
//!
//! The request is for 20 seconds, not the issue's `2m`: durations down to a
//! second are accepted (the runbook sets no minimum), and waiting two
//! minutes for the timed revoke would make the test slow for no gain.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod webdriver;

use webdriver::Session;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const STEP: Duration = Duration::from_secs(20);

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target directory")
        .join("playground-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts the playground on a free port and returns it with its address,
/// read from the line it prints once the bot is ready.
fn start_playground(data_dir: &std::path::Path) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_accessbot"))
        .args(["playground", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("starting accessbot playground");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("playground listening on ") {
                let _ = tx.send(url.trim_end_matches('/').to_string());
            }
        }
    });
    let child = Killed(child);
    let url = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("the playground printed `playground listening on …` within 90s");
    (child, url)
}

async fn start_chromedriver() -> (Killed, String) {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "{CHROMEDRIVER} and {CHROMIUM} are needed: apt-get install chromium chromium-driver (.ci/run does)"
    );
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let child = Killed(child);
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = client.get(format!("{url}/status")).send().await;
        if answer.is_ok_and(|a| a.status().is_success()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not start within 30s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, url)
}

struct Page {
    client: Session,
    shots: PathBuf,
    step: std::sync::atomic::AtomicUsize,
}

impl Page {
    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script)
            .await
            .unwrap_or_else(|e| panic!("running {script}: {e}"))
    }

    /// Waits until `condition` (a JavaScript expression) is true on the page.
    async fn wait_until(&self, what: &str, condition: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let script = format!("return !!({condition});");
        loop {
            if self.js(&script).await == json!(true) {
                return;
            }
            if Instant::now() >= deadline {
                self.shot(&format!("FAILED-{}", what.replace(' ', "-")))
                    .await;
                let text = self.js("return document.body.innerText;").await;
                panic!(
                    "the page did not show {what} within {timeout:?}; it shows:\n{}",
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `pane` (an element ID) contains `text`.
    async fn wait_text(&self, pane: &str, text: &str, timeout: Duration) {
        let condition = format!(
            "document.getElementById({}).innerText.includes({})",
            json!(pane),
            json!(text)
        );
        self.wait_until(&format!("`{text}` in #{pane}"), &condition, timeout)
            .await;
    }

    /// Clicks the element `css` finds, again if the page redrew it meanwhile.
    async fn click(&self, css: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            let clicked = match self.client.find(css).await {
                Ok(element) => element.click().await.is_ok(),
                Err(_) => false,
            };
            if clicked {
                return;
            }
            assert!(Instant::now() < deadline, "could not click {css}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.client.find(css).await.unwrap();
        element.send_keys(text).await.unwrap();
    }

    async fn be(&self, user: &str) {
        self.click(&format!("#person option[value={user}]")).await;
        self.wait_until(
            &format!("the page as {user}"),
            &format!("document.getElementById('person').value === '{user}' && document.body.dataset.version"),
            STEP,
        )
        .await;
    }

    /// A screenshot named by step, after checking nothing renders as unsupported.
    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let step = self.step.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let file = self.shots.join(format!("{step:02}-{name}.png"));
        std::fs::write(&file, png).unwrap();
    }

    async fn no_unsupported_blocks(&self, when: &str) {
        let found = self
            .js("return Array.from(document.querySelectorAll('.unsupported-block')).map(e => e.innerText);")
            .await;
        assert_eq!(found, json!([]), "unsupported blocks {when}");
    }

    async fn step(&self, name: &str) {
        self.no_unsupported_blocks(name).await;
        self.shot(name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_approved_granted_and_revoked_on_time_in_the_browser() {
    let data = tempfile::tempdir().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let (_playground, url) = start_playground(data.path());
    let (_driver, driver_url) = start_chromedriver().await;

    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1500,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let client = Session::start(
        &driver_url,
        json!({"browserName": "chrome", "goog:chromeOptions": capabilities["goog:chromeOptions"]}),
    )
    .await
    .expect("a Chromium session through chromedriver");
    let page = Page {
        client: client.clone(),
        shots: screenshot_dir(),
        step: Default::default(),
    };
    // The flow runs in a task so that the browser is closed even when it fails.
    let flow = tokio::spawn(flow(page, url));
    let outcome = flow.await;
    let _ = client.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn flow(page: Page, url: String) {
    page.client
        .goto(&format!("{url}/#as=U0FIONA"))
        .await
        .unwrap();
    page.wait_until(
        "the people and the first view",
        "document.querySelectorAll('#person option').length === 6 && document.body.dataset.version",
        STEP,
    )
    .await;
    page.step("start-as-the-requester").await;

    // The requester asks.
    page.type_into(
        "#composer-text",
        "/access request billing-admin 20s month end",
    )
    .await;
    page.click("#composer-send").await;
    page.wait_text("dm", "is waiting for approval from", STEP)
        .await;
    page.step("requested").await;

    // The approver sees the DM and approves.
    page.be("U0GRACE").await;
    page.wait_until(
        "an Approve button in the approver's DM",
        "document.querySelector('#dm .btn.primary[data-action-id=approve]')",
        STEP,
    )
    .await;
    page.wait_text("dm", "Fiona Reyes", STEP).await;
    page.step("approver-dm").await;
    page.click("#dm .btn.primary[data-action-id=approve]").await;
    // chat.update applied: the buttons give way to the outcome.
    page.wait_text("dm", "Approved by", STEP).await;
    page.wait_until(
        "the approval DM without buttons",
        "!document.querySelector('#dm [data-action-id=approve]')",
        STEP,
    )
    .await;
    page.step("approved").await;

    // The requester has it, and so does the target system.
    page.be("U0FIONA").await;
    page.wait_text("dm", "is granted until", STEP).await;
    page.wait_until(
        "Fiona in billing-admins",
        "document.querySelector('#target [data-system=billing-admins] li[data-user=U0FIONA]')",
        STEP,
    )
    .await;
    page.step("granted").await;

    // Meanwhile, the /access modal: payroll, which needs the manager first.
    page.type_into("#composer-text", "/access").await;
    page.click("#composer-send").await;
    page.wait_until(
        "the request modal",
        "document.querySelector('#modal .modal')",
        STEP,
    )
    .await;
    page.step("modal").await;
    page.click("#modal select[data-action-id] option[value=payroll-view]")
        .await;
    page.wait_text("modal", "Your manager", STEP).await;
    // The bot's update put the runbook's default duration in the form.
    page.wait_until(
        "the default duration in the modal",
        "document.querySelector('#modal input[data-kind=plain_text_input]').value === '2h'",
        STEP,
    )
    .await;
    page.type_into("#modal textarea", "quarterly payroll check")
        .await;
    page.step("modal-filled").await;
    page.click("#modal-submit").await;
    page.wait_until(
        "the modal closed",
        "!document.querySelector('#modal .modal')",
        STEP,
    )
    .await;
    page.wait_text("dm", "Payroll: view only", STEP).await;
    page.step("modal-submitted").await;

    // The timed revoke: the target system lets go, the DM says it ended.
    page.wait_until(
        "Fiona gone from billing-admins",
        "document.querySelector('#target [data-system=billing-admins]') && !document.querySelector('#target [data-system=billing-admins] li[data-user=U0FIONA]')",
        Duration::from_secs(60),
    )
    .await;
    page.wait_text("dm", "has ended", STEP).await;
    page.step("revoked-on-time").await;

    // The audit channel has every step.
    for line in [
        "Access requested",
        "Approved",
        "Access granted",
        "Access revoked",
    ] {
        page.wait_text("audit", line, STEP).await;
    }
    page.step("audit-channel").await;

    // The Home tab, published when opened.
    page.click("#tab-home").await;
    page.wait_until(
        "the Home tab",
        "document.querySelector('#home .home-view')",
        STEP,
    )
    .await;
    page.wait_text("home", "Payroll: view only", STEP).await;
    page.step("home-tab").await;

    // Everything the page loaded came from the playground itself.
    let resources = page
        .js("return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).map(e => e.name);")
        .await;
    let resources: Vec<String> = serde_json::from_value(resources).unwrap();
    assert!(
        resources.iter().any(|r| r.ends_with("/assets/app.js"))
            && resources.iter().any(|r| r.contains("/play/view")),
        "the browser recorded the page's own loads: {resources:?}"
    );
    let elsewhere: Vec<&String> = resources
        .iter()
        .filter(|r| !r.starts_with(&format!("{url}/")))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "the page loaded from outside {url}: {elsewhere:?}"
    );
}

/// What the page's routes and the stand-in's Web API refuse, without a
/// browser: a clear answer, and nothing changes.
#[tokio::test]
async fn bad_input_gets_a_clear_answer_and_changes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let (_playground, url) = start_playground(data.path());
    let http = reqwest::Client::new();
    let page = http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("not for production"));
    let view = |user: &str| {
        let http = http.clone();
        let url = format!("{url}/play/view?as={user}");
        async move {
            let answer = http.get(url).send().await.unwrap();
            assert_eq!(answer.status(), 200);
            answer.json::<Value>().await.unwrap()
        }
    };
    let before = view("U0FIONA").await;

    let post = |path: &str, body: Value| {
        let http = http.clone();
        let url = format!("{url}{path}");
        async move {
            let answer = http.post(url).json(&body).send().await.unwrap();
            let status = answer.status().as_u16();
            (status, answer.json::<Value>().await.unwrap())
        }
    };
    let (status, answer) = post(
        "/play/command",
        json!({"as": "U0FIONA", "text": "/deploy prod"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("only the /access command"),
        "{answer}"
    );
    let (status, answer) = post(
        "/play/command",
        json!({"as": "U0NOBODY", "text": "/access list"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("pick who you are"));
    let (status, answer) = post(
        "/play/action",
        json!({"as": "U0GRACE", "channel": "DU0GRACE", "ts": "1.2", "block_index": 0, "action_id": "approve"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("no longer there"),
        "{answer}"
    );
    assert_eq!(view("U0FIONA").await["version"], before["version"]);

    // The stand-in's Web API takes only the run's own bot token.
    let answer: Value = http
        .post(format!("{url}/api/auth.test"))
        .header("authorization", "Bearer xoxb-guessed")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer, json!({"ok": false, "error": "invalid_auth"}));

    // A good command is answered by the bot, as an ephemeral the requester sees.
    let (status, answer) = post(
        "/play/command",
        json!({"as": "U0FIONA", "text": "/access list"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        view("U0FIONA").await["dm"]
            .as_str()
            .unwrap()
            .contains("billing-admin"),
        "the answer to /access list is shown"
    );
}
