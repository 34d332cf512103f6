//! The ACME-SENSOR v2 example of docs/decoders.md, as the tests, benchmarks and fuzz
//! inputs that decode it read it: the `schema` layout (the TOML block the document names
//! `acme-sensor-v2.toml`) and the same events as a Vector-style Lua script with its
//! `[[decoder]]` block (docs/examples/). Taken from the documents themselves, so that what
//! is checked and measured is what operators read. And [`payloads`]: the events to feed
//! both decoders.

use crate::random::Random;

/// docs/decoders.md.
pub const DECODERS_DOC: &str = include_str!("../../../docs/decoders.md");

/// docs/examples/acme-sensor-v2.lua: the events as a Vector `lua` transform script.
pub const LUA_SCRIPT: &str = include_str!("../../../docs/examples/acme-sensor-v2.lua");

/// docs/examples/acme-sensor-v2-lua.toml: the script's `[[decoder]]` block.
pub const LUA_DECODER: &str = include_str!("../../../docs/examples/acme-sensor-v2-lua.toml");

/// The readings event of docs/decoders.md (type 1, two readings, 36 bytes): what the
/// packet-rate harness sends for its `schema` and `lua` rows, and what the record-path
/// benchmark decodes in process.
pub const READINGS_EVENT: [u8; 36] = [
    0x02, 0x01, 0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c, 0x00, 0x00, 0x12, 0x67, 0x6b, 0x02, 0x8a, 0xd5,
    0x83, 0x00, 0x02, 0x00, 0x01, 0x80, 0x00, 0x00, 0x53, 0xfc, 0x00, 0x00, 0x02, 0x03, 0xff, 0xff,
    0xff, 0xd8, 0x00, 0x00,
];

/// [`READINGS_EVENT`] as the `n`-th event of a sensor that keeps sending it: the sequence
/// number is `n` (wrapping), the time advances one second per 3 000 events, and both
/// readings' values change with `n` (channels, states and everything else stay). Real
/// traffic is like this, not one payload repeated: each event is a new string to Lua and
/// each row new text to the compressor. Deterministic: the same `n` gives the same bytes.
pub fn readings_event(n: u32) -> [u8; 36] {
    let mut event = READINGS_EVENT;
    let spread = n.wrapping_mul(0x9e37_79b9);
    let time = u32::from_be_bytes([event[12], event[13], event[14], event[15]]);
    event[8..12].copy_from_slice(&n.to_be_bytes());
    event[12..16].copy_from_slice(&time.wrapping_add(n / 3_000).to_be_bytes());
    // Reading 0 (bytes 22..26) around 21 500, reading 1 (bytes 30..34) in -40..=23.
    event[22..26].copy_from_slice(&(21_000 + (spread >> 22) as i32).to_be_bytes());
    event[30..34].copy_from_slice(&(-40 + ((spread >> 12) & 0x3f) as i32).to_be_bytes());
    event
}

/// The layout TOML: the first ```toml block after the line naming
/// `/etc/sluice/acme-sensor-v2.toml`, ending with its last line's newline; `None` if the
/// document no longer has it.
pub fn layout_toml() -> Option<&'static str> {
    let anchor = DECODERS_DOC.find("`/etc/sluice/acme-sensor-v2.toml`")?;
    let rest = DECODERS_DOC.get(anchor..)?;
    let start = rest.find("```toml\n")? + "```toml\n".len();
    let body = rest.get(start..)?;
    let end = body.find("\n```")?;
    body.get(..=end)
}

/// An 18-byte header of `kind`.
fn header(r: &mut Random, kind: u8) -> Vec<u8> {
    let mut out = vec![r.byte(), kind];
    out.extend(r.bytes(16));
    out
}

/// A 16-byte text field: ASCII with spaces and NULs, sometimes a byte ≥ 0x80.
fn text_field(r: &mut Random) -> Vec<u8> {
    let choices: &[u8] = b"  door open ALARM-7\0\0";
    let mut field: Vec<u8> = (0..16)
        .map(|_| choices[r.below(choices.len() as u64) as usize])
        .collect();
    match r.below(6) {
        0 => field[r.below(16) as usize] = 0x80 | r.byte(),
        1 => field.fill(0),
        2 => field.fill(b' '),
        _ => {}
    }
    field
}

/// A well-formed event of a random type (or an unknown one).
fn event(r: &mut Random) -> Vec<u8> {
    match r.below(5) {
        0 | 1 => {
            let count = match r.below(10) {
                0 => 0,
                1 => 64,
                2 => 65 + r.below(3) as u8,
                _ => r.below(8) as u8,
            };
            let mut out = header(r, 1);
            out.extend([count, r.byte()]);
            for _ in 0..count.min(70) {
                out.extend(r.bytes(8));
            }
            out
        }
        2 => {
            let mut out = header(r, 2);
            out.extend(r.bytes(3));
            out.extend(text_field(r));
            out
        }
        3 => {
            let mut out = header(r, 3);
            out.extend(r.bytes(6));
            out
        }
        _ => {
            let kind = [0, 4, 9, 255][r.below(4) as usize];
            let mut out = header(r, kind);
            let n = r.below(8) as usize;
            out.extend(r.bytes(n));
            out
        }
    }
}

/// `n` ACME-SENSOR v2 payloads, the same on every run, and three degenerate ones first
/// (empty, a version byte, a version and type): valid events of every type, cut ones, ones
/// with bytes after the end, bad text, too many readings, unknown types, noise.
pub fn payloads(n: usize) -> Vec<Vec<u8>> {
    let mut r = Random(0x5eed_acce_55ed_0002);
    let mut out = vec![Vec::new(), vec![2], vec![2, 1]];
    for _ in 0..n {
        let mut p = event(&mut r);
        match r.below(8) {
            0 => p.truncate(r.below(p.len() as u64 + 1) as usize),
            1 => {
                let extra = 1 + r.below(3) as usize;
                p.extend(r.bytes(extra));
            }
            2 => {
                let n = r.below(90) as usize;
                p = r.bytes(n);
            }
            _ => {}
        }
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn readings_events_vary_only_in_sequence_time_and_values() {
        let (a, b) = (super::readings_event(7), super::readings_event(8));
        assert_ne!(a, b);
        assert_eq!(a, super::readings_event(7), "deterministic");
        for (i, (x, y)) in a.iter().zip(super::READINGS_EVENT.iter()).enumerate() {
            let varies = matches!(i, 8..16 | 22..26 | 30..34);
            assert!(varies || x == y, "byte {i} changed");
        }
        assert_eq!(&a[8..12], &7u32.to_be_bytes());
    }

    #[test]
    fn the_layout_block_is_found_whole() {
        let layout = super::layout_toml().expect("the layout block");
        assert!(
            layout.starts_with("# ACME-SENSOR v2 event layout"),
            "{layout}"
        );
        assert!(layout.ends_with("]\n"), "{layout}");
        assert!(!layout.contains("```"));
    }
}
