#!/usr/bin/env bash
# Tests what we ship, the Tentacle .deb and the container image, against a running,
# seeded Ceph 20 cluster whose client.admin key is aes256k (Ceph 20's default):
#   scripts/artifacts-test.sh CLUSTER_DIR
# CLUSTER_DIR (a scripts/cluster.sh directory inside this project, started in the
# tentacle chroot and seeded by scripts/seed.py test) must be running.
#   (a) deb:   apt installs dist/ceph-rbd-exporter_<v>-1~forky_amd64.deb into a throwaway
#              copy of the bare forky tree (so apt resolves librados2 from forky, as on a
#              clean machine), checks Depends has librados2 (>= 20..., runs the installed
#              /usr/bin/ceph-rbd-exporter there and reads its /metrics; and that it ships
#              the systemd unit and /etc/default file (a conffile) of deploy/systemd, made
#              the system user, and neither enabled nor started the service.
#   (b) image: runs localhost/ceph-rbd-exporter:<v> with podman (--network host, the
#              cluster directory mounted read-only, as uid 10001) and reads its /metrics.
# Each must report ceph_rbd_exporter_up 1 and, for pool volumes, as many images as the
# tentacle chroot's own `rbd ls volumes` lists. The .deb and the image are built first
# (make deb, make image) only when missing or older than their sources.
# Podman's OCI runtime: the first of podman's default and runc that starts a container
# here; when none does, the image's root filesystem is run with chroot as uid 10001 and
# the output says so. CEPH_RBD_CONTAINER_RUNTIME=crun|runc|chroot forces one.
set -euo pipefail

project=$(cd "$(dirname "$0")/.." && pwd)
cd "$project"
t0=$SECONDS
die() { echo "artifacts-test: $*" >&2; exit 2; }
say() { echo "artifacts-test: $*"; }
. scripts/test-lib.sh

[ $# -eq 1 ] || die "usage: scripts/artifacts-test.sh CLUSTER_DIR"
[ "$(id -u)" -eq 0 ] || die "needs root (chroot, mounts, podman)"
dir=$(realpath "$1")
[ -f "$dir/ceph.conf" ] || die "no ceph.conf in $dir (start a cluster there first)"
case "$dir/" in "$project"/*) ;; *) die "$dir is not inside $project (the chroots see only the project)" ;; esac

version=$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)
deb="dist/ceph-rbd-exporter_${version}-1~forky_amd64.deb"
image="${CEPH_RBD_IMAGE:-localhost/ceph-rbd-exporter}:$version"

work=$(mktemp -d /var/tmp/ceph-rbd-exporter-artifacts.XXXXXX)
pids=()
container=
buildah_ctr=
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -z "$container" ] || podman rm -f -t 2 "$container" >/dev/null 2>&1 || true
    [ -z "$buildah_ctr" ] || buildah rm "$buildah_ctr" >/dev/null 2>&1 || true
    rm -rf "$work"
    say "finished in $((SECONDS - t0)) s"
}
trap cleanup EXIT


# --- artifacts: build only what is missing or stale ------------------------------------
deb_sources=(Cargo.toml Cargo.lock build.rs src alerts dashboards README.md scripts/deb.sh deploy/systemd)
if [ ! -f "$deb" ] || [ "$(newest "${deb_sources[@]}")" -gt "$(stat -c %Y "$deb")" ]; then
    say "$deb is missing or older than its sources: make deb"
    t1=$SECONDS
    make --no-print-directory deb RELEASE=tentacle || { echo "FAIL: make deb"; exit 1; }
    say "make deb took $((SECONDS - t1)) s"
else
    say "reusing $deb"
fi
image_sources=(Cargo.toml Cargo.lock build.rs src benches Dockerfile .dockerignore scripts/image.sh)
created=$(podman image inspect --format '{{.Created.Unix}}' "$image" 2>/dev/null || echo 0)
if [ "$(newest "${image_sources[@]}")" -gt "$created" ]; then
    say "$image is missing or older than its sources: make image"
    t1=$SECONDS
    make --no-print-directory image || { echo "FAIL: make image"; exit 1; }
    say "make image took $((SECONDS - t1)) s"
else
    say "reusing $image"
fi

# The truth, from Ceph 20's own CLI in the tentacle chroot.
expected=$(bash scripts/chroot.sh run tentacle timeout 60 rbd -c "$dir/ceph.conf" ls volumes | wc -l) \
    || die "rbd ls volumes failed in the tentacle chroot: is the cluster in $dir running?"
[ "$expected" -gt 0 ] || die "rbd ls volumes lists nothing: is the cluster in $dir seeded?"
say "rbd ls volumes (Ceph $(bash scripts/chroot.sh run tentacle ceph --version | awk '{ print $3 }')): $expected images"

# Waits for PID's /metrics on PORT to report a finished sample, then checks it.
check_metrics() {
    local what=$1 pid=$2 port=$3 log=$4 body= got deadline=$((SECONDS + 120))
    while [ $SECONDS -lt $deadline ]; do
        body=$(curl -fsS --max-time 10 "http://127.0.0.1:$port/metrics" 2>/dev/null) || body=
        grep -qx 'ceph_rbd_exporter_up 1' <<<"$body" \
            && grep -q '^ceph_rbd_pool_images{namespace="",pool="volumes"} ' <<<"$body" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    if ! grep -qx 'ceph_rbd_exporter_up 1' <<<"$body"; then
        fail "$what: no ceph_rbd_exporter_up 1 on :$port/metrics ($(grep '^ceph_rbd_exporter_up' <<<"$body" || echo 'no answer'))"
        echo "--- $what log (last 20 lines)"; tail -20 "$log" | sed 's/^/  /'
        return
    fi
    pass "$what: ceph_rbd_exporter_up 1"
    got=$(awk '$1 == "ceph_rbd_pool_images{namespace=\"\",pool=\"volumes\"}" { print $2 }' <<<"$body")
    if [ "$got" = "$expected" ]; then
        pass "$what: ceph_rbd_pool_images{namespace=\"\",pool=\"volumes\"} $got = rbd ls volumes"
    else
        fail "$what: ceph_rbd_pool_images{namespace=\"\",pool=\"volumes\"} is '${got:-absent}', rbd ls volumes lists $expected"
    fi
}

# --- (a) the .deb on a clean forky ---------------------------------------------------------
# The service part of the .deb, installed in the tree ROOT (no systemd runs there).
check_deb_service() {
    local root=$1 unit=usr/lib/systemd/system/ceph-rbd-exporter.service user
    if cmp -s deploy/systemd/ceph-rbd-exporter.service "$root/$unit" \
            && cmp -s deploy/systemd/ceph-rbd-exporter.default "$root/etc/default/ceph-rbd-exporter"; then
        pass "deb: /$unit and /etc/default/ceph-rbd-exporter are deploy/systemd's"
    else
        fail "deb: /$unit or /etc/default/ceph-rbd-exporter missing or not deploy/systemd's"
    fi
    if chroot "$root" dpkg-query -W -f '${Conffiles}' ceph-rbd-exporter | grep -q '^ /etc/default/ceph-rbd-exporter '; then
        pass "deb: /etc/default/ceph-rbd-exporter is a conffile"
    else
        fail "deb: /etc/default/ceph-rbd-exporter is no conffile"
    fi
    user=$(chroot "$root" getent passwd ceph-rbd-exporter || true)
    if [ -n "$user" ] && chroot "$root" getent group ceph-rbd-exporter >/dev/null \
            && [ "$(cut -d: -f4 <<<"$user")" = "$(chroot "$root" getent group ceph-rbd-exporter | cut -d: -f3)" ] \
            && [ "$(cut -d: -f3 <<<"$user")" -lt 1000 ] && [ "$(cut -d: -f7 <<<"$user")" = /usr/sbin/nologin ]; then
        pass "deb: system user and group ceph-rbd-exporter made ($user)"
    else
        fail "deb: no system user ceph-rbd-exporter in its own group with nologin: '$user'"
    fi
    # forky's own systemd (apt brings it in with librados2's dependencies), on the unit
    # as installed: verify (warnings fail) and the exposure score.
    local said
    if [ ! -x "$root/usr/bin/systemd-analyze" ]; then
        fail "deb: no systemd-analyze in the forky tree to verify the installed unit with"
    elif said=$(chroot "$root" systemd-analyze verify "/$unit" 2>&1) && [ -z "$said" ]; then
        pass "deb: systemd-analyze verify /$unit (systemd $(chroot "$root" systemd-analyze --version | awk 'NR == 1 { print $2 }'))"
    else
        fail "deb: systemd-analyze verify /$unit: $said"
    fi
    [ ! -x "$root/usr/bin/systemd-analyze" ] \
        || say "forky's $(chroot "$root" systemd-analyze security --offline=yes "/$unit" 2>&1 | grep -o 'Overall exposure.*' || echo 'systemd-analyze security failed')"
    if [ -e "$root/etc/systemd/system/multi-user.target.wants/ceph-rbd-exporter.service" ]; then
        fail "deb: the install enabled ceph-rbd-exporter.service (it must wait for a keyring)"
    else
        pass "deb: ceph-rbd-exporter.service not enabled by the install"
    fi
}

test_deb() {
    echo "== (a) $deb on a clean Debian forky"
    local depends root="$work/forky" port pid log="$work/deb-exporter.log"
    depends=$(dpkg-deb -f "$deb" Depends)
    if grep -q 'librados2 (>= 20' <<<"$depends"; then
        pass "deb: Depends: $depends"
    else
        fail "deb: Depends has no librados2 (>= 20...): $depends"
    fi
    bash scripts/chroot.sh prepare tentacle >/dev/null
    cp -a "$(bash scripts/chroot.sh base tentacle)" "$root"
    cp "$deb" "$root/tmp/"
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    # shellcheck disable=SC2016
    if ! unshare --mount --propagation private -- bash -c '
            mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" &&
            exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
                sh -c "apt-get -q update && apt-get -q -y install /tmp/$2"' \
            install "$root" "$(basename "$deb")" >"$work/apt.log" 2>&1; then
        fail "deb: apt-get install failed"; tail -20 "$work/apt.log" | sed 's/^/  /'; return
    fi
    pass "deb: apt-get install $(basename "$deb"): librados2 $(chroot "$root" dpkg-query -W -f '${Version}' librados2) from forky"
    check_deb_service "$root"
    port=$(free_port)
    # The cluster directory, read-only at its own path; the exporter runs as root here.
    # shellcheck disable=SC2016
    unshare --mount --propagation private -- bash -c '
        root=$1 dir=$2 port=$3
        mount -t proc proc "$root/proc" && mount --rbind /dev "$root/dev"
        mkdir -p "$root$dir" && mount --bind "$dir" "$root$dir" && mount -o remount,bind,ro "$root$dir"
        exec chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin /usr/bin/ceph-rbd-exporter \
            --ceph.config "$dir/ceph.conf" --ceph.user admin --web.listen-address "127.0.0.1:$port"' \
        run "$root" "$dir" "$port" >"$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    check_metrics "deb" "$pid" "$port" "$log"
    kill "$pid" 2>/dev/null || true
}

# --- (b) the container image ---------------------------------------------------------------
# A keyring the image's uid 10001 can read, mounted over the cluster's when that one is
# not readable by it (cluster.sh writes it 0600 root).
keyring_mount() {
    local keyring
    keyring=$(awk -F' *= *' '$1 == "keyring" { print $2; exit }' "$dir/ceph.conf")
    [ -n "$keyring" ] && [ -f "$keyring" ] || return 0
    if [ "$(stat -c %u "$keyring")" != 10001 ] && (( (8#$(stat -c %a "$keyring") & 4) == 0 )); then
        install -m 0400 -o 10001 -g 10001 "$keyring" "$work/keyring"
        echo "$work/keyring:$keyring"
    fi
}

# Prints the first runtime podman can start the image with: default, runc, ... or chroot.
probe_runtime() {
    local r opts
    for r in ${CEPH_RBD_CONTAINER_RUNTIME:-default runc}; do
        case "$r" in
            chroot) break ;;
            default) opts=() ;;
            *) command -v "$r" >/dev/null || continue; opts=(--runtime "$r") ;;
        esac
        if podman run --rm "${podman_opts[@]}" "${opts[@]}" --entrypoint /usr/local/bin/ceph-rbd-exporter \
                "$image" --version >/dev/null 2>"$work/probe-$r.log"; then
            echo "$r"; return
        fi
    done
    echo chroot
}

test_image() {
    echo "== (b) container image $image"
    local port pid log="$work/image-exporter.log" over runtime rados mnt args rt=() uid
    port=$(free_port)
    over=$(keyring_mount)
    [ -z "$over" ] || say "the cluster's keyring is not readable by uid 10001: mounting a copy owned by it over it"
    args=(--ceph.config="$dir/ceph.conf" --ceph.user=admin --web.listen-address="127.0.0.1:$port")
    mnt=$(podman image mount "$image")
    rados=$(dpkg-query --admindir="$mnt/var/lib/dpkg" -W -f '${Version}' librados2 2>/dev/null || echo none)
    podman image unmount "$image" >/dev/null
    if dpkg --compare-versions "$rados" ge 20; then pass "image: librados2 $rados"; else fail "image: librados2 is $rados, not >= 20"; fi
    # Explicit limits: podman's defaults (nofile 1048576) need CAP_SYS_RESOURCE, which
    # root lacks in some sandboxes; these are below the host's and plenty for the exporter.
    podman_opts=(--network host --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
    runtime=$(probe_runtime)
    case "$runtime" in
        chroot)
            if [ "${CEPH_RBD_CONTAINER_RUNTIME:-}" = chroot ]; then
                say "CEPH_RBD_CONTAINER_RUNTIME=chroot: not trying podman run"
            else
                say "podman cannot start containers here: $(grep -ho 'Error.*' "$work"/probe-*.log 2>/dev/null | paste -sd';')"
            fi
            say "running the image's root filesystem with chroot as uid 10001 instead (NOT podman run)"
            buildah_ctr=$(buildah from --pull=never "$image")
            mnt=$(buildah mount "$buildah_ctr")
            # shellcheck disable=SC2016
            unshare --mount --propagation private -- bash -c '
                root=$1 dir=$2 over=$3; shift 3
                mount -t proc proc "$root/proc" && mount --rbind /dev "$root/dev"
                mkdir -p "$root$dir" && mount --bind "$dir" "$root$dir" && mount -o remount,bind,ro "$root$dir"
                [ -z "$over" ] || mount --bind "${over%%:*}" "$root${over#*:}"
                exec chroot --userspec=10001:10001 "$root" /usr/bin/env -i HOME=/ \
                    PATH=/usr/local/bin:/usr/bin:/bin /usr/local/bin/ceph-rbd-exporter "$@"' \
                run "$mnt" "$dir" "$over" "${args[@]}" >"$log" 2>&1 &
            pid=$!
            pids+=("$pid") ;;
        *)
            if [ "$runtime" = default ]; then
                say "podman run (podman's default runtime, $(podman info --format '{{.Host.OCIRuntime.Name}}'))"
            else
                say "podman run --runtime $runtime ($(grep -ho 'Error.*' "$work/probe-default.log" 2>/dev/null | head -1 || true))"
                rt=(--runtime "$runtime")
            fi
            container=ceph-rbd-exporter-artifacts-$$
            podman run --rm --name "$container" "${podman_opts[@]}" "${rt[@]}" \
                -v "$dir:$dir:ro" ${over:+-v "$over:ro"} "$image" "${args[@]}" >"$log" 2>&1 &
            pid=$!
            pids+=("$pid") ;;
    esac
    check_metrics "image" "$pid" "$port" "$log"
    # Who the exporter runs as, seen from the host.
    local hostpid=$pid
    [ -z "$container" ] || hostpid=$(podman inspect --format '{{.State.Pid}}' "$container" 2>/dev/null || echo 0)
    uid=$(awk '/^Uid:/ { print $2 }' "/proc/$hostpid/status" 2>/dev/null || true)
    if [ "$uid" = 10001 ]; then pass "image: the exporter runs as uid 10001"; else fail "image: the exporter runs as uid '${uid:-?}', not 10001"; fi
}

test_deb
test_image
echo "== artifacts: $([ $fails -eq 0 ] && echo "PASS" || echo "FAIL ($fails failed)")"
[ $fails -eq 0 ]
