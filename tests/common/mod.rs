//! Shared helpers for the integration tests: the test cluster, the CLI, a
//! running exporter, holder processes and HTTP. The submodules hold the
//! rest: a process harness, Prometheus, Alertmanager, PromQL, the project's
//! rules and dashboards, and parsing of /metrics.
#![allow(dead_code)] // each test binary uses a different subset

pub mod alertmanager;
pub mod artifacts;
pub mod exporter;
pub mod faults;
pub mod grafana;
pub mod http;
pub mod metrics;
pub mod process;
pub mod prometheus;
pub mod promql;
pub mod webdriver;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ceph-rbd-exporter");

/// The test cluster's ceph.conf. Panics with instructions when unset, so
/// a run without a cluster fails loudly instead of passing vacuously.
pub fn conf() -> String {
    std::env::var("CEPH_RBD_TEST_CONF")
        .expect("CEPH_RBD_TEST_CONF is not set: run these tests with `make test` (scripts/test.sh)")
}

pub fn state_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("CEPH_RBD_TEST_STATE")
            .expect("CEPH_RBD_TEST_STATE is not set: run `make test`"),
    )
}

/// One item of the seed's record (`state/seed.json`, `items[n]`).
pub fn seed_item(n: &str) -> serde_json::Value {
    let path = state_dir().join("seed.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let seed: serde_json::Value = serde_json::from_str(&text).expect("seed.json is JSON");
    seed["items"][n].clone()
}

/// The reason the seed could not set up item `n` on this release (it says
/// why, e.g. Debian 13's mgr cannot load rbd_support), printed so the skip is
/// visible in the test log; `None` when the item was set up.
pub fn seed_skipped(n: &str) -> Option<String> {
    let why = seed_item(n)["skipped"].as_str()?.to_string();
    eprintln!("SKIPPED seed item {n} on this release: {why}");
    Some(why)
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a Ceph CLI tool against the test cluster and returns stdout.
pub fn ceph_cli(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .env("CEPH_CONF", conf())
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn rbd_json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    let out = ceph_cli("rbd", &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("rbd {args:?}: {e}: {out}"))
}

/// The cephx user the exporter runs as in tests: the read-only caps the
/// README documents, never admin.
pub const EXPORTER_USER: &str = "rbd-exporter";

/// The caps of [`EXPORTER_USER`], as `ceph auth get-or-create` takes them.
pub const EXPORTER_CAPS: [&str; 4] = ["mon", "profile rbd", "osd", "profile rbd-read-only"];

/// A ceph.conf for the exporter's read-only user (made once per test binary).
pub fn exporter_conf() -> String {
    static CONF: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CONF.get_or_init(|| {
        let user = format!("client.{EXPORTER_USER}");
        let mut args = vec!["auth", "get-or-create", &user];
        args.extend(EXPORTER_CAPS);
        let keyring = ceph_cli("ceph", &args);
        let path = scratch_dir("exporter-user").join("keyring");
        std::fs::write(&path, keyring).unwrap();
        conf_variant("exporter-user-conf", path.to_str().unwrap(), None)
    })
    .clone()
}

/// The exporter binary as the read-only user, logging warnings only; add
/// flags and a subcommand.
pub fn exporter_command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--ceph.config",
        &exporter_conf(),
        "--ceph.user",
        EXPORTER_USER,
        "--log.level",
        "warn",
    ]);
    cmd
}

/// `ceph-rbd-exporter dump` as JSON, as the read-only user.
pub fn dump(extra: &[&str]) -> Vec<Value> {
    let out = exporter_command().args(extra).arg("dump").output().unwrap();
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

pub fn find<'a>(images: &'a [Value], pool: &str, ns: &str, name: &str) -> &'a Value {
    images
        .iter()
        .find(|i| i["pool"] == pool && i["namespace"] == ns && i["image"] == name)
        .unwrap_or_else(|| panic!("{pool}/{ns}/{name} not in dump"))
}

pub fn reasons(image: &Value) -> Vec<String> {
    image["flatten_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

pub fn snapshot<'a>(image: &'a Value, name: &str) -> &'a Value {
    image["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("snapshot {name} not found in {}", image["image"]))
}

/// A running exporter, killed on drop.
pub struct Exporter {
    /// The exporter process.
    pub child: Child,
    /// Its HTTP address.
    pub addr: String,
    /// Everything it wrote to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Exporter {
    /// Starts the exporter as the read-only user on an ephemeral port.
    pub fn start(extra: &[&str]) -> Exporter {
        Self::start_with_conf(&exporter_conf(), EXPORTER_USER, extra)
    }

    pub fn start_with_conf(conf: &str, user: &str, extra: &[&str]) -> Exporter {
        let mut cmd = Command::new(BIN);
        cmd.args(["--ceph.config", conf, "--ceph.user", user])
            .args(["--web.listen-address", "127.0.0.1:0"])
            .args(["--sample.interval", "2s"])
            .args(extra);
        Self::start_command(cmd)
    }

    /// Starts `cmd`, which runs the exporter (perhaps through `ip netns
    /// exec`), and waits until it serves.
    pub fn start_command(mut cmd: Command) -> Exporter {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && line.contains("serving metrics") {
                    let addr = line
                        .split("address=")
                        .nth(1)
                        .unwrap()
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .to_string();
                    tx.send(addr).unwrap();
                    sent = true;
                } else if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("exporter: {line}");
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| {
                // Give the reader a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "exporter did not start serving ({e}):\n{}",
                    log.lock().unwrap()
                )
            });
        Exporter { child, addr, log }
    }

    /// Its stderr so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn get(&self, method: &str, path: &str) -> (u16, String) {
        http(&self.addr, method, path)
    }

    /// Waits until /metrics satisfies `pred`.
    pub fn wait_metrics(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, body) = self.get("GET", "/metrics");
            if pred(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "metrics never matched; last:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let buf = http::raw_request(addr, method, path, "test", Duration::from_secs(10));
    let (status, body) = http::parse_response(&buf);
    assert_ne!(
        status,
        0,
        "no HTTP status from {addr}: {}",
        String::from_utf8_lossy(&buf)
    );
    (status, body)
}

pub fn has_series(body: &str, prefix: &str) -> bool {
    body.lines().any(|l| l.starts_with(prefix))
}

/// Starts a holder process on an image; killed with SIGKILL on drop.
pub struct Holder(pub Child);

impl Holder {
    pub fn start(pool: &str, image: &str, extra: &[&str]) -> Holder {
        Self::start_on(&conf(), pool, image, extra)
    }

    /// [`Holder::start`], with what the holder wrote to its ready file
    /// (scripts/holder.py): `pid`, `client` (`client.N`), `address` (as
    /// `rbd status` shows the watcher), `lock_owner`.
    pub fn start_with_info(pool: &str, image: &str, extra: &[&str]) -> (Holder, Value) {
        let holder = Self::start(pool, image, extra);
        let text = std::fs::read_to_string(Self::ready_file(image)).unwrap();
        (holder, serde_json::from_str(&text).unwrap())
    }

    fn ready_file(image: &str) -> PathBuf {
        std::env::temp_dir().join(format!("holder-{}-{image}.ready", std::process::id()))
    }

    /// A holder on another cluster than the test cluster.
    pub fn start_on(conf: &str, pool: &str, image: &str, extra: &[&str]) -> Holder {
        let ready = Self::ready_file(image);
        let _ = std::fs::remove_file(&ready);
        let child = Command::new("/usr/bin/python3")
            .arg(repo().join("scripts/holder.py"))
            .args([
                "--conf",
                conf,
                "--pool",
                pool,
                "--image",
                image,
                "--ready-file",
            ])
            .arg(&ready)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.exists() {
            assert!(
                Instant::now() < deadline,
                "holder on {pool}/{image} never became ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Holder(child)
    }

    /// Lets the holder release the image cleanly (it exits when its stdin
    /// closes: no watch or lock is left behind); kills it after 20 s.
    pub fn release(&mut self) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn run_exporter(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .args([
            "--web.listen-address",
            "127.0.0.1:0",
            "--ceph.op-timeout",
            "3s",
        ])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ceph-rbd-exporter-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A copy of the test ceph.conf with `keyring` (and optionally the mon
/// address) replaced.
pub fn conf_variant(name: &str, keyring: &str, mon_host: Option<&str>) -> String {
    let text = std::fs::read_to_string(conf()).unwrap();
    let out = conf_text_with(&text, keyring, mon_host);
    let path = scratch_dir(name).join("ceph.conf");
    std::fs::write(&path, out).unwrap();
    path.to_string_lossy().to_string()
}

/// The ceph.conf `text` with `keyring` (and optionally the mon address)
/// replaced.
pub fn conf_text_with(text: &str, keyring: &str, mon_host: Option<&str>) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let key = line.trim_start().split('=').next().unwrap_or("").trim();
        match key {
            "keyring" => out.push_str(&format!("keyring = {keyring}\n")),
            "mon host" if mon_host.is_some() => {
                out.push_str(&format!("mon host = {}\n", mon_host.unwrap()))
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Pauses a daemon of the test cluster (SIGSTOP) and resumes it on drop.
pub struct Paused(pub u32);

impl Paused {
    pub fn daemon(name: &str) -> Paused {
        let run = PathBuf::from(conf()).parent().unwrap().join("run");
        let pid: u32 = std::fs::read_to_string(run.join(format!("{name}.pid")))
            .unwrap_or_else(|e| panic!("pid of {name}: {e}"))
            .trim()
            .parse()
            .unwrap();
        assert!(
            Command::new("kill")
                .args(["-STOP", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

pub fn metric_value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

/// Runs `promtool check metrics` on an exposition body.
pub fn promtool_check_metrics(body: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed by scripts/install-deps.sh");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `sample_errors_total` lines that name a pool.
pub fn pool_errors<'a>(body: &'a str, pool: &str) -> Vec<&'a str> {
    let label = format!("pool=\"{pool}\"");
    body.lines()
        .filter(|l| l.starts_with("ceph_rbd_exporter_sample_errors_total") && l.contains(&label))
        .collect()
}

/// An RBD pool of one test's own (created and `rbd pool init`ed), removed
/// when the test ends, passed or failed.
pub struct TestPool(pub String);

impl TestPool {
    pub fn new(name: &str) -> TestPool {
        ceph_cli("ceph", &["osd", "pool", "create", name, "8"]);
        ceph_cli("rbd", &["pool", "init", name]);
        TestPool(name.to_string())
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::panic::catch_unwind(|| remove_pool(&name));
    }
}

/// A RADOS object a test created (pool, name), removed on drop.
pub struct TestObject(&'static str, &'static str);

impl TestObject {
    /// Creates the (empty) object.
    pub fn create(pool: &'static str, name: &'static str) -> TestObject {
        ceph_cli("rados", &["-p", pool, "create", name]);
        TestObject(pool, name)
    }
}

impl Drop for TestObject {
    fn drop(&mut self) {
        let _ = Command::new("rados")
            .args(["-p", self.0, "rm", self.1])
            .env("CEPH_CONF", conf())
            .output();
    }
}

/// Removes a pool the test made.
pub fn remove_pool(pool: &str) {
    ceph_cli(
        "ceph",
        &[
            "osd",
            "pool",
            "rm",
            pool,
            pool,
            "--yes-i-really-really-mean-it",
        ],
    );
}

/// The exposition with every `image_id="..."` label taken out, so that
/// tests can name per-image series exactly without knowing the ids Ceph
/// picked.
pub fn without_image_id(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.find("image_id=\"") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "image_id=\"".len()..];
        let end = after.find('"').map_or(after.len(), |j| j + 1);
        rest = after[end..].strip_prefix(',').unwrap_or(&after[end..]);
    }
    out.push_str(rest);
    out
}
