//! The two cluster-protection limits, measured against the real seeded test
//! cluster (scripts/test.sh sets CEPH_RBD_TEST_CONF):
//! - `--ceph.max-inflight` bounds the RADOS operations in flight, counted by
//!   RadosConn from submission to librados' completion;
//! - `--sample.max-ops-per-second` paces a sample at the asked rate.
//!
//! These use the library API directly (RadosConn + sampler::sample_once) so
//! they can read the connection's counters; one test runs the binary to
//! check the flag and its environment twin are wired.

use ceph_rbd_exporter::ceph::{Conn, ConnectOptions, RadosConn};
use ceph_rbd_exporter::model::Sample;
use ceph_rbd_exporter::sampler::{SampleConfig, sample_once};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ceph-rbd-exporter");

/// The test cluster's ceph.conf (copied from tests/common).
fn conf() -> String {
    std::env::var("CEPH_RBD_TEST_CONF")
        .expect("CEPH_RBD_TEST_CONF is not set: run these tests with `make test` (scripts/test.sh)")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn connect(max_ops_per_second: Option<f64>) -> Arc<RadosConn> {
    let opts = ConnectOptions {
        conf_path: Some(conf()),
        user: "admin".into(),
        mon_host: None,
        key: None,
        op_timeout: Duration::from_secs(10),
        max_ops_per_second,
    };
    Arc::new(RadosConn::connect(&opts).expect("connect to the test cluster"))
}

fn config(max_inflight: usize) -> SampleConfig {
    SampleConfig {
        pools: None,
        max_inflight,
        full_every: 1,
    }
}

/// Images per pool, after checking that every pool was sampled.
fn images(sample: &Sample) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for pool in sample.pools.values() {
        let namespaces = pool
            .outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("pool {} failed: {}", pool.name, e.message));
        out.push((
            pool.name.clone(),
            namespaces.iter().map(|ns| ns.images.len()).sum(),
        ));
    }
    out.sort();
    out
}

#[test]
fn max_inflight_bounds_the_operations_in_flight_and_is_reached() {
    let rt = runtime();
    let conn = connect(None);
    let (reference, _) = rt.block_on(sample_once(&conn, &config(64))).unwrap();
    let reference = images(&reference);
    assert!(
        reference.iter().map(|(_, n)| n).sum::<usize>() >= 20,
        "the test layout has more images than that: {reference:?}"
    );
    // 1 and 2 are below the four per-namespace reads the sampler sends
    // together; 4 is the acceptance case.
    for limit in [1, 2, 4] {
        let mut highest = 0;
        for _ in 0..3 {
            conn.reset_inflight_peak();
            let (sample, _) = rt.block_on(sample_once(&conn, &config(limit))).unwrap();
            let peak = conn.inflight_peak();
            assert!(
                peak <= limit,
                "--ceph.max-inflight {limit}: {peak} operations were in flight at once"
            );
            assert_eq!(
                images(&sample),
                reference,
                "a bounded sample must see the same images"
            );
            eprintln!("--ceph.max-inflight {limit}: peak {peak}");
            highest = highest.max(peak);
            if highest == limit {
                break;
            }
        }
        assert_eq!(
            highest, limit,
            "--ceph.max-inflight {limit} was never reached: the bound is not what limits"
        );
        assert_eq!(
            conn.inflight(),
            0,
            "operations left in flight after a sample"
        );
    }
}

#[test]
fn max_ops_per_second_paces_a_sample_at_the_asked_rate() {
    let rt = runtime();
    let rate = 50.0;
    let conn = connect(Some(rate));
    let before = conn.ops_sent();
    let t0 = Instant::now();
    let (sample, _) = rt.block_on(sample_once(&conn, &config(64))).unwrap();
    let wall = t0.elapsed().as_secs_f64();
    images(&sample);
    let ops = (conn.ops_sent() - before) as f64;
    assert!(ops >= 30.0, "too few operations ({ops}) to measure a rate");
    assert!(
        conn.mon_commands_sent() >= 1,
        "the pool list is a mon command"
    );
    // n paced operations: the first leaves at once, the last (n - 1) / rate
    // seconds later, then its reply comes back.
    let floor = (ops - 1.0) / rate;
    assert!(
        wall >= floor * 0.98,
        "{ops} operations in {wall:.3} s: faster than {rate}/s"
    );
    let measured = ops / wall;
    eprintln!("paced sample: {ops} operations in {wall:.3} s = {measured:.1}/s (asked {rate}/s)");
    assert!(
        measured <= rate * 1.1 && measured >= rate * 0.75,
        "{ops} operations in {wall:.3} s = {measured:.1}/s, asked for {rate}/s"
    );
}

/// Wall time of `dump` with the rate set by the flag or by its twin.
fn timed_dump(rate: &str, by_env: bool) -> f64 {
    let mut cmd = Command::new(BIN);
    cmd.args(["--ceph.config", &conf(), "--log.level", "warn"]);
    if by_env {
        cmd.env("CEPH_RBD_EXPORTER_SAMPLE_MAX_OPS_PER_SECOND", rate);
    } else {
        cmd.env_remove("CEPH_RBD_EXPORTER_SAMPLE_MAX_OPS_PER_SECOND")
            .args(["--sample.max-ops-per-second", rate]);
    }
    let t0 = Instant::now();
    let out = cmd.arg("dump").output().unwrap();
    let wall = t0.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let images: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(images.as_array().is_some_and(|a| !a.is_empty()));
    wall
}

#[test]
fn max_ops_per_second_flag_and_env_twin_slow_the_binary_down() {
    let rt = runtime();
    let conn = connect(None);
    let before = conn.ops_sent();
    rt.block_on(sample_once(&conn, &config(64))).unwrap();
    let ops = (conn.ops_sent() - before) as f64;
    let rate = 100.0;
    let paced = (ops - 1.0) / rate;
    for by_env in [false, true] {
        let wall = timed_dump("100", by_env);
        eprintln!("dump at 100/s (by_env={by_env}): {wall:.3} s for about {ops} operations");
        assert!(
            wall >= paced * 0.95,
            "dump (by_env={by_env}) took {wall:.3} s for about {ops} operations: not paced at {rate}/s"
        );
        assert!(
            wall < paced * 1.5 + 2.0,
            "dump (by_env={by_env}) took {wall:.3} s, far slower than {rate}/s"
        );
    }
}
