//! The `measure` command line.

use crate::util::{die, num};

/// What `bench measure` was told.
pub struct Args {
    /// The cluster's ceph.conf (`--conf`, required).
    pub conf: String,
    /// The seeded pool (`--pool`, default `bench`).
    pub pool: String,
    /// The OSD's admin socket, for its op counters (`--osd-asok`, required).
    pub osd_asok: String,
    /// The OSD's pid file, for its CPU time (`--osd-pid-file`, required).
    pub osd_pid_file: String,
    /// The exporter binary, for (e) and the peak RSS (`--exporter`).
    pub exporter: String,
    /// Where the results JSON goes (`--out`, required).
    pub out: String,
    /// Operations (or librbd threads) in flight for (a), (b), (c) and (f).
    pub concurrency: usize,
    /// Runs of (a) alternating with (b); (f) runs at most 3 of them.
    pub runs: usize,
    /// Runs of (c), each followed by one more run of (a).
    pub librbd_runs: usize,
    /// How many images `rbd status` is run on for (d).
    pub status_sample: usize,
    /// Concurrent /metrics scrapers for (e).
    pub scrapers: usize,
    /// How long the scrapers run, in seconds.
    pub scrape_seconds: f64,
    /// Milliseconds between the scrapers' bursts (0: as fast as they can).
    pub scrape_interval_ms: u64,
    /// Extra client options for (c)'s librados connection (`--librbd-conf k=v`).
    pub librbd_conf: Vec<(String, String)>,
    /// (c) on this many images, evenly spaced, extrapolated to the pool
    /// (`--librbd-slice`; 0: every image).
    pub librbd_slice: usize,
    /// Runs of each composition in (f) (`--composed-runs`; 0: none).
    pub composed_runs: usize,
    /// Steady-state runs: incremental samples after changing
    /// `changed_per_mille` of the headers, each followed by a floor run.
    pub steady_runs: usize,
    /// Headers changed before each steady-state sample, per thousand.
    pub changed_per_mille: usize,
    /// The incremental samples' `full_every` (the binary's default).
    pub full_every: u32,
    /// `rbd ls -l` on this (smaller) pool of the same cluster instead,
    /// extrapolated (`--ls-pool`).
    pub ls_pool: Option<String>,
    /// An empty pool, for the serving binary's base RSS (`--base-pool`).
    pub base_pool: Option<String>,
    /// Seconds seeding took up to this size, and how (`--seeding-s`,
    /// `--seeding`), for the report.
    pub seeding_s: f64,
    /// How the pool was seeded.
    pub seeding: String,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            conf: String::new(),
            pool: "bench".into(),
            osd_asok: String::new(),
            osd_pid_file: String::new(),
            exporter: "target/release/ceph-rbd-exporter".into(),
            out: String::new(),
            concurrency: 64,
            runs: 7,
            librbd_runs: 3,
            status_sample: 200,
            scrapers: 50,
            scrape_seconds: 15.0,
            // Not a divisor of the binary's 1 s sample interval, so that
            // the bursts drift across short (incremental) samples.
            scrape_interval_ms: 230,
            librbd_conf: Vec::new(),
            librbd_slice: 0,
            composed_runs: 3,
            steady_runs: 7,
            changed_per_mille: 10,
            full_every: 60,
            ls_pool: None,
            base_pool: None,
            seeding_s: f64::NAN,
            seeding: String::new(),
        }
    }
}

/// Parses `bench measure`'s flags, or exits.
pub fn parse_measure(mut it: impl Iterator<Item = String>) -> Args {
    let mut a = Args::default();
    while let Some(flag) = it.next() {
        let mut v = || {
            it.next()
                .unwrap_or_else(|| die(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--conf" => a.conf = v(),
            "--pool" => a.pool = v(),
            "--osd-asok" => a.osd_asok = v(),
            "--osd-pid-file" => a.osd_pid_file = v(),
            "--exporter" => a.exporter = v(),
            "--out" => a.out = v(),
            "--concurrency" => a.concurrency = num(&v()),
            "--runs" => a.runs = num(&v()),
            "--librbd-runs" => a.librbd_runs = num(&v()),
            "--status-sample" => a.status_sample = num(&v()),
            "--scrapers" => a.scrapers = num(&v()),
            "--scrape-seconds" => a.scrape_seconds = num(&v()) as f64,
            "--scrape-interval-ms" => a.scrape_interval_ms = num(&v()) as u64,
            "--librbd-slice" => a.librbd_slice = num(&v()),
            "--composed-runs" => a.composed_runs = num(&v()),
            "--steady-runs" => a.steady_runs = num(&v()),
            "--changed-per-mille" => a.changed_per_mille = num(&v()),
            "--full-every" => a.full_every = num(&v()) as u32,
            "--base-pool" => a.base_pool = Some(v()),
            "--ls-pool" => a.ls_pool = Some(v()),
            "--seeding-s" => {
                let s = v();
                a.seeding_s = s
                    .parse()
                    .unwrap_or_else(|_| die(&format!("{s:?} is not a number")))
            }
            "--seeding" => a.seeding = v(),
            "--librbd-conf" => {
                let kv = v();
                let (k, val) = kv
                    .split_once('=')
                    .unwrap_or_else(|| die("--librbd-conf wants key=value"));
                a.librbd_conf.push((k.into(), val.into()));
            }
            _ => die(&format!("unknown flag {flag}")),
        }
    }
    for (name, v) in [
        ("--conf", &a.conf),
        ("--osd-asok", &a.osd_asok),
        ("--osd-pid-file", &a.osd_pid_file),
        ("--out", &a.out),
    ] {
        if v.is_empty() {
            die(&format!("{name} is required"));
        }
    }
    a
}
