//! Plain data for one sample of the cluster: what was read, before any analysis.
//!
//! Everything here is owned, cloneable and serialisable, so a sample can be
//! built by hand in unit tests, dumped as JSON (`ceph-rbd-exporter dump`) and
//! compared with what the `rbd` CLI says.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Pool id as Ceph numbers pools (`osd pool ls detail`).
pub type PoolId = i64;

/// Where an image lives: pool and RBD namespace (empty for the default one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    /// Pool id.
    pub pool_id: PoolId,
    /// RBD namespace; empty string for the default namespace.
    pub namespace: String,
}

/// Identifies one image in the cluster, independent of its (changeable) name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ImageKey {
    /// Pool id.
    pub pool_id: PoolId,
    /// RBD namespace; empty for the default namespace.
    pub namespace: String,
    /// The image id, the suffix of `rbd_header.<id>`.
    pub image_id: String,
}

/// One complete sample of every sampled pool.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// Unix time (seconds) the sample started.
    pub started_at: f64,
    /// Unix time (seconds) the sample finished.
    pub finished_at: f64,
    /// Names of every pool in the cluster, by id; used to name parents and
    /// children in pools that were not sampled.
    pub pool_names: BTreeMap<PoolId, String>,
    /// The sampled pools, by id.
    pub pools: BTreeMap<PoolId, PoolSample>,
    /// Ancestors of sampled clones that live outside the sampled pools
    /// (e.g. Glance images when only `--pools volumes` is sampled). Used to
    /// follow clone chains; not reported themselves.
    #[serde(skip)]
    pub ancestors: BTreeMap<ImageKey, Image>,
    /// How the images' headers were read.
    #[serde(skip)]
    pub reads: HeaderReads,
}

/// How a sample read the image headers: in full, or (for a header still
/// at the version last read) only its watchers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HeaderReads {
    /// Full header reads (new images, changed headers, images due for
    /// their periodic full read, and every image without a previous
    /// sample).
    pub full: u64,
    /// Light reads (the watchers, if the header had not changed).
    pub light: u64,
    /// Light reads that found the header changed (then read in full,
    /// so also counted in `full`).
    pub changed: u64,
    /// Snapshot reads (only with a full header read of an image with
    /// snapshots).
    pub snapshots: u64,
}

/// What one pool gave, or why it gave nothing.
#[derive(Debug, Clone, Serialize)]
pub struct PoolSample {
    /// Pool id.
    pub pool_id: PoolId,
    /// Pool name.
    pub name: String,
    /// Seconds it took to sample this pool.
    pub duration_seconds: f64,
    /// The pool's namespaces (the default one as ""), or the error that
    /// stopped this pool's sample.
    pub outcome: Result<Vec<NamespaceSample>, SampleError>,
    /// What was left out of an otherwise good sample (an image whose read
    /// failed in part or did not decode, an omap entry that did not
    /// decode), each counted as a sample error.
    pub skipped: Vec<Skipped>,
    /// The rbd-mirror daemons seen in this pool: the watchers of its
    /// `rbd_mirror_leader` object (the daemons replaying into it), and of
    /// its `rbd_mirroring` object (the same daemons, and on a primary site
    /// the peer connections of the remote daemons replaying from it), one
    /// entry per address; empty when the pool is not mirrored.
    pub mirror_daemons: Vec<Watcher>,
}

/// One thing left out of an otherwise good pool sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The RBD namespace it was in; empty for the default namespace.
    pub namespace: String,
    /// The image it was about, when it names one (a header or snapshot
    /// read, an `rbd_directory` or `rbd_trash` entry); `None` for an
    /// `rbd_children` or `rbd_task` entry or the format 1 directory. The
    /// cycle keeps the previous facts of a skipped image.
    pub image_id: Option<String>,
    /// Why: its kind (`sample_errors_total{kind}`) and message.
    pub error: SampleError,
}

/// What one RBD namespace of a pool holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NamespaceSample {
    /// Namespace name; empty for the default namespace.
    pub namespace: String,
    /// Images listed in `rbd_directory` or `rbd_trash`, by image id.
    /// Shared: an image whose header, watchers, name and trash state did
    /// not change since the previous sample is that sample's very image
    /// (an incremental sample copies nothing of it).
    pub images: BTreeMap<String, Arc<Image>>,
    /// Entries of `rbd_trash`, by image id.
    pub trash: BTreeMap<String, TrashEntry>,
    /// Version 1 clone links from `rbd_children`: the parent snapshot, and the
    /// ids of its children in this pool and namespace.
    pub v1_children: Vec<V1ChildLink>,
    /// Tasks queued by the mgr's rbd_support module in `rbd_task`.
    pub tasks: Vec<QueuedTask>,
    /// Names of format 1 images (listed in the data of `rbd_directory`,
    /// header `<name>.rbd`): counted and named, not sampled.
    pub format1_images: Vec<String>,
}

/// A sample failure, kept as data so it can be rendered and counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SampleError {
    /// Short, stable label for `sample_errors_total{kind}`.
    pub kind: String,
    /// Human-readable detail.
    pub message: String,
}

/// One image: its header facts plus its name and trash state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Image {
    /// Image id (`rbd_header.<id>`).
    pub id: String,
    /// Image name; for a trashed image, its name before it was trashed.
    pub name: String,
    /// True when the image is in the trash.
    pub in_trash: bool,
    /// Provisioned size in bytes.
    pub size: u64,
    /// Object size order (object size is 2^order bytes).
    pub order: u8,
    /// Feature bits (RBD_FEATURE_*).
    pub features: u64,
    /// Image flags (RBD_FLAG_*).
    pub flags: u64,
    /// Operation feature bits (RBD_OPERATION_FEATURE_*), e.g. clone-child.
    pub op_features: u64,
    /// The parent, for a clone.
    pub parent: Option<ParentRef>,
    /// Clients watching `rbd_header.<id>`.
    pub watchers: Vec<Watcher>,
    /// Holders of the `rbd_lock` lock: the exclusive-lock owner and advisory
    /// locks.
    pub locks: Vec<Lock>,
    /// Snapshots, in snapshot-id order.
    pub snapshots: Vec<Snapshot>,
    /// The version of `rbd_header.<id>` its facts were read at (0 when
    /// unknown): the next sample reads only the watchers while the header
    /// stays at it (`crate::sampler`).
    #[serde(skip)]
    pub header_version: u64,
}

impl Image {
    /// The parent the image's head reads through. `None` for an image that
    /// is no clone, and for a clone flattened while it had snapshots
    /// (without deep-flatten): its header still names the parent, which its
    /// snapshots pin, but its head has no parent overlap left, and librbd
    /// (`rbd info`, `rbd flatten`) treats it as having no parent.
    pub fn head_parent(&self) -> Option<&ParentRef> {
        self.parent
            .as_ref()
            .filter(|p| p.overlap.is_some_and(|o| o > 0))
    }

    /// True for a clone flattened while it had snapshots: only its
    /// snapshots still pin the parent snapshot, so removing them (not
    /// flattening, which fails) frees the parent.
    pub fn pins_parent_by_snapshots_only(&self) -> bool {
        self.parent.is_some() && self.head_parent().is_none()
    }
}

/// A clone's parent as the child's header names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParentRef {
    /// Parent pool id.
    pub pool_id: PoolId,
    /// Parent RBD namespace.
    pub namespace: String,
    /// Parent image id.
    pub image_id: String,
    /// Parent snapshot id.
    pub snap_id: u64,
    /// Bytes of the parent the clone's head still reads through; `None`
    /// when the head has no parent overlap (flattened while it had
    /// snapshots, see [`Image::head_parent`]).
    pub overlap: Option<u64>,
}

impl ParentRef {
    /// The parent image's key.
    pub fn image_key(&self) -> ImageKey {
        ImageKey {
            pool_id: self.pool_id,
            namespace: self.namespace.clone(),
            image_id: self.image_id.clone(),
        }
    }
}

/// One watch on an image header.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Watcher {
    /// Client entity, e.g. `client.4123`.
    pub client: String,
    /// Client address as Ceph prints it, e.g. `10.0.0.5:0/3412345`.
    pub address: String,
    /// Watch cookie; an exclusive lock's cookie is `auto <this>`.
    pub cookie: u64,
}

impl Watcher {
    /// The IP part of the address, without port and nonce.
    pub fn ip(&self) -> &str {
        address_ip(&self.address)
    }
}

/// The IP part of a Ceph entity address such as `v1:10.0.0.5:0/123`,
/// `10.0.0.5:0/123` or `[::1]:0/123`.
pub fn address_ip(address: &str) -> &str {
    let a = address
        .strip_prefix("v1:")
        .or_else(|| address.strip_prefix("v2:"))
        .or_else(|| address.strip_prefix("any:"))
        .unwrap_or(address);
    let a = a.split('/').next().unwrap_or(a);
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match a.rfind(':') {
        Some(i) => &a[..i],
        None => a,
    }
}

/// Which kind of lock this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// Held by librbd's exclusive-lock feature (tag `internal`, cookie `auto <watch cookie>`).
    Exclusive,
    /// Taken by hand (`rbd lock add`) or by an orchestrator.
    Advisory,
}

/// One holder of the image's `rbd_lock`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Lock {
    /// Exclusive-lock owner or advisory lock.
    pub kind: LockKind,
    /// Locker entity, e.g. `client.4123`.
    pub locker: String,
    /// Lock cookie.
    pub cookie: String,
    /// Locker address, as Ceph prints it.
    pub address: String,
    /// True for a shared lock (`rbd lock add --shared TAG`).
    pub shared: bool,
    /// The lock tag.
    pub tag: String,
}

impl Lock {
    /// The watch cookie an exclusive lock's `auto <N>` cookie names.
    pub fn watch_cookie(&self) -> Option<u64> {
        self.cookie.strip_prefix("auto ")?.trim().parse().ok()
    }
}

/// The namespace a snapshot lives in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum SnapshotNamespace {
    /// An ordinary snapshot.
    User,
    /// Part of a group snapshot.
    Group,
    /// Removed while clone v2 children still use it.
    Trash {
        /// The name it had before it was trashed.
        original_name: String,
    },
    /// A mirroring snapshot.
    Mirror,
    /// A namespace type this exporter does not know.
    Unknown {
        /// The raw type number.
        code: u32,
    },
}

/// One snapshot of an image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Snapshot id.
    pub id: u64,
    /// Snapshot name (for a trashed snapshot, the generated trash name).
    pub name: String,
    /// Snapshot namespace.
    pub namespace: SnapshotNamespace,
    /// True when protected (`rbd snap protect`).
    pub protected: bool,
    /// Image size at the snapshot.
    pub size: u64,
    /// Clone v2 children, from the snapshot's child list.
    pub v2_children: Vec<ChildRef>,
}

impl Snapshot {
    /// True when the snapshot is in the trash namespace.
    pub fn is_trashed(&self) -> bool {
        matches!(self.namespace, SnapshotNamespace::Trash { .. })
    }
}

/// A child clone, as a parent's snapshot or `rbd_children` names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ChildRef {
    /// Child pool id.
    pub pool_id: PoolId,
    /// Child RBD namespace.
    pub namespace: String,
    /// Child image id.
    pub image_id: String,
}

impl ChildRef {
    /// The child image's key.
    pub fn image_key(&self) -> ImageKey {
        ImageKey {
            pool_id: self.pool_id,
            namespace: self.namespace.clone(),
            image_id: self.image_id.clone(),
        }
    }
}

/// One `rbd_children` entry: v1 clones in this pool of one parent snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct V1ChildLink {
    /// Parent pool id.
    pub parent_pool_id: PoolId,
    /// Parent image id.
    pub parent_image_id: String,
    /// Parent snapshot id.
    pub parent_snap_id: u64,
    /// Child image ids in the pool that holds this `rbd_children`.
    pub child_image_ids: Vec<String>,
}

/// One `rbd_trash` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrashEntry {
    /// Image id.
    pub id: String,
    /// Name before it was trashed.
    pub name: String,
    /// What moved it: `user`, `mirroring`, `migration`, `removing` or a number.
    pub source: String,
    /// Unix seconds it was trashed.
    pub deletion_time: u64,
    /// Unix seconds before which it may not be purged.
    pub deferment_end_time: u64,
    /// What Ceph is doing with it: `normal`, or `moving`, `removing`,
    /// `restoring` while `rbd trash mv`/`rm`/`restore` (or the mgr's `trash
    /// remove` task) works on it; a number for a state this exporter does
    /// not know.
    pub state: String,
}

/// A task queued in `rbd_task` by the mgr's rbd_support module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedTask {
    /// Task id (a UUID).
    pub id: String,
    /// Action: `flatten`, `remove`, `trash remove`, `migrate execute`, ...
    pub action: String,
    /// Image id the task refers to, when it names one.
    pub image_id: Option<String>,
    /// Image name the task refers to, when it names one.
    pub image_name: Option<String>,
}

/// One sampled image and where it lives, as [`Sample::images`] yields it.
#[derive(Debug, Clone, Copy)]
pub struct SampledImage<'a> {
    /// Its pool.
    pub pool: &'a PoolSample,
    /// Its RBD namespace.
    pub namespace: &'a NamespaceSample,
    /// The image.
    pub image: &'a Image,
}

impl SampledImage<'_> {
    /// The image's key.
    pub fn key(&self) -> ImageKey {
        ImageKey {
            pool_id: self.pool.pool_id,
            namespace: self.namespace.namespace.clone(),
            image_id: self.image.id.clone(),
        }
    }
}

impl Sample {
    /// Iterates over every successfully sampled namespace, with its pool.
    pub fn namespaces(&self) -> impl Iterator<Item = (&PoolSample, &NamespaceSample)> {
        self.pools.values().flat_map(|p| {
            p.outcome
                .as_ref()
                .map(|nss| nss.iter().map(move |ns| (p, ns)).collect::<Vec<_>>())
                .unwrap_or_default()
        })
    }

    /// Iterates over every image of every successfully sampled namespace
    /// (trashed ones included; ancestors outside the sampled pools not).
    pub fn images(&self) -> impl Iterator<Item = SampledImage<'_>> {
        self.namespaces().flat_map(|(pool, namespace)| {
            namespace.images.values().map(move |image| SampledImage {
                pool,
                namespace,
                image,
            })
        })
    }

    /// Looks up an image anywhere in the sample, ancestors included.
    pub fn image(&self, key: &ImageKey) -> Option<&Image> {
        self.sampled_image(key).or_else(|| self.ancestors.get(key))
    }

    fn sampled_image(&self, key: &ImageKey) -> Option<&Image> {
        self.namespace_images(key.pool_id, &key.namespace)?
            .get(&key.image_id)
            .map(|i| &**i)
    }

    /// The images of one sampled pool and namespace, if that pool's sample
    /// was good.
    pub fn namespace_images(
        &self,
        pool_id: PoolId,
        namespace: &str,
    ) -> Option<&BTreeMap<String, Arc<Image>>> {
        let namespaces = self.pools.get(&pool_id)?.outcome.as_ref().ok()?;
        let ns = namespaces.iter().find(|n| n.namespace == namespace)?;
        Some(&ns.images)
    }

    /// Parents named by sampled images or known ancestors that are in
    /// neither.
    pub fn missing_parents(&self) -> Vec<ImageKey> {
        let mut missing: Vec<ImageKey> = self
            .images()
            .map(|s| s.image)
            .chain(self.ancestors.values())
            .filter_map(|i| i.parent.as_ref().map(ParentRef::image_key))
            .filter(|k| self.image(k).is_none())
            .collect();
        missing.sort();
        missing.dedup();
        missing
    }

    /// Pool name for an id, or the id as text if the pool is unknown.
    pub fn pool_name(&self, id: PoolId) -> String {
        self.pool_names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_ip_handles_ceph_address_forms() {
        assert_eq!(address_ip("10.0.0.5:0/3412345"), "10.0.0.5");
        assert_eq!(address_ip("v1:10.0.0.5:0/3412345"), "10.0.0.5");
        assert_eq!(address_ip("[::1]:0/77"), "::1");
        assert_eq!(address_ip("weird"), "weird");
    }

    #[test]
    fn exclusive_lock_cookie_names_watch_cookie() {
        let lock = Lock {
            kind: LockKind::Exclusive,
            locker: "client.1".into(),
            cookie: "auto 94505488011264".into(),
            address: "127.0.0.1:0/1".into(),
            shared: false,
            tag: "internal".into(),
        };
        assert_eq!(lock.watch_cookie(), Some(94505488011264));
    }
}
