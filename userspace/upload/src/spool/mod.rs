//! The spool: a directory of sealed batches waiting for upload, written so that a batch
//! is accepted only once it would survive a power cut.
//!
//! [`Spool::commit`] writes `.tmp-<pid>-<sequence>`, fsyncs it, renames it to
//! `<encoded object name>.spool` without replacing anything (`renameat2(RENAME_NOREPLACE)`),
//! and fsyncs the directory; only then does it return `Ok`. The uploader reads
//! [`Spool::pending`] (oldest first) and calls [`Spool::remove`] once the object is in
//! Cloud Storage. [`Spool::open`] takes over whatever an earlier run left: complete batch
//! files are pending again (under the object names they were committed with), leftover
//! temporaries were never accepted and are deleted, and files whose trailer is missing or
//! wrong are moved to `quarantine/` and counted — never deleted, never uploaded.
//!
//! Directory layout: `*.spool` (batches, format in [`mod@format`], names in [`mod@name`]),
//! `.lock` (an exclusive `flock`: one process per spool), `.tmp-*` (commits in progress),
//! `quarantine/`, and `boot-id` where [`crate::BootId::current`] needed its fallback.
//!
//! The byte limit counts whole files (payload + trailer) and commits in progress. A
//! commit over the limit, or one the file system refuses for space (`ENOSPC`, `EDQUOT`),
//! is [`SpoolError::Full`]: the caller counts the batch's packets as dropped
//! (`spool_full`) and carries on.

mod error;
pub mod format;
mod fsio;
pub mod manifest;
pub mod name;
mod objects;
mod recover;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::io::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use self::error::io_err;
pub use self::error::{FullCause, SpoolError};
use self::format::{TRAILER_LEN, Trailer};
use self::fsio::{WriteFailure, c_name, rename_noreplace};
pub use self::objects::PlannedObject;
use crate::log_limit::LogLimiter;

pub use self::manifest::OBJECTS_DIR;

/// Name of the quarantine directory inside the spool.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Name of the lock file inside the spool.
pub const LOCK_FILE: &str = ".lock";
/// Prefix of temporary files (commits in progress).
pub const TEMP_PREFIX: &str = ".tmp-";

/// A batch in the spool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpooledBatch {
    /// The object name it will be uploaded under.
    pub object_name: String,
    /// Its file name in the spool.
    pub file_name: String,
    /// Commit order: lower is older.
    pub sequence: u64,
    /// Size of the file (payload + trailer): what it counts against the limit.
    pub file_bytes: u64,
    /// CRC32C of the payload (the object's `crc32c`).
    pub crc32c: u32,
    /// When it was committed (after a restart: the file's modification time).
    pub committed_at: SystemTime,
}

impl SpooledBatch {
    /// Size of the object.
    pub fn payload_bytes(&self) -> u64 {
        self.file_bytes.saturating_sub(TRAILER_LEN as u64)
    }
}

/// An accepted batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The batch as the uploader will see it.
    pub batch: SpooledBatch,
    /// Batches in the spool, this one included.
    pub spool_files: u64,
    /// Their bytes.
    pub spool_bytes: u64,
}

/// The spool's size and counters, for metrics (`sluice_spool_files`, `sluice_spool_bytes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Batches in the spool (`sluice_spool_files`).
    pub files: u64,
    /// Their bytes, trailers included (`sluice_spool_bytes`).
    pub bytes: u64,
    /// The configured byte limit.
    pub limit: u64,
    /// Files moved to the quarantine since open (`sluice_spool_quarantined_files_total`).
    pub quarantined: u64,
    /// Commits refused as full since open (`sluice_spool_refused_batches_total`).
    pub refused: u64,
    /// Temporaries of interrupted commits deleted at open.
    pub stale_temporaries: u64,
    /// Objects planned (batches decided) and not yet uploaded
    /// (`sluice_upload_objects_pending`).
    pub planned_objects: u64,
}

#[derive(Debug, Default)]
struct State {
    by_sequence: BTreeMap<u64, SpooledBatch>,
    /// Batches in no object yet (see [`Spool::plan_objects`]).
    unassigned: BTreeSet<u64>,
    /// Objects planned (manifest written) and not yet uploaded, by id.
    objects: BTreeMap<u64, PlannedObject>,
    /// Planned objects no upload task holds.
    unclaimed_objects: BTreeSet<u64>,
    /// Batches their format would not join to others: objects of their own.
    alone: HashSet<u64>,
    next_object: u64,
    by_name: HashMap<String, u64>,
    committing: HashSet<String>,
    bytes: u64,
    reserved: u64,
    next_sequence: u64,
}

/// The spool directory and its index.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    quarantine: PathBuf,
    objects_dir: PathBuf,
    objects_handle: File,
    limit: u64,
    dir_handle: File,
    _lock: File,
    state: Mutex<State>,
    changed: tokio::sync::Notify,
    quarantined: AtomicU64,
    refused: AtomicU64,
    stale_temporaries: u64,
    full_log: LogLimiter,
}

impl Spool {
    /// Opens (creating it if needed) the spool in `dir` with a byte limit, takes its lock,
    /// and indexes what an earlier run left there (see the module docs).
    ///
    /// # Errors
    /// [`SpoolError::Unwritable`] when the directory cannot be created or written,
    /// [`SpoolError::Locked`] when another process has it, [`SpoolError::Io`] when it
    /// cannot be read.
    pub fn open(dir: impl Into<PathBuf>, byte_limit: u64) -> Result<Self, SpoolError> {
        let dir: PathBuf = dir.into();
        let unwritable = |source| SpoolError::Unwritable {
            dir: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(unwritable)?;
        let dir_handle = File::open(&dir).map_err(unwritable)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(LOCK_FILE))
            .map_err(unwritable)?;
        // SAFETY: flock(2) on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(SpoolError::Locked { dir });
            }
            return Err(unwritable(err));
        }
        // The lock file may exist from an earlier run on a now read-only mount: prove
        // that a new file can be created.
        let probe = dir.join(format!("{TEMP_PREFIX}probe-{}", std::process::id()));
        File::create(&probe).map_err(unwritable)?;
        fs::remove_file(&probe).map_err(unwritable)?;
        let quarantine = dir.join(QUARANTINE_DIR);
        fs::create_dir_all(&quarantine).map_err(unwritable)?;
        let objects_dir = dir.join(OBJECTS_DIR);
        fs::create_dir_all(&objects_dir).map_err(unwritable)?;
        let objects_handle = File::open(&objects_dir).map_err(unwritable)?;

        let mut spool = Self {
            quarantine,
            objects_dir,
            objects_handle,
            limit: byte_limit,
            dir_handle,
            _lock: lock,
            state: Mutex::new(State::default()),
            changed: tokio::sync::Notify::new(),
            quarantined: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            stale_temporaries: 0,
            full_log: LogLimiter::new(Duration::from_secs(10)),
            dir,
        };
        spool.recover()?;
        spool.recover_objects()?;
        Ok(spool)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The quarantine directory.
    pub fn quarantine_dir(&self) -> &Path {
        &self.quarantine
    }

    /// The configured byte limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sync_dir(&self) -> Result<(), SpoolError> {
        self.dir_handle.sync_all().map_err(io_err(&self.dir))
    }

    /// Writes `payload` durably as the batch to be uploaded as `object_name`. When this
    /// returns `Ok`, the batch is on disk under its final name and its directory entry is
    /// synced: it is accepted.
    ///
    /// # Errors
    /// [`SpoolError::Full`] (over the limit, or out of disk or quota: nothing was kept),
    /// [`SpoolError::InvalidName`], [`SpoolError::Duplicate`], or [`SpoolError::Io`].
    pub fn commit(&self, object_name: &str, payload: &[u8]) -> Result<Committed, SpoolError> {
        let file_name = name::encode(object_name).map_err(|problem| SpoolError::InvalidName {
            name: object_name.to_owned(),
            problem,
        })?;
        let file_bytes = payload.len() as u64 + TRAILER_LEN as u64;
        let sequence = {
            let mut state = self.lock();
            if state.by_name.contains_key(object_name) || state.committing.contains(object_name) {
                return Err(SpoolError::Duplicate {
                    name: object_name.to_owned(),
                });
            }
            let spooled = state.bytes + state.reserved;
            if spooled.saturating_add(file_bytes) > self.limit {
                drop(state);
                return Err(self.full(file_bytes, spooled, FullCause::Limit));
            }
            state.reserved += file_bytes;
            state.committing.insert(object_name.to_owned());
            let sequence = state.next_sequence;
            state.next_sequence += 1;
            sequence
        };
        let result = self.write_batch(&file_name, sequence, payload);
        let mut state = self.lock();
        state.reserved -= file_bytes;
        state.committing.remove(object_name);
        let crc32c = match result {
            Ok(crc32c) => crc32c,
            Err(WriteFailure::Full(cause)) => {
                let spooled = state.bytes + state.reserved;
                drop(state);
                return Err(self.full(file_bytes, spooled, cause));
            }
            Err(WriteFailure::Exists) => {
                return Err(SpoolError::Duplicate {
                    name: object_name.to_owned(),
                });
            }
            Err(WriteFailure::Io(e)) => return Err(e),
        };
        let batch = SpooledBatch {
            object_name: object_name.to_owned(),
            file_name,
            sequence,
            file_bytes,
            crc32c,
            committed_at: SystemTime::now(),
        };
        state.bytes += file_bytes;
        state.by_name.insert(object_name.to_owned(), sequence);
        state.by_sequence.insert(sequence, batch.clone());
        state.unassigned.insert(sequence);
        let committed = Committed {
            batch,
            spool_files: state.by_sequence.len() as u64,
            spool_bytes: state.bytes,
        };
        drop(state);
        self.changed.notify_one();
        Ok(committed)
    }

    fn full(&self, bytes: u64, spooled: u64, cause: FullCause) -> SpoolError {
        self.refused.fetch_add(1, Ordering::Relaxed);
        if let Some(held_back) = self.full_log.allow() {
            tracing::warn!(
                dir = %self.dir.display(),
                bytes,
                spooled,
                limit = self.limit,
                %cause,
                refused_since_last_line = held_back,
                "spool full: batch refused and counted as dropped (spool_full); still running"
            );
        }
        SpoolError::Full {
            dir: self.dir.clone(),
            bytes,
            limit: self.limit,
            spooled,
            cause,
        }
    }

    /// Temp file, fsync, rename without replacing, fsync of the directory. Returns the
    /// payload's CRC32C. On failure nothing is left behind.
    fn write_batch(
        &self,
        file_name: &str,
        sequence: u64,
        payload: &[u8],
    ) -> Result<u32, WriteFailure> {
        let temp_name = format!("{TEMP_PREFIX}{}-{sequence}", std::process::id());
        let temp = self.dir.join(&temp_name);
        let trailer = Trailer::for_payload(sequence, payload);
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .open(&temp)?;
            file.write_all(payload)?;
            file.write_all(&trailer.encode())?;
            file.sync_data()
        })();
        if let Err(source) = written {
            let _ = fs::remove_file(&temp);
            return Err(WriteFailure::from_io(&temp, source));
        }
        let target = self.dir.join(file_name);
        let renamed = c_name(&temp_name).and_then(|from| {
            let to = c_name(file_name)?;
            rename_noreplace(&self.dir_handle, &from, &self.dir_handle, &to)
        });
        if let Err(source) = renamed {
            let _ = fs::remove_file(&temp);
            if source.raw_os_error() == Some(libc::EEXIST) {
                return Err(WriteFailure::Exists);
            }
            return Err(WriteFailure::from_io(&target, source));
        }
        if let Err(source) = self.dir_handle.sync_all() {
            // Not durable, so not accepted: take it back rather than upload a batch whose
            // packets the caller counts as dropped.
            let _ = fs::remove_file(&target);
            return Err(WriteFailure::from_io(&self.dir, source));
        }
        Ok(trailer.crc32c)
    }

    /// Every spooled batch, oldest first.
    pub fn pending(&self) -> Vec<SpooledBatch> {
        self.lock().by_sequence.values().cloned().collect()
    }

    /// Up to `max` spooled batches with a sequence of at least `from`, oldest first.
    pub fn pending_from(&self, from: u64, max: usize) -> Vec<SpooledBatch> {
        self.lock()
            .by_sequence
            .range(from..)
            .take(max)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// True when nothing is spooled.
    pub fn is_empty(&self) -> bool {
        self.lock().by_sequence.is_empty()
    }

    /// Reads a batch's payload (the object's bytes, trailer stripped), checking it
    /// against its trailer.
    ///
    /// # Errors
    /// [`SpoolError::Corrupt`] (the file has been quarantined and dropped from the
    /// index), [`SpoolError::NotSpooled`], [`SpoolError::Io`].
    pub fn read(&self, batch: &SpooledBatch) -> Result<Vec<u8>, SpoolError> {
        if self.lock().by_name.get(&batch.object_name) != Some(&batch.sequence) {
            return Err(SpoolError::NotSpooled {
                name: batch.object_name.clone(),
            });
        }
        let path = self.dir.join(&batch.file_name);
        let mut bytes = fs::read(&path).map_err(io_err(&path))?;
        match Trailer::split(&bytes).map(|(_, trailer)| trailer) {
            Ok(trailer) => {
                bytes.truncate(usize::try_from(trailer.payload_len).unwrap_or(usize::MAX));
                Ok(bytes)
            }
            Err(problem) => {
                let quarantined = self.quarantine_file(&batch.file_name, &problem)?;
                self.forget(batch);
                Err(SpoolError::Corrupt {
                    path,
                    quarantined,
                    problem,
                })
            }
        }
    }

    pub(super) fn forget(&self, batch: &SpooledBatch) {
        let mut state = self.lock();
        if state.by_sequence.remove(&batch.sequence).is_some() {
            state.unassigned.remove(&batch.sequence);
            state.alone.remove(&batch.sequence);
            state.bytes -= batch.file_bytes;
            state.by_name.remove(&batch.object_name);
        }
    }

    /// Deletes an uploaded batch (and syncs the directory).
    ///
    /// # Errors
    /// [`SpoolError::NotSpooled`], or [`SpoolError::Io`] when the file cannot be removed
    /// (it then stays spooled) or the directory cannot be synced (it is gone).
    pub fn remove(&self, object_name: &str) -> Result<(), SpoolError> {
        let batch = {
            let state = self.lock();
            let Some(sequence) = state.by_name.get(object_name) else {
                return Err(SpoolError::NotSpooled {
                    name: object_name.to_owned(),
                });
            };
            state.by_sequence.get(sequence).cloned()
        };
        let Some(batch) = batch else {
            return Err(SpoolError::NotSpooled {
                name: object_name.to_owned(),
            });
        };
        let path = self.dir.join(&batch.file_name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SpoolError::Io { path, source }),
        }
        self.forget(&batch);
        self.sync_dir()
    }

    /// Sizes and counters for metrics.
    pub fn stats(&self) -> SpoolStats {
        let state = self.lock();
        SpoolStats {
            files: state.by_sequence.len() as u64,
            bytes: state.bytes,
            limit: self.limit,
            quarantined: self.quarantined.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            stale_temporaries: self.stale_temporaries,
            planned_objects: state.objects.len() as u64,
        }
    }

    #[cfg(feature = "client")]
    /// Woken (one permit) by every commit: the uploader waits on it when idle.
    pub(crate) fn changed(&self) -> &tokio::sync::Notify {
        &self.changed
    }
}

#[cfg(test)]
mod tests;
