//! (d) The rbd CLI: `rbd ls -l` on the pool once; `rbd status` on an evenly
//! spaced sample of images one after the other (as a shell loop does),
//! extrapolated to the whole pool.

use crate::seeding::Seeded;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Runs `rbd -c CONF ARGS...`: (seconds, stdout); panics when it fails.
fn rbd(conf: &str, a: &[&str]) -> (f64, Vec<u8>) {
    let t0 = Instant::now();
    let out = Command::new("rbd")
        .arg("-c")
        .arg(conf)
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
}

/// `rbd ls -l` on the seeded pool, and `rbd status` on `status_sample` of
/// its images, as results JSON.
pub fn measure(conf: &str, seeded: &Seeded, status_sample: usize) -> Value {
    let pool = &seeded.pool;
    let n = seeded.len();
    let (ls_secs, ls_out) = rbd(conf, &["ls", "-l", pool]);
    let ls_images = String::from_utf8_lossy(&ls_out)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|name| name.starts_with("bench-") && !name.contains('@'))
        })
        .count();
    let picked = seeded.spread(status_sample);
    let t0 = Instant::now();
    for name in &picked {
        rbd(conf, &["status", &format!("{pool}/{name}")]);
    }
    let status_total = t0.elapsed().as_secs_f64();
    let per_image = status_total / picked.len() as f64;
    json!({
        "ls_l_s": ls_secs,
        "ls_l_images": ls_images,
        "status_sampled": picked.len(),
        "status_total_s": status_total,
        "status_per_image_s": per_image,
        "status_extrapolated_s": per_image * n as f64,
    })
}
