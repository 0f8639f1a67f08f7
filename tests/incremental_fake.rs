//! Incremental sampling against the in-memory cluster (`ceph::fake`),
//! whose headers carry versions that move as RADOS objects' do (every
//! change but a watch):
//! - a property test: random sequences of operations (locks, watches,
//!   snapshots, protection, clones, flattens, renames, trash, restores,
//!   removals, new images), and after each one the incremental sample
//!   equals a full sample of the same state, image by image, field by
//!   field;
//! - a header whose version failed to move (a drift the light read cannot
//!   see) is put right by its periodic full read within `full_every`
//!   samples, and never later.
//!
//! Needs no cluster.

use ceph_rbd_exporter::ceph::fake::{Builder, FakeCluster, FakeImage, Method};
use ceph_rbd_exporter::model::{Lock, LockKind, Sample};
use ceph_rbd_exporter::sampler::{SampleConfig, sample_once, sample_since};
use proptest::prelude::*;
use std::sync::Arc;

/// One change to the cluster, aimed at the image `n % live images`.
#[derive(Debug, Clone)]
enum Op {
    Lock(usize),
    Unlock(usize),
    Watch(usize, u64),
    Unwatch(usize),
    SnapCreate(usize, u64),
    Protect(usize),
    SnapRemove(usize),
    Clone(usize),
    Flatten(usize),
    Rename(usize),
    Trash(usize),
    Restore(usize),
    Remove(usize),
    Create,
    Resize(usize, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0usize..16;
    prop_oneof![
        n.clone().prop_map(Op::Lock),
        n.clone().prop_map(Op::Unlock),
        (n.clone(), 1u64..5).prop_map(|(i, c)| Op::Watch(i, c)),
        n.clone().prop_map(Op::Unwatch),
        (n.clone(), 1u64..50).prop_map(|(i, s)| Op::SnapCreate(i, s)),
        n.clone().prop_map(Op::Protect),
        n.clone().prop_map(Op::SnapRemove),
        n.clone().prop_map(Op::Clone),
        n.clone().prop_map(Op::Flatten),
        n.clone().prop_map(Op::Rename),
        n.clone().prop_map(Op::Trash),
        n.clone().prop_map(Op::Restore),
        n.clone().prop_map(Op::Remove),
        Just(Op::Create),
        (n, 1u64..8).prop_map(|(i, g)| Op::Resize(i, g << 30)),
    ]
}

/// The model the operations run against: which image ids exist, which
/// are in the trash, and the next id to hand out.
#[derive(Default)]
struct World {
    ids: Vec<String>,
    trashed: Vec<String>,
    next: usize,
}

const POOL: i64 = 1;

impl World {
    fn pick(&self, n: usize) -> Option<String> {
        (!self.ids.is_empty()).then(|| self.ids[n % self.ids.len()].clone())
    }

    fn new_id(&mut self) -> String {
        self.next += 1;
        let id = format!("i{}", self.next);
        self.ids.push(id.clone());
        id
    }

    /// Applies `op` to the cluster (a no-op when it makes no sense, as the
    /// rbd CLI would refuse it).
    fn apply(&mut self, cluster: &FakeCluster, op: &Op) {
        let change = |id: String, f: Box<dyn FnOnce(FakeImage) -> FakeImage>| {
            cluster.change(|b: Builder| b.change_image(POOL, "", &id, f))
        };
        let advisory = |cookie: &str| Lock {
            kind: LockKind::Advisory,
            locker: "client.9".into(),
            cookie: cookie.into(),
            address: "10.0.0.9:0/9".into(),
            shared: false,
            tag: String::new(),
        };
        match op.clone() {
            Op::Create => {
                let id = self.new_id();
                cluster.change(|b| b.image(POOL, "", FakeImage::new(&id, &format!("n-{id}"))));
            }
            Op::Lock(n) => {
                let Some(id) = self.pick(n) else { return };
                let lock = advisory("c1");
                change(id, Box::new(move |i| i.locks(vec![lock])));
            }
            Op::Unlock(n) => {
                let Some(id) = self.pick(n) else { return };
                change(id, Box::new(|i| i.locks(vec![])));
            }
            Op::Watch(n, cookie) => {
                let Some(id) = self.pick(n) else { return };
                let addr = format!("10.0.0.{cookie}:0/1");
                let client = format!("client.{cookie}");
                change(id, Box::new(move |i| i.watcher(&client, &addr, cookie)));
            }
            Op::Unwatch(n) => {
                let Some(id) = self.pick(n) else { return };
                change(id, Box::new(|i| i.watchers(vec![])));
            }
            Op::SnapCreate(n, snap) => {
                let Some(id) = self.pick(n) else { return };
                change(
                    id,
                    Box::new(move |i| {
                        let i = i.without_snapshot(snap);
                        i.snapshot(snap, &format!("s{snap}"))
                    }),
                );
            }
            Op::Protect(n) => {
                let Some(id) = self.pick(n) else { return };
                change(
                    id,
                    Box::new(|i| {
                        let first = i.snapshot_list().first().map(|s| s.id);
                        match first {
                            Some(s) => i.change_snapshot(s, |s| s.protected = !s.protected),
                            None => i,
                        }
                    }),
                );
            }
            Op::SnapRemove(n) => {
                let Some(id) = self.pick(n) else { return };
                change(
                    id,
                    Box::new(|i| {
                        let last = i.snapshot_list().last().map(|s| s.id);
                        match last {
                            Some(s) => i.without_snapshot(s),
                            None => i,
                        }
                    }),
                );
            }
            Op::Clone(n) => {
                let Some(parent) = self.pick(n) else { return };
                let id = self.new_id();
                cluster.change(|b| {
                    b.change_image(POOL, "", &parent, |p| p.snapshot(999, "base"))
                        .image(
                            POOL,
                            "",
                            FakeImage::new(&id, &format!("n-{id}"))
                                .clone_of(POOL, "", &parent, 999),
                        )
                });
            }
            Op::Flatten(n) => {
                let Some(id) = self.pick(n) else { return };
                change(id, Box::new(|i| i.without_parent()));
            }
            Op::Rename(n) => {
                let Some(id) = self.pick(n) else { return };
                let name = format!("renamed-{id}-{}", self.next);
                cluster.change(|b| b.rename_image(POOL, "", &id, &name));
            }
            Op::Trash(n) => {
                let Some(id) = self.pick(n) else { return };
                if !self.trashed.contains(&id) {
                    self.trashed.push(id.clone());
                    cluster.change(|b| b.trash_image(POOL, "", &id));
                }
            }
            Op::Restore(n) => {
                if self.trashed.is_empty() {
                    return;
                }
                let id = self.trashed.remove(n % self.trashed.len());
                cluster.change(|b| b.restore_image(POOL, "", &id));
            }
            Op::Remove(n) => {
                let Some(id) = self.pick(n) else { return };
                self.ids.retain(|i| *i != id);
                self.trashed.retain(|i| *i != id);
                cluster.change(|b| b.remove_image(POOL, "", &id));
            }
            Op::Resize(n, size) => {
                let Some(id) = self.pick(n) else { return };
                change(id, Box::new(move |i| i.size(size)));
            }
        }
    }
}

fn config(full_every: u32) -> SampleConfig {
    SampleConfig {
        pools: None,
        max_inflight: 8,
        full_every,
    }
}

/// The sample's pools, namespaces and images, everything a verdict is
/// made from (not the timings and read counts).
fn contents(s: &Sample) -> String {
    let pools: Vec<_> = s
        .pools
        .values()
        .map(|p| (&p.name, p.outcome.as_ref().ok(), &p.skipped))
        .collect();
    format!("{pools:?} {:?}", s.ancestors)
}

fn run_sequence(ops: &[Op], full_every: u32) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cluster = FakeCluster::builder().rbd_pool(POOL, "volumes").build();
    let mut world = World::default();
    for _ in 0..4 {
        world.apply(&cluster, &Op::Create);
    }
    let (mut previous, _) = rt
        .block_on(sample_once(&cluster, &config(full_every)))
        .unwrap();
    for (seq, op) in ops.iter().enumerate() {
        world.apply(&cluster, op);
        let prev = Arc::new(previous);
        let (inc, _) = rt
            .block_on(sample_since(
                &cluster,
                &config(full_every),
                prev,
                seq as u64 + 1,
            ))
            .unwrap();
        let (full, _) = rt
            .block_on(sample_once(&cluster, &config(full_every)))
            .unwrap();
        prop_assert_eq!(
            contents(&inc),
            contents(&full),
            "after {:?} (step {})",
            op,
            seq
        );
        previous = inc;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_full_after_any_sequence_of_changes(
        ops in proptest::collection::vec(op(), 1..40),
        full_every in prop_oneof![Just(1u32), Just(3), Just(100_000)],
    ) {
        run_sequence(&ops, full_every)?;
    }
}

#[test]
fn light_reads_are_used_and_can_fail_the_comparison() {
    // The property above could pass vacuously if every read were full:
    // here the unchanged images are read light, and a change the version
    // does not show (a frozen version) is NOT seen by the light read.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = FakeCluster::builder()
        .rbd_pool(POOL, "volumes")
        .image(POOL, "", FakeImage::new("a", "a"))
        .image(POOL, "", FakeImage::new("b", "b").frozen_version())
        .build();
    let cfg = config(100_000);
    let (first, _) = rt.block_on(sample_once(&cluster, &cfg)).unwrap();
    cluster.clear_calls();
    cluster.change(|c| {
        c.change_image(POOL, "", "a", |i| i.size(5 << 30))
            .change_image(POOL, "", "b", |i| i.size(7 << 30))
    });
    let (inc, _) = rt
        .block_on(sample_since(&cluster, &cfg, Arc::new(first), 1))
        .unwrap();
    assert_eq!(cluster.count(Method::Watchers), 2, "both read light first");
    assert_eq!(
        cluster.count(Method::Header),
        1,
        "only the moved one in full"
    );
    let (full, _) = rt.block_on(sample_once(&cluster, &cfg)).unwrap();
    let size = |s: &Sample, id: &str| s.namespace_images(POOL, "").unwrap()[id].size;
    assert_eq!(size(&inc, "a"), 5 << 30);
    assert_eq!(
        size(&inc, "b"),
        1 << 30,
        "the frozen version hides the change"
    );
    assert_eq!(size(&full, "b"), 7 << 30);
    assert_ne!(contents(&inc), contents(&full));
}

#[test]
fn a_drift_is_put_right_by_the_periodic_full_read_within_full_every_samples() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let every = 5u32;
    let cluster = FakeCluster::builder()
        .rbd_pool(POOL, "volumes")
        .image(POOL, "", FakeImage::new("d", "drifting").frozen_version())
        .build();
    let cfg = config(every);
    let (mut previous, _) = rt.block_on(sample_once(&cluster, &cfg)).unwrap();
    cluster.change(|c| c.change_image(POOL, "", "d", |i| i.size(9 << 30)));
    let mut fixed_at = None;
    for seq in 1..=u64::from(every) {
        let (inc, _) = rt
            .block_on(sample_since(&cluster, &cfg, Arc::new(previous), seq))
            .unwrap();
        let size = inc.namespace_images(POOL, "").unwrap()["d"].size;
        if size == 9 << 30 && fixed_at.is_none() {
            fixed_at = Some(seq);
        }
        if fixed_at.is_some() {
            assert_eq!(size, 9 << 30, "once put right, it stays right");
        }
        previous = inc;
    }
    assert!(
        fixed_at.is_some(),
        "the drift outlived {every} samples of --sample.full-every {every}"
    );
}
