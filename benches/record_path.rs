//! Per-packet cost of the daemon's record path, stage by stage: parsing a frame the XDP
//! program stripped, parsing a whole captured GRE frame, and a worker's whole batch path
//! (raw decoder → the configured format's encoder → sealed file) for NDJSON+zstd and
//! Parquet; then the packet-rate harness's `schema` and `lua` rows in process (the ACME
//! readings event through each decoder into NDJSON+zstd), the worker's work without the
//! queues, the other threads and the generator sharing its cores, on a series of events (each
//! packet a new one, as real traffic), on the series of a site's 256 sensors taking turns
//! (each packet from another sender address and device), on the series as the harness
//! sends it (each packet its own receive time and one of 256 source ports: the columns
//! of where it came from and when change every packet, as in the daemon), and on one event
//! repeated.
//! Figures are per packet
//! (or per MB); compare them against each other in one run, not across machines. Each
//! encoder on its own: benches/formats.rs; each decoder: benches/decode_*.rs. End-to-end
//! packet rates: the packet-rate harness (`cargo xtask bench`).

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::{
    config::{BatchConfig, FilterConfig},
    decap::{self, PortFilter},
    pipeline::batch::BatchBuilder,
    record::packet_context,
};
use sluice_decode::{DecoderFactory, PacketContext, raw::RawFactory};
use sluice_formats::{Format, FormatConfig};
use sluice_testkit::{
    acme,
    frames::{FrameSpec, MatrixParams, variant_matrix},
};

#[path = "support/acme_decoders.rs"]
mod acme_decoders;

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
    let mut group = c.benchmark_group("per_packet");
    group.throughput(Throughput::Elements(1));
    // A frame as the XDP program hands it over: whole, as it arrived.
    group.bench_function("parse_steered_gre", |b| {
        b.iter(|| decap::parse_steered(black_box(&frame), &filter))
    });
    group.bench_function("parse_captured_gre", |b| {
        b.iter(|| decap::parse_captured(black_box(&frame), &filter))
    });
    let datagram = decap::parse_captured(&frame, &filter).expect("steered");
    let ctx = packet_context(1_795_328_725_123_456, &datagram);
    group.finish();

    let raw = RawFactory::default();
    let config = BatchConfig::default();
    let mut group = c.benchmark_group("batch_path");
    const RECORDS: u64 = 10_000;
    group.throughput(Throughput::Elements(RECORDS));
    for format in [Format::NdjsonZstd, Format::Parquet] {
        let mut builder =
            BatchBuilder::new(0, 0, raw.schema(), &FormatConfig::new(format), &config)
                .expect("the raw schema has an encoder in every format");
        let mut decoder = raw.build();
        group.bench_function(format!("decode_raw_encode_seal_{format}"), |b| {
            b.iter(|| {
                for _ in 0..RECORDS {
                    let _ = decoder.decode(black_box(&ctx), datagram.payload, &mut builder);
                    builder.add_packets(1);
                }
                builder.seal().expect("sealed")
            })
        });
    }
    group.finish();

    // The packet-rate harness's `schema` and `lua` rows, in process: the readings event
    // through each decoder into NDJSON+zstd, sealed.
    let lua = acme_decoders::lua_factory();
    let schema = acme_decoders::schema_factory();
    let mut group = c.benchmark_group("acme_readings");
    const PACKETS: u64 = 10_000;
    group.throughput(Throughput::Elements(PACKETS));
    let factories: [(&str, &dyn DecoderFactory); 2] = [("schema", &schema), ("lua", &lua)];
    // `series`: a sensor's successive events (`acme::readings_event`), each a new payload,
    // as real traffic and the packet-rate harness's default; `devices`: the series of
    // `DEVICES` sensors taking turns, each with its own address, device MAC and sequence
    // numbers (a site's sensors behind one tunnel: the harness sends one sensor's);
    // `traffic`: the series with each packet's own receive time (3 µs apart, as at 0.3
    // Mpps) and one of 256 inner source ports in turn, as the harness sends it (the other
    // cases keep one context, so the received_at and source columns' text is made once);
    // and `repeated`: the same event every packet (the harness's `--acme-events repeated`).
    let device_contexts: Vec<PacketContext> = (0..DEVICES)
        .map(|device| PacketContext {
            src_ip: device_address(ctx.src_ip, device),
            ..ctx
        })
        .collect();
    for payloads in [
        Payloads::Series,
        Payloads::Devices,
        Payloads::Traffic,
        Payloads::Repeated,
    ] {
        for (kind, factory) in factories {
            let mut builder = BatchBuilder::new(
                0,
                0,
                factory.schema(),
                &FormatConfig::new(Format::NdjsonZstd),
                &config,
            )
            .expect("an NDJSON encoder");
            let mut decoder = factory.build();
            let first = decoder.decode(&ctx, &acme::readings_event(0), &mut builder);
            assert!(
                first.as_ref().is_ok_and(|o| o.rows == 2),
                "{kind}: an event of the series decodes to two records: {first:?}"
            );
            let mut n = 0u32;
            group.bench_function(format!("{kind}_ndjson_zstd/{}", payloads.name()), |b| {
                b.iter(|| {
                    for _ in 0..PACKETS {
                        n = n.wrapping_add(1);
                        let traffic;
                        let (ctx, event) = match payloads {
                            Payloads::Series => (&ctx, acme::readings_event(n)),
                            Payloads::Traffic => {
                                traffic = PacketContext {
                                    received_at: ctx.received_at + 3 * i64::from(n),
                                    src_port: TRAFFIC_BASE_PORT
                                        .wrapping_add((n % TRAFFIC_PORTS) as u16),
                                    ..ctx
                                };
                                (&traffic, acme::readings_event(n))
                            }
                            Payloads::Devices => {
                                let device = n % DEVICES;
                                let ctx = device_contexts.get(device as usize).unwrap_or(&ctx);
                                (ctx, device_event(device, n / DEVICES))
                            }
                            Payloads::Repeated => (&ctx, acme::READINGS_EVENT),
                        };
                        let _ = decoder.decode(black_box(ctx), &event, &mut builder);
                        builder.add_packets(1);
                    }
                    builder.seal().expect("sealed")
                })
            });
        }
    }
    group.finish();
}

/// The payloads of the `acme_readings` cases.
#[derive(Clone, Copy)]
enum Payloads {
    Series,
    Devices,
    Traffic,
    Repeated,
}

impl Payloads {
    fn name(self) -> &'static str {
        match self {
            Self::Series => "series",
            Self::Devices => "devices",
            Self::Traffic => "traffic",
            Self::Repeated => "repeated",
        }
    }
}

/// Sensors taking turns in the `devices` case.
const DEVICES: u32 = 256;

/// Inner source ports taking turns in the `traffic` case, from [`TRAFFIC_BASE_PORT`]
/// (the n-th packet's is the base plus n modulo this, as the packet-rate harness sends).
const TRAFFIC_PORTS: u32 = 256;
/// The first of the `traffic` case's source ports.
const TRAFFIC_BASE_PORT: u16 = 40_000;

/// Sensor `device`'s address: `base` with its last byte `device` (in the same /24, or
/// /120 for IPv6: a documentation range stays one).
fn device_address(base: IpAddr, device: u32) -> IpAddr {
    let last = device as u8;
    match base {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, last))
        }
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[15] = last;
            IpAddr::V6(Ipv6Addr::from(octets))
        }
    }
}

/// Event `n` of sensor `device`: the series' event with the sensor's own MAC (its last two
/// bytes the device number).
fn device_event(device: u32, n: u32) -> [u8; 36] {
    let mut event = acme::readings_event(n);
    // The MAC is bytes 2..8 of the event.
    event[6..8].copy_from_slice(&(device as u16).to_be_bytes());
    event
}

criterion_group!(benches, bench);
criterion_main!(benches);
