//! The ACME-SENSOR v2 example of `docs/decoders.md`, decoded exactly as the
//! document shows. The layout below is the document's TOML converted to JSON (Python's
//! `tomllib`); keep the two in step.

use super::{columns, decode, factory, fault, s};
use crate::{ColumnType, Value, layout::LayoutFactory};

fn acme_sensor_v2() -> LayoutFactory {
    factory(serde_json::from_str(LAYOUT).expect("the layout is JSON"))
}

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

/// The header columns of the document's events (type, flags byte aside).
fn header(kind: &str, on_battery: bool, tampered: bool, slot: u64) -> Vec<Value<'static>> {
    vec![
        Value::U64(2),
        s(kind),
        Value::Mac([0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c]),
        Value::U64(4711),
        Value::Timestamp(1_795_328_725_000_000),
        Value::Bool(on_battery),
        Value::Bool(tampered),
        Value::U64(slot),
    ]
}

fn with(mut row: Vec<Value<'static>>, rest: Vec<Value<'static>>) -> Vec<Value<'static>> {
    row.extend(rest);
    row
}

#[test]
fn columns_as_documented() {
    use ColumnType::*;
    let expected: Vec<(&str, ColumnType, bool)> = vec![
        ("version", UInt64, false),
        ("type", String, false),
        ("device", MacAddr, false),
        ("seq", UInt64, false),
        ("time", Timestamp, false),
        ("on_battery", Bool, false),
        ("tampered", Bool, false),
        ("slot", UInt64, false),
        ("code", UInt64, true),
        ("severity", String, true),
        ("message", String, true),
        ("battery_mv", UInt64, true),
        ("uptime", UInt64, true),
        ("reading", UInt64, true),
        ("channel", UInt64, true),
        ("status", String, true),
        ("calibrated", Bool, true),
        ("value", Int64, true),
    ];
    let expected: Vec<_> = expected
        .into_iter()
        .map(|(n, t, null)| (n.to_owned(), t, null))
        .collect();
    assert_eq!(columns(&acme_sensor_v2()), expected);
}

#[test]
fn events_as_documented() {
    let f = acme_sensor_v2();
    let null = || Value::Null;
    let readings = hex(
        "02 01 00 1b 21 0a 0b 0c 00 00 12 67 6b 02 8a d5 83 00 02 00 \
         01 80 00 00 53 fc 00 00 02 03 ff ff ff d8 00 00",
    );
    assert_eq!(
        decode(&f, &readings).expect("decodes"),
        vec![
            with(
                header("readings", true, false, 3),
                vec![
                    null(),
                    null(),
                    null(),
                    null(),
                    null(),
                    Value::U64(0),
                    Value::U64(1),
                    s("ok"),
                    Value::Bool(true),
                    Value::I64(21_500)
                ],
            ),
            with(
                header("readings", true, false, 3),
                vec![
                    null(),
                    null(),
                    null(),
                    null(),
                    null(),
                    Value::U64(1),
                    Value::U64(2),
                    s("fault"),
                    Value::Bool(false),
                    Value::I64(-40)
                ],
            ),
        ]
    );
    let alarm = hex(
        "02 02 00 1b 21 0a 0b 0c 00 00 12 67 6b 02 8a d5 40 00 01 01 03 \
         64 6f 6f 72 20 6f 70 65 6e 00 00 00 00 00 00 00",
    );
    assert_eq!(
        decode(&f, &alarm).expect("decodes"),
        vec![with(
            header("alarm", false, true, 0),
            vec![
                Value::U64(257),
                s("critical"),
                s("door open"),
                null(),
                null(),
                null(),
                null(),
                null(),
                null(),
                null()
            ],
        )]
    );
    let heartbeat = hex("02 03 00 1b 21 0a 0b 0c 00 00 12 67 6b 02 8a d5 00 00 0e 10 00 01 51 80");
    assert_eq!(
        decode(&f, &heartbeat).expect("decodes"),
        vec![with(
            header("heartbeat", false, false, 0),
            vec![
                null(),
                null(),
                null(),
                Value::U64(3600),
                Value::U64(86_400),
                null(),
                null(),
                null(),
                null(),
                null()
            ],
        )]
    );
    let unknown = hex("02 09 00 1b 21 0a 0b 0c 00 00 12 67 6b 02 8a d5 01 00");
    assert_eq!(
        decode(&f, &unknown).expect("decodes"),
        vec![with(header("9", false, false, 1), vec![null(); 10])]
    );
    // The errors the document lists.
    assert_eq!(
        fault(decode(&f, &readings[..30]).expect_err("short")),
        ("truncated", Some("value".into()), 30)
    );
    let mut long = heartbeat.clone();
    long.push(0);
    assert_eq!(
        fault(decode(&f, &long).expect_err("long")),
        ("trailing_bytes", None, 24)
    );
    let mut many = readings.clone();
    many[18] = 65;
    assert_eq!(
        fault(decode(&f, &many).expect_err("many")),
        ("count_too_large", Some("reading_count".into()), 18)
    );
    let mut bad = alarm.clone();
    bad[25] = 0xe9;
    assert_eq!(
        fault(decode(&f, &bad).expect_err("not ascii")),
        ("bad_text", Some("message".into()), 25)
    );
}

/// `docs/decoders.md`'s TOML, as JSON.
const LAYOUT: &str = r#"{
    "byte_order": "big",
    "discriminator": "type",
    "unknown_variant": "header_only",
    "trailing_bytes": "reject",
    "fields": [
        {
            "name": "version",
            "type": "u8"
        },
        {
            "name": "type",
            "type": "u8",
            "enum": {
                "1": "readings",
                "2": "alarm",
                "3": "heartbeat"
            }
        },
        {
            "name": "device",
            "type": "mac"
        },
        {
            "name": "seq",
            "type": "u32"
        },
        {
            "name": "time",
            "type": "u32",
            "timestamp": "seconds"
        },
        {
            "name": "on_battery",
            "type": "u8",
            "offset": 16,
            "mask": 128
        },
        {
            "name": "tampered",
            "type": "u8",
            "offset": 16,
            "mask": 64
        },
        {
            "name": "slot",
            "type": "u8",
            "offset": 16,
            "mask": 15
        },
        {
            "name": "reserved",
            "type": "u8",
            "skip": true
        }
    ],
    "variants": [
        {
            "values": [
                1
            ],
            "fields": [
                {
                    "name": "reading_count",
                    "type": "u8",
                    "skip": true
                },
                {
                    "name": "pad",
                    "type": "u8",
                    "skip": true
                }
            ],
            "group": {
                "count": "reading_count",
                "size": 8,
                "max_count": 64,
                "index": "reading",
                "fields": [
                    {
                        "name": "channel",
                        "type": "u8"
                    },
                    {
                        "name": "status",
                        "type": "u8",
                        "mask": 7,
                        "enum": {
                            "0": "ok",
                            "1": "low",
                            "2": "high",
                            "3": "fault"
                        }
                    },
                    {
                        "name": "calibrated",
                        "type": "u8",
                        "offset": 1,
                        "mask": 128
                    },
                    {
                        "name": "value",
                        "type": "i32"
                    }
                ]
            }
        },
        {
            "values": [
                2
            ],
            "fields": [
                {
                    "name": "code",
                    "type": "u16"
                },
                {
                    "name": "severity",
                    "type": "u8",
                    "enum": {
                        "1": "info",
                        "2": "warning",
                        "3": "critical"
                    }
                },
                {
                    "name": "message",
                    "type": "text",
                    "length": 16,
                    "charset": "ascii"
                }
            ]
        },
        {
            "values": [
                3
            ],
            "fields": [
                {
                    "name": "battery_mv",
                    "type": "u16"
                },
                {
                    "name": "uptime",
                    "type": "u32"
                }
            ]
        }
    ]
}"#;
