//! A network partition of the exporter (issue 15, item 3): the exporter runs
//! in its own network namespace, whose link to the cluster is cut for much
//! longer than `--ceph.op-timeout` and then restored, while /metrics is
//! scraped from the host over the namespace's side link. Nothing hangs past
//! its timeout, /metrics keeps answering, `up` goes 0 then 1 by itself, and
//! the process holds as many file descriptors and about as much memory
//! afterwards as before.

mod common;

use common::Exporter;
use common::faults::{FaultCluster, Restore, cluster, now_unix};
use common::http::parse_response;
use common::metrics::series;
use common::process::fds_and_rss;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// `--ceph.op-timeout`, in seconds.
const OP_TIMEOUT: f64 = 3.0;
/// `--sample.interval`, in seconds.
const INTERVAL: f64 = 2.0;
/// Slack for scheduling and the 250 ms scrape period, in seconds.
const SLACK: f64 = 2.0;
/// How long the link stays down: several op timeouts, so that the exporter
/// goes through failed pool listings, a reconnect and failed connects.
const CUT: Duration = Duration::from_secs(20);
/// Every scrape must answer within this.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(1);
/// How much more resident memory the exporter may hold after the cut than
/// before it, in KiB. Measured on the development machine: +216 to +608 KiB
/// in five runs (the cut drops one librados connection and makes five, four
/// of which fail; glibc keeps freed heap pages in its arenas), +132 KiB over
/// the same 70 s without a cut, and six cuts in a row +348, +120, +12, +8,
/// +4, +0 KiB: a plateau, not a leak; +1164 KiB once the old connection was
/// shut down on a blocking thread of its own (a new thread's glibc arena),
/// on a loaded machine. One connection left without shutdown costs +2.4 MiB
/// and 19 fds: the exact fd check catches that, so the RSS bound is looser,
/// 4 MiB, to stay quiet under `make test`'s load.
const RSS_TOLERANCE_KIB: u64 = 4096;
/// Images the faults cluster's `volumes` pool holds (vol-1..vol-20).
const VOLUMES_IMAGES: &str = r#"ceph_rbd_pool_images{namespace="",pool="volumes"} 20"#;

/// Puts the namespace's link back up on every way out of the test, so a
/// failed test does not leave the exporter's namespace cut off.
struct LinkUp<'a>(&'a FaultCluster);

impl Drop for LinkUp<'_> {
    fn drop(&mut self) {
        // A second panic would abort the test binary: best effort then.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.set_link(true)));
    }
}

/// One scrape of /metrics from the host.
struct Scrape {
    /// When it was sent.
    at: Instant,
    /// How long the answer took (the whole body).
    latency: Duration,
    /// The HTTP status, or why there was none.
    status: Result<u16, String>,
    /// The body.
    body: String,
}

impl Scrape {
    fn up(&self) -> Option<f64> {
        value(&self.body, "ceph_rbd_exporter_up", &[])
    }

    fn last_success(&self, pool: &str) -> Option<f64> {
        value(
            &self.body,
            "ceph_rbd_exporter_last_success_timestamp_seconds",
            &[("pool", pool)],
        )
    }

    /// Failed attempts that reached no pool, by kind (`pool=""`).
    fn unreachable(&self) -> BTreeMap<String, f64> {
        series(&self.body, "ceph_rbd_exporter_sample_errors_total")
            .into_iter()
            .filter(|(l, _)| l["pool"].is_empty())
            .map(|(l, v)| (l["kind"].clone(), v))
            .collect()
    }

    /// Failed samples of pools, as `pool/kind` and count.
    fn pool_errors(&self) -> BTreeMap<String, f64> {
        series(&self.body, "ceph_rbd_exporter_sample_errors_total")
            .into_iter()
            .filter(|(l, _)| !l["pool"].is_empty())
            .map(|(l, v)| (format!("{}/{}", l["pool"], l["kind"]), v))
            .collect()
    }

    /// The longest `ceph_rbd_exporter_sample_duration_seconds` of any pool.
    fn max_duration(&self) -> f64 {
        series(&self.body, "ceph_rbd_exporter_sample_duration_seconds")
            .into_iter()
            .map(|(_, v)| v)
            .fold(0.0, f64::max)
    }
}

fn value(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series(body, name)
        .into_iter()
        .find(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
}

/// GET /metrics with its own timeouts, so a hung exporter shows as a slow
/// or failed scrape instead of hanging the test.
fn scrape(addr: &str) -> Scrape {
    let at = Instant::now();
    let attempt = || -> std::io::Result<(u16, String)> {
        let sa: SocketAddr = addr.parse().unwrap();
        let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        Ok(parse_response(&buf))
    };
    let (status, body) = match attempt() {
        Ok((status, body)) => (Ok(status), body),
        Err(e) => (Err(e.to_string()), String::new()),
    };
    Scrape {
        at,
        latency: at.elapsed(),
        status,
        body,
    }
}

/// Scrapes every 250 ms for `how_long`, or until `done` holds.
fn watch(addr: &str, how_long: Duration, done: impl Fn(&Scrape) -> bool) -> Vec<Scrape> {
    let t0 = Instant::now();
    let mut out = Vec::new();
    while t0.elapsed() < how_long {
        let s = scrape(addr);
        let stop = done(&s);
        out.push(s);
        if stop {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    out
}

/// The process's fds and RSS (KiB), several readings a second apart: the
/// smallest fd count and the median RSS, so one reading taken while the
/// messenger briefly holds an extra socket does not decide.
fn steady_fds_and_rss(pid: u32) -> (usize, u64) {
    let mut fds = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..5 {
        let (f, r) = fds_and_rss(pid);
        fds.push(f);
        rss.push(r);
        std::thread::sleep(Duration::from_secs(1));
    }
    rss.sort_unstable();
    (*fds.iter().min().unwrap(), rss[rss.len() / 2])
}

/// The open fds of `pid` by what they are (socket, anon_inode:[eventpoll], ...).
fn fd_kinds(pid: u32) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(e.path())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = target.split(':').next().unwrap_or("").to_string();
        let kind = if kind.starts_with('/') {
            "file".to_string()
        } else if kind == "anon_inode" {
            target
        } else {
            kind
        };
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
}

/// The gaps, in seconds, between the scrapes at which the count of failed
/// attempts moved: how long each attempt during the cut took at most.
fn attempt_gaps(scrapes: &[Scrape]) -> Vec<f64> {
    let mut gaps = Vec::new();
    let mut last: Option<(f64, Instant)> = None;
    for s in scrapes {
        let total: f64 = s.unreachable().values().sum();
        match last {
            Some((n, at)) if total > n => {
                gaps.push(s.at.duration_since(at).as_secs_f64());
                last = Some((total, s.at));
            }
            None => last = Some((total, s.at)),
            _ => {}
        }
    }
    gaps
}

fn check_every_scrape_answered(phase: &str, scrapes: &[Scrape]) -> Duration {
    let max = scrapes.iter().map(|s| s.latency).max().unwrap();
    for s in scrapes {
        assert_eq!(s.status, Ok(200), "{phase}: a scrape failed");
        assert!(
            s.latency <= SCRAPE_DEADLINE,
            "{phase}: a scrape took {:?}",
            s.latency
        );
    }
    max
}

#[test]
fn partition_longer_than_op_timeout_then_restored() {
    let c = cluster();
    let _restore = Restore(&c);
    // exporter_in_namespace samples every 2 s (INTERVAL).
    let exporter = c.exporter_in_namespace(&["--ceph.op-timeout", "3s"]);
    let pid = exporter.child.id();
    let addr = exporter.addr.clone();
    assert!(
        addr.starts_with(c.namespace().1),
        "serves on the side link: {addr}"
    );

    // Warm up: librados allocates lazily, so the baseline is taken after
    // a good many samples.
    let warm = exporter.wait_metrics(Duration::from_secs(30), |b| {
        value(b, "ceph_rbd_exporter_up", &[]) == Some(1.0) && b.contains(VOLUMES_IMAGES)
    });
    drop(warm);
    std::thread::sleep(Duration::from_secs(30));
    let (fds_before, rss_before) = steady_fds_and_rss(pid);
    let kinds_before = fd_kinds(pid);
    let before = scrape(&addr);
    assert_eq!(before.up(), Some(1.0), "up before the cut");
    let errors_before = before.unreachable();

    // The cut.
    let _link_up = LinkUp(&c);
    let cut_unix = now_unix();
    let cut_at = Instant::now();
    c.set_link(false);
    let during = watch(&addr, CUT, |_| false);
    c.set_link(true);
    let restored_at = Instant::now();
    let during_max = check_every_scrape_answered("during the cut", &during);
    let down = during
        .iter()
        .find(|s| s.up() == Some(0.0))
        .expect("up never went 0 during the cut");
    let down_after = down.at.duration_since(cut_at).as_secs_f64();
    eprintln!(
        "partition: {} scrapes during the {:?} cut, slowest {:?}; up 0 after {down_after:.1} s",
        during.len(),
        CUT,
        during_max
    );
    assert!(
        down_after <= OP_TIMEOUT + INTERVAL + SLACK,
        "up went 0 only {down_after:.1} s after the cut"
    );
    check_during(&during, cut_unix, &errors_before);

    // Restored.
    let back = check_recovered(&exporter, cut_unix, restored_at);

    // Settled: as many fds, about as much memory.
    std::thread::sleep(Duration::from_secs(30));
    let settled = scrape(&addr);
    assert_eq!(settled.up(), Some(1.0));
    assert!(
        settled
            .last_success("isolated")
            .is_some_and(|t| t > cut_unix),
        "isolated sampled again"
    );
    let max_duration = during
        .iter()
        .chain(&back)
        .chain([&settled])
        .map(Scrape::max_duration)
        .fold(0.0, f64::max);
    eprintln!("partition: longest pool sample seen {max_duration:.2} s");
    assert!(max_duration <= OP_TIMEOUT + 1.0);
    compare_resources(pid, (fds_before, rss_before, kinds_before));
}

/// What the scrapes during the cut show: the last good data served, the
/// failed attempts counted (and of which kind), none of them hung.
fn check_during(during: &[Scrape], cut_unix: f64, errors_before: &BTreeMap<String, f64>) {
    let first_down = during.iter().position(|s| s.up() == Some(0.0)).unwrap();
    let frozen = during[first_down].last_success("volumes").unwrap();
    assert!(frozen <= cut_unix + 1.0, "a sample succeeded after the cut");
    for s in &during[first_down..] {
        assert_eq!(s.up(), Some(0.0), "up back to 1 with the link down");
        assert!(s.body.contains(VOLUMES_IMAGES), "last good data not served");
        assert_eq!(s.last_success("volumes"), Some(frozen));
    }
    let last = during.last().unwrap();
    let mut errors = last.unreachable();
    for (kind, n) in errors_before {
        *errors.get_mut(kind).unwrap() -= n;
    }
    let pool_errors = last.pool_errors();
    eprintln!(
        "partition: failed attempts during the cut by kind {errors:?}; pool errors {pool_errors:?}"
    );
    let gaps = attempt_gaps(&during[first_down..]);
    eprintln!("partition: seconds between failed attempts {gaps:.1?}");
    // The two attempts before the reconnect fail listing the pools (a mon
    // command timing out); from then on, connecting fails.
    assert!(
        errors.get("timeout").copied().unwrap_or(0.0) >= 2.0,
        "{errors:?}"
    );
    assert!(
        errors.get("connect").copied().unwrap_or(0.0) >= 1.0,
        "{errors:?}"
    );
    assert!(
        errors.keys().all(|k| k == "timeout" || k == "connect"),
        "{errors:?}"
    );
    assert!(gaps.len() >= 3, "too few attempts during the cut: {gaps:?}");
    let longest = gaps.iter().copied().fold(0.0, f64::max);
    assert!(
        longest <= OP_TIMEOUT + SLACK,
        "an attempt took {longest:.1} s with the link down"
    );
}

/// Waits for `up` 1 and a fresh sample after the link came back at
/// `restored_at`; every scrape meanwhile answered at once. Returns them.
fn check_recovered(exporter: &Exporter, cut_unix: f64, restored_at: Instant) -> Vec<Scrape> {
    let addr = &exporter.addr;
    let back = watch(addr, Duration::from_secs(60), |s| {
        s.up() == Some(1.0) && s.last_success("volumes").is_some_and(|t| t > cut_unix)
    });
    let back_max = check_every_scrape_answered("after the cut", &back);
    let recovered = back.last().unwrap();
    let recovered_after = recovered.at.duration_since(restored_at).as_secs_f64();
    eprintln!(
        "partition: up 1 again {recovered_after:.1} s after the link came back (slowest scrape {back_max:?})"
    );
    assert_eq!(recovered.up(), Some(1.0), "up never came back to 1");
    assert!(
        recovered_after <= OP_TIMEOUT + INTERVAL + OP_TIMEOUT + SLACK,
        "up 1 only {recovered_after:.1} s after the link came back"
    );
    assert!(recovered.body.contains(VOLUMES_IMAGES));
    let log = exporter.log_text();
    assert!(
        log.contains("connecting anew"),
        "the exporter should have dropped its connection during the cut:\n{log}"
    );
    back
}

/// Compares the process's fds and RSS now with `before` (count, KiB, kinds).
fn compare_resources(pid: u32, before: (usize, u64, BTreeMap<String, usize>)) {
    let (fds_before, rss_before, kinds_before) = before;
    let (fds_after, rss_after) = steady_fds_and_rss(pid);
    let kinds_after = fd_kinds(pid);
    eprintln!(
        "partition: fds {fds_before} before, {fds_after} after; RSS {rss_before} KiB before, {rss_after} KiB after ({:+} KiB)",
        rss_after as i64 - rss_before as i64
    );
    eprintln!("partition: fd kinds before {kinds_before:?}\n           after {kinds_after:?}");
    // Exact: librados' messenger holds one socket per mon session and per
    // OSD it talks to, plus its workers' epoll fds and pipes; a new
    // connection to the same cluster holds the same set (the kinds printed
    // above match one for one), and each connection the exporter drops
    // closes its own. One connection not shut down is +19 fds.
    assert_eq!(fds_after, fds_before, "file descriptors leaked");
    assert!(
        rss_after <= rss_before + RSS_TOLERANCE_KIB,
        "RSS grew by {} KiB",
        rss_after - rss_before
    );
}
