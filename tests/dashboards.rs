//! The Grafana dashboards (`dashboards/`): their structure, and every panel
//! and template variable query against a real Prometheus (Debian's
//! `prometheus`, started here on 127.0.0.1 with a port the kernel picks and
//! data in a scratch directory, killed on drop) that scraped the exporter on
//! the seeded test cluster of `make test` and evaluates the project's rules.
//!
//! - `dashboards_are_well_formed`: Grafana JSON structure, uids, variables.
//! - `dashboard_panels_and_variables_return_data`: Prometheus scrapes the
//!   exporter and evaluates the project's rules (unchanged); every panel query
//!   and every template variable query of both dashboards, with the variables
//!   substituted, returns data.
//!
//! The exporter runs with an attachment source, `--attachments.file` of a
//! file this test writes (`images: []`: no image named, so no verdict
//! changes), so that `ceph_rbd_exporter_source_*` are exported and the
//! panels that use them can be checked.

mod common;

use common::artifacts::{ALERTS, RULES, dashboards, panels, path, var_query, variables};
use common::exporter::{start_exporter, write_attachments};
use common::http::encode;
use common::process::{Scratch, wait_for};
use common::prometheus::{JOB, prom_api, prom_query, prometheus_config, start_prometheus};
use common::promql::{parse_label_values, substitute};
use common::scratch_dir;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

// ---------------------------------------------------------------------------
// Static checks of the dashboards.

#[test]
fn dashboards_are_well_formed() {
    let all = dashboards();
    let uids: BTreeSet<String> = all
        .iter()
        .map(|(_, d)| d["uid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        uids,
        BTreeSet::from([
            "ceph-rbd-image".to_string(),
            "ceph-rbd-overview".to_string()
        ]),
        "stable uids"
    );
    for (file, d) in &all {
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 36,
            "{file}: schemaVersion"
        );
        assert!(d["id"].is_null(), "{file}: id must be null for import");
        assert!(!d["title"].as_str().unwrap().is_empty());

        // Variables.
        let vars = variables(d);
        let var = |n: &str| {
            *vars
                .iter()
                .find(|v| v["name"] == n)
                .unwrap_or_else(|| panic!("{file}: no ${n} variable"))
        };
        assert_eq!(var("datasource")["type"], "datasource");
        assert_eq!(var("datasource")["query"], "prometheus");
        for n in ["job", "pool", "namespace", "image"] {
            let v = var(n);
            assert_eq!(v["type"], "query", "{file}: ${n}");
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{file}: ${n}");
            assert!(
                var_query(v).starts_with("label_values("),
                "{file}: ${n} query"
            );
        }

        // Panels.
        let mut ids = BTreeSet::new();
        let mut boxes: Vec<(i64, i64, i64, i64, String)> = Vec::new();
        for p in panels(d) {
            let title = p["title"].as_str().unwrap_or("").to_string();
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{file}: duplicate panel id"
            );
            let g = &p["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_i64().unwrap(),
                g["y"].as_i64().unwrap(),
                g["w"].as_i64().unwrap(),
                g["h"].as_i64().unwrap(),
            );
            assert!(
                x >= 0 && w > 0 && x + w <= 24 && h > 0,
                "{file}: {title}: gridPos"
            );
            for (bx, by, bw, bh, other) in &boxes {
                let overlap = x < bx + bw && bx < &(x + w) && y < by + bh && by < &(y + h);
                assert!(!overlap, "{file}: panels {title} and {other} overlap");
            }
            boxes.push((x, y, w, h, title.clone()));
            if p["type"] == "row" {
                continue;
            }
            assert!(!title.is_empty(), "{file}: panel without title");
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{file}: {title}");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {title}: no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{file}: {title}");
                assert!(!t["expr"].as_str().unwrap().trim().is_empty());
            }
        }
        // Links between the dashboards point at uids that exist.
        let text = serde_json::to_string(d).unwrap();
        for part in text.split("/d/").skip(1) {
            let uid = part.split('/').next().unwrap();
            assert!(
                uids.contains(uid),
                "{file}: link to unknown dashboard {uid}"
            );
        }
    }

    // What each dashboard must show.
    let exprs = |uid: &str| -> String {
        let (_, d) = all.iter().find(|(_, d)| d["uid"] == uid).unwrap();
        panels(d)
            .iter()
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
            .map(|t| t["expr"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let overview = exprs("ceph-rbd-overview");
    for m in [
        "ceph_rbd_pool_images",
        "ceph_rbd_pool_clones",
        "ceph_rbd_pool_watched_images",
        "ceph_rbd_pool_orphaned_watchers",
        "ceph_rbd_pool_stale_locks",
        "ceph_rbd_pool_flatten_pending_images",
        "ceph_rbd_pool_max_clone_depth",
        "ceph_rbd_pool_trash_images",
        "ceph_rbd_watcher_first_seen_timestamp_seconds",
        "ceph_rbd_image_orphaned_watchers",
        "ceph_rbd_image_stale_locks",
        "ceph_rbd_image_clone_depth",
        "ceph_rbd_snapshot_children",
        "ceph_rbd_exporter_up",
        "ceph_rbd_exporter_sample_duration_seconds",
        "ceph_rbd_exporter_last_success_timestamp_seconds",
        "ceph_rbd_exporter_source_up",
        "ceph_rbd_exporter_source_last_success_timestamp_seconds",
    ] {
        assert!(overview.contains(m), "overview does not show {m}");
    }
    let image = exprs("ceph-rbd-image");
    for m in [
        "ceph_rbd_image_watchers",
        "ceph_rbd_watcher_info",
        "ceph_rbd_watcher_first_seen_timestamp_seconds",
        "ceph_rbd_image_stale_locks",
        "ceph_rbd_image_clone_depth",
        "ceph_rbd_image_flatten_pending",
        "ceph_rbd_snapshot_children",
    ] {
        assert!(image.contains(m), "image detail does not show {m}");
    }
}

// ---------------------------------------------------------------------------
// Dashboards against a real Prometheus that scraped the exporter.

/// What the variables are set to for one check of a dashboard.
struct VarRun {
    label: &'static str,
    values: Vec<(&'static str, &'static str)>,
}

#[test]
fn dashboard_panels_and_variables_return_data() {
    let scratch = Scratch(scratch_dir("dashboards"));
    let (exporter, exporter_addr) = start_exporter(&write_attachments(&scratch.0));
    let config = prometheus_config(&exporter_addr, &path(RULES), None);
    let (prom, p) = start_prometheus(&scratch.0, &config);

    // Scraped, and the project's rules loaded and evaluated without errors.
    let ready = wait_for(Duration::from_secs(30), "the first scrapes", || {
        let up = prom_query(&p, "ceph_rbd_exporter_up == 1").ok()?;
        let watchers = prom_query(&p, "ceph_rbd_watcher_info").ok()?;
        (!up.is_empty() && !watchers.is_empty()).then_some(())
    });
    assert!(ready.is_some(), "{}\n{}", prom.tail(30), exporter.tail(10));
    std::thread::sleep(Duration::from_secs(3)); // a few rule evaluations
    let rules = prom_api(&p, "/api/v1/rules").unwrap();
    let mut loaded = 0;
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "rule {} in Prometheus: {r}", r["name"]);
            loaded += 1;
        }
    }
    assert_eq!(loaded, ALERTS.len(), "rules loaded by Prometheus");

    let vars_for = |pool: &'static str, image: &'static str| {
        vec![
            ("datasource", "prometheus"),
            ("job", JOB),
            ("pool", pool),
            ("namespace", ".*"),
            ("image", image),
            ("__rate_interval", "1m"),
            ("__interval", "15s"),
            ("__range", "5m"),
        ]
    };
    // Overview: every query must return data with every variable set to All
    // (Grafana substitutes allValue ".*"), and with pool=volumes.
    // Image detail: no seeded image has everything at once (a watched clone
    // with a flatten reason has no snapshots), so it is checked with TWO
    // images and every query must return data for at least one of them:
    // volumes/volume-flatten-me (watcher, lock, clone depth 1, flatten_queued)
    // and images/8c0f7d1e-glance-base (protected snapshot with 3 children).
    let checks: Vec<(&str, bool, Vec<VarRun>)> = vec![
        (
            "ceph-rbd-overview",
            true,
            vec![
                VarRun {
                    label: "all pools",
                    values: vars_for(".*", ".*"),
                },
                VarRun {
                    label: "pool=volumes",
                    values: vars_for("volumes", ".*"),
                },
            ],
        ),
        (
            "ceph-rbd-image",
            false,
            vec![
                VarRun {
                    label: "volumes/volume-flatten-me",
                    values: vars_for("volumes", "volume-flatten-me"),
                },
                VarRun {
                    label: "images/8c0f7d1e-glance-base",
                    values: vars_for("images", "8c0f7d1e-glance-base"),
                },
            ],
        ),
    ];

    let all = dashboards();
    let mut problems = Vec::new();
    let mut report = Vec::new();
    for (uid, every_run, runs) in &checks {
        let (_, d) = all.iter().find(|(_, d)| d["uid"] == *uid).unwrap();
        for p_ in panels(d) {
            if p_["type"] == "row" {
                continue;
            }
            for t in p_["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                let mut counts = Vec::new();
                for r in runs {
                    let vars: BTreeMap<&str, String> =
                        r.values.iter().map(|(k, v)| (*k, v.to_string())).collect();
                    let q = substitute(expr, &vars);
                    match prom_query(&p, &q) {
                        Ok(series) => counts.push(series.len()),
                        Err(e) => {
                            problems.push(format!(
                                "{uid} / {} / {}: error ({}): {e}\n  {q}",
                                p_["title"], t["refId"], r.label
                            ));
                            counts.push(0);
                        }
                    }
                }
                let ok = if *every_run {
                    counts.iter().all(|&c| c > 0)
                } else {
                    counts.iter().any(|&c| c > 0)
                };
                if !ok {
                    problems.push(format!(
                        "{uid} / {} / {}: no data ({:?} series for {:?})",
                        p_["title"],
                        t["refId"],
                        counts,
                        runs.iter().map(|r| r.label).collect::<Vec<_>>()
                    ));
                }
                report.push(format!(
                    "  {uid} / {} / {}: {counts:?}",
                    p_["title"].as_str().unwrap(),
                    t["refId"].as_str().unwrap()
                ));
            }
        }

        // Template variables: label_values() through the label values API.
        for r in runs {
            let vars: BTreeMap<&str, String> =
                r.values.iter().map(|(k, v)| (*k, v.to_string())).collect();
            for v in variables(d) {
                if v["type"] != "query" {
                    continue;
                }
                let name = v["name"].as_str().unwrap();
                let (selector, label) = parse_label_values(&var_query(v));
                let mut url = format!("/api/v1/label/{label}/values");
                if let Some(sel) = &selector {
                    url.push_str(&format!("?match[]={}", encode(&substitute(sel, &vars))));
                }
                let values: Vec<String> = match prom_api(&p, &url) {
                    Ok(Value::Array(a)) => {
                        a.iter().map(|x| x.as_str().unwrap().to_string()).collect()
                    }
                    other => {
                        problems.push(format!("{uid} ${name} ({}): {other:?}", r.label));
                        continue;
                    }
                };
                report.push(format!("  {uid} ${name} ({}): {values:?}", r.label));
                // A pool with only the default namespace has no namespace label
                // value: Grafana then offers All (".*"), which selects it.
                if values.is_empty() && !(name == "namespace" && v["includeAll"] == true) {
                    problems.push(format!("{uid} ${name} ({}): no values", r.label));
                }
                let chosen = vars[name].as_str();
                if chosen != ".*" && !values.iter().any(|x| x == chosen) {
                    problems.push(format!(
                        "{uid} ${name} ({}): {chosen} is not among {values:?}",
                        r.label
                    ));
                }
            }
        }
        // The namespace variable lists real RBD namespaces.
        let ns_var = variables(d)
            .into_iter()
            .find(|v| v["name"] == "namespace")
            .unwrap();
        let (sel, label) = parse_label_values(&var_query(ns_var));
        let vars: BTreeMap<&str, String> = vars_for("k8s", ".*")
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        let url = format!(
            "/api/v1/label/{label}/values?match[]={}",
            encode(&substitute(&sel.unwrap(), &vars))
        );
        let values = prom_api(&p, &url).unwrap();
        if !values.as_array().unwrap().iter().any(|x| x == "tenant-a") {
            problems.push(format!("{uid} $namespace for pool k8s: {values}"));
        }
    }
    // The watcher tables have a host column even when the exporter cannot
    // name the host (no inventory here: every host is "", which Prometheus
    // drops, so the dashboards fill in "(unknown)").
    for (uid, title) in [
        ("ceph-rbd-overview", "Orphaned watchers"),
        ("ceph-rbd-image", "Watchers"),
    ] {
        let (_, d) = all.iter().find(|(_, d)| d["uid"] == uid).unwrap();
        let panel = panels(d)
            .into_iter()
            .find(|x| x["title"] == title && x["type"] == "table")
            .unwrap_or_else(|| panic!("{uid}: no table {title}"));
        let vars: BTreeMap<&str, String> = vars_for("volumes", "volume-zombie.deleted")
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        for t in panel["targets"].as_array().unwrap() {
            let q = substitute(t["expr"].as_str().unwrap(), &vars);
            let series = prom_query(&p, &q).unwrap();
            if series.is_empty() {
                problems.push(format!(
                    "{uid} / {title}: no watcher of volume-zombie.deleted"
                ));
            }
            for x in &series {
                if x["metric"]["host"] != "(unknown)" {
                    problems.push(format!("{uid} / {title}: host column: {x}"));
                }
            }
        }
    }
    eprintln!(
        "series per query and variable values:\n{}",
        report.join("\n")
    );
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );
}
