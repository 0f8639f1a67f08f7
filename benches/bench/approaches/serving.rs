//! (e) The exporter binary itself: its `dump` under /usr/bin/time -v for the
//! peak RSS, and serving with back-to-back samples while scrapers fetch
//! /metrics together.

use crate::args::Args;
use crate::cost::{median, percentile};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Peak RSS and wall time of the binary's one-shot sample (`dump`).
pub fn dump(args: &Args) -> Value {
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(&args.exporter)
        .args(["--ceph.config", &args.conf, "--pools", &args.pool])
        .args(["--log.level", "warn", "dump"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("/usr/bin/time -v");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dump failed: {err}");
    let field = |name: &str| {
        err.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    json!({
        "max_rss_kib": field("Maximum resident set size (kbytes):").parse::<u64>().unwrap_or(0),
        "wall": field("Elapsed (wall clock) time (h:mm:ss or m:ss):"),
    })
}

/// What one GET got.
struct Got {
    /// The status code.
    status: u16,
    /// The body's length as sent (compressed, when it was).
    body: usize,
    /// The response's Content-Encoding (empty when none).
    encoding: String,
}

/// One GET on a fresh connection, asking for gzip when `gzip`.
fn get(addr: &str, path: &str, gzip: bool) -> std::io::Result<Got> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_nodelay(true)?;
    let accept = if gzip {
        "Accept-Encoding: gzip\r\n"
    } else {
        ""
    };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut buf = Vec::with_capacity(1 << 20);
    s.read_to_end(&mut buf)?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let encoding = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-encoding")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    // Chunked bodies count their framing too: a few bytes per chunk.
    Ok(Got {
        status,
        body: buf.len() - head_end - 4,
        encoding,
    })
}

/// (end of sample, its duration) as the exporter's log reports them.
type SampleLog = Arc<Mutex<Vec<(Instant, f64)>>>;

/// A running exporter binary, killed when dropped (also when the bench
/// panics).
struct Serving(
    /// The process.
    std::process::Child,
);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How long the binary may take to serve and to finish its first sample
/// (a cold sample of 100000 images takes tens of seconds here).
const FIRST_SAMPLE: Duration = Duration::from_secs(600);

/// Starts the binary serving `pool` with back-to-back samples
/// (`--sample.interval 1s`) and waits for its first sample: (child,
/// address, sample log).
fn serve(args: &Args, pool: &str, extra: &[&str]) -> (Serving, String, SampleLog) {
    let mut child = Command::new(&args.exporter)
        .args(["--ceph.config", &args.conf, "--pools", pool])
        .args(["--sample.interval", "1s", "--log.level", "debug"])
        .args(["--web.listen-address", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the exporter");
    let stderr = child.stderr.take().unwrap();
    let samples: SampleLog = Arc::default();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    {
        let samples = samples.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(a) = line.split("address=").nth(1) {
                    let _ = addr_tx.send(a.split_whitespace().next().unwrap_or("").to_string());
                }
                if line.contains("sample done") {
                    let secs = line
                        .split("seconds=")
                        .nth(1)
                        .and_then(|s| s.split_whitespace().next())
                        .and_then(|s| s.parse::<f64>().ok())
                        .unwrap_or(0.0);
                    samples.lock().unwrap().push((Instant::now(), secs));
                }
            }
        });
    }
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("exporter did not start serving");
    let deadline = Instant::now() + FIRST_SAMPLE;
    while samples.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no sample within {FIRST_SAMPLE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Serving(child), addr, samples)
}

/// Peak RSS of the binary serving `pool` after `samples` samples with
/// `extra` flags.
pub fn serve_rss(args: &Args, pool: &str, extra: &[&str], samples: usize) -> u64 {
    let (child, _, log) = serve(args, pool, extra);
    let deadline = Instant::now() + FIRST_SAMPLE;
    while log.lock().unwrap().len() < samples && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    vmhwm_kib(child.0.id())
}

/// A process's peak RSS (VmHWM), in KiB; 0 when unknown.
fn vmhwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// What the scrapers did.
struct Scrapes {
    /// When they started.
    start: Instant,
    /// How long they ran, in seconds.
    elapsed: f64,
    /// (start, end) of every successful scrape.
    requests: Vec<(Instant, Instant)>,
    /// Scrapes that failed.
    errors: usize,
}

/// Runs `args.scrapers` scrapers against `addr` for `args.scrape_seconds`,
/// asking for gzip when `gzip`.
///
/// Every scraper fires at the same instants, `interval` apart (0: as fast
/// as it can), so each tick is a burst of `scrapers` concurrent requests; a
/// tick missed while a scrape was slow is skipped.
fn run_scrapers(args: &Args, addr: &str, gzip: bool) -> Scrapes {
    let stop = Arc::new(AtomicBool::new(false));
    let t_start = Instant::now();
    let interval = Duration::from_millis(args.scrape_interval_ms);
    let handles: Vec<_> = (0..args.scrapers)
        .map(|_| {
            let (addr, stop) = (addr.to_string(), stop.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let mut errors = 0usize;
                let mut tick = t_start;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if tick > now {
                        std::thread::sleep(tick - now);
                    }
                    let t0 = Instant::now();
                    match get(&addr, "/metrics", gzip) {
                        Ok(Got { status: 200, .. }) => out.push((t0, Instant::now())),
                        _ => errors += 1,
                    }
                    if !interval.is_zero() {
                        while tick <= Instant::now() {
                            tick += interval;
                        }
                    }
                }
                (out, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(args.scrape_seconds));
    stop.store(true, Ordering::Relaxed);
    let mut requests = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (r, e) = h.join().unwrap();
        requests.extend(r);
        errors += e;
    }
    Scrapes {
        start: t_start,
        elapsed: t_start.elapsed().as_secs_f64(),
        requests,
        errors,
    }
}

/// The samples (start, end) that overlapped the scrapes.
fn sample_windows(samples: &SampleLog, scrapes: &Scrapes) -> Vec<(Instant, Instant)> {
    let t_start = scrapes.start;
    let t_end = t_start + Duration::from_secs_f64(scrapes.elapsed);
    samples
        .lock()
        .unwrap()
        .iter()
        .filter_map(|&(end, secs)| {
            end.checked_sub(Duration::from_secs_f64(secs))
                .map(|s| (s, end))
        })
        .filter(|(s, e)| *e > t_start && *s < t_end)
        .collect()
}

/// Count, p50, p99 and max of sorted latencies in milliseconds.
fn latency_stats(v: &[f64]) -> Value {
    json!({
        "requests": v.len(),
        "p50_ms": percentile(v, 0.5),
        "p99_ms": percentile(v, 0.99),
        "max_ms": v.last().copied().unwrap_or(f64::NAN),
    })
}

/// Starts the binary serving with back-to-back samples, runs the scrapers
/// without gzip, then asking for it, and reports latencies of all scrapes
/// and of those that overlapped a sample, and the peak RSS after both.
pub fn scrape(args: &Args) -> Value {
    let (child, addr, samples) = serve(args, &args.pool, &[]);
    let pid = child.0.id();
    let mut out = json!({
        "scrapers": args.scrapers,
        "interval_ms": args.scrape_interval_ms,
    });
    for (key, gzip) in [("plain", false), ("gzip", true)] {
        let first = get(&addr, "/metrics", gzip).expect("scrape");
        let scrapes = run_scrapers(args, &addr, gzip);
        let mut j = scrape_json(&scrapes, &samples);
        j["body_bytes"] = json!(first.body);
        j["content_encoding"] = json!(first.encoding);
        if key == "plain" {
            // The earlier reports' fields.
            for (k, v) in j.as_object().unwrap() {
                out[k] = v.clone();
            }
        }
        out[key] = j;
    }
    out["vmhwm_kib"] = json!(vmhwm_kib(pid));
    drop(child);
    out
}

/// The scrapes' latencies, overall and of those that overlapped a sample.
fn scrape_json(scrapes: &Scrapes, samples: &SampleLog) -> Value {
    let t_start = scrapes.start;
    let in_window = sample_windows(samples, scrapes);
    let busy: f64 = in_window
        .iter()
        .map(|(s, e)| {
            let s = (*s).max(t_start);
            e.duration_since(s).as_secs_f64()
        })
        .sum();
    let mut during = Vec::new();
    let mut all = Vec::new();
    for (s, e) in &scrapes.requests {
        let ms = e.duration_since(*s).as_secs_f64() * 1000.0;
        all.push(ms);
        if in_window.iter().any(|(ws, we)| s < we && e > ws) {
            during.push(ms);
        }
    }
    during.sort_by(|a, b| a.total_cmp(b));
    all.sort_by(|a, b| a.total_cmp(b));
    let sample_secs: Vec<f64> = in_window
        .iter()
        .map(|(s, e)| e.duration_since(*s).as_secs_f64())
        .collect();
    json!({
        "seconds": scrapes.elapsed,
        "errors": scrapes.errors,
        "samples_overlapping": in_window.len(),
        "sample_median_s": median(&sample_secs),
        "sampling_share": busy / scrapes.elapsed,
        "during_sample": latency_stats(&during),
        "all": latency_stats(&all),
    })
}
