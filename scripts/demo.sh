#!/usr/bin/env bash
# `make demo`: a throwaway local cluster seeded like a small OpenStack +
# Kubernetes site, the exporter serving it in the foreground, and Prometheus
# with the project's alert rules (alerts/) scraping it in the background.
#   scripts/demo.sh [DIR] [MON_PORT] [EXPORTER_LISTEN]
# Environment:
#   DEMO_PROM_LISTEN  Prometheus address (default 127.0.0.1:9090)
#   DEMO_ALERT_FOR    every alert's `for:` in the demo's copy of the rules, so the
#                     alerts fire within minutes (default 1m); `keep` keeps the
#                     real hold times (10m for orphaned watchers, 1h for flattens)
# ctrl-c stops the exporter and Prometheus; `make demo-stop` removes the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-$PWD/.demo}
port=${2:-40791}
listen=${3:-127.0.0.1:9289}
prom_listen=${DEMO_PROM_LISTEN:-127.0.0.1:9090}
alert_for=${DEMO_ALERT_FOR:-1m}
bin=target/release/ceph-rbd-exporter
pdir="$dir/prometheus"

bash scripts/cluster.sh start "$dir" "$port"
if [ ! -f "$dir/state/seed.json" ]; then
    echo "== seeding the demo layout (OpenStack + Kubernetes look)"
    /usr/bin/python3 scripts/seed.py --conf "$dir/ceph.conf" --state-dir "$dir/state" demo
fi

# ------------------------------------------------- who should hold what
# A host inventory and an attachments file, as a site without OpenStack or
# Kubernetes APIs would write them: every demo client runs on 127.0.0.1,
# which the inventory calls compute-1. The attachments file says the Cinder
# volume demo-cinder holds is `available` (attached nowhere) and the Nova
# disk demo-nova holds lives on compute-2: seed cases 1 and 2, an orphaned
# VM and a volume "locked by other nodes".
/usr/bin/python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
seed = json.load(open(d + "/state/seed.json"))
holders = seed["holders"]
with open(d + "/inventory.yaml", "w") as f:
    f.write("# Written by scripts/demo.sh; format in the README.\n"
            "client_networks: [127.0.0.0/8]\n"
            "hosts:\n"
            "  - {name: compute-1, role: compute, addresses: [127.0.0.1]}\n"
            "  - {name: compute-2, role: compute, addresses: [127.0.0.2]}\n"
            "  - {name: mirror-1, role: rbd-mirror, addresses: [127.0.0.3]}\n")
lines = ["# Written by scripts/demo.sh; format in the README.", "images:"]
if "demo-cinder" in holders:
    lines.append("  - {image: %s, hosts: [], owner: 'cinder volume (available, no attachments)'}" % holders["demo-cinder"]["image"])
if "demo-nova" in holders:
    lines.append("  - {image: %s, pool: vms, hosts: [compute-2], owner: 'nova server on compute-2'}" % holders["demo-nova"]["image"])
open(d + "/attachments.yaml", "w").write("\n".join(lines) + "\n")
PY
attribution=(--watchers.inventory "$dir/inventory.yaml" --attachments.file "$dir/attachments.yaml")

# -------------------------------------------------- explain an undeletable image
# The Glance image with the most clones: `rbd rm` fails on it, and explain
# says why and what to run.
glance=$("$bin" --ceph.config "$dir/ceph.conf" --log.level error --pools images dump |
    /usr/bin/python3 -c 'import json,sys
imgs = json.load(sys.stdin)
best = max(imgs, key=lambda i: sum(s["children"] for s in i["snapshots"]))
print(best["pool"] + "/" + best["image"])')
echo
echo "== why can't Glance delete $glance? (ceph-rbd-exporter explain $glance)"
"$bin" --ceph.config "$dir/ceph.conf" --log.level error "${attribution[@]}" explain "$glance"
echo "== every orphaned watcher and stale lock: $bin --ceph.config $dir/ceph.conf ${attribution[*]} explain --orphans"
"$bin" --ceph.config "$dir/ceph.conf" --log.level error "${attribution[@]}" explain --orphans | head -40

# --------------------------------------------------------------- the pages
# The exporter's own pages (the URL people reach it at is --web.external-url):
# the Glance image with the most clones draws its clone tree; the Cinder volume
# the attachments file says is attached nowhere has an orphaned watcher.
target=${listen/0.0.0.0/127.0.0.1}
external_url=http://$target
pages=$(/usr/bin/python3 - "$dir" "$external_url" "$glance" <<'PY'
import json, sys
from urllib.parse import quote
d, base, glance = sys.argv[1:]
def page(spec):
    pool, image = spec.split("/", 1)
    return "{}/images/{}/{}".format(base, quote(pool, safe=""), quote(image, safe=""))
print(page(glance))
holders = json.load(open(d + "/state/seed.json"))["holders"]
h = holders.get("demo-cinder") or holders.get("zombie")
print(page(h["spec"]) if h else base + "/orphans")
PY
)
glance_page=$(sed -n 1p <<<"$pages")
orphan_page=$(sed -n 2p <<<"$pages")

# ---------------------------------------------------------------- Prometheus
prom_pid=""
exporter_pid=""
stop_pid() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
    stop_pid "$exporter_pid"
    stop_pid "$prom_pid"
    rm -f "$pdir/prometheus.pid"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$pdir"
# A Prometheus left over by an earlier demo that was killed hard.
if [ -f "$pdir/prometheus.pid" ]; then
    old=$(cat "$pdir/prometheus.pid")
    if [ -r "/proc/$old/cmdline" ] && tr '\0' ' ' <"/proc/$old/cmdline" | grep -q -- "$pdir/prometheus.yml"; then
        echo "== stopping the Prometheus of an earlier demo (pid $old)"
        stop_pid "$old"
    fi
fi

rules="$pdir/ceph-rbd-exporter.rules.yml"
if [ "$alert_for" = keep ]; then
    cp alerts/ceph-rbd-exporter.rules.yml "$rules"
    rules_note="the real hold times (alerts/ceph-rbd-exporter.rules.yml)"
else
    sed -E "s/^([[:space:]]*)for: [^ ]+/\1for: $alert_for/" alerts/ceph-rbd-exporter.rules.yml >"$rules"
    rules_note="every 'for:' shortened to $alert_for for the demo (DEMO_ALERT_FOR=keep for the real ones)"
fi
cat >"$pdir/prometheus.yml" <<CFG
# Written by scripts/demo.sh.
global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files:
  - $rules
scrape_configs:
  - job_name: ceph-rbd-exporter
    static_configs:
      - targets: ['$target']
CFG
promtool check config "$pdir/prometheus.yml" >/dev/null

echo "== starting Prometheus on $prom_listen (data and log in $pdir)"
prometheus --config.file="$pdir/prometheus.yml" --storage.tsdb.path="$pdir/data" \
    --web.listen-address="$prom_listen" --log.level=warn >"$pdir/prometheus.log" 2>&1 &
prom_pid=$!
echo "$prom_pid" >"$pdir/prometheus.pid"
for i in $(seq 150); do
    if curl -fsS "http://$prom_listen/-/ready" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$prom_pid" 2>/dev/null || [ "$i" -eq 150 ]; then
        echo "Prometheus did not start on $prom_listen (address in use? set DEMO_PROM_LISTEN):" >&2
        tail -5 "$pdir/prometheus.log" >&2
        exit 1
    fi
    sleep 0.2
done

cat <<MSG

The demo cluster is up in $dir.
  Metrics:        http://$listen/metrics
  Landing page:   $external_url/   (every orphan, the pools, the most-cloned snapshots; /orphans)
  Clone tree:     $glance_page
                  (the Glance image with the most clones: why it cannot be deleted, and the fix)
  An orphan:      $orphan_page
  Prometheus:     http://$prom_listen/
  Alerts:         http://$prom_listen/alerts   ($rules_note)
  Try:            curl -s http://$listen/metrics | grep -E 'orphaned|stale|flatten_pending'
  Ceph CLI:       CEPH_CONF=$dir/ceph.conf rbd ls -l volumes
  One-off dump:   $bin --ceph.config $dir/ceph.conf dump | less
  Explain:        $bin --ceph.config $dir/ceph.conf ${attribution[*]} explain $glance
  Orphans:        $bin --ceph.config $dir/ceph.conf ${attribution[*]} explain --orphans
  Grafana:        import dashboards/*.json, with a Prometheus data source pointing at http://$prom_listen
  Runbook:        docs/runbook.md
Stop with ctrl-c (stops Prometheus too), then 'make demo-stop' to remove the cluster.

MSG
# In the background and waited for, so that ctrl-c, or a SIGTERM to this
# script alone, runs the traps: they stop the exporter and Prometheus.
"$bin" --ceph.config "$dir/ceph.conf" --web.listen-address "$listen" --sample.interval 15s \
    --web.external-url "$external_url" \
    "${attribution[@]}" --attachments.refresh-interval 15s &
exporter_pid=$!
wait "$exporter_pid"
