#!/usr/bin/env bash
# The production-shaped cluster of the fault tests (tests/faults_*.rs) and of
# `make soak`: three mons, four bluestore OSDs (file-backed, so an OSD can be
# killed and restarted), size-2 pools on two halves of the OSDs, and a network
# namespace for an exporter whose link to the cluster a test can cut.
#
#   scripts/faults-test.sh up     start (or restart) it all; prints where things are
#   scripts/faults-test.sh down   stop the cluster, remove the namespace and links
#   scripts/faults-test.sh test [TEST...]   up, run tests/faults_*.rs (or the TESTs
#                                 named, e.g. faults_mons), down (always, pass or fail)
#
# Layout (FAULTS_NET=10.231.15, FAULTS_SIDE_NET=10.231.16, FAULTS_PREFIX=flt):
#   mons a, b, c on FAULTS_NET.1, ports FAULTS_PORT..+2 (40795-40797); OSDs 0-3 there too
#   OSDs 0, 1 have device class `a`, OSDs 2, 3 class `b`; crush rules `half-a`, `half-b`
#   pools: `volumes` (rule half-a, images vol-1..vol-20), `isolated` (half-b, iso-1..iso-5);
#          both size 2, min_size 1
#   namespace FAULTS_PREFIX-1: eth0 FAULTS_NET.11 on the cluster's bridge (the link a
#          test cuts), side0 FAULTS_SIDE_NET.2 to the host's FAULTS_SIDE_NET.1 (scrapes)
#   FAULTS_DIR (.cluster-faults): ceph.conf (admin), exporter.conf and exporter.keyring
#          (client.rbd-exporter, the README's read-only caps), exporter.key (bare key)
# FAULTS_NETNS=0: no namespace, the cluster on 127.0.0.1 (scripts/release-test.sh runs
# the fault tests that need none so inside a release's chroot). FAULTS_CARGO_ARGS: more
# `cargo test` flags (the chroots add --offline).
# Needs root (namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=$(realpath -m "${FAULTS_DIR:-.cluster-faults}")
port=${FAULTS_PORT:-40795}
net=${FAULTS_NET:-10.231.15}
side_net=${FAULTS_SIDE_NET:-10.231.16}
prefix=${FAULTS_PREFIX:-flt}
netns=${FAULTS_NETNS:-1}
ns="$prefix-1"
side_host="$prefix-s1"

die() { echo "faults-test.sh: $*" >&2; exit 1; }

down() {
    if [ -f "$dir/ceph.conf" ]; then
        /usr/bin/python3 scripts/seed.py --conf "$dir/ceph.conf" --state-dir "$dir/state" stop-holders >/dev/null 2>&1 || true
    fi
    bash scripts/cluster.sh stop "$dir" >/dev/null 2>&1 || true
    [ "$netns" = 1 ] || return 0
    bash scripts/netns.sh down "$prefix"
    ip link del "$side_host" 2>/dev/null || true
}

side_link() {
    if ip -o -4 addr show | grep -qE "inet $side_net\.[0-9]+/"; then
        die "$side_net.0/24 is already assigned on this machine"
    fi
    ip link add "$side_host" type veth peer name side0 netns "$ns"
    ip addr add "$side_net.1/24" dev "$side_host"
    ip link set "$side_host" up
    ip -n "$ns" addr add "$side_net.2/24" dev side0
    ip -n "$ns" link set side0 up
}

ceph_() { ceph -c "$dir/ceph.conf" "$@"; }

layout() {
    ceph_ osd crush rm-device-class osd.0 osd.1 osd.2 osd.3 >/dev/null 2>&1
    ceph_ osd crush set-device-class a osd.0 osd.1 >/dev/null 2>&1
    ceph_ osd crush set-device-class b osd.2 osd.3 >/dev/null 2>&1
    ceph_ osd crush rule create-replicated half-a default osd a
    ceph_ osd crush rule create-replicated half-b default osd b
    ceph_ osd pool create volumes 16 16 replicated half-a >/dev/null 2>&1
    ceph_ osd pool create isolated 8 8 replicated half-b >/dev/null 2>&1
    rbd -c "$dir/ceph.conf" pool init volumes
    rbd -c "$dir/ceph.conf" pool init isolated
    /usr/bin/python3 - "$dir/ceph.conf" <<'PY'
import sys, rados, rbd
c = rados.Rados(conffile=sys.argv[1]); c.connect()
for pool, prefix, n in (("volumes", "vol-", 20), ("isolated", "iso-", 5)):
    io = c.open_ioctx(pool)
    for i in range(1, n + 1):
        rbd.RBD().create(io, "%s%d" % (prefix, i), 1 << 20)
    io.close()
c.shutdown()
PY
    ceph_ auth get-or-create client.rbd-exporter mon 'profile rbd' osd 'profile rbd-read-only' >"$dir/exporter.keyring"
    awk '$1 == "key" {print $3}' "$dir/exporter.keyring" >"$dir/exporter.key"
    sed "s|^keyring = .*|keyring = $dir/exporter.keyring|" "$dir/ceph.conf" >"$dir/exporter.conf"
    # Wait for every PG to be active+clean, so a test starts from a healthy cluster.
    local i
    for i in $(seq 1 150); do
        ceph_ pg stat 2>/dev/null | grep -qE '^[0-9]+ pgs: [0-9]+ active\+clean;' && return 0
        sleep 0.2
    done
    die "PGs not active+clean: $(ceph_ pg stat)"
}

up() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, daemons)"
    down
    trap 'down' ERR
    local addr=127.0.0.1
    if [ "$netns" = 1 ]; then
        bash scripts/netns.sh up "$prefix" 1 "$net" >/dev/null
        side_link
        addr=$net.1
    fi
    CEPH_TEST_MONS=3 CEPH_TEST_OSDS=4 CEPH_TEST_STORE=bluestore CEPH_TEST_MON_ADDR="$addr" \
        bash scripts/cluster.sh start "$dir" "$port" 2>"$dir.start.log" | tail -1
    layout
    trap - ERR
    echo "faults cluster: $dir/ceph.conf (exporter: $dir/exporter.conf)"
    [ "$netns" = 1 ] && echo "namespace $ns: $net.11 on the cluster link, side address $side_net.2"
    return 0
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    test)
        shift
        tests=("$@")
        if [ ${#tests[@]} = 0 ]; then
            for f in tests/faults_*.rs; do tests+=("$(basename "$f" .rs)"); done
        fi
        args=()
        for t in "${tests[@]}"; do args+=(--test "$t"); done
        trap down EXIT
        t0=$(date +%s)
        up
        echo "faults cluster up in $(($(date +%s) - t0)) s"
        vars=(CEPH_RBD_FAULTS_DIR="$dir")
        if [ "$netns" = 1 ]; then
            vars+=(CEPH_RBD_FAULTS_NS="$ns" CEPH_RBD_FAULTS_SIDE="$side_net.2" CEPH_RBD_FAULTS_LINK=eth0)
        fi
        # shellcheck disable=SC2086
        env "${vars[@]}" cargo test --release --locked ${FAULTS_CARGO_ARGS:-} "${args[@]}" -- --test-threads 1
        ;;
    *) die "usage: $0 up | down | test [TEST...]" ;;
esac
