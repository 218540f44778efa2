//! A small W3C WebDriver client: JSON over HTTP to a chromedriver this test
//! process starts, driving Debian's headless Chromium.
//!
//! Waiting is done the WebDriver way, never by sleeping: a condition is a
//! piece of JavaScript the page evaluates again and again (in an asynchronous
//! script, on the page's own timers) until it holds or a deadline passes. The
//! one bounded poll on this side is for chromedriver's `/status` at start.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian's `chromium-driver` and `chromium` packages install them;
/// `ASSAY_CHROMEDRIVER` and `ASSAY_CHROMIUM` point elsewhere.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a wait for the page lasts before the test fails.
const WAIT_MS: u64 = 20_000;
/// Tallest full-page screenshot, in CSS pixels.
const SCREENSHOT_HEIGHT_MAX: f64 = 6_000.0;
/// Tries (50 ms apart) for chromedriver to say it is ready.
const DRIVER_READY_TRIES: u32 = 300;
/// The key W3C WebDriver uses for an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// WebDriver's code points for special keys.
pub mod keys {
    pub const ENTER: &str = "\u{E007}";
    pub const CONTROL: &str = "\u{E009}";
    pub const ALT: &str = "\u{E00A}";
}

/// Collects script errors, rejected promises and Content-Security-Policy
/// violations from the start of every document, before the page's own scripts.
const ERROR_COLLECTOR: &str = r#"
window.__assayErrors = [];
window.addEventListener('error', (event) => window.__assayErrors.push('error: ' + event.message));
window.addEventListener('unhandledrejection', (event) => window.__assayErrors.push('unhandled rejection: ' + String(event.reason)));
document.addEventListener('securitypolicyviolation', (event) => window.__assayErrors.push('CSP violation: ' + event.violatedDirective + ' ' + event.blockedURI));
"#;

/// One element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Element {
    fn from_value(value: &Value) -> Option<Element> {
        value.get(ELEMENT_KEY).and_then(Value::as_str).map(|id| Element(id.to_owned()))
    }
}

/// A headless Chromium session, with its chromedriver, closed when dropped.
pub struct Browser {
    driver: Child,
    endpoint: String,
    session: String,
    agent: ureq::Agent,
    screenshots: PathBuf,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a session. Fails the test
    /// with the way to install them when chromedriver or Chromium is missing.
    pub fn start() -> Browser {
        let driver_path = std::env::var("ASSAY_CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.to_owned());
        let chromium_path = std::env::var("ASSAY_CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
        for (what, path) in [("chromedriver", &driver_path), ("chromium", &chromium_path)] {
            assert!(
                Path::new(path).exists(),
                "the browser tests need {what} at {path}: install Debian's chromium and chromium-driver \
                 (`apt-get install chromium chromium-driver`; scripts/test does it), or set ASSAY_CHROMEDRIVER / ASSAY_CHROMIUM"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("could not start {driver_path}: {error}"));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            endpoint: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent,
            screenshots: screenshot_directory(),
            profile,
        };
        browser.wait_for_driver();
        let arguments = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1100",
            &format!("--user-data-dir={}", browser.profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium_path, "args": arguments},
            "timeouts": {"script": WAIT_MS + 10_000, "pageLoad": 60_000, "implicit": 0},
        }}});
        let session = browser.command("POST", "/session", Some(capabilities));
        browser.session = session["sessionId"].as_str().expect("a session id").to_owned();
        browser.cdp("Page.addScriptToEvaluateOnNewDocument", json!({"source": ERROR_COLLECTOR}));
        browser
    }

    fn wait_for_driver(&self) {
        for _ in 0..DRIVER_READY_TRIES {
            if let Ok(mut response) = self.agent.get(format!("{}/status", self.endpoint)).call()
                && let Ok(text) = response.body_mut().read_to_string()
                && serde_json::from_str::<Value>(&text).is_ok_and(|status| status["value"]["ready"] == true)
            {
                return;
            }
            // Polling a status endpoint with a bounded number of tries, not synchronising with a page.
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("chromedriver at {} did not become ready", self.endpoint);
    }

    /// Sends one WebDriver command and returns its `value`; a WebDriver error fails the test.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_command(method, path, body) {
            Ok(value) => value,
            Err(error) => panic!("WebDriver {method} {path}: {error}"),
        }
    }

    fn try_command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.endpoint);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string().as_bytes()),
        };
        let mut response = response.map_err(|error| error.to_string())?;
        let status = response.status().as_u16();
        let text =
            response.body_mut().with_config().limit(256 << 20).read_to_string().map_err(|error| error.to_string())?;
        let reply: Value = serde_json::from_str(&text).map_err(|_| format!("{status}: {text}"))?;
        if status >= 400 || reply["value"].get("error").is_some_and(Value::is_string) {
            return Err(format!("{status}: {} — {}", reply["value"]["error"], reply["value"]["message"]));
        }
        Ok(reply["value"].clone())
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.command("POST", &self.session_path("/url"), Some(json!({"url": url})));
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its result.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.command("POST", &self.session_path("/execute/sync"), Some(json!({"script": script, "args": args})))
    }

    /// Waits until `condition` (a function body returning something truthy)
    /// holds in the page, and returns what it returned. On timeout, takes a
    /// screenshot named after `what` and fails with the page's text.
    pub fn wait_until(&self, what: &str, condition: &str) -> Value {
        let script = format!(
            r#"
const done = arguments[arguments.length - 1];
const deadline = Date.now() + {WAIT_MS};
const check = () => {{
  let result = null;
  try {{ result = (function () {{ {condition} }})(); }} catch (error) {{ result = null; }}
  if (result) done({{found: result}});
  else if (Date.now() > deadline) done({{timeout: (document.body ? document.body.innerText : '').slice(0, 3000)}});
  else setTimeout(check, 20);
}};
check();
"#
        );
        let reply =
            self.command("POST", &self.session_path("/execute/async"), Some(json!({"script": script, "args": []})));
        if let Some(found) = reply.get("found") {
            return found.clone();
        }
        let file = self.screenshot(&format!("timeout-{}", file_name(what)));
        panic!(
            "timed out after {WAIT_MS} ms waiting for {what}; screenshot {}; the page said:\n{}",
            file.display(),
            reply["timeout"].as_str().unwrap_or_default()
        );
    }

    /// Waits for an element matching `css` that is displayed, and returns it.
    pub fn wait_for(&self, css: &str) -> Element {
        let css_literal = Value::String(css.to_owned());
        let found = self.wait_until(
            &format!("an element matching {css}"),
            &format!(
                "const element = document.querySelector({css_literal}); \
                 return element && element.getClientRects().length > 0 ? element : null;"
            ),
        );
        Element::from_value(&found).unwrap_or_else(|| panic!("{css} did not come back as an element: {found}"))
    }

    /// Waits until the text of the first element matching `css` contains `part`; returns the text.
    pub fn wait_for_text(&self, css: &str, part: &str) -> String {
        let (css_literal, part_literal) = (Value::String(css.to_owned()), Value::String(part.to_owned()));
        let found = self.wait_until(
            &format!("{css} to say {part:?}"),
            &format!(
                "const element = document.querySelector({css_literal}); \
                 return element && element.innerText.includes({part_literal}) ? element.innerText : null;"
            ),
        );
        found.as_str().unwrap_or_default().to_owned()
    }

    pub fn find(&self, css: &str) -> Element {
        let found =
            self.command("POST", &self.session_path("/element"), Some(json!({"using": "css selector", "value": css})));
        Element::from_value(&found).unwrap_or_else(|| panic!("no element for {css}: {found}"))
    }

    pub fn click(&self, element: &Element) {
        self.command("POST", &self.session_path(&format!("/element/{}/click", element.0)), Some(json!({})));
    }

    /// Focuses `element` and types `text` into it (special keys from [`keys`] included).
    pub fn type_into(&self, element: &Element, text: &str) {
        self.command("POST", &self.session_path(&format!("/element/{}/value", element.0)), Some(json!({"text": text})));
    }

    pub fn text(&self, element: &Element) -> String {
        self.command("GET", &self.session_path(&format!("/element/{}/text", element.0)), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Presses `chord` (e.g. `[keys::CONTROL, keys::ENTER]`) on whatever has the focus.
    pub fn press(&self, chord: &[&str]) {
        let mut actions: Vec<Value> = chord.iter().map(|key| json!({"type": "keyDown", "value": key})).collect();
        actions.extend(chord.iter().rev().map(|key| json!({"type": "keyUp", "value": key})));
        self.key_actions(actions);
    }

    /// Types `text` on whatever has the focus, key by key.
    pub fn type_keys(&self, text: &str) {
        let actions = text
            .chars()
            .flat_map(|character| {
                let key = character.to_string();
                [json!({"type": "keyDown", "value": key}), json!({"type": "keyUp", "value": key})]
            })
            .collect();
        self.key_actions(actions);
    }

    fn key_actions(&self, actions: Vec<Value>) {
        let body = json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]});
        self.command("POST", &self.session_path("/actions"), Some(body));
        self.command("DELETE", &self.session_path("/actions"), None);
    }

    /// Saves a PNG of the whole page (up to [`SCREENSHOT_HEIGHT_MAX`] pixels
    /// tall) as `target/ui-screenshots/NAME.png` and returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let metrics = self.cdp("Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let (width, height) = (size["width"].as_f64().unwrap_or(1400.0), size["height"].as_f64().unwrap_or(1000.0));
        let clip = json!({"x": 0, "y": 0, "width": width, "height": height.min(SCREENSHOT_HEIGHT_MAX), "scale": 1});
        let shot =
            self.cdp("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true, "clip": clip}));
        let bytes = decode_base64(shot["data"].as_str().unwrap_or_default());
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// A Chrome DevTools Protocol command, through chromedriver.
    fn cdp(&self, command: &str, params: Value) -> Value {
        self.command("POST", &self.session_path("/goog/cdp/execute"), Some(json!({"cmd": command, "params": params})))
    }

    /// Script errors and CSP violations seen since the page loaded.
    pub fn page_errors(&self) -> Vec<String> {
        let errors = self.execute("return window.__assayErrors || ['the error collector is missing'];", vec![]);
        errors.as_array().into_iter().flatten().map(|error| error.as_str().unwrap_or_default().to_owned()).collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.try_command("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `target/ui-screenshots`, kept after the run as the tests' artifacts.
pub fn screenshot_directory() -> PathBuf {
    let directory = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("ui-screenshots");
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

fn file_name(text: &str) -> String {
    text.chars().map(|character| if character.is_ascii_alphanumeric() { character } else { '-' }).take(60).collect()
}

/// Standard base64 (screenshots), ignoring padding and whitespace.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |byte: u8| -> Option<u32> {
        Some(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = text.bytes().filter_map(value).collect();
    let mut bytes = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let bits = chunk.iter().enumerate().fold(0u32, |bits, (index, digit)| bits | digit << (18 - 6 * index));
        let available = chunk.len() * 6 / 8;
        for index in 0..available {
            bytes.push((bits >> (16 - 8 * index)) as u8);
        }
    }
    bytes
}

#[test]
fn base64_decodes_what_a_screenshot_carries() {
    assert_eq!(decode_base64("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
    assert_eq!(decode_base64("TWFu"), b"Man");
    assert_eq!(decode_base64("TWE="), b"Ma");
    assert_eq!(decode_base64("TQ=="), b"M");
}
