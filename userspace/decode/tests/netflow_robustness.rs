//! Bad input never panics and never yields a partial packet: every truncation of v5, v9
//! and IPFIX packets is an error (or, for v9, which has no length field, exactly the rows
//! of the sets that are complete), arbitrary bytes and mutated packets decode or fail
//! cleanly, and every emitted row matches the schema's types. Regressions found by the
//! fuzz target (`fuzz/fuzz_targets/decode_netflow.rs`) are kept at the end.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use sluice_decode::netflow::encode::{
    FieldSpec, MessageBuilder, RecordWriter, V5Flow, V5Header, v5_packet,
};
use sluice_decode::netflow::{NetflowConfig, NetflowFactory};
use sluice_decode::{ColumnType, DecoderFactory, PacketContext, RecordSchema, Value};

const EXPORT_SECS: u32 = 1_767_225_600;
const T0: i64 = 1_767_225_600_000_000;
const KINDS: [&str; 6] = [
    "truncated",
    "bad_version",
    "bad_length",
    "bad_template",
    "no_template",
    "bad_value",
];

fn ctx() -> PacketContext {
    let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    PacketContext {
        received_at: T0,
        tunnel_src: None,
        tunnel_dst: None,
        gre_key: None,
        src_ip: ip,
        src_port: 1000,
        dst_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
        dst_port: 4739,
    }
}

fn factory(hold_ms: u64) -> NetflowFactory {
    NetflowFactory::new(&NetflowConfig {
        hold_ms,
        ..NetflowConfig::default()
    })
    .expect("factory")
}

/// Every value has its column's type (or is null in a nullable column).
fn assert_typed(schema: &RecordSchema, rows: &[Vec<Value<'static>>]) {
    for row in rows {
        assert_eq!(row.len(), schema.columns.len());
        for (v, c) in row.iter().zip(&schema.columns) {
            let ok = match (v, c.ty) {
                (Value::Null, _) => c.nullable,
                (Value::U64(_), ColumnType::UInt64)
                | (Value::Ip(_), ColumnType::IpAddr)
                | (Value::Timestamp(_), ColumnType::Timestamp)
                | (Value::Str(_), ColumnType::String) => true,
                _ => false,
            };
            assert!(ok, "column {}: {v:?}", c.name);
        }
    }
}

fn v5() -> Vec<u8> {
    let flow = |i: u8| V5Flow {
        src: Ipv4Addr::new(192, 0, 2, i),
        dst: Ipv4Addr::new(203, 0, 113, i),
        next_hop: Ipv4Addr::UNSPECIFIED,
        input: 1,
        output: 2,
        packets: u32::from(i),
        bytes: 100 * u32::from(i),
        first_ms: 1000,
        last_ms: 2000,
        src_port: 1000 + u16::from(i),
        dst_port: 53,
        tcp_flags: 0,
        protocol: 17,
        tos: 0,
        src_as: 0,
        dst_as: 0,
        src_mask: 0,
        dst_mask: 0,
    };
    let header = V5Header {
        sys_uptime_ms: 5000,
        unix_secs: EXPORT_SECS,
        ..V5Header::default()
    };
    v5_packet(&header, &[flow(1), flow(2), flow(3)])
}

const IPFIX_FIELDS: [FieldSpec; 6] = [
    FieldSpec::new(27, 16),
    FieldSpec::new(28, 16),
    FieldSpec::new(152, 8),
    FieldSpec::new(1, 0xffff),
    FieldSpec::enterprise(9, 7, 0xffff),
    FieldSpec::new(4, 1),
];

fn ipfix_record(i: u8) -> Vec<u8> {
    RecordWriter::new()
        .ip(IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            0,
            u16::from(i),
        )))
        .ip(IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            1,
            0,
            0,
            0,
            0,
            u16::from(i),
        )))
        .u64(1_767_225_599_000)
        .varlen(&[i, 0], false)
        .varlen(&vec![i; usize::from(i) * 100], false)
        .u8(6)
        .finish()
}

/// Templates, an options template, options data and data (two records, one with a
/// 3-byte variable length).
fn ipfix_full() -> Vec<u8> {
    MessageBuilder::ipfix(EXPORT_SECS, 1, 1)
        .template_set(&[(256, &IPFIX_FIELDS)])
        .options_template_set(257, &[FieldSpec::new(143, 4)], &[FieldSpec::new(160, 8)])
        .data_set(
            257,
            &[RecordWriter::new().u32(1).u64(1_767_225_000_000).finish()],
        )
        .data_set(256, &[ipfix_record(1), ipfix_record(3)])
        .finish()
}

fn ipfix_data_only() -> Vec<u8> {
    MessageBuilder::ipfix(EXPORT_SECS, 2, 1)
        .data_set(256, &[ipfix_record(2), ipfix_record(1)])
        .finish()
}

/// A v9 packet and, per set, (end offset, rows of that set).
fn v9_full() -> (Vec<u8>, Vec<(usize, usize)>) {
    let fields = [
        FieldSpec::new(8, 4),
        FieldSpec::new(12, 4),
        FieldSpec::new(2, 4),
        FieldSpec::new(22, 4),
        FieldSpec::new(21, 4),
    ];
    let rec = |i: u8| {
        RecordWriter::new()
            .ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)))
            .ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, i)))
            .u32(u32::from(i))
            .u32(100)
            .u32(900)
            .finish()
    };
    let p = MessageBuilder::v9(1000, EXPORT_SECS, 1, 1)
        .template_set(&[(256, &fields)])
        .options_template_set(258, &[FieldSpec::new(1, 4)], &[FieldSpec::new(34, 4)])
        .data_set(256, &[rec(1), rec(2)])
        .data_set_padded(258, &[RecordWriter::new().u32(0).u32(10).finish()], true)
        .data_set_padded(256, &[rec(3)], true)
        .finish();
    // Walk the set headers of what was built.
    let (mut sets, mut offset) = (Vec::new(), 20);
    for rows in [0, 0, 2, 0, 1] {
        offset += usize::from(u16::from_be_bytes([p[offset + 2], p[offset + 3]]));
        sets.push((offset, rows));
    }
    assert_eq!(offset, p.len());
    (p, sets)
}

#[test]
fn every_truncation_of_v5_and_ipfix_is_an_error_without_rows() {
    let cases = [
        ("v5", v5(), false),
        ("ipfix", ipfix_full(), false),
        ("ipfix data", ipfix_data_only(), true),
    ];
    for (name, packet, needs_templates) in cases {
        for cut in 0..packet.len() {
            let f = factory(0);
            let mut d = f.build();
            if needs_templates {
                d.decode(&ctx(), &ipfix_full(), &mut Vec::new())
                    .expect("templates");
            }
            let mut rows = Vec::new();
            let err = d
                .decode(&ctx(), &packet[..cut], &mut rows)
                .expect_err(&format!("{name} cut at {cut}"));
            assert_eq!(err.kind, "truncated", "{name} cut at {cut}: {err}");
            assert!(rows.is_empty(), "{name} cut at {cut}");
        }
        let mut rows = Vec::new();
        let mut d = factory(0).build();
        if needs_templates {
            d.decode(&ctx(), &ipfix_full(), &mut Vec::new())
                .expect("templates");
        }
        let outcome = d.decode(&ctx(), &packet, &mut rows).expect("whole packet");
        assert_eq!(outcome.rows, if name == "v5" { 3 } else { 2 }, "{name}");
        assert_typed(d.schema(), &rows);
    }
}

#[test]
fn a_truncated_v9_packet_is_an_error_or_exactly_its_complete_sets() {
    let (packet, sets) = v9_full();
    for cut in 0..=packet.len() {
        let mut d = factory(0).build();
        let mut rows = Vec::new();
        let result = d.decode(&ctx(), &packet[..cut], &mut rows);
        // The last set boundary at or before the cut, and the rows of the sets before it.
        let (boundary, complete_rows) = sets
            .iter()
            .take_while(|(end, _)| *end <= cut)
            .fold((20, 0), |(_, n), (end, r)| (*end, n + r));
        if cut >= 20 && cut - boundary < 4 {
            let outcome = result.unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(
                (outcome.rows as usize, rows.len()),
                (complete_rows, complete_rows),
                "cut at {cut}"
            );
        } else {
            let err = result.expect_err(&format!("cut at {cut}"));
            assert_eq!(err.kind, "truncated", "cut at {cut}: {err}");
            assert!(rows.is_empty(), "cut at {cut}");
        }
    }
}

/// Decodes `packet` with a decoder that knows the test templates; checks the outcome.
fn decode_checked(packet: &[u8]) {
    let f = factory(2000);
    let mut d = f.build();
    d.decode(&ctx(), &ipfix_full(), &mut Vec::new())
        .expect("ipfix templates");
    d.decode(&ctx(), &v9_full().0, &mut Vec::new())
        .expect("v9 templates");
    let mut rows = Vec::new();
    match d.decode(&ctx(), packet, &mut rows) {
        Ok(outcome) => {
            assert_eq!(outcome.rows as usize, rows.len());
            assert!(!outcome.held || rows.is_empty());
        }
        Err(e) => {
            assert!(KINDS.contains(&e.kind), "{e}");
            assert!(e.offset <= packet.len(), "{e}");
            assert!(rows.is_empty());
        }
    }
    assert_typed(d.schema(), &rows);
    // Whatever was held is released or expired, once.
    let mut released = Vec::new();
    let completed = d.release(&mut released);
    assert_typed(d.schema(), &released);
    let expired = d.expire(T0 + 10_000_000, true);
    assert!(completed + expired <= 1);
    assert_eq!(f.held_packets(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(version in prop::sample::select(vec![5u16, 9, 10, 0x1234]), body in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut packet = version.to_be_bytes().to_vec();
        packet.extend_from_slice(&body);
        decode_checked(&packet);
    }

    #[test]
    fn mutated_packets_never_panic(
        which in 0usize..4,
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut packet = match which {
            0 => v5(),
            1 => ipfix_full(),
            2 => ipfix_data_only(),
            _ => v9_full().0,
        };
        for (at, byte) in mutations {
            let i = at.index(packet.len());
            packet[i] = byte;
        }
        decode_checked(&packet);
    }
}

// Regressions found by the fuzz target.

/// A v9 options template whose scope and option lengths add up past `u16::MAX` (fuzz
/// finding: an arithmetic overflow, a panic in debug builds).
#[test]
fn v9_options_template_lengths_beyond_u16_are_an_error() {
    let mut d = factory(0).build();
    let p = MessageBuilder::v9(0, EXPORT_SECS, 1, 1)
        .raw_set(1, &[1, 0, 0xff, 0xfc, 0xff, 0xfc, 0, 1, 0, 4])
        .finish();
    let err = d
        .decode(&ctx(), &p, &mut Vec::new())
        .expect_err("too many fields");
    assert_eq!(
        (err.kind, err.field_text().as_deref(), err.offset),
        ("truncated", Some("template field id"), 34)
    );
}
