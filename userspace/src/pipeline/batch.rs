//! Record batches: NDJSON lines of one stream accumulated by a worker, closed at a size or
//! an age, then zstd-compressed into a [`SealedBatch`] for the sink.
//!
//! The builder is the [`RowSink`] decoders write into. Rows are counted as records; the
//! packets they came from are counted separately (a NetFlow packet holds many flows), and
//! a batch is only sealed between packets, so a packet's records never straddle files.

use std::time::{Duration, Instant};

use sluice_decode::{PacketContext, RecordSchema, RowSink, Value};

use crate::{
    config::BatchConfig,
    record::{
        ndjson::{EncodedColumns, NdjsonEncoder},
        timestamp::UnixMicros,
    },
};

/// A closed, compressed batch on its way to the sink.
#[derive(Debug)]
pub struct SealedBatch {
    /// The stream (decoder output) it belongs to: index into the stream names.
    pub stream: usize,
    /// The worker that built it (part of the file name).
    pub worker: usize,
    /// Number of records (rows).
    pub records: u64,
    /// Number of packets those records came from.
    pub packets: u64,
    /// Receive time of the first record: picks the date/hour partition.
    pub first_received_at: UnixMicros,
    /// Size before compression.
    pub uncompressed_bytes: usize,
    /// The compressed file contents.
    pub bytes: Vec<u8>,
}

/// Why a batch could not be sealed.
#[derive(Debug, thiserror::Error)]
#[error("zstd compression of a {bytes}-byte batch failed: {source}")]
pub struct SealError {
    /// Uncompressed size.
    pub bytes: usize,
    /// Packets lost with it.
    pub packets: u64,
    /// The compressor's error.
    pub source: std::io::Error,
}

/// Builds one batch at a time for one (worker, stream).
pub struct BatchBuilder {
    stream: usize,
    worker: usize,
    max_records: u64,
    max_bytes: usize,
    max_age: Duration,
    columns: EncodedColumns,
    encoder: NdjsonEncoder,
    compressor: zstd::bulk::Compressor<'static>,
    lines: Vec<u8>,
    records: u64,
    packets: u64,
    opened: Option<(Instant, UnixMicros)>,
}

impl std::fmt::Debug for BatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuilder")
            .field("stream", &self.stream)
            .field("worker", &self.worker)
            .field("records", &self.records)
            .field("bytes", &self.lines.len())
            .finish()
    }
}

impl RowSink for BatchBuilder {
    #[inline]
    fn row(&mut self, ctx: &PacketContext, values: &[Value<'_>]) {
        if self.opened.is_none() {
            self.opened = Some((Instant::now(), ctx.received_at));
        }
        self.encoder
            .encode(ctx, &self.columns, values, &mut self.lines);
        self.records += 1;
    }
}

impl BatchBuilder {
    /// A builder for `worker`'s batches of `stream`, whose rows follow `schema`.
    pub fn new(
        stream: usize,
        worker: usize,
        schema: &RecordSchema,
        config: &BatchConfig,
    ) -> std::io::Result<Self> {
        Ok(Self {
            stream,
            worker,
            max_records: u64::from(config.max_records),
            max_bytes: config.max_bytes as usize,
            max_age: Duration::from_millis(config.max_age_ms),
            columns: EncodedColumns::new(schema),
            encoder: NdjsonEncoder::default(),
            compressor: zstd::bulk::Compressor::new(config.zstd_level)?,
            lines: Vec::new(),
            records: 0,
            packets: 0,
            opened: None,
        })
    }

    /// Counts `n` packets whose rows were written into this batch.
    #[inline]
    pub fn add_packets(&mut self, n: u64) {
        self.packets += n;
    }

    /// Takes the count of packets added while the batch has no row (they decoded to
    /// nothing to write, so they are complete already).
    pub fn take_rowless_packets(&mut self) -> u64 {
        if self.opened.is_none() {
            std::mem::take(&mut self.packets)
        } else {
            0
        }
    }

    /// True when the batch reached its record or size limit (checked between packets).
    #[inline]
    pub fn is_full(&self) -> bool {
        self.records >= self.max_records || self.lines.len() >= self.max_bytes
    }

    /// Records in the open batch.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// When the open batch reaches its age limit (`None` when empty).
    pub fn deadline(&self) -> Option<Instant> {
        self.opened.map(|(at, _)| at + self.max_age)
    }

    /// Compresses and returns the open batch (`None` when it has no records), leaving
    /// the builder empty.
    pub fn seal(&mut self) -> Result<Option<SealedBatch>, SealError> {
        let Some((_, first_received_at)) = self.opened.take() else {
            return Ok(None);
        };
        let records = std::mem::take(&mut self.records);
        let packets = std::mem::take(&mut self.packets);
        let uncompressed_bytes = self.lines.len();
        let result = self.compressor.compress(&self.lines);
        self.lines.clear();
        if self.lines.capacity() > 2 * self.max_bytes + (1 << 20) {
            self.lines.shrink_to(self.max_bytes + (1 << 16));
        }
        match result {
            Ok(bytes) => Ok(Some(SealedBatch {
                stream: self.stream,
                worker: self.worker,
                records,
                packets,
                first_received_at,
                uncompressed_bytes,
                bytes,
            })),
            Err(source) => Err(SealError {
                bytes: uncompressed_bytes,
                packets,
                source,
            }),
        }
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

    fn ctx(at: i64) -> PacketContext {
        PacketContext {
            received_at: at,
            tunnel_src: None,
            tunnel_dst: None,
            gre_key: None,
            src_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
            src_port: 1,
            dst_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2)),
            dst_port: 2,
        }
    }

    fn add(b: &mut BatchBuilder, at: i64) -> bool {
        b.row(
            &ctx(at),
            &[Value::U64(1), Value::Bytes(Cow::Borrowed(b"x"))],
        );
        b.add_packets(1);
        b.is_full()
    }

    #[test]
    fn closes_at_record_limit_and_round_trips_through_zstd()
    -> Result<(), Box<dyn std::error::Error>> {
        let config = BatchConfig {
            max_records: 3,
            ..BatchConfig::default()
        };
        let mut b = BatchBuilder::new(1, 7, RawFactory::default().schema(), &config)?;
        assert!(b.deadline().is_none());
        assert!(!add(&mut b, 10));
        assert!(!add(&mut b, 11));
        assert!(add(&mut b, 12));
        let sealed = b.seal()?.ok_or("empty")?;
        assert_eq!(
            (
                sealed.stream,
                sealed.worker,
                sealed.records,
                sealed.packets,
                sealed.first_received_at
            ),
            (1, 7, 3, 3, 10)
        );
        let text = zstd::stream::decode_all(&sealed.bytes[..])?;
        assert_eq!(text.len(), sealed.uncompressed_bytes);
        assert_eq!(text.iter().filter(|c| **c == b'\n').count(), 3);
        assert!(b.seal()?.is_none());
        assert_eq!(b.records(), 0);
        Ok(())
    }

    #[test]
    fn closes_at_byte_limit() -> Result<(), Box<dyn std::error::Error>> {
        let config = BatchConfig {
            max_bytes: 1024,
            ..BatchConfig::default()
        };
        let mut b = BatchBuilder::new(0, 0, RawFactory::default().schema(), &config)?;
        let mut n = 0;
        while !add(&mut b, 0) {
            n += 1;
        }
        assert!(n > 3 && n < 1024, "{n}");
        Ok(())
    }
}
