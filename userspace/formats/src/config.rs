//! The `format` options of a sink: which file format a stream's batches are written in,
//! how hard they are compressed, and (Parquet) how rows are grouped.
//!
//! ```toml
//! format = "parquet"          # ndjson_gzip | ndjson_zstd | csv_gzip | parquet
//! compression_level = 3       # optional; gzip 0-9 (6), ndjson_zstd 1-22 (1), parquet 1-22 (3)
//! row_group_rows = 1000000    # optional, Parquet only: a row group every N rows
//! row_group_bytes = 67108864  # Parquet only: ... or every N bytes of values (the default)
//! ```
//!
//! A row group never spans batches: a batch smaller than `row_group_bytes` (the usual
//! case at low rates, when `batch.max_age_ms` closes it) is one row group.

use serde::{Deserialize, Serialize};

use crate::FormatError;

/// The default of [`FormatConfig::row_group_bytes`]: 64 MiB of values before encoding and
/// compression. BigQuery recommends Parquet row groups of at least 16 MiB: a row group
/// closed here stays at or above that after encoding and ZSTD unless its values shrink
/// more than four-fold. Only a batch that large gets there (see docs/formats.md).
pub const DEFAULT_ROW_GROUP_BYTES: u64 = 64 << 20;

/// A file format of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Newline-delimited JSON, gzip: BigQuery reads it (not in parallel within a file).
    NdjsonGzip,
    /// Newline-delimited JSON, zstd: smaller and faster, for readers other than BigQuery.
    NdjsonZstd,
    /// CSV with a header line (RFC 4180 quoting), gzip: BigQuery reads it with
    /// `skip_leading_rows = 1`.
    CsvGzip,
    /// Parquet with ZSTD page compression and typed columns.
    Parquet,
}

impl Format {
    /// Every format, for tests and help texts.
    pub const ALL: [Format; 4] = [
        Format::NdjsonGzip,
        Format::NdjsonZstd,
        Format::CsvGzip,
        Format::Parquet,
    ];

    /// The file name extension, without the leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::NdjsonGzip => "ndjson.gz",
            Format::NdjsonZstd => "ndjson.zst",
            Format::CsvGzip => "csv.gz",
            Format::Parquet => "parquet",
        }
    }

    /// True for the gzip formats (`ndjson_gzip`, `csv_gzip`).
    pub fn is_gzip(self) -> bool {
        matches!(self, Format::NdjsonGzip | Format::CsvGzip)
    }

    /// The name used in the config (`ndjson_gzip`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::NdjsonGzip => "ndjson_gzip",
            Format::NdjsonZstd => "ndjson_zstd",
            Format::CsvGzip => "csv_gzip",
            Format::Parquet => "parquet",
        }
    }

    /// The compression level used when none is configured. zstd's is 1, not zstd's own 3:
    /// on rows of text it compresses 11–23% faster, to files as small or smaller except
    /// where the text is random (base64 payloads: 8% larger); docs/formats.md,
    /// "Compression levels".
    pub fn default_level(self) -> i32 {
        match self {
            Format::NdjsonGzip | Format::CsvGzip => 6,
            Format::NdjsonZstd => 1,
            Format::Parquet => 3,
        }
    }

    fn level_range(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Format::NdjsonGzip | Format::CsvGzip => 0..=9,
            Format::NdjsonZstd | Format::Parquet => 1..=22,
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The format options of a sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatConfig {
    /// The file format: `ndjson_gzip`, `ndjson_zstd`, `csv_gzip` or `parquet`.
    pub format: Format,
    /// Compression level: gzip 0–9 (default 6), zstd 1–22 (default 1), Parquet's ZSTD
    /// pages 1–22 (default 3).
    #[serde(default)]
    pub compression_level: Option<i32>,
    /// Parquet only: start a new row group after this many rows (default: no row limit).
    #[serde(default)]
    pub row_group_rows: Option<u64>,
    /// Parquet only: start a new row group once this many bytes of values are buffered
    /// (default [`DEFAULT_ROW_GROUP_BYTES`]; BigQuery prefers row groups of 16 MiB or
    /// more). A batch below it is one row group.
    #[serde(default)]
    pub row_group_bytes: Option<u64>,
}

impl FormatConfig {
    /// The defaults of `format`.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            compression_level: None,
            row_group_rows: None,
            row_group_bytes: None,
        }
    }

    /// The compression level in effect.
    pub fn level(&self) -> i32 {
        self.compression_level
            .unwrap_or_else(|| self.format.default_level())
    }

    /// The row-group byte threshold in effect (Parquet).
    pub fn row_group_bytes(&self) -> u64 {
        self.row_group_bytes.unwrap_or(DEFAULT_ROW_GROUP_BYTES)
    }

    /// Checks the options against the format.
    ///
    /// # Errors
    /// [`FormatError::Config`] naming the first option that cannot be used.
    pub fn validate(&self) -> Result<(), FormatError> {
        let range = self.format.level_range();
        if let Some(level) = self.compression_level
            && !range.contains(&level)
        {
            return Err(FormatError::Config {
                field: "compression_level",
                reason: format!(
                    "{level} is out of range for {}: use {} to {}",
                    self.format,
                    range.start(),
                    range.end()
                ),
            });
        }
        for (field, value, default) in [
            ("row_group_rows", self.row_group_rows, "no row limit"),
            (
                "row_group_bytes",
                self.row_group_bytes,
                "the default of 67108864",
            ),
        ] {
            match value {
                None => {}
                Some(_) if self.format != Format::Parquet => {
                    return Err(FormatError::Config {
                        field,
                        reason: format!(
                            "only applies to format \"parquet\", not \"{}\"",
                            self.format
                        ),
                    });
                }
                Some(0) => {
                    return Err(FormatError::Config {
                        field,
                        reason: format!(
                            "0 is not a size: use at least 1, or leave it out for {default}"
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FormatConfig, String> {
        toml::from_str::<FormatConfig>(text).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn every_format_parses_by_name_with_its_extension() {
        for (name, format, ext) in [
            ("ndjson_gzip", Format::NdjsonGzip, "ndjson.gz"),
            ("ndjson_zstd", Format::NdjsonZstd, "ndjson.zst"),
            ("csv_gzip", Format::CsvGzip, "csv.gz"),
            ("parquet", Format::Parquet, "parquet"),
        ] {
            let config = parse(&format!("format = \"{name}\"")).expect("parses");
            assert_eq!(config, FormatConfig::new(format));
            assert_eq!(format.extension(), ext);
            assert_eq!(format.to_string(), name);
            assert_eq!(config.validate().ok(), Some(()));
        }
    }

    #[test]
    fn bad_options_name_the_field() {
        let err = |text: &str| match parse(text) {
            Ok(config) => config.validate().map_err(|e| e.to_string()).err(),
            Err(e) => Some(e),
        };
        assert_eq!(
            err("format = \"csv_gzip\"\ncompression_level = 10").as_deref(),
            Some("compression_level: 10 is out of range for csv_gzip: use 0 to 9")
        );
        assert_eq!(
            err("format = \"parquet\"\ncompression_level = 0").as_deref(),
            Some("compression_level: 0 is out of range for parquet: use 1 to 22")
        );
        assert_eq!(
            err("format = \"ndjson_gzip\"\nrow_group_rows = 5").as_deref(),
            Some("row_group_rows: only applies to format \"parquet\", not \"ndjson_gzip\"")
        );
        assert_eq!(
            err("format = \"parquet\"\nrow_group_bytes = 0").as_deref(),
            Some(
                "row_group_bytes: 0 is not a size: use at least 1, or leave it out for the default of 67108864"
            )
        );
        assert!(err("format = \"avro\"").is_some_and(|e| e.contains("unknown variant `avro`")),);
        assert!(
            err("format = \"parquet\"\nlevel = 3")
                .is_some_and(|e| e.contains("unknown field `level`")),
        );
        let config = parse("format = \"parquet\"\ncompression_level = 9\nrow_group_rows = 10")
            .expect("parses");
        assert_eq!(config.level(), 9);
        assert_eq!(config.row_group_rows, Some(10));
        assert_eq!(FormatConfig::new(Format::CsvGzip).level(), 6);
        assert_eq!(
            FormatConfig::new(Format::Parquet).row_group_bytes(),
            64 * 1024 * 1024
        );
        assert_eq!(config.row_group_bytes(), DEFAULT_ROW_GROUP_BYTES);
    }
}
