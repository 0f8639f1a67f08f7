//! ceph-rbd-exporter: samples RBD hygiene from a Ceph cluster and serves it
//! to Prometheus.
//!
//! One cycle ([`cycle`]) follows the flow, one module per step:
//! [`ceph`] reads the cluster (the only code that touches librados) ->
//! [`sampler`] turns the reads into a [`model::Sample`] -> [`attribution`]
//! names the hosts behind client addresses and what the attachment sources
//! ([`sources`]) expect -> [`analysis`] judges (pure: one finding per
//! image, watcher and lock) -> [`metrics`] renders the exposition ->
//! [`server`] serves it, with the [`pages`] that show one image or the
//! orphans in a browser. [`view`] is the per-image view that `dump`
//! ([`report`]) and `explain` ([`explain`]) print. [`app`] runs the
//! commands; [`cli`] holds the flags.

pub mod analysis;
pub mod app;
pub mod attribution;
pub mod ceph;
pub mod cli;
pub mod clock;
pub mod cycle;
pub mod error;
pub mod explain;
pub mod first_seen;
pub mod metrics;
pub mod model;
pub mod pages;
pub mod report;
pub mod sampler;
pub mod server;
pub mod sources;
pub mod status;
pub mod view;
pub mod webconfig;
