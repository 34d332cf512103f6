//! The daemon's commands — `run`, `replay`, `check` — wiring a source to the pipeline,
//! handling SIGINT/SIGTERM, logging counters periodically, telling systemd how it is going
//! ([`crate::notify`]) and accounting at exit.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

#[cfg(feature = "xdp")]
use sluice_common::Verdict;

#[cfg(feature = "xdp")]
use crate::source::xdp::{XdpError, XdpProgram, missed::MissedWatch, receive::receive_loop};
use crate::{
    accounting::{DropReason, LocalCounters, Report},
    config::{Config, ConfigError, SourceKind},
    decap::PortFilter,
    detail::DetailSet,
    metrics::{LinkModes, Metrics, MetricsServer, NetflowSnapshot, ServerError, Snapshot},
    notify::Notifier,
    pipeline::{CounterSet, Pipeline, PipelineError},
    source::{
        replay::{self, ReplayError},
        udp::{UdpListener, UdpSourceError},
    },
    streams::Streams,
    upload::{self, SinkStartError, UploadStage},
};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The pipeline could not start.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The sink (directory, or spool and uploader) could not start.
    #[error(transparent)]
    Sink(#[from] SinkStartError),
    /// The XDP source could not start.
    #[cfg(feature = "xdp")]
    #[error(transparent)]
    Xdp(#[from] XdpError),
    /// This build has no XDP source.
    #[error("source.kind = \"xdp\": this sluice was built without the `xdp` feature")]
    NoXdp,
    /// A UDP listener could not start.
    #[error(transparent)]
    Udp(#[from] UdpSourceError),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] ServerError),
    /// The metrics registry could not be built (a bug).
    #[error("metrics registry: {0}")]
    Registry(#[from] prometheus::Error),
    /// The capture could not be replayed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// A signal handler could not be installed, a thread started, or a file written.
    #[error("{what}: {source}")]
    Io {
        /// What failed.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The DDL cannot be written for this config.
    #[error("{0}")]
    Ddl(String),
    /// The final account did not balance (a bug: reported, never hidden).
    #[error("packets unaccounted for: {0}")]
    Unbalanced(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AppError {
    let what = what.into();
    move |source| AppError::Io { what, source }
}

/// Options of `sluice run` and `sluice replay` beyond the config.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Write the final report as JSON here.
    pub stats_file: Option<PathBuf>,
    /// Create this file once the source is receiving.
    pub ready_file: Option<PathBuf>,
}

/// Installs SIGINT/SIGTERM handlers that set the returned flag.
fn stop_flag() -> Result<Arc<AtomicBool>, AppError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(io("installing signal handler"))?;
    }
    Ok(stop)
}

/// Waits for the stop flag, calling `heartbeat` every second (systemd status and
/// watchdog, failure checks) and `tick` every stats interval.
fn wait_for_stop(
    stop: &AtomicBool,
    interval_secs: u64,
    mut heartbeat: impl FnMut(),
    mut tick: impl FnMut(),
) {
    let interval = Duration::from_secs(interval_secs);
    let mut last = Instant::now();
    let mut last_beat = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if last_beat.elapsed() >= Duration::from_secs(1) {
            heartbeat();
            last_beat = Instant::now();
        }
        if interval_secs > 0 && last.elapsed() >= interval {
            tick();
            last = Instant::now();
        }
    }
}

/// The counters and modes in one line for `systemctl status`.
#[cfg(feature = "xdp")]
fn status_line(report: &Report, modes: &str) -> String {
    if modes.is_empty() {
        report.summary()
    } else {
        format!("{}; {modes}", report.summary())
    }
}

fn finish(report: &Report, options: &RunOptions) -> Result<(), AppError> {
    tracing::info!(source = report.source, "final: {}", report.summary());
    let json = serde_json::to_string_pretty(report).unwrap_or_default();
    println!("{json}");
    if let Some(path) = &options.stats_file {
        std::fs::write(path, format!("{json}\n"))
            .map_err(io(format!("writing {}", path.display())))?;
    }
    if report.balanced {
        Ok(())
    } else {
        Err(AppError::Unbalanced(report.summary()))
    }
}

fn mark_ready(options: &RunOptions, modes: &LinkModes) -> Result<(), AppError> {
    tracing::info!(
        kernel = %crate::kernel::release(),
        modes = %modes.summary(),
        "sluice ready"
    );
    if let Some(path) = &options.ready_file {
        std::fs::write(path, b"ready\n").map_err(io(format!("writing {}", path.display())))?;
    }
    Ok(())
}

/// Opens the sink (and the uploader) and starts the pipeline on it.
fn start_pipeline(
    config: &Config,
    filter: PortFilter,
    streams: &Streams,
    details: &DetailSet,
) -> Result<(Pipeline, Option<UploadStage>), AppError> {
    let names = streams.streams.iter().map(|s| s.name.clone()).collect();
    let (sink, upload) = upload::open_sink(config, names)?;
    let pipeline = Pipeline::start(config, filter, streams, details, sink)?;
    Ok((pipeline, upload))
}

/// After the pipeline has committed its last batch: uploads within the grace period.
fn finish_upload(upload: Option<UploadStage>, report: &mut Report) {
    if let Some(stage) = upload {
        tracing::info!("uploading what is spooled (grace period sink.gcs.shutdown_grace_secs)");
        report.upload = Some(stage.shutdown());
    }
}

/// The uploader's counters for a metrics snapshot, when there is an uploader.
fn upload_watch(
    upload: Option<&UploadStage>,
) -> Option<Arc<dyn Fn() -> sluice_upload::UploadSnapshot + Send + Sync>> {
    upload.map(UploadStage::watch)
}

/// `sluice run`: receive until SIGINT/SIGTERM.
pub fn run(config: &Config, options: &RunOptions) -> Result<Report, AppError> {
    match config.source.kind {
        #[cfg(feature = "xdp")]
        SourceKind::Xdp => run_xdp(config, options),
        #[cfg(not(feature = "xdp"))]
        SourceKind::Xdp => Err(AppError::NoXdp),
        SourceKind::Udp => run_udp(config, options),
    }
}

/// Starts the metrics endpoint when enabled; `snapshot` reads the published counters.
fn start_metrics(
    config: &Config,
    queues: &[String],
    snapshot: Arc<dyn Fn() -> Snapshot + Send + Sync>,
) -> Result<Option<MetricsServer>, AppError> {
    if !config.metrics.enabled {
        return Ok(None);
    }
    let streams: Vec<(String, Vec<&'static str>)> = config
        .streams()?
        .streams
        .iter()
        .map(|s| (s.name.clone(), s.factory.error_kinds().to_vec()))
        .collect();
    let metrics = Metrics::new(&streams, queues)?;
    Ok(Some(MetricsServer::start(
        config.metrics.listen,
        config.metrics.max_connections,
        metrics,
        snapshot,
    )?))
}

#[cfg(feature = "xdp")]
fn redirected(verdicts: &[u64]) -> u64 {
    verdicts[Verdict::RedirectGre as usize] + verdicts[Verdict::RedirectPlain as usize]
}

#[cfg(feature = "xdp")]
fn run_xdp(config: &Config, options: &RunOptions) -> Result<Report, AppError> {
    let mut notifier = Notifier::from_env();
    let stop = stop_flag()?;
    let filter = PortFilter::new(&config.filter);
    let mut program = XdpProgram::load(&config.source, &filter)?;
    let sockets = program.open_sockets(&config.source)?;
    program.self_test(&config.source, &filter)?;
    let bound: Vec<_> = sockets
        .iter()
        .map(|s| (s.queue_id(), s.bound_mode()))
        .collect();
    let modes = Arc::new(std::sync::OnceLock::<LinkModes>::new());
    let details = DetailSet::new(config.metrics.max_tunnels as usize);
    let streams = config.streams()?;
    let (pipeline, upload) = start_pipeline(config, filter, &streams, &details)?;
    let netflow = streams.netflow();
    let ready = Arc::new(AtomicBool::new(false));
    let queues: Vec<String> = config.source.queues.iter().map(u32::to_string).collect();
    let snapshot = {
        let (verdicts, counters, details, ready, uploads, modes) = (
            program.verdicts(),
            pipeline.counters().clone(),
            details.clone(),
            Arc::clone(&ready),
            upload_watch(upload.as_ref()),
            Arc::clone(&modes),
        );
        Arc::new(move || {
            let verdicts = verdicts.read().unwrap_or_default();
            Snapshot {
                seen: if verdicts.is_empty() {
                    0
                } else {
                    redirected(&verdicts)
                },
                totals: counters.total(),
                verdicts,
                detail: details.total(),
                ready: ready.load(Ordering::Relaxed),
                upload: uploads.as_ref().map(|watch| watch()),
                modes: modes.get().cloned().unwrap_or_default(),
                netflow: NetflowSnapshot::read(&netflow),
            }
        })
    };
    let metrics = start_metrics(config, &queues, snapshot)?;
    let draining = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::with_capacity(sockets.len());
    for socket in sockets {
        let frames = pipeline.frame_sender();
        let counters = pipeline.counters().register();
        let (slot, local) = (details.register(), details.local());
        let draining = Arc::clone(&draining);
        let spin = config.source.busy_poll_usecs > 0;
        let name = format!("sluice-rx-q{}", socket.queue_id());
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || receive_loop(socket, spin, frames, draining, counters, slot, local))
            .map_err(io("starting receive thread"))?;
        receivers.push(handle);
    }
    program.attach(config.source.xdp_mode)?;
    let link_modes = program.link_modes(&config.source, &bound);
    let modes_line = link_modes.summary();
    let _ = modes.set(link_modes.clone());
    ready.store(true, Ordering::Relaxed);
    mark_ready(options, &link_modes)?;
    let current = || {
        let verdicts = program.verdict_counts().unwrap_or_default();
        let seen = if verdicts.is_empty() {
            0
        } else {
            redirected(&verdicts)
        };
        let report = Report::new("xdp", seen, &pipeline.counters().total(), &verdicts);
        (report, verdicts)
    };
    notifier.ready(&status_line(&current().0, &modes_line));

    let mut missed = MissedWatch::default();
    wait_for_stop(
        &stop,
        config.pipeline.stats_interval_secs,
        || {
            let (report, verdicts) = current();
            if let Some(m) = missed.check(&verdicts, Instant::now()) {
                tracing::error!(
                    interface = %config.source.interface,
                    packets = m.new,
                    total = m.total,
                    "steered packets passed to the kernel unrecorded (pass_no_socket): they \
                     arrive on a queue with no socket; list every queue in source.queues"
                );
            }
            notifier.status(&status_line(&report, &modes_line));
            notifier.watchdog();
        },
        || tracing::info!("{}", current().0.summary()),
    );
    ready.store(false, Ordering::Relaxed);
    notifier.stopping("stopping: detaching XDP, draining rings, flushing batches");

    tracing::info!("stopping: detaching XDP, draining rings, flushing batches");
    program.detach();
    // Let packets already inside the program on other CPUs land in the rings.
    std::thread::sleep(Duration::from_millis(50));
    draining.store(true, Ordering::Release);
    let mut sockets = Vec::new();
    for handle in receivers {
        match handle.join() {
            Ok(socket) => sockets.push(socket),
            Err(_) => tracing::error!("a receive thread panicked"),
        }
    }
    let mut totals = pipeline.finish();
    let verdicts = program.verdict_counts()?;
    let seen = redirected(&verdicts);
    let reached_rings = totals.received
        + totals.dropped[DropReason::RingFull as usize]
        + totals.dropped[DropReason::XskRxDropped as usize];
    // Redirected by the program but in no ring and in no kernel drop counter.
    totals.dropped[DropReason::RedirectError as usize] = seen.saturating_sub(reached_rings);
    drop(sockets);
    let mut report = Report::new("xdp", seen, &totals, &verdicts);
    finish_upload(upload, &mut report);
    finish(&report, options)?;
    drop(metrics);
    Ok(report)
}

/// Seen by the UDP source: datagrams read, and those the socket buffer overflowed on.
fn udp_seen(t: &LocalCounters) -> u64 {
    t.received + t.dropped[DropReason::SocketOverflow as usize]
}

fn run_udp(config: &Config, options: &RunOptions) -> Result<Report, AppError> {
    let mut notifier = Notifier::from_env();
    let stop = stop_flag()?;
    let listeners = config
        .source
        .udp_listen
        .iter()
        .map(|addr| UdpListener::bind(*addr, config.source.udp_recv_buffer_bytes))
        .collect::<Result<Vec<_>, _>>()?;
    let details = DetailSet::new(config.metrics.max_tunnels as usize);
    let streams = config.streams()?;
    let (pipeline, upload) =
        start_pipeline(config, PortFilter::new(&config.filter), &streams, &details)?;
    let netflow = streams.netflow();
    let ready = Arc::new(AtomicBool::new(false));
    let snapshot = {
        let (counters, details, ready, uploads): (CounterSet, DetailSet, _, _) = (
            pipeline.counters().clone(),
            details.clone(),
            Arc::clone(&ready),
            upload_watch(upload.as_ref()),
        );
        Arc::new(move || {
            let totals = counters.total();
            Snapshot {
                seen: udp_seen(&totals),
                totals,
                verdicts: Vec::new(),
                detail: details.total(),
                ready: ready.load(Ordering::Relaxed),
                upload: uploads.as_ref().map(|watch| watch()),
                modes: LinkModes::default(),
                netflow: NetflowSnapshot::read(&netflow),
            }
        })
    };
    let metrics = start_metrics(config, &["udp".to_owned()], snapshot)?;
    let receiving = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for listener in listeners {
        let frames = pipeline.frame_sender();
        let counters = pipeline.counters().register();
        let (slot, local) = (details.register(), details.local());
        let stopped = Arc::clone(&receiving);
        tracing::info!(addr = %listener.local_addr(), "listening for UDP");
        let handle = std::thread::Builder::new()
            .name("sluice-udp".into())
            .spawn(move || listener.run(frames, stopped, counters, slot, local))
            .map_err(io("starting UDP thread"))?;
        threads.push(handle);
    }
    ready.store(true, Ordering::Relaxed);
    mark_ready(options, &LinkModes::default())?;
    let current = || {
        let totals = pipeline.counters().total();
        Report::new("udp", udp_seen(&totals), &totals, &[])
    };
    notifier.ready(&current().summary());
    wait_for_stop(
        &stop,
        config.pipeline.stats_interval_secs,
        || {
            notifier.status(&current().summary());
            notifier.watchdog();
        },
        || tracing::info!("{}", current().summary()),
    );
    ready.store(false, Ordering::Relaxed);
    notifier.stopping("stopping: closing sockets, flushing batches");
    receiving.store(true, Ordering::Relaxed);
    for handle in threads {
        if handle.join().is_err() {
            tracing::error!("a UDP thread panicked");
        }
    }
    let totals = pipeline.finish();
    let mut report = Report::new("udp", udp_seen(&totals), &totals, &[]);
    finish_upload(upload, &mut report);
    finish(&report, options)?;
    drop(metrics);
    Ok(report)
}

/// `sluice replay`: the capture through the pipeline, then exit.
pub fn replay(config: &Config, input: &Path, options: &RunOptions) -> Result<Report, AppError> {
    let mut config = config.clone();
    config.pipeline.packet_clock = true;
    let config = &config;
    let details = DetailSet::new(config.metrics.max_tunnels as usize);
    let (pipeline, upload) = start_pipeline(
        config,
        PortFilter::new(&config.filter),
        &config.streams()?,
        &details,
    )?;
    let frames = pipeline.frame_sender();
    let reader_counters = pipeline.counters().register();
    let mut local = LocalCounters::default();
    let result = replay::replay(input, &frames, &mut local);
    reader_counters.publish(&local);
    drop(frames);
    let totals = pipeline.finish();
    result?;
    let passed: u64 = totals.passed.iter().sum();
    let mut report = Report::new(
        "replay",
        totals.received - passed.min(totals.received),
        &totals,
        &totals.passed,
    );
    finish_upload(upload, &mut report);
    finish(&report, options)?;
    Ok(report)
}

/// `sluice check`: the effective configuration as TOML.
pub fn check(path: &Path) -> Result<String, AppError> {
    let config = Config::load(path)?;
    Ok(config.to_toml())
}

/// `sluice bigquery-ddl`: one `CREATE EXTERNAL TABLE` statement per stream, for the
/// configured format, named `<dataset>.<stream>`, reading `gs://bucket/prefix/<stream>/`
/// (or `<uri_prefix>/<stream>/` for a directory sink whose files are copied there), with
/// `options` (`--require-partition-filter`).
pub fn bigquery_ddl(
    config: &Config,
    dataset: &str,
    uri_prefix: Option<&str>,
    options: sluice_formats::DdlOptions,
) -> Result<String, AppError> {
    let base = match (uri_prefix, &config.sink.gcs) {
        (Some(prefix), _) => prefix.trim_end_matches('/').to_owned(),
        (None, Some(gcs)) if config.sink.kind == crate::config::SinkKind::Gcs => {
            if gcs.prefix.is_empty() {
                format!("gs://{}", gcs.bucket)
            } else {
                format!("gs://{}/{}", gcs.bucket, gcs.prefix.trim_matches('/'))
            }
        }
        (None, _) => {
            return Err(AppError::Ddl(
                "sink.kind = \"directory\" has no bucket: pass --uri-prefix gs://BUCKET/PATH (where the stream folders are copied)".into(),
            ));
        }
    };
    let mut out = String::new();
    for stream in config.streams()?.streams {
        let table = format!("{}.{}", dataset.trim_end_matches('.'), stream.name);
        let ddl = sluice_formats::bigquery_ddl(
            &table,
            &format!("{base}/{}", stream.name),
            config.sink.format,
            stream.factory.schema(),
            options,
        )
        .map_err(|e| AppError::Ddl(format!("sink.format = \"{}\": {e}", config.sink.format)))?;
        out.push_str(&ddl);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigquery_ddl_reads_the_default_format() -> Result<(), AppError> {
        // Only the required field: the default sink format (parquet) must be readable.
        let config = Config::parse("[source]\ninterface = \"eth0\"\n")?;
        let options = sluice_formats::DdlOptions::default();
        let ddl = bigquery_ddl(&config, "proj.telemetry", Some("gs://b/p/"), options)?;
        assert!(
            ddl.starts_with("CREATE EXTERNAL TABLE `proj.telemetry.raw`\n(\n"),
            "{ddl}"
        );
        assert!(
            ddl.ends_with(
                "OPTIONS (\n  format = 'PARQUET',\n  uris = ['gs://b/p/raw/*'],\n  \
                 hive_partition_uri_prefix = 'gs://b/p/raw',\n  \
                 require_hive_partition_filter = false\n);\n\n"
            ),
            "{ddl}"
        );
        let required = sluice_formats::DdlOptions {
            require_partition_filter: true,
        };
        let ddl = bigquery_ddl(&config, "proj.telemetry", Some("gs://b/p"), required)?;
        assert!(
            ddl.ends_with("  require_hive_partition_filter = true\n);\n\n"),
            "{ddl}"
        );
        assert_eq!(
            bigquery_ddl(&config, "d", None, options)
                .map_err(|e| e.to_string())
                .err()
                .as_deref(),
            Some(
                "sink.kind = \"directory\" has no bucket: pass --uri-prefix gs://BUCKET/PATH (where the stream folders are copied)"
            )
        );
        Ok(())
    }
}
