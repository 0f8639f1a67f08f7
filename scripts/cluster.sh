#!/usr/bin/env bash
# Throwaway one-mon, one-mgr, one-OSD Ceph cluster on loopback, for tests and the demo.
#   scripts/cluster.sh start [DIR] [PORT]   start (or reuse) a cluster in DIR (default .cluster)
#   scripts/cluster.sh stop  [DIR]          stop it (and the scripts/holder.py clients using it), delete DIR
#   scripts/cluster.sh env   [DIR]          print CEPH_CONF=... for `eval`
#   scripts/cluster.sh stop-daemon|start-daemon DIR PORT mon.a|mgr.x   for fault tests
# Memstore OSD, pool size 1, cephx on. Every daemon and client has its own admin socket.
set -euo pipefail

cmd=${1:-}
dir=$(realpath -m "${2:-.cluster}")
port=${3:-${CEPH_TEST_MON_PORT:-40789}}
addr=${CEPH_TEST_MON_ADDR:-127.0.0.1}

die() { echo "cluster.sh: $*" >&2; exit 1; }

write_conf() {
    local fsid class_dir=
    fsid=$(cat /proc/sys/kernel/random/uuid)
    # Debian 13's and 14's ceph-osd default to a *relative* class dir
    # ("lib/x86_64-linux-gnu/rados-classes"): the OSD then finds no cls_rbd unless
    # started from /usr, and every RBD call fails with EOPNOTSUPP. Name it.
    local d
    for d in /usr/lib/x86_64-linux-gnu/rados-classes /usr/lib/*/rados-classes /usr/lib64/rados-classes; do
        [ -e "$d/libcls_rbd.so" ] && { class_dir=$d; break; }
    done
    [ -n "$class_dir" ] || die "no libcls_rbd.so under /usr/lib*/ (is ceph-osd installed?)"
    mkdir -p "$dir"/{mon,osd,mgr,run,log}
    cat >"$dir/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = v2:$addr:$port
mon initial members = a
public network = $addr/32
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
ms bind ipv6 = false
ms bind msgr1 = false
osd objectstore = memstore
memstore device bytes = 4294967296
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool delete = true
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd crush chooseleaf type = 0
keyring = $dir/keyring
admin socket = $dir/run/\$cluster-\$name.\$pid.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
run dir = $dir/run
debug ms = 0
rbd default features = 61
[mon.a]
mon data = $dir/mon
public addr = $addr
# Commit paxos proposals after 50 ms instead of 1 s: every pool create, snapshot
# create/remove and pool init waits for one, so seeding is ~10x faster.
paxos propose interval = 0.05
[osd.0]
osd data = $dir/osd
osd class dir = $class_dir
admin socket = $dir/run/osd.0.asok
[mgr.x]
mgr data = $dir/mgr
admin socket = $dir/run/mgr.x.asok
CONF
}

start() {
    if [ -f "$dir/ceph.conf" ] && timeout 10 ceph -c "$dir/ceph.conf" health >/dev/null 2>&1; then
        echo "cluster already running in $dir"; return 0
    fi
    command -v ceph-mon >/dev/null || die "ceph-mon is not installed (run scripts/install-deps.sh)"
    rm -rf "$dir"
    write_conf
    local c=(-c "$dir/ceph.conf")
    ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool "$dir/keyring" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
    monmaptool --create --clobber --addv a "[v2:$addr:$port]" --fsid "$(awk '/^fsid/{print $3}' "$dir/ceph.conf")" "$dir/monmap" >/dev/null
    ceph-mon "${c[@]}" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
    ceph-mon "${c[@]}" -i a
    local i
    for i in $(seq 1 50); do timeout 5 ceph "${c[@]}" mon stat >/dev/null 2>&1 && break; sleep 0.2; done
    ceph "${c[@]}" osd set-require-min-compat-client mimic >/dev/null 2>&1 || true

    # The OSD's key must exist before --mkfs, which fetches the mon config.
    local osd_uuid
    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    ceph "${c[@]}" auth get-or-create osd.0 mon 'allow profile osd' osd 'allow *' mgr 'allow profile osd' \
        -o "$dir/osd/keyring" >/dev/null
    ceph "${c[@]}" osd new "$osd_uuid" 0 >/dev/null
    ceph-osd "${c[@]}" -i 0 --mkfs --osd-uuid "$osd_uuid" --keyring "$dir/osd/keyring" >/dev/null 2>&1 \
        || die "ceph-osd --mkfs failed; see $dir/log"
    ceph-osd "${c[@]}" -i 0 --keyring "$dir/osd/keyring"

    ceph "${c[@]}" auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
        -o "$dir/mgr/keyring" >/dev/null
    if command -v ceph-mgr >/dev/null; then
        ceph-mgr "${c[@]}" -i x --keyring "$dir/mgr/keyring"
    fi

    for i in $(seq 1 100); do
        ceph "${c[@]}" osd dump 2>/dev/null | grep -q '^osd.0 up' && break; sleep 0.2
    done
    ceph "${c[@]}" osd dump | grep -q '^osd.0 up' || die "osd.0 did not come up; see $dir/log"
    ceph "${c[@]}" osd set-require-min-compat-client mimic >/dev/null
    echo "cluster up in $dir (mon $addr:$port)"
}

# Pids of scripts/holder.py processes started with --conf DIR/ceph.conf.
holder_pids() {
    local p args
    for p in /proc/[0-9]*; do
        args=$(tr '\0' '\n' 2>/dev/null <"$p/cmdline") || continue
        case "$args" in *holder.py*) ;; *) continue ;; esac
        grep -q 'holder\.py$' <<<"$args" || continue
        grep -qxF -- "$dir/ceph.conf" <<<"$args" || continue
        echo "${p#/proc/}"
    done
}

stop() {
    [ -d "$dir" ] || return 0
    local f p holders i
    # Holders (scripts/holder.py) of this cluster first, while it can still
    # take their unlock/unwatch; they would otherwise outlive it forever.
    holders=$(holder_pids)
    if [ -n "$holders" ]; then
        kill $holders 2>/dev/null || true
        for i in $(seq 1 50); do
            for p in $holders; do [ -d "/proc/$p" ] && break; p=; done
            [ -z "$p" ] && break
            sleep 0.1
        done
        kill -9 $holders 2>/dev/null || true
    fi
    for f in "$dir"/run/*.pid; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    done
    sleep 0.5
    for f in "$dir"/run/*.pid; do
        [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
    done
    rm -rf "$dir"
}

# Stops or starts one daemon of a running cluster, for fault tests. The OSD is
# memstore: stopping it loses every object, so tests pause it instead.
stop_daemon() {
    local name=$1 f="$dir/run/$1.pid" pid i
    [ -f "$f" ] || die "no pid file for $name in $dir/run"
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

start_daemon() {
    local c=(-c "$dir/ceph.conf")
    case "$1" in
        mon.a) ceph-mon "${c[@]}" -i a ;;
        mgr.x) ceph-mgr "${c[@]}" -i x --keyring "$dir/mgr/keyring" ;;
        *) die "can only restart mon.a and mgr.x (osd.0 is memstore)" ;;
    esac
}

case "$cmd" in
    start) start ;;
    stop-daemon) stop_daemon "${4:?daemon name}" ;;
    start-daemon) start_daemon "${4:?daemon name}" ;;
    stop) stop ;;
    env) echo "CEPH_CONF=$dir/ceph.conf" ;;
    *) die "usage: $0 start|stop|env [DIR] [PORT] | stop-daemon|start-daemon DIR PORT NAME" ;;
esac
