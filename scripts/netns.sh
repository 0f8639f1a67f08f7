#!/usr/bin/env bash
# Network namespaces that stand in for separate client hosts, so one machine
# can have RBD clients with different addresses (tests of watcher
# attribution). Needs root.
#
#   scripts/netns.sh up PREFIX N [NET]   bridge PREFIX-br with NET.1/24 on the host, and
#                                        namespaces PREFIX-1..N with NET.11, NET.12, ...
#   scripts/netns.sh down PREFIX         remove them all (and end what still runs inside)
#
# NET is the first three octets of a private /24, default 10.231.7. PREFIX is
# 1-8 lower-case letters or digits, starting with a letter (interface names
# are at most 15 characters). `up` first runs `down`, and `down` can run any
# number of times, so a failed run is cleaned by the next one.
#
# `up` prints one line per address: `host PREFIX-br NET.1` and then
# `PREFIX-I NET.(10+I)` for each namespace. Run a client inside with
# `ip netns exec PREFIX-I COMMAND`; it reaches a daemon bound to NET.1.
set -euo pipefail

die() { echo "netns.sh: $*" >&2; exit 1; }

check_prefix() {
    [[ $1 =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "PREFIX must be 1-8 lower-case letters or digits, starting with a letter: '$1'"
}

check_net() {
    [[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || die "NET must be three octets, e.g. 10.231.7: '$1'"
    local o
    for o in "${BASH_REMATCH[@]:1}"; do
        ((10#$o <= 255)) || die "NET has an octet above 255: '$1'"
    done
}

# Namespaces named PREFIX-<number>.
our_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$1-[0-9]+\$" || true
}

# Host-side links: the bridge and the veth ends PREFIX-h<number>.
our_links() {
    ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' \
        | grep -E "^$1-(br|h[0-9]+)\$" || true
}

down() {
    local prefix=$1 ns pids i link
    for ns in $(our_namespaces "$prefix"); do
        # Whatever still runs inside (holders of a failed test) would keep
        # the namespace alive after `ip netns del`.
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            kill $pids 2>/dev/null || true
            for i in $(seq 1 30); do
                pids=$(ip netns pids "$ns" 2>/dev/null || true)
                [ -z "$pids" ] && break
                sleep 0.1
            done
            [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
    # Deleting a namespace deletes its veth end and so the host end; the
    # bridge (and any veth left by an interrupted `up`) goes here.
    for link in $(our_links "$prefix"); do
        ip link del "$link" 2>/dev/null || true
    done
}

up() {
    local prefix=$1 n=$2 net=$3 br="$1-br" i ns addr
    [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= 200)) || die "N must be 1-200: '$n'"
    down "$prefix"
    # Refuse a /24 that is already in use here: it is not ours.
    if ip -o -4 addr show | grep -qE "inet $net\.[0-9]+/"; then
        die "$net.0/24 is already assigned on this machine: $(ip -o -4 addr show | grep -E "inet $net\.[0-9]+/" | awk '{print $2, $4}' | head -1)"
    fi
    if ip -4 route show | grep -qE "^$net\.0/24 "; then
        die "$net.0/24 is already routed on this machine"
    fi
    trap 'down "$prefix"' ERR
    ip link add "$br" type bridge
    ip addr add "$net.1/24" dev "$br"
    ip link set "$br" up
    echo "host $br $net.1"
    for i in $(seq 1 "$n"); do
        ns="$prefix-$i"
        addr="$net.$((10 + i))"
        ip netns add "$ns"
        ip link add "$prefix-h$i" type veth peer name "$prefix-n$i"
        ip link set "$prefix-n$i" netns "$ns"
        ip link set "$prefix-h$i" master "$br"
        ip link set "$prefix-h$i" up
        ip -n "$ns" link set lo up
        ip -n "$ns" link set "$prefix-n$i" name eth0
        ip -n "$ns" addr add "$addr/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" route add default via "$net.1"
        echo "$ns $addr"
    done
    trap - ERR
}

[ "$(id -u)" = 0 ] || die "needs root (ip netns)"
command -v ip >/dev/null || die "ip (iproute2) is not installed"

case "${1:-}" in
    up)
        check_prefix "${2:?usage: $0 up PREFIX N [NET]}"
        net=${4:-10.231.7}
        check_net "$net"
        up "$2" "${3:?usage: $0 up PREFIX N [NET]}" "$net"
        ;;
    down)
        check_prefix "${2:?usage: $0 down PREFIX}"
        down "$2"
        ;;
    *) die "usage: $0 up PREFIX N [NET] | down PREFIX" ;;
esac
