//! The `sluice` command line: `run`, `replay`, `check`, `bigquery-ddl`.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use sluice::{
    app::{self, RunOptions},
    config::Config,
};

/// Kernel-bypass ingestion of GRE-encapsulated UDP into compressed record files.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach to the configured source and record until SIGINT/SIGTERM.
    Run {
        /// TOML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Write the final counters as JSON to this file at exit.
        #[arg(long)]
        stats_file: Option<PathBuf>,
        /// Create this file once packets are being received.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Run a pcap/pcapng capture through the same pipeline, then exit.
    Replay {
        /// TOML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Capture file (Ethernet link type).
        #[arg(long)]
        input: PathBuf,
        /// Write the final counters as JSON to this file at exit.
        #[arg(long)]
        stats_file: Option<PathBuf>,
    },
    /// Validate the configuration and print it with every default filled in.
    Check {
        /// TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the BigQuery `CREATE EXTERNAL TABLE` statements that read the configured
    /// sink's files (one table per stream, hive-partitioned on dt and hour).
    BigqueryDdl {
        /// TOML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Dataset the tables go in (`project.dataset` or `dataset`).
        #[arg(long, default_value = "sluice")]
        dataset: String,
        /// Where the stream folders are (`gs://bucket/path`); default: the `sink.gcs`
        /// bucket and prefix.
        #[arg(long)]
        uri_prefix: Option<String>,
        /// Make BigQuery refuse queries without a filter on `dt` or `hour`
        /// (`require_hive_partition_filter = true`).
        #[arg(long)]
        require_partition_filter: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: under systemd the journal would keep the escapes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            stats_file,
            ready_file,
        } => Config::load(&config)
            .map_err(app::AppError::from)
            .and_then(|c| {
                app::run(
                    &c,
                    &RunOptions {
                        stats_file,
                        ready_file,
                    },
                )
            })
            .map(|_| ()),
        Command::Replay {
            config,
            input,
            stats_file,
        } => Config::load(&config)
            .map_err(app::AppError::from)
            .and_then(|c| {
                app::replay(
                    &c,
                    &input,
                    &RunOptions {
                        stats_file,
                        ready_file: None,
                    },
                )
            })
            .map(|_| ()),
        Command::Check { config } => app::check(&config).map(|text| print!("{text}")),
        Command::BigqueryDdl {
            config,
            dataset,
            uri_prefix,
            require_partition_filter,
        } => Config::load(&config)
            .map_err(app::AppError::from)
            .and_then(|c| {
                app::bigquery_ddl(
                    &c,
                    &dataset,
                    uri_prefix.as_deref(),
                    sluice_formats::DdlOptions {
                        require_partition_filter,
                    },
                )
            })
            .map(|text| print!("{text}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
