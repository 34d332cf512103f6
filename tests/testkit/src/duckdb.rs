//! DuckDB (the venv's `duckdb`, pinned by `cargo xtask setup`) as BigQuery's stand-in: it
//! reads a folder of the daemon's Parquet files laid out as in the bucket
//! (`dt=YYYY-MM-DD/hour=HH/<name>.parquet`) as one hive-partitioned table, and reports the
//! columns and types it sees and the aggregates the tests compare with what was sent.
//!
//! [`duckdb_type`] maps the types `sluice bigquery-ddl` declares to the ones DuckDB reports
//! for the same Parquet columns, so a test can compare the two schemas name by name. The
//! partition columns get the types the DDL declares for them (`WITH PARTITION COLUMNS`:
//! `dt` DATE, `hour` INT64) as DuckDB's `hive_types`, as BigQuery is told them: left to
//! guess, DuckDB reads `hour=03` as text. A folder value that is not a date or an integer
//! fails the query.

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
}

/// What DuckDB sees in a hive-partitioned folder of Parquet files (the `raw` stream's
/// columns: `tunnel_src`, `gre_key`, `dst_port`, `payload_len`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
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

/// The DuckDB type of a column that `sluice bigquery-ddl` declares as `bigquery` (Parquet
/// files; `TIMESTAMP` is TIMESTAMP(MICROS, UTC), which DuckDB reads with a time zone; `dt`
/// is a DATE and `hour` an INT64 partition column). `None` for a type the DDL never writes.
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

const SCRIPT: &str = r#"
import json, sys
import duckdb
root = sys.argv[1].replace("'", "''")
con = duckdb.connect()
con.execute(
    "CREATE VIEW t AS SELECT * FROM read_parquet('" + root + "/**/*.parquet', "
    "hive_partitioning = true, hive_types = {'dt': DATE, 'hour': BIGINT})"
)
columns = [[r[0], r[1]] for r in con.execute("DESCRIBE t").fetchall()]
groups = {}
for src, key, hour, n in con.execute(
    "SELECT tunnel_src, gre_key, hour, count(*) FROM t GROUP BY ALL"
).fetchall():
    k = "%s|%s|%d" % ("null" if src is None else src, "null" if key is None else key, hour)
    groups[k] = n
rows, payload_bytes = con.execute("SELECT count(*), coalesce(sum(payload_len), 0) FROM t").fetchone()
ports = [r[0] for r in con.execute("SELECT DISTINCT dst_port FROM t ORDER BY 1").fetchall()]
json.dump({"columns": columns, "groups": groups, "rows": rows,
           "payload_bytes": int(payload_bytes), "dst_ports": ports}, sys.stdout)
"#;

/// Reads every `*.parquet` under `root` (its `dt=`/`hour=` folders as hive partitions) with
/// DuckDB run by `python`.
///
/// # Errors
/// [`DuckdbError`].
pub fn read_hive_parquet(python: &Path, root: &Path) -> Result<HiveTable, DuckdbError> {
    let out = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(root)
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
}
