#!/usr/bin/env bash
# `make demo`: a throwaway local cluster seeded like a small OpenStack +
# Kubernetes site, and the exporter serving it in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-$PWD/.demo}
port=${2:-40791}
listen=${3:-127.0.0.1:9289}
bin=target/release/ceph-rbd-exporter

bash scripts/cluster.sh start "$dir" "$port"
if [ ! -f "$dir/state/seed.json" ]; then
    echo "== seeding the demo layout (OpenStack + Kubernetes look)"
    /usr/bin/python3 scripts/seed.py --conf "$dir/ceph.conf" --state-dir "$dir/state" demo
fi

cat <<MSG

The demo cluster is up in $dir.
  Metrics:        http://$listen/metrics
  Landing page:   http://$listen/
  Try:            curl -s http://$listen/metrics | grep -E 'orphaned|stale|flatten_pending'
  Ceph CLI:       CEPH_CONF=$dir/ceph.conf rbd ls -l volumes
  One-off dump:   $bin --ceph.config $dir/ceph.conf dump | less
Stop with ctrl-c, then 'make demo-stop' to remove the cluster.

MSG
exec "$bin" --ceph.config "$dir/ceph.conf" --web.listen-address "$listen" --sample.interval 15s
