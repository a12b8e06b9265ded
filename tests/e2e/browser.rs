//! The pages in a real headless browser: Debian's `chromium`, driven over
//! the W3C WebDriver protocol by `chromedriver` (both installed by
//! `scripts/test.sh`). The test fails, never skips, when either is
//! missing. Screenshots land in `target/screenshots/` for people to look
//! at.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::support::Otpd;

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn which(program: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{program} is not installed: the browser test needs Debian's chromium and \
             chromium-driver (`apt-get install chromium chromium-driver`; scripts/test.sh does it)"
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A chromedriver process with one headless Chromium session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// One WebDriver call (chromedriver keeps connections open, so this uses
/// a real HTTP client rather than the read-to-close helper).
fn webdriver(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> reqwest::Result<(u16, Value)> {
    rt.block_on(async {
        let mut request = client.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    })
}

impl Browser {
    fn start() -> Browser {
        let chromium = which("chromium");
        let chromedriver = which("chromedriver");
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status_url = format!("{base}/status");
        while webdriver(&rt, &client, reqwest::Method::GET, &status_url, None).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // A phone-sized window: the pages must work there.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=412,915"]
            }
        }}});
        let session_url = format!("{base}/session");
        let (status, answer) = webdriver(
            &rt,
            &client,
            reqwest::Method::POST,
            &session_url,
            Some(&caps),
        )
        .expect("new session");
        assert_eq!(status, 200, "new session: {answer}");
        let session = answer["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Browser {
            driver,
            base,
            session,
            client,
            rt,
        }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let body = (method != reqwest::Method::GET).then_some(&body);
        let (status, answer) =
            webdriver(&self.rt, &self.client, method.clone(), &url, body).expect("webdriver");
        assert_eq!(status, 200, "{method} {url}: {answer}");
        answer["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    /// The text of every element that matches `css`.
    fn texts(&self, css: &str) -> Vec<String> {
        let found = self.call(
            "POST",
            "/elements",
            json!({"using": "css selector", "value": css}),
        );
        found
            .as_array()
            .expect("elements")
            .iter()
            .filter_map(|e| e[ELEMENT].as_str())
            .map(|id| {
                self.call("GET", &format!("/element/{id}/text"), Value::Null)
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    /// Waits until `css` matches something, without reloading the page.
    fn wait_for(&self, css: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let texts = self.texts(css);
            if !texts.is_empty() {
                return texts;
            }
            assert!(
                Instant::now() < deadline,
                "nothing matched {css} within {within:?} (the page did not update by itself)"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.call("GET", "/screenshot", Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 png"))
            .expect("png");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = webdriver(&self.rt, &self.client, reqwest::Method::DELETE, &url, None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

const JSON: [(&str, &str); 1] = [("Content-Type", "application/json")];

/// A developer opens /outbox, the app sends an SMS, the message appears
/// on the open page without a reload, the code read off the page checks
/// out through the API; the console then shows that send and approval.
#[test]
fn a_sent_code_appears_live_in_the_outbox_and_checks_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let otpd = Otpd::start(dir.path(), &[]);
    let browser = Browser::start();
    browser.goto(&format!("http://{}/outbox", otpd.addr));
    browser.wait_for("#empty", Duration::from_secs(10));
    // The page is open and idle; the live feed says so once connected.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser.texts("#live")[0].starts_with("Live: ") {
        assert!(Instant::now() < deadline, "the live feed did not connect");
        std::thread::sleep(Duration::from_millis(100));
    }
    browser.screenshot("outbox-empty.png");

    let (status, _) = otpd.request(
        "POST",
        "/sms",
        &JSON,
        r#"{"phone": "+77011234567", "message": "Your code: {password}"}"#,
    );
    assert_eq!(status, 200);
    let codes = browser.wait_for("li.msg code.code", Duration::from_secs(10));
    assert_eq!(codes.len(), 1, "one message: {codes:?}");
    let code = &codes[0];
    assert_eq!(
        browser.texts("li.msg .to"),
        ["+77011234567"],
        "the destination is shown"
    );
    assert_eq!(
        browser.texts("li.msg pre.body"),
        [format!("Your code: {code}")]
    );
    let shot = browser.screenshot("outbox.png");
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000));

    let (status, body) = otpd.request(
        "POST",
        "/sms/check",
        &JSON,
        &json!({"phone": "+77011234567", "password": code}).to_string(),
    );
    assert_eq!((status, &body["status"]), (200, &json!("approved")));

    // The same message as JSON, for tests of integrating apps.
    let (status, messages) = otpd.request("GET", "/outbox/messages?channel=sms", &[], "");
    assert_eq!(status, 200);
    assert_eq!(messages[0]["code"], json!(code));
    assert_eq!(messages[0]["to"], json!("+77011234567"));
    let (status, emails) = otpd.request("GET", "/outbox/messages?channel=email", &[], "");
    assert_eq!((status, emails), (200, json!([])), "the filter applies");

    // The operator console shows that send and that approval, and no code.
    browser.goto(&format!("http://{}/console", otpd.addr));
    let statuses = browser.wait_for("li.vrf .status", Duration::from_secs(10));
    assert_eq!(statuses, ["approved"], "the recent list");
    assert_eq!(browser.texts("li.vrf .to"), ["+7701***4567"], "masked");
    assert_eq!(
        browser.texts("tr[data-channel=sms] td.sends"),
        ["1"],
        "one sms send"
    );
    assert_eq!(
        browser.texts("tr[data-channel=sms] td.approvals"),
        ["1"],
        "one sms approval"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser.texts("#live")[0].starts_with("Live: ") {
        assert!(
            Instant::now() < deadline,
            "the console's script did not run"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = browser.call("GET", "/source", Value::Null);
    let page = page.as_str().expect("page source");
    assert!(!page.contains(code.as_str()), "a code on the console");
    assert!(!page.contains("+77011234567"), "an unmasked destination");
    browser.screenshot("console-narrow.png");
    browser.call(
        "POST",
        "/window/rect",
        json!({"width": 1100, "height": 2000}),
    );
    let shot = browser.screenshot("console.png");
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000));
}
