//! The two file-system operations the spool's guarantees rest on: a rename that never
//! replaces (`renameat2(RENAME_NOREPLACE)`, with `linkat` + `unlinkat` where a file system
//! lacks the flag), and the mapping of out-of-space errors to [`FullCause`].

use std::ffi::CString;
use std::fs::File;
use std::os::unix::io::AsRawFd as _;
use std::path::Path;

use super::{FullCause, SpoolError};

/// A file name as the `*at` calls take it.
pub(super) fn c_name(name: &str) -> Result<CString, std::io::Error> {
    CString::new(name).map_err(std::io::Error::other)
}

/// Why writing a batch failed.
pub(super) enum WriteFailure {
    Full(FullCause),
    Exists,
    Io(SpoolError),
}

impl WriteFailure {
    pub(super) fn from_io(path: &Path, source: std::io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::ENOSPC) => Self::Full(FullCause::NoSpace),
            Some(libc::EDQUOT) => Self::Full(FullCause::Quota),
            _ => Self::Io(SpoolError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

/// `renameat2(RENAME_NOREPLACE)`, or `linkat` + `unlinkat` where the file system does not
/// support the flag; both fail with `EEXIST` instead of replacing.
pub(super) fn rename_noreplace(
    from_dir: &File,
    from: &CString,
    to_dir: &File,
    to: &CString,
) -> std::io::Result<()> {
    // SAFETY: valid directory descriptors and NUL-terminated names that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if !matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        return Err(err);
    }
    // SAFETY: as above.
    if unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            0,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::unlinkat(from_dir.as_raw_fd(), from.as_ptr(), 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
