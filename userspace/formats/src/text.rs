//! The text forms of values shared by the NDJSON and CSV writers: numbers, hex, base64,
//! addresses, MAC addresses, JSON string escaping. All append to a reused buffer.

use std::net::IpAddr;

use base64::Engine as _;

/// Appends `v` in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `v` in decimal, with a `-` when negative.
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Appends a finite `f` in Rust's shortest round-trip form (`1.5`, `1e300`, `-0.0`), which
/// JSON, CSV readers and BigQuery's FLOAT64 parser all accept. Callers write null for
/// non-finite values, which have no JSON form.
pub fn push_f64(out: &mut Vec<u8>, f: f64) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{f:?}");
}

/// Appends `bytes` as lowercase hex.
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
}

/// Appends `bytes` as standard base64 with padding.
pub fn push_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    let encoded_len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.resize(start + encoded_len, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

/// Appends `mac` as `aa:bb:cc:dd:ee:ff`.
pub fn push_mac(out: &mut Vec<u8>, mac: &[u8; 6]) {
    for (i, byte) in mac.iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        push_hex(out, &[*byte]);
    }
}

/// Appends `ip` in canonical text form (RFC 5952 for IPv6).
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        // The common case, without the formatting machinery.
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, u64::from(*octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `s` as a JSON string literal (quotes, backslashes and control characters
/// escaped; everything else, including non-ASCII, as UTF-8).
pub fn push_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            push_hex(out, &[b]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn every_text_form_is_exact() {
        assert_eq!(text(|o| push_u64(o, u64::MAX)), "18446744073709551615");
        assert_eq!(text(|o| push_i64(o, i64::MIN)), "-9223372036854775808");
        assert_eq!(text(|o| push_i64(o, 0)), "0");
        assert_eq!(text(|o| push_f64(o, 1.5)), "1.5");
        assert_eq!(text(|o| push_f64(o, 1e300)), "1e300");
        assert_eq!(text(|o| push_f64(o, -0.25)), "-0.25");
        assert_eq!(text(|o| push_hex(o, &[0, 0xab, 0xff])), "00abff");
        assert_eq!(text(|o| push_base64(o, b"hello")), "aGVsbG8=");
        assert_eq!(text(|o| push_base64(o, b"")), "");
        assert_eq!(
            text(|o| push_mac(o, &[2, 0, 0, 0, 0xab, 0x0c])),
            "02:00:00:00:ab:0c"
        );
        assert_eq!(
            text(|o| push_ip(o, IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)))),
            "203.0.113.5"
        );
        assert_eq!(
            text(|o| push_ip(
                o,
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2))
            )),
            "2001:db8::2"
        );
        assert_eq!(
            text(|o| push_json_string(o, "q\" b\\ n\n r\r t\t c\u{1} d\u{7f} é")),
            "\"q\\\" b\\\\ n\\n r\\r t\\t c\\u0001 d\\u007f é\""
        );
    }
}
