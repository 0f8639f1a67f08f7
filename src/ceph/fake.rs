//! An in-memory cluster that implements [`Conn`], for unit tests of the
//! sampler and of the sampling cycle. It never touches librados.
//!
//! It can say what a real cluster cannot produce on demand: pools with
//! namespaces, any `rbd_directory`, `rbd_trash`, `rbd_children` and
//! `rbd_task` contents, image headers (watchers, locks, parents, snapshot
//! ids) and snapshots; an error for a given method on a given pool,
//! namespace or image, always or for the first N calls (a failed step of a
//! compound read with [`failed_step`], a panic with [`panic`]); omap entries
//! that do not decode ([`Builder::bad_entry`]); format 1 images
//! ([`Builder::format1_image`]); images that vanish between the directory
//! listing and the header read. Every call is logged and counted as one
//! RADOS operation.
//!
//! ```
//! use ceph_rbd_exporter::ceph::fake::{self, Fault, FakeCluster, FakeImage, Method};
//!
//! let cluster = FakeCluster::builder()
//!     .rbd_pool(1, "images")
//!     .image(1, "", FakeImage::new("g1", "golden").protected_snapshot(4, "base"))
//!     .rbd_pool(2, "volumes")
//!     .image(2, "tenant-a", FakeImage::new("v1", "vm-1").clone_of(1, "", "g1", 4))
//!     .vanishing(2, "tenant-a", "v2", "deleted-meanwhile")
//!     .fault(Fault::on(Method::Header, fake::timeout).pool(2).image("v1").times(1))
//!     .build();
//! // `cluster` is an `Arc<FakeCluster>`; hand it to `sampler::sample_once`,
//! // then look at `cluster.count(Method::Header)` or `cluster.calls()`.
//! # let _ = cluster;
//! ```

use super::decode::DecodeError;
use super::{BadEntry, Conn, Directory, HeaderCheck, ImageHeader, Listing, PoolInfo};
use crate::error::{Error, libc_errno};
use crate::model::{
    Location, Lock, LockKind, ParentRef, PoolId, QueuedTask, Snapshot, SnapshotNamespace,
    TrashEntry, V1ChildLink, Watcher,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A method of [`Conn`], to aim faults at and to count calls of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// [`Conn::pools`].
    Pools,
    /// [`Conn::namespaces`].
    Namespaces,
    /// [`Conn::directory`].
    Directory,
    /// [`Conn::trash`].
    Trash,
    /// [`Conn::v1_children`].
    V1Children,
    /// [`Conn::tasks`].
    Tasks,
    /// [`Conn::header`].
    Header,
    /// [`Conn::snapshots`].
    Snapshots,
    /// [`Conn::watchers_if_unchanged`].
    Watchers,
    /// [`Conn::image_name`].
    ImageName,
    /// [`Conn::mirror_daemons`].
    MirrorDaemons,
    /// [`Conn::mirroring_watchers`].
    MirroringWatchers,
}

impl Method {
    /// What [`RadosConn`](super::RadosConn) calls this read in its errors.
    fn what(self) -> &'static str {
        match self {
            Method::Pools => "mon command",
            Method::Header => "header read",
            Method::Watchers => "watcher read",
            Method::Snapshots => "snapshot read",
            Method::MirrorDaemons | Method::MirroringWatchers => "watcher list",
            _ => "omap read",
        }
    }

    /// The object this method reads (for an image: its header).
    fn object(self, image_id: Option<&str>) -> String {
        match self {
            Method::Pools => "osd pool ls".into(),
            Method::Namespaces => "rbd_namespace".into(),
            Method::Directory | Method::ImageName => "rbd_directory".into(),
            Method::Trash => "rbd_trash".into(),
            Method::V1Children => "rbd_children".into(),
            Method::Tasks => "rbd_task".into(),
            Method::MirrorDaemons => "rbd_mirror_leader".into(),
            Method::MirroringWatchers => "rbd_mirroring".into(),
            Method::Header | Method::Snapshots | Method::Watchers => {
                format!("rbd_header.{}", image_id.unwrap_or_default())
            }
        }
    }
}

/// One call made to the fake, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The method called.
    pub method: Method,
    /// Its pool; `None` for [`Method::Pools`].
    pub pool_id: Option<PoolId>,
    /// Its namespace; `None` for [`Method::Pools`] and
    /// [`Method::Namespaces`].
    pub namespace: Option<String>,
    /// The image, for [`Method::Header`], [`Method::Snapshots`] and
    /// [`Method::ImageName`].
    pub image_id: Option<String>,
    /// `pool` or `pool/namespace`, as `RadosConn` names it in errors.
    pub pool_label: String,
    /// The object read, as `RadosConn` names it in errors.
    pub object: String,
}

/// Makes the error of a [`Fault`] for the call it hits.
type MakeError = Arc<dyn Fn(&Call) -> Error + Send + Sync>;

/// An error injected for the calls of one method that match its filters:
/// every such call, or only the first N ([`times`](Fault::times)).
#[derive(Clone)]
pub struct Fault {
    method: Method,
    pool_id: Option<PoolId>,
    namespace: Option<String>,
    image_id: Option<String>,
    remaining: Option<u64>,
    make: MakeError,
}

impl std::fmt::Debug for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fault")
            .field("method", &self.method)
            .field("pool_id", &self.pool_id)
            .field("namespace", &self.namespace)
            .field("image_id", &self.image_id)
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl Fault {
    /// Every call of `method` fails with the error `make` builds from the
    /// call (e.g. [`timeout`], [`undecodable`], or a closure returning any
    /// [`Error`]). Narrow it with the other methods.
    pub fn on(method: Method, make: impl Fn(&Call) -> Error + Send + Sync + 'static) -> Fault {
        Fault {
            method,
            pool_id: None,
            namespace: None,
            image_id: None,
            remaining: None,
            make: Arc::new(make),
        }
    }

    /// Only calls on this pool.
    pub fn pool(mut self, pool_id: PoolId) -> Fault {
        self.pool_id = Some(pool_id);
        self
    }

    /// Only calls in this namespace (`""` for the default one).
    pub fn namespace(mut self, namespace: &str) -> Fault {
        self.namespace = Some(namespace.into());
        self
    }

    /// Only calls about this image.
    pub fn image(mut self, image_id: &str) -> Fault {
        self.image_id = Some(image_id.into());
        self
    }

    /// Only the first `n` matching calls fail; later ones succeed.
    pub fn times(mut self, n: u64) -> Fault {
        self.remaining = Some(n);
        self
    }

    fn matches(&self, call: &Call) -> bool {
        self.method == call.method
            && self.pool_id.is_none_or(|p| call.pool_id == Some(p))
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| call.namespace.as_ref() == Some(n))
            && self
                .image_id
                .as_ref()
                .is_none_or(|i| call.image_id.as_ref() == Some(i))
            && self.remaining != Some(0)
    }
}

/// A timeout (`ETIMEDOUT`) as librados reports it for this call: a
/// [`Error::MonCommand`] for [`Method::Pools`], else an [`Error::Rados`].
pub fn timeout(call: &Call) -> Error {
    rados_error(call, -libc_errno::ETIMEDOUT)
}

/// The error `RadosConn` gives when this call fails with the negative
/// errno `code`.
pub fn rados_error(call: &Call, code: i32) -> Error {
    if call.method == Method::Pools {
        return Error::MonCommand {
            command: call.object.clone(),
            code,
            message: String::new(),
        };
    }
    Error::Rados {
        what: call.method.what(),
        pool: call.pool_label.clone(),
        object: call.object.clone(),
        code,
    }
}

/// A reply from the call's object that does not decode.
pub fn undecodable(call: &Call) -> Error {
    Error::Decode {
        object: call.object.clone(),
        source: DecodeError {
            field: "fake",
            reason: "injected by the fake cluster".into(),
        },
    }
}

/// A compound read (header or snapshot read) whose step `step` failed
/// with the negative errno `code` while the rest succeeded, as `RadosConn`
/// reports it: `Fault::on(Method::Header, failed_step("list_watchers",
/// -5))`.
pub fn failed_step(step: &'static str, code: i32) -> impl Fn(&Call) -> Error + Send + Sync {
    move |call| Error::PartialRead {
        what: call.method.what(),
        step,
        pool: call.pool_label.clone(),
        object: call.object.clone(),
        code,
    }
}

/// Panics, as a bug in the code under the call would: for testing that a
/// panicking task does not take the exporter down.
pub fn panic(call: &Call) -> Error {
    panic!("injected panic in {:?} on {}", call.method, call.object)
}

/// The error `RadosConn` gives for an omap entry of `object` with key
/// `key` that does not decode.
fn bad_entry_error(object: &str, key: &str) -> Error {
    Error::Decode {
        object: format!("{object} entry {:?}", key.escape_debug().to_string()),
        source: DecodeError {
            field: "fake",
            reason: "undecodable entry injected by the fake cluster".into(),
        },
    }
}

/// One image: its header and its snapshots. Built with chained setters.
///
/// Its header has a version, as a RADOS object does: every read that
/// finds what the header holds (everything but its watchers) changed since
/// the last read gives it a new version from a cluster-wide counter, so a
/// re-created header never repeats an old version (as RADOS' per-PG
/// versions never do). [`FakeImage::frozen_version`] stops that, for
/// testing what a version that fails to move would do.
#[derive(Debug, Clone)]
pub struct FakeImage {
    id: String,
    name: String,
    header: ImageHeader,
    snapshots: Vec<Snapshot>,
    /// The header's version; 0 until first read.
    version: u64,
    /// What the header held (no watchers) and the snapshots at `version`.
    versioned: Option<(ImageHeader, Vec<Snapshot>)>,
    /// True when the version no longer moves.
    frozen: bool,
}

impl FakeImage {
    /// A 1 GiB image with 4 MiB objects, no features, no snapshots, no
    /// watchers, no locks and no parent.
    pub fn new(id: &str, name: &str) -> FakeImage {
        FakeImage {
            id: id.into(),
            name: name.into(),
            header: ImageHeader {
                size: 1 << 30,
                order: 22,
                ..Default::default()
            },
            snapshots: Vec::new(),
            version: 0,
            versioned: None,
            frozen: false,
        }
    }

    /// The header's version stops moving once it has one: a change is
    /// then invisible to [`Conn::watchers_if_unchanged`] (a drift only a
    /// full read finds).
    pub fn frozen_version(mut self) -> FakeImage {
        self.frozen = true;
        self
    }

    /// The header's version now, moved if what it holds changed since it
    /// was last read (taking a new one from `counter`).
    fn current_version(&mut self, counter: &mut u64) -> u64 {
        let mut held = self.header.clone();
        held.watchers.clear();
        held.version = 0;
        let facts = (held, self.snapshots.clone());
        if self.versioned.as_ref() != Some(&facts) && !(self.frozen && self.version != 0) {
            *counter += 1;
            self.version = *counter;
            self.versioned = Some(facts);
        }
        self.version
    }

    /// Replaces the watchers.
    pub fn watchers(mut self, watchers: Vec<Watcher>) -> FakeImage {
        self.header.watchers = watchers;
        self.header.watchers.sort();
        self
    }

    /// Replaces the holders of `rbd_lock`.
    pub fn locks(mut self, locks: Vec<Lock>) -> FakeImage {
        self.header.locks = locks;
        self
    }

    /// Removes a snapshot (and its id from the header).
    pub fn without_snapshot(mut self, id: u64) -> FakeImage {
        self.header.snap_ids.retain(|s| *s != id);
        self.snapshots.retain(|s| s.id != id);
        self
    }

    /// Changes one snapshot in place.
    pub fn change_snapshot(mut self, id: u64, f: impl FnOnce(&mut Snapshot)) -> FakeImage {
        if let Some(s) = self.snapshots.iter_mut().find(|s| s.id == id) {
            f(s);
        }
        self
    }

    /// Drops the parent (a flatten).
    pub fn without_parent(mut self) -> FakeImage {
        self.header.parent = None;
        self
    }

    /// The snapshots.
    pub fn snapshot_list(&self) -> &[Snapshot] {
        &self.snapshots
    }

    /// Provisioned size in bytes.
    pub fn size(mut self, bytes: u64) -> FakeImage {
        self.header.size = bytes;
        self
    }

    /// Feature bits.
    pub fn features(mut self, bits: u64) -> FakeImage {
        self.header.features = bits;
        self
    }

    /// Image flags.
    pub fn flags(mut self, bits: u64) -> FakeImage {
        self.header.flags = bits;
        self
    }

    /// Operation feature bits.
    pub fn op_features(mut self, bits: u64) -> FakeImage {
        self.header.op_features = bits;
        self
    }

    /// Any parent reference.
    pub fn parent(mut self, parent: ParentRef) -> FakeImage {
        self.header.parent = Some(parent);
        self
    }

    /// A clone of snapshot `snap_id` of image `image_id` in `pool_id` /
    /// `namespace`, still reading all of its size through the parent.
    pub fn clone_of(self, pool_id: PoolId, namespace: &str, image_id: &str, snap_id: u64) -> Self {
        let overlap = Some(self.header.size);
        self.parent(ParentRef {
            pool_id,
            namespace: namespace.into(),
            image_id: image_id.into(),
            snap_id,
            overlap,
        })
    }

    /// A watch on the header.
    pub fn watcher(mut self, client: &str, address: &str, cookie: u64) -> FakeImage {
        self.header.watchers.push(Watcher {
            client: client.into(),
            address: address.into(),
            cookie,
        });
        self.header.watchers.sort();
        self
    }

    /// Any holder of `rbd_lock`.
    pub fn lock(mut self, lock: Lock) -> FakeImage {
        self.header.locks.push(lock);
        self
    }

    /// librbd's exclusive lock, held by `locker` for its watch `cookie`.
    pub fn exclusive_lock(self, locker: &str, address: &str, cookie: u64) -> FakeImage {
        self.lock(Lock {
            kind: LockKind::Exclusive,
            locker: locker.into(),
            cookie: format!("auto {cookie}"),
            address: address.into(),
            shared: false,
            tag: "internal".into(),
        })
    }

    /// Any snapshot; its id joins the header's snapshot ids.
    pub fn snapshot_with(mut self, snapshot: Snapshot) -> FakeImage {
        self.header.snap_ids.push(snapshot.id);
        self.snapshots.push(snapshot);
        self
    }

    /// An unprotected user snapshot without children.
    pub fn snapshot(self, id: u64, name: &str) -> FakeImage {
        let size = self.header.size;
        self.snapshot_with(Snapshot {
            id,
            name: name.into(),
            namespace: SnapshotNamespace::User,
            protected: false,
            size,
            v2_children: Vec::new(),
        })
    }

    /// A protected user snapshot without children.
    pub fn protected_snapshot(self, id: u64, name: &str) -> FakeImage {
        let mut image = self.snapshot(id, name);
        if let Some(s) = image.snapshots.last_mut() {
            s.protected = true;
        }
        image
    }

    /// A snapshot id the header lists but whose snapshot is gone by the
    /// snapshot read (removed in between).
    pub fn removed_snapshot(mut self, id: u64) -> FakeImage {
        self.header.snap_ids.push(id);
        self
    }

    /// The header [`Conn::header`] returns.
    pub fn header(&self) -> &ImageHeader {
        &self.header
    }
}

/// What one pool namespace holds.
#[derive(Debug, Clone, Default)]
struct Namespace {
    directory: Vec<(String, String)>,
    trash: Vec<TrashEntry>,
    v1_children: Vec<V1ChildLink>,
    tasks: Vec<QueuedTask>,
    /// Undecodable omap entries: the listing they are in and their key.
    bad_entries: Vec<(Method, String)>,
    /// Names of format 1 images in the directory's data.
    format1: Vec<String>,
    /// Headers (and snapshots) by image id; an id listed above without one
    /// has vanished.
    images: BTreeMap<String, FakeImage>,
}

impl Namespace {
    /// `entries` of the listing of `method`, with its bad entries.
    fn listing<T: Clone>(&self, method: Method, entries: &[T]) -> Listing<T> {
        let object = method.object(None);
        let bad = self.bad_entries.iter().filter(|(m, _)| *m == method);
        Listing {
            entries: entries.to_vec(),
            bad: bad
                .map(|(_, key)| BadEntry {
                    image_id: key
                        .strip_prefix("id_")
                        .filter(|_| matches!(method, Method::Directory | Method::Trash))
                        .map(str::to_owned),
                    error: bad_entry_error(&object, key),
                })
                .collect(),
        }
    }
}

/// The fake cluster's contents and faults, built up with chained calls:
/// [`FakeCluster::builder`], then [`build`](Builder::build). Also what
/// [`FakeCluster::change`] edits.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    pools: Vec<PoolInfo>,
    /// Named namespaces by pool, in the order [`Conn::namespaces`] lists
    /// them.
    namespaces: BTreeMap<PoolId, Vec<String>>,
    data: BTreeMap<Location, Namespace>,
    /// Watchers of each pool's `rbd_mirror_leader`; a pool without an
    /// entry has no such object.
    mirror_daemons: BTreeMap<PoolId, Vec<Watcher>>,
    /// Watchers of each pool's `rbd_mirroring`; a pool without an entry
    /// has no such object.
    mirroring_watchers: BTreeMap<PoolId, Vec<Watcher>>,
    faults: Vec<Fault>,
    latency: Duration,
    /// The last header version handed out (see [`FakeImage`]).
    versions: u64,
}

fn loc(pool_id: PoolId, namespace: &str) -> Location {
    Location {
        pool_id,
        namespace: namespace.into(),
    }
}

impl Builder {
    /// A pool with these applications enabled (`rbd`, `rgw`, ...).
    pub fn pool(mut self, id: PoolId, name: &str, applications: &[&str]) -> Builder {
        self.pools.retain(|p| p.id != id);
        self.pools.push(PoolInfo {
            id,
            name: name.into(),
            applications: applications.iter().map(|a| a.to_string()).collect(),
        });
        self
    }

    /// A pool with the `rbd` application enabled.
    pub fn rbd_pool(self, id: PoolId, name: &str) -> Builder {
        self.pool(id, name, &["rbd"])
    }

    /// Removes a pool from the pool list (its contents stay readable by
    /// id, as for a pool removed during a sample).
    pub fn remove_pool(mut self, id: PoolId) -> Builder {
        self.pools.retain(|p| p.id != id);
        self
    }

    /// A named RBD namespace. Adding anything to a namespace declares it.
    pub fn namespace(mut self, pool_id: PoolId, name: &str) -> Builder {
        self.declare(pool_id, name);
        self
    }

    fn declare(&mut self, pool_id: PoolId, name: &str) {
        if !name.is_empty() {
            let names = self.namespaces.entry(pool_id).or_default();
            if !names.iter().any(|n| n == name) {
                names.push(name.into());
            }
        }
    }

    fn ns(&mut self, pool_id: PoolId, namespace: &str) -> &mut Namespace {
        self.declare(pool_id, namespace);
        self.data.entry(loc(pool_id, namespace)).or_default()
    }

    /// An image listed in `rbd_directory`, with its header.
    pub fn image(mut self, pool_id: PoolId, namespace: &str, image: FakeImage) -> Builder {
        let ns = self.ns(pool_id, namespace);
        ns.directory.push((image.id.clone(), image.name.clone()));
        ns.images.insert(image.id.clone(), image);
        self
    }

    /// An image in the trash (moved there by a user at time 0), with its
    /// header.
    pub fn trashed(mut self, pool_id: PoolId, namespace: &str, image: FakeImage) -> Builder {
        let ns = self.ns(pool_id, namespace);
        ns.trash.push(TrashEntry {
            id: image.id.clone(),
            name: image.name.clone(),
            source: "user".into(),
            deletion_time: 0,
            deferment_end_time: 0,
            state: "normal".into(),
        });
        ns.images.insert(image.id.clone(), image);
        self
    }

    /// Any `rbd_trash` entry, without a header (add one with
    /// [`header_only`](Self::header_only)).
    pub fn trash_entry(mut self, pool_id: PoolId, namespace: &str, entry: TrashEntry) -> Builder {
        self.ns(pool_id, namespace).trash.push(entry);
        self
    }

    /// An image header listed in neither `rbd_directory` nor `rbd_trash`.
    pub fn header_only(mut self, pool_id: PoolId, namespace: &str, image: FakeImage) -> Builder {
        let ns = self.ns(pool_id, namespace);
        ns.images.insert(image.id.clone(), image);
        self
    }

    /// An image listed in `rbd_directory` whose header is gone by the time
    /// it is read: [`Conn::header`] and [`Conn::snapshots`] give `Ok(None)`.
    pub fn vanishing(mut self, pool_id: PoolId, namespace: &str, id: &str, name: &str) -> Self {
        let ns = self.ns(pool_id, namespace);
        ns.directory.push((id.into(), name.into()));
        ns.images.remove(id);
        self
    }

    /// Changes an image's header or snapshots in place (its version then
    /// moves on the next read, as a RADOS object's does).
    pub fn change_image(
        mut self,
        pool_id: PoolId,
        namespace: &str,
        id: &str,
        f: impl FnOnce(FakeImage) -> FakeImage,
    ) -> Builder {
        let ns = self.ns(pool_id, namespace);
        if let Some(image) = ns.images.remove(id) {
            ns.images.insert(id.to_string(), f(image));
        }
        self
    }

    /// Renames an image in `rbd_directory` (its header does not change,
    /// as with `rbd rename`).
    pub fn rename_image(mut self, pool_id: PoolId, namespace: &str, id: &str, name: &str) -> Self {
        let ns = self.ns(pool_id, namespace);
        for entry in ns.directory.iter_mut().filter(|(i, _)| i == id) {
            entry.1 = name.to_string();
        }
        if let Some(image) = ns.images.get_mut(id) {
            image.name = name.to_string();
        }
        self
    }

    /// Moves an image from `rbd_directory` to `rbd_trash` (`rbd trash
    /// mv`); its header does not change.
    pub fn trash_image(mut self, pool_id: PoolId, namespace: &str, id: &str) -> Builder {
        let ns = self.ns(pool_id, namespace);
        let Some(pos) = ns.directory.iter().position(|(i, _)| i == id) else {
            return self;
        };
        let (id, name) = ns.directory.remove(pos);
        ns.trash.push(TrashEntry {
            id,
            name,
            source: "user".into(),
            deletion_time: 0,
            deferment_end_time: 0,
            state: "normal".into(),
        });
        self
    }

    /// Moves an image from `rbd_trash` back to `rbd_directory` (`rbd trash
    /// restore`).
    pub fn restore_image(mut self, pool_id: PoolId, namespace: &str, id: &str) -> Builder {
        let ns = self.ns(pool_id, namespace);
        let Some(pos) = ns.trash.iter().position(|t| t.id == id) else {
            return self;
        };
        let entry = ns.trash.remove(pos);
        ns.directory.push((entry.id, entry.name));
        self
    }

    /// Removes an image: directory and trash entries and header.
    pub fn remove_image(mut self, pool_id: PoolId, namespace: &str, id: &str) -> Builder {
        let ns = self.ns(pool_id, namespace);
        ns.directory.retain(|(i, _)| i != id);
        ns.trash.retain(|t| t.id != id);
        ns.images.remove(id);
        self
    }

    /// An `rbd_children` entry (v1 clones of a parent snapshot).
    pub fn v1_children(mut self, pool_id: PoolId, namespace: &str, link: V1ChildLink) -> Self {
        self.ns(pool_id, namespace).v1_children.push(link);
        self
    }

    /// An omap entry with key `key` that does not decode, in the listing
    /// of `method` ([`Method::Directory`], [`Method::Trash`],
    /// [`Method::V1Children`] or [`Method::Tasks`]). In the directory and
    /// the trash, a key `id_<id>` names the image `<id>`.
    pub fn bad_entry(
        mut self,
        pool_id: PoolId,
        namespace: &str,
        method: Method,
        key: &str,
    ) -> Self {
        let ns = self.ns(pool_id, namespace);
        ns.bad_entries.push((method, key.into()));
        self
    }

    /// A format 1 image, listed by name in the directory's data.
    pub fn format1_image(mut self, pool_id: PoolId, namespace: &str, name: &str) -> Builder {
        self.ns(pool_id, namespace).format1.push(name.into());
        self
    }

    /// An `rbd_task` entry.
    pub fn task(mut self, pool_id: PoolId, namespace: &str, task: QueuedTask) -> Builder {
        self.ns(pool_id, namespace).tasks.push(task);
        self
    }

    /// An rbd-mirror daemon's watch on the pool's `rbd_mirror_leader`.
    pub fn mirror_daemon(mut self, pool_id: PoolId, client: &str, address: &str) -> Builder {
        let daemons = self.mirror_daemons.entry(pool_id).or_default();
        daemons.push(Watcher {
            client: client.into(),
            address: address.into(),
            cookie: daemons.len() as u64 + 1,
        });
        self
    }

    /// A watch on the pool's `rbd_mirroring`: an rbd-mirror daemon's, e.g.
    /// a remote daemon's peer connection to this (primary) site.
    pub fn mirroring_watcher(mut self, pool_id: PoolId, client: &str, address: &str) -> Builder {
        let watchers = self.mirroring_watchers.entry(pool_id).or_default();
        watchers.push(Watcher {
            client: client.into(),
            address: address.into(),
            cookie: watchers.len() as u64 + 1,
        });
        self
    }

    /// Injects an error; the first fault that matches a call wins.
    pub fn fault(mut self, fault: Fault) -> Builder {
        self.faults.push(fault);
        self
    }

    /// Removes every fault.
    pub fn clear_faults(mut self) -> Builder {
        self.faults.clear();
        self
    }

    /// Every call waits this long (on the tokio clock) before it answers,
    /// so calls overlap as real ones do.
    pub fn latency(mut self, latency: Duration) -> Builder {
        self.latency = latency;
        self
    }

    /// The cluster.
    pub fn build(self) -> Arc<FakeCluster> {
        Arc::new(FakeCluster {
            state: Mutex::new(self),
            calls: Mutex::new(Vec::new()),
            ops_sent: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            inflight_peak: AtomicUsize::new(0),
        })
    }
}

/// An in-memory cluster; see the [module documentation](self).
#[derive(Debug)]
pub struct FakeCluster {
    state: Mutex<Builder>,
    calls: Mutex<Vec<Call>>,
    ops_sent: AtomicU64,
    inflight: AtomicUsize,
    inflight_peak: AtomicUsize,
}

/// Counts one call in flight until dropped.
struct InFlight<'a>(&'a FakeCluster);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeCluster {
    /// An empty cluster to fill in.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Changes the cluster between (or during) samples with the builder's
    /// methods, e.g. `cluster.change(|c| c.remove_image(1, "", "a"))`.
    pub fn change(&self, f: impl FnOnce(Builder) -> Builder) {
        let mut state = self.lock_state();
        *state = f(std::mem::take(&mut *state));
    }

    /// Every call so far, in the order they were made.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Calls of `method` so far.
    pub fn count(&self, method: Method) -> usize {
        self.count_where(|c| c.method == method)
    }

    /// Calls so far for which `pred` holds.
    pub fn count_where(&self, pred: impl Fn(&Call) -> bool) -> usize {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.iter().filter(|c| pred(c)).count()
    }

    /// Forgets the calls logged so far ([`Conn::ops_sent`] keeps counting).
    pub fn clear_calls(&self) {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Most calls in progress at once so far.
    pub fn inflight_peak(&self) -> usize {
        self.inflight_peak.load(Ordering::SeqCst)
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, Builder> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn call(&self, method: Method, loc: Option<&Location>, image_id: Option<&str>) -> Call {
        let state = self.lock_state();
        let pool_label = match loc {
            None => String::new(),
            Some(l) => {
                let name = state.pools.iter().find(|p| p.id == l.pool_id);
                let pool = name.map_or_else(|| l.pool_id.to_string(), |p| p.name.clone());
                match method {
                    Method::Namespaces => pool,
                    _ if l.namespace.is_empty() => pool,
                    _ => format!("{pool}/{}", l.namespace),
                }
            }
        };
        Call {
            method,
            pool_id: loc.map(|l| l.pool_id),
            namespace: loc
                .filter(|_| method != Method::Namespaces)
                .map(|l| l.namespace.clone()),
            image_id: image_id.map(str::to_owned),
            pool_label,
            object: method.object(image_id),
        }
    }

    /// Logs and counts a call, waits the latency, then fails it if a fault
    /// matches or its pool does not exist. The guard counts it in flight.
    async fn enter(
        &self,
        method: Method,
        loc: Option<&Location>,
        image_id: Option<&str>,
    ) -> Result<InFlight<'_>, Error> {
        let n = self.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        self.inflight_peak.fetch_max(n, Ordering::SeqCst);
        let guard = InFlight(self);
        let call = self.call(method, loc, image_id);
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call.clone());
        self.ops_sent.fetch_add(1, Ordering::Relaxed);
        let latency = self.lock_state().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut state = self.lock_state();
        if let Some(fault) = state.faults.iter_mut().find(|f| f.matches(&call)) {
            if let Some(n) = fault.remaining.as_mut() {
                *n -= 1;
            }
            return Err((fault.make)(&call));
        }
        if loc.is_some_and(|l| !state.pools.iter().any(|p| p.id == l.pool_id)) {
            // What librados says when opening the I/O context of a pool
            // that does not exist.
            return Err(Error::Rados {
                what: "opening pool",
                pool: call.pool_label,
                object: String::new(),
                code: -libc_errno::ENOENT,
            });
        }
        Ok(guard)
    }

    /// Reads one image with its header's version now; `None` when it has
    /// no header.
    fn read_image<T>(
        &self,
        loc: &Location,
        image_id: &str,
        f: impl FnOnce(&FakeImage, u64) -> T,
    ) -> Option<T> {
        let mut state = self.lock_state();
        let Builder { data, versions, .. } = &mut *state;
        let image = data.get_mut(loc)?.images.get_mut(image_id)?;
        let version = image.current_version(versions);
        Some(f(image, version))
    }

    /// Reads from one namespace's contents (empty when it has none).
    fn read<T>(&self, loc: &Location, f: impl FnOnce(&Namespace) -> T) -> T {
        let state = self.lock_state();
        match state.data.get(loc) {
            Some(ns) => f(ns),
            None => f(&Namespace::default()),
        }
    }
}

impl Conn for FakeCluster {
    async fn pools(&self) -> Result<Vec<PoolInfo>, Error> {
        let _g = self.enter(Method::Pools, None, None).await?;
        Ok(self.lock_state().pools.clone())
    }

    async fn namespaces(&self, pool: &PoolInfo) -> Result<Vec<String>, Error> {
        let l = loc(pool.id, "");
        let _g = self.enter(Method::Namespaces, Some(&l), None).await?;
        let state = self.lock_state();
        Ok(state.namespaces.get(&pool.id).cloned().unwrap_or_default())
    }

    async fn directory(&self, loc: &Location) -> Result<Directory, Error> {
        let _g = self.enter(Method::Directory, Some(loc), None).await?;
        Ok(self.read(loc, |ns| Directory {
            images: ns.listing(Method::Directory, &ns.directory),
            format1: ns.format1.clone(),
        }))
    }

    async fn trash(&self, loc: &Location) -> Result<Listing<TrashEntry>, Error> {
        let _g = self.enter(Method::Trash, Some(loc), None).await?;
        Ok(self.read(loc, |ns| ns.listing(Method::Trash, &ns.trash)))
    }

    async fn v1_children(&self, loc: &Location) -> Result<Listing<V1ChildLink>, Error> {
        let _g = self.enter(Method::V1Children, Some(loc), None).await?;
        Ok(self.read(loc, |ns| ns.listing(Method::V1Children, &ns.v1_children)))
    }

    async fn tasks(&self, loc: &Location) -> Result<Listing<QueuedTask>, Error> {
        let _g = self.enter(Method::Tasks, Some(loc), None).await?;
        Ok(self.read(loc, |ns| ns.listing(Method::Tasks, &ns.tasks)))
    }

    async fn header(&self, loc: &Location, image_id: &str) -> Result<Option<ImageHeader>, Error> {
        let _g = self
            .enter(Method::Header, Some(loc), Some(image_id))
            .await?;
        Ok(
            self.read_image(loc, image_id, |image, version| ImageHeader {
                version,
                ..image.header.clone()
            }),
        )
    }

    async fn watchers_if_unchanged(
        &self,
        loc: &Location,
        image_id: &str,
        version: u64,
    ) -> Result<HeaderCheck, Error> {
        let _g = self
            .enter(Method::Watchers, Some(loc), Some(image_id))
            .await?;
        let found = self.read_image(loc, image_id, |image, now| {
            (now == version).then(|| image.header.watchers.clone())
        });
        Ok(match found {
            None => HeaderCheck::Gone,
            Some(None) => HeaderCheck::Changed,
            Some(Some(watchers)) => HeaderCheck::Unchanged(watchers),
        })
    }

    async fn snapshots(
        &self,
        loc: &Location,
        image_id: &str,
        snap_ids: &[u64],
    ) -> Result<Option<Vec<Snapshot>>, Error> {
        let _g = self
            .enter(Method::Snapshots, Some(loc), Some(image_id))
            .await?;
        Ok(self.read(loc, |ns| {
            let image = ns.images.get(image_id)?;
            // Snapshots removed since the header read are simply gone.
            let found = |id: &u64| image.snapshots.iter().find(|s| s.id == *id).cloned();
            Some(snap_ids.iter().filter_map(found).collect())
        }))
    }

    async fn image_name(
        &self,
        loc: &Location,
        image_id: &str,
    ) -> Result<Option<(String, bool)>, Error> {
        let _g = self
            .enter(Method::ImageName, Some(loc), Some(image_id))
            .await?;
        Ok(self.read(loc, |ns| {
            let listed = ns.directory.iter().find(|(id, _)| id == image_id);
            let trashed = || ns.trash.iter().find(|t| t.id == image_id);
            match listed {
                Some((_, name)) => Some((name.clone(), false)),
                None => trashed().map(|t| (t.name.clone(), true)),
            }
        }))
    }

    async fn mirror_daemons(&self, pool: &PoolInfo) -> Result<Vec<Watcher>, Error> {
        let l = loc(pool.id, "");
        let _g = self.enter(Method::MirrorDaemons, Some(&l), None).await?;
        let state = self.lock_state();
        Ok(state
            .mirror_daemons
            .get(&pool.id)
            .cloned()
            .unwrap_or_default())
    }

    async fn mirroring_watchers(&self, pool: &PoolInfo) -> Result<Vec<Watcher>, Error> {
        let l = loc(pool.id, "");
        let _g = self
            .enter(Method::MirroringWatchers, Some(&l), None)
            .await?;
        let state = self.lock_state();
        Ok(state
            .mirroring_watchers
            .get(&pool.id)
            .cloned()
            .unwrap_or_default())
    }

    fn ops_sent(&self) -> u64 {
        self.ops_sent.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Arc<FakeCluster> {
        FakeCluster::builder()
            .rbd_pool(1, "images")
            .image(
                1,
                "",
                FakeImage::new("g", "golden").protected_snapshot(4, "base"),
            )
            .rbd_pool(2, "volumes")
            .image(
                2,
                "t",
                FakeImage::new("c", "clone")
                    .clone_of(1, "", "g", 4)
                    .watcher("client.9", "10.0.0.9:0/1", 7)
                    .exclusive_lock("client.9", "10.0.0.9:0/1", 7)
                    .removed_snapshot(3)
                    .snapshot(5, "s5"),
            )
            .vanishing(2, "t", "v", "gone")
            .trashed(2, "", FakeImage::new("x", "old"))
            .build()
    }

    #[tokio::test]
    async fn serves_what_the_scenario_says() {
        let c = scenario();
        let pools = c.pools().await.unwrap();
        assert_eq!(pools.len(), 2);
        assert_eq!(c.namespaces(&pools[1]).await.unwrap(), vec!["t"]);
        assert!(c.namespaces(&pools[0]).await.unwrap().is_empty());
        let t = loc(2, "t");
        let dir = c.directory(&t).await.unwrap();
        assert_eq!(dir.images.entries.len(), 2);
        let h = c.header(&t, "c").await.unwrap().unwrap();
        assert_eq!(h.parent.as_ref().unwrap().image_id, "g");
        assert_eq!(h.snap_ids, vec![3, 5]);
        assert_eq!(h.locks[0].watch_cookie(), Some(h.watchers[0].cookie));
        let snaps = c.snapshots(&t, "c", &h.snap_ids).await.unwrap().unwrap();
        assert_eq!(snaps.iter().map(|s| s.id).collect::<Vec<_>>(), vec![5]);
        assert_eq!(c.header(&t, "v").await.unwrap(), None);
        assert_eq!(c.snapshots(&t, "v", &[1]).await.unwrap(), None);
        let d = loc(2, "");
        assert_eq!(c.trash(&d).await.unwrap().entries[0].id, "x");
        assert_eq!(
            c.image_name(&d, "x").await.unwrap(),
            Some(("old".into(), true))
        );
        assert_eq!(
            c.image_name(&t, "c").await.unwrap(),
            Some(("clone".into(), false))
        );
        assert_eq!(c.image_name(&t, "nope").await.unwrap(), None);
        assert_eq!(c.ops_sent(), 12);
        assert_eq!(c.count(Method::Header), 2);
    }

    #[tokio::test]
    async fn faults_hit_matching_calls_only_as_often_as_asked() {
        let c = scenario();
        c.change(|b| {
            b.fault(
                Fault::on(Method::Header, timeout)
                    .pool(2)
                    .namespace("t")
                    .image("c")
                    .times(2),
            )
        });
        let t = loc(2, "t");
        for _ in 0..2 {
            let e = c.header(&t, "c").await.unwrap_err();
            assert_eq!(e.metric_label(), "timeout");
            assert!(e.to_string().contains("volumes/t/rbd_header.c"), "{e}");
        }
        assert!(c.header(&t, "c").await.unwrap().is_some());
        assert!(c.header(&loc(1, ""), "g").await.unwrap().is_some());
        assert_eq!(c.count(Method::Header), 4);
        assert_eq!(c.ops_sent(), 4);

        c.change(|b| b.fault(Fault::on(Method::Directory, undecodable)));
        let e = c.directory(&loc(1, "")).await.unwrap_err();
        assert_eq!(e.metric_label(), "decode");
        c.change(|b| {
            b.clear_faults()
                .fault(Fault::on(Method::Pools, |_| Error::Config("boom".into())))
        });
        assert_eq!(c.pools().await.unwrap_err().to_string(), "boom");
        c.change(|b| b.clear_faults().fault(Fault::on(Method::Pools, timeout)));
        assert_eq!(c.pools().await.unwrap_err().metric_label(), "timeout");
    }

    #[tokio::test]
    async fn unknown_pools_fail_like_librados_and_changes_apply() {
        let c = scenario();
        let e = c.directory(&loc(99, "")).await.unwrap_err();
        let enoent = -crate::error::libc_errno::ENOENT;
        assert!(
            matches!(e, Error::Rados { code, .. } if code == enoent),
            "{e}"
        );
        c.change(|b| b.remove_image(2, "t", "c").namespace(2, "u"));
        assert_eq!(c.header(&loc(2, "t"), "c").await.unwrap(), None);
        let pools = c.pools().await.unwrap();
        assert_eq!(c.namespaces(&pools[1]).await.unwrap(), vec!["t", "u"]);
        c.clear_calls();
        assert!(c.calls().is_empty());
    }

    #[tokio::test]
    async fn latency_makes_calls_overlap() {
        let c = FakeCluster::builder()
            .rbd_pool(1, "p")
            .latency(Duration::from_millis(10))
            .build();
        let l = loc(1, "");
        let (a, b) = tokio::join!(c.directory(&l), c.trash(&l));
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(c.inflight_peak(), 2);
    }
}
