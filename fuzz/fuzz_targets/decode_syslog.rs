//! Fuzz target for the syslog decoder: arbitrary bytes as one UDP payload.
//!
//! Beyond "never panics", it checks the decoder's contract: with the default options a
//! payload that is not empty (after trailing NUL/CR/LF) is exactly one row of 12 values,
//! and an empty one is the `empty` error; with `invalid_utf8 = "reject"` and JSON
//! structured data the only extra outcome is `invalid_utf8`. The first byte also picks
//! the receive time, so year resolution runs near both ends of the `i64` range.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use sluice_decode::{
    Decoder, DecoderFactory, PacketContext, RowSink, Value,
    syslog::{InvalidUtf8, StructuredDataFormat, SyslogConfig, SyslogFactory},
};

/// Counts rows and checks their width without keeping them.
#[derive(Default)]
struct Check {
    rows: u64,
}

impl RowSink for Check {
    fn row(&mut self, _ctx: &PacketContext, values: &[Value<'_>]) {
        assert_eq!(values.len(), 12);
        assert!(matches!(values[0], Value::Str(_)));
        assert!(matches!(values[11], Value::Str(_)));
        self.rows += 1;
    }
}

fn ctx(received_at: i64) -> PacketContext {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    PacketContext {
        received_at,
        tunnel_src: None,
        tunnel_dst: None,
        gre_key: None,
        src_ip: ip,
        src_port: 514,
        dst_ip: ip,
        dst_port: 514,
    }
}

fn decoder(config: &SyslogConfig) -> Option<Box<dyn Decoder>> {
    SyslogFactory::new(config).ok().map(|f| f.build())
}

fuzz_target!(|data: &[u8]| {
    let received_at = match data.first() {
        Some(0) => i64::MIN,
        Some(1) => i64::MAX,
        Some(2) => 0,
        _ => 1_710_504_000_000_000,
    };
    let ctx = ctx(received_at);
    let empty = data.iter().all(|b| matches!(b, 0 | b'\n' | b'\r'));

    let Some(mut replace) = decoder(&SyslogConfig::default()) else {
        return;
    };
    let mut sink = Check::default();
    match replace.decode(&ctx, data, &mut sink) {
        Ok(outcome) => assert!(!empty && outcome.rows == 1 && sink.rows == 1 && !outcome.held),
        Err(e) => assert!(empty && e.kind == "empty" && sink.rows == 0),
    }

    let strict = SyslogConfig {
        default_timezone: "-23:59".to_owned(),
        max_message_bytes: 3,
        invalid_utf8: InvalidUtf8::Reject,
        structured_data: StructuredDataFormat::Json,
    };
    let Some(mut strict) = decoder(&strict) else {
        return;
    };
    let mut sink = Check::default();
    match strict.decode(&ctx, data, &mut sink) {
        Ok(outcome) => assert!(outcome.rows == 1 && sink.rows == 1),
        Err(e) => assert!(matches!(e.kind, "empty" | "invalid_utf8") && sink.rows == 0),
    }
});
