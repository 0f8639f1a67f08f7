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
use ceph_rbd_exporter::sampler::{SampleConfig, sample_once, sample_since};
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
                conf_path: Some(conf.to_string()),
                user: "admin".into(),
                mon_host: None,
                key: None,
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

    /// A sampler of `pool` alone, `max_inflight` ops in flight; its
    /// incremental samples read every header in full once every
    /// `full_every` samples.
    pub fn sampler(&self, pool: &str, max_inflight: usize) -> Sampler<'_> {
        self.sampler_full_every(pool, max_inflight, 1)
    }

    /// [`Library::sampler`] with `full_every` for its incremental samples.
    pub fn sampler_full_every(
        &self,
        pool: &str,
        max_inflight: usize,
        full_every: u32,
    ) -> Sampler<'_> {
        Sampler {
            lib: self,
            config: SampleConfig {
                pools: Some(vec![pool.to_string()]),
                max_inflight,
                full_every,
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
    Arc<Sample>,
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
        (t0.elapsed().as_secs_f64(), Sampled(Arc::new(sample)))
    }

    /// One incremental sample after `previous`, number `seq`: (seconds,
    /// the sample).
    pub fn sample_since(&self, previous: &Sampled, seq: u64) -> (f64, Sampled) {
        let t0 = Instant::now();
        let (sample, _) = self
            .lib
            .rt
            .block_on(sample_since(
                &self.lib.conn,
                &self.config,
                previous.0.clone(),
                seq,
            ))
            .expect("sample");
        (t0.elapsed().as_secs_f64(), Sampled(Arc::new(sample)))
    }

    /// `full_every`, as configured.
    pub fn full_every(&self) -> u32 {
        self.config.full_every
    }
}

/// The steady state: incremental samples, each after `change` moved some
/// headers (not timed), and what they cost.
pub struct Steady<'a> {
    /// The incremental sampler.
    sampler: Sampler<'a>,
    /// The previous sample.
    previous: Sampled,
    /// The previous sample's number.
    seq: u64,
    /// The cost of every run.
    runs: Vec<Cost>,
    /// RADOS ops the connection sent, per run.
    ops: Vec<u64>,
    /// How each run read the headers.
    reads: Vec<Value>,
    /// Images each run saw.
    images: Vec<usize>,
    /// Images each run skipped.
    skipped: Vec<usize>,
    /// Headers changed before each run.
    changed: Vec<usize>,
}

impl<'a> Steady<'a> {
    /// Starts from a full sample by `sampler` (its `full_every` is the
    /// incremental samples').
    pub fn start(sampler: Sampler<'a>) -> Steady<'a> {
        let (_, previous) = sampler.sample();
        Steady {
            sampler,
            previous,
            seq: 0,
            runs: Vec::new(),
            ops: Vec::new(),
            reads: Vec::new(),
            images: Vec::new(),
            skipped: Vec::new(),
            changed: Vec::new(),
        }
    }

    /// One incremental sample, costed, after `change` (which returns how
    /// many headers it changed).
    pub fn run(&mut self, osd: &Osd, change: impl FnOnce() -> usize) {
        self.changed.push(change());
        self.seq += 1;
        let conn = &self.sampler.lib.conn;
        let ops0 = conn.ops_sent();
        let mut s = None;
        self.runs.push(osd.costed(|| {
            let (secs, sample) = self.sampler.sample_since(&self.previous, self.seq);
            s = Some(sample);
            secs
        }));
        self.ops.push(conn.ops_sent() - ops0);
        let s = s.expect("sampled");
        let r = s.0.reads;
        self.reads.push(json!({
            "full": r.full, "light": r.light, "changed": r.changed, "snapshots": r.snapshots,
        }));
        self.images.push(s.images());
        self.skipped.push(s.skipped());
        self.previous = s;
    }

    /// The runs over a pool of `n` images as results JSON; `check` is a
    /// full sample to compare the last incremental one with.
    pub fn finish(self, n: usize, check: &Sampled) -> Value {
        let mut j = cost_json(&self.runs, n);
        let runs = self.ops.len().max(1) as f64;
        j["full_every"] = json!(self.sampler.full_every());
        j["ops_sent_runs"] = json!(self.ops);
        j["ops_per_image"] = json!(self.ops.iter().sum::<u64>() as f64 / runs / n as f64);
        j["reads"] = json!(self.reads);
        j["images"] = json!(self.images);
        j["skipped"] = json!(self.skipped);
        j["changed"] = json!(self.changed);
        j["mismatches_vs_full"] = json!(self.previous.mismatches(check));
        j
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
    /// How many images the sample saw.
    pub fn images(&self) -> usize {
        self.0.namespaces().map(|(_, ns)| ns.images.len()).sum()
    }

    /// How many images (or entries) the sample skipped, and pools it
    /// could not sample.
    pub fn skipped(&self) -> usize {
        self.0
            .pools
            .values()
            .map(|p| p.skipped.len() + p.outcome.is_err() as usize)
            .sum()
    }

    /// Images whose facts (header version included) differ between this
    /// sample and `other`, or that only one of them holds.
    pub fn mismatches(&self, other: &Sampled) -> usize {
        let facts = |s: &Sampled| {
            let mut m = std::collections::BTreeMap::new();
            for (_, ns) in s.0.namespaces() {
                m.extend(ns.images.iter().map(|(id, i)| (id.clone(), i.clone())));
            }
            m
        };
        let (a, b) = (facts(self), facts(other));
        let differ = a.iter().filter(|(id, i)| b.get(*id) != Some(*i)).count();
        differ + b.keys().filter(|id| !a.contains_key(*id)).count()
    }

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
                external_url: None,
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
