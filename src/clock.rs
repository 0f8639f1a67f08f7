//! Time: the Unix clock samples and source fetches are stamped with, and the
//! fixed-interval loop that both the sampling cycle and the attachment
//! refresh run on.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};

/// Seconds since the Unix epoch.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A fixed-interval schedule that ends at shutdown: the first tick is at
/// once; a run that overruns the interval delays the next tick instead of
/// bunching them up.
pub struct Every {
    /// The interval's ticks.
    ticker: Interval,
    /// Turns true (or closes) at shutdown.
    shutdown: watch::Receiver<bool>,
}

impl Every {
    /// Ticks every `interval` until `shutdown` changes.
    pub fn new(interval: Duration, shutdown: watch::Receiver<bool>) -> Every {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Every { ticker, shutdown }
    }

    /// Waits for the next tick; `false` when shutdown came first.
    pub async fn tick(&mut self) -> bool {
        tokio::select! {
            _ = self.ticker.tick() => true,
            _ = self.shutdown.changed() => false,
        }
    }

    /// Runs `work` to completion, or abandons it at shutdown (`None`).
    pub async fn run<T>(&mut self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            out = work => Some(out),
            _ = self.shutdown.changed() => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn ticks_at_once_then_every_interval_until_shutdown() {
        let runs = Arc::new(AtomicU32::new(0));
        let (stop, stopped) = watch::channel(false);
        let counted = runs.clone();
        let task = tokio::spawn(async move {
            let mut every = Every::new(Duration::from_secs(10), stopped);
            while every.tick().await {
                let work = async { counted.fetch_add(1, Ordering::SeqCst) };
                if every.run(work).await.is_none() {
                    return;
                }
            }
        });
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "at 0 s, 10 s and 20 s");
        stop.send(true).unwrap();
        task.await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "nothing after shutdown");
    }
}
