//! `sluice replay` and `sluice check` from the outside: the shared scenario pcap must
//! give exactly the expected records and counters, and tshark's independent decode of the
//! same pcap must agree with every record, packet by packet.
//!
//! Replay needs no privileges, so these tests run everywhere (tshark's test follows the
//! CI rule when tshark is missing). The XDP path is checked against the same scenario in
//! `xdp_netns.rs`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Scenario, assert_lossless, assert_same_records, read_checked_output, sluice_binary};
use sluice_common::Verdict;
use sluice_testkit::daemon::{self, ConfigSpec, RunFiles};
use sluice_testkit::records;
use sluice_testkit::stats::Stats;
use sluice_testkit::summary::PacketSummary;

/// Replays the scenario with `config` (its sink path is set to `DIR/<name>-records`),
/// asserting a zero exit. Returns the stats and the output directory.
fn replay(
    dir: &Path,
    name: &str,
    scenario: &Scenario,
    mut config: ConfigSpec,
) -> (Stats, std::path::PathBuf) {
    let out = dir.join(format!("{name}-records"));
    config.sink_path = out.clone();
    let files = RunFiles::in_dir(dir, name);
    config.write(&files.config).expect("write config");
    let (status, stats) = daemon::replay(
        &sluice_binary(),
        &files,
        &scenario.pcap,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("sluice replay: {e}"));
    assert!(
        status.success(),
        "sluice replay exited with {status}; log:\n{}",
        daemon::log_tail(&files.log, 40)
    );
    (stats, out)
}

fn nonzero(counts: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k.clone(), *n))
        .collect()
}

#[test]
fn replay_records_exactly_the_steered_frames_and_counts_the_rest() {
    let dir = sluice_testkit::scratch::tempdir("test").expect("tempdir");
    let scenario = Scenario::write(dir.path());
    let (stats, out) = replay(
        dir.path(),
        "replay",
        &scenario,
        ConfigSpec::xdp("replay0", Path::new("")),
    );

    let output = read_checked_output(&out);
    assert_same_records(&output.records, &scenario.expected_records(), "replay");
    assert_lossless(&stats, scenario.steered_count(), &output);
    assert_eq!(stats.source, "replay");
    assert_eq!(nonzero(&stats.passed), scenario.expected_passed());
    assert_eq!(stats.passed_total(), scenario.must_pass_count());
    assert!(stats.is_balanced());
}

#[test]
fn replay_without_plain_udp_passes_plain_frames_as_not_gre() {
    let dir = sluice_testkit::scratch::tempdir("test").expect("tempdir");
    let scenario = Scenario::write(dir.path());
    let mut config = ConfigSpec::xdp("replay0", Path::new(""));
    config.plain_udp = false;
    let (stats, out) = replay(dir.path(), "noplain", &scenario, config);

    let gre_only: Vec<_> = scenario
        .steered
        .iter()
        .filter(|(_, spec)| spec.tunnel.is_some())
        .map(|(_, spec)| records::expected_record(spec))
        .collect();
    let plain = scenario.steered.len() - gre_only.len();
    assert_eq!((gre_only.len(), plain), (96, 6));
    let output = read_checked_output(&out);
    assert_same_records(
        &output.records,
        &records::normalize(gre_only),
        "no plain UDP",
    );
    assert_lossless(&stats, 96, &output);

    // Plain UDP while plain steering is off is "not GRE or UDP" whatever its port, so the
    // plain frame to the unsteered port moves there from "port not steered" too.
    let mut expected = scenario.expected_passed();
    let not_gre = Verdict::PassNotGreOrUdp.name().to_owned();
    let port = Verdict::PassPortNotSteered.name().to_owned();
    *expected.entry(not_gre).or_insert(0) += plain as u64 + 1;
    *expected.entry(port.clone()).or_insert(0) -= 1;
    expected.retain(|_, n| *n > 0);
    assert_eq!(nonzero(&stats.passed), expected);
}

#[test]
fn replay_with_no_ports_steers_every_udp_port() {
    let dir = sluice_testkit::scratch::tempdir("test").expect("tempdir");
    let scenario = Scenario::write(dir.path());
    let mut config = ConfigSpec::xdp("replay0", Path::new(""));
    config.ports.clear();
    let (stats, out) = replay(dir.path(), "allports", &scenario, config);

    let output = read_checked_output(&out);
    // The matrix plus the two must-pass frames that differ only by their port.
    let unsteered = scenario.params.unsteered_port;
    let extra: Vec<_> = output
        .records
        .iter()
        .filter(|r| r.dst_port == unsteered)
        .collect();
    assert_eq!(extra.len(), 2, "{extra:?}");
    assert_eq!(extra.iter().filter(|r| r.tunnel_src.is_some()).count(), 1);
    let rest: Vec<_> = output
        .records
        .iter()
        .filter(|r| r.dst_port != unsteered)
        .cloned()
        .collect();
    assert_same_records(&rest, &scenario.expected_records(), "all ports");
    assert_lossless(&stats, scenario.steered_count() + 2, &output);
    let mut expected = scenario.expected_passed();
    expected.remove(Verdict::PassPortNotSteered.name());
    assert_eq!(nonzero(&stats.passed), expected);
}

#[test]
fn tshark_decode_agrees_with_sluice_records_packet_by_packet() {
    let name = "replay::tshark_decode_agrees_with_sluice_records_packet_by_packet";
    if !sluice_testkit::privilege::require_tool(name, "tshark") {
        return;
    }
    let dir = sluice_testkit::scratch::tempdir("test").expect("tempdir");
    let scenario = Scenario::write(dir.path());
    let (_, out) = replay(
        dir.path(),
        "tshark",
        &scenario,
        ConfigSpec::xdp("replay0", Path::new("")),
    );
    let records = records::read_output(&out.join("raw"))
        .expect("read output")
        .records();

    // Every steered frame has its own source port: index the records by it.
    let mut by_port: BTreeMap<u16, PacketSummary> = BTreeMap::new();
    for record in &records {
        let summary = record.summary().expect("record summary");
        assert!(
            by_port.insert(record.src_port, summary).is_none(),
            "duplicate {record:?}"
        );
    }
    let packets = sluice_testkit::tshark::decode(&scenario.pcap, &scenario.params.dst_ports)
        .expect("tshark decode");
    assert_eq!(
        packets.len() as u64,
        scenario.steered_count() + scenario.must_pass_count()
    );
    for (i, packet) in packets.iter().take(scenario.steered.len()).enumerate() {
        let label = &scenario.steered[i].0;
        assert_eq!(packet.frame_number, i as u64 + 1, "{label}");
        assert!(
            packet.bad_checksums.is_empty(),
            "{label}: {:?}",
            packet.bad_checksums
        );
        let decoded = packet
            .summary()
            .unwrap_or_else(|| panic!("{label}: tshark found no inner UDP: {packet:?}"));
        let recorded = by_port.remove(&decoded.src_port);
        assert_eq!(recorded, Some(decoded), "frame {} ({label})", i + 1);
    }
    assert!(
        by_port.is_empty(),
        "records tshark did not see: {by_port:?}"
    );
}

#[test]
fn check_prints_the_effective_config_or_names_the_bad_field() {
    let dir = sluice_testkit::scratch::tempdir("test").expect("tempdir");
    let mut config = ConfigSpec::xdp("check0", &dir.path().join("out"));
    let good = dir.path().join("good.toml");
    config.write(&good).expect("write");
    let output = Command::new(sluice_binary())
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .expect("run sluice check");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("interface = \"check0\""), "{printed}");
    assert!(printed.contains("max_age_ms = 200"), "{printed}");

    config.max_bytes = 0;
    let bad = dir.path().join("bad.toml");
    config.write(&bad).expect("write");
    let output = Command::new(sluice_binary())
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .expect("run sluice check");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("error: batch.max_bytes: ")),
        "{stderr}"
    );
}
