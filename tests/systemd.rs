//! The systemd unit of deploy/systemd (shipped by the .deb), checked with the
//! host's `systemd-analyze`; no cluster, no systemd as PID 1 needed.
//!
//! - `unit_passes_systemd_analyze_verify`: `systemd-analyze verify` of the
//!   unit, with only its ExecStart path pointed at the binary cargo built
//!   (verify wants the command to exist); any warning fails too.
//! - `unit_exposure_is_at_most_2`: `systemd-analyze security --offline=yes`
//!   rates the unit's exposure (0 = locked down, 10 = none); at most
//!   [`MAX_EXPOSURE`].
//! - `unit_keeps_its_hardening`: the settings the README and the Debian
//!   package promise are there, word for word (a lower score alone would
//!   let one slip).
//! - `default_file_sets_only_known_variables`: every variable the shipped
//!   /etc/default/ceph-rbd-exporter sets or shows is `ARGS` or an
//!   environment twin `ceph-rbd-exporter --help` lists.
//! - `exporter_serves_under_the_units_restrictions`: the exporter, with a
//!   cluster that is not there, under what of the sandbox can be had without
//!   systemd: no_new_privs, MemoryDenyWriteExecute (the kernel's
//!   PR_SET_MDWE, 6.3+), UMask=0077, ProcSubset=pid (a /proc mounted with
//!   `subset=pid`, as root), starts, serves `ceph_rbd_exporter_up 0` and
//!   makes its --storage.path directory (mode 0700); under strace, every system call it made is in
//!   the unit's SystemCallFilter (@system-service minus @privileged and
//!   @resources, as this systemd defines them). What cannot be had here is
//!   printed, not passed over.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const UNIT: &str = "deploy/systemd/ceph-rbd-exporter.service";
const DEFAULTS: &str = "deploy/systemd/ceph-rbd-exporter.default";
const EXEC_START: &str = "ExecStart=/usr/bin/ceph-rbd-exporter $ARGS";
/// Highest acceptable `systemd-analyze security` exposure (the unit rates 1.1
/// with systemd 252; what is left is the network, which the exporter needs).
const MAX_EXPOSURE: f64 = 2.0;
const BIN: &str = env!("CARGO_BIN_EXE_ceph-rbd-exporter");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fresh directory under the target dir, removed first if left over.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("systemd-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn analyze(args: &[&str]) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("systemd-analyze: {e} (Debian: apt-get install systemd; it need not be PID 1)")
        })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The unit as shipped, but for ExecStart, which runs the binary cargo built.
fn unit_copy(dir: &Path) -> PathBuf {
    let unit = read(UNIT);
    assert_eq!(
        unit.lines().filter(|l| *l == EXEC_START).count(),
        1,
        "{UNIT}: no `{EXEC_START}`"
    );
    let path = dir.join("ceph-rbd-exporter.service");
    let here = EXEC_START.replace("/usr/bin/ceph-rbd-exporter", BIN);
    std::fs::write(&path, unit.replace(EXEC_START, &here)).unwrap();
    path
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let unit = unit_copy(&scratch("verify"));
    let out = analyze(&["verify", unit.to_str().unwrap()]);
    let said = text(&out);
    println!("systemd-analyze verify {UNIT}: {}", said.trim());
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warned:\n{said}"
    );
}

#[test]
fn unit_exposure_is_at_most_2() {
    let unit = unit_copy(&scratch("security"));
    let out = analyze(&[
        "security",
        "--offline=yes",
        "--no-pager",
        unit.to_str().unwrap(),
    ]);
    let said = text(&out);
    let flagged: Vec<&str> = said.lines().filter(|l| l.starts_with('✗')).collect();
    println!("exposures left:\n{}", flagged.join("\n"));
    let overall = said
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{said}"));
    println!("{}", overall.trim());
    let score: f64 = overall
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {overall:?}"));
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{said}"
    );
}

#[test]
fn unit_keeps_its_hardening() {
    let unit = read(UNIT);
    let lines: BTreeSet<&str> = unit.lines().map(str::trim).collect();
    let wanted = [
        "Type=exec",
        "User=ceph-rbd-exporter",
        "Group=ceph-rbd-exporter",
        "StateDirectory=ceph-rbd-exporter",
        "Environment=CEPH_RBD_EXPORTER_STORAGE_PATH=/var/lib/ceph-rbd-exporter",
        "EnvironmentFile=-/etc/default/ceph-rbd-exporter",
        EXEC_START,
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "UMask=0077",
        "WantedBy=multi-user.target",
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !lines.contains(w))
        .collect();
    assert!(missing.is_empty(), "{UNIT} lacks: {missing:?}");
    // The exit code the unit does not restart on is the exporter's own.
    assert_eq!(ceph_rbd_exporter::app::EXIT_CONFIG, 2);
}

#[test]
fn default_file_sets_only_known_variables() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let known: BTreeSet<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|s| s.split('=').next())
        .collect();
    assert!(
        known.contains("CEPH_RBD_EXPORTER_CEPH_USER"),
        "no env twins in --help:\n{help}"
    );
    let defaults = read(DEFAULTS);
    let mut seen = 0;
    for line in defaults.lines() {
        // Set (VAR=...) or shown commented out (#VAR=...); prose has a space.
        let assignment = line.trim_start_matches('#');
        let Some((var, _)) = assignment.split_once('=') else {
            continue;
        };
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        assert!(
            var == "ARGS" || known.contains(var),
            "{DEFAULTS}: {var} is no flag's twin"
        );
        seen += 1;
    }
    assert!(seen >= 10, "{DEFAULTS}: only {seen} variables");
    assert!(
        defaults
            .lines()
            .any(|l| l == "CEPH_RBD_EXPORTER_CEPH_USER=rbd-exporter")
    );
    assert!(defaults.lines().any(|l| l == "ARGS="));
}

/// A cephx keyring with a well-formed AES key no cluster knows.
fn fake_keyring(dir: &Path) -> PathBuf {
    // CryptoKey: type 1 (AES), created 0.0, 16 bytes of secret.
    let mut key = vec![1u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0];
    key.extend((0u8..16).map(|i| i.wrapping_mul(37).wrapping_add(11)));
    let path = dir.join("keyring");
    let b64 = base64(&key);
    std::fs::write(&path, format!("[client.rbd-exporter]\n\tkey = {b64}\n")).unwrap();
    path
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The system calls a `strace -f -o` file shows.
fn traced_calls(path: &Path) -> BTreeSet<String> {
    let trace = std::fs::read_to_string(path).unwrap();
    let mut calls = BTreeSet::new();
    for line in trace.lines() {
        let rest = line
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        let rest = rest.strip_prefix("<... ").unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let after = &rest[name.len()..];
        if !name.is_empty() && (after.starts_with('(') || after.starts_with(" resumed>")) {
            calls.insert(name);
        }
    }
    calls
}

/// The system calls of a systemd-analyze syscall-filter set, nested sets expanded.
fn filter_set(groups: &str, set: &str) -> BTreeSet<String> {
    let mut members = BTreeSet::new();
    let mut current = false;
    for line in groups.lines() {
        if line.starts_with('@') {
            current = line.split_whitespace().next() == Some(set);
        } else if current {
            let item = line.trim();
            if item.starts_with('@') {
                members.extend(filter_set(groups, item));
            } else if !item.is_empty() && !item.starts_with('#') {
                members.insert(item.to_string());
            }
        }
    }
    assert!(
        !members.is_empty(),
        "systemd-analyze syscall-filter has no {set}"
    );
    members
}

/// Runs the exporter until it serves, with what of the unit's sandbox is
/// available; returns what it served on /metrics and its log.
fn serve_sandboxed(dir: &Path, strace: bool, proc_subset: bool, mdwe: bool) -> (String, String) {
    let keyring = fake_keyring(dir);
    let conf = dir.join("ceph.conf");
    // Port 1 of localhost: refused at once; the exporter serves up 0 and retries.
    std::fs::write(
        &conf,
        format!(
            "[global]\nmon_host = 127.0.0.1:1\nkeyring = {}\n",
            keyring.display()
        ),
    )
    .unwrap();
    let mut argv: Vec<String> = Vec::new();
    if proc_subset {
        argv.extend(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
            ]
            .map(String::from),
        );
        argv.push(
            r#"mount -t proc -o subset=pid,hidepid=invisible proc /proc && exec "$0" "$@""#.into(),
        );
    }
    if strace {
        argv.extend(["strace", "-f", "-qq", "-o"].map(String::from));
        argv.push(dir.join("strace.txt").display().to_string());
    }
    argv.push(BIN.into());
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CEPH_RBD_EXPORTER_CEPH_CONFIG", &conf)
        .env("CEPH_RBD_EXPORTER_CEPH_USER", "rbd-exporter")
        .env("CEPH_RBD_EXPORTER_STORAGE_PATH", dir.join("state"))
        .env("CEPH_RBD_EXPORTER_WEB_LISTEN_ADDRESS", "127.0.0.1:0")
        .env("CEPH_RBD_EXPORTER_CEPH_OP_TIMEOUT", "1s")
        .env("CEPH_RBD_EXPORTER_SAMPLE_INTERVAL", "1s")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(0o077);
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN: what MemoryDenyWriteExecute= does.
            if mdwe && libc::prctl(65, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("serving metrics address=").nth(1) {
                let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_string());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let addr = rx.recv_timeout(Duration::from_secs(60));
    let mut body = String::new();
    if let Ok(addr) = &addr {
        // A failed sample is behind us once the first one is counted.
        for _ in 0..40 {
            body = http_get(addr, "/metrics");
            if body.contains("\nceph_rbd_exporter_up 0") {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    // The group: strace (which detaches) and the exporter (which shuts down).
    unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
    let status = child.wait().unwrap();
    let log = reader.join().unwrap();
    assert!(
        addr.is_ok(),
        "the exporter did not serve ({status}):\n{log}"
    );
    (body, log)
}

#[test]
fn exporter_serves_under_the_units_restrictions() {
    let dir = scratch("sandbox");
    let root = unsafe { libc::geteuid() } == 0;
    let strace = which("strace");
    let mdwe = unsafe { libc::prctl(66, 0, 0, 0, 0) } >= 0; // PR_GET_MDWE
    if !mdwe {
        println!(
            "NOT CHECKED: MemoryDenyWriteExecute (this kernel has no PR_SET_MDWE, Linux 6.3+)"
        );
    }
    if !root {
        println!("NOT CHECKED: ProcSubset=pid (mounting a /proc with subset=pid needs root)");
    }
    if !strace {
        println!("NOT CHECKED: SystemCallFilter (needs strace: apt-get install strace)");
    }
    let (body, log) = serve_sandboxed(&dir, strace, root, mdwe);
    assert!(
        body.contains("\nceph_rbd_exporter_up 0"),
        "no ceph_rbd_exporter_up 0:\n{body}\n{log}"
    );
    // Made by the exporter (--storage.path is made if missing), under the umask.
    let state = dir.join("state");
    let meta =
        std::fs::metadata(&state).unwrap_or_else(|e| panic!("{}: {e}\n{log}", state.display()));
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
    assert_eq!(
        mode & 0o077,
        0,
        "{} is {mode:o} under UMask=0077",
        state.display()
    );
    println!(
        "served under no_new_privs, umask 0077{}{}",
        if mdwe { ", MDWE" } else { "" },
        if root { ", /proc subset=pid" } else { "" }
    );
    if strace {
        let groups = text(&analyze(&["syscall-filter", "--no-pager"]));
        let allowed = filter_set(&groups, "@system-service");
        let mut denied = filter_set(&groups, "@privileged");
        denied.extend(filter_set(&groups, "@resources"));
        assert!(
            allowed.contains("openat") && denied.contains("chroot") && !allowed.contains("reboot")
        );
        let used = traced_calls(&dir.join("strace.txt"));
        assert!(used.len() > 20, "strace saw only {used:?}");
        let refused: Vec<&String> = used
            .iter()
            .filter(|c| !allowed.contains(*c) || denied.contains(*c))
            .collect();
        println!(
            "{} system calls made, all in the unit's SystemCallFilter: {}",
            used.len(),
            refused.is_empty()
        );
        assert!(
            refused.is_empty(),
            "system calls the unit's SystemCallFilter refuses: {refused:?}\n{log}"
        );
    }
}
