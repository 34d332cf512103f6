//! Data that overtakes its template: packet-atomic holding, release by another decoder of
//! the same factory, expiry of held packets (by age and at shutdown), the per-exporter
//! bound, and the accounting rule — every packet is recorded (decoded now or released
//! later) or dropped (error or expired), exactly once, also with several threads.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier};

use sluice_decode::netflow::encode::{FieldSpec, MessageBuilder, RecordWriter};
use sluice_decode::netflow::{NetflowConfig, NetflowFactory, NetflowStats};
use sluice_decode::{DecodeOutcome, Decoder, DecoderFactory, PacketContext, Value};

/// 2026-01-01T00:00:00Z.
const EXPORT_SECS: u32 = 1_767_225_600;
const T0: i64 = 1_767_225_600_000_000;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn ctx(received_at: i64, exporter: u8) -> PacketContext {
    PacketContext {
        received_at,
        tunnel_src: Some(v4(192, 0, 2, 30)),
        tunnel_dst: Some(v4(192, 0, 2, 1)),
        gre_key: None,
        src_ip: v4(198, 51, 100, exporter),
        src_port: 9_995,
        dst_ip: v4(198, 51, 100, 2),
        dst_port: 2055,
    }
}

fn factory(hold_ms: u64, max_held_packets: usize) -> NetflowFactory {
    NetflowFactory::new(&NetflowConfig {
        template_timeout_secs: 1800,
        hold_ms,
        max_held_packets,
        ..NetflowConfig::default()
    })
    .expect("factory")
}

const T256: [FieldSpec; 3] = [
    FieldSpec::new(8, 4),
    FieldSpec::new(2, 4),
    FieldSpec::new(4, 1),
];
const T257: [FieldSpec; 2] = [FieldSpec::new(12, 4), FieldSpec::new(1, 8)];

fn rec256(last_octet: u8, packets: u32) -> Vec<u8> {
    RecordWriter::new()
        .ip(v4(203, 0, 113, last_octet))
        .u32(packets)
        .u8(6)
        .finish()
}

fn rec257(last_octet: u8, bytes: u64) -> Vec<u8> {
    RecordWriter::new()
        .ip(v4(203, 0, 113, last_octet))
        .u64(bytes)
        .finish()
}

/// (src_addr, dst_addr, packets, bytes) of each row.
fn summary(d: &dyn Decoder, rows: &[Vec<Value<'static>>]) -> Vec<[Value<'static>; 4]> {
    let s = d.schema();
    let i = |n: &str| s.index_of(n).expect(n);
    let (src, dst, packets, bytes) = (i("src_addr"), i("dst_addr"), i("packets"), i("bytes"));
    rows.iter()
        .map(|r| {
            [
                r[src].clone(),
                r[dst].clone(),
                r[packets].clone(),
                r[bytes].clone(),
            ]
        })
        .collect()
}

fn held() -> DecodeOutcome {
    DecodeOutcome {
        rows: 0,
        held: true,
    }
}

#[test]
fn a_packet_with_one_unknown_template_is_held_whole_and_released_by_another_decoder() {
    let f = factory(2000, 1024);
    let mut a = f.build();
    let mut b = f.build();
    let mut c = f.build();
    // Template 256 and data for 256 and 257; 257 is unknown: no row at all.
    let mixed = MessageBuilder::ipfix(EXPORT_SECS, 1, 1)
        .template_set(&[(256, &T256)])
        .data_set(256, &[rec256(1, 10)])
        .data_set(257, &[rec257(2, 2000)])
        .finish();
    let mut rows = Vec::new();
    assert_eq!(a.decode(&ctx(T0, 1), &mixed, &mut rows), Ok(held()));
    assert!(rows.is_empty());
    assert_eq!(f.held_packets(), 1);
    // Its template was applied all the same: a data-only packet for 256 decodes.
    let data256 = MessageBuilder::ipfix(EXPORT_SECS, 2, 1)
        .data_set(256, &[rec256(3, 30)])
        .finish();
    assert_eq!(
        b.decode(&ctx(T0 + 1, 1), &data256, &mut rows),
        Ok(DecodeOutcome {
            rows: 1,
            held: false
        })
    );
    // Nothing to release while 257 is unknown.
    let mut released = Vec::new();
    assert_eq!(
        (
            a.release(&mut released),
            b.release(&mut released),
            c.release(&mut released)
        ),
        (0, 0, 0)
    );
    // Template 257 arrives at b; c releases the held packet, exactly once.
    let template257 = MessageBuilder::ipfix(EXPORT_SECS, 3, 1)
        .template_set(&[(257, &T257)])
        .finish();
    assert_eq!(
        b.decode(&ctx(T0 + 2, 1), &template257, &mut rows),
        Ok(DecodeOutcome::default())
    );
    assert_eq!(c.release(&mut released), 1);
    assert_eq!(
        (
            a.release(&mut released),
            b.release(&mut released),
            c.release(&mut released)
        ),
        (0, 0, 0)
    );
    assert_eq!(
        summary(c.as_ref(), &released),
        [
            [
                Value::Ip(v4(203, 0, 113, 1)),
                Value::Null,
                Value::U64(10),
                Value::Null
            ],
            [
                Value::Null,
                Value::Ip(v4(203, 0, 113, 2)),
                Value::Null,
                Value::U64(2000)
            ],
        ]
    );
    assert_eq!((a.expire(T0 + 10_000_000, true), f.held_packets()), (0, 0));
    assert_eq!(
        f.stats(),
        NetflowStats {
            templates_learned: 2,
            packets_held: 1,
            packets_released: 1,
            ..NetflowStats::default()
        }
    );
}

#[test]
fn held_packets_expire_after_hold_ms_of_receive_time() {
    let f = factory(2000, 1024);
    let mut d = f.build();
    let data = MessageBuilder::v9(1_000, EXPORT_SECS, 1, 7)
        .data_set(256, &[rec256(1, 1)])
        .finish();
    assert_eq!(d.decode(&ctx(T0, 1), &data, &mut Vec::new()), Ok(held()));
    assert_eq!(
        d.decode(&ctx(T0 + 500_000, 1), &data, &mut Vec::new()),
        Ok(held())
    );
    // Exactly hold_ms old is not older than hold_ms.
    assert_eq!(d.expire(T0 + 2_000_000, false), 0);
    assert_eq!(d.expire(T0 + 2_000_001, false), 1);
    assert_eq!(f.held_packets(), 1);
    assert_eq!(d.expire(T0 + 2_500_001, false), 1);
    assert_eq!(f.held_packets(), 0);
    // A template arriving after the expiry completes nothing.
    let template = MessageBuilder::v9(1_000, EXPORT_SECS, 2, 7)
        .template_set(&[(256, &T256)])
        .finish();
    d.decode(&ctx(T0 + 3_000_000, 1), &template, &mut Vec::new())
        .expect("template");
    assert_eq!(d.release(&mut Vec::new()), 0);
    let stats = f.stats();
    assert_eq!(
        (
            stats.packets_held,
            stats.packets_expired,
            stats.packets_released
        ),
        (2, 2, 0)
    );
}

#[test]
fn shutdown_expires_everything_held() {
    let f = factory(60_000, 1024);
    let mut d = f.build();
    let data = MessageBuilder::ipfix(EXPORT_SECS, 1, 1)
        .data_set(300, &[vec![1]])
        .finish();
    for exporter in 1..=3 {
        assert_eq!(
            d.decode(&ctx(T0, exporter), &data, &mut Vec::new()),
            Ok(held())
        );
    }
    assert_eq!(f.held_packets(), 3);
    assert_eq!(d.expire(T0, false), 0);
    assert_eq!(d.expire(T0, true), 3);
    assert_eq!(f.held_packets(), 0);
}

#[test]
fn the_hold_queue_is_bounded_per_exporter() {
    let f = factory(2000, 2);
    let mut d = f.build();
    let data = MessageBuilder::ipfix(EXPORT_SECS, 1, 1)
        .data_set(300, &[vec![1]])
        .finish();
    assert_eq!(d.decode(&ctx(T0, 1), &data, &mut Vec::new()), Ok(held()));
    assert_eq!(d.decode(&ctx(T0, 1), &data, &mut Vec::new()), Ok(held()));
    let err = d
        .decode(&ctx(T0, 1), &data, &mut Vec::new())
        .expect_err("full");
    assert_eq!(
        (
            err.kind,
            err.field_text().as_deref(),
            err.offset,
            err.message().as_str()
        ),
        (
            "no_template",
            Some("set id"),
            16,
            "template 300 is unknown and the exporter already holds max_held_packets packets"
        )
    );
    // Another exporter has its own queue.
    assert_eq!(d.decode(&ctx(T0, 2), &data, &mut Vec::new()), Ok(held()));
    assert_eq!((f.held_packets(), f.stats().hold_overflows), (3, 1));
}

#[test]
fn holding_off_makes_missing_templates_errors() {
    for (hold_ms, max) in [(0, 1024), (2000, 0)] {
        let f = factory(hold_ms, max);
        let mut d = f.build();
        let data = MessageBuilder::v9(0, EXPORT_SECS, 1, 1)
            .data_set(256, &[rec256(1, 1)])
            .finish();
        let err = d
            .decode(&ctx(T0, 1), &data, &mut Vec::new())
            .expect_err("no hold");
        assert_eq!(
            (err.kind, err.offset, err.message().as_str()),
            ("no_template", 20, "template 256 is unknown")
        );
        assert_eq!(f.held_packets(), 0);
    }
}

#[test]
fn a_released_packet_that_fails_is_counted_by_the_next_expire() {
    let f = factory(2000, 1024);
    let mut d = f.build();
    // Its record is 3 bytes, but template 300 will say 8 (an address and a counter)
    // with a variable-length address: a 2-byte address does not fit.
    let data = MessageBuilder::ipfix(EXPORT_SECS, 1, 1)
        .data_set(300, &[RecordWriter::new().varlen(&[1, 2], false).finish()])
        .finish();
    assert_eq!(d.decode(&ctx(T0, 1), &data, &mut Vec::new()), Ok(held()));
    let template = MessageBuilder::ipfix(EXPORT_SECS, 2, 1)
        .template_set(&[(300, &[FieldSpec::new(8, 0xffff)])])
        .finish();
    d.decode(&ctx(T0, 1), &template, &mut Vec::new())
        .expect("template");
    let mut rows = Vec::new();
    assert_eq!(d.release(&mut rows), 0);
    assert!(rows.is_empty());
    assert_eq!(d.expire(T0, false), 1);
    assert_eq!(d.expire(T0, false), 0);
    let stats = f.stats();
    assert_eq!(
        (
            stats.packets_held,
            stats.packets_released,
            stats.release_failures
        ),
        (1, 0, 1)
    );
}

#[test]
fn a_released_packet_still_missing_a_template_waits_again() {
    let f = factory(2000, 1024);
    let mut d = f.build();
    let data = MessageBuilder::ipfix(EXPORT_SECS, 1, 1)
        .data_set(256, &[rec256(1, 1)])
        .data_set(257, &[rec257(1, 1)])
        .finish();
    assert_eq!(d.decode(&ctx(T0, 1), &data, &mut Vec::new()), Ok(held()));
    let t256 = MessageBuilder::ipfix(EXPORT_SECS, 2, 1)
        .template_set(&[(256, &T256)])
        .finish();
    let t257 = MessageBuilder::ipfix(EXPORT_SECS, 3, 1)
        .template_set(&[(257, &T257)])
        .finish();
    d.decode(&ctx(T0, 1), &t256, &mut Vec::new()).expect("256");
    let mut rows = Vec::new();
    assert_eq!(d.release(&mut rows), 0);
    assert_eq!(f.held_packets(), 1);
    d.decode(&ctx(T0, 1), &t257, &mut Vec::new()).expect("257");
    assert_eq!(d.release(&mut rows), 1);
    assert_eq!((rows.len(), f.held_packets()), (2, 0));
}

/// Many workers, one exporter, the template packet somewhere in the middle: every packet
/// ends up decoded exactly once, directly or through a release.
#[test]
fn concurrent_workers_complete_every_packet_exactly_once() {
    const WORKERS: usize = 4;
    const DATA_PACKETS: usize = 400;
    const FLOWS: usize = 3;
    let f = Arc::new(factory(60_000, 1024));
    let template = MessageBuilder::ipfix(EXPORT_SECS, 0, 1)
        .template_set(&[(256, &T256), (257, &T257)])
        .finish();
    let mut packets: Vec<Vec<u8>> = (0..DATA_PACKETS)
        .map(|i| {
            let n = (i % 250) as u8;
            MessageBuilder::ipfix(EXPORT_SECS, i as u32 + 1, 1)
                .data_set(256, &[rec256(n, 1), rec256(n, 2)])
                .data_set(257, &[rec257(n, 3)])
                .finish()
        })
        .collect();
    packets.insert(DATA_PACKETS / 3, template);
    // The first data packet is decoded before the workers start, so at least one packet
    // is held whatever the scheduling.
    let first = packets.remove(0);
    let mut main = f.build();
    assert_eq!(
        main.decode(&ctx(T0, 1), &first, &mut Vec::new()),
        Ok(held())
    );
    let packets = Arc::new(packets);
    let barrier = Arc::new(Barrier::new(WORKERS));
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (f, packets, barrier) =
                (Arc::clone(&f), Arc::clone(&packets), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut d = f.build();
                let (mut direct, mut held, mut released, mut rows) = (0u64, 0u64, 0u64, Vec::new());
                barrier.wait();
                for (i, p) in packets.iter().enumerate().filter(|(i, _)| i % WORKERS == w) {
                    let outcome = d
                        .decode(&ctx(T0 + i as i64, 1), p, &mut rows)
                        .expect("no error");
                    if outcome.held {
                        held += 1;
                    } else {
                        direct += 1;
                    }
                    released += d.release(&mut rows);
                }
                barrier.wait();
                released += d.release(&mut rows);
                (direct, held, released, rows.len() as u64)
            })
        })
        .collect();
    let (mut direct, mut held, mut released, mut rows) = (0, 1, 0, 0);
    for h in handles {
        let (a, b, c, d) = h.join().expect("worker");
        direct += a;
        held += b;
        released += c;
        rows += d;
    }
    assert_eq!(direct + held, DATA_PACKETS as u64 + 1);
    assert!(held >= 1);
    assert_eq!(released, held);
    assert_eq!(rows, (DATA_PACKETS * FLOWS) as u64);
    assert_eq!(f.held_packets(), 0);
    let stats = f.stats();
    assert_eq!(
        (
            stats.packets_held,
            stats.packets_released,
            stats.packets_expired
        ),
        (held, held, 0)
    );
}
