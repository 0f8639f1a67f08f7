//! Prometheus started by the tests (on 127.0.0.1, a port the kernel picks,
//! data in a scratch directory) and its HTTP API.

use super::http::{encode, http_get};
use super::process::{Proc, run};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub const JOB: &str = "ceph-rbd-exporter";

pub fn prom_api(prom: &str, path_and_query: &str) -> Result<Value, String> {
    let (status, body) = http_get(prom, path_and_query);
    let v: Value = serde_json::from_str(&body)
        .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
    if v["status"] == "success" {
        Ok(v["data"].clone())
    } else {
        Err(format!("{}: {}", v["errorType"], v["error"]))
    }
}

/// Instant query: the result vector.
pub fn prom_query(prom: &str, expr: &str) -> Result<Vec<Value>, String> {
    let data = prom_api(prom, &format!("/api/v1/query?query={}", encode(expr)))?;
    Ok(match &data["result"] {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        scalar => vec![scalar.clone()],
    })
}

/// Prometheus on 127.0.0.1 with `config` (a YAML text), killed on drop.
pub fn start_prometheus(dir: &Path, config: &str) -> (Proc, String) {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, config).unwrap();
    run("promtool", &["check", "config", cfg.to_str().unwrap()]);
    let (prom, addr) = Proc::start(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .args([
                "--web.listen-address=127.0.0.1:0",
                // A firing alert is resent every 5 s and valid for 4 times
                // that (20 s) at Alertmanager: longer than a config reload
                // (SIGHUP) leaves Prometheus without Alertmanagers (its
                // discovery updates every 5 s), so a reload does not let a
                // firing alert expire and resolve. A new firing alert and a
                // resolved one are sent at once, whatever this says.
                "--rules.alert.resend-delay=5s",
                "--log.level=info",
            ]),
        "msg=\"Listening on\"",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&addr, "/-/ready").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "prometheus not ready:\n{}",
            prom.tail(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (prom, addr)
}

pub fn prometheus_config(exporter: &str, rules: &Path, alertmanager: Option<&str>) -> String {
    prometheus_config_replicas(&[(exporter, None)], rules, alertmanager)
}

/// The target labels a ServiceMonitor gives every replica besides `pod` and
/// `namespace` ([`KUBE_NAMESPACE`]).
pub const SERVICE_MONITOR_LABELS: [(&str, &str); 3] = [
    ("container", "ceph-rbd-exporter"),
    ("endpoint", "metrics"),
    ("service", "ceph-rbd-exporter"),
];

/// The Kubernetes namespace of the replicas: a ServiceMonitor's `namespace`
/// target label, which collides with the exporter's RBD `namespace` label.
pub const KUBE_NAMESPACE: &str = "ceph-monitoring";

/// [`prometheus_config`] with several exporters in job [`JOB`]: each
/// `(address, Some(pod))` gets the labels a ServiceMonitor would give that
/// pod (`pod`, `namespace` [`KUBE_NAMESPACE`] and [`SERVICE_MONITOR_LABELS`]),
/// as static target labels; and then the job has `honor_labels: true`, as the
/// ServiceMonitor must (`honorLabels: true`): the exporter's own `namespace`
/// wins, and a series of the default RBD namespace (`namespace=""`) keeps
/// none. Without it, Prometheus renames the exporter's to
/// `exported_namespace` and gives every default-namespace series the pod's.
pub fn prometheus_config_replicas(
    exporters: &[(&str, Option<&str>)],
    rules: &Path,
    alertmanager: Option<&str>,
) -> String {
    let mut cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: {JOB}\n",
        rules.display()
    );
    if exporters.iter().any(|(_, pod)| pod.is_some()) {
        cfg.push_str("    honor_labels: true\n");
    }
    cfg.push_str("    static_configs:\n");
    for (exporter, pod) in exporters {
        cfg.push_str(&format!("      - targets: ['{exporter}']\n"));
        if let Some(pod) = pod {
            cfg.push_str(&format!(
                "        labels:\n          pod: '{pod}'\n          namespace: '{KUBE_NAMESPACE}'\n"
            ));
            for (k, v) in SERVICE_MONITOR_LABELS {
                cfg.push_str(&format!("          {k}: '{v}'\n"));
            }
        }
    }
    if let Some(am) = alertmanager {
        cfg.push_str(&format!(
            "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n"
        ));
    }
    cfg
}
