//! The production-shaped cluster of `scripts/faults-test.sh` (three mons,
//! four bluestore OSDs, size-2 pools `volumes` on OSDs 0-1 and `isolated`
//! on OSDs 2-3, a network namespace for the exporter), for the
//! tests/faults_*.rs tests. `scripts/faults-test.sh test` starts it, runs
//! them and removes it; the environment says where it is.

use super::{BIN, EXPORTER_USER, Exporter};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The mons, in the order of their ports.
pub const MONS: [&str; 3] = ["mon.a", "mon.b", "mon.c"];
/// The OSDs; `volumes` lives on the first two, `isolated` on the last two.
pub const OSDS: [&str; 4] = ["osd.0", "osd.1", "osd.2", "osd.3"];

/// Where the faults cluster is (from the environment faults-test.sh sets).
pub struct FaultCluster {
    /// Its directory: ceph.conf, exporter.conf, exporter.keyring, exporter.key, run/.
    pub dir: PathBuf,
    /// The network namespace for an exporter whose link can be cut
    /// (`None` in the release chroots, which run without one).
    pub ns: Option<String>,
    /// The namespace's side address, reachable from the host while its
    /// cluster link is down.
    pub side: Option<String>,
    /// The namespace's interface to the cluster (the link a test cuts).
    pub link: Option<String>,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests with `bash scripts/faults-test.sh test` (make test does)")
    })
}

/// The faults cluster; panics with how to run the tests when it is not up.
pub fn cluster() -> FaultCluster {
    FaultCluster {
        dir: PathBuf::from(env("CEPH_RBD_FAULTS_DIR")),
        ns: std::env::var("CEPH_RBD_FAULTS_NS").ok(),
        side: std::env::var("CEPH_RBD_FAULTS_SIDE").ok(),
        link: std::env::var("CEPH_RBD_FAULTS_LINK").ok(),
    }
}

impl FaultCluster {
    /// The namespace, its side address and its cluster link; panics when
    /// the cluster was made without them (FAULTS_NETNS=0).
    pub fn namespace(&self) -> (&str, &str, &str) {
        match (&self.ns, &self.side, &self.link) {
            (Some(ns), Some(side), Some(link)) => (ns, side, link),
            _ => panic!(
                "this faults cluster has no network namespace (FAULTS_NETNS=0): run this test with \
                 `bash scripts/faults-test.sh test` on the host"
            ),
        }
    }

    /// The admin's ceph.conf.
    pub fn admin_conf(&self) -> String {
        self.dir.join("ceph.conf").to_string_lossy().into_owned()
    }

    /// A ceph.conf whose keyring is the read-only exporter user's.
    pub fn exporter_conf(&self) -> String {
        self.dir
            .join("exporter.conf")
            .to_string_lossy()
            .into_owned()
    }

    /// The exporter user's bare key.
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("exporter.key")
    }

    /// `ceph ARGS` as admin, with a timeout; `None` when it failed.
    pub fn try_ceph(&self, args: &[&str], timeout_secs: u32) -> Option<String> {
        let out = Command::new("timeout")
            .arg(timeout_secs.to_string())
            .args(["ceph", "-c", &self.admin_conf()])
            .args(args)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ceph ARGS` as admin; panics when it fails.
    pub fn ceph(&self, args: &[&str]) -> String {
        self.try_ceph(args, 60)
            .unwrap_or_else(|| panic!("ceph {args:?} failed"))
    }

    /// scripts/cluster.sh stop-daemon, kill-daemon or start-daemon.
    pub fn daemon(&self, action: &str, name: &str) {
        let out = Command::new("bash")
            .arg(super::repo().join("scripts/cluster.sh"))
            .arg(action)
            .arg(&self.dir)
            .args(["0", name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster.sh {action} {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether a daemon's process runs.
    pub fn running(&self, name: &str) -> bool {
        let pid =
            std::fs::read_to_string(self.dir.join(format!("run/{name}.pid"))).unwrap_or_default();
        !pid.trim().is_empty() && PathBuf::from(format!("/proc/{}", pid.trim())).exists()
    }

    /// The mons (of those running) that have a session of `entity`
    /// (`client.rbd-exporter`), asked through each mon's admin socket.
    pub fn mons_with_session(&self, entity: &str) -> Vec<&'static str> {
        MONS.into_iter()
            .filter(|m| self.running(m))
            .filter(|m| {
                let asok = self.dir.join(format!("run/{m}.asok"));
                let out = Command::new("timeout")
                    .args(["10", "ceph", "--admin-daemon"])
                    .arg(asok)
                    .arg("sessions")
                    .output()
                    .unwrap();
                let sessions: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                sessions.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|s| s["entity_name"] == entity && s["open"] != false)
                })
            })
            .collect()
    }

    /// Starts every daemon that does not run and waits until all three mons
    /// are in quorum, all four OSDs up and every PG active+clean.
    pub fn restore(&self) {
        for d in MONS.into_iter().chain(OSDS) {
            if !self.running(d) {
                self.daemon("start-daemon", d);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let quorum = self
                .try_ceph(&["quorum_status"], 10)
                .and_then(|q| serde_json::from_str::<Value>(&q).ok())
                .and_then(|q| q["quorum"].as_array().map(|a| a.len()));
            let osds_up = self
                .try_ceph(&["osd", "dump", "--format", "json"], 10)
                .and_then(|d| serde_json::from_str::<Value>(&d).ok())
                .and_then(|d| {
                    d["osds"]
                        .as_array()
                        .map(|a| a.iter().filter(|o| o["up"] == 1).count())
                });
            let clean = self.try_ceph(&["pg", "stat"], 10).is_some_and(|s| {
                let head = s.split(';').next().unwrap_or("").to_string();
                // "25 pgs: 25 active+clean"
                let mut words = head.split_whitespace();
                let total = words.next();
                words.next();
                words.next() == total && words.next() == Some("active+clean")
            });
            if quorum == Some(3) && osds_up == Some(4) && clean {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not healthy again after 120 s: quorum {quorum:?}, OSDs up {osds_up:?}, pgs {:?}",
                self.try_ceph(&["pg", "stat"], 10)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The exporter on this host as the read-only user (its keyring named in
    /// exporter.conf), sampling every 2 s.
    pub fn exporter(&self, extra: &[&str]) -> Exporter {
        Exporter::start_with_conf(&self.exporter_conf(), EXPORTER_USER, extra)
    }

    /// The exporter inside the namespace, serving on its side address
    /// (reachable from the host while the cluster link is down).
    pub fn exporter_in_namespace(&self, extra: &[&str]) -> Exporter {
        let (ns, side, _) = self.namespace();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, BIN])
            .args(["--ceph.config", &self.exporter_conf()])
            .args(["--ceph.user", EXPORTER_USER])
            .args(["--web.listen-address", &format!("{side}:0")])
            .args(["--sample.interval", "2s"])
            .args(extra);
        Exporter::start_command(cmd)
    }

    /// Sets the namespace's cluster link down or up.
    pub fn set_link(&self, up: bool) {
        let (ns, _, link) = self.namespace();
        let state = if up { "up" } else { "down" };
        let ok = Command::new("ip")
            .args(["-n", ns, "link", "set", link, state])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip -n {ns} link set {link} {state}");
    }
}

/// Puts the cluster back (every daemon running, healthy) when a test ends,
/// passed or failed, so the next test starts from a healthy cluster.
pub struct Restore<'a>(pub &'a FaultCluster);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Best effort: a second panic would abort the test binary.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.restore()));
        } else {
            self.0.restore();
        }
    }
}

/// Whether /metrics says `ceph_rbd_exporter_up 1`.
pub fn up(body: &str) -> bool {
    super::metric_value(body, "ceph_rbd_exporter_up") == Some(1.0)
}

/// Now, as Unix time in seconds (what the exporter's timestamps are).
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
