#!/usr/bin/env bash
# Two throwaway clusters (scripts/cluster.sh) with snapshot-based RBD mirroring
# from the primary to the secondary, and an rbd-mirror daemon on the secondary,
# for tests/mirror.rs and for trying the exporter on a mirrored site by hand.
#   scripts/mirror.sh start DIR   fresh pair in DIR/primary and DIR/secondary
#                                 (whatever ran in DIR is stopped first)
#   scripts/mirror.sh stop  DIR   stop everything started in DIR (the daemon,
#                                 holders, both clusters) and delete DIR; idempotent
#   scripts/mirror.sh env   DIR   print PRIMARY_CONF=... SECONDARY_CONF=... for `eval`
# Environment: CEPH_TEST_MIRROR_PRIMARY_PORT (30823), CEPH_TEST_MIRROR_SECONDARY_PORT
# (30824), CEPH_TEST_MON_ADDR (127.0.0.1). The pool `volumes` is mirrored in
# `image` mode: enable an image with `rbd mirror image enable volumes/IMG snapshot`
# and push changes (a rename too) with `rbd mirror image snapshot volumes/IMG`;
# nothing is replayed between mirror snapshots (there is no snapshot schedule).
# The daemon is client.rbd-mirror.a of the secondary; it reads CEPH_CONF (it
# ignores -c) and writes DIR/secondary/run/client.rbd-mirror.a.pid, which
# cluster.sh stop kills with the cluster's own daemons.
set -euo pipefail

cmd=${1:-}
dir=$(realpath -m "${2:-.mirror}")
# Below the kernel's ephemeral range (32768-60999): a mon port in it can
# be taken by an outgoing connection of the first cluster (seen once).
primary_port=${CEPH_TEST_MIRROR_PRIMARY_PORT:-30823}
secondary_port=${CEPH_TEST_MIRROR_SECONDARY_PORT:-30824}
pool=volumes
daemon=rbd-mirror.a
here=$(dirname "$0")

die() { echo "mirror.sh: $*" >&2; exit 1; }

# Bounds every CLI call: a cluster that stopped answering must not hang a test.
on() { local site=$1 tool=$2; shift 2; timeout 30 "$tool" -c "$dir/$site/ceph.conf" "$@"; }

start_clusters() {
    local p s
    bash "$here/cluster.sh" start "$dir/primary" "$primary_port" >"$dir/primary.out" 2>&1 & p=$!
    bash "$here/cluster.sh" start "$dir/secondary" "$secondary_port" >"$dir/secondary.out" 2>&1 & s=$!
    wait $p || die "primary cluster did not start: $(cat "$dir/primary.out")"
    wait $s || die "secondary cluster did not start: $(cat "$dir/secondary.out")"
}

setup_pool() {
    local site=$1
    on "$site" ceph osd pool create "$pool" >/dev/null 2>&1
    on "$site" rbd pool init "$pool"
    on "$site" rbd mirror pool enable "$pool" image
}

start_daemon() {
    local keyring="$dir/secondary/$daemon.keyring"
    on secondary ceph auth get-or-create "client.$daemon" mon 'profile rbd-mirror' osd 'profile rbd' \
        -o "$keyring" >/dev/null
    CEPH_CONF="$dir/secondary/ceph.conf" rbd-mirror --id "$daemon" --keyring "$keyring"
    local i
    for i in $(seq 1 100); do
        [ -n "$(on secondary rados -p "$pool" listwatchers rbd_mirror_leader 2>/dev/null)" ] && return 0
        sleep 0.2
    done
    die "rbd-mirror never watched $pool/rbd_mirror_leader; see $dir/secondary/log/client.$daemon.log"
}

start() {
    command -v rbd-mirror >/dev/null || die "rbd-mirror is not installed (run make deps)"
    stop
    mkdir -p "$dir"
    # A half-started pair is torn down, not left running.
    up=no
    trap '[ "${up:-}" = yes ] || stop' EXIT
    start_clusters
    setup_pool primary & local p=$!
    setup_pool secondary
    wait $p
    on primary rbd mirror pool peer bootstrap create --site-name primary "$pool" >"$dir/token"
    on secondary rbd mirror pool peer bootstrap import --site-name secondary --direction rx-only \
        "$pool" "$dir/token"
    start_daemon
    up=yes
    echo "mirror pair up in $dir: primary 127.0.0.1:$primary_port, secondary 127.0.0.1:$secondary_port" \
        "(rbd-mirror client.$daemon), pool $pool"
}

stop() {
    [ -d "$dir" ] || return 0
    # cluster.sh stop kills every pid file of run/ (the daemon's too) and the
    # holders of that cluster, then deletes its directory.
    bash "$here/cluster.sh" stop "$dir/secondary" || true
    bash "$here/cluster.sh" stop "$dir/primary" || true
    rm -rf "$dir"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    env) echo "PRIMARY_CONF=$dir/primary/ceph.conf SECONDARY_CONF=$dir/secondary/ceph.conf" ;;
    *) die "usage: $0 start|stop|env DIR" ;;
esac
