//! The approaches measured, one module each:
//!  (a) `exporter`: the exporter's sample through its library, and the
//!      library's analysis and rendering; the only module that uses the
//!      exporter's library;
//!  (b) `floor`: one bare `rados_aio_stat` per header object;
//!  (c) `librbd`: open, query and close every image through librbd;
//!  (d) `rbd_cli`: `rbd ls -l` and a `rbd status` loop;
//!  (e) `serving`: the exporter binary: scrapes while it samples, peak RSS;
//!  (f) `composed`: one composed read per header, by what it holds.
//! `touch` changes headers between the steady-state samples of (a);
//! `rados` is the raw librados plumbing (b), (c), (f) and `touch` share.

pub mod composed;
pub mod exporter;
pub mod floor;
pub mod librbd;
pub mod rados;
pub mod rbd_cli;
pub mod serving;
pub mod touch;
