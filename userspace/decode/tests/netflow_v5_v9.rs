//! The netflow decoder on hand-built NetFlow v5 and v9 packets: every column of v5, v9
//! templates and options templates (sampling), IPv4 and IPv6 flows, relative times anchored
//! on the header (with a sysUptime wrap), template redefinition, reserved sets, padding,
//! and the exporter key (source id, tunnel, address). Each case asserts whole rows.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sluice_decode::netflow::encode::{
    FieldSpec, MessageBuilder, RecordWriter, V5Flow, V5Header, v5_packet,
};
use sluice_decode::netflow::{NetflowConfig, NetflowFactory};
use sluice_decode::{ColumnType, DecodeOutcome, Decoder, DecoderFactory, PacketContext, Value};

/// 2026-01-01T00:00:00Z.
const EXPORT_SECS: u32 = 1_767_225_600;
const EXPORT_US: i64 = 1_767_225_600_000_000;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn ctx_from(tunnel: Option<IpAddr>, src: IpAddr) -> PacketContext {
    PacketContext {
        received_at: EXPORT_US + 5_000,
        tunnel_src: tunnel,
        tunnel_dst: tunnel.map(|_| v4(192, 0, 2, 1)),
        gre_key: None,
        src_ip: src,
        src_port: 40_000,
        dst_ip: v4(198, 51, 100, 2),
        dst_port: 2055,
    }
}

fn ctx() -> PacketContext {
    ctx_from(Some(v4(192, 0, 2, 10)), v4(198, 51, 100, 1))
}

/// A row, by column name; `row()` lists it in schema order.
#[derive(Clone, Debug, Default)]
struct Flow {
    version: u64,
    exported_at: i64,
    domain: Option<u64>,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    src_port: Option<u64>,
    dst_port: Option<u64>,
    protocol: Option<u64>,
    packets: Option<u64>,
    bytes: Option<u64>,
    start: Option<i64>,
    end: Option<i64>,
    tcp_flags: Option<u64>,
    input_if: Option<u64>,
    output_if: Option<u64>,
    src_as: Option<u64>,
    dst_as: Option<u64>,
    next_hop: Option<IpAddr>,
    tos: Option<u64>,
    src_mask: Option<u64>,
    dst_mask: Option<u64>,
    sampling: Option<u64>,
    engine_type: Option<u64>,
    engine_id: Option<u64>,
    extra: Option<&'static str>,
}

impl Flow {
    fn row(&self) -> Vec<Value<'static>> {
        let n = |v: Option<u64>| v.map_or(Value::Null, Value::U64);
        let a = |v: Option<IpAddr>| v.map_or(Value::Null, Value::Ip);
        let t = |v: Option<i64>| v.map_or(Value::Null, Value::Timestamp);
        vec![
            Value::U64(self.version),
            Value::Timestamp(self.exported_at),
            n(self.domain),
            a(self.src),
            a(self.dst),
            n(self.src_port),
            n(self.dst_port),
            n(self.protocol),
            n(self.packets),
            n(self.bytes),
            t(self.start),
            t(self.end),
            n(self.tcp_flags),
            n(self.input_if),
            n(self.output_if),
            n(self.src_as),
            n(self.dst_as),
            a(self.next_hop),
            n(self.tos),
            n(self.src_mask),
            n(self.dst_mask),
            n(self.sampling),
            n(self.engine_type),
            n(self.engine_id),
            self.extra.map_or(Value::Null, |s| Value::Str(s.into())),
        ]
    }
}

fn factory() -> NetflowFactory {
    NetflowFactory::new(&NetflowConfig::default()).expect("factory")
}

fn decode(
    decoder: &mut dyn Decoder,
    ctx: &PacketContext,
    payload: &[u8],
) -> (DecodeOutcome, Vec<Vec<Value<'static>>>) {
    let mut rows = Vec::new();
    let outcome = decoder.decode(ctx, payload, &mut rows).expect("decodes");
    (outcome, rows)
}

#[test]
fn schema_lists_the_documented_columns() {
    let f = factory();
    let schema = f.schema();
    assert_eq!(schema.decoder, "netflow");
    let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "version",
            "exported_at",
            "observation_domain_id",
            "src_addr",
            "dst_addr",
            "src_port",
            "dst_port",
            "protocol",
            "packets",
            "bytes",
            "flow_start",
            "flow_end",
            "tcp_flags",
            "input_if",
            "output_if",
            "src_as",
            "dst_as",
            "next_hop",
            "tos",
            "src_mask",
            "dst_mask",
            "sampling_interval",
            "engine_type",
            "engine_id",
            "extra",
        ]
    );
    let ty = |name: &str| schema.columns[schema.index_of(name).expect(name)].ty;
    assert_eq!(ty("src_addr"), ColumnType::IpAddr);
    assert_eq!(ty("flow_start"), ColumnType::Timestamp);
    assert_eq!(ty("bytes"), ColumnType::UInt64);
    assert_eq!(ty("extra"), ColumnType::String);
    assert_eq!(f.build().schema(), schema);
}

#[test]
fn v5_fills_every_column() {
    let header = V5Header {
        sys_uptime_ms: 100_000,
        unix_secs: EXPORT_SECS,
        unix_nsecs: 123_456_789,
        flow_sequence: 1,
        engine_type: 1,
        engine_id: 2,
        sampling_interval: 0x4064, // mode 1, interval 100
    };
    let tcp = V5Flow {
        src: Ipv4Addr::new(192, 0, 2, 1),
        dst: Ipv4Addr::new(203, 0, 113, 5),
        next_hop: Ipv4Addr::new(198, 51, 100, 254),
        input: 3,
        output: 4,
        packets: 10,
        bytes: 1500,
        first_ms: 90_000,
        last_ms: 99_500,
        src_port: 40_000,
        dst_port: 443,
        tcp_flags: 0x1b,
        protocol: 6,
        tos: 0x10,
        src_as: 64_500,
        dst_as: 64_501,
        src_mask: 24,
        dst_mask: 16,
    };
    let udp = V5Flow {
        src: Ipv4Addr::new(203, 0, 113, 5),
        dst: Ipv4Addr::new(192, 0, 2, 1),
        packets: 1,
        bytes: 76,
        first_ms: 100_000,
        last_ms: 100_000,
        src_port: 53,
        dst_port: 33_333,
        tcp_flags: 0,
        protocol: 17,
        tos: 0,
        ..tcp
    };
    let mut d = factory().build();
    let (outcome, rows) = decode(d.as_mut(), &ctx(), &v5_packet(&header, &[tcp, udp]));
    assert_eq!(
        outcome,
        DecodeOutcome {
            rows: 2,
            held: false
        }
    );
    let exported_at = EXPORT_US + 123_456;
    let first = Flow {
        version: 5,
        exported_at,
        src: Some(v4(192, 0, 2, 1)),
        dst: Some(v4(203, 0, 113, 5)),
        src_port: Some(40_000),
        dst_port: Some(443),
        protocol: Some(6),
        packets: Some(10),
        bytes: Some(1500),
        start: Some(exported_at - 10_000_000),
        end: Some(exported_at - 500_000),
        tcp_flags: Some(0x1b),
        input_if: Some(3),
        output_if: Some(4),
        src_as: Some(64_500),
        dst_as: Some(64_501),
        next_hop: Some(v4(198, 51, 100, 254)),
        tos: Some(0x10),
        src_mask: Some(24),
        dst_mask: Some(16),
        sampling: Some(100),
        engine_type: Some(1),
        engine_id: Some(2),
        ..Flow::default()
    };
    let second = Flow {
        src: Some(v4(203, 0, 113, 5)),
        dst: Some(v4(192, 0, 2, 1)),
        src_port: Some(53),
        dst_port: Some(33_333),
        protocol: Some(17),
        packets: Some(1),
        bytes: Some(76),
        start: Some(exported_at),
        end: Some(exported_at),
        tcp_flags: Some(0),
        tos: Some(0),
        ..first.clone()
    };
    assert_eq!(rows, vec![first.row(), second.row()]);

    // No sampling: null. An empty packet: no row, no error.
    let plain = V5Header {
        sampling_interval: 0,
        ..header
    };
    let (_, rows) = decode(d.as_mut(), &ctx(), &v5_packet(&plain, &[tcp]));
    assert_eq!(rows[0][21], Value::Null);
    let (outcome, rows) = decode(d.as_mut(), &ctx(), &v5_packet(&plain, &[]));
    assert_eq!((outcome.rows, rows.len()), (0, 0));
}

#[test]
fn v5_length_must_match_count() {
    let header = V5Header {
        unix_secs: EXPORT_SECS,
        ..V5Header::default()
    };
    let flow = V5Flow {
        src: Ipv4Addr::new(192, 0, 2, 1),
        dst: Ipv4Addr::new(192, 0, 2, 2),
        next_hop: Ipv4Addr::UNSPECIFIED,
        input: 0,
        output: 0,
        packets: 1,
        bytes: 40,
        first_ms: 0,
        last_ms: 0,
        src_port: 1,
        dst_port: 2,
        tcp_flags: 0,
        protocol: 6,
        tos: 0,
        src_as: 0,
        dst_as: 0,
        src_mask: 0,
        dst_mask: 0,
    };
    let mut d = factory().build();
    let mut longer = v5_packet(&header, &[flow]);
    longer.push(0);
    let err = d
        .decode(&ctx(), &longer, &mut Vec::new())
        .expect_err("longer");
    assert_eq!(
        (err.kind, err.field_text().as_deref(), err.offset),
        ("bad_length", Some("count"), 2)
    );
    assert_eq!(err.message(), "1 records need 72 bytes, the packet has 73");
    let err = d
        .decode(&ctx(), &longer[..71], &mut Vec::new())
        .expect_err("shorter");
    assert_eq!(err.kind, "truncated");
}

fn v9_flow_fields() -> Vec<FieldSpec> {
    [
        (8, 4),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (6, 1),
        (5, 1),
        (2, 4),
        (1, 4),
        (22, 4),
        (21, 4),
        (10, 2),
        (14, 2),
        (16, 2),
        (17, 2),
        (15, 4),
        (9, 1),
        (13, 1),
    ]
    .map(|(id, len)| FieldSpec::new(id, len))
    .to_vec()
}

fn v9_v6_fields() -> Vec<FieldSpec> {
    [
        (27, 16),
        (28, 16),
        (7, 2),
        (11, 2),
        (4, 1),
        (2, 8),
        (1, 8),
        (22, 4),
        (21, 4),
        (62, 16),
    ]
    .map(|(id, len)| FieldSpec::new(id, len))
    .to_vec()
}

#[expect(
    clippy::too_many_arguments,
    reason = "one argument per varying field of the record"
)]
fn v9_flow_record(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    proto: u8,
    pkts: u32,
    bytes: u32,
    first: u32,
    last: u32,
) -> Vec<u8> {
    RecordWriter::new()
        .ip(src)
        .ip(dst)
        .u16(sport)
        .u16(dport)
        .u8(proto)
        .u8(0x12)
        .u8(0)
        .u32(pkts)
        .u32(bytes)
        .u32(first)
        .u32(last)
        .u16(7)
        .u16(8)
        .u16(0)
        .u16(65_001)
        .ip(v4(198, 51, 100, 254))
        .u8(24)
        .u8(32)
        .finish()
}

const V6_SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1);
const V6_DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 2);

fn v9_v6_record(first: u32, last: u32) -> Vec<u8> {
    RecordWriter::new()
        .ip(IpAddr::V6(V6_SRC))
        .ip(IpAddr::V6(V6_DST))
        .u16(5353)
        .u16(5353)
        .u8(17)
        .u64(3)
        .u64(300)
        .u32(first)
        .u32(last)
        .ip(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
        .finish()
}

/// The v9 packet of the main case: templates 256 (IPv4) and 257 (IPv6), options
/// template 258 (scope system, sampling interval and algorithm), options data, flows.
fn v9_full_packet(uptime: u32) -> Vec<u8> {
    let v4_fields = v9_flow_fields();
    let v6_fields = v9_v6_fields();
    let options = RecordWriter::new().u32(0).u32(1000).u8(2).finish();
    MessageBuilder::v9(uptime, EXPORT_SECS, 11, 77)
        .template_set(&[(256, &v4_fields), (257, &v6_fields)])
        .options_template_set(
            258,
            &[FieldSpec::new(1, 4)],
            &[FieldSpec::new(34, 4), FieldSpec::new(35, 1)],
        )
        .data_set_padded(258, &[options], true)
        .data_set_padded(
            256,
            &[
                v9_flow_record(
                    v4(192, 0, 2, 1),
                    v4(203, 0, 113, 9),
                    40_001,
                    80,
                    6,
                    12,
                    4_000,
                    uptime - 2_500,
                    uptime - 1_000,
                ),
                v9_flow_record(
                    v4(203, 0, 113, 9),
                    v4(192, 0, 2, 1),
                    80,
                    40_001,
                    6,
                    10,
                    12_000,
                    uptime - 2_400,
                    uptime - 900,
                ),
            ],
            true,
        )
        .data_set_padded(257, &[v9_v6_record(uptime - 60_000, uptime)], true)
        .finish()
}

fn v9_expected() -> Vec<Vec<Value<'static>>> {
    let base = Flow {
        version: 9,
        exported_at: EXPORT_US,
        domain: Some(77),
        tcp_flags: Some(0x12),
        tos: Some(0),
        input_if: Some(7),
        output_if: Some(8),
        src_as: Some(0),
        dst_as: Some(65_001),
        next_hop: Some(v4(198, 51, 100, 254)),
        src_mask: Some(24),
        dst_mask: Some(32),
        sampling: Some(1000),
        protocol: Some(6),
        ..Flow::default()
    };
    let a = Flow {
        src: Some(v4(192, 0, 2, 1)),
        dst: Some(v4(203, 0, 113, 9)),
        src_port: Some(40_001),
        dst_port: Some(80),
        packets: Some(12),
        bytes: Some(4_000),
        start: Some(EXPORT_US - 2_500_000),
        end: Some(EXPORT_US - 1_000_000),
        ..base.clone()
    };
    let b = Flow {
        src: Some(v4(203, 0, 113, 9)),
        dst: Some(v4(192, 0, 2, 1)),
        src_port: Some(80),
        dst_port: Some(40_001),
        packets: Some(10),
        bytes: Some(12_000),
        start: Some(EXPORT_US - 2_400_000),
        end: Some(EXPORT_US - 900_000),
        ..base.clone()
    };
    let c = Flow {
        version: 9,
        exported_at: EXPORT_US,
        domain: Some(77),
        src: Some(IpAddr::V6(V6_SRC)),
        dst: Some(IpAddr::V6(V6_DST)),
        src_port: Some(5353),
        dst_port: Some(5353),
        protocol: Some(17),
        packets: Some(3),
        bytes: Some(300),
        start: Some(EXPORT_US - 60_000_000),
        end: Some(EXPORT_US),
        next_hop: Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        sampling: Some(1000),
        ..Flow::default()
    };
    vec![a.row(), b.row(), c.row()]
}

#[test]
fn v9_templates_options_and_ipv6_flows() {
    let f = factory();
    let mut d = f.build();
    let (outcome, rows) = decode(d.as_mut(), &ctx(), &v9_full_packet(3_600_000));
    assert_eq!(
        outcome,
        DecodeOutcome {
            rows: 3,
            held: false
        }
    );
    assert_eq!(rows, v9_expected());
    let stats = f.stats();
    assert_eq!((stats.templates_learned, stats.options_records), (3, 1));

    // A data-only packet of the same exporter, through another worker's decoder: the
    // templates and the options' sampling interval are shared.
    let uptime = 3_600_000;
    let data_only = MessageBuilder::v9(uptime, EXPORT_SECS, 12, 77)
        .data_set(
            256,
            &[v9_flow_record(
                v4(192, 0, 2, 1),
                v4(203, 0, 113, 9),
                40_001,
                80,
                6,
                12,
                4_000,
                uptime - 2_500,
                uptime - 1_000,
            )],
        )
        .finish();
    let mut other = f.build();
    let (outcome, rows) = decode(other.as_mut(), &ctx(), &data_only);
    assert_eq!(outcome.rows, 1);
    assert_eq!(rows[0], v9_expected()[0]);
}

#[test]
fn v9_relative_times_survive_a_sysuptime_wrap() {
    // sysUptime wrapped 1 s before export: the flows started before the wrap.
    let mut d = factory().build();
    let (_, rows) = decode(d.as_mut(), &ctx(), &v9_full_packet_wrapped());
    let start = d.schema().index_of("flow_start").expect("column");
    let end = d.schema().index_of("flow_end").expect("column");
    let times: Vec<(Value, Value)> = rows
        .iter()
        .map(|r| (r[start].clone(), r[end].clone()))
        .collect();
    assert_eq!(
        times,
        [
            (
                Value::Timestamp(EXPORT_US - 2_500_000),
                Value::Timestamp(EXPORT_US - 1_000_000)
            ),
            (
                Value::Timestamp(EXPORT_US - 2_400_000),
                Value::Timestamp(EXPORT_US - 900_000)
            ),
            (
                Value::Timestamp(EXPORT_US - 60_000_000),
                Value::Timestamp(EXPORT_US)
            ),
        ]
    );
}

fn v9_full_packet_wrapped() -> Vec<u8> {
    // uptime 1000 ms after a wrap: uptime - x is computed modulo 2^32 by the encoder.
    let uptime: u32 = 1_000;
    let v4_fields = v9_flow_fields();
    let v6_fields = v9_v6_fields();
    MessageBuilder::v9(uptime, EXPORT_SECS, 11, 77)
        .template_set(&[(256, &v4_fields), (257, &v6_fields)])
        .data_set(
            256,
            &[
                v9_flow_record(
                    v4(192, 0, 2, 1),
                    v4(203, 0, 113, 9),
                    40_001,
                    80,
                    6,
                    12,
                    4_000,
                    uptime.wrapping_sub(2_500),
                    uptime.wrapping_sub(1_000),
                ),
                v9_flow_record(
                    v4(203, 0, 113, 9),
                    v4(192, 0, 2, 1),
                    80,
                    40_001,
                    6,
                    10,
                    12_000,
                    uptime.wrapping_sub(2_400),
                    uptime.wrapping_sub(900),
                ),
            ],
        )
        .data_set(257, &[v9_v6_record(uptime.wrapping_sub(60_000), uptime)])
        .finish()
}

#[test]
fn v9_template_redefinition_replaces_the_layout() {
    let f = factory();
    let mut d = f.build();
    let first = MessageBuilder::v9(1_000, EXPORT_SECS, 1, 1)
        .template_set(&[(300, &[FieldSpec::new(8, 4), FieldSpec::new(2, 4)])])
        .data_set(
            300,
            &[RecordWriter::new().ip(v4(192, 0, 2, 1)).u32(5).finish()],
        )
        .finish();
    let (_, rows) = decode(d.as_mut(), &ctx(), &first);
    assert_eq!(
        (rows[0][3].clone(), rows[0][8].clone()),
        (Value::Ip(v4(192, 0, 2, 1)), Value::U64(5))
    );
    // Same id, other fields: destination address and 1-byte protocol.
    let second = MessageBuilder::v9(1_000, EXPORT_SECS, 2, 1)
        .template_set(&[(300, &[FieldSpec::new(12, 4), FieldSpec::new(4, 1)])])
        .finish();
    assert_eq!(decode(d.as_mut(), &ctx(), &second).0.rows, 0);
    let data = MessageBuilder::v9(1_000, EXPORT_SECS, 3, 1)
        .data_set(
            300,
            &[RecordWriter::new().ip(v4(203, 0, 113, 1)).u8(17).finish()],
        )
        .finish();
    let (_, rows) = decode(d.as_mut(), &ctx(), &data);
    assert_eq!(
        (rows[0][3].clone(), rows[0][4].clone(), rows[0][7].clone()),
        (Value::Null, Value::Ip(v4(203, 0, 113, 1)), Value::U64(17))
    );
    // The resend of an identical template is a refresh, not a redefinition.
    assert_eq!(decode(d.as_mut(), &ctx(), &second).0.rows, 0);
    assert_eq!(f.stats().templates_learned, 2);
}

#[test]
fn v9_reserved_sets_and_trailing_padding_are_skipped() {
    let mut d = factory().build();
    let mut p = MessageBuilder::v9(1_000, EXPORT_SECS, 1, 1)
        .raw_set(100, &[1, 2, 3, 4])
        .template_set(&[(300, &[FieldSpec::new(4, 1)])])
        .data_set(300, &[vec![6], vec![17]])
        .finish();
    p.extend_from_slice(&[0, 0, 0]);
    let (outcome, rows) = decode(d.as_mut(), &ctx(), &p);
    assert_eq!(outcome.rows, 2);
    assert_eq!(
        (rows[0][7].clone(), rows[1][7].clone()),
        (Value::U64(6), Value::U64(17))
    );
}

#[test]
fn templates_are_scoped_by_source_id_tunnel_and_exporter() {
    let config = NetflowConfig {
        hold_ms: 0,
        ..NetflowConfig::default()
    };
    let f = NetflowFactory::new(&config).expect("factory");
    let mut d = f.build();
    let template = MessageBuilder::v9(1_000, EXPORT_SECS, 1, 5)
        .template_set(&[(300, &[FieldSpec::new(4, 1)])])
        .finish();
    decode(d.as_mut(), &ctx(), &template);
    let data = |source_id| {
        MessageBuilder::v9(1_000, EXPORT_SECS, 2, source_id)
            .data_set(300, &[vec![6]])
            .finish()
    };
    assert_eq!(decode(d.as_mut(), &ctx(), &data(5)).0.rows, 1);
    let others = [
        (ctx(), data(6)),
        (
            ctx_from(Some(v4(192, 0, 2, 11)), v4(198, 51, 100, 1)),
            data(5),
        ),
        (ctx_from(None, v4(198, 51, 100, 1)), data(5)),
        (
            ctx_from(Some(v4(192, 0, 2, 10)), v4(198, 51, 100, 3)),
            data(5),
        ),
    ];
    for (i, (c, p)) in others.iter().enumerate() {
        let err = d.decode(c, p, &mut Vec::new()).expect_err("other exporter");
        assert_eq!(
            (
                err.kind,
                err.field_text().as_deref(),
                err.offset,
                err.message().as_str()
            ),
            ("no_template", Some("set id"), 20, "template 300 is unknown"),
            "case {i}"
        );
    }
    assert_eq!(f.exporters(), 1);
}

#[test]
fn bad_version_names_the_version() {
    let mut d = factory().build();
    let err = d
        .decode(&ctx(), &[0, 8, 0, 0], &mut Vec::new())
        .expect_err("v8");
    assert_eq!(
        (err.kind, err.field_text().as_deref(), err.offset),
        ("bad_version", Some("version"), 0)
    );
    assert_eq!(err.message(), "version 8, expected 5, 9 or 10");
    let err = d.decode(&ctx(), &[0], &mut Vec::new()).expect_err("empty");
    assert_eq!((err.kind, err.offset), ("truncated", 0));
}
