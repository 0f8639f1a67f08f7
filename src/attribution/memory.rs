//! The last host each client address was named, so that a host source that
//! fails or stops answering (an attachment source down, reverse DNS timing
//! out, a node missing from one answer) does not blank the `host` label of
//! every watcher it named: the address keeps its last host for
//! `--watchers.host-retention` after it was last named, then it is unknown.
//! Pure: the caller gives the time.

use crate::analysis::Host;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// How long an address keeps its last host by default: an hour.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);

/// The last host of each address named within the retention.
#[derive(Debug, Clone)]
pub struct HostMemory {
    /// How long a host is kept after it was last named, in seconds; 0
    /// keeps nothing.
    retention: f64,
    /// The last host of each address, and when it was last named.
    last: HashMap<IpAddr, (Host, f64)>,
}

impl Default for HostMemory {
    fn default() -> Self {
        HostMemory::new(DEFAULT_RETENTION)
    }
}

impl HostMemory {
    /// A memory keeping hosts for `retention` after they were last named.
    pub fn new(retention: Duration) -> HostMemory {
        HostMemory {
            retention: retention.as_secs_f64(),
            last: HashMap::new(),
        }
    }

    /// Notes the hosts named at `now`, and returns, for the `unnamed`
    /// addresses, the host each was last named within the retention.
    /// Forgets every host last named longer ago than that, so the memory
    /// holds at most the addresses named within the retention.
    pub fn recall(
        &mut self,
        named: impl IntoIterator<Item = (IpAddr, Host)>,
        unnamed: impl IntoIterator<Item = IpAddr>,
        now: f64,
    ) -> HashMap<IpAddr, Host> {
        if self.retention <= 0.0 {
            self.last.clear();
            return HashMap::new();
        }
        for (ip, host) in named {
            self.last.insert(ip, (host, now));
        }
        let retention = self.retention;
        self.last.retain(|_, (_, at)| now - *at <= retention);
        unnamed
            .into_iter()
            .filter_map(|ip| self.last.get(&ip).map(|(h, _)| (ip, h.clone())))
            .collect()
    }

    /// How many addresses it holds.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn host(name: &str, via: &'static str) -> Host {
        Host {
            name: name.into(),
            role: None,
            via,
        }
    }

    #[test]
    fn an_address_keeps_its_last_host_for_the_retention_then_forgets_it() {
        let mut m = HostMemory::new(Duration::from_secs(3600));
        let a = ip("10.0.2.21");
        // Named at t=1000 and t=1060.
        assert!(
            m.recall([(a, host("node-a", "kubernetes"))], [], 1000.0)
                .is_empty()
        );
        m.recall([(a, host("node-a", "kubernetes"))], [], 1060.0);
        // The source goes down: the address is unnamed from t=1120 on.
        for t in [1120.0, 2000.0, 1060.0 + 3600.0] {
            let r = m.recall([], [a], t);
            assert_eq!(r[&a], host("node-a", "kubernetes"), "at {t}");
        }
        assert!(
            m.recall([], [a], 1060.0 + 3600.5).is_empty(),
            "past the retention"
        );
        assert!(m.is_empty(), "and forgotten");
        // Named again: remembered again.
        m.recall([(a, host("node-a", "kubernetes"))], [], 9000.0);
        assert_eq!(m.recall([], [a], 9001.0).len(), 1);
    }

    #[test]
    fn the_latest_name_wins_and_only_unnamed_addresses_are_recalled() {
        let mut m = HostMemory::default();
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        m.recall(
            [(a, host("old", "reverse_dns")), (b, host("b", "file"))],
            [],
            10.0,
        );
        m.recall([(a, host("new", "reverse_dns"))], [], 20.0);
        let r = m.recall([], [a, ip("10.0.0.3")], 30.0);
        assert_eq!(r.len(), 1, "b is not asked for, .3 never named");
        assert_eq!(r[&a].name, "new");
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn a_zero_retention_keeps_nothing() {
        let mut m = HostMemory::new(Duration::ZERO);
        let a = ip("10.0.0.1");
        m.recall([(a, host("a", "inventory"))], [], 10.0);
        assert!(m.recall([], [a], 10.0).is_empty());
        assert!(m.is_empty());
    }
}
