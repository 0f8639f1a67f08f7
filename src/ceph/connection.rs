//! Connecting to the cluster and talking to the mons: [`ConnectOptions`],
//! the start-up [`preflight`](RadosConn::preflight) check (with the key
//! check of `keytype.rs`), the cluster handle and its I/O contexts,
//! configuration reads, mon commands, and parsing the mons' JSON replies
//! (the pool list).
//!
//! Connection set-up goes through the `ceph` crate's raw bindings; the
//! compound reads the sampler makes are in `conn_impl.rs`.

use super::access::{KeySource, MonHost};
use super::batch::Ioctx;
use super::decode::DecodeError;
use super::keytype::{CephVersion, KeyProblem, KeyType, keyring_keys, loaded_ceph_version};
use super::throttle::{InFlight, InFlightGuard, Pacer};
use super::{PoolInfo, cstring};
use crate::error::{Error, libc_errno};
use crate::model::{Location, PoolId};
use ceph::rados::{self as sys, rados_ioctx_t, rados_t};
use std::collections::HashMap;
use std::ffi::CString;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Path of ceph.conf; `None` reads none (with `mon_host`, when no
    /// `--ceph.config` was given and the default one is absent).
    pub conf_path: Option<String>,
    /// Client id without `client.`.
    pub user: String,
    /// The mon addresses (`--ceph.mon-host`); they override ceph.conf's.
    pub mon_host: Option<MonHost>,
    /// The cephx key given directly (`--ceph.key-file`,
    /// `CEPH_RBD_EXPORTER_CEPH_KEY`); it overrides ceph.conf's keyring,
    /// and no keyring is searched for.
    pub key: Option<KeySource>,
    /// Bound on every mon and OSD op, and on the initial connect.
    pub op_timeout: Duration,
    /// Most RADOS operations sent per second, across every pool and task
    /// (`--sample.max-ops-per-second`); `None` sends as fast as the in-flight
    /// bound allows.
    pub max_ops_per_second: Option<f64>,
}

impl ConnectOptions {
    /// What the connection is made with, for messages: the ceph.conf path
    /// and/or `--ceph.mon-host ADDRS` (never the key).
    pub fn describe(&self) -> String {
        match (&self.conf_path, &self.mon_host) {
            (Some(conf), None) => conf.clone(),
            (Some(conf), Some(mons)) => format!("{conf} and --ceph.mon-host {mons}"),
            (None, Some(mons)) => format!("--ceph.mon-host {mons}"),
            (None, None) => "librados' defaults (no ceph.conf)".to_string(),
        }
    }

    /// Where the key is read from, at every connect: `--ceph.key-file PATH`,
    /// the environment, or the keyring ceph.conf names.
    pub fn key_origin(&self) -> String {
        match &self.key {
            Some(source) => source.origin(),
            None => "the keyring ceph.conf names (or librados' default keyrings)".to_string(),
        }
    }
}

/// A connected librados handle.
pub struct RadosConn {
    handle: Arc<ClusterHandle>,
    /// I/O contexts by pool and namespace. Kept for the life of the
    /// connection: destroying one while an aio op is in flight is unsafe, and
    /// pool ids are never reused.
    ioctxs: Mutex<HashMap<(PoolId, String), Ioctx>>,
    /// Pool names by id, for error messages.
    pool_names: Mutex<HashMap<PoolId, String>>,
    pub(super) ops_sent: AtomicU64,
    mon_commands_sent: AtomicU64,
    /// Operations between submission and completion, shared with the
    /// completion callbacks.
    pub(super) inflight: Arc<InFlight>,
    /// Spaces operations out when `max_ops_per_second` is set.
    pacer: Option<Pacer>,
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

impl RadosConn {
    /// Checks what can be checked without the network: the config file and
    /// keyring (or the key file) are readable, and the loaded librados can
    /// read the key it is to load (see [`KeyProblem`]). Errors here are
    /// fatal at start, and print as one line.
    pub fn preflight(opts: &ConnectOptions) -> Result<(), Error> {
        if let Some(path) = &opts.conf_path {
            std::fs::File::open(path)
                .map_err(|e| Error::Config(format!("cannot read ceph config {path}: {e}")))?;
        }
        let version = loaded_ceph_version();
        let handle = Self::configured_handle(opts)?;
        let keyring = conf_get(&handle, "keyring").unwrap_or_default();
        let key_set = conf_get(&handle, "key").is_some_and(|k| !k.is_empty())
            || conf_get(&handle, "keyfile").is_some_and(|k| !k.is_empty());
        if !key_set && !keyring.is_empty() {
            let candidates = search_path(&keyring);
            let readable: Vec<&&str> = candidates
                .iter()
                .filter(|p| std::fs::File::open(p).is_ok())
                .collect();
            if readable.is_empty() {
                return Err(Error::Config(format!(
                    "no readable keyring for client.{} (looked in: {}); name one in ceph.conf \
                     (`keyring = PATH`), or give the key with --ceph.key-file or {}",
                    opts.user,
                    candidates.join(", "),
                    super::access::KEY_ENV
                )));
            }
        }
        match key_problem(&handle, opts, version) {
            Some(problem) if problem.certain() => Err(Error::Config(problem.message())),
            _ => Ok(()),
        }
    }

    /// A handle with ceph.conf read (if any), then the mon addresses and
    /// key given directly, then the exporter's own settings.
    fn configured_handle(opts: &ConnectOptions) -> Result<ClusterHandle, Error> {
        let user = cstring(&opts.user, "--ceph.user")?;
        let mut raw: rados_t = std::ptr::null_mut();
        // Without a ceph.conf, the cluster is named `ceph` (librados takes
        // the name from the config file's, so `$cluster` in the default
        // keyring paths would be empty), and an empty config is read:
        // librados applies its logging settings only once a file is read,
        // and prints its errors to stderr until then. Ceph reads
        // /dev/null as an empty file (`ConfFile::parse_file`).
        let (conf, rc) = match &opts.conf_path {
            Some(path) => {
                let conf = cstring(path, "--ceph.config")?;
                // SAFETY: plain FFI calls with valid C strings and out-pointers.
                (conf, unsafe { sys::rados_create(&mut raw, user.as_ptr()) })
            }
            None => {
                let name = cstring(&format!("client.{}", opts.user), "--ceph.user")?;
                let cluster = cstring("ceph", "cluster")?;
                let rc =
                    unsafe { sys::rados_create2(&mut raw, cluster.as_ptr(), name.as_ptr(), 0) };
                (cstring("/dev/null", "config")?, rc)
            }
        };
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
                conf.to_string_lossy(),
                crate::error::errno_text(rc)
            )));
        }
        if let Some(mon_host) = &opts.mon_host {
            conf_set(&handle, "mon_host", &mon_host.conf_value())
                .map_err(|why| Error::Config(format!("--ceph.mon-host {mon_host}: {why}")))?;
        }
        if let Some(source) = &opts.key {
            let key = source
                .load(&opts.user)
                .map_err(|e| Error::Config(e.to_string()))?;
            // The key wins over any keyfile or keyring (ceph
            // `KeyRing::from_ceph_context`); an empty keyring keeps librados
            // from searching the default ones at all.
            for (option, value) in [("key", key.expose()), ("keyfile", ""), ("keyring", "")] {
                conf_set(&handle, option, value).map_err(|why| {
                    Error::Config(format!("{}: librados refused it: {why}", source.origin()))
                })?;
            }
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
            conf_set(&handle, key, value)
                .map_err(|why| Error::Config(format!("cannot set {key}={value}: {why}")))?;
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
            let mut message = crate::error::errno_text(rc);
            if crate::error::is_denied(rc) {
                return Err(Error::Auth {
                    user: opts.user.clone(),
                    hint: format!(
                        "wrong key or unknown user? the key came from {}",
                        opts.key_origin()
                    ),
                    message,
                });
            }
            // A key librados cannot parse fails the connect at once (error
            // -5 with Ceph 16.2); after a timeout, the key was loaded.
            let problem = (rc != -libc_errno::ETIMEDOUT)
                .then(|| key_problem(&handle, opts, loaded_ceph_version()))
                .flatten();
            // librados' answer when it found no mon address it could use:
            // -ENOENT (none given) or -EINVAL (a host name did not resolve).
            if rc == -libc_errno::ENOENT || rc == -libc_errno::EINVAL {
                message = format!(
                    "{message}: no usable mon address (does every host name of \
                     --ceph.mon-host or ceph.conf's mon_host resolve?)"
                );
            }
            if let Some(problem) = problem {
                if problem.certain() {
                    return Err(Error::Config(problem.message()));
                }
                message = format!("{message}; {}", problem.message());
            }
            return Err(Error::Connect {
                user: opts.user.clone(),
                conf: opts.describe(),
                message,
            });
        }
        Ok(RadosConn {
            handle: Arc::new(handle),
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
        self.inflight.peak()
    }

    /// RADOS operations in flight right now.
    pub fn inflight(&self) -> usize {
        self.inflight.now()
    }

    /// Starts a new peak from the operations in flight now.
    pub fn reset_inflight_peak(&self) {
        self.inflight.reset_peak();
    }

    /// Mon commands sent so far; they are included in
    /// [`Conn::ops_sent`](super::Conn::ops_sent), so
    /// `ops_sent() - mon_commands_sent()` is what the OSDs receive.
    pub fn mon_commands_sent(&self) -> u64 {
        self.mon_commands_sent.load(Ordering::Relaxed)
    }

    /// Waits for this operation's slot (with `max_ops_per_second`) and
    /// counts it as sent.
    pub(super) async fn pace(&self) {
        if let Some(pacer) = &self.pacer {
            pacer.wait().await;
        }
        self.ops_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs a mon command on a blocking thread and returns its output.
    pub async fn mon_command(&self, json: String) -> Result<Vec<u8>, Error> {
        self.pace().await;
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

    /// Every pool, from `osd pool ls detail`; remembers their names for
    /// error messages.
    pub(super) async fn pool_list(&self) -> Result<Vec<PoolInfo>, Error> {
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

    /// The I/O context of a pool and namespace, opened on first use.
    pub(super) fn ioctx(&self, loc: &Location) -> Result<Ioctx, Error> {
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

    /// `pool` or `pool/namespace` for error messages (the pool id when its
    /// name is not known yet).
    pub(super) fn pool_label(&self, loc: &Location) -> String {
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

/// The paths of a keyring search path (`keyring` option), in order.
fn search_path(keyring: &str) -> Vec<&str> {
    keyring
        .split([',', ';', ' ', '\t'])
        .filter(|s| !s.is_empty())
        .collect()
}

/// The key librados is to load for `client.<user>` that the librados of
/// `version` cannot, or may not, read. Looked for where Ceph's
/// `KeyRing::from_ceph_context` (`src/auth/KeyRing.cc`) takes the key from:
/// the `key` option, else the `keyfile`, else the first readable file of
/// the keyring search path, every key of it (librados parses the whole
/// file, and one key it cannot read fails it all).
fn key_problem(
    handle: &ClusterHandle,
    opts: &ConnectOptions,
    version: Option<CephVersion>,
) -> Option<KeyProblem> {
    let wanted = format!("client.{}", opts.user);
    let option = |name: &str| conf_get(handle, name).filter(|v| !v.trim().is_empty());
    let (origin, keys) = if let Some(key) = option("key") {
        let keys = vec![(wanted.clone(), KeyType::of_base64(&key))];
        let origin = opts.key.as_ref().map(KeySource::origin);
        (origin.unwrap_or_else(|| "the key option".to_string()), keys)
    } else if let Some(path) = option("keyfile") {
        let keys = vec![(wanted.clone(), KeyType::of_base64(&read_small(&path)?))];
        (format!("keyfile {path}"), keys)
    } else {
        let keyring = option("keyring")?;
        let (path, text) = search_path(&keyring)
            .into_iter()
            .find_map(|p| read_small(p).map(|text| (p, text)))?;
        (format!("keyring {path}"), keyring_keys(&text))
    };
    KeyProblem::find(&origin, &keys, &wanted, version)
}

/// The first MiB of a file as text (keyrings are a few hundred bytes).
fn read_small(path: &str) -> Option<String> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Sets a librados option; the error is librados' (never the value, which
/// may be the key).
fn conf_set(handle: &ClusterHandle, key: &str, value: &str) -> Result<(), String> {
    let k = CString::new(key).map_err(|_| "the option name holds a NUL byte".to_string())?;
    let v = CString::new(value).map_err(|_| "the value holds a NUL byte".to_string())?;
    // SAFETY: valid handle and C strings.
    let rc = unsafe { sys::rados_conf_set(handle.0, k.as_ptr(), v.as_ptr()) };
    if rc < 0 {
        return Err(crate::error::errno_text(rc));
    }
    Ok(())
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
}
