//! `cargo xtask install`: puts Sluice on this machine the way docs/operations.md
//! describes, idempotently, and says what it does (`--dry-run`: only says it).
//!
//! | what | where (final path) | when |
//! |---|---|---|
//! | the `sluice` system user and group | passwd/group (`useradd --system`) | if missing |
//! | the release binary | `PREFIX/bin/sluice` (default `/usr/local`) | if different; the replaced one is kept as `sluice.previous` for rollback |
//! | the unit | `/etc/systemd/system/sluice.service`, ExecStart pointing at `PREFIX/bin/sluice` | if different, then `systemctl daemon-reload` |
//! | the example config | `/etc/sluice/sluice.toml` | only if absent: an operator's config is never touched |
//!
//! `--root DIR` writes everything under DIR (a staging root for an image, like DESTDIR)
//! while the unit keeps naming the final paths; the user is then created in DIR's own
//! passwd database (`useradd --root`) if DIR has one, and systemd is not reloaded.
//! `--binary FILE` installs FILE instead of building (a binary built elsewhere, or
//! `sluice.previous` to roll back: the two swap, so a rollback can itself be undone).
//! Enabling and starting the service stay the operator's decision (printed at the end).
//!
//! Files are replaced by writing a temporary file in the same directory, fsyncing it and
//! renaming it over the old one, so a running sluice keeps its binary and a crash never
//! leaves a half-written file.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail, ensure};

use crate::{cmd, run::release_build, workspace::Workspace};

/// The service's user and group (the unit's `User=`/`Group=`).
pub const SERVICE_USER: &str = "sluice";
/// Its home: the unit's StateDirectory.
pub(crate) const STATE_DIR: &str = "/var/lib/sluice";
/// The unit template and the example config, relative to the repository root.
pub(crate) const UNIT_TEMPLATE: &str = "deploy/sluice.service";
pub(crate) const EXAMPLE_CONFIG: &str = "deploy/sluice.example.toml";
/// The binary path the template's ExecStart names (the default prefix).
const TEMPLATE_BINARY: &str = "/usr/local/bin/sluice";
/// Final paths of the unit and the config.
const UNIT_PATH: &str = "/etc/systemd/system/sluice.service";
pub(crate) const CONFIG_PATH: &str = "/etc/sluice/sluice.toml";

/// `cargo xtask install` options.
#[derive(Clone, Debug, clap::Args)]
pub struct InstallArgs {
    /// Installation prefix: the binary goes to PREFIX/bin/sluice (the unit follows).
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// Staging root: write every file under DIR instead of / (paths inside the unit stay
    /// final); the user is created in DIR/etc/passwd if it exists, systemd not reloaded.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Install this binary instead of building one (e.g. PREFIX/bin/sluice.previous to
    /// roll back).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Print every action without doing any.
    #[arg(long)]
    pub dry_run: bool,
}

/// One step of an installation.
#[derive(Debug)]
enum Action {
    /// Nothing to do, and why.
    Nothing { what: &'static str, why: String },
    /// Run a command.
    Run {
        what: &'static str,
        command: Command,
    },
    /// Install the binary, keeping the one it replaces as `previous`.
    Binary {
        source: PathBuf,
        dest: PathBuf,
        previous: PathBuf,
    },
    /// Write `contents` to `dest` (replacing it).
    Write {
        what: &'static str,
        dest: PathBuf,
        contents: Vec<u8>,
        mode: u32,
        note: String,
    },
    /// Copy `source` to `dest` unless `dest` exists.
    CopyIfAbsent {
        what: &'static str,
        source: PathBuf,
        dest: PathBuf,
        mode: u32,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Nothing { what, why } => write!(f, "{what}: {why}"),
            Action::Run { what, command } => write!(f, "{what}: {}", cmd::display(command)),
            Action::Binary {
                source,
                dest,
                previous,
            } => write!(
                f,
                "binary: install {} -> {} (mode 0755, the replaced one kept as {})",
                source.display(),
                dest.display(),
                previous.display()
            ),
            Action::Write {
                what,
                dest,
                mode,
                note,
                ..
            } => write!(
                f,
                "{what}: write {} (mode {mode:04o}, {note})",
                dest.display()
            ),
            Action::CopyIfAbsent {
                what,
                source,
                dest,
                mode,
            } => write!(
                f,
                "{what}: install {} -> {} (mode {mode:04o}, absent)",
                source.display(),
                dest.display()
            ),
        }
    }
}

/// What executing an action changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    Unchanged,
}

/// Where the installation reads from and writes to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Layout {
    /// The repository (unit template, example config).
    repo: PathBuf,
    /// The binary to install (built or given).
    source_binary: PathBuf,
    /// True when `source_binary` is built first.
    build: bool,
    /// Staging root, `/` for a real installation.
    root: PathBuf,
    /// Installation prefix.
    prefix: PathBuf,
}

impl Layout {
    /// `final_path` under the staging root.
    fn staged(&self, final_path: &Path) -> PathBuf {
        self.root
            .join(final_path.strip_prefix("/").unwrap_or(final_path))
    }

    /// The binary's final path.
    fn binary(&self) -> PathBuf {
        self.prefix.join("bin/sluice")
    }

    fn is_staging(&self) -> bool {
        self.root != Path::new("/")
    }
}

/// The unit template with ExecStart pointing at `binary`.
pub(crate) fn render_unit(template: &str, binary: &Path) -> anyhow::Result<String> {
    let from = format!("\nExecStart={TEMPLATE_BINARY} ");
    ensure!(
        template.matches(&from).count() == 1,
        "{UNIT_TEMPLATE} must have exactly one line starting with `ExecStart={TEMPLATE_BINARY} `"
    );
    Ok(template.replace(&from, &format!("\nExecStart={} ", binary.display())))
}

/// Whether `name` is in the passwd database of `root`: getent for `/`, the file under a
/// staging root (None when it has no etc/passwd).
fn user_exists(root: &Path, name: &str) -> anyhow::Result<Option<bool>> {
    if root == Path::new("/") {
        let out = cmd::output(Command::new("getent").args(["passwd", name]))?;
        return Ok(Some(out.status.success()));
    }
    let passwd = root.join("etc/passwd");
    let Ok(text) = std::fs::read_to_string(&passwd) else {
        return Ok(None);
    };
    Ok(Some(
        text.lines()
            .any(|line| line.split(':').next() == Some(name)),
    ))
}

fn useradd(root: &Path) -> Command {
    let mut command = Command::new("useradd");
    if root != Path::new("/") {
        command.arg("--root").arg(root);
    }
    command.args([
        "--system",
        "--no-create-home",
        "--home-dir",
        STATE_DIR,
        "--shell",
        "/usr/sbin/nologin",
        "--user-group",
        SERVICE_USER,
    ]);
    command
}

/// The actions that bring the target to the installed state, from its current state.
fn plan(layout: &Layout) -> anyhow::Result<Vec<Action>> {
    let mut actions = Vec::new();
    if layout.build {
        actions.push(Action::Run {
            what: "build",
            command: release_build(&Workspace {
                root: layout.repo.clone(),
                target_dir: PathBuf::new(),
            }),
        });
    }

    actions.push(match user_exists(&layout.root, SERVICE_USER)? {
        Some(true) => Action::Nothing {
            what: "user",
            why: format!("{SERVICE_USER} exists"),
        },
        Some(false) => Action::Run {
            what: "user",
            command: useradd(&layout.root),
        },
        None => Action::Nothing {
            what: "user",
            why: format!(
                "skipped: {} does not exist (create it on the target: {})",
                layout.root.join("etc/passwd").display(),
                cmd::display(&useradd(Path::new("/")))
            ),
        },
    });

    let dest = layout.staged(&layout.binary());
    let same_binary = !layout.build
        && std::fs::read(&dest)
            .is_ok_and(|old| std::fs::read(&layout.source_binary).is_ok_and(|new| new == old));
    actions.push(if same_binary {
        Action::Nothing {
            what: "binary",
            why: format!("{} is up to date", dest.display()),
        }
    } else {
        Action::Binary {
            source: layout.source_binary.clone(),
            previous: dest.with_file_name("sluice.previous"),
            dest,
        }
    });

    let template_path = layout.repo.join(UNIT_TEMPLATE);
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading {}", template_path.display()))?;
    let unit = render_unit(&template, &layout.binary())?;
    let unit_dest = layout.staged(Path::new(UNIT_PATH));
    let unit_changed = std::fs::read(&unit_dest).ok().as_deref() != Some(unit.as_bytes());
    actions.push(if unit_changed {
        Action::Write {
            what: "unit",
            dest: unit_dest,
            contents: unit.into_bytes(),
            mode: 0o644,
            note: format!(
                "ExecStart={} run --config {CONFIG_PATH}",
                layout.binary().display()
            ),
        }
    } else {
        Action::Nothing {
            what: "unit",
            why: format!("{} is up to date", unit_dest.display()),
        }
    });

    let config_dest = layout.staged(Path::new(CONFIG_PATH));
    actions.push(if config_dest.exists() {
        Action::Nothing {
            what: "config",
            why: format!(
                "keeping {} (compare with {EXAMPLE_CONFIG} for new keys)",
                config_dest.display()
            ),
        }
    } else {
        Action::CopyIfAbsent {
            what: "config",
            source: layout.repo.join(EXAMPLE_CONFIG),
            dest: config_dest,
            mode: 0o644,
        }
    });

    actions.push(if !unit_changed {
        Action::Nothing {
            what: "systemd",
            why: "unit unchanged, nothing to reload".into(),
        }
    } else if layout.is_staging() {
        Action::Nothing {
            what: "systemd",
            why: "staging root: run `systemctl daemon-reload` on the target".into(),
        }
    } else if !Path::new("/run/systemd/system").exists() {
        Action::Nothing {
            what: "systemd",
            why: "not running here (no /run/systemd/system): nothing to reload".into(),
        }
    } else {
        let mut command = Command::new("systemctl");
        command.arg("daemon-reload");
        Action::Run {
            what: "systemd",
            command,
        }
    });
    Ok(actions)
}

/// Writes `contents` to `dest` through a temporary file in the same directory (fsynced,
/// then renamed over `dest`). Unchanged when `dest` already holds exactly `contents`.
fn replace_file(dest: &Path, contents: &[u8], mode: u32) -> anyhow::Result<Outcome> {
    if std::fs::read(dest).is_ok_and(|old| old == contents) {
        return Ok(Outcome::Unchanged);
    }
    let dir = dest
        .parent()
        .with_context(|| format!("{} has no directory", dest.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.xtask-install"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        std::fs::rename(&tmp, dest)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing {}", dest.display()))?;
    Ok(Outcome::Done)
}

fn execute(action: &mut Action) -> anyhow::Result<Outcome> {
    match action {
        Action::Nothing { .. } => Ok(Outcome::Unchanged),
        Action::Run { command, .. } => cmd::run(command).map(|()| Outcome::Done),
        Action::Binary {
            source,
            dest,
            previous,
        } => {
            // Read first: when rolling back, `source` is `previous`, overwritten below.
            let new =
                std::fs::read(&*source).with_context(|| format!("reading {}", source.display()))?;
            let old = match std::fs::read(&*dest) {
                Ok(old) if old == new => return Ok(Outcome::Unchanged),
                Ok(old) => Some(old),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("reading {}", dest.display())),
            };
            if let Some(old) = old {
                replace_file(previous, &old, 0o755)?;
            }
            replace_file(dest, &new, 0o755)
        }
        Action::Write {
            dest,
            contents,
            mode,
            ..
        } => replace_file(dest, contents, *mode),
        Action::CopyIfAbsent {
            source, dest, mode, ..
        } => {
            if dest.exists() {
                return Ok(Outcome::Unchanged);
            }
            let contents =
                std::fs::read(&*source).with_context(|| format!("reading {}", source.display()))?;
            replace_file(dest, &contents, *mode)
        }
    }
}

/// Runs the installation (or prints it with `--dry-run`).
///
/// # Errors
/// Invalid options, a failed build or command, or a file that cannot be written.
pub fn run(args: &InstallArgs) -> anyhow::Result<()> {
    let workspace = Workspace::locate()?;
    let layout = layout(args, &workspace)?;
    if !args.dry_run && !layout.is_staging() && !sluice_testkit::privilege::is_root() {
        bail!("installing into / needs root (or --root DIR for a staging directory)");
    }
    install(&layout, args.dry_run)?;
    println!(
        "next: edit {CONFIG_PATH} (interface, queues, ports), `sluice check --config {CONFIG_PATH}`, \
         then `systemctl enable --now sluice` (first install) or `systemctl restart sluice` (upgrade)"
    );
    Ok(())
}

fn layout(args: &InstallArgs, workspace: &Workspace) -> anyhow::Result<Layout> {
    ensure!(
        args.prefix.is_absolute(),
        "--prefix must be absolute: {}",
        args.prefix.display()
    );
    ensure!(
        args.root.is_absolute(),
        "--root must be absolute: {}",
        args.root.display()
    );
    Ok(Layout {
        repo: workspace.root.clone(),
        source_binary: args
            .binary
            .clone()
            .unwrap_or_else(|| workspace.binary("release", "sluice")),
        build: args.binary.is_none(),
        root: args.root.clone(),
        prefix: args.prefix.clone(),
    })
}

/// Plans and executes (or, dry, only plans), printing one line per action as it ends;
/// returns the lines.
fn install(layout: &Layout, dry_run: bool) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for mut action in plan(layout)? {
        if dry_run {
            let line = match action {
                Action::Nothing { .. } => format!("ok: {action}"),
                _ => format!("would {action}"),
            };
            println!("{line}");
            lines.push(line);
            continue;
        }
        let line = action.to_string();
        let outcome = execute(&mut action).with_context(|| format!("xtask install: {line}"))?;
        let line = match (&action, outcome) {
            (Action::Nothing { .. }, _) => format!("ok: {line}"),
            (_, Outcome::Unchanged) => format!("unchanged: {line}"),
            (_, Outcome::Done) => format!("done: {line}"),
        };
        println!("{line}");
        lines.push(line);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests;
