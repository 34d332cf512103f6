//! `sluice bigquery-ddl`: the `CREATE EXTERNAL TABLE` statement that reads a stream's
//! files in place, with hive partitioning on the `dt=YYYY-MM-DD/hour=HH/` path segments.
//!
//! Column types follow the files: BigQuery reads INT64/DOUBLE/BOOLEAN/STRING/BYTE_ARRAY/
//! TIMESTAMP(MICROS, UTC) Parquet columns as INT64/FLOAT64/BOOL/STRING/BYTES/TIMESTAMP.
//! In the text formats a BYTES column must be base64, so a hex `Bytes` column is declared
//! STRING there (in Parquet it is raw bytes: BYTES). Every column is NULLABLE: a `UInt64`
//! above `i64::MAX` is written as null, and BigQuery ignores REQUIRED for external files.
//!
//! [`DdlOptions::require_partition_filter`] sets `require_hive_partition_filter = true`:
//! BigQuery then refuses queries without a filter on `dt` or `hour`, so nobody scans (and
//! lists) every partition of a large table by mistake.

use std::fmt::Write as _;

use sluice_decode::{BytesEncoding, ColumnType, RecordSchema};

use crate::{Format, FormatError, columns::OutputColumns};

/// Choices of the statement beyond the table, prefix and format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DdlOptions {
    /// `require_hive_partition_filter = true`: queries must filter on `dt` or `hour`.
    pub require_partition_filter: bool,
}

/// The BigQuery type of a column in files of `format`.
pub fn bigquery_type(format: Format, ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Bool => "BOOL",
        ColumnType::UInt64 | ColumnType::Int64 => "INT64",
        ColumnType::Float64 => "FLOAT64",
        ColumnType::String | ColumnType::IpAddr | ColumnType::MacAddr => "STRING",
        ColumnType::Bytes(BytesEncoding::Hex) if format != Format::Parquet => "STRING",
        ColumnType::Bytes(_) => "BYTES",
        ColumnType::Timestamp => "TIMESTAMP",
    }
}

/// The `CREATE EXTERNAL TABLE` statement for a stream written in `format` under
/// `uri_prefix` (`gs://bucket/prefix/stream`, the folder that holds the `dt=` folders),
/// with `options`.
///
/// # Errors
/// [`FormatError::NotReadableByBigQuery`] for `ndjson_zstd`;
/// [`FormatError::DdlArgument`] when `table` is empty or holds a backtick, or
/// `uri_prefix` is not a `gs://bucket/...` URI; [`FormatError::DuplicateColumn`].
pub fn bigquery_ddl(
    table: &str,
    uri_prefix: &str,
    format: Format,
    schema: &RecordSchema,
    options: DdlOptions,
) -> Result<String, FormatError> {
    let (format_option, extra_options): (&str, &[&str]) = match format {
        Format::NdjsonGzip => ("NEWLINE_DELIMITED_JSON", &["compression = 'GZIP'"]),
        Format::CsvGzip => ("CSV", &["compression = 'GZIP'", "skip_leading_rows = 1"]),
        Format::Parquet => ("PARQUET", &[]),
        Format::NdjsonZstd => {
            return Err(FormatError::NotReadableByBigQuery {
                format,
                reason: "BigQuery reads JSON and CSV files uncompressed or gzip-compressed only",
            });
        }
    };
    let table = table.trim_matches('`');
    if table.is_empty() || table.contains('`') || table.contains('\n') {
        return Err(FormatError::DdlArgument {
            argument: "table",
            reason: format!("{table:?} is not a table name: use project.dataset.table"),
        });
    }
    let prefix = uri_prefix.trim_end_matches('/');
    let bucket = prefix.strip_prefix("gs://").unwrap_or("");
    if bucket.is_empty() || bucket.starts_with('/') || prefix.contains(['\'', '\\', '\n']) {
        return Err(FormatError::DdlArgument {
            argument: "uri_prefix",
            reason: format!(
                "{uri_prefix:?} is not a Cloud Storage prefix: use gs://bucket/path (no quotes or backslashes)"
            ),
        });
    }
    let columns = OutputColumns::new(schema)?;
    let mut ddl = format!("CREATE EXTERNAL TABLE `{table}`\n(\n");
    let count = columns.columns().len();
    for (i, c) in columns.columns().iter().enumerate() {
        let sep = if i + 1 < count { "," } else { "" };
        // Writing into a String cannot fail.
        let _ = writeln!(ddl, "  `{}` {}{sep}", c.name, bigquery_type(format, c.ty));
    }
    ddl.push_str(")\nWITH PARTITION COLUMNS\n(\n  `dt` DATE,\n  `hour` INT64\n)\nOPTIONS (\n");
    let _ = writeln!(ddl, "  format = '{format_option}',");
    for option in extra_options {
        let _ = writeln!(ddl, "  {option},");
    }
    let _ = writeln!(ddl, "  uris = ['{prefix}/*'],");
    let _ = writeln!(ddl, "  hive_partition_uri_prefix = '{prefix}',");
    let _ = writeln!(
        ddl,
        "  require_hive_partition_filter = {}\n);",
        options.require_partition_filter
    );
    Ok(ddl)
}
