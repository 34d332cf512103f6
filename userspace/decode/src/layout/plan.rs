//! The compiled form of a layout: flat lists of field reads with resolved offsets, column
//! indices and output conversions, so that decoding is a loop over plain data with no
//! name lookups, no config branches and no allocation.
//!
//! Reads never index out of bounds: every read goes through `slice::get`, and the decoder
//! checks each segment's length up front only to report *which* field is missing.

use std::{borrow::Cow, net::IpAddr};

use super::config::{ByteOrder, TimeUnit, UnknownEnum};
use crate::{FieldName, RecordSchema, Value};

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
    /// Columns whose value may own memory (an unknown enum value written as a number):
    /// the others are emptied without looking at their values.
    pub owning_cols: Box<[usize]>,
}

impl Plan {
    /// The columns of fields that may produce a value owning memory, sorted, once each.
    pub fn owning_columns(&self) -> Box<[usize]> {
        let mut cols = Vec::new();
        let mut add = |segment: &Segment| {
            for op in &segment.ops {
                if matches!(&op.kind, OpKind::Enum(_, names) if names.unknown == UnknownEnum::Number)
                {
                    cols.push(op.col);
                }
            }
        };
        add(&self.header);
        let bodies = match &self.dispatch {
            Dispatch::Single(b) => std::slice::from_ref(&**b),
            Dispatch::Variants(v) => v.bodies.as_slice(),
        };
        for body in bodies {
            add(&body.fixed);
            if let Some(g) = &body.group {
                add(&g.element);
            }
        }
        cols.sort_unstable();
        cols.dedup();
        cols.into_boxed_slice()
    }
}

/// What follows the header: one body, or one per variant.
#[derive(Debug)]
pub(crate) enum Dispatch {
    /// No variants.
    Single(Box<Body>),
    /// Chosen by the discriminator.
    Variants(Variants),
}

/// The variants of a layout.
#[derive(Debug)]
pub(crate) struct Variants {
    /// The discriminator field (in the header).
    pub discriminator: IntRead,
    /// Its name, for errors.
    pub discriminator_name: &'static str,
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
    /// The plain integer reads of `ops` (unsigned, signed, one-bit), run first in a tight
    /// loop of their own: they cannot fail once the segment's bytes are there, so taking
    /// them out of order changes no outcome.
    pub ints: Vec<IntOp>,
    /// The other reads of `ops`, in order (the first failure is the one reported).
    pub rest: Vec<FieldOp>,
}

/// A plain integer read producing one column.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IntOp {
    /// Index of the field in [`Segment::ops`] (for errors).
    pub op: usize,
    /// Column index in the row.
    pub col: usize,
    /// The read.
    pub read: IntRead,
    /// The column's type.
    pub out: IntOut,
}

/// The value an [`IntOp`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntOut {
    /// `U64`.
    Uint,
    /// `I64`, sign-extended.
    Int,
    /// `Bool`, true when not 0.
    Bool,
}

impl IntOp {
    /// [`FieldOp::read_into`] for this integer.
    #[inline(always)]
    pub fn read_into<const FRESH: bool>(
        &self,
        payload: &[u8],
        base: usize,
        slot: &mut Value<'_>,
    ) -> Result<(), Fault> {
        let raw = self.read.read_raw(payload, base).ok_or(Fault::Truncated)?;
        match self.out {
            IntOut::Uint => put::<FRESH>(slot, Value::U64(raw)),
            IntOut::Int => put::<FRESH>(slot, Value::I64(self.read.width.sign_extend(raw))),
            IntOut::Bool => put::<FRESH>(slot, Value::Bool(raw != 0)),
        }
        Ok(())
    }
}

impl Segment {
    /// A segment of these reads (in payload order).
    pub fn new(ops: Vec<FieldOp>, extents: Vec<Extent>, end: usize) -> Self {
        let mut ints = Vec::new();
        let mut rest = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let (read, out) = match &op.kind {
                OpKind::Uint(read) => (read, IntOut::Uint),
                OpKind::Int(read) => (read, IntOut::Int),
                OpKind::Bool(read) => (read, IntOut::Bool),
                _ => {
                    rest.push(op.clone());
                    continue;
                }
            };
            ints.push(IntOp {
                op: i,
                col: op.col,
                read: *read,
                out,
            });
        }
        Self {
            ops,
            extents,
            end,
            ints,
            rest,
        }
    }

    /// The first field that does not fit when the segment starts at `base` and the payload
    /// has `len` bytes: its name and absolute offset; without one (the payload ends in
    /// padding after the last field), no name and the payload's end.
    #[cold]
    pub fn missing(&self, base: usize, len: usize) -> (FieldName, usize) {
        self.extents
            .iter()
            .find(|e| base.saturating_add(e.end) > len)
            .map_or((FieldName::None, len), |e| {
                (FieldName::Static(e.name), base.saturating_add(e.offset))
            })
    }
}

/// Name and byte range of one field.
#[derive(Clone, Debug)]
pub(crate) struct Extent {
    /// Field name (interned: errors name it without allocating).
    pub name: &'static str,
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
    /// Its name, for errors (interned).
    pub name: &'static str,
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
    /// Field name, for errors (interned: naming it allocates nothing).
    pub name: &'static str,
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
    /// When every named value is in `0..DENSE_MAX`: for each value up to the largest
    /// named one, its name or `None`. Empty otherwise. A lookup is then one load instead
    /// of a binary search over wide keys.
    pub dense: Box<[Option<Box<str>>]>,
}

/// Largest table [`EnumNames::dense`] is built for (entries).
const DENSE_MAX: i128 = 1024;

impl EnumNames {
    /// The names of `names` (sorted by value, unique) with the `unknown` policy.
    pub fn new(names: Vec<(i128, Box<str>)>, unknown: UnknownEnum) -> Self {
        let dense = match (names.first(), names.last()) {
            (Some((lo, _)), Some((hi, _))) if *lo >= 0 && *hi < DENSE_MAX => {
                let mut table = vec![None; usize::try_from(*hi + 1).unwrap_or(0)];
                for (value, name) in &names {
                    if let Some(slot) = usize::try_from(*value).ok().and_then(|v| table.get_mut(v))
                    {
                        *slot = Some(name.clone());
                    }
                }
                table.into_boxed_slice()
            }
            _ => Box::default(),
        };
        Self {
            names,
            unknown,
            dense,
        }
    }
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
    /// costs more than the read itself). `FRESH`: `slot` holds `Null`, nothing to drop.
    #[inline(always)]
    pub fn read_into<'a, const FRESH: bool>(
        &'a self,
        payload: &'a [u8],
        base: usize,
        slot: &mut Value<'a>,
    ) -> Result<(), Fault> {
        // Each arm stores its own variant and finds its own bytes: one `*slot = match ...`
        // makes the compiler merge every variant's store into a generic, spilling sequence.
        match &self.kind {
            OpKind::Uint(read) => {
                let raw = read.read_raw(payload, base).ok_or(Fault::Truncated)?;
                put::<FRESH>(slot, Value::U64(raw));
            }
            OpKind::Int(read) => {
                let raw = read.read_raw(payload, base).ok_or(Fault::Truncated)?;
                put::<FRESH>(slot, Value::I64(read.width.sign_extend(raw)));
            }
            OpKind::Bool(read) => {
                put::<FRESH>(
                    slot,
                    Value::Bool(read.read_raw(payload, base).ok_or(Fault::Truncated)? != 0),
                );
            }
            OpKind::Enum(read, names) => {
                let raw = read.read_raw(payload, base).ok_or(Fault::Truncated)?;
                // The name is stored here, as a plain `&str`: a `Value` built in a helper
                // and moved into the slot goes through the stack, byte by byte.
                match names.name(read, raw) {
                    Some(name) => put::<FRESH>(slot, Value::Str(Cow::Borrowed(name))),
                    None => put::<FRESH>(slot, names.unknown(read.number(raw))?),
                }
            }
            OpKind::Timestamp(read, unit) => {
                let raw = read.read_raw(payload, base).ok_or(Fault::Truncated)?;
                put::<FRESH>(slot, Value::Timestamp(timestamp(read, raw, *unit)?));
            }
            OpKind::F32(order) => {
                let b = *self
                    .bytes(payload, base)?
                    .first_chunk::<4>()
                    .ok_or(Fault::Truncated)?;
                let v = match order {
                    ByteOrder::Big => f32::from_be_bytes(b),
                    ByteOrder::Little => f32::from_le_bytes(b),
                };
                put::<FRESH>(slot, Value::F64(f64::from(v)));
            }
            OpKind::F64(order) => {
                let b = *self
                    .bytes(payload, base)?
                    .first_chunk::<8>()
                    .ok_or(Fault::Truncated)?;
                put::<FRESH>(
                    slot,
                    Value::F64(match order {
                        ByteOrder::Big => f64::from_be_bytes(b),
                        ByteOrder::Little => f64::from_le_bytes(b),
                    }),
                );
            }
            OpKind::Ipv4 { reversed } => {
                let mut b = *self
                    .bytes(payload, base)?
                    .first_chunk::<4>()
                    .ok_or(Fault::Truncated)?;
                if *reversed {
                    b.reverse();
                }
                put::<FRESH>(slot, Value::Ip(IpAddr::from(b)));
            }
            OpKind::Ipv6 => {
                let b = *self
                    .bytes(payload, base)?
                    .first_chunk::<16>()
                    .ok_or(Fault::Truncated)?;
                put::<FRESH>(slot, Value::Ip(IpAddr::from(b)));
            }
            OpKind::Mac => {
                put::<FRESH>(
                    slot,
                    Value::Mac(
                        *self
                            .bytes(payload, base)?
                            .first_chunk::<6>()
                            .ok_or(Fault::Truncated)?,
                    ),
                );
            }
            OpKind::Bytes { len } => {
                let field = self
                    .bytes(payload, base)?
                    .get(..*len)
                    .ok_or(Fault::Truncated)?;
                put::<FRESH>(slot, Value::Bytes(Cow::Borrowed(field)));
            }
            OpKind::Text { len, ascii } => {
                let field = self
                    .bytes(payload, base)?
                    .get(..*len)
                    .ok_or(Fault::Truncated)?;
                put::<FRESH>(slot, Value::Str(Cow::Borrowed(text(field, *ascii)?)));
            }
        }
        Ok(())
    }

    /// The payload from the field's first byte on.
    #[inline(always)]
    fn bytes<'a>(&self, payload: &'a [u8], base: usize) -> Result<&'a [u8], Fault> {
        let at = base.checked_add(self.offset).ok_or(Fault::Truncated)?;
        payload.get(at..).ok_or(Fault::Truncated)
    }
}

/// Stores `value` in `slot`. `FRESH`: `slot` is known to hold `Null`, so the old value's
/// drop (a check of its variant) is left out; were it not Null, it would only leak.
#[inline(always)]
pub(crate) fn put<'a, const FRESH: bool>(slot: &mut Value<'a>, value: Value<'a>) {
    if FRESH {
        debug_assert!(matches!(slot, Value::Null), "slot written twice");
        std::mem::forget(std::mem::replace(slot, value));
    } else {
        *slot = value;
    }
}

impl EnumNames {
    /// The name of the value `raw` (from `read`), if it has one.
    #[inline(always)]
    fn name(&self, read: &IntRead, raw: u64) -> Option<&str> {
        if !self.dense.is_empty() && !read.signed {
            // Every named value is a table index: anything else has no name.
            return usize::try_from(raw)
                .ok()
                .and_then(|v| self.dense.get(v))
                .and_then(|name| name.as_deref());
        }
        let key = read.number(raw);
        self.names
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .and_then(|i| self.names.get(i))
            .map(|(_, name)| &**name)
    }

    /// A value without a name, per the policy.
    #[cold]
    #[inline(never)]
    fn unknown<'a>(&self, key: i128) -> Result<Value<'a>, Fault> {
        match self.unknown {
            UnknownEnum::Number => Ok(Value::Str(Cow::Owned(key.to_string()))),
            UnknownEnum::Null => Ok(Value::Null),
            UnknownEnum::Error => Err(Fault::UnknownEnum),
        }
    }
}

/// The Unix time `raw` (from `read`) in `unit`, in microseconds.
#[inline(always)]
fn timestamp(read: &IntRead, raw: u64, unit: TimeUnit) -> Result<i64, Fault> {
    // Every field but an unsigned 64-bit one fits an i64: exact narrow arithmetic, where
    // overflow is exactly "beyond the range".
    let narrow = if read.signed {
        Some(read.width.sign_extend(raw))
    } else {
        i64::try_from(raw).ok()
    };
    let Some(n) = narrow else {
        return timestamp_wide(read.number(raw), unit);
    };
    let micros = match unit {
        TimeUnit::Seconds => n.checked_mul(1_000_000),
        TimeUnit::Millis => n.checked_mul(1_000),
        TimeUnit::Micros => Some(n),
        TimeUnit::Nanos => Some(n.div_euclid(1_000)),
    };
    micros.ok_or(Fault::BadTimestamp)
}

/// [`timestamp`] of a number beyond `i64`.
#[cold]
#[inline(never)]
fn timestamp_wide(n: i128, unit: TimeUnit) -> Result<i64, Fault> {
    let micros = match unit {
        TimeUnit::Seconds => n * 1_000_000,
        TimeUnit::Millis => n * 1_000,
        TimeUnit::Micros => n,
        TimeUnit::Nanos => n.div_euclid(1_000),
    };
    i64::try_from(micros).map_err(|_| Fault::BadTimestamp)
}

/// Text of a fixed-length field: up to the first NUL, trimmed of spaces. Spaces are
/// ASCII, so the bytes are trimmed before the (shorter) UTF-8 check.
#[inline]
fn text(field: &[u8], ascii: bool) -> Result<&str, Fault> {
    let used = match first_nul(field) {
        Some(nul) => field.get(..nul).unwrap_or_default(),
        None => field,
    };
    let lead = used.iter().take_while(|&&b| b == b' ').count();
    let trail = used.iter().rev().take_while(|&&b| b == b' ').count();
    let trimmed = used.get(lead..used.len() - trail).unwrap_or_default();
    if all_ascii(trimmed) {
        // SAFETY: every ASCII byte sequence is valid UTF-8 (ASCII is UTF-8's one-byte
        // range), which is all `from_utf8_unchecked` requires. `is_ascii` reads a word at
        // a time where `from_utf8` would go byte by byte on short fields. Tested by
        // `ascii_fast_path_matches_from_utf8` below.
        return Ok(unsafe { std::str::from_utf8_unchecked(trimmed) });
    }
    if ascii && let Some(bad) = trimmed.iter().position(|b| !b.is_ascii()) {
        return Err(Fault::BadText(lead + bad));
    }
    std::str::from_utf8(trimmed).map_err(|e| Fault::BadText(lead + e.valid_up_to()))
}

/// Whether every byte is ASCII, looking at 8 bytes at a time (the last 8 overlapping).
#[inline(always)]
fn all_ascii(bytes: &[u8]) -> bool {
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut seen = 0u64;
    let mut rest = bytes;
    while let Some((chunk, tail)) = rest.split_first_chunk::<8>() {
        seen |= u64::from_ne_bytes(*chunk);
        rest = tail;
    }
    match bytes.last_chunk::<8>() {
        Some(last) => seen |= u64::from_ne_bytes(*last),
        None => {
            for &b in rest {
                seen |= u64::from(b);
            }
        }
    }
    seen & HIGHS == 0
}

/// Where the first NUL byte of `field` is, looking at 8 bytes at a time.
#[inline(always)]
fn first_nul(field: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut at = 0;
    let mut rest = field;
    while let Some((chunk, tail)) = rest.split_first_chunk::<8>() {
        let word = u64::from_le_bytes(*chunk);
        // The lowest set bit is the high bit of the first zero byte (bits above it may
        // be set by the borrow, bits below it never).
        let zeros = word.wrapping_sub(ONES) & !word & HIGHS;
        if zeros != 0 {
            return Some(at + (zeros.trailing_zeros() / 8) as usize);
        }
        at += 8;
        rest = tail;
    }
    rest.iter().position(|&b| b == 0).map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_ascii_looks_at_every_byte() {
        for len in 0..24 {
            assert!(all_ascii(&vec![0x7f; len]));
            for bad in 0..len {
                let mut bytes = vec![b'a'; len];
                if let Some(b) = bytes.get_mut(bad) {
                    *b = 0x80;
                }
                assert!(!all_ascii(&bytes), "{bytes:?}");
            }
        }
    }

    #[test]
    fn first_nul_is_the_first_zero_byte() {
        for len in 0..24 {
            for nul in 0..=len {
                for filler in [0x01u8, 0x80, 0xff, b' '] {
                    let mut field = vec![filler; len];
                    if let Some(b) = field.get_mut(nul) {
                        *b = 0;
                    }
                    if let Some(b) = field.get_mut(nul + 1) {
                        *b = 0;
                    }
                    let expected = field.iter().position(|&b| b == 0);
                    assert_eq!(first_nul(&field), expected, "{field:?}");
                }
            }
        }
    }

    #[test]
    fn ascii_fast_path_matches_from_utf8() {
        let cases: [&[u8]; 8] = [
            b"",
            b"   ",
            b"  boiler-room-3 \0\0",
            b"abc\0\xff",
            b"\x7f\x01 ~",
            "caf\u{e9} ".as_bytes(),
            b"\xff",
            b"ok \xc3",
        ];
        for field in cases {
            for ascii in [false, true] {
                let got = text(field, ascii);
                let used = field.split(|&b| b == 0).next().unwrap_or_default();
                let trimmed = used.trim_ascii();
                match std::str::from_utf8(trimmed) {
                    Ok(s) if !ascii || s.is_ascii() => assert_eq!(got, Ok(s), "{field:?}"),
                    _ => assert!(got.is_err(), "{field:?}"),
                }
            }
        }
    }
}
