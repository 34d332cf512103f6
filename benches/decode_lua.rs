//! Cost of the `lua` decoder per packet and per record: the ACME-SENSOR v2 script of
//! docs/examples (a Vector `lua` transform script, `string.unpack`) against the `schema`
//! decoder with the document's layout, on the same payloads — a heartbeat (one record), the
//! document's readings event (two records), a readings event of 16 readings, an alarm —
//! and the error path (a readings event cut short: `lua_error` against `truncated`).
//!
//! Before the benchmarks, heap allocations per payload are counted and printed (Lua's own
//! allocations go through the global allocator too): the payload's Lua string and the
//! event tables are allocated per packet; Sluice's row buffers are not.

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
};

use criterion::{Criterion, Throughput, criterion_group};
use sluice_decode::{Decoder, PacketContext};

#[path = "support/acme_decoders.rs"]
mod acme_decoders;
#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/discard_sink.rs"]
mod discard_sink;

use discard_sink::Discard;

fn header(kind: u8) -> Vec<u8> {
    let mut p = vec![2, kind, 0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c];
    p.extend(4711u32.to_be_bytes());
    p.extend(1_795_328_725u32.to_be_bytes());
    p.extend([0x83, 0]);
    p
}

fn readings(n: u8) -> Vec<u8> {
    let mut p = header(1);
    p.extend([n, 0]);
    for i in 0..n {
        p.extend([i + 1, if i % 2 == 0 { 0x80 } else { 3 }]);
        p.extend((i32::from(i) * 1000 - 2500).to_be_bytes());
        p.extend([0, 0]);
    }
    p
}

fn heartbeat() -> Vec<u8> {
    let mut p = header(3);
    p.extend(3600u16.to_be_bytes());
    p.extend(86_400u32.to_be_bytes());
    p
}

fn alarm() -> Vec<u8> {
    let mut p = header(2);
    p.extend(257u16.to_be_bytes());
    p.push(3);
    p.extend(*b"door open\0\0\0\0\0\0\0");
    p
}

fn ctx() -> PacketContext {
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    PacketContext {
        received_at: 1_795_328_725_123_456,
        tunnel_src: None,
        tunnel_dst: None,
        gre_key: None,
        src_ip: ip,
        src_port: 40_000,
        dst_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
        dst_port: 5_141,
    }
}

fn payloads() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("heartbeat_24B", heartbeat()),
        ("readings_2x8B", readings(2)),
        ("readings_16x8B", readings(16)),
        ("alarm_37B", alarm()),
    ]
}

fn bench(c: &mut Criterion) {
    let ctx = ctx();
    let lua = acme_decoders::lua_factory();
    let schema = acme_decoders::schema_factory();
    let mut group = c.benchmark_group("decode_lua");
    for (name, payload) in payloads() {
        let mut decoders: [(&str, Box<dyn Decoder>); 2] = [
            ("schema", Box::new(schema.decoder())),
            ("lua", Box::new(lua.decoder())),
        ];
        for (kind, decoder) in &mut decoders {
            let mut sink = Discard(0);
            let rows = decoder
                .decode(&ctx, &payload, &mut sink)
                .expect("decodes")
                .rows;
            group.throughput(Throughput::Elements(rows));
            group.bench_function(format!("{kind}/{name}"), |b| {
                b.iter(|| {
                    decoder
                        .decode(&ctx, black_box(&payload), &mut sink)
                        .expect("decodes")
                })
            });
        }
    }
    let mut cut = readings(2);
    cut.truncate(30);
    let mut decoders: [(&str, Box<dyn Decoder>); 2] = [
        ("schema", Box::new(schema.decoder())),
        ("lua", Box::new(lua.decoder())),
    ];
    for (kind, decoder) in &mut decoders {
        let mut sink = Discard(0);
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{kind}/rejected_truncated"), |b| {
            b.iter(|| {
                decoder
                    .decode(&ctx, black_box(&cut), &mut sink)
                    .expect_err("rejected")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    let lua = acme_decoders::lua_factory();
    let ctx = ctx();
    for (name, payload) in payloads() {
        let mut decoder = lua.decoder();
        let mut sink = Discard(0);
        decoder.decode(&ctx, &payload, &mut sink).expect("decodes");
        let rounds = 10_000;
        let allocations = counting_alloc::allocations_per_call(rounds, || {
            decoder.decode(&ctx, &payload, &mut sink).expect("decodes");
        });
        println!(
            "lua/{name}: {} rows per payload, {allocations} heap allocations per payload \
             (Lua's included), state {} bytes",
            sink.0 / u64::from(rounds + 1),
            decoder.used_memory()
        );
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
