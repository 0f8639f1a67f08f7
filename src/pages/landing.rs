//! The landing page: whether the cluster is reachable, the pools, the
//! orphans, and the snapshots with the most children.

use super::PageConfig;
use super::html::{esc, image_link, image_url};
use crate::clock::now_unix;
use crate::cycle::{Analysed, Published};
use crate::explain;
use crate::view::image_spec;
use std::fmt::Write as _;

/// Orphans listed on the landing page, per table.
const ORPHANS_SHOWN: usize = 50;
/// Snapshots listed under "most children".
const PINNED_SHOWN: usize = 10;

/// The landing page's body.
pub fn body(p: &Published, config: &PageConfig) -> String {
    let mut out = String::from("<h1>Ceph RBD exporter</h1>\n");
    status(&mut out, p);
    match &p.analysed {
        Some(a) => {
            pools(&mut out, a);
            out.push_str("<section id=\"orphans\">\n");
            out.push_str(&super::orphans::body(
                &explain::orphans(a),
                config,
                Some(ORPHANS_SHOWN),
            ));
            out.push_str("</section>\n");
            pinned(&mut out, a, config);
        }
        None => out.push_str("<p>No sample yet: the pages fill in after the first one.</p>\n"),
    }
    out
}

fn status(out: &mut String, p: &Published) {
    let last = match p.analysed.as_ref().map(|a| &a.sample) {
        Some(s) => format!(
            "Last sample finished {:.0} s ago and took {:.2} s.",
            (now_unix() - s.finished_at).max(0.0),
            s.finished_at - s.started_at
        ),
        None => "No sample yet.".to_string(),
    };
    let _ = writeln!(
        out,
        "<p>Cluster {}. {last}</p>",
        if p.status.up {
            "<span class=\"ok\">reachable</span>"
        } else {
            "<span class=\"bad\">NOT reachable</span>"
        }
    );
    if let Some(e) = &p.last_error {
        let _ = writeln!(out, "<p class=\"bad\">Last attempt failed: {}</p>", esc(e));
    }
}

fn pools(out: &mut String, a: &Analysed) {
    let mut rows = String::new();
    let mut totals = [0u64; 6];
    for ((pool_id, ns), s) in &a.analysis.namespaces {
        let pool = a.sample.pool_name(*pool_id);
        let name = if ns.is_empty() {
            pool
        } else {
            format!("{pool}/{ns}")
        };
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&name),
            s.images,
            s.watchers,
            s.orphaned_watchers,
            s.stale_locks,
            s.flatten_pending_images,
            s.max_clone_depth
        );
        for (t, v) in totals.iter_mut().zip([
            s.images,
            s.watchers,
            s.orphaned_watchers,
            s.stale_locks,
            s.flatten_pending_images,
            s.trash_images,
        ]) {
            *t += v;
        }
    }
    let _ = write!(
        out,
        "<p>{} images, {} watchers, <b>{} orphaned watchers</b>, <b>{} stale locks</b>, {} images pending flatten, {} in trash.</p>\n\
<h2>Pools</h2>\n<table id=\"pools\"><tr><th>pool/namespace</th><th>images</th><th>watchers</th><th>orphaned</th><th>stale locks</th><th>flatten pending</th><th>max clone depth</th></tr>\n{rows}</table>\n",
        totals[0], totals[1], totals[2], totals[3], totals[4], totals[5]
    );
}

/// The snapshots with the most children: what keeps their images from
/// being deleted.
fn pinned(out: &mut String, a: &Analysed, config: &PageConfig) {
    let mut top: Vec<(usize, String, String)> = Vec::new();
    for ((key, snap_id), children) in &a.analysis.snapshot_children {
        let Some(image) = a.sample.image(key) else {
            continue;
        };
        let Some(snap) = image.snapshots.iter().find(|s| s.id == *snap_id) else {
            continue;
        };
        let pool = a.sample.pool_name(key.pool_id);
        let spec = image_spec(&pool, &key.namespace, &image.name);
        let id = image.in_trash.then_some(key.image_id.as_str());
        let url = image_url(&config.prefix, &pool, &key.namespace, &image.name, id);
        top.push((children.len(), format!("{spec}@{}", snap.name), url));
    }
    top.sort_by(|x, y| y.0.cmp(&x.0).then_with(|| x.1.cmp(&y.1)));
    out.push_str("<section id=\"pinned\"><h2>Snapshots with the most children</h2>\n");
    if top.is_empty() {
        out.push_str("<p class=\"note\">No snapshot has children.</p>\n");
    } else {
        out.push_str("<table><tr><th>snapshot</th><th>children</th></tr>\n");
        for (n, spec, url) in top.iter().take(PINNED_SHOWN) {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"num\">{n}</td></tr>",
                image_link(url, spec)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");
}
