//! Real batches from `FileEncoder`, combined, and read back with independent readers
//! (flate2's multi-member decoder, zstd's decoder, the parquet crate's row reader): the
//! combined file must hold exactly the rows of one batch holding them all.

use std::{
    borrow::Cow,
    io::{Read as _, Write},
    net::{IpAddr, Ipv4Addr},
    ops::Range,
};

use bytes::Bytes;
use parquet::file::{
    metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataOptions, ParquetMetaDataReader},
    reader::{FileReader as _, SerializedFileReader},
};
use sluice_decode::{DecoderFactory as _, PacketContext, RecordSchema, RowSink as _, Value};

use super::*;
use crate::{
    BatchEncoder as _, FileEncoder, FormatConfig, compress::gzip_member, tests::all_types,
};

/// Batches of rows `0..160`, two of them empty (the first and one in the middle).
const BATCHES: [Range<u64>; 5] = [0..0, 0..100, 100..100, 100..157, 157..160];

/// Rows per Parquet row group in these tests, so that a batch has several.
const ROW_GROUP_ROWS: u64 = 40;

/// Row `n` of `all_types()`: every value depends on `n`, with nulls and a NaN now and then.
fn row(n: u64) -> (PacketContext, Vec<Value<'static>>) {
    let mut ctx = crate::tests::ctx(n.is_multiple_of(2));
    ctx.received_at += n as i64;
    ctx.src_port = n as u16;
    let values = vec![
        if n.is_multiple_of(5) {
            Value::Null
        } else {
            Value::U64(n * 1_000_003)
        },
        Value::Bool(n.is_multiple_of(3)),
        Value::I64(-(n as i64) * 7),
        match n {
            _ if n.is_multiple_of(7) => Value::Null,
            _ if n.is_multiple_of(11) => Value::F64(f64::NAN),
            _ => Value::F64(n as f64 / 4.0),
        },
        if n.is_multiple_of(4) {
            Value::Null
        } else {
            Value::Str(Cow::Owned(format!("row {n}, \"quoted\"\nnext line")))
        },
        Value::Bytes(Cow::Owned(n.to_be_bytes().to_vec())),
        Value::Bytes(Cow::Owned(vec![n as u8; (n % 5) as usize])),
        Value::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, (n >> 8) as u8, n as u8))),
        Value::Mac([2, 0, 0, 0, (n >> 8) as u8, n as u8]),
        Value::Timestamp(1_795_328_725_000_000 + n as i64),
    ];
    (ctx, values)
}

fn config(format: Format) -> FormatConfig {
    let mut config = FormatConfig::new(format);
    if format == Format::Parquet {
        config.row_group_rows = Some(ROW_GROUP_ROWS);
    }
    config
}

fn encode(config: &FormatConfig, schema: &RecordSchema, rows: Range<u64>) -> Bytes {
    let mut encoder = FileEncoder::new(config, schema).expect("encoder");
    for n in rows.clone() {
        let (ctx, values) = row(n);
        encoder.row(&ctx, &values);
    }
    assert_eq!(encoder.records(), rows.end - rows.start);
    Bytes::from(encoder.finish().expect("finish"))
}

fn batches(format: Format) -> Vec<Bytes> {
    BATCHES
        .iter()
        .map(|rows| encode(&config(format), &all_types(), rows.clone()))
        .collect()
}

/// All rows in one batch: what the combined file must read as.
fn one_batch(format: Format) -> Bytes {
    encode(&config(format), &all_types(), 0..160)
}

fn combine(format: Format, batches: &[Bytes]) -> (Vec<u8>, CombineSummary) {
    let mut combiner = Combiner::new(CombineKind::for_format(format), Vec::new());
    for batch in batches {
        combiner.push(batch.clone()).expect("push");
    }
    assert_eq!(combiner.batches(), batches.len() as u64);
    let row_groups = combiner.row_groups();
    let (file, summary) = combiner.finish().expect("finish");
    assert_eq!(summary.row_groups.unwrap_or(0), row_groups);
    (file, summary)
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("gzip");
    text
}

fn unzstd(bytes: &[u8]) -> String {
    String::from_utf8(zstd::stream::decode_all(bytes).expect("zstd")).expect("utf-8")
}

fn text_summary(file: &[u8], batches: u64) -> CombineSummary {
    CombineSummary {
        bytes: file.len() as u64,
        batches,
        rows: None,
        row_groups: None,
    }
}

#[test]
fn ndjson_gzip_batches_concatenate_into_one_gzip_file() {
    let batches = batches(Format::NdjsonGzip);
    let (file, summary) = combine(Format::NdjsonGzip, &batches);
    assert_eq!(file, batches.concat());
    assert_eq!(summary, text_summary(&file, 5));
    let text = gunzip(&file);
    assert_eq!(text, gunzip(&one_batch(Format::NdjsonGzip)));
    assert_eq!(text.lines().count(), 160);
}

#[test]
fn ndjson_zstd_batches_concatenate_into_one_zstd_file() {
    let batches = batches(Format::NdjsonZstd);
    let (file, summary) = combine(Format::NdjsonZstd, &batches);
    assert_eq!(file, batches.concat());
    assert_eq!(summary, text_summary(&file, 5));
    let text = unzstd(&file);
    assert_eq!(text, unzstd(&one_batch(Format::NdjsonZstd)));
    assert_eq!(text.lines().count(), 160);
}

const CSV_HEADER: &str = "received_at,tunnel_src,tunnel_dst,gre_key,src_ip,src_port,dst_ip,\
                          dst_port,n,b,i,f,s,h,b64,ip,mac,t\r\n";

#[test]
fn csv_batches_start_with_the_same_header_member_at_any_level() {
    let member = gzip_member(CSV_HEADER.as_bytes()).expect("gzip");
    for level in [0, 1, 6, 9] {
        let mut config = FormatConfig::new(Format::CsvGzip);
        config.compression_level = Some(level);
        for rows in [0..0, 0..3] {
            let batch = encode(&config, &all_types(), rows.clone());
            assert_eq!(
                batch[..member.len()],
                member[..],
                "level {level}, rows {rows:?}"
            );
            let key = compatibility_key(CombineKind::CsvGzip, &batch).expect("key");
            assert_eq!(key, CSV_HEADER.as_bytes());
        }
    }
    // The member is flate2's fixed header: no name, mtime 0, extra flags 0, OS 255.
    assert_eq!(member[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
}

#[test]
fn csv_header_lines_with_quoted_line_breaks_are_one_record() {
    let schema = RecordSchema {
        decoder: "odd".into(),
        columns: vec![sluice_decode::Column::required(
            "a\r\n\"b\"",
            sluice_decode::ColumnType::Bool,
        )],
    };
    let config = FormatConfig::new(Format::CsvGzip);
    let batch = || {
        let mut encoder = FileEncoder::new(&config, &schema).expect("encoder");
        encoder.row(&crate::tests::ctx(false), &[Value::Bool(true)]);
        Bytes::from(encoder.finish().expect("finish"))
    };
    let header = "received_at,tunnel_src,tunnel_dst,gre_key,src_ip,src_port,dst_ip,dst_port,\
                  \"a\r\n\"\"b\"\"\"\r\n";
    assert_eq!(
        compatibility_key(CombineKind::CsvGzip, &batch()).expect("key"),
        header.as_bytes()
    );
    let (file, _) = combine(Format::CsvGzip, &[batch(), batch()]);
    let row = "2026-11-22T06:25:25.123456Z,,,,203.0.113.5,40000,203.0.113.9,5000,true\r\n";
    assert_eq!(gunzip(&file), format!("{header}{row}{row}"));
}

#[test]
fn csv_batches_combine_under_one_header_line() {
    let batches = batches(Format::CsvGzip);
    let (file, summary) = combine(Format::CsvGzip, &batches);
    let member = gzip_member(CSV_HEADER.as_bytes()).expect("gzip").len();
    let later: usize = batches[1..].iter().map(|b| b.len() - member).sum();
    assert_eq!(file.len(), batches[0].len() + later);
    assert_eq!(summary, text_summary(&file, 5));
    let text = gunzip(&file);
    assert_eq!(text, gunzip(&one_batch(Format::CsvGzip)));
    assert!(text.starts_with(CSV_HEADER));
    assert_eq!(text.matches("received_at,").count(), 1);
    // 160 records, each with one quoted line break in `s` when it is not null.
    let quoted_breaks = (0..160).filter(|n: &u64| !n.is_multiple_of(4)).count();
    assert_eq!(text.matches("\r\n").count(), 1 + 160);
    assert_eq!(text.matches("\nnext line").count(), quoted_breaks);
}

fn parquet_metadata(file: &[u8]) -> ParquetMetaData {
    ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Required)
        .with_metadata_options(Some(
            ParquetMetaDataOptions::new().with_encoding_stats_as_mask(false),
        ))
        .parse_and_finish(&Bytes::copy_from_slice(file))
        .expect("metadata with page index")
}

/// Every row, as the parquet crate's row reader shows it (Debug text, so NaN equals NaN).
fn parquet_rows(file: &[u8]) -> Vec<String> {
    let reader = SerializedFileReader::new(Bytes::copy_from_slice(file)).expect("parquet");
    reader
        .get_row_iter(None)
        .expect("rows")
        .map(|row| format!("{:?}", row.expect("row")))
        .collect()
}

fn printed_schema(metadata: &ParquetMetaData) -> String {
    let mut printed = Vec::new();
    parquet::schema::printer::print_schema(&mut printed, metadata.file_metadata().schema());
    String::from_utf8(printed).expect("utf-8")
}

#[test]
fn parquet_batches_combine_row_group_by_row_group() {
    let batches = batches(Format::Parquet);
    let (file, summary) = combine(Format::Parquet, &batches);
    assert_eq!(
        summary,
        CombineSummary {
            bytes: file.len() as u64,
            batches: 5,
            rows: Some(160),
            row_groups: Some(6),
        }
    );
    let rows = parquet_rows(&file);
    assert_eq!(rows.len(), 160);
    assert_eq!(rows, parquet_rows(&one_batch(Format::Parquet)));

    let combined = parquet_metadata(&file);
    let inputs: Vec<ParquetMetaData> = batches.iter().map(|b| parquet_metadata(b)).collect();
    let file_meta = combined.file_metadata();
    assert_eq!(file_meta.num_rows(), 160);
    assert_eq!(printed_schema(&combined), printed_schema(&inputs[0]));
    assert_eq!(
        file_meta.created_by(),
        Some(format!("sluice {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert_eq!(
        file_meta.created_by(),
        inputs[0].file_metadata().created_by()
    );
    assert_eq!(file_meta.key_value_metadata(), None);
    assert_eq!(file_meta.version(), inputs[0].file_metadata().version());

    // Each input row group, in order, with its chunks' metadata and page index as they
    // were; only the offsets moved.
    let groups: Vec<(usize, usize)> = inputs
        .iter()
        .enumerate()
        .flat_map(|(b, meta)| (0..meta.num_row_groups()).map(move |g| (b, g)))
        .collect();
    let sizes: Vec<i64> = combined.row_groups().iter().map(|g| g.num_rows()).collect();
    assert_eq!(sizes, [40, 40, 20, 40, 17, 3]);
    assert_eq!(groups.len(), combined.num_row_groups());
    let (out_index, in_index) = (combined.page_index().expect("page index"), |b: usize| {
        inputs[b].page_index().expect("input page index")
    });
    for (o, &(b, g)) in groups.iter().enumerate() {
        let (out, input) = (combined.row_group(o), inputs[b].row_group(g));
        assert_eq!(out.num_rows(), input.num_rows());
        assert_eq!(out.total_byte_size(), input.total_byte_size());
        for (c, (out_col, in_col)) in out.columns().iter().zip(input.columns()).enumerate() {
            let at = format!("row group {o} (batch {b} group {g}) column {c}");
            assert_eq!(out_col.compression(), in_col.compression(), "{at}");
            assert!(
                matches!(out_col.compression(), parquet::basic::Compression::ZSTD(_)),
                "{at}"
            );
            assert_eq!(out_col.compressed_size(), in_col.compressed_size(), "{at}");
            assert_eq!(
                out_col.uncompressed_size(),
                in_col.uncompressed_size(),
                "{at}"
            );
            assert_eq!(out_col.num_values(), in_col.num_values(), "{at}");
            // Every column has statistics but the `Bytes` ones (`h`, `b64`).
            let bytes_column = matches!(in_col.column_descr().name(), "h" | "b64");
            assert_eq!(in_col.statistics().is_some(), !bytes_column, "{at}");
            assert_eq!(
                in_index(b).column_index(g, c).is_some(),
                !bytes_column,
                "{at}"
            );
            assert_eq!(out_col.statistics(), in_col.statistics(), "{at}");
            assert_eq!(out_col.encodings_mask(), in_col.encodings_mask(), "{at}");
            assert!(in_col.page_encoding_stats().is_some(), "{at}");
            assert_eq!(
                out_col.page_encoding_stats(),
                in_col.page_encoding_stats(),
                "{at}"
            );
            let in_start = in_col
                .dictionary_page_offset()
                .unwrap_or(in_col.data_page_offset());
            let out_start = out_col
                .dictionary_page_offset()
                .unwrap_or(out_col.data_page_offset());
            let shift = out_start - in_start;
            assert_eq!(
                out_col.data_page_offset(),
                in_col.data_page_offset() + shift,
                "{at}"
            );
            // The chunk's bytes are the input's, byte for byte.
            let len = in_col.compressed_size() as usize;
            assert_eq!(
                file[out_start as usize..][..len],
                batches[b][in_start as usize..][..len],
                "{at}"
            );
            assert_eq!(
                out_index.column_index(o, c),
                in_index(b).column_index(g, c),
                "{at}"
            );
            let (out_pages, in_pages) = (
                &out_index
                    .offset_index(o, c)
                    .expect("offset index")
                    .page_locations,
                &in_index(b)
                    .offset_index(g, c)
                    .expect("offset index")
                    .page_locations,
            );
            assert_eq!(out_pages.len(), in_pages.len(), "{at}");
            assert_eq!(out_pages[0].offset, out_col.data_page_offset(), "{at}");
            for (out_page, in_page) in out_pages.iter().zip(in_pages) {
                assert_eq!(out_page.offset, in_page.offset + shift, "{at}");
                assert_eq!(out_page.compressed_page_size, in_page.compressed_page_size);
                assert_eq!(out_page.first_row_index, in_page.first_row_index);
            }
        }
    }
}

#[test]
fn one_batch_combines_into_the_same_content() {
    for format in [Format::NdjsonGzip, Format::NdjsonZstd, Format::CsvGzip] {
        let batch = one_batch(format);
        let (file, summary) = combine(format, std::slice::from_ref(&batch));
        assert_eq!(file, batch, "{format}");
        assert_eq!(summary, text_summary(&file, 1));
    }
    let batch = one_batch(Format::Parquet);
    let (file, summary) = combine(Format::Parquet, std::slice::from_ref(&batch));
    assert_eq!(summary.rows, Some(160));
    assert_eq!(summary.row_groups, Some(4));
    assert_eq!(parquet_rows(&file), parquet_rows(&batch));
    // Byte for byte: same chunks at the same offsets, and the same footer (statistics with
    // their deprecated min/max, page encoding stats, page index, created_by).
    assert_eq!(file, batch);
}

#[test]
fn compatibility_keys_follow_the_columns() {
    let raw = sluice_decode::raw::RawFactory::default();
    for format in Format::ALL {
        let kind = CombineKind::for_format(format);
        let key = |schema: &RecordSchema, rows: Range<u64>, level: Option<i32>| {
            let mut config = config(format);
            config.compression_level = level;
            compatibility_key(kind, &encode(&config, schema, rows)).expect("key")
        };
        let empty = key(&all_types(), 0..0, None);
        let full = key(&all_types(), 0..157, None);
        let level_9 = key(&all_types(), 0..3, Some(9));
        assert_eq!(empty, full, "{format}");
        assert_eq!(empty, level_9, "{format}");
        let other = key(raw.schema(), 0..0, None);
        match format {
            Format::NdjsonGzip | Format::NdjsonZstd => {
                assert_eq!((empty.len(), other.len()), (0, 0), "{format}");
            }
            Format::CsvGzip => {
                assert_eq!(empty, CSV_HEADER.as_bytes());
                assert_ne!(empty, other);
            }
            Format::Parquet => {
                let text = String::from_utf8(empty).expect("utf-8");
                assert!(text.starts_with("message sluice_record {\n"), "{text}");
                assert!(text.contains("OPTIONAL DOUBLE f;"), "{text}");
                assert!(
                    String::from_utf8(other)
                        .expect("utf-8")
                        .contains("BYTE_ARRAY payload;")
                );
            }
        }
    }
}

#[test]
fn a_batch_of_other_columns_is_refused_and_the_object_continues() {
    let raw = sluice_decode::raw::RawFactory::default();
    for (format, expected, found) in [
        (
            Format::CsvGzip,
            CSV_HEADER.trim_end(),
            "received_at,tunnel_src,tunnel_dst,gre_key,src_ip,src_port,dst_ip,dst_port,\
             payload_len,payload",
        ),
        (
            Format::Parquet,
            "OPTIONAL INT64 n;",
            "OPTIONAL INT64 payload_len;",
        ),
    ] {
        let kind = CombineKind::for_format(format);
        let mut combiner = Combiner::new(kind, Vec::new());
        combiner
            .push(encode(&config(format), &all_types(), 0..100))
            .expect("first");
        let err = combiner
            .push(encode(&config(format), raw.schema(), 0..0))
            .expect_err("other columns");
        let what = match format {
            Format::CsvGzip => "CSV header line",
            _ => "Parquet schema",
        };
        assert_eq!(
            err.to_string(),
            format!(
                "batch 1: {what} differs from the object's: {found:?} where the object has {expected:?}"
            )
        );
        assert!(matches!(
            err,
            CombineError::Batch {
                index: 1,
                source: BatchError::Incompatible { .. }
            }
        ));
        combiner
            .push(encode(&config(format), &all_types(), 100..160))
            .expect("third");
        let (file, summary) = combiner.finish().expect("finish");
        assert_eq!(summary.batches, 2);
        match format {
            Format::CsvGzip => assert_eq!(gunzip(&file), gunzip(&one_batch(format))),
            _ => assert_eq!(parquet_rows(&file), parquet_rows(&one_batch(format))),
        }
    }
}

/// Batch `index` of `kind` refused with `message`, and the combiner still usable.
fn assert_refused(kind: CombineKind, batch: &[u8], message: &str) {
    let key = compatibility_key(kind, batch)
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert_eq!(key, Err(message.to_owned()), "{kind} key");
    let good = one_batch(kind.format());
    for before in [0, 1] {
        let mut combiner = Combiner::new(kind, Vec::new());
        for _ in 0..before {
            combiner.push(good.clone()).expect("good batch");
        }
        let err = combiner
            .push(Bytes::copy_from_slice(batch))
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!("batch {before}: {message}"),
            "{kind}"
        );
        combiner.push(good.clone()).expect("good batch after");
        let (file, summary) = combiner.finish().expect("finish");
        assert_eq!(summary.batches, before + 1);
        let mut expected = good.to_vec();
        match kind {
            CombineKind::GzipMembers | CombineKind::ZstdFrames if before == 1 => {
                expected.extend_from_slice(&good);
            }
            CombineKind::CsvGzip if before == 1 => {
                let member = gzip_member(CSV_HEADER.as_bytes()).expect("gzip").len();
                expected.extend_from_slice(&good[member..]);
            }
            CombineKind::Parquet => {
                assert_eq!(parquet_rows(&file).len(), 160 * (before as usize + 1));
                continue;
            }
            _ => {}
        }
        assert_eq!(file, expected, "{kind}");
    }
}

#[test]
fn malformed_batches_are_refused_with_the_reason() {
    let garbage = b"garbage! not a batch file at all";
    assert_refused(
        CombineKind::GzipMembers,
        garbage,
        "not a complete ndjson_gzip batch: starts with 67 61 72 62 61 67 65 21, not a gzip header",
    );
    assert_refused(
        CombineKind::GzipMembers,
        &[],
        "not a complete ndjson_gzip batch: starts with nothing (0 bytes), not a gzip header",
    );
    assert_refused(
        CombineKind::GzipMembers,
        &[0x1f, 0x8b, 8, 0],
        "not a complete ndjson_gzip batch: 4 bytes, shorter than any gzip member (20)",
    );
    assert_refused(
        CombineKind::ZstdFrames,
        &one_batch(Format::NdjsonGzip),
        "not a complete ndjson_zstd batch: starts with 1f 8b 08 00 00 00 00 00, not a zstd frame",
    );
    let zstd = one_batch(Format::NdjsonZstd);
    assert_refused(
        CombineKind::ZstdFrames,
        &zstd[..zstd.len() - 1],
        "not a complete ndjson_zstd batch: frame at byte 0: Src size is incorrect",
    );
    let mut two_frames = zstd.to_vec();
    two_frames.extend_from_slice(&zstd[..9]);
    assert_refused(
        CombineKind::ZstdFrames,
        &two_frames,
        &format!(
            "not a complete ndjson_zstd batch: frame at byte {}: Src size is incorrect",
            zstd.len()
        ),
    );

    let csv = one_batch(Format::CsvGzip);
    let member = gzip_member(CSV_HEADER.as_bytes()).expect("gzip").len();
    assert_refused(
        CombineKind::CsvGzip,
        &csv[..member - 1],
        "not a complete csv_gzip batch: first gzip member: unexpected end of file",
    );
    assert_refused(
        CombineKind::CsvGzip,
        &csv[..member],
        &format!(
            "not a complete csv_gzip batch: the header member (bytes 0..{member}) is followed \
             by nothing (0 bytes), not a gzip member"
        ),
    );
    // A CSV file whose header shares the rows' member (as before headers had their own).
    let mut old = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    old.write_all(gunzip(&csv).as_bytes()).expect("gzip");
    assert_refused(
        CombineKind::CsvGzip,
        &old.finish().expect("gzip"),
        "not a complete csv_gzip batch: the first gzip member is not one CSV header line \
         ending in CRLF (a batch written before the header had a member of its own?)",
    );
    let mut corrupt = csv.to_vec();
    corrupt[member - 8] ^= 0xff; // the header member's CRC
    assert_refused(
        CombineKind::CsvGzip,
        &corrupt,
        "not a complete csv_gzip batch: first gzip member: corrupt gzip stream does not have a \
         matching checksum",
    );

    let parquet = one_batch(Format::Parquet);
    assert_refused(
        CombineKind::Parquet,
        &parquet[..parquet.len() / 2],
        &format!(
            "not a complete parquet batch: {} bytes starting with 50 41 52 31 {}: not a \
             file framed by PAR1 ... PAR1",
            parquet.len() / 2,
            hex_start(&parquet[4..8])
        ),
    );
    let mut long_footer = parquet.to_vec();
    let at = long_footer.len() - 8;
    long_footer[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_refused(
        CombineKind::Parquet,
        &long_footer,
        &format!(
            "not a complete parquet batch: the footer claims 4294967295 bytes of metadata, \
             more than the {}-byte file holds",
            parquet.len()
        ),
    );
    assert_refused(
        CombineKind::Parquet,
        &csv,
        &format!(
            "not a complete parquet batch: {} bytes starting with 1f 8b 08 00 00 00 00 00: \
             not a file framed by PAR1 ... PAR1",
            csv.len()
        ),
    );
}

/// Every single-byte corruption of a CSV header member and of a Parquet batch's page
/// index and footer is refused or combined, never a panic; what is combined still reads.
#[test]
fn corrupted_bytes_never_panic() {
    let csv = one_batch(Format::CsvGzip);
    let member = gzip_member(CSV_HEADER.as_bytes()).expect("gzip").len();
    // One row group: its page index and footer are what the combiner reads.
    let parquet = encode(&config(Format::Parquet), &all_types(), 0..40);
    let data_end = parquet_metadata(&parquet)
        .row_groups()
        .iter()
        .flat_map(|g| g.columns())
        .map(|c| c.dictionary_page_offset().unwrap_or(c.data_page_offset()) + c.compressed_size())
        .max()
        .expect("a column chunk") as usize;
    let mut refused = 0;
    for (kind, batch, positions) in [
        (CombineKind::CsvGzip, &csv, 0..member + 4),
        (CombineKind::Parquet, &parquet, data_end..parquet.len()),
    ] {
        for at in positions {
            let mut bytes = batch.to_vec();
            bytes[at] ^= 0x5a;
            let _ = compatibility_key(kind, &bytes);
            let mut combiner = Combiner::new(kind, Vec::new());
            match combiner.push(Bytes::from(bytes)) {
                Ok(()) => {
                    let (file, _) = combiner.finish().expect("finish");
                    if kind == CombineKind::Parquet {
                        let _ = SerializedFileReader::new(Bytes::from(file));
                    }
                }
                Err(CombineError::Batch { index: 0, .. }) => refused += 1,
                Err(e) => panic!("{kind} byte {at}: {e}"),
            }
        }
    }
    assert!(refused > 0);
}

#[test]
fn finishing_without_a_batch_is_an_error() {
    for format in Format::ALL {
        let combiner = Combiner::new(CombineKind::for_format(format), Vec::new());
        assert_eq!(
            combiner.finish().map(|_| ()).map_err(|e| e.to_string()),
            Err(format!(
                "no batch was combined: an empty object is not a valid {format} file"
            ))
        );
    }
}

/// An output that takes `room` bytes, then fails like a full disk.
struct FullAfter {
    room: usize,
}

impl Write for FullAfter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_write_fails_every_later_call() {
    for format in Format::ALL {
        let batch = one_batch(format);
        let mut combiner = Combiner::new(
            CombineKind::for_format(format),
            FullAfter {
                room: batch.len() + 100,
            },
        );
        combiner.push(batch.clone()).expect("fits");
        let mut result = Ok(());
        for _ in 0..3 {
            result = combiner.push(batch.clone());
            if result.is_err() {
                break;
            }
        }
        let err = result.expect_err("the output is full");
        assert!(
            matches!(
                err,
                CombineError::Write { batches: 1, .. } | CombineError::ParquetWrite { .. }
            ),
            "{format}: {err}"
        );
        assert!(err.to_string().contains("No space left on device"), "{err}");
        assert!(matches!(
            combiner.push(batch.clone()),
            Err(CombineError::Failed)
        ));
        assert!(matches!(combiner.finish(), Err(CombineError::Failed)));
    }
}

#[test]
fn kinds_follow_the_file_extensions() {
    for format in Format::ALL {
        let kind = CombineKind::for_extension(format.extension()).expect("known");
        assert_eq!(kind, CombineKind::for_format(format));
        assert_eq!(kind.format(), format);
        assert_eq!(kind.to_string(), format.name());
    }
    assert_eq!(
        CombineKind::for_extension("ndjson.gz"),
        Some(CombineKind::GzipMembers)
    );
    assert_eq!(
        CombineKind::for_extension("csv.gz"),
        Some(CombineKind::CsvGzip)
    );
    for other in [".parquet", "gz", "ndjson", "csv", "json.gz", ""] {
        assert_eq!(CombineKind::for_extension(other), None, "{other:?}");
    }
}
