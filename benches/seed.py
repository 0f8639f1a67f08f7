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

Fast growth (--copy-from B, e.g. 10000): blocks from image B on are not made
through librbd (about 6 ms an image here, 10 minutes for 100000) but copied
from the last block librbd made, with librados aio writes, many in flight:
every object of the template block's images (rbd_id.NAME, rbd_header.ID,
rbd_object_map.ID[.SNAP]: data, xattrs and omap) is written under a new
name and id of the same length, with every template id and name inside the
values replaced by the new ones (same lengths, so every encoding stays
valid: object prefixes, clone v2 parent specs, snap_children lists), and
the new names and ids are added to rbd_directory. The copies are images
librbd opens and `rbd info`/`rbd ls -l` list, with the same mix of clones
(parents within their block) and snapshots. Data objects are not copied
(nothing is written to the images anyway; the template block is never one a
holder writes to).
"""

import argparse
import json
import re
import sys
import threading
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


def rbd_string(data):
    """A Ceph-encoded string (u32 length, bytes) as text."""
    n = int.from_bytes(data[:4], "little")
    return data[4:4 + n].decode()


class Window:
    """At most `limit` aio ops in flight; counts failures."""

    def __init__(self, limit):
        self.sem = threading.Semaphore(limit)
        self.lock = threading.Lock()
        self.errors = []

    def done(self, oid):
        def cb(comp):
            rc = comp.get_return_value()
            if rc < 0:
                with self.lock:
                    self.errors.append((oid, rc))
            self.sem.release()
        return cb

    def write(self, io, oid, op):
        self.sem.acquire()
        io.operate_aio_write_op(op, oid, oncomplete=self.done(oid))


def read_object(io, oid):
    """An object's data, xattrs and omap."""
    size, _ = io.stat(oid)
    data = io.read(oid, size) if size else b""
    xattrs = dict(io.get_xattrs(oid))
    omap = {}
    start = ""
    while True:
        with rados.ReadOpCtx() as op:
            it, _ = io.get_omap_vals(op, start, "", 1000)
            io.operate_read_op(op, oid)
            got = list(it)
        for k, v in got:
            omap[k] = v or b""
        if len(got) < 1000:
            break
        start = got[-1][0]
    return data, xattrs, omap


def read_template(io, template):
    """The block starting at `template`: its ids, every object of its
    images as {oid: (data, xattrs, omap)}, and its rbd_directory entries."""
    dir_keys = ["name_" + name(template + o) for o in range(BLOCK)]
    with rados.ReadOpCtx() as op:
        it, _ = io.get_omap_vals_by_keys(op, tuple(dir_keys))
        io.operate_read_op(op, "rbd_directory")
        ids = {k[len("name_"):]: rbd_string(v) for k, v in it}
    if len(ids) != BLOCK:
        sys.exit("template block {} has {} images in rbd_directory".format(name(template), len(ids)))
    id_of = [ids[name(template + o)] for o in range(BLOCK)]
    # Every object of the template's images: the id objects, the headers,
    # the object maps (of the head and of each snapshot).
    by_id = re.compile("^rbd_object_map\\.([0-9a-f]+)(\\.[0-9a-f]+)?$")
    idset = set(id_of)
    objects = ["rbd_id." + name(template + o) for o in range(BLOCK)]
    objects += ["rbd_header." + i for i in id_of]
    for obj in io.list_objects():
        m = by_id.match(obj.key)
        if m and m.group(1) in idset:
            objects.append(obj.key)
    contents = {oid: read_object(io, oid) for oid in objects}
    dir_vals = {}
    for o in range(BLOCK):
        n, i = name(template + o), id_of[o]
        dir_vals["name_" + n] = ("name_" + n, b"")
        dir_vals["id_" + i] = ("id_" + i, b"")
    with rados.ReadOpCtx() as op:
        it, _ = io.get_omap_vals_by_keys(op, tuple(dir_vals))
        io.operate_read_op(op, "rbd_directory")
        for k, v in it:
            dir_vals[k] = (k, v)
    return id_of, contents, dir_vals


def copy_blocks(io, template, blocks, inflight):
    """Copies the images of the block starting at `template` to each block
    in `blocks`, with aio writes, `inflight` in flight; yields after each
    block."""
    id_of, contents, dir_vals = read_template(io, template)
    idset = set(id_of)
    pattern = re.compile("|".join(re.escape(x) for x in sorted(set(id_of) | {name(template + o) for o in range(BLOCK)}, key=len, reverse=True)))
    bpattern = re.compile(pattern.pattern.encode())
    window = Window(inflight)
    for b in blocks:
        if b + BLOCK > 100000:
            sys.exit("copies are named bench-NNNNN: at most 100000 images")
        mapping = {}
        for o in range(BLOCK):
            old_id = id_of[o]
            # Same length as the template's id; "c" then the image's number
            # in hex: no librbd id starts with "c" here (they start with the
            # client's global id in hex, "10..").
            new_id = "c" + format(b + o, "x").rjust(len(old_id) - 1, "0")
            if len(new_id) != len(old_id) or new_id in idset:
                sys.exit("cannot make a new id for {} from {}".format(name(b + o), old_id))
            mapping[old_id] = new_id
            mapping[name(template + o)] = name(b + o)
        bmapping = {k.encode(): v.encode() for k, v in mapping.items()}
        sub = lambda s: pattern.sub(lambda m: mapping[m.group(0)], s)
        bsub = lambda s: bpattern.sub(lambda m: bmapping[m.group(0)], s)
        for oid, (data, xattrs, omap) in contents.items():
            with rados.WriteOpCtx() as op:
                op.write_full(bsub(data))
                for k, v in xattrs.items():
                    op.set_xattr(k, bsub(v))
                if omap:
                    keys = tuple(omap)
                    io.set_omap(op, tuple(sub(k) for k in keys), tuple(bsub(omap[k]) for k in keys))
                window.write(io, sub(oid), op)
        with rados.WriteOpCtx() as op:
            io.set_omap(op, tuple(sub(k) for k, _ in dir_vals.values()),
                        tuple(bsub(v) for _, v in dir_vals.values()))
            window.write(io, "rbd_directory", op)
        yield b
    for _ in range(inflight):
        window.sem.acquire()
    if window.errors:
        sys.exit("{} copy writes failed, e.g. {}".format(len(window.errors), window.errors[:3]))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conf", required=True)
    ap.add_argument("--pool", default="bench")
    ap.add_argument("--total", type=int, required=True, help="images wanted in all (a multiple of 100)")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--pg-num", type=int, default=32)
    ap.add_argument("--copy-from", type=int, default=None,
                    help="copy blocks from this image on from the last block librbd made (fast growth)")
    ap.add_argument("--inflight", type=int, default=128, help="aio writes in flight when copying")
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
        copy_from = args.total if args.copy_from is None else max(args.copy_from, BLOCK)
        blocks = list(range(have, min(args.total, copy_from), BLOCK))
        if blocks:
            say("creating images {}..{} in {} blocks on {} threads"
                .format(name(have), name(blocks[-1] + BLOCK - 1), len(blocks), args.threads))
        done = 0
        with ThreadPoolExecutor(args.threads) as ex:
            for _ in ex.map(lambda b: seed_block(io, b), blocks):
                done += 1
                if done % 10 == 0 or done == len(blocks):
                    say("{} / {} blocks".format(done, len(blocks)))
        made = have + len(blocks) * BLOCK
        copies = list(range(made, args.total, BLOCK))
        if copies:
            template = min(made, copy_from) - BLOCK
            say("copying block {} to images {}..{} ({} blocks, {} aio writes in flight)"
                .format(name(template), name(made), name(args.total - 1), len(copies), args.inflight))
            t = time.monotonic()
            for done, _ in enumerate(copy_blocks(io, template, copies, args.inflight), 1):
                if done % 50 == 0 or done == len(copies):
                    say("{} / {} blocks copied".format(done, len(copies)))
            say("copied {} images in {:.1f}s".format(len(copies) * BLOCK, time.monotonic() - t))
        say("pool {} now has {} images".format(args.pool, len(rbd.RBD().list(io))))
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
