//! The local directory sink: `DIR/<stream>/dt=YYYY-MM-DD/hour=HH/<host>-<worker>-<sequence>.<ext>`
//! (`ext` from the format: `ndjson.zst` by default, `ndjson.gz`, `csv.gz`, `parquet`),
//! one directory per stream (`raw`, and one per `[[decoder]]`), so that each is a table
//! of its own with hive partitioning on `dt` and `hour`.
//!
//! Each file is written under a dot-prefixed temporary name, fsynced, renamed into place
//! without replacing anything (`renameat2(RENAME_NOREPLACE)`), and its directory fsynced:
//! a reader never sees a partial file, a crash never leaves a half-written one under a
//! final name, and a restart never overwrites the files of an earlier run (the sequence
//! number moves past any name that is taken).

use std::{
    ffi::CString,
    fs::{self, File},
    io::Write as _,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use super::SinkError;
use crate::{
    config::SinkConfig,
    pipeline::batch::SealedBatch,
    record::timestamp::{Civil, push_date, push_two_digits},
};

/// Writes batches as files under one directory.
#[derive(Debug)]
pub struct DirectorySink {
    root: PathBuf,
    host: String,
    streams: Vec<String>,
    next_sequence: std::collections::HashMap<(usize, usize), u64>,
}

impl DirectorySink {
    /// Creates the directory if needed and checks that it is writable; `streams` are the
    /// stream names, by stream index.
    pub fn open(config: &SinkConfig, streams: Vec<String>) -> Result<Self, SinkError> {
        let root = config.path.clone();
        let unwritable = |source| SinkError::Unwritable {
            path: root.clone(),
            source,
        };
        fs::create_dir_all(&root).map_err(unwritable)?;
        let probe = root.join(format!(".sluice-probe-{}", std::process::id()));
        File::create(&probe).map_err(unwritable)?;
        fs::remove_file(&probe).map_err(unwritable)?;
        let host = if config.host.is_empty() {
            hostname()
        } else {
            config.host.clone()
        };
        Ok(Self {
            root,
            host,
            streams,
            next_sequence: std::collections::HashMap::new(),
        })
    }

    /// The name of stream `index`.
    pub fn stream_name(&self, index: usize) -> &str {
        self.streams.get(index).map_or("unknown", String::as_str)
    }

    /// The `<host>` part of file names.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Writes one batch durably; returns the final path.
    pub fn write(&mut self, batch: &SealedBatch) -> Result<PathBuf, SinkError> {
        let dir = self.partition_dir(batch.stream, batch.first_received_at);
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|source| SinkError::Write {
                path: dir.clone(),
                source,
            })?;
            // Make the new partition directories themselves durable, up to the root.
            let mut parent = dir.parent();
            while let Some(d) = parent {
                sync_dir(d)?;
                if d == self.root {
                    break;
                }
                parent = d.parent();
            }
        }
        let stem = format!("{}-{}", self.host, batch.worker);
        let temp = dir.join(format!(".{stem}.{}.tmp", std::process::id()));
        write_synced(&temp, &batch.bytes)?;
        // Bounded: a directory cannot hold more names than this.
        let next = self
            .next_sequence
            .entry((batch.stream, batch.worker))
            .or_insert(0);
        for _ in 0..1_000_000 {
            let sequence = *next;
            *next += 1;
            let target = dir.join(format!("{stem}-{sequence:08}.{}", batch.extension));
            match rename_noreplace(&temp, &target) {
                Ok(()) => {
                    sync_dir(&dir)?;
                    return Ok(target);
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(source) => {
                    let _ = fs::remove_file(&temp);
                    return Err(SinkError::Write {
                        path: target,
                        source,
                    });
                }
            }
        }
        let _ = fs::remove_file(&temp);
        Err(SinkError::Write {
            path: dir,
            source: std::io::Error::other("no free sequence number"),
        })
    }

    fn partition_dir(&self, stream: usize, micros: i64) -> PathBuf {
        let c = Civil::from_unix_seconds(micros.div_euclid(1_000_000));
        let mut name = b"dt=".to_vec();
        push_date(&mut name, &c);
        let mut hour = b"hour=".to_vec();
        push_two_digits(&mut hour, c.hour);
        let stream = self.streams.get(stream).map_or("unknown", String::as_str);
        self.root
            .join(stream)
            .join(String::from_utf8_lossy(&name).as_ref())
            .join(String::from_utf8_lossy(&hour).as_ref())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    let err = |source| SinkError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = File::create(path).map_err(err)?;
    let result = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(source) = result {
        let _ = fs::remove_file(path);
        return Err(err(source));
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| SinkError::Write {
            path: dir.to_owned(),
            source,
        })
}

fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    let from = CString::new(from.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let to = CString::new(to.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The machine's hostname, or `localhost` when it cannot be read.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_owned();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).replace('/', "_");
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(worker: usize, at: i64, bytes: &[u8]) -> SealedBatch {
        SealedBatch {
            stream: 0,
            worker,
            records: 1,
            packets: 1,
            first_received_at: at,
            uncompressed_bytes: bytes.len(),
            null_overflows: 0,
            extension: "ndjson.zst",
            bytes: bytes.to_vec(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-sink-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn writes_partitioned_names_and_never_overwrites() -> Result<(), Box<dyn std::error::Error>> {
        let root = temp_dir("names");
        let config = SinkConfig {
            path: root.clone(),
            host: "vm1".into(),
            ..SinkConfig::default()
        };
        let at = 1_795_328_725_123_456; // 2026-11-22T06:25:25Z
        let streams = || vec!["raw".to_owned()];
        let mut sink = DirectorySink::open(&config, streams())?;
        let a = sink.write(&batch(0, at, b"a"))?;
        let b = sink.write(&batch(0, at, b"b"))?;
        let c = sink.write(&batch(1, at, b"c"))?;
        let dir = root.join("raw/dt=2026-11-22/hour=06");
        assert_eq!(a, dir.join("vm1-0-00000000.ndjson.zst"));
        assert_eq!(b, dir.join("vm1-0-00000001.ndjson.zst"));
        assert_eq!(c, dir.join("vm1-1-00000000.ndjson.zst"));
        // A restarted sink moves past the names already taken.
        let mut again = DirectorySink::open(&config, streams())?;
        let d = again.write(&batch(0, at, b"d"))?;
        assert_eq!(d, dir.join("vm1-0-00000002.ndjson.zst"));
        assert_eq!(fs::read(&a)?, b"a");
        let mut names: Vec<_> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        assert_eq!(names.len(), 4, "no temporaries left: {names:?}");
        fs::remove_dir_all(&root)?;
        Ok(())
    }

    #[test]
    fn unwritable_directory_is_refused_at_open() {
        let config = SinkConfig {
            path: PathBuf::from("/proc/sluice-cannot-exist"),
            ..SinkConfig::default()
        };
        let err = DirectorySink::open(&config, vec![])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("sink.path /proc/sluice-cannot-exist: cannot write there"),
            "{err}"
        );
    }
}
