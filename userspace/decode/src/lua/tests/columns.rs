//! Emitted fields and their columns: what each type accepts, exactly, and the error that
//! names the field when a value does not fit; missing, nullable and undeclared fields.

use std::net::IpAddr;

use super::{decode, error, factory};
use crate::{
    BytesEncoding, ColumnType, DecoderFactory as _, Value,
    lua::{BAD_FIELD, MISSING_FIELD},
};

/// The value a one-column stream of `ty` gets for the Lua expression `expr`, or the
/// (kind, field, message) of its error: the same whether `emit` reads the field in place
/// or over the API.
fn one(ty: &str, expr: &str) -> Result<Value<'static>, (String, Option<String>, String)> {
    let in_place = one_way(ty, expr);
    let over_the_api = crate::lua::rawtable::tests::over_the_api(|| one_way(ty, expr));
    assert_eq!(
        in_place, over_the_api,
        "{ty} = {expr}: in place and over the API"
    );
    in_place
}

/// [`one`], the way this thread's states read fields.
fn one_way(ty: &str, expr: &str) -> Result<Value<'static>, (String, Option<String>, String)> {
    let source = format!("function process(event, emit) event.log.v = {expr} emit(event) end");
    let mut d = factory(&source, &[("v", ty, true)], "")
        .unwrap_or_else(|e| panic!("{ty} {expr}: {e}"))
        .decoder();
    match decode(&mut d, b"payload") {
        Ok(mut rows) => Ok(rows.pop().and_then(|mut r| r.pop()).expect("one value")),
        Err(_) => Err(error(&mut d, b"payload")),
    }
}

fn ok(ty: &str, expr: &str) -> Value<'static> {
    one(ty, expr).unwrap_or_else(|e| panic!("{ty} = {expr}: {e:?}"))
}

/// The message of the `bad_field` error for field `v`.
fn bad(ty: &str, expr: &str) -> String {
    let (kind, field, message) = one(ty, expr).expect_err("refused");
    assert_eq!((kind.as_str(), field.as_deref()), (BAD_FIELD, Some("v")));
    message
}

#[test]
fn integers_in_range_and_integral_floats() {
    assert_eq!(ok("u8", "255"), Value::U64(255));
    assert_eq!(ok("u16", "65535.0"), Value::U64(65_535));
    assert_eq!(
        ok("u32", "string.unpack('>I4', '\\xff\\xff\\xff\\xff')"),
        Value::U64(u64::from(u32::MAX))
    );
    assert_eq!(ok("u64", "math.maxinteger"), Value::U64(i64::MAX as u64));
    assert_eq!(ok("uint64", "0"), Value::U64(0));
    assert_eq!(ok("i8", "-128"), Value::I64(-128));
    assert_eq!(
        ok("i32", "string.unpack('>i4', '\\xff\\xff\\xff\\xd8')"),
        Value::I64(-40)
    );
    assert_eq!(ok("i64", "math.mininteger"), Value::I64(i64::MIN));
    assert_eq!(ok("int64", "-2.0"), Value::I64(-2));
    assert_eq!(
        bad("u8", "256"),
        "256 is out of range: the column takes integers from 0 to 255"
    );
    assert_eq!(
        bad("u64", "-1"),
        "-1 is out of range: the column takes integers from 0 to 9223372036854775807"
    );
    assert_eq!(
        bad("i8", "1.5"),
        "1.5 is out of range: the column takes integers from -128 to 127"
    );
    assert_eq!(
        bad("i16", "1/0"),
        "inf is out of range: the column takes integers from -32768 to 32767"
    );
    assert_eq!(bad("u32", "'7'"), "expected an integer, got a string");
    assert_eq!(bad("i64", "true"), "expected an integer, got a boolean");
}

#[test]
fn floats_booleans_text_and_bytes() {
    assert_eq!(ok("f64", "1.5"), Value::F64(1.5));
    assert_eq!(ok("float64", "3"), Value::F64(3.0));
    assert_eq!(bad("f64", "'1.5'"), "expected a number, got a string");
    assert_eq!(ok("bool", "false"), Value::Bool(false));
    assert_eq!(bad("bool", "0"), "expected a boolean, got an integer");
    assert_eq!(ok("text", "'héllo'"), super::s("héllo"));
    assert_eq!(ok("string", "''"), super::s(""));
    assert_eq!(bad("text", "'ok\\xff'"), "the string is not UTF-8 (byte 2)");
    assert_eq!(bad("text", "{}"), "expected a UTF-8 string, got a table");
    assert_eq!(
        ok("bytes", "'\\0\\xff'"),
        Value::Bytes(vec![0, 0xff].into())
    );
    assert_eq!(
        bad("bytes", "function() end"),
        "expected a string, got a function"
    );
}

#[test]
fn addresses() {
    let ip = |s: &str| Value::Ip(s.parse::<IpAddr>().expect("ip"));
    assert_eq!(ok("ip", "'192.0.2.1'"), ip("192.0.2.1"));
    assert_eq!(ok("ip", "'2001:db8::1'"), ip("2001:db8::1"));
    assert_eq!(ok("ipv4", "'198.51.100.9'"), ip("198.51.100.9"));
    assert_eq!(ok("ipv6", "'2001:db8::9'"), ip("2001:db8::9"));
    assert_eq!(
        bad("ipv4", "'2001:db8::9'"),
        "\"2001:db8::9\" is not an IPv4 address"
    );
    assert_eq!(
        bad("ip", "'192.0.2'"),
        "\"192.0.2\" is not an IPv4 or IPv6 address"
    );
    let mac = Value::Mac([0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c]);
    assert_eq!(ok("mac", "'\\0\\x1b\\x21\\x0a\\x0b\\x0c'"), mac);
    assert_eq!(ok("mac", "'00:1b:21:0a:0b:0c'"), mac);
    assert_eq!(ok("mac", "'00-1B-21-0A-0B-0C'"), mac);
    assert_eq!(
        bad("mac", "'00:1b:21:0a:0b'"),
        "\"00:1b:21:0a:0b\" is not a MAC address (6 bytes, or \"aa:bb:cc:dd:ee:ff\")"
    );
    assert_eq!(
        bad("mac", "'00:1b-21:0a:0b:0c'"),
        "\"00:1b-21:0a:0b:0c\" is not a MAC address (6 bytes, or \"aa:bb:cc:dd:ee:ff\")"
    );
}

#[test]
fn timestamps_from_numbers_and_vector_tables() {
    let t = Value::Timestamp;
    assert_eq!(ok("timestamp", "1795328725"), t(1_795_328_725_000_000));
    assert_eq!(ok("timestamp", "1795328725.25"), t(1_795_328_725_250_000));
    assert_eq!(ok("timestamp", "-1.5"), t(-1_500_000));
    assert_eq!(
        ok("timestamp", "os.date('!*t', 1795328725)"),
        t(1_795_328_725_000_000)
    );
    assert_eq!(
        ok(
            "timestamp",
            "{ year = 2026, month = 11, day = 22, hour = 6, min = 25, sec = 25, nanosec = 123456789 }"
        ),
        t(1_795_328_725_123_456)
    );
    // A leap second is the next minute's first second.
    assert_eq!(
        ok(
            "timestamp",
            "{ year = 2016, month = 12, day = 31, hour = 23, min = 59, sec = 60 }"
        ),
        t(1_483_228_800_000_000)
    );
    assert_eq!(
        bad(
            "timestamp",
            "{ year = 2026, month = 2, day = 29, hour = 0, min = 0, sec = 0 }"
        ),
        "not a time: day 29 of month 2"
    );
    assert_eq!(
        bad("timestamp", "{ year = 2026, month = 2, day = 1 }"),
        "a timestamp table needs an integer `hour`, it has nil"
    );
    assert_eq!(
        bad("timestamp", "math.maxinteger"),
        "9223372036854775807 seconds is beyond the representable time range"
    );
    assert_eq!(
        bad("timestamp", "'now'"),
        "expected a timestamp (a Vector timestamp table, or a number), got a string"
    );
    // Other units.
    for (unit, expr, micros) in [
        ("millis", "1795328725123", 1_795_328_725_123_000),
        ("micros", "1795328725123456", 1_795_328_725_123_456),
        ("nanos", "1795328725123456789", 1_795_328_725_123_456),
        ("nanos", "-1", -1),
    ] {
        let source = format!("function process(event, emit) event.log.v = {expr} emit(event) end");
        let config =
            format!("columns = [{{ name = \"v\", type = \"timestamp\", unit = \"{unit}\" }}]");
        let lua: crate::lua::LuaConfig =
            toml::from_str(&format!("source = '''{source}'''\n{config}")).expect("config");
        let script = lua.script(|_| Err::<String, &str>("none")).expect("script");
        let mut d = crate::lua::LuaFactory::new("t", &lua, script)
            .expect("loads")
            .decoder();
        assert_eq!(
            decode(&mut d, b"x"),
            Ok(vec![vec![Value::Timestamp(micros)]]),
            "{unit} {expr}"
        );
    }
}

#[test]
fn missing_nullable_and_undeclared_fields() {
    let columns = [("a", "u8", false), ("b", "text", true)];
    let source = "function process(event, emit)\n\
                    local m = event.log.message\n\
                    if m ~= 'no a' then event.log.a = 1 end\n\
                    if m == 'b' then event.log.b = 'bee' end\n\
                    event.log.extra = { nested = true }\n\
                    emit(event)\n\
                  end";
    let f = factory(source, &columns, "").expect("loads");
    assert_eq!(
        f.schema()
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.ty, c.nullable))
            .collect::<Vec<_>>(),
        [
            ("a", ColumnType::UInt64, false),
            ("b", ColumnType::String, true)
        ]
    );
    let mut d = f.decoder();
    assert_eq!(
        decode(&mut d, b"b"),
        Ok(vec![vec![Value::U64(1), super::s("bee")]])
    );
    assert_eq!(
        decode(&mut d, b"x"),
        Ok(vec![vec![Value::U64(1), Value::Null]])
    );
    let (kind, field, message) = error(&mut d, b"no a");
    assert_eq!(
        (kind.as_str(), field.as_deref(), message.as_str()),
        (
            MISSING_FIELD,
            Some("a"),
            "the emitted event has no field \"a\" (the column is not nullable)"
        )
    );
}

#[test]
fn a_column_may_read_a_field_of_another_name_and_bytes_have_an_encoding() {
    let source = "function process(event, emit)\n\
                    event.log['device-id'] = 7\n\
                    event.log.raw = event.log.message\n\
                    emit(event)\n\
                  end";
    let config: crate::lua::LuaConfig = toml::from_str(&format!(
        "source = '''{source}'''\ncolumns = [\n\
           {{ name = \"device_id\", field = \"device-id\", type = \"u32\" }},\n\
           {{ name = \"raw\", type = \"bytes\", encoding = \"base64\" }},\n\
         ]"
    ))
    .expect("config");
    let script = config
        .script(|_| Err::<String, &str>("none"))
        .expect("script");
    let f = crate::lua::LuaFactory::new("t", &config, script).expect("loads");
    assert_eq!(
        f.schema().columns[1].ty,
        ColumnType::Bytes(BytesEncoding::Base64)
    );
    let mut d = f.decoder();
    assert_eq!(
        decode(&mut d, b"\x01\x02"),
        Ok(vec![vec![Value::U64(7), Value::Bytes(vec![1, 2].into())]])
    );
}

#[test]
fn rows_are_all_or_nothing_and_buffers_are_reused() {
    // Two good rows, then a bad one: no row at all.
    let source = "function process(event, emit)\n\
                    for i = 1, 3 do\n\
                      event.log.v = (i == 3 and event.log.message == 'bad') and 'x' or i\n\
                      event.log.t = string.rep('t', i)\n\
                      emit(event)\n\
                    end\n\
                  end";
    let columns = [("v", "u8", false), ("t", "text", false)];
    let mut d = factory(source, &columns, "").expect("loads").decoder();
    let (kind, field, _) = error(&mut d, b"bad");
    assert_eq!((kind.as_str(), field.as_deref()), (BAD_FIELD, Some("v")));
    let rows: Vec<_> = (1..=3_u64)
        .map(|i| vec![Value::U64(i), super::s(&"t".repeat(i as usize))])
        .collect();
    for _ in 0..3 {
        assert_eq!(decode(&mut d, b"good"), Ok(rows.clone()));
    }
}

/// A row of many columns whose last is a timestamp given as a Vector table: `emit` keeps
/// the row's values on the stack, and reading the table pushes two more above them, which
/// the room it makes must count (Lua checks it in debug builds). Both ways `emit` holds
/// its keys: in its upvalues (30 columns) and in a key table (260).
#[test]
fn a_timestamp_table_after_many_columns() {
    for count in [30usize, 260] {
        let names: Vec<String> = (0..count).map(|i| format!("c{i}")).collect();
        let mut columns: Vec<(&str, &str, bool)> =
            names.iter().map(|n| (n.as_str(), "u16", false)).collect();
        columns.push(("t", "timestamp", false));
        let source = format!(
            "function process(event, emit) local log = event.log \
             for i = 0, {} do log['c' .. i] = i end \
             log.t = {{ year = 2026, month = 11, day = 22, hour = 6, min = 25, sec = 25 }} \
             emit(event) emit(event) end",
            count - 1
        );
        let mut d = factory(&source, &columns, "")
            .unwrap_or_else(|e| panic!("{count} columns: {e}"))
            .decoder();
        let rows = decode(&mut d, b"payload").expect("decodes");
        assert_eq!(rows.len(), 2);
        for row in &rows {
            let expected: Vec<Value<'static>> = (0..count as u64)
                .map(Value::U64)
                .chain([Value::Timestamp(1_795_328_725_000_000)])
                .collect();
            assert_eq!(row, &expected, "{count} columns");
        }
    }
}

/// A field whose name is longer than Lua's short strings (40 bytes) is read over the API,
/// the others in place: the row is the same as with every field over the API, whatever
/// kind of value each holds (a value `rawtable` leaves to the API, a timestamp table, too).
#[test]
fn long_field_names_are_read_over_the_api_and_the_rows_agree() {
    let long = "a_field_name_longer_than_forty_bytes_which_lua_keeps_apart";
    let source = format!(
        "function process(event, emit) local log = event.log \
         log['{long}'] = 'long' log.i = -3 log.f = 2.5 log.b = false log.s = 'short' \
         log.t = {{ year = 2026, month = 11, day = 22, hour = 6, min = 25, sec = 25 }} \
         log.l = string.rep('x', 50) emit(event) log.i = 4 log.b = nil emit(event) end"
    );
    let config: crate::lua::LuaConfig = toml::from_str(&format!(
        "source = '''{source}'''\ncolumns = [\n\
           {{ name = \"long\", field = \"{long}\", type = \"text\" }},\n\
           {{ name = \"i\", type = \"i64\" }},\n\
           {{ name = \"f\", type = \"f64\" }},\n\
           {{ name = \"b\", type = \"bool\", nullable = true }},\n\
           {{ name = \"s\", type = \"text\" }},\n\
           {{ name = \"t\", type = \"timestamp\" }},\n\
           {{ name = \"l\", type = \"bytes\" }},\n\
         ]"
    ))
    .expect("config");
    let decoder = || {
        let script = config
            .script(|_| Err::<String, &str>("none"))
            .expect("script");
        crate::lua::LuaFactory::new("t", &config, script)
            .expect("loads")
            .decoder()
    };
    let mut in_place = decoder();
    assert_eq!(in_place.columns_read_in_place(), 6);
    let mut over_the_api = crate::lua::rawtable::tests::over_the_api(decoder);
    assert_eq!(over_the_api.columns_read_in_place(), 0);
    let row = |i: i64, b: Value<'static>| {
        vec![
            super::s("long"),
            Value::I64(i),
            Value::F64(2.5),
            b,
            super::s("short"),
            Value::Timestamp(1_795_328_725_000_000),
            Value::Bytes(vec![b'x'; 50].into()),
        ]
    };
    let expected = vec![row(-3, Value::Bool(false)), row(4, Value::Null)];
    assert_eq!(decode(&mut in_place, b"p"), Ok(expected.clone()));
    assert_eq!(decode(&mut over_the_api, b"p"), Ok(expected));
}
