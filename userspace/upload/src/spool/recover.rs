//! Opening a spool that an earlier run left behind: complete batch files are indexed
//! again in their commit order, temporaries of interrupted commits (never accepted) are
//! deleted, and files that are not complete batches are moved to `quarantine/`.
//!
//! Nothing found here is ever deleted except those temporaries: a file whose trailer is
//! missing or wrong (cut by a power cut, damaged, or foreign) is kept for a human.

use std::fs::{self, File};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use super::error::io_err;
use super::format::{Corruption, TRAILER_LEN, Trailer};
use super::fsio::{c_name, rename_noreplace};
use super::{
    LOCK_FILE, OBJECTS_DIR, QUARANTINE_DIR, Spool, SpoolError, SpooledBatch, TEMP_PREFIX, name,
};

impl Spool {
    /// Indexes the files of an earlier run.
    pub(super) fn recover(&mut self) -> Result<(), SpoolError> {
        let mut found = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(io_err(&self.dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err(&self.dir))?;
            let Ok(file_name) = entry.file_name().into_string() else {
                tracing::warn!(dir = %self.dir.display(), file = ?entry.file_name(), "ignoring a file that is not a batch");
                continue;
            };
            if file_name == LOCK_FILE || file_name == QUARANTINE_DIR || file_name == OBJECTS_DIR {
                continue;
            }
            let path = entry.path();
            if file_name.starts_with(TEMP_PREFIX) {
                // A commit that never returned: the batch was never accepted.
                fs::remove_file(&path).map_err(io_err(&path))?;
                self.stale_temporaries += 1;
                continue;
            }
            if !file_name.ends_with(name::SUFFIX) {
                if file_name != crate::naming::BOOT_ID_FILE {
                    tracing::warn!(path = %path.display(), "ignoring a file that is not a batch");
                }
                continue;
            }
            match self.inspect(&file_name, &path)? {
                Ok(batch) => found.push(batch),
                Err(problem) => {
                    self.quarantine_file(&file_name, &problem)?;
                }
            }
        }
        found.sort_by(|a, b| (a.sequence, &a.file_name).cmp(&(b.sequence, &b.file_name)));
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        for batch in found {
            // Two files with one sequence cannot come from one spool; keep both, in name
            // order, by moving the later one past the end.
            let sequence = if state.by_sequence.contains_key(&batch.sequence) {
                state.by_sequence.last_key_value().map_or(0, |(k, _)| k + 1)
            } else {
                batch.sequence
            };
            state.bytes += batch.file_bytes;
            state.next_sequence = state.next_sequence.max(sequence + 1);
            state.by_name.insert(batch.object_name.clone(), sequence);
            state.unassigned.insert(sequence);
            state
                .by_sequence
                .insert(sequence, SpooledBatch { sequence, ..batch });
        }
        let (files, bytes) = (state.by_sequence.len(), state.bytes);
        if self.stale_temporaries > 0 {
            self.sync_dir()?;
        }
        tracing::info!(
            dir = %self.dir.display(),
            files,
            bytes,
            quarantined = self.quarantined.load(Ordering::Relaxed),
            stale_temporaries = self.stale_temporaries,
            "spool opened"
        );
        Ok(())
    }

    /// Reads the name and trailer of one batch file: `Ok(Err(_))` when it is corrupt.
    fn inspect(
        &self,
        file_name: &str,
        path: &Path,
    ) -> Result<Result<SpooledBatch, Corruption>, SpoolError> {
        let Some(object_name) = name::decode(file_name) else {
            return Ok(Err(Corruption::BadName));
        };
        let mut file = File::open(path).map_err(io_err(path))?;
        let metadata = file.metadata().map_err(io_err(path))?;
        let len = metadata.len();
        let committed_at = metadata
            .modified()
            .unwrap_or_else(|_| std::time::SystemTime::now());
        if len < TRAILER_LEN as u64 {
            return Ok(Err(Corruption::TooShort { len }));
        }
        let mut bytes = [0u8; TRAILER_LEN];
        file.seek(SeekFrom::Start(len - TRAILER_LEN as u64))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(io_err(path))?;
        Ok(Trailer::decode(&bytes, len).map(|trailer| SpooledBatch {
            object_name,
            file_name: file_name.to_owned(),
            sequence: trailer.sequence,
            file_bytes: len,
            crc32c: trailer.crc32c,
            committed_at,
        }))
    }

    /// Moves a batch file into the quarantine (under a free name) and counts it.
    pub(super) fn quarantine_file(
        &self,
        file_name: &str,
        problem: &Corruption,
    ) -> Result<PathBuf, SpoolError> {
        self.quarantine_from(&self.dir_handle, &self.dir, file_name, problem)
    }

    /// Moves `file_name` of directory `dir` (open as `dir_handle`) into the quarantine.
    pub(super) fn quarantine_from(
        &self,
        dir_handle: &File,
        dir: &Path,
        file_name: &str,
        problem: &Corruption,
    ) -> Result<PathBuf, SpoolError> {
        let from = dir.join(file_name);
        let quarantine = File::open(&self.quarantine).map_err(io_err(&self.quarantine))?;
        let from_c = c_name(file_name).map_err(io_err(&from))?;
        for attempt in 0..1000u32 {
            let target = if attempt == 0 {
                file_name.to_owned()
            } else {
                format!("{file_name}.{attempt}")
            };
            let to = self.quarantine.join(&target);
            let to_c = c_name(&target).map_err(io_err(&to))?;
            match rename_noreplace(dir_handle, &from_c, &quarantine, &to_c) {
                Ok(()) => {
                    quarantine.sync_all().map_err(io_err(&self.quarantine))?;
                    dir_handle.sync_all().map_err(io_err(dir))?;
                    self.quarantined.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        file = %from.display(),
                        quarantined = %to.display(),
                        %problem,
                        "corrupt spool file moved to the quarantine: it will not be uploaded"
                    );
                    return Ok(to);
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(source) => return Err(SpoolError::Io { path: from, source }),
            }
        }
        Err(SpoolError::Io {
            path: from,
            source: std::io::Error::other("no free name in the quarantine"),
        })
    }
}
