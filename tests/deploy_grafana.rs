//! The Grafana dashboard `deploy/grafana/sluice.json` shows exactly the metrics Sluice
//! exports: every PromQL expression in it (panels and template variables) names only
//! metrics of docs/metrics.md's table, every metric of the table is on some panel, and
//! every expression parses (`promtool check rules` on them as recording rules).
//!
//! A renamed metric would otherwise leave an empty panel that nobody notices until the
//! day it is needed. The table stands for the live `/metrics` list until the tests scrape
//! the daemon. The layout checks (unique ids, one data source variable, panels inside the
//! 24-column grid without overlap) are what Grafana needs to import it unchanged.

mod deploy_support;

use std::collections::BTreeSet;
use std::process::Command;

use deploy_support::{exported_metric, metric_names, metrics_table, read_repo_file};
use serde_json::Value;
use sluice_testkit::privilege::require_tool;

const DASHBOARD: &str = "deploy/grafana/sluice.json";

fn dashboard() -> Value {
    serde_json::from_str(&read_repo_file(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every panel, those nested in collapsed rows included, in file order.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels array") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// (panel title, expression) of every panel target.
fn panel_exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("?").to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            out.push((title.clone(), expr.to_owned()));
        }
    }
    out
}

/// The selector of each query variable (`label_values(SELECTOR, label)` → SELECTOR).
fn variable_selectors(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating list")
    {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .expect("query variable without a query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(','))
            .map(|(selector, _label)| selector.trim())
            .unwrap_or_else(|| panic!("unsupported variable query {query:?}"));
        out.push(inner.to_owned());
    }
    out
}

#[test]
fn every_expression_names_only_exported_metrics_and_shows_them_all() {
    let table = metrics_table(&read_repo_file("docs/metrics.md"));
    let dashboard = dashboard();
    let mut expressions = panel_exprs(&dashboard);
    expressions.extend(
        variable_selectors(&dashboard)
            .into_iter()
            .map(|s| ("$instance variable".to_owned(), s)),
    );
    assert_eq!(expressions.len(), 53, "expressions: {expressions:#?}");
    let mut shown = BTreeSet::new();
    for (title, expr) in &expressions {
        let names = metric_names(expr).unwrap_or_else(|e| panic!("{title:?}: {e}: {expr}"));
        assert!(!names.is_empty(), "{title:?} selects no metric: {expr}");
        for name in &names {
            let metric = exported_metric(name, &table).unwrap_or_else(|| {
                panic!("{title:?} uses {name}, which docs/metrics.md does not list: {expr}")
            });
            shown.insert(metric.to_owned());
        }
    }
    let exported: BTreeSet<String> = table.keys().cloned().collect();
    let missing: Vec<&String> = exported.difference(&shown).collect();
    assert_eq!(missing, Vec::<&String>::new(), "metrics on no panel");
    assert_eq!(shown, exported);
}

#[test]
fn layout_imports_cleanly() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "sluice");
    assert_eq!(dashboard["title"], "Sluice");
    let panels = panels(&dashboard);
    let ids: Vec<u64> = panels
        .iter()
        .map(|p| p["id"].as_u64().expect("panel id"))
        .collect();
    assert_eq!(ids, (1..=33).collect::<Vec<u64>>(), "panel ids");
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().expect("row title"))
        .collect();
    assert_eq!(
        rows,
        [
            "Overview",
            "Receive path",
            "Loss",
            "Records and files",
            "Spool and uploads",
            "Metrics endpoint",
            "NetFlow decoder state"
        ]
    );

    // One data source variable, used by every panel and target.
    let variables: Vec<(&str, &str)> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().expect("name"),
                v["type"].as_str().expect("type"),
            )
        })
        .collect();
    assert_eq!(
        variables,
        [("datasource", "datasource"), ("instance", "query")]
    );
    let source = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let mut rectangles: Vec<(u64, u64, u64, u64, String)> = Vec::new();
    for panel in &panels {
        let title = panel["title"].as_str().expect("title").to_owned();
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
            grid[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{title:?}: gridPos.{k}"))
        });
        assert!(x + w <= 24 && w > 0 && h > 0, "{title:?}: {grid}");
        for (ox, oy, ow, oh, other) in &rectangles {
            let apart = x + w <= *ox || *ox + *ow <= x || y + h <= *oy || *oy + *oh <= y;
            assert!(apart, "{title:?} overlaps {other:?}");
        }
        rectangles.push((x, y, w, h, title.clone()));
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"], source, "{title:?}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title:?} has no query");
        let ref_ids: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().expect("refId"))
            .collect();
        assert_eq!(ref_ids.len(), targets.len(), "{title:?}: refIds repeat");
        for target in targets {
            assert_eq!(target["datasource"], source, "{title:?}");
        }
    }
}

#[test]
fn every_expression_parses() {
    const NAME: &str = "deploy_grafana::every_expression_parses";
    if !require_tool(NAME, "promtool") {
        return;
    }
    let dashboard = dashboard();
    let expressions = panel_exprs(&dashboard);
    // As recording rules, with Grafana's variables replaced by what they expand to.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in expressions.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*");
        let quoted = serde_json::to_string(&expr).expect("quote");
        rules.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = sluice_testkit::scratch::tempdir("grafana").expect("tempdir");
    let path = dir.path().join("dashboard-rules.yml");
    std::fs::write(&path, rules).expect("write rules");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("run promtool");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "promtool: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("SUCCESS: {} rules found", expressions.len())),
        "{stdout}"
    );
}

#[test]
fn metric_names_skips_labels_ranges_grouping_and_functions() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{x=~"$v", y="}"}[$__rate_interval]))) / on (instance) group_left ignoring(z) b offset 5m > bool 0.1 and c"#,
    );
    assert_eq!(
        names,
        Ok(["a_bucket", "b", "c"]
            .map(String::from)
            .into_iter()
            .collect())
    );
    assert_eq!(
        metric_names("nosuch(x)"),
        Err("unknown function nosuch".to_owned())
    );
    assert_eq!(
        metric_names(r#"{__name__="x"}"#),
        Err(r#"selects by __name__: {__name__="x"}"#.to_owned())
    );
    assert_eq!(
        metric_names("rate(x[5m)"),
        Err("unclosed '[' at 6".to_owned())
    );
}

#[test]
fn metrics_table_reads_name_and_type() {
    let table = metrics_table(
        "| name | type | labels | meaning |\n|---|---|---|---|\n\
         | `sluice_a_total` | counter | `q` | A. |\n| `sluice_h_seconds` | histogram | | H. |\n\
         | `other` | gauge | | no |\n",
    );
    assert_eq!(
        table,
        [
            ("sluice_a_total".to_owned(), "counter".to_owned()),
            ("sluice_h_seconds".to_owned(), "histogram".to_owned()),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(
        exported_metric("sluice_h_seconds_bucket", &table),
        Some("sluice_h_seconds")
    );
    assert_eq!(exported_metric("sluice_a_total_count", &table), None);
    assert_eq!(
        exported_metric("sluice_a_total", &table),
        Some("sluice_a_total")
    );
}
