//! The `syslog` decoder: RFC 3164 (BSD) and RFC 5424 messages, one per UDP payload,
//! auto-detected per message, into one fixed record schema.
//!
//! Syslog is the one payload every network device can send, and no two send it alike;
//! this decoder reads the RFCs and the common deviations (`rfc3164.rs` lists them)
//! without a scripting runtime. Every payload but an empty one becomes exactly one row:
//! what cannot be parsed is left null and the unparsed text stays in `message`, so nothing
//! a device said is dropped. Text is borrowed from the payload, so the common case
//! allocates nothing; the exceptions are invalid UTF-8 under `invalid_utf8 = "replace"`
//! and `structured_data = "json"`.
//!
//! Layout: `config` (options, validation), `message` (framing, PRI, format choice),
//! `rfc5424` and `rfc3164` (the two grammars), `timestamp` (dates to UTC
//! microseconds), `structured_data` (SD scan and JSON), `names` (facility/severity
//! keywords), `cursor` (bounds-checked reading). The operator's view is
//! `docs/decoders.md`.

mod config;
mod cursor;
mod message;
mod names;
mod rfc3164;
mod rfc5424;
mod structured_data;
mod timestamp;

use std::{borrow::Cow, sync::Arc};

pub use config::{InvalidUtf8, StructuredDataFormat, SyslogConfig};
use cursor::{Cursor, Span};
use message::Fields;

use crate::{
    ColumnType, ConfigFieldError, DecodeError, DecodeOutcome, Decoder, DecoderFactory, FieldName,
    PacketContext, RecordSchema, RowSink, Value, schema::Column,
};

/// The decoder's name in configuration and in the schema.
pub const DECODER_NAME: &str = "syslog";

/// Column names, in row order.
pub const COLUMNS: [&str; 12] = [
    "format",
    "facility",
    "facility_name",
    "severity",
    "severity_name",
    "timestamp",
    "hostname",
    "app_name",
    "procid",
    "msgid",
    "structured_data",
    "message",
];

/// The record schema every syslog decoder emits.
pub fn schema() -> RecordSchema {
    let [
        format,
        facility,
        facility_name,
        severity,
        severity_name,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        structured_data,
        message,
    ] = COLUMNS;
    RecordSchema {
        decoder: DECODER_NAME.to_owned(),
        columns: vec![
            Column::required(format, ColumnType::String),
            Column::nullable(facility, ColumnType::UInt64),
            Column::nullable(facility_name, ColumnType::String),
            Column::nullable(severity, ColumnType::UInt64),
            Column::nullable(severity_name, ColumnType::String),
            Column::nullable(timestamp, ColumnType::Timestamp),
            Column::nullable(hostname, ColumnType::String),
            Column::nullable(app_name, ColumnType::String),
            Column::nullable(procid, ColumnType::String),
            Column::nullable(msgid, ColumnType::String),
            Column::nullable(structured_data, ColumnType::String),
            Column::required(message, ColumnType::String),
        ],
    }
}

/// The options as the decoder uses them, resolved once.
#[derive(Clone, Copy, Debug)]
struct Settings {
    default_offset: i32,
    max_message_bytes: usize,
    invalid_utf8: InvalidUtf8,
    structured_data: StructuredDataFormat,
}

/// Builds [`SyslogDecoder`]s. The decoder keeps no state between payloads, so nothing is
/// shared but the schema.
#[derive(Debug)]
pub struct SyslogFactory {
    schema: Arc<RecordSchema>,
    settings: Settings,
}

impl SyslogFactory {
    /// Validates `config` and prepares the decoders.
    pub fn new(config: &SyslogConfig) -> Result<Self, ConfigFieldError> {
        config.validate()?;
        Ok(Self {
            schema: Arc::new(schema()),
            settings: Settings {
                default_offset: config.default_offset_seconds()?,
                max_message_bytes: config.max_message_bytes,
                invalid_utf8: config.invalid_utf8,
                structured_data: config.structured_data,
            },
        })
    }

    /// A decoder, as a concrete type (the trait's [`DecoderFactory::build`] boxes it).
    pub fn decoder(&self) -> SyslogDecoder {
        SyslogDecoder {
            schema: Arc::clone(&self.schema),
            settings: self.settings,
        }
    }
}

impl DecoderFactory for SyslogFactory {
    fn schema(&self) -> &RecordSchema {
        &self.schema
    }

    fn build(&self) -> Box<dyn Decoder> {
        Box::new(self.decoder())
    }

    fn error_kinds(&self) -> &'static [crate::DecodeErrorKind] {
        &["empty", "invalid_utf8"]
    }
}

/// One worker's syslog decoder: one row per payload.
#[derive(Debug)]
pub struct SyslogDecoder {
    schema: Arc<RecordSchema>,
    settings: Settings,
}

impl Decoder for SyslogDecoder {
    fn schema(&self) -> &RecordSchema {
        &self.schema
    }

    fn decode(
        &mut self,
        ctx: &PacketContext,
        payload: &[u8],
        sink: &mut dyn RowSink,
    ) -> Result<DecodeOutcome, DecodeError> {
        let fields = message::split(payload)?;
        self.emit(ctx, payload, &fields, sink)?;
        Ok(DecodeOutcome {
            rows: 1,
            held: false,
        })
    }
}

impl SyslogDecoder {
    /// Converts `fields` to values in [`COLUMNS`] order and hands the row to `sink` (the
    /// row is built where it is used: returning it would copy 12 values per message).
    fn emit<'a>(
        &self,
        ctx: &PacketContext,
        payload: &'a [u8],
        fields: &Fields,
        sink: &mut dyn RowSink,
    ) -> Result<(), DecodeError> {
        let settings = &self.settings;
        let text = |span: Option<Span>, field: &'static str| -> Result<Value<'a>, DecodeError> {
            match span {
                Some(span) => Ok(Value::Str(text(
                    payload,
                    span,
                    field,
                    usize::MAX,
                    settings.invalid_utf8,
                )?)),
                None => Ok(Value::Null),
            }
        };
        let facility = fields.pri.map(|pri| pri >> 3);
        let severity = fields.pri.map(|pri| pri & 7);
        let keyword =
            |name: Option<&'static str>| name.map_or(Value::Null, |n| Value::Str(Cow::Borrowed(n)));
        let timestamp = fields
            .stamp
            .and_then(|stamp| stamp.resolve(settings.default_offset, ctx.received_at))
            .map_or(Value::Null, Value::Timestamp);
        // Every check that can fail runs before the one owned value (JSON structured
        // data) is built, in the order errors were always reported: a rejected payload
        // allocates nothing.
        let structured_data = match (fields.structured_data, settings.structured_data) {
            (None, _) => Value::Null,
            (Some(span), StructuredDataFormat::Raw) => text(Some(span), "structured_data")?,
            (Some(span), StructuredDataFormat::Json) => {
                if settings.invalid_utf8 == InvalidUtf8::Reject {
                    text(Some(span), "structured_data")?;
                }
                Value::Null
            }
        };
        let message = text_limited(payload, fields.message, settings)?;
        let hostname = text(fields.hostname, "hostname")?;
        let app_name = text(fields.app_name, "app_name")?;
        let procid = text(fields.procid, "procid")?;
        let msgid = text(fields.msgid, "msgid")?;
        let structured_data = match (fields.structured_data, settings.structured_data) {
            (Some(span), StructuredDataFormat::Json) => {
                Value::Str(Cow::Owned(sd_json(payload, span)))
            }
            _ => structured_data,
        };
        let row = [
            Value::Str(Cow::Borrowed(fields.format.as_str())),
            facility.map_or(Value::Null, |f| Value::U64(u64::from(f))),
            keyword(facility.and_then(names::facility)),
            severity.map_or(Value::Null, |s| Value::U64(u64::from(s))),
            keyword(severity.and_then(names::severity)),
            timestamp,
            hostname,
            app_name,
            procid,
            msgid,
            structured_data,
            Value::Str(message),
        ];
        sink.row(ctx, &row);
        Ok(())
    }
}

/// The message text, cut to `max_message_bytes` at a character boundary.
fn text_limited<'a>(
    payload: &'a [u8],
    span: Span,
    settings: &Settings,
) -> Result<Cow<'a, str>, DecodeError> {
    let limit = settings.max_message_bytes;
    let mut message = text(payload, span, "message", limit, settings.invalid_utf8)?;
    if message.len() > limit {
        // Replacement characters (3 bytes for 1) can push a lossy conversion past the limit.
        let mut cut = limit;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        match &mut message {
            Cow::Borrowed(s) => *s = s.get(..cut).unwrap_or_default(),
            Cow::Owned(s) => s.truncate(cut),
        }
    }
    Ok(message)
}

/// The text of `span`, at most `limit` bytes (a character cut by the limit is dropped
/// whole), borrowed when it is valid UTF-8.
fn text<'a>(
    payload: &'a [u8],
    span: Span,
    field: &'static str,
    limit: usize,
    invalid: InvalidUtf8,
) -> Result<Cow<'a, str>, DecodeError> {
    let bytes = span.slice(payload);
    let (bytes, cut) = match bytes.get(..limit) {
        Some(head) if head.len() < bytes.len() => (head, true),
        _ => (bytes, false),
    };
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(Cow::Borrowed(s)),
        // Only the limit split this character: drop it.
        Err(e) if cut && e.error_len().is_none() => Ok(Cow::Borrowed(
            std::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or_default())
                .unwrap_or_default(),
        )),
        Err(e) => match invalid {
            InvalidUtf8::Replace => Ok(String::from_utf8_lossy(bytes)),
            InvalidUtf8::Reject => Err(DecodeError::new(
                "invalid_utf8",
                FieldName::Static(field),
                span.start + e.valid_up_to(),
                crate::Detail::text(not_utf8(field)),
            )),
        },
    }
}

/// The detail of an `invalid_utf8` error in `field` (one of the text columns).
fn not_utf8(field: &'static str) -> &'static str {
    match field {
        "hostname" => "hostname is not valid UTF-8",
        "app_name" => "app_name is not valid UTF-8",
        "procid" => "procid is not valid UTF-8",
        "msgid" => "msgid is not valid UTF-8",
        "structured_data" => "structured_data is not valid UTF-8",
        "message" => "message is not valid UTF-8",
        _ => "the field is not valid UTF-8",
    }
}

/// STRUCTURED-DATA as a JSON object (under `invalid_utf8 = "reject"`, the caller has
/// checked it first).
fn sd_json(payload: &[u8], span: Span) -> String {
    let buf = payload.get(..span.end).unwrap_or_default();
    let mut collector = structured_data::JsonCollector::new(buf);
    let mut c = Cursor::new(buf, span.start);
    structured_data::scan(&mut c, &mut collector);
    structured_data::to_json(&collector)
}
