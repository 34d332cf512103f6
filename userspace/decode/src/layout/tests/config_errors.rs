//! Every way a layout is refused: the exact key and reason.

use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

use super::{config_error, layout};
use crate::{ConfigFieldError, layout::LayoutConfig};

/// A header of the given fields.
fn header(fields: Json) -> Json {
    json!({ "fields": fields })
}

fn check(config: Json, field: &str, reason: &str) {
    let err = config_error(config.clone());
    assert_eq!(err, ConfigFieldError::new(field, reason), "layout {config}");
}

#[test]
fn names() {
    check(
        header(json!([{ "name": "Seq", "type": "u8" }])),
        "fields[0].name",
        "\"Seq\" is not a column name: use 1-64 lowercase letters, digits and '_', not starting \
         with a digit",
    );
    check(
        header(json!([{ "name": "seq", "type": "u8" }, { "name": "seq", "type": "u16" }])),
        "fields[1].name",
        "`seq` is already the name of fields[0]",
    );
    // Skipped fields are named too, and uniquely: messages point at them.
    check(
        header(json!([
            { "name": "a", "type": "u8" },
            { "name": "pad", "type": "u8", "skip": true },
            { "name": "pad", "type": "u8", "skip": true },
        ])),
        "fields[2].name",
        "`pad` is already the name of fields[1]",
    );
}

#[test]
fn types_and_widths() {
    check(
        header(json!([{ "name": "a", "type": "uint12" }])),
        "fields[0].type",
        "unknown type \"uint12\"; use one of u8, u16, u32, u64, i8, i16, i32, i64, uint, int, \
         f32, f64, float, ipv4, ipv6, mac, bytes, text",
    );
    check(
        header(json!([{ "name": "a", "type": "uint", "width": 3 }])),
        "fields[0].width",
        "3 is not a width: use 1, 2, 4, 8 bytes",
    );
    check(
        header(json!([{ "name": "a", "type": "int" }])),
        "fields[0].width",
        "required for type int: 1, 2, 4, 8 bytes",
    );
    check(
        header(json!([{ "name": "a", "type": "u16", "width": 4 }])),
        "fields[0].width",
        "u16 is 2 bytes wide, not 4; drop `width`",
    );
    check(
        header(json!([{ "name": "a", "type": "float", "width": 2 }])),
        "fields[0].width",
        "2 is not a width: use 4, 8 bytes",
    );
    check(
        header(json!([{ "name": "a", "type": "text", "width": 4 }])),
        "fields[0].width",
        "only for integer and float fields, not text",
    );
    check(
        header(json!([{ "name": "a", "type": "bytes" }])),
        "fields[0].length",
        "required for type bytes",
    );
    check(
        header(json!([{ "name": "a", "type": "text", "length": 0 }])),
        "fields[0].length",
        "at least 1 byte",
    );
    check(
        header(json!([{ "name": "a", "type": "u8", "length": 1 }])),
        "fields[0].length",
        "only for bytes and text fields, not u8",
    );
}

#[test]
fn keys_that_do_not_apply() {
    let cases = [
        (
            json!({ "type": "mac", "byte_order": "little" }),
            "byte_order",
            "only for number and ipv4 fields, not mac",
        ),
        (
            json!({ "type": "ipv6", "byte_order": "big" }),
            "byte_order",
            "only for number and ipv4 fields, not ipv6",
        ),
        (
            json!({ "type": "text", "length": 2, "encoding": "hex" }),
            "encoding",
            "only for bytes fields, not text",
        ),
        (
            json!({ "type": "bytes", "length": 2, "charset": "ascii" }),
            "charset",
            "only for text fields, not bytes",
        ),
        (
            json!({ "type": "f32", "enum": { "1": "x" } }),
            "enum",
            "only for integer fields, not f32",
        ),
        (
            json!({ "type": "ipv4", "timestamp": "seconds" }),
            "timestamp",
            "only for integer fields, not ipv4",
        ),
        (
            json!({ "type": "i16", "mask": 1 }),
            "mask",
            "bit fields read unsigned integers: use u8, u16, u32 or u64",
        ),
        (
            json!({ "type": "text", "length": 1, "mask": 1 }),
            "mask",
            "only for unsigned integer fields, not text",
        ),
        (
            json!({ "type": "u8", "shift": 1 }),
            "shift",
            "only with `mask`",
        ),
        (
            json!({ "type": "u8", "on_unknown": "null" }),
            "on_unknown",
            "only with `enum`",
        ),
        (
            json!({ "type": "u8", "enum": { "1": "x" }, "timestamp": "seconds" }),
            "timestamp",
            "a field is an enum or a timestamp, not both",
        ),
    ];
    for (mut f, key, reason) in cases {
        f["name"] = json!("a");
        check(header(json!([f])), &format!("fields[0].{key}"), reason);
    }
}

#[test]
fn masks_and_enums() {
    let cases = [
        (json!({ "type": "u8", "mask": 0 }), "mask", "0 keeps no bit"),
        (
            json!({ "type": "u8", "mask": 0x1ff }),
            "mask",
            "0x1ff is wider than u8 (8 bits)",
        ),
        (
            json!({ "type": "uint", "width": 2, "mask": 0x1_0000 }),
            "mask",
            "0x10000 is wider than uint (16 bits)",
        ),
        (
            json!({ "type": "u8", "mask": 0xf0, "shift": 5 }),
            "shift",
            "5 would drop bits of mask 0xf0: at most 4",
        ),
        (
            json!({ "type": "u8", "enum": {} }),
            "enum",
            "names no value",
        ),
        (
            json!({ "type": "u8", "enum": { "abc": "x" } }),
            "enum.abc",
            "\"abc\" is not a number (decimal, or hex with 0x)",
        ),
        (
            json!({ "type": "u8", "mask": 0x0f, "enum": { "16": "x" } }),
            "enum.16",
            "16 is out of range for this field (0..=15)",
        ),
        (
            json!({ "type": "i8", "enum": { "-129": "x" } }),
            "enum.-129",
            "-129 is out of range for this field (-128..=127)",
        ),
        (
            json!({ "type": "u8", "enum": { "0x1": "a", "1": "b" } }),
            "enum.1",
            "the value 1 is named twice",
        ),
    ];
    for (mut f, key, reason) in cases {
        f["name"] = json!("a");
        check(header(json!([f])), &format!("fields[0].{key}"), reason);
    }
}

#[test]
fn placement() {
    let order = "fields are listed in payload order and do not overlap (only bit fields of the \
                 same type at the same offset, with disjoint masks, share bytes)";
    check(
        header(
            json!([{ "name": "a", "type": "u32" }, { "name": "b", "type": "u16", "offset": 2 }]),
        ),
        "fields[1].offset",
        &format!("byte 2 is before the end of `a` (byte 4): {order}"),
    );
    check(
        header(
            json!([{ "name": "a", "type": "u8", "offset": 4 }, { "name": "b", "type": "u8", "offset": 0 }]),
        ),
        "fields[1].offset",
        &format!("byte 0 is before the end of `a` (byte 5): {order}"),
    );
    check(
        header(json!([
            { "name": "a", "type": "u8", "mask": 0xf0 },
            { "name": "b", "type": "u8", "offset": 0, "mask": 0x0c },
            { "name": "c", "type": "u8", "offset": 0, "mask": 0x18 },
        ])),
        "fields[2].mask",
        "0x18 overlaps the bits of `a` and the bit fields after it at byte 0 (mask 0xfc)",
    );
    // Bit fields share bytes only when they read the same bytes.
    check(
        header(json!([
            { "name": "a", "type": "u16", "mask": 0xff00 },
            { "name": "b", "type": "u8", "offset": 0, "mask": 0x0f },
        ])),
        "fields[1].offset",
        &format!("byte 0 is before the end of `a` (byte 2): {order}"),
    );
    // A plain field cannot share a bit field's bytes.
    check(
        header(json!([
            { "name": "a", "type": "u8", "mask": 0xf0 },
            { "name": "b", "type": "u8", "offset": 0 },
        ])),
        "fields[1].offset",
        &format!("byte 0 is before the end of `a` (byte 1): {order}"),
    );
    check(
        header(json!([{ "name": "a", "type": "u16", "offset": 65_534 }])),
        "fields[0].offset",
        "the field would end past the largest UDP payload (65535 bytes)",
    );
    check(
        header(json!([{ "name": "a", "type": "text", "length": 70_000 }])),
        "fields[0].length",
        "the field would end past the largest UDP payload (65535 bytes)",
    );
}

#[test]
fn a_layout_needs_a_column() {
    let reason = "the layout yields no column: give at least one field that is not skipped";
    check(json!({}), "fields", reason);
    check(
        header(json!([{ "name": "pad", "type": "u32", "skip": true }])),
        "fields",
        reason,
    );
}

#[test]
fn groups() {
    let n = json!({ "name": "n", "type": "u8" });
    let v = json!({ "name": "v", "type": "u16" });
    let group = |g: Json| json!({ "fields": [n.clone()], "group": g });
    check(
        group(json!({ "count": "m", "fields": [v] })),
        "group.count",
        "no field \"m\" before the group (in the header)",
    );
    check(
        group(json!({ "count": "v", "fields": [v] })),
        "group.count",
        "`v` is a field of the element: the count must come before the group",
    );
    check(
        json!({ "fields": [{ "name": "n", "type": "i8" }], "group": { "count": "n", "fields": [v] } }),
        "group.count",
        "`n` is signed (i8); the count must be an unsigned integer",
    );
    check(
        json!({ "fields": [{ "name": "n", "type": "u8", "enum": { "1": "one" } }], "group": { "count": "n", "fields": [v] } }),
        "group.count",
        "`n` has enum names; the count must be an unsigned integer",
    );
    check(
        json!({ "fields": [{ "name": "n", "type": "u32", "timestamp": "seconds" }], "group": { "count": "n", "fields": [v] } }),
        "group.count",
        "`n` is a timestamp; the count must be an unsigned integer",
    );
    check(
        json!({ "fields": [{ "name": "n", "type": "mac" }], "group": { "count": "n", "fields": [v] } }),
        "group.count",
        "`n` is a mac field; the count must be an unsigned integer",
    );
    check(
        group(json!({ "count": "n", "max_count": 0, "fields": [v] })),
        "group.max_count",
        "0 would refuse every element: omit it for no limit",
    );
    check(
        group(json!({ "count": "n", "fields": [] })),
        "group.fields",
        "an element needs at least one field",
    );
    check(
        group(json!({ "count": "n", "fields": [{ "name": "pad", "type": "u8", "skip": true }] })),
        "group.fields",
        "every field is skipped: an element needs a column (a field, or `index`)",
    );
    check(
        group(json!({ "count": "n", "size": 1, "fields": [v] })),
        "group.size",
        "1 is less than the end of the element's fields (byte 2)",
    );
    check(
        json!({ "fields": [{ "name": "n", "type": "u32" }], "group": { "offset": 2, "fields": [v] } }),
        "group.offset",
        "byte 2 is before the end of the fields before the group (byte 4)",
    );
    check(
        group(json!({ "index": "n", "fields": [v] })),
        "group.index",
        "`n` is already the name of fields[0]",
    );
    check(
        group(json!({ "index": "Index", "fields": [v] })),
        "group.index",
        "\"Index\" is not a column name: use 1-64 lowercase letters, digits and '_', not starting \
         with a digit",
    );
    check(
        group(json!({ "fields": [{ "name": "n", "type": "u8" }] })),
        "group.fields[0].name",
        "`n` is already the name of fields[0]",
    );
    check(
        group(json!({ "fields": [v, { "name": "w", "type": "u8", "offset": 1 }] })),
        "group.fields[1].offset",
        "byte 1 is before the end of `v` (byte 2): fields are listed in payload order and do \
         not overlap (only bit fields of the same type at the same offset, with disjoint masks, \
         share bytes)",
    );
}

#[test]
fn variants() {
    let kind = json!({ "name": "kind", "type": "u8" });
    let with = |extra: Json| {
        let mut l = json!({ "fields": [kind.clone(), { "name": "n", "type": "u8" }] });
        for (k, v) in extra.as_object().expect("object") {
            l[k] = v.clone();
        }
        l
    };
    let x = |ty: &str| json!({ "name": "x", "type": ty });
    check(
        with(json!({ "discriminator": "kind" })),
        "discriminator",
        "only with `variants`",
    );
    check(
        with(json!({ "unknown_variant": "header_only" })),
        "unknown_variant",
        "only with `variants`",
    );
    check(
        with(json!({ "variants": [{ "values": [1] }] })),
        "variants",
        "need `discriminator`: the header field that picks the variant",
    );
    check(
        with(json!({ "discriminator": "kid", "variants": [{ "values": [1] }] })),
        "discriminator",
        "no header field \"kid\" (the discriminator must be in `fields`)",
    );
    check(
        json!({ "fields": [{ "name": "kind", "type": "text", "length": 2 }], "discriminator": "kind", "variants": [{ "values": [1] }] }),
        "discriminator",
        "`kind` is a text field; the discriminator must be an integer",
    );
    check(
        with(json!({ "discriminator": "kind", "variants": [{ "values": [] }] })),
        "variants[0].values",
        "at least one discriminator value",
    );
    check(
        with(json!({ "discriminator": "kind", "variants": [{ "values": [1, 256] }] })),
        "variants[0].values[1]",
        "256 is out of range of `kind` (0..=255)",
    );
    check(
        with(
            json!({ "discriminator": "kind", "variants": [{ "values": [1] }, { "values": [2, 1] }] }),
        ),
        "variants[1].values[1]",
        "1 already selects variants[0]",
    );
    check(
        with(json!({ "discriminator": "kind", "variants": [
            { "values": [1], "fields": [x("u8")] },
            { "values": [2], "fields": [x("i8")] },
        ] })),
        "variants[1].fields[0].type",
        "column `x` is UInt64 in variants[0].fields[0].type but Int64 here; a name shared by \
         variants needs one column type",
    );
    check(
        with(json!({ "discriminator": "kind", "variants": [
            { "values": [1], "fields": [{ "name": "x", "type": "u8", "offset": 1 }] },
        ] })),
        "variants[0].fields[0].offset",
        "byte 1 is before the end of the header (byte 2): fields are listed in payload order and \
         do not overlap (only bit fields of the same type at the same offset, with disjoint \
         masks, share bytes)",
    );
    check(
        with(
            json!({ "discriminator": "kind", "variants": [{ "values": [1], "fields": [{ "name": "n", "type": "u8" }] }] }),
        ),
        "variants[0].fields[0].name",
        "`n` is already the name of fields[1]",
    );
    check(
        with(
            json!({ "discriminator": "kind", "group": { "fields": [x("u8")] }, "variants": [
            { "values": [1] },
            { "values": [2], "group": { "fields": [x("u8")] } },
        ] }),
        ),
        "variants[1].group",
        "the layout has a top-level `group`; a layout has one group",
    );
    check(
        with(
            json!({ "discriminator": "kind", "group": { "offset": 3, "fields": [x("u8")] }, "variants": [
            { "values": [1] },
            { "values": [2], "fields": [{ "name": "y", "type": "u16" }] },
        ] }),
        ),
        "group.offset",
        "byte 3 is before the end of the fields before the group (byte 4, in variants[1])",
    );
    check(
        with(
            json!({ "discriminator": "kind", "group": { "fields": [x("u8")] }, "variants": [
            { "values": [1], "fields": [x("u8")] },
        ] }),
        ),
        "group.fields[0].name",
        "`x` is already the name of variants[0].fields[0]",
    );
    check(
        with(json!({ "discriminator": "kind", "variants": [
            { "values": [1], "fields": [{ "name": "m", "type": "u8" }] },
            { "values": [2], "group": { "count": "m", "fields": [x("u8")] } },
        ] })),
        "variants[1].group.count",
        "no field \"m\" before the group (in the header or this variant)",
    );
}

#[test]
fn unknown_keys_are_serde_errors() {
    let err = serde_json::from_value::<LayoutConfig>(json!({
        "fields": [{ "name": "a", "type": "u8", "offest": 2 }]
    }))
    .expect_err("unknown key");
    assert!(
        err.to_string().starts_with("unknown field `offest`"),
        "{err}"
    );
    let err = serde_json::from_value::<LayoutConfig>(json!({ "byte_order": "middle" }))
        .expect_err("unknown variant");
    assert!(
        err.to_string().starts_with("unknown variant `middle`"),
        "{err}"
    );
}

#[test]
fn file_must_be_resolved_alone() {
    check(
        json!({ "file": "acme.toml" }),
        "file",
        "the layout file has not been loaded (LayoutConfig::resolve_file)",
    );
    check(
        json!({ "file": "acme.toml", "byte_order": "big" }),
        "byte_order",
        "not allowed with `file`: the whole layout comes from the file",
    );

    let inner = layout(json!({ "fields": [{ "name": "a", "type": "u8" }] }));
    let outer = layout(json!({ "file": "layouts/acme.toml" }));
    let mut seen = PathBuf::new();
    let resolved = outer
        .clone()
        .resolve_file(|p: &Path| {
            seen = p.to_owned();
            Ok::<_, String>(inner.clone())
        })
        .expect("resolved");
    assert_eq!(resolved, inner);
    assert_eq!(seen, PathBuf::from("layouts/acme.toml"));
    // Without `file`, nothing is loaded.
    assert_eq!(
        inner
            .clone()
            .resolve_file(|_| -> Result<LayoutConfig, String> { panic!("not called") }),
        Ok(inner.clone())
    );
    assert_eq!(
        outer.clone().resolve_file(|_| Err("no such file")),
        Err(ConfigFieldError::new(
            "file",
            "cannot load layouts/acme.toml: no such file"
        ))
    );
    assert_eq!(
        outer
            .clone()
            .resolve_file(|_| Ok::<_, String>(layout(json!({ "file": "other.toml" })))),
        Err(ConfigFieldError::new(
            "file",
            "layouts/acme.toml sets `file` itself; layout files do not nest"
        ))
    );
    assert_eq!(
        layout(json!({ "file": "a.toml", "fields": [{ "name": "a", "type": "u8" }] }))
            .resolve_file(|_| Ok::<_, String>(inner.clone())),
        Err(ConfigFieldError::new(
            "fields",
            "not allowed with `file`: the whole layout comes from the file"
        ))
    );
}
