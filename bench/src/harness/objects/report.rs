//! The objects benchmark as text: its table and its section of BENCHMARKS.md, between
//! `<!-- objects:begin -->` and `<!-- objects:end -->` (spliced like the packet-rate
//! section, which it leaves alone).

use std::fmt::Write as _;

use super::outcome::ObjectsRun;
use super::{DEFAULT_TARGET_BYTES, MAX_BATCHES, ObjectMode, default_max_age_secs};
use crate::harness::plan::Rate;
use crate::harness::report::RunContext;

/// Opening marker of the generated section.
pub const BEGIN_MARKER: &str = "<!-- objects:begin -->";
/// Closing marker of the generated section.
pub const END_MARKER: &str = "<!-- objects:end -->";

/// What the section says about the set-up besides the machine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectsSettings {
    /// Traffic per rate, combined, seconds.
    pub combined_secs: f64,
    /// Traffic per rate, per batch, seconds.
    pub per_batch_secs: f64,
    /// Where the spools were (e.g. `/dev/shm`, tmpfs).
    pub spool_root: String,
    /// Where the emulator's objects were.
    pub emulator_root: String,
    /// `object_max_age_secs` of the combined runs when not the default.
    pub object_max_age_secs: Option<u64>,
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

fn mib(bytes: f64) -> f64 {
    bytes / 1_048_576.0
}

/// `9.4 MiB`, or `14 KiB` below a MiB (a batch of this traffic is a few KiB).
pub fn size_label(bytes: f64) -> String {
    if bytes >= 1_048_576.0 {
        format!("{:.1} MiB", mib(bytes))
    } else {
        format!("{:.0} KiB", bytes / 1024.0)
    }
}

/// `1 object`, `2 objects`.
fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn rate_label(rate: Rate) -> String {
    match rate {
        Rate::Pps(pps) => format!("{:.2}", pps as f64 / 1e6),
        Rate::FlatOut => "flat out".into(),
    }
}

/// After SIGTERM: everything uploaded, or what was not.
fn at_exit(run: &ObjectsRun) -> String {
    let problems = run.upload_problems();
    let bucket = run.bucket.map_or_else(String::new, |b| {
        let capped = if b.at_batch_cap > 0 {
            format!(" ({} with {MAX_BATCHES} batches)", b.at_batch_cap)
        } else {
            String::new()
        };
        format!(
            "{}{capped}, {}, {}",
            count(b.objects, "object", "objects"),
            count(b.batches, "batch", "batches"),
            size_label(b.bytes as f64)
        )
    });
    if problems.is_empty() {
        format!("yes: {bucket}; spool empty")
    } else {
        format!(
            "**NO**: {}{}",
            problems.join("; ").replace('|', "\\|"),
            if bucket.is_empty() {
                String::new()
            } else {
                format!(" ({bucket})")
            }
        )
    }
}

/// The table: one line per rate and mode.
pub fn table(runs: &[ObjectsRun]) -> String {
    let mut out = String::from(
        "| asked (Mpps) | mode | traffic (s) | offered (Mpps) | objects in window | \
         objects/h (window) | objects/h (steady) | first object after (s) | mean object | \
         batches per object | uploader CPU (s/s) | daemon CPU (s/Mpkt) | emulator CPU (s/s) | \
         busy % per core | recorded | dropped by reason | balanced | everything uploaded at exit |\n",
    );
    out.push_str(
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n",
    );
    for run in runs {
        if let Some(error) = &run.error {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | – | – | – | – | – | – | – | – | – | – | – | – | not measured: {} | – | – |",
                rate_label(run.rate),
                run.mode_label(),
                run.traffic.as_secs_f64(),
                error.replace('|', "\\|").replace('\n', " ")
            );
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.3} | {} | {:.0} | {} | {} | {} | {} | {:.3} | {} | {} | {} | {} | {} | {} | {} |",
            rate_label(run.rate),
            run.mode_label(),
            run.window.as_secs_f64(),
            run.offered_pps() / 1e6,
            run.objects_in_window(),
            run.objects_per_hour(),
            opt(run.steady_objects_per_hour(), 0),
            opt(run.first_object_after().map(|d| d.as_secs_f64()), 0),
            run.mean_object_bytes()
                .map_or_else(|| "–".into(), size_label),
            opt(run.batches_per_object(), 1),
            run.uploader_cpu_per_second(),
            opt(run.daemon_seconds_per_mpkt(), 2),
            opt(run.emulator_cpu_per_second(), 3),
            run.machine.per_core(),
            run.accounting
                .as_ref()
                .map_or_else(|| "–".into(), |a| a.recorded.to_string()),
            run.drop_reasons(),
            if run.balanced() { "yes" } else { "**NO**" },
            at_exit(run),
        );
    }
    out
}

/// Peak memory of the daemon and the emulator, and how long listing the bucket took.
pub fn memory_table(runs: &[ObjectsRun]) -> String {
    let mut out = String::from(
        "| asked (Mpps) | mode | sluice peak RSS (MiB) | emulator peak RSS (MiB) | listing the bucket (s) |\n\
         |---:|---|---:|---:|---:|\n",
    );
    for run in runs.iter().filter(|r| r.error.is_none()) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            rate_label(run.rate),
            run.mode_label(),
            opt(run.daemon_peak_rss_kib.map(|k| k as f64 / 1024.0), 1),
            opt(run.emulator_peak_rss_kib.map(|k| k as f64 / 1024.0), 1),
            opt(run.listing_took.map(|d| d.as_secs_f64()), 1),
        );
    }
    out
}

/// Per rate measured in both modes, the ratios the table implies (computed, so they stay
/// true to the numbers of whatever run wrote them).
pub fn comparisons(runs: &[ObjectsRun]) -> Vec<String> {
    let mut out = Vec::new();
    let find = |rate: Rate, mode: ObjectMode| {
        runs.iter()
            .find(|r| r.rate == rate && r.mode == mode && r.error.is_none())
    };
    let mut rates: Vec<Rate> = Vec::new();
    for run in runs {
        if !rates.contains(&run.rate) {
            rates.push(run.rate);
        }
    }
    for rate in rates {
        let (Some(combined), Some(per_batch)) = (
            find(rate, ObjectMode::Combined),
            find(rate, ObjectMode::PerBatch),
        ) else {
            continue;
        };
        if combined.objects_in_window() == 0 {
            out.push(format!(
                "At {} Mpps no combined object was uploaded within {:.0} s of traffic (the first \
                 one waits for {:.0} MiB, {MAX_BATCHES} batches or {} s): run longer to compare.",
                rate_label(rate),
                combined.window.as_secs_f64(),
                mib(DEFAULT_TARGET_BYTES as f64),
                combined.max_age_secs()
            ));
            continue;
        }
        let per_cpu = per_batch.uploader_cpu_per_second();
        let combined_cpu = combined.uploader_cpu_per_second();
        out.push(format!(
            "At {} Mpps: {:.0} objects/h per stream combined against {:.0} one per batch \
             ({:.0}× fewer; {} and {:.0} batches against {} each); the uploader used \
             {:.3} against {:.3} CPU s/s{}.",
            rate_label(rate),
            combined.objects_per_hour(),
            per_batch.objects_per_hour(),
            per_batch.objects_per_hour() / combined.objects_per_hour(),
            combined
                .mean_object_bytes()
                .map_or_else(|| "–".into(), size_label),
            combined.batches_per_object().unwrap_or(0.0),
            per_batch
                .mean_object_bytes()
                .map_or_else(|| "–".into(), size_label),
            combined_cpu,
            per_cpu,
            if combined_cpu > 0.0 && per_cpu > 0.0 {
                format!(" ({:.1}×)", per_cpu / combined_cpu)
            } else {
                String::new()
            }
        ));
    }
    out
}

/// The whole generated section, markers included.
pub fn section(context: &RunContext, settings: &ObjectsSettings, runs: &[ObjectsRun]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{BEGIN_MARKER}");
    out.push_str(
        "<!-- Generated by `cargo xtask bench --objects`; edits between these markers are overwritten. -->\n\n",
    );
    out.push_str("## Objects in the bucket\n\n");
    if context.quick {
        out.push_str(
            "**Smoke run (`--quick`): seconds of traffic, less than a combined object takes to \
             close; these figures prove the harness works and are not the published \
             measurement.**\n\n",
        );
    }
    let _ = writeln!(
        out,
        "Measured {} on {} ({} cores), Linux {}{}, with `{}`. The sluice XDP row of the \
         packet-rate benchmark, raw → Parquet (the production default format), with \
         `sink.kind = \"gcs\"` uploading to fake-gcs-server (filesystem backend, objects \
         under `{}`) on the receiver namespace's loopback, 127.0.0.1:80; the spool on `{}`; \
         every other upload and batch setting at its default (batches of at most 100 000 \
         records, 8 MiB or 1 s; `concurrency = 8`). Traffic: {}, from {} pinned to CPU {}; \
         one stream (`raw`). Each run has a fresh daemon, spool, emulator and bucket.\n",
        context.date,
        context.cpu_model,
        context.cores,
        context.kernel,
        crate::harness::report::guest_idle_phrase(context),
        context.command,
        settings.emulator_root,
        settings.spool_root,
        context.traffic,
        crate::harness::report::generator_phrase(context.generator_engine),
        context.generator_cpu,
    );
    let default_age = default_max_age_secs();
    let combined = match settings.object_max_age_secs {
        None => format!("**combined (defaults)** — `object_max_age_secs = {default_age}`"),
        Some(age) => format!(
            "**combined** — `object_max_age_secs = {age}` (`--object-max-age-secs`; the \
             default is {default_age})"
        ),
    };
    let _ = writeln!(
        out,
        "Modes: {combined}, `object_target_bytes` unset ({:.0} MiB for Parquet), and the \
         uploader's fixed cap of {MAX_BATCHES} batches per object (`MAX_BATCHES`, \
         userspace/upload/src/plan.rs) — an object closes on whichever comes first — {:.0} s \
         of traffic per rate; **per batch** — `object_target_bytes = 1`, every spooled batch \
         an object of its own (the behaviour before batches were combined), {:.0} s per \
         rate.\n",
        mib(DEFAULT_TARGET_BYTES as f64),
        settings.combined_secs,
        settings.per_batch_secs
    );
    for warning in &context.warnings {
        let _ = writeln!(out, "> **Warning:** {warning}\n");
    }
    out.push_str(
        "How it is measured. The *window* is the traffic, from just before the generator \
         starts to just after it stops. *Objects in window*, *mean object* and *batches per \
         object* are deltas of `sluice_upload_objects_total`, `sluice_uploaded_bytes_total` \
         and `sluice_upload_object_batches_total`, scraped from the daemon's /metrics at both \
         ends. *objects/h (window)* is objects in the window × 3600 / window seconds; in \
         combined mode it includes the wait for the first object to fill, so a window only a \
         few objects long understates the steady rate. *objects/h (steady)* is the rate \
         between the first and the last upload seen in the window (/metrics polled every \
         second; – with fewer than two). An object never spans an hour partition and there \
         is one stream, so both are objects per hour per stream. *uploader CPU* is the CPU \
         time of the daemon's threads named `sluice-upload*` (the dispatcher and its tokio \
         runtime's workers and blocking pool) per second of window: each thread's \
         `se.sum_exec_runtime` from /proc/PID/task/TID/sched, read every second so that \
         threads retired in the window still count — not utime+stime, which are whole ticks \
         cut per thread and read 0 for a dozen threads that each run under a tick a second. \
         *daemon CPU* is the whole process's utime+stime (/proc/PID/stat) per million \
         packets recorded; *emulator CPU* fake-gcs-server's per second. *Everything uploaded at exit*: after SIGTERM (which combines and uploads \
         all that is spooled) the daemon exited 0, its stats file leaves no batch spooled, \
         the spool directory holds nothing but its lock, and the bucket's listing has every \
         object of the run, holding (by their `-x<N>` names) every batch the daemon wrote.\n\n",
    );
    out.push_str(&table(runs));
    out.push('\n');
    let comparisons = comparisons(runs);
    if !comparisons.is_empty() {
        for line in &comparisons {
            let _ = writeln!(out, "- {line}");
        }
        out.push('\n');
    }
    out.push_str("### Memory and listing\n\n");
    out.push_str(&memory_table(runs));
    out.push('\n');
    let unbalanced: Vec<String> = runs
        .iter()
        .filter(|r| r.error.is_none() && !r.balanced())
        .map(|r| {
            let a = r.accounting.clone().unwrap_or_default();
            format!(
                "{} Mpps, {}: seen {} != recorded {} + dropped {} (in flight {}, exit {})",
                rate_label(r.rate),
                r.mode_label(),
                a.seen,
                a.recorded,
                a.dropped_total,
                a.in_flight,
                a.exit
            )
        })
        .collect();
    if unbalanced.is_empty() {
        out.push_str(
            "Every run's account balanced at exit: seen = recorded + dropped, nothing in flight.\n",
        );
    } else {
        out.push_str("**The account did not balance in these runs:**\n\n");
        for line in &unbalanced {
            let _ = writeln!(out, "- **{line}**");
        }
    }
    let _ = writeln!(out, "\n{END_MARKER}");
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::harness::measurement::Accounting;
    use crate::harness::objects::probe::{BucketSummary, UploadCounters};

    fn measured(mode: ObjectMode, objects: u64, bytes: u64, batches: u64, cpu: f64) -> ObjectsRun {
        let mut run = ObjectsRun::new(Rate::Pps(1_000_000), mode, Duration::from_secs(60));
        run.window = Duration::from_secs(60);
        run.generator_elapsed = Duration::from_secs(60);
        run.offered = 60_000_000;
        run.at_end = UploadCounters {
            objects,
            uploaded_bytes: bytes,
            object_batches: batches,
            ..UploadCounters::default()
        };
        run.uploader_cpu_seconds = cpu;
        run.accounting = Some(Accounting {
            seen: 60_000_000,
            recorded: 60_000_000,
            exit: "exit status: 0".into(),
            ..Accounting::default()
        });
        run.left_spooled_files = Some(0);
        run.spool_leftovers = Some(0);
        run.batches_written = Some(batches + 5);
        run.objects_uploaded = Some(objects + 1);
        run.bucket = Some(BucketSummary {
            objects: objects + 1,
            bytes: bytes + 1,
            batches: batches + 5,
            at_batch_cap: 0,
        });
        run
    }

    #[test]
    fn the_table_and_the_comparison_follow_the_numbers() {
        let runs = vec![
            measured(ObjectMode::Combined, 2, 512 << 20, 600, 0.6),
            measured(ObjectMode::PerBatch, 600, 512 << 20, 600, 3.0),
        ];
        let table = table(&runs);
        assert_eq!(table.lines().count(), 4, "{table}");
        assert!(
            table.contains(
                "| 1.00 | combined (defaults) | 60 | 1.000 | 2 | 120 | – | – | 256.0 MiB | 300.0 | 0.010 |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| yes: 3 objects, 605 batches, 512.0 MiB; spool empty |"),
            "{table}"
        );
        let lines = comparisons(&runs);
        assert_eq!(
            lines,
            vec![
                "At 1.00 Mpps: 120 objects/h per stream combined against 36000 one per batch \
                 (300× fewer; 256.0 MiB and 300 batches against 874 KiB each); the uploader \
                 used 0.010 against 0.050 CPU s/s (5.0×)."
                    .to_owned()
            ]
        );
        let context = RunContext {
            quick: true,
            ..RunContext::default()
        };
        let section = section(&context, &ObjectsSettings::default(), &runs);
        assert!(section.starts_with(BEGIN_MARKER));
        assert!(section.trim_end().ends_with(END_MARKER));
        assert!(section.contains("Smoke run"));
        assert!(section.contains("Every run's account balanced"));
    }

    #[test]
    fn the_section_replaces_only_its_own_markers() {
        use crate::harness::report::{self as packet_rate, splice_between};
        let packet = format!(
            "{}\nrates\n{}\n",
            packet_rate::BEGIN_MARKER,
            packet_rate::END_MARKER
        );
        let text = format!("# B\n\n{packet}\n## Hand\n\n{BEGIN_MARKER}\nold\n{END_MARKER}\n");
        let section = format!("{BEGIN_MARKER}\nnew\n{END_MARKER}\n");
        assert_eq!(
            splice_between(&text, &section, BEGIN_MARKER, END_MARKER),
            Some(format!("# B\n\n{packet}\n## Hand\n\n{section}"))
        );
    }

    #[test]
    fn a_run_that_left_batches_behind_says_so() {
        let mut run = measured(ObjectMode::PerBatch, 10, 100, 10, 0.1);
        run.left_spooled_files = Some(2);
        assert!(at_exit(&run).starts_with("**NO**: 2 batches left spooled"));
    }
}
