//! What a run costs: wall time, the OSD's op counters and CPU time, the
//! bench process's CPU time; and how runs are summed up (medians, means).

use serde_json::{Value, json};
use std::process::Command;

/// The OSD whose counters and CPU time every run is charged with.
pub struct Osd {
    /// Its admin socket (`perf dump`).
    asok: String,
    /// Its pid, for /proc.
    pid: String,
}

/// Cluster-side and client-side cost of one run.
pub struct Cost {
    /// Wall time, as the run measured it.
    pub secs: f64,
    /// Client ops the OSD counted (`osd.op`).
    pub osd_ops: u64,
    /// Client reads the OSD counted (`osd.op_r`).
    pub osd_op_r: u64,
    /// CPU seconds the OSD used.
    pub osd_cpu: f64,
    /// CPU seconds the bench process used.
    pub client_cpu: f64,
}

impl Osd {
    /// The OSD behind `asok`, its pid read from `pid_file`.
    pub fn new(asok: &str, pid_file: &str) -> Osd {
        let pid = std::fs::read_to_string(pid_file)
            .expect("osd pid file")
            .trim()
            .to_string();
        Osd {
            asok: asok.to_string(),
            pid,
        }
    }

    /// The OSD's client-op counters (`osd.op`, `osd.op_r`).
    fn ops(&self) -> (u64, u64) {
        let out = Command::new("ceph")
            .args(["--admin-daemon", &self.asok, "perf", "dump"])
            .output()
            .expect("ceph --admin-daemon");
        assert!(out.status.success(), "perf dump failed");
        let v: Value = serde_json::from_slice(&out.stdout).expect("perf dump JSON");
        (
            v["osd"]["op"].as_u64().unwrap_or(0),
            v["osd"]["op_r"].as_u64().unwrap_or(0),
        )
    }

    /// Cluster-side and client-side cost of one run of `f`, which returns
    /// its own wall time.
    pub fn costed(&self, f: impl FnOnce() -> f64) -> Cost {
        let (op0, r0) = self.ops();
        let c0 = cpu_seconds(&self.pid);
        let s0 = self_cpu_seconds();
        let secs = f();
        let s1 = self_cpu_seconds();
        let c1 = cpu_seconds(&self.pid);
        let (op1, r1) = self.ops();
        Cost {
            secs,
            osd_ops: op1 - op0,
            osd_op_r: r1 - r0,
            osd_cpu: c1 - c0,
            client_cpu: s1 - s0,
        }
    }

    /// `times` costed runs of `run`, which returns (seconds, errors), with
    /// `after` called after each: the runs and their errors summed.
    pub fn costed_runs(
        &self,
        times: usize,
        mut run: impl FnMut() -> (f64, usize),
        mut after: impl FnMut(),
    ) -> (Vec<Cost>, usize) {
        let mut runs = Vec::new();
        let mut errors = 0;
        for _ in 0..times {
            runs.push(self.costed(|| {
                let (secs, e) = run();
                errors += e;
                secs
            }));
            after();
        }
        (runs, errors)
    }
}

/// CPU seconds used so far by every live thread of a process.
fn cpu_seconds(pid: &str) -> f64 {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    ns as f64 / 1e9
}

/// CPU seconds this process used so far, exited threads included.
fn self_cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are 11 and 12 after the command.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// The median (the upper one of an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    s[s.len() / 2]
}

/// The `p` quantile (0 to 1) of sorted values, nearest rank; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Runs over a pool of `n` images as results JSON: times, and the mean
/// cost per run.
pub fn cost_json(runs: &[Cost], n: usize) -> Value {
    let secs: Vec<f64> = runs.iter().map(|c| c.secs).collect();
    let m = runs.len().max(1) as f64;
    let osd_ops = runs.iter().map(|c| c.osd_ops).sum::<u64>() as f64 / m;
    json!({
        "runs_s": secs,
        "median_s": median(&secs),
        "min_s": secs.iter().cloned().fold(f64::INFINITY, f64::min),
        "osd_ops": osd_ops,
        "osd_op_r": runs.iter().map(|c| c.osd_op_r).sum::<u64>() as f64 / m,
        "osd_ops_per_image": osd_ops / n as f64,
        "osd_cpu_s": runs.iter().map(|c| c.osd_cpu).sum::<f64>() / m,
        "client_cpu_s": runs.iter().map(|c| c.client_cpu).sum::<f64>() / m,
    })
}

/// [`cost_json`] with the errors the runs met.
pub fn cost_json_with_errors(runs: &[Cost], n: usize, errors: usize) -> Value {
    let mut j = cost_json(runs, n);
    j["errors"] = json!(errors);
    j
}
