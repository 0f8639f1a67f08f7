//! Render: a sample's analysis and the exporter's status as Prometheus text
//! exposition.
//!
//! Rendering happens once per sample, not per scrape: /metrics serves the
//! bytes rendered here. Per-watcher series come from the analysis'
//! per-watcher findings as they are (host, verdict, first-seen time).
//!
//! The text is written straight into one buffer, sized beforehand: each
//! family keeps only borrowed label values and a number per series until
//! it is written, and is dropped as soon as it is. The output is the one
//! the `prometheus` crate's registry and `TextEncoder` gave (families by
//! name, label names sorted, series sorted by label values, values as
//! `f64`'s `Display`), byte for byte: tests/golden and the equivalence
//! test below hold it to that, without the registry's copies of every
//! label (its metric vectors, then the gathered protobufs) at 100,000
//! images.

mod exporter;

use crate::analysis::{Analysis, ImageFindings};
use crate::model::{Image, ImageKey, Sample};
use crate::status::ExporterStatus;
use std::fmt::Write as _;

/// What to render besides the findings.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Emit per-image series for every image, not just the ones with
    /// something to say.
    pub all_images: bool,
    /// `--sample.interval` in seconds, exported so alerts can tell a stale
    /// sample from a slow one.
    pub sample_interval_seconds: f64,
    /// `--web.external-url`, exported as `ceph_rbd_exporter_web_info` for
    /// links from dashboards and alerts; `None` when unset.
    pub external_url: Option<String>,
}

const SAMPLED: &str = "Sampled in the background every --sample.interval; not live.";

/// How series of one family with the same labels combine, as the
/// `prometheus` crate's setters did on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// `set`: the last value pushed.
    Last,
    /// `inc`/`inc_by`: the sum.
    Sum,
    /// The first-seen gauge: the earliest non-zero time.
    Earliest,
}

/// One metric family of `N` labels, filled before it is written.
struct Family<'a, const N: usize> {
    name: &'static str,
    help: String,
    kind: &'static str,
    merge: Merge,
    /// Label names, sorted (the order of the text).
    names: [&'static str; N],
    /// `order[i]`: where the i-th sorted name is in the declared labels.
    order: [usize; N],
    /// Label values in the order of `names`, and the value.
    rows: Vec<([&'a str; N], f64)>,
}

impl<'a, const N: usize> Family<'a, N> {
    fn new(name: &'static str, help: String, labels: [&'static str; N]) -> Self {
        let mut order: [usize; N] = std::array::from_fn(|i| i);
        order.sort_by_key(|&i| labels[i]);
        Family {
            name,
            help,
            kind: "gauge",
            merge: Merge::Last,
            names: order.map(|i| labels[i]),
            order,
            rows: Vec::new(),
        }
    }

    /// A gauge whose help says it is sampled, not live.
    fn sampled(name: &'static str, help: &str, labels: [&'static str; N]) -> Self {
        Family::new(name, format!("{help} {SAMPLED}"), labels)
    }

    /// A counter (the exporter's own counters are in `exporter.rs`; the
    /// equivalence test checks counters are written as the registry did).
    #[cfg(test)]
    fn counter(mut self) -> Self {
        self.kind = "counter";
        self.merge = Merge::Sum;
        self
    }

    fn merging(mut self, merge: Merge) -> Self {
        self.merge = merge;
        self
    }

    /// One series, labels in the declared order.
    fn push(&mut self, labels: [&'a str; N], value: f64) {
        self.rows.push((self.order.map(|i| labels[i]), value));
    }
}

/// A filled family, whatever its label count.
trait Encode {
    fn name(&self) -> &'static str;
    /// Bytes the family takes in the text, or a little more.
    fn size_hint(&self) -> usize;
    /// Writes the family (nothing if it has no series) and frees it.
    fn encode(self: Box<Self>, out: &mut String);
}

/// Longest `f64` `Display` output we expect often; only a size estimate.
const VALUE_HINT: usize = 20;

impl<const N: usize> Encode for Family<'_, N> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn size_hint(&self) -> usize {
        if self.rows.is_empty() {
            return 0;
        }
        let header = 2 * self.name.len() + self.help.len() + self.kind.len() + 20;
        let fixed = self.name.len()
            + 2
            + VALUE_HINT
            + self.names.iter().map(|n| n.len() + 4).sum::<usize>();
        header
            + self
                .rows
                .iter()
                .map(|(labels, _)| fixed + labels.iter().map(|l| l.len()).sum::<usize>())
                .sum::<usize>()
    }

    fn encode(self: Box<Self>, out: &mut String) {
        let Family {
            name,
            help,
            kind,
            merge,
            names,
            mut rows,
            ..
        } = *self;
        if rows.is_empty() {
            return;
        }
        // Stable: equal label sets stay in the order they were pushed.
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        if !help.is_empty() {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            escape_into(out, &help, false);
            out.push('\n');
        }
        out.push_str("# TYPE ");
        out.push_str(name);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
        let mut i = 0;
        while i < rows.len() {
            let labels = rows[i].0;
            let mut value = match merge {
                Merge::Earliest => 0.0,
                _ => rows[i].1,
            };
            let mut j = i;
            while j < rows.len() && rows[j].0 == labels {
                let v = rows[j].1;
                match merge {
                    Merge::Last => value = v,
                    Merge::Sum if j > i => value += v,
                    Merge::Sum => {}
                    Merge::Earliest => {
                        if value == 0.0 || v < value {
                            value = v;
                        }
                    }
                }
                j += 1;
            }
            out.push_str(name);
            if N > 0 {
                let mut sep = '{';
                for (n, v) in names.iter().zip(labels) {
                    out.push(sep);
                    out.push_str(n);
                    out.push_str("=\"");
                    escape_into(out, v, true);
                    out.push('"');
                    sep = ',';
                }
                out.push('}');
            }
            out.push(' ');
            let _ = write!(out, "{value}");
            out.push('\n');
            i = j;
        }
    }
}

/// Appends `v` with `\` and newline escaped, and `"` too if `quote`.
fn escape_into(out: &mut String, v: &str, quote: bool) {
    let special = |c: char| c == '\\' || c == '\n' || (quote && c == '"');
    if !v.contains(special) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Reads one total out of a namespace summary.
type SummaryField = fn(&crate::analysis::NamespaceSummary) -> i64;

// Per-image series carry `image_id` besides the name, so that a trashed
// image and a live one of the same name never share a series; joins with
// the mgr's series `on (pool, namespace, image)` keep working.
const IMAGE: [&str; 4] = ["pool", "namespace", "image", "image_id"];
const IMAGE_REASON: [&str; 5] = ["pool", "namespace", "image", "image_id", "reason"];
const WATCHER: [&str; 7] = [
    "pool",
    "namespace",
    "image",
    "image_id",
    "client",
    "address",
    "host",
];
/// A watcher's labels and why it is believed orphaned.
const WATCHER_REASON: [&str; 8] = [
    "pool",
    "namespace",
    "image",
    "image_id",
    "client",
    "address",
    "host",
    "reason",
];
const SNAPSHOT: [&str; 5] = ["pool", "namespace", "image", "image_id", "snapshot"];
const POOL_NS: [&str; 2] = ["pool", "namespace"];

/// Families to write, in any order.
type Families<'a> = Vec<Box<dyn Encode + 'a>>;

/// Renders everything into the text exposition format.
pub fn render(
    sample: Option<&Sample>,
    analysis: Option<&Analysis>,
    status: &ExporterStatus,
    options: &RenderOptions,
) -> String {
    let mut families: Families<'_> = Vec::new();
    if let (Some(sample), Some(analysis)) = (sample, analysis) {
        families.extend(sample_families(sample, analysis, options));
    }
    families.sort_by_key(|f| f.name());
    assert!(
        families.windows(2).all(|w| w[0].name() != w[1].name()),
        "metric names are unique"
    );
    // The exporter's own families (`ceph_rbd_exporter_*`) sort before every
    // sample family (`ceph_rbd_image_*`, `_pool_`, `_snapshot_`,
    // `_watcher_`): the exposition is theirs, then these.
    debug_assert!(families.iter().all(|f| f.name() > "ceph_rbd_exporter_~"));
    let own = exporter::render(status, options);
    let mut out =
        String::with_capacity(own.len() + families.iter().map(|f| f.size_hint()).sum::<usize>());
    out.push_str(&own);
    drop(own);
    for f in families {
        f.encode(&mut out);
    }
    out
}

/// The per-sample series, filled image by image.
struct SampleGauges<'a> {
    /// `ceph_rbd_image_watchers`.
    image_watchers: Family<'a, 4>,
    /// `ceph_rbd_image_clone_depth`.
    image_depth: Family<'a, 4>,
    /// `ceph_rbd_image_flatten_pending`.
    image_flatten: Family<'a, 5>,
    /// `ceph_rbd_image_stale_locks`.
    image_stale: Family<'a, 4>,
    /// `ceph_rbd_image_orphaned_watchers`.
    image_orphans: Family<'a, 5>,
    /// `ceph_rbd_watcher_info`.
    watcher_info: Family<'a, 7>,
    /// `ceph_rbd_watcher_first_seen_timestamp_seconds`.
    watcher_first_seen: Family<'a, 7>,
    /// `ceph_rbd_watcher_orphaned`.
    watcher_orphaned: Family<'a, 8>,
    /// `ceph_rbd_snapshot_children`.
    snap_children: Family<'a, 5>,
    /// `ceph_rbd_snapshot_protected`.
    snap_protected: Family<'a, 5>,
    /// `ceph_rbd_snapshot_trashed`.
    snap_trashed: Family<'a, 5>,
    /// `ceph_rbd_pool_*`, each with the summary field it shows.
    pool: Vec<(Family<'a, 2>, SummaryField)>,
}

fn sample_families<'a>(
    sample: &'a Sample,
    analysis: &'a Analysis,
    options: &RenderOptions,
) -> Families<'a> {
    let mut g = SampleGauges::new();
    for (pool, ns) in sample.namespaces() {
        if let Some(summary) = analysis
            .namespaces
            .get(&(pool.pool_id, ns.namespace.clone()))
        {
            for (family, value) in &mut g.pool {
                family.push([pool.name.as_str(), &ns.namespace], value(summary) as f64);
            }
        }
    }
    for s in sample.images() {
        let key = s.key();
        {
            let findings = analysis.findings(&key);
            let labels = [
                s.pool.name.as_str(),
                s.namespace.namespace.as_str(),
                s.image.name.as_str(),
                s.image.id.as_str(),
            ];
            g.add_snapshots(labels, s.image, &key, analysis);
            if options.all_images || !findings.is_quiet() {
                g.add_image(labels, findings);
            }
        }
    }
    let mut out = g.into_families();
    out.push(Box::new(format1_family(sample)));
    out
}

/// `ceph_rbd_pool_format1_images`, straight from the sample: format 1
/// images are listed, not read, so they have no findings to summarise.
fn format1_family(sample: &Sample) -> Family<'_, 2> {
    let mut g = Family::sampled(
        "ceph_rbd_pool_format1_images",
        "Format 1 images: counted, not sampled (no watcher, lock or snapshot series).",
        POOL_NS,
    );
    for (pool, ns) in sample.namespaces() {
        g.push(
            [pool.name.as_str(), &ns.namespace],
            ns.format1_images.len() as i64 as f64,
        );
    }
    g
}

impl<'a> SampleGauges<'a> {
    fn new() -> SampleGauges<'a> {
        SampleGauges {
            image_watchers: Family::sampled(
                "ceph_rbd_image_watchers",
                "Clients watching the image header.",
                IMAGE,
            ),
            image_depth: Family::sampled(
                "ceph_rbd_image_clone_depth",
                "Ancestors of the image (0 for a non-clone), following parents across pools.",
                IMAGE,
            ),
            image_flatten: Family::sampled(
                "ceph_rbd_image_flatten_pending",
                "1 for each reason the clone should be flattened.",
                IMAGE_REASON,
            ),
            image_stale: Family::sampled(
                "ceph_rbd_image_stale_locks",
                "Locks on the image whose holder no longer watches it.",
                IMAGE,
            ),
            image_orphans: Family::sampled(
                "ceph_rbd_image_orphaned_watchers",
                "Watchers believed orphaned, by reason.",
                IMAGE_REASON,
            )
            .merging(Merge::Sum),
            watcher_info: Family::sampled(
                "ceph_rbd_watcher_info",
                "One series per client watching an image; host is empty when the address could not be attributed.",
                WATCHER,
            ),
            // Two watches from one client instance share labels: keep the older.
            watcher_first_seen: Family::sampled(
                "ceph_rbd_watcher_first_seen_timestamp_seconds",
                "Unix time this exporter first saw the watcher.",
                WATCHER,
            )
            .merging(Merge::Earliest),
            watcher_orphaned: Family::sampled(
                "ceph_rbd_watcher_orphaned",
                "1 for each watcher believed orphaned, with why; absent for the others.",
                WATCHER_REASON,
            ),
            snap_children: Family::sampled(
                "ceph_rbd_snapshot_children",
                "Clones (v1 and v2, in any pool) of the snapshot.",
                SNAPSHOT,
            ),
            snap_protected: Family::sampled(
                "ceph_rbd_snapshot_protected",
                "1 if the snapshot is protected.",
                SNAPSHOT,
            ),
            snap_trashed: Family::sampled(
                "ceph_rbd_snapshot_trashed",
                "1 if the snapshot is in the trash namespace (removed while clones still use it).",
                SNAPSHOT,
            ),
            pool: pool_families(),
        }
    }

    /// The series of an image's snapshots that are protected, have
    /// children or are in the trash.
    fn add_snapshots(
        &mut self,
        labels: [&'a str; 4],
        image: &'a Image,
        key: &ImageKey,
        analysis: &Analysis,
    ) {
        let [pool, ns, name, id] = labels;
        for snap in &image.snapshots {
            let children = analysis.children_of(key, snap);
            if snap.protected || children > 0 || snap.is_trashed() {
                let l = [pool, ns, name, id, snap.name.as_str()];
                self.snap_children.push(l, children as i64 as f64);
                self.snap_protected
                    .push(l, f64::from(u8::from(snap.protected)));
                self.snap_trashed
                    .push(l, f64::from(u8::from(snap.is_trashed())));
            }
        }
    }

    /// The per-image series and one series per watcher.
    fn add_image(&mut self, labels: [&'a str; 4], findings: &'a ImageFindings) {
        let [pool, ns, name, id] = labels;
        self.image_watchers
            .push(labels, findings.watchers.len() as i64 as f64);
        self.image_depth
            .push(labels, f64::from(findings.clone_depth.depth));
        self.image_stale
            .push(labels, findings.stale_locks().count() as i64 as f64);
        for reason in &findings.flatten_reasons {
            self.image_flatten
                .push([pool, ns, name, id, reason.label()], 1.0);
        }
        for (_, reason) in findings.orphans() {
            self.image_orphans
                .push([pool, ns, name, id, reason.label()], 1.0);
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
            self.watcher_info.push(l, 1.0);
            self.watcher_first_seen.push(l, w.first_seen);
            // Only orphans have this series: it is their list, and host
            // and verdict come from the same finding.
            if let Some(reason) = w.orphan_reason() {
                let [pool, ns, name, id, client, address, host] = l;
                let l = [pool, ns, name, id, client, address, host, reason.label()];
                self.watcher_orphaned.push(l, 1.0);
            }
        }
    }

    fn into_families(self) -> Families<'a> {
        let mut out: Families<'a> = vec![
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
                .map(|(g, _)| Box::new(g) as Box<dyn Encode + 'a>),
        );
        out
    }
}

/// The per pool and namespace gauges, each with the total it shows.
fn pool_families<'a>() -> Vec<(Family<'a, 2>, SummaryField)> {
    vec![
        (
            Family::sampled("ceph_rbd_pool_images", "Images outside the trash.", POOL_NS),
            |s| s.images as i64,
        ),
        (
            Family::sampled("ceph_rbd_pool_clones", "Clones outside the trash.", POOL_NS),
            |s| s.clones as i64,
        ),
        (
            Family::sampled(
                "ceph_rbd_pool_watched_images",
                "Images with at least one watcher.",
                POOL_NS,
            ),
            |s| s.watched_images as i64,
        ),
        (
            Family::sampled("ceph_rbd_pool_watchers", "Watchers of all images.", POOL_NS),
            |s| s.watchers as i64,
        ),
        (
            Family::sampled(
                "ceph_rbd_pool_orphaned_watchers",
                "Watchers believed orphaned.",
                POOL_NS,
            ),
            |s| s.orphaned_watchers as i64,
        ),
        (
            Family::sampled(
                "ceph_rbd_pool_stale_locks",
                "Locks whose holder no longer watches the image.",
                POOL_NS,
            ),
            |s| s.stale_locks as i64,
        ),
        (
            Family::sampled(
                "ceph_rbd_pool_protected_snapshots",
                "Protected snapshots.",
                POOL_NS,
            ),
            |s| s.protected_snapshots as i64,
        ),
        (
            Family::sampled(
                "ceph_rbd_pool_max_clone_depth",
                "Deepest clone chain of any image.",
                POOL_NS,
            ),
            |s| i64::from(s.max_clone_depth),
        ),
        (
            Family::sampled(
                "ceph_rbd_pool_flatten_pending_images",
                "Distinct images with at least one flatten reason.",
                POOL_NS,
            ),
            |s| s.flatten_pending_images as i64,
        ),
        (
            Family::sampled(
                "ceph_rbd_pool_trash_images",
                "Images in the trash.",
                POOL_NS,
            ),
            |s| s.trash_images as i64,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::fixtures::*;
    use crate::analysis::{ImageStateClassifier, Judges, Settings, analyse_with};
    use crate::first_seen::FirstSeen;
    use crate::model::*;
    use crate::status::SourceHealth;

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

    #[test]
    fn web_info_only_with_an_external_url() {
        let with = render(
            None,
            None,
            &golden_status(),
            &RenderOptions {
                external_url: Some("https://x.example.com/a\"b".into()),
                ..Default::default()
            },
        );
        assert!(
            with.contains(
                "ceph_rbd_exporter_web_info{external_url=\"https://x.example.com/a\\\"b\"} 1\n"
            ),
            "{with}"
        );
        let without = render(None, None, &golden_status(), &RenderOptions::default());
        assert!(!without.contains("web_info"), "{without}");
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
            header_reads: HeaderReads {
                full: 7,
                light: 93,
                changed: 2,
                snapshots: 1,
            },
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
                external_url: None,
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

    /// What the `prometheus` crate's registry and `TextEncoder` write for
    /// these series of a gauge (`set`, or the first-seen rule) or a
    /// counter (`inc_by`), labels declared as `zeta, alpha, mid`.
    fn reference(rows: &[([String; 3], f64)], merge: Merge) -> String {
        use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};
        let opts = || Opts::new("fam", HELP);
        let labels = &["zeta", "alpha", "mid"];
        let registry = Registry::new();
        if merge == Merge::Sum {
            let c = IntCounterVec::new(opts(), labels).unwrap();
            for (l, v) in rows {
                c.with_label_values(l).inc_by(*v as u64);
            }
            registry.register(Box::new(c)).unwrap();
        } else {
            let g = GaugeVec::new(opts(), labels).unwrap();
            for (l, v) in rows {
                let g = g.with_label_values(l);
                if merge == Merge::Last || g.get() == 0.0 || *v < g.get() {
                    g.set(*v);
                }
            }
            registry.register(Box::new(g)).unwrap();
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    const HELP: &str = "help \\ with\nnewline \"q\"";

    fn ours(rows: &[([String; 3], f64)], merge: Merge) -> String {
        let mut f = Family::new("fam", HELP.into(), ["zeta", "alpha", "mid"]).merging(merge);
        if merge == Merge::Sum {
            f = f.counter();
        }
        for (l, v) in rows {
            f.push([&l[0], &l[1], &l[2]], *v);
        }
        let mut out = String::new();
        Box::new(f).encode(&mut out);
        out
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        /// The text writer matches the `prometheus` crate's: order,
        /// escaping, number format, and how repeated label sets combine.
        #[test]
        fn family_text_matches_the_prometheus_crate(
            rows in proptest::collection::vec(
                (
                    proptest::array::uniform3("[ab\\\\\"\nüz]{0,3}"),
                    proptest::prop_oneof![
                        proptest::num::f64::NORMAL,
                        (0u32..5).prop_map(f64::from),
                        (0u64..4_000_000_000).prop_map(|t| t as f64 / 2.0),
                    ],
                ),
                0..40,
            ),
            merge in proptest::prop_oneof![
                proptest::strategy::Just(Merge::Last),
                proptest::strategy::Just(Merge::Sum),
                proptest::strategy::Just(Merge::Earliest),
            ],
        ) {
            // A digit before each value: the crate hashes the values run
            // together, so ("", "ab") and ("a", "b") would be one series
            // there (not here).
            let rows: Vec<([String; 3], f64)> = rows
                .into_iter()
                .map(|(l, v)| {
                    let mut i = 0;
                    let l = l.map(|l| {
                        i += 1;
                        format!("{i}{l}")
                    });
                    (l, if merge == Merge::Sum { v.abs().floor() % 1e6 } else { v })
                })
                .collect();
            proptest::prop_assert_eq!(ours(&rows, merge), reference(&rows, merge));
        }
    }

    /// `images` images in 4 pools: every 5th attached (one watcher holding
    /// the exclusive lock), every 100th of those a zombie (`.deleted`, an
    /// orphan), every 20th a base with a protected snapshot and the next one
    /// its clone.
    fn large_sample(images: usize) -> Sample {
        let per_pool = images / 4;
        let pools = (0..4i64)
            .map(|p| {
                let mut imgs = Vec::with_capacity(per_pool);
                let mut base = String::new();
                for i in 0..per_pool {
                    let n = p as usize * per_pool + i;
                    let id = format!("{:014x}", 0x5f3a_0000_0000u64 + n as u64);
                    let name = if n % 500 == 0 {
                        format!("volume-{n:08}.deleted")
                    } else {
                        format!("volume-{n:08x}-4c1e-4a6b-9d2f-{:012x}", n * 7919)
                    };
                    let mut img = image(&id, &name);
                    if n % 5 == 0 {
                        let ip = format!("10.{p}.{}.{}", (n / 250) % 250, n % 250);
                        let client = 10_000 + n as u64;
                        img.watchers.push(watcher(client, &ip, n as u64));
                        img.locks.push(exclusive_lock(client, &ip, n as u64));
                    }
                    if n % 20 == 0 {
                        img.snapshots.push(snapshot(1, "base", true));
                        base = id.clone();
                    } else if n % 20 == 1 {
                        img.parent = crate::analysis::fixtures::parent(p, &base, 1);
                    }
                    imgs.push(img);
                }
                (
                    p,
                    ["volumes", "images", "vms", "backups"][p as usize],
                    vec![namespace("", imgs)],
                )
            })
            .collect();
        sample(pools)
    }

    /// Peak resident memory (VmHWM) and current (VmRSS), in bytes.
    fn rss() -> (u64, u64) {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// Sizes and times of the exposition of 100,000 images, to quote, not
    /// to assert: `cargo test --release --lib -- --ignored --exact
    /// metrics::tests::measure_large_exposition --nocapture`.
    #[test]
    #[ignore = "measurement; prints numbers, asserts none"]
    fn measure_large_exposition() {
        let images = 100_000;
        let s = large_sample(images);
        let a = crate::analysis::analyse(&s, &Settings::default());
        let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
        for all_images in [false, true] {
            let options = RenderOptions {
                all_images,
                sample_interval_seconds: 60.0,
                external_url: None,
            };
            // Reset the peak (Linux: clear_refs 5), so VmHWM is this render's.
            let _ = std::fs::write("/proc/self/clear_refs", "5");
            let (_, before) = rss();
            let t0 = std::time::Instant::now();
            let body = render(Some(&s), Some(&a), &ExporterStatus::default(), &options);
            let took = t0.elapsed();
            let (peak, _) = rss();
            if let Ok(dir) = std::env::var("MEASURE_DUMP_DIR") {
                std::fs::write(format!("{dir}/all-{all_images}.prom"), &body).unwrap();
            }
            println!(
                "{images} images, all_images={all_images}: body {:.2} MiB rendered in {:.0} ms, \
                 peak RSS during render +{:.1} MiB",
                mib(body.len()),
                took.as_secs_f64() * 1e3,
                mib(peak.saturating_sub(before) as usize),
            );
            let t0 = std::time::Instant::now();
            let z = crate::server::gzip(body.as_bytes());
            println!(
                "  gzip (level 1): {:.2} MiB ({:.1}% of the body) in {:.0} ms",
                mib(z.len()),
                100.0 * z.len() as f64 / body.len() as f64,
                t0.elapsed().as_secs_f64() * 1e3,
            );
        }
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
