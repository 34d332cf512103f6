//! Drives the `sluice` binary from the outside: writes its config, starts `sluice run`
//! inside a namespace and waits for its ready file, stops it with SIGTERM, runs
//! `sluice replay`, and reads the stats it leaves behind.
//!
//! Only the command line and files are used (the kit never links the daemon), so tests
//! exercise exactly what an operator runs. Every wait is bounded; the daemon's stdout and
//! stderr go to a log file whose tail is put into the error when something fails.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::cleanup::{CleanupError, ProcessGuard};
use crate::netns::Netns;
use crate::stats::{Stats, StatsError};

/// Why driving the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A file could not be written or the process not started.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The daemon exited before it became ready.
    #[error("sluice exited before it was ready ({status}); log:\n{log}")]
    ExitedEarly {
        /// Its exit status.
        status: ExitStatus,
        /// The end of its log.
        log: String,
    },
    /// The ready file did not appear in time.
    #[error("sluice not ready after {waited:?}; log:\n{log}")]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// The end of its log.
        log: String,
    },
    /// Stopping the process failed.
    #[error(transparent)]
    Process(#[from] CleanupError),
    /// The daemon did not exit cleanly on SIGTERM within the grace time.
    #[error("sluice exit on SIGTERM: {status} (in time: {in_time}); log:\n{log}")]
    Unclean {
        /// Its exit status.
        status: ExitStatus,
        /// Whether it exited within the grace time.
        in_time: bool,
        /// The end of its log.
        log: String,
    },
    /// The stats file is missing or malformed.
    #[error("{source}; log:\n{log}")]
    Stats {
        /// The underlying error.
        source: StatsError,
        /// The end of its log.
        log: String,
    },
}

/// The daemon's `[source]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// `kind = "xdp"` on `interface` with one AF_XDP socket per queue.
    Xdp {
        /// Interface to attach to.
        interface: String,
        /// Receive queues.
        queues: Vec<u32>,
        /// `"auto"`, `"native"` or `"generic"`.
        xdp_mode: String,
    },
    /// `kind = "udp"` listening on these addresses.
    Udp {
        /// `ip:port` strings.
        listen: Vec<String>,
    },
}

/// A config file for the daemon, limited to the documented interface fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigSpec {
    /// `[source]`.
    pub source: SourceSpec,
    /// `filter.ports`.
    pub ports: Vec<u16>,
    /// `filter.plain_udp`.
    pub plain_udp: bool,
    /// `batch.max_records`.
    pub max_records: u32,
    /// `batch.max_bytes`.
    pub max_bytes: u32,
    /// `batch.max_age_ms`.
    pub max_age_ms: u64,
    /// `sink.path` (kind `directory`).
    pub sink_path: PathBuf,
    /// `pipeline.workers`.
    pub workers: u32,
    /// `sink.host`, the `<host>` part of file and object names (`None`: the machine's
    /// hostname).
    pub host: Option<String>,
    /// `sink.format` (`None`: the daemon's default, `parquet`).
    pub format: Option<String>,
    /// The body of `[sink.gcs]` (TOML lines); when set, `sink.kind = "gcs"`.
    pub gcs: Option<String>,
}

impl ConfigSpec {
    /// XDP on `interface` queue 0 (`auto` mode), ports 5000 and 5001, plain UDP on, small
    /// quick batches (1000 records, 1 MiB, 200 ms), 2 workers, output in `sink_path`, in
    /// `ndjson_zstd` (named, not the daemon's default: the tests read the lines back with
    /// [`crate::records`]; set `format` to `None` for the default).
    pub fn xdp(interface: &str, sink_path: &Path) -> ConfigSpec {
        ConfigSpec {
            source: SourceSpec::Xdp {
                interface: interface.to_owned(),
                queues: vec![0],
                xdp_mode: "auto".into(),
            },
            ports: vec![5000, 5001],
            plain_udp: true,
            max_records: 1000,
            max_bytes: 1 << 20,
            max_age_ms: 200,
            sink_path: sink_path.to_owned(),
            workers: 2,
            host: None,
            format: Some("ndjson_zstd".into()),
            gcs: None,
        }
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let list = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(", ");
        let mut out = String::from("[source]\n");
        match &self.source {
            SourceSpec::Xdp {
                interface,
                queues,
                xdp_mode,
            } => {
                let queues = list(&mut queues.iter().map(u32::to_string));
                let _ = writeln!(
                    out,
                    "kind = \"xdp\"\ninterface = {}",
                    toml_string(interface)
                );
                let _ = writeln!(
                    out,
                    "queues = [{queues}]\nxdp_mode = {}",
                    toml_string(xdp_mode)
                );
            }
            SourceSpec::Udp { listen } => {
                let listen = list(&mut listen.iter().map(|a| toml_string(a)));
                let _ = writeln!(out, "kind = \"udp\"\nudp_listen = [{listen}]");
            }
        }
        let ports = list(&mut self.ports.iter().map(u16::to_string));
        let _ = writeln!(
            out,
            "\n[filter]\nports = [{ports}]\nplain_udp = {}",
            self.plain_udp
        );
        let _ = writeln!(
            out,
            "\n[batch]\nmax_records = {}\nmax_bytes = {}\nmax_age_ms = {}",
            self.max_records, self.max_bytes, self.max_age_ms
        );
        let _ = writeln!(out, "\n[pipeline]\nworkers = {}", self.workers);
        let kind = if self.gcs.is_some() {
            "gcs"
        } else {
            "directory"
        };
        let _ = writeln!(
            out,
            "\n[sink]\nkind = \"{kind}\"\npath = {}",
            toml_string(&self.sink_path.to_string_lossy())
        );
        if let Some(host) = &self.host {
            let _ = writeln!(out, "host = {}", toml_string(host));
        }
        if let Some(format) = &self.format {
            let _ = writeln!(out, "format = {}", toml_string(format));
        }
        if let Some(gcs) = &self.gcs {
            let _ = writeln!(out, "\n[sink.gcs]\n{gcs}");
        }
        out
    }

    /// Writes the TOML to `path`.
    ///
    /// # Errors
    /// [`DaemonError::Io`].
    pub fn write(&self, path: &Path) -> Result<(), DaemonError> {
        std::fs::write(path, self.to_toml()).map_err(|source| DaemonError::Io {
            what: format!("writing {}", path.display()),
            source,
        })
    }
}

/// `text` as a TOML basic string (quoted, `"` and `\\` escaped, control characters as
/// `\\uXXXX`).
pub fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The last `max_lines` lines of a log file (or a note that it is unreadable).
pub fn log_tail(path: &Path, max_lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(max_lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Paths a daemon run uses, all inside one work directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunFiles {
    /// The config file.
    pub config: PathBuf,
    /// `--stats-file`.
    pub stats: PathBuf,
    /// `--ready-file`.
    pub ready: PathBuf,
    /// stdout + stderr of the daemon.
    pub log: PathBuf,
}

impl RunFiles {
    /// `DIR/<name>.toml`, `DIR/<name>-stats.json`, `DIR/<name>.ready`, `DIR/<name>.log`.
    pub fn in_dir(dir: &Path, name: &str) -> RunFiles {
        RunFiles {
            config: dir.join(format!("{name}.toml")),
            stats: dir.join(format!("{name}-stats.json")),
            ready: dir.join(format!("{name}.ready")),
            log: dir.join(format!("{name}.log")),
        }
    }
}

/// A `sluice run` in progress.
#[derive(Debug)]
pub struct RunningSluice {
    process: ProcessGuard,
    files: RunFiles,
}

/// Opens `path` for the daemon's output (stdout and stderr share it).
fn log_file(path: &Path) -> Result<(Stdio, Stdio), DaemonError> {
    let io = |source| DaemonError::Io {
        what: format!("creating {}", path.display()),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let copy = file.try_clone().map_err(io)?;
    Ok((Stdio::from(file), Stdio::from(copy)))
}

/// Starts `binary run --config .. --stats-file .. --ready-file ..` inside `netns`, with
/// `RUST_LOG=info` unless already set. Call [`RunningSluice::wait_ready`] next.
///
/// # Errors
/// [`DaemonError::Io`] when the process cannot be started.
pub fn start_run(
    binary: &Path,
    netns: &Netns,
    files: &RunFiles,
) -> Result<RunningSluice, DaemonError> {
    let _ = std::fs::remove_file(&files.ready);
    let _ = std::fs::remove_file(&files.stats);
    let (stdout, stderr) = log_file(&files.log)?;
    let mut command = netns.command(&binary.to_string_lossy());
    command
        .arg("run")
        .arg("--config")
        .arg(&files.config)
        .arg("--stats-file")
        .arg(&files.stats)
        .arg("--ready-file")
        .arg(&files.ready)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    let child = command.spawn().map_err(|source| DaemonError::Io {
        what: format!("starting {} run", binary.display()),
        source,
    })?;
    Ok(RunningSluice {
        process: ProcessGuard::new("sluice run", child),
        files: files.clone(),
    })
}

impl RunningSluice {
    /// The daemon's PID.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The files of this run.
    pub fn files(&self) -> &RunFiles {
        &self.files
    }

    /// Polls for the ready file for up to `timeout`.
    ///
    /// # Errors
    /// [`DaemonError::ExitedEarly`] if the daemon exits first, [`DaemonError::NotReady`]
    /// on timeout.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), DaemonError> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.files.ready.exists() {
                return Ok(());
            }
            if let Some(status) = self.process.try_status()? {
                return Err(DaemonError::ExitedEarly {
                    status,
                    log: log_tail(&self.files.log, 40),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(DaemonError::NotReady {
            waited: timeout,
            log: log_tail(&self.files.log, 40),
        })
    }

    /// SIGTERM, wait up to `grace` (SIGKILL after), then read the stats file. Returns the
    /// exit status, whether it exited within `grace`, and the stats.
    ///
    /// # Errors
    /// [`DaemonError::Process`] or [`DaemonError::Stats`].
    pub fn stop(mut self, grace: Duration) -> Result<(ExitStatus, bool, Stats), DaemonError> {
        let (status, in_time) = self.process.terminate(grace)?;
        let stats = Stats::read(&self.files.stats).map_err(|source| DaemonError::Stats {
            source,
            log: log_tail(&self.files.log, 40),
        })?;
        Ok((status, in_time, stats))
    }

    /// [`Self::stop`], requiring a successful exit within `grace`: the stats.
    ///
    /// # Errors
    /// As [`Self::stop`], and [`DaemonError::Unclean`] for any other exit.
    pub fn stop_cleanly(self, grace: Duration) -> Result<Stats, DaemonError> {
        let log = self.files.log.clone();
        let (status, in_time, stats) = self.stop(grace)?;
        if in_time && status.success() {
            Ok(stats)
        } else {
            Err(DaemonError::Unclean {
                status,
                in_time,
                log: log_tail(&log, 40),
            })
        }
    }
}

/// Runs `binary replay --config CONFIG --input PCAP --stats-file STATS` (bounded by
/// `timeout`), returning its exit status and stats.
///
/// # Errors
/// [`DaemonError`] when it cannot start, times out, or leaves no readable stats.
pub fn replay(
    binary: &Path,
    files: &RunFiles,
    pcap: &Path,
    timeout: Duration,
) -> Result<(ExitStatus, Stats), DaemonError> {
    let _ = std::fs::remove_file(&files.stats);
    let (stdout, stderr) = log_file(&files.log)?;
    let mut command = Command::new(binary);
    command
        .arg("replay")
        .arg("--config")
        .arg(&files.config)
        .arg("--input")
        .arg(pcap)
        .arg("--stats-file")
        .arg(&files.stats)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let child = command.spawn().map_err(|source| DaemonError::Io {
        what: format!("starting {} replay", binary.display()),
        source,
    })?;
    let mut process = ProcessGuard::new("sluice replay", child);
    let (status, in_time) = process.wait_timeout(timeout)?;
    if !in_time {
        return Err(DaemonError::NotReady {
            waited: timeout,
            log: log_tail(&files.log, 40),
        });
    }
    let stats = Stats::read(&files.stats).map_err(|source| DaemonError::Stats {
        source,
        log: log_tail(&files.log, 40),
    })?;
    Ok((status, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdp_config_renders_the_documented_toml() {
        let spec = ConfigSpec::xdp("sl0b", Path::new("/tmp/out \"x\""));
        assert_eq!(
            spec.to_toml(),
            "[source]\nkind = \"xdp\"\ninterface = \"sl0b\"\nqueues = [0]\nxdp_mode = \"auto\"\n\
             \n[filter]\nports = [5000, 5001]\nplain_udp = true\n\
             \n[batch]\nmax_records = 1000\nmax_bytes = 1048576\nmax_age_ms = 200\n\
             \n[pipeline]\nworkers = 2\n\
             \n[sink]\nkind = \"directory\"\npath = \"/tmp/out \\\"x\\\"\"\nformat = \"ndjson_zstd\"\n"
        );
        // With an upload section, the sink is `gcs` and `[sink.gcs]` comes last.
        let gcs = ConfigSpec {
            host: Some("edge1".into()),
            format: Some("parquet".into()),
            gcs: Some("bucket = \"b-1\"\nspool_dir = \"/s\"".into()),
            ..ConfigSpec::xdp("sl0b", Path::new("/o"))
        };
        assert!(
            gcs.to_toml().ends_with(
                "\n[sink]\nkind = \"gcs\"\npath = \"/o\"\nhost = \"edge1\"\nformat = \"parquet\"\n\
                 \n[sink.gcs]\nbucket = \"b-1\"\nspool_dir = \"/s\"\n"
            ),
            "{}",
            gcs.to_toml()
        );
    }

    #[test]
    fn udp_config_lists_listen_addresses() {
        let mut spec = ConfigSpec::xdp("unused", Path::new("/o"));
        spec.source = SourceSpec::Udp {
            listen: vec!["127.0.0.1:5000".into(), "[::1]:5001".into()],
        };
        let toml = spec.to_toml();
        assert!(toml.starts_with(
            "[source]\nkind = \"udp\"\nudp_listen = [\"127.0.0.1:5000\", \"[::1]:5001\"]\n"
        ));
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\nd\n").expect("write");
        assert_eq!(log_tail(&path, 2), "c\nd");
        assert_eq!(log_tail(&path, 10), "a\nb\nc\nd");
        assert!(log_tail(&dir.path().join("none"), 2).starts_with("(cannot read"));
    }
}
