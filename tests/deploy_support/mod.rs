//! What the deploy-kit tests (`tests/deploy_*.rs`) share: where the repository's files
//! are, the metric table of docs/metrics.md, the metric names a PromQL expression uses,
//! and the values of a systemd unit's keys.
//!
//! The dashboard and the alert rules must name only metrics Sluice exports. Until the
//! tests read a live `/metrics`, docs/metrics.md's table is that list; the PromQL reader
//! here is a small lexer (strings, label matchers, ranges and grouping lists are skipped;
//! a name followed by `(` must be a known function), enough for expressions we write
//! ourselves, and strict: anything it does not understand is an error, not a pass.
//! Included with `mod deploy_support;` by each test file (it is not a test target).

#![allow(dead_code, reason = "each deploy test uses a different part")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The repository root (the `sluice` package lives in `userspace/`).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{} has no parent", manifest.display()))
}

/// A file of the repository as text.
pub fn read_repo_file(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The metrics table of docs/metrics.md: name → type (`counter`, `gauge`, `histogram`,
/// `gauge (1)`), from every row whose first cell is a backquoted `sluice_` name.
pub fn metrics_table(markdown: &str) -> BTreeMap<String, String> {
    let mut table = BTreeMap::new();
    for line in markdown.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| `name` | type | labels | meaning |" splits into ["", name, type, ...].
        if cells.len() < 4 || !cells[0].is_empty() {
            continue;
        }
        let Some(name) = cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`')) else {
            continue;
        };
        if name.starts_with("sluice_") {
            table.insert(name.to_owned(), cells[2].to_owned());
        }
    }
    table
}

/// The exported metric a series name belongs to: itself, or for `_bucket`, `_sum` and
/// `_count` of a histogram in `table`, the histogram. None when it is not exported.
pub fn exported_metric<'a>(name: &'a str, table: &BTreeMap<String, String>) -> Option<&'a str> {
    if table.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        (table.get(base).map(String::as_str) == Some("histogram")).then_some(base)
    })
}

/// PromQL functions and aggregation operators (the names that may precede `(`).
const FUNCTIONS: [&str; 51] = [
    "abs",
    "absent",
    "absent_over_time",
    "avg",
    "avg_over_time",
    "bottomk",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count",
    "count_over_time",
    "count_values",
    "delta",
    "deriv",
    "exp",
    "floor",
    "group",
    "histogram_quantile",
    "holt_winters",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "predict_linear",
    "present_over_time",
    "quantile",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev",
    "stdvar",
    "sum",
    "sum_over_time",
    "topk",
];

/// Keywords followed by a parenthesised list of label names.
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Keywords that are neither metrics nor functions.
const KEYWORDS: [&str; 7] = ["and", "or", "unless", "bool", "offset", "inf", "nan"];

/// Index just past the bracket closing the one at `open` (`{`/`}`, `[`/`]` or `(`/`)`),
/// skipping quoted strings.
fn skip_bracketed(chars: &[char], open: usize) -> Result<usize, String> {
    let (opening, closing) = match chars[open] {
        '{' => ('{', '}'),
        '[' => ('[', ']'),
        '(' => ('(', ')'),
        c => return Err(format!("no bracket at {open}: {c:?}")),
    };
    let mut depth = 0usize;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i)?,
            c if c == opening => {
                depth += 1;
                i += 1;
            }
            c if c == closing => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => i += 1,
        }
    }
    Err(format!("unclosed {opening:?} at {open}"))
}

/// Index just past the string starting at `start`.
fn skip_string(chars: &[char], start: usize) -> Result<usize, String> {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("unterminated string at {start}"))
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metric names `expr` selects. Grafana variables (`$x`, `${x}`) are skipped;
/// `{__name__=...}` selectors and unknown functions are errors.
pub fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            let end = skip_bracketed(&chars, i)?;
            let matchers: String = chars[i..end].iter().collect();
            if matchers.contains("__name__") {
                return Err(format!("selects by __name__: {matchers}"));
            }
            i = end;
        } else if c == '[' {
            i = skip_bracketed(&chars, i)?;
        } else if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i)?;
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_bracketed(&chars, i)?;
            } else {
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers and durations (`0.99`, `5m`, `1e3`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let before_paren = chars.get(next) == Some(&'(');
            if GROUPING.contains(&word.as_str()) {
                if before_paren {
                    i = skip_bracketed(&chars, next)?;
                }
            } else if KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                // Nothing to collect.
            } else if FUNCTIONS.contains(&word.as_str()) {
                // A call, or an aggregation whose grouping comes first (`sum by (q) (...)`).
            } else if before_paren {
                return Err(format!("unknown function {word}"));
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    Ok(names)
}

/// The values of `key=` in a systemd unit, one per line in order (comments skipped,
/// no line continuations in our units).
pub fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.starts_with(';'))
        .filter_map(|line| line.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}
