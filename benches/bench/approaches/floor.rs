//! (b) The floor: one bare `rados_aio_stat` per header object, no listing,
//! no decoding. Nothing can sample with fewer round trips.

use super::rados::{Ioctx, Window, release};
use ceph::rados::{self as sys, rados_completion_t};
use std::ffi::CString;
use std::sync::Arc;
use std::time::Instant;

/// One bare stat per object, `concurrency` in flight: (seconds, errors).
pub fn floor(io: Ioctx, oids: &[CString], concurrency: usize) -> (f64, usize) {
    let window = Arc::new(Window::default());
    let mut out: Vec<(u64, i64)> = vec![(0, 0); oids.len()];
    let mut comps: Vec<rados_completion_t> = Vec::with_capacity(oids.len());
    let t0 = Instant::now();
    for (i, oid) in oids.iter().enumerate() {
        window.acquire(concurrency);
        let c = window.completion();
        let (size, mtime) = {
            let slot = &mut out[i];
            (&mut slot.0 as *mut u64, &mut slot.1 as *mut i64)
        };
        unsafe {
            assert_eq!(
                sys::rados_aio_stat(io.get(), oid.as_ptr(), c, size, mtime),
                0
            );
        }
        comps.push(c);
    }
    window.drain();
    let secs = t0.elapsed().as_secs_f64();
    // SAFETY: every op has completed.
    let errors = comps.into_iter().filter(|&c| unsafe { release(c) }).count();
    (secs, errors)
}
