//! The spool on file systems that refuse: a tiny tmpfs (out of space: `ENOSPC` must be
//! `SpoolError::Full`, nothing half-written left) and a read-only mount (one clear
//! `Unwritable` error naming the directory).
//!
//! Mounting needs root; without it these tests skip (and fail under `CI=true`). Each
//! mount is undone on drop (lazy unmount), also when the test fails.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic here is a failed test"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_testkit::privilege;
use sluice_upload::{FullCause, Spool, SpoolError};

/// A tmpfs mounted for one test, unmounted on drop.
struct TmpfsMount(PathBuf);

impl TmpfsMount {
    fn new(path: &Path, options: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount -t tmpfs -o {options} {}",
            path.display()
        );
        Self(path.to_owned())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn out_of_disk_is_spool_full_and_leaves_nothing_half_written() {
    const TEST: &str = "enospc";
    if !privilege::require_root(TEST) || !privilege::require_tool(TEST, "mount") {
        return;
    }
    let dir = support::scratch(TEST);
    let mount = TmpfsMount::new(&dir.path().join("tiny"), "size=256k");
    let spool = Spool::open(mount.0.join("spool"), 1 << 30).unwrap();
    let mut accepted = Vec::new();
    let mut refusal = None;
    for i in 0..64 {
        let name = format!("b/{i}");
        match spool.commit(&name, &support::batch_bytes(i, 40_000)) {
            Ok(_) => accepted.push(name),
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    match refusal {
        Some(SpoolError::Full {
            cause,
            bytes,
            limit,
            ..
        }) => {
            assert_eq!((cause, bytes, limit), (FullCause::NoSpace, 40_032, 1 << 30));
        }
        other => panic!("expected Full(NoSpace), got {other:?}"),
    }
    // 256 KiB hold a handful of 40 KB batches; the exact count depends on tmpfs
    // accounting, but every accepted one is intact and nothing else is there.
    assert!((4..=6).contains(&accepted.len()), "{accepted:?}");
    assert_eq!(spool.stats().refused, 1);
    let names: Vec<String> = spool.pending().into_iter().map(|b| b.object_name).collect();
    assert_eq!(names, accepted);
    for (i, batch) in spool.pending().iter().enumerate() {
        assert_eq!(spool.read(batch).unwrap(), support::batch_bytes(i, 40_000));
    }
    let temporaries = std::fs::read_dir(spool.dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .count();
    assert_eq!(temporaries, 0);
    // Space freed by an upload makes room again.
    spool.remove("b/0").unwrap();
    spool
        .commit("b/again", &support::batch_bytes(99, 40_000))
        .unwrap();
    drop(spool);
    drop(mount);
}

#[test]
fn a_read_only_spool_directory_is_one_clear_error() {
    const TEST: &str = "read_only";
    if !privilege::require_root(TEST) || !privilege::require_tool(TEST, "mount") {
        return;
    }
    let dir = support::scratch(TEST);
    let mount = TmpfsMount::new(&dir.path().join("ro"), "ro,size=64k");
    let target = mount.0.join("spool");
    match Spool::open(&target, 1 << 20) {
        Err(e @ SpoolError::Unwritable { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "spool directory {} is not writable: Read-only file system (os error 30)",
                target.display()
            )
        ),
        other => panic!("{other:?}"),
    }
    // A read-only directory that exists already: the same error.
    let mount_root = Spool::open(&mount.0, 1 << 20).unwrap_err();
    assert!(matches!(mount_root, SpoolError::Unwritable { ref dir, .. } if *dir == mount.0));
}
