//! What can go wrong with the spool, as the caller sees it: [`SpoolError::Full`] is the
//! one the daemon expects (count the batch's packets as `spool_full` drops and carry on);
//! every other variant names the file or directory concerned.

use std::path::{Path, PathBuf};

use super::LOCK_FILE;
use super::format::Corruption;
use super::name::NameError;

/// Why the spool refused a batch for space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullCause {
    /// The configured byte limit would be exceeded.
    Limit,
    /// The file system is out of space (`ENOSPC`).
    NoSpace,
    /// The user's disk quota is exhausted (`EDQUOT`).
    Quota,
}

impl std::fmt::Display for FullCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Limit => "the spool byte limit would be exceeded",
            Self::NoSpace => "the file system is out of space (ENOSPC)",
            Self::Quota => "the disk quota is exhausted (EDQUOT)",
        })
    }
}

/// What can go wrong with the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The batch was refused for space: count it as dropped (`spool_full`) and go on.
    #[error(
        "spool {} is full: a {bytes}-byte batch refused with {spooled} of {limit} bytes spooled ({cause})",
        dir.display()
    )]
    Full {
        /// The spool directory.
        dir: PathBuf,
        /// Size of the refused file (payload + trailer).
        bytes: u64,
        /// The configured limit.
        limit: u64,
        /// Bytes spooled (and being committed) when it was refused.
        spooled: u64,
        /// Limit, or the file system's own refusal.
        cause: FullCause,
    },
    /// The spool directory cannot be created or written.
    #[error("spool directory {} is not writable: {source}", dir.display())]
    Unwritable {
        /// The spool directory.
        dir: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Another process (or another `Spool` in this one) has the spool open.
    #[error("spool directory {} is in use by another process (lock {} held)", dir.display(), LOCK_FILE)]
    Locked {
        /// The spool directory.
        dir: PathBuf,
    },
    /// The object name cannot be spooled.
    #[error("cannot spool object {name:?}: {problem}")]
    InvalidName {
        /// The object name.
        name: String,
        /// The rule it breaks.
        problem: NameError,
    },
    /// A batch of that object name is already spooled (names are unique per batch).
    #[error("a batch named {name:?} is already spooled")]
    Duplicate {
        /// The object name.
        name: String,
    },
    /// No batch of that name is spooled.
    #[error("no batch named {name:?} is spooled")]
    NotSpooled {
        /// The object name.
        name: String,
    },
    /// A spooled file is not a complete batch; it has been moved to the quarantine.
    #[error("spool file {} is corrupt ({problem}); moved to {}", path.display(), quarantined.display())]
    Corrupt {
        /// Where it was.
        path: PathBuf,
        /// Where it is now.
        quarantined: PathBuf,
        /// What is wrong with it.
        problem: Corruption,
    },
    /// Reading, writing, renaming, removing or syncing a spool file failed.
    #[error("spool I/O on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

/// Wraps an I/O error with the path it concerns.
pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}
