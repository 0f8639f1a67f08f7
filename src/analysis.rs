//! Analyse: pure functions from a [`Sample`] to findings. Clone depth,
//! flatten reasons, one record per watcher (its host and verdict) and per
//! lock (its host and staleness), snapshot children and per-namespace
//! totals. No I/O and no state: what earlier samples taught (first-seen
//! times) and who the addresses belong to come in as [`Judges`].

use crate::first_seen::{FirstSeenTimes, WatcherKey};
use crate::model::{
    ChildRef, Image, ImageKey, Lock, LockKind, NamespaceSample, PoolId, Sample, SampledImage,
    Snapshot, TrashEntry, Watcher, address_ip,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Settings that change verdicts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Clone depth above which a clone should be flattened (Cinder's
    /// `rbd_max_clone_depth`, default 5).
    pub clone_depth_max: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { clone_depth_max: 5 }
    }
}

/// Why a clone should be flattened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlattenReason {
    /// Clone v2 whose parent snapshot is in the trash namespace.
    ParentSnapshotTrashed,
    /// The parent image is in the trash.
    ParentImageTrashed,
    /// The parent's name ends in `.deleted` (Cinder's deferred delete).
    ParentDeleted,
    /// Deeper than `--clone-depth.max`.
    CloneDepthExceeded,
    /// A flatten task for it is queued in `rbd_task`.
    FlattenQueued,
}

impl FlattenReason {
    /// Every reason, in label order.
    pub const ALL: [FlattenReason; 5] = [
        FlattenReason::ParentSnapshotTrashed,
        FlattenReason::ParentImageTrashed,
        FlattenReason::ParentDeleted,
        FlattenReason::CloneDepthExceeded,
        FlattenReason::FlattenQueued,
    ];

    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            FlattenReason::ParentSnapshotTrashed => "parent_snapshot_trashed",
            FlattenReason::ParentImageTrashed => "parent_image_trashed",
            FlattenReason::ParentDeleted => "parent_deleted",
            FlattenReason::CloneDepthExceeded => "clone_depth_exceeded",
            FlattenReason::FlattenQueued => "flatten_queued",
        }
    }
}

/// Why a watcher is believed to be an orphan. Sources other than the cluster
/// itself (host inventory, OpenStack, Kubernetes) add variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanReason {
    /// The image is named `*.deleted`: its user deleted it, yet it is open.
    ImageDeleted,
    /// The image is in the trash, yet it is open.
    ImageTrashed,
    /// An attachment source says the image is attached nowhere, yet it is
    /// open.
    Detached,
    /// The image is attached to other hosts than the watcher's.
    UnexpectedHost,
    /// A Nova disk (`<instance-uuid>_disk*`) whose instance no longer exists.
    DeletedInstance,
    /// The watcher's address is outside every client network of the
    /// inventory.
    UnknownClient,
}

impl OrphanReason {
    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            OrphanReason::ImageDeleted => "image_deleted",
            OrphanReason::ImageTrashed => "image_trashed",
            OrphanReason::Detached => "detached",
            OrphanReason::UnexpectedHost => "unexpected_host",
            OrphanReason::DeletedInstance => "deleted_instance",
            OrphanReason::UnknownClient => "unknown_client",
        }
    }
}

/// What a classifier sees of one watcher.
#[derive(Debug, Clone, Copy)]
pub struct WatcherContext<'a> {
    /// Pool name.
    pub pool: &'a str,
    /// RBD namespace.
    pub namespace: &'a str,
    /// The watched image.
    pub image: &'a Image,
    /// The watcher.
    pub watcher: &'a Watcher,
    /// The host the watcher's address belongs to, if known.
    pub host: Option<&'a Host>,
    /// The image's `rbd_trash` entry, when it is in the trash.
    pub trash: Option<&'a TrashEntry>,
}

/// A host a client address was attributed to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Host {
    /// Host name (inventory name, Kubernetes node name, or reverse DNS).
    pub name: String,
    /// Role from the inventory (`compute`, `rbd-mirror`, ...); `None` for
    /// a host named by an attachment source or by reverse DNS.
    pub role: Option<String>,
    /// Where the attribution came from: `inventory`, a source name, or
    /// `reverse_dns`.
    pub via: &'static str,
}

/// Attributes client addresses to hosts.
pub trait HostLookup: Send + Sync {
    /// The host behind an IP (as [`Watcher::ip`] gives it), if known.
    fn host(&self, ip: &str) -> Option<Host>;
}

/// Knows no hosts.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHosts;

impl HostLookup for NoHosts {
    fn host(&self, _ip: &str) -> Option<Host> {
        None
    }
}

/// A classifier's verdict on one watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// An orphan, for this reason.
    Orphan(OrphanReason),
    /// Legitimate whatever later classifiers would say (e.g. rbd-mirror).
    Legitimate,
}

/// One source of orphan verdicts. Classifiers are asked in order and the
/// first verdict wins, so each watcher has at most one reason.
pub trait OrphanClassifier: Send + Sync {
    /// This source's verdict, if it has one.
    fn classify(&self, ctx: &WatcherContext<'_>) -> Option<Verdict>;
}

/// Verdicts from the image itself: deleted or trashed images should have no
/// clients.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageStateClassifier;

impl OrphanClassifier for ImageStateClassifier {
    fn classify(&self, ctx: &WatcherContext<'_>) -> Option<Verdict> {
        if ctx.image.in_trash {
            // `rbd trash rm` and the mgr's `trash remove` task mark the
            // entry `removing` and hold a watch while they delete it
            // (`moving`, `restoring` likewise): Ceph's own work.
            if ctx.trash.is_some_and(|t| t.state != TRASH_STATE_NORMAL) {
                return Some(Verdict::Legitimate);
            }
            match ctx.trash.map(|t| t.source.as_str()) {
                // Ceph itself is working on it: `rbd rm` (which moves the
                // image to the trash first and then removes it holding a
                // watch and the lock), live migration, rbd-mirror's image
                // deleter. Their watches are not orphans.
                Some(TRASH_SOURCE_REMOVING | TRASH_SOURCE_MIGRATION | TRASH_SOURCE_MIRRORING) => {
                    Some(Verdict::Legitimate)
                }
                _ => Some(Verdict::Orphan(OrphanReason::ImageTrashed)),
            }
        } else if is_deleted_name(&ctx.image.name) {
            Some(Verdict::Orphan(OrphanReason::ImageDeleted))
        } else {
            None
        }
    }
}

/// Trash state of an entry nothing is working on.
pub const TRASH_STATE_NORMAL: &str = "normal";
/// Trash source of an image `rbd rm` is removing.
pub const TRASH_SOURCE_REMOVING: &str = "removing";
/// Trash source of a live migration's source image.
pub const TRASH_SOURCE_MIGRATION: &str = "migration";
/// Trash source of an image rbd-mirror's deleter is removing.
pub const TRASH_SOURCE_MIRRORING: &str = "mirroring";

/// Cinder renames a volume that still has clones to `<name>.deleted`.
pub fn is_deleted_name(name: &str) -> bool {
    name.ends_with(".deleted")
}

/// Clone depth of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CloneDepth {
    /// Number of ancestors found.
    pub depth: u32,
    /// False when the chain ends at a parent that was not sampled (deleted,
    /// or in a pool that is not sampled) or loops back on itself.
    pub complete: bool,
}

/// One watcher of an image, with everything concluded about it: the host
/// its address belongs to and the verdict travel together in this record.
#[derive(Debug, Clone, PartialEq)]
pub struct WatcherFinding {
    /// The watch, as the cluster listed it.
    pub watcher: Watcher,
    /// The host the watcher's address belongs to, if known.
    pub host: Option<Host>,
    /// Legitimate, or an orphan and why.
    pub verdict: Verdict,
    /// Unix time the exporter first saw this watch (the sample's start when
    /// it is new).
    pub first_seen: f64,
}

impl WatcherFinding {
    /// Why the watcher is believed orphaned; `None` when it is not.
    pub fn orphan_reason(&self) -> Option<OrphanReason> {
        match self.verdict {
            Verdict::Orphan(r) => Some(r),
            Verdict::Legitimate => None,
        }
    }

    /// The host's name, or `""` when the address could not be attributed.
    pub fn host_name(&self) -> &str {
        self.host.as_ref().map_or("", |h| h.name.as_str())
    }
}

/// One lock of an image, with the host of its locker and whether its
/// holder is gone.
#[derive(Debug, Clone, PartialEq)]
pub struct LockFinding {
    /// The lock, as the cluster listed it.
    pub lock: Lock,
    /// The host the locker's address belongs to, if known.
    pub host: Option<Host>,
    /// True when its holder no longer watches the image.
    pub stale: bool,
}

/// Everything derived about one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFindings {
    /// Clone depth.
    pub clone_depth: CloneDepth,
    /// Why it should be flattened, if it should.
    pub flatten_reasons: BTreeSet<FlattenReason>,
    /// Every watcher, in the order the cluster listed them.
    pub watchers: Vec<WatcherFinding>,
    /// Every lock, in the order the cluster listed them.
    pub locks: Vec<LockFinding>,
}

/// [`ImageFindings::QUIET`], borrowable for any lifetime.
static QUIET_FINDINGS: ImageFindings = ImageFindings::QUIET;

impl ImageFindings {
    /// What an image with nothing to say gets: no watcher, no lock, no
    /// parent (a complete chain of depth 0), no flatten reason.
    pub const QUIET: ImageFindings = ImageFindings {
        clone_depth: CloneDepth {
            depth: 0,
            complete: true,
        },
        flatten_reasons: BTreeSet::new(),
        watchers: Vec::new(),
        locks: Vec::new(),
    };

    /// The watchers believed orphaned, with why.
    pub fn orphans(&self) -> impl Iterator<Item = (&WatcherFinding, OrphanReason)> {
        self.watchers
            .iter()
            .filter_map(|w| w.orphan_reason().map(|r| (w, r)))
    }

    /// The locks whose holder is gone.
    pub fn stale_locks(&self) -> impl Iterator<Item = &LockFinding> {
        self.locks.iter().filter(|l| l.stale)
    }

    /// True when the image has nothing worth a per-image series.
    pub fn is_quiet(&self) -> bool {
        self.watchers.is_empty()
            && self.clone_depth.depth == 0
            && self.flatten_reasons.is_empty()
            && self.stale_locks().next().is_none()
    }
}

/// Per pool and namespace totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NamespaceSummary {
    /// Images outside the trash.
    pub images: u64,
    /// Clones outside the trash.
    pub clones: u64,
    /// Images with at least one watcher.
    pub watched_images: u64,
    /// Watchers of all images.
    pub watchers: u64,
    /// Watchers believed orphaned.
    pub orphaned_watchers: u64,
    /// Stale locks.
    pub stale_locks: u64,
    /// Protected snapshots.
    pub protected_snapshots: u64,
    /// Deepest clone chain.
    pub max_clone_depth: u32,
    /// Distinct images with at least one flatten reason.
    pub flatten_pending_images: u64,
    /// Images in the trash.
    pub trash_images: u64,
}

impl NamespaceSummary {
    /// Adds one image and its findings to the totals.
    fn add(&mut self, image: &Image, findings: &ImageFindings) {
        if !image.in_trash {
            self.images += 1;
            if image.head_parent().is_some() {
                self.clones += 1;
            }
        }
        self.watched_images += u64::from(!image.watchers.is_empty());
        self.watchers += image.watchers.len() as u64;
        self.orphaned_watchers += findings.orphans().count() as u64;
        self.stale_locks += findings.stale_locks().count() as u64;
        self.protected_snapshots += image.snapshots.iter().filter(|s| s.protected).count() as u64;
        self.max_clone_depth = self.max_clone_depth.max(findings.clone_depth.depth);
        self.flatten_pending_images += u64::from(!findings.flatten_reasons.is_empty());
    }
}

/// The analysis of one sample.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Findings by image, only for images with something to say: an image
    /// of the sample missing here has the quiet findings
    /// ([`ImageFindings::QUIET`]: no watcher, no lock, not a clone, no
    /// flatten reason). Most images of a large cluster are quiet; keeping
    /// theirs would cost a map entry each. Read with
    /// [`Analysis::findings`].
    pub notable: BTreeMap<ImageKey, ImageFindings>,
    /// Totals by pool id and namespace.
    pub namespaces: BTreeMap<(PoolId, String), NamespaceSummary>,
    /// Children (v1 and v2, in any sampled pool) by parent snapshot, in
    /// the order found: v2 from the snapshot's child list, then v1 from
    /// the `rbd_children` of every sampled pool.
    pub snapshot_children: HashMap<(ImageKey, u64), Vec<ImageKey>>,
}

impl Analysis {
    /// The findings of an image of the analysed sample (the quiet ones
    /// when it has nothing to say; an image the sample does not hold gets
    /// them too, so ask the sample whether it holds it).
    pub fn findings(&self, image: &ImageKey) -> &ImageFindings {
        self.notable.get(image).unwrap_or(&QUIET_FINDINGS)
    }

    /// The children of one snapshot, v1 and v2.
    pub fn children(&self, image: &ImageKey, snapshot: &Snapshot) -> &[ImageKey] {
        self.snapshot_children
            .get(&(image.clone(), snapshot.id))
            .map_or(&[], Vec::as_slice)
    }

    /// How many children one snapshot has, v1 and v2.
    pub fn children_of(&self, image: &ImageKey, snapshot: &Snapshot) -> u64 {
        self.children(image, snapshot).len() as u64
    }
}

/// What judges the watchers of a sample: who the addresses belong to, the
/// classifiers asked in order, and when each watch was first seen.
pub struct Judges<'a> {
    /// Attributes addresses to hosts.
    pub hosts: &'a dyn HostLookup,
    /// Asked in order; the first verdict wins.
    pub classifiers: &'a [&'a dyn OrphanClassifier],
    /// First-seen times of the watchers, from earlier samples.
    pub first_seen: &'a FirstSeenTimes,
}

/// Analyses a sample with the built-in classifier only, no hosts, and
/// every watcher first seen now.
pub fn analyse(sample: &Sample, settings: &Settings) -> Analysis {
    let judges = Judges {
        hosts: &NoHosts,
        classifiers: &[&ImageStateClassifier],
        first_seen: &FirstSeenTimes::default(),
    };
    analyse_with(sample, settings, &judges)
}

/// Analyses a sample: every watcher's and locker's address is attributed
/// by `judges.hosts`, then `judges.classifiers` are asked in order about
/// each watcher.
pub fn analyse_with(sample: &Sample, settings: &Settings, judges: &Judges<'_>) -> Analysis {
    let mut analysis = Analysis {
        snapshot_children: snapshot_children(sample),
        ..Default::default()
    };
    let mut depths: HashMap<ImageKey, CloneDepth> = HashMap::new();
    let mut queued: HashMap<(PoolId, &str), HashSet<&str>> = HashMap::new();
    for (pool, ns) in sample.namespaces() {
        queued.insert((pool.pool_id, &ns.namespace), queued_flatten_ids(ns));
        let summary = NamespaceSummary {
            trash_images: ns.trash.len() as u64,
            ..Default::default()
        };
        analysis
            .namespaces
            .insert((pool.pool_id, ns.namespace.clone()), summary);
    }
    for s in sample.images() {
        let key = s.key();
        let depth = clone_depth(sample, &key, &mut depths);
        let mut flatten_reasons = parent_flatten_reasons(sample, s.image);
        if depth.depth > settings.clone_depth_max {
            flatten_reasons.insert(FlattenReason::CloneDepthExceeded);
        }
        if queued[&(key.pool_id, key.namespace.as_str())].contains(s.image.id.as_str()) {
            flatten_reasons.insert(FlattenReason::FlattenQueued);
        }
        let findings = ImageFindings {
            clone_depth: depth,
            flatten_reasons,
            watchers: watcher_findings(&s, &key, sample.started_at, judges),
            locks: lock_findings(s.image, judges.hosts),
        };
        if let Some(summary) = analysis
            .namespaces
            .get_mut(&(key.pool_id, key.namespace.clone()))
        {
            summary.add(s.image, &findings);
        }
        if findings != ImageFindings::QUIET {
            analysis.notable.insert(key, findings);
        }
    }
    analysis
}

/// One finding per watcher of an image, in the cluster's order.
fn watcher_findings(
    s: &SampledImage<'_>,
    key: &ImageKey,
    now: f64,
    judges: &Judges<'_>,
) -> Vec<WatcherFinding> {
    s.image
        .watchers
        .iter()
        .map(|w| {
            let host = judges.hosts.host(w.ip());
            let ctx = WatcherContext {
                pool: &s.pool.name,
                namespace: &s.namespace.namespace,
                image: s.image,
                watcher: w,
                host: host.as_ref(),
                trash: s.namespace.trash.get(&s.image.id),
            };
            let verdict = judges
                .classifiers
                .iter()
                .find_map(|c| c.classify(&ctx))
                .unwrap_or(Verdict::Legitimate);
            let first_seen = judges
                .first_seen
                .get(&WatcherKey {
                    image: key.clone(),
                    watcher: w.clone(),
                })
                .copied()
                .unwrap_or(now);
            WatcherFinding {
                watcher: w.clone(),
                host,
                verdict,
                first_seen,
            }
        })
        .collect()
}

/// One finding per lock of an image, in the cluster's order.
fn lock_findings(image: &Image, hosts: &dyn HostLookup) -> Vec<LockFinding> {
    image
        .locks
        .iter()
        .map(|lock| LockFinding {
            host: hosts.host(address_ip(&lock.address)),
            stale: is_stale(lock, image),
            lock: lock.clone(),
        })
        .collect()
}

/// Ids of images with a flatten task queued in this namespace.
fn queued_flatten_ids(ns: &NamespaceSample) -> HashSet<&str> {
    ns.tasks
        .iter()
        .filter(|t| t.action == "flatten")
        .filter_map(|t| t.image_id.as_deref())
        .collect()
}

/// Children per parent snapshot: v2 from the snapshots' child lists, v1
/// from every pool's `rbd_children` (children may sit in any pool). A v1
/// clone lives in its parent's RBD namespace, so a v1 link names the
/// parent in the namespace of the `rbd_children` object that holds it.
fn snapshot_children(sample: &Sample) -> HashMap<(ImageKey, u64), Vec<ImageKey>> {
    let mut children: HashMap<(ImageKey, u64), Vec<ImageKey>> = HashMap::new();
    for s in sample.images() {
        for snap in s
            .image
            .snapshots
            .iter()
            .filter(|s| !s.v2_children.is_empty())
        {
            children
                .entry((s.key(), snap.id))
                .or_default()
                .extend(snap.v2_children.iter().map(ChildRef::image_key));
        }
    }
    for (pool, ns) in sample.namespaces() {
        for link in &ns.v1_children {
            let parent = ImageKey {
                pool_id: link.parent_pool_id,
                namespace: ns.namespace.clone(),
                image_id: link.parent_image_id.clone(),
            };
            children
                .entry((parent, link.parent_snap_id))
                .or_default()
                .extend(link.child_image_ids.iter().map(|id| ImageKey {
                    pool_id: pool.pool_id,
                    namespace: ns.namespace.clone(),
                    image_id: id.clone(),
                }));
        }
    }
    children
}

/// Number of ancestors of `key`, following parents across pools. A chain
/// that loops or leaves the sample stops there and is marked incomplete.
pub fn clone_depth(
    sample: &Sample,
    key: &ImageKey,
    memo: &mut HashMap<ImageKey, CloneDepth>,
) -> CloneDepth {
    if let Some(d) = memo.get(key) {
        return *d;
    }
    // Walk up to a root, a memoised ancestor, a missing parent or a loop,
    // then give every image on the path its depth.
    let mut path: Vec<ImageKey> = Vec::new();
    let mut seen: HashSet<ImageKey> = HashSet::new();
    let mut current = key.clone();
    // The depth of the last image on `path`.
    let last = loop {
        if !seen.insert(current.clone()) {
            // A loop: Ceph forbids it, so the metadata changed mid-sample.
            break CloneDepth {
                depth: 1,
                complete: false,
            };
        }
        let Some(image) = sample.image(&current) else {
            // A missing parent still counts as one ancestor of its child;
            // its own ancestry is unknown.
            if path.is_empty() {
                return CloneDepth {
                    depth: 0,
                    complete: false,
                };
            }
            break CloneDepth {
                depth: 1,
                complete: false,
            };
        };
        path.push(current.clone());
        let Some(parent) = image.head_parent() else {
            break CloneDepth {
                depth: 0,
                complete: true,
            };
        };
        let parent_key = parent.image_key();
        if let Some(d) = memo.get(&parent_key) {
            break CloneDepth {
                depth: d.depth + 1,
                complete: d.complete,
            };
        }
        current = parent_key;
    };
    let mut depth = last;
    for k in path.iter().rev() {
        memo.insert(k.clone(), depth);
        depth = CloneDepth {
            depth: depth.depth + 1,
            complete: depth.complete,
        };
    }
    memo[key]
}

/// Flatten reasons that come from the parent's state.
fn parent_flatten_reasons(sample: &Sample, image: &Image) -> BTreeSet<FlattenReason> {
    let mut reasons = BTreeSet::new();
    let Some(parent_ref) = image.head_parent() else {
        return reasons;
    };
    let Some(parent) = sample.image(&parent_ref.image_key()) else {
        return reasons;
    };
    if parent.in_trash {
        reasons.insert(FlattenReason::ParentImageTrashed);
    }
    if is_deleted_name(&parent.name) {
        reasons.insert(FlattenReason::ParentDeleted);
    }
    if parent
        .snapshots
        .iter()
        .any(|s| s.id == parent_ref.snap_id && s.is_trashed())
    {
        reasons.insert(FlattenReason::ParentSnapshotTrashed);
    }
    reasons
}

/// True when the lock's holder no longer watches the image, judged the way
/// librbd judges a lock before breaking it: a lock is live only while the
/// very client instance that took it has a watch on the header. An
/// exclusive lock (`auto <cookie>`) needs a watch with that cookie from
/// that client instance; an advisory lock needs any watch from it. Cookies
/// alone are not enough (krbd numbers them 1, 2, ... per client, so another
/// host's watch can share one), nor are IPs (a restarted client on the same
/// host is another instance).
pub fn is_stale(lock: &Lock, image: &Image) -> bool {
    let cookie = match lock.kind {
        LockKind::Exclusive => lock.watch_cookie(),
        LockKind::Advisory => None,
    };
    !image
        .watchers
        .iter()
        .filter(|w| cookie.is_none_or(|c| w.cookie == c))
        .any(|w| same_client_instance(w, lock))
}

/// True when a watch and a lock come from the same client instance: the
/// same entity address (`ip:port/nonce`), or the same entity (`client.N`)
/// with the same nonce (one instance seen on another of its addresses).
fn same_client_instance(w: &Watcher, lock: &Lock) -> bool {
    let (wa, la) = (bare_address(&w.address), bare_address(&lock.address));
    if wa == la {
        return true;
    }
    let nonce_of = |a: &str| a.rsplit_once('/').map(|(_, n)| n.to_string());
    w.client == lock.locker && nonce_of(wa).is_some() && nonce_of(wa) == nonce_of(la)
}

/// An entity address without its `v1:`/`v2:`/`any:` type prefix.
fn bare_address(address: &str) -> &str {
    ["v1:", "v2:", "any:"]
        .iter()
        .find_map(|p| address.strip_prefix(p))
        .unwrap_or(address)
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Small in-memory samples for unit tests of analysis and rendering.
    use crate::model::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    pub fn image(id: &str, name: &str) -> Image {
        Image {
            id: id.into(),
            name: name.into(),
            size: 1 << 30,
            order: 22,
            features: 61,
            ..Default::default()
        }
    }

    pub fn parent(pool_id: PoolId, image_id: &str, snap_id: u64) -> Option<ParentRef> {
        Some(ParentRef {
            pool_id,
            namespace: String::new(),
            image_id: image_id.into(),
            snap_id,
            overlap: Some(1 << 30),
        })
    }

    pub fn snapshot(id: u64, name: &str, protected: bool) -> Snapshot {
        Snapshot {
            id,
            name: name.into(),
            namespace: SnapshotNamespace::User,
            protected,
            size: 1 << 30,
            v2_children: vec![],
        }
    }

    pub fn watcher(client: u64, ip: &str, cookie: u64) -> Watcher {
        Watcher {
            client: format!("client.{client}"),
            address: format!("{ip}:0/{}", 1000 + client),
            cookie,
        }
    }

    pub fn exclusive_lock(client: u64, ip: &str, cookie: u64) -> Lock {
        Lock {
            kind: LockKind::Exclusive,
            locker: format!("client.{client}"),
            cookie: format!("auto {cookie}"),
            address: format!("{ip}:0/{}", 1000 + client),
            shared: false,
            tag: "internal".into(),
        }
    }

    pub fn advisory_lock(client: u64, ip: &str, cookie: &str) -> Lock {
        Lock {
            kind: LockKind::Advisory,
            locker: format!("client.{client}"),
            cookie: cookie.into(),
            address: format!("{ip}:0/{}", 1000 + client),
            shared: false,
            tag: String::new(),
        }
    }

    /// A sample with one pool per entry of `pools`: (id, name, namespaces).
    pub fn sample(pools: Vec<(PoolId, &str, Vec<NamespaceSample>)>) -> Sample {
        let mut s = Sample {
            started_at: 1_700_000_000.0,
            finished_at: 1_700_000_001.5,
            ..Default::default()
        };
        for (id, name, nss) in pools {
            s.pool_names.insert(id, name.into());
            s.pools.insert(
                id,
                PoolSample {
                    pool_id: id,
                    name: name.into(),
                    duration_seconds: 0.25,
                    outcome: Ok(nss),
                    skipped: vec![],
                    mirror_daemons: vec![],
                },
            );
        }
        s
    }

    pub fn namespace(name: &str, images: Vec<Image>) -> NamespaceSample {
        NamespaceSample {
            namespace: name.into(),
            images: images
                .into_iter()
                .map(|i| (i.id.clone(), Arc::new(i)))
                .collect::<BTreeMap<_, _>>(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::model::*;
    use std::sync::Arc;

    fn key(pool: PoolId, id: &str) -> ImageKey {
        ImageKey {
            pool_id: pool,
            namespace: String::new(),
            image_id: id.into(),
        }
    }

    /// Stale locks of one image.
    fn stale_locks(image: &Image) -> usize {
        image.locks.iter().filter(|l| is_stale(l, image)).count()
    }

    /// Analyses with these classifiers, no hosts, every watcher new.
    fn judged(s: &Sample, classifiers: &[&dyn OrphanClassifier]) -> Analysis {
        let judges = Judges {
            hosts: &NoHosts,
            classifiers,
            first_seen: &FirstSeenTimes::default(),
        };
        analyse_with(s, &Settings::default(), &judges)
    }

    fn chain_sample(n: usize) -> Sample {
        // img0 <- img1 <- ... <- img{n-1}, alternating between two pools.
        let mut pools: Vec<Vec<Image>> = vec![vec![], vec![]];
        for i in 0..n {
            let mut img = image(&format!("id{i}"), &format!("volume-chain-{i}"));
            img.snapshots.push(snapshot(1, "next.clone_snap", true));
            if i > 0 {
                img.parent = parent(((i - 1) % 2) as PoolId + 1, &format!("id{}", i - 1), 1);
            }
            pools[i % 2].push(img);
        }
        let p2 = pools.pop().unwrap();
        let p1 = pools.pop().unwrap();
        sample(vec![
            (1, "volumes", vec![namespace("", p1)]),
            (2, "backup", vec![namespace("", p2)]),
        ])
    }

    #[test]
    fn depth_counts_ancestors_across_pools() {
        let s = chain_sample(7);
        let a = analyse(&s, &Settings::default());
        for i in 0..7 {
            let pool = (i % 2) as PoolId + 1;
            let f = &a.findings(&key(pool, &format!("id{i}")));
            assert_eq!(
                f.clone_depth,
                CloneDepth {
                    depth: i as u32,
                    complete: true
                },
                "image {i}"
            );
        }
        let deepest = &a.findings(&key(1, "id6"));
        assert!(
            deepest
                .flatten_reasons
                .contains(&FlattenReason::CloneDepthExceeded)
        );
        let at_limit = &a.findings(&key(2, "id5"));
        assert!(
            !at_limit
                .flatten_reasons
                .contains(&FlattenReason::CloneDepthExceeded)
        );
        assert_eq!(a.namespaces[&(1, String::new())].max_clone_depth, 6);
    }

    #[test]
    fn depth_limit_is_a_setting() {
        let s = chain_sample(4);
        let a = analyse(&s, &Settings { clone_depth_max: 2 });
        assert!(
            a.findings(&key(2, "id3"))
                .flatten_reasons
                .contains(&FlattenReason::CloneDepthExceeded)
        );
        assert!(
            !a.findings(&key(1, "id2"))
                .flatten_reasons
                .contains(&FlattenReason::CloneDepthExceeded)
        );
    }

    #[test]
    fn depth_survives_cycles_and_missing_parents() {
        let mut a1 = image("a", "a");
        a1.parent = parent(1, "b", 1);
        let mut b1 = image("b", "b");
        b1.parent = parent(1, "a", 1);
        let mut orphan = image("c", "c");
        orphan.parent = parent(9, "gone", 1);
        let mut grandchild = image("d", "d");
        grandchild.parent = parent(1, "c", 1);
        let s = sample(vec![(
            1,
            "p",
            vec![namespace("", vec![a1, b1, orphan, grandchild])],
        )]);
        let a = analyse(&s, &Settings::default());
        assert!(!a.findings(&key(1, "a")).clone_depth.complete);
        assert!(a.findings(&key(1, "a")).clone_depth.depth <= 2);
        assert_eq!(
            a.findings(&key(1, "c")).clone_depth,
            CloneDepth {
                depth: 1,
                complete: false
            }
        );
        assert_eq!(
            a.findings(&key(1, "d")).clone_depth,
            CloneDepth {
                depth: 2,
                complete: false
            }
        );
    }

    #[test]
    fn flatten_reasons_from_parent_state_and_tasks() {
        let mut gone = image("p1", "golden");
        gone.snapshots.push(Snapshot {
            namespace: SnapshotNamespace::Trash {
                original_name: "gone".into(),
            },
            ..snapshot(4, "1a2b-trash", false)
        });
        let mut trashed = image("p2", "retired");
        trashed.in_trash = true;
        let deleted = image("p3", "volume-olddead.deleted");
        let mut c1 = image("c1", "volume-snap-trashed");
        c1.parent = parent(1, "p1", 4);
        let mut c2 = image("c2", "volume-parent-trashed");
        c2.parent = parent(1, "p2", 1);
        let mut c3 = image("c3", "volume-child-of-deleted");
        c3.parent = parent(1, "p3", 1);
        let c4 = image("c4", "volume-flatten-me");
        let mut ns = namespace("", vec![gone, trashed, deleted, c1, c2, c3, c4]);
        ns.tasks.push(QueuedTask {
            id: "t".into(),
            action: "flatten".into(),
            image_id: Some("c4".into()),
            image_name: Some("volume-flatten-me".into()),
        });
        let s = sample(vec![(1, "volumes", vec![ns])]);
        let a = analyse(&s, &Settings::default());
        let reasons = |id: &str| {
            a.findings(&key(1, id))
                .flatten_reasons
                .iter()
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(reasons("c1"), vec![FlattenReason::ParentSnapshotTrashed]);
        assert_eq!(reasons("c2"), vec![FlattenReason::ParentImageTrashed]);
        assert_eq!(reasons("c3"), vec![FlattenReason::ParentDeleted]);
        assert_eq!(reasons("c4"), vec![FlattenReason::FlattenQueued]);
        assert!(reasons("p1").is_empty());
        assert_eq!(a.namespaces[&(1, String::new())].flatten_pending_images, 4);
        assert_eq!(
            a.namespaces[&(1, String::new())].images,
            6,
            "trashed image not counted"
        );
    }

    #[test]
    fn exclusive_lock_is_stale_only_without_its_watch() {
        let mut live = image("a", "volume-attached");
        live.watchers.push(watcher(1, "10.0.0.1", 77));
        live.locks.push(exclusive_lock(1, "10.0.0.1", 77));
        let mut dead = image("b", "volume-crashed");
        dead.watchers.push(watcher(2, "10.0.0.1", 78));
        dead.locks.push(exclusive_lock(3, "10.0.0.1", 99));
        assert_eq!(stale_locks(&live), 0);
        assert_eq!(
            stale_locks(&dead),
            1,
            "same IP but another cookie is still stale"
        );
    }

    #[test]
    fn advisory_lock_is_stale_without_a_watch_from_its_client_instance() {
        let mut img = image("a", "volume-locked");
        img.locks.push(advisory_lock(5, "10.0.0.2", "stale-cookie"));
        assert_eq!(stale_locks(&img), 1);
        img.watchers.push(watcher(5, "10.0.0.2", 1));
        assert_eq!(stale_locks(&img), 0, "its own watch keeps it live");
        // A restarted client on the same host is another instance: its
        // watch does not keep its predecessor's lock alive.
        img.watchers[0] = watcher(6, "10.0.0.2", 1);
        assert_eq!(stale_locks(&img), 1);
        img.watchers[0] = watcher(5, "10.0.0.3", 1);
        img.watchers[0].address = "10.0.0.3:0/1005".into();
        assert_eq!(
            stale_locks(&img),
            0,
            "a multi-homed holder (same client and nonce, another IP) is live"
        );
    }

    #[test]
    fn krbd_cookie_collisions_do_not_hide_a_dead_owner() {
        // krbd numbers watch cookies per client: host B's watch has cookie 1
        // too, but the lock `auto 1` was taken by the dead client on host A.
        let mut img = image("k", "csi-vol-1");
        img.locks.push(exclusive_lock(41, "10.0.0.1", 1));
        img.watchers.push(watcher(42, "10.0.0.2", 1));
        assert_eq!(stale_locks(&img), 1);
        img.watchers.push(watcher(41, "10.0.0.1", 2));
        assert_eq!(
            stale_locks(&img),
            1,
            "its owner's watch with another cookie"
        );
        img.watchers.push(watcher(41, "10.0.0.1", 1));
        assert_eq!(stale_locks(&img), 0);
        img.watchers = vec![Watcher {
            address: "v1:10.0.0.1:0/1041".into(),
            ..watcher(41, "10.0.0.1", 1)
        }];
        assert_eq!(stale_locks(&img), 0, "address type prefixes do not matter");
    }

    #[test]
    fn orphans_on_deleted_and_trashed_images_only() {
        let mut zombie = image("z", "volume-zombie.deleted");
        zombie.watchers.push(watcher(1, "10.0.0.1", 1));
        let mut trashed = image("t", "volume-trashed-held");
        trashed.in_trash = true;
        trashed.watchers.push(watcher(2, "10.0.0.1", 2));
        let mut fine = image("f", "volume-attached");
        fine.watchers.push(watcher(3, "10.0.0.1", 3));
        let mut ns = namespace("", vec![zombie, trashed, fine]);
        ns.trash.insert(
            "t".into(),
            TrashEntry {
                id: "t".into(),
                name: "volume-trashed-held".into(),
                source: "user".into(),
                deletion_time: 0,
                deferment_end_time: 0,
                state: "normal".into(),
            },
        );
        let s = sample(vec![(1, "volumes", vec![ns])]);
        let a = analyse(&s, &Settings::default());
        assert_eq!(
            a.findings(&key(1, "z")).orphans().next().unwrap().1,
            OrphanReason::ImageDeleted
        );
        assert_eq!(
            a.findings(&key(1, "t")).orphans().next().unwrap().1,
            OrphanReason::ImageTrashed
        );
        assert!(a.findings(&key(1, "f")).orphans().next().is_none());
        let sum = &a.namespaces[&(1, String::new())];
        assert_eq!(
            (
                sum.watchers,
                sum.watched_images,
                sum.orphaned_watchers,
                sum.trash_images
            ),
            (3, 3, 2, 1)
        );
    }

    #[test]
    fn classifiers_are_pluggable_and_first_wins() {
        struct EveryoneIsSuspect;
        impl OrphanClassifier for EveryoneIsSuspect {
            fn classify(&self, _: &WatcherContext<'_>) -> Option<Verdict> {
                Some(Verdict::Orphan(OrphanReason::ImageTrashed))
            }
        }
        struct Exempt;
        impl OrphanClassifier for Exempt {
            fn classify(&self, _: &WatcherContext<'_>) -> Option<Verdict> {
                Some(Verdict::Legitimate)
            }
        }
        let mut img = image("z", "volume-zombie.deleted");
        img.watchers.push(watcher(1, "10.0.0.1", 1));
        let s = sample(vec![(1, "volumes", vec![namespace("", vec![img])])]);
        let a = judged(&s, &[&ImageStateClassifier, &EveryoneIsSuspect]);
        assert_eq!(
            a.findings(&key(1, "z")).orphans().next().unwrap().1,
            OrphanReason::ImageDeleted
        );
        let b = judged(&s, &[&EveryoneIsSuspect, &ImageStateClassifier]);
        assert_eq!(
            b.findings(&key(1, "z")).orphans().next().unwrap().1,
            OrphanReason::ImageTrashed
        );
        // A legitimate verdict stops later classifiers.
        let c = judged(&s, &[&Exempt, &ImageStateClassifier]);
        assert!(c.findings(&key(1, "z")).orphans().next().is_none());
        let z = &c.findings(&key(1, "z"));
        assert_eq!(z.watchers.len(), 1);
        assert_eq!(z.watchers[0].host, None);
        assert_eq!(z.watchers[0].verdict, Verdict::Legitimate);
    }

    #[test]
    fn snapshot_children_add_v1_and_v2_across_pools() {
        let mut base = image("g", "8c0f7d1e-glance-base");
        let mut snap = snapshot(4, "snap", true);
        snap.v2_children = vec![
            ChildRef {
                pool_id: 2,
                namespace: String::new(),
                image_id: "v1".into(),
            },
            ChildRef {
                pool_id: 3,
                namespace: String::new(),
                image_id: "n1".into(),
            },
        ];
        base.snapshots.push(snap.clone());
        let mut ns2 = namespace("", vec![]);
        ns2.v1_children.push(V1ChildLink {
            parent_pool_id: 1,
            parent_image_id: "g".into(),
            parent_snap_id: 4,
            child_image_ids: vec!["old".into()],
        });
        let s = sample(vec![
            (1, "images", vec![namespace("", vec![base])]),
            (2, "volumes", vec![ns2]),
        ]);
        let a = analyse(&s, &Settings::default());
        assert_eq!(a.children_of(&key(1, "g"), &snap), 3);
    }

    #[test]
    fn v1_children_count_against_their_parent_in_the_same_namespace() {
        let mut base = image("p", "csi-golden");
        let snap = snapshot(3, "base", true);
        base.snapshots.push(snap.clone());
        let mut ns = namespace("tenant-a", vec![base, image("c", "csi-clone")]);
        ns.v1_children.push(V1ChildLink {
            parent_pool_id: 1,
            parent_image_id: "p".into(),
            parent_snap_id: 3,
            child_image_ids: vec!["c".into()],
        });
        let s = sample(vec![(1, "k8s", vec![namespace("", vec![]), ns])]);
        let a = analyse(&s, &Settings::default());
        let parent = ImageKey {
            pool_id: 1,
            namespace: "tenant-a".into(),
            image_id: "p".into(),
        };
        assert_eq!(a.children_of(&parent, &snap), 1);
        assert_eq!(a.children(&parent, &snap)[0].namespace, "tenant-a");
        assert_eq!(
            a.children_of(&key(1, "p"), &snap),
            0,
            "not the default namespace"
        );
    }

    #[test]
    fn watchers_of_images_ceph_is_removing_migrating_or_mirroring_are_not_orphans() {
        let mut ns = namespace("", vec![]);
        for (id, source) in [
            ("u", "user"),
            ("r", "removing"),
            ("m", "migration"),
            ("x", "mirroring"),
            ("p", "user_parent"),
        ] {
            let mut img = image(id, &format!("volume-{id}"));
            img.in_trash = true;
            img.watchers.push(watcher(1, "10.0.0.1", 1));
            ns.images.insert(id.into(), Arc::new(img));
            ns.trash.insert(
                id.into(),
                TrashEntry {
                    id: id.into(),
                    name: format!("volume-{id}"),
                    source: source.into(),
                    deletion_time: 0,
                    deferment_end_time: 0,
                    state: "normal".into(),
                },
            );
        }
        let s = sample(vec![(1, "volumes", vec![ns])]);
        let a = analyse(&s, &Settings::default());
        let verdict = |id: &str| a.findings(&key(1, id)).watchers[0].verdict;
        let trashed = Verdict::Orphan(OrphanReason::ImageTrashed);
        assert_eq!(verdict("u"), trashed);
        assert_eq!(verdict("p"), trashed);
        for id in ["r", "m", "x"] {
            assert_eq!(verdict(id), Verdict::Legitimate, "{id}");
        }
        assert_eq!(a.namespaces[&(1, String::new())].orphaned_watchers, 2);

        // A user-trashed image being removed (`rbd trash rm`, the mgr's
        // `trash remove` task) is Ceph's own work too.
        let mut s = s;
        let ns = match &mut s.pools.get_mut(&1).unwrap().outcome {
            Ok(nss) => &mut nss[0],
            Err(_) => unreachable!(),
        };
        ns.trash.get_mut("u").unwrap().state = "removing".into();
        let a = analyse(&s, &Settings::default());
        assert_eq!(
            a.findings(&key(1, "u")).watchers[0].verdict,
            Verdict::Legitimate
        );
    }

    #[test]
    fn a_clone_flattened_with_snapshots_has_no_parent_but_still_pins_it() {
        let mut base = image("b", "glance-base");
        let mut snap = snapshot(4, "snap", true);
        snap.v2_children.push(ChildRef {
            pool_id: 1,
            namespace: String::new(),
            image_id: "f".into(),
        });
        base.snapshots.push(snap.clone());
        base.name = "glance-base.deleted".into();
        let mut flat = image("f", "volume-flattened");
        flat.parent = parent(1, "b", 4);
        flat.parent.as_mut().unwrap().overlap = None;
        flat.snapshots.push(snapshot(9, "backup", false));
        let mut zero = image("z", "volume-zero-overlap");
        zero.parent = parent(1, "b", 4);
        zero.parent.as_mut().unwrap().overlap = Some(0);
        let s = sample(vec![(
            1,
            "volumes",
            vec![namespace("", vec![base, flat, zero])],
        )]);
        let a = analyse(&s, &Settings::default());
        for id in ["f", "z"] {
            let f = &a.findings(&key(1, id));
            assert_eq!(f.clone_depth.depth, 0, "{id}");
            assert!(f.flatten_reasons.is_empty(), "{id}: flatten would fail");
        }
        assert_eq!(a.namespaces[&(1, String::new())].clones, 0);
        assert_eq!(a.children_of(&key(1, "b"), &snap), 1, "still pinned");
        assert!(
            s.image(&key(1, "f"))
                .unwrap()
                .pins_parent_by_snapshots_only()
        );
    }
}
