//! Temporary working directories for tests and tools, removed on drop.
//!
//! Tests of the `sluice` package can only use its declared dev-dependencies, of which the
//! kit is one; this module gives them temporary directories without another dependency.
//! Names start with `sluice-<purpose>-` so a leftover (after SIGKILL) says where it came
//! from.

pub use tempfile::TempDir;

/// A new empty directory under the system temporary directory, deleted when dropped.
///
/// # Errors
/// When the directory cannot be created.
pub fn tempdir(purpose: &str) -> std::io::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("sluice-{purpose}-"))
        .tempdir()
}

#[cfg(test)]
mod tests {
    #[test]
    fn directory_is_named_for_its_purpose_and_removed_on_drop() {
        let dir = super::tempdir("unit").expect("tempdir");
        let path = dir.path().to_owned();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("sluice-unit-"), "{name}");
        assert!(path.is_dir());
        drop(dir);
        assert!(!path.exists());
    }
}
