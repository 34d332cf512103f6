//! The packet-rate section's tables: the summary (one line per receiver, each run's
//! zero-loss rate side by side), and every step twice, once for the packets (where each
//! one went) and once for the CPU (the process by thread group, the receive threads'
//! run-queue wait, the machine-wide figures where /proc/stat can be trusted).

use std::fmt::Write as _;

use super::targets::CPU_TARGET_RATE_PPS;
use crate::harness::measurement::{Measurement, ReceiverRuns, RowResults, by_receiver};

/// `1.000` (Mpps, three decimals).
pub fn mpps(pps: f64) -> String {
    format!("{:.3}", pps / 1e6)
}

fn opt_count(value: Option<u64>) -> String {
    value.map_or_else(|| "–".into(), |v| v.to_string())
}

/// `value` with `digits` decimals, `–` for none.
pub fn opt_float(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

/// The asked rate of a step, `flat out` for none.
pub fn target_label(m: &Measurement) -> String {
    match m.target_pps {
        Some(pps) => mpps(pps),
        None => "flat out".into(),
    }
}

/// One value per run, `1.000 / 1.000 / 1.250`; `missing` where a run has none.
pub fn per_run(values: &[Option<f64>], digits: usize, missing: &str) -> String {
    values
        .iter()
        .map(|v| v.map_or_else(|| missing.to_owned(), |v| format!("{v:.digits$}")))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// True when any receiver was swept more than once.
pub fn repeated(rows: &[RowResults]) -> bool {
    by_receiver(rows).iter().any(|r| r.runs.len() > 1)
}

/// The receiver (and, when receivers were swept more than once, run) cells of a step.
fn step_head(row: &RowResults, with_run: bool, m: &Measurement) -> String {
    if with_run {
        format!(
            "| {} | {} | {} |",
            row.receiver.label(),
            row.run + 1,
            target_label(m)
        )
    } else {
        format!("| {} | {} |", row.receiver.label(), target_label(m))
    }
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// One line per receiver: the highest zero-loss rate of each run, the peak, and the
/// receiving process's CPU per packet at that rate and (when it was a step) at 1 Mpps.
pub fn summary_table(rows: &[RowResults], step_secs: f64) -> String {
    let receivers = by_receiver(rows);
    let each_run = if repeated(rows) { ", each run" } else { "" };
    let at_1mpps = rows.iter().any(|r| r.asked(CPU_TARGET_RATE_PPS));
    let mut out = String::new();
    let _ = write!(
        out,
        "| receiver | highest rate with zero loss over {step_secs:.0} s (Mpps{each_run}) | \
         peak recorded (Mpps) | CPU µs/packet at that zero-loss rate (process) |"
    );
    if at_1mpps {
        out.push_str(" CPU µs/packet at 1 Mpps (process) |");
    }
    out.push_str(if at_1mpps {
        "\n|---|---:|---:|---:|---:|\n"
    } else {
        "\n|---|---:|---:|---:|\n"
    });
    for ReceiverRuns { receiver, runs } in &receivers {
        let zero_loss: Vec<Option<f64>> = runs
            .iter()
            .map(|r| r.zero_loss_pps().map(|pps| pps / 1e6))
            .collect();
        let peak = runs
            .iter()
            .filter_map(|r| r.peak_handled_pps())
            .max_by(f64::total_cmp);
        let cpu: Vec<Option<f64>> = runs.iter().map(|r| r.process_us_at_zero_loss()).collect();
        let _ = write!(
            out,
            "| {} | {} | {} | {} |",
            receiver.label(),
            per_run(&zero_loss, 3, "none"),
            peak.map_or_else(|| "–".into(), mpps),
            per_run(&cpu, 3, "–"),
        );
        if at_1mpps {
            let cpu: Vec<Option<f64>> = runs
                .iter()
                .map(|r| {
                    r.step_at(CPU_TARGET_RATE_PPS)
                        .and_then(Measurement::process_us_per_packet)
                })
                .collect();
            let _ = write!(out, " {} |", per_run(&cpu, 3, "–"));
        }
        out.push('\n');
    }
    out
}

/// Every step of every sweep: what was offered, seen, received, recorded and dropped.
pub fn steps_table(rows: &[RowResults]) -> String {
    let with_run = repeated(rows);
    let mut out = String::new();
    out.push_str(if with_run {
        "| receiver | run | asked (Mpps) |"
    } else {
        "| receiver | asked (Mpps) |"
    });
    out.push_str(
        " offered (Mpps) | offered | seen by XDP | received | recorded | dropped by reason | \
         lost before XDP | recorded (Mpps) |\n",
    );
    out.push_str(if with_run {
        "|---|---:|---:|"
    } else {
        "|---|---:|"
    });
    out.push_str("---:|---:|---:|---:|---:|---|---:|---:|\n");
    for row in rows {
        for m in &row.steps {
            let head = step_head(row, with_run, m);
            if let Some(error) = &m.error {
                let _ = writeln!(
                    out,
                    "{head} – | – | – | – | – | not measured: {} | – | – |",
                    escape(error)
                );
                continue;
            }
            let _ = writeln!(
                out,
                "{head} {} | {} | {} | {} | {} | {} | {} | {} |",
                mpps(m.offered_pps()),
                m.offered,
                opt_count(m.seen_by_xdp),
                opt_count(m.received),
                m.handled,
                m.drop_reasons(),
                opt_count(m.lost_before_xdp()),
                mpps(m.handled_pps()),
            );
        }
    }
    out
}

/// Every step of every sweep: the CPU per packet recorded of the process and of its
/// thread groups, the receive threads' run-queue wait, and the machine-wide figures
/// (`–` where [`Measurement::machine_cpu_trusted`] says no).
pub fn cpu_table(rows: &[RowResults]) -> String {
    let with_run = repeated(rows);
    let mut out = String::new();
    out.push_str(if with_run {
        "| receiver | run | asked (Mpps) |"
    } else {
        "| receiver | asked (Mpps) |"
    });
    out.push_str(
        " CPU µs/packet (process) | receive threads | workers | sink | other threads | \
         receive run-queue wait (ms/s) | worst 20 ms (ms) | generator thread µs/packet | \
         CPU µs/packet (machine) | busy % per core | softirq % per core |\n",
    );
    out.push_str(if with_run {
        "|---|---:|---:|"
    } else {
        "|---|---:|"
    });
    out.push_str("---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in rows {
        for m in &row.steps {
            let head = step_head(row, with_run, m);
            if m.error.is_some() {
                let _ = writeln!(out, "{head} – | – | – | – | – | – | – | – | – | – | – |");
                continue;
            }
            let threads = m.thread_us_per_packet();
            let group = |pick: fn(&crate::harness::threads::ThreadGroupCpu) -> f64| {
                opt_float(threads.as_ref().map(pick), 3)
            };
            let (busy, softirq) = if m.machine_cpu_trusted() {
                (m.cpu.per_core(), m.cpu.softirq_per_core())
            } else {
                ("–".to_owned(), "–".to_owned())
            };
            let _ = writeln!(
                out,
                "{head} {} | {} | {} | {} | {} | {} | {} | {} | {} | {busy} | {softirq} |",
                opt_float(m.process_us_per_packet(), 3),
                group(|t| t.receive),
                group(|t| t.workers),
                group(|t| t.sink),
                group(|t| t.other),
                opt_float(m.receive_wait_ms_per_second(), 1),
                opt_float(m.receive_wait.map(|w| w.worst_window_seconds * 1e3), 1),
                opt_float(m.generator_us_per_packet(), 3),
                opt_float(m.machine_us_per_packet(), 3),
            );
        }
    }
    out
}

/// The one sentence that explains the `–` of the machine-wide columns, when any step's
/// /proc/stat figures were withheld.
pub fn machine_note(rows: &[RowResults]) -> Option<String> {
    let measured: Vec<&Measurement> = rows
        .iter()
        .flat_map(|r| r.steps.iter())
        .filter(|m| m.error.is_none())
        .collect();
    let withheld = measured.iter().filter(|m| !m.machine_cpu_trusted()).count();
    (withheld > 0).then(|| {
        format!(
            "The machine-wide columns read – in {withheld} of {} steps because /proc/stat \
             counted less busy CPU time than the generator thread and the receiving process \
             used on their own (on the whole machine, or on the core the generator is pinned \
             to), so it missed time there and its figures would be wrong.",
            measured.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::harness::cpu::CpuUsage;
    use crate::harness::measurement::{DecoderChoice, FormatChoice, Pipeline, Receiver};
    use crate::harness::threads::{RunQueueWait, ThreadGroupCpu};

    fn parquet() -> Receiver {
        Receiver::Sluice(Pipeline {
            decoder: DecoderChoice::Raw,
            format: FormatChoice::Parquet,
        })
    }

    /// A step asked for `asked` pps, offered as asked over 1 s, with `lost` dropped.
    fn step(asked: u64, lost: u64) -> Measurement {
        Measurement {
            target_pps: Some(asked as f64),
            offered: asked,
            elapsed: Duration::from_secs(1),
            seen_by_xdp: Some(asked),
            received: Some(asked - lost),
            handled: asked - lost,
            dropped: if lost > 0 {
                [("xsk_rx_dropped".to_owned(), lost)].into()
            } else {
                Default::default()
            },
            cpu: CpuUsage {
                busy_percent: vec![60.0, 40.0],
                softirq_percent: vec![30.0, 0.0],
                busy_seconds: 1.0,
                core_busy_seconds: vec![0.6, 0.4],
            },
            generator_cpu_seconds: Some(0.5),
            generator_core: Some(0),
            process_cpu_seconds: Some(0.4),
            ..Measurement::default()
        }
    }

    fn sweep(run: usize, steps: Vec<Measurement>) -> RowResults {
        RowResults {
            receiver: parquet(),
            run,
            steps,
        }
    }

    #[test]
    fn per_run_values_are_joined_with_their_placeholder() {
        assert_eq!(
            per_run(&[Some(1.0), Some(1.0), Some(1.25)], 3, "none"),
            "1.000 / 1.000 / 1.250"
        );
        assert_eq!(per_run(&[Some(0.75), None], 3, "none"), "0.750 / none");
        assert_eq!(per_run(&[Some(0.4321)], 2, "–"), "0.43");
        assert_eq!(per_run(&[], 3, "–"), "");
    }

    #[test]
    fn the_summary_lists_each_run_and_the_cpu_at_1_mpps() {
        let rows = vec![
            sweep(0, vec![step(500_000, 0), step(1_000_000, 0)]),
            sweep(1, vec![step(500_000, 0), step(1_000_000, 10)]),
        ];
        let table = summary_table(&rows, 10.0);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "| receiver | highest rate with zero loss over 10 s (Mpps, each run) | peak recorded \
             (Mpps) | CPU µs/packet at that zero-loss rate (process) | CPU µs/packet at 1 Mpps \
             (process) |"
        );
        assert_eq!(lines[1], "|---|---:|---:|---:|---:|");
        // Run 1: 0.4 s over 1e6 packets; run 2 zero loss at 0.5 Mpps only (0.8 µs), at
        // 1 Mpps 0.4 s over 999 990 recorded.
        assert_eq!(
            lines[2],
            "| sluice XDP, raw → Parquet | 1.000 / 0.500 | 1.000 | 0.400 / 0.800 | 0.400 / 0.400 |"
        );
        assert_eq!(lines.len(), 3);
        let once = summary_table(&rows[..1], 2.0);
        assert!(once.starts_with("| receiver | highest rate with zero loss over 2 s (Mpps) |"));
        let no_1mpps = summary_table(&[sweep(0, vec![step(500_000, 0)])], 2.0);
        assert!(!no_1mpps.contains("at 1 Mpps"), "{no_1mpps}");
    }

    #[test]
    fn step_tables_show_the_run_only_when_rows_repeat() {
        let once = vec![sweep(0, vec![step(1_000_000, 10)])];
        let packets = steps_table(&once);
        assert_eq!(
            packets.lines().nth(2),
            Some(
                "| sluice XDP, raw → Parquet | 1.000 | 1.000 | 1000000 | 1000000 | 999990 | \
                 999990 | xsk_rx_dropped 10 | 0 | 1.000 |"
            )
        );
        let twice = vec![
            sweep(0, vec![step(1_000_000, 0)]),
            sweep(1, vec![step(1_000_000, 0)]),
        ];
        let packets = steps_table(&twice);
        assert!(packets.starts_with("| receiver | run | asked (Mpps) | offered (Mpps) |"));
        assert!(
            packets
                .lines()
                .nth(3)
                .is_some_and(|l| l.starts_with("| sluice XDP, raw → Parquet | 2 | 1.000 | "))
        );
    }

    #[test]
    fn the_cpu_table_splits_threads_and_withholds_untrusted_machine_figures() {
        let mut trusted = step(1_000_000, 0);
        trusted.thread_cpu = Some(ThreadGroupCpu {
            receive: 0.1,
            workers: 0.2,
            sink: 0.05,
            other: 0.05,
        });
        trusted.receive_wait = Some(RunQueueWait {
            seconds: 0.125,
            worst_window_seconds: 0.0155,
            windows: 50,
            threads: 1,
        });
        let mut untrusted = step(1_000_000, 0);
        untrusted.cpu.busy_seconds = 0.01;
        let rows = vec![sweep(0, vec![trusted, untrusted])];
        let table = cpu_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[2],
            "| sluice XDP, raw → Parquet | 1.000 | 0.400 | 0.100 | 0.200 | 0.050 | 0.050 | \
             125.0 | 15.5 | 0.500 | 1.000 | 60/40 | 30/0 |"
        );
        assert_eq!(
            lines[3],
            "| sluice XDP, raw → Parquet | 1.000 | 0.400 | – | – | – | – | – | – | 0.500 | – | – \
             | – |"
        );
        let note = machine_note(&rows).expect("one step withheld");
        assert!(note.starts_with("The machine-wide columns read – in 1 of 2 steps because"));
        assert_eq!(machine_note(&rows[..0]), None);
    }
}
