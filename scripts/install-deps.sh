#!/usr/bin/env bash
# Install the Debian 12 packages the build, the tests and the demo need. Idempotent:
# when every package is already installed it touches apt not at all (fast).
#   scripts/install-deps.sh            (as root, or with sudo available)
# - Ceph Pacific daemons and CLI for the throwaway cluster (scripts/cluster.sh);
#   ceph-mgr pulls ceph-mgr-modules-core, whose rbd_support module (`ceph rbd task
#   add flatten`) runs without any extra Python package. rbd-mirror for the
#   two-cluster mirroring test (scripts/mirror.sh, tests/mirror.rs).
# - librados/librbd headers for the exporter's build.
# - python3-rados/python3-rbd for scripts/seed.py and scripts/holder.py (they work only
#   with /usr/bin/python3, Debian's interpreter).
# - prometheus and alertmanager for the demo; build tools a minimal image may lack.
# - debootstrap for the Reef/Tentacle chroots (scripts/chroot.sh); buildah and podman
#   for the container image (make image) and its test; runc besides podman's crun,
#   which cannot start containers on a cgroup v1/v2 hybrid host.
# - dpkg-dev (dpkg-shlibdeps) for the bookworm .deb built on this host (make deb
#   RELEASE=pacific) that scripts/deb-test.sh installs here with dpkg -i.
# - python3-venv for target/k8s-venv: kubernetes-validate and jsonschema, pinned in
#   deploy/kubernetes/requirements.txt, for the offline check of deploy/kubernetes
#   (scripts/k8s-manifests.py, tests/kubernetes_manifests.rs; it also needs kubectl).
# - chromium and chromium-driver (chromedriver) for the browser test of the HTML pages
#   (tests/browser.rs drives a headless chromium over WebDriver).
# The Rust toolchain itself is not installed here.
set -euo pipefail

PACKAGES=(
    ceph-mon ceph-osd ceph-mgr ceph-common rbd-mirror
    librados-dev librbd-dev libradospp-dev
    python3-rados python3-rbd
    prometheus prometheus-alertmanager
    g++ pkg-config make curl jq iproute2 procps ca-certificates openssl
    debootstrap buildah podman crun runc
    dpkg-dev mmdebstrap python3-venv
    chromium chromium-driver
)

say() { echo "install-deps: $*"; }

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [ "${status:0:2}" = "ii" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    say "all ${#PACKAGES[@]} packages already installed"
else
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { say "run me as root (missing: ${missing[*]})" >&2; exit 1; }
        SUDO=(sudo)
    fi
    apt_get() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y "$@"; }

    # Keep the packages' postinst from starting prometheus/alertmanager/ceph services
    # (they would take ports 9090/9093; cluster.sh and the demo start their own), the
    # way Docker images do: a temporary policy-rc.d that denies every start.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        "${SUDO[@]}" sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
        trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
    fi

    # `apt-get update` only when needed: no package lists yet, or a missing package
    # has no install candidate in the lists we have.
    updated=no
    need_update=no
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        need_update=yes
    else
        for p in "${missing[@]}"; do
            cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/{print $2}')
            if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then need_update=yes; break; fi
        done
    fi
    if [ $need_update = yes ]; then
        say "apt-get update"
        apt_get update
        updated=yes
    fi
    say "installing: ${missing[*]}"
    if ! apt_get install --no-install-recommends "${missing[@]}"; then
        # Stale lists (a version since replaced on the mirror): refresh once, retry.
        [ $updated = no ] || exit 1
        say "install failed; apt-get update and retry"
        apt_get update
        apt_get install --no-install-recommends "${missing[@]}"
    fi
fi

for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [ "${status:0:2}" = "ii" ] || { say "package $p is still not installed" >&2; exit 1; }
done
/usr/bin/python3 -c 'import rados, rbd' \
    || { say "/usr/bin/python3 cannot import rados/rbd" >&2; exit 1; }
say "ok: $(ceph --version | cut -d' ' -f1-3 | tr -d '\n'), rados/rbd importable from /usr/bin/python3"

# The offline check of deploy/kubernetes: a venv of Debian's python with the pinned
# packages, (re)made when deploy/kubernetes/requirements.txt changes.
project=$(cd "$(dirname "$0")/.." && pwd)
venv=$project/target/k8s-venv
req=$project/deploy/kubernetes/requirements.txt
if ! cmp -s "$req" "$venv/requirements.txt"; then
    say "making $venv from $req"
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --only-binary=:all: --no-deps -r "$req"
    cp "$req" "$venv/requirements.txt"
fi
"$venv/bin/python3" -c 'import kubernetes_validate, jsonschema, yaml' \
    || { say "$venv cannot import kubernetes_validate, jsonschema and yaml" >&2; exit 1; }
command -v kubectl >/dev/null \
    || say "warning: no kubectl; tests/kubernetes_manifests.rs needs it (kubectl kustomize)" >&2
