//! The XDP path end to end, in a private pair of network namespaces: `sluice run` attached
//! to the veth end in namespace b records every steered frame tcpreplay sends from
//! namespace a, leaves every must-pass frame to the kernel under the right verdict, keeps
//! ping working while attached, says in /metrics which XDP and AF_XDP modes it got, and
//! writes the same records `sluice replay` makes of the same pcap.
//!
//! Needs root (namespaces, XDP, AF_XDP), `ip`, `ping` and `tcpreplay`: in CI a missing
//! prerequisite fails the test, elsewhere it is skipped with the reason printed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{
    Scenario, assert_lossless, assert_same_records, read_checked_output, scrape_metrics,
    sluice_binary,
};
use sluice_common::Verdict;
use sluice_testkit::daemon::{self, ConfigSpec, RunFiles, SourceSpec};
use sluice_testkit::netns::{ADDR_V4_B, NetnsPair};
use sluice_testkit::privilege::{require_root, require_tool};
use sluice_testkit::tcpreplay;

const NAME: &str = "xdp_netns::xdp_records_steered_frames_and_leaves_the_rest_to_the_kernel";

/// ICMP echo requests `ping -c 3` sends to b while sluice is attached.
const PINGS: u64 = 3;

/// The counters that are not zero.
fn nonzero(counters: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    counters
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k.clone(), *n))
        .collect()
}

fn prerequisites() -> bool {
    require_root(NAME)
        && ["ip", "ping", "tcpreplay"]
            .iter()
            .all(|t| require_tool(NAME, t))
}

#[test]
fn xdp_records_steered_frames_and_leaves_the_rest_to_the_kernel() {
    run_scenario("auto");
}

/// The same in generic (skb) mode, the fallback for drivers without native XDP.
#[test]
fn generic_mode_xdp_records_the_same() {
    run_scenario("generic");
}

fn run_scenario(xdp_mode: &str) {
    if !prerequisites() {
        return;
    }
    let dir = sluice_testkit::scratch::tempdir("test").expect("tempdir");
    let scenario = Scenario::write(dir.path());
    let pair = NetnsPair::create().expect("create namespace pair");
    let names = [pair.a.name().to_owned(), pair.b.name().to_owned()];

    let out = dir.path().join("xdp-records");
    let files = RunFiles::in_dir(dir.path(), "xdp");
    let mut config = ConfigSpec::xdp(&pair.if_b, &out);
    if let SourceSpec::Xdp { xdp_mode: mode, .. } = &mut config.source {
        *mode = xdp_mode.to_owned();
    }
    config.write(&files.config).expect("write config");
    let mut sluice =
        daemon::start_run(&sluice_binary(), &pair.b, &files).expect("start sluice run");
    sluice
        .wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));

    // The kernel keeps answering while XDP is attached (echo requests pass, replies leave).
    let ping = pair
        .a
        .command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "2", &ADDR_V4_B.to_string()])
        .output()
        .expect("run ping");
    let ping_out = String::from_utf8_lossy(&ping.stdout);
    assert!(ping.status.success(), "ping failed: {ping_out}");
    assert!(
        ping_out.contains("3 packets transmitted, 3 received"),
        "{ping_out}"
    );

    // The modes it got, beside what was requested: veth has native XDP and no zero-copy.
    let metrics = scrape_metrics(&pair);
    let attached = if xdp_mode == "generic" {
        "generic"
    } else {
        "native"
    };
    for line in [
        format!(
            "sluice_xdp_attach_mode{{interface=\"{}\",mode=\"{attached}\",requested=\"{xdp_mode}\"}} 1",
            pair.if_b
        ),
        format!(
            "sluice_xsk_bind_mode{{interface=\"{}\",mode=\"copy\",queue=\"0\",requested=\"auto\"}} 1",
            pair.if_b
        ),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in\n{metrics}"
        );
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_kernel_info{release=\"") && l.ends_with("\"} 1")),
        "{metrics}"
    );

    let total = scenario.steered_count() + scenario.must_pass_count();
    tcpreplay::send_all(
        &pair.a,
        &pair.if_a,
        &scenario.pcap,
        total,
        2000,
        Duration::from_secs(60),
    )
    .expect("tcpreplay");

    // tcpreplay returns once the last frame is queued; give the receive path a moment.
    std::thread::sleep(Duration::from_secs(1));
    let stats = sluice
        .stop_cleanly(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));

    let output = read_checked_output(&out);
    assert_same_records(&output.records, &scenario.expected_records(), "xdp");
    assert_lossless(&stats, scenario.steered_count(), &output);
    assert_eq!(stats.source, "xdp");

    // Every must-pass frame under its verdict, plus the pings; nothing else crossed the
    // link (static neighbours, no DAD or router solicitation in the namespaces).
    let mut expected = scenario.expected_passed();
    *expected
        .entry(Verdict::PassNotGreOrUdp.name().to_owned())
        .or_insert(0) += PINGS;
    let passed = nonzero(&stats.passed);
    assert_eq!(
        passed,
        expected,
        "passed counters; log:\n{}",
        daemon::log_tail(&files.log, 20)
    );
    assert_eq!(stats.passed_total(), scenario.must_pass_count() + PINGS);

    // The rare pass decisions also reach the daemon's log, from the program itself
    // (aya-log, forwarded; at most one line per reason and CPU every 10 s).
    let log = std::fs::read_to_string(&files.log).unwrap_or_default();
    for rare in [Verdict::PassGreUnsupported, Verdict::PassMalformed] {
        if expected.get(rare.name()).copied().unwrap_or(0) == 0 {
            continue;
        }
        let line = format!("({}; at most one line per CPU every 10 s)", rare.name());
        let lines = log
            .lines()
            .filter(|l| l.contains("sluice::xdp_program") && l.contains(&line))
            .count();
        assert!(
            (1..=2).contains(&lines),
            "{lines} program log lines for {}; log:\n{}",
            rare.name(),
            daemon::log_tail(&files.log, 40)
        );
    }

    // The same pcap through `sluice replay` gives the same records.
    let replay_out = dir.path().join("replay-records");
    let replay_files = RunFiles::in_dir(dir.path(), "replay");
    ConfigSpec::xdp(&pair.if_b, &replay_out)
        .write(&replay_files.config)
        .expect("write replay config");
    let (status, replay_stats) = daemon::replay(
        &sluice_binary(),
        &replay_files,
        &scenario.pcap,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "sluice replay: {status}");
    let replayed = read_checked_output(&replay_out);
    assert_same_records(&replayed.records, &output.records, "replay vs xdp");
    // Replay applies the XDP program's classifier: the same counts, less the pings.
    let mut xdp_without_pings = passed.clone();
    *xdp_without_pings
        .entry(Verdict::PassNotGreOrUdp.name().to_owned())
        .or_insert(0) -= PINGS;
    xdp_without_pings.retain(|_, n| *n > 0);
    let replay_passed = nonzero(&replay_stats.passed);
    assert_eq!(
        (replay_stats.seen, replay_stats.recorded, replay_passed),
        (stats.seen, stats.recorded, xdp_without_pings),
        "replay (seen, recorded, passed) vs XDP's"
    );
    drop(pair);
    for name in names {
        assert!(
            !Path::new("/run/netns").join(&name).exists(),
            "{name} left behind"
        );
    }
}
