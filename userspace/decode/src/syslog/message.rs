//! From a payload to the spans of its syslog fields: framing clean-up, PRI, and the choice
//! between the RFC 5424 and the RFC 3164 parser.
//!
//! Nothing here allocates or converts text: the result is a set of [`Span`]s into the
//! payload and a [`Stamp`], which the decoder turns into values. That keeps the parsers
//! free of policy (UTF-8 handling, zones, limits) and lets them be tested on their own.

use super::{
    cursor::{Cursor, Span},
    rfc3164, rfc5424,
    timestamp::Stamp,
};
use crate::{DecodeError, Detail, FieldName};

/// Which grammar a message was read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// BSD syslog and its vendor variants.
    Rfc3164,
    /// The syslog protocol.
    Rfc5424,
    /// Neither PRI nor a timestamp: the whole payload is the message.
    Unknown,
}

impl Format {
    /// The `format` column's value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Rfc3164 => "rfc3164",
            Self::Rfc5424 => "rfc5424",
            Self::Unknown => "unknown",
        }
    }
}

/// The fields of one message, as spans of the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fields {
    pub format: Format,
    /// PRI value, 0..=191, `None` when missing or invalid.
    pub pri: Option<u8>,
    pub stamp: Option<Stamp>,
    pub hostname: Option<Span>,
    pub app_name: Option<Span>,
    pub procid: Option<Span>,
    pub msgid: Option<Span>,
    pub structured_data: Option<Span>,
    pub message: Span,
}

impl Fields {
    /// Fields with only a format and PRI, the message empty at `end`.
    pub(crate) fn new(format: Format, pri: Option<u8>, end: usize) -> Self {
        Self {
            format,
            pri,
            stamp: None,
            hostname: None,
            app_name: None,
            procid: None,
            msgid: None,
            structured_data: None,
            message: Span::new(end, end),
        }
    }
}

/// Splits `payload` into its fields. Fails only on an empty payload (nothing but
/// trailing NUL/CR/LF counts as empty); anything else is parsed as far as it goes.
pub(crate) fn split(payload: &[u8]) -> Result<Fields, DecodeError> {
    let end = payload
        .iter()
        .rposition(|b| !matches!(b, b'\0' | b'\n' | b'\r'))
        .map_or(0, |last| last + 1);
    if end == 0 {
        return Err(DecodeError::new(
            "empty",
            FieldName::None,
            0,
            Detail::text("empty payload"),
        ));
    }
    let mut c = Cursor::new(payload.get(..end).unwrap_or_default(), 0);
    let pri = pri(&mut c);
    if is_rfc5424(&c) {
        c.set_pos(c.pos() + 2);
        Ok(rfc5424::parse(c, pri))
    } else {
        Ok(rfc3164::parse(c, pri))
    }
}

/// `<N>` with N in 0..=191 (leading zeros tolerated). The cursor moves only on success.
fn pri(c: &mut Cursor<'_>) -> Option<u8> {
    let start = c.pos();
    if c.eat(b'<')
        && let Some(value) = c.digits(1, 3)
        && value <= 191
        && c.eat(b'>')
    {
        return u8::try_from(value).ok();
    }
    c.set_pos(start);
    None
}

/// VERSION `1`, a space, and the start of a TIMESTAMP (a digit, or `-` for none).
fn is_rfc5424(c: &Cursor<'_>) -> bool {
    c.peek() == Some(b'1')
        && c.peek_at(1) == Some(b' ')
        && c.peek_at(2)
            .is_some_and(|b| b == b'-' || b.is_ascii_digit())
}

/// `None` for an empty span or the NILVALUE `-`.
pub(crate) fn non_nil(buf: &[u8], span: Span) -> Option<Span> {
    match span.slice(buf) {
        b"" | b"-" => None,
        _ => Some(span),
    }
}

/// The span without a leading UTF-8 byte order mark.
pub(crate) fn strip_bom(buf: &[u8], span: Span) -> Span {
    if span.slice(buf).starts_with(b"\xEF\xBB\xBF") {
        Span::new(span.start + 3, span.end)
    } else {
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pri_bounds() {
        for (text, expected, pos) in [
            ("<0>", Some(0), 3),
            ("<191>", Some(191), 5),
            ("<013>", Some(13), 5),
            ("<192>", None, 0),
            ("<1234>", None, 0),
            ("<>", None, 0),
            ("<13", None, 0),
            ("13>", None, 0),
        ] {
            let mut c = Cursor::new(text.as_bytes(), 0);
            assert_eq!((pri(&mut c), c.pos()), (expected, pos), "{text}");
        }
    }

    #[test]
    fn empty_after_trailing_framing_is_an_error() {
        for payload in [&b""[..], b"\n", b"\0\0", b"\r\n"] {
            let err = split(payload).map_err(|e| e.kind);
            assert_eq!(err, Err("empty"));
        }
    }

    #[test]
    fn version_detection() {
        let format = |t: &str| split(t.as_bytes()).map(|f| f.format);
        assert_eq!(format("<13>1 - - - - - -"), Ok(Format::Rfc5424));
        assert_eq!(
            format("<13>1 2024-03-15T10:20:30Z h a p m - x"),
            Ok(Format::Rfc5424)
        );
        assert_eq!(format("1 - - - - - - x"), Ok(Format::Rfc5424));
        assert_eq!(format("<13>1 apple"), Ok(Format::Rfc3164));
        assert_eq!(format("<189>1: Mar 15 10:20:30: %SYS"), Ok(Format::Rfc3164));
        assert_eq!(format("hello"), Ok(Format::Unknown));
    }
}
