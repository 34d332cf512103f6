//! Developer commands for Sluice, run as `cargo xtask <command>` (alias in
//! `.cargo/config.toml`).
//!
//! - `setup`: install toolchains, bpf-linker and system packages, skipping what is there.
//! - `test`: setup, then fmt, clippy (host and eBPF) and every test; what CI runs.
//! - `demo`: the daemon end to end in two private network namespaces, with a report.
//! - `install`: the release binary, systemd unit, example config and service user, on this
//!   machine or into a staging root (`--dry-run` prints the plan).
//! - `package`: the Debian package (`--check`: lintian, install/upgrade/purge in a chroot).
//! - `run -- ARGS`: the freshly built release binary with ARGS, for bare-metal use.
//! - `bench`: the end-to-end packet-rate benchmark; writes BENCHMARKS.md and its chart
//!   (`--objects`: the uploader's objects against a Cloud Storage emulator).
//! - `vm-test`: the package in Debian 12 VMs under qemu (kernels 6.1, 6.12, 5.10; virtio-net
//!   and e1000), with a power cut; see docs/operations.md.
//!
//! Kept in Rust (not shell) so that the same code paths are type-checked, linted and unit
//! tested like the rest of the workspace.

mod bench;
mod cmd;
mod demo;
mod install;
mod package;
mod run;
mod setup;
mod suite;
mod vm;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sluice developer commands.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what building and testing needs (idempotent).
    Setup,
    /// Run setup, fmt, clippy (host + eBPF) and all tests; stops at the first failure.
    Test,
    /// Run sluice end to end in network namespaces and print a report.
    Demo(demo::DemoArgs),
    /// Build and install binary, systemd unit, example config and the `sluice` user
    /// (idempotent; see docs/operations.md).
    Install(install::InstallArgs),
    /// Build the Debian package (amd64) of binary, unit, conffile and docs; `--check`
    /// also runs lintian and an install/upgrade/purge test in a Debian 12 chroot.
    Package(package::PackageArgs),
    /// Build the release binary and run it with the arguments after `--`.
    Run(run::RunArgs),
    /// Run the end-to-end packet-rate benchmark (root; `-- --help` for the harness's
    /// options) and write its section of BENCHMARKS.md and docs/bench/packet-rate.png;
    /// `--objects`: the objects the uploader makes, in a section of its own.
    Bench(bench::BenchArgs),
    /// Boot Debian 12 VMs under qemu and test the package in them (root; issue 10).
    VmTest(vm::VmTestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Task::Setup => setup::run(),
        Task::Test => suite::run(),
        Task::Demo(args) => demo::run(args),
        Task::Install(args) => install::run(args),
        Task::Package(args) => package::run(args),
        Task::Run(args) => run::run(args),
        Task::Bench(args) => bench::run(args),
        Task::VmTest(args) => vm::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
