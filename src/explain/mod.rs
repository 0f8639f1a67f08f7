//! `ceph-rbd-exporter explain`: "why can't I delete this image, and who
//! holds it?" in one screen. It is the shared per-image view
//! ([`crate::view`]) with what stops `rbd rm` and the commands that would
//! fix it on top, from the same sample and analysis the exporter serves.
//! It prints the commands; it never runs them.

mod commands;
mod render;

pub use commands::shell_quote;
pub use render::{human_size, owner_place, render_image, render_orphans};

use crate::analysis::{CloneDepth, FlattenReason, Host, LockFinding, OrphanReason, WatcherFinding};
use crate::attribution::SourceOpinion;
use crate::cycle::Analysed;
use crate::model::{ImageKey, LockKind, Sample, SnapshotNamespace, TrashEntry};
use crate::view::{self, ImageView, ParentLink, image_spec};
use serde::Serialize;
use std::collections::BTreeMap;

/// Everything `explain` says about one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageExplanation {
    /// Pool name.
    pub pool: String,
    /// RBD namespace ("" for the default one).
    pub namespace: String,
    /// Image name (before trashing, for a trashed image).
    pub image: String,
    /// Image id (`rbd_header.<id>`).
    pub id: String,
    /// True when the image is in the trash.
    pub in_trash: bool,
    /// Its `rbd_trash` entry (source, when, deferment, state), when it is
    /// in the trash.
    pub trash: Option<TrashEntry>,
    /// Provisioned size in bytes.
    pub size: u64,
    /// What the attachment sources say about it.
    pub owners: Vec<SourceOpinion>,
    /// Its watchers, each with host and verdict.
    pub watchers: Vec<WatcherExplanation>,
    /// Its locks.
    pub locks: Vec<LockExplanation>,
    /// Its ancestors, nearest first.
    pub parent_chain: Vec<ChainLink>,
    /// Clone depth.
    pub clone_depth: CloneDepth,
    /// Why it should be flattened.
    pub flatten_reasons: Vec<FlattenReason>,
    /// Its snapshots with their children.
    pub snapshots: Vec<SnapshotExplanation>,
    /// What stops `rbd rm` today, in plain words.
    pub blockers: Vec<String>,
    /// The commands that would fix it, in order. Never run by the exporter.
    pub fixes: Vec<Fix>,
}

/// One watcher.
#[derive(Debug, Clone, Serialize)]
pub struct WatcherExplanation {
    /// Client entity.
    pub client: String,
    /// Client address.
    pub address: String,
    /// Watch cookie.
    pub cookie: u64,
    /// The host behind the address, if known.
    pub host: Option<Host>,
    /// Why it is an orphan; `None` when it is not believed to be one.
    pub orphan_reason: Option<OrphanReason>,
    /// Unix time the exporter first saw this watch (the sample's start when
    /// it is new): it has been held since at least then.
    pub first_seen: f64,
}

/// One lock.
#[derive(Debug, Clone, Serialize)]
pub struct LockExplanation {
    /// Exclusive-lock owner or advisory.
    pub kind: LockKind,
    /// Locker entity.
    pub locker: String,
    /// Lock cookie.
    pub cookie: String,
    /// Locker address.
    pub address: String,
    /// The host behind the address, if known.
    pub host: Option<Host>,
    /// True when its holder no longer watches the image.
    pub stale: bool,
}

/// One ancestor.
#[derive(Debug, Clone, Serialize)]
pub struct ChainLink {
    /// Pool name.
    pub pool: String,
    /// RBD namespace.
    pub namespace: String,
    /// Image name, if it was sampled.
    pub image: Option<String>,
    /// Image id.
    pub image_id: String,
    /// Snapshot name, if known.
    pub snapshot: Option<String>,
    /// True when the image is in the trash.
    pub image_trashed: bool,
    /// True when the snapshot is in the trash namespace.
    pub snapshot_trashed: bool,
}

/// One snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotExplanation {
    /// Snapshot name.
    pub name: String,
    /// Snapshot id.
    pub id: u64,
    /// True when in the trash namespace.
    pub trashed: bool,
    /// True when protected.
    pub protected: bool,
    /// Children (v1 and v2), by pool name, as image specs.
    pub children: BTreeMap<String, Vec<String>>,
}

/// One step of the fix.
#[derive(Debug, Clone, Serialize)]
pub struct Fix {
    /// Why this step.
    pub why: String,
    /// The commands, in order. Lines starting with `#` say where to run
    /// them.
    pub commands: Vec<String>,
}

/// Every orphaned watcher and stale lock in the sample.
#[derive(Debug, Clone, Serialize)]
pub struct OrphanListing {
    /// Orphaned watchers.
    pub orphaned_watchers: Vec<OrphanEntry>,
    /// Stale locks.
    pub stale_locks: Vec<StaleLockEntry>,
}

/// Which image an entry of the orphan listing is about, field by field
/// (for links).
#[derive(Debug, Clone, Serialize)]
pub struct ImageRef {
    /// Pool name.
    pub pool: String,
    /// RBD namespace ("" for the default one).
    pub namespace: String,
    /// Image name (before trashing, for a trashed image).
    pub name: String,
    /// Image id.
    pub id: String,
    /// True when the image is in the trash.
    pub in_trash: bool,
}

/// One orphaned watcher.
#[derive(Debug, Clone, Serialize)]
pub struct OrphanEntry {
    /// Image spec (`pool[/namespace]/image`).
    pub image: String,
    /// The same image, field by field.
    pub image_ref: ImageRef,
    /// The watcher.
    pub watcher: WatcherExplanation,
    /// The commands that would fix it.
    pub fix: Fix,
}

/// One stale lock.
#[derive(Debug, Clone, Serialize)]
pub struct StaleLockEntry {
    /// Image spec.
    pub image: String,
    /// The same image, field by field.
    pub image_ref: ImageRef,
    /// The lock.
    pub lock: LockExplanation,
    /// The command that would fix it.
    pub fix: Fix,
}

impl WatcherExplanation {
    fn new(w: &WatcherFinding) -> WatcherExplanation {
        WatcherExplanation {
            client: w.watcher.client.clone(),
            address: w.watcher.address.clone(),
            cookie: w.watcher.cookie,
            host: w.host.clone(),
            orphan_reason: w.orphan_reason(),
            first_seen: w.first_seen,
        }
    }
}

impl LockExplanation {
    fn new(l: &LockFinding) -> LockExplanation {
        LockExplanation {
            kind: l.lock.kind,
            locker: l.lock.locker.clone(),
            cookie: l.lock.cookie.clone(),
            address: l.lock.address.clone(),
            host: l.host.clone(),
            stale: l.stale,
        }
    }
}

impl ChainLink {
    /// `pool[/namespace]/image@snapshot`, with `<id ID>` for an image that
    /// was not sampled and `?` for a snapshot that was not found.
    pub fn spec(&self) -> String {
        let name = self
            .image
            .clone()
            .unwrap_or_else(|| format!("<id {}>", self.image_id));
        format!(
            "{}@{}",
            image_spec(&self.pool, &self.namespace, &name),
            self.snapshot.as_deref().unwrap_or("?")
        )
    }

    fn new(link: &ParentLink<'_>) -> ChainLink {
        ChainLink {
            pool: link.pool.clone(),
            namespace: link.parent.namespace.clone(),
            image: link.image_name(),
            image_id: link.parent.image_id.clone(),
            snapshot: link.snapshot.map(|s| match &s.namespace {
                SnapshotNamespace::Trash { original_name } => original_name.clone(),
                _ => s.name.clone(),
            }),
            image_trashed: link.image_trashed(),
            snapshot_trashed: link.snapshot_trashed(),
        }
    }
}

/// Why an image could not be looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotFound {
    /// The sample was read and has no such pool or image.
    Missing(String),
    /// The pool has no good sample yet (its reads failed), so nothing can
    /// be said about its images: a failed read is not an absence.
    Unread(String),
}

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotFound::Missing(m) | NotFound::Unread(m) => f.write_str(m),
        }
    }
}

/// The sampled pool named `pool`, if the sample has it and read it.
fn readable_pool<'a>(
    a: &'a Analysed,
    pool: &str,
) -> Result<&'a crate::model::PoolSample, NotFound> {
    let Some(p) = a.sample.pools.values().find(|p| p.name == pool) else {
        return Err(NotFound::Missing(format!(
            "pool {pool:?} was not sampled: it does not exist, has no rbd application, or is not in --pools"
        )));
    };
    match &p.outcome {
        Ok(_) => Ok(p),
        Err(e) => Err(NotFound::Unread(format!(
            "pool {pool:?} has not been read successfully yet ({}: {}): its images cannot be looked up until it is",
            e.kind, e.message
        ))),
    }
}

/// "no image ... in pool P[ namespace N] (nor in its trash)".
fn missing(what: &str, pool: &str, namespace: &str) -> NotFound {
    NotFound::Missing(format!(
        "no image {what} in pool {pool:?}{} (nor in its trash)",
        if namespace.is_empty() {
            String::new()
        } else {
            format!(" namespace {namespace:?}")
        }
    ))
}

/// Finds an image by pool name, namespace and name (an image outside the
/// trash wins over a trashed one of the same name); the error says what
/// was not found, or that the pool could not be read.
pub fn find(a: &Analysed, pool: &str, namespace: &str, name: &str) -> Result<ImageKey, NotFound> {
    readable_pool(a, pool)?;
    match view::find(&a.sample, pool, namespace, name) {
        Some(s) => Ok(s.key()),
        None => Err(missing(&format!("{name:?}"), pool, namespace)),
    }
}

/// Finds an image by pool name, namespace and id (trashed images too).
pub fn find_by_id(
    a: &Analysed,
    pool: &str,
    namespace: &str,
    id: &str,
) -> Result<ImageKey, NotFound> {
    let p = readable_pool(a, pool)?;
    let key = ImageKey {
        pool_id: p.pool_id,
        namespace: namespace.to_string(),
        image_id: id.to_string(),
    };
    match a.sample.image(&key).is_some() {
        true => Ok(key),
        false => Err(missing(&format!("with id {id:?}"), pool, namespace)),
    }
}

/// Explains one image; `None` when it was not sampled.
pub fn explain_image(a: &Analysed, key: &ImageKey) -> Option<ImageExplanation> {
    let v = view::image(&a.sample, &a.analysis, key)?;
    let owners = a
        .attribution
        .opinions(&v.pool, &key.namespace, &v.image.name);
    let snapshots: Vec<SnapshotExplanation> = v
        .snapshots
        .iter()
        .map(|s| SnapshotExplanation {
            name: s.snapshot.name.clone(),
            id: s.snapshot.id,
            trashed: s.snapshot.is_trashed(),
            protected: s.snapshot.protected,
            children: s.children_by_pool(&a.sample),
        })
        .collect();
    let (blockers, fixes) = blockers_and_fixes(&a.sample, &v, &snapshots, &owners);
    Some(ImageExplanation {
        pool: v.pool.clone(),
        namespace: key.namespace.clone(),
        image: v.image.name.clone(),
        id: v.image.id.clone(),
        in_trash: v.image.in_trash,
        trash: trash_entry(&a.sample, key),
        size: v.image.size,
        owners,
        watchers: v
            .findings
            .watchers
            .iter()
            .map(WatcherExplanation::new)
            .collect(),
        locks: v.findings.locks.iter().map(LockExplanation::new).collect(),
        parent_chain: v.parents.iter().map(ChainLink::new).collect(),
        clone_depth: v.findings.clone_depth,
        flatten_reasons: v.findings.flatten_reasons.iter().copied().collect(),
        snapshots,
        blockers,
        fixes,
    })
}

/// The image's `rbd_trash` entry, if it has one.
fn trash_entry(sample: &Sample, key: &ImageKey) -> Option<TrashEntry> {
    sample
        .namespaces()
        .find(|(p, n)| p.pool_id == key.pool_id && n.namespace == key.namespace)
        .and_then(|(_, n)| n.trash.get(&key.image_id).cloned())
}

/// What stops `rbd rm` of the image, and the fixes in order: stop the
/// watchers, remove the locks, free the snapshots, remove (or flatten).
fn blockers_and_fixes(
    sample: &Sample,
    v: &ImageView<'_>,
    snapshots: &[SnapshotExplanation],
    owners: &[SourceOpinion],
) -> (Vec<String>, Vec<Fix>) {
    let mut blockers = Vec::new();
    let mut fixes = Vec::new();
    for w in &v.findings.watchers {
        blockers.push(watcher_blocker(w));
        fixes.push(commands::watcher_fix(v, w, owners));
    }
    for l in &v.findings.locks {
        blockers.push(lock_blocker(l));
    }
    fixes.extend(commands::remove_stale_locks(v));
    for (s, sv) in snapshots.iter().zip(&v.snapshots) {
        let n: usize = s.children.values().map(Vec::len).sum();
        if n == 0 {
            continue;
        }
        blockers.push(format!(
            "snapshot {:?}{} has {n} clone(s): {}",
            s.name,
            if s.trashed { " (in the trash)" } else { "" },
            s.children
                .iter()
                .map(|(p, c)| format!("{p} ({})", c.len()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let snapshotted = sv.children_pinning_by_snapshots(sample);
        let trashed = sv.children_in_trash(sample);
        fixes.push(commands::free_snapshot(v, s, &snapshotted, &trashed));
    }
    for s in snapshots
        .iter()
        .filter(|s| s.protected && s.children.is_empty())
    {
        blockers.push(format!("snapshot {:?} is protected", s.name));
        fixes.push(commands::unprotect(v, s));
    }
    fixes.push(commands::remove(v));
    if !v.findings.flatten_reasons.is_empty() {
        fixes.push(commands::flatten_instead(v));
    }
    (blockers, fixes)
}

fn watcher_blocker(w: &WatcherFinding) -> String {
    format!(
        "{} at {} ({}) has it open{}",
        w.watcher.client,
        w.watcher.address,
        host_text(w.host.as_ref()),
        match w.orphan_reason() {
            Some(r) => format!(": believed ORPHANED ({})", r.label()),
            None => String::new(),
        }
    )
}

fn lock_blocker(l: &LockFinding) -> String {
    format!(
        "{} lock {:?} held by {} at {} ({}){}",
        match l.lock.kind {
            LockKind::Exclusive => "exclusive",
            LockKind::Advisory => "advisory",
        },
        l.lock.cookie,
        l.lock.locker,
        l.lock.address,
        host_text(l.host.as_ref()),
        if l.stale {
            ": STALE, its holder no longer watches the image"
        } else {
            ""
        }
    )
}

/// A host as `explain` names it.
fn host_text(host: Option<&Host>) -> String {
    match host {
        Some(h) => match &h.role {
            Some(role) => format!("host {}, {role}, via {}", h.name, h.via),
            None => format!("host {}, via {}", h.name, h.via),
        },
        None => "host unknown".into(),
    }
}

/// Every orphaned watcher and stale lock in the sample.
pub fn orphans(a: &Analysed) -> OrphanListing {
    let mut listing = OrphanListing {
        orphaned_watchers: Vec::new(),
        stale_locks: Vec::new(),
    };
    // Only images with something to say have findings of their own: a few
    // hundred of 100,000, in pool, namespace and id order.
    for (key, f) in &a.analysis.notable {
        if f.orphans().next().is_none() && f.stale_locks().next().is_none() {
            continue;
        }
        let Some(v) = view::image(&a.sample, &a.analysis, key) else {
            continue;
        };
        let mut spec = image_spec(&v.pool, &v.key.namespace, &v.image.name);
        if v.image.in_trash {
            spec.push_str(&format!(" (in trash, id {})", v.image.id));
        }
        let image_ref = ImageRef {
            pool: v.pool.clone(),
            namespace: v.key.namespace.clone(),
            name: v.image.name.clone(),
            id: v.image.id.clone(),
            in_trash: v.image.in_trash,
        };
        if v.findings.orphans().next().is_some() {
            let owners = a
                .attribution
                .opinions(&v.pool, &v.key.namespace, &v.image.name);
            for (w, _) in v.findings.orphans() {
                listing.orphaned_watchers.push(OrphanEntry {
                    image: spec.clone(),
                    image_ref: image_ref.clone(),
                    watcher: WatcherExplanation::new(w),
                    fix: commands::watcher_fix(&v, w, &owners),
                });
            }
        }
        for l in v.findings.stale_locks() {
            listing.stale_locks.push(StaleLockEntry {
                image: spec.clone(),
                image_ref: image_ref.clone(),
                lock: LockExplanation::new(l),
                fix: commands::remove_stale_lock(&v, l),
            });
        }
    }
    listing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::fixtures::*;
    use crate::analysis::{Settings, analyse};
    use crate::model::ChildRef;
    use std::sync::Arc;

    /// A clone in the trash cannot be flattened by name: the fix restores
    /// it by id first (or offers to remove it for good).
    #[test]
    fn a_trashed_clone_is_restored_before_its_flatten() {
        let mut base = image("b1", "base");
        let mut snap = snapshot(4, "snap", true);
        for id in ["c1", "c2"] {
            snap.v2_children.push(ChildRef {
                pool_id: 2,
                namespace: String::new(),
                image_id: id.into(),
            });
        }
        base.snapshots.push(snap);
        let mut live = image("c1", "volume-live");
        live.parent = parent(1, "b1", 4);
        let mut gone = image("c2", "volume-gone");
        gone.parent = parent(1, "b1", 4);
        gone.in_trash = true;
        let s = sample(vec![
            (1, "images", vec![namespace("", vec![base])]),
            (2, "volumes", vec![namespace("", vec![live, gone])]),
        ]);
        let a = Analysed {
            analysis: Arc::new(analyse(&s, &Settings::default())),
            sample: Arc::new(s),
            attribution: Default::default(),
        };
        let key = find(&a, "images", "", "base").unwrap();
        let e = explain_image(&a, &key).unwrap();
        let free = e
            .fixes
            .iter()
            .find(|f| f.why.contains("flatten the clones"))
            .unwrap();
        assert_eq!(
            free.commands,
            [
                "# volumes/volume-gone is in the trash: restore it to flatten it, or if nobody needs it remove it for good instead: rbd trash rm volumes/c2",
                "rbd trash restore volumes/c2",
                "rbd flatten volumes/volume-gone",
                "rbd flatten volumes/volume-live",
                "rbd snap unprotect images/base@snap",
            ]
        );
    }
}
