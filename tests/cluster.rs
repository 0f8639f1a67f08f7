//! Integration tests against a real throwaway cluster seeded with the `test`
//! layout of scripts/seed.py. `make test` (scripts/test.sh) starts the
//! cluster, seeds it and sets CEPH_RBD_TEST_CONF and CEPH_RBD_TEST_STATE.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn field_scenarios_are_seen_as_operators_expect() {
    let images = dump(&[]);

    // Pools: the rbd ones only.
    let pools: BTreeSet<&str> = images.iter().map(|i| i["pool"].as_str().unwrap()).collect();
    assert!(
        !pools.contains("not-rbd"),
        "a pool without the rbd application was sampled"
    );

    // 1. Glance image whose protected snap has children in two other pools.
    let glance = find(&images, "images", "", "8c0f7d1e-glance-base");
    let snap = snapshot(glance, "snap");
    assert_eq!(snap["protected"], true);
    assert_eq!(
        snap["children"], 3,
        "volume-from-glance, the nova disk and volume-flatten-me"
    );
    let child_pools: BTreeSet<&str> = snap["v2_children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().split('/').next().unwrap())
        .collect();
    assert_eq!(child_pools, BTreeSet::from(["vms", "volumes"]));

    // 2. Cinder chain deeper than 5.
    for i in 0..=6 {
        let img = find(&images, "volumes", "", &format!("volume-chain-{i}"));
        assert_eq!(img["clone_depth"]["depth"], i, "volume-chain-{i}");
        assert_eq!(img["clone_depth"]["complete"], true);
        assert_eq!(
            reasons(img).contains(&"clone_depth_exceeded".to_string()),
            i > 5,
            "volume-chain-{i}"
        );
    }
    let parent_snap = snapshot(
        find(&images, "volumes", "", "volume-chain-5"),
        "volume-chain-6.clone_snap",
    );
    assert_eq!(parent_snap["children"], 1);

    // 3. v1 clone: parent from the header, child count from rbd_children.
    let legacy = find(&images, "volumes", "", "legacy-child");
    assert_eq!(legacy["parent"]["image"], "legacy-parent");
    assert_eq!(legacy["parent"]["snapshot"], "base");
    assert_eq!(legacy["clone_depth"]["depth"], 1);
    let base = snapshot(find(&images, "volumes", "", "legacy-parent"), "base");
    assert_eq!(base["children"], 1);
    assert_eq!(base["v2_children"].as_array().unwrap().len(), 0);

    // 4. Clone v2 whose parent snapshot was removed (trash namespace).
    let snap_trashed = find(&images, "volumes", "", "volume-snap-trashed");
    assert_eq!(reasons(snap_trashed), vec!["parent_snapshot_trashed"]);
    assert_eq!(snap_trashed["parent"]["snapshot_trashed"], true);
    let golden = find(&images, "images", "", "golden");
    let trashed: Vec<&Value> = golden["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["namespace"]["type"] == "trash")
        .collect();
    assert_eq!(trashed.len(), 1);
    assert_eq!(trashed[0]["namespace"]["original_name"], "gone");

    // 5. Parent image in the trash.
    let parent_trashed = find(&images, "volumes", "", "volume-parent-trashed");
    assert_eq!(reasons(parent_trashed), vec!["parent_image_trashed"]);
    assert_eq!(find(&images, "images", "", "retired")["in_trash"], true);

    // 6. `.deleted` parent.
    assert_eq!(
        reasons(find(&images, "volumes", "", "volume-child-of-deleted")),
        vec!["parent_deleted"]
    );

    // 7. Live watchers, one with the exclusive lock; two clients on one image.
    let attached = find(&images, "volumes", "", "volume-attached");
    assert_eq!(attached["watchers"].as_array().unwrap().len(), 1);
    assert_eq!(attached["watchers"][0]["orphan_reason"], Value::Null);
    let locks = attached["locks"].as_array().unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0]["kind"], "exclusive");
    assert_eq!(locks[0]["stale"], false);
    assert_eq!(
        locks[0]["cookie"].as_str().unwrap(),
        format!("auto {}", attached["watchers"][0]["cookie"])
    );
    let multi = find(&images, "volumes", "", "volume-multiattach");
    let clients: BTreeSet<&str> = multi["watchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["client"].as_str().unwrap())
        .collect();
    assert_eq!(clients.len(), 2);
    assert!(multi["locks"].as_array().unwrap().is_empty());

    // 8. Watcher on a `.deleted` image.
    let zombie = find(&images, "volumes", "", "volume-zombie.deleted");
    assert_eq!(zombie["watchers"][0]["orphan_reason"], "image_deleted");

    // 9. Watcher on a trashed image.
    let trashed_held = find(&images, "volumes", "", "volume-trashed-held");
    assert_eq!(trashed_held["in_trash"], true);
    assert_eq!(
        trashed_held["watchers"][0]["orphan_reason"],
        "image_trashed"
    );

    // 10. Stale advisory lock.
    let locked = find(&images, "volumes", "", "volume-locked");
    assert_eq!(locked["locks"][0]["kind"], "advisory");
    assert_eq!(locked["locks"][0]["cookie"], "stale-cookie");
    assert_eq!(locked["locks"][0]["stale"], true);

    // 11. Queued flatten task (its blocker's lock is held by a live watcher).
    let flatten = find(&images, "volumes", "", "volume-flatten-me");
    assert_eq!(
        reasons(flatten).contains(&"flatten_queued".to_string()),
        seed_skipped("11").is_none(),
        "{flatten}"
    );
    assert!(
        flatten["locks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["stale"] == false)
    );

    // 12. RBD namespace.
    let csi = find(&images, "k8s", "tenant-a", "csi-vol-0001");
    assert_eq!(csi["watchers"].as_array().unwrap().len(), 1);
    let csi_clone = find(&images, "k8s", "tenant-a", "csi-vol-0002");
    assert_eq!(csi_clone["parent"]["namespace"], "tenant-a");
    assert_eq!(csi_clone["parent"]["image"], "csi-snap-base");
    assert_eq!(csi_clone["clone_depth"]["depth"], 1);
    find(&images, "k8s", "", "csi-vol-default");

    // 13-14. Quiet things stay quiet.
    let backup = snapshot(attached, "backup.5f1e.snap.1700000000");
    assert_eq!(backup["protected"], false);
    let idle = find(&images, "vms", "", "idle-disk");
    assert!(idle["watchers"].as_array().unwrap().is_empty());
    assert!(reasons(idle).is_empty());
}

#[test]
fn pools_flag_limits_sampling() {
    let images = dump(&["--pools", "k8s"]);
    assert!(!images.is_empty());
    assert!(images.iter().all(|i| i["pool"] == "k8s"));

    // Parents outside the sampled pools are still followed.
    let volumes = dump(&["--pools", "volumes"]);
    assert!(volumes.iter().all(|i| i["pool"] == "volumes"));
    let from_glance = find(&volumes, "volumes", "", "volume-from-glance");
    assert_eq!(from_glance["clone_depth"]["depth"], 1);
    assert_eq!(from_glance["clone_depth"]["complete"], true);
    assert_eq!(from_glance["parent"]["image"], "8c0f7d1e-glance-base");
    assert_eq!(
        reasons(find(&volumes, "volumes", "", "volume-snap-trashed")),
        vec!["parent_snapshot_trashed"]
    );
    assert_eq!(
        reasons(find(&volumes, "volumes", "", "volume-parent-trashed")),
        vec!["parent_image_trashed"]
    );
}

// ---------------------------------------------------------------------------
// Differential test: what the exporter learned equals what the rbd CLI says.

fn feature_names(bits: u64) -> BTreeSet<String> {
    const NAMES: [&str; 11] = [
        "layering",
        "striping",
        "exclusive-lock",
        "object-map",
        "fast-diff",
        "deep-flatten",
        "journaling",
        "data-pool",
        "operations",
        "migrating",
        "non-primary",
    ];
    NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn differential_against_rbd_cli() {
    let images = dump(&[]);
    let mut compared = 0;
    for img in &images {
        let pool = img["pool"].as_str().unwrap();
        let ns = img["namespace"].as_str().unwrap();
        let name = img["image"].as_str().unwrap();
        let id = img["id"].as_str().unwrap();
        let what = format!("{pool}/{ns}/{name}");
        // Trashed images are addressed by id, and so are names the rbd CLI
        // cannot take (librbd accepts `/` and `@` in a name; rbd splits its
        // --image value at them: the web seed's `<script>...</script>`).
        let by_id = img["in_trash"] == true || name.contains(['/', '@']);
        let mut spec: Vec<String> = vec![
            "--pool".into(),
            pool.into(),
            "--namespace".into(),
            ns.into(),
        ];
        if by_id {
            spec.extend(["--image-id".into(), id.into()]);
        } else {
            spec.extend(["--image".into(), name.into()]);
        }
        // `rbd <command...> <image spec flags> --format json`
        let call = |command: &[&str]| {
            let mut a: Vec<&str> = command.to_vec();
            a.extend(spec.iter().map(String::as_str));
            rbd_json(&a)
        };

        // rbd info
        let info = call(&["info"]);
        assert_eq!(info["id"], img["id"], "{what}: id");
        assert_eq!(info["size"], img["size"], "{what}: size");
        assert_eq!(info["order"], img["order"], "{what}: order");
        assert_eq!(
            strings(&info["features"]),
            feature_names(img["features"].as_u64().unwrap()),
            "{what}: features"
        );
        match (&info["parent"], &img["parent"]) {
            (Value::Null, Value::Null) => {}
            (cli, ours) => {
                assert_eq!(cli["pool"], ours["pool"], "{what}: parent pool");
                assert_eq!(
                    cli["pool_namespace"], ours["namespace"],
                    "{what}: parent namespace"
                );
                assert_eq!(cli["id"], ours["image_id"], "{what}: parent id");
                assert_eq!(cli["image"], ours["image"], "{what}: parent image");
                assert_eq!(
                    cli["trash"], ours["image_trashed"],
                    "{what}: parent in trash"
                );
                // For a trashed parent snapshot, rbd prints the trash name.
                assert_eq!(cli["snapshot"], ours["snapshot"], "{what}: parent snapshot");
                assert_eq!(cli["overlap"], ours["overlap"], "{what}: overlap");
            }
        }

        // rbd status (by name) or rados listwatchers (by id: rbd status cannot name it)
        let header = format!("rbd_header.{id}");
        let cli_watchers: BTreeSet<(String, String, u64)> = if by_id {
            ceph_cli(
                "rados",
                &["-p", pool, "--namespace", ns, "listwatchers", &header],
            )
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                // watcher=127.0.0.1:0/1198503283 client.4129 cookie=139635091049920
                let f: Vec<&str> = l.split_whitespace().collect();
                (
                    f[1].to_string(),
                    f[0].trim_start_matches("watcher=").to_string(),
                    f[2].trim_start_matches("cookie=").parse().unwrap(),
                )
            })
            .collect()
        } else {
            call(&["status"])["watchers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| {
                    (
                        format!("client.{}", w["client"]),
                        w["address"].as_str().unwrap().to_string(),
                        w["cookie"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        let our_watchers: BTreeSet<(String, String, u64)> = img["watchers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["client"].as_str().unwrap().to_string(),
                    w["address"].as_str().unwrap().to_string(),
                    w["cookie"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(our_watchers, cli_watchers, "{what}: watchers");

        // rbd snap ls --all
        let snaps = call(&["snap", "ls", "--all"]);
        let cli_snaps: BTreeSet<(u64, String, bool, String)> = snaps
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_u64().unwrap(),
                    s["name"].as_str().unwrap().to_string(),
                    s["protected"] == "true",
                    s["namespace"]["type"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let our_snaps: BTreeSet<(u64, String, bool, String)> = img["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_u64().unwrap(),
                    s["name"].as_str().unwrap().to_string(),
                    s["protected"].as_bool().unwrap(),
                    s["namespace"]["type"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(our_snaps, cli_snaps, "{what}: snapshots");

        // rbd children --all, per snapshot (by id, which also reaches trashed
        // snapshots). For a trashed parent, which rbd children cannot name,
        // count the images whose `rbd info` (checked above) names it.
        for s in img["snapshots"].as_array().unwrap() {
            let expected = if by_id {
                images
                    .iter()
                    .filter(|c| {
                        c["parent"]["image_id"] == id
                            && c["parent"]["snap_id"] == s["id"]
                            && c["parent"]["pool"] == pool
                    })
                    .count() as u64
            } else {
                let snap_id = s["id"].to_string();
                call(&["children", "--all", "--snap-id", &snap_id])
                    .as_array()
                    .unwrap()
                    .len() as u64
            };
            assert_eq!(
                expected,
                s["children"].as_u64().unwrap(),
                "{what}@{}: children",
                s["name"]
            );
        }

        // rbd lock ls, or rados lock info for a trashed image
        let cli_locks: BTreeSet<(String, String, String)> = if by_id {
            let out = ceph_cli(
                "rados",
                &[
                    "-p",
                    pool,
                    "--namespace",
                    ns,
                    "lock",
                    "info",
                    &header,
                    "rbd_lock",
                    "--format",
                    "json",
                ],
            );
            let info: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
            info["lockers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|l| {
                    (
                        l["name"].as_str().unwrap().to_string(),
                        l["cookie"].as_str().unwrap().to_string(),
                        l["address"]
                            .as_str()
                            .or(l["addr"].as_str())
                            .unwrap()
                            .to_string(),
                    )
                })
                .collect()
        } else {
            call(&["lock", "ls"])
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        l["locker"].as_str().unwrap().to_string(),
                        l["id"].as_str().unwrap().to_string(),
                        l["address"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        let our_locks: BTreeSet<(String, String, String)> = img["locks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["locker"].as_str().unwrap().to_string(),
                    l["cookie"].as_str().unwrap().to_string(),
                    l["address"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(our_locks, cli_locks, "{what}: locks");
        compared += 1;
    }
    assert!(compared >= 25, "only {compared} images compared");
}

// ---------------------------------------------------------------------------
// The running exporter.

#[test]
fn metrics_endpoint_serves_the_sample_and_passes_promtool() {
    let exporter = Exporter::start(&[]);
    let raw = exporter.wait_metrics(Duration::from_secs(30), |b| {
        b.lines().any(|l| l == "ceph_rbd_exporter_up 1")
    });
    // Every per-image series also carries the image id; checked below.
    assert!(has_series(
        &raw,
        "ceph_rbd_image_orphaned_watchers{image=\"volume-zombie.deleted\",image_id=\""
    ));
    let body = without_image_id(&raw);

    for expected in [
        r#"ceph_rbd_image_orphaned_watchers{image="volume-zombie.deleted",namespace="",pool="volumes",reason="image_deleted"} 1"#,
        r#"ceph_rbd_image_orphaned_watchers{image="volume-trashed-held",namespace="",pool="volumes",reason="image_trashed"} 1"#,
        r#"ceph_rbd_image_stale_locks{image="volume-locked",namespace="",pool="volumes"} 1"#,
        r#"ceph_rbd_image_clone_depth{image="volume-chain-6",namespace="",pool="volumes"} 6"#,
        r#"ceph_rbd_image_flatten_pending{image="volume-chain-6",namespace="",pool="volumes",reason="clone_depth_exceeded"} 1"#,
        r#"ceph_rbd_image_flatten_pending{image="volume-snap-trashed",namespace="",pool="volumes",reason="parent_snapshot_trashed"} 1"#,
        r#"ceph_rbd_image_flatten_pending{image="volume-parent-trashed",namespace="",pool="volumes",reason="parent_image_trashed"} 1"#,
        r#"ceph_rbd_image_flatten_pending{image="volume-child-of-deleted",namespace="",pool="volumes",reason="parent_deleted"} 1"#,
        r#"ceph_rbd_image_flatten_pending{image="volume-flatten-me",namespace="",pool="volumes",reason="flatten_queued"} 1"#,
        r#"ceph_rbd_image_watchers{image="volume-multiattach",namespace="",pool="volumes"} 2"#,
        r#"ceph_rbd_image_watchers{image="csi-vol-0001",namespace="tenant-a",pool="k8s"} 1"#,
        r#"ceph_rbd_snapshot_children{image="8c0f7d1e-glance-base",namespace="",pool="images",snapshot="snap"} 3"#,
        r#"ceph_rbd_snapshot_protected{image="8c0f7d1e-glance-base",namespace="",pool="images",snapshot="snap"} 1"#,
        r#"ceph_rbd_pool_images{namespace="",pool="scratch"} 0"#,
        r#"ceph_rbd_pool_max_clone_depth{namespace="",pool="volumes"} 6"#,
        r#"ceph_rbd_pool_trash_images{namespace="",pool="images"} 1"#,
        r#"ceph_rbd_pool_images{namespace="tenant-a",pool="k8s"} 3"#,
    ] {
        if expected.contains("flatten_queued") && seed_skipped("11").is_some() {
            continue;
        }
        assert!(
            body.lines().any(|l| l == expected),
            "missing: {expected}\n{body}"
        );
    }
    assert!(has_series(
        &body,
        "ceph_rbd_snapshot_trashed{image=\"golden\""
    ));
    assert!(has_series(
        &body,
        "ceph_rbd_watcher_info{address=\"127.0.0.1:"
    ));
    assert!(has_series(
        &body,
        "ceph_rbd_watcher_first_seen_timestamp_seconds{"
    ));
    // One verdict series per orphaned watcher, and only for those: the
    // seed's holders of the .deleted and the trashed image, each named by
    // its client and address, with the image's reason.
    let seed: Value =
        serde_json::from_str(&std::fs::read_to_string(state_dir().join("seed.json")).unwrap())
            .unwrap();
    let mut orphaned: Vec<String> = common::metrics::series(&raw, "ceph_rbd_watcher_orphaned")
        .into_iter()
        .map(|(l, v)| {
            assert_eq!(v, 1.0, "{l:?}");
            format!(
                "{} {} {} {}",
                l["image"], l["client"], l["address"], l["reason"]
            )
        })
        .collect();
    orphaned.sort();
    let holder = |name: &str, image: &str, reason: &str| {
        let h = &seed["holders"][name];
        format!(
            "{image} {} {} {reason}",
            h["client"].as_str().unwrap(),
            h["address"].as_str().unwrap()
        )
    };
    assert_eq!(
        orphaned,
        [
            holder("trashed-held", "volume-trashed-held", "image_trashed"),
            holder("zombie", "volume-zombie.deleted", "image_deleted"),
        ],
        "ceph_rbd_watcher_orphaned"
    );
    assert!(has_series(
        &body,
        "ceph_rbd_exporter_sample_duration_seconds{pool=\"volumes\"}"
    ));
    assert!(has_series(
        &body,
        "ceph_rbd_exporter_last_success_timestamp_seconds{pool=\"volumes\"}"
    ));
    assert!(has_series(&body, "ceph_rbd_exporter_build_info{version="));
    assert!(!body.contains("not-rbd"));
    assert!(
        !body.contains("image=\"idle-disk\""),
        "quiet images are left out by default"
    );
    for line in body
        .lines()
        .filter(|l| l.starts_with("# HELP ceph_rbd_image") || l.starts_with("# HELP ceph_rbd_pool"))
    {
        assert!(
            line.contains("Sampled"),
            "HELP must say the value is sampled: {line}"
        );
    }

    promtool_check_metrics(&raw);

    // The first-seen time does not move between samples.
    let first_seen = |b: &str| -> Vec<String> {
        b.lines()
            .filter(|l| {
                l.starts_with("ceph_rbd_watcher_first_seen_timestamp_seconds{")
                    && l.contains("volume-attached")
            })
            .map(str::to_string)
            .collect()
    };
    let before = first_seen(&raw);
    std::thread::sleep(Duration::from_secs(5));
    let (_, later) = exporter.get("GET", "/metrics");
    assert_eq!(before, first_seen(&later));

    // HTTP surface.
    assert_eq!(exporter.get("GET", "/healthz").0, 200);
    let (status, landing) = exporter.get("GET", "/");
    assert_eq!(status, 200);
    assert!(landing.contains("href=\"/metrics\""));
    assert!(landing.contains("orphaned watchers"));
    assert_eq!(exporter.get("POST", "/metrics").0, 405);
    assert_eq!(exporter.get("GET", "/nope").0, 404);
    assert_eq!(exporter.get("HEAD", "/metrics").0, 200);
}

#[test]
fn all_images_flag_emits_quiet_images() {
    let exporter = Exporter::start(&["--metrics.all-images"]);
    exporter.wait_metrics(Duration::from_secs(30), |b| {
        without_image_id(b)
            .contains(r#"ceph_rbd_image_watchers{image="idle-disk",namespace="",pool="vms"} 0"#)
    });
}

#[test]
fn killed_holder_watch_expires_then_its_exclusive_lock_is_stale() {
    let image = format!("volume-crashed-{}", std::process::id());
    ceph_cli(
        "rbd",
        &["create", "--size", "16M", &format!("volumes/{image}")],
    );
    let mut holder = Holder::start("volumes", &image, &["--write"]);

    let held = dump(&["--pools", "volumes"]);
    let img = find(&held, "volumes", "", &image);
    assert_eq!(img["watchers"].as_array().unwrap().len(), 1);
    assert_eq!(img["locks"][0]["kind"], "exclusive");
    assert_eq!(img["locks"][0]["stale"], false);

    holder.kill();
    let killed_at = Instant::now();
    // Right after the crash the watch is still registered...
    let just_after = dump(&["--pools", "volumes"]);
    let img = find(&just_after, "volumes", "", &image);
    assert_eq!(
        img["watchers"].as_array().unwrap().len(),
        1,
        "watch should outlive the client for ~30 s"
    );
    assert_eq!(img["locks"][0]["stale"], false);

    // ...then it expires, and the lock it leaves behind is stale.
    loop {
        let images = dump(&["--pools", "volumes"]);
        let img = find(&images, "volumes", "", &image);
        if img["watchers"].as_array().unwrap().is_empty() {
            assert_eq!(
                img["locks"].as_array().unwrap().len(),
                1,
                "the exclusive lock stays"
            );
            assert_eq!(img["locks"][0]["stale"], true);
            eprintln!(
                "watch expired {:.1} s after the kill",
                killed_at.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(90),
            "watch never expired"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    ceph_cli("rbd", &["lock", "ls", &format!("volumes/{image}")]);
}

// ---------------------------------------------------------------------------
// Start-up errors and an unreachable cluster.

#[test]
fn bad_configuration_gives_one_line_and_exit_2() {
    let (code, err) = run_exporter(&["--ceph.config", "/nonexistent/ceph.conf"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/ceph.conf"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Unreadable as a config file (a directory; as root, modes do not stop reads).
    let dir = scratch_dir("conf-is-a-dir");
    let (code, err) = run_exporter(&["--ceph.config", dir.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(dir.to_str().unwrap()), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let no_keyring = conf_variant("nokeyring", "/nonexistent/keyring", None);
    let (code, err) = run_exporter(&["--ceph.config", &no_keyring]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("keyring"), "{err}");

    // A well-formed key the cluster does not know.
    let dir = scratch_dir("wrongkey");
    let wrong = dir.join("keyring");
    std::fs::write(
        &wrong,
        "[client.admin]\n\tkey = AQBSdFhjAAAAABAAhSmw1uU1nqzOq6W3W6gG8A==\n",
    )
    .unwrap();
    let wrong_conf = conf_variant("wrongkey-conf", wrong.to_str().unwrap(), None);
    let (code, err) = run_exporter(&["--ceph.config", &wrong_conf]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("rejected"), "{err}");

    let (code, err) = run_exporter(&["--ceph.config", &conf(), "--ceph.user", "nobody-here"]);
    assert_eq!(code, 2, "{err}");

    let (code, err) = run_exporter(&["--ceph.config", &conf(), "--sample.interval", "often"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--sample.interval"), "{err}");
}

#[test]
fn cluster_down_at_start_is_retried_and_served_as_up_0() {
    // A mon address where nothing listens.
    let keyring = {
        let text = std::fs::read_to_string(conf()).unwrap();
        text.lines()
            .find_map(|l| l.trim().strip_prefix("keyring = ").map(str::to_string))
            .unwrap()
    };
    let down = conf_variant("down", &keyring, Some("v2:127.0.0.1:1"));
    let exporter = Exporter::start_with_conf(&down, "admin", &["--ceph.op-timeout", "2s"]);
    let body = exporter.wait_metrics(Duration::from_secs(30), |b| {
        b.contains(r#"ceph_rbd_exporter_sample_errors_total{kind="connect",pool=""}"#)
    });
    assert!(
        body.lines().any(|l| l == "ceph_rbd_exporter_up 0"),
        "{body}"
    );
    assert!(!body.contains("ceph_rbd_pool_images"));
    assert_eq!(exporter.get("GET", "/healthz").0, 200);
}

#[test]
fn seed_state_is_present() {
    // Guards against running the suite on a cluster that was not seeded.
    assert!(
        state_dir().join("seed.json").exists(),
        "seed.json missing: run `make test`"
    );
}

#[test]
fn read_only_user_with_documented_caps_sees_everything() {
    // The caps the README documents.
    let dir = scratch_dir("readonly");
    let keyring = dir.join("keyring");
    let out = ceph_cli(
        "ceph",
        &[
            "auth",
            "get-or-create",
            "client.rbd-exporter-test",
            "mon",
            "profile rbd",
            "osd",
            "profile rbd-read-only",
        ],
    );
    std::fs::write(&keyring, out).unwrap();
    let ro_conf = conf_variant("readonly-conf", keyring.to_str().unwrap(), None);
    let run = |conf: &str, user: &str| -> Vec<Value> {
        let out = Command::new(BIN)
            .args([
                "--ceph.config",
                conf,
                "--ceph.user",
                user,
                "--log.level",
                "warn",
                "dump",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dump as {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    };
    let as_admin = run(&conf(), "admin");
    let as_reader = run(&ro_conf, "rbd-exporter-test");
    // Compare what does not change from one sample to the next.
    let facts = |v: &[Value]| -> Vec<String> {
        v.iter()
            .filter(|i| !i["image"].as_str().unwrap().starts_with("volume-crashed-"))
            .map(|i| {
                format!(
                    "{}/{}/{} {} {} {}",
                    i["pool"],
                    i["namespace"],
                    i["image"],
                    i["watchers"],
                    i["locks"],
                    i["snapshots"]
                )
            })
            .collect()
    };
    assert_eq!(facts(&as_reader), facts(&as_admin));
}

// ---------------------------------------------------------------------------
// Faults: a daemon that stops answering.

#[test]
fn stalled_osd_fails_the_sample_quickly_and_recovers() {
    let exporter = Exporter::start(&["--ceph.op-timeout", "2s", "--pools", "volumes"]);
    let before = exporter.wait_metrics(Duration::from_secs(30), |b| {
        b.lines().any(|l| l == "ceph_rbd_exporter_up 1")
    });
    let success = r#"ceph_rbd_exporter_last_success_timestamp_seconds{pool="volumes"}"#;
    let t_before = metric_value(&before, success).unwrap();
    {
        let _osd = Paused::daemon("osd.0");
        let paused_at = Instant::now();
        let during = exporter.wait_metrics(Duration::from_secs(30), |b| {
            b.contains(r#"ceph_rbd_exporter_sample_errors_total{kind="timeout",pool="volumes"}"#)
        });
        // One timeout ends the sample, not one per image.
        assert!(
            paused_at.elapsed() < Duration::from_secs(15),
            "took {:?}",
            paused_at.elapsed()
        );
        // The last good data is still served, with its timestamp frozen.
        assert!(without_image_id(&during).contains(
            r#"ceph_rbd_image_watchers{image="volume-attached",namespace="",pool="volumes"} 1"#
        ));
        let frozen = metric_value(&during, success).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        let (_, later) = exporter.get("GET", "/metrics");
        assert_eq!(metric_value(&later, success).unwrap(), frozen);
    }
    let after = exporter.wait_metrics(Duration::from_secs(30), |b| {
        metric_value(b, success).is_some_and(|t| t > t_before + 5.0)
            && b.lines().any(|l| l == "ceph_rbd_exporter_up 1")
    });
    assert!(without_image_id(&after).contains(
        r#"ceph_rbd_image_watchers{image="volume-attached",namespace="",pool="volumes"} 1"#
    ));
}

#[test]
fn stalled_mon_gives_up_0_then_recovers() {
    let exporter = Exporter::start(&["--ceph.op-timeout", "2s", "--pools", "volumes"]);
    exporter.wait_metrics(Duration::from_secs(30), |b| {
        b.lines().any(|l| l == "ceph_rbd_exporter_up 1")
    });
    {
        let _mon = Paused::daemon("mon.a");
        let during = exporter.wait_metrics(Duration::from_secs(30), |b| {
            b.lines().any(|l| l == "ceph_rbd_exporter_up 0")
        });
        assert!(
            during.contains(r#"ceph_rbd_exporter_sample_errors_total{kind="timeout",pool=""}"#),
            "{during}"
        );
        // Still serving the last sample.
        assert!(during.contains(r#"ceph_rbd_pool_images{namespace="",pool="volumes"}"#));
    }
    exporter.wait_metrics(Duration::from_secs(60), |b| {
        b.lines().any(|l| l == "ceph_rbd_exporter_up 1")
    });
}

/// Escapes a label value the way the text exposition format requires.
fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[test]
fn hostile_image_and_snapshot_names_are_escaped() {
    let names = [
        "we\"ird\\name",
        "line\nbreak",
        "ünïcødé-卷",
        "tab\there",
        "{brace}=x,y",
    ];
    let snap = "snap\"\n\\x";
    for n in names {
        ceph_cli(
            "rbd",
            &["create", "--size", "1M", "--pool", "vms", "--image", n],
        );
        ceph_cli(
            "rbd",
            &[
                "snap", "create", "--pool", "vms", "--image", n, "--snap", snap,
            ],
        );
        ceph_cli(
            "rbd",
            &[
                "snap", "protect", "--pool", "vms", "--image", n, "--snap", snap,
            ],
        );
    }
    let result = std::panic::catch_unwind(|| {
        let exporter = Exporter::start(&["--metrics.all-images", "--pools", "vms"]);
        let body = exporter.wait_metrics(Duration::from_secs(30), |b| {
            names
                .iter()
                .all(|n| b.contains(&format!("image=\"{}\"", escape_label(n))))
        });
        for n in names {
            let expected = format!(
                "ceph_rbd_snapshot_protected{{image=\"{}\",namespace=\"\",pool=\"vms\",snapshot=\"{}\"}} 1",
                escape_label(n),
                escape_label(snap)
            );
            let bare = without_image_id(&body);
            assert!(bare.lines().any(|l| l == expected), "missing {expected}");
        }
        // No raw newline leaked into a sample line: every line is a comment or a sample.
        for line in body.lines() {
            assert!(
                line.starts_with('#') || line.starts_with("ceph_rbd_"),
                "broken line: {line:?}"
            );
        }
        promtool_check_metrics(&body);
    });
    for n in names {
        let _ = Command::new("rbd")
            .args([
                "snap",
                "unprotect",
                "--pool",
                "vms",
                "--image",
                n,
                "--snap",
                snap,
            ])
            .env("CEPH_CONF", conf())
            .output();
        let _ = Command::new("rbd")
            .args(["snap", "purge", "--pool", "vms", "--image", n])
            .env("CEPH_CONF", conf())
            .output();
        let _ = Command::new("rbd")
            .args(["rm", "--pool", "vms", "--image", n])
            .env("CEPH_CONF", conf())
            .output();
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// The OSD's count of write ops.
fn osd_write_ops() -> u64 {
    let asok = PathBuf::from(conf())
        .parent()
        .unwrap()
        .join("run/osd.0.asok");
    let out = ceph_cli(
        "ceph",
        &["--admin-daemon", asok.to_str().unwrap(), "perf", "dump"],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    v["osd"]["op_w"].as_u64().unwrap() + v["osd"]["op_rw"].as_u64().unwrap()
}

#[test]
fn sampling_writes_nothing_to_the_cluster() {
    let exporter = Exporter::start(&[]);
    exporter.wait_metrics(Duration::from_secs(30), |b| {
        b.lines().any(|l| l == "ceph_rbd_exporter_up 1")
    });
    // Another client (the mgr retrying a flatten, say) may write now and
    // then; a window in which the count stands still while we sample proves
    // the exporter wrote nothing. Try a few windows.
    let mut windows = Vec::new();
    for _ in 0..5 {
        let before = osd_write_ops();
        for _ in 0..3 {
            assert!(!dump(&[]).is_empty());
        }
        std::thread::sleep(Duration::from_secs(3)); // the exporter samples meanwhile
        let after = osd_write_ops();
        windows.push(after - before);
        if after == before {
            return;
        }
    }
    panic!("the OSD counted writes in every window while sampling: {windows:?}");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut exporter = Exporter::start(&[]);
    exporter.wait_metrics(Duration::from_secs(30), |b| {
        b.lines().any(|l| l == "ceph_rbd_exporter_up 1")
    });
    let pid = exporter.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t0 = Instant::now();
    loop {
        if let Some(status) = exporter.child.try_wait().unwrap() {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
