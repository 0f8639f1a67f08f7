#!/usr/bin/env bash
# `make bench`: the exporter against the floor and the alternatives on a
# throwaway cluster seeded with 1000, then 10000, then 100000 images; writes
# BENCHMARKS.md. Not part of `make test`. Takes 30-45 minutes on 2 cores
# (estimated from the 100000-image seeding and steady state, and from runs
# at 1000 and 20000 images: 6 minutes under a load average of 9).
#
# Up to 10000 images are made through librbd (benches/seed.py); beyond that,
# blocks are copied from a librbd-made one with librados aio writes (about
# a minute for 90000 images). At 100000 images: fewer repetitions, (c)
# librbd on an evenly spaced slice of 2000 images extrapolated, `rbd ls -l`
# on the 1000-image pool bench-small in the same cluster extrapolated (in
# full it took over 10 minutes), no (f) compositions, no callgrind count.
#
# Environment:
#   BENCH_DIR        cluster directory (default .cluster-bench; wiped)
#   BENCH_MON_PORT   mon port (default 40792)
#   BENCH_SIZES      image counts, ascending, multiples of 100, at most 100000
#                    (default "1000 10000 100000")
#   BENCH_OUT        report to write (default BENCHMARKS.md)
#   BENCH_KEEP=1     leave the cluster running afterwards (holders are stopped)
#   BENCH_QUIET_LOAD before measuring, wait for the 1-minute load average to fall
#                    below this (default 1.0; the machine has other users) ...
#   BENCH_QUIET_WAIT ... for at most this many seconds (default 120), then
#                    measure anyway; the load is recorded in the report
#
# Every process started here (cluster, holders, exporters) is stopped on
# exit, failure or ctrl-c. Each step is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=$(realpath -m "${BENCH_DIR:-$PWD/.cluster-bench}")
port=${BENCH_MON_PORT:-40792}
sizes=${BENCH_SIZES:-"1000 10000 100000"}
out=${BENCH_OUT:-BENCHMARKS.md}
pool=bench
# An empty pool: the serving binary's base RSS.
base_pool=bench-empty
# Images made through librbd; beyond, copies (benches/seed.py --copy-from).
librbd_upto=10000
results=$PWD/target/bench
conf=$dir/ceph.conf
holders_dir=$results/holders
# Images held open by holder processes (scripts/holder.py), all in the first
# block: two plain images, a clone and a parent with children.
held=(bench-00050 bench-00051 bench-00005 bench-00001)

say() { echo "== bench: $*"; }

# Waits (bounded) for the machine to quiet down: wall times on a shared
# 2-core machine move with other people's load.
wait_quiet() {
    local limit=${BENCH_QUIET_LOAD:-1.0} max=${BENCH_QUIET_WAIT:-120} i load
    for ((i = 0; i < max; i++)); do
        load=$(cut -d' ' -f1 /proc/loadavg)
        awk -v l="$load" -v m="$limit" 'BEGIN { exit !(l < m) }' && return 0
        ((i % 30 == 0)) && say "waiting for the load average ($load) to fall below $limit"
        sleep 1
    done
    say "load average still $(cut -d' ' -f1 /proc/loadavg) after ${max}s; measuring anyway"
}

# Pids of processes whose command line names this cluster's ceph.conf and
# that we started (the exporter binary or the bench binary), never by name.
ours() {
    local p args
    for p in /proc/[0-9]*; do
        args=$(tr '\0' '\n' 2>/dev/null <"$p/cmdline") || continue
        grep -qxF -- "$conf" <<<"$args" || continue
        case "$args" in
            *ceph-rbd-exporter*|*/bench-*) echo "${p#/proc/}" ;;
        esac
    done
}

cleanup() {
    local rc=$? f p
    set +e
    for f in "$holders_dir"/*.pid; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    for p in $(ours); do kill "$p" 2>/dev/null; done
    sleep 0.5
    for f in "$holders_dir"/*.pid; do
        [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null && rm -f "$f"
    done
    for p in $(ours); do kill -9 "$p" 2>/dev/null; done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        say "cluster left running in $dir (stop it: bash scripts/cluster.sh stop $dir)"
    else
        bash scripts/cluster.sh stop "$dir" >/dev/null 2>&1
    fi
    [ $rc -eq 0 ] || say "FAILED (exit $rc)"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -x /usr/bin/time ]; then
    say "installing GNU time (peak RSS)"
    sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends time
fi

say "building"
cargo build --release --locked
bench_bin=$(cargo bench --locked --bench bench --no-run 2>&1 \
    | sed -n 's/.*Executable benches\/bench\/main.rs (\(.*\))$/\1/p' | tail -1)
[ -x "$bench_bin" ] || { say "cannot find the bench binary"; exit 1; }

mkdir -p "$results"
rm -rf "$holders_dir" "$results"/results-*.json "$results"/callgrind-*.json "$results"/growth.json

say "starting a fresh cluster in $dir (port $port)"
bash scripts/cluster.sh stop "$dir" >/dev/null 2>&1 || true
timeout 120 bash scripts/cluster.sh start "$dir" "$port"

measure_args=(--conf "$conf" --pool "$pool" --base-pool "$base_pool"
    --osd-asok "$dir/run/osd.0.asok" --osd-pid-file "$dir/run/osd.0.pid"
    --exporter "$PWD/target/release/ceph-rbd-exporter")

say "creating the empty pool $base_pool"
timeout 60 ceph -c "$conf" osd pool create "$base_pool" 8 >/dev/null
timeout 60 rbd -c "$conf" pool init "$base_pool"

# What is measured, and how often, at N images: everything in full up to
# 10000; at 100000 fewer runs, (c) on a slice, no (f).
size_args() {
    if [ "$1" -gt 10000 ]; then
        echo --runs 3 --librbd-runs 2 --librbd-slice 2000 --composed-runs 0 --steady-runs 5 --status-sample 100
    else
        echo --runs 7 --librbd-runs 3 --composed-runs 3 --steady-runs 7 --status-sample 200
    fi
}
# Bound on one size's `measure` (seconds).
measure_timeout() { if [ "$1" -gt 10000 ]; then echo 3000; else echo 1200; fi; }

first=1
prev=0
for n in $sizes; do
    say "seeding $pool up to $n images"
    t0=$(date +%s.%N)
    timeout 900 /usr/bin/python3 benches/seed.py --conf "$conf" --pool "$pool" --total "$n" \
        --copy-from "$librbd_upto"
    seed_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if [ "$n" -le "$librbd_upto" ]; then
        how="images $prev to $n through librbd (benches/seed.py, 16 threads)"
    elif [ "$prev" -ge "$librbd_upto" ]; then
        how="images $prev to $n copied from a librbd-made block with librados aio (benches/seed.py --copy-from $librbd_upto)"
    else
        how="images $prev to $librbd_upto through librbd, $librbd_upto to $n copied from a librbd-made block with librados aio (benches/seed.py --copy-from $librbd_upto)"
    fi
    say "seeded in ${seed_s}s: $how"
    prev=$n

    if [ $first = 1 ]; then
        mkdir -p "$holders_dir"
        for img in "${held[@]}"; do
            /usr/bin/python3 scripts/holder.py --conf "$conf" --pool "$pool" --image "$img" --write \
                --pidfile "$holders_dir/$img.pid" --ready-file "$holders_dir/$img.ready" \
                </dev/null >"$holders_dir/$img.log" 2>&1 &
        done
        for i in $(seq 1 300); do
            ready=0
            for img in "${held[@]}"; do [ -f "$holders_dir/$img.ready" ] && ready=$((ready + 1)); done
            [ $ready -eq ${#held[@]} ] && break
            sleep 0.1
        done
        [ $ready -eq ${#held[@]} ] || { say "holders not ready"; cat "$holders_dir"/*.log; exit 1; }
        say "${#held[@]} holders watching ${held[*]}"

        first=0
    fi

    # Client-side instructions per image, (a) and (b), with callgrind:
    # instruction counts do not suffer from the noise of a shared machine.
    if [ "$n" -gt 10000 ]; then
        say "callgrind: skipped at N=$n (about 50x slower than a sample; the count per image does not depend on N)"
    elif command -v valgrind >/dev/null; then
        say "callgrind: client instructions per image at N=$n"
        ir() {
            timeout 900 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
                "$bench_bin" profile "$1" "$conf" "$pool" "$2" 2>&1 \
                | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
        }
        e1=$(ir exporter 1); e2=$(ir exporter 2); f1=$(ir floor 1); f2=$(ir floor 2)
        printf '{"n": %s, "exporter_instructions_per_image": %s, "floor_instructions_per_image": %s}\n' \
            "$n" $(((e2 - e1) / n)) $(((f2 - f1) / n)) >"$results/callgrind-$n.json"
        cat "$results/callgrind-$n.json"
    fi

    ls_pool=()
    if [ "$n" -gt 10000 ]; then
        read -r small _ <<<"$sizes"
        [ "$small" -gt 10000 ] && small=1000
        say "seeding $pool-small with $small images (rbd ls -l at N=$n, extrapolated; growth)"
        timeout 900 /usr/bin/python3 benches/seed.py --conf "$conf" --pool "$pool-small" --total "$small"
        ls_pool=(--ls-pool "$pool-small")
    fi
    wait_quiet
    say "measuring N=$n"
    # shellcheck disable=SC2046 # size_args is a list of flags
    timeout "$(measure_timeout "$n")" "$bench_bin" measure "${measure_args[@]}" $(size_args "$n") \
        "${ls_pool[@]}" --seeding-s "$seed_s" --seeding "$how" --out "$results/results-$n.json"
done

# Growth with the cluster's size held fixed: a pool of the smallest size next
# to the full one, sampled alternately.
read -r -a all_sizes <<<"$sizes"
growth=()
if [ ${#all_sizes[@]} -ge 2 ]; then
    small=${all_sizes[0]}
    say "seeding $pool-small with $small images (growth at a fixed cluster size)"
    timeout 900 /usr/bin/python3 benches/seed.py --conf "$conf" --pool "$pool-small" --total "$small"
    wait_quiet
    say "measuring growth: $pool-small ($small) against $pool (${all_sizes[-1]})"
    runs=7; [ "${all_sizes[-1]}" -gt 10000 ] && runs=3
    timeout 900 "$bench_bin" growth "$conf" "$results/growth.json" "$runs" "$pool-small" "$pool"
    growth=(--growth "$results/growth.json")
fi

notes=()
[ -f benches/NOTES.md ] && notes=(--notes benches/NOTES.md)
cg=()
for f in "$results"/callgrind-*.json; do [ -f "$f" ] && cg+=(--callgrind "$f"); done
"$bench_bin" report --out "$out" "${notes[@]}" "${cg[@]}" "${growth[@]}" "$results"/results-*.json
say "wrote $out"
