//! Reads a real cluster can get wrong without failing: a format 1 image
//! (listed by name in the data of `rbd_directory`, which `rbd` still reads
//! but Ceph 16.2 no longer creates), and an `rbd_directory` entry that
//! does not decode. The exporter never writes; these tests prepare the
//! cluster themselves, each in a scratch pool they remove afterwards.

mod common;

use common::*;
use std::time::Duration;

/// A scratch RBD pool, removed on drop (also when the test fails).
struct ScratchPool(String);

impl ScratchPool {
    fn create(name: &str) -> ScratchPool {
        let name = format!("{name}-{}", std::process::id());
        ceph_cli("ceph", &["osd", "pool", "create", &name, "8"]);
        ceph_cli("rbd", &["pool", "init", &name]);
        ScratchPool(name)
    }
}

impl Drop for ScratchPool {
    fn drop(&mut self) {
        remove_pool(&self.0);
    }
}

/// Ceph's encoding of a TMAP holding `names` (empty values), as format 1
/// `rbd create` wrote it to `rbd_directory`.
fn tmap(names: &[&str]) -> Vec<u8> {
    let mut b = 0u32.to_le_bytes().to_vec();
    b.extend((names.len() as u32).to_le_bytes());
    for n in names {
        b.extend((n.len() as u32).to_le_bytes());
        b.extend(n.as_bytes());
        b.extend(0u32.to_le_bytes());
    }
    b
}

/// A format 1 header (`struct rbd_obj_header_ondisk`) of an 8 MiB image
/// with 4 MiB objects and no snapshots.
fn format1_header(block_name: &str) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[..33].copy_from_slice(b"<<< Rados Block Device Image >>>\n");
    let mut block = block_name.as_bytes().to_vec();
    block.resize(24, 0);
    h.extend(block);
    h.extend(b"RBD\0"); // signature
    h.extend(b"001.005\0"); // version
    h.extend([22, 0, 0, 0]); // order, crypt, comp, unused
    h.extend((8u64 << 20).to_le_bytes()); // image_size
    h.extend(0u64.to_le_bytes()); // snap_seq
    h.extend(0u32.to_le_bytes()); // snap_count
    h.extend(0u32.to_le_bytes()); // reserved
    h.extend(0u64.to_le_bytes()); // snap_names_len
    h
}

/// Writes `bytes` to `object` of `pool` with `rados put`.
fn rados_put(pool: &str, object: &str, bytes: &[u8]) {
    let path = scratch_dir(&format!("put-{object}")).join("data");
    std::fs::write(&path, bytes).unwrap();
    ceph_cli(
        "rados",
        &["-p", pool, "put", object, path.to_str().unwrap()],
    );
}

fn pool_gauge(body: &str, name: &str, pool: &str) -> Option<f64> {
    metric_value(body, &format!("{name}{{namespace=\"\",pool=\"{pool}\"}}"))
}

#[test]
fn format1_images_are_counted_named_and_not_sampled() {
    let pool = ScratchPool::create("rf-format1");
    let p = pool.0.as_str();
    ceph_cli("rbd", &["create", "--size", "8M", &format!("{p}/modern")]);
    rados_put(p, "rbd_directory", &tmap(&["old-a", "old-b"]));
    rados_put(p, "old-a.rbd", &format1_header("rb.0.1.1"));
    rados_put(p, "old-b.rbd", &format1_header("rb.0.2.2"));
    // `rbd` itself sees two format 1 images next to the format 2 one.
    let listed = rbd_json(&["ls", "-l", p]);
    let formats: Vec<(String, u64)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let name = i["image"].as_str().unwrap().to_string();
            (name, i["format"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(formats.len(), 3, "{listed}");
    assert!(formats.contains(&("old-a".into(), 1)), "{listed}");

    // dump: the format 2 image only, and a warning naming the others.
    let out = exporter_command()
        .args(["--pools", p, "dump"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let images: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["modern"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("format 1 images") && log.contains("old-a") && log.contains("old-b"),
        "{log}"
    );

    let exporter = Exporter::start(&["--pools", p]);
    let body = exporter.wait_metrics(Duration::from_secs(30), |b| {
        pool_gauge(b, "ceph_rbd_pool_format1_images", p).is_some()
    });
    assert_eq!(
        pool_gauge(&body, "ceph_rbd_pool_format1_images", p),
        Some(2.0)
    );
    assert_eq!(pool_gauge(&body, "ceph_rbd_pool_images", p), Some(1.0));
    assert!(
        pool_errors(&body, p).is_empty(),
        "{:?}",
        pool_errors(&body, p)
    );
}

#[test]
fn an_undecodable_directory_entry_is_counted_and_the_pool_still_sampled() {
    let pool = ScratchPool::create("rf-baddir");
    let p = pool.0.as_str();
    for name in ["disk-a", "disk-b"] {
        ceph_cli("rbd", &["create", "--size", "8M", &format!("{p}/{name}")]);
    }
    // One byte where an encoded string (u32 length, bytes) belongs.
    ceph_cli(
        "rados",
        &["-p", p, "setomapval", "rbd_directory", "id_deadbeef", "x"],
    );

    let images = dump(&["--pools", p]);
    let mut names: Vec<&str> = images
        .iter()
        .map(|i| i["image"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["disk-a", "disk-b"]);

    let exporter = Exporter::start(&["--pools", p]);
    let success = format!("ceph_rbd_exporter_last_success_timestamp_seconds{{pool=\"{p}\"}}");
    let decode = format!("ceph_rbd_exporter_sample_errors_total{{kind=\"decode\",pool=\"{p}\"}}");
    let body = exporter.wait_metrics(Duration::from_secs(30), |b| {
        metric_value(b, &success).is_some() && metric_value(b, &decode).is_some_and(|n| n >= 1.0)
    });
    assert_eq!(pool_gauge(&body, "ceph_rbd_pool_images", p), Some(2.0));
    let errors = pool_errors(&body, p);
    assert!(
        errors.iter().all(|l| l.contains("kind=\"decode\"")),
        "only the bad entry is counted: {errors:?}"
    );
    // Counted once per sample: it grows with the samples, and the pool's
    // success time keeps moving.
    let first = metric_value(&body, &success).unwrap();
    let later = exporter.wait_metrics(Duration::from_secs(30), |b| {
        metric_value(b, &success).is_some_and(|t| t > first)
    });
    assert!(metric_value(&later, &decode).unwrap() >= 2.0);
}
