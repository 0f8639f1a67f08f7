//! (a) The exporter's own sample, through its library in this process, and
//! the library's analysis and rendering (the in-process part of (e)).
//!
//! The only module that uses the exporter's library: when its API changes,
//! this is the one place to follow it.

use crate::cost::{Cost, Osd, cost_json, median};
use crate::util::die;
use ceph_rbd_exporter::analysis::Settings;
use ceph_rbd_exporter::attribution::Attribution;
use ceph_rbd_exporter::ceph::{Conn, ConnectOptions, RadosConn, decode};
use ceph_rbd_exporter::first_seen::FirstSeen;
use ceph_rbd_exporter::metrics::{self, RenderOptions};
use ceph_rbd_exporter::model::{Location, Sample};
use ceph_rbd_exporter::sampler::{SampleConfig, sample_once};
use ceph_rbd_exporter::status::ExporterStatus;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// The exporter's connection to the cluster, and the runtime it runs on.
pub struct Library {
    /// The runtime every call blocks on.
    rt: Runtime,
    /// The exporter's connection, as client.admin.
    conn: Arc<RadosConn>,
}

impl Library {
    /// Connects with `conf` as client.admin, on `rt`.
    pub fn connect(conf: &str, rt: Runtime) -> Library {
        let conn = Arc::new(
            RadosConn::connect(&ConnectOptions {
                conf_path: conf.to_string(),
                user: "admin".into(),
                op_timeout: Duration::from_secs(30),
                max_ops_per_second: None,
            })
            .expect("connect"),
        );
        Library { rt, conn }
    }

    /// The images in `pool`'s default namespace as (id, name), read from
    /// its directory; exits when there is no such pool.
    pub fn directory(&self, pool: &str) -> Vec<(String, String)> {
        let pools = self.rt.block_on(self.conn.pools()).expect("pools");
        let id = pools
            .iter()
            .find(|p| p.name == pool)
            .unwrap_or_else(|| die(&format!("no pool {pool}")))
            .id;
        let loc = Location {
            pool_id: id,
            namespace: String::new(),
        };
        self.rt
            .block_on(self.conn.directory(&loc))
            .expect("directory")
            .images
            .entries
    }

    /// A sampler of `pool` alone, `max_inflight` ops in flight.
    pub fn sampler(&self, pool: &str, max_inflight: usize) -> Sampler<'_> {
        Sampler {
            lib: self,
            config: SampleConfig {
                pools: Some(vec![pool.to_string()]),
                max_inflight,
                full_every: 1,
            },
        }
    }
}

/// The exporter's sample of one pool.
pub struct Sampler<'a> {
    /// The connection it samples through.
    lib: &'a Library,
    /// What it samples.
    config: SampleConfig,
}

/// One sample the exporter took.
pub struct Sampled(
    /// The sample.
    Sample,
);

impl Sampler<'_> {
    /// One full sample: (seconds, the sample).
    pub fn sample(&self) -> (f64, Sampled) {
        let t0 = Instant::now();
        let (sample, _) = self
            .lib
            .rt
            .block_on(sample_once(&self.lib.conn, &self.config))
            .expect("sample");
        (t0.elapsed().as_secs_f64(), Sampled(sample))
    }
}

/// (a)'s runs and what the connection counted during them.
#[derive(Default)]
pub struct ARuns {
    /// The cost of every run.
    runs: Vec<Cost>,
    /// RADOS ops the connection sent, over all runs.
    ops: u64,
    /// Of those, mon commands.
    mons: u64,
    /// The most ops the connection had in flight at once.
    peak: usize,
    /// The last run's sample.
    last: Option<Sampled>,
}

impl ARuns {
    /// One more costed run of `sampler`.
    pub fn run(&mut self, sampler: &Sampler, osd: &Osd) {
        let conn = &sampler.lib.conn;
        let ops0 = conn.ops_sent();
        let mon0 = conn.mon_commands_sent();
        conn.reset_inflight_peak();
        let mut s = None;
        self.runs.push(osd.costed(|| {
            let (secs, sample) = sampler.sample();
            s = Some(sample);
            secs
        }));
        self.ops += conn.ops_sent() - ops0;
        self.mons += conn.mon_commands_sent() - mon0;
        self.peak = self.peak.max(conn.inflight_peak());
        self.last = s;
    }

    /// The runs over a pool of `n` images as results JSON, and the last
    /// run's sample.
    pub fn finish(mut self, n: usize) -> (Value, Sampled) {
        let sample = self.last.take().expect("at least one run");
        let runs = self.runs.len().max(1) as f64;
        let mut exporter = cost_json(&self.runs, n);
        exporter["ops_sent"] = json!(self.ops as f64 / runs);
        exporter["mon_commands"] = json!(self.mons as f64 / runs);
        exporter["ops_per_image"] = json!(self.ops as f64 / runs / n as f64);
        exporter["osd_bound_ops_per_image"] =
            json!((self.ops - self.mons) as f64 / runs / n as f64);
        exporter["peak_inflight"] = json!(self.peak);
        exporter["counts"] = sample.counts();
        (exporter, sample)
    }
}

impl Sampled {
    /// How many images, clones, watched images and images with snapshots
    /// the sample saw.
    pub fn counts(&self) -> Value {
        let (mut images, mut clones, mut watched, mut snapped) = (0, 0, 0, 0);
        for (_, ns) in self.0.namespaces() {
            for i in ns.images.values() {
                images += 1;
                clones += i.parent.is_some() as usize;
                watched += !i.watchers.is_empty() as usize;
                snapped += !i.snapshots.is_empty() as usize;
            }
        }
        json!({"images": images, "clones": clones, "watched": watched, "with_snapshots": snapped})
    }

    /// Analysis and rendering of the sample, by default and with every
    /// image: median times of 5, body size and series.
    pub fn render_timings(&self) -> Value {
        let sample = &self.0;
        let settings = Settings::default();
        let mut first_seen = FirstSeen::default();
        let times = first_seen.update(sample, sample.started_at);
        let status = ExporterStatus {
            up: true,
            ..Default::default()
        };
        let mut out = serde_json::Map::new();
        for (label, all_images) in [("default", false), ("all_images", true)] {
            let options = RenderOptions {
                all_images,
                sample_interval_seconds: 60.0,
            };
            let (mut an, mut re, mut bytes, mut series) = (Vec::new(), Vec::new(), 0, 0);
            for _ in 0..5 {
                let t0 = Instant::now();
                // As the exporter does it: with an (empty) attribution.
                let analysis = Attribution::default().analyse(sample, &settings, &times);
                let t1 = Instant::now();
                let body = metrics::render(Some(sample), Some(&analysis), &status, &options);
                an.push((t1 - t0).as_secs_f64());
                re.push(t1.elapsed().as_secs_f64());
                bytes = body.len();
                series = body.lines().filter(|l| !l.starts_with('#')).count();
            }
            out.insert(
                label.into(),
                json!({"analyse_s": median(&an), "render_s": median(&re), "bytes": bytes, "series": series}),
            );
        }
        Value::Object(out)
    }
}

/// The exporter's eight cls calls on a header: class, method and the input
/// it sends.
pub fn header_calls() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let head = decode::encode_snap_id(u64::MAX - 1);
    vec![
        ("rbd", "get_size", head.clone()),
        (
            "rbd",
            "get_features",
            decode::encode_get_features(u64::MAX - 1),
        ),
        ("rbd", "get_flags", head.clone()),
        ("rbd", "get_snapcontext", Vec::new()),
        ("rbd", "op_features_get", Vec::new()),
        ("rbd", "parent_get", Vec::new()),
        ("rbd", "parent_overlap_get", head),
        ("lock", "get_info", decode::encode_lock_get_info("rbd_lock")),
    ]
}
