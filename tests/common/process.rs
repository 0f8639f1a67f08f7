//! A process harness for the tests: child processes whose stderr is kept for
//! diagnostics, scratch directories, polling, and running tools that must
//! succeed.

use super::repo;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process with its stderr kept for diagnostics; killed on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `cmd` and waits for a stderr line containing `marker`; returns
    /// the `address=` of that line.
    pub fn start(name: &str, cmd: &mut Command, marker: &str) -> (Proc, String) {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let marker = marker.to_string();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let addr = Some(&line)
                    .filter(|l| l.contains(&marker))
                    .and_then(|l| l.split("address=").nth(1));
                if let Some(addr) = addr {
                    let _ = tx.send(addr.split_whitespace().next().unwrap().to_string());
                }
                log2.lock().unwrap().push(line);
            }
        });
        let proc = Proc {
            name: name.to_string(),
            child,
            log,
        };
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{name} did not start:\n{}", proc.tail(40)));
        (proc, addr)
    }

    pub fn tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        let skip = log.len().saturating_sub(n);
        format!(
            "--- last lines of {} ---\n{}",
            self.name,
            log[skip..].join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes a scratch directory on drop.
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until `what` holds, polling every 250 ms.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            eprintln!("timed out after {timeout:?} waiting for {what}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs a tool in the repository and returns its stdout and stderr; panics
/// with them unless it succeeds.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (installed by scripts/install-deps.sh)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd} {args:?} failed:\n{text}");
    text
}

/// Open file descriptors and resident memory (KiB) of a process.
pub fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    (fds, rss)
}
