//! The packet-rate results as text: the Markdown section of BENCHMARKS.md (machine and
//! records medium, zero-loss rates, targets, comparisons, accounting, memory, every step)
//! and its splice between the `<!-- packet-rate:begin -->` / `<!-- packet-rate:end -->`
//! markers, which leaves the rest of that file to its other authors.
//!
//! - [`tables`]: the summary and the two per-step tables (packets, CPU).
//! - [`targets`]: the targets (issue 13) and their verdicts, and the comparisons.
//! - [`lua_targets`]: the `lua` decoder's targets (issue 14), and its CPU against the
//!   `schema` decoder's.

pub mod lua_targets;
pub mod tables;
pub mod targets;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::measurement::{Measurement, RowResults, by_receiver};
use crate::generator::GenEngine;
use tables::{cpu_table, machine_note, mpps, steps_table, summary_table, target_label};

/// Opening marker of the generated section.
pub const BEGIN_MARKER: &str = "<!-- packet-rate:begin -->";
/// Closing marker of the generated section.
pub const END_MARKER: &str = "<!-- packet-rate:end -->";

/// Why BENCHMARKS.md could not be updated.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Only one marker, or the end before the beginning.
    #[error("{path}: the {begin} / {end} markers are unbalanced")]
    Markers {
        /// The file.
        path: PathBuf,
        /// The opening marker.
        begin: &'static str,
        /// The closing marker.
        end: &'static str,
    },
}

/// The machine and the run's parameters, printed above the tables.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunContext {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Online CPUs.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// How the vCPUs idle ([`crate::harness::guest_idle::describe`]); empty: not told.
    pub guest_idle: String,
    /// UTC date and time of the run.
    pub date: String,
    /// Seconds per step.
    pub step_secs: f64,
    /// The generator's CPU.
    pub generator_cpu: u32,
    /// The generator's engine (`None`: not known).
    pub generator_engine: Option<GenEngine>,
    /// Warnings about the machine (not quiet, ...).
    pub warnings: Vec<String>,
    /// The command line that produced it.
    pub command: String,
    /// Whether this was a `--quick` smoke run.
    pub quick: bool,
    /// Frame shape offered (from the generator's mix).
    pub traffic: String,
    /// Where the records went: `/var/tmp (ext4 on /dev/vda)`.
    pub records: String,
    /// Where the `(tmpfs)` rows' records went, when there were any.
    pub tmpfs_records: Option<String>,
}

/// Peak RSS readings of sluice.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryReport {
    /// (row label, offered Mpps, VmHWM KiB) at each sluice row's highest rate.
    pub at_highest_rate: Vec<(String, f64, u64)>,
    /// The overload run, if any: (row label, seconds, offered Mpps, VmHWM KiB, balanced).
    pub overload: Option<Overload>,
}

/// The sustained-overload run.
#[derive(Clone, Debug, PartialEq)]
pub struct Overload {
    /// Which pipeline.
    pub label: String,
    /// The measurement.
    pub measurement: Measurement,
}

/// Every sluice run whose account did not balance: the loud part of the report.
pub fn accounting_violations(rows: &[RowResults], memory: &MemoryReport) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |label: &str, m: &Measurement| {
        if let Some(a) = &m.accounting
            && !a.balanced()
        {
            out.push(format!(
                "{label} at {}: seen {} != recorded {} + dropped {} (in flight {}, exit {})",
                target_label(m),
                a.seen,
                a.recorded,
                a.dropped_total,
                a.in_flight,
                a.exit
            ));
        }
    };
    for row in rows {
        for m in &row.steps {
            check(&row.receiver.label(), m);
        }
    }
    if let Some(o) = &memory.overload {
        check(&format!("overload, {}", o.label), &o.measurement);
    }
    out
}

/// The run's opening paragraph: when, where, how, and where the records went.
fn intro(context: &RunContext) -> String {
    let tmpfs = context
        .tmpfs_records
        .as_ref()
        .map_or_else(String::new, |dir| {
            format!(", those of the *(tmpfs)* rows to {dir}")
        });
    format!(
        "Measured {} on {} ({} cores), Linux {}{}, with `{}`. Records written to {}{tmpfs}; the \
         daemon fsyncs every batch file it writes, so the disk is part of what is measured. \
         Each step offers {:.0} s of traffic from {}, pinned to CPU {}, in one network \
         namespace into a veth whose other end, in a second namespace, is the receiver. \
         Traffic: {}.{}\n",
        context.date,
        context.cpu_model,
        context.cores,
        context.kernel,
        guest_idle_phrase(context),
        context.command,
        context.records,
        context.step_secs,
        generator_phrase(context.generator_engine),
        context.generator_cpu,
        context.traffic,
        if context.generator_engine == Some(GenEngine::AfPacket) {
            AF_PACKET_NOTE
        } else {
            ""
        },
    )
}

/// ` (vCPUs idle with …)` after the kernel in the intros, or nothing when not told.
pub(crate) fn guest_idle_phrase(context: &RunContext) -> String {
    if context.guest_idle.is_empty() {
        String::new()
    } else {
        format!(" (vCPUs idle with {})", context.guest_idle)
    }
}

/// The generator, as the reports name it.
pub fn generator_phrase(engine: Option<GenEngine>) -> &'static str {
    match engine {
        Some(GenEngine::XdpLive) => {
            "an in-kernel generator (`BPF_PROG_TEST_RUN` with live frames, engine `xdp-live`)"
        }
        Some(GenEngine::AfPacket) => {
            "an AF_PACKET generator (`sendmmsg` on a raw socket bound to the veth, qdisc \
             bypassed, engine `af-packet`)"
        }
        None => "the packet generator",
    }
}

/// Why the engine matters, when it is not live frames.
const AF_PACKET_NOTE: &str = " The AF_PACKET engine is used where the kernel refuses \
`BPF_PROG_TEST_RUN` with live frames (or where `SLUICE_BENCH_GENERATOR` chose it); it offers \
far fewer packets per second than live frames, so a flat-out step may measure the generator \
rather than the receiver.";

/// What the CPU figures are, and where they come from.
const CPU_NOTE: &str = "*CPU µs/packet (process)* is the receiving process's own user+system \
time (`/proc/PID/stat`: the daemon, or ceiling B's counting thread) from the start of traffic \
until it is stopped, settle time included, per packet recorded. The daemon's share is split \
by thread from each thread's `se.sum_exec_runtime`: *receive threads* (`sluice-rx-q*`, or \
`sluice-udp` on the kernel path), *workers* (`sluice-worker-*`), *sink* (`sluice-sink`, which \
writes and fsyncs the files) and *other threads*. *Receive run-queue wait* is the time the \
receive threads were runnable but not running (`schedstat`), in ms per second of traffic, and \
the most one of them waited in a ~20 ms sample: while a receive thread waits nothing refills \
its fill ring, and the kernel drops what arrives (`xsk_rx_dropped`). *Generator thread* is the \
sender's own CPU time per packet offered (its core also runs the veth and, in softirq, the \
receiver's XDP program). *(machine)* is the busy time of all cores from /proc/stat (generator \
included) per packet recorded, with per-core busy and softirq shares over the traffic: on a \
veth the receiver's XDP program and network stack run in softirq on the **sender's** core.\n\n";

/// The whole generated section, markers included.
pub fn section(
    context: &RunContext,
    rows: &[RowResults],
    memory: &MemoryReport,
    chart: Option<&str>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{BEGIN_MARKER}");
    out.push_str(
        "<!-- Generated by `cargo xtask bench`; edits between these markers are overwritten. -->\n\n",
    );
    out.push_str("## End-to-end packet rate\n\n");
    if context.quick {
        out.push_str(
            "**Smoke run (`--quick`): steps are a few seconds long; these figures prove the \
             harness works and are not the published measurement.**\n\n",
        );
    }
    out.push_str(&intro(context));
    out.push('\n');
    let most_runs = by_receiver(rows)
        .iter()
        .map(|r| r.runs.len())
        .max()
        .unwrap_or(1);
    if most_runs > 1 {
        let _ = writeln!(
            out,
            "The sluice XDP rows were swept {most_runs} times back to back (the ceilings and \
             the kernel path once); their figures are given for each run, and a target is met \
             only if it was met in every run.\n"
        );
    }
    for warning in &context.warnings {
        let _ = writeln!(out, "> **Warning:** {warning}\n");
    }
    let short: Vec<String> = rows
        .iter()
        .flat_map(|row| row.steps.iter().map(move |m| (row, m)))
        .filter_map(|(row, m)| {
            m.generator_shortfall().map(|share| {
                let run = if most_runs > 1 {
                    format!(" (run {})", row.run + 1)
                } else {
                    String::new()
                };
                format!(
                    "{}{run} at {} ({:.0}%)",
                    row.receiver.label(),
                    target_label(m),
                    share * 100.0
                )
            })
        })
        .collect();
    if !short.is_empty() {
        let _ = writeln!(
            out,
            "> **Warning:** the generator offered less than 90% of the asked rate in {} step(s): \
             {}. The *offered* column is what was sent; compare rows by it.\n",
            short.len(),
            short.join("; ")
        );
    }
    out.push_str(
        "Rows: **A** an XDP program that counts and drops (the most the generator and the \
         veth can deliver); **B** sluice's XDP program redirecting into its AF_XDP socket, \
         with a receive loop that only counts (the most the kernel-bypass path can hand to \
         userspace); **sluice XDP** the release `sluice run` with the named decoder and \
         format, writing to the records directory on disk, and the same to tmpfs where the \
         row says *(tmpfs)*; **kernel** the same daemon on its UDP socket source \
         (64 MiB `SO_RCVBUF`) behind a tc-ingress program that strips the outer IP+GRE and \
         hands the inner packet to the stack — one stack pass where a kernel GRE device \
         makes two, so it *flatters* the kernel (these machines' kernel has no GRE device \
         and cannot load modules) — and behind the kernel's built-in VXLAN device, which \
         has the receive shape of a GRE device.\n\n",
    );
    out.push_str(CPU_NOTE);
    out.push_str("### Zero-loss rate per receiver\n\n");
    out.push_str(&summary_table(rows, context.step_secs));
    out.push('\n');
    out.push_str("### Targets\n\n");
    out.push_str("Goals of the benchmark, not tests: a missed target is reported here.\n\n");
    for target in targets::targets(rows, memory)
        .into_iter()
        .chain(lua_targets::targets(rows))
    {
        let _ = writeln!(out, "- {}", target.line());
    }
    out.push('\n');
    let mut comparisons = targets::comparisons(rows);
    comparisons.extend(lua_targets::comparisons(rows));
    if most_runs > 1 && !comparisons.is_empty() {
        comparisons.push(targets::SEVERAL_RUNS_NOTE.into());
    }
    if !comparisons.is_empty() {
        out.push_str("### Comparisons (information, not targets)\n\n");
        for line in comparisons {
            let _ = writeln!(out, "- {line}");
        }
        out.push('\n');
    }
    let violations = accounting_violations(rows, memory);
    out.push_str("### Accounting\n\n");
    if violations.is_empty() {
        out.push_str(
            "Every sluice run balanced at exit: seen = recorded + dropped, nothing in flight.\n\n",
        );
    } else {
        out.push_str("**The account did not balance in these runs:**\n\n");
        for line in &violations {
            let _ = writeln!(out, "- **{line}**");
        }
        out.push('\n');
    }
    out.push_str("### Memory (peak RSS of sluice, VmHWM)\n\n");
    out.push_str("| run | offered (Mpps) | peak RSS (MiB) | balanced |\n|---|---:|---:|---|\n");
    for (label, offered, kib) in &memory.at_highest_rate {
        let _ = writeln!(
            out,
            "| {label}, highest rate | {offered:.3} | {:.1} | yes |",
            *kib as f64 / 1024.0
        );
    }
    if let Some(o) = &memory.overload {
        let m = &o.measurement;
        let _ = writeln!(
            out,
            "| {}, overload for {:.0} s | {} | {} | {} |",
            o.label,
            m.elapsed.as_secs_f64(),
            mpps(m.offered_pps()),
            m.peak_rss_kib
                .map_or_else(|| "–".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
            match &m.accounting {
                Some(a) if a.balanced() => "yes".to_owned(),
                Some(_) => "**NO**".to_owned(),
                None => "–".to_owned(),
            }
        );
        let _ = writeln!(
            out,
            "\nUnder overload: {} recorded, {}.\n",
            m.handled,
            m.loss_summary()
        );
    } else {
        out.push('\n');
    }
    if let Some(chart) = chart {
        let _ = writeln!(out, "![recorded vs offered packet rate]({chart})\n");
        out.push_str(
            "The chart leaves the *(tmpfs)* rows out (the tables have them beside the disk \
             rows) and draws every run of a row in the row's colour.\n\n",
        );
    }
    out.push_str("### Every step: packets\n\n");
    out.push_str(&steps_table(rows));
    out.push_str("\n### Every step: CPU\n\n");
    out.push_str(&cpu_table(rows));
    if let Some(note) = machine_note(rows) {
        let _ = writeln!(out, "\n{note}");
    }
    let _ = writeln!(out, "\n{END_MARKER}");
    out
}

/// `text` with the marked section replaced by `section` (appended when there are no markers).
pub fn splice(text: &str, section: &str) -> Option<String> {
    splice_between(text, section, BEGIN_MARKER, END_MARKER)
}

/// `text` with the section between `begin` and `end` replaced by `section` (which
/// carries the markers itself), or `section` appended when neither marker is there;
/// `None` when only one is, or they are out of order.
pub fn splice_between(text: &str, section: &str, begin: &str, end: &str) -> Option<String> {
    match (text.find(begin), text.find(end)) {
        (Some(b), Some(e)) if e > b => {
            let mut after = &text[e + end.len()..];
            after = after.strip_prefix('\n').unwrap_or(after);
            Some(format!("{}{section}{after}", &text[..b]))
        }
        (None, None) => {
            let sep = if text.ends_with("\n\n") {
                ""
            } else if text.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            Some(format!("{text}{sep}{section}"))
        }
        _ => None,
    }
}

/// Writes `section` into `path` between the packet-rate markers.
///
/// # Errors
/// [`ReportError`].
pub fn update_file(path: &Path, section: &str) -> Result<(), ReportError> {
    update_file_between(path, section, BEGIN_MARKER, END_MARKER)
}

/// Writes `section` into `path` between `begin` and `end` (see [`splice_between`]).
///
/// # Errors
/// [`ReportError`].
pub fn update_file_between(
    path: &Path,
    section: &str,
    begin: &'static str,
    end: &'static str,
) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_owned(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let updated =
        splice_between(&text, section, begin, end).ok_or_else(|| ReportError::Markers {
            path: path.to_owned(),
            begin,
            end,
        })?;
    std::fs::write(path, updated).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::measurement::{DecoderChoice, FormatChoice, Pipeline, Receiver};

    #[test]
    fn splice_replaces_between_markers_and_appends_without_them() {
        let section = format!("{BEGIN_MARKER}\nnew\n{END_MARKER}\n");
        let text = format!("# B\n\nintro\n\n{BEGIN_MARKER}\nold\n{END_MARKER}\n\n## Other\n");
        assert_eq!(
            splice(&text, &section).as_deref(),
            Some(format!("# B\n\nintro\n\n{section}\n## Other\n").as_str())
        );
        assert_eq!(
            splice("# B\n", &section).as_deref(),
            Some(format!("# B\n\n{section}").as_str())
        );
        assert_eq!(splice(&format!("x {END_MARKER} {BEGIN_MARKER}"), "s"), None);
        assert_eq!(splice(&format!("x {BEGIN_MARKER}"), "s"), None);
    }

    #[test]
    fn unbalanced_accounts_are_listed() {
        use crate::harness::measurement::Accounting;
        let m = Measurement {
            target_pps: Some(1e6),
            accounting: Some(Accounting {
                seen: 10,
                recorded: 8,
                dropped_total: 1,
                exit: "exit status: 2".into(),
                ..Accounting::default()
            }),
            ..Measurement::default()
        };
        let rows = vec![RowResults {
            receiver: Receiver::CountDrop,
            run: 0,
            steps: vec![m],
        }];
        let v = accounting_violations(&rows, &MemoryReport::default());
        assert_eq!(v.len(), 1);
        assert!(v[0].contains("seen 10 != recorded 8 + dropped 1"), "{v:?}");
    }

    #[test]
    fn the_section_names_the_records_medium_and_the_runs() {
        let context = RunContext {
            date: "2026-12-06 10:00 UTC".into(),
            cpu_model: "AMD EPYC".into(),
            cores: 2,
            kernel: "6.18".into(),
            guest_idle: "cpuidle haltpoll, guest_halt_poll_ns 0".into(),
            command: "cargo xtask bench".into(),
            step_secs: 10.0,
            records: "/var/tmp (ext4 on /dev/vda)".into(),
            tmpfs_records: Some("/dev/shm (tmpfs)".into()),
            ..RunContext::default()
        };
        let sweep = |run| RowResults {
            receiver: Receiver::Sluice(Pipeline {
                decoder: DecoderChoice::Raw,
                format: FormatChoice::Parquet,
            }),
            run,
            steps: Vec::new(),
        };
        let text = section(
            &context,
            &[sweep(0), sweep(1)],
            &MemoryReport::default(),
            None,
        );
        assert!(text.starts_with(BEGIN_MARKER), "{text}");
        assert!(text.trim_end().ends_with(END_MARKER), "{text}");
        assert!(text.contains(
            "Linux 6.18 (vCPUs idle with cpuidle haltpoll, guest_halt_poll_ns 0), \
             with `cargo xtask bench`. Records written to /var/tmp (ext4 on /dev/vda), those of \
             the *(tmpfs)* rows to /dev/shm (tmpfs); the daemon fsyncs every batch file"
        ));
        assert!(text.contains("were swept 2 times back to back"), "{text}");
        assert!(text.contains("### Every step: packets\n\n| receiver | run | asked (Mpps) |"));
        assert!(text.contains("### Every step: CPU\n\n| receiver | run | asked (Mpps) |"));
        assert!(
            text.contains("- sluice XDP, raw → Parquet (on disk) with zero loss at ≥ 1.0 Mpps")
        );
        // The lua targets follow issue 13's, not measured when their row did not run.
        assert!(text.contains(
            "balanced)\n- sluice XDP, lua → NDJSON+zstd (on disk) with zero loss at \
             ≥ 0.3 Mpps in every run: not measured (the row was not run)\n- the daemon's CPU, \
             sluice XDP, lua → NDJSON+zstd (on disk), at 0.3 Mpps"
        ));
    }

    #[test]
    fn the_lua_comparison_comes_before_the_several_runs_note() {
        let sweep = |decoder, run, cpu| RowResults {
            receiver: Receiver::Sluice(Pipeline {
                decoder,
                format: FormatChoice::NdjsonZstd,
            }),
            run,
            steps: vec![Measurement {
                target_pps: Some(300_000.0),
                offered: 300_000,
                elapsed: std::time::Duration::from_secs(1),
                handled: 300_000,
                process_cpu_seconds: Some(cpu),
                ..Measurement::default()
            }],
        };
        let rows = [
            sweep(DecoderChoice::Schema, 0, 0.15),
            sweep(DecoderChoice::Lua, 0, 0.6),
            sweep(DecoderChoice::Lua, 1, 0.45),
        ];
        let text = section(
            &RunContext::default(),
            &rows,
            &MemoryReport::default(),
            None,
        );
        assert!(
            text.contains(
                "### Comparisons (information, not targets)\n\n- lua → NDJSON+zstd against schema \
                 → NDJSON+zstd on disk (the same payload and rows), CPU at 0.300 Mpps: 2.000 vs \
                 0.500 µs per packet, 4.0× the schema decoder's\n- (over several runs: each row's \
                 lowest zero-loss rate and highest CPU figure)\n\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "- the daemon's CPU, sluice XDP, lua → NDJSON+zstd (on disk), at 0.3 Mpps (at each \
             run's highest zero-loss rate when 0.3 Mpps is not one of the rates): ≤ 3.00 µs per \
             packet in every run: met (2.000 / 1.500 µs per packet at 0.3 Mpps)\n"
        ));
    }

    #[test]
    fn the_intro_names_the_generator_engine() {
        let context = |engine| RunContext {
            step_secs: 2.0,
            generator_engine: engine,
            ..RunContext::default()
        };
        let live = intro(&context(Some(GenEngine::XdpLive)));
        assert!(
            live.contains(
                "2 s of traffic from an in-kernel generator (`BPF_PROG_TEST_RUN` with live \
                 frames, engine `xdp-live`), pinned to CPU 0,"
            ),
            "{live}"
        );
        assert!(!live.contains("AF_PACKET"), "{live}");
        let af_packet = intro(&context(Some(GenEngine::AfPacket)));
        assert!(
            af_packet.contains(
                "2 s of traffic from an AF_PACKET generator (`sendmmsg` on a raw socket bound \
                 to the veth, qdisc bypassed, engine `af-packet`), pinned to CPU 0,"
            ),
            "{af_packet}"
        );
        assert!(af_packet.ends_with(&format!("Traffic: .{AF_PACKET_NOTE}\n")));
    }
}
