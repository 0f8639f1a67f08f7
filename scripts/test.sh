#!/usr/bin/env bash
# Runs every test: unit tests first, then integration tests against a
# throwaway cluster (started, seeded and always torn down here).
set -euo pipefail
cd "$(dirname "$0")/.."

dir="$PWD/.cluster-test"
port=${CEPH_TEST_MON_PORT:-40790}

echo "== layout: no import circles, no function over 80 lines, librados only in src/ceph"
python3 scripts/check-layout.py

echo "== chroots of the newer Ceph releases (scripts/chroot.sh; cached, else ~2 min for both)"
bash scripts/chroot.sh prepare reef >/tmp/ceph-rbd-exporter-chroot-reef.log 2>&1 &
reef_pid=$!
bash scripts/chroot.sh prepare tentacle >/tmp/ceph-rbd-exporter-chroot-tentacle.log 2>&1 &
tentacle_pid=$!
for r in reef tentacle; do
    pid_var=${r}_pid
    wait "${!pid_var}" || { cat "/tmp/ceph-rbd-exporter-chroot-$r.log" >&2; echo "preparing the $r chroot failed" >&2; exit 1; }
    tail -1 "/tmp/ceph-rbd-exporter-chroot-$r.log"
done

echo "== unit tests"
# Bounded: they take seconds; a hang fails here instead of eating CI's time.
timeout 600 cargo test --release --locked --lib --bins

echo "== alert rules: promtool check rules, promtool test rules, amtool check-config"
promtool check rules alerts/ceph-rbd-exporter.rules.yml
promtool test rules alerts/ceph-rbd-exporter.test.yml
amtool check-config alerts/alertmanager.example.yml

cleanup() {
    /usr/bin/python3 scripts/seed.py --conf "$dir/ceph.conf" --state-dir "$dir/state" stop-holders >/dev/null 2>&1 || true
    bash scripts/cluster.sh stop "$dir" >/dev/null 2>&1 || true
    bash scripts/faults-test.sh down >/dev/null 2>&1 || true
    local r
    for r in reef tentacle; do
        bash scripts/release-test.sh "$r" stop || true
    done
}
trap cleanup EXIT
cleanup

echo "== starting a throwaway cluster in $dir"
bash scripts/cluster.sh start "$dir" "$port"
echo "== seeding the test layout"
/usr/bin/python3 scripts/seed.py --conf "$dir/ceph.conf" --state-dir "$dir/state" test

echo "== integration tests against the real cluster"
# Every tests/*.rs but the fault tests, which need their own cluster (below), and the
# browser test, which needs the web seed (next step).
integration=()
for f in tests/*.rs; do
    name=$(basename "$f" .rs)
    case "$name" in faults_* | browser) ;; *) integration+=(--test "$name") ;; esac
done
CEPH_RBD_TEST_CONF="$dir/ceph.conf" CEPH_RBD_TEST_STATE="$dir/state" \
    cargo test --release --locked "${integration[@]}" -- --test-threads 1

# After the tests above (their golden files know the test layout's images, not these).
# deb-test.sh below counts `rbd ls volumes` when it runs, so the extra images are fine.
echo "== the pages in headless chromium (tests/browser.rs), after the web seed: a Glance image with 500 clones, names with markup, quotes and unicode, one more orphan"
/usr/bin/python3 scripts/seed.py --conf "$dir/ceph.conf" --state-dir "$dir/state" web
CEPH_RBD_TEST_CONF="$dir/ceph.conf" CEPH_RBD_TEST_STATE="$dir/state" \
    cargo test --release --locked --test browser -- --test-threads 1 --nocapture

echo "== production-shaped faults: 3 mons, 4 bluestore OSDs, size-2 pools, a partitioned exporter (scripts/faults-test.sh)"
bash scripts/faults-test.sh test

# The same tests against the newer releases, each in its Debian chroot with the exporter
# built there against that release's librados; each cluster stays up for the matrix.
echo "== bare metal: the bookworm .deb with dpkg -i on this host, run as its unit runs it, purged (scripts/deb-test.sh)"
bash scripts/deb-test.sh "$dir"

for release in reef tentacle; do
    echo "== Ceph release $release (scripts/release-test.sh)"
    RELEASE_KEEP_CLUSTER=1 bash scripts/release-test.sh "$release"
done

echo "== what we ship, against the default Tentacle cluster: the .deb on a clean forky, the container image"
bash scripts/artifacts-test.sh "$PWD/.cluster-tentacle"

echo "== compatibility matrix: each build against the other releases' clusters"
bash scripts/matrix-test.sh
