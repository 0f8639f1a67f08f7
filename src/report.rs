//! A flat, name-resolved view of a sample and its analysis, for
//! `ceph-rbd-exporter dump` and for comparing with the `rbd` CLI.

use crate::analysis::{Analysis, CloneDepth, FlattenReason, HostLookup, OrphanReason};
use crate::model::{ImageKey, LockKind, Sample, SnapshotNamespace};
use serde::Serialize;

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

/// Builds the report of every image in the sample; `hosts` names the
/// lockers' hosts (watchers' hosts come from the analysis).
pub fn images(sample: &Sample, analysis: &Analysis, hosts: &dyn HostLookup) -> Vec<ImageReport> {
    let mut out = Vec::new();
    for (pool, ns) in sample.namespaces() {
        for image in ns.images.values() {
            let key = ImageKey {
                pool_id: pool.pool_id,
                namespace: ns.namespace.clone(),
                image_id: image.id.clone(),
            };
            let Some(findings) = analysis.images.get(&key) else {
                continue;
            };
            let parent = image.parent.as_ref().map(|p| {
                let parent_image = sample.image(&p.image_key());
                let snap =
                    parent_image.and_then(|pi| pi.snapshots.iter().find(|s| s.id == p.snap_id));
                ParentReport {
                    pool: sample.pool_name(p.pool_id),
                    namespace: p.namespace.clone(),
                    image: parent_image.map(|i| i.name.clone()),
                    image_id: p.image_id.clone(),
                    snapshot: snap.map(|s| s.name.clone()),
                    snap_id: p.snap_id,
                    snapshot_trashed: snap.is_some_and(|s| s.is_trashed()),
                    image_trashed: parent_image.is_some_and(|i| i.in_trash),
                    overlap: p.overlap,
                }
            });
            let watchers = image
                .watchers
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let host = findings.watcher_hosts.get(i).and_then(|h| h.as_ref());
                    WatcherReport {
                        client: w.client.clone(),
                        address: w.address.clone(),
                        cookie: w.cookie,
                        host: host.map(|h| h.name.clone()),
                        role: host.and_then(|h| h.role.clone()),
                        orphan_reason: findings
                            .orphaned_watchers
                            .iter()
                            .find(|(o, _)| o == w)
                            .map(|(_, r)| *r),
                    }
                })
                .collect();
            let locks = image
                .locks
                .iter()
                .map(|l| LockReport {
                    kind: l.kind,
                    locker: l.locker.clone(),
                    cookie: l.cookie.clone(),
                    address: l.address.clone(),
                    host: hosts
                        .host(crate::model::address_ip(&l.address))
                        .map(|h| h.name),
                    shared: l.shared,
                    tag: l.tag.clone(),
                    stale: findings.stale_locks.contains(l),
                })
                .collect();
            let snapshots = image
                .snapshots
                .iter()
                .map(|s| SnapshotReport {
                    id: s.id,
                    name: s.name.clone(),
                    namespace: s.namespace.clone(),
                    protected: s.protected,
                    children: analysis.children_of(&key, s),
                    v2_children: s
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
                })
                .collect();
            out.push(ImageReport {
                pool: pool.name.clone(),
                namespace: ns.namespace.clone(),
                image: image.name.clone(),
                id: image.id.clone(),
                in_trash: image.in_trash,
                size: image.size,
                order: image.order,
                features: image.features,
                op_features: image.op_features,
                flags: image.flags,
                parent,
                clone_depth: findings.clone_depth,
                flatten_reasons: findings.flatten_reasons.iter().copied().collect(),
                watchers,
                locks,
                snapshots,
            });
        }
    }
    out
}
