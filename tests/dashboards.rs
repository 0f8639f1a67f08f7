//! The Grafana dashboards (`dashboards/`): their structure, and every panel
//! and template variable query against a real Prometheus (Debian's
//! `prometheus`, started here on 127.0.0.1 with a port the kernel picks and
//! data in a scratch directory, killed on drop) that scraped the exporter on
//! the seeded test cluster of `make test` and evaluates the project's rules.
//!
//! - `dashboards_are_well_formed`: Grafana JSON structure, uids, variables,
//!   the RBD namespace variable (a `(default)` option for the default
//!   namespace) and the image links (pool, namespace and image exactly).
//! - `image_tables_link_to_the_exporter`: the `exporter_url` variable
//!   (from `ceph_rbd_exporter_web_info`), every image-level table's
//!   "Explain on the exporter" link and the image detail's dashboard link,
//!   interpolated as Grafana does for names with a space, `&`, `/`, `<`,
//!   `+` and unicode, read back as the exporter reads its query form.
//! - `dashboard_panels_and_variables_return_data`: Prometheus scrapes the
//!   exporter and evaluates the project's rules (unchanged); every panel query
//!   and every template variable query of both dashboards, with the variables
//!   substituted, returns data; the default namespace can be selected alone;
//!   and every panel shows with two replicas what it shows with one.
//! - `orphan_tables_list_only_the_orphaned_watcher`: an image with two
//!   watchers, one orphaned: the orphan tables list that one only, with how
//!   long it has been held, and its row's link opens the image detail on it.
//!
//! Prometheus scrapes TWO exporters on the cluster, as two replicas of one
//! deployment (job `ceph-rbd-exporter`, each target with the labels a
//! ServiceMonitor gives a pod), so that every check also checks that no
//! panel counts an image, a watcher or a snapshot once per replica.
//!
//! The exporters run with an attachment source, `--attachments.file` of a
//! file this test writes (`images: []`: no image named, so no verdict
//! changes), so that `ceph_rbd_exporter_source_*` are exported and the
//! panels that use them can be checked. They run with `--web.external-url`
//! ([`EXTERNAL_URL`]), so that `ceph_rbd_exporter_web_info` is exported.

mod common;

use common::artifacts::{ALERTS, RULES, dashboards, panels, path, var_query, variables};
use common::exporter::{start_exporter_with, write_attachments};
use common::grafana::{
    NS_REGEX, apply_ns_regex, interpolate_link, percentencode, query_pairs, variable_options,
};
use common::http::http_get;
use common::process::Proc;
use common::process::{Scratch, wait_for};
use common::prometheus::{
    JOB, SERVICE_MONITOR_LABELS, prom_api, prom_query, prometheus_config_replicas, start_prometheus,
};
use common::promql::substitute;
use common::{Holder, TestObject, ceph_cli, conf, scratch_dir};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

/// How every panel selects RBD namespaces: the variable's values are
/// regular expressions (`\Q<name>\E`, `\Q\E` for the default namespace),
/// in a raw string so that their backslashes reach Prometheus.
const NS_MATCHER: &str = "namespace=~`${namespace:pipe}`";
/// The link from a table row to the image detail.
const IMAGE_LINK: &str = "/d/ceph-rbd-image/ceph-rbd-image-detail?var-datasource=${datasource}\
     &var-job=${job}&var-pool=${__data.fields.pool:percentencode}\
     &var-namespace=${__data.fields.ns_re:percentencode}\
     &var-image=${__data.fields.image:percentencode}&${__url_time_range}";
/// The value of the namespace variable for the default namespace.
const DEFAULT_NS: &str = r"\Q\E";
/// The title of the links to the image's page on the exporter.
const EXPLAIN: &str = "Explain on the exporter";
/// The link from a row of an overview table to the image's page on the
/// exporter, in the query form (`/images?pool=&namespace=&image=`): the
/// row's pool and image, and its namespace by name (`ns_name`, a hidden
/// field; no series of the default namespace has it: empty).
const EXPLAIN_ROW_LINK: &str = "${exporter_url:raw}/images?pool=${__data.fields.pool:percentencode}\
     &namespace=${__data.fields.ns_name:percentencode}\
     &image=${__data.fields.image:percentencode}";
/// The same from the image detail (its tables and its dashboard link): the
/// selected pool and image, and `$ns_name`, the image's namespace by name
/// (no value, so empty, in the default namespace).
const EXPLAIN_VAR_LINK: &str = "${exporter_url:raw}/images?pool=${pool:percentencode}\
     &namespace=${ns_name:percentencode}&image=${image:percentencode}";
/// The query of the `exporter_url` variable.
const EXPORTER_URL_QUERY: &str =
    "label_values(ceph_rbd_exporter_web_info{job=\"$job\"}, external_url)";
/// `--web.external-url` of the exporters here (both replicas: one URL).
const EXTERNAL_URL: &str = "https://rbd-exporter.example.com:9289/ceph-rbd";

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
            let function = if n == "namespace" {
                "query_result("
            } else {
                "label_values("
            };
            assert!(var_query(v).starts_with(function), "{file}: ${n} query");
        }
        // The namespace variable: one option per namespace, "(default)" for
        // the default one (Prometheus' label values never list its empty
        // label), each a regex matching that namespace exactly; "All" is .*
        // on the overview, the image detail has no "All" (an image is in
        // one namespace).
        let ns = var("namespace");
        assert_eq!(ns["regex"], NS_REGEX, "{file}: $namespace regex");
        let q = var_query(ns);
        for part in [
            "group by (namespace) (ceph_rbd_pool_images{",
            r#""value", "\\Q$1\\E", "namespace", "(.*)""#,
            r#""namespace", "(default)", "namespace", """#,
        ] {
            assert!(
                q.contains(part),
                "{file}: $namespace query has no {part}: {q}"
            );
        }
        if ns["includeAll"] == true {
            assert_eq!(ns["allValue"], ".*", "{file}: $namespace All");
        }
        let ns_desc = ns["description"].as_str().unwrap();
        assert!(ns_desc.contains("(default)"), "{file}: {ns_desc}");
        assert!(
            d["description"].as_str().unwrap().contains("(default)"),
            "{file}: the dashboard description explains the default namespace"
        );
        for v in &vars {
            let q = var_query(v);
            assert!(
                !q.contains("namespace=~\"$namespace\""),
                "{file}: ${} selects namespaces without the regex values: {q}",
                v["name"]
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
                let expr = t["expr"].as_str().unwrap();
                assert!(!expr.trim().is_empty());
                if expr.contains("namespace=") {
                    assert!(
                        expr.contains(NS_MATCHER) && !expr.contains("namespace=~\""),
                        "{file}: {title}: namespaces selected with {NS_MATCHER}: {expr}"
                    );
                }
            }
            // Links to the image detail carry pool, namespace and image
            // exactly; the namespace as the row's ns_re label (a regex
            // matching only its namespace), hidden in the table.
            let links: Vec<String> = data_links(p)
                .into_iter()
                .filter(|(t, _)| t != EXPLAIN)
                .map(|(t, url)| {
                    assert_eq!(t, "Image detail", "{file}: {title}: link title");
                    url
                })
                .collect();
            for url in &links {
                assert_eq!(url, IMAGE_LINK, "{file}: {title}: link");
            }
            if !links.is_empty() {
                let hidden = p["fieldConfig"]["overrides"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|o| {
                        o["matcher"]["options"] == "ns_re"
                            && o["properties"][0]["id"] == "custom.hidden"
                            && o["properties"][0]["value"] == true
                    });
                assert!(hidden, "{file}: {title}: ns_re is hidden, not excluded");
                for t in targets {
                    let expr = t["expr"].as_str().unwrap();
                    assert!(
                        expr.contains(r#""ns_re", "\\Q$1\\E", "namespace", "(.*)""#),
                        "{file}: {title}: the link's ns_re: {expr}"
                    );
                }
                let excluded = &p["transformations"][0]["options"]["excludeByName"];
                assert!(excluded.get("ns_re").is_none(), "{file}: {title}");
            }
        }
        // Links between the dashboards point at uids that exist.
        let text = serde_json::to_string(d).unwrap();
        assert!(!text.contains("=$__all"), "{file}: a link passes $__all");
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
        "ceph_rbd_watcher_orphaned",
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
        "ceph_rbd_watcher_orphaned",
        "ceph_rbd_image_stale_locks",
        "ceph_rbd_image_clone_depth",
        "ceph_rbd_image_flatten_pending",
        "ceph_rbd_snapshot_children",
    ] {
        assert!(image.contains(m), "image detail does not show {m}");
    }
    // The image detail sums the reasons of its orphaned watchers (one
    // watcher has one reason; an image can have several watchers with
    // different reasons), per exporter, deduplicated across exporters.
    let (_, d) = all
        .iter()
        .find(|(_, d)| d["uid"] == "ceph-rbd-image")
        .unwrap();
    for p in panels(d) {
        for t in p["targets"].as_array().cloned().unwrap_or_default() {
            let expr = t["expr"].as_str().unwrap();
            if expr.contains("ceph_rbd_image_orphaned_watchers") {
                assert!(
                    expr.starts_with(
                        "max(sum by (job, instance) (ceph_rbd_image_orphaned_watchers{"
                    ),
                    "{}: {expr}",
                    p["title"]
                );
            }
        }
    }
    // What the namespace regex gives for query_result()'s lines.
    let line = r#"{namespace="(default)",value="\Q\E"} 1 1700000000000"#;
    assert_eq!(
        apply_ns_regex(line),
        Some(("(default)".into(), DEFAULT_NS.into()))
    );
    let line = r#"{namespace="tenant-a",value="\Qtenant-a\E"} 1 1700000000000"#;
    assert_eq!(
        apply_ns_regex(line),
        Some(("tenant-a".into(), r"\Qtenant-a\E".into()))
    );
}

/// The data links of a panel, (title, url): in its field defaults and in
/// its overrides.
fn data_links(p: &Value) -> Vec<(String, String)> {
    let defaults = p["fieldConfig"]["defaults"]["links"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let overrides = p["fieldConfig"]["overrides"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|o| o["properties"].as_array().cloned().unwrap_or_default())
        .filter(|prop| prop["id"] == "links")
        .flat_map(|prop| prop["value"].as_array().cloned().unwrap_or_default());
    defaults
        .into_iter()
        .chain(overrides)
        .map(|l| {
            let text = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (text("title"), text("url"))
        })
        .collect()
}

/// Whether a table has a row per image, watcher, lock, clone or snapshot:
/// it queries a per-image metric.
fn image_level(p: &Value) -> bool {
    p["type"] == "table"
        && p["targets"].as_array().unwrap().iter().any(|t| {
            let e = t["expr"].as_str().unwrap();
            ["ceph_rbd_watcher_", "ceph_rbd_image_", "ceph_rbd_snapshot_"]
                .iter()
                .any(|m| e.contains(m))
        })
}

/// The exporter's query form read back from a link: (pool, namespace, image).
fn linked_image(url: &str) -> (String, String, String) {
    let pairs = query_pairs(url);
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["pool", "namespace", "image"], "{url}");
    (pairs[0].1.clone(), pairs[1].1.clone(), pairs[2].1.clone())
}

#[test]
fn image_tables_link_to_the_exporter() {
    let all = dashboards();
    let mut tables = BTreeMap::new();
    for (file, d) in &all {
        let uid = d["uid"].as_str().unwrap();
        // The exporter's URL: from ceph_rbd_exporter_web_info of the job,
        // shown, and open to another value (typed, or &var-exporter_url=).
        let v = variables(d)
            .into_iter()
            .find(|v| v["name"] == "exporter_url")
            .unwrap_or_else(|| panic!("{file}: no $exporter_url"));
        assert_eq!(v["type"], "query", "{file}");
        assert_eq!(v["label"], "Exporter URL", "{file}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{file}");
        assert_eq!(var_query(v), EXPORTER_URL_QUERY, "{file}");
        assert_eq!(v["definition"], EXPORTER_URL_QUERY, "{file}");
        assert_eq!(v["skipUrlSync"], false, "{file}: settable by the URL");
        assert_eq!(v["allowCustomValue"], true, "{file}");
        assert_ne!(v["multi"], true, "{file}: one URL");
        assert_ne!(v["includeAll"], true, "{file}: one URL");
        let desc = v["description"].as_str().unwrap();
        assert!(desc.contains("var-exporter_url"), "{file}: {desc}");
        assert!(desc.contains("--web.external-url"), "{file}: {desc}");

        // Every image-level table links each row to the exporter's page.
        let expected = if uid == "ceph-rbd-overview" {
            EXPLAIN_ROW_LINK
        } else {
            EXPLAIN_VAR_LINK
        };
        for p in panels(d).into_iter().filter(|p| image_level(p)) {
            let title = p["title"].as_str().unwrap();
            let explain: Vec<String> = data_links(p)
                .into_iter()
                .filter(|(t, _)| t == EXPLAIN)
                .map(|(_, u)| u)
                .collect();
            assert_eq!(explain, [expected], "{file}: {title}: {EXPLAIN} link");
            tables
                .entry(uid.to_string())
                .or_insert_with(BTreeSet::new)
                .insert(title.to_string());
            if uid != "ceph-rbd-overview" {
                continue;
            }
            // The row's namespace by name: a label_replace of the raw label,
            // before it becomes "(default)"; hidden, not excluded (a link
            // reads only the frame's fields); shown as it is (no mapping, no
            // "no value" text that would replace an empty namespace).
            for t in p["targets"].as_array().unwrap() {
                let e = t["expr"].as_str().unwrap();
                let copy = e
                    .find(r#""ns_name", "$1", "namespace", "(.*)""#)
                    .unwrap_or_else(|| panic!("{file}: {title}: no ns_name: {e}"));
                let default = e.find(r#""namespace", "(default)""#).unwrap();
                assert!(copy < default, "{file}: {title}: ns_name after (default)");
                assert!(e.starts_with("label_replace(label_replace(label_replace("));
            }
            let overrides = p["fieldConfig"]["overrides"].as_array().unwrap();
            assert!(
                overrides
                    .iter()
                    .any(|o| o["matcher"]["options"] == "ns_name"
                        && o["properties"][0]["id"] == "custom.hidden"
                        && o["properties"][0]["value"] == true),
                "{file}: {title}: ns_name is hidden"
            );
            let organize = &p["transformations"][0]["options"];
            assert!(organize["excludeByName"].get("ns_name").is_none());
            assert!(organize["excludeByName"].get("pool").is_none());
            assert!(organize["excludeByName"].get("image").is_none());
            let defaults = &p["fieldConfig"]["defaults"];
            assert!(defaults.get("noValue").is_none(), "{file}: {title}");
            assert_eq!(
                defaults["mappings"],
                serde_json::json!([]),
                "{file}: {title}"
            );
        }
        if uid == "ceph-rbd-image" {
            // The image's namespace by name: no value in the default one.
            let ns = variables(d)
                .into_iter()
                .find(|v| v["name"] == "ns_name")
                .expect("image detail: $ns_name");
            assert_eq!(ns["hide"], 2, "$ns_name is hidden");
            assert_eq!(
                var_query(ns),
                "label_values({__name__=~\"ceph_rbd_image_watchers|ceph_rbd_snapshot_children\", \
                 job=~\"$job\", pool=\"$pool\", namespace=~`${namespace:pipe}`, image=\"$image\"}, \
                 namespace)"
            );
            // And a link at the top of the dashboard.
            let links: Vec<&Value> = d["links"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| l["title"] == EXPLAIN)
                .collect();
            assert_eq!(links.len(), 1, "image detail: dashboard link");
            assert_eq!(links[0]["type"], "link");
            assert_eq!(links[0]["url"], EXPLAIN_VAR_LINK);
        }
    }
    // The tables: every one with a row per image, watcher or snapshot.
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        tables["ceph-rbd-overview"],
        set(&[
            "Orphaned watchers",
            "Stale locks",
            "Deepest clone chains",
            "Clones to flatten",
            "Snapshots with the most children",
        ])
    );
    assert_eq!(
        tables["ceph-rbd-image"],
        set(&[
            "Orphaned watchers",
            "Watchers",
            "Flatten reasons",
            "Snapshots and their children",
        ])
    );

    // Interpolated as Grafana does, for names that need escaping, then read
    // back as the exporter reads its query form: the same names.
    let base = "https://proxy.example.com/ceph-rbd";
    let mut vars = vars("rbd pool", r"\Qtenant a&b/c\E", "vol 1&x/y<z>+ü");
    vars.insert("exporter_url", base.to_string());
    vars.insert("ns_name", "tenant a&b/c".to_string());
    let fields: BTreeMap<&str, String> = [
        ("pool", "rbd pool"),
        ("ns_name", "tenant a&b/c"),
        ("image", "vol 1&x/y<z>+ü"),
        ("namespace", "tenant a&b/c"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    let expected = format!(
        "{base}/images?pool=rbd%20pool&namespace=tenant%20a%26b%2Fc\
         &image=vol%201%26x%2Fy%3Cz%3E%2B%C3%BC"
    );
    let row = interpolate_link(EXPLAIN_ROW_LINK, &vars, &fields);
    assert_eq!(row, expected);
    assert_eq!(interpolate_link(EXPLAIN_VAR_LINK, &vars, &fields), expected);
    let names = (
        "rbd pool".to_string(),
        "tenant a&b/c".to_string(),
        "vol 1&x/y<z>+ü".to_string(),
    );
    assert_eq!(linked_image(&row), names);
    assert!(row.starts_with(&format!("{base}/images?")), "{row}");
    // The default namespace: no ns_name field (no series has the label) or
    // an empty one (some rows have it), and no $ns_name value: namespace=.
    let mut default_fields = fields.clone();
    default_fields.remove("ns_name");
    default_fields.insert("namespace", "(default)".to_string());
    let row = interpolate_link(EXPLAIN_ROW_LINK, &vars, &default_fields);
    assert_eq!(linked_image(&row).1, "", "{row}");
    vars.insert("ns_name", String::new());
    let top = interpolate_link(EXPLAIN_VAR_LINK, &vars, &fields);
    assert_eq!(linked_image(&top).1, "", "{top}");
    // The escaping itself (encodeURIComponent, and !'()* too).
    assert_eq!(
        percentencode("a-_.~!'()* /&=+?#%ü"),
        "a-_.~%21%27%28%29%2A%20%2F%26%3D%2B%3F%23%25%C3%BC"
    );
}

// ---------------------------------------------------------------------------
// Dashboards against a real Prometheus that scraped the exporter.

/// The pods of the two exporters: two replicas of one deployment.
const REPLICAS: [&str; 2] = ["dash-replica-0", "dash-replica-1"];

/// Two exporters on the test cluster (replicas [`REPLICAS`]), and Prometheus
/// scraping both with the project's rules loaded (checked healthy), once
/// each has a sample.
fn start_stack(scratch: &Scratch) -> (Vec<(Proc, String)>, Proc, String) {
    let attachments = write_attachments(&scratch.0);
    let flags = ["--web.external-url", EXTERNAL_URL];
    let (exporter0, addr0) = start_exporter_with(&attachments, &conf(), &flags);
    let (exporter1, addr1) = start_exporter_with(&attachments, &conf(), &flags);
    let config = prometheus_config_replicas(
        &[(&addr0, Some(REPLICAS[0])), (&addr1, Some(REPLICAS[1]))],
        &path(RULES),
        None,
    );
    let (prom, p) = start_prometheus(&scratch.0, &config);

    // Both scraped, and the project's rules loaded and evaluated without errors.
    let ready = wait_for(Duration::from_secs(30), "the first scrapes", || {
        let up = prom_query(&p, "ceph_rbd_exporter_up == 1").ok()?;
        let watchers = prom_query(&p, "count by (pod) (ceph_rbd_watcher_info)").ok()?;
        (up.len() == 2 && watchers.len() == 2).then_some(())
    });
    assert!(ready.is_some(), "{}\n{}", prom.tail(30), exporter0.tail(10));
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
    (vec![(exporter0, addr0), (exporter1, addr1)], prom, p)
}

/// A panel query restricted to the first replica: each selector of the
/// job also selects its pod.
fn one_replica(expr: &str) -> String {
    let job = "job=~\"$job\"";
    assert!(expr.contains(job), "a panel query without {job}: {expr}");
    expr.replace(job, &format!("{job}, pod=\"{}\"", REPLICAS[0]))
}

/// A query's result without the replicas' target labels: each series'
/// labels, and its value unless `values` is false; sorted, duplicates kept
/// (a row per replica is a duplicate row).
fn replica_free(series: &[Value], values: bool) -> Vec<String> {
    let mut rows: Vec<String> = series
        .iter()
        .map(|x| {
            let mut m = x["metric"].clone();
            if let Some(m) = m.as_object_mut() {
                m.remove("instance");
                m.remove("pod");
                for (k, _) in SERVICE_MONITOR_LABELS {
                    m.remove(k);
                }
            }
            let v = if values { &x["value"][1] } else { &Value::Null };
            format!("{m} {v}")
        })
        .collect();
    rows.sort();
    rows
}

/// The variables as Grafana substitutes them: "All" is ".*"; a namespace
/// is `\Q<name>\E`, the default one `\Q\E`.
/// `$exporter_url` is the exporters' external URL, and `$ns_name` the
/// namespace by name (none, an empty value, for the default one).
fn vars(pool: &str, namespace: &str, image: &str) -> BTreeMap<&'static str, String> {
    let ns_name = namespace
        .strip_prefix(r"\Q")
        .and_then(|n| n.strip_suffix(r"\E"))
        .unwrap_or(namespace);
    [
        ("datasource", "prometheus"),
        ("job", JOB),
        ("exporter_url", EXTERNAL_URL),
        ("pool", pool),
        ("namespace", namespace),
        ("ns_name", ns_name),
        ("image", image),
        ("__rate_interval", "1m"),
        ("__interval", "15s"),
        ("__range", "5m"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

/// What the variables are set to for one check of a dashboard.
struct VarRun {
    label: &'static str,
    values: BTreeMap<&'static str, String>,
}

fn run(label: &'static str, pool: &str, namespace: &str, image: &str) -> VarRun {
    VarRun {
        label,
        values: vars(pool, namespace, image),
    }
}

/// A panel of a dashboard, by title and type.
fn panel<'a>(d: &'a Value, title: &str, kind: &str) -> &'a Value {
    panels(d)
        .into_iter()
        .find(|x| x["title"] == title && x["type"] == kind)
        .unwrap_or_else(|| panic!("{}: no {kind} {title}", d["uid"]))
}

/// The series of a panel's only query, with `vars` substituted.
fn panel_series(p: &str, panel: &Value, vars: &BTreeMap<&str, String>) -> Vec<Value> {
    let targets = panel["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{}", panel["title"]);
    let q = substitute(targets[0]["expr"].as_str().unwrap(), vars);
    prom_query(p, &q).unwrap_or_else(|e| panic!("{e}\n{q}"))
}

#[test]
fn dashboard_panels_and_variables_return_data() {
    let scratch = Scratch(scratch_dir("dashboards"));
    let (exporters, _prom, p) = start_stack(&scratch);

    // Overview: every query must return data with every variable set to All
    // (Grafana substitutes allValue ".*"), and with pool=volumes.
    // Image detail: no seeded image has everything at once (a watched clone
    // with a flatten reason has no snapshots), so it is checked with THREE
    // images and every query must return data for at least one of them:
    // volumes/volume-flatten-me (watcher, lock, clone depth 1, flatten_queued),
    // images/8c0f7d1e-glance-base (protected snapshot with 3 children) and
    // volumes/volume-zombie.deleted (an orphaned watcher), each in its pool's
    // default namespace.
    let checks: Vec<(&str, bool, Vec<VarRun>)> = vec![
        (
            "ceph-rbd-overview",
            true,
            vec![
                run("all pools", ".*", ".*", ".*"),
                run("pool=volumes", "volumes", ".*", ".*"),
            ],
        ),
        (
            "ceph-rbd-image",
            false,
            vec![
                run(
                    "volumes/volume-flatten-me",
                    "volumes",
                    DEFAULT_NS,
                    "volume-flatten-me",
                ),
                run(
                    "images/8c0f7d1e-glance-base",
                    "images",
                    DEFAULT_NS,
                    "8c0f7d1e-glance-base",
                ),
                run(
                    "volumes/volume-zombie.deleted",
                    "volumes",
                    DEFAULT_NS,
                    "volume-zombie.deleted",
                ),
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
                // Values that differ between replicas by nature: times,
                // and the exporters' own health.
                let values = !expr.contains("time()")
                    && !expr.contains("ceph_rbd_exporter_")
                    && !expr.contains("up{");
                let mut counts = Vec::new();
                for r in runs {
                    let q = substitute(expr, &r.values);
                    match prom_query(&p, &q) {
                        Ok(series) => {
                            counts.push(series.len());
                            let q1 = substitute(&one_replica(expr), &r.values);
                            let one = prom_query(&p, &q1).unwrap_or_else(|e| panic!("{e}\n{q1}"));
                            let (both, one) =
                                (replica_free(&series, values), replica_free(&one, values));
                            if both != one {
                                problems.push(format!(
                                    "{uid} / {} / {} ({}): two replicas show {both:?}, \
                                     one shows {one:?}\n  {q}",
                                    p_["title"], t["refId"], r.label
                                ));
                            }
                        }
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

        // Template variables, as Grafana computes their options.
        for r in runs {
            for v in variables(d) {
                if v["type"] != "query" {
                    continue;
                }
                let name = v["name"].as_str().unwrap();
                let options = match variable_options(&p, v, &var_query(v), &r.values) {
                    Ok(o) => o,
                    Err(e) => {
                        problems.push(format!("{uid} ${name} ({}): {e}", r.label));
                        continue;
                    }
                };
                report.push(format!("  {uid} ${name} ({}): {options:?}", r.label));
                let chosen = r.values[name].as_str();
                // No namespace label in the default namespace: Grafana's
                // "None", whose value is empty.
                if name == "ns_name" && chosen.is_empty() && options.is_empty() {
                    continue;
                }
                if options.is_empty() {
                    problems.push(format!("{uid} ${name} ({}): no values", r.label));
                }
                if chosen != ".*" && !options.iter().any(|(_, value)| value == chosen) {
                    problems.push(format!(
                        "{uid} ${name} ({}): {chosen} is not among {options:?}",
                        r.label
                    ));
                }
            }
        }
        // The namespace variable lists the pool's RBD namespaces and its
        // default one, each with a value that selects it alone.
        let ns_var = variables(d)
            .into_iter()
            .find(|v| v["name"] == "namespace")
            .unwrap();
        let mut options =
            variable_options(&p, ns_var, &var_query(ns_var), &vars("k8s", ".*", ".*")).unwrap();
        options.sort();
        let expected = vec![
            ("(default)".to_string(), DEFAULT_NS.to_string()),
            ("tenant-a".to_string(), r"\Qtenant-a\E".to_string()),
        ];
        if options != expected {
            problems.push(format!("{uid} $namespace for pool k8s: {options:?}"));
        }
    }

    // The default namespace selected alone: pool k8s has it and tenant-a.
    let (_, overview) = all
        .iter()
        .find(|(_, d)| d["uid"] == "ceph-rbd-overview")
        .unwrap();
    let pools_table = panel(overview, "Pools and RBD namespaces", "table");
    let expr = pools_table["targets"][0]["expr"].as_str().unwrap();
    for (ns, expected) in [
        (DEFAULT_NS, ""),
        (r"\Qtenant-a\E", "tenant-a"),
        (r"\Q\E|\Qtenant-a\E", "both"),
    ] {
        let q = substitute(expr, &vars("k8s", ns, ".*"));
        let got: BTreeSet<String> = prom_query(&p, &q)
            .unwrap()
            .iter()
            .map(|x| x["metric"]["namespace"].as_str().unwrap_or("").to_string())
            .collect();
        let want: BTreeSet<String> = match expected {
            "both" => ["".to_string(), "tenant-a".to_string()].into(),
            one => [one.to_string()].into(),
        };
        if got != want {
            problems.push(format!("namespace={ns} in pool k8s selects {got:?}: {q}"));
        }
    }

    // The links to the exporter's page, with the rows Prometheus gives:
    // each row's link names its own pool, namespace (by name) and image.
    let checked = explain_links_of_rows(&p, &exporters[0].1, overview, &mut problems);
    report.push(format!("  exporter links checked on {checked:?} rows"));
    if !checked.contains_key("in a named namespace") {
        problems.push("no row in an RBD namespace to check its link".into());
    }
    // The image detail's $ns_name: the name of a namespace that has images,
    // nothing for the default one.
    let (_, detail) = all
        .iter()
        .find(|(_, d)| d["uid"] == "ceph-rbd-image")
        .unwrap();
    let ns_var = variables(detail)
        .into_iter()
        .find(|v| v["name"] == "ns_name")
        .unwrap();
    let tenant_images = prom_query(
        &p,
        "ceph_rbd_image_watchers{pool=\"k8s\", namespace=\"tenant-a\"} \
         or ceph_rbd_snapshot_children{pool=\"k8s\", namespace=\"tenant-a\"}",
    )
    .unwrap();
    match tenant_images.first() {
        None => problems.push("no image in k8s/tenant-a to check $ns_name".into()),
        Some(x) => {
            let image = x["metric"]["image"].as_str().unwrap();
            let v = vars("k8s", r"\Qtenant-a\E", image);
            let options = variable_options(&p, ns_var, &var_query(ns_var), &v).unwrap();
            if options != [("tenant-a".to_string(), "tenant-a".to_string())] {
                problems.push(format!("$ns_name of k8s/tenant-a/{image}: {options:?}"));
            }
        }
    }
    let v = vars("volumes", DEFAULT_NS, "volume-flatten-me");
    let options = variable_options(&p, ns_var, &var_query(ns_var), &v).unwrap();
    if !options.is_empty() {
        problems.push(format!("$ns_name in the default namespace: {options:?}"));
    }

    // The watcher tables have a host column even when the exporter cannot
    // name the host (no inventory here: every host is "", which Prometheus
    // drops, so the dashboards fill in "(unknown)").
    for (uid, title) in [
        ("ceph-rbd-overview", "Orphaned watchers"),
        ("ceph-rbd-image", "Orphaned watchers"),
        ("ceph-rbd-image", "Watchers"),
    ] {
        let (_, d) = all.iter().find(|(_, d)| d["uid"] == uid).unwrap();
        let table = panel(d, title, "table");
        let namespace = if uid == "ceph-rbd-overview" {
            ".*"
        } else {
            DEFAULT_NS
        };
        let vars = vars("volumes", namespace, "volume-zombie.deleted");
        for t in table["targets"].as_array().unwrap() {
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

/// The "Explain on the exporter" link of every row of the overview's
/// image-level tables, with every pool, namespace and image (all "All"),
/// interpolated with the row's fields as Grafana's table has them (each
/// label of the row; a label the row lacks is empty), then read back as the
/// exporter reads it: the row's pool and image, and its namespace by name
/// (the one its ns_re selects); and the link opens that image's page on the
/// exporter (fetched from `exporter`: [`EXTERNAL_URL`] stands for a proxy
/// in front of it). Returns the rows checked per table, and how many of
/// them are in a named RBD namespace.
fn explain_links_of_rows(
    p: &str,
    exporter: &str,
    overview: &Value,
    problems: &mut Vec<String>,
) -> BTreeMap<String, usize> {
    let vars = vars(".*", ".*", ".*");
    let mut checked = BTreeMap::new();
    for table in panels(overview).into_iter().filter(|t| image_level(t)) {
        let title = table["title"].as_str().unwrap().to_string();
        for row in panel_series(p, table, &vars) {
            let m = row["metric"].as_object().unwrap();
            let fields: BTreeMap<&str, String> = m
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap().to_string()))
                .collect();
            let url = interpolate_link(EXPLAIN_ROW_LINK, &vars, &fields);
            let ns_re = fields["ns_re"].as_str();
            let ns = &ns_re[2..ns_re.len() - 2];
            let expected = (
                fields["pool"].clone(),
                ns.to_string(),
                fields["image"].clone(),
            );
            if !url.starts_with(&format!("{EXTERNAL_URL}/images?")) {
                problems.push(format!("{title}: {url}"));
            }
            if linked_image(&url) != expected {
                problems.push(format!("{title}: {url} for {expected:?}"));
            }
            let path = url.strip_prefix(EXTERNAL_URL).unwrap_or(&url);
            let (status, body) = http_get(exporter, path);
            let spec = [expected.0.as_str(), ns, expected.2.as_str()]
                .iter()
                .filter(|x| !x.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            let h1 = format!("<h1 id=\"image\">{spec}</h1>");
            if status != 200 || !body.contains(&h1) {
                problems.push(format!("{title}: {url}: {status}, no {h1}"));
            }
            *checked.entry(title.clone()).or_insert(0) += 1;
            if !ns.is_empty() {
                *checked.entry("in a named namespace".into()).or_insert(0) += 1;
            }
        }
    }
    checked
}

// ---------------------------------------------------------------------------
// Two watchers on one image, one of them orphaned.

/// An image this test created, removed on drop (after its holders).
struct TestImage(String);

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = Command::new("rbd")
            .args(["rm", "--no-progress", &self.0])
            .env("CEPH_CONF", conf())
            .output();
    }
}

#[test]
fn orphan_tables_list_only_the_orphaned_watcher() {
    // In pool scratch (nothing else there), a `.deleted` image watched by
    // two clients: a plain one, an orphan (image_deleted), and one that also
    // watches the pool's rbd_mirror_leader, as an rbd-mirror daemon does
    // (a secondary site's daemon holds replayed `.deleted` images open),
    // which the exporter calls legitimate.
    let image = format!("volume-dash-{}.deleted", std::process::id());
    let spec = format!("scratch/{image}");
    let _image = TestImage(spec.clone());
    ceph_cli("rbd", &["create", "--size", "16M", &spec]);
    let _leader = TestObject::create("scratch", "rbd_mirror_leader");
    let (mut orphan, orphan_info) = Holder::start_with_info("scratch", &image, &[]);
    let (mut mirror, mirror_info) =
        Holder::start_with_info("scratch", &image, &["--watch-object", "rbd_mirror_leader"]);
    let client = orphan_info["client"].as_str().unwrap();
    let address = orphan_info["address"].as_str().unwrap();

    let scratch = Scratch(scratch_dir("dashboards-orphans"));
    let (_exporters, _prom, p) = start_stack(&scratch);
    let sel = format!("{{pool=\"scratch\",image=\"{image}\"}}");
    wait_for(
        Duration::from_secs(30),
        "both watchers in Prometheus",
        || {
            // Each replica exports both watchers and the orphan.
            let info = prom_query(&p, &format!("ceph_rbd_watcher_info{sel}")).ok()?;
            let orphaned = prom_query(&p, &format!("ceph_rbd_watcher_orphaned{sel}")).ok()?;
            (info.len() == 2 * REPLICAS.len() && orphaned.len() == REPLICAS.len()).then_some(())
        },
    )
    .expect("two watchers, one orphaned, in both replicas");

    let all = dashboards();
    let dash = |uid: &str| &all.iter().find(|(_, d)| d["uid"] == uid).unwrap().1;
    let check_row = |what: &str, series: &[Value]| {
        assert_eq!(series.len(), 1, "{what}: only the orphan: {series:?}");
        let m = &series[0]["metric"];
        assert_eq!(m["client"], client, "{what}: {m}");
        assert_eq!(m["address"], address, "{what}: {m}");
        assert_eq!(m["reason"], "image_deleted", "{what}: {m}");
        assert_eq!(m["host"], "(unknown)", "{what}: {m}");
        assert_ne!(m["client"], mirror_info["client"], "{what}: {m}");
        // Held for: since the exporter first saw the watch, seconds ago.
        let held: f64 = series[0]["value"][1].as_str().unwrap().parse().unwrap();
        assert!((0.0..120.0).contains(&held), "{what}: held for {held}");
        m.clone()
    };

    // The overview's table: one row, and its link's values.
    let table = panel(dash("ceph-rbd-overview"), "Orphaned watchers", "table");
    let row = check_row(
        "overview",
        &panel_series(&p, table, &vars("scratch", ".*", &image)),
    );
    assert_eq!(row["pool"], "scratch");
    assert_eq!(row["image"], image.as_str());
    assert_eq!(row["namespace"], "(default)", "shown as (default)");
    assert_eq!(row["ns_re"], DEFAULT_NS, "the link's namespace");
    // All images of the pool: still only the orphan of this image.
    let rows = panel_series(&p, table, &vars("scratch", ".*", ".*"));
    check_row("overview, every image of the pool", &rows);

    // The row's link opens the image detail on exactly this image: its
    // variables take the row's pool, ns_re and image.
    let detail = dash("ceph-rbd-image");
    let linked = vars(
        row["pool"].as_str().unwrap(),
        row["ns_re"].as_str().unwrap(),
        row["image"].as_str().unwrap(),
    );
    let table = panel(detail, "Orphaned watchers", "table");
    check_row("image detail", &panel_series(&p, table, &linked));
    for (title, expected) in [("Watchers", "2"), ("Orphaned watchers", "1")] {
        let series = panel_series(&p, panel(detail, title, "stat"), &linked);
        assert_eq!(series.len(), 1, "{title}: {series:?}");
        assert_eq!(series[0]["value"][1], expected, "image detail stat {title}");
    }
    let watchers = panel(detail, "Watchers", "table");
    let listed = prom_query(
        &p,
        &substitute(watchers["targets"][0]["expr"].as_str().unwrap(), &linked),
    )
    .unwrap();
    assert_eq!(listed.len(), 2, "the Watchers table lists both: {listed:?}");

    // Clean release, so that the image can be removed.
    mirror.release();
    orphan.release();
}
