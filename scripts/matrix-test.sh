#!/usr/bin/env bash
# The off-diagonal cells of the README's compatibility table: each build of the
# exporter (against librados 16.2 on the host, 18.2 in the Reef chroot, 20.2 in the
# Tentacle chroot) against the clusters of the two other releases. Needs the three
# seeded clusters scripts/test.sh leaves running (.cluster-test, .cluster-reef,
# .cluster-tentacle) and the three builds (target/release, target/reef, target/tentacle).
#
# In every cell: tests/releases.rs (connects and samples, or, where the build's librados
# cannot read the cluster's default key, refuses at once naming the key and the fix).
# Where it connects, also the field scenarios and the differential test against the
# `rbd` CLI of the build's own release (tests/cluster.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A cluster=([pacific]="$PWD/.cluster-test" [reef]="$PWD/.cluster-reef" [tentacle]="$PWD/.cluster-tentacle")
declare -A major=([pacific]=16 [reef]=18 [tentacle]=20)

# Runs `cargo test ARGS` with the build of release $1 (host or its chroot) against
# the cluster of release $2.
run_cell() {
    local build=$1 against=$2; shift 2
    local dir=${cluster[$against]}
    local env="CEPH_RBD_TEST_CONF=$dir/ceph.conf CEPH_RBD_TEST_STATE=$dir/state CEPH_RBD_TEST_RELEASE=$build"
    if [ "$build" = pacific ]; then
        env $env cargo test --release --locked --offline "$@"
    else
        CHROOT_ENV="CARGO_TARGET_DIR=$PWD/target/$build $env" \
            bash scripts/chroot.sh run "$build" cargo test --release --locked --offline "$@"
    fi
}

failed=()
for build in pacific reef tentacle; do
    for against in pacific reef tentacle; do
        [ "$build" = "$against" ] && continue
        [ -f "${cluster[$against]}/ceph.conf" ] || { echo "matrix: no $against cluster in ${cluster[$against]}" >&2; exit 1; }
        echo "== build ${major[$build]} ($build) x cluster ${major[$against]} ($against)"
        cell_ok=yes
        run_cell "$build" "$against" --test releases -- --test-threads 1 \
            the_cluster_default_key_is_read_or_refused_with_the_fix || cell_ok=no
        # A build older than 20 cannot read a Tentacle cluster's default key: the
        # cell is the refusal just checked, nothing more can run.
        if [ "$against" != tentacle ] || [ "$build" = tentacle ]; then
            run_cell "$build" "$against" --test cluster -- --test-threads 1 \
                field_scenarios_are_seen_as_operators_expect differential_against_rbd_cli \
                read_only_user_with_documented_caps_sees_everything || cell_ok=no
        fi
        [ $cell_ok = yes ] || failed+=("build $build x cluster $against")
    done
done
if [ ${#failed[@]} -gt 0 ]; then
    printf 'matrix: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "matrix: every cell passed"
