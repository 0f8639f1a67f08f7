//! One image as people read it, built once from a sample and its analysis
//! and shared by `dump` (`crate::report`) and `explain` (`crate::explain`):
//! names instead of ids, the parent chain resolved, every snapshot with its
//! children. Watchers and locks come as the analysis' findings, each with
//! its host and verdict.

use crate::analysis::{Analysis, ImageFindings};
use crate::model::{Image, ImageKey, ParentRef, Sample, SampledImage, Snapshot};
use std::collections::{BTreeMap, HashSet};

/// Longest parent chain followed; a longer one is cut there.
const MAX_CHAIN: usize = 64;

/// One image of a sample with everything concluded about it.
#[derive(Debug, Clone)]
pub struct ImageView<'a> {
    /// The image's key.
    pub key: ImageKey,
    /// Its pool's name.
    pub pool: String,
    /// The image as sampled.
    pub image: &'a Image,
    /// What analysis concluded (clone depth, flatten reasons, watchers and
    /// locks with their hosts and verdicts).
    pub findings: &'a ImageFindings,
    /// Its ancestors, nearest first.
    pub parents: Vec<ParentLink<'a>>,
    /// Its snapshots, in snapshot-id order, with their children.
    pub snapshots: Vec<SnapshotView<'a>>,
}

/// One ancestor of an image.
#[derive(Debug, Clone)]
pub struct ParentLink<'a> {
    /// The reference its child holds.
    pub parent: &'a ParentRef,
    /// The parent's pool name.
    pub pool: String,
    /// The parent image, if it was sampled.
    pub image: Option<&'a Image>,
    /// The parent snapshot, if it was found.
    pub snapshot: Option<&'a Snapshot>,
}

impl ParentLink<'_> {
    /// The parent image's name, if it was sampled.
    pub fn image_name(&self) -> Option<String> {
        self.image.map(|i| i.name.clone())
    }

    /// True when the parent image is in the trash.
    pub fn image_trashed(&self) -> bool {
        self.image.is_some_and(|i| i.in_trash)
    }

    /// True when the parent snapshot is in the trash namespace.
    pub fn snapshot_trashed(&self) -> bool {
        self.snapshot.is_some_and(|s| s.is_trashed())
    }
}

/// One snapshot of an image with its children.
#[derive(Debug, Clone)]
pub struct SnapshotView<'a> {
    /// The snapshot.
    pub snapshot: &'a Snapshot,
    /// Its children, v1 and v2, in any sampled pool, as analysis found them.
    pub children: &'a [ImageKey],
}

impl SnapshotView<'_> {
    /// The children as image specs (`pool[/namespace]/image`; an image
    /// that was not sampled as `<id ID>`), grouped by pool name, sorted and
    /// without repeats.
    pub fn children_by_pool(&self, sample: &Sample) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in self.children {
            let pool = sample.pool_name(key.pool_id);
            let name = sample
                .image(key)
                .map(|i| i.name.clone())
                .unwrap_or_else(|| format!("<id {}>", key.image_id));
            let spec = image_spec(&pool, &key.namespace, &name);
            out.entry(pool).or_default().push(spec);
        }
        for v in out.values_mut() {
            v.sort();
            v.dedup();
        }
        out
    }
}

impl SnapshotView<'_> {
    /// Specs of the children that were flattened while they had snapshots:
    /// only their snapshots still pin this snapshot (see
    /// [`Image::pins_parent_by_snapshots_only`]).
    pub fn children_pinning_by_snapshots(&self, sample: &Sample) -> Vec<String> {
        let mut out: Vec<String> = self
            .children
            .iter()
            .filter_map(|key| {
                let child = sample.image(key)?;
                child.pins_parent_by_snapshots_only().then(|| {
                    image_spec(&sample.pool_name(key.pool_id), &key.namespace, &child.name)
                })
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl SnapshotView<'_> {
    /// The children that are in the trash, each as its spec (as in
    /// [`SnapshotView::children_by_pool`]) and its trash spec
    /// (`pool[/namespace]/ID`, which `rbd trash` takes): their names do not
    /// resolve, so `rbd flatten` cannot name them there.
    pub fn children_in_trash(&self, sample: &Sample) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .children
            .iter()
            .filter_map(|key| {
                let child = sample.image(key).filter(|c| c.in_trash)?;
                let pool = sample.pool_name(key.pool_id);
                Some((
                    image_spec(&pool, &key.namespace, &child.name),
                    image_spec(&pool, &key.namespace, &key.image_id),
                ))
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The view of one image of the sample; `None` when it was not sampled.
pub fn image<'a>(
    sample: &'a Sample,
    analysis: &'a Analysis,
    key: &ImageKey,
) -> Option<ImageView<'a>> {
    let image = sample.image(key)?;
    let findings = analysis.findings(key);
    Some(ImageView {
        key: key.clone(),
        pool: sample.pool_name(key.pool_id),
        image,
        findings,
        parents: parents(sample, image),
        snapshots: image
            .snapshots
            .iter()
            .map(|snapshot| SnapshotView {
                snapshot,
                children: analysis.children(key, snapshot),
            })
            .collect(),
    })
}

/// The view of every sampled image, in pool, namespace and id order.
pub fn images<'a>(
    sample: &'a Sample,
    analysis: &'a Analysis,
) -> impl Iterator<Item = ImageView<'a>> + 'a {
    sample
        .images()
        .filter_map(move |s| image(sample, analysis, &s.key()))
}

/// Finds an image by pool name, namespace and name. An image outside the
/// trash wins over a trashed one of the same name.
pub fn find<'a>(
    sample: &'a Sample,
    pool: &str,
    namespace: &str,
    name: &str,
) -> Option<SampledImage<'a>> {
    let mut found: Option<SampledImage<'a>> = None;
    let candidates = sample.images().filter(|s| {
        s.pool.name == pool && s.namespace.namespace == namespace && s.image.name == name
    });
    for s in candidates {
        if found.is_none_or(|f| f.image.in_trash && !s.image.in_trash) {
            found = Some(s);
        }
    }
    found
}

/// Ancestors of `image`, nearest first, stopping at a loop, at a parent
/// that was not sampled, or after [`MAX_CHAIN`] links.
fn parents<'a>(sample: &'a Sample, image: &'a Image) -> Vec<ParentLink<'a>> {
    let mut chain = Vec::new();
    let mut next = image.head_parent();
    let mut seen = HashSet::new();
    while let Some(p) = next.take() {
        if !seen.insert(p.image_key()) || chain.len() > MAX_CHAIN {
            break;
        }
        let parent = sample.image(&p.image_key());
        chain.push(ParentLink {
            parent: p,
            pool: sample.pool_name(p.pool_id),
            image: parent,
            snapshot: parent.and_then(|i| i.snapshots.iter().find(|s| s.id == p.snap_id)),
        });
        next = parent.and_then(Image::head_parent);
    }
    chain
}

/// `pool[/namespace]/image`, as `rbd` takes it.
pub fn image_spec(pool: &str, namespace: &str, image: &str) -> String {
    if namespace.is_empty() {
        format!("{pool}/{image}")
    } else {
        format!("{pool}/{namespace}/{image}")
    }
}
