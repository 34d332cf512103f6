//! Configuration refused at start, naming the key and, for the script, Lua's message and
//! line — exactly.

use super::{config, factory};
use crate::{ConfigFieldError, lua::LuaFactory};

const N: &[(&str, &str, bool)] = &[("n", "u8", false)];
const PROCESS: &str = "function process(event, emit) emit(event) end";

fn refused(source: &str, columns: &[(&str, &str, bool)], extra: &str) -> (String, String) {
    let e = factory(source, columns, extra).expect_err("refused");
    (e.field, e.reason)
}

fn pair(field: &str, reason: &str) -> (String, String) {
    (field.to_owned(), reason.to_owned())
}

#[test]
fn script_errors_name_the_line() {
    assert_eq!(
        refused("local x = \nfunction process(event, emit) end", N, ""),
        pair("source", "source:2: '(' expected near 'process'")
    );
    assert_eq!(
        refused("error('no config here')", N, ""),
        pair("source", "source:1: no config here")
    );
    assert_eq!(
        refused("while true do end", N, "max_instructions = 5000"),
        pair(
            "source",
            "instruction budget exhausted (max_instructions = 5000)"
        )
    );
    assert_eq!(
        refused("while true do end", N, "max_call_cpu_ms = 20"),
        pair("source", "CPU time budget exhausted (max_call_cpu_ms = 20)")
    );
    assert_eq!(
        refused(
            "x = string.rep('x', 4 * 1024 * 1024)",
            N,
            "max_memory_bytes = 2097152"
        ),
        pair("source", "out of memory: not enough memory")
    );
    assert_eq!(
        refused("require('acme')", N, ""),
        pair(
            "source",
            "source:1: require(\"acme\") is not available in Sluice: the whole \
             parser must be in the script"
        )
    );
}

#[test]
fn hooks_that_cannot_work_are_refused_by_name() {
    assert_eq!(
        refused("", N, ""),
        pair(
            "hooks.process",
            "\"process\" is not defined by the script (nil): define the function, or write it \
             inline (\"function (...) ... end\")"
        )
    );
    assert_eq!(
        refused(PROCESS, N, "hooks = { init = 'init' }"),
        pair(
            "hooks.init",
            "\"init\" is not defined by the script (nil): define the function, or write it \
             inline (\"function (...) ... end\")"
        )
    );
    assert_eq!(
        refused(
            &format!("{PROCESS}\nshutdown = 3"),
            N,
            "hooks = { shutdown = 'shutdown' }"
        ),
        pair(
            "hooks.shutdown",
            "\"shutdown\" is an integer, not a function"
        )
    );
    assert_eq!(
        refused(PROCESS, N, "hooks = { process = 'function (' }"),
        pair(
            "hooks.process",
            "hooks.process:1: <name> or '...' expected near <eof>"
        )
    );
    assert_eq!(
        refused(
            &format!("{PROCESS}\nfunction init(emit) error('not ready') end"),
            N,
            "hooks = { init = 'init' }"
        ),
        pair("hooks.init", "source:2: not ready")
    );
    // An `init` that never returns is stopped by the CPU budget, in a coroutine too.
    for init in [
        "while true do end",
        "coroutine.wrap(function() while true do end end)()",
    ] {
        assert_eq!(
            refused(
                &format!("{PROCESS}\nfunction init(emit) {init} end"),
                N,
                "hooks = { init = 'init' }\nmax_call_cpu_ms = 20"
            ),
            pair(
                "hooks.init",
                "CPU time budget exhausted (max_call_cpu_ms = 20)"
            ),
            "{init}"
        );
    }
    assert_eq!(
        refused(PROCESS, N, "hooks = { process = ' ' }"),
        pair(
            "hooks.process",
            "empty: name a function of the script, or write one inline"
        )
    );
}

#[test]
fn vector_options_sluice_cannot_honour_are_refused() {
    assert_eq!(
        refused(
            PROCESS,
            N,
            "timers = [{ interval_seconds = 10, handler = 'flush' }]"
        ),
        pair(
            "timers[0]",
            "timers are not supported (handler \"flush\"): Sluice calls the script only for \
             packets; keep per-packet work in `hooks.process`"
        )
    );
    assert_eq!(
        refused(PROCESS, N, "search_dirs = ['/etc/vector/lua']"),
        pair(
            "search_dirs",
            "not supported: `require` is not available, the whole parser must be in the script"
        )
    );
    assert_eq!(
        refused(PROCESS, N, "version = '1'"),
        pair(
            "version",
            "\"1\" is not supported: scripts of Vector's lua transform version 2 (hooks and \
             `emit`) run here, version 1 scripts do not"
        )
    );
    factory(PROCESS, N, "version = '2'").expect("version 2 is the one");
}

#[test]
fn columns_and_limits_are_checked() {
    assert_eq!(
        refused(PROCESS, &[], ""),
        pair(
            "columns",
            "at least one column is needed: `columns = [{ name = \"seq\", type = \"u32\" }, ...]`"
        )
    );
    assert_eq!(
        refused(PROCESS, &[("Seq", "u32", false)], ""),
        pair(
            "columns[0].name",
            "\"Seq\" is not a column name: use 1-64 lowercase letters, digits and '_', not \
             starting with a digit"
        )
    );
    assert_eq!(
        refused(PROCESS, &[("a", "u8", false), ("a", "u16", false)], ""),
        pair("columns[1].name", "column \"a\" is declared twice")
    );
    assert_eq!(
        refused(PROCESS, &[("a", "u128", false)], ""),
        pair(
            "columns[0].type",
            "\"u128\" is not a type: use bool, u8, u16, u32, u64 (uint64), i8, i16, i32, i64 \
             (int64), f64 (float64), text (string), bytes, ip, ipv4, ipv6, mac or timestamp"
        )
    );
    for (extra, field, reason) in [
        (
            "max_instructions = 999",
            "max_instructions",
            "999 is out of range: use 1000 to 1000000000 (not counted by default)",
        ),
        (
            "max_call_cpu_ms = 0",
            "max_call_cpu_ms",
            "0 is out of range: use 1 to 10000 (default 50)",
        ),
        (
            "max_memory_bytes = 1024",
            "max_memory_bytes",
            "1024 is out of range: use 1048576 to 1073741824 (default 16777216)",
        ),
        (
            "max_rows_per_payload = 0",
            "max_rows_per_payload",
            "0 is out of range: use 1 to 65536 (default 1024)",
        ),
    ] {
        assert_eq!(refused(PROCESS, N, extra), pair(field, reason));
    }
    // Options of one type only.
    let e = |columns: &str| -> (String, String) {
        let text = format!("source = '{PROCESS}'\ncolumns = [{columns}]");
        let config: crate::lua::LuaConfig = toml::from_str(&text).expect("parses");
        let script = config
            .script(|_| Err::<String, &str>("none"))
            .expect("script");
        let e: ConfigFieldError = LuaFactory::new("t", &config, script).expect_err("refused");
        (e.field, e.reason)
    };
    assert_eq!(
        e("{ name = 'a', type = 'text', encoding = 'hex' }"),
        pair(
            "columns[0].encoding",
            "only `bytes` columns have an encoding"
        )
    );
    assert_eq!(
        e("{ name = 'a', type = 'u32', unit = 'millis' }"),
        pair("columns[0].unit", "only `timestamp` columns have a unit")
    );
}

#[test]
fn the_script_comes_from_file_or_source() {
    let both = config(PROCESS, N, "file = 'parse.lua'");
    assert_eq!(
        both.script(|_| Ok::<_, &str>(String::new())),
        Err(ConfigFieldError::new(
            "source",
            "set `file` or `source`, not both"
        ))
    );
    let mut none = config(PROCESS, N, "");
    none.source = None;
    assert_eq!(
        none.script(|_| Ok::<_, &str>(String::new())),
        Err(ConfigFieldError::new(
            "file",
            "the script is required: `file = \"parse.lua\"` (or the code inline as `source`)"
        ))
    );
    none.file = Some("parse.lua".into());
    assert_eq!(
        none.script(|_| Err::<String, _>("No such file or directory (os error 2)")),
        Err(ConfigFieldError::new(
            "file",
            "cannot read parse.lua: No such file or directory (os error 2)"
        ))
    );
    let script = none
        .script(|path| Ok::<_, &str>(format!("-- {}\n{PROCESS}", path.display())))
        .expect("read");
    assert_eq!(script.name, "parse.lua");
    // Errors in a file name the file as configured.
    let script = none
        .script(|_| Ok::<_, &str>("\n\nfunction process(".into()))
        .expect("read");
    let e = LuaFactory::new("t", &none, script).expect_err("refused");
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("file", "parse.lua:3: <name> or '...' expected near <eof>")
    );
}
