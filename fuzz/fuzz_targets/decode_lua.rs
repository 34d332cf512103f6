//! Fuzzes the `lua` decoder against the `schema` decoder: every payload goes through the
//! ACME-SENSOR v2 layout of docs/decoders.md and through the same events' Vector-style Lua
//! script (docs/examples/acme-sensor-v2.lua). Neither may panic, and they must agree: the
//! same rows value by value, or an error from both (the script's is always `lua_error`;
//! the layout's kind is one of its own). One Lua state serves every input, as a worker's
//! does, so the state must stay usable whatever came before.

#![no_main]

use std::{
    cell::RefCell,
    net::{IpAddr, Ipv4Addr},
    sync::OnceLock,
};

use libfuzzer_sys::fuzz_target;
use sluice_decode::{
    Decoder, DecoderFactory, PacketContext, Value,
    layout::{ERROR_KINDS as LAYOUT_KINDS, LayoutConfig, LayoutFactory},
    lua::{LUA_ERROR, LuaConfig, LuaDecoder, LuaFactory},
};

const DECODERS_DOC: &str = include_str!("../../docs/decoders.md");
const ACME_SCRIPT: &str = include_str!("../../docs/examples/acme-sensor-v2.lua");
const ACME_DECODER: &str = include_str!("../../docs/examples/acme-sensor-v2-lua.toml");

fn layout() -> &'static LayoutFactory {
    static LAYOUT: OnceLock<LayoutFactory> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let anchor = DECODERS_DOC
            .find("`/etc/sluice/acme-sensor-v2.toml`")
            .expect("the layout is in docs/decoders.md");
        let rest = &DECODERS_DOC[anchor..];
        let start = rest.find("```toml\n").expect("block") + "```toml\n".len();
        let end = rest[start..].find("```").expect("block end");
        let config: LayoutConfig = toml::from_str(&rest[start..start + end]).expect("layout");
        LayoutFactory::new("acme", &config).expect("the layout is valid")
    })
}

fn lua() -> &'static LuaFactory {
    static LUA: OnceLock<LuaFactory> = OnceLock::new();
    LUA.get_or_init(|| {
        let table: toml::Table = toml::from_str(ACME_DECODER).expect("decoder block");
        let mut config: LuaConfig = table["decoder"][0]["lua"]
            .clone()
            .try_into()
            .expect("lua options");
        // Under the sanitizers a rare call (an allocator's quarantine drained in it) takes
        // more than the default CPU budget; the script never loops.
        config.max_call_cpu_ms = Some(10_000);
        let script = config
            .script(|_| Ok::<_, std::io::Error>(ACME_SCRIPT.to_owned()))
            .expect("script");
        LuaFactory::new("acme_lua", &config, script).expect("the script loads")
    })
}

thread_local! {
    static DECODER: RefCell<Option<LuaDecoder>> = const { RefCell::new(None) };
}

fuzz_target!(|payload: &[u8]| {
    let ctx = PacketContext {
        received_at: 1_795_328_725_123_456,
        tunnel_src: None,
        tunnel_dst: None,
        gre_key: None,
        src_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        src_port: 4000,
        dst_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
        dst_port: 5141,
    };
    let mut schema_rows: Vec<Vec<Value<'static>>> = Vec::new();
    let schema = layout().build().decode(&ctx, payload, &mut schema_rows);
    let mut lua_rows: Vec<Vec<Value<'static>>> = Vec::new();
    let lua_result = DECODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decoder = slot.get_or_insert_with(|| lua().decoder());
        decoder.decode(&ctx, payload, &mut lua_rows)
    });
    match (schema, lua_result) {
        (Ok(a), Ok(b)) => {
            assert_eq!(lua_rows, schema_rows, "rows differ");
            assert_eq!((a.rows, b.rows), (schema_rows.len() as u64, lua_rows.len() as u64));
        }
        (Err(a), Err(b)) => {
            assert!(LAYOUT_KINDS.contains(&a.kind), "layout kind {}", a.kind);
            assert_eq!(b.kind, LUA_ERROR, "{b}");
            assert!(lua_rows.is_empty(), "no row with an error");
        }
        (a, b) => panic!("schema {a:?}, lua {b:?}"),
    }
});
