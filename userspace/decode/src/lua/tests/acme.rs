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

/// Both ways `emit` reads fields: in place (every ACME column; see `rawtable`), with `log`
/// made from the state's template (`template`), and over the API, `log` made empty.
#[test]
fn the_script_gives_the_schema_decoders_rows_on_every_payload() {
    let layout = LayoutFactory::new("acme", &acme_layout()).expect("layout");
    let mut in_place = acme_factory().decoder();
    let columns = acme_factory().schema().columns.len();
    assert_eq!(in_place.columns_read_in_place(), columns);
    assert!(in_place.has_log_template());
    let mut over_the_api = crate::lua::rawtable::tests::over_the_api(|| acme_factory().decoder());
    assert_eq!(over_the_api.columns_read_in_place(), 0);
    assert!(!over_the_api.has_log_template());
    for lua in [&mut in_place, &mut over_the_api] {
        same_rows(&layout, lua);
    }
}

/// The ACME payloads through `lua` and the layout: the same rows, or both refused.
fn same_rows(layout: &LayoutFactory, lua: &mut crate::lua::LuaDecoder) {
    let (mut both_ok, mut rows_seen) = (0, 0);
    let mut refused: std::collections::BTreeMap<&str, u64> = Default::default();
    for payload in sluice_testkit::acme::payloads(4000) {
        let mut lua_rows = Rows::new();
        let lua_result = lua.decode(&ctx(), &payload, &mut lua_rows);
        match (schema_rows(layout, &payload), lua_result) {
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
