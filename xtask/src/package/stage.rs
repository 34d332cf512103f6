//! The package's file tree: which file goes where ([`files`], from the repository and
//! the binary, unit tested) and writing it into a staging directory for `dpkg-deb`
//! ([`stage`]).
//!
//! The unit is `deploy/sluice.service` as it is at build time, its ExecStart rewritten
//! by the installer's own [`render_unit`]; the config is the example config, shipped as a
//! conffile. The final paths are those of a Debian package, not of `cargo xtask install`
//! (`/usr/bin`, the unit under `/lib/systemd/system` as bookworm's packages still ship it).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::install::{CONFIG_PATH, EXAMPLE_CONFIG, UNIT_TEMPLATE, render_unit};

/// Final path of the binary.
pub const BINARY_PATH: &str = "/usr/bin/sluice";
/// Final path of the unit.
pub const UNIT_PATH: &str = "/lib/systemd/system/sluice.service";
/// Documentation: README.md, docs/*.md (under `docs/`, so README's links work), the
/// copyright file and the Debian changelog.
pub const DOC_DIR: &str = "/usr/share/doc/sluice";
/// The Prometheus and Grafana files of `deploy/`, for the operator to copy.
pub const SHARE_DIR: &str = "/usr/share/sluice";
/// The manual page (gzipped when staged).
pub const MAN_PAGE_PATH: &str = "/usr/share/man/man8/sluice.8.gz";
/// Lintian reads a package's overrides from here.
pub const LINTIAN_OVERRIDES_PATH: &str = "/usr/share/lintian/overrides/sluice";
/// The package's conffiles: dpkg keeps an edited one on upgrade, removes it on purge.
pub const CONFFILES: [&str; 1] = [CONFIG_PATH];

/// Lintian tags the package cannot avoid, each with its reason (shipped in the package).
const LINTIAN_OVERRIDES: &str = include_str!("debian/lintian-overrides");

/// Where a file's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file on disk, copied.
    Copy(PathBuf),
    /// Generated text.
    Text(String),
}

/// One file of the package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageFile {
    /// Absolute path on the installed system.
    pub path: String,
    pub source: Source,
    pub mode: u32,
}

impl PackageFile {
    fn copy(path: String, source: PathBuf, mode: u32) -> PackageFile {
        PackageFile {
            path,
            source: Source::Copy(source),
            mode,
        }
    }

    fn text(path: String, text: String) -> PackageFile {
        PackageFile {
            path,
            source: Source::Text(text),
            mode: 0o644,
        }
    }
}

/// The regular files directly in `dir` whose name ends with `suffix`, sorted.
fn files_in(dir: &Path, suffix: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && entry.file_name().to_string_lossy().ends_with(suffix) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Every file of the package except the Debian changelog (gzipped by the caller) and
/// the DEBIAN control area: `binary` as /usr/bin/sluice, the rendered unit, the example
/// config, the docs, `copyright` (text) and the deploy kit of `repo`.
///
/// # Errors
/// When the unit template or a directory of `repo` cannot be read, or the template's
/// ExecStart is not the one [`render_unit`] rewrites.
pub fn files(repo: &Path, binary: &Path, copyright: String) -> anyhow::Result<Vec<PackageFile>> {
    let template_path = repo.join(UNIT_TEMPLATE);
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading {}", template_path.display()))?;
    let mut files = vec![
        PackageFile::copy(BINARY_PATH.into(), binary.to_owned(), 0o755),
        PackageFile::text(
            UNIT_PATH.into(),
            render_unit(&template, Path::new(BINARY_PATH))?,
        ),
        PackageFile::copy(CONFIG_PATH.into(), repo.join(EXAMPLE_CONFIG), 0o644),
        PackageFile::copy(
            format!("{DOC_DIR}/README.md"),
            repo.join("README.md"),
            0o644,
        ),
    ];
    for doc in files_in(&repo.join("docs"), ".md")? {
        files.push(PackageFile::copy(
            format!("{DOC_DIR}/docs/{}", file_name(&doc)),
            doc,
            0o644,
        ));
    }
    files.push(PackageFile::text(format!("{DOC_DIR}/copyright"), copyright));
    for kit in ["prometheus", "grafana"] {
        for file in files_in(&repo.join("deploy").join(kit), "")? {
            files.push(PackageFile::copy(
                format!("{SHARE_DIR}/{kit}/{}", file_name(&file)),
                file,
                0o644,
            ));
        }
    }
    files.push(PackageFile::text(
        LINTIAN_OVERRIDES_PATH.into(),
        LINTIAN_OVERRIDES.into(),
    ));
    Ok(files)
}

/// `final_path` inside the staging directory `root`.
pub fn staged(root: &Path, final_path: &str) -> PathBuf {
    root.join(final_path.trim_start_matches('/'))
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:04o} {}", path.display()))
}

/// Writes `files` under `root` with their modes, every directory 0755 whatever the umask.
///
/// # Errors
/// When a source cannot be read or a file written.
pub fn stage(root: &Path, files: &[PackageFile]) -> anyhow::Result<()> {
    for file in files {
        let dest = create_parent(root, &file.path)?;
        match &file.source {
            Source::Copy(source) => std::fs::copy(source, &dest)
                .map(drop)
                .with_context(|| format!("copying {} to {}", source.display(), dest.display()))?,
            Source::Text(text) => std::fs::write(&dest, text)
                .with_context(|| format!("writing {}", dest.display()))?,
        }
        set_mode(&dest, file.mode)?;
    }
    Ok(())
}

/// Creates the directory of `final_path` under `root`, it and its ancestors up to `root`
/// mode 0755 whatever the umask; returns the staged path of `final_path`.
///
/// # Errors
/// When a directory cannot be created.
pub fn create_parent(root: &Path, final_path: &str) -> anyhow::Result<PathBuf> {
    let dest = staged(root, final_path);
    let dir = dest
        .parent()
        .with_context(|| format!("{} has no directory", dest.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut ancestor = Some(dir);
    while let Some(current) = ancestor.filter(|d| d.starts_with(root)) {
        set_mode(current, 0o755)?;
        ancestor = current.parent();
    }
    Ok(dest)
}

/// Writes a maintainer script or control file into `root/DEBIAN`.
///
/// # Errors
/// When it cannot be written.
pub fn control_file(root: &Path, name: &str, text: &str, mode: u32) -> anyhow::Result<()> {
    let dir = root.join("DEBIAN");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    set_mode(&dir, 0o755)?;
    let dest = dir.join(name);
    std::fs::write(&dest, text).with_context(|| format!("writing {}", dest.display()))?;
    set_mode(&dest, mode)
}
