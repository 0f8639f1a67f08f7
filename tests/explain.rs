//! `ceph-rbd-exporter explain` on a real cluster: golden text and JSON for
//! an image that cannot be deleted (a protected snapshot with clones in two
//! other pools), for a clone held open from the wrong host with a lock,
//! and for `--orphans`. Values that change from run to run (image ids,
//! client ids, addresses, cookies) are replaced by stable placeholders
//! before comparing. `UPDATE_GOLDEN=1` rewrites the golden files.

mod common;

use common::*;
use serde_json::Value;

const NOVA_UUID: &str = "0b1e6f3a-5d2c-4e8f-9a7b-3c4d5e6f7a8b";
const VOLUME: &str = "volume-6c2f0e4a-1b3d-4f5e-8a9b-0c1d2e3f4a5b";

/// Pools of this test's own layout, so other tests cannot change it.
struct Layout {
    pools: [String; 3],
    _holder: Holder,
}

impl Drop for Layout {
    fn drop(&mut self) {
        for p in &self.pools {
            let _ = std::panic::catch_unwind(|| remove_pool(p));
        }
    }
}

fn layout() -> Layout {
    let pools = ["xg-images", "xg-volumes", "xg-vms"].map(String::from);
    for p in &pools {
        ceph_cli("ceph", &["osd", "pool", "create", p, "8"]);
        ceph_cli("rbd", &["pool", "init", p]);
    }
    let rbd = |args: &[&str]| ceph_cli("rbd", args);
    rbd(&["create", "--size", "64M", "xg-images/base"]);
    rbd(&["snap", "create", "xg-images/base@snap"]);
    rbd(&["snap", "protect", "xg-images/base@snap"]);
    rbd(&[
        "clone",
        "xg-images/base@snap",
        &format!("xg-volumes/{VOLUME}"),
    ]);
    rbd(&[
        "clone",
        "xg-images/base@snap",
        &format!("xg-vms/{NOVA_UUID}_disk"),
    ]);
    rbd(&["create", "--size", "16M", "xg-volumes/volume-locked"]);
    rbd(&["lock", "add", "xg-volumes/volume-locked", "left-behind"]);
    // The volume is open, with an advisory lock, from 127.0.0.1, which the
    // inventory calls compute-1; the attachments file says compute-9.
    let holder = Holder::start("xg-volumes", VOLUME, &["--advisory-lock", "qemu-lock"]);
    Layout {
        pools,
        _holder: holder,
    }
}

fn write_attribution_files() -> (String, String) {
    let dir = scratch_dir("explain-attribution");
    let inventory = dir.join("inventory.yaml");
    std::fs::write(
        &inventory,
        "client_networks: [127.0.0.0/8]\nhosts:\n  - {name: compute-1, role: compute, addresses: [127.0.0.1]}\n",
    )
    .unwrap();
    let attachments = dir.join("attachments.yaml");
    std::fs::write(
        &attachments,
        format!(
            "images:\n  - {{image: {VOLUME}, hosts: [compute-9], owner: 'cinder volume 6c2f0e4a (in-use, server {NOVA_UUID} on compute-9)'}}\n  - {{image: {NOVA_UUID}_disk, pool: xg-vms, hosts: [compute-9], owner: 'nova server {NOVA_UUID} on compute-9'}}\n"
        ),
    )
    .unwrap();
    (
        inventory.to_string_lossy().into(),
        attachments.to_string_lossy().into(),
    )
}

fn explain(args: &[&str], files: &(String, String)) -> String {
    let out = exporter_command()
        .args([
            "--pools",
            "xg-images,xg-volumes,xg-vms",
            "--watchers.inventory",
            &files.0,
            "--attachments.file",
            &files.1,
            "explain",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "explain {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Run-specific values in the layout, each with its placeholder.
fn volatile_values() -> Vec<(String, String)> {
    let images = dump(&["--pools", "xg-images,xg-volumes,xg-vms"]);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |value: &str, placeholder: String| {
        if !value.is_empty() && !out.iter().any(|(v, _)| v == value) {
            out.push((value.to_string(), placeholder));
        }
    };
    for img in &images {
        let name = img["image"].as_str().unwrap();
        add(img["id"].as_str().unwrap(), format!("<id of {name}>"));
        for (i, w) in img["watchers"].as_array().unwrap().iter().enumerate() {
            add(
                w["client"].as_str().unwrap(),
                format!("client.<watcher {i} of {name}>"),
            );
            add(
                w["address"].as_str().unwrap(),
                format!("<address of watcher {i} of {name}>"),
            );
            add(
                &w["cookie"].to_string(),
                format!("<cookie of watcher {i} of {name}>"),
            );
        }
        for (i, l) in img["locks"].as_array().unwrap().iter().enumerate() {
            add(
                l["locker"].as_str().unwrap(),
                format!("client.<locker {i} of {name}>"),
            );
            add(
                l["address"].as_str().unwrap(),
                format!("<address of locker {i} of {name}>"),
            );
        }
    }
    // Longest first, so no value is replaced inside a longer one.
    out.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
    out
}

fn normalise(text: &str, volatile: &[(String, String)]) -> String {
    // When the exporter first saw a watch: the time of this run.
    let mut t: String = text
        .lines()
        .map(|l| match l.split_once("\"first_seen\": ") {
            Some((indent, _)) => format!("{indent}\"first_seen\": <first seen>\n"),
            None => format!("{l}\n"),
        })
        .collect();
    if !text.ends_with('\n') {
        t.pop();
    }
    for (value, placeholder) in volatile {
        t = t.replace(value.as_str(), placeholder);
    }
    t
}

fn check_golden(name: &str, actual: &str) {
    let path = repo().join("tests/golden/explain").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        // Under CI a golden test must be able to fail: never rewrite there.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "UPDATE_GOLDEN is refused under CI: golden files change only by hand"
        );
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual,
        expected,
        "explain output differs from {} (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

#[test]
fn explain_golden_text_and_json() {
    let _layout = layout();
    let files = write_attribution_files();
    let volatile = volatile_values();

    let base = explain(&["xg-images/base"], &files);
    check_golden("base.txt", &normalise(&base, &volatile));
    // Its three clones are named with their pools, and the fix flattens
    // each before unprotecting.
    assert!(
        base.contains(&format!("rbd flatten xg-vms/{NOVA_UUID}_disk")),
        "{base}"
    );
    assert!(
        base.contains("rbd snap unprotect xg-images/base@snap"),
        "{base}"
    );

    let volume = explain(&[&format!("xg-volumes/{VOLUME}")], &files);
    check_golden("volume.txt", &normalise(&volume, &volatile));
    assert!(volume.contains("ORPHAN: unexpected_host"), "{volume}");

    let json = explain(
        &[&format!("xg-volumes/{VOLUME}"), "--output", "json"],
        &files,
    );
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["watchers"][0]["host"]["name"], "compute-1");
    assert_eq!(v["watchers"][0]["orphan_reason"], "unexpected_host");
    assert_eq!(v["owners"][0]["source"], "file");
    assert_eq!(v["parent_chain"][0]["image"], "base");
    check_golden("volume.json", &normalise(&json, &volatile));

    let orphans = explain(&["--orphans"], &files);
    check_golden("orphans.txt", &normalise(&orphans, &volatile));
    assert!(
        orphans.contains("rbd lock rm xg-volumes/volume-locked left-behind"),
        "{orphans}"
    );
    let orphans_json: Value =
        serde_json::from_str(&explain(&["--orphans", "--output", "json"], &files)).unwrap();
    assert_eq!(
        orphans_json["orphaned_watchers"].as_array().unwrap().len(),
        1
    );
    assert_eq!(orphans_json["stale_locks"].as_array().unwrap().len(), 1);
}

#[test]
fn explain_names_what_it_cannot_find() {
    for (args, expect) in [
        (
            vec!["explain", "no-such-pool/x"],
            "pool \"no-such-pool\" was not sampled",
        ),
        (
            vec!["explain", "volumes/no-such-image"],
            "no image \"no-such-image\" in pool \"volumes\"",
        ),
        (
            vec!["explain", "volumes"],
            "is not POOL/IMAGE or POOL/NAMESPACE/IMAGE",
        ),
    ] {
        let out = exporter_command().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
        // Our own errors are one line; clap adds a "try --help" hint.
        assert!(
            err.trim().lines().next().unwrap().contains(expect),
            "first line: {err}"
        );
    }
}
