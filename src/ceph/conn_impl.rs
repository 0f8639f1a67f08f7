//! The [`Conn`] implementation for [`RadosConn`]: every read the sampler
//! makes, each one compound read (one RADOS operation, or a few for omap
//! listings that take several pages), decoded by `decode.rs` and turned into
//! the model's types by the domain rules in `rbd.rs`.

use super::batch::{Batch, Done, OmapEntry, Step};
use super::decode::{self, CEPH_NOSNAP, DecodeError};
use super::{Conn, ImageHeader, PoolInfo, RadosConn, rbd};
use crate::error::{Error, libc_errno};
use crate::model::{Location, QueuedTask, Snapshot, TrashEntry, V1ChildLink, Watcher};
use std::sync::atomic::Ordering;

/// Omap entries asked for per page; big directories take several pages.
const OMAP_PAGE: u64 = 4096;

fn decode_err(object: &str) -> impl Fn(DecodeError) -> Error + '_ {
    move |source| Error::Decode {
        object: object.to_string(),
        source,
    }
}

/// An omap key without its (already matched) prefix.
fn key_suffix(key: &[u8], prefix: &str) -> String {
    String::from_utf8_lossy(&key[prefix.len()..]).into_owned()
}

impl RadosConn {
    /// Sends one compound read and waits for it. `None` when the object
    /// does not exist.
    async fn run(
        &self,
        loc: &Location,
        oid: &str,
        batch: Batch,
        what: &'static str,
    ) -> Result<Option<Done>, Error> {
        let io = self.ioctx(loc)?;
        self.pace().await;
        match batch.submit(io, oid, &self.inflight).await {
            Ok(done) => match done.rc() {
                0.. => Ok(Some(done)),
                rc if rc == -libc_errno::ENOENT => Ok(None),
                rc => Err(self.rados_error(loc, oid, what, rc)),
            },
            Err(rc) => Err(self.rados_error(loc, oid, what, rc)),
        }
    }

    fn rados_error(&self, loc: &Location, oid: &str, what: &'static str, code: i32) -> Error {
        Error::Rados {
            what,
            pool: self.pool_label(loc),
            object: oid.to_string(),
            code,
        }
    }

    /// Reads every omap entry of `oid` whose key starts with `prefix`.
    /// A missing object reads as empty.
    async fn omap_all(
        &self,
        loc: &Location,
        oid: &str,
        prefix: &str,
    ) -> Result<Vec<OmapEntry>, Error> {
        let mut entries = Vec::new();
        let mut start_after: Vec<u8> = Vec::new();
        loop {
            let mut batch = Batch::new();
            let step = batch.omap_get_vals(&start_after, prefix, OMAP_PAGE)?;
            let Some(mut done) = self.run(loc, oid, batch, "omap read").await? else {
                return Ok(entries);
            };
            let (page, more) = done
                .omap(step)
                .map_err(|rc| self.rados_error(loc, oid, "omap read", rc))?;
            let last = page.last().map(|(k, _)| k.clone());
            entries.extend(page);
            match last {
                Some(k) if more => start_after = k,
                _ => return Ok(entries),
            }
        }
    }
}

/// The steps of one header read, in the order they are added.
struct HeaderSteps {
    size: Step,
    features: Step,
    flags: Step,
    snapc: Step,
    op_features: Step,
    parent: Step,
    overlap: Step,
    lock: Step,
    watchers: Step,
}

impl HeaderSteps {
    fn add(b: &mut Batch) -> Result<HeaderSteps, Error> {
        let head = decode::encode_snap_id(CEPH_NOSNAP);
        Ok(HeaderSteps {
            size: b.exec("rbd", "get_size", &head)?,
            features: b.exec(
                "rbd",
                "get_features",
                &decode::encode_get_features(CEPH_NOSNAP),
            )?,
            flags: b.exec("rbd", "get_flags", &head)?,
            snapc: b.exec("rbd", "get_snapcontext", &[])?,
            op_features: b.exec("rbd", "op_features_get", &[])?,
            parent: b.exec("rbd", "parent_get", &[])?,
            overlap: b.exec("rbd", "parent_overlap_get", &head)?,
            lock: b.exec(
                "lock",
                "get_info",
                &decode::encode_lock_get_info(rbd::RBD_LOCK_NAME),
            )?,
            watchers: b.list_watchers()?,
        })
    }

    /// Everything but the size: a step that failed reads as absent (an image
    /// without the feature, a lock never taken), a reply that does not
    /// decode is an error.
    fn decode(
        &self,
        done: &Done,
        err: &impl Fn(DecodeError) -> Error,
        (order, size): (u8, u64),
    ) -> Result<ImageHeader, Error> {
        let optional = |step: Step| -> Option<&[u8]> { done.output(step).ok() };
        let features = optional(self.features).map(decode::features);
        let flags = optional(self.flags).map(decode::flags);
        let op_features = optional(self.op_features).map(decode::op_features);
        let features = features.transpose().map_err(err)?.unwrap_or(0);
        let flags = flags.transpose().map_err(err)?.unwrap_or(0);
        let op_features = op_features.transpose().map_err(err)?.unwrap_or(0);
        let snap_ids = optional(self.snapc)
            .map(decode::snapcontext)
            .transpose()
            .map_err(err)?
            .map(|s| s.snaps)
            .unwrap_or_default();
        let overlap = optional(self.overlap)
            .map(decode::parent_overlap)
            .transpose()
            .map_err(err)?
            .flatten();
        let parent = optional(self.parent)
            .map(decode::parent_spec)
            .transpose()
            .map_err(err)?
            .flatten()
            .map(|p| rbd::parent_ref(p, overlap));
        let locks = match done.output(self.lock) {
            Ok(bytes) => rbd::locks(decode::lock_info(bytes).map_err(err)?),
            // No lock ever taken: the lock does not exist.
            Err(_) => Vec::new(),
        };
        Ok(ImageHeader {
            size,
            order,
            features,
            flags,
            op_features,
            snap_ids,
            parent,
            watchers: done.watchers(self.watchers).unwrap_or_default(),
            locks,
        })
    }
}

/// The steps of one snapshot's part of a snapshot read.
struct SnapSteps {
    info: Step,
    protection: Step,
    children: Step,
}

impl SnapSteps {
    fn add(b: &mut Batch, snap_id: u64) -> Result<SnapSteps, Error> {
        let input = decode::encode_snap_id(snap_id);
        Ok(SnapSteps {
            info: b.exec("rbd", "snapshot_get", &input)?,
            protection: b.exec("rbd", "get_protection_status", &input)?,
            children: b.exec("rbd", "children_list", &input)?,
        })
    }

    /// The snapshot, or `None` if it was removed since the header read.
    fn decode(
        &self,
        done: &Done,
        err: &impl Fn(DecodeError) -> Error,
    ) -> Result<Option<Snapshot>, Error> {
        let Ok(info) = done.output(self.info) else {
            return Ok(None);
        };
        let info = decode::snapshot_info(info).map_err(err)?;
        let protected = match done.output(self.protection) {
            Ok(b) => rbd::is_protected(decode::protection_status(b).map_err(err)?),
            Err(_) => false,
        };
        let children = match done.output(self.children) {
            Ok(b) => decode::children_list(b).map_err(err)?,
            Err(_) => Vec::new(),
        };
        Ok(Some(rbd::snapshot(info, protected, children)))
    }
}

impl Conn for RadosConn {
    async fn pools(&self) -> Result<Vec<PoolInfo>, Error> {
        self.pool_list().await
    }

    async fn namespaces(&self, pool: &PoolInfo) -> Result<Vec<String>, Error> {
        let loc = Location {
            pool_id: pool.id,
            namespace: String::new(),
        };
        let entries = self.omap_all(&loc, "rbd_namespace", "name_").await?;
        Ok(entries
            .into_iter()
            .map(|(k, _)| key_suffix(&k, "name_"))
            .collect())
    }

    async fn directory(&self, loc: &Location) -> Result<Vec<(String, String)>, Error> {
        let entries = self.omap_all(loc, "rbd_directory", "id_").await?;
        entries
            .into_iter()
            .map(|(k, v)| {
                let name = decode::string_value(&v).map_err(decode_err("rbd_directory"))?;
                Ok((key_suffix(&k, "id_"), name))
            })
            .collect()
    }

    async fn trash(&self, loc: &Location) -> Result<Vec<TrashEntry>, Error> {
        let entries = self.omap_all(loc, "rbd_trash", "id_").await?;
        entries
            .into_iter()
            .map(|(k, v)| {
                let spec = decode::trash_spec(&v).map_err(decode_err("rbd_trash"))?;
                Ok(rbd::trash_entry(key_suffix(&k, "id_"), spec))
            })
            .collect()
    }

    async fn v1_children(&self, loc: &Location) -> Result<Vec<V1ChildLink>, Error> {
        let entries = self.omap_all(loc, "rbd_children", "").await?;
        entries
            .into_iter()
            .map(|(k, v)| {
                let key = decode::children_key(&k).map_err(decode_err("rbd_children"))?;
                let ids = decode::string_set(&v).map_err(decode_err("rbd_children"))?;
                Ok(rbd::v1_child_link(key, ids))
            })
            .collect()
    }

    async fn tasks(&self, loc: &Location) -> Result<Vec<QueuedTask>, Error> {
        let entries = self.omap_all(loc, "rbd_task", "").await?;
        entries
            .into_iter()
            .map(|(_, v)| rbd::queued_task(&v).map_err(decode_err("rbd_task")))
            .collect()
    }

    async fn header(&self, loc: &Location, image_id: &str) -> Result<Option<ImageHeader>, Error> {
        let oid = format!("rbd_header.{image_id}");
        let mut b = Batch::new();
        let steps = HeaderSteps::add(&mut b)?;
        let Some(done) = self.run(loc, &oid, b, "header read").await? else {
            return Ok(None);
        };
        let err = decode_err(&oid);
        // get_size failing means this is no image header (or it vanished).
        let size = match done.output(steps.size) {
            Ok(bytes) => decode::size(bytes).map_err(&err)?,
            Err(rc) if rc == -libc_errno::ENOENT => return Ok(None),
            Err(rc) => return Err(self.rados_error(loc, &oid, "get_size", rc)),
        };
        steps.decode(&done, &err, size).map(Some)
    }

    async fn snapshots(
        &self,
        loc: &Location,
        image_id: &str,
        snap_ids: &[u64],
    ) -> Result<Option<Vec<Snapshot>>, Error> {
        let oid = format!("rbd_header.{image_id}");
        let mut b = Batch::new();
        let steps = snap_ids
            .iter()
            .map(|&id| SnapSteps::add(&mut b, id))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(done) = self.run(loc, &oid, b, "snapshot read").await? else {
            return Ok(None);
        };
        let err = decode_err(&oid);
        let mut snaps = Vec::with_capacity(steps.len());
        for s in &steps {
            // A snapshot removed since the header read is simply gone.
            if let Some(snap) = s.decode(&done, &err)? {
                snaps.push(snap);
            }
        }
        Ok(Some(snaps))
    }

    async fn image_name(
        &self,
        loc: &Location,
        image_id: &str,
    ) -> Result<Option<(String, bool)>, Error> {
        // A prefix read of the one key: no cls method needed, so the
        // read-only caps suffice.
        let key = format!("id_{image_id}");
        for (oid, in_trash) in [("rbd_directory", false), ("rbd_trash", true)] {
            let entries = self.omap_all(loc, oid, &key).await?;
            if let Some((_, v)) = entries.iter().find(|(k, _)| k.as_slice() == key.as_bytes()) {
                let name = if in_trash {
                    decode::trash_spec(v).map_err(decode_err(oid))?.name
                } else {
                    decode::string_value(v).map_err(decode_err(oid))?
                };
                return Ok(Some((name, in_trash)));
            }
        }
        Ok(None)
    }

    async fn mirror_daemons(&self, pool: &PoolInfo) -> Result<Vec<Watcher>, Error> {
        let loc = Location {
            pool_id: pool.id,
            namespace: String::new(),
        };
        let (oid, what) = (rbd::MIRROR_LEADER, "watcher list");
        let mut b = Batch::new();
        let step = b.list_watchers()?;
        let Some(done) = self.run(&loc, oid, b, what).await? else {
            return Ok(Vec::new());
        };
        done.watchers(step)
            .map_err(|rc| self.rados_error(&loc, oid, what, rc))
    }

    fn ops_sent(&self) -> u64 {
        self.ops_sent.load(Ordering::Relaxed)
    }
}
