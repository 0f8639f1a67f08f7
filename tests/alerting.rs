//! Alert rules (`alerts/`), Grafana dashboards (`dashboards/`) and the runbook
//! (`docs/runbook.md`), tested with the real components: Debian's `promtool`,
//! `prometheus` and `prometheus-alertmanager` (started here on 127.0.0.1 with
//! ports the kernel picks and data in a scratch directory, killed on drop),
//! the exporter, and the seeded test cluster of `make test`.
//!
//! - `rules_are_complete_documented_and_unit_tested`: the public alert names,
//!   labels and annotations, runbook sections, the tuning table, `promtool
//!   check rules`, `promtool test rules` (a firing and a non-firing case per
//!   alert) and `amtool check-config` of the example routing.
//! - `dashboards_are_well_formed`: Grafana JSON structure, uids, variables.
//! - `rules_and_dashboards_use_only_exported_metric_names`: every metric name
//!   in a rule, panel or variable is in the exporter's real /metrics output.
//! - `dashboard_panels_and_variables_return_data`: Prometheus scrapes the
//!   exporter and evaluates the project's rules (unchanged); every panel query
//!   and every template variable query of both dashboards, with the variables
//!   substituted, returns data.
//!
//! The exporter always runs with an attachment source, `--attachments.file`
//! of a file this test writes (`images: []`: no image named, so no verdict
//! changes), so that `ceph_rbd_exporter_source_*` are exported and the rules
//! and panels that use them can be checked.
//! - `alerts_fire_route_and_resolve_end_to_end`: exporter -> Prometheus with the
//!   project's rules -> Alertmanager with alerts/alertmanager.example.yml ->
//!   a webhook receiver in this test. THE `for:` DURATIONS ARE SHORTENED to
//!   5 s in a temporary copy of the rules (and the example's group timings to
//!   1 s), so the run takes about a minute instead of hours; nothing else of
//!   the rules changes. At the end the attachments file is broken, so that
//!   `CephRBDExporterSourceDown` fires for `source="file"`, and repaired.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RULES: &str = "alerts/ceph-rbd-exporter.rules.yml";
const RULE_TESTS: &str = "alerts/ceph-rbd-exporter.test.yml";
const AM_EXAMPLE: &str = "alerts/alertmanager.example.yml";
const RUNBOOK: &str = "docs/runbook.md";
const JOB: &str = "ceph-rbd-exporter";
const RUNBOOK_BASE: &str =
    "https://github.com/ceph-rbd-exporter/ceph-rbd-exporter/blob/main/docs/runbook.md";
/// The `for:` every alert gets in the end-to-end test's copy of the rules.
const E2E_FOR: &str = "5s";

/// The public alert names, with their severity.
const ALERTS: [(&str, &str); 9] = [
    ("CephRBDOrphanedWatcher", "critical"),
    ("CephRBDStaleLock", "warning"),
    ("CephRBDCloneDepthExceeded", "warning"),
    ("CephRBDFlattenPending", "warning"),
    ("CephRBDSnapshotChildrenHigh", "warning"),
    ("CephRBDExporterClusterUnreachable", "warning"),
    ("CephRBDExporterSourceDown", "warning"),
    ("CephRBDExporterSampleStale", "warning"),
    ("CephRBDExporterDown", "warning"),
];

// ---------------------------------------------------------------------------
// Files.

fn path(rel: &str) -> PathBuf {
    repo().join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// YAML as JSON, through Debian's python3-yaml (a dependency of ceph-common).
fn yaml(file: &Path) -> Value {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(file)
        .output()
        .expect("/usr/bin/python3");
    assert!(
        out.status.success(),
        "cannot parse {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Rule {
    alert: String,
    expr: String,
    hold: String,
    labels: Value,
    annotations: Value,
}

fn alert_rules() -> Vec<Rule> {
    let doc = yaml(&path(RULES));
    let mut rules = Vec::new();
    for group in doc["groups"].as_array().expect("groups") {
        for r in group["rules"].as_array().expect("rules") {
            let alert = r["alert"]
                .as_str()
                .expect("only alerting rules in the rules file");
            rules.push(Rule {
                alert: alert.to_string(),
                expr: r["expr"].as_str().unwrap().to_string(),
                hold: r["for"].as_str().unwrap_or("").to_string(),
                labels: r["labels"].clone(),
                annotations: r["annotations"].clone(),
            });
        }
    }
    rules
}

fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path("dashboards")).expect("dashboards/") {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", p.display()));
            out.push((p.file_name().unwrap().to_string_lossy().to_string(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 2, "expected the two dashboards");
    out
}

/// Panels, with the panels of collapsed rows.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner.iter());
        }
    }
    out
}

fn variables(dash: &Value) -> Vec<&Value> {
    dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .collect()
}

fn var_query(v: &Value) -> String {
    match &v["query"] {
        Value::String(s) => s.clone(),
        q => q["query"].as_str().unwrap_or_default().to_string(),
    }
}

/// GitHub's anchor for a Markdown heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => Some(c),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

fn code_spans(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, x)| x.to_string())
        .collect()
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (installed by scripts/install-deps.sh)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd} {args:?} failed:\n{text}");
    text
}

// ---------------------------------------------------------------------------
// PromQL: the metric names an expression uses.

const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
];
const PROMQL_LIST_WORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Index just past the string literal that starts at `i`.
fn skip_string(c: &[char], mut i: usize) -> usize {
    let q = c[i];
    i += 1;
    while i < c.len() && c[i] != q {
        if c[i] == '\\' && q != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// Index of the bracket closing the one at `i` (strings skipped).
fn closing(c: &[char], i: usize) -> usize {
    let (open, close) = (
        c[i],
        match c[i] {
            '(' => ')',
            '{' => '}',
            _ => ']',
        },
    );
    let mut depth = 0;
    let mut j = i;
    while j < c.len() {
        match c[j] {
            '"' | '\'' | '`' => {
                j = skip_string(c, j);
                continue;
            }
            x if x == open => depth += 1,
            x if x == close => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
        j += 1;
    }
    panic!("unbalanced {open} in {}", c.iter().collect::<String>());
}

fn metric_names(expr: &str) -> BTreeSet<String> {
    let c: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut list_follows = false;
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '#' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '"' | '\'' | '`' => i = skip_string(&c, i),
            '{' => {
                let end = closing(&c, i);
                let body: String = c[i + 1..end].iter().collect();
                // {__name__=~"a|b"} selects metrics too.
                if let Some(rest) = body.trim_start().strip_prefix("__name__") {
                    let value = rest.split('"').nth(1).unwrap_or_default();
                    names.extend(value.split('|').map(str::to_string));
                }
                i = end + 1;
            }
            '[' => i = closing(&c, i) + 1,
            '(' if list_follows => {
                i = closing(&c, i) + 1;
                list_follows = false;
            }
            x if x.is_ascii_alphabetic() || x == '_' || x == ':' => {
                let start = i;
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                let next = c[i..].iter().find(|x| !x.is_whitespace());
                if PROMQL_LIST_WORDS.contains(&word.as_str()) {
                    list_follows = true;
                } else if next != Some(&'(') && !PROMQL_WORDS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            x if x.is_ascii_digit() || x == '.' => {
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// `label_values(selector, label)` or `label_values(label)`.
fn parse_label_values(q: &str) -> (Option<String>, String) {
    let q = q.trim();
    let inner = q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("only label_values() variable queries are supported: {q}"));
    let c: Vec<char> = inner.chars().collect();
    let mut split = None;
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '"' | '\'' | '`' => {
                i = skip_string(&c, i);
                continue;
            }
            '{' | '(' | '[' => {
                i = closing(&c, i) + 1;
                continue;
            }
            ',' => split = Some(i),
            _ => {}
        }
        i += 1;
    }
    match split {
        Some(s) => (
            Some(c[..s].iter().collect::<String>().trim().to_string()),
            c[s + 1..].iter().collect::<String>().trim().to_string(),
        ),
        None => (None, inner.trim().to_string()),
    }
}

/// Substitutes Grafana variables (`$x`, `${x}`, `${x:fmt}`, `[[x]]`); panics on
/// a variable it does not know, so a typo in a dashboard fails the test.
fn substitute(expr: &str, vars: &BTreeMap<&str, String>) -> String {
    let c: Vec<char> = expr.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let is_name = |x: char| x.is_ascii_alphanumeric() || x == '_';
    let lookup = |name: &str| -> String {
        vars.get(name)
            .cloned()
            .unwrap_or_else(|| panic!("unknown variable ${name} in {expr}"))
    };
    while i < c.len() {
        if c[i] == '$' && i + 1 < c.len() && c[i + 1] == '{' {
            let end = i + c[i..].iter().position(|&x| x == '}').expect("unclosed ${");
            let inner: String = c[i + 2..end].iter().collect();
            out.push_str(&lookup(inner.split(':').next().unwrap()));
            i = end + 1;
        } else if c[i] == '$' && i + 1 < c.len() && is_name(c[i + 1]) {
            let start = i + 1;
            i = start;
            while i < c.len() && is_name(c[i]) {
                i += 1;
            }
            out.push_str(&lookup(&c[start..i].iter().collect::<String>()));
        } else if c[i] == '[' && i + 1 < c.len() && c[i + 1] == '[' {
            let end = i + c[i..].iter().position(|&x| x == ']').expect("unclosed [[");
            out.push_str(&lookup(&c[i + 2..end].iter().collect::<String>()));
            i = end + 2;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Processes and HTTP.

/// A child process with its stderr kept for diagnostics; killed on drop.
struct Proc {
    name: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `cmd` and waits for a stderr line containing `marker`; returns
    /// the `address=` of that line.
    fn start(name: &str, cmd: &mut Command, marker: &str) -> (Proc, String) {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let marker = marker.to_string();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(&marker)
                    && let Some(addr) = line.split("address=").nth(1)
                {
                    let _ = tx.send(addr.split_whitespace().next().unwrap().to_string());
                }
                log2.lock().unwrap().push(line);
            }
        });
        let proc = Proc {
            name: name.to_string(),
            child,
            log,
        };
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{name} did not start:\n{}", proc.tail(40)));
        (proc, addr)
    }

    fn tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        let skip = log.len().saturating_sub(n);
        format!(
            "--- last lines of {} ---\n{}",
            self.name,
            log[skip..].join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes a scratch directory on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The attachments file every exporter here reads: a valid, empty list.
const ATTACHMENTS_OK: &str = "# written by tests/alerting.rs\nimages: []\n";

/// Writes `ATTACHMENTS_OK` to `dir/attachments.yml`.
fn write_attachments(dir: &Path) -> PathBuf {
    let p = dir.join("attachments.yml");
    std::fs::write(&p, ATTACHMENTS_OK).unwrap();
    p
}

/// The exporter on the test cluster, with `attachments` as its file source
/// (asked every second), once it has sampled the cluster and the source.
fn start_exporter(attachments: &Path) -> (Proc, String) {
    let (exporter, addr) = Proc::start(
        "exporter",
        Command::new(BIN)
            .args([
                "--ceph.config",
                &conf(),
                "--web.listen-address",
                "127.0.0.1:0",
                "--sample.interval",
                "2s",
                "--attachments.refresh-interval",
                "1s",
                "--attachments.file",
            ])
            .arg(attachments),
        "serving metrics",
    );
    // Wait for the first complete sample and the source's first answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http_get(&addr, "/metrics");
        if body.lines().any(|l| l == "ceph_rbd_exporter_up 1")
            && body
                .lines()
                .any(|l| l == "ceph_rbd_exporter_source_up{source=\"file\"} 1")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "exporter never sampled the cluster:\n{}",
            exporter.tail(20)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (exporter, addr)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// HTTP/1.0 GET (no chunked replies), bounded by timeouts.
fn http_get(addr: &str, path_and_query: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn prom_api(prom: &str, path_and_query: &str) -> Result<Value, String> {
    let (status, body) = http_get(prom, path_and_query);
    let v: Value = serde_json::from_str(&body)
        .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
    if v["status"] == "success" {
        Ok(v["data"].clone())
    } else {
        Err(format!("{}: {}", v["errorType"], v["error"]))
    }
}

/// Instant query: the result vector.
fn prom_query(prom: &str, expr: &str) -> Result<Vec<Value>, String> {
    let data = prom_api(prom, &format!("/api/v1/query?query={}", encode(expr)))?;
    Ok(match &data["result"] {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        scalar => vec![scalar.clone()],
    })
}

/// Prometheus on 127.0.0.1 with `config` (a YAML text), killed on drop.
fn start_prometheus(dir: &Path, config: &str) -> (Proc, String) {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, config).unwrap();
    run("promtool", &["check", "config", cfg.to_str().unwrap()]);
    let (prom, addr) = Proc::start(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .args([
                "--web.listen-address=127.0.0.1:0",
                "--rules.alert.resend-delay=1s",
                "--log.level=info",
            ]),
        "msg=\"Listening on\"",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&addr, "/-/ready").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "prometheus not ready:\n{}",
            prom.tail(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (prom, addr)
}

fn prometheus_config(exporter: &str, rules: &Path, alertmanager: Option<&str>) -> String {
    let mut cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{exporter}']\n",
        rules.display()
    );
    if let Some(am) = alertmanager {
        cfg.push_str(&format!(
            "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n"
        ));
    }
    cfg
}

/// Waits until `what` holds, polling every 250 ms.
fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            eprintln!("timed out after {timeout:?} waiting for {what}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

// ---------------------------------------------------------------------------
// Webhook receiver.

#[derive(Debug, Clone)]
struct Notification {
    path: String,
    at: Instant,
    body: Value,
}

/// A tiny HTTP server that records Alertmanager webhook POSTs.
struct Webhook {
    addr: String,
    received: Arc<Mutex<Vec<Notification>>>,
    stop: Arc<AtomicBool>,
}

impl Webhook {
    fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn
                    && let Some(n) = Self::serve(conn)
                {
                    r.lock().unwrap().push(n);
                }
            }
        });
        Webhook {
            addr,
            received,
            stop,
        }
    }

    fn serve(mut conn: TcpStream) -> Option<Notification> {
        conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut reader = BufReader::new(conn.try_clone().ok()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).ok()?;
        let path = request_line.split_whitespace().nth(1)?.to_string();
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':')?;
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().ok()?,
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).ok()?;
                let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).ok()?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            body.resize(length, 0);
            reader.read_exact(&mut body).ok()?;
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .ok()?;
        Some(Notification {
            path,
            at: Instant::now(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        })
    }

    fn all(&self) -> Vec<Notification> {
        self.received.lock().unwrap().clone()
    }

    /// Every alert received, with the path it came on and the time.
    fn alerts(&self) -> Vec<(String, Instant, Value)> {
        self.all()
            .into_iter()
            .flat_map(|n| {
                n.body["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |a| (n.path.clone(), n.at, a))
            })
            .collect()
    }

    /// The first alert with these label values and this status.
    fn find(&self, status: &str, labels: &[(&str, &str)]) -> Option<(String, Instant, Value)> {
        self.alerts().into_iter().find(|(_, _, a)| {
            a["status"] == status && labels.iter().all(|(k, v)| a["labels"][*k] == *v)
        })
    }

    fn summary(&self) -> String {
        self.alerts()
            .iter()
            .map(|(p, _, a)| {
                format!(
                    "{p} {} {} {}/{}",
                    a["status"].as_str().unwrap_or("?"),
                    a["labels"]["alertname"].as_str().unwrap_or("?"),
                    a["labels"]["pool"].as_str().unwrap_or("-"),
                    a["labels"]["image"].as_str().unwrap_or("-")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Images this test created: locks removed and images deleted on drop (best
/// effort: an image whose killed holder's watch has not expired yet stays).
struct TestImages(Vec<String>);

impl Drop for TestImages {
    fn drop(&mut self) {
        for spec in &self.0 {
            let rbd = |args: &[&str]| {
                Command::new("rbd")
                    .args(args)
                    .env("CEPH_CONF", conf())
                    .output()
            };
            if let Ok(out) = rbd(&["lock", "ls", spec, "--format", "json"]) {
                let locks: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                for l in locks.as_array().cloned().unwrap_or_default() {
                    let (id, locker) = (l["id"].as_str(), l["locker"].as_str());
                    if let (Some(id), Some(locker)) = (id, locker) {
                        let _ = rbd(&["lock", "rm", spec, id, locker]);
                    }
                }
            }
            let _ = rbd(&["rm", "--no-progress", spec]);
        }
    }
}

// ---------------------------------------------------------------------------
// Static checks of the rules, the runbook and the promtool unit tests.

#[test]
fn rules_are_complete_documented_and_unit_tested() {
    let rules = alert_rules();
    let names: BTreeSet<&str> = rules.iter().map(|r| r.alert.as_str()).collect();
    let expected: BTreeSet<&str> = ALERTS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected, "the public alert names");
    assert_eq!(rules.len(), ALERTS.len(), "each alert once");

    let runbook = read(RUNBOOK);
    let headings: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| {
            l.strip_prefix("### ")
                .or_else(|| l.strip_prefix("## "))
                .or_else(|| l.strip_prefix("# "))
        })
        .map(slug)
        .collect();
    let rules_text = read(RULES);

    for r in &rules {
        let a = &r.alert;
        let severity = ALERTS.iter().find(|(n, _)| n == a).unwrap().1;
        assert_eq!(r.labels["severity"], severity, "{a}: severity");
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                r.annotations[key]
                    .as_str()
                    .is_some_and(|s| !s.trim().is_empty()),
                "{a}: annotation {key}"
            );
        }
        let desc = r.annotations["description"].as_str().unwrap();
        assert!(
            desc.contains("$labels."),
            "{a}: description built from $labels"
        );
        // The value of ceph_rbd_image_flatten_pending is always 1; every
        // other alert's value (a count, a depth, an age) is in its text.
        assert_eq!(
            desc.contains("$value"),
            a != "CephRBDFlattenPending",
            "{a}: description uses $value"
        );
        let per_image = r.expr.contains("ceph_rbd_image_") || r.expr.contains("ceph_rbd_snapshot_");
        if per_image {
            for l in ["pool", "namespace", "image"] {
                assert!(
                    desc.contains(&format!("$labels.{l}")),
                    "{a}: description names the {l}"
                );
            }
        }
        assert!(
            desc.contains("First") || desc.contains("first"),
            "{a}: description says what to do first"
        );
        // runbook_url: its own section of docs/runbook.md.
        let url = r.annotations["runbook_url"].as_str().unwrap();
        let anchor = a.to_lowercase();
        assert_eq!(url, format!("{RUNBOOK_BASE}#{anchor}"), "{a}: runbook_url");
        assert!(
            runbook.lines().any(|l| l == format!("## {a}")),
            "{a}: no '## {a}' section in {RUNBOOK}"
        );
        assert!(!r.hold.is_empty(), "{a}: has a `for:`");
    }
    // Durations and conditions the issue fixes.
    let rule = |n: &str| rules.iter().find(|r| r.alert == n).unwrap();
    assert_eq!(rule("CephRBDOrphanedWatcher").hold, "10m");
    assert_eq!(
        rule("CephRBDOrphanedWatcher").expr.trim(),
        "ceph_rbd_image_orphaned_watchers > 0"
    );
    assert_eq!(rule("CephRBDStaleLock").hold, "5m");
    assert_eq!(rule("CephRBDFlattenPending").hold, "1h");
    assert_eq!(rule("CephRBDExporterClusterUnreachable").hold, "5m");
    assert_eq!(rule("CephRBDExporterSourceDown").hold, "15m");
    assert_eq!(
        rule("CephRBDExporterSourceDown").expr.trim(),
        "ceph_rbd_exporter_source_up == 0"
    );
    // The orphan page names every reason the exporter can give, in its
    // annotations, and the runbook has a section for each.
    let orphan = rule("CephRBDOrphanedWatcher");
    for reason in [
        "image_deleted",
        "image_trashed",
        "detached",
        "unexpected_host",
        "deleted_instance",
        "unknown_client",
    ] {
        for key in ["summary", "description"] {
            assert!(
                orphan.annotations[key]
                    .as_str()
                    .unwrap()
                    .contains(&format!("\"{reason}\"")),
                "CephRBDOrphanedWatcher: {key} has no words for reason {reason}"
            );
        }
        if !reason.starts_with("image_") {
            assert!(
                runbook
                    .lines()
                    .any(|l| l == format!("### Reason `{reason}`")),
                "{RUNBOOK}: no '### Reason `{reason}`' section"
            );
        }
    }
    assert!(rule("CephRBDSnapshotChildrenHigh").expr.contains("> 200"));
    assert!(
        rule("CephRBDExporterSampleStale")
            .expr
            .contains("ceph_rbd_exporter_sample_interval_seconds")
    );
    assert!(rule("CephRBDExporterDown").expr.contains("absent("));

    // Every internal link of the runbook resolves.
    for part in runbook.split("](#").skip(1) {
        let anchor = part.split(')').next().unwrap();
        assert!(
            headings.contains(anchor),
            "runbook link #{anchor} has no heading"
        );
    }

    // Tunables: every `for:` is marked, and the runbook's table agrees with the file.
    for line in rules_text
        .lines()
        .filter(|l| l.trim_start().starts_with("for:"))
    {
        assert!(line.contains("# tunable:"), "unmarked tunable: {line}");
    }
    let readme = read("README.md");
    let mut documented = BTreeSet::new();
    for line in runbook.lines().filter(|l| l.starts_with("| `CephRBD")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let a = cells[1].trim_matches('`');
        let r = rule(a);
        assert_eq!(
            cells[2].trim_matches('`'),
            r.hold,
            "{RUNBOOK} tuning table: `for` of {a}"
        );
        for span in code_spans(cells[3]) {
            if span.starts_with("--") {
                assert!(
                    readme.contains(&format!("`{span}`")),
                    "{a}: exporter flag {span} is not in README"
                );
            } else {
                assert!(
                    r.expr.contains(&span),
                    "{RUNBOOK} tuning table: {a}'s threshold `{span}` is not in its expr"
                );
            }
        }
        documented.insert(a.to_string());
    }
    assert_eq!(
        documented,
        names.iter().map(|s| s.to_string()).collect(),
        "every alert in the tuning table"
    );

    // promtool unit tests: a firing and a non-firing case per alert, and the
    // rendered annotations at least once.
    let tests = yaml(&path(RULE_TESTS));
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut annotated = BTreeSet::new();
    for t in tests["tests"].as_array().unwrap() {
        for case in t["alert_rule_test"].as_array().unwrap() {
            let a = case["alertname"].as_str().unwrap().to_string();
            let exp = case["exp_alerts"].as_array().cloned().unwrap_or_default();
            if exp.is_empty() {
                quiet.insert(a);
            } else {
                if exp.iter().any(|e| e["exp_annotations"].is_object()) {
                    annotated.insert(a.clone());
                }
                firing.insert(a);
            }
        }
    }
    for a in &names {
        assert!(firing.contains(*a), "{a}: no promtool case where it fires");
        assert!(
            quiet.contains(*a),
            "{a}: no promtool case where it must not fire"
        );
        assert!(
            annotated.contains(*a),
            "{a}: no promtool case checks its annotations"
        );
    }

    // The real tools.
    let out = run("promtool", &["check", "rules", RULES]);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", ALERTS.len())),
        "{out}"
    );
    let out = run("promtool", &["test", "rules", RULE_TESTS]);
    assert!(out.contains("SUCCESS"), "{out}");
    run("amtool", &["check-config", AM_EXAMPLE]);
    eprintln!(
        "rules: {} alerts, promtool check + {} unit test groups pass",
        rules.len(),
        tests["tests"].as_array().unwrap().len()
    );
}

// ---------------------------------------------------------------------------
// Static checks of the dashboards.

#[test]
fn dashboards_are_well_formed() {
    let all = dashboards();
    let uids: BTreeSet<String> = all
        .iter()
        .map(|(_, d)| d["uid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        uids,
        BTreeSet::from([
            "ceph-rbd-image".to_string(),
            "ceph-rbd-overview".to_string()
        ]),
        "stable uids"
    );
    for (file, d) in &all {
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 36,
            "{file}: schemaVersion"
        );
        assert!(d["id"].is_null(), "{file}: id must be null for import");
        assert!(!d["title"].as_str().unwrap().is_empty());

        // Variables.
        let vars = variables(d);
        let var = |n: &str| {
            *vars
                .iter()
                .find(|v| v["name"] == n)
                .unwrap_or_else(|| panic!("{file}: no ${n} variable"))
        };
        assert_eq!(var("datasource")["type"], "datasource");
        assert_eq!(var("datasource")["query"], "prometheus");
        for n in ["job", "pool", "namespace", "image"] {
            let v = var(n);
            assert_eq!(v["type"], "query", "{file}: ${n}");
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{file}: ${n}");
            assert!(
                var_query(v).starts_with("label_values("),
                "{file}: ${n} query"
            );
        }

        // Panels.
        let mut ids = BTreeSet::new();
        let mut boxes: Vec<(i64, i64, i64, i64, String)> = Vec::new();
        for p in panels(d) {
            let title = p["title"].as_str().unwrap_or("").to_string();
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{file}: duplicate panel id"
            );
            let g = &p["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_i64().unwrap(),
                g["y"].as_i64().unwrap(),
                g["w"].as_i64().unwrap(),
                g["h"].as_i64().unwrap(),
            );
            assert!(
                x >= 0 && w > 0 && x + w <= 24 && h > 0,
                "{file}: {title}: gridPos"
            );
            for (bx, by, bw, bh, other) in &boxes {
                let overlap = x < bx + bw && bx < &(x + w) && y < by + bh && by < &(y + h);
                assert!(!overlap, "{file}: panels {title} and {other} overlap");
            }
            boxes.push((x, y, w, h, title.clone()));
            if p["type"] == "row" {
                continue;
            }
            assert!(!title.is_empty(), "{file}: panel without title");
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{file}: {title}");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {title}: no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{file}: {title}");
                assert!(!t["expr"].as_str().unwrap().trim().is_empty());
            }
        }
        // Links between the dashboards point at uids that exist.
        let text = serde_json::to_string(d).unwrap();
        for part in text.split("/d/").skip(1) {
            let uid = part.split('/').next().unwrap();
            assert!(
                uids.contains(uid),
                "{file}: link to unknown dashboard {uid}"
            );
        }
    }

    // What each dashboard must show.
    let exprs = |uid: &str| -> String {
        let (_, d) = all.iter().find(|(_, d)| d["uid"] == uid).unwrap();
        panels(d)
            .iter()
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
            .map(|t| t["expr"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let overview = exprs("ceph-rbd-overview");
    for m in [
        "ceph_rbd_pool_images",
        "ceph_rbd_pool_clones",
        "ceph_rbd_pool_watched_images",
        "ceph_rbd_pool_orphaned_watchers",
        "ceph_rbd_pool_stale_locks",
        "ceph_rbd_pool_flatten_pending_images",
        "ceph_rbd_pool_max_clone_depth",
        "ceph_rbd_pool_trash_images",
        "ceph_rbd_watcher_first_seen_timestamp_seconds",
        "ceph_rbd_image_orphaned_watchers",
        "ceph_rbd_image_stale_locks",
        "ceph_rbd_image_clone_depth",
        "ceph_rbd_snapshot_children",
        "ceph_rbd_exporter_up",
        "ceph_rbd_exporter_sample_duration_seconds",
        "ceph_rbd_exporter_last_success_timestamp_seconds",
        "ceph_rbd_exporter_source_up",
        "ceph_rbd_exporter_source_last_success_timestamp_seconds",
    ] {
        assert!(overview.contains(m), "overview does not show {m}");
    }
    let image = exprs("ceph-rbd-image");
    for m in [
        "ceph_rbd_image_watchers",
        "ceph_rbd_watcher_info",
        "ceph_rbd_watcher_first_seen_timestamp_seconds",
        "ceph_rbd_image_stale_locks",
        "ceph_rbd_image_clone_depth",
        "ceph_rbd_image_flatten_pending",
        "ceph_rbd_snapshot_children",
    ] {
        assert!(image.contains(m), "image detail does not show {m}");
    }
}

// ---------------------------------------------------------------------------
// Metric names against the exporter's real output.

#[test]
fn rules_and_dashboards_use_only_exported_metric_names() {
    let scratch = Scratch(scratch_dir("names"));
    let (_exporter, addr) = start_exporter(&write_attachments(&scratch.0));
    let (_, body) = http_get(&addr, "/metrics");
    let exported: BTreeSet<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    for n in [
        "ceph_rbd_image_orphaned_watchers",
        "ceph_rbd_exporter_source_up",
        "ceph_rbd_exporter_source_last_success_timestamp_seconds",
    ] {
        assert!(exported.contains(n), "{n} not exported:\n{body}");
    }
    // `up` is Prometheus' own.
    let known = |n: &str| n == "up" || exported.contains(n);

    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut rule_names = BTreeSet::new();
    for r in alert_rules() {
        for n in metric_names(&r.expr) {
            rule_names.insert(n.clone());
            used.entry(n)
                .or_default()
                .insert(format!("{RULES}: {}", r.alert));
        }
    }
    // Guards the extraction itself: the rules use exactly these.
    let expected: BTreeSet<String> = [
        "ceph_rbd_image_orphaned_watchers",
        "ceph_rbd_image_stale_locks",
        "ceph_rbd_image_clone_depth",
        "ceph_rbd_image_flatten_pending",
        "ceph_rbd_snapshot_children",
        "ceph_rbd_exporter_up",
        "ceph_rbd_exporter_last_success_timestamp_seconds",
        "ceph_rbd_exporter_sample_interval_seconds",
        "ceph_rbd_exporter_source_up",
        "up",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(rule_names, expected, "metric names found in the rules");

    for (file, d) in dashboards() {
        for p in panels(&d) {
            for t in p["targets"].as_array().cloned().unwrap_or_default() {
                for n in metric_names(t["expr"].as_str().unwrap()) {
                    used.entry(n)
                        .or_default()
                        .insert(format!("{file}: {}", p["title"]));
                }
            }
        }
        for v in variables(&d) {
            if v["type"] != "query" {
                continue;
            }
            let (selector, _) = parse_label_values(&var_query(v));
            for n in metric_names(&selector.unwrap_or_default()) {
                used.entry(n)
                    .or_default()
                    .insert(format!("{file}: ${}", v["name"].as_str().unwrap()));
            }
        }
    }
    let unknown: Vec<String> = used
        .iter()
        .filter(|(n, _)| !known(n))
        .map(|(n, w)| format!("{n} (in {w:?})"))
        .collect();
    assert!(
        unknown.is_empty(),
        "not exported by ceph-rbd-exporter:\n{}",
        unknown.join("\n")
    );
    eprintln!(
        "{} metric names used, all in the exporter's /metrics ({} names there)",
        used.len(),
        exported.len()
    );
}

// ---------------------------------------------------------------------------
// Dashboards against a real Prometheus that scraped the exporter.

/// What the variables are set to for one check of a dashboard.
struct VarRun {
    label: &'static str,
    values: Vec<(&'static str, &'static str)>,
}

#[test]
fn dashboard_panels_and_variables_return_data() {
    let scratch = Scratch(scratch_dir("dashboards"));
    let (exporter, exporter_addr) = start_exporter(&write_attachments(&scratch.0));
    let config = prometheus_config(&exporter_addr, &path(RULES), None);
    let (prom, p) = start_prometheus(&scratch.0, &config);

    // Scraped, and the project's rules loaded and evaluated without errors.
    let ready = wait_for(Duration::from_secs(30), "the first scrapes", || {
        let up = prom_query(&p, "ceph_rbd_exporter_up == 1").ok()?;
        let watchers = prom_query(&p, "ceph_rbd_watcher_info").ok()?;
        (!up.is_empty() && !watchers.is_empty()).then_some(())
    });
    assert!(ready.is_some(), "{}\n{}", prom.tail(30), exporter.tail(10));
    std::thread::sleep(Duration::from_secs(3)); // a few rule evaluations
    let rules = prom_api(&p, "/api/v1/rules").unwrap();
    let mut loaded = 0;
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "rule {} in Prometheus: {r}", r["name"]);
            loaded += 1;
        }
    }
    assert_eq!(loaded, ALERTS.len(), "rules loaded by Prometheus");

    let vars_for = |pool: &'static str, image: &'static str| {
        vec![
            ("datasource", "prometheus"),
            ("job", JOB),
            ("pool", pool),
            ("namespace", ".*"),
            ("image", image),
            ("__rate_interval", "1m"),
            ("__interval", "15s"),
            ("__range", "5m"),
        ]
    };
    // Overview: every query must return data with every variable set to All
    // (Grafana substitutes allValue ".*"), and with pool=volumes.
    // Image detail: no seeded image has everything at once (a watched clone
    // with a flatten reason has no snapshots), so it is checked with TWO
    // images and every query must return data for at least one of them:
    // volumes/volume-flatten-me (watcher, lock, clone depth 1, flatten_queued)
    // and images/8c0f7d1e-glance-base (protected snapshot with 3 children).
    let checks: Vec<(&str, bool, Vec<VarRun>)> = vec![
        (
            "ceph-rbd-overview",
            true,
            vec![
                VarRun {
                    label: "all pools",
                    values: vars_for(".*", ".*"),
                },
                VarRun {
                    label: "pool=volumes",
                    values: vars_for("volumes", ".*"),
                },
            ],
        ),
        (
            "ceph-rbd-image",
            false,
            vec![
                VarRun {
                    label: "volumes/volume-flatten-me",
                    values: vars_for("volumes", "volume-flatten-me"),
                },
                VarRun {
                    label: "images/8c0f7d1e-glance-base",
                    values: vars_for("images", "8c0f7d1e-glance-base"),
                },
            ],
        ),
    ];

    let all = dashboards();
    let mut problems = Vec::new();
    let mut report = Vec::new();
    for (uid, every_run, runs) in &checks {
        let (_, d) = all.iter().find(|(_, d)| d["uid"] == *uid).unwrap();
        for p_ in panels(d) {
            if p_["type"] == "row" {
                continue;
            }
            for t in p_["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                let mut counts = Vec::new();
                for r in runs {
                    let vars: BTreeMap<&str, String> =
                        r.values.iter().map(|(k, v)| (*k, v.to_string())).collect();
                    let q = substitute(expr, &vars);
                    match prom_query(&p, &q) {
                        Ok(series) => counts.push(series.len()),
                        Err(e) => {
                            problems.push(format!(
                                "{uid} / {} / {}: error ({}): {e}\n  {q}",
                                p_["title"], t["refId"], r.label
                            ));
                            counts.push(0);
                        }
                    }
                }
                let ok = if *every_run {
                    counts.iter().all(|&c| c > 0)
                } else {
                    counts.iter().any(|&c| c > 0)
                };
                if !ok {
                    problems.push(format!(
                        "{uid} / {} / {}: no data ({:?} series for {:?})",
                        p_["title"],
                        t["refId"],
                        counts,
                        runs.iter().map(|r| r.label).collect::<Vec<_>>()
                    ));
                }
                report.push(format!(
                    "  {uid} / {} / {}: {counts:?}",
                    p_["title"].as_str().unwrap(),
                    t["refId"].as_str().unwrap()
                ));
            }
        }

        // Template variables: label_values() through the label values API.
        for r in runs {
            let vars: BTreeMap<&str, String> =
                r.values.iter().map(|(k, v)| (*k, v.to_string())).collect();
            for v in variables(d) {
                if v["type"] != "query" {
                    continue;
                }
                let name = v["name"].as_str().unwrap();
                let (selector, label) = parse_label_values(&var_query(v));
                let mut url = format!("/api/v1/label/{label}/values");
                if let Some(sel) = &selector {
                    url.push_str(&format!("?match[]={}", encode(&substitute(sel, &vars))));
                }
                let values: Vec<String> = match prom_api(&p, &url) {
                    Ok(Value::Array(a)) => {
                        a.iter().map(|x| x.as_str().unwrap().to_string()).collect()
                    }
                    other => {
                        problems.push(format!("{uid} ${name} ({}): {other:?}", r.label));
                        continue;
                    }
                };
                report.push(format!("  {uid} ${name} ({}): {values:?}", r.label));
                // A pool with only the default namespace has no namespace label
                // value: Grafana then offers All (".*"), which selects it.
                if values.is_empty() && !(name == "namespace" && v["includeAll"] == true) {
                    problems.push(format!("{uid} ${name} ({}): no values", r.label));
                }
                let chosen = vars[name].as_str();
                if chosen != ".*" && !values.iter().any(|x| x == chosen) {
                    problems.push(format!(
                        "{uid} ${name} ({}): {chosen} is not among {values:?}",
                        r.label
                    ));
                }
            }
        }
        // The namespace variable lists real RBD namespaces.
        let ns_var = variables(d)
            .into_iter()
            .find(|v| v["name"] == "namespace")
            .unwrap();
        let (sel, label) = parse_label_values(&var_query(ns_var));
        let vars: BTreeMap<&str, String> = vars_for("k8s", ".*")
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        let url = format!(
            "/api/v1/label/{label}/values?match[]={}",
            encode(&substitute(&sel.unwrap(), &vars))
        );
        let values = prom_api(&p, &url).unwrap();
        if !values.as_array().unwrap().iter().any(|x| x == "tenant-a") {
            problems.push(format!("{uid} $namespace for pool k8s: {values}"));
        }
    }
    // The watcher tables have a host column even when the exporter cannot
    // name the host (no inventory here: every host is "", which Prometheus
    // drops, so the dashboards fill in "(unknown)").
    for (uid, title) in [
        ("ceph-rbd-overview", "Orphaned watchers"),
        ("ceph-rbd-image", "Watchers"),
    ] {
        let (_, d) = all.iter().find(|(_, d)| d["uid"] == uid).unwrap();
        let panel = panels(d)
            .into_iter()
            .find(|x| x["title"] == title && x["type"] == "table")
            .unwrap_or_else(|| panic!("{uid}: no table {title}"));
        let vars: BTreeMap<&str, String> = vars_for("volumes", "volume-zombie.deleted")
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        for t in panel["targets"].as_array().unwrap() {
            let q = substitute(t["expr"].as_str().unwrap(), &vars);
            let series = prom_query(&p, &q).unwrap();
            if series.is_empty() {
                problems.push(format!(
                    "{uid} / {title}: no watcher of volume-zombie.deleted"
                ));
            }
            for x in &series {
                if x["metric"]["host"] != "(unknown)" {
                    problems.push(format!("{uid} / {title}: host column: {x}"));
                }
            }
        }
    }
    eprintln!(
        "series per query and variable values:\n{}",
        report.join("\n")
    );
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// End to end: cluster -> exporter -> Prometheus -> Alertmanager -> webhook.

/// The rules with every `for:` replaced by `E2E_FOR`.
fn shortened_rules(dir: &Path) -> PathBuf {
    let text = read(RULES);
    let mut changed = 0;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let indent = &l[..l.len() - l.trim_start().len()];
            if l.trim_start().starts_with("for:") {
                changed += 1;
                format!("{indent}for: {E2E_FOR} # shortened by tests/alerting.rs")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(changed, ALERTS.len(), "one `for:` per alert");
    let p = dir.join("ceph-rbd-exporter.rules.yml");
    std::fs::write(&p, out.join("\n") + "\n").unwrap();
    run("promtool", &["check", "rules", p.to_str().unwrap()]);
    p
}

/// alerts/alertmanager.example.yml with its receivers pointed at `webhook`
/// and group timings of 1 s.
fn test_alertmanager_config(dir: &Path, webhook: &str) -> PathBuf {
    let text = read(AM_EXAMPLE);
    assert!(
        text.contains("http://127.0.0.1:5001/"),
        "the example's placeholder URL changed"
    );
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let indent = &l[..l.len() - l.trim_start().len()];
            let t = l.trim_start();
            if t.starts_with("group_wait:") {
                format!("{indent}group_wait: 1s")
            } else if t.starts_with("group_interval:") {
                format!("{indent}group_interval: 1s")
            } else {
                l.replace("http://127.0.0.1:5001/", &format!("http://{webhook}/"))
            }
        })
        .collect();
    let p = dir.join("alertmanager.yml");
    std::fs::write(&p, out.join("\n") + "\n").unwrap();
    run("amtool", &["check-config", p.to_str().unwrap()]);
    p
}

#[test]
fn alerts_fire_route_and_resolve_end_to_end() {
    let t0 = Instant::now();
    let pid = std::process::id();
    let deleted = format!("volume-e2e-{pid}.deleted");
    let locked = format!("volume-e2e-lock-{pid}");
    let deleted_spec = format!("volumes/{deleted}");
    let locked_spec = format!("volumes/{locked}");
    let _images = TestImages(vec![deleted_spec.clone(), locked_spec.clone()]);
    ceph_cli("rbd", &["create", "--size", "16M", &deleted_spec]);
    ceph_cli("rbd", &["create", "--size", "16M", &locked_spec]);
    // A stale advisory lock: `rbd lock add` exits, nobody watches the image.
    ceph_cli("rbd", &["lock", "add", &locked_spec, "e2e-cookie"]);
    // An orphaned watcher: a client holding a `.deleted` image open.
    let mut holder = Holder::start("volumes", &deleted, &["--write"]);

    let scratch = Scratch(scratch_dir("e2e"));
    eprintln!(
        "e2e: the `for:` of every alert is shortened to {E2E_FOR} in {} \
         (Alertmanager group_wait/group_interval 1s)",
        scratch.0.display()
    );
    let rules = shortened_rules(&scratch.0);
    let attachments = write_attachments(&scratch.0);
    let webhook = Webhook::start();
    let am_config = test_alertmanager_config(&scratch.0, &webhook.addr);
    let (am, am_addr) = Proc::start(
        "alertmanager",
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!("--storage.path={}", scratch.0.join("am").display()))
            .args([
                "--web.listen-address=127.0.0.1:0",
                "--cluster.listen-address=",
            ]),
        "msg=\"Listening on\"",
    );
    let (exporter, exporter_addr) = start_exporter(&attachments);
    let (prom, p) = start_prometheus(
        &scratch.0,
        &prometheus_config(&exporter_addr, &rules, Some(&am_addr)),
    );
    let diagnostics = || {
        format!(
            "received:\n{}\n{}\n{}\n{}",
            webhook.summary(),
            prom.tail(20),
            am.tail(20),
            exporter.tail(10)
        )
    };
    eprintln!("e2e: stack up after {:.1}s", t0.elapsed().as_secs_f64());

    // 1. The orphaned watcher pages, with the right labels, on the pager route.
    let orphan = [
        ("alertname", "CephRBDOrphanedWatcher"),
        ("pool", "volumes"),
        ("image", deleted.as_str()),
    ];
    let (route, fired_at, alert) =
        wait_for(Duration::from_secs(90), "CephRBDOrphanedWatcher", || {
            webhook.find("firing", &orphan)
        })
        .unwrap_or_else(|| panic!("CephRBDOrphanedWatcher never arrived\n{}", diagnostics()));
    eprintln!(
        "e2e: CephRBDOrphanedWatcher for {deleted_spec} after {:.1}s",
        fired_at.duration_since(t0).as_secs_f64()
    );
    assert_eq!(route, "/pager", "critical goes to the pager: {alert}");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["reason"], "image_deleted");
    assert!(
        alert["labels"].get("namespace").is_none(),
        "default namespace: no label {alert}"
    );
    let desc = alert["annotations"]["description"].as_str().unwrap();
    assert!(
        desc.contains(&deleted) && desc.contains("pool volumes"),
        "{desc}"
    );
    assert!(
        alert["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .ends_with("#cephrbdorphanedwatcher")
    );

    // 2. The stale lock warns, on the queue route.
    let stale = [
        ("alertname", "CephRBDStaleLock"),
        ("pool", "volumes"),
        ("image", locked.as_str()),
    ];
    let (route, at, alert) = wait_for(Duration::from_secs(60), "CephRBDStaleLock", || {
        webhook.find("firing", &stale)
    })
    .unwrap_or_else(|| panic!("CephRBDStaleLock never arrived\n{}", diagnostics()));
    eprintln!(
        "e2e: CephRBDStaleLock for {locked_spec} after {:.1}s",
        at.duration_since(t0).as_secs_f64()
    );
    assert_eq!(route, "/queue", "warning goes to the queue: {alert}");
    assert_eq!(alert["labels"]["severity"], "warning");

    // 3. The client crashes: its watch expires (~30 s) and the page resolves.
    //    Meanwhile the stale lock is removed, and that warning resolves too.
    holder.kill();
    let killed = Instant::now();
    let locks = rbd_json(&["lock", "ls", &locked_spec]);
    let locker = locks[0]["locker"].as_str().unwrap().to_string();
    ceph_cli("rbd", &["lock", "rm", &locked_spec, "e2e-cookie", &locker]);

    let (route, at, _) = wait_for(Duration::from_secs(60), "CephRBDStaleLock resolved", || {
        webhook.find("resolved", &stale)
    })
    .unwrap_or_else(|| panic!("the removed lock's alert never resolved\n{}", diagnostics()));
    assert_eq!(route, "/queue");
    eprintln!(
        "e2e: CephRBDStaleLock resolved {:.1}s after `rbd lock rm`",
        at.duration_since(killed).as_secs_f64()
    );
    let (route, resolved_at, alert) = wait_for(
        Duration::from_secs(120),
        "CephRBDOrphanedWatcher resolved",
        || webhook.find("resolved", &orphan),
    )
    .unwrap_or_else(|| panic!("the orphan page never resolved\n{}", diagnostics()));
    assert_eq!(route, "/pager");
    assert_eq!(alert["labels"]["reason"], "image_deleted");
    eprintln!(
        "e2e: CephRBDOrphanedWatcher resolved {:.1}s after the holder was killed",
        resolved_at.duration_since(killed).as_secs_f64()
    );
    // The crashed client left its exclusive lock behind: now a stale lock.
    let crash_lock = [
        ("alertname", "CephRBDStaleLock"),
        ("image", deleted.as_str()),
    ];
    wait_for(
        Duration::from_secs(30),
        "the crashed client's stale lock",
        || webhook.find("firing", &crash_lock),
    )
    .unwrap_or_else(|| {
        panic!(
            "no CephRBDStaleLock for the crashed client's lock\n{}",
            diagnostics()
        )
    });

    // 4. Nothing that should stay quiet spoke, ever.
    let received = webhook.alerts();
    for (route, _, a) in &received {
        let name = a["labels"]["alertname"].as_str().unwrap_or("?");
        assert_ne!(
            a["labels"]["image"], "volume-attached",
            "an alert names the legitimately watched volumes/volume-attached: {a}"
        );
        assert!(
            !matches!(
                name,
                "CephRBDExporterDown"
                    | "CephRBDExporterClusterUnreachable"
                    | "CephRBDExporterSourceDown"
                    | "CephRBDExporterSampleStale"
                    | "CephRBDSnapshotChildrenHigh"
            ),
            "{name} fired on a healthy exporter and a seeded cluster: {a}"
        );
        let expected_route = match a["labels"]["severity"].as_str() {
            Some("critical") => "/pager",
            _ => "/queue",
        };
        assert_eq!(route, expected_route, "routing of {a}");
        for k in ["summary", "description", "runbook_url"] {
            assert!(a["annotations"][k].is_string(), "{name}: no {k}");
        }
    }
    // Not even pending, in Prometheus.
    let attached = prom_query(
        &p,
        "count_over_time(ALERTS{image=\"volume-attached\"}[30m])",
    )
    .unwrap();
    assert!(
        attached.is_empty(),
        "ALERTS for volume-attached: {attached:?}"
    );

    // 5. The attachments file is truncated (an inventory job writing half a
    //    file): the source goes down, its verdicts are suspended, and
    //    CephRBDExporterSourceDown warns, naming it. Repaired, it resolves.
    std::fs::write(&attachments, "images:\n  - {image: volume-half-wri").unwrap();
    let broken = Instant::now();
    let source_down = [
        ("alertname", "CephRBDExporterSourceDown"),
        ("source", "file"),
    ];
    let (route, at, alert) = wait_for(Duration::from_secs(60), "CephRBDExporterSourceDown", || {
        webhook.find("firing", &source_down)
    })
    .unwrap_or_else(|| panic!("CephRBDExporterSourceDown never arrived\n{}", diagnostics()));
    eprintln!(
        "e2e: CephRBDExporterSourceDown for source=file {:.1}s after the file broke",
        at.duration_since(broken).as_secs_f64()
    );
    assert_eq!(route, "/queue", "warning goes to the queue: {alert}");
    assert_eq!(alert["labels"]["severity"], "warning");
    let desc = alert["annotations"]["description"].as_str().unwrap();
    assert!(
        desc.contains("attachment source file") && desc.contains("suspended"),
        "{desc}"
    );
    assert!(
        alert["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .ends_with("#cephrbdexportersourcedown")
    );
    // What the runbook says to look at first: the errors, by kind.
    let errors = prom_query(
        &p,
        "ceph_rbd_exporter_source_errors_total{source=\"file\",kind=\"config\"} > 0",
    )
    .unwrap();
    assert_eq!(
        errors.len(),
        1,
        "config errors of the file source: {errors:?}"
    );
    assert!(
        exporter.log.lock().unwrap().iter().any(|l| l
            .contains("attachment source failed; no verdicts from it until it answers")
            && l.contains("source=\"file\"")),
        "no log line \"attachment source failed\" (the alert points at it):\n{}",
        exporter.tail(20)
    );
    std::fs::write(&attachments, ATTACHMENTS_OK).unwrap();
    let repaired = Instant::now();
    let (route, at, _) = wait_for(
        Duration::from_secs(60),
        "CephRBDExporterSourceDown resolved",
        || webhook.find("resolved", &source_down),
    )
    .unwrap_or_else(|| panic!("the source-down warning never resolved\n{}", diagnostics()));
    assert_eq!(route, "/queue");
    eprintln!(
        "e2e: CephRBDExporterSourceDown resolved {:.1}s after the file was repaired",
        at.duration_since(repaired).as_secs_f64()
    );

    let received = webhook.alerts();
    let names: BTreeSet<&str> = received
        .iter()
        .filter_map(|(_, _, a)| a["labels"]["alertname"].as_str())
        .collect();
    eprintln!(
        "e2e: done in {:.1}s; {} notifications, alerts seen: {names:?}",
        t0.elapsed().as_secs_f64(),
        webhook.all().len()
    );
}
