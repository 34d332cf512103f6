//! The run itself: for every row a fresh lab (two namespaces and a veth), the row's
//! receiver, the generator, and one measurement per offered rate; then the sustained
//! overload of the sluice pipeline. A row that cannot be set up, or a step that fails, is
//! recorded with its error and the run goes on, so one broken receiver does not cost the
//! other rows. Namespaces are deleted when each row ends (and on Ctrl-C, by the test kit).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::generator::Generator;
use crate::lab::BenchLab;

use super::cpu::CpuSample;
use super::measurement::{
    DecoderChoice, FormatChoice, Measurement, Pipeline, Receiver, RowResults,
};
use super::plan::{Plan, Rate};
use super::report::{MemoryReport, Overload};
use super::session::{DaemonPaths, RowReceiver, row_work_dir, traffic_for};

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
    format!(
        "  {:<42} {:>10}  offered {:.3} Mpps ({}), recorded {:.3} Mpps ({}), cpu {} % \
         (softirq {} %), {:.2} s/Mpkt; {}{balance}{short}",
        receiver.label(),
        rate.label(),
        m.offered_pps() / 1e6,
        m.offered,
        m.handled_pps() / 1e6,
        m.handled,
        m.cpu.per_core(),
        m.cpu.softirq_per_core(),
        m.cpu_seconds_per_mpkt().unwrap_or(f64::NAN),
        m.loss_summary(),
    )
}

/// Runs the plan; `work` holds configs and logs, `plan.records_root` the records.
pub fn run(plan: &Plan, work: &Path) -> Outcome {
    let mut outcome = Outcome::default();
    for (index, receiver) in plan.rows.iter().enumerate() {
        println!(
            "row {}/{}: {}",
            index + 1,
            plan.rows.len(),
            receiver.label()
        );
        let steps = measure_row(plan, work, index, receiver, &plan.rates, plan.step);
        if receiver.pipeline().is_some()
            && let Some(highest) = steps
                .iter()
                .filter(|m| m.error.is_none())
                .max_by(|a, b| a.offered_pps().total_cmp(&b.offered_pps()))
            && let Some(kib) = highest.peak_rss_kib
        {
            outcome.memory.at_highest_rate.push((
                receiver.label(),
                highest.offered_pps() / 1e6,
                kib,
            ));
        }
        outcome.rows.push(RowResults {
            receiver: receiver.clone(),
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

/// Every step of one row, in a lab of its own.
fn measure_row(
    plan: &Plan,
    work: &Path,
    index: usize,
    receiver: &Receiver,
    rates: &[Rate],
    step: Duration,
) -> Vec<Measurement> {
    let all_failed = |error: String| -> Vec<Measurement> {
        let steps: Vec<Measurement> = rates.iter().map(|r| failed(*r, &error)).collect();
        for (rate, m) in rates.iter().zip(&steps) {
            println!("{}", step_line(receiver, *rate, m));
        }
        steps
    };
    let lab = match BenchLab::create() {
        Ok(lab) => lab,
        Err(e) => return all_failed(format!("lab: {e}")),
    };
    let paths = DaemonPaths {
        binary: plan.sluice.clone(),
        work: row_work_dir(work, index),
        records_root: plan.records_root.clone(),
    };
    if let Err(e) = std::fs::create_dir_all(&paths.work) {
        return all_failed(format!("creating {}: {e}", paths.work.display()));
    }
    let row = match RowReceiver::prepare(receiver, &lab) {
        Ok(row) => row,
        Err(e) => return all_failed(e.to_string()),
    };
    let mix = traffic_for(receiver, plan.payload_len);
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
    let started = Instant::now();
    let report = generator.run(
        rate.generator_pps(),
        step,
        rate.max_packets(step),
        plan.generator_cpu,
    );
    let after_traffic = CpuSample::now();
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
