//! Record batches: rows of one stream accumulated by a worker in the configured file
//! format (`sluice_formats`: NDJSON gzip/zstd, CSV gzip, Parquet), closed at a size or an
//! age into a [`SealedBatch`] for the sink.
//!
//! The builder is the [`RowSink`] decoders write into; the format's encoder compresses as
//! rows arrive, on the worker's core. Rows are counted as records; the packets they came
//! from are counted separately (a NetFlow packet holds many flows), and a batch is only
//! sealed between packets, so a packet's records never straddle files.
//!
//! A builder keeps one encoder for its whole life and writes every batch through it
//! (`BatchEncoder::finish_batch`): buffers, compression contexts and the Parquet writer's
//! settings are set up once per (worker, stream), not once per batch.

use std::time::{Duration, Instant};

use sluice_decode::{PacketContext, RecordSchema, RowSink, Value};
use sluice_formats::{BatchEncoder as _, FileEncoder, Format, FormatConfig, FormatError};

use crate::{config::BatchConfig, record::timestamp::UnixMicros};

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
    /// Size before compression (Parquet: an estimate of the values' size).
    pub uncompressed_bytes: usize,
    /// `UInt64` values above `i64::MAX` written as null (BigQuery's INT64 cannot hold
    /// them).
    pub null_overflows: u64,
    /// File name extension of the format, without the dot (`ndjson.zst`, `parquet`).
    pub extension: &'static str,
    /// The complete file.
    pub bytes: Vec<u8>,
}

/// Why a batch could not be sealed.
#[derive(Debug, thiserror::Error)]
#[error("a batch of {packets} packets could not be encoded: {source}")]
pub struct SealError {
    /// Packets lost with it.
    pub packets: u64,
    /// The encoder's error.
    pub source: FormatError,
}

/// Builds one batch at a time for one (worker, stream).
pub struct BatchBuilder {
    stream: usize,
    worker: usize,
    max_records: u64,
    max_bytes: u64,
    max_age: Duration,
    format: Format,
    /// Writes every batch of this builder, one after the other.
    encoder: FileEncoder,
    records: u64,
    packets: u64,
    opened: Option<(Instant, UnixMicros)>,
}

impl std::fmt::Debug for BatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuilder")
            .field("stream", &self.stream)
            .field("worker", &self.worker)
            .field("format", &self.format)
            .field("records", &self.records)
            .finish()
    }
}

impl RowSink for BatchBuilder {
    #[inline]
    fn row(&mut self, ctx: &PacketContext, values: &[Value<'_>]) {
        if self.opened.is_none() {
            self.opened = Some((Instant::now(), ctx.received_at));
        }
        self.encoder.row(ctx, values);
        self.records += 1;
    }
}

impl BatchBuilder {
    /// A builder for `worker`'s batches of `stream`, whose rows follow `schema`, written
    /// in `format`.
    ///
    /// # Errors
    /// The format cannot encode `schema` (e.g. two columns of one name) or refuses its
    /// options: found here, at start, rather than at the first row.
    pub fn new(
        stream: usize,
        worker: usize,
        schema: &RecordSchema,
        format: &FormatConfig,
        config: &BatchConfig,
    ) -> Result<Self, FormatError> {
        Ok(Self {
            stream,
            worker,
            max_records: u64::from(config.max_records),
            max_bytes: u64::from(config.max_bytes),
            max_age: Duration::from_millis(config.max_age_ms),
            format: format.format,
            encoder: FileEncoder::new(format, schema)?,
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
        // Bytes only count once a batch is open: an empty CSV batch has its header line.
        self.records >= self.max_records
            || (self.opened.is_some() && self.encoder.uncompressed_len() >= self.max_bytes)
    }

    /// Records in the open batch.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// When the open batch reaches its age limit (`None` when empty).
    pub fn deadline(&self) -> Option<Instant> {
        self.opened.map(|(at, _)| at + self.max_age)
    }

    /// Finishes and returns the open batch (`None` when it has no records), leaving the
    /// builder empty (the next batch starts clean, also after an error).
    ///
    /// # Errors
    /// The encoder refused a row or failed to compress: the batch's packets are lost.
    pub fn seal(&mut self) -> Result<Option<SealedBatch>, SealError> {
        let Some((_, first_received_at)) = self.opened.take() else {
            return Ok(None);
        };
        let records = std::mem::take(&mut self.records);
        let packets = std::mem::take(&mut self.packets);
        let uncompressed_bytes =
            usize::try_from(self.encoder.uncompressed_len()).unwrap_or(usize::MAX);
        let null_overflows = self.encoder.overflows();
        match self.encoder.finish_batch() {
            Ok(bytes) => Ok(Some(SealedBatch {
                stream: self.stream,
                worker: self.worker,
                records,
                packets,
                first_received_at,
                uncompressed_bytes,
                null_overflows,
                extension: self.format.extension(),
                bytes,
            })),
            Err(source) => Err(SealError { packets, source }),
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
        let format = FormatConfig::new(sluice_formats::Format::NdjsonZstd);
        let mut b = BatchBuilder::new(1, 7, RawFactory::default().schema(), &format, &config)?;
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
        assert_eq!(sealed.extension, "ndjson.zst");
        assert_eq!(text.iter().filter(|c| **c == b'\n').count(), 3);
        assert!(b.seal()?.is_none());
        assert_eq!(b.records(), 0);
        Ok(())
    }

    /// The file a new encoder writes for rows `at` of [`add`].
    fn fresh_file(format: Format, at: &[i64]) -> Result<Vec<u8>, FormatError> {
        let mut encoder =
            FileEncoder::new(&FormatConfig::new(format), RawFactory::default().schema())?;
        for &t in at {
            encoder.row(&ctx(t), &[Value::U64(1), Value::Bytes(Cow::Borrowed(b"x"))]);
        }
        encoder.finish()
    }

    #[test]
    fn every_batch_is_the_file_a_new_encoder_writes_also_after_a_refused_batch()
    -> Result<(), Box<dyn std::error::Error>> {
        for format in Format::ALL {
            let config = FormatConfig::new(format);
            let mut b = BatchBuilder::new(
                2,
                3,
                RawFactory::default().schema(),
                &config,
                &BatchConfig::default(),
            )?;
            for t in [10, 11, 12] {
                add(&mut b, t);
            }
            let first = b.seal()?.ok_or("empty")?;
            assert_eq!(first.bytes, fresh_file(format, &[10, 11, 12])?, "{format}");
            assert_eq!(first.records, 3);

            // A row of the wrong length refuses its whole batch...
            add(&mut b, 20);
            b.row(&ctx(21), &[Value::U64(1)]);
            b.add_packets(1);
            add(&mut b, 22);
            let refused = b.seal().expect_err("a refused row");
            assert_eq!(refused.packets, 3);
            assert_eq!(
                refused.source.to_string(),
                "row 1: 1 values for the 2 columns of the schema"
            );
            assert_eq!(b.records(), 0);

            // ... and the next batch starts clean.
            add(&mut b, 30);
            add(&mut b, 31);
            let next = b.seal()?.ok_or("empty")?;
            assert_eq!(next.bytes, fresh_file(format, &[30, 31])?, "{format}");
            assert_eq!(
                (
                    next.records,
                    next.packets,
                    next.first_received_at,
                    next.null_overflows
                ),
                (2, 2, 30, 0)
            );
            let mut single = FileEncoder::new(&config, RawFactory::default().schema())?;
            for t in [30, 31] {
                single.row(&ctx(t), &[Value::U64(1), Value::Bytes(Cow::Borrowed(b"x"))]);
            }
            assert_eq!(next.uncompressed_bytes as u64, single.uncompressed_len());
        }
        Ok(())
    }

    #[test]
    fn closes_at_byte_limit() -> Result<(), Box<dyn std::error::Error>> {
        let config = BatchConfig {
            max_bytes: 1024,
            ..BatchConfig::default()
        };
        let format = FormatConfig::new(sluice_formats::Format::NdjsonZstd);
        let mut b = BatchBuilder::new(0, 0, RawFactory::default().schema(), &format, &config)?;
        let mut n = 0;
        while !add(&mut b, 0) {
            n += 1;
        }
        assert!(n > 3 && n < 1024, "{n}");
        Ok(())
    }
}
