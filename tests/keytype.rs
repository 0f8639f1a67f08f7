//! A keyring holding an `aes256k` key (the default of Ceph 20) that the
//! loaded librados cannot read: the exporter stops at start with exit code 2
//! and one line naming the keyring, the entity, the key type and librados.
//! No cluster is needed: the mon address is one where nothing listens, and
//! the keys are made here.

use base64::Engine as _;
use ceph_rbd_exporter::ceph::{KeyType, loaded_ceph_version};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ceph-rbd-exporter");

/// A key as Ceph's `CryptoKey::encode` writes it: `u16` type, created
/// (`u32` seconds, `u32` nanoseconds), `u16` length, secret; in base64.
fn key(key_type: u16, secret_len: usize) -> String {
    let mut bytes = key_type.to_le_bytes().to_vec();
    bytes.extend(1_779_000_000u32.to_le_bytes());
    bytes.extend(123_456_789u32.to_le_bytes());
    bytes.extend((secret_len as u16).to_le_bytes());
    bytes.extend((0..secret_len).map(|i| i as u8 ^ 0x5a));
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A scratch directory with a ceph.conf whose keyring holds `key` for
/// client.admin; removed on drop.
struct Setup(PathBuf);

impl Setup {
    fn new(name: &str, key: &str) -> Setup {
        let dir = std::env::temp_dir().join(format!(
            "rbd-exporter-keytype-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("ceph.client.admin.keyring"),
            format!("[client.admin]\n\tkey = {key}\n\tcaps mon = \"allow r\"\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("ceph.conf"),
            format!(
                "[global]\nmon host = v2:127.0.0.1:1\nkeyring = {}\n",
                dir.join("ceph.client.admin.keyring").display()
            ),
        )
        .unwrap();
        Setup(dir)
    }

    fn keyring(&self) -> PathBuf {
        self.0.join("ceph.client.admin.keyring")
    }

    fn conf(&self) -> PathBuf {
        self.0.join("ceph.conf")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the exporter with `args` after `--ceph.config`/`--ceph.user`,
/// killing it after 60 s (a preflight that wrongly passed would serve on).
fn run(conf: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(BIN)
        .arg("--ceph.config")
        .arg(conf)
        .args(["--ceph.user", "admin", "--ceph.op-timeout", "2s"])
        .args(["--web.listen-address", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The exporter's own error lines (`ceph-rbd-exporter: ...`).
fn error_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("ceph-rbd-exporter: "))
        .map(str::to_string)
        .collect()
}

/// Whether the librados this test (and the exporter) runs with reads
/// aes256k keys: then the key is no problem, and connecting is what fails.
fn librados_reads_aes256k() -> bool {
    let version = loaded_ceph_version().expect("the Ceph release of the loaded librados");
    KeyType::Aes256k.readable_by(version) == Some(true)
}

#[test]
fn an_aes256k_key_librados_cannot_read_stops_the_exporter_with_one_line() {
    let aes256k = key(2, 32);
    assert_eq!(KeyType::of_base64(&aes256k), KeyType::Aes256k);
    let setup = Setup::new("serve", &aes256k);
    if librados_reads_aes256k() {
        // A librados of 19.2.6, 20.2.4 or newer reads the key: `dump` gets
        // past preflight and fails to reach the mons.
        let out = run(&setup.conf(), &["dump"], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(!stderr.contains("aes256k"), "{stderr}");
        return;
    }
    // The default command (serve) stops in preflight.
    let out = run(&setup.conf(), &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines = error_lines(&out);
    assert_eq!(lines.len(), 1, "{stderr}");
    let line = &lines[0];
    for part in [
        &format!("keyring {}", setup.keyring().display()),
        "holds an aes256k key for client.admin",
        "librados",
        "cannot read",
        "librados 20.2.4 or newer",
    ] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
}

#[test]
fn with_the_ceph_release_unknown_a_failed_connect_names_the_key() {
    if librados_reads_aes256k() {
        return;
    }
    let setup = Setup::new("unknown-release", &key(2, 32));
    // Ceph's own override of ceph_version_to_str(), here made unparseable.
    let env = [("ceph_debug_version_for_testing", "not-a-version")];
    let out = run(&setup.conf(), &["dump"], &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(Ceph release unknown)"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines = error_lines(&out);
    assert_eq!(lines.len(), 1, "{stderr}");
    for part in [
        "cannot connect to the cluster as client.admin",
        &format!("keyring {}", setup.keyring().display()),
        "holds an aes256k key for client.admin",
        "(Ceph release unknown) may not read",
    ] {
        assert!(lines[0].contains(part), "{part:?} not in {}", lines[0]);
    }
}

#[test]
fn an_aes_key_passes_preflight() {
    let setup = Setup::new("aes", &key(1, 16));
    let out = run(&setup.conf(), &["dump"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Past preflight, connecting to a mon where nothing listens times out.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines = error_lines(&out);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("cannot connect to the cluster"),
        "{stderr}"
    );
    assert!(!stderr.contains("aes256k"), "{stderr}");
}
