//! The kernel × NIC matrix (issue 10, item 7) and the below-minimum kernel's refusal.
//!
//! Matrix case: install the package, start the service with a directory sink, check the
//! service's effective capabilities and the XDP/AF_XDP modes in /metrics, ping the guest
//! while attached, send the untagged GRE variants and must-pass frames over the tap, stop
//! the service, power off, and compare the records and stats left on the disk with what
//! the frames must give.
//!
//! Refusal case: on Linux 5.10, `systemctl enable --now sluice` fails and the service's
//! journal holds exactly one `error:` line naming the kernel and what is missing.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use sluice_testkit::stats::Stats;
use sluice_testkit::tcpreplay::{self, ReplayParams};

use super::boot::{self, Shared};
use super::checks::{SERVICE_CAPABILITIES, capability_names, metric_lines, metric_value};
use super::net::{GUEST_ADDR, TapNetns};
use super::probe::field;
use super::qemu::Nic;
use super::rootfs::Kernel;
use super::stage::{self, METRICS_PORT};
use super::traffic::Traffic;

/// Frames per second tcpreplay sends (the guest is emulated: keep it gentle).
const PPS: u32 = 200;

/// The matrix case on `kernel` with `nic`.
///
/// # Errors
/// The first check that fails, with the console tail or journal where it helps.
pub fn run_matrix(shared: &Shared, name: &str, kernel: &Kernel, nic: Nic) -> anyhow::Result<()> {
    let config = stage::config_text(|spec| spec.format = Some("ndjson_zstd".into()));
    let mut run = boot::boot(shared, name, kernel, nic, &config, TapNetns::create()?)?;
    let traffic = Traffic::write(run.dir())?;
    run.wait_booted()?;
    let started_at = Instant::now();
    if !run.wait_installed_and_started()? {
        bail!(
            "sluice did not start; journal:\n{}",
            run.journal().join("\n")
        );
    }
    println!(
        "vm-test: {name}: service active {:.1?} after boot",
        started_at.elapsed()
    );

    let capeff = run
        .vm
        .values("capeff")
        .first()
        .copied()
        .unwrap_or("")
        .to_owned();
    let caps = capability_names(&capeff).with_context(|| format!("CapEff {capeff:?}"))?;
    ensure!(
        caps == SERVICE_CAPABILITIES,
        "the service's effective capabilities are {caps:?} (CapEff {capeff}), expected {SERVICE_CAPABILITIES:?}"
    );
    let user = run
        .vm
        .values("user")
        .first()
        .copied()
        .unwrap_or("")
        .to_owned();
    ensure!(user == "sluice", "the service runs as {user:?}, not sluice");

    // Type=notify: `systemctl start` returned once attached and bound, so the metrics
    // endpoint is up and says which modes it got.
    let metrics = run
        .net
        .http_get(METRICS_PORT, "/metrics")
        .context("GET /metrics from the host failed")?;
    check_modes(&metrics, nic)?;

    let ping = crate::cmd::output(
        run.net
            .command("ping")
            .args(["-c", "3", "-i", "0.3", "-W", "3", GUEST_ADDR]),
    )?;
    let ping_out = String::from_utf8_lossy(&ping.stdout);
    ensure!(
        ping.status.success() && ping_out.contains("3 packets transmitted, 3 received"),
        "ping to the guest while attached:\n{ping_out}"
    );

    let sent = tcpreplay::send(
        run.net.netns(),
        super::net::TAP,
        &traffic.pcap,
        ReplayParams {
            pps: PPS,
            loops: 1,
            timeout: Duration::from_secs(60),
        },
    )
    .context("tcpreplay over the tap")?;
    ensure!(
        sent.successful == traffic.frames() && sent.failed == 0,
        "tcpreplay: {sent:?}, expected {} frames",
        traffic.frames()
    );
    // The emulated guest needs a moment to take the last frames off its ring.
    std::thread::sleep(Duration::from_secs(2));
    run.vm.send("stop")?;
    let stopped = run.vm.wait_for("stopped", Duration::from_secs(150))?;
    ensure!(
        field(&stopped, "rc") == Some("0") && field(&stopped, "result") == Some("success"),
        "systemctl stop sluice: {stopped}"
    );
    let state = run.power_off_and_collect(1)?;

    let stats = Stats::read(&state.join("stats.json")).context("the daemon's stats file")?;
    let output = sluice_testkit::records::read_output(&state.join("records/raw"))
        .context("reading the guest's records")?;
    let records = sluice_testkit::records::normalize(output.records());
    let expected = traffic.expected_records();
    for (i, (got, want)) in records.iter().zip(&expected).enumerate() {
        ensure!(
            got == want,
            "record {i} differs:\n got  {got:?}\n want {want:?}"
        );
    }
    let steered = traffic.steered.len() as u64;
    ensure!(
        records.len() == expected.len(),
        "{} records, expected {} (stats: {stats:?})",
        records.len(),
        expected.len()
    );
    ensure!(
        stats.seen == steered && stats.recorded == steered && stats.dropped_total == 0,
        "seen {} recorded {} dropped {}, expected {steered} {steered} 0: {stats:?}",
        stats.seen,
        stats.recorded,
        stats.dropped_total
    );
    ensure!(
        stats.seen == stats.recorded + stats.dropped_total && stats.balanced,
        "seen != recorded + dropped: {stats:?}"
    );
    ensure!(
        stats.files_written == output.files.len() as u64,
        "files_written {} but {} files on disk",
        stats.files_written,
        output.files.len()
    );
    // Every must-pass frame reached the kernel under its verdict.
    super::traffic::check_passed(&traffic.must_pass, &stats.passed, nic.pads_short_frames())?;
    Ok(())
}

/// The attach and bind modes in /metrics: native on virtio-net, generic on e1000; copy
/// mode on both (neither emulated NIC does zero-copy).
fn check_modes(metrics: &str, nic: Nic) -> anyhow::Result<()> {
    let attach = metric_value(
        metrics,
        "sluice_xdp_attach_mode",
        &[
            ("interface", "eth0"),
            ("mode", nic.expected_xdp_mode()),
            ("requested", "auto"),
        ],
    );
    ensure!(
        attach == Some(1.0),
        "expected sluice_xdp_attach_mode{{interface=\"eth0\",mode=\"{}\",requested=\"auto\"}} 1, got {:?}",
        nic.expected_xdp_mode(),
        metric_lines(metrics, "sluice_xdp_attach_mode")
    );
    let bind = metric_value(
        metrics,
        "sluice_xsk_bind_mode",
        &[
            ("interface", "eth0"),
            ("queue", "0"),
            ("mode", "copy"),
            ("requested", "auto"),
        ],
    );
    ensure!(
        bind == Some(1.0),
        "expected sluice_xsk_bind_mode{{interface=\"eth0\",queue=\"0\",mode=\"copy\",requested=\"auto\"}} 1, got {:?}",
        metric_lines(metrics, "sluice_xsk_bind_mode")
    );
    Ok(())
}

/// The below-minimum kernel: the service refuses to start with one clear line.
///
/// # Errors
/// When it starts, or its journal does not hold exactly one fitting `error:` line.
pub fn run_refusal(shared: &Shared, name: &str, kernel: &Kernel) -> anyhow::Result<()> {
    let config = stage::config_text(|_| {});
    let mut run = boot::boot(
        shared,
        name,
        kernel,
        Nic::VirtioNet,
        &config,
        TapNetns::create()?,
    )?;
    run.wait_booted()?;
    if run.wait_installed_and_started()? {
        bail!("sluice started on Linux {}", kernel.release);
    }
    let series = kernel
        .release
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    let journal: Vec<String> = run.journal().iter().map(|l| (*l).to_owned()).collect();
    check_refusal(&journal, &series)?;
    run.vm.power_off(Duration::from_secs(90))?;
    Ok(())
}

/// Exactly one `error:` line, naming `Linux <series>` and saying `not supported`.
pub fn check_refusal(journal: &[String], series: &str) -> anyhow::Result<()> {
    let errors: Vec<&String> = journal.iter().filter(|l| l.contains("error:")).collect();
    ensure!(
        errors.len() == 1,
        "expected one error: line in the journal, found {}:\n{}",
        errors.len(),
        journal.join("\n")
    );
    let line = errors[0];
    ensure!(
        line.contains(&format!("Linux {series}")) && line.contains("not supported"),
        "the error line does not name Linux {series} and say `not supported`: {line}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_one_error_line_naming_the_kernel() {
        let good = [
            "Starting sluice".to_owned(),
            "error: Linux 5.10.0-35-amd64 is not supported: BPF_PROG_TYPE_EXT missing".to_owned(),
        ];
        check_refusal(&good, "5.10").expect("good");
        let twice = [good[1].clone(), good[1].clone()];
        assert!(check_refusal(&twice, "5.10").is_err());
        let vague = ["error: cannot attach".to_owned()];
        assert!(check_refusal(&vague, "5.10").is_err());
    }

    #[test]
    fn modes_follow_the_nic() {
        let metrics = "sluice_xdp_attach_mode{interface=\"eth0\",mode=\"generic\",requested=\"auto\"} 1\n\
            sluice_xsk_bind_mode{interface=\"eth0\",queue=\"0\",mode=\"copy\",requested=\"auto\"} 1\n";
        check_modes(metrics, Nic::E1000).expect("generic on e1000");
        assert!(check_modes(metrics, Nic::VirtioNet).is_err());
    }
}
