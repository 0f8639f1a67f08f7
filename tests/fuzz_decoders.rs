//! Property-based fuzzing of every decoder of cluster replies: arbitrary
//! bytes and mutated real captures must give `Ok` or `Err`, never a panic,
//! and never a huge allocation from a length field (lengths are checked
//! against the bytes left before anything is reserved). Runs a bounded
//! number of cases, so CI time stays fixed.

use ceph_rbd_exporter::ceph::decode;
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Records the largest single allocation made on this thread.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// No decoder may allocate much more than the reply it was given.
const ALLOCATION_BOUND: usize = 256 * 1024;

/// Feeds the same bytes to every decoder and checks the largest allocation.
fn decode_all(b: &[u8]) {
    LARGEST.with(|l| l.set(0));
    decode_each(b);
    let largest = LARGEST.with(|l| l.get());
    assert!(
        largest <= ALLOCATION_BOUND.max(b.len() * 16),
        "a {}-byte reply made a {largest}-byte allocation",
        b.len()
    );
}

fn decode_each(b: &[u8]) {
    let _ = decode::size(b);
    let _ = decode::features(b);
    let _ = decode::flags(b);
    let _ = decode::op_features(b);
    let _ = decode::snapcontext(b);
    let _ = decode::parent_spec(b);
    let _ = decode::parent_overlap(b);
    let _ = decode::lock_info(b);
    let _ = decode::snapshot_info(b);
    let _ = decode::protection_status(b);
    let _ = decode::children_list(b);
    let _ = decode::trash_spec(b);
    let _ = decode::string_value(b);
    let _ = decode::children_key(b);
    let _ = decode::string_set(b);
}

macro_rules! captures {
    ($($name:literal),* $(,)?) => {
        &[$(include_bytes!(concat!("data/decode/", $name, ".bin")) as &[u8]),*]
    };
}

/// Real replies captured from a Pacific cluster (see tests/data/decode).
const CAPTURES: &[&[u8]] = captures!(
    "children_key_v1",
    "children_list_img1_s1",
    "children_list_trash_snap",
    "children_value_v1",
    "features_img1",
    "flags_img1",
    "lock_info_advisory",
    "lock_info_exclusive",
    "lock_info_none",
    "lock_info_shared",
    "op_features_clone2",
    "parent_overlap_clone2",
    "parent_spec_clone1_v1",
    "parent_spec_clone2",
    "parent_spec_nschild",
    "parent_spec_trashsnap",
    "protection_status_protected",
    "size_img1",
    "snapcontext_img1",
    "snapshot_info_trash",
    "snapshot_info_user",
    "string_value_dir_name_img1",
    "trash_spec",
);

proptest! {
    #![proptest_config(ProptestConfig { cases: 20000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&bytes);
    }

    #[test]
    fn mutated_captures_never_panic(
        which in 0..CAPTURES.len(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
        extra in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut b = CAPTURES[which].to_vec();
        for (at, v) in flips {
            if !b.is_empty() {
                let i = at % b.len();
                b[i] ^= v;
            }
        }
        b.truncate(cut % (b.len() + 1));
        b.extend(extra);
        decode_all(&b);
    }

    #[test]
    fn huge_length_fields_are_refused(which in 0..CAPTURES.len(), at in any::<usize>()) {
        // Write 0xFFFFFFFF over four bytes anywhere: a length or count that
        // claims 4 GiB must be an error, found without allocating it.
        let mut b = CAPTURES[which].to_vec();
        if b.len() >= 4 {
            let i = at % (b.len() - 3);
            b[i..i + 4].copy_from_slice(&[0xff; 4]);
        }
        decode_all(&b);
    }
}
