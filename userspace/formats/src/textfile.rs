//! NDJSON and CSV batches: one line per row, provenance columns first, then the decoder's
//! columns, through gzip or zstd.
//!
//! NDJSON lines are objects with the keys in column order (the layout of the daemon's
//! directory sink: `{"received_at":"...Z","tunnel_src":null,...}`); each `,"name":` key is
//! escaped once when the encoder is built. CSV files start with a header line of the
//! column names, in a gzip member of its own (see [`TextEncoder::csv_gzip`]); records end
//! in CRLF (RFC 4180), a null is an empty field, an empty string is `""`.
//!
//! Rows are written with as few calls per value as the formats allow: the provenance
//! columns after `received_at` are copied as text while they repeat (in three groups: the
//! tunnel's, the sender's, the stream's), and keys and short values are appended in
//! fixed-size copies (`TextOut::push_prefix`), through a [`Line`] that keeps the row's end
//! out of the vector's length field until the row is whole.
//!
//! An encoder writes one batch after another ([`BatchEncoder::finish_batch`]) on the
//! same compressor and row buffer; each file is the one a new encoder would write.

use sluice_decode::{ColumnType, PacketContext, RecordSchema, RowSink, Value};

use crate::{
    BatchEncoder, FormatError,
    columns::{OutputColumns, PROVENANCE_COLUMNS, provenance_values},
    compress::Compressed,
    text::{LastAddress, push_json_string},
    textout::{Line, TextOut},
    textvalue::{Dialect, Written, push_csv_field, push_value},
    timestamp::TimestampFormatter,
};

/// Longest key text copied in one 16-byte copy (`,"received_at":` and shorter).
const SMALL_KEY: usize = 16;
/// Longest key text copied in one fixed-size copy (see [`KeyText`]).
const SHORT_KEY: usize = 48;

/// What goes before a column's value: NDJSON `{"name":` for the first column and
/// `,"name":` for the others, CSV `,` for all but the first. Kept in a fixed-size array
/// when it fits, which is copied without a call into `memcpy`: most keys in one 16-byte
/// store (the 48-byte copy of every key was a third of a row's stores).
#[derive(Clone, Debug)]
enum KeyText {
    Small([u8; SMALL_KEY], usize),
    Short([u8; SHORT_KEY], usize),
    Long(Vec<u8>),
}

impl KeyText {
    fn new(text: &[u8]) -> Self {
        let mut small = [0u8; SMALL_KEY];
        let mut short = [0u8; SHORT_KEY];
        if let Some(head) = small.get_mut(..text.len()) {
            head.copy_from_slice(text);
            Self::Small(small, text.len())
        } else if let Some(head) = short.get_mut(..text.len()) {
            head.copy_from_slice(text);
            Self::Short(short, text.len())
        } else {
            Self::Long(text.to_vec())
        }
    }

    #[inline(always)]
    fn push<O: TextOut>(&self, out: &mut O) {
        match self {
            Self::Small(text, len) => out.push_prefix(text, *len),
            Self::Short(text, len) => out.push_prefix(text, *len),
            Self::Long(text) => out.extend_from_slice(text),
        }
    }
}

/// A group of provenance columns whose values rarely change from row to row: a packet's
/// rows share them all, the packets of one tunnel its columns (`tunnel_src`,
/// `tunnel_dst`, `gre_key`), and those of one stream theirs (`dst_ip`, `dst_port`), even
/// while devices take turns as senders (`src_ip`, `src_port`). A group is kept as the row
/// text it makes, separators included, formatted when its values change and copied
/// otherwise.
#[derive(Debug)]
struct CachedColumns<K> {
    /// The output columns the text is of.
    columns: std::ops::Range<usize>,
    /// The values the text is of.
    of: Option<K>,
    text: Vec<u8>,
    /// `UInt64` values written as null in `text` (none: ports and GRE keys fit).
    overflows: u64,
}

/// The tunnel's columns.
const TUNNEL_COLUMNS: std::ops::Range<usize> = 1..4;
/// The sender's columns.
const SENDER_COLUMNS: std::ops::Range<usize> = 4..6;
/// The stream's columns.
const STREAM_COLUMNS: std::ops::Range<usize> = 6..PROVENANCE_COLUMNS;

type TunnelKey = (
    Option<std::net::IpAddr>,
    Option<std::net::IpAddr>,
    Option<u32>,
);
type AddressPortKey = (std::net::IpAddr, u16);

/// The provenance columns after `received_at`, in their three groups.
#[derive(Debug)]
struct ProvenanceText {
    tunnel: CachedColumns<TunnelKey>,
    sender: CachedColumns<AddressPortKey>,
    stream: CachedColumns<AddressPortKey>,
}

impl<K: PartialEq> CachedColumns<K> {
    fn new(columns: std::ops::Range<usize>) -> Self {
        Self {
            columns,
            of: None,
            text: Vec::new(),
            overflows: 0,
        }
    }

    /// Makes the text that of `values` (the provenance values; `of` identifies them)
    /// unless it is already.
    fn update(&mut self, of: K, values: &[Value<'_>], columns: &mut ColumnWriter<'_>) {
        if self.of.as_ref() == Some(&of) {
            return;
        }
        self.text.clear();
        let range = self.columns.clone();
        let values = values.get(range.clone()).unwrap_or_default();
        self.overflows = columns.write(&mut self.text, range, values);
        self.of = Some(of);
    }
}

/// What writing a column's key and value needs, borrowed from the encoder.
struct ColumnWriter<'a> {
    dialect: Dialect,
    keys: &'a [KeyText],
    types: &'a [ColumnType],
    addresses: &'a mut [LastAddress],
    timestamps: &'a mut TimestampFormatter,
}

impl ColumnWriter<'_> {
    /// Appends output columns `columns` (key and value) with `values`, one per column;
    /// returns how many `UInt64` values were written as null.
    #[inline(always)]
    fn write<O: TextOut>(
        &mut self,
        out: &mut O,
        columns: std::ops::Range<usize>,
        values: &[Value<'_>],
    ) -> u64 {
        let mut overflows = 0;
        let (keys, types, addresses) = (
            self.keys.get(columns.clone()).unwrap_or_default(),
            self.types.get(columns.clone()).unwrap_or_default(),
            self.addresses.get_mut(columns).unwrap_or_default(),
        );
        for (((key, ty), address), value) in keys.iter().zip(types).zip(addresses).zip(values) {
            key.push(out);
            let written = push_value(out, self.dialect, *ty, value, self.timestamps, address);
            if written == Written::Overflow {
                overflows += 1;
            }
        }
        overflows
    }
}

/// A batch of NDJSON or CSV rows being compressed.
#[derive(Debug)]
pub struct TextEncoder {
    dialect: Dialect,
    /// What goes before each column's value.
    keys: Vec<KeyText>,
    /// The provenance columns after `received_at`, as text (boxed: one allocation per
    /// encoder keeps the encoder small).
    provenance: Box<ProvenanceText>,
    types: Vec<ColumnType>,
    decoder_columns: usize,
    out: Compressed,
    /// Boxed, as `provenance`: its caches would double the encoder's size.
    timestamps: Box<TimestampFormatter>,
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
        let keys = columns
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut key = Vec::new();
                if i > 0 {
                    key.push(b',');
                }
                if dialect == Dialect::Json {
                    if i == 0 {
                        key.push(b'{');
                    }
                    push_json_string(&mut key, &c.name);
                    key.push(b':');
                }
                KeyText::new(&key)
            })
            .collect();
        Self {
            dialect,
            keys,
            provenance: Box::new(ProvenanceText {
                tunnel: CachedColumns::new(TUNNEL_COLUMNS),
                sender: CachedColumns::new(SENDER_COLUMNS),
                stream: CachedColumns::new(STREAM_COLUMNS),
            }),
            types: columns.columns().iter().map(|c| c.ty).collect(),
            decoder_columns: columns.decoder_columns(),
            out,
            timestamps: Box::default(),
            addresses: vec![LastAddress::default(); columns.columns().len()],
            records: 0,
            overflows: 0,
            error: None,
        }
    }

    fn write_row(&mut self, ctx: &PacketContext, values: &[Value<'_>]) -> Result<(), FormatError> {
        crate::columns::check_row_length(self.records, self.decoder_columns, values.len())?;
        let provenance = provenance_values(ctx);
        let Self {
            dialect,
            keys,
            types,
            addresses,
            timestamps,
            provenance: text,
            out,
            ..
        } = self;
        let mut columns = ColumnWriter {
            dialect: *dialect,
            keys,
            types,
            addresses,
            timestamps,
        };
        let ProvenanceText {
            tunnel,
            sender,
            stream,
        } = &mut **text;
        tunnel.update(
            (ctx.tunnel_src, ctx.tunnel_dst, ctx.gre_key),
            &provenance,
            &mut columns,
        );
        sender.update((ctx.src_ip, ctx.src_port), &provenance, &mut columns);
        stream.update((ctx.dst_ip, ctx.dst_port), &provenance, &mut columns);
        // The row is appended through a `Line`: its end kept out of the vector's length
        // field until the row is whole (see `textout`).
        let mut line = Line::new(out.buffer());
        let mut overflows = columns.write(&mut line, 0..1, &provenance[..1]);
        for group in [&tunnel.text, &sender.text, &stream.text] {
            line.extend_from_slice(group);
        }
        overflows += tunnel.overflows + sender.overflows + stream.overflows;
        overflows += columns.write(
            &mut line,
            PROVENANCE_COLUMNS..PROVENANCE_COLUMNS + values.len(),
            values,
        );
        line.extend_from_slice(match dialect {
            Dialect::Json => b"}\n",
            Dialect::Csv => b"\r\n",
        });
        line.finish();
        self.overflows += overflows;
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
