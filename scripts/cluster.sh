#!/usr/bin/env bash
# Throwaway Ceph cluster on loopback (or CEPH_TEST_MON_ADDR), for tests and the demo.
#   scripts/cluster.sh start [DIR] [PORT]   start (or reuse) a cluster in DIR (default .cluster)
#   scripts/cluster.sh stop  [DIR]          stop it (and the scripts/holder.py clients using it), delete DIR
#   scripts/cluster.sh env   [DIR]          print CEPH_CONF=... for `eval`
#   scripts/cluster.sh stop-daemon|kill-daemon|start-daemon DIR PORT NAME   for fault tests
# Default: one mon, one mgr, one memstore OSD, pool size 1, cephx on. Every daemon
# and client has its own admin socket. A production-shaped cluster for the fault
# tests and the soak (scripts/faults-test.sh) comes from the environment:
#   CEPH_TEST_MONS=3          mons a, b, c on PORT, PORT+1, PORT+2 (1, 3 or 5)
#   CEPH_TEST_OSDS=4          OSDs 0..3 (1-8)
#   CEPH_TEST_STORE=bluestore each OSD on a sparse 2 GiB file, so an OSD survives
#                             being killed and restarted (memstore loses everything)
# With more than one OSD, pools default to size 2 (min_size 1), and an OSD killed
# is marked down as when it runs on its own host (`mon osd reporter subtree level
# = osd`).
set -euo pipefail

cmd=${1:-}
dir=$(realpath -m "${2:-.cluster}")
port=${3:-${CEPH_TEST_MON_PORT:-40789}}
addr=${CEPH_TEST_MON_ADDR:-127.0.0.1}
mons=${CEPH_TEST_MONS:-1}
osds=${CEPH_TEST_OSDS:-1}
store=${CEPH_TEST_STORE:-memstore}
MON_IDS=(a b c d e)

die() { echo "cluster.sh: $*" >&2; exit 1; }

case "$mons" in 1|3|5) ;; *) die "CEPH_TEST_MONS must be 1, 3 or 5: '$mons'" ;; esac
[[ $osds =~ ^[1-8]$ ]] || die "CEPH_TEST_OSDS must be 1-8: '$osds'"
case "$store" in memstore|bluestore) ;; *) die "CEPH_TEST_STORE must be memstore or bluestore: '$store'" ;; esac

# The data directory of mon ID and of OSD N (the first of each keeps the
# one-daemon cluster's paths).
mon_dir() { if [ "$1" = a ]; then echo "$dir/mon"; else echo "$dir/mon.$1"; fi; }
osd_dir() { if [ "$1" = 0 ]; then echo "$dir/osd"; else echo "$dir/osd.$1"; fi; }

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
    mkdir -p "$dir"/{mgr,run,log}
    local i mon_host= members= size=1 min_size=1
    for ((i = 0; i < mons; i++)); do
        mon_host+="${mon_host:+,}v2:$addr:$((port + i))"
        members+="${members:+,}${MON_IDS[$i]}"
    done
    if ((osds > 1)); then size=2; fi
    cat >"$dir/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = $mon_host
mon initial members = $members
public network = $addr/32
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
ms bind ipv6 = false
ms bind msgr1 = false
osd objectstore = $store
memstore device bytes = 4294967296
# bluestore on a sparse file of the OSD's directory, with a small cache.
bluestore block create = true
bluestore block size = 2147483648
bluestore fsck on mkfs = false
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 67108864
osd memory target = 939524096
osd pool default size = $size
osd pool default min size = $min_size
# Each OSD counts as its own host when peers report it down.
mon osd reporter subtree level = osd
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool delete = true
mon allow pool size one = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
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
[mon]
# Commit paxos proposals after 50 ms instead of 1 s: every pool create, snapshot
# create/remove and pool init waits for one, so seeding is ~10x faster.
paxos propose interval = 0.05
[mgr.x]
mgr data = $dir/mgr
admin socket = $dir/run/mgr.x.asok
CONF
    local id
    for ((i = 0; i < mons; i++)); do
        id=${MON_IDS[$i]}
        mkdir -p "$(mon_dir "$id")"
        printf '[mon.%s]\nmon data = %s\npublic addr = v2:%s:%s\n' \
            "$id" "$(mon_dir "$id")" "$addr" "$((port + i))" >>"$dir/ceph.conf"
        # The one-mon cluster's admin socket keeps its old name.
        ((mons > 1)) && printf 'admin socket = %s/run/mon.%s.asok\n' "$dir" "$id" >>"$dir/ceph.conf"
    done
    for ((i = 0; i < osds; i++)); do
        mkdir -p "$(osd_dir "$i")"
        printf '[osd.%s]\nosd data = %s\nosd class dir = %s\nadmin socket = %s/run/osd.%s.asok\n' \
            "$i" "$(osd_dir "$i")" "$class_dir" "$dir" "$i" >>"$dir/ceph.conf"
    done
}

start() {
    if [ -f "$dir/ceph.conf" ] && timeout 10 ceph -c "$dir/ceph.conf" health >/dev/null 2>&1; then
        echo "cluster already running in $dir"; return 0
    fi
    command -v ceph-mon >/dev/null || die "ceph-mon is not installed (run scripts/install-deps.sh)"
    rm -rf "$dir"
    write_conf
    local c=(-c "$dir/ceph.conf") mon_host_text
    mon_host_text=$(awk -F' = ' '/^mon host/{print $2}' "$dir/ceph.conf")
    ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool "$dir/keyring" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
    local i id map=()
    for ((i = 0; i < mons; i++)); do map+=(--addv "${MON_IDS[$i]}" "[v2:$addr:$((port + i))]"); done
    monmaptool --create --clobber "${map[@]}" --fsid "$(awk '/^fsid/{print $3}' "$dir/ceph.conf")" "$dir/monmap" >/dev/null
    for ((i = 0; i < mons; i++)); do
        id=${MON_IDS[$i]}
        ceph-mon "${c[@]}" --mkfs -i "$id" --monmap "$dir/monmap" --keyring "$dir/keyring"
        ceph-mon "${c[@]}" -i "$id"
    done
    for i in $(seq 1 100); do timeout 5 ceph "${c[@]}" mon stat >/dev/null 2>&1 && break; sleep 0.2; done
    ceph "${c[@]}" osd set-require-min-compat-client mimic >/dev/null 2>&1 || true

    # Each OSD's key must exist before --mkfs, which fetches the mon config.
    # The mkfs runs in parallel (bluestore's takes seconds).
    local osd_uuid pids=()
    for ((i = 0; i < osds; i++)); do
        osd_uuid=$(cat /proc/sys/kernel/random/uuid)
        ceph "${c[@]}" auth get-or-create "osd.$i" mon 'allow profile osd' osd 'allow *' mgr 'allow profile osd' \
            -o "$(osd_dir "$i")/keyring" >/dev/null
        ceph "${c[@]}" osd new "$osd_uuid" "$i" >/dev/null
        ceph-osd "${c[@]}" -i "$i" --mkfs --osd-uuid "$osd_uuid" --keyring "$(osd_dir "$i")/keyring" \
            >"$dir/log/mkfs.osd.$i.out" 2>&1 &
        pids+=($!)
    done
    for ((i = 0; i < osds; i++)); do
        wait "${pids[$i]}" || die "ceph-osd --mkfs of osd.$i failed; see $dir/log/mkfs.osd.$i.out"
        ceph-osd "${c[@]}" -i "$i" --keyring "$(osd_dir "$i")/keyring"
    done

    ceph "${c[@]}" auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
        -o "$dir/mgr/keyring" >/dev/null
    if command -v ceph-mgr >/dev/null; then
        ceph-mgr "${c[@]}" -i x --keyring "$dir/mgr/keyring"
    fi

    local up
    for i in $(seq 1 150); do
        up=$(ceph "${c[@]}" osd dump 2>/dev/null | grep -c '^osd\.[0-9]* up') || true
        ((up == osds)) && break; sleep 0.2
    done
    ((up == osds)) || die "only $up of $osds OSDs came up; see $dir/log"
    ceph "${c[@]}" osd set-require-min-compat-client mimic >/dev/null
    if ((mons > 1)); then
        for i in $(seq 1 100); do
            [ "$(ceph "${c[@]}" quorum_status 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["quorum"]))' 2>/dev/null)" = "$mons" ] && break
            sleep 0.2
        done
    fi
    echo "cluster up in $dir (mon $mon_host_text, $osds $store OSD(s))"
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

# Stops (SIGTERM, then SIGKILL after 5 s), kills (SIGKILL at once) or starts one
# daemon of a running cluster, for fault tests. A memstore OSD loses every object
# when stopped, so tests pause it instead; a bluestore OSD can be restarted.
stop_daemon() {
    local name=$1 signal=$2 f="$dir/run/$1.pid" pid i
    [ -f "$f" ] || die "no pid file for $name in $dir/run"
    pid=$(cat "$f")
    kill "-$signal" "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    die "$name (pid $pid) did not end"
}

start_daemon() {
    local c=(-c "$dir/ceph.conf") store_now
    case "$1" in
        mon.[a-e]) ceph-mon "${c[@]}" -i "${1#mon.}" ;;
        mgr.x) ceph-mgr "${c[@]}" -i x --keyring "$dir/mgr/keyring" ;;
        osd.[0-9])
            store_now=$(awk -F' = ' '/^osd objectstore/{print $2}' "$dir/ceph.conf")
            [ "$store_now" = bluestore ] || die "cannot restart a memstore OSD (it lost its data); pause it instead"
            ceph-osd "${c[@]}" -i "${1#osd.}" --keyring "$(osd_dir "${1#osd.}")/keyring" ;;
        *) die "unknown daemon '$1' (mon.a-e, mgr.x, osd.N)" ;;
    esac
}

case "$cmd" in
    start) start ;;
    stop-daemon) stop_daemon "${4:?daemon name}" TERM ;;
    kill-daemon) stop_daemon "${4:?daemon name}" KILL ;;
    start-daemon) start_daemon "${4:?daemon name}" ;;
    stop) stop ;;
    env) echo "CEPH_CONF=$dir/ceph.conf" ;;
    *) die "usage: $0 start|stop|env [DIR] [PORT] | stop-daemon|kill-daemon|start-daemon DIR PORT NAME" ;;
esac
