//! Where the VM tests keep what is expensive to make: `$SLUICE_VM_CACHE`, else
//! `$HOME/.cache/sluice-vm` (outside the clone, like the cargo target directory).
//!
//! An entry is a directory built under a temporary name and renamed into place, so a
//! reader never sees half of one; it carries a stamp file holding its recipe version and
//! is rebuilt when the stamp is missing or differs. One lock file serialises builders
//! (two `cargo xtask` processes asking for the same entry build it once).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Overrides the cache directory.
pub const CACHE_ENV: &str = "SLUICE_VM_CACHE";

/// The file in each entry that holds its recipe version.
const STAMP: &str = ".sluice-vm-recipe";

/// The cache directory (not created).
///
/// # Errors
/// When neither `SLUICE_VM_CACHE` nor `HOME` is set.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("neither SLUICE_VM_CACHE nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache/sluice-vm"))
}

/// Whether `entry` is complete and was built by `recipe`.
pub fn is_fresh(entry: &Path, recipe: &str) -> bool {
    std::fs::read_to_string(entry.join(STAMP)).is_ok_and(|stamp| stamp.trim() == recipe)
}

/// Returns `cache/name`, first building it with `build(temp_dir)` when it is missing or
/// stale. `build` fills a fresh temporary directory, which is stamped and renamed into place
/// only when it succeeds (a failed build leaves the old entry, if any, untouched).
///
/// # Errors
/// When the cache cannot be locked or `build` fails.
pub fn ensure_entry(
    name: &str,
    recipe: &str,
    build: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    ensure_entry_in(&cache_dir()?, name, recipe, build)
}

/// [`ensure_entry`] in the cache directory `dir`.
///
/// # Errors
/// As [`ensure_entry`].
pub fn ensure_entry_in(
    dir: &Path,
    name: &str,
    recipe: &str,
    build: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    let entry = dir.join(name);
    if is_fresh(&entry, recipe) {
        return Ok(entry);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock_path = dir.join(format!(".{name}.lock"));
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    // Another process may have built it while we waited for the lock.
    if is_fresh(&entry, recipe) {
        return Ok(entry);
    }
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    remove_dir_if_present(&temp)?;
    std::fs::create_dir_all(&temp).with_context(|| format!("creating {}", temp.display()))?;
    if let Err(e) = build(&temp) {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(e.context(format!("building the VM cache entry {}", entry.display())));
    }
    std::fs::write(temp.join(STAMP), format!("{recipe}\n"))
        .with_context(|| format!("stamping {}", temp.display()))?;
    let old = dir.join(format!(".{name}.old-{}", std::process::id()));
    if entry.exists() {
        std::fs::rename(&entry, &old)
            .with_context(|| format!("moving the stale {} aside", entry.display()))?;
    }
    std::fs::rename(&temp, &entry)
        .with_context(|| format!("renaming {} to {}", temp.display(), entry.display()))?;
    remove_dir_if_present(&old)?;
    Ok(entry)
}

fn remove_dir_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_built_once_and_rebuilt_when_its_recipe_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut builds = 0;
        let entry = ensure_entry_in(dir.path(), "thing", "1", |tmp| {
            builds += 1;
            std::fs::write(tmp.join("file"), "one")?;
            Ok(())
        })
        .expect("first build");
        assert_eq!(entry, dir.path().join("thing"));
        ensure_entry_in(dir.path(), "thing", "1", |_| panic!("fresh: no rebuild")).expect("cached");
        let failed = ensure_entry_in(dir.path(), "thing", "2", |_| anyhow::bail!("network down"));
        assert!(failed.is_err());
        assert_eq!(
            std::fs::read_to_string(entry.join("file")).expect("old kept"),
            "one"
        );
        ensure_entry_in(dir.path(), "thing", "2", |tmp| {
            builds += 1;
            std::fs::write(tmp.join("file"), "two")?;
            Ok(())
        })
        .expect("rebuild");
        assert_eq!(builds, 2);
        assert_eq!(
            std::fs::read_to_string(entry.join("file")).expect("new"),
            "two"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-") || n.contains(".old-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
