//! Objects in the spool: which batches are combined into which object, made durable
//! before the upload starts (see [`super::manifest`] for why and how), handed to upload
//! tasks, and retired once the object is in the bucket.
//!
//! A batch is in at most one object. [`Spool::plan_objects`] assigns batches that are in
//! none (by the policy of [`crate::plan`]) and writes their manifests; [`Spool::open`]
//! reads back the manifests an earlier run left, so the same objects are rebuilt;
//! [`Spool::finish_object`] marks an object uploaded, then removes its batches.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::sync::PoisonError;
use std::time::SystemTime;

use super::error::io_err;
use super::format::Corruption;
use super::fsio::{c_name, rename_noreplace};
use super::manifest::{Manifest, PLANNED_SUFFIX, UPLOADED_SUFFIX};
use super::{Spool, SpoolError, SpooledBatch, TEMP_PREFIX, name};
use crate::plan::{Candidate, ObjectPolicy, object_name, plan};

/// An object whose batches are decided (its manifest is on disk) and not yet uploaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedObject {
    /// Its id in this process (not stored).
    pub id: u64,
    /// The object name it is uploaded under.
    pub object_name: String,
    /// Its manifest's file name in `objects/`.
    pub manifest: String,
    /// Its batches, in the object's order.
    pub batches: Vec<SpooledBatch>,
}

impl PlannedObject {
    /// Sum of its batches' payload sizes.
    pub fn payload_bytes(&self) -> u64 {
        self.batches.iter().map(SpooledBatch::payload_bytes).sum()
    }

    fn manifest_text(&self) -> Vec<u8> {
        Manifest {
            object_name: self.object_name.clone(),
            batch_files: self.batches.iter().map(|b| b.file_name.clone()).collect(),
        }
        .encode()
    }
}

/// What one call of [`Spool::plan_objects`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Planned {
    /// Objects planned by this call.
    pub objects: usize,
    /// When the oldest batch left waiting is due.
    pub next_due: Option<SystemTime>,
}

impl Spool {
    /// Assigns batches that are in no object to new objects, as `policy` decides at `now`
    /// (with `flush`: all of them), and writes their manifests durably.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when a manifest cannot be written or synced; the batches of
    /// objects not made durable stay unassigned for the next call.
    pub fn plan_objects(
        &self,
        policy: ObjectPolicy,
        now: SystemTime,
        flush: bool,
    ) -> Result<Planned, SpoolError> {
        let (chosen, next_due) = {
            let mut state = self.lock();
            let decided = plan(
                state.unassigned.iter().filter_map(|s| {
                    state.by_sequence.get(s).map(|b| Candidate {
                        sequence: b.sequence,
                        object_name: &b.object_name,
                        payload_bytes: b.payload_bytes(),
                        committed_at: b.committed_at,
                        alone: state.alone.contains(s),
                    })
                }),
                policy,
                now,
                flush,
            );
            let mut chosen = Vec::with_capacity(decided.objects.len());
            for sequences in decided.objects {
                let batches: Vec<SpooledBatch> = sequences
                    .iter()
                    .filter_map(|s| state.by_sequence.get(s).cloned())
                    .collect();
                for s in &sequences {
                    state.unassigned.remove(s);
                }
                let Some(first) = batches.first() else {
                    continue;
                };
                let id = state.next_object;
                state.next_object += 1;
                let stem = first
                    .file_name
                    .strip_suffix(name::SUFFIX)
                    .unwrap_or(&first.file_name);
                chosen.push(PlannedObject {
                    id,
                    object_name: object_name(&first.object_name, batches.len()),
                    manifest: format!("{stem}{PLANNED_SUFFIX}"),
                    batches,
                });
            }
            (chosen, decided.next_due)
        };
        let mut written = Vec::with_capacity(chosen.len());
        let mut failure = None;
        for object in chosen {
            if failure.is_none() {
                match self.write_new_manifest(&object) {
                    Ok(()) => {
                        written.push(object);
                        continue;
                    }
                    Err(e) => failure = Some(e),
                }
            }
            self.unassign(&object);
        }
        if !written.is_empty()
            && let Err(e) = self.objects_handle.sync_all()
        {
            // Not durable: a crash could lose the manifests after their objects were
            // uploaded, and the batches would go up again under other names.
            for object in &written {
                let _ = fs::remove_file(self.objects_dir.join(&object.manifest));
                self.unassign(object);
            }
            return Err(io_err(&self.objects_dir)(e));
        }
        let objects = written.len();
        {
            let mut state = self.lock();
            for object in written {
                state.unclaimed_objects.insert(object.id);
                state.objects.insert(object.id, object);
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(Planned { objects, next_due }),
        }
    }

    /// Gives an object's batches back to the unassigned (its manifest was not written).
    fn unassign(&self, object: &PlannedObject) {
        let mut state = self.lock();
        for batch in &object.batches {
            if state.by_sequence.contains_key(&batch.sequence) {
                state.unassigned.insert(batch.sequence);
            }
        }
    }

    /// Temp file, fsync, rename without replacing (the directory is synced by the caller).
    fn write_new_manifest(&self, object: &PlannedObject) -> Result<(), SpoolError> {
        let temp_name = format!("{TEMP_PREFIX}{}-m{}", std::process::id(), object.id);
        let temp = self.objects_dir.join(&temp_name);
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .open(&temp)?;
            file.write_all(&object.manifest_text())?;
            file.sync_data()
        })();
        if let Err(source) = written {
            let _ = fs::remove_file(&temp);
            return Err(SpoolError::Io { path: temp, source });
        }
        let target = self.objects_dir.join(&object.manifest);
        let renamed = c_name(&temp_name).and_then(|from| {
            let to = c_name(&object.manifest)?;
            rename_noreplace(&self.objects_handle, &from, &self.objects_handle, &to)
        });
        if let Err(source) = renamed {
            let _ = fs::remove_file(&temp);
            return Err(SpoolError::Io {
                path: target,
                source,
            });
        }
        Ok(())
    }

    /// Hands out up to `max` planned objects no upload task holds, oldest first. Each
    /// stays claimed until it is finished or [released](Self::release_object).
    pub fn claim_objects(&self, max: usize) -> Vec<PlannedObject> {
        let mut state = self.lock();
        let mut claimed = Vec::new();
        while claimed.len() < max {
            let Some(id) = state.unclaimed_objects.pop_first() else {
                break;
            };
            if let Some(object) = state.objects.get(&id) {
                claimed.push(object.clone());
            }
        }
        claimed
    }

    /// Gives a claimed object back (its task ended without finishing it).
    pub fn release_object(&self, id: u64) {
        let mut state = self.lock();
        if state.objects.contains_key(&id) {
            state.unclaimed_objects.insert(id);
        }
    }

    /// Gives every object back (a new uploader starts).
    pub fn release_all(&self) {
        let mut state = self.lock();
        state.unclaimed_objects = state.objects.keys().copied().collect();
    }

    /// True when a planned object is not held by an upload task.
    pub fn has_unclaimed_objects(&self) -> bool {
        !self.lock().unclaimed_objects.is_empty()
    }

    /// True when some spooled batch is in no object yet.
    pub fn has_unassigned(&self) -> bool {
        !self.lock().unassigned.is_empty()
    }

    /// Takes a batch that its format would not join to the others out of object `id`
    /// (manifest rewritten) and lets it become an object of its own. Returns the object
    /// as it now is, as [`Self::drop_from_object`] does.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when the manifest cannot be rewritten.
    pub fn detach_alone(
        &self,
        id: u64,
        sequence: u64,
    ) -> Result<Option<PlannedObject>, SpoolError> {
        let rest = self.drop_from_object(id, sequence)?;
        {
            let mut state = self.lock();
            if state.by_sequence.contains_key(&sequence) {
                state.alone.insert(sequence);
                state.unassigned.insert(sequence);
            }
        }
        self.changed.notify_one();
        Ok(rest)
    }

    /// Where the upload task assembles object `id` (a temporary: deleted at open).
    pub fn object_temp_path(&self, id: u64) -> PathBuf {
        self.dir
            .join(format!("{TEMP_PREFIX}object-{}-{id}", std::process::id()))
    }

    /// Takes a batch that has been quarantined out of its object and rewrites the
    /// manifest; returns the object as it now is, or `None` when no batch is left (the
    /// manifest is then gone).
    ///
    /// # Errors
    /// [`SpoolError::Io`] when the manifest cannot be rewritten.
    pub fn drop_from_object(
        &self,
        id: u64,
        sequence: u64,
    ) -> Result<Option<PlannedObject>, SpoolError> {
        let Some(mut object) = self.lock().objects.get(&id).cloned() else {
            return Ok(None);
        };
        object.batches.retain(|b| b.sequence != sequence);
        let path = self.objects_dir.join(&object.manifest);
        if object.batches.is_empty() {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(SpoolError::Io { path, source }),
            }
            self.objects_handle
                .sync_all()
                .map_err(io_err(&self.objects_dir))?;
            let mut state = self.lock();
            state.objects.remove(&id);
            state.unclaimed_objects.remove(&id);
            return Ok(None);
        }
        let temp = self
            .objects_dir
            .join(format!("{TEMP_PREFIX}{}-r{id}", std::process::id()));
        let written = (|| {
            let mut file = fs::File::create(&temp)?;
            file.write_all(&object.manifest_text())?;
            file.sync_data()?;
            fs::rename(&temp, &path)?;
            self.objects_handle.sync_all()
        })();
        if let Err(source) = written {
            let _ = fs::remove_file(&temp);
            return Err(SpoolError::Io { path, source });
        }
        self.lock().objects.insert(id, object.clone());
        Ok(Some(object))
    }

    /// Retires an uploaded object: its manifest becomes `.uploaded` (synced), its batches
    /// are removed (synced), then the marker. Safe to call again after an error.
    ///
    /// # Errors
    /// [`SpoolError::Io`]; the object stays known and the call can be repeated.
    pub fn finish_object(&self, object: &PlannedObject) -> Result<(), SpoolError> {
        let planned = self.objects_dir.join(&object.manifest);
        let stem = object
            .manifest
            .strip_suffix(PLANNED_SUFFIX)
            .unwrap_or(&object.manifest);
        let uploaded = self.objects_dir.join(format!("{stem}{UPLOADED_SUFFIX}"));
        match fs::rename(&planned, &uploaded) {
            Ok(()) => self
                .objects_handle
                .sync_all()
                .map_err(io_err(&self.objects_dir))?,
            // Marked already (a repeated call); or finished completely before.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SpoolError::Io {
                    path: planned,
                    source,
                });
            }
        }
        self.remove_batches(&object.batches)?;
        match fs::remove_file(&uploaded) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SpoolError::Io {
                    path: uploaded,
                    source,
                });
            }
        }
        self.objects_handle
            .sync_all()
            .map_err(io_err(&self.objects_dir))?;
        let mut state = self.lock();
        state.objects.remove(&object.id);
        state.unclaimed_objects.remove(&object.id);
        Ok(())
    }

    /// Removes batch files (gone already is fine) and syncs the directory once.
    fn remove_batches(&self, batches: &[SpooledBatch]) -> Result<(), SpoolError> {
        for batch in batches {
            let path = self.dir.join(&batch.file_name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(SpoolError::Io { path, source }),
            }
            self.forget(batch);
        }
        self.sync_dir()
    }

    /// Reads back the manifests an earlier run left (called by [`Spool::open`] after the
    /// batches are indexed): uploaded objects have their remaining batches removed,
    /// planned objects are planned again with the batches that are still there.
    pub(super) fn recover_objects(&mut self) -> Result<(), SpoolError> {
        let dir = self.objects_dir.clone();
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            match entry.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(other) => {
                    tracing::warn!(dir = %dir.display(), file = ?other, "ignoring a file that is not a manifest");
                }
            }
        }
        names.sort();
        let by_file: HashMap<String, u64> = {
            let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
            state
                .by_sequence
                .values()
                .map(|b| (b.file_name.clone(), b.sequence))
                .collect()
        };
        let mut changed = false;
        let (mut replanned, mut retired) = (0u64, 0u64);
        for file_name in names {
            let path = dir.join(&file_name);
            if file_name.starts_with(TEMP_PREFIX) {
                fs::remove_file(&path).map_err(io_err(&path))?;
                changed = true;
                continue;
            }
            let uploaded = file_name.ends_with(UPLOADED_SUFFIX);
            if !uploaded && !file_name.ends_with(PLANNED_SUFFIX) {
                tracing::warn!(path = %path.display(), "ignoring a file that is not a manifest");
                continue;
            }
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            let manifest = match Manifest::decode(&bytes) {
                Ok(manifest) => manifest,
                Err(reason) => {
                    tracing::error!(
                        path = %path.display(),
                        %reason,
                        "an object manifest is damaged: its batches will be combined again, under a new name (if its object was uploaded, those records may appear twice)"
                    );
                    self.quarantine_from(
                        &self.objects_handle,
                        &self.objects_dir,
                        &file_name,
                        &Corruption::BadManifest { reason },
                    )?;
                    continue;
                }
            };
            let sequences: Vec<u64> = manifest
                .batch_files
                .iter()
                .filter_map(|f| by_file.get(f).copied())
                .collect();
            let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
            let batches: Vec<SpooledBatch> = sequences
                .iter()
                .filter(|s| state.unassigned.contains(s))
                .filter_map(|s| state.by_sequence.get(s).cloned())
                .collect();
            if uploaded {
                self.remove_batches(&batches)?;
                fs::remove_file(&path).map_err(io_err(&path))?;
                changed = true;
                retired += 1;
                continue;
            }
            if batches.len() < manifest.batch_files.len() {
                tracing::warn!(
                    object = %manifest.object_name,
                    listed = manifest.batch_files.len(),
                    present = batches.len(),
                    "batches of a planned object are missing from the spool (quarantined?); the object is built from the rest"
                );
            }
            if batches.is_empty() {
                fs::remove_file(&path).map_err(io_err(&path))?;
                changed = true;
                continue;
            }
            for batch in &batches {
                state.unassigned.remove(&batch.sequence);
            }
            let id = state.next_object;
            state.next_object += 1;
            state.unclaimed_objects.insert(id);
            state.objects.insert(
                id,
                PlannedObject {
                    id,
                    object_name: manifest.object_name,
                    manifest: file_name,
                    batches,
                },
            );
            replanned += 1;
        }
        if changed {
            self.objects_handle.sync_all().map_err(io_err(&dir))?;
        }
        if replanned + retired > 0 {
            tracing::info!(
                planned_objects = replanned,
                uploaded_objects_retired = retired,
                "spool objects recovered: planned objects are rebuilt under the names they were given"
            );
        }
        Ok(())
    }
}
