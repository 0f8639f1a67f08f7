#!/usr/bin/env bash
# Builds the container image from Dockerfile with buildah, without any registry:
#   scripts/image.sh            (make image)
# Tags localhost/ceph-rbd-exporter:<Cargo version> and :latest in the host's
# containers storage (podman sees it; `podman save` exports it).
#
# 1. The base. The Dockerfile starts FROM debian:forky-slim. Unless that image is
#    already in local storage (pulled from a registry, say), it is made here: a copy
#    of the bare forky minbase tree of scripts/chroot.sh (`chroot.sh base tentacle`),
#    slimmed the way the official -slim images are (no docs, man pages or locales,
#    no apt lists or .debs), imported as docker.io/library/debian:forky-slim.
#    It keeps the chroot's apt setting Check-Valid-Until=false (a snapshot mirror's
#    forky Release file can be past its Valid-Until). It is re-imported when the
#    chroot's base tree is rebuilt. CEPH_RBD_IMAGE_BASE=registry skips all this and
#    lets buildah pull the base instead.
# 2. buildah bud --pull=never --isolation chroot --network host. Chroot isolation
#    needs no OCI runtime: Debian 12's crun 1.8 refuses a host with cgroup v1 and a
#    cgroup2 hierarchy holding controllers ("cgroups in hybrid mode not supported",
#    as in this project's CI sandbox); the RUN steps only install packages and
#    compile. They reach Debian's archive and crates.io over the host's network.
#    The crates are fetched on the host first (cargo fetch --locked) and the host's
#    registry cache is mounted into the build, so cargo in the image downloads
#    nothing. (Without the mount, a plain `docker build`, cargo downloads them from
#    crates.io itself; that fails only where HTTPS is intercepted by a CA that
#    Debian's ca-certificates lacks, as in the CI sandbox.) Layers are cached
#    (--layers): a rebuild after a source change redoes only the cargo build, a
#    full release build (~6 min on 2 cores), as the image keeps no target dir.
set -euo pipefail

project=$(cd "$(dirname "$0")/.." && pwd)
cd "$project"
die() { echo "image.sh: $*" >&2; exit 1; }
say() { echo "image.sh: $*"; }

[ "$(id -u)" -eq 0 ] || die "needs root (buildah with the host's containers storage)"
command -v buildah >/dev/null || die "buildah is not installed (run scripts/install-deps.sh)"
command -v podman >/dev/null || die "podman is not installed (run scripts/install-deps.sh)"

version=$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)
image=${CEPH_RBD_IMAGE:-localhost/ceph-rbd-exporter}
base_image=docker.io/library/debian:forky-slim
base_label=org.ceph-rbd-exporter.base-tree
t0=$SECONDS

tmp=$(mktemp -d /var/tmp/ceph-rbd-exporter-image.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

make_base() {
    bash scripts/chroot.sh prepare tentacle >/dev/null
    local tree stampfile origin current
    tree=$(bash scripts/chroot.sh base tentacle)
    stampfile="$tree/.ceph-rbd-exporter-stamp"
    [ -f "$stampfile" ] || die "no forky base tree in $tree"
    origin="$tree@$(stat -c %Y "$stampfile")"
    if podman image exists "$base_image"; then
        current=$(podman image inspect --format "{{ index .Labels \"$base_label\" }}" "$base_image" 2>/dev/null || true)
        if [ -z "$current" ] || [ "$current" = "<no value>" ]; then
            say "base: using $base_image from local storage (not made here)"; return 0
        fi
        if [ "$current" = "$origin" ]; then say "base: $base_image is up to date"; return 0; fi
        say "base: $tree was rebuilt; importing it again"
    fi
    local t1=$SECONDS root="$tmp/rootfs"
    say "base: making $base_image from $tree"
    cp -a "$tree" "$root"
    rm -f "$root/.ceph-rbd-exporter-stamp" "$root/etc/resolv.conf" "$root/etc/hostname"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/tmp/* "$root"/var/tmp/*
    find "$root/var/cache/apt/archives" -name '*.deb' -delete
    mkdir -p "$root/var/lib/apt/lists/partial"
    # What the official -slim images leave out, for later installs too.
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
CFG
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,groff,info,lintian,linda}/*
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    tar --numeric-owner --xattrs -C "$root" -cf "$tmp/base.tar" .
    rm -rf "$root"
    podman import --quiet --change 'CMD ["bash"]' --change "LABEL $base_label=$origin" \
        "$tmp/base.tar" "$base_image" >/dev/null
    rm -f "$tmp/base.tar"
    say "base: imported $base_image ($(podman image inspect --format '{{.Size}}' "$base_image" | awk '{ printf "%d MB", $1 / 1e6 }')) in $((SECONDS - t1)) s"
}

pull=never
if [ "${CEPH_RBD_IMAGE_BASE:-local}" = registry ]; then pull=missing; else make_base; fi

registry="${CARGO_HOME:-$HOME/.cargo}/registry"
mkdir -p "$registry"
if command -v cargo >/dev/null; then
    cargo fetch --locked --quiet || die "cargo fetch --locked failed on the host"
else
    say "no cargo on the host: cargo in the image fetches the crates itself"
fi
log="$project/target/image-build.log"
mkdir -p "$(dirname "$log")"
say "buildah bud: $image:$version (full output: $log)"
if ! buildah bud --pull="$pull" --isolation chroot --network host --layers \
        --volume "$registry:/root/.cargo/registry" \
        --label "org.opencontainers.image.version=$version" \
        --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
        --tag "$image:$version" --tag "$image:latest" \
        --file Dockerfile . >"$log" 2>&1; then
    tail -40 "$log" >&2
    die "buildah bud failed (full output: $log)"
fi
grep -E '^\[[0-9]/[0-9]\] STEP|^STEP|Using cache|^COMMIT|Finished .release' "$log" | cut -c1-160 | sed 's/^/  /'
mnt=$(podman image mount "$image:$version")
rados=$(dpkg-query --admindir="$mnt/var/lib/dpkg" -W -f '${Version}' librados2 2>/dev/null || echo '?')
podman image unmount "$image:$version" >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$image:$version" | awk '{ printf "%d MB", $1 / 1e6 }')
# Each build leaves its builder stage (~1.6 GB) untagged; keep the newest as the layer
# cache of the next build, drop the older ones and the images this build replaced.
podman image prune --force --filter until=20m >/dev/null 2>&1 || true
say "built $image:$version ($size, librados2 $rados) in $((SECONDS - t0)) s"
