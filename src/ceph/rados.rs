//! The librados implementation of [`Conn`]: connection set-up through the
//! `ceph` crate's bindings, mon commands, and compound reads through the shim.

use super::decode::{self, DecodeError};
use super::ffi;
use super::{Conn, ImageHeader, PoolInfo};
use crate::error::{Error, libc_errno};
use crate::model::{
    ChildRef, Location, Lock, LockKind, ParentRef, PoolId, QueuedTask, Snapshot, SnapshotNamespace,
    TrashEntry, V1ChildLink, Watcher,
};
use ceph::rados::{self as sys, rados_ioctx_t, rados_t};
use std::collections::HashMap;
use std::ffi::{CString, c_void};
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// The snapshot id librbd uses for the image head.
const CEPH_NOSNAP: u64 = u64::MAX - 1;
/// The lock librbd uses for both the exclusive-lock feature and `rbd lock add`.
const RBD_LOCK_NAME: &str = "rbd_lock";
/// Omap entries asked for per page; big directories take several pages.
const OMAP_PAGE: u64 = 4096;

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Path of ceph.conf.
    pub conf_path: String,
    /// Client id without `client.`.
    pub user: String,
    /// Bound on every mon and OSD op, and on the initial connect.
    pub op_timeout: Duration,
    /// Most RADOS operations sent per second, across every pool and task
    /// (`--sample.max-ops-per-second`); `None` sends as fast as the in-flight
    /// bound allows.
    pub max_ops_per_second: Option<f64>,
}

/// A connected librados handle.
pub struct RadosConn {
    handle: std::sync::Arc<ClusterHandle>,
    /// I/O contexts by pool and namespace. Kept for the life of the
    /// connection: destroying one while an aio op is in flight is unsafe, and
    /// pool ids are never reused.
    ioctxs: Mutex<HashMap<(PoolId, String), Ioctx>>,
    /// Pool names by id, for error messages.
    pool_names: Mutex<HashMap<PoolId, String>>,
    ops_sent: AtomicU64,
    mon_commands_sent: AtomicU64,
    /// Operations between submission and completion, shared with the
    /// completion callbacks.
    inflight: Arc<InFlight>,
    /// Spaces operations out when `max_ops_per_second` is set.
    pacer: Option<Pacer>,
}

/// Counts RADOS operations from submission until librados completes them
/// (reply, error or `rados_osd_op_timeout`), whether or not anyone still
/// waits for the result, and remembers the most at once.
#[derive(Debug, Default)]
struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl InFlight {
    fn start(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
    }

    fn end(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Ends one in-flight operation when dropped (mon commands: also on panic).
struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A pacer shared by every pool and task of a connection: operations leave
/// at least `interval` apart, in the order they asked. No credit builds up
/// while idle, so a sample never starts with a burst.
#[derive(Debug)]
struct Pacer {
    interval: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl Pacer {
    /// `None` for a rate that is not a positive finite number.
    fn new(ops_per_second: f64) -> Option<Pacer> {
        if !(ops_per_second.is_finite() && ops_per_second > 0.0) {
            return None;
        }
        Some(Pacer {
            interval: Duration::from_secs_f64(1.0 / ops_per_second),
            next: Mutex::new(tokio::time::Instant::now()),
        })
    }

    /// Waits for this operation's slot.
    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// Owns a `rados_t`; shuts it down exactly once. (The `ceph` crate's own
/// `Rados` cannot be configured before connecting, and its
/// `disconnect_from_ceph` plus `Drop` shut down twice.)
struct ClusterHandle(rados_t);
// SAFETY: librados cluster handles are thread-safe.
unsafe impl Send for ClusterHandle {}
unsafe impl Sync for ClusterHandle {}
impl Drop for ClusterHandle {
    fn drop(&mut self) {
        // SAFETY: created by rados_create, shut down only here.
        unsafe { sys::rados_shutdown(self.0) }
    }
}

#[derive(Clone, Copy)]
struct Ioctx(rados_ioctx_t);
// SAFETY: librados I/O contexts may be used for aio from any thread; ours
// never change after creation.
unsafe impl Send for Ioctx {}
unsafe impl Sync for Ioctx {}

fn cstring(s: &str, what: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::Config(format!("{what} contains a NUL byte: {s:?}")))
}

impl RadosConn {
    /// Checks what can be checked without the network: the config file and
    /// keyring are readable. Errors here are fatal at start.
    pub fn preflight(opts: &ConnectOptions) -> Result<(), Error> {
        std::fs::File::open(&opts.conf_path).map_err(|e| {
            Error::Config(format!("cannot read ceph config {}: {e}", opts.conf_path))
        })?;
        let handle = Self::configured_handle(opts)?;
        let keyring = conf_get(&handle, "keyring").unwrap_or_default();
        let key_set = conf_get(&handle, "key").is_some_and(|k| !k.is_empty())
            || conf_get(&handle, "keyfile").is_some_and(|k| !k.is_empty());
        if !key_set && !keyring.is_empty() {
            let candidates: Vec<&str> = keyring
                .split([',', ';', ' ', '\t'])
                .filter(|s| !s.is_empty())
                .collect();
            let readable: Vec<&&str> = candidates
                .iter()
                .filter(|p| std::fs::File::open(p).is_ok())
                .collect();
            if readable.is_empty() {
                return Err(Error::Config(format!(
                    "no readable keyring for client.{} (looked in: {})",
                    opts.user,
                    candidates.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn configured_handle(opts: &ConnectOptions) -> Result<ClusterHandle, Error> {
        let user = cstring(&opts.user, "--ceph.user")?;
        let conf = cstring(&opts.conf_path, "--ceph.config")?;
        let mut raw: rados_t = std::ptr::null_mut();
        // SAFETY: plain FFI calls with valid C strings and out-pointers.
        let rc = unsafe { sys::rados_create(&mut raw, user.as_ptr()) };
        if rc < 0 {
            return Err(Error::Config(format!(
                "cannot create a rados handle for client.{}: {}",
                opts.user,
                crate::error::errno_text(rc)
            )));
        }
        let handle = ClusterHandle(raw);
        let rc = unsafe { sys::rados_conf_read_file(handle.0, conf.as_ptr()) };
        if rc < 0 {
            return Err(Error::Config(format!(
                "cannot parse ceph config {}: {}",
                opts.conf_path,
                crate::error::errno_text(rc)
            )));
        }
        let secs = opts.op_timeout.as_secs_f64().max(1.0).to_string();
        for (key, value) in [
            ("rados_osd_op_timeout", secs.as_str()),
            ("rados_mon_op_timeout", secs.as_str()),
            ("client_mount_timeout", secs.as_str()),
            // The exporter never needs a cache, and logging goes through tracing.
            ("log_to_stderr", "false"),
            ("err_to_stderr", "false"),
        ] {
            let k = cstring(key, "option")?;
            let v = cstring(value, "option value")?;
            let rc = unsafe { sys::rados_conf_set(handle.0, k.as_ptr(), v.as_ptr()) };
            if rc < 0 {
                return Err(Error::Config(format!(
                    "cannot set {key}={value}: {}",
                    crate::error::errno_text(rc)
                )));
            }
        }
        Ok(handle)
    }

    /// Connects. Authentication failures are `Error::Config` (fatal: retrying
    /// cannot fix them); anything else is `Error::Connect` (retry later).
    /// Blocks for up to the op timeout, so call it from a blocking thread.
    pub fn connect(opts: &ConnectOptions) -> Result<RadosConn, Error> {
        let handle = Self::configured_handle(opts)?;
        let rc = unsafe { sys::rados_connect(handle.0) };
        if rc < 0 {
            let message = crate::error::errno_text(rc);
            if rc == -libc_errno::EACCES || rc == -libc_errno::EPERM {
                return Err(Error::Config(format!(
                    "the cluster rejected client.{} (wrong key or unknown user?): {message}",
                    opts.user
                )));
            }
            return Err(Error::Connect {
                user: opts.user.clone(),
                conf: opts.conf_path.clone(),
                message,
            });
        }
        Ok(RadosConn {
            handle: std::sync::Arc::new(handle),
            ioctxs: Mutex::new(HashMap::new()),
            pool_names: Mutex::new(HashMap::new()),
            ops_sent: AtomicU64::new(0),
            mon_commands_sent: AtomicU64::new(0),
            inflight: Arc::new(InFlight::default()),
            pacer: opts.max_ops_per_second.and_then(Pacer::new),
        })
    }

    /// Most RADOS operations (compound reads and mon commands) that were in
    /// flight at once since the connection was made or the last
    /// [`reset_inflight_peak`](Self::reset_inflight_peak). An operation is in
    /// flight from its submission until librados completes it, even when
    /// nobody waits for its result any more.
    pub fn inflight_peak(&self) -> usize {
        self.inflight.peak.load(Ordering::SeqCst)
    }

    /// RADOS operations in flight right now.
    pub fn inflight(&self) -> usize {
        self.inflight.now.load(Ordering::SeqCst)
    }

    /// Starts a new peak from the operations in flight now.
    pub fn reset_inflight_peak(&self) {
        self.inflight
            .peak
            .store(self.inflight.now.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Mon commands sent so far; they are included in
    /// [`Conn::ops_sent`], so `ops_sent() - mon_commands_sent()` is what the
    /// OSDs receive.
    pub fn mon_commands_sent(&self) -> u64 {
        self.mon_commands_sent.load(Ordering::Relaxed)
    }

    /// Runs a mon command on a blocking thread and returns its output.
    pub async fn mon_command(&self, json: String) -> Result<Vec<u8>, Error> {
        if let Some(pacer) = &self.pacer {
            pacer.wait().await;
        }
        self.ops_sent.fetch_add(1, Ordering::Relaxed);
        self.mon_commands_sent.fetch_add(1, Ordering::Relaxed);
        let handle = self.handle.clone();
        let inflight = self.inflight.clone();
        inflight.start();
        let guard = InFlightGuard(inflight);
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            mon_command_blocking(&handle, &json)
        })
        .await
        .map_err(|e| Error::MonCommand {
            command: "?".into(),
            code: -libc_errno::EINVAL,
            message: e.to_string(),
        })?
    }

    fn ioctx(&self, loc: &Location) -> Result<Ioctx, Error> {
        let mut map = self.ioctxs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(io) = map.get(&(loc.pool_id, loc.namespace.clone())) {
            return Ok(*io);
        }
        let mut raw: rados_ioctx_t = std::ptr::null_mut();
        // SAFETY: valid handle and out-pointer.
        let rc = unsafe { sys::rados_ioctx_create2(self.handle.0, loc.pool_id, &mut raw) };
        if rc < 0 {
            return Err(Error::Rados {
                what: "opening pool",
                pool: self.pool_label(loc),
                object: String::new(),
                code: rc,
            });
        }
        let ns = cstring(&loc.namespace, "namespace")?;
        unsafe { sys::rados_ioctx_set_namespace(raw, ns.as_ptr()) };
        let io = Ioctx(raw);
        map.insert((loc.pool_id, loc.namespace.clone()), io);
        Ok(io)
    }

    fn pool_label(&self, loc: &Location) -> String {
        let names = self.pool_names.lock().unwrap_or_else(|e| e.into_inner());
        let pool = names
            .get(&loc.pool_id)
            .cloned()
            .unwrap_or_else(|| loc.pool_id.to_string());
        if loc.namespace.is_empty() {
            pool
        } else {
            format!("{pool}/{}", loc.namespace)
        }
    }

    /// Sends one compound read and waits for it.
    async fn run(
        &self,
        loc: &Location,
        oid: &str,
        batch: Batch,
        what: &'static str,
    ) -> Result<Option<Done>, Error> {
        let io = self.ioctx(loc)?;
        if let Some(pacer) = &self.pacer {
            pacer.wait().await;
        }
        self.ops_sent.fetch_add(1, Ordering::Relaxed);
        match batch.submit(io, oid, &self.inflight).await {
            Ok(done) => match done.rc() {
                0.. => Ok(Some(done)),
                rc if rc == -libc_errno::ENOENT => Ok(None),
                rc => Err(self.rados_error(loc, oid, what, rc)),
            },
            Err(rc) => Err(self.rados_error(loc, oid, what, rc)),
        }
    }

    fn rados_error(&self, loc: &Location, oid: &str, what: &'static str, code: i32) -> Error {
        Error::Rados {
            what,
            pool: self.pool_label(loc),
            object: oid.to_string(),
            code,
        }
    }

    /// Reads every omap entry of `oid` whose key starts with `prefix`.
    /// A missing object reads as empty.
    async fn omap_all(
        &self,
        loc: &Location,
        oid: &str,
        prefix: &str,
    ) -> Result<Vec<OmapEntry>, Error> {
        let mut entries = Vec::new();
        let mut start_after: Vec<u8> = Vec::new();
        loop {
            let mut batch = Batch::new();
            let step = batch.omap_get_vals(&start_after, prefix, OMAP_PAGE)?;
            let Some(mut done) = self.run(loc, oid, batch, "omap read").await? else {
                return Ok(entries);
            };
            let (page, more) = done
                .omap(step)
                .map_err(|rc| self.rados_error(loc, oid, "omap read", rc))?;
            let last = page.last().map(|(k, _)| k.clone());
            entries.extend(page);
            match last {
                Some(k) if more => start_after = k,
                _ => return Ok(entries),
            }
        }
    }
}

fn mon_command_blocking(handle: &ClusterHandle, json: &str) -> Result<Vec<u8>, Error> {
    let prefix = serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("prefix").and_then(|p| p.as_str().map(str::to_owned)))
        .unwrap_or_default();
    let cmd = cstring(json, "mon command")?;
    let mut cmds = [cmd.as_ptr()];
    let mut outbuf: *mut c_char = std::ptr::null_mut();
    let mut outlen: usize = 0;
    let mut outs: *mut c_char = std::ptr::null_mut();
    let mut outslen: usize = 0;
    // SAFETY: valid pointers; buffers freed with rados_buffer_free below.
    let rc = unsafe {
        sys::rados_mon_command(
            handle.0,
            cmds.as_mut_ptr(),
            1,
            std::ptr::null(),
            0,
            &mut outbuf,
            &mut outlen,
            &mut outs,
            &mut outslen,
        )
    };
    let take = |p: *mut c_char, n: usize| -> Vec<u8> {
        if p.is_null() {
            return Vec::new();
        }
        // SAFETY: librados returned a buffer of n bytes at p.
        let v = unsafe { std::slice::from_raw_parts(p as *const u8, n) }.to_vec();
        unsafe { sys::rados_buffer_free(p) };
        v
    };
    let out = take(outbuf, outlen);
    let status = take(outs, outslen);
    if rc < 0 {
        return Err(Error::MonCommand {
            command: prefix,
            code: rc,
            message: String::from_utf8_lossy(&status).trim().to_string(),
        });
    }
    Ok(out)
}

fn conf_get(handle: &ClusterHandle, key: &str) -> Option<String> {
    let k = CString::new(key).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: buffer of the given length.
    let rc = unsafe {
        sys::rados_conf_get(
            handle.0,
            k.as_ptr(),
            buf.as_mut_ptr() as *mut c_char,
            buf.len(),
        )
    };
    if rc < 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

fn decode_err(object: &str) -> impl Fn(DecodeError) -> Error + '_ {
    move |source| Error::Decode {
        object: object.to_string(),
        source,
    }
}

impl Conn for RadosConn {
    async fn pools(&self) -> Result<Vec<PoolInfo>, Error> {
        let cmd = r#"{"prefix": "osd pool ls", "detail": "detail", "format": "json"}"#;
        let out = self.mon_command(cmd.to_string()).await?;
        let pools = parse_pool_list(&out).map_err(|reason| Error::Decode {
            object: "mon command `osd pool ls detail`".into(),
            source: DecodeError {
                field: "pool list",
                reason,
            },
        })?;
        let mut names = self.pool_names.lock().unwrap_or_else(|e| e.into_inner());
        for p in &pools {
            names.insert(p.id, p.name.clone());
        }
        Ok(pools)
    }

    async fn namespaces(&self, pool: &PoolInfo) -> Result<Vec<String>, Error> {
        let loc = Location {
            pool_id: pool.id,
            namespace: String::new(),
        };
        let entries = self.omap_all(&loc, "rbd_namespace", "name_").await?;
        Ok(entries
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k["name_".len()..]).into_owned())
            .collect())
    }

    async fn directory(&self, loc: &Location) -> Result<Vec<(String, String)>, Error> {
        let entries = self.omap_all(loc, "rbd_directory", "id_").await?;
        entries
            .into_iter()
            .map(|(k, v)| {
                let id = String::from_utf8_lossy(&k["id_".len()..]).into_owned();
                let name = decode::string_value(&v).map_err(decode_err("rbd_directory"))?;
                Ok((id, name))
            })
            .collect()
    }

    async fn trash(&self, loc: &Location) -> Result<Vec<TrashEntry>, Error> {
        let entries = self.omap_all(loc, "rbd_trash", "id_").await?;
        entries
            .into_iter()
            .map(|(k, v)| {
                let id = String::from_utf8_lossy(&k["id_".len()..]).into_owned();
                let spec = decode::trash_spec(&v).map_err(decode_err("rbd_trash"))?;
                Ok(TrashEntry {
                    id,
                    name: spec.name,
                    source: decode::trash_source_name(spec.source),
                    deletion_time: spec.deletion_time,
                    deferment_end_time: spec.deferment_end_time,
                })
            })
            .collect()
    }

    async fn v1_children(&self, loc: &Location) -> Result<Vec<V1ChildLink>, Error> {
        let entries = self.omap_all(loc, "rbd_children", "").await?;
        entries
            .into_iter()
            .map(|(k, v)| {
                let key = decode::children_key(&k).map_err(decode_err("rbd_children"))?;
                let ids = decode::string_set(&v).map_err(decode_err("rbd_children"))?;
                Ok(V1ChildLink {
                    parent_pool_id: key.pool_id,
                    parent_image_id: key.image_id,
                    parent_snap_id: key.snap_id,
                    child_image_ids: ids,
                })
            })
            .collect()
    }

    async fn tasks(&self, loc: &Location) -> Result<Vec<QueuedTask>, Error> {
        let entries = self.omap_all(loc, "rbd_task", "").await?;
        entries
            .into_iter()
            .map(|(_, v)| {
                parse_task(&v).map_err(|reason| Error::Decode {
                    object: "rbd_task".into(),
                    source: DecodeError {
                        field: "task",
                        reason,
                    },
                })
            })
            .collect()
    }

    async fn header(&self, loc: &Location, image_id: &str) -> Result<Option<ImageHeader>, Error> {
        let oid = format!("rbd_header.{image_id}");
        let head = decode::encode_snap_id(CEPH_NOSNAP);
        let mut b = Batch::new();
        let size = b.exec("rbd", "get_size", &head)?;
        let features = b.exec(
            "rbd",
            "get_features",
            &decode::encode_get_features(CEPH_NOSNAP),
        )?;
        let flags = b.exec("rbd", "get_flags", &head)?;
        let snapc = b.exec("rbd", "get_snapcontext", &[])?;
        let op_features = b.exec("rbd", "op_features_get", &[])?;
        let parent = b.exec("rbd", "parent_get", &[])?;
        let overlap = b.exec("rbd", "parent_overlap_get", &head)?;
        let lock = b.exec(
            "lock",
            "get_info",
            &decode::encode_lock_get_info(RBD_LOCK_NAME),
        )?;
        let watchers = b.list_watchers()?;
        let Some(done) = self.run(loc, &oid, b, "header read").await? else {
            return Ok(None);
        };
        let err = decode_err(&oid);
        // get_size failing means this is no image header (or it vanished).
        let (order, size) = match done.output(size) {
            Ok(bytes) => decode::size(bytes).map_err(&err)?,
            Err(rc) if rc == -libc_errno::ENOENT => return Ok(None),
            Err(rc) => return Err(self.rados_error(loc, &oid, "get_size", rc)),
        };
        let optional = |step: Step| -> Option<&[u8]> { done.output(step).ok() };
        let features = optional(features)
            .map(decode::features)
            .transpose()
            .map_err(&err)?
            .unwrap_or(0);
        let flags = optional(flags)
            .map(decode::flags)
            .transpose()
            .map_err(&err)?
            .unwrap_or(0);
        let op_features = optional(op_features)
            .map(decode::op_features)
            .transpose()
            .map_err(&err)?
            .unwrap_or(0);
        let snap_ids = optional(snapc)
            .map(decode::snapcontext)
            .transpose()
            .map_err(&err)?
            .map(|s| s.snaps)
            .unwrap_or_default();
        let overlap = optional(overlap)
            .map(decode::parent_overlap)
            .transpose()
            .map_err(&err)?
            .flatten();
        let parent = optional(parent)
            .map(decode::parent_spec)
            .transpose()
            .map_err(&err)?
            .flatten()
            .map(|p| ParentRef {
                pool_id: p.pool_id,
                namespace: p.namespace,
                image_id: p.image_id,
                snap_id: p.snap_id,
                overlap,
            });
        let locks = match done.output(lock) {
            Ok(bytes) => {
                let info = decode::lock_info(bytes).map_err(&err)?;
                let shared = info.lock_type == 2;
                info.lockers
                    .into_iter()
                    .map(|l| {
                        let exclusive_lock =
                            info.tag == "internal" && l.cookie.starts_with("auto ");
                        Lock {
                            kind: if exclusive_lock {
                                LockKind::Exclusive
                            } else {
                                LockKind::Advisory
                            },
                            locker: decode::entity_name(l.entity_type, l.entity_num),
                            cookie: l.cookie,
                            address: l.address,
                            shared,
                            tag: info.tag.clone(),
                        }
                    })
                    .collect()
            }
            // No lock ever taken: the lock does not exist.
            Err(_) => Vec::new(),
        };
        let watchers = done.watchers(watchers).unwrap_or_default();
        Ok(Some(ImageHeader {
            size,
            order,
            features,
            flags,
            op_features,
            snap_ids,
            parent,
            watchers,
            locks,
        }))
    }

    async fn snapshots(
        &self,
        loc: &Location,
        image_id: &str,
        snap_ids: &[u64],
    ) -> Result<Option<Vec<Snapshot>>, Error> {
        let oid = format!("rbd_header.{image_id}");
        let mut b = Batch::new();
        let mut steps = Vec::with_capacity(snap_ids.len());
        for &id in snap_ids {
            let input = decode::encode_snap_id(id);
            steps.push((
                b.exec("rbd", "snapshot_get", &input)?,
                b.exec("rbd", "get_protection_status", &input)?,
                b.exec("rbd", "children_list", &input)?,
            ));
        }
        let Some(done) = self.run(loc, &oid, b, "snapshot read").await? else {
            return Ok(None);
        };
        let err = decode_err(&oid);
        let mut snaps = Vec::with_capacity(steps.len());
        for (info, protection, children) in steps {
            // A snapshot removed since the header read is simply gone.
            let Ok(info) = done.output(info) else {
                continue;
            };
            let info = decode::snapshot_info(info).map_err(&err)?;
            let protected = match done.output(protection) {
                Ok(b) => decode::protection_status(b).map_err(&err)? == 2,
                Err(_) => false,
            };
            let v2_children = match done.output(children) {
                Ok(b) => decode::children_list(b)
                    .map_err(&err)?
                    .into_iter()
                    .map(|c| ChildRef {
                        pool_id: c.pool_id,
                        namespace: c.namespace,
                        image_id: c.image_id,
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            snaps.push(Snapshot {
                id: info.id,
                name: info.name,
                namespace: match info.namespace {
                    decode::SnapNamespace::User => SnapshotNamespace::User,
                    decode::SnapNamespace::Group => SnapshotNamespace::Group,
                    decode::SnapNamespace::Trash { original_name, .. } => {
                        SnapshotNamespace::Trash { original_name }
                    }
                    decode::SnapNamespace::Mirror => SnapshotNamespace::Mirror,
                    decode::SnapNamespace::Unknown(code) => SnapshotNamespace::Unknown { code },
                },
                protected,
                size: info.image_size,
                v2_children,
            });
        }
        Ok(Some(snaps))
    }

    async fn image_name(
        &self,
        loc: &Location,
        image_id: &str,
    ) -> Result<Option<(String, bool)>, Error> {
        // A prefix read of the one key: no cls method needed, so the
        // read-only caps suffice.
        let key = format!("id_{image_id}");
        for (oid, in_trash) in [("rbd_directory", false), ("rbd_trash", true)] {
            let entries = self.omap_all(loc, oid, &key).await?;
            if let Some((_, v)) = entries.iter().find(|(k, _)| k.as_slice() == key.as_bytes()) {
                let name = if in_trash {
                    decode::trash_spec(v).map_err(decode_err(oid))?.name
                } else {
                    decode::string_value(v).map_err(decode_err(oid))?
                };
                return Ok(Some((name, in_trash)));
            }
        }
        Ok(None)
    }

    fn ops_sent(&self) -> u64 {
        self.ops_sent.load(Ordering::Relaxed)
    }
}

/// Parses `osd pool ls detail --format json`.
fn parse_pool_list(out: &[u8]) -> Result<Vec<PoolInfo>, String> {
    let v: serde_json::Value = serde_json::from_slice(out).map_err(|e| e.to_string())?;
    let arr = v.as_array().ok_or("not a JSON array")?;
    arr.iter()
        .map(|p| {
            let id = p
                .get("pool_id")
                .and_then(|x| x.as_i64())
                .ok_or("pool without pool_id")?;
            let name = p
                .get("pool_name")
                .and_then(|x| x.as_str())
                .ok_or("pool without pool_name")?
                .to_string();
            let applications = p
                .get("application_metadata")
                .and_then(|m| m.as_object())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            Ok(PoolInfo {
                id,
                name,
                applications,
            })
        })
        .collect()
}

/// Parses one `rbd_task` omap value (JSON written by the mgr's rbd_support).
fn parse_task(v: &[u8]) -> Result<QueuedTask, String> {
    let v: serde_json::Value = serde_json::from_slice(v).map_err(|e| format!("not JSON: {e}"))?;
    let refs = v.get("refs").ok_or("no refs")?;
    let text =
        |o: &serde_json::Value, k: &str| o.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    Ok(QueuedTask {
        id: text(&v, "id").ok_or("no id")?,
        action: text(refs, "action").ok_or("no refs.action")?,
        image_id: text(refs, "image_id"),
        image_name: text(refs, "image_name"),
    })
}

/// Index of a step in a batch.
#[derive(Debug, Clone, Copy)]
struct Step(usize);

/// A compound read being built.
struct Batch(*mut ffi::RbdxBatch);
// SAFETY: a batch is used by one thread at a time; the shim keeps no
// thread-local state.
unsafe impl Send for Batch {}

impl Drop for Batch {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: we own the batch (not submitted, or handed back).
            unsafe { ffi::rbdx_batch_free(self.0) }
        }
    }
}

fn step(rc: c_int) -> Result<Step, Error> {
    if rc < 0 {
        return Err(Error::Config(
            "out of memory building a RADOS operation".into(),
        ));
    }
    Ok(Step(rc as usize))
}

impl Batch {
    fn new() -> Batch {
        // SAFETY: returns null only on allocation failure, which aborts below.
        let p = unsafe { ffi::rbdx_batch_new() };
        assert!(!p.is_null(), "out of memory");
        Batch(p)
    }

    fn exec(&mut self, cls: &str, method: &str, input: &[u8]) -> Result<Step, Error> {
        let cls = cstring(cls, "class")?;
        let method = cstring(method, "method")?;
        step(unsafe {
            ffi::rbdx_batch_exec(
                self.0,
                cls.as_ptr(),
                method.as_ptr(),
                input.as_ptr() as *const c_char,
                input.len(),
            )
        })
    }

    fn list_watchers(&mut self) -> Result<Step, Error> {
        step(unsafe { ffi::rbdx_batch_list_watchers(self.0) })
    }

    fn omap_get_vals(&mut self, start_after: &[u8], prefix: &str, max: u64) -> Result<Step, Error> {
        let prefix = cstring(prefix, "omap prefix")?;
        step(unsafe {
            ffi::rbdx_batch_omap_get_vals(
                self.0,
                start_after.as_ptr() as *const c_char,
                start_after.len(),
                prefix.as_ptr(),
                max,
            )
        })
    }

    /// Submits and waits. Completion (or timeout, through
    /// `rados_osd_op_timeout`) is signalled by librados; if this future is
    /// dropped first, the callback frees the batch. The operation counts in
    /// `inflight` until the callback runs.
    async fn submit(mut self, io: Ioctx, oid: &str, inflight: &Arc<InFlight>) -> Result<Done, i32> {
        let (tx, rx) = oneshot::channel::<BatchPtr>();
        let pending = Pending {
            tx,
            inflight: inflight.clone(),
        };
        let arg = Box::into_raw(Box::new(pending)) as *mut c_void;
        let ptr = self.0;
        inflight.start();
        // SAFETY: ptr is a live batch, io a live ioctx, oid valid for the call.
        let rc = unsafe {
            ffi::rbdx_batch_submit(
                io.0,
                oid.as_ptr() as *const c_char,
                oid.len(),
                ptr,
                on_complete,
                arg,
            )
        };
        if rc < 0 {
            // Not submitted: the callback will never run, so reclaim its box.
            let pending = unsafe { Box::from_raw(arg as *mut Pending) };
            pending.inflight.end();
            return Err(rc);
        }
        // From here the callback owns the batch.
        self.0 = std::ptr::null_mut();
        match rx.await {
            Ok(BatchPtr(p)) => Ok(Done(Batch(p))),
            Err(_) => Err(-libc_errno::EINVAL),
        }
    }
}

struct BatchPtr(*mut ffi::RbdxBatch);
// SAFETY: ownership of the batch moves with the pointer.
unsafe impl Send for BatchPtr {}

/// What the completion callback needs: where to hand the batch back, and the
/// in-flight count to decrement.
struct Pending {
    tx: oneshot::Sender<BatchPtr>,
    inflight: Arc<InFlight>,
}

extern "C" fn on_complete(arg: *mut c_void, batch: *mut ffi::RbdxBatch, _rc: c_int) {
    // SAFETY: arg is the box made in submit, used exactly once.
    let Pending { tx, inflight } = *unsafe { Box::from_raw(arg as *mut Pending) };
    inflight.end();
    if let Err(BatchPtr(p)) = tx.send(BatchPtr(batch)) {
        // Nobody waits any more: free it here.
        unsafe { ffi::rbdx_batch_free(p) }
    }
}

/// One omap key and value.
type OmapEntry = (Vec<u8>, Vec<u8>);

/// A completed compound read.
struct Done(Batch);

impl Done {
    fn rc(&self) -> i32 {
        unsafe { ffi::rbdx_batch_rc(self.0.0) }
    }

    /// Output bytes of an exec step, or its negative return code.
    fn output(&self, step: Step) -> Result<&[u8], i32> {
        let rval = unsafe { ffi::rbdx_step_rval(self.0.0, step.0) };
        if rval < 0 {
            return Err(rval);
        }
        let mut data: *const c_char = std::ptr::null();
        let mut len = 0usize;
        let rc = unsafe { ffi::rbdx_step_output(self.0.0, step.0, &mut data, &mut len) };
        if rc < 0 || data.is_null() {
            return Err(rc.min(-1));
        }
        // SAFETY: the shim keeps the bytes alive until the batch is freed,
        // and the returned slice borrows self.
        Ok(unsafe { std::slice::from_raw_parts(data as *const u8, len) })
    }

    fn watchers(&self, step: Step) -> Result<Vec<Watcher>, i32> {
        let rval = unsafe { ffi::rbdx_step_rval(self.0.0, step.0) };
        if rval < 0 {
            return Err(rval);
        }
        let n = unsafe { ffi::rbdx_step_watcher_count(self.0.0, step.0) };
        let mut out = Vec::with_capacity(n);
        let mut addr = [0u8; 256];
        for j in 0..n {
            let mut id = 0i64;
            let mut cookie = 0u64;
            let rc = unsafe {
                ffi::rbdx_step_watcher(
                    self.0.0,
                    step.0,
                    j,
                    addr.as_mut_ptr() as *mut c_char,
                    addr.len(),
                    &mut id,
                    &mut cookie,
                )
            };
            if rc < 0 {
                return Err(rc);
            }
            let end = addr.iter().position(|&b| b == 0).unwrap_or(addr.len());
            out.push(Watcher {
                client: format!("client.{id}"),
                address: String::from_utf8_lossy(&addr[..end]).into_owned(),
                cookie,
            });
        }
        out.sort();
        Ok(out)
    }

    fn omap(&mut self, step: Step) -> Result<(Vec<OmapEntry>, bool), i32> {
        let rval = unsafe { ffi::rbdx_step_rval(self.0.0, step.0) };
        if rval < 0 {
            return Err(rval);
        }
        let mut more: c_int = 0;
        let n = unsafe { ffi::rbdx_step_omap_count(self.0.0, step.0, &mut more) };
        let mut out = Vec::with_capacity(n);
        for j in 0..n {
            let (mut k, mut kl, mut v, mut vl) =
                (std::ptr::null(), 0usize, std::ptr::null(), 0usize);
            let rc =
                unsafe { ffi::rbdx_step_omap_entry(self.0.0, j, &mut k, &mut kl, &mut v, &mut vl) };
            if rc < 0 {
                return Err(rc);
            }
            // SAFETY: the shim's buffers live until the batch is freed.
            let key = unsafe { std::slice::from_raw_parts(k as *const u8, kl) }.to_vec();
            let val = unsafe { std::slice::from_raw_parts(v as *const u8, vl) }.to_vec();
            out.push((key, val));
        }
        Ok((out, more != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pool_list_and_applications() {
        let json = br#"[{"pool_id":1,"pool_name":"device_health_metrics","application_metadata":{"mgr_devicehealth":{}}},
                        {"pool_id":2,"pool_name":"rbd","application_metadata":{"rbd":{}}}]"#;
        let pools = parse_pool_list(json).unwrap();
        assert_eq!(pools[1].name, "rbd");
        assert_eq!(pools[1].applications, vec!["rbd".to_string()]);
        assert!(parse_pool_list(b"{}").is_err());
        assert!(parse_pool_list(b"[{\"pool_name\":\"x\"}]").is_err());
    }

    #[tokio::test]
    async fn pacer_spaces_operations_across_tasks() {
        assert!(Pacer::new(0.0).is_none());
        assert!(Pacer::new(-1.0).is_none());
        assert!(Pacer::new(f64::NAN).is_none());
        assert!(Pacer::new(f64::INFINITY).is_none());
        let pacer = Arc::new(Pacer::new(200.0).unwrap());
        let t0 = std::time::Instant::now();
        let tasks: Vec<_> = (0..21)
            .map(|_| {
                let p = pacer.clone();
                tokio::spawn(async move { p.wait().await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // 21 operations at 200/s: the first leaves at once, the last 100 ms later.
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(99), "{took:?}");
        assert!(took < Duration::from_millis(400), "{took:?}");
        // Idle time earns no burst: the next one waits for its own slot only.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t1 = std::time::Instant::now();
        pacer.wait().await;
        pacer.wait().await;
        let took = t1.elapsed();
        assert!(took >= Duration::from_millis(4), "{took:?}");
    }

    #[test]
    fn inflight_counts_current_and_peak() {
        let f = Arc::new(InFlight::default());
        f.start();
        f.start();
        f.end();
        f.start();
        f.start();
        assert_eq!(f.now.load(Ordering::SeqCst), 3);
        assert_eq!(f.peak.load(Ordering::SeqCst), 3);
        drop(InFlightGuard(f.clone()));
        f.end();
        f.end();
        assert_eq!(f.now.load(Ordering::SeqCst), 0);
        assert_eq!(f.peak.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn parses_rbd_support_task() {
        let v = br#"{"sequence": 1, "id": "06f08859", "message": "Flattening image rbd/b", "refs": {"action": "flatten", "pool_name": "rbd", "pool_namespace": "", "image_name": "b", "image_id": "10301c1fdec5"}}"#;
        let t = parse_task(v).unwrap();
        assert_eq!(t.action, "flatten");
        assert_eq!(t.image_id.as_deref(), Some("10301c1fdec5"));
        assert!(parse_task(b"garbage").is_err());
        assert!(parse_task(br#"{"id":"x"}"#).is_err());
    }
}
