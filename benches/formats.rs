//! Cost of each stage after decapsulation on its own, per record and per MB, for the
//! `sluice-formats` crate's batch encoders (the `BatchEncoder` of every `Format` at its
//! default level) and what they are made of:
//!
//! - `record_build/*`: the `raw` decoder turning a payload into a row, into a sink that
//!   discards it (the `schema` and `netflow` decoders have their own benches,
//!   `decode_layout` and `decode_netflow`). Allocations per payload are asserted to be 0.
//! - `encode/<format>/<rows>`: one batch of about 1 MiB of NDJSON-equivalent rows written
//!   through a `FileEncoder` and finished into a complete file (a fresh encoder per batch,
//!   built outside the timing). Rows: the `raw` decoder's with 64- and 512-byte payloads,
//!   the `schema` decoder's 10-column device event, and NetFlow v5 flows — decoded once,
//!   before the timing, so only the encoder is measured. Throughput is records and bytes of
//!   the format's uncompressed output (`BatchEncoder::uncompressed_len`: the exact text
//!   for NDJSON/CSV, the encoder's estimate of the values' size for Parquet).
//! - `encode_steady/<format>/<rows>`: the same batch through one encoder kept from
//!   iteration to iteration (`BatchEncoder::finish_batch`), the file dropped inside the
//!   timing: the daemon's steady state, where a `BatchBuilder` writes batch after batch of
//!   one (worker, stream) through one encoder. Rows allocate nothing in a reused encoder
//!   (asserted); what `finish_batch` allocates is printed.
//! - `compress/<codec>/<rows>`: compression alone over an already encoded NDJSON batch, per
//!   MB of NDJSON, at the default levels (`ndjson_zstd`'s zstd 1, gzip 6) and at zstd 3
//!   for comparison, with the crates `sluice-formats` uses, fed in 64 KiB chunks.
//! - `combine/<format>/<rows>`: [`COMBINED_BATCHES`] finished batches (the `encode` batch
//!   of that format, about 1 MiB of NDJSON-equivalent rows each) joined by a `Combiner`
//!   into one file written to `io::sink()`, per batch file byte: what the uploader pays
//!   to make one object out of spooled batches (no decoding; Parquet reads each batch's
//!   footer and page index and writes one footer).
//!
//! Before the benchmarks each batch's sizes, compression ratio and allocations are printed
//! (for a new encoder, and for one that has written a batch before).
//! Run: `cargo bench -p sluice-formats --bench formats` (BENCHMARKS.md, "Per-stage").

use std::{
    hint::black_box,
    io::Write as _,
    net::{IpAddr, Ipv4Addr},
};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group};
use sluice_decode::{
    Decoder, DecoderFactory, PacketContext, RecordSchema, RowSink, Value,
    layout::LayoutFactory,
    netflow::{NetflowConfig, NetflowFactory},
    raw::RawFactory,
};
use sluice_formats::{
    BatchEncoder, CombineKind, Combiner, FileEncoder, Format, FormatConfig, TextEncoder,
};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/discard_sink.rs"]
mod discard_sink;
#[path = "support/layout_event.rs"]
mod layout_event;
#[path = "support/netflow_export.rs"]
mod netflow_export;

use discard_sink::Discard;
use layout_event::{flat_config, flat_payload};
use netflow_export::{exporter_ctx, v5_export};

/// Rows per batch are chosen so that the batch is about this much NDJSON (the daemon's
/// batches close at 8 MiB by default; 1 MiB keeps an iteration in the tens of ms).
const BATCH_NDJSON_BYTES: u64 = 1 << 20;

/// Batches joined into one file per `combine` iteration.
const COMBINED_BATCHES: usize = 32;

/// What `sluice-formats` hands its compressor at a time (`compress.rs`, `CHUNK`).
const CHUNK: usize = 64 * 1024;

/// One batch's rows, each with the context of its packet, decoded ahead of the timing.
struct RowSet {
    name: &'static str,
    schema: RecordSchema,
    rows: Vec<(PacketContext, Vec<Value<'static>>)>,
}

/// Packet `n` of a fleet of 8 devices behind one GRE tunnel, 37 µs apart.
fn device_ctx(n: u32) -> PacketContext {
    PacketContext {
        received_at: 1_795_328_725_123_456 + i64::from(n) * 37,
        tunnel_src: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))),
        tunnel_dst: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        gre_key: Some(1001),
        src_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3 + (n % 8) as u8)),
        src_port: 40_000 + (n % 8) as u16,
        dst_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)),
        dst_port: 5_140,
    }
}

/// `payload_bytes` of device events (64 bytes each) starting at event `n`: what a port
/// without a decoder carries.
fn device_payload(n: u32, payload_bytes: usize) -> Vec<u8> {
    let events = payload_bytes / 64;
    (0..events as u32)
        .flat_map(|i| flat_payload(n * events as u32 + i))
        .collect()
}

/// Decodes packets `(ctx, payload)` from `packets` with `decoder` until the rows make
/// [`BATCH_NDJSON_BYTES`] of NDJSON.
fn collect_rows(
    name: &'static str,
    schema: &RecordSchema,
    decoder: &mut dyn Decoder,
    mut packets: impl FnMut(u32) -> (PacketContext, Vec<u8>),
) -> RowSet {
    let mut ndjson = TextEncoder::ndjson_zstd(schema, 1).expect("zstd level 1 is valid");
    let mut rows = Vec::new();
    let mut n = 0;
    while ndjson.uncompressed_len() < BATCH_NDJSON_BYTES {
        let (ctx, payload) = packets(n);
        let mut decoded: Vec<Vec<Value<'static>>> = Vec::new();
        decoder
            .decode(&ctx, &payload, &mut decoded)
            .expect("bench payloads decode");
        for values in decoded {
            ndjson.row(&ctx, &values);
            rows.push((ctx, values));
        }
        n += 1;
    }
    RowSet {
        name,
        schema: schema.clone(),
        rows,
    }
}

fn row_sets() -> Vec<RowSet> {
    let raw = RawFactory::default();
    let layout = LayoutFactory::new("device", &flat_config()).expect("valid layout");
    let netflow = NetflowFactory::new(&NetflowConfig::default()).expect("default config");
    let exporter = exporter_ctx();
    vec![
        collect_rows("raw_64B", raw.schema(), &mut *raw.build(), |n| {
            (device_ctx(n), device_payload(n, 64))
        }),
        collect_rows("raw_512B", raw.schema(), &mut *raw.build(), |n| {
            (device_ctx(n), device_payload(n, 512))
        }),
        collect_rows(
            "schema_10_columns",
            layout.schema(),
            &mut *layout.build(),
            |n| (device_ctx(n), flat_payload(n)),
        ),
        collect_rows("netflow_v5", netflow.schema(), &mut *netflow.build(), |n| {
            let ctx = PacketContext {
                received_at: exporter.received_at + i64::from(n) * 1_000,
                ..exporter
            };
            (ctx, v5_export(n))
        }),
    ]
}

/// One batch of `rows` in `config`'s format: the complete file.
fn encode_batch(config: &FormatConfig, set: &RowSet, encoder: FileEncoder) -> Vec<u8> {
    let mut encoder = encoder;
    reuse_encoder(config, set, &mut encoder)
}

/// One batch of `rows` through `encoder`, which is left empty for the next batch.
fn reuse_encoder(config: &FormatConfig, set: &RowSet, encoder: &mut FileEncoder) -> Vec<u8> {
    for (ctx, values) in &set.rows {
        encoder.row(ctx, values);
    }
    encoder
        .finish_batch()
        .unwrap_or_else(|e| panic!("{} rows in {}: {e}", set.name, config.format))
}

/// Allocations of a second batch through an encoder that has written one: per record while
/// rows go in (asserted to be 0), and at `finish_batch`.
fn describe_reuse(config: &FormatConfig, set: &RowSet) {
    let mut encoder = FileEncoder::new(config, &set.schema).expect("valid format config");
    let first = reuse_encoder(config, set, &mut encoder);
    let rows = counting_alloc::allocations_per_call(1, || {
        for (ctx, values) in &set.rows {
            encoder.row(ctx, values);
        }
    });
    let mut second = Vec::new();
    let finish = counting_alloc::allocations_per_call(1, || {
        second = encoder
            .finish_batch()
            .unwrap_or_else(|e| panic!("{} rows in {}: {e}", set.name, config.format));
    });
    assert_eq!(second, first, "a reused encoder writes the same file");
    assert_eq!(rows, 0.0, "{}/{}: rows allocate", config.format, set.name);
    println!(
        "{}/{} (reused encoder): allocations: {:.3} per record while rows go in, {finish} at \
         finish_batch",
        config.format,
        set.name,
        rows / set.rows.len() as f64,
    );
}

/// Uncompressed bytes of one batch of `set` in `config`'s format; prints the batch's
/// sizes and its allocations while rows go in (per record) and at `finish` (per batch).
fn describe_batch(config: &FormatConfig, set: &RowSet) -> u64 {
    let records = set.rows.len() as u64;
    let mut encoder = Some(FileEncoder::new(config, &set.schema).expect("valid format config"));
    let rows = counting_alloc::allocations_per_call(1, || {
        if let Some(encoder) = encoder.as_mut() {
            for (ctx, values) in &set.rows {
                encoder.row(ctx, values);
            }
        }
    });
    let encoder = encoder.take().expect("built above");
    let uncompressed = encoder.uncompressed_len();
    assert_eq!(encoder.records(), records);
    let mut encoder = Some(encoder);
    let mut file_len = 0;
    let finish = counting_alloc::allocations_per_call(1, || {
        if let Some(encoder) = encoder.take() {
            file_len = encoder
                .finish()
                .unwrap_or_else(|e| panic!("{} rows in {}: {e}", set.name, config.format))
                .len();
        }
    });
    println!(
        "{}/{}: {records} records, {uncompressed} B uncompressed, {file_len} B file \
         (ratio {:.1}); allocations: {:.3} per record while rows go in, {finish} at finish",
        config.format,
        set.name,
        uncompressed as f64 / file_len as f64,
        rows / records as f64,
    );
    uncompressed
}

/// The batch's NDJSON, uncompressed (from the `ndjson_zstd` encoder, decompressed).
fn ndjson_text(set: &RowSet) -> Vec<u8> {
    let config = FormatConfig::new(Format::NdjsonZstd);
    let encoder = FileEncoder::new(&config, &set.schema).expect("valid format config");
    let file = encode_batch(&config, set, encoder);
    zstd::bulk::decompress(&file, 4 * BATCH_NDJSON_BYTES as usize).expect("our own zstd file")
}

/// zstd levels the `compress` group compares: `ndjson_zstd`'s default, and 3 (zstd's own
/// default, Sluice's before it was measured on rows; docs/formats.md).
fn zstd_levels() -> [i32; 2] {
    [Format::NdjsonZstd.default_level(), 3]
}

fn zstd_at(level: i32, text: &[u8]) -> Vec<u8> {
    let mut z =
        zstd::stream::write::Encoder::new(Vec::new(), level).expect("zstd accepts levels 1 to 22");
    for chunk in text.chunks(CHUNK) {
        z.write_all(chunk).expect("writes to a Vec");
    }
    z.finish().expect("writes to a Vec")
}

fn gzip_level_6(text: &[u8]) -> Vec<u8> {
    let level = u32::try_from(Format::NdjsonGzip.default_level()).expect("gzip level 6");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    for chunk in text.chunks(CHUNK) {
        gz.write_all(chunk).expect("writes to a Vec");
    }
    gz.finish().expect("writes to a Vec")
}

fn record_build(c: &mut Criterion) {
    let raw = RawFactory::default();
    let mut group = c.benchmark_group("record_build");
    group.throughput(Throughput::Elements(1));
    for (name, size) in [("raw_64B", 64), ("raw_512B", 512)] {
        let mut decoder = raw.build();
        let mut sink = Discard(0);
        let ctx = device_ctx(0);
        let payload = device_payload(0, size);
        decoder.decode(&ctx, &payload, &mut sink).expect("decodes");
        let allocations = counting_alloc::allocations_per_call(10_000, || {
            decoder.decode(&ctx, &payload, &mut sink).expect("decodes");
        });
        println!("record_build/{name}: {allocations} allocations per payload");
        assert_eq!(allocations, 0.0, "{name} allocates while decoding");
        group.bench_function(name, |b| {
            b.iter(|| {
                decoder
                    .decode(black_box(&ctx), black_box(&payload), &mut sink)
                    .expect("decodes")
            })
        });
    }
    group.finish();
}

fn encode_and_compress(c: &mut Criterion) {
    let sets = row_sets();

    let mut group = c.benchmark_group("encode");
    // An iteration is a whole batch (milliseconds): fewer, longer samples.
    group.sample_size(20);
    for set in &sets {
        for format in Format::ALL {
            let config = FormatConfig::new(format);
            let uncompressed = describe_batch(&config, set);
            group.throughput(Throughput::ElementsAndBytes {
                elements: set.rows.len() as u64,
                bytes: uncompressed,
            });
            group.bench_function(BenchmarkId::new(format.name(), set.name), |b| {
                b.iter_batched(
                    || FileEncoder::new(&config, &set.schema).expect("valid format config"),
                    |encoder| encode_batch(&config, set, encoder),
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("encode_steady");
    group.sample_size(20);
    for set in &sets {
        for format in Format::ALL {
            let config = FormatConfig::new(format);
            describe_reuse(&config, set);
            let mut encoder = FileEncoder::new(&config, &set.schema).expect("valid format config");
            let uncompressed = {
                for (ctx, values) in &set.rows {
                    encoder.row(ctx, values);
                }
                encoder.uncompressed_len()
            };
            // The first batch grows the encoder's buffers; the timed ones reuse them.
            black_box(encoder.finish_batch().expect("encodes"));
            group.throughput(Throughput::ElementsAndBytes {
                elements: set.rows.len() as u64,
                bytes: uncompressed,
            });
            group.bench_function(BenchmarkId::new(format.name(), set.name), |b| {
                b.iter(|| black_box(reuse_encoder(&config, set, &mut encoder)).len())
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("compress");
    group.sample_size(20);
    for set in &sets {
        let text = ndjson_text(set);
        let zstd: Vec<String> = zstd_levels()
            .iter()
            .map(|&level| format!("zstd {level} → {} B", zstd_at(level, &text).len()))
            .collect();
        println!(
            "compress/{}: {} B NDJSON, {}, gzip 6 → {} B",
            set.name,
            text.len(),
            zstd.join(", "),
            gzip_level_6(&text).len()
        );
        group.throughput(Throughput::Bytes(text.len() as u64));
        for level in zstd_levels() {
            group.bench_function(BenchmarkId::new(format!("zstd_{level}"), set.name), |b| {
                b.iter(|| zstd_at(level, black_box(&text)))
            });
        }
        group.bench_function(BenchmarkId::new("gzip_6", set.name), |b| {
            b.iter(|| gzip_level_6(black_box(&text)))
        });
    }
    group.finish();
}

fn combine(c: &mut Criterion) {
    let sets = row_sets();
    let mut group = c.benchmark_group("combine");
    group.sample_size(20);
    for set in sets
        .iter()
        .filter(|s| s.name == "raw_512B" || s.name == "netflow_v5")
    {
        for format in Format::ALL {
            let config = FormatConfig::new(format);
            let encoder = FileEncoder::new(&config, &set.schema).expect("valid format config");
            let batch = bytes::Bytes::from(encode_batch(&config, set, encoder));
            let kind = CombineKind::for_format(format);
            let run = || {
                let mut combiner = Combiner::new(kind, std::io::sink());
                for _ in 0..COMBINED_BATCHES {
                    combiner
                        .push(batch.clone())
                        .expect("our own batches combine");
                }
                combiner.finish().expect("writes to io::sink").1
            };
            let summary = run();
            let input = (batch.len() * COMBINED_BATCHES) as u64;
            println!(
                "combine/{format}/{}: {COMBINED_BATCHES} batches of {} B → {} B",
                set.name,
                batch.len(),
                summary.bytes
            );
            group.throughput(Throughput::Bytes(input));
            group.bench_function(BenchmarkId::new(format.name(), set.name), |b| b.iter(run));
        }
    }
    group.finish();
}

criterion_group!(benches, record_build, encode_and_compress, combine);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
