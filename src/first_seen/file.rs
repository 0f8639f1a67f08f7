//! The first-seen state file, `first-seen.json` in `--storage.path`: the
//! first-seen times of the current watchers (and of restored ones still
//! waiting for their pool), so that they survive a restart.
//!
//! It is JSON with a format name and version:
//!
//! ```json
//! {"format": "ceph-rbd-exporter first-seen times", "version": 1,
//!  "written_at": 1700000000.5,
//!  "watchers": [{"pool_id": 1, "namespace": "", "image_id": "10a2b3c",
//!                "client": "client.4123", "address": "10.0.0.5:0/3412345",
//!                "cookie": 94811, "first_seen": 1699990000.25}]}
//! ```
//!
//! It is rewritten after a sample that changed the times (so at most once
//! per sample), atomically: a temporary file in the same directory is
//! written, flushed to disk and renamed over the old one, and the directory
//! is flushed. It holds at most [`MAX_ENTRIES`] watchers (the longest-held
//! ones when there are more) and is never read past [`MAX_FILE_BYTES`]. A
//! file that cannot be read, is truncated, is not ours or has another
//! version is ignored with a warning that names it and what is wrong, and
//! replaced at the next write; a directory that cannot be written is warned
//! about and the exporter runs on without it.

use super::{FirstSeen, FirstSeenTimes, WatcherKey};
use crate::model::{ImageKey, PoolId, Watcher};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The file's name in `--storage.path`.
pub const FILE_NAME: &str = "first-seen.json";

/// The temporary file a write goes to before it is renamed.
const TEMP_NAME: &str = ".first-seen.json.tmp";

/// The `format` field: what the file is.
pub const FORMAT: &str = "ceph-rbd-exporter first-seen times";

/// The `version` field this exporter writes and reads.
pub const VERSION: u64 = 1;

/// Most watchers the file holds (about 200 bytes each).
pub const MAX_ENTRIES: usize = 1_000_000;

/// Largest file read; anything larger is not ours.
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// What can go wrong with the state file or its directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// `--storage.path` cannot be used at all (a configuration error).
    #[error("--storage.path {}: {message}", .path.display())]
    BadPath {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than a state file can be.
    #[error("{} is {size} bytes, more than a state file can be ({MAX_FILE_BYTES})", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file is not (complete) JSON.
    #[error("{} is truncated or not JSON: {message}", .path.display())]
    NotJson {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said.
        message: String,
    },
    /// The file is JSON, but not a first-seen state file.
    #[error("{} is not a ceph-rbd-exporter first-seen state file: {message}", .path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        message: String,
    },
    /// The file is a state file of another format version.
    #[error("{} has format version {found}; this exporter reads version {VERSION}", .path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// The version it has.
        found: u64,
    },
    /// Writing the file failed.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The file (or its temporary file).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The fields read first, to tell a foreign or newer file from a broken one.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Header {
    /// What the file is; [`FORMAT`] for ours.
    format: Option<String>,
    /// Its format version.
    version: Option<u64>,
}

/// The whole file.
#[derive(Debug, Serialize, Deserialize)]
struct Document {
    /// [`FORMAT`].
    format: String,
    /// [`VERSION`].
    version: u64,
    /// Unix time of the write.
    written_at: f64,
    /// One entry per watch.
    watchers: Vec<Entry>,
}

/// One watch and when it was first seen: what identifies a watch is the
/// image (pool id, RBD namespace, image id) and the watch (client entity,
/// address with nonce, cookie), as in [`WatcherKey`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Pool id.
    pool_id: PoolId,
    /// RBD namespace; empty for the default one.
    namespace: String,
    /// Image id.
    image_id: String,
    /// Client entity, e.g. `client.4123`.
    client: String,
    /// Client address with nonce, e.g. `10.0.0.5:0/3412345`.
    address: String,
    /// Watch cookie.
    cookie: u64,
    /// Unix time the watch was first seen.
    first_seen: f64,
}

impl Entry {
    /// The entry of one watch.
    fn new(key: &WatcherKey, first_seen: f64) -> Entry {
        Entry {
            pool_id: key.image.pool_id,
            namespace: key.image.namespace.clone(),
            image_id: key.image.image_id.clone(),
            client: key.watcher.client.clone(),
            address: key.watcher.address.clone(),
            cookie: key.watcher.cookie,
            first_seen,
        }
    }

    /// The watch and its time, unless the time is no Unix time.
    fn into_time(self) -> Option<(WatcherKey, f64)> {
        if !(self.first_seen.is_finite() && self.first_seen > 0.0) {
            return None;
        }
        let key = WatcherKey {
            image: ImageKey {
                pool_id: self.pool_id,
                namespace: self.namespace,
                image_id: self.image_id,
            },
            watcher: Watcher {
                client: self.client,
                address: self.address,
                cookie: self.cookie,
            },
        };
        Some((key, self.first_seen))
    }
}

/// The entries to write for `times`: at most [`MAX_ENTRIES`], the earliest
/// first seen when there are more. Also returns how many were left out.
pub fn entries<'a>(times: impl Iterator<Item = (&'a WatcherKey, f64)>) -> (Vec<Entry>, usize) {
    bounded_entries(times, MAX_ENTRIES)
}

/// [`entries`] with at most `max` of them.
fn bounded_entries<'a>(
    times: impl Iterator<Item = (&'a WatcherKey, f64)>,
    max: usize,
) -> (Vec<Entry>, usize) {
    let mut out: Vec<Entry> = times.map(|(k, t)| Entry::new(k, t)).collect();
    let left_out = out.len().saturating_sub(max);
    if left_out > 0 {
        out.select_nth_unstable_by(max, |a, b| a.first_seen.total_cmp(&b.first_seen));
        out.truncate(max);
    }
    (out, left_out)
}

/// What a readable state file held.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The first-seen times.
    pub times: FirstSeenTimes,
    /// Entries without a usable time, left out.
    pub invalid: usize,
    /// Entries beyond [`MAX_ENTRIES`], left out.
    pub over_limit: usize,
}

/// Reads the state file at `path`; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<Loaded>, StateError> {
    let read_error = |source| StateError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    let size = file.metadata().map_err(read_error)?.len();
    if size > MAX_FILE_BYTES {
        return Err(StateError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    decode(path, &bytes, MAX_ENTRIES).map(Some)
}

/// Decodes the bytes of the state file at `path`, keeping at most `max`
/// entries.
fn decode(path: &Path, bytes: &[u8], max: usize) -> Result<Loaded, StateError> {
    let foreign = |message: String| StateError::Foreign {
        path: path.to_path_buf(),
        message,
    };
    let header: Header = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            foreign(e.to_string())
        } else {
            StateError::NotJson {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        }
    })?;
    match header.format.as_deref() {
        Some(FORMAT) => {}
        Some(other) => return Err(foreign(format!("its format is {other:?}"))),
        None => return Err(foreign(format!("no \"format\": {FORMAT:?}"))),
    }
    match header.version {
        Some(VERSION) => {}
        Some(found) => {
            return Err(StateError::Version {
                path: path.to_path_buf(),
                found,
            });
        }
        None => return Err(foreign("no \"version\"".into())),
    }
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| foreign(e.to_string()))?;
    let mut loaded = Loaded {
        over_limit: doc.watchers.len().saturating_sub(max),
        ..Loaded::default()
    };
    for entry in doc.watchers.into_iter().take(max) {
        let Some((key, t)) = entry.into_time() else {
            loaded.invalid += 1;
            continue;
        };
        let kept = loaded.times.entry(key).or_insert(t);
        *kept = kept.min(t);
    }
    Ok(loaded)
}

/// Writes `entries` as the state file in `dir`, atomically.
pub fn write(dir: &Path, entries: Vec<Entry>, now: f64) -> Result<(), StateError> {
    let doc = Document {
        format: FORMAT.into(),
        version: VERSION,
        written_at: now,
        watchers: entries,
    };
    let temp = dir.join(TEMP_NAME);
    let result = write_then_rename(&temp, &dir.join(FILE_NAME), &doc);
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(|(path, source)| StateError::Write { path, source })
}

/// Writes `doc` to `temp`, flushes it to disk, renames it to `path` and
/// flushes the directory; on failure, the path that failed and why.
fn write_then_rename(
    temp: &Path,
    path: &Path,
    doc: &Document,
) -> Result<(), (PathBuf, std::io::Error)> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp)
        .map_err(|e| at(temp, e))?;
    let mut w = BufWriter::new(file);
    serde_json::to_writer(&mut w, doc).map_err(|e| at(temp, e.into()))?;
    w.write_all(b"\n").map_err(|e| at(temp, e))?;
    let file = w.into_inner().map_err(|e| at(temp, e.into_error()))?;
    file.sync_all().map_err(|e| at(temp, e))?;
    std::fs::rename(temp, path).map_err(|e| at(path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| at(dir, e))
}

/// An I/O error at `path`, as [`write_then_rename`] returns it.
fn at(path: &Path, e: std::io::Error) -> (PathBuf, std::io::Error) {
    (path.to_path_buf(), e)
}

/// The state file of `--storage.path`, for the serving loop: restores the
/// times at start and saves them after samples, warning (once per new
/// problem) instead of failing.
#[derive(Debug)]
pub struct StateFile {
    /// The directory (`--storage.path`).
    dir: PathBuf,
    /// The last write's error, if it failed: warned about once.
    failing: Option<String>,
    /// True while watchers are left out for [`MAX_ENTRIES`]: warned once.
    capped: bool,
}

impl StateFile {
    /// The state file in `dir`, which is made if missing. A path that is no
    /// directory and cannot be made one is a configuration error; a
    /// directory that cannot be written is only warned about.
    pub fn open(dir: &Path) -> Result<StateFile, StateError> {
        let bad = |message: String| StateError::BadPath {
            path: dir.to_path_buf(),
            message,
        };
        if dir.as_os_str().is_empty() {
            return Err(bad("empty path".into()));
        }
        if dir.exists() && !dir.is_dir() {
            return Err(bad("not a directory".into()));
        }
        std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create it: {e}")))?;
        let temp = dir.join(TEMP_NAME);
        if let Err(e) = File::create(&temp) {
            tracing::warn!(
                path = %dir.display(),
                error = %e,
                "cannot write in --storage.path: first-seen times will not survive a restart until it can"
            );
        }
        let _ = std::fs::remove_file(&temp);
        Ok(StateFile {
            dir: dir.to_path_buf(),
            failing: None,
            capped: false,
        })
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The times the file holds, restored at `now`; a fresh start (with a
    /// warning naming the file and what is wrong) when it cannot be used.
    pub fn load(&self, now: f64) -> FirstSeen {
        let path = self.path();
        match read(&path) {
            Ok(None) => {
                tracing::info!(file = %path.display(), "no first-seen state file yet; first-seen times start now");
                FirstSeen::default()
            }
            Ok(Some(loaded)) => {
                if loaded.invalid + loaded.over_limit > 0 {
                    tracing::warn!(file = %path.display(), invalid = loaded.invalid, over_limit = loaded.over_limit, "first-seen state file: entries left out");
                }
                tracing::info!(file = %path.display(), watchers = loaded.times.len(), "restored first-seen times");
                FirstSeen::restored(loaded.times, now)
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "ignoring the first-seen state file (it is replaced at the next write); first-seen times start now");
                FirstSeen::default()
            }
        }
    }

    /// Saves the times if they changed since the last save; a failure is
    /// warned about and retried after the next sample.
    pub async fn save(&mut self, first_seen: &mut FirstSeen, now: f64) {
        if !first_seen.changed() {
            return;
        }
        let (entries, left_out) = entries(first_seen.times());
        if (left_out > 0) != self.capped {
            self.capped = left_out > 0;
            if self.capped {
                tracing::warn!(file = %self.path().display(), left_out, max = MAX_ENTRIES, "more watchers than the first-seen state file holds; the most recently seen are not saved");
            }
        }
        let dir = self.dir.clone();
        let written = tokio::task::spawn_blocking(move || write(&dir, entries, now)).await;
        let result = written.unwrap_or_else(|e| {
            Err(StateError::Write {
                path: self.path(),
                source: std::io::Error::other(e.to_string()),
            })
        });
        self.record(result, first_seen);
    }

    /// Logs a save's outcome when it differs from the last one.
    fn record(&mut self, result: Result<(), StateError>, first_seen: &mut FirstSeen) {
        match result {
            Ok(()) => {
                first_seen.mark_saved();
                if self.failing.take().is_some() {
                    tracing::info!(file = %self.path().display(), "first-seen state file written again");
                }
            }
            Err(e) => {
                let message = e.to_string();
                if self.failing.as_deref() != Some(message.as_str()) {
                    tracing::warn!(error = %message, "cannot save first-seen times; they will not survive a restart until this is fixed (retried after every sample)");
                }
                self.failing = Some(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ceph-rbd-exporter-unit-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn key(pool_id: PoolId, image_id: &str, address: &str, cookie: u64) -> WatcherKey {
        WatcherKey {
            image: ImageKey {
                pool_id,
                namespace: "tenant-a".into(),
                image_id: image_id.into(),
            },
            watcher: Watcher {
                client: "client.4123".into(),
                address: address.into(),
                cookie,
            },
        }
    }

    fn times() -> FirstSeenTimes {
        let mut t: FirstSeenTimes = [
            (
                key(1, "10a2b3c", "10.0.0.5:0/3412345", 94811),
                1_699_990_000.25,
            ),
            (
                key(1, "10a2b3c", "10.0.0.5:0/3412346", 94811),
                1_699_990_100.5,
            ),
            (key(2, "we\"ird", "[fd00::1]:0/7", 1), 1_700_000_000.0),
        ]
        .into();
        // Times as the clock gives them, with every bit of the fraction:
        // they must come back exactly.
        let mut x = 1_700_000_000.123_456_7_f64;
        for cookie in 0..2000 {
            t.insert(key(3, "many", "10.0.0.6:0/1", cookie), x);
            x = f64::from_bits(x.to_bits() + 7919) + 0.001_953_7;
        }
        t
    }

    fn write_times(dir: &Path, t: &FirstSeenTimes) {
        write(
            dir,
            entries(t.iter().map(|(k, v)| (k, *v))).0,
            1_700_000_001.0,
        )
        .unwrap();
    }

    #[test]
    fn round_trip() {
        let dir = scratch("round-trip");
        write_times(&dir, &times());
        let loaded = read(&dir.join(FILE_NAME)).unwrap().unwrap();
        assert_eq!(loaded.times, times());
        assert_eq!((loaded.invalid, loaded.over_limit), (0, 0));
        assert!(!dir.join(TEMP_NAME).exists(), "the temporary file is gone");
        let text = std::fs::read_to_string(dir.join(FILE_NAME)).unwrap();
        assert!(text.starts_with(&format!("{{\"format\":\"{FORMAT}\",\"version\":1,")));
        // A second write replaces the first.
        let fewer: FirstSeenTimes = times().into_iter().take(1).collect();
        write_times(&dir, &fewer);
        assert_eq!(read(&dir.join(FILE_NAME)).unwrap().unwrap().times, fewer);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_missing_file_is_no_file() {
        let dir = scratch("missing");
        assert!(read(&dir.join(FILE_NAME)).unwrap().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_truncated_file_is_not_json_at_every_length() {
        let dir = scratch("truncated");
        let few: FirstSeenTimes = times().into_iter().take(3).collect();
        write_times(&dir, &few);
        let path = dir.join(FILE_NAME);
        let full = std::fs::read(&path).unwrap();
        // Every cut short of the closing brace (the newline after it is
        // optional), the empty file included.
        for len in 0..full.len() - 1 {
            match decode(&path, &full[..len], MAX_ENTRIES) {
                Err(StateError::NotJson { path: p, .. }) => assert_eq!(p, path),
                other => panic!("cut at {len}: {other:?}"),
            }
        }
        let e = decode(&path, &full[..full.len() / 2], MAX_ENTRIES).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{} is truncated", path.display())),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn foreign_json_is_named_as_such() {
        let path = Path::new("/var/lib/x/first-seen.json");
        for (text, says) in [
            ("{}", "no \"format\""),
            ("[1, 2, 3]", "invalid type"),
            ("42", "invalid type"),
            (
                "{\"format\": \"prometheus tsdb\", \"version\": 1}",
                "its format is \"prometheus tsdb\"",
            ),
            (&format!("{{\"format\": \"{FORMAT}\"}}"), "no \"version\""),
            (
                &format!(
                    "{{\"format\": \"{FORMAT}\", \"version\": 1, \"watchers\": [{{\"pool_id\": \"x\"}}]}}"
                ),
                "invalid type",
            ),
            ("{\"format\": 7, \"version\": 1}", "invalid type"),
        ] {
            let e = decode(path, text.as_bytes(), MAX_ENTRIES).unwrap_err();
            assert!(matches!(e, StateError::Foreign { .. }), "{text}: {e:?}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(
                    "/var/lib/x/first-seen.json is not a ceph-rbd-exporter first-seen state file: "
                ),
                "{msg}"
            );
            assert!(msg.contains(says), "{text}: {msg}");
        }
    }

    #[test]
    fn another_version_is_named() {
        let path = Path::new("/s/first-seen.json");
        let text = format!(
            "{{\"format\": \"{FORMAT}\", \"version\": 2, \"watchers\": {{\"new\": \"shape\"}}}}"
        );
        let e = decode(path, text.as_bytes(), MAX_ENTRIES).unwrap_err();
        assert!(matches!(e, StateError::Version { found: 2, .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "/s/first-seen.json has format version 2; this exporter reads version 1"
        );
    }

    #[test]
    fn unusable_times_are_left_out_and_duplicates_keep_the_earliest() {
        let entry = |t: &str, cookie: u64| {
            format!(
                "{{\"pool_id\": 1, \"namespace\": \"\", \"image_id\": \"a\", \"client\": \"client.1\", \"address\": \"10.0.0.1:0/1\", \"cookie\": {cookie}, \"first_seen\": {t}}}"
            )
        };
        let text = format!(
            "{{\"format\": \"{FORMAT}\", \"version\": 1, \"written_at\": 5, \"watchers\": [{}, {}, {}, {}]}}",
            entry("-1", 1),
            entry("0", 2),
            entry("200", 4),
            entry("100", 4),
        );
        let l = decode(Path::new("f"), text.as_bytes(), MAX_ENTRIES).unwrap();
        assert_eq!(l.invalid, 2);
        assert_eq!(l.times.values().copied().collect::<Vec<_>>(), vec![100.0]);
    }

    #[test]
    fn the_file_is_bounded() {
        assert_eq!(MAX_ENTRIES, 1_000_000, "the bound the README documents");
        let max = 10;
        let many: FirstSeenTimes = (0..max + 3)
            .map(|i| (key(1, "a", "10.0.0.1:0/1", i as u64), (100 - i) as f64))
            .collect();
        let (kept, left_out) = bounded_entries(many.iter().map(|(k, t)| (k, *t)), max);
        assert_eq!((kept.len(), left_out), (max, 3));
        // The longest-held are kept: the three latest first-seen times go.
        let mut kept_times: Vec<f64> = kept.iter().map(|e| e.first_seen).collect();
        kept_times.sort_by(f64::total_cmp);
        let want: Vec<f64> = (88..=97).map(f64::from).collect();
        assert_eq!(kept_times, want);
        // A file with more entries is read up to the bound.
        let dir = scratch("bounded");
        let mut all: Vec<Entry> = many.iter().map(|(k, t)| Entry::new(k, *t)).collect();
        all.sort_by_key(|e| e.cookie);
        write(&dir, all, 1.0).unwrap();
        let bytes = std::fs::read(dir.join(FILE_NAME)).unwrap();
        let loaded = decode(&dir.join(FILE_NAME), &bytes, max).unwrap();
        assert_eq!((loaded.times.len(), loaded.over_limit), (max, 3));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_bad_storage_path_is_a_configuration_error() {
        let dir = scratch("bad-path");
        let file = dir.join("a-file");
        std::fs::write(&file, "x").unwrap();
        let e = StateFile::open(&file).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("--storage.path {}: not a directory", file.display())
        );
        let e = StateFile::open(&file.join("below")).unwrap_err();
        assert!(e.to_string().contains("cannot create it"), "{e}");
        assert!(StateFile::open(Path::new("")).is_err());
        let made = dir.join("new/deeper");
        let state = StateFile::open(&made).unwrap();
        assert!(made.is_dir(), "made when missing");
        assert_eq!(state.path(), made.join(FILE_NAME));
        let _ = std::fs::remove_dir_all(dir);
    }

    fn one_watcher_sample() -> crate::model::Sample {
        use crate::analysis::fixtures::*;
        let mut img = image("a", "a");
        img.watchers.push(watcher(1, "10.0.0.1", 1));
        sample(vec![(1, "p", vec![namespace("", vec![img])])])
    }

    #[tokio::test]
    async fn a_failed_write_is_retried_and_a_bad_file_is_a_fresh_start() {
        let dir = scratch("state-file");
        let mut state = StateFile::open(&dir).unwrap();
        let mut fs = state.load(100.0);
        fs.update(&one_watcher_sample(), 100.0);
        // The file's name taken by a directory: the write fails, the times
        // stay to be saved.
        std::fs::create_dir_all(dir.join(FILE_NAME).join("x")).unwrap();
        state.save(&mut fs, 100.0).await;
        assert!(fs.changed());
        assert!(state.failing.as_deref().unwrap().contains(FILE_NAME));
        assert!(!dir.join(TEMP_NAME).exists());
        std::fs::remove_dir_all(dir.join(FILE_NAME)).unwrap();
        state.save(&mut fs, 160.0).await;
        assert!(!fs.changed() && state.failing.is_none());

        // Restored after a restart: the same time for the same watch.
        let mut restored = state.load(200.0);
        let t = restored.update(&one_watcher_sample(), 200.0);
        assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![100.0]);

        // Truncated: a fresh start.
        let text = std::fs::read(state.path()).unwrap();
        std::fs::write(state.path(), &text[..text.len() / 2]).unwrap();
        let mut fresh = state.load(300.0);
        assert_eq!(fresh.times().count(), 0);
        let t = fresh.update(&one_watcher_sample(), 300.0);
        assert_eq!(t.values().copied().collect::<Vec<_>>(), vec![300.0]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
