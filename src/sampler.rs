//! Sample: reads the cluster into a [`Sample`]. One pass over every
//! selected pool and RBD namespace with bounded concurrency, then the clone
//! chains followed out of the sampled pools. Nothing here judges, renders
//! or remembers: the cycle (`crate::cycle`) does that with what this
//! returns.
//!
//! **Incremental sampling.** Given the previous sample
//! ([`sample_since`]), an image it holds is read with one light operation:
//! its header's watchers, asserting the header is still at the version
//! its facts were read at. A watch does not move a RADOS object's version;
//! everything else the exporter reads from the header does (locks, size,
//! features, flags, parent, snapshots, and the clone v2 child lists of
//! the snapshots, which all live in the header's omap and xattrs). Only a
//! header that moved, a new image, and an image due for its periodic full
//! read ([`SampleConfig::full_every`]) are read in full. Names and the
//! trash state come from the directory and trash listings, read every
//! sample.

use crate::ceph::{BadEntry, Conn, HeaderCheck, ImageHeader, PoolInfo};
use crate::clock::now_unix;
use crate::error::Error;
use crate::model::{
    HeaderReads, Image, Location, NamespaceSample, PoolSample, Sample, SampleError, Skipped,
    Watcher,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio::task::{Id, JoinError, JoinSet};

/// What to sample and how hard.
#[derive(Debug, Clone)]
pub struct SampleConfig {
    /// Only these pools (by name); `None` means every pool with the `rbd`
    /// application enabled.
    pub pools: Option<Vec<String>>,
    /// Most RADOS operations in flight at once, across all pools.
    pub max_inflight: usize,
    /// With a previous sample, every image's header is still read in full
    /// at least once every this many samples (spread over the samples by
    /// image id), even when its version did not move: a bound on any drift
    /// of what was read light (`--sample.full-every`). 1 reads every
    /// header in full every time.
    pub full_every: u32,
}

/// Whether `image_id`'s header is due for its periodic full read in
/// sample number `seq`: once every `every` samples, at a phase set by the
/// image id so that the full reads spread evenly over the samples.
pub fn due_for_full_read(image_id: &str, seq: u64, every: u32) -> bool {
    if every <= 1 {
        return true;
    }
    // FNV-1a: stable across runs and releases, unlike std's hasher.
    let phase = image_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    phase.wrapping_add(seq) % u64::from(every) == 0
}

/// The previous sample, for reading only what changed since.
#[derive(Clone)]
struct Previous {
    /// The sample.
    sample: Arc<Sample>,
    /// This sample's number (the periodic full reads' clock).
    seq: u64,
    /// `full_every`.
    full_every: u32,
}

/// Header reads of one sample, counted by the image tasks.
#[derive(Debug, Default)]
struct ReadCounters {
    full: AtomicU64,
    light: AtomicU64,
    changed: AtomicU64,
    snapshots: AtomicU64,
}

impl ReadCounters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn totals(&self) -> HeaderReads {
        HeaderReads {
            full: self.full.load(Ordering::Relaxed),
            light: self.light.load(Ordering::Relaxed),
            changed: self.changed.load(Ordering::Relaxed),
            snapshots: self.snapshots.load(Ordering::Relaxed),
        }
    }
}

fn sample_error(e: &Error) -> SampleError {
    SampleError {
        kind: e.metric_label().to_string(),
        message: e.to_string(),
    }
}

/// What a task that panicked (or was cancelled) leaves: a sample error
/// of kind `panic` (or `cancelled`) saying what `what` was.
fn task_error(e: JoinError, what: &str) -> SampleError {
    if !e.is_panic() {
        return SampleError {
            kind: "cancelled".into(),
            message: format!("{what}: task cancelled"),
        };
    }
    let payload = e.into_panic();
    let reason = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    SampleError {
        kind: "panic".into(),
        message: format!("{what}: task panicked (a bug): {reason}"),
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

/// The bound on RADOS operations in flight, shared by every pool, and
/// what every image read shares.
#[derive(Clone)]
struct Limit {
    permits: Arc<Semaphore>,
    /// The previous sample, when sampling incrementally.
    previous: Option<Previous>,
    /// Header reads so far.
    counters: Arc<ReadCounters>,
}

/// Takes one complete sample, reading every header in full. Fails only
/// when the pool list cannot be read; a pool that fails is recorded in its
/// [`PoolSample`].
pub async fn sample_once<C: Conn>(
    conn: &Arc<C>,
    config: &SampleConfig,
) -> Result<(Sample, Vec<String>), Error> {
    sample(conn, config, None).await
}

/// Takes one sample, reading in full only the headers that changed since
/// `previous` (or are new there, or due for their periodic full read, see
/// [`SampleConfig::full_every`]); `seq` numbers the samples. Gives the
/// same sample as [`sample_once`] would.
pub async fn sample_since<C: Conn>(
    conn: &Arc<C>,
    config: &SampleConfig,
    previous: Arc<Sample>,
    seq: u64,
) -> Result<(Sample, Vec<String>), Error> {
    let previous = Previous {
        sample: previous,
        seq,
        full_every: config.full_every,
    };
    sample(conn, config, Some(previous)).await
}

async fn sample<C: Conn>(
    conn: &Arc<C>,
    config: &SampleConfig,
    previous: Option<Previous>,
) -> Result<(Sample, Vec<String>), Error> {
    let started_at = now_unix();
    let all = conn.pools().await?;
    let (selected, unknown) = select_pools(&all, config.pools.as_deref());
    let size = config.max_inflight.clamp(1, Semaphore::MAX_PERMITS);
    let limit = Limit {
        permits: Arc::new(Semaphore::new(size)),
        previous,
        counters: Arc::default(),
    };
    let t0 = Instant::now();
    let mut tasks = JoinSet::new();
    let mut task_pools = HashMap::new();
    for pool in selected {
        let conn = conn.clone();
        let limit = limit.clone();
        let info = pool.clone();
        let task = tasks.spawn(async move { sample_pool(conn, info, limit).await });
        task_pools.insert(task.id(), pool);
    }
    let mut sample = Sample {
        started_at,
        pool_names: all.iter().map(|p| (p.id, p.name.clone())).collect(),
        ..Default::default()
    };
    while let Some(joined) = tasks.join_next_with_id().await {
        let pool = match joined {
            Ok((_, pool)) => pool,
            // A panicking pool task is a bug; it must not take the exporter
            // down, nor make the pool vanish: it is a failed pool sample.
            Err(e) => {
                let Some(info) = task_pools.remove(&e.id()) else {
                    continue;
                };
                failed_pool(info, task_error(e, "pool sample"), t0)
            }
        };
        sample.pools.insert(pool.pool_id, pool);
    }
    fetch_ancestors(conn, &mut sample, &limit.counters).await;
    sample.reads = limit.counters.totals();
    sample.finished_at = now_unix();
    Ok((sample, unknown))
}

/// Rounds of ancestor look-ups; deeper chains than this stay incomplete.
const MAX_ANCESTOR_ROUNDS: usize = 32;

/// Follows clone chains out of the sampled pools, one generation per round,
/// so depth and flatten reasons are right when `--pools` leaves a parent's
/// pool out. A parent that cannot be read stays missing (its chain is then
/// reported incomplete); it never fails the sample.
async fn fetch_ancestors<C: Conn>(conn: &Arc<C>, sample: &mut Sample, counters: &ReadCounters) {
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
                let wanted = Wanted {
                    name,
                    in_trash,
                    cached: None,
                };
                read_image(&**conn, &loc, &key.image_id, wanted, counters).await
            };
            match image.await {
                Ok(Some(image)) => {
                    sample.ancestors.insert(key, Arc::unwrap_or_clone(image));
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, image = ?key, "cannot read a clone's parent"),
            }
        }
    }
}

/// The sample of a pool whose task failed with `error`.
fn failed_pool(pool: PoolInfo, error: SampleError, since: Instant) -> PoolSample {
    tracing::error!(pool = %pool.name, error = %error.message, "pool sample task failed");
    PoolSample {
        pool_id: pool.id,
        name: pool.name,
        duration_seconds: since.elapsed().as_secs_f64(),
        outcome: Err(error),
        skipped: Vec::new(),
        mirror_daemons: Vec::new(),
    }
}

async fn sample_pool<C: Conn>(conn: Arc<C>, pool: PoolInfo, limit: Limit) -> PoolSample {
    let t0 = Instant::now();
    let mut skipped = Vec::new();
    // The rbd-mirror daemons first: when they cannot be read the pool
    // fails, so the cycle keeps its last good data (daemons included)
    // rather than judging the daemons' watches as anyone's.
    let outcome = async {
        let daemons = mirror_daemons(&conn, &pool, &limit).await?;
        let namespaces = sample_pool_namespaces(&conn, &pool, &limit, &mut skipped).await?;
        Ok::<_, Error>((daemons, namespaces))
    }
    .await;
    let (mirror_daemons, outcome) = match outcome {
        Ok((daemons, namespaces)) => (daemons, Ok(namespaces)),
        Err(e) => (Vec::new(), Err(sample_error(&e))),
    };
    PoolSample {
        pool_id: pool.id,
        name: pool.name,
        duration_seconds: t0.elapsed().as_secs_f64(),
        outcome,
        skipped,
        mirror_daemons,
    }
}

/// The rbd-mirror daemons seen in the pool: the watchers of its
/// `rbd_mirror_leader` (the daemons of this site), then those of its
/// `rbd_mirroring` (the same daemons, and on a primary site the peer
/// connections of the remote sites' daemons), holding one permit.
async fn mirror_daemons<C: Conn>(
    conn: &Arc<C>,
    pool: &PoolInfo,
    limit: &Limit,
) -> Result<Vec<Watcher>, Error> {
    let _permit = limit
        .permits
        .acquire()
        .await
        .expect("semaphore never closes");
    let mut daemons = conn.mirror_daemons(pool).await?;
    for w in conn.mirroring_watchers(pool).await? {
        if !daemons.iter().any(|d| d.address == w.address) {
            daemons.push(w);
        }
    }
    Ok(daemons)
}

async fn sample_pool_namespaces<C: Conn>(
    conn: &Arc<C>,
    pool: &PoolInfo,
    limit: &Limit,
    skipped: &mut Vec<Skipped>,
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
    skipped: &mut Vec<Skipped>,
) -> Result<NamespaceSample, Error> {
    let (mut ns, directory) = namespace_objects(conn, &loc, limit, skipped).await?;
    // Trashed images still have headers; the trash entry wins if an image
    // moves during the sample, so no image is listed twice.
    let mut wanted: BTreeMap<String, (String, bool)> = directory
        .into_iter()
        .map(|(id, name)| (id, (name, false)))
        .collect();
    for t in ns.trash.values() {
        wanted.insert(t.id.clone(), (t.name.clone(), true));
    }
    ns.images = read_images(conn, &loc, limit, wanted, skipped).await?;
    Ok(ns)
}

/// The four per-namespace objects (`rbd_directory`, `rbd_trash`,
/// `rbd_children`, `rbd_task`), read concurrently, each read holding its
/// own permit (with --ceph.max-inflight below 4 they take turns). Gives
/// the namespace without its images, and the directory's (id, name) pairs;
/// entries that do not decode go to `skipped`.
async fn namespace_objects<C: Conn>(
    conn: &Arc<C>,
    loc: &Location,
    limit: &Limit,
    skipped: &mut Vec<Skipped>,
) -> Result<(NamespaceSample, Vec<(String, String)>), Error> {
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
            conn.directory(loc).await
        },
        async {
            let _p = permit().await;
            conn.trash(loc).await
        },
        async {
            let _p = permit().await;
            conn.v1_children(loc).await
        },
        async {
            let _p = permit().await;
            conn.tasks(loc).await
        },
    )?;
    let bad = [directory.images.bad, trash.bad, v1_children.bad, tasks.bad];
    skipped.extend(bad.into_iter().flatten().map(|b| {
        let BadEntry { image_id, error } = b;
        skip(&loc.namespace, image_id, &error)
    }));
    let ns = NamespaceSample {
        namespace: loc.namespace.clone(),
        trash: trash
            .entries
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect(),
        v1_children: v1_children.entries,
        tasks: tasks.entries,
        format1_images: directory.format1,
        ..Default::default()
    };
    Ok((ns, directory.images.entries))
}

/// What `error` left out of namespace `namespace`: the image `image_id`,
/// or an entry naming no image.
fn skip(namespace: &str, image_id: Option<String>, error: &Error) -> Skipped {
    Skipped {
        namespace: namespace.to_string(),
        image_id,
        error: sample_error(error),
    }
}

/// One image read's outcome, as its task returns it.
type ImageRead = (String, Result<Option<Arc<Image>>, Error>);

/// The image reads of one namespace in flight, and what came back.
struct ImageReads<'a> {
    /// The namespace.
    namespace: &'a str,
    /// Reads in flight.
    reads: JoinSet<ImageRead>,
    /// The image each read task is about.
    ids: HashMap<Id, String>,
    /// Images read.
    images: BTreeMap<String, Arc<Image>>,
    /// Images left out, and why.
    skipped: &'a mut Vec<Skipped>,
    /// The first error that stops the namespace.
    first_error: Option<Error>,
}

impl ImageReads<'_> {
    /// Files one finished image read: the image, nothing (removed during
    /// the sample), a skipped image (undecodable, a step of its read failed,
    /// its task panicked), or the namespace's first error.
    fn absorb(&mut self, joined: Result<(Id, ImageRead), JoinError>) {
        let (id, result) = match joined {
            Ok((task, read)) => {
                self.ids.remove(&task);
                read
            }
            Err(e) => {
                let id = self.ids.remove(&e.id());
                let error = task_error(e, &format!("image read of {id:?}"));
                self.skipped.push(Skipped {
                    namespace: self.namespace.to_string(),
                    image_id: id,
                    error,
                });
                return;
            }
        };
        match result {
            Ok(Some(image)) => {
                self.images.insert(id, image);
            }
            Ok(None) => {}
            Err(e @ (Error::Decode { .. } | Error::PartialRead { .. })) => {
                self.skipped.push(skip(self.namespace, Some(id), &e));
            }
            Err(e) => {
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// Reads the `wanted` images (id -> name, in trash), at most `limit` in
/// flight. The first hard error (a timeout, say) stops the namespace: no
/// further image is started instead of letting every remaining image time
/// out in turn. Reads already sent are waited for, not abandoned: an
/// abandoned read would give its permit back while still in flight, and
/// the next namespace could then exceed --ceph.max-inflight against a
/// struggling cluster. Each is bounded by the op timeout, and they were
/// sent before the error came back, so this adds at most one op timeout.
/// An image whose read fails in part, does not decode or panics is
/// skipped, not the namespace.
async fn read_images<C: Conn>(
    conn: &Arc<C>,
    loc: &Location,
    limit: &Limit,
    wanted: BTreeMap<String, (String, bool)>,
    skipped: &mut Vec<Skipped>,
) -> Result<BTreeMap<String, Arc<Image>>, Error> {
    let mut r = ImageReads {
        namespace: &loc.namespace,
        reads: JoinSet::new(),
        ids: HashMap::new(),
        images: BTreeMap::new(),
        skipped,
        first_error: None,
    };
    let previous = limit.previous.as_ref();
    let cached_images =
        previous.and_then(|p| p.sample.namespace_images(loc.pool_id, &loc.namespace));
    for (id, (name, in_trash)) in wanted {
        let cached = previous
            .zip(cached_images)
            .filter(|(p, _)| !due_for_full_read(&id, p.seq, p.full_every))
            .and_then(|(_, images)| images.get(&id))
            .filter(|image| image.header_version != 0)
            .cloned();
        let wanted = Wanted {
            name,
            in_trash,
            cached,
        };
        while let Some(joined) = r.reads.try_join_next_with_id() {
            r.absorb(joined);
        }
        if r.first_error.is_some() {
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
        let image_id = id.clone();
        let counters = limit.counters.clone();
        let task = r.reads.spawn(async move {
            let result = read_image(&*conn, &loc, &id, wanted, &counters).await;
            drop(permit);
            (id, result)
        });
        r.ids.insert(task.id(), image_id);
    }
    while let Some(joined) = r.reads.join_next_with_id().await {
        r.absorb(joined);
    }
    match r.first_error {
        Some(e) => Err(e),
        None => Ok(r.images),
    }
}

/// One image to read: its name and trash state from the listings, and
/// what the previous sample read of it, if it may be read light.
struct Wanted {
    /// Its name.
    name: String,
    /// True when it is in the trash.
    in_trash: bool,
    /// The previous sample's image, when its header is not due for a
    /// full read.
    cached: Option<Arc<Image>>,
}

/// With a cached image, the light read first: the cached facts with the
/// watchers now, if the header has not moved. Otherwise (or when it has
/// moved) the header read, then (only for images with snapshots) the
/// snapshot read.
async fn read_image<C: Conn>(
    conn: &C,
    loc: &Location,
    id: &str,
    wanted: Wanted,
    counters: &ReadCounters,
) -> Result<Option<Arc<Image>>, Error> {
    let Wanted {
        name,
        in_trash,
        cached,
    } = wanted;
    if let Some(cached) = cached {
        ReadCounters::add(&counters.light);
        match conn
            .watchers_if_unchanged(loc, id, cached.header_version)
            .await?
        {
            // Nothing changed: the previous sample's very image.
            HeaderCheck::Unchanged(watchers)
                if cached.watchers == watchers
                    && cached.name == name
                    && cached.in_trash == in_trash =>
            {
                return Ok(Some(cached));
            }
            HeaderCheck::Unchanged(watchers) => {
                let mut image = Image::clone(&cached);
                image.watchers = watchers;
                image.name = name;
                image.in_trash = in_trash;
                return Ok(Some(Arc::new(image)));
            }
            HeaderCheck::Gone => return Ok(None),
            HeaderCheck::Changed => ReadCounters::add(&counters.changed),
        }
    }
    ReadCounters::add(&counters.full);
    let Some(header) = conn.header(loc, id).await? else {
        return Ok(None);
    };
    let snapshots = if header.snap_ids.is_empty() {
        Vec::new()
    } else {
        ReadCounters::add(&counters.snapshots);
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
        version,
        ..
    } = header;
    Ok(Some(Arc::new(Image {
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
        header_version: version,
    })))
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
    use crate::model::{ImageKey, PoolId, QueuedTask};
    use std::time::Duration;

    fn config(pools: Option<&[&str]>, max_inflight: usize) -> SampleConfig {
        SampleConfig {
            pools: pools.map(|p| p.iter().map(|s| s.to_string()).collect()),
            max_inflight,
            full_every: 1,
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
        let mut skipped: Vec<_> = pool
            .skipped
            .iter()
            .map(|s| s.error.message.clone())
            .collect();
        skipped.sort();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0].contains("rbd_header.b"), "{skipped:?}");
        assert!(skipped[1].contains("rbd_header.c"), "{skipped:?}");
        assert!(pool.skipped.iter().all(|s| s.error.kind == "decode"));
        let mut ids: Vec<_> = pool.skipped.iter().map(|s| s.image_id.clone()).collect();
        ids.sort();
        assert_eq!(ids, vec![Some("b".to_string()), Some("c".to_string())]);
        // Every image was tried: a decode error does not stop the namespace.
        assert_eq!(cluster.count(Method::Header), 4);
    }

    #[tokio::test]
    async fn a_failed_step_of_a_header_or_snapshot_read_skips_the_image_and_names_the_step() {
        let cluster = FakeCluster::builder()
            .rbd_pool(1, "volumes")
            .image(1, "", FakeImage::new("a", "good"))
            .image(
                1,
                "",
                FakeImage::new("w", "held").watcher("client.7", "10.0.0.7:0/1", 5),
            )
            .image(
                1,
                "",
                FakeImage::new("s", "parent").protected_snapshot(3, "base"),
            )
            .fault(Fault::on(Method::Header, fake::failed_step("list_watchers", -5)).image("w"))
            .fault(Fault::on(Method::Snapshots, fake::failed_step("children_list", -5)).image("s"))
            .build();
        let (sample, _) = sample_once(&cluster, &config(None, 1)).await.unwrap();
        let pool = &sample.pools[&1];
        assert_eq!(image_ids(namespace(&sample, 1, "")), vec!["a"]);
        let mut skipped = pool.skipped.clone();
        skipped.sort_by(|a, b| a.image_id.cmp(&b.image_id));
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(skipped[0].image_id.as_deref(), Some("s"));
        assert_eq!(skipped[1].image_id.as_deref(), Some("w"));
        assert!(skipped.iter().all(|s| s.error.kind == "partial_read"));
        assert!(skipped.iter().all(|s| s.namespace.is_empty()));
        let m = &skipped[1].error.message;
        assert!(
            m.contains("list_watchers") && m.contains("header read") && m.contains("rbd_header.w"),
            "{m}"
        );
        assert!(skipped[0].error.message.contains("children_list"));
    }

    #[tokio::test]
    async fn an_undecodable_omap_entry_is_skipped_and_counted_not_the_pool() {
        let cluster = FakeCluster::builder()
            .rbd_pool(1, "volumes")
            .image(1, "", FakeImage::new("a", "good"))
            .trashed(1, "", FakeImage::new("t", "old"))
            .task(
                1,
                "",
                QueuedTask {
                    id: "1".into(),
                    action: "flatten".into(),
                    image_id: Some("a".into()),
                    image_name: None,
                },
            )
            .bad_entry(1, "", Method::Directory, "id_bad1")
            .bad_entry(1, "", Method::Trash, "id_bad2")
            .bad_entry(1, "", Method::V1Children, "\u{1}\u{0}junk")
            .bad_entry(1, "ns", Method::Tasks, "task_x")
            .build();
        let (sample, _) = sample_once(&cluster, &config(None, 2)).await.unwrap();
        let pool = &sample.pools[&1];
        let ns = namespace(&sample, 1, "");
        assert_eq!(
            image_ids(ns),
            vec!["a", "t"],
            "the rest of the pool is sampled"
        );
        assert_eq!(ns.tasks.len(), 1);
        assert_eq!(ns.trash.len(), 1);
        assert!(namespace(&sample, 1, "ns").images.is_empty());
        let mut skipped: Vec<_> = pool
            .skipped
            .iter()
            .map(|s| {
                (
                    s.namespace.as_str(),
                    s.image_id.as_deref(),
                    s.error.kind.as_str(),
                )
            })
            .collect();
        skipped.sort();
        assert_eq!(
            skipped,
            vec![
                ("", None, "decode"),
                ("", Some("bad1"), "decode"),
                ("", Some("bad2"), "decode"),
                ("ns", None, "decode"),
            ]
        );
        let messages: Vec<_> = pool.skipped.iter().map(|s| &s.error.message).collect();
        for object in ["rbd_directory", "rbd_trash", "rbd_children", "rbd_task"] {
            assert!(
                messages.iter().any(|m| m.contains(object)),
                "{object}: {messages:?}"
            );
        }
        assert!(messages.iter().any(|m| m.contains("id_bad1")));
    }

    #[tokio::test]
    async fn a_panicking_pool_task_is_a_failed_pool_and_a_panicking_image_read_a_skipped_image() {
        let cluster = FakeCluster::builder()
            .rbd_pool(1, "volumes")
            .image(1, "", FakeImage::new("a", "x"))
            .rbd_pool(2, "images")
            .image(2, "", FakeImage::new("g", "golden"))
            .image(2, "", FakeImage::new("p", "panics"))
            .fault(Fault::on(Method::Directory, fake::panic).pool(1))
            .fault(Fault::on(Method::Header, fake::panic).image("p"))
            .build();
        let (sample, _) = sample_once(&cluster, &config(None, 4)).await.unwrap();
        let err = sample.pools[&1].outcome.as_ref().unwrap_err();
        assert_eq!(err.kind, "panic");
        assert!(err.message.contains("injected panic"), "{err:?}");
        assert_eq!(sample.pools[&1].name, "volumes");
        assert_eq!(image_ids(namespace(&sample, 2, "")), vec!["g"]);
        let skipped = &sample.pools[&2].skipped;
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].image_id.as_deref(), Some("p"));
        assert_eq!(skipped[0].error.kind, "panic");
    }

    #[tokio::test]
    async fn format1_images_are_listed_not_sampled() {
        let cluster = FakeCluster::builder()
            .rbd_pool(1, "volumes")
            .image(1, "", FakeImage::new("a", "new"))
            .format1_image(1, "", "old-1")
            .format1_image(1, "", "old-2")
            .build();
        let (sample, _) = sample_once(&cluster, &config(None, 4)).await.unwrap();
        let ns = namespace(&sample, 1, "");
        assert_eq!(ns.format1_images, vec!["old-1", "old-2"]);
        assert_eq!(image_ids(ns), vec!["a"]);
        assert!(sample.pools[&1].skipped.is_empty());
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
