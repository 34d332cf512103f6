//! The event a script gets is the one Vector's `socket` source (mode `udp`) gives its
//! `lua` transform: `message`, `host`, `port`, `source_type`, `timestamp` under `log`.

use std::net::{IpAddr, Ipv6Addr};

use super::{Rows, ctx, decode, factory, s};
use crate::{Decoder as _, Value};

#[test]
fn the_event_has_vectors_socket_fields() {
    let source = r#"
        function process(event, emit)
          local log = event.log
          local keys = {}
          for k in pairs(log) do keys[#keys + 1] = k end
          table.sort(keys)
          log.keys = table.concat(keys, ",")
          log.ts = log.timestamp
          local t = log.timestamp
          log.ts_text = string.format("%04d-%02d-%02dT%02d:%02d:%02d.%09d yday %d wday %d dst %s",
            t.year, t.month, t.day, t.hour, t.min, t.sec, t.nanosec, t.yday, t.wday,
            tostring(t.isdst))
          log.same = tostring(rawequal(log.timestamp, t))
          emit(event)
        end"#;
    let columns = [
        ("message", "bytes", false),
        ("host", "ip", false),
        ("port", "u16", false),
        ("source_type", "text", false),
        ("keys", "text", false),
        ("ts", "timestamp", false),
        ("ts_text", "text", false),
        ("same", "text", false),
        ("timestamp", "timestamp", false),
    ];
    let mut d = factory(source, &columns, "").expect("loads").decoder();
    let rows = decode(&mut d, b"\x00payload").expect("decodes");
    assert_eq!(
        rows,
        vec![vec![
            Value::Bytes(b"\x00payload".to_vec().into()),
            Value::Ip(ctx().src_ip),
            Value::U64(4000),
            s("socket"),
            // `timestamp` is made when first read, so `pairs` does not list it before.
            s("host,message,port,source_type"),
            Value::Timestamp(1_795_328_725_123_456),
            s("2026-11-22T06:25:25.123456000 yday 326 wday 1 dst false"),
            s("true"),
            Value::Timestamp(1_795_328_725_123_456),
        ]]
    );
}

#[test]
fn timestamp_is_there_for_a_script_that_never_reads_it() {
    let source = "function process(event, emit) emit(event) end";
    let mut d = factory(source, &[("timestamp", "timestamp", false)], "")
        .expect("loads")
        .decoder();
    assert_eq!(
        decode(&mut d, b"x"),
        Ok(vec![vec![Value::Timestamp(1_795_328_725_123_456)]])
    );
}

#[test]
fn host_is_the_senders_address_as_text() {
    let source = "function process(event, emit) event.log.h = event.log.host emit(event) end";
    let mut d = factory(source, &[("h", "text", false)], "")
        .expect("loads")
        .decoder();
    for ip in [
        ctx().src_ip,
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 7)),
        ctx().src_ip,
    ] {
        let mut rows = Vec::new();
        let packet = crate::PacketContext {
            src_ip: ip,
            ..ctx()
        };
        d.decode(&packet, b"x", &mut rows).expect("decodes");
        assert_eq!(rows, vec![vec![s(&ip.to_string())]]);
    }
}

#[test]
fn hooks_may_be_inline_functions_as_in_vector() {
    let source = "";
    let columns = [("n", "u8", false)];
    let f = factory(
        source,
        &columns,
        "hooks = { process = 'function (event, emit) event.log.n = #event.log.message emit(event) end' }",
    )
    .expect("loads");
    let mut d = f.decoder();
    assert_eq!(decode(&mut d, b"abc"), Ok(vec![vec![Value::U64(3)]]));
}

/// `log` starts with the declared fields' keys in place (see `template`): to the script
/// they are absent, whatever it does — reads them raw, lists `log`, keeps an earlier
/// event, runs the collector between assignments, or adds enough fields of its own that
/// the table grows — and every row is the one a `log` made empty gives.
#[test]
fn declared_fields_the_script_has_not_set_are_absent() {
    let source = r#"
        local kept
        function process(event, emit)
          local log = event.log
          local absent = rawget(log, "a") == nil and log.b == nil and rawget(log, "c") == nil
          local n = 0
          for _ in pairs(log) do n = n + 1 end
          log.a = #log.message
          if log.message == "collect" then
            collectgarbage("collect")
          end
          if log.message == "grow" then
            for i = 1, 100 do log["extra" .. i] = i end
          end
          log.b = kept and kept.a or -1
          log.listed = n
          local m = 0
          for _ in pairs(log) do m = m + 1 end
          log.after = m
          log.absent = tostring(absent)
          kept = log
          emit(event)
          log.b = nil
          log.c = "second"
          emit(event)
        end"#;
    let columns = [
        ("a", "i64", false),
        ("b", "i64", true),
        ("c", "text", true),
        ("listed", "i64", false),
        ("after", "i64", false),
        ("absent", "text", false),
    ];
    let rows = |d: &mut crate::lua::LuaDecoder| -> Vec<Rows> {
        [b"x".as_slice(), b"collect", b"grow", b"yy", b"collect"]
            .iter()
            .map(|payload| decode(d, payload).expect("decodes"))
            .collect()
    };
    let mut with_template = factory(source, &columns, "").expect("loads").decoder();
    assert!(with_template.has_log_template());
    let mut without = crate::lua::rawtable::tests::over_the_api(|| {
        factory(source, &columns, "").expect("loads").decoder()
    });
    assert!(!without.has_log_template());
    let expected = rows(&mut without);
    assert_eq!(rows(&mut with_template), expected);
    let row = |a: i64, b: Option<i64>, c: Option<&str>, after: i64| {
        vec![
            Value::I64(a),
            b.map_or(Value::Null, Value::I64),
            c.map_or(Value::Null, s),
            Value::I64(4),
            Value::I64(after),
            s("true"),
        ]
    };
    // 4 fields of the socket source, then a, b, listed (and 100 more when growing).
    assert_eq!(
        expected,
        vec![
            vec![row(1, Some(-1), None, 7), row(1, None, Some("second"), 7)],
            vec![row(7, Some(1), None, 7), row(7, None, Some("second"), 7)],
            vec![
                row(4, Some(7), None, 107),
                row(4, None, Some("second"), 107)
            ],
            vec![row(2, Some(4), None, 7), row(2, None, Some("second"), 7)],
            vec![row(7, Some(2), None, 7), row(7, None, Some("second"), 7)],
        ]
    );
}
