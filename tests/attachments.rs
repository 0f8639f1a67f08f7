//! End to end: the real test cluster, holder clients, and the exporter
//! asking OpenStack (Keystone, Cinder, Nova, Glance) and Kubernetes APIs
//! served by this test, over real HTTP with pagination. Checks the orphan
//! verdicts each source leads to on /metrics, that a source that stops
//! answering is reported down and stops contributing verdicts, and that
//! the host names it gave stay on the watcher series for
//! `--watchers.host-retention`, then go.
//!
//! The API bodies follow the shapes of the official API references
//! (Keystone v3 token from tests/data/sources/keystone-token.json; Cinder
//! v3 volumes/detail, Nova v2.1 servers/detail, Glance v2 images,
//! Kubernetes PersistentVolumeList, VolumeAttachmentList and NodeList)
//! with only the fields that matter here.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const U1: &str = "11111111-0000-4000-8000-000000000001"; // available, watched: detached
const U2: &str = "11111111-0000-4000-8000-000000000002"; // in-use on compute-1: fine
const U3: &str = "11111111-0000-4000-8000-000000000003"; // in-use on compute-2: unexpected_host
const U4: &str = "11111111-0000-4000-8000-000000000004"; // multi-attach on 1 and 2: fine
const LIVE_VM: &str = "22222222-0000-4000-8000-000000000001"; // on compute-1
const GONE_VM: &str = "22222222-0000-4000-8000-000000000009"; // not in Nova
const TOKEN: &str = "gAAAAAB-test-token";
const K8S_TOKEN: &str = "k8s-bearer-token";

/// A tiny HTTP/1.1 server: one thread, one request per connection.
struct ApiServer {
    base: String,
    /// Request lines seen (`GET /path?query`), with the Authorization or
    /// X-Auth-Token header value.
    seen: Arc<Mutex<Vec<(String, String)>>>,
    /// While true, every request gets a 503.
    failing: Arc<AtomicBool>,
}

type Route = Box<dyn Fn(&str, &str, &str) -> (u16, Vec<(String, String)>, String) + Send>;

impl ApiServer {
    fn start(route: Route) -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicBool::new(false));
        let (seen2, failing2) = (seen.clone(), failing.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut length = 0usize;
                let mut auth = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let (name, value) = line.split_once(':').unwrap_or((&line, ""));
                    let value = value.trim().to_string();
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.parse().unwrap_or(0),
                        "authorization" | "x-auth-token" => auth = value,
                        _ => {}
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let mut parts = request_line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let target = parts.next().unwrap_or("").to_string();
                seen2
                    .lock()
                    .unwrap()
                    .push((format!("{method} {target}"), auth));
                let (status, headers, text) = if failing2.load(Ordering::SeqCst) {
                    (503, Vec::new(), "{\"error\": \"maintenance\"}".to_string())
                } else {
                    route(&method, &target, &String::from_utf8_lossy(&body))
                };
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                    text.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&text);
                let _ = stream.write_all(out.as_bytes());
            }
        });
        ApiServer {
            base,
            seen,
            failing,
        }
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

fn volume(id: &str, status: &str, hosts: &[&str], multiattach: bool) -> Value {
    let attachments: Vec<Value> = hosts
        .iter()
        .map(|h| {
            json!({"server_id": LIVE_VM, "attachment_id": format!("a-{id}-{h}"), "host_name": h,
                   "volume_id": id, "device": "/dev/vdb", "id": id, "attached_at": "2030-11-28T06:30:02.000000"})
        })
        .collect();
    json!({"id": id, "name": format!("vol-{}", &id[id.len() - 1..]), "status": status,
           "attachments": attachments, "multiattach": multiattach, "size": 1,
           "os-vol-host-attr:host": "controller-1@rbd-1#rbd-1", "bootable": "false"})
}

fn openstack_api() -> ApiServer {
    let base = Arc::new(Mutex::new(String::new()));
    let b = base.clone();
    let route: Route = Box::new(move |method, target, body| {
        let base = b.lock().unwrap().clone();
        let ok = |v: Value| (200, Vec::new(), v.to_string());
        match (method, target.split('?').next().unwrap()) {
            ("POST", "/identity/v3/auth/tokens") => {
                let req: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                if req.pointer("/auth/identity/password/user/password") != Some(&json!("s3cret")) {
                    return (401, Vec::new(), "{}".into());
                }
                let token =
                    std::fs::read_to_string(repo().join("tests/data/sources/keystone-token.json"))
                        .unwrap()
                        .replace("{{BASE}}", &base);
                (201, vec![("X-Subject-Token".into(), TOKEN.into())], token)
            }
            ("GET", path) if path.ends_with("/volumes/detail") => {
                if target.contains("marker=") {
                    ok(
                        json!({"volumes": [volume(U3, "in-use", &["compute-2"], false),
                                          volume(U4, "in-use", &["compute-1", "compute-2"], true)]}),
                    )
                } else {
                    ok(json!({"volumes": [volume(U1, "available", &[], false),
                                          volume(U2, "in-use", &["compute-1"], false)],
                              "volumes_links": [{"rel": "next",
                                  "href": format!("http://cinder-internal.invalid:8776/v3/p/volumes/detail?all_tenants=1&marker={U2}")}]}))
                }
            }
            ("GET", path) if path.ends_with("/servers/detail") => ok(json!({"servers": [
                {"id": LIVE_VM, "name": "web-1", "status": "ACTIVE",
                 "OS-EXT-SRV-ATTR:host": "compute-1", "OS-EXT-SRV-ATTR:hypervisor_hostname": "compute-1.example.org"}
            ]})),
            ("GET", path) if path.ends_with("/v2/images") => {
                ok(json!({"images": [], "first": "/v2/images", "schema": "/v2/schemas/images"}))
            }
            _ => (404, Vec::new(), "{}".into()),
        }
    });
    let server = ApiServer::start(route);
    *base.lock().unwrap() = server.base.clone();
    server
}

fn kubernetes_api() -> ApiServer {
    let pv = |name: &str, image: &str, rwx: bool| {
        json!({"metadata": {"name": name},
               "spec": {"accessModes": [if rwx {"ReadWriteMany"} else {"ReadWriteOnce"}],
                        "capacity": {"storage": "1Gi"},
                        "claimRef": {"namespace": "shop", "name": format!("data-{name}")},
                        "csi": {"driver": "rbd.csi.ceph.com", "volumeHandle": format!("0001-0024-x-{name}"),
                                "volumeAttributes": {"clusterID": "x", "pool": "xa-k8s",
                                                     "radosNamespace": "tenant", "imageName": image}}},
               "status": {"phase": "Bound"}})
    };
    let route: Route = Box::new(move |_method, target, _body| {
        let ok = |v: Value| (200, Vec::new(), v.to_string());
        if target.contains("watch=true") {
            // Nothing changes: a watch ends with a bookmark (this server
            // answers one request at a time), and is made again.
            std::thread::sleep(Duration::from_millis(300));
            let bookmark = json!({"type": "BOOKMARK", "object": {"kind": "Status", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": "7"}}});
            return (200, Vec::new(), format!("{bookmark}\n"));
        }
        match target.split('?').next().unwrap() {
            "/api/v1/persistentvolumes" => {
                if target.contains("continue=page2") {
                    ok(
                        json!({"kind": "PersistentVolumeList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
                              "items": [pv("pvc-k2", "csi-vol-k2", false)]}),
                    )
                } else {
                    ok(json!({"kind": "PersistentVolumeList", "apiVersion": "v1",
                              "metadata": {"continue": "page2", "resourceVersion": "7"},
                              "items": [pv("pvc-k1", "csi-vol-k1", false)]}))
                }
            }
            "/apis/storage.k8s.io/v1/volumeattachments" => ok(json!({
                "kind": "VolumeAttachmentList", "apiVersion": "storage.k8s.io/v1", "metadata": {"resourceVersion": "7"},
                "items": [{"metadata": {"name": "csi-abc"},
                           "spec": {"attacher": "rbd.csi.ceph.com", "nodeName": "compute-1",
                                    "source": {"persistentVolumeName": "pvc-k1"}},
                           "status": {"attached": true}}]})),
            "/api/v1/nodes" => ok(json!({
                "kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
                "items": [{"metadata": {"name": "compute-1"},
                           "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                                    {"type": "Hostname", "address": "compute-1"}]}}]})),
            _ => (404, Vec::new(), "{}".into()),
        }
    });
    ApiServer::start(route)
}

struct Layout {
    _holders: Vec<Holder>,
}

impl Drop for Layout {
    fn drop(&mut self) {
        self._holders.clear();
        for p in ["xa-volumes", "xa-vms", "xa-k8s"] {
            let _ = std::panic::catch_unwind(|| remove_pool(p));
        }
    }
}

fn layout() -> Layout {
    for p in ["xa-volumes", "xa-vms", "xa-k8s"] {
        ceph_cli("ceph", &["osd", "pool", "create", p, "8"]);
        ceph_cli("rbd", &["pool", "init", p]);
    }
    ceph_cli("rbd", &["namespace", "create", "xa-k8s/tenant"]);
    let mut holders = Vec::new();
    for u in [U1, U2, U3, U4] {
        let name = format!("volume-{u}");
        ceph_cli(
            "rbd",
            &["create", "--size", "8M", &format!("xa-volumes/{name}")],
        );
        holders.push(Holder::start("xa-volumes", &name, &[]));
    }
    holders.push(Holder::start("xa-volumes", &format!("volume-{U4}"), &[]));
    for vm in [LIVE_VM, GONE_VM] {
        let name = format!("{vm}_disk");
        ceph_cli(
            "rbd",
            &["create", "--size", "8M", &format!("xa-vms/{name}")],
        );
        holders.push(Holder::start("xa-vms", &name, &[]));
    }
    for name in ["csi-vol-k1", "csi-vol-k2"] {
        ceph_cli(
            "rbd",
            &["create", "--size", "8M", &format!("xa-k8s/tenant/{name}")],
        );
        holders.push(Holder::start("xa-k8s", name, &["--namespace", "tenant"]));
    }
    Layout { _holders: holders }
}

fn orphan_series(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter(|l| l.starts_with("ceph_rbd_image_orphaned_watchers{"))
        .filter(|l| l.contains("pool=\"xa-"))
        .map(|l| {
            let label = |k: &str| {
                l.split(&format!("{k}=\""))
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_string()
            };
            (label("image"), label("reason"))
        })
        .collect()
}

/// The `host` label of the watcher of volume U2 (held from 127.0.0.1,
/// Kubernetes node compute-1's InternalIP).
fn u2_host(body: &str) -> Option<String> {
    let image = format!("volume-{U2}");
    metrics::series(body, "ceph_rbd_watcher_info")
        .into_iter()
        .find(|(l, _)| l.get("image") == Some(&image))
        .map(|(l, _)| l["host"].clone())
}

/// When pool xa-volumes was last sampled: a new value is a new sample.
fn sampled_at(body: &str) -> Option<f64> {
    metric_value(
        body,
        "ceph_rbd_exporter_last_success_timestamp_seconds{pool=\"xa-volumes\"}",
    )
}

/// How long hosts outlive their source in this test.
const HOST_RETENTION_SECONDS: u64 = 20;

#[test]
fn openstack_and_kubernetes_verdicts_end_to_end() {
    let _layout = layout();
    let openstack = openstack_api();
    let kubernetes = kubernetes_api();
    let dir = scratch_dir("attachments-e2e");
    let clouds = dir.join("clouds.yaml");
    std::fs::write(
        &clouds,
        format!(
            "clouds:\n  test:\n    auth:\n      auth_url: {}/identity/v3\n      username: rbd-exporter\n      password: s3cret\n      project_name: admin\n      user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n    interface: public\n",
            openstack.base
        ),
    )
    .unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: t\ncontexts:\n- name: t\n  context: {{cluster: c, user: u}}\nclusters:\n- name: c\n  cluster: {{server: '{}'}}\nusers:\n- name: u\n  user: {{token: {K8S_TOKEN}}}\n",
            kubernetes.base
        ),
    )
    .unwrap();

    let exporter = Exporter::start(&[
        "--pools",
        "xa-volumes,xa-vms,xa-k8s",
        "--openstack.cloud",
        "test",
        "--openstack.clouds-file",
        clouds.to_str().unwrap(),
        "--kubernetes.kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--attachments.refresh-interval",
        "1s",
        "--watchers.host-retention",
        &format!("{HOST_RETENTION_SECONDS}s"),
    ]);

    let want: BTreeMap<String, String> = [
        (format!("volume-{U1}"), "detached"),
        (format!("volume-{U3}"), "unexpected_host"),
        (format!("{GONE_VM}_disk"), "deleted_instance"),
        ("csi-vol-k2".to_string(), "detached"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    let body = exporter.wait_metrics(Duration::from_secs(60), |b| orphan_series(b) == want);
    assert_eq!(orphan_series(&body), want);
    for source in ["openstack", "kubernetes"] {
        assert_eq!(
            metric_value(
                &body,
                &format!("ceph_rbd_exporter_source_up{{source=\"{source}\"}}")
            ),
            Some(1.0),
            "{source}"
        );
    }
    // Hosts come from the Kubernetes node list (no inventory here).
    let u2_info = body
        .lines()
        .find(|l| l.starts_with("ceph_rbd_watcher_info{") && l.contains(&format!("volume-{U2}")))
        .unwrap();
    assert!(u2_info.contains("host=\"compute-1\""), "{u2_info}");
    promtool_check_metrics(&body);

    // The clients were real: token auth, both pages, all tenants.
    let os = openstack.requests();
    let volume_requests: Vec<&(String, String)> = os
        .iter()
        .filter(|(r, _)| r.contains("/volumes/detail"))
        .collect();
    assert!(
        volume_requests
            .iter()
            .all(|(r, _)| r.contains("all_tenants=1")),
        "{os:?}"
    );
    assert!(
        volume_requests.iter().any(|(r, _)| r.contains("marker=")),
        "{os:?}"
    );
    assert!(
        volume_requests.iter().all(|(_, auth)| auth == TOKEN),
        "{os:?}"
    );
    let k8s = kubernetes.requests();
    assert!(
        k8s.iter().any(|(r, _)| r.contains("continue=page2")),
        "{k8s:?}"
    );
    assert!(
        k8s.iter()
            .all(|(_, auth)| auth == &format!("Bearer {K8S_TOKEN}")),
        "{k8s:?}"
    );

    // OpenStack goes down: it is reported, and its verdicts are withdrawn
    // (no false page); Kubernetes' stay.
    openstack.failing.store(true, Ordering::SeqCst);
    let only_k8s: BTreeMap<String, String> =
        [("csi-vol-k2".to_string(), "detached".to_string())].into();
    let body = exporter.wait_metrics(Duration::from_secs(60), |b| {
        metric_value(b, "ceph_rbd_exporter_source_up{source=\"openstack\"}") == Some(0.0)
            && orphan_series(b) == only_k8s
    });
    assert!(
        metric_value(
            &body,
            "ceph_rbd_exporter_source_errors_total{kind=\"bad_response\",source=\"openstack\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{}",
        body.lines()
            .filter(|l| l.contains("source_errors"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Kubernetes goes down too: no verdicts from any source. The host
    // names it gave stay, sample after sample, for the host retention.
    kubernetes.failing.store(true, Ordering::SeqCst);
    let down_at = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < 4 {
        let (_, body) = exporter.get("GET", "/metrics");
        assert_eq!(
            u2_host(&body).as_deref(),
            Some("compute-1"),
            "{:?} after the source went down, samples {samples:?}",
            down_at.elapsed()
        );
        let down = metric_value(&body, "ceph_rbd_exporter_source_up{source=\"kubernetes\"}")
            == Some(0.0)
            && orphan_series(&body).is_empty();
        if down && !samples.contains(&sampled_at(&body)) {
            samples.push(sampled_at(&body));
        }
        assert!(down_at.elapsed() < Duration::from_secs(60), "never down");
        std::thread::sleep(Duration::from_millis(250));
    }
    // Past the retention: unknown. Kubernetes named it last at most one
    // sample interval (2 s) before it went down.
    let body = exporter.wait_metrics(Duration::from_secs(60), |b| {
        u2_host(b).as_deref() == Some("")
    });
    let after = down_at.elapsed();
    assert!(
        after >= Duration::from_secs(HOST_RETENTION_SECONDS - 3),
        "host forgotten {after:?} after the source went down"
    );
    assert!(
        !body.contains("host=\"compute-1\""),
        "hosts from a source down for longer than the retention"
    );

    // Both come back: the verdicts return by themselves.
    openstack.failing.store(false, Ordering::SeqCst);
    kubernetes.failing.store(false, Ordering::SeqCst);
    let body = exporter.wait_metrics(Duration::from_secs(60), |b| orphan_series(b) == want);
    assert_eq!(u2_host(&body).as_deref(), Some("compute-1"));
}
