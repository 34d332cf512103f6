//! The netflow decoder on hand-built IPFIX messages: enterprise-specific elements (kept in
//! `extra`), variable-length fields in both length forms, every time element (seconds,
//! milliseconds, NTP micro/nanoseconds, sysUpTime with systemInitTimeMilliseconds from
//! options data, deltas, durations), template withdrawal (one, all, options), template
//! expiry and revival, and templates that must be refused. Each case asserts exact values.

use std::net::{IpAddr, Ipv4Addr};

use sluice_decode::netflow::encode::{FieldSpec, MessageBuilder, RecordWriter};
use sluice_decode::netflow::{NetflowConfig, NetflowFactory, NetflowStats};
use sluice_decode::{DecodeError, DecodeOutcome, Decoder, DecoderFactory, PacketContext, Value};

/// 2026-01-01T00:00:00Z.
const EXPORT_SECS: u32 = 1_767_225_600;
const EXPORT_US: i64 = 1_767_225_600_000_000;
/// Seconds from 1900 (NTP) to 1970.
const NTP_OFFSET: u64 = 2_208_988_800;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn ctx_at(received_at: i64) -> PacketContext {
    PacketContext {
        received_at,
        tunnel_src: Some(v4(192, 0, 2, 20)),
        tunnel_dst: Some(v4(192, 0, 2, 1)),
        gre_key: Some(9),
        src_ip: v4(198, 51, 100, 1),
        src_port: 50_000,
        dst_ip: v4(198, 51, 100, 2),
        dst_port: 4739,
    }
}

fn ctx() -> PacketContext {
    ctx_at(EXPORT_US)
}

fn no_hold() -> NetflowFactory {
    NetflowFactory::new(&NetflowConfig {
        hold_ms: 0,
        ..NetflowConfig::default()
    })
    .expect("factory")
}

fn decode(
    d: &mut dyn Decoder,
    c: &PacketContext,
    p: &[u8],
) -> Result<(DecodeOutcome, Vec<Vec<Value<'static>>>), DecodeError> {
    let mut rows = Vec::new();
    let outcome = d.decode(c, p, &mut rows)?;
    Ok((outcome, rows))
}

/// The values of the named columns of each row.
fn columns(
    d: &dyn Decoder,
    rows: &[Vec<Value<'static>>],
    names: &[&str],
) -> Vec<Vec<Value<'static>>> {
    let idx: Vec<usize> = names
        .iter()
        .map(|n| d.schema().index_of(n).expect(n))
        .collect();
    rows.iter()
        .map(|r| idx.iter().map(|&i| r[i].clone()).collect())
        .collect()
}

#[test]
fn enterprise_elements_and_variable_length_fields() {
    let fields = [
        FieldSpec::new(8, 4),
        FieldSpec::new(12, 4),
        FieldSpec::new(4, 1),
        FieldSpec::new(152, 8),
        FieldSpec::new(153, 8),
        FieldSpec::enterprise(29_305, 1, 8),
        FieldSpec::new(82, 0xffff), // interfaceName: IANA, not a column: skipped
        FieldSpec::enterprise(9, 12_235, 0xffff),
        FieldSpec::new(1, 0xffff), // octetDeltaCount, variable length (reduced size)
    ];
    let long_name = vec![b'x'; 300];
    let records = [
        RecordWriter::new()
            .ip(v4(192, 0, 2, 1))
            .ip(v4(203, 0, 113, 1))
            .u8(6)
            .u64(1_767_225_599_000)
            .u64(1_767_225_599_750)
            .u64(1000)
            .varlen(b"eth0", false)
            .varlen(&[0xab, 0xcd], false)
            .varlen(&[0x01, 0x00], false)
            .finish(),
        RecordWriter::new()
            .ip(v4(192, 0, 2, 2))
            .ip(v4(203, 0, 113, 2))
            .u8(17)
            .u64(1_767_225_598_000)
            .u64(1_767_225_598_001)
            .u64(0)
            .varlen(&long_name, false)
            .varlen(&[], true)
            .varlen(&[0xff; 8], true)
            .finish(),
    ];
    let p = MessageBuilder::ipfix(EXPORT_SECS, 1, 3)
        .template_set(&[(300, &fields)])
        .data_set(300, &records)
        .finish();
    let f = no_hold();
    let mut d = f.build();
    let (outcome, rows) = decode(d.as_mut(), &ctx(), &p).expect("decodes");
    assert_eq!(
        outcome,
        DecodeOutcome {
            rows: 2,
            held: false
        }
    );
    assert_eq!(
        columns(
            d.as_ref(),
            &rows,
            &[
                "version",
                "exported_at",
                "observation_domain_id",
                "src_addr",
                "dst_addr",
                "protocol",
                "bytes",
                "flow_start",
                "flow_end",
                "extra"
            ]
        ),
        [
            vec![
                Value::U64(10),
                Value::Timestamp(EXPORT_US),
                Value::U64(3),
                Value::Ip(v4(192, 0, 2, 1)),
                Value::Ip(v4(203, 0, 113, 1)),
                Value::U64(6),
                Value::U64(256),
                Value::Timestamp(1_767_225_599_000_000),
                Value::Timestamp(1_767_225_599_750_000),
                Value::Str("29305:1=00000000000003e8,9:12235=abcd".into()),
            ],
            vec![
                Value::U64(10),
                Value::Timestamp(EXPORT_US),
                Value::U64(3),
                Value::Ip(v4(192, 0, 2, 2)),
                Value::Ip(v4(203, 0, 113, 2)),
                Value::U64(17),
                Value::U64(u64::MAX),
                Value::Timestamp(1_767_225_598_000_000),
                Value::Timestamp(1_767_225_598_001_000),
                Value::Str("29305:1=0000000000000000,9:12235=".into()),
            ],
        ]
    );
    // A variable-length integer longer than 8 bytes does not fit its column.
    let bad = MessageBuilder::ipfix(EXPORT_SECS, 2, 3)
        .data_set(
            300,
            &[RecordWriter::new()
                .ip(v4(192, 0, 2, 1))
                .ip(v4(203, 0, 113, 1))
                .u8(6)
                .u64(0)
                .u64(0)
                .u64(0)
                .varlen(b"", false)
                .varlen(b"", false)
                .varlen(&[1; 9], false)
                .finish()],
        )
        .finish();
    let err = decode(d.as_mut(), &ctx(), &bad).expect_err("9-byte counter");
    assert_eq!(
        (
            err.kind,
            err.field_text().as_deref(),
            err.offset,
            err.message().as_str()
        ),
        (
            "bad_value",
            Some("template 300 element 1"),
            56,
            "value of 9 bytes, accepted 1 to 8"
        )
    );
}

#[test]
fn every_time_element_is_converted() {
    let ntp = |unix_us: u64| {
        let secs = unix_us / 1_000_000 + NTP_OFFSET;
        let frac = ((unix_us % 1_000_000) << 32) / 1_000_000 + 1; // round up: exact back
        (secs << 32) | frac
    };
    let templates: [(u16, &[FieldSpec]); 6] = [
        (400, &[FieldSpec::new(150, 4), FieldSpec::new(151, 4)]),
        (401, &[FieldSpec::new(154, 8), FieldSpec::new(155, 8)]),
        (402, &[FieldSpec::new(156, 8), FieldSpec::new(157, 8)]),
        (403, &[FieldSpec::new(158, 4), FieldSpec::new(159, 4)]),
        (404, &[FieldSpec::new(152, 8), FieldSpec::new(161, 4)]),
        (405, &[FieldSpec::new(153, 8), FieldSpec::new(162, 4)]),
    ];
    let p = MessageBuilder::ipfix(EXPORT_SECS, 1, 3)
        .template_set(&templates)
        .data_set(
            400,
            &[RecordWriter::new()
                .u32(EXPORT_SECS - 10)
                .u32(EXPORT_SECS - 1)
                .finish()],
        )
        .data_set(
            401,
            &[RecordWriter::new()
                .u64(ntp(1_767_225_590_250_000))
                .u64(ntp(1_767_225_599_999_999))
                .finish()],
        )
        .data_set(
            402,
            &[RecordWriter::new()
                .u64(ntp(1_767_225_590_000_001))
                .u64(ntp(1_767_225_591_000_000))
                .finish()],
        )
        .data_set(
            403,
            &[RecordWriter::new().u32(3_000_000).u32(1_500).finish()],
        )
        .data_set(
            404,
            &[RecordWriter::new()
                .u64(1_767_225_580_000)
                .u32(2_500)
                .finish()],
        )
        .data_set(
            405,
            &[RecordWriter::new().u64(1_767_225_580_000).u32(250).finish()],
        )
        .finish();
    let mut d = no_hold().build();
    let (_, rows) = decode(d.as_mut(), &ctx(), &p).expect("decodes");
    let t = Value::Timestamp;
    assert_eq!(
        columns(d.as_ref(), &rows, &["flow_start", "flow_end"]),
        [
            vec![t(1_767_225_590_000_000), t(1_767_225_599_000_000)],
            vec![t(1_767_225_590_250_000), t(1_767_225_599_999_999)],
            vec![t(1_767_225_590_000_001), t(1_767_225_591_000_000)],
            vec![t(EXPORT_US - 3_000_000), t(EXPORT_US - 1_500)],
            vec![t(1_767_225_580_000_000), t(1_767_225_582_500_000)],
            vec![t(1_767_225_579_999_750), t(1_767_225_580_000_000)],
        ]
    );
}

fn sysuptime_templates() -> MessageBuilder {
    MessageBuilder::ipfix(EXPORT_SECS, 1, 3)
        .template_set(&[(
            256,
            &[
                FieldSpec::new(8, 4),
                FieldSpec::new(22, 4),
                FieldSpec::new(21, 4),
            ],
        )])
        .options_template_set(
            257,
            &[FieldSpec::new(143, 4)],
            &[FieldSpec::new(160, 8), FieldSpec::new(305, 4)],
        )
}

#[test]
fn sysuptime_times_are_anchored_on_options_data() {
    let init_ms: u64 = 1_767_225_000_000;
    let flow = |start: u32, end: u32| {
        RecordWriter::new()
            .ip(v4(192, 0, 2, 1))
            .u32(start)
            .u32(end)
            .finish()
    };
    let f = no_hold();
    let mut d = f.build();
    // Flows before any options data: relative times cannot be placed.
    let p = sysuptime_templates()
        .data_set(256, &[flow(1_000, 2_000)])
        .finish();
    let (_, rows) = decode(d.as_mut(), &ctx(), &p).expect("decodes");
    assert_eq!(
        columns(
            d.as_ref(),
            &rows,
            &["flow_start", "flow_end", "sampling_interval"]
        ),
        [vec![Value::Null, Value::Null, Value::Null]]
    );
    // Options data in the same packet anchors them, and sets the sampling interval.
    let p = MessageBuilder::ipfix(EXPORT_SECS, 2, 3)
        .data_set(
            257,
            &[RecordWriter::new().u32(1).u64(init_ms).u32(64).finish()],
        )
        .data_set(256, &[flow(1_000, 2_000)])
        .finish();
    let (outcome, rows) = decode(d.as_mut(), &ctx(), &p).expect("decodes");
    assert_eq!(outcome.rows, 1);
    let expected = vec![
        Value::Timestamp(1_767_225_001_000_000),
        Value::Timestamp(1_767_225_002_000_000),
        Value::U64(64),
    ];
    assert_eq!(
        columns(
            d.as_ref(),
            &rows,
            &["flow_start", "flow_end", "sampling_interval"]
        ),
        std::slice::from_ref(&expected)
    );
    // Later packets, on any worker, use the exporter's options.
    let mut other = f.build();
    let p = MessageBuilder::ipfix(EXPORT_SECS, 3, 3)
        .data_set(256, &[flow(1_000, 2_000)])
        .finish();
    let (_, rows) = decode(other.as_mut(), &ctx(), &p).expect("decodes");
    assert_eq!(
        columns(
            other.as_ref(),
            &rows,
            &["flow_start", "flow_end", "sampling_interval"]
        ),
        [expected]
    );
    assert_eq!(f.stats().options_records, 1);
}

#[test]
fn withdrawals_remove_one_template_all_templates_or_options_templates() {
    let f = no_hold();
    let mut d = f.build();
    let data = |id: u16| {
        MessageBuilder::ipfix(EXPORT_SECS, 9, 3)
            .data_set(id, &[vec![6]])
            .finish()
    };
    let setup = MessageBuilder::ipfix(EXPORT_SECS, 1, 3)
        .template_set(&[
            (300, &[FieldSpec::new(4, 1)]),
            (301, &[FieldSpec::new(4, 1)]),
        ])
        .options_template_set(302, &[FieldSpec::new(143, 1)], &[FieldSpec::new(305, 1)])
        .finish();
    let known = |d: &mut dyn Decoder, id| decode(d, &ctx(), &data(id)).map(|(o, _)| o.rows);
    decode(d.as_mut(), &ctx(), &setup).expect("templates");
    assert_eq!(
        (
            known(d.as_mut(), 300),
            known(d.as_mut(), 301),
            known(d.as_mut(), 302)
        ),
        (Ok(1), Ok(1), Ok(0))
    );

    // Data before a withdrawal in the same message still uses the template.
    let p = MessageBuilder::ipfix(EXPORT_SECS, 2, 3)
        .data_set(300, &[vec![17]])
        .withdrawal_set(false, &[300])
        .finish();
    assert_eq!(decode(d.as_mut(), &ctx(), &p).expect("decodes").0.rows, 1);
    assert_eq!(
        known(d.as_mut(), 300).map_err(|e| e.kind),
        Err("no_template")
    );
    assert_eq!(known(d.as_mut(), 301), Ok(1));

    // Withdraw all data templates (id 2): the options template stays.
    let p = MessageBuilder::ipfix(EXPORT_SECS, 3, 3)
        .withdrawal_set(false, &[2])
        .finish();
    decode(d.as_mut(), &ctx(), &p).expect("withdraws");
    assert_eq!(
        known(d.as_mut(), 301).map_err(|e| e.kind),
        Err("no_template")
    );
    assert_eq!(known(d.as_mut(), 302), Ok(0));

    // Withdraw all options templates (id 3 in an options template set).
    let p = MessageBuilder::ipfix(EXPORT_SECS, 4, 3)
        .withdrawal_set(true, &[3])
        .finish();
    decode(d.as_mut(), &ctx(), &p).expect("withdraws");
    assert_eq!(
        known(d.as_mut(), 302).map_err(|e| e.kind),
        Err("no_template")
    );

    // A template defined after its withdrawal in one message is usable again.
    let p = MessageBuilder::ipfix(EXPORT_SECS, 5, 3)
        .withdrawal_set(false, &[300])
        .template_set(&[(300, &[FieldSpec::new(4, 1)])])
        .data_set(300, &[vec![1]])
        .finish();
    assert_eq!(decode(d.as_mut(), &ctx(), &p).expect("decodes").0.rows, 1);
    let stats = f.stats();
    assert_eq!((stats.templates_learned, stats.templates_withdrawn), (4, 3));
}

#[test]
fn templates_expire_without_refresh_and_come_back_with_one() {
    let f = NetflowFactory::new(&NetflowConfig {
        template_timeout_secs: 10,
        hold_ms: 0,
        ..NetflowConfig::default()
    })
    .expect("factory");
    let mut d = f.build();
    let template = MessageBuilder::ipfix(EXPORT_SECS, 1, 3)
        .template_set(&[(300, &[FieldSpec::new(4, 1)])])
        .finish();
    let data = MessageBuilder::ipfix(EXPORT_SECS, 2, 3)
        .data_set(300, &[vec![6]])
        .finish();
    decode(d.as_mut(), &ctx_at(EXPORT_US), &template).expect("template");
    // Exactly at the timeout it is still known; one microsecond later it is not.
    let at_timeout = ctx_at(EXPORT_US + 10_000_000);
    assert_eq!(
        decode(d.as_mut(), &at_timeout, &data)
            .expect("known")
            .0
            .rows,
        1
    );
    let late = ctx_at(EXPORT_US + 10_000_001);
    assert_eq!(
        decode(d.as_mut(), &late, &data).expect_err("expired").kind,
        "no_template"
    );
    // A refresh (the same bytes) revives it.
    decode(d.as_mut(), &late, &template).expect("refresh");
    assert_eq!(decode(d.as_mut(), &late, &data).expect("revived").0.rows, 1);
    assert_eq!(f.exporters(), 1);
    // The sweep (run by expire, at most once a second) forgets it and the idle exporter.
    assert_eq!(d.expire(EXPORT_US + 20_000_002, false), 0);
    assert_eq!(f.exporters(), 0);
    assert_eq!(
        f.stats(),
        NetflowStats {
            templates_learned: 1,
            templates_expired: 1,
            ..NetflowStats::default()
        }
    );
    assert_eq!(
        decode(d.as_mut(), &late, &data).expect_err("swept").kind,
        "no_template"
    );
}

#[test]
fn unusable_templates_are_refused_and_nothing_of_their_packet_is_applied() {
    let good = [FieldSpec::new(4, 1)];
    let cases: Vec<(MessageBuilder, usize, &str)> = vec![
        (
            MessageBuilder::ipfix(EXPORT_SECS, 1, 3).template_set(&[(300, &good), (255, &good)]),
            28,
            "template id 255 is below 256",
        ),
        (
            MessageBuilder::ipfix(EXPORT_SECS, 1, 3)
                .template_set(&[(300, &good), (301, &[FieldSpec::new(4, 0)])]),
            32,
            "element 4 has length 0",
        ),
        (
            MessageBuilder::ipfix(EXPORT_SECS, 1, 3)
                .template_set(&[(300, &good), (301, &[FieldSpec::new(8, 5)])]),
            32,
            "element 8 has length 5, accepted 4 to 4",
        ),
        (
            MessageBuilder::ipfix(EXPORT_SECS, 1, 3)
                .template_set(&[(300, &good), (301, &[FieldSpec::new(154, 0xffff)])]),
            32,
            "element 154 cannot be variable-length",
        ),
        (
            MessageBuilder::ipfix(EXPORT_SECS, 1, 3)
                .template_set(&[(300, &good)])
                .raw_set(3, &[1, 45, 0, 1, 0, 0, 0, 4, 0, 1]),
            32,
            "options template 301: scope field count 0 of 1 fields",
        ),
        (
            MessageBuilder::v9(0, EXPORT_SECS, 1, 3)
                .template_set(&[(300, &good)])
                .raw_set(0, &[1, 45, 0, 0]),
            36,
            "template 301 has no fields",
        ),
        (
            MessageBuilder::v9(0, EXPORT_SECS, 1, 3)
                .template_set(&[(300, &good)])
                .raw_set(1, &[1, 45, 0, 2, 0, 4, 0, 1, 0, 4, 0, 34, 0, 4]),
            36,
            "options template 301: scope length 2 and option length 4 must be non-zero multiples of 4",
        ),
    ];
    for (i, (builder, offset, message)) in cases.into_iter().enumerate() {
        let f = no_hold();
        let mut d = f.build();
        let p = builder.finish();
        let err = decode(d.as_mut(), &ctx(), &p).expect_err("bad template");
        assert_eq!(
            (
                err.kind,
                err.field_text().as_deref(),
                err.offset,
                err.message().as_str()
            ),
            ("bad_template", Some("template"), offset, message),
            "case {i}"
        );
        assert_eq!(
            (f.exporters(), f.stats().templates_learned),
            (0, 0),
            "case {i}"
        );
    }
}

#[test]
fn message_and_set_lengths_are_checked() {
    let mut d = no_hold().build();
    let p = MessageBuilder::ipfix(EXPORT_SECS, 1, 3)
        .template_set(&[(300, &[FieldSpec::new(4, 1)])])
        .finish();
    let mut longer = p.clone();
    longer.push(0);
    let err = decode(d.as_mut(), &ctx(), &longer).expect_err("longer than length");
    assert_eq!(
        (err.kind, err.offset, err.message().as_str()),
        ("bad_length", 2, "message length 28, payload 29 bytes")
    );
    let mut short_set = p.clone();
    short_set[18..20].copy_from_slice(&3u16.to_be_bytes());
    let err = decode(d.as_mut(), &ctx(), &short_set).expect_err("set length 3");
    assert_eq!(
        (err.kind, err.offset, err.message().as_str()),
        ("bad_length", 18, "set 2 has length 3")
    );
    let mut long_set = p;
    long_set[18..20].copy_from_slice(&13u16.to_be_bytes());
    let err = decode(d.as_mut(), &ctx(), &long_set).expect_err("set past the end");
    assert_eq!(
        (err.kind, err.offset, err.message().as_str()),
        ("truncated", 18, "set 2 of 13 bytes, 12 left in the packet")
    );
}
