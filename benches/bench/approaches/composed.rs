//! (f) One read op per header object at the same concurrency, by what it
//! holds (C API, no decoding): where the cost of (a) comes from.

use super::exporter;
use super::rados::{Ioctx, Window, release};
use ceph::rados::{self as sys, rados_completion_t};
use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::sync::Arc;
use std::time::Instant;

/// A sub-operation of a composed read.
pub enum SubOp {
    /// A stat, as the floor's.
    Stat,
    /// A cls call: class, method, input.
    Exec(&'static str, &'static str, Vec<u8>),
    /// Every omap value (up to 512).
    OmapAll,
    /// Every xattr.
    Xattrs,
}

/// Per-op state whose addresses librados writes to on completion.
struct Slot {
    /// The read op.
    op: sys::rados_read_op_t,
    /// Its completion.
    comp: rados_completion_t,
    /// Each sub-op's return value.
    rvals: Vec<c_int>,
    /// Each cls call's output buffer and its length.
    outs: Vec<(*mut c_char, usize)>,
    /// The omap iterator of an `OmapAll`.
    omap: sys::rados_omap_iter_t,
    /// The xattr iterator of an `Xattrs`.
    xattrs: sys::rados_xattrs_iter_t,
    /// A `Stat`'s size.
    size: u64,
    /// A `Stat`'s mtime.
    mtime: i64,
}

/// The exporter's eight cls calls on a header, with its inputs.
pub fn header_calls() -> Vec<SubOp> {
    exporter::header_calls()
        .into_iter()
        .map(|(class, method, input)| SubOp::Exec(class, method, input))
        .collect()
}

/// One read op per object built from `steps`, `concurrency` in flight:
/// (seconds, errors).
pub fn composed(io: Ioctx, oids: &[CString], steps: &[SubOp], concurrency: usize) -> (f64, usize) {
    let names: Vec<(CString, CString)> = steps
        .iter()
        .map(|s| match s {
            SubOp::Exec(c, m, _) => (CString::new(*c).unwrap(), CString::new(*m).unwrap()),
            _ => (CString::default(), CString::default()),
        })
        .collect();
    // Kept until the ops complete, as the names: librados holds pointers.
    let empty = CString::default();
    let window = Arc::new(Window::default());
    let mut slots: Vec<Box<Slot>> = Vec::with_capacity(oids.len());
    let t0 = Instant::now();
    for oid in oids {
        window.acquire(concurrency);
        let mut slot = Box::new(Slot {
            op: unsafe { sys::rados_create_read_op() },
            comp: std::ptr::null_mut(),
            rvals: vec![0; steps.len()],
            outs: vec![(std::ptr::null_mut(), 0); steps.len()],
            omap: std::ptr::null_mut(),
            xattrs: std::ptr::null_mut(),
            size: 0,
            mtime: 0,
        });
        add_steps(&mut slot, steps, &names, &empty);
        slot.comp = window.completion();
        unsafe {
            assert_eq!(
                sys::rados_aio_read_op_operate(slot.op, io.get(), slot.comp, oid.as_ptr(), 0),
                0
            );
        }
        slots.push(slot);
    }
    window.drain();
    let secs = t0.elapsed().as_secs_f64();
    // SAFETY: every op has completed.
    let errors = slots.into_iter().filter(|s| unsafe { free(s) }).count();
    (secs, errors)
}

/// Adds `steps` to the slot's read op (`names`: each cls call's class and
/// method; `empty`: an empty string).
fn add_steps(sl: &mut Slot, steps: &[SubOp], names: &[(CString, CString)], empty: &CString) {
    for (i, step) in steps.iter().enumerate() {
        let rval = &mut sl.rvals[i] as *mut c_int;
        unsafe {
            match step {
                SubOp::Stat => sys::rados_read_op_stat(sl.op, &mut sl.size, &mut sl.mtime, rval),
                SubOp::Exec(_, _, input) => {
                    let (buf, len) = &mut sl.outs[i];
                    sys::rados_read_op_exec(
                        sl.op,
                        names[i].0.as_ptr(),
                        names[i].1.as_ptr(),
                        input.as_ptr() as *const _,
                        input.len(),
                        buf,
                        len,
                        rval,
                    );
                    sys::rados_read_op_set_flags(sl.op, 0x2); // LIBRADOS_OP_FLAG_FAILOK
                }
                SubOp::OmapAll => sys::rados_read_op_omap_get_vals(
                    sl.op,
                    empty.as_ptr(),
                    empty.as_ptr(),
                    512,
                    &mut sl.omap,
                    rval,
                ),
                SubOp::Xattrs => sys::rados_read_op_getxattrs(sl.op, &mut sl.xattrs, rval),
            }
        }
    }
}

/// Frees a completed op and what it read: whether it failed.
///
/// # Safety
/// The slot's op has completed.
unsafe fn free(sl: &Slot) -> bool {
    unsafe {
        let failed = release(sl.comp);
        for (buf, _) in &sl.outs {
            if !buf.is_null() {
                sys::rados_buffer_free(*buf);
            }
        }
        if !sl.omap.is_null() {
            sys::rados_omap_get_end(sl.omap);
        }
        if !sl.xattrs.is_null() {
            sys::rados_getxattrs_end(sl.xattrs);
        }
        sys::rados_release_read_op(sl.op);
        failed
    }
}
