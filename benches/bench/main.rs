//! `make bench` (scripts/bench.sh): the exporter against the floor and the
//! alternatives, side by side on one seeded pool.
//!
//!   bench measure --conf C --pool P --osd-asok A --osd-pid-file F \
//!                 --exporter BIN --out results-N.json
//!   bench report --out BENCHMARKS.md --notes benches/NOTES.md results-*.json
//!   bench growth CONF OUT RUNS POOL...
//!   bench profile (exporter|floor|librbd) CONF POOL RUNS [key=value...]
//!
//! `measure` runs, at the same concurrency (64 unless told otherwise):
//!  (a) the exporter's sample (library API, in this process), and its
//!      binary's `dump` under /usr/bin/time -v for the peak RSS;
//!  (b) the floor: one bare `rados_aio_stat` per header object;
//!  (c) the peers' way: librbd open read-only, watchers, parent, snapshots,
//!      close per image (librbd's C API, linked into this binary only);
//!  (d) `rbd ls -l` on the pool and `rbd status` over a sample of images;
//!  (e) analysis + render time and body size, and /metrics latency with 50
//!      concurrent scrapers while the exporter binary samples;
//!  (f) one composed read per header, by what it holds.
//! Cluster-side cost is read from the OSD: its `osd.op` counter (admin
//! socket `perf dump`) and its CPU time (/proc).
//!
//! Layout: `seeding` finds the images benches/seed.py seeded; `approaches`
//! holds one module per approach measured (`approaches::exporter` is the
//! only one that uses the exporter's library); `cost` turns runs into
//! figures; `measure`, `growth` and `profile` are the commands that run
//! them; `report` writes BENCHMARKS.md from their results.

mod approaches;
mod args;
mod cost;
mod growth;
mod measure;
mod profile;
mod report;
mod seeding;
mod util;

use util::die;

fn main() {
    // `cargo bench` appends `--bench`; it means nothing here.
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    match args.next().as_deref() {
        Some("measure") => measure::measure(args::parse_measure(args)),
        Some("profile") => profile::profile(args),
        Some("growth") => growth::growth(args),
        Some("report") => report::report(args),
        _ => die("usage: bench measure ... | bench report ..."),
    }
}
