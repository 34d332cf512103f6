//! util-linux `logger(1)` as a real peer: it sends RFC 3164 and RFC 5424 messages over
//! UDP to a socket this test binds on 127.0.0.1 (an ephemeral port), and the payloads it
//! sent must decode to exactly the fields it was told to send.
//!
//! Timestamps are checked twice: equal to the instant written in the raw payload (parsed
//! here independently of the decoder) and within a few seconds of the receive time.
//! `TZ` is set for logger so that local time is a known fixed offset (POSIX `TZ` strings
//! need no tz database), and `LC_ALL=C` keeps BSD month names English.
//!
//! Bounded: one datagram per logger run, a 5 s receive timeout, a 10 s limit per run.
//! Needs `logger` on PATH (util-linux/bsdutils): missing, it fails in CI and skips elsewhere.

use std::{
    net::{IpAddr, Ipv4Addr, UdpSocket},
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use sluice_decode::{
    DecoderFactory, PacketContext, Value,
    syslog::{StructuredDataFormat, SyslogConfig, SyslogFactory},
};
use sluice_testkit::privilege;

/// Largest gap accepted between logger's timestamp and the receive time.
const CLOCK_SLACK_MICROS: i64 = 5_000_000;

/// The receiving end: a loopback socket and the name logger will put in HOSTNAME.
struct Peer {
    socket: UdpSocket,
    port: u16,
    hostname: String,
}

impl Peer {
    fn new() -> Self {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let port = socket.local_addr().expect("local addr").port();
        // logger(1) sends gethostname(2), which is the UTS nodename.
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .expect("hostname")
            .trim()
            .to_owned();
        Self {
            socket,
            port,
            hostname,
        }
    }

    /// Runs logger with `args` (after the server options) and `TZ=tz`, and returns the
    /// datagram it sent with its receive time.
    fn send(&self, tz: &str, args: &[&str]) -> (Vec<u8>, i64) {
        let port = self.port.to_string();
        let mut child = Command::new("logger")
            .args(["--server", "127.0.0.1", "--udp", "--port", &port])
            .args(args)
            .env("TZ", tz)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn logger");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait logger") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("logger {args:?} did not exit within 10 s");
            }
            sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "logger {args:?}: {status}");
        let mut buf = vec![0; 65_536];
        let (len, from) = self
            .socket
            .recv_from(&mut buf)
            .expect("logger's datagram within 5 s");
        assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        buf.truncate(len);
        (buf, now_micros())
    }
}

fn now_micros() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_micros()).expect("fits")
}

fn decode(config: &SyslogConfig, payload: &[u8], received_at: i64) -> Vec<Value<'static>> {
    let mut decoder = SyslogFactory::new(config).expect("valid").build();
    let ctx = PacketContext {
        received_at,
        tunnel_src: None,
        tunnel_dst: None,
        gre_key: None,
        src_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        src_port: 0,
        dst_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        dst_port: 0,
    };
    let mut rows: Vec<Vec<Value<'static>>> = Vec::new();
    let outcome = decoder.decode(&ctx, payload, &mut rows).expect("decodes");
    assert_eq!(outcome.rows, 1);
    rows.remove(0)
}

// ---- an independent reading of the timestamps logger writes

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// Microseconds since the epoch of a UTC civil time, counted year by year.
fn utc(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> i64 {
    let month_days = [
        31,
        if is_leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut days: i64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    days += month_days
        .iter()
        .take(usize::try_from(month - 1).expect("month"))
        .sum::<i64>();
    days += day - 1;
    (((days * 24 + hour) * 60 + minute) * 60 + second) * 1_000_000
}

fn num(text: &str) -> i64 {
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("number {text:?}"))
}

/// logger's RFC 5424 TIMESTAMP, `%Y-%m-%dT%H:%M:%S.%06u±hh:mm`.
fn rfc5424_instant(payload: &str) -> i64 {
    let ts = payload.split(' ').nth(1).expect("timestamp field");
    assert_eq!(ts.len(), 32, "{ts}");
    let local = utc(
        num(&ts[0..4]),
        num(&ts[5..7]),
        num(&ts[8..10]),
        num(&ts[11..13]),
        num(&ts[14..16]),
        num(&ts[17..19]),
    ) + num(&ts[20..26]);
    let offset = (num(&ts[27..29]) * 3600 + num(&ts[30..32]) * 60) * 1_000_000;
    if &ts[26..27] == "-" {
        local + offset
    } else {
        local - offset
    }
}

/// logger's RFC 3164 TIMESTAMP, `%b %e %H:%M:%S` in local time at `offset_seconds`, in
/// the year that puts it nearest to `now`.
fn rfc3164_instant(payload: &str, offset_seconds: i64, now: i64) -> i64 {
    let ts = &payload[payload.find('>').expect("PRI") + 1..][..15];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months
        .iter()
        .position(|m| *m == &ts[0..3])
        .expect("month name") as i64
        + 1;
    let year = (1970..3000)
        .find(|&y| utc(y + 1, 1, 1, 0, 0, 0) > now)
        .expect("year");
    (year - 1..=year + 1)
        .map(|y| {
            utc(
                y,
                month,
                num(&ts[4..6]),
                num(&ts[7..9]),
                num(&ts[10..12]),
                num(&ts[13..15]),
            ) - offset_seconds * 1_000_000
        })
        .min_by_key(|t| t.abs_diff(now))
        .expect("a year")
}

fn text(value: &str) -> Value<'static> {
    Value::Str(value.to_owned().into())
}

fn assert_recent(timestamp: &Value<'_>, expected: i64, received_at: i64) {
    assert_eq!(timestamp, &Value::Timestamp(expected));
    assert!(
        (received_at - expected).abs() < CLOCK_SLACK_MICROS,
        "{expected} vs {received_at}"
    );
}

#[test]
fn logger_rfc3164_and_rfc5424_decode_to_what_was_sent() {
    if !privilege::require_tool("syslog_logger", "logger") {
        return;
    }
    let peer = Peer::new();
    // RFC 3164 carries the short hostname (logger cuts at the first dot).
    let short_host = peer
        .hostname
        .split('.')
        .next()
        .expect("hostname")
        .to_owned();
    let default = SyslogConfig::default();

    // RFC 3164, UTC, tag only.
    let (payload, received_at) = peer.send(
        "UTC0",
        &[
            "--rfc3164",
            "-p",
            "local3.warning",
            "-t",
            "mytag",
            "hello 3164",
        ],
    );
    let raw = String::from_utf8(payload.clone()).expect("ASCII");
    assert!(raw.starts_with("<156>"), "{raw}");
    let row = decode(&default, &payload, received_at);
    assert_recent(&row[5], rfc3164_instant(&raw, 0, received_at), received_at);
    assert_eq!(
        row,
        vec![
            text("rfc3164"),
            Value::U64(19),
            text("local3"),
            Value::U64(4),
            text("warning"),
            row[5].clone(),
            text(&short_host),
            text("mytag"),
            Value::Null,
            Value::Null,
            Value::Null,
            text("hello 3164"),
        ]
    );

    // RFC 3164 with a PID, sent from a +02:00 zone and decoded with that default zone.
    let (payload, received_at) = peer.send(
        "XXX-02",
        &[
            "--rfc3164",
            "-p",
            "auth.info",
            "-t",
            "sshd",
            "--id=4242",
            "Accepted password for root",
        ],
    );
    let raw = String::from_utf8(payload.clone()).expect("ASCII");
    let plus_two = SyslogConfig {
        default_timezone: "+02:00".to_owned(),
        ..SyslogConfig::default()
    };
    let row = decode(&plus_two, &payload, received_at);
    assert_recent(
        &row[5],
        rfc3164_instant(&raw, 7200, received_at),
        received_at,
    );
    assert_eq!(
        row,
        vec![
            text("rfc3164"),
            Value::U64(4),
            text("auth"),
            Value::U64(6),
            text("info"),
            row[5].clone(),
            text(&short_host),
            text("sshd"),
            text("4242"),
            Value::Null,
            Value::Null,
            text("Accepted password for root"),
        ]
    );

    // RFC 5424 with MSGID and structured data, from +05:30, UTF-8 text; no timeQuality.
    let args = [
        "--rfc5424=notq",
        "-p",
        "auth.err",
        "-t",
        "app5",
        "--msgid",
        "MID1",
        "--sd-id",
        "ex@32473",
        "--sd-param",
        r#"k="v""#,
        "--sd-param",
        r#"q="a\"b""#,
        "héllo wörld",
    ];
    let (payload, received_at) = peer.send("IST-05:30", &args);
    let raw = String::from_utf8(payload.clone()).expect("UTF-8");
    assert!(
        raw.split(' ')
            .nth(1)
            .is_some_and(|ts| ts.ends_with("+05:30")),
        "{raw}"
    );
    let sd = r#"[ex@32473 k="v" q="a\"b"]"#;
    let row = decode(&default, &payload, received_at);
    assert_recent(&row[5], rfc5424_instant(&raw), received_at);
    let expected = vec![
        text("rfc5424"),
        Value::U64(4),
        text("auth"),
        Value::U64(3),
        text("err"),
        row[5].clone(),
        text(&peer.hostname),
        text("app5"),
        Value::Null,
        text("MID1"),
        text(sd),
        text("héllo wörld"),
    ];
    assert_eq!(row, expected);
    let json = SyslogConfig {
        structured_data: StructuredDataFormat::Json,
        ..SyslogConfig::default()
    };
    let row = decode(&json, &payload, received_at);
    assert_eq!(row[10], text(r#"{"ex@32473":{"k":"v","q":"a\"b"}}"#));

    // RFC 5424 as logger sends it by default: timeQuality SD, PROCID from --id, no MSGID.
    let (payload, received_at) = peer.send(
        "UTC0",
        &[
            "--rfc5424",
            "-p",
            "user.notice",
            "-t",
            "app5",
            "--id=77",
            "plain",
        ],
    );
    let raw = String::from_utf8(payload.clone()).expect("ASCII");
    let row = decode(&default, &payload, received_at);
    assert_recent(&row[5], rfc5424_instant(&raw), received_at);
    // isSynced depends on this machine's NTP state; the rest is fixed.
    let Value::Str(sd) = &row[10] else {
        panic!("structured_data {:?}", row[10])
    };
    let synced = sd
        .strip_prefix(r#"[timeQuality tzKnown="1" isSynced="1" syncAccuracy=""#)
        .and_then(|s| s.strip_suffix(r#""]"#));
    assert!(
        sd == r#"[timeQuality tzKnown="1" isSynced="0"]"#
            || synced.is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())),
        "{sd}"
    );
    assert_eq!(
        row,
        vec![
            text("rfc5424"),
            Value::U64(1),
            text("user"),
            Value::U64(5),
            text("notice"),
            row[5].clone(),
            text(&peer.hostname),
            text("app5"),
            text("77"),
            Value::Null,
            row[10].clone(),
            text("plain"),
        ]
    );

    // RFC 5424 without time and without hostname: both NILVALUE, so null.
    let (payload, received_at) = peer.send(
        "UTC0",
        &[
            "--rfc5424=notime,nohost",
            "-p",
            "daemon.debug",
            "-t",
            "x",
            "nil fields",
        ],
    );
    assert_eq!(payload, b"<31>1 - - x - - - nil fields");
    let row = decode(&default, &payload, received_at);
    assert_eq!(
        row,
        vec![
            text("rfc5424"),
            Value::U64(3),
            text("daemon"),
            Value::U64(7),
            text("debug"),
            Value::Null,
            Value::Null,
            text("x"),
            Value::Null,
            Value::Null,
            Value::Null,
            text("nil fields"),
        ]
    );
}
