//! Per-packet cost of the userspace record path, stage by stage: parsing a frame the XDP
//! program stripped, parsing a whole captured GRE frame, encoding a record as NDJSON, and
//! sealing (zstd) a batch. Figures are per packet (or per MB for compression); compare
//! them against each other in one run, not across machines. End-to-end packet rates are
//! measured by the packet-rate harness (`cargo xtask bench`, a later issue).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::{
    config::{BatchConfig, FilterConfig},
    decap::{self, PortFilter},
    pipeline::batch::BatchBuilder,
    record::{
        ndjson::{EncodedColumns, NdjsonEncoder},
        packet_context,
    },
};
use sluice_decode::{DecoderFactory as _, raw::RawFactory};
use sluice_testkit::frames::{FrameSpec, MatrixParams, variant_matrix};

fn gre_spec() -> FrameSpec {
    variant_matrix(&MatrixParams::default())
        .into_iter()
        .find(|(label, _)| label == "gre-o4-i4-vlan0--K-")
        .map(|(_, spec)| spec)
        .expect("variant present")
}

fn filter() -> PortFilter {
    PortFilter::new(&FilterConfig {
        ports: vec![5000, 5001],
        plain_udp: true,
    })
}

fn bench(c: &mut Criterion) {
    let spec = gre_spec();
    let frame = spec.build();
    let filter = filter();
    // The same packet as the XDP program hands it over: Ethernet + inner IPv4 + UDP.
    let inner_ip = spec.inner_udp_offset() - 20;
    let mut stripped = frame[..12].to_vec();
    stripped.extend_from_slice(&0x0800u16.to_be_bytes());
    stripped.extend_from_slice(&frame[inner_ip..]);

    let mut group = c.benchmark_group("per_packet");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_stripped", |b| {
        b.iter(|| decap::parse_stripped(black_box(&stripped), None))
    });
    group.bench_function("parse_captured_gre", |b| {
        b.iter(|| decap::parse_captured(black_box(&frame), &filter))
    });
    let datagram = decap::parse_captured(&frame, &filter).expect("steered");
    let ctx = packet_context(1_795_328_725_123_456, &datagram);
    let raw = RawFactory::default();
    let columns = EncodedColumns::new(raw.schema());
    let values = [
        sluice_decode::Value::U64(datagram.payload.len() as u64),
        sluice_decode::Value::Bytes(datagram.payload.into()),
    ];
    let mut encoder = NdjsonEncoder::default();
    let mut out = Vec::with_capacity(1 << 20);
    group.bench_function("encode_ndjson_raw", |b| {
        b.iter(|| {
            if out.len() > 1 << 19 {
                out.clear();
            }
            encoder.encode(black_box(&ctx), &columns, &values, &mut out);
        })
    });
    group.finish();

    let config = BatchConfig::default();
    let mut builder = BatchBuilder::new(0, 0, raw.schema(), &config).expect("compressor");
    let mut decoder = raw.build();
    let mut one = Vec::new();
    encoder.encode(&ctx, &columns, &values, &mut one);
    let records_per_mb = (1 << 20) / one.len();
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Bytes((records_per_mb * one.len()) as u64));
    group.bench_function("decode_raw_encode_and_seal_1MB_zstd3", |b| {
        b.iter(|| {
            for _ in 0..records_per_mb {
                let _ = decoder.decode(black_box(&ctx), datagram.payload, &mut builder);
                builder.add_packets(1);
            }
            builder.seal().expect("sealed")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
