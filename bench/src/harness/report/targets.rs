//! The packet-rate targets (issue 13, "Benchmark what operators run"), each with what the
//! run measured, and the comparisons with the ceilings, the kernel path and tmpfs, which
//! are information, not targets. Targets are the benchmark's goals, never tests: a missed
//! one is reported in BENCHMARKS.md, it does not fail the run. The `lua` decoder's
//! targets (issue 14) are in [`super::lua_targets`], built from the verdicts here.
//!
//! A target over several runs (`--runs`) is met only if it was met in every run. Rates
//! and CPU figures are compared as the tables show them (Mpps and µs to three decimals),
//! so a step the generator offered at 0.99996 Mpps, shown as 1.000, counts as 1 Mpps.

use crate::harness::measurement::{
    DecoderChoice, FormatChoice, Measurement, Pipeline, Receiver, ReceiverRuns, RowResults,
    by_receiver,
};

use super::MemoryReport;
use super::tables::{mpps, per_run};

/// The rate the CPU target (and the summary's second CPU column) is read at.
pub const CPU_TARGET_RATE_PPS: f64 = 1e6;
/// raw → Parquet on disk: zero loss at this rate or more, in every run.
pub const PARQUET_ZERO_LOSS_PPS: f64 = 1.0e6;
/// raw → NDJSON+zstd on disk: zero loss at this rate or more, in every run.
pub const NDJSON_ZERO_LOSS_PPS: f64 = 1.5e6;
/// raw → Parquet on disk: the daemon's CPU per packet at [`CPU_TARGET_RATE_PPS`], at most.
pub const PARQUET_CPU_US_PER_PACKET: f64 = 0.45;

const RAW_PARQUET: Pipeline = Pipeline {
    decoder: DecoderChoice::Raw,
    format: FormatChoice::Parquet,
};
const RAW_NDJSON: Pipeline = Pipeline {
    decoder: DecoderChoice::Raw,
    format: FormatChoice::NdjsonZstd,
};

/// What a run made of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Met in every run.
    Met,
    /// Missed in at least one run.
    Missed,
    /// The run did not measure it (row or rate not in the plan, a step that failed).
    NotMeasured,
}

/// One target and what this run measured of it.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetResult {
    /// The goal, in words.
    pub goal: String,
    /// Met, missed or not measured.
    pub verdict: Verdict,
    /// The figures behind the verdict, one per run.
    pub measured: String,
}

impl TargetResult {
    /// `goal: met (1.000 / 1.250 Mpps)`.
    pub fn line(&self) -> String {
        let verdict = match self.verdict {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::NotMeasured => "not measured",
        };
        format!("{}: {verdict} ({})", self.goal, self.measured)
    }
}

/// A value as the tables show it, in thousandths (kpps for a rate in pps, ns for µs).
fn thousandths(value: f64, unit: f64) -> i64 {
    (value / unit * 1e3).round() as i64
}

/// Zero loss at `at_least_pps` or more in every run (`runs`: each run's highest zero-loss
/// rate, pps, `None` where none was loss-free).
pub fn zero_loss_verdict(runs: &[Option<f64>], at_least_pps: f64) -> Verdict {
    let target = thousandths(at_least_pps, 1e6);
    if runs.is_empty() {
        Verdict::NotMeasured
    } else if runs
        .iter()
        .all(|run| run.is_some_and(|pps| thousandths(pps, 1e6) >= target))
    {
        Verdict::Met
    } else {
        Verdict::Missed
    }
}

/// CPU µs per packet at most `at_most_us` in every run (`runs`: each run's figure, `None`
/// where it was not measured).
pub fn cpu_verdict(runs: &[Option<f64>], at_most_us: f64) -> Verdict {
    let target = thousandths(at_most_us, 1.0);
    if runs
        .iter()
        .any(|run| run.is_some_and(|us| thousandths(us, 1.0) > target))
    {
        Verdict::Missed
    } else if !runs.is_empty() && runs.iter().all(Option::is_some) {
        Verdict::Met
    } else {
        Verdict::NotMeasured
    }
}

pub(super) fn runs_of<'a>(
    groups: &'a [ReceiverRuns<'a>],
    receiver: &Receiver,
) -> &'a [&'a RowResults] {
    groups
        .iter()
        .find(|g| g.receiver == receiver)
        .map_or(&[], |g| g.runs.as_slice())
}

pub(super) fn zero_loss_target(
    groups: &[ReceiverRuns<'_>],
    pipeline: Pipeline,
    pps: f64,
) -> TargetResult {
    let receiver = Receiver::Sluice(pipeline);
    let runs = runs_of(groups, &receiver);
    let rates: Vec<Option<f64>> = runs.iter().map(|r| r.zero_loss_pps()).collect();
    let shown: Vec<Option<f64>> = rates.iter().map(|r| r.map(|pps| pps / 1e6)).collect();
    TargetResult {
        goal: format!(
            "{} (on disk) with zero loss at ≥ {:.1} Mpps in every run",
            receiver.label(),
            pps / 1e6
        ),
        verdict: zero_loss_verdict(&rates, pps),
        measured: if runs.is_empty() {
            "the row was not run".into()
        } else {
            format!("{} Mpps", per_run(&shown, 3, "none"))
        },
    }
}

fn cpu_target(groups: &[ReceiverRuns<'_>]) -> TargetResult {
    let receiver = Receiver::Sluice(RAW_PARQUET);
    let runs = runs_of(groups, &receiver);
    let values: Vec<Option<f64>> = runs
        .iter()
        .map(|r| {
            r.step_at(CPU_TARGET_RATE_PPS)
                .and_then(Measurement::process_us_per_packet)
        })
        .collect();
    let measured = if runs.is_empty() {
        "the row was not run".into()
    } else if !runs.iter().any(|r| r.asked(CPU_TARGET_RATE_PPS)) {
        "1 Mpps was not one of the rates".into()
    } else {
        format!("{} µs per packet", per_run(&values, 3, "–"))
    };
    TargetResult {
        goal: format!(
            "the daemon's CPU at 1 Mpps, {} (on disk): ≤ {PARQUET_CPU_US_PER_PACKET:.2} µs per \
             packet in every run",
            receiver.label()
        ),
        verdict: cpu_verdict(&values, PARQUET_CPU_US_PER_PACKET),
        measured,
    }
}

fn accounting_target(rows: &[RowResults], memory: &MemoryReport) -> TargetResult {
    let checked = rows
        .iter()
        .flat_map(|r| r.steps.iter())
        .chain(memory.overload.iter().map(|o| &o.measurement))
        .filter(|m| m.accounting.is_some())
        .count();
    let violations = super::accounting_violations(rows, memory).len();
    TargetResult {
        goal: "seen = recorded + dropped in every run of the daemon (every step of every sweep)"
            .into(),
        verdict: match (checked, violations) {
            (0, _) => Verdict::NotMeasured,
            (_, 0) => Verdict::Met,
            _ => Verdict::Missed,
        },
        measured: if violations == 0 {
            format!("all {checked} balanced")
        } else {
            format!("{violations} of {checked} did not balance")
        },
    }
}

/// The targets, each with this run's figures.
pub fn targets(rows: &[RowResults], memory: &MemoryReport) -> Vec<TargetResult> {
    let groups = by_receiver(rows);
    vec![
        zero_loss_target(&groups, RAW_PARQUET, PARQUET_ZERO_LOSS_PPS),
        cpu_target(&groups),
        zero_loss_target(&groups, RAW_NDJSON, NDJSON_ZERO_LOSS_PPS),
        accounting_target(rows, memory),
    ]
}

/// The lowest zero-loss rate over a receiver's runs (0 for a run with none).
fn lowest_zero_loss(runs: &[&RowResults]) -> Option<f64> {
    runs.iter()
        .map(|r| r.zero_loss_pps().unwrap_or(0.0))
        .min_by(f64::total_cmp)
}

/// The highest CPU µs per packet at the zero-loss rate over a receiver's runs.
fn highest_cpu_at_zero_loss(runs: &[&RowResults]) -> Option<f64> {
    runs.iter()
        .filter_map(|r| r.process_us_at_zero_loss())
        .max_by(f64::total_cmp)
}

/// The comparisons with ceiling B, the kernel path and tmpfs (information, not targets),
/// each from the lowest zero-loss rate and the highest CPU figure of a row's runs (the
/// report adds [`SEVERAL_RUNS_NOTE`] under them when rows were swept more than once).
pub fn comparisons(rows: &[RowResults]) -> Vec<String> {
    let groups = by_receiver(rows);
    let sluice = Receiver::Sluice(RAW_NDJSON);
    let runs = runs_of(&groups, &sluice);
    let mut out = Vec::new();
    if let Some(zl) = lowest_zero_loss(runs) {
        let ceiling_b = lowest_zero_loss(runs_of(&groups, &Receiver::AfXdpCount));
        if let Some(b) = ceiling_b.filter(|b| *b > 0.0) {
            out.push(format!(
                "{} against ceiling B: zero loss at {} Mpps, {:.0}% of its {} Mpps",
                sluice.label(),
                mpps(zl),
                100.0 * zl / b,
                mpps(b)
            ));
        }
        let kernel = runs_of(&groups, &Receiver::KernelTc(RAW_NDJSON));
        if let Some(k) = lowest_zero_loss(kernel).filter(|k| *k > 0.0) {
            out.push(format!(
                "{} against the kernel path (tc-decap + UDP): {:.1}× its zero-loss rate of {} Mpps",
                sluice.label(),
                zl / k,
                mpps(k)
            ));
        }
        if let (Some(s), Some(k)) = (
            highest_cpu_at_zero_loss(runs),
            highest_cpu_at_zero_loss(kernel),
        ) {
            out.push(format!(
                "process CPU at the zero-loss rate, {} against the kernel path: {s:.3} vs {k:.3} \
                 µs per packet (each process's own time: the kernel path's decapsulation and \
                 stack run in softirq, outside it)",
                sluice.label()
            ));
        }
    }
    for pipeline in [RAW_NDJSON, RAW_PARQUET] {
        let disk = runs_of(&groups, &Receiver::Sluice(pipeline));
        let tmpfs = runs_of(&groups, &Receiver::SluiceTmpfs(pipeline));
        if let (Some(d), Some(t)) = (lowest_zero_loss(disk), lowest_zero_loss(tmpfs)) {
            let cpu = |runs: &[&RowResults]| {
                runs.iter()
                    .filter_map(|r| {
                        r.step_at(CPU_TARGET_RATE_PPS)
                            .and_then(Measurement::process_us_per_packet)
                    })
                    .max_by(f64::total_cmp)
            };
            let at_1mpps = match (cpu(disk), cpu(tmpfs)) {
                (Some(d), Some(t)) => format!("; CPU at 1 Mpps {d:.3} vs {t:.3} µs per packet"),
                _ => String::new(),
            };
            out.push(format!(
                "{} → {} on disk against tmpfs: zero loss at {} vs {} Mpps{at_1mpps}",
                pipeline.decoder.name(),
                pipeline.format.label(),
                mpps(d),
                mpps(t)
            ));
        }
    }
    out
}

/// The note under the comparisons when rows were swept more than once.
pub const SEVERAL_RUNS_NOTE: &str =
    "(over several runs: each row's lowest zero-loss rate and highest CPU figure)";

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::harness::measurement::Accounting;

    #[test]
    fn zero_loss_is_met_only_in_every_run_at_the_tables_precision() {
        assert_eq!(
            zero_loss_verdict(&[Some(1.0e6), Some(1.25e6)], 1e6),
            Verdict::Met
        );
        // Shown as 1.000: met.
        assert_eq!(zero_loss_verdict(&[Some(999_600.0)], 1e6), Verdict::Met);
        // Shown as 0.999: missed.
        assert_eq!(zero_loss_verdict(&[Some(999_400.0)], 1e6), Verdict::Missed);
        assert_eq!(
            zero_loss_verdict(&[Some(1.5e6), Some(0.75e6)], 1e6),
            Verdict::Missed
        );
        assert_eq!(
            zero_loss_verdict(&[Some(1.5e6), None], 1e6),
            Verdict::Missed
        );
        assert_eq!(zero_loss_verdict(&[], 1e6), Verdict::NotMeasured);
    }

    #[test]
    fn cpu_is_met_only_when_every_run_measured_it_within_the_bound() {
        assert_eq!(cpu_verdict(&[Some(0.41), Some(0.45)], 0.45), Verdict::Met);
        assert_eq!(cpu_verdict(&[Some(0.4504)], 0.45), Verdict::Met);
        assert_eq!(
            cpu_verdict(&[Some(0.41), Some(0.451)], 0.45),
            Verdict::Missed
        );
        assert_eq!(cpu_verdict(&[Some(0.41), None], 0.45), Verdict::NotMeasured);
        assert_eq!(cpu_verdict(&[None, Some(0.5)], 0.45), Verdict::Missed);
        assert_eq!(cpu_verdict(&[], 0.45), Verdict::NotMeasured);
    }

    /// A sweep of `receiver` with one step per (asked pps, lost, process CPU seconds); the
    /// lost packets are `ring_full` drops. Also the lua targets' tests' sweep.
    pub(in crate::harness::report) fn sweep(
        receiver: Receiver,
        run: usize,
        steps: &[(u64, u64, f64)],
    ) -> RowResults {
        RowResults {
            receiver,
            run,
            steps: steps
                .iter()
                .map(|&(asked, lost, cpu)| Measurement {
                    target_pps: Some(asked as f64),
                    offered: asked,
                    elapsed: Duration::from_secs(1),
                    handled: asked - lost,
                    dropped: if lost > 0 {
                        [("ring_full".to_owned(), lost)].into()
                    } else {
                        Default::default()
                    },
                    process_cpu_seconds: Some(cpu),
                    accounting: Some(Accounting {
                        seen: asked,
                        recorded: asked - lost,
                        dropped_total: lost,
                        ..Accounting::default()
                    }),
                    ..Measurement::default()
                })
                .collect(),
        }
    }

    #[test]
    fn targets_read_every_run_of_the_disk_rows() {
        let parquet = Receiver::Sluice(RAW_PARQUET);
        let ndjson = Receiver::Sluice(RAW_NDJSON);
        let rows = vec![
            sweep(
                ndjson.clone(),
                0,
                &[(1_000_000, 0, 0.5), (1_500_000, 0, 0.7)],
            ),
            sweep(
                parquet.clone(),
                0,
                &[(1_000_000, 0, 0.42), (1_500_000, 9, 0.6)],
            ),
            sweep(
                parquet.clone(),
                1,
                &[(1_000_000, 0, 0.47), (1_500_000, 9, 0.6)],
            ),
            // The tmpfs row does not count for the disk targets.
            sweep(
                Receiver::SluiceTmpfs(RAW_PARQUET),
                0,
                &[(1_000_000, 0, 0.3)],
            ),
        ];
        let lines: Vec<String> = targets(&rows, &MemoryReport::default())
            .iter()
            .map(TargetResult::line)
            .collect();
        assert_eq!(
            lines,
            [
                "sluice XDP, raw → Parquet (on disk) with zero loss at ≥ 1.0 Mpps in every run: \
                 met (1.000 / 1.000 Mpps)",
                "the daemon's CPU at 1 Mpps, sluice XDP, raw → Parquet (on disk): ≤ 0.45 µs per \
                 packet in every run: **missed** (0.420 / 0.470 µs per packet)",
                "sluice XDP, raw → NDJSON+zstd (on disk) with zero loss at ≥ 1.5 Mpps in every \
                 run: met (1.500 Mpps)",
                "seen = recorded + dropped in every run of the daemon (every step of every \
                 sweep): met (all 7 balanced)",
            ]
        );
        let without = targets(&rows[..1], &MemoryReport::default());
        assert_eq!(without[0].verdict, Verdict::NotMeasured);
        assert_eq!(without[0].measured, "the row was not run");
    }

    #[test]
    fn comparisons_put_disk_beside_tmpfs_and_the_kernel_path() {
        let rows = vec![
            sweep(Receiver::AfXdpCount, 0, &[(2_000_000, 0, 0.2)]),
            sweep(Receiver::Sluice(RAW_PARQUET), 0, &[(1_000_000, 0, 0.5)]),
            sweep(
                Receiver::SluiceTmpfs(RAW_PARQUET),
                0,
                &[(1_000_000, 0, 0.4), (1_500_000, 0, 0.6)],
            ),
            sweep(Receiver::Sluice(RAW_NDJSON), 0, &[(1_000_000, 0, 0.8)]),
            sweep(Receiver::KernelTc(RAW_NDJSON), 0, &[(500_000, 0, 0.75)]),
        ];
        assert_eq!(
            comparisons(&rows),
            [
                "sluice XDP, raw → NDJSON+zstd against ceiling B: zero loss at 1.000 Mpps, 50% of \
                 its 2.000 Mpps",
                "sluice XDP, raw → NDJSON+zstd against the kernel path (tc-decap + UDP): 2.0× its \
                 zero-loss rate of 0.500 Mpps",
                "process CPU at the zero-loss rate, sluice XDP, raw → NDJSON+zstd against the \
                 kernel path: 0.800 vs 1.500 µs per packet (each process's own time: the kernel \
                 path's decapsulation and stack run in softirq, outside it)",
                "raw → Parquet on disk against tmpfs: zero loss at 1.000 vs 1.500 Mpps; CPU at 1 \
                 Mpps 0.500 vs 0.400 µs per packet",
            ]
        );
    }
}
