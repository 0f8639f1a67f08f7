//! Throttling and pacing of RADOS operations: the in-flight count (current
//! and peak) that [`RadosConn`](super::RadosConn) reports, the guard that
//! ends an in-flight operation, and the pacer behind
//! `--sample.max-ops-per-second`.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Counts RADOS operations from submission until librados completes them
/// (reply, error or `rados_osd_op_timeout`), whether or not anyone still
/// waits for the result, and remembers the most at once.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl InFlight {
    /// One more operation in flight.
    pub(super) fn start(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
    }

    /// One operation fewer in flight.
    pub(super) fn end(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    /// Operations in flight right now.
    pub(super) fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    /// Most operations in flight at once since creation or the last
    /// [`reset_peak`](Self::reset_peak).
    pub(super) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Starts a new peak from the operations in flight now.
    pub(super) fn reset_peak(&self) {
        self.peak
            .store(self.now.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// Ends one in-flight operation when dropped (mon commands: also on panic).
pub(super) struct InFlightGuard(pub(super) Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A pacer shared by every pool and task of a connection: operations leave
/// at least `interval` apart, in the order they asked. No credit builds up
/// while idle, so a sample never starts with a burst.
#[derive(Debug)]
pub(super) struct Pacer {
    interval: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl Pacer {
    /// `None` for a rate that is not a positive finite number.
    pub(super) fn new(ops_per_second: f64) -> Option<Pacer> {
        if !(ops_per_second.is_finite() && ops_per_second > 0.0) {
            return None;
        }
        Some(Pacer {
            interval: Duration::from_secs_f64(1.0 / ops_per_second),
            next: Mutex::new(tokio::time::Instant::now()),
        })
    }

    /// Waits for this operation's slot.
    pub(super) async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pacer_spaces_operations_across_tasks() {
        assert!(Pacer::new(0.0).is_none());
        assert!(Pacer::new(-1.0).is_none());
        assert!(Pacer::new(f64::NAN).is_none());
        assert!(Pacer::new(f64::INFINITY).is_none());
        let pacer = Arc::new(Pacer::new(200.0).unwrap());
        let t0 = std::time::Instant::now();
        let tasks: Vec<_> = (0..21)
            .map(|_| {
                let p = pacer.clone();
                tokio::spawn(async move { p.wait().await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // 21 operations at 200/s: the first leaves at once, the last 100 ms later.
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(99), "{took:?}");
        assert!(took < Duration::from_millis(400), "{took:?}");
        // Idle time earns no burst: the next one waits for its own slot only.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t1 = std::time::Instant::now();
        pacer.wait().await;
        pacer.wait().await;
        let took = t1.elapsed();
        assert!(took >= Duration::from_millis(4), "{took:?}");
    }

    #[test]
    fn inflight_counts_current_and_peak() {
        let f = Arc::new(InFlight::default());
        f.start();
        f.start();
        f.end();
        f.start();
        f.start();
        assert_eq!(f.now.load(Ordering::SeqCst), 3);
        assert_eq!(f.peak.load(Ordering::SeqCst), 3);
        drop(InFlightGuard(f.clone()));
        f.end();
        f.end();
        assert_eq!(f.now.load(Ordering::SeqCst), 0);
        assert_eq!(f.peak.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn reset_peak_starts_from_the_current_count() {
        let f = InFlight::default();
        f.start();
        f.start();
        f.end();
        assert_eq!((f.now(), f.peak()), (1, 2));
        f.reset_peak();
        assert_eq!((f.now(), f.peak()), (1, 1));
    }
}
