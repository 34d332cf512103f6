//! `cargo xtask run -- ARGS`: builds the release binary and runs it with ARGS, for
//! bare-metal use (`cargo xtask run -- run --config /etc/sluice/sluice.toml`).
//!
//! The build is the one `cargo xtask install` does (`cargo build --release -p sluice`,
//! which embeds the XDP program), so what runs here is what would be installed. The
//! binary replaces this process (exec): signals (Ctrl-C, SIGTERM) reach sluice directly,
//! and its exit status is the command's.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{cmd, workspace::Workspace};

/// `cargo xtask run` options.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Arguments for sluice (after `--`), e.g. `run --config /etc/sluice/sluice.toml`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub args: Vec<OsString>,
}

/// `cargo build --release -p sluice` in the workspace root.
pub fn release_build(workspace: &Workspace) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .current_dir(&workspace.root)
        .args(["build", "--release", "-p", "sluice"]);
    command
}

/// The command that runs the built binary with `args`.
fn sluice_command(workspace: &Workspace, args: &[OsString]) -> Command {
    let mut command = Command::new(workspace.binary("release", "sluice"));
    command.args(args);
    command
}

/// Builds, then execs the binary; returns only on failure.
///
/// # Errors
/// When the build fails, the binary is missing, or exec fails.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let workspace = Workspace::locate()?;
    cmd::run(&mut release_build(&workspace))?;
    let mut command = sluice_command(&workspace, &args.args);
    let binary = workspace.binary("release", "sluice");
    if !binary.exists() {
        bail!("{} was not built", binary.display());
    }
    println!("$ {}", cmd::display(&command));
    let error = command.exec();
    Err(error).with_context(|| format!("cannot execute {}", binary.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn workspace() -> Workspace {
        Workspace {
            root: "/repo".into(),
            target_dir: "/repo/target".into(),
        }
    }

    #[test]
    fn builds_release_and_runs_the_binary_with_the_arguments_verbatim() {
        let ws = workspace();
        let build = release_build(&ws);
        assert!(cmd::display(&build).ends_with(" build --release -p sluice"));
        assert_eq!(build.get_current_dir(), Some(std::path::Path::new("/repo")));
        let args: Vec<OsString> = ["run", "--config", "/etc/sluice/sluice.toml"]
            .map(OsString::from)
            .into();
        assert_eq!(
            cmd::display(&sluice_command(&ws, &args)),
            "/repo/target/release/sluice run --config /etc/sluice/sluice.toml"
        );
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn arguments_after_the_double_dash_are_passed_through() {
        let cli = Cli::try_parse_from(["run", "--", "check", "--config", "x.toml"]).expect("parse");
        assert_eq!(cli.run.args, ["check", "--config", "x.toml"]);
        let cli = Cli::try_parse_from(["run", "--", "--version"]).expect("parse");
        assert_eq!(cli.run.args, ["--version"]);
        assert!(Cli::try_parse_from(["run"]).is_err(), "ARGS are required");
    }
}
