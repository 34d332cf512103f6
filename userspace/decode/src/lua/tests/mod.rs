//! Tests of the `lua` decoder: the ACME-SENSOR v2 script against the `schema` decoder
//! (`acme`), the sandbox and its limits (`limits`), emitted values and their columns
//! (`columns`), the event a script gets (`event`), and configuration errors (`config`).

mod acme;
mod columns;
mod config;
mod event;
mod limits;

use std::net::{IpAddr, Ipv4Addr};

use super::{LuaConfig, LuaDecoder, LuaFactory};
use crate::{
    ConfigFieldError, DecodeError, Decoder as _, PacketContext, Value, layout::LayoutConfig,
};

/// The daemon's documentation, the ACME-SENSOR v2 script (a Vector `lua` transform script)
/// and the `[[decoder]]` block that runs it.
pub(super) use sluice_testkit::acme::{
    DECODERS_DOC, LUA_DECODER as ACME_DECODER, LUA_SCRIPT as ACME_SCRIPT,
};

/// The ACME-SENSOR v2 layout of docs/decoders.md: the first TOML block after the line
/// naming `acme-sensor-v2.toml`.
pub(super) fn acme_layout() -> LayoutConfig {
    let layout = sluice_testkit::acme::layout_toml()
        .expect("the layout's file is named in docs/decoders.md");
    toml::from_str(layout).expect("the layout parses")
}

/// The `lua` options of the ACME `[[decoder]]` block.
pub(super) fn acme_config() -> LuaConfig {
    let table: toml::Table = toml::from_str(ACME_DECODER).expect("the block parses");
    let lua = table["decoder"][0]["lua"].clone();
    lua.try_into().expect("the lua options parse")
}

/// The ACME-SENSOR v2 script's factory, as configured in the example block.
pub(super) fn acme_factory() -> LuaFactory {
    let config = acme_config();
    let script = config
        .script(|path| {
            assert_eq!(path, std::path::Path::new("acme-sensor-v2.lua"));
            Ok::<_, std::io::Error>(ACME_SCRIPT.to_owned())
        })
        .expect("script");
    LuaFactory::new("acme_lua", &config, script).expect("the ACME script loads")
}

/// A factory for an inline `source` with `columns` (`name`, `type`, nullable) and the
/// other options from `extra` (TOML, e.g. `max_instructions = 5000`).
pub(super) fn factory(
    source: &str,
    columns: &[(&str, &str, bool)],
    extra: &str,
) -> Result<LuaFactory, ConfigFieldError> {
    let config = config(source, columns, extra);
    let script = config.script(|_| Err::<String, &str>("no file"))?;
    LuaFactory::new("test", &config, script)
}

/// The options [`factory`] uses.
pub(super) fn config(source: &str, columns: &[(&str, &str, bool)], extra: &str) -> LuaConfig {
    let columns: Vec<String> = columns
        .iter()
        .map(|(name, ty, nullable)| {
            format!("{{ name = \"{name}\", type = \"{ty}\", nullable = {nullable} }}")
        })
        .collect();
    let text = format!(
        "source = '''{source}'''\ncolumns = [{}]\n{extra}",
        columns.join(", ")
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A packet from 203.0.113.7:4000 received at 2026-11-22T06:25:25.123456Z.
pub(super) fn ctx() -> PacketContext {
    PacketContext {
        received_at: 1_795_328_725_123_456,
        tunnel_src: None,
        tunnel_dst: None,
        gre_key: None,
        src_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        src_port: 4000,
        dst_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
        dst_port: 5141,
    }
}

/// Owned rows.
pub(super) type Rows = Vec<Vec<Value<'static>>>;

/// Decodes `payload` with `decoder`, checking that the outcome counts the rows.
pub(super) fn decode(decoder: &mut LuaDecoder, payload: &[u8]) -> Result<Rows, DecodeError> {
    let mut rows = Rows::new();
    let outcome = decoder.decode(&ctx(), payload, &mut rows)?;
    assert!(!outcome.held);
    assert_eq!(outcome.rows, rows.len() as u64);
    Ok(rows)
}

/// Decodes, expecting an error: its (kind, field, message).
pub(super) fn error(decoder: &mut LuaDecoder, payload: &[u8]) -> (String, Option<String>, String) {
    let mut rows = Rows::new();
    let e = decoder
        .decode(&ctx(), payload, &mut rows)
        .expect_err("the payload is refused");
    assert!(rows.is_empty(), "no row with an error: {rows:?}");
    (e.kind.to_owned(), e.field_text(), e.message())
}

/// The text value `s`.
pub(super) fn s(text: &str) -> Value<'static> {
    Value::Str(text.to_owned().into())
}
