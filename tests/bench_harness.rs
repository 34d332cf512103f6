//! Smoke test of the packet-rate harness (`cargo xtask bench`): one short row — `sluice run`
//! with the raw decoder and NDJSON+zstd, at a low offered rate for 2 s — through exactly
//! the code the benchmark runs (lab, generator, daemon, CPU sampling, report), with the
//! accounting asserted exactly: every packet offered is seen by sluice's XDP program, and
//! every packet seen is recorded or dropped under a reason.
//!
//! Needs root, `ip`, and the `sluice` binary next to `sluice-bench` in the target
//! directory (a workspace `cargo test` builds both before running any test).

use std::path::PathBuf;
use std::time::Duration;

use sluice_bench::harness::{
    measurement::{DecoderChoice, FormatChoice, Pipeline, Receiver},
    plan::{AcmeEvents, Plan, Rate},
    report, runner,
};
use sluice_testkit::privilege;

const NAME: &str = "bench_harness::quick_sluice_row_balances_exactly";

/// The `sluice` binary built alongside this package's own binary.
fn sluice_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_BIN_EXE_sluice-bench")).with_file_name("sluice")
}

#[test]
fn quick_sluice_row_balances_exactly() {
    if !privilege::require_root(NAME) || !privilege::require_tool(NAME, "ip") {
        return;
    }
    let sluice = sluice_binary();
    if !privilege::require(
        NAME,
        sluice.is_file(),
        &format!(
            "needs the sluice binary at {} (`cargo build -p sluice`, or set SLUICE_BIN)",
            sluice.display()
        ),
    ) {
        return;
    }
    let work = tempfile::tempdir().expect("work dir");
    let records = tempfile::tempdir().expect("records dir");
    let receiver = Receiver::Sluice(Pipeline {
        decoder: DecoderChoice::Raw,
        format: FormatChoice::NdjsonZstd,
    });
    let plan = Plan {
        rows: vec![receiver.clone()],
        rates: vec![Rate::Pps(20_000)],
        step: Duration::from_secs(2),
        overload: Duration::ZERO,
        generator_cpu: 0,
        workers: 2,
        queue_depth: 256,
        busy_poll_usecs: 0,
        worker_scheduling: None,
        payload_len: 18,
        acme_events: AcmeEvents::Repeated,
        sluice,
        records_root: records.path().to_owned(),
        settle: Duration::from_millis(1500),
        quick: true,
    };
    let outcome = runner::run(&plan, work.path());
    assert_eq!(outcome.rows.len(), 1);
    let row = &outcome.rows[0];
    assert_eq!(row.receiver, receiver);
    assert_eq!(row.steps.len(), 1);
    let m = &row.steps[0];
    assert_eq!(m.error, None, "the step failed");
    // Not an exact count: a busy machine (a build on the generator's core) slows the
    // generator down, and this test is about the accounting, not the rate.
    assert!(
        m.offered >= 1_000,
        "the generator offered only {} packets",
        m.offered
    );
    let accounting = m.accounting.as_ref().expect("sluice's account");
    assert_eq!(
        m.seen_by_xdp,
        Some(m.offered),
        "offered {} != seen by XDP {:?}; {}",
        m.offered,
        m.seen_by_xdp,
        m.loss_summary()
    );
    assert_eq!(
        accounting.seen,
        accounting.recorded + accounting.dropped_total,
        "seen != recorded + dropped: {accounting:?}"
    );
    assert_eq!(accounting.in_flight, 0, "{accounting:?}");
    assert_eq!(m.handled, accounting.recorded);
    assert_eq!(
        m.dropped_total(),
        accounting.dropped_total,
        "drop reasons {:?}",
        m.dropped
    );
    assert_eq!(
        accounting.records_written, accounting.recorded,
        "raw: one record per packet"
    );
    assert!(
        accounting.exit.starts_with("exit status: 0"),
        "{}",
        accounting.exit
    );
    assert_eq!(
        m.cpu.busy_percent.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    assert!(m.peak_rss_kib.is_some_and(|kib| kib > 0));
    assert!(report::accounting_violations(&outcome.rows, &outcome.memory).is_empty());
    // Nothing of the run is left behind in the records directory.
    assert_eq!(
        std::fs::read_dir(records.path())
            .expect("read records dir")
            .count(),
        0
    );
}
