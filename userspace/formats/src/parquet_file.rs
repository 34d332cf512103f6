//! Parquet batches: typed columns with ZSTD page compression, written with the parquet
//! crate's low-level column writers (no Arrow in between).
//!
//! Rows are buffered column by column (values packed densely plus definition levels; the
//! bytes of all strings of a column share one buffer, see `parquet_file/column.rs`) and
//! written as a row group when the configured row count or byte count (`row_group_bytes`,
//! default 64 MiB of values) is reached, and at the end of the batch: a batch below both is
//! one row group. The provenance columns are buffered straight from the packet's context.
//!
//! An encoder writes batch after batch ([`BatchEncoder::finish_batch`]): schema, writer
//! properties and column buffers are kept, so that once the buffers have grown a row
//! allocates nothing and a batch allocates little beyond what the parquet crate's writers
//! do. A buffer holding more than twice what recent batches needed is cut down (see
//! docs/formats.md, "Encoders are kept from batch to batch").
//!
//! Column types (see docs/formats.md for the table with BigQuery's): `UInt64`/`Int64` →
//! INT64, `Float64` → DOUBLE, `Bool` → BOOLEAN, `String`/`IpAddr`/`MacAddr` → BYTE_ARRAY
//! (STRING), `Bytes` → BYTE_ARRAY (raw bytes, whatever the text encoding), `Timestamp` →
//! INT64 TIMESTAMP(MICROS, UTC). A decoder's `UInt64` column is always OPTIONAL: a value
//! above `i64::MAX` is written as null and counted ([`BatchEncoder::overflows`]); INT64 has
//! no room for it, and one odd counter must not cost the batch. Non-finite doubles are
//! kept (BigQuery's FLOAT64 holds NaN and ±inf).
//!
//! `Bytes` columns (opaque payloads, mostly unique) are written without a dictionary and
//! without statistics: min/max of payloads prune no query, and both cost CPU per value and
//! footer bytes. Every other column has the parquet crate's defaults (dictionary while it
//! stays under 1 MiB, page and chunk statistics, column index).

mod column;

use std::sync::Arc;

use parquet::{
    basic::{Compression, LogicalType, Repetition, TimeUnit, Type as PhysicalType, ZstdLevel},
    file::{
        properties::{EnabledStatistics, WriterProperties, WriterPropertiesPtr},
        writer::SerializedFileWriter,
    },
    schema::types::{ColumnPath, Type, TypePtr},
};
use sluice_decode::{Column, ColumnType, PROVENANCE, PacketContext, RecordSchema, RowSink, Value};

use crate::{
    BatchEncoder, FormatConfig, FormatError,
    columns::{OutputColumns, PROVENANCE_COLUMNS},
    error::variant_name,
};
use column::{ColumnBuffer, Peak};

/// The `created_by` of the files this crate writes: `sluice <version>`.
pub(crate) fn created_by() -> String {
    format!("sluice {}", env!("CARGO_PKG_VERSION"))
}

/// Whether the Parquet column of output column `index` may hold nulls.
pub fn is_optional(index: usize, column: &Column) -> bool {
    column.nullable || (index >= PROVENANCE_COLUMNS && column.ty == ColumnType::UInt64)
}

/// The Parquet schema of a stream's files.
///
/// # Errors
/// [`FormatError::DuplicateColumn`], or [`FormatError::Parquet`] (not expected: every
/// column type has a valid Parquet type).
pub fn parquet_schema(schema: &RecordSchema) -> Result<TypePtr, FormatError> {
    let columns = OutputColumns::new(schema)?;
    build_schema(&columns)
}

fn build_schema(columns: &OutputColumns) -> Result<TypePtr, FormatError> {
    let fields = columns
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (physical, logical) = match c.ty {
                ColumnType::Bool => (PhysicalType::BOOLEAN, None),
                ColumnType::UInt64 | ColumnType::Int64 => (PhysicalType::INT64, None),
                ColumnType::Float64 => (PhysicalType::DOUBLE, None),
                ColumnType::String | ColumnType::IpAddr | ColumnType::MacAddr => {
                    (PhysicalType::BYTE_ARRAY, Some(LogicalType::String))
                }
                ColumnType::Bytes(_) => (PhysicalType::BYTE_ARRAY, None),
                ColumnType::Timestamp => (
                    PhysicalType::INT64,
                    Some(LogicalType::timestamp(true, TimeUnit::MICROS)),
                ),
            };
            let repetition = if is_optional(i, c) {
                Repetition::OPTIONAL
            } else {
                Repetition::REQUIRED
            };
            Type::primitive_type_builder(&c.name, physical)
                .with_repetition(repetition)
                .with_logical_type(logical)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(
        Type::group_type_builder("sluice_record")
            .with_fields(fields)
            .build()?,
    ))
}

/// The writer properties of a stream's files: ZSTD at `level`, and no dictionary and no
/// statistics for `Bytes` columns.
fn writer_properties(columns: &OutputColumns, level: ZstdLevel) -> WriterProperties {
    columns
        .columns()
        .iter()
        .filter(|c| matches!(c.ty, ColumnType::Bytes(_)))
        .fold(
            WriterProperties::builder()
                .set_compression(Compression::ZSTD(level))
                .set_created_by(created_by()),
            |builder, c| {
                let path = ColumnPath::new(vec![c.name.clone()]);
                builder
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_statistics_enabled(path, EnabledStatistics::None)
            },
        )
        .build()
}

/// Batches of rows, each written as one Parquet file.
pub struct ParquetEncoder {
    schema: TypePtr,
    properties: WriterPropertiesPtr,
    /// The open batch's file, from its first row group (or its end) on.
    writer: Option<SerializedFileWriter<Vec<u8>>>,
    /// The provenance columns, in [`PROVENANCE`] order (boxed: they are most of the
    /// encoder's size).
    provenance: Box<[ColumnBuffer; PROVENANCE_COLUMNS]>,
    /// The decoder's columns, in schema order.
    decoder: Vec<ColumnBuffer>,
    row_group_rows: u64,
    row_group_bytes: u64,
    buffered_rows: u64,
    buffered_bytes: u64,
    /// Peak rows of a row group in recent batches: the need of every row-sized buffer.
    rows_peak: Peak,
    /// Length of the last file: the next file buffer's capacity (plus an eighth).
    last_file_len: usize,
    uncompressed: u64,
    records: u64,
    overflows: u64,
    error: Option<FormatError>,
}

impl std::fmt::Debug for ParquetEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetEncoder")
            .field("records", &self.records)
            .field("buffered_rows", &self.buffered_rows)
            .field("buffered_bytes", &self.buffered_bytes)
            .finish_non_exhaustive()
    }
}

impl ParquetEncoder {
    /// An encoder of `schema`'s rows, with the level and row-group sizes of `config`.
    ///
    /// # Errors
    /// [`FormatError::DuplicateColumn`], [`FormatError::Config`] for a ZSTD level the
    /// codec refuses, [`FormatError::Parquet`].
    pub fn new(schema: &RecordSchema, config: &FormatConfig) -> Result<Self, FormatError> {
        let columns = OutputColumns::new(schema)?;
        let level = ZstdLevel::try_new(config.level()).map_err(|e| FormatError::Config {
            field: "compression_level",
            reason: e.to_string(),
        })?;
        let properties = Arc::new(writer_properties(&columns, level));
        let schema = build_schema(&columns)?;
        // The first batch's file, opened here so that the writer's checks run at start.
        let writer = SerializedFileWriter::new(Vec::new(), schema.clone(), properties.clone())?;
        let provenance = Box::new(std::array::from_fn(|i| {
            let (name, ty, nullable) = PROVENANCE[i];
            ColumnBuffer::new(name.to_owned(), ty, nullable)
        }));
        let decoder = columns.columns()[PROVENANCE_COLUMNS..]
            .iter()
            .enumerate()
            .map(|(i, c)| {
                ColumnBuffer::new(c.name.clone(), c.ty, is_optional(PROVENANCE_COLUMNS + i, c))
            })
            .collect();
        Ok(Self {
            schema,
            properties,
            writer: Some(writer),
            provenance,
            decoder,
            row_group_rows: config.row_group_rows.unwrap_or(u64::MAX),
            row_group_bytes: config.row_group_bytes(),
            buffered_rows: 0,
            buffered_bytes: 0,
            rows_peak: Peak::default(),
            last_file_len: 0,
            uncompressed: 0,
            records: 0,
            overflows: 0,
            error: None,
        })
    }

    fn write_row(&mut self, ctx: &PacketContext, values: &[Value<'_>]) -> Result<(), FormatError> {
        crate::columns::check_row_length(self.records, self.decoder.len(), values.len())?;
        if let Some((column, value)) = self
            .decoder
            .iter()
            .zip(values)
            .find(|(column, value)| !column.accepts(value))
        {
            return Err(FormatError::ValueType {
                row: self.records,
                column: column.name.clone(),
                expected: column.ty,
                found: variant_name(value),
            });
        }
        let mut size = self.push_provenance(ctx)?;
        for (column, value) in self.decoder.iter_mut().zip(values) {
            let (value_size, overflow) = column.push(value);
            size += value_size;
            self.overflows += u64::from(overflow);
        }
        self.buffered_bytes += size;
        self.uncompressed += size;
        self.records += 1;
        self.buffered_rows += 1;
        if self.buffered_rows >= self.row_group_rows || self.buffered_bytes >= self.row_group_bytes
        {
            self.flush_row_group()?;
        }
        Ok(())
    }

    /// Buffers the packet's provenance columns; returns their size (as
    /// [`ColumnBuffer::push`] counts it).
    fn push_provenance(&mut self, ctx: &PacketContext) -> Result<u64, FormatError> {
        let [
            received_at,
            tunnel_src,
            tunnel_dst,
            gre_key,
            src_ip,
            src_port,
            dst_ip,
            dst_port,
        ] = &mut *self.provenance;
        // Each push checks its column's type: `None` means `PROVENANCE` changed without
        // this list (a test pins it), which must not write a misaligned row.
        [
            received_at.push_int(Some(ctx.received_at)),
            tunnel_src.push_ip(ctx.tunnel_src),
            tunnel_dst.push_ip(ctx.tunnel_dst),
            gre_key.push_int(ctx.gre_key.map(i64::from)),
            src_ip.push_ip(Some(ctx.src_ip)),
            src_port.push_int(Some(i64::from(ctx.src_port))),
            dst_ip.push_ip(Some(ctx.dst_ip)),
            dst_port.push_int(Some(i64::from(ctx.dst_port))),
        ]
        .into_iter()
        .sum::<Option<u64>>()
        .ok_or_else(|| FormatError::Parquet {
            source: parquet::errors::ParquetError::General(
                "the provenance columns differ from the ones the encoder writes".to_owned(),
            ),
        })
    }

    fn flush_row_group(&mut self) -> Result<(), FormatError> {
        if self.buffered_rows == 0 {
            return Ok(());
        }
        self.rows_peak
            .note(usize::try_from(self.buffered_rows).unwrap_or(usize::MAX));
        let batch_size = self.properties.write_batch_size();
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => self.writer.insert(SerializedFileWriter::new(
                file_buffer(self.last_file_len),
                self.schema.clone(),
                self.properties.clone(),
            )?),
        };
        let mut row_group = writer.next_row_group()?;
        let mut buffers = self.provenance.iter_mut().chain(&mut self.decoder);
        while let Some(mut column) = row_group.next_column()? {
            if let Some(buffer) = buffers.next() {
                buffer.write(column.untyped(), batch_size)?;
            }
            column.close()?;
        }
        row_group.close()?;
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        Ok(())
    }

    /// The open batch's complete file.
    fn complete_file(&mut self) -> Result<Vec<u8>, FormatError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.flush_row_group()?;
        let writer = match self.writer.take() {
            Some(writer) => writer,
            None => SerializedFileWriter::new(
                file_buffer(self.last_file_len),
                self.schema.clone(),
                self.properties.clone(),
            )?,
        };
        let file = writer.into_inner()?;
        self.last_file_len = file.len();
        Ok(file)
    }

    /// Empties the encoder for the next batch, whatever became of this one.
    fn start_batch(&mut self) {
        // Dropped first: an abandoned writer holds slices of the column buffers.
        self.writer = None;
        self.rows_peak
            .note(usize::try_from(self.buffered_rows).unwrap_or(usize::MAX));
        let recent_rows = self.rows_peak.end_batch();
        for column in self.provenance.iter_mut().chain(&mut self.decoder) {
            column.start_batch(recent_rows);
        }
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        self.uncompressed = 0;
        self.records = 0;
        self.overflows = 0;
        self.error = None;
    }
}

/// An empty file buffer with room for the last file's length and an eighth.
fn file_buffer(last_file_len: usize) -> Vec<u8> {
    Vec::with_capacity(last_file_len + last_file_len / 8)
}

impl RowSink for ParquetEncoder {
    fn row(&mut self, ctx: &PacketContext, values: &[Value<'_>]) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.write_row(ctx, values) {
            self.error = Some(e);
        }
    }
}

impl BatchEncoder for ParquetEncoder {
    fn finish_batch(&mut self) -> Result<Vec<u8>, FormatError> {
        let file = self.complete_file();
        self.start_batch();
        file
    }

    /// Approximate bytes of the values accepted (8 per number, the length of each string
    /// or byte string plus 4, 1 per boolean or null): Parquet's size before encoding and
    /// compression.
    fn uncompressed_len(&self) -> u64 {
        self.uncompressed
    }

    fn records(&self) -> u64 {
        self.records
    }

    fn overflows(&self) -> u64 {
        self.overflows
    }
}

#[cfg(test)]
mod tests {
    use std::{
        borrow::Cow,
        net::{IpAddr, Ipv4Addr},
    };

    use sluice_decode::{DecoderFactory as _, raw::RawFactory};

    use super::*;

    fn packet(n: u64) -> PacketContext {
        PacketContext {
            received_at: n as i64,
            tunnel_src: None,
            tunnel_dst: None,
            gre_key: None,
            src_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
            src_port: 1,
            dst_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2)),
            dst_port: 2,
        }
    }

    /// Writes a batch of `rows` payloads of `len` bytes; returns the payload column's
    /// buffer capacity after the batch.
    fn batch(encoder: &mut ParquetEncoder, rows: u64, len: usize) -> Option<usize> {
        for n in 0..rows {
            let payload = vec![n as u8; len];
            encoder.row(
                &packet(n),
                &[Value::U64(len as u64), Value::Bytes(Cow::Owned(payload))],
            );
        }
        encoder.finish_batch().expect("finish");
        encoder.decoder[1].data_capacity()
    }

    #[test]
    fn byte_buffers_are_taken_back_after_each_file_and_cut_down_after_a_peak() {
        let config = FormatConfig::new(crate::Format::Parquet);
        let mut encoder =
            ParquetEncoder::new(RawFactory::default().schema(), &config).expect("encoder");
        // 2000 payloads of 300 bytes: the buffer comes back with room for them all.
        let grown = batch(&mut encoder, 2000, 300).expect("a bytes column");
        assert!(grown >= 600_000, "{grown}");
        // Same-sized batches reuse it as it is.
        for _ in 0..10 {
            assert_eq!(batch(&mut encoder, 2000, 300), Some(grown));
        }
        // Batches a tenth the size: the peak fades by an eighth a batch, and the buffer is
        // cut to the recent peak once it holds more than twice it (after the sixth).
        let sizes: Vec<usize> = (0..8)
            .filter_map(|_| batch(&mut encoder, 200, 300))
            .collect();
        // 600 000 less an eighth six times: 269 279 bytes.
        assert_eq!(sizes[..5], [grown; 5]);
        assert_eq!(sizes[5..], [269_279; 3]);
        // The provenance address columns are the same text every row: one value's worth
        // (an IPv4 address is written with room for the longest, 15 bytes).
        assert_eq!(
            encoder.provenance[4].data_capacity(),
            Some("255.255.255.255".len())
        );
    }
}
