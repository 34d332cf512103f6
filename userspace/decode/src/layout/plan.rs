//! The compiled form of a layout: flat lists of field reads with resolved offsets, column
//! indices and output conversions, so that decoding is a loop over plain data with no
//! name lookups, no config branches and no allocation.
//!
//! Reads never index out of bounds: every read goes through `slice::get`, and the decoder
//! checks each segment's length up front only to report *which* field is missing.

use std::{borrow::Cow, net::IpAddr};

use super::config::{ByteOrder, TimeUnit, UnknownEnum};
use crate::{RecordSchema, Value};

/// Everything the decoder needs, built once by [`super::compile::compile`].
#[derive(Debug)]
pub(crate) struct Plan {
    /// The output columns.
    pub schema: RecordSchema,
    /// Header fields (absolute offsets).
    pub header: Segment,
    /// What follows the header.
    pub dispatch: Dispatch,
    /// Whether bytes after the layout's end are an error.
    pub reject_trailing: bool,
}

/// What follows the header: one body, or one per variant.
#[derive(Debug)]
pub(crate) enum Dispatch {
    /// No variants.
    Single(Body),
    /// Chosen by the discriminator.
    Variants(Variants),
}

/// The variants of a layout.
#[derive(Debug)]
pub(crate) struct Variants {
    /// The discriminator field (in the header).
    pub discriminator: IntRead,
    /// Its name, for errors.
    pub discriminator_name: Box<str>,
    /// (value, index into `bodies`), sorted by value.
    pub cases: Vec<(i128, usize)>,
    /// One body per variant.
    pub bodies: Vec<Body>,
    /// Unknown value: emit the header alone (true) or fail.
    pub header_only: bool,
}

impl Variants {
    /// The body for this payload's discriminator value, or the value itself.
    pub fn select(&self, payload: &[u8]) -> Result<&Body, i128> {
        let key = self.discriminator.read(payload, 0).unwrap_or_default();
        match self.cases.binary_search_by_key(&key, |(value, _)| *value) {
            Ok(i) => self
                .cases
                .get(i)
                .and_then(|(_, b)| self.bodies.get(*b))
                .ok_or(key),
            Err(_) => Err(key),
        }
    }
}

/// A variant's fields (or the whole layout's, without variants) and its group.
#[derive(Debug)]
pub(crate) struct Body {
    /// Fields after the header (absolute offsets); `end` includes the header.
    pub fixed: Segment,
    /// The repeated group, if any.
    pub group: Option<Group>,
}

/// A run of fields with a known total length.
#[derive(Clone, Debug, Default)]
pub(crate) struct Segment {
    /// Reads producing columns (skipped fields have none).
    pub ops: Vec<FieldOp>,
    /// Every field, skipped ones included, for naming the field a short payload lacks.
    pub extents: Vec<Extent>,
    /// Bytes the segment needs (from the payload's start, or the element's start).
    pub end: usize,
}

impl Segment {
    /// The first field that does not fit when the segment starts at `base` and the payload
    /// has `len` bytes: its name and absolute offset; without one (the payload ends in
    /// padding after the last field), no name and the payload's end.
    #[cold]
    pub fn missing(&self, base: usize, len: usize) -> (Option<&str>, usize) {
        self.extents
            .iter()
            .find(|e| base.saturating_add(e.end) > len)
            .map_or((None, len), |e| {
                (Some(&*e.name), base.saturating_add(e.offset))
            })
    }
}

/// Name and byte range of one field.
#[derive(Clone, Debug)]
pub(crate) struct Extent {
    /// Field name.
    pub name: Box<str>,
    /// First byte.
    pub offset: usize,
    /// One past the last byte.
    pub end: usize,
}

/// The repeated group.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    /// Where the first element starts (absolute).
    pub start: usize,
    /// Element count source; `None`: as many whole elements as the payload holds.
    pub count: Option<CountRead>,
    /// Element size in bytes (at least 1).
    pub size: usize,
    /// Largest count accepted.
    pub max_count: Option<u64>,
    /// Element fields (offsets relative to the element).
    pub element: Segment,
    /// Column of the element index, if configured.
    pub index_col: Option<usize>,
    /// Zero elements yield one row with the element columns null.
    pub empty_row: bool,
    /// No element field can fail once its bytes are there (no text, no enum that
    /// refuses unknown values, no timestamp): rows can be emitted as elements are read.
    pub infallible: bool,
}

/// Where a group's count comes from.
#[derive(Clone, Debug)]
pub(crate) struct CountRead {
    /// The count field.
    pub read: IntRead,
    /// Its name, for errors.
    pub name: Box<str>,
}

/// An integer read: `(raw & mask) >> shift`, sign-extended for signed fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IntRead {
    /// Byte offset (absolute, or within the element).
    pub offset: usize,
    /// Width in bytes: 1, 2, 4 or 8.
    pub width: Width,
    /// Byte order.
    pub order: ByteOrder,
    /// Bits kept (all for a plain integer).
    pub mask: u64,
    /// Right shift after masking.
    pub shift: u32,
    /// Two's complement (never masked).
    pub signed: bool,
}

impl IntRead {
    /// A read of `width` bytes at offset 0 (placed later), all bits kept.
    pub fn new(width: Width, order: ByteOrder, signed: bool) -> Self {
        Self {
            offset: 0,
            width,
            order,
            mask: width.all_ones(),
            shift: 0,
            signed,
        }
    }

    /// The unsigned value after mask and shift.
    #[inline(always)]
    pub fn read_raw(&self, payload: &[u8], base: usize) -> Option<u64> {
        let at = base.checked_add(self.offset)?;
        let bytes = payload.get(at..)?;
        // Where 8 bytes are left, one load and a shift serve every width: fewer branches
        // than a match on (width, order). The mask never keeps bits beyond the width.
        let raw = match (bytes.first_chunk::<8>(), self.order) {
            (Some(eight), ByteOrder::Big) => u64::from_be_bytes(*eight) >> (64 - self.width.bits()),
            (Some(eight), ByteOrder::Little) => u64::from_le_bytes(*eight),
            (None, order) => self.read_short(bytes, order)?,
        };
        Some((raw & self.mask) >> self.shift)
    }

    /// [`Self::read_raw`] near the end of the payload (unmasked).
    #[inline(never)]
    fn read_short(&self, bytes: &[u8], order: ByteOrder) -> Option<u64> {
        Some(match (self.width, order) {
            (Width::W1, _) => u64::from(*bytes.first()?),
            (Width::W2, ByteOrder::Big) => u64::from(u16::from_be_bytes(*bytes.first_chunk()?)),
            (Width::W2, ByteOrder::Little) => u64::from(u16::from_le_bytes(*bytes.first_chunk()?)),
            (Width::W4, ByteOrder::Big) => u64::from(u32::from_be_bytes(*bytes.first_chunk()?)),
            (Width::W4, ByteOrder::Little) => u64::from(u32::from_le_bytes(*bytes.first_chunk()?)),
            (Width::W8, ByteOrder::Big) => u64::from_be_bytes(*bytes.first_chunk()?),
            (Width::W8, ByteOrder::Little) => u64::from_le_bytes(*bytes.first_chunk()?),
        })
    }

    /// `raw` (from [`Self::read_raw`]) as a wide signed number, exact for every field.
    #[inline]
    pub fn number(&self, raw: u64) -> i128 {
        if self.signed {
            i128::from(self.width.sign_extend(raw))
        } else {
            i128::from(raw)
        }
    }

    /// The value as a wide signed number.
    #[inline]
    pub fn read(&self, payload: &[u8], base: usize) -> Option<i128> {
        Some(self.number(self.read_raw(payload, base)?))
    }
}

/// Width of an integer or float.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Width {
    /// 1 byte.
    W1,
    /// 2 bytes.
    W2,
    /// 4 bytes.
    W4,
    /// 8 bytes.
    W8,
}

impl Width {
    /// From a byte count.
    pub fn from_bytes(n: usize) -> Option<Self> {
        match n {
            1 => Some(Self::W1),
            2 => Some(Self::W2),
            4 => Some(Self::W4),
            8 => Some(Self::W8),
            _ => None,
        }
    }

    /// Byte count.
    pub fn bytes(self) -> usize {
        match self {
            Self::W1 => 1,
            Self::W2 => 2,
            Self::W4 => 4,
            Self::W8 => 8,
        }
    }

    /// Bit count.
    pub fn bits(self) -> u32 {
        match self {
            Self::W1 => 8,
            Self::W2 => 16,
            Self::W4 => 32,
            Self::W8 => 64,
        }
    }

    /// All bits of this width set.
    pub fn all_ones(self) -> u64 {
        u64::MAX >> (64 - self.bits())
    }

    /// `raw` read as a two's complement number of this width.
    #[inline]
    pub fn sign_extend(self, raw: u64) -> i64 {
        let unused = 64 - self.bits();
        ((raw << unused) as i64) >> unused
    }
}

/// One field read producing one column.
#[derive(Clone, Debug)]
pub(crate) struct FieldOp {
    /// Field name, for errors.
    pub name: Box<str>,
    /// Byte offset (absolute, or within the element).
    pub offset: usize,
    /// Column index in the row.
    pub col: usize,
    /// What to read and how to present it.
    pub kind: OpKind,
}

/// A field's type, resolved.
#[derive(Clone, Debug)]
pub(crate) enum OpKind {
    /// An unsigned integer (`U64`).
    Uint(IntRead),
    /// A signed integer (`I64`).
    Int(IntRead),
    /// A bit field of one bit (`Bool`, true when set).
    Bool(IntRead),
    /// An integer named by a table (`Str`).
    Enum(IntRead, EnumNames),
    /// An integer Unix time in this unit (`Timestamp`).
    Timestamp(IntRead, TimeUnit),
    /// IEEE 754 single.
    F32(ByteOrder),
    /// IEEE 754 double.
    F64(ByteOrder),
    /// IPv4, bytes reversed when `true` (a little-endian `u32`).
    Ipv4 { reversed: bool },
    /// IPv6, network order.
    Ipv6,
    /// MAC address.
    Mac,
    /// Fixed-length bytes.
    Bytes { len: usize },
    /// Fixed-length text.
    Text { len: usize, ascii: bool },
}

impl OpKind {
    /// Whether reading this field, its bytes being there, can fail.
    pub fn can_fail(&self) -> bool {
        match self {
            Self::Text { .. } | Self::Timestamp(..) => true,
            Self::Enum(_, names) => names.unknown == UnknownEnum::Error,
            _ => false,
        }
    }

    /// The read of an integer field.
    pub fn int(&self) -> Option<&IntRead> {
        match self {
            Self::Uint(r) | Self::Int(r) | Self::Bool(r) => Some(r),
            Self::Enum(r, _) | Self::Timestamp(r, _) => Some(r),
            _ => None,
        }
    }

    /// The read of an integer field, to place it.
    pub fn int_mut(&mut self) -> Option<&mut IntRead> {
        match self {
            Self::Uint(r) | Self::Int(r) | Self::Bool(r) => Some(r),
            Self::Enum(r, _) | Self::Timestamp(r, _) => Some(r),
            _ => None,
        }
    }
}

/// Names of integer values, sorted by value.
#[derive(Clone, Debug)]
pub(crate) struct EnumNames {
    /// (value, name), sorted by value.
    pub names: Vec<(i128, Box<str>)>,
    /// Policy for values not in `names`.
    pub unknown: UnknownEnum,
}

/// Why a field's bytes do not make a value (the decoder adds name and offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The payload ends inside the field.
    Truncated,
    /// Text outside its charset; the byte offset within the field.
    BadText(usize),
    /// A number the enum does not name (the error message reads it again: a small
    /// `Fault` keeps the hot path's `Result` in registers).
    UnknownEnum,
    /// A Unix time beyond the representable range.
    BadTimestamp,
}

impl FieldOp {
    /// Writes the field's value in an element (or payload) starting at `base` into `slot`
    /// (in place: a `Value` returned by value would be copied through the stack, which
    /// costs more than the read itself).
    #[inline(always)]
    pub fn read_into<'a>(
        &'a self,
        payload: &'a [u8],
        base: usize,
        slot: &mut Value<'a>,
    ) -> Result<(), Fault> {
        let at = base.checked_add(self.offset).ok_or(Fault::Truncated)?;
        let bytes = payload.get(at..).ok_or(Fault::Truncated)?;
        // Each arm stores its own variant: one `*slot = match ...` makes the compiler
        // merge every variant's store into a generic, spilling sequence.
        match &self.kind {
            OpKind::Uint(read) => {
                *slot = Value::U64(read.read_raw(payload, base).ok_or(Fault::Truncated)?);
            }
            OpKind::Int(read) => {
                let raw = read.read_raw(payload, base).ok_or(Fault::Truncated)?;
                *slot = Value::I64(read.width.sign_extend(raw));
            }
            OpKind::Bool(read) => {
                *slot = Value::Bool(read.read_raw(payload, base).ok_or(Fault::Truncated)? != 0);
            }
            OpKind::Enum(read, names) => {
                let raw = read.read_raw(payload, base).ok_or(Fault::Truncated)?;
                *slot = names.value(read.number(raw))?;
            }
            OpKind::Timestamp(read, unit) => {
                let raw = read.read_raw(payload, base).ok_or(Fault::Truncated)?;
                *slot = timestamp(read.number(raw), *unit)?;
            }
            OpKind::F32(order) => {
                let b = *bytes.first_chunk::<4>().ok_or(Fault::Truncated)?;
                let v = match order {
                    ByteOrder::Big => f32::from_be_bytes(b),
                    ByteOrder::Little => f32::from_le_bytes(b),
                };
                *slot = Value::F64(f64::from(v));
            }
            OpKind::F64(order) => {
                let b = *bytes.first_chunk::<8>().ok_or(Fault::Truncated)?;
                *slot = Value::F64(match order {
                    ByteOrder::Big => f64::from_be_bytes(b),
                    ByteOrder::Little => f64::from_le_bytes(b),
                });
            }
            OpKind::Ipv4 { reversed } => {
                let mut b = *bytes.first_chunk::<4>().ok_or(Fault::Truncated)?;
                if *reversed {
                    b.reverse();
                }
                *slot = Value::Ip(IpAddr::from(b));
            }
            OpKind::Ipv6 => {
                let b = *bytes.first_chunk::<16>().ok_or(Fault::Truncated)?;
                *slot = Value::Ip(IpAddr::from(b));
            }
            OpKind::Mac => {
                *slot = Value::Mac(*bytes.first_chunk::<6>().ok_or(Fault::Truncated)?);
            }
            OpKind::Bytes { len } => {
                let field = bytes.get(..*len).ok_or(Fault::Truncated)?;
                *slot = Value::Bytes(Cow::Borrowed(field));
            }
            OpKind::Text { len, ascii } => {
                let field = bytes.get(..*len).ok_or(Fault::Truncated)?;
                *slot = Value::Str(Cow::Borrowed(text(field, *ascii)?));
            }
        }
        Ok(())
    }
}

impl EnumNames {
    /// The name of `key`, per the unknown-value policy.
    #[inline]
    fn value<'a>(&'a self, key: i128) -> Result<Value<'a>, Fault> {
        match self.names.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => match self.names.get(i) {
                Some((_, name)) => Ok(Value::Str(Cow::Borrowed(name))),
                None => Ok(Value::Null),
            },
            Err(_) => match self.unknown {
                UnknownEnum::Number => Ok(Value::Str(Cow::Owned(key.to_string()))),
                UnknownEnum::Null => Ok(Value::Null),
                UnknownEnum::Error => Err(Fault::UnknownEnum),
            },
        }
    }
}

/// A Unix time in `unit` as a timestamp value.
#[inline]
fn timestamp<'a>(n: i128, unit: TimeUnit) -> Result<Value<'a>, Fault> {
    let micros = match unit {
        TimeUnit::Seconds => n * 1_000_000,
        TimeUnit::Millis => n * 1_000,
        TimeUnit::Micros => n,
        TimeUnit::Nanos => n.div_euclid(1_000),
    };
    i64::try_from(micros)
        .map(Value::Timestamp)
        .map_err(|_| Fault::BadTimestamp)
}

/// Text of a fixed-length field: up to the first NUL, trimmed of spaces. Spaces are
/// ASCII, so the bytes are trimmed before the (shorter) UTF-8 check.
#[inline]
fn text(field: &[u8], ascii: bool) -> Result<&str, Fault> {
    let used = match field.iter().position(|&b| b == 0) {
        Some(nul) => field.get(..nul).unwrap_or_default(),
        None => field,
    };
    let lead = used.iter().take_while(|&&b| b == b' ').count();
    let trail = used.iter().rev().take_while(|&&b| b == b' ').count();
    let trimmed = used.get(lead..used.len() - trail).unwrap_or_default();
    if ascii && let Some(bad) = trimmed.iter().position(|b| !b.is_ascii()) {
        return Err(Fault::BadText(lead + bad));
    }
    std::str::from_utf8(trimmed).map_err(|e| Fault::BadText(lead + e.valid_up_to()))
}
