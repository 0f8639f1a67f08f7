//! The exporter as a [`Proc`] on the test cluster, with a file attachment
//! source, for the monitoring tests (rules, dashboards, alerting end to end).

use super::http::http_get;
use super::process::Proc;
use super::{BIN, ceph_cli, conf};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The attachments file every exporter here reads: a valid, empty list.
pub const ATTACHMENTS_OK: &str = "# written by tests/common/exporter.rs\nimages: []\n";

/// Writes `ATTACHMENTS_OK` to `dir/attachments.yml`.
pub fn write_attachments(dir: &Path) -> PathBuf {
    let p = dir.join("attachments.yml");
    std::fs::write(&p, ATTACHMENTS_OK).unwrap();
    p
}

/// The exporter on the test cluster, with `attachments` as its file source
/// (asked every second), once it has sampled the cluster and the source.
pub fn start_exporter(attachments: &Path) -> (Proc, String) {
    start_exporter_with(attachments, &conf(), &[])
}

/// [`start_exporter`] with another ceph.conf (`ceph_conf`) and `extra` flags
/// (e.g. `--ceph.user`, `--pools`). It waits for `ceph_rbd_exporter_up 1`,
/// so at least one selected pool must sample.
pub fn start_exporter_with(attachments: &Path, ceph_conf: &str, extra: &[&str]) -> (Proc, String) {
    let (exporter, addr) = Proc::start(
        "exporter",
        Command::new(BIN)
            .args(extra)
            .args([
                "--ceph.config",
                ceph_conf,
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

/// The test cluster's pools with the `rbd` application: what the exporter
/// samples without `--pools`.
pub fn rbd_pools() -> Vec<String> {
    let out = ceph_cli("ceph", &["osd", "pool", "ls", "detail", "--format", "json"]);
    let pools: Value = serde_json::from_str(&out).unwrap();
    pools
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["application_metadata"].get("rbd").is_some())
        .map(|p| p["pool_name"].as_str().unwrap().to_string())
        .collect()
}
