//! What the query-engine tests (`query_engine.rs`) check in a bucket DuckDB has read: the
//! `raw` table's columns, types and aggregates against the records sent, the column names
//! in the files, base64 `BYTES` that decode to `payload_len` bytes, partitions of the run's
//! hours, a lossless run's upload account and the object names. Failures name what
//! differed (the differing keys with both values), not just that something did.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sluice_testkit::duckdb::{self as duck, HiveSource, HiveTable};
use sluice_testkit::records::Record;
use sluice_testkit::stats::Stats;

use super::gcs_lab::{PREFIX, expected_table};

/// The UTC date (`YYYY-MM-DD`) and hour now: the partition a record received now is in.
pub fn utc_partition() -> (String, u32) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (year, month, day) = sluice_testkit::civil::civil_from_days(days);
    let hour = u32::try_from(secs / 3600 % 24).unwrap_or(0);
    (format!("{year:04}-{month:02}-{day:02}"), hour)
}

/// `(a, b)` entries of two maps that differ, for a readable failure.
pub fn map_diff<K: Ord + std::fmt::Debug + Clone, V: PartialEq + std::fmt::Debug + Clone>(
    got: &BTreeMap<K, V>,
    want: &BTreeMap<K, V>,
) -> Vec<(K, Option<V>, Option<V>)> {
    let keys: BTreeSet<&K> = got.keys().chain(want.keys()).collect();
    keys.into_iter()
        .filter(|k| got.get(k) != want.get(k))
        .map(|k| ((*k).clone(), got.get(k).cloned(), want.get(k).cloned()))
        .collect()
}

/// The DDL's column names that are in the files: all but the partition columns `dt` and
/// `hour`, which come from the object names.
pub fn file_columns_of(ddl_columns: &[(String, String)]) -> Vec<&str> {
    ddl_columns
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "dt" && *n != "hour")
        .collect()
}

/// `tunnel_src|gre_key|hour` → count, summed over the hours: `tunnel_src|gre_key`.
pub fn without_hour(groups: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (key, n) in groups {
        let tunnel_key = key.rsplit_once('|').map_or(key.as_str(), |(k, _)| k);
        *out.entry(tunnel_key.to_owned()).or_default() += n;
    }
    out
}

/// The run's partitions: the UTC (date, hour) when traffic started and when it ended.
pub struct RunWindow {
    /// When the first packet was sent.
    pub first: (String, u32),
    /// After the daemon stopped.
    pub last: (String, u32),
}

impl RunWindow {
    /// The hours of [`RunWindow::partitions`].
    pub fn hours(&self) -> BTreeSet<u32> {
        [self.first.1, self.last.1].into()
    }

    /// The (date, hour) partitions the run's records may be in.
    pub fn partitions(&self) -> BTreeSet<(String, u32)> {
        [self.first.clone(), self.last.clone()].into()
    }
}

/// DuckDB's aggregates of the `raw` table equal what `expected` records make, with the
/// DDL's columns and types; every (dt, hour) partition is one of the run's.
pub fn assert_raw_table(
    got: &HiveTable,
    ddl_columns: &[(String, String)],
    expected: &[Record],
    window: &RunWindow,
    what: &str,
) {
    let want = expected_table(ddl_columns, expected, window.first.1);
    assert_eq!(
        got.columns, want.columns,
        "{what}: the columns and types DuckDB sees (left) are not the DDL's (right)"
    );
    let hours: BTreeSet<u32> = got
        .groups
        .keys()
        .filter_map(|k| k.rsplit_once('|')?.1.parse().ok())
        .collect();
    assert!(
        hours.is_subset(&window.hours()),
        "{what}: hours {hours:?} outside the run's {:?}",
        window.hours()
    );
    // Within the run's hours, count(*) per tunnel and key is exact; when the run stayed in
    // one hour this is the whole (tunnel_src, gre_key, hour) grouping.
    let diff = map_diff(&without_hour(&got.groups), &without_hour(&want.groups));
    assert!(
        diff.is_empty(),
        "{what}: count(*) per tunnel_src|gre_key differs (key, DuckDB, sent): {diff:?}"
    );
    if window.first.1 == window.last.1 {
        assert_eq!(got.groups, want.groups, "{what}: groups with hour");
    }
    assert_eq!(
        (got.rows, got.payload_bytes, &got.dst_ports),
        (want.rows, want.payload_bytes, &want.dst_ports),
        "{what}: (count(*), sum(payload_len), distinct dst_port) DuckDB vs sent"
    );
}

/// What DuckDB shows of the `raw` table beyond its aggregates: the files carry exactly the
/// DDL's column names, every `payload` decodes to `payload_len` bytes, and the partitions
/// are the run's.
pub fn assert_raw_details(python: &Path, source: &HiveSource<'_>, window: &RunWindow, what: &str) {
    let out = duck::query(
        python,
        source,
        &[
            "SELECT count(*) FROM t WHERE payload IS NULL OR octet_length(payload) <> payload_len",
            "SELECT DISTINCT CAST(dt AS VARCHAR), hour FROM t ORDER BY ALL",
        ],
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let ddl_names = file_columns_of(source.ddl_columns);
    assert_eq!(
        out.file_columns, ddl_names,
        "{what}: column names in the files (left) vs the DDL (right)"
    );
    assert_eq!(
        out.results[0],
        [[serde_json::json!(0)]],
        "{what}: rows whose decoded payload is not payload_len bytes"
    );
    let partitions: BTreeSet<(String, u32)> = out.results[1]
        .iter()
        .map(|row| {
            let dt = row[0].as_str().expect("dt").to_owned();
            let hour = row[1].as_u64().and_then(|h| u32::try_from(h).ok());
            (dt, hour.expect("hour"))
        })
        .collect();
    assert!(
        !partitions.is_empty() && partitions.is_subset(&window.partitions()),
        "{what}: partitions {partitions:?}, the run's {:?}",
        window.partitions()
    );
}

/// The run's stats: balanced, everything sent recorded, nothing dropped, nothing left in
/// the spool, no object found already there (a name collision would show as one).
pub fn assert_lossless_upload(stats: &Stats, sent: usize, what: &str) {
    assert!(stats.is_balanced(), "{what}: {stats:?}");
    assert_eq!(
        stats.seen,
        stats.recorded + stats.dropped_total,
        "{what}: seen = recorded + dropped: {stats:?}"
    );
    assert_eq!(
        (stats.seen, stats.recorded, stats.dropped_total),
        (sent as u64, sent as u64, 0),
        "{what}: (seen, recorded, dropped) vs frames sent: {stats:?}"
    );
    let upload = stats.upload.clone().expect("upload account");
    assert_eq!(
        (upload.left_spooled_files, upload.already_there),
        (0, 0),
        "{what}: {upload:?}"
    );
}

/// Every object name is `<PREFIX>/<stream>/dt=.../hour=.../<name><extension>`.
pub fn assert_object_names(objects: &[String], stream: &str, extension: &str, what: &str) {
    assert!(!objects.is_empty(), "{what}: the bucket is empty");
    let bad: Vec<&String> = objects
        .iter()
        .filter(|name| {
            !(name.starts_with(&format!("{PREFIX}/{stream}/dt="))
                && name.contains("/hour=")
                && name.ends_with(extension))
        })
        .collect();
    assert!(bad.is_empty(), "{what}: unexpected object names {bad:?}");
}
