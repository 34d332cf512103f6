//! Where the records go, and what that is: a disk (the default, `/var/tmp`, where an
//! operator's records would be; the daemon fsyncs every batch file, so the disk is part
//! of what is measured) or memory (`/dev/shm`, the `(tmpfs)` rows).
//!
//! The filesystem's kind comes from statfs(2) (`f_type`), which is what tells tmpfs and
//! ramfs apart from a disk; its name and device from `/proc/self/mountinfo` (statfs
//! cannot tell ext4 from ext2), for the report's "records written to /var/tmp (ext4 on
//! /dev/vda)".

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// The default `--records-dir`: a disk on any ordinary installation.
pub const DEFAULT_RECORDS_DIR: &str = "/var/tmp";
/// Where the `(tmpfs)` rows write their records.
pub const TMPFS_RECORDS_DIR: &str = "/dev/shm";

/// `TMPFS_MAGIC` of linux/magic.h.
pub const TMPFS_MAGIC: u32 = 0x0102_1994;
/// `RAMFS_MAGIC`.
pub const RAMFS_MAGIC: u32 = 0x8584_58f6;

/// The filesystem a directory is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Medium {
    /// The directory (as given).
    pub path: PathBuf,
    /// statfs(2)'s `f_type`.
    pub magic: u32,
    /// Its type as the mount table names it (`ext4`), else as [`fs_type_name`] does.
    pub fs_type: String,
    /// The mount's source (`/dev/vda`), when the mount table has it.
    pub source: Option<String>,
}

/// The name of a statfs `f_type`, for the filesystems a records directory is likely on.
pub fn fs_type_name(magic: u32) -> Option<&'static str> {
    Some(match magic {
        TMPFS_MAGIC => "tmpfs",
        RAMFS_MAGIC => "ramfs",
        0xEF53 => "ext2/ext3/ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0xF2F5_2010 => "f2fs",
        0x2FC1_2FC1 => "zfs",
        0x6969 => "nfs",
        0x794C_7630 => "overlayfs",
        0x6573_5546 => "fuse",
        0x0102_1997 => "9p",
        0x7371_7368 => "squashfs",
        _ => return None,
    })
}

/// True for the filesystems that keep files in memory.
pub fn in_memory(magic: u32) -> bool {
    matches!(magic, TMPFS_MAGIC | RAMFS_MAGIC)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(octal) = bytes.get(i + 1..i + 4)
            && let Ok(text) = std::str::from_utf8(octal)
            && let Ok(byte) = u8::from_str_radix(text, 8)
        {
            out.push(byte);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The (type, source) of the mount `path` (absolute, symlinks resolved) is on, from
/// `/proc/self/mountinfo` text: the longest mount point that contains it, the last one
/// listed where several are mounted on the same point (the one on top).
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<(String, String)> {
    let mut best: Option<(usize, String, String)> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional...] - type source super
        let Some((head, tail)) = line.split_once(" - ") else {
            continue;
        };
        let mut tail = tail.split(' ');
        let (Some(point), Some(fs_type), Some(source)) =
            (head.split(' ').nth(4), tail.next(), tail.next())
        else {
            continue;
        };
        let point = PathBuf::from(unescape(point));
        if !path.starts_with(&point) {
            continue;
        }
        let depth = point.components().count();
        if best.as_ref().is_none_or(|(d, _, _)| depth >= *d) {
            best = Some((depth, unescape(fs_type), unescape(source)));
        }
    }
    best.map(|(_, fs_type, source)| (fs_type, source))
}

impl Medium {
    /// statfs(2) of `path` and its line of the mount table.
    ///
    /// # Errors
    /// When `path` does not exist or statfs fails.
    pub fn of(path: &Path) -> std::io::Result<Medium> {
        let resolved = path.canonicalize()?;
        let c_path = CString::new(resolved.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("path with a NUL byte"))?;
        // SAFETY: statfs(2) fills the zeroed struct; the path is NUL-terminated.
        let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above; both pointers are valid for the call.
        if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // f_type is a 32-bit magic in a word that is signed on some ABIs.
        let magic = (stat.f_type as u64 & 0xFFFF_FFFF) as u32;
        let mount = std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|text| mount_of(&text, &resolved));
        let fs_type = match &mount {
            Some((fs_type, _)) => fs_type.clone(),
            None => fs_type_name(magic).map_or_else(|| format!("{magic:#x}"), str::to_owned),
        };
        Ok(Medium {
            path: path.to_owned(),
            magic,
            fs_type,
            source: mount.map(|(_, source)| source),
        })
    }

    /// True on tmpfs or ramfs.
    pub fn in_memory(&self) -> bool {
        in_memory(self.magic)
    }

    /// `/var/tmp (ext4 on /dev/vda)`; the source is left out where it names no device
    /// (`tmpfs` for tmpfs).
    pub fn describe(&self) -> String {
        match &self.source {
            Some(source) if source != &self.fs_type && source != "none" => {
                format!("{} ({} on {source})", self.path.display(), self.fs_type)
            }
            _ => format!("{} ({})", self.path.display(), self.fs_type),
        }
    }
}

/// Why `--records-dir` is refused: records in memory when the user did not ask for
/// that (the default landed on tmpfs). `None` when it may be used.
pub fn refusal(medium: &Medium, chosen_explicitly: bool) -> Option<String> {
    (medium.in_memory() && !chosen_explicitly).then(|| {
        format!(
            "the default --records-dir {} is on {}: the records would be kept in memory, and \
             the benchmark is meant to write them to a disk as an operator's daemon does; pass \
             --records-dir with a directory on a disk (or name this one explicitly to measure \
             {} anyway)",
            medium.path.display(),
            medium.fs_type,
            medium.fs_type
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12335016k
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683792k
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
30 25 0:27 / /dev/shm rw,relatime - tmpfs shm rw,size=24683792k
45 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw
46 27 8:1 / /mnt/my\\040disk rw,relatime - xfs /dev/sdb1 rw
";

    #[test]
    fn statfs_types_are_named_and_memory_is_told_apart() {
        assert_eq!(fs_type_name(TMPFS_MAGIC), Some("tmpfs"));
        assert_eq!(fs_type_name(RAMFS_MAGIC), Some("ramfs"));
        assert_eq!(fs_type_name(0xEF53), Some("ext2/ext3/ext4"));
        assert_eq!(fs_type_name(0x5846_5342), Some("xfs"));
        assert_eq!(fs_type_name(0x1234), None);
        assert!(in_memory(TMPFS_MAGIC));
        assert!(in_memory(RAMFS_MAGIC));
        assert!(!in_memory(0xEF53));
    }

    #[test]
    fn the_mount_is_the_longest_point_and_the_top_one() {
        let mount = |p: &str| mount_of(MOUNTINFO, Path::new(p));
        assert_eq!(mount("/var/tmp"), Some(("ext4".into(), "/dev/vda".into())));
        assert_eq!(
            mount("/dev/shm/sluice-bench-x"),
            Some(("tmpfs".into(), "shm".into()))
        );
        assert_eq!(
            mount("/dev/null"),
            Some(("devtmpfs".into(), "devtmpfs".into()))
        );
        assert_eq!(
            mount("/mnt/my disk/records"),
            Some(("xfs".into(), "/dev/sdb1".into()))
        );
        assert_eq!(mount_of("", Path::new("/var/tmp")), None);
    }

    #[test]
    fn the_default_is_refused_on_tmpfs_but_an_explicit_choice_is_not() {
        let disk = Medium {
            path: "/var/tmp".into(),
            magic: 0xEF53,
            fs_type: "ext4".into(),
            source: Some("/dev/vda".into()),
        };
        assert_eq!(disk.describe(), "/var/tmp (ext4 on /dev/vda)");
        assert_eq!(refusal(&disk, false), None);
        let shm = Medium {
            path: "/var/tmp".into(),
            magic: TMPFS_MAGIC,
            fs_type: "tmpfs".into(),
            source: Some("tmpfs".into()),
        };
        assert_eq!(shm.describe(), "/var/tmp (tmpfs)");
        let refused = refusal(&shm, false).expect("refused");
        assert!(
            refused.starts_with("the default --records-dir /var/tmp is on tmpfs:"),
            "{refused}"
        );
        assert_eq!(refusal(&shm, true), None);
    }

    #[test]
    fn a_real_directory_is_described() {
        let medium = Medium::of(Path::new("/")).expect("statfs /");
        assert!(!medium.fs_type.is_empty());
        assert!(Medium::of(Path::new("/no/such/dir")).is_err());
    }
}
