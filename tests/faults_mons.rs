//! Three mons (scripts/faults-test.sh): the mon the exporter talks to dies
//! and the exporter hunts to another, losing at most one sample; two of
//! three die (no quorum) and the exporter serves its last good data with
//! `ceph_rbd_exporter_up 0`, then recovers by itself when quorum is back.

mod common;

use common::faults::{FaultCluster, MONS, Restore, cluster, now_unix, up};
use common::metric_value;
use std::time::{Duration, Instant};

const ENTITY: &str = "client.rbd-exporter";
const INTERVAL: Duration = Duration::from_secs(2);
/// The default `--ceph.op-timeout`.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
const SUCCESS: &str = r#"ceph_rbd_exporter_last_success_timestamp_seconds{pool="volumes"}"#;
const IMAGES: &str = r#"ceph_rbd_pool_images{namespace="",pool="volumes"}"#;

/// Failed samples so far, every pool and kind.
fn errors(body: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with("ceph_rbd_exporter_sample_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The one mon the exporter has a session with, once it has one.
fn session_mon(c: &FaultCluster) -> &'static str {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mons = c.mons_with_session(ENTITY);
        if mons.len() == 1 {
            return mons[0];
        }
        assert!(
            Instant::now() < deadline,
            "the exporter should have a session with exactly one mon: {mons:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_mon_the_exporter_talks_to_dies_and_it_hunts_to_another() {
    let c = cluster();
    let _restore = Restore(&c);
    let exporter = c.exporter(&["--ceph.op-timeout", "10s"]);
    let before = exporter.wait_metrics(Duration::from_secs(60), |b| {
        up(b) && metric_value(b, IMAGES) == Some(20.0)
    });
    let errors_before = errors(&before);
    let victim = session_mon(&c);
    eprintln!("the exporter talks to {victim}; killing it (SIGKILL)");
    c.daemon("kill-daemon", victim);
    let killed_at = now_unix();
    let t0 = Instant::now();

    // Scrape until a sample that started after the kill has succeeded.
    let mut down_since: Option<Instant> = None;
    let mut longest_down = Duration::ZERO;
    let after = loop {
        let (status, body) = exporter.get("GET", "/metrics");
        assert_eq!(status, 200);
        if up(&body) {
            if let Some(since) = down_since.take() {
                longest_down = longest_down.max(since.elapsed());
            }
        } else {
            down_since.get_or_insert_with(Instant::now);
            assert_eq!(metric_value(&body, IMAGES), Some(20.0), "last data kept");
        }
        if up(&body) && metric_value(&body, SUCCESS).is_some_and(|t| t > killed_at) {
            break body;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no good sample 90 s after {victim} died:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let lost = errors(&after) - errors_before;
    eprintln!(
        "first good sample {:.1} s after the kill; samples lost: {lost}; up was 0 for {:.1} s at most",
        t0.elapsed().as_secs_f64(),
        longest_down.as_secs_f64()
    );
    assert!(lost <= 1.0, "more than one sample lost: {lost}\n{after}");
    // up is back at the next attempt: 0 for at most one interval plus that
    // attempt, which waits (within the op timeout) for the new quorum.
    assert!(
        longest_down <= INTERVAL + OP_TIMEOUT + Duration::from_secs(2),
        "up stayed 0 for {longest_down:?}"
    );
    let now_on = session_mon(&c);
    assert_ne!(now_on, victim);
    eprintln!("the exporter now talks to {now_on}");
    assert_eq!(metric_value(&after, IMAGES), Some(20.0));
}

#[test]
fn without_quorum_the_last_data_stays_and_it_recovers_by_itself() {
    let c = cluster();
    let _restore = Restore(&c);
    let exporter = c.exporter(&["--ceph.op-timeout", "3s"]);
    exporter.wait_metrics(Duration::from_secs(60), |b| {
        up(b) && metric_value(b, IMAGES) == Some(20.0)
    });
    // Two of three, the exporter's own mon among them.
    let own = session_mon(&c);
    let other = MONS.into_iter().find(|m| *m != own).unwrap();
    eprintln!("stopping {own} and {other}: no quorum");
    c.daemon("kill-daemon", own);
    c.daemon("kill-daemon", other);

    let during = exporter.wait_metrics(Duration::from_secs(60), |b| !up(b));
    assert_eq!(metric_value(&during, IMAGES), Some(20.0), "last data kept");
    let frozen = metric_value(&during, SUCCESS).unwrap();
    // A while without quorum: several attempts, each bounded by the op
    // timeout, the connection made anew (RECONNECT_AFTER), /metrics answers.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        let asked = Instant::now();
        let (status, body) = exporter.get("GET", "/metrics");
        assert_eq!(status, 200);
        assert!(asked.elapsed() < Duration::from_secs(1), "slow /metrics");
        assert!(!up(&body), "up without quorum:\n{body}");
        assert_eq!(metric_value(&body, SUCCESS), Some(frozen));
        assert_eq!(metric_value(&body, IMAGES), Some(20.0));
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, body) = exporter.get("GET", "/metrics");
    eprintln!(
        "without quorum: {}",
        body.lines()
            .filter(|l| l.starts_with("ceph_rbd_exporter_sample_errors_total{"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(errors(&body) >= 3.0, "every attempt counts:\n{body}");

    eprintln!("starting {own} and {other} again");
    c.daemon("start-daemon", own);
    c.daemon("start-daemon", other);
    let back = Instant::now();
    let after = exporter.wait_metrics(Duration::from_secs(90), |b| {
        up(b) && metric_value(b, SUCCESS).is_some_and(|t| t > frozen)
    });
    eprintln!(
        "recovered {:.1} s after the mons were started",
        back.elapsed().as_secs_f64()
    );
    assert_eq!(metric_value(&after, IMAGES), Some(20.0));
    let log = exporter.log_text();
    assert!(log.contains("connecting anew"), "{log}");
    assert!(log.contains("the cluster answers again"), "{log}");
}
