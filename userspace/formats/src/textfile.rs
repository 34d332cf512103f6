//! NDJSON and CSV batches: one line per row, provenance columns first, then the decoder's
//! columns, through gzip or zstd.
//!
//! NDJSON lines are objects with the keys in column order (the layout of the daemon's
//! directory sink: `{"received_at":"...Z","tunnel_src":null,...}`); each `,"name":` key is
//! escaped once when the encoder is built. CSV files start with a header line of the
//! column names, in a gzip member of its own (see [`TextEncoder::csv_gzip`]); records end
//! in CRLF (RFC 4180), a null is an empty field, an empty string is `""`.
//!
//! An encoder writes one batch after another ([`BatchEncoder::finish_batch`]) on the
//! same compressor and row buffer; each file is the one a new encoder would write.

use sluice_decode::{ColumnType, PacketContext, RecordSchema, RowSink, Value};

use crate::{
    BatchEncoder, FormatError,
    columns::{OutputColumns, provenance_values},
    compress::Compressed,
    text::{LastAddress, push_json_string},
    textvalue::{Dialect, Written, push_csv_field, push_value},
    timestamp::TimestampFormatter,
};

/// A batch of NDJSON or CSV rows being compressed.
#[derive(Debug)]
pub struct TextEncoder {
    dialect: Dialect,
    /// NDJSON: `{"name":` for the first column, `,"name":` for the others. CSV: empty.
    keys: Vec<Vec<u8>>,
    types: Vec<ColumnType>,
    decoder_columns: usize,
    out: Compressed,
    timestamps: TimestampFormatter,
    /// Per column: the text of its last address.
    addresses: Vec<LastAddress>,
    records: u64,
    overflows: u64,
    error: Option<FormatError>,
}

impl TextEncoder {
    /// NDJSON, gzip at `level`.
    ///
    /// # Errors
    /// [`FormatError::DuplicateColumn`].
    pub fn ndjson_gzip(schema: &RecordSchema, level: i32) -> Result<Self, FormatError> {
        let columns = OutputColumns::new(schema)?;
        Ok(Self::new(Dialect::Json, &columns, Compressed::gzip(level)))
    }

    /// NDJSON, zstd at `level`.
    ///
    /// # Errors
    /// [`FormatError::DuplicateColumn`], or [`FormatError::Compression`] when zstd refuses
    /// the level.
    pub fn ndjson_zstd(schema: &RecordSchema, level: i32) -> Result<Self, FormatError> {
        let columns = OutputColumns::new(schema)?;
        Ok(Self::new(Dialect::Json, &columns, Compressed::zstd(level)?))
    }

    /// CSV with a header line, gzip at `level`. The header line is a gzip member of its
    /// own, the same bytes for the same columns (whatever the level), followed by the
    /// member holding the rows: one gzip file to readers of multi-member gzip, and
    /// batches of the same columns combine by dropping each later batch's header member
    /// ([`crate::combine::CombineKind::CsvGzip`]).
    ///
    /// # Errors
    /// [`FormatError::DuplicateColumn`], or [`FormatError::Compression`] (not expected:
    /// the header member is compressed into memory).
    pub fn csv_gzip(schema: &RecordSchema, level: i32) -> Result<Self, FormatError> {
        let columns = OutputColumns::new(schema)?;
        let mut header = Vec::new();
        for (i, c) in columns.columns().iter().enumerate() {
            if i > 0 {
                header.push(b',');
            }
            push_csv_field(&mut header, &c.name);
        }
        header.extend_from_slice(b"\r\n");
        let out = Compressed::gzip_after_member(&header, level)?;
        Ok(Self::new(Dialect::Csv, &columns, out))
    }

    fn new(dialect: Dialect, columns: &OutputColumns, out: Compressed) -> Self {
        let keys = match dialect {
            Dialect::Json => columns
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut key = if i == 0 { b"{".to_vec() } else { b",".to_vec() };
                    push_json_string(&mut key, &c.name);
                    key.push(b':');
                    key
                })
                .collect(),
            Dialect::Csv => Vec::new(),
        };
        Self {
            dialect,
            keys,
            types: columns.columns().iter().map(|c| c.ty).collect(),
            decoder_columns: columns.decoder_columns(),
            out,
            timestamps: TimestampFormatter::default(),
            addresses: vec![LastAddress::default(); columns.columns().len()],
            records: 0,
            overflows: 0,
            error: None,
        }
    }

    fn write_row(&mut self, ctx: &PacketContext, values: &[Value<'_>]) -> Result<(), FormatError> {
        crate::columns::check_row_length(self.records, self.decoder_columns, values.len())?;
        let provenance = provenance_values(ctx);
        let line = self.out.buffer();
        for (i, ((ty, address), value)) in self
            .types
            .iter()
            .zip(&mut self.addresses)
            .zip(provenance.iter().chain(values))
            .enumerate()
        {
            match self.dialect {
                Dialect::Json => line.extend_from_slice(&self.keys[i]),
                Dialect::Csv if i > 0 => line.push(b','),
                Dialect::Csv => {}
            }
            let written = push_value(
                line,
                self.dialect,
                *ty,
                value,
                &mut self.timestamps,
                address,
            );
            if written == Written::Overflow {
                self.overflows += 1;
            }
        }
        line.extend_from_slice(match self.dialect {
            Dialect::Json => b"}\n",
            Dialect::Csv => b"\r\n",
        });
        self.records += 1;
        self.out.commit()
    }
}

impl RowSink for TextEncoder {
    fn row(&mut self, ctx: &PacketContext, values: &[Value<'_>]) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.write_row(ctx, values) {
            self.error = Some(e);
        }
    }
}

impl BatchEncoder for TextEncoder {
    fn finish_batch(&mut self) -> Result<Vec<u8>, FormatError> {
        self.records = 0;
        self.overflows = 0;
        let file = match self.error.take() {
            Some(e) => Err(e),
            None => self.out.finish_file(),
        };
        if file.is_err() {
            self.out.discard_file();
        }
        file
    }

    fn uncompressed_len(&self) -> u64 {
        self.out.uncompressed_len()
    }

    fn records(&self) -> u64 {
        self.records
    }

    fn overflows(&self) -> u64 {
        self.overflows
    }
}
