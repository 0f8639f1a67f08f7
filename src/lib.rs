//! ceph-rbd-exporter: samples RBD hygiene from a Ceph cluster and serves it
//! to Prometheus. The flow is `ceph` (read) -> `sampler` (sample) ->
//! `analysis` (analyse) -> `metrics` (render) -> `server` (serve).

pub mod analysis;
pub mod attribution;
pub mod ceph;
pub mod cli;
pub mod error;
pub mod explain;
pub mod metrics;
pub mod model;
pub mod report;
pub mod sampler;
pub mod server;
pub mod sources;
pub mod webconfig;
