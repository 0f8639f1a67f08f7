//! Everything that touches the cluster. The rest of the exporter sees only the
//! [`Conn`] trait and plain data.
//!
//! Layout:
//!
//! * `connection.rs`: [`ConnectOptions`], [`RadosConn`]'s set-up, the
//!   cluster handle, mon commands and their JSON replies;
//! * `access.rs`: reaching the cluster without a ceph.conf: the checked
//!   mon addresses of `--ceph.mon-host` ([`MonHost`]) and the cephx key of
//!   `--ceph.key-file` or `CEPH_RBD_EXPORTER_CEPH_KEY` ([`KeySource`]);
//! * `conn_impl.rs`: the [`Conn`] implementation of [`RadosConn`] (the
//!   compound reads);
//! * `throttle.rs`: in-flight accounting and the ops-per-second pacer;
//! * `batch.rs` and `ffi.rs`: the unsafe wrappers around the C++ shim
//!   (`shim.cc`) that builds, submits and reads compound reads;
//! * [`decode`]: bounds-checked decoders of the binary replies;
//! * `keytype.rs`: the type of the cephx key librados is to load, and
//!   whether the loaded librados (whose Ceph release it looks up) reads it;
//! * `rbd.rs`: RBD domain rules (lock kinds, rbd_support tasks, ...) that
//!   turn decoded replies into the model's types;
//! * [`fake`]: an in-memory cluster implementing [`Conn`], for tests.

mod access;
mod batch;
mod conn_impl;
mod connection;
pub mod decode;
pub mod fake;
mod ffi;
mod keytype;
mod rbd;
mod throttle;

pub use access::{AccessError, CephKey, KEY_ENV, KeySource, MonHost};
pub use connection::{ConnectOptions, RadosConn};
pub use keytype::{
    CephVersion, KeyProblem, KeyType, keyring_key_type, keyring_keys, loaded_ceph_version,
};

use crate::error::Error;
use crate::model::{
    Location, Lock, ParentRef, PoolId, QueuedTask, Snapshot, TrashEntry, V1ChildLink, Watcher,
};
use std::future::Future;

/// A pool as the mon lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    /// Pool id.
    pub id: PoolId,
    /// Pool name.
    pub name: String,
    /// Applications enabled on the pool (`rbd`, `rgw`, `cephfs`, ...).
    pub applications: Vec<String>,
}

/// The facts one compound read of `rbd_header.<id>` gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageHeader {
    /// Provisioned size in bytes.
    pub size: u64,
    /// Object size order.
    pub order: u8,
    /// Feature bits.
    pub features: u64,
    /// Image flags.
    pub flags: u64,
    /// Operation feature bits.
    pub op_features: u64,
    /// Snapshot ids from the snap context.
    pub snap_ids: Vec<u64>,
    /// Parent of a clone.
    pub parent: Option<ParentRef>,
    /// Watchers of the header object.
    pub watchers: Vec<Watcher>,
    /// Holders of `rbd_lock`.
    pub locks: Vec<Lock>,
    /// The header object's version this read saw (its RADOS user version;
    /// 0 when unknown). Every change of what the header holds (size,
    /// features, flags, parent, snapshots and their children, locks) moves
    /// it; a watch does not. See [`Conn::watchers_if_unchanged`].
    pub version: u64,
}

/// What a light read of a header ([`Conn::watchers_if_unchanged`]) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderCheck {
    /// The header is still at the version asked about: everything it
    /// holds is as read then. Its watchers now.
    Unchanged(Vec<Watcher>),
    /// The header moved to another version: read it in full.
    Changed,
    /// The header object does not exist (the image is gone).
    Gone,
}

/// An omap entry that did not decode, left out of its listing.
#[derive(Debug)]
pub struct BadEntry {
    /// The image the entry is about, when its key names one (`id_<id>`
    /// in `rbd_directory` and `rbd_trash`).
    pub image_id: Option<String>,
    /// What did not decode, naming the object and the key.
    pub error: Error,
}

/// The entries of one omap listing that decoded, and those that did not:
/// one bad entry never hides the others.
#[derive(Debug)]
pub struct Listing<T> {
    /// Entries that decoded, in key order.
    pub entries: Vec<T>,
    /// Entries that did not.
    pub bad: Vec<BadEntry>,
}

impl<T> Default for Listing<T> {
    fn default() -> Self {
        Listing {
            entries: Vec::new(),
            bad: Vec::new(),
        }
    }
}

impl<T> Listing<T> {
    /// A listing of entries that all decoded.
    pub fn of(entries: Vec<T>) -> Listing<T> {
        Listing {
            entries,
            bad: Vec::new(),
        }
    }
}

/// What one `rbd_directory` lists.
#[derive(Debug, Default)]
pub struct Directory {
    /// Format 2 images (omap keys `id_<id>`): id and name pairs, and the
    /// entries that did not decode.
    pub images: Listing<(String, String)>,
    /// Names of format 1 images, from the object's data (a TMAP holding
    /// names only; their headers are `<name>.rbd`).
    pub format1: Vec<String>,
}

/// What the sampler needs from a cluster. Every method is one or a few
/// RADOS round trips; none opens an image with librbd.
///
/// Methods that read one object return `Ok(None)` when the object does not
/// exist (an image removed during the sample), never an error.
pub trait Conn: Send + Sync + 'static {
    /// Every pool in the cluster.
    fn pools(&self) -> impl Future<Output = Result<Vec<PoolInfo>, Error>> + Send;
    /// RBD namespaces of a pool, without the default one.
    fn namespaces(
        &self,
        pool: &PoolInfo,
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send;
    /// `rbd_directory`: image id and name pairs, and the names of format 1
    /// images. An entry that does not decode is left out and returned as
    /// a [`BadEntry`]; only a failed read of the object is an error.
    fn directory(&self, loc: &Location) -> impl Future<Output = Result<Directory, Error>> + Send;
    /// `rbd_trash` entries (bad entries as for [`Conn::directory`]).
    fn trash(
        &self,
        loc: &Location,
    ) -> impl Future<Output = Result<Listing<TrashEntry>, Error>> + Send;
    /// `rbd_children`: v1 clone links whose children are in this location
    /// (bad entries as for [`Conn::directory`]).
    fn v1_children(
        &self,
        loc: &Location,
    ) -> impl Future<Output = Result<Listing<V1ChildLink>, Error>> + Send;
    /// `rbd_task`: tasks queued by the mgr (bad entries as for
    /// [`Conn::directory`]).
    fn tasks(
        &self,
        loc: &Location,
    ) -> impl Future<Output = Result<Listing<QueuedTask>, Error>> + Send;
    /// One compound read of `rbd_header.<image_id>`. A step of it that
    /// fails (other than one whose failure means "absent", see
    /// `conn_impl.rs`) fails the read with [`Error::PartialRead`].
    fn header(
        &self,
        loc: &Location,
        image_id: &str,
    ) -> impl Future<Output = Result<Option<ImageHeader>, Error>> + Send;
    /// One light read of `rbd_header.<image_id>`: its watchers, provided
    /// the header is still at `version` (a RADOS `assert_version` and
    /// `list_watchers` in one operation, no cls call). A watch does not
    /// move the version; a lock, a snapshot, a parent, a feature or a
    /// child list change does, and is then [`HeaderCheck::Changed`].
    fn watchers_if_unchanged(
        &self,
        loc: &Location,
        image_id: &str,
        version: u64,
    ) -> impl Future<Output = Result<HeaderCheck, Error>> + Send;
    /// One compound read of the snapshots `snap_ids` of an image; a failed
    /// step fails it as for [`Conn::header`].
    fn snapshots(
        &self,
        loc: &Location,
        image_id: &str,
        snap_ids: &[u64],
    ) -> impl Future<Output = Result<Option<Vec<Snapshot>>, Error>> + Send;
    /// The name of one image, from `rbd_directory` or else `rbd_trash`
    /// (then flagged `true`); `None` if it is in neither.
    fn image_name(
        &self,
        loc: &Location,
        image_id: &str,
    ) -> impl Future<Output = Result<Option<(String, bool)>, Error>> + Send;
    /// Watchers of the pool's `rbd_mirror_leader` object: every rbd-mirror
    /// daemon replaying into this pool watches it. Empty when the object
    /// does not exist (no daemon ever served the pool); any other failure
    /// is an error, never an empty list.
    fn mirror_daemons(
        &self,
        pool: &PoolInfo,
    ) -> impl Future<Output = Result<Vec<Watcher>, Error>> + Send;
    /// Watchers of the pool's `rbd_mirroring` object: the rbd-mirror
    /// daemons of this site and, on a primary site, the peer connections
    /// of the remote sites' daemons (which watch no `rbd_mirror_leader`
    /// here). Empty when the object does not exist (mirroring never
    /// enabled); any other failure is an error, never an empty list.
    fn mirroring_watchers(
        &self,
        pool: &PoolInfo,
    ) -> impl Future<Output = Result<Vec<Watcher>, Error>> + Send;
    /// RADOS operations sent so far (each compound read counts once).
    fn ops_sent(&self) -> u64;
}

/// `s` as a C string, or a configuration error naming `what` when it holds
/// a NUL byte.
fn cstring(s: &str, what: &str) -> Result<std::ffi::CString, Error> {
    std::ffi::CString::new(s)
        .map_err(|_| Error::Config(format!("{what} contains a NUL byte: {s:?}")))
}
