//! The ACME-SENSOR v2 decoders the benches compare, built from the documents operators
//! read (`sluice_testkit::acme`): the `schema` layout of docs/decoders.md and the Vector
//! `lua` script of docs/examples with its `[[decoder]]` block.

use sluice_decode::{
    layout::{LayoutConfig, LayoutFactory},
    lua::{LuaConfig, LuaFactory},
};
use sluice_testkit::acme;

/// The `schema` decoder with the document's layout.
pub fn schema_factory() -> LayoutFactory {
    let layout = acme::layout_toml().expect("the layout is in docs/decoders.md");
    let config: LayoutConfig = toml::from_str(layout).expect("layout");
    LayoutFactory::new("bench", &config).expect("the layout is valid")
}

/// The `lua` decoder running the example script.
pub fn lua_factory() -> LuaFactory {
    let table: toml::Table = toml::from_str(acme::LUA_DECODER).expect("decoder block");
    let config: LuaConfig = table["decoder"][0]["lua"]
        .clone()
        .try_into()
        .expect("lua options");
    let script = config
        .script(|_| Ok::<_, std::io::Error>(acme::LUA_SCRIPT.to_owned()))
        .expect("script");
    LuaFactory::new("bench", &config, script).expect("the script loads")
}
