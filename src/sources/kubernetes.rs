//! The `kubernetes` source: where Kubernetes says its RBD volumes belong.
//!
//! Every fetch lists, page by page (`limit=500`, `metadata.continue`):
//!
//! - PersistentVolumes: ceph-csi ones (`rbd.csi.ceph.com` or
//!   `<prefix>.rbd.csi.ceph.com`) name pool, RADOS namespace and image;
//!   in-tree `spec.rbd` ones name pool and image;
//! - VolumeAttachments: which node each ceph-csi PV is attached to;
//! - Nodes: their InternalIP addresses, so watchers can be attributed to
//!   nodes without an inventory.
//!
//! Credentials come from a kubeconfig (current context) or from the pod's
//! service account. Token files are read on every fetch, since projected
//! service-account tokens are rotated. Any failure fails the whole fetch.
//!
//! A kubeconfig is read in steps: parse it, pick the current context with
//! its cluster and user, take TLS settings from the cluster, then the token
//! and client certificate from the user. A fetch lists the three kinds
//! concurrently, then turns VolumeAttachments into PV → nodes, PVs into
//! images with their expectations, and Nodes into addresses.

use super::http::{ClientIdentity, HttpClient, TlsOptions, read_pem_file};
use super::{AttachmentReport, AttachmentSource, BoxFuture, Expectation, ImageRef, SourceError};
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const NAME: &str = "kubernetes";

/// Items per list page, as kubectl uses.
const PAGE: u32 = 500;

/// Most pages followed in one listing (5 million items), so a server that
/// keeps answering `continue` cannot keep a fetch busy forever.
const MAX_PAGES: usize = 10_000;

/// The service-account directory every pod has.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A configuration error of this source.
fn config(message: impl Into<String>) -> SourceError {
    SourceError::Config {
        source_name: NAME,
        message: message.into(),
    }
}

/// A kubeconfig file: the parts this source reads.
#[derive(Debug, Deserialize)]
struct KubeConfig {
    /// The context used.
    #[serde(rename = "current-context")]
    current_context: Option<String>,
    /// Named contexts (cluster + user).
    contexts: Option<Vec<NamedContext>>,
    /// Named clusters.
    clusters: Option<Vec<NamedCluster>>,
    /// Named users (credentials).
    users: Option<Vec<NamedUser>>,
}

/// A `contexts` entry.
#[derive(Debug, Deserialize)]
struct NamedContext {
    /// Context name.
    name: String,
    /// The context.
    context: Context,
}

/// A context: which cluster, as which user.
#[derive(Debug, Deserialize)]
struct Context {
    /// Cluster name.
    cluster: String,
    /// User name; none means anonymous.
    user: Option<String>,
}

/// A `clusters` entry.
#[derive(Debug, Deserialize)]
struct NamedCluster {
    /// Cluster name.
    name: String,
    /// The cluster.
    cluster: Cluster,
}

/// A cluster: the API server and how to trust it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    /// API server URL.
    server: String,
    /// CA file.
    certificate_authority: Option<String>,
    /// CA, base64 PEM; wins over the file.
    certificate_authority_data: Option<String>,
    /// Accept any server certificate.
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    /// Name to verify the certificate against.
    tls_server_name: Option<String>,
    /// Refused: no proxy support.
    proxy_url: Option<String>,
}

/// A `users` entry.
#[derive(Debug, Deserialize)]
struct NamedUser {
    /// User name.
    name: String,
    /// The credentials.
    user: User,
}

/// A user: a token and/or a client certificate. Fields this source
/// refuses are read only to say so.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    /// Bearer token.
    token: Option<String>,
    /// File holding the bearer token, read on every fetch.
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    /// Client certificate file.
    client_certificate: Option<String>,
    /// Client certificate, base64 PEM; wins over the file.
    client_certificate_data: Option<String>,
    /// Client key file.
    client_key: Option<String>,
    /// Client key, base64 PEM; wins over the file.
    client_key_data: Option<String>,
    /// Refused: basic auth is gone from Kubernetes.
    username: Option<String>,
    /// Refused: no credential plugins.
    exec: Option<serde_norway::Value>,
    /// Refused: no credential plugins.
    auth_provider: Option<serde_norway::Value>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Holds a token and maybe a key: say only which fields are set.
        f.debug_struct("User")
            .field("token", &self.token.is_some())
            .field("token_file", &self.token_file)
            .field("client_certificate", &self.client_certificate)
            .field("client_key", &self.client_key)
            .finish_non_exhaustive()
    }
}

/// Where the bearer token comes from.
#[derive(Clone)]
enum Token {
    /// Anonymous, or a client certificate only.
    None,
    /// From the kubeconfig.
    Static(String),
    /// Read on every fetch: service-account tokens rotate.
    File(PathBuf),
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::None => write!(f, "None"),
            Token::Static(_) => write!(f, "Static(<redacted>)"),
            Token::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// PersistentVolumes, VolumeAttachments and Nodes from a Kubernetes API.
#[derive(Debug)]
pub struct KubernetesSource {
    /// HTTP client with the cluster's TLS settings.
    client: HttpClient,
    /// API server URL without a trailing slash.
    server: String,
    /// Bearer token, if any.
    token: Token,
}

/// `path` as written in a kubeconfig: relative to the kubeconfig's
/// directory, as kubectl reads it.
fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Base64 `*-data` field, whitespace tolerated.
fn decode_data(origin: &str, field: &str, data: &str) -> Result<Vec<u8>, SourceError> {
    let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| config(format!("{origin}: {field} is not base64: {e}")))
}

/// A `*-data` field (base64 PEM) or, when it is not set, the file a
/// sibling field names; `field` is the file field's name, e.g.
/// `client-key`, and `origin` starts error messages.
fn inline_or_file(
    origin: &str,
    field: &str,
    data: Option<&String>,
    file: Option<&String>,
    base: &Path,
) -> Result<Option<Vec<u8>>, SourceError> {
    match (data, file) {
        (Some(d), _) => Ok(Some(decode_data(origin, &format!("{field}-data"), d)?)),
        (None, Some(f)) => Ok(Some(read_pem_file(
            NAME,
            &format!("{origin}: {field}"),
            &resolve(base, f),
        )?)),
        (None, None) => Ok(None),
    }
}

/// The parts of a kubeconfig its current context picks.
struct CurrentContext {
    /// The cluster's name.
    cluster_name: String,
    /// The cluster.
    cluster: Cluster,
    /// The user's name; empty for none.
    user_name: String,
    /// The user; none means anonymous.
    user: Option<User>,
}

impl KubeConfig {
    /// Reads and parses the kubeconfig at `path` (`shown` in messages).
    fn read(path: &Path, shown: &str) -> Result<KubeConfig, SourceError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| config(format!("kubeconfig {shown}: cannot read: {e}")))?;
        serde_norway::from_str(&text).map_err(|e| config(format!("kubeconfig {shown}: {e}")))
    }

    /// The current context with its cluster and user; an error names
    /// whichever is not set or not defined.
    fn into_current(self, shown: &str) -> Result<CurrentContext, SourceError> {
        let current = self
            .current_context
            .filter(|c| !c.is_empty())
            .ok_or_else(|| config(format!("kubeconfig {shown}: current-context is not set")))?;
        let context = self
            .contexts
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.name == current)
            .ok_or_else(|| {
                config(format!(
                    "kubeconfig {shown}: current-context {current:?} is not in contexts"
                ))
            })?
            .context;
        let cluster = self
            .clusters
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.name == context.cluster)
            .ok_or_else(|| {
                config(format!(
                    "kubeconfig {shown}: cluster {:?} (of context {current:?}) is not in clusters",
                    context.cluster
                ))
            })?
            .cluster;
        let user = match &context.user {
            None => None,
            Some(name) if name.is_empty() => None,
            Some(name) => Some(
                self.users
                    .unwrap_or_default()
                    .into_iter()
                    .find(|u| &u.name == name)
                    .ok_or_else(|| {
                        config(format!(
                            "kubeconfig {shown}: user {name:?} (of context {current:?}) is not in users"
                        ))
                    })?
                    .user,
            ),
        };
        Ok(CurrentContext {
            cluster_name: context.cluster,
            cluster,
            user_name: context.user.unwrap_or_default(),
            user,
        })
    }
}

impl CurrentContext {
    /// TLS settings from the cluster: verification, server name and CA
    /// (client identity comes from the user). A proxy is refused.
    fn cluster_tls(&self, origin: &str, base: &Path) -> Result<TlsOptions, SourceError> {
        let cluster = &self.cluster;
        if cluster.proxy_url.is_some() {
            return Err(config(format!(
                "{origin}: cluster {:?}: proxy-url is not supported",
                self.cluster_name
            )));
        }
        Ok(TlsOptions {
            insecure: cluster.insecure_skip_tls_verify,
            server_name: cluster.tls_server_name.clone(),
            ca_pem: inline_or_file(
                origin,
                "certificate-authority",
                cluster.certificate_authority_data.as_ref(),
                cluster.certificate_authority.as_ref(),
                base,
            )?,
            ..TlsOptions::default()
        })
    }
}

impl User {
    /// Refuses what this exporter cannot do: credential plugins and basic
    /// auth.
    fn check_supported(&self, uorigin: &str) -> Result<(), SourceError> {
        if self.exec.is_some() || self.auth_provider.is_some() {
            return Err(config(format!(
                "{uorigin}: exec and auth-provider plugins are not supported; use a token, tokenFile or client certificate"
            )));
        }
        if self.username.is_some() {
            return Err(config(format!(
                "{uorigin}: basic auth (username/password) is not supported; use a token or client certificate"
            )));
        }
        Ok(())
    }

    /// The bearer token: `token` if not blank, else `tokenFile`, else none.
    fn bearer_token(&self, base: &Path) -> Token {
        match (&self.token, &self.token_file) {
            (Some(t), _) if !t.trim().is_empty() => Token::Static(t.trim().to_string()),
            (_, Some(f)) if !f.is_empty() => Token::File(resolve(base, f)),
            _ => Token::None,
        }
    }

    /// The client certificate and key, both or neither.
    fn client_identity(
        &self,
        uorigin: &str,
        base: &Path,
    ) -> Result<Option<ClientIdentity>, SourceError> {
        let cert = inline_or_file(
            uorigin,
            "client-certificate",
            self.client_certificate_data.as_ref(),
            self.client_certificate.as_ref(),
            base,
        )?;
        let key = inline_or_file(
            uorigin,
            "client-key",
            self.client_key_data.as_ref(),
            self.client_key.as_ref(),
            base,
        )?;
        match (cert, key) {
            (Some(cert_pem), Some(key_pem)) => Ok(Some(ClientIdentity { cert_pem, key_pem })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(config(format!(
                "{uorigin}: client-certificate without client-key"
            ))),
            (None, Some(_)) => Err(config(format!(
                "{uorigin}: client-key without client-certificate"
            ))),
        }
    }
}

impl KubernetesSource {
    /// The source for the current context of the kubeconfig at `path`.
    /// Relative file names in it are relative to its directory. `timeout`
    /// bounds each HTTP request.
    pub fn from_kubeconfig(
        path: &Path,
        timeout: Duration,
    ) -> Result<KubernetesSource, SourceError> {
        let shown = path.display().to_string();
        let kc = KubeConfig::read(path, &shown)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let current = kc.into_current(&shown)?;
        let origin = format!("kubeconfig {shown}");
        let mut tls = current.cluster_tls(&origin, base)?;
        let mut token = Token::None;
        if let Some(user) = &current.user {
            let uorigin = format!("{origin}: user {:?}", current.user_name);
            user.check_supported(&uorigin)?;
            token = user.bearer_token(base);
            tls.client_identity = user.client_identity(&uorigin, base)?;
        }
        let cluster = &current.cluster;
        if !cluster.server.starts_with("https://") && !cluster.server.starts_with("http://") {
            return Err(config(format!(
                "{origin}: cluster {:?}: server {:?} is not an http(s) URL",
                current.cluster_name, cluster.server
            )));
        }
        Ok(KubernetesSource {
            client: HttpClient::new(NAME, &tls, timeout)?,
            server: cluster.server.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// The source for the pod's own service account: the API server from
    /// `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, token and CA
    /// from [`SERVICE_ACCOUNT_DIR`].
    pub fn in_cluster(timeout: Duration) -> Result<KubernetesSource, SourceError> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    config(format!(
                        "in-cluster: {name} is not set (not running in a pod? use a kubeconfig)"
                    ))
                })
        };
        let host = var("KUBERNETES_SERVICE_HOST")?;
        let port = var("KUBERNETES_SERVICE_PORT")?;
        KubernetesSource::in_cluster_at(&host, &port, Path::new(SERVICE_ACCOUNT_DIR), timeout)
    }

    /// As [`KubernetesSource::in_cluster`], with the API server's host and
    /// port and the service-account directory (holding `token` and
    /// `ca.crt`) given.
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
        let token = service_account_dir.join("token");
        if !token.is_file() {
            return Err(config(format!(
                "in-cluster: {} is missing (no service account token mounted?)",
                token.display()
            )));
        }
        let tls = TlsOptions {
            ca_pem: Some(read_pem_file(
                NAME,
                "in-cluster: CA",
                &service_account_dir.join("ca.crt"),
            )?),
            ..TlsOptions::default()
        };
        Ok(KubernetesSource {
            client: HttpClient::new(NAME, &tls, timeout)?,
            server,
            token: Token::File(token),
        })
    }

    /// The API server URL this source asks.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The `Authorization` header value, if any; a token file is read
    /// anew on every call.
    async fn bearer(&self) -> Result<Option<String>, SourceError> {
        match &self.token {
            Token::None => Ok(None),
            Token::Static(t) => Ok(Some(format!("Bearer {t}"))),
            Token::File(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| config(format!("token file {}: {e}", path.display())))?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(config(format!("token file {} is empty", path.display())));
                }
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Every item of a list, page by page; each with the URL of its page
    /// for error messages.
    async fn list(
        &self,
        bearer: Option<&str>,
        path: &str,
    ) -> Result<Vec<(String, Value)>, SourceError> {
        let headers: Vec<(&str, &str)> = bearer.map(|b| ("Authorization", b)).into_iter().collect();
        let mut items = Vec::new();
        let mut url = format!("{}{path}?limit={PAGE}", self.server);
        let mut seen = BTreeSet::new();
        for _ in 0..MAX_PAGES {
            let body = self.client.get_json(&url, &headers).await?.body;
            let page = body.get("items").and_then(Value::as_array).ok_or_else(|| {
                self.client
                    .bad_response(&url, "missing field `items` (a list)")
            })?;
            items.extend(page.iter().map(|item| (url.clone(), item.clone())));
            let next = match body.pointer("/metadata/continue") {
                None | Some(Value::Null) => return Ok(items),
                Some(Value::String(c)) if c.is_empty() => return Ok(items),
                Some(Value::String(c)) => c.clone(),
                Some(_) => {
                    return Err(self
                        .client
                        .bad_response(&url, "field `metadata.continue` is not a string"));
                }
            };
            if !seen.insert(next.clone()) {
                return Err(self
                    .client
                    .bad_response(&url, "metadata.continue repeats an earlier page"));
            }
            url = format!(
                "{}{path}?limit={PAGE}&continue={}",
                self.server,
                percent_encode(&next)
            );
        }
        Err(self
            .client
            .bad_response(&url, format!("more than {MAX_PAGES} pages")))
    }

    /// Lists PVs, VolumeAttachments and Nodes together and turns them into
    /// one report; any bad item fails the whole fetch.
    async fn fetch_now(&self) -> Result<AttachmentReport, SourceError> {
        let bearer = self.bearer().await?;
        let bearer = bearer.as_deref();
        let (pvs, attachments, nodes) = tokio::try_join!(
            self.list(bearer, "/api/v1/persistentvolumes"),
            self.list(bearer, "/apis/storage.k8s.io/v1/volumeattachments"),
            self.list(bearer, "/api/v1/nodes"),
        )?;
        let attached = self.attached_nodes(&attachments)?;
        let mut report = AttachmentReport::default();
        self.add_persistent_volumes(&mut report, &pvs, &attached)?;
        self.add_node_addresses(&mut report, &nodes)?;
        Ok(report)
    }

    /// The error for `items[index]` of the page at `url`.
    fn item_error(&self, url: &str, index: usize, message: String) -> SourceError {
        self.client
            .bad_response(url, format!("items[{index}]: {message}"))
    }

    /// PV name -> the nodes VolumeAttachments say it is attached to.
    fn attached_nodes(
        &self,
        attachments: &[(String, Value)],
    ) -> Result<BTreeMap<String, BTreeSet<String>>, SourceError> {
        let mut attached: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (index, (url, va)) in attachments.iter().enumerate() {
            let attachment = volume_attachment(va).map_err(|m| self.item_error(url, index, m))?;
            if let Some((pv, node)) = attachment {
                attached
                    .entry(pv.to_string())
                    .or_default()
                    .insert(node.to_string());
            }
        }
        Ok(attached)
    }

    /// Adds the image of every RBD PV to `report`.
    fn add_persistent_volumes(
        &self,
        report: &mut AttachmentReport,
        pvs: &[(String, Value)],
        attached: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<(), SourceError> {
        for (index, (url, pv)) in pvs.iter().enumerate() {
            let Some((image, expectation)) =
                persistent_volume(pv, attached).map_err(|m| self.item_error(url, index, m))?
            else {
                continue;
            };
            match report.images.get_mut(&image) {
                Some(existing) => merge_expectation(existing, expectation),
                None => {
                    report.images.insert(image, expectation);
                }
            }
        }
        Ok(())
    }

    /// Adds every node's InternalIP addresses to `report`.
    fn add_node_addresses(
        &self,
        report: &mut AttachmentReport,
        nodes: &[(String, Value)],
    ) -> Result<(), SourceError> {
        for (index, (url, node)) in nodes.iter().enumerate() {
            let (name, ips) = internal_ips(node).map_err(|m| self.item_error(url, index, m))?;
            for ip in ips {
                report.host_addresses.insert(ip, name.to_string());
            }
        }
        Ok(())
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

/// The PV and node of a VolumeAttachment that is attached; `None` when it
/// is not attached, or is for an inline CSI volume (which has no PV).
fn volume_attachment(va: &Value) -> Result<Option<(&str, &str)>, String> {
    let Some(pv) = optional_str(va, "/spec/source/persistentVolumeName")? else {
        return Ok(None);
    };
    let node = required_str(va, "/spec/nodeName")?;
    let is_attached = match va.pointer("/status/attached") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("field `status.attached` is not a boolean".into()),
    };
    Ok(is_attached.then_some((pv, node)))
}

/// A node's name and its InternalIP addresses (none when it lists no
/// addresses).
fn internal_ips(node: &Value) -> Result<(&str, Vec<IpAddr>), String> {
    let name = required_str(node, "/metadata/name")?;
    let addresses = match node.pointer("/status/addresses") {
        None | Some(Value::Null) => return Ok((name, Vec::new())),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(format!("node {name}: `status.addresses` is not a list")),
    };
    let mut ips = Vec::new();
    for (i, address) in addresses.iter().enumerate() {
        if address["type"].as_str() != Some("InternalIP") {
            continue;
        }
        let text = address["address"]
            .as_str()
            .ok_or_else(|| format!("node {name}: status.addresses[{i}].address is missing"))?;
        let ip: IpAddr = text.parse().map_err(|_| {
            format!("node {name}: status.addresses[{i}].address {text:?} is not an IP address")
        })?;
        ips.push(ip);
    }
    Ok((name, ips))
}

impl AttachmentSource for KubernetesSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fetch(&self) -> BoxFuture<'_, Result<AttachmentReport, SourceError>> {
        Box::pin(self.fetch_now())
    }
}

/// Query-string encoding of a `continue` token (base64, so `+`, `/`, `=`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `pointer` as a dotted field name for messages: `/spec/csi` -> `spec.csi`.
fn field_name(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

/// The string at `pointer`; `None` when absent or null.
fn optional_str<'a>(item: &'a Value, pointer: &str) -> Result<Option<&'a str>, String> {
    match item.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("field `{}` is not a string", field_name(pointer))),
    }
}

/// The non-empty string at `pointer`.
fn required_str<'a>(item: &'a Value, pointer: &str) -> Result<&'a str, String> {
    match optional_str(item, pointer)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!("missing field `{}`", field_name(pointer))),
    }
}

/// True for ceph-csi's RBD driver names (`rbd.csi.ceph.com`, or with the
/// prefix some deployments give it).
fn is_ceph_rbd_driver(driver: &str) -> bool {
    driver == "rbd.csi.ceph.com" || driver.ends_with(".rbd.csi.ceph.com")
}

/// The image a PV names and what Kubernetes expects of it; `None` for PVs
/// that are not RBD.
fn persistent_volume(
    pv: &Value,
    attached: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Option<(ImageRef, Expectation)>, String> {
    let name = required_str(pv, "/metadata/name")?;
    let in_pv = |m: String| format!("pv {name}: {m}");
    let Some((image, hosts)) = rbd_image(pv, name, attached).map_err(in_pv)? else {
        return Ok(None);
    };
    let multi_attach = is_multi_attach(pv).map_err(in_pv)?;
    let claim = claim(pv).map_err(in_pv)?;
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
    pv: &Value,
    name: &str,
    attached: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Option<(ImageRef, ExpectedHosts)>, String> {
    if let Some(driver) = optional_str(pv, "/spec/csi/driver")? {
        if !is_ceph_rbd_driver(driver) {
            return Ok(None);
        }
        let image = csi_image(pv)?;
        // Attached nowhere when no VolumeAttachment says otherwise.
        let hosts = attached.get(name).cloned().unwrap_or_default();
        Ok(Some((image, Some(hosts))))
    } else if pv.pointer("/spec/rbd").is_some_and(|v| !v.is_null()) {
        // In-tree RBD has no VolumeAttachments: no opinion on nodes.
        Ok(Some((in_tree_image(pv)?, None)))
    } else {
        Ok(None)
    }
}

/// The image of a ceph-csi PV: pool, RADOS namespace and image from its
/// volume attributes; a static PV names its image in `volumeHandle`.
fn csi_image(pv: &Value) -> Result<ImageRef, String> {
    let pool = required_str(pv, "/spec/csi/volumeAttributes/pool")?;
    let namespace = optional_str(pv, "/spec/csi/volumeAttributes/radosNamespace")?.unwrap_or("");
    let static_volume =
        optional_str(pv, "/spec/csi/volumeAttributes/staticVolume")? == Some("true");
    let image = match optional_str(pv, "/spec/csi/volumeAttributes/imageName")? {
        Some(image) if !image.is_empty() => image,
        _ if static_volume => required_str(pv, "/spec/csi/volumeHandle")?,
        _ => return Err("missing field `spec.csi.volumeAttributes.imageName`".to_string()),
    };
    Ok(ImageRef {
        pool: Some(pool.to_string()),
        namespace: Some(namespace.to_string()),
        image: image.to_string(),
    })
}

/// The image of an in-tree `spec.rbd` PV; the pool defaults to `rbd`.
fn in_tree_image(pv: &Value) -> Result<ImageRef, String> {
    let pool = optional_str(pv, "/spec/rbd/pool")?
        .filter(|p| !p.is_empty())
        .unwrap_or("rbd");
    let image = required_str(pv, "/spec/rbd/image")?;
    Ok(ImageRef {
        pool: Some(pool.to_string()),
        namespace: Some(String::new()),
        image: image.to_string(),
    })
}

/// True if the PV's access modes let more than one node use it
/// (`ReadWriteMany`, `ReadOnlyMany`).
fn is_multi_attach(pv: &Value) -> Result<bool, String> {
    match pv.pointer("/spec/accessModes") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Array(modes)) => Ok(modes
            .iter()
            .any(|m| matches!(m.as_str(), Some("ReadWriteMany" | "ReadOnlyMany")))),
        Some(_) => Err("field `spec.accessModes` is not a list".to_string()),
    }
}

/// The PV's claim for the owner text: `claim ns/name`, `claim name` or
/// `no claim`.
fn claim(pv: &Value) -> Result<String, String> {
    Ok(
        match (
            optional_str(pv, "/spec/claimRef/namespace")?,
            optional_str(pv, "/spec/claimRef/name")?,
        ) {
            (Some(ns), Some(claim)) => format!("claim {ns}/{claim}"),
            (None, Some(claim)) => format!("claim {claim}"),
            _ => "no claim".to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn percent_encodes_continue_tokens() {
        assert_eq!(percent_encode("eyJ2Ijo+/=="), "eyJ2Ijo%2B%2F%3D%3D");
    }

    #[test]
    fn pv_kinds() {
        let attached = BTreeMap::from([("a".to_string(), BTreeSet::from(["n1".to_string()]))]);
        let csi = json!({"metadata": {"name": "a"}, "spec": {
            "accessModes": ["ReadWriteOnce"],
            "claimRef": {"namespace": "ns", "name": "data"},
            "csi": {"driver": "openshift-storage.rbd.csi.ceph.com", "volumeHandle": "h",
                    "volumeAttributes": {"pool": "k", "imageName": "csi-vol-1"}}}});
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

        let static_pv = json!({"metadata": {"name": "s"}, "spec": {
            "accessModes": ["ReadOnlyMany"],
            "csi": {"driver": "rbd.csi.ceph.com", "volumeHandle": "legacy-image",
                    "volumeAttributes": {"pool": "k", "staticVolume": "true"}}}});
        let (image, e) = persistent_volume(&static_pv, &attached)
            .expect("ok")
            .expect("rbd");
        assert_eq!(image.image, "legacy-image");
        assert_eq!(e.hosts, Some(BTreeSet::new()));
        assert!(e.multi_attach);
        assert_eq!(e.owner, "kubernetes pv s (no claim)");

        let in_tree = json!({"metadata": {"name": "t"}, "spec": {"rbd": {"image": "kubernetes-dynamic-pvc-1"}}});
        let (image, e) = persistent_volume(&in_tree, &attached)
            .expect("ok")
            .expect("rbd");
        assert_eq!(image.pool.as_deref(), Some("rbd"));
        assert_eq!(image.namespace.as_deref(), Some(""));
        assert_eq!(e.hosts, None);

        let other =
            json!({"metadata": {"name": "o"}, "spec": {"csi": {"driver": "cephfs.csi.ceph.com"}}});
        assert!(persistent_volume(&other, &attached).expect("ok").is_none());
        let nfs = json!({"metadata": {"name": "o"}, "spec": {"nfs": {}}});
        assert!(persistent_volume(&nfs, &attached).expect("ok").is_none());

        let broken = json!({"metadata": {"name": "b"}, "spec": {
            "csi": {"driver": "rbd.csi.ceph.com", "volumeAttributes": {"pool": "k"}}}});
        let m = persistent_volume(&broken, &attached).unwrap_err();
        assert!(
            m.contains("pv b: missing field `spec.csi.volumeAttributes.imageName`"),
            "{m}"
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
