//! The unsafe plumbing around the C++ shim (`shim.cc`, declared in
//! `ffi.rs`): building a compound read ([`Batch`]), submitting it as one aio
//! operation and waiting for librados' completion callback ([`Pending`],
//! [`on_complete`]), and reading the results of each step out of the
//! completed operation ([`Done`]). Nothing here knows about RBD.

use super::cstring;
use super::ffi;
use super::throttle::InFlight;
use crate::error::{Error, libc_errno};
use crate::model::Watcher;
use ceph::rados::rados_ioctx_t;
use std::ffi::c_void;
use std::os::raw::{c_char, c_int};
use std::sync::Arc;
use tokio::sync::oneshot;

/// A librados I/O context (pool and namespace).
#[derive(Clone, Copy)]
pub(super) struct Ioctx(pub(super) rados_ioctx_t);
// SAFETY: librados I/O contexts may be used for aio from any thread; ours
// never change after creation.
unsafe impl Send for Ioctx {}
unsafe impl Sync for Ioctx {}

/// Index of a step in a batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Step(usize);

/// One omap key and value.
pub(super) type OmapEntry = (Vec<u8>, Vec<u8>);

/// A compound read being built.
pub(super) struct Batch(*mut ffi::RbdxBatch);
// SAFETY: a batch is used by one thread at a time; the shim keeps no
// thread-local state.
unsafe impl Send for Batch {}

impl Drop for Batch {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: we own the batch (not submitted, or handed back).
            unsafe { ffi::rbdx_batch_free(self.0) }
        }
    }
}

fn step(rc: c_int) -> Result<Step, Error> {
    if rc < 0 {
        return Err(Error::Config(
            "out of memory building a RADOS operation".into(),
        ));
    }
    Ok(Step(rc as usize))
}

impl Batch {
    pub(super) fn new() -> Batch {
        // SAFETY: returns null only on allocation failure, which aborts below.
        let p = unsafe { ffi::rbdx_batch_new() };
        assert!(!p.is_null(), "out of memory");
        Batch(p)
    }

    /// Adds a cls method call.
    pub(super) fn exec(&mut self, cls: &str, method: &str, input: &[u8]) -> Result<Step, Error> {
        let cls = cstring(cls, "class")?;
        let method = cstring(method, "method")?;
        step(unsafe {
            ffi::rbdx_batch_exec(
                self.0,
                cls.as_ptr(),
                method.as_ptr(),
                input.as_ptr() as *const c_char,
                input.len(),
            )
        })
    }

    /// Adds a watcher listing of the object.
    pub(super) fn list_watchers(&mut self) -> Result<Step, Error> {
        step(unsafe { ffi::rbdx_batch_list_watchers(self.0) })
    }

    /// Makes the whole operation fail unless the object is at `version`
    /// (`-ERANGE`: it changed since; `-EOVERFLOW`: it is older, e.g.
    /// re-created). Add it first: no step after a failed assertion runs.
    pub(super) fn assert_version(&mut self, version: u64) -> Result<(), Error> {
        if unsafe { ffi::rbdx_batch_assert_version(self.0, version) } < 0 {
            return Err(Error::Config(
                "out of memory building a RADOS operation".into(),
            ));
        }
        Ok(())
    }

    /// Adds a read of the object's whole data (not FAILOK: its failure
    /// fails the batch).
    pub(super) fn read(&mut self) -> Result<Step, Error> {
        step(unsafe { ffi::rbdx_batch_read(self.0) })
    }

    /// Adds one page of omap entries after `start_after` whose keys start
    /// with `prefix`.
    pub(super) fn omap_get_vals(
        &mut self,
        start_after: &[u8],
        prefix: &str,
        max: u64,
    ) -> Result<Step, Error> {
        let prefix = cstring(prefix, "omap prefix")?;
        step(unsafe {
            ffi::rbdx_batch_omap_get_vals(
                self.0,
                start_after.as_ptr() as *const c_char,
                start_after.len(),
                prefix.as_ptr(),
                max,
            )
        })
    }

    /// Submits and waits. Completion (or timeout, through
    /// `rados_osd_op_timeout`) is signalled by librados; if this future is
    /// dropped first, the callback frees the batch. The operation counts in
    /// `inflight` until the callback runs.
    pub(super) async fn submit(
        mut self,
        io: Ioctx,
        oid: &str,
        inflight: &Arc<InFlight>,
    ) -> Result<Done, i32> {
        let (tx, rx) = oneshot::channel::<BatchPtr>();
        let pending = Pending {
            tx,
            inflight: inflight.clone(),
        };
        let arg = Box::into_raw(Box::new(pending)) as *mut c_void;
        let ptr = self.0;
        inflight.start();
        // SAFETY: ptr is a live batch, io a live ioctx, oid valid for the call.
        let rc = unsafe {
            ffi::rbdx_batch_submit(
                io.0,
                oid.as_ptr() as *const c_char,
                oid.len(),
                ptr,
                on_complete,
                arg,
            )
        };
        if rc < 0 {
            // Not submitted: the callback will never run, so reclaim its box.
            let pending = unsafe { Box::from_raw(arg as *mut Pending) };
            pending.inflight.end();
            return Err(rc);
        }
        // From here the callback owns the batch.
        self.0 = std::ptr::null_mut();
        match rx.await {
            Ok(BatchPtr(p)) => Ok(Done(Batch(p))),
            Err(_) => Err(-libc_errno::EINVAL),
        }
    }
}

struct BatchPtr(*mut ffi::RbdxBatch);
// SAFETY: ownership of the batch moves with the pointer.
unsafe impl Send for BatchPtr {}

/// What the completion callback needs: where to hand the batch back, and the
/// in-flight count to decrement.
struct Pending {
    tx: oneshot::Sender<BatchPtr>,
    inflight: Arc<InFlight>,
}

extern "C" fn on_complete(arg: *mut c_void, batch: *mut ffi::RbdxBatch, _rc: c_int) {
    // SAFETY: arg is the box made in submit, used exactly once.
    let Pending { tx, inflight } = *unsafe { Box::from_raw(arg as *mut Pending) };
    inflight.end();
    if let Err(BatchPtr(p)) = tx.send(BatchPtr(batch)) {
        // Nobody waits any more: free it here.
        unsafe { ffi::rbdx_batch_free(p) }
    }
}

/// A completed compound read.
pub(super) struct Done(Batch);

impl Done {
    /// The return code of the whole operation.
    pub(super) fn rc(&self) -> i32 {
        unsafe { ffi::rbdx_batch_rc(self.0.0) }
    }

    /// The object's (user) version this operation read: what
    /// [`Batch::assert_version`] compares with.
    pub(super) fn version(&self) -> u64 {
        unsafe { ffi::rbdx_batch_version(self.0.0) }
    }

    /// Output bytes of an exec or read step, or its negative return code.
    pub(super) fn output(&self, step: Step) -> Result<&[u8], i32> {
        let rval = unsafe { ffi::rbdx_step_rval(self.0.0, step.0) };
        if rval < 0 {
            return Err(rval);
        }
        let mut data: *const c_char = std::ptr::null();
        let mut len = 0usize;
        let rc = unsafe { ffi::rbdx_step_output(self.0.0, step.0, &mut data, &mut len) };
        if rc < 0 || data.is_null() {
            return Err(rc.min(-1));
        }
        // SAFETY: the shim keeps the bytes alive until the batch is freed,
        // and the returned slice borrows self.
        Ok(unsafe { std::slice::from_raw_parts(data as *const u8, len) })
    }

    /// The watchers a list_watchers step found, sorted.
    pub(super) fn watchers(&self, step: Step) -> Result<Vec<Watcher>, i32> {
        let rval = unsafe { ffi::rbdx_step_rval(self.0.0, step.0) };
        if rval < 0 {
            return Err(rval);
        }
        let n = unsafe { ffi::rbdx_step_watcher_count(self.0.0, step.0) };
        let mut out = Vec::with_capacity(n);
        let mut addr = [0u8; 256];
        for j in 0..n {
            let mut id = 0i64;
            let mut cookie = 0u64;
            let rc = unsafe {
                ffi::rbdx_step_watcher(
                    self.0.0,
                    step.0,
                    j,
                    addr.as_mut_ptr() as *mut c_char,
                    addr.len(),
                    &mut id,
                    &mut cookie,
                )
            };
            if rc < 0 {
                return Err(rc);
            }
            let end = addr.iter().position(|&b| b == 0).unwrap_or(addr.len());
            out.push(Watcher {
                client: format!("client.{id}"),
                address: String::from_utf8_lossy(&addr[..end]).into_owned(),
                cookie,
            });
        }
        out.sort();
        Ok(out)
    }

    /// The entries of an omap step, and whether more follow.
    pub(super) fn omap(&mut self, step: Step) -> Result<(Vec<OmapEntry>, bool), i32> {
        let rval = unsafe { ffi::rbdx_step_rval(self.0.0, step.0) };
        if rval < 0 {
            return Err(rval);
        }
        let mut more: c_int = 0;
        let n = unsafe { ffi::rbdx_step_omap_count(self.0.0, step.0, &mut more) };
        let mut out = Vec::with_capacity(n);
        for j in 0..n {
            let (mut k, mut kl, mut v, mut vl) =
                (std::ptr::null(), 0usize, std::ptr::null(), 0usize);
            let rc =
                unsafe { ffi::rbdx_step_omap_entry(self.0.0, j, &mut k, &mut kl, &mut v, &mut vl) };
            if rc < 0 {
                return Err(rc);
            }
            // SAFETY: the shim's buffers live until the batch is freed.
            let key = unsafe { std::slice::from_raw_parts(k as *const u8, kl) }.to_vec();
            let val = unsafe { std::slice::from_raw_parts(v as *const u8, vl) }.to_vec();
            out.push((key, val));
        }
        Ok((out, more != 0))
    }
}
