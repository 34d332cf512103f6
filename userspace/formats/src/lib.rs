//! The files a batch of records becomes: newline-delimited JSON (gzip or zstd), CSV
//! (gzip) and Parquet (ZSTD pages), in the forms BigQuery reads as external tables, and
//! the `CREATE EXTERNAL TABLE` statement that reads them ([`bigquery_ddl`]).
//!
//! Every file has the packet's provenance columns first (`received_at, tunnel_src,
//! tunnel_dst, gre_key, src_ip, src_port, dst_ip, dst_port`), then the decoder's columns
//! ([`columns`]). An encoder holds one open batch at a time: rows go in through
//! [`sluice_decode::RowSink`], [`BatchEncoder::uncompressed_len`] and
//! [`BatchEncoder::records`] let the caller close it at its size limits, and
//! [`BatchEncoder::finish_batch`] returns the complete file and leaves the encoder empty
//! for the next batch. An encoder kept from batch to batch keeps its buffers and codec
//! state (zstd and deflate contexts, Parquet column buffers), which a new encoder per batch
//! would allocate, fault in and free again every time; the files are the same either way.
//!
//! ```
//! use sluice_decode::{DecoderFactory as _, raw::RawFactory};
//! use sluice_formats::{BatchEncoder as _, Format, FormatConfig, FileEncoder};
//!
//! let config = FormatConfig::new(Format::Parquet);
//! let mut encoder = FileEncoder::new(&config, RawFactory::default().schema()).unwrap();
//! assert_eq!(encoder.records(), 0);
//! let first = encoder.finish_batch().unwrap();
//! assert_eq!(&first[..4], b"PAR1");
//! // The next batch, on the same encoder.
//! assert_eq!(encoder.finish_batch().unwrap(), first);
//! ```
//!
//! Batches of one stream combine into one larger file without being decoded again
//! ([`combine`]: the uploader's objects).
//!
//! Operating notes and the type table: docs/formats.md.

pub mod columns;
pub mod combine;
mod compress;
pub mod config;
pub mod ddl;
pub mod error;
pub mod parquet_file;
pub mod text;
pub mod textfile;
pub mod textout;
mod textvalue;
pub mod timestamp;
mod zstd_context;

use sluice_decode::{PacketContext, RecordSchema, RowSink, Value};

pub use crate::{
    combine::{BatchError, CombineError, CombineKind, CombineSummary, Combiner, compatibility_key},
    config::{Format, FormatConfig},
    ddl::{DdlOptions, bigquery_ddl},
    error::FormatError,
    parquet_file::ParquetEncoder,
    textfile::TextEncoder,
};

/// The open batch of one stream, in one format.
pub trait BatchEncoder: RowSink {
    /// The complete file of the open batch (the compressed stream, or the Parquet file with
    /// its footer), leaving the encoder empty, its counters at zero, ready for the next
    /// batch. The next batch starts clean whatever this one returned.
    ///
    /// # Errors
    /// The first row that broke the schema ([`FormatError::RowLength`],
    /// [`FormatError::ValueType`]; the batch is refused as a whole), or a codec error.
    fn finish_batch(&mut self) -> Result<Vec<u8>, FormatError>;

    /// [`Self::finish_batch`] for an encoder of one batch.
    ///
    /// # Errors
    /// As [`Self::finish_batch`].
    fn finish(mut self) -> Result<Vec<u8>, FormatError>
    where
        Self: Sized,
    {
        self.finish_batch()
    }

    /// Bytes of the open batch before compression (for Parquet, an estimate of the values'
    /// size), to close a batch at a size limit.
    fn uncompressed_len(&self) -> u64;

    /// Rows of the open batch accepted so far.
    fn records(&self) -> u64;

    /// `UInt64` values of the open batch above `i64::MAX` written as null (BigQuery's
    /// INT64 cannot hold them).
    fn overflows(&self) -> u64;
}

/// An encoder of any [`Format`], chosen from the config at run time.
#[derive(Debug)]
pub enum FileEncoder {
    /// `ndjson_gzip`, `ndjson_zstd`, `csv_gzip`.
    Text(TextEncoder),
    /// `parquet`.
    Parquet(ParquetEncoder),
}

impl FileEncoder {
    /// An empty batch of `config.format` for rows of `schema`.
    ///
    /// # Errors
    /// [`FormatError::Config`] (invalid options), [`FormatError::DuplicateColumn`], or a
    /// codec that refuses its settings.
    pub fn new(config: &FormatConfig, schema: &RecordSchema) -> Result<Self, FormatError> {
        config.validate()?;
        let level = config.level();
        Ok(match config.format {
            Format::NdjsonGzip => Self::Text(TextEncoder::ndjson_gzip(schema, level)?),
            Format::NdjsonZstd => Self::Text(TextEncoder::ndjson_zstd(schema, level)?),
            Format::CsvGzip => Self::Text(TextEncoder::csv_gzip(schema, level)?),
            Format::Parquet => Self::Parquet(ParquetEncoder::new(schema, config)?),
        })
    }
}

impl RowSink for FileEncoder {
    fn row(&mut self, ctx: &PacketContext, values: &[Value<'_>]) {
        match self {
            Self::Text(e) => e.row(ctx, values),
            Self::Parquet(e) => e.row(ctx, values),
        }
    }
}

impl BatchEncoder for FileEncoder {
    fn finish_batch(&mut self) -> Result<Vec<u8>, FormatError> {
        match self {
            Self::Text(e) => e.finish_batch(),
            Self::Parquet(e) => e.finish_batch(),
        }
    }

    fn uncompressed_len(&self) -> u64 {
        match self {
            Self::Text(e) => e.uncompressed_len(),
            Self::Parquet(e) => e.uncompressed_len(),
        }
    }

    fn records(&self) -> u64 {
        match self {
            Self::Text(e) => e.records(),
            Self::Parquet(e) => e.records(),
        }
    }

    fn overflows(&self) -> u64 {
        match self {
            Self::Text(e) => e.overflows(),
            Self::Parquet(e) => e.overflows(),
        }
    }
}

#[cfg(test)]
mod tests;
