//! One value in a text format: JSON (strings quoted and escaped, `null`) or CSV (RFC 4180
//! quoting, empty field for null). Both write a `UInt64` above `i64::MAX` and a
//! non-finite `Float64` as null: BigQuery's INT64 cannot hold the one and JSON has no
//! form for the other.

use sluice_decode::{BytesEncoding, ColumnType, Value};

use crate::{
    text::{
        LastAddress, push_base64, push_f64, push_hex, push_i64, push_json_string, push_mac,
        push_u64,
    },
    textout::TextOut,
    timestamp::TimestampFormatter,
};

/// Which text format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Json,
    Csv,
}

/// What [`push_value`] did with a value that has no faithful text form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// Written as it is.
    Value,
    /// A `UInt64` above `i64::MAX`, written as null.
    Overflow,
}

/// Appends `value` of a column of type `ty`; `address` is the column's last address.
#[inline(always)]
pub(crate) fn push_value<O: TextOut>(
    out: &mut O,
    dialect: Dialect,
    ty: ColumnType,
    value: &Value<'_>,
    timestamps: &mut TimestampFormatter,
    address: &mut LastAddress,
) -> Written {
    // Quoted forms that never need escaping (no quote, comma, backslash or newline).
    let quote = |out: &mut O| {
        if dialect == Dialect::Json {
            out.push(b'"');
        }
    };
    let null = |out: &mut O| {
        if dialect == Dialect::Json {
            out.extend_from_slice(b"null");
        }
    };
    match value {
        Value::Null => null(out),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::U64(n) if i64::try_from(*n).is_err() => {
            null(out);
            return Written::Overflow;
        }
        Value::U64(n) => push_u64(out, *n),
        Value::I64(n) => push_i64(out, *n),
        Value::F64(f) if f.is_finite() => push_f64(out, *f),
        Value::F64(_) => null(out),
        Value::Str(s) => match dialect {
            Dialect::Json => push_json_string(out, s),
            Dialect::Csv => push_csv_field(out, s),
        },
        Value::Bytes(bytes) => {
            quote(out);
            match ty {
                ColumnType::Bytes(BytesEncoding::Hex) => push_hex(out, bytes),
                _ => push_base64(out, bytes),
            }
            quote(out);
        }
        Value::Ip(ip) => {
            quote(out);
            address.push_ip(out, *ip);
            quote(out);
        }
        Value::Mac(mac) => {
            quote(out);
            push_mac(out, mac);
            quote(out);
        }
        Value::Timestamp(micros) => {
            quote(out);
            timestamps.push(out, *micros);
            quote(out);
        }
    }
    Written::Value
}

/// Appends `s` as a CSV field: as it is, or in double quotes (inner quotes doubled) when it
/// holds a comma, quote, CR or LF, or is empty (so that an empty string differs from the
/// empty field of a null).
#[inline(always)]
pub(crate) fn push_csv_field<O: TextOut>(out: &mut O, s: &str) {
    let needs_quotes = s.is_empty() || s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if !needs_quotes {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    out.push(b'"');
    for part in s.split_inclusive('"') {
        out.extend_from_slice(part.as_bytes());
        if part.ends_with('"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}
