//! The exporter's own health, carried from sample to sample: whether the
//! cluster was reached, per-pool durations, last successes and error
//! counts, and the health of every attachment source. The cycle keeps it,
//! the renderer prints it.

use crate::model::{HeaderReads, PoolSample, SampleError};
use std::collections::BTreeMap;

/// The exporter's own state, carried across samples.
#[derive(Debug, Clone, Default)]
pub struct ExporterStatus {
    /// Did the last sample reach the cluster.
    pub up: bool,
    /// Per pool name: duration of its last sample, in seconds.
    pub sample_duration_seconds: BTreeMap<String, f64>,
    /// Per pool name: Unix time of its last successful sample.
    pub last_success_timestamp_seconds: BTreeMap<String, f64>,
    /// Per (pool name, error kind): failed samples. The pool is `""` for
    /// failures that are not about one pool (connecting, listing pools).
    pub sample_errors_total: BTreeMap<(String, String), u64>,
    /// Per attachment source name: its health.
    pub sources: BTreeMap<String, SourceHealth>,
    /// Image header reads since start, by kind (full, light, changed).
    pub header_reads: HeaderReads,
}

/// Health of one attachment source (OpenStack, Kubernetes, file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceHealth {
    /// Did the last fetch succeed.
    pub up: bool,
    /// Unix time of the last successful fetch (0 before the first).
    pub last_success_timestamp_seconds: f64,
    /// Failed fetches by error kind.
    pub errors_total: BTreeMap<String, u64>,
    /// Why the last fetch failed, if it did.
    pub last_error: Option<String>,
    /// Images the last good answer named.
    pub images: u64,
}

impl ExporterStatus {
    /// Counts one error of `kind` against `pool` (`""`: no pool).
    pub fn count_error(&mut self, pool: &str, kind: &str) {
        *self
            .sample_errors_total
            .entry((pool.to_string(), kind.to_string()))
            .or_default() += 1;
    }

    /// Records one pool's sample: its duration, its skipped images, and
    /// either its success (at `finished_at`) or its failure.
    pub fn record_pool(&mut self, pool: &PoolSample, finished_at: f64) {
        self.sample_duration_seconds
            .insert(pool.name.clone(), pool.duration_seconds);
        for s in &pool.skipped {
            self.count_error(&pool.name, &s.error.kind);
        }
        match &pool.outcome {
            Ok(_) => {
                self.last_success_timestamp_seconds
                    .insert(pool.name.clone(), finished_at);
            }
            Err(SampleError { kind, .. }) => self.count_error(&pool.name, kind),
        }
    }

    /// Adds one sample's header reads to the totals.
    pub fn count_reads(&mut self, reads: HeaderReads) {
        let total = &mut self.header_reads;
        total.full += reads.full;
        total.light += reads.light;
        total.changed += reads.changed;
        total.snapshots += reads.snapshots;
    }

    /// Forgets the durations and last successes of pools not in `present`
    /// (pools that went away stop being reported; their error counts stay).
    pub fn keep_pools(&mut self, present: &[&str]) {
        self.sample_duration_seconds
            .retain(|k, _| present.contains(&k.as_str()));
        self.last_success_timestamp_seconds
            .retain(|k, _| present.contains(&k.as_str()));
    }
}
