//! Several bluestore OSDs and size-2 pools (scripts/faults-test.sh): one
//! OSD killed for real leaves its PGs active and degraded, and the
//! exporter notices nothing; every OSD of one pool stopped makes that pool
//! time out (counted, last data kept) while the other pool stays correct,
//! and both recover when the OSDs return.

mod common;

use common::faults::{FaultCluster, Restore, cluster, now_unix, up};
use common::{Holder, metric_value, pool_errors, without_image_id};
use std::time::{Duration, Instant};

fn success(pool: &str) -> String {
    format!(r#"ceph_rbd_exporter_last_success_timestamp_seconds{{pool="{pool}"}}"#)
}

fn images(pool: &str) -> String {
    format!(r#"ceph_rbd_pool_images{{namespace="",pool="{pool}"}}"#)
}

fn all_errors(body: &str) -> Vec<String> {
    body.lines()
        .filter(|l| l.starts_with("ceph_rbd_exporter_sample_errors_total{"))
        .map(str::to_string)
        .collect()
}

/// `ceph pg stat`'s state summary, e.g. "9 active+undersized+degraded, 16 active+clean".
fn pg_states(c: &FaultCluster) -> String {
    let s = c.try_ceph(&["pg", "stat"], 10).unwrap_or_default();
    s.split(';')
        .next()
        .unwrap_or("")
        .split_once(": ")
        .map(|(_, states)| states.to_string())
        .unwrap_or(s)
}

#[test]
fn one_osd_killed_pgs_degraded_and_no_sample_fails() {
    let c = cluster();
    let _restore = Restore(&c);
    let _holder = Holder::start_on(&c.admin_conf(), "volumes", "vol-1", &[]);
    let watchers = r#"ceph_rbd_image_watchers{image="vol-1",namespace="",pool="volumes"}"#;
    // The default op timeout: what an operator runs with.
    let exporter = c.exporter(&[]);
    exporter.wait_metrics(Duration::from_secs(60), |b| {
        up(b) && metric_value(&without_image_id(b), watchers) == Some(1.0)
    });

    c.daemon("kill-daemon", "osd.0");
    let killed_at = now_unix();
    eprintln!("osd.0 killed (SIGKILL)");
    let t0 = Instant::now();
    let mut degraded_seen = false;
    let mut samples_after = 0;
    let mut last_success = 0.0;
    while t0.elapsed() < Duration::from_secs(30) {
        let (status, body) = exporter.get("GET", "/metrics");
        assert_eq!(status, 200);
        assert!(up(&body), "a sample failed with one OSD down:\n{body}");
        assert!(
            all_errors(&body).is_empty(),
            "sample errors with one OSD down: {:?}",
            all_errors(&body)
        );
        assert_eq!(metric_value(&without_image_id(&body), watchers), Some(1.0));
        assert_eq!(metric_value(&body, &images("volumes")), Some(20.0));
        let s = metric_value(&body, &success("volumes")).unwrap();
        if s > killed_at && s > last_success {
            samples_after += 1;
            last_success = s;
        }
        let states = pg_states(&c);
        degraded_seen |= states.contains("degraded") || states.contains("undersized");
        assert!(
            !states.contains("down") && !states.contains("incomplete"),
            "PGs not active: {states}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "30 s with osd.0 dead: {samples_after} good samples of volumes, none failed; PGs {}",
        pg_states(&c)
    );
    assert!(degraded_seen, "osd.0's PGs never showed degraded");
    assert!(samples_after >= 5, "only {samples_after} samples in 30 s");
}

#[test]
fn every_osd_of_one_pool_stopped_that_pool_times_out_the_other_stays_right() {
    let c = cluster();
    let _restore = Restore(&c);
    let exporter = c.exporter(&["--ceph.op-timeout", "3s"]);
    exporter.wait_metrics(Duration::from_secs(60), |b| {
        up(b) && metric_value(b, &images("isolated")) == Some(5.0)
    });

    eprintln!("stopping osd.2 and osd.3, every OSD of the isolated pool");
    c.daemon("stop-daemon", "osd.2");
    c.daemon("stop-daemon", "osd.3");
    let stopped_at = now_unix();
    let during = exporter.wait_metrics(Duration::from_secs(60), |b| {
        !pool_errors(b, "isolated").is_empty()
    });
    eprintln!("isolated: {:?}", pool_errors(&during, "isolated"));
    assert!(
        pool_errors(&during, "isolated")
            .iter()
            .all(|l| l.contains(r#"kind="timeout""#)),
        "{:?}",
        pool_errors(&during, "isolated")
    );
    let frozen = metric_value(&during, &success("isolated")).unwrap();
    // A while later: volumes is sampled as before, isolated keeps its last
    // good data and its frozen success time, and counts every attempt.
    std::thread::sleep(Duration::from_secs(12));
    let (_, later) = exporter.get("GET", "/metrics");
    assert!(up(&later), "one pool failing is not the exporter down");
    assert!(pool_errors(&later, "volumes").is_empty());
    assert!(metric_value(&later, &success("volumes")).unwrap() > stopped_at + 10.0);
    assert_eq!(metric_value(&later, &images("volumes")), Some(20.0));
    assert_eq!(metric_value(&later, &success("isolated")), Some(frozen));
    assert_eq!(metric_value(&later, &images("isolated")), Some(5.0));
    let timeouts = metric_value(
        &later,
        r#"ceph_rbd_exporter_sample_errors_total{kind="timeout",pool="isolated"}"#,
    )
    .unwrap();
    assert!(timeouts >= 2.0, "{timeouts}");
    // No sample waited past its timeout: the pool sample is bounded by it.
    let took = metric_value(
        &later,
        r#"ceph_rbd_exporter_sample_duration_seconds{pool="isolated"}"#,
    );
    eprintln!("isolated sample duration while its OSDs are down: {took:?} s");
    if let Some(took) = took {
        assert!(took <= 3.0 + 1.5, "{took}");
    }

    eprintln!("starting osd.2 and osd.3 again");
    c.daemon("start-daemon", "osd.2");
    c.daemon("start-daemon", "osd.3");
    let back = Instant::now();
    let after = exporter.wait_metrics(Duration::from_secs(90), |b| {
        metric_value(b, &success("isolated")).is_some_and(|t| t > frozen)
    });
    eprintln!(
        "isolated sampled again {:.1} s after its OSDs were started",
        back.elapsed().as_secs_f64()
    );
    assert!(up(&after));
    assert_eq!(metric_value(&after, &images("isolated")), Some(5.0));
    assert!(pool_errors(&after, "volumes").is_empty());
}
