//! `make bench` (scripts/bench.sh): the exporter against the floor and the
//! alternatives, side by side on one seeded pool.
//!
//!   bench measure --conf C --pool P --osd-asok A --osd-pid-file F \
//!                 --exporter BIN --out results-N.json
//!   bench report --out BENCHMARKS.md --notes benches/NOTES.md results-*.json
//!
//! `measure` runs, at the same concurrency (64 unless told otherwise):
//!  (a) the exporter's sample (library API, in this process), and its
//!      binary's `dump` under /usr/bin/time -v for the peak RSS;
//!  (b) the floor: one bare `rados_aio_stat` per header object;
//!  (c) the peers' way: librbd open read-only, watchers, parent, snapshots,
//!      close per image (librbd's C API, linked into this binary only);
//!  (d) `rbd ls -l` on the pool and `rbd status` over a sample of images;
//!  (e) analysis + render time and body size, and /metrics latency with 50
//!      concurrent scrapers while the exporter binary samples.
//! Cluster-side cost is read from the OSD: its `osd.op` counter (admin
//! socket `perf dump`) and its CPU time (/proc).

use ceph::rados::{self as sys, rados_completion_t, rados_ioctx_t, rados_t};
use ceph_rbd_exporter::analysis::{self, FirstSeen, Settings};
use ceph_rbd_exporter::ceph::{Conn, ConnectOptions, RadosConn};
use ceph_rbd_exporter::metrics::{self, ExporterStatus, RenderOptions};
use ceph_rbd_exporter::model::{Location, Sample};
use ceph_rbd_exporter::sampler::{SampleConfig, sample_once};
use serde_json::{Value, json};
use std::ffi::{CString, c_void};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::raw::c_int;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ librbd

/// The few librbd C calls the peer exporters' approach needs. Linked here
/// only: the exporter itself never loads librbd.
mod rbd {
    use std::os::raw::{c_char, c_int, c_void};

    pub type Image = *mut c_void;

    #[repr(C)]
    pub struct Watcher {
        pub addr: *mut c_char,
        pub id: i64,
        pub cookie: u64,
    }

    #[repr(C)]
    pub struct LinkedImageSpec {
        pub pool_id: i64,
        pub pool_name: *mut c_char,
        pub pool_namespace: *mut c_char,
        pub image_id: *mut c_char,
        pub image_name: *mut c_char,
        pub trash: bool,
    }

    #[repr(C)]
    pub struct SnapSpec {
        pub id: u64,
        pub namespace_type: c_int,
        pub name: *mut c_char,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct SnapInfo {
        pub id: u64,
        pub size: u64,
        pub name: *const c_char,
    }

    #[link(name = "rbd")]
    unsafe extern "C" {
        pub fn rbd_open_read_only(
            io: ceph::rados::rados_ioctx_t,
            name: *const c_char,
            image: *mut Image,
            snap_name: *const c_char,
        ) -> c_int;
        pub fn rbd_close(image: Image) -> c_int;
        pub fn rbd_watchers_list(image: Image, watchers: *mut Watcher, max: *mut usize) -> c_int;
        pub fn rbd_watchers_list_cleanup(watchers: *mut Watcher, n: usize);
        pub fn rbd_get_parent(
            image: Image,
            parent_image: *mut LinkedImageSpec,
            parent_snap: *mut SnapSpec,
        ) -> c_int;
        pub fn rbd_linked_image_spec_cleanup(spec: *mut LinkedImageSpec);
        pub fn rbd_snap_spec_cleanup(spec: *mut SnapSpec);
        pub fn rbd_snap_list(image: Image, snaps: *mut SnapInfo, max: *mut c_int) -> c_int;
        pub fn rbd_snap_list_end(snaps: *mut SnapInfo);
    }
}

const ENOENT: c_int = 2;
const ERANGE: c_int = 34;

/// What one librbd open learned about an image.
#[derive(Default, Clone, Copy)]
struct Facts {
    watchers: usize,
    clone: bool,
    snapshots: usize,
}

/// The peers' per-image sequence: open read-only, list watchers, get the
/// parent, list snapshots, close. Errors are returned as negative errnos.
fn librbd_image(io: rados_ioctx_t, name: &CString) -> Result<Facts, c_int> {
    let mut img: rbd::Image = std::ptr::null_mut();
    // SAFETY: valid ioctx, NUL-terminated name and out-pointer.
    let rc = unsafe { rbd::rbd_open_read_only(io, name.as_ptr(), &mut img, std::ptr::null()) };
    if rc < 0 {
        return Err(rc);
    }
    let result = (|| {
        let mut facts = Facts::default();
        let mut cap = 4usize;
        loop {
            let mut ws: Vec<rbd::Watcher> = (0..cap)
                .map(|_| rbd::Watcher {
                    addr: std::ptr::null_mut(),
                    id: 0,
                    cookie: 0,
                })
                .collect();
            let mut n = cap;
            let rc = unsafe { rbd::rbd_watchers_list(img, ws.as_mut_ptr(), &mut n) };
            if rc == -ERANGE {
                cap = n.max(cap * 2);
                continue;
            }
            if rc < 0 {
                return Err(rc);
            }
            facts.watchers = n;
            unsafe { rbd::rbd_watchers_list_cleanup(ws.as_mut_ptr(), n) };
            break;
        }
        let mut parent = rbd::LinkedImageSpec {
            pool_id: 0,
            pool_name: std::ptr::null_mut(),
            pool_namespace: std::ptr::null_mut(),
            image_id: std::ptr::null_mut(),
            image_name: std::ptr::null_mut(),
            trash: false,
        };
        let mut psnap = rbd::SnapSpec {
            id: 0,
            namespace_type: 0,
            name: std::ptr::null_mut(),
        };
        match unsafe { rbd::rbd_get_parent(img, &mut parent, &mut psnap) } {
            0 => {
                facts.clone = true;
                unsafe {
                    rbd::rbd_linked_image_spec_cleanup(&mut parent);
                    rbd::rbd_snap_spec_cleanup(&mut psnap);
                }
            }
            rc if rc == -ENOENT => {}
            rc => return Err(rc),
        }
        let mut cap: c_int = 8;
        loop {
            let empty = rbd::SnapInfo {
                id: 0,
                size: 0,
                name: std::ptr::null(),
            };
            let mut snaps = vec![empty; cap as usize];
            let mut max = cap;
            let rc = unsafe { rbd::rbd_snap_list(img, snaps.as_mut_ptr(), &mut max) };
            if rc == -ERANGE {
                cap = max.max(cap * 2);
                continue;
            }
            if rc < 0 {
                return Err(rc);
            }
            facts.snapshots = rc as usize;
            unsafe { rbd::rbd_snap_list_end(snaps.as_mut_ptr()) };
            break;
        }
        Ok(facts)
    })();
    unsafe { rbd::rbd_close(img) };
    result
}

/// Every image through librbd, `threads` at a time.
fn librbd_scan(io: Ioctx, names: &[CString], threads: usize) -> (Vec<Facts>, usize) {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(names.len()));
    let errors = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= names.len() {
                        break;
                    }
                    match librbd_image(io.get(), &names[i]) {
                        Ok(f) => mine.push(f),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                results.lock().unwrap().extend(mine);
            });
        }
    });
    (results.into_inner().unwrap(), errors.into_inner())
}

// ------------------------------------------------------------- raw librados

#[derive(Clone, Copy)]
struct Ioctx(rados_ioctx_t);
// SAFETY: librados I/O contexts are thread-safe for I/O.
unsafe impl Send for Ioctx {}
unsafe impl Sync for Ioctx {}

impl Ioctx {
    /// The raw pointer (a method, so closures capture the whole Send wrapper).
    fn get(self) -> rados_ioctx_t {
        self.0
    }
}

/// A plain librados connection for the floor and for librbd.
struct Raw {
    cluster: rados_t,
    io: Ioctx,
}

impl Raw {
    fn connect(conf: &str, pool: &str, options: &[(String, String)]) -> Raw {
        let user = CString::new("admin").unwrap();
        let conf = CString::new(conf).unwrap();
        let pool = CString::new(pool).unwrap();
        let mut cluster: rados_t = std::ptr::null_mut();
        unsafe {
            assert_eq!(sys::rados_create(&mut cluster, user.as_ptr()), 0);
            assert_eq!(sys::rados_conf_read_file(cluster, conf.as_ptr()), 0);
            for (k, v) in options {
                let (k, v) = (
                    CString::new(k.as_str()).unwrap(),
                    CString::new(v.as_str()).unwrap(),
                );
                assert_eq!(
                    sys::rados_conf_set(cluster, k.as_ptr(), v.as_ptr()),
                    0,
                    "{k:?}"
                );
            }
            assert_eq!(sys::rados_connect(cluster), 0, "rados_connect");
            let mut io: rados_ioctx_t = std::ptr::null_mut();
            assert_eq!(sys::rados_ioctx_create(cluster, pool.as_ptr(), &mut io), 0);
            Raw {
                cluster,
                io: Ioctx(io),
            }
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        unsafe {
            sys::rados_ioctx_destroy(self.io.0);
            sys::rados_shutdown(self.cluster);
        }
    }
}

/// Ops in flight for the floor; shared with the completion callbacks.
#[derive(Default)]
struct Window {
    n: Mutex<usize>,
    cv: Condvar,
}

extern "C" fn stat_done(_c: rados_completion_t, arg: *mut c_void) {
    // SAFETY: one Arc reference per op, made in `floor`.
    let w = unsafe { Arc::from_raw(arg as *const Window) };
    let mut n = w.n.lock().unwrap();
    *n -= 1;
    w.cv.notify_all();
}

/// One bare stat per object, `concurrency` in flight: (seconds, errors).
fn floor(io: Ioctx, oids: &[CString], concurrency: usize) -> (f64, usize) {
    let window = Arc::new(Window::default());
    let mut out: Vec<(u64, i64)> = vec![(0, 0); oids.len()];
    let mut comps: Vec<rados_completion_t> = Vec::with_capacity(oids.len());
    let t0 = Instant::now();
    for (i, oid) in oids.iter().enumerate() {
        {
            let mut n = window.n.lock().unwrap();
            while *n >= concurrency {
                n = window.cv.wait(n).unwrap();
            }
            *n += 1;
        }
        let arg = Arc::into_raw(window.clone()) as *mut c_void;
        let mut c: rados_completion_t = std::ptr::null_mut();
        let (size, mtime) = {
            let slot = &mut out[i];
            (&mut slot.0 as *mut u64, &mut slot.1 as *mut i64)
        };
        unsafe {
            assert_eq!(
                sys::rados_aio_create_completion(arg, Some(stat_done), None, &mut c),
                0
            );
            assert_eq!(sys::rados_aio_stat(io.0, oid.as_ptr(), c, size, mtime), 0);
        }
        comps.push(c);
    }
    {
        let mut n = window.n.lock().unwrap();
        while *n > 0 {
            n = window.cv.wait(n).unwrap();
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut errors = 0;
    for c in comps {
        unsafe {
            if sys::rados_aio_get_return_value(c) < 0 {
                errors += 1;
            }
            sys::rados_aio_release(c);
        }
    }
    (secs, errors)
}

/// A sub-operation of a composed read, for (f).
enum SubOp {
    Stat,
    Exec(&'static str, &'static str, Vec<u8>),
    OmapAll,
    Xattrs,
}

/// Per-op state whose addresses librados writes to on completion.
struct Slot {
    op: sys::rados_read_op_t,
    comp: rados_completion_t,
    rvals: Vec<c_int>,
    outs: Vec<(*mut std::os::raw::c_char, usize)>,
    omap: sys::rados_omap_iter_t,
    xattrs: sys::rados_xattrs_iter_t,
    size: u64,
    mtime: i64,
}

/// One read op per object built from `steps`, `concurrency` in flight:
/// (seconds, errors).
fn composed(io: Ioctx, oids: &[CString], steps: &[SubOp], concurrency: usize) -> (f64, usize) {
    let names: Vec<(CString, CString)> = steps
        .iter()
        .map(|s| match s {
            SubOp::Exec(c, m, _) => (CString::new(*c).unwrap(), CString::new(*m).unwrap()),
            _ => (CString::default(), CString::default()),
        })
        .collect();
    let empty = CString::default();
    let window = Arc::new(Window::default());
    let mut slots: Vec<Box<Slot>> = Vec::with_capacity(oids.len());
    let t0 = Instant::now();
    for oid in oids {
        {
            let mut n = window.n.lock().unwrap();
            while *n >= concurrency {
                n = window.cv.wait(n).unwrap();
            }
            *n += 1;
        }
        let mut slot = Box::new(Slot {
            op: unsafe { sys::rados_create_read_op() },
            comp: std::ptr::null_mut(),
            rvals: vec![0; steps.len()],
            outs: vec![(std::ptr::null_mut(), 0); steps.len()],
            omap: std::ptr::null_mut(),
            xattrs: std::ptr::null_mut(),
            size: 0,
            mtime: 0,
        });
        let sl = &mut *slot;
        for (i, step) in steps.iter().enumerate() {
            let rval = &mut sl.rvals[i] as *mut c_int;
            unsafe {
                match step {
                    SubOp::Stat => {
                        sys::rados_read_op_stat(sl.op, &mut sl.size, &mut sl.mtime, rval)
                    }
                    SubOp::Exec(_, _, input) => {
                        let (buf, len) = &mut sl.outs[i];
                        sys::rados_read_op_exec(
                            sl.op,
                            names[i].0.as_ptr(),
                            names[i].1.as_ptr(),
                            input.as_ptr() as *const _,
                            input.len(),
                            buf,
                            len,
                            rval,
                        );
                        sys::rados_read_op_set_flags(sl.op, 0x2); // LIBRADOS_OP_FLAG_FAILOK
                    }
                    SubOp::OmapAll => sys::rados_read_op_omap_get_vals(
                        sl.op,
                        empty.as_ptr(),
                        empty.as_ptr(),
                        512,
                        &mut sl.omap,
                        rval,
                    ),
                    SubOp::Xattrs => sys::rados_read_op_getxattrs(sl.op, &mut sl.xattrs, rval),
                }
            }
        }
        let arg = Arc::into_raw(window.clone()) as *mut c_void;
        unsafe {
            assert_eq!(
                sys::rados_aio_create_completion(arg, Some(stat_done), None, &mut sl.comp),
                0
            );
            assert_eq!(
                sys::rados_aio_read_op_operate(sl.op, io.0, sl.comp, oid.as_ptr(), 0),
                0
            );
        }
        slots.push(slot);
    }
    {
        let mut n = window.n.lock().unwrap();
        while *n > 0 {
            n = window.cv.wait(n).unwrap();
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut errors = 0;
    for sl in slots {
        unsafe {
            if sys::rados_aio_get_return_value(sl.comp) < 0 {
                errors += 1;
            }
            for (buf, _) in &sl.outs {
                if !buf.is_null() {
                    sys::rados_buffer_free(*buf);
                }
            }
            if !sl.omap.is_null() {
                sys::rados_omap_get_end(sl.omap);
            }
            if !sl.xattrs.is_null() {
                sys::rados_getxattrs_end(sl.xattrs);
            }
            sys::rados_aio_release(sl.comp);
            sys::rados_release_read_op(sl.op);
        }
    }
    (secs, errors)
}

/// The exporter's eight cls calls on a header, with its inputs.
fn header_calls() -> Vec<SubOp> {
    use ceph_rbd_exporter::ceph::decode;
    let head = decode::encode_snap_id(u64::MAX - 1);
    vec![
        SubOp::Exec("rbd", "get_size", head.clone()),
        SubOp::Exec(
            "rbd",
            "get_features",
            decode::encode_get_features(u64::MAX - 1),
        ),
        SubOp::Exec("rbd", "get_flags", head.clone()),
        SubOp::Exec("rbd", "get_snapcontext", Vec::new()),
        SubOp::Exec("rbd", "op_features_get", Vec::new()),
        SubOp::Exec("rbd", "parent_get", Vec::new()),
        SubOp::Exec("rbd", "parent_overlap_get", head),
        SubOp::Exec("lock", "get_info", decode::encode_lock_get_info("rbd_lock")),
    ]
}

// ------------------------------------------------------------- measuring

struct Args {
    conf: String,
    pool: String,
    osd_asok: String,
    osd_pid_file: String,
    exporter: String,
    out: String,
    concurrency: usize,
    runs: usize,
    librbd_runs: usize,
    status_sample: usize,
    scrapers: usize,
    scrape_seconds: f64,
    scrape_interval_ms: u64,
    librbd_conf: Vec<(String, String)>,
}

fn parse_measure(mut it: impl Iterator<Item = String>) -> Args {
    let mut a = Args {
        conf: String::new(),
        pool: "bench".into(),
        osd_asok: String::new(),
        osd_pid_file: String::new(),
        exporter: "target/release/ceph-rbd-exporter".into(),
        out: String::new(),
        concurrency: 64,
        runs: 7,
        librbd_runs: 3,
        status_sample: 200,
        scrapers: 50,
        scrape_seconds: 15.0,
        scrape_interval_ms: 250,
        librbd_conf: Vec::new(),
    };
    while let Some(flag) = it.next() {
        let mut v = || {
            it.next()
                .unwrap_or_else(|| die(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--conf" => a.conf = v(),
            "--pool" => a.pool = v(),
            "--osd-asok" => a.osd_asok = v(),
            "--osd-pid-file" => a.osd_pid_file = v(),
            "--exporter" => a.exporter = v(),
            "--out" => a.out = v(),
            "--concurrency" => a.concurrency = num(&v()),
            "--runs" => a.runs = num(&v()),
            "--librbd-runs" => a.librbd_runs = num(&v()),
            "--status-sample" => a.status_sample = num(&v()),
            "--scrapers" => a.scrapers = num(&v()),
            "--scrape-seconds" => a.scrape_seconds = num(&v()) as f64,
            "--scrape-interval-ms" => a.scrape_interval_ms = num(&v()) as u64,
            "--librbd-conf" => {
                let kv = v();
                let (k, val) = kv
                    .split_once('=')
                    .unwrap_or_else(|| die("--librbd-conf wants key=value"));
                a.librbd_conf.push((k.into(), val.into()));
            }
            _ => die(&format!("unknown flag {flag}")),
        }
    }
    for (name, v) in [
        ("--conf", &a.conf),
        ("--osd-asok", &a.osd_asok),
        ("--osd-pid-file", &a.osd_pid_file),
        ("--out", &a.out),
    ] {
        if v.is_empty() {
            die(&format!("{name} is required"));
        }
    }
    a
}

fn num(s: &str) -> usize {
    s.parse()
        .unwrap_or_else(|_| die(&format!("{s:?} is not a number")))
}

fn die(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    std::process::exit(2)
}

fn say(msg: &str) {
    eprintln!("[bench] {msg}");
}

/// The OSD's client-op counters (`osd.op`, `osd.op_r`).
fn osd_ops(asok: &str) -> (u64, u64) {
    let out = Command::new("ceph")
        .args(["--admin-daemon", asok, "perf", "dump"])
        .output()
        .expect("ceph --admin-daemon");
    assert!(out.status.success(), "perf dump failed");
    let v: Value = serde_json::from_slice(&out.stdout).expect("perf dump JSON");
    (
        v["osd"]["op"].as_u64().unwrap_or(0),
        v["osd"]["op_r"].as_u64().unwrap_or(0),
    )
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

/// Cluster-side and client-side cost of one run of `f`.
struct Cost {
    secs: f64,
    osd_ops: u64,
    osd_op_r: u64,
    osd_cpu: f64,
    client_cpu: f64,
}

fn costed(args: &Args, osd_pid: &str, f: impl FnOnce() -> f64) -> Cost {
    let (op0, r0) = osd_ops(&args.osd_asok);
    let c0 = cpu_seconds(osd_pid);
    let s0 = self_cpu_seconds();
    let secs = f();
    let s1 = self_cpu_seconds();
    let c1 = cpu_seconds(osd_pid);
    let (op1, r1) = osd_ops(&args.osd_asok);
    Cost {
        secs,
        osd_ops: op1 - op0,
        osd_op_r: r1 - r0,
        osd_cpu: c1 - c0,
        client_cpu: s1 - s0,
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    s[s.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn cost_json(runs: &[Cost], n: usize) -> Value {
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

fn sample_counts(sample: &Sample) -> Value {
    let (mut images, mut clones, mut watched, mut snapped) = (0, 0, 0, 0);
    for (_, ns) in sample.namespaces() {
        for i in ns.images.values() {
            images += 1;
            clones += i.parent.is_some() as usize;
            watched += !i.watchers.is_empty() as usize;
            snapped += !i.snapshots.is_empty() as usize;
        }
    }
    json!({"images": images, "clones": clones, "watched": watched, "with_snapshots": snapped})
}

/// (a)'s runs and what the connection counted during them.
#[derive(Default)]
struct ARuns {
    runs: Vec<Cost>,
    ops: u64,
    mons: u64,
    peak: usize,
    last: Option<Sample>,
}

/// The 1-minute load average.
fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn measure(args: Args) {
    let load_before = load1();
    let osd_pid = std::fs::read_to_string(&args.osd_pid_file)
        .expect("osd pid file")
        .trim()
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let conn = Arc::new(
        RadosConn::connect(&ConnectOptions {
            conf_path: args.conf.clone(),
            user: "admin".into(),
            op_timeout: Duration::from_secs(30),
            max_ops_per_second: None,
        })
        .expect("connect"),
    );
    let pools = rt.block_on(conn.pools()).expect("pools");
    let pool = pools
        .iter()
        .find(|p| p.name == args.pool)
        .unwrap_or_else(|| die(&format!("no pool {}", args.pool)));
    let loc = Location {
        pool_id: pool.id,
        namespace: String::new(),
    };
    let directory = rt.block_on(conn.directory(&loc)).expect("directory");
    let n = directory.len();
    say(&format!("pool {} holds {n} images", args.pool));
    let names: Vec<CString> = directory
        .iter()
        .map(|(_, name)| CString::new(name.as_str()).unwrap())
        .collect();
    let oids: Vec<CString> = directory
        .iter()
        .map(|(id, _)| CString::new(format!("rbd_header.{id}")).unwrap())
        .collect();
    let config = SampleConfig {
        pools: Some(vec![args.pool.clone()]),
        max_inflight: args.concurrency,
    };

    // (a) the exporter's sample, in this process.
    let one_sample = || {
        let t0 = Instant::now();
        let (sample, _) = rt.block_on(sample_once(&conn, &config)).expect("sample");
        (t0.elapsed().as_secs_f64(), sample)
    };
    let (_, warm) = one_sample();
    let counts = sample_counts(&warm);
    say(&format!("exporter warm-up sample: {counts}"));
    // (a) alternates with (b), then with (c), so that load from elsewhere
    // on the machine falls on all of them alike.
    let mut a = ARuns::default();
    let a_once = |a: &mut ARuns| {
        let ops0 = conn.ops_sent();
        let mon0 = conn.mon_commands_sent();
        conn.reset_inflight_peak();
        let mut s = None;
        a.runs.push(costed(&args, &osd_pid, || {
            let (secs, sample) = one_sample();
            s = Some(sample);
            secs
        }));
        a.ops += conn.ops_sent() - ops0;
        a.mons += conn.mon_commands_sent() - mon0;
        a.peak = a.peak.max(conn.inflight_peak());
        a.last = s;
    };
    let raw = Raw::connect(&args.conf, &args.pool, &[]);
    floor(raw.io, &oids, args.concurrency);
    let mut b_runs = Vec::new();
    let mut b_errors = 0;
    for _ in 0..args.runs {
        b_runs.push(costed(&args, &osd_pid, || {
            let (secs, errors) = floor(raw.io, &oids, args.concurrency);
            b_errors += errors;
            secs
        }));
        a_once(&mut a);
    }
    let mut floor_json = cost_json(&b_runs, n);
    floor_json["errors"] = json!(b_errors);
    say(&format!("(b) floor: {floor_json}"));

    // (f) what one read per header costs, by what it holds.
    let mut compositions = Vec::new();
    for (label, steps) in [
        ("stat (the floor's op)", vec![SubOp::Stat]),
        (
            "1 cls call (`rbd.get_size`)",
            vec![header_calls().swap_remove(0)],
        ),
        ("the header read's 8 cls calls", header_calls()),
        (
            "`omap_get_vals` + `getxattrs` (the raw header, no cls)",
            vec![SubOp::OmapAll, SubOp::Xattrs],
        ),
    ] {
        composed(raw.io, &oids, &steps, args.concurrency);
        let mut runs = Vec::new();
        let mut errors = 0;
        for _ in 0..args.runs.min(3) {
            runs.push(costed(&args, &osd_pid, || {
                let (secs, e) = composed(raw.io, &oids, &steps, args.concurrency);
                errors += e;
                secs
            }));
        }
        let mut j = cost_json(&runs, n);
        j["label"] = json!(label);
        j["sub_ops"] = json!(steps.len());
        j["errors"] = json!(errors);
        say(&format!("(f) {j}"));
        compositions.push(j);
    }
    drop(raw);

    // (c) librbd per image.
    let raw = Raw::connect(&args.conf, &args.pool, &args.librbd_conf);
    let mut c_runs = Vec::new();
    let mut c_errors = 0;
    let mut facts = Vec::new();
    for _ in 0..args.librbd_runs {
        c_runs.push(costed(&args, &osd_pid, || {
            let t0 = Instant::now();
            let (f, errors) = librbd_scan(raw.io, &names, args.concurrency);
            facts = f;
            c_errors += errors;
            t0.elapsed().as_secs_f64()
        }));
        a_once(&mut a);
    }
    drop(raw);
    let mut librbd_json = cost_json(&c_runs, n);
    librbd_json["errors"] = json!(c_errors);
    librbd_json["threads"] = json!(args.concurrency);
    librbd_json["conf"] = json!(
        args.librbd_conf
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    );
    librbd_json["counts"] = json!({
        "images": facts.len(),
        "clones": facts.iter().filter(|f| f.clone).count(),
        "watched": facts.iter().filter(|f| f.watchers > 0).count(),
        "with_snapshots": facts.iter().filter(|f| f.snapshots > 0).count(),
    });
    say(&format!("(c) librbd: {librbd_json}"));

    let sample = a.last.take().expect("at least one run");
    let runs = a.runs.len().max(1) as f64;
    let mut exporter = cost_json(&a.runs, n);
    exporter["ops_sent"] = json!(a.ops as f64 / runs);
    exporter["mon_commands"] = json!(a.mons as f64 / runs);
    exporter["ops_per_image"] = json!(a.ops as f64 / runs / n as f64);
    exporter["osd_bound_ops_per_image"] = json!((a.ops - a.mons) as f64 / runs / n as f64);
    exporter["peak_inflight"] = json!(a.peak);
    exporter["counts"] = sample_counts(&sample);
    say(&format!("(a) exporter: {exporter}"));

    // (e, part) analysis and rendering, in this process.
    let render = {
        let settings = Settings::default();
        let mut first_seen = FirstSeen::default();
        let times = first_seen.update(&sample, sample.started_at);
        let status = ExporterStatus {
            up: true,
            ..Default::default()
        };
        let mut out = serde_json::Map::new();
        for (label, all_images) in [("default", false), ("all_images", true)] {
            let options = RenderOptions {
                all_images,
                sample_interval_seconds: 60.0,
            };
            let (mut an, mut re, mut bytes, mut series) = (Vec::new(), Vec::new(), 0, 0);
            for _ in 0..5 {
                let t0 = Instant::now();
                let analysis = analysis::analyse(&sample, &settings);
                let t1 = Instant::now();
                let body =
                    metrics::render(Some(&sample), Some(&analysis), &times, &status, &options);
                an.push((t1 - t0).as_secs_f64());
                re.push(t1.elapsed().as_secs_f64());
                bytes = body.len();
                series = body.lines().filter(|l| !l.starts_with('#')).count();
            }
            out.insert(
                label.into(),
                json!({"analyse_s": median(&an), "render_s": median(&re), "bytes": bytes, "series": series}),
            );
        }
        Value::Object(out)
    };
    say(&format!("(e) render: {render}"));

    // (d) the rbd CLI.
    let rbd = |a: &[&str]| {
        let t0 = Instant::now();
        let out = Command::new("rbd")
            .arg("-c")
            .arg(&args.conf)
            .args(a)
            .stdin(Stdio::null())
            .output()
            .expect("rbd");
        assert!(
            out.status.success(),
            "rbd {a:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (t0.elapsed().as_secs_f64(), out.stdout)
    };
    let (ls_secs, ls_out) = rbd(&["ls", "-l", &args.pool]);
    let ls_images = String::from_utf8_lossy(&ls_out)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|name| name.starts_with("bench-") && !name.contains('@'))
        })
        .count();
    let step = (n / args.status_sample.max(1)).max(1);
    let picked: Vec<&(String, String)> = directory.iter().step_by(step).collect();
    let t0 = Instant::now();
    for (_, name) in &picked {
        rbd(&["status", &format!("{}/{name}", args.pool)]);
    }
    let status_total = t0.elapsed().as_secs_f64();
    let per_image = status_total / picked.len() as f64;
    let cli = json!({
        "ls_l_s": ls_secs,
        "ls_l_images": ls_images,
        "status_sampled": picked.len(),
        "status_total_s": status_total,
        "status_per_image_s": per_image,
        "status_extrapolated_s": per_image * n as f64,
    });
    say(&format!("(d) rbd CLI: {cli}"));

    // Peak RSS of the binary's one-shot sample.
    let dump = {
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
    };
    say(&format!("dump: {dump}"));

    // (e) scrapers against the serving binary while it samples.
    let mut serve = scrape(&args);
    serve["all_images_vmhwm_kib"] = json!(serve_rss(&args, &["--metrics.all-images"], 5));
    say(&format!("(e) scrape: {serve}"));

    let result = json!({
        "date": sh("date", &["-u", "+%Y-%m-%d %H:%M"]),
        "load1_before": load_before,
        "load1_after": load1(),
        "n": n,
        "pool": args.pool,
        "concurrency": args.concurrency,
        "runs": args.runs,
        "exporter": exporter,
        "floor": floor_json,
        "compositions": compositions,
        "librbd": librbd_json,
        "cli": cli,
        "render": render,
        "dump": dump,
        "serve": serve,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&result).unwrap()).unwrap();
    say(&format!("wrote {}", args.out));
}

/// One GET on a fresh connection: (status, body length).
fn get(addr: &str, path: &str) -> std::io::Result<(u16, usize)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_nodelay(true)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::with_capacity(1 << 20);
    s.read_to_end(&mut buf)?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let status = std::str::from_utf8(&buf[..head_end])
        .ok()
        .and_then(|h| h.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, buf.len() - head_end - 4))
}

/// (end of sample, its duration) as the exporter's log reports them.
type SampleLog = Arc<Mutex<Vec<(Instant, f64)>>>;

/// Starts the binary serving with back-to-back samples (`--sample.interval
/// 1s`) and waits for its first sample: (child, address, sample log).
/// A running exporter binary, killed when dropped (also when the bench
/// panics).
struct Exporter(std::process::Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(args: &Args, extra: &[&str]) -> (Exporter, String, SampleLog) {
    let mut child = Command::new(&args.exporter)
        .args(["--ceph.config", &args.conf, "--pools", &args.pool])
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
    let deadline = Instant::now() + Duration::from_secs(120);
    while samples.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no sample within 120 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Exporter(child), addr, samples)
}

/// Peak RSS of the serving binary after `samples` samples with `extra` flags.
fn serve_rss(args: &Args, extra: &[&str], samples: usize) -> u64 {
    let (child, _, log) = serve(args, extra);
    let deadline = Instant::now() + Duration::from_secs(120);
    while log.lock().unwrap().len() < samples && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    vmhwm_kib(child.0.id())
}

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

/// Starts the binary serving with back-to-back samples, runs the scrapers
/// and reports latencies of the scrapes that overlapped a sample.
fn scrape(args: &Args) -> Value {
    let (child, addr, samples) = serve(args, &[]);
    let pid = child.0.id();
    let (_, first_body) = get(&addr, "/metrics").expect("scrape");

    // Every scraper fires at the same instants, `interval` apart (0: as
    // fast as it can), so each tick is a burst of `scrapers` concurrent
    // requests; a tick missed while a scrape was slow is skipped.
    let stop = Arc::new(AtomicBool::new(false));
    let t_start = Instant::now();
    let interval = Duration::from_millis(args.scrape_interval_ms);
    let handles: Vec<_> = (0..args.scrapers)
        .map(|_| {
            let (addr, stop) = (addr.clone(), stop.clone());
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
                    match get(&addr, "/metrics") {
                        Ok((200, _)) => out.push((t0, Instant::now())),
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
    let elapsed = t_start.elapsed().as_secs_f64();
    let vmhwm_kib = vmhwm_kib(pid);
    drop(child);

    let windows: Vec<(Instant, Instant)> = samples
        .lock()
        .unwrap()
        .iter()
        .filter_map(|&(end, secs)| {
            end.checked_sub(Duration::from_secs_f64(secs))
                .map(|s| (s, end))
        })
        .collect();
    let in_window: Vec<&(Instant, Instant)> = windows
        .iter()
        .filter(|(s, e)| *e > t_start && *s < t_start + Duration::from_secs_f64(elapsed))
        .collect();
    let busy: f64 = in_window
        .iter()
        .map(|(s, e)| {
            let s = (*s).max(t_start);
            e.duration_since(s).as_secs_f64()
        })
        .sum();
    let mut during = Vec::new();
    let mut all = Vec::new();
    for (s, e) in &requests {
        let ms = e.duration_since(*s).as_secs_f64() * 1000.0;
        all.push(ms);
        if in_window.iter().any(|(ws, we)| s < we && e > ws) {
            during.push(ms);
        }
    }
    during.sort_by(|a, b| a.total_cmp(b));
    all.sort_by(|a, b| a.total_cmp(b));
    let stats = |v: &[f64]| {
        json!({
            "requests": v.len(),
            "p50_ms": percentile(v, 0.5),
            "p99_ms": percentile(v, 0.99),
            "max_ms": v.last().copied().unwrap_or(f64::NAN),
        })
    };
    let sample_secs: Vec<f64> = in_window
        .iter()
        .map(|(s, e)| e.duration_since(*s).as_secs_f64())
        .collect();
    json!({
        "scrapers": args.scrapers,
        "interval_ms": args.scrape_interval_ms,
        "seconds": elapsed,
        "errors": errors,
        "body_bytes": first_body,
        "samples_overlapping": in_window.len(),
        "sample_median_s": median(&sample_secs),
        "sampling_share": busy / elapsed,
        "during_sample": stats(&during),
        "all": stats(&all),
        "vmhwm_kib": vmhwm_kib,
    })
}

// ---------------------------------------------------------------- report

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine(date: Option<&str>) -> Vec<(String, String)> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("PRETTY_NAME=")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_default();
    vec![
        (
            "Date (UTC)".into(),
            date.map_or_else(|| sh("date", &["-u", "+%Y-%m-%d %H:%M"]), str::to_string),
        ),
        (
            "Machine".into(),
            format!(
                "{cpu}, {} cores, {:.0} GiB RAM",
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                mem_kib as f64 / 1048576.0
            ),
        ),
        ("OS".into(), format!("{os}, Linux {}", sh("uname", &["-r"]))),
        ("Ceph".into(), sh("ceph", &["--version"])),
        (
            "Cluster".into(),
            "scripts/cluster.sh: 1 mon, 1 mgr, 1 memstore OSD, all on this machine (they share its cores with the client)".into(),
        ),
        (
            "rustc".into(),
            sh("rustc", &["--version"]),
        ),
    ]
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn ms(secs: f64) -> String {
    if secs >= 10.0 {
        format!("{:.1} s", secs)
    } else if secs >= 1.0 {
        format!("{:.2} s", secs)
    } else {
        format!("{:.1} ms", secs * 1000.0)
    }
}

fn report(mut it: impl Iterator<Item = String>) {
    let mut out = String::new();
    let mut notes = None;
    let mut callgrind = Vec::new();
    let mut growth_file = None;
    let mut files = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = it.next().unwrap_or_else(|| die("--out needs a value")),
            "--notes" => notes = it.next(),
            "--callgrind" => callgrind.extend(it.next()),
            "--growth" => growth_file = it.next(),
            _ => files.push(a),
        }
    }
    if out.is_empty() || files.is_empty() {
        die(
            "usage: bench report --out FILE [--notes NOTES.md] [--callgrind FILE]... \
             [--growth FILE] RESULTS.json...",
        );
    }
    let mut results: Vec<Value> = files
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    results.sort_by_key(|r| r["n"].as_u64().unwrap_or(0));
    let mut callgrind: Vec<Value> = callgrind
        .iter()
        .map(|p| {
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).expect("callgrind JSON")
        })
        .collect();
    callgrind.sort_by_key(|c| c["n"].as_u64().unwrap_or(0));
    let growth: Option<Value> = growth_file
        .map(|p| serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).expect("growth JSON"));
    let md = render_report(&results, &callgrind, growth.as_ref(), notes.as_deref());
    std::fs::write(&out, md).unwrap();
    say(&format!("wrote {out}"));
}

fn render_report(
    results: &[Value],
    callgrind: &[Value],
    growth: Option<&Value>,
    notes: Option<&str>,
) -> String {
    let mut s = String::new();
    let w = &mut s;
    let line = |w: &mut String, t: &str| {
        w.push_str(t);
        w.push('\n');
    };
    line(w, "# Benchmarks");
    line(w, "");
    line(
        w,
        "Generated by `make bench` (scripts/bench.sh, benches/bench.rs); do not edit by hand. \
         Everything below was measured in one run, side by side on the same pool.",
    );
    line(w, "");
    line(w, "| | |");
    line(w, "|---|---|");
    for (k, v) in machine(results[0]["date"].as_str()) {
        line(w, &format!("| {k} | {v} |"));
    }
    let r0 = &results[0];
    line(
        w,
        &format!(
            "| Concurrency | {} operations (or librbd threads) in flight for (a), (b) and (c) |",
            r0["concurrency"]
        ),
    );
    line(
        w,
        &format!(
            "| Repetitions | medians: (a) {} runs, alternating with the {} runs of (b) and the {} of (c); (f) 3 runs each; all after a warm-up |",
            r0["exporter"]["runs_s"].as_array().map_or(0, |a| a.len()),
            r0["floor"]["runs_s"].as_array().map_or(0, |a| a.len()),
            r0["librbd"]["runs_s"].as_array().map_or(0, |a| a.len())
        ),
    );
    line(w, "");
    line(w, "## What is measured");
    line(w, "");
    line(
        w,
        "- **(a) exporter**: one full sample of the pool (`sampler::sample_once`, library API, in \
         the bench process): directory, trash, children and task omaps, one compound read per \
         image header, one more per image with snapshots. RADOS ops are counted by the exporter \
         and cross-checked against the OSD's `osd.op` counter (`ceph daemon osd.0 perf dump`).",
    );
    line(
        w,
        "- **(b) floor**: the same header objects, each read with one bare `rados_aio_stat` from \
         the C API at the same concurrency, no listing, no decoding. Nothing can sample with fewer \
         round trips.",
    );
    line(
        w,
        "- **(c) librbd per image**, the peer exporters' approach: `rbd_open_read_only`, \
         `rbd_watchers_list`, `rbd_get_parent`, `rbd_snap_list`, `rbd_close` per image through \
         librbd's C API (linked into the bench binary only), on a pool of threads as large as (a)'s \
         concurrency, image names from the directory read before the clock starts.",
    );
    line(
        w,
        "- **(d) rbd CLI**: `rbd ls -l` on the pool once; `rbd status` on an evenly spaced sample \
         of images one after the other (as a shell loop does), extrapolated to the whole pool.",
    );
    line(
        w,
        "- **(e) serving**: analysis + rendering time and body size (in process); then the \
         exporter binary serving with `--sample.interval 1s` (back-to-back samples) while 50 \
         scrapers fetch `/metrics` together every 250 ms (bursts of 50 concurrent requests, \
         each on a new connection); latency is reported for the scrapes that overlapped a \
         sample. Peak RSS is the binary's: \
         `dump` under `/usr/bin/time -v`, and the serving process's VmHWM after the scrapes.",
    );
    line(
        w,
        "- OSD CPU is the CPU time the OSD process used during the run (sum over its threads); \
         client CPU is the bench process's.",
    );
    line(w, "");

    for r in results {
        let n = r["n"].as_u64().unwrap_or(0);
        let (a, b, c, d) = (&r["exporter"], &r["floor"], &r["librbd"], &r["cli"]);
        let per_img = |secs: f64| format!("{:.3} ms", secs * 1000.0 / n as f64);
        line(w, &format!("## N = {n} images"));
        line(w, "");
        line(
            w,
            &format!(
                "Load average (1 min) when this size's measurements started / ended: {:.2} / {:.2} \
                 (2 cores; the cluster, its holders and the bench itself count).",
                f(&r["load1_before"]),
                f(&r["load1_after"])
            ),
        );
        line(w, "");
        let counts = &a["counts"];
        line(
            w,
            &format!(
                "Pool `{}`: {} images, {} clones, {} with snapshots, {} watched by holder processes.",
                r["pool"].as_str().unwrap_or(""),
                counts["images"],
                counts["clones"],
                counts["with_snapshots"],
                counts["watched"]
            ),
        );
        line(w, "");
        line(
            w,
            "| approach | wall time | per image | RADOS ops / image (OSD counter) | OSD CPU | client CPU |",
        );
        line(w, "|---|---:|---:|---:|---:|---:|");
        for (label, v) in [
            ("(a) exporter sample", a),
            ("(b) floor: one stat per header", b),
            ("(c) librbd open per image", c),
        ] {
            line(
                w,
                &format!(
                    "| {label} | {} | {} | {:.2} | {} | {} |",
                    ms(f(&v["median_s"])),
                    per_img(f(&v["median_s"])),
                    f(&v["osd_ops_per_image"]),
                    ms(f(&v["osd_cpu_s"])),
                    ms(f(&v["client_cpu_s"])),
                ),
            );
        }
        line(
            w,
            &format!(
                "| (d) `rbd ls -l` | {} | {} | | | |",
                ms(f(&d["ls_l_s"])),
                per_img(f(&d["ls_l_s"]))
            ),
        );
        line(
            w,
            &format!(
                "| (d) `rbd status` loop, extrapolated from {} images | {} | {} | | | |",
                d["status_sampled"],
                ms(f(&d["status_extrapolated_s"])),
                per_img(f(&d["status_extrapolated_s"]))
            ),
        );
        line(w, "");
        let ta = f(&a["median_s"]);
        line(
            w,
            &format!(
                "Ratios: **a/b = {:.2}** (exporter vs floor), **c/a = {:.0}x** (librbd vs exporter), \
                 **d/a = {:.0}x** (`rbd ls -l`) and **{:.0}x** (`rbd status` loop).",
                ta / f(&b["median_s"]),
                f(&c["median_s"]) / ta,
                f(&d["ls_l_s"]) / ta,
                f(&d["status_extrapolated_s"]) / ta
            ),
        );
        line(w, "");
        line(
            w,
            &format!(
                "Exporter ops: {:.0} sent per sample ({:.0} mon command, the rest to the OSD) = \
                 **{:.3} per image**; the OSD counted {:.0} ({:.3} per image; the difference is \
                 the holders' watch pings and the mgr). Peak in flight: {} (bound {}). Runs: {}.",
                f(&a["ops_sent"]),
                f(&a["mon_commands"]),
                f(&a["ops_per_image"]),
                f(&a["osd_ops"]),
                f(&a["osd_ops_per_image"]),
                a["peak_inflight"],
                r["concurrency"],
                fmt_runs(&a["runs_s"]),
            ),
        );
        line(w, "");
        line(
            w,
            &format!(
                "Floor runs: {}; librbd runs: {} ({} errors; it saw {} clones, {} watched, {} with snapshots).",
                fmt_runs(&b["runs_s"]),
                fmt_runs(&c["runs_s"]),
                c["errors"],
                c["counts"]["clones"],
                c["counts"]["watched"],
                c["counts"]["with_snapshots"],
            ),
        );
        line(w, "");
        let (rd, ra) = (&r["render"]["default"], &r["render"]["all_images"]);
        let sv = &r["serve"];
        line(w, "| serving | value |");
        line(w, "|---|---:|");
        for (k, v) in [
            ("analysis", ms(f(&rd["analyse_s"]))),
            (
                "render, default (only images with something to say)",
                format!(
                    "{} for {} series, {:.0} KiB",
                    ms(f(&rd["render_s"])),
                    rd["series"],
                    f(&rd["bytes"]) / 1024.0
                ),
            ),
            (
                "render, `--metrics.all-images`",
                format!(
                    "{} for {} series, {:.0} KiB",
                    ms(f(&ra["render_s"])),
                    ra["series"],
                    f(&ra["bytes"]) / 1024.0
                ),
            ),
            (
                "/metrics latency during a sample, 50 scrapers: p50 / p99 / max",
                format!(
                    "{:.2} / {:.2} / {:.1} ms",
                    f(&sv["during_sample"]["p50_ms"]),
                    f(&sv["during_sample"]["p99_ms"]),
                    f(&sv["during_sample"]["max_ms"])
                ),
            ),
            (
                "scrapes during samples / all / errors",
                format!(
                    "{} / {} / {} in {:.1} s ({} samples, {:.0}% of the time sampling, median sample {})",
                    sv["during_sample"]["requests"],
                    sv["all"]["requests"],
                    sv["errors"],
                    f(&sv["seconds"]),
                    sv["samples_overlapping"],
                    f(&sv["sampling_share"]) * 100.0,
                    ms(f(&sv["sample_median_s"]))
                ),
            ),
            (
                "peak RSS: `dump` (one sample, JSON of every image)",
                format!("{:.1} MiB", f(&r["dump"]["max_rss_kib"]) / 1024.0),
            ),
            (
                "peak RSS: serving, after the scrapes (VmHWM)",
                format!("{:.1} MiB", f(&sv["vmhwm_kib"]) / 1024.0),
            ),
            (
                "peak RSS: serving with `--metrics.all-images`, 5 samples (VmHWM)",
                format!("{:.1} MiB", f(&sv["all_images_vmhwm_kib"]) / 1024.0),
            ),
        ] {
            line(w, &format!("| {k} | {v} |"));
        }
        line(w, "");
        if let Some(comps) = r["compositions"].as_array() {
            line(
                w,
                "(f) One read op per header object at the same concurrency, by what it holds \
                 (C API, no decoding): where the cost of (a) comes from.",
            );
            line(w, "");
            line(
                w,
                "| one op per header holding | sub-ops | wall time | vs floor | OSD CPU | client CPU |",
            );
            line(w, "|---|---:|---:|---:|---:|---:|");
            let tb = f(&b["median_s"]);
            for c in comps {
                line(
                    w,
                    &format!(
                        "| {} | {} | {} | {:.2}x | {} | {} |",
                        c["label"].as_str().unwrap_or(""),
                        c["sub_ops"],
                        ms(f(&c["median_s"])),
                        f(&c["median_s"]) / tb,
                        ms(f(&c["osd_cpu_s"])),
                        ms(f(&c["client_cpu_s"])),
                    ),
                );
            }
            line(
                w,
                &format!(
                    "| *(a) the exporter's sample, for comparison* | 9 (+3 per snapshotted image) | {} | {:.2}x | {} | {} |",
                    ms(ta),
                    ta / tb,
                    ms(f(&a["osd_cpu_s"])),
                    ms(f(&a["client_cpu_s"])),
                ),
            );
            line(w, "");
        }
    }

    if results.len() >= 2 {
        let (lo, hi) = (&results[0], &results[results.len() - 1]);
        let (nl, nh) = (f(&lo["n"]), f(&hi["n"]));
        let cpu = |r: &Value, key: &str| {
            (f(&r[key]["client_cpu_s"]) + f(&r[key]["osd_cpu_s"])) / f(&r["n"]) * 1e6
        };
        line(w, "## Growth");
        line(w, "");
        line(
            w,
            &format!(
                "| | time, N = {nl:.0} | time, N = {nh:.0} | time ratio | CPU (client + OSD) per image, N = {nl:.0} → {nh:.0} |"
            ),
        );
        line(w, "|---|---:|---:|---:|---:|");
        for (label, key) in [
            ("(a) exporter", "exporter"),
            ("(b) floor", "floor"),
            ("(c) librbd", "librbd"),
        ] {
            let (tl, th) = (f(&lo[key]["median_s"]), f(&hi[key]["median_s"]));
            line(
                w,
                &format!(
                    "| {label} | {} | {} | {:.2} | {:.0} µs → {:.0} µs |",
                    ms(tl),
                    ms(th),
                    th / tl,
                    cpu(lo, key),
                    cpu(hi, key),
                ),
            );
        }
        line(w, "");
        let ratio = f(&hi["exporter"]["median_s"]) / f(&lo["exporter"]["median_s"]);
        let floor_ratio = f(&hi["floor"]["median_s"]) / f(&lo["floor"]["median_s"]);
        let instr = |n: f64| {
            callgrind
                .iter()
                .find(|c| f(&c["n"]) == n)
                .map(|c| f(&c["exporter_instructions_per_image"]))
        };
        let mut text = format!(
            "Across the run, {:.0}x the images took the exporter {ratio:.2}x the time and the \
             floor {floor_ratio:.2}x: the cluster grew too, and every OSD op (a bare stat \
             included) costs more with 10x the objects in the OSD.",
            nh / nl,
        );
        if let (Some(il), Some(ih)) = (instr(nl), instr(nh)) {
            text.push_str(&format!(
                " The exporter's own work per image does not grow: {il:.0} client instructions \
                 per image at N = {nl:.0}, {ih:.0} at N = {nh:.0} ({:.2}x).",
                ih / il
            ));
        }
        line(w, &text);
        line(w, "");
    }
    if let Some(rows) = growth.and_then(|g| g["growth"].as_array()) {
        line(
            w,
            &format!(
                "With the cluster's size held fixed (pools of these sizes side by side in the \
                 same cluster, (a) and (b) alternating, median of {} runs each):",
                growth.map_or(Value::Null, |g| g["runs"].clone())
            ),
        );
        line(w, "");
        line(
            w,
            "| pool | images | (a) exporter | per image | (b) floor | per image |",
        );
        line(w, "|---|---:|---:|---:|---:|---:|");
        for r in rows {
            line(
                w,
                &format!(
                    "| `{}` | {} | {} | {:.1} µs | {} | {:.1} µs |",
                    r["pool"].as_str().unwrap_or(""),
                    r["n"],
                    ms(f(&r["exporter_median_s"])),
                    f(&r["exporter_per_image_us"]),
                    ms(f(&r["floor_median_s"])),
                    f(&r["floor_per_image_us"]),
                ),
            );
        }
        line(w, "");
        if let (Some(small), Some(big)) = (rows.first(), rows.last()) {
            let per = f(&big["exporter_per_image_us"]) / f(&small["exporter_per_image_us"]);
            line(
                w,
                &format!(
                    "{:.0}x the images took {:.2}x the time ({per:.2}x per image): {}.",
                    f(&big["n"]) / f(&small["n"]),
                    f(&big["exporter_median_s"]) / f(&small["exporter_median_s"]),
                    if per <= 1.05 {
                        "linear or better"
                    } else {
                        "worse than linear"
                    }
                ),
            );
            line(w, "");
        }
    }

    let hi = &results[results.len() - 1];
    let n = f(&hi["n"]);
    let (a, b, c, d) = (&hi["exporter"], &hi["floor"], &hi["librbd"], &hi["cli"]);
    let ta = f(&a["median_s"]);
    let rss = f(&hi["dump"]["max_rss_kib"]).max(f(&hi["serve"]["vmhwm_kib"])) / 1024.0;
    let p99 = f(&hi["serve"]["during_sample"]["p99_ms"]);
    let growth_per_image = growth
        .and_then(|g| g["growth"].as_array())
        .and_then(|rows| Some((rows.first()?, rows.last()?)))
        .filter(|(a, b)| a["n"] != b["n"])
        .map(|(small, big)| f(&big["exporter_per_image_us"]) / f(&small["exporter_per_image_us"]));
    let targets = [
        (
            "RADOS round trips per image (exporter count)",
            "≤ 1.3".to_string(),
            format!("{:.3}", f(&a["ops_per_image"])),
            f(&a["ops_per_image"]) <= 1.3,
        ),
        (
            "sample vs floor (a/b)",
            "≤ 1.5x".into(),
            format!("{:.2}x", ta / f(&b["median_s"])),
            ta / f(&b["median_s"]) <= 1.5,
        ),
        (
            "librbd per image vs sample (c/a)",
            "≥ 30x".into(),
            format!("{:.0}x", f(&c["median_s"]) / ta),
            f(&c["median_s"]) / ta >= 30.0,
        ),
        (
            "`rbd status` loop vs sample (d/a)",
            "≥ 300x".into(),
            format!("{:.0}x", f(&d["status_extrapolated_s"]) / ta),
            f(&d["status_extrapolated_s"]) / ta >= 300.0,
        ),
        (
            "growth: per-image time of the large pool / the small one, cluster size fixed",
            "≤ 1.05 (linear)".into(),
            growth_per_image.map_or("not measured".into(), |p| format!("{p:.2}x")),
            growth_per_image.is_some_and(|p| p <= 1.05),
        ),
        (
            "peak RSS",
            "< 64 MiB".into(),
            format!("{rss:.1} MiB"),
            rss < 64.0,
        ),
        (
            "/metrics p99, 50 scrapers, during a sample",
            "< 50 ms".into(),
            format!("{p99:.2} ms"),
            p99 < 50.0,
        ),
    ];
    if !callgrind.is_empty() {
        line(w, "## Client instructions per image (callgrind)");
        line(w, "");
        line(
            w,
            "Counted with `valgrind --tool=callgrind` on the bench binary's `profile` mode \
             (every thread of the client process, librados included; the difference between 2 \
             runs and 1, so connecting is not counted). Unlike times, instruction counts are \
             not disturbed by other load on the machine.",
        );
        line(w, "");
        line(
            w,
            "| N | (a) exporter sample | (b) floor: one stat | ratio |",
        );
        line(w, "|---:|---:|---:|---:|");
        for cg in callgrind {
            let (e, fl) = (
                f(&cg["exporter_instructions_per_image"]),
                f(&cg["floor_instructions_per_image"]),
            );
            line(
                w,
                &format!("| {} | {e:.0} | {fl:.0} | {:.2}x |", cg["n"], e / fl),
            );
        }
        line(w, "");
    }
    line(w, &format!("## Targets (N = {n:.0})"));
    line(w, "");
    line(w, "| target | wanted | measured | |");
    line(w, "|---|---|---:|---|");
    for (what, want, got, ok) in targets {
        line(
            w,
            &format!(
                "| {what} | {want} | {got} | {} |",
                if ok { "met" } else { "**missed**" }
            ),
        );
    }
    line(w, "");
    if let Some(path) = notes {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| die(&format!("{path}: {e}")));
        w.push_str(&text);
        if !text.ends_with('\n') {
            w.push('\n');
        }
    }
    s
}

fn fmt_runs(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(|x| ms(f(x))).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// `bench growth CONF OUT RUNS POOL...`: (a) and (b) on pools of different
/// sizes in the same cluster, alternating, so that the cluster's own size
/// (which slows every OSD op) is the same for all of them.
fn growth(mut it: impl Iterator<Item = String>) {
    let conf = it.next().unwrap_or_else(|| die("growth wants CONF"));
    let out = it.next().unwrap_or_else(|| die("growth wants OUT"));
    let runs = num(&it.next().unwrap_or_else(|| die("growth wants RUNS")));
    let pools: Vec<String> = it.collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let conn = Arc::new(
        RadosConn::connect(&ConnectOptions {
            conf_path: conf.clone(),
            user: "admin".into(),
            op_timeout: Duration::from_secs(30),
            max_ops_per_second: None,
        })
        .expect("connect"),
    );
    let all = rt.block_on(conn.pools()).expect("pools");
    let mut setups = Vec::new();
    for name in &pools {
        let id = all
            .iter()
            .find(|p| &p.name == name)
            .unwrap_or_else(|| die(&format!("no pool {name}")))
            .id;
        let loc = Location {
            pool_id: id,
            namespace: String::new(),
        };
        let oids: Vec<CString> = rt
            .block_on(conn.directory(&loc))
            .expect("directory")
            .iter()
            .map(|(id, _)| CString::new(format!("rbd_header.{id}")).unwrap())
            .collect();
        let config = SampleConfig {
            pools: Some(vec![name.clone()]),
            max_inflight: 64,
        };
        let raw = Raw::connect(&conf, name, &[]);
        // Warm-up.
        rt.block_on(sample_once(&conn, &config)).expect("sample");
        floor(raw.io, &oids, 64);
        setups.push((name.clone(), oids, config, raw, Vec::new(), Vec::new()));
    }
    for _ in 0..runs {
        for (_, oids, config, raw, a, b) in setups.iter_mut() {
            let t0 = Instant::now();
            rt.block_on(sample_once(&conn, config)).expect("sample");
            a.push(t0.elapsed().as_secs_f64());
            b.push(floor(raw.io, oids, 64).0);
        }
    }
    let rows: Vec<Value> = setups
        .iter()
        .map(|(name, oids, _, _, a, b)| {
            let n = oids.len() as f64;
            json!({
                "pool": name,
                "n": oids.len(),
                "exporter_median_s": median(a),
                "floor_median_s": median(b),
                "exporter_per_image_us": median(a) / n * 1e6,
                "floor_per_image_us": median(b) / n * 1e6,
                "exporter_runs_s": a,
                "floor_runs_s": b,
            })
        })
        .collect();
    let result = json!({"growth": rows, "runs": runs, "load1": load1()});
    say(&format!("growth: {result}"));
    std::fs::write(&out, serde_json::to_string_pretty(&result).unwrap()).unwrap();
}

/// `bench profile (exporter|floor) CONF POOL RUNS`: only (a) or only (b),
/// back to back, to attach `perf record` or callgrind to.
fn profile(mut it: impl Iterator<Item = String>) {
    let what = it.next().unwrap_or_default();
    let conf = it.next().unwrap_or_else(|| die("profile wants CONF"));
    let pool = it.next().unwrap_or_else(|| die("profile wants POOL"));
    let runs = num(&it.next().unwrap_or_else(|| "10".into()));
    // BENCH_WORKERS=N: a multi-thread runtime with N workers (default: one
    // per core, as the exporter's `Runtime::new`); 0: a current-thread one.
    let rt = match std::env::var("BENCH_WORKERS").ok().map(|w| num(&w)) {
        Some(0) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()
            .unwrap(),
        None => tokio::runtime::Runtime::new().unwrap(),
    };
    let conn = Arc::new(
        RadosConn::connect(&ConnectOptions {
            conf_path: conf.clone(),
            user: "admin".into(),
            op_timeout: Duration::from_secs(30),
            max_ops_per_second: None,
        })
        .expect("connect"),
    );
    let config = SampleConfig {
        pools: Some(vec![pool.clone()]),
        max_inflight: 64,
    };
    match what.as_str() {
        "exporter" => {
            for _ in 0..runs {
                let t0 = Instant::now();
                rt.block_on(sample_once(&conn, &config)).expect("sample");
                say(&format!("sample: {}", ms(t0.elapsed().as_secs_f64())));
            }
        }
        "floor" => {
            let pools = rt.block_on(conn.pools()).expect("pools");
            let id = pools.iter().find(|p| p.name == pool).expect("pool").id;
            let loc = Location {
                pool_id: id,
                namespace: String::new(),
            };
            let oids: Vec<CString> = rt
                .block_on(conn.directory(&loc))
                .expect("directory")
                .iter()
                .map(|(id, _)| CString::new(format!("rbd_header.{id}")).unwrap())
                .collect();
            let raw = Raw::connect(&conf, &pool, &[]);
            for _ in 0..runs {
                let (secs, _) = floor(raw.io, &oids, 64);
                say(&format!("floor: {}", ms(secs)));
            }
        }
        "librbd" => {
            let pools = rt.block_on(conn.pools()).expect("pools");
            let id = pools.iter().find(|p| p.name == pool).expect("pool").id;
            let loc = Location {
                pool_id: id,
                namespace: String::new(),
            };
            let names: Vec<CString> = rt
                .block_on(conn.directory(&loc))
                .expect("directory")
                .iter()
                .map(|(_, name)| CString::new(name.as_str()).unwrap())
                .collect();
            let options: Vec<(String, String)> = it
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())))
                .collect();
            let raw = Raw::connect(&conf, &pool, &options);
            for _ in 0..runs {
                let t0 = Instant::now();
                let (_, errors) = librbd_scan(raw.io, &names, 64);
                say(&format!(
                    "librbd: {} ({errors} errors)",
                    ms(t0.elapsed().as_secs_f64())
                ));
            }
        }
        _ => die("profile exporter|floor|librbd CONF POOL RUNS [key=value...]"),
    }
}

fn main() {
    // `cargo bench` appends `--bench`; it means nothing here.
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    match args.next().as_deref() {
        Some("measure") => measure(parse_measure(args)),
        Some("profile") => profile(args),
        Some("growth") => growth(args),
        Some("report") => report(args),
        _ => die("usage: bench measure ... | bench report ..."),
    }
}
