//! The Prometheus files of the deploy kit are valid and the alerts do what they say:
//! `promtool check config` on deploy/prometheus/prometheus.yml (which loads the rules),
//! `promtool check rules` on sluice-alerts.yml, and `promtool test rules` on
//! sluice-alerts.test.yml, whose input series make each alert fire on one instance and
//! stay silent on others. A mutation of each alert's threshold or duration must make those
//! unit tests fail, so they cannot pass vacuously; and every alert expression names only
//! metrics docs/metrics.md lists (plus Prometheus's own `up`).
//!
//! Needs `promtool` (Debian package `prometheus`): in CI a missing tool fails the test.

mod deploy_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use deploy_support::{exported_metric, metric_names, metrics_table, read_repo_file, repo_root};
use sluice_testkit::privilege::require_tool;

const RULES: &str = "deploy/prometheus/sluice-alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/sluice-alerts.test.yml";

/// The alerts, in file order.
const ALERTS: [&str; 13] = [
    "SluiceDown",
    "SluiceNotReady",
    "SluicePacketLoss",
    "SluiceFillRingStarved",
    "SluiceSpoolGrowing",
    "SluiceUploadsFailing",
    "SluiceSteeredPacketsPassed",
    "SluiceClassifierMismatch",
    "SluiceXdpGenericFallback",
    "SluiceXskCopyFallback",
    "SluiceNetflowTemplatesRefused",
    "SluiceNetflowHoldFull",
    "SluiceValuesWrittenAsNull",
];

/// Runs `promtool ARGS` in `dir`: (success, stdout, stderr).
fn promtool(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The values of `key: value` lines (trimmed, a leading `- ` allowed), in file order.
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}:");
    text.lines()
        .map(|line| line.trim().trim_start_matches("- "))
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().to_owned())
        .collect()
}

/// The items of the block list under the first `key:` line.
fn yaml_list(text: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let header = format!("{key}:");
    let Some(start) = lines
        .iter()
        .position(|l| l.trim().trim_start_matches("- ") == header)
    else {
        return Vec::new();
    };
    lines[start + 1..]
        .iter()
        .map(|l| l.trim())
        .take_while(|l| l.starts_with("- "))
        .map(|l| l.trim_start_matches("- ").to_owned())
        .collect()
}

/// Every `expr:` of a rules file: single-line values, or the indented block after `expr: |`.
fn rule_exprs(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value != "|" && value != ">-" && value != "|-" {
            exprs.push(value.to_owned());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .map(|l| l.trim())
            .collect();
        exprs.push(block.join(" ").trim().to_owned());
    }
    exprs
}

#[test]
fn scrape_config_and_rules_are_valid() {
    if !require_tool(
        "deploy_prometheus::scrape_config_and_rules_are_valid",
        "promtool",
    ) {
        return;
    }
    let dir = repo_root().join("deploy/prometheus");
    let (ok, stdout, stderr) = promtool(&dir, &["check", "config", "prometheus.yml"]);
    assert!(ok, "promtool check config: {stdout}{stderr}");
    assert!(stdout.contains("SUCCESS: 1 rule files found"), "{stdout}");
    assert!(stdout.contains("SUCCESS: 13 rules found"), "{stdout}");
    let (ok, stdout, stderr) = promtool(&dir, &["check", "rules", "sluice-alerts.yml"]);
    assert!(ok, "promtool check rules: {stdout}{stderr}");
    assert!(stdout.contains("SUCCESS: 13 rules found"), "{stdout}");

    // The scrape target is the daemon's default listener (docs/metrics.md).
    let config = read_repo_file("deploy/prometheus/prometheus.yml");
    assert_eq!(yaml_values(&config, "job_name"), ["sluice"]);
    assert_eq!(yaml_values(&config, "metrics_path"), ["/metrics"]);
    assert_eq!(yaml_list(&config, "targets"), ["127.0.0.1:9464"]);
    assert_eq!(yaml_list(&config, "rule_files"), ["sluice-alerts.yml"]);
    assert!(
        read_repo_file("docs/metrics.md").contains("(default `127.0.0.1:9464`)"),
        "docs/metrics.md no longer names 127.0.0.1:9464 as the default"
    );
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    if !require_tool(
        "deploy_prometheus::alert_rules_pass_their_unit_tests",
        "promtool",
    ) {
        return;
    }
    // Every alert has a test, and the tests name no other alert.
    let rules = read_repo_file(RULES);
    let tests = read_repo_file(RULE_TESTS);
    assert_eq!(yaml_values(&rules, "alert"), ALERTS);
    let tested: BTreeSet<String> = yaml_values(&tests, "alertname").into_iter().collect();
    let alerts: BTreeSet<String> = ALERTS.iter().map(|a| (*a).to_owned()).collect();
    assert_eq!(tested, alerts);

    let dir = repo_root().join("deploy/prometheus");
    let (ok, stdout, stderr) = promtool(&dir, &["test", "rules", "sluice-alerts.test.yml"]);
    assert!(ok, "promtool test rules: {stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        "Unit Testing:  sluice-alerts.test.yml\n  SUCCESS"
    );
}

/// Each mutation weakens or sharpens one alert; its unit tests must notice.
#[test]
fn unit_tests_catch_a_changed_threshold_or_duration() {
    if !require_tool(
        "deploy_prometheus::unit_tests_catch_a_changed_threshold_or_duration",
        "promtool",
    ) {
        return;
    }
    let rules = read_repo_file(RULES);
    let tests = read_repo_file(RULE_TESTS);
    let mutations = [
        (
            "SluiceDown",
            "expr: up{job=\"sluice\"} == 0",
            "expr: up{job=\"sluice\"} < 0",
        ),
        (
            "SluiceNotReady",
            "expr: sluice_ready == 0",
            "expr: sluice_ready < 1.5",
        ),
        ("SluicePacketLoss", "> 0.001", "> 0.0001"),
        (
            "SluiceFillRingStarved",
            "[5m])) > 0\n        for: 10m",
            "[5m])) > 0\n        for: 5m",
        ),
        ("SluiceSpoolGrowing", "for: 30m", "for: 10m"),
        (
            "SluiceUploadsFailing",
            "outcome=~\".*error\"",
            "outcome=~\".+\"",
        ),
        (
            "SluiceSteeredPacketsPassed",
            "verdict=\"pass_no_socket\"",
            "verdict=~\"pass_.*\"",
        ),
        (
            "SluiceClassifierMismatch",
            "reason=\"classifier_mismatch\"",
            "reason=~\".+\"",
        ),
        (
            "SluiceXdpGenericFallback",
            "mode=\"generic\", requested=\"auto\"",
            "mode=\"generic\"",
        ),
        (
            "SluiceXskCopyFallback",
            "mode=\"copy\", requested=\"auto\"",
            "mode=\"copy\"",
        ),
        (
            "SluiceNetflowTemplatesRefused",
            "refused_templates_total[10m])) > 0",
            "refused_templates_total[10m])) > 5",
        ),
        (
            "SluiceNetflowHoldFull",
            "hold_refused_packets_total[5m])) > 1",
            "hold_refused_packets_total[5m])) > 100",
        ),
        (
            "SluiceValuesWrittenAsNull",
            "sluice_null_overflow_values_total[1h])) > 0",
            "sluice_null_overflow_values_total[1h])) > 5",
        ),
    ];
    let dir = sluice_testkit::scratch::tempdir("alerts").expect("tempdir");
    std::fs::write(dir.path().join("sluice-alerts.test.yml"), &tests).expect("write tests");
    for (alert, from, to) in mutations {
        assert_eq!(
            rules.matches(from).count(),
            1,
            "{alert}: {from:?} is not unique"
        );
        std::fs::write(
            dir.path().join("sluice-alerts.yml"),
            rules.replace(from, to),
        )
        .expect("write mutated rules");
        let (ok, stdout, stderr) =
            promtool(dir.path(), &["test", "rules", "sluice-alerts.test.yml"]);
        assert!(
            !ok,
            "{alert}: {from:?} -> {to:?} passed its unit tests: {stdout}"
        );
        let failed: BTreeSet<&str> = stderr
            .lines()
            .chain(stdout.lines())
            .filter_map(|l| l.trim().strip_prefix("alertname: "))
            .filter_map(|l| l.split(',').next())
            .collect();
        assert_eq!(failed, BTreeSet::from([alert]), "{alert}: {stdout}{stderr}");
    }
}

#[test]
fn alert_expressions_name_only_exported_metrics() {
    let table = metrics_table(&read_repo_file("docs/metrics.md"));
    let exprs = rule_exprs(&read_repo_file(RULES));
    assert_eq!(exprs.len(), ALERTS.len(), "{exprs:#?}");
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr).unwrap_or_else(|e| panic!("{e}: {expr}"));
        for name in names {
            // `up` is Prometheus's own: whether the scrape itself worked.
            if name != "up" {
                let metric = exported_metric(&name, &table)
                    .unwrap_or_else(|| panic!("{name} is not in docs/metrics.md: {expr}"));
                assert_eq!(metric, name);
            }
            used.insert(name);
        }
    }
    assert_eq!(
        used,
        [
            "sluice_discarded_packets_total",
            "sluice_netflow_hold_refused_packets_total",
            "sluice_netflow_refused_templates_total",
            "sluice_null_overflow_values_total",
            "sluice_ready",
            "sluice_seen_packets_total",
            "sluice_spool_bytes",
            "sluice_uploads_total",
            "sluice_xdp_attach_mode",
            "sluice_xdp_verdict_packets_total",
            "sluice_xsk_bind_mode",
            "sluice_xsk_fill_ring_empty_total",
            "up",
        ]
        .map(String::from)
        .into_iter()
        .collect()
    );
}
