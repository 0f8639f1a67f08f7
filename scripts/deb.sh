#!/usr/bin/env bash
# Builds the Debian package of the exporter for one Ceph release, in that release's
# chroot (scripts/chroot.sh), so the binary links the librados it will run with:
#   scripts/deb.sh [RELEASE]     (make deb [RELEASE=...])
#     tentacle (default)  Debian 14 "forky",  Ceph 20.2  -> dist/ceph-rbd-exporter_<v>-1~forky_amd64.deb
#     reef                Debian 13 "trixie", Ceph 18.2  -> dist/ceph-rbd-exporter_<v>-1~trixie_amd64.deb
#     pacific             Debian 12 "bookworm", Ceph 16.2 -> dist/ceph-rbd-exporter_<v>-1~bookworm_amd64.deb
#                         built on this (bookworm) host itself, no chroot, in target/ as
#                         `cargo build --release` does; what `dpkg -i` takes on a Debian 12 host
#                         (scripts/deb-test.sh installs it on this machine)
# <v> is Cargo.toml's version. No debhelper: the tree is assembled here and packed with
# dpkg-deb; dpkg-shlibdeps (inside the chroot) computes the shared-library Depends, to
# which the librados2 lower bound of the release is added (the larger of the two wins).
# Why the bound matters: Ceph 20 (Tentacle) clusters issue aes256k cephx keys by
# default, and librados before 20 cannot read them (Debian 12 has librados 16).
# The cargo build is offline, from the host's registry cache (cargo fetch --locked
# first), and keeps its own target directory, target/RELEASE: a rebuild is incremental.
# Maintainer field: $DEBFULLNAME <$DEBEMAIL> when set.
# The service: deploy/systemd/ceph-rbd-exporter.service in /usr/lib/systemd/system, its
# settings deploy/systemd/ceph-rbd-exporter.default as the conffile
# /etc/default/ceph-rbd-exporter. The maintainer scripts do what debhelper's
# (dh_installsystemd --no-enable --no-start) would: postinst makes the system user and
# group ceph-rbd-exporter, registers the unit with deb-systemd-helper without enabling
# or starting it (it needs a keyring first) and restarts it on upgrade if it runs;
# prerm stops it on remove; postrm purge forgets it and removes its state directory.
set -euo pipefail

project=$(cd "$(dirname "$0")/.." && pwd)
cd "$project"
die() { echo "deb.sh: $*" >&2; exit 1; }
say() { echo "deb.sh: $*"; }

release=${1:-tentacle}
case "$release" in
    tentacle) suite=forky;  rados_min=20.2.4~; ceph_name="Ceph 20 (Tentacle)" ;;
    reef)     suite=trixie; rados_min=18.2.0~; ceph_name="Ceph 18 (Reef)" ;;
    pacific)  suite=bookworm; rados_min=16.2.0~; ceph_name="Ceph 16 (Pacific)" ;;
    *) die "unknown release '$release' (expected tentacle, reef or pacific)" ;;
esac
version=$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)
[ -n "$version" ] || die "no version in Cargo.toml"
debversion="$version-1~$suite"
target="$project/target/$release"
# The host's own build is the one in target/ (make build, make test): no second copy.
[ "$release" != pacific ] || target="$project/target"
deb="$project/dist/ceph-rbd-exporter_${debversion}_amd64.deb"

# The conffiles and maintainer scripts, into DEBIAN directory $1; what debhelper would
# write for the system user and for dh_installsystemd --no-enable --no-start.
maintainer_scripts() {
    local dir=$1 unit=ceph-rbd-exporter.service
    echo /etc/default/ceph-rbd-exporter >"$dir/conffiles"
    cat >"$dir/postinst" <<POSTINST
#!/bin/sh
set -e
if [ "\$1" = configure ]; then
    if ! getent group ceph-rbd-exporter >/dev/null; then
        addgroup --system --quiet ceph-rbd-exporter
    fi
    if ! getent passwd ceph-rbd-exporter >/dev/null; then
        adduser --system --quiet --ingroup ceph-rbd-exporter --no-create-home \\
            --home /var/lib/ceph-rbd-exporter --shell /usr/sbin/nologin \\
            --gecos "Ceph RBD exporter" ceph-rbd-exporter
    fi
fi
if [ "\$1" = configure ] || [ "\$1" = abort-upgrade ] || [ "\$1" = abort-deconfigure ] || [ "\$1" = abort-remove ]; then
    if command -v deb-systemd-helper >/dev/null; then
        # Enabled again on reinstall only if it was enabled before; never enabled here.
        if deb-systemd-helper debian-installed '$unit' \\
                && deb-systemd-helper --quiet was-enabled '$unit'; then
            deb-systemd-helper enable '$unit' >/dev/null || true
        fi
        deb-systemd-helper update-state '$unit' >/dev/null || true
    fi
    if [ -z "\${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        # An upgrade restarts the service if it runs; an install starts nothing.
        if [ -n "\$2" ]; then
            if command -v deb-systemd-invoke >/dev/null; then
                deb-systemd-invoke try-restart '$unit' >/dev/null || true
            else
                systemctl try-restart '$unit' >/dev/null || true
            fi
        fi
    fi
fi
exit 0
POSTINST
    cat >"$dir/prerm" <<PRERM
#!/bin/sh
set -e
if [ -z "\${DPKG_ROOT:-}" ] && [ "\$1" = remove ] && [ -d /run/systemd/system ]; then
    if command -v deb-systemd-invoke >/dev/null; then
        deb-systemd-invoke stop '$unit' >/dev/null || true
    else
        systemctl stop '$unit' >/dev/null || true
    fi
fi
exit 0
PRERM
    cat >"$dir/postrm" <<POSTRM
#!/bin/sh
set -e
if [ "\$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
if [ "\$1" = purge ]; then
    if command -v deb-systemd-helper >/dev/null; then
        deb-systemd-helper purge '$unit' >/dev/null || true
    fi
    # The watchers' first-seen times; the system user stays, as Debian's do.
    rm -rf /var/lib/ceph-rbd-exporter
fi
exit 0
POSTRM
    chmod 0755 "$dir/postinst" "$dir/prerm" "$dir/postrm"
}

# --- inside the chroot: build, strip, assemble, pack --------------------------------
if [ "${2:-}" = "--inside" ]; then
    export CARGO_TARGET_DIR="$target"
    [ "${3:-}" = fetched ] || cargo fetch --locked --quiet
    cargo build --release --locked --offline --bin ceph-rbd-exporter
    stage="$target/deb"
    root="$stage/ceph-rbd-exporter_${debversion}_amd64"
    rm -rf "$stage"
    mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/ceph-rbd-exporter" \
        "$root/usr/share/doc/ceph-rbd-exporter" "$root/usr/lib/systemd/system" \
        "$root/etc/default" "$stage/src/debian"
    install -m 0755 "$target/release/ceph-rbd-exporter" "$root/usr/bin/ceph-rbd-exporter"
    strip --strip-unneeded --remove-section=.comment --remove-section=.note \
        "$root/usr/bin/ceph-rbd-exporter"
    cp -r alerts dashboards "$root/usr/share/ceph-rbd-exporter/"
    install -m 0644 README.md "$root/usr/share/doc/ceph-rbd-exporter/README.md"
    install -m 0644 deploy/systemd/ceph-rbd-exporter.service "$root/usr/lib/systemd/system/"
    install -m 0644 deploy/systemd/ceph-rbd-exporter.default "$root/etc/default/ceph-rbd-exporter"

    # copyright: the project's own licence as Cargo.toml states it (none stated yet),
    # then the Rust crates linked into the binary with theirs.
    license=$(awk -F'"' '/^license *=/ { print $2; exit }' Cargo.toml)
    {
        echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
        echo "Upstream-Name: ceph-rbd-exporter"
        echo "Source: https://github.com/ceph-rbd-exporter/ceph-rbd-exporter"
        echo
        echo "Files: *"
        echo "Copyright: the ceph-rbd-exporter authors"
        if [ -n "$license" ]; then
            echo "License: $license"
        else
            echo "License: not stated"
            echo " Cargo.toml names no licence for ceph-rbd-exporter itself yet."
        fi
        for f in LICENSE*; do
            [ -f "$f" ] || continue
            echo " ."
            sed -e 's/^$/./' -e 's/^/ /' "$f"
        done
        echo
        echo "Comment: Rust crates statically linked into /usr/bin/ceph-rbd-exporter,"
        echo " with the licence each declares (cargo tree; copyright with their authors):"
        cargo tree --locked --offline --edges normal --prefix none --no-dedupe \
            --format '{p}|{l}' --target x86_64-unknown-linux-gnu \
            | sort -u | grep -v '^ceph-rbd-exporter ' \
            | awk -F'|' '{ sub(/ \(.*\)$/, "", $1); printf " %s: %s\n", $1, ($2 == "" ? "unstated" : $2) }'
    } >"$root/usr/share/doc/ceph-rbd-exporter/copyright"
    chmod 0755 "$root/etc" "$root/etc/default"
    find "$root/usr" -type d -exec chmod 0755 {} + ; find "$root/usr/share" -type f -exec chmod 0644 {} +

    # dpkg-shlibdeps wants a debian/control to be run from; a stub one will do.
    printf 'Source: ceph-rbd-exporter\n\nPackage: ceph-rbd-exporter\nArchitecture: amd64\n' \
        >"$stage/src/debian/control"
    shlibs=$(cd "$stage/src" && dpkg-shlibdeps -O -e"$root/usr/bin/ceph-rbd-exporter" 2>/dev/null \
        | sed -n 's/^shlibs:Depends=//p')
    [ -n "$shlibs" ] || die "dpkg-shlibdeps found no dependencies"
    # Every shlibs term but librados2's, whose bound is the release's own: shlibs says
    # "20.2.4+ds" (Debian's version), which Ceph's upstream 20.2.4-1 packages would not
    # satisfy; "20.2.4~" is met by both. 20.2.4 is the first Tentacle whose librados
    # reads aes256k keys; every librados symbol the exporter uses is older than that.
    # adduser: for the postinst (a minbase system has none).
    depends=$(echo "$shlibs" | tr ',' '\n' | sed 's/^ *//' | grep -v '^librados2\b' \
        | { cat; echo "librados2 (>= $rados_min)"; echo adduser; } | paste -sd, | sed 's/,/, /g')

    if [ "$release" = tentacle ]; then
        why=" It was built and tested against librados from $ceph_name and needs
 librados2 20.2.4 or later: Ceph 20 clusters issue aes256k cephx keys by default,
 which this build reads; the librados 16 of Debian 12 cannot read them."
    elif [ "$release" = pacific ]; then
        why=" It was built and tested against librados from $ceph_name (Debian 12)
 and needs librados2 16 or later. It reads Pacific, Quincy, Reef and Squid
 clusters; Ceph 20 clusters issue aes256k cephx keys by default, which need
 librados 20: for those, use the tentacle (Debian forky) build."
    else
        why=" It was built and tested against librados from $ceph_name and needs
 librados2 18 or later. Ceph 20 clusters issue aes256k cephx keys by default,
 which need librados 20: for those, use the tentacle (Debian forky) build."
    fi
    maint="${DEBFULLNAME:-ceph-rbd-exporter developers} <${DEBEMAIL:-dev@ceph-rbd-exporter.invalid}>"
    size=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
    cat >"$root/DEBIAN/control" <<CONTROL
Package: ceph-rbd-exporter
Version: $debversion
Architecture: amd64
Maintainer: $maint
Installed-Size: $size
Depends: $depends
Section: admin
Priority: optional
Homepage: https://github.com/ceph-rbd-exporter/ceph-rbd-exporter
Description: Prometheus exporter for Ceph RBD image hygiene
 Exports what keeps RBD images from being deleted or cleaned up: orphaned
 watchers, stale locks, deep clone chains, pinned snapshots and clones
 pending flatten; \`ceph-rbd-exporter explain\` says who holds an image.
 .
$why
 .
 Alert rules and Grafana dashboards are in /usr/share/ceph-rbd-exporter.
 .
 The hardened systemd unit ceph-rbd-exporter.service runs it as the system
 user ceph-rbd-exporter, with the settings of /etc/default/ceph-rbd-exporter.
 It is neither enabled nor started on install: give it a cephx keyring its
 group can read, then systemctl enable --now ceph-rbd-exporter.
CONTROL
    maintainer_scripts "$root/DEBIAN"
    (cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
    chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums" "$root/DEBIAN/conffiles"
    mkdir -p "$(dirname "$deb")"
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
    exit 0
fi

# --- on the host ---------------------------------------------------------------------
t0=$SECONDS
if [ "$release" = pacific ]; then
    [ "$(. /etc/os-release && echo "$VERSION_CODENAME")" = bookworm ] \
        || die "the pacific build is made on a Debian 12 (bookworm) host; this is $(. /etc/os-release && echo "$PRETTY_NAME")"
    command -v dpkg-shlibdeps >/dev/null || die "no dpkg-shlibdeps: apt-get install dpkg-dev"
    say "building ceph-rbd-exporter $version on this bookworm host, target dir $target"
    bash scripts/deb.sh "$release" --inside
    dpkg-deb --field "$deb" | sed 's/^/  /'
    dpkg-deb --contents "$deb" | awk '{ print "  " $1, $6 }'
    say "built $deb ($(du -h "$deb" | cut -f1)) in $((SECONDS - t0)) s"
    exit 0
fi
bash scripts/chroot.sh prepare "$release"
say "building ceph-rbd-exporter $version in the $release chroot ($suite), target dir $target"
# The crates: fetched by the host's cargo into the registry cache the chroot mounts
# (the chroot's own cargo fetches them only when the host has no cargo).
fetched=
if command -v cargo >/dev/null; then
    cargo fetch --locked --quiet || die "cargo fetch --locked failed on the host"
    fetched=fetched
fi
bash scripts/chroot.sh run "$release" bash scripts/deb.sh "$release" --inside $fetched
dpkg-deb --field "$deb" | sed 's/^/  /'
dpkg-deb --contents "$deb" | awk '{ print "  " $1, $6 }'
say "built $deb ($(du -h "$deb" | cut -f1)) in $((SECONDS - t0)) s"
