//! Time: the Unix clock samples and source fetches are stamped with, RFC
//! 3339 timestamps read as Unix time, and the fixed-interval loop that both
//! the sampling cycle and the attachment refresh run on.

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

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`), for years 0 to 9999.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days in `month` of `year`.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Seconds since the Unix epoch of an RFC 3339 timestamp, such as
/// Keystone's `expires_at` (`2030-11-07T02:58:43.578887Z`): a fraction of
/// a second is optional, the offset is `Z` or `±hh:mm`. `None` for
/// anything else, or for a date that does not exist.
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = bytes.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| bytes[i] != c)
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // ASCII up to here, so 19 is a character boundary.
    let mut rest = &text[19..];
    let mut fraction = 0.0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let n = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        fraction = format!("0.{}", &after_dot[..n]).parse().ok()?;
        rest = &after_dot[n..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (digits(text.len() - 5, 2)?, digits(text.len() - 2, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let seconds = h * 3600 + m * 60;
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(seconds as f64 + fraction)
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

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        // Keystone's expires_at, checked against Python's datetime.
        let keystone = parse_rfc3339("2030-11-07T02:58:43.578887Z").expect("keystone");
        assert!(
            (keystone - 1_920_250_723.578_887).abs() < 1e-5,
            "{keystone}"
        );
        assert_eq!(parse_rfc3339("2030-11-07T02:58:43Z"), Some(1_920_250_723.0));
        assert_eq!(
            parse_rfc3339("2030-11-07T03:58:43+01:00"),
            Some(1_920_250_723.0)
        );
        assert_eq!(
            parse_rfc3339("2030-11-06t21:28:43-05:30"),
            Some(1_920_250_723.0)
        );
        assert_eq!(parse_rfc3339("2000-02-29 00:00:00Z"), Some(951_782_400.0));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1.0));
        for bad in [
            "",
            "2030-11-07",
            "2030-11-07T02:58:43",
            "2030-11-07T02:58:43.Z",
            "2030-11-07T02:58:43.5",
            "2030-11-07T02:58:43+0100",
            "2030-11-07T02:58:43+24:00",
            "2030-13-07T02:58:43Z",
            "2001-02-29T00:00:00Z",
            "2030-11-07T24:00:00Z",
            "2030-11-07T02:60:00Z",
            "2030/11/07T02:58:43Z",
            "+030-11-07T02:58:43Z",
            "2030-11-07T02:58:43Zjunk",
            "2030-11-07T02:58:43Ü",
            "never",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

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
