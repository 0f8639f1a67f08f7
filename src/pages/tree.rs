//! The clone tree of an image, drawn on the server as SVG: the image, its
//! snapshots that have children, the children grouped by pool, and their
//! own snapshots and children below them. Each image is marked with what
//! it needs (flatten, or release an orphaned watcher or stale lock). A
//! snapshot with hundreds of children stays readable: per snapshot and
//! pool the first [`SHOWN_PER_POOL`] children are drawn, those needing
//! action first, and the rest summarised in one node with their count.

use super::html::{esc, image_url};
use crate::cycle::Analysed;
use crate::model::ImageKey;
use crate::view::{self, image_spec};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

/// Children of one snapshot in one pool drawn one by one.
pub const SHOWN_PER_POOL: usize = 10;
/// Once this many rows are drawn, further groups are only summarised.
const MAX_ROWS: usize = 400;
/// Deepest clone generation followed below the image.
const MAX_GENERATIONS: usize = 8;
/// Row height and indent per level, in pixels.
const ROW: usize = 22;
const INDENT: usize = 18;
/// Width of one character of the 12 px monospace font, in pixels.
const CHAR: f64 = 7.3;

/// What an image in the tree needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// A flatten: the analysis found flatten reasons.
    Flatten,
    /// An orphaned watcher or a stale lock to release.
    Release,
}

impl Action {
    /// The `data-action` value.
    pub fn label(self) -> &'static str {
        match self {
            Action::None => "none",
            Action::Flatten => "flatten",
            Action::Release => "release",
        }
    }
}

/// One row of the drawn tree.
#[derive(Debug, Clone)]
pub enum Row {
    /// An image.
    Image {
        /// `pool[/namespace]/image`, or `<id ID>` if it was not sampled.
        spec: String,
        /// Pool name.
        pool: String,
        /// Clone depth.
        depth: u32,
        /// What it needs.
        action: Action,
        /// Flatten reasons (labels).
        reasons: Vec<&'static str>,
        /// True when it is in the trash.
        in_trash: bool,
        /// Its page, if it was sampled.
        url: Option<String>,
    },
    /// A snapshot with children.
    Snapshot {
        /// Snapshot name.
        name: String,
        /// True when protected.
        protected: bool,
        /// True when in the trash namespace.
        trashed: bool,
        /// Number of children.
        children: usize,
    },
    /// The children of one snapshot in one pool.
    Pool {
        /// Pool name.
        pool: String,
        /// Number of children in it.
        children: usize,
        /// How many of them need action, themselves or a descendant.
        needing_action: usize,
    },
    /// Children not drawn one by one.
    Summary {
        /// Pool name.
        pool: String,
        /// How many are not drawn.
        hidden: usize,
        /// How many of those need action, themselves or a descendant.
        hidden_action: usize,
    },
}

/// A row with its place.
#[derive(Debug, Clone)]
pub struct Placed {
    /// Indent level.
    pub level: usize,
    /// Index of the row it hangs from.
    pub parent: Option<usize>,
    /// The row.
    pub row: Row,
}

/// The tree of one image.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// Rows in drawing order.
    pub rows: Vec<Placed>,
    /// Descendants (all generations, drawn or not).
    pub descendants: usize,
    /// Descendants needing action.
    pub needing_action: usize,
}

/// What an image needs, by its findings.
fn action_of(a: &Analysed, key: &ImageKey) -> Action {
    let f = a.analysis.findings(key);
    if !f.flatten_reasons.is_empty() {
        Action::Flatten
    } else if f.orphans().next().is_some() || f.stale_locks().next().is_some() {
        Action::Release
    } else {
        Action::None
    }
}

/// The tree of the image at `key`; `None` when none of its snapshots has
/// children.
pub fn build(a: &Analysed, key: &ImageKey, prefix: &str) -> Option<Tree> {
    let v = view::image(&a.sample, &a.analysis, key)?;
    if v.snapshots.iter().all(|s| s.children.is_empty()) {
        return None;
    }
    let mut b = Builder {
        a,
        prefix,
        tree: Tree::default(),
        seen: HashSet::new(),
    };
    b.image(key, 0, None, 0);
    let (d, n) = descendants(a, key);
    b.tree.descendants = d;
    b.tree.needing_action = n;
    Some(b.tree)
}

/// Every descendant of `key` (all generations) and how many need action.
fn descendants(a: &Analysed, key: &ImageKey) -> (usize, usize) {
    let mut seen = HashSet::from([key.clone()]);
    let mut queue = vec![key.clone()];
    let (mut all, mut action) = (0, 0);
    while let Some(k) = queue.pop() {
        let Some(v) = view::image(&a.sample, &a.analysis, &k) else {
            continue;
        };
        for child in v.snapshots.iter().flat_map(|s| s.children.iter()) {
            if seen.insert(child.clone()) {
                all += 1;
                action += usize::from(action_of(a, child) != Action::None);
                queue.push(child.clone());
            }
        }
    }
    (all, action)
}

struct Builder<'a> {
    a: &'a Analysed,
    prefix: &'a str,
    tree: Tree,
    seen: HashSet<ImageKey>,
}

impl Builder<'_> {
    fn push(&mut self, level: usize, parent: Option<usize>, row: Row) -> usize {
        self.tree.rows.push(Placed { level, parent, row });
        self.tree.rows.len() - 1
    }

    /// Draws the image, then its snapshots with children below it.
    fn image(&mut self, key: &ImageKey, level: usize, parent: Option<usize>, generation: usize) {
        let s = &self.a.sample;
        let pool = s.pool_name(key.pool_id);
        let image = s.image(key);
        let f = self.a.analysis.findings(key);
        let row = Row::Image {
            spec: match image {
                Some(i) => image_spec(&pool, &key.namespace, &i.name),
                None => format!("<id {}>", key.image_id),
            },
            depth: f.clone_depth.depth,
            action: action_of(self.a, key),
            reasons: f.flatten_reasons.iter().map(|r| r.label()).collect(),
            in_trash: image.is_some_and(|i| i.in_trash),
            url: image.map(|i| {
                let id = i.in_trash.then_some(key.image_id.as_str());
                image_url(self.prefix, &pool, &key.namespace, &i.name, id)
            }),
            pool,
        };
        let me = self.push(level, parent, row);
        if generation >= MAX_GENERATIONS || !self.seen.insert(key.clone()) {
            return;
        }
        let Some(v) = view::image(s, &self.a.analysis, key) else {
            return;
        };
        for snap in v.snapshots.iter().filter(|s| !s.children.is_empty()) {
            let srow = self.push(
                level + 1,
                Some(me),
                Row::Snapshot {
                    name: snap.snapshot.name.clone(),
                    protected: snap.snapshot.protected,
                    trashed: snap.snapshot.is_trashed(),
                    children: snap.children.len(),
                },
            );
            for (pool, keys) in self.by_pool(snap.children) {
                self.pool_group(&pool, keys, level + 2, srow, generation);
            }
        }
    }

    /// Children by pool name, each with whether it or one of its
    /// descendants needs action; those first (so that they are drawn, not
    /// summarised), then by id.
    fn by_pool(&self, children: &[ImageKey]) -> BTreeMap<String, Vec<(bool, ImageKey)>> {
        let mut out: BTreeMap<String, Vec<(bool, ImageKey)>> = BTreeMap::new();
        for k in children {
            let needs = action_of(self.a, k) != Action::None || descendants(self.a, k).1 > 0;
            out.entry(self.a.sample.pool_name(k.pool_id))
                .or_default()
                .push((needs, k.clone()));
        }
        for v in out.values_mut() {
            v.sort_by(|x, y| (!x.0, &x.1).cmp(&(!y.0, &y.1)));
            v.dedup_by(|x, y| x.1 == y.1);
        }
        out
    }

    fn pool_group(
        &mut self,
        pool: &str,
        keys: Vec<(bool, ImageKey)>,
        level: usize,
        parent: usize,
        generation: usize,
    ) {
        let needing = keys.iter().filter(|k| k.0).count();
        let prow = self.push(
            level,
            Some(parent),
            Row::Pool {
                pool: pool.to_string(),
                children: keys.len(),
                needing_action: needing,
            },
        );
        let shown = if self.tree.rows.len() >= MAX_ROWS {
            0
        } else {
            SHOWN_PER_POOL
        };
        for (_, k) in keys.iter().take(shown) {
            self.image(k, level + 1, Some(prow), generation + 1);
        }
        if keys.len() > shown {
            let rest = &keys[shown..];
            self.push(
                level + 1,
                Some(prow),
                Row::Summary {
                    pool: pool.to_string(),
                    hidden: rest.len(),
                    hidden_action: rest.iter().filter(|k| k.0).count(),
                },
            );
        }
    }
}

/// The text of a row.
fn label(row: &Row) -> String {
    match row {
        Row::Image {
            spec,
            depth,
            reasons,
            in_trash,
            action,
            ..
        } => {
            let mut t = format!("{spec}  depth {depth}");
            if *in_trash {
                t.push_str("  [in trash]");
            }
            if !reasons.is_empty() {
                let _ = write!(t, "  flatten: {}", reasons.join(", "));
            } else if *action == Action::Release {
                t.push_str("  orphaned watcher or stale lock");
            }
            t
        }
        Row::Snapshot {
            name,
            protected,
            trashed,
            children,
        } => format!(
            "@{name}{}{}  {children} clone(s)",
            if *protected { "  protected" } else { "" },
            if *trashed { "  [in trash]" } else { "" }
        ),
        Row::Pool {
            pool,
            children,
            needing_action,
        } => format!(
            "pool {pool}: {children} clone(s), {needing_action} needing action (itself or below)"
        ),
        Row::Summary {
            pool,
            hidden,
            hidden_action,
        } => format!(
            "+ {hidden} more in {pool} ({hidden_action} needing action, itself or below), listed under Snapshots"
        ),
    }
}

/// Colour of an image's mark.
fn colour(action: Action, root: bool) -> &'static str {
    match action {
        Action::Flatten => "#b00020",
        Action::Release => "#d9822b",
        Action::None if root => "#1f5f9f",
        Action::None => "#2e7d32",
    }
}

/// The tree as an inline SVG element (`svg#clone-tree`).
pub fn svg(tree: &Tree, title: &str) -> String {
    let y_of = |i: usize| 16 + i * ROW;
    let x_of = |level: usize| 12 + level * INDENT;
    let mut width = 200.0_f64;
    let mut body = String::new();
    for (i, p) in tree.rows.iter().enumerate() {
        let (x, y) = (x_of(p.level), y_of(i));
        let text = label(&p.row);
        width = width.max(x as f64 + 14.0 + text.chars().count() as f64 * CHAR + 16.0);
        if let Some(parent) = p.parent {
            let (px, py) = (x_of(tree.rows[parent].level), y_of(parent));
            let _ = write!(
                body,
                "<path d=\"M{px} {} V{y} H{}\" fill=\"none\" stroke=\"#9aa5b1\"/>",
                py + 5,
                x - 6
            );
        }
        body.push_str(&node(&p.row, i == 0, x, y, &text));
        body.push('\n');
    }
    let height = 16 + tree.rows.len() * ROW;
    format!(
        "<svg id=\"clone-tree\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" font-family=\"monospace\" font-size=\"12\" role=\"img\" aria-label=\"{t}\">\n<title>{t}</title>\n{body}</svg>",
        w = width.ceil() as usize,
        t = esc(title)
    )
}

/// One row's group: its mark and its text.
fn node(row: &Row, root: bool, x: usize, y: usize, text: &str) -> String {
    let tx = x + 10;
    let ty = y + 4;
    let text = esc(text);
    match row {
        Row::Image {
            spec,
            pool,
            depth,
            action,
            url,
            ..
        } => {
            let class = if *action == Action::None {
                "node"
            } else {
                "node action"
            };
            let t = match url {
                Some(u) => format!(
                    "<a href=\"{}\"><text x=\"{tx}\" y=\"{ty}\">{text}</text></a>",
                    esc(u)
                ),
                None => format!("<text x=\"{tx}\" y=\"{ty}\">{text}</text>"),
            };
            format!(
                "<g class=\"{class}{}\" data-spec=\"{}\" data-pool=\"{}\" data-depth=\"{depth}\" data-action=\"{}\"><circle cx=\"{x}\" cy=\"{y}\" r=\"5\" fill=\"{}\"/>{t}</g>",
                if root { " root" } else { "" },
                esc(spec),
                esc(pool),
                action.label(),
                colour(*action, root)
            )
        }
        Row::Snapshot { .. } => format!(
            "<g class=\"snap\"><path d=\"M{x} {} l5 5 l-5 5 l-5 -5 z\" fill=\"#5b6570\"/><text x=\"{tx}\" y=\"{ty}\">{text}</text></g>",
            y - 5
        ),
        Row::Pool { pool, .. } => format!(
            "<g class=\"pool\" data-pool=\"{}\"><rect x=\"{}\" y=\"{}\" width=\"9\" height=\"9\" fill=\"#8a97a5\"/><text x=\"{tx}\" y=\"{ty}\" font-weight=\"bold\">{text}</text></g>",
            esc(pool),
            x - 4,
            y - 4
        ),
        Row::Summary {
            pool,
            hidden,
            hidden_action,
        } => format!(
            "<g class=\"node summary{}\" data-pool=\"{}\" data-count=\"{hidden}\" data-action-count=\"{hidden_action}\"><circle cx=\"{x}\" cy=\"{y}\" r=\"5\" fill=\"#fff\" stroke=\"{}\" stroke-dasharray=\"2 2\"/><text x=\"{tx}\" y=\"{ty}\" font-style=\"italic\">{text}</text></g>",
            if *hidden_action > 0 { " action" } else { "" },
            esc(pool),
            if *hidden_action > 0 {
                "#b00020"
            } else {
                "#5b6570"
            }
        ),
    }
}
