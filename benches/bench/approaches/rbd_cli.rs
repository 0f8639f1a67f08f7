//! (d) The rbd CLI: `rbd ls -l` on the pool once (or, at the largest sizes,
//! on a smaller pool of the same cluster, extrapolated); `rbd status` on an
//! evenly spaced sample of images one after the other (as a shell loop
//! does), extrapolated to the whole pool.

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

/// `rbd ls -l` on the seeded pool (on `ls_pool` instead when given,
/// extrapolated to the seeded pool's size by the images it listed), and
/// `rbd status` on `status_sample` of its images, as results JSON.
pub fn measure(conf: &str, seeded: &Seeded, status_sample: usize, ls_pool: Option<&str>) -> Value {
    let pool = &seeded.pool;
    let n = seeded.len();
    let (ls_secs, ls_out) = rbd(conf, &["ls", "-l", ls_pool.unwrap_or(pool)]);
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
    let (ls_l_s, ls_l_pool_s) = match ls_pool {
        Some(_) => (ls_secs * n as f64 / ls_images.max(1) as f64, json!(ls_secs)),
        None => (ls_secs, Value::Null),
    };
    json!({
        "ls_l_s": ls_l_s,
        "ls_l_images": ls_images,
        "ls_l_pool": ls_pool,
        "ls_l_pool_s": ls_l_pool_s,
        "status_sampled": picked.len(),
        "status_total_s": status_total,
        "status_per_image_s": per_image,
        "status_extrapolated_s": per_image * n as f64,
    })
}
