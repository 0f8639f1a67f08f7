//! `ceph-rbd-exporter explain`: "why can't I delete this image, and who
//! holds it?" in one screen, from the same sample and analysis the
//! exporter serves. It prints the commands that would fix it; it never runs
//! them.

use crate::analysis::{Analysis, CloneDepth, FlattenReason, Host, ImageFindings, OrphanReason};
use crate::attribution::{Attribution, SourceOpinion, is_uuid, nova_instance_of};
use crate::model::{Image, ImageKey, Lock, LockKind, Sample, SnapshotNamespace};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Everything `explain` says about one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageExplanation {
    /// Pool name.
    pub pool: String,
    /// RBD namespace ("" for the default one).
    pub namespace: String,
    /// Image name (before trashing, for a trashed image).
    pub image: String,
    /// Image id (`rbd_header.<id>`).
    pub id: String,
    /// True when the image is in the trash.
    pub in_trash: bool,
    /// Provisioned size in bytes.
    pub size: u64,
    /// What the attachment sources say about it.
    pub owners: Vec<SourceOpinion>,
    /// Its watchers, each with host and verdict.
    pub watchers: Vec<WatcherExplanation>,
    /// Its locks.
    pub locks: Vec<LockExplanation>,
    /// Its ancestors, nearest first.
    pub parent_chain: Vec<ChainLink>,
    /// Clone depth.
    pub clone_depth: CloneDepth,
    /// Why it should be flattened.
    pub flatten_reasons: Vec<FlattenReason>,
    /// Its snapshots with their children.
    pub snapshots: Vec<SnapshotExplanation>,
    /// What stops `rbd rm` today, in plain words.
    pub blockers: Vec<String>,
    /// The commands that would fix it, in order. Never run by the exporter.
    pub fixes: Vec<Fix>,
}

/// One watcher.
#[derive(Debug, Clone, Serialize)]
pub struct WatcherExplanation {
    /// Client entity.
    pub client: String,
    /// Client address.
    pub address: String,
    /// Watch cookie.
    pub cookie: u64,
    /// The host behind the address, if known.
    pub host: Option<Host>,
    /// Why it is an orphan; `None` when it is not believed to be one.
    pub orphan_reason: Option<OrphanReason>,
}

/// One lock.
#[derive(Debug, Clone, Serialize)]
pub struct LockExplanation {
    /// Exclusive-lock owner or advisory.
    pub kind: LockKind,
    /// Locker entity.
    pub locker: String,
    /// Lock cookie.
    pub cookie: String,
    /// Locker address.
    pub address: String,
    /// The host behind the address, if known.
    pub host: Option<Host>,
    /// True when its holder no longer watches the image.
    pub stale: bool,
}

/// One ancestor.
#[derive(Debug, Clone, Serialize)]
pub struct ChainLink {
    /// Pool name.
    pub pool: String,
    /// RBD namespace.
    pub namespace: String,
    /// Image name, if it was sampled.
    pub image: Option<String>,
    /// Image id.
    pub image_id: String,
    /// Snapshot name, if known.
    pub snapshot: Option<String>,
    /// True when the image is in the trash.
    pub image_trashed: bool,
    /// True when the snapshot is in the trash namespace.
    pub snapshot_trashed: bool,
}

/// One snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotExplanation {
    /// Snapshot name.
    pub name: String,
    /// Snapshot id.
    pub id: u64,
    /// True when in the trash namespace.
    pub trashed: bool,
    /// True when protected.
    pub protected: bool,
    /// Children (v1 and v2), by pool name, as image specs.
    pub children: BTreeMap<String, Vec<String>>,
}

/// One step of the fix.
#[derive(Debug, Clone, Serialize)]
pub struct Fix {
    /// Why this step.
    pub why: String,
    /// The commands, in order. Lines starting with `#` say where to run
    /// them.
    pub commands: Vec<String>,
}

/// Every orphaned watcher and stale lock in the sample.
#[derive(Debug, Clone, Serialize)]
pub struct OrphanListing {
    /// Orphaned watchers.
    pub orphaned_watchers: Vec<OrphanEntry>,
    /// Stale locks.
    pub stale_locks: Vec<StaleLockEntry>,
}

/// One orphaned watcher.
#[derive(Debug, Clone, Serialize)]
pub struct OrphanEntry {
    /// Image spec (`pool[/namespace]/image`).
    pub image: String,
    /// The watcher.
    pub watcher: WatcherExplanation,
    /// The commands that would fix it.
    pub fix: Fix,
}

/// One stale lock.
#[derive(Debug, Clone, Serialize)]
pub struct StaleLockEntry {
    /// Image spec.
    pub image: String,
    /// The lock.
    pub lock: LockExplanation,
    /// The command that would fix it.
    pub fix: Fix,
}

/// Finds an image by pool name, namespace and name. An image outside the
/// trash wins over a trashed one of the same name.
pub fn find_image<'a>(
    sample: &'a Sample,
    pool: &str,
    namespace: &str,
    name: &str,
) -> Option<(ImageKey, &'a Image)> {
    let mut found: Option<(ImageKey, &Image)> = None;
    for (p, ns) in sample.namespaces() {
        if p.name != pool || ns.namespace != namespace {
            continue;
        }
        for image in ns.images.values().filter(|i| i.name == name) {
            let key = ImageKey {
                pool_id: p.pool_id,
                namespace: ns.namespace.clone(),
                image_id: image.id.clone(),
            };
            if found
                .as_ref()
                .is_none_or(|(_, f)| f.in_trash && !image.in_trash)
            {
                found = Some((key, image));
            }
        }
    }
    found
}

/// `pool[/namespace]/image`, as `rbd` takes it.
pub fn image_spec(pool: &str, namespace: &str, image: &str) -> String {
    if namespace.is_empty() {
        format!("{pool}/{image}")
    } else {
        format!("{pool}/{namespace}/{image}")
    }
}

/// Quotes a word for a POSIX shell, only when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./@:=+-,%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Explains one image.
pub fn explain_image(
    sample: &Sample,
    analysis: &Analysis,
    attribution: &Attribution,
    key: &ImageKey,
) -> Option<ImageExplanation> {
    let image = sample.image(key)?;
    let findings = analysis.images.get(key)?;
    let pool = sample.pool_name(key.pool_id);
    let ns = key.namespace.clone();
    let spec = image_spec(&pool, &ns, &image.name);
    let qspec = shell_quote(&spec);

    let watchers = watcher_explanations(image, findings);
    let locks: Vec<LockExplanation> = image
        .locks
        .iter()
        .map(|l| lock_explanation(l, findings, attribution))
        .collect();

    let parent_chain = parent_chain(sample, image);
    let snapshots: Vec<SnapshotExplanation> = image
        .snapshots
        .iter()
        .map(|s| SnapshotExplanation {
            name: s.name.clone(),
            id: s.id,
            trashed: s.is_trashed(),
            protected: s.protected,
            children: children_of(sample, key, s.id, &s.v2_children),
        })
        .collect();
    let owners = attribution.opinions(&pool, &ns, &image.name);

    let mut blockers = Vec::new();
    let mut fixes = Vec::new();
    for w in &watchers {
        blockers.push(format!(
            "{} at {} ({}) has it open{}",
            w.client,
            w.address,
            host_text(w.host.as_ref()),
            match w.orphan_reason {
                Some(r) => format!(": believed ORPHANED ({})", r.label()),
                None => String::new(),
            }
        ));
        fixes.push(watcher_fix(&pool, &ns, image, w, &owners));
    }
    let lock_commands: Vec<String> = locks
        .iter()
        .map(|l| {
            format!(
                "rbd lock rm {qspec} {} {}",
                shell_quote(&l.cookie),
                shell_quote(&l.locker)
            )
        })
        .collect();
    for l in &locks {
        blockers.push(format!(
            "{} lock {:?} held by {} at {} ({}){}",
            match l.kind {
                LockKind::Exclusive => "exclusive",
                LockKind::Advisory => "advisory",
            },
            l.cookie,
            l.locker,
            l.address,
            host_text(l.host.as_ref()),
            if l.stale {
                ": STALE, its holder no longer watches the image"
            } else {
                ""
            }
        ));
    }
    if !lock_commands.is_empty() {
        fixes.push(Fix {
            why:
                "remove the locks once their holders are stopped (a blocklist does not remove them)"
                    .into(),
            commands: lock_commands,
        });
    }
    for s in &snapshots {
        let n: usize = s.children.values().map(Vec::len).sum();
        if n == 0 {
            continue;
        }
        blockers.push(format!(
            "snapshot {:?}{} has {n} clone(s): {}",
            s.name,
            if s.trashed { " (in the trash)" } else { "" },
            s.children
                .iter()
                .map(|(p, c)| format!("{p} ({})", c.len()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let mut commands: Vec<String> = s
            .children
            .values()
            .flatten()
            .map(|c| format!("rbd flatten {}", shell_quote(c)))
            .collect();
        if s.protected {
            commands.push(format!(
                "rbd snap unprotect {}",
                shell_quote(&format!("{spec}@{}", s.name))
            ));
        }
        fixes.push(Fix {
            why: format!(
                "flatten the clones of snapshot {:?} so it no longer pins the image{}",
                s.name,
                if s.trashed {
                    " (a trashed snapshot goes away by itself after its last clone)"
                } else {
                    ""
                }
            ),
            commands,
        });
    }
    for s in snapshots
        .iter()
        .filter(|s| s.protected && s.children.is_empty())
    {
        blockers.push(format!("snapshot {:?} is protected", s.name));
        fixes.push(Fix {
            why: format!("unprotect snapshot {:?} (it has no clones)", s.name),
            commands: vec![format!(
                "rbd snap unprotect {}",
                shell_quote(&format!("{spec}@{}", s.name))
            )],
        });
    }
    let mut removal = Vec::new();
    if image.snapshots.iter().any(|s| !s.is_trashed()) {
        removal.push(format!("rbd snap purge {qspec}"));
    }
    if image.in_trash {
        let trash_spec = if ns.is_empty() {
            format!("{pool}/{}", image.id)
        } else {
            format!("{pool}/{ns}/{}", image.id)
        };
        removal.push(format!("rbd trash rm {}", shell_quote(&trash_spec)));
    } else {
        removal.push(format!("rbd rm {qspec}"));
    }
    fixes.push(Fix {
        why: "then the image can be removed (only if nobody needs it: check the owners above)"
            .into(),
        commands: removal,
    });
    if !findings.flatten_reasons.is_empty() {
        fixes.push(Fix {
            why: format!(
                "or, to keep it instead: flatten it ({})",
                findings
                    .flatten_reasons
                    .iter()
                    .map(|r| r.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            commands: vec![format!("rbd flatten {qspec}")],
        });
    }

    Some(ImageExplanation {
        pool,
        namespace: ns,
        image: image.name.clone(),
        id: image.id.clone(),
        in_trash: image.in_trash,
        size: image.size,
        owners,
        watchers,
        locks,
        parent_chain,
        clone_depth: findings.clone_depth,
        flatten_reasons: findings.flatten_reasons.iter().copied().collect(),
        snapshots,
        blockers,
        fixes,
    })
}

/// Every watcher of an image with its host and verdict.
fn watcher_explanations(image: &Image, findings: &ImageFindings) -> Vec<WatcherExplanation> {
    image
        .watchers
        .iter()
        .enumerate()
        .map(|(i, w)| WatcherExplanation {
            client: w.client.clone(),
            address: w.address.clone(),
            cookie: w.cookie,
            host: findings.watcher_hosts.get(i).cloned().flatten(),
            orphan_reason: findings
                .orphaned_watchers
                .iter()
                .find(|(o, _)| o == w)
                .map(|(_, r)| *r),
        })
        .collect()
}

fn lock_explanation(
    lock: &Lock,
    findings: &ImageFindings,
    attribution: &Attribution,
) -> LockExplanation {
    LockExplanation {
        kind: lock.kind,
        locker: lock.locker.clone(),
        cookie: lock.cookie.clone(),
        address: lock.address.clone(),
        host: attribution.host_of_address(&lock.address),
        stale: findings.stale_locks.contains(lock),
    }
}

fn host_text(host: Option<&Host>) -> String {
    match host {
        Some(h) => match &h.role {
            Some(role) => format!("host {}, {role}, via {}", h.name, h.via),
            None => format!("host {}, via {}", h.name, h.via),
        },
        None => "host unknown".into(),
    }
}

/// How to find and stop one watcher.
fn watcher_fix(
    pool: &str,
    namespace: &str,
    image: &Image,
    w: &WatcherExplanation,
    owners: &[SourceOpinion],
) -> Fix {
    let host = w.host.as_ref().map_or_else(
        || {
            format!(
                "the host with address {}",
                crate::model::address_ip(&w.address)
            )
        },
        |h| h.name.clone(),
    );
    let mut commands = vec![format!("# on {host}: find the process that has it open")];
    if let Some(uuid) = nova_instance_of(&image.name) {
        commands.push(format!("virsh dominfo {uuid}"));
        commands.push(format!("openstack server show {uuid}"));
    } else if let Some(uuid) = image
        .name
        .strip_prefix("volume-")
        .map(|u| u.strip_suffix(".deleted").unwrap_or(u))
        .filter(|u| is_uuid(u))
    {
        commands.push(format!(
            "ps -eo pid,args | grep -F -- {}",
            shell_quote(uuid)
        ));
        commands.push("virsh list --all".into());
        commands.push(format!("openstack volume show {}", shell_quote(uuid)));
    } else {
        commands.push(format!(
            "rbd showmapped | grep -F -- {}",
            shell_quote(&image.name)
        ));
        commands.push(format!(
            "ps -eo pid,args | grep -F -- {}",
            shell_quote(&image.name)
        ));
    }
    for o in owners {
        commands.push(format!("# {} says: {}", o.source, o.expectation.owner));
    }
    let why = match w.orphan_reason {
        Some(reason) => {
            commands.push(
                "# stop that process (virsh destroy, delete the pod, rbd unmap); if the host is gone:"
                    .into(),
            );
            commands.push(format!(
                "ceph osd blocklist add {}",
                shell_quote(&w.address)
            ));
            format!(
                "watcher {} on {host} is believed orphaned ({}); the watch ends when its client stops",
                w.client,
                reason.label()
            )
        }
        None => {
            commands.push(format!(
                "# it is not believed orphaned: detach it there first (rbd status {} to re-check)",
                shell_quote(&image_spec(pool, namespace, &image.name))
            ));
            format!("watcher {} on {host} has the image open", w.client)
        }
    };
    Fix { why, commands }
}

/// Ancestors of `image`, nearest first, stopping at a loop or at a parent
/// that was not sampled.
fn parent_chain(sample: &Sample, image: &Image) -> Vec<ChainLink> {
    let mut chain = Vec::new();
    let mut next = image.parent.clone();
    let mut seen = std::collections::HashSet::new();
    while let Some(p) = next.take() {
        if !seen.insert(p.image_key()) || chain.len() > 64 {
            break;
        }
        let parent = sample.image(&p.image_key());
        let snap = parent.and_then(|pi| pi.snapshots.iter().find(|s| s.id == p.snap_id));
        chain.push(ChainLink {
            pool: sample.pool_name(p.pool_id),
            namespace: p.namespace.clone(),
            image: parent.map(|i| i.name.clone()),
            image_id: p.image_id.clone(),
            snapshot: snap.map(|s| match &s.namespace {
                SnapshotNamespace::Trash { original_name } => original_name.clone(),
                _ => s.name.clone(),
            }),
            image_trashed: parent.is_some_and(|i| i.in_trash),
            snapshot_trashed: snap.is_some_and(|s| s.is_trashed()),
        });
        next = parent.and_then(|i| i.parent.clone());
    }
    chain
}

/// Children of one snapshot, v2 from its child list and v1 from every
/// sampled pool's `rbd_children`, as image specs grouped by pool.
fn children_of(
    sample: &Sample,
    parent: &ImageKey,
    snap_id: u64,
    v2: &[crate::model::ChildRef],
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let name_of = |key: &ImageKey| {
        sample
            .image(key)
            .map(|i| i.name.clone())
            .unwrap_or_else(|| format!("<id {}>", key.image_id))
    };
    for c in v2 {
        let key = ImageKey {
            pool_id: c.pool_id,
            namespace: c.namespace.clone(),
            image_id: c.image_id.clone(),
        };
        let pool = sample.pool_name(c.pool_id);
        out.entry(pool.clone())
            .or_default()
            .push(image_spec(&pool, &c.namespace, &name_of(&key)));
    }
    for (p, ns) in sample.namespaces() {
        for link in &ns.v1_children {
            if link.parent_pool_id != parent.pool_id
                || link.parent_image_id != parent.image_id
                || link.parent_snap_id != snap_id
            {
                continue;
            }
            for id in &link.child_image_ids {
                let key = ImageKey {
                    pool_id: p.pool_id,
                    namespace: ns.namespace.clone(),
                    image_id: id.clone(),
                };
                out.entry(p.name.clone()).or_default().push(image_spec(
                    &p.name,
                    &ns.namespace,
                    &name_of(&key),
                ));
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup();
    }
    out
}

/// Every orphaned watcher and stale lock in the sample.
pub fn orphans(sample: &Sample, analysis: &Analysis, attribution: &Attribution) -> OrphanListing {
    let mut listing = OrphanListing {
        orphaned_watchers: Vec::new(),
        stale_locks: Vec::new(),
    };
    for (p, ns) in sample.namespaces() {
        for image in ns.images.values() {
            let key = ImageKey {
                pool_id: p.pool_id,
                namespace: ns.namespace.clone(),
                image_id: image.id.clone(),
            };
            let Some(findings) = analysis.images.get(&key) else {
                continue;
            };
            let mut spec = image_spec(&p.name, &ns.namespace, &image.name);
            if image.in_trash {
                spec.push_str(&format!(" (in trash, id {})", image.id));
            }
            if !findings.orphaned_watchers.is_empty() {
                let owners = attribution.opinions(&p.name, &ns.namespace, &image.name);
                let orphans = watcher_explanations(image, findings)
                    .into_iter()
                    .filter(|w| w.orphan_reason.is_some());
                for watcher in orphans {
                    let fix = watcher_fix(&p.name, &ns.namespace, image, &watcher, &owners);
                    listing.orphaned_watchers.push(OrphanEntry {
                        image: spec.clone(),
                        watcher,
                        fix,
                    });
                }
            }
            for l in &findings.stale_locks {
                let lock = lock_explanation(l, findings, attribution);
                let fix = Fix {
                    why: format!("{} no longer watches the image; remove its lock", l.locker),
                    commands: vec![format!(
                        "rbd lock rm {} {} {}",
                        shell_quote(&image_spec(&p.name, &ns.namespace, &image.name)),
                        shell_quote(&l.cookie),
                        shell_quote(&l.locker)
                    )],
                };
                listing.stale_locks.push(StaleLockEntry {
                    image: spec.clone(),
                    lock,
                    fix,
                });
            }
        }
    }
    listing
}

/// Renders an image explanation for a terminal.
pub fn render_image(e: &ImageExplanation) -> String {
    let mut out = String::new();
    let spec = image_spec(&e.pool, &e.namespace, &e.image);
    let _ = writeln!(
        out,
        "image     {spec}  (id {}, {}{})",
        e.id,
        human_size(e.size),
        if e.in_trash { ", IN TRASH" } else { "" }
    );
    for o in &e.owners {
        let where_ = match &o.expectation.hosts {
            None => "no opinion on where it belongs".to_string(),
            Some(h) if h.is_empty() => "attached nowhere".to_string(),
            Some(h) => format!(
                "attached to {}",
                h.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        let _ = writeln!(
            out,
            "owner     {} ({}: {where_})",
            o.expectation.owner, o.source
        );
    }
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
        let name = p
            .image
            .clone()
            .unwrap_or_else(|| format!("<id {}>", p.image_id));
        let _ = writeln!(
            out,
            "  {}{}@{}{}{}",
            "  ".repeat(i),
            image_spec(&p.pool, &p.namespace, &name),
            p.snapshot.as_deref().unwrap_or("?"),
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
    let _ = writeln!(out, "\nwhy it cannot be deleted now");
    if e.blockers.is_empty() {
        let _ = writeln!(out, "  nothing: no watchers, locks or clones");
    }
    for b in &e.blockers {
        let _ = writeln!(out, "  - {b}");
    }
    render_fixes(&mut out, &e.fixes);
    out
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

fn human_size(bytes: u64) -> String {
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
