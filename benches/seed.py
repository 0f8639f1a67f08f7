#!/usr/bin/python3
"""Seed (or grow) the benchmark pool with N RBD images, in blocks of 100.

Run it with /usr/bin/python3 (Debian's python3-rados/python3-rbd):

    benches/seed.py --conf DIR/ceph.conf --pool bench --total 1000
    benches/seed.py --conf DIR/ceph.conf --pool bench --total 10000   # adds 9000

Images are named bench-NNNNN. Within every block of 100 (offsets):
   0  1  2   parents: one protected snapshot `snap` each, with clone v2 children
   5..14     clones (10 %): 5,6,14 of @0; 7,8 of @1; 9,10,13 of @2
  10 11      also snapshotted (protected), so 10 -> 11 -> 12 is a chain:
   12        a clone 3 deep (2@snap -> 10@snap -> 11@snap -> 12)
   3         an unprotected backup-style snapshot, no children
  other      plain 1 GiB thin images
so 6 % of the images have snapshots (0, 1, 2, 3, 10, 11), 3 % have protected
snapshots with children, and 10 % are clones. Nothing is written: the exporter reads headers only.

The pool is created (32 PGs, rbd application) when missing. Growing an
existing pool continues after its last complete block. Creation runs on a
thread pool: librbd calls release the GIL.
"""

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

try:
    import rados
    import rbd
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit("seed.py: cannot import rados/rbd ({}); run it with /usr/bin/python3".format(e))

GiB = 1 << 30
BLOCK = 100
T0 = time.monotonic()

# offset -> (parent offset, depth) for the clones of a block, in creation order.
CLONES = [(5, 0), (6, 0), (14, 0), (7, 1), (8, 1), (9, 2), (13, 2), (10, 2), (11, 10), (12, 11)]
PROTECTED_PARENTS = (0, 1, 2)
CHAIN_SNAPSHOTTED = (10, 11)
BACKUP_SNAPSHOT = 3


def say(msg):
    print("[bench-seed {:6.1f}s] {}".format(time.monotonic() - T0, msg), flush=True)


def name(i):
    return "bench-{:05d}".format(i)


def seed_block(io, b):
    r = rbd.RBD()
    clone_offsets = {o for o, _ in CLONES}
    for o in range(BLOCK):
        if o not in clone_offsets:
            r.create(io, name(b + o), 1 * GiB)
    for o in PROTECTED_PARENTS:
        with rbd.Image(io, name(b + o)) as img:
            img.create_snap("snap")
            img.protect_snap("snap")
    with rbd.Image(io, name(b + BACKUP_SNAPSHOT)) as img:
        img.create_snap("backup.snap.1700000000")
    for o, p in CLONES:
        r.clone(io, name(b + p), "snap", io, name(b + o))
        if o in CHAIN_SNAPSHOTTED:
            with rbd.Image(io, name(b + o)) as img:
                img.create_snap("snap")
                img.protect_snap("snap")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conf", required=True)
    ap.add_argument("--pool", default="bench")
    ap.add_argument("--total", type=int, required=True, help="images wanted in all (a multiple of 100)")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--pg-num", type=int, default=32)
    args = ap.parse_args(argv)
    if args.total <= 0 or args.total % BLOCK:
        sys.exit("--total must be a positive multiple of {}".format(BLOCK))

    cluster = rados.Rados(conffile=args.conf)
    cluster.conf_set("admin_socket", "")
    cluster.conf_set("rbd_default_clone_format", "2")
    cluster.connect(timeout=30)
    try:
        if not cluster.pool_exists(args.pool):
            cmd = {"prefix": "osd pool create", "pool": args.pool, "pg_num": args.pg_num, "pgp_num": args.pg_num}
            ret, _, errs = cluster.mon_command(json.dumps(cmd), b"", timeout=30)
            if ret != 0:
                sys.exit("osd pool create {}: {} {}".format(args.pool, ret, errs))
            cluster.wait_for_latest_osdmap()
            rbd.RBD().pool_init(cluster.open_ioctx(args.pool), False)
            say("pool {} created ({} PGs)".format(args.pool, args.pg_num))
        io = cluster.open_ioctx(args.pool)
        existing = set(rbd.RBD().list(io))
        have = 0
        while all(name(have + o) in existing for o in range(BLOCK)):
            have += BLOCK
        if len(existing) != have:
            sys.exit("pool {} holds {} images but only {} complete blocks: seed a fresh pool"
                     .format(args.pool, len(existing), have // BLOCK))
        if have >= args.total:
            say("pool {} already has {} images".format(args.pool, have))
            return 0
        blocks = list(range(have, args.total, BLOCK))
        say("creating images {}..{} in {} blocks on {} threads"
            .format(name(have), name(args.total - 1), len(blocks), args.threads))
        done = 0
        with ThreadPoolExecutor(args.threads) as ex:
            for _ in ex.map(lambda b: seed_block(io, b), blocks):
                done += 1
                if done % 10 == 0 or done == len(blocks):
                    say("{} / {} blocks".format(done, len(blocks)))
        say("pool {} now has {} images".format(args.pool, len(rbd.RBD().list(io))))
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
