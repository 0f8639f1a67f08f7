//! `--storage.path` against the real test cluster: a held image's
//! `ceph_rbd_watcher_first_seen_timestamp_seconds` survives an exporter
//! restart; a truncated state file is warned about (naming the file) and
//! the time starts afresh; a state file that cannot be written is warned
//! about and the exporter serves on; a path that is no directory stops the
//! exporter at start with exit code 2.

mod common;

use common::process::Proc;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const POOL: &str = "xs-storage";
const IMAGE: &str = "held";

/// A pool with one image, held open by a holder; removed on drop.
struct Layout {
    /// The client holding the image open.
    holder: Option<Holder>,
}

impl Drop for Layout {
    fn drop(&mut self) {
        self.holder.take();
        let _ = std::panic::catch_unwind(|| remove_pool(POOL));
    }
}

fn layout() -> Layout {
    ceph_cli("ceph", &["osd", "pool", "create", POOL, "8"]);
    ceph_cli("rbd", &["pool", "init", POOL]);
    ceph_cli(
        "rbd",
        &["create", "--size", "8M", &format!("{POOL}/{IMAGE}")],
    );
    Layout {
        holder: Some(Holder::start(POOL, IMAGE, &[])),
    }
}

/// The exporter as the read-only user, sampling only [`POOL`] every 2 s,
/// with `--storage.path dir`, logging at info level (kept for the test).
fn start(dir: &Path) -> (Proc, String) {
    Proc::start(
        "exporter",
        Command::new(BIN)
            .args([
                "--ceph.config",
                &exporter_conf(),
                "--ceph.user",
                EXPORTER_USER,
                "--web.listen-address",
                "127.0.0.1:0",
                "--sample.interval",
                "2s",
                "--pools",
                POOL,
                "--storage.path",
            ])
            .arg(dir),
        "serving metrics",
    )
}

/// The first-seen time of the held image's watcher, once the exporter has
/// sampled it.
fn first_seen(exporter: &Proc, addr: &str) -> f64 {
    let found = process::wait_for(Duration::from_secs(60), "the watcher's series", || {
        let (_, body) = http(addr, "GET", "/metrics");
        let series = metrics::series(&body, "ceph_rbd_watcher_first_seen_timestamp_seconds");
        let mut ours = series
            .into_iter()
            .filter(|(l, _)| l["pool"] == POOL && l["image"] == IMAGE);
        let first = ours.next()?;
        assert!(ours.next().is_none(), "one holder, one watch");
        Some(first.1)
    });
    found.unwrap_or_else(|| panic!("no watcher series:\n{}", exporter.tail(40)))
}

/// The exporter's log lines that contain every one of `words`.
fn log_lines(exporter: &Proc, words: &[&str]) -> Vec<String> {
    exporter
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .cloned()
        .collect()
}

#[test]
fn first_seen_times_survive_a_restart_and_a_bad_file_is_a_fresh_start() {
    let _layout = layout();
    let dir = scratch_dir("storage");
    let file = dir.join("first-seen.json");

    let (exporter, addr) = start(&dir);
    let t1 = first_seen(&exporter, &addr);
    assert!(file.is_file(), "written after the sample");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("{\"format\":\"ceph-rbd-exporter first-seen times\",\"version\":1,"),
        "{text}"
    );
    drop(exporter); // SIGKILL: the file was written before the page was.

    // Restarted later: the same watch has the same first-seen time.
    std::thread::sleep(Duration::from_millis(1500));
    let (exporter, addr) = start(&dir);
    let t2 = first_seen(&exporter, &addr);
    assert_eq!(t2, t1, "restored across the restart");
    assert!(
        !log_lines(&exporter, &["restored first-seen times", "watchers=1"]).is_empty(),
        "{}",
        exporter.tail(20)
    );
    drop(exporter);

    // Truncated: a warning that names the file and says what is wrong, and
    // a fresh (later) time; never fatal.
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let (exporter, addr) = start(&dir);
    let t3 = first_seen(&exporter, &addr);
    assert!(t3 > t1, "a fresh time: {t3} after {t1}");
    let warned = log_lines(
        &exporter,
        &["WARN", &file.display().to_string(), "truncated"],
    );
    assert_eq!(warned.len(), 1, "{}", exporter.tail(20));
    eprintln!("the warning: {}", warned[0]);
    // The next write replaces it with a good file holding the new time.
    let restored = process::wait_for(Duration::from_secs(30), "a good file", || {
        let text = std::fs::read_to_string(&file).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()
    })
    .expect("the file is rewritten");
    assert_eq!(restored["watchers"][0]["first_seen"].as_f64(), Some(t3));
    drop(exporter);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unwritable_state_file_is_warned_about_and_a_bad_path_stops_the_start() {
    let _layout = layout();
    let dir = scratch_dir("storage-unwritable");
    // The file's name is taken by a directory: it can be neither read nor
    // replaced (root ignores permission bits, so this is how a test run as
    // root gets a write to fail).
    std::fs::create_dir_all(dir.join("first-seen.json").join("x")).unwrap();
    let (exporter, addr) = start(&dir);
    first_seen(&exporter, &addr);
    let (_, body) = http(&addr, "GET", "/metrics");
    assert!(body.lines().any(|l| l == "ceph_rbd_exporter_up 1"));
    let warned = log_lines(
        &exporter,
        &["WARN", "cannot save first-seen times", "first-seen.json"],
    );
    assert_eq!(warned.len(), 1, "warned once: {}", exporter.tail(20));
    drop(exporter);

    // A path that is no directory: one line, exit code 2.
    let not_a_dir = dir.join("plain-file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let (code, stderr) = run_exporter(&[
        "--ceph.config",
        &exporter_conf(),
        "--ceph.user",
        EXPORTER_USER,
        "--storage.path",
        not_a_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--storage.path {}: not a directory",
            not_a_dir.display()
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
