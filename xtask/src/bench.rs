//! `cargo xtask bench`: the end-to-end packet-rate benchmark (issue 6) in one command.
//!
//! Runs setup (idempotent, skippable), builds the release `sluice` daemon and the
//! `sluice-bench` harness, and runs the harness as root with the daemon's path, the
//! repository's BENCHMARKS.md and `docs/bench/packet-rate.png` as its outputs. A `--quick`
//! smoke run (a few seconds per row) prints its tables but writes neither file unless
//! `--write` is given, so smoke figures never replace a real measurement by accident.
//! Everything after `--` goes to `sluice-bench` unchanged (`cargo xtask bench -- --help`),
//! e.g. `-- --runs 3` to sweep the sluice rows three times, or `--records-dir DIR` for
//! records elsewhere than on the default disk directory, `/var/tmp`.
//!
//! `cargo xtask bench --objects` runs the objects benchmark instead (issue 11: what the
//! uploader makes of the traffic, against a Cloud Storage emulator, about 23 minutes);
//! it writes only its own section of BENCHMARKS.md, and with `--quick` (about 2 minutes)
//! nothing unless `--write` is given.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use anyhow::bail;

use crate::{cmd, setup, workspace::Workspace};

/// `cargo xtask bench` options.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Smoke run: three rates, a few seconds each, short overload; prints only.
    #[arg(long)]
    pub quick: bool,
    /// Write BENCHMARKS.md and the chart even with `--quick`.
    #[arg(long)]
    pub write: bool,
    /// Measure the objects the uploader makes (raw → Parquet to a Cloud Storage emulator,
    /// combined against one object per batch) instead of the packet rate.
    #[arg(long)]
    pub objects: bool,
    /// Skip `cargo xtask setup`.
    #[arg(long)]
    pub no_setup: bool,
    /// Further options for `sluice-bench` (after `--`), e.g. `--rates 0.5,1,max --step-secs 5`
    /// or `--runs 3`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

/// The build of everything the benchmark runs.
pub fn release_build(workspace: &Workspace) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(&workspace.root).args([
        "build",
        "--release",
        "-p",
        "sluice",
        "-p",
        "sluice-bench",
    ]);
    command
}

/// The harness command line.
pub fn harness_command(workspace: &Workspace, args: &BenchArgs) -> Command {
    let mut command = Command::new(workspace.binary("release", "sluice-bench"));
    command
        .arg("--sluice")
        .arg(workspace.binary("release", "sluice"));
    if args.quick {
        command.arg("--quick");
    }
    if args.objects {
        command.arg("--objects");
        if !args.quick || args.write {
            command
                .arg("--benchmarks-md")
                .arg(workspace.root.join("BENCHMARKS.md"));
        }
    } else if !args.quick || args.write {
        command
            .arg("--benchmarks-md")
            .arg(workspace.root.join("BENCHMARKS.md"))
            .arg("--chart")
            .arg(workspace.root.join("docs/bench/packet-rate.png"))
            .arg("--chart-link")
            .arg("docs/bench/packet-rate.png");
    } else {
        command.arg("--chart").arg(chart_for_quick_run(workspace));
    }
    command.args(&args.args);
    command
}

/// Where a quick run's chart goes: the target directory, not the repository.
fn chart_for_quick_run(workspace: &Workspace) -> PathBuf {
    workspace.target_dir.join("bench/packet-rate-quick.png")
}

/// Runs the benchmark.
///
/// # Errors
/// Not root, setup or build failures, or the harness failing (it exits non-zero when an
/// account does not balance or a row cannot run).
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if !sluice_testkit::privilege::is_root() {
        bail!(
            "the benchmark creates network namespaces, attaches XDP and runs BPF programs: run it as root"
        );
    }
    if !args.no_setup {
        setup::run()?;
    }
    let workspace = Workspace::locate()?;
    cmd::run(&mut release_build(&workspace))?;
    for binary in ["sluice", "sluice-bench"] {
        let path = workspace.binary("release", binary);
        if !path.exists() {
            bail!("{} was not built", path.display());
        }
    }
    if let Some(dir) = chart_for_quick_run(&workspace).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::create_dir_all(workspace.root.join("docs/bench"))?;
    cmd::run(&mut harness_command(&workspace, args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn workspace() -> Workspace {
        Workspace {
            root: "/repo".into(),
            target_dir: "/t".into(),
        }
    }

    #[test]
    fn a_full_run_writes_the_repository_files() {
        let cli = Cli::try_parse_from(["bench", "--", "--rates", "1,max"]).expect("parse");
        assert_eq!(
            cmd::display(&harness_command(&workspace(), &cli.bench)),
            "/t/release/sluice-bench --sluice /t/release/sluice --benchmarks-md /repo/BENCHMARKS.md \
             --chart /repo/docs/bench/packet-rate.png --chart-link docs/bench/packet-rate.png \
             --rates 1,max"
        );
        assert!(
            cmd::display(&release_build(&workspace()))
                .ends_with(" build --release -p sluice -p sluice-bench")
        );
    }

    #[test]
    fn a_quick_run_writes_only_into_the_target_directory() {
        let cli = Cli::try_parse_from(["bench", "--quick"]).expect("parse");
        assert_eq!(
            cmd::display(&harness_command(&workspace(), &cli.bench)),
            "/t/release/sluice-bench --sluice /t/release/sluice --quick --chart /t/bench/packet-rate-quick.png"
        );
        let cli = Cli::try_parse_from(["bench", "--quick", "--write"]).expect("parse");
        assert!(
            cmd::display(&harness_command(&workspace(), &cli.bench)).contains("--benchmarks-md")
        );
    }

    #[test]
    fn the_objects_run_writes_only_benchmarks_md_and_only_when_full() {
        let cli = Cli::try_parse_from(["bench", "--objects", "--", "--objects-secs", "600"])
            .expect("parse");
        assert_eq!(
            cmd::display(&harness_command(&workspace(), &cli.bench)),
            "/t/release/sluice-bench --sluice /t/release/sluice --objects --benchmarks-md \
             /repo/BENCHMARKS.md --objects-secs 600"
        );
        let cli = Cli::try_parse_from(["bench", "--objects", "--quick"]).expect("parse");
        assert_eq!(
            cmd::display(&harness_command(&workspace(), &cli.bench)),
            "/t/release/sluice-bench --sluice /t/release/sluice --quick --objects"
        );
    }
}
