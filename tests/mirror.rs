//! rbd-mirror daemons are recognised from the cluster, without an inventory.
//!
//! Two throwaway clusters (scripts/mirror.sh: snapshot-based mirroring of the
//! pool `volumes`, an rbd-mirror daemon on the secondary). A Cinder volume is
//! created on the primary, mirrored, renamed to `volume-<uuid>.deleted` and
//! the rename replayed to the secondary, where the daemon holds the image
//! open. The exporter, run against the SECONDARY without
//! `--watchers.inventory`, must not call the daemon's watch an orphan, while
//! a plain client (scripts/holder.py) holding another `.deleted` image there
//! still is one. Against the PRIMARY (no daemon of its own, no
//! `rbd_mirror_leader`), the same holds for the secondary daemon's peer
//! connection, recognised by its watch on the pool's `rbd_mirroring`.
//!
//! Needs the Ceph packages and rbd-mirror (`make deps`); it fails, never
//! skips, without them. It does not use the main test cluster
//! (`CEPH_RBD_TEST_CONF`): its clusters listen on 127.0.0.1 ports
//! `CEPH_TEST_MIRROR_PRIMARY_PORT` (30823) and
//! `CEPH_TEST_MIRROR_SECONDARY_PORT` (30824), and everything it started
//! (daemon, holder, exporter, clusters, directories) is removed when the test
//! ends, passed or failed. Each wait is bounded; the whole takes ~20 s.

mod common;

use common::metrics::series;
use common::process::wait_for;
use common::{BIN, EXPORTER_CAPS, EXPORTER_USER, Exporter, Holder, conf_text_with, repo};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

const POOL: &str = "volumes";

/// The mirrored pair, stopped (`scripts/mirror.sh stop`) on drop.
struct Pair {
    dir: PathBuf,
}

impl Pair {
    fn start() -> Pair {
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join("rbd-mirror").is_file()))
            .unwrap_or(false);
        assert!(
            on_path,
            "rbd-mirror is not installed: run `make deps` (scripts/install-deps.sh installs it)"
        );
        let dir = std::env::temp_dir().join(format!(
            "ceph-rbd-exporter-test-{}-mirror",
            std::process::id()
        ));
        // Made before the start so that a start failing half-way is
        // stopped too.
        let pair = Pair { dir };
        let out = pair.script("start", 120);
        assert!(
            out.status.success(),
            "scripts/mirror.sh start failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pair
    }

    fn script(&self, cmd: &str, seconds: u32) -> Output {
        Command::new("timeout")
            .arg(seconds.to_string())
            .arg("bash")
            .arg(repo().join("scripts/mirror.sh"))
            .arg(cmd)
            .arg(&self.dir)
            .output()
            .expect("timeout(1) and bash")
    }

    fn conf(&self, site: &str) -> String {
        self.dir
            .join(site)
            .join("ceph.conf")
            .to_string_lossy()
            .into_owned()
    }

    /// Runs a Ceph CLI tool on one site (bounded to 30 s).
    fn try_cli(&self, site: &str, tool: &str, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["30", tool, "-c", &self.conf(site)])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"))
    }

    /// Like [`Pair::try_cli`], and it must succeed; gives stdout.
    fn cli(&self, site: &str, tool: &str, args: &[&str]) -> String {
        let out = self.try_cli(site, tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?} on the {site} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A ceph.conf of `site` for the exporter's read-only user.
    fn exporter_conf(&self, site: &str) -> String {
        let user = format!("client.{EXPORTER_USER}");
        let mut args = vec!["auth", "get-or-create", &user];
        args.extend(EXPORTER_CAPS);
        let keyring = self.dir.join(format!("{site}-exporter.keyring"));
        std::fs::write(&keyring, self.cli(site, "ceph", &args)).unwrap();
        let text = std::fs::read_to_string(self.conf(site)).unwrap();
        let path = self.dir.join(format!("{site}-exporter.conf"));
        let conf = conf_text_with(&text, keyring.to_str().unwrap(), None);
        std::fs::write(&path, conf).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// The addresses of the watchers of `object` in the pool, as
    /// `rados listwatchers` prints them (`watcher=ADDR client.N cookie=C`).
    fn watchers(&self, site: &str, object: &str) -> Vec<String> {
        let out = self.try_cli(site, "rados", &["-p", POOL, "listwatchers", object]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("watcher="))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    fn image_id(&self, site: &str, image: &str) -> String {
        let info = self.cli(site, "rbd", &["info", &spec(image), "--format", "json"]);
        let info: Value = serde_json::from_str(&info).unwrap();
        info["id"].as_str().unwrap().to_string()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let out = self.script("stop", 60);
        if !out.status.success() {
            eprintln!(
                "scripts/mirror.sh stop failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn spec(image: &str) -> String {
    format!("{POOL}/{image}")
}

fn uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap()
        .trim()
        .to_string()
}

/// Creates `volume-<uuid>` on the primary, mirrors it, renames it to
/// `.deleted` there and waits for the rename to be replayed and for the
/// secondary's daemon to watch it. Returns the name and the daemon's
/// address.
fn replay_deleted_volume(pair: &Pair) -> (String, String) {
    let name = format!("volume-{}", uuid());
    let deleted = format!("{name}.deleted");
    pair.cli("primary", "rbd", &["create", "--size", "16M", &spec(&name)]);
    let enable = ["mirror", "image", "enable", &spec(&name), "snapshot"];
    pair.cli("primary", "rbd", &enable);
    let replicated = wait_for(
        Duration::from_secs(60),
        "the image on the secondary",
        || {
            let out = pair.try_cli("secondary", "rbd", &["info", &spec(&name)]);
            out.status.success().then_some(())
        },
    );
    assert!(replicated.is_some(), "{name} never reached the secondary");
    pair.cli("primary", "rbd", &["rename", &spec(&name), &spec(&deleted)]);
    // Snapshot mirroring replays a rename with the next mirror snapshot.
    let push = ["mirror", "image", "snapshot", &spec(&deleted)];
    pair.cli("primary", "rbd", &push);
    let renamed = wait_for(
        Duration::from_secs(60),
        "the rename on the secondary",
        || {
            let ls = pair.cli("secondary", "rbd", &["ls", POOL]);
            ls.lines().any(|l| l == deleted).then_some(())
        },
    );
    assert!(
        renamed.is_some(),
        "the rename to {deleted} was never replayed"
    );

    let header = format!("rbd_header.{}", pair.image_id("secondary", &deleted));
    let daemon = wait_for(Duration::from_secs(30), "the daemon's watch", || {
        let leader = pair.watchers("secondary", "rbd_mirror_leader");
        let on_header = pair.watchers("secondary", &header);
        // What the exporter relies on: the daemon watches the header with
        // the very address it watches rbd_mirror_leader with.
        on_header.into_iter().find(|a| leader.contains(a))
    });
    let daemon = daemon.unwrap_or_else(|| {
        panic!(
            "no watcher of {header} is a watcher of rbd_mirror_leader: header {:?}, leader {:?}",
            pair.watchers("secondary", &header),
            pair.watchers("secondary", "rbd_mirror_leader")
        )
    });
    (deleted, daemon)
}

/// `ceph-rbd-exporter dump` on a site, as the read-only user.
fn dump(conf: &str) -> Vec<Value> {
    let out = Command::new("timeout")
        .args([
            "60",
            BIN,
            "--ceph.config",
            conf,
            "--ceph.user",
            EXPORTER_USER,
        ])
        .args(["--log.level", "warn", "dump"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The (address, orphan reason) of every watcher of a dumped image.
fn watcher_verdicts(images: &[Value], image: &str) -> Vec<(String, Value)> {
    let found = images
        .iter()
        .find(|i| i["pool"] == POOL && i["namespace"] == "" && i["image"] == image)
        .unwrap_or_else(|| panic!("{image} not in the dump"));
    found["watchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let address = w["address"].as_str().unwrap().to_string();
            (address, w["orphan_reason"].clone())
        })
        .collect()
}

fn orphaned_series(body: &str, image: &str) -> usize {
    series(body, "ceph_rbd_image_orphaned_watchers")
        .iter()
        .filter(|(l, _)| l["pool"] == POOL && l["image"] == image)
        .count()
}

#[test]
fn rbd_mirror_daemons_are_never_orphans_on_the_secondary_nor_on_the_primary() {
    let pair = Pair::start();
    let (mirrored, daemon) = replay_deleted_volume(&pair);

    // A plain client holding another deleted volume on the secondary.
    let held = format!("volume-{}.deleted", uuid());
    pair.cli(
        "secondary",
        "rbd",
        &["create", "--size", "16M", &spec(&held)],
    );
    let _holder = Holder::start_on(&pair.conf("secondary"), POOL, &held, &[]);

    let conf = pair.exporter_conf("secondary");
    let images = dump(&conf);
    let daemon_verdicts = watcher_verdicts(&images, &mirrored);
    assert_eq!(
        daemon_verdicts,
        vec![(daemon.clone(), Value::Null)],
        "the daemon's watch is seen, and is no orphan"
    );
    let held_verdicts = watcher_verdicts(&images, &held);
    assert_eq!(held_verdicts.len(), 1, "{held_verdicts:?}");
    assert_eq!(held_verdicts[0].1, "image_deleted", "{held_verdicts:?}");

    let exporter = Exporter::start_with_conf(&conf, EXPORTER_USER, &[]);
    let body = exporter.wait_metrics(Duration::from_secs(30), |b| orphaned_series(b, &held) == 1);
    assert_eq!(orphaned_series(&body, &mirrored), 0, "{body}");
    let seen = series(&body, "ceph_rbd_watcher_info")
        .into_iter()
        .any(|(l, _)| l["image"] == mirrored && l["address"] == daemon);
    assert!(seen, "the daemon's watcher is exported:\n{body}");
    let errors = series(&body, "ceph_rbd_exporter_sample_errors_total");
    assert!(errors.is_empty(), "{errors:?}");

    // The primary has no rbd_mirror_leader: the secondary's daemon watches
    // the mirrored image there through its peer connection, which watches
    // the pool's rbd_mirroring with the same address.
    let peer = peer_watch(&pair, &mirrored);
    assert!(
        pair.watchers("primary", "rbd_mirror_leader").is_empty(),
        "no daemon of the primary's own"
    );
    let plain = format!("volume-{}.deleted", uuid());
    pair.cli(
        "primary",
        "rbd",
        &["create", "--size", "16M", &spec(&plain)],
    );
    let _plain_holder = Holder::start_on(&pair.conf("primary"), POOL, &plain, &[]);
    let plain_header = format!("rbd_header.{}", pair.image_id("primary", &plain));
    let holder = pair.watchers("primary", &plain_header);
    let mirroring = pair.watchers("primary", "rbd_mirroring");
    assert_eq!(holder.len(), 1, "{holder:?}");
    assert!(
        !mirroring.contains(&holder[0]),
        "a plain librbd client does not watch rbd_mirroring: {mirroring:?}"
    );
    // The dump fails on any pool error.
    let primary = dump(&pair.exporter_conf("primary"));
    assert_eq!(
        watcher_verdicts(&primary, &mirrored),
        vec![(peer, Value::Null)],
        "the remote daemon's peer watch is seen on the primary, and is no orphan"
    );
    let plain_verdicts = watcher_verdicts(&primary, &plain);
    assert_eq!(plain_verdicts.len(), 1, "{plain_verdicts:?}");
    assert_eq!(plain_verdicts[0].1, "image_deleted", "{plain_verdicts:?}");
}

/// Waits for the secondary daemon's peer connection to watch `image` on the
/// primary with the address it watches the pool's `rbd_mirroring` with;
/// gives that address.
fn peer_watch(pair: &Pair, image: &str) -> String {
    let header = format!("rbd_header.{}", pair.image_id("primary", image));
    let peer = wait_for(Duration::from_secs(30), "the peer's watch", || {
        let mirroring = pair.watchers("primary", "rbd_mirroring");
        let on_header = pair.watchers("primary", &header);
        on_header.into_iter().find(|a| mirroring.contains(a))
    });
    peer.unwrap_or_else(|| {
        panic!(
            "no watcher of {header} on the primary watches rbd_mirroring: header {:?}, rbd_mirroring {:?}",
            pair.watchers("primary", &header),
            pair.watchers("primary", "rbd_mirroring")
        )
    })
}
