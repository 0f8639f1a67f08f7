//! Incremental sampling against a real cluster (scripts/test.sh sets
//! CEPH_RBD_TEST_CONF; scripts/release-test.sh runs these on Reef and
//! Tentacle too):
//! - what the light read builds on: a header's RADOS object version does
//!   not move with a watch, and moves with every change of what the header
//!   holds (locks, snapshots, protection, clones, flatten, resize);
//! - after each of a sequence of changes (lock, unlock, snapshot create,
//!   protect, clone, flatten, rename, trash, restore, unprotect, remove, a
//!   watch coming and going), an incremental sample equals a full sample
//!   field by field, both agree with the `rbd` CLI, and the incremental one
//!   read light every header that did not change;
//! - the light read needs no more than the documented read-only caps;
//! - the smoke run of the incremental path on a pool of 200 images with 1%
//!   of them changed between samples (correctness only, no timings).

mod common;

use ceph_rbd_exporter::ceph::{Conn, ConnectOptions, HeaderCheck, PoolInfo, RadosConn};
use ceph_rbd_exporter::model::{Image, Location, Sample};
use ceph_rbd_exporter::sampler::{SampleConfig, due_for_full_read, sample_once, sample_since};
use common::{Holder, TestPool, ceph_cli, conf, conf_variant, rbd_json, scratch_dir};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn connect() -> Arc<RadosConn> {
    connect_as(&conf(), "admin")
}

fn connect_as(conf_path: &str, user: &str) -> Arc<RadosConn> {
    let opts = ConnectOptions {
        conf_path: Some(conf_path.to_string()),
        user: user.into(),
        mon_host: None,
        key: None,
        op_timeout: Duration::from_secs(10),
        max_ops_per_second: None,
    };
    Arc::new(RadosConn::connect(&opts).expect("connect to the test cluster"))
}

/// Samples only `pool`, never forcing a full read of an unchanged header.
fn config(pool: &str) -> SampleConfig {
    SampleConfig {
        pools: Some(vec![pool.to_string()]),
        max_inflight: 16,
        full_every: 100_000,
    }
}

fn location(rt: &tokio::runtime::Runtime, conn: &Arc<RadosConn>, pool: &str) -> Location {
    let pools: Vec<PoolInfo> = rt.block_on(conn.pools()).unwrap();
    let id = pools.iter().find(|p| p.name == pool).unwrap().id;
    Location {
        pool_id: id,
        namespace: String::new(),
    }
}

fn image_id(pool: &str, image: &str) -> String {
    rbd_json(&["info", &format!("{pool}/{image}")])["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The header's version now (a full header read).
fn version(rt: &tokio::runtime::Runtime, conn: &Arc<RadosConn>, loc: &Location, id: &str) -> u64 {
    let header = rt.block_on(conn.header(loc, id)).unwrap().expect("header");
    assert_ne!(header.version, 0, "a read reports the header's version");
    header.version
}

#[test]
fn the_header_version_moves_with_what_the_header_holds_not_with_watches() {
    let pool = TestPool::new("incr-version");
    let p = pool.0.as_str();
    let (rt, conn) = (runtime(), connect());
    ceph_cli("rbd", &["create", &format!("{p}/img"), "--size", "8M"]);
    let (loc, id) = (location(&rt, &conn, p), image_id(p, "img"));
    let light = |v: u64| {
        rt.block_on(conn.watchers_if_unchanged(&loc, &id, v))
            .unwrap()
    };
    let mut v = version(&rt, &conn, &loc, &id);
    assert_eq!(light(v), HeaderCheck::Unchanged(vec![]));

    // A read-write open registers a watch: the version stays.
    let mut holder = Holder::start(p, "img", &[]);
    assert_eq!(
        version(&rt, &conn, &loc, &id),
        v,
        "a watch moved the version"
    );
    let HeaderCheck::Unchanged(watchers) = light(v) else {
        panic!("a watch made the light read fail")
    };
    assert_eq!(watchers.len(), 1, "the light read lists the watch");

    // Every change of what the header holds moves it; the light read then
    // says so, and the version only grows.
    let spec = format!("{p}/img");
    let changes: Vec<(&str, Vec<&str>)> = vec![
        ("advisory lock", vec!["lock", "add", &spec, "c1"]),
        ("advisory unlock", vec![]),
        (
            "snapshot create",
            vec!["snap", "create", "--snap", "s", &spec],
        ),
        (
            "snapshot protect",
            vec!["snap", "protect", "--snap", "s", &spec],
        ),
        (
            "snapshot unprotect",
            vec!["snap", "unprotect", "--snap", "s", &spec],
        ),
        ("snapshot remove", vec!["snap", "rm", "--snap", "s", &spec]),
        ("resize", vec!["resize", "--size", "16M", &spec]),
    ];
    for (what, args) in changes {
        if args.is_empty() {
            // While an advisory lock is held, nobody can change the image.
            let lockers = rbd_json(&["lock", "ls", &spec]);
            let locker = lockers[0]["locker"].as_str().unwrap().to_string();
            ceph_cli("rbd", &["lock", "rm", &spec, "c1", &locker]);
        } else {
            ceph_cli("rbd", &args);
        }
        let now = version(&rt, &conn, &loc, &id);
        assert!(now > v, "{what} did not move the version ({v} -> {now})");
        assert_eq!(light(v), HeaderCheck::Changed, "{what}");
        assert!(matches!(light(now), HeaderCheck::Unchanged(_)), "{what}");
        v = now;
    }
    // The watch going away (a clean close without a lock) leaves it.
    holder.release();
    assert_eq!(
        version(&rt, &conn, &loc, &id),
        v,
        "an unwatch moved the version"
    );
    assert_eq!(light(v), HeaderCheck::Unchanged(vec![]));

    // A writer takes the exclusive lock: that moves it.
    let _writer = Holder::start(p, "img", &["--write"]);
    assert_eq!(light(v), HeaderCheck::Changed, "exclusive lock");
    drop(_writer);

    ceph_cli("rbd", &["rm", "--no-progress", &spec]);
    assert_eq!(light(v), HeaderCheck::Gone);
}

/// The images of the one sampled pool's default namespace.
fn images(sample: &Sample) -> &BTreeMap<String, Arc<Image>> {
    assert_eq!(sample.pools.len(), 1);
    let pool = sample.pools.values().next().unwrap();
    assert!(pool.skipped.is_empty(), "{:?}", pool.skipped);
    let namespaces = pool.outcome.as_ref().expect("pool sampled");
    &namespaces[0].images
}

/// What the `rbd` CLI says of every image of `pool` (and its trash), in
/// the fields the sample holds, keyed by image id.
fn cli_view(pool: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut specs: Vec<(String, Vec<String>)> = Vec::new();
    for name in rbd_json(&["ls", pool]).as_array().unwrap() {
        let name = name.as_str().unwrap();
        specs.push((name.into(), vec!["--image".into(), name.into()]));
    }
    for t in rbd_json(&["trash", "ls", pool]).as_array().unwrap() {
        let id = t["id"].as_str().unwrap();
        specs.push((
            t["name"].as_str().unwrap().into(),
            vec!["--image-id".into(), id.into()],
        ));
    }
    for (name, spec) in specs {
        let call = |cmd: &[&str]| {
            let mut a: Vec<&str> = cmd.to_vec();
            a.extend(["--pool", pool]);
            a.extend(spec.iter().map(String::as_str));
            rbd_json(&a)
        };
        let info = call(&["info"]);
        let snaps: Vec<String> = call(&["snap", "ls"])
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        // `rbd lock ls` cannot name a trashed image.
        let lockers = match spec[0].as_str() {
            "--image-id" => "trash".to_string(),
            _ => call(&["lock", "ls"])
                .as_array()
                .map_or(0, |a| a.len())
                .to_string(),
        };
        let view = format!(
            "name={name} size={} parent={} snaps={snaps:?} lockers={lockers}",
            info["size"],
            info["parent"]["id"].as_str().unwrap_or("-"),
        );
        out.insert(info["id"].as_str().unwrap().to_string(), view);
    }
    out
}

/// The same fields from a sample.
fn sample_view(images: &BTreeMap<String, Arc<Image>>) -> BTreeMap<String, String> {
    images
        .iter()
        .map(|(id, i)| {
            let snaps: Vec<String> = i.snapshots.iter().map(|s| s.name.clone()).collect();
            let parent = i.head_parent().map_or("-", |p| p.image_id.as_str());
            let lockers = match i.in_trash {
                true => "trash".to_string(),
                false => i.locks.len().to_string(),
            };
            let view = format!(
                "name={} size={} parent={parent} snaps={snaps:?} lockers={lockers}",
                i.name, i.size
            );
            (id.clone(), view)
        })
        .collect()
}

#[test]
fn an_incremental_sample_equals_a_full_one_after_every_change() {
    let pool = TestPool::new("incr-diff");
    let p = pool.0.as_str();
    let (rt, conn) = (runtime(), connect());
    let img = |n: &str| format!("{p}/{n}");
    for n in ["parent", "plain", "other"] {
        ceph_cli("rbd", &["create", &img(n), "--size", "8M"]);
    }
    let cfg = config(p);
    let (mut previous, _) = rt.block_on(sample_once(&conn, &cfg)).unwrap();
    let mut holder: Option<Holder> = None;
    let steps: Vec<(&str, Vec<String>)> = vec![
        (
            "lock",
            vec!["lock".into(), "add".into(), img("plain"), "c1".into()],
        ),
        ("unlock", vec![]),
        (
            "snapshot create",
            vec!["snap".into(), "create".into(), img("parent") + "@base"],
        ),
        (
            "protect",
            vec!["snap".into(), "protect".into(), img("parent") + "@base"],
        ),
        (
            "clone",
            vec!["clone".into(), img("parent") + "@base", img("child")],
        ),
        ("watch", vec![]),
        (
            "flatten",
            vec!["flatten".into(), "--no-progress".into(), img("child")],
        ),
        ("unwatch", vec![]),
        (
            "rename",
            vec!["rename".into(), img("other"), img("renamed")],
        ),
        ("trash", vec!["trash".into(), "mv".into(), img("renamed")]),
        ("restore", vec![]),
        (
            "unprotect",
            vec!["snap".into(), "unprotect".into(), img("parent") + "@base"],
        ),
        (
            "snapshot remove",
            vec![
                "snap".into(),
                "rm".into(),
                "--no-progress".into(),
                img("parent") + "@base",
            ],
        ),
        (
            "resize",
            vec!["resize".into(), "--size".into(), "16M".into(), img("plain")],
        ),
    ];
    for (seq, (what, args)) in steps.into_iter().enumerate() {
        match what {
            "unlock" => {
                let locker = rbd_json(&["lock", "ls", &img("plain")])[0]["locker"]
                    .as_str()
                    .unwrap()
                    .to_string();
                ceph_cli("rbd", &["lock", "rm", &img("plain"), "c1", &locker]);
            }
            "watch" => holder = Some(Holder::start(p, "child", &[])),
            "unwatch" => holder.take().unwrap().release(),
            "restore" => {
                let id = rbd_json(&["trash", "ls", p])[0]["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                ceph_cli("rbd", &["trash", "restore", "--pool", p, "--image-id", &id]);
            }
            _ => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                ceph_cli("rbd", &args);
            }
        }
        let previous_arc = Arc::new(previous);
        let (incremental, _) = rt
            .block_on(sample_since(
                &conn,
                &cfg,
                previous_arc.clone(),
                seq as u64 + 1,
            ))
            .unwrap();
        let (full, _) = rt.block_on(sample_once(&conn, &cfg)).unwrap();
        let (inc, all) = (images(&incremental), images(&full));
        assert_eq!(inc, all, "after {what}: incremental differs from full");
        assert_eq!(
            sample_view(inc),
            cli_view(p),
            "after {what}: differs from the rbd CLI"
        );
        // Images the previous sample held were read light first.
        let known = inc
            .keys()
            .filter(|id| images(&previous_arc).contains_key(*id));
        assert_eq!(
            incremental.reads.light,
            known.count() as u64,
            "after {what}: {:?}",
            incremental.reads
        );
        if holder.is_some() {
            let child = inc.values().find(|i| i.name == "child").unwrap();
            assert_eq!(child.watchers.len(), 1, "after {what}: the watch is seen");
        }
        previous = incremental;
    }
}

#[test]
fn smoke_incremental_path_on_200_images_with_one_percent_changed() {
    let pool = TestPool::new("incr-smoke");
    let p = pool.0.as_str();
    let (rt, conn) = (runtime(), connect());
    // 200 images through the rbd CLI's parallel cousin: one python process.
    let script = format!(
        "import rados, rbd\n\
         c = rados.Rados(conffile={conf:?}); c.connect()\n\
         io = c.open_ioctx({p:?})\n\
         for i in range(200): rbd.RBD().create(io, 'img-%03d' % i, 8 << 20)\n\
         io.close(); c.shutdown()\n",
        conf = conf(),
    );
    let out = std::process::Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = SampleConfig {
        full_every: 60,
        ..config(p)
    };
    let (first, _) = rt.block_on(sample_once(&conn, &cfg)).unwrap();
    assert_eq!(images(&first).len(), 200);
    let mut previous = Arc::new(first);
    for round in 0..3u64 {
        // 1% of the headers change: two more images get an advisory lock.
        for i in 0..2 {
            let spec = format!("{p}/img-{:03}", round * 2 + i);
            ceph_cli("rbd", &["lock", "add", &spec, "bench"]);
        }
        let (inc, _) = rt
            .block_on(sample_since(&conn, &cfg, previous.clone(), round + 1))
            .unwrap();
        let (full, _) = rt.block_on(sample_once(&conn, &cfg)).unwrap();
        assert_eq!(images(&inc), images(&full), "round {round}");
        // Due for the periodic full read: read in full without a light
        // read first. The others: light, and in full only if changed.
        let seq = round + 1;
        let due: Vec<&String> = images(&full)
            .keys()
            .filter(|id| due_for_full_read(id, seq, 60))
            .collect();
        let changed = (0..2)
            .map(|i| image_id(p, &format!("img-{:03}", round * 2 + i)))
            .filter(|id| !due.contains(&id))
            .count() as u64;
        let r = inc.reads;
        assert_eq!(r.light, 200 - due.len() as u64, "{r:?}");
        assert_eq!(r.changed, changed, "{r:?}");
        assert_eq!(r.full, due.len() as u64 + changed, "{r:?}");
        previous = Arc::new(inc);
    }
}

#[test]
fn the_light_read_works_with_the_documented_read_only_caps() {
    let pool = TestPool::new("incr-caps");
    let p = pool.0.as_str();
    for n in ["a", "b"] {
        ceph_cli("rbd", &["create", &format!("{p}/{n}"), "--size", "8M"]);
    }
    let _watch = Holder::start(p, "a", &[]);
    let keyring = scratch_dir("incr-caps").join("keyring");
    let out = ceph_cli(
        "ceph",
        &[
            "auth",
            "get-or-create",
            "client.rbd-exporter-incr",
            "mon",
            "profile rbd",
            "osd",
            "profile rbd-read-only",
        ],
    );
    std::fs::write(&keyring, out).unwrap();
    let ro_conf = conf_variant("incr-caps-conf", keyring.to_str().unwrap(), None);
    let (rt, conn) = (runtime(), connect_as(&ro_conf, "rbd-exporter-incr"));
    let cfg = config(p);
    let (first, _) = rt.block_on(sample_once(&conn, &cfg)).unwrap();
    let first = Arc::new(first);
    let (inc, _) = rt
        .block_on(sample_since(&conn, &cfg, first.clone(), 1))
        .unwrap();
    assert_eq!(inc.reads.light, 2, "{:?}", inc.reads);
    assert_eq!(inc.reads.full, 0, "{:?}", inc.reads);
    assert_eq!(images(&inc), images(&first));
    let a = images(&inc).values().find(|i| i.name == "a").unwrap();
    assert_eq!(a.watchers.len(), 1);
    ceph_cli("ceph", &["auth", "rm", "client.rbd-exporter-incr"]);
}
