//! DuckDB (the venv's `duckdb`, pinned by `cargo xtask setup`) as BigQuery's stand-in: it
//! reads a folder laid out as one stream's part of the bucket
//! (`dt=YYYY-MM-DD/hour=HH/<name>.<ext>`) as one hive-partitioned table, in each of the
//! three formats BigQuery's external tables read ([`ObjectFormat`]), and reports the
//! columns and types it sees, the column names the files themselves carry, and the
//! results of the tests' queries.
//!
//! It reads each format the way the `bigquery-ddl` table tells BigQuery to:
//! - Parquet: types from the files' schema (`read_parquet`), as BigQuery derives them.
//! - gzip NDJSON (`read_json`, `format = 'newline_delimited'`) and gzip CSV (`read_csv`,
//!   with header) carry no types: they are read with the DDL's column types, given
//!   explicitly (BigQuery applies the table's schema). A `BYTES` column is base64 text in
//!   both, which BigQuery decodes: it is read as text and decoded with `from_base64`, so a
//!   value that is not base64 fails the query, as it fails BigQuery's.
//!
//! [`duckdb_type`] maps the types `sluice bigquery-ddl` declares to DuckDB's, so a test can
//! compare the two schemas name by name. The partition columns get the types the DDL
//! declares for them (`WITH PARTITION COLUMNS`: `dt` DATE, `hour` INT64) as DuckDB's
//! `hive_types`, as BigQuery is told them: left to guess, DuckDB reads `hour=03` as text.
//! A folder value that is not a date or an integer fails the query.
//!
//! Queries run against two views: `t`, the table as BigQuery shows it (the files' columns,
//! then `dt` and `hour`), and `files`, the same with DuckDB's `filename` column (BigQuery's
//! `_FILE_NAME`), for checks of which object holds which rows.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

/// Why the query could not be run or read.
#[derive(Debug, thiserror::Error)]
pub enum DuckdbError {
    /// Python could not be started.
    #[error("cannot run {python}: {source}")]
    Spawn {
        /// The interpreter.
        python: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The script failed (DuckDB refused the files, a query failed, ...).
    #[error("the DuckDB script failed: {stderr}")]
    Script {
        /// What it printed on stderr.
        stderr: String,
    },
    /// Its output was not the expected JSON.
    #[error("unexpected output of the DuckDB script: {reason}")]
    Output {
        /// What was wrong.
        reason: String,
    },
    /// A DDL column has a type [`duckdb_type`] does not know.
    #[error("no DuckDB type for column {column} of BigQuery type {bigquery}")]
    UnknownType {
        /// The column.
        column: String,
        /// Its BigQuery type.
        bigquery: String,
    },
}

/// The format of a stream's objects: the three that BigQuery's external tables read and
/// the daemon writes for them (`sink.format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectFormat {
    /// `parquet`: `*.parquet`.
    Parquet,
    /// `ndjson_gzip`: `*.ndjson.gz`.
    NdjsonGzip,
    /// `csv_gzip`: `*.csv.gz`, a header line first.
    CsvGzip,
}

impl ObjectFormat {
    /// The format `sink.format` names `name`; `None` for one BigQuery does not read.
    pub fn from_sink_format(name: &str) -> Option<ObjectFormat> {
        Some(match name {
            "parquet" => ObjectFormat::Parquet,
            "ndjson_gzip" => ObjectFormat::NdjsonGzip,
            "csv_gzip" => ObjectFormat::CsvGzip,
            _ => return None,
        })
    }

    /// Its `sink.format` name.
    pub fn sink_format(self) -> &'static str {
        match self {
            ObjectFormat::Parquet => "parquet",
            ObjectFormat::NdjsonGzip => "ndjson_gzip",
            ObjectFormat::CsvGzip => "csv_gzip",
        }
    }

    /// The end of its object names.
    pub fn extension(self) -> &'static str {
        match self {
            ObjectFormat::Parquet => ".parquet",
            ObjectFormat::NdjsonGzip => ".ndjson.gz",
            ObjectFormat::CsvGzip => ".csv.gz",
        }
    }
}

/// A folder laid out like one stream's part of the bucket, and how to read it.
#[derive(Clone, Copy, Debug)]
pub struct HiveSource<'a> {
    /// The folder holding the `dt=` folders (the table's `hive_partition_uri_prefix`).
    pub root: &'a Path,
    /// The format of every file under it.
    pub format: ObjectFormat,
    /// The stream's columns and BigQuery types as `bigquery-ddl` declares them (`dt` and
    /// `hour` may be among them: they are skipped). The text formats are read with
    /// exactly these columns; Parquet, whose files carry their types, ignores them.
    pub ddl_columns: &'a [(String, String)],
}

/// What [`query`] returns.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct QueryOutput {
    /// `DESCRIBE t`: column name and DuckDB type, in table order (`dt` and `hour` last).
    pub columns: Vec<(String, String)>,
    /// The column names as the files carry them (Parquet schema, JSON keys, CSV header),
    /// read without types or partitions.
    pub file_columns: Vec<String>,
    /// Each query's rows, each row its values as JSON (dates and times as text).
    pub results: Vec<Vec<Vec<serde_json::Value>>>,
}

/// What DuckDB sees in a hive-partitioned folder of the `raw` stream (its columns
/// `tunnel_src`, `gre_key`, `dst_port`, `payload_len`), with the aggregates the tests
/// compare with what was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HiveTable {
    /// Column name and DuckDB type, in table order (the partition columns `dt` and `hour`
    /// last, as DuckDB appends them).
    pub columns: Vec<(String, String)>,
    /// `count(*)` per (`tunnel_src`, `gre_key`, `hour`).
    pub groups: BTreeMap<String, u64>,
    /// `count(*)` of the whole table.
    pub rows: u64,
    /// `sum(payload_len)`.
    pub payload_bytes: u64,
    /// The distinct `dst_port`s (inner destination ports), ascending.
    pub dst_ports: Vec<u16>,
}

/// The key of [`HiveTable::groups`]: `tunnel_src|gre_key|hour`, `null` for a null.
pub fn group_key(tunnel_src: Option<&str>, gre_key: Option<u32>, hour: u32) -> String {
    format!(
        "{}|{}|{hour}",
        tunnel_src.unwrap_or("null"),
        gre_key.map_or_else(|| "null".to_owned(), |k| k.to_string())
    )
}

/// The DuckDB type of a column that `sluice bigquery-ddl` declares as `bigquery`: what
/// DuckDB reads from the Parquet files (`TIMESTAMP` is TIMESTAMP(MICROS, UTC), which
/// DuckDB reads with a time zone; `dt` is a DATE and `hour` an INT64 partition column), and
/// the type the text formats are read with. `None` for a type the DDL never writes.
pub fn duckdb_type(bigquery: &str) -> Option<&'static str> {
    Some(match bigquery {
        "INT64" => "BIGINT",
        "FLOAT64" => "DOUBLE",
        "BOOL" => "BOOLEAN",
        "STRING" => "VARCHAR",
        "BYTES" => "BLOB",
        "TIMESTAMP" => "TIMESTAMP WITH TIME ZONE",
        "DATE" => "DATE",
        _ => return None,
    })
}

/// Reads the folder (argv[1]: a JSON object with `root`, `format`, `columns` as
/// `[name, duckdb type]` and `queries`) and prints a [`QueryOutput`] as JSON.
const SCRIPT: &str = r#"
import json, sys
import duckdb
spec = json.loads(sys.argv[1])
def lit(text):
    return "'" + text.replace("'", "''") + "'"
def ident(name):
    return '"' + name.replace('"', '""') + '"'
fmt = spec["format"]
ext = {"parquet": ".parquet", "ndjson_gzip": ".ndjson.gz", "csv_gzip": ".csv.gz"}[fmt]
glob = lit(spec["root"] + "/**/*" + ext)
hive = "hive_partitioning = true, hive_types = {'dt': DATE, 'hour': BIGINT}"
decode = []
if fmt == "parquet":
    typed = "read_parquet(" + glob + ", " + hive + ", filename = true)"
    untyped = "read_parquet(" + glob + ", hive_partitioning = false)"
else:
    # BigQuery reads BYTES in JSON and CSV as base64 text: read it as text, decode below.
    columns = []
    for name, ty in spec["columns"]:
        if ty == "BLOB":
            decode.append(name)
            ty = "VARCHAR"
        columns.append(lit(name) + ": " + lit(ty))
    columns = "columns = {" + ", ".join(columns) + "}"
    if fmt == "ndjson_gzip":
        options = "format = 'newline_delimited', compression = 'gzip'"
        reader = "read_json"
    else:
        options = "header = true, compression = 'gzip'"
        reader = "read_csv"
    typed = reader + "(" + glob + ", " + options + ", " + columns + ", " + hive + ", filename = true)"
    untyped = reader + "(" + glob + ", " + options + ", hive_partitioning = false"
    untyped += ", all_varchar = true)" if fmt == "csv_gzip" else ")"
replace = ", ".join("from_base64(" + ident(n) + ") AS " + ident(n) for n in decode)
con = duckdb.connect()
con.execute(
    "CREATE VIEW files AS SELECT *" + (" REPLACE (" + replace + ")" if replace else "")
    + " FROM " + typed
)
con.execute("CREATE VIEW t AS SELECT * EXCLUDE (filename) FROM files")
out = {
    "columns": [[r[0], r[1]] for r in con.execute("DESCRIBE t").fetchall()],
    "file_columns": [r[0] for r in con.execute("DESCRIBE SELECT * FROM " + untyped).fetchall()],
    "results": [[list(row) for row in con.execute(q).fetchall()] for q in spec["queries"]],
}
json.dump(out, sys.stdout, default=str)
"#;

/// The file columns of `ddl_columns` (without `dt` and `hour`) with their DuckDB types.
///
/// # Errors
/// [`DuckdbError::UnknownType`].
fn typed_columns(ddl_columns: &[(String, String)]) -> Result<Vec<(String, String)>, DuckdbError> {
    ddl_columns
        .iter()
        .filter(|(name, _)| name != "dt" && name != "hour")
        .map(|(name, bigquery)| {
            duckdb_type(bigquery)
                .map(|duck| (name.clone(), duck.to_owned()))
                .ok_or_else(|| DuckdbError::UnknownType {
                    column: name.clone(),
                    bigquery: bigquery.clone(),
                })
        })
        .collect()
}

/// Reads `source` with DuckDB run by `python` and runs `queries` (against the views `t`
/// and `files`, see the module docs). A query must not return `TIMESTAMP WITH TIME ZONE`
/// values: DuckDB's Python conversion of them needs `pytz`, which the venv does not have;
/// cast them to `VARCHAR`.
///
/// # Errors
/// [`DuckdbError`].
pub fn query(
    python: &Path,
    source: &HiveSource<'_>,
    queries: &[&str],
) -> Result<QueryOutput, DuckdbError> {
    let columns = match source.format {
        ObjectFormat::Parquet => Vec::new(),
        _ => typed_columns(source.ddl_columns)?,
    };
    let spec = serde_json::json!({
        "root": source.root.to_string_lossy(),
        "format": source.format.sink_format(),
        "columns": columns,
        "queries": queries,
    });
    let out = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(spec.to_string())
        .output()
        .map_err(|source| DuckdbError::Spawn {
            python: python.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(DuckdbError::Script {
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|e| DuckdbError::Output {
        reason: format!("{e}: {}", String::from_utf8_lossy(&out.stdout)),
    })
}

/// The `raw` stream's aggregates ([`HiveTable`]) of `source`.
///
/// # Errors
/// [`DuckdbError`]; [`DuckdbError::Output`] when a value is not of the column's type.
pub fn read_hive(python: &Path, source: &HiveSource<'_>) -> Result<HiveTable, DuckdbError> {
    let out = query(
        python,
        source,
        &[
            "SELECT tunnel_src, gre_key, hour, count(*) FROM t GROUP BY ALL",
            "SELECT count(*), coalesce(sum(payload_len), 0) FROM t",
            "SELECT DISTINCT dst_port FROM t ORDER BY 1",
        ],
    )?;
    let bad = |what: &str, value: &serde_json::Value| DuckdbError::Output {
        reason: format!("{what}: {value}"),
    };
    let [groups, totals, ports] =
        <[_; 3]>::try_from(out.results).map_err(|r| DuckdbError::Output {
            reason: format!("{} results for 3 queries", r.len()),
        })?;
    let mut table = HiveTable {
        columns: out.columns,
        groups: BTreeMap::new(),
        rows: 0,
        payload_bytes: 0,
        dst_ports: Vec::new(),
    };
    for row in &groups {
        let [src, key, hour, count] = row.as_slice() else {
            return Err(bad("group row", &serde_json::json!(row)));
        };
        let gre_key = match key {
            serde_json::Value::Null => None,
            k => Some(
                k.as_u64()
                    .and_then(|k| u32::try_from(k).ok())
                    .ok_or_else(|| bad("gre_key", k))?,
            ),
        };
        let hour = hour
            .as_u64()
            .and_then(|h| u32::try_from(h).ok())
            .ok_or_else(|| bad("hour", hour))?;
        let count = count.as_u64().ok_or_else(|| bad("count", count))?;
        table
            .groups
            .insert(group_key(src.as_str(), gre_key, hour), count);
    }
    match totals.as_slice() {
        [row] => match row.as_slice() {
            [rows, bytes] => {
                table.rows = rows.as_u64().ok_or_else(|| bad("count(*)", rows))?;
                table.payload_bytes = bytes
                    .as_u64()
                    .ok_or_else(|| bad("sum(payload_len)", bytes))?;
            }
            _ => return Err(bad("totals row", &serde_json::json!(row))),
        },
        _ => return Err(bad("totals", &serde_json::json!(totals))),
    }
    for row in &ports {
        let port = row.first().unwrap_or(&serde_json::Value::Null);
        table.dst_ports.push(
            port.as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| bad("dst_port", port))?,
        );
    }
    Ok(table)
}

/// [`read_hive`] of every `*.parquet` under `root`.
///
/// # Errors
/// [`DuckdbError`].
pub fn read_hive_parquet(python: &Path, root: &Path) -> Result<HiveTable, DuckdbError> {
    read_hive(
        python,
        &HiveSource {
            root,
            format: ObjectFormat::Parquet,
            ddl_columns: &[],
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigquery_types_map_to_duckdb_types() {
        let mapped: Vec<Option<&str>> = [
            "INT64",
            "FLOAT64",
            "BOOL",
            "STRING",
            "BYTES",
            "TIMESTAMP",
            "DATE",
            "JSON",
        ]
        .into_iter()
        .map(duckdb_type)
        .collect();
        assert_eq!(
            mapped,
            [
                Some("BIGINT"),
                Some("DOUBLE"),
                Some("BOOLEAN"),
                Some("VARCHAR"),
                Some("BLOB"),
                Some("TIMESTAMP WITH TIME ZONE"),
                Some("DATE"),
                None
            ]
        );
        assert_eq!(group_key(Some("192.0.2.1"), Some(7), 3), "192.0.2.1|7|3");
        assert_eq!(group_key(None, None, 23), "null|null|23");
    }

    #[test]
    fn formats_are_named_as_sink_format_names_them() {
        for format in [
            ObjectFormat::Parquet,
            ObjectFormat::NdjsonGzip,
            ObjectFormat::CsvGzip,
        ] {
            assert_eq!(
                ObjectFormat::from_sink_format(format.sink_format()),
                Some(format)
            );
        }
        assert_eq!(ObjectFormat::from_sink_format("ndjson_zstd"), None);
        assert_eq!(ObjectFormat::CsvGzip.extension(), ".csv.gz");
    }

    #[test]
    fn text_formats_are_read_with_the_ddl_types_without_partitions() {
        let ddl = [
            ("received_at", "TIMESTAMP"),
            ("gre_key", "INT64"),
            ("payload", "BYTES"),
            ("dt", "DATE"),
            ("hour", "INT64"),
        ]
        .map(|(n, t)| (n.to_owned(), t.to_owned()));
        let typed = typed_columns(&ddl).expect("known types");
        assert_eq!(
            typed,
            [
                ("received_at", "TIMESTAMP WITH TIME ZONE"),
                ("gre_key", "BIGINT"),
                ("payload", "BLOB")
            ]
            .map(|(n, t)| (n.to_owned(), t.to_owned()))
        );
        let unknown = typed_columns(&[("doc".to_owned(), "JSON".to_owned())]);
        assert!(
            matches!(unknown, Err(DuckdbError::UnknownType { ref column, .. }) if column == "doc"),
            "{unknown:?}"
        );
    }
}
