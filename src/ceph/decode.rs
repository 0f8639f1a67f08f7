//! Bounds-checked decoders for the binary replies of Ceph Pacific (16.2)
//! `cls_rbd` and `cls_lock` methods and for RBD omap values, plus the two
//! small input encoders the exporter needs.
//!
//! Every reply is untrusted input: nothing here panics, indexes out of
//! bounds, overflows, or allocates more than the bytes actually present
//! (every length or count read from the wire is checked against the bytes
//! that remain *before* anything is allocated for it).
//!
//! Ceph's encoding, as far as it matters here (all integers little-endian):
//!
//! * integers are fixed width; `bool` is one byte;
//! * `std::string` and `bufferlist`: `u32` length, then that many bytes
//!   (decoded here as lossy UTF-8);
//! * `std::vector`/`std::set`/`std::map`: `u32` count, then the elements;
//! * `std::optional<T>`: `u8` present flag, then `T` when non-zero;
//! * `utime_t`: `u32` seconds, `u32` nanoseconds;
//! * versioned structs (`ENCODE_START(v, compat, bl)`): `u8 struct_v`,
//!   `u8 compat_v`, `u32 struct_len`, then `struct_len` bytes. A decoder
//!   reads the fields it knows from inside that window and skips whatever a
//!   newer version appended; a `compat_v` newer than the version the decoder
//!   was written for means the layout changed incompatibly and is rejected.
//!
//! Top-level decoders ignore bytes after the value they decode (that is what
//! Ceph's own clients do), except [`children_key`], which must match an
//! `rbd_children` key exactly.

use std::net::{Ipv4Addr, Ipv6Addr};

pub use crate::error::DecodeError;

/// Result of a decoder.
pub type Result<T> = std::result::Result<T, DecodeError>;

/// `CEPH_NOSNAP`, the snap id that means "the image head" in cls_rbd inputs.
/// Note that it is `(u64)-2`; `(u64)-1` is `CEPH_SNAPDIR`, which cls_rbd
/// treats as a (missing) snapshot id.
pub const CEPH_NOSNAP: u64 = u64::MAX - 1;

/// `AF_INET` on Linux, the value stored in an encoded sockaddr.
const AF_INET: u16 = 2;
/// `AF_INET6` on Linux.
const AF_INET6: u16 = 10;
/// `sizeof(struct sockaddr_in)` on Linux.
const SOCKADDR_IN_LEN: usize = 16;
/// `sizeof(struct sockaddr_in6)` on Linux, also the size of the sockaddr
/// union inside `entity_addr_t`.
const SOCKADDR_IN6_LEN: usize = 28;
/// `sizeof(struct sockaddr_storage)`, the size of a legacy encoded address.
const SOCKADDR_STORAGE_LEN: usize = 128;

// ---------------------------------------------------------------------------
// Cursor
// ---------------------------------------------------------------------------

/// A cursor over untrusted bytes. Every read checks the remaining length
/// first and reports the field it was reading.
#[derive(Debug, Clone)]
struct Reader<'a> {
    /// The bytes not read yet.
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next `n` bytes.
    fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        match self.buf.split_at_checked(n) {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(head)
            }
            None => Err(err(
                field,
                format!("truncated: need {n} bytes, {} left", self.buf.len()),
            )),
        }
    }

    /// Takes the next `N` bytes as an array.
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        match self.buf.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(*head)
            }
            None => Err(err(
                field,
                format!("truncated: need {N} bytes, {} left", self.buf.len()),
            )),
        }
    }

    fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(u8::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }

    /// A `utime_t`; returns the seconds.
    fn utime_sec(&mut self, field: &'static str) -> Result<u32> {
        let sec = self.u32(field)?;
        let _nsec = self.u32(field)?;
        Ok(sec)
    }

    /// A `u32`-length-prefixed byte string. The length is checked against
    /// the remaining bytes before anything is taken.
    fn blob(&mut self, field: &'static str) -> Result<&'a [u8]> {
        let len = self.u32(field)?;
        let n = wire_len(len);
        if n > self.remaining() {
            return Err(err(
                field,
                format!("length {len} exceeds the {} bytes left", self.remaining()),
            ));
        }
        self.bytes(n, field)
    }

    /// A `std::string`, decoded as lossy UTF-8.
    fn string(&mut self, field: &'static str) -> Result<String> {
        Ok(String::from_utf8_lossy(self.blob(field)?).into_owned())
    }

    /// A `u32` element count of a container whose elements take at least
    /// `min_elem` bytes each; rejected when the remaining bytes cannot hold
    /// that many elements, so the count can size an allocation safely.
    fn count(&mut self, field: &'static str, min_elem: usize) -> Result<usize> {
        let count = self.u32(field)?;
        let n = wire_len(count);
        let need = n.checked_mul(min_elem.max(1));
        match need {
            Some(need) if need <= self.remaining() => Ok(n),
            _ => Err(err(
                field,
                format!(
                    "count {count} needs at least {min_elem} bytes each, {} left",
                    self.remaining()
                ),
            )),
        }
    }

    /// An `ENCODE_START` header. Returns `struct_v` and a reader limited to
    /// the struct's window; `self` moves past the whole window, so fields a
    /// newer version appended are skipped.
    fn struct_start(&mut self, field: &'static str, known_v: u8) -> Result<(u8, Reader<'a>)> {
        let struct_v = self.u8(field)?;
        let compat_v = self.u8(field)?;
        if compat_v > known_v {
            return Err(err(
                field,
                format!(
                    "encoding version {struct_v} needs a decoder of version {compat_v}, \
                     this one knows version {known_v}"
                ),
            ));
        }
        let len = self.u32(field)?;
        let n = wire_len(len);
        if n > self.remaining() {
            return Err(err(
                field,
                format!(
                    "struct length {len} exceeds the {} bytes left",
                    self.remaining()
                ),
            ));
        }
        let body = self.bytes(n, field)?;
        Ok((struct_v, Reader::new(body)))
    }

    /// Fails unless every byte was consumed.
    fn expect_end(&self, field: &'static str) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(err(
                field,
                format!("{} unexpected trailing bytes", self.buf.len()),
            ))
        }
    }
}

/// A `u32` wire length as `usize` (saturating on exotic targets, where the
/// remaining-bytes check then rejects it).
fn wire_len(len: u32) -> usize {
    usize::try_from(len).unwrap_or(usize::MAX)
}

fn err(field: &'static str, reason: impl Into<String>) -> DecodeError {
    DecodeError {
        field,
        reason: reason.into(),
    }
}

/// Smallest encoding of a `std::string` (an empty one).
const MIN_STRING_LEN: usize = 4;
/// Smallest encoding of a versioned struct (an empty window).
const MIN_STRUCT_LEN: usize = 6;

// ---------------------------------------------------------------------------
// Encoders
// ---------------------------------------------------------------------------

/// A snap id as cls_rbd methods take it (`u64`): the input of `get_size`,
/// `get_features`, `get_flags`, `parent_overlap_get`, `snapshot_get`,
/// `get_protection_status` and `children_list`. Use [`CEPH_NOSNAP`] for the
/// image head.
pub fn encode_snap_id(snap_id: u64) -> Vec<u8> {
    snap_id.to_le_bytes().to_vec()
}

/// The input of `lock.get_info`: `cls_lock_get_info_op`, i.e.
/// `ENCODE_START(1, 1)` around the lock name (`rbd_lock` for RBD images).
pub fn encode_lock_get_info(lock_name: &str) -> Vec<u8> {
    let name = lock_name.as_bytes();
    // A name longer than u32::MAX bytes cannot be sent; clamp rather than panic.
    let name_len = u32::try_from(name.len()).unwrap_or(u32::MAX);
    let name = name.get(..wire_len(name_len)).unwrap_or(name);
    let body_len = name_len.saturating_add(4);
    let mut out = Vec::with_capacity(name.len().saturating_add(10));
    out.push(1); // struct_v
    out.push(1); // compat_v
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(name);
    out
}

/// The input of `rbd.get_features`: the snap id (`u64`) followed by the
/// `read_only` flag (`bool`, here always `true`).
///
/// In Pacific the method decodes the snap id but ignores it (it always
/// answers with the head's features, even for a snap id that does not
/// exist); `read_only` only selects which "incompatible" mask comes back
/// (`RBD_FEATURES_INCOMPATIBLE` for read-only users,
/// `RBD_FEATURES_RW_INCOMPATIBLE` otherwise), which [`features`] ignores.
pub fn encode_get_features(snap_id: u64) -> Vec<u8> {
    let mut out = snap_id.to_le_bytes().to_vec();
    out.push(1);
    out
}

// ---------------------------------------------------------------------------
// Simple cls_rbd replies
// ---------------------------------------------------------------------------

/// `rbd.get_size` reply: object size order (`u8`) and size in bytes (`u64`).
pub fn size(b: &[u8]) -> Result<(u8, u64)> {
    let mut r = Reader::new(b);
    let order = r.u8("get_size.order")?;
    let size = r.u64("get_size.size")?;
    Ok((order, size))
}

/// `rbd.get_features` reply: the feature bits. The reply also carries the
/// incompatible-feature mask (`u64`), which must be present but is ignored.
pub fn features(b: &[u8]) -> Result<u64> {
    let mut r = Reader::new(b);
    let features = r.u64("get_features.features")?;
    let _incompatible = r.u64("get_features.incompatible")?;
    Ok(features)
}

/// `rbd.get_flags` reply: the image (or snapshot) flags (`u64`).
pub fn flags(b: &[u8]) -> Result<u64> {
    Reader::new(b).u64("get_flags.flags")
}

/// `rbd.op_features_get` reply: the operation feature bits (`u64`).
pub fn op_features(b: &[u8]) -> Result<u64> {
    Reader::new(b).u64("op_features_get.op_features")
}

/// `rbd.get_snapcontext` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapContext {
    /// Highest snapshot id ever allocated for the image (`snap_seq`).
    pub seq: u64,
    /// Ids of the existing snapshots, newest first.
    pub snaps: Vec<u64>,
}

/// `rbd.get_snapcontext` reply: `u64 seq`, then `vector<snapid_t>`.
pub fn snapcontext(b: &[u8]) -> Result<SnapContext> {
    let mut r = Reader::new(b);
    let seq = r.u64("snapcontext.seq")?;
    let n = r.count("snapcontext.snaps", 8)?;
    let mut snaps = Vec::with_capacity(n);
    for _ in 0..n {
        snaps.push(r.u64("snapcontext.snaps")?);
    }
    Ok(SnapContext { seq, snaps })
}

/// The parent of a clone (`cls::rbd::ParentImageSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentSpec {
    /// Pool id of the parent image.
    pub pool_id: i64,
    /// RBD namespace of the parent image (empty for the default one).
    pub namespace: String,
    /// Image id of the parent image.
    pub image_id: String,
    /// Snapshot id of the parent snapshot.
    pub snap_id: u64,
}

/// `rbd.parent_get` reply (`cls::rbd::ParentImageSpec`, `ENCODE_START(1, 1)`:
/// `i64 pool_id`, `string pool_namespace`, `string image_id`,
/// `u64 snap_id`). `None` when the image has no parent, which cls_rbd
/// reports as a spec with pool id -1, an empty image id and `CEPH_NOSNAP`
/// (the test is Ceph's `exists()`: pool id >= 0, non-empty image id, snap id
/// other than `CEPH_NOSNAP`).
pub fn parent_spec(b: &[u8]) -> Result<Option<ParentSpec>> {
    let mut r = Reader::new(b);
    let (_v, mut s) = r.struct_start("parent_spec", 1)?;
    let pool_id = s.i64("parent_spec.pool_id")?;
    let namespace = s.string("parent_spec.pool_namespace")?;
    let image_id = s.string("parent_spec.image_id")?;
    let snap_id = s.u64("parent_spec.snap_id")?;
    if pool_id < 0 || image_id.is_empty() || snap_id == CEPH_NOSNAP {
        return Ok(None);
    }
    Ok(Some(ParentSpec {
        pool_id,
        namespace,
        image_id,
        snap_id,
    }))
}

/// `rbd.parent_overlap_get` reply (`std::optional<uint64_t>`): the bytes of
/// the clone that still map onto the parent, `None` without a parent.
pub fn parent_overlap(b: &[u8]) -> Result<Option<u64>> {
    let mut r = Reader::new(b);
    if r.u8("parent_overlap.present")? == 0 {
        return Ok(None);
    }
    Ok(Some(r.u64("parent_overlap.overlap")?))
}

/// `rbd.get_protection_status` reply (`u8`): 0 unprotected,
/// 1 unprotecting, 2 protected.
pub fn protection_status(b: &[u8]) -> Result<u8> {
    Reader::new(b).u8("protection_status")
}

// ---------------------------------------------------------------------------
// cls_lock
// ---------------------------------------------------------------------------

/// One holder of a `cls_lock` lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locker {
    /// `CEPH_ENTITY_TYPE_*` of the holder (0x08 for a client).
    pub entity_type: u8,
    /// Entity number of the holder (the `4123` of `client.4123`).
    pub entity_num: i64,
    /// Lock cookie (for librbd's exclusive lock `auto <watch handle>`).
    pub cookie: String,
    /// Address of the holder as `IP:PORT/NONCE` (see [`lock_info`]).
    pub address: String,
    /// Free-form description given when the lock was taken.
    pub description: String,
}

/// A `cls_lock` lock as `lock.get_info` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    /// `ClsLockType`: 0 none, 1 exclusive, 2 shared, 3 exclusive ephemeral.
    pub lock_type: u8,
    /// Lock tag (librbd's exclusive lock uses `internal`).
    pub tag: String,
    /// Current holders, in the order the reply lists them.
    pub lockers: Vec<Locker>,
}

/// Smallest encoding of one locker map entry: a `locker_id_t` (struct
/// header, `u8` type, `i64` num, empty cookie) and a `locker_info_t` (struct
/// header, `utime_t`, the smallest `entity_addr_t`, empty description).
const MIN_LOCKER_LEN: usize = (MIN_STRUCT_LEN + 1 + 8 + MIN_STRING_LEN)
    + (MIN_STRUCT_LEN + 8 + MIN_ENTITY_ADDR_LEN + MIN_STRING_LEN);
/// Smallest `entity_addr_t`: marker 1, struct header, type, nonce, length 0.
const MIN_ENTITY_ADDR_LEN: usize = 1 + MIN_STRUCT_LEN + 4 + 4 + 4;

/// `lock.get_info` reply (`cls_lock_get_info_reply`, `ENCODE_START(1, 1)`):
/// `map<locker_id_t, locker_info_t>`, `u8 lock_type`, `string tag`.
///
/// * `locker_id_t` (`ENCODE_START(1, 1)`): `entity_name_t` (`u8 type`,
///   `i64 num`), `string cookie`;
/// * `locker_info_t` (`ENCODE_START(1, 1)`): `utime_t expiration`,
///   `entity_addr_t addr`, `string description`.
///
/// The address is rendered the way Ceph prints addresses of lockers and
/// watchers for humans, `IP:PORT/NONCE` (`127.0.0.1:0/3412345`, IPv6 as
/// `[::1]:0/77`), *without* the `v1:`/`v2:`/`any:` type prefix. That is
/// `entity_addr_t::get_legacy_str()`, which is what `rbd lock ls` (plain and
/// `--format json`, via librbd's `list_lockers`), `rbd status` and
/// `rados listwatchers` print, so the strings compare equal to theirs and a
/// lock holder can be matched to a watcher by address.
pub fn lock_info(b: &[u8]) -> Result<LockInfo> {
    let mut r = Reader::new(b);
    let (_v, mut s) = r.struct_start("lock_info", 1)?;
    let n = s.count("lock_info.lockers", MIN_LOCKER_LEN)?;
    let mut lockers = Vec::with_capacity(n);
    for _ in 0..n {
        lockers.push(locker(&mut s)?);
    }
    let lock_type = s.u8("lock_info.lock_type")?;
    let tag = s.string("lock_info.tag")?;
    Ok(LockInfo {
        lock_type,
        tag,
        lockers,
    })
}

/// One `(locker_id_t, locker_info_t)` map entry.
fn locker(r: &mut Reader<'_>) -> Result<Locker> {
    let (_v, mut id) = r.struct_start("lock_info.locker_id", 1)?;
    let entity_type = id.u8("lock_info.locker_id.entity_type")?;
    let entity_num = id.i64("lock_info.locker_id.entity_num")?;
    let cookie = id.string("lock_info.locker_id.cookie")?;

    let (_v, mut info) = r.struct_start("lock_info.locker_info", 1)?;
    let _expiration = info.utime_sec("lock_info.locker_info.expiration")?;
    let address = entity_addr(&mut info)?;
    let description = info.string("lock_info.locker_info.description")?;
    Ok(Locker {
        entity_type,
        entity_num,
        cookie,
        address,
        description,
    })
}

/// An `entity_addr_t`, rendered as `IP:PORT/NONCE`.
///
/// Two encodings exist, told apart by the first byte:
///
/// * `1` (`CEPH_FEATURE_MSG_ADDR2`, what Pacific sends every Pacific
///   client): `ENCODE_START(1, 1)` around `u32 type` (0 none, 1 legacy/v1,
///   2 msgr2/v2, 3 any, 4 cidr), `u32 nonce`, `u32 sockaddr length` and the
///   raw Linux sockaddr: `sa_family` in host (little-endian) order, then the
///   port in network order and the IPv4 (`sockaddr_in`, 16 bytes) or IPv6
///   (`sockaddr_in6`, 28 bytes: port, flowinfo, address, scope id) address;
/// * `0` (legacy): the rest of a `u32` type (zero), `u32 nonce` and a
///   128-byte `sockaddr_storage` whose family is stored big-endian.
fn entity_addr(r: &mut Reader<'_>) -> Result<String> {
    const FIELD: &str = "lock_info.locker_info.addr";
    match r.u8(FIELD)? {
        0 => {
            let _rest_of_type: [u8; 3] = r.array(FIELD)?;
            let nonce = r.u32("lock_info.locker_info.addr.nonce")?;
            let ss: [u8; SOCKADDR_STORAGE_LEN] = r.array("lock_info.locker_info.addr.sockaddr")?;
            let [f0, f1, rest @ ..] = ss;
            Ok(render_sockaddr(u16::from_be_bytes([f0, f1]), &rest, nonce))
        }
        1 => {
            let (_v, mut a) = r.struct_start(FIELD, 1)?;
            let _type = a.u32("lock_info.locker_info.addr.type")?;
            let nonce = a.u32("lock_info.locker_info.addr.nonce")?;
            let sa = a.blob("lock_info.locker_info.addr.sockaddr")?;
            if sa.is_empty() {
                // An address without a sockaddr (a blank entity_addr_t).
                return Ok(render_sockaddr(0, &[], nonce));
            }
            let Some((family, rest)) = sa.split_first_chunk::<2>() else {
                return Err(err(
                    "lock_info.locker_info.addr.sockaddr",
                    format!("sockaddr length {} is smaller than sa_family", sa.len()),
                ));
            };
            let family = u16::from_le_bytes(*family);
            let max = if family == AF_INET {
                SOCKADDR_IN_LEN
            } else {
                SOCKADDR_IN6_LEN
            };
            if sa.len() > max {
                return Err(err(
                    "lock_info.locker_info.addr.sockaddr",
                    format!(
                        "sockaddr length {} exceeds {max} for family {family}",
                        sa.len()
                    ),
                ));
            }
            Ok(render_sockaddr(family, rest, nonce))
        }
        marker => Err(err(FIELD, format!("unknown entity_addr_t marker {marker}"))),
    }
}

/// Renders a sockaddr (the bytes after `sa_family`; missing bytes count as
/// zero, as in Ceph's zeroed union) like Ceph's
/// `entity_addr_t::get_legacy_str()`: `IP:PORT/NONCE`, `[IPv6]:PORT/NONCE`,
/// or `(unrecognized address family N)/NONCE`.
///
/// IPv6 text follows RFC 5952 (Rust's formatting), which is what glibc's
/// `inet_ntop` prints except for the deprecated IPv4-compatible form
/// `::a.b.c.d`.
fn render_sockaddr(family: u16, rest: &[u8], nonce: u32) -> String {
    let mut sa = [0u8; SOCKADDR_IN6_LEN - 2];
    for (dst, src) in sa.iter_mut().zip(rest) {
        *dst = *src;
    }
    let [p0, p1, a0, a1, a2, a3, ..] = sa;
    let port = u16::from_be_bytes([p0, p1]);
    match family {
        AF_INET => format!("{}:{port}/{nonce}", Ipv4Addr::new(a0, a1, a2, a3)),
        AF_INET6 => {
            // port (2), flowinfo (4), address (16), scope id (4)
            let [_, _, _, _, _, _, addr @ ..] = sa;
            let octets = addr.first_chunk::<16>().copied().unwrap_or_default();
            format!("[{}]:{port}/{nonce}", Ipv6Addr::from(octets))
        }
        other => format!("(unrecognized address family {other})/{nonce}"),
    }
}

/// An `entity_name_t` as Ceph prints it: `client.4123`, `osd.0`, `mon.1`,
/// `mds.2`, `mgr.5`, `auth.0`; an unknown type prints as `unknown.N`, like
/// `ceph_entity_type_name()`.
pub fn entity_name(entity_type: u8, num: i64) -> String {
    let kind = match entity_type {
        0x01 => "mon",
        0x02 => "mds",
        0x04 => "osd",
        0x08 => "client",
        0x10 => "mgr",
        0x20 => "auth",
        _ => "unknown",
    };
    format!("{kind}.{num}")
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

/// The namespace of a snapshot (`cls::rbd::SnapshotNamespace`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapNamespace {
    /// A snapshot taken by a user (type 0).
    User,
    /// A member snapshot of a group snapshot (type 1).
    Group,
    /// A removed snapshot kept because clones still use it (type 2).
    Trash {
        /// Name the snapshot had before it was removed.
        original_name: String,
        /// `SnapshotNamespaceType` it had before (0 user, 1 group, 3 mirror).
        original_type: u32,
    },
    /// A snapshot-based mirroring snapshot (type 3).
    Mirror,
    /// A namespace type this decoder does not know.
    Unknown(u32),
}

/// `rbd.snapshot_get` reply (`cls::rbd::SnapshotInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Snapshot id.
    pub id: u64,
    /// Snapshot namespace.
    pub namespace: SnapNamespace,
    /// Snapshot name (a UUID for snapshots in the trash namespace).
    pub name: String,
    /// Image size when the snapshot was taken, in bytes.
    pub image_size: u64,
    /// Number of v2 clones attached to the snapshot.
    pub child_count: u32,
}

/// `rbd.snapshot_get` reply (`cls::rbd::SnapshotInfo`, `ENCODE_START(1, 1)`):
/// `u64 id`, `SnapshotNamespace`, `string name`, `u64 image_size`,
/// `utime_t timestamp`, `u32 child_count`.
///
/// `SnapshotNamespace` is `ENCODE_START(1, 1)` around a `u32` type and the
/// type's fields; for the trash namespace (type 2) those are
/// `string original_name` and `u32 original_snapshot_namespace_type`. The
/// fields of the other types are skipped with the namespace's window.
pub fn snapshot_info(b: &[u8]) -> Result<SnapshotInfo> {
    let mut r = Reader::new(b);
    let (_v, mut s) = r.struct_start("snapshot_info", 1)?;
    let id = s.u64("snapshot_info.id")?;
    let namespace = snap_namespace(&mut s)?;
    let name = s.string("snapshot_info.name")?;
    let image_size = s.u64("snapshot_info.image_size")?;
    let _timestamp = s.utime_sec("snapshot_info.timestamp")?;
    let child_count = s.u32("snapshot_info.child_count")?;
    Ok(SnapshotInfo {
        id,
        namespace,
        name,
        image_size,
        child_count,
    })
}

fn snap_namespace(r: &mut Reader<'_>) -> Result<SnapNamespace> {
    let (_v, mut ns) = r.struct_start("snapshot_info.namespace", 1)?;
    let ty = ns.u32("snapshot_info.namespace.type")?;
    Ok(match ty {
        0 => SnapNamespace::User,
        1 => SnapNamespace::Group,
        2 => {
            let original_name = ns.string("snapshot_info.namespace.original_name")?;
            let original_type = ns.u32("snapshot_info.namespace.original_type")?;
            SnapNamespace::Trash {
                original_name,
                original_type,
            }
        }
        3 => SnapNamespace::Mirror,
        other => SnapNamespace::Unknown(other),
    })
}

/// A v2 clone attached to a snapshot (`cls::rbd::ChildImageSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSpec {
    /// Pool id of the clone.
    pub pool_id: i64,
    /// RBD namespace of the clone (empty for the default one).
    pub namespace: String,
    /// Image id of the clone.
    pub image_id: String,
}

/// `rbd.children_list` reply: `std::set<cls::rbd::ChildImageSpec>`; each
/// spec is `ENCODE_START(2, 1)`: `i64 pool_id`, `string image_id`, and since
/// version 2 `string pool_namespace`. (The method fails with `ENOENT` when
/// the snapshot has no v2 children.)
pub fn children_list(b: &[u8]) -> Result<Vec<ChildSpec>> {
    let mut r = Reader::new(b);
    let n = r.count("children_list", MIN_STRUCT_LEN + 8 + MIN_STRING_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (v, mut s) = r.struct_start("children_list.child", 2)?;
        let pool_id = s.i64("children_list.child.pool_id")?;
        let image_id = s.string("children_list.child.image_id")?;
        let namespace = if v >= 2 {
            s.string("children_list.child.pool_namespace")?
        } else {
            String::new()
        };
        out.push(ChildSpec {
            pool_id,
            namespace,
            image_id,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Omap values and keys
// ---------------------------------------------------------------------------

/// An `rbd_trash` omap value (`cls::rbd::TrashImageSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashSpec {
    /// `TrashImageSource` (see [`trash_source_name`]); encoded as a `u8`.
    pub source: u32,
    /// Name the image had before it was moved to the trash.
    pub name: String,
    /// When the image was moved to the trash, Unix seconds.
    pub deletion_time: u64,
    /// When the image may be purged, Unix seconds.
    pub deferment_end_time: u64,
    /// `TrashImageState`: 0 normal, 1 moving, 2 removing, 3 restoring
    /// (0 for version 1 encodings, which have no state).
    pub state: u8,
}

/// An `rbd_trash` omap value (key `id_<image id>`): `cls::rbd::TrashImageSpec`,
/// `ENCODE_START(2, 1)`: `u8 source`, `string name`, `utime_t deletion_time`,
/// `utime_t deferment_end_time`, and since version 2 `u8 state`.
pub fn trash_spec(b: &[u8]) -> Result<TrashSpec> {
    let mut r = Reader::new(b);
    let (v, mut s) = r.struct_start("trash_spec", 2)?;
    let source = s.u8("trash_spec.source")?;
    let name = s.string("trash_spec.name")?;
    let deletion_time = s.utime_sec("trash_spec.deletion_time")?;
    let deferment_end_time = s.utime_sec("trash_spec.deferment_end_time")?;
    let state = if v >= 2 { s.u8("trash_spec.state")? } else { 0 };
    Ok(TrashSpec {
        source: u32::from(source),
        name,
        deletion_time: u64::from(deletion_time),
        deferment_end_time: u64::from(deferment_end_time),
        state,
    })
}

/// Name of a `TrashImageState`: what Ceph is doing with a trashed image.
pub fn trash_state_name(state: u8) -> String {
    match state {
        0 => "normal".to_owned(),
        1 => "moving".to_owned(),
        2 => "removing".to_owned(),
        3 => "restoring".to_owned(),
        other => other.to_string(),
    }
}

/// Name of a `TrashImageSource` (Pacific's `rbd_trash_image_source_t`):
/// `user`, `mirroring`, `migration`, `removing`, `user_parent`; any other
/// value as its number.
pub fn trash_source_name(source: u32) -> String {
    match source {
        0 => "user".to_owned(),
        1 => "mirroring".to_owned(),
        2 => "migration".to_owned(),
        3 => "removing".to_owned(),
        4 => "user_parent".to_owned(),
        other => other.to_string(),
    }
}

/// An encoded `std::string`: the values of `rbd_directory` (`name_<name>`
/// maps to the image id, `id_<id>` to the name), the content of
/// `rbd_id.<name>` objects, and similar.
pub fn string_value(b: &[u8]) -> Result<String> {
    Reader::new(b).string("string")
}

/// An `rbd_children` omap key: the parent of v1 clones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildrenKey {
    /// Pool id of the parent image.
    pub pool_id: i64,
    /// Image id of the parent image.
    pub image_id: String,
    /// Snapshot id of the parent snapshot.
    pub snap_id: u64,
}

/// An `rbd_children` omap key, which cls_rbd builds by encoding the parent
/// (`parent_key()`): `u64 pool_id` (read as `i64`), `string image_id`,
/// `u64 snap_id`, nothing else (trailing bytes are an error here).
pub fn children_key(key: &[u8]) -> Result<ChildrenKey> {
    let mut r = Reader::new(key);
    let pool_id = r.i64("children_key.pool_id")?;
    let image_id = r.string("children_key.image_id")?;
    let snap_id = r.u64("children_key.snap_id")?;
    r.expect_end("children_key")?;
    Ok(ChildrenKey {
        pool_id,
        image_id,
        snap_id,
    })
}

/// An encoded `std::set<std::string>`: the `rbd_children` omap values (the
/// image ids of the v1 clones of the parent in the key).
pub fn string_set(b: &[u8]) -> Result<Vec<String>> {
    let mut r = Reader::new(b);
    let n = r.count("string_set", MIN_STRING_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.string("string_set.item")?);
    }
    Ok(out)
}

/// The keys of a TMAP, the format 1 `rbd_directory`'s data: a
/// `bufferlist` header, then a `std::map<std::string, bufferlist>` (the
/// image names, with empty values). No data at all is an empty TMAP.
pub fn tmap_keys(b: &[u8]) -> Result<Vec<String>> {
    if b.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader::new(b);
    r.blob("tmap.header")?;
    let n = r.count("tmap.entries", 2 * MIN_STRING_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.string("tmap.key")?);
        r.blob("tmap.value")?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    //! The captures under `tests/data/decode/` are real replies of a Ceph
    //! 16.2.15 cluster; `tests/data/decode/README.md` says how they were made.

    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    // -- an allocator that remembers the largest allocation per thread -----

    /// Wraps the system allocator and records, per thread, the largest
    /// allocation requested, so tests can assert that a hostile length field
    /// does not cause a large allocation.
    struct TrackingAlloc;

    thread_local! {
        static LARGEST_ALLOC: Cell<usize> = const { Cell::new(0) };
    }

    fn note_alloc(size: usize) {
        let _ = LARGEST_ALLOC.try_with(|m| m.set(m.get().max(size)));
    }

    // SAFETY: every call is forwarded unchanged to the system allocator.
    unsafe impl GlobalAlloc for TrackingAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note_alloc(layout.size());
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note_alloc(layout.size());
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note_alloc(new_size);
            // SAFETY: same contract as the caller's.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static GLOBAL: TrackingAlloc = TrackingAlloc;

    /// Runs `f` and returns its result and the largest allocation it made on
    /// this thread.
    fn largest_alloc_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        LARGEST_ALLOC.with(|m| m.set(0));
        let out = f();
        (out, LARGEST_ALLOC.with(|m| m.get()))
    }

    // -- captures -----------------------------------------------------------

    macro_rules! capture {
        ($name:literal) => {
            include_bytes!(concat!("../../tests/data/decode/", $name, ".bin")).as_slice()
        };
    }

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    /// rbd/img1 (`rbd info rbd/img1`).
    const IMG1_ID: &str = "10261ba494ea";

    /// Every decoder, by name, with a way to run it that only says whether
    /// it succeeded.
    type Decoder = fn(&[u8]) -> bool;
    const DECODERS: &[(&str, Decoder)] = &[
        ("size", |b| size(b).is_ok()),
        ("features", |b| features(b).is_ok()),
        ("flags", |b| flags(b).is_ok()),
        ("op_features", |b| op_features(b).is_ok()),
        ("snapcontext", |b| snapcontext(b).is_ok()),
        ("parent_spec", |b| parent_spec(b).is_ok()),
        ("parent_overlap", |b| parent_overlap(b).is_ok()),
        ("lock_info", |b| lock_info(b).is_ok()),
        ("snapshot_info", |b| snapshot_info(b).is_ok()),
        ("protection_status", |b| protection_status(b).is_ok()),
        ("children_list", |b| children_list(b).is_ok()),
        ("trash_spec", |b| trash_spec(b).is_ok()),
        ("string_value", |b| string_value(b).is_ok()),
        ("children_key", |b| children_key(b).is_ok()),
        ("string_set", |b| string_set(b).is_ok()),
    ];

    fn decoder(name: &str) -> Decoder {
        DECODERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .expect("known decoder")
    }

    /// Every capture with the decoder it is a reply for.
    fn captures() -> Vec<(&'static str, &'static [u8], &'static str)> {
        vec![
            ("size_img1", capture!("size_img1"), "size"),
            ("size_img1_snap_s1", capture!("size_img1_snap_s1"), "size"),
            ("features_img1", capture!("features_img1"), "features"),
            ("flags_img1", capture!("flags_img1"), "flags"),
            (
                "flags_object_map_invalid",
                capture!("flags_object_map_invalid"),
                "flags",
            ),
            (
                "op_features_img1",
                capture!("op_features_img1"),
                "op_features",
            ),
            (
                "op_features_clone2",
                capture!("op_features_clone2"),
                "op_features",
            ),
            (
                "snapcontext_img1",
                capture!("snapcontext_img1"),
                "snapcontext",
            ),
            (
                "snapcontext_empty",
                capture!("snapcontext_empty"),
                "snapcontext",
            ),
            (
                "parent_spec_none",
                capture!("parent_spec_none"),
                "parent_spec",
            ),
            (
                "parent_spec_clone2",
                capture!("parent_spec_clone2"),
                "parent_spec",
            ),
            (
                "parent_spec_clone1_v1",
                capture!("parent_spec_clone1_v1"),
                "parent_spec",
            ),
            (
                "parent_spec_nschild",
                capture!("parent_spec_nschild"),
                "parent_spec",
            ),
            (
                "parent_spec_trashsnap",
                capture!("parent_spec_trashsnap"),
                "parent_spec",
            ),
            (
                "parent_overlap_none",
                capture!("parent_overlap_none"),
                "parent_overlap",
            ),
            (
                "parent_overlap_clone2",
                capture!("parent_overlap_clone2"),
                "parent_overlap",
            ),
            (
                "lock_info_exclusive",
                capture!("lock_info_exclusive"),
                "lock_info",
            ),
            (
                "lock_info_advisory",
                capture!("lock_info_advisory"),
                "lock_info",
            ),
            (
                "lock_info_shared",
                capture!("lock_info_shared"),
                "lock_info",
            ),
            ("lock_info_none", capture!("lock_info_none"), "lock_info"),
            (
                "snapshot_info_user",
                capture!("snapshot_info_user"),
                "snapshot_info",
            ),
            (
                "snapshot_info_trash",
                capture!("snapshot_info_trash"),
                "snapshot_info",
            ),
            (
                "protection_status_protected",
                capture!("protection_status_protected"),
                "protection_status",
            ),
            (
                "protection_status_unprotected",
                capture!("protection_status_unprotected"),
                "protection_status",
            ),
            (
                "children_list_img1_s1",
                capture!("children_list_img1_s1"),
                "children_list",
            ),
            (
                "children_list_trash_snap",
                capture!("children_list_trash_snap"),
                "children_list",
            ),
            ("trash_spec", capture!("trash_spec"), "trash_spec"),
            (
                "string_value_dir_name_img1",
                capture!("string_value_dir_name_img1"),
                "string_value",
            ),
            (
                "string_value_dir_id_img1",
                capture!("string_value_dir_id_img1"),
                "string_value",
            ),
            ("rbd_id_img1", capture!("rbd_id_img1"), "string_value"),
            (
                "children_key_v1",
                capture!("children_key_v1"),
                "children_key",
            ),
            (
                "children_value_v1",
                capture!("children_value_v1"),
                "string_set",
            ),
        ]
    }

    // -- encoders -------------------------------------------------------------

    #[test]
    fn encoders() {
        assert_eq!(
            encode_snap_id(CEPH_NOSNAP),
            [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(encode_snap_id(4), [4, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            encode_get_features(CEPH_NOSNAP),
            [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1]
        );
        let mut want = vec![1, 1, 12, 0, 0, 0, 8, 0, 0, 0];
        want.extend_from_slice(b"rbd_lock");
        assert_eq!(encode_lock_get_info("rbd_lock"), want);
        assert_eq!(encode_lock_get_info(""), [1, 1, 4, 0, 0, 0, 0, 0, 0, 0]);
    }

    // -- real captures ----------------------------------------------------------

    #[test]
    fn real_size() {
        // rbd/img1 was resized from 1 GiB to 2 GiB after snapshot s1 (id 4).
        assert_eq!(size(capture!("size_img1")), Ok((22, 2 * GIB)));
        assert_eq!(size(capture!("size_img1_snap_s1")), Ok((22, GIB)));
    }

    #[test]
    fn real_features_flags_op_features() {
        // layering, exclusive-lock, object-map, fast-diff, deep-flatten, operations
        assert_eq!(features(capture!("features_img1")), Ok(0x13d));
        assert_eq!(flags(capture!("flags_img1")), Ok(0));
        // "object map invalid" | "fast diff invalid"
        assert_eq!(flags(capture!("flags_object_map_invalid")), Ok(3));
        // clone-parent
        assert_eq!(op_features(capture!("op_features_img1")), Ok(1));
        // clone-child
        assert_eq!(op_features(capture!("op_features_clone2")), Ok(2));
    }

    #[test]
    fn real_snapcontext() {
        assert_eq!(
            snapcontext(capture!("snapcontext_img1")),
            Ok(SnapContext {
                seq: 5,
                snaps: vec![5, 4]
            })
        );
        assert_eq!(
            snapcontext(capture!("snapcontext_empty")),
            Ok(SnapContext {
                seq: 0,
                snaps: vec![]
            })
        );
    }

    #[test]
    fn real_parent_spec() {
        assert_eq!(parent_spec(capture!("parent_spec_none")), Ok(None));
        let img1_s1 = ParentSpec {
            pool_id: 2,
            namespace: String::new(),
            image_id: IMG1_ID.to_owned(),
            snap_id: 4,
        };
        assert_eq!(
            parent_spec(capture!("parent_spec_clone2")),
            Ok(Some(img1_s1.clone()))
        );
        // A v1 clone reports its parent the same way.
        assert_eq!(
            parent_spec(capture!("parent_spec_clone1_v1")),
            Ok(Some(img1_s1))
        );
        assert_eq!(
            parent_spec(capture!("parent_spec_nschild")),
            Ok(Some(ParentSpec {
                pool_id: 2,
                namespace: "ns1".to_owned(),
                image_id: "10406e04c5d7".to_owned(),
                snap_id: 7,
            }))
        );
        // The parent snapshot of this clone was removed (trash namespace).
        assert_eq!(
            parent_spec(capture!("parent_spec_trashsnap")),
            Ok(Some(ParentSpec {
                pool_id: 2,
                namespace: String::new(),
                image_id: "103254bfd5e5".to_owned(),
                snap_id: 6,
            }))
        );
    }

    #[test]
    fn real_parent_overlap() {
        assert_eq!(parent_overlap(capture!("parent_overlap_none")), Ok(None));
        assert_eq!(
            parent_overlap(capture!("parent_overlap_clone2")),
            Ok(Some(GIB))
        );
    }

    #[test]
    fn real_lock_info_exclusive() {
        // librbd's exclusive lock, held by a live client
        // (`rbd lock ls --format json` and `rados listwatchers` agree).
        let info = lock_info(capture!("lock_info_exclusive")).unwrap();
        assert_eq!(
            info,
            LockInfo {
                lock_type: 1,
                tag: "internal".to_owned(),
                lockers: vec![Locker {
                    entity_type: 8,
                    entity_num: 4186,
                    cookie: "auto 140346176574656".to_owned(),
                    address: "127.0.0.1:0/1598960799".to_owned(),
                    description: String::new(),
                }],
            }
        );
        let l = &info.lockers[0];
        assert_eq!(entity_name(l.entity_type, l.entity_num), "client.4186");
    }

    #[test]
    fn real_lock_info_advisory() {
        // `rbd lock add rbd/locked mycookie`
        assert_eq!(
            lock_info(capture!("lock_info_advisory")),
            Ok(LockInfo {
                lock_type: 1,
                tag: String::new(),
                lockers: vec![Locker {
                    entity_type: 8,
                    entity_num: 4172,
                    cookie: "mycookie".to_owned(),
                    address: "127.0.0.1:0/4058468204".to_owned(),
                    description: String::new(),
                }],
            })
        );
    }

    #[test]
    fn real_lock_info_shared() {
        // `rbd lock add --shared tag1 rbd/shared c1` and `... c2`
        let info = lock_info(capture!("lock_info_shared")).unwrap();
        assert_eq!(info.lock_type, 2);
        assert_eq!(info.tag, "tag1");
        let got: Vec<_> = info
            .lockers
            .iter()
            .map(|l| {
                (
                    entity_name(l.entity_type, l.entity_num),
                    l.cookie.as_str(),
                    l.address.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("client.4176".to_owned(), "c1", "127.0.0.1:0/3501557693"),
                ("client.4178".to_owned(), "c2", "127.0.0.1:0/250137478"),
            ]
        );
    }

    #[test]
    fn real_lock_info_released() {
        // The exclusive lock of rbd/img1 was taken and released by the rbd
        // CLI: the lock still exists with its type and tag but no holders.
        assert_eq!(
            lock_info(capture!("lock_info_none")),
            Ok(LockInfo {
                lock_type: 1,
                tag: "internal".to_owned(),
                lockers: vec![],
            })
        );
    }

    #[test]
    fn real_snapshot_info() {
        // rbd/img1@s1: protected, parent of clone2 and ns1/nsclone (v2) and
        // of clone1 (v1, not counted).
        assert_eq!(
            snapshot_info(capture!("snapshot_info_user")),
            Ok(SnapshotInfo {
                id: 4,
                namespace: SnapNamespace::User,
                name: "s1".to_owned(),
                image_size: GIB,
                child_count: 2,
            })
        );
        // rbd/parent2@ps, removed with `rbd snap rm` while clone_trashsnap
        // still used it.
        assert_eq!(
            snapshot_info(capture!("snapshot_info_trash")),
            Ok(SnapshotInfo {
                id: 6,
                namespace: SnapNamespace::Trash {
                    original_name: "ps".to_owned(),
                    original_type: 0,
                },
                name: "ca6310f7-a715-4b7f-8fb8-d2ebb0878a72".to_owned(),
                image_size: 256 * MIB,
                child_count: 1,
            })
        );
    }

    #[test]
    fn real_protection_status() {
        assert_eq!(
            protection_status(capture!("protection_status_protected")),
            Ok(2)
        );
        assert_eq!(
            protection_status(capture!("protection_status_unprotected")),
            Ok(0)
        );
    }

    #[test]
    fn real_children_list() {
        assert_eq!(
            children_list(capture!("children_list_img1_s1")),
            Ok(vec![
                ChildSpec {
                    pool_id: 2,
                    namespace: String::new(),
                    image_id: "102ed3ba349e".to_owned(),
                },
                ChildSpec {
                    pool_id: 2,
                    namespace: "ns1".to_owned(),
                    image_id: "10483b4f831a".to_owned(),
                },
            ])
        );
        assert_eq!(
            children_list(capture!("children_list_trash_snap")),
            Ok(vec![ChildSpec {
                pool_id: 2,
                namespace: String::new(),
                image_id: "1036ee460d47".to_owned(),
            }])
        );
    }

    #[test]
    fn real_trash_spec() {
        // `rbd trash mv rbd/img_trash` at 2026-11-22 04:27:24 UTC, no deferment.
        let spec = trash_spec(capture!("trash_spec")).unwrap();
        assert_eq!(
            spec,
            TrashSpec {
                source: 0,
                name: "img_trash".to_owned(),
                deletion_time: 1_795_321_644,
                deferment_end_time: 1_795_321_644,
                state: 0,
            }
        );
        assert_eq!(trash_source_name(spec.source), "user");
    }

    #[test]
    fn real_string_values() {
        assert_eq!(
            string_value(capture!("string_value_dir_name_img1")).as_deref(),
            Ok(IMG1_ID)
        );
        assert_eq!(
            string_value(capture!("string_value_dir_id_img1")).as_deref(),
            Ok("img1")
        );
        assert_eq!(
            string_value(capture!("rbd_id_img1")).as_deref(),
            Ok(IMG1_ID)
        );
    }

    #[test]
    fn tmap_keys_of_a_format1_directory() {
        assert_eq!(tmap_keys(&[]), Ok(vec![]));
        // What `rbd create --image-format 1` wrote: an empty header, then
        // one name per image with an empty value.
        let mut b = 0u32.to_le_bytes().to_vec();
        b.extend(2u32.to_le_bytes());
        for name in ["old-a", "old-b"] {
            b.extend((name.len() as u32).to_le_bytes());
            b.extend(name.as_bytes());
            b.extend(0u32.to_le_bytes());
        }
        assert_eq!(tmap_keys(&b), Ok(vec!["old-a".into(), "old-b".into()]));
        // A count the bytes cannot hold is refused before allocating.
        let mut hostile = 0u32.to_le_bytes().to_vec();
        hostile.extend(u32::MAX.to_le_bytes());
        assert!(tmap_keys(&hostile).is_err());
        assert!(tmap_keys(&b[..b.len() - 2]).is_err());
    }

    #[test]
    fn real_rbd_children() {
        // rbd/clone1 is a v1 clone of rbd/img1@s1.
        assert_eq!(
            children_key(capture!("children_key_v1")),
            Ok(ChildrenKey {
                pool_id: 2,
                image_id: IMG1_ID.to_owned(),
                snap_id: 4,
            })
        );
        assert_eq!(
            string_set(capture!("children_value_v1")),
            Ok(vec!["1030c1d75b68".to_owned()])
        );
    }

    // -- names ----------------------------------------------------------------

    #[test]
    fn names() {
        assert_eq!(entity_name(0x08, 4123), "client.4123");
        assert_eq!(entity_name(0x04, 0), "osd.0");
        assert_eq!(entity_name(0x01, 1), "mon.1");
        assert_eq!(entity_name(0x02, 7), "mds.7");
        assert_eq!(entity_name(0x10, 3), "mgr.3");
        assert_eq!(entity_name(0x77, 3), "unknown.3");
        assert_eq!(trash_source_name(1), "mirroring");
        assert_eq!(trash_source_name(2), "migration");
        assert_eq!(trash_source_name(3), "removing");
        assert_eq!(trash_source_name(4), "user_parent");
        assert_eq!(trash_source_name(9), "9");
    }

    // -- synthetic encodings ------------------------------------------------------

    fn enc_string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&u32::try_from(s.len()).unwrap().to_le_bytes());
        out.extend_from_slice(s);
    }

    fn enc_struct(v: u8, compat: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![v, compat];
        out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    /// A `cls_lock_get_info_reply` with one client locker whose address is
    /// the given encoded `entity_addr_t`.
    fn lock_reply_with_addr(addr: &[u8]) -> Vec<u8> {
        let mut id = vec![8];
        id.extend_from_slice(&77i64.to_le_bytes());
        enc_string(&mut id, b"cookie");
        let mut info = vec![0; 8];
        info.extend_from_slice(addr);
        enc_string(&mut info, b"desc");
        let mut body = 1u32.to_le_bytes().to_vec();
        body.extend(enc_struct(1, 1, &id));
        body.extend(enc_struct(1, 1, &info));
        body.push(1);
        enc_string(&mut body, b"");
        enc_struct(1, 1, &body)
    }

    fn addr_of(reply: &[u8]) -> Result<String> {
        lock_info(reply).map(|i| i.lockers[0].address.clone())
    }

    /// An msgr2-era `entity_addr_t` (marker 1).
    fn addr2(ty: u32, nonce: u32, sockaddr: &[u8]) -> Vec<u8> {
        let mut body = ty.to_le_bytes().to_vec();
        body.extend_from_slice(&nonce.to_le_bytes());
        enc_string(&mut body, sockaddr);
        let mut out = vec![1];
        out.extend(enc_struct(1, 1, &body));
        out
    }

    #[test]
    fn addresses() {
        // IPv4, msgr2 type, port 6789
        let mut sin = vec![2, 0, 0x1a, 0x85, 10, 1, 2, 3];
        sin.resize(16, 0);
        assert_eq!(
            addr_of(&lock_reply_with_addr(&addr2(2, 5, &sin))).unwrap(),
            "10.1.2.3:6789/5"
        );
        // IPv6 ::1, type any
        let mut sin6 = vec![10, 0, 0, 0, 0, 0, 0, 0];
        sin6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        sin6.extend_from_slice(&[0; 4]);
        assert_eq!(
            addr_of(&lock_reply_with_addr(&addr2(3, 77, &sin6))).unwrap(),
            "[::1]:0/77"
        );
        // a blank address
        assert_eq!(
            addr_of(&lock_reply_with_addr(&addr2(0, 0, &[]))).unwrap(),
            "(unrecognized address family 0)/0"
        );
        // an unknown family
        assert_eq!(
            addr_of(&lock_reply_with_addr(&addr2(1, 9, &[1, 0, 0, 0]))).unwrap(),
            "(unrecognized address family 1)/9"
        );
        // a sockaddr shorter than its family: missing bytes are zero
        assert_eq!(
            addr_of(&lock_reply_with_addr(&addr2(
                1,
                9,
                &[2, 0, 0, 80, 192, 168]
            )))
            .unwrap(),
            "192.168.0.0:80/9"
        );
        // too long for the family, or shorter than sa_family
        let mut long = sin.clone();
        long.push(0);
        assert!(addr_of(&lock_reply_with_addr(&addr2(1, 9, &long))).is_err());
        assert!(addr_of(&lock_reply_with_addr(&addr2(1, 9, &[2]))).is_err());
        // legacy encoding: u32 type 0, nonce, sockaddr_storage with a
        // big-endian family
        let mut legacy = vec![0, 0, 0, 0];
        legacy.extend_from_slice(&1234u32.to_le_bytes());
        let mut ss = vec![0, 2, 0x1a, 0x90, 192, 168, 0, 9];
        ss.resize(128, 0);
        legacy.extend_from_slice(&ss);
        assert_eq!(
            addr_of(&lock_reply_with_addr(&legacy)).unwrap(),
            "192.168.0.9:6800/1234"
        );
        let mut legacy6 = vec![0, 0, 0, 0];
        legacy6.extend_from_slice(&1u32.to_le_bytes());
        let mut ss6 = vec![0, 10, 0, 1, 0, 0, 0, 0];
        ss6.extend_from_slice(&"fd00::12:1".parse::<Ipv6Addr>().unwrap().octets());
        ss6.resize(128, 0);
        legacy6.extend_from_slice(&ss6);
        assert_eq!(
            addr_of(&lock_reply_with_addr(&legacy6)).unwrap(),
            "[fd00::12:1]:1/1"
        );
        // unknown marker
        let e = addr_of(&lock_reply_with_addr(&[7, 0, 0, 0])).unwrap_err();
        assert_eq!(e.field, "lock_info.locker_info.addr");
    }

    #[test]
    fn other_snapshot_namespaces() {
        let mut ns_group = 1u32.to_le_bytes().to_vec();
        ns_group.extend_from_slice(&5i64.to_le_bytes());
        enc_string(&mut ns_group, b"group-id");
        enc_string(&mut ns_group, b"group-snap-id");
        for (ns_body, want) in [
            (ns_group, SnapNamespace::Group),
            (3u32.to_le_bytes().to_vec(), SnapNamespace::Mirror),
            (42u32.to_le_bytes().to_vec(), SnapNamespace::Unknown(42)),
        ] {
            let mut body = 9u64.to_le_bytes().to_vec();
            body.extend(enc_struct(1, 1, &ns_body));
            enc_string(&mut body, b"snap");
            body.extend_from_slice(&MIB.to_le_bytes());
            body.extend_from_slice(&[0; 8]);
            body.extend_from_slice(&3u32.to_le_bytes());
            let info = snapshot_info(&enc_struct(1, 1, &body)).unwrap();
            assert_eq!(info.namespace, want);
            assert_eq!(
                (info.id, info.name.as_str(), info.image_size),
                (9, "snap", MIB)
            );
            assert_eq!(info.child_count, 3);
        }
    }

    #[test]
    fn old_struct_versions() {
        // ChildImageSpec v1 has no namespace.
        let mut child = 3i64.to_le_bytes().to_vec();
        enc_string(&mut child, b"abc");
        let mut list = 1u32.to_le_bytes().to_vec();
        list.extend(enc_struct(1, 1, &child));
        assert_eq!(
            children_list(&list),
            Ok(vec![ChildSpec {
                pool_id: 3,
                namespace: String::new(),
                image_id: "abc".to_owned()
            }])
        );
        // TrashImageSpec v1 has no state.
        let mut trash = vec![1];
        enc_string(&mut trash, b"n");
        trash.extend_from_slice(&[1, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0]);
        assert_eq!(
            trash_spec(&enc_struct(1, 1, &trash)),
            Ok(TrashSpec {
                source: 1,
                name: "n".to_owned(),
                deletion_time: 1,
                deferment_end_time: 2,
                state: 0,
            })
        );
    }

    // -- versioning ---------------------------------------------------------------

    /// Re-encodes the struct at the start of `b` as a newer version with
    /// `extra` appended inside its window; anything after the struct is kept.
    fn bump_struct(b: &[u8], new_v: u8, extra: &[u8]) -> Vec<u8> {
        let len = usize::try_from(u32::from_le_bytes(b[2..6].try_into().unwrap())).unwrap();
        let mut body = b[6..6 + len].to_vec();
        body.extend_from_slice(extra);
        let mut out = enc_struct(new_v, b[1], &body);
        out.extend_from_slice(&b[6 + len..]);
        out
    }

    #[test]
    fn newer_versions_trailing_fields_are_skipped() {
        let extra = b"\xde\xad\xbe\xef future fields";

        let snap = capture!("snapshot_info_trash");
        let want = snapshot_info(snap).unwrap();
        assert_eq!(
            snapshot_info(&bump_struct(snap, 7, extra)),
            Ok(want.clone())
        );
        // ... also inside the nested SnapshotNamespace window, which starts
        // at offset 14 (after the outer header and the u64 id).
        let mut body = snap[6..14].to_vec();
        body.extend(bump_struct(&snap[14..], 2, extra));
        assert_eq!(snapshot_info(&enc_struct(1, 1, &body)), Ok(want));

        let trash = capture!("trash_spec");
        assert_eq!(trash_spec(&bump_struct(trash, 3, extra)), trash_spec(trash));

        let parent = capture!("parent_spec_nschild");
        assert_eq!(
            parent_spec(&bump_struct(parent, 2, extra)),
            parent_spec(parent)
        );

        let lock = capture!("lock_info_shared");
        assert_eq!(lock_info(&bump_struct(lock, 2, extra)), lock_info(lock));

        // The first ChildImageSpec (at offset 4) as v3 with extra fields.
        let list = capture!("children_list_img1_s1");
        let first = bump_struct(&list[4..], 3, extra);
        let mut bumped = list[..4].to_vec();
        bumped.extend(first);
        assert_eq!(children_list(&bumped), children_list(list));

        // Bytes after the top-level struct are ignored too.
        let mut tail = snap.to_vec();
        tail.extend_from_slice(extra);
        assert_eq!(snapshot_info(&tail), snapshot_info(snap));
    }

    #[test]
    fn newer_locker_info_is_skipped() {
        // locker_info_t v2 with an extra field after the description.
        let mut id = vec![8];
        id.extend_from_slice(&1i64.to_le_bytes());
        enc_string(&mut id, b"c");
        let mut sin = vec![2, 0, 0, 0, 127, 0, 0, 1];
        sin.resize(16, 0);
        let mut info = vec![0; 8];
        info.extend(addr2(1, 3, &sin));
        enc_string(&mut info, b"d");
        info.extend_from_slice(b"new field");
        let mut body = 1u32.to_le_bytes().to_vec();
        body.extend(enc_struct(1, 1, &id));
        body.extend(enc_struct(2, 1, &info));
        body.push(2);
        enc_string(&mut body, b"t");
        let got = lock_info(&enc_struct(1, 1, &body)).unwrap();
        assert_eq!(got.lockers[0].address, "127.0.0.1:0/3");
        assert_eq!(got.lockers[0].description, "d");
        assert_eq!((got.lock_type, got.tag.as_str()), (2, "t"));
    }

    #[test]
    fn incompatible_versions_are_rejected() {
        let mut snap = capture!("snapshot_info_user").to_vec();
        snap[1] = 2; // compat_v 2 > 1
        let e = snapshot_info(&snap).unwrap_err();
        assert_eq!(e.field, "snapshot_info");
        assert!(e.reason.contains("version"), "{e}");

        let mut trash = capture!("trash_spec").to_vec();
        trash[1] = 3;
        assert_eq!(trash_spec(&trash).unwrap_err().field, "trash_spec");

        let mut lock = capture!("lock_info_exclusive").to_vec();
        lock[11] = 2; // locker_id_t compat
        assert_eq!(lock_info(&lock).unwrap_err().field, "lock_info.locker_id");

        let mut list = capture!("children_list_img1_s1").to_vec();
        list[5] = 3; // first ChildImageSpec compat
        assert_eq!(
            children_list(&list).unwrap_err().field,
            "children_list.child"
        );
    }

    // -- hostile input ------------------------------------------------------------

    #[test]
    fn every_truncation_of_every_capture_is_an_error() {
        for (name, bytes, dec) in captures() {
            let f = decoder(dec);
            assert!(f(bytes), "{name} must decode");
            for len in 0..bytes.len() {
                assert!(!f(&bytes[..len]), "{name} truncated to {len} bytes decoded");
            }
        }
    }

    #[test]
    fn huge_lengths_fail_without_allocating() {
        let ff = [0xff, 0xff, 0xff, 0xff];
        let with_ff = |prefix: &[u8]| {
            let mut v = prefix.to_vec();
            v.extend_from_slice(&ff);
            v.extend_from_slice(b"some bytes that follow");
            v
        };
        let cases: Vec<(&str, Vec<u8>, Decoder)> = vec![
            ("string", with_ff(&[]), decoder("string_value")),
            ("string_set count", with_ff(&[]), decoder("string_set")),
            (
                "string_set item",
                with_ff(&[1, 0, 0, 0]),
                decoder("string_set"),
            ),
            (
                "children_list count",
                with_ff(&[]),
                decoder("children_list"),
            ),
            (
                "snapcontext count",
                with_ff(&[0; 8]),
                decoder("snapcontext"),
            ),
            ("struct_len", with_ff(&[1, 1]), decoder("snapshot_info")),
            ("lock struct_len", with_ff(&[1, 1]), decoder("lock_info")),
            (
                "lockers count",
                {
                    let mut body = ff.to_vec();
                    body.extend_from_slice(&[0; 64]);
                    enc_struct(1, 1, &body)
                },
                decoder("lock_info"),
            ),
            (
                "children_key image_id",
                with_ff(&[2, 0, 0, 0, 0, 0, 0, 0]),
                decoder("children_key"),
            ),
            (
                "parent namespace",
                {
                    let mut body = 2i64.to_le_bytes().to_vec();
                    body.extend_from_slice(&ff);
                    body.extend_from_slice(&[0; 16]);
                    enc_struct(1, 1, &body)
                },
                decoder("parent_spec"),
            ),
            (
                "sockaddr length",
                {
                    let mut addr = vec![1, 1, 1, 16, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0];
                    addr.extend_from_slice(&ff);
                    addr.extend_from_slice(&[0; 4]);
                    lock_reply_with_addr(&addr)
                },
                decoder("lock_info"),
            ),
        ];
        for (name, bytes, f) in cases {
            let (ok, largest) = largest_alloc_during(|| f(&bytes));
            assert!(!ok, "{name}: 0xFFFFFFFF length must be rejected");
            assert!(
                largest < 4096,
                "{name}: allocated {largest} bytes for a hostile length"
            );
        }
        // The errors name the field.
        let e = string_value(&with_ff(&[])).unwrap_err();
        assert_eq!(e.field, "string");
        assert!(
            e.to_string()
                .starts_with("cannot decode string: length 4294967295"),
            "{e}"
        );
    }

    /// xorshift64*: a small deterministic generator for the fuzz loops.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
        }

        /// An interesting byte: small values and 0xff are over-represented,
        /// because they make plausible versions, counts and lengths.
        fn byte(&mut self) -> u8 {
            match self.next() % 8 {
                0 => 0,
                1 => 1,
                2 => 0xff,
                3 => 2,
                _ => self.next().to_le_bytes()[0],
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        const CASES: usize = 20_000;
        let captures = captures();
        for (i, (name, f)) in DECODERS.iter().enumerate() {
            let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
            let seeds: Vec<&[u8]> = captures
                .iter()
                .filter(|(_, _, d)| d == name)
                .map(|(_, b, _)| *b)
                .collect();
            let mut ok = 0usize;
            for case in 0..CASES {
                let input: Vec<u8> = if case % 2 == 0 || seeds.is_empty() {
                    // random bytes of a random length
                    let len = rng.below(200);
                    (0..len).map(|_| rng.byte()).collect()
                } else {
                    // a real capture with a few bytes changed, inserted or cut
                    let mut v = seeds[rng.below(seeds.len())].to_vec();
                    for _ in 0..=rng.below(4) {
                        let at = rng.below(v.len() + 1);
                        match rng.next() % 4 {
                            0 if at < v.len() => v[at] = rng.byte(),
                            1 => v.insert(at, rng.byte()),
                            2 if at < v.len() => {
                                v.remove(at);
                            }
                            _ => v.truncate(at),
                        }
                    }
                    v
                };
                let (decoded, largest) = largest_alloc_during(|| f(&input));
                ok += usize::from(decoded);
                assert!(
                    largest <= 4096 + 64 * input.len(),
                    "{name}: {largest}-byte allocation for {} input bytes",
                    input.len()
                );
            }
            // The mutated captures must exercise the success paths too.
            assert!(ok > 0, "{name}: no case decoded");
        }
    }
}
