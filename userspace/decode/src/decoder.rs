//! The decoder interface.

use std::net::IpAddr;

use crate::{schema::RecordSchema, value::Value};

/// Where a payload came from: the packet's provenance. Decoders key per-exporter state on
/// it (tunnel source + source address), anchor times on `received_at` (e.g. syslog's
/// missing year), and hand it back with every row (the record's provenance columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketContext {
    /// Receive time, microseconds since the Unix epoch.
    pub received_at: i64,
    /// Outer source of the GRE tunnel, `None` for plain UDP.
    pub tunnel_src: Option<IpAddr>,
    /// Outer destination of the GRE tunnel, `None` for plain UDP.
    pub tunnel_dst: Option<IpAddr>,
    /// GRE key, when the tunnel has one.
    pub gre_key: Option<u32>,
    /// Inner source address (the exporter / device).
    pub src_ip: IpAddr,
    /// Inner UDP source port.
    pub src_port: u16,
    /// Inner destination address.
    pub dst_ip: IpAddr,
    /// Inner UDP destination port.
    pub dst_port: u16,
}

/// Receives complete rows, values in the schema's column order, with the context of the
/// packet they came from (a held packet's rows are released later, possibly by another
/// worker: the context travels with them).
pub trait RowSink {
    /// One complete row.
    fn row(&mut self, ctx: &PacketContext, values: &[Value<'_>]);
}

/// A `Vec` of owned rows, for tests and tools (the context is dropped).
impl RowSink for Vec<Vec<Value<'static>>> {
    fn row(&mut self, _ctx: &PacketContext, values: &[Value<'_>]) {
        self.push(values.iter().map(value_to_owned).collect());
    }
}

fn value_to_owned(v: &Value<'_>) -> Value<'static> {
    match v {
        Value::Null => Value::Null,
        Value::Bool(b) => Value::Bool(*b),
        Value::U64(n) => Value::U64(*n),
        Value::I64(n) => Value::I64(*n),
        Value::F64(n) => Value::F64(*n),
        Value::Str(s) => Value::Str(s.clone().into_owned().into()),
        Value::Bytes(b) => Value::Bytes(b.clone().into_owned().into()),
        Value::Ip(ip) => Value::Ip(*ip),
        Value::Mac(m) => Value::Mac(*m),
        Value::Timestamp(t) => Value::Timestamp(*t),
    }
}

/// What became of a payload that decoded without error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeOutcome {
    /// Rows emitted for this payload now.
    pub rows: u64,
    /// The payload is held (e.g. NetFlow data before its template): it is neither recorded
    /// nor dropped yet, and will come back through [`Decoder::release`] or [`Decoder::expire`].
    pub held: bool,
}

/// Why a payload was not decoded. Counted under `decode_error` with the decoder and
/// `kind` as labels; `field`/`offset` go into a sampled log line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: field {field:?} at offset {offset}: {message}")]
pub struct DecodeError {
    /// Short stable reason, a bounded set per decoder (`truncated`, `bad_version`, `no_template`, ...).
    pub kind: DecodeErrorKind,
    /// The field being decoded, if any.
    pub field: Option<String>,
    /// Byte offset in the payload where decoding failed.
    pub offset: usize,
    /// Human detail.
    pub message: String,
}

/// A decode error's stable name.
pub type DecodeErrorKind = &'static str;

impl DecodeError {
    /// A new error.
    pub fn new(
        kind: DecodeErrorKind,
        field: Option<&str>,
        offset: usize,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field: field.map(str::to_owned),
            offset,
            message: message.into(),
        }
    }
}

/// One worker's decoder.
pub trait Decoder: Send {
    /// The schema of the rows this decoder emits.
    fn schema(&self) -> &RecordSchema;

    /// Decodes one payload, emitting its rows into `sink` — all of them, or none and an error.
    fn decode(
        &mut self,
        ctx: &PacketContext,
        payload: &[u8],
        sink: &mut dyn RowSink,
    ) -> Result<DecodeOutcome, DecodeError>;

    /// Decodes held payloads that can now be decoded (their template arrived, possibly in
    /// another worker). Returns how many held payloads were completed; their rows went to
    /// `sink`, each with the context of its own packet (keep it with the held payload).
    fn release(&mut self, _sink: &mut dyn RowSink) -> u64 {
        0
    }

    /// Gives up on held payloads older than their hold time (all of them when `all`), and
    /// returns how many: each is one dropped packet (`decode_error`, kind `no_template`).
    fn expire(&mut self, _now_micros: i64, _all: bool) -> u64 {
        0
    }
}

/// Builds one decoder per worker; shared state lives in the factory.
pub trait DecoderFactory: Send + Sync {
    /// The schema every decoder built here emits.
    fn schema(&self) -> &RecordSchema;
    /// A decoder for one worker.
    fn build(&self) -> Box<dyn Decoder>;

    /// Every `DecodeError::kind` this decoder can report: a bounded label set, known at
    /// start, so that each kind's counter exists (at zero) from the beginning.
    fn error_kinds(&self) -> &'static [DecodeErrorKind] {
        &[]
    }
}

/// A decoder option that cannot be used, named by its path within the decoder's table
/// (e.g. `fields[2].offset`); the daemon prefixes the decoder's own path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigFieldError {
    /// Path of the field, relative to the decoder's options.
    pub field: String,
    /// What is wrong and what is accepted.
    pub reason: String,
}

impl ConfigFieldError {
    /// A new error.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
