//! Alerting end to end, with the real components: the exporter on the seeded
//! test cluster of `make test`, Debian's `prometheus` with the project's
//! rules, and `prometheus-alertmanager` with alerts/alertmanager.example.yml
//! (both started here on 127.0.0.1 with ports the kernel picks and data in a
//! scratch directory, killed on drop), and a webhook receiver in this test.
//!
//! - `alerts_fire_route_and_resolve_end_to_end`: exporter -> Prometheus with the
//!   project's rules -> Alertmanager with alerts/alertmanager.example.yml ->
//!   a webhook receiver in this test. THE `for:` DURATIONS ARE SHORTENED to
//!   5 s in a temporary copy of the rules (and the example's group timings to
//!   1 s), so the run takes about a minute instead of hours; nothing else of
//!   the rules changes. The exporter reads an attachments file this test
//!   writes (`images: []`); at the end the file is broken, so that
//!   `CephRBDExporterSourceDown` fires for `source="file"`, and repaired. It
//!   also reads an inventory naming 127.0.0.1 `e2e-node`, so that the
//!   orphan page carries a host. The `.deleted` image has two watchers: the
//!   orphan, and a client that also watches the pool's `rbd_mirror_leader`
//!   (as an rbd-mirror daemon does, so the exporter calls it legitimate);
//!   exactly one page arrives, naming the orphan's client, address and host
//!   and the commands for that client. The exporter runs with
//!   `--web.external-url`: both pages carry `explain_url`, the image's page
//!   on the exporter, exactly (the locked image's name needs escaping: a
//!   space, `&`, `<`, `>`, `+` and unicode), and each opens that image's
//!   page on the exporter.
//! - `two_replicas_page_once_end_to_end`: TWO exporters on the cluster, both
//!   scraped by one Prometheus in job `ceph-rbd-exporter`, each target with
//!   the labels a ServiceMonitor gives a pod (`pod`, `namespace`, `container`,
//!   `endpoint`, `service`; static target labels here, with `honor_labels`
//!   as the ServiceMonitor's `honorLabels: true`), the rules shortened
//!   as above. A held `.deleted` image: both replicas export its orphan, and
//!   exactly one page arrives, without instance or pod. Replica 1 is killed:
//!   `CephRBDExporterDown` fires naming its instance and pod, while the
//!   orphan page stays one, firing since the same moment (its
//!   `ALERTS_FOR_STATE`), never resolved. A replacement pod (a new exporter,
//!   a new address and pod name, as Kubernetes would give it; Prometheus
//!   reloads its targets on SIGHUP) changes nothing either, and the down
//!   alert resolves. Both replicas run with `--web.external-url`: the one
//!   page carries one `explain_url`.
//! - `pool_never_sampled_fires_for_the_blind_pools_only`: the exporter runs
//!   as a cephx user whose OSD caps cover `volumes` only, with
//!   `--pools volumes,images,<a pool that does not exist>`; Prometheus with
//!   the project's rules (`for:` shortened the same way) fires
//!   `CephRBDExporterPoolNeverSampled` for `images` (kind rados) and the
//!   missing pool (kind unknown_pool), not for `volumes`, while
//!   `ceph_rbd_exporter_up` stays 1 and no other exporter alert fires.

mod common;

use common::alertmanager::Webhook;
use common::artifacts::{ALERTS, AM_EXAMPLE, RULES, read};
use common::exporter::{ATTACHMENTS_OK, start_exporter_with, write_attachments};
use common::http::http_get;
use common::process::{Proc, Scratch, run, wait_for};
use common::prometheus::{
    KUBE_NAMESPACE, SERVICE_MONITOR_LABELS, prom_api, prom_query, prometheus_config,
    prometheus_config_replicas, start_prometheus,
};
use common::{Holder, TestObject, ceph_cli, conf, conf_text_with, rbd_json, scratch_dir};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The `for:` every alert gets in the end-to-end test's copy of the rules.
const E2E_FOR: &str = "5s";

/// `--web.external-url` of the end-to-end exporter: where people would
/// reach it (here a port forward to its default port; nothing fetches it).
const E2E_EXTERNAL_URL: &str = "http://127.0.0.1:9289";

/// Images this test created: locks removed and images deleted on drop (best
/// effort: an image whose killed holder's watch has not expired yet stays).
struct TestImages(Vec<String>);

/// The host the e2e inventory gives 127.0.0.1, where every test client runs.
const E2E_HOST: &str = "e2e-node";

fn write_inventory(dir: &Path) -> PathBuf {
    let p = dir.join("inventory.yaml");
    std::fs::write(
        &p,
        format!("hosts:\n  - {{name: {E2E_HOST}, role: compute, addresses: [127.0.0.1]}}\n"),
    )
    .unwrap();
    p
}

impl Drop for TestImages {
    fn drop(&mut self) {
        for spec in &self.0 {
            let rbd = |args: &[&str]| {
                Command::new("rbd")
                    .args(args)
                    .env("CEPH_CONF", conf())
                    .output()
            };
            if let Ok(out) = rbd(&["lock", "ls", spec, "--format", "json"]) {
                let locks: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                for l in locks.as_array().cloned().unwrap_or_default() {
                    let (id, locker) = (l["id"].as_str(), l["locker"].as_str());
                    if let (Some(id), Some(locker)) = (id, locker) {
                        let _ = rbd(&["lock", "rm", spec, id, locker]);
                    }
                }
            }
            let _ = rbd(&["rm", "--no-progress", spec]);
        }
    }
}

// ---------------------------------------------------------------------------
// End to end: cluster -> exporter -> Prometheus -> Alertmanager -> webhook.

/// The page an alert's `explain_url` opens is the page of the alert's image:
/// fetched from the exporter itself (`E2E_EXTERNAL_URL` stands for a
/// forward to it), 200 with the image spec, HTML-escaped, as its heading.
fn explain_page_is(exporter: &str, alert: &Value, spec_html: &str) {
    let url = alert["annotations"]["explain_url"].as_str().unwrap();
    let path = url.strip_prefix(E2E_EXTERNAL_URL).unwrap();
    let (status, body) = http_get(exporter, path);
    assert_eq!(status, 200, "{url}: {body}");
    let h1 = format!("<h1 id=\"image\">{spec_html}</h1>");
    assert!(body.contains(&h1), "{url}: no {h1} in:\n{body}");
}

/// The rules with every `for:` replaced by `E2E_FOR` (`E2E_DOWN_FOR` for
/// CephRBDExporterDown).
/// The `for:` of CephRBDExporterDown in the shortened rules.
const E2E_DOWN_FOR: &str = "30s";

fn shortened_rules(dir: &Path) -> PathBuf {
    let text = read(RULES);
    let mut changed = 0;
    let mut alert = String::new();
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let indent = &l[..l.len() - l.trim_start().len()];
            if let Some(name) = l.trim_start().strip_prefix("- alert:") {
                alert = name.trim().to_string();
            }
            if l.trim_start().starts_with("for:") {
                changed += 1;
                // Before Prometheus' first scrape `absent(up)` holds, for
                // longer than 5 s on a loaded machine: CephRBDExporterDown
                // keeps a `for:` longer than that start-up gap.
                let d = if alert == "CephRBDExporterDown" {
                    E2E_DOWN_FOR
                } else {
                    E2E_FOR
                };
                format!("{indent}for: {d} # shortened by tests/alerting_e2e.rs")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(changed, ALERTS.len(), "one `for:` per alert");
    let p = dir.join("ceph-rbd-exporter.rules.yml");
    std::fs::write(&p, out.join("\n") + "\n").unwrap();
    run("promtool", &["check", "rules", p.to_str().unwrap()]);
    p
}

/// Alertmanager with the test's config (alerts/alertmanager.example.yml,
/// receivers pointed at `webhook`), data in `dir`, on a port it picks.
fn start_alertmanager(dir: &Path, webhook: &str) -> (Proc, String) {
    let am_config = test_alertmanager_config(dir, webhook);
    Proc::start(
        "alertmanager",
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .args([
                "--web.listen-address=127.0.0.1:0",
                "--cluster.listen-address=",
            ]),
        "msg=\"Listening on\"",
    )
}

/// alerts/alertmanager.example.yml with its receivers pointed at `webhook`
/// and group timings of 1 s.
fn test_alertmanager_config(dir: &Path, webhook: &str) -> PathBuf {
    let text = read(AM_EXAMPLE);
    assert!(
        text.contains("http://127.0.0.1:5001/"),
        "the example's placeholder URL changed"
    );
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let indent = &l[..l.len() - l.trim_start().len()];
            let t = l.trim_start();
            if t.starts_with("group_wait:") {
                format!("{indent}group_wait: 1s")
            } else if t.starts_with("group_interval:") {
                format!("{indent}group_interval: 1s")
            } else {
                l.replace("http://127.0.0.1:5001/", &format!("http://{webhook}/"))
            }
        })
        .collect();
    let p = dir.join("alertmanager.yml");
    std::fs::write(&p, out.join("\n") + "\n").unwrap();
    run("amtool", &["check-config", p.to_str().unwrap()]);
    p
}

#[test]
fn alerts_fire_route_and_resolve_end_to_end() {
    let t0 = Instant::now();
    let pid = std::process::id();
    let deleted = format!("volume-e2e-{pid}.deleted");
    // A name that needs escaping in a URL (explain_url).
    let locked = format!("volume e2e-lock-{pid}&ü<x>+");
    let deleted_spec = format!("volumes/{deleted}");
    let locked_spec = format!("volumes/{locked}");
    let _images = TestImages(vec![deleted_spec.clone(), locked_spec.clone()]);
    ceph_cli("rbd", &["create", "--size", "16M", &deleted_spec]);
    ceph_cli("rbd", &["create", "--size", "16M", &locked_spec]);
    // A stale advisory lock: `rbd lock add` exits, nobody watches the image.
    ceph_cli("rbd", &["lock", "add", &locked_spec, "e2e-cookie"]);
    // An orphaned watcher: a client holding a `.deleted` image open.
    let (mut holder, orphan_client) = Holder::start_with_info("volumes", &deleted, &["--write"]);
    // And a legitimate one on the same image: it also watches the pool's
    // rbd_mirror_leader, as an rbd-mirror daemon does.
    let _leader = TestObject::create("volumes", "rbd_mirror_leader");
    let (mut mirror_holder, mirror_client) = Holder::start_with_info(
        "volumes",
        &deleted,
        &["--watch-object", "rbd_mirror_leader"],
    );
    let client = orphan_client["client"].as_str().unwrap().to_string();
    let address = orphan_client["address"].as_str().unwrap().to_string();
    let mirror = mirror_client["client"].as_str().unwrap().to_string();
    assert_ne!(client, mirror);

    let scratch = Scratch(scratch_dir("e2e"));
    eprintln!(
        "e2e: the `for:` of every alert is shortened to {E2E_FOR} in {} \
         (Alertmanager group_wait/group_interval 1s)",
        scratch.0.display()
    );
    let rules = shortened_rules(&scratch.0);
    let attachments = write_attachments(&scratch.0);
    let inventory = write_inventory(&scratch.0);
    let webhook = Webhook::start();
    let (am, am_addr) = start_alertmanager(&scratch.0, &webhook.addr);
    let (exporter, exporter_addr) = start_exporter_with(
        &attachments,
        &conf(),
        &[
            "--watchers.inventory",
            inventory.to_str().unwrap(),
            "--web.external-url",
            E2E_EXTERNAL_URL,
        ],
    );
    let (prom, p) = start_prometheus(
        &scratch.0,
        &prometheus_config(&exporter_addr, &rules, Some(&am_addr)),
    );
    let diagnostics = || {
        format!(
            "received:\n{}\n{}\n{}\n{}",
            webhook.summary(),
            prom.tail(20),
            am.tail(20),
            exporter.tail(10)
        )
    };
    eprintln!("e2e: stack up after {:.1}s", t0.elapsed().as_secs_f64());

    // 1. The orphaned watcher pages, with the right labels, on the pager
    //    route: the client to stop, its address and its host.
    let orphan = [
        ("alertname", "CephRBDOrphanedWatcher"),
        ("pool", "volumes"),
        ("image", deleted.as_str()),
        ("client", client.as_str()),
        ("address", address.as_str()),
        ("host", E2E_HOST),
    ];
    let (route, fired_at, alert) =
        wait_for(Duration::from_secs(90), "CephRBDOrphanedWatcher", || {
            webhook.find("firing", &orphan)
        })
        .unwrap_or_else(|| panic!("CephRBDOrphanedWatcher never arrived\n{}", diagnostics()));
    eprintln!(
        "e2e: CephRBDOrphanedWatcher for {deleted_spec} after {:.1}s",
        fired_at.duration_since(t0).as_secs_f64()
    );
    assert_eq!(route, "/pager", "critical goes to the pager: {alert}");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert!(
        alert["labels"].get("reason").is_none(),
        "the reason is in the text, not a label: {alert}"
    );
    assert!(
        alert["labels"].get("namespace").is_none(),
        "default namespace: no label {alert}"
    );
    let summary = alert["annotations"]["summary"].as_str().unwrap();
    assert_eq!(
        summary,
        format!(
            "RBD image volumes/{deleted} is still open by {client} ({address}, host {E2E_HOST}) \
             although it is deleted (named *.deleted)"
        )
    );
    let desc = alert["annotations"]["description"].as_str().unwrap();
    for part in [
        format!(
            "Client {client} at {address} (host {E2E_HOST}) still watches image {deleted} in pool volumes"
        ),
        "(reason image_deleted)".to_string(),
        format!("First find the process on {E2E_HOST}:"),
        format!("grep -F '{deleted}'"),
        format!("grep -lF '{address}' /sys/bus/rbd/devices/*/client_addr"),
        format!("`ceph osd blocklist add {address}`"),
        format!("`rbd lock rm volumes/{deleted} '<lock-id>' {client}`"),
    ] {
        assert!(desc.contains(&part), "no {part:?} in: {desc}");
    }
    assert!(
        !desc.contains(&mirror),
        "names the legitimate watcher: {desc}"
    );
    assert!(
        alert["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .ends_with("#cephrbdorphanedwatcher")
    );
    // The image's page on the exporter, from ceph_rbd_exporter_web_info.
    assert_eq!(
        alert["annotations"]["explain_url"],
        format!("{E2E_EXTERNAL_URL}/images?pool=volumes&namespace=&image=volume-e2e-{pid}.deleted"),
        "{alert}"
    );
    explain_page_is(&exporter_addr, &alert, &format!("volumes/{deleted}"));

    // 2. The stale lock warns, on the queue route.
    let stale = [
        ("alertname", "CephRBDStaleLock"),
        ("pool", "volumes"),
        ("image", locked.as_str()),
    ];
    let (route, at, alert) = wait_for(Duration::from_secs(60), "CephRBDStaleLock", || {
        webhook.find("firing", &stale)
    })
    .unwrap_or_else(|| panic!("CephRBDStaleLock never arrived\n{}", diagnostics()));
    eprintln!(
        "e2e: CephRBDStaleLock for {locked_spec} after {:.1}s",
        at.duration_since(t0).as_secs_f64()
    );
    assert_eq!(route, "/queue", "warning goes to the queue: {alert}");
    assert_eq!(alert["labels"]["severity"], "warning");
    // Query-escaped as the exporter's query form reads it: a space is `+`.
    assert_eq!(
        alert["annotations"]["explain_url"],
        format!(
            "{E2E_EXTERNAL_URL}/images?pool=volumes&namespace=\
             &image=volume+e2e-lock-{pid}%26%C3%BC%3Cx%3E%2B"
        ),
        "{alert}"
    );
    let spec = format!("volumes/volume e2e-lock-{pid}&amp;ü&lt;x&gt;+");
    explain_page_is(&exporter_addr, &alert, &spec);

    // 3. The client crashes: its watch expires (~30 s) and the page resolves.
    //    Meanwhile the stale lock is removed, and that warning resolves too.
    holder.kill();
    let killed = Instant::now();
    let locks = rbd_json(&["lock", "ls", &locked_spec]);
    let locker = locks[0]["locker"].as_str().unwrap().to_string();
    ceph_cli("rbd", &["lock", "rm", &locked_spec, "e2e-cookie", &locker]);

    let (route, at, _) = wait_for(Duration::from_secs(60), "CephRBDStaleLock resolved", || {
        webhook.find("resolved", &stale)
    })
    .unwrap_or_else(|| panic!("the removed lock's alert never resolved\n{}", diagnostics()));
    assert_eq!(route, "/queue");
    eprintln!(
        "e2e: CephRBDStaleLock resolved {:.1}s after `rbd lock rm`",
        at.duration_since(killed).as_secs_f64()
    );
    let (route, resolved_at, alert) = wait_for(
        Duration::from_secs(120),
        "CephRBDOrphanedWatcher resolved",
        || webhook.find("resolved", &orphan),
    )
    .unwrap_or_else(|| panic!("the orphan page never resolved\n{}", diagnostics()));
    assert_eq!(route, "/pager");
    assert_eq!(alert["labels"]["client"], client.as_str());
    eprintln!(
        "e2e: CephRBDOrphanedWatcher resolved {:.1}s after the holder was killed",
        resolved_at.duration_since(killed).as_secs_f64()
    );
    // The crashed client left its exclusive lock behind: now a stale lock.
    let crash_lock = [
        ("alertname", "CephRBDStaleLock"),
        ("image", deleted.as_str()),
    ];
    wait_for(
        Duration::from_secs(30),
        "the crashed client's stale lock",
        || webhook.find("firing", &crash_lock),
    )
    .unwrap_or_else(|| {
        panic!(
            "no CephRBDStaleLock for the crashed client's lock\n{}",
            diagnostics()
        )
    });

    // 4. Nothing that should stay quiet spoke, ever: one page for the
    //    .deleted image, the orphan's, never one naming the legitimate
    //    watcher.
    let received = webhook.alerts();
    let paged: BTreeSet<&str> = received
        .iter()
        .filter(|(_, _, a)| {
            a["labels"]["alertname"] == "CephRBDOrphanedWatcher" && a["labels"]["image"] == deleted
        })
        .filter_map(|(_, _, a)| a["labels"]["client"].as_str())
        .collect();
    assert_eq!(
        paged,
        BTreeSet::from([client.as_str()]),
        "pages for {deleted}"
    );
    for (route, _, a) in &received {
        let name = a["labels"]["alertname"].as_str().unwrap_or("?");
        assert_ne!(
            a["labels"]["image"], "volume-attached",
            "an alert names the legitimately watched volumes/volume-attached: {a}"
        );
        assert!(
            !matches!(
                name,
                "CephRBDExporterDown"
                    | "CephRBDExporterClusterUnreachable"
                    | "CephRBDExporterSourceDown"
                    | "CephRBDExporterSampleStale"
                    | "CephRBDExporterPoolNeverSampled"
                    | "CephRBDExporterSampleErrors"
                    | "CephRBDSnapshotChildrenHigh"
            ),
            "{name} fired on a healthy exporter and a seeded cluster: {a}"
        );
        let expected_route = match a["labels"]["severity"].as_str() {
            Some("critical") => "/pager",
            _ => "/queue",
        };
        assert_eq!(route, expected_route, "routing of {a}");
        for k in ["summary", "description", "runbook_url"] {
            assert!(a["annotations"][k].is_string(), "{name}: no {k}");
        }
    }
    // Not even pending, in Prometheus.
    let attached = prom_query(
        &p,
        "count_over_time(ALERTS{image=\"volume-attached\"}[30m])",
    )
    .unwrap();
    assert!(
        attached.is_empty(),
        "ALERTS for volume-attached: {attached:?}"
    );

    // 5. The attachments file is truncated (an inventory job writing half a
    //    file): the source goes down, its verdicts are suspended, and
    //    CephRBDExporterSourceDown warns, naming it. Repaired, it resolves.
    std::fs::write(&attachments, "images:\n  - {image: volume-half-wri").unwrap();
    let broken = Instant::now();
    let source_down = [
        ("alertname", "CephRBDExporterSourceDown"),
        ("source", "file"),
    ];
    let (route, at, alert) = wait_for(Duration::from_secs(60), "CephRBDExporterSourceDown", || {
        webhook.find("firing", &source_down)
    })
    .unwrap_or_else(|| panic!("CephRBDExporterSourceDown never arrived\n{}", diagnostics()));
    eprintln!(
        "e2e: CephRBDExporterSourceDown for source=file {:.1}s after the file broke",
        at.duration_since(broken).as_secs_f64()
    );
    assert_eq!(route, "/queue", "warning goes to the queue: {alert}");
    assert_eq!(alert["labels"]["severity"], "warning");
    let desc = alert["annotations"]["description"].as_str().unwrap();
    assert!(
        desc.contains("attachment source file") && desc.contains("suspended"),
        "{desc}"
    );
    assert!(
        alert["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .ends_with("#cephrbdexportersourcedown")
    );
    // What the runbook says to look at first: the errors, by kind.
    let errors = prom_query(
        &p,
        "ceph_rbd_exporter_source_errors_total{source=\"file\",kind=\"config\"} > 0",
    )
    .unwrap();
    assert_eq!(
        errors.len(),
        1,
        "config errors of the file source: {errors:?}"
    );
    assert!(
        exporter.log.lock().unwrap().iter().any(|l| l
            .contains("attachment source failed; no verdicts from it until it answers")
            && l.contains("source=\"file\"")),
        "no log line \"attachment source failed\" (the alert points at it):\n{}",
        exporter.tail(20)
    );
    std::fs::write(&attachments, ATTACHMENTS_OK).unwrap();
    let repaired = Instant::now();
    let (route, at, _) = wait_for(
        Duration::from_secs(60),
        "CephRBDExporterSourceDown resolved",
        || webhook.find("resolved", &source_down),
    )
    .unwrap_or_else(|| panic!("the source-down warning never resolved\n{}", diagnostics()));
    assert_eq!(route, "/queue");
    eprintln!(
        "e2e: CephRBDExporterSourceDown resolved {:.1}s after the file was repaired",
        at.duration_since(repaired).as_secs_f64()
    );

    // The legitimate watcher lets go cleanly, so the image can be removed.
    mirror_holder.release();

    let received = webhook.alerts();
    let names: BTreeSet<&str> = received
        .iter()
        .filter_map(|(_, _, a)| a["labels"]["alertname"].as_str())
        .collect();
    eprintln!(
        "e2e: done in {:.1}s; {} notifications, alerts seen: {names:?}",
        t0.elapsed().as_secs_f64(),
        webhook.all().len()
    );
}

// ---------------------------------------------------------------------------
// Two replicas of the exporter: one page per problem.

/// The orphan page's firing alerts in Prometheus, and when each became
/// active (`ALERTS_FOR_STATE`: a resolved and re-fired alert has a new one).
fn orphan_alerts(prom: &str, image: &str) -> (Vec<Value>, Vec<String>) {
    let sel = format!("{{alertname=\"CephRBDOrphanedWatcher\",image=\"{image}\"}}");
    let firing = prom_query(prom, &format!("ALERTS{sel}")).unwrap();
    let since = prom_query(prom, &format!("ALERTS_FOR_STATE{sel}"))
        .unwrap()
        .iter()
        .map(|s| s["value"][1].as_str().unwrap().to_string())
        .collect();
    (firing, since)
}

/// Asserts that the webhook got the orphan page of `image` with one label
/// set only (no instance, no pod), and never resolved; returns it.
fn one_orphan_page(webhook: &Webhook, image: &str, diagnostics: &dyn Fn() -> String) -> Value {
    let pages: Vec<Value> = webhook
        .alerts()
        .into_iter()
        .filter(|(_, _, a)| {
            a["labels"]["alertname"] == "CephRBDOrphanedWatcher" && a["labels"]["image"] == image
        })
        .map(|(_, _, a)| a)
        .collect();
    let label_sets: BTreeSet<String> = pages.iter().map(|a| a["labels"].to_string()).collect();
    assert_eq!(
        label_sets.len(),
        1,
        "one orphan page, not one per replica: {label_sets:?}\n{}",
        diagnostics()
    );
    assert!(
        pages.iter().all(|a| a["status"] == "firing"),
        "the orphan page resolved: {pages:?}\n{}",
        diagnostics()
    );
    let labels = &pages[0]["labels"];
    for l in ["instance", "pod", "container", "endpoint", "service"] {
        assert!(labels.get(l).is_none(), "the page carries {l}: {labels}");
    }
    // The default RBD namespace: no label, not the pods' Kubernetes one.
    assert!(
        labels.get("namespace").is_none() && labels.get("exported_namespace").is_none(),
        "the page's namespace: {labels}"
    );
    pages[0].clone()
}

#[test]
fn two_replicas_page_once_end_to_end() {
    let t0 = Instant::now();
    let pid = std::process::id();
    let deleted = format!("volume-ha-{pid}.deleted");
    let spec = format!("volumes/{deleted}");
    let _images = TestImages(vec![spec.clone()]);
    ceph_cli("rbd", &["create", "--size", "16M", &spec]);
    let (mut holder, info) = Holder::start_with_info("volumes", &deleted, &[]);
    let client = info["client"].as_str().unwrap().to_string();

    let scratch = Scratch(scratch_dir("e2e-ha"));
    let rules = shortened_rules(&scratch.0);
    let attachments = write_attachments(&scratch.0);
    let inventory = write_inventory(&scratch.0);
    let inventory_flags = [
        "--watchers.inventory",
        inventory.to_str().unwrap(),
        "--web.external-url",
        E2E_EXTERNAL_URL,
    ];
    let webhook = Webhook::start();
    let (am, am_addr) = start_alertmanager(&scratch.0, &webhook.addr);
    let (replica0, addr0) = start_exporter_with(&attachments, &conf(), &inventory_flags);
    let (mut replica1, addr1) = start_exporter_with(&attachments, &conf(), &inventory_flags);
    let pods = ["e2e-replica-0", "e2e-replica-1", "e2e-replica-2"];
    let config = |targets: &[(&str, Option<&str>)]| {
        prometheus_config_replicas(targets, &rules, Some(&am_addr))
    };
    let (prom, p) = start_prometheus(
        &scratch.0,
        &config(&[(&addr0, Some(pods[0])), (&addr1, Some(pods[1]))]),
    );
    let diagnostics = || {
        format!(
            "received:\n{}\n{}\n{}\n{}",
            webhook.summary(),
            prom.tail(20),
            am.tail(20),
            replica0.tail(10)
        )
    };
    eprintln!(
        "ha: replicas {addr0} ({}) and {addr1} ({}), `for:` shortened to {E2E_FOR}; \
         stack up after {:.1}s",
        pods[0],
        pods[1],
        t0.elapsed().as_secs_f64()
    );

    // 1. Both replicas export the orphan; one page arrives.
    let orphan_series = format!("ceph_rbd_watcher_orphaned{{image=\"{deleted}\"}}");
    let both = wait_for(Duration::from_secs(60), "both replicas' orphan", || {
        let s = prom_query(&p, &orphan_series).ok()?;
        (s.len() == 2).then_some(s)
    })
    .unwrap_or_else(|| panic!("not two orphan series\n{}", diagnostics()));
    let replica_pods: BTreeSet<&str> = both
        .iter()
        .filter_map(|s| s["metric"]["pod"].as_str())
        .collect();
    assert_eq!(replica_pods, BTreeSet::from([pods[0], pods[1]]));
    let orphan = [
        ("alertname", "CephRBDOrphanedWatcher"),
        ("image", deleted.as_str()),
        ("client", client.as_str()),
        ("host", E2E_HOST),
    ];
    let (route, at, _) = wait_for(Duration::from_secs(90), "CephRBDOrphanedWatcher", || {
        webhook.find("firing", &orphan)
    })
    .unwrap_or_else(|| panic!("CephRBDOrphanedWatcher never arrived\n{}", diagnostics()));
    assert_eq!(route, "/pager");
    eprintln!(
        "ha: CephRBDOrphanedWatcher for {spec} after {:.1}s",
        at.duration_since(t0).as_secs_f64()
    );
    // A few more evaluations and group intervals: still one.
    std::thread::sleep(Duration::from_secs(5));
    let page = one_orphan_page(&webhook, &deleted, &diagnostics);
    assert!(
        page["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("(reason image_deleted)"),
        "the reason is looked up across replicas: {page}"
    );
    // Both replicas export ceph_rbd_exporter_web_info: still one link.
    assert_eq!(
        page["annotations"]["explain_url"],
        format!("{E2E_EXTERNAL_URL}/images?pool=volumes&namespace=&image={deleted}"),
        "{page}"
    );
    let (firing, since) = orphan_alerts(&p, &deleted);
    assert_eq!(firing.len(), 1, "ALERTS: {firing:?}");
    assert_eq!(since.len(), 1, "ALERTS_FOR_STATE: {since:?}");

    // 2. Replica 1 dies: its down alert names it; the orphan page stays.
    replica1.child.kill().unwrap();
    replica1.child.wait().unwrap();
    let killed = Instant::now();
    let down = [("alertname", "CephRBDExporterDown"), ("pod", pods[1])];
    let (route, at, alert) = wait_for(Duration::from_secs(90), "CephRBDExporterDown", || {
        webhook.find("firing", &down)
    })
    .unwrap_or_else(|| panic!("CephRBDExporterDown never arrived\n{}", diagnostics()));
    eprintln!(
        "ha: CephRBDExporterDown for {} {:.1}s after it was killed",
        pods[1],
        at.duration_since(killed).as_secs_f64()
    );
    assert_eq!(route, "/queue");
    assert_eq!(alert["labels"]["instance"], addr1.as_str(), "{alert}");
    for (k, v) in SERVICE_MONITOR_LABELS {
        assert_eq!(alert["labels"][k], v, "{alert}");
    }
    assert_eq!(alert["labels"]["namespace"], KUBE_NAMESPACE, "{alert}");
    let summary = alert["annotations"]["summary"].as_str().unwrap();
    assert_eq!(
        summary,
        format!(
            "ceph-rbd-exporter target {addr1} (pod {}) is down or absent",
            pods[1]
        )
    );
    let (firing, still) = orphan_alerts(&p, &deleted);
    assert_eq!(firing.len(), 1, "ALERTS: {firing:?}");
    assert_eq!(still, since, "the orphan alert restarted");
    assert_eq!(
        prom_query(&p, &orphan_series).unwrap().len(),
        1,
        "only replica 0 exports the orphan now"
    );
    one_orphan_page(&webhook, &deleted, &diagnostics);

    // 3. A replacement pod (new address, new name): nothing changes for the
    //    orphan; the dead replica's target is gone, so its alert resolves.
    let (replica2, addr2) = start_exporter_with(&attachments, &conf(), &inventory_flags);
    std::fs::write(
        scratch.0.join("prometheus.yml"),
        config(&[(&addr0, Some(pods[0])), (&addr2, Some(pods[2]))]),
    )
    .unwrap();
    run("kill", &["-HUP", &prom.child.id().to_string()]);
    wait_for(Duration::from_secs(60), "the replacement's orphan", || {
        let s = prom_query(&p, &orphan_series).ok()?;
        (s.len() == 2 && s.iter().any(|x| x["metric"]["pod"] == pods[2])).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the replacement never exported the orphan\n{}",
            diagnostics()
        )
    });
    wait_for(
        Duration::from_secs(60),
        "CephRBDExporterDown resolved",
        || webhook.find("resolved", &down),
    )
    .unwrap_or_else(|| panic!("the down alert never resolved\n{}", diagnostics()));
    std::thread::sleep(Duration::from_secs(5));
    let (firing, still) = orphan_alerts(&p, &deleted);
    assert_eq!(firing.len(), 1, "ALERTS: {firing:?}");
    assert_eq!(still, since, "the orphan alert restarted");
    one_orphan_page(&webhook, &deleted, &diagnostics);
    let others = prom_query(
        &p,
        "ALERTS{alertname=~\"CephRBDExporter.*\",alertstate=\"firing\"}",
    )
    .unwrap();
    assert!(
        others.is_empty(),
        "exporter alerts with healthy replicas: {others:?}"
    );

    holder.release();
    drop(replica2);
    eprintln!(
        "ha: done in {:.1}s; {} notifications",
        t0.elapsed().as_secs_f64(),
        webhook.all().len()
    );
}

// ---------------------------------------------------------------------------
// What the exporter cannot see: pools it never sampled.

/// A cephx user this test made, removed on drop.
struct CephUser(String);

impl Drop for CephUser {
    fn drop(&mut self) {
        let _ = Command::new("ceph")
            .args(["auth", "rm", &self.0])
            .env("CEPH_CONF", conf())
            .output();
    }
}

/// Prometheus' alerts of `name` in `state`, by pool.
fn alerts_by_pool(prom: &str, name: &str, state: &str) -> Vec<(String, Value)> {
    let data = prom_api(prom, "/api/v1/alerts").unwrap();
    data["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == name && a["state"] == state)
        .map(|a| (a["labels"]["pool"].as_str().unwrap_or("").to_string(), a))
        .collect()
}

#[test]
fn pool_never_sampled_fires_for_the_blind_pools_only() {
    let t0 = Instant::now();
    let pid = std::process::id();
    let scratch = Scratch(scratch_dir("never-sampled"));
    // The documented caps, but with the OSD caps limited to one pool: the
    // mistake that leaves a pool blind while everything else looks healthy.
    let user = format!("rbd-exporter-e2e-{pid}");
    let entity = format!("client.{user}");
    let _user = CephUser(entity.clone());
    let keyring = ceph_cli(
        "ceph",
        &[
            "auth",
            "get-or-create",
            &entity,
            "mon",
            "profile rbd",
            "osd",
            "profile rbd-read-only pool=volumes",
        ],
    );
    let keyring_path = scratch.0.join("keyring");
    std::fs::write(&keyring_path, keyring).unwrap();
    let ceph_conf = scratch.0.join("ceph.conf");
    let text = std::fs::read_to_string(conf()).unwrap();
    std::fs::write(
        &ceph_conf,
        conf_text_with(&text, keyring_path.to_str().unwrap(), None),
    )
    .unwrap();
    // And a typo in --pools.
    let missing = format!("volumes-typo-{pid}");
    let pools = format!("volumes,images,{missing}");

    let rules = shortened_rules(&scratch.0);
    let attachments = write_attachments(&scratch.0);
    // Waits for `ceph_rbd_exporter_up 1`: volumes samples, so up is 1
    // although two of the three pools are blind.
    let (exporter, exporter_addr) = start_exporter_with(
        &attachments,
        ceph_conf.to_str().unwrap(),
        &["--ceph.user", &user, "--pools", &pools],
    );
    let (prom, p) = start_prometheus(&scratch.0, &prometheus_config(&exporter_addr, &rules, None));
    let diagnostics = || format!("{}\n{}", prom.tail(20), exporter.tail(10));
    eprintln!(
        "never-sampled: exporter as {entity} (osd caps: volumes only), --pools {pools}; \
         `for:` shortened to {E2E_FOR}; stack up after {:.1}s",
        t0.elapsed().as_secs_f64()
    );

    // The two blind pools fire, each on its own.
    let expected: BTreeSet<String> = ["images".to_string(), missing.clone()].into();
    let firing = wait_for(
        Duration::from_secs(60),
        "CephRBDExporterPoolNeverSampled for images and the missing pool",
        || {
            let f = alerts_by_pool(&p, "CephRBDExporterPoolNeverSampled", "firing");
            let pools: BTreeSet<String> = f.iter().map(|(pool, _)| pool.clone()).collect();
            (pools == expected).then_some(f)
        },
    )
    .unwrap_or_else(|| {
        panic!(
            "CephRBDExporterPoolNeverSampled never fired for {expected:?}: {:?}\n{}",
            prom_api(&p, "/api/v1/alerts"),
            diagnostics()
        )
    });
    eprintln!(
        "never-sampled: CephRBDExporterPoolNeverSampled firing for {expected:?} after {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    for (pool, a) in &firing {
        assert_eq!(a["labels"]["severity"], "warning", "{a}");
        let desc = a["annotations"]["description"].as_str().unwrap();
        assert!(
            desc.contains(&format!("pool {pool} successfully")),
            "{desc}"
        );
        assert!(
            a["annotations"]["runbook_url"]
                .as_str()
                .unwrap()
                .ends_with("#cephrbdexporterpoolneversampled")
        );
    }
    // What the runbook says to look at first: the errors of the pool, by kind.
    for (pool, kind) in [("images", "rados"), (missing.as_str(), "unknown_pool")] {
        let q = format!(
            "ceph_rbd_exporter_sample_errors_total{{pool=\"{pool}\",kind=\"{kind}\"}} >= 3"
        );
        assert_eq!(prom_query(&p, &q).unwrap().len(), 1, "{q}");
    }
    // A few more evaluations: volumes stays quiet, and so does every other
    // exporter alert (up is 1 throughout; no pool has a stale last success).
    std::thread::sleep(Duration::from_secs(8));
    let up = prom_query(&p, "min_over_time(ceph_rbd_exporter_up[10m])").unwrap();
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["value"][1], "1", "up stayed 1: {up:?}");
    let never = prom_query(
        &p,
        "ALERTS{alertname=\"CephRBDExporterPoolNeverSampled\",pool=\"volumes\"}",
    )
    .unwrap();
    assert!(never.is_empty(), "volumes samples fine: {never:?}");
    // Not even pending. (CephRBDExporterDown is left out: before
    // Prometheus' first scrape `absent(up)` holds for a few seconds, as long
    // as the shortened `for:`; it says nothing about the pools.)
    let others = prom_query(
        &p,
        "count_over_time(ALERTS{alertname=~\"CephRBDExporter\
         (ClusterUnreachable|SampleStale|SampleErrors|SourceDown)\"}[10m])",
    )
    .unwrap();
    assert!(
        others.is_empty(),
        "other exporter alerts on a reachable cluster: {others:?}\n{}",
        diagnostics()
    );
    eprintln!("never-sampled: done in {:.1}s", t0.elapsed().as_secs_f64());
}
