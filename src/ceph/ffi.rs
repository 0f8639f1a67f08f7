//! Declarations of the C++ shim (`shim.cc`). Only `batch.rs` uses them.

use ceph::rados::rados_ioctx_t;
use std::os::raw::{c_char, c_int, c_void};

/// Opaque compound read operation owned by the shim.
#[repr(C)]
pub struct RbdxBatch {
    _private: [u8; 0],
}

/// Called once from a librados thread when a submitted batch completes.
pub type RbdxCallback = extern "C" fn(arg: *mut c_void, batch: *mut RbdxBatch, rc: c_int);

unsafe extern "C" {
    pub fn rbdx_batch_new() -> *mut RbdxBatch;
    pub fn rbdx_batch_free(b: *mut RbdxBatch);
    pub fn rbdx_batch_exec(
        b: *mut RbdxBatch,
        cls: *const c_char,
        method: *const c_char,
        input: *const c_char,
        input_len: usize,
    ) -> c_int;
    pub fn rbdx_batch_list_watchers(b: *mut RbdxBatch) -> c_int;
    pub fn rbdx_batch_read(b: *mut RbdxBatch) -> c_int;
    pub fn rbdx_batch_assert_version(b: *mut RbdxBatch, ver: u64) -> c_int;
    pub fn rbdx_batch_version(b: *const RbdxBatch) -> u64;
    pub fn rbdx_batch_omap_get_vals(
        b: *mut RbdxBatch,
        start_after: *const c_char,
        start_after_len: usize,
        prefix: *const c_char,
        max: u64,
    ) -> c_int;
    pub fn rbdx_batch_submit(
        ioctx: rados_ioctx_t,
        oid: *const c_char,
        oid_len: usize,
        b: *mut RbdxBatch,
        cb: RbdxCallback,
        cb_arg: *mut c_void,
    ) -> c_int;
    pub fn rbdx_batch_rc(b: *const RbdxBatch) -> c_int;
    pub fn rbdx_step_rval(b: *const RbdxBatch, i: usize) -> c_int;
    pub fn rbdx_step_output(
        b: *mut RbdxBatch,
        i: usize,
        data: *mut *const c_char,
        len: *mut usize,
    ) -> c_int;
    pub fn rbdx_step_watcher_count(b: *const RbdxBatch, i: usize) -> usize;
    pub fn rbdx_step_watcher(
        b: *const RbdxBatch,
        i: usize,
        j: usize,
        addr_out: *mut c_char,
        addr_cap: usize,
        watcher_id: *mut i64,
        cookie: *mut u64,
    ) -> c_int;
    pub fn rbdx_step_omap_count(b: *mut RbdxBatch, i: usize, more: *mut c_int) -> usize;
    pub fn rbdx_step_omap_entry(
        b: *mut RbdxBatch,
        j: usize,
        key: *mut *const c_char,
        key_len: *mut usize,
        val: *mut *const c_char,
        val_len: *mut usize,
    ) -> c_int;
}
