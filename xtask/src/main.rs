//! Developer commands for Sluice, run as `cargo xtask <command>` (alias in
//! `.cargo/config.toml`).
//!
//! - `setup`: install toolchains, bpf-linker and system packages, skipping what is there.
//! - `test`: setup, then fmt, clippy (host and eBPF) and every test; what CI runs.
//! - `demo`: the daemon end to end in two private network namespaces, with a report.
//!
//! Kept in Rust (not shell) so that the same code paths are type-checked, linted and unit
//! tested like the rest of the workspace.

mod cmd;
mod demo;
mod setup;
mod suite;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Task::Setup => setup::run(),
        Task::Test => suite::run(),
        Task::Demo(args) => demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
