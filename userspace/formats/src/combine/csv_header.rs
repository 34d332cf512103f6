//! The header member a CSV batch starts with ([`crate::TextEncoder::csv_gzip`]): found by
//! inflating that one member, so that later batches join the object without it.

use std::io::Read as _;

use super::{BatchError, CombineKind, GZIP_MAGIC, check_gzip_start, hex_start};

/// The longest header line accepted. Far above any schema's; it bounds what the first
/// member of a batch that is not ours can make us inflate.
const MAX_HEADER_LINE: u64 = 1 << 20;

/// A CSV batch's header line and the length of the gzip member holding it.
#[derive(Debug)]
pub(super) struct HeaderMember {
    /// The header line, CRLF included.
    pub(super) line: Vec<u8>,
    /// Bytes of the batch the member takes; the rows' member(s) follow.
    pub(super) member_len: usize,
}

/// The header member at the start of `batch`.
///
/// # Errors
/// [`BatchError::Malformed`]: the batch does not start with a gzip member holding exactly
/// one CSV record, or nothing follows that member (a CSV batch always has a rows member,
/// empty or not).
pub(super) fn split(batch: &[u8]) -> Result<HeaderMember, BatchError> {
    let malformed = |reason: String| BatchError::Malformed {
        kind: CombineKind::CsvGzip,
        reason,
    };
    check_gzip_start(CombineKind::CsvGzip, batch)?;
    // The bufread decoder stops at the end of the first member and leaves the rest of the
    // slice unread: what it consumed is the member's length.
    let mut decoder = flate2::bufread::GzDecoder::new(batch);
    let mut line = Vec::new();
    (&mut decoder)
        .take(MAX_HEADER_LINE + 1)
        .read_to_end(&mut line)
        .map_err(|e| malformed(format!("first gzip member: {e}")))?;
    if line.len() as u64 > MAX_HEADER_LINE {
        return Err(malformed(format!(
            "the first gzip member holds more than {MAX_HEADER_LINE} bytes, not a header line"
        )));
    }
    let rest = decoder.into_inner();
    let member_len = batch.len() - rest.len();
    if !is_one_record(&line) {
        return Err(malformed(
            "the first gzip member is not one CSV header line ending in CRLF (a batch \
             written before the header had a member of its own?)"
                .to_owned(),
        ));
    }
    if !rest.starts_with(&GZIP_MAGIC) {
        return Err(malformed(format!(
            "the header member (bytes 0..{member_len}) is followed by {}, not a gzip member",
            hex_start(rest)
        )));
    }
    Ok(HeaderMember { line, member_len })
}

/// Whether `text` is one CSV record ending in CRLF: no line break outside quotes before
/// the last, and every quote closed (a quoted `"` is written `""`, which toggles twice).
fn is_one_record(text: &[u8]) -> bool {
    let Some(body) = text.strip_suffix(b"\r\n") else {
        return false;
    };
    let mut quoted = false;
    for &b in body {
        match b {
            b'"' => quoted = !quoted,
            b'\r' | b'\n' if !quoted => return false,
            _ => {}
        }
    }
    !quoted
}

#[cfg(test)]
mod tests {
    use super::is_one_record;

    #[test]
    fn one_record_is_one_unquoted_line_break_at_the_end() {
        assert!(is_one_record(b"a,b\r\n"));
        assert!(is_one_record(b"\"a\r\nb\",\"c\"\"\"\r\n"));
        assert!(!is_one_record(b"a,b"));
        assert!(!is_one_record(b"a,b\n"));
        assert!(!is_one_record(b"a,b\r\n1,2\r\n"));
        assert!(!is_one_record(b"\"a,b\r\n"));
        assert!(!is_one_record(b""));
    }
}
