//! Independent readers: Python from the test venv (pyarrow for Parquet and zstd, the
//! standard library's gzip/json/csv for the rest) reads files the encoders wrote, for
//! schemas covering every column type (a synthetic one, `netflow`, `raw`) and a few hundred
//! rows each, and every value is compared. The Parquet schema pyarrow reports is compared
//! with the column types of the BigQuery DDL through an explicit type map.
//!
//! Needs `cargo xtask setup` (the venv at `$HOME/.local/share/sluice/venv` with pyarrow):
//! with `CI=true` a missing venv fails the test, elsewhere it is skipped with a reason.

use std::{
    borrow::Cow,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    process::Command,
};

use bytes::Bytes;
use serde_json::{Value as Json, json};
use sluice_decode::{
    BytesEncoding, Column, ColumnType, DecoderFactory as _, PacketContext, RecordSchema,
    RowSink as _, Value, netflow::NetflowFactory, raw::RawFactory,
};
use sluice_formats::{
    BatchEncoder as _, CombineKind, Combiner, DdlOptions, FileEncoder, Format, FormatConfig,
    bigquery_ddl, columns::OutputColumns,
};
use sluice_testkit::{
    duckdb::{HiveSource, ObjectFormat, read_hive},
    privilege,
};

const READER: &str = r#"
import base64, csv, datetime, gzip, io, json, math, struct, sys
import pyarrow as pa, pyarrow.parquet as pq

path, fmt, kinds_path = sys.argv[1], sys.argv[2], sys.argv[3]
kinds = json.load(open(kinds_path))
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

def micros(dt):
    return (dt - EPOCH) // datetime.timedelta(microseconds=1)

def num(f):
    if f is None:
        return None
    if math.isfinite(f):
        # The bits, so that no decimal parser on either side can blur the comparison.
        return struct.unpack('<q', struct.pack('<d', f))[0]
    return 'NaN' if math.isnan(f) else ('inf' if f > 0 else '-inf')

def from_text(kind, v, csv_mode):
    if v is None or (csv_mode and v == ''):
        return None
    if kind == 'ts':
        return micros(datetime.datetime.fromisoformat(v))
    if kind == 'int':
        return int(v)
    if kind == 'float':
        return num(float(v))
    if kind == 'bool':
        return v if isinstance(v, bool) else {'true': True, 'false': False}[v]
    if kind == 'hex':
        return bytes.fromhex(v).hex()
    if kind == 'b64':
        return base64.b64decode(v, validate=True).hex()
    return v

out = {}
if fmt == 'parquet':
    table = pq.read_table(path)
    out['schema'] = [[f.name, str(f.type), f.nullable] for f in table.schema]
    meta = pq.ParquetFile(path).metadata
    out['codecs'] = sorted({meta.row_group(g).column(c).compression
                            for g in range(meta.num_row_groups) for c in range(meta.num_columns)})
    rows = []
    for r in table.to_pylist():
        row = []
        for (name, kind) in kinds:
            v = r[name]
            if isinstance(v, datetime.datetime):
                v = micros(v)
            elif isinstance(v, bytes):
                v = v.hex()
            elif isinstance(v, float):
                v = num(v)
            row.append(v)
        rows.append(row)
elif fmt in ('ndjson_gzip', 'ndjson_zstd'):
    if fmt == 'ndjson_gzip':
        text = gzip.open(path, 'rt', encoding='utf-8', newline='').read()
    else:
        text = pa.input_stream(path, compression='zstd').read().decode('utf-8')
    lines = text.split('\n')
    assert lines[-1] == '', 'file must end with a newline'
    rows = []
    for line in lines[:-1]:
        obj = json.loads(line)
        assert list(obj.keys()) == [n for n, _ in kinds], list(obj.keys())
        rows.append([from_text(k, obj[n], False) for n, k in kinds])
else:
    text = gzip.open(path, 'rt', encoding='utf-8', newline='').read()
    reader = csv.reader(io.StringIO(text, newline=''), strict=True)
    header = next(reader)
    assert header == [n for n, _ in kinds], header
    rows = [[from_text(k, v, True) for (n, k), v in zip(kinds, rec)] for rec in reader]
out['rows'] = rows
json.dump(out, sys.stdout)
"#;

/// Deterministic pseudo-random numbers (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const STRINGS: [&str; 8] = [
    "plain",
    "comma, and \"quotes\"",
    "new\nline and\r\ncrlf",
    "tab\tctl\u{1}\u{1f}del\u{7f}",
    "back\\slash",
    "ünïcödé ✓ 😀",
    " leading and trailing ",
    "x",
];

fn value(rng: &mut Rng, column: &Column) -> Value<'static> {
    if column.nullable && rng.below(6) == 0 {
        return Value::Null;
    }
    match column.ty {
        ColumnType::Bool => Value::Bool(rng.below(2) == 1),
        ColumnType::UInt64 => Value::U64(match rng.below(10) {
            0 => u64::MAX,
            1 => i64::MAX as u64,
            2 => 0,
            _ => rng.below(1 << 40),
        }),
        ColumnType::Int64 => Value::I64(match rng.below(8) {
            0 => i64::MIN,
            1 => i64::MAX,
            _ => rng.next() as i64 >> 20,
        }),
        ColumnType::Float64 => Value::F64(match rng.below(12) {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => -0.0,
            4 => 1e-300,
            5 => 1.7976931348623157e308,
            _ => (rng.next() as i64 >> 11) as f64 / 1024.0,
        }),
        ColumnType::String => Value::Str(Cow::Borrowed(STRINGS[rng.below(8) as usize])),
        ColumnType::Bytes(_) => {
            let len = rng.below(40) as usize;
            Value::Bytes(Cow::Owned((0..len).map(|_| rng.next() as u8).collect()))
        }
        ColumnType::IpAddr => Value::Ip(ip(rng)),
        ColumnType::MacAddr => {
            let b = rng.next().to_le_bytes();
            Value::Mac([b[0], b[1], b[2], b[3], b[4], b[5]])
        }
        ColumnType::Timestamp => Value::Timestamp(timestamp(rng)),
    }
}

fn ip(rng: &mut Rng) -> IpAddr {
    if rng.below(3) == 0 {
        IpAddr::V6(Ipv6Addr::from(
            u128::from(rng.next()) << 64 | u128::from(rng.below(3)),
        ))
    } else {
        IpAddr::V4(Ipv4Addr::from(rng.next() as u32))
    }
}

/// 2000-01-01 to about 2033, any microsecond.
fn timestamp(rng: &mut Rng) -> i64 {
    946_684_800_000_000 + rng.below(1_060_000_000_000_000) as i64
}

fn context(rng: &mut Rng) -> PacketContext {
    let tunnel = rng.below(2) == 0;
    PacketContext {
        received_at: timestamp(rng),
        tunnel_src: tunnel.then(|| ip(rng)),
        tunnel_dst: tunnel.then(|| ip(rng)),
        gre_key: (tunnel && rng.below(2) == 0).then(|| rng.next() as u32),
        src_ip: ip(rng),
        src_port: rng.next() as u16,
        dst_ip: ip(rng),
        dst_port: rng.next() as u16,
    }
}

fn provenance(ctx: &PacketContext) -> [Value<'static>; 8] {
    let opt = |ip: Option<IpAddr>| ip.map_or(Value::Null, Value::Ip);
    [
        Value::Timestamp(ctx.received_at),
        opt(ctx.tunnel_src),
        opt(ctx.tunnel_dst),
        ctx.gre_key
            .map_or(Value::Null, |k| Value::U64(u64::from(k))),
        Value::Ip(ctx.src_ip),
        Value::U64(u64::from(ctx.src_port)),
        Value::Ip(ctx.dst_ip),
        Value::U64(u64::from(ctx.dst_port)),
    ]
}

fn kind(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Bool => "bool",
        ColumnType::UInt64 | ColumnType::Int64 => "int",
        ColumnType::Float64 => "float",
        ColumnType::String | ColumnType::IpAddr | ColumnType::MacAddr => "str",
        ColumnType::Bytes(BytesEncoding::Hex) => "hex",
        ColumnType::Bytes(BytesEncoding::Base64) => "b64",
        ColumnType::Timestamp => "ts",
    }
}

/// What a reader must see for `value` in a file of `format`.
fn expected(format: Format, value: &Value<'_>) -> Json {
    let text = format != Format::Parquet;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let cell = match value {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::U64(n) => i64::try_from(*n).map_or(Json::Null, |n| json!(n)),
        Value::I64(n) => json!(n),
        Value::F64(f) if f.is_finite() => json!(f.to_bits() as i64),
        Value::F64(_) if text => Json::Null,
        Value::F64(f) if f.is_nan() => json!("NaN"),
        Value::F64(f) => json!(if *f > 0.0 { "inf" } else { "-inf" }),
        Value::Str(s) => json!(s),
        Value::Bytes(b) => json!(hex(b)),
        Value::Ip(ip) => json!(ip.to_string()),
        Value::Mac(m) => json!(
            m.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        ),
        Value::Timestamp(t) => json!(t),
    };
    // Python's csv module reads an empty field and `""` alike.
    if format == Format::CsvGzip && cell.as_str() == Some("") {
        return Json::Null;
    }
    cell
}

/// The Arrow type pyarrow reports for a column the DDL declares as `bigquery`.
fn arrow_type_of(bigquery: &str) -> &'static str {
    match bigquery {
        "INT64" => "int64",
        "FLOAT64" => "double",
        "BOOL" => "bool",
        "STRING" => "string",
        "BYTES" => "binary",
        "TIMESTAMP" => "timestamp[us, tz=UTC]",
        other => panic!("the DDL declared an unexpected type {other}"),
    }
}

/// One batch of `rows`: the complete file, after checking the encoder's counts.
fn encode(
    config: &FormatConfig,
    schema: &RecordSchema,
    rows: &[(PacketContext, Vec<Value<'static>>)],
    label: &str,
) -> Vec<u8> {
    let mut encoder = FileEncoder::new(config, schema).expect("encoder");
    for (ctx, values) in rows {
        encoder.row(ctx, values);
    }
    assert_eq!(encoder.records(), rows.len() as u64, "{label}");
    let overflows = rows
        .iter()
        .flat_map(|(_, values)| values)
        .filter(|v| matches!(v, Value::U64(n) if *n > i64::MAX as u64))
        .count();
    assert_eq!(encoder.overflows(), overflows as u64, "{label}");
    encoder.finish().expect("finish")
}

/// What the Python reader makes of the file at `path`.
fn read_back(
    python: &Path,
    script: &Path,
    path: &Path,
    format: Format,
    kinds_path: &Path,
    label: &str,
) -> Json {
    let output = Command::new(python)
        .arg(script)
        .arg(path)
        .arg(format.name())
        .arg(kinds_path)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "{label}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("reader output")
}

/// Every value the reader saw, compared with what was written.
fn assert_rows(
    read: &Json,
    rows: &[(PacketContext, Vec<Value<'static>>)],
    format: Format,
    label: &str,
) {
    let read_rows = read["rows"].as_array().expect("rows");
    assert_eq!(read_rows.len(), rows.len(), "{label}");
    for (i, ((ctx, values), got)) in rows.iter().zip(read_rows).enumerate() {
        let want: Vec<Json> = provenance(ctx)
            .iter()
            .chain(values)
            .map(|v| expected(format, v))
            .collect();
        assert_eq!(got, &Json::Array(want), "{label} row {i}");
    }
}

fn check_schema(python: &Path, dir: &Path, schema: &RecordSchema, seed: u64) {
    let columns = OutputColumns::new(schema).expect("columns");
    let kinds: Vec<(String, &str)> = columns
        .columns()
        .iter()
        .map(|c| (c.name.clone(), kind(c.ty)))
        .collect();
    let kinds_path = dir.join(format!("{}-kinds.json", schema.decoder));
    std::fs::write(&kinds_path, serde_json::to_vec(&kinds).expect("json")).expect("write kinds");
    let script = dir.join("reader.py");
    std::fs::write(&script, READER).expect("write script");

    let mut rng = Rng(seed);
    let rows: Vec<(PacketContext, Vec<Value<'static>>)> = (0..300)
        .map(|_| {
            let ctx = context(&mut rng);
            let values = schema.columns.iter().map(|c| value(&mut rng, c)).collect();
            (ctx, values)
        })
        .collect();

    for format in Format::ALL {
        let mut config = FormatConfig::new(format);
        if format == Format::Parquet {
            config.row_group_rows = Some(128);
        }
        let label = format!("{} {format}", schema.decoder);
        let path = dir.join(format!("{}.{}", schema.decoder, format.extension()));
        std::fs::write(&path, encode(&config, schema, &rows, &label)).expect("write file");
        let read = read_back(python, &script, &path, format, &kinds_path, &label);
        assert_rows(&read, &rows, format, &label);

        // The same rows as three batches (one of them empty) combined into one file.
        let mut combiner = Combiner::new(CombineKind::for_format(format), Vec::new());
        for part in [&rows[..120], &rows[120..120], &rows[120..]] {
            let batch = encode(&config, schema, part, &label);
            combiner.push(Bytes::from(batch)).expect("combine");
        }
        let (combined, summary) = combiner.finish().expect("finish combining");
        assert_eq!(summary.batches, 3);
        let path = dir.join(format!(
            "{}-combined.{}",
            schema.decoder,
            format.extension()
        ));
        std::fs::write(&path, combined).expect("write combined file");
        let label = format!("{label} combined");
        let read_combined = read_back(python, &script, &path, format, &kinds_path, &label);
        assert_rows(&read_combined, &rows, format, &label);
        assert_eq!(read_combined["schema"], read["schema"], "{label}");
        assert_eq!(read_combined["codecs"], read["codecs"], "{label}");

        if format == Format::Parquet {
            assert_eq!(read["codecs"], json!(["ZSTD"]));
            let ddl = bigquery_ddl(
                "p.d.t",
                "gs://bucket/prefix",
                format,
                schema,
                DdlOptions::default(),
            )
            .expect("ddl");
            let declared: Vec<(String, &str)> = ddl
                .lines()
                .skip(2)
                .take_while(|line| *line != ")")
                .map(|line| {
                    let line = line.trim().trim_end_matches(',');
                    let (name, ty) = line.rsplit_once(' ').expect("name and type");
                    (name.trim_matches('`').to_owned(), arrow_type_of(ty))
                })
                .collect();
            let reported: Vec<(String, String)> = read["schema"]
                .as_array()
                .expect("schema")
                .iter()
                .map(|f| {
                    (
                        f[0].as_str().unwrap_or("").to_owned(),
                        f[1].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            assert_eq!(reported.len(), declared.len());
            for ((name, arrow), (ddl_name, ddl_arrow)) in reported.iter().zip(&declared) {
                assert_eq!(
                    (name.as_str(), arrow.as_str()),
                    (ddl_name.as_str(), *ddl_arrow)
                );
            }
        }
    }
}

#[test]
fn python_reads_every_format_back_exactly() {
    let Some(python) = sluice_testkit::python::venv_python(&["pyarrow"]) else {
        privilege::require(
            "python_reads_every_format_back_exactly",
            false,
            "needs pyarrow in $HOME/.local/share/sluice/venv (run `cargo xtask setup`)",
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let all_types = RecordSchema {
        decoder: "all_types".into(),
        columns: vec![
            Column::nullable("n", ColumnType::UInt64),
            Column::required("n_required", ColumnType::UInt64),
            Column::required("b", ColumnType::Bool),
            Column::nullable("i", ColumnType::Int64),
            Column::nullable("f", ColumnType::Float64),
            Column::nullable("s", ColumnType::String),
            Column::required("h", ColumnType::Bytes(BytesEncoding::Hex)),
            Column::nullable("b64", ColumnType::Bytes(BytesEncoding::Base64)),
            Column::nullable("ip", ColumnType::IpAddr),
            Column::required("mac", ColumnType::MacAddr),
            Column::nullable("t", ColumnType::Timestamp),
        ],
    };
    let netflow = NetflowFactory::new(&Default::default()).expect("netflow");
    check_schema(&python, dir.path(), &all_types, 0x5eed_0001);
    check_schema(&python, dir.path(), netflow.schema(), 0x5eed_0002);
    check_schema(
        &python,
        dir.path(),
        RawFactory::default().schema(),
        0x5eed_0003,
    );
}

/// The columns and BigQuery types `bigquery_ddl` declares for `schema` in `format`.
fn ddl_columns(format: Format, schema: &RecordSchema) -> Vec<(String, String)> {
    let ddl = bigquery_ddl(
        "p.d.t",
        "gs://bucket/prefix",
        format,
        schema,
        DdlOptions::default(),
    )
    .expect("ddl");
    ddl.lines()
        .skip(2)
        .take_while(|line| *line != ")")
        .map(|line| {
            let line = line.trim().trim_end_matches(',');
            let (name, ty) = line.rsplit_once(' ').expect("name and type");
            (name.trim_matches('`').to_owned(), ty.to_owned())
        })
        .collect()
}

/// DuckDB, the tests' stand-in for BigQuery, reads an object combined from batches of the
/// `raw` stream as one file in each format BigQuery reads: every row once (the gzip
/// members one stream, the CSV header once, the Parquet row groups all).
#[test]
fn duckdb_reads_combined_objects_as_one_file() {
    let Some(python) = sluice_testkit::python::venv_python(&["duckdb"]) else {
        privilege::require(
            "duckdb_reads_combined_objects_as_one_file",
            false,
            "needs duckdb in $HOME/.local/share/sluice/venv (run `cargo xtask setup`)",
        );
        return;
    };
    let raw = RawFactory::default();
    let dir = tempfile::tempdir().expect("tempdir");
    // Packet n: a payload of n % 50 bytes to port 5000 + n % 3.
    let packet = |n: u32| {
        let mut ctx = context(&mut Rng(u64::from(n) + 1));
        ctx.dst_port = 5000 + (n % 3) as u16;
        let payload = vec![b'x'; (n % 50) as usize];
        (ctx, payload)
    };
    let batches: [std::ops::Range<u32>; 4] = [0..40, 40..40, 40..250, 250..251];
    let payload_bytes: u64 = (0..251_u64).map(|n| n % 50).sum();
    for format in [Format::Parquet, Format::NdjsonGzip, Format::CsvGzip] {
        let mut combiner = Combiner::new(CombineKind::for_format(format), Vec::new());
        for range in batches.clone() {
            let mut encoder =
                FileEncoder::new(&FormatConfig::new(format), raw.schema()).expect("encoder");
            for n in range {
                let (ctx, payload) = packet(n);
                let values = [
                    Value::U64(payload.len() as u64),
                    Value::Bytes(Cow::Owned(payload)),
                ];
                encoder.row(&ctx, &values);
            }
            combiner
                .push(Bytes::from(encoder.finish().expect("finish")))
                .expect("combine");
        }
        let (combined, _) = combiner.finish().expect("finish combining");
        let root = dir.path().join(format.name());
        let folder = root.join("dt=2026-11-22/hour=06");
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::write(
            folder.join(format!("combined.{}", format.extension())),
            combined,
        )
        .expect("write combined file");
        let columns = ddl_columns(format, raw.schema());
        let source = HiveSource {
            root: &root,
            format: ObjectFormat::from_sink_format(format.name()).expect("BigQuery format"),
            ddl_columns: &columns,
        };
        let table = read_hive(&python, &source).unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(table.rows, 251, "{format}");
        assert_eq!(table.payload_bytes, payload_bytes, "{format}");
        assert_eq!(table.dst_ports, [5000, 5001, 5002], "{format}");
    }
}
