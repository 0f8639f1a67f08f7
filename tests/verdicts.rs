//! Verdicts on real Ceph lifecycles, each in a pool of its own, judged the
//! way Ceph itself judges the same state:
//! - an `rbd rm` of a large image in progress (the image sits in the trash
//!   with source `removing`, the rbd CLI holds its watch and lock) is no
//!   orphan;
//! - an `rbd trash rm` of a large trashed image in progress (the entry
//!   marked `removing`, the CLI holding a watch) is no orphan either;
//! - a layering-only clone with a snapshot, flattened: no parent (as `rbd
//!   info` says), no flatten pending, still a child of the parent snapshot
//!   (as `rbd children` says), and `explain` of the parent says to remove
//!   the clone's snapshots, which really frees the parent snapshot;
//! - a v1 clone in an RBD namespace counts against its parent there;
//! - a trashed and a live image of the same name keep separate series, and
//!   `explain --image-id` reaches the trashed one;
//! - every command `explain` prints for a trashed image with a snapshot and
//!   a stale lock runs, in order, and removes the image.

mod common;

use common::*;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn rbd(args: &[&str]) -> String {
    ceph_cli("rbd", args)
}

/// The exporter's /metrics for one pool, every image included.
fn metrics(pool: &str) -> String {
    let e = Exporter::start(&["--pools", pool, "--metrics.all-images"]);
    e.wait_metrics(Duration::from_secs(30), |b| {
        b.contains("ceph_rbd_pool_images{")
    })
}

/// `explain ARGS --output json`, as the read-only user.
fn explain_json(args: &[&str]) -> Value {
    let out = exporter_command()
        .arg("explain")
        .args(args)
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "explain {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every command of explain's fixes, in order, without the `#` notes.
fn fix_commands(e: &Value) -> Vec<String> {
    e["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["commands"].as_array().unwrap().iter())
        .map(|c| c.as_str().unwrap().to_string())
        .filter(|c| !c.starts_with('#'))
        .collect()
}

/// Runs one printed command with the admin's credentials, as an operator
/// would paste it.
fn run_printed(command: &str) {
    let out = Command::new("sh")
        .args(["-c", command])
        .env("CEPH_CONF", conf())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{command}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An `rbd` command running in the background, killed when dropped.
struct Background(Child);

impl Background {
    fn rbd(args: &[&str]) -> Background {
        let child = Command::new("rbd")
            .args(args)
            .env("CEPH_CONF", conf())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Background(child)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Dumps `pool` until an image `is_it` says is the one has a watcher (at
/// most 60 s; `what` names the command that should have got going).
fn wait_until_held(pool: &str, what: &str, is_it: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let images = dump(&["--pools", pool]);
        let held = images
            .iter()
            .find(|i| is_it(i))
            .filter(|i| !i["watchers"].as_array().unwrap().is_empty());
        if let Some(i) = held {
            return i.clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{what} never got going"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn rbd_rm_in_progress_is_not_an_orphan() {
    let pool = TestPool::new("vd-rm");
    let spec = format!("{}/big", pool.0);
    rbd(&[
        "create",
        "--size",
        "20T",
        "--image-feature",
        "layering,exclusive-lock",
        &spec,
    ]);
    let _rm = Background::rbd(&["rm", "--no-progress", &spec]);
    // `rbd rm` moves the image to the trash (source "removing") first,
    // then deletes its objects holding a watch: wait for that state.
    let img = wait_until_held(&pool.0, "rbd rm", |i| {
        i["image"] == "big" && i["in_trash"] == true
    });
    // (`rbd trash ls --all` does not list images being removed.)
    for w in img["watchers"].as_array().unwrap() {
        assert_eq!(w["orphan_reason"], Value::Null, "{img}");
    }
    let body = metrics(&pool.0);
    assert!(
        !has_series(&body, "ceph_rbd_image_orphaned_watchers{"),
        "{body}"
    );
    assert!(body.contains(&format!(
        "ceph_rbd_pool_orphaned_watchers{{namespace=\"\",pool=\"{}\"}} 0",
        pool.0
    )));
}

#[test]
fn rbd_trash_rm_in_progress_is_not_an_orphan() {
    let pool = TestPool::new("vd-trashrm");
    let spec = format!("{}/big", pool.0);
    rbd(&["create", "--size", "20T", &spec]);
    rbd(&["trash", "mv", &spec]);
    let id = rbd_json(&["trash", "ls", &pool.0]).as_array().unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // (That a user-trashed image held open by a client is an orphan is
    // shown by the seeded volume-trashed-held in tests/cluster.rs.)
    let _rm = Background::rbd(&["trash", "rm", "--no-progress", &format!("{}/{id}", pool.0)]);
    let img = wait_until_held(&pool.0, "rbd trash rm", |i| i["id"] == id.as_str());
    for w in img["watchers"].as_array().unwrap() {
        assert_eq!(w["orphan_reason"], Value::Null, "{img}");
    }
}

#[test]
fn a_layering_only_clone_flattened_with_a_snapshot_has_no_parent_but_pins_it() {
    let pool = TestPool::new("vd-flat");
    let p = |name: &str| format!("{}/{name}", pool.0);
    let layering = ["--image-feature", "layering"];
    rbd(&[&["create", "--size", "16M"][..], &layering, &[&p("base")]].concat());
    rbd(&["snap", "create", &format!("{}@s", p("base"))]);
    rbd(&["snap", "protect", &format!("{}@s", p("base"))]);
    rbd(&[
        &["clone"][..],
        &layering,
        &[&format!("{}@s", p("base")), &p("child")],
    ]
    .concat());
    rbd(&["snap", "create", &format!("{}@backup", p("child"))]);
    rbd(&["flatten", "--no-progress", &p("child")]);
    rbd(&["rename", &p("base"), &p("base.deleted")]);

    let info = rbd_json(&["info", &p("child")]);
    assert!(info.get("parent").is_none(), "rbd info: {info}");
    let children = rbd_json(&["children", &format!("{}@s", p("base.deleted"))]);
    assert_eq!(
        children.as_array().unwrap().len(),
        1,
        "rbd children: {children}"
    );

    let images = dump(&["--pools", &pool.0]);
    let child = find(&images, &pool.0, "", "child");
    assert_eq!(child["parent"], Value::Null, "{child}");
    assert_eq!(child["clone_depth"]["depth"], 0);
    assert!(reasons(child).is_empty(), "flatten would fail: {child}");
    let base = find(&images, &pool.0, "", "base.deleted");
    assert_eq!(snapshot(base, "s")["children"], 1);

    let e = explain_json(&[&p("base.deleted")]);
    let commands = fix_commands(&e);
    let purge = format!("rbd snap purge {}", p("child"));
    assert!(commands.contains(&purge), "{commands:?}");
    assert!(
        !commands.contains(&format!("rbd flatten {}", p("child"))),
        "{commands:?}"
    );
    // The command explain gives frees the parent snapshot.
    run_printed(&purge);
    let images = dump(&["--pools", &pool.0]);
    let base = find(&images, &pool.0, "", "base.deleted");
    assert_eq!(snapshot(base, "s")["children"], 0);
}

#[test]
fn a_v1_clone_in_a_namespace_counts_against_its_parent_there() {
    let pool = TestPool::new("vd-v1ns");
    rbd(&["namespace", "create", &format!("{}/tenant", pool.0)]);
    let base = format!("{}/tenant/base", pool.0);
    rbd(&["create", "--size", "16M", "--image-format", "2", &base]);
    rbd(&["snap", "create", &format!("{base}@s")]);
    rbd(&["snap", "protect", &format!("{base}@s")]);
    rbd(&[
        "clone",
        "--rbd-default-clone-format",
        "1",
        &format!("{base}@s"),
        &format!("{}/tenant/child", pool.0),
    ]);
    let children = rbd_json(&["children", &format!("{base}@s")]);
    assert_eq!(children.as_array().unwrap().len(), 1, "{children}");
    let images = dump(&["--pools", &pool.0]);
    let b = find(&images, &pool.0, "tenant", "base");
    assert_eq!(snapshot(b, "s")["children"], 1, "{b}");
    let child = find(&images, &pool.0, "tenant", "child");
    assert_eq!(child["parent"]["image"], "base");
    let body = metrics(&pool.0);
    let series = format!(
        "ceph_rbd_snapshot_children{{image=\"base\",image_id=\"{}\",namespace=\"tenant\",pool=\"{}\",snapshot=\"s\"}} 1",
        b["id"].as_str().unwrap(),
        pool.0
    );
    assert!(body.contains(&series), "{series} not in\n{body}");
}

#[test]
fn a_trashed_and_a_live_image_of_the_same_name_keep_apart() {
    let pool = TestPool::new("vd-same");
    let x = format!("{}/x", pool.0);
    rbd(&["create", "--size", "16M", &x]);
    rbd(&["trash", "mv", &x]);
    rbd(&["create", "--size", "32M", &x]);
    let images = dump(&["--pools", &pool.0]);
    let both: Vec<&Value> = images.iter().filter(|i| i["image"] == "x").collect();
    assert_eq!(both.len(), 2);
    let trashed = both.iter().find(|i| i["in_trash"] == true).unwrap();
    let live = both.iter().find(|i| i["in_trash"] == false).unwrap();
    let trashed_id = trashed["id"].as_str().unwrap();
    let live_id = live["id"].as_str().unwrap();

    let body = metrics(&pool.0);
    for id in [trashed_id, live_id] {
        let series = format!("ceph_rbd_image_watchers{{image=\"x\",image_id=\"{id}\",");
        assert!(body.contains(&series), "{series} not in\n{body}");
    }

    let by_name = explain_json(&[&x]);
    assert_eq!(by_name["id"], live_id);
    let by_id = explain_json(&["--image-id", trashed_id, "--pool", &pool.0]);
    assert_eq!(by_id["id"], trashed_id);
    assert_eq!(by_id["in_trash"], true);
}

#[test]
fn explain_commands_for_a_trashed_image_run() {
    let pool = TestPool::new("vd-trashfix");
    let img = format!("{}/old", pool.0);
    // Without exclusive-lock: `rbd trash mv` would wait for the advisory
    // lock below forever.
    rbd(&[
        "create",
        "--size",
        "16M",
        "--image-feature",
        "layering",
        &img,
    ]);
    rbd(&["snap", "create", &format!("{img}@s1")]);
    // Taken by a CLI that exits at once: a stale lock.
    rbd(&["lock", "add", &img, "left-behind"]);
    rbd(&["trash", "mv", &img]);
    let id = rbd_json(&["trash", "ls", &pool.0]).as_array().unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let e = explain_json(&["--image-id", &id, "--pool", &pool.0]);
    assert_eq!(e["locks"][0]["stale"], true, "{e}");
    let commands = fix_commands(&e);
    assert!(
        commands
            .iter()
            .all(|c| !c.contains(&format!("{}/old", pool.0))),
        "a trashed image's name does not resolve: {commands:?}"
    );
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("rados ") && c.contains("lock break")),
        "{commands:?}"
    );
    // As an operator would: paste them in order.
    for c in &commands {
        run_printed(c);
    }
    let trash = rbd_json(&["trash", "ls", "--all", &pool.0]);
    assert!(trash.as_array().unwrap().is_empty(), "{trash}");
}
