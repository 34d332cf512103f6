//! Repeated groups: one row per element carrying the header, counts, sizes, limits, and
//! all-or-nothing output.

use serde_json::json;

use super::{columns, decode, factory, fault, s};
use crate::{
    ColumnType, Value,
    layout::{COUNT_TOO_LARGE, LayoutFactory, TRUNCATED},
};

/// Header `id` (u16) and `n` (u8), elements of `temp` (i16) and `status` (u8 enum) padded
/// to 4 bytes, with an index column.
fn readings() -> LayoutFactory {
    factory(json!({
        "fields": [
            { "name": "id", "type": "u16" },
            { "name": "n", "type": "u8" },
        ],
        "group": {
            "count": "n",
            "size": 4,
            "max_count": 8,
            "index": "reading",
            "fields": [
                { "name": "temp", "type": "i16" },
                { "name": "status", "type": "u8", "enum": { "0": "ok", "1": "warn" } },
            ]
        }
    }))
}

#[test]
fn one_row_per_element_with_the_header() {
    let f = readings();
    assert_eq!(
        columns(&f),
        vec![
            ("id".into(), ColumnType::UInt64, false),
            ("n".into(), ColumnType::UInt64, false),
            ("reading".into(), ColumnType::UInt64, false),
            ("temp".into(), ColumnType::Int64, false),
            ("status".into(), ColumnType::String, false),
        ]
    );
    let p = [
        0x01, 0x02, 3, 0xff, 0x38, 0, 0xee, 0x00, 0x15, 1, 0xee, 0x00, 0x00, 5, 0xee,
    ];
    assert_eq!(
        decode(&f, &p).expect("decodes"),
        vec![
            vec![
                Value::U64(0x0102),
                Value::U64(3),
                Value::U64(0),
                Value::I64(-200),
                s("ok")
            ],
            vec![
                Value::U64(0x0102),
                Value::U64(3),
                Value::U64(1),
                Value::I64(21),
                s("warn")
            ],
            vec![
                Value::U64(0x0102),
                Value::U64(3),
                Value::U64(2),
                Value::I64(0),
                s("5")
            ],
        ]
    );
}

#[test]
fn counts_are_checked_against_the_payload_and_the_limit() {
    let f = readings();
    // Zero elements: no row.
    assert_eq!(
        decode(&f, &[0, 1, 0]).expect("decodes"),
        Vec::<Vec<Value>>::new()
    );
    // The payload ends inside element 1 (of 2): its `status` is missing.
    let err = decode(&f, &[0, 1, 2, 0, 1, 0, 0, 0, 2]).expect_err("short");
    assert_eq!(fault(err.clone()), (TRUNCATED, Some("status".into()), 9));
    assert_eq!(
        err.message(),
        "the payload ends at byte 9; the layout needs 11 bytes, in element 1 of 2 (4 bytes each \
         from byte 3)"
    );
    // Element padding is part of the layout too: no field is missing, byte 6 is.
    assert_eq!(
        fault(decode(&f, &[0, 1, 1, 0, 1, 0]).expect_err("short")),
        (TRUNCATED, None, 6)
    );
    // Above max_count: refused by the limit, whatever the payload holds.
    let err = decode(&f, &[0, 1, 9]).expect_err("too many");
    assert_eq!(fault(err.clone()), (COUNT_TOO_LARGE, Some("n".into()), 2));
    assert_eq!(err.message(), "9 elements, more than max_count 8");
}

#[test]
fn a_huge_count_is_truncation_not_a_panic() {
    let f = factory(json!({
        "fields": [{ "name": "n", "type": "u64" }],
        "group": { "count": "n", "size": 1000, "fields": [{ "name": "v", "type": "u8" }] }
    }));
    for n in [u64::MAX, u64::MAX / 1000 + 1, 1 << 40, 2] {
        let mut p = n.to_be_bytes().to_vec();
        assert_eq!(
            fault(decode(&f, &p).expect_err("huge")),
            (TRUNCATED, Some("v".into()), 8),
            "count {n}"
        );
        // Element 0 has its field but not its padding.
        p.extend([1, 2, 3]);
        assert_eq!(
            fault(decode(&f, &p).expect_err("huge")),
            (TRUNCATED, None, 11),
            "count {n}"
        );
    }
}

#[test]
fn nothing_is_emitted_when_a_later_element_is_bad() {
    let f = factory(json!({
        "fields": [{ "name": "n", "type": "u8" }],
        "group": { "count": "n", "fields": [{ "name": "tag", "type": "text", "length": 2 }] }
    }));
    let err = decode(&f, &[3, b'o', b'k', b'o', b'k', 0xc3, b'x']).expect_err("bad text");
    assert_eq!(fault(err), ("bad_text", Some("tag".into()), 5));

    let f = factory(json!({
        "fields": [{ "name": "n", "type": "u8" }],
        "group": { "count": "n", "fields": [
            { "name": "state", "type": "u8", "enum": { "0": "ok" }, "on_unknown": "error" },
            { "name": "at", "type": "u64", "timestamp": "seconds" },
        ] }
    }));
    let element = |state: u8, at: u64| {
        let mut e = vec![state];
        e.extend(at.to_be_bytes());
        e
    };
    let mut p = vec![3];
    p.extend(element(0, 1));
    p.extend(element(0, 2));
    p.extend(element(1, 3));
    let err = decode(&f, &p).expect_err("unknown state");
    assert_eq!(
        fault(err.clone()),
        ("unknown_enum", Some("state".into()), 19)
    );
    assert_eq!(err.message(), "1 has no name");
    let mut p = vec![2];
    p.extend(element(0, 1));
    p.extend(element(0, u64::MAX));
    let err = decode(&f, &p).expect_err("far future");
    assert_eq!(fault(err.clone()), ("bad_timestamp", Some("at".into()), 11));
    assert_eq!(
        err.message(),
        "18446744073709551615 seconds is beyond the representable time range"
    );
}

#[test]
fn infallible_elements_are_emitted_as_they_are_read() {
    use crate::layout::plan::Dispatch;
    let infallible = |element: serde_json::Value| {
        let f = factory(json!({
            "fields": [{ "name": "n", "type": "u8" }],
            "group": { "count": "n", "fields": [element] }
        }));
        match &f.plan.dispatch {
            Dispatch::Single(body) => body.group.as_ref().expect("group").infallible,
            Dispatch::Variants(_) => unreachable!("no variants"),
        }
    };
    assert!(infallible(
        json!({ "name": "v", "type": "u32", "mask": 0xff })
    ));
    assert!(infallible(
        json!({ "name": "v", "type": "u8", "enum": { "0": "ok" } })
    ));
    assert!(infallible(json!({ "name": "v", "type": "mac" })));
    assert!(!infallible(
        json!({ "name": "v", "type": "text", "length": 2 })
    ));
    assert!(!infallible(
        json!({ "name": "v", "type": "u8", "enum": { "0": "ok" }, "on_unknown": "error" })
    ));
    assert!(!infallible(
        json!({ "name": "v", "type": "u32", "timestamp": "seconds" })
    ));
}

#[test]
fn elements_can_fill_the_rest_of_the_payload() {
    let f = factory(json!({
        "fields": [{ "name": "id", "type": "u8" }],
        "group": { "fields": [{ "name": "v", "type": "u16" }] }
    }));
    assert_eq!(
        decode(&f, &[7, 0, 1, 0, 2]).expect("decodes"),
        vec![
            vec![Value::U64(7), Value::U64(1)],
            vec![Value::U64(7), Value::U64(2)]
        ]
    );
    assert_eq!(decode(&f, &[7]).expect("decodes").len(), 0);
    let err = decode(&f, &[7, 0, 1, 0]).expect_err("half an element");
    assert_eq!(fault(err.clone()), (TRUNCATED, Some("v".into()), 3));
    assert_eq!(
        err.message(),
        "the payload ends at byte 4; the layout needs 5 bytes, in element 1 (2 bytes each from \
         byte 1)"
    );
    let limited = factory(json!({
        "fields": [{ "name": "id", "type": "u8" }],
        "group": { "max_count": 1, "fields": [{ "name": "v", "type": "u16" }] }
    }));
    assert_eq!(
        fault(decode(&limited, &[7, 0, 1, 0, 2]).expect_err("too many")),
        (COUNT_TOO_LARGE, None, 1)
    );
}

#[test]
fn an_empty_group_can_make_one_row() {
    let f = factory(json!({
        "fields": [{ "name": "n", "type": "u8" }],
        "group": { "count": "n", "when_empty": "one_row", "index": "i", "fields": [{ "name": "v", "type": "u8" }] }
    }));
    assert_eq!(
        columns(&f),
        vec![
            ("n".into(), ColumnType::UInt64, false),
            ("i".into(), ColumnType::UInt64, true),
            ("v".into(), ColumnType::UInt64, true),
        ]
    );
    assert_eq!(
        decode(&f, &[0]).expect("decodes"),
        vec![vec![Value::U64(0), Value::Null, Value::Null]]
    );
    assert_eq!(
        decode(&f, &[1, 5]).expect("decodes"),
        vec![vec![Value::U64(1), Value::U64(0), Value::U64(5)]]
    );
}

#[test]
fn a_skipped_masked_count_and_an_explicit_start() {
    let f = factory(json!({
        "fields": [
            { "name": "flags", "type": "u8", "mask": 0xf0 },
            { "name": "n", "type": "u8", "offset": 0, "mask": 0x0f, "skip": true },
        ],
        "trailing_bytes": "reject",
        "group": { "count": "n", "offset": 3, "fields": [
            { "name": "pad", "type": "u8", "skip": true },
            { "name": "v", "type": "u8" },
        ] }
    }));
    assert_eq!(
        columns(&f),
        vec![
            ("flags".into(), ColumnType::UInt64, false),
            ("v".into(), ColumnType::UInt64, false),
        ]
    );
    assert_eq!(
        decode(&f, &[0x32, 0xaa, 0xbb, 0, 1, 0, 2]).expect("decodes"),
        vec![
            vec![Value::U64(3), Value::U64(1)],
            vec![Value::U64(3), Value::U64(2)]
        ]
    );
    // The gap before the group is part of the layout even without elements.
    assert_eq!(
        fault(decode(&f, &[0x30, 0xaa]).expect_err("short")),
        (TRUNCATED, Some("pad".into()), 3)
    );
    assert_eq!(decode(&f, &[0x30, 0xaa, 0xbb]).expect("decodes").len(), 0);
    assert_eq!(
        fault(decode(&f, &[0x31, 0xaa, 0xbb, 0, 1, 9]).expect_err("trailing")),
        ("trailing_bytes", None, 5)
    );
}
