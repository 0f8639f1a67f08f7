//! `bench profile (exporter|floor|librbd) CONF POOL RUNS [key=value...]`:
//! only (a), (b) or (c), back to back, to attach `perf record` or callgrind
//! to (scripts/bench.sh counts instructions this way).

use crate::approaches::exporter::Library;
use crate::approaches::floor::floor;
use crate::approaches::librbd::librbd_scan;
use crate::approaches::rados::Raw;
use crate::report::ms;
use crate::seeding::Seeded;
use crate::util::{die, num, say};
use std::time::Instant;
use tokio::runtime::{Builder, Runtime};

/// BENCH_WORKERS=N: a multi-thread runtime with N workers (default: one
/// per core, as the exporter's `Runtime::new`); 0: a current-thread one.
fn runtime() -> Runtime {
    match std::env::var("BENCH_WORKERS").ok().map(|w| num(&w)) {
        Some(0) => Builder::new_current_thread().enable_all().build().unwrap(),
        Some(n) => Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()
            .unwrap(),
        None => Runtime::new().unwrap(),
    }
}

/// Runs the command.
pub fn profile(mut it: impl Iterator<Item = String>) {
    let what = it.next().unwrap_or_default();
    let conf = it.next().unwrap_or_else(|| die("profile wants CONF"));
    let pool = it.next().unwrap_or_else(|| die("profile wants POOL"));
    let runs = num(&it.next().unwrap_or_else(|| "10".into()));
    let lib = Library::connect(&conf, runtime());
    match what.as_str() {
        "exporter" => {
            let sampler = lib.sampler(&pool, 64);
            for _ in 0..runs {
                let (secs, _) = sampler.sample();
                say(&format!("sample: {}", ms(secs)));
            }
        }
        "floor" => {
            let oids = Seeded::read(&lib, &pool).header_oids();
            let raw = Raw::connect(&conf, &pool, &[]);
            for _ in 0..runs {
                let (secs, _) = floor(raw.io, &oids, 64);
                say(&format!("floor: {}", ms(secs)));
            }
        }
        "librbd" => {
            let names = Seeded::read(&lib, &pool).names();
            let options: Vec<(String, String)> = it
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())))
                .collect();
            let raw = Raw::connect(&conf, &pool, &options);
            for _ in 0..runs {
                let t0 = Instant::now();
                let (_, errors) = librbd_scan(raw.io, &names, 64);
                say(&format!(
                    "librbd: {} ({errors} errors)",
                    ms(t0.elapsed().as_secs_f64())
                ));
            }
        }
        _ => die("profile exporter|floor|librbd CONF POOL RUNS [key=value...]"),
    }
}
