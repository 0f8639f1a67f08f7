//! What differs from one Ceph release to the next, checked on the release
//! that has it. `make test` runs this file on the host (Ceph 16.2) and in the
//! Reef (18.2) and Tentacle (20.2) chroots (scripts/release-test.sh), and, for
//! the compatibility table, with a build of one release against a cluster of
//! another (scripts/matrix-test.sh). CEPH_RBD_TEST_RELEASE names the release
//! whose librados and CLI this run uses (pacific when unset).

mod common;

use ceph_rbd_exporter::ceph::{KeyType, keyring_key_type, loaded_ceph_version};
use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ceph-rbd-exporter");

fn release() -> String {
    std::env::var("CEPH_RBD_TEST_RELEASE").unwrap_or_else(|_| "pacific".into())
}

/// The librados this build runs with is the release the run claims: the
/// chroot builds really link their release's library, not the host's.
#[test]
fn the_loaded_librados_is_the_release_under_test() {
    let want = match release().as_str() {
        "pacific" => 16,
        "reef" => 18,
        "tentacle" => 20,
        other => panic!("unknown CEPH_RBD_TEST_RELEASE {other}"),
    };
    let loaded = loaded_ceph_version().expect("the loaded librados names its Ceph release");
    assert_eq!(loaded.major, want, "loaded librados is Ceph {loaded:?}");
    let cli = ceph_cli("ceph", &["--version"]);
    assert!(
        cli.starts_with(&format!("ceph version {want}.")),
        "the CLI the tests compare with is {cli}"
    );
}

/// The keyring of the cluster under test (client.admin's, as cluster.sh made
/// it with that release's defaults).
fn admin_key_type() -> (String, KeyType) {
    let conf_text = std::fs::read_to_string(conf()).unwrap();
    let keyring = conf_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("keyring = "))
        .expect("the test cluster's ceph.conf names its keyring")
        .to_string();
    let text = std::fs::read_to_string(&keyring).unwrap();
    let kt = keyring_key_type(&text, "client.admin").expect("client.admin has a key");
    (keyring, kt)
}

/// Against the cluster under test, whatever its release: if this build's
/// librados can read the cluster's default key, the exporter connects and
/// samples; if it cannot (a Ceph 20 cluster's aes256k key, a build against
/// librados older than 20.2.4), it stops at once with exit code 2 and a line
/// that names the keyring, the key type and the fix, never a bare "error -5".
#[test]
fn the_cluster_default_key_is_read_or_refused_with_the_fix() {
    let (keyring, kt) = admin_key_type();
    let loaded = loaded_ceph_version().expect("loaded release");
    let readable = kt.readable_by(loaded).unwrap_or(true);
    eprintln!("cluster key {kt:?} in {keyring}; librados {loaded:?}; readable: {readable}");
    if readable {
        let out = Command::new(BIN)
            .args(["--ceph.config", &conf(), "--ceph.user", "admin"])
            .args(["--log.level", "warn", "dump"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let images: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert!(images.len() >= 25, "only {} images", images.len());
        return;
    }
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["--ceph.config", &conf(), "--ceph.user", "admin"])
        .args(["--web.listen-address", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the exporter kept running with a key its librados cannot read");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("aes256k"))
        .unwrap_or_else(|| panic!("no line names the key type:\n{stderr}"));
    for needle in [
        keyring.as_str(),
        "client.admin",
        "librados",
        "20.2.4 or newer",
    ] {
        assert!(line.contains(needle), "{needle:?} missing from: {line}");
    }
    assert!(!stderr.contains("error -5"), "{stderr}");
}

/// Squid (19.2) and later clone from snapshots that are not user snapshots,
/// such as an image's snapshot taken as part of a group snapshot. Its
/// children count against it, as `rbd children` says, and when the group
/// snapshot is removed the image snapshot moves to the trash namespace and
/// its clone must be flattened, as `rbd info` shows.
#[test]
fn a_clone_of_a_group_snapshot_is_counted_and_flagged_when_trashed() {
    let help = Command::new("rbd")
        .args(["help", "clone"])
        .output()
        .unwrap();
    if !String::from_utf8_lossy(&help.stdout).contains("--snap-id") {
        eprintln!(
            "SKIPPED on {}: rbd clone has no --snap-id before Squid",
            release()
        );
        return;
    }
    let pool = "release-group";
    // A pool left by an earlier run that was killed.
    let _ = std::panic::catch_unwind(|| remove_pool(pool));
    let _pool = TestPool::new(pool);
    ceph_cli("rbd", &["create", "--size", "64M", &format!("{pool}/base")]);
    ceph_cli("rbd", &["group", "create", &format!("{pool}/grp")]);
    ceph_cli(
        "rbd",
        &[
            "group",
            "image",
            "add",
            &format!("{pool}/grp"),
            &format!("{pool}/base"),
        ],
    );
    ceph_cli(
        "rbd",
        &["group", "snap", "create", &format!("{pool}/grp@gs")],
    );
    let snaps = rbd_json(&["snap", "ls", "--all", &format!("{pool}/base")]);
    let group_snap = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["namespace"]["type"] == "group")
        .unwrap_or_else(|| panic!("no group snapshot on base: {snaps}"))
        .clone();
    let snap_id = group_snap["id"].to_string();
    ceph_cli(
        "rbd",
        &[
            "clone",
            "--snap-id",
            &snap_id,
            &format!("{pool}/base"),
            &format!("{pool}/child"),
        ],
    );

    let pool_flag = format!("--pools={pool}");
    let images = dump(&[&pool_flag]);
    let base = find(&images, pool, "", "base");
    let snap = base["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"].as_u64() == group_snap["id"].as_u64())
        .unwrap_or_else(|| panic!("group snapshot {snap_id} not in {base}"));
    assert_eq!(snap["children"], 1, "{snap}");
    let child = find(&images, pool, "", "child");
    assert_eq!(child["parent"]["image"], "base", "{child}");
    assert!(reasons(child).is_empty(), "{child}");

    // Removing the group snapshot moves the image snapshot to the trash
    // namespace (it still has a child); the clone must now be flattened.
    ceph_cli("rbd", &["group", "snap", "rm", &format!("{pool}/grp@gs")]);
    let info = rbd_json(&["info", &format!("{pool}/child")]);
    eprintln!("rbd info child after the group snapshot went: {info}");
    let images = dump(&[&pool_flag]);
    let child = find(&images, pool, "", "child");
    assert!(
        reasons(child).contains(&"parent_snapshot_trashed".to_string()),
        "{child}"
    );
}
