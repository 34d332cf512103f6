//! Parquet batches appended row group by row group: each column chunk's bytes (pages as
//! the encoder compressed them) are copied into the output and its metadata moved to where
//! it lands (parquet's `SerializedRowGroupWriter::append_column`); no page is decoded.

use std::{ops::Range, sync::Arc};

use bytes::Bytes;
use parquet::{
    basic::{Compression, ZstdLevel},
    bloom_filter::Sbbf,
    column::writer::ColumnCloseResult,
    errors::ParquetError,
    file::{
        FOOTER_SIZE,
        metadata::{
            ColumnChunkMetaData, PageIndexPolicy, ParquetMetaData, ParquetMetaDataOptions,
            ParquetMetaDataReader,
        },
        properties::{WriterProperties, WriterVersion},
        statistics::Statistics,
        writer::SerializedFileWriter,
    },
    schema::{printer::print_schema, types::Type},
};

use super::{BatchError, CombineKind, Counted, hex_start};

/// A Parquet file's first and last four bytes (an unencrypted footer).
const MAGIC: [u8; 4] = *b"PAR1";

/// A Parquet batch whose footer, page index and bloom filters have been read and whose
/// column chunks all lie inside it.
pub(super) struct ParquetBatch {
    bytes: Bytes,
    metadata: ParquetMetaData,
    /// Per row group, per column.
    bloom_filters: Vec<Vec<Option<Sbbf>>>,
    /// The printed schema: the compatibility key.
    pub(super) key: Vec<u8>,
}

impl ParquetBatch {
    /// Reads and checks `bytes`.
    ///
    /// # Errors
    /// [`BatchError::Malformed`], [`BatchError::ParquetMetadata`].
    pub(super) fn read(bytes: Bytes) -> Result<Self, BatchError> {
        let footer = metadata_range(&bytes)?;
        // By default the reader keeps only a bit mask of each chunk's page encoding stats;
        // the list is what the footer holds, and what the output's footer should hold.
        let options = ParquetMetaDataOptions::new().with_encoding_stats_as_mask(false);
        let metadata = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .with_metadata_options(Some(options))
            .parse_and_finish(&bytes)
            .map_err(|source| BatchError::ParquetMetadata { source })?;
        check_chunks(&metadata, footer.start)?;
        let bloom_filters = metadata
            .row_groups()
            .iter()
            .map(|group| {
                group
                    .columns()
                    .iter()
                    .map(|column| Sbbf::read_from_column_chunk(column, &bytes))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| BatchError::ParquetMetadata { source })?;
        let key = schema_key(metadata.file_metadata().schema());
        Ok(Self {
            bytes,
            metadata,
            bloom_filters,
            key,
        })
    }

    /// The batch's schema tree.
    pub(super) fn schema(&self) -> &Type {
        self.metadata.file_metadata().schema()
    }

    /// A writer of a combined file with this (first) batch's schema and footer fields:
    /// `created_by` (the writer of the pages), key-value metadata, format version.
    pub(super) fn writer<W: std::io::Write + Send>(
        &self,
        out: Counted<W>,
    ) -> Result<SerializedFileWriter<Counted<W>>, ParquetError> {
        let file = self.metadata.file_metadata();
        // Appended chunks keep their own codec; this only says what the encoder used.
        let compression = self
            .metadata
            .row_groups()
            .first()
            .and_then(|group| group.columns().first())
            .map_or(Compression::ZSTD(ZstdLevel::default()), |column| {
                column.compression()
            });
        let properties = WriterProperties::builder()
            .set_compression(compression)
            .set_created_by(
                file.created_by()
                    .map_or_else(crate::parquet_file::created_by, str::to_owned),
            )
            .set_key_value_metadata(file.key_value_metadata().cloned())
            .set_writer_version(if file.version() >= 2 {
                WriterVersion::PARQUET_2_0
            } else {
                WriterVersion::PARQUET_1_0
            })
            .build();
        SerializedFileWriter::new(
            out,
            file.schema_descr().root_schema_ptr(),
            Arc::new(properties),
        )
    }

    /// Appends every row group to `writer`; returns the rows and row groups appended.
    pub(super) fn append_to<W: std::io::Write + Send>(
        &mut self,
        writer: &mut SerializedFileWriter<W>,
    ) -> Result<(u64, u64), ParquetError> {
        let page_index = self.metadata.page_index();
        let mut rows = 0;
        for (g, group) in self.metadata.row_groups().iter().enumerate() {
            // `check_chunks` refused negative counts and sizes.
            let group_rows = u64::try_from(group.num_rows()).unwrap_or(0);
            let mut blooms = self
                .bloom_filters
                .get_mut(g)
                .map(std::mem::take)
                .unwrap_or_default()
                .into_iter();
            let mut out = writer.next_row_group()?;
            for (c, column) in group.columns().iter().enumerate() {
                let close = ColumnCloseResult {
                    bytes_written: u64::try_from(column.compressed_size()).unwrap_or(0),
                    rows_written: group_rows,
                    metadata: with_deprecated_min_max(column)?,
                    bloom_filter: blooms.next().flatten(),
                    column_index: page_index.and_then(|p| p.column_index(g, c)).cloned(),
                    offset_index: page_index.and_then(|p| p.offset_index(g, c)).cloned(),
                };
                out.append_column(&self.bytes, close)?;
            }
            out.close()?;
            rows += group_rows;
        }
        Ok((rows, self.metadata.row_groups().len() as u64))
    }
}

/// `column` as the parquet crate's writer would describe it: when reading statistics the
/// reader forgets that the footer also held them in the deprecated `min`/`max` fields
/// (written, for older readers, when the column's sort order is signed); the writer's rule
/// puts them back, so that a combined file's footer says what the batches' said.
fn with_deprecated_min_max(
    column: &ColumnChunkMetaData,
) -> Result<ColumnChunkMetaData, ParquetError> {
    let Some(statistics) = column.statistics() else {
        return Ok(column.clone());
    };
    if !column.column_descr().sort_order().is_signed() {
        return Ok(column.clone());
    }
    let statistics = match statistics.clone() {
        Statistics::Boolean(s) => Statistics::Boolean(s.with_backwards_compatible_min_max(true)),
        Statistics::Int32(s) => Statistics::Int32(s.with_backwards_compatible_min_max(true)),
        Statistics::Int64(s) => Statistics::Int64(s.with_backwards_compatible_min_max(true)),
        Statistics::Int96(s) => Statistics::Int96(s.with_backwards_compatible_min_max(true)),
        Statistics::Float(s) => Statistics::Float(s.with_backwards_compatible_min_max(true)),
        Statistics::Double(s) => Statistics::Double(s.with_backwards_compatible_min_max(true)),
        Statistics::ByteArray(s) => {
            Statistics::ByteArray(s.with_backwards_compatible_min_max(true))
        }
        Statistics::FixedLenByteArray(s) => {
            Statistics::FixedLenByteArray(s.with_backwards_compatible_min_max(true))
        }
    };
    column
        .clone()
        .into_builder()
        .set_statistics(statistics)
        .build()
}

/// The compatibility key of a Parquet batch, from its footer alone (the page index and
/// bloom filters are read by [`ParquetBatch::read`]).
pub(super) fn footer_key(batch: &[u8]) -> Result<Vec<u8>, BatchError> {
    let footer = metadata_range(batch)?;
    let metadata = ParquetMetaDataReader::decode_metadata(&batch[footer.clone()])
        .map_err(|source| BatchError::ParquetMetadata { source })?;
    check_chunks(&metadata, footer.start)?;
    Ok(schema_key(metadata.file_metadata().schema()))
}

/// The schema as the parquet crate prints it: names, repetition, physical and logical
/// types, field ids.
fn schema_key(schema: &Type) -> Vec<u8> {
    let mut printed = Vec::new();
    print_schema(&mut printed, schema);
    printed
}

fn malformed(reason: String) -> BatchError {
    BatchError::Malformed {
        kind: CombineKind::Parquet,
        reason,
    }
}

/// Where the footer's metadata lies: between the data and the last 8 bytes (its length
/// and `PAR1`).
fn metadata_range(batch: &[u8]) -> Result<Range<usize>, BatchError> {
    let len = batch.len();
    if len < MAGIC.len() + FOOTER_SIZE || !batch.starts_with(&MAGIC) || !batch.ends_with(&MAGIC) {
        return Err(malformed(format!(
            "{len} bytes starting with {}: not a file framed by PAR1 ... PAR1",
            hex_start(batch)
        )));
    }
    let end = len - FOOTER_SIZE;
    let mut length = [0; 4];
    length.copy_from_slice(&batch[end..end + 4]);
    let length = u32::from_le_bytes(length) as usize;
    match end.checked_sub(length) {
        Some(start) if start >= MAGIC.len() => Ok(start..end),
        _ => Err(malformed(format!(
            "the footer claims {length} bytes of metadata, more than the {len}-byte file holds"
        ))),
    }
}

/// Whether every row group has one chunk per column and every chunk lies between the
/// leading magic and `data_end` (where the footer's metadata starts).
fn check_chunks(metadata: &ParquetMetaData, data_end: usize) -> Result<(), BatchError> {
    let columns = metadata.file_metadata().schema_descr().num_columns();
    for (g, group) in metadata.row_groups().iter().enumerate() {
        if group.num_rows() < 0 || group.num_columns() != columns {
            return Err(malformed(format!(
                "row group {g} has {} rows in {} column chunks, for {columns} columns",
                group.num_rows(),
                group.num_columns()
            )));
        }
        for (c, column) in group.columns().iter().enumerate() {
            let start = column
                .dictionary_page_offset()
                .unwrap_or_else(|| column.data_page_offset());
            let inside = usize::try_from(start).ok().and_then(|start| {
                let length = usize::try_from(column.compressed_size()).ok()?;
                Some(start >= MAGIC.len() && start.checked_add(length)? <= data_end)
            });
            if inside != Some(true) {
                return Err(malformed(format!(
                    "row group {g}, column {c}: the chunk at byte {start} of {} bytes is not \
                     inside the file's data (bytes 4..{data_end})",
                    column.compressed_size()
                )));
            }
        }
    }
    Ok(())
}
