//! Connecting without a ceph.conf, as in a Rook pod: `--ceph.mon-host` (or
//! its variable, in Rook's `rook-ceph-mon-endpoints` form) with the key in
//! `--ceph.key-file` or `CEPH_RBD_EXPORTER_CEPH_KEY`. Every exporter here
//! runs with an empty environment and no ceph.conf, samples the test
//! cluster like one started with its ceph.conf, and never prints the key.
//!
//! Run against the test cluster (`CEPH_RBD_TEST_CONF`), with
//! `-- --test-threads 1`.

mod common;

use common::process::{Proc, Scratch};
use common::{BIN, ceph_cli, conf, http, scratch_dir};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A key the test cluster does not know (well-formed).
const WRONG_KEY: &str = "AQBSdFhjAAAAABAAhSmw1uU1nqzOq6W3W6gG8A==";

/// The test cluster's mon address, as its ceph.conf's `mon host` gives it
/// (`v2:127.0.0.1:PORT`).
fn mon_addr() -> String {
    let text = std::fs::read_to_string(conf()).unwrap();
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            matches!(k.trim(), "mon host" | "mon_host").then(|| v.trim().to_string())
        })
        .expect("mon host in the test ceph.conf")
}

/// The mon address as Rook writes it in rook-ceph-mon-endpoints' `data`:
/// `IP:PORT`, without the `v2:` prefix.
fn rook_endpoint() -> String {
    let addr = mon_addr();
    let first = addr.trim_start_matches('[').split(',').next().unwrap();
    let first = first.trim_end_matches(']');
    first
        .strip_prefix("v2:")
        .unwrap_or(first)
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

fn key_of(entity: &str) -> String {
    ceph_cli("ceph", &["auth", "print-key", entity])
        .trim()
        .to_string()
}

/// A file holding `text` in `dir`.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The exporter with an empty environment (`env` only) and no ceph.conf:
/// the default one is absent here, or (on a machine that has one) an
/// empty one is named instead, which reads as none.
fn bare_exporter(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear();
    if let Some(v) = std::env::var_os("LD_LIBRARY_PATH") {
        cmd.env("LD_LIBRARY_PATH", v);
    }
    cmd.envs(env.iter().copied());
    if Path::new("/etc/ceph/ceph.conf").exists() && !args.contains(&"--ceph.config") {
        let empty =
            std::env::temp_dir().join(format!("mon-host-empty-{}.conf", std::process::id()));
        std::fs::write(&empty, "").unwrap();
        eprintln!("/etc/ceph/ceph.conf exists here: naming an empty ceph.conf instead");
        cmd.arg("--ceph.config").arg(empty);
    }
    cmd.args(["--web.listen-address", "127.0.0.1:0"]).args(args);
    cmd
}

/// Output of a run that must end on its own within `limit`.
struct Run {
    code: Option<i32>,
    out: String,
    took: Duration,
}

fn run_bounded(mut cmd: Command, limit: Duration) -> Run {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = start.elapsed();
    let output = child.wait_with_output().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(took <= limit, "still running after {limit:?}:\n{out}");
    Run {
        code: output.status.code(),
        out,
        took,
    }
}

/// Starts a serving exporter, waits for `ceph_rbd_exporter_up 1`, and
/// returns its `ceph_rbd_pool_images` lines (per pool image counts) and
/// its log so far.
fn serve_and_count(name: &str, cmd: &mut Command) -> (Vec<String>, String) {
    let (proc, addr) = Proc::start(name, cmd, "serving metrics");
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (_, body) = http(&addr, "GET", "/metrics");
        if body.lines().any(|l| l == "ceph_rbd_exporter_up 1") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never sampled the cluster:\n{}\n{body}",
            proc.tail(40)
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut counts: Vec<String> = body
        .lines()
        .filter(|l| l.starts_with("ceph_rbd_pool_images{"))
        .map(str::to_string)
        .collect();
    counts.sort();
    assert!(
        !counts.is_empty(),
        "{name}: no ceph_rbd_pool_images:\n{body}"
    );
    (counts, proc.tail(10_000))
}

/// The per-pool image counts of an exporter started as client.admin with
/// the test ceph.conf: what every run without it must match.
fn reference_counts() -> Vec<String> {
    let mut cmd = Command::new(BIN);
    cmd.args(["--ceph.config", &conf(), "--ceph.user", "admin"])
        .args([
            "--web.listen-address",
            "127.0.0.1:0",
            "--sample.interval",
            "2s",
        ]);
    serve_and_count("reference exporter", &mut cmd).0
}

/// Asserts that no secret is in `text`.
fn assert_no_key(text: &str, keys: &[&str], what: &str) {
    for key in keys {
        let body = key.trim_end_matches('=');
        assert!(!text.contains(body), "{what} printed a key:\n{text}");
    }
}

#[test]
fn key_file_and_mon_host_flag_sample_like_ceph_conf() {
    let reference = reference_counts();
    let dir = Scratch(scratch_dir("mon-host-flag"));
    let key = key_of("client.admin");
    let key_file = write(&dir.0, "admin.key", &format!("{key}\n"));
    let mon = mon_addr();
    let mut cmd = bare_exporter(
        &[
            "--ceph.mon-host",
            &mon,
            "--ceph.user",
            "admin",
            "--log.level",
            "debug",
        ],
        &[],
    );
    cmd.arg("--ceph.key-file").arg(&key_file);
    cmd.args(["--sample.interval", "2s"]);
    let (counts, log) = serve_and_count("exporter with --ceph.mon-host", &mut cmd);
    assert_eq!(counts, reference);
    assert_no_key(&log, &[&key], "the exporter");
}

#[test]
fn key_variable_and_rooks_mon_endpoints_form_sample_like_ceph_conf() {
    let reference = reference_counts();
    let key = key_of("client.admin");
    // As rook-ceph-mon-endpoints' `data`, with a second mon that is down.
    let mons = format!("a={},b=127.0.0.1:1", rook_endpoint());
    let mut cmd = bare_exporter(
        &["--log.level", "debug", "--sample.interval", "2s"],
        &[
            ("CEPH_RBD_EXPORTER_CEPH_MON_HOST", &mons),
            ("CEPH_RBD_EXPORTER_CEPH_KEY", &key),
            ("CEPH_RBD_EXPORTER_CEPH_USER", "admin"),
        ],
    );
    let (counts, log) = serve_and_count("exporter with Rook's form", &mut cmd);
    assert_eq!(counts, reference);
    assert_no_key(&log, &[&key], "the exporter");
}

/// A cephx user with the README's read-only caps, removed on drop.
struct ReadOnlyUser(String);

impl ReadOnlyUser {
    fn create() -> ReadOnlyUser {
        let entity = format!("client.rbd-exporter-monhost-{}", std::process::id());
        let mut args = vec!["auth", "get-or-create", entity.as_str()];
        args.extend(common::EXPORTER_CAPS);
        ceph_cli("ceph", &args);
        ReadOnlyUser(entity)
    }

    fn id(&self) -> &str {
        self.0.strip_prefix("client.").unwrap()
    }
}

impl Drop for ReadOnlyUser {
    fn drop(&mut self) {
        let _ = Command::new("ceph")
            .args(["auth", "rm", &self.0])
            .env("CEPH_CONF", conf())
            .output();
    }
}

#[test]
fn the_read_only_user_with_its_key_file() {
    let reference = reference_counts();
    let user = ReadOnlyUser::create();
    let dir = Scratch(scratch_dir("mon-host-ro"));
    let key = key_of(&user.0);
    let key_file = write(&dir.0, "key", &key);
    let mut cmd = bare_exporter(
        &["--ceph.mon-host", &mon_addr(), "--ceph.user", user.id()],
        &[],
    );
    cmd.arg("--ceph.key-file").arg(&key_file);
    cmd.args(["--sample.interval", "2s", "--log.level", "debug"]);
    let (counts, log) = serve_and_count("exporter as the read-only user", &mut cmd);
    assert_eq!(counts, reference);
    assert_no_key(&log, &[&key], "the exporter");
}

#[test]
fn bad_keys_and_mon_hosts_are_refused_naming_the_flag_and_never_print_the_key() {
    let dir = Scratch(scratch_dir("mon-host-bad"));
    let key = key_of("client.admin");
    let key_file = write(&dir.0, "admin.key", &key);
    let wrong_file = write(&dir.0, "wrong.key", WRONG_KEY);
    let missing = dir.0.join("missing.key");
    let mon = mon_addr();
    let keys = [key.as_str(), WRONG_KEY];
    let limit = Duration::from_secs(30);
    let path = |p: &Path| p.to_str().unwrap().to_string();

    // A key the cluster does not know: rejected at start, exit 2, as with
    // a ceph.conf (the serving command; it would serve on otherwise).
    let r = run_bounded(
        bare_exporter(
            &[
                "--ceph.mon-host",
                &mon,
                "--ceph.key-file",
                &path(&wrong_file),
            ],
            &[],
        ),
        limit,
    );
    assert_eq!(r.code, Some(2), "{}", r.out);
    assert!(r.out.contains("rejected client.admin"), "{}", r.out);
    // One line: librados' own messages stay off stderr without a ceph.conf too.
    assert_eq!(r.out.trim().lines().count(), 1, "{}", r.out);
    assert_no_key(&r.out, &keys, "a wrong key");

    // The same wrong key from the variable.
    let r = run_bounded(
        bare_exporter(
            &["--ceph.mon-host", &mon],
            &[("CEPH_RBD_EXPORTER_CEPH_KEY", WRONG_KEY)],
        ),
        limit,
    );
    assert_eq!(r.code, Some(2), "{}", r.out);
    assert!(r.out.contains("rejected client.admin"), "{}", r.out);
    assert_no_key(&r.out, &keys, "a wrong key");

    // A key file that is not there.
    let r = run_bounded(
        bare_exporter(
            &["--ceph.mon-host", &mon, "--ceph.key-file", &path(&missing)],
            &[],
        ),
        limit,
    );
    assert_eq!(r.code, Some(2), "{}", r.out);
    assert!(
        r.out.contains("--ceph.key-file") && r.out.contains(&path(&missing)),
        "{}",
        r.out
    );
    assert_eq!(r.out.trim().lines().count(), 1, "{}", r.out);

    // A key file that holds no key: refused without quoting it.
    let junk = write(&dir.0, "junk.key", &format!("{}!!\n", &key[..20]));
    let r = run_bounded(
        bare_exporter(
            &["--ceph.mon-host", &mon, "--ceph.key-file", &path(&junk)],
            &[],
        ),
        limit,
    );
    assert_eq!(r.code, Some(2), "{}", r.out);
    assert!(r.out.contains("no cephx key"), "{}", r.out);
    assert!(!r.out.contains(&key[..20]), "{}", r.out);

    // Key file and key variable together.
    let r = run_bounded(
        bare_exporter(
            &["--ceph.mon-host", &mon, "--ceph.key-file", &path(&key_file)],
            &[("CEPH_RBD_EXPORTER_CEPH_KEY", &key)],
        ),
        limit,
    );
    assert_eq!(r.code, Some(2), "{}", r.out);
    assert!(
        r.out.contains("--ceph.key-file") && r.out.contains("CEPH_RBD_EXPORTER_CEPH_KEY"),
        "{}",
        r.out
    );
    assert_no_key(&r.out, &keys, "two keys");

    // Empty and garbage mon hosts, from the flag and the variable.
    for bad in ["", "mon!", "10.0.0.1:99999", "a=", "[v2:127.0.0.1:1"] {
        let r = run_bounded(
            bare_exporter(
                &["--ceph.mon-host", bad, "--ceph.key-file", &path(&key_file)],
                &[],
            ),
            limit,
        );
        assert_eq!(r.code, Some(2), "{bad:?}: {}", r.out);
        assert!(r.out.contains("--ceph.mon-host"), "{bad:?}: {}", r.out);
        assert_no_key(&r.out, &keys, "a bad mon host");
    }
    let r = run_bounded(
        bare_exporter(
            &["--ceph.key-file", &path(&key_file)],
            &[("CEPH_RBD_EXPORTER_CEPH_MON_HOST", "a=10.0.0.1:6789,b=")],
        ),
        limit,
    );
    assert_eq!(r.code, Some(2), "{}", r.out);
    assert!(r.out.contains("--ceph.mon-host"), "{}", r.out);

    // Neither a key nor a ceph.conf: the keyring librados would search is
    // missing, and the message says how to give the key.
    // (librados' default keyrings, with the cluster named `ceph`).
    let defaults = [
        "ceph.client.admin.keyring",
        "ceph.keyring",
        "keyring",
        "keyring.bin",
    ];
    if defaults
        .iter()
        .all(|f| !Path::new("/etc/ceph").join(f).exists())
    {
        let r = run_bounded(bare_exporter(&["--ceph.mon-host", &mon], &[]), limit);
        assert_eq!(r.code, Some(2), "{}", r.out);
        assert!(
            r.out.contains("/etc/ceph/ceph.client.admin.keyring"),
            "{}",
            r.out
        );
        assert!(r.out.contains("--ceph.key-file"), "{}", r.out);
    }

    // A mon where nothing listens: the connect timeout, within
    // --ceph.op-timeout (plus start-up).
    let r = run_bounded(
        bare_exporter(
            &[
                "--ceph.mon-host",
                "v2:127.0.0.1:1",
                "--ceph.key-file",
                &path(&key_file),
                "--ceph.op-timeout",
                "3s",
                "dump",
            ],
            &[],
        ),
        limit,
    );
    assert_eq!(r.code, Some(1), "{}", r.out);
    assert!(
        r.out.contains(
            "cannot connect to the cluster as client.admin with --ceph.mon-host v2:127.0.0.1:1"
        ) && r.out.contains("timed out"),
        "{}",
        r.out
    );
    assert!(r.took < Duration::from_secs(3 + 5), "took {:?}", r.took);
    assert_no_key(&r.out, &keys, "an unreachable mon");

    // A host name that does not resolve (RFC 6761's `.invalid`): named.
    let r = run_bounded(
        bare_exporter(
            &[
                "--ceph.mon-host",
                "mon-a.invalid:3300",
                "--ceph.key-file",
                &path(&key_file),
                "--ceph.op-timeout",
                "3s",
                "dump",
            ],
            &[],
        ),
        limit,
    );
    assert_eq!(r.code, Some(1), "{}", r.out);
    assert!(
        r.out.contains("--ceph.mon-host mon-a.invalid:3300") && r.out.contains("resolve"),
        "{}",
        r.out
    );
}

/// An `aes256k` key (Ceph 20's default) in the key file, with a librados
/// that cannot read it: refused at start naming the key file, as for a
/// keyring (tests/keytype.rs). No cluster needed: the mon is nowhere.
#[test]
fn an_unreadable_key_type_in_the_key_file_is_named() {
    use base64::Engine as _;
    use ceph_rbd_exporter::ceph::{KeyType, loaded_ceph_version};
    let version = loaded_ceph_version().expect("the loaded librados' version");
    if KeyType::Aes256k.readable_by(version) != Some(false) {
        eprintln!("SKIPPED: librados {version} reads aes256k keys");
        return;
    }
    // `CryptoKey::encode`: u16 type 2, created (u32, u32), u16 length, secret.
    let mut bytes = 2u16.to_le_bytes().to_vec();
    bytes.extend(1_779_000_000u32.to_le_bytes());
    bytes.extend(0u32.to_le_bytes());
    bytes.extend(32u16.to_le_bytes());
    bytes.extend((0..32u8).map(|i| i ^ 0x5a));
    let key = base64::engine::general_purpose::STANDARD.encode(bytes);
    let dir = Scratch(scratch_dir("mon-host-aes256k"));
    let key_file = write(&dir.0, "key", &key);
    let r = run_bounded(
        bare_exporter(
            &[
                "--ceph.mon-host",
                "v2:127.0.0.1:1",
                "--ceph.key-file",
                key_file.to_str().unwrap(),
            ],
            &[],
        ),
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(2), "{}", r.out);
    assert!(
        r.out
            .contains(&format!("--ceph.key-file {}", key_file.display()))
            && r.out.contains("aes256k"),
        "{}",
        r.out
    );
    assert_no_key(&r.out, &[&key], "an aes256k key");
}

/// A ceph.conf named with --ceph.config is read, and --ceph.mon-host and
/// the key override its mon address and keyring.
#[test]
fn mon_host_and_key_override_a_named_ceph_conf() {
    let dir = Scratch(scratch_dir("mon-host-override"));
    let wrong_ring = write(
        &dir.0,
        "wrong.keyring",
        &format!("[client.admin]\n\tkey = {WRONG_KEY}\n"),
    );
    let key_file = write(&dir.0, "admin.key", &key_of("client.admin"));
    let stale = common::conf_variant(
        "mon-host-stale-conf",
        wrong_ring.to_str().unwrap(),
        Some("v2:127.0.0.1:1"),
    );
    let dump = |extra: &[&str]| {
        let mut cmd = bare_exporter(&["--ceph.config", &stale, "--ceph.op-timeout", "5s"], &[]);
        cmd.args(extra).arg("dump");
        run_bounded(cmd, Duration::from_secs(60))
    };
    // The stale ceph.conf alone cannot work ...
    let r = dump(&[]);
    assert_ne!(r.code, Some(0), "{}", r.out);
    // ... with the flags it does.
    let r = dump(&[
        "--ceph.mon-host",
        &mon_addr(),
        "--ceph.key-file",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.out.contains("\"pool\""), "{}", r.out);
}
