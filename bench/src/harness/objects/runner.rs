//! The objects benchmark's runs: one lab (two namespaces and a veth) and one generator
//! for all of them; per rate and mode a fresh emulator on the receiver's loopback, a
//! fresh spool and a `sluice run` uploading to it, the traffic window with its probes,
//! SIGTERM, and the checks that everything reached the bucket. A run that fails is
//! recorded with its error and the others go on. The emulator and the daemon are stopped
//! by PID (their guards), the spool and the emulator's objects deleted, after every run.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice_testkit::gcs::Emulator;

use super::outcome::ObjectsRun;
use super::probe::{self, METRICS_PORT};
use super::{BUCKET, EMULATOR_ADDRESS, ObjectMode, ObjectsPlan, PREFIX, SAMPLE_EVERY};
use crate::generator::Generator;
use crate::harness::cpu::{self, CpuSample};
use crate::harness::daemon_config::{DaemonConfig, GcsSink, SinkChoice, SourceChoice};
use crate::harness::daemon_run::DaemonRun;
use crate::harness::measurement::{DecoderChoice, FormatChoice, Pipeline, Receiver};
use crate::harness::plan::{RAW_PORT, Rate, SCHEMA_PORT};
use crate::harness::session::traffic_for;
use crate::harness::threads::ThreadCpu;
use crate::lab::BenchLab;

/// Why a run could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// A directory could not be made or read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The emulator did not start, or its listing failed.
    #[error("emulator: {0}")]
    Emulator(std::io::Error),
    /// The daemon did not start or stop.
    #[error("sluice: {0}")]
    Daemon(#[from] crate::harness::daemon_run::DaemonRunError),
    /// Its `/metrics` could not be read.
    #[error(transparent)]
    Probe(#[from] probe::ProbeError),
    /// /proc/stat could not be read.
    #[error(transparent)]
    Cpu(#[from] cpu::CpuError),
    /// The generator failed.
    #[error("generator: {0}")]
    Generator(#[from] crate::generator::GenError),
}

/// The pipeline every run uses: raw → Parquet.
pub const PIPELINE: Pipeline = Pipeline {
    decoder: DecoderChoice::Raw,
    format: FormatChoice::Parquet,
};

/// One line on the console for a finished run.
pub fn run_line(run: &ObjectsRun) -> String {
    let head = format!(
        "  {:>9} {:<9} {:>4.0} s",
        run.rate.label(),
        run.mode.short(),
        run.traffic.as_secs_f64()
    );
    if let Some(error) = &run.error {
        return format!("{head}  FAILED: {error}");
    }
    let problems = run.upload_problems();
    let exit = if problems.is_empty() {
        "all uploaded, spool empty".to_owned()
    } else {
        format!("NOT ALL UPLOADED: {}", problems.join("; "))
    };
    format!(
        "{head}  offered {:.3} Mpps, {} objects in {:.0} s ({:.0}/h), {} each, {} batches each; \
         uploader {:.3} CPU s/s over {} threads, daemon {} s/Mpkt; dropped: {}{}; {exit}",
        run.offered_pps() / 1e6,
        run.objects_in_window(),
        run.window.as_secs_f64(),
        run.objects_per_hour(),
        run.mean_object_bytes()
            .map_or_else(|| "–".into(), super::report::size_label),
        run.batches_per_object()
            .map_or_else(|| "–".into(), |b| format!("{b:.1}")),
        run.uploader_cpu_per_second(),
        run.uploader_threads,
        run.daemon_seconds_per_mpkt()
            .map_or_else(|| "–".into(), |s| format!("{s:.2}")),
        run.drop_reasons(),
        if run.balanced() {
            " [seen = recorded + dropped]"
        } else {
            " [ACCOUNTING VIOLATION]"
        },
    )
}

/// Runs the plan; `work` holds the daemons' configs and logs, `plan.spool_root` their
/// spools, `plan.emulator_root` the emulators' objects.
pub fn run(plan: &ObjectsPlan, work: &Path) -> Vec<ObjectsRun> {
    let runs = plan.runs();
    let all_failed = |error: String| -> Vec<ObjectsRun> {
        runs.iter()
            .map(|(rate, mode, traffic)| {
                let mut run = ObjectsRun::new(*rate, *mode, *traffic);
                run.error = Some(error.clone());
                println!("{}", run_line(&run));
                run
            })
            .collect()
    };
    let lab = match BenchLab::create() {
        Ok(lab) => lab,
        Err(e) => return all_failed(format!("lab: {e}")),
    };
    let mix = traffic_for(
        &Receiver::Sluice(PIPELINE),
        plan.payload_len,
        crate::harness::plan::AcmeEvents::Repeated,
    );
    let mut generator = match Generator::new(&lab, &mix) {
        Ok(generator) => generator,
        Err(e) => return all_failed(format!("generator: {e}")),
    };
    let mut results = Vec::with_capacity(runs.len());
    for (index, (rate, mode, traffic)) in runs.into_iter().enumerate() {
        let mut run = ObjectsRun::new(rate, mode, traffic);
        run.object_max_age_secs = mode.object_max_age_secs(plan);
        let name = format!("objects{index}-{}", mode.short());
        if let Err(e) = measure(plan, &lab, &mut generator, work, &name, &mut run) {
            run.error = Some(e.to_string());
        }
        println!("{}", run_line(&run));
        results.push(run);
    }
    results
}

/// The `sluice run` config of one run.
fn daemon_config(
    plan: &ObjectsPlan,
    lab: &BenchLab,
    mode: ObjectMode,
    spool: &Path,
) -> DaemonConfig {
    DaemonConfig {
        source: SourceChoice::Xdp {
            interface: lab.receiver_if().to_owned(),
        },
        pipeline: PIPELINE,
        ports: vec![RAW_PORT, SCHEMA_PORT],
        schema_ports: vec![SCHEMA_PORT],
        workers: plan.workers,
        queue_depth: plan.queue_depth,
        busy_poll_usecs: plan.busy_poll_usecs,
        worker_scheduling: plan.worker_scheduling.clone(),
        sink: SinkChoice::Gcs(GcsSink {
            endpoint: format!("http://{EMULATOR_ADDRESS}"),
            bucket: BUCKET.into(),
            prefix: PREFIX.into(),
            spool_dir: spool.to_owned(),
            object_max_age_secs: mode.object_max_age_secs(plan),
            object_target_bytes: mode.object_target_bytes(),
        }),
    }
}

/// Deletes a run's directory when dropped.
struct Scratch<'a>(&'a Path);

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0);
    }
}

/// Polls `/metrics` until the daemon answers (its endpoint starts with it; bounded).
fn first_scrape(lab: &BenchLab) -> Result<probe::UploadCounters, probe::ProbeError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match probe::scrape(lab.receiver(), METRICS_PORT) {
            Ok(counters) => return Ok(counters),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// One rate in one mode, filling `run`.
fn measure(
    plan: &ObjectsPlan,
    lab: &BenchLab,
    generator: &mut Generator,
    work: &Path,
    name: &str,
    run: &mut ObjectsRun,
) -> Result<(), ObjectsError> {
    let io = |what: String| move |source| ObjectsError::Io { what, source };
    let emulator_dir = plan.emulator_root.join(name);
    let spool = plan.spool_root.join(format!("{name}-spool"));
    let _ = std::fs::remove_dir_all(&emulator_dir);
    let _ = std::fs::remove_dir_all(&spool);
    let _emulator_scratch = Scratch(&emulator_dir);
    let _spool_scratch = Scratch(&spool);
    std::fs::create_dir_all(&spool).map_err(io(format!("creating {}", spool.display())))?;
    let emulator = Emulator::try_start_in(
        Some(lab.receiver().name()),
        &plan.emulator,
        EMULATOR_ADDRESS,
        &emulator_dir,
        &[BUCKET],
    )
    .map_err(ObjectsError::Emulator)?;
    let config = daemon_config(plan, lab, run.mode, &spool);
    let daemon = DaemonRun::start(
        &plan.sluice,
        lab.receiver(),
        work,
        &plan.spool_root,
        name,
        &config,
    )?;
    let pid = daemon.pid();

    // The window: counters, threads and CPU right before the traffic and right after.
    run.at_start = first_scrape(lab)?;
    let threads = Mutex::new(ThreadCpu::start(pid.unwrap_or(0), "sluice-upload"));
    let process_cpu = || pid.and_then(|pid| cpu::process_cpu_seconds(pid).ok());
    let emulator_cpu = || {
        emulator
            .pid()
            .and_then(|pid| cpu::process_cpu_seconds(pid).ok())
    };
    let daemon_before = process_cpu();
    let emulator_before = emulator_cpu();
    let machine_before = CpuSample::now()?;
    let started = Instant::now();
    let done = AtomicBool::new(false);
    let (report, polled) = std::thread::scope(|scope| {
        let poller = scope.spawn(|| {
            let mut polled = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let next = Instant::now() + SAMPLE_EVERY;
                while !done.load(Ordering::Relaxed) && Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if let Ok(mut threads) = threads.lock() {
                    threads.sample();
                }
                if let Ok(counters) = probe::scrape(lab.receiver(), METRICS_PORT) {
                    polled.push((started.elapsed(), counters.objects));
                }
            }
            polled
        });
        let report = generator.run(
            run.rate.generator_pps(),
            run.traffic,
            run.rate.max_packets(run.traffic),
            plan.generator_cpu,
        );
        let window = started.elapsed();
        if let Ok(mut threads) = threads.lock() {
            threads.sample();
        }
        let at_end = probe::scrape(lab.receiver(), METRICS_PORT);
        run.window = window;
        run.daemon_cpu_seconds = process_cpu()
            .zip(daemon_before)
            .map(|(after, before)| after - before);
        run.emulator_cpu_seconds = emulator_cpu()
            .zip(emulator_before)
            .map(|(after, before)| after - before);
        if let Ok(machine_after) = CpuSample::now() {
            run.machine = machine_before.usage_until(&machine_after);
        }
        done.store(true, Ordering::Relaxed);
        let polled = poller.join().unwrap_or_default();
        (report.map(|r| (r, at_end)), polled)
    });
    run.objects_polled = polled;
    if let Ok(threads) = threads.into_inner() {
        run.uploader_cpu_seconds = threads.seconds();
        run.uploader_threads = threads.threads();
    }
    let (report, at_end) = report?;
    run.offered = report.offered;
    run.generator_elapsed = report.elapsed;
    run.at_end = at_end?;

    // SIGTERM: the daemon plans and uploads all that is spooled, then exits.
    let result = daemon.stop()?;
    run.daemon_peak_rss_kib = result.peak_rss_kib;
    run.emulator_peak_rss_kib = emulator.pid().and_then(|pid| cpu::peak_rss_kib(pid).ok());
    run.dropped = result
        .stats
        .dropped
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| (reason.clone(), *n))
        .collect();
    run.batches_written = Some(result.stats.files_written);
    if let Some(upload) = &result.stats.upload {
        run.objects_uploaded = Some(upload.uploaded + upload.already_there);
        run.left_spooled_files = Some(upload.left_spooled_files);
    }
    run.accounting = Some(result.accounting);
    run.spool_leftovers = Some(
        probe::spool_leftovers(&spool)
            .map_err(io(format!("reading {}", spool.display())))?
            .len(),
    );
    let listing_started = Instant::now();
    let listing = emulator
        .try_list(BUCKET, &format!("{PREFIX}/"))
        .map_err(ObjectsError::Emulator)?;
    run.listing_took = Some(listing_started.elapsed());
    run.bucket = Some(probe::summarize(&listing));
    Ok(())
}

/// Rates of a run list, for the banner.
pub fn rates_label(rates: &[Rate]) -> String {
    rates
        .iter()
        .map(|r| r.label())
        .collect::<Vec<_>>()
        .join(", ")
}
