//! The decoders allocate nothing per payload in the common case, and nothing at all on
//! their error paths: syslog's valid UTF-8 text and raw structured data are borrowed from
//! the payload, and a rejected payload of any decoder (schema, NetFlow, syslog) costs no
//! allocation, so a flood of malformed payloads costs no more than good ones. Measured
//! with a counting global allocator (this file is its own test binary, so the allocator
//! sees only this test), with a sink that inspects the row without copying it.
//!
//! The counter is per thread: the test harness runs other threads, whose allocations
//! must not count.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    borrow::Cow,
    cell::Cell,
    net::{IpAddr, Ipv4Addr},
};

use sluice_decode::{
    DecodeError, Decoder, DecoderFactory, PacketContext, RowSink, Value,
    layout::{LayoutConfig, LayoutFactory},
    netflow::{NetflowConfig, NetflowFactory},
    syslog::{InvalidUtf8, StructuredDataFormat, SyslogConfig, SyslogFactory},
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// thread-local `Cell` of a `Copy` type, which needs no allocation itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Counts rows and borrowed/owned text values, without allocating.
#[derive(Default)]
struct CountingSink {
    rows: u64,
    borrowed: u64,
    owned: u64,
}

impl RowSink for CountingSink {
    fn row(&mut self, _ctx: &PacketContext, values: &[Value<'_>]) {
        self.rows += 1;
        for value in values {
            match value {
                Value::Str(Cow::Borrowed(_)) => self.borrowed += 1,
                Value::Str(Cow::Owned(_)) => self.owned += 1,
                _ => {}
            }
        }
    }
}

const RFC3164: &[u8] =
    b"<86>Mar 15 10:20:30 web01 sshd[4242]: Accepted publickey for deploy from 192.0.2.10 port 51234 ssh2 RSA SHA256:abc";
const RFC5424: &[u8] = br#"<165>1 2024-03-15T10:20:30.123+01:00 mx1 mgd 3046 UI_COMMIT [junos@2636.1.1.1.2.18 username="admin"] User 'admin' requested 'commit'"#;
const CISCO: &[u8] =
    b"<189>42: *Mar  1 00:01:02.345: %SYS-5-CONFIG_I: Configured from console by vty0 (10.0.0.1)";

fn ctx() -> PacketContext {
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    PacketContext {
        received_at: 1_710_504_000_000_000,
        tunnel_src: None,
        tunnel_dst: None,
        gre_key: None,
        src_ip: ip,
        src_port: 514,
        dst_ip: ip,
        dst_port: 514,
    }
}

/// Allocations made while decoding each payload `rounds` times, and the sink.
fn measure(decoder: &mut dyn Decoder, payloads: &[&[u8]], rounds: u64) -> (u64, CountingSink) {
    let ctx = ctx();
    let mut sink = CountingSink::default();
    let before = allocations();
    for _ in 0..rounds {
        for payload in payloads {
            let result = decoder.decode(&ctx, payload, &mut sink);
            assert!(result.is_ok());
        }
    }
    (allocations() - before, sink)
}

#[test]
fn common_messages_allocate_nothing() {
    let mut decoder = SyslogFactory::new(&SyslogConfig::default())
        .expect("valid")
        .build();
    let (allocated, sink) = measure(decoder.as_mut(), &[RFC3164, RFC5424, CISCO], 1000);
    assert_eq!(allocated, 0);
    assert_eq!(sink.rows, 3000);
    assert_eq!(sink.owned, 0);
    // format, two names, hostname, app_name, procid, message (3164); the same with msgid
    // and structured_data (5424); format, two names, message (Cisco).
    assert_eq!(sink.borrowed, 1000 * (7 + 9 + 4));
}

#[test]
fn the_counter_sees_the_exceptions() {
    // Invalid UTF-8 under "replace" and JSON structured data are the documented
    // exceptions: one owned string each, and the counter must see them.
    let mut decoder = SyslogFactory::new(&SyslogConfig::default())
        .expect("valid")
        .build();
    let (allocated, sink) = measure(decoder.as_mut(), &[b"<13>Mar 15 10:20:30 h t: caf\xe9"], 10);
    assert_eq!(sink.owned, 10);
    // How many allocations a lossy conversion takes is std's business; at least one each.
    assert!(allocated >= 10, "{allocated}");

    let json = SyslogConfig {
        structured_data: StructuredDataFormat::Json,
        ..SyslogConfig::default()
    };
    let mut decoder = SyslogFactory::new(&json).expect("valid").build();
    let (allocated, sink) = measure(decoder.as_mut(), &[RFC5424], 10);
    assert_eq!(sink.owned, 10);
    assert!(allocated >= 10, "{allocated}");
}

/// Allocations made while `decoder` rejects each payload `rounds` times, after one
/// warm-up round; each rejection must be of the expected kind. The error is dropped
/// unread, as the worker does between its (sampled) log lines.
fn measure_rejections(decoder: &mut dyn Decoder, payloads: &[(&[u8], &str)], rounds: u64) -> u64 {
    let ctx = ctx();
    let mut sink = CountingSink::default();
    let mut reject = |payload: &[u8], kind: &str| {
        let result: Result<_, DecodeError> = decoder.decode(&ctx, payload, &mut sink);
        assert!(
            matches!(&result, Err(e) if e.kind == kind),
            "{kind}: {result:?}"
        );
    };
    for (payload, kind) in payloads {
        reject(payload, kind);
    }
    let before = allocations();
    for _ in 0..rounds {
        for (payload, kind) in payloads {
            reject(payload, kind);
        }
    }
    let allocated = allocations() - before;
    assert_eq!(sink.rows, 0);
    allocated
}

#[test]
fn rejected_schema_payloads_allocate_nothing() {
    let config: LayoutConfig = serde_json::from_value(serde_json::json!({
        "fields": [
            { "name": "id", "type": "u16" },
            { "name": "status", "type": "u8", "enum": { "0": "ok" }, "on_unknown": "error" },
            { "name": "n", "type": "u8" },
        ],
        "group": {
            "count": "n",
            "size": 4,
            "max_count": 8,
            "fields": [ { "name": "temp", "type": "i32" } ]
        }
    }))
    .expect("layout JSON matches the config structs");
    let mut decoder = LayoutFactory::new("alloc", &config).expect("valid").build();
    let payloads: &[(&[u8], &str)] = &[
        // The header ends inside `status`.
        (&[0, 1], "truncated"),
        // `status` 7 has no name.
        (&[0, 1, 7, 0], "unknown_enum"),
        // Element 1 of 2 is cut short.
        (&[0, 1, 0, 2, 0, 0, 0, 1, 0], "truncated"),
        // Above max_count.
        (&[0, 1, 0, 9], "count_too_large"),
    ];
    assert_eq!(measure_rejections(decoder.as_mut(), payloads, 1000), 0);
}

#[test]
fn rejected_netflow_payloads_allocate_nothing() {
    let mut decoder = NetflowFactory::new(&NetflowConfig::default())
        .expect("valid")
        .build();
    // A v5 header (24 bytes) announcing 2 records but carrying none.
    let mut short_v5 = vec![0u8; 24];
    short_v5[1] = 5;
    short_v5[3] = 2;
    let payloads: &[(&[u8], &str)] = &[
        // Version 8 is not NetFlow v5, v9 or IPFIX.
        (&[0, 8, 0, 0, 0, 0, 0, 0], "bad_version"),
        // A v9 header cut after its version and count.
        (&[0, 9, 0, 1], "truncated"),
        // An IPFIX header cut inside its export time.
        (&[0, 10, 0, 16, 0, 0], "truncated"),
        (&short_v5, "truncated"),
    ];
    assert_eq!(measure_rejections(decoder.as_mut(), payloads, 1000), 0);
}

/// An IPFIX packet of observation domain `domain` with one data set of template 256,
/// which nobody defined.
fn template_less_ipfix(domain: u8) -> Vec<u8> {
    let mut p = vec![0, 10, 0, 28, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, domain];
    p.extend_from_slice(&[1, 0, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8]);
    p
}

/// A packet refused by a hold limit (`max_held_bytes`, `max_held_packets`) is a
/// `no_template` error that copies nothing: a flood of template-less data costs no
/// allocation once the limits are reached.
#[test]
fn netflow_packets_refused_by_a_hold_limit_allocate_nothing() {
    let full = NetflowFactory::new(&NetflowConfig {
        max_held_bytes: 1,
        ..NetflowConfig::default()
    })
    .expect("valid");
    let mut decoder = full.build();
    let (a, b) = (template_less_ipfix(1), template_less_ipfix(2));
    let payloads: &[(&[u8], &str)] = &[(&a, "no_template"), (&b, "no_template")];
    assert_eq!(measure_rejections(decoder.as_mut(), payloads, 1000), 0);
    assert_eq!(full.stats().hold_refused_bytes, 2002);

    let one_each = NetflowFactory::new(&NetflowConfig {
        max_held_packets: 1,
        ..NetflowConfig::default()
    })
    .expect("valid");
    let mut decoder = one_each.build();
    let held = decoder.decode(&ctx(), &a, &mut CountingSink::default());
    assert!(matches!(held, Ok(outcome) if outcome.held), "{held:?}");
    let payloads: &[(&[u8], &str)] = &[(&a, "no_template")];
    assert_eq!(measure_rejections(decoder.as_mut(), payloads, 1000), 0);
    assert_eq!(one_each.stats().hold_overflows, 1001);
}

#[test]
fn rejected_syslog_payloads_allocate_nothing() {
    let reject = SyslogConfig {
        invalid_utf8: InvalidUtf8::Reject,
        // JSON structured data is the one owned value: a rejection must not build it.
        structured_data: StructuredDataFormat::Json,
        ..SyslogConfig::default()
    };
    let mut decoder = SyslogFactory::new(&reject).expect("valid").build();
    let payloads: &[(&[u8], &str)] = &[
        (b"", "empty"),
        (b"\r\n\0", "empty"),
        (b"<13>Mar 15 10:20:30 h t: caf\xe9", "invalid_utf8"),
        (
            b"<165>1 2024-03-15T10:20:30Z mx1 mgd 3046 UI [a@1 b=\"c\"] caf\xe9",
            "invalid_utf8",
        ),
    ];
    assert_eq!(measure_rejections(decoder.as_mut(), payloads, 1000), 0);
}
