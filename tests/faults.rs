//! Cluster faults while the exporter runs: a mon that goes away and comes
//! back, images and pools that churn during samples, and a pool list that
//! names a pool that does not exist.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn cluster_dir() -> PathBuf {
    PathBuf::from(conf()).parent().unwrap().to_path_buf()
}

fn cluster_sh(args: &[&str]) {
    let status = Command::new("bash")
        .arg(repo().join("scripts/cluster.sh"))
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "cluster.sh {args:?}");
}

fn up(b: &str, v: u8) -> bool {
    b.lines().any(|l| l == format!("ceph_rbd_exporter_up {v}"))
}

/// Restarts the mon even if the test fails half way.
struct MonGuard;

impl Drop for MonGuard {
    fn drop(&mut self) {
        let dir = cluster_dir();
        let pid = std::fs::read_to_string(dir.join("run/mon.a.pid")).unwrap_or_default();
        let alive = Command::new("kill")
            .args(["-0", pid.trim()])
            .status()
            .is_ok_and(|s| s.success());
        if !alive {
            cluster_sh(&["start-daemon", dir.to_str().unwrap(), "0", "mon.a"]);
        }
    }
}

#[test]
fn mon_stopped_and_restarted_exporter_keeps_serving_then_recovers() {
    let exporter = Exporter::start(&["--ceph.op-timeout", "2s", "--pools", "volumes"]);
    let before = exporter.wait_metrics(Duration::from_secs(30), |b| up(b, 1));
    let success = r#"ceph_rbd_exporter_last_success_timestamp_seconds{pool="volumes"}"#;
    let dir = cluster_dir();
    let dir = dir.to_str().unwrap();
    let _guard = MonGuard;

    cluster_sh(&["stop-daemon", dir, "0", "mon.a"]);
    let during = exporter.wait_metrics(Duration::from_secs(30), |b| up(b, 0));
    // The last sample is still served, and its success time is frozen.
    assert!(without_image_id(&during).contains(
        r#"ceph_rbd_image_watchers{image="volume-attached",namespace="",pool="volumes"} 1"#
    ));
    let frozen = metric_value(&during, success).unwrap();
    assert!(frozen >= metric_value(&before, success).unwrap());
    std::thread::sleep(Duration::from_secs(4));
    let (status, later) = exporter.get("GET", "/metrics");
    assert_eq!(status, 200);
    assert_eq!(metric_value(&later, success).unwrap(), frozen);

    cluster_sh(&["start-daemon", dir, "0", "mon.a"]);
    let back_at = Instant::now();
    let after = exporter.wait_metrics(Duration::from_secs(60), |b| {
        up(b, 1) && metric_value(b, success).is_some_and(|t| t > frozen)
    });
    eprintln!(
        "recovered {:.1} s after the mon came back",
        back_at.elapsed().as_secs_f64()
    );
    assert!(without_image_id(&after).contains(
        r#"ceph_rbd_image_watchers{image="volume-attached",namespace="",pool="volumes"} 1"#
    ));
}

/// Python churn in one pool: create, rename, clone, trash and remove images
/// as fast as it can for `seconds`.
fn churn(pool: &str, seconds: u32) -> std::process::Child {
    let script = format!(
        r#"
import rados, rbd, time, random
c = rados.Rados(conffile="{conf}"); c.connect()
io = c.open_ioctx("{pool}")
r = rbd.RBD()
end = time.time() + {seconds}
i = 0
while time.time() < end:
    i += 1
    name = "churn-%d" % i
    try:
        r.create(io, name, 1 << 20)
        if i % 3 == 0:
            r.rename(io, name, name + "-renamed"); name += "-renamed"
        if i % 5 == 0:
            with rbd.Image(io, name) as im:
                im.create_snap("s")
            r.clone(io, name, "s", io, name + "-clone")
            r.remove(io, name + "-clone")
            with rbd.Image(io, name) as im:
                im.remove_snap("s")
        if i % 4 == 0:
            r.trash_move(io, name, 0)
        elif i % 2 == 0:
            r.remove(io, name)
    except rbd.Error:
        pass
"#,
        conf = conf(),
    );
    Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .spawn()
        .unwrap()
}

#[test]
fn churn_and_pool_create_delete_during_samples() {
    let pool = format!("churn{}", std::process::id());
    let exporter = Exporter::start(&[]);
    exporter.wait_metrics(Duration::from_secs(30), |b| up(b, 1));

    // A pool created while running shows up in the next samples.
    ceph_cli("ceph", &["osd", "pool", "create", &pool, "8"]);
    ceph_cli("rbd", &["pool", "init", &pool]);
    let images_series = format!("ceph_rbd_pool_images{{namespace=\"\",pool=\"{pool}\"}}");
    exporter.wait_metrics(Duration::from_secs(30), |b| b.contains(&images_series));

    let mut churner = churn(&pool, 8);
    let mut dumps = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(8) {
        // Every sample taken mid-churn lists each image once.
        let images = dump(&["--pools", &pool]);
        let mut ids = HashSet::new();
        let mut live_names = HashSet::new();
        for i in &images {
            assert!(
                ids.insert(i["id"].as_str().unwrap().to_string()),
                "image reported twice: {i}"
            );
            if i["in_trash"] == Value::Bool(false) {
                assert!(
                    live_names.insert(i["image"].as_str().unwrap().to_string()),
                    "name twice: {i}"
                );
            }
        }
        dumps += 1;
    }
    assert!(churner.wait().unwrap().success(), "churn script failed");
    assert!(dumps >= 3, "only {dumps} samples during churn");
    // Let the exporter take a few samples after the churn too.
    std::thread::sleep(Duration::from_secs(3));
    let (_, body) = exporter.get("GET", "/metrics");
    let errors = pool_errors(&body, &pool);
    assert!(errors.is_empty(), "churn caused sample errors: {errors:?}");
    assert!(up(&body, 1));

    // A pool deleted while running disappears from the next samples.
    remove_pool(&pool);
    let gone = exporter.wait_metrics(Duration::from_secs(30), |b| {
        !b.contains(&format!("pool=\"{pool}\""))
    });
    assert!(up(&gone, 1));
}

#[test]
fn unknown_pool_in_pools_flag_is_reported() {
    let exporter = Exporter::start(&["--pools", "volumes,no-such-pool"]);
    let body = exporter.wait_metrics(Duration::from_secs(30), |b| {
        b.contains(
            r#"ceph_rbd_exporter_sample_errors_total{kind="unknown_pool",pool="no-such-pool"}"#,
        )
    });
    assert!(up(&body, 1), "the pools that exist are still sampled");
    assert!(body.contains(r#"ceph_rbd_pool_images{namespace="",pool="volumes"}"#));
}
