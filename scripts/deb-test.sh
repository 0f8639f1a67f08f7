#!/usr/bin/env bash
# The bare-metal path of the README, on this Debian 12 machine itself: the bookworm .deb
# (make deb RELEASE=pacific) installed with `dpkg -i`, the packaged binary run the way its
# systemd unit runs it against a running test cluster, then removed and purged.
#   scripts/deb-test.sh CLUSTER_DIR
# CLUSTER_DIR: a running, seeded scripts/cluster.sh cluster of this host's Ceph (16.2).
# Checks, each a PASS/FAIL line:
#   - dpkg -i succeeds with the host's own librados2 (Depends: librados2 (>= 16.2.0~));
#   - the unit and /etc/default/ceph-rbd-exporter (a conffile) are deploy/systemd's, the
#     system user and group exist, nothing was enabled or started, and the host's
#     systemd-analyze verifies the installed unit;
#   - /usr/bin/ceph-rbd-exporter, started as the unit would start it (ExecStart read from
#     the installed unit, its Environment= and the installed /etc/default file, as user
#     ceph-rbd-exporter with no capabilities and no_new_privs, state directory
#     /var/lib/ceph-rbd-exporter 0700 as StateDirectory= makes it), reports
#     ceph_rbd_exporter_up 1 and as many images in pool volumes as `rbd ls volumes`, and
#     writes its first-seen state into the state directory; the only setting changed is
#     the one the README tells the operator to change (the cephx user and its keyring,
#     here the cluster's admin key in a keyring readable by the service's group);
#   - dpkg -r removes every file but the conffile, dpkg --purge removes the conffile and
#     the state directory, and nothing the package installed is left behind.
# What cannot be done here: `systemctl enable --now` (no systemd runs on this machine;
# tests/systemd.rs and scripts/artifacts-test.sh check the unit itself). The system user
# stays after purge, as Debian's packages leave theirs; this script removes it at the end
# to leave the machine as it found it. Refuses to run when the package is already
# installed (it would replace an operator's installation).
set -euo pipefail

project=$(cd "$(dirname "$0")/.." && pwd)
cd "$project"
t0=$SECONDS
fails=0
die() { echo "deb-test: $*" >&2; exit 2; }
say() { echo "deb-test: $*"; }
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

[ $# -eq 1 ] || die "usage: scripts/deb-test.sh CLUSTER_DIR"
[ "$(id -u)" -eq 0 ] || die "needs root (dpkg -i)"
dir=$(realpath "$1")
[ -f "$dir/ceph.conf" ] || die "no ceph.conf in $dir (start a cluster there first)"
status=$(dpkg-query -W -f '${db:Status-Abbrev}' ceph-rbd-exporter 2>/dev/null || true)
case "$status" in
    ""|"un "*|"pn "*) ;;
    *) die "ceph-rbd-exporter is already installed here ($status); this test installs and purges it: remove it first (dpkg --purge ceph-rbd-exporter)" ;;
esac

version=$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)
deb="dist/ceph-rbd-exporter_${version}-1~bookworm_amd64.deb"
unit=/usr/lib/systemd/system/ceph-rbd-exporter.service
work=$(mktemp -d /var/tmp/ceph-rbd-exporter-deb-test.XXXXXX)
pid=
installed=no
cleanup() {
    [ -z "$pid" ] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    if [ "$installed" = yes ]; then
        dpkg --purge ceph-rbd-exporter >/dev/null 2>&1 || true
    fi
    if getent passwd ceph-rbd-exporter >/dev/null; then deluser --quiet --system ceph-rbd-exporter >/dev/null 2>&1 || true; fi
    if getent group ceph-rbd-exporter >/dev/null; then delgroup --quiet --system ceph-rbd-exporter >/dev/null 2>&1 || true; fi
    rm -rf "$work"
    say "finished in $((SECONDS - t0)) s"
}
trap cleanup EXIT

newest() { find "$@" -type f -printf '%T@\n' | sort -n | tail -1 | cut -d. -f1; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- the package: built when missing or older than its sources ------------------------------
deb_sources=(Cargo.toml Cargo.lock build.rs src alerts dashboards README.md scripts/deb.sh deploy/systemd)
if [ ! -f "$deb" ] || [ "$(newest "${deb_sources[@]}")" -gt "$(stat -c %Y "$deb")" ]; then
    say "$deb is missing or older than its sources: make deb RELEASE=pacific"
    make --no-print-directory deb RELEASE=pacific >"$work/deb.log" 2>&1 \
        || { tail -20 "$work/deb.log"; echo "FAIL: make deb RELEASE=pacific"; exit 1; }
else
    say "reusing $deb"
fi
expected=$(timeout 60 rbd -c "$dir/ceph.conf" ls volumes | wc -l) \
    || die "rbd ls volumes failed: is the cluster in $dir running?"
[ "$expected" -gt 0 ] || die "rbd ls volumes lists nothing: is the cluster in $dir seeded?"

# --- dpkg -i ----------------------------------------------------------------------------------
echo "== dpkg -i $deb on this $(. /etc/os-release && echo "$PRETTY_NAME") host"
installed=yes
if ! dpkg -i "$deb" >"$work/dpkg-i.log" 2>&1; then
    fail "dpkg -i $deb"; sed 's/^/  /' "$work/dpkg-i.log"; exit 1
fi
[ "$(dpkg-query -W -f '${Status}' ceph-rbd-exporter)" = "install ok installed" ] \
    && pass "dpkg -i: installed, with librados2 $(dpkg-query -W -f '${Version}' librados2) (Depends: $(dpkg-deb -f "$deb" Depends))" \
    || fail "dpkg -i: status is $(dpkg-query -W -f '${Status}' ceph-rbd-exporter)"
mapfile -t files < <(dpkg -L ceph-rbd-exporter | while read -r f; do [ -d "$f" ] || echo "$f"; done)
say "${#files[@]} files installed"

if cmp -s deploy/systemd/ceph-rbd-exporter.service "$unit" \
        && cmp -s deploy/systemd/ceph-rbd-exporter.default /etc/default/ceph-rbd-exporter; then
    pass "$unit and /etc/default/ceph-rbd-exporter are deploy/systemd's"
else
    fail "$unit or /etc/default/ceph-rbd-exporter missing or not deploy/systemd's"
fi
dpkg-query -W -f '${Conffiles}' ceph-rbd-exporter | grep -q '^ /etc/default/ceph-rbd-exporter ' \
    && pass "/etc/default/ceph-rbd-exporter is a conffile" || fail "/etc/default/ceph-rbd-exporter is no conffile"
user=$(getent passwd ceph-rbd-exporter || true)
gid=$(getent group ceph-rbd-exporter | cut -d: -f3)
if [ -n "$user" ] && [ -n "$gid" ] && [ "$(cut -d: -f4 <<<"$user")" = "$gid" ] \
        && [ "$(cut -d: -f3 <<<"$user")" -lt 1000 ] && [ "$(cut -d: -f7 <<<"$user")" = /usr/sbin/nologin ]; then
    pass "system user and group ceph-rbd-exporter made ($user)"
else
    fail "no system user ceph-rbd-exporter in its own group with nologin: '$user'"
fi
if compgen -G '/etc/systemd/system/*.wants/ceph-rbd-exporter.service' >/dev/null; then
    fail "the install enabled ceph-rbd-exporter.service (it must wait for a keyring)"
else
    pass "ceph-rbd-exporter.service not enabled by the install"
fi
pgrep -x ceph-rbd-export >/dev/null && fail "the install started an exporter" || pass "the install started nothing"
if ! command -v systemd-analyze >/dev/null; then
    fail "no systemd-analyze on this host to verify $unit with"
elif said=$(systemd-analyze verify "$unit" 2>&1) && [ -z "$said" ]; then
    pass "systemd-analyze verify $unit (systemd $(systemd-analyze --version | awk 'NR == 1 { print $2 }'))"
else
    fail "systemd-analyze verify $unit: $said"
fi

# --- the packaged binary, started as its unit starts it ----------------------------------------
echo "== /usr/bin/ceph-rbd-exporter as the unit runs it, against the cluster in $dir"
exec_start=$(awk -F= '$1 == "ExecStart" { sub(/^ExecStart=/, ""); print; exit }' "$unit")
[ "$exec_start" = '/usr/bin/ceph-rbd-exporter $ARGS' ] \
    || die "the unit's ExecStart changed ('$exec_start'): update this script's emulation of it"
# The operator's step of the README: a keyring for the service's group, named in ceph.conf.
keyring=$(awk -F' *= *' '$1 == "keyring" { print $2; exit }' "$dir/ceph.conf")
[ -f "$keyring" ] || die "no keyring named in $dir/ceph.conf"
install -m 0750 -o root -g ceph-rbd-exporter -d "$work/etc"
install -m 0640 -o root -g ceph-rbd-exporter "$keyring" "$work/etc/keyring"
sed "s|^\([[:space:]]*keyring[[:space:]]*=\).*|\1 $work/etc/keyring|" "$dir/ceph.conf" >"$work/etc/ceph.conf"
chmod 0644 "$work/etc/ceph.conf"
chmod 0755 "$work"
# StateDirectory=ceph-rbd-exporter, StateDirectoryMode=0700.
install -m 0700 -o ceph-rbd-exporter -g ceph-rbd-exporter -d /var/lib/ceph-rbd-exporter
port=$(free_port)
env_args=()
while IFS= read -r line; do
    case "$line" in ""|"#"*) continue ;; esac
    env_args+=("$line")
done < <(awk -F'Environment=' '/^Environment=/ { print $2 }' "$unit"; cat /etc/default/ceph-rbd-exporter)
env_args+=("CEPH_RBD_EXPORTER_CEPH_USER=admin" "CEPH_RBD_EXPORTER_CEPH_CONFIG=$work/etc/ceph.conf"
    "CEPH_RBD_EXPORTER_WEB_LISTEN_ADDRESS=127.0.0.1:$port")
ARGS=$(printf '%s\n' "${env_args[@]}" | awk -F= '$1 == "ARGS" { v = substr($0, 6) } END { print v }')
# shellcheck disable=SC2086 # $ARGS is split as systemd splits it in ExecStart
(cd / && exec setpriv --reuid=ceph-rbd-exporter --regid=ceph-rbd-exporter --init-groups \
    --no-new-privs --inh-caps=-all --bounding-set=-all -- \
    env -i PATH=/usr/bin:/bin "${env_args[@]}" /usr/bin/ceph-rbd-exporter $ARGS) \
    >"$work/exporter.log" 2>&1 &
pid=$!
body=
deadline=$((SECONDS + 120))
while [ $SECONDS -lt $deadline ]; do
    body=$(curl -fsS --max-time 10 "http://127.0.0.1:$port/metrics" 2>/dev/null) || body=
    grep -qx 'ceph_rbd_exporter_up 1' <<<"$body" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
done
if grep -qx 'ceph_rbd_exporter_up 1' <<<"$body"; then
    pass "packaged binary as user ceph-rbd-exporter: ceph_rbd_exporter_up 1"
    got=$(awk '$1 == "ceph_rbd_pool_images{namespace=\"\",pool=\"volumes\"}" { print $2 }' <<<"$body")
    [ "$got" = "$expected" ] && pass "ceph_rbd_pool_images{pool=\"volumes\"} $got = rbd ls volumes" \
        || fail "ceph_rbd_pool_images{pool=\"volumes\"} is '${got:-absent}', rbd ls volumes lists $expected"
else
    fail "packaged binary: no ceph_rbd_exporter_up 1 on :$port ($(grep '^ceph_rbd_exporter_up' <<<"$body" || echo 'no answer'))"
    tail -20 "$work/exporter.log" | sed 's/^/  /'
fi
state_files=$(find /var/lib/ceph-rbd-exporter -type f | wc -l)
owner=$(find /var/lib/ceph-rbd-exporter -type f -printf '%u\n' | sort -u | paste -sd,)
[ "$state_files" -gt 0 ] && [ "$owner" = ceph-rbd-exporter ] \
    && pass "first-seen state written to /var/lib/ceph-rbd-exporter ($state_files file(s), owner $owner)" \
    || fail "no state in /var/lib/ceph-rbd-exporter owned by the service user (files: $state_files, owners: $owner)"
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=

# --- dpkg -r, dpkg --purge --------------------------------------------------------------------
echo "== dpkg -r and dpkg --purge"
dpkg -r ceph-rbd-exporter >"$work/dpkg-r.log" 2>&1 || { fail "dpkg -r"; sed 's/^/  /' "$work/dpkg-r.log"; }
left=()
for f in "${files[@]}"; do
    [ "$f" = /etc/default/ceph-rbd-exporter ] || [ ! -e "$f" ] || left+=("$f")
done
[ ${#left[@]} -eq 0 ] && [ -f /etc/default/ceph-rbd-exporter ] \
    && pass "dpkg -r: every file gone but the conffile ($(dpkg-query -W -f '${Status}' ceph-rbd-exporter))" \
    || fail "dpkg -r: left ${left[*]:-nothing}, conffile $([ -f /etc/default/ceph-rbd-exporter ] && echo kept || echo gone)"
dpkg --purge ceph-rbd-exporter >"$work/dpkg-purge.log" 2>&1 || { fail "dpkg --purge"; sed 's/^/  /' "$work/dpkg-purge.log"; }
installed=no
left=()
for f in "${files[@]}" /var/lib/ceph-rbd-exporter; do [ ! -e "$f" ] || left+=("$f"); done
status=$(dpkg-query -W -f '${db:Status-Abbrev}' ceph-rbd-exporter 2>/dev/null || true)
if [ ${#left[@]} -eq 0 ] && { [ -z "$status" ] || [ "${status:0:2}" = "pn" ] || [ "${status:0:2}" = "un" ]; }; then
    pass "dpkg --purge: nothing left (conffile and /var/lib/ceph-rbd-exporter gone), package unknown to dpkg"
else
    fail "dpkg --purge: left ${left[*]:-nothing}, dpkg status '$status'"
fi

if [ "$fails" -gt 0 ]; then
    echo "deb-test: $fails check(s) failed"
    exit 1
fi
echo "deb-test: all checks passed"
