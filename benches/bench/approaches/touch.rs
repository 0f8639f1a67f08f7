//! Changes between the steady-state samples: a header's object version
//! moved the way an operator's `rbd image-meta set` moves it (cls
//! `rbd.metadata_set`, a key the exporter does not read), so the exporter
//! must notice and read that header in full, and nothing it reports
//! changes.

use super::rados::{Ioctx, Window, release};
use ceph::rados as sys;
use std::ffi::CString;
use std::sync::Arc;

/// Sets image-meta `bench.touch` to `value` on every header in `oids`,
/// `concurrency` in flight: the writes that failed.
pub fn touch(io: Ioctx, oids: &[&CString], value: u64, concurrency: usize) -> usize {
    // cls_rbd's metadata_set input: map<string, bufferlist> with one entry.
    let (key, val) = (b"bench.touch", value.to_string().into_bytes());
    let mut input = Vec::new();
    input.extend_from_slice(&1u32.to_le_bytes());
    input.extend_from_slice(&(key.len() as u32).to_le_bytes());
    input.extend_from_slice(key);
    input.extend_from_slice(&(val.len() as u32).to_le_bytes());
    input.extend_from_slice(&val);
    let (class, method) = (
        CString::new("rbd").unwrap(),
        CString::new("metadata_set").unwrap(),
    );
    let window = Arc::new(Window::default());
    let mut ops = Vec::with_capacity(oids.len());
    for oid in oids {
        window.acquire(concurrency);
        let c = window.completion();
        unsafe {
            let op = sys::rados_create_write_op();
            sys::rados_write_op_exec(
                op,
                class.as_ptr(),
                method.as_ptr(),
                input.as_ptr() as *const _,
                input.len(),
                std::ptr::null_mut(),
            );
            assert_eq!(
                sys::rados_aio_write_op_operate(
                    op,
                    io.get(),
                    c,
                    oid.as_ptr(),
                    std::ptr::null_mut(),
                    0
                ),
                0
            );
            ops.push((op, c));
        }
    }
    window.drain();
    // SAFETY: every op has completed.
    ops.into_iter()
        .filter(|&(op, c)| unsafe {
            sys::rados_release_write_op(op);
            release(c)
        })
        .count()
}
