//! The run itself: for every sweep of a row a fresh lab (two namespaces and a veth), the
//! row's receiver, the generator, and one measurement per offered rate; then the
//! sustained overload of the sluice pipeline. A row that cannot be set up, or a step that
//! fails, is recorded with its error and the run goes on, so one broken receiver does not
//! cost the other rows. Namespaces are deleted when each sweep ends (and on Ctrl-C, by
//! the test kit).
//!
//! While the generator runs, a sampler thread reads the daemon's receive threads'
//! run-queue wait every ~20 ms ([`WaitSampler`]); its own cost is a small file read per
//! sample.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::generator::Generator;
use crate::lab::BenchLab;

use super::cpu::CpuSample;
use super::measurement::{
    DecoderChoice, FormatChoice, Measurement, Pipeline, Receiver, RowResults,
};
use super::medium::TMPFS_RECORDS_DIR;
use super::plan::{Plan, Rate};
use super::report::{MemoryReport, Overload};
use super::session::{DaemonPaths, RowReceiver, row_work_dir, traffic_for};
use super::threads::{ThreadGroup, WaitSampler};

/// Everything a run measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// One per row of the plan.
    pub rows: Vec<RowResults>,
    /// Peak RSS readings.
    pub memory: MemoryReport,
}

/// One line on the console for a finished step.
pub fn step_line(receiver: &Receiver, rate: Rate, m: &Measurement) -> String {
    if let Some(error) = &m.error {
        return format!(
            "  {:<42} {:>10}  FAILED: {error}",
            receiver.label(),
            rate.label()
        );
    }
    let balance = match &m.accounting {
        Some(a) if a.balanced() => " [seen = recorded + dropped]".to_owned(),
        Some(a) => format!(
            " [ACCOUNTING VIOLATION: seen {} != recorded {} + dropped {}, in flight {}]",
            a.seen, a.recorded, a.dropped_total, a.in_flight
        ),
        None => String::new(),
    };
    let short = m.generator_shortfall().map_or_else(String::new, |share| {
        format!(
            " [generator reached only {:.0}% of the asked rate]",
            share * 100.0
        )
    });
    let us = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{v:.3}"));
    let generator = m
        .generator_cpu_seconds
        .map_or_else(String::new, |s| format!(", generator thread {s:.2} s"));
    let machine = if m.machine_cpu_trusted() {
        format!(
            "machine {} µs/pkt, busy {} % (softirq {} %)",
            us(m.machine_us_per_packet()),
            m.cpu.per_core(),
            m.cpu.softirq_per_core()
        )
    } else {
        "machine – (/proc/stat missed time)".into()
    };
    let threads = m.thread_us_per_packet().map_or_else(String::new, |t| {
        format!(
            " (rx {:.3}, workers {:.3}, sink {:.3}, other {:.3})",
            t.receive, t.workers, t.sink, t.other
        )
    });
    let wait = match (m.receive_wait_ms_per_second(), m.receive_wait) {
        (Some(per_second), Some(wait)) => format!(
            ", rx run-queue wait {per_second:.1} ms/s (worst 20 ms: {:.1} ms)",
            wait.worst_window_seconds * 1e3
        ),
        _ => String::new(),
    };
    format!(
        "  {:<42} {:>10}  offered {:.3} Mpps ({}), recorded {:.3} Mpps ({}), process {} \
         µs/pkt{threads}{wait}{generator}, {machine}; {}{balance}{short}",
        receiver.label(),
        rate.label(),
        m.offered_pps() / 1e6,
        m.offered,
        m.handled_pps() / 1e6,
        m.handled,
        us(m.process_us_per_packet()),
        m.loss_summary(),
    )
}

/// Where a row's records go: the plan's disk, or a directory on tmpfs made for the run.
struct RecordRoots<'a> {
    disk: &'a Path,
    tmpfs: Option<Result<tempfile::TempDir, String>>,
}

impl RecordRoots<'_> {
    fn for_receiver(&mut self, receiver: &Receiver) -> Result<PathBuf, String> {
        if !receiver.records_in_memory() {
            return Ok(self.disk.to_owned());
        }
        let made = self.tmpfs.get_or_insert_with(|| {
            tempfile::Builder::new()
                .prefix("sluice-bench-records-")
                .tempdir_in(TMPFS_RECORDS_DIR)
                .map_err(|e| format!("creating a directory in {TMPFS_RECORDS_DIR}: {e}"))
        });
        match made {
            Ok(dir) => Ok(dir.path().to_owned()),
            Err(e) => Err(e.clone()),
        }
    }
}

/// `row label` or `row label, run 2` when the receiver has more than one sweep.
fn sweep_label(receiver: &Receiver, run: usize, runs: usize) -> String {
    if runs > 1 {
        format!("{}, run {}", receiver.label(), run + 1)
    } else {
        receiver.label()
    }
}

/// Runs the plan; `work` holds configs and logs, `plan.records_root` the records (and a
/// directory made in [`TMPFS_RECORDS_DIR`] those of the `(tmpfs)` rows).
pub fn run(plan: &Plan, work: &Path) -> Outcome {
    let mut outcome = Outcome::default();
    let mut roots = RecordRoots {
        disk: &plan.records_root,
        tmpfs: None,
    };
    for (index, receiver) in plan.rows.iter().enumerate() {
        let run = plan.rows[..index].iter().filter(|r| *r == receiver).count();
        let runs = plan.rows.iter().filter(|r| *r == receiver).count();
        let label = sweep_label(receiver, run, runs);
        println!("row {}/{}: {label}", index + 1, plan.rows.len());
        let steps = match roots.for_receiver(receiver) {
            Ok(records) => measure_row(
                plan,
                work,
                &records,
                index,
                receiver,
                &plan.rates,
                plan.step,
            ),
            Err(e) => all_failed(receiver, &plan.rates, &e),
        };
        if receiver.pipeline().is_some()
            && let Some(highest) = steps
                .iter()
                .filter(|m| m.error.is_none())
                .max_by(|a, b| a.offered_pps().total_cmp(&b.offered_pps()))
            && let Some(kib) = highest.peak_rss_kib
        {
            outcome
                .memory
                .at_highest_rate
                .push((label, highest.offered_pps() / 1e6, kib));
        }
        outcome.rows.push(RowResults {
            receiver: receiver.clone(),
            run,
            steps,
        });
    }
    if !plan.overload.is_zero() {
        let receiver = Receiver::Sluice(Pipeline {
            decoder: DecoderChoice::Raw,
            format: FormatChoice::NdjsonZstd,
        });
        println!(
            "overload: {} flat out for {:.0} s",
            receiver.label(),
            plan.overload.as_secs_f64()
        );
        let steps = measure_row(
            plan,
            work,
            &plan.records_root,
            plan.rows.len(),
            &receiver,
            &[Rate::FlatOut],
            plan.overload,
        );
        if let Some(measurement) = steps.into_iter().next() {
            outcome.memory.overload = Some(Overload {
                label: receiver.label(),
                measurement,
            });
        }
    }
    outcome
}

/// A measurement that failed before or while it ran.
fn failed(rate: Rate, error: impl std::fmt::Display) -> Measurement {
    Measurement {
        target_pps: match rate {
            Rate::Pps(pps) => Some(pps as f64),
            Rate::FlatOut => None,
        },
        error: Some(error.to_string()),
        ..Measurement::default()
    }
}

/// Every step of a row that could not run, failed with `error` (and printed).
fn all_failed(receiver: &Receiver, rates: &[Rate], error: &str) -> Vec<Measurement> {
    let steps: Vec<Measurement> = rates.iter().map(|r| failed(*r, error)).collect();
    for (rate, m) in rates.iter().zip(&steps) {
        println!("{}", step_line(receiver, *rate, m));
    }
    steps
}

/// Every step of one sweep of a row, in a lab of its own, records under `records`.
fn measure_row(
    plan: &Plan,
    work: &Path,
    records: &Path,
    index: usize,
    receiver: &Receiver,
    rates: &[Rate],
    step: Duration,
) -> Vec<Measurement> {
    let all_failed = |error: String| all_failed(receiver, rates, &error);
    let lab = match BenchLab::create() {
        Ok(lab) => lab,
        Err(e) => return all_failed(format!("lab: {e}")),
    };
    let paths = DaemonPaths {
        binary: plan.sluice.clone(),
        work: row_work_dir(work, index),
        records_root: records.to_owned(),
    };
    if let Err(e) = std::fs::create_dir_all(&paths.work) {
        return all_failed(format!("creating {}: {e}", paths.work.display()));
    }
    let row = match RowReceiver::prepare(receiver, &lab) {
        Ok(row) => row,
        Err(e) => return all_failed(e.to_string()),
    };
    let mix = traffic_for(receiver, plan.payload_len, plan.acme_events);
    let mut generator = match Generator::new(&lab, &mix) {
        Ok(generator) => generator,
        Err(e) => return all_failed(format!("generator: {e}")),
    };
    let mut steps = Vec::with_capacity(rates.len());
    for (n, rate) in rates.iter().enumerate() {
        let name = format!("step{n}");
        let m = measure_step(
            plan,
            &lab,
            &row,
            receiver,
            &paths,
            &name,
            &mut generator,
            *rate,
            step,
        );
        println!("{}", step_line(receiver, *rate, &m));
        steps.push(m);
    }
    drop(row);
    drop(lab);
    steps
}

/// One receiver at one rate.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
fn measure_step(
    plan: &Plan,
    lab: &BenchLab,
    row: &RowReceiver,
    receiver: &Receiver,
    paths: &DaemonPaths,
    name: &str,
    generator: &mut Generator,
    rate: Rate,
    step: Duration,
) -> Measurement {
    let mut m = failed(rate, "");
    m.error = None;
    let mut session = match row.start_step(receiver, lab, plan, paths, name) {
        Ok(session) => session,
        Err(e) => return failed(rate, e),
    };
    let before = match CpuSample::now() {
        Ok(sample) => sample,
        Err(e) => return failed(rate, e),
    };
    session.traffic_starts();
    let wait = session
        .daemon_pid()
        .map(|pid| WaitSampler::start(pid, ThreadGroup::Receive));
    let started = Instant::now();
    let done = AtomicBool::new(false);
    let (report, wait) = std::thread::scope(|scope| {
        let sampler = wait.map(|wait| scope.spawn(|| wait.watch(&done)));
        let report = generator.run(
            rate.generator_pps(),
            step,
            rate.max_packets(step),
            plan.generator_cpu,
        );
        done.store(true, Ordering::Relaxed);
        let wait = sampler.and_then(|sampler| sampler.join().ok());
        (report, wait)
    });
    let after_traffic = CpuSample::now();
    m.receive_wait = wait.as_ref().and_then(WaitSampler::result);
    // Peak RSS under load: read while the backlog is largest, before batches are sealed.
    let rss_under_load = session
        .daemon_pid()
        .and_then(|pid| super::cpu::peak_rss_kib(pid).ok());
    std::thread::sleep(plan.settle);
    let after_settle = CpuSample::now();
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            let _ = session.finish(&mut m);
            return failed(
                rate,
                format!("generator after {:?}: {e}", started.elapsed()),
            );
        }
    };
    m.offered = report.offered;
    m.elapsed = report.elapsed;
    m.generator_cpu_seconds = Some(report.thread_cpu.as_secs_f64());
    m.generator_core = Some(plan.generator_cpu);
    if let (Ok(traffic), Ok(settle)) = (after_traffic, after_settle) {
        m.cpu = before.usage_until(&traffic);
        m.cpu.busy_seconds = before.usage_until(&settle).busy_seconds;
    }
    if let Err(e) = session.finish(&mut m) {
        m.error = Some(e.to_string());
    }
    m.peak_rss_kib = m.peak_rss_kib.max(rss_under_load);
    m
}
