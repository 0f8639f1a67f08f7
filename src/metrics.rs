//! Render: a sample's analysis and the exporter's status as Prometheus text
//! exposition.
//!
//! Rendering happens once per sample, not per scrape: /metrics serves the
//! bytes rendered here. Per-watcher series come from the analysis'
//! per-watcher findings as they are (host, verdict, first-seen time).

use crate::analysis::{Analysis, ImageFindings};
use crate::model::{Image, ImageKey, Sample};
use crate::status::{ExporterStatus, SourceHealth};
use prometheus::core::Collector;
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use std::collections::BTreeMap;

/// What to render besides the findings.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Emit per-image series for every image, not just the ones with
    /// something to say.
    pub all_images: bool,
    /// `--sample.interval` in seconds, exported so alerts can tell a stale
    /// sample from a slow one.
    pub sample_interval_seconds: f64,
}

const SAMPLED: &str = "Sampled in the background every --sample.interval; not live.";

fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, format!("{help} {SAMPLED}")), labels)
        .expect("valid metric definition")
}

fn int_gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, format!("{help} {SAMPLED}")), labels)
        .expect("valid metric definition")
}

/// Reads one total out of a namespace summary.
type SummaryField = fn(&crate::analysis::NamespaceSummary) -> i64;

// Per-image series carry `image_id` besides the name, so that a trashed
// image and a live one of the same name never share a series; joins with
// the mgr's series `on (pool, namespace, image)` keep working.
const IMAGE: &[&str] = &["pool", "namespace", "image", "image_id"];
const IMAGE_REASON: &[&str] = &["pool", "namespace", "image", "image_id", "reason"];
const WATCHER: &[&str] = &[
    "pool",
    "namespace",
    "image",
    "image_id",
    "client",
    "address",
    "host",
];
/// A watcher's labels and why it is believed orphaned.
const WATCHER_REASON: &[&str] = &[
    "pool",
    "namespace",
    "image",
    "image_id",
    "client",
    "address",
    "host",
    "reason",
];
const SNAPSHOT: &[&str] = &["pool", "namespace", "image", "image_id", "snapshot"];
const POOL_NS: &[&str] = &["pool", "namespace"];

/// Renders everything into the text exposition format.
pub fn render(
    sample: Option<&Sample>,
    analysis: Option<&Analysis>,
    status: &ExporterStatus,
    options: &RenderOptions,
) -> String {
    let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
    if let (Some(sample), Some(analysis)) = (sample, analysis) {
        collectors.extend(sample_collectors(sample, analysis, options));
    }
    collectors.extend(exporter_collectors(status, options));

    let registry = Registry::new();
    for c in collectors {
        registry.register(c).expect("metric names are unique");
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("encoding to memory cannot fail");
    String::from_utf8(out).expect("the text encoder writes UTF-8")
}

/// The per-sample series, filled image by image.
struct SampleGauges {
    /// `ceph_rbd_image_watchers`.
    image_watchers: IntGaugeVec,
    /// `ceph_rbd_image_clone_depth`.
    image_depth: IntGaugeVec,
    /// `ceph_rbd_image_flatten_pending`.
    image_flatten: IntGaugeVec,
    /// `ceph_rbd_image_stale_locks`.
    image_stale: IntGaugeVec,
    /// `ceph_rbd_image_orphaned_watchers`.
    image_orphans: IntGaugeVec,
    /// `ceph_rbd_watcher_info`.
    watcher_info: IntGaugeVec,
    /// `ceph_rbd_watcher_first_seen_timestamp_seconds`.
    watcher_first_seen: GaugeVec,
    /// `ceph_rbd_watcher_orphaned`.
    watcher_orphaned: IntGaugeVec,
    /// `ceph_rbd_snapshot_children`.
    snap_children: IntGaugeVec,
    /// `ceph_rbd_snapshot_protected`.
    snap_protected: IntGaugeVec,
    /// `ceph_rbd_snapshot_trashed`.
    snap_trashed: IntGaugeVec,
    /// `ceph_rbd_pool_*`, each with the summary field it shows.
    pool: Vec<(IntGaugeVec, SummaryField)>,
}

fn sample_collectors(
    sample: &Sample,
    analysis: &Analysis,
    options: &RenderOptions,
) -> Vec<Box<dyn Collector>> {
    let g = SampleGauges::new();
    for (pool, ns) in sample.namespaces() {
        if let Some(summary) = analysis
            .namespaces
            .get(&(pool.pool_id, ns.namespace.clone()))
        {
            for (gauge, value) in &g.pool {
                gauge
                    .with_label_values(&[pool.name.as_str(), &ns.namespace])
                    .set(value(summary));
            }
        }
    }
    for s in sample.images() {
        let key = s.key();
        if let Some(findings) = analysis.images.get(&key) {
            let labels = [
                s.pool.name.as_str(),
                s.namespace.namespace.as_str(),
                s.image.name.as_str(),
                s.image.id.as_str(),
            ];
            g.add_snapshots(&labels, s.image, &key, analysis);
            if options.all_images || !findings.is_quiet() {
                g.add_image(&labels, findings);
            }
        }
    }
    let mut out = g.into_collectors();
    out.push(Box::new(format1_gauge(sample)));
    out
}

/// `ceph_rbd_pool_format1_images`, straight from the sample: format 1
/// images are listed, not read, so they have no findings to summarise.
fn format1_gauge(sample: &Sample) -> IntGaugeVec {
    let g = int_gauge(
        "ceph_rbd_pool_format1_images",
        "Format 1 images: counted, not sampled (no watcher, lock or snapshot series).",
        POOL_NS,
    );
    for (pool, ns) in sample.namespaces() {
        g.with_label_values(&[pool.name.as_str(), &ns.namespace])
            .set(ns.format1_images.len() as i64);
    }
    g
}

impl SampleGauges {
    fn new() -> SampleGauges {
        SampleGauges {
            image_watchers: int_gauge(
                "ceph_rbd_image_watchers",
                "Clients watching the image header.",
                IMAGE,
            ),
            image_depth: int_gauge(
                "ceph_rbd_image_clone_depth",
                "Ancestors of the image (0 for a non-clone), following parents across pools.",
                IMAGE,
            ),
            image_flatten: int_gauge(
                "ceph_rbd_image_flatten_pending",
                "1 for each reason the clone should be flattened.",
                IMAGE_REASON,
            ),
            image_stale: int_gauge(
                "ceph_rbd_image_stale_locks",
                "Locks on the image whose holder no longer watches it.",
                IMAGE,
            ),
            image_orphans: int_gauge(
                "ceph_rbd_image_orphaned_watchers",
                "Watchers believed orphaned, by reason.",
                IMAGE_REASON,
            ),
            watcher_info: int_gauge(
                "ceph_rbd_watcher_info",
                "One series per client watching an image; host is empty when the address could not be attributed.",
                WATCHER,
            ),
            watcher_first_seen: gauge(
                "ceph_rbd_watcher_first_seen_timestamp_seconds",
                "Unix time this exporter first saw the watcher.",
                WATCHER,
            ),
            watcher_orphaned: int_gauge(
                "ceph_rbd_watcher_orphaned",
                "1 for each watcher believed orphaned, with why; absent for the others.",
                WATCHER_REASON,
            ),
            snap_children: int_gauge(
                "ceph_rbd_snapshot_children",
                "Clones (v1 and v2, in any pool) of the snapshot.",
                SNAPSHOT,
            ),
            snap_protected: int_gauge(
                "ceph_rbd_snapshot_protected",
                "1 if the snapshot is protected.",
                SNAPSHOT,
            ),
            snap_trashed: int_gauge(
                "ceph_rbd_snapshot_trashed",
                "1 if the snapshot is in the trash namespace (removed while clones still use it).",
                SNAPSHOT,
            ),
            pool: pool_gauges(),
        }
    }

    /// The series of an image's snapshots that are protected, have
    /// children or are in the trash.
    fn add_snapshots(
        &self,
        labels: &[&str; 4],
        image: &Image,
        key: &ImageKey,
        analysis: &Analysis,
    ) {
        let [pool, ns, name, id] = *labels;
        for snap in &image.snapshots {
            let children = analysis.children_of(key, snap);
            if snap.protected || children > 0 || snap.is_trashed() {
                let l = [pool, ns, name, id, snap.name.as_str()];
                self.snap_children
                    .with_label_values(&l)
                    .set(children as i64);
                self.snap_protected
                    .with_label_values(&l)
                    .set(i64::from(snap.protected));
                self.snap_trashed
                    .with_label_values(&l)
                    .set(i64::from(snap.is_trashed()));
            }
        }
    }

    /// The per-image series and one series per watcher.
    fn add_image(&self, labels: &[&str; 4], findings: &ImageFindings) {
        let [pool, ns, name, id] = *labels;
        self.image_watchers
            .with_label_values(labels)
            .set(findings.watchers.len() as i64);
        self.image_depth
            .with_label_values(labels)
            .set(i64::from(findings.clone_depth.depth));
        self.image_stale
            .with_label_values(labels)
            .set(findings.stale_locks().count() as i64);
        for reason in &findings.flatten_reasons {
            self.image_flatten
                .with_label_values(&[pool, ns, name, id, reason.label()])
                .set(1);
        }
        for (_, reason) in findings.orphans() {
            self.image_orphans
                .with_label_values(&[pool, ns, name, id, reason.label()])
                .inc();
        }
        for w in &findings.watchers {
            let l = [
                pool,
                ns,
                name,
                id,
                w.watcher.client.as_str(),
                w.watcher.address.as_str(),
                w.host_name(),
            ];
            self.watcher_info.with_label_values(&l).set(1);
            // Two watches from one client instance share labels: keep the older.
            let g = self.watcher_first_seen.with_label_values(&l);
            if g.get() == 0.0 || w.first_seen < g.get() {
                g.set(w.first_seen);
            }
            // Only orphans have this series: it is their list, and host
            // and verdict come from the same finding.
            if let Some(reason) = w.orphan_reason() {
                let [pool, ns, name, id, client, address, host] = l;
                let l = [pool, ns, name, id, client, address, host, reason.label()];
                self.watcher_orphaned.with_label_values(&l).set(1);
            }
        }
    }

    fn into_collectors(self) -> Vec<Box<dyn Collector>> {
        let mut out: Vec<Box<dyn Collector>> = vec![
            Box::new(self.image_watchers),
            Box::new(self.image_depth),
            Box::new(self.image_flatten),
            Box::new(self.image_stale),
            Box::new(self.image_orphans),
            Box::new(self.watcher_info),
            Box::new(self.watcher_first_seen),
            Box::new(self.watcher_orphaned),
            Box::new(self.snap_children),
            Box::new(self.snap_protected),
            Box::new(self.snap_trashed),
        ];
        out.extend(
            self.pool
                .into_iter()
                .map(|(g, _)| Box::new(g) as Box<dyn Collector>),
        );
        out
    }
}

/// The per pool and namespace gauges, each with the total it shows.
fn pool_gauges() -> Vec<(IntGaugeVec, SummaryField)> {
    vec![
        (
            int_gauge("ceph_rbd_pool_images", "Images outside the trash.", POOL_NS),
            |s| s.images as i64,
        ),
        (
            int_gauge("ceph_rbd_pool_clones", "Clones outside the trash.", POOL_NS),
            |s| s.clones as i64,
        ),
        (
            int_gauge(
                "ceph_rbd_pool_watched_images",
                "Images with at least one watcher.",
                POOL_NS,
            ),
            |s| s.watched_images as i64,
        ),
        (
            int_gauge("ceph_rbd_pool_watchers", "Watchers of all images.", POOL_NS),
            |s| s.watchers as i64,
        ),
        (
            int_gauge(
                "ceph_rbd_pool_orphaned_watchers",
                "Watchers believed orphaned.",
                POOL_NS,
            ),
            |s| s.orphaned_watchers as i64,
        ),
        (
            int_gauge(
                "ceph_rbd_pool_stale_locks",
                "Locks whose holder no longer watches the image.",
                POOL_NS,
            ),
            |s| s.stale_locks as i64,
        ),
        (
            int_gauge(
                "ceph_rbd_pool_protected_snapshots",
                "Protected snapshots.",
                POOL_NS,
            ),
            |s| s.protected_snapshots as i64,
        ),
        (
            int_gauge(
                "ceph_rbd_pool_max_clone_depth",
                "Deepest clone chain of any image.",
                POOL_NS,
            ),
            |s| i64::from(s.max_clone_depth),
        ),
        (
            int_gauge(
                "ceph_rbd_pool_flatten_pending_images",
                "Distinct images with at least one flatten reason.",
                POOL_NS,
            ),
            |s| s.flatten_pending_images as i64,
        ),
        (
            int_gauge(
                "ceph_rbd_pool_trash_images",
                "Images in the trash.",
                POOL_NS,
            ),
            |s| s.trash_images as i64,
        ),
    ]
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
    let mut out: Vec<Box<dyn Collector>> = vec![
        Box::new(up),
        Box::new(interval),
        Box::new(duration),
        Box::new(last_success),
        Box::new(errors),
        Box::new(build),
    ];
    if !status.sources.is_empty() {
        out.extend(source_collectors(&status.sources));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::fixtures::*;
    use crate::analysis::{ImageStateClassifier, Judges, Settings, analyse_with};
    use crate::first_seen::FirstSeen;
    use crate::model::*;

    fn golden_sample() -> Sample {
        let mut base = image("g1", "8c0f7d1e-glance-base");
        let mut snap = snapshot(4, "snap", true);
        snap.v2_children = vec![ChildRef {
            pool_id: 2,
            namespace: String::new(),
            image_id: "c1".into(),
        }];
        base.snapshots.push(snap);
        let mut clone = image("c1", "volume-from-glance");
        clone.parent = Some(ParentRef {
            pool_id: 1,
            namespace: String::new(),
            image_id: "g1".into(),
            snap_id: 4,
            overlap: Some(1 << 30),
        });
        clone
            .watchers
            .push(watcher(4123, "10.0.0.5", 94505488011264));
        clone
            .locks
            .push(exclusive_lock(4123, "10.0.0.5", 94505488011264));
        let mut zombie = image("z1", "volume-zombie.deleted");
        zombie.watchers.push(watcher(4200, "10.0.0.6", 7));
        let mut locked = image("l1", "volume-locked");
        locked
            .locks
            .push(advisory_lock(4300, "10.0.0.7", "stale-cookie"));
        let idle = image("i1", "idle-disk");
        let mut hostile = image("h1", "we\"ird\\name\nwith-ünïcode");
        hostile.watchers.push(watcher(4400, "10.0.0.8", 9));
        let mut tenant = namespace("tenant-a", vec![image("t1", "csi-vol-0001")]);
        tenant
            .images
            .get_mut("t1")
            .map(std::sync::Arc::make_mut)
            .unwrap()
            .watchers
            .push(watcher(4500, "10.0.0.9", 11));
        sample(vec![
            (1, "images", vec![namespace("", vec![base])]),
            (
                2,
                "volumes",
                vec![
                    namespace("", vec![clone, zombie, locked, idle, hostile]),
                    tenant,
                ],
            ),
        ])
    }

    fn golden_status() -> ExporterStatus {
        ExporterStatus {
            up: true,
            sample_duration_seconds: [("images".to_string(), 0.25), ("volumes".to_string(), 0.5)]
                .into(),
            last_success_timestamp_seconds: [
                ("images".to_string(), 1_700_000_001.5),
                ("volumes".to_string(), 1_700_000_001.5),
            ]
            .into(),
            sample_errors_total: [(("volumes".to_string(), "timeout".to_string()), 2)].into(),
            sources: [
                (
                    "openstack".to_string(),
                    SourceHealth {
                        up: true,
                        last_success_timestamp_seconds: 1_700_000_000.0,
                        images: 42,
                        ..Default::default()
                    },
                ),
                (
                    "kubernetes".to_string(),
                    SourceHealth {
                        up: false,
                        errors_total: [("unreachable".to_string(), 3)].into(),
                        last_error: Some(
                            "kubernetes: https://k8s:6443/api/v1/nodes: timed out".into(),
                        ),
                        ..Default::default()
                    },
                ),
            ]
            .into(),
        }
    }

    /// Attributes 10.0.0.5 to compute-1, as an inventory would.
    struct OneHost;
    impl crate::analysis::HostLookup for OneHost {
        fn host(&self, ip: &str) -> Option<crate::analysis::Host> {
            (ip == "10.0.0.5").then(|| crate::analysis::Host {
                name: "compute-1".into(),
                role: Some("compute".into()),
                via: "inventory",
            })
        }
    }

    fn render_golden(all_images: bool) -> String {
        let s = golden_sample();
        let fs = FirstSeen::default().update(&s, 1_699_999_000.0);
        let judges = Judges {
            hosts: &OneHost,
            classifiers: &[&ImageStateClassifier],
            first_seen: &fs,
        };
        let a = analyse_with(&s, &Settings::default(), &judges);
        render(
            Some(&s),
            Some(&a),
            &golden_status(),
            &RenderOptions {
                all_images,
                sample_interval_seconds: 60.0,
            },
        )
        .replace(env!("CARGO_PKG_VERSION"), "VERSION")
    }

    /// Whether to rewrite golden files: `UPDATE_GOLDEN=1` asks for it, and
    /// it is refused under CI (`CI=true`), so a golden test can never pass
    /// there by rewriting its own expectation.
    fn update_golden(update: Option<&str>, ci: Option<&str>) -> bool {
        let update = update.is_some_and(|v| !v.is_empty() && v != "0");
        assert!(
            !(update && ci.is_some_and(|v| v == "true" || v == "1")),
            "UPDATE_GOLDEN is refused under CI: golden files change only by hand"
        );
        update
    }

    /// Compares with tests/golden/NAME; `UPDATE_GOLDEN=1` rewrites it
    /// (never under CI).
    fn check_golden(name: &str, actual: &str) {
        let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
        let env = |k| std::env::var(k).ok();
        if update_golden(env("UPDATE_GOLDEN").as_deref(), env("CI").as_deref()) {
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            actual, expected,
            "rendering differs from {path}; rerun with UPDATE_GOLDEN=1 if intended"
        );
    }

    #[test]
    fn golden_files_are_never_rewritten_under_ci() {
        assert!(!update_golden(None, Some("true")));
        assert!(update_golden(Some("1"), None));
        assert!(!update_golden(Some("0"), None));
        let refused = std::panic::catch_unwind(|| update_golden(Some("1"), Some("true")));
        assert!(refused.is_err());
    }

    #[test]
    fn renders_golden_exposition() {
        check_golden("default.prom", &render_golden(false));
    }

    #[test]
    fn renders_golden_exposition_for_all_images() {
        check_golden("all-images.prom", &render_golden(true));
    }

    #[test]
    fn quiet_images_are_left_out_by_default() {
        let out = render_golden(false);
        assert!(!out.contains("image=\"idle-disk\""));
        assert!(render_golden(true).contains("ceph_rbd_image_watchers{image=\"idle-disk\""));
    }

    #[test]
    fn hostile_names_are_escaped() {
        let out = render_golden(false);
        assert!(
            out.contains(r#"image="we\"ird\\name\nwith-ünïcode""#),
            "{out}"
        );
        for line in out.lines() {
            assert!(
                line.starts_with('#')
                    || line.matches('"').count() % 2 == 0
                    || line.contains("\\\"")
            );
        }
    }

    /// compute-1 (10.0.0.5) and compute-2 (10.0.0.6), as an inventory
    /// would name them.
    struct TwoHosts;
    impl crate::analysis::HostLookup for TwoHosts {
        fn host(&self, ip: &str) -> Option<crate::analysis::Host> {
            let name = match ip {
                "10.0.0.5" => "compute-1",
                "10.0.0.6" => "compute-2",
                _ => return None,
            };
            Some(crate::analysis::Host {
                name: name.into(),
                role: Some("compute".into()),
                via: "inventory",
            })
        }
    }

    /// The image is attached to compute-1 only, as an attachment source
    /// would say: a watcher from anywhere else is `unexpected_host`.
    struct AttachedToCompute1;
    impl crate::analysis::OrphanClassifier for AttachedToCompute1 {
        fn classify(
            &self,
            ctx: &crate::analysis::WatcherContext<'_>,
        ) -> Option<crate::analysis::Verdict> {
            let host = ctx.host?;
            (host.name != "compute-1").then_some(crate::analysis::Verdict::Orphan(
                crate::analysis::OrphanReason::UnexpectedHost,
            ))
        }
    }

    #[test]
    fn only_orphaned_watchers_have_a_verdict_series_with_their_host() {
        // "Locked by other nodes": the pod moved to compute-1, compute-2
        // still has the image mapped. Two watchers, one orphan.
        let mut img = image("v2", "csi-vol-0002");
        img.watchers.push(watcher(4600, "10.0.0.5", 1));
        img.watchers.push(watcher(4601, "10.0.0.6", 2));
        let s = sample(vec![(3, "k8s", vec![namespace("", vec![img])])]);
        let fs = FirstSeen::default().update(&s, 1_699_999_000.0);
        let judges = Judges {
            hosts: &TwoHosts,
            classifiers: &[&ImageStateClassifier, &AttachedToCompute1],
            first_seen: &fs,
        };
        let a = analyse_with(&s, &Settings::default(), &judges);
        let out = render(
            Some(&s),
            Some(&a),
            &ExporterStatus::default(),
            &RenderOptions::default(),
        );
        let lines = |name: &str| -> Vec<&str> {
            out.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .collect()
        };
        assert_eq!(
            lines("ceph_rbd_watcher_orphaned"),
            [
                "ceph_rbd_watcher_orphaned{address=\"10.0.0.6:0/5601\",client=\"client.4601\",\
                 host=\"compute-2\",image=\"csi-vol-0002\",image_id=\"v2\",namespace=\"\",\
                 pool=\"k8s\",reason=\"unexpected_host\"} 1"
            ],
            "{out}"
        );
        assert_eq!(lines("ceph_rbd_watcher_info").len(), 2, "{out}");
        assert_eq!(
            lines("ceph_rbd_image_orphaned_watchers"),
            [
                "ceph_rbd_image_orphaned_watchers{image=\"csi-vol-0002\",image_id=\"v2\",\
                 namespace=\"\",pool=\"k8s\",reason=\"unexpected_host\"} 1"
            ],
            "{out}"
        );
        assert!(out.contains("ceph_rbd_pool_orphaned_watchers{namespace=\"\",pool=\"k8s\"} 1"));
    }

    #[test]
    fn renders_exporter_metrics_without_a_sample() {
        let out = render(
            None,
            None,
            &ExporterStatus::default(),
            &RenderOptions::default(),
        );
        assert!(out.contains("ceph_rbd_exporter_up 0"));
        assert!(out.contains("ceph_rbd_exporter_build_info{version="));
        assert!(!out.contains("ceph_rbd_pool_images"));
    }
}
