//! The ACME-SENSOR v2 events as a Vector-style Lua script (`string.unpack`) give exactly
//! the rows the `schema` decoder gives with the document's layout: the same columns, and
//! over many payloads — valid events of every type, cut ones, ones with bytes after the
//! end, bad text, too many readings, noise — the same rows value by value, or an error
//! from both. The kinds differ: the script's errors are all `lua_error` (with its
//! message), where the `schema` decoder names `truncated`, `trailing_bytes`, ...

use super::{
    ACME_DECODER, ACME_SCRIPT, DECODERS_DOC, Rows, acme_factory, acme_layout, ctx, decode, s,
};
use crate::{
    Decoder as _, DecoderFactory as _, Value,
    layout::{ERROR_KINDS as LAYOUT_KINDS, LayoutFactory},
    lua::LUA_ERROR,
};

/// A small deterministic generator (xorshift64*).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
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

/// Events, and events cut, lengthened or replaced by noise.
fn payloads(n: usize) -> Vec<Vec<u8>> {
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

fn schema_rows(f: &LayoutFactory, payload: &[u8]) -> Result<Rows, &'static str> {
    let mut rows = Rows::new();
    let mut decoder = f.build();
    decoder
        .decode(&ctx(), payload, &mut rows)
        .map(|_| rows)
        .map_err(|e| e.kind)
}

#[test]
fn the_document_shows_the_example_files_as_they_are() {
    assert!(DECODERS_DOC.contains(&format!("```lua\n{ACME_SCRIPT}```")));
    assert!(DECODERS_DOC.contains(&format!("```toml\n{ACME_DECODER}```")));
}

#[test]
fn the_script_declares_the_layouts_columns() {
    let layout = LayoutFactory::new("acme", &acme_layout()).expect("layout");
    let lua = acme_factory();
    assert_eq!(lua.schema().decoder, "lua");
    assert_eq!(lua.schema().columns, layout.schema().columns);
}

#[test]
fn the_documents_events_decode_as_documented() {
    let hex = |text: &str| -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex"))
            .collect()
    };
    let readings = hex(
        "02 01 00 1b 21 0a 0b 0c 00 00 12 67 6b 02 8a d5 83 00 02 00 \
         01 80 00 00 53 fc 00 00 02 03 ff ff ff d8 00 00",
    );
    let mut lua = acme_factory().decoder();
    let header = vec![
        Value::U64(2),
        s("readings"),
        Value::Mac([0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c]),
        Value::U64(4711),
        Value::Timestamp(1_795_328_725_000_000),
        Value::Bool(true),
        Value::Bool(false),
        Value::U64(3),
    ];
    let row = |reading: u64, channel: u64, status: &str, calibrated: bool, value: i64| {
        let mut row = header.clone();
        row.extend([
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ]);
        row.extend([
            Value::U64(reading),
            Value::U64(channel),
            s(status),
            Value::Bool(calibrated),
            Value::I64(value),
        ]);
        row
    };
    assert_eq!(
        decode(&mut lua, &readings).expect("decodes"),
        vec![
            row(0, 1, "ok", true, 21_500),
            row(1, 2, "fault", false, -40)
        ]
    );
    // Cut after 30 bytes: `string.unpack` has no 4 bytes for the value.
    let (kind, field, message) = super::error(&mut lua, &readings[..30]);
    assert_eq!((kind.as_str(), field), (LUA_ERROR, None));
    assert_eq!(message, "truncated: 30 bytes, 2 readings need 36");
}

#[test]
fn the_script_gives_the_schema_decoders_rows_on_every_payload() {
    let layout = LayoutFactory::new("acme", &acme_layout()).expect("layout");
    let mut lua = acme_factory().decoder();
    let (mut both_ok, mut rows_seen) = (0, 0);
    let mut refused: std::collections::BTreeMap<&str, u64> = Default::default();
    for payload in payloads(4000) {
        let mut lua_rows = Rows::new();
        let lua_result = lua.decode(&ctx(), &payload, &mut lua_rows);
        match (schema_rows(&layout, &payload), lua_result) {
            (Ok(rows), Ok(outcome)) => {
                assert_eq!(lua_rows, rows, "payload {payload:02x?}");
                assert_eq!(outcome.rows, rows.len() as u64);
                both_ok += 1;
                rows_seen += rows.len();
            }
            (Err(kind), Err(e)) => {
                assert!(LAYOUT_KINDS.contains(&kind));
                assert_eq!(e.kind, LUA_ERROR, "{e}");
                assert!(lua_rows.is_empty());
                *refused.entry(kind).or_default() += 1;
            }
            (schema, lua) => panic!("payload {payload:02x?}: schema {schema:?}, lua {lua:?}"),
        }
    }
    // The payloads exercise every path: good events of each type and each refusal.
    assert!(both_ok > 1500 && rows_seen > 4000, "{both_ok} {rows_seen}");
    let kinds: Vec<&str> = refused.keys().copied().collect();
    assert_eq!(
        kinds,
        ["bad_text", "count_too_large", "trailing_bytes", "truncated"],
        "{refused:?}"
    );
}
