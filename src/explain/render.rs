//! `explain` for a terminal: the explanation as aligned text, with the fix
//! commands numbered in order.

use super::{Fix, ImageExplanation, OrphanListing, host_text};
use crate::attribution::SourceOpinion;
use crate::model::LockKind;
use crate::view::image_spec;
use std::fmt::Write as _;

/// Renders an image explanation for a terminal.
pub fn render_image(e: &ImageExplanation) -> String {
    let mut out = String::new();
    render_header(&mut out, e);
    render_watchers(&mut out, e);
    render_locks(&mut out, e);
    render_parents(&mut out, e);
    render_snapshots(&mut out, e);
    render_blockers(&mut out, e);
    render_fixes(&mut out, &e.fixes);
    out
}

/// The image, its size and trash state, and its owners.
fn render_header(out: &mut String, e: &ImageExplanation) {
    let spec = image_spec(&e.pool, &e.namespace, &e.image);
    let _ = writeln!(
        out,
        "image     {spec}  (id {}, {}{})",
        e.id,
        human_size(e.size),
        if e.in_trash { ", IN TRASH" } else { "" }
    );
    for o in &e.owners {
        let _ = writeln!(
            out,
            "owner     {} ({}: {})",
            o.expectation.owner,
            o.source,
            owner_place(o)
        );
    }
}

/// Where a source says the image belongs: `attached to a, b`, `attached
/// nowhere`, or `no opinion on where it belongs`.
pub fn owner_place(o: &SourceOpinion) -> String {
    match &o.expectation.hosts {
        None => "no opinion on where it belongs".to_string(),
        Some(h) if h.is_empty() => "attached nowhere".to_string(),
        Some(h) => format!(
            "attached to {}",
            h.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Every watcher with its host and verdict.
fn render_watchers(out: &mut String, e: &ImageExplanation) {
    let _ = writeln!(out, "\nwatchers  {}", e.watchers.len());
    for w in &e.watchers {
        let _ = writeln!(
            out,
            "  {}  {}  {}  {}",
            w.client,
            w.address,
            host_text(w.host.as_ref()),
            match w.orphan_reason {
                Some(r) => format!("ORPHAN: {}", r.label()),
                None => "ok".into(),
            }
        );
    }
}

/// Every lock with its host and whether it is stale.
fn render_locks(out: &mut String, e: &ImageExplanation) {
    let _ = writeln!(out, "\nlocks     {}", e.locks.len());
    for l in &e.locks {
        let _ = writeln!(
            out,
            "  {}  {}  cookie {:?}  {}  {}  {}",
            match l.kind {
                LockKind::Exclusive => "exclusive",
                LockKind::Advisory => "advisory ",
            },
            l.locker,
            l.cookie,
            l.address,
            host_text(l.host.as_ref()),
            if l.stale { "STALE" } else { "held" }
        );
    }
}

/// The clone depth, the parent chain and the flatten reasons.
fn render_parents(out: &mut String, e: &ImageExplanation) {
    let _ = writeln!(
        out,
        "\nparents   depth {}{}",
        e.clone_depth.depth,
        if e.clone_depth.complete {
            ""
        } else {
            " (chain incomplete: a parent was not sampled or loops)"
        }
    );
    for (i, p) in e.parent_chain.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {}{}{}{}",
            "  ".repeat(i),
            p.spec(),
            if p.image_trashed {
                "  [image in trash]"
            } else {
                ""
            },
            if p.snapshot_trashed {
                "  [snapshot in trash]"
            } else {
                ""
            }
        );
    }
    if !e.flatten_reasons.is_empty() {
        let _ = writeln!(
            out,
            "  flatten pending: {}",
            e.flatten_reasons
                .iter()
                .map(|r| r.label())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// Every snapshot with its children, by pool.
fn render_snapshots(out: &mut String, e: &ImageExplanation) {
    let _ = writeln!(out, "\nsnapshots {}", e.snapshots.len());
    for s in &e.snapshots {
        let n: usize = s.children.values().map(Vec::len).sum();
        let _ = writeln!(
            out,
            "  {}  {}{}  children {n}",
            s.name,
            if s.protected {
                "protected"
            } else {
                "unprotected"
            },
            if s.trashed { ", in trash" } else { "" }
        );
        for (pool, children) in &s.children {
            let _ = writeln!(out, "    {pool}: {}", children.join(", "));
        }
    }
}

/// What stops `rbd rm` now.
fn render_blockers(out: &mut String, e: &ImageExplanation) {
    let _ = writeln!(out, "\nwhy it cannot be deleted now");
    if e.blockers.is_empty() {
        let _ = writeln!(out, "  nothing: no watchers, locks or clones");
    }
    for b in &e.blockers {
        let _ = writeln!(out, "  - {b}");
    }
}

fn render_fixes(out: &mut String, fixes: &[Fix]) {
    let _ = writeln!(out, "\nto fix, in order (nothing has been run):");
    for (i, f) in fixes.iter().enumerate() {
        let _ = writeln!(out, "  {}. {}", i + 1, f.why);
        for c in &f.commands {
            let _ = writeln!(out, "       {c}");
        }
    }
}

/// Renders the orphan listing for a terminal.
pub fn render_orphans(l: &OrphanListing) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "orphaned watchers: {}", l.orphaned_watchers.len());
    for o in &l.orphaned_watchers {
        let _ = writeln!(
            out,
            "\n  {}  {}  {}  {}  ORPHAN: {}",
            o.image,
            o.watcher.client,
            o.watcher.address,
            host_text(o.watcher.host.as_ref()),
            o.watcher.orphan_reason.map_or("?", |r| r.label())
        );
        for c in &o.fix.commands {
            let _ = writeln!(out, "       {c}");
        }
    }
    let _ = writeln!(out, "\nstale locks: {}", l.stale_locks.len());
    for s in &l.stale_locks {
        let _ = writeln!(
            out,
            "\n  {}  {}  cookie {:?}  {}  {}",
            s.image,
            s.lock.locker,
            s.lock.cookie,
            s.lock.address,
            host_text(s.lock.host.as_ref())
        );
        for c in &s.fix.commands {
            let _ = writeln!(out, "       {c}");
        }
    }
    out
}

/// A size in bytes as `64.0 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
