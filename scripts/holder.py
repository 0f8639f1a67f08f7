#!/usr/bin/python3
"""Hold an RBD image open the way a running VM or a mapped volume does.

Run it with /usr/bin/python3: the `rados`/`rbd` modules come from Debian's
python3-rados/python3-rbd and are not importable from other interpreters.

    holder.py --conf CONF --pool P [--namespace NS] (--image NAME | --image-id ID)
              [--write] [--lock-exclusive] [--advisory-lock COOKIE]
              [--watch-object OBJ] [--pidfile F] [--ready-file F] [--admin-socket PATH]

The image is opened read-write, which registers a watch on its header object
(`rbd status` lists it as a watcher).
  --write           write 4 KiB at offset 0; this acquires the exclusive lock
                    (exclusive-lock feature), which librbd hands over
                    cooperatively when another client asks for it.
  --lock-exclusive  take the exclusive lock with lock_acquire(EXCLUSIVE): the
                    lock is then NOT handed over when another client asks:
                    other clients' writes fail with EROFS. Their maintenance
                    operations (flatten, snap create, resize) are forwarded to
                    this holder's librbd, which runs them.
  --advisory-lock C also hold an advisory lock with cookie C (what `rbd lock add`
                    does) for as long as the holder runs. It takes the same
                    rbd_lock, so no other client can take the exclusive lock:
                    their maintenance operations (e.g. the mgr's queued
                    flatten) fail with EROFS and their writes wait forever.
  --watch-object O  also watch the RADOS object O of the pool's default
                    namespace, from the same client (the same address). With
                    O = rbd_mirror_leader or rbd_mirroring the client looks
                    like an rbd-mirror daemon to whoever lists those objects'
                    watchers (the object must exist: `rados -p P create O`).
The pid goes to --pidfile at start; --ready-file is created once the watch
(and the lock, if asked for) is established; it holds one line of JSON: pid,
client (client.N), address (as `rbd status` shows the watcher), lock_owner.
The holder then waits until SIGTERM/SIGINT/SIGHUP, or until its stdin reaches
EOF when stdin is a pipe (a test can hold an image for exactly as long as it
keeps the pipe open), and then releases its locks and closes the image
cleanly. Both files are removed on exit.
Exit codes: 0 clean exit, 1 could not open/lock, 2 usage, 3 close timed out.
"""

import argparse
import json
import os
import signal
import stat
import sys
import threading
import time

try:
    import rados
    import rbd
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit("holder.py: cannot import rados/rbd ({}); run it with /usr/bin/python3 "
             "and install python3-rados python3-rbd".format(e))


def log(msg):
    print("holder[{}]: {}".format(os.getpid(), msg), file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Hold an RBD image open (watch, optional exclusive lock).")
    p.add_argument("--conf", required=True, help="ceph.conf (its keyring is used)")
    p.add_argument("--id", default=None, help="cephx client id (default: admin, or from CEPH_ARGS)")
    p.add_argument("--pool", required=True)
    p.add_argument("--namespace", default="", help="RBD namespace (default: the pool's default namespace)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--image", help="image name")
    g.add_argument("--image-id", help="image id (e.g. for an image in the trash)")
    p.add_argument("--write", action="store_true",
                   help="write 4 KiB at offset 0 (acquires the exclusive lock, released on request)")
    p.add_argument("--lock-exclusive", action="store_true",
                   help="lock_acquire(RBD_LOCK_MODE_EXCLUSIVE): hold the exclusive lock and refuse to release it")
    p.add_argument("--advisory-lock", metavar="COOKIE",
                   help="also take an advisory exclusive lock (like `rbd lock add IMAGE COOKIE`) while "
                        "holding; it blocks the exclusive-lock feature of every other client and is "
                        "released on exit")
    p.add_argument("--watch-object", metavar="OBJ",
                   help="also watch this object of the pool's default namespace (e.g. rbd_mirror_leader)")
    p.add_argument("--pidfile", help="write our pid here at start")
    p.add_argument("--ready-file", help="create this file once the watch (and lock) are established")
    p.add_argument("--admin-socket", default="",
                   help="admin socket path for this client (default: none, so holders never clash)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds allowed for connect/open/lock (default 30)")
    p.add_argument("--close-timeout", type=float, default=20.0,
                   help="seconds allowed for the clean close on exit before giving up (default 20)")
    return p.parse_args(argv)


def write_file_atomic(path, text):
    tmp = "{}.tmp.{}".format(path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def remove_if_ours(path, content=None):
    if not path:
        return
    try:
        if content is not None:
            with open(path) as f:
                if f.read().strip() != content:
                    return
        os.unlink(path)
    except OSError:
        pass


def main(argv):
    args = parse_args(argv)
    pid = str(os.getpid())
    stop = threading.Event()
    why = {"reason": None}

    def on_signal(signum, _frame):
        why["reason"] = signal.Signals(signum).name
        stop.set()

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    if args.pidfile:
        os.makedirs(os.path.dirname(os.path.abspath(args.pidfile)), exist_ok=True)
        write_file_atomic(args.pidfile, pid + "\n")
    if args.ready_file:
        remove_if_ours(args.ready_file)

    what = "{}/{}{}".format(args.pool, args.namespace + "/" if args.namespace else "",
                            args.image if args.image else "id:" + args.image_id)
    cluster = ioctx = image = None
    pool_ioctx = extra_watch = None
    locked = False
    advisory = False
    try:
        kw = {"conffile": args.conf}
        if args.id:
            kw["rados_id"] = args.id
        cluster = rados.Rados(**kw)
        # Each holder gets its own admin socket (or none): a fixed path in
        # ceph.conf would make every holder fight over one socket.
        cluster.conf_set("admin_socket", args.admin_socket)
        cluster.conf_set("log_to_stderr", "false")
        cluster.conf_set("err_to_stderr", "true")
        cluster.connect(timeout=int(args.timeout))
        ioctx = cluster.open_ioctx(args.pool)
        ioctx.set_namespace(args.namespace)
        if args.image:
            image = rbd.Image(ioctx, name=args.image)
        else:
            image = rbd.Image(ioctx, image_id=args.image_id)
        # Opening read-write registered the header watch; lock/write next.
        if args.advisory_lock:
            image.lock_exclusive(args.advisory_lock)
            advisory = True
        if args.lock_exclusive:
            image.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
            locked = True
        if args.write:
            image.write(b"\xa5" * 4096, 0)
            image.flush()
        if args.lock_exclusive or args.write:
            deadline = time.monotonic() + args.timeout
            while not image.is_exclusive_lock_owner():
                if time.monotonic() > deadline:
                    raise RuntimeError("exclusive lock not acquired within {}s".format(args.timeout))
                time.sleep(0.05)
        if args.watch_object:
            pool_ioctx = cluster.open_ioctx(args.pool)
            extra_watch = pool_ioctx.watch(args.watch_object, lambda *_: None)
    except Exception as e:  # noqa: BLE001 - report anything and exit 1
        log("cannot hold {}: {}: {}".format(what, type(e).__name__, e))
        for obj in (extra_watch, pool_ioctx, image, ioctx):
            try:
                if obj is not None:
                    obj.close()
            except Exception:  # noqa: BLE001
                pass
        if cluster is not None:
            cluster.shutdown()
        remove_if_ours(args.pidfile, pid)
        return 1

    # Pipe on stdin: hold until the writer closes it.
    try:
        if stat.S_ISFIFO(os.fstat(0).st_mode):
            def watch_stdin():
                try:
                    while os.read(0, 4096):
                        pass
                except OSError:
                    pass
                why["reason"] = why["reason"] or "stdin EOF"
                stop.set()
            threading.Thread(target=watch_stdin, daemon=True).start()
    except OSError:
        pass  # stdin closed

    mode = "watch" + (" + exclusive lock (lock_acquire)" if args.lock_exclusive else "") \
        + (" + advisory lock {!r}".format(args.advisory_lock) if advisory else "") \
        + (" + write" if args.write else "") \
        + (" + watch on {}".format(args.watch_object) if args.watch_object else "")
    if args.ready_file:
        info = {
            "pid": os.getpid(),
            "image": what,
            "client": "client.{}".format(cluster.get_instance_id()),
            "address": cluster.get_addrs(),  # what `rbd status` prints as the watcher address
            "lock_owner": bool(image.is_exclusive_lock_owner()),
            "advisory_lock": args.advisory_lock if advisory else None,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.ready_file)), exist_ok=True)
        write_file_atomic(args.ready_file, json.dumps(info) + "\n")
    log("holding {} ({})".format(what, mode))

    while not stop.wait(1.0):
        pass

    log("releasing {} ({})".format(what, why["reason"]))
    t_release = time.monotonic()
    # Closing talks to the cluster (unlock, unwatch, notifies that wait for dead
    # watchers to time out); never let that keep a holder around forever, e.g.
    # when the cluster was stopped under it.
    def give_up():
        log("close did not finish within {}s; exiting anyway".format(args.close_timeout))
        remove_if_ours(args.ready_file)
        remove_if_ours(args.pidfile, pid)
        os._exit(3)
    watchdog = threading.Timer(args.close_timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    rc = 0
    try:
        if locked:
            try:
                image.lock_release()
            except rbd.Error as e:
                log("lock_release: {}".format(e))
        if advisory:
            try:
                image.unlock(args.advisory_lock)
            except rbd.Error as e:
                log("unlock {!r}: {}".format(args.advisory_lock, e))
        if extra_watch is not None:
            extra_watch.close()
            pool_ioctx.close()
        image.close()
        ioctx.close()
    except Exception as e:  # noqa: BLE001
        log("close failed: {}".format(e))
        rc = 1
    finally:
        cluster.shutdown()
        remove_if_ours(args.ready_file)
        remove_if_ours(args.pidfile, pid)
        watchdog.cancel()
    log("released in {:.1f}s".format(time.monotonic() - t_release))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
