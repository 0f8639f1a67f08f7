//! The exporter's error type: bad configuration (flags, files, credentials),
//! and failures reaching, reading or decoding the cluster. `metric_label()`
//! gives the stable `kind` label of `ceph_rbd_exporter_sample_errors_total`.

/// Everything that can go wrong configuring the exporter or talking to the
/// cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration given at start cannot work (unreadable ceph.conf,
    /// missing keyring, rejected credentials). Fatal at start.
    #[error("{0}")]
    Config(String),

    /// The cluster refused the exporter's credentials: a wrong key, a user
    /// that does not exist (any more), or caps that do not allow what was
    /// asked. Fatal at start; at run time counted as `kind="auth"` and
    /// retried with the key read again, since an operator who removed or
    /// changed the key with `ceph auth` can put it right.
    #[error("the cluster rejected client.{user} ({hint}): {message}")]
    Auth {
        /// Client id.
        user: String,
        /// What the operator should check.
        hint: String,
        /// What librados or the mon said.
        message: String,
    },

    /// The cluster could not be reached (yet).
    #[error("cannot connect to the cluster as client.{user} with {conf}: {message}")]
    Connect {
        /// Client id.
        user: String,
        /// What it connected with: the ceph.conf path and/or the mon
        /// addresses (`ConnectOptions::describe`).
        conf: String,
        /// What librados said.
        message: String,
    },

    /// A RADOS operation failed.
    #[error("{what} on {pool}/{object} failed: {}", errno_text(*.code))]
    Rados {
        /// What was being done, e.g. "header read".
        what: &'static str,
        /// Pool (and namespace) name as text.
        pool: String,
        /// Object name.
        object: String,
        /// Negative errno.
        code: i32,
    },

    /// One step of a compound read failed while the read as a whole
    /// succeeded (e.g. `list_watchers` in a header read): the facts it
    /// gives would be incomplete, so they are not used.
    #[error("{step} in the {what} of {pool}/{object} failed: {}", errno_text(*.code))]
    PartialRead {
        /// The read, e.g. "header read".
        what: &'static str,
        /// The step that failed, e.g. "list_watchers".
        step: &'static str,
        /// Pool (and namespace) name as text.
        pool: String,
        /// Object name.
        object: String,
        /// The step's negative errno.
        code: i32,
    },

    /// A cluster reply could not be decoded.
    #[error("bad reply from {object}: {source}")]
    Decode {
        /// Object (or mon command) that sent the reply.
        object: String,
        /// What was wrong.
        source: DecodeError,
    },

    /// A mon command failed.
    #[error("mon command `{command}` failed: {} {message}", errno_text(*.code))]
    MonCommand {
        /// The command prefix.
        command: String,
        /// Negative errno.
        code: i32,
        /// The mon's status text.
        message: String,
    },
}

impl Error {
    /// Whether starting with this error is pointless: the configuration or
    /// the credentials are wrong (exit code 2). Anything else at start is
    /// retried every interval.
    pub fn is_fatal_at_start(&self) -> bool {
        matches!(self, Error::Config(_) | Error::Auth { .. })
    }

    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Auth { .. } => "auth",
            Error::MonCommand { code, .. } if is_denied(*code) => "auth",
            Error::Connect { .. } => "connect",
            Error::Rados { code, .. } | Error::MonCommand { code, .. } if is_timeout(*code) => {
                "timeout"
            }
            Error::Rados { .. } => "rados",
            Error::PartialRead { .. } => "partial_read",
            Error::Decode { .. } => "decode",
            Error::MonCommand { .. } => "mon_command",
        }
    }
}

fn is_timeout(code: i32) -> bool {
    code == -libc_errno::ETIMEDOUT
}

/// EACCES or EPERM: the cluster refused the client's key or caps.
pub fn is_denied(code: i32) -> bool {
    code == -libc_errno::EACCES || code == -libc_errno::EPERM
}

/// The errno values we act on (Linux numbering, which Ceph uses on the wire).
pub mod libc_errno {
    /// No such file or directory.
    pub const ENOENT: i32 = 2;
    /// Permission denied.
    pub const EPERM: i32 = 1;
    /// Access denied.
    pub const EACCES: i32 = 13;
    /// Timed out.
    pub const ETIMEDOUT: i32 = 110;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No data available (an xattr that is not set).
    pub const ENODATA: i32 = 61;
    /// Operation not supported (a cls method the OSD does not have).
    pub const EOPNOTSUPP: i32 = 95;
    /// Result out of range: an asserted object version older than the
    /// object's (it changed since).
    pub const ERANGE: i32 = 34;
    /// Value too large: an asserted object version newer than the
    /// object's.
    pub const EOVERFLOW: i32 = 75;
}

/// `-2` as "ENOENT (No such file or directory)".
pub fn errno_text(code: i32) -> String {
    let e = std::io::Error::from_raw_os_error(code.saturating_abs());
    format!("error {code} ({e})")
}

/// A reply or omap value that could not be decoded. `field` names what was
/// being read; callers add the object name. (Defined here rather than with
/// the decoders in `crate::ceph::decode` so that this module depends on
/// nothing.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {field}: {reason}")]
pub struct DecodeError {
    /// The field (or struct) being decoded, e.g. `snapshot_info.name`.
    pub field: &'static str,
    /// Why it could not be decoded.
    pub reason: String,
}
