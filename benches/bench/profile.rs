//! `bench profile (exporter|floor|librbd|steady) CONF POOL RUNS [key=value...]`:
//! only (a), (b) or (c), back to back, to attach `perf record` or callgrind
//! to (scripts/bench.sh counts instructions this way); `steady`: a full
//! sample, then RUNS incremental ones (full every 60), each after 1 % of
//! the headers changed, each next to a floor run.

use crate::approaches::exporter::{Library, Steady};
use crate::approaches::floor::floor;
use crate::approaches::librbd::librbd_scan;
use crate::approaches::rados::Raw;
use crate::approaches::touch::touch;
use crate::cost::Osd;
use crate::report::ms;
use crate::seeding::Seeded;
use crate::util::{die, num, say};
use std::ffi::CString;
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
        "steady" => {
            // OSD counters from the cluster directory next to CONF.
            let dir = std::path::Path::new(&conf).parent().unwrap().join("run");
            let osd = Osd::new(
                dir.join("osd.0.asok").to_str().unwrap(),
                dir.join("osd.0.pid").to_str().unwrap(),
            );
            let oids = Seeded::read(&lib, &pool).header_oids();
            let raw = Raw::connect(&conf, &pool, &[]);
            let t0 = Instant::now();
            let mut steady = Steady::start(lib.sampler_full_every(&pool, 64, 60));
            say(&format!("cold sample: {}", ms(t0.elapsed().as_secs_f64())));
            for round in 0..runs {
                steady.run(&osd, || {
                    let picked: Vec<&CString> =
                        oids.iter().skip(round % 100).step_by(100).collect();
                    assert_eq!(touch(raw.io, &picked, round as u64, 64), 0);
                    picked.len()
                });
                let fl = osd.costed(|| floor(raw.io, &oids, 64).0);
                say(&format!(
                    "floor: {} (OSD CPU {})",
                    ms(fl.secs),
                    ms(fl.osd_cpu)
                ));
            }
            let (_, check) = lib.sampler(&pool, 64).sample();
            say(&format!("steady: {}", steady.finish(oids.len(), &check)));
        }
        _ => die("profile exporter|floor|librbd|steady CONF POOL RUNS [key=value...]"),
    }
}
