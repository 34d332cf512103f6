//! The packet-rate results as text: the Markdown section of BENCHMARKS.md (machine, table,
//! zero-loss rates, memory, accounting, targets) and its splice between the
//! `<!-- packet-rate:begin -->` / `<!-- packet-rate:end -->` markers, which leaves the rest
//! of that file to its other authors.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::measurement::{DecoderChoice, FormatChoice, Measurement, Receiver, RowResults};

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
    /// UTC date and time of the run.
    pub date: String,
    /// Seconds per step.
    pub step_secs: f64,
    /// The generator's CPU.
    pub generator_cpu: u32,
    /// Warnings about the machine (not quiet, ...).
    pub warnings: Vec<String>,
    /// The command line that produced it.
    pub command: String,
    /// Whether this was a `--quick` smoke run.
    pub quick: bool,
    /// Frame shape offered (from the generator's mix).
    pub traffic: String,
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

fn mpps(pps: f64) -> String {
    format!("{:.3}", pps / 1e6)
}

fn opt_count(value: Option<u64>) -> String {
    value.map_or_else(|| "–".into(), |v| v.to_string())
}

fn opt_float(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

fn target_label(m: &Measurement) -> String {
    match m.target_pps {
        Some(pps) => mpps(pps),
        None => "flat out".into(),
    }
}

/// The table of every step of every row.
pub fn steps_table(rows: &[RowResults]) -> String {
    let mut out = String::new();
    out.push_str(
        "| receiver | asked (Mpps) | offered (Mpps) | offered | seen by XDP | received | recorded | \
         dropped by reason | lost before XDP | recorded (Mpps) | CPU s/Mpkt (machine) | \
         CPU s/Mpkt (process) | busy % per core | softirq % per core |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
    for row in rows {
        for m in &row.steps {
            if let Some(error) = &m.error {
                let _ = writeln!(
                    out,
                    "| {} | {} | – | – | – | – | – | not measured: {} | – | – | – | – | – | – |",
                    row.receiver.label(),
                    target_label(m),
                    error.replace('|', "\\|").replace('\n', " ")
                );
                continue;
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.receiver.label(),
                target_label(m),
                mpps(m.offered_pps()),
                m.offered,
                opt_count(m.seen_by_xdp),
                opt_count(m.received),
                m.handled,
                m.drop_reasons(),
                opt_count(m.lost_before_xdp()),
                mpps(m.handled_pps()),
                opt_float(m.cpu_seconds_per_mpkt(), 2),
                opt_float(m.process_seconds_per_mpkt(), 2),
                m.cpu.per_core(),
                m.cpu.softirq_per_core(),
            );
        }
    }
    out
}

/// One line per row: the highest zero-loss rate, the peak, the CPU cost when keeping up.
pub fn summary_table(rows: &[RowResults], step_secs: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| receiver | highest rate with zero loss over {step_secs:.0} s (Mpps) | peak recorded (Mpps) | \
         CPU s/Mpkt at that zero-loss rate (machine) |"
    );
    out.push_str("|---|---:|---:|---:|\n");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            row.receiver.label(),
            row.zero_loss_pps().map_or_else(|| "none".into(), mpps),
            row.peak_handled_pps().map_or_else(|| "–".into(), mpps),
            opt_float(row.cpu_at_zero_loss(), 2),
        );
    }
    out
}

/// The targets, each with what this run measured.
pub fn targets(rows: &[RowResults]) -> Vec<String> {
    let raw = crate::harness::measurement::Pipeline {
        decoder: DecoderChoice::Raw,
        format: FormatChoice::NdjsonZstd,
    };
    let find = |r: &Receiver| rows.iter().find(|row| &row.receiver == r);
    let sluice = find(&Receiver::Sluice(raw));
    let ceiling_b = find(&Receiver::AfXdpCount);
    let kernel = find(&Receiver::KernelTc(raw));
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut out = Vec::new();
    let Some(sluice) = sluice else {
        out.push("sluice raw → NDJSON+zstd was not measured: no target can be checked".into());
        return out;
    };
    let zl = sluice.zero_loss_pps().unwrap_or(0.0);
    out.push(format!(
        "full pipeline (raw) ≥ 1 Mpps with zero loss: {} ({} Mpps)",
        verdict(zl >= 1e6),
        mpps(zl)
    ));
    if let Some(b) = ceiling_b.and_then(RowResults::zero_loss_pps) {
        out.push(format!(
            "≥ 60% of ceiling B: {} ({:.0}% of {} Mpps)",
            verdict(zl >= 0.6 * b),
            100.0 * zl / b,
            mpps(b)
        ));
    }
    if let Some(k) = kernel.and_then(RowResults::zero_loss_pps) {
        out.push(format!(
            "≥ 3× the kernel path's zero-loss rate: {} ({:.1}× of {} Mpps)",
            verdict(zl >= 3.0 * k),
            zl / k,
            mpps(k)
        ));
    }
    if let (Some(s), Some(k)) = (
        sluice.cpu_at_zero_loss(),
        kernel.and_then(RowResults::cpu_at_zero_loss),
    ) {
        out.push(format!(
            "CPU per million packets ≥ 3× lower than the kernel path: {} ({s:.2} vs {k:.2} s/Mpkt, {:.1}×)",
            verdict(k >= 3.0 * s),
            k / s
        ));
    }
    out
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
    let _ = writeln!(
        out,
        "Measured {} on {} ({} cores), Linux {}, with `{}`. Each step offers {:.0} s of \
         traffic from an in-kernel generator (`BPF_PROG_TEST_RUN` with live frames, pinned \
         to CPU {}) in one network namespace into a veth whose other end, in a second \
         namespace, is the receiver. Traffic: {}.\n",
        context.date,
        context.cpu_model,
        context.cores,
        context.kernel,
        context.command,
        context.step_secs,
        context.generator_cpu,
        context.traffic,
    );
    for warning in &context.warnings {
        let _ = writeln!(out, "> **Warning:** {warning}\n");
    }
    let short: Vec<String> = rows
        .iter()
        .flat_map(|row| row.steps.iter().map(move |m| (row, m)))
        .filter_map(|(row, m)| {
            m.generator_shortfall().map(|share| {
                format!(
                    "{} at {} ({:.0}%)",
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
         format, to a tmpfs directory; **kernel** the same daemon on its UDP socket source \
         (64 MiB `SO_RCVBUF`) behind a tc-ingress program that strips the outer IP+GRE and \
         hands the inner packet to the stack — one stack pass where a kernel GRE device \
         makes two, so it *flatters* the kernel (these machines' kernel has no GRE device \
         and cannot load modules) — and behind the kernel's built-in VXLAN device, which \
         has the receive shape of a GRE device.\n\n",
    );
    out.push_str(
        "*CPU s/Mpkt (machine)* is busy CPU time of all cores (from /proc/stat, generator \
         included) per million packets recorded; *(process)* is the receiving process's own \
         user+system time. On a veth the receiver's XDP program and network stack run in \
         softirq on the **sender's** core, which is why every rate comes with per-core busy \
         and softirq shares.\n\n",
    );
    out.push_str("### Zero-loss rate per receiver\n\n");
    out.push_str(&summary_table(rows, context.step_secs));
    out.push('\n');
    out.push_str("### Targets\n\n");
    for line in targets(rows) {
        let _ = writeln!(out, "- {line}");
    }
    out.push('\n');
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
    }
    out.push_str("### Every step\n\n");
    out.push_str(&steps_table(rows));
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
            steps: vec![m],
        }];
        let v = accounting_violations(&rows, &MemoryReport::default());
        assert_eq!(v.len(), 1);
        assert!(v[0].contains("seen 10 != recorded 8 + dropped 1"), "{v:?}");
    }
}
