//! The values of one Parquet column between row groups, and how they reach the parquet
//! crate's column writer.
//!
//! Numbers are packed in a `Vec` of their physical type. The bytes of all values of a
//! BYTE_ARRAY column share one buffer: the writer is given `ByteArray` handles that are
//! slices of it (the crate keeps some of them, for statistics and dictionaries, until the
//! file's footer is written), and the buffer is taken back once the file is complete and
//! no handle is left ([`ColumnBuffer::start_batch`]), so a column does not reallocate and
//! copy its values as it grows batch after batch. In address columns (`IpAddr`, `MacAddr`)
//! a value equal to the one before is not formatted again: it is recorded as an empty span,
//! which an address text never is, and handed to the writer as the earlier value's slice.
//!
//! Buffers are kept from batch to batch and cut down when they hold far more than recent
//! batches needed ([`Peak`], [`trim`]).

use std::net::IpAddr;

use bytes::Bytes;
use parquet::{
    column::writer::{ColumnWriter, ColumnWriterImpl},
    data_type::{ByteArray, ByteArrayType},
};
use sluice_decode::{ColumnType, Value};

use crate::{
    FormatError,
    text::{push_ip, push_mac},
};

/// A buffer is not cut down below this many bytes of capacity.
const TRIM_FLOOR_BYTES: usize = 64 * 1024;

/// The largest length a reused buffer reached in recent batches: this batch's, or the
/// previous peak less an eighth per batch (a one-off large batch stops counting after a
/// few batches: after 6 it counts for less than half).
#[derive(Debug, Default)]
pub(super) struct Peak {
    batch: usize,
    recent: usize,
}

impl Peak {
    /// The buffer held `len` elements in this batch.
    pub(super) fn note(&mut self, len: usize) {
        self.batch = self.batch.max(len);
    }

    /// Ends a batch; returns the recent peak.
    pub(super) fn end_batch(&mut self) -> usize {
        self.recent = self.batch.max(self.recent - self.recent / 8);
        self.batch = 0;
        self.recent
    }
}

/// Empties `buffer`; when its capacity is more than twice the `recent` peak and above
/// [`TRIM_FLOOR_BYTES`], replaces it by one of `recent` elements (nothing is copied: it is
/// empty).
pub(super) fn trim<T>(buffer: &mut Vec<T>, recent: usize) {
    buffer.clear();
    if buffer.capacity() > recent.saturating_mul(2)
        && buffer.capacity().saturating_mul(size_of::<T>()) > TRIM_FLOOR_BYTES
    {
        *buffer = Vec::with_capacity(recent);
    }
}

/// An address value, as the last one of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Address {
    Ip(IpAddr),
    Mac([u8; 6]),
}

/// The values of a column since the last row group.
#[derive(Debug)]
enum Values {
    Bool(Vec<bool>),
    Int64(Vec<i64>),
    Double(Vec<f64>),
    Binary(Binary),
}

/// The values of a BYTE_ARRAY column.
#[derive(Debug, Default)]
struct Binary {
    /// All values' bytes back to back.
    data: Vec<u8>,
    /// Where each value ends. In an address column an end equal to the previous one is
    /// the previous value again.
    ends: Vec<usize>,
    /// `IpAddr`/`MacAddr` columns: repeated values are recorded as empty spans.
    addresses: bool,
    /// The last address buffered since the last row group, and its text's length.
    last: Option<(Address, usize)>,
    /// Buffers given to the writer for the file being written (one per row group), taken
    /// back when the file is complete.
    lent: Vec<Bytes>,
    /// Handles for one `write_batch` call.
    arrays: Vec<ByteArray>,
    /// Peak length of `data`.
    data_peak: Peak,
}

impl Binary {
    /// Appends an address (or its repeat); returns the text's length.
    fn push_address(&mut self, address: Address) -> usize {
        if let Some((last, len)) = self.last
            && last == address
        {
            self.ends.push(self.data.len());
            return len;
        }
        let start = self.data.len();
        match address {
            Address::Ip(ip) => push_ip(&mut self.data, ip),
            Address::Mac(mac) => push_mac(&mut self.data, &mac),
        }
        let len = self.data.len() - start;
        self.ends.push(self.data.len());
        self.last = Some((address, len));
        len
    }

    /// Appends the bytes of a string or byte string; returns their length.
    fn push_bytes(&mut self, bytes: &[u8]) -> usize {
        self.data.extend_from_slice(bytes);
        self.ends.push(self.data.len());
        bytes.len()
    }

    /// Writes the values (`defs`: the column's definition levels, if OPTIONAL) in calls of
    /// `batch_size` levels, and lends the buffer to the writer until the file is complete.
    fn write(
        &mut self,
        writer: &mut ColumnWriterImpl<'_, ByteArrayType>,
        defs: Option<&[i16]>,
        batch_size: usize,
    ) -> Result<(), FormatError> {
        self.data_peak.note(self.data.len());
        self.last = None;
        let shared = Bytes::from(std::mem::take(&mut self.data));
        self.lent.push(shared.clone());
        let levels = defs.map_or(self.ends.len(), <[i16]>::len);
        let mut written = 0;
        let mut start = 0;
        let mut previous = 0..0;
        let mut level = 0;
        while level < levels {
            let chunk = batch_size.min(levels - level);
            let chunk_defs = defs.map(|d| &d[level..level + chunk]);
            let present = chunk_defs.map_or(chunk, |d| d.iter().filter(|&&l| l == 1).count());
            self.arrays.clear();
            for &end in &self.ends[written..written + present] {
                if end == start && self.addresses {
                    self.arrays
                        .push(ByteArray::from(shared.slice(previous.clone())));
                } else {
                    previous = start..end;
                    self.arrays.push(ByteArray::from(shared.slice(start..end)));
                    start = end;
                }
            }
            writer.write_batch(&self.arrays, chunk_defs, None)?;
            written += present;
            level += chunk;
        }
        self.arrays.clear();
        self.ends.clear();
        Ok(())
    }

    /// Takes back the largest lent buffer no handle refers to any more (all of them once
    /// the file is written and the writer dropped) and empties the column.
    fn start_batch(&mut self, recent_rows: usize) {
        self.data_peak.note(self.data.len());
        for lent in self.lent.drain(..) {
            if let Ok(mut buffer) = lent.try_into_mut()
                && buffer.capacity() > self.data.capacity()
            {
                // Emptied first: the conversion moves the contents to the buffer's start.
                buffer.clear();
                self.data = Vec::from(buffer);
            }
        }
        trim(&mut self.data, self.data_peak.end_batch());
        trim(&mut self.ends, recent_rows);
        self.last = None;
    }
}

/// One column's values since the last row group.
#[derive(Debug)]
pub(super) struct ColumnBuffer {
    pub(super) name: String,
    pub(super) ty: ColumnType,
    optional: bool,
    values: Values,
    /// Definition levels (1 present, 0 null); only kept for OPTIONAL columns.
    defs: Vec<i16>,
}

impl ColumnBuffer {
    /// An empty column of type `ty`.
    pub(super) fn new(name: String, ty: ColumnType, optional: bool) -> Self {
        let values = match ty {
            ColumnType::Bool => Values::Bool(Vec::new()),
            ColumnType::UInt64 | ColumnType::Int64 | ColumnType::Timestamp => {
                Values::Int64(Vec::new())
            }
            ColumnType::Float64 => Values::Double(Vec::new()),
            ColumnType::String | ColumnType::Bytes(_) => Values::Binary(Binary::default()),
            ColumnType::IpAddr | ColumnType::MacAddr => Values::Binary(Binary {
                addresses: true,
                ..Binary::default()
            }),
        };
        Self {
            name,
            ty,
            optional,
            values,
            defs: Vec::new(),
        }
    }

    /// Whether `value` fits this column (the check runs on the whole row before any of it
    /// is buffered, so a refused row leaves no partial trace).
    pub(super) fn accepts(&self, value: &Value<'_>) -> bool {
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

    fn define(&mut self, present: bool) {
        if self.optional {
            self.defs.push(i16::from(present));
        }
    }

    /// Buffers an accepted value; returns its approximate size (8 a number, 1 a boolean
    /// or null, the length plus 4 a byte string) and whether it was a `UInt64` overflow
    /// written as null.
    pub(super) fn push(&mut self, value: &Value<'_>) -> (u64, bool) {
        let binary = |len: usize| len as u64 + 4;
        let (present, size, overflow) = match (&mut self.values, value) {
            (_, Value::Null) => (false, 1, false),
            (Values::Int64(_), Value::U64(n)) if i64::try_from(*n).is_err() => (false, 1, true),
            (Values::Bool(v), Value::Bool(b)) => {
                v.push(*b);
                (true, 1, false)
            }
            (Values::Int64(v), Value::U64(n)) => {
                v.push(i64::try_from(*n).unwrap_or(i64::MAX));
                (true, 8, false)
            }
            (Values::Int64(v), Value::I64(n) | Value::Timestamp(n)) => {
                v.push(*n);
                (true, 8, false)
            }
            (Values::Double(v), Value::F64(f)) => {
                v.push(*f);
                (true, 8, false)
            }
            (Values::Binary(b), Value::Str(s)) => (true, binary(b.push_bytes(s.as_bytes())), false),
            (Values::Binary(b), Value::Bytes(bytes)) => (true, binary(b.push_bytes(bytes)), false),
            (Values::Binary(b), Value::Ip(ip)) => {
                (true, binary(b.push_address(Address::Ip(*ip))), false)
            }
            (Values::Binary(b), Value::Mac(mac)) => {
                (true, binary(b.push_address(Address::Mac(*mac))), false)
            }
            // `accepts` let nothing else through.
            _ => (false, 1, false),
        };
        self.define(present);
        (size, overflow)
    }

    /// Buffers an INT64 value, or a null (`None`); returns its size as [`Self::push`]
    /// does, or `None` when this is not an INT64 column that can hold it.
    pub(super) fn push_int(&mut self, value: Option<i64>) -> Option<u64> {
        let Values::Int64(v) = &mut self.values else {
            return None;
        };
        match value {
            Some(n) => v.push(n),
            None if self.optional => {}
            None => return None,
        }
        self.define(value.is_some());
        Some(if value.is_some() { 8 } else { 1 })
    }

    /// Buffers an address, or a null (`None`); returns its size as [`Self::push`] does, or
    /// `None` when this is not an address column that can hold it.
    pub(super) fn push_ip(&mut self, value: Option<IpAddr>) -> Option<u64> {
        let Values::Binary(b) = &mut self.values else {
            return None;
        };
        let size = match value {
            _ if !b.addresses => return None,
            Some(ip) => b.push_address(Address::Ip(ip)) as u64 + 4,
            None if self.optional => 1,
            None => return None,
        };
        self.define(value.is_some());
        Some(size)
    }

    /// Writes the buffered values into `writer` (byte strings in calls of `batch_size`
    /// values) and empties the buffer.
    pub(super) fn write(
        &mut self,
        writer: &mut ColumnWriter<'_>,
        batch_size: usize,
    ) -> Result<(), FormatError> {
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
            (Values::Binary(b), ColumnWriter::ByteArrayColumnWriter(w)) => {
                b.write(w, defs, batch_size)?;
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

    /// Capacity of the buffer of a BYTE_ARRAY column's bytes.
    #[cfg(test)]
    pub(super) fn data_capacity(&self) -> Option<usize> {
        match &self.values {
            Values::Binary(b) => Some(b.data.capacity()),
            _ => None,
        }
    }

    /// Empties the column for the next batch, after its file is complete or abandoned
    /// (the writer dropped): takes back the lent buffer, and cuts down buffers far above
    /// the recent need (`recent_rows`: the peak rows of a row group in recent batches).
    pub(super) fn start_batch(&mut self, recent_rows: usize) {
        match &mut self.values {
            Values::Bool(v) => trim(v, recent_rows),
            Values::Int64(v) => trim(v, recent_rows),
            Values::Double(v) => trim(v, recent_rows),
            Values::Binary(b) => b.start_batch(recent_rows),
        }
        trim(&mut self.defs, recent_rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_off_peak_fades_and_small_buffers_are_kept() {
        let mut peak = Peak::default();
        peak.note(100_000);
        assert_eq!(peak.end_batch(), 100_000);
        let mut buffer: Vec<i64> = Vec::with_capacity(100_000);
        trim(&mut buffer, 100_000);
        assert_eq!(buffer.capacity(), 100_000);
        // Batches of 1000 rows after it: the peak loses an eighth a batch, and the buffer
        // is cut down once it holds more than twice the peak.
        let mut cut_after = None;
        for batch in 1..=10 {
            peak.note(1000);
            let recent = peak.end_batch();
            trim(&mut buffer, recent);
            if buffer.capacity() < 100_000 && cut_after.is_none() {
                cut_after = Some((batch, recent, buffer.capacity()));
            }
        }
        assert_eq!(cut_after, Some((6, 44_881, 44_881)));
        // Never below the floor (64 KiB: 8192 INT64 values).
        let mut small: Vec<i64> = Vec::with_capacity(8192);
        trim(&mut small, 0);
        assert_eq!(small.capacity(), 8192);
        let mut large: Vec<i64> = Vec::with_capacity(8193);
        trim(&mut large, 0);
        assert_eq!(large.capacity(), 0);
    }
}
