//! The alert rules (`alerts/`) and the runbook (`docs/runbook.md`), checked
//! statically and with Debian's `promtool` and `amtool`; and the metric
//! names the rules and the dashboards use, against the real exporter.
//!
//! - `rules_are_complete_documented_and_unit_tested`: the public alert names,
//!   labels and annotations, runbook sections, the tuning table, `promtool
//!   check rules`, `promtool test rules` (a firing and a non-firing case per
//!   alert) and `amtool check-config` of the example routing.
//! - `per_image_alerts_link_to_the_image_page`: every alert about one image
//!   carries `explain_url`, the image's page on the exporter, built from
//!   `ceph_rbd_exporter_web_info` of the alert's job with each name
//!   query-escaped, and the promtool cases check it rendered (with the
//!   exporter's URL, escaped; and empty without it).
//! - `cluster_alerts_page_once_across_replicas`: every alert about the
//!   cluster aggregates the replicas' target labels away over its whole
//!   expression (so that two exporters of one cluster page once), and every
//!   alert about one exporter keeps them and names the replica.
//! - `rules_and_dashboards_use_only_exported_metric_names`: every metric name
//!   in a rule, panel or variable is in the exporter's real /metrics output
//!   (the exporter on the seeded test cluster of `make test`, with an
//!   attachment source, `--attachments.file` of a file this test writes, so
//!   that `ceph_rbd_exporter_source_*` are exported, and `--pools` naming a
//!   pool that does not exist besides the real ones, so that
//!   `ceph_rbd_exporter_sample_errors_total` is; and `--web.external-url`,
//!   so that `ceph_rbd_exporter_web_info` is).

mod common;

use common::artifacts::{
    ALERTS, AM_EXAMPLE, RULE_TESTS, RULES, alert_rules, dashboards, panels, path, read, var_query,
    variables, yaml,
};
use common::exporter::{rbd_pools, start_exporter_with, write_attachments};
use common::http::http_get;
use common::process::{Scratch, run};
use common::promql::{closing, metric_names, variable_promql};
use common::{conf, scratch_dir};
use std::collections::{BTreeMap, BTreeSet};

const RUNBOOK: &str = "docs/runbook.md";
const RUNBOOK_BASE: &str =
    "https://github.com/ceph-rbd-exporter/ceph-rbd-exporter/blob/main/docs/runbook.md";

/// GitHub's anchor for a Markdown heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => Some(c),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

fn code_spans(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, x)| x.to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Static checks of the rules, the runbook and the promtool unit tests.

#[test]
fn rules_are_complete_documented_and_unit_tested() {
    let rules = alert_rules();
    let names: BTreeSet<&str> = rules.iter().map(|r| r.alert.as_str()).collect();
    let expected: BTreeSet<&str> = ALERTS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected, "the public alert names");
    assert_eq!(rules.len(), ALERTS.len(), "each alert once");

    let runbook = read(RUNBOOK);
    let headings: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| {
            l.strip_prefix("### ")
                .or_else(|| l.strip_prefix("## "))
                .or_else(|| l.strip_prefix("# "))
        })
        .map(slug)
        .collect();
    let rules_text = read(RULES);

    for r in &rules {
        let a = &r.alert;
        let severity = ALERTS.iter().find(|(n, _)| n == a).unwrap().1;
        assert_eq!(r.labels["severity"], severity, "{a}: severity");
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                r.annotations[key]
                    .as_str()
                    .is_some_and(|s| !s.trim().is_empty()),
                "{a}: annotation {key}"
            );
        }
        let desc = r.annotations["description"].as_str().unwrap();
        assert!(
            desc.contains("$labels."),
            "{a}: description built from $labels"
        );
        // The values of ceph_rbd_image_flatten_pending and
        // ceph_rbd_watcher_orphaned are always 1; every other alert's value
        // (a count, a depth, an age) is in its text.
        assert_eq!(
            desc.contains("$value"),
            !matches!(
                a.as_str(),
                "CephRBDFlattenPending" | "CephRBDOrphanedWatcher"
            ),
            "{a}: description uses $value"
        );
        let per_watcher = r.expr.contains("ceph_rbd_watcher_");
        let per_image = per_watcher
            || r.expr.contains("ceph_rbd_image_")
            || r.expr.contains("ceph_rbd_snapshot_");
        if per_image {
            for l in ["pool", "namespace", "image"] {
                assert!(
                    desc.contains(&format!("$labels.{l}")),
                    "{a}: description names the {l}"
                );
            }
        }
        // A per-watcher alert names the client to stop, in both texts.
        if per_watcher {
            for key in ["summary", "description"] {
                let text = r.annotations[key].as_str().unwrap();
                for l in ["client", "address", "host"] {
                    assert!(
                        text.contains(&format!("$labels.{l}")),
                        "{a}: {key} names the {l}"
                    );
                }
            }
        }
        assert!(
            desc.contains("First") || desc.contains("first"),
            "{a}: description says what to do first"
        );
        // runbook_url: its own section of docs/runbook.md.
        let url = r.annotations["runbook_url"].as_str().unwrap();
        let anchor = a.to_lowercase();
        assert_eq!(url, format!("{RUNBOOK_BASE}#{anchor}"), "{a}: runbook_url");
        assert!(
            runbook.lines().any(|l| l == format!("## {a}")),
            "{a}: no '## {a}' section in {RUNBOOK}"
        );
        assert!(!r.hold.is_empty(), "{a}: has a `for:`");
    }
    // Durations and conditions the issue fixes.
    let rule = |n: &str| rules.iter().find(|r| r.alert == n).unwrap();
    assert_eq!(rule("CephRBDOrphanedWatcher").hold, "10m");
    // Per orphaned watcher, with the reason aggregated away: a verdict that
    // changes reason keeps one alert and its `for:` running; and with the
    // replicas aggregated away: two exporters page once.
    assert_eq!(
        rule("CephRBDOrphanedWatcher").expr.trim(),
        "max without (reason, instance, pod, container, endpoint, service) (ceph_rbd_watcher_orphaned)"
    );
    assert_eq!(rule("CephRBDStaleLock").hold, "5m");
    assert_eq!(rule("CephRBDFlattenPending").hold, "1h");
    assert_eq!(rule("CephRBDExporterClusterUnreachable").hold, "5m");
    assert_eq!(rule("CephRBDExporterSourceDown").hold, "15m");
    assert_eq!(
        rule("CephRBDExporterSourceDown").expr.trim(),
        "ceph_rbd_exporter_source_up == 0"
    );
    // The orphan page names every reason the exporter can give, in its
    // annotations (the reason is looked up, the labels do not carry it), and
    // the runbook has a section for each; the description gives the
    // commands for that one client.
    let orphan = rule("CephRBDOrphanedWatcher");
    assert!(orphan.labels.get("reason").is_none());
    for key in ["summary", "description"] {
        let text = orphan.annotations[key].as_str().unwrap();
        assert!(
            text.contains("query (printf \"ceph_rbd_watcher_orphaned{"),
            "CephRBDOrphanedWatcher: {key} looks up the current reason"
        );
        assert!(!text.contains("$labels.reason"), "{key}: no reason label");
    }
    let desc = orphan.annotations["description"].as_str().unwrap();
    for command in [
        "ceph osd blocklist add {{ $labels.address }}",
        "/sys/bus/rbd/devices/*/client_addr",
        "grep '[q]emu'",
        "rbd lock rm {{ $spec }} '<lock-id>' {{ $labels.client }}",
        "lock break rbd_header.{{ $labels.image_id }} rbd_lock {{ $labels.client }}",
    ] {
        assert!(desc.contains(command), "CephRBDOrphanedWatcher: {command}");
    }
    for reason in [
        "image_deleted",
        "image_trashed",
        "detached",
        "unexpected_host",
        "deleted_instance",
        "unknown_client",
    ] {
        for key in ["summary", "description"] {
            assert!(
                orphan.annotations[key]
                    .as_str()
                    .unwrap()
                    .contains(&format!("\"{reason}\"")),
                "CephRBDOrphanedWatcher: {key} has no words for reason {reason}"
            );
        }
        if !reason.starts_with("image_") {
            assert!(
                runbook
                    .lines()
                    .any(|l| l == format!("### Reason `{reason}`")),
                "{RUNBOOK}: no '### Reason `{reason}`' section"
            );
        }
    }
    assert!(rule("CephRBDSnapshotChildrenHigh").expr.contains("> 200"));
    assert!(
        rule("CephRBDExporterSampleStale")
            .expr
            .contains("ceph_rbd_exporter_sample_interval_seconds")
    );
    assert!(rule("CephRBDExporterDown").expr.contains("absent("));
    // What the exporter cannot see: a pool without a last success (never
    // sampled, or named in --pools and missing), and errors that keep coming.
    let never = rule("CephRBDExporterPoolNeverSampled");
    assert_eq!(never.hold, "5m");
    for part in [
        "ceph_rbd_exporter_sample_errors_total{pool!=\"\"}",
        "ceph_rbd_exporter_sample_duration_seconds",
        "kind=\"unknown_pool\"",
        "unless on(job, instance, pool)",
        "ceph_rbd_exporter_last_success_timestamp_seconds",
    ] {
        assert!(
            never.expr.contains(part),
            "CephRBDExporterPoolNeverSampled: {part}"
        );
    }
    let errors = rule("CephRBDExporterSampleErrors");
    assert_eq!(errors.hold, "1h");
    assert!(
        errors
            .expr
            .contains("increase(ceph_rbd_exporter_sample_errors_total[30m])")
    );
    for (a, pool_alert) in [
        ("CephRBDExporterPoolNeverSampled", true),
        ("CephRBDExporterSampleErrors", false),
    ] {
        let desc = rule(a).annotations["description"].as_str().unwrap();
        assert!(desc.contains("$labels.pool"), "{a}: names the pool");
        assert_eq!(desc.contains("$labels.kind"), !pool_alert, "{a}: kind");
    }

    // Every internal link of the runbook resolves.
    for part in runbook.split("](#").skip(1) {
        let anchor = part.split(')').next().unwrap();
        assert!(
            headings.contains(anchor),
            "runbook link #{anchor} has no heading"
        );
    }

    // Tunables: every `for:` is marked, and the runbook's table agrees with the file.
    for line in rules_text
        .lines()
        .filter(|l| l.trim_start().starts_with("for:"))
    {
        assert!(line.contains("# tunable:"), "unmarked tunable: {line}");
    }
    let readme = read("README.md");
    let mut documented = BTreeSet::new();
    for line in runbook.lines().filter(|l| l.starts_with("| `CephRBD")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let a = cells[1].trim_matches('`');
        let r = rule(a);
        assert_eq!(
            cells[2].trim_matches('`'),
            r.hold,
            "{RUNBOOK} tuning table: `for` of {a}"
        );
        for span in code_spans(cells[3]) {
            if span.starts_with("--") {
                assert!(
                    readme.contains(&format!("`{span}`")),
                    "{a}: exporter flag {span} is not in README"
                );
            } else {
                assert!(
                    r.expr.contains(&span),
                    "{RUNBOOK} tuning table: {a}'s threshold `{span}` is not in its expr"
                );
            }
        }
        documented.insert(a.to_string());
    }
    assert_eq!(
        documented,
        names.iter().map(|s| s.to_string()).collect(),
        "every alert in the tuning table"
    );

    // promtool unit tests: a firing and a non-firing case per alert, and the
    // rendered annotations at least once.
    let tests = yaml(&path(RULE_TESTS));
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut annotated = BTreeSet::new();
    for t in tests["tests"].as_array().unwrap() {
        for case in t["alert_rule_test"].as_array().unwrap() {
            let a = case["alertname"].as_str().unwrap().to_string();
            let exp = case["exp_alerts"].as_array().cloned().unwrap_or_default();
            if exp.is_empty() {
                quiet.insert(a);
            } else {
                if exp.iter().any(|e| e["exp_annotations"].is_object()) {
                    annotated.insert(a.clone());
                }
                firing.insert(a);
            }
        }
    }
    for a in &names {
        assert!(firing.contains(*a), "{a}: no promtool case where it fires");
        assert!(
            quiet.contains(*a),
            "{a}: no promtool case where it must not fire"
        );
        assert!(
            annotated.contains(*a),
            "{a}: no promtool case checks its annotations"
        );
    }

    // The real tools.
    let out = run("promtool", &["check", "rules", RULES]);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", ALERTS.len())),
        "{out}"
    );
    let out = run("promtool", &["test", "rules", RULE_TESTS]);
    assert!(out.contains("SUCCESS"), "{out}");
    run("amtool", &["check-config", AM_EXAMPLE]);
    eprintln!(
        "rules: {} alerts, promtool check + {} unit test groups pass",
        rules.len(),
        tests["tests"].as_array().unwrap().len()
    );
}

// ---------------------------------------------------------------------------
// Links from the alerts to the exporter's image pages.

/// The alerts about one image (and its watcher, lock, clone or snapshot).
const PER_IMAGE: [&str; 5] = [
    "CephRBDOrphanedWatcher",
    "CephRBDStaleLock",
    "CephRBDCloneDepthExceeded",
    "CephRBDFlattenPending",
    "CephRBDSnapshotChildrenHigh",
];

/// `explain_url` of every per-image alert: the external URL of the
/// exporter of the alert's job (`ceph_rbd_exporter_web_info`, exported when
/// it runs with `--web.external-url`; the first replica by instance), then
/// the query form of the image page with each name query-escaped. Nothing
/// at all when no such series exists (no half URL).
const EXPLAIN_URL: &str = "{{ with query (printf \"ceph_rbd_exporter_web_info{job=%q}\" $labels.job) }}\
     {{ with . | sortByLabel \"instance\" | first | label \"external_url\" }}\
     {{ . }}/images?pool={{ $labels.pool | urlquery }}\
     &namespace={{ $labels.namespace | urlquery }}\
     &image={{ $labels.image | urlquery }}{{ end }}{{ end }}";

#[test]
fn per_image_alerts_link_to_the_image_page() {
    let rules = alert_rules();
    // The list is complete: every alert whose expression is about images,
    // watchers or snapshots is in it, and no other.
    let about_images: BTreeSet<&str> = rules
        .iter()
        .filter(|r| {
            ["ceph_rbd_watcher_", "ceph_rbd_image_", "ceph_rbd_snapshot_"]
                .iter()
                .any(|m| r.expr.contains(m))
        })
        .map(|r| r.alert.as_str())
        .collect();
    assert_eq!(about_images, PER_IMAGE.into(), "the per-image alerts");
    for r in &rules {
        let url = r.annotations.get("explain_url").and_then(|u| u.as_str());
        if !PER_IMAGE.contains(&r.alert.as_str()) {
            assert!(
                url.is_none(),
                "{}: explain_url on a non-image alert",
                r.alert
            );
            continue;
        }
        assert_eq!(url, Some(EXPLAIN_URL), "{}: explain_url", r.alert);
        // The template looks up the job's exporter: the expression must keep
        // `job` (it aggregates only the replicas' target labels away).
        assert!(
            r.expr.contains("max without (") && !r.expr.contains("max without (job"),
            "{}: keeps the job label: {}",
            r.alert,
            r.expr
        );
        assert!(!r.expr.contains(" by ("), "{}: keeps every label", r.alert);
    }

    // The promtool cases render it: for each per-image alert at least once
    // with the exporter's URL and a name that needs escaping, and at least
    // once empty (no ceph_rbd_exporter_web_info for its job).
    let tests = yaml(&path(RULE_TESTS));
    let mut linked = BTreeSet::new();
    let mut escaped = BTreeSet::new();
    let mut empty = BTreeSet::new();
    for t in tests["tests"].as_array().unwrap() {
        for case in t["alert_rule_test"].as_array().unwrap() {
            let a = case["alertname"].as_str().unwrap();
            if !PER_IMAGE.contains(&a) {
                continue;
            }
            for e in case["exp_alerts"].as_array().cloned().unwrap_or_default() {
                let Some(ann) = e["exp_annotations"].as_object() else {
                    continue;
                };
                let url = ann
                    .get("explain_url")
                    .and_then(|u| u.as_str())
                    .unwrap_or_else(|| panic!("{a}: a promtool case without explain_url"));
                if url.is_empty() {
                    empty.insert(a);
                } else {
                    assert!(url.contains("/images?pool="), "{a}: {url}");
                    linked.insert(a);
                    if url.contains('%') || url.contains('+') {
                        escaped.insert(a);
                    }
                }
            }
        }
    }
    for a in PER_IMAGE {
        assert!(
            linked.contains(a),
            "{a}: no promtool case renders explain_url"
        );
        assert!(escaped.contains(a), "{a}: no promtool case escapes a name");
        assert!(empty.contains(a), "{a}: no promtool case without web_info");
    }
}

// ---------------------------------------------------------------------------
// Two replicas of one exporter, scraped by one Prometheus.

/// The labels a scrape gives each replica's target and not the other's, or
/// that describe the scrape rather than the cluster: `instance` (every
/// scrape config), `pod`, `container`, `endpoint` and `service` (a
/// ServiceMonitor or PodMonitor). `job` and our own labels (`namespace` is
/// the RBD namespace) are not among them.
const REPLICA_LABELS: [&str; 5] = ["instance", "pod", "container", "endpoint", "service"];

/// The alerts about one exporter: each replica is judged on its own, and
/// the alert names it.
const PER_REPLICA: [&str; 5] = [
    "CephRBDExporterClusterUnreachable",
    "CephRBDExporterSourceDown",
    "CephRBDExporterSampleStale",
    "CephRBDExporterSampleErrors",
    "CephRBDExporterDown",
];

#[test]
fn cluster_alerts_page_once_across_replicas() {
    let rules = alert_rules();
    for a in PER_REPLICA {
        assert!(rules.iter().any(|r| r.alert == a), "{a}: no such alert");
    }
    for r in &rules {
        let a = &r.alert;
        let expr = r.expr.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = |key: &str| r.annotations[key].as_str().unwrap().to_string();
        if PER_REPLICA.contains(&a.as_str()) {
            assert!(
                !expr.contains("without"),
                "{a}: an exporter alert must stay per replica: {expr}"
            );
            for key in ["summary", "description"] {
                for l in ["instance", "pod"] {
                    assert!(
                        text(key).contains(&format!("$labels.{l}")),
                        "{a}: {key} names the replica's {l}"
                    );
                }
            }
            continue;
        }
        // Any other alert is about the cluster, which every replica sees:
        // `max without (<replica labels>) (<the per-replica condition>)`.
        let shape = format!(
            "{a}: an alert about the cluster must be `max without ({}) (...)` over its \
             whole expression, or be listed in PER_REPLICA: {expr}",
            REPLICA_LABELS.join(", ")
        );
        let rest = expr.strip_prefix("max without (").expect(&shape);
        let (list, body) = rest.split_once(')').expect(&shape);
        let labels: BTreeSet<&str> = list.split(',').map(str::trim).collect();
        for l in REPLICA_LABELS {
            assert!(
                labels.contains(l),
                "{a}: does not aggregate {l} away: {expr}"
            );
        }
        // Only the orphan page drops one of our labels (the reason, which
        // its texts look up).
        let ours: Vec<&&str> = labels
            .iter()
            .filter(|l| !REPLICA_LABELS.contains(l))
            .collect();
        let allowed: &[&str] = if a == "CephRBDOrphanedWatcher" {
            &["reason"]
        } else {
            &[]
        };
        assert!(
            ours.iter().all(|l| allowed.contains(l)),
            "{a}: aggregates away {ours:?}, not a replica's label: {expr}"
        );
        let c: Vec<char> = body.trim_start().chars().collect();
        assert!(c.first() == Some(&'('), "{shape}");
        assert_eq!(closing(&c, 0), c.len() - 1, "{shape}");
        // Its texts cannot name a replica: the alert has none.
        for key in ["summary", "description"] {
            for l in REPLICA_LABELS {
                assert!(
                    !text(key).contains(&format!("$labels.{l}")),
                    "{a}: {key} uses $labels.{l}, which the aggregation removed"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Metric names against the exporter's real output.

#[test]
fn rules_and_dashboards_use_only_exported_metric_names() {
    let scratch = Scratch(scratch_dir("names"));
    // Every pool it would sample anyway, plus one that does not exist: the
    // unknown_pool error makes ceph_rbd_exporter_sample_errors_total appear
    // (an error counter is only exported once it counted something).
    let mut pools = rbd_pools();
    pools.push(format!("no-such-pool-{}", std::process::id()));
    let (_exporter, addr) = start_exporter_with(
        &write_attachments(&scratch.0),
        &conf(),
        &[
            "--pools",
            &pools.join(","),
            "--web.external-url",
            "https://rbd-exporter.example.com:9289",
        ],
    );
    let (_, body) = http_get(&addr, "/metrics");
    let exported: BTreeSet<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    for n in [
        "ceph_rbd_image_orphaned_watchers",
        "ceph_rbd_watcher_orphaned",
        "ceph_rbd_exporter_sample_errors_total",
        "ceph_rbd_exporter_source_up",
        "ceph_rbd_exporter_source_last_success_timestamp_seconds",
        // The dashboards' $exporter_url and the alerts' explain_url.
        "ceph_rbd_exporter_web_info",
    ] {
        assert!(exported.contains(n), "{n} not exported:\n{body}");
    }
    // `up` is Prometheus' own.
    let known = |n: &str| n == "up" || exported.contains(n);

    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut rule_names = BTreeSet::new();
    for r in alert_rules() {
        for n in metric_names(&r.expr) {
            rule_names.insert(n.clone());
            used.entry(n)
                .or_default()
                .insert(format!("{RULES}: {}", r.alert));
        }
    }
    // Guards the extraction itself: the rules use exactly these.
    let expected: BTreeSet<String> = [
        "ceph_rbd_watcher_orphaned",
        "ceph_rbd_image_stale_locks",
        "ceph_rbd_image_clone_depth",
        "ceph_rbd_image_flatten_pending",
        "ceph_rbd_snapshot_children",
        "ceph_rbd_exporter_up",
        "ceph_rbd_exporter_last_success_timestamp_seconds",
        "ceph_rbd_exporter_sample_interval_seconds",
        "ceph_rbd_exporter_sample_duration_seconds",
        "ceph_rbd_exporter_sample_errors_total",
        "ceph_rbd_exporter_source_up",
        "up",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(rule_names, expected, "metric names found in the rules");

    for (file, d) in dashboards() {
        for p in panels(&d) {
            for t in p["targets"].as_array().cloned().unwrap_or_default() {
                for n in metric_names(t["expr"].as_str().unwrap()) {
                    used.entry(n)
                        .or_default()
                        .insert(format!("{file}: {}", p["title"]));
                }
            }
        }
        for v in variables(&d) {
            if v["type"] != "query" {
                continue;
            }
            for n in metric_names(&variable_promql(&var_query(v))) {
                used.entry(n)
                    .or_default()
                    .insert(format!("{file}: ${}", v["name"].as_str().unwrap()));
            }
        }
    }
    let unknown: Vec<String> = used
        .iter()
        .filter(|(n, _)| !known(n))
        .map(|(n, w)| format!("{n} (in {w:?})"))
        .collect();
    assert!(
        unknown.is_empty(),
        "not exported by ceph-rbd-exporter:\n{}",
        unknown.join("\n")
    );
    eprintln!(
        "{} metric names used, all in the exporter's /metrics ({} names there)",
        used.len(),
        exported.len()
    );
}
