//! The Rook overlay's pod, as far as it runs without Kubernetes: the
//! exporter started with exactly the environment the rendered Deployment
//! gives its container, against the real test cluster.
//!
//! `kubectl kustomize deploy/kubernetes/overlays/rook` is rendered and its
//! container's `env` resolved the way the kubelet would here:
//! `configMapKeyRef rook-ceph-mon-endpoints/data` becomes the test cluster's
//! mon in Rook's own `a=IP:PORT` form; the key file named by
//! `CEPH_RBD_EXPORTER_CEPH_KEY_FILE` must lie in the volume the CephClient's
//! Secret (`rook-ceph-client-<name>`, item `<name>`) is mounted at, and holds
//! the key of the cephx user that CephClient makes, created here with the
//! CephClient's own caps, as Rook's operator would; it is made readable to
//! the pod's group, as `defaultMode` and `fsGroup` make it. The process runs
//! as the pod's `runAsUser`/`runAsGroup`, with the container's `command` and
//! no arguments and nothing but that environment (no ceph.conf anywhere).
//! Three things differ, and only because no pod runs here: the listen port
//! (a free one on 127.0.0.1 instead of 0.0.0.0:9289), the state directory (a
//! scratch one instead of the emptyDir) and `--kubernetes.in-cluster`, left
//! out because no API server runs here (tests/sources.rs tests that source
//! against one). It must report `ceph_rbd_exporter_up 1` and as many images
//! in pool `volumes` as `rbd ls volumes`.

mod common;

use common::{BIN, ceph_cli, conf, http, scratch_dir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The rendered Rook overlay, every object as JSON.
fn render_rook() -> Vec<Value> {
    let repo = common::repo();
    let out = Command::new("kubectl")
        .args(["kustomize", "deploy/kubernetes/overlays/rook"])
        .current_dir(&repo)
        .output()
        .expect("kubectl (scripts/install-deps.sh says where it comes from)");
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.split("\n---\n")
        .map(|doc| serde_norway::from_str::<Value>(doc).expect("rendered YAML"))
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the Rook overlay"))
}

/// The test cluster's mon as Rook writes it into `rook-ceph-mon-endpoints`'
/// `data`: `a=IP:PORT` (no `v2:` prefix).
fn rook_mon_endpoints() -> String {
    let text = std::fs::read_to_string(conf()).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("mon host = "))
        .expect("mon host in the test ceph.conf");
    let addr = line.trim().trim_start_matches("v2:");
    format!("a={addr}")
}

/// The key file's path inside the container and the host file standing in
/// for it: the Secret of `client` must be mounted at the directory.
fn key_file_mount(pod: &Value, container: &Value, path: &str, client: &str) -> PathBuf {
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| path.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
        .unwrap_or_else(|| panic!("{path} is in no volume mount"));
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let secret = &volume["secret"];
    assert_eq!(
        secret["secretName"],
        format!("rook-ceph-client-{client}"),
        "the key comes from the CephClient's Secret"
    );
    let item = &secret["items"][0];
    assert_eq!(
        item["key"], client,
        "Rook stores the key under the client's name"
    );
    let rel = path
        .strip_prefix(mount["mountPath"].as_str().unwrap())
        .unwrap()
        .trim_start_matches('/');
    assert_eq!(item["path"], rel, "the key file is the Secret's item");
    scratch_dir("rook-pod-key").join(rel)
}

/// The container's environment as the kubelet would give it here, with the
/// key written where `CEPH_RBD_EXPORTER_CEPH_KEY_FILE` points (on the host).
fn pod_env(objs: &[Value], gid: u32) -> BTreeMap<String, String> {
    let deploy = find(objs, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert!(container["args"].is_null(), "the container passes no args");
    let client = find(objs, "CephClient")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let mut env = BTreeMap::new();
    for e in container["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = if let Some(v) = e["value"].as_str() {
            v.to_string()
        } else {
            let cm = &e["valueFrom"]["configMapKeyRef"];
            assert_eq!(
                (cm["name"].as_str(), cm["key"].as_str()),
                (Some("rook-ceph-mon-endpoints"), Some("data")),
                "{name}: only Rook's mon endpoints are looked up"
            );
            rook_mon_endpoints()
        };
        env.insert(name, value);
    }
    let path = env["CEPH_RBD_EXPORTER_CEPH_KEY_FILE"].clone();
    let host_key = key_file_mount(pod, container, &path, &client);
    write_client_key(objs, &client, &host_key, gid);
    env.insert(
        "CEPH_RBD_EXPORTER_CEPH_KEY_FILE".into(),
        host_key.display().to_string(),
    );
    env
}

/// What Rook's operator does for the CephClient: the user with its caps,
/// the bare key in the Secret (here a file, mode 0440, group `gid`).
fn write_client_key(objs: &[Value], client: &str, file: &Path, gid: u32) {
    let caps = &find(objs, "CephClient")["spec"]["caps"];
    let user = format!("client.{client}");
    let mut args = vec!["auth", "get-or-create", user.as_str()];
    let caps: Vec<(String, String)> = caps
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    for (k, v) in &caps {
        args.push(k);
        args.push(v);
    }
    ceph_cli("ceph", &args);
    let key = ceph_cli("ceph", &["auth", "print-key", &user]);
    std::fs::write(file, key.trim()).unwrap();
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o440)).unwrap();
    std::os::unix::fs::chown(file, Some(0), Some(gid)).unwrap();
    std::fs::set_permissions(
        file.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_rook_pods_environment_serves_the_cluster() {
    let objs = render_rook();
    let deploy = find(&objs, "Deployment");
    let sc = &deploy["spec"]["template"]["spec"]["securityContext"];
    let uid = sc["runAsUser"].as_u64().expect("runAsUser") as u32;
    let gid = sc["runAsGroup"].as_u64().expect("runAsGroup") as u32;
    let mut env = pod_env(&objs, gid);
    assert_eq!(
        env.remove("CEPH_RBD_EXPORTER_KUBERNETES_IN_CLUSTER")
            .as_deref(),
        Some("true")
    );
    let port = free_port();
    env.insert(
        "CEPH_RBD_EXPORTER_WEB_LISTEN_ADDRESS".into(),
        format!("127.0.0.1:{port}"),
    );
    let state = scratch_dir("rook-pod-state");
    std::os::unix::fs::chown(&state, Some(uid), Some(gid)).unwrap();
    env.insert(
        "CEPH_RBD_EXPORTER_STORAGE_PATH".into(),
        state.display().to_string(),
    );
    let command = deploy["spec"]["template"]["spec"]["containers"][0]["command"][0]
        .as_str()
        .unwrap();
    assert_eq!(
        command, "/usr/local/bin/ceph-rbd-exporter",
        "the image's binary"
    );

    let mut child = Command::new(BIN)
        .env_clear()
        .envs(&env)
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let expected = ceph_cli("rbd", &["ls", "volumes"]).lines().count();
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut body = String::new();
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the exporter exited ({status}) with the pod's environment:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if std::net::TcpStream::connect(&addr).is_ok() {
            body = http(&addr, "GET", "/metrics").1;
            if body.lines().any(|l| l == "ceph_rbd_exporter_up 1")
                && body.contains("ceph_rbd_pool_images{namespace=\"\",pool=\"volumes\"}")
            {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        body.lines().any(|l| l == "ceph_rbd_exporter_up 1"),
        "no ceph_rbd_exporter_up 1 with the Rook pod's environment; metrics:\n{body}\nlog:\n{log}"
    );
    let line = format!("ceph_rbd_pool_images{{namespace=\"\",pool=\"volumes\"}} {expected}");
    assert!(
        body.lines().any(|l| l == line),
        "want {line}; metrics:\n{body}"
    );
    let key = std::fs::read_to_string(&env["CEPH_RBD_EXPORTER_CEPH_KEY_FILE"]).unwrap();
    assert!(!log.contains(key.trim()), "the key is in the log");
}
