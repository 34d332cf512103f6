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
//! whole: no row, its own templates applied, a copy parked until the template it lacks
//! arrives (`hold_ms`), [`DecodeOutcome::held`] set. Every worker's [`Decoder::release`]
//! decodes the held packets whose template has since arrived (each exactly once) and
//! [`Decoder::expire`] drops the ones that waited too long, so each packet is counted
//! once: recorded, or dropped. Holding, releasing and expiring cost the same per packet
//! however much is held (`hold.rs`).
//!
//! All state is bounded across exporters (`max_exporters`, `max_templates`,
//! `max_template_bytes`, `max_held_bytes`, `max_held_packets`): what a limit refuses is
//! counted by limit ([`NetflowStats`]) and logged once per 10 s at most (`limit.rs`),
//! never kept. A refused packet is a `no_template` error, as one that is not held.
//!
//! Options data records (exporter metadata) give no row; their systemInitTimeMilliseconds
//! anchors IPFIX's relative flow times and their sampling interval fills
//! `sampling_interval` for flows that carry none. Enterprise-specific IPFIX elements are
//! kept in `extra` as `enterprise:id=hex`, comma-separated.

mod cache;
mod config;
pub mod encode;
mod hold;
mod limit;
mod message;
mod record;
mod stats;
mod template;
mod v5;
mod wire;

use std::sync::Arc;

pub use config::{
    MAX_HELD_PACKETS, MAX_HOLD_MS, MAX_STATE_BYTES, MAX_STATE_ENTRIES, MAX_TEMPLATE_TIMEOUT_SECS,
    MIN_TEMPLATE_BYTES, NetflowConfig,
};
pub use hold::PARKED_OVERHEAD;
pub use limit::{LOG_INTERVAL, Limit};
pub use record::COLUMNS;
pub use stats::{NetflowState, NetflowStats};
pub use wire::{BAD_LENGTH, BAD_TEMPLATE, BAD_VALUE, BAD_VERSION, NO_TEMPLATE, TRUNCATED};

use cache::Shared;
use hold::{HeldPacket, HoldRequest};
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
        Self::for_stream("netflow", config)
    }

    /// A factory for a checked `config` whose warnings name `stream`.
    ///
    /// # Errors
    /// [`ConfigFieldError`] naming the first option out of range.
    pub fn for_stream(stream: &str, config: &NetflowConfig) -> Result<Self, ConfigFieldError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared::new(config.clone(), record::schema(), stream)),
        })
    }

    /// A decoder sharing this factory's templates and held packets (what
    /// [`DecoderFactory::build`] boxes).
    pub fn decoder(&self) -> NetflowDecoder {
        NetflowDecoder {
            shared: Arc::clone(&self.shared),
            message: MessageDecoder::default(),
            release_failures: 0,
            ready: Vec::new(),
        }
    }

    /// The counters of every decoder built here.
    pub fn stats(&self) -> NetflowStats {
        self.shared.stats()
    }

    /// The size of the shared state now.
    pub fn state(&self) -> NetflowState {
        self.shared.state()
    }

    /// How many packets are held, over all exporters (not those being released).
    pub fn held_packets(&self) -> usize {
        self.shared.hold.parked()
    }

    /// How many exporters have templates.
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
    /// Held packets that failed to decode once released, reported by the next `expire`.
    release_failures: u64,
    /// Scratch space for the packets one `release` takes.
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
        let request = HoldRequest {
            key,
            template_id,
            generation,
            ctx,
        };
        match self.shared.hold(request, payload) {
            Ok(()) => Ok(DecodeOutcome {
                rows: 0,
                held: true,
            }),
            Err(Limit::MaxHeldPackets) => Err(no_template(
                "template {} is unknown and the exporter already holds max_held_packets packets",
            )),
            Err(_) => Err(no_template(
                "template {} is unknown and max_held_bytes are held",
            )),
        }
    }

    fn release(&mut self, sink: &mut dyn RowSink) -> u64 {
        if !self.shared.hold.has_ready() {
            return 0;
        }
        let mut ready = std::mem::take(&mut self.ready);
        self.shared.hold.take_ready(&mut ready);
        let (mut completed, mut failed, mut finished_bytes) = (0, 0, 0);
        for held in ready.drain(..) {
            match self.decode_packet(&held.ctx, &held.payload, Mode::Release, sink) {
                Ok(Step::Rows(_)) => {
                    completed += 1;
                    finished_bytes += held.cost();
                }
                Ok(Step::Missing(Missing {
                    key,
                    generation,
                    template_id,
                    ..
                })) => {
                    let ctx = held.ctx;
                    let request = HoldRequest {
                        key,
                        template_id,
                        generation,
                        ctx: &ctx,
                    };
                    self.shared.requeue(request, held);
                }
                Err(_) => {
                    failed += 1;
                    finished_bytes += held.cost();
                }
            }
        }
        self.ready = ready;
        self.shared.hold.finish(finished_bytes);
        if completed > 0 {
            self.shared.count_released(completed);
        }
        if failed > 0 {
            self.release_failures += failed;
            self.shared.count_release_failures(failed);
        }
        completed
    }

    fn expire(&mut self, now_micros: i64, all: bool) -> u64 {
        std::mem::take(&mut self.release_failures) + self.shared.expire(now_micros, all)
    }
}
