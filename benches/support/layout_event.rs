//! The reference event of the `schema` (layout) decoder benches: a 64-byte device event of
//! 10 columns chosen to exercise the expensive field kinds (two enum look-ups, a MAC, a
//! timestamp, an IPv4 address, bit fields, a 16-byte text field, a skipped reserved block).
//! Shared by `decode_layout` (the decoder alone) and `formats` (its rows through every file
//! format), so both measure the same row.

use std::collections::BTreeMap;

use sluice_decode::layout::{FieldConfig, LayoutConfig, TimeUnit};

/// A field of `name` and type `ty`, everything else default.
pub fn field(name: &str, ty: &str) -> FieldConfig {
    FieldConfig {
        name: name.into(),
        ty: ty.into(),
        ..FieldConfig::default()
    }
}

/// An enum's value names.
pub fn names(pairs: &[(u8, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).to_owned()))
            .collect(),
    )
}

/// The layout of the event: 64 bytes, 10 columns.
pub fn flat_config() -> LayoutConfig {
    LayoutConfig {
        fields: vec![
            field("version", "u8"),
            FieldConfig {
                enum_names: names(&[(1, "reading"), (2, "alarm"), (3, "heartbeat")]),
                ..field("kind", "u8")
            },
            field("device", "mac"),
            field("seq", "u32"),
            FieldConfig {
                timestamp: Some(TimeUnit::Seconds),
                ..field("time", "u32")
            },
            field("src", "ipv4"),
            field("temp", "i16"),
            FieldConfig {
                mask: Some(0x80),
                ..field("alarm", "u8")
            },
            FieldConfig {
                offset: Some(22),
                mask: Some(0x0f),
                enum_names: names(&[(0, "ok"), (1, "warn"), (2, "fail")]),
                ..field("status", "u8")
            },
            FieldConfig {
                length: Some(25),
                skip: true,
                ..field("reserved", "bytes")
            },
            FieldConfig {
                length: Some(16),
                ..field("name", "text")
            },
        ],
        ..LayoutConfig::default()
    }
}

/// Event number `n` of a plausible stream: sequence, time, device, kind, temperature,
/// status and name vary with `n` (so a batch of them compresses like real data, not like
/// one line repeated). Event 0 is the reference payload of `decode_layout`.
pub fn flat_payload(n: u32) -> Vec<u8> {
    const NAMES: [&[u8; 16]; 4] = [
        b"boiler-room-3\0\0\0",
        b"roof-north\0\0\0\0\0\0",
        b"cold-store-12\0\0\0",
        b"lobby\0\0\0\0\0\0\0\0\0\0\0",
    ];
    let mut p = vec![2, 1 + (n % 3) as u8, 0x00, 0x1b, 0x21, 0x0a, 0x0b];
    p.push(0x0c + (n % 8) as u8);
    p.extend((123_456 + n).to_be_bytes());
    p.extend((1_795_328_725 + n / 4).to_be_bytes());
    p.extend([10, 1, 2, 3 + (n % 8) as u8]);
    p.extend((-125 + (n % 50) as i16).to_be_bytes());
    // Byte 22: alarm bit and status (0 ok, 1 warn, 2 fail).
    p.push(match n % 7 {
        0 => 0x81,
        3 => 0x82,
        _ => 0x00,
    });
    p.extend([0u8; 25]);
    p.extend(NAMES[(n % 4) as usize]);
    assert_eq!(p.len(), 64);
    p
}
