//! Samples the cluster: one pass over every selected pool and namespace with
//! bounded concurrency, and the periodic loop that publishes the result.

use crate::analysis::{self, Analysis, FirstSeen, Settings};
use crate::attribution::{Attribution, Attributor};
use crate::ceph::{Conn, ImageHeader, PoolInfo};
use crate::error::Error;
use crate::metrics::{self, ExporterStatus, RenderOptions};
use crate::model::{Image, Location, NamespaceSample, PoolSample, Sample, SampleError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// What to sample and how hard.
#[derive(Debug, Clone)]
pub struct SampleConfig {
    /// Only these pools (by name); `None` means every pool with the `rbd`
    /// application enabled.
    pub pools: Option<Vec<String>>,
    /// Most RADOS operations in flight at once, across all pools.
    pub max_inflight: usize,
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn sample_error(e: &Error) -> SampleError {
    SampleError {
        kind: e.metric_label().to_string(),
        message: e.to_string(),
    }
}

/// Pools chosen for sampling, plus the names in `--pools` that do not exist.
pub fn select_pools(all: &[PoolInfo], wanted: Option<&[String]>) -> (Vec<PoolInfo>, Vec<String>) {
    match wanted {
        None => (
            all.iter()
                .filter(|p| p.applications.iter().any(|a| a == "rbd"))
                .cloned()
                .collect(),
            Vec::new(),
        ),
        Some(names) => {
            let chosen = all
                .iter()
                .filter(|p| names.contains(&p.name))
                .cloned()
                .collect();
            let unknown = names
                .iter()
                .filter(|n| !all.iter().any(|p| &p.name == *n))
                .cloned()
                .collect();
            (chosen, unknown)
        }
    }
}

/// The bound on RADOS operations in flight, shared by every pool.
#[derive(Clone)]
struct Limit {
    permits: Arc<Semaphore>,
}

/// Takes one complete sample. Fails only when the pool list cannot be read;
/// a pool that fails is recorded in its [`PoolSample`].
pub async fn sample_once<C: Conn>(
    conn: &Arc<C>,
    config: &SampleConfig,
) -> Result<(Sample, Vec<String>), Error> {
    let started_at = now_unix();
    let all = conn.pools().await?;
    let (selected, unknown) = select_pools(&all, config.pools.as_deref());
    let size = config.max_inflight.clamp(1, Semaphore::MAX_PERMITS);
    let limit = Limit {
        permits: Arc::new(Semaphore::new(size)),
    };
    let mut tasks = JoinSet::new();
    for pool in selected {
        let conn = conn.clone();
        let limit = limit.clone();
        tasks.spawn(async move { sample_pool(conn, pool, limit).await });
    }
    let mut sample = Sample {
        started_at,
        pool_names: all.iter().map(|p| (p.id, p.name.clone())).collect(),
        ..Default::default()
    };
    while let Some(joined) = tasks.join_next().await {
        // A panicking pool task is a bug; it must not take the exporter down.
        if let Ok(pool) = joined {
            sample.pools.insert(pool.pool_id, pool);
        }
    }
    fetch_ancestors(conn, &mut sample).await;
    sample.finished_at = now_unix();
    Ok((sample, unknown))
}

/// Rounds of ancestor look-ups; deeper chains than this stay incomplete.
const MAX_ANCESTOR_ROUNDS: usize = 32;

/// Follows clone chains out of the sampled pools, one generation per round,
/// so depth and flatten reasons are right when `--pools` leaves a parent's
/// pool out. A parent that cannot be read stays missing (its chain is then
/// reported incomplete); it never fails the sample.
async fn fetch_ancestors<C: Conn>(conn: &Arc<C>, sample: &mut Sample) {
    let mut tried = std::collections::HashSet::new();
    for _ in 0..MAX_ANCESTOR_ROUNDS {
        let missing: Vec<_> = sample
            .missing_parents()
            .into_iter()
            .filter(|k| tried.insert(k.clone()))
            .collect();
        if missing.is_empty() {
            return;
        }
        for key in missing {
            let loc = Location {
                pool_id: key.pool_id,
                namespace: key.namespace.clone(),
            };
            let image = async {
                let Some((name, in_trash)) = conn.image_name(&loc, &key.image_id).await? else {
                    return Ok(None);
                };
                read_image(&**conn, &loc, &key.image_id, name, in_trash).await
            };
            match image.await {
                Ok(Some(image)) => {
                    sample.ancestors.insert(key, image);
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, image = ?key, "cannot read a clone's parent"),
            }
        }
    }
}

async fn sample_pool<C: Conn>(conn: Arc<C>, pool: PoolInfo, limit: Limit) -> PoolSample {
    let t0 = Instant::now();
    let mut skipped = Vec::new();
    let outcome = sample_pool_namespaces(&conn, &pool, &limit, &mut skipped).await;
    PoolSample {
        pool_id: pool.id,
        name: pool.name,
        duration_seconds: t0.elapsed().as_secs_f64(),
        outcome: outcome.map_err(|e| sample_error(&e)),
        skipped,
    }
}

async fn sample_pool_namespaces<C: Conn>(
    conn: &Arc<C>,
    pool: &PoolInfo,
    limit: &Limit,
    skipped: &mut Vec<SampleError>,
) -> Result<Vec<NamespaceSample>, Error> {
    let mut names = vec![String::new()];
    {
        let _permit = limit
            .permits
            .acquire()
            .await
            .expect("semaphore never closes");
        names.extend(conn.namespaces(pool).await?);
    }
    let mut out = Vec::with_capacity(names.len());
    for namespace in names {
        let loc = Location {
            pool_id: pool.id,
            namespace,
        };
        out.push(sample_namespace(conn, loc, limit, skipped).await?);
    }
    Ok(out)
}

async fn sample_namespace<C: Conn>(
    conn: &Arc<C>,
    loc: Location,
    limit: &Limit,
    skipped: &mut Vec<SampleError>,
) -> Result<NamespaceSample, Error> {
    // The four per-namespace objects, read concurrently, each read holding
    // its own permit (with --ceph.max-inflight below 4 they take turns).
    let permit = || async {
        limit
            .permits
            .acquire()
            .await
            .expect("semaphore never closes")
    };
    let (directory, trash, v1_children, tasks) = tokio::try_join!(
        async {
            let _p = permit().await;
            conn.directory(&loc).await
        },
        async {
            let _p = permit().await;
            conn.trash(&loc).await
        },
        async {
            let _p = permit().await;
            conn.v1_children(&loc).await
        },
        async {
            let _p = permit().await;
            conn.tasks(&loc).await
        },
    )?;
    let mut ns = NamespaceSample {
        namespace: loc.namespace.clone(),
        trash: trash.into_iter().map(|t| (t.id.clone(), t)).collect(),
        v1_children,
        tasks,
        ..Default::default()
    };
    // Trashed images still have headers; the trash entry wins if an image
    // moves during the sample, so no image is listed twice.
    let mut wanted: BTreeMap<String, (String, bool)> = directory
        .into_iter()
        .map(|(id, name)| (id, (name, false)))
        .collect();
    for t in ns.trash.values() {
        wanted.insert(t.id.clone(), (t.name.clone(), true));
    }

    // One task per image, at most `limit` in flight. The first hard error
    // (a timeout, say) stops the namespace: no further image is started
    // instead of letting every remaining image time out in turn. Reads
    // already sent are waited for, not abandoned: an abandoned read would
    // give its permit back while still in flight, and the next namespace
    // could then exceed --ceph.max-inflight against a struggling cluster.
    // Each is bounded by the op timeout, and they were sent before the
    // error came back, so this adds at most one op timeout.
    let mut reads = JoinSet::new();
    let mut first_error: Option<Error> = None;
    let mut absorb =
        |joined: Result<(String, Result<Option<Image>, Error>), tokio::task::JoinError>,
         first_error: &mut Option<Error>| {
            let Ok((id, result)) = joined else { return };
            match result {
                Ok(Some(image)) => {
                    ns.images.insert(id, image);
                }
                // Removed during the sample.
                Ok(None) => {}
                Err(e @ Error::Decode { .. }) => skipped.push(sample_error(&e)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        };
    for (id, (name, in_trash)) in wanted {
        while let Some(joined) = reads.try_join_next() {
            absorb(joined, &mut first_error);
        }
        if first_error.is_some() {
            break;
        }
        let permit = limit
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closes");
        let conn = conn.clone();
        let loc = loc.clone();
        reads.spawn(async move {
            let result = read_image(&*conn, &loc, &id, name, in_trash).await;
            drop(permit);
            (id, result)
        });
    }
    while let Some(joined) = reads.join_next().await {
        absorb(joined, &mut first_error);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(ns),
    }
}

/// Header read, then (only for images with snapshots) the snapshot read.
async fn read_image<C: Conn>(
    conn: &C,
    loc: &Location,
    id: &str,
    name: String,
    in_trash: bool,
) -> Result<Option<Image>, Error> {
    let Some(header) = conn.header(loc, id).await? else {
        return Ok(None);
    };
    let snapshots = if header.snap_ids.is_empty() {
        Vec::new()
    } else {
        match conn.snapshots(loc, id, &header.snap_ids).await? {
            Some(s) => s,
            None => return Ok(None),
        }
    };
    let ImageHeader {
        size,
        order,
        features,
        flags,
        op_features,
        parent,
        watchers,
        locks,
        ..
    } = header;
    Ok(Some(Image {
        id: id.to_string(),
        name,
        in_trash,
        size,
        order,
        features,
        flags,
        op_features,
        parent,
        watchers,
        locks,
        snapshots,
    }))
}

/// What /metrics and / serve: rebuilt after every sample, swapped atomically.
#[derive(Debug, Default)]
pub struct Published {
    /// Rendered exposition text.
    pub metrics: bytes::Bytes,
    /// The sample behind it (pools that failed keep their last good data).
    pub sample: Option<Arc<Sample>>,
    /// Its analysis.
    pub analysis: Option<Arc<Analysis>>,
    /// Exporter status at the time of rendering.
    pub status: ExporterStatus,
    /// Unix time of the last sample attempt.
    pub last_attempt: f64,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

/// The sampling loop's state across samples.
pub struct Sampler {
    /// What to sample.
    pub config: SampleConfig,
    /// Analysis settings.
    pub settings: Settings,
    /// Rendering options.
    pub render: RenderOptions,
    status: ExporterStatus,
    first_seen: FirstSeen,
    /// First-seen time of every watcher in `last`.
    first_seen_times: std::collections::HashMap<analysis::WatcherKey, f64>,
    last: Option<Arc<Sample>>,
    /// Hosts, inventory and attachment sources; `None` without any.
    attributor: Option<Arc<Attributor>>,
    /// What the last analysis used.
    attribution: Arc<Attribution>,
}

impl Sampler {
    /// A sampler with nothing sampled yet.
    pub fn new(config: SampleConfig, settings: Settings, render: RenderOptions) -> Self {
        Sampler {
            config,
            settings,
            render,
            status: ExporterStatus::default(),
            first_seen: FirstSeen::default(),
            first_seen_times: Default::default(),
            last: None,
            attributor: None,
            attribution: Arc::new(Attribution::default()),
        }
    }

    /// Attributes watchers to hosts and judges them with `attributor`.
    pub fn with_attributor(mut self, attributor: Arc<Attributor>) -> Self {
        self.attributor = Some(attributor);
        self
    }

    /// The attribution the last analysis used.
    pub fn attribution(&self) -> Arc<Attribution> {
        self.attribution.clone()
    }

    /// What to publish before the first sample.
    pub fn initial(&self) -> Published {
        self.publish(None)
    }

    /// Records a failure to reach the cluster at all.
    pub fn record_unreachable(&mut self, e: &Error) -> Published {
        self.status.up = false;
        *self
            .status
            .sample_errors_total
            .entry((String::new(), e.metric_label().to_string()))
            .or_default() += 1;
        self.publish(Some(e.to_string()))
    }

    /// Takes one sample and returns what to publish.
    pub async fn step<C: Conn>(&mut self, conn: &Arc<C>) -> Published {
        match sample_once(conn, &self.config).await {
            Err(e) => {
                tracing::warn!(error = %e, "sample failed: cannot list pools");
                self.record_unreachable(&e)
            }
            Ok((sample, unknown)) => {
                for name in &unknown {
                    tracing::warn!(pool = %name, "pool named in --pools does not exist");
                    *self
                        .status
                        .sample_errors_total
                        .entry((name.clone(), "unknown_pool".into()))
                        .or_default() += 1;
                }
                let error = self.absorb(sample);
                if let (Some(attributor), Some(last)) = (&self.attributor, &self.last) {
                    self.attribution = Arc::new(attributor.attribution(last).await);
                }
                self.publish(error)
            }
        }
    }

    /// Merges a new sample into the published one: failed pools keep their
    /// last good data, and their failure is counted.
    fn absorb(&mut self, mut sample: Sample) -> Option<String> {
        let mut errors = Vec::new();
        let mut any_ok = sample.pools.is_empty();
        for pool in sample.pools.values_mut() {
            self.status
                .sample_duration_seconds
                .insert(pool.name.clone(), pool.duration_seconds);
            for s in &pool.skipped {
                tracing::warn!(pool = %pool.name, error = %s.message, "image skipped");
                *self
                    .status
                    .sample_errors_total
                    .entry((pool.name.clone(), s.kind.clone()))
                    .or_default() += 1;
            }
            match &pool.outcome {
                Ok(_) => {
                    any_ok = true;
                    self.status
                        .last_success_timestamp_seconds
                        .insert(pool.name.clone(), sample.finished_at);
                }
                Err(e) => {
                    tracing::warn!(pool = %pool.name, error = %e.message, "pool sample failed");
                    errors.push(format!("{}: {}", pool.name, e.message));
                    *self
                        .status
                        .sample_errors_total
                        .entry((pool.name.clone(), e.kind.clone()))
                        .or_default() += 1;
                    let previous = self
                        .last
                        .as_ref()
                        .and_then(|l| l.pools.get(&pool.pool_id))
                        .filter(|p| p.outcome.is_ok());
                    if let Some(prev) = previous {
                        pool.outcome = prev.outcome.clone();
                    }
                }
            }
        }
        // Pools that went away stop being reported.
        let present: Vec<String> = sample.pools.values().map(|p| p.name.clone()).collect();
        self.status
            .sample_duration_seconds
            .retain(|k, _| present.contains(k));
        self.status
            .last_success_timestamp_seconds
            .retain(|k, _| present.contains(k));
        self.status.up = any_ok;
        self.first_seen_times = self.first_seen.update(&sample, sample.started_at);
        self.last = Some(Arc::new(sample));
        (!errors.is_empty()).then(|| errors.join("; "))
    }

    fn publish(&self, last_error: Option<String>) -> Published {
        let now = now_unix();
        let mut status = self.status.clone();
        if let Some(attributor) = &self.attributor {
            status.sources = attributor.health();
        }
        let analysis = self
            .last
            .as_ref()
            .map(|s| Arc::new(self.attribution.analyse(s, &self.settings)));
        let body = metrics::render(
            self.last.as_deref(),
            analysis.as_deref(),
            &self.first_seen_times,
            &status,
            &self.render,
        );
        Published {
            metrics: bytes::Bytes::from(body),
            sample: self.last.clone(),
            analysis,
            status,
            last_attempt: now,
            last_error,
        }
    }

    /// Samples forever (until `shutdown`), publishing after every attempt.
    /// `connect` is retried until it succeeds; the cluster being down is
    /// never fatal here.
    pub async fn run<C, F, Fut>(
        mut self,
        interval: Duration,
        mut conn: Option<Arc<C>>,
        mut connect: F,
        publish: watch::Sender<Arc<Published>>,
        mut shutdown: watch::Receiver<bool>,
    ) where
        C: Conn,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Arc<C>, Error>>,
    {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            if conn.is_none() {
                match connect().await {
                    Ok(c) => {
                        tracing::info!("connected to the cluster");
                        conn = Some(c);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot reach the cluster; will retry");
                        let _ = publish.send(Arc::new(self.record_unreachable(&e)));
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_ref() else { continue };
            let t0 = Instant::now();
            let ops_before = c.ops_sent();
            let published = tokio::select! {
                p = self.step(c) => p,
                _ = shutdown.changed() => return,
            };
            let images = published.sample.as_ref().map_or(0, |s| {
                s.namespaces().map(|(_, ns)| ns.images.len()).sum::<usize>()
            });
            tracing::debug!(
                seconds = t0.elapsed().as_secs_f64(),
                ops = c.ops_sent() - ops_before,
                images,
                "sample done"
            );
            let _ = publish.send(Arc::new(published));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(id: i64, name: &str, apps: &[&str]) -> PoolInfo {
        PoolInfo {
            id,
            name: name.into(),
            applications: apps.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn selects_rbd_pools_or_the_named_ones() {
        let all = vec![
            pool(1, "volumes", &["rbd"]),
            pool(2, "rgw-data", &["rgw"]),
            pool(3, "images", &["rbd"]),
        ];
        let (chosen, unknown) = select_pools(&all, None);
        assert_eq!(chosen.iter().map(|p| p.id).collect::<Vec<_>>(), vec![1, 3]);
        assert!(unknown.is_empty());
        let wanted = vec!["rgw-data".to_string(), "nope".to_string()];
        let (chosen, unknown) = select_pools(&all, Some(&wanted));
        assert_eq!(chosen.iter().map(|p| p.id).collect::<Vec<_>>(), vec![2]);
        assert_eq!(unknown, vec!["nope".to_string()]);
    }
}

#[cfg(test)]
mod fake_cluster_tests {
    //! `sample_once` against the in-memory cluster of `ceph::fake`.

    use super::*;
    use crate::ceph::fake::{self, FakeCluster, FakeImage, Fault, Method};
    use crate::model::{ImageKey, PoolId};

    fn config(pools: Option<&[&str]>, max_inflight: usize) -> SampleConfig {
        SampleConfig {
            pools: pools.map(|p| p.iter().map(|s| s.to_string()).collect()),
            max_inflight,
        }
    }

    fn namespace<'a>(s: &'a Sample, pool: PoolId, name: &str) -> &'a NamespaceSample {
        let pool = &s.pools[&pool];
        let nss = pool.outcome.as_ref().expect("pool sampled");
        nss.iter()
            .find(|ns| ns.namespace == name)
            .expect("namespace sampled")
    }

    fn image_ids(ns: &NamespaceSample) -> Vec<&str> {
        ns.images.keys().map(String::as_str).collect()
    }

    fn key(pool_id: PoolId, namespace: &str, image_id: &str) -> ImageKey {
        ImageKey {
            pool_id,
            namespace: namespace.into(),
            image_id: image_id.into(),
        }
    }

    #[tokio::test]
    async fn first_timeout_in_a_namespace_stops_it_and_fails_the_pool() {
        let mut b = FakeCluster::builder()
            .rbd_pool(1, "volumes")
            .image(1, "", FakeImage::new("d1", "default-1"))
            .image(1, "", FakeImage::new("d2", "default-2"))
            .rbd_pool(2, "images")
            .image(2, "", FakeImage::new("g", "golden"));
        for i in 0..6 {
            b = b.image(1, "tenant", FakeImage::new(&format!("t{i}"), "vm"));
        }
        // Only the first header read of the namespace times out: the reads
        // after it would succeed, but must not be started.
        let cluster = b
            .fault(
                Fault::on(Method::Header, fake::timeout)
                    .pool(1)
                    .namespace("tenant")
                    .times(1),
            )
            .build();
        let (sample, unknown) = sample_once(&cluster, &config(None, 1)).await.unwrap();
        assert!(unknown.is_empty());

        let err = sample.pools[&1].outcome.as_ref().unwrap_err();
        assert_eq!(err.kind, "timeout");
        assert!(
            err.message.contains("volumes/tenant/rbd_header.t0"),
            "{err:?}"
        );
        assert!(sample.pools[&1].skipped.is_empty());
        let headers_in = |ns: &str| {
            cluster
                .count_where(|c| c.method == Method::Header && c.namespace.as_deref() == Some(ns))
        };
        // With one read in flight, at most the read already waiting for the
        // permit when the error came back is sent after the failing one.
        let tenant_reads = headers_in("tenant");
        assert!(
            (1..=2).contains(&tenant_reads),
            "{tenant_reads} header reads in a namespace of 6 images"
        );
        // The namespace before it was read in full; the other pool is fine.
        assert_eq!(headers_in(""), 3);
        assert_eq!(image_ids(namespace(&sample, 2, "")), vec!["g"]);
        assert!(sample.finished_at >= sample.started_at);
    }

    #[tokio::test]
    async fn ancestors_in_unsampled_pools_are_followed_across_hops() {
        let cluster = FakeCluster::builder()
            .rbd_pool(1, "images")
            .trashed(
                1,
                "",
                FakeImage::new("g", "golden").protected_snapshot(4, "base"),
            )
            .rbd_pool(2, "templates")
            .image(
                2,
                "gold",
                FakeImage::new("m", "middle")
                    .clone_of(1, "", "g", 4)
                    .protected_snapshot(7, "tpl"),
            )
            .rbd_pool(3, "volumes")
            .image(3, "", FakeImage::new("v", "vm").clone_of(2, "gold", "m", 7))
            // A parent in a pool that is gone stays missing, without error.
            .image(
                3,
                "",
                FakeImage::new("w", "orphan").clone_of(99, "", "x", 1),
            )
            .build();
        let (sample, unknown) = sample_once(&cluster, &config(Some(&["volumes"]), 4))
            .await
            .unwrap();
        assert!(unknown.is_empty());
        assert_eq!(sample.pools.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(image_ids(namespace(&sample, 3, "")), vec!["v", "w"]);

        let middle = &sample.ancestors[&key(2, "gold", "m")];
        assert_eq!((middle.name.as_str(), middle.in_trash), ("middle", false));
        assert_eq!(middle.snapshots.len(), 1);
        let golden = &sample.ancestors[&key(1, "", "g")];
        assert_eq!((golden.name.as_str(), golden.in_trash), ("golden", true));
        assert!(golden.snapshots[0].protected);
        assert_eq!(sample.ancestors.len(), 2);
        assert_eq!(sample.missing_parents(), vec![key(99, "", "x")]);
        // Unsampled pools are only read for those ancestors.
        assert_eq!(cluster.count(Method::ImageName), 3);
        assert_eq!(cluster.count_where(|c| c.method == Method::Directory), 1);
    }

    #[tokio::test]
    async fn undecodable_images_are_skipped_and_counted() {
        let cluster = FakeCluster::builder()
            .rbd_pool(1, "volumes")
            .image(1, "", FakeImage::new("a", "good"))
            .image(1, "", FakeImage::new("b", "bad-header"))
            .image(1, "", FakeImage::new("c", "bad-snaps").snapshot(3, "s"))
            .image(1, "", FakeImage::new("d", "good-too").snapshot(5, "s"))
            .fault(Fault::on(Method::Header, fake::undecodable).image("b"))
            .fault(Fault::on(Method::Snapshots, fake::undecodable).image("c"))
            .build();
        let (sample, _) = sample_once(&cluster, &config(None, 1)).await.unwrap();
        let pool = &sample.pools[&1];
        let ns = namespace(&sample, 1, "");
        assert_eq!(image_ids(ns), vec!["a", "d"]);
        assert_eq!(ns.images["d"].snapshots.len(), 1);
        let mut skipped: Vec<_> = pool.skipped.iter().map(|s| s.message.clone()).collect();
        skipped.sort();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0].contains("rbd_header.b"), "{skipped:?}");
        assert!(skipped[1].contains("rbd_header.c"), "{skipped:?}");
        assert!(pool.skipped.iter().all(|s| s.kind == "decode"));
        // Every image was tried: a decode error does not stop the namespace.
        assert_eq!(cluster.count(Method::Header), 4);
    }

    #[tokio::test]
    async fn an_image_gone_before_its_header_read_is_simply_absent() {
        let cluster = FakeCluster::builder()
            .rbd_pool(1, "volumes")
            .image(1, "", FakeImage::new("a", "kept"))
            .vanishing(1, "", "v", "removed-meanwhile")
            .image(1, "", FakeImage::new("z", "kept-too"))
            .build();
        let (sample, _) = sample_once(&cluster, &config(None, 2)).await.unwrap();
        let pool = &sample.pools[&1];
        assert!(pool.skipped.is_empty());
        assert_eq!(image_ids(namespace(&sample, 1, "")), vec!["a", "z"]);
        assert_eq!(
            cluster
                .count_where(|c| c.method == Method::Header && c.image_id.as_deref() == Some("v")),
            1
        );
        assert_eq!(cluster.count(Method::Snapshots), 0);
    }

    #[tokio::test]
    async fn pool_selection_unknown_names_and_non_rbd_pools() {
        let cluster = FakeCluster::builder()
            .rbd_pool(1, "volumes")
            .pool(2, "rgw-data", &["rgw"])
            .pool(3, "scratch", &[])
            .rbd_pool(4, "images")
            .build();
        let (sample, unknown) = sample_once(&cluster, &config(None, 4)).await.unwrap();
        assert!(unknown.is_empty());
        assert_eq!(sample.pools.keys().copied().collect::<Vec<_>>(), vec![1, 4]);
        assert_eq!(sample.pool_names.len(), 4);
        assert_eq!(
            cluster.count_where(|c| matches!(c.pool_id, Some(2) | Some(3))),
            0,
            "pools without the rbd application are not read"
        );

        let wanted = config(Some(&["rgw-data", "nope", "volumes"]), 4);
        let (sample, unknown) = sample_once(&cluster, &wanted).await.unwrap();
        assert_eq!(unknown, vec!["nope".to_string()]);
        assert_eq!(sample.pools.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert!(sample.pools.values().all(|p| p.outcome.is_ok()));
    }

    #[tokio::test]
    async fn a_failing_pool_list_fails_the_sample() {
        let cluster = FakeCluster::builder()
            .rbd_pool(1, "volumes")
            .image(1, "", FakeImage::new("a", "x"))
            .fault(Fault::on(Method::Pools, fake::timeout))
            .build();
        let err = sample_once(&cluster, &config(None, 4)).await.unwrap_err();
        assert_eq!(err.metric_label(), "timeout");
        assert_eq!(
            cluster.calls().len(),
            1,
            "nothing is read without the pool list"
        );

        cluster.change(|c| {
            c.clear_faults()
                .fault(Fault::on(Method::Pools, |_| Error::Config("no".into())))
        });
        let err = sample_once(&cluster, &config(None, 4)).await.unwrap_err();
        assert_eq!(err.metric_label(), "config");
    }

    #[tokio::test]
    async fn reads_in_flight_stay_within_max_inflight() {
        let mut b = FakeCluster::builder()
            .latency(Duration::from_millis(2))
            .rbd_pool(1, "a")
            .rbd_pool(2, "b");
        for i in 0..12 {
            b = b
                .image(
                    1,
                    "",
                    FakeImage::new(&format!("a{i}"), "x").snapshot(1, "s"),
                )
                .image(2, "ns", FakeImage::new(&format!("b{i}"), "y"));
        }
        let cluster = b.build();
        let (sample, _) = sample_once(&cluster, &config(None, 3)).await.unwrap();
        assert_eq!(namespace(&sample, 1, "").images.len(), 12);
        assert_eq!(namespace(&sample, 2, "ns").images.len(), 12);
        // The pool list is read before any other; then at most 3 at once.
        let peak = cluster.inflight_peak();
        assert!((2..=3).contains(&peak), "peak {peak}");
        assert_eq!(cluster.ops_sent(), cluster.calls().len() as u64);
    }
}
