//! The page of one image: what `explain` says about it, as HTML, with the
//! clone tree drawn.

use super::PageConfig;
use super::html::{duration, esc, fix_item, image_link, image_url, utc};
use super::tree;
use crate::analysis::Host;
use crate::cycle::Analysed;
use crate::explain::{
    ImageExplanation, LockExplanation, WatcherExplanation, human_size, owner_place,
};
use crate::model::{ImageKey, LockKind};
use crate::view::{self, image_spec};
use std::fmt::Write as _;

/// The image page's body.
pub fn body(
    a: &Analysed,
    key: &ImageKey,
    e: &ImageExplanation,
    config: &PageConfig,
    now: f64,
) -> String {
    let mut out = String::new();
    header(&mut out, e);
    owners(&mut out, e);
    watchers(&mut out, &e.watchers, now);
    locks(&mut out, &e.locks);
    parents(&mut out, e, config);
    snapshots(&mut out, a, key, e, config);
    if let Some(t) = tree::build(a, key, &config.prefix) {
        clone_tree(&mut out, &t, e);
    }
    blockers_and_fixes(&mut out, e);
    out
}

/// A host as the pages name it.
pub fn host_html(host: Option<&Host>) -> String {
    match host {
        Some(h) => match &h.role {
            Some(role) => format!(
                "{} <span class=\"note\">({}, via {})</span>",
                esc(&h.name),
                esc(role),
                esc(h.via)
            ),
            None => format!(
                "{} <span class=\"note\">(via {})</span>",
                esc(&h.name),
                esc(h.via)
            ),
        },
        None => "<span class=\"warn\">unknown</span>".into(),
    }
}

fn header(out: &mut String, e: &ImageExplanation) {
    let spec = image_spec(&e.pool, &e.namespace, &e.image);
    let _ = writeln!(out, "<h1 id=\"image\">{}</h1>", esc(&spec));
    let _ = write!(
        out,
        "<p class=\"meta\">id <code>{}</code> · {}",
        esc(&e.id),
        human_size(e.size)
    );
    if e.in_trash {
        out.push_str(" · <span class=\"bad\" id=\"in-trash\">IN TRASH</span>");
        if let Some(t) = &e.trash {
            let _ = write!(
                out,
                " since {} (source <code>{}</code>, state <code>{}</code>, may be purged from {})",
                utc(t.deletion_time as f64),
                esc(&t.source),
                esc(&t.state),
                utc(t.deferment_end_time as f64)
            );
        }
    }
    out.push_str("</p>\n");
    let orphans = e
        .watchers
        .iter()
        .filter(|w| w.orphan_reason.is_some())
        .count();
    let stale = e.locks.iter().filter(|l| l.stale).count();
    let _ = writeln!(
        out,
        "<p id=\"summary\">{} · {} watcher(s){} · {} lock(s){} · <a href=\"#fix\">what stops <code>rbd rm</code> and the fix</a></p>",
        if e.blockers.is_empty() {
            "<span class=\"ok\">Nothing stops its removal</span>".to_string()
        } else {
            format!(
                "<span class=\"bad\">{} thing(s) stop its removal</span>",
                e.blockers.len()
            )
        },
        e.watchers.len(),
        if orphans > 0 {
            format!(", <span class=\"bad\">{orphans} orphaned</span>")
        } else {
            String::new()
        },
        e.locks.len(),
        if stale > 0 {
            format!(", <span class=\"bad\">{stale} stale</span>")
        } else {
            String::new()
        },
    );
}

fn owners(out: &mut String, e: &ImageExplanation) {
    out.push_str("<h2>Owner</h2>\n");
    if e.owners.is_empty() {
        out.push_str("<p class=\"note\">No attachment source names this image.</p>\n");
        return;
    }
    out.push_str("<ul id=\"owners\">\n");
    for o in &e.owners {
        let _ = writeln!(
            out,
            "<li>{} <span class=\"note\">({}: {})</span></li>",
            esc(&o.expectation.owner),
            esc(o.source),
            esc(&owner_place(o))
        );
    }
    out.push_str("</ul>\n");
}

fn watchers(out: &mut String, ws: &[WatcherExplanation], now: f64) {
    let _ = writeln!(out, "<h2>Watchers ({})</h2>", ws.len());
    if ws.is_empty() {
        out.push_str("<p class=\"note\">Nobody has it open.</p>\n");
        return;
    }
    out.push_str("<table id=\"watchers\"><tr><th>client</th><th>address</th><th>host</th><th>verdict</th><th>held</th><th>cookie</th></tr>\n");
    for w in ws {
        let verdict = match w.orphan_reason {
            Some(r) => format!("<td class=\"verdict bad\">ORPHAN: {}</td>", r.label()),
            None => "<td class=\"verdict ok\">ok</td>".to_string(),
        };
        let _ = writeln!(
            out,
            "<tr class=\"watcher\"><td>{}</td><td class=\"mono\">{}</td><td>{}</td>{verdict}<td class=\"held\" title=\"first seen {}\">{}</td><td class=\"mono\">{}</td></tr>",
            esc(&w.client),
            esc(&w.address),
            host_html(w.host.as_ref()),
            utc(w.first_seen),
            duration(now - w.first_seen),
            w.cookie
        );
    }
    out.push_str("</table>\n<p class=\"note\">Held: since this exporter first saw the watch (at least that long).</p>\n");
}

fn locks(out: &mut String, ls: &[LockExplanation]) {
    let _ = writeln!(out, "<h2>Locks ({})</h2>", ls.len());
    if ls.is_empty() {
        out.push_str("<p class=\"note\">No locks.</p>\n");
        return;
    }
    out.push_str("<table id=\"locks\"><tr><th>kind</th><th>locker</th><th>cookie</th><th>address</th><th>host</th><th>state</th></tr>\n");
    for l in ls {
        let _ = writeln!(
            out,
            "<tr class=\"lock\"><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td>{}</tr>",
            match l.kind {
                LockKind::Exclusive => "exclusive",
                LockKind::Advisory => "advisory",
            },
            esc(&l.locker),
            esc(&l.cookie),
            esc(&l.address),
            host_html(l.host.as_ref()),
            if l.stale {
                "<td class=\"stale bad\">stale</td>"
            } else {
                "<td class=\"stale ok\">live</td>"
            }
        );
    }
    out.push_str("</table>\n");
}

fn parents(out: &mut String, e: &ImageExplanation, config: &PageConfig) {
    let _ = writeln!(
        out,
        "<h2>Parent chain</h2>\n<p>Clone depth {}{}.</p>",
        e.clone_depth.depth,
        if e.clone_depth.complete {
            ""
        } else {
            " <span class=\"warn\">(chain incomplete: a parent was not sampled or loops)</span>"
        }
    );
    if !e.parent_chain.is_empty() {
        out.push_str("<ol id=\"parents\">\n");
        for p in &e.parent_chain {
            let text = p.spec();
            let link = match &p.image {
                Some(name) => {
                    let id = p.image_trashed.then_some(p.image_id.as_str());
                    image_link(
                        &image_url(&config.prefix, &p.pool, &p.namespace, name, id),
                        &text,
                    )
                }
                None => esc(&text),
            };
            let _ = writeln!(
                out,
                "<li>{link}{}{}</li>",
                if p.image_trashed {
                    " <span class=\"bad\">[image in trash]</span>"
                } else {
                    ""
                },
                if p.snapshot_trashed {
                    " <span class=\"bad\">[snapshot in trash]</span>"
                } else {
                    ""
                }
            );
        }
        out.push_str("</ol>\n");
    }
    if !e.flatten_reasons.is_empty() {
        out.push_str("<p id=\"flatten-reasons\" class=\"bad\">Flatten pending: ");
        let labels: Vec<&str> = e.flatten_reasons.iter().map(|r| r.label()).collect();
        out.push_str(&esc(&labels.join(", ")));
        out.push_str("</p>\n");
    }
}

fn snapshots(
    out: &mut String,
    a: &Analysed,
    key: &ImageKey,
    e: &ImageExplanation,
    config: &PageConfig,
) {
    let _ = writeln!(
        out,
        "<section id=\"snapshots\"><h2>Snapshots ({})</h2>",
        e.snapshots.len()
    );
    let Some(v) = view::image(&a.sample, &a.analysis, key) else {
        out.push_str("</section>\n");
        return;
    };
    if v.snapshots.is_empty() {
        out.push_str("<p class=\"note\">No snapshots.</p>\n");
    }
    for (s, sv) in e.snapshots.iter().zip(&v.snapshots) {
        let n: usize = s.children.values().map(Vec::len).sum();
        let _ = writeln!(
            out,
            "<h3 class=\"snapshot\">@{} <span class=\"note\">(id {}{}{}) · {n} clone(s)</span></h3>",
            esc(&s.name),
            s.id,
            if s.protected {
                ", protected"
            } else {
                ", unprotected"
            },
            if s.trashed { ", in trash" } else { "" }
        );
        let mut by_pool: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for k in sv.children {
            let pool = a.sample.pool_name(k.pool_id);
            let item = match a.sample.image(k) {
                Some(i) => {
                    let id = i.in_trash.then_some(k.image_id.as_str());
                    let url = image_url(&config.prefix, &pool, &k.namespace, &i.name, id);
                    image_link(&url, &image_spec(&pool, &k.namespace, &i.name))
                }
                None => esc(&format!("<id {}>", k.image_id)),
            };
            by_pool.entry(pool).or_default().push(item);
        }
        for (pool, mut items) in by_pool {
            items.sort();
            items.dedup();
            let _ = writeln!(
                out,
                "<details class=\"children\" data-pool=\"{}\"{}><summary>{} ({})</summary><ul>{}</ul></details>",
                esc(&pool),
                if items.len() <= 10 { " open" } else { "" },
                esc(&pool),
                items.len(),
                items
                    .iter()
                    .map(|i| format!("<li>{i}</li>"))
                    .collect::<String>()
            );
        }
    }
    out.push_str("</section>\n");
}

fn clone_tree(out: &mut String, t: &tree::Tree, e: &ImageExplanation) {
    let spec = image_spec(&e.pool, &e.namespace, &e.image);
    let _ = writeln!(
        out,
        "<section id=\"tree\"><h2>Clone tree</h2>\n<p>{} descendant(s), <span class=\"{}\">{} need action</span>. \
Up to {} children per snapshot and pool are drawn, those needing action first; the rest are counted.</p>\n\
<p class=\"legend\"><span class=\"bad\">● flatten</span><span class=\"warn\">● orphaned watcher or stale lock</span><span class=\"ok\">● nothing to do</span></p>\n\
<div class=\"tree-wrap\">{}</div></section>",
        t.descendants,
        if t.needing_action > 0 { "bad" } else { "ok" },
        t.needing_action,
        tree::SHOWN_PER_POOL,
        tree::svg(t, &format!("Clone tree of {spec}"))
    );
}

fn blockers_and_fixes(out: &mut String, e: &ImageExplanation) {
    out.push_str("<h2 id=\"fix\">Why it cannot be deleted now</h2>\n");
    if e.blockers.is_empty() {
        out.push_str(
            "<p class=\"ok\" id=\"no-blockers\">Nothing: no watchers, locks or clones.</p>\n",
        );
    } else {
        out.push_str("<ul id=\"blockers\">\n");
        for b in &e.blockers {
            let _ = writeln!(out, "<li>{}</li>", esc(b));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<h2>To fix, in order</h2>\n<p class=\"note\">Nothing has been run. Check each step before you run it.</p>\n<ol id=\"fixes\">\n");
    for f in &e.fixes {
        out.push_str(&fix_item(f));
    }
    out.push_str("</ol>\n");
}
