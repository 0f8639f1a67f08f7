#!/usr/bin/env bash
# `make soak`: an hour of churn against the production-shaped cluster of
# scripts/faults-test.sh (3 mons, 4 bluestore OSDs, size-2 pools `volumes` and
# `isolated`), with a mon restarted every 10 minutes; writes RELIABILITY.md.
# Not part of `make test` nor of CI (the 10-minute soak inside `make test` is
# tests/soak.rs).
#
# What runs, all on the host, all started and stopped here:
#   - target/release/ceph-rbd-exporter as the read-only user client.rbd-exporter,
#     --sample.interval 10s, on 127.0.0.1 (first free port of 40843-40849);
#   - a churn client (/usr/bin/python3, rados/rbd modules, client.admin) that
#     loops: create a parent image, write to it, snapshot and protect it, clone
#     it (clone v1 and v2 in turn, across pools one time in three), take and
#     release an exclusive lock, a shared lock and the exclusive-lock feature's
#     lock on the clone, flatten an older clone, and retire the oldest pair
#     (remove the clone, unprotect and remove the snapshot, move the parent to
#     the trash, remove it from the trash a cycle later); every 5th cycle it also
#     creates an image held by scripts/holder.py (--write or --advisory-lock) for
#     30-120 s, then removes it;
#   - a mon restarter: every SOAK_MON_RESTART_EVERY seconds it stops one mon
#     (a, b, c in turn) with `cluster.sh stop-daemon`, waits 20 s, starts it;
#   - a sampler: every 10 s the exporter's RSS and open fds (/proc/PID), its
#     /metrics (did it answer, how fast, ceph_rbd_exporter_up,
#     sample_duration_seconds per pool, sample_errors_total by pool and kind,
#     the images it reports) and the load average.
#
# Environment:
#   SOAK_SECONDS            length of the run (default 3600)
#   SOAK_MON_RESTART_EVERY  seconds between mon restarts (default 600)
#   SOAK_ROW_EVERY          one table row per this many seconds (default 300),
#                           plus a row for the first poll and the last row
#   SOAK_CHURN_PAUSE        pause between churn cycles, seconds (default 1)
#   SOAK_OUT                report to write (default RELIABILITY.md)
#   SOAK_REPORT_ONLY=1      do not run: write SOAK_OUT again from the raw figures
#                           of the last run (target/soak/)
#   FAULTS_DIR, FAULTS_PORT, FAULTS_NET, FAULTS_SIDE_NET, FAULTS_PREFIX
#                           where the cluster lives (see scripts/faults-test.sh)
# Raw figures stay in target/soak/ (meta.json, samples.jsonl, churn.jsonl,
# events.log, exporter.log). Every process started here is stopped on exit, failure or
# ctrl-c, and the cluster is brought down. Needs root (faults-test.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${SOAK_SECONDS:-3600}
mon_every=${SOAK_MON_RESTART_EVERY:-600}
row_every=${SOAK_ROW_EVERY:-300}
churn_pause=${SOAK_CHURN_PAUSE:-1}
out=${SOAK_OUT:-RELIABILITY.md}
dir=$(realpath -m "${FAULTS_DIR:-.cluster-faults}")
export FAULTS_DIR=$dir
bin=target/release/ceph-rbd-exporter
work=$PWD/target/soak
interval=10

say() { echo "== soak: $(date -u +%H:%M:%S) $*"; }
die() { echo "soak.sh: $*" >&2; exit 1; }

[ -x "$bin" ] || die "$bin missing: run make build (or make soak)"
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import rados, rbd' 2>/dev/null ||
    die "/usr/bin/python3 with the rados and rbd modules is needed (python3-rados python3-rbd)"
for v in "$seconds" "$mon_every" "$row_every"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || die "SOAK_SECONDS, SOAK_MON_RESTART_EVERY, SOAK_ROW_EVERY must be positive integers"
done

exporter_pid= churn_pid= mon_pid= sampler_pid=
stop_pid() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$mon_pid" ]; then
        pkill -P "$mon_pid" 2>/dev/null || true
        stop_pid "$mon_pid"
    fi
    stop_pid "$churn_pid"
    stop_pid "$sampler_pid"
    stop_pid "$exporter_pid"
    say "bringing the cluster down"
    bash scripts/faults-test.sh down || true
}
# --- report ----------------------------------------------------------------
# Written from the raw figures in $work: meta.json (how it was run), samples.jsonl,
# churn.jsonl, events.log, exporter.log.
report() {
    /usr/bin/python3 - "$work" "$out" <<'PY'
import collections, datetime, json, os, statistics, sys
work, out = sys.argv[1], sys.argv[2]
with open(os.path.join(work, "meta.json")) as f:
    meta = json.load(f)
t0, t_end = float(meta["t0"]), float(meta["t_end"])
interval, row_every = float(meta["interval"]), float(meta["row_every"])

def load(name):
    with open(os.path.join(work, name)) as f:
        return [json.loads(line) for line in f if line.strip()]

polls = load("samples.jsonl")
churn = load("churn.jsonl")
events = []
with open(os.path.join(work, "events.log")) as f:
    for line in f:
        t, rest = line.split(" ", 1)
        events.append((float(t), rest.split()))

def err_label(k):
    pool, kind = k.split("/", 1)
    return "%s/%s" % (pool or "(no pool)", kind)

def mmss(t):
    s = int(round(t - t0))
    return "%d:%02d" % (s // 60, s % 60)

# Mon restarts: stop time, start time, quorum time (relative windows).
restarts = []
for t, (what, *args) in events:
    if what == "mon-stop":
        restarts.append({"name": args[0], "stop": t, "start": None, "quorum": None, "q": "?"})
    elif what == "mon-start" and restarts:
        restarts[-1]["start"] = t
    elif what == "mon-quorum" and restarts:
        restarts[-1]["quorum"] = t
        restarts[-1]["q"] = args[1] if len(args) > 1 else "?"
ended_early = [w for _, (w, *_) in events if w in ("exporter-died", "churn-died")]

def window(r):
    """A restart's window: from one sample interval before the stop to two
    after the quorum was back (or the start, if quorum was never seen)."""
    back = r["quorum"] or r["start"] or r["stop"] + 20
    return (r["stop"] - interval, back + 2 * interval)

def in_restart(t):
    for r in restarts:
        a, b = window(r)
        if a <= t <= b:
            return r
    return None

# Error increments: (time, key, delta), from consecutive polls that answered.
answered = [p for p in polls if "errors" in p]
increments = []
prev = {}
for p in answered:
    for k, v in p["errors"].items():
        if v > prev.get(k, 0):
            increments.append((p["t"], k, v - prev.get(k, 0)))
    prev = p["errors"]

def churn_at(t):
    """Cumulative churn counts and errors at time t (last status line before t)."""
    best = None
    for c in churn:
        if c["t"] <= t + 0.5:
            best = c
    if best is None:
        return 0, 0
    return sum(best["counts"].values()), sum(best["errors"].values())

# Rows: the first poll, then one row per row_every seconds (the last one runs
# to the end, including the poll taken after the churn stopped).
bounds = [t0]
while bounds[-1] + row_every < t_end - 1:
    bounds.append(bounds[-1] + row_every)
bounds.append(t_end + 3 * interval)
pools = sorted({k for p in answered for k in p.get("duration", {})})
head = ["time", "RSS MiB", "open fds"] + ["sample s, %s (max)" % p for p in pools] + [
    "polls", "up=0", "/metrics ms (max)", "new sample errors", "images", "churn steps (failed)", "mon restarts"]
rows = []

def fmt_range(vals, f="%.1f"):
    if not vals:
        return "-"
    lo, hi = min(vals), max(vals)
    return (f % lo) if f % lo == f % hi else "%s-%s" % (f % lo, f % hi)

def row(label, ps, a, b):
    rss = [p["rss_kib"] / 1024 for p in ps if "rss_kib" in p]
    fds = [p["fds"] for p in ps if "fds" in p]
    ok = [p for p in ps if "errors" in p]
    cells = [label, fmt_range(rss), fmt_range(fds, "%d")]
    for pool in pools:
        d = [p["duration"][pool] for p in ok if pool in p["duration"]]
        cells.append("%.3f" % max(d) if d else "-")
    failed = len(ps) - len(ok)
    cells.append("%d%s" % (len(ps), " (%d unanswered)" % failed if failed else ""))
    cells.append(str(sum(1 for p in ok if p.get("up") == 0)))
    cells.append("%.0f" % (1000 * max(p["scrape_s"] for p in ok)) if ok else "-")
    new = collections.Counter()
    for t, k, d in increments:
        if a <= t < b:
            new[k] += d
    cells.append(", ".join("%s +%d" % (err_label(k), n) for k, n in sorted(new.items())) or "none")
    cells.append(fmt_range([p["images"] for p in ok], "%d"))
    o1, e1 = churn_at(b)
    o0, e0 = churn_at(a)
    cells.append("%d (%d)" % (o1 - o0, e1 - e0))
    cells.append(", ".join("%s at %s" % (r["name"], mmss(r["stop"])) for r in restarts if a <= r["stop"] < b) or "-")
    return cells, rss, fds

first = [p for p in polls if p["t"] >= t0][:1]
rows.append(row("0:00 (first poll)", first, t0 - 1, t0)[0])
stats = []
for a, b in zip(bounds, bounds[1:]):
    ps = [p for p in polls if a <= p["t"] < b]
    label = "%s-%s" % (mmss(a), mmss(min(b, t_end)) if b < t_end else mmss(t_end) + " (end)")
    cells, rss, fds = row(label, ps, a, b)
    rows.append(cells)
    stats.append((rss, fds))

# Verdicts.
# The first row is the warm-up (allocator pools, connections, the churn's
# population filling up); "after warm-up" is the row after it.
warm_i = 1 if len(stats) >= 3 else 0

def trend(key, scale, a=None, b=float("inf")):
    """Least-squares slope per hour of key over the polls from a (default:
    the row after warm-up) to b."""
    a = bounds[warm_i] if a is None else a
    pts = [(p["t"], p[key] / scale) for p in polls if key in p and a <= p["t"] < b]
    if len(pts) < 3:
        return None
    mt = statistics.mean(t for t, _ in pts)
    mv = statistics.mean(v for _, v in pts)
    den = sum((t - mt) ** 2 for t, _ in pts)
    return 3600 * sum((t - mt) * (v - mv) for t, v in pts) / den if den else 0.0

verdict = []
if len(stats) >= 2 and stats[0][0] and stats[-1][0]:
    warm, last = max(stats[warm_i][0]), max(stats[-1][0])
    growth = last - warm
    slope = trend("rss_kib", 1024)
    mid = (bounds[warm_i] + t_end) / 2
    halves = (trend("rss_kib", 1024, bounds[warm_i], mid), trend("rss_kib", 1024, mid, t_end + 3 * interval))
    flat = growth <= max(0.05 * warm, 1.0)
    verdict.append("- RSS: %.1f MiB at most in the row after warm-up (%s), %.1f MiB at most in the last row "
                   "(%+.1f MiB); least-squares slope from that row on: %+.2f MiB per hour (%s). **%s**."
                   % (warm, rows[1 + warm_i][0], last, growth, slope or 0.0,
                      "first half %+.2f, second half %+.2f MiB per hour" % halves if None not in halves
                      else "too few polls to split",
                      "Flat" if flat else "Not flat (grew more than 5 % or 1 MiB)"))
    rss_polls = [p for p in polls if "rss_kib" in p]
    top = max(p["rss_kib"] for p in rss_polls)
    high = next(p for p in rss_polls if p["rss_kib"] == top)
    verdict.append("- RSS reached its highest, %.1f MiB, at %s and stayed at or below it for the last %d s of the run."
                   % (top / 1024, mmss(high["t"]), rss_polls[-1]["t"] - high["t"]))
    fw, fl = max(stats[warm_i][1]), max(stats[-1][1])
    verdict.append("- Open fds: %d-%d in the row after warm-up, %d-%d in the last row. **%s**."
                   % (min(stats[warm_i][1]), fw, min(stats[-1][1]), fl, "Flat" if fl <= fw else "Not flat"))
elif len(stats) < 2:
    verdict.append("- Too short a run for an RSS/fd verdict (one row).")
lost = [p for p in polls if "errors" not in p]
dead = [p for p in polls if p.get("alive") is False]
verdict.append("- /metrics answered %d of %d polls (slowest %.0f ms)%s; the exporter process %s."
               % (len(answered), len(polls), 1000 * max((p["scrape_s"] for p in answered), default=0),
                  "" if not lost else ": unanswered at " + ", ".join(mmss(p["t"]) for p in lost[:10]),
                  "was alive at every poll" if not dead else "was gone at %d polls" % len(dead)))
if ended_early:
    verdict.append("- **The run ended early**: %s." % ", ".join(ended_early))
unexplained = []
for r in restarts:
    a, b = window(r)
    inc = [(t, k, d) for t, k, d in increments if a <= t <= b]
    down = [p for p in answered if a <= p["t"] <= b and p.get("up") == 0]
    dur = max((v for p in answered if a <= p["t"] <= b for v in p["duration"].values()), default=0)
    back = r["quorum"] or r["start"]
    verdict.append("- %s stopped at %s, started at %s, quorum of %s back at %s: %s; %d poll(s) with up=0; "
                   "slowest sample in the window %.3f s."
                   % (r["name"], mmss(r["stop"]), mmss(r["start"]) if r["start"] else "?", r["q"],
                      mmss(back) if back else "?",
                      ("failed samples " + ", ".join("%s +%d at %s" % (err_label(k), d, mmss(t)) for t, k, d in inc))
                      if inc else "no failed sample", len(down), dur))
if restarts:
    per = [len({t for t, k, d in increments if window(r)[0] <= t <= window(r)[1]}) for r in restarts]
    verdict.append("- In all, %d of %d mon restarts cost a failed sample; at most %d failed sample(s) per restart."
                   % (sum(1 for n in per if n), len(restarts), max(per)))
warns = collections.Counter()
with open(os.path.join(work, "exporter.log")) as f:
    for line in f:
        if " WARN " in line or " ERROR " in line:
            msg = line.split(": ", 1)[-1].strip().replace("`", "'")
            warns[msg.replace(" error=", " (", 1) + ")" if " error=" in msg else msg] += 1
verdict.append("- The exporter logged %s." % (
    "no warning or error" if not warns else
    "; ".join("%d x `%s`" % (n, m) for m, n in warns.most_common(8))))
for t, k, d in increments:
    if in_restart(t) is None:
        unexplained.append("%s +%d at %s" % (err_label(k), d, mmss(t)))
downs = [p for p in answered if p.get("up") == 0 and in_restart(p["t"]) is None]
if increments and all(err_label(k) == "(no pool)/timeout" and in_restart(t) for t, k, d in increments):
    verdict.append("- Why `(no pool)/timeout`: when the mon the exporter talks to stops, its session has to move to "
                   "another mon, and when a mon comes back the mons hold an election; a mon command in flight then "
                   "(the `osd pool ls` that starts every sample) can outlive --ceph.op-timeout. That sample fails "
                   "before any pool is read (no pool label), `ceph_rbd_exporter_up` is 0 until the next sample "
                   "succeeds %d s later, and the last good data stays served meanwhile." % interval)
if unexplained or downs:
    verdict.append("- **Outside any mon restart**: %s%s." % (
        ", ".join(unexplained) or "no sample error",
        "; up=0 at " + ", ".join(mmss(p["t"]) for p in downs[:10]) if downs else ""))
else:
    verdict.append("- Outside the mon restarts: no sample error and no poll with up=0.")
cerr = collections.Counter()
if churn:
    cerr.update(churn[-1]["errors"])
    cnt = churn[-1]["counts"]

# Header.
dur_s = (polls[-1]["t"] if polls else t_end) - t0
loads = [p["load"] for p in polls]
start_utc = datetime.datetime.fromtimestamp(t0, datetime.timezone.utc)
lines = [
    "# Reliability: an hour of churn with mon restarts",
    "",
    "Written by `make soak` (scripts/soak.sh) from one run, started %s UTC, %d s of churn"
    % (start_utc.strftime("%Y-%m-%d %H:%M"), t_end - t0)
    + (" (ended early)" if ended_early else "") + ". Not part of `make test` or CI.",
    "",
    "- Machine: %s, %s cores, %s RAM, Linux %s; shared with other work: 1-minute load average "
    "%.1f-%.1f (median %.1f) during the run." % (meta["cpu"], meta["nproc"], meta["mem"], meta["kernel"],
                                                min(loads, default=0), max(loads, default=0),
                                                statistics.median(loads) if loads else 0),
    "- Ceph %s from the Debian 12 host packages; the cluster of scripts/faults-test.sh: 3 mons, "
    "4 bluestore OSDs (file-backed), 1 mgr; pool `volumes` (16 PGs, OSDs 0-1) and pool `isolated` "
    "(8 PGs, OSDs 2-3), both size 2, min_size 1; 25 images before the churn." % meta["ceph"],
    "- Exporter: `target/release/ceph-rbd-exporter %s`, built from commit %s, on the host, as "
    "`client.rbd-exporter` (mon `profile rbd`, osd `profile rbd-read-only`); default --ceph.op-timeout 10s."
    % (meta["flags"].replace(os.getcwd() + "/", ""), meta.get("commit", "(not recorded)")),
]
if churn:
    elapsed = max(churn[-1]["t"] - t0, 1)
    total = sum(cnt.values())
    lines.append(
        "- Churn (client.admin, /usr/bin/python3 rados/rbd, %s s pause between cycles): each cycle creates a "
        "4 MiB parent image, writes 4 KiB, snapshots and protects it, clones it (clone v1 and v2 in turn; "
        "one clone in three in the other pool), takes and releases an exclusive lock, a shared lock and the "
        "exclusive-lock feature's lock on the clone, flattens the clone of 3 cycles before, and retires the "
        "oldest of 8 parent/clone pairs (remove the clone, unprotect and remove the snapshot, move the parent "
        "to the trash, remove it from the trash a cycle later); every 5th cycle an image is held by "
        "scripts/holder.py (`--write` or `--advisory-lock`) for 30-120 s, then removed. Steps done (a `create` "
        "of a parent includes its write, snapshot and protect; a `lock` step is three lock/unlock pairs): %s; "
        "%d steps in all, %.0f per minute; %s."
        % (meta["churn_pause"], ", ".join("%s %d" % (k, v) for k, v in sorted(cnt.items())), total,
           60 * total / elapsed,
           "churn errors: " + ", ".join("%s %d" % kv for kv in sorted(cerr.items())) if cerr
           else "no churn operation failed"))
lines.append(
    "- Mon restarts, every %s s: " % meta["mon_every"]
    + (", ".join("%s stopped at %s for 20 s (SIGTERM), quorum of %s back at %s" % (
        r["name"], mmss(r["stop"]), r["q"], mmss(r["quorum"] or r["start"] or r["stop"])) for r in restarts)
       or "none") + ".")
lines.append(
    "- Sampled every %d s: the exporter's RSS and open fds (/proc), and its /metrics "
    "(`ceph_rbd_exporter_up`, `sample_duration_seconds` per pool, `sample_errors_total` by pool and kind, "
    "the sum of `ceph_rbd_pool_images`). A row covers %d s; ranges are min-max over its polls. "
    "Raw figures: target/soak/." % (interval, row_every))
lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
lines += ["| " + " | ".join(r) + " |" for r in rows]
lines += ["", "Verdict:", ""] + verdict + [""]
with open(out, "w") as f:
    f.write("\n".join(lines))
PY
    say "wrote $out"
}

# SOAK_REPORT_ONLY=1: write $out again from the figures of the last run.
if [ "${SOAK_REPORT_ONLY:-}" = 1 ]; then
    [ -f "$work/meta.json" ] || die "no $work/meta.json: no finished run to report on"
    report
    exit 0
fi

trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$work"
mkdir -p "$work"
events=$work/events.log
: >"$events"
event() { echo "$(date +%s.%N) $*" >>"$events"; }

t_begin=$(date +%s)
say "starting the faults cluster in $dir"
bash scripts/faults-test.sh up
conf=$dir/ceph.conf

port=
for p in $(seq 40843 40849); do
    if ! ss -Htln "sport = :$p" | grep -q .; then port=$p; break; fi
done
[ -n "$port" ] || die "no free port in 40843-40849"
url=http://127.0.0.1:$port/metrics
flags=(--ceph.config "$dir/exporter.conf" --ceph.user rbd-exporter --sample.interval "${interval}s"
    --web.listen-address "127.0.0.1:$port")
"$bin" "${flags[@]}" >"$work/exporter.log" 2>&1 &
exporter_pid=$!
for i in $(seq 1 100); do
    curl -fsS --max-time 2 "$url" 2>/dev/null | grep -qx 'ceph_rbd_exporter_up 1' && break
    kill -0 "$exporter_pid" 2>/dev/null || die "the exporter exited: $(tail -3 "$work/exporter.log")"
    sleep 0.2
done
t0=$(date +%s)
t_end=$((t0 + seconds))
event "exporter-started pid=$exporter_pid port=$port"
say "exporter pid $exporter_pid on $url; soak until $(date -u -d "@$t_end" +%H:%M:%S) UTC"

# --- sampler ---------------------------------------------------------------
/usr/bin/python3 -u - "$exporter_pid" "$url" "$work/samples.jsonl" "$interval" <<'PY' &
import json, os, re, sys, time, urllib.request
pid, url, out, interval = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)')
label_re = re.compile(r'(\w+)="([^"]*)"')

def poll():
    rec = {"t": time.time(), "load": os.getloadavg()[0]}
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rec["rss_kib"] = int(line.split()[1])
        rec["fds"] = len(os.listdir("/proc/%s/fd" % pid))
    except (FileNotFoundError, ProcessLookupError):
        rec["alive"] = False
    t0 = time.monotonic()
    try:
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        rec["scrape_s"] = time.monotonic() - t0
    except Exception as e:
        rec["scrape_error"] = "%s: %s" % (type(e).__name__, str(e)[:120])
        return rec
    dur, errs, last, images = {}, {}, {}, 0
    for line in body.splitlines():
        m = line_re.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), dict(label_re.findall(m.group(2) or "")), float(m.group(3))
        if name == "ceph_rbd_exporter_up":
            rec["up"] = int(value)
        elif name == "ceph_rbd_exporter_sample_duration_seconds":
            dur[labels.get("pool", "")] = value
        elif name == "ceph_rbd_exporter_last_success_timestamp_seconds":
            last[labels.get("pool", "")] = value
        elif name == "ceph_rbd_exporter_sample_errors_total":
            errs["%s/%s" % (labels.get("pool", ""), labels.get("kind", ""))] = int(value)
        elif name == "ceph_rbd_pool_images":
            images += int(value)
    rec.update(duration=dur, errors=errs, last_success=last, images=images)
    return rec

start = time.time()
k = 0
with open(out, "a") as f:
    while True:
        f.write(json.dumps(poll()) + "\n")
        f.flush()
        k += 1
        time.sleep(max(0.0, start + k * interval - time.time()))
PY
sampler_pid=$!

# --- churn -----------------------------------------------------------------
/usr/bin/python3 -u - "$conf" scripts/holder.py "$work/churn.jsonl" "$churn_pause" <<'PY' 2>"$work/churn.log" &
import collections, json, random, signal, subprocess, sys, time
import rados, rbd
conf, holder_py, out, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
POOLS = ("volumes", "isolated")
KEEP = 8          # parent/clone pairs alive at once
FLATTEN_AGE = 3   # flatten the clone made this many cycles ago
stopping = False

def on_term(*_):
    global stopping
    stopping = True

signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)
random.seed(15)
c = rados.Rados(conffile=conf)
for k in ("rados_mon_op_timeout", "rados_osd_op_timeout", "client_mount_timeout"):
    c.conf_set(k, "30")
c.connect(timeout=30)
io = {p: c.open_ioctx(p) for p in POOLS}
R = rbd.RBD()
FEATURES = rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
counts = collections.Counter()
errors = collections.Counter()
live = collections.deque()   # [parent_pool, parent, clone_pool, clone, cycle, flattened]
trash = []                   # (pool, id) moved to the trash last cycle
holders = []                 # [proc, pool, name, deadline]
doomed = []                  # (pool, name) images to remove once their holder is gone

def op(name, fn, *a, **kw):
    try:
        r = fn(*a, **kw)
        counts[name] += 1
        return True if r is None else r
    except Exception as e:
        errors["%s:%s" % (name, type(e).__name__)] += 1
        print("churn: %s failed: %s: %s" % (name, type(e).__name__, e), file=sys.stderr, flush=True)
        return False

def make_parent(pool, name):
    R.create(io[pool], name, 4 << 20, features=FEATURES, old_format=False)
    with rbd.Image(io[pool], name) as im:
        im.write(b"x" * 4096, 0)
        im.create_snap("s")
        im.protect_snap("s")

def clone(ppool, parent, cpool, name, fmt):
    c.conf_set("rbd_default_clone_format", fmt)
    R.clone(io[ppool], parent, "s", io[cpool], name, features=FEATURES)

def locks(pool, name):
    with rbd.Image(io[pool], name) as im:
        im.lock_exclusive("soak")
        im.unlock("soak")
        im.lock_shared("soak-shared", "soak")
        im.unlock("soak-shared")
        im.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
        im.lock_release()

def flatten(pool, name):
    with rbd.Image(io[pool], name) as im:
        im.flatten()

def retire(pair):
    ppool, parent, cpool, child = pair[:4]
    R.remove(io[cpool], child)
    with rbd.Image(io[ppool], parent) as im:
        im.unprotect_snap("s")
        im.remove_snap("s")
        image_id = im.id()
    R.trash_move(io[ppool], parent)
    return (ppool, image_id)

def holder_start(i):
    pool = random.choice(POOLS)
    name = "soak-h%d" % i
    if not op("create", R.create, io[pool], name, 4 << 20, features=FEATURES, old_format=False):
        return
    mode = ["--write"] if i % 2 == 0 else ["--advisory-lock", "soak-h"]
    p = subprocess.Popen(["/usr/bin/python3", holder_py, "--conf", conf, "--pool", pool, "--image", name] + mode,
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    counts["holder_start"] += 1
    holders.append([p, pool, name, time.time() + random.uniform(30, 120)])

def holder_stop(h):
    p = h[0]
    try:
        p.stdin.close()
        p.wait(timeout=30)
    except Exception:
        p.kill()
        p.wait()
    counts["holder_stop"] += 1
    doomed.append((h[1], h[2]))

def status(last):
    now = time.time()
    if now - last < 10 and not stopping:
        return last
    with open(out, "a") as f:
        f.write(json.dumps({"t": now, "counts": counts, "errors": errors, "live": len(live),
                            "holders": len(holders)}) + "\n")
    return now

last = 0.0
i = 0
while not stopping:
    i += 1
    ppool = "isolated" if i % 3 == 0 else "volumes"
    cpool = "isolated" if i % 3 == 1 else ppool
    parent, child = "soak-p%d" % i, "soak-c%d" % i
    if op("create", make_parent, ppool, parent):
        counts["snap_protect"] += 1
        if op("clone", clone, ppool, parent, cpool, child, "1" if i % 2 else "2"):
            op("lock", locks, cpool, child)
            live.append([ppool, parent, cpool, child, i, False])
    for pair in live:
        if pair[4] == i - FLATTEN_AGE and not pair[5]:
            pair[5] = bool(op("flatten", flatten, pair[2], pair[3]))
    for pool, image_id in trash:
        op("trash_remove", R.trash_remove, io[pool], image_id)
    trash = []
    while len(live) > KEEP:
        t = op("retire", retire, live[0])
        if t is False:
            break  # retried next cycle
        live.popleft()
        counts["trash_move"] += 1
        trash.append(t)
    if i % 5 == 0:
        holder_start(i)
    for h in [h for h in holders if h[3] < time.time()]:
        holders.remove(h)
        holder_stop(h)
    for d in list(doomed):
        if op("remove", R.remove, io[d[0]], d[1]):
            doomed.remove(d)
    last = status(last)
    time.sleep(pause)
for h in holders:
    holder_stop(h)
holders = []
status(0)
for x in io.values():
    x.close()
c.shutdown()
PY
churn_pid=$!

# --- mon restarts ----------------------------------------------------------
mon_loop() {
    local k=1 ids=(a b c) name target now i q
    while :; do
        target=$((t0 + k * mon_every))
        ((target + 25 <= t_end)) || break
        now=$(date +%s)
        ((target > now)) && sleep $((target - now))
        name=mon.${ids[$(((k - 1) % 3))]}
        event "mon-stop $name"
        bash scripts/cluster.sh stop-daemon "$dir" 0 "$name" || event "mon-stop-failed $name"
        event "mon-stopped $name"
        sleep 20
        event "mon-start $name"
        bash scripts/cluster.sh start-daemon "$dir" 0 "$name" || event "mon-start-failed $name"
        for i in $(seq 1 60); do
            q=$(timeout 10 ceph -c "$conf" --connect-timeout 5 quorum_status 2>/dev/null |
                /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)["quorum"]))' 2>/dev/null) || true
            [ "$q" = 3 ] && break
            sleep 1
        done
        event "mon-quorum $name ${q:-?}"
        k=$((k + 1))
    done
}
mon_loop &
mon_pid=$!

say "churn pid $churn_pid, sampler pid $sampler_pid, mon restarter pid $mon_pid"
while (($(date +%s) < t_end)); do
    kill -0 "$exporter_pid" 2>/dev/null || { event "exporter-died"; say "the exporter died"; break; }
    kill -0 "$churn_pid" 2>/dev/null || { event "churn-died"; say "the churn client died; see $work/churn.log"; break; }
    now=$(date +%s)
    if (((now - t0) % 60 < 5)); then say "$(((now - t0) / 60)) min: $(tail -1 "$work/samples.jsonl" 2>/dev/null | cut -c1-150)"; fi
    sleep 5
done
event "end"
stop_pid "$mon_pid"
mon_pid=
stop_pid "$churn_pid"
churn_pid=
# One last poll after the churn stopped, then the exporter is stopped.
sleep $((interval + 1))
stop_pid "$sampler_pid"
sampler_pid=
stop_pid "$exporter_pid"
exporter_pid=

cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
mem=$(awk '/^MemTotal/{printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
ceph_ver=$(ceph --version | awk '{print $3}')
# The sources the binary was built from (make soak builds first).
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || commit="$commit with uncommitted changes"
/usr/bin/python3 -c 'import json, sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
    seconds "$seconds" mon_every "$mon_every" row_every "$row_every" interval "$interval" \
    churn_pause "$churn_pause" t0 "$t0" t_end "$t_end" cpu "$cpu" nproc "$(nproc)" mem "$mem" \
    kernel "$(uname -r)" ceph "$ceph_ver" flags "${flags[*]}" port "$port" commit "$commit" >"$work/meta.json"
report
say "whole run $(($(date +%s) - t_begin)) s"
