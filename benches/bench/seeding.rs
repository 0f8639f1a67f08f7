//! The seeded pool as the bench finds it. benches/seed.py seeds it (images
//! bench-NNNNN in blocks of 100: plain images, clones, snapshots); here its
//! images are read back from the pool's directory, once, before any clock
//! starts, and named the ways the approaches want them.

use crate::approaches::exporter::Library;
use std::ffi::CString;

/// The images of one seeded pool.
pub struct Seeded {
    /// The pool's name.
    pub pool: String,
    /// Its images as (id, name), in directory order.
    directory: Vec<(String, String)>,
}

impl Seeded {
    /// Reads `pool`'s directory through the exporter's connection.
    pub fn read(lib: &Library, pool: &str) -> Seeded {
        Seeded {
            pool: pool.to_string(),
            directory: lib.directory(pool),
        }
    }

    /// How many images the pool holds.
    pub fn len(&self) -> usize {
        self.directory.len()
    }

    /// The images' names, for librbd.
    pub fn names(&self) -> Vec<CString> {
        self.directory
            .iter()
            .map(|(_, name)| CString::new(name.as_str()).unwrap())
            .collect()
    }

    /// The images' header objects, for the floor and the composed reads.
    pub fn header_oids(&self) -> Vec<CString> {
        self.directory
            .iter()
            .map(|(id, _)| CString::new(format!("rbd_header.{id}")).unwrap())
            .collect()
    }

    /// About `count` image names in whole blocks of 100 of benches/seed.py
    /// (bench-NNNNN), the blocks evenly spaced: a slice with the pool's mix
    /// of clones, snapshots and watched images (block 0 is the watched
    /// one). Every image when the pool holds fewer.
    pub fn block_slice(&self, count: usize) -> Vec<&str> {
        let step = (self.len() / count.max(1)).max(1);
        self.directory
            .iter()
            .map(|(_, name)| name.as_str())
            .filter(|name| {
                name.strip_prefix("bench-")
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|n| (n / 100) % step == 0)
            })
            .collect()
    }

    /// About `count` image names, evenly spaced (every one when the pool
    /// holds fewer).
    pub fn spread(&self, count: usize) -> Vec<&str> {
        let step = (self.len() / count.max(1)).max(1);
        self.directory
            .iter()
            .step_by(step)
            .map(|(_, name)| name.as_str())
            .collect()
    }
}
