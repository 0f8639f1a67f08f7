//! The Kubernetes manifests (`deploy/kubernetes/`), offline: no cluster.
//!
//! `scripts/k8s-manifests.py check --json` renders the base and the Rook
//! overlay with `kubectl kustomize` and validates every object (built-in
//! kinds against Kubernetes 1.32's schemas from kubernetes-validate, strict;
//! CephClient, ServiceMonitor and PrometheusRule against the CRD schemas of
//! `deploy/kubernetes/crds/`). This test then checks what the issue asks of
//! the rendered objects: the hardening, probes, resources, read-only RBAC,
//! the Rook wiring (mon addresses from `rook-ceph-mon-endpoints`, the key
//! from the CephClient's Secret, read-only caps), the PrometheusRule against
//! the generator's output, and that the validator rejects broken copies;
//! and that the Deployment shows where to set `--web.external-url` (the
//! exporter's real environment variable for it, commented out).
//! Needs kubectl and the venv of `scripts/install-deps.sh` (target/k8s-venv).

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const SCRIPT: &str = "scripts/k8s-manifests.py";
const PORT: u64 = 9289;
/// The user the overlay's CephClient makes (client.rbd-exporter).
const CLIENT: &str = "rbd-exporter";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the script (it re-runs itself in target/k8s-venv when needed).
fn script(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new("python3")
        .arg(repo().join(SCRIPT))
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("python3 {SCRIPT}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The rendered objects: {"base": [...], "rook": [...]}, after the check
/// passed; rendered once for all the tests.
fn rendered() -> &'static Value {
    static RENDERED: OnceLock<Value> = OnceLock::new();
    RENDERED.get_or_init(render_and_check)
}

fn render_and_check() -> Value {
    let out = script(&["check", "--json"], &[]);
    assert!(
        out.status.success(),
        "{SCRIPT} check failed (run scripts/install-deps.sh for target/k8s-venv; kubectl is needed):\n{}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("check --json prints JSON")
}

fn objects<'a>(all: &'a Value, overlay: &str) -> &'a [Value] {
    all[overlay].as_array().expect("a list of objects")
}

fn find<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    let mut it = objs.iter().filter(|o| o["kind"] == kind);
    let one = it.next().unwrap_or_else(|| panic!("no {kind}"));
    assert!(it.next().is_none(), "more than one {kind}");
    one
}

fn container(deploy: &Value) -> &Value {
    let cs = deploy["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(cs.len(), 1, "one container");
    &cs[0]
}

fn env<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

fn volume<'a>(deploy: &'a Value, name: &str) -> &'a Value {
    deploy["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn cargo_version() -> String {
    let toml = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let line = toml.lines().find(|l| l.starts_with("version")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

/// Non-root, read-only root, no capabilities, seccomp, no escalation.
fn check_hardening(deploy: &Value) {
    let pod = &deploy["spec"]["template"]["spec"];
    let c = container(deploy);
    let (psc, csc) = (&pod["securityContext"], &c["securityContext"]);
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 10001, "the image's user");
    assert_eq!(csc["runAsNonRoot"], true);
    assert_eq!(csc["readOnlyRootFilesystem"], true);
    assert_eq!(csc["allowPrivilegeEscalation"], false);
    assert_eq!(csc["privileged"], false);
    assert_eq!(
        csc["capabilities"],
        json!({"drop": ["ALL"]}),
        "drop ALL, add none"
    );
    assert_eq!(psc["seccompProfile"], json!({"type": "RuntimeDefault"}));
    assert_eq!(csc["seccompProfile"], json!({"type": "RuntimeDefault"}));
}

/// Probes on /healthz at the metrics port; requests and limits; the image.
fn check_container(deploy: &Value) {
    let c = container(deploy);
    let ports = c["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["name"], "metrics");
    assert_eq!(ports[0]["containerPort"], PORT);
    assert_eq!(
        env(c, "CEPH_RBD_EXPORTER_WEB_LISTEN_ADDRESS")["value"],
        format!("0.0.0.0:{PORT}")
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    for (kind, res) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "cpu"),
        ("limits", "memory"),
    ] {
        assert!(
            c["resources"][kind][res].is_string(),
            "resources.{kind}.{res}"
        );
    }
    let image = format!("localhost/ceph-rbd-exporter:{}", cargo_version());
    assert_eq!(
        c["image"],
        image.as_str(),
        "the image scripts/image.sh tags"
    );
    // `command` without `args` drops the image's CMD (which names a ceph.conf).
    assert_eq!(c["command"], json!(["/usr/local/bin/ceph-rbd-exporter"]));
    assert!(
        c.get("args").is_none(),
        "no args: everything is in the environment"
    );
    assert_eq!(
        env(c, "CEPH_RBD_EXPORTER_KUBERNETES_IN_CLUSTER")["value"],
        "true"
    );
    let key_file = env(c, "CEPH_RBD_EXPORTER_CEPH_KEY_FILE")["value"]
        .as_str()
        .unwrap();
    let mounts = c["volumeMounts"].as_array().unwrap();
    let key_mount = mounts
        .iter()
        .find(|m| m["name"] == "key")
        .expect("the key mount");
    let dir = key_mount["mountPath"].as_str().unwrap();
    assert_eq!(
        Path::new(key_file),
        Path::new(dir).join("key"),
        "the key file is in the key volume"
    );
}

/// RBAC: a ServiceAccount bound to a ClusterRole with get/list/watch only.
fn check_rbac(objs: &[Value], ns: &str) {
    let deploy = find(objs, "Deployment");
    let sa = find(objs, "ServiceAccount");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["serviceAccountName"],
        sa["metadata"]["name"]
    );
    let binding = find(objs, "ClusterRoleBinding");
    let role = find(objs, "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let subject =
        json!([{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": ns}]);
    assert_eq!(
        binding["subjects"], subject,
        "bound to the exporter's ServiceAccount in {ns}"
    );
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        assert_eq!(
            rule["verbs"],
            json!(["get", "list", "watch"]),
            "read-only verbs: {rule}"
        );
        assert!(rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none());
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                granted.insert(format!("{}/{}", g.as_str().unwrap(), r.as_str().unwrap()));
            }
        }
    }
    let want = [
        "/nodes",
        "/persistentvolumes",
        "storage.k8s.io/volumeattachments",
    ];
    assert_eq!(granted, want.iter().map(|s| s.to_string()).collect());
}

/// Service, ServiceMonitor and NetworkPolicy point at the metrics port.
fn check_network(objs: &[Value]) {
    let deploy = find(objs, "Deployment");
    let pod_labels = &deploy["spec"]["template"]["metadata"]["labels"];
    let svc = find(objs, "Service");
    assert_eq!(
        svc["metadata"]["name"], "ceph-rbd-exporter",
        "the job name the alerts match"
    );
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "metrics", "port": PORT, "targetPort": "metrics", "protocol": "TCP"}])
    );
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "the Service selects the pod");
    }
    let sm = find(objs, "ServiceMonitor");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "the ServiceMonitor selects the Service"
        );
    }
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(
        sm["spec"]["endpoints"][0]["honorLabels"], true,
        "the exporter's RBD `namespace` label must win over the target's (see the runbook's Replicas)"
    );
    let np = find(objs, "NetworkPolicy");
    for (k, v) in np["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&pod_labels[k], v, "the NetworkPolicy selects the pod");
    }
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        np["spec"]["ingress"],
        json!([{"ports": [{"port": PORT, "protocol": "TCP"}]}])
    );
    let mut egress = BTreeSet::new();
    for rule in np["spec"]["egress"].as_array().unwrap() {
        for p in rule["ports"].as_array().unwrap() {
            egress.insert((
                p["port"].as_u64().unwrap(),
                p["endPort"].as_u64(),
                p["protocol"].as_str().unwrap().to_string(),
            ));
        }
    }
    let t = |p, e| (p, e, "TCP".to_string());
    let want = [
        (53, None, "UDP".to_string()),
        t(53, None),
        t(443, None),
        t(6443, None),
        t(3300, None),
        t(6789, None),
        t(6800, Some(7568)),
    ];
    assert_eq!(egress, want.into_iter().collect());
}

/// Everything namespaced is in `ns`, nothing cluster-scoped has a namespace.
fn check_namespace(objs: &[Value], ns: &str) {
    let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
    for o in objs {
        let want = match cluster_scoped.contains(&o["kind"].as_str().unwrap()) {
            true => Value::Null,
            false => json!(ns),
        };
        let (kind, name) = (&o["kind"], &o["metadata"]["name"]);
        assert_eq!(o["metadata"]["namespace"], want, "{kind} {name}");
    }
}

/// The Deployment shows, commented out next to the listen address, the
/// environment variable of `--web.external-url` (as the exporter's --help
/// names it), which the links from Grafana and the alerts need; the
/// rendered Deployment does not set it (no URL is right for every site).
#[test]
fn deployment_shows_where_to_set_the_external_url() {
    const VAR: &str = "CEPH_RBD_EXPORTER_WEB_EXTERNAL_URL";
    let help = Command::new(env!("CARGO_BIN_EXE_ceph-rbd-exporter"))
        .arg("--help")
        .output()
        .unwrap();
    let help = text(&help.stdout);
    let flag = help
        .split("--web.external-url")
        .nth(1)
        .unwrap_or_else(|| panic!("no --web.external-url in --help:\n{help}"));
    let flag = flag.split("\n      --").next().unwrap();
    assert!(flag.contains(&format!("[env: {VAR}")), "{flag}");
    let deployment =
        std::fs::read_to_string(repo().join("deploy/kubernetes/base/deployment.yaml")).unwrap();
    let shown = format!("# - name: {VAR}");
    assert!(deployment.contains(&shown), "deployment.yaml: no {shown}");
    let listen = deployment
        .find("CEPH_RBD_EXPORTER_WEB_LISTEN_ADDRESS")
        .unwrap();
    let at = deployment.find(&shown).unwrap();
    assert!(
        at > listen && at - listen < 800,
        "next to the listen address"
    );
    let c = container(find(objects(rendered(), "base"), "Deployment"));
    let set: Vec<&Value> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == VAR)
        .collect();
    assert!(set.is_empty(), "the base sets {VAR}: {set:?}");
}

#[test]
fn base_renders_validates_and_is_hardened() {
    let all = rendered();
    let objs = objects(all, "base");
    let deploy = find(objs, "Deployment");
    check_hardening(deploy);
    check_container(deploy);
    check_rbac(objs, "ceph-rbd-exporter");
    check_network(objs);
    check_namespace(objs, "ceph-rbd-exporter");
    let ns = find(objs, "Namespace");
    assert_eq!(ns["metadata"]["name"], "ceph-rbd-exporter");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    // Without Rook: one Secret the user makes, with the mon addresses and the key.
    let c = container(deploy);
    let mon = json!({"secretKeyRef": {"name": "ceph-rbd-exporter-ceph", "key": "mon_host"}});
    assert_eq!(env(c, "CEPH_RBD_EXPORTER_CEPH_MON_HOST")["valueFrom"], mon);
    let key = json!({"secretName": "ceph-rbd-exporter-ceph", "items": [{"key": "key", "path": "key"}], "defaultMode": 0o440});
    assert_eq!(volume(deploy, "key")["secret"], key);
    assert_eq!(env(c, "CEPH_RBD_EXPORTER_CEPH_USER")["value"], CLIENT);
}

#[test]
fn rook_overlay_takes_mons_and_key_from_rook() {
    let all = rendered();
    let objs = objects(all, "rook");
    let deploy = find(objs, "Deployment");
    check_hardening(deploy);
    check_container(deploy);
    check_rbac(objs, "rook-ceph");
    check_network(objs);
    check_namespace(objs, "rook-ceph");
    assert!(
        objs.iter().all(|o| o["kind"] != "Namespace"),
        "Rook's namespace exists already"
    );
    // The CephClient: user client.rbd-exporter with the read-only caps.
    let cc = find(objs, "CephClient");
    assert_eq!(cc["apiVersion"], "ceph.rook.io/v1");
    assert_eq!(cc["metadata"]["name"], CLIENT);
    assert_eq!(
        cc["spec"],
        json!({"caps": {"mon": "profile rbd", "osd": "profile rbd-read-only"}})
    );
    let c = container(deploy);
    assert_eq!(
        env(c, "CEPH_RBD_EXPORTER_CEPH_USER")["value"],
        CLIENT,
        "client.<CephClient name>"
    );
    // Mons from Rook's ConfigMap, and nothing else (no leftover secretKeyRef).
    let mon = json!({"configMapKeyRef": {"name": "rook-ceph-mon-endpoints", "key": "data"}});
    assert_eq!(env(c, "CEPH_RBD_EXPORTER_CEPH_MON_HOST")["valueFrom"], mon);
    // The key from the Secret Rook makes for the CephClient: rook-ceph-client-<name>,
    // data key <name> (Rook's pkg/operator/ceph/client/controller.go).
    let key = json!({"secretName": format!("rook-ceph-client-{CLIENT}"), "items": [{"key": CLIENT, "path": "key"}], "defaultMode": 0o440});
    assert_eq!(volume(deploy, "key")["secret"], key);
    let text = serde_json::to_string(objs).unwrap();
    assert!(
        !text.contains("ceph-rbd-exporter-ceph"),
        "no trace of the base's hand-made Secret"
    );
}

#[test]
fn prometheus_rule_is_the_generators_output() {
    let out = script(&["rules", "--check"], &[]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The rendered rule holds the groups of alerts/ as they are.
    let all = rendered();
    let rules: Value = serde_norway::from_str(
        &std::fs::read_to_string(repo().join("alerts/ceph-rbd-exporter.rules.yml")).unwrap(),
    )
    .unwrap();
    for overlay in ["base", "rook"] {
        let pr = find(objects(all, overlay), "PrometheusRule");
        assert_eq!(pr["spec"]["groups"], rules["groups"], "{overlay}");
    }
    // A copy that differs by one value fails the check, with a diff, and is not
    // rewritten, with --check and under CI=true alike.
    let dir = std::env::temp_dir().join(format!("k8s-manifests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("prometheusrule.yaml");
    let generated =
        std::fs::read_to_string(repo().join("deploy/kubernetes/base/prometheusrule.yaml")).unwrap();
    let stale = generated.replacen("for: ", "for: 1", 1);
    assert_ne!(stale, generated);
    for (args, envs) in [
        (vec!["rules", "--check"], vec![]),
        (vec!["rules"], vec![("CI", "true")]),
    ] {
        std::fs::write(&copy, &stale).unwrap();
        let mut a = args.clone();
        a.extend(["--out", copy.to_str().unwrap()]);
        let out = script(&a, &envs);
        assert!(!out.status.success(), "{a:?} passed on a stale copy");
        assert!(
            text(&out.stdout).contains("+++ generated from alerts/"),
            "a diff: {}",
            text(&out.stdout)
        );
        assert_eq!(
            std::fs::read_to_string(&copy).unwrap(),
            stale,
            "{a:?} rewrote the file"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sets `path` (keys and list indexes) in `v` to `new`.
fn set(v: &mut Value, path: &[&str], new: Value) {
    let mut cur = v;
    for p in path {
        cur = match p.parse::<usize>() {
            Ok(i) => &mut cur[i],
            Err(_) => &mut cur[*p],
        };
    }
    *cur = new;
}

#[test]
fn validator_rejects_broken_manifests() {
    let all = rendered();
    let rook = objects(all, "rook");
    let dir = std::env::temp_dir().join(format!("k8s-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c0 = ["spec", "template", "spec", "containers", "0"];
    let cases: Vec<(&str, Vec<&str>, Value)> = vec![
        (
            "Deployment",
            [&c0[..], &["readOnlyRootFilesytem"]].concat(),
            json!(true),
        ),
        ("Deployment", vec!["spec", "replicas"], json!("one")),
        (
            "Deployment",
            [&c0[..], &["securityContext", "capabilities", "drop"]].concat(),
            json!("ALL"),
        ),
        (
            "NetworkPolicy",
            vec!["spec", "egress", "3", "ports", "0", "endPort"],
            json!("7568"),
        ),
        ("ClusterRole", vec!["rules", "0", "verb"], json!(["get"])),
        ("CephClient", vec!["spec", "caps", "mon"], json!(5)),
        ("CephClient", vec!["spec", "capabilities"], json!({})),
        (
            "ServiceMonitor",
            vec!["spec", "endpoints", "0", "interval"],
            json!("30 seconds"),
        ),
        ("ServiceMonitor", vec!["metadata", "labelz"], json!({})),
        (
            "PrometheusRule",
            vec!["spec", "groups", "0", "rules", "0", "for"],
            json!(10),
        ),
    ];
    // Unbroken, they pass.
    let ok = dir.join("ok.yaml");
    let docs: Vec<String> = rook.iter().map(|o| o.to_string()).collect();
    std::fs::write(&ok, docs.join("\n---\n")).unwrap();
    let out = script(&["validate", ok.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    for (i, (kind, path, new)) in cases.into_iter().enumerate() {
        let mut obj = find(rook, kind).clone();
        set(&mut obj, &path, new.clone());
        let f = dir.join(format!("broken-{i}.yaml"));
        std::fs::write(&f, serde_json::to_string(&obj).unwrap()).unwrap();
        let out = script(&["validate", f.to_str().unwrap()], &[]);
        let said = text(&out.stdout);
        assert!(
            !out.status.success(),
            "{kind} with {path:?} = {new} passed validation"
        );
        assert!(said.contains("INVALID") && said.contains(kind), "{said}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The text of every .rs file under `dir`.
fn rust_sources(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

/// The environment variables the manifests set are flags of the exporter
/// (src/cli.rs), so a rename breaks this test. CEPH_RBD_EXPORTER_CEPH_MON_HOST,
/// _CEPH_KEY_FILE and _CEPH_KEY come with the connection flags of issue 14.
#[test]
fn env_names_are_the_exporters() {
    let all = rendered();
    let src = std::fs::read_to_string(repo().join("src/cli.rs")).unwrap();
    let mut names = BTreeSet::new();
    for overlay in ["base", "rook"] {
        for e in container(find(objects(all, overlay), "Deployment"))["env"]
            .as_array()
            .unwrap()
        {
            names.insert(e["name"].as_str().unwrap().to_string());
        }
    }
    for name in &names {
        assert!(
            src.contains(&format!("env = \"{name}\"")),
            "{name} is no flag's env in src/cli.rs"
        );
    }
    // The env-only key variable (the key itself, e.g. from a secretKeyRef),
    // the alternative to the key file that the README names.
    let key_env = "\"CEPH_RBD_EXPORTER_CEPH_KEY\"";
    assert!(
        rust_sources(&repo().join("src"))
            .iter()
            .any(|s| s.contains(key_env)),
        "{key_env} is nowhere in src/"
    );
    assert!(
        names.contains("CEPH_RBD_EXPORTER_CEPH_MON_HOST")
            && names.contains("CEPH_RBD_EXPORTER_CEPH_KEY_FILE")
    );
}
