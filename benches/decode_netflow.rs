//! Cost of the `netflow` decoder per flow, on one core: realistic export packets of 30
//! flows each — NetFlow v5, NetFlow v9 (an 18-field IPv4 template with sysUptime times, as
//! routers send) and IPFIX (a 19-field IPv4 template with absolute millisecond times) —
//! decoded with their templates already known, into a sink that only looks at the rows.
//! Criterion reports elements per second: flows per second per core. Before the
//! benchmarks, the heap allocations per packet are counted and printed: they must be 0.
//!
//! Beside them, the error path (`rejected_*`, one packet each): the v5 export with version
//! 8 (`bad_version`) and cut inside its header (`truncated`). A flood of malformed packets
//! must cost no more than good ones, and allocate nothing either.
//!
//! Then the cost of data that waits for its template (`netflow_hold`, per packet, issue
//! 12): a worker's batch as the pipeline runs it — 64 template-less IPFIX packets from as
//! many observation domains decoded (each held), then `release` and `expire` — with 1000,
//! 10 000 or 100 000 packets already held (the hold time set so that as many expire per
//! batch as are held: the held count stays put). Holding must cost the same whatever is
//! held. And a template's arrival releasing the 16 packets that wait for it among 100 000
//! others (`release_16_of_100000`, per released packet).

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
};

use criterion::{Criterion, Throughput, criterion_group};
use sluice_decode::{
    Decoder, DecoderFactory,
    netflow::{
        NetflowConfig, NetflowFactory,
        encode::{FieldSpec, MessageBuilder, RecordWriter},
    },
};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/discard_sink.rs"]
mod discard_sink;
#[path = "support/netflow_export.rs"]
mod netflow_export;

use discard_sink::Discard;
use netflow_export::{EXPORT_SECS, FLOWS, UPTIME_MS, addr, exporter_ctx as ctx, v5_export};

const V9_FIELDS: [(u16, u16); 18] = [
    (8, 4),
    (12, 4),
    (15, 4),
    (10, 2),
    (14, 2),
    (2, 4),
    (1, 4),
    (22, 4),
    (21, 4),
    (7, 2),
    (11, 2),
    (6, 1),
    (4, 1),
    (5, 1),
    (16, 2),
    (17, 2),
    (9, 1),
    (13, 1),
];

const IPFIX_FIELDS: [(u16, u16); 19] = [
    (8, 4),
    (12, 4),
    (15, 4),
    (10, 4),
    (14, 4),
    (2, 8),
    (1, 8),
    (152, 8),
    (153, 8),
    (7, 2),
    (11, 2),
    (6, 2),
    (4, 1),
    (5, 1),
    (16, 4),
    (17, 4),
    (9, 1),
    (13, 1),
    (61, 1), // flowDirection: not a column, skipped
];

fn fields(spec: &[(u16, u16)]) -> Vec<FieldSpec> {
    spec.iter()
        .map(|&(id, len)| FieldSpec::new(id, len))
        .collect()
}

/// A record of `spec`: every field a number or address derived from `i`.
fn record(spec: &[(u16, u16)], i: u32) -> Vec<u8> {
    let mut r = RecordWriter::new();
    for &(id, len) in spec {
        r = match (id, len) {
            (8, 4) => r.ip(IpAddr::V4(addr(i, [192, 0, 2]))),
            (12, 4) => r.ip(IpAddr::V4(addr(i * 7, [203, 0, 113]))),
            (15, 4) => r.ip(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 254))),
            (22, 4) => r.u32(UPTIME_MS - 60_000 + i),
            (21, 4) => r.u32(UPTIME_MS - 1_000 + i),
            (152, 8) => r.u64(1_767_225_540_000 + u64::from(i)),
            (153, 8) => r.u64(1_767_225_599_000 + u64::from(i)),
            (_, 1) => r.u8(i as u8),
            (_, 2) => r.u16(40_000 + i as u16),
            (_, 4) => r.u32(1_000 + i * 13),
            (_, _) => r.u64(u64::from(1_000 + i * 1_500)),
        };
    }
    r.finish()
}

/// (template packet, data packet of 30 flows).
fn v9() -> (Vec<u8>, Vec<u8>) {
    let f = fields(&V9_FIELDS);
    let template = MessageBuilder::v9(UPTIME_MS, EXPORT_SECS, 1, 0)
        .template_set(&[(256, &f)])
        .finish();
    let records: Vec<Vec<u8>> = (0..FLOWS).map(|i| record(&V9_FIELDS, i)).collect();
    let data = MessageBuilder::v9(UPTIME_MS, EXPORT_SECS, 2, 0)
        .data_set_padded(256, &records, true)
        .finish();
    (template, data)
}

fn ipfix() -> (Vec<u8>, Vec<u8>) {
    let f = fields(&IPFIX_FIELDS);
    let template = MessageBuilder::ipfix(EXPORT_SECS, 1, 0)
        .template_set(&[(256, &f)])
        .finish();
    let records: Vec<Vec<u8>> = (0..FLOWS).map(|i| record(&IPFIX_FIELDS, i)).collect();
    let data = MessageBuilder::ipfix(EXPORT_SECS, 2, 0)
        .data_set(256, &records)
        .finish();
    (template, data)
}

/// A decoder that knows `template`, checked on `data`: 30 rows, and no allocation per
/// packet once warm.
fn prepared(name: &str, template: Option<&[u8]>, data: &[u8]) -> Box<dyn Decoder> {
    let factory = NetflowFactory::new(&NetflowConfig::default()).expect("factory");
    let mut d = factory.build();
    let mut sink = Discard(0);
    if let Some(t) = template {
        d.decode(&ctx(), t, &mut sink).expect("template");
    }
    let outcome = d.decode(&ctx(), data, &mut sink).expect("data");
    assert_eq!(outcome.rows, u64::from(FLOWS), "{name}");
    let context = ctx();
    let per_packet = counting_alloc::allocations_per_call(1000, || {
        d.decode(&context, data, &mut sink).expect("data");
    });
    println!(
        "{name}: {} bytes, {FLOWS} flows, {per_packet} allocations per packet",
        data.len()
    );
    assert_eq!(per_packet, 0.0, "{name} allocates while decoding");
    d
}

fn bench(c: &mut Criterion) {
    let v5 = v5_export(0);
    let (v9_template, v9_data) = v9();
    let (ipfix_template, ipfix_data) = ipfix();
    let cases = [
        ("v5", None, v5.as_slice()),
        ("v9", Some(v9_template.as_slice()), v9_data.as_slice()),
        (
            "ipfix",
            Some(ipfix_template.as_slice()),
            ipfix_data.as_slice(),
        ),
    ];
    let mut group = c.benchmark_group("decode_netflow");
    group.throughput(Throughput::Elements(u64::from(FLOWS)));
    for (name, template, data) in cases {
        let mut d = prepared(name, template, data);
        let mut sink = Discard(0);
        let context = ctx();
        group.bench_function(name, |b| {
            b.iter(|| {
                d.decode(&context, black_box(data), &mut sink)
                    .expect("decodes")
            })
        });
    }
    let mut bad_version = v5.clone();
    bad_version[1] = 8;
    let short_header = v5.get(..20).unwrap_or_default().to_vec();
    group.throughput(Throughput::Elements(1));
    for (name, kind, data) in [
        (
            "rejected_bad_version",
            "bad_version",
            bad_version.as_slice(),
        ),
        (
            "rejected_truncated_header",
            "truncated",
            short_header.as_slice(),
        ),
    ] {
        let factory = NetflowFactory::new(&NetflowConfig::default()).expect("factory");
        let mut d = factory.build();
        let mut sink = Discard(0);
        let context = ctx();
        let mut reject = || {
            let err = d.decode(&context, data, &mut sink).expect_err("rejected");
            assert_eq!(err.kind, kind);
        };
        reject();
        let per_packet = counting_alloc::allocations_per_call(1000, &mut reject);
        println!("{name}: {kind}, {per_packet} allocations per packet");
        assert_eq!(per_packet, 0.0, "{name} allocates while rejecting");
        group.bench_function(name, |b| {
            b.iter(|| {
                d.decode(&context, black_box(data), &mut sink)
                    .expect_err("rejected")
            })
        });
    }
    group.finish();
}

/// A template-less IPFIX packet (100 bytes) whose observation domain is set per use.
fn template_less() -> Vec<u8> {
    let records = vec![vec![0u8; 80]];
    MessageBuilder::ipfix(EXPORT_SECS, 1, 0)
        .data_set(300, &records)
        .finish()
}

fn set_domain(packet: &mut [u8], domain: u32) {
    if let Some(field) = packet.get_mut(12..16) {
        field.copy_from_slice(&domain.to_be_bytes());
    }
}

/// Holding: see the module docs.
fn bench_hold(c: &mut Criterion) {
    const BATCH: u32 = 64;
    let mut group = c.benchmark_group("netflow_hold");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    let mut packet = template_less();
    for held in [1_000u32, 10_000, 100_000] {
        // One packet per µs of receive time: held packets are those of the last `held` µs.
        let config = NetflowConfig {
            hold_ms: u64::from(held / 1000),
            max_held_bytes: 4 << 30,
            ..NetflowConfig::default()
        };
        let factory = NetflowFactory::new(&config).expect("factory");
        let mut d = factory.build();
        let mut sink = Discard(0);
        let mut context = ctx();
        let t0 = context.received_at;
        let mut n: u32 = 0;
        let mut batch = |d: &mut Box<dyn Decoder>, sink: &mut Discard| {
            for _ in 0..BATCH {
                n = n.wrapping_add(1);
                set_domain(&mut packet, n);
                context.received_at = t0 + i64::from(n);
                let outcome = d.decode(&context, black_box(&packet), sink).expect("held");
                debug_assert!(outcome.held);
            }
            d.release(sink);
            d.expire(context.received_at, false);
        };
        while factory.held_packets() < held as usize {
            batch(&mut d, &mut sink);
        }
        assert!(factory.held_packets() <= (held + BATCH) as usize);
        group.bench_function(format!("batch_of_64_with_{held}_held"), |b| {
            b.iter(|| batch(&mut d, &mut sink))
        });
        assert!(factory.held_packets() <= (held + BATCH) as usize);
    }
    // A known exporter's template releases its 16 held packets among 100 000 strangers'.
    group.throughput(Throughput::Elements(16));
    let factory = NetflowFactory::new(&NetflowConfig {
        hold_ms: 60_000,
        max_held_bytes: 4 << 30,
        ..NetflowConfig::default()
    })
    .expect("factory");
    let mut d = factory.build();
    let mut sink = Discard(0);
    let context = ctx();
    for domain in 1..=100_000 {
        set_domain(&mut packet, domain);
        d.decode(&context, &packet, &mut sink).expect("held");
    }
    let template = MessageBuilder::ipfix(EXPORT_SECS, 1, 0)
        .template_set(&[(300, &[FieldSpec::new(4, 1)])])
        .finish();
    let withdrawal = MessageBuilder::ipfix(EXPORT_SECS, 1, 0)
        .withdrawal_set(false, &[300])
        .finish();
    let known = MessageBuilder::ipfix(EXPORT_SECS, 1, 0)
        .template_set(&[(256, &[FieldSpec::new(4, 1)])])
        .finish();
    let data = MessageBuilder::ipfix(EXPORT_SECS, 1, 0)
        .data_set(300, &[vec![6]])
        .finish();
    d.decode(&context, &known, &mut sink).expect("template 256");
    group.bench_function("release_16_of_100000", |b| {
        b.iter_custom(|iters| {
            let mut measured = std::time::Duration::ZERO;
            for _ in 0..iters {
                for _ in 0..16 {
                    assert!(d.decode(&context, &data, &mut sink).expect("held").held);
                }
                let start = std::time::Instant::now();
                d.decode(&context, black_box(&template), &mut sink)
                    .expect("template");
                let released = d.release(&mut sink);
                measured += start.elapsed();
                assert_eq!(released, 16);
                d.decode(&context, &withdrawal, &mut sink)
                    .expect("withdrawal");
            }
            measured
        })
    });
    group.finish();
}

criterion_group!(benches, bench, bench_hold);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
