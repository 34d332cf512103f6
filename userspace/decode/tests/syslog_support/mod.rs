//! Helpers shared by the syslog decoder's message tests (`syslog_rfc5424.rs`,
//! `syslog_rfc3164.rs`, `syslog_options.rs`): a decoder per config, the expected row
//! column by column, and an independent UTC calendar for expected timestamps.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::net::{IpAddr, Ipv4Addr};

use sluice_decode::{
    Decoder, DecoderFactory, PacketContext, Value,
    syslog::{SyslogConfig, SyslogFactory},
};

/// 2024-03-15T12:00:00Z, the receive time of every case unless said otherwise.
pub const RECEIVED: i64 = 1_710_504_000_000_000;

/// Microseconds since the epoch of a UTC date and time, counted day by day (independent
/// of the decoder's arithmetic).
pub fn utc(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
) -> i64 {
    let leap = |y: i64| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = |y: i64, m: u32| match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let mut days: i64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    days += (1..month).map(|m| month_days(year, m)).sum::<i64>();
    days += i64::from(day) - 1;
    ((days * 24 + i64::from(hour)) * 60 + i64::from(minute)) * 60_000_000
        + i64::from(second) * 1_000_000
        + i64::from(micros)
}

pub fn ctx(received_at: i64) -> PacketContext {
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    PacketContext {
        received_at,
        tunnel_src: None,
        tunnel_dst: None,
        gre_key: None,
        src_ip: ip,
        src_port: 51_514,
        dst_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        dst_port: 514,
    }
}

/// The expected row, column by column.
#[derive(Clone, Copy, Debug, Default)]
pub struct Row {
    pub format: &'static str,
    pub facility: Option<(u64, &'static str)>,
    pub severity: Option<(u64, &'static str)>,
    pub timestamp: Option<i64>,
    pub hostname: Option<&'static str>,
    pub app_name: Option<&'static str>,
    pub procid: Option<&'static str>,
    pub msgid: Option<&'static str>,
    pub structured_data: Option<&'static str>,
    pub message: &'static str,
}

impl Row {
    pub fn values(self) -> Vec<Value<'static>> {
        let s = |t: Option<&'static str>| t.map_or(Value::Null, |t| Value::Str(t.into()));
        vec![
            Value::Str(self.format.into()),
            self.facility.map_or(Value::Null, |f| Value::U64(f.0)),
            s(self.facility.map(|f| f.1)),
            self.severity.map_or(Value::Null, |f| Value::U64(f.0)),
            s(self.severity.map(|f| f.1)),
            self.timestamp.map_or(Value::Null, Value::Timestamp),
            s(self.hostname),
            s(self.app_name),
            s(self.procid),
            s(self.msgid),
            s(self.structured_data),
            Value::Str(self.message.into()),
        ]
    }
}

pub fn decoder(config: &SyslogConfig) -> Box<dyn Decoder> {
    SyslogFactory::new(config).expect("valid config").build()
}

pub fn decode_with(config: &SyslogConfig, received_at: i64, payload: &[u8]) -> Vec<Value<'static>> {
    let mut rows: Vec<Vec<Value<'static>>> = Vec::new();
    let outcome = decoder(config)
        .decode(&ctx(received_at), payload, &mut rows)
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(payload)));
    assert_eq!((outcome.rows, outcome.held), (1, false));
    assert_eq!(rows.len(), 1);
    rows.remove(0)
}

pub fn check(payload: &str, expected: Row) {
    check_with(
        &SyslogConfig::default(),
        RECEIVED,
        payload.as_bytes(),
        expected,
    );
}

pub fn check_with(config: &SyslogConfig, received_at: i64, payload: &[u8], expected: Row) {
    assert_eq!(
        decode_with(config, received_at, payload),
        expected.values(),
        "{:?}",
        String::from_utf8_lossy(payload)
    );
}

pub const AUTH: (u64, &str) = (4, "auth");
pub const USER: (u64, &str) = (1, "user");
pub const DAEMON: (u64, &str) = (3, "daemon");
pub const AUTHPRIV: (u64, &str) = (10, "authpriv");
pub const LOCAL4: (u64, &str) = (20, "local4");
pub const LOCAL7: (u64, &str) = (23, "local7");
pub const KERN: (u64, &str) = (0, "kern");
pub const CRIT: (u64, &str) = (2, "crit");
pub const ERR: (u64, &str) = (3, "err");
pub const WARNING: (u64, &str) = (4, "warning");
pub const NOTICE: (u64, &str) = (5, "notice");
pub const INFO: (u64, &str) = (6, "info");
