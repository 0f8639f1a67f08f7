//! `bench measure`: every approach on one seeded pool, side by side, into
//! one results JSON (results-N.json) for the report.

use crate::approaches::composed::{SubOp, composed, header_calls};
use crate::approaches::exporter::{ARuns, Library};
use crate::approaches::floor::floor;
use crate::approaches::librbd::{facts_counts, librbd_scan};
use crate::approaches::rados::Raw;
use crate::approaches::{rbd_cli, serving};
use crate::args::Args;
use crate::cost::{Osd, cost_json, cost_json_with_errors};
use crate::seeding::Seeded;
use crate::util::{load1, say, utc_now};
use serde_json::{Value, json};
use std::ffi::CString;
use std::time::Instant;

/// Runs every approach and writes the results to `args.out`.
pub fn measure(args: Args) {
    let load_before = load1();
    let osd = Osd::new(&args.osd_asok, &args.osd_pid_file);
    let lib = Library::connect(&args.conf, tokio::runtime::Runtime::new().unwrap());
    let seeded = Seeded::read(&lib, &args.pool);
    let n = seeded.len();
    say(&format!("pool {} holds {n} images", args.pool));
    let names = seeded.names();
    let oids = seeded.header_oids();
    let sampler = lib.sampler(&args.pool, args.concurrency);

    // (a) the exporter's sample, in this process.
    let (_, warm) = sampler.sample();
    say(&format!("exporter warm-up sample: {}", warm.counts()));
    // (a) alternates with (b), then with (c), so that load from elsewhere
    // on the machine falls on all of them alike.
    let mut a = ARuns::default();
    let raw = Raw::connect(&args.conf, &args.pool, &[]);
    let floor_json = floor_runs(&args, &osd, &raw, &oids, || a.run(&sampler, &osd));
    let compositions = compositions(&args, &osd, &raw, &oids);
    drop(raw);
    let librbd_json = librbd_runs(&args, &osd, &names, || a.run(&sampler, &osd));
    let (exporter, sample) = a.finish(n);
    say(&format!("(a) exporter: {exporter}"));

    // (e, part) analysis and rendering, in this process.
    let render = sample.render_timings();
    say(&format!("(e) render: {render}"));

    let cli = rbd_cli::measure(&args.conf, &seeded, args.status_sample);
    say(&format!("(d) rbd CLI: {cli}"));

    // Peak RSS of the binary's one-shot sample.
    let dump = serving::dump(&args);
    say(&format!("dump: {dump}"));

    // (e) scrapers against the serving binary while it samples.
    let mut serve = serving::scrape(&args);
    serve["all_images_vmhwm_kib"] = json!(serving::serve_rss(&args, &["--metrics.all-images"], 5));
    say(&format!("(e) scrape: {serve}"));

    let result = json!({
        "date": utc_now(),
        "load1_before": load_before,
        "load1_after": load1(),
        "n": n,
        "pool": args.pool,
        "concurrency": args.concurrency,
        "runs": args.runs,
        "exporter": exporter,
        "floor": floor_json,
        "compositions": compositions,
        "librbd": librbd_json,
        "cli": cli,
        "render": render,
        "dump": dump,
        "serve": serve,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&result).unwrap()).unwrap();
    say(&format!("wrote {}", args.out));
}

/// (b) after a warm-up, `args.runs` times, `after` each run: results JSON.
fn floor_runs(args: &Args, osd: &Osd, raw: &Raw, oids: &[CString], after: impl FnMut()) -> Value {
    floor(raw.io, oids, args.concurrency);
    let (runs, errors) =
        osd.costed_runs(args.runs, || floor(raw.io, oids, args.concurrency), after);
    let floor_json = cost_json_with_errors(&runs, oids.len(), errors);
    say(&format!("(b) floor: {floor_json}"));
    floor_json
}

/// (f) what one read per header costs, by what it holds: results JSON, one
/// per composition.
fn compositions(args: &Args, osd: &Osd, raw: &Raw, oids: &[CString]) -> Vec<Value> {
    let mut compositions = Vec::new();
    for (label, steps) in [
        ("stat (the floor's op)", vec![SubOp::Stat]),
        (
            "1 cls call (`rbd.get_size`)",
            vec![header_calls().swap_remove(0)],
        ),
        ("the header read's 8 cls calls", header_calls()),
        (
            "`omap_get_vals` + `getxattrs` (the raw header, no cls)",
            vec![SubOp::OmapAll, SubOp::Xattrs],
        ),
    ] {
        composed(raw.io, oids, &steps, args.concurrency);
        let (runs, errors) = osd.costed_runs(
            args.runs.min(3),
            || composed(raw.io, oids, &steps, args.concurrency),
            || {},
        );
        let mut j = cost_json(&runs, oids.len());
        j["label"] = json!(label);
        j["sub_ops"] = json!(steps.len());
        j["errors"] = json!(errors);
        say(&format!("(f) {j}"));
        compositions.push(j);
    }
    compositions
}

/// (c) `args.librbd_runs` times on its own connection, `after` each run:
/// results JSON.
fn librbd_runs(args: &Args, osd: &Osd, names: &[CString], after: impl FnMut()) -> Value {
    let raw = Raw::connect(&args.conf, &args.pool, &args.librbd_conf);
    let mut facts = Vec::new();
    let (runs, errors) = osd.costed_runs(
        args.librbd_runs,
        || {
            let t0 = Instant::now();
            let (f, errors) = librbd_scan(raw.io, names, args.concurrency);
            facts = f;
            (t0.elapsed().as_secs_f64(), errors)
        },
        after,
    );
    drop(raw);
    let mut librbd_json = cost_json_with_errors(&runs, names.len(), errors);
    librbd_json["threads"] = json!(args.concurrency);
    librbd_json["conf"] = json!(
        args.librbd_conf
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    );
    librbd_json["counts"] = facts_counts(&facts);
    say(&format!("(c) librbd: {librbd_json}"));
    librbd_json
}
