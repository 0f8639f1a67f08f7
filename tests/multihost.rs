//! RBD clients on several "hosts" of one machine: each host is a network
//! namespace (scripts/netns.sh) with its own address, and the cluster's
//! daemons listen on the host side of the bridge. Watchers and lockers then
//! carry their namespace's address, which is what watcher attribution
//! (inventory, attachment sources, orphan verdicts) works from.
//!
//! Needs root and the Ceph packages (`make test` runs it). It starts its own
//! cluster (`.cluster-multihost`, mon port 40794, on 10.231.7.1) and its own
//! namespaces `rbdmh-1..4` (10.231.7.11-14), and removes both, and every
//! client it started, when a test ends, passes or fails.

mod common;

use common::metrics::series;
use common::{BIN, EXPORTER_CAPS, EXPORTER_USER, Exporter, conf_text_with, repo};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Namespace and link prefix for scripts/netns.sh.
const PREFIX: &str = "rbdmh";
/// The /24 the namespaces live in; the bridge (and every daemon) is .1.
const NET: &str = "10.231.7";
const MON_PORT: &str = "40794";
const POOL: &str = "mh";

/// The namespaces, in order: rbdmh-1 is compute-1, and so on. The
/// inventory (tests/data/multihost/inventory.yaml) says so.
const HOSTS: [&str; 4] = ["compute-1", "compute-2", "mirror-1", "stranger"];

/// One holder client: from namespace `ns` (1-based), watching an image.
struct Hold {
    ns: usize,
    namespace: &'static str,
    image: &'static str,
    advisory_lock: Option<&'static str>,
}

const fn hold(ns: usize, namespace: &'static str, image: &'static str) -> Hold {
    Hold {
        ns,
        namespace,
        image,
        advisory_lock: None,
    }
}

/// Who watches what. tests/data/multihost/attachments.yaml says where the
/// images belong.
const HOLDS: [Hold; 9] = [
    hold(1, "tenant", "vol-right"),
    hold(1, "", "vol-wrong"),
    hold(2, "", "vol-wrong"),
    hold(1, "", "vol-detached"),
    hold(1, "", "vol-multi"),
    hold(2, "", "vol-multi"),
    hold(3, "", "vol-mirrored"),
    hold(4, "", "vol-stranger"),
    Hold {
        ns: 2,
        namespace: "",
        image: "vol-locked",
        advisory_lock: Some("mh-lock"),
    },
];

/// One test at a time: they share the namespaces, the port and the cluster
/// directory.
static SERIAL: Mutex<()> = Mutex::new(());

fn cluster_dir() -> PathBuf {
    repo().join(".cluster-multihost")
}

fn data(name: &str) -> String {
    repo()
        .join("tests/data/multihost")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// The address a namespace's clients have.
fn ns_addr(ns: usize) -> String {
    format!("{NET}.{}", 10 + ns)
}

/// The IP of a Ceph entity address such as `10.0.0.5:0/123` or `v2:...`.
fn ip_of(address: &str) -> &str {
    let a = address
        .strip_prefix("v1:")
        .or_else(|| address.strip_prefix("v2:"))
        .or_else(|| address.strip_prefix("any:"))
        .unwrap_or(address);
    let a = a.split('/').next().unwrap_or(a);
    match a.rfind(':') {
        Some(i) => a[..i].trim_start_matches('[').trim_end_matches(']'),
        None => a,
    }
}

fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn script(name: &str) -> PathBuf {
    repo().join("scripts").join(name)
}

/// Best-effort removal of everything a run makes; also what a crashed run
/// left behind.
fn teardown() {
    let _ = Command::new("bash")
        .arg(script("cluster.sh"))
        .arg("stop")
        .arg(cluster_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("bash")
        .arg(script("netns.sh"))
        .args(["down", PREFIX])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What a holder wrote to its ready file.
#[derive(Debug, Clone)]
struct Ready {
    client: String,
    address: String,
}

/// The namespaces, the cluster and the holders, all removed on drop (also
/// when an assertion fails: drop runs while the panic unwinds).
struct Env {
    exporter_conf: String,
    holders: Vec<Child>,
    ready: Vec<Ready>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for h in &mut self.holders {
            let _ = h.kill();
            let _ = h.wait();
        }
        teardown();
    }
}

impl Env {
    /// Namespaces up, a cluster on the bridge address, the images of
    /// [`HOLDS`] seeded and every holder watching.
    fn start() -> Env {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "tests/multihost.rs needs root (network namespaces); run it with `make test`"
        );
        let t0 = Instant::now();
        teardown();
        let dir = cluster_dir();
        let conf = dir.join("ceph.conf").to_string_lossy().into_owned();
        let mut env = Env {
            exporter_conf: String::new(),
            holders: Vec::new(),
            ready: Vec::new(),
            _serial: serial,
        };

        let out = run(
            "netns.sh up",
            Command::new("bash").arg(script("netns.sh")).args([
                "up",
                PREFIX,
                &HOSTS.len().to_string(),
                NET,
            ]),
        );
        for ns in 1..=HOSTS.len() {
            let line = format!("{PREFIX}-{ns} {}", ns_addr(ns));
            assert!(out.lines().any(|l| l == line), "netns.sh up: {out}");
        }
        run(
            "cluster.sh start",
            Command::new("bash")
                .arg(script("cluster.sh"))
                .arg("start")
                .arg(&dir)
                .arg(MON_PORT)
                .env("CEPH_TEST_MON_ADDR", format!("{NET}.1")),
        );
        let t_cluster = t0.elapsed();

        // Pool, RBD namespace and images in one Python process (faster than
        // one rbd CLI run per image).
        let images: BTreeSet<String> = HOLDS
            .iter()
            .map(|h| format!("{}/{}", h.namespace, h.image))
            .collect();
        run(
            "seeding",
            Command::new("/usr/bin/python3")
                .args(["-c", SEED, &conf, POOL])
                .args(&images),
        );

        // The exporter runs as a read-only user, as in production.
        let keyring = run(
            "ceph auth get-or-create",
            Command::new("ceph")
                .args(["-c", &conf, "auth", "get-or-create"])
                .arg(format!("client.{EXPORTER_USER}"))
                .args(EXPORTER_CAPS),
        );
        let keyring_path = dir.join("exporter.keyring");
        std::fs::write(&keyring_path, keyring).unwrap();
        env.exporter_conf = conf_with_keyring(&conf, &keyring_path, &dir.join("exporter.conf"));

        // Every holder at once, then wait for all of them.
        let ready_dir = dir.join("holders");
        std::fs::create_dir_all(&ready_dir).unwrap();
        let mut ready_files = Vec::new();
        for (i, h) in HOLDS.iter().enumerate() {
            let ready = ready_dir.join(format!("{i}.ready"));
            let log = std::fs::File::create(ready_dir.join(format!("{i}.log"))).unwrap();
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &format!("{PREFIX}-{}", h.ns)])
                .arg("/usr/bin/python3")
                .arg(script("holder.py"))
                .args(["--conf", &conf, "--pool", POOL, "--namespace", h.namespace])
                .args(["--image", h.image, "--ready-file"])
                .arg(&ready);
            if let Some(cookie) = h.advisory_lock {
                cmd.args(["--advisory-lock", cookie]);
            }
            // `ip netns exec` execs the command: the child is the holder.
            let child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            env.holders.push(child);
            ready_files.push(ready);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for (i, ready) in ready_files.iter().enumerate() {
            let text = loop {
                if let Ok(t) = std::fs::read_to_string(ready) {
                    break t;
                }
                if let Ok(Some(status)) = env.holders[i].try_wait() {
                    panic!(
                        "holder {i} ({}) exited with {status}: {}",
                        HOLDS[i].image,
                        std::fs::read_to_string(ready_dir.join(format!("{i}.log")))
                            .unwrap_or_default()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "holder {i} ({}) never became ready",
                    HOLDS[i].image
                );
                std::thread::sleep(Duration::from_millis(100));
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            env.ready.push(Ready {
                client: v["client"].as_str().unwrap().to_string(),
                address: v["address"].as_str().unwrap().to_string(),
            });
        }
        eprintln!(
            "multihost: cluster up in {:.1}s, {} holders ready in {:.1}s",
            t_cluster.as_secs_f64(),
            HOLDS.len(),
            t0.elapsed().as_secs_f64()
        );
        env
    }

    fn exporter_args(&self) -> Vec<String> {
        [
            "--ceph.config",
            &self.exporter_conf,
            "--ceph.user",
            EXPORTER_USER,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// `ceph-rbd-exporter dump`, the images of our pool.
    fn dump(&self, extra: &[&str]) -> Vec<Value> {
        let out = Command::new(BIN)
            .args(self.exporter_args())
            .args(["--log.level", "warn"])
            .args(extra)
            .arg("dump")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dump {extra:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("dump: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        all.as_array()
            .unwrap()
            .iter()
            .filter(|i| i["pool"] == POOL)
            .cloned()
            .collect()
    }
}

/// A copy of `conf` using `keyring`.
fn conf_with_keyring(conf: &str, keyring: &Path, out: &Path) -> String {
    let text = std::fs::read_to_string(conf).unwrap();
    let new = conf_text_with(&text, &keyring.display().to_string(), None);
    std::fs::write(out, new).unwrap();
    out.to_string_lossy().into_owned()
}

const SEED: &str = r#"
import json, sys
import rados, rbd
conf, pool, images = sys.argv[1], sys.argv[2], sys.argv[3:]
c = rados.Rados(conffile=conf)
c.conf_set("admin_socket", "")
c.connect(timeout=30)
def mon(cmd):
    r, out, err = c.mon_command(json.dumps(cmd), b"")
    if r != 0:
        sys.exit("{}: {} {}".format(cmd, r, err))
mon({"prefix": "osd pool create", "pool": pool, "pg_num": 8})
mon({"prefix": "osd pool application enable", "pool": pool, "app": "rbd"})
io = c.open_ioctx(pool)
r = rbd.RBD()
r.pool_init(io, True)
for ns in sorted({i.split("/", 1)[0] for i in images} - {""}):
    r.namespace_create(io, ns)
for i in images:
    ns, name = i.split("/", 1)
    io.set_namespace(ns)
    r.create(io, name, 16 << 20)
io.close()
c.shutdown()
"#;

fn image<'a>(images: &'a [Value], namespace: &str, name: &str) -> &'a Value {
    images
        .iter()
        .find(|i| i["namespace"] == namespace && i["image"] == name)
        .unwrap_or_else(|| panic!("{POOL}/{namespace}/{name} not in dump"))
}

fn watcher<'a>(img: &'a Value, client: &str) -> &'a Value {
    img["watchers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["client"] == client)
        .unwrap_or_else(|| panic!("{client} does not watch {}: {img:#}", img["image"]))
}

/// The test that needs nothing but the exporter as it was before watcher
/// attribution: each namespace's clients show up with the namespace's
/// address, in watchers and in the lock list.
#[test]
fn clients_in_namespaces_show_their_own_addresses() {
    let env = Env::start();
    let images = env.dump(&[]);

    for (h, r) in HOLDS.iter().zip(&env.ready) {
        assert_eq!(
            ip_of(&r.address),
            ns_addr(h.ns),
            "holder of {} in {PREFIX}-{} reports {}",
            h.image,
            h.ns,
            r.address
        );
        let img = image(&images, h.namespace, h.image);
        let w = watcher(img, &r.client);
        assert_eq!(w["address"], r.address.as_str(), "{}", h.image);
        assert_eq!(ip_of(w["address"].as_str().unwrap()), ns_addr(h.ns));
    }
    // No other watchers (nothing from loopback or the bridge address).
    let mut per_image: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for h in &HOLDS {
        *per_image.entry((h.namespace, h.image)).or_default() += 1;
    }
    for ((ns, name), n) in per_image {
        let img = image(&images, ns, name);
        assert_eq!(
            img["watchers"].as_array().unwrap().len(),
            n,
            "{name}: {img:#}"
        );
    }

    // The advisory lock taken from compute-2's namespace.
    let (i, h) = HOLDS
        .iter()
        .enumerate()
        .find(|(_, h)| h.advisory_lock.is_some())
        .unwrap();
    let img = image(&images, h.namespace, h.image);
    let locks = img["locks"].as_array().unwrap();
    assert_eq!(locks.len(), 1, "{img:#}");
    assert_eq!(locks[0]["kind"], "advisory");
    assert_eq!(locks[0]["cookie"], h.advisory_lock.unwrap());
    assert_eq!(locks[0]["locker"], env.ready[i].client.as_str());
    assert_eq!(ip_of(locks[0]["address"].as_str().unwrap()), ns_addr(2));
    assert_eq!(HOSTS[h.ns - 1], "compute-2");
    // Its holder watches the image: the lock is not stale.
    assert_eq!(locks[0]["stale"], false);
}

/// Host, role and orphan verdict per holder, given the inventory and the
/// attachment file in tests/data/multihost.
fn expected(
    h: &Hold,
) -> (
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
) {
    let host = match h.ns {
        4 => None,
        n => Some(HOSTS[n - 1]),
    };
    let role = match h.ns {
        1 | 2 => Some("compute"),
        3 => Some("rbd-mirror"),
        _ => None,
    };
    let reason = match (h.image, h.ns) {
        // Attached to compute-1, watched from compute-2 as well.
        ("vol-wrong", 2) => Some("unexpected_host"),
        // Attached nowhere, watched from compute-1.
        ("vol-detached", _) => Some("detached"),
        // Outside the client networks (and in no host entry).
        ("vol-stranger", _) => Some("unknown_client"),
        // vol-right: on its host. vol-wrong from compute-1: on its host.
        // vol-multi: multi-attach on both. vol-mirrored: rbd-mirror is
        // infrastructure. vol-locked: the source does not mention it.
        _ => None,
    };
    (host, role, reason)
}

/// Orphan verdicts from the inventory and the static attachment source, in
/// `dump` and on /metrics.
#[test]
fn orphan_verdicts_from_inventory_and_attachment_file() {
    let env = Env::start();
    let inventory = data("inventory.yaml");
    let attachments = data("attachments.yaml");
    let flags = [
        "--watchers.inventory",
        inventory.as_str(),
        "--attachments.file",
        attachments.as_str(),
    ];

    let images = env.dump(&flags);
    let mut failures = Vec::new();
    for (h, r) in HOLDS.iter().zip(&env.ready) {
        let w = watcher(image(&images, h.namespace, h.image), &r.client);
        let got = (
            w["host"].as_str(),
            w["role"].as_str(),
            w["orphan_reason"].as_str(),
        );
        for key in ["host", "role", "orphan_reason"] {
            assert!(
                w.get(key).is_some(),
                "dump watcher has no `{key}` field: {w}"
            );
        }
        if got != expected(h) {
            failures.push(format!(
                "{} from {} ({}): got host/role/reason {got:?}, want {:?}",
                h.image,
                HOSTS[h.ns - 1],
                r.address,
                expected(h)
            ));
        }
    }
    assert!(failures.is_empty(), "dump:\n{}", failures.join("\n"));

    // /metrics: the same verdicts as series.
    let exporter = Exporter::start_with_conf(&env.exporter_conf, EXPORTER_USER, &flags);
    let want_orphans: BTreeSet<(String, String, String)> = HOLDS
        .iter()
        .filter_map(|h| {
            expected(h).2.map(|reason| {
                (
                    h.namespace.to_string(),
                    h.image.to_string(),
                    reason.to_string(),
                )
            })
        })
        .collect();
    let orphans = |body: &str| -> BTreeMap<(String, String, String), f64> {
        series(body, "ceph_rbd_image_orphaned_watchers")
            .into_iter()
            .filter(|(l, v)| l["pool"] == POOL && *v > 0.0)
            .map(|(l, v)| {
                (
                    (
                        l["namespace"].clone(),
                        l["image"].clone(),
                        l["reason"].clone(),
                    ),
                    v,
                )
            })
            .collect()
    };
    let body = exporter.wait_metrics(Duration::from_secs(30), |b| {
        orphans(b).keys().cloned().collect::<BTreeSet<_>>() == want_orphans
            && series(b, "ceph_rbd_watcher_info")
                .iter()
                .filter(|(l, _)| l["pool"] == POOL)
                .count()
                == HOLDS.len()
    });
    assert!(
        orphans(&body).values().all(|v| *v == 1.0),
        "{:?}",
        orphans(&body)
    );
    let info = series(&body, "ceph_rbd_watcher_info");
    for (h, r) in HOLDS.iter().zip(&env.ready) {
        let (host, _, _) = expected(h);
        let s = info
            .iter()
            .find(|(l, _)| {
                l["pool"] == POOL
                    && l["namespace"] == h.namespace
                    && l["image"] == h.image
                    && l["client"] == r.client
            })
            .unwrap_or_else(|| panic!("no watcher_info for {} {}", h.image, r.client));
        assert_eq!(s.0["address"], r.address, "{}", h.image);
        assert_eq!(
            s.0.get("host").map(String::as_str),
            Some(host.unwrap_or("")),
            "{} from {}",
            h.image,
            HOSTS[h.ns - 1]
        );
        assert_eq!(s.1, 1.0);
    }
    // Per watcher: exactly the orphaned watchers, each with its own client,
    // address, host and reason. vol-wrong has two watchers, compute-1's
    // (attached there: legitimate) and compute-2's (unexpected_host): only
    // compute-2's may be listed.
    let want_watchers: BTreeSet<[String; 6]> = HOLDS
        .iter()
        .zip(&env.ready)
        .filter_map(|(h, r)| {
            let (host, _, reason) = expected(h);
            reason.map(|reason| {
                [
                    h.namespace.to_string(),
                    h.image.to_string(),
                    r.client.clone(),
                    r.address.clone(),
                    host.unwrap_or("").to_string(),
                    reason.to_string(),
                ]
            })
        })
        .collect();
    let got_watchers: BTreeSet<[String; 6]> = series(&body, "ceph_rbd_watcher_orphaned")
        .into_iter()
        .filter(|(l, v)| l["pool"] == POOL && *v == 1.0)
        .map(|(l, _)| {
            ["namespace", "image", "client", "address", "host", "reason"]
                .map(|k| l.get(k).cloned().unwrap_or_default())
        })
        .collect();
    assert_eq!(got_watchers, want_watchers);
    assert!(
        want_watchers
            .iter()
            .any(|w| w[1] == "vol-wrong" && w[5] == "unexpected_host"),
        "the two-watcher case is in the layout"
    );

    let pool_orphans: f64 = series(&body, "ceph_rbd_pool_orphaned_watchers")
        .iter()
        .filter(|(l, _)| l["pool"] == POOL)
        .map(|(_, v)| v)
        .sum();
    assert_eq!(pool_orphans, want_orphans.len() as f64, "{body}");
}

#[test]
fn series_parser() {
    let body = "# HELP x y\nceph_rbd_watcher_info{address=\"10.0.0.1:0/1\",host=\"\",image=\"a\\\"b\"} 1\nceph_rbd_watcher_info_other{a=\"b\"} 2\nceph_rbd_watcher_info 3\n";
    let s = series(body, "ceph_rbd_watcher_info");
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].0["address"], "10.0.0.1:0/1");
    assert_eq!(s[0].0["host"], "");
    assert_eq!(s[0].0["image"], "a\"b");
    assert_eq!(s[0].1, 1.0);
    assert_eq!(s[1].1, 3.0);
    assert_eq!(ip_of("10.231.7.11:0/2117992638"), "10.231.7.11");
    assert_eq!(ip_of("v2:10.231.7.11:0/2117992638"), "10.231.7.11");
    assert_eq!(ip_of("[fd00::1]:0/5"), "fd00::1");
}
