//! Cost of the `schema` (layout) decoder per record: a realistic 64-byte event of 10
//! columns (integers, enum, MAC, timestamp, IPv4, bit fields, text, a skipped reserved
//! block), the same number of plain big-endian integers (the interpreter's floor), and a
//! header + 8 readings event chosen by a discriminator (one record per reading). Rows go to a sink that only looks at them. Before the benchmarks, the number
//! of heap allocations per payload is counted and printed: it must be 0.
//!
//! Beside them, the error path (`rejected_*`): the reference event cut to 40 bytes
//! (`truncated`) and with a `kind` its enum does not name under `on_unknown = "error"`
//! (`unknown_enum`). A flood of malformed payloads must cost no more than good ones, and
//! allocate nothing either.

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
};

use criterion::{Criterion, Throughput, criterion_group};
use sluice_decode::{
    Decoder, PacketContext,
    layout::{
        FieldConfig, GroupConfig, LayoutConfig, LayoutFactory, TimeUnit, UnknownEnum, VariantConfig,
    },
};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/discard_sink.rs"]
mod discard_sink;
#[path = "support/layout_event.rs"]
mod layout_event;

use discard_sink::Discard;
use layout_event::{field, flat_config, flat_payload, names};

/// 64 bytes, 10 columns (the shared reference event).
fn flat() -> (LayoutConfig, Vec<u8>) {
    (flat_config(), flat_payload(0))
}

/// 40 bytes, 10 `u32` columns: nothing but integer reads.
fn ints() -> (LayoutConfig, Vec<u8>) {
    let config = LayoutConfig {
        fields: (0..10).map(|i| field(&format!("n{i}"), "u32")).collect(),
        ..LayoutConfig::default()
    };
    let p: Vec<u8> = (0..10u32)
        .flat_map(|i| (i * 1_000_003).to_be_bytes())
        .collect();
    assert_eq!(p.len(), 40);
    (config, p)
}

/// A 17-byte header whose `kind` selects readings: 8 elements of 6 bytes.
fn readings() -> (LayoutConfig, Vec<u8>) {
    let element = vec![
        field("sensor", "u8"),
        FieldConfig {
            mask: Some(0x0f),
            enum_names: names(&[(0, "ok"), (1, "warn"), (2, "fail")]),
            ..field("status", "u8")
        },
        FieldConfig {
            offset: Some(1),
            mask: Some(0x80),
            ..field("alarm", "u8")
        },
        field("value", "i32"),
    ];
    let config = LayoutConfig {
        fields: vec![
            field("version", "u8"),
            field("kind", "u8"),
            field("device", "mac"),
            field("seq", "u32"),
            FieldConfig {
                timestamp: Some(TimeUnit::Seconds),
                ..field("time", "u32")
            },
        ],
        discriminator: Some("kind".into()),
        variants: vec![
            VariantConfig {
                values: vec![1],
                fields: vec![field("n", "u8")],
                group: Some(GroupConfig {
                    count: Some("n".into()),
                    index: Some("reading".into()),
                    fields: element,
                    ..GroupConfig::default()
                }),
            },
            VariantConfig {
                values: vec![3],
                ..VariantConfig::default()
            },
        ],
        ..LayoutConfig::default()
    };
    let mut p = vec![2, 1, 0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c];
    p.extend(123_456u32.to_be_bytes());
    p.extend(1_795_328_725u32.to_be_bytes());
    p.push(8);
    for i in 0..8u8 {
        p.extend([i, (i % 3) | if i == 5 { 0x80 } else { 0 }]);
        p.extend((i32::from(i) * 1000 - 2500).to_be_bytes());
    }
    assert_eq!(p.len(), 17 + 48);
    (config, p)
}

/// The reference event cut after 40 bytes (`truncated`).
fn rejected_truncated() -> (LayoutConfig, Vec<u8>) {
    let mut payload = flat_payload(0);
    payload.truncate(40);
    (flat_config(), payload)
}

/// The reference event with `kind` 9, which its enum does not name, refused
/// (`on_unknown = "error"`: `unknown_enum`).
fn rejected_unknown_enum() -> (LayoutConfig, Vec<u8>) {
    let mut config = flat_config();
    for f in &mut config.fields {
        if f.name == "kind" {
            f.on_unknown = Some(UnknownEnum::Error);
        }
    }
    let mut payload = flat_payload(0);
    payload[1] = 9;
    (config, payload)
}

fn ctx() -> PacketContext {
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    PacketContext {
        received_at: 1_795_328_725_123_456,
        tunnel_src: None,
        tunnel_dst: None,
        gre_key: None,
        src_ip: ip,
        src_port: 40_000,
        dst_ip: ip,
        dst_port: 5_140,
    }
}

/// Allocations per payload once the decoder's buffers have grown.
fn allocations_per_payload(config: &LayoutConfig, payload: &[u8]) -> (f64, u64) {
    let factory = LayoutFactory::new("bench", config).expect("valid layout");
    let mut decoder = factory.decoder();
    let mut sink = Discard(0);
    let ctx = ctx();
    decoder.decode(&ctx, payload, &mut sink).expect("decodes");
    let rounds = 10_000;
    let allocations = counting_alloc::allocations_per_call(rounds, || {
        decoder.decode(&ctx, payload, &mut sink).expect("decodes");
    });
    (allocations, sink.0 / u64::from(rounds + 1))
}

/// Allocations per rejected payload once warm; the error must be of `kind`.
fn allocations_per_rejection(config: &LayoutConfig, payload: &[u8], kind: &str) -> f64 {
    let factory = LayoutFactory::new("bench", config).expect("valid layout");
    let mut decoder = factory.decoder();
    let mut sink = Discard(0);
    let ctx = ctx();
    let mut reject = || {
        let err = decoder
            .decode(&ctx, payload, &mut sink)
            .expect_err("rejected");
        assert_eq!(err.kind, kind);
    };
    reject();
    counting_alloc::allocations_per_call(10_000, reject)
}

fn bench(c: &mut Criterion) {
    let ctx = ctx();
    let mut group = c.benchmark_group("decode_layout");
    for (name, (config, payload)) in [
        ("flat_64B_10_columns", flat()),
        ("ints_40B_10_u32", ints()),
        ("readings_8x6B", readings()),
    ] {
        let factory = LayoutFactory::new("bench", &config).expect("valid layout");
        let mut decoder = factory.decoder();
        let mut sink = Discard(0);
        let rows = decoder
            .decode(&ctx, &payload, &mut sink)
            .expect("decodes")
            .rows;
        group.throughput(Throughput::Elements(rows));
        group.bench_function(name, |b| {
            b.iter(|| {
                decoder
                    .decode(&ctx, black_box(&payload), &mut sink)
                    .expect("decodes")
            })
        });
    }
    for (name, (config, payload)) in [
        ("rejected_truncated", rejected_truncated()),
        ("rejected_unknown_enum", rejected_unknown_enum()),
    ] {
        let factory = LayoutFactory::new("bench", &config).expect("valid layout");
        let mut decoder = factory.decoder();
        let mut sink = Discard(0);
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| {
                decoder
                    .decode(&ctx, black_box(&payload), &mut sink)
                    .expect_err("rejected")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    for (name, (config, payload)) in [
        ("flat_64B_10_columns", flat()),
        ("ints_40B_10_u32", ints()),
        ("readings_8x6B", readings()),
    ] {
        let (allocations, rows) = allocations_per_payload(&config, &payload);
        println!("{name}: {rows} rows per payload, {allocations} allocations per payload");
        assert_eq!(allocations, 0.0, "{name} allocates while decoding");
    }
    for (name, kind, (config, payload)) in [
        ("rejected_truncated", "truncated", rejected_truncated()),
        (
            "rejected_unknown_enum",
            "unknown_enum",
            rejected_unknown_enum(),
        ),
    ] {
        let allocations = allocations_per_rejection(&config, &payload, kind);
        println!("{name}: {kind}, {allocations} allocations per payload");
        assert_eq!(allocations, 0.0, "{name} allocates while rejecting");
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
