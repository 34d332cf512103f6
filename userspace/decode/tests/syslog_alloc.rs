//! The syslog decoder allocates nothing per message in the common case: valid UTF-8 text
//! and raw structured data are borrowed from the payload. Measured with a counting global
//! allocator (this file is its own test binary, so the allocator sees only this test),
//! with a sink that inspects the row without copying it.
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
    Decoder, DecoderFactory, PacketContext, RowSink, Value,
    syslog::{StructuredDataFormat, SyslogConfig, SyslogFactory},
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
