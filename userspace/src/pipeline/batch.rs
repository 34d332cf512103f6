//! Record batches: NDJSON lines accumulated by a worker, closed at a size or an age, then
//! zstd-compressed into a [`SealedBatch`] for the sink.

use std::time::{Duration, Instant};

use crate::{
    config::BatchConfig,
    record::{PacketRecord, ndjson::NdjsonEncoder, timestamp::UnixMicros},
};

/// A closed, compressed batch on its way to the sink.
#[derive(Debug)]
pub struct SealedBatch {
    /// The worker that built it (part of the file name).
    pub worker: usize,
    /// Number of records.
    pub records: u64,
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
    /// Records lost with it.
    pub records: u64,
    /// The compressor's error.
    pub source: std::io::Error,
}

/// Builds one batch at a time for one worker.
pub struct BatchBuilder {
    worker: usize,
    max_records: u64,
    max_bytes: usize,
    max_age: Duration,
    encoder: NdjsonEncoder,
    compressor: zstd::bulk::Compressor<'static>,
    lines: Vec<u8>,
    records: u64,
    opened: Option<(Instant, UnixMicros)>,
}

impl std::fmt::Debug for BatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuilder")
            .field("worker", &self.worker)
            .field("records", &self.records)
            .field("bytes", &self.lines.len())
            .finish()
    }
}

impl BatchBuilder {
    /// A builder for `worker` with the `[batch]` limits.
    pub fn new(worker: usize, config: &BatchConfig) -> std::io::Result<Self> {
        Ok(Self {
            worker,
            max_records: u64::from(config.max_records),
            max_bytes: config.max_bytes as usize,
            max_age: Duration::from_millis(config.max_age_ms),
            encoder: NdjsonEncoder::default(),
            compressor: zstd::bulk::Compressor::new(config.zstd_level)?,
            lines: Vec::with_capacity((config.max_bytes as usize).min(16 << 20) + 4096),
            records: 0,
            opened: None,
        })
    }

    /// Adds a record; returns true when the batch reached its size limit and should be sealed.
    #[inline]
    pub fn add(&mut self, record: &PacketRecord<'_>) -> bool {
        if self.opened.is_none() {
            self.opened = Some((Instant::now(), record.received_at));
        }
        self.encoder.encode(record, &mut self.lines);
        self.records += 1;
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

    /// Compresses and returns the open batch (`None` when empty), leaving the builder empty.
    pub fn seal(&mut self) -> Result<Option<SealedBatch>, SealError> {
        let Some((_, first_received_at)) = self.opened.take() else {
            return Ok(None);
        };
        let records = std::mem::take(&mut self.records);
        let uncompressed_bytes = self.lines.len();
        let result = self.compressor.compress(&self.lines);
        self.lines.clear();
        match result {
            Ok(bytes) => Ok(Some(SealedBatch {
                worker: self.worker,
                records,
                first_received_at,
                uncompressed_bytes,
                bytes,
            })),
            Err(source) => Err(SealError {
                bytes: uncompressed_bytes,
                records,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::decap::Datagram;

    fn record(at: i64) -> PacketRecord<'static> {
        PacketRecord {
            received_at: at,
            datagram: Datagram {
                tunnel: None,
                src: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
                dst: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2)),
                src_port: 1,
                dst_port: 2,
                payload: b"x",
            },
        }
    }

    #[test]
    fn closes_at_record_limit_and_round_trips_through_zstd()
    -> Result<(), Box<dyn std::error::Error>> {
        let config = BatchConfig {
            max_records: 3,
            ..BatchConfig::default()
        };
        let mut b = BatchBuilder::new(7, &config)?;
        assert!(b.deadline().is_none());
        assert!(!b.add(&record(10)));
        assert!(!b.add(&record(11)));
        assert!(b.add(&record(12)));
        let sealed = b.seal()?.ok_or("empty")?;
        assert_eq!(
            (sealed.worker, sealed.records, sealed.first_received_at),
            (7, 3, 10)
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
        let mut b = BatchBuilder::new(0, &config)?;
        let mut n = 0;
        while !b.add(&record(0)) {
            n += 1;
        }
        assert!(n > 3 && n < 1024, "{n}");
        Ok(())
    }
}
