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
target=${listen/0.0.0.0/127.0.0.1}
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
  Landing page:   http://$listen/
  Prometheus:     http://$prom_listen/
  Alerts:         http://$prom_listen/alerts   ($rules_note)
  Try:            curl -s http://$listen/metrics | grep -E 'orphaned|stale|flatten_pending'
  Ceph CLI:       CEPH_CONF=$dir/ceph.conf rbd ls -l volumes
  One-off dump:   $bin --ceph.config $dir/ceph.conf dump | less
  Grafana:        import dashboards/*.json, with a Prometheus data source pointing at http://$prom_listen
  Runbook:        docs/runbook.md
Stop with ctrl-c (stops Prometheus too), then 'make demo-stop' to remove the cluster.

MSG
# In the background and waited for, so that ctrl-c, or a SIGTERM to this
# script alone, runs the traps: they stop the exporter and Prometheus.
"$bin" --ceph.config "$dir/ceph.conf" --web.listen-address "$listen" --sample.interval 15s &
exporter_pid=$!
wait "$exporter_pid"
