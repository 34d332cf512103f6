//! One field's config checked and resolved on its own: its type, size, how it is read and
//! what column it makes. Where it sits (offsets, overlaps) and what refers to it (count,
//! discriminator) is [`super::compile`]'s business.

use super::{
    config::{ByteOrder, BytesFormat, Charset, FieldConfig, UnknownEnum},
    plan::{EnumNames, IntRead, OpKind, Width},
};
use crate::{BytesEncoding, ColumnType, ConfigFieldError};

/// The `type` names, for messages.
const TYPES: &str = "u8, u16, u32, u64, i8, i16, i32, i64, uint, int, f32, f64, float, ipv4, \
                     ipv6, mac, bytes, text";

/// A field resolved but not yet placed: offsets inside `kind` are 0.
#[derive(Debug)]
pub(super) struct FieldSpec {
    /// Size in bytes.
    pub size: usize,
    /// How it is read (offset still 0).
    pub kind: OpKind,
    /// Its column's type.
    pub column: ColumnType,
    /// Its column may be null (an `enum` with `on_unknown = "null"`).
    pub nullable: bool,
    /// The bit mask of a bit field.
    pub mask: Option<u64>,
}

impl FieldSpec {
    /// The same read at `offset`.
    pub fn place(&mut self, offset: usize) {
        if let Some(read) = self.kind.int_mut() {
            read.offset = offset;
        }
    }
}

/// The base type a `type` name stands for, with its implied width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BaseType {
    Uint(Option<Width>),
    Int(Option<Width>),
    Float(Option<Width>),
    Ipv4,
    Ipv6,
    Mac,
    Bytes,
    Text,
}

/// The base type of a `type` name, if it is one.
fn base_type(name: &str) -> Option<BaseType> {
    use BaseType::*;
    Some(match name {
        "u8" => Uint(Some(Width::W1)),
        "u16" => Uint(Some(Width::W2)),
        "u32" => Uint(Some(Width::W4)),
        "u64" => Uint(Some(Width::W8)),
        "uint" => Uint(None),
        "i8" => Int(Some(Width::W1)),
        "i16" => Int(Some(Width::W2)),
        "i32" => Int(Some(Width::W4)),
        "i64" => Int(Some(Width::W8)),
        "int" => Int(None),
        "f32" => Float(Some(Width::W4)),
        "f64" => Float(Some(Width::W8)),
        "float" => Float(None),
        "ipv4" => Ipv4,
        "ipv6" => Ipv6,
        "mac" => Mac,
        "bytes" => Bytes,
        "text" => Text,
        _ => return None,
    })
}

/// Whether `name` is a usable column name.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.len() <= 64
}

/// Checks one field's keys and resolves its type. `path` is e.g. `fields[2]`.
pub(super) fn resolve(
    f: &FieldConfig,
    path: &str,
    default_order: ByteOrder,
) -> Result<FieldSpec, ConfigFieldError> {
    let err = |key: &str, reason: String| ConfigFieldError::new(format!("{path}.{key}"), reason);
    if !valid_name(&f.name) {
        return Err(err(
            "name",
            format!(
                "{:?} is not a column name: use 1-64 lowercase letters, digits and '_', \
                 not starting with a digit",
                f.name
            ),
        ));
    }
    let base = base_type(&f.ty).ok_or_else(|| {
        err(
            "type",
            format!("unknown type {:?}; use one of {TYPES}", f.ty),
        )
    })?;
    let numeric = matches!(
        base,
        BaseType::Uint(_) | BaseType::Int(_) | BaseType::Float(_)
    );
    let integer = matches!(base, BaseType::Uint(_) | BaseType::Int(_));
    // Keys that only some types take.
    let only = |key: &str, set: bool, allowed: bool, which: &str| {
        if set && !allowed {
            Err(err(key, format!("only for {which} fields, not {}", f.ty)))
        } else {
            Ok(())
        }
    };
    only("width", f.width.is_some(), numeric, "integer and float")?;
    only(
        "length",
        f.length.is_some(),
        matches!(base, BaseType::Bytes | BaseType::Text),
        "bytes and text",
    )?;
    only(
        "byte_order",
        f.byte_order.is_some(),
        numeric || base == BaseType::Ipv4,
        "number and ipv4",
    )?;
    only(
        "encoding",
        f.encoding.is_some(),
        base == BaseType::Bytes,
        "bytes",
    )?;
    only(
        "charset",
        f.charset.is_some(),
        base == BaseType::Text,
        "text",
    )?;
    only("enum", f.enum_names.is_some(), integer, "integer")?;
    only("timestamp", f.timestamp.is_some(), integer, "integer")?;
    if matches!(base, BaseType::Int(_)) && f.mask.is_some() {
        return Err(err(
            "mask",
            "bit fields read unsigned integers: use u8, u16, u32 or u64".into(),
        ));
    }
    only(
        "mask",
        f.mask.is_some(),
        matches!(base, BaseType::Uint(_)),
        "unsigned integer",
    )?;
    if f.shift.is_some() && f.mask.is_none() {
        return Err(err("shift", "only with `mask`".into()));
    }
    if f.on_unknown.is_some() && f.enum_names.is_none() {
        return Err(err("on_unknown", "only with `enum`".into()));
    }
    if f.enum_names.is_some() && f.timestamp.is_some() {
        return Err(err(
            "timestamp",
            "a field is an enum or a timestamp, not both".into(),
        ));
    }
    let order = f.byte_order.unwrap_or(default_order);
    match base {
        BaseType::Uint(implied) | BaseType::Int(implied) => {
            let width = width(f, implied, &[1, 2, 4, 8], &err)?;
            int_field(f, base, width, order, &err)
        }
        BaseType::Float(implied) => {
            let width = width(f, implied, &[4, 8], &err)?;
            let kind = if width == Width::W4 {
                OpKind::F32(order)
            } else {
                OpKind::F64(order)
            };
            Ok(simple(width.bytes(), kind, ColumnType::Float64))
        }
        BaseType::Ipv4 => Ok(simple(
            4,
            OpKind::Ipv4 {
                // Addresses are in network order unless the field itself says otherwise:
                // a little-endian layout default must not reverse them.
                reversed: f.byte_order == Some(ByteOrder::Little),
            },
            ColumnType::IpAddr,
        )),
        BaseType::Ipv6 => Ok(simple(16, OpKind::Ipv6, ColumnType::IpAddr)),
        BaseType::Mac => Ok(simple(6, OpKind::Mac, ColumnType::MacAddr)),
        BaseType::Bytes => {
            let len = length(f, &err)?;
            let encoding = match f.encoding.unwrap_or_default() {
                BytesFormat::Hex => BytesEncoding::Hex,
                BytesFormat::Base64 => BytesEncoding::Base64,
            };
            Ok(simple(
                len,
                OpKind::Bytes { len },
                ColumnType::Bytes(encoding),
            ))
        }
        BaseType::Text => {
            let len = length(f, &err)?;
            let ascii = f.charset == Some(Charset::Ascii);
            Ok(simple(len, OpKind::Text { len, ascii }, ColumnType::String))
        }
    }
}

/// A field that is not an integer: no mask, never null.
fn simple(size: usize, kind: OpKind, column: ColumnType) -> FieldSpec {
    FieldSpec {
        size,
        kind,
        column,
        nullable: false,
        mask: None,
    }
}

/// The width of a number field, from its type name and `width`.
fn width(
    f: &FieldConfig,
    implied: Option<Width>,
    allowed: &[usize],
    err: &impl Fn(&str, String) -> ConfigFieldError,
) -> Result<Width, ConfigFieldError> {
    let list = allowed
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match (implied, f.width) {
        (Some(w), None) => Ok(w),
        (Some(w), Some(n)) if n == w.bytes() => Ok(w),
        (Some(w), Some(n)) => Err(err(
            "width",
            format!(
                "{} is {} bytes wide, not {n}; drop `width`",
                f.ty,
                w.bytes()
            ),
        )),
        (None, None) => Err(err(
            "width",
            format!("required for type {}: {list} bytes", f.ty),
        )),
        (None, Some(n)) => Width::from_bytes(n)
            .filter(|w| allowed.contains(&w.bytes()))
            .ok_or_else(|| err("width", format!("{n} is not a width: use {list} bytes"))),
    }
}

/// The `length` of a bytes or text field.
fn length(
    f: &FieldConfig,
    err: &impl Fn(&str, String) -> ConfigFieldError,
) -> Result<usize, ConfigFieldError> {
    match f.length {
        Some(0) => Err(err("length", "at least 1 byte".into())),
        Some(n) => Ok(n),
        None => Err(err("length", format!("required for type {}", f.ty))),
    }
}

/// An integer field: its read (mask, shift) and output (number, bool, enum, time).
fn int_field(
    f: &FieldConfig,
    base: BaseType,
    width: Width,
    order: ByteOrder,
    err: &impl Fn(&str, String) -> ConfigFieldError,
) -> Result<FieldSpec, ConfigFieldError> {
    let signed = matches!(base, BaseType::Int(_));
    let (mask, shift) = match f.mask {
        None => (width.all_ones(), 0),
        Some(0) => return Err(err("mask", "0 keeps no bit".into())),
        Some(m) if m & !width.all_ones() != 0 => {
            return Err(err(
                "mask",
                format!("{m:#x} is wider than {} ({} bits)", f.ty, width.bits()),
            ));
        }
        Some(m) => {
            let low = m.trailing_zeros();
            match f.shift {
                Some(s) if s > low => {
                    return Err(err(
                        "shift",
                        format!("{s} would drop bits of mask {m:#x}: at most {low}"),
                    ));
                }
                Some(s) => (m, s),
                None => (m, low),
            }
        }
    };
    let read = IntRead {
        mask,
        shift,
        ..IntRead::new(width, order, signed)
    };
    let (kind, column, nullable) = if let Some(names) = &f.enum_names {
        let unknown = f.on_unknown.unwrap_or_default();
        let names = enum_names(names, &read, unknown, err)?;
        (
            OpKind::Enum(read, names),
            ColumnType::String,
            unknown == UnknownEnum::Null,
        )
    } else if let Some(unit) = f.timestamp {
        (OpKind::Timestamp(read, unit), ColumnType::Timestamp, false)
    } else if f.mask.is_some_and(|m| m.count_ones() == 1) {
        (OpKind::Bool(read), ColumnType::Bool, false)
    } else if signed {
        (OpKind::Int(read), ColumnType::Int64, false)
    } else {
        (OpKind::Uint(read), ColumnType::UInt64, false)
    };
    Ok(FieldSpec {
        size: width.bytes(),
        kind,
        column,
        nullable,
        mask: f.mask,
    })
}

/// The range of values an integer read yields.
pub(super) fn int_range(read: &IntRead) -> (i128, i128) {
    if read.signed {
        let half = 1i128 << (read.width.bits() - 1);
        (-half, half - 1)
    } else {
        (0, i128::from(read.mask >> read.shift))
    }
}

/// Parses `"12"`, `"-3"`, `"0x1f"`.
fn parse_number(text: &str) -> Option<i128> {
    let t = text.trim();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            i128::from_str_radix(hex, 16).ok()?
        }
        Some(_) => return None,
        None if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse().ok()?
        }
        None => return None,
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// The `enum` table: numbers parsed, in range, unique, sorted.
fn enum_names(
    config: &std::collections::BTreeMap<String, String>,
    read: &IntRead,
    unknown: UnknownEnum,
    err: &impl Fn(&str, String) -> ConfigFieldError,
) -> Result<EnumNames, ConfigFieldError> {
    if config.is_empty() {
        return Err(err("enum", "names no value".into()));
    }
    let (lo, hi) = int_range(read);
    let mut names: Vec<(i128, Box<str>)> = Vec::with_capacity(config.len());
    for (key, name) in config {
        let at = format!("enum.{key}");
        let value = parse_number(key).ok_or_else(|| {
            err(
                &at,
                format!("{key:?} is not a number (decimal, or hex with 0x)"),
            )
        })?;
        if value < lo || value > hi {
            return Err(err(
                &at,
                format!("{value} is out of range for this field ({lo}..={hi})"),
            ));
        }
        if names.iter().any(|(v, _)| *v == value) {
            return Err(err(&at, format!("the value {value} is named twice")));
        }
        names.push((value, name.as_str().into()));
    }
    names.sort_by_key(|(v, _)| *v);
    Ok(EnumNames::new(names, unknown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_in_decimal_and_hex() {
        assert_eq!(parse_number("12"), Some(12));
        assert_eq!(parse_number("-3"), Some(-3));
        assert_eq!(parse_number("0x1f"), Some(31));
        assert_eq!(parse_number("0X10"), Some(16));
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("+1"), None);
        assert_eq!(parse_number("1e3"), None);
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("0x-5"), None);
    }

    #[test]
    fn names_are_snake_case() {
        assert!(valid_name("seq"));
        assert!(valid_name("_x9"));
        assert!(!valid_name(""));
        assert!(!valid_name("9x"));
        assert!(!valid_name("Seq"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
