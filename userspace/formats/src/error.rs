//! Why a batch could not be encoded, or a format not configured or declared.

use sluice_decode::ColumnType;

use crate::Format;

/// An error of this crate. Row errors are kept by the encoder (a [`sluice_decode::RowSink`]
/// cannot fail) and returned by `finish`: they mean a decoder broke its schema contract,
/// which tests must catch, so the batch is refused rather than written half right.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Two output columns would have the same name (a decoder column clashing with a
    /// provenance column is renamed `<decoder>_<name>` first; this is what is left).
    #[error("column {name:?} appears twice in the output of decoder {decoder:?}")]
    DuplicateColumn {
        /// The decoder whose schema clashes.
        decoder: String,
        /// The repeated output name.
        name: String,
    },
    /// A row did not have one value per decoder column.
    #[error("row {row}: {found} values for the {expected} columns of the schema")]
    RowLength {
        /// Index of the row in the batch (0-based).
        row: u64,
        /// Columns of the decoder's schema.
        expected: usize,
        /// Values the row had.
        found: usize,
    },
    /// A value's variant does not match its column's type (or a required column is null).
    #[error("row {row}: column {column:?} of type {expected:?} got a {found} value")]
    ValueType {
        /// Index of the row in the batch (0-based).
        row: u64,
        /// Output name of the column.
        column: String,
        /// The column's declared type.
        expected: ColumnType,
        /// The variant received (`null`, `u64`, `str`, ...).
        found: &'static str,
    },
    /// The gzip or zstd stream could not be written or finished.
    #[error("{codec} compression failed: {source}")]
    Compression {
        /// `gzip` or `zstd`.
        codec: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The Parquet writer refused the schema or the data.
    #[error("parquet: {source}")]
    Parquet {
        /// The underlying error.
        #[from]
        source: parquet::errors::ParquetError,
    },
    /// A configuration option cannot be used.
    #[error("{field}: {reason}")]
    Config {
        /// The option, e.g. `compression_level`.
        field: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// BigQuery cannot read files of this format as an external table.
    #[error("BigQuery cannot read {format} files ({reason}); use ndjson_gzip, csv_gzip or parquet")]
    NotReadableByBigQuery {
        /// The configured format.
        format: Format,
        /// Why.
        reason: &'static str,
    },
    /// An argument of the DDL generator cannot be used.
    #[error("{argument}: {reason}")]
    DdlArgument {
        /// `table` or `uri_prefix`.
        argument: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
}

/// The name of a value's variant, for [`FormatError::ValueType`].
pub(crate) fn variant_name(value: &sluice_decode::Value<'_>) -> &'static str {
    use sluice_decode::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::U64(_) => "u64",
        Value::I64(_) => "i64",
        Value::F64(_) => "f64",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::Ip(_) => "ip",
        Value::Mac(_) => "mac",
        Value::Timestamp(_) => "timestamp",
    }
}
