//! The exporter's own families (`ceph_rbd_exporter_*`): its health, sample
//! durations and errors, the header reads of incremental sampling, and the
//! attachment sources' health. A few dozen series whatever the cluster's
//! size, kept in a `prometheus` crate registry and encoded by its
//! `TextEncoder`. The image-scale families are written by the parent
//! module without a registry (one copy of each label, not three; and the
//! registry's series key, its label values hashed without a separator,
//! would merge pool `a` / namespace `bc` with pool `ab` / namespace `c`).

use super::RenderOptions;
use crate::status::{ExporterStatus, SourceHealth};
use prometheus::core::Collector;
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use std::collections::BTreeMap;

/// The exporter's own families as text, sorted by name.
pub(super) fn render(status: &ExporterStatus, options: &RenderOptions) -> String {
    let registry = Registry::new();
    for c in exporter_collectors(status, options) {
        registry.register(c).expect("metric names are unique");
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("encoding to memory cannot fail");
    String::from_utf8(out).expect("the text encoder writes UTF-8")
}

/// Header reads since start: `read` full or light, and the light reads
/// that found the header changed.
fn header_read_collectors(status: &ExporterStatus) -> Vec<Box<dyn Collector>> {
    let reads = IntCounterVec::new(
        Opts::new(
            "ceph_rbd_exporter_header_reads_total",
            "Image header reads since start: full (cls calls; new, changed and periodically every image, --sample.full-every) or light (watchers only, the header's version unchanged).",
        ),
        &["read"],
    )
    .expect("valid metric definition");
    reads
        .with_label_values(&["full"])
        .inc_by(status.header_reads.full);
    reads
        .with_label_values(&["light"])
        .inc_by(status.header_reads.light);
    let changed = IntCounterVec::new(
        Opts::new(
            "ceph_rbd_exporter_header_changes_total",
            "Light header reads since start that found the header's version moved (then read in full).",
        ),
        &[],
    )
    .expect("valid metric definition");
    changed
        .with_label_values(&[] as &[&str])
        .inc_by(status.header_reads.changed);
    vec![Box::new(reads), Box::new(changed)]
}

fn exporter_collectors(
    status: &ExporterStatus,
    options: &RenderOptions,
) -> Vec<Box<dyn Collector>> {
    let up = IntGaugeVec::new(
        Opts::new(
            "ceph_rbd_exporter_up",
            "Whether the last sample reached the cluster (1) or not (0).",
        ),
        &[],
    )
    .expect("valid metric definition");
    up.with_label_values(&[] as &[&str])
        .set(i64::from(status.up));
    let duration = GaugeVec::new(
        Opts::new(
            "ceph_rbd_exporter_sample_duration_seconds",
            "Seconds the last sample of the pool took.",
        ),
        &["pool"],
    )
    .expect("valid metric definition");
    for (pool, secs) in &status.sample_duration_seconds {
        duration.with_label_values(&[pool]).set(*secs);
    }
    let last_success = GaugeVec::new(
        Opts::new(
            "ceph_rbd_exporter_last_success_timestamp_seconds",
            "Unix time of the last successful sample of the pool.",
        ),
        &["pool"],
    )
    .expect("valid metric definition");
    for (pool, t) in &status.last_success_timestamp_seconds {
        last_success.with_label_values(&[pool]).set(*t);
    }
    let errors = IntCounterVec::new(
        Opts::new(
            "ceph_rbd_exporter_sample_errors_total",
            "Failed samples, by pool and kind of error (pool is empty when no pool was reached).",
        ),
        &["pool", "kind"],
    )
    .expect("valid metric definition");
    for ((pool, kind), n) in &status.sample_errors_total {
        errors.with_label_values(&[pool, kind]).inc_by(*n);
    }
    let mut out: Vec<Box<dyn Collector>> = vec![
        Box::new(up),
        Box::new(duration),
        Box::new(last_success),
        Box::new(errors),
    ];
    out.extend(build_collectors(options));
    out.extend(header_read_collectors(status));
    if !status.sources.is_empty() {
        out.extend(source_collectors(&status.sources));
    }
    out
}

/// The build and the configured interval.
fn build_collectors(options: &RenderOptions) -> Vec<Box<dyn Collector>> {
    let build = IntGaugeVec::new(
        Opts::new(
            "ceph_rbd_exporter_build_info",
            "Always 1; the version label says which build this is.",
        ),
        &["version"],
    )
    .expect("valid metric definition");
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    let interval = GaugeVec::new(
        Opts::new(
            "ceph_rbd_exporter_sample_interval_seconds",
            "The configured --sample.interval, in seconds.",
        ),
        &[],
    )
    .expect("valid metric definition");
    interval
        .with_label_values(&[] as &[&str])
        .set(options.sample_interval_seconds);
    let mut out: Vec<Box<dyn Collector>> = vec![Box::new(build), Box::new(interval)];
    if let Some(url) = &options.external_url {
        let web = IntGaugeVec::new(
            Opts::new(
                "ceph_rbd_exporter_web_info",
                "Always 1; external_url is --web.external-url, where dashboards and alerts link to the image pages.",
            ),
            &["external_url"],
        )
        .expect("valid metric definition");
        web.with_label_values(&[url]).set(1);
        out.push(Box::new(web));
    }
    out
}

/// Health of the attachment sources; only rendered when some are configured.
fn source_collectors(sources: &BTreeMap<String, SourceHealth>) -> Vec<Box<dyn Collector>> {
    let new = |name: &str, help: &str, labels: &[&str]| {
        GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition")
    };
    let up = new(
        "ceph_rbd_exporter_source_up",
        "Whether the attachment source's last fetch succeeded (1) or not (0); while 0, no watcher is called an orphan on its account.",
        &["source"],
    );
    let last_success = new(
        "ceph_rbd_exporter_source_last_success_timestamp_seconds",
        "Unix time of the attachment source's last successful fetch (0 before the first).",
        &["source"],
    );
    let images = new(
        "ceph_rbd_exporter_source_images",
        "Images the attachment source's last good answer named.",
        &["source"],
    );
    let errors = IntCounterVec::new(
        Opts::new(
            "ceph_rbd_exporter_source_errors_total",
            "Failed fetches of the attachment source, by kind (config, unreachable, auth, bad_response).",
        ),
        &["source", "kind"],
    )
    .expect("valid metric definition");
    for (name, h) in sources {
        up.with_label_values(&[name])
            .set(if h.up { 1.0 } else { 0.0 });
        last_success
            .with_label_values(&[name])
            .set(h.last_success_timestamp_seconds);
        images.with_label_values(&[name]).set(h.images as f64);
        // Make every kind visible at 0 so rate() works from the first error.
        for kind in ["config", "unreachable", "auth", "bad_response"] {
            errors.with_label_values(&[name.as_str(), kind]);
        }
        for (kind, n) in &h.errors_total {
            errors.with_label_values(&[name, kind]).inc_by(*n);
        }
    }
    vec![
        Box::new(up),
        Box::new(last_success),
        Box::new(images),
        Box::new(errors),
    ]
}
