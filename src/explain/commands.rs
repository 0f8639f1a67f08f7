//! The fixes `explain` offers: one builder per `rbd`/`ceph` command, and
//! the steps made of them. Nothing here runs anything.

use super::{Fix, SnapshotExplanation};
use crate::analysis::{LockFinding, WatcherFinding};
use crate::attribution::{SourceOpinion, is_uuid, nova_instance_of};
use crate::model::address_ip;
use crate::view::{ImageView, image_spec};

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

/// The image's spec, `pool[/namespace]/image`.
fn spec(v: &ImageView<'_>) -> String {
    image_spec(&v.pool, &v.key.namespace, &v.image.name)
}

/// `-p POOL [--namespace NS]`, as `rados` takes a pool and namespace.
fn rados_pool_args(v: &ImageView<'_>) -> String {
    let mut args = format!("-p {}", shell_quote(&v.pool));
    if !v.key.namespace.is_empty() {
        args.push_str(&format!(" --namespace {}", shell_quote(&v.key.namespace)));
    }
    args
}

/// `--pool POOL [--namespace NS] --image-id ID`: how `rbd` commands that
/// can name an image by id take a trashed one (names do not resolve in the
/// trash).
fn rbd_id_args(v: &ImageView<'_>) -> String {
    let mut args = format!("--pool {}", shell_quote(&v.pool));
    if !v.key.namespace.is_empty() {
        args.push_str(&format!(" --namespace {}", shell_quote(&v.key.namespace)));
    }
    args.push_str(&format!(" --image-id {}", shell_quote(&v.image.id)));
    args
}

/// Removes one lock: `rbd lock rm SPEC COOKIE LOCKER`, or for a trashed
/// image (which `rbd lock rm` cannot name) the same break on its header
/// object with `rados lock break`.
fn lock_rm(v: &ImageView<'_>, l: &LockFinding) -> String {
    if v.image.in_trash {
        return format!(
            "rados {} lock break rbd_header.{} rbd_lock {} --lock-cookie {}",
            rados_pool_args(v),
            shell_quote(&v.image.id),
            shell_quote(&l.lock.locker),
            shell_quote(&l.lock.cookie)
        );
    }
    format!(
        "rbd lock rm {} {} {}",
        shell_quote(&spec(v)),
        shell_quote(&l.lock.cookie),
        shell_quote(&l.lock.locker)
    )
}

/// Lists the image's watchers again: `rbd status SPEC`, or for a trashed
/// image `rados listwatchers` on its header object.
fn status(v: &ImageView<'_>) -> String {
    if v.image.in_trash {
        return format!(
            "rados {} listwatchers rbd_header.{}",
            rados_pool_args(v),
            shell_quote(&v.image.id)
        );
    }
    format!("rbd status {}", shell_quote(&spec(v)))
}

/// `rbd flatten SPEC`.
fn flatten(spec: &str) -> String {
    format!("rbd flatten {}", shell_quote(spec))
}

/// `rbd snap purge SPEC`: removes every (unprotected) snapshot.
fn snap_purge(spec: &str) -> String {
    format!("rbd snap purge {}", shell_quote(spec))
}

/// `rbd snap unprotect SPEC@SNAP` (by id for a trashed image).
fn snap_unprotect(v: &ImageView<'_>, snapshot: &str) -> String {
    if v.image.in_trash {
        return format!(
            "rbd snap unprotect {} --snap {}",
            rbd_id_args(v),
            shell_quote(snapshot)
        );
    }
    format!(
        "rbd snap unprotect {}",
        shell_quote(&format!("{}@{snapshot}", spec(v)))
    )
}

/// `ceph osd blocklist add ADDRESS`.
fn blocklist_add(address: &str) -> String {
    format!("ceph osd blocklist add {}", shell_quote(address))
}

/// Commands that find the process holding the image on its host, by what
/// the image's name says it is (a Nova disk, a Cinder volume, or else).
fn find_process(name: &str) -> Vec<String> {
    if let Some(uuid) = nova_instance_of(name) {
        return vec![
            format!("virsh dominfo {uuid}"),
            format!("openstack server show {uuid}"),
        ];
    }
    let volume = name
        .strip_prefix("volume-")
        .map(|u| u.strip_suffix(".deleted").unwrap_or(u))
        .filter(|u| is_uuid(u));
    match volume {
        Some(uuid) => vec![
            format!("ps -eo pid,args | grep -F -- {}", shell_quote(uuid)),
            "virsh list --all".into(),
            format!("openstack volume show {}", shell_quote(uuid)),
        ],
        None => vec![
            format!("rbd showmapped | grep -F -- {}", shell_quote(name)),
            format!("ps -eo pid,args | grep -F -- {}", shell_quote(name)),
        ],
    }
}

/// How to find and stop one watcher.
pub(super) fn watcher_fix(v: &ImageView<'_>, w: &WatcherFinding, owners: &[SourceOpinion]) -> Fix {
    let host = w.host.as_ref().map_or_else(
        || format!("the host with address {}", address_ip(&w.watcher.address)),
        |h| h.name.clone(),
    );
    let mut commands = vec![format!("# on {host}: find the process that has it open")];
    commands.extend(find_process(&v.image.name));
    for o in owners {
        commands.push(format!("# {} says: {}", o.source, o.expectation.owner));
    }
    let why = match w.orphan_reason() {
        Some(reason) => {
            commands.push(
                "# stop that process (virsh destroy, delete the pod, rbd unmap); if the host is gone:"
                    .into(),
            );
            commands.push(blocklist_add(&w.watcher.address));
            format!(
                "watcher {} on {host} is believed orphaned ({}); the watch ends when its client stops",
                w.watcher.client,
                reason.label()
            )
        }
        None => {
            commands.push(format!(
                "# it is not believed orphaned: detach it there first ({} to re-check)",
                status(v)
            ));
            format!("watcher {} on {host} has the image open", w.watcher.client)
        }
    };
    Fix { why, commands }
}

/// Remove the image's stale locks. A live lock is not removed: it goes with
/// its holder (exclusive) or turns stale once the holder is stopped
/// (advisory), and `explain` then offers its removal; a note says so.
pub(super) fn remove_stale_locks(v: &ImageView<'_>) -> Option<Fix> {
    let commands: Vec<String> = v
        .findings
        .locks
        .iter()
        .map(|l| match l.stale {
            true => lock_rm(v, l),
            false => format!(
                "# {} lock {:?} of live {}: it goes (exclusive) or turns stale (advisory) when that client stops; explain again then",
                match l.lock.kind {
                    crate::model::LockKind::Exclusive => "exclusive",
                    crate::model::LockKind::Advisory => "advisory",
                },
                l.lock.cookie,
                l.lock.locker
            ),
        })
        .collect();
    (!commands.is_empty()).then(|| Fix {
        why: "remove the stale locks (their holders no longer watch the image; a blocklist does not remove them), not the live ones"
            .into(),
        commands,
    })
}

/// Remove one stale lock.
pub(super) fn remove_stale_lock(v: &ImageView<'_>, l: &LockFinding) -> Fix {
    Fix {
        why: format!(
            "{} no longer watches the image; remove its lock",
            l.lock.locker
        ),
        commands: vec![lock_rm(v, l)],
    }
}

/// Free a snapshot so it no longer pins the image: flatten its clones,
/// remove the snapshots of clones flattened earlier (`snapshotted`: only
/// their snapshots still pin it, and `rbd flatten` would fail on them), then
/// unprotect it. A clone in the trash (`trashed`: its spec and its trash
/// spec) is restored first, as [`flatten_image`] does, since `rbd flatten`
/// cannot name it there; or, if nobody needs it, removed for good.
pub(super) fn free_snapshot(
    v: &ImageView<'_>,
    s: &SnapshotExplanation,
    snapshotted: &[String],
    trashed: &[(String, String)],
) -> Fix {
    let mut commands: Vec<String> = Vec::new();
    for c in s.children.values().flatten() {
        if let Some((_, id_spec)) = trashed.iter().find(|(spec, _)| spec == c) {
            commands.push(format!(
                "# {c} is in the trash: restore it to flatten it, or if nobody needs it remove it for good instead: rbd trash rm {}",
                shell_quote(id_spec)
            ));
            commands.push(format!("rbd trash restore {}", shell_quote(id_spec)));
        }
        commands.push(match snapshotted.contains(c) {
            true => snap_purge(c),
            false => flatten(c),
        });
    }
    if s.protected {
        commands.push(snap_unprotect(v, &s.name));
    }
    let mut why = format!(
        "flatten the clones of snapshot {:?} so it no longer pins the image{}",
        s.name,
        if s.trashed {
            " (a trashed snapshot goes away by itself after its last clone)"
        } else {
            ""
        }
    );
    if !snapshotted.is_empty() {
        why.push_str(&format!(
            "; {} already flattened but still pinning it through their own snapshots: remove those snapshots",
            snapshotted.join(", ")
        ));
    }
    Fix { why, commands }
}

/// Unprotect a protected snapshot that has no clones.
pub(super) fn unprotect(v: &ImageView<'_>, s: &SnapshotExplanation) -> Fix {
    Fix {
        why: format!("unprotect snapshot {:?} (it has no clones)", s.name),
        commands: vec![snap_unprotect(v, &s.name)],
    }
}

/// Remove the image: purge its snapshots, then `rbd rm` (or `rbd trash rm`
/// by id for a trashed image).
pub(super) fn remove(v: &ImageView<'_>) -> Fix {
    let mut commands = Vec::new();
    let qspec = shell_quote(&spec(v));
    if v.image.snapshots.iter().any(|s| !s.is_trashed()) {
        match v.image.in_trash {
            true => commands.push(format!("rbd snap purge {}", rbd_id_args(v))),
            false => commands.push(format!("rbd snap purge {qspec}")),
        }
    }
    if v.image.in_trash {
        let trash_spec = image_spec(&v.pool, &v.key.namespace, &v.image.id);
        commands.push(format!("rbd trash rm {}", shell_quote(&trash_spec)));
    } else {
        commands.push(format!("rbd rm {qspec}"));
    }
    Fix {
        why: "then the image can be removed (only if nobody needs it: check the owners above)"
            .into(),
        commands,
    }
}

/// Or keep the image and flatten it, for its flatten reasons.
pub(super) fn flatten_instead(v: &ImageView<'_>) -> Fix {
    Fix {
        why: format!(
            "or, to keep it instead: flatten it ({})",
            v.findings
                .flatten_reasons
                .iter()
                .map(|r| r.label())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        commands: flatten_image(v),
    }
}

/// Flattens the image itself; a trashed image is restored first (`rbd
/// flatten` cannot name it in the trash).
fn flatten_image(v: &ImageView<'_>) -> Vec<String> {
    let mut commands = Vec::new();
    if v.image.in_trash {
        let trash_spec = image_spec(&v.pool, &v.key.namespace, &v.image.id);
        commands.push(format!("rbd trash restore {}", shell_quote(&trash_spec)));
    }
    commands.push(flatten(&spec(v)));
    commands
}
