//! Parquet batches: typed columns with ZSTD page compression, written with the parquet
//! crate's low-level column writers (no Arrow in between).
//!
//! Rows are buffered column by column (values packed densely plus definition levels; the
//! bytes of all strings of a column share one buffer, so a row allocates nothing once the
//! buffers have grown) and written as a row group when the configured row count or byte
//! count (`row_group_bytes`, default 64 MiB of values) is reached, and at `finish`: a batch
//! below both is one row group.
//!
//! Column types (see docs/formats.md for the table with BigQuery's): `UInt64`/`Int64` →
//! INT64, `Float64` → DOUBLE, `Bool` → BOOLEAN, `String`/`IpAddr`/`MacAddr` → BYTE_ARRAY
//! (STRING), `Bytes` → BYTE_ARRAY (raw bytes, whatever the text encoding), `Timestamp` →
//! INT64 TIMESTAMP(MICROS, UTC). A decoder's `UInt64` column is always OPTIONAL: a value
//! above `i64::MAX` is written as null and counted ([`BatchEncoder::overflows`]); INT64 has
//! no room for it, and one odd counter must not cost the batch. Non-finite doubles are
//! kept (BigQuery's FLOAT64 holds NaN and ±inf).

use std::sync::Arc;

use bytes::Bytes;
use parquet::{
    basic::{Compression, LogicalType, Repetition, TimeUnit, Type as PhysicalType, ZstdLevel},
    column::writer::ColumnWriter,
    data_type::ByteArray,
    file::{properties::WriterProperties, writer::SerializedFileWriter},
    schema::types::{Type, TypePtr},
};
use sluice_decode::{Column, ColumnType, PacketContext, RecordSchema, RowSink, Value};

use crate::{
    BatchEncoder, FormatConfig, FormatError,
    columns::{OutputColumns, PROVENANCE_COLUMNS, provenance_values},
    error::variant_name,
    text::{push_ip, push_mac},
};

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

/// The values of one column since the last row group.
#[derive(Debug)]
enum Values {
    Bool(Vec<bool>),
    Int64(Vec<i64>),
    Double(Vec<f64>),
    /// All values' bytes back to back, and where each value ends.
    Binary {
        data: Vec<u8>,
        ends: Vec<usize>,
    },
}

#[derive(Debug)]
struct ColumnBuffer {
    name: String,
    ty: ColumnType,
    optional: bool,
    values: Values,
    /// Definition levels (1 present, 0 null); only kept for OPTIONAL columns.
    defs: Vec<i16>,
}

impl ColumnBuffer {
    /// Whether `value` fits this column (the check runs on the whole row before any of it
    /// is buffered, so a refused row leaves no partial trace).
    fn accepts(&self, value: &Value<'_>) -> bool {
        matches!(
            (self.ty, value),
            (_, Value::Null) if self.optional
        ) || matches!(
            (self.ty, value),
            (ColumnType::Bool, Value::Bool(_))
                | (ColumnType::UInt64, Value::U64(_))
                | (ColumnType::Int64, Value::I64(_))
                | (ColumnType::Float64, Value::F64(_))
                | (ColumnType::String, Value::Str(_))
                | (ColumnType::Bytes(_), Value::Bytes(_))
                | (ColumnType::IpAddr, Value::Ip(_))
                | (ColumnType::MacAddr, Value::Mac(_))
                | (ColumnType::Timestamp, Value::Timestamp(_))
        )
    }

    /// Buffers an accepted value; returns its approximate size and whether it was a
    /// `UInt64` overflow written as null.
    fn push(&mut self, value: &Value<'_>) -> (u64, bool) {
        let mut overflow = false;
        let present = match (&mut self.values, value) {
            (_, Value::Null) => false,
            (Values::Int64(_), Value::U64(n)) if i64::try_from(*n).is_err() => {
                overflow = true;
                false
            }
            (Values::Bool(v), Value::Bool(b)) => {
                v.push(*b);
                true
            }
            (Values::Int64(v), Value::U64(n)) => {
                v.push(i64::try_from(*n).unwrap_or(i64::MAX));
                true
            }
            (Values::Int64(v), Value::I64(n) | Value::Timestamp(n)) => {
                v.push(*n);
                true
            }
            (Values::Double(v), Value::F64(f)) => {
                v.push(*f);
                true
            }
            (Values::Binary { data, ends }, value) => {
                match value {
                    Value::Str(s) => data.extend_from_slice(s.as_bytes()),
                    Value::Bytes(b) => data.extend_from_slice(b),
                    Value::Ip(ip) => push_ip(data, *ip),
                    Value::Mac(mac) => push_mac(data, mac),
                    // `accepts` let nothing else through.
                    _ => {}
                }
                let start = ends.last().copied().unwrap_or(0);
                ends.push(data.len());
                if self.optional {
                    self.defs.push(1);
                }
                return ((data.len() - start) as u64 + 4, false);
            }
            _ => false,
        };
        if self.optional {
            self.defs.push(i16::from(present));
        }
        let size = match &self.values {
            Values::Bool(_) => 1,
            _ => 8,
        };
        (if present { size } else { 1 }, overflow)
    }

    /// Writes the buffered values into `writer` and empties the buffer.
    fn write(&mut self, writer: &mut ColumnWriter<'_>) -> Result<(), FormatError> {
        let defs = self.optional.then_some(self.defs.as_slice());
        match (&mut self.values, writer) {
            (Values::Bool(v), ColumnWriter::BoolColumnWriter(w)) => {
                w.write_batch(v, defs, None)?;
                v.clear();
            }
            (Values::Int64(v), ColumnWriter::Int64ColumnWriter(w)) => {
                w.write_batch(v, defs, None)?;
                v.clear();
            }
            (Values::Double(v), ColumnWriter::DoubleColumnWriter(w)) => {
                w.write_batch(v, defs, None)?;
                v.clear();
            }
            (Values::Binary { data, ends }, ColumnWriter::ByteArrayColumnWriter(w)) => {
                let shared = Bytes::from(std::mem::take(data));
                let mut start = 0;
                let arrays: Vec<ByteArray> = ends
                    .iter()
                    .map(|&end| {
                        let array = ByteArray::from(shared.slice(start..end));
                        start = end;
                        array
                    })
                    .collect();
                w.write_batch(&arrays, defs, None)?;
                ends.clear();
            }
            _ => {
                return Err(FormatError::Parquet {
                    source: parquet::errors::ParquetError::General(format!(
                        "column {:?}: the writer's physical type differs from the schema's",
                        self.name
                    )),
                });
            }
        }
        self.defs.clear();
        Ok(())
    }
}

/// A batch of rows being written as one Parquet file.
pub struct ParquetEncoder {
    writer: SerializedFileWriter<Vec<u8>>,
    columns: Vec<ColumnBuffer>,
    decoder_columns: usize,
    row_group_rows: u64,
    row_group_bytes: u64,
    buffered_rows: u64,
    buffered_bytes: u64,
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
    /// An empty batch for `schema`, with the level and row-group sizes of `config`.
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
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_created_by(created_by())
            .build();
        let writer =
            SerializedFileWriter::new(Vec::new(), build_schema(&columns)?, Arc::new(properties))?;
        let buffers = columns
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| ColumnBuffer {
                name: c.name.clone(),
                ty: c.ty,
                optional: is_optional(i, c),
                values: match c.ty {
                    ColumnType::Bool => Values::Bool(Vec::new()),
                    ColumnType::UInt64 | ColumnType::Int64 | ColumnType::Timestamp => {
                        Values::Int64(Vec::new())
                    }
                    ColumnType::Float64 => Values::Double(Vec::new()),
                    ColumnType::String
                    | ColumnType::Bytes(_)
                    | ColumnType::IpAddr
                    | ColumnType::MacAddr => Values::Binary {
                        data: Vec::new(),
                        ends: Vec::new(),
                    },
                },
                defs: Vec::new(),
            })
            .collect();
        Ok(Self {
            writer,
            columns: buffers,
            decoder_columns: columns.decoder_columns(),
            row_group_rows: config.row_group_rows.unwrap_or(u64::MAX),
            row_group_bytes: config.row_group_bytes(),
            buffered_rows: 0,
            buffered_bytes: 0,
            uncompressed: 0,
            records: 0,
            overflows: 0,
            error: None,
        })
    }

    fn write_row(&mut self, ctx: &PacketContext, values: &[Value<'_>]) -> Result<(), FormatError> {
        crate::columns::check_row_length(self.records, self.decoder_columns, values.len())?;
        let provenance = provenance_values(ctx);
        let row = || provenance.iter().chain(values);
        if let Some((column, value)) = self
            .columns
            .iter()
            .zip(row())
            .find(|(column, value)| !column.accepts(value))
        {
            return Err(FormatError::ValueType {
                row: self.records,
                column: column.name.clone(),
                expected: column.ty,
                found: variant_name(value),
            });
        }
        for (column, value) in self.columns.iter_mut().zip(row()) {
            let (size, overflow) = column.push(value);
            self.buffered_bytes += size;
            self.uncompressed += size;
            self.overflows += u64::from(overflow);
        }
        self.records += 1;
        self.buffered_rows += 1;
        if self.buffered_rows >= self.row_group_rows || self.buffered_bytes >= self.row_group_bytes
        {
            self.flush_row_group()?;
        }
        Ok(())
    }

    fn flush_row_group(&mut self) -> Result<(), FormatError> {
        if self.buffered_rows == 0 {
            return Ok(());
        }
        let mut row_group = self.writer.next_row_group()?;
        let mut buffers = self.columns.iter_mut();
        while let Some(mut column) = row_group.next_column()? {
            if let Some(buffer) = buffers.next() {
                buffer.write(column.untyped())?;
            }
            column.close()?;
        }
        row_group.close()?;
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        Ok(())
    }
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
    fn finish(mut self) -> Result<Vec<u8>, FormatError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.flush_row_group()?;
        Ok(self.writer.into_inner()?)
    }

    /// Approximate bytes of the values accepted (8 per number, the length of each string
    /// or byte string): Parquet's size before encoding and compression.
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
