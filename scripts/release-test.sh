#!/usr/bin/env bash
# The integration tests against a newer Ceph release, inside its Debian chroot
# (scripts/chroot.sh): the exporter is built there against that release's librados
# with Debian's own Rust, a throwaway cluster of that release is started and seeded
# there, and the tests run there, so every `rbd`/`rados` CLI they compare with and
# every client they start is that release's.
#   scripts/release-test.sh reef       Ceph 18.2.7 (Debian 13 trixie)
#   scripts/release-test.sh tentacle   Ceph 20.2.4 (Debian 14 forky)
#   scripts/release-test.sh RELEASE stop   stop the cluster a kept run left running
# Environment: RELEASE_TESTS (cargo test selection, default below), CEPH_RBD_CHROOTS.
set -euo pipefail
cd "$(dirname "$0")/.."

release=${1:?usage: release-test.sh reef|tentacle}
case "$release" in
    reef) port=30825 ;;
    tentacle) port=30826 ;;
    *) echo "release-test.sh: unknown release '$release'" >&2; exit 2 ;;
esac
dir="$PWD/.cluster-$release"
target="$PWD/target/$release"
# The differential test against this release's rbd CLI JSON, the field scenarios
# (watchers, locks, clones v1/v2, trash, namespaces), the running exporter, the
# read-only caps, explain and its goldens, the verdict cases, the release's own
# regressions, the key-type check, and connecting without a ceph.conf (mon_host).
tests=${RELEASE_TESTS:---test cluster --test explain --test verdicts --test keytype --test releases --test mirror --test incremental --test mon_host}
# Then the production-shaped faults (scripts/faults-test.sh: 3 mons, 4 bluestore OSDs) of
# this release, all but the network partition (its namespace is the host's business).
fault_tests=${RELEASE_FAULT_TESTS-faults_mons faults_osds faults_auth}
case "$release" in
    reef) faults_port=30835 ;;
    tentacle) faults_port=30845 ;;
esac

in_chroot() { bash scripts/chroot.sh run "$release" "$@"; }
cleanup() {
    in_chroot /usr/bin/python3 scripts/seed.py --conf "$dir/ceph.conf" --state-dir "$dir/state" stop-holders >/dev/null 2>&1 || true
    in_chroot bash scripts/cluster.sh stop "$dir" >/dev/null 2>&1 || true
}
# `release-test.sh RELEASE stop`: stop the cluster a RELEASE_KEEP_CLUSTER=1 run left.
if [ "${2:-}" = stop ]; then
    [ -d "$dir" ] && cleanup
    exit 0
fi
t0=$SECONDS
stamp() { echo "== [$release $((SECONDS - t0)) s] $*"; }

stamp "chroot (cached unless its recipe changed)"
bash scripts/chroot.sh prepare "$release"
in_chroot ceph --version

stamp "build against this release's librados, with Debian's Rust ($(in_chroot rustc --version))"
cargo fetch --locked >/dev/null
# shellcheck disable=SC2086
CHROOT_ENV="CARGO_TARGET_DIR=$target" in_chroot \
    cargo test --release --locked --offline --no-run $tests $(printf -- '--test %s ' $fault_tests) 2>&1 \
    | grep -v '^\s*Compiling ' || exit 1
in_chroot ldd "$target/release/ceph-rbd-exporter" | grep -E 'librados|libceph' || true

# RELEASE_KEEP_CLUSTER=1 (scripts/test.sh) leaves the seeded cluster running after a
# pass, for scripts/matrix-test.sh; the caller stops it.
trap cleanup EXIT
cleanup

stamp "starting a throwaway $release cluster in $dir (default keys of this release)"
in_chroot bash scripts/cluster.sh start "$dir" "$port"
stamp "seeding the test layout with this release's librbd"
in_chroot /usr/bin/python3 scripts/seed.py --conf "$dir/ceph.conf" --state-dir "$dir/state" test

stamp "integration tests"
# shellcheck disable=SC2086
CHROOT_ENV="CARGO_TARGET_DIR=$target CEPH_RBD_TEST_CONF=$dir/ceph.conf CEPH_RBD_TEST_STATE=$dir/state CEPH_RBD_TEST_RELEASE=$release" \
    in_chroot cargo test --release --locked --offline --no-fail-fast $tests -- --test-threads 1

if [ -n "$fault_tests" ]; then
    stamp "production-shaped faults of $release: $fault_tests"
    # shellcheck disable=SC2086
    CHROOT_ENV="CARGO_TARGET_DIR=$target FAULTS_NETNS=0 FAULTS_DIR=$PWD/.cluster-$release-faults FAULTS_PORT=$faults_port FAULTS_CARGO_ARGS=--offline" \
        in_chroot bash scripts/faults-test.sh test $fault_tests
fi

if [ -n "${RELEASE_EXTRA:-}" ]; then
    stamp "$RELEASE_EXTRA $dir"
    $RELEASE_EXTRA "$dir"
fi
[ "${RELEASE_KEEP_CLUSTER:-}" = 1 ] && trap - EXIT
stamp "done"
