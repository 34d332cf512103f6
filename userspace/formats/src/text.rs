//! The text forms of values shared by the NDJSON and CSV writers (and the Parquet
//! writer's string columns): numbers, hex, base64, addresses ([`LastAddress`] keeps a
//! column's last one), MAC addresses, JSON string escaping. All append to a [`TextOut`]: a
//! reused `Vec<u8>`, or a row's `Line` (`textout`).

use std::net::IpAddr;

use base64::Engine as _;

use sluice_decode::iptext::ipv4_text;

use crate::textout::TextOut;

/// "00" to "99", for writing two decimal digits at a time.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes `v` in decimal at the start of `buf`; returns the number of digits.
#[inline]
fn decimal(buf: &mut [u8; 20], mut v: u64) -> usize {
    let digits = v.checked_ilog10().map_or(1, |d| d as usize + 1);
    let mut i = digits;
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if v >= 10 {
        let pair = v as usize * 2;
        buf[..2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        buf[0] = b'0' + v as u8;
    }
    digits
}

/// Numbers below this have at most [`WORD_DIGITS`] digits and are built in a register.
const WORD_LIMIT: u64 = 10u64.pow(WORD_DIGITS as u32);
const WORD_DIGITS: usize = 16;

/// `v` (below [`WORD_LIMIT`]) in decimal as the bytes of a word, first digit lowest, and
/// the number of digits. (Digits written to a stack array a byte or two at a time and then
/// copied as one wide load stall on the stores: most of what a number cost.)
#[inline]
fn decimal_word(mut v: u64) -> (u128, usize) {
    let digits = v.checked_ilog10().map_or(1, |d| d as usize + 1);
    let mut word = 0u128;
    let mut i = digits;
    while i >= 2 {
        i -= 2;
        let pair = (v % 100) as usize * 2;
        v /= 100;
        let text = u16::from_le_bytes([DIGIT_PAIRS[pair], DIGIT_PAIRS[pair + 1]]);
        word |= u128::from(text) << (8 * i);
    }
    if i == 1 {
        word |= u128::from(b'0' + v as u8);
    }
    (word, digits)
}

/// Appends the first `len` bytes (at most 16) of `word`'s little-endian bytes, with one
/// 16-byte copy.
#[inline(always)]
fn push_word<O: TextOut>(out: &mut O, word: u128, len: usize) {
    out.push_prefix(&word.to_le_bytes(), len);
}

/// Appends `v` in decimal.
#[inline(always)]
pub fn push_u64<O: TextOut>(out: &mut O, v: u64) {
    if v < WORD_LIMIT {
        let (word, len) = decimal_word(v);
        push_word(out, word, len);
    } else {
        let mut buf = [0u8; 20];
        let len = decimal(&mut buf, v);
        out.push_prefix(&buf, len);
    }
}

/// Appends an IPv4 address in dotted decimal, built on the stack and appended at once
/// (a record has up to four of them).
#[inline(always)]
fn push_ipv4<O: TextOut>(out: &mut O, octets: [u8; 4]) {
    let mut text = [0u8; 15];
    let len = ipv4_text(&mut text, octets);
    out.push_prefix(&text, len);
}

/// Appends `v` in decimal, with a `-` when negative.
#[inline]
pub fn push_i64<O: TextOut>(out: &mut O, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Appends a finite `f` in Rust's shortest round-trip form (`1.5`, `1e300`, `-0.0`), which
/// JSON, CSV readers and BigQuery's FLOAT64 parser all accept. Callers write null for
/// non-finite values, which have no JSON form.
#[inline(always)]
pub fn push_f64<O: TextOut>(out: &mut O, f: f64) {
    push_formatted(out, format_args!("{f:?}"));
}

/// Room for a formatted float (at most 24 bytes, `-2.2250738585072014e-308`) or IPv6
/// address (at most 45, `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
const FORMATTED_ROOM: usize = 48;

/// Appends `args` formatted, through a stack buffer (a fixed-size copy) where it fits.
#[inline(always)]
fn push_formatted<O: TextOut>(out: &mut O, args: std::fmt::Arguments<'_>) {
    let mut text = [0u8; FORMATTED_ROOM];
    match formatted(&mut text, args) {
        Some(len) => out.push_prefix(&text, len),
        None => out.extend_from_slice(args.to_string().as_bytes()),
    }
}

/// Writes `args` at the start of `text`; its length, or `None` if it does not fit.
fn formatted(text: &mut [u8; FORMATTED_ROOM], args: std::fmt::Arguments<'_>) -> Option<usize> {
    use std::io::Write as _;
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    cursor.write_fmt(args).ok()?;
    usize::try_from(cursor.position()).ok()
}

/// Lowercase hex digits, by value.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as lowercase hex.
#[inline(always)]
pub fn push_hex<O: TextOut>(out: &mut O, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX_DIGITS[usize::from(b >> 4)]);
        out.push(HEX_DIGITS[usize::from(b & 0x0f)]);
    }
}

/// Appends `bytes` as standard base64 with padding.
#[inline(always)]
pub fn push_base64<O: TextOut>(out: &mut O, bytes: &[u8]) {
    let encoded_len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.fill_with(encoded_len, |text| {
        base64::engine::general_purpose::STANDARD
            .encode_slice(bytes, text)
            .unwrap_or(0)
    });
}

/// Appends `mac` as `aa:bb:cc:dd:ee:ff`.
#[inline(always)]
pub fn push_mac<O: TextOut>(out: &mut O, mac: &[u8; 6]) {
    let mut text = *b"00:00:00:00:00:00";
    for (i, byte) in mac.iter().enumerate() {
        text[3 * i] = HEX_DIGITS[usize::from(byte >> 4)];
        text[3 * i + 1] = HEX_DIGITS[usize::from(byte & 0x0f)];
    }
    out.extend_from_slice(&text);
}

/// Appends `ip` in canonical text form (RFC 5952 for IPv6).
#[inline(always)]
pub fn push_ip<O: TextOut>(out: &mut O, ip: IpAddr) {
    match ip {
        // The common case, without the formatting machinery.
        IpAddr::V4(v4) => push_ipv4(out, v4.octets()),
        IpAddr::V6(v6) => push_formatted(out, format_args!("{v6}")),
    }
}

/// The text of the last address written in one column. Consecutive packets mostly share
/// their tunnel and often their addresses, so an address is formatted when it changes and
/// copied otherwise.
#[derive(Clone, Debug)]
pub struct LastAddress {
    ip: Option<IpAddr>,
    /// Room for the longest form ([`FORMATTED_ROOM`]).
    text: [u8; FORMATTED_ROOM],
    len: usize,
}

impl Default for LastAddress {
    fn default() -> Self {
        Self {
            ip: None,
            text: [0; FORMATTED_ROOM],
            len: 0,
        }
    }
}

impl LastAddress {
    /// Appends `ip` as [`push_ip`] does.
    #[inline(always)]
    pub fn push_ip<O: TextOut>(&mut self, out: &mut O, ip: IpAddr) {
        if self.ip != Some(ip) && !self.remember(ip) {
            // Longer than any address text: not cached.
            push_ip(out, ip);
            return;
        }
        out.push_prefix(&self.text, self.len);
    }

    /// Makes `ip` the last address, its text formatted; `false` (nothing kept) when the
    /// text does not fit.
    fn remember(&mut self, ip: IpAddr) -> bool {
        self.len = match ip {
            IpAddr::V4(v4) => {
                let mut text = [0u8; 15];
                let len = ipv4_text(&mut text, v4.octets());
                self.text[..len].copy_from_slice(&text[..len]);
                len
            }
            IpAddr::V6(v6) => match formatted(&mut self.text, format_args!("{v6}")) {
                Some(len) => len,
                None => {
                    self.ip = None;
                    return false;
                }
            },
        };
        self.ip = Some(ip);
        true
    }
}

/// Appends `s` as a JSON string literal (quotes, backslashes and control characters
/// escaped; everything else, including non-ASCII, as UTF-8).
#[inline(always)]
pub fn push_json_string<O: TextOut>(out: &mut O, s: &str) {
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
    fn decimals_and_dotted_quads_match_the_standard_formatting() {
        let mut values: Vec<u64> = (0..=1000).collect();
        values.extend((0..64).map(|shift| 1u64 << shift));
        values.extend((1..20).map(|exp| 10u64.pow(exp)));
        values.extend((1..20).map(|exp| 10u64.pow(exp) - 1));
        values.push(u64::MAX);
        for v in values {
            assert_eq!(text(|o| push_u64(o, v)), v.to_string());
        }
        for a in [0u8, 1, 9, 10, 99, 100, 199, 255] {
            for b in [0u8, 7, 42, 250] {
                let ip = Ipv4Addr::new(a, b, b.wrapping_add(a), 255 - a);
                assert_eq!(text(|o| push_ip(o, IpAddr::V4(ip))), ip.to_string());
            }
        }
    }

    #[test]
    fn the_last_address_is_written_as_push_ip_writes_it() {
        let addresses = [
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
            IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()),
            IpAddr::V6(Ipv6Addr::new(
                0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            )),
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
        ];
        let mut last = LastAddress::default();
        let mut cached = Vec::new();
        let mut plain = Vec::new();
        for ip in addresses {
            last.push_ip(&mut cached, ip);
            cached.push(b' ');
            push_ip(&mut plain, ip);
            plain.push(b' ');
        }
        assert_eq!(
            String::from_utf8_lossy(&cached),
            "203.0.113.5 203.0.113.5 10.0.0.1 2001:db8::2 2001:db8::2 ::ffff:192.0.2.1 \
             ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 203.0.113.5 "
        );
        assert_eq!(cached, plain);
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

    /// Base64 of many lengths, floats of every magnitude, and the longest IPv6 text: the
    /// same as the standard forms (the last two written through a stack buffer).
    #[test]
    fn long_and_formatted_forms_are_the_standard_ones() {
        let bytes: Vec<u8> = (0..2000u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in (0..=800).chain([1151, 1152, 1153, 2000]) {
            let expected = base64::engine::general_purpose::STANDARD.encode(&bytes[..len]);
            assert_eq!(text(|o| push_base64(o, &bytes[..len])), expected, "{len}");
        }
        for f in [
            f64::MIN,
            f64::MAX,
            f64::MIN_POSITIVE,
            -2.225_073_858_507_201_4e-308,
            5e-324,
            -1.234_567_890_123_456_7e-123,
            0.1 + 0.2,
        ] {
            assert_eq!(text(|o| push_f64(o, f)), format!("{f:?}"));
        }
        let longest = IpAddr::V6(Ipv6Addr::new(
            0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xfffe, 0xfffd,
        ));
        assert_eq!(text(|o| push_ip(o, longest)), longest.to_string());
        let mapped = IpAddr::V6(Ipv4Addr::new(255, 255, 255, 255).to_ipv6_mapped());
        assert_eq!(text(|o| push_ip(o, mapped)), mapped.to_string());
    }
}
