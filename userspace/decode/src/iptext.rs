//! IPv4 addresses as dotted-decimal text, written straight into a buffer.
//!
//! A sender's address is text in every NDJSON and CSV row (and Parquet string column) and
//! in every Lua event (`host`, as Vector's socket source gives it); `Display` goes through
//! the formatting machinery, octet by octet, at several times the cost.

/// Writes an IPv4 address in dotted decimal at the start of `text`; returns its length.
#[inline]
pub fn ipv4_text(text: &mut [u8; 15], octets: [u8; 4]) -> usize {
    let mut len = 0;
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn every_octet_value_reads_as_display_writes_it() {
        let mut text = [0u8; 15];
        for octet in 0..=255u8 {
            for octets in [
                [octet, 0, 9, 10],
                [203, 0, 113, octet],
                [255, 255, 255, octet],
            ] {
                let len = ipv4_text(&mut text, octets);
                assert_eq!(
                    &text[..len],
                    Ipv4Addr::from(octets).to_string().as_bytes(),
                    "{octets:?}"
                );
            }
        }
    }
}
