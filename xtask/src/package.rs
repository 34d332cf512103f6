//! `cargo xtask package`: the Debian package (amd64) that operators install Sluice from,
//! `apt install ./sluice_<version>_amd64.deb`, and that the VM tests install.
//!
//! It exists so that installing, upgrading and removing Sluice are dpkg's job, with
//! dpkg's guarantees: the config is a conffile (an edited one survives upgrades without
//! a prompt), the maintainer scripts create the `sluice` system user and restart a
//! running service on upgrade, and `apt purge` takes away everything the package and the
//! service added. `cargo xtask install` stays for machines without the package.
//!
//! | installed path | from |
//! |---|---|
//! | `/usr/bin/sluice` | the release build (eBPF object embedded), stripped |
//! | `/lib/systemd/system/sluice.service` | `deploy/sluice.service`, ExecStart → `/usr/bin/sluice` |
//! | `/etc/sluice/sluice.toml` (conffile) | `deploy/sluice.example.toml` |
//! | `/usr/share/doc/sluice/` | README.md, `docs/*.md`, copyright (DEP-5), changelog.Debian.gz |
//! | `/usr/share/man/man8/sluice.8.gz` | `package/debian/sluice.8` |
//! | `/usr/share/sluice/{prometheus,grafana}/` | `deploy/prometheus/*`, `deploy/grafana/*` |
//!
//! Built with the Debian tools, from a staged tree: `dpkg-shlibdeps` computes the
//! library dependencies, `dpkg-gencontrol` writes `DEBIAN/control` (Installed-Size
//! included), `dpkg-deb --root-owner-group` builds the archive (reproducibly: file times
//! are clamped to `SOURCE_DATE_EPOCH`, the commit's time unless set). The maintainer
//! scripts are in `package/debian/`. `--check` then runs lintian and the lifecycle test
//! ([`lifecycle`]): install, upgrade and purge in a chroot of a clean Debian 12.
//!
//! Shared with `cargo xtask install`: the release build command, the unit's ExecStart
//! rewriting (`install::render_unit`), the config and state paths and the user's name. The
//! staging is not shared: a package is a fresh tree with Debian's paths, and its user is
//! created by the postinst on the target, not at build time.

mod crates;
mod lifecycle;
mod metadata;
mod stage;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::{cmd, run::release_build, workspace::Workspace};

/// The maintainer scripts (POSIX sh).
const MAINTAINER_SCRIPTS: [(&str, &str); 3] = [
    ("postinst", include_str!("package/debian/postinst")),
    ("prerm", include_str!("package/debian/prerm")),
    ("postrm", include_str!("package/debian/postrm")),
];

/// The manual page, sluice(8).
const MAN_PAGE: &str = include_str!("package/debian/sluice.8");

/// `cargo xtask package` options.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct PackageArgs {
    /// Directory the .deb is written to [default: <target dir>/debian].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Debian version, e.g. 0.1.0-2 [default: the workspace version with revision -1].
    #[arg(long, value_name = "V")]
    pub version: Option<String>,
    /// Package this binary instead of building the release binary.
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,
    /// Then check it: lintian, and install / upgrade / purge in a chroot of a clean
    /// Debian 12 (root; what `cargo xtask test` runs).
    #[arg(long)]
    pub check: bool,
}

/// What one package is built from.
#[derive(Clone, Debug)]
struct Recipe {
    repo: PathBuf,
    binary: PathBuf,
    version: String,
    out: PathBuf,
    /// Short commit id of the sources, if in a git checkout.
    commit: Option<String>,
    /// Timestamp of the changelog entry and the archive's files.
    epoch_secs: i64,
    /// Third-party crates linked into the binary, for the copyright file.
    linked: Vec<crates::LinkedCrate>,
}

/// Builds the package (the release binary first, unless `args.binary`) and returns the
/// path of the .deb. `args.check` is ignored here (see [`run`]).
///
/// # Errors
/// A failed build, a missing tool (dpkg-dev, binutils), an invalid version.
pub fn build(args: &PackageArgs) -> anyhow::Result<PathBuf> {
    let recipe = recipe(args, &Workspace::locate()?)?;
    build_from(&recipe)
}

/// `cargo xtask package`: builds, prints the path, and with `--check` checks.
///
/// # Errors
/// As [`build`], or a failed check.
pub fn run(args: &PackageArgs) -> anyhow::Result<()> {
    let workspace = Workspace::locate()?;
    let recipe = recipe(args, &workspace)?;
    let deb = build_from(&recipe)?;
    println!("package: {}", deb.display());
    if !args.check {
        return Ok(());
    }
    lintian(&deb)?;
    // The upgrade: the same binary and conffile under a higher version (an NMU-style
    // `.1` suffix sorts after the version itself).
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let upgrade = Recipe {
        version: format!("{}.1", recipe.version),
        out: scratch.path().to_owned(),
        ..recipe.clone()
    };
    let upgrade_deb = build_from(&upgrade)?;
    lifecycle::run(&deb, &upgrade_deb, &recipe.repo)
}

fn recipe(args: &PackageArgs, workspace: &Workspace) -> anyhow::Result<Recipe> {
    let cargo_metadata = cargo_metadata(workspace)?;
    let version = match &args.version {
        Some(version) => {
            metadata::validate_version(version)?;
            version.clone()
        }
        None => metadata::debian_version_from_cargo(&version_in_metadata(&cargo_metadata)?)?,
    };
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => {
            cmd::run(&mut release_build(workspace))?;
            workspace.binary("release", "sluice")
        }
    };
    let (commit, commit_time) = git_head(&workspace.root);
    let epoch_secs = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => text
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={text:?} is not a number"))?,
        Err(_) => commit_time.unwrap_or_else(now),
    };
    Ok(Recipe {
        repo: workspace.root.clone(),
        binary,
        version,
        out: args
            .out
            .clone()
            .unwrap_or_else(|| workspace.target_dir.join("debian")),
        commit,
        epoch_secs,
        linked: crates::linked_crates(&cargo_metadata, metadata::PACKAGE)?,
    })
}

/// `cargo metadata` with the dependency graph, for the target the package is built for.
fn cargo_metadata(workspace: &Workspace) -> anyhow::Result<serde_json::Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let text = cmd::stdout(Command::new(cargo).current_dir(&workspace.root).args([
        "metadata",
        "--format-version",
        "1",
        "--filter-platform",
        "x86_64-unknown-linux-gnu",
    ]))?;
    serde_json::from_str(&text).context("cargo metadata printed invalid JSON")
}

/// The workspace's `sluice` package's version.
fn version_in_metadata(value: &serde_json::Value) -> anyhow::Result<String> {
    value["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == metadata::PACKAGE && package["source"].is_null())
        .and_then(|package| package["version"].as_str())
        .map(str::to_owned)
        .context("cargo metadata lists no `sluice` package with a version")
}

/// The short id and the commit time of HEAD, when `repo` is a git checkout.
fn git_head(repo: &Path) -> (Option<String>, Option<i64>) {
    let field = |format: &str| {
        let mut command = Command::new("git");
        command
            .current_dir(repo)
            .args(["log", "-1", &format!("--format={format}")]);
        cmd::stdout(&mut command)
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    (field("%h"), field("%ct").and_then(|time| time.parse().ok()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// Stages the tree in a scratch directory next to the output and builds the .deb.
fn build_from(recipe: &Recipe) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&recipe.out)
        .with_context(|| format!("creating {}", recipe.out.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".sluice-package-")
        .tempdir_in(&recipe.out)
        .with_context(|| format!("creating a directory in {}", recipe.out.display()))?;
    let work = work.path();
    let root = work.join("root");

    let copyright = metadata::copyright(metadata::year(recipe.epoch_secs), &recipe.linked);
    stage::stage(
        &root,
        &stage::files(&recipe.repo, &recipe.binary, copyright)?,
    )?;
    let binary = stage::staged(&root, stage::BINARY_PATH);
    // What dh_strip does for an executable: debug symbols, .comment and .note go.
    cmd::run(
        Command::new("strip")
            .args(["--remove-section=.comment", "--remove-section=.note"])
            .arg(&binary),
    )?;

    // dpkg-gencontrol and dpkg-shlibdeps work in a source tree: debian/control and
    // debian/changelog, whose entry is also the installed changelog.Debian.gz.
    let debian = work.join("debian");
    std::fs::create_dir_all(&debian).with_context(|| format!("creating {}", debian.display()))?;
    let changelog =
        metadata::changelog(&recipe.version, recipe.commit.as_deref(), recipe.epoch_secs);
    write(&debian.join("control"), &metadata::source_control())?;
    write(&debian.join("changelog"), &changelog)?;
    gzip(
        &debian.join("changelog"),
        &stage::staged(&root, &format!("{}/changelog.Debian.gz", stage::DOC_DIR)),
    )?;
    let man_page = stage::create_parent(&root, stage::MAN_PAGE_PATH)?;
    write(&debian.join("sluice.8"), MAN_PAGE)?;
    gzip(&debian.join("sluice.8"), &man_page)?;

    for (name, script) in MAINTAINER_SCRIPTS {
        stage::control_file(&root, name, script, 0o755)?;
    }
    stage::control_file(
        &root,
        "conffiles",
        &metadata::conffiles(&stage::CONFFILES),
        0o644,
    )?;
    md5sums(&root)?;

    cmd::run(
        Command::new("dpkg-shlibdeps")
            .current_dir(work)
            .arg("-Tdebian/substvars")
            .arg(binary.strip_prefix(work).unwrap_or(&binary)),
    )?;
    cmd::run(Command::new("dpkg-gencontrol").current_dir(work).args([
        &format!("-p{}", metadata::PACKAGE),
        &format!("-v{}", recipe.version),
        "-Tdebian/substvars",
        "-fdebian/files",
        "-Proot",
    ]))?;

    let deb = recipe.out.join(metadata::deb_file_name(&recipe.version));
    cmd::run(
        Command::new("dpkg-deb")
            .env("SOURCE_DATE_EPOCH", recipe.epoch_secs.to_string())
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&root)
            .arg(&deb),
    )?;
    Ok(deb)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `gzip -9n` (no name or time stamp in the header, as Debian policy asks) into `dest`.
fn gzip(source: &Path, dest: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut command = Command::new("gzip");
    command.args(["-9n", "--stdout"]).arg(source).stdout(file);
    cmd::run(&mut command)
}

/// `DEBIAN/md5sums` of every file outside DEBIAN/ except the conffiles (dpkg tracks
/// those itself), as dh_md5sums writes it.
fn md5sums(root: &Path) -> anyhow::Result<()> {
    let mut files = Vec::new();
    collect_files(root, root, &mut files)?;
    files.retain(|path| {
        !path.starts_with("DEBIAN/")
            && !stage::CONFFILES
                .iter()
                .any(|conffile| conffile.trim_start_matches('/') == path)
    });
    files.sort();
    let output = cmd::output(Command::new("md5sum").current_dir(root).args(&files))?;
    if !output.status.success() {
        bail!(
            "md5sum failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    std::fs::write(root.join("DEBIAN/md5sums"), &output.stdout).context("writing DEBIAN/md5sums")
}

/// Paths (relative to `root`, `/`-separated) of the regular files under `dir`.
fn collect_files(root: &Path, dir: &Path, files: &mut Vec<String>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let file_type = entry
            .file_type()
            .with_context(|| format!("stat {}", path.display()))?;
        if file_type.is_dir() {
            collect_files(root, &path, files)?;
        } else if file_type.is_file() {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            files.push(relative.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// Lintian on the .deb: any error or warning fails (the overrides shipped in the package
/// list the few tags that cannot be avoided, with reasons).
fn lintian(deb: &Path) -> anyhow::Result<()> {
    if !prerequisite(
        sluice_testkit::privilege::find_tool("lintian").is_some(),
        "lintian is not installed (cargo xtask setup installs it)",
    )? {
        return Ok(());
    }
    cmd::run(
        Command::new("lintian")
            .args(["--fail-on", "error,warning", "--display-info"])
            .arg(deb)
            .stdin(Stdio::null()),
    )
}

/// The suite's rule for a missing prerequisite: under `CI=true` an error, elsewhere a
/// printed skip (returns false).
///
/// # Errors
/// When `present` is false under CI.
fn prerequisite(present: bool, reason: &str) -> anyhow::Result<bool> {
    if present {
        return Ok(true);
    }
    if sluice_testkit::privilege::is_ci() {
        bail!("xtask package --check: {reason} (CI=true: failing instead of skipping)");
    }
    println!("SKIP xtask package --check: {reason}");
    Ok(false)
}

#[cfg(test)]
mod tests;
