//! `ceph-rbd-exporter dump`: every image of the shared view
//! ([`crate::view`]) as flat JSON, with ids and raw header fields, for
//! scripts and for comparing with the `rbd` CLI.

use crate::analysis::{CloneDepth, FlattenReason, LockFinding, OrphanReason, WatcherFinding};
use crate::model::{LockKind, Sample, SnapshotNamespace};
use crate::view::{ImageView, ParentLink, SnapshotView};
use serde::{Serialize, Serializer};

/// Everything known about one image, with names instead of ids.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// Pool name.
    pub pool: String,
    /// RBD namespace ("" for the default one).
    pub namespace: String,
    /// Image name (for a trashed image, its name before trashing).
    pub image: String,
    /// Image id.
    pub id: String,
    /// True if in the trash.
    pub in_trash: bool,
    /// Size in bytes.
    pub size: u64,
    /// Object size order.
    pub order: u8,
    /// Feature bits.
    pub features: u64,
    /// Operation feature bits.
    pub op_features: u64,
    /// Image flags.
    pub flags: u64,
    /// The parent of a clone.
    pub parent: Option<ParentReport>,
    /// Clone depth.
    pub clone_depth: CloneDepth,
    /// Why it should be flattened.
    pub flatten_reasons: Vec<FlattenReason>,
    /// Watchers.
    pub watchers: Vec<WatcherReport>,
    /// Locks.
    pub locks: Vec<LockReport>,
    /// Snapshots.
    pub snapshots: Vec<SnapshotReport>,
}

/// A clone's parent, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct ParentReport {
    /// Parent pool name.
    pub pool: String,
    /// Parent namespace.
    pub namespace: String,
    /// Parent image name, if the parent was sampled.
    pub image: Option<String>,
    /// Parent image id.
    pub image_id: String,
    /// Parent snapshot name, if known.
    pub snapshot: Option<String>,
    /// Parent snapshot id.
    pub snap_id: u64,
    /// True if the parent snapshot is in the trash namespace.
    pub snapshot_trashed: bool,
    /// True if the parent image is in the trash.
    pub image_trashed: bool,
    /// Parent overlap in bytes.
    pub overlap: Option<u64>,
}

/// One watcher and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct WatcherReport {
    /// Client entity.
    pub client: String,
    /// Client address.
    pub address: String,
    /// Watch cookie.
    pub cookie: u64,
    /// The host the address belongs to, if known.
    pub host: Option<String>,
    /// The host's role from the inventory, if known.
    pub role: Option<String>,
    /// Why it is an orphan, if it is.
    pub orphan_reason: Option<OrphanReason>,
}

/// One lock and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct LockReport {
    /// Exclusive-lock owner or advisory.
    pub kind: LockKind,
    /// Locker entity.
    pub locker: String,
    /// Cookie.
    pub cookie: String,
    /// Locker address.
    pub address: String,
    /// The host the locker's address belongs to, if known.
    pub host: Option<String>,
    /// Shared lock.
    pub shared: bool,
    /// Lock tag.
    pub tag: String,
    /// True if its holder no longer watches the image.
    pub stale: bool,
}

/// One snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    /// Snapshot id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: SnapshotNamespace,
    /// Protected.
    pub protected: bool,
    /// Children, v1 and v2, in any pool.
    pub children: u64,
    /// Clone v2 children as `pool/namespace/image-id`.
    pub v2_children: Vec<String>,
}

impl ImageReport {
    /// The dump of one image.
    pub fn new(view: &ImageView<'_>, sample: &Sample) -> ImageReport {
        let image = view.image;
        ImageReport {
            pool: view.pool.clone(),
            namespace: view.key.namespace.clone(),
            image: image.name.clone(),
            id: image.id.clone(),
            in_trash: image.in_trash,
            size: image.size,
            order: image.order,
            features: image.features,
            op_features: image.op_features,
            flags: image.flags,
            parent: view.parents.first().map(ParentReport::new),
            clone_depth: view.findings.clone_depth,
            flatten_reasons: view.findings.flatten_reasons.iter().copied().collect(),
            watchers: view
                .findings
                .watchers
                .iter()
                .map(WatcherReport::new)
                .collect(),
            locks: view.findings.locks.iter().map(LockReport::new).collect(),
            snapshots: view
                .snapshots
                .iter()
                .map(|s| SnapshotReport::new(s, sample))
                .collect(),
        }
    }
}

impl ParentReport {
    fn new(link: &ParentLink<'_>) -> ParentReport {
        let p = link.parent;
        ParentReport {
            pool: link.pool.clone(),
            namespace: p.namespace.clone(),
            image: link.image_name(),
            image_id: p.image_id.clone(),
            snapshot: link.snapshot.map(|s| s.name.clone()),
            snap_id: p.snap_id,
            snapshot_trashed: link.snapshot_trashed(),
            image_trashed: link.image_trashed(),
            overlap: p.overlap,
        }
    }
}

impl WatcherReport {
    fn new(w: &WatcherFinding) -> WatcherReport {
        WatcherReport {
            client: w.watcher.client.clone(),
            address: w.watcher.address.clone(),
            cookie: w.watcher.cookie,
            host: w.host.as_ref().map(|h| h.name.clone()),
            role: w.host.as_ref().and_then(|h| h.role.clone()),
            orphan_reason: w.orphan_reason(),
        }
    }
}

impl LockReport {
    fn new(l: &LockFinding) -> LockReport {
        LockReport {
            kind: l.lock.kind,
            locker: l.lock.locker.clone(),
            cookie: l.lock.cookie.clone(),
            address: l.lock.address.clone(),
            host: l.host.as_ref().map(|h| h.name.clone()),
            shared: l.lock.shared,
            tag: l.lock.tag.clone(),
            stale: l.stale,
        }
    }
}

impl SnapshotReport {
    fn new(s: &SnapshotView<'_>, sample: &Sample) -> SnapshotReport {
        let snap = s.snapshot;
        SnapshotReport {
            id: snap.id,
            name: snap.name.clone(),
            namespace: snap.namespace.clone(),
            protected: snap.protected,
            children: s.children.len() as u64,
            v2_children: snap
                .v2_children
                .iter()
                .map(|c| {
                    format!(
                        "{}/{}/{}",
                        sample.pool_name(c.pool_id),
                        c.namespace,
                        c.image_id
                    )
                })
                .collect(),
        }
    }
}

/// The dump of every image in the sample.
pub fn images(sample: &Sample, analysis: &crate::analysis::Analysis) -> Vec<ImageReport> {
    crate::view::images(sample, analysis)
        .map(|v| ImageReport::new(&v, sample))
        .collect()
}

/// The dump of every image as a JSON array, each image made only when it
/// is serialised: the same text as [`images`]' without holding every
/// report at once.
struct Images<'a> {
    sample: &'a Sample,
    analysis: &'a crate::analysis::Analysis,
}

impl Serialize for Images<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            crate::view::images(self.sample, self.analysis)
                .map(|v| ImageReport::new(&v, self.sample)),
        )
    }
}

/// Writes the dump of every image to `out` as pretty JSON and a newline,
/// image by image (what `println!` of [`images`]' pretty JSON printed).
pub fn write_images<W: std::io::Write>(
    mut out: W,
    sample: &Sample,
    analysis: &crate::analysis::Analysis,
) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut out, &Images { sample, analysis })?;
    out.write_all(b"\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::fixtures::*;
    use crate::analysis::{Settings, analyse};
    use crate::model::*;

    #[test]
    fn the_streamed_dump_is_the_pretty_json_of_every_image() {
        let mut base = image("g1", "base");
        let mut snap = snapshot(4, "snap", true);
        snap.v2_children = vec![ChildRef {
            pool_id: 2,
            namespace: String::new(),
            image_id: "c1".into(),
        }];
        base.snapshots.push(snap);
        let mut clone = image("c1", "clone \"q\"\n");
        clone.parent = parent(1, "g1", 4);
        clone.watchers.push(watcher(4123, "10.0.0.5", 7));
        clone.locks.push(exclusive_lock(4123, "10.0.0.5", 7));
        let mut zombie = image("z1", "volume-zombie.deleted");
        zombie.watchers.push(watcher(4200, "10.0.0.6", 8));
        for s in [
            sample(vec![]),
            sample(vec![(1, "images", vec![namespace("", vec![])])]),
            sample(vec![
                (1, "images", vec![namespace("", vec![base])]),
                (
                    2,
                    "volumes",
                    vec![
                        namespace("", vec![clone, zombie]),
                        namespace("tenant", vec![image("t1", "t")]),
                    ],
                ),
            ]),
        ] {
            let a = analyse(&s, &Settings::default());
            let mut streamed = Vec::new();
            write_images(&mut streamed, &s, &a).unwrap();
            let printed = format!(
                "{}\n",
                serde_json::to_string_pretty(&images(&s, &a)).unwrap()
            );
            assert_eq!(String::from_utf8(streamed).unwrap(), printed);
        }
    }
}
