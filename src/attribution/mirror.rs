//! rbd-mirror daemons, learned from the cluster: no inventory needed.
//!
//! Every rbd-mirror daemon replaying into a pool watches that pool's
//! `rbd_mirror_leader` object and its `rbd_mirroring` object; through its
//! peer connection to a remote primary site it watches that site's
//! `rbd_mirroring` too, but no `rbd_mirror_leader` there. The sampler
//! records the watchers of both objects per pool
//! (`PoolSample::mirror_daemons`). On a secondary site the daemon holds the
//! non-primary images open, including Cinder's `volume-*.deleted` renames
//! replayed from the primary; on a primary site its peer connection watches
//! the primary images it replays from. Those watches are never orphans.
//!
//! The matching rule is the exact entity address (`ip:port/nonce`), as
//! observed with Ceph 16.2 (two loopback clusters, snapshot mirroring, one
//! daemon serving two pools): per pool the daemon's watch on
//! `rbd_mirror_leader` and its watches on that pool's image headers came
//! from the same client (`client.4132`) with the same address
//! (`127.0.0.1:0/571513203`), and its other pool used another RADOS
//! connection (`client.4251`, `127.0.0.1:0/1261533695`). So a daemon's
//! address in ANY sampled pool is the daemon; the IP alone is not enough
//! (any client on the daemon's host shares it), nor the client id (it is
//! per connection, and says nothing the nonce does not).
//!
//! On the primary of a one-way pair (Ceph 16.2, no daemon of its own) the
//! secondary's daemon connects as `client.rbd-mirror-peer`: that one
//! connection (`client.4129`, `127.0.0.1:0/3784022237`) watched the
//! primary pool's `rbd_mirroring` (twice) and the header of each mirrored
//! image, and nothing watched `rbd_mirror_leader` there. No other client
//! watched `rbd_mirroring`: not a librbd client holding a mirrored or a
//! plain image open (scripts/holder.py, also with the exclusive lock),
//! not `rbd bench`, `rbd status` or `rbd mirror image|pool status`, not the
//! mgr (`rbd_support`, with a mirror snapshot schedule and a trash purge
//! schedule on the pool). librbd only notifies `rbd_mirroring`; the watch
//! is rbd-mirror's pool watcher.

use crate::analysis::{OrphanClassifier, Verdict, WatcherContext};
use crate::model::Sample;
use std::collections::HashSet;

/// The addresses of every rbd-mirror daemon of the sampled pools.
#[derive(Debug, Clone, Default)]
pub struct MirrorDaemons {
    /// Entity addresses (`ip:port/nonce`) as the watcher lists give them.
    addresses: HashSet<String>,
}

impl MirrorDaemons {
    /// The daemons watching `rbd_mirror_leader` or `rbd_mirroring` in any
    /// pool of `sample` (failed pools keep their last good list, see
    /// `crate::cycle`).
    pub fn of(sample: &Sample) -> MirrorDaemons {
        let addresses = sample
            .pools
            .values()
            .flat_map(|p| &p.mirror_daemons)
            .map(|w| w.address.clone())
            .collect();
        MirrorDaemons { addresses }
    }

    /// True when `address` is an rbd-mirror daemon's.
    pub fn contains(&self, address: &str) -> bool {
        self.addresses.contains(address)
    }
}

impl OrphanClassifier for MirrorDaemons {
    fn classify(&self, ctx: &WatcherContext<'_>) -> Option<Verdict> {
        self.contains(&ctx.watcher.address)
            .then_some(Verdict::Legitimate)
    }
}

#[cfg(test)]
mod tests {
    //! Through the fake cluster and the whole cycle, without an inventory.

    use super::*;
    use crate::analysis::{OrphanReason, Settings};
    use crate::ceph::fake::{self, FakeCluster, FakeImage, Fault, Method};
    use crate::cycle::{Cycle, CycleConfig, Published};
    use crate::error::{Error, libc_errno};
    use crate::metrics::RenderOptions;
    use crate::model::ImageKey;
    use crate::sampler::SampleConfig;
    use std::sync::Arc;
    use std::time::Duration;

    /// The daemon's address as observed: the same on `rbd_mirror_leader`
    /// and on the headers of the images it replays.
    const DAEMON: &str = "127.0.0.1:0/571513203";
    /// The same daemon's connection for its other pool.
    const DAEMON_OTHER_POOL: &str = "127.0.0.1:0/1261533695";

    fn cycle() -> Cycle {
        let config = CycleConfig {
            sample: SampleConfig {
                pools: None,
                max_inflight: 4,
                full_every: 60,
            },
            settings: Settings::default(),
            render: RenderOptions::default(),
            interval: Duration::from_secs(60),
        };
        Cycle::new(config, None)
    }

    /// `volumes` (mirrored: a daemon) and `images` (mirrored by the same
    /// daemon's other connection) on a secondary site; `scratch` has no
    /// `rbd_mirror_leader` at all.
    fn secondary() -> Arc<FakeCluster> {
        let deleted = |id: &str, client: &str, address: &str| {
            FakeImage::new(id, &format!("volume-{id}.deleted")).watcher(client, address, 9)
        };
        FakeCluster::builder()
            .rbd_pool(1, "volumes")
            .mirror_daemon(1, "client.4132", DAEMON)
            .image(1, "", deleted("by-daemon", "client.4132", DAEMON))
            .image(1, "", deleted("by-vm", "client.77", "127.0.0.1:0/42"))
            // The daemon's host, another process: same IP, other nonce.
            .image(
                1,
                "",
                deleted("by-neighbour", "client.78", "127.0.0.1:0/43"),
            )
            .image(
                1,
                "",
                deleted("by-other-conn", "client.4251", DAEMON_OTHER_POOL),
            )
            .rbd_pool(2, "images")
            .mirror_daemon(2, "client.4251", DAEMON_OTHER_POOL)
            .rbd_pool(3, "scratch")
            .trashed(
                3,
                "",
                FakeImage::new("t", "old").watcher("client.5", DAEMON, 1),
            )
            .build()
    }

    fn verdicts(p: &Published) -> Vec<(String, Option<OrphanReason>)> {
        let a = p.analysed.as_ref().expect("a sample");
        let mut out: Vec<_> = a
            .analysis
            .notable
            .iter()
            .flat_map(|(k, f)| {
                f.watchers
                    .iter()
                    .map(move |w| (format!("{}/{}", k.pool_id, k.image_id), w.verdict))
            })
            .map(|(image, v)| match v {
                Verdict::Orphan(r) => (image, Some(r)),
                Verdict::Legitimate => (image, None),
            })
            .collect();
        out.sort();
        out
    }

    fn expected_verdicts() -> Vec<(String, Option<OrphanReason>)> {
        let deleted = Some(OrphanReason::ImageDeleted);
        vec![
            ("1/by-daemon".into(), None),
            ("1/by-neighbour".into(), deleted),
            ("1/by-other-conn".into(), None),
            ("1/by-vm".into(), deleted),
            ("3/t".into(), None),
        ]
    }

    #[tokio::test]
    async fn a_mirror_daemons_watch_on_a_deleted_image_is_no_orphan() {
        let c = secondary();
        let mut cycle = cycle();
        let p = cycle.step(&c).await;
        assert!(p.last_error.is_none(), "{:?}", p.last_error);
        // A pool without `rbd_mirror_leader` reads as no daemon; the
        // daemon's address is exempt wherever it watches (pool 3's trashed
        // image), whichever pool listed it.
        assert_eq!(verdicts(&p), expected_verdicts());
        assert_eq!(c.count(Method::MirrorDaemons), 3);
        assert_eq!(c.count(Method::MirroringWatchers), 3);
        let metrics = std::str::from_utf8(&p.metrics).unwrap();
        let orphaned = |image: &str| {
            metrics.lines().any(|l| {
                l.starts_with("ceph_rbd_image_orphaned_watchers{")
                    && l.contains(&format!("image=\"volume-{image}.deleted\""))
            })
        };
        assert!(orphaned("by-vm") && orphaned("by-neighbour"), "{metrics}");
        assert!(!orphaned("by-daemon") && !orphaned("by-other-conn"));
    }

    #[tokio::test]
    async fn without_a_daemon_the_same_watch_is_an_orphan() {
        let c = FakeCluster::builder()
            .rbd_pool(1, "volumes")
            .image(
                1,
                "",
                FakeImage::new("v", "volume-v.deleted").watcher("client.4132", DAEMON, 9),
            )
            .build();
        let p = cycle().step(&c).await;
        let key = ImageKey {
            pool_id: 1,
            namespace: String::new(),
            image_id: "v".into(),
        };
        let findings = p.analysed.as_ref().unwrap().analysis.findings(&key);
        assert_eq!(
            findings.watchers[0].verdict,
            Verdict::Orphan(OrphanReason::ImageDeleted)
        );
    }

    #[tokio::test]
    async fn a_failed_daemon_read_fails_the_pool_and_keeps_the_last_daemons() {
        let c = secondary();
        let mut cycle = cycle();
        cycle.step(&c).await;
        c.change(|b| b.fault(Fault::on(Method::MirrorDaemons, fake::timeout).pool(1)));
        let p = cycle.step(&c).await;
        let key = ("volumes".to_string(), "timeout".to_string());
        assert_eq!(p.status.sample_errors_total.get(&key), Some(&1));
        let err = p.last_error.as_deref().unwrap();
        assert!(err.contains("volumes/rbd_mirror_leader"), "{err}");
        assert_eq!(verdicts(&p), expected_verdicts());

        // Permission denied is an error too, never "no daemon".
        c.change(|b| {
            b.clear_faults().fault(
                Fault::on(Method::MirrorDaemons, |call| Error::Rados {
                    what: "watcher list",
                    pool: call.pool_label.clone(),
                    object: call.object.clone(),
                    code: -libc_errno::EACCES,
                })
                .pool(1),
            )
        });
        let p = cycle.step(&c).await;
        let key = ("volumes".to_string(), "rados".to_string());
        assert_eq!(p.status.sample_errors_total.get(&key), Some(&1));
        assert_eq!(verdicts(&p), expected_verdicts());
    }

    /// The secondary's daemon's peer connection, as seen on the primary.
    const PEER: &str = "127.0.0.1:0/3784022237";

    /// A one-way primary: no `rbd_mirror_leader`, the remote daemon's peer
    /// connection watches `rbd_mirroring` and the images it replays.
    fn primary() -> Arc<FakeCluster> {
        let deleted = |id: &str, client: &str, address: &str| {
            FakeImage::new(id, &format!("volume-{id}.deleted")).watcher(client, address, 9)
        };
        FakeCluster::builder()
            .rbd_pool(1, "volumes")
            .mirroring_watcher(1, "client.4129", PEER)
            .mirroring_watcher(1, "client.4129", PEER)
            .image(1, "", deleted("by-peer", "client.4129", PEER))
            .image(
                1,
                "",
                deleted("by-vm", "client.4165", "127.0.0.1:0/1847862647"),
            )
            .build()
    }

    #[tokio::test]
    async fn a_remote_daemons_peer_watch_on_a_primary_is_no_orphan() {
        let c = primary();
        let p = cycle().step(&c).await;
        assert!(p.last_error.is_none(), "{:?}", p.last_error);
        let deleted = Some(OrphanReason::ImageDeleted);
        assert_eq!(
            verdicts(&p),
            vec![("1/by-peer".into(), None), ("1/by-vm".into(), deleted)]
        );
        let a = p.analysed.as_ref().unwrap();
        assert_eq!(
            a.sample.pools[&1].mirror_daemons.len(),
            1,
            "one per address"
        );
    }

    #[tokio::test]
    async fn a_failed_rbd_mirroring_read_fails_the_pool_and_keeps_the_last_daemons() {
        let c = primary();
        let mut cycle = cycle();
        cycle.step(&c).await;
        c.change(|b| {
            b.fault(
                Fault::on(Method::MirroringWatchers, |call| Error::Rados {
                    what: "watcher list",
                    pool: call.pool_label.clone(),
                    object: call.object.clone(),
                    code: -libc_errno::EACCES,
                })
                .pool(1),
            )
        });
        let p = cycle.step(&c).await;
        let key = ("volumes".to_string(), "rados".to_string());
        assert_eq!(p.status.sample_errors_total.get(&key), Some(&1));
        let err = p.last_error.as_deref().unwrap();
        assert!(err.contains("volumes/rbd_mirroring"), "{err}");
        let deleted = Some(OrphanReason::ImageDeleted);
        assert_eq!(
            verdicts(&p),
            vec![("1/by-peer".into(), None), ("1/by-vm".into(), deleted)]
        );
    }
}
