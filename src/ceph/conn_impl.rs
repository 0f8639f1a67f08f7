//! The [`Conn`] implementation for [`RadosConn`]: every read the sampler
//! makes, each one compound read (one RADOS operation, or a few for omap
//! listings that take several pages), decoded by `decode.rs` and turned into
//! the model's types by the domain rules in `rbd.rs`.

use super::batch::{Batch, Done, OmapEntry, Step};
use super::decode::{self, CEPH_NOSNAP, DecodeError};
use super::{
    BadEntry, Conn, Directory, HeaderCheck, ImageHeader, Listing, PoolInfo, RadosConn, rbd,
};
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
        let done = self.send(loc, oid, batch, what).await?;
        match done.rc() {
            0.. => Ok(Some(done)),
            rc if rc == -libc_errno::ENOENT => Ok(None),
            rc => Err(self.rados_error(loc, oid, what, rc)),
        }
    }

    /// Sends one compound read and waits for it, whatever its return code
    /// (only a failure to send is an error here).
    async fn send(
        &self,
        loc: &Location,
        oid: &str,
        batch: Batch,
        what: &'static str,
    ) -> Result<Done, Error> {
        let io = self.ioctx(loc)?;
        self.pace().await;
        batch
            .submit(io, oid, &self.inflight)
            .await
            .map_err(|rc| self.rados_error(loc, oid, what, rc))
    }

    /// The watchers of `oid` in the pool's default namespace; none when
    /// the object does not exist.
    async fn pool_object_watchers(
        &self,
        pool: &PoolInfo,
        oid: &str,
    ) -> Result<Vec<Watcher>, Error> {
        let loc = Location {
            pool_id: pool.id,
            namespace: String::new(),
        };
        let what = "watcher list";
        let mut b = Batch::new();
        let step = b.list_watchers()?;
        let Some(done) = self.run(&loc, oid, b, what).await? else {
            return Ok(Vec::new());
        };
        done.watchers(step)
            .map_err(|rc| self.rados_error(&loc, oid, what, rc))
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
        let (entries, _) = self.omap_pages(loc, oid, prefix, false).await?;
        Ok(entries)
    }

    /// [`omap_all`](Self::omap_all), plus the object's data, read in the
    /// same operation as the first page.
    async fn omap_and_data(
        &self,
        loc: &Location,
        oid: &str,
        prefix: &str,
    ) -> Result<(Vec<OmapEntry>, Vec<u8>), Error> {
        self.omap_pages(loc, oid, prefix, true).await
    }

    async fn omap_pages(
        &self,
        loc: &Location,
        oid: &str,
        prefix: &str,
        with_data: bool,
    ) -> Result<(Vec<OmapEntry>, Vec<u8>), Error> {
        let mut entries = Vec::new();
        let mut data = Vec::new();
        let mut start_after: Vec<u8> = Vec::new();
        loop {
            let mut batch = Batch::new();
            let step = batch.omap_get_vals(&start_after, prefix, OMAP_PAGE)?;
            let read = match with_data && start_after.is_empty() {
                true => Some(batch.read()?),
                false => None,
            };
            let Some(mut done) = self.run(loc, oid, batch, "omap read").await? else {
                return Ok((entries, data));
            };
            if let Some(read) = read {
                let bytes = done.output(read);
                data = bytes
                    .map_err(|rc| self.rados_error(loc, oid, "data read", rc))?
                    .to_vec();
            }
            let (page, more) = done
                .omap(step)
                .map_err(|rc| self.rados_error(loc, oid, "omap read", rc))?;
            let last = page.last().map(|(k, _)| k.clone());
            entries.extend(page);
            match last {
                Some(k) if more => start_after = k,
                _ => return Ok((entries, data)),
            }
        }
    }
}

/// Names the failure of one step of a compound read, and tells the
/// failures that mean "absent" from those that mean "could not read".
struct StepErrors<'a> {
    /// The connection (for the pool's name).
    conn: &'a RadosConn,
    /// Where the object is.
    loc: &'a Location,
    /// The object read.
    oid: &'a str,
    /// The read, e.g. "header read".
    what: &'static str,
}

impl StepErrors<'_> {
    fn failed(&self, step: &'static str, code: i32) -> Error {
        Error::PartialRead {
            what: self.what,
            step,
            pool: self.conn.pool_label(self.loc),
            object: self.oid.to_string(),
            code,
        }
    }

    /// The output of a step that must succeed.
    fn required<'d>(
        &self,
        done: &'d Done,
        step: Step,
        name: &'static str,
    ) -> Result<&'d [u8], Error> {
        done.output(step).map_err(|rc| self.failed(name, rc))
    }

    /// The output of a step, or `None` when it failed with one of the
    /// codes in `absent` (which then mean "not there").
    fn optional<'d>(
        &self,
        done: &'d Done,
        step: Step,
        name: &'static str,
        absent: &[i32],
    ) -> Result<Option<&'d [u8]>, Error> {
        match done.output(step) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(rc) if absent.contains(&rc) => Ok(None),
            Err(rc) => Err(self.failed(name, rc)),
        }
    }
}

/// `get_flags` and `op_features_get` failing with EOPNOTSUPP: an OSD older
/// than the method, which also predates what it reads (image flags came
/// with Hammer, operation features with Mimic), so 0 is the truth.
const OLDER_THAN_METHOD: &[i32] = &[-libc_errno::EOPNOTSUPP];
/// `lock.get_info` failing with ENOENT (the header object itself is gone:
/// the image went since it was listed, and its other steps say so) or
/// ENODATA. A lock that was never taken is not an error: cls_lock answers
/// a missing `lock.rbd_lock` xattr with an empty reply (no lockers), in
/// every release from 15.2 to 20.2.
const NO_LOCK: &[i32] = &[-libc_errno::ENOENT, -libc_errno::ENODATA];
/// `snapshot_get` and `get_protection_status` failing with ENOENT: the
/// snapshot was removed since the header read.
const SNAPSHOT_GONE: &[i32] = &[-libc_errno::ENOENT];
/// `children_list` failing with ENOENT: the snapshot has no clone v2
/// children (cls_rbd answers so when it has no child list; the snapshot
/// itself exists, `snapshot_get` said so in the same read); EOPNOTSUPP: an
/// OSD older than clone v2, so there are none.
const NO_CHILDREN: &[i32] = &[-libc_errno::ENOENT, -libc_errno::EOPNOTSUPP];

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

    /// Everything but the size. A step that failed is an error naming it
    /// (the image's facts would be incomplete), unless its failure means
    /// "absent" (see the constants above); a reply that does not decode is
    /// an error. `parent_get` answers "no parent" with a spec whose pool
    /// is -1 and `parent_overlap_get` with an empty optional (16.2 to
    /// 20.2), never with an error.
    fn decode(
        &self,
        done: &Done,
        err: &impl Fn(DecodeError) -> Error,
        f: &StepErrors<'_>,
        (order, size): (u8, u64),
    ) -> Result<ImageHeader, Error> {
        let features = decode::features(f.required(done, self.features, "get_features")?);
        let flags = f.optional(done, self.flags, "get_flags", OLDER_THAN_METHOD)?;
        let op_features =
            f.optional(done, self.op_features, "op_features_get", OLDER_THAN_METHOD)?;
        let snapc = f.required(done, self.snapc, "get_snapcontext")?;
        let overlap = f.required(done, self.overlap, "parent_overlap_get")?;
        let parent = f.required(done, self.parent, "parent_get")?;
        let lock = f.optional(done, self.lock, "lock.get_info", NO_LOCK)?;
        let watchers = done
            .watchers(self.watchers)
            .map_err(|rc| f.failed("list_watchers", rc))?;
        let overlap = decode::parent_overlap(overlap).map_err(err)?;
        Ok(ImageHeader {
            size,
            order,
            features: features.map_err(err)?,
            flags: flags
                .map(decode::flags)
                .transpose()
                .map_err(err)?
                .unwrap_or(0),
            op_features: op_features
                .map(decode::op_features)
                .transpose()
                .map_err(err)?
                .unwrap_or(0),
            snap_ids: decode::snapcontext(snapc).map_err(err)?.snaps,
            parent: decode::parent_spec(parent)
                .map_err(err)?
                .map(|p| rbd::parent_ref(p, overlap)),
            watchers,
            locks: match lock {
                Some(bytes) => rbd::locks(decode::lock_info(bytes).map_err(err)?),
                None => Vec::new(),
            },
            version: done.version(),
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

    /// The snapshot, or `None` if it was removed since the header read. A
    /// step that failed otherwise is an error naming it.
    fn decode(
        &self,
        done: &Done,
        err: &impl Fn(DecodeError) -> Error,
        f: &StepErrors<'_>,
    ) -> Result<Option<Snapshot>, Error> {
        let Some(info) = f.optional(done, self.info, "snapshot_get", SNAPSHOT_GONE)? else {
            return Ok(None);
        };
        let protection = f.optional(
            done,
            self.protection,
            "get_protection_status",
            SNAPSHOT_GONE,
        )?;
        let Some(protection) = protection else {
            return Ok(None);
        };
        let children = f.optional(done, self.children, "children_list", NO_CHILDREN)?;
        let info = decode::snapshot_info(info).map_err(err)?;
        let protected = rbd::is_protected(decode::protection_status(protection).map_err(err)?);
        let children = match children {
            Some(b) => decode::children_list(b).map_err(err)?,
            None => Vec::new(),
        };
        Ok(Some(rbd::snapshot(info, protected, children)))
    }
}

/// Decodes the entries of an omap listing of `oid` one by one: an entry
/// that does not decode is left out and returned as a [`BadEntry`] naming
/// `oid` and its key, never failing the others. Keys starting with
/// `image_prefix` name the image the entry is about.
fn decode_entries<T>(
    oid: &str,
    entries: Vec<OmapEntry>,
    image_prefix: Option<&str>,
    decode: impl Fn(&[u8], &[u8]) -> Result<T, DecodeError>,
) -> Listing<T> {
    let mut listing = Listing::default();
    for (k, v) in entries {
        match decode(&k, &v) {
            Ok(entry) => listing.entries.push(entry),
            Err(source) => listing.bad.push(BadEntry {
                image_id: image_prefix
                    .filter(|p| k.starts_with(p.as_bytes()))
                    .map(|p| key_suffix(&k, p)),
                error: Error::Decode {
                    object: format!(
                        "{oid} entry {:?}",
                        String::from_utf8_lossy(&k).escape_debug().to_string()
                    ),
                    source,
                },
            }),
        }
    }
    listing
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

    async fn directory(&self, loc: &Location) -> Result<Directory, Error> {
        let (entries, data) = self.omap_and_data(loc, "rbd_directory", "id_").await?;
        let mut images = decode_entries("rbd_directory", entries, Some("id_"), |k, v| {
            Ok((key_suffix(k, "id_"), decode::string_value(v)?))
        });
        let format1 = decode::tmap_keys(&data).unwrap_or_else(|source| {
            images.bad.push(BadEntry {
                image_id: None,
                error: Error::Decode {
                    object: "rbd_directory data (format 1 images)".into(),
                    source,
                },
            });
            Vec::new()
        });
        Ok(Directory { images, format1 })
    }

    async fn trash(&self, loc: &Location) -> Result<Listing<TrashEntry>, Error> {
        let entries = self.omap_all(loc, "rbd_trash", "id_").await?;
        Ok(decode_entries("rbd_trash", entries, Some("id_"), |k, v| {
            Ok(rbd::trash_entry(
                key_suffix(k, "id_"),
                decode::trash_spec(v)?,
            ))
        }))
    }

    async fn v1_children(&self, loc: &Location) -> Result<Listing<V1ChildLink>, Error> {
        let entries = self.omap_all(loc, "rbd_children", "").await?;
        Ok(decode_entries("rbd_children", entries, None, |k, v| {
            let key = decode::children_key(k)?;
            Ok(rbd::v1_child_link(key, decode::string_set(v)?))
        }))
    }

    async fn tasks(&self, loc: &Location) -> Result<Listing<QueuedTask>, Error> {
        let entries = self.omap_all(loc, "rbd_task", "").await?;
        Ok(decode_entries("rbd_task", entries, None, |_, v| {
            rbd::queued_task(v)
        }))
    }

    async fn header(&self, loc: &Location, image_id: &str) -> Result<Option<ImageHeader>, Error> {
        let oid = format!("rbd_header.{image_id}");
        let mut b = Batch::new();
        let steps = HeaderSteps::add(&mut b)?;
        let Some(done) = self.run(loc, &oid, b, "header read").await? else {
            return Ok(None);
        };
        let err = decode_err(&oid);
        let f = StepErrors {
            conn: self,
            loc,
            oid: &oid,
            what: "header read",
        };
        // get_size failing with ENOENT: the header vanished.
        let size = match done.output(steps.size) {
            Ok(bytes) => decode::size(bytes).map_err(&err)?,
            Err(rc) if rc == -libc_errno::ENOENT => return Ok(None),
            Err(rc) => return Err(f.failed("get_size", rc)),
        };
        steps.decode(&done, &err, &f, size).map(Some)
    }

    async fn watchers_if_unchanged(
        &self,
        loc: &Location,
        image_id: &str,
        version: u64,
    ) -> Result<HeaderCheck, Error> {
        let oid = format!("rbd_header.{image_id}");
        let what = "watcher read";
        let mut b = Batch::new();
        b.assert_version(version)?;
        let step = b.list_watchers()?;
        let done = self.send(loc, &oid, b, what).await?;
        match done.rc() {
            0.. => {
                let f = StepErrors {
                    conn: self,
                    loc,
                    oid: &oid,
                    what,
                };
                let watchers = done
                    .watchers(step)
                    .map_err(|rc| f.failed("list_watchers", rc))?;
                Ok(HeaderCheck::Unchanged(watchers))
            }
            rc if rc == -libc_errno::ENOENT => Ok(HeaderCheck::Gone),
            // ERANGE: newer than asked; EOVERFLOW: older (re-created, or a
            // version never seen). Either way, not what was read.
            rc if rc == -libc_errno::ERANGE || rc == -libc_errno::EOVERFLOW => {
                Ok(HeaderCheck::Changed)
            }
            rc => Err(self.rados_error(loc, &oid, what, rc)),
        }
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
        let f = StepErrors {
            conn: self,
            loc,
            oid: &oid,
            what: "snapshot read",
        };
        let mut snaps = Vec::with_capacity(steps.len());
        for s in &steps {
            // A snapshot removed since the header read is simply gone.
            if let Some(snap) = s.decode(&done, &err, &f)? {
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
        self.pool_object_watchers(pool, rbd::MIRROR_LEADER).await
    }

    async fn mirroring_watchers(&self, pool: &PoolInfo) -> Result<Vec<Watcher>, Error> {
        self.pool_object_watchers(pool, rbd::MIRRORING).await
    }

    fn ops_sent(&self) -> u64 {
        self.ops_sent.load(Ordering::Relaxed)
    }
}
