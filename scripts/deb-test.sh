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
#   - then the README's "Bare metal with systemd" steps under a real systemd: no systemd
#     runs as this machine's PID 1, so a Debian 12 tree with systemd 252 and librados2
#     (mmdebstrap, cached in $CEPH_RBD_CHROOTS/bookworm-systemd, ~60 s the first time) is
#     booted with systemd as PID 1 of its own PID, mount, UTS and cgroup namespaces (the
#     host's network: the cluster is on loopback), as a container manager would; inside it:
#     dpkg -i, the read-only cephx user's keyring chowned as the README says, the listen
#     address set in /etc/default/ceph-rbd-exporter, `systemctl enable --now`; the service
#     must run as its user with no capabilities, no_new_privs and a seccomp filter, serve
#     the cluster's images, write its state, and stop and purge cleanly. The tree's units
#     that would touch the host (sysctl, binfmt, module loading, udev, gettys) are masked
#     and /sys and /proc/sys are read-only in it, as systemd-nspawn makes them.
# The system user stays after purge, as Debian's packages leave theirs; this script
# removes it at the end to leave the machine as it found it. Refuses to run when the
# package is already installed (it would replace an operator's installation).
set -euo pipefail

project=$(cd "$(dirname "$0")/.." && pwd)
cd "$project"
t0=$SECONDS
die() { echo "deb-test: $*" >&2; exit 2; }
say() { echo "deb-test: $*"; }
. scripts/test-lib.sh

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
made_user=no
cleanup() {
    [ -z "$pid" ] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    ! declare -F sd_stop >/dev/null || sd_stop
    [ "$made_user" = no ] || ceph -c "$dir/ceph.conf" auth rm client.rbd-exporter >/dev/null 2>&1 || true
    if [ "$installed" = yes ]; then
        dpkg --purge ceph-rbd-exporter >/dev/null 2>&1 || true
    fi
    if getent passwd ceph-rbd-exporter >/dev/null; then deluser --quiet --system ceph-rbd-exporter >/dev/null 2>&1 || true; fi
    if getent group ceph-rbd-exporter >/dev/null; then delgroup --quiet --system ceph-rbd-exporter >/dev/null 2>&1 || true; fi
    rm -rf "$work"
    say "finished in $((SECONDS - t0)) s"
}
trap cleanup EXIT


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
# Only the packaged binary counts: other exporters may run on this machine (make soak).
started=
for p in $(pgrep -x ceph-rbd-export || true); do
    [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = /usr/bin/ceph-rbd-exporter ] && started="$started $p"
done
[ -n "$started" ] && fail "the install started an exporter (pid$started)" || pass "the install started nothing"
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

# --- the README's bare-metal steps under a real systemd ---------------------------------------
echo "== the README's bare-metal steps under systemd as PID 1 (Debian 12 tree, own namespaces)"
cache=${CEPH_RBD_CHROOTS:-/var/cache/ceph-rbd-exporter/chroots}/bookworm-systemd
if [ ! -x "$cache/lib/systemd/systemd" ] || [ ! -e "$cache/usr/lib/x86_64-linux-gnu/librados.so.2" ]; then
    say "making $cache with mmdebstrap (systemd, librados2)"
    rm -rf "$cache.new"
    mmdebstrap --variant=minbase --include=systemd,systemd-sysv,dbus,librados2,adduser \
        bookworm "$cache.new" >"$work/mmdebstrap.log" 2>&1 \
        || { tail -20 "$work/mmdebstrap.log"; die "mmdebstrap of the bookworm systemd tree failed"; }
    rm -rf "$cache" && mv "$cache.new" "$cache"
fi
sd_root="$work/sdroot"
cp -a "$cache" "$sd_root"
for u in systemd-sysctl systemd-binfmt systemd-modules-load systemd-udevd systemd-udev-trigger \
        systemd-udev-settle console-getty getty@tty1 serial-getty@console systemd-timesyncd; do
    ln -sf /dev/null "$sd_root/etc/systemd/system/$u.service"
done
cp "$deb" "$sd_root/root/"
# /etc/ceph as on a Ceph client host: a ceph.conf naming the mons, and the read-only
# user's keyring (the README's `ceph auth get-or-create ... -o`).
mkdir -p "$sd_root/etc/ceph"
{
    echo "[global]"
    grep -E '^(fsid|mon host|auth (cluster|service|client) required|ms bind ipv6|ms bind msgr1) *=' "$dir/ceph.conf"
} >"$sd_root/etc/ceph/ceph.conf"
sd_user=client.rbd-exporter
ceph -c "$dir/ceph.conf" auth get "$sd_user" >/dev/null 2>&1 || made_user=yes
ceph -c "$dir/ceph.conf" auth get-or-create "$sd_user" mon 'profile rbd' osd 'profile rbd-read-only' \
    -o "$sd_root/etc/ceph/ceph.client.rbd-exporter.keyring" \
    || die "ceph auth get-or-create $sd_user failed"
sd_port=$(free_port)

# Boots systemd in the tree: in a cgroup of its own (then its own cgroup namespace, so
# it manages that subtree only), /sys and /proc/sys read-only, /run and /tmp tmpfs.
boot_systemd() {
    local h
    for h in /sys/fs/cgroup/*/; do
        [ ! -L "${h%/}" ] || continue
        mkdir -p "$h/ceph-rbd-exporter-deb-test" 2>/dev/null || continue
        echo $BASHPID >"$h/ceph-rbd-exporter-deb-test/cgroup.procs" 2>/dev/null || true
    done
    # shellcheck disable=SC2016
    exec unshare --pid --fork --mount --uts --cgroup --propagation private bash -c '
        root=$1
        set -e
        mount --bind "$root" "$root"
        mount -t proc proc "$root/proc"
        mount --bind "$root/proc/sys" "$root/proc/sys" && mount -o remount,bind,ro "$root/proc/sys"
        mount --rbind /sys "$root/sys" && mount -o remount,bind,ro "$root/sys"
        mount --rbind /dev "$root/dev"
        mount -t tmpfs -o mode=0755 tmpfs "$root/run"
        mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
        hostname deb-test
        # pivot_root, not chroot: the kernel refuses user namespaces (the unit'"'"'s
        # PrivateUsers=yes) to a chrooted process.
        cd "$root" && pivot_root . . && umount -l .
        exec /usr/bin/env -i container=other /lib/systemd/systemd --system --log-target=journal' \
        boot "$sd_root"
}
boot_systemd >"$work/systemd.log" 2>&1 &
sd_unshare=$!
sd_pid=
for _ in $(seq 50); do
    sd_pid=$(pgrep -P "$sd_unshare" -x systemd || true)
    [ -n "$sd_pid" ] && break
    sleep 0.2
done
[ -n "$sd_pid" ] || { cat "$work/systemd.log"; die "systemd did not start in the tree"; }
inside() { nsenter -t "$sd_pid" -m -p -u -C -r -w /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
state=
for _ in $(seq 60); do
    state=$(inside systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
    sleep 0.5
done
case "$state" in
    running) pass "systemd $(inside systemctl --version | awk 'NR == 1 { print $2 }') booted as PID 1 of the tree: $state" ;;
    *) fail "systemd in the tree: $state ($(inside systemctl --failed --plain --no-legend 2>&1 | paste -sd';'))" ;;
esac
sd_stop() {
    [ -n "$sd_pid" ] || return 0
    kill -s SIGRTMIN+4 "$sd_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$sd_unshare" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$sd_unshare" "$sd_pid" 2>/dev/null || true
    wait "$sd_unshare" 2>/dev/null || true
    find /sys/fs/cgroup/*/ceph-rbd-exporter-deb-test -depth -type d -exec rmdir {} \; 2>/dev/null || true
    sd_pid=
}

# The README's steps, as root in the booted system.
if inside dpkg -i "/root/$(basename "$deb")" >"$work/sd-dpkg.log" 2>&1; then
    pass "systemd: dpkg -i $(basename "$deb")"
else
    fail "systemd: dpkg -i"; sed 's/^/  /' "$work/sd-dpkg.log"
fi
inside chown root:ceph-rbd-exporter /etc/ceph/ceph.client.rbd-exporter.keyring
inside chmod 0640 /etc/ceph/ceph.client.rbd-exporter.keyring
inside sed -i "s|^#CEPH_RBD_EXPORTER_WEB_LISTEN_ADDRESS=.*|CEPH_RBD_EXPORTER_WEB_LISTEN_ADDRESS=127.0.0.1:$sd_port|" \
    /etc/default/ceph-rbd-exporter
if inside systemctl enable --now ceph-rbd-exporter >"$work/sd-enable.log" 2>&1; then
    pass "systemd: systemctl enable --now ceph-rbd-exporter"
else
    fail "systemd: systemctl enable --now"; sed 's/^/  /' "$work/sd-enable.log"
fi
body=
for _ in $(seq 120); do
    body=$(curl -fsS --max-time 10 "http://127.0.0.1:$sd_port/metrics" 2>/dev/null) || body=
    grep -qx 'ceph_rbd_exporter_up 1' <<<"$body" && break
    [ "$(inside systemctl is-failed ceph-rbd-exporter 2>/dev/null)" != failed ] || break
    sleep 1
done
got=$(awk '$1 == "ceph_rbd_pool_images{namespace=\"\",pool=\"volumes\"}" { print $2 }' <<<"$body")
if grep -qx 'ceph_rbd_exporter_up 1' <<<"$body" && [ "$got" = "$expected" ]; then
    pass "systemd: the service serves ceph_rbd_exporter_up 1 and $got images in volumes (rbd ls: $expected), as $sd_user"
else
    fail "systemd: no up 1 with $expected images in volumes ($(grep '^ceph_rbd_exporter_up' <<<"$body" || echo 'no answer'), images '${got:-absent}')"
    inside systemctl status --no-pager ceph-rbd-exporter 2>&1 | tail -20 | sed 's/^/  /'
fi
main=$(inside systemctl show -P MainPID ceph-rbd-exporter)
proc_status=$(inside cat "/proc/$main/status" 2>/dev/null || true)
owner=$(awk '$1 == "Uid:" { print $2 }' <<<"$proc_status")
if [ -n "$proc_status" ] && [ "$(inside id -u ceph-rbd-exporter)" = "$owner" ] \
        && grep -q '^NoNewPrivs:[[:space:]]*1$' <<<"$proc_status" \
        && grep -q '^CapEff:[[:space:]]*0*$' <<<"$proc_status" \
        && grep -q '^CapBnd:[[:space:]]*0*$' <<<"$proc_status" \
        && grep -q '^Seccomp:[[:space:]]*2$' <<<"$proc_status"; then
    pass "systemd: the service runs as ceph-rbd-exporter, no_new_privs, no capabilities, seccomp filter"
else
    fail "systemd: the service's process is not confined as the unit says: $(grep -E '^(Uid|NoNewPrivs|CapEff|CapBnd|Seccomp):' <<<"$proc_status" | paste -sd' ')"
fi
if inside find /var/lib/ceph-rbd-exporter -type f -user ceph-rbd-exporter | grep -q .; then
    pass "systemd: first-seen state written to its StateDirectory"
else
    fail "systemd: nothing written to /var/lib/ceph-rbd-exporter"
fi
errors=$(inside journalctl -u ceph-rbd-exporter --no-pager -o cat | grep -ciE ' (ERROR|WARN) ' || true)
[ "$errors" = 0 ] && pass "systemd: no ERROR or WARN in journalctl -u ceph-rbd-exporter" \
    || { fail "systemd: $errors ERROR/WARN lines in the journal"; inside journalctl -u ceph-rbd-exporter --no-pager -o cat | tail -10 | sed 's/^/  /'; }
inside systemctl disable --now ceph-rbd-exporter >/dev/null 2>&1 || true
if inside dpkg --purge ceph-rbd-exporter >"$work/sd-purge.log" 2>&1 \
        && [ ! -e "$sd_root/usr/lib/systemd/system/ceph-rbd-exporter.service" ] \
        && [ ! -e "$sd_root/var/lib/ceph-rbd-exporter" ] && [ ! -e "$sd_root/etc/default/ceph-rbd-exporter" ] \
        && ! compgen -G "$sd_root/etc/systemd/system/*.wants/ceph-rbd-exporter.service" >/dev/null; then
    pass "systemd: stopped, disabled and purged, nothing left"
else
    fail "systemd: purge left files behind"; sed 's/^/  /' "$work/sd-purge.log"
fi
sd_stop

if [ "$fails" -gt 0 ]; then
    echo "deb-test: $fails check(s) failed"
    exit 1
fi
echo "deb-test: all checks passed"
