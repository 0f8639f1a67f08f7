#!/usr/bin/env bash
# Debian chroots holding newer Ceph releases, for building and testing the exporter
# against them on a Debian 12 host (which has only Ceph 16.2):
#   reef      Ceph 18.2 from Debian 13 "trixie"  (rustc 1.85)
#   tentacle  Ceph 20.2 from Debian 14 "forky"   (rustc 1.97)
#
#   scripts/chroot.sh prepare RELEASE        build the chroot, or reuse the cached one
#   scripts/chroot.sh rebuild RELEASE        build it from scratch
#   scripts/chroot.sh run RELEASE CMD...     run CMD inside it, in this project's directory
#   scripts/chroot.sh path RELEASE           print where it lives
#   scripts/chroot.sh base RELEASE           print the path of the bare minbase tree
#                                            (no Ceph; for installing the .deb on a clean system)
#
# Chroots are cached under $CEPH_RBD_CHROOTS (default /var/cache/ceph-rbd-exporter/chroots).
# A chroot is reused while its stamp (suite, package list, this script's recipe version)
# matches; otherwise, or when half-built, it is made again from nothing (~75 s each with
# a warm network). `run` works in a private mount namespace: the bind mounts (/proc, /dev,
# this project at the same path, the host's cargo registry cache) vanish with the last
# process in it, so nothing is left mounted on the host, whatever happens. Daemons started
# by `run` (scripts/cluster.sh) keep their namespace alive until they are stopped.
set -euo pipefail

RECIPE=1
root=${CEPH_RBD_CHROOTS:-/var/cache/ceph-rbd-exporter/chroots}
project=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "chroot.sh: $*" >&2; exit 1; }
say() { echo "chroot.sh: $*"; }

# What the tests and the build need inside: the daemons and CLI of that release, its
# Python bindings for scripts/seed.py and scripts/holder.py, its librados headers for the
# build and Debian's own Rust toolchain, dpkg-dev for `make deb`.
PACKAGES=(
    ceph-mon ceph-osd ceph-mgr ceph-common rbd-mirror
    python3-rados python3-rbd
    librados-dev libradospp-dev g++ pkg-config make
    rustc cargo dpkg-dev
    procps iproute2 curl jq ca-certificates openssl
)

suite_of() {
    case "$1" in
        reef) echo trixie ;;
        tentacle) echo forky ;;
        *) die "unknown release '$1' (expected reef or tentacle)" ;;
    esac
}

stamp_text() {
    local suite
    suite=$(suite_of "$1")
    echo "recipe=$RECIPE suite=$suite packages=${PACKAGES[*]}"
}

# debootstrap --variant=minbase; forky is not known to bookworm's debootstrap by name,
# so it is bootstrapped with the sid script. Forky's Release file carries a Valid-Until
# that snapshot mirrors can outlive, hence Check-Valid-Until=false for its apt.
bootstrap() {
    local release=$1 dir=$2 suite script=()
    suite=$(suite_of "$release")
    [ "$suite" = forky ] && script=(/usr/share/debootstrap/scripts/sid)
    command -v debootstrap >/dev/null || die "debootstrap is not installed (run scripts/install-deps.sh)"
    say "debootstrap --variant=minbase $suite $dir"
    debootstrap --variant=minbase "$suite" "$dir" http://deb.debian.org/debian "${script[@]}" \
        >"$dir.debootstrap.log" 2>&1 || { tail -20 "$dir.debootstrap.log" >&2; die "debootstrap $suite failed (log: $dir.debootstrap.log)"; }
    rm -f "$dir.debootstrap.log"
    printf 'Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\n' \
        >"$dir/etc/apt/apt.conf.d/99ceph-rbd-exporter"
    # No service may start inside (the packages' postinst would try).
    printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
    chmod 755 "$dir/usr/sbin/policy-rc.d"
}

# Runs a command in DIR with /proc, /dev and the project mounted, in a private mount
# namespace. Environment: a clean one, plus what the caller passes in CHROOT_ENV.
enter() {
    local dir=$1; shift
    [ "$(id -u)" -eq 0 ] || die "needs root (chroot and mount)"
    cp -L /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
    mkdir -p "$dir$project" "$dir/root/.cargo/registry" "$dir/proc" "$dir/dev"
    local reg="${CARGO_HOME:-$HOME/.cargo}/registry"
    mkdir -p "$reg"
    # shellcheck disable=SC2016
    unshare --mount --propagation private -- bash -c '
        set -e
        dir=$1 project=$2 reg=$3; shift 3
        mount -t proc proc "$dir/proc"
        mount --rbind /dev "$dir/dev"
        mount --bind "$project" "$dir$project"
        mount --bind "$reg" "$dir/root/.cargo/registry"
        # The host'"'"'s promtool (Go, needs only libc) for the tests that lint the exposition.
        if [ -x /usr/bin/promtool ]; then
            touch "$dir/usr/local/bin/promtool"
            mount --bind /usr/bin/promtool "$dir/usr/local/bin/promtool"
        fi
        exec chroot "$dir" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            CARGO_HOME=/root/.cargo ${CHROOT_ENV:-} \
            bash -c "cd \"\$0\" && exec \"\$@\"" "$project" "$@"
    ' enter "$dir" "$project" "$reg" "$@"
}

build() {
    local release=$1 dir base
    dir="$root/$release"
    base="$root/$release-base"
    mkdir -p "$root"
    rm -rf "$dir.new" "$base.new"
    local t0=$SECONDS
    bootstrap "$release" "$dir.new"
    # The bare tree, before Ceph: `make deb`'s test installs the package there with apt,
    # as on a clean machine.
    cp -a "$dir.new" "$base.new"
    say "installing Ceph $(suite_of "$release") packages: ${PACKAGES[*]}"
    CHROOT_ENV="DEBIAN_FRONTEND=noninteractive" enter "$dir.new" \
        bash -c "apt-get -q update >/dev/null && apt-get -q -y install ${PACKAGES[*]} >/tmp/apt.log 2>&1 || { tail -30 /tmp/apt.log; exit 1; }" \
        || die "installing packages in $dir.new failed"
    CHROOT_ENV="DEBIAN_FRONTEND=noninteractive" enter "$dir.new" apt-get -q clean
    stamp_text "$release" >"$dir.new/.ceph-rbd-exporter-stamp"
    stamp_text "$release" >"$base.new/.ceph-rbd-exporter-stamp"
    rm -rf "$dir" "$base"
    mv "$base.new" "$base"
    mv "$dir.new" "$dir"
    say "$release ready in $dir ($(enter "$dir" ceph --version | cut -d' ' -f1-3)), $((SECONDS - t0)) s"
}

fresh() {
    local release=$1
    [ -f "$root/$release/.ceph-rbd-exporter-stamp" ] && [ -f "$root/$release-base/.ceph-rbd-exporter-stamp" ] \
        && [ "$(cat "$root/$release/.ceph-rbd-exporter-stamp")" = "$(stamp_text "$release")" ]
}

cmd=${1:-}
release=${2:-}
[ -n "$cmd" ] && [ -n "$release" ] || die "usage: chroot.sh prepare|rebuild|run|path|base RELEASE [CMD...]"
suite_of "$release" >/dev/null
case "$cmd" in
    prepare)
        if fresh "$release"; then say "$release: cached chroot in $root/$release"; else build "$release"; fi ;;
    rebuild) build "$release" ;;
    run)
        shift 2
        fresh "$release" || die "no $release chroot yet (scripts/chroot.sh prepare $release)"
        enter "$root/$release" "$@" ;;
    path) echo "$root/$release" ;;
    base) echo "$root/$release-base" ;;
    *) die "unknown command '$cmd'" ;;
esac
