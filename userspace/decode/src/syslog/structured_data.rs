//! RFC 5424 STRUCTURED-DATA: finding where it ends, and (optionally) rendering it as JSON.
//!
//! The scanner is needed whatever the output: SD comes between the header and MSG, its
//! values may hold spaces and escaped quotes, so only a real scan says where MSG starts.
//! It reports elements and parameters to a visitor; the raw output passes a no-op one and
//! borrows the SD text from the payload, the JSON output builds an object from them.

use std::{borrow::Cow, collections::HashMap, fmt::Write as _};

use super::cursor::{Cursor, Span};

/// SD-ID and PARAM-NAME are at most 32 characters by the RFC; longer names are accepted
/// up to this bound (vendors exceed 32 with long enterprise numbers).
const MAX_NAME: usize = 255;

/// What the scanner saw, in order.
pub(crate) trait SdVisitor {
    /// An SD-ELEMENT starts, with this SD-ID.
    fn element(&mut self, id: Span);
    /// A PARAM-NAME="PARAM-VALUE" of the current element (value without its quotes,
    /// escapes still in).
    fn param(&mut self, name: Span, value: Span);
}

/// A visitor that ignores everything (raw output).
pub(crate) struct Ignore;

impl SdVisitor for Ignore {
    fn element(&mut self, _id: Span) {}
    fn param(&mut self, _name: Span, _value: Span) {}
}

/// Scans one or more SD-ELEMENTs starting at the cursor (which must be on `[`). On
/// success returns their span and leaves the cursor after the last `]`; on malformed input
/// returns `None` and leaves the cursor where it was.
pub(crate) fn scan(c: &mut Cursor<'_>, visitor: &mut impl SdVisitor) -> Option<Span> {
    let start = c.pos();
    let scanned = (|| {
        while c.eat(b'[') {
            visitor.element(name(c)?);
            loop {
                match c.next_byte()? {
                    b']' => break,
                    b' ' => {
                        c.skip_spaces();
                        // Tolerate a space before the closing bracket.
                        if c.eat(b']') {
                            break;
                        }
                        let param = name(c)?;
                        if !(c.eat(b'=') && c.eat(b'"')) {
                            return None;
                        }
                        let value = quoted_value(c)?;
                        visitor.param(param, value);
                    }
                    _ => return None,
                }
            }
        }
        Some(Span::new(start, c.pos()))
    })();
    match scanned {
        Some(span) if !span.is_empty() => Some(span),
        _ => {
            c.set_pos(start);
            None
        }
    }
}

/// SD-NAME: printable US-ASCII except `=`, space, `]` and `"`.
fn name(c: &mut Cursor<'_>) -> Option<Span> {
    let span = c.take_while(|b| matches!(b, 33..=126) && !matches!(b, b'=' | b']' | b'"'));
    (1..=MAX_NAME).contains(&span.len()).then_some(span)
}

/// The value up to the closing unescaped `"`, which is consumed but not included.
fn quoted_value(c: &mut Cursor<'_>) -> Option<Span> {
    let start = c.pos();
    loop {
        match c.next_byte()? {
            b'"' => return Some(Span::new(start, c.pos() - 1)),
            b'\\' => {
                c.next_byte()?;
            }
            _ => {}
        }
    }
}

/// One SD-ELEMENT gathered for JSON: its ID and its parameters, each with all its values.
struct Element {
    id: Span,
    params: Vec<(Span, Vec<Span>)>,
}

/// Collects the scan for [`to_json`]: elements with the same SD-ID (which the RFC forbids)
/// are merged, and a PARAM-NAME that repeats (which the RFC allows) keeps every value.
#[derive(Default)]
pub(crate) struct JsonCollector<'a> {
    buf: &'a [u8],
    elements: Vec<Element>,
    element_by_id: HashMap<&'a [u8], usize>,
    param_by_name: HashMap<(usize, &'a [u8]), usize>,
    current: usize,
}

impl<'a> JsonCollector<'a> {
    /// A collector over spans of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            ..Self::default()
        }
    }
}

impl SdVisitor for JsonCollector<'_> {
    fn element(&mut self, id: Span) {
        let key = id.slice(self.buf);
        self.current = *self.element_by_id.entry(key).or_insert_with(|| {
            self.elements.push(Element {
                id,
                params: Vec::new(),
            });
            self.elements.len() - 1
        });
    }

    fn param(&mut self, name: Span, value: Span) {
        let Some(element) = self.elements.get_mut(self.current) else {
            return;
        };
        let key = (self.current, name.slice(self.buf));
        let index = *self.param_by_name.entry(key).or_insert_with(|| {
            element.params.push((name, Vec::new()));
            element.params.len() - 1
        });
        if let Some((_, values)) = element.params.get_mut(index) {
            values.push(value);
        }
    }
}

/// Renders the collected SD as a JSON object:
/// `{"SD-ID":{"name":"value","repeated":["a","b"]},...}`, values unescaped (`\"`, `\\`,
/// `\]`). Text that is not UTF-8 is replaced with U+FFFD (the caller has already rejected
/// it when the configuration says so).
pub(crate) fn to_json(collected: &JsonCollector<'_>) -> String {
    let buf = collected.buf;
    let mut out = String::with_capacity(2 * collected.buf.len().min(4096));
    out.push('{');
    for (i, element) in collected.elements.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(&mut out, &String::from_utf8_lossy(element.id.slice(buf)));
        out.push_str(":{");
        for (j, (name, values)) in element.params.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            json_string(&mut out, &String::from_utf8_lossy(name.slice(buf)));
            out.push(':');
            if let [value] = values.as_slice() {
                json_string(&mut out, &unescape(value.slice(buf)));
            } else {
                out.push('[');
                for (k, value) in values.iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    json_string(&mut out, &unescape(value.slice(buf)));
                }
                out.push(']');
            }
        }
        out.push('}');
    }
    out.push('}');
    out
}

/// A PARAM-VALUE with its escapes resolved: `\"`, `\\` and `\]` stand for the character;
/// a backslash before anything else is kept (RFC 5424 section 6.3.3).
fn unescape(raw: &[u8]) -> Cow<'_, str> {
    if !raw.contains(&b'\\') {
        return String::from_utf8_lossy(raw);
    }
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match (b, raw.get(i + 1)) {
            (b'\\', Some(&next @ (b'"' | b'\\' | b']'))) => {
                bytes.push(next);
                i += 2;
            }
            _ => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
}

/// Appends `text` as a JSON string literal.
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_str(text: &str) -> (Option<(usize, usize)>, usize) {
        let mut c = Cursor::new(text.as_bytes(), 0);
        let span = scan(&mut c, &mut Ignore);
        (span.map(|s| (s.start, s.end)), c.pos())
    }

    fn json(text: &str) -> Option<String> {
        let mut c = Cursor::new(text.as_bytes(), 0);
        let mut collector = JsonCollector::new(text.as_bytes());
        scan(&mut c, &mut collector)?;
        Some(to_json(&collector))
    }

    #[test]
    fn scan_finds_the_end_of_sd() {
        let sd = r#"[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#;
        let text = format!("{sd} msg");
        assert_eq!(scan_str(&text), (Some((0, sd.len())), sd.len()));
    }

    #[test]
    fn scan_handles_escapes_spaces_and_brackets_in_values() {
        let sd = r#"[a@1 k="x \"y\" ] z\\"]"#;
        assert_eq!(scan_str(sd), (Some((0, sd.len())), sd.len()));
        assert_eq!(
            json(sd).as_deref(),
            Some(r#"{"a@1":{"k":"x \"y\" ] z\\"}}"#)
        );
    }

    #[test]
    fn malformed_sd_is_rejected_without_moving() {
        for text in [
            "[",
            "[]",
            "[a",
            "[a k]",
            "[a k=v]",
            r#"[a k="v]"#,
            r#"[a k="v"x]"#,
            "[a=b]",
            "- x",
            "",
        ] {
            assert_eq!(scan_str(text), (None, 0), "{text:?}");
        }
    }

    #[test]
    fn element_without_params_and_trailing_space() {
        assert_eq!(
            json("[a][b k=\"v\" ]").as_deref(),
            Some(r#"{"a":{},"b":{"k":"v"}}"#)
        );
    }

    #[test]
    fn json_merges_repeated_ids_and_lists_repeated_params() {
        let sd = r#"[a k="1" k="2" j="3"][b k="4"][a k="5" l="6"]"#;
        assert_eq!(
            json(sd).as_deref(),
            Some(r#"{"a":{"k":["1","2","5"],"j":"3","l":"6"},"b":{"k":"4"}}"#)
        );
    }

    #[test]
    fn json_escapes_control_characters_and_keeps_unknown_escapes() {
        let sd = "[a k=\"line1\nline2\t\u{1}\\x\"]";
        assert_eq!(
            json(sd).as_deref(),
            Some(r#"{"a":{"k":"line1\nline2\t\u0001\\x"}}"#)
        );
    }
}
