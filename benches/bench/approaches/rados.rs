//! Raw librados for the floor, the composed reads and librbd: a connection,
//! its I/O context, and a window of asynchronous ops in flight.

use ceph::rados::{self as sys, rados_completion_t, rados_ioctx_t, rados_t};
use std::ffi::{CString, c_void};
use std::sync::{Arc, Condvar, Mutex};

/// A librados I/O context that threads may share.
#[derive(Clone, Copy)]
pub struct Ioctx(
    /// The raw context.
    rados_ioctx_t,
);
// SAFETY: librados I/O contexts are thread-safe for I/O.
unsafe impl Send for Ioctx {}
unsafe impl Sync for Ioctx {}

impl Ioctx {
    /// The raw pointer (a method, so closures capture the whole Send wrapper).
    pub fn get(self) -> rados_ioctx_t {
        self.0
    }
}

/// A plain librados connection for the floor and for librbd.
pub struct Raw {
    /// The cluster handle.
    cluster: rados_t,
    /// The I/O context on the pool.
    pub io: Ioctx,
}

impl Raw {
    /// Connects as client.admin with `conf` and `options` and opens `pool`;
    /// panics on failure.
    pub fn connect(conf: &str, pool: &str, options: &[(String, String)]) -> Raw {
        let user = CString::new("admin").unwrap();
        let conf = CString::new(conf).unwrap();
        let pool = CString::new(pool).unwrap();
        let mut cluster: rados_t = std::ptr::null_mut();
        unsafe {
            assert_eq!(sys::rados_create(&mut cluster, user.as_ptr()), 0);
            assert_eq!(sys::rados_conf_read_file(cluster, conf.as_ptr()), 0);
            for (k, v) in options {
                let (k, v) = (
                    CString::new(k.as_str()).unwrap(),
                    CString::new(v.as_str()).unwrap(),
                );
                assert_eq!(
                    sys::rados_conf_set(cluster, k.as_ptr(), v.as_ptr()),
                    0,
                    "{k:?}"
                );
            }
            assert_eq!(sys::rados_connect(cluster), 0, "rados_connect");
            let mut io: rados_ioctx_t = std::ptr::null_mut();
            assert_eq!(sys::rados_ioctx_create(cluster, pool.as_ptr(), &mut io), 0);
            Raw {
                cluster,
                io: Ioctx(io),
            }
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        unsafe {
            sys::rados_ioctx_destroy(self.io.0);
            sys::rados_shutdown(self.cluster);
        }
    }
}

/// Ops in flight; shared with the completion callbacks.
#[derive(Default)]
pub struct Window {
    /// How many ops are in flight.
    n: Mutex<usize>,
    /// Signalled whenever an op completes.
    cv: Condvar,
}

/// The completion callback: takes the op out of its window.
extern "C" fn op_done(_c: rados_completion_t, arg: *mut c_void) {
    // SAFETY: one Arc reference per op, made in `Window::completion`.
    let w = unsafe { Arc::from_raw(arg as *const Window) };
    let mut n = w.n.lock().unwrap();
    *n -= 1;
    w.cv.notify_all();
}

impl Window {
    /// Waits until fewer than `concurrency` ops are in flight, then counts
    /// one more.
    pub fn acquire(&self, concurrency: usize) {
        let mut n = self.n.lock().unwrap();
        while *n >= concurrency {
            n = self.cv.wait(n).unwrap();
        }
        *n += 1;
    }

    /// Waits until every op has completed.
    pub fn drain(&self) {
        let mut n = self.n.lock().unwrap();
        while *n > 0 {
            n = self.cv.wait(n).unwrap();
        }
    }

    /// A completion that takes the op out of the window when it completes.
    pub fn completion(self: &Arc<Self>) -> rados_completion_t {
        let arg = Arc::into_raw(self.clone()) as *mut c_void;
        let mut c: rados_completion_t = std::ptr::null_mut();
        unsafe {
            assert_eq!(
                sys::rados_aio_create_completion(arg, Some(op_done), None, &mut c),
                0
            );
        }
        c
    }
}

/// Releases a completed op's completion: whether the op failed.
///
/// # Safety
/// `c` is a completion from [`Window::completion`] whose op has completed;
/// it is not used again.
pub unsafe fn release(c: rados_completion_t) -> bool {
    unsafe {
        let failed = sys::rados_aio_get_return_value(c) < 0;
        sys::rados_aio_release(c);
        failed
    }
}
