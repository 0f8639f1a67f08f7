//! `bench measure`: every approach on one seeded pool, side by side, into
//! one results JSON (results-N.json) for the report.

use crate::approaches::composed::{SubOp, composed, header_calls};
use crate::approaches::exporter::{ARuns, Library, Steady};
use crate::approaches::floor::floor;
use crate::approaches::librbd::{facts_counts, librbd_scan};
use crate::approaches::rados::Raw;
use crate::approaches::touch::touch;
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
    let steady = steady_runs(&args, &osd, &lib, &raw, &oids);
    drop(raw);
    let librbd_json = librbd_runs(&args, &osd, &seeded, || a.run(&sampler, &osd));
    let (exporter, sample) = a.finish(n);
    say(&format!("(a) exporter: {exporter}"));

    // (e, part) analysis and rendering, in this process.
    let render = sample.render_timings();
    say(&format!("(e) render: {render}"));

    let cli = rbd_cli::measure(
        &args.conf,
        &seeded,
        args.status_sample,
        args.ls_pool.as_deref(),
    );
    say(&format!("(d) rbd CLI: {cli}"));

    // Peak RSS of the binary's one-shot sample.
    let dump = serving::dump(&args);
    say(&format!("dump: {dump}"));

    // (e) scrapers against the serving binary while it samples.
    let mut serve = serving::scrape(&args);
    serve["all_images_vmhwm_kib"] = json!(serving::serve_rss(
        &args,
        &args.pool,
        &["--metrics.all-images"],
        5
    ));
    // The base: the same binary serving an empty pool.
    if let Some(base) = &args.base_pool {
        serve["base_vmhwm_kib"] = json!(serving::serve_rss(&args, base, &[], 3));
    }
    say(&format!("(e) scrape: {serve}"));

    let result = json!({
        "date": utc_now(),
        "load1_before": load_before,
        "load1_after": load1(),
        "n": n,
        "pool": args.pool,
        "concurrency": args.concurrency,
        "runs": args.runs,
        "seeding": {"seconds": args.seeding_s, "how": args.seeding},
        "exporter": exporter,
        "steady": steady,
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
    if args.composed_runs == 0 {
        return compositions;
    }
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
            args.composed_runs,
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

/// The steady state: a full sample, then `args.steady_runs` incremental
/// ones (`args.full_every`), each after `args.changed_per_mille` of the
/// headers were changed (not timed) and followed by a floor run; then one
/// more full sample to compare the last incremental one with: results JSON.
fn steady_runs(args: &Args, osd: &Osd, lib: &Library, raw: &Raw, oids: &[CString]) -> Value {
    let sampler = lib.sampler_full_every(&args.pool, args.concurrency, args.full_every);
    let mut steady = Steady::start(sampler);
    let mut floor_alongside = Vec::new();
    let step = (1000 / args.changed_per_mille.max(1)).max(1);
    for round in 0..args.steady_runs {
        steady.run(osd, || {
            // A different slice of the headers every round.
            let picked: Vec<&CString> = oids.iter().skip(round % step).step_by(step).collect();
            let errors = touch(raw.io, &picked, round as u64, args.concurrency);
            assert_eq!(errors, 0, "changing headers failed");
            picked.len()
        });
        floor_alongside.push(osd.costed(|| floor(raw.io, oids, args.concurrency).0));
    }
    let (_, check) = lib.sampler(&args.pool, args.concurrency).sample();
    let mut j = steady.finish(oids.len(), &check);
    j["floor_alongside"] = cost_json(&floor_alongside, oids.len());
    say(&format!("(a) steady state: {j}"));
    for (what, key) in [("skipped images", "skipped"), ("images", "images")] {
        let v = j[key].as_array().cloned().unwrap_or_default();
        let want = if key == "images" { oids.len() } else { 0 };
        assert!(
            v.iter().all(|x| x.as_u64() == Some(want as u64)),
            "steady-state samples: {what} {v:?}, wanted {want} each"
        );
    }
    j
}

/// (c) `args.librbd_runs` times on its own connection, `after` each run:
/// results JSON. On `args.librbd_slice` images (whole blocks, evenly
/// spaced) when that is fewer than the pool holds, extrapolated to the pool.
fn librbd_runs(args: &Args, osd: &Osd, seeded: &Seeded, after: impl FnMut()) -> Value {
    let n = seeded.len();
    let names: Vec<CString> = if args.librbd_slice > 0 && args.librbd_slice < n {
        seeded
            .block_slice(args.librbd_slice)
            .into_iter()
            .map(|s| CString::new(s).unwrap())
            .collect()
    } else {
        seeded.names()
    };
    let names = &names;
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
    if names.len() < n {
        extrapolate(&mut librbd_json, n as f64 / names.len() as f64);
    }
    librbd_json["images"] = json!(names.len());
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

/// Scales a slice's times and totals by `factor` (the pool's images over
/// the slice's), keeping the slice's own times as `slice_runs_s`.
fn extrapolate(j: &mut Value, factor: f64) {
    j["slice_runs_s"] = j["runs_s"].clone();
    j["extrapolated_by"] = json!(factor);
    let scale = |v: &Value| json!(v.as_f64().unwrap_or(f64::NAN) * factor);
    if let Some(runs) = j["runs_s"].as_array_mut() {
        for r in runs.iter_mut() {
            *r = scale(r);
        }
    }
    for k in [
        "median_s",
        "min_s",
        "osd_ops",
        "osd_op_r",
        "osd_cpu_s",
        "client_cpu_s",
    ] {
        j[k] = scale(&j[k]);
    }
}
