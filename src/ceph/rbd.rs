//! RBD domain rules applied to decoded replies, kept out of the I/O layer:
//! which `rbd_lock` holder is librbd's exclusive lock and which an advisory
//! lock, what counts as a protected snapshot, what an `rbd_support` task
//! record says, and how the decoders' structs become the model's types.
//!
//! Everything here is pure: no I/O, no librados.

use super::decode::{
    ChildSpec, ChildrenKey, DecodeError, LockInfo, ParentSpec, SnapNamespace, SnapshotInfo,
    TrashSpec, entity_name, trash_source_name,
};
use crate::model::{
    ChildRef, Lock, LockKind, ParentRef, QueuedTask, Snapshot, SnapshotNamespace, TrashEntry,
    V1ChildLink,
};

/// The lock librbd uses for both the exclusive-lock feature and `rbd lock add`.
pub(super) const RBD_LOCK_NAME: &str = "rbd_lock";

/// The object every rbd-mirror daemon replaying into a pool watches (in the
/// pool's default namespace): its leader election.
pub(super) const MIRROR_LEADER: &str = "rbd_mirror_leader";

/// The pool's mirroring directory (in its default namespace). Of Ceph's
/// clients only rbd-mirror's pool watcher watches it, through every
/// connection it has to the pool, its peer connection to a remote
/// primary's pool included (librbd only notifies it).
pub(super) const MIRRORING: &str = "rbd_mirroring";

/// `ClsLockType` of a shared lock.
const LOCK_SHARED: u8 = 2;

/// `get_protection_status` value of a protected snapshot.
const PROTECTION_STATUS_PROTECTED: u8 = 2;

/// librbd's exclusive lock takes `rbd_lock` with the tag `internal` and a
/// cookie `auto <watch handle>`; anything else is an advisory lock
/// (`rbd lock add`, an orchestrator).
pub(super) fn lock_kind(tag: &str, cookie: &str) -> LockKind {
    if tag == "internal" && cookie.starts_with("auto ") {
        LockKind::Exclusive
    } else {
        LockKind::Advisory
    }
}

/// The holders of `rbd_lock`, from its `lock.get_info` reply.
pub(super) fn locks(info: LockInfo) -> Vec<Lock> {
    let shared = info.lock_type == LOCK_SHARED;
    info.lockers
        .into_iter()
        .map(|l| Lock {
            kind: lock_kind(&info.tag, &l.cookie),
            locker: entity_name(l.entity_type, l.entity_num),
            cookie: l.cookie,
            address: l.address,
            shared,
            tag: info.tag.clone(),
        })
        .collect()
}

/// True for the protection status of a protected snapshot (not for one
/// being unprotected).
pub(super) fn is_protected(status: u8) -> bool {
    status == PROTECTION_STATUS_PROTECTED
}

/// A clone's parent, with the overlap read alongside it.
pub(super) fn parent_ref(p: ParentSpec, overlap: Option<u64>) -> ParentRef {
    ParentRef {
        pool_id: p.pool_id,
        namespace: p.namespace,
        image_id: p.image_id,
        snap_id: p.snap_id,
        overlap,
    }
}

/// The model's name for a snapshot namespace.
pub(super) fn snapshot_namespace(ns: SnapNamespace) -> SnapshotNamespace {
    match ns {
        SnapNamespace::User => SnapshotNamespace::User,
        SnapNamespace::Group => SnapshotNamespace::Group,
        SnapNamespace::Trash { original_name, .. } => SnapshotNamespace::Trash { original_name },
        SnapNamespace::Mirror => SnapshotNamespace::Mirror,
        SnapNamespace::Unknown(code) => SnapshotNamespace::Unknown { code },
    }
}

/// One snapshot from its `snapshot_get` reply, protection and v2 children.
pub(super) fn snapshot(info: SnapshotInfo, protected: bool, children: Vec<ChildSpec>) -> Snapshot {
    Snapshot {
        id: info.id,
        name: info.name,
        namespace: snapshot_namespace(info.namespace),
        protected,
        size: info.image_size,
        v2_children: children
            .into_iter()
            .map(|c| ChildRef {
                pool_id: c.pool_id,
                namespace: c.namespace,
                image_id: c.image_id,
            })
            .collect(),
    }
}

/// One `rbd_trash` entry from its key's image id and its value.
pub(super) fn trash_entry(id: String, spec: TrashSpec) -> TrashEntry {
    TrashEntry {
        id,
        name: spec.name,
        source: trash_source_name(spec.source),
        deletion_time: spec.deletion_time,
        deferment_end_time: spec.deferment_end_time,
        state: super::decode::trash_state_name(spec.state),
    }
}

/// One `rbd_children` entry from its key (the parent) and value (the
/// children).
pub(super) fn v1_child_link(key: ChildrenKey, child_image_ids: Vec<String>) -> V1ChildLink {
    V1ChildLink {
        parent_pool_id: key.pool_id,
        parent_image_id: key.image_id,
        parent_snap_id: key.snap_id,
        child_image_ids,
    }
}

/// One `rbd_task` omap value: JSON written by the mgr's rbd_support module.
/// It needs an `id` and a `refs.action`; the image it names is optional.
pub(super) fn queued_task(v: &[u8]) -> Result<QueuedTask, DecodeError> {
    parse_task(v).map_err(|reason| DecodeError {
        field: "task",
        reason,
    })
}

fn parse_task(v: &[u8]) -> Result<QueuedTask, String> {
    let v: serde_json::Value = serde_json::from_slice(v).map_err(|e| format!("not JSON: {e}"))?;
    let refs = v.get("refs").ok_or("no refs")?;
    let text =
        |o: &serde_json::Value, k: &str| o.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    Ok(QueuedTask {
        id: text(&v, "id").ok_or("no id")?,
        action: text(refs, "action").ok_or("no refs.action")?,
        image_id: text(refs, "image_id"),
        image_name: text(refs, "image_name"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ceph::decode::Locker;

    #[test]
    fn parses_rbd_support_task() {
        let v = br#"{"sequence": 1, "id": "06f08859", "message": "Flattening image rbd/b", "refs": {"action": "flatten", "pool_name": "rbd", "pool_namespace": "", "image_name": "b", "image_id": "10301c1fdec5"}}"#;
        let t = parse_task(v).unwrap();
        assert_eq!(t.action, "flatten");
        assert_eq!(t.image_id.as_deref(), Some("10301c1fdec5"));
        assert!(parse_task(b"garbage").is_err());
        assert!(parse_task(br#"{"id":"x"}"#).is_err());
    }

    #[test]
    fn task_errors_name_the_missing_part() {
        let e = queued_task(br#"{"id":"x"}"#).unwrap_err();
        assert_eq!((e.field, e.reason.as_str()), ("task", "no refs"));
        let e = queued_task(br#"{"id":"x","refs":{}}"#).unwrap_err();
        assert_eq!(e.reason, "no refs.action");
        let e = queued_task(br#"{"refs":{"action":"remove"}}"#).unwrap_err();
        assert_eq!(e.reason, "no id");
        assert!(
            queued_task(b"{")
                .unwrap_err()
                .reason
                .starts_with("not JSON")
        );
        let t = queued_task(br#"{"id":"x","refs":{"action":"remove"}}"#).unwrap();
        assert_eq!((t.image_id, t.image_name), (None, None));
    }

    #[test]
    fn only_internal_auto_locks_are_exclusive() {
        assert_eq!(lock_kind("internal", "auto 140234"), LockKind::Exclusive);
        assert_eq!(lock_kind("internal", "manual"), LockKind::Advisory);
        assert_eq!(lock_kind("", "auto 140234"), LockKind::Advisory);
        assert_eq!(lock_kind("k8s", "auto 1"), LockKind::Advisory);
        assert_eq!(lock_kind("internal", "auto"), LockKind::Advisory);
    }

    fn locker(num: i64, cookie: &str) -> Locker {
        Locker {
            entity_type: 0x08,
            entity_num: num,
            cookie: cookie.into(),
            address: format!("10.0.0.{num}:0/1"),
            description: String::new(),
        }
    }

    #[test]
    fn lock_info_becomes_one_lock_per_holder() {
        let info = LockInfo {
            lock_type: 2,
            tag: "shared-tag".into(),
            lockers: vec![locker(1, "a"), locker(2, "b")],
        };
        let locks = locks(info);
        assert_eq!(locks.len(), 2);
        assert!(locks.iter().all(|l| l.shared && l.tag == "shared-tag"));
        assert!(locks.iter().all(|l| l.kind == LockKind::Advisory));
        assert_eq!(locks[1].locker, "client.2");
        assert_eq!(locks[1].address, "10.0.0.2:0/1");
        let exclusive = locks_of(1, "internal", "auto 77");
        assert_eq!(exclusive.kind, LockKind::Exclusive);
        assert!(!exclusive.shared);
        assert_eq!(exclusive.watch_cookie(), Some(77));
    }

    fn locks_of(lock_type: u8, tag: &str, cookie: &str) -> Lock {
        let info = LockInfo {
            lock_type,
            tag: tag.into(),
            lockers: vec![locker(9, cookie)],
        };
        locks(info).remove(0)
    }

    #[test]
    fn protection_and_snapshot_conversion() {
        assert!(!is_protected(0));
        assert!(!is_protected(1)); // unprotecting
        assert!(is_protected(2));
        let info = SnapshotInfo {
            id: 4,
            namespace: SnapNamespace::Trash {
                original_name: "gold".into(),
                original_type: 0,
            },
            name: "a-uuid".into(),
            image_size: 1 << 30,
            child_count: 1,
        };
        let child = ChildSpec {
            pool_id: 3,
            namespace: "ns".into(),
            image_id: "c1".into(),
        };
        let s = snapshot(info, true, vec![child]);
        assert_eq!(s.id, 4);
        assert!(s.is_trashed() && s.protected);
        assert_eq!(s.size, 1 << 30);
        assert_eq!(
            s.v2_children,
            vec![ChildRef {
                pool_id: 3,
                namespace: "ns".into(),
                image_id: "c1".into()
            }]
        );
        assert_eq!(
            snapshot_namespace(SnapNamespace::Unknown(9)),
            SnapshotNamespace::Unknown { code: 9 }
        );
    }

    #[test]
    fn trash_and_children_entries() {
        let spec = TrashSpec {
            source: 1,
            name: "old".into(),
            deletion_time: 10,
            deferment_end_time: 20,
            state: 0,
        };
        let t = trash_entry("abc".into(), spec);
        assert_eq!(t.source, "mirroring");
        assert_eq!((t.id.as_str(), t.name.as_str()), ("abc", "old"));
        assert_eq!((t.deletion_time, t.deferment_end_time), (10, 20));
        let key = ChildrenKey {
            pool_id: 2,
            image_id: "p".into(),
            snap_id: 5,
        };
        let link = v1_child_link(key, vec!["c".into()]);
        assert_eq!(link.parent_pool_id, 2);
        assert_eq!(link.parent_snap_id, 5);
        assert_eq!(link.child_image_ids, vec!["c".to_string()]);
        let parent = ParentSpec {
            pool_id: 1,
            namespace: String::new(),
            image_id: "p".into(),
            snap_id: 5,
        };
        assert_eq!(parent_ref(parent, Some(7)).overlap, Some(7));
    }
}
