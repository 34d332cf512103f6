//! A VM run's own disk: the cached rootfs copied into a sparse ext4 image with
//! `mkfs.ext4 -d` (no loop mount, no root-only mount tricks), the run's files added with
//! `debugfs -w`, and files read back after power-off with `debugfs -R rdump`.
//!
//! debugfs reports most failures on stderr with exit status 0, so every write is checked
//! by reading the files back.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cmd;

/// Size of a run's sparse image: the rootfs (~1.1 GB) plus room for the package and
/// records.
const IMAGE_SIZE: &str = "3G";

/// A file to put into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFile {
    /// The host file `source` at the absolute guest path `dest` (mode and owner as
    /// debugfs copies them: the source's mode, root).
    Copy {
        /// Host path.
        source: PathBuf,
        /// Guest path.
        dest: String,
    },
    /// A symbolic link at `link` pointing to `target`.
    Symlink {
        /// Guest path of the link.
        link: String,
        /// What it points to.
        target: String,
    },
}

/// A run's disk image.
#[derive(Debug)]
pub struct DiskImage {
    path: PathBuf,
}

impl DiskImage {
    /// Creates `path` from `rootfs` and adds `files` (their parent directories are created).
    ///
    /// # Errors
    /// When mkfs or debugfs fails, or a file is not there afterwards.
    pub fn create(path: &Path, rootfs: &Path, files: &[GuestFile]) -> anyhow::Result<DiskImage> {
        cmd::stdout(Command::new("truncate").args(["-s", IMAGE_SIZE]).arg(path))?;
        cmd::stdout(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-d"])
                .arg(rootfs)
                .arg(path),
        )
        .with_context(|| format!("copying {} into {}", rootfs.display(), path.display()))?;
        let image = DiskImage {
            path: path.to_owned(),
        };
        image.add(files)?;
        Ok(image)
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds `files` (with missing parent directories) to the image.
    ///
    /// # Errors
    /// When debugfs fails or a file is missing afterwards.
    pub fn add(&self, files: &[GuestFile]) -> anyhow::Result<()> {
        let existing = |dir: &str| self.exists(dir);
        let script = debugfs_script(files, existing)?;
        let script_path = self.path.with_extension("debugfs");
        std::fs::write(&script_path, script)
            .with_context(|| format!("writing {}", script_path.display()))?;
        cmd::stdout(
            Command::new("debugfs")
                .arg("-w")
                .arg("-f")
                .arg(&script_path)
                .arg(&self.path),
        )?;
        for file in files {
            let dest = match file {
                GuestFile::Copy { dest, .. } => dest,
                GuestFile::Symlink { link, .. } => link,
            };
            if !self.exists(dest) {
                bail!("debugfs did not create {dest} in {}", self.path.display());
            }
        }
        Ok(())
    }

    /// Replays the ext4 journal of an image whose VM was killed, as the guest kernel would
    /// at its next mount. Needed before [`DiskImage::add`] after a power cut: debugfs
    /// writes beside the journal, and a later replay would put back the old blocks.
    ///
    /// # Errors
    /// When e2fsck cannot run or reports an uncorrected error (exit status above 1).
    pub fn replay_journal(&self) -> anyhow::Result<()> {
        let out = cmd::output(
            Command::new("e2fsck")
                .args(["-y", "-E", "journal_only"])
                .arg(&self.path),
        )?;
        match out.status.code() {
            Some(0 | 1) => Ok(()),
            _ => bail!(
                "e2fsck -E journal_only {} failed ({}): {}",
                self.path.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        }
    }

    /// Whether `guest_path` exists in the image.
    pub fn exists(&self, guest_path: &str) -> bool {
        cmd::output(
            Command::new("debugfs")
                .arg("-R")
                .arg(format!("stat {guest_path}"))
                .arg(&self.path),
        )
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("Inode:"))
    }

    /// Copies the guest directory `guest_dir` out to the host directory `dest` (created),
    /// so that `dest/<basename of guest_dir>` holds it. Call only while no VM runs on it.
    ///
    /// # Errors
    /// When debugfs fails or the directory is not in the image.
    pub fn rdump(&self, guest_dir: &str, dest: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
        if !self.exists(guest_dir) {
            bail!("{guest_dir} is not in {}", self.path.display());
        }
        cmd::stdout(
            Command::new("debugfs")
                .arg("-R")
                .arg(format!("rdump {guest_dir} {}", dest.display()))
                .arg(&self.path),
        )?;
        let name = Path::new(guest_dir).file_name().context("rdump of /")?;
        Ok(dest.join(name))
    }
}

/// The debugfs commands that add `files`: `mkdir` for each missing parent (outermost
/// first, once), then `write` or `symlink`.
///
/// # Errors
/// When a destination is not an absolute path.
pub fn debugfs_script(
    files: &[GuestFile],
    exists: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let mut script = String::new();
    let mut made: Vec<String> = Vec::new();
    for file in files {
        let dest = match file {
            GuestFile::Copy { dest, .. } => dest,
            GuestFile::Symlink { link, .. } => link,
        };
        if !dest.starts_with('/') || dest.contains(char::is_whitespace) {
            bail!("guest path {dest:?} must be absolute, without spaces");
        }
        let mut parent = String::new();
        let parts: Vec<&str> = dest.split('/').filter(|p| !p.is_empty()).collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            parent.push('/');
            parent.push_str(part);
            if !made.contains(&parent) && !exists(&parent) {
                let _ = writeln!(script, "mkdir {parent}");
            }
            made.push(parent.clone());
        }
        match file {
            GuestFile::Copy { source, dest } => {
                let _ = writeln!(script, "write {} {dest}", source.display());
            }
            GuestFile::Symlink { link, target } => {
                let _ = writeln!(script, "symlink {link} {target}");
            }
        }
    }
    Ok(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_makes_missing_parents_once_then_writes_and_links() {
        let files = [
            GuestFile::Copy {
                source: "/tmp/run/sluice.deb".into(),
                dest: "/root/sluice-vm/sluice.deb".into(),
            },
            GuestFile::Copy {
                source: "/tmp/run/sluice.toml".into(),
                dest: "/root/sluice-vm/sluice.toml".into(),
            },
            GuestFile::Symlink {
                link: "/etc/systemd/system/multi-user.target.wants/p.service".into(),
                target: "/etc/systemd/system/p.service".into(),
            },
        ];
        let existing = ["/root", "/etc", "/etc/systemd", "/etc/systemd/system"];
        let script = debugfs_script(&files, |d| existing.contains(&d)).expect("script");
        assert_eq!(
            script,
            "mkdir /root/sluice-vm\n\
             write /tmp/run/sluice.deb /root/sluice-vm/sluice.deb\n\
             write /tmp/run/sluice.toml /root/sluice-vm/sluice.toml\n\
             mkdir /etc/systemd/system/multi-user.target.wants\n\
             symlink /etc/systemd/system/multi-user.target.wants/p.service /etc/systemd/system/p.service\n"
        );
        let relative = [GuestFile::Copy {
            source: "/x".into(),
            dest: "etc/x".into(),
        }];
        assert!(debugfs_script(&relative, |_| true).is_err());
    }
}
