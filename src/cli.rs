//! Command-line flags, in groups that each lower into the configuration of
//! one part of the flow (cluster, sampling, web, attribution, storage).
//! Every flag has an environment twin.

use crate::analysis::Settings;
use crate::ceph::{ConnectOptions, KEY_ENV, KeySource, MonHost};
use crate::cycle::CycleConfig;
use crate::error::Error;
use crate::metrics::RenderOptions;
use crate::sampler::SampleConfig;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;

/// Exports RBD hygiene from a Ceph cluster: orphaned watchers, stale locks,
/// deep clone chains, pinned snapshots and clones pending flatten.
#[derive(Debug, Clone, Parser)]
#[command(name = "ceph-rbd-exporter", version, about, long_about = None)]
pub struct Cli {
    /// How to reach the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// What to sample, how often, and what to report.
    #[command(flatten)]
    pub sampling: SamplingArgs,

    /// Where and how to serve HTTP.
    #[command(flatten)]
    pub web: WebArgs,

    /// Who holds the images: inventory, reverse DNS, attachment sources.
    #[command(flatten)]
    pub attribution: AttributionArgs,

    /// What survives a restart.
    #[command(flatten)]
    pub storage: StorageArgs,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log.level", env = "CEPH_RBD_EXPORTER_LOG_LEVEL", default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"], global = true)]
    pub log_level: String,

    /// What to do; the default is to serve metrics.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How to reach the cluster; lowers into [`ConnectOptions`].
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Path of ceph.conf [default: /etc/ceph/ceph.conf]. With
    /// --ceph.mon-host the default one is read only if it exists; a file
    /// named here is always read, and --ceph.mon-host and the key override
    /// it.
    #[arg(
        long = "ceph.config",
        env = "CEPH_RBD_EXPORTER_CEPH_CONFIG",
        value_name = "PATH",
        global = true
    )]
    pub ceph_config: Option<String>,

    /// Mon addresses, instead of ceph.conf's mon_host: Ceph's syntax
    /// (`10.0.0.1:6789,10.0.0.2`, `[v2:10.0.0.1:3300,v1:10.0.0.1:6789]`,
    /// `[fd00::1]:3300`, host names) or the `data` of Rook's
    /// rook-ceph-mon-endpoints ConfigMap (`a=10.0.0.1:6789,b=...`).
    #[arg(long = "ceph.mon-host", env = "CEPH_RBD_EXPORTER_CEPH_MON_HOST", value_name = "ADDRS", value_parser = MonHost::parse, global = true)]
    pub ceph_mon_host: Option<MonHost>,

    /// File holding the cephx key of --ceph.user: the bare base64 key (a
    /// Kubernetes Secret mounted as a file) or a keyring; no keyring is
    /// searched for then. Or set the key itself in
    /// CEPH_RBD_EXPORTER_CEPH_KEY (not both).
    #[arg(
        long = "ceph.key-file",
        env = "CEPH_RBD_EXPORTER_CEPH_KEY_FILE",
        value_name = "PATH",
        global = true
    )]
    pub ceph_key_file: Option<std::path::PathBuf>,

    /// Ceph client id to connect as, without `client.` (its keyring is found
    /// through ceph.conf, unless --ceph.key-file or
    /// CEPH_RBD_EXPORTER_CEPH_KEY gives its key).
    #[arg(
        long = "ceph.user",
        env = "CEPH_RBD_EXPORTER_CEPH_USER",
        default_value = "admin",
        global = true
    )]
    pub ceph_user: String,

    /// Timeout of every mon and OSD operation and of connecting, e.g. `10s`.
    #[arg(long = "ceph.op-timeout", env = "CEPH_RBD_EXPORTER_CEPH_OP_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub ceph_op_timeout: Duration,

    /// Most RADOS operations per second, mon commands and omap pages
    /// included, spread evenly over the sample; default: no limit (only
    /// `--ceph.max-inflight` bounds the load).
    #[arg(long = "sample.max-ops-per-second", env = "CEPH_RBD_EXPORTER_SAMPLE_MAX_OPS_PER_SECOND", value_parser = parse_rate, global = true)]
    pub sample_max_ops_per_second: Option<f64>,
}

/// What to sample, how often, and what to report; lowers into
/// [`CycleConfig`].
#[derive(Debug, Clone, clap::Args)]
pub struct SamplingArgs {
    /// Most RADOS operations in flight at once.
    #[arg(long = "ceph.max-inflight", env = "CEPH_RBD_EXPORTER_CEPH_MAX_INFLIGHT", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096), global = true)]
    pub ceph_max_inflight: u32,

    /// Comma-separated pool names to sample; default: every pool with the
    /// `rbd` application enabled.
    #[arg(long = "pools", env = "CEPH_RBD_EXPORTER_POOLS", value_delimiter = ',', value_parser = parse_pool_name, global = true)]
    pub pools: Option<Vec<String>>,

    /// How often to sample the cluster, e.g. `60s`, `5m`.
    #[arg(long = "sample.interval", env = "CEPH_RBD_EXPORTER_SAMPLE_INTERVAL", default_value = "60s", value_parser = parse_interval, global = true)]
    pub sample_interval: Duration,

    /// Between full reads, an image header whose RADOS version has not
    /// moved is read light (its watchers only); every header is still read
    /// in full at least once every this many samples, spread over the
    /// samples. 1 reads every header in full every sample.
    #[arg(long = "sample.full-every", env = "CEPH_RBD_EXPORTER_SAMPLE_FULL_EVERY", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=100_000), global = true)]
    pub sample_full_every: u32,

    /// Clone depth above which a clone is reported as needing a flatten
    /// (Cinder's `rbd_max_clone_depth`).
    #[arg(
        long = "clone-depth.max",
        env = "CEPH_RBD_EXPORTER_CLONE_DEPTH_MAX",
        default_value_t = 5,
        global = true
    )]
    pub clone_depth_max: u32,

    /// Emit per-image series for every image, not only those with something
    /// to say.
    #[arg(
        long = "metrics.all-images",
        env = "CEPH_RBD_EXPORTER_METRICS_ALL_IMAGES",
        global = true
    )]
    pub metrics_all_images: bool,
}

/// Where and how to serve HTTP.
#[derive(Debug, Clone, clap::Args)]
pub struct WebArgs {
    /// Address to serve HTTP on.
    #[arg(
        long = "web.listen-address",
        env = "CEPH_RBD_EXPORTER_WEB_LISTEN_ADDRESS",
        default_value = "0.0.0.0:9289",
        global = true
    )]
    pub web_listen_address: SocketAddr,

    /// TLS, mutual TLS and basic auth, in the Prometheus exporter-toolkit
    /// web configuration format (tls_server_config, basic_auth_users).
    #[arg(
        long = "web.config.file",
        env = "CEPH_RBD_EXPORTER_WEB_CONFIG_FILE",
        global = true
    )]
    pub web_config_file: Option<std::path::PathBuf>,

    /// Path that serves the metrics.
    #[arg(long = "web.telemetry-path", env = "CEPH_RBD_EXPORTER_WEB_TELEMETRY_PATH", default_value = "/metrics", value_parser = parse_path, global = true)]
    pub web_telemetry_path: String,

    /// The URL people reach the exporter at (e.g.
    /// https://rbd-exporter.example.com:9289, or a reverse proxy's
    /// https://proxy.example.com/ceph-rbd). Exported as
    /// ceph_rbd_exporter_web_info{external_url} so that dashboards and alerts
    /// link to the image pages; its path prefixes the pages' own links.
    #[arg(
        long = "web.external-url",
        env = "CEPH_RBD_EXPORTER_WEB_EXTERNAL_URL",
        value_parser = parse_external_url,
        global = true
    )]
    pub web_external_url: Option<String>,
}

/// Who holds the images: the inventory, reverse DNS and the attachment
/// sources (`crate::app` builds the attributor from these).
#[derive(Debug, Clone, clap::Args)]
pub struct AttributionArgs {
    /// YAML file mapping client IPs and CIDRs to host names and roles, and
    /// listing the networks clients may come from (see README).
    #[arg(
        long = "watchers.inventory",
        env = "CEPH_RBD_EXPORTER_WATCHERS_INVENTORY",
        global = true
    )]
    pub watchers_inventory: Option<std::path::PathBuf>,

    /// Name watcher addresses the inventory does not know by reverse DNS
    /// (cached; adds at most 2 s to a sample).
    #[arg(
        long = "watchers.reverse-dns",
        env = "CEPH_RBD_EXPORTER_WATCHERS_REVERSE_DNS",
        global = true
    )]
    pub watchers_reverse_dns: bool,

    /// How long a client address keeps the host it was last named (by the
    /// inventory, an attachment source or reverse DNS) once nothing names
    /// it any more (a source down, DNS failing), so that host labels do not
    /// flap; after that its host is unknown. `0s` keeps nothing.
    #[arg(long = "watchers.host-retention", env = "CEPH_RBD_EXPORTER_WATCHERS_HOST_RETENTION", default_value = "1h", value_parser = parse_retention, global = true)]
    pub watchers_host_retention: Duration,

    /// Take expected attachments from this OpenStack cloud (an entry of
    /// clouds.yaml): Cinder volumes, Nova servers and Glance images.
    /// Without it, the cloud OS_CLOUD names, as for openstacksdk; an empty
    /// name turns the source off whatever OS_CLOUD says.
    #[arg(
        long = "openstack.cloud",
        env = "CEPH_RBD_EXPORTER_OPENSTACK_CLOUD",
        global = true
    )]
    pub openstack_cloud: Option<String>,

    /// clouds.yaml to read instead of the places openstacksdk looks (like
    /// OS_CLIENT_CONFIG_FILE; a secure.yaml is still merged in).
    #[arg(
        long = "openstack.clouds-file",
        env = "CEPH_RBD_EXPORTER_OPENSTACK_CLOUDS_FILE",
        global = true
    )]
    pub openstack_clouds_file: Option<std::path::PathBuf>,

    /// Take expected attachments from the Kubernetes cluster of this
    /// kubeconfig: PersistentVolumes, VolumeAttachments and Nodes.
    #[arg(
        long = "kubernetes.kubeconfig",
        env = "CEPH_RBD_EXPORTER_KUBERNETES_KUBECONFIG",
        conflicts_with = "kubernetes_in_cluster",
        global = true
    )]
    pub kubernetes_kubeconfig: Option<std::path::PathBuf>,

    /// Like --kubernetes.kubeconfig, with the pod's service account.
    #[arg(
        long = "kubernetes.in-cluster",
        env = "CEPH_RBD_EXPORTER_KUBERNETES_IN_CLUSTER",
        global = true
    )]
    pub kubernetes_in_cluster: bool,

    /// Take expected attachments from this YAML file (see README).
    #[arg(
        long = "attachments.file",
        env = "CEPH_RBD_EXPORTER_ATTACHMENTS_FILE",
        global = true
    )]
    pub attachments_file: Option<std::path::PathBuf>,

    /// How often to ask the attachment sources, e.g. `60s`.
    #[arg(long = "attachments.refresh-interval", env = "CEPH_RBD_EXPORTER_ATTACHMENTS_REFRESH_INTERVAL", default_value = "60s", value_parser = parse_interval, global = true)]
    pub attachments_refresh_interval: Duration,

    /// Timeout of each request to an attachment source, e.g. `20s`.
    #[arg(long = "attachments.timeout", env = "CEPH_RBD_EXPORTER_ATTACHMENTS_TIMEOUT", default_value = "20s", value_parser = parse_duration, global = true)]
    pub attachments_timeout: Duration,
}

/// What survives a restart.
#[derive(Debug, Clone, clap::Args)]
pub struct StorageArgs {
    /// Directory to keep state in across restarts (made if missing): the
    /// first-seen times of the watchers, in first-seen.json. Without it
    /// they start again at every restart.
    #[arg(
        long = "storage.path",
        env = "CEPH_RBD_EXPORTER_STORAGE_PATH",
        global = true
    )]
    pub storage_path: Option<std::path::PathBuf>,
}

/// The OpenStack cloud to read, and what named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenStackCloud {
    /// The `clouds.yaml` entry.
    pub name: String,
    /// `--openstack.cloud` (or its environment twin) or `OS_CLOUD`, for
    /// the log and for errors.
    pub named_by: &'static str,
}

impl OpenStackCloud {
    /// What named the cloud, for errors: with `OS_CLOUD`, how to do
    /// without.
    pub fn origin(&self) -> String {
        if self.named_by == "OS_CLOUD" {
            format!(
                "cloud {:?} named by OS_CLOUD; unset it or pass --openstack.cloud '' to turn the OpenStack source off",
                self.name
            )
        } else {
            format!("cloud {:?} named by {}", self.name, self.named_by)
        }
    }
}

impl AttributionArgs {
    /// The OpenStack cloud these flags ask for: `--openstack.cloud` (or
    /// `CEPH_RBD_EXPORTER_OPENSTACK_CLOUD`), else `$OS_CLOUD` as for
    /// openstacksdk; `None` when neither names one or `--openstack.cloud`
    /// is empty (off whatever `OS_CLOUD` says). `env` reads a variable.
    /// `--openstack.clouds-file` without a cloud is an error.
    pub fn openstack_cloud(
        &self,
        env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Option<OpenStackCloud>, Error> {
        let chosen = match self.openstack_cloud.as_deref() {
            Some("") => None,
            Some(name) => Some(OpenStackCloud {
                name: name.to_string(),
                named_by: "--openstack.cloud",
            }),
            None => match env("OS_CLOUD").map(|v| v.into_string()) {
                None => None,
                Some(Ok(name)) if name.is_empty() => None,
                Some(Ok(name)) => Some(OpenStackCloud {
                    name,
                    named_by: "OS_CLOUD",
                }),
                Some(Err(_)) => {
                    return Err(Error::Config("OS_CLOUD is not valid UTF-8".to_string()));
                }
            },
        };
        if chosen.is_none() {
            if let Some(file) = &self.openstack_clouds_file {
                return Err(Error::Config(format!(
                    "--openstack.clouds-file {}: no cloud to read from it: set --openstack.cloud (or OS_CLOUD)",
                    file.display()
                )));
            }
        }
        Ok(chosen)
    }
}

/// The ceph.conf read when --ceph.config is not given.
pub const DEFAULT_CEPH_CONFIG: &str = "/etc/ceph/ceph.conf";

impl ClusterArgs {
    /// The connection options these flags and `CEPH_RBD_EXPORTER_CEPH_KEY`
    /// ask for.
    pub fn connect_options(&self) -> Result<ConnectOptions, Error> {
        self.connect_options_with(std::env::var_os(KEY_ENV))
    }

    /// [`connect_options`](Self::connect_options) with the key variable's
    /// value given. A key file and the key variable together are refused.
    pub fn connect_options_with(
        &self,
        key_env: Option<std::ffi::OsString>,
    ) -> Result<ConnectOptions, Error> {
        let key = KeySource::from_flag_and_env(self.ceph_key_file.as_deref(), key_env)
            .map_err(|e| Error::Config(e.to_string()))?;
        let conf_path = match &self.ceph_config {
            Some(path) => Some(path.clone()),
            None if self.ceph_mon_host.is_some()
                && !std::path::Path::new(DEFAULT_CEPH_CONFIG).exists() =>
            {
                None
            }
            None => Some(DEFAULT_CEPH_CONFIG.to_string()),
        };
        Ok(ConnectOptions {
            conf_path,
            user: self.ceph_user.clone(),
            mon_host: self.ceph_mon_host.clone(),
            key,
            op_timeout: self.ceph_op_timeout,
            max_ops_per_second: self.sample_max_ops_per_second,
        })
    }
}

impl SamplingArgs {
    /// The cycle configuration these flags ask for.
    pub fn cycle_config(&self) -> CycleConfig {
        CycleConfig {
            sample: SampleConfig {
                pools: self.pools.clone(),
                max_inflight: self.ceph_max_inflight as usize,
                full_every: self.sample_full_every,
            },
            settings: Settings {
                clone_depth_max: self.clone_depth_max,
            },
            render: RenderOptions {
                all_images: self.metrics_all_images,
                sample_interval_seconds: self.sample_interval.as_secs_f64(),
                external_url: None,
            },
            interval: self.sample_interval,
        }
    }
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Take one sample and print every image with what was learned, as JSON.
    Dump,
    /// Why can't I delete this image, and who holds it? Takes one sample and
    /// prints the image's watchers (with host and verdict), locks, parent
    /// chain, snapshots and children, and the commands that would fix it.
    /// Never runs them.
    Explain(ExplainArgs),
}

/// Arguments of `explain`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// The image, as POOL/IMAGE or POOL/NAMESPACE/IMAGE.
    #[arg(value_parser = parse_image_spec, required_unless_present_any = ["orphans", "image_id"], conflicts_with_all = ["orphans", "image_id"])]
    pub image: Option<ImageSpec>,
    /// The image by id instead of name (`rbd_header.<id>`; how trashed
    /// images are named), with --pool and, if not the default one,
    /// --namespace.
    #[arg(long = "image-id", requires = "pool", conflicts_with = "orphans")]
    pub image_id: Option<String>,
    /// The pool of --image-id.
    #[arg(long = "pool", requires = "image_id", value_parser = parse_pool_name)]
    pub pool: Option<String>,
    /// The RBD namespace of --image-id (default: the default namespace).
    #[arg(long = "namespace", requires = "image_id", default_value = "")]
    pub namespace: String,
    /// Instead of one image: every orphaned watcher and stale lock in the
    /// sampled pools.
    #[arg(long)]
    pub orphans: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

/// An image named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Pool name.
    pub pool: String,
    /// RBD namespace ("" for the default one).
    pub namespace: String,
    /// Image name.
    pub image: String,
}

/// Output format of `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// For scripts.
    Json,
}

/// Parses `POOL/IMAGE` or `POOL/NAMESPACE/IMAGE` (what `rbd` calls an
/// image spec, without a snapshot).
pub fn parse_image_spec(s: &str) -> Result<ImageSpec, String> {
    let parts: Vec<&str> = s.split('/').collect();
    let (pool, namespace, image) = match parts.as_slice() {
        [pool, image] => (*pool, "", *image),
        [pool, namespace, image] => (*pool, *namespace, *image),
        _ => {
            return Err(format!("{s:?} is not POOL/IMAGE or POOL/NAMESPACE/IMAGE"));
        }
    };
    if pool.is_empty() || image.is_empty() {
        return Err(format!("{s:?}: pool and image must not be empty"));
    }
    if image.contains('@') {
        return Err(format!("{s:?}: name the image, not a snapshot"));
    }
    Ok(ImageSpec {
        pool: pool.to_string(),
        namespace: namespace.to_string(),
        image: image.to_string(),
    })
}

/// Parses `500ms`, `10s`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (use e.g. 500ms, 10s, 5m, 1h)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "{s:?} has an unknown unit {unit:?} (use ms, s, m or h)"
            ));
        }
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 * 7.0 {
        return Err(format!("{s:?} must be more than 0 and at most a week"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration as [`parse_duration`] takes it, or `0`/`0s` for none.
fn parse_retention(s: &str) -> Result<Duration, String> {
    let zero = s.trim().trim_end_matches(['s', 'm', 'h']);
    if zero.contains('0') && zero.chars().all(|c| c == '0' || c == '.') {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err(format!("{s:?} is too short; sample at most once a second"));
    }
    Ok(d)
}

/// A positive number of operations per second (fractions allowed, e.g. `0.5`).
fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of operations per second"))?;
    if !r.is_finite() || r <= 0.0 || r > 1_000_000.0 {
        return Err(format!("{s:?} must be more than 0 and at most 1000000"));
    }
    Ok(r)
}

fn parse_pool_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty pool name".into());
    }
    Ok(s.to_string())
}

/// An absolute http(s) URL without query or fragment; a trailing `/` is
/// dropped so that paths can be appended.
fn parse_external_url(s: &str) -> Result<String, String> {
    let what = "must be an absolute http:// or https:// URL without query or fragment, e.g. https://rbd-exporter.example.com:9289";
    let uri: hyper::Uri = s.parse().map_err(|e| format!("{s:?} {what}: {e}"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http") | Some("https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) || s.contains(['?', '#']) {
        return Err(format!("{s:?} {what}"));
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        return Err(format!("{s:?} {what}"));
    }
    Ok(s.trim_end_matches('/').to_string())
}

fn parse_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s == "/" || s == "/healthz" {
        return Err(format!("{s:?} must start with / and not be / or /healthz"));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn external_url() {
        assert_eq!(
            parse_external_url("https://x.example.com:9289/"),
            Ok("https://x.example.com:9289".into())
        );
        assert_eq!(
            parse_external_url("http://proxy/ceph-rbd/"),
            Ok("http://proxy/ceph-rbd".into())
        );
        for bad in [
            "x.example.com",
            "/ceph",
            "ftp://x",
            "http://x/?a=1",
            "http://x/#f",
            "http://",
        ] {
            let err = parse_external_url(bad).unwrap_err();
            assert!(err.contains("absolute http"), "{bad}: {err}");
        }
        let err = Cli::try_parse_from(["x", "--web.external-url", "nowhere"]).unwrap_err();
        assert!(err.to_string().contains("--web.external-url"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_interval("100ms").is_err());
        assert_eq!(parse_retention("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_retention("0"), Ok(Duration::ZERO));
        assert_eq!(parse_retention("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_retention("-1s").is_err());
        assert!(parse_retention("soon").is_err());
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(
            cli.attribution.watchers_host_retention,
            Duration::from_secs(3600)
        );
        assert!(cli.storage.storage_path.is_none());
    }

    #[test]
    fn full_every_defaults_to_60_and_rejects_0() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.sampling.cycle_config().sample.full_every, 60);
        let cli = Cli::try_parse_from(["x", "--sample.full-every", "1"]).unwrap();
        assert_eq!(cli.sampling.cycle_config().sample.full_every, 1);
        for bad in ["0", "-3", "often", "100001"] {
            let flag = format!("--sample.full-every={bad}");
            let err = Cli::try_parse_from(["x", flag.as_str()]).unwrap_err();
            assert!(err.to_string().contains("--sample.full-every"), "{err}");
        }
    }

    #[test]
    fn rejects_bad_flags_with_the_flag_named() {
        let err = Cli::try_parse_from(["x", "--sample.interval", "soon"]).unwrap_err();
        assert!(err.to_string().contains("--sample.interval"), "{err}");
        let err = Cli::try_parse_from(["x", "--web.listen-address", "nowhere"]).unwrap_err();
        assert!(err.to_string().contains("--web.listen-address"), "{err}");
        let err = Cli::try_parse_from(["x", "--ceph.max-inflight", "0"]).unwrap_err();
        assert!(err.to_string().contains("--ceph.max-inflight"), "{err}");
        for bad in ["0", "-5", "fast", "inf", "NaN"] {
            let flag = format!("--sample.max-ops-per-second={bad}");
            let err = Cli::try_parse_from(["x", flag.as_str()]).unwrap_err();
            assert!(
                err.to_string().contains("--sample.max-ops-per-second"),
                "{bad}: {err}"
            );
        }
        let ok = Cli::try_parse_from(["x", "--sample.max-ops-per-second", "0.5"]).unwrap();
        assert_eq!(ok.cluster.sample_max_ops_per_second, Some(0.5));
        assert_eq!(
            Cli::try_parse_from(["x"])
                .unwrap()
                .cluster
                .sample_max_ops_per_second,
            None
        );
        for bad in ["volumes", "a/b/c/d", "/img", "pool/", "pool/img@snap"] {
            let err = Cli::try_parse_from(["x", "explain", bad]).unwrap_err();
            assert!(
                err.to_string().contains("IMAGE")
                    || err.to_string().contains("empty")
                    || err.to_string().contains("snapshot"),
                "{bad}: {err}"
            );
        }
        assert!(Cli::try_parse_from(["x", "explain"]).is_err());
        assert!(Cli::try_parse_from(["x", "explain", "--image-id", "abc"]).is_err());
        assert!(Cli::try_parse_from(["x", "explain", "--pool", "p"]).is_err());
        assert!(
            Cli::try_parse_from(["x", "explain", "p/i", "--image-id", "abc", "--pool", "p"])
                .is_err()
        );
        let ok = Cli::try_parse_from([
            "x",
            "explain",
            "--image-id",
            "10a2b3c",
            "--pool",
            "volumes",
            "--namespace",
            "tenant-a",
        ])
        .unwrap();
        match ok.command {
            Some(Command::Explain(a)) => {
                assert_eq!(a.image_id.as_deref(), Some("10a2b3c"));
                assert_eq!(a.pool.as_deref(), Some("volumes"));
                assert_eq!(a.namespace, "tenant-a");
                assert!(a.image.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["x", "explain", "--orphans", "p/i"]).is_err());
        let ok = Cli::try_parse_from([
            "x",
            "explain",
            "volumes/tenant-a/csi-vol-1",
            "--output",
            "json",
        ])
        .unwrap();
        match ok.command {
            Some(Command::Explain(a)) => {
                assert_eq!(
                    a.image.unwrap(),
                    ImageSpec {
                        pool: "volumes".into(),
                        namespace: "tenant-a".into(),
                        image: "csi-vol-1".into()
                    }
                );
                assert_eq!(a.output, OutputFormat::Json);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from([
                "x",
                "--kubernetes.in-cluster",
                "--kubernetes.kubeconfig",
                "k"
            ])
            .is_err()
        );
        let ok = Cli::try_parse_from(["x", "--pools", "volumes,images"]).unwrap();
        assert_eq!(
            ok.sampling.pools,
            Some(vec!["volumes".to_string(), "images".to_string()])
        );
    }
    #[test]
    fn openstack_cloud_comes_from_the_flag_or_os_cloud() {
        let env = |os_cloud: Option<&'static str>| {
            move |k: &str| -> Option<std::ffi::OsString> {
                (k == "OS_CLOUD")
                    .then_some(os_cloud)
                    .flatten()
                    .map(Into::into)
            }
        };
        let cloud = |args: &[&str], os_cloud: Option<&'static str>| {
            let mut argv = vec!["x"];
            argv.extend_from_slice(args);
            let cli = Cli::try_parse_from(argv).expect("flags");
            cli.attribution
                .openstack_cloud(&env(os_cloud))
                .map(|c| c.map(|c| (c.name, c.named_by)))
                .map_err(|e| e.to_string())
        };
        // Neither: no source.
        assert_eq!(cloud(&[], None), Ok(None));
        assert_eq!(cloud(&[], Some("")), Ok(None));
        // OS_CLOUD alone names the cloud, as for openstacksdk.
        assert_eq!(
            cloud(&[], Some("prod")),
            Ok(Some(("prod".into(), "OS_CLOUD")))
        );
        // The flag wins; an empty flag turns the source off.
        assert_eq!(
            cloud(&["--openstack.cloud", "lab"], Some("prod")),
            Ok(Some(("lab".into(), "--openstack.cloud")))
        );
        assert_eq!(cloud(&["--openstack.cloud", ""], Some("prod")), Ok(None));
        // A clouds file needs a cloud, from either.
        assert_eq!(
            cloud(&["--openstack.clouds-file", "c.yaml"], Some("prod")),
            Ok(Some(("prod".into(), "OS_CLOUD")))
        );
        let err = cloud(&["--openstack.clouds-file", "c.yaml"], None).unwrap_err();
        assert!(
            err.contains("--openstack.clouds-file c.yaml") && err.contains("OS_CLOUD"),
            "{err}"
        );
    }

    #[test]
    fn mon_host_and_key_flags() {
        for bad in ["", "10.0.0.1:99999", "mon!", "a=", "[v2:10.0.0.1:3300"] {
            let flag = format!("--ceph.mon-host={bad}");
            let err = Cli::try_parse_from(["x", flag.as_str()]).unwrap_err();
            assert!(err.to_string().contains("--ceph.mon-host"), "{bad}: {err}");
        }
        let cli = Cli::try_parse_from(["x", "--ceph.mon-host", "a=10.0.0.1:6789,b=10.0.0.2:6789"])
            .unwrap();
        let opts = cli.cluster.connect_options_with(None).unwrap();
        assert_eq!(
            opts.mon_host.as_ref().map(|m| m.conf_value()),
            Some("10.0.0.1:6789,10.0.0.2:6789".to_string())
        );
        // The default ceph.conf is skipped only when absent.
        let default_exists = std::path::Path::new(DEFAULT_CEPH_CONFIG).exists();
        assert_eq!(opts.conf_path.is_some(), default_exists);
        assert!(opts.key.is_none());

        // Without --ceph.mon-host, as before: the default ceph.conf, always.
        let opts = Cli::try_parse_from(["x"])
            .unwrap()
            .cluster
            .connect_options_with(None)
            .unwrap();
        assert_eq!(opts.conf_path.as_deref(), Some(DEFAULT_CEPH_CONFIG));
        assert!(opts.mon_host.is_none());

        // A ceph.conf named is read, mon host or not.
        let cli = Cli::try_parse_from(["x", "--ceph.mon-host", "10.0.0.1", "--ceph.config", "/c"])
            .unwrap();
        let opts = cli.cluster.connect_options_with(None).unwrap();
        assert_eq!(opts.conf_path.as_deref(), Some("/c"));

        // The key: from the variable, never in Debug; not with a key file.
        let key = "AQBSdFhjAAAAABAAhSmw1uU1nqzOq6W3W6gG8A==";
        let opts = cli.cluster.connect_options_with(Some(key.into())).unwrap();
        assert!(matches!(opts.key, Some(KeySource::Env(_))));
        assert!(!format!("{opts:?} {cli:?}").contains("AQBS"));
        let cli = Cli::try_parse_from(["x", "--ceph.key-file", "/k"]).unwrap();
        let err = cli
            .cluster
            .connect_options_with(Some(key.into()))
            .unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("--ceph.key-file") && err.contains(KEY_ENV),
            "{err}"
        );
        assert!(!err.contains("AQBS"), "{err}");
        let opts = cli.cluster.connect_options_with(None).unwrap();
        assert_eq!(opts.key, Some(KeySource::File("/k".into())));
    }
}
