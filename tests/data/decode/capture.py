"""Usage: CEPH_CONF=... /usr/bin/python3 capture.py OUTDIR

Capture raw cls rbd / cls lock replies and RBD omap values from a Ceph
Pacific test cluster into tests/data/decode/*.bin (run with /usr/bin/python3)."""
import os, struct, sys, json, subprocess, tempfile
import rados

OUT = sys.argv[1]
NOSNAP = 0xFFFFFFFFFFFFFFFE  # CEPH_NOSNAP is (u64)-2; (u64)-1 is CEPH_SNAPDIR

def u64(v): return struct.pack('<Q', v)
def s(v): b = v.encode(); return struct.pack('<I', len(b)) + b
def lock_get_info_op(name):
    body = s(name)
    return bytes([1, 1]) + struct.pack('<I', len(body)) + body

def info(spec):
    return json.loads(subprocess.check_output(['rbd', 'info', spec, '--format', 'json']))
def snaps(spec):
    return {x['name']: x for x in json.loads(subprocess.check_output(['rbd', 'snap', 'ls', '--all', spec, '--format', 'json']))}

cluster = rados.Rados(conffile=os.environ['CEPH_CONF'])
cluster.connect()
io = cluster.open_ioctx('rbd')

def save(name, data):
    with open(os.path.join(OUT, name + '.bin'), 'wb') as f:
        f.write(data)
    print(f'{name}.bin {len(data)} bytes: {data[:64].hex()}{"..." if len(data) > 64 else ""}')

def call(ioctx, oid, cls, method, inp, name):
    ret, out = ioctx.execute(oid, cls, method, inp, length=65536)
    if ret < 0:
        raise SystemExit(f'{oid} {cls}.{method} -> {ret}')
    save(name, out)

ids = {n: info('rbd/' + n)['id'] for n in ['img1', 'clone1', 'clone2', 'parent2', 'clone_trashsnap', 'nschild', 'locked', 'shared', 'excl', 'flagged']}
ids['ns1/nsparent'] = info('rbd/ns1/nsparent')['id']
hdr = {n: 'rbd_header.' + i for n, i in ids.items()}
s_img1 = snaps('rbd/img1')
s_p2 = snaps('rbd/parent2')
trash_snap_id = [v['id'] for v in s_p2.values()][0]

call(io, hdr['img1'], 'rbd', 'get_size', u64(NOSNAP), 'size_img1')
call(io, hdr['img1'], 'rbd', 'get_size', u64(s_img1['s1']['id']), 'size_img1_snap_s1')
call(io, hdr['img1'], 'rbd', 'get_features', u64(NOSNAP) + b'\x01', 'features_img1')
call(io, hdr['img1'], 'rbd', 'get_flags', u64(NOSNAP), 'flags_img1')
call(io, hdr['flagged'], 'rbd', 'get_flags', u64(NOSNAP), 'flags_object_map_invalid')
call(io, hdr['img1'], 'rbd', 'op_features_get', b'', 'op_features_img1')
call(io, hdr['clone2'], 'rbd', 'op_features_get', b'', 'op_features_clone2')
call(io, hdr['img1'], 'rbd', 'get_snapcontext', b'', 'snapcontext_img1')
call(io, hdr['excl'], 'rbd', 'get_snapcontext', b'', 'snapcontext_empty')
call(io, hdr['img1'], 'rbd', 'parent_get', b'', 'parent_spec_none')
call(io, hdr['clone2'], 'rbd', 'parent_get', b'', 'parent_spec_clone2')
call(io, hdr['clone1'], 'rbd', 'parent_get', b'', 'parent_spec_clone1_v1')
call(io, hdr['nschild'], 'rbd', 'parent_get', b'', 'parent_spec_nschild')
call(io, hdr['clone_trashsnap'], 'rbd', 'parent_get', b'', 'parent_spec_trashsnap')
call(io, hdr['img1'], 'rbd', 'parent_overlap_get', u64(NOSNAP), 'parent_overlap_none')
call(io, hdr['clone2'], 'rbd', 'parent_overlap_get', u64(NOSNAP), 'parent_overlap_clone2')
call(io, hdr['excl'], 'lock', 'get_info', lock_get_info_op('rbd_lock'), 'lock_info_exclusive')
call(io, hdr['locked'], 'lock', 'get_info', lock_get_info_op('rbd_lock'), 'lock_info_advisory')
call(io, hdr['shared'], 'lock', 'get_info', lock_get_info_op('rbd_lock'), 'lock_info_shared')
call(io, hdr['img1'], 'lock', 'get_info', lock_get_info_op('rbd_lock'), 'lock_info_none')
call(io, hdr['img1'], 'rbd', 'snapshot_get', u64(s_img1['s1']['id']), 'snapshot_info_user')
call(io, hdr['parent2'], 'rbd', 'snapshot_get', u64(trash_snap_id), 'snapshot_info_trash')
call(io, hdr['img1'], 'rbd', 'get_protection_status', u64(s_img1['s1']['id']), 'protection_status_protected')
call(io, hdr['img1'], 'rbd', 'get_protection_status', u64(s_img1['s2']['id']), 'protection_status_unprotected')
call(io, hdr['img1'], 'rbd', 'children_list', u64(s_img1['s1']['id']), 'children_list_img1_s1')
call(io, hdr['parent2'], 'rbd', 'children_list', u64(trash_snap_id), 'children_list_trash_snap')

def omap(ioctx, oid):
    with rados.ReadOpCtx() as op:
        it, ret = ioctx.get_omap_vals(op, "", "", 1000)
        ioctx.operate_read_op(op, oid)
        return dict(it)

trash = omap(io, 'rbd_trash')
for k, v in trash.items():
    print('rbd_trash key', k)
    save('trash_spec', v)
d = omap(io, 'rbd_directory')
save('string_value_dir_name_img1', d['name_img1'])
save('string_value_dir_id_img1', d['id_' + ids['img1']])
ns = omap(io, 'rbd_namespace')
print('rbd_namespace', {k: (v.hex() if v is not None else None) for k, v in ns.items()})
save('rbd_id_img1', io.read('rbd_id.img1'))
# rbd_children keys are binary (contain NULs), which the Python binding truncates
# at the first NUL, so take the key from the rados CLI (one key + '\n').
key = subprocess.check_output(['rados', '-p', 'rbd', 'listomapkeys', 'rbd_children'])
assert key.endswith(b'\n') and key.count(b'\n') == 1, key
key = key[:-1]
save('children_key_v1', key)
with tempfile.NamedTemporaryFile() as f:
    f.write(key)
    f.flush()
    subprocess.check_call(['rados', '-p', 'rbd', 'getomapval', 'rbd_children', '--omap-key-file',
                           f.name, os.path.join(OUT, 'children_value_v1.bin')])
print(json.dumps(ids))
