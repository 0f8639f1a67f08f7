import os, sys, time, rados, rbd
cluster = rados.Rados(conffile=os.environ["CEPH_CONF"])
cluster.connect()
ioctx = cluster.open_ioctx("rbd")
img = rbd.Image(ioctx, "excl")
img.write(b"\xab" * 4096, 0)
print("holding", cluster.get_instance_id(), flush=True)
time.sleep(3600)
