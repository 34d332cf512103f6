//! Encoders kept from batch to batch: every file is the one a new encoder writes for the
//! same rows, counters start at zero, a refused batch leaves nothing behind; Parquet values
//! read back exactly across `write_batch` calls and repeated addresses; `Bytes` columns
//! have no dictionary and no statistics.

use std::{
    borrow::Cow,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use parquet::{
    data_type::ByteArray,
    file::reader::{FileReader as _, SerializedFileReader},
    record::Field,
};
use sluice_decode::{ColumnType, PROVENANCE, PacketContext, RowSink as _, Value};

use super::{all_types, ctx};
use crate::{BatchEncoder as _, FileEncoder, Format, FormatConfig};

type Row = (PacketContext, Vec<Value<'static>>);

/// Row `n` of a stream whose addresses come in runs (as consecutive packets' do), with
/// nulls, empty strings and byte strings, IPv6, and both overflowing and plain `UInt64`s.
fn row(n: u64) -> Row {
    let run = n / 5;
    let mut ctx = ctx(!run.is_multiple_of(3));
    ctx.received_at += n as i64 * 37;
    if run.is_multiple_of(4) {
        ctx.tunnel_src = ctx
            .tunnel_src
            .map(|_| IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77)));
    }
    ctx.src_ip = IpAddr::V4(Ipv4Addr::new(10, 1, 0, (run % 3) as u8));
    if n % 7 == 3 {
        ctx.dst_ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, (n % 2) as u16));
    }
    ctx.src_port = (n % 4) as u16;
    let values = vec![
        match n % 6 {
            0 => Value::Null,
            1 => Value::U64(u64::MAX - n),
            _ => Value::U64(n),
        },
        Value::Bool(n.is_multiple_of(3)),
        Value::I64(-(n as i64)),
        if n.is_multiple_of(9) {
            Value::Null
        } else {
            Value::F64(n as f64 / 8.0)
        },
        match n % 4 {
            0 => Value::Null,
            1 => Value::Str(Cow::Borrowed("")),
            2 => Value::Str(Cow::Borrowed("same")),
            _ => Value::Str(Cow::Owned(format!("row {n}"))),
        },
        Value::Bytes(Cow::Owned(if n.is_multiple_of(3) {
            Vec::new()
        } else {
            n.to_le_bytes()[..(n % 8) as usize].to_vec()
        })),
        Value::Bytes(Cow::Owned(vec![(n % 251) as u8; (n % 70) as usize])),
        Value::Ip(if (n / 3).is_multiple_of(2) {
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, (n / 6 % 2) as u8))
        } else {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        }),
        Value::Mac([2, 0, 0, 0, 0, (n / 4 % 3) as u8]),
        Value::Timestamp(n as i64 * 1_000_000),
    ];
    (ctx, values)
}

fn rows(range: std::ops::Range<u64>) -> Vec<Row> {
    range.map(row).collect()
}

fn write(encoder: &mut FileEncoder, rows: &[Row]) {
    for (ctx, values) in rows {
        encoder.row(ctx, values);
    }
}

/// The file a new encoder writes for `rows`.
fn fresh(config: &FormatConfig, rows: &[Row]) -> Vec<u8> {
    let mut encoder = FileEncoder::new(config, &all_types()).expect("encoder");
    write(&mut encoder, rows);
    encoder.finish().expect("finish")
}

/// What a new encoder's `uncompressed_len` is.
fn empty_len(config: &FormatConfig) -> u64 {
    FileEncoder::new(config, &all_types())
        .expect("encoder")
        .uncompressed_len()
}

fn configs() -> Vec<FormatConfig> {
    let mut configs: Vec<FormatConfig> = Format::ALL.into_iter().map(FormatConfig::new).collect();
    // Several row groups per batch.
    let mut parquet = FormatConfig::new(Format::Parquet);
    parquet.row_group_rows = Some(700);
    configs.push(parquet);
    configs
}

#[test]
fn every_batch_of_a_reused_encoder_is_the_file_of_a_new_one() {
    // Batches of 2600 rows (three `write_batch` calls a column), none, a few, many again.
    let batches = [0..2600, 2600..2600, 2600..2603, 2603..4100, 4100..4101];
    for config in configs() {
        let mut encoder = FileEncoder::new(&config, &all_types()).expect("encoder");
        for range in batches.clone() {
            let rows = rows(range.clone());
            write(&mut encoder, &rows);
            let mut single = FileEncoder::new(&config, &all_types()).expect("encoder");
            write(&mut single, &rows);
            let at = format!("{} rows {range:?}", config.format);
            assert_eq!(encoder.records(), rows.len() as u64, "{at}");
            assert_eq!(
                encoder.uncompressed_len(),
                single.uncompressed_len(),
                "{at}"
            );
            assert_eq!(encoder.overflows(), single.overflows(), "{at}");
            assert_eq!(
                encoder.finish_batch().expect("finish"),
                single.finish().expect("finish"),
                "{at}"
            );
            // As a new encoder (a CSV file's header line counts from the start).
            assert_eq!(
                (
                    encoder.records(),
                    encoder.uncompressed_len(),
                    encoder.overflows()
                ),
                (0, empty_len(&config), 0),
                "{at}"
            );
        }
    }
}

#[test]
fn a_refused_batch_leaves_the_next_one_clean() {
    for config in configs() {
        let mut encoder = FileEncoder::new(&config, &all_types()).expect("encoder");
        // Enough rows before the bad one that Parquet has written row groups already.
        write(&mut encoder, &rows(0..1500));
        let (ctx, values) = row(1500);
        let (bad, expected) = if config.format == Format::Parquet {
            let mut bad = values;
            bad[1] = Value::U64(1);
            (bad, "row 1500: column \"b\" of type Bool got a u64 value")
        } else {
            // The text formats check the row length only.
            (
                values[..1].to_vec(),
                "row 1500: 1 values for the 10 columns of the schema",
            )
        };
        encoder.row(&ctx, &bad);
        write(&mut encoder, &rows(1501..1600));
        assert_eq!(
            encoder
                .finish_batch()
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(expected.to_owned()),
            "{}",
            config.format
        );
        assert_eq!(
            (
                encoder.records(),
                encoder.uncompressed_len(),
                encoder.overflows()
            ),
            (0, empty_len(&config), 0)
        );
        let next = rows(2000..2100);
        write(&mut encoder, &next);
        assert_eq!(
            encoder.finish_batch().expect("finish"),
            fresh(&config, &next),
            "{}",
            config.format
        );
    }
}

/// What the parquet crate's row reader gives for `value`.
fn field(value: &Value<'_>) -> Field {
    match value {
        Value::Null => Field::Null,
        Value::U64(n) => i64::try_from(*n).map_or(Field::Null, Field::Long),
        Value::I64(n) => Field::Long(*n),
        Value::Timestamp(n) => Field::TimestampMicros(*n),
        Value::Bool(b) => Field::Bool(*b),
        Value::F64(f) => Field::Double(*f),
        Value::Str(s) => Field::Str(s.to_string()),
        Value::Bytes(b) => Field::Bytes(ByteArray::from(b.to_vec())),
        Value::Ip(ip) => Field::Str(ip.to_string()),
        Value::Mac(mac) => {
            let mut text = Vec::new();
            crate::text::push_mac(&mut text, mac);
            Field::Str(String::from_utf8(text).expect("ascii"))
        }
    }
}

fn expected_fields((ctx, values): &Row) -> Vec<Field> {
    crate::columns::provenance_values(ctx)
        .iter()
        .chain(values)
        .map(field)
        .collect()
}

fn read_fields(file: Vec<u8>) -> Vec<Vec<Field>> {
    let reader = SerializedFileReader::new(bytes::Bytes::from(file)).expect("parquet");
    reader
        .get_row_iter(None)
        .expect("rows")
        .map(|row| {
            row.expect("row")
                .get_column_iter()
                .map(|(_, f)| f.clone())
                .collect()
        })
        .collect()
}

#[test]
fn parquet_values_read_back_exactly_across_calls_and_repeats() {
    for config in configs()
        .into_iter()
        .filter(|c| c.format == Format::Parquet)
    {
        let mut encoder = FileEncoder::new(&config, &all_types()).expect("encoder");
        for range in [0..3000, 3000..3003, 3003..5100] {
            let rows = rows(range.clone());
            write(&mut encoder, &rows);
            let read = read_fields(encoder.finish_batch().expect("finish"));
            assert_eq!(read.len(), rows.len());
            for (n, (read, row)) in read.iter().zip(&rows).enumerate() {
                assert_eq!(read, &expected_fields(row), "row {} of {range:?}", n);
            }
        }
    }
}

#[test]
fn parquet_bytes_columns_have_no_dictionary_and_no_statistics() {
    let mut encoder =
        FileEncoder::new(&FormatConfig::new(Format::Parquet), &all_types()).expect("encoder");
    write(&mut encoder, &rows(0..500));
    let file = encoder.finish_batch().expect("finish");
    let reader = SerializedFileReader::new(bytes::Bytes::from(file)).expect("parquet");
    let group = reader.metadata().row_group(0);
    let described: Vec<(&str, bool, bool)> = group
        .columns()
        .iter()
        .map(|c| {
            (
                c.column_descr().name(),
                c.dictionary_page_offset().is_some(),
                c.statistics().is_some(),
            )
        })
        .collect();
    let with_both = |name| (name, true, true);
    assert_eq!(
        described,
        [
            with_both("received_at"),
            with_both("tunnel_src"),
            with_both("tunnel_dst"),
            with_both("gre_key"),
            with_both("src_ip"),
            with_both("src_port"),
            with_both("dst_ip"),
            with_both("dst_port"),
            with_both("n"),
            ("b", false, true),
            with_both("i"),
            with_both("f"),
            with_both("s"),
            ("h", false, false),
            ("b64", false, false),
            with_both("ip"),
            with_both("mac"),
            with_both("t"),
        ]
    );
}

#[test]
fn the_parquet_encoder_writes_provenance_in_this_order() {
    // `ParquetEncoder::push_provenance` buffers these columns by position.
    assert_eq!(
        PROVENANCE,
        [
            ("received_at", ColumnType::Timestamp, false),
            ("tunnel_src", ColumnType::IpAddr, true),
            ("tunnel_dst", ColumnType::IpAddr, true),
            ("gre_key", ColumnType::UInt64, true),
            ("src_ip", ColumnType::IpAddr, false),
            ("src_port", ColumnType::UInt64, false),
            ("dst_ip", ColumnType::IpAddr, false),
            ("dst_port", ColumnType::UInt64, false),
        ]
    );
}
