//! Variants chosen by a discriminator: the union schema, each variant's rows, unknown
//! values, groups inside and after variants.

use serde_json::json;

use super::{columns, decode, factory, fault, one_row, s};
use crate::{
    ColumnType, Value,
    layout::{LayoutFactory, TRUNCATED, UNKNOWN_VARIANT},
};

/// An ACME-SENSOR-like layout: readings (with a group), alarms, heartbeats.
pub(super) fn acme(unknown: &str) -> LayoutFactory {
    factory(json!({
        "fields": [
            { "name": "version", "type": "u8" },
            { "name": "kind", "type": "u8", "enum": { "1": "readings", "2": "alarm", "3": "heartbeat" } },
            { "name": "device", "type": "mac" },
            { "name": "seq", "type": "u32" },
            { "name": "time", "type": "u32", "timestamp": "seconds" },
        ],
        "discriminator": "kind",
        "unknown_variant": unknown,
        "variants": [
            {
                "values": [1],
                "fields": [
                    { "name": "n", "type": "u8" },
                    { "name": "pad", "type": "u8", "skip": true },
                ],
                "group": { "count": "n", "fields": [
                    { "name": "sensor", "type": "u8" },
                    { "name": "status", "type": "u8", "mask": 0x0f, "enum": { "0": "ok", "1": "warn", "2": "fail" } },
                    { "name": "alarm", "type": "u8", "offset": 1, "mask": 0x80 },
                    { "name": "value", "type": "i16" },
                ] }
            },
            {
                "values": [2],
                "fields": [
                    { "name": "code", "type": "u16" },
                    { "name": "message", "type": "text", "length": 8 },
                    { "name": "value", "type": "i16" },
                ]
            },
            { "values": [3, 4] },
        ]
    }))
}

fn header(kind: u8) -> Vec<u8> {
    let mut p = vec![2, kind, 0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c];
    p.extend(77u32.to_be_bytes());
    p.extend(1_795_328_725u32.to_be_bytes());
    p
}

fn header_values(kind: &str) -> Vec<Value<'static>> {
    vec![
        Value::U64(2),
        s(kind),
        Value::Mac([0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c]),
        Value::U64(77),
        Value::Timestamp(1_795_328_725_000_000),
    ]
}

fn row(kind: &str, rest: Vec<Value<'static>>) -> Vec<Value<'static>> {
    let mut r = header_values(kind);
    r.extend(rest);
    r
}

#[test]
fn the_schema_is_the_union_of_the_variants() {
    use ColumnType::*;
    assert_eq!(
        columns(&acme("error")),
        vec![
            ("version".into(), UInt64, false),
            ("kind".into(), String, false),
            ("device".into(), MacAddr, false),
            ("seq".into(), UInt64, false),
            ("time".into(), Timestamp, false),
            ("n".into(), UInt64, true),
            ("code".into(), UInt64, true),
            ("message".into(), String, true),
            ("value".into(), Int64, true),
            ("sensor".into(), UInt64, true),
            ("status".into(), String, true),
            ("alarm".into(), Bool, true),
        ]
    );
}

#[test]
fn each_variant_decodes_its_own_fields() {
    let f = acme("error");
    let null = || Value::Null;
    // Readings: two elements.
    let mut p = header(1);
    p.extend([2, 0xee, 5, 0x81, 0xff, 0xfe, 6, 0x02, 0x01, 0x00]);
    assert_eq!(
        decode(&f, &p).expect("decodes"),
        vec![
            row(
                "readings",
                vec![
                    Value::U64(2),
                    null(),
                    null(),
                    Value::I64(-2),
                    Value::U64(5),
                    s("warn"),
                    Value::Bool(true)
                ]
            ),
            row(
                "readings",
                vec![
                    Value::U64(2),
                    null(),
                    null(),
                    Value::I64(256),
                    Value::U64(6),
                    s("fail"),
                    Value::Bool(false)
                ]
            ),
        ]
    );
    // Alarm.
    let mut p = header(2);
    p.extend(0x0102u16.to_be_bytes());
    p.extend(b"too hot\0");
    p.extend((-40i16).to_be_bytes());
    assert_eq!(
        one_row(&f, &p),
        row(
            "alarm",
            vec![
                null(),
                Value::U64(0x0102),
                s("too hot"),
                Value::I64(-40),
                null(),
                null(),
                null()
            ]
        )
    );
    // Heartbeats (two values, one variant without fields).
    assert_eq!(one_row(&f, &header(3)), row("heartbeat", vec![null(); 7]));
    assert_eq!(one_row(&f, &header(4)), row("4", vec![null(); 7]));
    // The payload ends inside the alarm's text.
    let mut p = header(2);
    p.extend([0, 1, b'a']);
    assert_eq!(
        fault(decode(&f, &p).expect_err("short")),
        (TRUNCATED, Some("message".into()), 18)
    );
    // The header itself is checked first.
    assert_eq!(
        fault(decode(&f, &header(2)[..10]).expect_err("short")),
        (TRUNCATED, Some("seq".into()), 8)
    );
}

#[test]
fn unknown_values() {
    let err = decode(&acme("error"), &header(9)).expect_err("unknown");
    assert_eq!(
        fault(err.clone()),
        (UNKNOWN_VARIANT, Some("kind".into()), 1)
    );
    assert_eq!(err.message(), "no variant for the value 9");

    let lax = acme("header_only");
    assert_eq!(one_row(&lax, &header(9)), row("9", vec![Value::Null; 7]));
    // Nullability does not change: the header is all a header-only row has.
    assert_eq!(columns(&lax), columns(&acme("error")));
}

#[test]
fn a_top_level_group_follows_each_variant() {
    let f = factory(json!({
        "fields": [{ "name": "kind", "type": "u8" }],
        "discriminator": "kind",
        "variants": [
            { "values": [1], "fields": [{ "name": "a", "type": "u8" }, { "name": "shared", "type": "u8" }] },
            { "values": [2], "fields": [{ "name": "shared", "type": "u8" }, { "name": "b", "type": "u16" }] },
        ],
        "group": { "fields": [{ "name": "v", "type": "u8" }] }
    }));
    assert_eq!(
        columns(&f),
        vec![
            ("kind".into(), ColumnType::UInt64, false),
            ("a".into(), ColumnType::UInt64, true),
            ("shared".into(), ColumnType::UInt64, false),
            ("b".into(), ColumnType::UInt64, true),
            ("v".into(), ColumnType::UInt64, false),
        ]
    );
    let (k1, k2) = (Value::U64(1), Value::U64(2));
    assert_eq!(
        decode(&f, &[1, 10, 11, 20, 21]).expect("decodes"),
        vec![
            vec![
                k1.clone(),
                Value::U64(10),
                Value::U64(11),
                Value::Null,
                Value::U64(20)
            ],
            vec![
                k1,
                Value::U64(10),
                Value::U64(11),
                Value::Null,
                Value::U64(21)
            ],
        ]
    );
    assert_eq!(
        decode(&f, &[2, 11, 0, 12, 20]).expect("decodes"),
        vec![vec![
            k2,
            Value::Null,
            Value::U64(11),
            Value::U64(12),
            Value::U64(20)
        ]]
    );
}

#[test]
fn masked_and_signed_discriminators() {
    let masked = factory(json!({
        "fields": [
            { "name": "kind", "type": "u8", "mask": 0xf0 },
            { "name": "len", "type": "u8", "offset": 0, "mask": 0x0f },
        ],
        "discriminator": "kind",
        "variants": [{ "values": [0xa], "fields": [{ "name": "x", "type": "u8" }] }]
    }));
    assert_eq!(
        one_row(&masked, &[0xa3, 9]),
        vec![Value::U64(0xa), Value::U64(3), Value::U64(9)]
    );
    assert_eq!(
        fault(decode(&masked, &[0x13, 9]).expect_err("unknown")),
        (UNKNOWN_VARIANT, Some("kind".into()), 0)
    );
    let signed = factory(json!({
        "fields": [{ "name": "kind", "type": "i16" }],
        "discriminator": "kind",
        "variants": [
            { "values": [-1], "fields": [{ "name": "x", "type": "u8" }] },
            { "values": [32767], "fields": [{ "name": "y", "type": "u8" }] },
        ]
    }));
    assert_eq!(
        one_row(&signed, &[0xff, 0xff, 5]),
        vec![Value::I64(-1), Value::U64(5), Value::Null]
    );
    assert_eq!(
        one_row(&signed, &[0x7f, 0xff, 6]),
        vec![Value::I64(32767), Value::Null, Value::U64(6)]
    );
}
