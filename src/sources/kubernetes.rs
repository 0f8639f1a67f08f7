//! The `kubernetes` source: where Kubernetes says its RBD volumes belong.
//!
//! The source keeps three watches (kube-rs reflectors) open on the API
//! server, started by the first fetch:
//!
//! - PersistentVolumes: ceph-csi ones (`rbd.csi.ceph.com` or
//!   `<prefix>.rbd.csi.ceph.com`) name pool, RADOS namespace and image;
//!   in-tree `spec.rbd` ones name pool and image;
//! - VolumeAttachments (`storage.k8s.io/v1`): which node each ceph-csi PV
//!   is attached to;
//! - Nodes: their InternalIP addresses, so watchers can be attributed to
//!   nodes without an inventory.
//!
//! Each watch lists once (paged), then follows changes; it lists again
//! only when the server says its place is gone (410) or the watcher
//! starts over. A fetch builds the report from the three stores, so it is
//! current within seconds and costs the API server nothing.
//!
//! A source that is down gives no verdicts: a fetch fails until all three
//! watches have completed their first list (the first fetch waits up to
//! the source timeout for that), and again whenever a watch has failed and
//! has neither listed again nor had a watch request answered since. The
//! error is that of the failed watch: `auth` for HTTP 401/403,
//! `bad_response` for an answer that is not what the API promises,
//! `unreachable` otherwise. Reconnects use kube's watcher backoff (0.8 s
//! doubling to 30 s). Watches last 50 s and a connection silent for 60 s
//! is dead, so a silently partitioned API server is noticed within a
//! minute, one that closes or refuses connections at once. An object the
//! report cannot use (a ceph-csi PV without a pool, say) fails the fetch
//! naming the object and field.
//!
//! Credentials and TLS come from kube-rs, as kubectl reads them: the
//! kubeconfig's current context (token, `tokenFile`, client certificate,
//! `exec` plugins, `proxy-url` or `HTTPS_PROXY` over HTTP CONNECT) or the
//! pod's service account (`--kubernetes.in-cluster`). kube uses a token
//! file's token for 50 s, then reads the file again, so rotated
//! service-account tokens are picked up; it sends the file's content as it
//! is, so one ending in a newline is refused at start. Kubeconfig errors
//! name the file, the context, cluster or user and the field; a client
//! certificate or key that cannot be read is refused here (kube would go
//! on without one).

use super::{AttachmentReport, AttachmentSource, BoxFuture, Expectation, ImageRef, SourceError};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

const NAME: &str = "kubernetes";

/// How long the API server keeps a watch open before the watcher makes
/// it again (no list): shorter than [`READ_TIMEOUT`], so that a quiet
/// watch is never taken for a dead one.
const WATCH_SECONDS: u32 = 50;

/// Longest silence on a connection before it counts as dead (kube's
/// default is 295 s, with 290 s watches): bounds how long a silently
/// partitioned API server goes unnoticed.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The service-account directory every pod has.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A configuration error of this source.
fn config(message: impl Into<String>) -> SourceError {
    SourceError::Config {
        source_name: NAME,
        message: message.into(),
    }
}

/// `e` and its causes, `: `-separated (kube's errors keep the detail in
/// their sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// The kinds this source watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// `v1` PersistentVolumes.
    PersistentVolumes,
    /// `storage.k8s.io/v1` VolumeAttachments.
    VolumeAttachments,
    /// `v1` Nodes.
    Nodes,
}

impl Kind {
    /// All of them, in the order they are reported.
    const ALL: [Kind; 3] = [
        Kind::PersistentVolumes,
        Kind::VolumeAttachments,
        Kind::Nodes,
    ];

    /// The collection's path on the API server.
    fn path(self) -> &'static str {
        match self {
            Kind::PersistentVolumes => "/api/v1/persistentvolumes",
            Kind::VolumeAttachments => "/apis/storage.k8s.io/v1/volumeattachments",
            Kind::Nodes => "/api/v1/nodes",
        }
    }

    /// The kind a request is a watch of, if it is one.
    fn of_watch(uri: &hyper::Uri) -> Option<Kind> {
        let watch = uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true"));
        if !watch {
            return None;
        }
        Kind::ALL.into_iter().find(|k| uri.path() == k.path())
    }
}

/// How one watch stands.
#[derive(Debug, Default)]
struct WatchState {
    /// It has completed a list, so its store holds every object.
    listed: bool,
    /// Its last failure, until it lists again, delivers an event or has a
    /// watch request answered.
    failure: Option<SourceError>,
}

/// The state of the three watches, shared with their tasks.
#[derive(Debug)]
struct Health {
    /// Per kind.
    states: Mutex<BTreeMap<Kind, WatchState>>,
    /// Woken on every change, for a first fetch waiting for the lists.
    changed: tokio::sync::Notify,
}

impl Health {
    /// Nothing listed yet.
    fn new() -> Health {
        Health {
            states: Mutex::new(Kind::ALL.map(|k| (k, WatchState::default())).into()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Changes the state of `kind`.
    fn update(&self, kind: Kind, f: impl FnOnce(&mut WatchState)) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        f(states.entry(kind).or_default());
        drop(states);
        self.changed.notify_waiters();
    }

    /// `Ok(true)` when every watch is listed and not failed, `Ok(false)`
    /// while some first list is still running, else the first failure.
    fn check(&self) -> Result<bool, SourceError> {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let mut ready = true;
        for state in states.values() {
            if let Some(e) = &state.failure {
                return Err(e.clone());
            }
            ready &= state.listed;
        }
        Ok(ready)
    }
}

/// A service in kube's client stack that marks a watch as re-established
/// when a watch request of its kind is answered with a success status.
#[derive(Clone)]
struct WatchObserver<S> {
    /// The rest of the stack.
    inner: S,
    /// Where to mark it.
    health: Arc<Health>,
}

impl<S, Req, Res> tower::Service<hyper::Request<Req>> for WatchObserver<S>
where
    S: tower::Service<hyper::Request<Req>, Response = hyper::Response<Res>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: hyper::Request<Req>) -> Self::Future {
        let kind = Kind::of_watch(request.uri());
        let health = self.health.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            if let (Some(kind), Ok(response)) = (kind, &answer) {
                if response.status().is_success() {
                    health.update(kind, |s| s.failure = None);
                }
            }
            answer
        })
    }
}

/// The three stores and the tasks that fill them (stopped when dropped).
struct Watches {
    /// PersistentVolumes.
    pvs: Store<PersistentVolume>,
    /// VolumeAttachments.
    attachments: Store<VolumeAttachment>,
    /// Nodes.
    nodes: Store<Node>,
    /// How they stand.
    health: Arc<Health>,
    /// The watch tasks.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Makes the client, its watch requests marking watches in a [`Health`].
type ClientMaker = Box<dyn FnOnce(Arc<Health>) -> kube::Client + Send>;

/// What the first fetch starts from and leaves.
struct Lazy {
    /// Builds the client from kube's client stack made at start, with
    /// [`WatchObserver`] on top; called by the first fetch (a client needs
    /// the runtime; the stack does not).
    builder: Option<ClientMaker>,
    /// The watches, once started.
    watches: Option<Arc<Watches>>,
}

/// PersistentVolumes, VolumeAttachments and Nodes from a Kubernetes API.
pub struct KubernetesSource {
    /// API server URL without a trailing slash, for messages.
    server: String,
    /// kube's client stack until the first fetch, then the watches.
    lazy: Mutex<Lazy>,
    /// How long a first fetch waits for the first lists.
    timeout: Duration,
}

impl std::fmt::Debug for KubernetesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesSource")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The output of `future`, which must not wait for anything: kube's
/// kubeconfig loading is `async` but never awaits.
fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// Where in a kubeconfig its current context points, for messages.
struct Names {
    /// `kubeconfig FILE`.
    file: String,
    /// The current context's name.
    context: String,
    /// Its cluster's name.
    cluster: String,
    /// Its user's name; empty for none.
    user: String,
}

impl Names {
    /// The names `kc` (read from `path`) picks; an error for a context
    /// that names a user `users` lacks (kube would go on anonymously).
    fn of(path: &Path, kc: &Kubeconfig) -> Result<Names, SourceError> {
        let file = format!("kubeconfig {}", path.display());
        let context = kc.current_context.clone().unwrap_or_default();
        let named = kc.contexts.iter().find(|c| c.name == context);
        let ctx = named.and_then(|c| c.context.as_ref());
        let cluster = ctx.map(|c| c.cluster.clone()).unwrap_or_default();
        let user = ctx.and_then(|c| c.user.clone()).unwrap_or_default();
        if !user.is_empty() && !kc.auth_infos.iter().any(|u| u.name == user) {
            return Err(config(format!(
                "{file}: user {user:?} (of context {context:?}) is not in users"
            )));
        }
        Ok(Names {
            file,
            context,
            cluster,
            user,
        })
    }

    /// A kube kubeconfig error, naming the entry and field it is about.
    fn error(&self, e: &KubeconfigError) -> SourceError {
        let (file, context) = (&self.file, &self.context);
        let cluster = format!("{file}: cluster {:?}", self.cluster);
        let user = format!("{file}: user {:?}", self.user);
        let detail = chain(e);
        config(match e {
            KubeconfigError::CurrentContextNotSet => format!("{file}: current-context is not set"),
            KubeconfigError::LoadContext(_) => {
                format!("{file}: current-context {context:?} is not in contexts")
            }
            KubeconfigError::LoadClusterOfContext(_) => format!(
                "{file}: cluster {:?} (of context {context:?}) is not in clusters",
                self.cluster
            ),
            KubeconfigError::MissingClusterUrl | KubeconfigError::ParseClusterUrl(_) => {
                format!("{cluster}: server: {detail}")
            }
            KubeconfigError::ParseProxyUrl(_) => format!("{cluster}: proxy-url: {detail}"),
            KubeconfigError::LoadCertificateAuthority(_)
            | KubeconfigError::ParseCertificates(_) => {
                format!("{cluster}: certificate-authority(-data): {detail}")
            }
            KubeconfigError::LoadClientCertificate(_) => {
                format!("{user}: client-certificate(-data): {detail}")
            }
            KubeconfigError::LoadClientKey(_) => format!("{user}: client-key(-data): {detail}"),
            _ => format!("{file}: {detail}"),
        })
    }
}

impl KubernetesSource {
    /// The source for the current context of the kubeconfig at `path`,
    /// read by kube as kubectl reads it (relative file names are relative
    /// to its directory). `timeout` bounds connecting and a first fetch's
    /// wait for the first lists. Errors name the file, the context, cluster
    /// or user, and the field.
    pub fn from_kubeconfig(
        path: &Path,
        timeout: Duration,
    ) -> Result<KubernetesSource, SourceError> {
        let kc = Kubeconfig::read_from(path).map_err(|e| {
            config(format!(
                "kubeconfig {}: {}",
                path.display(),
                chain(&e).replace(&format!("{path:?}"), "it")
            ))
        })?;
        let names = Names::of(path, &kc)?;
        let user = kc.auth_infos.iter().find(|u| u.name == names.user);
        if let Some(auth) = user.and_then(|u| u.auth_info.as_ref()) {
            check_client_identity(auth)
                .map_err(|m| config(format!("{}: user {:?}: {m}", names.file, names.user)))?;
            if let Some(file) = auth.token_file.as_deref() {
                check_token_file(Path::new(file)).map_err(|m| {
                    config(format!(
                        "{}: user {:?}: tokenFile: {m}",
                        names.file, names.user
                    ))
                })?;
            }
        }
        let options = KubeConfigOptions::default();
        let loaded = now_or_never(kube::Config::from_custom_kubeconfig(kc, &options))
            .ok_or_else(|| config(format!("{}: loading did not finish", names.file)))?;
        let cfg = loaded.map_err(|e| names.error(&e))?;
        let origin = if names.user.is_empty() {
            format!("{}: context {:?}", names.file, names.context)
        } else {
            format!("{}: user {:?}", names.file, names.user)
        };
        KubernetesSource::new(cfg, timeout, |e| match e {
            kube::Error::InferKubeconfig(e) => names.error(e),
            e => config(format!("{origin}: {}", chain(e))),
        })
    }

    /// The source for the pod's own service account, as kube finds it:
    /// `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, token and CA
    /// from [`SERVICE_ACCOUNT_DIR`].
    pub fn in_cluster(timeout: Duration) -> Result<KubernetesSource, SourceError> {
        let cfg = kube::Config::incluster().map_err(|e| {
            config(format!(
                "in-cluster ({SERVICE_ACCOUNT_DIR}, KUBERNETES_SERVICE_HOST/PORT): {} (not running in a pod? use a kubeconfig)",
                chain(&e)
            ))
        })?;
        let token = Path::new(SERVICE_ACCOUNT_DIR).join("token");
        check_token_file(&token).map_err(|m| config(format!("in-cluster: {m}")))?;
        KubernetesSource::new(cfg, timeout, |e| {
            config(format!("in-cluster: {}", chain(e)))
        })
    }

    /// As [`KubernetesSource::in_cluster`], with the API server's host and
    /// port and the service-account directory (holding `token` and
    /// `ca.crt`) given: the configuration kube builds in a pod.
    pub fn in_cluster_at(
        host: &str,
        port: &str,
        service_account_dir: &Path,
        timeout: Duration,
    ) -> Result<KubernetesSource, SourceError> {
        let port: u16 = port
            .parse()
            .map_err(|_| config(format!("in-cluster: port {port:?} is not a port number")))?;
        // An IPv6 service address needs brackets in a URL.
        let server = if host.contains(':') && !host.starts_with('[') {
            format!("https://[{host}]:{port}")
        } else {
            format!("https://{host}:{port}")
        };
        let uri: hyper::Uri = server
            .parse()
            .map_err(|e| config(format!("in-cluster: server {server:?}: {e}")))?;
        let token = service_account_dir.join("token");
        if !token.is_file() {
            return Err(config(format!(
                "in-cluster: {} is missing (no service account token mounted?)",
                token.display()
            )));
        }
        check_token_file(&token).map_err(|m| config(format!("in-cluster: {m}")))?;
        let mut cfg = kube::Config::new(uri);
        cfg.root_cert = Some(ca_certificates(&service_account_dir.join("ca.crt"))?);
        cfg.auth_info.token_file = Some(token.display().to_string());
        KubernetesSource::new(cfg, timeout, |e| {
            config(format!("in-cluster: {}", chain(e)))
        })
    }

    /// The source for `cfg`: builds kube's client stack now, so that bad
    /// certificates, keys, token files and failing `exec` plugins show at
    /// start (`error` words their messages).
    fn new(
        mut cfg: kube::Config,
        timeout: Duration,
        error: impl Fn(&kube::Error) -> SourceError,
    ) -> Result<KubernetesSource, SourceError> {
        cfg.connect_timeout = Some(timeout);
        cfg.read_timeout = Some(READ_TIMEOUT);
        let server = cfg
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        let builder = ClientBuilder::try_from(cfg).map_err(|e| error(&e))?;
        let builder: ClientMaker = Box::new(move |health: Arc<Health>| {
            let observer = tower::layer::layer_fn(|inner| WatchObserver {
                inner,
                health: health.clone(),
            });
            builder.with_layer(&observer).build()
        });
        Ok(KubernetesSource {
            server,
            lazy: Mutex::new(Lazy {
                builder: Some(builder),
                watches: None,
            }),
            timeout,
        })
    }

    /// The API server URL this source asks.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The watches, started on the first call.
    fn watches(&self) -> Result<Arc<Watches>, SourceError> {
        let mut lazy = self.lazy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = &lazy.watches {
            return Ok(w.clone());
        }
        let builder = lazy
            .builder
            .take()
            .ok_or_else(|| SourceError::Unreachable {
                source_name: NAME,
                url: self.server.clone(),
                message: "the client could not be started".to_string(),
            })?;
        let health = Arc::new(Health::new());
        let started = Arc::new(self.start(builder(health.clone()), health));
        lazy.watches = Some(started.clone());
        Ok(started)
    }

    /// Starts the three watches.
    fn start(&self, client: kube::Client, health: Arc<Health>) -> Watches {
        let (pvs, pv_writer) = reflector::store();
        let (attachments, va_writer) = reflector::store();
        let (nodes, node_writer) = reflector::store();
        let ctx = |kind| (self.server.clone(), kind, health.clone());
        let tasks = vec![
            tokio::spawn(watch(
                kube::Api::all(client.clone()),
                pv_writer,
                ctx(Kind::PersistentVolumes),
                |pv: &mut PersistentVolume| pv.metadata.managed_fields = None,
            )),
            tokio::spawn(watch(
                kube::Api::all(client.clone()),
                va_writer,
                ctx(Kind::VolumeAttachments),
                |va: &mut VolumeAttachment| va.metadata.managed_fields = None,
            )),
            tokio::spawn(watch(
                kube::Api::all(client),
                node_writer,
                ctx(Kind::Nodes),
                |node: &mut Node| {
                    // Kept for every node: only the addresses are used.
                    node.metadata.managed_fields = None;
                    if let Some(status) = &mut node.status {
                        status.images = None;
                    }
                },
            )),
        ];
        Watches {
            pvs,
            attachments,
            nodes,
            health,
            tasks,
        }
    }

    /// The report from the stores, once every watch is current; the first
    /// fetch waits up to the timeout for the first lists.
    async fn fetch_now(&self) -> Result<AttachmentReport, SourceError> {
        let watches = self.watches()?;
        // A watch task that ended (it never should) leaves its store as it
        // was: never report from it.
        if let Some(i) = watches.tasks.iter().position(|t| t.is_finished()) {
            return Err(SourceError::Unreachable {
                source_name: NAME,
                url: format!("{}{}", self.server, Kind::ALL[i].path()),
                message: "the watch stopped".to_string(),
            });
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let changed = watches.health.changed.notified();
            if watches.health.check()? {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                if watches.health.check()? {
                    break;
                }
                return Err(SourceError::Unreachable {
                    source_name: NAME,
                    url: self.server.clone(),
                    message: format!("the first lists did not finish within {:?}", self.timeout),
                });
            }
        }
        self.report(&watches)
    }

    /// Turns the stores' VolumeAttachments into PV → nodes, PVs into
    /// images with their expectations, and Nodes into addresses.
    fn report(&self, watches: &Watches) -> Result<AttachmentReport, SourceError> {
        let bad = |kind: Kind, message: String| SourceError::BadResponse {
            source_name: NAME,
            url: format!("{}{}", self.server, kind.path()),
            message,
        };
        let mut attached: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for va in watches.attachments.state() {
            let found = volume_attachment(&va).map_err(|m| bad(Kind::VolumeAttachments, m))?;
            if let Some((pv, node)) = found {
                attached.entry(pv).or_default().insert(node);
            }
        }
        let mut report = AttachmentReport::default();
        for pv in watches.pvs.state() {
            let found =
                persistent_volume(&pv, &attached).map_err(|m| bad(Kind::PersistentVolumes, m))?;
            let Some((image, expectation)) = found else {
                continue;
            };
            match report.images.get_mut(&image) {
                Some(existing) => merge_expectation(existing, expectation),
                None => {
                    report.images.insert(image, expectation);
                }
            }
        }
        for node in watches.nodes.state() {
            let (name, ips) = internal_ips(&node).map_err(|m| bad(Kind::Nodes, m))?;
            for ip in ips {
                report.host_addresses.insert(ip, name.clone());
            }
        }
        Ok(report)
    }
}

/// The client certificate and key of `auth`, both or neither, readable:
/// kube leaves out one it cannot load and goes on without it.
fn check_client_identity(auth: &kube::config::AuthInfo) -> Result<(), String> {
    use secrecy::ExposeSecret;
    let key_data = auth.client_key_data.as_ref().map(|k| k.expose_secret());
    let parts = [
        (
            "client-certificate",
            auth.client_certificate_data.as_deref(),
            auth.client_certificate.as_deref(),
        ),
        ("client-key", key_data, auth.client_key.as_deref()),
    ];
    if parts
        .iter()
        .all(|(_, data, file)| data.is_none() && file.is_none())
    {
        return Ok(());
    }
    for (field, data, file) in parts {
        match (data, file) {
            (Some(data), _) => {
                let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, clean)
                    .map_err(|e| format!("{field}-data is not base64: {e}"))?;
            }
            (None, Some(file)) => {
                std::fs::read(file).map_err(|e| format!("{field} {file}: {e}"))?;
            }
            (None, None) => {
                return Err(format!(
                    "{field} (or {field}-data) is missing; a client certificate needs both"
                ));
            }
        }
    }
    Ok(())
}

/// A token file kube can send: kube sends its content as it is (client-go
/// trims it), and a token with a newline is no header value.
fn check_token_file(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let token = std::fs::read_to_string(path).map_err(|e| format!("token file {shown}: {e}"))?;
    if token.trim().is_empty() {
        return Err(format!("token file {shown} is empty"));
    }
    if token.trim() != token {
        return Err(format!(
            "token file {shown}: the token ends or starts with white space (a newline?); write it without"
        ));
    }
    Ok(())
}

/// The CA certificates (DER) of the PEM file at `path`.
fn ca_certificates(path: &Path) -> Result<Vec<Vec<u8>>, SourceError> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| config(format!("in-cluster: CA {shown}: {e}")))?;
    let certs: Vec<Vec<u8>> = rustls_pemfile::certs(&mut pem.as_slice())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| config(format!("in-cluster: CA {shown}: {e}")))?;
    if certs.is_empty() {
        return Err(config(format!(
            "in-cluster: CA {shown}: no PEM certificate in it"
        )));
    }
    Ok(certs)
}

/// Runs one reflector, recording how its watch stands: listed at the end
/// of every list, failed on an error (but a 410 Gone just lists again),
/// current again on the next event.
async fn watch<K>(
    api: kube::Api<K>,
    writer: reflector::store::Writer<K>,
    (server, kind, health): (String, Kind, Arc<Health>),
    slim: impl FnMut(&mut K) + Send + 'static,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let url = format!("{server}{}", kind.path());
    let stream = watcher(api, watcher::Config::default().timeout(WATCH_SECONDS))
        .default_backoff()
        .modify(slim)
        .reflect(writer);
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::InitDone) => health.update(kind, |s| {
                s.listed = true;
                s.failure = None;
            }),
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                health.update(kind, |s| s.failure = None)
            }
            Ok(_) => {}
            Err(watcher::Error::WatchError(e)) if e.code == 410 => {
                tracing::debug!(url, "watch expired (410 Gone); listing again");
            }
            Err(e) => {
                let error = watch_error(&url, &e);
                tracing::debug!(error = %error, "watch failed");
                health.update(kind, |s| s.failure = Some(error));
            }
        }
    }
}

/// A watcher error as a [`SourceError`] for `url`.
fn watch_error(url: &str, e: &watcher::Error) -> SourceError {
    let client_error = match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => e,
        watcher::Error::WatchError(status) => return status_error(url, status),
        watcher::Error::NoResourceVersion => {
            return SourceError::BadResponse {
                source_name: NAME,
                url: url.to_string(),
                message: "missing field `metadata.resourceVersion`".to_string(),
            };
        }
    };
    match client_error {
        kube::Error::Api(status) => status_error(url, status),
        kube::Error::SerdeError(_) | kube::Error::FromUtf8(_) => SourceError::BadResponse {
            source_name: NAME,
            url: url.to_string(),
            message: chain(client_error),
        },
        kube::Error::Auth(_) => config(format!("credentials for {url}: {}", chain(client_error))),
        _ => SourceError::Unreachable {
            source_name: NAME,
            url: url.to_string(),
            message: chain(client_error),
        },
    }
}

/// An error status from the API server: `Auth` for 401/403.
fn status_error(url: &str, status: &kube::core::ErrorResponse) -> SourceError {
    match status.code {
        401 | 403 => SourceError::Auth {
            source_name: NAME,
            url: url.to_string(),
            status: status.code,
        },
        code => SourceError::BadResponse {
            source_name: NAME,
            url: url.to_string(),
            message: format!("HTTP {code}: {} {}", status.reason, status.message)
                .trim_end()
                .to_string(),
        },
    }
}

/// Two PVs for one image (static PVs): either's nodes are fine, either's
/// access modes count, and both are named as owners.
fn merge_expectation(existing: &mut Expectation, other: Expectation) {
    existing.hosts = match (existing.hosts.take(), other.hosts) {
        (Some(mut a), Some(b)) => {
            a.extend(b);
            Some(a)
        }
        _ => None,
    };
    existing.multi_attach |= other.multi_attach;
    existing.owner = format!("{}; {}", existing.owner, other.owner);
}

/// An object's name; an error when it has none.
fn name_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<String, String> {
    match &meta.name {
        Some(name) if !name.is_empty() => Ok(name.clone()),
        _ => Err("missing field `metadata.name`".to_string()),
    }
}

impl AttachmentSource for KubernetesSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fetch(&self) -> BoxFuture<'_, Result<AttachmentReport, SourceError>> {
        Box::pin(self.fetch_now())
    }
}

/// The PV and node of a VolumeAttachment that is attached; `None` when it
/// is not attached, or is for an inline CSI volume (which has no PV).
fn volume_attachment(va: &VolumeAttachment) -> Result<Option<(String, String)>, String> {
    let Some(pv) = va.spec.source.persistent_volume_name.clone() else {
        return Ok(None);
    };
    if va.spec.node_name.is_empty() {
        return Err(format!(
            "volumeattachment {}: missing field `spec.nodeName`",
            va.metadata.name.as_deref().unwrap_or("?")
        ));
    }
    let attached = va.status.as_ref().is_some_and(|s| s.attached);
    Ok(attached.then(|| (pv, va.spec.node_name.clone())))
}

/// A node's name and its InternalIP addresses (none when it lists no
/// addresses).
fn internal_ips(node: &Node) -> Result<(String, Vec<IpAddr>), String> {
    let name = name_of(&node.metadata)?;
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    let mut ips = Vec::new();
    for (i, address) in addresses.into_iter().flatten().enumerate() {
        if address.type_ != "InternalIP" {
            continue;
        }
        let text = &address.address;
        let ip: IpAddr = text.parse().map_err(|_| {
            format!("node {name}: status.addresses[{i}].address {text:?} is not an IP address")
        })?;
        ips.push(ip);
    }
    Ok((name, ips))
}

/// True for ceph-csi's RBD driver names (`rbd.csi.ceph.com`, or with the
/// prefix some deployments give it).
fn is_ceph_rbd_driver(driver: &str) -> bool {
    driver == "rbd.csi.ceph.com" || driver.ends_with(".rbd.csi.ceph.com")
}

/// The image a PV names and what Kubernetes expects of it; `None` for PVs
/// that are not RBD.
fn persistent_volume(
    pv: &PersistentVolume,
    attached: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Option<(ImageRef, Expectation)>, String> {
    let name = name_of(&pv.metadata)?;
    let in_pv = |m: String| format!("pv {name}: {m}");
    let Some(spec) = &pv.spec else {
        return Ok(None);
    };
    let Some((image, hosts)) = rbd_image(spec, &name, attached).map_err(in_pv)? else {
        return Ok(None);
    };
    let multi_attach = spec
        .access_modes
        .iter()
        .flatten()
        .any(|m| matches!(m.as_str(), "ReadWriteMany" | "ReadOnlyMany"));
    let claim = spec.claim_ref.as_ref();
    let claim = match (
        claim.and_then(|c| c.namespace.as_deref()),
        claim.and_then(|c| c.name.as_deref()),
    ) {
        (Some(ns), Some(claim)) => format!("claim {ns}/{claim}"),
        (None, Some(claim)) => format!("claim {claim}"),
        _ => "no claim".to_string(),
    };
    Ok(Some((
        image,
        Expectation {
            hosts,
            multi_attach,
            owner: format!("kubernetes pv {name} ({claim})"),
        },
    )))
}

/// The nodes an image may be open on, as [`Expectation::hosts`]; `None`
/// means no opinion.
type ExpectedHosts = Option<BTreeSet<String>>;

/// The RBD image of PV `name` and the nodes it may be open on (`None`: no
/// opinion); `None` for PVs that are not RBD.
fn rbd_image(
    spec: &k8s_openapi::api::core::v1::PersistentVolumeSpec,
    name: &str,
    attached: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Option<(ImageRef, ExpectedHosts)>, String> {
    if let Some(csi) = &spec.csi {
        if !is_ceph_rbd_driver(&csi.driver) {
            return Ok(None);
        }
        let image = csi_image(csi)?;
        // Attached nowhere when no VolumeAttachment says otherwise.
        let hosts = attached.get(name).cloned().unwrap_or_default();
        Ok(Some((image, Some(hosts))))
    } else if let Some(rbd) = &spec.rbd {
        // In-tree RBD has no VolumeAttachments: no opinion on nodes.
        if rbd.image.is_empty() {
            return Err("missing field `spec.rbd.image`".to_string());
        }
        let pool = rbd
            .pool
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("rbd");
        let image = ImageRef {
            pool: Some(pool.to_string()),
            namespace: Some(String::new()),
            image: rbd.image.clone(),
        };
        Ok(Some((image, None)))
    } else {
        Ok(None)
    }
}

/// The image of a ceph-csi PV: pool, RADOS namespace and image from its
/// volume attributes; a static PV names its image in `volumeHandle`.
fn csi_image(
    csi: &k8s_openapi::api::core::v1::CSIPersistentVolumeSource,
) -> Result<ImageRef, String> {
    let no_attributes = BTreeMap::new();
    let attributes = csi.volume_attributes.as_ref().unwrap_or(&no_attributes);
    let attribute = |key: &str| {
        attributes
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let pool = attribute("pool")
        .ok_or_else(|| "missing field `spec.csi.volumeAttributes.pool`".to_string())?;
    let image = match attribute("imageName") {
        Some(image) => image,
        None if attribute("staticVolume") == Some("true") => {
            if csi.volume_handle.is_empty() {
                return Err("missing field `spec.csi.volumeHandle`".to_string());
            }
            &csi.volume_handle
        }
        None => return Err("missing field `spec.csi.volumeAttributes.imageName`".to_string()),
    };
    Ok(ImageRef {
        pool: Some(pool.to_string()),
        namespace: Some(attribute("radosNamespace").unwrap_or("").to_string()),
        image: image.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(value: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(value).expect("a PersistentVolume")
    }

    #[test]
    fn pv_kinds() {
        let attached = BTreeMap::from([("a".to_string(), BTreeSet::from(["n1".to_string()]))]);
        let csi = pv(json!({"metadata": {"name": "a"}, "spec": {
            "accessModes": ["ReadWriteOnce"],
            "claimRef": {"namespace": "ns", "name": "data"},
            "csi": {"driver": "openshift-storage.rbd.csi.ceph.com", "volumeHandle": "h",
                    "volumeAttributes": {"pool": "k", "imageName": "csi-vol-1"}}}}));
        let (image, e) = persistent_volume(&csi, &attached)
            .expect("ok")
            .expect("rbd");
        assert_eq!(
            image,
            ImageRef {
                pool: Some("k".into()),
                namespace: Some(String::new()),
                image: "csi-vol-1".into()
            }
        );
        assert_eq!(e.hosts, Some(BTreeSet::from(["n1".to_string()])));
        assert_eq!(e.owner, "kubernetes pv a (claim ns/data)");
        assert!(!e.multi_attach);

        let static_pv = pv(json!({"metadata": {"name": "s"}, "spec": {
            "accessModes": ["ReadOnlyMany"],
            "csi": {"driver": "rbd.csi.ceph.com", "volumeHandle": "legacy-image",
                    "volumeAttributes": {"pool": "k", "staticVolume": "true"}}}}));
        let (image, e) = persistent_volume(&static_pv, &attached)
            .expect("ok")
            .expect("rbd");
        assert_eq!(image.image, "legacy-image");
        assert_eq!(e.hosts, Some(BTreeSet::new()));
        assert!(e.multi_attach);
        assert_eq!(e.owner, "kubernetes pv s (no claim)");

        let in_tree = pv(
            json!({"metadata": {"name": "t"}, "spec": {"rbd": {"image": "kubernetes-dynamic-pvc-1", "monitors": ["m"]}}}),
        );
        let (image, e) = persistent_volume(&in_tree, &attached)
            .expect("ok")
            .expect("rbd");
        assert_eq!(image.pool.as_deref(), Some("rbd"));
        assert_eq!(image.namespace.as_deref(), Some(""));
        assert_eq!(e.hosts, None);

        let other = pv(
            json!({"metadata": {"name": "o"}, "spec": {"csi": {"driver": "cephfs.csi.ceph.com", "volumeHandle": "x"}}}),
        );
        assert!(persistent_volume(&other, &attached).expect("ok").is_none());
        let nfs =
            pv(json!({"metadata": {"name": "o"}, "spec": {"nfs": {"server": "s", "path": "/"}}}));
        assert!(persistent_volume(&nfs, &attached).expect("ok").is_none());

        let broken = pv(json!({"metadata": {"name": "b"}, "spec": {
            "csi": {"driver": "rbd.csi.ceph.com", "volumeHandle": "h", "volumeAttributes": {"pool": "k"}}}}));
        let m = persistent_volume(&broken, &attached).unwrap_err();
        assert!(
            m.contains("pv b: missing field `spec.csi.volumeAttributes.imageName`"),
            "{m}"
        );
        let no_pool = pv(json!({"metadata": {"name": "c"}, "spec": {
            "csi": {"driver": "rbd.csi.ceph.com", "volumeHandle": "h", "volumeAttributes": {"imageName": "i"}}}}));
        let m = persistent_volume(&no_pool, &attached).unwrap_err();
        assert!(
            m.contains("pv c: missing field `spec.csi.volumeAttributes.pool`"),
            "{m}"
        );
    }

    #[test]
    fn watch_requests_are_told_apart() {
        let uri = |s: &str| s.parse::<hyper::Uri>().expect("uri");
        assert_eq!(
            Kind::of_watch(&uri(
                "https://k:6443/api/v1/nodes?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=1"
            )),
            Some(Kind::Nodes)
        );
        assert_eq!(
            Kind::of_watch(&uri("https://k:6443/api/v1/nodes?&limit=500")),
            None
        );
        assert_eq!(
            Kind::of_watch(&uri("https://k:6443/api/v1/pods?watch=true")),
            None
        );
    }

    #[test]
    fn in_cluster_needs_the_token_and_a_port() {
        let e = KubernetesSource::in_cluster_at(
            "h",
            "x",
            Path::new("/nonexistent"),
            Duration::from_secs(1),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("port \"x\""), "{e}");
        let e = KubernetesSource::in_cluster_at(
            "h",
            "443",
            Path::new("/nonexistent"),
            Duration::from_secs(1),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent/token is missing"), "{e}");
    }
}
