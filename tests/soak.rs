//! A soak: the exporter samples every second for 10 minutes (set
//! CEPH_RBD_SOAK_SECONDS to change) while images churn and scrapers poll;
//! its RSS and open file descriptors must stay flat. Prints the figures.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn churn_script(pool: &str) -> String {
    format!(
        r#"
import rados, rbd, sys, time
c = rados.Rados(conffile="{conf}"); c.connect()
io = c.open_ioctx("{pool}")
r = rbd.RBD()
i = 0
while True:
    i += 1
    name = "soak-%d" % (i % 50)
    try:
        r.create(io, name, 1 << 20)
        if i % 3 == 0:
            r.trash_move(io, name, 0)
            for e in r.trash_list(io):
                r.trash_remove(io, e["id"], True)
        else:
            r.remove(io, name)
    except rbd.Error:
        pass
    time.sleep(0.05)
"#,
        conf = conf(),
    )
}

#[test]
fn soak_rss_and_fds_stay_flat() {
    let seconds: u64 = std::env::var("CEPH_RBD_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let pool = format!("soak{}", std::process::id());
    ceph_cli("ceph", &["osd", "pool", "create", &pool, "8"]);
    ceph_cli("rbd", &["pool", "init", &pool]);
    let mut churn = Command::new("/usr/bin/python3")
        .args(["-c", &churn_script(&pool)])
        .spawn()
        .unwrap();

    let exporter = Exporter::start(&[]);
    let pid = exporter.child.id();
    exporter.wait_metrics(Duration::from_secs(30), |b| {
        b.lines().any(|l| l == "ceph_rbd_exporter_up 1")
    });

    // Scrapers in the background for the whole soak.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scrapers: Vec<_> = (0..4)
        .map(|_| {
            let addr = exporter.addr.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (status, _) = http(&addr, "GET", "/metrics");
                    assert_eq!(status, 200);
                    n += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                n
            })
        })
        .collect();

    let t0 = Instant::now();
    let mut figures = Vec::new();
    let step = Duration::from_secs((seconds / 20).max(1));
    while t0.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(step);
        let (fds, rss) = common::process::fds_and_rss(pid);
        figures.push((t0.elapsed().as_secs(), rss, fds));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let scrapes: u64 = scrapers.into_iter().map(|t| t.join().unwrap()).sum();
    let _ = churn.kill();
    let _ = churn.wait();
    let (_, body) = exporter.get("GET", "/metrics");
    remove_pool(&pool);

    eprintln!("soak: {seconds} s, {scrapes} scrapes, sampling every 2 s with churn");
    eprintln!("{:>8} {:>10} {:>6}", "t (s)", "RSS (KiB)", "fds");
    for (t, rss, fds) in &figures {
        eprintln!("{t:>8} {rss:>10} {fds:>6}");
    }
    // Compare the second half with the first quarter (after warm-up).
    let quarter = figures.len() / 4;
    let warm = &figures[quarter.max(1)..figures.len() / 2 + 1];
    let late = &figures[figures.len() / 2..];
    let max = |s: &[(u64, u64, usize)]| s.iter().map(|f| f.1).max().unwrap();
    let (warm_rss, late_rss) = (max(warm), max(late));
    assert!(
        late_rss <= warm_rss + warm_rss / 5 + 2048,
        "RSS grew from {warm_rss} KiB to {late_rss} KiB"
    );
    let fds: Vec<usize> = figures[quarter.max(1)..].iter().map(|f| f.2).collect();
    let (lo, hi) = (fds.iter().min().unwrap(), fds.iter().max().unwrap());
    assert!(hi - lo <= 8, "open fds wandered between {lo} and {hi}");
    assert!(body.lines().any(|l| l == "ceph_rbd_exporter_up 1"));
    let errors = pool_errors(&body, &pool);
    assert!(errors.is_empty(), "churn caused sample errors: {errors:?}");
}
