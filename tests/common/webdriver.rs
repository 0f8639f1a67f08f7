//! A small WebDriver client over plain HTTP/1.1 to `chromedriver` (Debian's
//! chromium-driver), driving a headless chromium: enough for the browser test
//! of the HTML pages (tests/browser.rs). No crate beyond serde_json and base64.
//!
//! [`Chromedriver::start`] starts chromedriver on a free port in its own
//! process group (killed as a group on drop, so no chromium outlives the
//! test); [`Chromedriver::session`] opens chromium with `--headless=new`, a
//! temporary profile and, as root, `--no-sandbox`.

use super::scratch_dir;
use base64::Engine as _;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Records every CSP violation of a page into `window.__csp_violations`,
/// before any of the page's own scripts run (added through CDP; such scripts
/// are not subject to the page's CSP).
const CSP_RECORDER: &str = "window.__csp_violations = [];\
    document.addEventListener('securitypolicyviolation', function (e) {\
      window.__csp_violations.push(e.violatedDirective + ' blocked ' + e.blockedURI +\
        (e.sample ? ' (' + e.sample + ')' : ''));\
    });";

/// Where a program is on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running chromedriver; it and every process it started are killed on
/// drop.
pub struct Chromedriver {
    /// The chromedriver process (leader of its own process group).
    child: Child,
    /// Its `127.0.0.1:port`.
    addr: String,
    /// The chromium binary sessions use.
    chromium: PathBuf,
}

impl Chromedriver {
    /// Starts chromedriver; `Err` names what is missing when chromium or
    /// chromedriver is not installed; panics when it is there but fails.
    pub fn start() -> Result<Chromedriver, String> {
        let driver = which("chromedriver").ok_or("no chromedriver on PATH")?;
        let chromium = which("chromium")
            .or_else(|| which("chromium-browser"))
            .ok_or("no chromium on PATH")?;
        let port = free_port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("{}: {e}", driver.display()))?;
        let mut d = Chromedriver {
            child,
            addr: format!("127.0.0.1:{port}"),
            chromium,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(v) = d.call("GET", "/status", None) {
                if v["ready"] == true {
                    return Ok(d);
                }
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("chromedriver exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A new headless chromium session, `width` CSS pixels wide.
    pub fn session(&self, width: u32) -> Session<'_> {
        let profile = scratch_dir("chromium-profile");
        let mut args = vec![
            "--headless=new".to_string(),
            format!("--user-data-dir={}", profile.display()),
            format!("--window-size={width},1000"),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--lang=en-US".into(),
        ];
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            args.push("--no-sandbox".into());
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": self.chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = self
            .call("POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("chromedriver could not start chromium: {e}"));
        let id = v["sessionId"].as_str().expect("sessionId").to_string();
        let s = Session {
            driver: self,
            id,
            profile,
        };
        s.cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": CSP_RECORDER}),
        );
        s
    }

    /// One WebDriver command: its `value`, or the error it answered.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(&self.addr).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .map_err(|e| format!("write: {e}"))?;
        let raw = read_response(&mut s)?;
        let (status, text) = split_response(&raw)?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{method} {path}: HTTP {status}, not JSON ({e}): {text}"))?;
        if status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(format!(
                "{method} {path}: HTTP {status}: {} {}",
                v["value"]["error"], v["value"]["message"]
            ))
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The group: chromedriver and any chromium it left behind.
        // SAFETY: kill(2) on the process group this test started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 response, read up to its Content-Length (chromedriver keeps
/// the connection open despite `Connection: close`) or, without one, to EOF.
fn read_response(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            if let Some(len) = len {
                if raw.len() >= end + 4 + len {
                    raw.truncate(end + 4 + len);
                    return Ok(raw);
                }
            }
        }
        let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok(raw);
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

/// The status and body of a raw HTTP/1.1 response (chunked or not).
fn split_response(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response: {text}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status: {head}"))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    if !chunked {
        return Ok((status, body.to_string()));
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("bad chunk")?;
        let n = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
            .map_err(|e| format!("bad chunk size {size:?}: {e}"))?;
        if n == 0 {
            return Ok((status, out));
        }
        out.push_str(after.get(..n).ok_or("short chunk")?);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// One chromium session; closed (chromium quits) on drop.
pub struct Session<'a> {
    /// The chromedriver it runs under.
    driver: &'a Chromedriver,
    /// The WebDriver session id.
    id: String,
    /// Its temporary chromium profile, removed on drop.
    profile: PathBuf,
}

/// An element reference of a [`Session`].
#[derive(Clone, Debug)]
pub struct Element(pub String);

impl Session<'_> {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.id);
        self.driver
            .call(method, &full, body.as_ref())
            .unwrap_or_else(|e| panic!("WebDriver: {e}"))
    }

    /// A Chrome DevTools Protocol command.
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
    }

    /// Navigates to `url` and waits for the load to complete.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn current_url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_string()
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs `script` asynchronously: its result is what it passes to its
    /// last argument, the callback.
    pub fn js_async(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Every element matching the CSS `selector`.
    pub fn find_all(&self, selector: &str) -> Vec<Element> {
        let v = self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": selector})),
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                Element(
                    e[ELEMENT]
                        .as_str()
                        .unwrap_or_else(|| panic!("not an element: {e}"))
                        .to_string(),
                )
            })
            .collect()
    }

    /// The one element matching `selector`; panics naming it when absent.
    pub fn find(&self, selector: &str) -> Element {
        let mut all = self.find_all(selector);
        assert!(
            !all.is_empty(),
            "no element matches {selector:?} on {}",
            self.current_url()
        );
        all.swap_remove(0)
    }

    /// The rendered text of an element (what a user sees).
    pub fn text(&self, e: &Element) -> String {
        let v = self.cmd("GET", &format!("/element/{}/text", e.0), None);
        v.as_str().unwrap_or_default().to_string()
    }

    /// An attribute of an element, `None` when absent.
    pub fn attr(&self, e: &Element, name: &str) -> Option<String> {
        let v = self.cmd("GET", &format!("/element/{}/attribute/{name}", e.0), None);
        v.as_str().map(str::to_string)
    }

    /// Clicks an element as a user would (scrolled into view first).
    pub fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    /// The browser console since the last call (chromedriver's `goog` log).
    pub fn console(&self) -> Vec<Value> {
        let v = self.cmd("POST", "/se/log", Some(json!({"type": "browser"})));
        v.as_array().cloned().unwrap_or_default()
    }

    /// The CSP violations the current page reported.
    pub fn csp_violations(&self) -> Vec<String> {
        let v = self.js("return window.__csp_violations || null;", json!([]));
        match v.as_array() {
            Some(a) => a
                .iter()
                .map(|s| s.as_str().unwrap_or("").to_string())
                .collect(),
            None => vec!["(the CSP recorder did not run on this page)".into()],
        }
    }

    /// A PNG of the whole page (beyond the window), written to `path`.
    pub fn screenshot(&self, path: &Path) {
        // Reading the document's size lays it out: just after a load, the
        // layout metrics may still say 0 x 0.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.js(
                "return document.readyState === 'complete' && document.documentElement.scrollWidth > 0;",
                json!([]),
            );
            if v == true || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let m = self.cdp("Page.getLayoutMetrics", json!({}));
        let (size, view) = (&m["cssContentSize"], &m["cssLayoutViewport"]);
        // The content's size, at least the window's (the capture refuses a
        // 0-wide clip).
        let dim = |k: &str, view_k: &str| {
            let c = size[k].as_f64().unwrap_or(0.0);
            let v = view[view_k].as_f64().unwrap_or(0.0);
            c.max(v).max(100.0).ceil()
        };
        let width = dim("width", "clientWidth");
        // Chromium cannot capture much beyond 16k pixels in one go.
        let height = dim("height", "clientHeight").min(16000.0);
        if size["width"].as_f64().unwrap_or(0.0) < 1.0 {
            eprintln!("screenshot of {}: layout metrics {m}", self.current_url());
        }
        let shot = self.cdp(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true,
                   "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .call("DELETE", &format!("/session/{}", self.id), None);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
