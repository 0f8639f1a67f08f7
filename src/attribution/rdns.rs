//! Optional reverse DNS for watcher addresses (`--watchers.reverse-dns`):
//! cached, bounded in concurrency, and never holding a sample up for longer
//! than the budget it is given.
//!
//! Lookups run `getnameinfo(NI_NAMEREQD)` on tokio's blocking pool, at most
//! [`MAX_CONCURRENT_LOOKUPS`] at a time. A lookup still running when the
//! caller's budget is spent keeps running in the background and fills the
//! cache for the next call. Names are kept for `ttl`, failures and "no name"
//! for `negative_ttl`; a name whose refresh fails (timeout, `EAI_AGAIN`) is
//! kept, so a DNS outage does not make host labels flap.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// Most reverse lookups running at once.
pub const MAX_CONCURRENT_LOOKUPS: usize = 16;

/// Most addresses cached; the oldest entry goes first.
pub const CACHE_CAPACITY: usize = 65_536;

/// The answer of one reverse lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The address has this name.
    Name(String),
    /// The address has no name (`EAI_NONAME`).
    NoName,
    /// The lookup failed for now (timeout, `EAI_AGAIN`, server failure).
    Failed,
}

/// Something that can map an address to a name. Called on tokio's blocking
/// pool, so it may block. Closures `Fn(IpAddr) -> Lookup` are resolvers too,
/// which is how tests inject a fake.
pub trait Resolver: Send + Sync + 'static {
    /// Looks `ip` up.
    fn lookup(&self, ip: IpAddr) -> Lookup;
}

impl<F> Resolver for F
where
    F: Fn(IpAddr) -> Lookup + Send + Sync + 'static,
{
    fn lookup(&self, ip: IpAddr) -> Lookup {
        self(ip)
    }
}

/// The system resolver: `getnameinfo(3)` with `NI_NAMEREQD`, so /etc/hosts,
/// DNS and whatever nsswitch.conf says, with the resolver's own timeouts.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup(&self, ip: IpAddr) -> Lookup {
        getnameinfo(ip)
    }
}

fn getnameinfo(ip: IpAddr) -> Lookup {
    // NI_MAXHOST.
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: the sockaddr structs are plain C data, zero-initialised and
    // then filled in; getnameinfo reads `len` bytes of the one we pass and
    // writes at most `host.len()` bytes (NUL included) into `host`.
    let rc = unsafe {
        match ip {
            IpAddr::V4(a) => {
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_addr = libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.octets()),
                };
                libc::getnameinfo(
                    &sa as *const libc::sockaddr_in as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
            IpAddr::V6(a) => {
                let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_addr = libc::in6_addr {
                    s6_addr: a.octets(),
                };
                libc::getnameinfo(
                    &sa as *const libc::sockaddr_in6 as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
        }
    };
    match rc {
        0 => {
            // SAFETY: on success getnameinfo wrote a NUL-terminated string.
            let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
            clean_name(&name.to_string_lossy())
        }
        libc::EAI_NONAME => Lookup::NoName,
        _ => Lookup::Failed,
    }
}

/// A usable name, or `NoName` for an empty one or one that is just an address
/// (what some resolvers answer instead of failing).
fn clean_name(name: &str) -> Lookup {
    let name = name.trim().trim_end_matches('.');
    if name.is_empty() || name.parse::<IpAddr>().is_ok() || name.contains('\u{fffd}') {
        Lookup::NoName
    } else {
        Lookup::Name(name.to_string())
    }
}

/// Cached, bounded reverse DNS. Cheap to clone (clones share the cache).
#[derive(Clone)]
pub struct ReverseDns {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: Arc<dyn Resolver>,
    lookup_timeout: Duration,
    ttl: Duration,
    negative_ttl: Duration,
    capacity: usize,
    permits: Arc<Semaphore>,
    state: Mutex<State>,
    /// Bumped after every cache write and every finished lookup.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    entries: HashMap<IpAddr, Entry>,
    /// Write sequence number -> address, oldest first, for eviction.
    age: BTreeMap<u64, IpAddr>,
    next_seq: u64,
    /// Addresses with a lookup queued or running.
    in_flight: HashSet<IpAddr>,
}

struct Entry {
    name: Option<String>,
    expires: Instant,
    seq: u64,
}

impl fmt::Debug for ReverseDns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state();
        f.debug_struct("ReverseDns")
            .field("lookup_timeout", &self.inner.lookup_timeout)
            .field("ttl", &self.inner.ttl)
            .field("negative_ttl", &self.inner.negative_ttl)
            .field("cached", &st.entries.len())
            .field("in_flight", &st.in_flight.len())
            .finish()
    }
}

impl ReverseDns {
    /// Reverse DNS with the system resolver. A lookup taking longer than
    /// `lookup_timeout` counts as failed (its late answer still fills the
    /// cache); names are cached for `ttl`, failures and missing names for
    /// `negative_ttl`.
    pub fn new(lookup_timeout: Duration, ttl: Duration, negative_ttl: Duration) -> Self {
        Self::with_resolver(Arc::new(SystemResolver), lookup_timeout, ttl, negative_ttl)
    }

    /// The same with another resolver (tests use a fake one).
    pub fn with_resolver(
        resolver: Arc<dyn Resolver>,
        lookup_timeout: Duration,
        ttl: Duration,
        negative_ttl: Duration,
    ) -> Self {
        Self::with_limits(
            resolver,
            lookup_timeout,
            ttl,
            negative_ttl,
            MAX_CONCURRENT_LOOKUPS,
            CACHE_CAPACITY,
        )
    }

    fn with_limits(
        resolver: Arc<dyn Resolver>,
        lookup_timeout: Duration,
        ttl: Duration,
        negative_ttl: Duration,
        concurrency: usize,
        capacity: usize,
    ) -> Self {
        ReverseDns {
            inner: Arc::new(Inner {
                resolver,
                lookup_timeout,
                ttl,
                negative_ttl,
                capacity: capacity.max(1),
                permits: Arc::new(Semaphore::new(concurrency.max(1))),
                state: Mutex::new(State::default()),
                changed: watch::Sender::new(0),
            }),
        }
    }

    /// Names for `ips`. Cached, unexpired answers come straight from the
    /// cache. The others are looked up concurrently (at most
    /// [`MAX_CONCURRENT_LOOKUPS`] at a time, one lookup per address however
    /// many callers ask) and waited for until `budget` is spent; lookups not
    /// done by then go on in the background and fill the cache for the next
    /// call. An address without an answer yet is `None`, unless an expired
    /// name is cached: that name is returned while it is being refreshed.
    ///
    /// Never waits longer than `budget`. Must be called within a tokio
    /// runtime.
    pub async fn resolve(
        &self,
        ips: &[IpAddr],
        budget: Duration,
    ) -> HashMap<IpAddr, Option<String>> {
        let deadline = deadline_after(tokio::time::Instant::now(), budget);
        let mut changes = self.inner.changed.subscribe();
        let mut waiting = Vec::new();
        let mut start = Vec::new();
        let start_seq;
        {
            let mut st = self.inner.state();
            start_seq = st.next_seq;
            let now = Instant::now();
            let mut seen = HashSet::with_capacity(ips.len());
            for &ip in ips {
                if !seen.insert(ip) {
                    continue;
                }
                if st.entries.get(&ip).is_some_and(|e| e.expires > now) {
                    continue;
                }
                waiting.push(ip);
                if st.in_flight.insert(ip) {
                    start.push(ip);
                }
            }
        }
        for ip in start {
            self.inner.clone().spawn_lookup(ip);
        }
        while !waiting.is_empty() {
            {
                let st = self.inner.state();
                // Done: answered during this call, or no lookup is running
                // any more (its answer may have been evicted already).
                waiting.retain(|ip| {
                    st.in_flight.contains(ip)
                        && st.entries.get(ip).is_none_or(|e| e.seq < start_seq)
                });
            }
            if waiting.is_empty() || tokio::time::Instant::now() >= deadline {
                break;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        let st = self.inner.state();
        ips.iter()
            .map(|ip| (*ip, st.entries.get(ip).and_then(|e| e.name.clone())))
            .collect()
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.inner.state().entries.len()
    }
}

fn deadline_after(now: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86400 * 365))
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the cache inconsistent
        // in a way that matters more than losing reverse DNS.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_lookup(self: Arc<Self>, ip: IpAddr) {
        tokio::spawn(async move {
            let permit = match self.permits.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => {
                    self.finish(ip);
                    return;
                }
            };
            let resolver = self.resolver.clone();
            let mut handle = tokio::task::spawn_blocking(move || {
                // The permit is held until the resolver returns, so at most
                // MAX_CONCURRENT_LOOKUPS blocking threads ever do DNS, even
                // when lookups outlive their timeout.
                let answer = resolver.lookup(ip);
                drop(permit);
                answer
            });
            match tokio::time::timeout(self.lookup_timeout, &mut handle).await {
                Ok(answer) => self.store(ip, answer.unwrap_or(Lookup::Failed)),
                Err(_) => {
                    self.store(ip, Lookup::Failed);
                    // A late real answer is still worth keeping.
                    if let Ok(answer @ (Lookup::Name(_) | Lookup::NoName)) = handle.await {
                        self.store(ip, answer);
                    }
                }
            }
            self.finish(ip);
        });
    }

    fn store(&self, ip: IpAddr, answer: Lookup) {
        {
            let mut st = self.state();
            let now = Instant::now();
            let (name, ttl) = match answer {
                Lookup::Name(n) => (Some(n), self.ttl),
                Lookup::NoName => (None, self.negative_ttl),
                Lookup::Failed => (
                    st.entries.get(&ip).and_then(|e| e.name.clone()),
                    self.negative_ttl,
                ),
            };
            let seq = st.next_seq;
            st.next_seq += 1;
            let expires = now
                .checked_add(ttl)
                .unwrap_or(now + Duration::from_secs(86400 * 365));
            if let Some(old) = st.entries.insert(ip, Entry { name, expires, seq }) {
                st.age.remove(&old.seq);
            }
            st.age.insert(seq, ip);
            while st.entries.len() > self.capacity {
                let Some((_, oldest)) = st.age.pop_first() else {
                    break;
                };
                st.entries.remove(&oldest);
            }
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn finish(&self, ip: IpAddr) {
        self.state().in_flight.remove(&ip);
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Condvar;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A gate resolver threads wait at until it is opened.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        cv: Condvar,
    }

    /// Opens the gate when dropped, also while a failed assertion unwinds:
    /// a resolver thread left waiting at a closed gate would make the test
    /// runtime's shutdown wait for it forever, hiding the failure as a hang.
    struct OpenOnDrop<'a>(&'a Gate);

    impl Drop for OpenOnDrop<'_> {
        fn drop(&mut self) {
            self.0.open();
        }
    }

    impl Gate {
        fn wait(&self) {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.cv.wait(open).unwrap();
            }
        }
        fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.cv.notify_all();
        }
    }

    /// Counts lookups per address; answers `host-<last octet>`.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<HashMap<IpAddr, usize>>,
        /// Addresses whose lookup waits for the gate.
        slow: HashSet<IpAddr>,
        gate: Gate,
        /// Scripted answers, consumed in order; afterwards the default name.
        script: Mutex<HashMap<IpAddr, Vec<Lookup>>>,
        running: AtomicUsize,
        max_running: AtomicUsize,
        sleep: Duration,
    }

    impl Fake {
        fn calls(&self, ip: IpAddr) -> usize {
            self.calls.lock().unwrap().get(&ip).copied().unwrap_or(0)
        }
    }

    impl Resolver for Fake {
        fn lookup(&self, ip: IpAddr) -> Lookup {
            *self.calls.lock().unwrap().entry(ip).or_default() += 1;
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now, Ordering::SeqCst);
            if self.slow.contains(&ip) {
                self.gate.wait();
            }
            if !self.sleep.is_zero() {
                std::thread::sleep(self.sleep);
            }
            self.running.fetch_sub(1, Ordering::SeqCst);
            let scripted = {
                let mut s = self.script.lock().unwrap();
                s.get_mut(&ip)
                    .filter(|v| !v.is_empty())
                    .map(|v| v.remove(0))
            };
            scripted.unwrap_or_else(|| match ip {
                IpAddr::V4(a) => Lookup::Name(format!("host-{}", a.octets()[3])),
                IpAddr::V6(_) => Lookup::NoName,
            })
        }
    }

    const LONG: Duration = Duration::from_secs(3600);

    fn rdns(fake: &Arc<Fake>, timeout: Duration, ttl: Duration, neg: Duration) -> ReverseDns {
        ReverseDns::with_resolver(fake.clone(), timeout, ttl, neg)
    }

    /// Polls until `f` holds (bounded), for background work.
    async fn eventually(mut f: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f().await {
            assert!(Instant::now() < deadline, "condition never held");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn answers_and_caches() {
        let fake = Arc::new(Fake::default());
        let r = rdns(&fake, LONG, LONG, LONG);
        let (a, b, v6) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("fd00::1"));
        let got = r.resolve(&[a, b, a, v6], Duration::from_secs(10)).await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[&a].as_deref(), Some("host-1"));
        assert_eq!(got[&b].as_deref(), Some("host-2"));
        assert_eq!(got[&v6], None);
        assert_eq!((fake.calls(a), fake.calls(b), fake.calls(v6)), (1, 1, 1));
        // Second call: all from the cache, negative answers included.
        let got = r.resolve(&[a, b, v6], Duration::ZERO).await;
        assert_eq!(got[&a].as_deref(), Some("host-1"));
        assert_eq!(got[&v6], None);
        assert_eq!((fake.calls(a), fake.calls(b), fake.calls(v6)), (1, 1, 1));
        // A clone shares the cache.
        let got = r.clone().resolve(&[b], Duration::ZERO).await;
        assert_eq!(got[&b].as_deref(), Some("host-2"));
        assert_eq!(fake.calls(b), 1);
        assert!(r.resolve(&[], Duration::ZERO).await.is_empty());
    }

    #[tokio::test]
    async fn never_waits_past_the_budget_and_fills_the_cache_later() {
        let (fast, slow) = (ip("10.0.0.1"), ip("10.0.0.9"));
        let fake = Arc::new(Fake {
            slow: [slow].into(),
            ..Default::default()
        });
        let _open = OpenOnDrop(&fake.gate);
        let r = rdns(&fake, LONG, LONG, LONG);
        let t = Instant::now();
        let got = r.resolve(&[fast, slow], Duration::from_millis(200)).await;
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(150), "{took:?}");
        // The slow lookup is blocked for good until the gate opens: only the
        // budget can have ended the call.
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(got[&fast].as_deref(), Some("host-1"));
        assert_eq!(got[&slow], None);

        // Asked again while the lookup still runs: no second lookup.
        let got = r.resolve(&[slow], Duration::from_millis(50)).await;
        assert_eq!(got[&slow], None);
        assert_eq!(fake.calls(slow), 1);

        // The lookup finishes in the background and fills the cache.
        fake.gate.open();
        eventually(async || {
            r.resolve(&[slow], Duration::ZERO).await[&slow].as_deref() == Some("host-9")
        })
        .await;
        assert_eq!(fake.calls(slow), 1);
        assert_eq!(fake.calls(fast), 1);
    }

    #[tokio::test]
    async fn a_zero_budget_answers_from_the_cache_only() {
        let fake = Arc::new(Fake::default());
        let r = rdns(&fake, LONG, LONG, LONG);
        let a = ip("10.0.0.3");
        let got = r.resolve(&[a], Duration::ZERO).await;
        assert_eq!(got[&a], None);
        eventually(async || r.resolve(&[a], Duration::ZERO).await[&a].is_some()).await;
        assert_eq!(fake.calls(a), 1);
    }

    #[tokio::test]
    async fn entries_expire_after_their_ttl() {
        let (named, unnamed) = (ip("10.0.0.1"), ip("fd00::1"));
        let fake = Arc::new(Fake::default());
        let r = rdns(
            &fake,
            LONG,
            Duration::from_millis(2000),
            Duration::from_millis(400),
        );
        let budget = Duration::from_secs(10);
        r.resolve(&[named, unnamed], budget).await;
        r.resolve(&[named, unnamed], budget).await;
        assert_eq!((fake.calls(named), fake.calls(unnamed)), (1, 1));
        // The negative answer expires first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        r.resolve(&[named, unnamed], budget).await;
        assert_eq!(fake.calls(unnamed), 2);
        // Then the name (2 s after it was cached).
        eventually(async || {
            r.resolve(&[named], budget).await;
            fake.calls(named) == 2
        })
        .await;
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_name_and_no_name_removes_it() {
        let a = ip("10.0.0.7");
        let fake = Arc::new(Fake {
            script: Mutex::new(
                [(
                    a,
                    vec![Lookup::Name("old".into()), Lookup::Failed, Lookup::NoName],
                )]
                .into(),
            ),
            ..Default::default()
        });
        let r = rdns(
            &fake,
            LONG,
            Duration::from_millis(50),
            Duration::from_millis(50),
        );
        let budget = Duration::from_secs(10);
        assert_eq!(r.resolve(&[a], budget).await[&a].as_deref(), Some("old"));
        tokio::time::sleep(Duration::from_millis(80)).await;
        // Refresh fails (DNS down): the name stays.
        assert_eq!(r.resolve(&[a], budget).await[&a].as_deref(), Some("old"));
        assert_eq!(fake.calls(a), 2);
        tokio::time::sleep(Duration::from_millis(80)).await;
        // The name is gone from DNS.
        assert_eq!(r.resolve(&[a], budget).await[&a], None);
        assert_eq!(fake.calls(a), 3);
    }

    #[tokio::test]
    async fn a_slow_lookup_times_out_and_its_late_answer_is_kept() {
        let slow = ip("10.0.0.5");
        let fake = Arc::new(Fake {
            slow: [slow].into(),
            ..Default::default()
        });
        let _open = OpenOnDrop(&fake.gate);
        let r = rdns(&fake, Duration::from_millis(100), LONG, LONG);
        let t = Instant::now();
        // The budget is long; the lookup timeout ends the wait.
        let got = r.resolve(&[slow], Duration::from_secs(20)).await;
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(got[&slow], None);
        // Cached as failed: no new lookup.
        r.resolve(&[slow], Duration::ZERO).await;
        assert_eq!(fake.calls(slow), 1);
        fake.gate.open();
        eventually(async || r.resolve(&[slow], Duration::ZERO).await[&slow].is_some()).await;
        assert_eq!(fake.calls(slow), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookups_are_bounded_in_concurrency() {
        let fake = Arc::new(Fake {
            sleep: Duration::from_millis(20),
            ..Default::default()
        });
        let r = rdns(&fake, LONG, LONG, LONG);
        let ips: Vec<IpAddr> = (0..100u32)
            .map(|i| IpAddr::V4((0x0a00_0000 + i).into()))
            .collect();
        let got = r.resolve(&ips, Duration::from_secs(30)).await;
        assert!(got.values().all(|n| n.is_some()));
        let max = fake.max_running.load(Ordering::SeqCst);
        assert!(max <= MAX_CONCURRENT_LOOKUPS, "{max} lookups at once");
        assert!(max > 1, "lookups did not overlap");
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_drops_the_oldest() {
        let fake = Arc::new(Fake::default());
        let r = ReverseDns::with_limits(fake.clone(), LONG, LONG, LONG, 4, 4);
        let budget = Duration::from_secs(10);
        for i in 1..=10u8 {
            let a = IpAddr::from([10, 0, 0, i]);
            assert_eq!(r.resolve(&[a], budget).await[&a], Some(format!("host-{i}")));
        }
        assert_eq!(r.cached(), 4);
        // 10.0.0.10 is cached, 10.0.0.1 was evicted.
        r.resolve(&[ip("10.0.0.10"), ip("10.0.0.1")], budget).await;
        assert_eq!(fake.calls(ip("10.0.0.10")), 1);
        assert_eq!(fake.calls(ip("10.0.0.1")), 2);
        // More addresses in one call than the cache holds: still answered.
        let many: Vec<IpAddr> = (20..40u8).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        let got = r.resolve(&many, budget).await;
        assert_eq!(got.len(), 20);
        assert!(r.cached() <= 4);
    }

    #[test]
    fn names_that_are_addresses_are_no_names() {
        assert_eq!(clean_name("10.0.0.1"), Lookup::NoName);
        assert_eq!(clean_name("::1"), Lookup::NoName);
        assert_eq!(clean_name(""), Lookup::NoName);
        assert_eq!(
            clean_name("compute-1.example."),
            Lookup::Name("compute-1.example".into())
        );
    }

    /// The real resolver: /etc/hosts maps 127.0.0.1 to localhost.
    #[tokio::test]
    async fn system_resolver_on_loopback() {
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let mapped = hosts.lines().any(|l| {
            let mut f = l.split_whitespace();
            f.next() == Some("127.0.0.1") && f.any(|n| n == "localhost")
        });
        let r = ReverseDns::new(Duration::from_secs(5), LONG, LONG);
        let lo = ip("127.0.0.1");
        let got = r.resolve(&[lo], Duration::from_secs(5)).await;
        if mapped {
            assert_eq!(got[&lo].as_deref(), Some("localhost"));
        }
        // The name, not the address, or nothing: never "127.0.0.1".
        assert_ne!(got[&lo].as_deref(), Some("127.0.0.1"));
    }
}
