//! Command-line flags. Every flag has an environment twin.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;

/// Exports RBD hygiene from a Ceph cluster: orphaned watchers, stale locks,
/// deep clone chains, pinned snapshots and clones pending flatten.
#[derive(Debug, Clone, Parser)]
#[command(name = "ceph-rbd-exporter", version, about, long_about = None)]
pub struct Cli {
    /// Path of ceph.conf.
    #[arg(
        long = "ceph.config",
        env = "CEPH_RBD_EXPORTER_CEPH_CONFIG",
        default_value = "/etc/ceph/ceph.conf",
        global = true
    )]
    pub ceph_config: String,

    /// Ceph client id to connect as, without `client.` (its keyring is found
    /// through ceph.conf).
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

    /// Most RADOS operations in flight at once.
    #[arg(long = "ceph.max-inflight", env = "CEPH_RBD_EXPORTER_CEPH_MAX_INFLIGHT", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096), global = true)]
    pub ceph_max_inflight: u32,

    /// Comma-separated pool names to sample; default: every pool with the
    /// `rbd` application enabled.
    #[arg(long = "pools", env = "CEPH_RBD_EXPORTER_POOLS", value_delimiter = ',', value_parser = parse_pool_name, global = true)]
    pub pools: Option<Vec<String>>,

    /// Most RADOS operations per second, mon commands and omap pages
    /// included, spread evenly over the sample; default: no limit (only
    /// `--ceph.max-inflight` bounds the load).
    #[arg(long = "sample.max-ops-per-second", env = "CEPH_RBD_EXPORTER_SAMPLE_MAX_OPS_PER_SECOND", value_parser = parse_rate, global = true)]
    pub sample_max_ops_per_second: Option<f64>,

    /// How often to sample the cluster, e.g. `60s`, `5m`.
    #[arg(long = "sample.interval", env = "CEPH_RBD_EXPORTER_SAMPLE_INTERVAL", default_value = "60s", value_parser = parse_interval, global = true)]
    pub sample_interval: Duration,

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

    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log.level", env = "CEPH_RBD_EXPORTER_LOG_LEVEL", default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"], global = true)]
    pub log_level: String,

    /// What to do; the default is to serve metrics.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Take one sample and print every image with what was learned, as JSON.
    Dump,
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
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_interval("100ms").is_err());
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
        assert_eq!(ok.sample_max_ops_per_second, Some(0.5));
        assert_eq!(
            Cli::try_parse_from(["x"])
                .unwrap()
                .sample_max_ops_per_second,
            None
        );
        let ok = Cli::try_parse_from(["x", "--pools", "volumes,images"]).unwrap();
        assert_eq!(
            ok.pools,
            Some(vec!["volumes".to_string(), "images".to_string()])
        );
    }
}
