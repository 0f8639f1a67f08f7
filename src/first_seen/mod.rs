//! When each watch was first seen, remembered across samples, so that
//! "held for three days" can be told from "opened a minute ago". Without a
//! state file (`--storage.path`, [`file`]) the times start again when the
//! exporter restarts; with one, the times it restores are kept for the
//! watches still there.

pub mod file;

use crate::model::{ImageKey, Sample, Watcher};
use std::collections::HashMap;

/// How long times restored from the state file are kept for watches not
/// seen since, while their pool cannot be sampled (a pool that fails
/// after a restart has no last good data to keep its watchers in the
/// sample): 24 hours after the restore.
pub const RESTORED_GRACE_SECONDS: f64 = 24.0 * 3600.0;

/// A watcher's identity: its image and the watch itself (client, address,
/// cookie).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatcherKey {
    /// Image key.
    pub image: ImageKey,
    /// The watcher.
    pub watcher: Watcher,
}

/// First-seen Unix time of every current watcher.
pub type FirstSeenTimes = HashMap<WatcherKey, f64>;

/// Remembers when each watcher was first seen, across samples.
#[derive(Debug, Default)]
pub struct FirstSeen {
    /// The first-seen time of every watcher of the last sample.
    seen: FirstSeenTimes,
    /// Times restored from the state file whose watchers have not been in a
    /// sample since: kept while their pool fails (at most
    /// [`RESTORED_GRACE_SECONDS`] after `restored_at`), dropped once a good
    /// sample of their pool does not have them.
    restored: FirstSeenTimes,
    /// When the times were restored.
    restored_at: f64,
    /// True when the times changed since [`FirstSeen::mark_saved`].
    changed: bool,
}

impl FirstSeen {
    /// Starts from times restored from the state file at `now`.
    pub fn restored(times: FirstSeenTimes, now: f64) -> FirstSeen {
        FirstSeen {
            restored: times,
            restored_at: now,
            ..FirstSeen::default()
        }
    }

    /// Records the watchers of a sample seen at `now`, forgets the ones that
    /// are gone, and returns the first-seen time of every current watcher.
    /// Pools whose sample failed keep their watchers' times (the sample
    /// given here carries their last good data).
    pub fn update(&mut self, sample: &Sample, now: f64) -> FirstSeenTimes {
        let mut current = FirstSeenTimes::new();
        for s in sample.images() {
            for w in &s.image.watchers {
                let key = WatcherKey {
                    image: s.key(),
                    watcher: w.clone(),
                };
                let t = match self.seen.get(&key) {
                    Some(t) => *t,
                    None => self.restored.remove(&key).unwrap_or(now),
                };
                current.insert(key, t);
            }
        }
        let restored = self.restored.len();
        let expired = now - self.restored_at > RESTORED_GRACE_SECONDS;
        self.restored
            .retain(|k, _| !expired && unread_in(sample, &k.image));
        self.changed |= current != self.seen || self.restored.len() != restored;
        self.seen = current.clone();
        current
    }

    /// Every time worth saving: the current watchers' and the restored ones
    /// still waiting for their pool.
    pub fn times(&self) -> impl Iterator<Item = (&WatcherKey, f64)> {
        self.seen
            .iter()
            .chain(self.restored.iter())
            .map(|(k, t)| (k, *t))
    }

    /// True when the times changed since they were last saved.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Notes that the times were saved.
    pub fn mark_saved(&mut self) {
        self.changed = false;
    }
}

/// True when `sample` could not tell whether the image still has watchers:
/// its pool failed (with no last good data to stand in), or a good sample
/// of the pool skipped the image. False for a pool the sample does not
/// have (deleted, or no longer selected).
fn unread_in(sample: &Sample, image: &ImageKey) -> bool {
    let Some(pool) = sample.pools.get(&image.pool_id) else {
        return false;
    };
    pool.outcome.is_err()
        || pool.skipped.iter().any(|s| {
            s.namespace == image.namespace && s.image_id.as_deref() == Some(&image.image_id)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::fixtures::*;
    use crate::model::{SampleError, Skipped};

    #[test]
    fn first_seen_is_kept_until_the_watcher_goes() {
        let mut img = image("a", "a");
        img.watchers.push(watcher(1, "10.0.0.1", 1));
        let s1 = sample(vec![(1, "p", vec![namespace("", vec![img.clone()])])]);
        let mut fs = FirstSeen::default();
        let t1 = fs.update(&s1, 100.0);
        assert_eq!(t1.values().copied().collect::<Vec<_>>(), vec![100.0]);
        let t2 = fs.update(&s1, 160.0);
        assert_eq!(t2.values().copied().collect::<Vec<_>>(), vec![100.0]);
        img.watchers.clear();
        let s2 = sample(vec![(1, "p", vec![namespace("", vec![img.clone()])])]);
        assert!(fs.update(&s2, 220.0).is_empty());
        img.watchers.push(watcher(1, "10.0.0.1", 1));
        let s3 = sample(vec![(1, "p", vec![namespace("", vec![img])])]);
        assert_eq!(
            fs.update(&s3, 280.0).values().copied().collect::<Vec<_>>(),
            vec![280.0]
        );
    }

    fn key(pool_id: i64, image_id: &str, w: Watcher) -> WatcherKey {
        WatcherKey {
            image: ImageKey {
                pool_id,
                namespace: String::new(),
                image_id: image_id.into(),
            },
            watcher: w,
        }
    }

    #[test]
    fn changes_are_noted_until_saved() {
        let mut img = image("a", "a");
        img.watchers.push(watcher(1, "10.0.0.1", 1));
        let s = sample(vec![(1, "p", vec![namespace("", vec![img])])]);
        let mut fs = FirstSeen::default();
        assert!(!fs.changed());
        fs.update(&s, 100.0);
        assert!(fs.changed(), "a new watcher");
        fs.mark_saved();
        fs.update(&s, 160.0);
        assert!(!fs.changed(), "the same watchers, the same times");
        fs.update(&sample(vec![(1, "p", vec![])]), 220.0);
        assert!(fs.changed(), "a watcher gone");
    }

    #[test]
    fn restored_times_are_used_for_the_same_watch_only() {
        let w = watcher(1, "10.0.0.1", 1);
        let mut img = image("a", "a");
        img.watchers.push(w.clone());
        // Same client and address, another cookie: another watch.
        img.watchers.push(watcher(1, "10.0.0.1", 2));
        let s = sample(vec![(1, "p", vec![namespace("", vec![img])])]);
        let restored: FirstSeenTimes = [(key(1, "a", w.clone()), 50.0)].into();
        let mut fs = FirstSeen::restored(restored, 100.0);
        let t = fs.update(&s, 100.0);
        assert_eq!(t[&key(1, "a", w)], 50.0);
        assert_eq!(t[&key(1, "a", watcher(1, "10.0.0.1", 2))], 100.0);
    }

    #[test]
    fn restored_times_wait_for_a_failed_pool_but_not_for_ever() {
        let w = watcher(1, "10.0.0.1", 1);
        let restored: FirstSeenTimes = [
            (key(1, "a", w.clone()), 50.0),
            (key(2, "b", w.clone()), 60.0),
            (key(3, "c", w.clone()), 70.0),
            (key(4, "d", w.clone()), 80.0),
        ]
        .into();
        let mut fs = FirstSeen::restored(restored, 100.0);
        // Pool 1 fails, pool 2 is good without the watcher, pool 3 skipped
        // image c, pool 4 is not sampled any more.
        let mut s = sample(vec![
            (1, "p1", vec![]),
            (2, "p2", vec![]),
            (3, "p3", vec![]),
        ]);
        let error = SampleError {
            kind: "timeout".into(),
            message: "slow".into(),
        };
        s.pools.get_mut(&1).unwrap().outcome = Err(error.clone());
        s.pools.get_mut(&3).unwrap().skipped.push(Skipped {
            namespace: String::new(),
            image_id: Some("c".into()),
            error,
        });
        assert!(fs.update(&s, 100.0).is_empty(), "none of them is current");
        let mut kept: Vec<f64> = fs.times().map(|(_, t)| t).collect();
        kept.sort_by(f64::total_cmp);
        assert_eq!(kept, vec![50.0, 70.0], "failed pool 1, skipped image c");
        assert!(fs.changed());

        // The pool answers again, with the watcher: its old time is back.
        let mut img = image("a", "a");
        img.watchers.push(w.clone());
        let good = sample(vec![(1, "p1", vec![namespace("", vec![img])])]);
        assert_eq!(fs.update(&good, 200.0)[&key(1, "a", w.clone())], 50.0);

        // A pool that keeps failing loses them a day after the restore.
        let restored: FirstSeenTimes = [(key(1, "a", w), 50.0)].into();
        let mut fs = FirstSeen::restored(restored, 100.0);
        fs.update(&s, 100.0 + RESTORED_GRACE_SECONDS);
        assert_eq!(fs.times().count(), 1);
        fs.update(&s, 101.0 + RESTORED_GRACE_SECONDS);
        assert_eq!(fs.times().count(), 0);
    }
}
