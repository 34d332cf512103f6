//! RFC 5424 messages: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]`.
//!
//! Strict where the grammar is unambiguous, lenient where senders are known to stray: a
//! message cut short keeps the fields it has (the rest are null), a timestamp that does not
//! parse is null without losing the other fields, an offset-less timestamp takes the
//! configured zone, missing STRUCTURED-DATA (MSG right after MSGID) is read as MSG, and a
//! UTF-8 BOM in front of MSG is dropped.

use super::{
    cursor::{Cursor, Span},
    message::{Fields, Format, non_nil, strip_bom},
    structured_data::{self, Ignore},
    timestamp::{self, Stamp},
};

/// Parses the rest of a message whose cursor is just past `1 `.
pub(crate) fn parse(mut c: Cursor<'_>, pri: Option<u8>) -> Fields {
    let buf = c.buf();
    let mut fields = Fields::new(Format::Rfc5424, pri, buf.len());
    fields.stamp = stamp(buf, c.token());

    let mut header = [None; 4];
    for slot in &mut header {
        if !c.eat(b' ') {
            return fields_with(fields, header);
        }
        *slot = non_nil(buf, c.token());
    }
    fields = fields_with(fields, header);
    if !c.eat(b' ') {
        return fields;
    }

    let has_sd = match c.peek() {
        Some(b'-') if matches!(c.peek_at(1), None | Some(b' ')) => {
            c.next_byte();
            true
        }
        Some(b'[') => {
            fields.structured_data = structured_data::scan(&mut c, &mut Ignore);
            fields.structured_data.is_some()
        }
        _ => false,
    };
    if has_sd {
        c.eat(b' ');
    }
    fields.message = strip_bom(buf, c.rest());
    fields
}

fn fields_with(
    mut fields: Fields,
    [hostname, app_name, procid, msgid]: [Option<Span>; 4],
) -> Fields {
    fields.hostname = hostname;
    fields.app_name = app_name;
    fields.procid = procid;
    fields.msgid = msgid;
    fields
}

/// The TIMESTAMP token: `-`, or an RFC 3339 timestamp that fills the whole token.
fn stamp(buf: &[u8], token: Span) -> Option<Stamp> {
    let mut c = Cursor::new(buf.get(..token.end)?, token.start);
    let stamp = timestamp::rfc3339(&mut c, false)?;
    c.at_end().then_some(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(buf: &[u8], span: Option<Span>) -> Option<&str> {
        span.and_then(|s| std::str::from_utf8(s.slice(buf)).ok())
    }

    #[test]
    fn header_cut_short_keeps_what_is_there() {
        let buf = b"1 2024-03-15T10:20:30Z host app";
        let fields = parse(Cursor::new(buf, 2), Some(13));
        assert_eq!(text(buf, fields.hostname), Some("host"));
        assert_eq!(text(buf, fields.app_name), Some("app"));
        assert_eq!(fields.procid, None);
        assert_eq!(fields.message, Span::new(buf.len(), buf.len()));
        assert!(fields.stamp.is_some());
    }

    #[test]
    fn timestamp_with_trailing_garbage_is_null() {
        let buf = b"1 2024-03-15T10:20:30Zjunk host app - - - msg";
        let fields = parse(Cursor::new(buf, 2), None);
        assert_eq!(fields.stamp, None);
        assert_eq!(text(buf, fields.hostname), Some("host"));
        assert_eq!(text(buf, Some(fields.message)), Some("msg"));
    }
}
