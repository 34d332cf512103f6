//! NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011): one row per flow, with the
//! same typed columns whatever the version (see [`COLUMNS`] and `docs/decoders.md`).
//!
//! The version is read from each packet. v5 packets stand alone. v9 and IPFIX data sets
//! need the template their exporter sent earlier; templates (and options templates) live
//! in the factory, shared by every worker's decoder, keyed by tunnel source, exporter
//! address and observation domain (v9 source id), and are forgotten after
//! `template_timeout_secs` without a refresh or on an IPFIX withdrawal.
//!
//! Packets of one exporter are spread over all workers, so a data packet can be decoded
//! before the template packet that precedes it on the wire. Such a packet is *held*
//! whole: no row, its own templates applied, a copy parked in its exporter's bounded
//! queue (`hold_ms`, `max_held_packets`), [`DecodeOutcome::held`] set. Every worker's
//! [`Decoder::release`] decodes the held packets whose templates have since arrived (each
//! exactly once) and [`Decoder::expire`] drops the ones that waited too long, so each
//! packet is counted once: recorded, or dropped.
//!
//! Options data records (exporter metadata) give no row; their systemInitTimeMilliseconds
//! anchors IPFIX's relative flow times and their sampling interval fills
//! `sampling_interval` for flows that carry none. Enterprise-specific IPFIX elements are
//! kept in `extra` as `enterprise:id=hex`, comma-separated.

mod cache;
mod config;
pub mod encode;
mod message;
mod record;
mod template;
mod v5;
mod wire;

use std::sync::Arc;

pub use cache::NetflowStats;
pub use config::{MAX_HELD_PACKETS, MAX_HOLD_MS, MAX_TEMPLATE_TIMEOUT_SECS, NetflowConfig};
pub use record::COLUMNS;
pub use wire::{BAD_LENGTH, BAD_TEMPLATE, BAD_VALUE, BAD_VERSION, NO_TEMPLATE, TRUNCATED};

use cache::{Exporter, HeldPacket, HoldRefused, Shared};
use message::{MessageDecoder, MessageOutcome, Missing, Mode};
use record::{FlowRecord, PacketInfo};

use crate::{
    ConfigFieldError, DecodeError, DecodeOutcome, Decoder, DecoderFactory, FieldName,
    PacketContext, RecordSchema, RowSink,
};

/// Builds the `netflow` decoders of one stream, and holds the state they share.
#[derive(Debug)]
pub struct NetflowFactory {
    shared: Arc<Shared>,
}

impl NetflowFactory {
    /// A factory for a checked `config`.
    ///
    /// # Errors
    /// [`ConfigFieldError`] naming the first option out of range.
    pub fn new(config: &NetflowConfig) -> Result<Self, ConfigFieldError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared::new(config.clone(), record::schema())),
        })
    }

    /// A decoder sharing this factory's templates and held packets (what
    /// [`DecoderFactory::build`] boxes).
    pub fn decoder(&self) -> NetflowDecoder {
        NetflowDecoder {
            shared: Arc::clone(&self.shared),
            message: MessageDecoder::default(),
            last_release_generation: None,
            release_failures: 0,
            exporters: Vec::new(),
            ready: Vec::new(),
        }
    }

    /// The counters of every decoder built here.
    pub fn stats(&self) -> NetflowStats {
        self.shared.stats()
    }

    /// How many packets are held, over all exporters.
    pub fn held_packets(&self) -> usize {
        self.shared.held_count()
    }

    /// How many exporters have templates or held packets.
    pub fn exporters(&self) -> usize {
        self.shared.exporter_count()
    }
}

impl DecoderFactory for NetflowFactory {
    fn schema(&self) -> &RecordSchema {
        &self.shared.schema
    }

    fn build(&self) -> Box<dyn Decoder> {
        Box::new(self.decoder())
    }

    fn error_kinds(&self) -> &'static [crate::DecodeErrorKind] {
        &[
            TRUNCATED,
            BAD_VERSION,
            BAD_LENGTH,
            BAD_TEMPLATE,
            NO_TEMPLATE,
            BAD_VALUE,
        ]
    }
}

/// One worker's `netflow` decoder.
#[derive(Debug)]
pub struct NetflowDecoder {
    shared: Arc<Shared>,
    message: MessageDecoder,
    /// The shared change generation of this decoder's last release scan.
    last_release_generation: Option<u64>,
    /// Held packets that failed to decode once released, reported by the next `expire`.
    release_failures: u64,
    exporters: Vec<Arc<Exporter>>,
    ready: Vec<HeldPacket>,
}

/// What decoding a packet came to.
enum Step {
    /// Decoded; this many rows went to the sink.
    Rows(u64),
    /// A data set lacks its template; nothing went to the sink.
    Missing(Missing),
}

fn emit(
    sink: &mut dyn RowSink,
    ctx: &PacketContext,
    info: &PacketInfo,
    records: &[FlowRecord],
) -> u64 {
    for record in records {
        sink.row(ctx, &record.values(info));
    }
    records.len() as u64
}

impl NetflowDecoder {
    fn decode_packet(
        &mut self,
        ctx: &PacketContext,
        payload: &[u8],
        mode: Mode,
        sink: &mut dyn RowSink,
    ) -> Result<Step, DecodeError> {
        let version = wire::u16_at(payload, 0, "version")?;
        match version {
            5 => {
                let (info, n) = v5::decode(payload, &mut self.message.records)?;
                let records = self.message.records.get(..n).unwrap_or_default();
                Ok(Step::Rows(emit(sink, ctx, &info, records)))
            }
            9 | 10 => match self
                .message
                .decode(&self.shared, ctx, payload, version, mode)?
            {
                MessageOutcome::Decoded { info, records } => {
                    let records = self.message.records.get(..records).unwrap_or_default();
                    Ok(Step::Rows(emit(sink, ctx, &info, records)))
                }
                MessageOutcome::Missing(missing) => Ok(Step::Missing(missing)),
            },
            other => Err(DecodeError::new(
                BAD_VERSION,
                FieldName::Static("version"),
                0,
                crate::detail!("version {}, expected 5, 9 or 10", other),
            )),
        }
    }
}

impl Decoder for NetflowDecoder {
    fn schema(&self) -> &RecordSchema {
        &self.shared.schema
    }

    fn decode(
        &mut self,
        ctx: &PacketContext,
        payload: &[u8],
        sink: &mut dyn RowSink,
    ) -> Result<DecodeOutcome, DecodeError> {
        let Missing {
            key,
            generation,
            template_id,
            offset,
        } = match self.decode_packet(ctx, payload, Mode::Fresh, sink)? {
            Step::Rows(rows) => return Ok(DecodeOutcome { rows, held: false }),
            Step::Missing(missing) => missing,
        };
        // The text says why the packet was not held, if it could have been.
        let no_template = |text: &'static str| {
            DecodeError::new(
                NO_TEMPLATE,
                FieldName::Static("set id"),
                offset,
                crate::detail!(text, template_id),
            )
        };
        if !self.shared.config.holds() {
            return Err(no_template("template {} is unknown"));
        }
        let held = HeldPacket {
            ctx: *ctx,
            payload: payload.into(),
            generation,
        };
        match self.shared.hold(&key, held) {
            Ok(()) => Ok(DecodeOutcome {
                rows: 0,
                held: true,
            }),
            Err(HoldRefused::Full) => Err(no_template(
                "template {} is unknown and the exporter already holds max_held_packets packets",
            )),
        }
    }

    fn release(&mut self, sink: &mut dyn RowSink) -> u64 {
        let (pending, generation) = self.shared.pending_and_generation();
        if !pending || self.last_release_generation == Some(generation) {
            return 0;
        }
        self.last_release_generation = Some(generation);
        let mut exporters = std::mem::take(&mut self.exporters);
        let mut ready = std::mem::take(&mut self.ready);
        self.shared.exporters_with_pending(&mut exporters);
        for exporter in &exporters {
            self.shared.take_ready(exporter, &mut ready);
        }
        exporters.clear();
        let mut completed = 0;
        for held in ready.drain(..) {
            match self.decode_packet(&held.ctx, &held.payload, Mode::Release, sink) {
                Ok(Step::Rows(_)) => completed += 1,
                Ok(Step::Missing(Missing {
                    key, generation, ..
                })) => self.shared.requeue(&key, HeldPacket { generation, ..held }),
                Err(_) => {
                    self.release_failures += 1;
                    self.shared.count_release_failure();
                }
            }
        }
        self.exporters = exporters;
        self.ready = ready;
        if completed > 0 {
            self.shared.count_released(completed);
        }
        completed
    }

    fn expire(&mut self, now_micros: i64, all: bool) -> u64 {
        let mut dropped = std::mem::take(&mut self.release_failures);
        self.shared.sweep(now_micros);
        if !self.shared.pending_and_generation().0 {
            return dropped;
        }
        let hold_us = i64::try_from(self.shared.config.hold_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let mut exporters = std::mem::take(&mut self.exporters);
        self.shared.exporters_with_pending(&mut exporters);
        for exporter in &exporters {
            dropped += self.shared.drop_expired(exporter, now_micros, hold_us, all);
        }
        exporters.clear();
        self.exporters = exporters;
        dropped
    }
}
