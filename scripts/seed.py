#!/usr/bin/python3
"""Seed a throwaway Ceph cluster with RBD images that have hygiene problems.

Run it with /usr/bin/python3 (Debian's python3-rados/python3-rbd):

    scripts/seed.py --conf DIR/ceph.conf --state-dir STATE test    # exact names the tests use
    scripts/seed.py --conf DIR/ceph.conf --state-dir STATE demo    # test + a realistic OpenStack/k8s look
    scripts/seed.py --conf DIR/ceph.conf --state-dir STATE web     # adds the pages' cases (below)
    scripts/seed.py --conf DIR/ceph.conf --state-dir STATE stop-holders

Seeding is meant for a fresh cluster (`scripts/cluster.sh start`): it refuses to
run when one of its pools already exists. It creates the pools and images with
the rados/rbd bindings, starts holder processes (scripts/holder.py) detached in
their own session with stdin from /dev/null, so they run until killed, waits
until every holder has its watch (and lock), and writes STATE/seed.json:

    pools:    pool -> namespace ("" is the default one) -> [image names]
    trash:    pool -> namespace -> [{id, name}]
    holders:  name -> {pid, image spec, image id, mode, client, address, ...}
    held:     image spec -> [{holder, pid}]
    items:    what each numbered scenario of the layout is (see TEST LAYOUT below)

Holder pids are in STATE/holders/<name>.pid, their logs in STATE/holders/<name>.log.
`stop-holders` sends them SIGTERM (SIGKILL after 10 s) and waits until they are gone.

TEST LAYOUT (exact names; tests depend on them)
  pools images volumes vms k8s scratch (rbd, 8 PGs), not-rbd (rgw app, one object)
   1 images/8c0f7d1e-glance-base@snap (protected) -> volumes/volume-from-glance,
     vms/3b6e5a7c-nova-instance_disk (clone v2)
   2 volumes/volume-chain-0 .. volume-chain-6, each clone of the previous one's
     @volume-chain-{i}.clone_snap (protected): volume-chain-6 has depth 6
   3 volumes/legacy-parent@base (protected) -> volumes/legacy-child (clone v1)
   4 images/golden@gone (unprotected) -> volumes/volume-snap-trashed (v2); the
     snapshot was then removed, so it sits in the trash snapshot namespace
   5 images/retired@s (protected) -> volumes/volume-parent-trashed; images/retired in the trash
   6 volumes/volume-olddead.deleted@snap (protected) -> volumes/volume-child-of-deleted
     (created as volume-olddead, renamed after cloning, as Cinder does)
   7 volumes/volume-attached: one holder --write (watch + exclusive lock);
     volumes/volume-multiattach: two holders, no write (two watchers, no lock)
   8 volumes/volume-zombie.deleted: holder --write
   9 volumes/volume-trashed-held: in the trash, held by a holder opened by image id
  10 volumes/volume-locked: advisory lock `stale-cookie` from an exited `rbd lock add`
  11 volumes/volume-flatten-me (v2 clone of images/8c0f7d1e-glance-base@snap) with a
     `ceph rbd task add flatten` task that stays queued in volumes/rbd_task: a holder
     keeps an advisory lock (cookie `flatten-blocker`) on it, so the mgr's librbd cannot
     take the exclusive lock, the flatten fails with EROFS and rbd_support retries it
     forever (after 30 s, 60 s, ... then every 300 s). A holder with lock_acquire()
     does NOT work: librbd forwards the flatten to the lock owner, which runs it.
  12 k8s/tenant-a (RBD namespace): csi-vol-0001 (holder --write), csi-snap-base@csi-snap
     (protected) -> csi-vol-0002; k8s/csi-vol-default in the default namespace
  13 volumes/volume-attached@backup.5f1e.snap.1700000000 (unprotected, no children)
  14 vms/idle-disk: nothing to say

WEB LAYOUT (`web`: added to a cluster already seeded with `test` or `demo`, for the
browser test of the HTML pages, tests/browser.rs; writes STATE/web.json, not seed.json)
  images/<uuid>@snap (protected), a Glance image with 500 v2 clones: Cinder volumes
  volumes/volume-<uuid> and Nova disks vms/<uuid>_disk. A handful need action:
    - a chain under one volume: volume-<uuid> clones of clones, depths 2..7; the ones
      deeper than 5 (Cinder's rbd_max_clone_depth) have clone_depth_exceeded
    - a volume renamed volume-<uuid>.deleted after it was cloned: its clone has
      parent_deleted
    - a volume moved to the trash after it was cloned: its clone has parent_image_trashed
    - a volume and a Nova disk (children of the Glance image) with a flatten task queued
      that stays queued, as item 11 (holders web-flatten-blocker-0/1): flatten_queued
  Names a page must show literally, in pool volumes:
    <script>window.__pwned=1</script>          (a `/` in it: %2F in a URL)
    ünïcødé-镜像@snap "v1" <b>  (protected) -> it's "quoted" (clone v2)
    <img src=x onerror=window.__pwned=1>.deleted   held by holder web-orphan (--write): an
                                                   orphaned watcher (image_deleted)
  STATE/web.json: glance (spec, id, children per pool), needs_action (spec -> reasons),
  names, orphan, holders.
"""

import argparse
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor

# Python 3.12+ (Debian 13/14 chroots) warn about utcfromtimestamp() inside the rbd
# module's own trash_list(); not ours to fix, and noise in the test log.
warnings.filterwarnings("ignore", message=r".*utcfromtimestamp", category=DeprecationWarning)

try:
    import rados
    import rbd
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit("seed.py: cannot import rados/rbd ({}); run it with /usr/bin/python3 "
             "and install python3-rados python3-rbd".format(e))

HERE = os.path.dirname(os.path.abspath(__file__))
HOLDER = os.path.join(HERE, "holder.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

MiB = 1 << 20
GiB = 1 << 30

RBD_POOLS = ["images", "volumes", "vms", "k8s", "scratch"]
PLAIN_POOL = "not-rbd"
PLAIN_OBJECT = "not-an-rbd-image"
GLANCE_BASE = "8c0f7d1e-glance-base"
FLATTEN_COOKIE = "flatten-blocker"

T0 = time.monotonic()


class SeedError(Exception):
    pass


def say(msg):
    print("[seed {:6.2f}s] {}".format(time.monotonic() - T0, msg), flush=True)


def spec(pool, ns, name):
    return "/".join([pool] + ([ns] if ns else []) + [name])


class Seeder:
    def __init__(self, conf, state_dir):
        self.conf = os.path.realpath(conf)
        self.state_dir = os.path.abspath(state_dir)
        self.holders_dir = os.path.join(self.state_dir, "holders")
        self.cluster = None
        self.ioctxs = {}
        self.rbd = rbd.RBD()
        self.holders = {}   # name -> dict (with "proc" while we own it)
        self.items = {}
        self.extra = {}

    # ---------------------------------------------------------------- plumbing
    def connect(self):
        if not os.path.exists(self.conf):
            raise SeedError("no such ceph.conf: {}".format(self.conf))
        self.cluster = rados.Rados(conffile=self.conf)
        self.cluster.conf_set("admin_socket", "")
        self.cluster.conf_set("rbd_default_clone_format", "2")
        self.cluster.connect(timeout=30)

    def close(self):
        for io in self.ioctxs.values():
            io.close()
        self.ioctxs.clear()
        if self.cluster is not None:
            self.cluster.shutdown()
            self.cluster = None

    def io(self, pool, ns=""):
        key = (pool, ns)
        if key not in self.ioctxs:
            io = self.cluster.open_ioctx(pool)
            io.set_namespace(ns)
            self.ioctxs[key] = io
        return self.ioctxs[key]

    def mon(self, cmd, ok_errnos=()):
        ret, out, errs = self.cluster.mon_command(json.dumps(cmd), b"", timeout=30)
        if ret != 0 and -ret not in ok_errnos:
            raise SeedError("mon command {} failed: {} {}".format(cmd["prefix"], ret, errs))
        return out

    def mgr(self, cmd, wait=90):
        """mgr command, retried while the mgr or its rbd_support module is still starting."""
        deadline = time.monotonic() + wait
        while True:
            try:
                ret, out, errs = self.cluster.mgr_command(json.dumps(cmd), b"", timeout=15)
            except rados.Error as e:  # e.g. timed out waiting for an active mgr
                ret, out, errs = -errno.ETIMEDOUT, b"", str(e)
            if ret == 0:
                return out
            if time.monotonic() > deadline or -ret not in (errno.EAGAIN, errno.ETIMEDOUT, errno.ENOTSUP,
                                                            errno.EOPNOTSUPP, errno.ENOENT, errno.EACCES):
                raise SeedError("mgr command {!r} failed: {} {}".format(cmd["prefix"], ret, errs))
            time.sleep(0.5)

    def mgr_module_failure(self, module):
        """Why the mgr cannot load MODULE (its MGR_MODULE_DEPENDENCY health detail), or None."""
        out = self.mon({"prefix": "health", "detail": "detail", "format": "json"})
        checks = json.loads(out or b"{}").get("checks", {})
        for d in checks.get("MGR_MODULE_DEPENDENCY", {}).get("detail", []):
            msg = d.get("message", "")
            if "'{}'".format(module) in msg:
                return msg
        return None

    def run(self, *argv):
        p = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        if p.returncode != 0:
            raise SeedError("{} failed ({}): {}".format(" ".join(argv), p.returncode, p.stderr.strip()))
        return p.stdout

    # ------------------------------------------------------------------ rbd ops
    def create(self, pool, name, size=1 * GiB, ns=""):
        self.rbd.create(self.io(pool, ns), name, size)

    def snap(self, pool, name, snap, protect=False, ns=""):
        with rbd.Image(self.io(pool, ns), name) as img:
            img.create_snap(snap)
            if protect:
                img.protect_snap(snap)

    def clone(self, ppool, pname, psnap, cpool, cname, pns="", cns="", fmt=2):
        if fmt != 2:
            self.cluster.conf_set("rbd_default_clone_format", str(fmt))
        try:
            self.rbd.clone(self.io(ppool, pns), pname, psnap, self.io(cpool, cns), cname)
        finally:
            if fmt != 2:
                self.cluster.conf_set("rbd_default_clone_format", "2")

    def rename(self, pool, src, dst, ns=""):
        self.rbd.rename(self.io(pool, ns), src, dst)

    def image_id(self, pool, name, ns=""):
        with rbd.Image(self.io(pool, ns), name, read_only=True) as img:
            return img.id()

    def trash(self, pool, name, ns=""):
        image_id = self.image_id(pool, name, ns)
        self.rbd.trash_move(self.io(pool, ns), name, 0)
        return image_id

    def write(self, pool, name, data, offset=0, ns=""):
        with rbd.Image(self.io(pool, ns), name) as img:
            img.write(data, offset)

    # ------------------------------------------------------------------- pools
    def check_fresh(self):
        existing = [p for p in RBD_POOLS + [PLAIN_POOL] if self.cluster.pool_exists(p)]
        if existing:
            raise SeedError("pool(s) {} already exist: this cluster is already seeded. Seed a fresh "
                            "cluster (scripts/cluster.sh stop DIR; scripts/cluster.sh start DIR PORT)"
                            .format(", ".join(existing)))
        live = [n for n, pid in self.recorded_pids().items() if pid_is_holder(pid)]
        if live:
            raise SeedError("holders {} from an earlier seed are still running; run "
                            "`seed.py --state-dir {} stop-holders` first".format(live, self.state_dir))

    def create_pools(self):
        for p in RBD_POOLS + [PLAIN_POOL]:
            self.mon({"prefix": "osd pool create", "pool": p, "pg_num": 8, "pgp_num": 8})
        self.mon({"prefix": "osd pool application enable", "pool": PLAIN_POOL, "app": "rgw"})
        self.cluster.wait_for_latest_osdmap()
        # `rbd pool init` for each rbd pool; each waits on the mons, so do them in parallel.
        with ThreadPoolExecutor(len(RBD_POOLS)) as ex:
            list(ex.map(lambda p: self.rbd.pool_init(self.io(p), False), RBD_POOLS))
        self.io(PLAIN_POOL).write_full(PLAIN_OBJECT, b"this pool holds no RBD images\n")
        say("pools: {} (rbd), {} (rgw, 1 object)".format(" ".join(RBD_POOLS), PLAIN_POOL))

    # ----------------------------------------------------------------- holders
    def recorded_pids(self):
        pids = {}
        if os.path.isdir(self.holders_dir):
            for f in sorted(os.listdir(self.holders_dir)):
                if f.endswith(".pid"):
                    try:
                        with open(os.path.join(self.holders_dir, f)) as fh:
                            pids[f[:-4]] = int(fh.read().strip())
                    except (OSError, ValueError):
                        pass
        return pids

    def start_holder(self, name, pool, ns="", image=None, image_id=None, write=False,
                     lock_exclusive=False, advisory_lock=None, note=None):
        os.makedirs(self.holders_dir, exist_ok=True)
        pidfile = os.path.join(self.holders_dir, name + ".pid")
        ready = os.path.join(self.holders_dir, name + ".ready")
        logf = os.path.join(self.holders_dir, name + ".log")
        for f in (pidfile, ready):
            if os.path.exists(f):
                os.unlink(f)
        argv = [PYTHON, HOLDER, "--conf", self.conf, "--pool", pool]
        if ns:
            argv += ["--namespace", ns]
        argv += ["--image", image] if image else ["--image-id", image_id]
        if write:
            argv.append("--write")
        if lock_exclusive:
            argv.append("--lock-exclusive")
        if advisory_lock:
            argv += ["--advisory-lock", advisory_lock]
        argv += ["--pidfile", pidfile, "--ready-file", ready]
        with open(logf, "w") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, close_fds=True, cwd="/")
        if image is None:
            image = self.trash_name(pool, ns, image_id)
        self.holders[name] = {
            "pid": proc.pid, "proc": proc, "pool": pool, "namespace": ns, "image": image,
            "image_id": image_id, "by_id": image_id is not None and image is not None,
            "write": write, "lock_exclusive": lock_exclusive, "advisory_lock": advisory_lock,
            "spec": spec(pool, ns, image), "pidfile": pidfile, "ready_file": ready, "log": logf,
            "note": note, "argv": argv,
        }
        return self.holders[name]

    def trash_name(self, pool, ns, image_id):
        for e in self.rbd.trash_list(self.io(pool, ns)):
            if e["id"] == image_id:
                return e["name"]
        return None

    def wait_holders(self, names=None, timeout=60):
        names = list(names or self.holders)
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending:
            for n in sorted(pending):
                h = self.holders[n]
                if os.path.exists(h["ready_file"]):
                    with open(h["ready_file"]) as f:
                        txt = f.read()
                    try:
                        info = json.loads(txt)
                    except ValueError:
                        continue  # being written
                    h.update({k: info.get(k) for k in ("client", "address", "lock_owner")})
                    pending.discard(n)
                elif h["proc"].poll() is not None:
                    with open(h["log"]) as f:
                        log = f.read()
                    raise SeedError("holder {} ({}) exited with {} before it was ready:\n{}".format(
                        n, h["spec"], h["proc"].returncode, log))
            if pending and time.monotonic() > deadline:
                raise SeedError("holders not ready after {}s: {}".format(timeout, sorted(pending)))
            if pending:
                time.sleep(0.05)

    def kill_started_holders(self):
        for h in self.holders.values():
            p = h.get("proc")
            if p is not None and p.poll() is None:
                p.terminate()
        for h in self.holders.values():
            p = h.get("proc")
            if p is not None:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()

    def crash_holder(self, name):
        """SIGKILL a holder: its watch expires ~30 s later, its exclusive lock stays."""
        h = self.holders[name]
        h["proc"].kill()
        h["proc"].wait()
        for f in (h["pidfile"], h["ready_file"]):
            if os.path.exists(f):
                os.unlink(f)
        h["crashed"] = True
        h["killed_at"] = time.time()
        say("killed holder {} (SIGKILL) on {}: its watch expires in ~30 s, its exclusive lock stays"
            .format(name, h["spec"]))

    # ------------------------------------------------------------- test layout
    def seed_test(self):
        R = self
        # 1. Glance base with clones in two other pools
        R.create("images", GLANCE_BASE, 64 * MiB)
        R.write("images", GLANCE_BASE, b"\xeb\x63\x90" + b"\0" * 4093)  # a little data, like a boot sector
        R.snap("images", GLANCE_BASE, "snap", protect=True)
        R.clone("images", GLANCE_BASE, "snap", "volumes", "volume-from-glance")
        R.clone("images", GLANCE_BASE, "snap", "vms", "3b6e5a7c-nova-instance_disk")
        R.items["1"] = {"what": "protected glance snapshot with v2 children in other pools",
                        "parent": "images/{}@snap".format(GLANCE_BASE),
                        "children": ["volumes/volume-from-glance", "vms/3b6e5a7c-nova-instance_disk",
                                     "volumes/volume-flatten-me"]}
        # 2. Cinder clone chain of depth 6
        R.create("volumes", "volume-chain-0", 1 * GiB)
        for i in range(1, 7):
            s = "volume-chain-{}.clone_snap".format(i)
            R.snap("volumes", "volume-chain-{}".format(i - 1), s, protect=True)
            R.clone("volumes", "volume-chain-{}".format(i - 1), s, "volumes", "volume-chain-{}".format(i))
        R.items["2"] = {"what": "cinder clone chain", "images": ["volumes/volume-chain-{}".format(i) for i in range(7)],
                        "deepest": "volumes/volume-chain-6", "depth": 6}
        # 3. v1 clone
        R.create("volumes", "legacy-parent", 1 * GiB)
        R.snap("volumes", "legacy-parent", "base", protect=True)
        R.clone("volumes", "legacy-parent", "base", "volumes", "legacy-child", fmt=1)
        R.items["3"] = {"what": "clone v1", "parent": "volumes/legacy-parent@base", "child": "volumes/legacy-child"}
        # 4. v2 clone whose parent snapshot was removed (-> trash snapshot namespace)
        R.create("images", "golden", 64 * MiB)
        R.snap("images", "golden", "gone")
        R.clone("images", "golden", "gone", "volumes", "volume-snap-trashed")
        with rbd.Image(R.io("images"), "golden") as img:
            img.remove_snap("gone")
            trashed = [sn for sn in img.list_snaps() if sn.get("namespace") == rbd.RBD_SNAP_NAMESPACE_TYPE_TRASH]
        if len(trashed) != 1:
            raise SeedError("images/golden@gone did not move to the trash snapshot namespace: {}".format(trashed))
        R.items["4"] = {"what": "v2 clone of a removed (trashed) snapshot",
                        "parent": "images/golden@gone", "child": "volumes/volume-snap-trashed",
                        "trash_snap_name": trashed[0]["name"], "trash_snap_id": trashed[0]["id"]}
        # 5. clone whose parent image is in the trash
        R.create("images", "retired", 64 * MiB)
        R.snap("images", "retired", "s", protect=True)
        R.clone("images", "retired", "s", "volumes", "volume-parent-trashed")
        retired_id = R.trash("images", "retired")
        R.items["5"] = {"what": "clone whose parent image is in the trash", "parent": "images/retired@s",
                        "parent_id": retired_id, "child": "volumes/volume-parent-trashed"}
        # 6. .deleted parent
        R.create("volumes", "volume-olddead", 1 * GiB)
        R.snap("volumes", "volume-olddead", "snap", protect=True)
        R.clone("volumes", "volume-olddead", "snap", "volumes", "volume-child-of-deleted")
        R.rename("volumes", "volume-olddead", "volume-olddead.deleted")
        R.items["6"] = {"what": "child of a .deleted parent", "parent": "volumes/volume-olddead.deleted@snap",
                        "child": "volumes/volume-child-of-deleted"}
        # 7, 8, 13: images for holders (snapshots before any holder opens them)
        R.create("volumes", "volume-attached", 10 * GiB)
        R.snap("volumes", "volume-attached", "backup.5f1e.snap.1700000000")
        R.create("volumes", "volume-multiattach", 10 * GiB)
        R.create("volumes", "volume-zombie", 10 * GiB)
        R.rename("volumes", "volume-zombie", "volume-zombie.deleted")
        R.items["13"] = {"what": "cinder backup snapshot",
                         "snapshot": "volumes/volume-attached@backup.5f1e.snap.1700000000"}
        # 9. trashed image that is still held (trash first: a watched image refuses trash mv)
        R.create("volumes", "volume-trashed-held", 1 * GiB)
        held_id = R.trash("volumes", "volume-trashed-held")
        # 10. stale advisory lock from a CLI client that has exited
        R.create("volumes", "volume-locked", 1 * GiB)
        lock_cli = subprocess.Popen(["rbd", "-c", R.conf, "lock", "add", "volumes/volume-locked", "stale-cookie"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        # 11. clone to be flattened by the mgr
        R.clone("images", GLANCE_BASE, "snap", "volumes", "volume-flatten-me")
        # 12. RBD namespace in k8s
        R.rbd.namespace_create(R.io("k8s"), "tenant-a")
        R.create("k8s", "csi-vol-0001", 1 * GiB, ns="tenant-a")
        R.create("k8s", "csi-snap-base", 1 * GiB, ns="tenant-a")
        R.snap("k8s", "csi-snap-base", "csi-snap", protect=True, ns="tenant-a")
        R.clone("k8s", "csi-snap-base", "csi-snap", "k8s", "csi-vol-0002", pns="tenant-a", cns="tenant-a")
        R.create("k8s", "csi-vol-default", 1 * GiB)
        R.items["12"] = {"what": "rbd namespace", "namespace": "k8s/tenant-a",
                         "images": ["k8s/tenant-a/csi-vol-0001", "k8s/tenant-a/csi-snap-base",
                                    "k8s/tenant-a/csi-vol-0002"],
                         "parent": "k8s/tenant-a/csi-snap-base@csi-snap", "child": "k8s/tenant-a/csi-vol-0002",
                         "default_namespace_image": "k8s/csi-vol-default", "held": "k8s/tenant-a/csi-vol-0001"}
        # 14. nothing to say
        R.create("vms", "idle-disk", 20 * GiB)
        R.items["14"] = {"what": "plain unwatched image", "image": "vms/idle-disk"}
        say("test images created")

        # holders, all at once
        R.start_holder("attached", "volumes", image="volume-attached", write=True)
        R.start_holder("multiattach-a", "volumes", image="volume-multiattach")
        R.start_holder("multiattach-b", "volumes", image="volume-multiattach")
        R.start_holder("zombie", "volumes", image="volume-zombie.deleted", write=True)
        R.start_holder("trashed-held", "volumes", image_id=held_id)
        R.start_holder("flatten-blocker", "volumes", image="volume-flatten-me", advisory_lock=FLATTEN_COOKIE,
                       note="advisory lock keeps the mgr from taking the exclusive lock, so the "
                            "queued flatten fails with EROFS and is retried forever")
        R.start_holder("csi-0001", "k8s", ns="tenant-a", image="csi-vol-0001", write=True)

        out, err = lock_cli.communicate(timeout=60)
        if lock_cli.returncode != 0:
            raise SeedError("rbd lock add volumes/volume-locked stale-cookie failed: {}".format(err.strip()))
        R.items["10"] = {"what": "stale advisory lock (its CLI client exited)", "image": "volumes/volume-locked",
                         "cookie": "stale-cookie"}

        R.wait_holders()
        say("{} holders ready".format(len(R.holders)))
        R.items["7"] = {"what": "live watchers", "single_writer": "volumes/volume-attached",
                        "multiattach": "volumes/volume-multiattach",
                        "holders": {"volumes/volume-attached": ["attached"],
                                    "volumes/volume-multiattach": ["multiattach-a", "multiattach-b"]}}
        R.items["8"] = {"what": "watcher on a .deleted image", "image": "volumes/volume-zombie.deleted",
                        "holder": "zombie"}
        R.items["9"] = {"what": "watcher on a trashed image", "image": "volumes/volume-trashed-held",
                        "image_id": held_id, "holder": "trashed-held"}

        # 11. queue the flatten now that the blocker holds its lock
        broken = R.mgr_module_failure("rbd_support")
        if broken:
            # Debian 13's ceph-mgr (Reef 18.2.7) cannot load rbd_support at all:
            # "PyO3 modules do not yet support subinterpreters". No task can be
            # queued, so the case is recorded as skipped, with the reason.
            R.items["11"] = {"what": "queued flatten task that stays queued", "skipped": broken}
            say("flatten task skipped: the mgr cannot run rbd_support ({})".format(broken))
            return
        task = json.loads(R.mgr({"prefix": "rbd task add flatten", "image_spec": "volumes/volume-flatten-me",
                                 "format": "json"}) or b"{}")
        attempts = R.wait_task_retried(task.get("id"))
        blocker = R.holders["flatten-blocker"]
        R.items["11"] = {"what": "queued flatten task that stays queued", "image": "volumes/volume-flatten-me",
                         "task_id": task.get("id"), "task_sequence": task.get("sequence"),
                         "held_by": "flatten-blocker", "pid": blocker["pid"],
                         "how": "holder.py --advisory-lock {} keeps an advisory lock (rbd_lock, cookie {!r}) "
                                "on the image while it runs; the mgr's librbd cannot take the exclusive lock, "
                                "the flatten fails with EROFS and rbd_support retries it after 30 s, 60 s, "
                                "... 300 s for as long as the holder runs (stop the holder and the next retry "
                                "flattens the image)".format(FLATTEN_COOKIE, FLATTEN_COOKIE),
                         "retry_attempts_at_seed": attempts}
        say("flatten task {} queued for volumes/volume-flatten-me; the mgr tried and failed ({} attempt(s)), "
            "it stays queued".format(task.get("id"), attempts))

    def wait_task_retried(self, task_id, timeout=30, pool="volumes"):
        """Wait until rbd_support has tried the task once and kept it (retry_attempts >= 1)."""
        deadline = time.monotonic() + timeout
        while True:
            tasks = json.loads(self.mgr({"prefix": "rbd task list", "format": "json"}) or b"[]")
            t = next((t for t in tasks if t.get("id") == task_id), None)
            if t is None:
                raise SeedError("flatten task {} disappeared: the mgr ran it (is the blocker holding its lock?)"
                                .format(task_id))
            if t.get("retry_attempts", 0) >= 1:
                break
            if time.monotonic() > deadline:
                raise SeedError("mgr did not try flatten task {} within {}s".format(task_id, timeout))
            time.sleep(0.2)
        vals = dict(self.omap(pool, "", "rbd_task"))
        if not any(task_id in v.decode() for v in vals.values()):
            raise SeedError("flatten task {} is not in {}/rbd_task".format(task_id, pool))
        return t.get("retry_attempts")

    def omap(self, pool, ns, oid):
        with rados.ReadOpCtx() as op:
            it, _ = self.io(pool, ns).get_omap_vals(op, "", "", 1000)
            self.io(pool, ns).operate_read_op(op, oid)
            return list(it)

    # ------------------------------------------------------------- demo layout
    def seed_demo(self):
        R = self
        rnd = random.Random()
        u = lambda: str(uuid.uuid4())  # noqa: E731
        demo = {"glance": [], "cinder": [], "nova": [], "csi": [], "deleted": [], "chains": [], "backups": []}

        glance = []
        for _ in range(20):
            name = u()
            R.create("images", name, rnd.choice([1, 2, 4, 8, 10, 20]) * GiB)
            R.write("images", name, os.urandom(4096))
            R.snap("images", name, "snap", protect=True)
            glance.append(name)
        demo["glance"] = ["images/{}@snap".format(g) for g in glance]
        say("demo: {} glance images".format(len(glance)))

        def glance_clone(pool, name):
            R.clone("images", rnd.choice(glance), "snap", pool, name)

        cinder = []
        for _ in range(24):                       # volumes created from an image
            name = "volume-" + u()
            glance_clone("volumes", name)
            cinder.append(name)
        for _ in range(18):                       # blank volumes
            name = "volume-" + u()
            R.create("volumes", name, rnd.choice([1, 5, 10, 20, 50, 100]) * GiB)
            cinder.append(name)
        for depth in (2, 3, 3, 4):                # volume-from-volume chains
            prev = "volume-" + u()
            R.create("volumes", prev, 10 * GiB)
            chain = [prev]
            cinder.append(prev)
            for _ in range(depth):
                child = "volume-" + u()
                R.snap("volumes", prev, child + ".clone_snap", protect=True)
                R.clone("volumes", prev, child + ".clone_snap", "volumes", child)
                chain.append(child)
                cinder.append(child)
                prev = child
            demo["chains"].append(["volumes/" + c for c in chain])
        for name in rnd.sample(cinder, 6):        # cinder-backup snapshots
            for _ in range(rnd.choice([1, 1, 2])):
                s = "backup.{}.snap.{}".format(u(), int(time.time()) - rnd.randrange(86400 * 60))
                R.snap("volumes", name, s)
                demo["backups"].append("volumes/{}@{}".format(name, s))
        for _ in range(3):                        # deleted while a clone still depended on it
            parent = "volume-" + u()
            child = "volume-" + u()
            R.create("volumes", parent, 20 * GiB)
            R.snap("volumes", parent, child + ".clone_snap", protect=True)
            R.clone("volumes", parent, child + ".clone_snap", "volumes", child)
            R.rename("volumes", parent, parent + ".deleted")
            cinder.append(child)
            demo["deleted"].append("volumes/{}.deleted".format(parent))
        demo["cinder"] = ["volumes/" + c for c in cinder]
        say("demo: {} cinder volumes".format(len(cinder) + len(demo["deleted"])))

        nova = []
        for _ in range(30):
            name = u() + "_disk"
            glance_clone("vms", name)
            nova.append(name)
        demo["nova"] = ["vms/" + n for n in nova]
        say("demo: {} nova disks".format(len(nova)))

        csi = []
        for i in range(20):
            ns = "" if i < 12 else "tenant-a"
            name = "csi-vol-" + u()
            R.create("k8s", name, rnd.choice([1, 2, 5, 10]) * GiB, ns=ns)
            csi.append((ns, name))
        for ns, src in (csi[0], csi[12]):         # ceph-csi snapshots: clone, then trash the temp snapshot
            name = "csi-snap-" + u()
            R.snap("k8s", src, name, ns=ns)
            R.clone("k8s", src, name, "k8s", name, pns=ns, cns=ns)
            with rbd.Image(R.io("k8s", ns), src) as img:
                img.remove_snap(name)
            R.snap("k8s", name, name, ns=ns)
            csi.append((ns, name))
        demo["csi"] = [spec("k8s", ns, n) for ns, n in csi]
        say("demo: {} ceph-csi images".format(len(csi)))

        # a few more holders (10 live ones in all) and one crashed client
        R.start_holder("demo-cinder", "volumes", image=rnd.choice(cinder[:42]), write=True)
        R.start_holder("demo-nova", "vms", image=rnd.choice(nova), write=True)
        R.start_holder("demo-csi", "k8s", image=csi[1][1], write=True)
        crashed = "volume-" + u()
        R.create("volumes", crashed, 10 * GiB)
        R.start_holder("demo-crashed", "volumes", image=crashed, write=True,
                       note="SIGKILLed after it took the exclusive lock: stale exclusive lock")
        R.wait_holders(["demo-cinder", "demo-nova", "demo-csi", "demo-crashed"])
        R.crash_holder("demo-crashed")
        demo["crashed_client_lock"] = "volumes/" + crashed
        R.extra["demo"] = demo

    # ------------------------------------------------------------- web layout
    def seed_web(self, clones=500):
        """The pages' cases (WEB LAYOUT above); returns what web.json records."""
        R = self
        u = lambda: str(uuid.uuid4())  # noqa: E731
        glance = u()
        R.create("images", glance, 1 * GiB)
        R.write("images", glance, b"\xeb\x63\x90" + b"\0" * 4093)
        R.snap("images", glance, "snap", protect=True)
        names = [("volumes", "volume-" + u()) if i % 5 < 3 else ("vms", u() + "_disk") for i in range(clones)]
        t = time.monotonic()
        # Each clone is a few round trips to the OSD; librbd releases the GIL, so threads overlap them.
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda pn: R.rbd.clone(R.io("images"), glance, "snap", R.io(pn[0]), pn[1]), names))
        say("web: {} clones of images/{}@snap in {:.1f} s".format(clones, glance, time.monotonic() - t))
        needs = {}
        # A chain under the first volume: depths 2..7; deeper than 5 needs a flatten.
        volumes = [n for p, n in names if p == "volumes"]
        prev = volumes[0]
        chain = ["volumes/" + prev]
        for depth in range(2, 8):
            child = "volume-" + u()
            R.snap("volumes", prev, child + ".clone_snap", protect=True)
            R.clone("volumes", prev, child + ".clone_snap", "volumes", child)
            chain.append("volumes/" + child)
            if depth > 5:
                needs["volumes/" + child] = ["clone_depth_exceeded"]
            prev = child
        # Cinder deletes a volume that has clones by renaming it to .deleted.
        deleted, orphaned_child = volumes[1], "volume-" + u()
        R.snap("volumes", deleted, orphaned_child + ".clone_snap", protect=True)
        R.clone("volumes", deleted, orphaned_child + ".clone_snap", "volumes", orphaned_child)
        R.rename("volumes", deleted, deleted + ".deleted")
        needs["volumes/" + orphaned_child] = ["parent_deleted"]
        # A volume in the trash whose clone lives on.
        trashed, trashed_child = volumes[2], "volume-" + u()
        R.snap("volumes", trashed, trashed_child + ".clone_snap", protect=True)
        R.clone("volumes", trashed, trashed_child + ".clone_snap", "volumes", trashed_child)
        trashed_id = R.trash("volumes", trashed)
        needs["volumes/" + trashed_child] = ["parent_image_trashed"]
        per_pool = {p: sum(1 for q, _ in names if q == p) for p in ("volumes", "vms")}
        # Two clones with a queued flatten that stays queued (as item 11 of the test layout).
        queued = [("volumes", volumes[3]), next(pn for pn in names if pn[0] == "vms")]
        broken = R.mgr_module_failure("rbd_support")
        if broken:
            say("web: no queued flattens: the mgr cannot run rbd_support ({})".format(broken))
            queued = []
        for i, (pool, name) in enumerate(queued):
            R.start_holder("web-flatten-blocker-{}".format(i), pool, image=name, advisory_lock=FLATTEN_COOKIE,
                           note="keeps the queued flatten of this clone from running")
        R.wait_holders(["web-flatten-blocker-{}".format(i) for i in range(len(queued))])
        for pool, name in queued:
            task = json.loads(R.mgr({"prefix": "rbd task add flatten", "image_spec": spec(pool, "", name),
                                     "format": "json"}) or b"{}")
            R.wait_task_retried(task.get("id"), pool=pool)
            needs[spec(pool, "", name)] = ["flatten_queued"]

        # Names the pages must show as text.
        script = "<script>window.__pwned=1</script>"
        unicode_name, quoted = "ünïcødé-镜像", "it's \"quoted\""
        unicode_snap = "snap \"v1\" <b>"
        orphan = "<img src=x onerror=window.__pwned=1>.deleted"
        for n in (script, unicode_name, orphan):
            R.create("volumes", n, 1 * GiB)
        R.snap("volumes", unicode_name, unicode_snap, protect=True)
        R.clone("volumes", unicode_name, unicode_snap, "volumes", quoted)
        R.start_holder("web-orphan", "volumes", image=orphan, write=True,
                       note="watcher on a .deleted image with markup in its name")
        R.wait_holders(["web-orphan"])
        say("web: odd names, and an orphaned watcher on volumes/{}".format(orphan))
        return {
            "glance": {"pool": "images", "image": glance, "snapshot": "snap",
                       "spec": "images/" + glance, "id": R.image_id("images", glance),
                       "children": per_pool, "clones": clones},
            "chain": chain,
            "deleted_child_parent": "volumes/{}.deleted".format(deleted),
            "trashed_child_parent": {"spec": "volumes/" + trashed, "id": trashed_id},
            "needs_action": needs,
            "names": {"script": "volumes/" + script, "unicode": "volumes/" + unicode_name,
                      "unicode_snapshot": unicode_snap, "quoted": "volumes/" + quoted,
                      "orphan": "volumes/" + orphan},
            "orphan": {"spec": "volumes/" + orphan, "holder": "web-orphan", "reason": "image_deleted"},
        }

    def write_web_state(self, web, seconds):
        web["seed_seconds"] = round(seconds, 2)
        web["holders"] = {n: {k: v for k, v in h.items() if k != "proc"} for n, h in self.holders.items()}
        path = os.path.join(self.state_dir, "web.json")
        with open(path + ".tmp", "w") as f:
            json.dump(web, f, indent=2, sort_keys=True, ensure_ascii=False)
            f.write("\n")
        os.replace(path + ".tmp", path)
        return path

    # ------------------------------------------------------------ verification
    def verify(self):
        """Check that every live holder shows up as a watcher (what `rbd status` lists)."""
        by_image = {}
        for n, h in self.holders.items():
            if not h.get("crashed"):
                by_image.setdefault((h["pool"], h["namespace"], h["image_id"] or h["image"]), []).append(n)
        problems = []
        for (pool, ns, ref), names in sorted(by_image.items()):
            h0 = self.holders[names[0]]
            kw = {"image_id": ref} if h0["image_id"] else {"name": ref}
            with rbd.Image(self.io(pool, ns), read_only=True, **kw) as img:
                watchers = list(img.watchers_list())
                lockers = img.list_lockers() or {}
                addrs = sorted(w["addr"] for w in watchers)
                want = sorted(self.holders[n]["address"] for n in names)
                if addrs != want:
                    problems.append("{}: watchers {} != holders {}".format(h0["spec"], addrs, want))
                for n in names:
                    h = self.holders[n]
                    h["watch_cookie"] = next((w["cookie"] for w in watchers if w["addr"] == h["address"]), None)
                    lk = [lk for lk in lockers.get("lockers", []) if lk[2] == h["address"]]
                    h["lockers"] = [{"client": c, "cookie": k, "address": a} for c, k, a in lk]
                    if (h["write"] or h["lock_exclusive"] or h["advisory_lock"]) and not lk:
                        problems.append("{}: holder {} holds no lock".format(h0["spec"], n))
            say("{}: {} watcher(s) {}".format(h0["spec"], len(watchers),
                                               ", ".join("{} cookie={}".format(w["addr"], w["cookie"])
                                                         for w in watchers)))
        # The same through the CLI, as an operator would look (`rbd status` cannot
        # open an image in the trash by name; that one was checked above by id).
        procs = {}
        for (pool, ns, ref), names in sorted(by_image.items()):
            h0 = self.holders[names[0]]
            if not h0["image_id"]:
                procs[h0["spec"]] = (names, subprocess.Popen(
                    ["rbd", "-c", self.conf, "status", "--format", "json", h0["spec"]],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for sp, (names, proc) in sorted(procs.items()):
            out, err = proc.communicate(timeout=60)
            if proc.returncode != 0:
                problems.append("rbd status {}: {}".format(sp, err.strip()))
                continue
            addrs = sorted(w["address"] for w in json.loads(out).get("watchers", []))
            want = sorted(self.holders[n]["address"] for n in names)
            if addrs != want:
                problems.append("rbd status {}: watchers {} != holders {}".format(sp, addrs, want))
        if problems:
            raise SeedError("verification failed:\n  " + "\n  ".join(problems))
        say("rbd status shows every holder as a watcher")

    # ---------------------------------------------------------------- seed.json
    def inventory(self):
        pools, trash = {}, {}
        for pool in RBD_POOLS:
            nss = [""] + sorted(self.rbd.namespace_list(self.io(pool)))
            pools[pool] = {}
            for ns in nss:
                pools[pool][ns] = sorted(self.rbd.list(self.io(pool, ns)))
                t = [{"id": e["id"], "name": e["name"]} for e in self.rbd.trash_list(self.io(pool, ns))]
                if t:
                    trash.setdefault(pool, {})[ns] = sorted(t, key=lambda e: e["name"])
        return pools, trash

    def write_state(self, layout, seconds):
        pools, trash = self.inventory()
        holders, held = {}, {}
        for n, h in sorted(self.holders.items()):
            d = {k: v for k, v in h.items() if k not in ("proc",)}
            holders[n] = d
            if not h.get("crashed"):
                held.setdefault(h["spec"], []).append({"holder": n, "pid": h["pid"]})
        state = {
            "layout": layout,
            "conf": self.conf,
            "state_dir": self.state_dir,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seed_seconds": round(seconds, 2),
            "pools": pools,
            "non_rbd_pools": {PLAIN_POOL: {"application": "rgw", "objects": [PLAIN_OBJECT]}},
            "trash": trash,
            "holders": holders,
            "held": held,
            "items": self.items,
        }
        state.update(self.extra)
        path = os.path.join(self.state_dir, "seed.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
        return path


# ------------------------------------------------------------------ processes
def pid_is_holder(pid):
    try:
        with open("/proc/{}/cmdline".format(pid), "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"holder.py") for a in argv)


def stop_holders(state_dir, timeout=10):
    holders_dir = os.path.join(os.path.abspath(state_dir), "holders")
    pids = {}
    if os.path.isdir(holders_dir):
        for f in sorted(os.listdir(holders_dir)):
            if f.endswith(".pid"):
                try:
                    with open(os.path.join(holders_dir, f)) as fh:
                        pids[f[:-4]] = int(fh.read().strip())
                except (OSError, ValueError):
                    pass
    live = {n: p for n, p in pids.items() if pid_is_holder(p)}
    for n, p in live.items():
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(pid_is_holder(p) for p in live.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    killed = []
    for n, p in live.items():
        if pid_is_holder(p):
            os.kill(p, signal.SIGKILL)
            killed.append(n)
    for n in pids:
        for ext in (".pid", ".ready"):
            try:
                os.unlink(os.path.join(holders_dir, n + ext))
            except OSError:
                pass
    print("stopped {} holder(s){}{}".format(
        len(live), ": " + " ".join(sorted(live)) if live else "",
        " (SIGKILL: {})".format(" ".join(killed)) if killed else ""))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="see the top of this file for what each layout holds")
    ap.add_argument("--conf", help="ceph.conf of the cluster (from scripts/cluster.sh)")
    ap.add_argument("--state-dir", required=True, help="where seed.json and holders/ go")
    ap.add_argument("layout", choices=["test", "demo", "web", "stop-holders"])
    args = ap.parse_args(argv)

    if args.layout == "stop-holders":
        stop_holders(args.state_dir)
        return 0
    if not args.conf:
        ap.error("--conf is required to seed")
    if shutil.which("rbd") is None:
        raise SeedError("the rbd CLI is missing (run scripts/install-deps.sh)")

    if args.layout == "web":
        return main_web(args)
    s = Seeder(args.conf, args.state_dir)
    os.makedirs(s.state_dir, exist_ok=True)
    ok = False
    try:
        s.connect()
        s.check_fresh()
        say("seeding layout {!r} on {}".format(args.layout, s.conf))
        s.create_pools()
        s.seed_test()
        if args.layout == "demo":
            s.seed_demo()
        s.verify()
        seconds = time.monotonic() - T0
        path = s.write_state(args.layout, seconds)
        ok = True
        live = [h for h in s.holders.values() if not h.get("crashed")]
        say("wrote {}".format(path))
        print("seeded layout {!r} in {:.1f} s; {} holders running (pids {}); stop them with: {} {} "
              "--state-dir {} stop-holders".format(args.layout, seconds, len(live),
                                                   " ".join(str(h["pid"]) for h in live),
                                                   PYTHON, os.path.abspath(__file__), s.state_dir))
        return 0
    finally:
        if not ok:
            s.kill_started_holders()
        s.close()


def main_web(args):
    """`web`: the pages' cases, added to a cluster seeded with `test` or `demo`."""
    s = Seeder(args.conf, args.state_dir)
    if not os.path.exists(os.path.join(s.state_dir, "seed.json")):
        raise SeedError("no {}/seed.json: seed the cluster with `test` or `demo` first".format(s.state_dir))
    if os.path.exists(os.path.join(s.state_dir, "web.json")):
        raise SeedError("{}/web.json exists: this cluster already has the web layout".format(s.state_dir))
    ok = False
    try:
        s.connect()
        say("seeding layout 'web' on {}".format(s.conf))
        web = s.seed_web()
        s.verify()
        seconds = time.monotonic() - T0
        path = s.write_web_state(web, seconds)
        ok = True
        print("seeded layout 'web' in {:.1f} s ({}); holder web-orphan pid {}".format(
            seconds, path, s.holders["web-orphan"]["pid"]))
        return 0
    finally:
        if not ok:
            s.kill_started_holders()
        s.close()


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except SeedError as e:
        print("seed.py: error: {}".format(e), file=sys.stderr)
        sys.exit(1)
    except (rados.Error, rbd.Error) as e:
        if os.environ.get("SEED_TRACEBACK"):
            import traceback
            traceback.print_exc()
        print("seed.py: error: {}: {}".format(type(e).__name__, e), file=sys.stderr)
        sys.exit(1)
