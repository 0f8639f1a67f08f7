//! The exporter as a [`Proc`] on the test cluster, with a file attachment
//! source, for the monitoring tests (rules, dashboards, alerting end to end).

use super::http::http_get;
use super::process::Proc;
use super::{BIN, conf};
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
