//! Decoding header fields: every type, byte orders, offsets, bit fields, enums, text,
//! timestamps, skipped fields, truncation and trailing bytes.

use serde_json::json;

use super::{b, columns, decode, factory, fault, ip, one_row, s};
use crate::{BytesEncoding, ColumnType, Decoder, Value, layout::TRUNCATED};

#[test]
fn integers_in_both_byte_orders() {
    let f = factory(json!({
        "byte_order": "little",
        "fields": [
            { "name": "a", "type": "u8" },
            { "name": "b", "type": "u16" },
            { "name": "c", "type": "u32", "byte_order": "big" },
            { "name": "d", "type": "u64" },
            { "name": "e", "type": "i8" },
            { "name": "f", "type": "i16" },
            { "name": "g", "type": "i32", "byte_order": "big" },
            { "name": "h", "type": "i64" },
            { "name": "i", "type": "uint", "width": 2, "byte_order": "big" },
            { "name": "j", "type": "int", "width": 1 },
        ]
    }));
    let mut p = vec![0x01];
    p.extend(0x0203u16.to_le_bytes());
    p.extend(0x0405_0607u32.to_be_bytes());
    p.extend(0x0809_0a0b_0c0d_0e0fu64.to_le_bytes());
    p.extend((-2i8).to_le_bytes());
    p.extend((-300i16).to_le_bytes());
    p.extend((-70_000i32).to_be_bytes());
    p.extend(i64::MIN.to_le_bytes());
    p.extend(0xfffeu16.to_be_bytes());
    p.extend((-128i8).to_le_bytes());
    assert_eq!(p.len(), 33);
    assert_eq!(
        one_row(&f, &p),
        vec![
            Value::U64(1),
            Value::U64(0x0203),
            Value::U64(0x0405_0607),
            Value::U64(0x0809_0a0b_0c0d_0e0f),
            Value::I64(-2),
            Value::I64(-300),
            Value::I64(-70_000),
            Value::I64(i64::MIN),
            Value::U64(0xfffe),
            Value::I64(-128),
        ]
    );
    let types: Vec<ColumnType> = columns(&f).into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(types[..4], [ColumnType::UInt64; 4]);
    assert_eq!(types[4..8], [ColumnType::Int64; 4]);
    assert!(columns(&f).iter().all(|(_, _, nullable)| !nullable));
}

#[test]
fn fixed_and_following_offsets() {
    let f = factory(json!({ "fields": [
        { "name": "a", "type": "u8", "offset": 2 },
        { "name": "b", "type": "u16" },
        { "name": "c", "type": "u8", "offset": 10 },
    ] }));
    let p = [0, 0, 7, 0x12, 0x34, 0, 0, 0, 0, 0, 9];
    assert_eq!(
        one_row(&f, &p),
        vec![Value::U64(7), Value::U64(0x1234), Value::U64(9)]
    );
    // The first field the payload lacks is named, at its offset.
    let err = decode(&f, &p[..10]).expect_err("short");
    assert_eq!(fault(err.clone()), (TRUNCATED, Some("c".into()), 10));
    assert_eq!(
        err.message(),
        "the payload ends at byte 10; the layout needs 11 bytes"
    );
    assert_eq!(
        fault(decode(&f, &p[..4]).expect_err("short")),
        (TRUNCATED, Some("b".into()), 3)
    );
    assert_eq!(
        fault(decode(&f, &[]).expect_err("empty")),
        (TRUNCATED, Some("a".into()), 2)
    );
}

#[test]
fn addresses_ignore_the_layout_byte_order() {
    let f = factory(json!({
        "byte_order": "little",
        "fields": [
            { "name": "src", "type": "ipv4" },
            { "name": "le_src", "type": "ipv4", "byte_order": "little" },
            { "name": "be_src", "type": "ipv4", "byte_order": "big" },
            { "name": "v6", "type": "ipv6" },
            { "name": "hw", "type": "mac" },
        ]
    }));
    let mut p = vec![192, 0, 2, 1, 1, 2, 0, 192, 198, 51, 100, 7];
    p.extend(
        "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .expect("v6")
            .octets(),
    );
    p.extend([0x00, 0x1b, 0x21, 0xaa, 0xbb, 0xcc]);
    assert_eq!(
        one_row(&f, &p),
        vec![
            ip("192.0.2.1"),
            ip("192.0.2.1"),
            ip("198.51.100.7"),
            ip("2001:db8::1"),
            Value::Mac([0x00, 0x1b, 0x21, 0xaa, 0xbb, 0xcc]),
        ]
    );
    let types: Vec<ColumnType> = columns(&f).into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(
        types,
        [
            ColumnType::IpAddr,
            ColumnType::IpAddr,
            ColumnType::IpAddr,
            ColumnType::IpAddr,
            ColumnType::MacAddr
        ]
    );
}

#[test]
fn bytes_borrow_from_the_payload() {
    let f = factory(json!({ "fields": [
        { "name": "serial", "type": "bytes", "length": 4 },
        { "name": "key", "type": "bytes", "length": 3, "encoding": "base64" },
    ] }));
    let p = [0xde, 0xad, 0xbe, 0xef, 1, 2, 3];
    assert_eq!(one_row(&f, &p), vec![b(&p[..4]), b(&p[4..])]);
    assert_eq!(
        columns(&f),
        vec![
            (
                "serial".into(),
                ColumnType::Bytes(BytesEncoding::Hex),
                false
            ),
            (
                "key".into(),
                ColumnType::Bytes(BytesEncoding::Base64),
                false
            ),
        ]
    );
    // Borrowed, not copied: the value points into the payload.
    let mut d = f.decoder();
    let mut checked = false;
    let mut sink = |values: &[Value<'_>]| {
        if let Value::Bytes(std::borrow::Cow::Borrowed(bytes)) = &values[0] {
            assert_eq!(bytes.as_ptr(), p.as_ptr());
            checked = true;
        }
    };
    let mut adapter = FnSink(&mut sink);
    d.decode(&super::ctx(), &p, &mut adapter).expect("decodes");
    assert!(checked, "bytes are borrowed");
}

/// A sink calling a closure.
struct FnSink<'f>(&'f mut dyn FnMut(&[Value<'_>]));

impl crate::RowSink for FnSink<'_> {
    fn row(&mut self, _ctx: &crate::PacketContext, values: &[Value<'_>]) {
        (self.0)(values)
    }
}

#[test]
fn text_ends_at_nul_and_is_trimmed() {
    let f = factory(json!({ "fields": [
        { "name": "a", "type": "text", "length": 12 },
        { "name": "b", "type": "text", "length": 8, "charset": "ascii" },
        { "name": "c", "type": "text", "length": 3 },
    ] }));
    let mut p = "héllo".as_bytes().to_vec();
    p.extend([0, 0xff, b'j', b'u', b'n', b'k']); // garbage after the NUL is ignored
    p.extend(b"  ab c  ");
    p.extend([0, 0, 0]);
    assert_eq!(one_row(&f, &p), vec![s("héllo"), s("ab c"), s("")]);

    // Invalid UTF-8: the offset of the first bad byte.
    let mut bad = p.clone();
    bad[1] = 0xff;
    let err = decode(&f, &bad).expect_err("bad utf-8");
    assert_eq!(fault(err.clone()), ("bad_text", Some("a".into()), 1));
    assert_eq!(
        err.message(),
        "byte 1 of the field is not valid text in its charset"
    );
    // Non-ASCII in an ASCII field.
    let mut bad = p.clone();
    bad[15] = 0xc3;
    bad[16] = 0xa9;
    assert_eq!(
        fault(decode(&f, &bad).expect_err("not ascii")),
        ("bad_text", Some("b".into()), 15)
    );
}

#[test]
fn bit_fields_share_bytes() {
    let f = factory(json!({ "fields": [
        { "name": "alarm", "type": "u8", "mask": 0x80 },
        { "name": "mode", "type": "u8", "offset": 0, "mask": 0x70 },
        { "name": "level", "type": "u8", "offset": 0, "mask": 0x0c, "enum": { "0": "off", "1": "low", "2": "high" } },
        { "name": "raw_low", "type": "u8", "offset": 0, "mask": 0x03, "shift": 0 },
        { "name": "seq", "type": "u16" },
        { "name": "hi", "type": "u16", "byte_order": "little", "mask": 0xff00 },
        { "name": "scaled", "type": "u16", "offset": 3, "byte_order": "little", "mask": 0x00f0, "shift": 2 },
    ] }));
    // 1 101 10 11: alarm, mode 5, level 2, low bits 3.
    let p = [0b1101_1011, 0x01, 0x02, 0x5a, 0xa5];
    assert_eq!(
        one_row(&f, &p),
        vec![
            Value::Bool(true),
            Value::U64(5),
            s("high"),
            Value::U64(3),
            Value::U64(0x0102),
            Value::U64(0xa5),
            Value::U64(0x50 >> 2),
        ]
    );
    assert_eq!(
        one_row(&f, &[0, 0, 0, 0, 0]),
        vec![
            Value::Bool(false),
            Value::U64(0),
            s("off"),
            Value::U64(0),
            Value::U64(0),
            Value::U64(0),
            Value::U64(0),
        ]
    );
    let types: Vec<ColumnType> = columns(&f).into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(
        types[..3],
        [ColumnType::Bool, ColumnType::UInt64, ColumnType::String]
    );
}

#[test]
fn enums_and_unknown_values() {
    let f = factory(json!({ "fields": [
        { "name": "status", "type": "u8", "enum": { "0": "ok", "1": "warn", "0xff": "broken" } },
        { "name": "maybe", "type": "u8", "enum": { "1": "one" }, "on_unknown": "null" },
        { "name": "sign", "type": "i8", "enum": { "-1": "negative", "1": "positive" } },
    ] }));
    assert_eq!(
        one_row(&f, &[0xff, 1, 0xff]),
        vec![s("broken"), s("one"), s("negative")]
    );
    assert_eq!(one_row(&f, &[7, 2, 0]), vec![s("7"), Value::Null, s("0")]);
    assert_eq!(
        columns(&f),
        vec![
            ("status".into(), ColumnType::String, false),
            ("maybe".into(), ColumnType::String, true),
            ("sign".into(), ColumnType::String, false),
        ]
    );
    let strict = factory(json!({ "fields": [
        { "name": "pad", "type": "u8", "skip": true },
        { "name": "status", "type": "u8", "enum": { "0": "ok" }, "on_unknown": "error" },
    ] }));
    let err = decode(&strict, &[0, 3]).expect_err("unknown");
    assert_eq!(
        fault(err.clone()),
        ("unknown_enum", Some("status".into()), 1)
    );
    assert_eq!(err.message(), "3 has no name");
}

#[test]
fn timestamps() {
    let f = factory(json!({ "fields": [
        { "name": "s", "type": "u32", "timestamp": "seconds" },
        { "name": "ms", "type": "u64", "timestamp": "millis" },
        { "name": "us", "type": "i64", "timestamp": "micros" },
        { "name": "ns", "type": "u64", "timestamp": "nanos" },
    ] }));
    let mut p = 1_795_328_725u32.to_be_bytes().to_vec();
    p.extend(1_795_328_725_123u64.to_be_bytes());
    p.extend((-1_000_001i64).to_be_bytes());
    p.extend(1_795_328_725_123_456_789u64.to_be_bytes());
    assert_eq!(
        one_row(&f, &p),
        vec![
            Value::Timestamp(1_795_328_725_000_000),
            Value::Timestamp(1_795_328_725_123_000),
            Value::Timestamp(-1_000_001),
            Value::Timestamp(1_795_328_725_123_456),
        ]
    );
    assert!(
        columns(&f)
            .iter()
            .all(|(_, t, _)| *t == ColumnType::Timestamp)
    );
    let far =
        factory(json!({ "fields": [{ "name": "s", "type": "u64", "timestamp": "seconds" }] }));
    let err = decode(&far, &u64::MAX.to_be_bytes()).expect_err("too far");
    assert_eq!(fault(err), ("bad_timestamp", Some("s".into()), 0));
}

#[test]
fn floats() {
    let f = factory(json!({ "fields": [
        { "name": "a", "type": "f32" },
        { "name": "b", "type": "f64", "byte_order": "little" },
        { "name": "c", "type": "float", "width": 4, "byte_order": "little" },
    ] }));
    let mut p = 1.5f32.to_be_bytes().to_vec();
    p.extend((-0.25f64).to_le_bytes());
    p.extend(1e-3f32.to_le_bytes());
    assert_eq!(
        one_row(&f, &p),
        vec![
            Value::F64(1.5),
            Value::F64(-0.25),
            Value::F64(f64::from(1e-3f32))
        ]
    );
    assert!(
        columns(&f)
            .iter()
            .all(|(_, t, _)| *t == ColumnType::Float64)
    );
}

#[test]
fn skipped_fields_are_read_past_but_not_columns() {
    let f = factory(json!({ "fields": [
        { "name": "a", "type": "u8" },
        { "name": "reserved", "type": "bytes", "length": 3, "skip": true },
        { "name": "b", "type": "u8" },
        { "name": "tail", "type": "u16", "skip": true },
    ] }));
    assert_eq!(
        columns(&f),
        vec![
            ("a".into(), ColumnType::UInt64, false),
            ("b".into(), ColumnType::UInt64, false),
        ]
    );
    assert_eq!(
        one_row(&f, &[1, 9, 9, 9, 2, 0, 0]),
        vec![Value::U64(1), Value::U64(2)]
    );
    // A payload without the trailing reserved bytes does not fit the layout.
    assert_eq!(
        fault(decode(&f, &[1, 9, 9, 9, 2, 0]).expect_err("short")),
        (TRUNCATED, Some("tail".into()), 5)
    );
    assert_eq!(
        fault(decode(&f, &[1, 9]).expect_err("short")),
        (TRUNCATED, Some("reserved".into()), 1)
    );
}

#[test]
fn trailing_bytes() {
    let fields = json!([{ "name": "a", "type": "u16" }]);
    let lax = factory(json!({ "fields": fields }));
    assert_eq!(one_row(&lax, &[0, 1, 2, 3]), vec![Value::U64(1)]);
    let strict = factory(json!({ "fields": fields, "trailing_bytes": "reject" }));
    assert_eq!(one_row(&strict, &[0, 1]), vec![Value::U64(1)]);
    let err = decode(&strict, &[0, 1, 2, 3]).expect_err("trailing");
    assert_eq!(fault(err.clone()), ("trailing_bytes", None, 2));
    assert_eq!(err.message(), "2 bytes after the end of the layout");
}

#[test]
fn scratch_buffers_are_reused() {
    let f = factory(json!({
        "fields": [{ "name": "n", "type": "u8" }],
        "group": { "count": "n", "fields": [{ "name": "v", "type": "text", "length": 2 }] }
    }));
    let mut d = f.decoder();
    let mut rows = super::Rows::new();
    d.decode(&super::ctx(), &[2, b'a', b'b', b'c', 0], &mut rows)
        .expect("decodes");
    assert_eq!(
        rows,
        vec![vec![Value::U64(2), s("ab")], vec![Value::U64(2), s("c")]]
    );
    let (row, elems) = (d.row.as_ptr(), d.elems.as_ptr());
    assert!(d.row.is_empty() && d.row.capacity() >= 2);
    assert!(d.elems.is_empty() && d.elems.capacity() >= 2);
    for _ in 0..3 {
        d.decode(&super::ctx(), &[1, b'x', b'y'], &mut rows)
            .expect("decodes");
    }
    assert_eq!(d.row.as_ptr(), row, "row buffer kept");
    assert_eq!(d.elems.as_ptr(), elems, "element buffer kept");
    assert_eq!(d.schema().columns.len(), 2);
}
