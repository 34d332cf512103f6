//! `sluice-bench`: the end-to-end packet-rate benchmark of issue 6, normally started by
//! `cargo xtask bench` (which builds it and the daemon, and passes the output paths).
//!
//! Checks that the records directory is on a disk (statfs: not tmpfs or ramfs, unless
//! named explicitly) and that the machine is quiet, runs every row at every rate
//! ([`harness::runner`]; the sluice XDP rows `--runs` times), prints the tables, writes
//! its section of BENCHMARKS.md and the chart, and exits 1 when any sluice run's account
//! did not balance (seen ≠ recorded + dropped) or a row could not be measured, so a
//! broken benchmark never passes silently. Missed targets are reported, not failed.
//!
//! The generator sends with live frames where the kernel runs them and with AF_PACKET
//! where it refuses them (much lower highest rate); `SLUICE_BENCH_GENERATOR=xdp-live` or
//! `af-packet` forces one. The report names the engine.
//!
//! With `--objects` it measures instead what the uploader makes of the traffic (issue 11,
//! [`harness::objects`]): objects per hour, their size and the uploader's CPU, batches
//! combined against one object per batch, into its own section of BENCHMARKS.md; it exits
//! 1 as well when a run could not be measured, did not balance, or left anything not
//! uploaded at exit.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Parser;
use sluice_bench::generator;
use sluice_bench::harness::{
    chart, cpu, guest_idle,
    medium::{self, DEFAULT_RECORDS_DIR, Medium, TMPFS_RECORDS_DIR},
    objects::{self, ObjectsPlan},
    plan::{self, AcmeEvents, Plan, Rate},
    report::{self, RunContext},
    runner,
};

/// End-to-end packet rate: ceilings, sluice and the kernel path, side by side.
#[derive(Debug, Parser)]
#[command(name = "sluice-bench")]
struct Cli {
    /// The release `sluice` binary (default: next to this one).
    #[arg(long)]
    sluice: Option<PathBuf>,
    /// Smoke run: rates 0.25,1,max, 2 s per step, 5 s of overload.
    #[arg(long)]
    quick: bool,
    /// Offered rates in Mpps, comma-separated; `max` is flat out.
    #[arg(long)]
    rates: Option<String>,
    /// Seconds of traffic per step (default 10, --quick 2); the zero-loss rate is "over"
    /// this long.
    #[arg(long)]
    step_secs: Option<f64>,
    /// Seconds of sustained flat-out overload of sluice (raw, NDJSON) for peak RSS
    /// (default 60, --quick 5; 0 skips it).
    #[arg(long)]
    overload_secs: Option<f64>,
    /// Rows, comma-separated: a, b, sluice-raw-ndjson, sluice-raw-parquet,
    /// sluice-raw-ndjson-tmpfs, sluice-raw-parquet-tmpfs, sluice-schema-ndjson,
    /// sluice-schema-parquet, sluice-lua-ndjson, sluice-lua-parquet, kernel-tc, kernel-vxlan
    /// (default: all). They run, and are tabled, in this order.
    #[arg(long)]
    rows: Option<String>,
    /// Sweeps of each sluice XDP row, back to back (the ceilings and the kernel path run
    /// once); a target is met only if met in every run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// CPU the generator (and, on veth, the receiver's softirq work) runs on.
    #[arg(long, default_value_t = 0)]
    generator_cpu: usize,
    /// sluice `pipeline.workers` (0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    workers: u32,
    /// sluice `pipeline.queue_depth`.
    #[arg(long, default_value_t = 256)]
    queue_depth: u32,
    /// sluice `source.busy_poll_usecs` (0 = the receive thread sleeps when idle).
    #[arg(long, default_value_t = 0)]
    busy_poll_usecs: u32,
    /// sluice `pipeline.worker_scheduling` (default: the daemon's own, `idle`).
    #[arg(long, value_parser = ["normal", "batch", "idle"])]
    worker_scheduling: Option<String>,
    /// Sets the guest's `guest_halt_poll_ns` (cpuidle `haltpoll`) for the run and puts the
    /// old value back after: how long an idle vCPU polls before it halts and gives its
    /// core to the host. For comparing the guest's idle policy; the report names it.
    #[arg(long)]
    guest_halt_poll_ns: Option<u64>,
    /// Raw payload length in bytes (18 bytes with a GRE key makes 88-byte frames).
    #[arg(long, default_value_t = 18)]
    payload_len: usize,
    /// The ACME-SENSOR v2 events of the schema and lua rows: `series`, a sensor's
    /// successive events (sequence number, time and values new in every packet, as real
    /// devices send them), or `repeated`, the example event in every packet (what the
    /// figures before 2026-12-06, session 13, were measured with).
    #[arg(long, value_enum, default_value_t = AcmeEvents::Series)]
    acme_events: AcmeEvents,
    /// Parent directory of the records [default: /var/tmp, a disk: the daemon fsyncs
    /// every file, so the disk is measured; refused if it is tmpfs or ramfs, unless given
    /// explicitly]. The (tmpfs) rows write to /dev/shm. Objects mode: the spools
    /// [default: /dev/shm].
    #[arg(long)]
    records_dir: Option<PathBuf>,
    /// Write the generated section into this BENCHMARKS.md (between its markers).
    #[arg(long)]
    benchmarks_md: Option<PathBuf>,
    /// Draw the chart into this PNG.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// How BENCHMARKS.md links the chart (relative to it).
    #[arg(long)]
    chart_link: Option<String>,
    /// Measure the objects the uploader makes instead (issue 11): sluice raw → Parquet
    /// uploading to a Cloud Storage emulator, batches combined (the defaults) and one
    /// object per batch, at each of `--rates` (default 0.5,1).
    #[arg(long)]
    objects: bool,
    /// Objects mode: seconds of traffic per rate with combined objects (default 600,
    /// which holds four or more objects at 0.5 Mpps; --quick 20).
    #[arg(long)]
    objects_secs: Option<f64>,
    /// Objects mode: seconds of traffic per rate with one object per batch (default 60,
    /// --quick 10).
    #[arg(long)]
    per_batch_secs: Option<f64>,
    /// Objects mode: `object_max_age_secs` of the combined runs (default: the daemon's,
    /// 300). For trying the harness out; the published runs keep the default.
    #[arg(long)]
    object_max_age_secs: Option<u64>,
    /// Objects mode: the fake-gcs-server binary (default: $SLUICE_FAKE_GCS_SERVER, or the
    /// one `cargo xtask setup` installs).
    #[arg(long)]
    emulator: Option<PathBuf>,
    /// Objects mode: parent directory of the emulator's objects; a disk, not tmpfs, so
    /// that the bucket, which grows with the traffic, takes no memory. The spools go to
    /// --records-dir.
    #[arg(long, default_value = "/var/tmp")]
    emulator_dir: PathBuf,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// `secs` from an option, its full-run default or its `--quick` one.
fn duration(
    cli: &Cli,
    value: Option<f64>,
    full: f64,
    quick: f64,
    what: &str,
) -> anyhow::Result<Duration> {
    let value = value.unwrap_or(if cli.quick { quick } else { full });
    Duration::try_from_secs_f64(value).with_context(|| format!("--{what} {value}"))
}

/// The release `sluice` binary: `--sluice`, or next to this one.
fn sluice_binary(cli: &Cli) -> anyhow::Result<PathBuf> {
    let sluice = match &cli.sluice {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .join("sluice"),
    };
    if !sluice.is_file() {
        bail!(
            "{} does not exist: build it (`cargo build --release -p sluice`) or pass --sluice",
            sluice.display()
        );
    }
    Ok(sluice)
}

fn parse_rates(text: &str) -> anyhow::Result<Vec<Rate>> {
    text.split(',')
        .map(Rate::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)
}

fn plan_from(cli: &Cli) -> anyhow::Result<Plan> {
    let rates_text = cli.rates.clone().unwrap_or_else(|| {
        if cli.quick {
            plan::QUICK_RATES.to_owned()
        } else {
            plan::DEFAULT_RATES.to_owned()
        }
    });
    let rates = parse_rates(&rates_text)?;
    let rows = match &cli.rows {
        Some(text) => text
            .split(',')
            .map(plan::parse_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?,
        None => plan::ROW_NAMES
            .iter()
            .map(|name| plan::parse_row(name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?,
    };
    let rows = plan::sweeps(&plan::in_table_order(&rows), cli.runs as usize);
    let sluice = sluice_binary(cli)?;
    Ok(Plan {
        rows,
        rates,
        step: duration(cli, cli.step_secs, 10.0, 2.0, "step-secs")?,
        overload: duration(cli, cli.overload_secs, 60.0, 5.0, "overload-secs")?,
        generator_cpu: cli.generator_cpu,
        workers: cli.workers,
        queue_depth: cli.queue_depth,
        busy_poll_usecs: cli.busy_poll_usecs,
        worker_scheduling: cli.worker_scheduling.clone(),
        payload_len: cli.payload_len,
        acme_events: cli.acme_events,
        sluice,
        records_root: cli
            .records_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_RECORDS_DIR.into()),
        settle: Duration::from_millis(1500),
        quick: cli.quick,
    })
}

/// `model name` of the first CPU.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (y, mo, d, h, mi, _) = sluice_decode::civil::civil_from_unix_seconds(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC")
}

/// How the run is described in BENCHMARKS.md: `cargo xtask bench` and the options that
/// change what is measured (the output paths xtask adds are left out).
fn shown_command(args: impl Iterator<Item = String>) -> String {
    let mut shown = vec!["cargo xtask bench".to_owned()];
    let mut extra = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        match arg.as_str() {
            "--sluice" | "--benchmarks-md" | "--chart" | "--chart-link" | "--emulator" => {
                skip_value = true;
            }
            "--quick" | "--objects" => shown.push(arg),
            _ => extra.push(arg),
        }
    }
    if !extra.is_empty() {
        shown.push("--".into());
        shown.extend(extra);
    }
    shown.join(" ")
}

fn run() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    if !sluice_testkit::privilege::is_root() {
        bail!("sluice-bench creates network namespaces and attaches XDP: run it as root");
    }
    sluice_testkit::cleanup::install_signal_cleanup()?;
    // Held until the run ends: the old value goes back when it is dropped.
    let _halt_poll = match cli.guest_halt_poll_ns {
        Some(ns) => {
            let set = guest_idle::HaltPollOverride::set(ns)?;
            println!(
                "sluice-bench: guest_halt_poll_ns {ns} for this run (was {}; put back at the end)",
                set.previous()
            );
            Some(set)
        }
        None => None,
    };
    if cli.objects {
        return run_objects(&cli);
    }
    let plan = plan_from(&cli)?;
    let mut context = run_context(
        &cli,
        plan.step.as_secs_f64(),
        format!(
            "GRE (IPv4 outer, key {}) carrying IPv4 UDP, {}-byte raw payloads ({} bytes per frame) \
             or {} for the schema and lua rows, 256 inner source ports; VXLAN (VNI {}) for the \
             VXLAN row",
            plan::GRE_KEY,
            plan.payload_len,
            14 + 20 + 8 + 20 + 8 + plan.payload_len,
            plan.acme_events.describe(),
            plan::VXLAN_VNI
        ),
    )?;
    let (records, tmpfs_records) = records_media(&cli, &plan)?;
    context.records = records;
    context.tmpfs_records = tmpfs_records;
    println!(
        "sluice-bench: {} sweeps x {} rates, {:.0} s per step, overload {:.0} s, records to {}; \
         about {:.0} min",
        plan.rows.len(),
        plan.rates.len(),
        plan.step.as_secs_f64(),
        plan.overload.as_secs_f64(),
        context.records,
        plan.estimate().as_secs_f64() / 60.0
    );
    quiet_check(&mut context)?;

    let work = tempfile::Builder::new()
        .prefix("sluice-bench-")
        .tempdir()
        .context("creating the work directory")?;
    let records = tempfile::Builder::new()
        .prefix("sluice-bench-records-")
        .tempdir_in(&plan.records_root)
        .with_context(|| format!("creating a directory in {}", plan.records_root.display()))?;
    let plan = Plan {
        records_root: records.path().to_owned(),
        ..plan
    };
    let outcome = runner::run(&plan, work.path());

    let chart_link = match &cli.chart {
        Some(path) => match chart::draw(
            path,
            "Sluice: recorded vs offered packet rate",
            &outcome.rows,
        ) {
            Ok(()) => {
                println!("chart: {}", path.display());
                Some(
                    cli.chart_link
                        .clone()
                        .unwrap_or_else(|| path.display().to_string()),
                )
            }
            Err(e) => {
                println!("WARNING: no chart: {e}");
                None
            }
        },
        None => None,
    };
    let section = report::section(
        &context,
        &outcome.rows,
        &outcome.memory,
        chart_link.as_deref(),
    );
    println!("\n{section}");
    if let Some(path) = &cli.benchmarks_md {
        report::update_file(path, &section)?;
        println!("wrote the packet-rate section of {}", path.display());
    }
    let violations = report::accounting_violations(&outcome.rows, &outcome.memory);
    for violation in &violations {
        eprintln!("ACCOUNTING VIOLATION: {violation}");
    }
    let failures: usize = outcome
        .rows
        .iter()
        .flat_map(|r| r.steps.iter())
        .chain(outcome.memory.overload.iter().map(|o| &o.measurement))
        .filter(|m| m.error.is_some())
        .count();
    if failures > 0 {
        eprintln!("{failures} step(s) could not be measured (see the table)");
    }
    Ok(violations.is_empty() && failures == 0)
}

/// What the records directory (and, with `(tmpfs)` rows, /dev/shm) is on, described for
/// the report; refuses a default records directory on tmpfs or ramfs, and a /dev/shm that
/// is not in memory.
fn records_media(cli: &Cli, plan: &Plan) -> anyhow::Result<(String, Option<String>)> {
    let records = Medium::of(&plan.records_root).with_context(|| {
        format!(
            "--records-dir {}: cannot tell its filesystem",
            plan.records_root.display()
        )
    })?;
    if let Some(refusal) = medium::refusal(&records, cli.records_dir.is_some()) {
        bail!("{refusal}");
    }
    let tmpfs = if plan.rows.iter().any(|r| r.records_in_memory()) {
        let shm = Medium::of(TMPFS_RECORDS_DIR.as_ref())
            .with_context(|| format!("{TMPFS_RECORDS_DIR}: cannot tell its filesystem"))?;
        if !shm.in_memory() {
            bail!(
                "the (tmpfs) rows write to {TMPFS_RECORDS_DIR}, which is on {}, not tmpfs: \
                 leave those rows out (--rows)",
                shm.fs_type
            );
        }
        Some(shm.describe())
    } else {
        None
    };
    Ok((records.describe(), tmpfs))
}

/// The machine's description and the run's command line.
fn run_context(cli: &Cli, step_secs: f64, traffic: String) -> anyhow::Result<RunContext> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cli.generator_cpu >= cores {
        bail!(
            "--generator-cpu {} but this machine has {cores} CPUs",
            cli.generator_cpu
        );
    }
    Ok(RunContext {
        cpu_model: cpu_model(),
        cores,
        kernel: kernel_release(),
        guest_idle: guest_idle::describe(),
        date: utc_now(),
        step_secs,
        generator_cpu: cli.generator_cpu as u32,
        // Asked now, as every generator of the run will: the choice (or the kernel's
        // refusal of live frames) shows before the first row.
        generator_engine: Some(generator::chosen_engine().context("choosing the generator")?),
        warnings: Vec::new(),
        command: shown_command(std::env::args().skip(1)),
        quick: cli.quick,
        traffic,
        records: String::new(),
        tmpfs_records: None,
    })
}

/// One second of /proc/stat: a warning in `context` when the machine is not quiet.
fn quiet_check(context: &mut RunContext) -> anyhow::Result<()> {
    let idle = cpu::measure(Duration::from_secs(1))?;
    println!(
        "machine before the run: busy % per core {}",
        idle.per_core()
    );
    if let Some(warning) = cpu::quiet_warning(&idle) {
        println!("WARNING: {warning}");
        context.warnings.push(warning);
    }
    Ok(())
}

/// `--objects`: the uploader's objects, combined and one per batch (issue 11).
fn run_objects(cli: &Cli) -> anyhow::Result<bool> {
    let rates = parse_rates(cli.rates.as_deref().unwrap_or(objects::DEFAULT_RATES))?;
    let emulator = match &cli.emulator {
        Some(path) => Some(path.clone()).filter(|p| p.is_file()),
        None => sluice_testkit::gcs::emulator_binary(),
    }
    .context(
        "no fake-gcs-server binary: run `cargo xtask setup`, or pass --emulator \
         (or set SLUICE_FAKE_GCS_SERVER)",
    )?;
    let plan = ObjectsPlan {
        rates,
        combined_traffic: duration(cli, cli.objects_secs, 600.0, 20.0, "objects-secs")?,
        per_batch_traffic: duration(cli, cli.per_batch_secs, 60.0, 10.0, "per-batch-secs")?,
        object_max_age_secs: cli.object_max_age_secs,
        generator_cpu: cli.generator_cpu,
        workers: cli.workers,
        queue_depth: cli.queue_depth,
        busy_poll_usecs: cli.busy_poll_usecs,
        worker_scheduling: cli.worker_scheduling.clone(),
        payload_len: cli.payload_len,
        sluice: sluice_binary(cli)?,
        emulator,
        spool_root: cli
            .records_dir
            .clone()
            .unwrap_or_else(|| TMPFS_RECORDS_DIR.into()),
        emulator_root: cli.emulator_dir.clone(),
        quick: cli.quick,
    };
    let mut context = run_context(
        cli,
        plan.combined_traffic.as_secs_f64(),
        format!(
            "GRE (IPv4 outer, key {}) carrying IPv4 UDP, {}-byte raw payloads ({} bytes per \
             frame), 256 inner source ports",
            plan::GRE_KEY,
            plan.payload_len,
            14 + 20 + 8 + 20 + 8 + plan.payload_len,
        ),
    )?;
    println!(
        "sluice-bench --objects: rates {}, {:.0} s combined and {:.0} s per batch each; about {:.0} min",
        objects::runner::rates_label(&plan.rates),
        plan.combined_traffic.as_secs_f64(),
        plan.per_batch_traffic.as_secs_f64(),
        plan.estimate().as_secs_f64() / 60.0
    );
    quiet_check(&mut context)?;
    let work = tempfile::Builder::new()
        .prefix("sluice-bench-objects-")
        .tempdir()
        .context("creating the work directory")?;
    let spools = tempfile::Builder::new()
        .prefix("sluice-bench-spools-")
        .tempdir_in(&plan.spool_root)
        .with_context(|| format!("creating a directory in {}", plan.spool_root.display()))?;
    let buckets = tempfile::Builder::new()
        .prefix("sluice-bench-buckets-")
        .tempdir_in(&plan.emulator_root)
        .with_context(|| format!("creating a directory in {}", plan.emulator_root.display()))?;
    let settings = objects::report::ObjectsSettings {
        combined_secs: plan.combined_traffic.as_secs_f64(),
        per_batch_secs: plan.per_batch_traffic.as_secs_f64(),
        spool_root: plan.spool_root.display().to_string(),
        emulator_root: plan.emulator_root.display().to_string(),
        object_max_age_secs: plan.object_max_age_secs,
    };
    let plan = ObjectsPlan {
        spool_root: spools.path().to_owned(),
        emulator_root: buckets.path().to_owned(),
        ..plan
    };
    let runs = objects::runner::run(&plan, work.path());
    let section = objects::report::section(&context, &settings, &runs);
    println!("\n{section}");
    if let Some(path) = &cli.benchmarks_md {
        report::update_file_between(
            path,
            &section,
            objects::report::BEGIN_MARKER,
            objects::report::END_MARKER,
        )?;
        println!("wrote the objects section of {}", path.display());
    }
    let mut ok = true;
    for run in &runs {
        let what = format!("{} {}", run.rate.label(), run.mode.short());
        if let Some(error) = &run.error {
            eprintln!("{what}: could not be measured: {error}");
            ok = false;
            continue;
        }
        if !run.balanced() {
            eprintln!("ACCOUNTING VIOLATION: {what}: {:?}", run.accounting);
            ok = false;
        }
        let problems = run.upload_problems();
        if !problems.is_empty() {
            eprintln!("NOT ALL UPLOADED: {what}: {}", problems.join("; "));
            ok = false;
        }
    }
    Ok(ok)
}
