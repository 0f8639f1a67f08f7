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

/// `rbd lock rm SPEC COOKIE LOCKER`.
fn lock_rm(v: &ImageView<'_>, l: &LockFinding) -> String {
    format!(
        "rbd lock rm {} {} {}",
        shell_quote(&spec(v)),
        shell_quote(&l.lock.cookie),
        shell_quote(&l.lock.locker)
    )
}

/// `rbd flatten SPEC`.
fn flatten(spec: &str) -> String {
    format!("rbd flatten {}", shell_quote(spec))
}

/// `rbd snap unprotect SPEC@SNAP`.
fn snap_unprotect(v: &ImageView<'_>, snapshot: &str) -> String {
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
                "# it is not believed orphaned: detach it there first (rbd status {} to re-check)",
                shell_quote(&spec(v))
            ));
            format!("watcher {} on {host} has the image open", w.watcher.client)
        }
    };
    Fix { why, commands }
}

/// Remove every lock of the image, once their holders are stopped.
pub(super) fn remove_locks(v: &ImageView<'_>) -> Fix {
    Fix {
        why: "remove the locks once their holders are stopped (a blocklist does not remove them)"
            .into(),
        commands: v.findings.locks.iter().map(|l| lock_rm(v, l)).collect(),
    }
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

/// Flatten a snapshot's clones (and unprotect it) so it no longer pins the
/// image.
pub(super) fn free_snapshot(v: &ImageView<'_>, s: &SnapshotExplanation) -> Fix {
    let mut commands: Vec<String> = s.children.values().flatten().map(|c| flatten(c)).collect();
    if s.protected {
        commands.push(snap_unprotect(v, &s.name));
    }
    Fix {
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
    }
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
        commands.push(format!("rbd snap purge {qspec}"));
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
        commands: vec![flatten(&spec(v))],
    }
}
