//! The project's monitoring artifacts as the tests read them: the alert rules
//! (`alerts/`), the Grafana dashboards (`dashboards/`) and other files of the
//! repository, YAML parsed through Debian's python3-yaml.

use super::repo;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const RULES: &str = "alerts/ceph-rbd-exporter.rules.yml";
pub const RULE_TESTS: &str = "alerts/ceph-rbd-exporter.test.yml";
pub const AM_EXAMPLE: &str = "alerts/alertmanager.example.yml";

/// The public alert names, with their severity.
pub const ALERTS: [(&str, &str); 11] = [
    ("CephRBDOrphanedWatcher", "critical"),
    ("CephRBDStaleLock", "warning"),
    ("CephRBDCloneDepthExceeded", "warning"),
    ("CephRBDFlattenPending", "warning"),
    ("CephRBDSnapshotChildrenHigh", "warning"),
    ("CephRBDExporterClusterUnreachable", "warning"),
    ("CephRBDExporterSourceDown", "warning"),
    ("CephRBDExporterSampleStale", "warning"),
    ("CephRBDExporterPoolNeverSampled", "warning"),
    ("CephRBDExporterSampleErrors", "warning"),
    ("CephRBDExporterDown", "warning"),
];

pub fn path(rel: &str) -> PathBuf {
    repo().join(rel)
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// YAML as JSON, through Debian's python3-yaml (a dependency of ceph-common).
pub fn yaml(file: &Path) -> Value {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(file)
        .output()
        .expect("/usr/bin/python3");
    assert!(
        out.status.success(),
        "cannot parse {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An alerting rule of the rules file.
pub struct Rule {
    pub alert: String,
    pub expr: String,
    pub hold: String,
    pub labels: Value,
    pub annotations: Value,
}

pub fn alert_rules() -> Vec<Rule> {
    let doc = yaml(&path(RULES));
    let mut rules = Vec::new();
    for group in doc["groups"].as_array().expect("groups") {
        for r in group["rules"].as_array().expect("rules") {
            let alert = r["alert"]
                .as_str()
                .expect("only alerting rules in the rules file");
            rules.push(Rule {
                alert: alert.to_string(),
                expr: r["expr"].as_str().unwrap().to_string(),
                hold: r["for"].as_str().unwrap_or("").to_string(),
                labels: r["labels"].clone(),
                annotations: r["annotations"].clone(),
            });
        }
    }
    rules
}

pub fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path("dashboards")).expect("dashboards/") {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", p.display()));
            out.push((p.file_name().unwrap().to_string_lossy().to_string(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 2, "expected the two dashboards");
    out
}

/// Panels, with the panels of collapsed rows.
pub fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner.iter());
        }
    }
    out
}

pub fn variables(dash: &Value) -> Vec<&Value> {
    dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .collect()
}

pub fn var_query(v: &Value) -> String {
    match &v["query"] {
        Value::String(s) => s.clone(),
        q => q["query"].as_str().unwrap_or_default().to_string(),
    }
}
