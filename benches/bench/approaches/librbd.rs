//! (c) The peer exporters' approach: open every image read-only through
//! librbd, list its watchers, get its parent, list its snapshots, close it.
//! librbd is linked into the bench binary only: the exporter itself never
//! loads it.

use super::rados::Ioctx;
use ceph::rados::rados_ioctx_t;
use serde_json::{Value, json};
use std::ffi::CString;
use std::os::raw::c_int;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The few librbd C calls the peer exporters' approach needs.
mod ffi {
    use std::os::raw::{c_char, c_int, c_void};

    /// An open image.
    pub type Image = *mut c_void;

    /// `rbd_image_watcher_t`.
    #[repr(C)]
    pub struct Watcher {
        /// The watcher's address.
        pub addr: *mut c_char,
        /// The watcher's client id.
        pub id: i64,
        /// The watch's cookie.
        pub cookie: u64,
    }

    /// `rbd_linked_image_spec_t`.
    #[repr(C)]
    pub struct LinkedImageSpec {
        /// The parent's pool id.
        pub pool_id: i64,
        /// The parent's pool name.
        pub pool_name: *mut c_char,
        /// The parent's namespace.
        pub pool_namespace: *mut c_char,
        /// The parent's image id.
        pub image_id: *mut c_char,
        /// The parent's image name.
        pub image_name: *mut c_char,
        /// Whether the parent is in the trash.
        pub trash: bool,
    }

    /// `rbd_snap_spec_t`.
    #[repr(C)]
    pub struct SnapSpec {
        /// The snapshot's id.
        pub id: u64,
        /// The snapshot's namespace type.
        pub namespace_type: c_int,
        /// The snapshot's name.
        pub name: *mut c_char,
    }

    /// `rbd_snap_info_t`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct SnapInfo {
        /// The snapshot's id.
        pub id: u64,
        /// The image's size at the snapshot.
        pub size: u64,
        /// The snapshot's name.
        pub name: *const c_char,
    }

    #[link(name = "rbd")]
    unsafe extern "C" {
        pub fn rbd_open_read_only(
            io: ceph::rados::rados_ioctx_t,
            name: *const c_char,
            image: *mut Image,
            snap_name: *const c_char,
        ) -> c_int;
        pub fn rbd_close(image: Image) -> c_int;
        pub fn rbd_watchers_list(image: Image, watchers: *mut Watcher, max: *mut usize) -> c_int;
        pub fn rbd_watchers_list_cleanup(watchers: *mut Watcher, n: usize);
        pub fn rbd_get_parent(
            image: Image,
            parent_image: *mut LinkedImageSpec,
            parent_snap: *mut SnapSpec,
        ) -> c_int;
        pub fn rbd_linked_image_spec_cleanup(spec: *mut LinkedImageSpec);
        pub fn rbd_snap_spec_cleanup(spec: *mut SnapSpec);
        pub fn rbd_snap_list(image: Image, snaps: *mut SnapInfo, max: *mut c_int) -> c_int;
        pub fn rbd_snap_list_end(snaps: *mut SnapInfo);
    }
}

const ENOENT: c_int = 2;
const ERANGE: c_int = 34;

/// What one librbd open learned about an image.
#[derive(Default, Clone, Copy)]
pub struct Facts {
    /// How many watchers it has.
    pub watchers: usize,
    /// Whether it is a clone.
    pub clone: bool,
    /// How many snapshots it has.
    pub snapshots: usize,
}

/// The peers' per-image sequence: open read-only, list watchers, get the
/// parent, list snapshots, close. Errors are returned as negative errnos.
fn librbd_image(io: rados_ioctx_t, name: &CString) -> Result<Facts, c_int> {
    let mut img: ffi::Image = std::ptr::null_mut();
    // SAFETY: valid ioctx, NUL-terminated name and out-pointer.
    let rc = unsafe { ffi::rbd_open_read_only(io, name.as_ptr(), &mut img, std::ptr::null()) };
    if rc < 0 {
        return Err(rc);
    }
    let result = (|| {
        Ok(Facts {
            watchers: watchers(img)?,
            clone: is_clone(img)?,
            snapshots: snapshots(img)?,
        })
    })();
    unsafe { ffi::rbd_close(img) };
    result
}

/// How many watchers an open image has.
fn watchers(img: ffi::Image) -> Result<usize, c_int> {
    let mut cap = 4usize;
    loop {
        let mut ws: Vec<ffi::Watcher> = (0..cap)
            .map(|_| ffi::Watcher {
                addr: std::ptr::null_mut(),
                id: 0,
                cookie: 0,
            })
            .collect();
        let mut n = cap;
        let rc = unsafe { ffi::rbd_watchers_list(img, ws.as_mut_ptr(), &mut n) };
        if rc == -ERANGE {
            cap = n.max(cap * 2);
            continue;
        }
        if rc < 0 {
            return Err(rc);
        }
        unsafe { ffi::rbd_watchers_list_cleanup(ws.as_mut_ptr(), n) };
        return Ok(n);
    }
}

/// Whether an open image has a parent.
fn is_clone(img: ffi::Image) -> Result<bool, c_int> {
    let mut parent = ffi::LinkedImageSpec {
        pool_id: 0,
        pool_name: std::ptr::null_mut(),
        pool_namespace: std::ptr::null_mut(),
        image_id: std::ptr::null_mut(),
        image_name: std::ptr::null_mut(),
        trash: false,
    };
    let mut psnap = ffi::SnapSpec {
        id: 0,
        namespace_type: 0,
        name: std::ptr::null_mut(),
    };
    match unsafe { ffi::rbd_get_parent(img, &mut parent, &mut psnap) } {
        0 => {
            unsafe {
                ffi::rbd_linked_image_spec_cleanup(&mut parent);
                ffi::rbd_snap_spec_cleanup(&mut psnap);
            }
            Ok(true)
        }
        rc if rc == -ENOENT => Ok(false),
        rc => Err(rc),
    }
}

/// How many snapshots an open image has.
fn snapshots(img: ffi::Image) -> Result<usize, c_int> {
    let mut cap: c_int = 8;
    loop {
        let empty = ffi::SnapInfo {
            id: 0,
            size: 0,
            name: std::ptr::null(),
        };
        let mut snaps = vec![empty; cap as usize];
        let mut max = cap;
        let rc = unsafe { ffi::rbd_snap_list(img, snaps.as_mut_ptr(), &mut max) };
        if rc == -ERANGE {
            cap = max.max(cap * 2);
            continue;
        }
        if rc < 0 {
            return Err(rc);
        }
        unsafe { ffi::rbd_snap_list_end(snaps.as_mut_ptr()) };
        return Ok(rc as usize);
    }
}

/// Every image through librbd, `threads` at a time: what it learned, and
/// how many images failed.
pub fn librbd_scan(io: Ioctx, names: &[CString], threads: usize) -> (Vec<Facts>, usize) {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(names.len()));
    let errors = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= names.len() {
                        break;
                    }
                    match librbd_image(io.get(), &names[i]) {
                        Ok(f) => mine.push(f),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                results.lock().unwrap().extend(mine);
            });
        }
    });
    (results.into_inner().unwrap(), errors.into_inner())
}

/// How many images, clones, watched images and images with snapshots
/// librbd saw.
pub fn facts_counts(facts: &[Facts]) -> Value {
    json!({
        "images": facts.len(),
        "clones": facts.iter().filter(|f| f.clone).count(),
        "watched": facts.iter().filter(|f| f.watchers > 0).count(),
        "with_snapshots": facts.iter().filter(|f| f.snapshots > 0).count(),
    })
}
