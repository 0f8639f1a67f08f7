//! Attachment sources: where orchestrators (OpenStack, Kubernetes, a static
//! file) say each RBD image should be attached. The attribution stage
//! compares that with who really watches the image.
//!
//! A source either answers completely or fails: a source that is
//! unreachable or returns garbage contributes no verdicts at all, because a
//! false page is worse than a late one.

pub mod file;
pub mod http;
pub mod kubernetes;
pub mod openstack;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

/// How a source names an image. Fields a source cannot know (Cinder does not
/// say which pool a volume lives in) are `None` and match any value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ImageRef {
    /// Pool name, if the source knows it.
    pub pool: Option<String>,
    /// RBD namespace ("" for the default one), if the source knows it.
    pub namespace: Option<String>,
    /// Image name, e.g. `volume-<uuid>`, `<instance-uuid>_disk`, `csi-vol-<uuid>`.
    pub image: String,
}

/// What a source says about one image.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Expectation {
    /// Hosts the image should be attached to, as the orchestrator names them
    /// (Nova compute host, Cinder attachment host_name, Kubernetes node
    /// name). `Some(empty)` means attached nowhere (e.g. a Cinder volume in
    /// status `available`). `None` means the source knows the image but has
    /// no opinion on where it belongs (a Glance image).
    pub hosts: Option<BTreeSet<String>>,
    /// True when several attachments at once are legitimate (multi-attach
    /// volume, ReadWriteMany volume).
    pub multi_attach: bool,
    /// Human-readable owner for `explain`, e.g. `cinder volume 6f0c… (in-use,
    /// server 1b2c… on compute-1)` or `kubernetes pv pvc-… (claim ns/data)`.
    pub owner: String,
}

/// One source's complete answer.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AttachmentReport {
    /// What the source says, per image it knows.
    pub images: BTreeMap<ImageRef, Expectation>,
    /// Addresses of the hosts the source knows (Kubernetes nodes'
    /// InternalIP), so watchers can be attributed without an inventory.
    pub host_addresses: BTreeMap<IpAddr, String>,
    /// Ids of every instance that exists (Nova servers), so that
    /// `<instance-uuid>_disk*` images of deleted instances are found. `None`
    /// when the source does not know instances.
    pub instances: Option<BTreeSet<String>>,
}

/// Why a source could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// Bad settings: missing clouds.yaml entry, unreadable kubeconfig, bad file.
    #[error("{source_name}: configuration: {message}")]
    Config {
        /// Source name.
        source_name: &'static str,
        /// What is wrong, naming the file or field.
        message: String,
    },
    /// Could not reach the API, or it timed out.
    #[error("{source_name}: {url}: {message}")]
    Unreachable {
        /// Source name.
        source_name: &'static str,
        /// The URL asked (never with credentials).
        url: String,
        /// What happened.
        message: String,
    },
    /// Authentication or authorisation failed (HTTP 401/403).
    #[error("{source_name}: {url}: authentication failed: HTTP {status}")]
    Auth {
        /// Source name.
        source_name: &'static str,
        /// The URL asked.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// The API answered with an unexpected status or a body we cannot use.
    #[error("{source_name}: {url}: bad response: {message}")]
    BadResponse {
        /// Source name.
        source_name: &'static str,
        /// The URL asked.
        url: String,
        /// What was wrong, naming the field.
        message: String,
    },
}

impl SourceError {
    /// A short, stable label for `ceph_rbd_exporter_source_errors_total{kind}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SourceError::Config { .. } => "config",
            SourceError::Unreachable { .. } => "unreachable",
            SourceError::Auth { .. } => "auth",
            SourceError::BadResponse { .. } => "bad_response",
        }
    }
}

/// A boxed future, so sources can sit behind `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One attachment source.
pub trait AttachmentSource: Send + Sync {
    /// Stable name, the `source` label: `openstack`, `kubernetes`, `file`.
    fn name(&self) -> &'static str;
    /// Fetches a complete, fresh answer.
    fn fetch(&self) -> BoxFuture<'_, Result<AttachmentReport, SourceError>>;
}
