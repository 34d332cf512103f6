//! The decoder interface.

use std::{fmt, net::IpAddr, sync::Arc};

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
/// `kind` as labels; `field`/`offset`/`detail` go into a sampled log line.
///
/// Building and returning one allocates nothing (a flood of malformed payloads must cost
/// no more per packet than good ones): the field is a static name, the detail
/// is a static text with a few numbers, both rendered only by `Display`. The one
/// exception is a message only known at run time, a script's own error text
/// ([`Detail::message`], the `lua` decoder): the script's error already allocated it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: field {} at offset {offset}: {detail}", QuotedField(field))]
pub struct DecodeError {
    /// Short stable reason, a bounded set per decoder (`truncated`, `bad_version`, `no_template`, ...).
    pub kind: DecodeErrorKind,
    /// The field being decoded, if any.
    pub field: FieldName,
    /// Byte offset in the payload where decoding failed.
    pub offset: usize,
    /// Human detail.
    pub detail: Detail,
}

/// A decode error's stable name.
pub type DecodeErrorKind = &'static str;

impl DecodeError {
    /// A new error.
    pub fn new(kind: DecodeErrorKind, field: FieldName, offset: usize, detail: Detail) -> Self {
        Self {
            kind,
            field,
            offset,
            detail,
        }
    }

    /// The field's name as text (allocates: for logs and tests, not the packet path).
    pub fn field_text(&self) -> Option<String> {
        match self.field {
            FieldName::None => None,
            _ => Some(self.field.to_string()),
        }
    }

    /// The human detail as text (allocates: for logs and tests, not the packet path).
    pub fn message(&self) -> String {
        self.detail.to_string()
    }
}

/// The field a [`DecodeError`] is about, named without allocating.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FieldName {
    /// No particular field.
    #[default]
    None,
    /// A field of the wire format (`version`, `set length`, ...), or a configured field
    /// of a layout (its name interned when the layout is compiled).
    Static(&'static str),
    /// An element of a NetFlow v9 / IPFIX template.
    TemplateElement {
        /// Template id.
        template: u16,
        /// Element (information element) id.
        element: u16,
    },
}

impl fmt::Display for FieldName {
    /// The name as text (nothing for `None`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => Ok(()),
            Self::Static(name) => f.write_str(name),
            Self::TemplateElement { template, element } => {
                write!(f, "template {template} element {element}")
            }
        }
    }
}

/// A field in a log line as it always read: `Some("name")` or `None` (the field was an
/// `Option<String>` printed with `{:?}`).
struct QuotedField<'a>(&'a FieldName);

impl fmt::Display for QuotedField<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            FieldName::None => f.write_str("None"),
            name => write!(f, "Some({:?})", name.to_string()),
        }
    }
}

/// Most numbers a [`Detail`] carries.
pub const DETAIL_ARGS: usize = 6;

/// One number of a [`Detail`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A signed number.
    Int(i64),
    /// An unsigned number.
    Uint(u64),
}

macro_rules! arg_from {
    ($variant:ident, $wide:ty: $($t:ty),*) => {$(
        impl From<$t> for Arg {
            fn from(n: $t) -> Self {
                Self::$variant(<$wide>::from(n))
            }
        }
    )*};
}
arg_from!(Int, i64: i8, i16, i32, i64);
arg_from!(Uint, u64: u8, u16, u32, u64);

impl From<usize> for Arg {
    fn from(n: usize) -> Self {
        // usize is at most 64 bits on every supported target.
        Self::Uint(n as u64)
    }
}

/// Layout values are read from at most 8 bytes, so they fit `i64` or `u64`; anything
/// wider would be shown saturated.
impl From<i128> for Arg {
    fn from(n: i128) -> Self {
        match (i64::try_from(n), u64::try_from(n)) {
            (Ok(n), _) => Self::Int(n),
            (_, Ok(n)) => Self::Uint(n),
            _ if n < 0 => Self::Int(i64::MIN),
            _ => Self::Uint(u64::MAX),
        }
    }
}

/// The human detail of a [`DecodeError`]: a static text whose `{}` are replaced by the
/// numbers in order when displayed (`"message length {}, payload {} bytes"`, `[74, 80]`),
/// or a message made at run time ([`Detail::message`]), shown as it is.
/// Packed (numbers as 64-bit words, a bit per signed one) so that a `Result` carrying a
/// `DecodeError` stays small.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detail {
    text: DetailText,
    words: [u64; DETAIL_ARGS],
    /// Bit `i`: `words[i]` is an `i64`.
    signed: u8,
}

/// The text of a [`Detail`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum DetailText {
    /// A template with `{}` for the numbers.
    Template(&'static str),
    /// A message known only at run time, without numbers (a thin pointer, so that the
    /// enum is no larger than the `&str`).
    Message(Arc<String>),
}

impl Detail {
    /// A detail with `N` numbers (at most [`DETAIL_ARGS`], checked at compile time).
    pub fn new<const N: usize>(text: &'static str, values: [Arg; N]) -> Self {
        const { assert!(N <= DETAIL_ARGS, "too many values for a Detail") };
        let mut detail = Self::text(text);
        for (i, (word, value)) in detail.words.iter_mut().zip(values).enumerate() {
            *word = match value {
                Arg::Int(n) => {
                    detail.signed |= 1 << i;
                    n as u64
                }
                Arg::Uint(n) => n,
            };
        }
        detail
    }

    /// A detail without numbers.
    pub const fn text(text: &'static str) -> Self {
        Self {
            text: DetailText::Template(text),
            words: [0; DETAIL_ARGS],
            signed: 0,
        }
    }

    /// A detail whose text is known only at run time (a script's error message), shown as
    /// it is (`{}` in it are not placeholders). Allocates: for decoders whose errors carry
    /// text from outside, not for errors a payload alone can provoke at no cost.
    pub fn message(text: impl Into<String>) -> Self {
        Self {
            text: DetailText::Message(Arc::new(text.into())),
            words: [0; DETAIL_ARGS],
            signed: 0,
        }
    }
}

/// `Detail::new(text, [values...])` with each value converted by `Arg::from`.
#[macro_export]
macro_rules! detail {
    ($text:expr $(, $value:expr)* $(,)?) => {
        $crate::decoder::Detail::new($text, [$($crate::decoder::Arg::from($value)),*])
    };
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let template = match &self.text {
            DetailText::Template(template) => template,
            DetailText::Message(message) => return f.write_str(message),
        };
        let mut parts = template.split("{}");
        if let Some(first) = parts.next() {
            f.write_str(first)?;
        }
        for (i, part) in parts.enumerate() {
            match self.words.get(i) {
                Some(&word) if self.signed & (1 << i) != 0 => write!(f, "{}", word as i64)?,
                Some(word) => write!(f, "{word}")?,
                None => {}
            }
            f.write_str(part)?;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::{DecodeError, Detail, FieldName};

    #[test]
    fn errors_render_their_detail_only_when_displayed() {
        let e = DecodeError::new(
            "bad_value",
            FieldName::TemplateElement {
                template: 256,
                element: 8,
            },
            40,
            detail!(
                "value of {} bytes, accepted {} to {}",
                17_u16,
                1_u16,
                16_u16
            ),
        );
        assert_eq!(
            e.to_string(),
            "bad_value: field Some(\"template 256 element 8\") at offset 40: value of 17 \
             bytes, accepted 1 to 16"
        );
        assert_eq!(e.field_text().as_deref(), Some("template 256 element 8"));
        let e = DecodeError::new("empty", FieldName::None, 0, Detail::text("empty payload"));
        assert_eq!(
            e.to_string(),
            "empty: field None at offset 0: empty payload"
        );
        assert_eq!(e.field_text(), None);
        // Signed and wide values; a value without its `{}` is not shown.
        let d = detail!("{} {} {}", -3_i64, i128::from(u64::MAX), i128::MIN);
        assert_eq!(
            d.to_string(),
            "-3 18446744073709551615 -9223372036854775808"
        );
        assert_eq!(detail!("none", 1_u8).to_string(), "none");
        // A run-time message is shown as it is, braces and all.
        let e = DecodeError::new(
            "lua_error",
            FieldName::None,
            0,
            Detail::message("parse.lua:3: bad {} value"),
        );
        assert_eq!(
            e.to_string(),
            "lua_error: field None at offset 0: parse.lua:3: bad {} value"
        );
        assert_eq!(e.message(), "parse.lua:3: bad {} value");
        // Small enough that a `Result` carrying it is no burden on the good path.
        assert!(
            size_of::<DecodeError>() <= 128,
            "{}",
            size_of::<DecodeError>()
        );
    }
}
