//! The ACME-SENSOR v2 example of docs/decoders.md, as the tests, benchmarks and fuzz
//! inputs that decode it read it: the `schema` layout (the TOML block the document names
//! `acme-sensor-v2.toml`) and the same events as a Vector-style Lua script with its
//! `[[decoder]]` block (docs/examples/). Taken from the documents themselves, so that what
//! is checked and measured is what operators read.

/// docs/decoders.md.
pub const DECODERS_DOC: &str = include_str!("../../../docs/decoders.md");

/// docs/examples/acme-sensor-v2.lua: the events as a Vector `lua` transform script.
pub const LUA_SCRIPT: &str = include_str!("../../../docs/examples/acme-sensor-v2.lua");

/// docs/examples/acme-sensor-v2-lua.toml: the script's `[[decoder]]` block.
pub const LUA_DECODER: &str = include_str!("../../../docs/examples/acme-sensor-v2-lua.toml");

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

#[cfg(test)]
mod tests {
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
