//! One sampling cycle, start to finish: **sample** the cluster
//! (`crate::sampler`), **merge** it with the last good data of pools that
//! failed, **attribute** the client addresses (`crate::attribution`),
//! **analyse** (`crate::analysis`), **render** the exposition
//! (`crate::metrics`) and **publish** the result for the HTTP server
//! (`crate::server`) to serve until the next cycle. [`Cycle::run`] repeats
//! it every `--sample.interval`; `dump` and `explain` run it once. With a
//! state file (`--storage.path`) the first-seen times are restored at start
//! and saved after every sample that changes them.

use crate::analysis::{Analysis, Settings};
use crate::attribution::{Attribution, Attributor};
use crate::ceph::Conn;
use crate::clock::{Every, now_unix};
use crate::error::Error;
use crate::first_seen::file::StateFile;
use crate::first_seen::{FirstSeen, FirstSeenTimes};
use crate::metrics::{self, RenderOptions};
use crate::model::{NamespaceSample, PoolSample, Sample, Skipped};
use crate::sampler::{self, SampleConfig};
use crate::status::ExporterStatus;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Everything a cycle needs to know, from the flags.
#[derive(Debug, Clone)]
pub struct CycleConfig {
    /// What to sample and how hard.
    pub sample: SampleConfig,
    /// Settings that change verdicts.
    pub settings: Settings,
    /// What to render besides the findings.
    pub render: RenderOptions,
    /// How often to cycle (`--sample.interval`).
    pub interval: Duration,
}

/// A sample with everything concluded from it: what the pages, `dump` and
/// `explain` read.
#[derive(Debug, Default)]
pub struct Analysed {
    /// The sample (pools that failed keep their last good data).
    pub sample: Arc<Sample>,
    /// Its analysis.
    pub analysis: Arc<Analysis>,
    /// The hosts and attachments the analysis used.
    pub attribution: Arc<Attribution>,
}

/// What /metrics and / serve: rebuilt after every cycle, swapped
/// atomically.
#[derive(Debug, Default)]
pub struct Published {
    /// Rendered exposition text.
    pub metrics: bytes::Bytes,
    /// `metrics` gzipped, made by the first scrape that accepts gzip and
    /// shared by every later one until the next publish
    /// (`crate::server::gzipped`).
    pub metrics_gzip: std::sync::OnceLock<bytes::Bytes>,
    /// The last good sample and its analysis; `None` before the first.
    pub analysed: Option<Arc<Analysed>>,
    /// Exporter status at the time of rendering.
    pub status: ExporterStatus,
    /// Unix time of the last sample attempt.
    pub last_attempt: f64,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

/// The cycle's state across samples.
pub struct Cycle {
    /// What to sample, judge and render.
    pub config: CycleConfig,
    /// The exporter's own health.
    status: ExporterStatus,
    /// When each watcher was first seen.
    first_seen: FirstSeen,
    /// Where the first-seen times are saved (`--storage.path`), if anywhere.
    state: Option<StateFile>,
    /// Hosts, inventory and attachment sources; `None` without any.
    attributor: Option<Arc<Attributor>>,
    /// The last analysed sample.
    last: Option<Arc<Analysed>>,
    /// The format 1 images last warned about.
    format1: Format1Warnings,
    /// Samples taken so far (the clock of the periodic full header reads).
    samples: u64,
    /// How the cluster answered lately: when to connect anew, what to log.
    link: Link,
}

/// After this many attempts in a row that could not even list the pools,
/// the connection is dropped and made anew at the next attempt. librados
/// hunts for another mon by itself, but it never reads the key again: a
/// key removed and recreated with `ceph auth` (or a new key file) only
/// takes effect on a new connection.
pub const RECONNECT_AFTER: u32 = 2;

/// The cluster's recent answers, as far as the connection is concerned.
#[derive(Debug, Default)]
struct Link {
    /// Attempts in a row that failed before any pool was read (pool
    /// listing or connect).
    failed_in_a_row: u32,
    /// The error kind of the last failure logged as a warning; the same
    /// kind again is logged at debug level, so an outage is one line.
    logged_kind: Option<&'static str>,
}

impl Link {
    /// Records a failed attempt and logs it, once per kind in a row.
    fn failed(&mut self, e: &Error, what: &str) {
        self.failed_in_a_row += 1;
        let kind = e.metric_label();
        if self.logged_kind == Some(kind) {
            tracing::debug!(error = %e, attempts = self.failed_in_a_row, "{what}");
            return;
        }
        self.logged_kind = Some(kind);
        if kind == "auth" {
            tracing::error!(error = %e, "{what}: the cluster refuses the exporter's key (was it removed or changed with `ceph auth`?); retrying every interval, reading the key again each time");
        } else {
            tracing::warn!(error = %e, "{what}; retrying every interval");
        }
    }

    /// Records an attempt that read the pools.
    fn answered(&mut self) {
        if self.logged_kind.take().is_some() {
            tracing::info!(
                failed_attempts = self.failed_in_a_row,
                "the cluster answers again"
            );
        }
        self.failed_in_a_row = 0;
    }

    /// Whether to drop the connection before the next attempt.
    fn should_reconnect(&self) -> bool {
        self.failed_in_a_row >= RECONNECT_AFTER
    }
}

/// Puts back the last facts of the images a good pool sample skipped
/// (a read that failed in part, did not decode or panicked; a directory or
/// trash entry that did not decode), from `previous`, the pool's last good
/// sample: a watcher or lock never vanishes because one read failed.
/// Images `previous` did not have stay out, and so do images that are
/// really gone (their header read found nothing, which is no skip).
fn keep_skipped_images(pool: &mut PoolSample, previous: Option<&PoolSample>) {
    let PoolSample {
        name,
        outcome,
        skipped,
        ..
    } = pool;
    for s in skipped.iter() {
        let kept = match (&mut *outcome, previous.map(|p| &p.outcome)) {
            (Ok(nss), Some(Ok(prev))) => keep_image(nss, prev, s),
            _ => false,
        };
        tracing::warn!(
            pool = %name,
            namespace = %s.namespace,
            image_id = s.image_id.as_deref().unwrap_or(""),
            kind = %s.error.kind,
            error = %s.error.message,
            kept_previous = kept,
            "left out of the sample"
        );
    }
}

/// Copies the skipped image `s` from `previous` into `namespaces` unless
/// it is there already; true if it was copied.
fn keep_image(
    namespaces: &mut [NamespaceSample],
    previous: &[NamespaceSample],
    s: &Skipped,
) -> bool {
    let Some(id) = &s.image_id else {
        return false;
    };
    let Some(ns) = namespaces.iter_mut().find(|n| n.namespace == s.namespace) else {
        return false;
    };
    let old = previous
        .iter()
        .find(|n| n.namespace == s.namespace)
        .and_then(|n| n.images.get(id));
    match old {
        Some(old) if !ns.images.contains_key(id) => {
            ns.images.insert(id.clone(), old.clone());
            true
        }
        _ => false,
    }
}

/// Warns about the format 1 images of each pool and namespace when the
/// list changes (not every sample).
#[derive(Debug, Default)]
struct Format1Warnings {
    /// The names last warned about, by pool name and namespace.
    last: BTreeMap<(String, String), Vec<String>>,
}

impl Format1Warnings {
    fn warn(&mut self, pool: &PoolSample) {
        let Ok(nss) = &pool.outcome else { return };
        for ns in nss {
            let key = (pool.name.clone(), ns.namespace.clone());
            if self
                .last
                .get(&key)
                .map_or(ns.format1_images.is_empty(), |l| *l == ns.format1_images)
            {
                continue;
            }
            if !ns.format1_images.is_empty() {
                tracing::warn!(
                    pool = %pool.name,
                    namespace = %ns.namespace,
                    images = ?ns.format1_images,
                    "format 1 images are counted (ceph_rbd_pool_format1_images) but not sampled: \
                     their watchers, locks and snapshots are not reported"
                );
            }
            self.last.insert(key, ns.format1_images.clone());
        }
    }
}

impl Cycle {
    /// A cycle with nothing sampled yet.
    pub fn new(config: CycleConfig, attributor: Option<Arc<Attributor>>) -> Self {
        Cycle {
            config,
            status: ExporterStatus::default(),
            first_seen: FirstSeen::default(),
            state: None,
            attributor,
            last: None,
            format1: Format1Warnings::default(),
            samples: 0,
            link: Link::default(),
        }
    }

    /// Restores the first-seen times from `state` and saves them there
    /// after every sample that changes them.
    pub fn with_state_file(mut self, state: StateFile) -> Self {
        self.first_seen = state.load(now_unix());
        self.state = Some(state);
        self
    }

    /// The attributor, if the flags asked for one.
    pub fn attributor(&self) -> Option<&Arc<Attributor>> {
        self.attributor.as_ref()
    }

    /// What to publish before the first sample.
    pub fn initial(&self) -> Published {
        self.publish(None)
    }

    /// Records a failure to reach the cluster at all.
    pub fn record_unreachable(&mut self, e: &Error) -> Published {
        self.status.up = false;
        self.status.count_error("", e.metric_label());
        self.publish(Some(e.to_string()))
    }

    /// Runs one cycle and returns what to publish.
    pub async fn step<C: Conn>(&mut self, conn: &Arc<C>) -> Published {
        // After the first sample, headers that did not change since the
        // last one are read light (see `crate::sampler`).
        let previous = self.last.as_ref().map(|l| l.sample.clone());
        self.samples += 1;
        let sampled = match previous {
            Some(previous) => {
                sampler::sample_since(conn, &self.config.sample, previous, self.samples).await
            }
            None => sampler::sample_once(conn, &self.config.sample).await,
        };
        let (sample, unknown) = match sampled {
            Ok(s) => s,
            Err(e) => {
                self.link.failed(&e, "sample failed: cannot list pools");
                return self.record_unreachable(&e);
            }
        };
        self.link.answered();
        self.status.count_reads(sample.reads);
        for name in &unknown {
            tracing::warn!(pool = %name, "pool named in --pools does not exist");
            self.status.count_error(name, "unknown_pool");
        }
        let (sample, error) = self.merge(sample);
        let first_seen = self.first_seen.update(&sample, sample.started_at);
        if let Some(state) = &mut self.state {
            state.save(&mut self.first_seen, sample.finished_at).await;
        }
        let attribution = self.attribute(&sample).await;
        self.last = Some(Arc::new(self.analyse(sample, attribution, &first_seen)));
        self.publish(error)
    }

    /// Merges a new sample with the last one: failed pools keep their last
    /// good data, images a good pool skipped keep their last facts, and
    /// every pool's outcome is recorded in the status. Returns the merged
    /// sample and what failed, if anything did.
    fn merge(&mut self, mut sample: Sample) -> (Sample, Option<String>) {
        let mut errors = Vec::new();
        let mut any_ok = sample.pools.is_empty();
        let last = self.last.as_ref().map(|l| &l.sample);
        for pool in sample.pools.values_mut() {
            self.status.record_pool(pool, sample.finished_at);
            let previous = last
                .and_then(|l| l.pools.get(&pool.pool_id))
                .filter(|p| p.outcome.is_ok());
            let Err(e) = &pool.outcome else {
                any_ok = true;
                keep_skipped_images(pool, previous);
                self.format1.warn(pool);
                continue;
            };
            tracing::warn!(pool = %pool.name, error = %e.message, "pool sample failed");
            errors.push(format!("{}: {}", pool.name, e.message));
            if let Some(prev) = previous {
                pool.outcome = prev.outcome.clone();
                pool.mirror_daemons = prev.mirror_daemons.clone();
            }
        }
        // Pools that went away stop being reported.
        let present: Vec<&str> = sample.pools.values().map(|p| p.name.as_str()).collect();
        self.status.keep_pools(&present);
        self.status.up = any_ok;
        (sample, (!errors.is_empty()).then(|| errors.join("; ")))
    }

    /// The hosts and attachments to judge `sample` with: the attributor's
    /// (healthy sources and reverse DNS), or none.
    async fn attribute(&self, sample: &Sample) -> Attribution {
        match &self.attributor {
            Some(a) => a.attribution(sample, now_unix()).await,
            None => Attribution::default(),
        }
    }

    /// Analyses the merged sample with its attribution.
    fn analyse(
        &self,
        sample: Sample,
        attribution: Attribution,
        first_seen: &FirstSeenTimes,
    ) -> Analysed {
        let analysis = attribution.analyse(&sample, &self.config.settings, first_seen);
        Analysed {
            sample: Arc::new(sample),
            analysis: Arc::new(analysis),
            attribution: Arc::new(attribution),
        }
    }

    /// Renders the last analysed sample with the current status.
    fn publish(&self, last_error: Option<String>) -> Published {
        let mut status = self.status.clone();
        if let Some(attributor) = &self.attributor {
            status.sources = attributor.health();
        }
        let body = metrics::render(
            self.last.as_ref().map(|l| &*l.sample),
            self.last.as_ref().map(|l| &*l.analysis),
            &status,
            &self.config.render,
        );
        Published {
            metrics: bytes::Bytes::from(body),
            metrics_gzip: std::sync::OnceLock::new(),
            analysed: self.last.clone(),
            status,
            last_attempt: now_unix(),
            last_error,
        }
    }

    /// Cycles every `--sample.interval` until `shutdown`, publishing after
    /// every attempt. `connect` is retried until it succeeds; the cluster
    /// being down is never fatal here.
    pub async fn run<C, F, Fut>(
        mut self,
        mut conn: Option<Arc<C>>,
        mut connect: F,
        publish: watch::Sender<Arc<Published>>,
        shutdown: watch::Receiver<bool>,
    ) where
        C: Conn,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Arc<C>, Error>>,
    {
        let mut every = Every::new(self.config.interval, shutdown);
        while every.tick().await {
            let Some(published) = every.run(self.attempt(&mut conn, &mut connect)).await else {
                return;
            };
            let _ = publish.send(Arc::new(published));
        }
    }

    /// One attempt of [`Cycle::run`]: connect if not connected, then a cycle.
    async fn attempt<C, F, Fut>(&mut self, conn: &mut Option<Arc<C>>, connect: &mut F) -> Published
    where
        C: Conn,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Arc<C>, Error>>,
    {
        if self.link.should_reconnect() {
            if let Some(old) = conn.take() {
                tracing::warn!(
                    attempts = self.link.failed_in_a_row,
                    "no answer from the cluster for {RECONNECT_AFTER} attempts or more: connecting anew \
                     (ceph.conf, the mon addresses and the key are read again)"
                );
                // librados' shutdown of the old handle can wait for its
                // messengers: not on this thread, which serves the cycle.
                tokio::task::spawn_blocking(move || drop(old));
            }
        }
        let c = match conn {
            Some(c) => c.clone(),
            None => match connect().await {
                Ok(c) => {
                    tracing::info!("connected to the cluster");
                    conn.insert(c).clone()
                }
                Err(e) => {
                    self.link.failed(&e, "cannot reach the cluster");
                    return self.record_unreachable(&e);
                }
            },
        };
        let t0 = Instant::now();
        let ops_before = c.ops_sent();
        let published = self.step(&c).await;
        let images = published
            .analysed
            .as_ref()
            .map_or(0, |a| a.sample.images().count());
        tracing::debug!(
            seconds = t0.elapsed().as_secs_f64(),
            ops = c.ops_sent() - ops_before,
            images,
            "sample done"
        );
        published
    }
}

#[cfg(test)]
mod tests {
    //! The cycle against the in-memory cluster of `crate::ceph::fake`.

    use super::*;
    use crate::analysis::{OrphanReason, Verdict};
    use crate::ceph::fake::{self, FakeCluster, FakeImage, Fault, Method};
    use crate::model::ImageKey;

    fn config(pools: Option<&[&str]>) -> CycleConfig {
        CycleConfig {
            sample: SampleConfig {
                pools: pools.map(|p| p.iter().map(|s| s.to_string()).collect()),
                max_inflight: 4,
                full_every: 60,
            },
            settings: Settings::default(),
            render: RenderOptions::default(),
            interval: Duration::from_secs(60),
        }
    }

    /// Two pools: `volumes` with a deleted-but-open volume, `images` with
    /// one image.
    fn cluster() -> Arc<FakeCluster> {
        FakeCluster::builder()
            .rbd_pool(1, "volumes")
            .image(
                1,
                "",
                FakeImage::new("v1", "volume-1.deleted").watcher("client.7", "10.0.0.7:0/1", 5),
            )
            .rbd_pool(2, "images")
            .image(2, "", FakeImage::new("g1", "golden"))
            .build()
    }

    fn key(pool_id: i64, image_id: &str) -> ImageKey {
        ImageKey {
            pool_id,
            namespace: String::new(),
            image_id: image_id.into(),
        }
    }

    impl Published {
        fn analysis_images(&self) -> &BTreeMap<ImageKey, crate::analysis::ImageFindings> {
            &self.analysed.as_ref().unwrap().analysis.notable
        }
    }

    fn errors(p: &Published, pool: &str, kind: &str) -> u64 {
        p.status
            .sample_errors_total
            .get(&(pool.to_string(), kind.to_string()))
            .copied()
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn a_failed_pool_keeps_its_last_good_data_and_is_counted() {
        let c = cluster();
        let mut cycle = Cycle::new(config(None), None);
        let first = cycle.step(&c).await;
        let first_success = first.status.last_success_timestamp_seconds["volumes"];
        assert!(first.last_error.is_none());

        c.change(|b| b.fault(Fault::on(Method::Directory, fake::timeout).pool(1)));
        let second = cycle.step(&c).await;
        assert!(second.status.up, "the other pool was sampled");
        assert_eq!(errors(&second, "volumes", "timeout"), 1);
        assert!(
            second
                .last_error
                .as_deref()
                .unwrap()
                .starts_with("volumes: ")
        );
        assert_eq!(
            second.status.last_success_timestamp_seconds["volumes"], first_success,
            "no new success for the failed pool"
        );
        let a = second.analysed.as_ref().unwrap();
        let findings = &a.analysis.findings(&key(1, "v1"));
        assert_eq!(
            findings.watchers[0].verdict,
            Verdict::Orphan(OrphanReason::ImageDeleted),
            "the failed pool's last verdicts are still served"
        );
        assert!(
            std::str::from_utf8(&second.metrics)
                .unwrap()
                .contains("ceph_rbd_image_orphaned_watchers{image=\"volume-1.deleted\"")
        );
    }

    /// `volumes` with a held image (watcher and its exclusive lock) and a
    /// parent image with a protected snapshot that has a v2 child.
    fn held_cluster() -> Arc<FakeCluster> {
        let mut base = crate::model::Snapshot {
            id: 3,
            name: "base".into(),
            namespace: crate::model::SnapshotNamespace::User,
            protected: true,
            size: 1 << 30,
            v2_children: Vec::new(),
        };
        base.v2_children.push(crate::model::ChildRef {
            pool_id: 1,
            namespace: String::new(),
            image_id: "h".into(),
        });
        FakeCluster::builder()
            .rbd_pool(1, "volumes")
            .image(
                1,
                "",
                FakeImage::new("h", "held")
                    .clone_of(1, "", "p", 3)
                    .watcher("client.7", "10.0.0.7:0/1", 5)
                    .exclusive_lock("client.7", "10.0.0.7:0/1", 5),
            )
            .image(1, "", FakeImage::new("p", "parent").snapshot_with(base))
            .build()
    }

    fn image<'a>(p: &'a Published, id: &str) -> Option<&'a crate::model::Image> {
        p.analysed.as_ref().unwrap().sample.image(&key(1, id))
    }

    #[tokio::test]
    async fn a_failed_watcher_read_keeps_the_last_watchers_and_locks_and_is_counted() {
        let c = held_cluster();
        let mut cycle = Cycle::new(config(None), None);
        let first = cycle.step(&c).await;
        let before = image(&first, "h").unwrap().clone();
        assert_eq!(before.watchers.len(), 1);

        // Both the light read (the header did not change) and a full one.
        c.change(|b| {
            b.fault(Fault::on(Method::Header, fake::failed_step("list_watchers", -5)).image("h"))
                .fault(
                    Fault::on(Method::Watchers, fake::failed_step("list_watchers", -5)).image("h"),
                )
        });
        let second = cycle.step(&c).await;
        assert_eq!(errors(&second, "volumes", "partial_read"), 1);
        assert!(second.last_error.is_none(), "the pool itself was sampled");
        assert_eq!(image(&second, "h"), Some(&before), "last facts kept");
        let findings = &second.analysis_images()[&key(1, "h")];
        assert_eq!(findings.watchers.len(), 1);
        assert_eq!(findings.stale_locks().count(), 0, "the lock is not stale");
        let text = std::str::from_utf8(&second.metrics).unwrap();
        assert!(text.contains("ceph_rbd_pool_watchers{namespace=\"\",pool=\"volumes\"} 1"));
        assert!(text.contains("ceph_rbd_pool_stale_locks{namespace=\"\",pool=\"volumes\"} 0"));

        // Still failing: still kept (from the merged sample), counted again.
        let third = cycle.step(&c).await;
        assert_eq!(errors(&third, "volumes", "partial_read"), 2);
        assert_eq!(image(&third, "h"), Some(&before));

        // Really gone: not carried over.
        c.change(|b| b.clear_faults().remove_image(1, "", "h"));
        let fourth = cycle.step(&c).await;
        assert!(image(&fourth, "h").is_none());
    }

    #[tokio::test]
    async fn a_failed_snapshot_read_keeps_the_last_snapshots_and_is_counted() {
        let c = held_cluster();
        // Snapshots are read with a full header read: every sample here.
        let mut every_header_in_full = config(None);
        every_header_in_full.sample.full_every = 1;
        let mut cycle = Cycle::new(every_header_in_full, None);
        let first = cycle.step(&c).await;
        let before = image(&first, "p").unwrap().clone();
        assert!(before.snapshots[0].protected);

        c.change(|b| {
            b.fault(Fault::on(Method::Snapshots, fake::failed_step("children_list", -5)).image("p"))
        });
        let second = cycle.step(&c).await;
        assert_eq!(errors(&second, "volumes", "partial_read"), 1);
        assert_eq!(image(&second, "p"), Some(&before));
        let text = std::str::from_utf8(&second.metrics).unwrap();
        assert!(
            text.contains(
                "ceph_rbd_snapshot_children{image=\"parent\",image_id=\"p\",namespace=\"\",pool=\"volumes\",snapshot=\"base\"} 1"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_panicking_pool_task_keeps_the_last_good_data_and_is_counted() {
        let c = cluster();
        let mut cycle = Cycle::new(config(None), None);
        let first = cycle.step(&c).await;
        let first_success = first.status.last_success_timestamp_seconds["volumes"];

        c.change(|b| b.fault(Fault::on(Method::Directory, fake::panic).pool(1)));
        let second = cycle.step(&c).await;
        assert!(second.status.up);
        assert_eq!(errors(&second, "volumes", "panic"), 1);
        assert_eq!(
            second.status.last_success_timestamp_seconds["volumes"],
            first_success
        );
        assert!(
            second
                .status
                .sample_duration_seconds
                .contains_key("volumes")
        );
        let findings = &second.analysis_images()[&key(1, "v1")];
        assert_eq!(
            findings.watchers[0].verdict,
            Verdict::Orphan(OrphanReason::ImageDeleted)
        );
    }

    #[tokio::test]
    async fn format1_images_are_counted_per_pool_and_namespace() {
        let c = cluster();
        c.change(|b| {
            b.format1_image(1, "", "old-a")
                .format1_image(1, "", "old-b")
        });
        let mut cycle = Cycle::new(config(None), None);
        let p = cycle.step(&c).await;
        let text = std::str::from_utf8(&p.metrics).unwrap();
        assert!(
            text.contains("ceph_rbd_pool_format1_images{namespace=\"\",pool=\"volumes\"} 2"),
            "{text}"
        );
        assert!(text.contains("ceph_rbd_pool_format1_images{namespace=\"\",pool=\"images\"} 0"));
    }

    #[tokio::test]
    async fn every_pool_failing_is_down_and_an_unreachable_cluster_counts_without_a_pool() {
        let c = cluster();
        let mut cycle = Cycle::new(config(None), None);
        c.change(|b| b.fault(Fault::on(Method::Directory, fake::timeout)));
        let p = cycle.step(&c).await;
        assert!(!p.status.up);
        assert_eq!(
            errors(&p, "volumes", "timeout") + errors(&p, "images", "timeout"),
            2
        );
        assert!(
            std::str::from_utf8(&p.metrics)
                .unwrap()
                .contains("ceph_rbd_exporter_up 0")
        );

        c.change(|b| {
            b.clear_faults()
                .fault(Fault::on(Method::Pools, fake::timeout))
        });
        let p = cycle.step(&c).await;
        assert!(!p.status.up);
        assert_eq!(errors(&p, "", "timeout"), 1);

        c.change(|b| b.clear_faults());
        let p = cycle.step(&c).await;
        assert!(p.status.up, "recovers by itself");
    }

    #[tokio::test]
    async fn first_seen_times_survive_cycles_and_unknown_pools_are_counted() {
        let c = cluster();
        let mut cycle = Cycle::new(config(Some(&["volumes", "nope"])), None);
        let first = cycle.step(&c).await;
        let seen = |p: &Published| {
            p.analysed
                .as_ref()
                .unwrap()
                .analysis
                .findings(&key(1, "v1"))
                .watchers[0]
                .first_seen
        };
        let t0 = seen(&first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = cycle.step(&c).await;
        assert_eq!(seen(&second), t0);
        assert_eq!(errors(&second, "nope", "unknown_pool"), 2);
        assert!(
            !second
                .analysed
                .as_ref()
                .unwrap()
                .sample
                .pools
                .contains_key(&2),
            "--pools leaves images out"
        );
    }

    #[tokio::test]
    async fn first_seen_times_survive_a_restart_with_a_state_file() {
        let dir = std::env::temp_dir().join(format!(
            "ceph-rbd-exporter-unit-{}-cycle-state",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let c = cluster();
        let seen = |p: &Published| {
            p.analysed
                .as_ref()
                .unwrap()
                .analysis
                .findings(&key(1, "v1"))
                .watchers[0]
                .first_seen
        };
        let restarted =
            || Cycle::new(config(None), None).with_state_file(StateFile::open(&dir).unwrap());
        let t0 = seen(&restarted().step(&c).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(seen(&restarted().step(&c).await), t0, "restored");
        let without = seen(&Cycle::new(config(None), None).step(&c).await);
        assert!(without > t0, "without the file the time starts again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_pool_that_goes_away_stops_being_reported() {
        let c = cluster();
        let mut cycle = Cycle::new(config(None), None);
        let p = cycle.step(&c).await;
        assert!(p.status.sample_duration_seconds.contains_key("images"));
        c.change(|b| b.remove_pool(2));
        let p = cycle.step(&c).await;
        assert!(!p.status.sample_duration_seconds.contains_key("images"));
        assert!(
            !p.status
                .last_success_timestamp_seconds
                .contains_key("images")
        );
    }

    #[tokio::test]
    async fn run_publishes_every_attempt_and_retries_connecting() {
        let c = cluster();
        let cycle = Cycle::new(
            CycleConfig {
                interval: Duration::from_millis(50),
                ..config(None)
            },
            None,
        );
        let (publish, mut published) = watch::channel(Arc::new(cycle.initial()));
        let (stop, stopped) = watch::channel(false);
        let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = attempts.clone();
        let connect = move || {
            let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let c = c.clone();
            async move {
                if n == 0 {
                    Err(Error::Connect {
                        user: "u".into(),
                        conf: "c".into(),
                        message: "down".into(),
                    })
                } else {
                    Ok(c)
                }
            }
        };
        let task = tokio::spawn(cycle.run(None, connect, publish, stopped));
        published.changed().await.unwrap();
        assert_eq!(errors(&published.borrow_and_update(), "", "connect"), 1);
        published.changed().await.unwrap();
        assert!(
            published.borrow_and_update().status.up,
            "connected on retry"
        );
        stop.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    /// A cluster whose mons stop answering (pool listing times out) is
    /// connected to anew after [`RECONNECT_AFTER`] attempts; a key the
    /// cluster refuses then is counted as `auth`, and the exporter is back
    /// as soon as a connect works again (the key was read again).
    #[tokio::test]
    async fn reconnects_after_the_cluster_stops_answering_and_counts_auth() {
        use crate::ceph::fake::Fault;
        let c = cluster();
        let mut cycle = Cycle::new(config(None), None);
        let connects = std::sync::atomic::AtomicU32::new(0);
        let refuse = std::sync::atomic::AtomicBool::new(false);
        let mut connect = || {
            connects.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let result = if refuse.load(std::sync::atomic::Ordering::SeqCst) {
                Err(Error::Auth {
                    user: "u".into(),
                    hint: "h".into(),
                    message: "error -13".into(),
                })
            } else {
                Ok(c.clone())
            };
            async move { result }
        };
        let mut conn = None;
        assert!(cycle.attempt(&mut conn, &mut connect).await.status.up);
        c.change(|b| b.fault(Fault::on(Method::Pools, fake::timeout)));
        for _ in 0..RECONNECT_AFTER {
            let p = cycle.attempt(&mut conn, &mut connect).await;
            assert!(!p.status.up);
        }
        assert_eq!(
            connects.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "no reconnect yet"
        );
        // The key was removed: the new connection is refused.
        refuse.store(true, std::sync::atomic::Ordering::SeqCst);
        c.change(|b| b.clear_faults());
        let p = cycle.attempt(&mut conn, &mut connect).await;
        assert_eq!(connects.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(!p.status.up);
        assert_eq!(errors(&p, "", "auth"), 1);
        assert_eq!(errors(&p, "", "timeout"), RECONNECT_AFTER as u64);
        let p = cycle.attempt(&mut conn, &mut connect).await;
        assert_eq!(errors(&p, "", "auth"), 2);
        // The key is valid again: connected on the next attempt, no restart.
        refuse.store(false, std::sync::atomic::Ordering::SeqCst);
        let p = cycle.attempt(&mut conn, &mut connect).await;
        assert!(p.status.up);
        assert_eq!(connects.load(std::sync::atomic::Ordering::SeqCst), 4);
        // A working connection is kept.
        cycle.attempt(&mut conn, &mut connect).await;
        assert_eq!(connects.load(std::sync::atomic::Ordering::SeqCst), 4);
    }

    #[test]
    fn a_refused_key_or_caps_is_labelled_auth() {
        let denied = Error::MonCommand {
            command: "osd pool ls".into(),
            code: -crate::error::libc_errno::EACCES,
            message: "access denied".into(),
        };
        assert_eq!(denied.metric_label(), "auth");
        let auth = Error::Auth {
            user: "rbd-exporter".into(),
            hint: "wrong key or unknown user?".into(),
            message: "error -13".into(),
        };
        assert_eq!(auth.metric_label(), "auth");
        assert!(auth.is_fatal_at_start());
        assert!(
            auth.to_string().starts_with(
                "the cluster rejected client.rbd-exporter (wrong key or unknown user?)"
            )
        );
    }
}
