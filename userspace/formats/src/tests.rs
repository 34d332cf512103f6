//! Exact bytes of every encoder for small inputs, and the DDL text.

use std::{
    borrow::Cow,
    io::Read as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use parquet::file::reader::{FileReader as _, SerializedFileReader};
use sluice_decode::{BytesEncoding, Column, ColumnType, DecoderFactory as _, raw::RawFactory};

use super::*;

mod reuse;

pub(crate) fn ctx(tunnel: bool) -> PacketContext {
    PacketContext {
        received_at: 1_795_328_725_123_456,
        tunnel_src: tunnel.then_some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        tunnel_dst: tunnel.then_some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2))),
        gre_key: tunnel.then_some(4_294_967_295),
        src_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
        src_port: 40000,
        dst_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
        dst_port: 5000,
    }
}

pub(crate) fn all_types() -> RecordSchema {
    RecordSchema {
        decoder: "test".into(),
        columns: vec![
            Column::nullable("n", ColumnType::UInt64),
            Column::required("b", ColumnType::Bool),
            Column::required("i", ColumnType::Int64),
            Column::nullable("f", ColumnType::Float64),
            Column::nullable("s", ColumnType::String),
            Column::required("h", ColumnType::Bytes(BytesEncoding::Hex)),
            Column::required("b64", ColumnType::Bytes(BytesEncoding::Base64)),
            Column::required("ip", ColumnType::IpAddr),
            Column::required("mac", ColumnType::MacAddr),
            Column::required("t", ColumnType::Timestamp),
        ],
    }
}

fn first_row() -> Vec<Value<'static>> {
    vec![
        Value::U64(u64::MAX),
        Value::Bool(true),
        Value::I64(-42),
        Value::F64(1.5),
        Value::Str(Cow::Borrowed("quote \" comma , nl \n ctl \u{1} é")),
        Value::Bytes(Cow::Borrowed(&[0x00, 0xab, 0xff])),
        Value::Bytes(Cow::Borrowed(b"hello")),
        Value::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        Value::Mac([0x02, 0, 0, 0, 0xab, 0x0c]),
        Value::Timestamp(0),
    ]
}

fn second_row() -> Vec<Value<'static>> {
    vec![
        Value::U64(7),
        Value::Bool(false),
        Value::I64(i64::MAX),
        Value::F64(f64::NAN),
        Value::Str(Cow::Borrowed("")),
        Value::Bytes(Cow::Borrowed(b"")),
        Value::Bytes(Cow::Borrowed(b"")),
        Value::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        Value::Mac([0xff; 6]),
        Value::Timestamp(-1),
    ]
}

fn third_row() -> Vec<Value<'static>> {
    let mut row = second_row();
    row[0] = Value::Null;
    row[3] = Value::Null;
    row[4] = Value::Null;
    row
}

fn encode(
    format: Format,
    schema: &RecordSchema,
    rows: &[(PacketContext, Vec<Value<'_>>)],
) -> FileEncoder {
    let mut encoder = FileEncoder::new(&FormatConfig::new(format), schema).expect("encoder");
    for (ctx, values) in rows {
        encoder.row(ctx, values);
    }
    encoder
}

fn sample_rows() -> Vec<(PacketContext, Vec<Value<'static>>)> {
    vec![
        (ctx(true), first_row()),
        (ctx(false), second_row()),
        (ctx(false), third_row()),
    ]
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    // A CSV batch is two gzip members (header line, rows): read them all, as gzip -d does.
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("gzip");
    text
}

const NDJSON_PROVENANCE_TUNNEL: &str = "{\"received_at\":\"2026-11-22T06:25:25.123456Z\",\
    \"tunnel_src\":\"192.0.2.1\",\"tunnel_dst\":\"2001:db8::2\",\"gre_key\":4294967295,\
    \"src_ip\":\"203.0.113.5\",\"src_port\":40000,\"dst_ip\":\"203.0.113.9\",\"dst_port\":5000";
const NDJSON_PROVENANCE_PLAIN: &str = "{\"received_at\":\"2026-11-22T06:25:25.123456Z\",\
    \"tunnel_src\":null,\"tunnel_dst\":null,\"gre_key\":null,\
    \"src_ip\":\"203.0.113.5\",\"src_port\":40000,\"dst_ip\":\"203.0.113.9\",\"dst_port\":5000";

fn expected_ndjson() -> String {
    format!(
        "{NDJSON_PROVENANCE_TUNNEL},\"n\":null,\"b\":true,\"i\":-42,\"f\":1.5,\
         \"s\":\"quote \\\" comma , nl \\n ctl \\u0001 é\",\"h\":\"00abff\",\"b64\":\"aGVsbG8=\",\
         \"ip\":\"::1\",\"mac\":\"02:00:00:00:ab:0c\",\"t\":\"1970-01-01T00:00:00.000000Z\"}}\n\
         {NDJSON_PROVENANCE_PLAIN},\"n\":7,\"b\":false,\"i\":9223372036854775807,\"f\":null,\
         \"s\":\"\",\"h\":\"\",\"b64\":\"\",\"ip\":\"10.0.0.1\",\"mac\":\"ff:ff:ff:ff:ff:ff\",\
         \"t\":\"1969-12-31T23:59:59.999999Z\"}}\n\
         {NDJSON_PROVENANCE_PLAIN},\"n\":null,\"b\":false,\"i\":9223372036854775807,\"f\":null,\
         \"s\":null,\"h\":\"\",\"b64\":\"\",\"ip\":\"10.0.0.1\",\"mac\":\"ff:ff:ff:ff:ff:ff\",\
         \"t\":\"1969-12-31T23:59:59.999999Z\"}}\n"
    )
}

#[test]
fn ndjson_gzip_lines_are_exact() {
    let encoder = encode(Format::NdjsonGzip, &all_types(), &sample_rows());
    let expected = expected_ndjson();
    assert_eq!(encoder.records(), 3);
    assert_eq!(encoder.overflows(), 1);
    assert_eq!(encoder.uncompressed_len(), expected.len() as u64);
    let file = encoder.finish().expect("finish");
    assert_eq!(&file[..2], [0x1f, 0x8b]);
    assert_eq!(gunzip(&file), expected);
}

#[test]
fn ndjson_zstd_lines_are_exact() {
    let file = encode(Format::NdjsonZstd, &all_types(), &sample_rows())
        .finish()
        .expect("finish");
    assert_eq!(&file[..4], [0x28, 0xb5, 0x2f, 0xfd]);
    let text = zstd::stream::decode_all(file.as_slice()).expect("zstd");
    assert_eq!(String::from_utf8(text).expect("utf-8"), expected_ndjson());
}

#[test]
fn ndjson_lines_parse_as_json_with_the_same_values() {
    let file = encode(Format::NdjsonGzip, &all_types(), &sample_rows())
        .finish()
        .expect("finish");
    let text = gunzip(&file);
    let first: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    assert_eq!(first["s"], "quote \" comma , nl \n ctl \u{1} é");
    assert_eq!(first["gre_key"], 4_294_967_295_u64);
}

/// The provenance columns after `received_at` are formatted once per change (see
/// `textfile.rs`): a row whose packet differs from the last one's in any one of them,
/// and a row whose packet is the same again, each have their own packet's values.
#[test]
fn ndjson_provenance_follows_every_change_of_the_packet() {
    let v6 = |n| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n));
    let mut contexts = vec![ctx(true)];
    let changes: [fn(&mut PacketContext); 8] = [
        |c| c.tunnel_src = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))),
        |c| c.tunnel_dst = None,
        |c| c.gre_key = Some(7),
        |c| c.src_ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9)),
        |c| c.src_port = 1,
        |c| c.dst_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200)),
        |c| c.dst_port = 65535,
        |c| c.received_at += 1,
    ];
    for change in changes {
        let mut next = *contexts.last().expect("a context");
        change(&mut next);
        contexts.push(next);
        contexts.push(next);
    }
    contexts.push(ctx(false));
    contexts.push(ctx(true));
    contexts[3].tunnel_dst = Some(v6(3));
    let rows: Vec<(PacketContext, Vec<Value<'static>>)> =
        contexts.iter().map(|c| (*c, second_row())).collect();
    let file = encode(Format::NdjsonGzip, &all_types(), &rows)
        .finish()
        .expect("finish");
    let text = gunzip(&file);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), contexts.len());
    let ip = |ip: Option<IpAddr>| ip.map_or(serde_json::Value::Null, |ip| ip.to_string().into());
    for (line, c) in lines.iter().zip(&contexts) {
        let row: serde_json::Value = serde_json::from_str(line).expect("json");
        let expected = serde_json::json!({
            "tunnel_src": ip(c.tunnel_src),
            "tunnel_dst": ip(c.tunnel_dst),
            "gre_key": c.gre_key,
            "src_ip": c.src_ip.to_string(),
            "src_port": c.src_port,
            "dst_ip": c.dst_ip.to_string(),
            "dst_port": c.dst_port,
        });
        for (key, value) in expected.as_object().expect("an object") {
            assert_eq!(&row[key], value, "{key} in {line}");
        }
        assert_eq!(row["n"], 7, "{line}");
    }
}

#[test]
fn raw_record_matches_the_directory_sink_layout() {
    let raw = RawFactory::default();
    let file = encode(
        Format::NdjsonGzip,
        raw.schema(),
        &[(
            ctx(true),
            vec![Value::U64(5), Value::Bytes(Cow::Borrowed(b"hello"))],
        )],
    )
    .finish()
    .expect("finish");
    assert_eq!(
        gunzip(&file),
        format!("{NDJSON_PROVENANCE_TUNNEL},\"payload_len\":5,\"payload\":\"aGVsbG8=\"}}\n")
    );
}

#[test]
fn csv_gzip_is_exact_rfc_4180() {
    let encoder = encode(Format::CsvGzip, &all_types(), &sample_rows());
    assert_eq!(encoder.records(), 3);
    let text = gunzip(&encoder.finish().expect("finish"));
    assert_eq!(
        text,
        "received_at,tunnel_src,tunnel_dst,gre_key,src_ip,src_port,dst_ip,dst_port,\
         n,b,i,f,s,h,b64,ip,mac,t\r\n\
         2026-11-22T06:25:25.123456Z,192.0.2.1,2001:db8::2,4294967295,203.0.113.5,40000,\
         203.0.113.9,5000,,true,-42,1.5,\"quote \"\" comma , nl \n ctl \u{1} é\",00abff,\
         aGVsbG8=,::1,02:00:00:00:ab:0c,1970-01-01T00:00:00.000000Z\r\n\
         2026-11-22T06:25:25.123456Z,,,,203.0.113.5,40000,203.0.113.9,5000,\
         7,false,9223372036854775807,,\"\",,,10.0.0.1,ff:ff:ff:ff:ff:ff,1969-12-31T23:59:59.999999Z\r\n\
         2026-11-22T06:25:25.123456Z,,,,203.0.113.5,40000,203.0.113.9,5000,\
         ,false,9223372036854775807,,,,,10.0.0.1,ff:ff:ff:ff:ff:ff,1969-12-31T23:59:59.999999Z\r\n"
    );
}

#[test]
fn csv_header_quotes_odd_names() {
    let schema = RecordSchema {
        decoder: "odd".into(),
        columns: vec![Column::required("a,\"b\"", ColumnType::Bool)],
    };
    let text = gunzip(
        &encode(Format::CsvGzip, &schema, &[])
            .finish()
            .expect("finish"),
    );
    assert_eq!(
        text,
        "received_at,tunnel_src,tunnel_dst,gre_key,src_ip,src_port,dst_ip,dst_port,\"a,\"\"b\"\"\"\r\n"
    );
}

#[test]
fn parquet_schema_is_typed_from_the_record_schema() {
    let file = encode(Format::Parquet, &all_types(), &sample_rows())
        .finish()
        .expect("finish");
    let reader = SerializedFileReader::new(bytes::Bytes::from(file)).expect("parquet");
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows(), 3);
    assert_eq!(meta.num_row_groups(), 1);
    let mut printed = Vec::new();
    parquet::schema::printer::print_schema(&mut printed, meta.file_metadata().schema());
    assert_eq!(
        String::from_utf8(printed).expect("utf-8"),
        "message sluice_record {\n  \
           REQUIRED INT64 received_at (TIMESTAMP(MICROS,true));\n  \
           OPTIONAL BYTE_ARRAY tunnel_src (STRING);\n  \
           OPTIONAL BYTE_ARRAY tunnel_dst (STRING);\n  \
           OPTIONAL INT64 gre_key;\n  \
           REQUIRED BYTE_ARRAY src_ip (STRING);\n  \
           REQUIRED INT64 src_port;\n  \
           REQUIRED BYTE_ARRAY dst_ip (STRING);\n  \
           REQUIRED INT64 dst_port;\n  \
           OPTIONAL INT64 n;\n  \
           REQUIRED BOOLEAN b;\n  \
           REQUIRED INT64 i;\n  \
           OPTIONAL DOUBLE f;\n  \
           OPTIONAL BYTE_ARRAY s (STRING);\n  \
           REQUIRED BYTE_ARRAY h;\n  \
           REQUIRED BYTE_ARRAY b64;\n  \
           REQUIRED BYTE_ARRAY ip (STRING);\n  \
           REQUIRED BYTE_ARRAY mac (STRING);\n  \
           REQUIRED INT64 t (TIMESTAMP(MICROS,true));\n\
         }\n"
    );
    let column = meta.row_group(0).column(0);
    assert!(
        matches!(column.compression(), parquet::basic::Compression::ZSTD(_)),
        "{:?}",
        column.compression()
    );
}

#[test]
fn parquet_row_groups_follow_the_configured_size() {
    let mut config = FormatConfig::new(Format::Parquet);
    config.row_group_rows = Some(2);
    let mut encoder = FileEncoder::new(&config, &all_types()).expect("encoder");
    for _ in 0..5 {
        encoder.row(&ctx(false), &second_row());
    }
    let file = encoder.finish().expect("finish");
    let reader = SerializedFileReader::new(bytes::Bytes::from(file)).expect("parquet");
    let rows: Vec<i64> = reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(rows, [2, 2, 1]);
}

/// The bytes of values one `second_row()` row adds (the encoder's own estimate).
fn second_row_bytes() -> u64 {
    let mut encoder = encode(Format::Parquet, &all_types(), &[]);
    encoder.row(&ctx(false), &second_row());
    encoder.uncompressed_len()
}

fn row_groups_of(config: &FormatConfig, rows: usize) -> Vec<i64> {
    let mut encoder = FileEncoder::new(config, &all_types()).expect("encoder");
    for _ in 0..rows {
        encoder.row(&ctx(false), &second_row());
    }
    assert_eq!(encoder.records(), rows as u64);
    let file = encoder.finish().expect("finish");
    let reader = SerializedFileReader::new(bytes::Bytes::from(file)).expect("parquet");
    reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect()
}

#[test]
fn parquet_row_groups_close_at_the_byte_threshold() {
    let row = second_row_bytes();
    assert_eq!(row, 135);
    let mut config = FormatConfig::new(Format::Parquet);
    config.row_group_bytes = Some(10 * row);
    // Above the threshold: a row group every 10 rows, the rest in the last one.
    assert_eq!(row_groups_of(&config, 25), [10, 10, 5]);
    // Below it: the batch is one row group.
    assert_eq!(row_groups_of(&config, 9), [9]);
    // The row cap still applies beside the byte threshold.
    config.row_group_rows = Some(4);
    assert_eq!(row_groups_of(&config, 9), [4, 4, 1]);
    // The default threshold (64 MiB) keeps an ordinary batch in one row group.
    let config = FormatConfig::new(Format::Parquet);
    assert_eq!(config.row_group_bytes(), 64 << 20);
    assert_eq!(row_groups_of(&config, 1000), [1000]);
}

#[test]
fn rows_that_break_the_schema_refuse_the_batch() {
    let mut text = encode(Format::CsvGzip, &all_types(), &[]);
    text.row(&ctx(false), &second_row()[..3]);
    assert_eq!(text.records(), 0);
    assert_eq!(
        text.finish().map(|_| ()).map_err(|e| e.to_string()),
        Err("row 0: 3 values for the 10 columns of the schema".to_owned())
    );
    let mut parquet = encode(Format::Parquet, &all_types(), &[]);
    parquet.row(&ctx(false), &second_row());
    let mut bad = second_row();
    bad[1] = Value::Null;
    parquet.row(&ctx(false), &bad);
    parquet.row(&ctx(false), &second_row());
    assert_eq!(parquet.records(), 1);
    assert_eq!(
        parquet.finish().map(|_| ()).map_err(|e| e.to_string()),
        Err("row 1: column \"b\" of type Bool got a null value".to_owned())
    );
    let mut wrong = encode(Format::Parquet, &all_types(), &[]);
    let mut bad = second_row();
    bad[9] = Value::I64(5);
    wrong.row(&ctx(false), &bad);
    assert_eq!(
        wrong.finish().map(|_| ()).map_err(|e| e.to_string()),
        Err("row 0: column \"t\" of type Timestamp got a i64 value".to_owned())
    );
}

#[test]
fn ddl_for_parquet_declares_every_column() {
    let ddl = bigquery_ddl(
        "proj.sluice.raw",
        "gs://bucket/sluice/raw/",
        Format::Parquet,
        RawFactory::default().schema(),
        DdlOptions::default(),
    )
    .expect("ddl");
    assert_eq!(
        ddl,
        "CREATE EXTERNAL TABLE `proj.sluice.raw`\n(\n  \
           `received_at` TIMESTAMP,\n  `tunnel_src` STRING,\n  `tunnel_dst` STRING,\n  \
           `gre_key` INT64,\n  `src_ip` STRING,\n  `src_port` INT64,\n  `dst_ip` STRING,\n  \
           `dst_port` INT64,\n  `payload_len` INT64,\n  `payload` BYTES\n)\n\
         WITH PARTITION COLUMNS\n(\n  `dt` DATE,\n  `hour` INT64\n)\n\
         OPTIONS (\n  format = 'PARQUET',\n  uris = ['gs://bucket/sluice/raw/*'],\n  \
           hive_partition_uri_prefix = 'gs://bucket/sluice/raw',\n  \
           require_hive_partition_filter = false\n);\n"
    );
}

#[test]
fn ddl_can_require_a_partition_filter() {
    let options = DdlOptions {
        require_partition_filter: true,
    };
    let ddl = bigquery_ddl(
        "proj.sluice.raw",
        "gs://bucket/sluice/raw",
        Format::Parquet,
        RawFactory::default().schema(),
        options,
    )
    .expect("ddl");
    assert!(
        ddl.ends_with(
            "WITH PARTITION COLUMNS\n(\n  `dt` DATE,\n  `hour` INT64\n)\n\
             OPTIONS (\n  format = 'PARQUET',\n  uris = ['gs://bucket/sluice/raw/*'],\n  \
               hive_partition_uri_prefix = 'gs://bucket/sluice/raw',\n  \
               require_hive_partition_filter = true\n);\n"
        ),
        "{ddl}"
    );
    let ddl =
        bigquery_ddl("p.d.t", "gs://b/x", Format::CsvGzip, &all_types(), options).expect("ddl");
    assert!(
        ddl.ends_with(
            "  skip_leading_rows = 1,\n  uris = ['gs://b/x/*'],\n  \
             hive_partition_uri_prefix = 'gs://b/x',\n  require_hive_partition_filter = true\n);\n"
        ),
        "{ddl}"
    );
}

#[test]
fn ddl_for_text_formats_names_the_compression() {
    let ddl = bigquery_ddl(
        "p.d.t",
        "gs://b/x",
        Format::CsvGzip,
        &all_types(),
        DdlOptions::default(),
    )
    .expect("ddl");
    assert!(ddl.contains("  `h` STRING,\n  `b64` BYTES,\n"), "{ddl}");
    assert!(
        ddl.contains("  format = 'CSV',\n  compression = 'GZIP',\n  skip_leading_rows = 1,\n"),
        "{ddl}"
    );
    let ddl = bigquery_ddl(
        "p.d.t",
        "gs://b/x",
        Format::NdjsonGzip,
        &all_types(),
        DdlOptions::default(),
    )
    .expect("ddl");
    assert!(
        ddl.contains("  format = 'NEWLINE_DELIMITED_JSON',\n  compression = 'GZIP',\n  uris"),
        "{ddl}"
    );
    let ddl = bigquery_ddl(
        "p.d.t",
        "gs://b/x",
        Format::Parquet,
        &all_types(),
        DdlOptions::default(),
    )
    .expect("ddl");
    assert!(ddl.contains("  `h` BYTES,\n  `b64` BYTES,\n"), "{ddl}");
}

#[test]
fn ddl_refuses_what_bigquery_cannot_read() {
    let err = |table: &str, prefix: &str, format: Format| {
        bigquery_ddl(table, prefix, format, &all_types(), DdlOptions::default())
            .map_err(|e| e.to_string())
            .err()
    };
    assert_eq!(
        err("p.d.t", "gs://b/x", Format::NdjsonZstd).as_deref(),
        Some(
            "BigQuery cannot read ndjson_zstd files (BigQuery reads JSON and CSV files \
             uncompressed or gzip-compressed only); use ndjson_gzip, csv_gzip or parquet"
        )
    );
    assert_eq!(
        err("p.d.t", "s3://b/x", Format::Parquet).as_deref(),
        Some(
            "uri_prefix: \"s3://b/x\" is not a Cloud Storage prefix: use gs://bucket/path \
             (no quotes or backslashes)"
        )
    );
    assert_eq!(
        err("a`b", "gs://b/x", Format::Parquet).as_deref(),
        Some("table: \"a`b\" is not a table name: use project.dataset.table")
    );
}
