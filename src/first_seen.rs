//! When each watch was first seen, remembered across samples, so that
//! "held for three days" can be told from "opened a minute ago". Without a
//! state file the times start again when the exporter restarts.

use crate::model::{ImageKey, Sample, Watcher};
use std::collections::HashMap;

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
    seen: FirstSeenTimes,
}

impl FirstSeen {
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
                let t = self.seen.get(&key).copied().unwrap_or(now);
                current.insert(key, t);
            }
        }
        self.seen = current.clone();
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::fixtures::*;

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
}
