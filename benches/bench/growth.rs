//! `bench growth CONF OUT RUNS POOL...`: (a) and (b) on pools of different
//! sizes in the same cluster, alternating, so that the cluster's own size
//! (which slows every OSD op) is the same for all of them.

use crate::approaches::exporter::{Library, Sampler};
use crate::approaches::floor::floor;
use crate::approaches::rados::Raw;
use crate::cost::median;
use crate::seeding::Seeded;
use crate::util::{die, load1, num, say};
use serde_json::{Value, json};
use std::ffi::CString;

/// One pool of the comparison and its runs.
struct Setup<'a> {
    /// The pool's name.
    name: String,
    /// Its header objects, for (b).
    oids: Vec<CString>,
    /// Its sampler, for (a).
    sampler: Sampler<'a>,
    /// A raw connection to it, for (b).
    raw: Raw,
    /// (a)'s run times, in seconds.
    a: Vec<f64>,
    /// (b)'s run times, in seconds.
    b: Vec<f64>,
}

impl Setup<'_> {
    /// The pool's runs as results JSON.
    fn json(&self) -> Value {
        let n = self.oids.len() as f64;
        let (a, b) = (median(&self.a), median(&self.b));
        json!({
            "pool": self.name,
            "n": self.oids.len(),
            "exporter_median_s": a,
            "floor_median_s": b,
            "exporter_per_image_us": a / n * 1e6,
            "floor_per_image_us": b / n * 1e6,
            "exporter_runs_s": self.a,
            "floor_runs_s": self.b,
        })
    }
}

/// Runs the command and writes its results JSON to OUT.
pub fn growth(mut it: impl Iterator<Item = String>) {
    let conf = it.next().unwrap_or_else(|| die("growth wants CONF"));
    let out = it.next().unwrap_or_else(|| die("growth wants OUT"));
    let runs = num(&it.next().unwrap_or_else(|| die("growth wants RUNS")));
    let pools: Vec<String> = it.collect();
    let lib = Library::connect(&conf, tokio::runtime::Runtime::new().unwrap());
    let mut setups = Vec::new();
    for name in &pools {
        let oids = Seeded::read(&lib, name).header_oids();
        let sampler = lib.sampler(name, 64);
        let raw = Raw::connect(&conf, name, &[]);
        // Warm-up.
        sampler.sample();
        floor(raw.io, &oids, 64);
        setups.push(Setup {
            name: name.clone(),
            oids,
            sampler,
            raw,
            a: Vec::new(),
            b: Vec::new(),
        });
    }
    for _ in 0..runs {
        for s in setups.iter_mut() {
            s.a.push(s.sampler.sample().0);
            s.b.push(floor(s.raw.io, &s.oids, 64).0);
        }
    }
    let rows: Vec<Value> = setups.iter().map(Setup::json).collect();
    let result = json!({"growth": rows, "runs": runs, "load1": load1()});
    say(&format!("growth: {result}"));
    std::fs::write(&out, serde_json::to_string_pretty(&result).unwrap()).unwrap();
}
