//! Bounds-checked big-endian reads over an export packet, and the error kinds of the
//! `netflow` decoder: every read names the field it was for and where it started, so a
//! packet that does not fit is a [`DecodeError`] and never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{DecodeError, FieldName, detail};

/// The packet ends before a field that its headers announce.
pub const TRUNCATED: &str = "truncated";
/// The version field is not 5, 9 or 10.
pub const BAD_VERSION: &str = "bad_version";
/// A length field contradicts the packet (message or set length, v5 record count).
pub const BAD_LENGTH: &str = "bad_length";
/// A (options) template record cannot be used (id, field count, field length).
pub const BAD_TEMPLATE: &str = "bad_template";
/// A data set's template is unknown and the packet could not be held (or its hold expired).
pub const NO_TEMPLATE: &str = "no_template";
/// A value does not fit its element (e.g. a variable-length address of 5 bytes).
pub const BAD_VALUE: &str = "bad_value";

/// `len` bytes of `packet` at `offset`, or a `truncated` error for `field`.
#[inline]
pub fn take<'a>(
    packet: &'a [u8],
    offset: usize,
    len: usize,
    field: &'static str,
) -> Result<&'a [u8], DecodeError> {
    offset
        .checked_add(len)
        .and_then(|end| packet.get(offset..end))
        .ok_or_else(|| {
            DecodeError::new(
                TRUNCATED,
                FieldName::Static(field),
                offset,
                detail!(
                    "needs {} bytes, the packet has {}",
                    len,
                    packet.len().saturating_sub(offset)
                ),
            )
        })
}

/// A big-endian `u8` at `offset`.
#[inline]
pub fn u8_at(packet: &[u8], offset: usize, field: &'static str) -> Result<u8, DecodeError> {
    Ok(take(packet, offset, 1, field)?[0])
}

/// A big-endian `u16` at `offset`.
#[inline]
pub fn u16_at(packet: &[u8], offset: usize, field: &'static str) -> Result<u16, DecodeError> {
    let b = take(packet, offset, 2, field)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

/// A big-endian `u32` at `offset`.
#[inline]
pub fn u32_at(packet: &[u8], offset: usize, field: &'static str) -> Result<u32, DecodeError> {
    let b = take(packet, offset, 4, field)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// An unsigned big-endian integer of 1 to 8 bytes (IPFIX reduced-size encoding).
/// Callers check the length when the template is parsed; longer input keeps the last 8.
#[inline]
pub fn uint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// An IPv4 (4 bytes) or IPv6 (16 bytes) address; other lengths give `None`.
#[inline]
pub fn ip(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Some(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_big_endian_and_bounded() {
        let p = [0x01, 0x02, 0x03, 0x04, 0x05];
        assert_eq!(u8_at(&p, 4, "x"), Ok(5));
        assert_eq!(u16_at(&p, 0, "x"), Ok(0x0102));
        assert_eq!(u32_at(&p, 1, "x"), Ok(0x0203_0405));
        let err = u32_at(&p, 2, "count").expect_err("short");
        assert_eq!(err.kind, TRUNCATED);
        assert_eq!(err.field_text().as_deref(), Some("count"));
        assert_eq!(err.offset, 2);
        assert_eq!(err.message(), "needs 4 bytes, the packet has 3");
        assert_eq!(take(&p, usize::MAX, 2, "x").map(<[u8]>::len).ok(), None);
    }

    #[test]
    fn uint_and_ip_decode_every_width() {
        assert_eq!(uint(&[]), 0);
        assert_eq!(uint(&[0xff]), 255);
        assert_eq!(uint(&[1, 0, 0]), 65_536);
        assert_eq!(uint(&[0xff; 8]), u64::MAX);
        assert_eq!(
            ip(&[192, 0, 2, 1]),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        let mut v6 = [0u8; 16];
        v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        v6[15] = 1;
        assert_eq!(
            ip(&v6),
            Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)))
        );
        assert_eq!(ip(&[1, 2, 3]), None);
    }
}
