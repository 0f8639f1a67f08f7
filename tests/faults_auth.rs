//! The exporter's cephx key revoked (`ceph auth rm`) and recreated with
//! the same caps while it runs (scripts/faults-test.sh): one clear log
//! line, `sample_errors_total{kind="auth"}`, and recovery without a restart
//! once the key on disk is valid again, both for `--ceph.key-file` and for
//! the keyring ceph.conf names.
//!
//! `ceph auth rm` does not end sessions that are already authenticated: the
//! removal bites when the client authenticates again. The tests make that
//! happen at once by killing the mon the exporter talks to (in production:
//! a mon restart, a network blip, or the ticket renewal within
//! `auth_service_ticket_ttl`).

mod common;

use common::faults::{FaultCluster, Restore, cluster, up};
use common::{EXPORTER_CAPS, EXPORTER_USER, Exporter, metric_value};
use std::path::Path;
use std::time::{Duration, Instant};

const ENTITY: &str = "client.rbd-exporter";
const SUCCESS: &str = r#"ceph_rbd_exporter_last_success_timestamp_seconds{pool="volumes"}"#;
const AUTH_ERRORS: &str = r#"ceph_rbd_exporter_sample_errors_total{kind="auth",pool=""}"#;
/// The line the exporter logs once when the cluster refuses its key.
const REFUSED: &str = "the cluster refuses the exporter's key";

/// Recreates the exporter's user with the same caps (a new key) and
/// writes the new key where faults-test.sh keeps it (exporter.keyring,
/// exporter.key); returns the keyring text.
fn recreate_user(c: &FaultCluster) -> String {
    let mut args = vec!["auth", "get-or-create", ENTITY];
    args.extend(EXPORTER_CAPS);
    let keyring = c.ceph(&args);
    std::fs::write(c.dir.join("exporter.keyring"), &keyring).unwrap();
    let key = keyring
        .lines()
        .find_map(|l| l.trim().strip_prefix("key = "))
        .unwrap()
        .to_string();
    std::fs::write(c.key_file(), format!("{key}\n")).unwrap();
    keyring
}

/// Makes sure the user exists (with its key on disk) when a test ends.
struct UserBack<'a>(&'a FaultCluster);

impl Drop for UserBack<'_> {
    fn drop(&mut self) {
        if self.0.try_ceph(&["auth", "get", ENTITY], 20).is_none() {
            recreate_user(self.0);
        }
    }
}

/// Removes the user, then restarts the mon the exporter talks to so that
/// it must authenticate again; waits until the exporter counts `auth`.
///
/// While a mon is down, librados cannot tell a refused key from a mon that
/// does not answer: it waits for every mon it hunts, and times out (so does
/// `ceph -s`, checked by hand). So the attempts made while the mon is down
/// count as `connect` or `timeout`, and `auth` comes once all mons answer.
fn revoke(c: &FaultCluster, exporter: &Exporter) -> String {
    let mons = c.mons_with_session(ENTITY);
    assert_eq!(mons.len(), 1, "sessions of the exporter: {mons:?}");
    c.ceph(&["auth", "rm", ENTITY]);
    eprintln!(
        "removed {ENTITY}; restarting {} so it authenticates again",
        mons[0]
    );
    c.daemon("kill-daemon", mons[0]);
    exporter.wait_metrics(Duration::from_secs(60), |b| !up(b));
    c.daemon("start-daemon", mons[0]);
    let t0 = Instant::now();
    let body = exporter.wait_metrics(Duration::from_secs(90), |b| {
        !up(b) && metric_value(b, AUTH_ERRORS).is_some()
    });
    eprintln!(
        "kind=\"auth\" counted {:.1} s after the mon was back",
        t0.elapsed().as_secs_f64()
    );
    body
}

/// Lets a few refused attempts pass, checks the log said it once, puts a
/// valid key on disk with `write`, and waits for the exporter to recover.
fn recover(c: &FaultCluster, exporter: &Exporter, frozen: f64, write: impl FnOnce(&FaultCluster)) {
    let pid = exporter.child.id();
    std::thread::sleep(Duration::from_secs(8));
    let (_, body) = exporter.get("GET", "/metrics");
    assert!(!up(&body));
    assert_eq!(metric_value(&body, SUCCESS), Some(frozen), "last data kept");
    let refused = metric_value(&body, AUTH_ERRORS).unwrap();
    assert!(refused >= 2.0, "every attempt counts: {refused}");
    let log = exporter.log_text();
    assert_eq!(
        log.matches(REFUSED).count(),
        1,
        "one log line for the refusal, however many attempts:\n{log}"
    );
    let line = log.lines().find(|l| l.contains(REFUSED)).unwrap();
    eprintln!("the log line: {line}");
    assert!(
        line.contains("ERROR") && line.contains("client.rbd-exporter"),
        "{line}"
    );

    write(c);
    let t0 = Instant::now();
    let after = exporter.wait_metrics(Duration::from_secs(60), |b| {
        up(b) && metric_value(b, SUCCESS).is_some_and(|t| t > frozen)
    });
    eprintln!(
        "recovered {:.1} s after the new key was on disk, same process",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(exporter.child.id(), pid);
    assert_eq!(
        metric_value(
            &after,
            r#"ceph_rbd_pool_images{namespace="",pool="volumes"}"#
        ),
        Some(20.0)
    );
    assert!(exporter.log_text().contains("connected to the cluster"));
}

fn frozen_success(body: &str) -> f64 {
    metric_value(body, SUCCESS).unwrap()
}

#[test]
fn key_file_revoked_and_recreated_recovers_without_restart() {
    let c = cluster();
    let _restore = Restore(&c);
    let _user = UserBack(&c);
    // The key file is a copy, as a mounted Kubernetes Secret would be.
    let dir = common::scratch_dir("faults-auth-key-file");
    let key_file = dir.join("key");
    std::fs::copy(c.key_file(), &key_file).unwrap();
    let key_path = key_file.to_str().unwrap();
    let exporter = c.exporter(&["--ceph.op-timeout", "3s", "--ceph.key-file", key_path]);
    let before = exporter.wait_metrics(Duration::from_secs(60), up);
    let _ = before;
    let during = revoke(&c, &exporter);
    recover(&c, &exporter, frozen_success(&during), |c| {
        recreate_user(c);
        replace_file(&key_file, &std::fs::read_to_string(c.key_file()).unwrap());
    });
}

#[test]
fn keyring_of_ceph_conf_revoked_and_recreated_recovers_without_restart() {
    let c = cluster();
    let _restore = Restore(&c);
    let _user = UserBack(&c);
    // exporter.conf names exporter.keyring.
    let exporter = c.exporter(&["--ceph.op-timeout", "3s"]);
    exporter.wait_metrics(Duration::from_secs(60), up);
    let during = revoke(&c, &exporter);
    recover(&c, &exporter, frozen_success(&during), |c| {
        recreate_user(c);
    });
}

/// Replaces a file the way a Secret volume or a config tool does: a new
/// file renamed over the old one.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_wrong_key_at_start_is_still_fatal() {
    let c = cluster();
    let dir = common::scratch_dir("faults-auth-wrong-key");
    let key_file = dir.join("key");
    std::fs::write(&key_file, "AQBbVhVpAAAAABAAk6Bbd3bqgxFbSGuDwGr7zw==\n").unwrap();
    let out = std::process::Command::new(common::BIN)
        .args([
            "--ceph.config",
            &c.exporter_conf(),
            "--ceph.user",
            EXPORTER_USER,
        ])
        .args(["--ceph.key-file", key_file.to_str().unwrap()])
        .args([
            "--ceph.op-timeout",
            "5s",
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the cluster rejected client.rbd-exporter (wrong key or unknown user?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--ceph.key-file"),
        "names where the key came from: {stderr}"
    );
}
