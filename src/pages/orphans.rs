//! The orphans page: every orphaned watcher and stale lock, the same as
//! `explain --orphans`, each with its image linked and its fix.

use super::PageConfig;
use super::html::{commands_block, esc, image_link, image_url};
use super::image::host_html;
use crate::explain::{ImageRef, OrphanListing};
use std::fmt::Write as _;

/// The link to the page of an entry's image.
pub fn link(config: &PageConfig, r: &ImageRef, text: &str) -> String {
    let id = r.in_trash.then_some(r.id.as_str());
    image_link(
        &image_url(&config.prefix, &r.pool, &r.namespace, &r.name, id),
        text,
    )
}

/// The orphans page's body; at most `limit` rows per table (all with
/// `None`), with a count of the rest.
pub fn body(l: &OrphanListing, config: &PageConfig, limit: Option<usize>) -> String {
    let mut out = String::new();
    let limit = limit.unwrap_or(usize::MAX);
    let _ = writeln!(
        out,
        "<h2>Orphaned watchers ({})</h2>",
        l.orphaned_watchers.len()
    );
    if l.orphaned_watchers.is_empty() {
        out.push_str("<p class=\"ok\">None.</p>\n");
    } else {
        out.push_str("<table id=\"orphaned-watchers\"><tr><th>image</th><th>client</th><th>address</th><th>host</th><th>reason</th><th>fix</th></tr>\n");
        for o in l.orphaned_watchers.iter().take(limit) {
            let _ = writeln!(
                out,
                "<tr class=\"orphan\"><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td class=\"bad\">{}</td><td>{}</td></tr>",
                link(config, &o.image_ref, &o.image),
                esc(&o.watcher.client),
                esc(&o.watcher.address),
                host_html(o.watcher.host.as_ref()),
                o.watcher.orphan_reason.map_or("?", |r| r.label()),
                commands_block(&o.fix.commands.join("\n"))
            );
        }
        out.push_str("</table>\n");
        more(&mut out, l.orphaned_watchers.len(), limit, config);
    }
    let _ = writeln!(out, "<h2>Stale locks ({})</h2>", l.stale_locks.len());
    if l.stale_locks.is_empty() {
        out.push_str("<p class=\"ok\">None.</p>\n");
    } else {
        out.push_str("<table id=\"stale-locks\"><tr><th>image</th><th>locker</th><th>cookie</th><th>address</th><th>host</th><th>fix</th></tr>\n");
        for s in l.stale_locks.iter().take(limit) {
            let _ = writeln!(
                out,
                "<tr class=\"stale-lock\"><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td></tr>",
                link(config, &s.image_ref, &s.image),
                esc(&s.lock.locker),
                esc(&s.lock.cookie),
                esc(&s.lock.address),
                host_html(s.lock.host.as_ref()),
                commands_block(&s.fix.commands.join("\n"))
            );
        }
        out.push_str("</table>\n");
        more(&mut out, l.stale_locks.len(), limit, config);
    }
    out
}

fn more(out: &mut String, n: usize, limit: usize, config: &PageConfig) {
    if n > limit {
        let _ = writeln!(
            out,
            "<p>… and {} more: <a href=\"{}/orphans\">all orphans</a>.</p>",
            n - limit,
            esc(&config.prefix)
        );
    }
}
